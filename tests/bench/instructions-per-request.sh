#!/usr/bin/env bash
# instructions-per-request.sh - fulcrum's CPU instructions per proxied request,
# counted by valgrind's callgrind: the same binary, inputs and environment give
# the same count whatever else the machine is doing, so two builds can be
# compared on a busy box where wall-clock CPU time is noise.
#
#   tests/bench/instructions-per-request.sh BUILD_DIR [BUILD_DIR ...]
#
# For each build dir (holding fulcrum, demo_backend and plugins/): starts three
# demo backends and fulcrum (workers = 1, round_robin, access log off) under
# callgrind, sends REQUESTS keep-alive GETs over CONNS connections (defaults
# 20000 and 8), then a second run with none, and prints
# (Ir with requests - Ir without) / REQUESTS. Everything runs on 127.0.0.1 on
# ports the kernel picks, and what it starts is stopped by PID.
# Needs valgrind and python3.
set -euo pipefail

REQUESTS=${REQUESTS:-20000}
CONNS=${CONNS:-8}
(( $# > 0 )) || { sed -n '2,15p' "$0"; exit 2; }
. "$(dirname "${BASH_SOURCE[0]}")/processes.sh"

# Sends $1 requests over $CONNS keep-alive connections to port $2 and checks every answer.
load() {
  python3 - "$1" "$2" "$CONNS" <<'PY'
import socket, sys, threading
n, port, conns = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
bad = []
def run(count):
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    for _ in range(count):
        s.sendall(req)
        status = f.readline()
        length = 0
        while True:
            line = f.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        f.read(length)
        if not status.startswith(b"HTTP/1.1 200"):
            bad.append(status)
    s.close()
threads = [threading.Thread(target=run, args=(n // conns,)) for _ in range(conns)]
for t in threads: t.start()
for t in threads: t.join()
if bad:
    sys.exit("bad responses: %d, first %r" % (len(bad), bad[0]))
PY
}

# Runs fulcrum of build $1 under callgrind with $2 requests; prints its total Ir.
measure() {
  local build=$1 n=$2 port conf out
  port=$(free_port)
  conf=$tmp/fulcrum.conf
  cat >"$conf" <<CONF
workers = 1;
plugin_dir = "$build/plugins";
log = { level = "warn"; access = "off"; };
listeners = ( { address = "127.0.0.1:$port"; pool = "bench"; } );
pools = ( { name = "bench"; strategy = { plugin = "round_robin"; };
            backends = ( $backend_list ); } );
CONF
  out=$tmp/callgrind.$n.out
  valgrind --tool=callgrind --callgrind-out-file="$out" --trace-children=no \
    "$build/fulcrum" -c "$conf" 2>"$tmp/valgrind.log" &
  local vpid=$!
  wait_port "$port"
  (( n > 0 )) && load "$n" "$port"
  kill -TERM "$vpid"
  wait "$vpid" || { cat "$tmp/valgrind.log" >&2; return 1; }
  # The totals of every thread's part, summed.
  local total=0 t
  for f in "$out"*; do
    t=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p;s/^summary: *\([0-9]*\).*/\1/p' "$f" | head -n1)
    total=$(( total + ${t:-0} ))
  done
  rm -f "$out"*
  echo "$total"
}

for build in "$@"; do
  build=$(cd "$build" && pwd)
  backend_list=""
  for i in 1 2 3; do
    p=$(free_port)
    "$build/demo_backend" --name "b$i" --listen "127.0.0.1:$p" >/dev/null 2>&1 &
    pids+=($!)
    wait_port "$p"
    backend_list+="${backend_list:+, }{ address = \"127.0.0.1:$p\"; }"
  done
  with=$(measure "$build" "$REQUESTS")
  without=$(measure "$build" 0)
  awk -v b="$build" -v w="$with" -v o="$without" -v n="$REQUESTS" \
    'BEGIN { printf "%s: %.0f instructions per request (%d requests; %d Ir with, %d without)\n", b, (w - o) / n, n, w, o }'
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  pids=()
done
