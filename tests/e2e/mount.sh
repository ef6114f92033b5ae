#!/usr/bin/env bash
# coffer mount on a real FUSE mount: two backups of a deployment with
# changes between; each set's tree under the mount equals the source as it
# was at that backup (bytes, modes, owners, sizes, mtimes, symlink
# targets, hard links), latest points to the newest set, the database
# stream is readable, writes fail with EROFS, a read in the middle of a
# large file returns exactly that region and fetches only a few chunks.
# Refuses a missing or non-empty mount point; SIGINT, SIGTERM and
# fusermount3 -u unmount and end coffer with exit 0, lock released.
. "$(dirname "$0")/lib.sh"
require_coffer
if [ ! -e /dev/fuse ] || ! command -v fusermount3 >/dev/null; then
    skip "mount: /dev/fuse or fusermount3 is missing (apt-get install fuse3)"
    finish
fi
setup_env
MNT=$T/mnt
mkdir -p "$MNT"

# mount_bg [ARGS...]: coffer mount in the background, waits until mounted
mount_bg() {
    "$COFFER" --no-progress mount -p "$POLICY" "$@" "$MNT" 2>"$T/mount.err" &
    MPID=$!
    bg_register "$MPID"
    mount_register "$MNT"
    wait_for "the mount" 20 mountpoint -q "$MNT" || { show <"$T/mount.err"; die "not mounted"; }
}
# unmounted_by HOW: HOW (a command) ends the mount; coffer exits 0, nothing left
unmounted_by() {
    local how=$1
    eval "$how"
    wait "$MPID"
    local rc=$?
    assert_eq 0 "$rc" "$how: coffer mount exits 0"
    [ "$rc" = 0 ] || show "" 60 <"$T/mount.err"
    if grep -q " $MNT " /proc/mounts; then fail "$how: $MNT still mounted"; else pass "$how: no mount left in /proc/mounts"; fi
    assert_eq 0 "$(find "$COFFER_REPO/locks" -type f 2>/dev/null | wc -l)" "$how: the repository lock is released"
    assert_eq "" "$(ls -A "$MNT")" "$how: the mount point is empty again"
}
# tree_meta DIR: one line per path: type, mode, uid, gid, size (files), mtime, link target
tree_meta() {
    "$PY" - "$1" <<'PY'
import os, stat, sys
root = sys.argv[1]
for dp, dns, fns in os.walk(root):
    for n in sorted(dns + fns):
        p = os.path.join(dp, n)
        st = os.lstat(p)
        rel = os.path.relpath(p, root)
        if stat.S_ISLNK(st.st_mode):
            print(rel, "l", st.st_uid, st.st_gid, os.readlink(p))
        elif stat.S_ISDIR(st.st_mode):
            print(rel, "d", oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid, st.st_mtime_ns)
        else:
            print(rel, "f", oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns)
PY
}
EXCL=(-x .tmp -x .uploads -x 'asterdrive.db*' -x config.toml)
# copy the data tree as it is now (no database, no staging dirs; cp -a keeps
# nanosecond mtimes)
keep_tree() {
    mkdir -p "$2"
    cp -a "$1/data" "$2/" || die "copy of $1"
    rm -rf "$2/data/.tmp" "$2/data/.uploads" "$2"/data/asterdrive.db* "$2/data/config.toml"
}

section "two backups"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 20 --seed 31
expect_ok "init" cf init -p "$POLICY" || die "init"
expect_ok "backup #1" cf backup -p "$POLICY" --json || die "backup #1"
SET1=$(json_get "$OUT" 'j["set"]')
keep_tree "$ASTERDRIVE_ROOT" "$T/at1"
cp "$ASTERDRIVE_ROOT/data/config.toml" "$T/at1-config.toml"
mutate_deployment "$ASTERDRIVE_ROOT" --percent 5 --seed 32
# a large file for ranged reads
head -c $((24 << 20)) /dev/urandom >"$ASTERDRIVE_ROOT/data/big.bin"
ln -sfn ../big.bin "$ASTERDRIVE_ROOT/data/logs/big-link"
sleep 1
expect_ok "backup #2" cf backup -p "$POLICY" --json || die "backup #2"
SET2=$(json_get "$OUT" 'j["set"]')
keep_tree "$ASTERDRIVE_ROOT" "$T/at2"
assert_ne "$(tree_meta "$T/at1" | md5sum)" "$(tree_meta "$T/at2" | md5sum)" "the data changed between the backups"

section "refused mount points"
expect_rc 1 "a missing mount point" cf mount -p "$POLICY" "$T/nowhere"
assert_contains "$ERR" "$T/nowhere" "the error names the missing mount point"
mkdir -p "$T/full" && touch "$T/full/x"
expect_rc 1 "a non-empty mount point" cf mount -p "$POLICY" "$T/full"
assert_contains "$ERR" "$T/full is not empty" "the error names the non-empty mount point"
expect_rc 2 "no mount point" cf mount -p "$POLICY"
expect_rc 2 "a bad --cache-size" cf mount -p "$POLICY" --cache-size 12X "$MNT"
expect_rc 2 "an option mount does not use" cf mount -p "$POLICY" --set latest "$MNT"
assert_contains "$ERR" "--set does not apply to mount" "the refusal names the option"
run cf mount --help
assert_eq "usage: coffer mount -p POLICY [--target NAME] [--cache-size SIZE] MOUNTPOINT" "$(head -1 <<<"$OUT")" "mount --help starts with its usage line"

section "browse"
mount_bg
assert_eq "latest sets" "$(ls "$MNT" | tr '\n' ' ' | sed 's/ $//')" "the top level holds latest and sets"
assert_eq "$SET1 $SET2" "$(ls "$MNT/sets" | tr '\n' ' ' | sed 's/ $//')" "sets/ lists both sets"
assert_eq "sets/$SET2" "$(readlink "$MNT/latest")" "latest points to the newest set"
assert_eq "config data database" "$(ls "$MNT/latest/" | tr '\n' ' ' | sed 's/ $//')" "a set holds its components"
assert_eq 1 "$(find "$COFFER_REPO/locks" -type f | wc -l)" "a shared lock is held while mounted"
for n in 1 2; do
    eval "S=\$SET$n"
    if diff -r --no-dereference "${EXCL[@]}" "$T/at$n/data" "$MNT/sets/$S/data/data" >"$T/diff$n" 2>&1; then
        pass "set #$n: file contents equal the source at backup #$n (diff -r)"
    else
        fail "set #$n: contents differ"; show <"$T/diff$n"
    fi
    tree_meta "$T/at$n/data" | sort >"$T/meta-src$n"
    tree_meta "$MNT/sets/$S/data/data" | sort >"$T/meta-mnt$n"
    if diff "$T/meta-src$n" "$T/meta-mnt$n" >"$T/mdiff$n"; then
        pass "set #$n: types, modes, owners, sizes, mtimes and symlink targets equal ($(wc -l <"$T/meta-src$n") paths)"
    else
        fail "set #$n: metadata differs"; show <"$T/mdiff$n"
    fi
done
cmp -s "$T/at1-config.toml" "$MNT/sets/$SET1/config/data/config.toml" && pass "config component: config.toml as at backup #1" || fail "config.toml differs"
assert_eq "../big.bin" "$(readlink "$MNT/latest/data/data/logs/big-link")" "a symlink shows its target"
assert_absent "$MNT/sets/$SET1/data/data/big.bin" "the file added later is not in the first set"
HL=$(cd "$T/at2" && find data -type f -links +1 | head -1)
if [ -n "$HL" ]; then
    cmp -s "$T/at2/$HL" "$MNT/latest/data/$HL" && pass "a hard link reads its content ($HL)" || fail "hard link $HL differs"
else
    skip "no hard link in the deployment"
fi

section "database stream"
DB=$MNT/latest/database/asterdrive.db
assert_exists "$DB" "the database component shows its stream"
SZ=$(stat -c %s "$DB")
assert_eq "$SZ" "$(cat "$DB" | wc -c)" "the stream reads its full size ($SZ bytes)"
assert_eq "SQLite format 3" "$(head -c 15 "$DB")" "the stream is a SQLite database"
expect_ok "restore of set #2" cf restore -p "$POLICY" --set "$SET2" --to "$T/out" --no-validate
cmp -s "$DB" "$T/out/data/asterdrive.db" && pass "the stream equals the restored database" || fail "the stream differs from the restored database"

section "read-only"
run sh -c "echo x > '$MNT/latest/data/data/new'"
assert_contains "$ERR" "Read-only file system" "creating a file fails with EROFS"
run sh -c "echo x >> '$MNT/latest/data/data/big.bin'"
assert_contains "$ERR" "Read-only file system" "appending fails with EROFS"
run mkdir "$MNT/latest/x"
assert_contains "$ERR" "Read-only file system" "mkdir fails with EROFS"
run rm -f "$MNT/latest/data/data/big.bin"
assert_contains "$ERR" "Read-only file system" "unlink fails with EROFS"
run touch "$MNT/sets/$SET1/data/data"
assert_contains "$ERR" "Read-only file system" "touch fails with EROFS"
unmounted_by "kill -INT \$MPID"

section "ranged read in a fresh mount"
mount_bg --cache-size 8M
BIG=$MNT/latest/data/data/big.bin
dd if="$ASTERDRIVE_ROOT/data/big.bin" of="$T/want" bs=4096 skip=3001 count=77 2>/dev/null
dd if="$BIG" of="$T/got" bs=4096 skip=3001 count=77 2>/dev/null
cmp -s "$T/want" "$T/got" && pass "dd skip= in the middle returns the same 308 KiB" || fail "ranged read differs"
dd if="$ASTERDRIVE_ROOT/data/big.bin" of="$T/want2" bs=1 skip=$((24 * 1048576 - 5)) count=9 2>/dev/null
dd if="$BIG" of="$T/got2" bs=1 skip=$((24 * 1048576 - 5)) count=9 2>/dev/null
cmp -s "$T/want2" "$T/got2" && pass "a read across the end returns the last 5 bytes" || fail "read at the end differs"
unmounted_by "fusermount3 -u \$MNT"
# chunks fetched: cache misses plus chunks read ahead (from the unmount line)
fetched() { echo $(($(sed -n 's/.*chunk cache: [0-9]* hits, \([0-9]*\) misses; \([0-9]*\) chunks read ahead.*/\1 + \2/p' "$T/mount.err"))); }
MISSES=$(fetched)
note "chunks fetched for the two ranged reads: $MISSES ($(grep -o 'chunk cache: .*' "$T/mount.err"))"

section "SIGTERM, whole-file read, readers at once"
mount_bg
PIDS=()
for k in 0 1 2 3; do
    dd if="$BIG" of="$T/par$k" bs=1M skip=$((k * 6)) count=6 2>/dev/null &
    PIDS+=($!)
done
wait "${PIDS[@]}"
for k in 0 1 2 3; do
    dd if="$ASTERDRIVE_ROOT/data/big.bin" of="$T/pwant$k" bs=1M skip=$((k * 6)) count=6 2>/dev/null
done
same=0
for k in 0 1 2 3; do cmp -s "$T/par$k" "$T/pwant$k" && same=$((same + 1)); done
assert_eq 4 "$same" "four readers at once each get their 6 MiB region"
cmp -s "$ASTERDRIVE_ROOT/data/big.bin" "$BIG" && pass "the whole 24 MiB file reads back equal" || fail "big.bin differs"
unmounted_by "kill -TERM \$MPID"
ALL=$(fetched)
AHEAD=$(sed -n 's/.* \([0-9]*\) chunks read ahead.*/\1/p' "$T/mount.err")
READS=$(sed -n 's/.* \([0-9]*\) ranged reads of packs.*/\1/p' "$T/mount.err")
note "chunks fetched for the whole file: $ALL ($(grep -o 'chunk cache: .*' "$T/mount.err"))"
assert_lt "$MISSES" "$ALL" "the ranged reads fetched fewer chunks than the whole file"
assert_gt "$AHEAD" 0 "reading in order, the next chunks were read ahead"
assert_lt "$READS" "$ALL" "read-ahead merges neighbouring chunks into fewer ranged reads"

section "hostile set: names that leave the tree"
export COFFER_REPO=$T/repo2
expect_ok "init (unencrypted, to craft a set)" cf init -p "$POLICY" --encryption none || die "init repo2"
expect_ok "backup" cf backup -p "$POLICY" --json || die "backup repo2"
SETH=$(json_get "$OUT" 'j["set"]')
"$PY" "$TOOLS/craft_set.py" read "$COFFER_REPO" "$SETH" >"$T/m.orig" || die "read manifest"
"$PY" - "$T/m.orig" >"$T/m.new" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
head, body, end = lines[0], lines[1:-1], lines[-1]
cfg = next(e for e in body if e.get("type") == "file" and e["component"] == "config")
bad = [("data", "../escape"), ("data", "data/a//b"), ("data", "/etc/passwd"), ("x/y", "f"),
       ("..", "f"), ("config", "data/config.toml"), ("config", "data/config.toml/inner"),
       ("data", "data/./dot"), ("data", "data/ok-added")]
for comp, path in bad:
    e = dict(cfg); e["component"] = comp; e["path"] = path
    body.append(e)
h = dict(cfg); h["type"] = "hardlink"; h["path"] = "data/hl-out"; h["target"] = "../../etc/passwd"
h.pop("chunks", None); body.append(h)
end["entries"] = len(body)
if "entries" in head:
    head["entries"] = len(body)
for l in [head] + body + [end]:
    print(json.dumps(l, separators=(",", ":")))
PY
"$PY" "$TOOLS/craft_set.py" write "$COFFER_REPO" "$SETH" <"$T/m.new" || die "write manifest"
mount_bg
HS=$MNT/sets/$SETH
if cmp -s "$ASTERDRIVE_ROOT/data/config.toml" "$HS/data/data/ok-added"; then
    pass "a plain added name is shown"
else
    fail "the set did not load:"; show <"$T/mount.err"
fi
assert_eq "config data database" "$(ls "$HS" | tr '\n' ' ' | sed 's/ $//')" "no component named '..' or 'x/y' is shown"
assert_absent "$HS/escape" "../escape is not shown"
assert_absent "$MNT/sets/escape" "../escape does not reach sets/"
assert_absent "$HS/data/data/a" "a//b is not shown"
assert_absent "$HS/data/data/dot" "./dot is not shown"
assert_absent "$HS/data/etc" "/etc/passwd is not shown"
assert_absent "$HS/data/data/hl-out" "a hard link to ../../etc/passwd is not shown"
assert_eq "f" "$(find "$HS/config" -name 'inner' | wc -l | sed 's/^0$/f/')" "a path through a file is not shown"
assert_eq 1 "$(find "$HS/config" -name config.toml | wc -l)" "a duplicate path is shown once"
cmp -s "$ASTERDRIVE_ROOT/data/config.toml" "$HS/config/data/config.toml" && pass "the first of duplicates is kept" || fail "duplicate replaced the first entry"
unmounted_by "umount \$MNT"
assert_match "$(cat "$T/mount.err")" "not shown: .*duplicate path" "the duplicate is named in a warning"
assert_eq 9 "$(grep -c 'not shown' "$T/mount.err")" "every hostile entry is named in a warning"
finish
