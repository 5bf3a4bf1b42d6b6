#!/usr/bin/env bash
# The Debian packages, end to end, on this machine: build them with
# packaging/build-deb.sh (lintian included), install them, check the installed
# configuration, unit and folders (/var/lib/fulcrum for state_file), run the
# installed daemon with a copy of the installed configuration on free ports as
# the `fulcrum` user, proxy real requests, ask the shipped admin socket
# /run/fulcrum/admin.sock for the status (as root, as a member of group
# fulcrum, and refused to anybody else), build the out-of-tree example plugin
# against the installed SDK, drop it into the plugin folder and switch a pool
# to it with SIGHUP, stop the daemon with SIGTERM, then purge and check that
# nothing is left.
#
# It installs into / and must run as root (CI does). Not root: it fails,
# unless FC_SKIP_PACKAGE_TEST=1 asks to skip it (exit 77, a CTest skip).
# systemd does not run on the test machines, so the daemon is started by hand
# the way fulcrum.service starts it: as user fulcrum, with its UMask=, and with
# /run/fulcrum made as its RuntimeDirectory= makes it (and removed after, as
# systemd does when the service stops).
#
# Everything it starts it stops, by PID, also on failure: the daemon, the
# backends, the installed packages (purged), the example plugin it installed,
# /run/fulcrum and the `fulcrum` system user when the install created it.
# FC_PACKAGE_KEEP=1 keeps the work folder (packages, logs) for a look.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here="$root/tests/package"
start_s=$SECONDS

pass() { echo "PASS: $*"; }
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
step() { echo "--- $*"; }

if [ "${FC_SKIP_PACKAGE_TEST:-0}" = 1 ]; then
    echo "SKIP: package.install: FC_SKIP_PACKAGE_TEST=1"
    exit 77
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "FAIL: package.install must run as root: it installs the .deb files into / and purges" >&2
    echo "FAIL: them; run it as root, or set FC_SKIP_PACKAGE_TEST=1 to skip it on purpose" >&2
    exit 1
fi

# One package test per machine at a time: another checkout's ctest may run it
# too, and both would install into the same /. The lock dies with the process.
lockdir=/run/lock
[ -d "$lockdir" ] || lockdir=/tmp
exec 9>"$lockdir/fulcrum-package-test.lock"
if ! flock -n 9; then
    echo "--- another package test holds $lockdir/fulcrum-package-test.lock: waiting (at most 600 s)"
    flock -w 600 9 || fail "another package test still runs after 600 s"
    start_s=$SECONDS
fi

# Never replace or purge a fulcrum this test did not install.
for p in fulcrum fulcrum-dev; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    case "$st" in
    "" | not-installed) ;;
    *) fail "package $p is already on this machine (status: $st); the test installs and purges it: dpkg --purge fulcrum fulcrum-dev first" ;;
    esac
done
for d in /etc/fulcrum /var/log/fulcrum /var/lib/fulcrum /run/fulcrum; do
    [ ! -e "$d" ] || fail "$d exists without the package: left over from an earlier install? Remove it first"
done

need=()
command -v curl >/dev/null || need+=(curl)
# The system's python3 too: the user nobody runs it, and cannot reach one under /root.
command -v python3 >/dev/null && [ -x /usr/bin/python3 ] || need+=(python3)
command -v cmake >/dev/null || need+=(cmake)
command -v cc >/dev/null && command -v make >/dev/null || need+=(build-essential)
command -v pkg-config >/dev/null || need+=(pkgconf)
if [ ${#need[@]} -gt 0 ]; then
    step "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/fulcrum-pkgtest.XXXXXX")
chmod 0755 "$work" # the daemon runs as `fulcrum` and reads its config copy here
log="$work/fulcrum.log"
pids=()          # every process this test started and has not reaped
installed=0      # 1 once apt-get install may have put the packages in place
oot_manifest=""  # files `cmake --install` of the example plugin wrote
user_existed=0
getent passwd fulcrum >/dev/null && user_existed=1
runtime_dir=/run/fulcrum # the service's RuntimeDirectory=, made by hand here
runtime_dir_made=0       # 1 while this test's $runtime_dir exists
admin_sock=$runtime_dir/admin.sock

alive() {
    # A zombie still answers kill -0: look at its state instead.
    local state
    state=$(sed -n 's/^.*) \(.\).*$/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# stop_pid PID SECONDS: SIGTERM, then SIGKILL after SECONDS; reaps it. Returns
# its exit status (137 when it had to be killed).
stop_pid() {
    local pid=$1 deadline=$((SECONDS + $2)) rc=0
    kill -TERM "$pid" 2>/dev/null || true
    while alive "$pid"; do
        if [ $SECONDS -ge "$deadline" ]; then
            echo "process $pid still running after SIGTERM: SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || rc=$?
    forget_pid "$pid"
    return $rc
}

forget_pid() {
    local keep=() p
    for p in "${pids[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    pids=("${keep[@]}")
}

remove_user() {
    if [ $user_existed = 0 ] && getent passwd fulcrum >/dev/null; then
        deluser --system --quiet fulcrum >/dev/null 2>&1 || userdel fulcrum || true
    fi
    if [ $user_existed = 0 ] && getent group fulcrum >/dev/null; then
        groupdel fulcrum || true
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    for p in "${pids[@]}"; do
        stop_pid "$p" 5 >/dev/null 2>&1
    done
    if [ $rc -ne 0 ] && [ -s "$log" ]; then
        echo "--- fulcrum's log (last 40 lines)" >&2
        tail -n 40 "$log" >&2
    fi
    if [ -n "$oot_manifest" ] && [ -f "$oot_manifest" ]; then
        xargs -r rm -f <"$oot_manifest"
    fi
    if [ $runtime_dir_made = 1 ]; then
        rm -rf "$runtime_dir"
    fi
    if [ $installed = 1 ]; then
        echo "--- purging fulcrum fulcrum-dev" >&2
        dpkg --purge fulcrum fulcrum-dev >/dev/null 2>&1
        remove_user
    fi
    if [ "${FC_PACKAGE_KEEP:-0}" = 1 ]; then
        echo "work folder kept: $work"
    else
        rm -rf "$work"
    fi
    if [ $rc -eq 0 ]; then
        echo "PASS: package.install ($((SECONDS - start_s)) s)"
    else
        echo "FAIL: package.install (exit $rc, $((SECONDS - start_s)) s)" >&2
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_log PATTERN SECONDS: until the daemon's log has a line matching PATTERN.
wait_log() {
    local deadline=$((SECONDS + $2))
    until grep -q -- "$1" "$log"; do
        [ $SECONDS -lt "$deadline" ] || fail "no log line matching '$1' within $2 s"
        [ -z "${fulcrum_pid:-}" ] || alive "$fulcrum_pid" || fail "fulcrum exited (waiting for '$1')"
        sleep 0.1
    done
}

# get PATH: the body of a GET through fulcrum; fails on anything but 200.
get() {
    local out code
    out=$(curl -sS --max-time 10 -w '\n%{http_code}' "http://127.0.0.1:$listen_port$1") ||
        fail "curl http://127.0.0.1:$listen_port$1 failed"
    code=${out##*$'\n'}
    [ "$code" = 200 ] || fail "GET $1 through fulcrum: HTTP $code, expected 200"
    printf '%s\n' "${out%$'\n'*}"
}

# backend NAME: starts a backend answering NAME; sets backend_pid and backend_port.
backend() {
    local pf="$work/$1.port" deadline=$((SECONDS + 10))
    python3 "$here/backend.py" "$1" "$pf" 9>&- &
    backend_pid=$!
    pids+=("$backend_pid")
    until [ -s "$pf" ]; do
        [ $SECONDS -lt "$deadline" ] || fail "backend $1 did not start"
        alive "$backend_pid" || fail "backend $1 exited"
        sleep 0.05
    done
    backend_port=$(cat "$pf")
}

# ---------------------------------------------------------------------------
step "building the packages (packaging/build-deb.sh)"
if ! OUT_DIR="$work/debs" "$root/packaging/build-deb.sh" >"$work/build-deb.log" 2>&1; then
    tail -n 40 "$work/build-deb.log" >&2
    fail "packaging/build-deb.sh failed"
fi
grep -q "lintian: no errors or warnings" "$work/build-deb.log" || fail "build-deb.sh did not run lintian"
pass "packages built, lintian clean at error and warning level ($((SECONDS - start_s)) s)"

# ---------------------------------------------------------------------------
step "installing fulcrum and fulcrum-dev"
shopt -s nullglob
debs=("$work"/debs/fulcrum_*.deb "$work"/debs/fulcrum-dev_*.deb)
[ ${#debs[@]} -eq 2 ] || fail "expected fulcrum_*.deb and fulcrum-dev_*.deb in $work/debs"
installed=1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${debs[@]}" \
    >"$work/install.log" 2>&1 || {
    cat "$work/install.log" >&2
    fail "apt-get install of the packages failed"
}
for p in fulcrum fulcrum-dev; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' $p)" = installed ] || fail "$p is not installed"
done
pass "apt-get install ./fulcrum_*.deb ./fulcrum-dev_*.deb"

plugindir=$(pkg-config --variable=plugindir fulcrum-sdk) || fail "pkg-config does not find fulcrum-sdk"
pkg-config --cflags fulcrum-sdk >/dev/null || fail "pkg-config --cflags fulcrum-sdk failed"
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
[ "$plugindir" = "/usr/lib/$multiarch/fulcrum/plugins" ] ||
    fail "fulcrum-sdk.pc plugindir is $plugindir, expected /usr/lib/$multiarch/fulcrum/plugins"
grep -q "^plugin_dir = \"$plugindir\";" /etc/fulcrum/fulcrum.conf ||
    fail "/etc/fulcrum/fulcrum.conf does not set plugin_dir = \"$plugindir\""
for f in /usr/sbin/fulcrum /etc/fulcrum/fulcrum.conf /lib/systemd/system/fulcrum.service \
    /etc/logrotate.d/fulcrum /usr/share/man/man8/fulcrum.8.gz /usr/share/man/man5/fulcrum.conf.5.gz \
    /usr/share/man/man8/fulcrum-ctl.8.gz /usr/share/bash-completion/completions/fulcrum \
    /usr/include/fulcrum/plugin.h "/usr/lib/$multiarch/pkgconfig/fulcrum-sdk.pc" \
    /usr/share/doc/fulcrum-dev/PLUGINS.md /usr/share/doc/fulcrum-dev/examples/out-of-tree-plugin/first_up.c \
    /usr/share/fulcrum/grafana/fulcrum.json; do
    [ -e "$f" ] || fail "$f is not installed"
done
cmp -s /usr/share/fulcrum/grafana/fulcrum.json "$root/packaging/grafana/fulcrum.json" ||
    fail "/usr/share/fulcrum/grafana/fulcrum.json differs from packaging/grafana/fulcrum.json"
# Every bundled plugin the build declares (plugins/CMakeLists.txt) is shipped.
bundled=$(sed -n 's/^fc_add_plugin(\([a-z0-9_]*\) .*/\1/p' "$root/plugins/CMakeLists.txt")
[ -n "$bundled" ] || fail "cannot read the bundled plugins from plugins/CMakeLists.txt"
for name in $bundled; do
    [ -f "$plugindir/$name.so" ] || fail "bundled plugin $plugindir/$name.so is not installed"
done
dpkg-query -W -f='${Conffiles}\n' fulcrum | grep -q '^ /etc/fulcrum/fulcrum.conf ' ||
    fail "/etc/fulcrum/fulcrum.conf is not a conffile"
dpkg-query -W -f='${Provides}\n' fulcrum | grep -qw 'fulcrum-abi-1' || fail "fulcrum does not provide fulcrum-abi-1"
getent passwd fulcrum >/dev/null || fail "postinst did not create the system user fulcrum"
[ "$(stat -c %U /var/log/fulcrum)" = fulcrum ] || fail "/var/log/fulcrum is not owned by fulcrum"
# The folder of the shipped state_file, for the daemon run by hand (systemd's
# StateDirectory= makes the same one for the service).
st=$(stat -c '%U:%G %a' /var/lib/fulcrum 2>/dev/null) || fail "postinst did not make /var/lib/fulcrum"
[ "$st" = "fulcrum:fulcrum 750" ] || fail "/var/lib/fulcrum is $st, expected fulcrum:fulcrum 750"
setpriv --reuid=fulcrum --regid=fulcrum --init-groups -- \
    sh -c ': >/var/lib/fulcrum/.write-test && rm /var/lib/fulcrum/.write-test' ||
    fail "user fulcrum cannot write to /var/lib/fulcrum (state_file's temporary file and rename)"
/usr/sbin/fulcrum --version | grep -q "^fulcrum " || fail "fulcrum --version"
# The folders the service may write to under ProtectSystem=strict, and the
# hardening kept. systemd-analyze verify exits 0 on an unknown or malformed
# setting (it only says so, "ignoring"), so anything it prints fails too.
unit=/lib/systemd/system/fulcrum.service
for line in StateDirectory=fulcrum StateDirectoryMode=0750 RuntimeDirectory=fulcrum \
    RuntimeDirectoryMode=0750 RuntimeDirectoryPreserve=no LogsDirectory=fulcrum \
    User=fulcrum ProtectSystem=strict ProtectHome=yes NoNewPrivileges=yes \
    CapabilityBoundingSet=CAP_NET_BIND_SERVICE SystemCallFilter=@system-service; do
    grep -qx "$line" "$unit" || fail "$unit lacks the line $line"
done
if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify "$unit" >"$work/verify.log" 2>&1 || {
        cat "$work/verify.log" >&2
        fail "systemd-analyze verify fulcrum.service"
    }
    [ ! -s "$work/verify.log" ] || {
        cat "$work/verify.log" >&2
        fail "systemd-analyze verify fulcrum.service complained (above)"
    }
    # The exposure score of the unit as shipped is 2.0 (20 on this scale): a
    # setting that loosens the sandbox makes it higher.
    if systemd-analyze --help 2>/dev/null | grep -q -- '--offline'; then
        systemd-analyze security --offline=yes --threshold=20 "$unit" >"$work/security.log" 2>&1 || {
            tail -n 25 "$work/security.log" >&2
            fail "systemd-analyze security: fulcrum.service is less confined than shipped (exposure above 2.0)"
        }
    fi
fi
if command -v logrotate >/dev/null; then
    logrotate -d /etc/logrotate.d/fulcrum >"$work/logrotate.log" 2>&1 || {
        cat "$work/logrotate.log" >&2
        fail "logrotate -d /etc/logrotate.d/fulcrum"
    }
fi
pass "installed files, plugins ($(wc -w <<<"$bundled")) in $plugindir, conffile, fulcrum-abi-1, user, /var/lib/fulcrum, unit, Grafana dashboard"

# ---------------------------------------------------------------------------
step "fulcrum -t on the installed configuration"
out=$(/usr/sbin/fulcrum -t -c /etc/fulcrum/fulcrum.conf 2>&1) || fail "fulcrum -t -c /etc/fulcrum/fulcrum.conf: $out"
echo "$out" | grep -q "configuration OK" || fail "fulcrum -t did not say 'configuration OK': $out"
# The way fulcrum.service's ExecStartPre runs it: as the fulcrum user.
out=$(setpriv --reuid=fulcrum --regid=fulcrum --init-groups -- \
    /usr/sbin/fulcrum -t -c /etc/fulcrum/fulcrum.conf 2>&1) || fail "fulcrum -t as user fulcrum: $out"
pass "fulcrum -t -c /etc/fulcrum/fulcrum.conf: configuration OK (as root and as fulcrum)"

# What the shipped file sets for runtime control, uncommented and at the top
# level: the admin listener on the socket in the service's RuntimeDirectory=,
# and the state file in its StateDirectory=. The running daemon confirms the
# admin address below ("admin listening on ...").
grep -Eq '^state_file = "/var/lib/fulcrum/state\.json";' /etc/fulcrum/fulcrum.conf ||
    fail "/etc/fulcrum/fulcrum.conf does not set state_file = \"/var/lib/fulcrum/state.json\";"
awk '/^admin = \{/ { g = 1; next } g && /^\};/ { exit } g && /^ *address = "unix:\/run\/fulcrum\/admin\.sock";/ { ok = 1 } END { exit !ok }' \
    /etc/fulcrum/fulcrum.conf ||
    fail "/etc/fulcrum/fulcrum.conf has no admin = { address = \"unix:$admin_sock\"; }"
pass "shipped configuration: admin.address = \"unix:$admin_sock\", state_file = \"/var/lib/fulcrum/state.json\""

# ---------------------------------------------------------------------------
step "running the installed daemon with the installed configuration, on free ports"
backend alpha
alpha_pid=$backend_pid alpha_port=$backend_port
backend beta
beta_port=$backend_port
listen_port=$(free_port)
conf="$work/fulcrum.conf"
# The installed file with its listener moved to a free port and its one
# backend replaced by the two test backends; everything else as shipped.
sed -e "s|address = \"127.0.0.1:8080\"|address = \"127.0.0.1:$listen_port\"|" \
    -e "s|{ address = \"127.0.0.1:8081\"; weight = 1; }|{ address = \"127.0.0.1:$alpha_port\"; weight = 1; }, { address = \"127.0.0.1:$beta_port\"; weight = 1; }|" \
    /etc/fulcrum/fulcrum.conf >"$conf"
chmod 0644 "$conf"
grep -q "127.0.0.1:$listen_port" "$conf" && grep -q "127.0.0.1:$beta_port" "$conf" ||
    fail "cannot rewrite the listener and backend of /etc/fulcrum/fulcrum.conf (did its text change?)"
grep -q 'plugin = "round_robin"' "$conf" || fail "the shipped pool does not use round_robin"

# As fulcrum.service would: its RuntimeDirectory= (mode 0750, owned by the
# service user) for the admin socket, its UMask=, its user. The subshell execs,
# so $! is the daemon's PID.
grep -q "unix:$admin_sock" "$conf" || fail "the copy of the configuration lost its admin address"
install -d -o fulcrum -g fulcrum -m 0750 "$runtime_dir"
runtime_dir_made=1
(
    umask 0027
    exec setpriv --reuid=fulcrum --regid=fulcrum --init-groups -- /usr/sbin/fulcrum -c "$conf"
) >"$log" 2>&1 9>&- &
fulcrum_pid=$!
pids+=("$fulcrum_pid")
wait_log "listening on 127.0.0.1:$listen_port" 10
wait_log "admin listening on unix:$admin_sock" 10
pass "fulcrum -c (as user fulcrum) listening on 127.0.0.1:$listen_port, admin on unix:$admin_sock"

seen=""
for _ in 1 2 3 4 5 6; do
    seen+=" $(get /)"
done
[[ $seen == *alpha* && $seen == *beta* ]] || fail "round_robin: expected both backends, got:$seen"
pass "6 requests through fulcrum, 200, spread by round_robin:$seen"

access=/var/log/fulcrum/access.log
[ "$(wc -l <"$access")" -ge 6 ] || fail "$access has fewer than 6 lines"
mv "$access" "$access.1"
kill -USR1 "$fulcrum_pid"
wait_log "access log reopened" 5
get / >/dev/null
# The log writer's thread writes the line shortly after the response went out, not before.
for _ in $(seq 50); do [ -s "$access" ] && break; sleep 0.1; done
[ -s "$access" ] || fail "SIGUSR1: no new $access"
pass "access log in /var/log/fulcrum, reopened on SIGUSR1 (as logrotate's postrotate does)"

# ---------------------------------------------------------------------------
step "the admin socket $admin_sock"
[ -S "$admin_sock" ] || fail "$admin_sock is not a socket"
st=$(stat -c '%U:%G %a' "$admin_sock")
[ "$st" = "fulcrum:fulcrum 660" ] || fail "$admin_sock is $st, expected fulcrum:fulcrum 660"

# admin_status WHO [SETPRIV ARGS...]: GET /api/status on the socket, as root
# or through setpriv; checks 200, JSON, and that the daemon started above
# answers with the shipped pool and the two test backends.
admin_status() {
    local who=$1 out code ctype
    shift
    # The body on stdout: the user curl runs as may not write into $work.
    out=$("$@" curl -sS --max-time 10 --unix-socket "$admin_sock" \
        -w '\n%{http_code} %{content_type}' http://localhost/api/status 2>&1) ||
        fail "GET /api/status on $admin_sock as $who: curl failed: $out"
    printf '%s\n' "${out%$'\n'*}" >"$work/status.json"
    out=${out##*$'\n'}
    code=${out%% *} ctype=${out#* }
    [ "$code" = 200 ] || fail "GET /api/status on $admin_sock as $who: HTTP $code, expected 200"
    [[ $ctype == application/json* ]] || fail "GET /api/status as $who: Content-Type '$ctype', expected application/json"
    python3 - "$work/status.json" "$fulcrum_pid" "127.0.0.1:$alpha_port" "127.0.0.1:$beta_port" <<'PY' ||
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["pid"] == int(sys.argv[2]), "pid %r, expected %s" % (doc["pid"], sys.argv[2])
pools = {p["name"]: p for p in doc["pools"]}
assert list(pools) == ["local"], "pools %r, expected the shipped one, local" % list(pools)
got = sorted(b["address"] for b in pools["local"]["backends"])
assert got == sorted(sys.argv[3:]), "backends %r, expected %r" % (got, sys.argv[3:])
PY
        fail "GET /api/status as $who: not the status of this daemon (above; body in $work/status.json)"
}
admin_status root
# Group fulcrum: the socket's 0660 and /run/fulcrum's 0750 let its members in.
admin_status "nobody in group fulcrum" setpriv --reuid=nobody --regid=nogroup --groups=fulcrum --
# Anybody else is kept out by /run/fulcrum's mode, before the socket's: the
# connect fails with EACCES (curl would only say "Couldn't connect").
out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups -- /usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES")
except OSError as e:
    print("other error: %s" % e)
else:
    print("connected")
' "$admin_sock" 2>&1) || true
[ "$out" = EACCES ] || fail "connecting to $admin_sock as nobody outside group fulcrum: $out, expected EACCES"
pass "GET /api/status on $admin_sock (fulcrum:fulcrum 0660 in a 0750 folder): 200 JSON as root and as a member of group fulcrum, refused to others"

# fulcrum ctl with no options reads /etc/fulcrum/fulcrum.conf, which names
# this socket: as root, and as a member of group fulcrum.
out=$(/usr/sbin/fulcrum ctl status 2>&1) || fail "fulcrum ctl status: $out"
grep -q "^pid  *$fulcrum_pid\$" <<<"$out" || fail "fulcrum ctl status: not this daemon's status: $out"
grep -q "^pool  *local: round_robin" <<<"$out" || fail "fulcrum ctl status: no pool local: $out"
out=$(setpriv --reuid=nobody --regid=nogroup --groups=fulcrum -- /usr/sbin/fulcrum ctl backends local 2>&1) ||
    fail "fulcrum ctl backends local as a member of group fulcrum: $out"
grep -q "^127.0.0.1:$alpha_port .* up  *config" <<<"$out" && grep -q "^127.0.0.1:$beta_port .* up  *config" <<<"$out" ||
    fail "fulcrum ctl backends local: both test backends up expected: $out"
pass "fulcrum ctl status and backends over $admin_sock, as root and as a member of group fulcrum"

# A drain: no request reaches alpha, and the change is in the state file.
out=$(/usr/sbin/fulcrum ctl drain local "127.0.0.1:$alpha_port" 2>&1) || fail "fulcrum ctl drain: $out"
seen=""
for _ in 1 2 3 4; do
    seen+=" $(get /)"
done
[ "$seen" = " beta beta beta beta" ] || fail "alpha drained: expected beta only, got:$seen"
state=/var/lib/fulcrum/state.json
for _ in $(seq 50); do [ -s "$state" ] && break; sleep 0.1; done
python3 - "$state" "127.0.0.1:$alpha_port" <<'PY' || fail "$state does not hold the drain of alpha"
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["version"] == 1
assert [(b["pool"], b["address"], b["state"]) for b in doc["backends"]] == [("local", sys.argv[2], "drain")], doc
PY
st=$(stat -c '%U:%G' "$state")
[ "$st" = "fulcrum:fulcrum" ] || fail "$state is owned by $st, expected fulcrum:fulcrum"
out=$(/usr/sbin/fulcrum ctl ready local "127.0.0.1:$alpha_port" 2>&1) || fail "fulcrum ctl ready: $out"
seen=""
for _ in 1 2 3 4; do
    seen+=" $(get /)"
done
[[ $seen == *alpha* ]] || fail "alpha ready again: expected it among:$seen"
pass "fulcrum ctl drain (kept in $state) and ready: traffic follows"

# ---------------------------------------------------------------------------
step "the out-of-tree example plugin, built against the installed SDK"
cmake -S "$root/examples/out-of-tree-plugin" -B "$work/oot" -DCMAKE_BUILD_TYPE=Release \
    >"$work/oot.log" 2>&1 && cmake --build "$work/oot" >>"$work/oot.log" 2>&1 || {
    cat "$work/oot.log" >&2
    fail "building examples/out-of-tree-plugin against the installed SDK"
}
exports=$(nm -D --defined-only "$work/oot/first_up.so" | awk '{print $3}' | tr '\n' ' ')
[ "$exports" = "fc_plugin " ] || fail "first_up.so exports '$exports', expected only fc_plugin"
oot_manifest="$work/oot/install_manifest.txt"
cmake --install "$work/oot" >>"$work/oot.log" 2>&1 || fail "cmake --install of the example plugin"
[ -f "$plugindir/first_up.so" ] || fail "cmake --install did not put first_up.so in $plugindir"
pass "first_up.so built with pkg-config fulcrum-sdk, installed to $plugindir"

# The author's test bench finds an installed plugin by its bare name.
out=$(/usr/sbin/fulcrum plugin-check --kind strategy first_up 2>&1) ||
    fail "fulcrum plugin-check first_up: $out"
grep -qx "plugin      $plugindir/first_up.so" <<<"$out" ||
    fail "fulcrum plugin-check first_up: did not load $plugindir/first_up.so: $out"
[[ $out == *"first_up: passed" ]] || fail "fulcrum plugin-check first_up: no \"first_up: passed\" in: $out"
grep -q "refused (FC_ENOBACKEND): 1000" <<<"$out" || fail "plugin-check first_up: no phase 4 in: $out"
pass "fulcrum plugin-check first_up: $plugindir/first_up.so passed"

sed -i 's|plugin = "round_robin"|plugin = "first_up"|' "$conf"
out=$(setpriv --reuid=fulcrum --regid=fulcrum --init-groups -- /usr/sbin/fulcrum -t -c "$conf" 2>&1) ||
    fail "fulcrum -t with first_up: $out"
kill -HUP "$fulcrum_pid"
wait_log "reload done: generation 4 in force" 10  # 2 and 3 were the drain and the ready
grep -q "first_up.*primary 127.0.0.1:$alpha_port" "$log" || fail "no log line from first_up's create()"
seen=""
for _ in 1 2 3 4 5 6; do
    seen+=" $(get /)"
done
[ "$seen" = " alpha alpha alpha alpha alpha alpha" ] || fail "first_up: expected alpha only, got:$seen"
pass "kill -HUP: pool switched to first_up, every request to the primary:$seen"

stop_pid "$alpha_pid" 5 || true
[ "$(get /)" = beta ] || fail "first_up: the standby did not take over from a dead primary"
pass "first_up: the primary stopped, the standby answers"

# ---------------------------------------------------------------------------
step "SIGTERM"
rc=0
stop_pid "$fulcrum_pid" 20 || rc=$?
fulcrum_pid=""
[ $rc -eq 0 ] || fail "fulcrum exited $rc on SIGTERM, expected 0"
grep -q "stopped" "$log" || fail "no 'stopped' line in the log"
[ ! -e "$admin_sock" ] || fail "$admin_sock is left after the daemon stopped"
rm -rf "$runtime_dir" # as systemd removes its RuntimeDirectory= at the stop
runtime_dir_made=0
pass "SIGTERM: fulcrum exited 0, $admin_sock removed"

# ---------------------------------------------------------------------------
step "dpkg --purge fulcrum fulcrum-dev"
xargs -r rm -f <"$oot_manifest" # the test's own plugin, not the package's
oot_manifest=""
dpkg --purge fulcrum fulcrum-dev >"$work/purge.log" 2>&1 || {
    cat "$work/purge.log" >&2
    fail "dpkg --purge"
}
installed=0
grep -i "warning" "$work/purge.log" >&2 && fail "dpkg --purge warned (above)"
for f in /usr/sbin/fulcrum /etc/fulcrum "/usr/lib/$multiarch/fulcrum" /var/log/fulcrum /var/lib/fulcrum \
    /usr/include/fulcrum "/usr/lib/$multiarch/pkgconfig/fulcrum-sdk.pc" /lib/systemd/system/fulcrum.service \
    /etc/systemd/system/multi-user.target.wants/fulcrum.service /etc/logrotate.d/fulcrum \
    /usr/share/doc/fulcrum /usr/share/doc/fulcrum-dev /usr/share/man/man8/fulcrum.8.gz /usr/share/fulcrum; do
    [ ! -e "$f" ] || fail "$f is left after dpkg --purge"
done
for p in fulcrum fulcrum-dev; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ -z "$st" ] || [ "$st" = not-installed ] || fail "$p is still known to dpkg after purge: $st"
done
pass "purged: no binary, /etc/fulcrum, plugin folder, /var/log/fulcrum, /var/lib/fulcrum, unit or SDK left"
if getent passwd fulcrum >/dev/null; then
    echo "note: the system user fulcrum outlives the purge, as Debian policy advises"
    remove_user
fi
