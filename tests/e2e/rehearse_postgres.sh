#!/usr/bin/env bash
# coffer rehearse with the shipped PostgreSQL policy (PostgreSQL 15 from
# tests/tools/pg_server.sh) on an AsterDrive deployment of tens of thousands
# of rows loaded by aster_load.py: every shipped check passes in the scratch
# database, the doctor checks that database (never production's), the
# production database and tree are unchanged while the rehearsal runs and
# afterwards, no coffer_rehearse_* database and no scratch directory are
# left; a set that lacks one blob file fails storage-objects, which names it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/rehearse_lib.sh"
require_coffer
POLICY=$COFFER_SRC/policies/asterdrive-postgres-local.yaml
PGT=$T/pg
trap '_rc=$?; "$TOOLS/pg_server.sh" stop "$PGT" >/dev/null 2>&1; (exit $_rc); _cleanup' EXIT
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
}
rh_scratch_dbs() {
    $PG_ADMIN -d postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'coffer_rehearse_%' ORDER BY 1" |
        tr '\n' ' ' | sed 's/ $//'
}

section "an AsterDrive deployment on PostgreSQL"
rh_generate
echo "+ aster_load.py $T/live --url $PG_URL"
"$PY" "$TOOLS/aster_load.py" "$T/live" --url "$PG_URL" >"$T/load.json" || die "aster_load.py failed"
pass "database loaded: $(json_get "$(cat "$T/load.json")" 'j["rows"]["files"]') files rows"
assert_absent "$T/live/data/asterdrive.db" "the deployment has no SQLite database any more"
assert_contains "$(cat "$T/live/data/config.toml")" "url = \"$PG_URL\"" "config.toml names the PostgreSQL database"
rh_env
export ASTERDRIVE_DATABASE_URL=$PG_URL
RH_STORED_BLOBS=$(psql_db asterdrive "SELECT count(*) FROM file_blobs WHERE backing = 'stored'")
expect_ok "shipped policy is valid" rcf policy check "$POLICY" || { printf '%s\n' "$ERR" | show; die "policy check"; }
expect_ok "init" rcf init -p "$POLICY" || die "init failed"
rh_backup "backup"

section "rehearse: a scratch database, every check passes against it"
rh_rehearse_pass "$RH_CHECKS_LOCAL" "^postgres://$PG_USER@127.0.0.1:$PG_PORT/coffer_rehearse_[0-9a-z_]+$"
assert_match "$RH_DURING_DBS" "^coffer_rehearse_[0-9a-z_]+$" "one scratch database existed while it ran ($RH_DURING_DBS)"
assert_eq "$RH_DURING_DBS" "$(json_get "$REP" 'j["sets"][0]["scratch_databases"][0]["name"]')" "the report names it"
assert_contains "$(json_get "$(head -1 "$RH_DOCTOR_LOG")" 'j["database_url"]')" "/$RH_DURING_DBS" \
    "the doctor checked that scratch database"
assert_not_contains "$(cat "$RH_DOCTOR_LOG")" "/asterdrive\"" "the doctor never saw the production database"

BLOB=data/uploads/$(psql_db asterdrive "SELECT storage_path FROM file_blobs WHERE backing = 'stored' AND thumbnail_path IS NULL ORDER BY id LIMIT 1")
rh_missing_blob "$BLOB"
finish
