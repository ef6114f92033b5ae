#!/usr/bin/env bash
# Run every libFuzzer harness of a COFFER_FUZZ build for a bounded time
# over its committed seed corpus and regression inputs; fail if any of
# them finds a crash, a leak, undefined behaviour or a timeout.
#
#   tests/fuzz/run.sh [SECONDS]      seconds per harness (default 60)
#
#   COFFER_FUZZ_BUILD=DIR   the build directory (default: build-fuzz in the
#                           source tree); it builds nothing itself:
#                             CC=clang cmake -S . -B build-fuzz -DCOFFER_FUZZ=ON
#                             cmake --build build-fuzz --target coffer_fuzzers
#   COFFER_FUZZ_ONLY="a b"  only these harnesses
#   COFFER_FUZZ_KEEP=DIR    keep the grown corpora and any crash inputs there
#
# The committed corpora are never modified. A crash input is printed with
# the command that replays it; commit it under tests/fuzz/regressions/NAME/
# once fixed, and ctest replays it in every build.
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
secs="${1:-60}"
case "$secs" in
    '' | *[!0-9]*)
        echo "run.sh: SECONDS must be a whole number (got '$secs')" >&2
        exit 2
        ;;
esac
bin="${COFFER_FUZZ_BUILD:-$src/build-fuzz}/fuzz"
if [ ! -d "$bin" ]; then
    echo "run.sh: no harnesses in $bin: configure with CC=clang -DCOFFER_FUZZ=ON and build" \
        "the coffer_fuzzers target first" >&2
    exit 2
fi

if [ -n "${COFFER_FUZZ_KEEP:-}" ]; then
    work="$COFFER_FUZZ_KEEP"
    mkdir -p "$work"
else
    work="$(mktemp -d "${TMPDIR:-/tmp}/coffer-fuzz.XXXXXX")"
    # Removed on success only: a failure's inputs stay to be looked at.
    trap '[ "${#failed[@]}" -ne 0 ] || rm -rf "$work"' EXIT
fi

if [ -n "${COFFER_FUZZ_ONLY:-}" ]; then
    read -r -a names <<<"$COFFER_FUZZ_ONLY"
else
    mapfile -t names < <(ls "$src/tests/fuzz/corpus")
fi

failed=()
summary=()

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
ulimit -c 0 2>/dev/null || true

for h in "${names[@]}"; do
    exe="$bin/$h"
    if [ ! -x "$exe" ]; then
        failed+=("$h")
        summary+=("$h: NOT BUILT ($exe)")
        continue
    fi
    corpus="$work/$h/corpus"
    artifacts="$work/$h/artifacts"
    mkdir -p "$corpus" "$artifacts"
    cp -n "$src/tests/fuzz/corpus/$h/"* "$corpus/" 2>/dev/null || true
    dirs=("$corpus")
    [ -d "$src/tests/fuzz/regressions/$h" ] && dirs+=("$src/tests/fuzz/regressions/$h")
    log="$work/$h/log"
    echo "=== $h: ${secs}s"
    set +e
    "$exe" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" "${dirs[@]}" >"$log" 2>&1
    rc=$?
    set -e
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -n1 | grep -o '[0-9]*$' || true)"
    cov="$(grep -oE '#[0-9]+[[:space:]]+DONE +cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -n1 |
        sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+)/cov \1, features \2, corpus \3/' || true)"
    if [ "$rc" -eq 0 ]; then
        summary+=("$h: ok, ${execs:-?} executions, ${cov:-no stats}")
    else
        failed+=("$h")
        summary+=("$h: FAILED (exit $rc) after ${execs:-?} executions")
        tail -n 60 "$log"
        for a in "$artifacts"/*; do
            [ -e "$a" ] || continue
            echo "$h: input that failed: $a"
            echo "  replay: $exe $a"
        done
    fi
done

echo
echo "=== fuzz summary (${secs}s per harness)"
for s in "${summary[@]}"; do
    echo "  $s"
done
if [ "${#failed[@]}" -ne 0 ]; then
    echo "FAILED: ${failed[*]}"
    echo "(inputs and logs: $work)"
    exit 1
fi
echo "OK: no harness found a problem"
