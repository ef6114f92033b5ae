#!/usr/bin/env bash
# Two backups of an AsterDrive deployment (before and after ~1% of activity),
# each restored into its own root and compared with the tree as it was at
# backup time: byte for byte (modes, mtimes, owners, symlinks, hard links)
# and row for row for the database. Also: the second backup stores much less
# than the first, verify --read-data passes, sets --json lists both.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env
# The doctor's output goes to $T/doctor-<dir>.txt so we can see that the
# validate command ran, in which root, and what it found.
doctor_cmd() { echo "$PY $TOOLS/asterdoctor.py --deep . > $T/doctor-$1.txt 2>&1"; }

section "generate"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 30 --seed 11
doctor "generated deployment is doctor-clean" "$ASTERDRIVE_ROOT"

section "init"
expect_ok "init creates the repository" cf init -p "$POLICY" || die "init failed"
assert_exists "$COFFER_REPO/config" "repository config object written"
expect_fail_desc "init refuses an existing repository" cf init -p "$POLICY"
assert_error_line

section "backup #1"
expect_ok "backup #1" cf backup -p "$POLICY" --json || die "backup #1 failed"
B1=$OUT
SET1=$(json_get "$B1" 'j["set"]')
assert_match "$SET1" "$SETID_RE" "backup #1 --json has a set id ($SET1)"
for k in files bytes new_bytes stored_bytes duration; do
    v=$(json_get "$B1" "j.get('$k')")
    if [ "$v" != None ]; then pass "backup --json has '$k' ($v)"; else fail "backup --json lacks '$k'"; fi
done
NEW1=$(json_get "$B1" 'int(j["new_bytes"])')
assert_exists "$COFFER_REPO/sets/$SET1" "manifest sets/$SET1 written"
snapshot "$ASTERDRIVE_ROOT" "$T/snap1.json"

section "mutate, backup #2"
mutate_deployment "$ASTERDRIVE_ROOT" --percent 1 --seed 12
doctor "mutated deployment is doctor-clean" "$ASTERDRIVE_ROOT"
expect_ok "backup #2" cf backup -p "$POLICY" --json || die "backup #2 failed"
B2=$OUT
SET2=$(json_get "$B2" 'j["set"]')
NEW2=$(json_get "$B2" 'int(j["new_bytes"])')
assert_match "$SET2" "$SETID_RE" "backup #2 set id ($SET2)"
assert_ne "$SET1" "$SET2" "the two sets have different ids"
assert_lt "$((NEW2 * 4))" "$NEW1" "backup #2 new_bytes ($NEW2) is much smaller than backup #1's ($NEW1): x4"
snapshot "$ASTERDRIVE_ROOT" "$T/snap2.json"

section "sets"
expect_ok "sets --json" cf sets -p "$POLICY" --json
SETS=$OUT
assert_eq 2 "$(json_get "$SETS" 'len(j)')" "sets --json lists 2 sets"
assert_eq "$(printf '%s\n%s' "$SET1" "$SET2" | sort | tr '\n' ' ')" \
    "$(json_get "$SETS" '" ".join(sorted(s["id"] for s in j)) + " "')" "sets --json ids are the two backups"
assert_eq "asterdrive asterdrive" "$(json_get "$SETS" '" ".join(s["policy"] for s in j)')" "sets have the policy name"
assert_eq "config,data,database" "$(json_get "$SETS" '",".join(sorted(j[0]["components"]))')" "set components are config, database, data"
for k in host time; do
    assert_ne "" "$(json_get "$SETS" "j[0].get('$k') or ''")" "sets --json has '$k'"
done
expect_ok "sets (text)" cf sets -p "$POLICY"
assert_eq 2 "$(printf '%s\n' "$OUT" | grep -Ec "^($SET1|$SET2) ")" "sets prints one line per set, starting with its id"

section "restore set 1 -> A, set 2 -> B"
ASTERDRIVE_DOCTOR=$(doctor_cmd A) expect_ok "restore set 1 --to A (validate passes)" \
    cf restore -p "$POLICY" --set "$SET1" --to "$T/A"
ASTERDRIVE_DOCTOR=$(doctor_cmd B) expect_ok "restore set 2 --to B (validate passes)" \
    cf restore -p "$POLICY" --set "$SET2" --to "$T/B"
for d in A B; do
    assert_match "$(cat "$T/doctor-$d.txt" 2>/dev/null)" "^doctor: checking $T/$d( |$)" "validate command ran in the restored root $d"
    assert_match "$(cat "$T/doctor-$d.txt" 2>/dev/null)" '^doctor: 0 failed' "validate (doctor) passed on $d"
    assert_absent "$T/$d/data/.tmp" "restored $d has no data/.tmp"
    assert_absent "$T/$d/data/.uploads" "restored $d has no data/.uploads"
    assert_exists "$T/$d/data/config.toml" "restored $d has data/config.toml"
done
snapshot "$T/A" "$T/snapA.json"
snapshot "$T/B" "$T/snapB.json"
compare "restore of set 1 equals the tree at backup #1 (bytes, metadata, rows)" \
    "$T/snap1.json" "$T/snapA.json" "${RESTORE_EXCLUDES[@]}"
compare "restore of set 2 equals the tree at backup #2 (bytes, metadata, rows)" \
    "$T/snap2.json" "$T/snapB.json" "${RESTORE_EXCLUDES[@]}"
doctor "doctor --deep passes on restore A" "$T/A"
doctor "doctor --deep passes on restore B" "$T/B"
# The database really is the set's, not a later one.
assert_eq "$(sql "$T/A/data/asterdrive.db" 'select count(*) from files')" \
    "$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["dbs"]["data/asterdrive.db"]["tables"]["files"]["count"])' "$T/snap1.json")" \
    "restore A has set 1's files rows"

section "restore latest"
ASTERDRIVE_DOCTOR=$(doctor_cmd L) expect_ok "restore --set latest" cf restore -p "$POLICY" --set latest --to "$T/L"
snapshot "$T/L" "$T/snapL.json"
compare "latest is set 2" "$T/snap2.json" "$T/snapL.json" "${RESTORE_EXCLUDES[@]}"

section "verify"
expect_ok "verify set 1" cf verify -p "$POLICY" --set "$SET1"
expect_ok "verify --read-data set 1" cf verify -p "$POLICY" --set "$SET1" --read-data
expect_ok "verify --read-data set 2" cf verify -p "$POLICY" --set "$SET2" --read-data

finish
