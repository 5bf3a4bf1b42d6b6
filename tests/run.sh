#!/usr/bin/env bash
# Builds fulcrum with warnings as errors and runs every test under ctest, then
# does the same in an AddressSanitizer + UndefinedBehaviorSanitizer build.
# Installs the Debian packages it needs when they are missing (run as root on
# a fresh machine, or have them installed already).
#
#   tests/run.sh            both builds
#   FC_SKIP_ASAN=1 tests/run.sh   the plain build only (quicker while developing)
#   FC_SKIP_FUZZ=1 tests/run.sh   without the bounded libFuzzer runs (tests/fuzz/run.sh)
#   FC_SKIP_TSAN=1 tests/run.sh   without the ThreadSanitizer runs of the shared plugins (memory, token_bucket)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=$(nproc 2>/dev/null || echo 2)

packages=(build-essential cmake pkg-config python3 clang-14 libclang-rt-14-dev libuv1-dev node-llhttp libconfig-dev libcmocka-dev libhiredis-dev libjansson-dev libc-ares-dev libssl-dev python3-dnslib openssl curl python3-websockets redis-server prometheus chromium)
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
if [ "${FC_SKIP_TSAN:-0}" != 1 ]; then
    # The plugins whose one instance every worker shares, under ThreadSanitizer:
    # `fulcrum plugin-check` calls them from 4 threads at once; a data race
    # reported fails the run (exit 97).
    tsan=(-fsanitize=thread -g)
    echo "run.sh: ThreadSanitizer build in $root/build-tsan (plugin-check of the shared plugins)"
    cmake -S "$root" -B "$root/build-tsan" -DFC_WERROR=ON -DFC_BUILD_TESTS=ON \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_C_FLAGS="${tsan[*]}" -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread \
        -DCMAKE_MODULE_LINKER_FLAGS=-fsanitize=thread >/dev/null
    cmake --build "$root/build-tsan" -j "$jobs" --target fulcrum memory token_bucket \
        unit_plugins_cache_memory
    # memory's own four-thread unit test, then plugin-check of each shared plugin.
    TSAN_OPTIONS=halt_on_error=1:exitcode=97 "$root/build-tsan/tests/unit/unit_plugins_cache_memory" \
        >"$root/build-tsan/unit-memory.log" 2>&1 || {
        echo "run.sh: memory's unit test under ThreadSanitizer FAILED:" >&2
        tail -n 60 "$root/build-tsan/unit-memory.log" >&2
        exit 1
    }
    echo "run.sh: ThreadSanitizer: memory's unit tests passed"
    for check in "memory max_bytes=200000 max_object_bytes=20000" "token_bucket rate=10 burst=5"; do
        read -r name keys <<<"$check"
        # shellcheck disable=SC2086 # the keys are words
        TSAN_OPTIONS=halt_on_error=1:exitcode=97 "$root/build-tsan/fulcrum" plugin-check \
            "$root/build-tsan/plugins/$name.so" $keys >"$root/build-tsan/plugin-check-$name.log" 2>&1 || {
            echo "run.sh: plugin-check $name under ThreadSanitizer FAILED:" >&2
            tail -n 60 "$root/build-tsan/plugin-check-$name.log" >&2
            exit 1
        }
        echo "run.sh: ThreadSanitizer: $(tail -n 1 "$root/build-tsan/plugin-check-$name.log")"
    done
fi
if [ "${FC_SKIP_FUZZ:-0}" != 1 ]; then
    # The libFuzzer targets, each for FC_FUZZ_SECONDS (20 s): any crash, leak or
    # sanitizer report fails the run. FC_FUZZ_SECONDS=600 tests/fuzz/run.sh runs them longer.
    echo "run.sh: fuzzing (tests/fuzz/run.sh)"
    "$root/tests/fuzz/run.sh"
fi
echo "run.sh: all tests passed"
