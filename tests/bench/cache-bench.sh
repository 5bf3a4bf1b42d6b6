#!/usr/bin/env bash
# cache-bench.sh - fulcrum's response cache next to nginx's proxy_cache, on loopback.
#
#   tests/bench/cache-bench.sh                       c=64 keep-alive, 5 rounds x 10 s, pinned
#   ROUNDS=3 DURATION=5s tests/bench/cache-bench.sh  shorter (about 2 minutes after the build)
#   tests/bench/cache-bench.sh help                  this text
#
# One backend nginx serves GET /obj: a fixed OBJ_BYTES body (1024) with
# `Cache-Control: max-age=3600`. In front of it, each one event loop on its own port:
#   fulcrum-proxy   fulcrum (workers = 1), no cache group
#   fulcrum-cache   fulcrum (workers = 1), cache = { plugin = "memory"; max_bytes = 64 MiB;
#                   max_object_bytes = 1 MiB; }
#   nginx-proxy     nginx (worker_processes 1), proxy_pass with upstream keepalive, no cache
#   nginx-cache     the same plus proxy_cache (proxy_cache_path in the scratch folder,
#                   keys_zone=c:10m, proxy_cache_valid 200 1h; the backend's max-age is honoured)
# Before measuring it checks that both caches hit (fulcrum: `Cache-Status: fulcrum; hit`;
# nginx: `X-Cache-Status: HIT`) and that every proxy returns the backend's body; it fails if not.
#
# Each round runs the four scenarios (the order alternates between rounds) with wrk -t 1,
# CONNS keep-alive connections, a WARMUP run then DURATION measured. Per run: req/s, p50/p99
# (wrk), non-2xx and socket errors, and from /proc/PID/stat the CPU time (utime+stime) of the
# proxy (all its processes) and of the backend nginx over the measured window, per request.
# It prints the raw rows, the medians per scenario and three ratios of medians (with the
# min..max of the per-round paired ratios): fulcrum-cache/fulcrum-proxy,
# fulcrum-cache/nginx-cache, fulcrum-proxy/nginx-proxy.
#
# Knobs (environment, defaults in brackets): ROUNDS [5] DURATION [10s] WARMUP [2s] CONNS [64]
# PIN [1: the proxy under test on PROXY_CPU (0), wrk and the backend on LOAD_CPU (1)]
# OBJ_BYTES [1024] MAX_OTHER [25: a run while other processes used more than this % of a cpu
# is repeated, RETRIES (2) times at most; 0 = never] RESULTS_TSV [file the raw rows are
# appended to] KEEP_TMP [0; 1 keeps configs and logs]. FC_BENCH_SKIP_BUILD=1 reuses
# build-bench/; FC_BENCH_BUILD_DIR moves it. Ports are picked free at start.
#
# Installs what is missing (apt-get, as root, only when missing): nginx-light or nginx, wrk,
# curl, python3, util-linux, procps, and the build deps. All traffic goes to 127.0.0.1, every
# wrk run is bounded (-d and an outer timeout), and what it starts is stopped by PID on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${FC_BENCH_BUILD_DIR:-$root/build-bench}
jobs=$(nproc 2>/dev/null || echo 2)

case "${1:-}" in
  help|-h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "cache-bench: unknown argument '$1' (help)" >&2; exit 2 ;;
esac

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-64}
PIN=${PIN:-1}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OBJ_BYTES=${OBJ_BYTES:-1024}
MAX_OTHER=${MAX_OTHER:-25}
RETRIES=${RETRIES:-2}
RESULTS_TSV=${RESULTS_TSV:-}
KEEP_TMP=${KEEP_TMP:-0}
HOST=127.0.0.1                      # loopback only, deliberately not configurable
SCENARIOS=(fulcrum-proxy fulcrum-cache nginx-proxy nginx-cache)

log() { printf '# %s\n' "$*" >&2; }
die() { printf 'cache-bench: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- packages --
missing=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_cmd nginx || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
have_cmd wrk || missing+=(wrk)
have_cmd curl || missing+=(curl)
have_cmd python3 || missing+=(python3)
have_cmd taskset || missing+=(util-linux)
have_cmd ps || missing+=(procps)
if [[ ${FC_BENCH_SKIP_BUILD:-0} != 1 ]]; then
  have_cmd cmake || missing+=(cmake)
  have_cmd cc || missing+=(build-essential)
  have_cmd pkg-config || missing+=(pkg-config)
  for p in libuv1-dev node-llhttp libconfig-dev libhiredis-dev libssl-dev libjansson-dev libc-ares-dev; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
fi
if (( ${#missing[@]} )); then
  [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]} and not root: apt-get install them"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  pkgs=()
  for p in "${missing[@]}"; do
    if [[ $p == nginx ]]; then
      # nginx-light has return, proxy_pass, upstream keepalive and proxy_cache; else nginx
      if apt-cache show nginx-light >/dev/null 2>&1; then pkgs+=(nginx-light); else pkgs+=(nginx); fi
    else
      pkgs+=("$p")
    fi
  done
  log "installing ${pkgs[*]}"
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
fi
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin ;; esac
export PATH

# ------------------------------------------------------------------- build --
if [[ ${FC_BENCH_SKIP_BUILD:-0} != 1 ]]; then
  log "building Release in $build"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DFC_WERROR=ON -DFC_BUILD_TESTS=OFF >/dev/null
  cmake --build "$build" -j "$jobs" >/dev/null
fi
[[ -x $build/fulcrum ]] || die "no $build/fulcrum"
for p in round_robin memory; do
  [[ -f $build/plugins/$p.so ]] || die "no $build/plugins/$p.so"
done

# ------------------------------------------------------------------- setup --
# shellcheck source-path=SCRIPTDIR source=processes.sh
. "$here/processes.sh"               # $tmp, $pids (stopped by PID on exit), free_port, wait_port
if [[ $KEEP_TMP == 1 ]]; then      # stop the PIDs as processes.sh's cleanup does, keep the folder
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; log "temp dir kept: $tmp"' EXIT
fi
trap 'exit 130' INT                 # through the EXIT trap: what was started is stopped
trap 'exit 143' TERM
chmod 755 "$tmp"                    # nginx workers run as nobody when we are root

CLK_TCK=$(getconf CLK_TCK)
ulimit -n 65536 2>/dev/null || true
NOFILE=$(ulimit -n)

dur_s() {  # "10s" / "1m" / "500ms" / "3" -> seconds
  awk -v d="$1" 'BEGIN{ if (d ~ /ms$/) {sub(/ms$/,"",d); print d/1000}
    else if (d ~ /s$/) {sub(/s$/,"",d); print d+0}
    else if (d ~ /m$/) {sub(/m$/,"",d); print d*60} else print d+0 }'
}

proc_tree() {  # PID -> the PID and all its descendants (nginx: master, worker, cache manager/loader)
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { kids[$2] = kids[$2] " " $1 }
    END { q[1] = root; n = 1; i = 1
          while (i <= n) { p = q[i++]; print p
            m = split(kids[p], k, " "); for (j = 1; j <= m; j++) q[++n] = k[j] } }'
}

cpu_ticks() {  # PIDs... -> sum of utime+stime (clock ticks; all threads) over all of them
  local p s f total=0
  for p in "$@"; do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    s=${s##*) }                       # drop "pid (comm) "
    read -r -a f <<<"$s"              # f[0] is field 3: utime = field 14 -> f[11], stime -> f[12]
    total=$(( total + f[11] + f[12] ))
  done
  echo "$total"
}

cpu_idle() {  # -> "<ns> <idle+iowait+steal ticks, all cpus> <the same, LOAD_CPU alone>" (/proc/stat)
  echo "$(date +%s%N) $(awk '/^cpu[0-9]/{ t += $5 + $6 + (NF >= 9 ? $9 : 0) } END { print t }' /proc/stat) $(awk -v c="cpu$LOAD_CPU" '$1 == c { print $5 + $6 + (NF >= 9 ? $9 : 0) }' /proc/stat)"
}

# a fixed body of OBJ_BYTES characters (letters and digits: nothing nginx would interpret)
BODY=$(awk -v n="$OBJ_BYTES" 'BEGIN { a = "abcdefghijklmnopqrstuvwxyz0123456789"; for (i = 0; i < n; i++) printf "%s", substr(a, i % 36 + 1, 1) }')
printf '%s' "$BODY" >"$tmp/body"

BACKEND_PORT=$(free_port)
declare -A PORT PID
for s in "${SCENARIOS[@]}"; do PORT[$s]=$(free_port); done

nginx_conf() {  # DIR HTTP-BLOCK-BODY -> DIR/nginx.conf
  mkdir -p "$1"
  cat >"$1/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $1/nginx.pid;
error_log $1/error.log warn;
worker_rlimit_nofile $NOFILE;
events { worker_connections 16384; multi_accept off; }
http {
  access_log off;
  default_type text/plain;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  client_body_temp_path $1/client_body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
$2
}
EOF
}

nginx_proxy_http() {  # PORT CACHE(0|1) -> the http{} body of an nginx proxy
  local cache_path='' cache_loc=''
  if [[ $2 == 1 ]]; then
    cache_path="  proxy_cache_path $tmp/nginx-cache/cache levels=1:2 keys_zone=c:10m max_size=256m inactive=1h use_temp_path=off;"
    cache_loc="      proxy_cache c;
      proxy_cache_valid 200 1h;
      add_header X-Cache-Status \$upstream_cache_status;"
  fi
  cat <<EOF
$cache_path
  upstream be {
    server $HOST:$BACKEND_PORT;
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
  }
  server {
    listen $HOST:$1 backlog=4096;
    client_header_timeout 120s;
    location / {
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
$cache_loc
    }
  }
EOF
}

fulcrum_conf() {  # OUT PORT CACHE(0|1)
  local cache=''
  [[ $3 == 1 ]] && cache='
    cache = { plugin = "memory"; max_bytes = 67108864; max_object_bytes = 1048576; };'
  cat >"$1" <<CONF
# generated by tests/bench/cache-bench.sh
workers = 1;
plugin_dir = "$build/plugins";
log = { level = "warn"; access = "off"; };
timeouts = { connect_ms = 5000; client_header_ms = 120000; idle_ms = 120000; upstream_ms = 120000; };
listeners = ( { address = "$HOST:$2"; pool = "web"; } );
pools = (
  { name = "web";
    strategy = { plugin = "round_robin"; };$cache
    backends = ( { address = "$HOST:$BACKEND_PORT"; } );
  }
);
CONF
}

start() {  # NAME CPU CMD... -> starts in the background, PID[NAME]
  local name=$1 cpu=$2; shift 2
  # no shell function in between: $! must be the server itself (taskset execs it)
  if [[ $PIN == 1 ]]; then taskset -c "$cpu" "$@" >"$tmp/$name.out" 2>&1 &
  else "$@" >"$tmp/$name.out" 2>&1 &
  fi
  PID[$name]=$!; pids+=("$!")
}

nginx_conf "$tmp/backend" "  server {
    listen $HOST:$BACKEND_PORT backlog=4096;
    location /obj { add_header Cache-Control \"max-age=3600\"; return 200 \"$BODY\"; }
  }"
start backend "$LOAD_CPU" nginx -p "$tmp/backend/" -e "$tmp/backend/error.log" -c "$tmp/backend/nginx.conf"
wait_port "$BACKEND_PORT" || { cat "$tmp/backend.out" >&2; die "backend nginx did not start"; }

mkdir -p "$tmp/nginx-cache/cache"
nginx_conf "$tmp/nginx-proxy" "$(nginx_proxy_http "${PORT[nginx-proxy]}" 0)"
nginx_conf "$tmp/nginx-cache" "$(nginx_proxy_http "${PORT[nginx-cache]}" 1)"
fulcrum_conf "$tmp/fulcrum-proxy.conf" "${PORT[fulcrum-proxy]}" 0
fulcrum_conf "$tmp/fulcrum-cache.conf" "${PORT[fulcrum-cache]}" 1
# the idle ones sit on PROXY_CPU too: an idle event loop takes no CPU
start fulcrum-proxy "$PROXY_CPU" "$build/fulcrum" -c "$tmp/fulcrum-proxy.conf"
start fulcrum-cache "$PROXY_CPU" "$build/fulcrum" -c "$tmp/fulcrum-cache.conf"
for s in nginx-proxy nginx-cache; do
  start "$s" "$PROXY_CPU" nginx -p "$tmp/$s/" -e "$tmp/$s/error.log" -c "$tmp/$s/nginx.conf"
done
for s in "${SCENARIOS[@]}"; do
  wait_port "${PORT[$s]}" || { cat "$tmp/$s.out" >&2; die "$s did not start"; }
done

# ------------------------------------------------------------------ checks --
fetch() {  # SCENARIO N -> headers of the Nth GET /obj in $tmp/check-S-N.h, body in .b
  curl -sS --max-time 5 -D "$tmp/check-$1-$2.h" -o "$tmp/check-$1-$2.b" "http://$HOST:${PORT[$1]}/obj" ||
    die "$1: GET /obj failed"
  tr -d '\r' <"$tmp/check-$1-$2.h" >"$tmp/check-$1-$2.t"
  grep -q '^HTTP/1.1 200' "$tmp/check-$1-$2.t" || { cat "$tmp/check-$1-$2.t" >&2; die "$1: GET /obj is not 200"; }
  cmp -s "$tmp/body" "$tmp/check-$1-$2.b" || die "$1: GET /obj is not the backend's $OBJ_BYTES-byte body"
}
for s in "${SCENARIOS[@]}"; do fetch "$s" 1; fetch "$s" 2; done
grep -q '^Cache-Control: max-age=3600$' "$tmp/check-fulcrum-proxy-1.t" || die "the backend's Cache-Control did not come through"
grep -qi '^Cache-Status: fulcrum; fwd=miss$' "$tmp/check-fulcrum-cache-1.t" ||
  { cat "$tmp/check-fulcrum-cache-1.t" >&2; die "fulcrum-cache: the first GET /obj is not 'Cache-Status: fulcrum; fwd=miss'"; }
grep -qi '^Cache-Status: fulcrum; hit$' "$tmp/check-fulcrum-cache-2.t" ||
  { cat "$tmp/check-fulcrum-cache-2.t" >&2; die "fulcrum-cache: the second GET /obj is not a hit (no 'Cache-Status: fulcrum; hit')"; }
grep -qi '^X-Cache-Status: HIT$' "$tmp/check-nginx-cache-2.t" ||
  { cat "$tmp/check-nginx-cache-2.t" >&2; die "nginx-cache: the second GET /obj is not a hit (no 'X-Cache-Status: HIT')"; }
grep -qi '^Cache-Status:.*hit' "$tmp/check-fulcrum-proxy-2.t" && die "fulcrum-proxy answers from a cache"
grep -qi '^X-Cache-Status:' "$tmp/check-nginx-proxy-2.t" && die "nginx-proxy answers from a cache"
log "check: all four return the backend's $OBJ_BYTES-byte body; fulcrum-cache: '$(grep -i '^Cache-Status' "$tmp/check-fulcrum-cache-1.t")' then '$(grep -i '^Cache-Status' "$tmp/check-fulcrum-cache-2.t")'; nginx-cache: '$(grep -i '^X-Cache-Status' "$tmp/check-nginx-cache-1.t")' then '$(grep -i '^X-Cache-Status' "$tmp/check-nginx-cache-2.t")'"

# --------------------------------------------------------------------- wrk --
cat >"$tmp/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKRESULT requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
EOF

run_wrk() {  # PORT DURATION OUT -> wrk on LOAD_CPU, bounded; its own CPU time after WRKTIMES (`times`)
  local limit rc=0
  limit=$(awk -v d="$(dur_s "$2")" 'BEGIN { printf "%d", d + 30 }')
  timeout -s INT "$limit" bash -c '"$@"; rc=$?; echo WRKTIMES; times; exit $rc' _ \
    taskset -c "$([[ $PIN == 1 ]] && echo "$LOAD_CPU" || echo "0-$(( $(nproc) - 1 ))")" \
    wrk -t1 -c"$CONNS" -d"$2" --latency --timeout 5s -s "$tmp/report.lua" "http://$HOST:$1/obj" >"$3" 2>&1 &
  pids+=("$!")
  wait "$!" || rc=$?
  unset 'pids[-1]'
  return "$rc"
}

RAW=$tmp/raw.tsv
HDR=$'round\tscenario\trequests\tduration_s\trps\tp50_us\tp99_us\tnon2xx\tsock_err\tproxy_ticks\tproxy_us_req\tbackend_ticks\tbackend_us_req\tproxy_cpu_pct\twrk_cpu_pct\tload_cpu_pct\tother_cpu_pct\tconns\tpin\tobj_bytes'
echo "$HDR" >"$RAW"

measure() {  # ROUND SCENARIO -> one row in $tmp/row
  local r=$1 s=$2 out=$tmp/wrk-r$1-$2 px=() be=() t0 t1 b0 b1 c0 c1 res wcpu
  if [[ $(dur_s "$WARMUP") != 0 ]]; then
    run_wrk "${PORT[$s]}" "$WARMUP" "$out.warmup" || log "warm-up wrk exit $? ($s)"
    sleep 0.5
  fi
  mapfile -t px < <(proc_tree "${PID[$s]}")
  mapfile -t be < <(proc_tree "${PID[backend]}")
  c0=$(cpu_idle); t0=$(cpu_ticks "${px[@]}"); b0=$(cpu_ticks "${be[@]}")
  run_wrk "${PORT[$s]}" "$DURATION" "$out.out" || log "wrk exit $? ($s)"
  t1=$(cpu_ticks "${px[@]}"); b1=$(cpu_ticks "${be[@]}"); c1=$(cpu_idle)
  res=$(grep '^WRKRESULT' "$out.out") || { cat "$out.out" >&2; die "no wrk result for $s"; }
  # wrk's CPU seconds: the line after the one after WRKTIMES is "XmY.YYYs XmY.YYYs" (children's user, sys)
  wcpu=$(awk '/^WRKTIMES/ { m = NR } m && NR == m + 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub(/s$/, "", a[2]); t += a[1] * 60 + a[2] } print t }' "$out.out")
  awk -v r="$r" -v s="$s" -v res="$res" -v dt=$((t1 - t0)) -v db=$((b1 - b0)) -v hz="$CLK_TCK" \
      -v c0="$c0" -v c1="$c1" -v ncpu="$(nproc)" -v wcpu="${wcpu:-0}" -v conns="$CONNS" -v pin="$PIN" -v ob="$OBJ_BYTES" '
    BEGIN { n = split(res, kv, " "); for (i = 2; i <= n; i++) { split(kv[i], a, "="); v[a[1]] = a[2] }
      req = v["requests"]; d = v["duration_us"] / 1e6
      split(c0, x, " "); split(c1, y, " "); w = (y[1] - x[1]) / 1e9          # wall seconds of the window
      busy = ncpu * w - (y[2] - x[2]) / hz                                   # cpu-seconds busy, all cpus
      load = 100 * (1 - (y[3] - x[3]) / hz / w)                              # LOAD_CPU busy %
      other = 100 * (busy - dt / hz - db / hz - wcpu) / w; if (other < 0) other = 0
      printf "%d\t%s\t%d\t%.3f\t%.1f\t%d\t%d\t%d\t%d\t%d\t%.3f\t%d\t%.3f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%d\n",
        r, s, req, d, req / d, v["p50_us"], v["p99_us"], v["status"], v["connect"] + v["read"] + v["write"] + v["timeout"],
        dt, (req ? dt * 1e6 / hz / req : 0), db, (req ? db * 1e6 / hz / req : 0), 100 * dt / hz / d, 100 * wcpu / d,
        load, other, conns, pin, ob }' >"$tmp/row"
  awk -F'\t' '{ printf "# round %d %-13s rps=%-7.0f p50=%5dus p99=%6dus non2xx=%d err=%d proxy=%.2fus/req backend=%.2fus/req %%cpu: proxy=%.0f wrk=%.0f load_cpu=%.0f other=%.0f\n",
    $1, $2, $5, $6, $7, $8, $9, $11, $13, $14, $15, $16, $17 }' "$tmp/row" >&2
}

measure_guarded() {  # ROUND SCENARIO -> measure, repeated while other load > MAX_OTHER (RETRIES times at most)
  local try other
  for ((try = 0; ; try++)); do
    measure "$1" "$2"
    other=$(awk -F'\t' '{ printf "%d", $17 }' "$tmp/row")
    if (( MAX_OTHER > 0 && other > MAX_OTHER && try < RETRIES )); then
      log "  other load ${other}% > MAX_OTHER=${MAX_OTHER}%: discarding this run, retrying in 5 s"
      sleep 5; continue
    fi
    (( MAX_OTHER > 0 && other > MAX_OTHER )) && log "  other load still ${other}% after $RETRIES retries: keeping it"
    cat "$tmp/row" >>"$RAW"; return 0
  done
}

# --------------------------------------------------------------------- run --
rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')
git -C "$root" diff --quiet HEAD -- core plugins sdk 2>/dev/null || rev+=+dirty
log "$("$build/fulcrum" --version 2>&1 | head -n1) (git $rev, $build); nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'); wrk $(wrk -v 2>&1 | awk 'NR==1{print $2}'); kernel $(uname -r); $(nproc) cpus"
log "rounds=$ROUNDS duration=$DURATION warmup=$WARMUP conns=$CONNS wrk -t1 pin=$PIN (proxy cpu $PROXY_CPU, wrk + backend cpu $LOAD_CPU) obj_bytes=$OBJ_BYTES max_other=$MAX_OTHER; ports: backend $BACKEND_PORT$(for s in "${SCENARIOS[@]}"; do printf ', %s %s' "$s" "${PORT[$s]}"; done)"
for ((r = 1; r <= ROUNDS; r++)); do
  order=()
  if (( r % 2 )); then order=("${SCENARIOS[@]}")
  else for ((i = ${#SCENARIOS[@]} - 1; i >= 0; i--)); do order+=("${SCENARIOS[i]}"); done; fi
  for s in "${order[@]}"; do measure_guarded "$r" "$s"; done
done
# both caches still hit at the end
fetch fulcrum-cache 3; fetch nginx-cache 3
grep -qi '^Cache-Status: fulcrum; hit$' "$tmp/check-fulcrum-cache-3.t" || die "fulcrum-cache: no longer a hit after the runs"
grep -qi '^X-Cache-Status: HIT$' "$tmp/check-nginx-cache-3.t" || die "nginx-cache: no longer a hit after the runs"
for s in "${SCENARIOS[@]}"; do
  [[ -d /proc/${PID[$s]} ]] || { cat "$tmp/$s.out" >&2; die "$s exited during the runs"; }
done

if [[ -n $RESULTS_TSV ]]; then
  [[ -s $RESULTS_TSV ]] || echo "$HDR" >"$RESULTS_TSV"
  tail -n +2 "$RAW" >>"$RESULTS_TSV"
fi

echo
echo "== raw rows (one per run)"
column -t -s $'\t' "$RAW" 2>/dev/null || cat "$RAW"
echo
echo "== GET /obj ($OBJ_BYTES-byte body, max-age=3600), conns=$CONNS wrk -t1, rounds=$ROUNDS x $DURATION (after $WARMUP warm-up), pin=$PIN | medians over rounds; proxy_us/r = the proxy's utime+stime per request (all its processes); backend_us/r = the same for the backend nginx; %cpu = the proxy's cpu use (% of one cpu); load% = cpu $LOAD_CPU (wrk + backend) busy; oth% = worst-run cpu used by anything else; errs = non-2xx + socket errors, summed"
awk -F'\t' -v lcpu="$LOAD_CPU" -v pin="$PIN" '
  function med(arr, n,   i, j, t, b) { for (i = 1; i <= n; i++) b[i] = arr[i]
    for (i = 2; i <= n; i++) { t = b[i]; for (j = i - 1; j >= 1 && b[j] > t; j--) b[j+1] = b[j]; b[j+1] = t }
    return (n % 2) ? b[(n+1)/2] : (b[n/2] + b[n/2+1]) / 2 }
  function mn(arr, n,   i, x) { x = arr[1]; for (i = 2; i <= n; i++) if (arr[i] < x) x = arr[i]; return x }
  function mx(arr, n,   i, x) { x = arr[1]; for (i = 2; i <= n; i++) if (arr[i] > x) x = arr[i]; return x }
  NR == 1 { next }
  { s = $2; if (!(s in N)) order[++ns] = s; k = ++N[s]
    RPS[s, k] = $5; P50[s, k] = $6; P99[s, k] = $7; ERR[s] += $8 + $9; PX[s, k] = $11; BE[s, k] = $13
    PCT[s, k] = $14; LD[s, k] = $16; if ($17 > OTH[s]) OTH[s] = $17
    byr_rps[s, $1] = $5; byr_px[s, $1] = $11; rounds[$1] = 1
    if (pin == 1 && $16 >= 97 && $14 < 90) LB[s]++ }
  function ratio(a, b, label,   r, x, lo1, hi1, lo2, hi2) {
    if (!(a in N) || !(b in N)) return
    lo1 = lo2 = 1e9; hi1 = hi2 = -1e9
    for (r in rounds) { if (!((a, r) in byr_rps) || !((b, r) in byr_rps)) continue
      x = byr_rps[a, r] / byr_rps[b, r]; if (x < lo1) lo1 = x; if (x > hi1) hi1 = x
      x = (byr_px[b, r] > 0) ? byr_px[a, r] / byr_px[b, r] : 0; if (x < lo2) lo2 = x; if (x > hi2) hi2 = x }
    printf "%-30s %7.3f [%5.3f..%5.3f] %7.3f [%5.3f..%5.3f]\n", label, mr[a] / mr[b], lo1, hi1,
      (mp[b] > 0 ? mp[a] / mp[b] : 0), lo2, hi2 }
  END {
    printf "%-13s %8s %15s %6s %6s %5s %12s %13s %12s %5s %5s %4s\n", "scenario", "rps_med", "rps_min..max", "p50us", "p99us",
      "errs", "proxy_us/r", "px_min..max", "backend_us/r", "%cpu", "load%", "oth%"
    for (i = 1; i <= ns; i++) { s = order[i]; n = N[s]
      for (k = 1; k <= n; k++) { a[k] = RPS[s, k]; b[k] = PX[s, k]; c[k] = P50[s, k]; d[k] = P99[s, k]; e[k] = BE[s, k]; f[k] = PCT[s, k]; g[k] = LD[s, k] }
      mr[s] = med(a, n); mp[s] = med(b, n); mb[s] = med(e, n)
      printf "%-13s %8.0f %7.0f..%-7.0f %6.0f %6.0f %5d %12.2f %6.2f..%-6.2f %12.3f %5.0f %5.0f %4.0f\n", s, mr[s], mn(a, n), mx(a, n),
        med(c, n), med(d, n), ERR[s], mp[s], mn(b, n), mx(b, n), mb[s], med(f, n), med(g, n), OTH[s] }
    printf "-- ratios of medians [min..max of the per-round paired ratios]\n"
    printf "%-30s %22s %22s\n", "", "rps x", "proxy_us/r x"
    ratio("fulcrum-cache", "fulcrum-proxy", "fulcrum-cache / fulcrum-proxy")
    ratio("fulcrum-cache", "nginx-cache", "fulcrum-cache / nginx-cache")
    ratio("fulcrum-proxy", "nginx-proxy", "fulcrum-proxy / nginx-proxy")
    ratio("nginx-cache", "nginx-proxy", "nginx-cache / nginx-proxy")
    for (i = 1; i <= ns; i++) { s = order[i]
      if (ERR[s]) printf "NOTE: %s: %d non-2xx or socket errors\n", s, ERR[s]
      if (LB[s]) printf "NOTE: %s: cpu %s (wrk + backend) saturated while the proxy used <90%% of its cpu in %d/%d runs: rps there is bounded by wrk, not by the proxy; compare proxy_us/r\n", s, lcpu, LB[s], N[s]
      if (OTH[s] > 20) printf "NOTE: %s: other load reached %.0f%% of a cpu in some run: rps and latency there are unreliable, proxy_us/r less so\n", s, OTH[s] }
    if (("fulcrum-cache" in mb) && ("fulcrum-proxy" in mb) && mb["fulcrum-cache"] > 0.1 * mb["fulcrum-proxy"])
      printf "NOTE: fulcrum-cache: the backend still works %.3f us/req (fulcrum-proxy: %.3f): not every request is a hit\n", mb["fulcrum-cache"], mb["fulcrum-proxy"]
    if (("nginx-cache" in mb) && ("nginx-proxy" in mb) && mb["nginx-cache"] > 0.1 * mb["nginx-proxy"])
      printf "NOTE: nginx-cache: the backend still works %.3f us/req (nginx-proxy: %.3f): not every request is a hit\n", mb["nginx-cache"], mb["nginx-proxy"]
    printf "SUMMARY"
    for (i = 1; i <= ns; i++) { s = order[i]; printf " | %s %.0f rps %.2f us/req", s, mr[s], mp[s] }
    printf "\n" }' "$RAW"
