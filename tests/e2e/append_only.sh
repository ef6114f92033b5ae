#!/usr/bin/env bash
# Append-only local repository: forget and prune write tombstones and
# never remove or rewrite a file (every byte of the repository stays);
# the forgotten set is gone for every command; only
# `prune --apply-tombstones` removes, after which the kept set restores
# byte-identical and check is clean.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env
P=$T/append-only.yaml
make_policy "$P" 's|^\(    location: .*\)$|\1\n    append_only: true|'

# repo_state: every file of the repository but locks, with its checksum
repo_state() {
    (cd "$COFFER_REPO" && find . -type f ! -path './locks/*' ! -path './deleted/*' -print0 | sort -z | xargs -0 sha256sum) | sort
}

section "two sets"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 12 --seed 17
expect_ok "init" cf init -p "$P" || die "init"
expect_ok "backup 1" cf backup -p "$P" --json || die "backup 1"
SET1=$(json_get "$OUT" 'j["set"]')
rm -rf "$ASTERDRIVE_ROOT/data/objects"/[0-3]*
printf '# changed\n' >>"$ASTERDRIVE_ROOT/data/config.toml"
expect_ok "backup 2" cf backup -p "$P" --json || die "backup 2"
SET2=$(json_get "$OUT" 'j["set"]')
snapshot "$ASTERDRIVE_ROOT" "$T/snap2.json"
repo_state >"$T/before"

section "forget and prune leave every file in place"
expect_ok "forget set 1" cf forget -p "$P" "$SET1"
assert_exists "$COFFER_REPO/deleted/sets/$SET1" "forget wrote a tombstone"
assert_exists "$COFFER_REPO/sets/$SET1" "the manifest is still there"
expect_ok "sets" cf sets -p "$P" --json
assert_eq "[\"$SET2\"]" "$(json_get "$OUT" '[s["id"] for s in j]')" "only set 2 is listed"
expect_rc 1 "set 1 cannot be restored" cf restore -p "$P" --set "$SET1" --to "$T/gone"
expect_ok "prune" cf prune -p "$P" --json --max-unused 0
assert_gt "$(find "$COFFER_REPO/deleted" -type f | wc -l)" 1 "prune wrote tombstones too"
repo_state >"$T/after"
GONE=$(comm -23 "$T/before" "$T/after")
if [ -z "$GONE" ]; then pass "no file was removed or rewritten"; else fail "files removed or changed"; printf '%s\n' "$GONE" | head | show; fi
expect_ok "check after prune (tombstoned objects hidden)" cf check -p "$P"
expect_ok "restore set 2" cf restore -p "$P" --set "$SET2" --to "$T/out-a"
snapshot "$T/out-a" "$T/snap-a.json"
compare "set 2 byte-identical" "$T/snap2.json" "$T/snap-a.json" "${RESTORE_EXCLUDES[@]}"

section "bad flags"
expect_rc 2 "--apply-tombstones on a target that is not append-only" cf prune -p "$POLICY" --apply-tombstones
assert_contains "$ERR" "not append-only" "the error says why"
expect_rc 2 "--apply-tombstones with --dry-run" cf prune -p "$P" --dry-run --apply-tombstones

section "prune --apply-tombstones removes for real"
N0=$(find "$COFFER_REPO" -type f ! -path '*/locks/*' | wc -l)
expect_ok "prune --apply-tombstones" cf prune -p "$P" --apply-tombstones --json
assert_gt "$(json_get "$OUT" 'j["tombstones_applied"]')" 1 "tombstones applied"
assert_absent "$COFFER_REPO/sets/$SET1" "set 1's manifest is gone"
assert_eq 0 "$(find "$COFFER_REPO/deleted" -type f | wc -l)" "no tombstone left"
assert_lt "$(find "$COFFER_REPO" -type f ! -path '*/locks/*' | wc -l)" "$N0" "files were removed"
expect_ok "check" cf check -p "$P"
expect_ok "restore set 2" cf restore -p "$P" --set "$SET2" --to "$T/out-b"
snapshot "$T/out-b" "$T/snap-b.json"
compare "set 2 byte-identical after the tombstones were applied" "$T/snap2.json" "$T/snap-b.json" "${RESTORE_EXCLUDES[@]}"
finish
