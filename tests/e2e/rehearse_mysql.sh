#!/usr/bin/env bash
# coffer rehearse with the shipped MySQL/MariaDB policy (MariaDB 10.11 from
# tests/tools/mysql_server.sh) on an AsterDrive deployment of tens of
# thousands of rows loaded by aster_load.py: every shipped check passes in
# the scratch schema, the doctor checks that schema (never production's),
# the production schema and tree are unchanged while the rehearsal runs and
# afterwards, no coffer_rehearse_* schema and no scratch directory are left;
# a set that lacks one blob file fails storage-objects, which names it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/rehearse_lib.sh"
require_coffer
POLICY=$COFFER_SRC/policies/asterdrive-mysql-local.yaml
MYT=$T/mysql
trap '_rc=$?; bash "$TOOLS/mysql_server.sh" stop "$MYT" >/dev/null 2>&1; (exit $_rc); _cleanup' EXIT
bash "$TOOLS/mysql_server.sh" start "$MYT" >"$T/mysql.env" || die "cannot start MariaDB"
eval "$(sed 's/^/export /' "$T/mysql.env")"
export MYSQL_PWD=$MYSQL_TEST_PASSWORD
MY_URL=mysql://$MYSQL_TEST_USER@127.0.0.1:$MYSQL_PORT/asterdrive
my() { mariadb --defaults-file="$MYSQL_CLIENT_CNF" -B -N "$@"; }
rh_db_state() {
    local t
    for t in $(my -e "SELECT table_name FROM information_schema.tables WHERE table_schema = 'asterdrive' ORDER BY 1"); do
        printf '%s %s %s\n' "$t" "$(my asterdrive -e "SELECT count(*) FROM \`$t\`")" \
            "$(my asterdrive -e "SELECT * FROM \`$t\` ORDER BY 1" | sha256sum | cut -c1-16)"
    done
}
rh_scratch_dbs() {
    my -e "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'coffer\\_rehearse\\_%' ORDER BY 1" |
        tr '\n' ' ' | sed 's/ $//'
}

section "an AsterDrive deployment on MariaDB"
rh_generate
echo "+ aster_load.py $T/live --url $MY_URL"
"$PY" "$TOOLS/aster_load.py" "$T/live" --url "$MY_URL" >"$T/load.json" || die "aster_load.py failed"
pass "database loaded: $(json_get "$(cat "$T/load.json")" 'j["rows"]["files"]') files rows"
assert_absent "$T/live/data/asterdrive.db" "the deployment has no SQLite database any more"
assert_contains "$(cat "$T/live/data/config.toml")" "url = \"$MY_URL\"" "config.toml names the MariaDB database"
rh_env
export ASTERDRIVE_DATABASE_URL=$MY_URL
RH_STORED_BLOBS=$(my asterdrive -e "SELECT count(*) FROM file_blobs WHERE backing = 'stored'")
expect_ok "shipped policy is valid" rcf policy check "$POLICY" || { printf '%s\n' "$ERR" | show; die "policy check"; }
expect_ok "init" rcf init -p "$POLICY" || die "init failed"
rh_backup "backup"

section "rehearse: a scratch schema, every check passes against it"
rh_rehearse_pass "$RH_CHECKS_LOCAL" "^mysql://$MYSQL_TEST_USER@127.0.0.1:$MYSQL_PORT/coffer_rehearse_[0-9a-z_]+$"
assert_match "$RH_DURING_DBS" "^coffer_rehearse_[0-9a-z_]+$" "one scratch schema existed while it ran ($RH_DURING_DBS)"
assert_eq "$RH_DURING_DBS" "$(json_get "$REP" 'j["sets"][0]["scratch_databases"][0]["name"]')" "the report names it"
assert_contains "$(json_get "$(head -1 "$RH_DOCTOR_LOG")" 'j["database_url"]')" "/$RH_DURING_DBS" \
    "the doctor checked that scratch schema"
assert_not_contains "$(cat "$RH_DOCTOR_LOG")" "/asterdrive\"" "the doctor never saw the production schema"

BLOB=data/uploads/$(my asterdrive -e "SELECT storage_path FROM file_blobs WHERE backing = 'stored' AND thumbnail_path IS NULL ORDER BY id LIMIT 1")
rh_missing_blob "$BLOB"
finish
