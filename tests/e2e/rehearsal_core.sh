#!/usr/bin/env bash
# coffer rehearse on the embedded default (SQLite + local files, no server):
# the scratch environment is private and removed, production is untouched,
# validate commands see the restored database and never the production
# one, their failures and timeouts are reported with their output, a
# killed rehearsal's leftovers are removed by the next one, --keep and
# --cleanup, proof records (`sets`, --set unproven, forget --keep-proven,
# forget removing them), bad proof records and bad command lines.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env
export TMPDIR=$T/scratch
mkdir -p "$TMPDIR"

# The validate command records what it was given: its environment, its
# placeholders, where it ran, and the tables of the database it was told of.
cat >"$T/probe.sh" <<'EOF'
out=$PROBE_OUT
{
  echo "cwd=$(pwd)"
  echo "arg_root=$1"
  echo "arg_db=$2"
  echo "arg_url=$3"
  echo "root=$COFFER_RESTORE_ROOT"
  echo "path=$COFFER_DB_DATABASE_PATH"
  echo "url=$COFFER_DB_DATABASE_URL"
} >"$out"
echo "probe: looked at $2"
[ -n "$PROBE_SLEEP" ] && sleep "$PROBE_SLEEP"
[ -z "$PROBE_FAIL" ] || { echo "probe: the restored deployment is broken" >&2; exit 7; }
exit 0
EOF
P=$T/policy.yaml
cat >"$P" <<EOF
version: 1
name: rehearsed
root: $ASTERDRIVE_ROOT
targets:
  - name: primary
    location: $COFFER_REPO
components:
  - name: config
    type: files
    paths: [data/config.toml]
  - name: database
    type: database
    driver: sqlite
    path: data/asterdrive.db
  - name: data
    type: files
    paths: [data/]
    exclude: [data/.tmp, data/.uploads]
validate:
  - name: probe
    run: sh $T/probe.sh {root} {db.database.path} {db.database.url}
    timeout: 4
  - name: doctor
    run: \${ASTERDRIVE_DOCTOR}
retention:
  keep_last: 10
EOF
export PROBE_OUT=$T/probe.out
scratch_entries() { find "$TMPDIR" -mindepth 1 -maxdepth 1 | wc -l; }

section "a deployment and two sets"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 6 --seed 41
expect_ok "init" cf init -p "$P" || die "init failed"
expect_ok "backup 1" cf backup -p "$P" || die "backup failed"
SET1=$(last_line "$OUT")
expect_ok "backup 2" cf backup -p "$P" || die "backup failed"
SET2=$(last_line "$OUT")
snapshot "$ASTERDRIVE_ROOT" "$T/before.json"

section "rehearse the latest set"
expect_ok "rehearse --json" cf rehearse -p "$P" --json
REP=$OUT
assert_eq "True" "$(json_get "$REP" 'j["ok"]')" "the report says ok"
assert_eq "$SET2" "$(json_get "$REP" 'j["sets"][0]["set"]')" "latest is rehearsed by default"
assert_eq "True" "$(json_get "$REP" 'j["sets"][0]["recorded"]')" "the result was recorded"
assert_eq "True" "$(json_get "$REP" 'j["sets"][0]["removed"]')" "the scratch environment was removed"
SDIR=$(json_get "$REP" 'j["sets"][0]["scratch_dir"]')
assert_match "$SDIR" "^$TMPDIR/coffer-rehearse-rehearsed-" "the scratch directory is under TMPDIR"
assert_absent "$SDIR" "scratch directory gone"
assert_eq 0 "$(scratch_entries)" "nothing left in TMPDIR"
assert_eq "[0, 0]" "$(json_get "$REP" '[v["exit"] for v in j["sets"][0]["validate"]]')" "both validate commands passed"
R=$SDIR/root
assert_eq "cwd=$R" "$(grep '^cwd=' "$PROBE_OUT")" "validate runs in the scratch root"
assert_eq "arg_root=$R" "$(grep '^arg_root=' "$PROBE_OUT")" "{root} is the scratch root"
assert_eq "arg_db=$R/data/asterdrive.db" "$(grep '^arg_db=' "$PROBE_OUT")" "{db.database.path} is the restored database"
assert_eq "arg_url=sqlite://$R/data/asterdrive.db" "$(grep '^arg_url=' "$PROBE_OUT")" "{db.database.url} names the restored database"
assert_eq "path=$R/data/asterdrive.db" "$(grep '^path=' "$PROBE_OUT")" "COFFER_DB_DATABASE_PATH is the restored database"
assert_not_contains "$(cat "$PROBE_OUT")" "$ASTERDRIVE_ROOT/" "the production root is never named to the validate command"
assert_contains "$(json_get "$REP" 'j["sets"][0]["validate"][0]["output"]')" "probe: looked at $R/data/asterdrive.db" "the command's output is in the report"
snapshot "$ASTERDRIVE_ROOT" "$T/after.json"
expect_ok "production tree and database unchanged" "$PY" "$TOOLS/compare.py" "$T/before.json" "$T/after.json"
expect_ok "sets" cf sets -p "$P"
assert_match "$(grep "^$SET2" <<<"$OUT")" "proven [0-9T:-]+Z" "sets shows when the set was proven"
assert_not_contains "$(grep "^$SET1" <<<"$OUT")" "proven" "the other set is not proven"
expect_ok "sets --json" cf sets -p "$P" --json
assert_eq "True False" "$(json_get "$OUT" '" ".join(str(s["proof"]["proven"]) for s in j if s["id"] in ("'$SET2'", "'$SET1'"))' | tr ' ' '\n' | sort -r | tr '\n' ' ' | sed 's/ $//')" "proof.proven per set"
assert_eq "[0, 0]" "$(json_get "$OUT" '[v["exit"] for s in j if s["id"] == "'$SET2'" for v in s["proof"]["last_rehearsal"]["validate"]]')" "the record keeps the validate results"
# The record is encrypted like the rest and holds no path or URL.
REC=$(find "$COFFER_REPO/proofs/$SET2" -type f | head -1)
assert_ne "" "$REC" "a proof record beside the set"
assert_eq 600 "$(stat -c %a "$REC")" "the record is 0600"
assert_not_contains "$(strings "$REC")" "$TMPDIR" "no scratch path in the record"

section "a failing validate command"
PROBE_FAIL=1 expect_rc 3 "rehearse exits 3" cf rehearse -p "$P" --set "$SET1"
assert_contains "$OUT" "NOT PROVEN" "reported as not proven"
assert_contains "$OUT" "validate probe: exit 7" "the failing command is named with its status"
assert_contains "$OUT" "probe: the restored deployment is broken" "its output is shown"
assert_eq 0 "$(scratch_entries)" "scratch removed after a failure"
expect_ok "sets" cf sets -p "$P"
assert_contains "$(grep "^$SET1" <<<"$OUT")" "rehearsal FAILED" "the failed rehearsal is recorded"

section "a validate command that hangs past its timeout"
start=$(date +%s)
PROBE_SLEEP=60 expect_rc 3 "rehearse exits 3" cf rehearse -p "$P" --set "$SET1" --json
took=$(($(date +%s) - start))
assert_lt "$took" 30 "the hanging command was killed at its timeout (took ${took}s)"
assert_contains "$(json_get "$OUT" 'j["sets"][0]["validate"][0]["error"]')" "timed out after 4 s" "the timeout is named"
assert_contains "$(json_get "$OUT" 'j["sets"][0]["validate"][0]["output"]')" "probe: looked at" "with the output it printed before"
assert_eq 0 "$(scratch_entries)" "scratch removed after a timeout"

section "a rehearsal killed with kill -9"
PROBE_SLEEP=30 "$COFFER" --no-progress rehearse -p "$P" --set "$SET1" >"$T/killed.out" 2>&1 &
pid=$!
# killed while its validate command runs: everything is restored by then
for _ in $(seq 1 150); do grep -q "probe: looked at" "$T/killed.out" 2>/dev/null && break; sleep 0.2; done
kill -9 "$pid"; wait "$pid" 2>/dev/null
pkill -f "sleep 30" 2>/dev/null
LEFT=$(find "$TMPDIR" -mindepth 1 -maxdepth 1 -name 'coffer-rehearse-*')
DEADTMP=$(find "$TMPDIR" -mindepth 1 -maxdepth 1 -name 'coffer-??????')
assert_ne "" "$LEFT" "the killed rehearsal left its scratch directory"
sleep 6 # a dead process's private temporary directory is swept once a few seconds old
expect_ok "the next rehearsal" cf rehearse -p "$P" --set "$SET1" --json
assert_eq "$LEFT" "$(json_get "$OUT" 'j["cleaned"][0]["dir"]')" "it removed the leftover and says so"
assert_absent "$LEFT" "leftover gone"
if [ -n "$DEADTMP" ]; then
    assert_absent "$DEADTMP" "the dead process's private temporary directory was swept too"
else
    note "the killed rehearsal had no private temporary directory"
fi
assert_eq 0 "$(scratch_entries)" "nothing left in TMPDIR"

section "--keep and --cleanup"
expect_ok "rehearse --keep" cf rehearse -p "$P" --keep --json
KEPT=$(json_get "$OUT" 'j["sets"][0]["scratch_dir"]')
assert_exists "$KEPT/root/data/asterdrive.db" "--keep leaves the restored copy"
assert_eq 1 "$(scratch_entries)" "one kept directory"
expect_ok "another rehearsal" cf rehearse -p "$P" --json
assert_eq "[]" "$(json_get "$OUT" 'j["cleaned"]')" "a kept rehearsal is not a leftover"
assert_exists "$KEPT" "still kept"
expect_ok "rehearse --cleanup" cf rehearse -p "$P" --cleanup
assert_contains "$OUT" "$KEPT" "--cleanup names what it removed"
assert_absent "$KEPT" "--cleanup removes kept ones"

section "a directory that is not ours is left alone"
mkdir -p "$TMPDIR/coffer-rehearse-rehearsed-foreign" && chmod 755 "$TMPDIR/coffer-rehearse-rehearsed-foreign"
echo '{"policy":"rehearsed","databases":[]}' >"$TMPDIR/coffer-rehearse-rehearsed-foreign/ledger.json"
expect_ok "rehearse --cleanup" cf rehearse -p "$P" --cleanup
assert_exists "$TMPDIR/coffer-rehearse-rehearsed-foreign/ledger.json" "a directory others may read is not treated as a leftover"
rm -rf "$TMPDIR/coffer-rehearse-rehearsed-foreign"

section "--set unproven and all"
expect_ok "backup 3" cf backup -p "$P"
SET3=$(last_line "$OUT")
expect_ok "rehearse --set unproven" cf rehearse -p "$P" --set unproven --json
assert_eq "$SET3" "$(json_get "$OUT" '" ".join(s["set"] for s in j["sets"])')" "only the set never proven (SET1 was proven after its failures)"
expect_ok "rehearse --set unproven again" cf rehearse -p "$P" --set unproven --json
assert_eq "0" "$(json_get "$OUT" 'len(j["sets"])')" "nothing left to prove"
expect_ok "rehearse --set all" cf rehearse -p "$P" --set all --json
assert_eq "3" "$(json_get "$OUT" 'len(j["sets"])')" "every set"

section "a bad proof record is skipped, not trusted"
echo "garbage" >"$COFFER_REPO/proofs/$SET1/20990101T000000Z-00000000"
expect_ok "sets with a damaged record" cf sets -p "$P" --json
assert_contains "$ERR" "proofs/$SET1/20990101T000000Z-00000000" "the damaged record is named"
assert_eq "True" "$(json_get "$OUT" '[s["proof"]["proven"] for s in j if s["id"] == "'$SET1'"][0]')" "the set stays proven by its real records"
rm -f "$COFFER_REPO/proofs/$SET1/20990101T000000Z-00000000"

section "forget --keep-proven, and forget removes records"
expect_ok "backup 4 (never proven)" cf backup -p "$P"
SET4=$(last_line "$OUT")
expect_ok "forget --keep-proven 1 --dry-run" cf forget -p "$P" --keep-proven 1 --dry-run --json
assert_eq "$SET3" "$(json_get "$OUT" '" ".join(s["id"] for s in j if s["keep"])')" "only the newest proven set is kept"
assert_eq '["proven"]' "$(json_get "$OUT" '[s["reasons"] for s in j if s["keep"]][0]')" "kept because proven"
expect_ok "forget SET1" cf forget -p "$P" "$SET1"
assert_eq 0 "$(find "$COFFER_REPO/proofs/$SET1" -type f 2>/dev/null | wc -l)" "the forgotten set's records are gone"
assert_exists "$COFFER_REPO/proofs/$SET2" "other records stay"
expect_fail_desc "--keep-proven with set ids is refused" cf forget -p "$P" --keep-proven 1 "$SET2"
assert_contains "$ERR" "--keep-proven" "names the option"

section "copy to another target takes the rehearsal records along"
sed -e "s|^    location: $COFFER_REPO\$|    location: $COFFER_REPO\n  - name: second\n    location: $T/repo2|" "$P" >"$T/two.yaml"
expect_ok "init the second target" cf init -p "$T/two.yaml" --target second
expect_ok "copy the proven set" cf copy -p "$T/two.yaml" --from primary --to second --set "$SET2"
expect_ok "sets on the second target" cf sets -p "$T/two.yaml" --target second --json
assert_eq "True" "$(json_get "$OUT" '[s["proof"]["proven"] for s in j if s["id"] == "'$SET2'"][0]')" "the copy is proven too"
assert_eq "$(find "$COFFER_REPO/proofs/$SET2" -type f | wc -l)" "$(find "$T/repo2/proofs/$SET2" -type f | wc -l)" "every record of the set was copied"

section "bad command lines"
expect_rc 2 "--scratch for a component that is not a database" cf rehearse -p "$P" --scratch data=postgres://x/y
assert_contains "$ERR" "--scratch data=postgres://x/y" "names the option and value"
expect_rc 2 "--scratch without =" cf rehearse -p "$P" --scratch database
expect_rc 2 "--cleanup with --set" cf rehearse -p "$P" --cleanup --set latest
expect_rc 2 "an option rehearse does not use" cf rehearse -p "$P" --to "$T/x"
assert_contains "$ERR" "--to does not apply to rehearse" "names it"
expect_rc 2 "a stray argument" cf rehearse -p "$P" extra
expect_fail_desc "an unknown set" cf rehearse -p "$P" --set 19990101
assert_eq 0 "$(scratch_entries)" "no scratch left by refused command lines"

finish
