#!/usr/bin/env bash
# tests/fuzz/run.sh - builds the libFuzzer targets (clang-14, with ASan and UBSan)
# and runs each for FC_FUZZ_SECONDS (default 20) from its seed corpus under
# tests/fuzz/corpus/<target>/; fails on any crash, leak or sanitizer report.
#
#   tests/fuzz/run.sh                      what tests/run.sh runs (8 x 20 s)
#   FC_FUZZ_SECONDS=600 tests/fuzz/run.sh  the longer run (10 minutes a target)
#   FC_FUZZ_TARGETS="request" tests/fuzz/run.sh
#
# Targets: request (parse, checks, route, rewrite of a request head, fed in two
# pieces), response (parse and rewrite of a response head), body (request and
# response bodies relayed through txn_parser.c's callbacks over reads split
# where the input says; the verdict must not depend on the split), route
# (fc_route_pool() on requests fc_head_check_request() accepts: host spellings
# pick alike, no path spelling slips past its route), config (the
# configuration loader), state (the runtime state file reader: what it takes
# writes back to what it takes again), cache (the response cache's RFC 9111
# decisions, its metas and hit heads, HTTP-dates), dns (the DNS answers service
# discovery reads: c-ares's SRV parser and fc_dns_srv_ttl()). New inputs found go to a scratch copy of the corpus,
# never into the repository; a crashing input is kept under build-fuzz/ and named.
# FC_FUZZ_BUILD_DIR puts the builds, corpora and logs elsewhere.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${FC_FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${FC_FUZZ_SECONDS:-20}
targets=${FC_FUZZ_TARGETS:-request response body route config state cache dns}
cc=${FC_FUZZ_CC:-clang-14}
command -v "$cc" >/dev/null || { echo "fuzz: $cc not found: apt-get install clang-14 libclang-rt-14-dev" >&2; exit 1; }

mkdir -p "$out"
flags=(-g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -DLLHTTP_STRICT_MODE=1 -I"$root/core" -I"$root/sdk/include" -I/usr/share/include/llhttp
       $(pkg-config --cflags libconfig libuv jansson libcares))
llhttp=(/usr/share/llhttp/llhttp.c /usr/share/llhttp/api.c /usr/share/llhttp/http.c)
declare -A sources=(
  [request]="core/http_request.c core/http_rewrite.c core/route.c"
  [response]="core/http_request.c core/http_rewrite.c"
  [body]="core/txn_parser.c core/http_request.c core/http_rewrite.c"
  [route]="core/http_request.c core/http_rewrite.c core/route.c"
  [config]="core/config.c core/config_reader.c core/dns.c core/config_tls.c core/tls_context.c core/tls.c core/log.c core/log_writer.c"
  [cache]="core/cache_policy.c core/cache_entry.c core/http_request.c core/http_rewrite.c"
  [dns]="core/dns.c"
  [state]="core/overlay.c core/config.c core/config_reader.c core/dns.c core/config_tls.c core/tls_context.c core/tls.c core/log.c core/log_writer.c"
)
declare -A libs=([request]="" [response]="" [body]="" [route]="" [cache]="" [dns]="$(pkg-config --libs libcares)" [config]="$(pkg-config --libs libconfig libssl libcrypto libuv libcares)"
                   [state]="$(pkg-config --libs libconfig jansson libssl libcrypto libuv libcares)")

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$here/lsan.supp}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
failed=0
for t in $targets; do
  src=()
  for f in ${sources[$t]}; do src+=("$root/$f"); done
  echo "fuzz: building $t"
  "$cc" "${flags[@]}" "$here/fuzz_$t.c" "${src[@]}" "${llhttp[@]}" ${libs[$t]} -o "$out/fuzz_$t"
  corpus="$out/corpus-$t"
  rm -rf "$corpus"
  rm -rf "$out/crashes-$t"
  mkdir -p "$corpus" "$out/crashes-$t"
  cp "$here/corpus/$t/"* "$corpus/"
  echo "fuzz: running $t for ${seconds} s"
  if ! (cd "$out/crashes-$t" && "$out/fuzz_$t" -max_total_time="$seconds" -timeout=10 \
          -rss_limit_mb=2048 -print_final_stats=1 "$corpus" "$here/corpus/$t" \
          >"$out/fuzz_$t.log" 2>&1); then
    echo "fuzz: $t FAILED; input kept in $out/crashes-$t; log:" >&2
    tail -n 60 "$out/fuzz_$t.log" >&2
    failed=1
    continue
  fi
  grep -E "^stat::number_of_executed_units|^stat::new_units_added" "$out/fuzz_$t.log" |
    sed "s/^/fuzz: $t: /"
done
exit "$failed"
