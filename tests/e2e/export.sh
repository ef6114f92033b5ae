#!/usr/bin/env bash
# coffer dump --component: a SQLite component comes out as its database
# file, which stock sqlite3 opens with the same rows as the live database
# at backup time; wrong components, a terminal and unknown options are
# refused.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env
command -v sqlite3 >/dev/null || { skip "sqlite3 is not installed"; finish; }

section "generate, back up"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 8 --seed 5
expect_ok "init" cf init -p "$POLICY" || die "init failed"
expect_ok "backup" cf backup -p "$POLICY" --json || die "backup failed"
SET=$(json_get "$OUT" 'j["set"]')
LIVE=$ASTERDRIVE_ROOT/data/asterdrive.db
sqlite3 "$LIVE" .dump >"$T/live.sql"
LIVE_USERS=$(sqlite3 "$LIVE" 'SELECT count(*) FROM users')
LIVE_FILES=$(sqlite3 "$LIVE" 'SELECT count(*) FROM files')
note "live: $LIVE_USERS users, $LIVE_FILES files"

section "dump --component of the SQLite database"
"$COFFER" --no-progress dump -p "$POLICY" --set "$SET" --component database >"$T/db.sqlite" 2>"$T/err"
assert_eq 0 $? "dump --component database exits 0"
assert_eq "ok" "$(sqlite3 "$T/db.sqlite" 'PRAGMA integrity_check')" "stock sqlite3 finds the dump intact"
assert_eq "$LIVE_USERS" "$(sqlite3 "$T/db.sqlite" 'SELECT count(*) FROM users')" "same user count"
assert_eq "$LIVE_FILES" "$(sqlite3 "$T/db.sqlite" 'SELECT count(*) FROM files')" "same file count"
sqlite3 "$T/db.sqlite" .dump >"$T/dump.sql"
if cmp -s "$T/live.sql" "$T/dump.sql"; then pass "sqlite3 .dump equal to the live database's"; else
    fail "sqlite3 .dump differs"; diff "$T/live.sql" "$T/dump.sql" | show
fi
"$COFFER" --no-progress dump -p "$POLICY" --component=database >"$T/latest.sqlite" 2>/dev/null
assert_eq 0 $? "--component=NAME of the latest set exits 0"
if cmp -s "$T/db.sqlite" "$T/latest.sqlite"; then pass "latest is the same set"; else fail "latest differs"; fi

section "refusals"
expect_rc 1 "a files component is not a database" cf dump -p "$POLICY" --component data
assert_contains "$ERR" "not a database"
expect_rc 1 "an unknown component" cf dump -p "$POLICY" --component nosuch
assert_contains "$ERR" "no component 'nosuch'"
expect_rc 2 "an unknown option" cf dump -p "$POLICY" --component database --bogus
assert_contains "$ERR" "--bogus"
expect_rc 2 "--component with a PATH" cf dump -p "$POLICY" --component database data/config.toml
expect_rc 2 "--component twice" cf dump -p "$POLICY" --component database --component database
expect_rc 2 "--component without NAME" cf dump -p "$POLICY" --component
run "$COFFER" dump --component x --help
assert_eq 0 "$RC" "--help exits 0"
assert_eq "usage: coffer dump -p POLICY [--target NAME] [--set ID|latest] --component NAME" \
    "$(printf '%s\n' "$OUT" | head -1)" "--help's first line"
if command -v script >/dev/null; then
    script -qec "$COFFER dump -p $POLICY --component database" /dev/null >"$T/tty.out" 2>&1
    assert_contains "$(cat "$T/tty.out")" "terminal" "a terminal on stdout is refused"
fi
finish
