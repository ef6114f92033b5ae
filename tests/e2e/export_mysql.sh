#!/usr/bin/env bash
# MySQL/MariaDB out of coffer (MariaDB from tests/tools/mysql_server.sh):
# `dump --component` writes SQL text the stock mariadb client loads into a
# fresh server schema with every table's rows equal to the database at
# backup time; `export` carries the same text as databases/NAME.sql and
# RESTORE.txt gives the mysql command.
. "$(dirname "$0")/lib.sh"
require_coffer
POLICY=$COFFER_SRC/policies/asterdrive-mysql-local.yaml
export COFFER_PLUGIN_PATH=$COFFER_PLUGIN_BUILD_DIR # the mysql driver
MYT=$T/mysql
trap '_rc=$?; bash "$TOOLS/mysql_server.sh" stop "$MYT" >/dev/null 2>&1; (exit $_rc); _cleanup' EXIT
bash "$TOOLS/mysql_server.sh" start "$MYT" >"$T/mysql.env" || die "cannot start MariaDB"
eval "$(sed 's/^/export /' "$T/mysql.env")"
export MYSQL_PWD=$MYSQL_TEST_PASSWORD
MY_URL=mysql://$MYSQL_TEST_USER@127.0.0.1:$MYSQL_PORT/asterdrive
my() { mariadb --defaults-file="$MYSQL_CLIENT_CNF" -B -N "$@"; }
# sums DB: "table rows sha" of every table, rows ordered
sums() {
    local t
    for t in $(my -e "SELECT table_name FROM information_schema.tables WHERE table_schema = '$1' ORDER BY 1"); do
        printf '%s %s %s\n' "$t" "$(my "$1" -e "SELECT count(*) FROM \`$t\`")" \
            "$(my "$1" -e "SELECT * FROM \`$t\` ORDER BY 1" | sha256sum | cut -c1-16)"
    done
}
setup_env
export ASTERDRIVE_DATABASE_URL=$MY_URL

section "back up"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 3 --seed 61
"$PY" "$TOOLS/aster_load.py" "$ASTERDRIVE_ROOT" --url "$MY_URL" >"$T/load.json" || die "aster_load.py failed"
expect_ok "init" cf init -p "$POLICY" --encryption none || die "init"
expect_ok "backup" cf backup -p "$POLICY" --json || die "backup"
SET=$(json_get "$OUT" 'j["set"]')
sums asterdrive >"$T/sums-live.txt"
assert_gt "$(wc -l <"$T/sums-live.txt")" 5 "the live database has tables"
my asterdrive -e "UPDATE users SET username = CONCAT(username, '-changed')"

section "dump --component: SQL text for the stock client"
"$COFFER" --no-progress dump -p "$POLICY" --set "$SET" --component database >"$T/db.sql" 2>"$T/err"
assert_eq 0 $? "dump --component database exits 0"
show <"$T/err"
assert_gt "$(grep -c 'INSERT INTO' "$T/db.sql")" 0 "the output holds INSERT statements"
# the text names the database it creates: load it under another name
sed -e 's/`asterdrive`/`fresh`/g' "$T/db.sql" >"$T/fresh.sql"
my -e "DROP DATABASE IF EXISTS fresh"
my <"$T/fresh.sql" 2>"$T/load.err"
assert_eq 0 $? "stock mariadb client loads it"
show <"$T/load.err"
sums fresh >"$T/sums-fresh.txt"
if cmp -s "$T/sums-live.txt" "$T/sums-fresh.txt"; then
    pass "every table's rows equal the backup's ($(wc -l <"$T/sums-fresh.txt") tables)"
else
    fail "tables differ"; diff "$T/sums-live.txt" "$T/sums-fresh.txt" | show
fi
assert_eq "" "$(ls -A "$T" | grep -i native)" "no temporary file left"

section "export carries it"
expect_ok "export" cf export -p "$POLICY" --set "$SET" --to "$T/set.tar" --json
assert_eq "databases/database.sql" "$(json_get "$OUT" 'j["databases"]["database"]["file"]')" "database in the archive"
tar -xOf "$T/set.tar" databases/database.sql | cmp -s - "$T/db.sql" &&
    pass "the archive's SQL equals dump --component's" || fail "the archive's SQL differs"
assert_contains "$(tar -xOf "$T/set.tar" RESTORE.txt)" "mysql -u root -p < databases/database.sql" "RESTORE.txt gives the mysql command"
finish
