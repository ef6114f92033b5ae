#!/usr/bin/env bash
# Locks in practice: two backups into one repository at the same time both
# succeed and both restore; prune and a running backup exclude each other
# with a clear message; a lock left by a killed backup is removed with a
# log line by the next command that needs the repository exclusively; a
# live-looking lock from another host is only removed by `unlock --all`.
HERE=$(cd "$(dirname "$0")" && pwd)
. "${COFFER_SRC:-$HERE/../../..}/tests/e2e/lib.sh"
. "$HERE/lifecycle.sh"
require_coffer
setup_env
export COFFER_PASSPHRASE="lock test"

gen_deployment "$ASTERDRIVE_ROOT" --size-mb 30 --seed 71
expect_ok "init" cf init -p "$POLICY" || die init

section "two backups at once"
"$COFFER" --no-progress backup -p "$POLICY" >"$T/b1.out" 2>"$T/b1.err" &
p1=$!
"$COFFER" --no-progress backup -p "$POLICY" >"$T/b2.out" 2>"$T/b2.err" &
p2=$!
wait $p1; r1=$?
wait $p2; r2=$?
assert_eq 0 "$r1" "first concurrent backup succeeds"
assert_eq 0 "$r2" "second concurrent backup succeeds"
S1=$(last_line "$(cat "$T/b1.out")")
S2=$(last_line "$(cat "$T/b2.out")")
assert_match "$S1" "$SETID_RE" "first backup printed a set id"
assert_match "$S2" "$SETID_RE" "second backup printed a set id"
assert_ne "$S1" "$S2" "two distinct sets"
assert_eq 2 "$(count_sets "$COFFER_REPO")" "two manifests"
assert_eq 0 "$(ls "$COFFER_REPO/locks" | wc -l)" "both released their locks"
# after the backups: a backup touches the data directory's mtime
snapshot "$ASTERDRIVE_ROOT" "$T/snap.json"
expect_ok "check --read-data" cf check -p "$POLICY" --read-data
restore_compare "first concurrent set" "$S1" "$T/snap.json" -p "$POLICY"
restore_compare "second concurrent set" "$S2" "$T/snap.json" -p "$POLICY"

section "prune and a running backup exclude each other"
# the stop command keeps the backup (and its shared lock) alive a while
ASTERDRIVE_STOP="sleep 4" "$COFFER" --no-progress backup -p "$POLICY" >"$T/b3.out" 2>"$T/b3.err" &
p3=$!
wait_for "the backup's lock" 20 bash -c "ls '$COFFER_REPO/locks' | grep -q ."
expect_rc 1 "prune while a backup runs is refused" cf prune -p "$POLICY"
assert_contains "$ERR" "repository is locked (shared lock" "the refusal says who holds the lock"
assert_contains "$ERR" "'backup'" "and which command"
wait $p3
assert_eq 0 "$?" "the backup finished normally"
expect_ok "prune once the backup is done" cf prune -p "$POLICY"

section "a lock left by a killed backup"
ASTERDRIVE_STOP="sleep 30" "$COFFER" --no-progress backup -p "$POLICY" >"$T/b4.out" 2>&1 &
p4=$!
wait_for "the backup's lock" 20 bash -c "ls '$COFFER_REPO/locks' | grep -q ."
pkill -9 -P $p4 2>/dev/null # the stop command first, then coffer itself
kill -9 $p4
wait $p4 2>/dev/null
assert_eq 1 "$(ls "$COFFER_REPO/locks" | wc -l)" "the killed backup left its lock"
expect_ok "prune (exclusive) goes ahead" cf prune -p "$POLICY"
assert_match "$ERR" "removing stale lock locks/[0-9a-f]+ \(shared, pid [0-9]+ on .*'backup'\): its process is gone" \
    "the stale lock was removed with a log line naming it"
assert_eq 0 "$(ls "$COFFER_REPO/locks" | wc -l)" "no lock left"

section "a lock from another host is not guessed away"
NOW=$(date +%s)
printf '{"host":"elsewhere.example","pid":4242,"kind":"shared","command":"backup","created":%s,"refreshed":%s}' \
    "$NOW" "$NOW" >"$COFFER_REPO/locks/0123456789abcdef0123456789abcdef"
expect_rc 1 "prune refuses while another host's lock is fresh" cf prune -p "$POLICY"
assert_contains "$ERR" "elsewhere.example" "the refusal names the other host"
assert_contains "$ERR" "coffer unlock" "and says how to remove it"
expect_ok "unlock (stale only) leaves it" cf unlock -p "$POLICY"
assert_contains "$OUT" "0 lock(s) removed"
expect_ok "unlock --all removes it" cf unlock -p "$POLICY" --all
assert_contains "$OUT" "1 lock(s) removed"

section "a restore while another host prunes"
# The restore's lock is written while its first packs are read; the
# refusal still comes before anything leaves the staging directory.
printf '{"host":"elsewhere.example","pid":4243,"kind":"exclusive","command":"prune","created":%s,"refreshed":%s}' \
    "$NOW" "$NOW" >"$COFFER_REPO/locks/00112233445566778899aabbccddeeff"
expect_rc 1 "restore refuses while another host's prune holds the lock" \
    cf restore -p "$POLICY" --to "$T/rlocked"
assert_contains "$ERR" "repository is locked (exclusive lock" "the refusal names the exclusive lock"
assert_contains "$ERR" "elsewhere.example" "... and its host"
assert_eq "" "$(ls -A "$T/rlocked" 2>/dev/null)" "nothing is left in the target, no staging directory"
assert_eq "00112233445566778899aabbccddeeff" "$(ls "$COFFER_REPO/locks")" \
    "the restore removed its own lock and left the other"
expect_ok "a dry run takes no lock: it is not refused" \
    cf restore -p "$POLICY" --to "$T/rlocked" --dry-run
rm "$COFFER_REPO/locks/00112233445566778899aabbccddeeff"
restore_compare "with the lock gone the set restores" "$S2" "$T/snap.json" -p "$POLICY"

OLD=$((NOW - 7200))
printf '{"host":"elsewhere.example","pid":4242,"kind":"exclusive","command":"prune","created":%s,"refreshed":%s}' \
    "$OLD" "$OLD" >"$COFFER_REPO/locks/fedcba9876543210fedcba9876543210"
expect_ok "a lock not refreshed for two hours is stale: backup goes ahead" cf backup -p "$POLICY"
assert_contains "$ERR" "has not been refreshed" "and says why it removed it"

finish
