#!/usr/bin/env bash
# coffer dump --component on PostgreSQL 15 (tests/tools/pg_server.sh): the
# output is a pg_dump custom-format archive that stock pg_restore loads into
# a fresh database with every table's row count and content equal to the
# original at backup time.
. "$(dirname "$0")/lib.sh"
require_coffer
POLICY=$COFFER_SRC/policies/asterdrive-postgres-local.yaml
export COFFER_PLUGIN_PATH=$COFFER_PLUGIN_BUILD_DIR # the postgres driver
PGT=$T/pg
trap '_rc=$?; "$TOOLS/pg_server.sh" stop "$PGT" >/dev/null 2>&1; (exit $_rc); _cleanup' EXIT
"$TOOLS/pg_server.sh" start "$PGT" >/dev/null || die "cannot start PostgreSQL"
# shellcheck disable=SC1091
. "$PGT/pg.env"
export PGPASSWORD=$PG_PASSWORD
export PATH="$PG_BIN:$PATH"
psql_db() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$1" -Atc "$2"; }
# sums DB: "table rows md5" of every user table, content ordered
sums() {
    local t
    for t in $(psql_db "$1" "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"); do
        echo "$t $(psql_db "$1" "SELECT count(*) || ' ' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '-') FROM public.\"$t\" x")"
    done
}
setup_env
export ASTERDRIVE_DATABASE_URL=$PG_URL

section "back up"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 3 --seed 52
"$PY" "$TOOLS/aster_load.py" "$ASTERDRIVE_ROOT" --url "$PG_URL" >"$T/load.json" || die "aster_load.py failed"
expect_ok "init" cf init -p "$POLICY" --encryption none || die "init"
expect_ok "backup" cf backup -p "$POLICY" --json || die "backup"
SET=$(json_get "$OUT" 'j["set"]')
sums asterdrive >"$T/sums-live.txt"
assert_gt "$(wc -l <"$T/sums-live.txt")" 5 "the live database has tables"
# a change after the backup must not show up in the dump
psql_db asterdrive "DELETE FROM users WHERE id = (SELECT max(id) FROM users)" 2>/dev/null ||
    psql_db asterdrive "UPDATE users SET username = username || '-changed'"
sums asterdrive >"$T/sums-changed.txt"
cmp -s "$T/sums-live.txt" "$T/sums-changed.txt" && fail "the change after the backup changed nothing"

section "dump --component, pg_restore into a fresh database"
"$COFFER" --no-progress dump -p "$POLICY" --set "$SET" --component database >"$T/db.pgdump" 2>"$T/err"
assert_eq 0 $? "dump --component database exits 0"
assert_eq "PGDMP" "$(head -c 5 "$T/db.pgdump")" "the output is a pg_dump custom-format archive"
psql_db postgres "CREATE DATABASE fresh" || die "cannot create the fresh database"
"$PG_BIN/pg_restore" --no-owner -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d fresh --exit-on-error "$T/db.pgdump" 2>"$T/restore.err"
assert_eq 0 $? "stock pg_restore loads it"
show <"$T/restore.err"
sums fresh >"$T/sums-fresh.txt"
if cmp -s "$T/sums-live.txt" "$T/sums-fresh.txt"; then
    pass "every table's row count and content equal ($(wc -l <"$T/sums-fresh.txt") tables)"
else
    fail "tables differ"; diff "$T/sums-live.txt" "$T/sums-fresh.txt" | show
fi
finish
