#!/usr/bin/env bash
# Repair on a real Ceph RGW: a pack object deleted from the bucket; check
# names it with its fix lines and records the damage as state/damaged;
# --rebuild-index and a backup store the lost chunks again; set 1 restores
# byte-identical; a clean check removes the record.
. "$(dirname "$0")/lib.sh"
require_coffer
T_RGW_LIB=$COFFER_SRC/tests/plugins/storage_s3/rgw_lib.sh
# shellcheck disable=SC1090
. "$T_RGW_LIB"
rgw_start
export COFFER_PLUGIN_PATH=$COFFER_PLUGIN_BUILD_DIR # the s3 driver
setup_env
BUCKET=repair
rgw_bucket "$BUCKET"
LOC=s3://$BUCKET/asterdrive
P=$T/s3.yaml

section "back up to S3"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 20 --seed 62
make_policy "$P" "s|    location: .*|    location: $LOC\n    endpoint: $AWS_ENDPOINT_URL\n    access_key_env: AWS_ACCESS_KEY_ID\n    secret_key_env: AWS_SECRET_ACCESS_KEY|"
expect_ok "init" cf init -p "$P" || die "init"
expect_ok "backup" cf backup -p "$P" --json || die "backup"
SET1=$(json_get "$OUT" 'j["set"]')
snapshot "$ASTERDRIVE_ROOT" "$T/snap.json"

section "a pack lost"
run awsx s3 ls --recursive "s3://$BUCKET/asterdrive/data/"
PKEY=$(printf '%s\n' "$OUT" | sort -k3 -n | tail -1 | awk '{print $4}')
PKEY=${PKEY#asterdrive/}
[ -n "$PKEY" ] || die "no pack found"
run awsx s3 rm "s3://$BUCKET/asterdrive/$PKEY"
expect_rc 3 "check finds the lost pack" cf check -p "$P"
assert_contains "$ERR" "$PKEY" "check names $PKEY"
assert_contains "$ERR" "fix: coffer check -p $P --rebuild-index, then coffer backup -p $P" "the fix line"
run awsx s3 ls "s3://$BUCKET/asterdrive/state/damaged"
assert_eq 0 "$RC" "the damage record is in the bucket"

section "rebuild, back up, restore set 1"
expect_rc 3 "check --rebuild-index" cf check -p "$P" --rebuild-index
expect_ok "backup (source unchanged)" cf backup -p "$P"
expect_ok "restore set 1" cf restore -p "$P" --set "$SET1" --to "$T/out"
snapshot "$T/out" "$T/snap-out.json"
compare "set 1 restores byte-identical after the new backup" "$T/snap.json" "$T/snap-out.json" "${RESTORE_EXCLUDES[@]}"
expect_ok "check" cf check -p "$P"
run awsx s3 ls "s3://$BUCKET/asterdrive/state/damaged"
assert_ne 0 "$RC" "a clean check removes the damage record"

finish
