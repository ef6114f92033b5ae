#!/usr/bin/env bash
# coffer rehearse with the shipped external-S3 policy: AsterDrive's database
# on PostgreSQL 15 (tests/tools/pg_server.sh), its blobs in a versioned
# bucket on a real Ceph RGW (tests/tools/ceph_rgw.sh). Every shipped check
# passes (storage-objects looks each blob up by object key among the
# objects the set recorded, whose versions the rehearsal proves still exist),
# the doctor checks the scratch database, the production database, tree and
# bucket (every version) are unchanged while the rehearsal runs and
# afterwards, nothing is left; a set taken while one object was deleted
# fails storage-objects, which names its key.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/rehearse_lib.sh"
require_coffer
# shellcheck disable=SC1091
. "$COFFER_SRC/tests/plugins/storage_s3/rgw_lib.sh"
POLICY=$COFFER_SRC/policies/asterdrive-external-s3.yaml
PGT=$T/pg
BUCKET=asterdrive-blobs
rgw_start
trap '_rc=$?; "$TOOLS/pg_server.sh" stop "$PGT" >/dev/null 2>&1; bash "$TOOLS/ceph_rgw.sh" stop "$RGW_DIR" >/dev/null 2>&1; (exit $_rc); _cleanup' EXIT
"$TOOLS/pg_server.sh" start "$PGT" >/dev/null || die "cannot start PostgreSQL"
# shellcheck disable=SC1091
. "$PGT/pg.env"
export PGPASSWORD=$PG_PASSWORD
export PATH="$PG_BIN:$PATH"
psql_db() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$1" -Atc "$2"; }
rh_db_state() {
    local t
    for t in $(psql_db asterdrive "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"); do
        printf '%s %s %s\n' "$t" "$(psql_db asterdrive "SELECT count(*) FROM $t")" \
            "$(psql_db asterdrive "COPY (SELECT * FROM $t ORDER BY 1) TO STDOUT" | sha256sum | cut -c1-16)"
    done
    # the bucket: every version and delete marker
    printf 'bucket %s\n' "$(awsx s3api list-object-versions --bucket "$BUCKET" --output json |
        "$PY" -c 'import json, sys
j = json.load(sys.stdin)
rows = sorted((v["Key"], v["VersionId"], v.get("Size", -1), v["IsLatest"], v.get("ETag", "-"))
              for k in ("Versions", "DeleteMarkers") for v in j.get(k, []))
print(len(rows), __import__("hashlib").sha256(repr(rows).encode()).hexdigest()[:16])')"
}
rh_scratch_dbs() {
    $PG_ADMIN -d postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'coffer_rehearse_%' ORDER BY 1" |
        tr '\n' ' ' | sed 's/ $//'
}
rh_hide_blob() { awsx s3 rm "s3://$BUCKET/$1" >/dev/null || die "cannot delete $1"; }
rh_unhide_blob() { awsx s3 cp "$T/objects/$1" "s3://$BUCKET/$1" >/dev/null || die "cannot put $1 back"; }

section "an AsterDrive deployment on PostgreSQL and S3"
rh_generate "${RH_S3_FILES:-3000}"
echo "+ aster_load.py $T/live --url $PG_URL --objects-dir $T/objects --bucket $BUCKET"
"$PY" "$TOOLS/aster_load.py" "$T/live" --url "$PG_URL" --objects-dir "$T/objects" --bucket "$BUCKET" \
    --endpoint "$AWS_ENDPOINT_URL" >"$T/load.json" || die "aster_load.py failed"
awsx s3api create-bucket --bucket "$BUCKET" >/dev/null || die "cannot create the bucket"
awsx s3api put-bucket-versioning --bucket "$BUCKET" --versioning-configuration Status=Enabled || die "versioning"
echo "+ aws s3 sync $T/objects s3://$BUCKET/"
awsx s3 sync "$T/objects" "s3://$BUCKET/" --only-show-errors || die "cannot upload the blobs"
NOBJ=$(find "$T/objects" -type f | wc -l)
assert_eq "$NOBJ" "$(awsx s3 ls --recursive "s3://$BUCKET/" | wc -l)" "every blob is an object in the bucket ($NOBJ)"
assert_absent "$T/live/data/uploads" "no local blob store any more"
rh_env
export ASTERDRIVE_DATABASE_URL=$PG_URL ASTERDRIVE_S3_ENDPOINT=$AWS_ENDPOINT_URL
export ASTERDRIVE_S3_BUCKET=$BUCKET ASTERDRIVE_S3_PREFIX=
RH_STORED_BLOBS=$(psql_db asterdrive "SELECT count(*) FROM file_blobs b JOIN storage_policies p ON p.id = b.policy_id WHERE b.backing = 'stored' AND p.connector_id = 's3' AND p.storage_config ->> 'bucket' = '$BUCKET'")
expect_ok "shipped policy is valid" rcf policy check "$POLICY" || { printf '%s\n' "$ERR" | show; die "policy check"; }
expect_ok "init" rcf init -p "$POLICY" || die "init failed"
rh_backup "backup"

section "rehearse: a scratch database, the bucket checked in place"
rh_rehearse_pass "row-counts storage-usage blob-ref-counts file-blobs folder-tree storage-objects avatars untracked-objects" \
    "^postgres://$PG_USER@127.0.0.1:$PG_PORT/coffer_rehearse_[0-9a-z_]+$"
assert_match "$RH_DURING_DBS" "^coffer_rehearse_[0-9a-z_]+$" "one scratch database existed while it ran ($RH_DURING_DBS)"
assert_contains "$(json_get "$(head -1 "$RH_DOCTOR_LOG")" 'j["database_url"]')" "/$RH_DURING_DBS" \
    "the doctor checked that scratch database"

BLOB=$(psql_db asterdrive "SELECT storage_path FROM file_blobs WHERE backing = 'stored' ORDER BY id LIMIT 1")
rh_missing_blob "$BLOB"
finish
