#!/usr/bin/env bash
# reloads-under-load.sh - RELOADS (default 100) SIGHUPs of a running fulcrum while wrk
# keeps CONNS (default 32) keep-alive connections busy; prints wrk's summary and how many
# requests failed (socket errors plus non-2xx/3xx answers). Exits 1 if any failed or any
# reload was refused.
#
#   tests/bench/reloads-under-load.sh [BUILD_DIR]     (default build/)
#
# Three demo backends and fulcrum (2 workers, round_robin) on ports the kernel picks on
# 127.0.0.1; each reload rewrites the file with another strategy. Everything started is
# stopped by PID. Needs wrk and python3.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
RELOADS=${RELOADS:-100}
CONNS=${CONNS:-32}
. "$(dirname "${BASH_SOURCE[0]}")/processes.sh"

backends=""
for name in a b c; do
  p=$(free_port)
  "$build/demo_backend" --name "$name" --listen "127.0.0.1:$p" >/dev/null 2>&1 &
  pids+=($!)
  wait_port "$p"
  backends+="${backends:+, }{ address = \"127.0.0.1:$p\"; }"
done
port=$(free_port)
write_conf() {
  cat >"$tmp/fulcrum.conf.new" <<CONF
workers = 2;
plugin_dir = "$build/plugins";
log = { level = "info"; access = "off"; };
listeners = ( { address = "127.0.0.1:$port"; pool = "web"; } );
pools = ( { name = "web"; strategy = { plugin = "$1"; }; backends = ( $backends ); } );
CONF
  mv "$tmp/fulcrum.conf.new" "$tmp/fulcrum.conf"
}
write_conf round_robin
"$build/fulcrum" -c "$tmp/fulcrum.conf" 2>"$tmp/fulcrum.log" &
fpid=$!
pids+=($fpid)
wait_port "$port"

seconds=$(( RELOADS / 10 + 5 ))
wrk -t 2 -c "$CONNS" -d "${seconds}s" "http://127.0.0.1:$port/" >"$tmp/wrk.txt" 2>&1 &
wpid=$!
pids+=($wpid)
sleep 2
strategies=(round_robin least_conn ip_hash weighted p2c)
for i in $(seq 1 "$RELOADS"); do
  write_conf "${strategies[$((i % 5))]}"
  kill -HUP "$fpid"
  sleep 0.1
done
wait "$wpid" || true
sleep 1
cat "$tmp/wrk.txt"
done_n=$(grep -c "reload done" "$tmp/fulcrum.log" || true)
failed_n=$(grep -c "reload failed" "$tmp/fulcrum.log" || true)
errors=$(sed -n 's/.*Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1 \2 \3 \4/p' "$tmp/wrk.txt" | awk '{print $1+$2+$3+$4}')
non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$tmp/wrk.txt")
requests=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$tmp/wrk.txt")
echo "reloads: $done_n done, $failed_n refused (of $RELOADS); requests: ${requests:-?}; failed: socket errors ${errors:-0}, non-2xx/3xx ${non2xx:-0}"
[[ "$done_n" == "$RELOADS" && "${errors:-0}" == 0 && "${non2xx:-0}" == 0 ]]
