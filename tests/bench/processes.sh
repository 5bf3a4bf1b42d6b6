# processes.sh - sourced by the bench scripts that start their own processes on
# 127.0.0.1 (instructions-per-request.sh, reloads-under-load.sh): a scratch folder
# ($tmp), the PIDs to stop on exit ($pids, by PID only), and ports.

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# A port on 127.0.0.1 that was free a moment ago.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits up to a minute for something to accept connections on 127.0.0.1:$1.
wait_port() {
  for _ in $(seq 1 600); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$(basename "$0"): nothing listens on 127.0.0.1:$1" >&2
  return 1
}
