#!/usr/bin/env bash
# Repair: check names what repairs each problem (fix lines, JSON "fix"),
# records missing or damaged packs and chunks in state/damaged, and the next
# backup stores those chunks again, so an older set restores again; a clean
# check clears the record.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env

DMG=$COFFER_REPO/state/damaged

# restored_equal DESC DIR: DIR equals the source tree at backup time
restored_equal() {
    snapshot "$2" "$T/snap-$(basename "$2").json"
    compare "$1" "$T/snap0.json" "$T/snap-$(basename "$2").json" "${RESTORE_EXCLUDES[@]}"
}

section "generate, back up (set 1)"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 30 --seed 41
expect_ok "init" cf init -p "$POLICY" || die "init failed"
expect_ok "backup" cf backup -p "$POLICY" --json || die "backup failed"
SET1=$(json_get "$OUT" 'j["set"]')
snapshot "$ASTERDRIVE_ROOT" "$T/snap0.json"
mapfile -t PACKS < <(find "$COFFER_REPO/data" -type f -printf '%s %p\n' | sort -n | awk '{print $2}')
note "${#PACKS[@]} packs"
[ "${#PACKS[@]}" -ge 2 ] || die "need at least 2 packs"
expect_ok "check of the intact repository" cf check -p "$POLICY"
assert_absent "$DMG" "no damage record while the repository is sound"

section "(a) one pack lost"
P=${PACKS[-1]}
PKEY=${P#"$COFFER_REPO"/}
rm -f "$P"
expect_rc 3 "check finds the lost pack" cf check -p "$POLICY"
assert_contains "$ERR" "$PKEY" "check names the pack $PKEY"
assert_contains "$ERR" "fix: coffer check -p $POLICY --rebuild-index, then coffer backup -p $POLICY" \
    "a fix line: rebuild the index, then back up"
assert_contains "$ERR" "--salvage" "the fix line names restore --salvage"
NFIX=$(printf '%s\n' "$ERR" | grep -c '^fix: ')
NPROB=$(printf '%s\n' "$ERR" | grep -c "$PKEY")
assert_lt "$NFIX" 5 "one fix line per kind ($NFIX fix lines for $NPROB lines naming the pack)"
assert_exists "$DMG" "the damage record is written"
assert_eq 600 "$(stat -c %a "$DMG")" "the damage record is 0600"

section "(d) --json: a fix member per problem"
expect_rc 3 "check --json" cf check -p "$POLICY" --json
assert_eq True "$(json_get "$OUT" 'all(isinstance(p.get("fix"), str) and p["fix"].startswith("coffer ") for p in j["problems"])')" \
    "every problem has a fix member"
assert_eq True "$(json_get "$OUT" 'any("--rebuild-index" in p["fix"] for p in j["problems"] if p.get("object") == "'"$PKEY"'")')" \
    "the lost pack's fix rebuilds the index"
assert_eq True "$(json_get "$OUT" 'len(j["fixes"]) >= 1 and len(j["fixes"]) == len(set(j["fixes"]))')" \
    "fixes lists each fix once"

section "(a) rebuild the index, back up again, restore set 1"
expect_rc 3 "check --rebuild-index (set 1 still misses chunks)" cf check -p "$POLICY" --rebuild-index --json
assert_eq 0 "$(json_get "$OUT" 'sum(1 for p in j["problems"] if p.get("object") == "'"$PKEY"'")')" \
    "the rebuilt index no longer names the lost pack"
assert_gt "$(json_get "$OUT" 'sum(1 for p in j["problems"] if p.get("set") == "'"$SET1"'")')" 0 \
    "set 1 is reported as missing chunks"
assert_contains "$(json_get "$OUT" '" ".join(j["fixes"])')" "coffer forget -p $POLICY $SET1" \
    "the set's fix names coffer forget with the set id"
expect_ok "backup (source unchanged)" cf backup -p "$POLICY" --json
assert_gt "$(json_get "$OUT" 'int(j["new_bytes"])')" 0 "the backup stores the lost chunks again"
expect_ok "restore set 1" cf restore -p "$POLICY" --set "$SET1" --to "$T/A"
restored_equal "(a) set 1 restores byte-identical after the new backup" "$T/A"

section "(c) a clean check clears the record"
expect_ok "check" cf check -p "$POLICY"
assert_absent "$DMG" "the damage record is removed"

section "(b) one blob corrupted"
find "$COFFER_REPO/data" -type f -printf '%s %p\n' | sort -n | awk '{print $2}' >"$T/packs2"
P=$(tail -1 "$T/packs2")
PKEY=${P#"$COFFER_REPO"/}
SZ=$(stat -c %s "$P")
cp "$P" "$T/pack.orig"
printf '\xff' | dd of="$P" bs=1 seek=$((SZ / 2)) conv=notrunc status=none
cmp -s "$P" "$T/pack.orig" && printf '\x00' | dd of="$P" bs=1 seek=$((SZ / 2)) conv=notrunc status=none
expect_ok "a check without reading data sees nothing" cf check -p "$POLICY"
expect_rc 3 "check --read-data finds the damaged blob" cf check -p "$POLICY" --read-data --json
assert_eq True "$(json_get "$OUT" 'any(p.get("object") == "'"$PKEY"'" and p.get("chunk") for p in j["problems"])')" \
    "the problem names the pack $PKEY and the chunk"
assert_contains "$ERR" "recorded 0 damaged pack(s) and 1 chunk(s) in state/damaged" "the record lists the chunk"
expect_rc 1 "restore of set 1 fails on the damaged chunk" cf restore -p "$POLICY" --set "$SET1" --to "$T/B0"
expect_rc 3 "check without --read-data reports the recorded chunk" cf check -p "$POLICY"
assert_contains "$ERR" "damaged according to an earlier check" "sets referencing it are reported"
assert_exists "$DMG" "the record stays"
CHUNK=$(json_get "$(cf check -p "$POLICY" --read-data --json 2>/dev/null)" '[p["chunk"] for p in j["problems"] if p.get("object") == "'"$PKEY"'"][0]')
expect_rc 3 "check --rebuild-index (set 1 misses the dropped chunk)" cf check -p "$POLICY" --rebuild-index
assert_contains "$ERR" "rebuild index: dropped chunk $CHUNK in pack $PKEY" "the rebuild drops the damaged blob and names it"
assert_contains "$ERR" "1 damaged blob(s) dropped" "one blob dropped"
assert_contains "$ERR" "chunk $CHUNK: not in the repository index" "the rebuilt index does not list it"
expect_ok "backup (source unchanged)" cf backup -p "$POLICY" --json
assert_gt "$(json_get "$OUT" 'int(j["new_bytes"])')" 0 "the backup stores the damaged chunk again"
expect_ok "restore set 1" cf restore -p "$POLICY" --set "$SET1" --to "$T/B"
restored_equal "(b) set 1 restores byte-identical after the new backup" "$T/B"
expect_ok "check: every set finds the new copy" cf check -p "$POLICY"

finish
