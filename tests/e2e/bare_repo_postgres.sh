#!/usr/bin/env bash
# Recovery from a bare repository with the database on PostgreSQL 15
# (tests/tools/pg_server.sh): the shipped PostgreSQL policy, its password
# from $PGPASSWORD, backed up and then deleted. The recorded policy names
# neither the password nor its variable; `--repo ... restore` refuses the
# server database without --map, and with --map into a fresh database gives
# the same row counts and files as the original.
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
counts() { # counts DB: "table rows" lines of every user table
    local t
    for t in $(psql_db "$1" "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"); do
        echo "$t $(psql_db "$1" "SELECT count(*) FROM public.\"$t\"")"
    done
}
setup_env
export ASTERDRIVE_DATABASE_URL=$PG_URL

section "back up, then lose the policy"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 3 --seed 51
"$PY" "$TOOLS/aster_load.py" "$ASTERDRIVE_ROOT" --url "$PG_URL" >"$T/load.json" || die "aster_load.py failed"
cp "$POLICY" "$T/pg.yaml"
expect_ok "init" cf init -p "$T/pg.yaml" --encryption none || die "init"
expect_ok "backup" cf backup -p "$T/pg.yaml" --json || die "backup"
SET=$(json_get "$OUT" 'j["set"]')
LIVE=$ASTERDRIVE_ROOT
for d in uploads avatar; do snapshot "$LIVE/data/$d" "$T/snap-$d.json" --no-db; done
counts asterdrive >"$T/counts-live.txt"
assert_gt "$(wc -l <"$T/counts-live.txt")" 5 "the live database has tables"
rm -f "$T/pg.yaml"
REPO=$COFFER_REPO
unset COFFER_REPO ASTERDRIVE_ROOT ASTERDRIVE_DATABASE_URL

section "policy show"
expect_ok "policy show" cf --repo "$REPO" policy show --set "$SET"
SHOWN=$OUT
assert_not_contains "$SHOWN" "$PG_PASSWORD" "no password in the shown policy"
assert_eq "" "$(grep -v '^ *#' <<<"$SHOWN" | grep PGPASSWORD)" "the password's variable is not named outside comments"
assert_contains "$SHOWN" "# password_env: ..." "the left-out password source is a comment"
assert_contains "$SHOWN" "server 127.0.0.1 port $PG_PORT, database asterdrive" "the comments say where the database was"
printf '%s\n' "$SHOWN" >"$T/shown.yaml"
expect_ok "the shown policy passes policy check" cf policy check "$T/shown.yaml"

section "restore"
expect_rc 2 "a server database without --map is refused" cf --repo "$REPO" restore --set "$SET" --to "$T/out-refused"
assert_contains "$ERR" "component 'database'" "the refusal names the component"
assert_contains "$ERR" "--map database=URL" "and the --map it needs"
assert_absent "$T/out-refused" "nothing written"
RESTORED=postgres://$PG_USER@127.0.0.1:$PG_PORT/recovered
expect_ok "restore with --map into a fresh database" \
    cf --repo "$REPO" restore --set "$SET" --to "$T/out" --map "database=$RESTORED" --no-validate
counts recovered >"$T/counts-restored.txt"
if cmp -s "$T/counts-live.txt" "$T/counts-restored.txt"; then
    pass "row counts equal ($(wc -l <"$T/counts-live.txt") tables, $(awk '{s += $2} END {print s}' "$T/counts-live.txt") rows)"
else
    fail "row counts differ"
    diff "$T/counts-live.txt" "$T/counts-restored.txt" | show
fi
for d in uploads avatar; do
    snapshot "$T/out/data/$d" "$T/snap-out-$d.json" --no-db
    compare "restored data/$d equals the original" "$T/snap-$d.json" "$T/snap-out-$d.json" --no-db
done
cmp -s "$LIVE/data/config.toml" "$T/out/data/config.toml" && pass "config.toml restored" || fail "config.toml differs"
finish
