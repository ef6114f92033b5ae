#!/usr/bin/env bash
# coffer rehearse against a real PostgreSQL 15 (tests/tools/pg_server.sh):
# the scratch database is created beside production under a name that
# cannot collide, the validate command is told about it (never about the
# production database) and may get its password as a file, the production
# database is unchanged while the rehearsal runs, the scratch database is
# dropped afterwards, a rehearsal killed with kill -9 leaves a database the
# next one drops, a role without CREATEDB gets an error naming the server
# and the privilege, and a check whose query does not parse names the
# policy file, line and check.
. "$(dirname "$0")/lib.sh"
require_coffer

PGT=$T/pg
trap '_rc=$?; pkill -f "$T/probe.sh" 2>/dev/null; "$TOOLS/pg_server.sh" stop "$PGT" >/dev/null 2>&1; (exit $_rc); _cleanup' EXIT
"$TOOLS/pg_server.sh" start "$PGT" || die "cannot start PostgreSQL"
# shellcheck disable=SC1091
. "$PGT/pg.env"
export PGPASSWORD=$PG_PASSWORD
admin() { $PG_ADMIN -d postgres -Atc "$1"; }
psql_db() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$1" -Atc "$2"; }
scratch_dbs() { admin "SELECT datname FROM pg_database WHERE datname LIKE 'coffer_rehearse_%' ORDER BY 1" | tr '\n' ' ' | sed 's/ $//'; }
prod_state() { # every table's rows, hashed, of the production database
    local t
    for t in $(psql_db asterdrive "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"); do
        printf '%s %s\n' "$t" "$(psql_db asterdrive "COPY (SELECT * FROM $t ORDER BY 1) TO STDOUT" | sha256sum | cut -c1-16)"
    done
}

section "a small application on PostgreSQL"
psql_db asterdrive "CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL);
  CREATE TABLE blobs (id bigserial PRIMARY KEY, path text NOT NULL, size bigint NOT NULL);
  INSERT INTO users (name) SELECT 'user' || g FROM generate_series(1, 5000) g;" || die "schema"
ROOT=$T/app
mkdir -p "$ROOT/blobs"
for i in 1 2 3; do head -c $((i * 1000)) /dev/urandom >"$ROOT/blobs/b$i"; done
psql_db asterdrive "INSERT INTO blobs (path, size) VALUES ('blobs/b1', 1000), ('blobs/b2', 2000), ('blobs/b3', 3000)"
export TMPDIR=$T/scratch
mkdir -p "$TMPDIR"
cat >"$T/probe.sh" <<'EOF'
{
  echo "url=$COFFER_DB_DATABASE_URL"
  echo "arg=$1"
  echo "pwfile=$COFFER_DB_DATABASE_PASSWORD_FILE"
  [ -n "$COFFER_DB_DATABASE_PASSWORD_FILE" ] && echo "pwmode=$(stat -L -c %a "$COFFER_DB_DATABASE_PASSWORD_FILE")"
  echo "pgpassword=${PGPASSWORD:-unset}"
  # the restored database, reached with what coffer handed over
  db=${COFFER_DB_DATABASE_URL##*/}; db=${db%%\?*}
  echo "users=$(PGPASSWORD=$(cat "$COFFER_DB_DATABASE_PASSWORD_FILE") psql -X -h 127.0.0.1 -p "$PG_PORT" -U asterdrive -d "$db" -Atc 'SELECT count(*) FROM users')"
} >"$PROBE_OUT" 2>&1
[ -z "$PROBE_SLEEP" ] || sleep "$PROBE_SLEEP"
exit 0
EOF
export PROBE_OUT=$T/probe.out PG_PORT
export PATH="$PG_BIN:$PATH"
write_policy() { # write_policy FILE [extra yaml appended]
    cat >"$1" <<EOF
version: 1
name: pgapp
root: $ROOT
targets:
  - name: primary
    location: $T/repo
components:
  - name: database
    type: database
    driver: postgres
    url: $PG_URL
    password_env: PGPASSWORD
  - name: files
    type: files
    paths: [blobs]
validate:
  - name: probe
    run: sh $T/probe.sh {db.database.url}
    timeout: 120
    credentials: [database]
EOF
    [ -z "${2:-}" ] || printf '%s\n' "$2" >>"$1"
}
P=$T/policy.yaml
write_policy "$P" "checks:
  - name: blobs-present
    type: references
    database: database
    component: files
    query: SELECT path, size FROM blobs
  - name: users-named
    type: sql
    database: database
    query: SELECT id FROM users WHERE name = ''
retention:
  keep_last: 5"
pcf() { "$COFFER" --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" --no-progress "$@"; }
export COFFER_PASSPHRASE=not-a-real-secret
expect_ok "init" pcf init -p "$P" || die "init failed"
expect_ok "backup" pcf backup -p "$P" || die "backup failed"
SET=$(last_line "$OUT")
prod_state >"$T/prod.before"
DBS_BEFORE=$(admin "SELECT count(*) FROM pg_database")

section "rehearse: a scratch database beside production"
PROBE_SLEEP=3 pcf rehearse -p "$P" --json >"$T/rep.json" 2>"$T/rep.err" &
pid=$!
# production while the rehearsal runs (it sleeps in its validate command)
for _ in $(seq 1 100); do [ -s "$PROBE_OUT" ] && break; sleep 0.2; done
DURING=$(scratch_dbs)
prod_state >"$T/prod.during"
wait "$pid"
RC=$?
assert_eq 0 "$RC" "rehearse exits 0"
REP=$(cat "$T/rep.json")
assert_match "$DURING" "^coffer_rehearse_$(printf '%s' "$SET" | tr 'A-Z-' 'a-z_')_[0-9a-f]{8}$" "one scratch database, named after the set, existed during the rehearsal"
SCRATCH=$(json_get "$REP" 'j["sets"][0]["scratch_databases"][0]["name"]')
assert_eq "$DURING" "$SCRATCH" "the report names it"
assert_eq "" "$(scratch_dbs)" "dropped afterwards"
assert_eq "$DBS_BEFORE" "$(admin "SELECT count(*) FROM pg_database")" "no database left behind"
assert_eq "$(cat "$T/prod.before")" "$(cat "$T/prod.during")" "production unchanged while the rehearsal ran"
assert_eq "$(cat "$T/prod.before")" "$(prod_state)" "production unchanged afterwards"
assert_match "$(grep '^url=' "$PROBE_OUT")" "^url=postgres://asterdrive@127.0.0.1:$PG_PORT/$SCRATCH" "COFFER_DB_DATABASE_URL is the scratch database"
assert_eq "arg=$(sed -n 's/^url=//p' "$PROBE_OUT")" "$(grep '^arg=' "$PROBE_OUT")" "{db.database.url} too"
assert_not_contains "$(cat "$PROBE_OUT")" "/asterdrive?" "the production database is never named"
assert_not_contains "$(grep '^url=' "$PROBE_OUT")" "$PG_PASSWORD" "no password in the URL"
assert_eq "users=5000" "$(grep '^users=' "$PROBE_OUT")" "the validate command reached the restored database with the password file"
assert_eq "pwmode=600" "$(grep '^pwmode=' "$PROBE_OUT")" "the password file is 0600"
assert_eq "pgpassword=unset" "$(grep '^pgpassword=' "$PROBE_OUT")" "PGPASSWORD itself is not in the command's environment"
assert_match "$(grep '^pwfile=' "$PROBE_OUT")" '^pwfile=/dev/fd/[0-9]+$' "the password comes as an inherited memory file, never written to disk"
assert_eq "pass pass" "$(json_get "$REP" '" ".join(c["status"] for c in j["sets"][0]["policy_checks"])')" "both checks passed"
assert_not_contains "$REP$(cat "$T/rep.err")" "$PG_PASSWORD" "no password in the report or the log"

section "a rehearsal killed with kill -9 leaves a database the next one drops"
: >"$PROBE_OUT"
PROBE_SLEEP=60 "$COFFER" --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" --no-progress rehearse -p "$P" >"$T/killed.out" 2>&1 &
pid=$!
for _ in $(seq 1 150); do [ -s "$PROBE_OUT" ] && break; sleep 0.2; done
kill -9 "$pid"
wait "$pid" 2>/dev/null
pkill -f "$T/probe.sh" 2>/dev/null
LEFT=$(scratch_dbs)
assert_match "$LEFT" "^coffer_rehearse_" "the killed rehearsal left its scratch database ($LEFT)"
DEADTMP=$(find "$TMPDIR" -mindepth 1 -maxdepth 1 -name 'coffer-??????')
sleep 6 # a dead process's private temporary directory is swept once a few seconds old
expect_ok "the next rehearsal" pcf rehearse -p "$P" --json
if [ -n "$DEADTMP" ]; then
    assert_absent "$DEADTMP" "the killed process's private temporary directory was swept"
else
    note "the killed rehearsal had no private temporary directory"
fi
assert_eq "$LEFT" "$(json_get "$OUT" '" ".join(d for c in j["cleaned"] for d in c["databases"])')" "it dropped the leftover and says so"
assert_eq "" "$(scratch_dbs)" "no scratch database left"
assert_eq 0 "$(find "$TMPDIR" -mindepth 1 -maxdepth 1 -name 'coffer-rehearse-*' | wc -l)" "no scratch directory left"
assert_eq "" "$(grep -rlF -- "$PG_PASSWORD" "$TMPDIR" 2>/dev/null)" "no file under TMPDIR holds the password"

section "a role that may not create databases"
admin "CREATE ROLE weak LOGIN PASSWORD '$PG_PASSWORD' NOCREATEDB" >/dev/null
expect_rc 1 "rehearse with --scratch on a role without CREATEDB" \
    pcf rehearse -p "$P" --scratch "database=postgres://weak@127.0.0.1:$PG_PORT/postgres"
assert_contains "$ERR$OUT" "127.0.0.1:$PG_PORT" "the error names the server"
assert_imatch "$ERR$OUT" "CREATEDB" "and the privilege needed"
assert_not_contains "$ERR$OUT" "$PG_PASSWORD" "no password in the error"
assert_eq "" "$(scratch_dbs)" "nothing created"
assert_eq 0 "$(find "$TMPDIR" -mindepth 1 -maxdepth 1 -name 'coffer-rehearse-*' | wc -l)" "no scratch directory left"
assert_eq "$(cat "$T/prod.before")" "$(prod_state)" "production unchanged"

section "a missing blob: the reference check names it"
mv "$ROOT/blobs/b2" "$T/b2.aside"
# online: the backup checks the snapshot's references first and marks the set
expect_rc 3 "backup without blobs/b2: published, marked inconsistent" pcf backup -p "$P"
SET2=$(last_line "$OUT")
assert_contains "$ERR" "blobs/b2" "the backup names the missing path"
mv "$T/b2.aside" "$ROOT/blobs/b2"
expect_rc 3 "rehearse exits 3" pcf rehearse -p "$P" --set "$SET2" --json
assert_eq "True 1" "$(json_get "$OUT" '"%s %s" % (j["sets"][0].get("inconsistent"), j["sets"][0].get("missing_references"))')" \
    "the rehearsal says the set was marked inconsistent"
assert_eq "fail" "$(json_get "$OUT" '[c["status"] for c in j["sets"][0]["policy_checks"] if c["name"] == "blobs-present"][0]')" "blobs-present fails"
assert_contains "$(json_get "$OUT" '[c["first"] for c in j["sets"][0]["policy_checks"] if c["name"] == "blobs-present"][0]')" "blobs/b2" "and names the missing path"
assert_eq "" "$(scratch_dbs)" "scratch dropped after a failed rehearsal"
expect_ok "sets" pcf sets -p "$P"
assert_contains "$(grep "^$SET2" <<<"$OUT")" "rehearsal FAILED" "recorded as failed"
expect_rc 3 "a restore runs the policy's checks too" pcf restore -p "$P" --set "$SET2" --to "$T/r-checks" \
    --map "database=postgres://$PG_USER@127.0.0.1:$PG_PORT/restored_checks" --json
assert_contains "$(json_get "$OUT" '[c["first"] for c in j["policy_checks"] if c["name"] == "blobs-present"][0]')" "blobs/b2" "and names the missing path"
expect_ok "restore --no-checks skips them" pcf restore -p "$P" --set "$SET2" --to "$T/r-nochecks" \
    --map "database=postgres://$PG_USER@127.0.0.1:$PG_PORT/restored_nochecks" --no-checks --json
assert_eq "0" "$(json_get "$OUT" 'len(j["policy_checks"])')" "no policy check ran"

section "a check whose query does not parse"
write_policy "$T/bad.yaml" "checks:
  - name: broken-query
    type: sql
    database: database
    query: SELEC id FROM users
  - name: slow-query
    type: sql
    database: database
    query: SELECT 1 FROM pg_sleep(60)
    timeout: 2"
LINE=$(grep -n 'query: SELEC id' "$T/bad.yaml" | cut -d: -f1)
start=$(date +%s)
expect_rc 3 "rehearse exits 3" pcf rehearse -p "$T/bad.yaml" --set "$SET" --json
took=$(($(date +%s) - start))
assert_eq "error" "$(json_get "$OUT" 'j["sets"][0]["policy_checks"][1]["status"]')" "a query past its timeout is an error"
assert_contains "$(json_get "$OUT" 'j["sets"][0]["policy_checks"][1]["detail"]')" "timed out after 2 s" "naming the timeout"
assert_lt "$took" 40 "the statement was cancelled at the timeout, not waited for (took ${took}s)"
assert_eq "0" "$(admin "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()")" "nothing left running on the server"
D=$(json_get "$OUT" 'j["sets"][0]["policy_checks"][0]["detail"]')
assert_eq "error" "$(json_get "$OUT" 'j["sets"][0]["policy_checks"][0]["status"]')" "status error"
assert_contains "$D" "$T/bad.yaml:$LINE:" "the error names the policy file and line"
assert_contains "$D" "broken-query" "and the check"
assert_imatch "$D" "syntax" "and the database's complaint"
assert_eq "" "$(scratch_dbs)" "scratch dropped"

finish
