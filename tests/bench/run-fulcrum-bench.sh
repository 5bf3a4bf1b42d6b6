#!/usr/bin/env bash
# run-fulcrum-bench.sh - fulcrum vs HAProxy vs nginx on loopback, with proxy-bench.sh.
#
#   tests/bench/run-fulcrum-bench.sh              throughput/latency/CPU (c=64, 5 x 10 s, pinned)
#   CONN_CLOSE=1 ROUNDS=3 tests/bench/run-fulcrum-bench.sh     one connection per request
#   tests/bench/run-fulcrum-bench.sh idle         RSS per 1000 idle keep-alive connections
#   TLS=1 tests/bench/run-fulcrum-bench.sh        the same three over TLS (TLS=1 CONN_CLOSE=1:
#                                                 one full handshake per request; TLS=1 ... idle)
#   tests/bench/run-fulcrum-bench.sh syscalls     system calls per request of each proxy (strace -c)
#   tests/bench/run-fulcrum-bench.sh workers      workers = N against HAProxy nbthread N and nginx
#                                                 worker_processes N, unpinned (N: WORKERS, default
#                                                 every CPU up to 16; WORKERS="1 2" runs both)
#   tests/bench/run-fulcrum-bench.sh all          every row above and below, one after the other,
#                                                 into tests/bench/results/DATE-all-COMMIT/, with a
#                                                 summary table (summary.txt) at the end
#   tests/bench/run-fulcrum-bench.sh summary DIR  the summary table of an `all` run's folder again
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
export FC_BENCH_WORKERS=${FC_BENCH_WORKERS:-${PROXY_WORKERS:-1}}
export FC_BENCH_LOG_LEVEL=${FC_BENCH_LOG_LEVEL:-warn}
export PIN=${PIN:-1} ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-10s} CONNS=${CONNS:-64}
export MAX_OTHER=${MAX_OTHER:-25}
export CANDIDATE_NAME=${CANDIDATE_NAME:-fulcrum}
export CANDIDATE_PORT=${CANDIDATE_PORT:-18082}
# single quotes: expanded by the harness's `bash -c`, once $BENCH_DIR and the ports exist
export CANDIDATE_CMD=${CANDIDATE_CMD:-'"$FC_BENCH_GEN" "$BENCH_DIR/bench.conf" && exec "$FC_BENCH_BIN" -c "$BENCH_DIR/bench.conf"'}

echo "run-fulcrum-bench: $("$FC_BENCH_BIN" --version 2>&1 | head -n1); git $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD -- core plugins sdk 2>/dev/null || echo '+dirty'); PIN=$PIN ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS MAX_OTHER=$MAX_OTHER CONN_CLOSE=${CONN_CLOSE:-0} TLS=${TLS:-0}$([[ ${TLS:-0} == 1 ]] && echo " TLS_RESUME=${TLS_RESUME:-0}") workers=$FC_BENCH_WORKERS${BASELINE_CMD:+ baseline=$BASELINE_NAME} args: $*" >&2

# ------------------------------------------------------- workers, and all --
# workers: one run per N, every proxy with N threads or processes, wrk with N threads and the
# backend nginx with N workers, unpinned (they all share the box: compare cpu_us/r; rps scales
# only where the box has the cores for the load generator too).
run_workers() {  # OUTDIR(may be empty) -> runs
  local n list=${WORKERS:-$(( $(nproc) > 16 ? 16 : $(nproc) ))}
  for n in $list; do
    echo "run-fulcrum-bench: workers=$n (PIN=0, wrk -t$n, backend $n workers)" >&2
    PIN=0 PROXY_WORKERS=$n BACKEND_WORKERS=$n THREADS=$n FC_BENCH_WORKERS=$n CONNS=$(( ${CONNS:-64} * n )) \
      RESULTS_TSV=${1:+$1/workers-$n.tsv} "$here/proxy-bench.sh" bench
  done
}

# The table: medians per proxy; x best = fulcrum / the better of haproxy and nginx (lower is better)
summary() {  # DIR -> DIR/summary.txt, printed too
  local out=$1 f
  {
  cat "$out/machine.txt"
  printf '\n%-16s %-12s %12s %12s %12s %9s\n' "row" "figure" "fulcrum" "haproxy" "nginx" "x best"
  for f in "$out"/*.tsv; do
    awk -F'\t' -v row="$(basename "$f" .tsv)" -v cname="$CANDIDATE_NAME" '
      function med(key,   n, i, j, t, b) { n = 0; for (i = 1; i <= C[key]; i++) b[++n] = V[key, i]
        for (i = 2; i <= n; i++) { t = b[i]; for (j = i - 1; j >= 1 && b[j] > t; j--) b[j+1] = b[j]; b[j+1] = t }
        return n ? ((n % 2) ? b[(n+1)/2] : (b[n/2] + b[n/2+1]) / 2) : -1 }
      function add(key, v) { V[key, ++C[key]] = v }
      function line(fig, k, lower,   a, h, g, best) { a = med("candidate" k); h = med("haproxy" k); g = med("nginx" k)
        best = (h < g) ? h : g; if (!lower) best = (h > g) ? h : g
        printf "%-16s %-12s %12.2f %12.2f %12.2f %9.3f\n", row, fig, a, h, g, (best > 0 ? a / best : 0) }
      $1 == "round" { next }
      { s = $2; add(s "cpu", $10); add(s "rps", $5); add(s "p50", $6); add(s "p99", $7)
        if ($3 > 0) add(s "mb", ($24 + $3 * $25) / $3 / 1048576) }
      END {
        if (row ~ /^latency/ && C["directp50"] > 0) {
          d50 = med("directp50"); d99 = med("directp99")
          for (k in C) if (k ~ /p(50|99)$/ && k !~ /^direct/) for (i = 1; i <= C[k]; i++) V[k, i] -= (k ~ /p50$/ ? d50 : d99)
          line("added_p50us", "p50", 1); line("added_p99us", "p99", 1); line("cpu_us/req", "cpu", 1); exit }
        line("cpu_us/req", "cpu", 1)
        if (med("haproxymb") >= 0.25) {
          for (k in C) if (k ~ /cpu$/) { p = substr(k, 1, length(k) - 3); m = med(p "mb")
            for (i = 1; i <= C[k]; i++) V[p "gib", i] = V[k, i] / m * 1.024; C[p "gib"] = C[k] }
          line("cpu_ms/GiB", "gib", 1) }
        line("req/s", "rps", 0) }' "$f"
  done
  for f in "$out/idle.txt" "$out/tls-idle.txt"; do
    [[ -f $f ]] || continue
    awk -v row="$(basename "$f" .txt)" '/^IDLE_RESULT/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        k[v["label"] "/" v["mode"]] = v["per1000_kb"]; if (!(v["mode"] in M)) { M[v["mode"]] = 1; modes[++nm] = v["mode"] } }
      END { for (i = 1; i <= nm; i++) { m = modes[i]; x = k["fulcrum/" m]; h = k["haproxy/" m]; g = k["nginx/" m]; b = (h < g) ? h : g
          printf "%-16s %-12s %12.1f %12.1f %12.1f %9.3f\n", row, "kB/1000conn", x, h, g, (b > 0 ? x / b : 0) } }' "$f"
  done
  } | tee "$out/summary.txt"
}

if [[ ${1:-} == summary ]]; then
  summary "${2:?usage: run-fulcrum-bench.sh summary DIR}"
  exit
fi

if [[ ${1:-} == workers ]]; then
  run_workers ""
  exit
fi

if [[ ${1:-} != all ]]; then
  exec "$here/proxy-bench.sh" "$@"
fi

commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
out=${RESULTS_DIR:-$root/tests/bench/results/$(date +%F)-all-$commit}
mkdir -p "$out"
{ echo "commit $commit$(git -C "$root" diff --quiet HEAD -- core plugins sdk 2>/dev/null || echo ' +dirty')"
  echo "machine: $(uname -srm), $(nproc) cpus, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  echo "PIN=$PIN ROUNDS=$ROUNDS DURATION=$DURATION MAX_OTHER=$MAX_OTHER"; } >"$out/machine.txt"
echo "run-fulcrum-bench: all rows into $out" >&2
row() {  # NAME MODE ENV... -> the harness's output in NAME.txt, its raw rows in NAME.tsv
  local name=$1 mode=$2; shift 2
  echo "run-fulcrum-bench: row $name ($*)" >&2
  env "$@" RESULTS_TSV="$out/$name.tsv" "$here/proxy-bench.sh" "$mode" >"$out/$name.txt" 2>&1 ||
    echo "run-fulcrum-bench: row $name failed (see $out/$name.txt)" >&2
}
rm -f "$out"/*.tsv
row keepalive-64 bench CONNS=64
row keepalive-256 bench CONNS=256
row close-64 bench CONNS=64 CONN_CLOSE=1
row latency-1 bench CONNS=1 SCENARIOS="direct haproxy nginx candidate"
row bulk-download bench CONNS=64 URL_PATH=/bulk
row bulk-upload bench CONNS=64 URL_PATH=/upload WRK_BODY_BYTES=1048576
row tls-keepalive bench CONNS=64 TLS=1
row tls-handshake bench CONNS=64 TLS=1 CONN_CLOSE=1
row idle idle IDLE_CONNS=${IDLE_CONNS:-10000} IDLE_MODES=request
row tls-idle idle TLS=1 IDLE_CONNS=${IDLE_CONNS:-10000} IDLE_MODES=request
run_workers "$out" >"$out/workers.txt" 2>&1

summary "$out"
