#!/usr/bin/env bash
# coffer ls, find, diff, stats on two sets of a deployment: a file added,
# one removed, one modified, one chmod'ed, database rows added. The output
# names exactly those; nothing reads a pack (the packs are made unreadable
# first); bad input gets named errors.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env

section "two sets"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 2 --seed 21
D=$ASTERDRIVE_ROOT/data
echo one >"$D/logs/browse-keep.log"
echo gone >"$D/logs/browse-gone.log"
echo before >"$D/logs/browse-mod.log"
chmod 644 "$D/logs/browse-keep.log"
expect_ok "init" cf init -p "$POLICY" --encryption none || die "init failed"
expect_ok "backup 1" cf backup -p "$POLICY" --json || die "backup failed"
S1=$(json_get "$OUT" 'j["set"]')
rm "$D/logs/browse-gone.log"
echo after-change >"$D/logs/browse-mod.log"
echo new >"$D/logs/browse-new.log"
chmod 600 "$D/logs/browse-keep.log"
sqlite3 "$D/asterdrive.db" "INSERT INTO users (username, email, password_hash, role, status, created_at, updated_at) SELECT username || '-b', 'b' || email, password_hash, role, status, created_at, updated_at FROM users LIMIT 2" 2>/dev/null ||
    sqlite3 "$D/asterdrive.db" "INSERT INTO users SELECT * FROM users LIMIT 0"
USERS1=$(json_get "$(cf sets -p "$POLICY" --json)" '[m for s in j["sets"] for c in s.get("databases", {}).values() for m in [c]][0]' 2>/dev/null)
expect_ok "backup 2" cf backup -p "$POLICY" --json || die "backup failed"
S2=$(json_get "$OUT" 'j["set"]')
# nothing below may read a pack: make them unreadable to coffer's reads
find "$COFFER_REPO/data" -type f -exec chmod 000 {} + 2>/dev/null
[ "$(id -u)" = 0 ] && note "running as root: pack permissions do not stop reads; the bytes-read figure of -v shows none instead"

section "ls"
expect_ok "ls components" cf ls -p "$POLICY"
assert_eq "config/ data/ database/" "$(printf '%s\n' "$OUT" | sort | tr '\n' ' ' | sed 's/ $//')" "the set's components"
expect_ok "ls data/data/logs" cf ls -p "$POLICY" data/data/logs
assert_contains "$OUT" "browse-new.log" "latest set lists the new file"
assert_not_contains "$OUT" "browse-gone.log" "latest set lacks the removed file"
assert_contains "$OUT" "archive/" "a directory ends in /"
expect_ok "ls --set S1" cf ls -p "$POLICY" --set "$S1" data/data/logs
assert_contains "$OUT" "browse-gone.log" "set 1 lists the removed file"
expect_ok "ls --long" cf ls -p "$POLICY" data/data/logs --long
assert_match "$(printf '%s\n' "$OUT" | grep browse-keep.log)" '^-rw------- [^ ]+/[^ ]+ +4 [0-9-]+ [0-9:]+  browse-keep.log$' "long line: mode, owner, size, mtime, name"
expect_ok "ls --recursive --json" cf ls -p "$POLICY" data/data/logs --recursive --json
assert_eq 1 "$(json_get "$OUT" 'sum(1 for e in j["entries"] if e["path"] == "data/logs/archive/2024-06.log")')" "recursive JSON holds a nested file"
assert_eq "$(find "$D/logs" -mindepth 1 | wc -l)" "$(json_get "$OUT" 'len(j["entries"])')" "recursive lists every entry below (as on disk)"
expect_ok "ls of a file" cf ls -p "$POLICY" config/data/config.toml
assert_eq "config/data/config.toml" "$OUT" "a file lists itself"
expect_rc 1 "ls of a path the set lacks" cf ls -p "$POLICY" data/data/nosuch
assert_contains "$ERR" "holds no data/data/nosuch"
expect_rc 1 "ls of an unknown component" cf ls -p "$POLICY" nosuch/x
assert_contains "$ERR" "no component 'nosuch'"
expect_rc 1 "ls with .." cf ls -p "$POLICY" data/../etc
assert_contains "$ERR" ".."
expect_rc 2 "ls with two paths" cf ls -p "$POLICY" a b

section "find"
expect_ok "find a base name in all sets" cf find -p "$POLICY" 'browse-*.log'
assert_eq 2 "$(printf '%s\n' "$OUT" | grep -c 'browse-keep.log$')" "browse-keep.log in both sets"
assert_match "$(printf '%s\n' "$OUT" | grep "^$S2 .*browse-mod.log$")" " changed " "modified file: changed in set 2"
assert_match "$(printf '%s\n' "$OUT" | grep "^$S2 .*browse-keep.log$")" " unchanged " "chmod only: content unchanged"
assert_match "$(printf '%s\n' "$OUT" | grep "^$S2 .*browse-new.log$")" " new " "new file: new"
assert_eq 0 "$(printf '%s\n' "$OUT" | grep -c "^$S2 .*browse-gone.log")" "removed file not in set 2"
expect_ok "find --set latest --json with a path pattern" cf find -p "$POLICY" --set latest --json 'data/data/logs/browse-*'
assert_eq 3 "$(json_get "$OUT" 'len(j["matches"])')" "three matches in the latest set"
expect_rc 1 "a pattern matching nothing" cf find -p "$POLICY" 'browse-*.log' 'zzz-nothing*'
assert_contains "$ERR" "'zzz-nothing*'" "the error names the pattern"
assert_not_contains "$ERR" "browse-*" "and only that one"
expect_rc 2 "find without a pattern" cf find -p "$POLICY"

section "diff"
expect_ok "diff S1 S2" cf diff -p "$POLICY" "$S1" "$S2"
assert_contains "$OUT" "+ data/data/logs/browse-new.log" "added"
assert_contains "$OUT" "- data/data/logs/browse-gone.log" "removed"
assert_contains "$OUT" "M data/data/logs/browse-mod.log" "modified"
assert_contains "$OUT" "m data/data/logs/browse-keep.log  (mode)" "metadata only, naming the mode"
assert_contains "$OUT" "M database/asterdrive.db" "the database dump changed"
expect_ok "diff --json below a path" cf diff -p "$POLICY" --json "$S1" "$S2" data/data/logs
assert_eq "1 1 1 2" "$(json_get "$OUT" '" ".join(str(j["counts"][k]) for k in ("added","removed","modified","metadata"))')" "counts below data/data/logs: the four changes and the directory's own mtime"
assert_eq true "$(json_get "$OUT" 'str(j["same_policy"]).lower()')" "same policy"
expect_ok "diff S2 S1 (reverse)" cf diff -p "$POLICY" --json "$S2" "$S1" data/data/logs
assert_eq "data/logs/browse-gone.log" "$(json_get "$OUT" '[c["path"] for c in j["changes"] if c["change"]=="added"][0]')" "reverse: the removed file is added"
expect_rc 1 "diff below a path neither set holds" cf diff -p "$POLICY" "$S1" "$S2" data/nosuch
assert_contains "$ERR" "holds data/nosuch"
expect_rc 1 "diff with an unknown set" cf diff -p "$POLICY" "$S1" 19990101T000000Z-00000000
expect_rc 2 "diff with one set" cf diff -p "$POLICY" "$S1"

section "diff across policies"
P2=$T/other.yaml
sed 's/^name: .*/name: other/' "$POLICY" >"$P2"
expect_ok "backup of another policy" cf backup -p "$P2" --json
S3=$(json_get "$OUT" 'j["set"]')
expect_ok "diff of sets of two policies" cf diff -p "$POLICY" --json "$S2" "$S3"
assert_eq false "$(json_get "$OUT" 'str(j["same_policy"]).lower()')" "says the policies differ"
assert_eq other "$(json_get "$OUT" 'j["to_policy"]')" "names the other policy"
expect_ok "the same in text" cf diff -p "$POLICY" "$S2" "$S3"
assert_contains "$OUT" "of policy 'other'" "text says so too"

section "stats"
expect_ok "stats --json" cf stats -p "$POLICY" --json
assert_eq 2 "$(json_get "$OUT" 'len(j["sets"])')" "the policy's two sets"
assert_eq 3 "$(json_get "$OUT" 'j["repository"]["sets"]')" "three sets in the repository"
assert_eq 0 "$(json_get "$OUT" 'j["sets"][1]["components"]["config"]["added_bytes"]')" "unchanged config adds nothing in set 2"
assert_gt "$(json_get "$OUT" 'j["sets"][0]["added_bytes"]')" "$(json_get "$OUT" 'j["sets"][1]["added_bytes"]')" "set 1 added more than set 2"
assert_eq "$(json_get "$OUT" 'j["repository"]["unique_bytes"]')" "$(json_get "$OUT" 'j["sets"][0]["added_bytes"] + j["sets"][1]["added_bytes"]')" "what the sets added sums to the distinct bytes (the third set adds none)"
assert_eq "$(find "$COFFER_REPO/data" -type f | wc -l)" "$(json_get "$OUT" 'j["repository"]["packs"]')" "pack count equals the pack files"
expect_ok "stats --set" cf stats -p "$POLICY" --set "$S1"
assert_contains "$OUT" "$S1" "names the set"
assert_not_contains "$OUT" "$S2" "and no other"

section "no pack read"
find "$COFFER_REPO/data" -type f -exec chmod 600 {} +
mv "$COFFER_REPO/data" "$COFFER_REPO/data.away"
mkdir "$COFFER_REPO/data"
expect_ok "ls without packs" cf ls -p "$POLICY" data/data/logs --recursive
expect_ok "find without packs" cf find -p "$POLICY" 'browse-*'
expect_ok "diff without packs" cf diff -p "$POLICY" "$S1" "$S2"
rmdir "$COFFER_REPO/data"
mv "$COFFER_REPO/data.away" "$COFFER_REPO/data"
finish
