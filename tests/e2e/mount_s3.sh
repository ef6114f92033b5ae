#!/usr/bin/env bash
# coffer mount on a repository in S3 (a real Ceph RGW): the tree of a set
# equals the source, a ranged read in the middle of a large file returns
# exactly that region, and SIGINT unmounts with exit 0. Skipped without
# /dev/fuse and fusermount3, or without the RGW packages.
. "$(dirname "$0")/lib.sh"
require_coffer
if [ ! -e /dev/fuse ] || ! command -v fusermount3 >/dev/null; then
    skip "mount: /dev/fuse or fusermount3 is missing (apt-get install fuse3)"
    finish
fi
T_RGW_LIB=$COFFER_SRC/tests/plugins/storage_s3/rgw_lib.sh
# shellcheck disable=SC1090
. "$T_RGW_LIB"
rgw_start
export COFFER_PLUGIN_PATH=$COFFER_PLUGIN_BUILD_DIR # the s3 driver
setup_env
BUCKET=mount-s3
rgw_bucket "$BUCKET"
make_policy "$T/s3.yaml" "s|    location: .*|    location: s3://$BUCKET/asterdrive\n    endpoint: $AWS_ENDPOINT_URL\n    access_key_env: AWS_ACCESS_KEY_ID\n    secret_key_env: AWS_SECRET_ACCESS_KEY|"
MNT=$T/mnt
mkdir -p "$MNT"

section "back up to S3"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 5 --seed 71
head -c $((12 << 20)) /dev/urandom >"$ASTERDRIVE_ROOT/data/big.bin"
expect_ok "init" cf init -p "$T/s3.yaml" || die "init"
expect_ok "backup" cf backup -p "$T/s3.yaml" --json || die "backup"
SET=$(json_get "$OUT" 'j["set"]')

section "mount"
"$COFFER" --no-progress mount -p "$T/s3.yaml" "$MNT" 2>"$T/mount.err" &
MPID=$!
bg_register "$MPID"
mount_register "$MNT"
wait_for "the mount" 30 mountpoint -q "$MNT" || { show <"$T/mount.err"; die "not mounted"; }
assert_eq "sets/$SET" "$(readlink "$MNT/latest")" "latest points to the set"
if diff -r --no-dereference -x .tmp -x .uploads -x 'asterdrive.db*' -x config.toml \
    "$ASTERDRIVE_ROOT/data" "$MNT/latest/data/data" >"$T/diff" 2>&1; then
    pass "the data component equals the source (diff -r)"
else
    fail "contents differ"; show <"$T/diff"
fi
dd if="$ASTERDRIVE_ROOT/data/big.bin" of="$T/want" bs=4096 skip=1501 count=33 2>/dev/null
dd if="$MNT/latest/data/data/big.bin" of="$T/got" bs=4096 skip=1501 count=33 2>/dev/null
cmp -s "$T/want" "$T/got" && pass "a ranged read in the middle of a 12 MiB file" || fail "ranged read differs"
assert_eq "SQLite format 3" "$(head -c 15 "$MNT/latest/database/asterdrive.db")" "the database stream reads"
kill -INT "$MPID"
wait "$MPID"
assert_eq 0 "$?" "SIGINT: coffer mount exits 0"
if grep -q " $MNT " /proc/mounts; then fail "$MNT still mounted"; else pass "no mount left"; fi
run awsx s3 ls "s3://$BUCKET/asterdrive/locks/"
assert_eq "" "$OUT" "the repository lock is released"
finish
