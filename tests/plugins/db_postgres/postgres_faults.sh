#!/usr/bin/env bash
# database "postgres": bad input and faults, against a real PostgreSQL 15.
#   - wrong password, server down: clear error, no set, the application is
#     not left stopped (maintenance stop/start counted);
#   - connection lost mid-dump (pg_dump's backend, then the snapshot
#     session, terminated with pg_terminate_backend; pg_dump slowed down by
#     a throttling wrapper in pg_bin_dir so the dump is surely running):
#     backup fails, start still runs, repository unchanged;
#   - pg_dump missing, pg_dump of an older major than the server: clear
#     error naming both versions;
#   - restore target exists and is not empty: refused without --force
#     (and untouched), done with --force; the original database likewise.
. "$(dirname "$0")/../../e2e/lib.sh"
require_coffer

PGT=$T/pg
trap '_rc=$?; "$TOOLS/pg_server.sh" stop "$PGT" >/dev/null 2>&1; (exit $_rc); _cleanup' EXIT
"$TOOLS/pg_server.sh" start "$PGT" || die "cannot start PostgreSQL"
# shellcheck disable=SC1091
. "$PGT/pg.env"
export PGPASSWORD=$PG_PASSWORD
SQL=$COFFER_SRC/tests/plugins/db_postgres/asterdrive_pg.sql
SHIPPED=$COFFER_SRC/policies/asterdrive-postgres-local.yaml
pcf() { "$COFFER" --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" --no-progress "$@"; }
psql_db() { local db=$1; shift; "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$db" "$@"; }
val() { psql_db "$1" -Atc "$2"; }
admin() { runuser -u postgres -- $PG_ADMIN -d postgres -Atc "$1"; }
url_of() { echo "postgres://$PG_USER@127.0.0.1:$PG_PORT/$1"; }
# policy_with OUT LINE...: the shipped policy with option lines added to the database component
policy_with() {
    local out=$1; shift
    local add="" l
    for l in "$@"; do add="$add\\n    $l"; done
    sed -e "s|^    password_env: PGPASSWORD|&$add|" "$SHIPPED" >"$out" || die "policy_with $out"
}
# The application's state as the stop/start commands leave it.
EVENTS=$T/events
export ASTERDRIVE_STOP="echo stop >>$EVENTS" ASTERDRIVE_START="echo start >>$EVENTS"
stops() { grep -c '^stop$' "$EVENTS" 2>/dev/null || true; }
starts() { grep -c '^start$' "$EVENTS" 2>/dev/null || true; }
app_running() { assert_eq "$(stops)" "$(starts)" "${1:-the application is not left stopped} (stop $(stops), start $(starts))"; }
repo_state() { (cd "$COFFER_REPO" && find . -type f -printf '%p %s\n' | sort | sha256sum | cut -c1-16); }

section "database, deployment, repository, a first good set"
psql_db asterdrive -v scale=1 -f "$SQL" >/dev/null || die "cannot load $SQL"
export ASTERDRIVE_ROOT=$T/live COFFER_REPO=$T/repo ASTERDRIVE_DOCTOR=true ASTERDRIVE_DATABASE_URL=$PG_URL
mkdir -p "$ASTERDRIVE_ROOT/data/uploads" "$ASTERDRIVE_ROOT/data/avatar"
echo '[auth]' >"$ASTERDRIVE_ROOT/data/config.toml"
echo blob >"$ASTERDRIVE_ROOT/data/uploads/x"
expect_ok "init" pcf init -p "$SHIPPED" || die "init failed"
expect_ok "first backup" pcf backup -p "$SHIPPED" || die "backup failed"
GOOD=$(last_line "$OUT")
app_running "stop and start ran around the good backup"
SETS0=$(count_sets "$COFFER_REPO")
assert_eq 1 "$SETS0" "one set"

section "wrong password"
expect_fail_desc "backup with a wrong password fails" env PGPASSWORD=not-the-password "$COFFER" \
    --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" --no-progress backup -p "$SHIPPED"
assert_error_line
assert_contains "$ERR" "password authentication failed" "the error says the password was refused"
assert_contains "$ERR" "$(url_of asterdrive)" "the error names the server and database"
assert_not_contains "$ERR" "not-the-password" "the password is not echoed"
assert_eq "$SETS0" "$(count_sets "$COFFER_REPO")" "no set written"
app_running

section "no password configured"
expect_fail_desc "backup without any password fails" env -u PGPASSWORD "$COFFER" \
    --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" --no-progress backup -p "$SHIPPED"
assert_imatch "$ERR" "password" "the error mentions the password"
assert_eq "$SETS0" "$(count_sets "$COFFER_REPO")" "no set written"
app_running

section "server down"
"$TOOLS/pg_server.sh" stop "$PGT"
expect_fail_desc "backup with the server stopped fails" pcf backup -p "$SHIPPED"
assert_error_line
assert_imatch "$ERR" "cannot connect to $(url_of asterdrive).*(refused|No such file|running)" "the error says the server cannot be reached"
assert_eq "$SETS0" "$(count_sets "$COFFER_REPO")" "no set written"
app_running
"$TOOLS/pg_server.sh" start "$PGT" || die "cannot restart PostgreSQL"

section "connection lost mid-dump"
# pg_dump slowed to ~2 MB/s so that the dump is certainly running when
# its backend is terminated.
SLOW=$T/slowbin
mkdir -p "$SLOW"
cat >"$SLOW/pg_dump" <<EOF
#!/bin/bash
for a in "\$@"; do [ "\$a" = --version ] && exec "$PG_BIN/pg_dump" --version; done
set -o pipefail
"$PG_BIN/pg_dump" "\$@" | python3 -c '
import sys, time
i, o = sys.stdin.buffer, sys.stdout.buffer
while True:
    b = i.read(65536)
    if not b: break
    o.write(b); o.flush(); time.sleep(0.03)'
EOF
chmod +x "$SLOW/pg_dump"
ln -s "$PG_BIN/pg_restore" "$SLOW/pg_restore"
policy_with "$T/slow.yaml" "pg_bin_dir: $SLOW"
for victim in coffer-pg_dump coffer; do
    before=$(repo_state)
    stops0=$(stops)
    pcf backup -p "$T/slow.yaml" >"$T/kill.out" 2>"$T/kill.err" &
    BPID=$!
    bg_register "$BPID"
    # pg_dump's session is inside its snapshot transaction for the whole
    # dump, 'active' only while the server pushes a table (small tables fit
    # in the socket buffers at once): wait for either state.
    dumping() { [ "$(admin "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'coffer-pg_dump' AND state IN ('active', 'idle in transaction')")" -ge 1 ]; }
    wait_for "pg_dump to be dumping" 60 dumping || { cat "$T/kill.err"; die "the dump never started"; }
    sleep 0.5
    n=$(admin "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '$victim'")
    assert_eq 1 "$n" "terminated the $victim session during the dump"
    wait "$BPID"
    rc=$?
    ERR=$(cat "$T/kill.err")
    assert_ne 0 "$rc" "backup fails when the $victim session is lost (exit $rc)"
    if [ "$victim" = coffer-pg_dump ]; then
        assert_contains "$ERR" "pg_dump of database asterdrive failed" "the error says pg_dump failed"
        assert_imatch "$ERR" "terminat|closed the connection|lost" "and why (connection terminated)"
    else
        assert_imatch "$ERR" "snapshot session|terminat|closed the connection" "the error says the snapshot session was lost"
    fi
    assert_eq "$SETS0" "$(count_sets "$COFFER_REPO")" "no set written"
    assert_eq "$before" "$(repo_state)" "repository files unchanged"
    assert_gt "$(stops)" "$stops0" "the stop command ran"
    app_running "the start command still ran"
    assert_eq 0 "$(admin "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'coffer%'")" \
        "no coffer session left on the server"
done
section "interrupted (SIGTERM) during the dump"
before=$(repo_state)
stops0=$(stops)
# coffer itself in the background (not the pcf function's subshell), so
# the signal reaches it.
"$COFFER" --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" --no-progress backup -p "$T/slow.yaml" >"$T/int.out" 2>"$T/int.err" &
BPID=$!
bg_register "$BPID"
wait_for "pg_dump to be dumping" 60 dumping || die "the dump never started"
kill -TERM "$BPID"  # (a background job of a script ignores SIGINT)
wait "$BPID"
rc=$?
assert_ne 0 "$rc" "an interrupted backup fails (exit $rc)"
assert_imatch "$(cat "$T/int.err")" "cancel" "and says it was cancelled"
assert_eq "$SETS0" "$(count_sets "$COFFER_REPO")" "no set written"
assert_eq "$before" "$(repo_state)" "repository files unchanged"
app_running "the start command still ran"
gone() { [ "$(admin "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'coffer%'")" = 0 ]; }
wait_for "pg_dump and the snapshot session to be gone" 10 gone && pass "pg_dump and the snapshot session were stopped"

expect_ok "verify --read-data after the failures" pcf verify -p "$SHIPPED" --set all --read-data

section "pg_dump missing"
mkdir -p "$T/emptybin"
policy_with "$T/nodump.yaml" "pg_bin_dir: $T/emptybin"
expect_fail_desc "backup without pg_dump fails" pcf backup -p "$T/nodump.yaml"
assert_contains "$ERR" "pg_dump not found" "the error says pg_dump is missing"
assert_contains "$ERR" "$T/emptybin" "and where it looked"
assert_eq "$SETS0" "$(count_sets "$COFFER_REPO")" "no set written"
app_running

section "pg_dump older than the server (first in PATH)"
mkdir -p "$T/oldbin"
printf '#!/bin/sh\necho "pg_dump (PostgreSQL) 13.11 (Debian 13.11-0+deb11u1)"\n' >"$T/oldbin/pg_dump"
chmod +x "$T/oldbin/pg_dump"
SERVER_V=$(val asterdrive "SHOW server_version" | awk '{print $1}')
expect_fail_desc "backup with an old pg_dump fails" env PATH="$T/oldbin:$PATH" "$COFFER" \
    --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" --no-progress backup -p "$SHIPPED"
assert_error_line
assert_contains "$ERR" "pg_dump 13.11" "the error names pg_dump's version"
assert_contains "$ERR" "PostgreSQL $SERVER_V" "the error names the server's version"
assert_contains "$ERR" "at least version 15" "and what is needed"
assert_eq "$SETS0" "$(count_sets "$COFFER_REPO")" "no set written"
app_running

section "restore target exists and is not empty"
psql_db postgres -c "CREATE DATABASE busy" >/dev/null
psql_db busy -c "CREATE TABLE keepme (id int); INSERT INTO keepme VALUES (42)" >/dev/null
expect_rc 1 "restore into a non-empty database without --force is refused" \
    pcf restore --no-checks -p "$SHIPPED" --set "$GOOD" --to "$T/r1" --map "database=$(url_of busy)"
assert_contains "$ERR" "restore target database busy" "the error names the database"
assert_contains "$ERR" "not empty" "says it is not empty"
assert_contains "$ERR" "--force" "and names --force"
assert_eq 42 "$(val busy "SELECT id FROM keepme")" "the refused target is untouched"
assert_eq 0 "$(val busy "SELECT count(*) FROM pg_tables WHERE tablename = 'files'")" "nothing was restored into it"
expect_rc 1 "restore into the original (live) database without --force is refused" \
    pcf restore --no-checks -p "$SHIPPED" --set "$GOOD" --to "$T/r2"
assert_contains "$ERR" "restore target database asterdrive" "the error names the original database"
psql_db postgres -c "CREATE DATABASE empty" >/dev/null
expect_ok "restore into an existing empty database needs no --force" \
    pcf restore --no-checks -p "$SHIPPED" --set "$GOOD" --to "$T/r3" --map "database=$(url_of empty)"
# --force replaces the dump's objects; a table the set does not have stays
# and verify reports it (exit 3: restored, checks failed).
expect_rc 3 "restore into the non-empty database with --force (verify flags the extra table)" \
    pcf restore --no-checks -p "$SHIPPED" --set "$GOOD" --to "$T/r4" --force --map "database=$(url_of busy)"
assert_eq "$(val asterdrive "SELECT count(*) FROM files")" "$(val busy "SELECT count(*) FROM files")" \
    "the forced restore brought the set's rows"
assert_match "$ERR" "check [^:]+: rows\.public\.keepme: FAILED" "verify reports the table that was not in the set"
expect_rc 1 "restore into a missing database on a missing server fails" \
    pcf restore --no-checks -p "$SHIPPED" --set "$GOOD" --to "$T/r5" --map "database=postgres://$PG_USER@127.0.0.1:1/x"
assert_contains "$ERR" "cannot connect to postgres://$PG_USER@127.0.0.1:1/" "the error names the target server"

finish
