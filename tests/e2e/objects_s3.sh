#!/usr/bin/env bash
# object_store components on a real Ceph RGW, with the shipped external-S3
# policy (PostgreSQL from tests/tools/pg_server.sh): versioning required,
# version inventory recorded, changes reported, --rollback-objects makes
# the bucket match the set, a version deleted behind coffer's back is
# named by verify, and protect: copy restores the bytes.
. "$(dirname "$0")/lib.sh"
require_coffer
T_RGW_LIB=$COFFER_SRC/tests/plugins/storage_s3/rgw_lib.sh
# shellcheck disable=SC1090
. "$T_RGW_LIB"
PGT=$T/pg
rgw_start
trap '_rc=$?; "$TOOLS/pg_server.sh" stop "$PGT" >/dev/null 2>&1; bash "$TOOLS/ceph_rgw.sh" stop "$RGW_DIR" >/dev/null 2>&1; (exit $_rc); _cleanup' EXIT
"$TOOLS/pg_server.sh" start "$PGT" >/dev/null || die "cannot start PostgreSQL"
# shellcheck disable=SC1091
. "$PGT/pg.env"
export PGPASSWORD=$PG_PASSWORD
psql_app() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "${1:-asterdrive}" -Atc "$2"; }
psql_app asterdrive "CREATE TABLE file_blobs (id serial PRIMARY KEY, storage_path text NOT NULL); INSERT INTO file_blobs (storage_path) VALUES ('files/a'), ('files/b');" \
    || die "cannot create the schema"

POLICY=$COFFER_SRC/policies/asterdrive-external-s3.yaml
export ASTERDRIVE_ROOT=$T/live COFFER_REPO=$T/repo ASTERDRIVE_DOCTOR=true
export ASTERDRIVE_STOP="touch $T/stopped" ASTERDRIVE_START="touch $T/started"
export ASTERDRIVE_DATABASE_URL=$PG_URL ASTERDRIVE_S3_ENDPOINT=$AWS_ENDPOINT_URL
export ASTERDRIVE_S3_BUCKET=appbucket ASTERDRIVE_S3_PREFIX=
mkdir -p "$ASTERDRIVE_ROOT/data/avatar/user/1/v1"
printf '[auth]\nmfa_secret_key = "%064d"\n' 1 >"$ASTERDRIVE_ROOT/data/config.toml"
echo avatar >"$ASTERDRIVE_ROOT/data/avatar/user/1/v1/512.webp"

awsx s3api create-bucket --bucket appbucket >/dev/null || die "cannot create the bucket"
echo "content A1" >"$T/a1"; echo "content B1" >"$T/b1"; echo "content A2" >"$T/a2"; echo "new C" >"$T/c1"
awsx s3 cp "$T/a1" s3://appbucket/files/a >/dev/null
awsx s3 cp "$T/b1" s3://appbucket/files/b >/dev/null

section "policy"
expect_ok "shipped external-S3 policy is valid" cfs policy check "$POLICY"
expect_ok "init" cfs init -p "$POLICY" || die "init failed"

section "a bucket without versioning is refused, before the application is stopped"
rm -f "$T/stopped" "$T/started"
expect_fail_desc "backup without bucket versioning" cfs backup -p "$POLICY"
assert_error_line
assert_contains "$ERR" "never enabled" "error gives the versioning state"
assert_contains "$ERR" "not a complete plan" "error says why"
assert_absent "$T/stopped" "application was not stopped"
assert_eq "$(count_sets "$COFFER_REPO")" 0 "no set written"

section "versioning enabled: the inventory is recorded"
awsx s3api put-bucket-versioning --bucket appbucket --versioning-configuration Status=Enabled || die "cannot enable versioning"
# Objects written before versioning have the version "null"; write again.
awsx s3 cp "$T/a1" s3://appbucket/files/a >/dev/null
awsx s3 cp "$T/b1" s3://appbucket/files/b >/dev/null
VA1=$(awsx s3api head-object --bucket appbucket --key files/a --query VersionId --output text)
expect_ok "backup 1" cfs backup -p "$POLICY" --json || die "backup failed"
SET1=$(json_get "$OUT" "j['set']")
assert_exists "$T/stopped" "stop command ran"
assert_exists "$T/started" "start command ran"
expect_ok "sets --json" cfs sets -p "$POLICY" --json
assert_contains "$OUT" '"objects"' "set lists the objects component"

section "the application changes the bucket"
awsx s3 cp "$T/a2" s3://appbucket/files/a >/dev/null
awsx s3 rm s3://appbucket/files/b >/dev/null
awsx s3 cp "$T/c1" s3://appbucket/files/c >/dev/null

section "restore to a separate root: database elsewhere, bucket only checked"
expect_ok "restore --to" cfs restore --no-checks -p "$POLICY" --set "$SET1" --to "$T/r1" \
    --map "database=postgres://$PG_USER@127.0.0.1:$PG_PORT/scratch1"
assert_contains "$ERR" "2 object(s) changed and 1 created" "changes since the set are reported"
assert_eq "$(awsx s3 cp s3://appbucket/files/a - 2>/dev/null)" "content A2" "rehearsal left the live bucket alone"
assert_eq "$(psql_app scratch1 'SELECT count(*) FROM file_blobs')" 2 "database restored into scratch1"
assert_eq "$(cat "$T/r1/data/config.toml" | head -1)" "[auth]" "config restored"

section "--rollback-objects makes the bucket match the set"
expect_ok "restore objects in place with rollback" cfs restore --no-checks -p "$POLICY" --set "$SET1" --in-place \
    --only objects --rollback-objects
assert_eq "$(awsx s3 cp s3://appbucket/files/a - 2>/dev/null)" "content A1" "files/a is the recorded version again"
assert_eq "$(awsx s3 cp s3://appbucket/files/b - 2>/dev/null)" "content B1" "files/b is back"
if awsx s3api head-object --bucket appbucket --key files/c >/dev/null 2>&1; then
    fail "files/c, created after the set, is still current"
else
    pass "files/c, created after the set, is removed"
fi
expect_ok "verify after rollback" cfs verify -p "$POLICY" --set "$SET1"

section "a recorded version deleted behind coffer's back is named"
awsx s3api delete-object --bucket appbucket --key files/a --version-id="$VA1" >/dev/null || die "cannot delete the version"
expect_rc 3 "verify names the missing version" cfs verify -p "$POLICY" --set "$SET1"
assert_contains "$ERR" "files/a" "verify names the object"
assert_contains "$ERR" "$VA1" "verify names the version"

section "versioning suspended: refused"
awsx s3api put-bucket-versioning --bucket appbucket --versioning-configuration Status=Suspended
expect_fail_desc "backup with versioning suspended" cfs backup -p "$POLICY"
assert_contains "$ERR" "Suspended" "error names the state"

section "protect: copy stores the bytes"
export ASTERDRIVE_S3_PROTECT=copy
expect_ok "backup with protect: copy" cfs backup -p "$POLICY" --json || die "copy backup failed"
SET2=$(json_get "$OUT" "j['set']")
expect_ok "verify --read-data" cfs verify -p "$POLICY" --set "$SET2" --read-data
expect_ok "restore copy set" cfs restore --no-checks -p "$POLICY" --set "$SET2" --to "$T/r2" \
    --map "database=postgres://$PG_USER@127.0.0.1:$PG_PORT/scratch2"
assert_eq "$(cat "$T/r2/objects/files/b" 2>/dev/null)" "content B1" "object bytes restored under DIR/objects/"
finish
