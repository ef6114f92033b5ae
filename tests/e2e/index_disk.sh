#!/usr/bin/env bash
# The sorted on-disk index that large repositories use, forced here for a
# small one (COFFER_INDEX_MEMORY_ENTRIES=0): backups deduplicate, restores
# give the bytes back, check and prune work as with the index in memory.
# The sorted file is kept 0600 in the cache, reused while the index
# objects it names are unchanged, rebuilt when they change, and refused
# (with a warning, never used) when it is damaged.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env
export COFFER_INDEX_MEMORY_ENTRIES=0

restored_equal() {
    snapshot "$3" "$T/snap-$(basename "$3").json"
    compare "$1" "$2" "$T/snap-$(basename "$3").json" "${RESTORE_EXCLUDES[@]}"
}
flip_at() {
    "$PY" -c 'import sys
p, o = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read()); b[o] ^= 0xFF; open(p, "wb").write(b)' "$1" "$2"
}

section "backups and restores through the on-disk index"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 24 --seed 5
expect_ok "init" cf init -p "$POLICY" || die "init failed"
expect_ok "backup #1" cf backup -p "$POLICY" --json || die "backup #1 failed"
SET1=$(json_get "$OUT" 'j["set"]')
snapshot "$ASTERDRIVE_ROOT" "$T/snap1.json"
expect_ok "backup #2, nothing changed" cf -v backup -p "$POLICY" --json || die "backup #2 failed"
assert_match "$ERR" "index: [0-9]+ entries sorted on disk" "the index was sorted on disk"
N1=$(printf '%s\n' "$ERR" | sed -n 's/.*index: \([0-9]*\) entries sorted on disk.*/\1/p' | tail -1)
assert_eq 0 "$(json_get "$OUT" 'int(j["new_bytes"])')" "backup #2 stores no new bytes (every chunk found on disk)"
SORTED=$(find "$COFFER_CACHE_DIR" -name index.sorted)
assert_exists "$SORTED" "the sorted index is kept in the cache"
assert_eq 600 "$(stat -c %a "$SORTED")" "the sorted index is 0600"
assert_eq 0 "$(find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'coffer-index-*' -newer "$T/snap1.json" | wc -l)" \
    "no temporary bucket file is left behind"

expect_ok "restore set 1" cf -v restore -p "$POLICY" --set "$SET1" --to "$T/R1" --no-validate
assert_match "$ERR" "index: [0-9]+ entries from the sorted index" "the restore reused the sorted index"
restored_equal "restore from the on-disk index gives set 1 back" "$T/snap1.json" "$T/R1"

mutate_deployment "$ASTERDRIVE_ROOT" --seed 6
expect_ok "backup #3 after a change" cf -v backup -p "$POLICY" --json || die "backup #3 failed"
SET3=$(json_get "$OUT" 'j["set"]')
assert_gt "$(json_get "$OUT" 'int(j["new_bytes"])')" 0 "backup #3 stores the changed data"
snapshot "$ASTERDRIVE_ROOT" "$T/snap3.json"
# Past the threshold a repository has its sorted file; the index objects
# of later backups are read beside it while they are few.
COFFER_INDEX_MEMORY_ENTRIES=$((N1 - 1)) expect_ok "restore set 3" \
    cf -v restore -p "$POLICY" --set "$SET3" --to "$T/R3" --no-validate
assert_match "$ERR" "entries from the sorted index, [0-9]+ from 1 newer" \
    "backup #3's index object is read beside the sorted file"
restored_equal "restore of set 3 (sorted file plus a newer index object)" "$T/snap3.json" "$T/R3"
expect_ok "check --read-data" cf check -p "$POLICY" --read-data

section "a damaged sorted file is refused and rebuilt"
SIZE=$(stat -c %s "$SORTED")
flip_at "$SORTED" $((SIZE / 2))
expect_ok "restore with a flipped byte among the entries" \
    cf -v restore -p "$POLICY" --set "$SET1" --to "$T/R1b" --no-validate
assert_match "$ERR" "index.sorted is unusable \((an entry is out of order or invalid|its MAC does not verify)\); rebuilding it" \
    "the damage is named"
restored_equal "the restore is still right" "$T/snap1.json" "$T/R1b"
SIZE=$(stat -c %s "$SORTED")
flip_at "$SORTED" $((SIZE - 1))
expect_ok "restore with a flipped byte in the MAC" \
    cf -v restore -p "$POLICY" --set "$SET1" --to "$T/R1f" --no-validate
assert_contains "$ERR" "is unusable (its MAC does not verify); rebuilding it" "a wrong MAC is named"
restored_equal "the restore is still right" "$T/snap1.json" "$T/R1f"
expect_ok "the next command" cf -v sets -p "$POLICY"
assert_not_contains "$ERR" "unusable" "the rebuilt file verifies"
truncate -s -7 "$SORTED"
expect_ok "restore with a truncated sorted file" \
    cf -v restore -p "$POLICY" --set "$SET3" --to "$T/R3b" --no-validate
assert_contains "$ERR" "its size does not match its header" "the truncation is named"
restored_equal "the restore is still right" "$T/snap3.json" "$T/R3b"

section "index objects rewritten or removed make the file stale"
IX=$(ls "$COFFER_REPO/index" | head -1)
cp -p "$COFFER_REPO/index/$IX" "$T/ix.orig"
expect_ok "sets" cf -v sets -p "$POLICY"
# An index object replaced by another one's content under its key.
OTHER=$(ls "$COFFER_REPO/index" | tail -1)
if [ "$OTHER" != "$IX" ]; then
    cp "$COFFER_REPO/index/$OTHER" "$COFFER_REPO/index/$IX"
    run cf -v sets -p "$POLICY"
    assert_contains "$ERR" "holds in another version; rebuilding it" "a replaced index object is noticed"
    cp -p "$T/ix.orig" "$COFFER_REPO/index/$IX"
fi
expect_ok "forget set 1" cf forget -p "$POLICY" "$SET1"
expect_ok "prune" cf -v prune -p "$POLICY" --max-unused 0
expect_ok "sets after prune" cf -v sets -p "$POLICY"
assert_contains "$ERR" "no longer lists; rebuilding it" "index objects removed by prune make the file stale"
expect_ok "check after prune (reads the store, not the cache)" cf -v check -p "$POLICY"
assert_not_contains "$ERR" "from the sorted index" "check does not use the cached sorted file"
expect_ok "restore set 3 after prune" cf restore -p "$POLICY" --set "$SET3" --to "$T/R3c" --no-validate
restored_equal "restore after prune" "$T/snap3.json" "$T/R3c"
expect_ok "check --read-data after prune" cf check -p "$POLICY" --read-data

section "without a cache directory, and with the index in memory"
N0=$(find "$COFFER_CACHE_DIR" -name index.sorted | wc -l)
COFFER_CACHE_DIR=none expect_ok "restore without a cache" \
    cf -v restore -p "$POLICY" --set "$SET3" --to "$T/R3d" --no-validate
assert_match "$ERR" "index: [0-9]+ entries sorted on disk" "the index is sorted into a temporary file"
restored_equal "restore without a cache" "$T/snap3.json" "$T/R3d"
assert_eq "$N0" "$(find "$COFFER_CACHE_DIR" -name index.sorted | wc -l)" "no sorted file is kept"
rm -f "$SORTED"
COFFER_INDEX_MEMORY_ENTRIES=1000000 expect_ok "restore with the index in memory" \
    cf -v restore -p "$POLICY" --set "$SET3" --to "$T/R3e" --no-validate
assert_not_contains "$ERR" "sorted" "below the threshold nothing is sorted on disk"
assert_absent "$SORTED" "and no sorted file is written"
restored_equal "restore with the index in memory" "$T/snap3.json" "$T/R3e"

finish
