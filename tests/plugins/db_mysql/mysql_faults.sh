#!/usr/bin/env bash
# database "mysql": bad input and faults against a real MariaDB 10.11.
#   - wrong password: the backup fails before the stop command runs, says
#     "Access denied", never shows the password; repository unchanged
#   - a password in the URL, a database that does not exist, a bad --map;
#     a --map URL with its own ?password_env
#   - the server vanishes mid-dump (SIGKILL while a table streams): the
#     backup fails cleanly, the repository is unchanged, no set; after the
#     server restarts the next backup works
#   - Ctrl-C mid-dump: cancelled, repository unchanged, no session left on
#     the server
#   - jobs: 3 for an account without RELOAD: FLUSH TABLES WITH READ LOCK is
#     refused, the dump falls back to one connection and says so
. "$(dirname "$0")/../../e2e/lib.sh"
. "$(dirname "$0")/mysql_lib.sh"
require_coffer
mysql_start

section "fixtures"
load_asterdrive asterdrive 1
# A table big enough that its dump takes a moment (~80 MB of rows).
my asterdrive -e "CREATE TABLE bulk (id INT NOT NULL PRIMARY KEY, payload BLOB NOT NULL) ENGINE=InnoDB;
    INSERT INTO bulk SELECT seq, RANDOM_BYTES(1024) FROM seq_1_to_80000" || die "cannot create bulk"
export ASTERDRIVE_ROOT=$T/live COFFER_REPO=$T/repo ASTERDRIVE_START=true ASTERDRIVE_DOCTOR=true
export ASTERDRIVE_STOP="touch $T/stop-ran"
export ASTERDRIVE_DATABASE_URL=$(url_of asterdrive)
mkdir -p "$ASTERDRIVE_ROOT/data/uploads" "$ASTERDRIVE_ROOT/data/avatar"
printf '[auth]\njwt_secret = "%064d"\n' 7 >"$ASTERDRIVE_ROOT/data/config.toml"
expect_ok "init" mcf init -p "$MYSQL_POLICY" || die "init failed"
STATE0=$(repo_state "$COFFER_REPO")
SETS0=$(count_sets "$COFFER_REPO")

section "wrong password"
GOOD_PWD=$MYSQL_PWD
export MYSQL_PWD=wrong-password-4711
expect_rc 1 "backup with a wrong password fails" mcf backup -p "$MYSQL_POLICY"
assert_error_line
assert_contains "$ERR" "Access denied for user 'coffer'" "the error says access was denied"
assert_contains "$ERR" "coffer@127.0.0.1:$MYSQL_PORT/asterdrive" "the error names the server"
assert_not_contains "$ERR$OUT" "wrong-password-4711" "the password is not shown"
assert_absent "$T/stop-ran" "the stop command did not run (the probe failed first)"
assert_eq "$STATE0" "$(repo_state "$COFFER_REPO")" "repository unchanged"
export MYSQL_PWD=$GOOD_PWD

section "bad configuration and targets"
BADURL=$T/badurl.yaml
sed "s|^    url: .*|    url: mysql://coffer:hunter2secret@127.0.0.1:$MYSQL_PORT/asterdrive|" "$MYSQL_POLICY" >"$BADURL"
expect_fail_desc "a password in the URL is refused" mcf backup -p "$BADURL"
assert_contains "$ERR" "password in the URL is refused" "the refusal says why"
assert_not_contains "$ERR$OUT" "hunter2secret" "the password is not echoed"
NODB=$T/nodb.yaml
sed "s|^    url: .*|    url: $(url_of no_such_db)|" "$MYSQL_POLICY" >"$NODB"
expect_rc 1 "a database that does not exist" mcf backup -p "$NODB"
assert_contains "$ERR" "no_such_db" "the error names the database"
rm -f "$T/stop-ran"
expect_ok "a good backup" mcf backup -p "$MYSQL_POLICY" --json || die "backup failed"
SET1=$(json_get "$OUT" 'j["set"]')
expect_fail_desc "restore --map to something that is not a MySQL URL or file" \
    mcf restore --no-checks -p "$MYSQL_POLICY" --set "$SET1" --to "$T/rbad" --map "database=postgres://x@127.0.0.1/db"
assert_contains "$ERR" "expected mysql://" "the error lists the accepted targets"
# A --map URL may name its own password source; the policy's is wrong here.
export ALT_PWD=$GOOD_PWD
MYSQL_PWD=not-this-one expect_ok "restore --map URL with its own ?password_env" \
    mcf restore --no-checks -p "$MYSQL_POLICY" --set "$SET1" --to "$T/ralt" --map "database=$(url_of alt_target)?password_env=ALT_PWD"
assert_eq "$(val asterdrive 'SELECT COUNT(*) FROM files')" "$(val alt_target 'SELECT COUNT(*) FROM files')" \
    "restored with the URL's password"
STATE1=$(repo_state "$COFFER_REPO")
SETS1=$(count_sets "$COFFER_REPO")

# bulk_streaming: coffer's SELECT of the bulk table is running
bulk_streaming() {
    [ "$(val asterdrive "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'coffer' AND ID <> CONNECTION_ID() AND INFO LIKE 'SELECT %FROM \`asterdrive\`.\`bulk\`%'" 2>/dev/null)" -ge 1 ]
}

section "the server vanishes in the middle of the dump"
"$COFFER" --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" --no-progress backup -p "$MYSQL_POLICY" >"$T/gone.out" 2>"$T/gone.err" &
CPID=$!
bg_register "$CPID"
if wait_for "coffer to stream the bulk table" 60 bulk_streaming; then
    # Freeze coffer, kill the server under it, let coffer find out.
    kill -STOP "$CPID"
    "$MYSQL_SERVER" kill "$MYT"
    kill -CONT "$CPID"
    wait "$CPID"
    RC=$?
    ERR=$(cat "$T/gone.err")
    assert_eq 1 "$RC" "backup fails (exit 1) when the server vanishes"
    assert_error_line
    assert_match "$ERR" 'reading table `asterdrive`.`bulk` failed after [0-9]+ rows: (Lost connection|Server has gone away|.*server)' \
        "the error names the table and says the connection was lost"
    assert_eq "$STATE1" "$(repo_state "$COFFER_REPO")" "repository unchanged (no pack, index or set left behind)"
    assert_eq "$SETS1" "$(count_sets "$COFFER_REPO")" "no new set"
else
    fail "coffer never streamed the bulk table: $(cat "$T/gone.err")"
    kill "$CPID" 2>/dev/null
fi
"$MYSQL_SERVER" start "$MYT" >/dev/null || die "cannot restart MariaDB"
expect_ok "after the server restarts, the backup works" mcf backup -p "$MYSQL_POLICY" || die "backup after restart failed"
STATE2=$(repo_state "$COFFER_REPO")
SETS2=$(count_sets "$COFFER_REPO")

section "interrupted (SIGINT) in the middle of the dump"
"$COFFER" --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" --no-progress backup -p "$MYSQL_POLICY" >"$T/int.out" 2>"$T/int.err" &
CPID=$!
bg_register "$CPID"
if wait_for "coffer to stream the bulk table" 60 bulk_streaming; then
    kill -INT "$CPID"
    wait "$CPID"
    RC=$?
    assert_ne 0 "$RC" "an interrupted backup exits non-zero ($RC)"
    assert_eq "$STATE2" "$(repo_state "$COFFER_REPO")" "repository unchanged"
    assert_eq "$SETS2" "$(count_sets "$COFFER_REPO")" "no new set"
    gone() { [ "$(val mysql "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'coffer'")" = 0 ]; }
    wait_for "coffer's sessions to end" 20 gone && pass "no coffer session left on the server"
else
    fail "coffer never streamed the bulk table: $(cat "$T/int.err")"
    kill "$CPID" 2>/dev/null
fi

section "jobs: 3 without the RELOAD privilege"
my -e "CREATE USER 'norel'@'127.0.0.1' IDENTIFIED BY '$GOOD_PWD';
       GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, PROCESS ON *.* TO 'norel'@'127.0.0.1'"
NOREL=$T/norel.yaml
sed -e "s|^    url: .*|    url: mysql://norel@127.0.0.1:$MYSQL_PORT/asterdrive|" \
    -e 's/^    password_env: MYSQL_PWD$/    password_env: MYSQL_PWD\n    jobs: 3/' "$MYSQL_POLICY" >"$NOREL"
expect_ok "backup with jobs: 3 and no RELOAD privilege" mcf backup -p "$NOREL" --json
assert_contains "$ERR" "lacks the RELOAD privilege; dumping with one connection" "the fallback is announced"
assert_contains "$ERR" "START TRANSACTION WITH CONSISTENT SNAPSHOT on 1 connection" "one consistent snapshot"
SETN=$(json_get "$OUT" 'j["set"]')
expect_ok "its set restores" mcf restore --no-checks -p "$MYSQL_POLICY" --set "$SETN" --to "$T/rn" --map "database=$(url_of from_norel)"
assert_eq "" "$(db_diff asterdrive from_norel)" "and equals the source"
finish
