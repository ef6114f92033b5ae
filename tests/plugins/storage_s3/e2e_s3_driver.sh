#!/usr/bin/env bash
# The s3 driver against a real Ceph RGW: the cmocka program test_s3_rgw
# (small and multipart objects, ranged reads, paging, abort, conditional
# create, versioning and object lock, bad credentials, missing bucket),
# then interoperability with the AWS CLI: objects with spaces, '+',
# unicode and reserved characters in their keys written by the CLI are
# read by the driver, and the driver's are read back by the CLI.
. "$COFFER_SRC/tests/e2e/lib.sh"
. "$(dirname "$0")/rgw_lib.sh"

BIN=$COFFER_BUILD/tests/plugins/storage_s3/test_s3_rgw
[ -x "$BIN" ] || die "$BIN not built"
rgw_start

NAMES=(
    "with space/and+plus/file name.txt"
    "unicode/ünïcødé ሴ.txt"
    "odd/a&b=c;d,e@f\$g'h(i)!*~.txt"
    "odd/percent%20not-a-space+%2B"
)

section "objects written by the AWS CLI"
expect_ok "aws s3 mb s3://interop" awsx s3 mb s3://interop || die "no bucket"
for n in "${NAMES[@]}"; do
    printf 'from-cli:%s' "$n" >"$T/body"
    expect_ok "CLI put 'cli/$n'" awsx s3api put-object --bucket interop --key "cli/$n" --body "$T/body"
done

section "driver tests (cmocka)"
run env S3_INTEROP_BUCKET=interop "$BIN"
printf '%s\n' "$OUT" | grep -E '^\[ *(RUN|OK|FAILED|PASSED|ERROR|LINE)' | show 80
if [ "$RC" -eq 0 ]; then pass "test_s3_rgw: $(printf '%s\n' "$OUT" | grep -E 'PASSED' | tail -1)"; else
    fail "test_s3_rgw exit $RC"; printf '%s\n%s\n' "$OUT" "$ERR" | tail -40 | show 40
fi

section "objects written by the driver, read by the AWS CLI"
for n in "${NAMES[@]}"; do
    rm -f "$T/got"
    run awsx s3api get-object --bucket interop --key "driver/$n" "$T/got"
    if [ "$RC" -eq 0 ] && [ "$(cat "$T/got")" = "from-driver:$n" ]; then pass "CLI reads 'driver/$n'"; else
        fail "CLI cannot read 'driver/$n' (exit $RC)"; printf '%s\n' "$ERR" | show
    fi
done
run awsx s3 ls --recursive s3://interop/driver/
assert_eq "${#NAMES[@]}" "$(printf '%s\n' "$OUT" | grep -c .)" "CLI lists the driver's ${#NAMES[@]} keys"
assert_contains "$OUT" "ünïcødé ሴ.txt" "unicode key listed as written"
finish
