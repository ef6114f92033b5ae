#!/usr/bin/env bash
# Recovery from a bare repository on a real Ceph RGW: a set made with a
# policy whose target names its credentials' variables, the policy then
# deleted; `coffer --repo s3://BUCKET/PREFIX` (credentials and endpoint
# from the AWS_* environment) lists, shows and restores it. A prefix or a
# bucket without a repository: exit 1 naming the location.
. "$(dirname "$0")/lib.sh"
require_coffer
T_RGW_LIB=$COFFER_SRC/tests/plugins/storage_s3/rgw_lib.sh
# shellcheck disable=SC1090
. "$T_RGW_LIB"
rgw_start
export COFFER_PLUGIN_PATH=$COFFER_PLUGIN_BUILD_DIR # the s3 driver
setup_env
BUCKET=bare-recovery
rgw_bucket "$BUCKET"
LOC=s3://$BUCKET/asterdrive

section "back up to S3, then lose the policy"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 3 --seed 61
make_policy "$T/s3.yaml" "s|    location: .*|    location: $LOC\n    endpoint: $AWS_ENDPOINT_URL\n    access_key_env: AWS_ACCESS_KEY_ID\n    secret_key_env: AWS_SECRET_ACCESS_KEY|"
expect_ok "init" cf init -p "$T/s3.yaml" || die "init"
expect_ok "backup" cf backup -p "$T/s3.yaml" --json || die "backup"
SET=$(json_get "$OUT" 'j["set"]')
snapshot "$ASTERDRIVE_ROOT" "$T/snap.json"
rm -f "$T/s3.yaml"
unset ASTERDRIVE_ROOT COFFER_REPO

section "--repo s3://"
expect_ok "sets" cf --repo "$LOC" sets --json
assert_eq "$SET" "$(json_get "$OUT" 'j[0]["id"]')" "the set is listed"
expect_ok "policy show" cf --repo "$LOC" policy show --set "$SET"
assert_not_contains "$OUT" "$AWS_SECRET_ACCESS_KEY" "no secret key in the shown policy"
assert_eq "" "$(grep -v '^ *#' <<<"$OUT" | grep -E 'AWS_(ACCESS|SECRET)')" "the credentials' variables are not named outside comments"
assert_contains "$OUT" "endpoint: \"$AWS_ENDPOINT_URL\"" "the endpoint is kept"
expect_ok "restore" cf --repo "$LOC" restore --set "$SET" --to "$T/out" --json
assert_eq True "$(json_get "$OUT" 'j["ok"]')" "restore ok"
snapshot "$T/out" "$T/snap-out.json"
compare "restored tree and SQLite database equal the original" "$T/snap.json" "$T/snap-out.json" "${RESTORE_EXCLUDES[@]}"

section "not a repository"
expect_rc 1 "a prefix without a repository" cf --repo "s3://$BUCKET/nothing-here" sets
assert_contains "$ERR" "s3://$BUCKET/nothing-here" "the error names the location"
expect_rc 1 "a missing bucket" cf --repo "s3://no-such-bucket-$$/x" sets
assert_contains "$ERR" "s3://no-such-bucket-$$/x" "the error names the location"
finish
