#!/usr/bin/env bash
# run-fulcrum-bench.sh - fulcrum vs HAProxy vs nginx on loopback, with proxy-bench.sh.
#
#   tests/bench/run-fulcrum-bench.sh              throughput/latency/CPU (c=64, 5 x 10 s, pinned)
#   CONN_CLOSE=1 ROUNDS=3 tests/bench/run-fulcrum-bench.sh     one connection per request
#   tests/bench/run-fulcrum-bench.sh idle         RSS per 1000 idle keep-alive connections
#   TLS=1 tests/bench/run-fulcrum-bench.sh        the same three over TLS (TLS=1 CONN_CLOSE=1:
#                                                 one full handshake per request; TLS=1 ... idle)
#   tests/bench/run-fulcrum-bench.sh help         every knob of the harness
#
# 1. installs what is missing (nginx-light or nginx, haproxy, wrk, python3, build deps)
#    with apt-get, only when missing and only as root;
# 2. builds fulcrum in Release into build-bench/ (-DFC_WERROR=ON, no tests);
# 3. runs proxy-bench.sh with CANDIDATE_NAME=fulcrum; the candidate command first writes
#    the fulcrum config (gen-fulcrum-conf.sh: workers=1, log warn, access off, round_robin
#    over the harness's 3 backends) into the harness's scratch dir, then execs fulcrum.
#
# Defaults (all overridable from the environment): PIN=1 ROUNDS=5 DURATION=10s CONNS=64
# MAX_OTHER=25 CANDIDATE_PORT=18082. FC_BENCH_WORKERS=1, FC_BENCH_LOG_LEVEL=warn.
# FC_BENCH_SKIP_BUILD=1 reuses an existing build-bench/. FC_BENCH_BUILD_DIR moves it.
# FC_BENCH_BASELINE=REV (a commit, tag or branch) also builds that commit (git archive, into
# build-bench-base/, FC_BENCH_BASELINE_DIR moves it) and runs it as scenario "baseline" next to
# the working tree's build (BASELINE_PORT=18083): before and after a change, in the same run.
# Every other proxy-bench.sh knob (HAPROXY_PORT, NGINX_PORT, BACKEND_PORTS, SCENARIOS,
# CONN_CLOSE, RATE, RESULTS_TSV, KEEP_TMP, ...) passes straight through; so do the arguments.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${FC_BENCH_BUILD_DIR:-$root/build-bench}
jobs=$(nproc 2>/dev/null || echo 2)

case "${1:-}" in
  help|-h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
                  echo "---- proxy-bench.sh:"; exec "$here/proxy-bench.sh" help ;;
esac

# ---------------------------------------------------------------- packages --
missing=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_cmd nginx || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
have_cmd haproxy || [[ -x /usr/sbin/haproxy ]] || missing+=(haproxy)
have_cmd wrk || missing+=(wrk)
have_cmd python3 || missing+=(python3)
have_cmd taskset || missing+=(util-linux)
have_cmd ss || missing+=(iproute2)
have_cmd ps || missing+=(procps)
[[ ${1:-} == syscalls ]] && { have_cmd strace || missing+=(strace); }
if [[ ${TLS:-0} == 1 ]]; then
  have_cmd openssl || missing+=(openssl)
  have_cmd cc || missing+=(build-essential)     # proxy-bench.sh compiles wrk-tls-shim.c
fi
if [[ ${FC_BENCH_SKIP_BUILD:-0} != 1 ]]; then
  have_cmd cmake || missing+=(cmake)
  have_cmd cc || missing+=(build-essential)
  have_cmd pkg-config || missing+=(pkg-config)
  for p in libuv1-dev node-llhttp libconfig-dev libhiredis-dev libssl-dev libjansson-dev libc-ares-dev; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
fi
if (( ${#missing[@]} )); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "run-fulcrum-bench: missing ${missing[*]} and not root: apt-get install them" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  pkgs=()
  for p in "${missing[@]}"; do
    if [[ $p == nginx ]]; then
      # nginx-light is enough (return, proxy_pass, upstream keepalive); fall back to nginx
      if apt-cache show nginx-light >/dev/null 2>&1; then pkgs+=(nginx-light); else pkgs+=(nginx); fi
    else
      pkgs+=("$p")
    fi
  done
  echo "run-fulcrum-bench: installing ${pkgs[*]}" >&2
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
fi
# nginx and haproxy live in /usr/sbin, which a non-login PATH may lack
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin ;; esac
export PATH

# ------------------------------------------------------------------- build --
if [[ ${FC_BENCH_SKIP_BUILD:-0} != 1 ]]; then
  echo "run-fulcrum-bench: building Release in $build" >&2
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DFC_WERROR=ON -DFC_BUILD_TESTS=OFF >/dev/null
  cmake --build "$build" -j "$jobs" >/dev/null
fi
[[ -x $build/fulcrum ]] || { echo "run-fulcrum-bench: no $build/fulcrum" >&2; exit 1; }
[[ -f $build/plugins/round_robin.so ]] || { echo "run-fulcrum-bench: no $build/plugins/round_robin.so" >&2; exit 1; }

if [[ -n ${FC_BENCH_BASELINE:-} ]]; then
  base=${FC_BENCH_BASELINE_DIR:-$root/build-bench-base}
  base_rev=$(git -C "$root" rev-parse --short "$FC_BENCH_BASELINE^{commit}") ||
    { echo "run-fulcrum-bench: FC_BENCH_BASELINE=$FC_BENCH_BASELINE is not a commit" >&2; exit 1; }
  if [[ ${FC_BENCH_SKIP_BUILD:-0} != 1 || ! -x $base/fulcrum ]]; then
    echo "run-fulcrum-bench: building the baseline $base_rev in $base" >&2
    rm -rf "$base/src"; mkdir -p "$base/src"
    git -C "$root" archive "$base_rev" | tar -x -C "$base/src"
    cmake -S "$base/src" -B "$base" -DCMAKE_BUILD_TYPE=Release -DFC_WERROR=ON -DFC_BUILD_TESTS=OFF >/dev/null
    cmake --build "$base" -j "$jobs" >/dev/null
  fi
  export FC_BENCH_BASE_BIN=$base/fulcrum FC_BENCH_BASE_PLUGIN_DIR=$base/plugins
  export BASELINE_NAME=${BASELINE_NAME:-base-$base_rev} BASELINE_PORT=${BASELINE_PORT:-18083}
  export BASELINE_CMD=${BASELINE_CMD:-'FC_BENCH_PLUGIN_DIR=$FC_BENCH_BASE_PLUGIN_DIR "$FC_BENCH_GEN" "$BENCH_DIR/bench.conf" && exec "$FC_BENCH_BASE_BIN" -c "$BENCH_DIR/bench.conf"'}
fi

# --------------------------------------------------------------------- run --
export FC_BENCH_BIN=$build/fulcrum
export FC_BENCH_PLUGIN_DIR=$build/plugins
export FC_BENCH_GEN=$here/gen-fulcrum-conf.sh
export FC_BENCH_WORKERS=${FC_BENCH_WORKERS:-1}
export FC_BENCH_LOG_LEVEL=${FC_BENCH_LOG_LEVEL:-warn}
export PIN=${PIN:-1} ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-10s} CONNS=${CONNS:-64}
export MAX_OTHER=${MAX_OTHER:-25}
export CANDIDATE_NAME=${CANDIDATE_NAME:-fulcrum}
export CANDIDATE_PORT=${CANDIDATE_PORT:-18082}
# single quotes: expanded by the harness's `bash -c`, once $BENCH_DIR and the ports exist
export CANDIDATE_CMD=${CANDIDATE_CMD:-'"$FC_BENCH_GEN" "$BENCH_DIR/bench.conf" && exec "$FC_BENCH_BIN" -c "$BENCH_DIR/bench.conf"'}

echo "run-fulcrum-bench: $("$FC_BENCH_BIN" --version 2>&1 | head -n1); git $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD -- core plugins sdk 2>/dev/null || echo '+dirty'); PIN=$PIN ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS MAX_OTHER=$MAX_OTHER CONN_CLOSE=${CONN_CLOSE:-0} TLS=${TLS:-0}$([[ ${TLS:-0} == 1 ]] && echo " TLS_RESUME=${TLS_RESUME:-0}") workers=$FC_BENCH_WORKERS${BASELINE_CMD:+ baseline=$BASELINE_NAME} args: $*" >&2
exec "$here/proxy-bench.sh" "$@"
