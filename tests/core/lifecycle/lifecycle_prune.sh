#!/usr/bin/env bash
# Prune after forget: data no kept set references goes (unused packs
# removed, partly used ones repacked), every kept set still restores byte
# for byte, check --read-data passes; a dry run changes nothing; sets of
# another policy in the same repository are kept; an unreadable set stops
# prune before any change; unindexed packs go only when old.
HERE=$(cd "$(dirname "$0")" && pwd)
. "${COFFER_SRC:-$HERE/../../..}/tests/e2e/lib.sh"
. "$HERE/lifecycle.sh"
require_coffer
setup_env
export COFFER_PASSPHRASE="prune test"

section "six backups with changes in between"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 16 --seed 41
expect_ok "init" cf init -p "$POLICY" || die init
declare -a IDS
for n in 1 2 3 4 5 6; do
    [ $n -gt 1 ] && mutate_deployment "$ASTERDRIVE_ROOT" --percent 15 --seed $((41 + n))
    backup_set -p "$POLICY"
    IDS[$n]=$SET
    snapshot "$ASTERDRIVE_ROOT" "$T/snap$n.json"
done
# Another policy sharing the repository: its set must survive our prune.
sed -e 's/^name: asterdrive$/name: other/' "$POLICY" >"$T/other.yaml"
backup_set -p "$T/other.yaml"
OTHER=$SET
SIZE0=$(du -sb "$COFFER_REPO" | cut -f1)

section "usage errors"
expect_rc 2 "--max-unused abc is a usage error" cf prune -p "$POLICY" --max-unused abc
expect_rc 2 "--max-unused 150 is a usage error" cf prune -p "$POLICY" --max-unused 150

section "forget, then a dry run"
expect_ok "forget --keep-last 2" cf forget -p "$POLICY" --keep-last 2
BEFORE=$(tree_state "$COFFER_REPO")
expect_ok "prune --dry-run" cf prune -p "$POLICY" --dry-run --json
DRY=$OUT
assert_eq True "$(json_get "$DRY" 'j["dry_run"]')" "dry run says so"
assert_gt "$(json_get "$DRY" 'j["packs"]["removed"] + j["packs"]["repacked"]')" 0 "the plan removes or repacks packs"
assert_eq "$BEFORE" "$(tree_state "$COFFER_REPO")" "the dry run changed nothing"

section "prune"
expect_ok "prune" cf prune -p "$POLICY" --max-unused 0
assert_match "$OUT" "^prune: removed [0-9]+ pack\(s\) \([0-9]+ unused, [0-9]+ repacked\), .*; kept [0-9]+ pack\(s\), 3 set\(s\)$" \
    "prune prints what it removed and kept"
assert_match "$ERR" "3 set\(s\) of 2 policies kept" "prune counted the sets of both policies"
assert_match "$ERR" "copied .* into [0-9]+ new pack\(s\)" "prune reports what it repacked"
SIZE1=$(du -sb "$COFFER_REPO" | cut -f1)
assert_lt "$SIZE1" "$SIZE0" "the repository shrank ($SIZE0 -> $SIZE1 bytes)"
assert_eq 1 "$(ls "$COFFER_REPO/index" | wc -l)" "one index object left"
assert_eq 0 "$(ls "$COFFER_REPO/locks" 2>/dev/null | wc -l)" "no lock left behind"
expect_ok "check --read-data after prune" cf check -p "$POLICY" --read-data
assert_not_contains "$ERR" "not in any index" "no unindexed pack left"
restore_compare "kept set 5" "${IDS[5]}" "$T/snap5.json" -p "$POLICY"
restore_compare "kept set 6" "${IDS[6]}" "$T/snap6.json" -p "$POLICY"
restore_compare "the other policy's set" "$OTHER" "$T/snap6.json" -p "$T/other.yaml"

section "a second prune has nothing to do"
expect_ok "prune again" cf prune -p "$POLICY" --json
assert_eq 0 "$(json_get "$OUT" 'j["packs"]["removed"] + j["packs"]["repacked"]')" "nothing removed the second time"

section "unindexed packs: removed when old, kept when recent"
SOME=$(find "$COFFER_REPO/data" -type f | head -1)
OLD=$COFFER_REPO/data/ee/ee$(printf '%062d' 1)
NEW=$COFFER_REPO/data/ee/ee$(printf '%062d' 2)
mkdir -p "$COFFER_REPO/data/ee"
cp "$SOME" "$OLD" && touch -d '2 hours ago' "$OLD"
cp "$SOME" "$NEW"
expect_ok "check lists unindexed packs without failing" cf check -p "$POLICY"
assert_contains "$ERR" "data/ee/ee$(printf '%062d' 1): pack not in any index" "check names the unindexed pack"
expect_ok "prune" cf prune -p "$POLICY"
assert_absent "$OLD" "the old unindexed pack was removed"
assert_exists "$NEW" "the recent one stays (it could be a running backup's)"
rm -f "$NEW"

section "an unreadable set stops prune before any change"
expect_ok "forget --keep-last 1" cf forget -p "$POLICY" --keep-last 1
flip "$COFFER_REPO/sets/$OTHER" 100
BEFORE=$(tree_state "$COFFER_REPO")
expect_rc 1 "prune refuses" cf prune -p "$POLICY"
assert_contains "$ERR" "set $OTHER is unreadable" "the error names the set"
assert_contains "$ERR" "nothing was changed"
# the lock object comes and goes; everything else must be identical
assert_eq "$BEFORE" "$(tree_state "$COFFER_REPO")" "nothing changed"
flip "$COFFER_REPO/sets/$OTHER" 100
expect_ok "after repair, prune runs" cf prune -p "$POLICY"
expect_ok "check --read-data" cf check -p "$POLICY" --read-data
restore_compare "kept set 6 after the last prune" "${IDS[6]}" "$T/snap6.json" -p "$POLICY"

section "unencrypted repositories prune the same way"
export COFFER_REPO=$T/plain
expect_ok "init --encryption none" cf init -p "$POLICY" --encryption none
for n in 1 2 3; do
    mutate_deployment "$ASTERDRIVE_ROOT" --percent 20 --seed $((60 + n))
    backup_set -p "$POLICY"
done
snapshot "$ASTERDRIVE_ROOT" "$T/snapP.json"
expect_ok "forget --keep-last 1" cf forget -p "$POLICY" --keep-last 1
expect_ok "prune" cf prune -p "$POLICY" --max-unused 0
expect_ok "check --read-data" cf check -p "$POLICY" --read-data
restore_compare "unencrypted kept set" "$SET" "$T/snapP.json" -p "$POLICY"

finish
