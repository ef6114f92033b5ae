#!/usr/bin/env bash
# database "mysql": getting a set out as a plain SQL file for the stock
# client. `coffer restore --only database --map database=file:///x.sql`
# writes the set's schema, data and objects as one file (0600) instead of
# loading a server; `mysql < x.sql` must then rebuild the database exactly:
# into another schema on the same server (?database=NAME), and under its
# own name on a second, empty server. The file is checked by coffer's
# verify (complete, row counts) and refused as a target when it exists,
# unless --force.
. "$(dirname "$0")/../../e2e/lib.sh"
. "$(dirname "$0")/mysql_lib.sh"
require_coffer
mysql_start

section "fixtures"
load_asterdrive asterdrive 1
my asterdrive <"$MY_DIR/types_mysql.sql" || die "cannot load types_mysql.sql"
export ASTERDRIVE_ROOT=$T/live COFFER_REPO=$T/repo ASTERDRIVE_STOP=true ASTERDRIVE_START=true ASTERDRIVE_DOCTOR=true
export ASTERDRIVE_DATABASE_URL=$(url_of asterdrive)
mkdir -p "$ASTERDRIVE_ROOT/data/uploads" "$ASTERDRIVE_ROOT/data/avatar"
printf '[auth]\njwt_secret = "%064d"\n' 7 >"$ASTERDRIVE_ROOT/data/config.toml"
expect_ok "init" mcf init -p "$MYSQL_POLICY" || die "init failed"
expect_ok "backup" mcf backup -p "$MYSQL_POLICY" --json || die "backup failed"
SET=$(json_get "$OUT" 'j["set"]')

section "restore the database component as a SQL file"
F=$T/out/asterdrive.sql
expect_ok "restore --only database --map database=file://$F" \
    mcf restore -p "$MYSQL_POLICY" --set "$SET" --to "$T/r1" --only database --map "database=file://$F" ||
    die "restore to a file failed"
assert_match "$ERR" "check [^:]+: sql_file: ok: .* is complete" "verify: the file is complete"
assert_match "$ERR" 'check [^:]+: rows.asterdrive.files: ok: 20000 rows' "verify: row counts read back from the file"
assert_not_contains "$ERR" "FAIL" "no failed check"
assert_exists "$F"
assert_eq 600 "$(stat -c %a "$F")" "the file is private (0600)"
assert_eq "" "$(ls -A "$T/r1" 2>/dev/null | grep -v '^\.coffer' || true)" "nothing else was restored"
if grep -qF -- "$MYSQL_PWD" "$F"; then fail "the password is in the file"; else pass "the password is not in the file"; fi
assert_eq "-- coffer: end of dump" "$(tail -1 "$F")" "the file ends with the end marker"

section "load it with the stock client into the same server, under another name"
# The original database still exists here: write the file for a new name.
F2=$T/out/renamed.sql
expect_ok "restore as a file for database fromfile" \
    mcf restore -p "$MYSQL_POLICY" --set "$SET" --to "$T/r2" --only database --map "database=file://$F2?database=fromfile"
expect_ok "mysql < renamed.sql" sh -c "mysql --defaults-file='$MYSQL_CLIENT_CNF' <'$F2'"
assert_eq "" "$(db_diff asterdrive fromfile)" "every table identical, byte for byte"
for what in "TABLES WHERE TABLE_SCHEMA" "VIEWS WHERE TABLE_SCHEMA" "TRIGGERS WHERE TRIGGER_SCHEMA" \
    "ROUTINES WHERE ROUTINE_SCHEMA" "EVENTS WHERE EVENT_SCHEMA"; do
    assert_eq "$(val mysql "SELECT COUNT(*) FROM information_schema.$what = 'asterdrive'")" \
        "$(val mysql "SELECT COUNT(*) FROM information_schema.$what = 'fromfile'")" "same count of ${what%% *}"
done
assert_eq "$(val asterdrive 'SELECT files_inserted FROM file_stats')" "$(val fromfile 'SELECT files_inserted FROM file_stats')" \
    "the trigger did not fire during the load"

section "load it into a second, empty server under its own name"
MYT2=$T/mysql2
trap '_rc=$?; "$MYSQL_SERVER" stop "$MYT2" >/dev/null 2>&1; "$MYSQL_SERVER" stop "$MYT" >/dev/null 2>&1; (exit $_rc); _cleanup' EXIT
MYSQL_PORT= "$MYSQL_SERVER" start "$MYT2" >/dev/null || die "cannot start the second server"
expect_ok "mysql < asterdrive.sql on the second server" sh -c "mysql --defaults-file='$MYT2/client.cnf' <'$F'"
hashes2=$(MYSQL_CLIENT_CNF=$MYT2/client.cnf table_hashes asterdrive)
assert_eq "$(table_hashes asterdrive)" "$hashes2" "every table identical on the second server"
assert_eq "$(val asterdrive 'SELECT det_size(99)')" "$(MYSQL_CLIENT_CNF=$MYT2/client.cnf val asterdrive 'SELECT det_size(99)')" \
    "routines work on the second server"

section "an existing file is not replaced without --force"
expect_rc 1 "restore to an existing file" \
    mcf restore -p "$MYSQL_POLICY" --set "$SET" --to "$T/r3" --only database --map "database=file://$F"
assert_contains "$ERR" "exists and is not empty; use --force" "the refusal says why"
echo "-- stale" >>"$F"
expect_ok "with --force" \
    mcf restore -p "$MYSQL_POLICY" --set "$SET" --to "$T/r4" --only database --map "database=file://$F" --force
assert_eq "-- coffer: end of dump" "$(tail -1 "$F")" "the file was replaced"
finish
