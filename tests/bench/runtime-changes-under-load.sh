#!/usr/bin/env bash
# runtime-changes-under-load.sh - ROUNDS (default 50) rounds of runtime changes through
# the admin API while wrk keeps CONNS (default 32) keep-alive connections busy: each round
# adds a backend, drains one of the file's, makes it ready and removes the added one (four
# new generations). Prints wrk's summary, how many changes were answered 2xx and how many
# requests failed (socket errors plus non-2xx/3xx answers). Exits 1 if any change or
# request failed.
#
#   tests/bench/runtime-changes-under-load.sh [BUILD_DIR]     (default build/)
#
# Three demo backends (two in the file, one added at run time) and fulcrum (2 workers,
# round_robin, admin listener) on ports the kernel picks on 127.0.0.1. Everything started
# is stopped by PID. Needs wrk, curl and python3.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
ROUNDS=${ROUNDS:-50}
CONNS=${CONNS:-32}
. "$(dirname "${BASH_SOURCE[0]}")/processes.sh"

ports=()
for name in a b c; do
  p=$(free_port)
  "$build/demo_backend" --name "$name" --listen "127.0.0.1:$p" >/dev/null 2>&1 &
  pids+=($!)
  wait_port "$p"
  ports+=("$p")
done
port=$(free_port)
admin=$(free_port)
cat >"$tmp/fulcrum.conf" <<CONF
workers = 2;
plugin_dir = "$build/plugins";
log = { level = "info"; access = "off"; };
listeners = ( { address = "127.0.0.1:$port"; pool = "web"; } );
pools = ( { name = "web"; strategy = { plugin = "round_robin"; };
            backends = ( { address = "127.0.0.1:${ports[0]}"; }, { address = "127.0.0.1:${ports[1]}"; } ); } );
admin = { address = "127.0.0.1:$admin"; };
CONF
"$build/fulcrum" -c "$tmp/fulcrum.conf" 2>"$tmp/fulcrum.log" &
pids+=($!)
wait_port "$port"
wait_port "$admin"

seconds=$(( ROUNDS / 5 + 5 ))
wrk -t 2 -c "$CONNS" -d "${seconds}s" "http://127.0.0.1:$port/" >"$tmp/wrk.txt" 2>&1 &
wpid=$!
pids+=($wpid)
sleep 2
api="http://127.0.0.1:$admin/api/pools/web/backends"
ok=0 total=0 slowest=0
change() {
  local out code ms
  out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -X "$1" "$2" -d "$3")
  code=${out% *} ms=$(awk -v t="${out#* }" 'BEGIN { printf "%d", t * 1000 }')
  total=$((total + 1))
  [[ $code == 2* ]] && ok=$((ok + 1)) || echo "$1 $2: $code" >&2
  (( ms > slowest )) && slowest=$ms
  return 0
}
for _ in $(seq 1 "$ROUNDS"); do
  change POST "$api" "{\"address\": \"127.0.0.1:${ports[2]}\"}"
  change PATCH "$api/127.0.0.1%3A${ports[0]}" '{"state": "drain"}'
  change PATCH "$api/127.0.0.1%3A${ports[0]}" '{"state": "ready"}'
  change DELETE "$api/127.0.0.1%3A${ports[2]}" ''
  sleep 0.1
done
wait "$wpid" || true
cat "$tmp/wrk.txt"
errors=$(sed -n 's/.*Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1 \2 \3 \4/p' "$tmp/wrk.txt" | awk '{print $1+$2+$3+$4}')
non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$tmp/wrk.txt")
requests=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$tmp/wrk.txt")
echo "changes: $ok of $total answered 2xx (slowest answer ${slowest} ms); requests: ${requests:-?}; failed: socket errors ${errors:-0}, non-2xx/3xx ${non2xx:-0}"
[[ "$ok" == "$total" && "${errors:-0}" == 0 && "${non2xx:-0}" == 0 ]]
