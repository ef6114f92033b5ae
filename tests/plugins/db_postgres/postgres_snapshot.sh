#!/usr/bin/env bash
# database "postgres" against a real PostgreSQL 15 (tests/tools/pg_server.sh):
# backups of an AsterDrive-shaped database (~50 MB) while a writer commits,
# restores into fresh databases, content compared table by table.
#
# Why the content assertion is sound: the writer (writer_run in
# asterdrive_pg.sql) is one session committing deterministic steps 1, 2,
# 3, ... in order, each step recording its number k in writer_state. The
# commits are serialised, so any consistent snapshot holds exactly the
# initial data plus steps 1..K for the K it shows, and nothing else. A
# reference database loaded with the same data and replaying steps 1..K
# (writer_replay) is therefore the only state a correct restore may
# equal. Every table of the restored database is exported ordered by its
# primary key (COPY) and hashed, and must equal the reference's. A torn
# capture (tables from different moments) or a missing or extra commit
# changes some table. The row counts the driver recorded in the set must
# match too (files = initial rows + K), which ties the metadata to that
# same snapshot. The second set restores to K2 > K1 and must differ from
# the first exactly in the tables steps K1+1..K2 touch.
. "$(dirname "$0")/../../e2e/lib.sh"
require_coffer

PGT=$T/pg
trap '_rc=$?; "$TOOLS/pg_server.sh" stop "$PGT" >/dev/null 2>&1; (exit $_rc); _cleanup' EXIT
"$TOOLS/pg_server.sh" start "$PGT" || die "cannot start PostgreSQL"
# shellcheck disable=SC1091
. "$PGT/pg.env"
export PGPASSWORD=$PG_PASSWORD
SQL=$COFFER_SRC/tests/plugins/db_postgres/asterdrive_pg.sql
SCALE=${PG_TEST_SCALE:-2}
POLICY=$COFFER_SRC/policies/asterdrive-postgres-local.yaml
pcf() { "$COFFER" --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" --no-progress "$@"; }
psql_db() { local db=$1; shift; "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$db" "$@"; }
val() { psql_db "$1" -Atc "$2"; }
url_of() { echo "postgres://$PG_USER@127.0.0.1:$PG_PORT/$1"; }
# table_hashes DB: "table sha256" per user table, rows ordered by primary key
table_hashes() {
    local t
    for t in $(val "$1" "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"); do
        printf '%s %s\n' "$t" "$(psql_db "$1" -c "COPY (SELECT * FROM $t ORDER BY 1) TO STDOUT" | sha256sum | cut -c1-16)"
    done
}
# differing_tables A B: names of tables whose hashes differ (sorted, one line)
differing_tables() {
    join <(table_hashes "$1") <(table_hashes "$2") | awk '$2 != $3 {print $1}' | sort | tr '\n' ' ' | sed 's/ $//'
}

section "AsterDrive-shaped database, deployment, repository"
psql_db asterdrive -v scale="$SCALE" -f "$SQL" >/dev/null || die "cannot load $SQL"
FILES0=$(val asterdrive "SELECT count(*) FROM files")
note "database: $(val asterdrive "SELECT pg_size_pretty(pg_database_size('asterdrive'))"), files rows: $FILES0"
export ASTERDRIVE_ROOT=$T/live COFFER_REPO=$T/repo ASTERDRIVE_STOP=true ASTERDRIVE_START=true ASTERDRIVE_DOCTOR=true
export ASTERDRIVE_DATABASE_URL=$PG_URL
mkdir -p "$ASTERDRIVE_ROOT/data/uploads/ab/cd" "$ASTERDRIVE_ROOT/data/avatar/user/3/v1" "$ASTERDRIVE_ROOT/data/.tmp"
printf '[auth]\njwt_secret = "%064d"\n[database]\nurl = "%s"\n' 7 "$PG_URL" >"$ASTERDRIVE_ROOT/data/config.toml"
head -c 100000 /dev/urandom >"$ASTERDRIVE_ROOT/data/uploads/ab/cd/abcdef"
head -c 5000 /dev/urandom >"$ASTERDRIVE_ROOT/data/avatar/user/3/v1/512.webp"
expect_ok "shipped postgres policy is valid" pcf policy check "$POLICY"
expect_ok "init" pcf init -p "$POLICY" || die "init failed"

section "start the writer (one session, deterministic steps)"
psql_db asterdrive -c "CALL writer_run(1)" >"$T/writer.out" 2>&1 &
WPID=$!
bg_register "$WPID"
kval() { val asterdrive "SELECT k FROM writer_state"; }
writer_started() { [ "$(kval)" -ge 20 ]; }
wait_for "the writer to commit 20 steps" 30 writer_started || die "writer did not start: $(cat "$T/writer.out")"

# Sample the process table during the first backup: no password in argv.
( while [ ! -f "$T/stop-ps" ]; do ps -eo args >>"$T/ps.txt" 2>/dev/null; sleep 0.02; done ) &
bg_register $!

declare -A SET KBEFORE KAFTER
for i in 1 2; do
    section "backup $i while the writer commits"
    KBEFORE[$i]=$(kval)
    expect_ok "backup $i" pcf backup -p "$POLICY" --json || die "backup $i failed"
    KAFTER[$i]=$(kval)
    echo "$OUT" >"$T/backup$i.json"
    printf '%s\n' "$ERR" >"$T/backup$i.err"
    SET[$i]=$(json_get "$OUT" 'j["set"]')
    assert_gt "${KAFTER[$i]}" "${KBEFORE[$i]}" "the writer committed during backup $i (k ${KBEFORE[$i]} -> ${KAFTER[$i]})"
    [ $i = 1 ] && touch "$T/stop-ps"
    sleep 1
done

section "stop the writer"
psql_db asterdrive -c "UPDATE writer_state SET stop = true" >/dev/null
wait "$WPID"
assert_eq 0 $? "writer exited cleanly"
KEND=$(kval)
note "writer stopped at step $KEND"

expect_ok "sets --json" pcf sets -p "$POLICY" --json
SETS=$OUT
meta() { json_get "$SETS" "next(s['databases']['database'].get('$2') for s in j if s['id'] == '$1')"; }

section "set 1: restore into a fresh database (--map), compare with the reference"
expect_ok "restore set 1 into database copy1 (created)" \
    pcf restore --no-checks -p "$POLICY" --set "${SET[1]}" --to "$T/r1" --map "database=$(url_of copy1)"
assert_contains "$ERR" "created database" "the missing target database was created"
assert_match "$ERR" 'check [^:]+: rows\.public\.files: ok' "verify compared per-table row counts"
K1=$(val copy1 "SELECT k FROM writer_state")
note "set 1 snapshot: writer step $K1 (backup ran during steps ${KBEFORE[1]}..${KAFTER[1]})"
if [ "$K1" -ge "${KBEFORE[1]}" ] && [ "$K1" -le "${KAFTER[1]}" ]; then
    pass "snapshot of set 1 lies within its backup (${KBEFORE[1]} <= $K1 <= ${KAFTER[1]})"
else
    fail "snapshot of set 1 (step $K1) lies outside its backup (${KBEFORE[1]}..${KAFTER[1]})"
fi
assert_eq "$((FILES0 + K1))" "$(meta "${SET[1]}" rows.public.files)" "recorded files rows = initial + $K1 writer steps"
assert_eq "$(val copy1 "SELECT count(*) FROM shares")" "$(meta "${SET[1]}" rows.public.shares)" \
    "recorded shares rows = restored"
psql_db postgres -c "CREATE DATABASE ref" >/dev/null
psql_db ref -v scale="$SCALE" -f "$SQL" >/dev/null || die "cannot load the reference"
psql_db ref -c "SELECT writer_replay($K1)" >/dev/null
table_hashes ref >"$T/ref1.txt"
table_hashes copy1 >"$T/copy1.txt"
assert_eq "$(wc -l <"$T/ref1.txt")" "$(val copy1 "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")" \
    "all tables hashed"
if diff "$T/ref1.txt" "$T/copy1.txt" >"$T/diff1.txt"; then
    pass "every table of set 1 equals the reference at step $K1 ($(wc -l <"$T/ref1.txt") tables)"
else
    fail "set 1 differs from the reference at step $K1:"; show <"$T/diff1.txt"
fi
assert_eq "pgcrypto 1.3,plpgsql 1.0" "$(meta "${SET[1]}" extensions)" "extensions recorded"
assert_ne "" "$(differing_tables asterdrive copy1)" "the live database moved on after the snapshot"
assert_exists "$T/r1/data/config.toml" "config restored with the database"
assert_exists "$T/r1/data/uploads/ab/cd/abcdef" "uploads restored"

section "set 2: restore, and differ from set 1 exactly as the writer steps between them say"
expect_ok "restore set 2 into database copy2" \
    pcf restore --no-checks -p "$POLICY" --set "${SET[2]}" --to "$T/r2" --map "database=$(url_of copy2)"
K2=$(val copy2 "SELECT k FROM writer_state")
assert_gt "$K2" "$K1" "set 2 is later than set 1 (step $K2 > $K1)"
psql_db ref -c "SELECT writer_replay($K2)" >/dev/null
if diff <(table_hashes ref) <(table_hashes copy2) >"$T/diff2.txt"; then
    pass "every table of set 2 equals the reference at step $K2"
else
    fail "set 2 differs from the reference at step $K2:"; show <"$T/diff2.txt"
fi
# Steps always touch files, file_blobs, users, writer_state; shares when a
# multiple of 5 lies in (K1, K2]. Nothing else may differ.
expected="file_blobs files"
[ $((K2 / 5)) -gt $((K1 / 5)) ] && expected="$expected shares"
expected="$expected users writer_state"
assert_eq "$expected" "$(differing_tables copy1 copy2)" "set 2 differs from set 1 in exactly the tables steps $((K1 + 1))..$K2 write"
assert_eq "$((K2 - K1))" "$(( $(val copy2 "SELECT count(*) FROM files") - $(val copy1 "SELECT count(*) FROM files") ))" \
    "set 2 has exactly K2-K1 more files rows"

section "deduplication, repository checks"
# Unchanged data must deduplicate: with the writer stopped, two backups in
# a row; the second differs only in pg_dump's header (its timestamp), one
# chunk. (Scattered row updates, like the writer's renames, touch most of
# the repository's 1 MiB chunks: see bench/pg_bench.sh.)
expect_ok "backup of the quiet database" pcf backup -p "$POLICY" --json
B3=$(json_get "$OUT" 'j["bytes"]')
expect_ok "backup again, nothing changed" pcf backup -p "$POLICY" --json
N4=$(json_get "$OUT" 'j["new_bytes"]')
note "quiet backup: $B3 bytes; repeated: $N4 new bytes"
assert_lt "$((N4 * 4))" "$B3" "an unchanged database adds under a quarter of its dump (one header chunk)"
expect_ok "verify --read-data all sets" pcf verify -p "$POLICY" --set all --read-data

section "no password anywhere"
all_out="$(cat "$T"/backup*.json "$T"/backup*.err)$SETS"
assert_not_contains "$all_out" "$PG_PASSWORD" "password absent from backup output and sets --json"
if grep -qF -- "$PG_PASSWORD" "$T/ps.txt"; then fail "password seen in a process's argv"; else
    pass "password never in any process's argv ($(grep -c 'pg_dump' "$T/ps.txt") pg_dump samples)"; fi
if grep -rqaF -- "$PG_PASSWORD" "$COFFER_REPO"; then fail "password found in the repository"; else
    pass "password absent from the repository files"; fi
# A password inside the URL: works, and is shown nowhere.
export ASTERDRIVE_DATABASE_URL="postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/asterdrive"
expect_ok "backup with the password in the URL (no PGPASSWORD)" env -u PGPASSWORD "$COFFER" --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" \
    --no-progress -v backup -p "$POLICY" --json
assert_not_contains "$OUT$ERR" "$PG_PASSWORD" "a password in the URL is stripped from output"
expect_ok "sets --json" pcf sets -p "$POLICY" --json
assert_not_contains "$OUT" "$PG_PASSWORD" "a password in the URL is not recorded in the set"
assert_contains "$OUT" "\"source\": \"$(url_of asterdrive)\"" "the set records the URL without its password"
export ASTERDRIVE_DATABASE_URL=$PG_URL

section "several databases, jobs: 2; restored into the original (dropped) databases"
psql_db postgres -c "CREATE DATABASE second" >/dev/null
psql_db second -c "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes SELECT i, md5(i::text) FROM generate_series(1, 5000) i" >/dev/null
MULTI=$T/multi.yaml
sed -e 's|^    password_env: PGPASSWORD|&\n    databases: [asterdrive, second]\n    jobs: 2|' "$POLICY" >"$MULTI"
expect_ok "multi-database policy is valid" pcf policy check "$MULTI"
expect_ok "backup two databases at once" pcf backup -p "$MULTI" --json
MSET=$(json_get "$OUT" 'j["set"]')
expect_ok "sets --json" pcf sets -p "$MULTI" --json
assert_eq "5000" "$(json_get "$OUT" "next(s['databases']['database'].get('rows.second/public.notes') for s in j if s['id'] == '$MSET')")" \
    "per-database row counts recorded (rows.second/public.notes)"
H_LIVE=$(table_hashes asterdrive)
psql_db postgres -c "DROP DATABASE second" -c "DROP DATABASE asterdrive" >/dev/null
expect_ok "restore both databases to their original names (created)" pcf restore --no-checks -p "$MULTI" --set "$MSET" --to "$T/r3"
assert_eq "5000" "$(val second "SELECT count(*) FROM notes")" "database second restored"
assert_eq "$H_LIVE" "$(table_hashes asterdrive)" "database asterdrive restored identical to the live one (writer stopped)"

finish
