#!/usr/bin/env bash
# Builds fulcrum with warnings as errors and runs every test under ctest, then
# does the same in an AddressSanitizer + UndefinedBehaviorSanitizer build.
# Installs the Debian packages it needs when they are missing (run as root on
# a fresh machine, or have them installed already).
#
#   tests/run.sh            both builds
#   FC_SKIP_ASAN=1 tests/run.sh   the plain build only (quicker while developing)
#   FC_SKIP_FUZZ=1 tests/run.sh   without the bounded libFuzzer runs (tests/fuzz/run.sh)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=$(nproc 2>/dev/null || echo 2)

packages=(build-essential cmake pkg-config python3 clang-14 libclang-rt-14-dev libuv1-dev node-llhttp libconfig-dev libcmocka-dev libhiredis-dev libjansson-dev libssl-dev openssl curl python3-websockets redis-server prometheus chromium)
missing=()
for p in "${packages[@]}"; do
    # Installed, not merely known to dpkg (a removed package leaves its status behind).
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "run.sh: installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "run.sh: missing packages and not root: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
fi

run_suite() {
    local dir=$1
    shift
    echo "run.sh: building in $dir ($*)"
    cmake -S "$root" -B "$dir" -DFC_WERROR=ON -DFC_BUILD_TESTS=ON "$@" >/dev/null
    cmake --build "$dir" -j "$jobs"
    echo "run.sh: testing in $dir"
    (cd "$dir" && ctest --output-on-failure --no-tests=error -j "$jobs" --timeout 300 \
        ${ctest_exclude:+-E "$ctest_exclude"})
}

if [ "$(id -u)" -ne 0 ] && [ "${FC_SKIP_PACKAGE_TEST:-0}" != 1 ]; then
    # The package test installs .debs system-wide; CI runs as root and runs it.
    echo "run.sh: not root: the package test (package.install) will be SKIPPED" >&2
    export FC_SKIP_PACKAGE_TEST=1
fi

run_suite "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo

if [ "${FC_SKIP_ASAN:-0}" != 1 ]; then
    # Any sanitizer report fails the run: a leak or an error makes the process
    # exit non-zero, which the tests check.
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=99:strict_string_checks=1
    export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=98
    # The package test (build, install, purge the .debs) ran in the plain pass.
    ctest_exclude='^package\.'
    run_suite "$root/build-asan" -DCMAKE_BUILD_TYPE=Debug -DFC_SANITIZE=ON
fi
if [ "${FC_SKIP_FUZZ:-0}" != 1 ]; then
    # The libFuzzer targets, each for FC_FUZZ_SECONDS (20 s): any crash, leak or
    # sanitizer report fails the run. FC_FUZZ_SECONDS=600 tests/fuzz/run.sh runs them longer.
    echo "run.sh: fuzzing (tests/fuzz/run.sh)"
    "$root/tests/fuzz/run.sh"
fi
echo "run.sh: all tests passed"
