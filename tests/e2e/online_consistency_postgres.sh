#!/usr/bin/env bash
# Online backups with the shipped online PostgreSQL policy (PostgreSQL 15
# from tests/tools/pg_server.sh, the deployment's database moved there by
# aster_load.py) while tests/tools/aster_writer.py uploads and purges files
# through psql. As online_consistency_sqlite.sh: every published set either
# restores (into a fresh database) to one whose database finds every blob
# object it names, or is marked inconsistent and lists exactly the objects
# its restore lacks; a deployment whose database names an object that is
# gone is refused with on_inconsistent: fail and marked with mark.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/online_lib.sh"
require_coffer
POLICY=$COFFER_SRC/policies/asterdrive-postgres-online.yaml
PGT=$T/pg
trap '_rc=$?; "$TOOLS/pg_server.sh" stop "$PGT" >/dev/null 2>&1; (exit $_rc); _cleanup' EXIT
"$TOOLS/pg_server.sh" start "$PGT" >/dev/null || die "cannot start PostgreSQL"
# shellcheck disable=SC1091
. "$PGT/pg.env"
export PGPASSWORD=$PG_PASSWORD
export PATH="$PG_BIN:$PATH"
psql_db() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$1" -Atc "$2"; }
setup_env
export ASTERDRIVE_DATABASE_URL=$PG_URL
export TMPDIR=$T/scratch
mkdir -p "$TMPDIR"
# restores go to a fresh database each
OL_RESTORE_MAP() { echo "--map database=postgres://$PG_USER@127.0.0.1:$PG_PORT/restore_$1"; }
OL_RESTORED_URL() { echo "postgres://$PG_USER@127.0.0.1:$PG_PORT/restore_$1"; }

section "the writer alone on PostgreSQL: every committed state is doctor-clean"
gen_deployment "$T/small" --size-mb 2 --seed 40
psql_db asterdrive "CREATE DATABASE small" || die "create database small"
SMALL_URL=postgres://$PG_USER@127.0.0.1:$PG_PORT/small
"$PY" "$TOOLS/aster_load.py" "$T/small" --url "$SMALL_URL" >/dev/null || die "aster_load.py (small) failed"
ol_writer_selfcheck "$T/small" 15 --database-url "$SMALL_URL"

section "deployment on PostgreSQL, init"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 30 --seed 41
echo "+ aster_load.py $ASTERDRIVE_ROOT --url $PG_URL"
"$PY" "$TOOLS/aster_load.py" "$ASTERDRIVE_ROOT" --url "$PG_URL" >"$T/load.json" || die "aster_load.py failed"
assert_absent "$ASTERDRIVE_ROOT/data/asterdrive.db" "the deployment has no SQLite database any more"
expect_ok "the shipped online policy is valid" cf policy check "$POLICY" || die "policy check"
expect_ok "init" cf init -p "$POLICY" || die "init failed"

section "writer on PostgreSQL: uploads and purges"
OL_DB_URL=$PG_URL
ol_writer_start
ol_backups 4
SINGLE=$T/online-single-pass.yaml
make_policy "$SINGLE" 's/^\(  two_pass:\) true/\1 false/'
grep -q '^  two_pass: false' "$SINGLE" || die "cannot make a two_pass: false policy"
ol_backups 2 "$SINGLE"
ol_writer_stop
doctor_pg() {
    local o
    o=$("$PY" "$TOOLS/asterdoctor.py" --deep "$ASTERDRIVE_ROOT" --database-url "$PG_URL" 2>&1)
    if [ $? = 0 ]; then pass "$1 ($(printf '%s\n' "$o" | tail -1))"; else fail "$1:"; printf '%s\n' "$o" | grep -v '^PASS' | show; fi
}
doctor_pg "the live deployment is doctor-clean after the writer"
ol_check_sets

REL=$(psql_db asterdrive "SELECT rtrim(p.storage_config ->> 'base_path', '/') || '/' || b.storage_path
  FROM file_blobs b JOIN storage_policies p ON p.id = b.policy_id
  WHERE p.connector_id = 'local' AND b.backing = 'stored' AND b.thumbnail_path IS NULL ORDER BY b.id LIMIT 1")
ol_broken "$REL"
finish
