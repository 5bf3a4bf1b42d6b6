#!/usr/bin/env bash
# quickstart.sh: build fulcrum and watch it balance three demo backends.
#
#   examples/quickstart.sh                 build, start everything in the background
#   examples/quickstart.sh --foreground    the same, but stay attached; Ctrl-C stops all
#   examples/quickstart.sh stop            stop what the last start left running
#
# On a fresh Debian bookworm it first installs the packages the build needs
# (only those missing; that step needs root or sudo). It builds into build/ at
# the top of the repository, starts demo_backend three times (alpha, beta and
# gamma on 127.0.0.1:9001-9003) and fulcrum on 127.0.0.1:8080 with
# examples/quickstart.conf, and records their PIDs in build/quickstart.pids.
# Logs go to build/quickstart-*.log.
#
# Environment: FULCRUM_PORT (default 8080) and BACKEND_PORTS (default
# "9001 9002 9003") move the demo to other ports; BUILD_DIR (default build)
# picks another build folder.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${BUILD_DIR:-build}"
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
PIDFILE="$BUILD/quickstart.pids"
CONF="$BUILD/quickstart.conf"
FULCRUM_PORT="${FULCRUM_PORT:-8080}"
ADMIN_PORT="${ADMIN_PORT:-9901}"
read -r -a BACKEND_PORTS <<< "${BACKEND_PORTS:-9001 9002 9003}"
NAMES=(alpha beta gamma)
PACKAGES=(build-essential cmake pkg-config libuv1-dev node-llhttp libconfig-dev libjansson-dev libc-ares-dev libcmocka-dev libhiredis-dev curl)

say() { printf '%s\n' "$*"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

# True if PID is alive and runs a command line this script starts, so that a
# stale PID file never makes us kill an unrelated process that reused a PID.
# (The command line, not /proc/PID/exe: a rebuild replaces the binaries.)
is_ours() {
    local cmd
    cmd="$(tr '\0' ' ' 2>/dev/null < "/proc/$1/cmdline")" || return 1
    case "$cmd" in
    *"$BUILD/demo_backend --name "* | *"$BUILD/fulcrum -c "*) return 0 ;;
    *) return 1 ;;
    esac
}

stop_all() {
    [ -f "$PIDFILE" ] || { say "nothing to stop (no $PIDFILE)"; return 0; }
    local pids=() pid
    read -r -a pids < "$PIDFILE" || true
    for pid in "${pids[@]}"; do
        if is_ours "$pid"; then kill "$pid" 2>/dev/null || true; fi
    done
    for _ in $(seq 50); do
        local alive=0
        for pid in "${pids[@]}"; do if is_ours "$pid"; then alive=1; fi; done
        if [ "$alive" = 0 ]; then break; fi
        sleep 0.1
    done
    rm -f "$PIDFILE"
    say "stopped ${pids[*]}"
}

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
            missing+=("$p")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "missing packages: ${missing[*]}; run as root or install them"
        sudo=(sudo)
    fi
    say "installing: ${missing[*]}"
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "${missing[@]}"
}

# Succeeds if something accepts TCP connections on 127.0.0.1:$1.
port_in_use() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Waits up to 10 s for an HTTP answer from URL while PID stays alive.
wait_http() {
    local url="$1" pid="$2" log="$3"
    for _ in $(seq 100); do
        curl -s -o /dev/null --max-time 1 "$url" && return 0
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log" >&2; return 1; }
        sleep 0.1
    done
    tail -n 20 "$log" >&2
    return 1
}

# Waits up to 10 s for 127.0.0.1:$1 to accept connections while PID stays
# alive. No request is sent: it would take a turn of the round robin.
wait_tcp() {
    local port="$1" pid="$2" log="$3"
    for _ in $(seq 100); do
        if port_in_use "$port"; then return 0; fi
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log" >&2; return 1; }
        sleep 0.1
    done
    tail -n 20 "$log" >&2
    return 1
}

STARTED=()
cleanup_on_failure() {
    local pid
    for pid in "${STARTED[@]}"; do kill "$pid" 2>/dev/null || true; done
}

start_all() {
    local foreground="$1"
    [ ${#BACKEND_PORTS[@]} -eq 3 ] || die "BACKEND_PORTS needs three ports"
    if [ -f "$PIDFILE" ]; then
        local pid old=()
        read -r -a old < "$PIDFILE" || true
        for pid in "${old[@]}"; do
            if is_ours "$pid"; then die "already running (PIDs ${old[*]}); stop with: $0 stop"; fi
        done
        rm -f "$PIDFILE"
    fi

    install_packages
    command -v curl >/dev/null || die "curl is needed"

    say "building in $BUILD"
    cmake -S "$ROOT" -B "$BUILD" >/dev/null
    cmake --build "$BUILD" -j "$(nproc)"
    if [ ! -x "$BUILD/fulcrum" ] || [ ! -x "$BUILD/demo_backend" ]; then
        die "the build produced no $BUILD/fulcrum or $BUILD/demo_backend"
    fi

    local port taken=()
    for port in "$FULCRUM_PORT" "$ADMIN_PORT" "${BACKEND_PORTS[@]}"; do
        if port_in_use "$port"; then taken+=("$port"); fi
    done
    if [ ${#taken[@]} -gt 0 ]; then
        die "port(s) ${taken[*]} on 127.0.0.1 already in use (see: ss -ltnp); free them, or pick others, e.g. FULCRUM_PORT=8081 ADMIN_PORT=9911 BACKEND_PORTS=\"9101 9102 9103\" $0"
    fi

    # The config runs from the build folder so that its relative plugin_dir
    # ("plugins") resolves to $BUILD/plugins; the addresses follow the ports.
    sed -e "s/\"127\.0\.0\.1:8080\"/\"127.0.0.1:$FULCRUM_PORT\"/" \
        -e "s/\"127\.0\.0\.1:9901\"/\"127.0.0.1:$ADMIN_PORT\"/" \
        -e "s/\"127\.0\.0\.1:9001\"/\"127.0.0.1:${BACKEND_PORTS[0]}\"/" \
        -e "s/\"127\.0\.0\.1:9002\"/\"127.0.0.1:${BACKEND_PORTS[1]}\"/" \
        -e "s/\"127\.0\.0\.1:9003\"/\"127.0.0.1:${BACKEND_PORTS[2]}\"/" \
        "$ROOT/examples/quickstart.conf" > "$CONF"

    # Until everything answers, any exit stops what was started.
    trap cleanup_on_failure EXIT
    local i pid log
    for i in 0 1 2; do
        log="$BUILD/quickstart-${NAMES[$i]}.log"
        nohup "$BUILD/demo_backend" --name "${NAMES[$i]}" \
            --listen "127.0.0.1:${BACKEND_PORTS[$i]}" </dev/null >"$log" 2>&1 &
        STARTED+=($!)
    done
    for i in 0 1 2; do
        wait_http "http://127.0.0.1:${BACKEND_PORTS[$i]}/hc" "${STARTED[$i]}" \
            "$BUILD/quickstart-${NAMES[$i]}.log" || die "backend ${NAMES[$i]} did not start"
    done

    "$BUILD/fulcrum" -t -c "$CONF" || die "fulcrum rejected $CONF"
    log="$BUILD/quickstart-fulcrum.log"
    nohup "$BUILD/fulcrum" -c "$CONF" </dev/null >"$log" 2>&1 &
    pid=$!
    STARTED+=("$pid")
    wait_tcp "$FULCRUM_PORT" "$pid" "$log" || die "fulcrum did not start (log: $log)"
    trap - EXIT
    echo "${STARTED[*]}" > "$PIDFILE"

    cat <<EOF

fulcrum is listening on http://127.0.0.1:$FULCRUM_PORT/ and balancing round-robin over
alpha, beta and gamma (127.0.0.1:${BACKEND_PORTS[0]}, ${BACKEND_PORTS[1]}, ${BACKEND_PORTS[2]}).

Try it:
  for i in 1 2 3; do curl -s http://127.0.0.1:$FULCRUM_PORT/; done     # alpha, beta, gamma
  curl -si http://127.0.0.1:$FULCRUM_PORT/headers                       # what the backend received
  curl -s 'http://127.0.0.1:$FULCRUM_PORT/bytes?n=10000000' | wc -c    # a streamed body
  curl -si http://127.0.0.1:$FULCRUM_PORT/cached | grep Cache-Status   # twice: fwd=miss, then hit

See inside:
  dashboard:  http://127.0.0.1:$ADMIN_PORT/   (live: every backend, requests/s, errors, latency)
  curl -s http://127.0.0.1:$ADMIN_PORT/metrics | grep fulcrum_backend_requests_total
  curl -s http://127.0.0.1:$ADMIN_PORT/api/status

Steer it live with fulcrum ctl, the runtime API's client (README "Runtime control"):
  ctl="$BUILD/fulcrum ctl -c $CONF"
  \$ctl backends demo   # each backend: state, req/s, errors, p99
  \$ctl drain demo 127.0.0.1:${BACKEND_PORTS[1]}   # beta takes no new requests; curl shows it
  \$ctl ready demo 127.0.0.1:${BACKEND_PORTS[1]}   # and it is back
  \$ctl purge demo /cached                          # the next /cached is a miss again
  The dashboard shows each change, and has the same buttons.

Change $CONF (e.g. strategy "least_conn") and reload: kill -HUP $pid (or: \$ctl reload)
Logs: $BUILD/quickstart-*.log
PIDs: ${STARTED[*]} (fulcrum: $pid)
EOF
    if [ "$foreground" = 1 ]; then
        say "Running in the foreground; Ctrl-C stops everything."
        trap 'stop_all; exit 0' INT TERM
        wait "$pid" || true
        stop_all
    else
        say "Stop them with: $0 stop   (or: kill ${STARTED[*]})"
    fi
}

case "${1:-start}" in
start) start_all 0 ;;
--foreground | -f) start_all 1 ;;
stop) stop_all ;;
-h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' ;;
*) die "unknown argument: $1 (use: start, --foreground, stop)" ;;
esac
