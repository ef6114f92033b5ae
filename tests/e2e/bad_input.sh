#!/usr/bin/env bash
# Bad input and damaged repositories: every failure must be reported
# clearly (what, where), with the documented exit status, and must not leave
# a set (or a file that looks complete) behind.
#   policy: malformed YAML, unknown keys, unknown driver, plugin with a wrong ABI
#   backup: missing required path, unreadable file (left out, exit 3), FIFO, disk full
#   repository: corrupted pack, missing pack
#   restore: non-empty target, unknown set, failing validate command
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 12 --seed 41
snapshot "$ASTERDRIVE_ROOT" "$T/snap-live.json"

# fresh_repo NAME: point COFFER_REPO at a new repository $T/NAME
fresh_repo() {
    export COFFER_REPO=$T/$1
    run cf init -p "$POLICY"
    [ "$RC" -eq 0 ] || die "init $COFFER_REPO failed: $ERR"
}

# ---------------------------------------------------------------- policies
section "malformed YAML"
cat >"$T/bad.yaml" <<'EOF'
version: 1
name: broken
root: /tmp
targets:
  - name: primary
    location: /tmp/nowhere
   components: [unclosed
EOF
expect_rc 2 "policy check rejects malformed YAML" cf policy check "$T/bad.yaml"
assert_error_line
assert_match "$ERR" 'bad\.yaml:[0-9]+:[0-9]+' "error names file:line:col"
expect_rc 2 "backup with a malformed policy is a policy error (exit 2)" cf backup -p "$T/bad.yaml"
assert_match "$ERR" 'bad\.yaml:[0-9]+:[0-9]+' "backup error names file:line:col"

section "unknown keys"
make_policy "$T/unknown-top.yaml" 's/^name: asterdrive$/name: asterdrive\ncompresion: zstd/'
line=$(grep -n '^compresion:' "$T/unknown-top.yaml" | cut -d: -f1)
expect_rc 2 "unknown top-level key rejected" cf policy check "$T/unknown-top.yaml"
assert_error_line
assert_contains "$ERR" "compresion" "error names the unknown key"
assert_match "$ERR" "unknown-top\.yaml:$line:[0-9]+" "error names the key's line ($line)"
assert_imatch "$ERR" 'valid keys?:.*components' "error lists the valid keys"
make_policy "$T/unknown-comp.yaml" 's/^    paths: \[data\/config.toml\]$/    pathz: [data\/config.toml]/'
expect_rc 2 "unknown component key rejected" cf policy check "$T/unknown-comp.yaml"
assert_contains "$ERR" "pathz" "error names 'pathz'"
assert_imatch "$ERR" 'valid keys?:.*paths' "error lists valid component keys (paths)"
make_policy "$T/unknown-opt.yaml" 's/^    path: data\/asterdrive.db$/    path: data\/asterdrive.db\n    bussy_timeout: 5/'
expect_rc 2 "unknown driver option rejected" cf policy check "$T/unknown-opt.yaml"
assert_contains "$ERR" "bussy_timeout" "error names the unknown driver option"
assert_contains "$ERR" "busy_timeout" "error lists the driver's options"

section "unknown driver"
make_policy "$T/nosuch.yaml" 's/^    driver: sqlite$/    driver: nosuch/'
expect_rc 2 "policy with driver: nosuch rejected" cf policy check "$T/nosuch.yaml"
assert_error_line
assert_contains "$ERR" "nosuch" "error names the missing driver"
assert_contains "$ERR" "sqlite" "error lists the available drivers"
expect_rc 2 "backup with driver: nosuch is a policy error" cf backup -p "$T/nosuch.yaml"

section "plugin with a wrong ABI"
BAD_ABI=""
for f in "$COFFER_PLUGIN_BUILD_DIR/test_bad_abi.so" "$COFFER_BUILD/test-plugins/test_bad_abi.so"; do
    [ -f "$f" ] && { BAD_ABI=$f; break; }
done
if [ -z "$BAD_ABI" ]; then
    skip "test_bad_abi.so not built (looked in $COFFER_PLUGIN_BUILD_DIR and $COFFER_BUILD/test-plugins)"
else
    mkdir -p "$T/badplug"
    cp "$BAD_ABI" "$T/badplug/"
    run cf --plugin-dir "$T/badplug" plugins
    if [ "$RC" -lt 128 ]; then pass "plugins with a bad-ABI driver does not crash (exit $RC)"; else fail "plugins crashed ($RC)"; fi
    assert_contains "$OUT$ERR" "test_bad_abi.so" "the bad plugin file is named"
    assert_imatch "$OUT$ERR" 'abi.*99|99.*abi' "the ABI mismatch (major 99) is explained"
    assert_match "$OUT" '^sqlite +database' "the good drivers are still listed"
    expect_ok "a policy still loads with the bad plugin present" cf --plugin-dir "$T/badplug" policy check "$POLICY"
fi

# ------------------------------------------------------------------ backups
section "missing required path"
fresh_repo repo-req
mv "$ASTERDRIVE_ROOT/data/config.toml" "$T/config.toml.saved"
expect_rc 1 "backup without data/config.toml fails" cf backup -p "$POLICY"
assert_error_line
assert_contains "$ERR" "data/config.toml" "error names data/config.toml"
assert_eq 0 "$(count_sets "$COFFER_REPO")" "no set written"
mv "$T/config.toml.saved" "$ASTERDRIVE_ROOT/data/config.toml"

section "unreadable file"
fresh_repo repo-unreadable
victim=$(find "$ASTERDRIVE_ROOT/data/uploads" -type f -size +2k -path '*/[0-9a-f][0-9a-f]/*' | sort | head -1)
victim_rel=${victim#"$ASTERDRIVE_ROOT"/}
if [ "$(id -u)" -ne 0 ]; then
    chmod 000 "$victim"
    expect_rc 3 "backup with an unreadable blob keeps the rest and exits 3" cf backup -p "$POLICY"
    chmod 640 "$victim"
elif command -v setpriv >/dev/null && setpriv --reuid=nobody --regid=nogroup --clear-groups test -x "$COFFER"; then
    # root reads everything: run coffer as nobody on a copy owned by nobody
    U=$T/as-nobody
    mkdir -p "$U"
    cp -a "$ASTERDRIVE_ROOT" "$U/live"
    chown -R nobody:nogroup "$U"
    chmod 000 "$U/live/$victim_rel"
    ASTERDRIVE_ROOT=$U/live COFFER_REPO=$U/repo \
        run setpriv --reuid=nobody --regid=nogroup --clear-groups "$COFFER" --no-progress init -p "$POLICY"
    [ "$RC" -eq 0 ] || fail "init as nobody: $ERR"
    ASTERDRIVE_ROOT=$U/live COFFER_REPO=$U/repo \
        expect_rc 3 "backup (as nobody) with an unreadable blob keeps the rest and exits 3" \
        setpriv --reuid=nobody --regid=nogroup --clear-groups "$COFFER" --no-progress backup -p "$POLICY"
    export COFFER_REPO=$U/repo
else
    skip "unreadable file: running as root without setpriv/nobody access to $COFFER"
    RC=skip
fi
if [ "$RC" != skip ]; then
    assert_error_line
    assert_contains "$ERR" "$victim_rel" "error names the unreadable file"
    assert_imatch "$ERR" 'permission denied' "error gives the reason"
    assert_eq 1 "$(count_sets "$COFFER_REPO")" "one (incomplete) set written"
    assert_contains "$ERR" "is incomplete" "the set is said to be incomplete"
fi

section "FIFO in the data directory"
fresh_repo repo-fifo
mkfifo "$ASTERDRIVE_ROOT/data/events.pipe"
expect_ok "backup with a FIFO succeeds (and does not hang)" timeout 120 "$COFFER" --no-progress backup -p "$POLICY"
FSET=$(last_line "$OUT")
assert_contains "$ERR" "data/events.pipe" "a warning names the FIFO"
assert_imatch "$ERR" 'skip' "the warning says it is skipped"
expect_ok "restore of the set with a skipped FIFO" cf restore -p "$POLICY" --set "$FSET" --to "$T/R-fifo"
assert_absent "$T/R-fifo/data/events.pipe" "the FIFO is not restored"
rm -f "$ASTERDRIVE_ROOT/data/events.pipe"

# --------------------------------------------------------------- repository
section "corrupted pack"
fresh_repo repo-corrupt
expect_ok "backup" cf backup -p "$POLICY" || die "backup failed"
CSET=$(last_line "$OUT")
expect_ok "verify --read-data passes before the damage" cf verify -p "$POLICY" --set "$CSET" --read-data
pack=$(find "$COFFER_REPO/data" -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2)
packid=$(basename "$pack")
"$PY" - "$pack" <<'EOF'
import os, sys
p = sys.argv[1]
n = os.path.getsize(p)
with open(p, "r+b") as f:
    f.seek(n // 2)
    b = f.read(1)
    f.seek(n // 2)
    f.write(bytes([b[0] ^ 0x5A]))
print("flipped byte %d of %s (%d bytes)" % (n // 2, p, n))
EOF
expect_rc 3 "verify --read-data finds the corruption" cf verify -p "$POLICY" --set "$CSET" --read-data
V="$OUT
$ERR"
assert_contains "$V" "$CSET" "the problem names the set"
assert_match "$V" '[0-9a-f]{64}' "the problem names a chunk id"
assert_contains "$V" "$packid" "the problem names the pack"
run cf verify -p "$POLICY" --set "$CSET" --read-data --json
VJ=$OUT
PATHS=$(json_get "$VJ" '"\n".join(sorted({p.get("path","") for p in j["problems"] if p.get("path")}))')
if [ -n "$PATHS" ]; then pass "verify --json problems name paths: $(printf "%s " $PATHS | cut -c1-200)"; else
    fail "verify --json problems name no path:"; printf '%s\n' "$VJ" | show; fi
for p in $PATHS; do assert_contains "$V" "$p" "text output names $p"; done
ASTERDRIVE_DOCTOR=true expect_fail_desc "restore of the damaged set fails" \
    cf restore -p "$POLICY" --set "$CSET" --to "$T/R-corrupt"
assert_error_line
for p in $PATHS; do
    ref=$("$PY" -c 'import json,sys; e=json.load(open(sys.argv[1]))["entries"].get(sys.argv[2]); print(e["sha256"] if e and e["type"]=="file" else "")' "$T/snap-live.json" "$p")
    if [ -z "$ref" ]; then note "$p is not a plain file of the deployment (database dump?)"; fi
    if [ -e "$T/R-corrupt/$p" ]; then
        fail "damaged file $p was left at its final path in the restore"
    else
        pass "damaged file $p is not left looking complete"
    fi
done

section "missing pack"
fresh_repo repo-missing
expect_ok "backup" cf backup -p "$POLICY" || die "backup failed"
MSET=$(last_line "$OUT")
pack=$(find "$COFFER_REPO/data" -type f | sort | head -1)
packid=$(basename "$pack")
rm -f "$pack"
expect_rc 3 "verify (without --read-data) finds the missing pack" cf verify -p "$POLICY" --set "$MSET"
V="$OUT
$ERR"
assert_contains "$V" "$packid" "the problem names the missing pack"
assert_contains "$V" "$MSET" "the problem names the set"
ASTERDRIVE_DOCTOR=true expect_fail_desc "restore with a missing pack fails" \
    cf restore -p "$POLICY" --set "$MSET" --to "$T/R-missing"
assert_error_line

# ------------------------------------------------------------------ restore
section "restore into a non-empty directory"
fresh_repo repo-restore
expect_ok "backup" cf backup -p "$POLICY" || die "backup failed"
RSET=$(last_line "$OUT")
mkdir -p "$T/nonempty"
echo keep >"$T/nonempty/keep.txt"
expect_rc 1 "restore into a non-empty directory is refused" cf restore -p "$POLICY" --set "$RSET" --to "$T/nonempty"
assert_error_line
assert_contains "$ERR" "$T/nonempty" "error names the directory"
assert_absent "$T/nonempty/data" "nothing was restored"
expect_ok "restore --force into the non-empty directory" cf restore -p "$POLICY" --set "$RSET" --to "$T/nonempty" --force
assert_exists "$T/nonempty/data/config.toml" "--force restored the set"
assert_eq keep "$(cat "$T/nonempty/keep.txt" 2>/dev/null)" "unrelated file left alone"

section "unknown set"
expect_fail_desc "restore of an unknown set fails" cf restore -p "$POLICY" --set 20000101T000000Z-deadbeef --to "$T/R-unknown"
assert_error_line
assert_contains "$ERR" "20000101T000000Z-deadbeef" "error names the set"
assert_absent "$T/R-unknown/data" "nothing restored"

section "failing validate command"
ASTERDRIVE_DOCTOR="echo doctor says no >&2; exit 7" \
    expect_rc 3 "restore whose validate command fails exits 3" cf restore -p "$POLICY" --set "$RSET" --to "$T/R-validate"
assert_contains "$OUT$ERR" "doctor" "the failing validate command is named"
assert_match "$OUT$ERR" '7' "its exit status is reported"
assert_exists "$T/R-validate/data/config.toml" "the files are restored nevertheless"

# ---------------------------------------------------------------- disk full
section "disk full"
M=$T/small
mkdir -p "$M"
if ! mount -t tmpfs -o size=64m tmpfs "$M" 2>/dev/null; then
    skip "disk full: cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)"
else
    mount_register "$M"
    export COFFER_REPO=$M/repo
    run cf init -p "$POLICY"
    [ "$RC" -eq 0 ] || die "init on tmpfs failed: $ERR"
    # leave ~3 MiB free: far less than the ~12 MiB deployment needs (64 MiB in
    # all, so that the retry has room for packs preallocated at full size)
    free_kb=$(df -k --output=avail "$M" | tail -1)
    dd if=/dev/zero of="$M/filler" bs=1k count=$((free_kb - 3072)) status=none 2>/dev/null
    note "free on $M: $(df -k --output=avail "$M" | tail -1) KiB"
    expect_rc 1 "backup onto a full disk fails" cf backup -p "$POLICY"
    assert_error_line
    assert_imatch "$ERR" 'no space|ENOSPC' "error says no space"
    assert_eq 0 "$(count_sets "$COFFER_REPO")" "no set written"
    note "repository after the failure: $(du -sk "$COFFER_REPO" | cut -f1) KiB, $(find "$COFFER_REPO/data" -type f 2>/dev/null | wc -l) pack(s)"
    rm -f "$M/filler"
    expect_ok "backup succeeds once space is freed" cf backup -p "$POLICY"
    DSET=$(last_line "$OUT")
    assert_eq 1 "$(count_sets "$COFFER_REPO")" "one set written"
    expect_ok "verify --read-data" cf verify -p "$POLICY" --set "$DSET" --read-data
    expect_ok "restore" cf restore -p "$POLICY" --set "$DSET" --to "$T/R-full"
    snapshot "$T/R-full" "$T/snap-R-full.json"
    compare "restore after disk-full equals the deployment" "$T/snap-live.json" "$T/snap-R-full.json" \
        "${RESTORE_EXCLUDES[@]}" --ignore-mtime-of data
fi

# Crafted sets with ".." paths, links placed in the way, duplicates and
# the like: tests/e2e/hostile_repo.sh.

section "a driver's own option check names the key once"
make_policy "$T/dirmode.yaml" 's|^    location: \(.*\)$|    location: \1\n    dir_mode: "0999"|'
grep -q 'dir_mode: "0999"' "$T/dirmode.yaml" || die "could not edit the policy"
expect_rc 2 "policy check runs the storage driver's validate" cf policy check "$T/dirmode.yaml"
assert_match "$ERR" 'dirmode\.yaml:[0-9]+:[0-9]+: targets\[0\]\.dir_mode: storage driver' "file:line:col, key, driver"
assert_eq "$(grep -o dir_mode <<<"$ERR" | wc -l)" 1 "the key is named once"

finish
