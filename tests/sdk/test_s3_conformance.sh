#!/usr/bin/env bash
# The storage conformance suite of the testing kit against the s3 driver on
# a private Ceph RGW (tests/tools/ceph_rgw.sh), as the S3 tests run it.
. "$(dirname "$0")/../e2e/lib.sh"
. "$COFFER_SRC/tests/plugins/storage_s3/rgw_lib.sh"
RUNNER=$COFFER_BUILD/tests/sdk/conformance_run
S3SO=$COFFER_PLUGIN_BUILD_DIR/storage_s3.so
[ -x "$RUNNER" ] || die "conformance_run not built at $RUNNER"
[ -f "$S3SO" ] || die "storage_s3.so not built at $S3SO"
rgw_start
expect_ok "create the bucket" awsx s3api create-bucket --bucket conformance || die "no bucket"
expect_ok "the s3 driver passes the conformance suite" "$RUNNER" "$S3SO" bucket=conformance \
    prefix=suite endpoint="$AWS_ENDPOINT_URL" region="$AWS_REGION" path_style=true
printf '%s\n' "$OUT" | show 60
assert_contains "$OUT" "s3: 0 conformance failure(s)" "no conformance failure"
finish
