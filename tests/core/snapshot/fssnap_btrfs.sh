#!/usr/bin/env bash
# btrfs snapshots through core/snapshot, on a btrfs file system made on a
# loop device: a snapshot shows the tree as it was, byte for byte, while
# the live tree changes; it never shows up in the live tree; release
# removes it; the sweep removes what dead runs left and nothing else;
# paths off btrfs, on two subvolumes or with a subvolume or a mount
# inside them are refused with a message that names them.
. "$(dirname "$0")/../../e2e/lib.sh"
. "$(dirname "$0")/fssnap.sh"

require_root_loop "btrfs snapshots"
for t in mkfs.btrfs btrfs; do
    command -v "$t" >/dev/null || skip_all "btrfs snapshots: $t not installed (Debian package btrfs-progs)"
done
grep -qw btrfs /proc/filesystems || skip_all "btrfs snapshots: this kernel has no btrfs"

section "a btrfs file system on a loop device"
loop_file 256M || die "cannot make a loop device"
mkfs.btrfs -q "$LOOP" >/dev/null || die "mkfs.btrfs $LOOP failed"
MNT=$T/mnt
mkdir -p "$MNT"
mount_late "$LOOP" "$MNT" || die "cannot mount $LOOP"
btrfs -q subvolume create "$MNT/app" >/dev/null || die "btrfs subvolume create"
btrfs -q subvolume create "$MNT/other" >/dev/null || die "btrfs subvolume create"
ROOT=$MNT/app
mkdir -p "$ROOT/data/sub" "$ROOT/data/empty"
echo "first version" >"$ROOT/data/a.txt"
head -c 3000000 /dev/urandom >"$ROOT/data/sub/b.bin"
ln -s a.txt "$ROOT/data/link"
ln "$ROOT/data/a.txt" "$ROOT/data/hard"
printf 'key = "1"\n' >"$ROOT/config.toml"
mkdir "$T/orig"
cp -a "$ROOT/data" "$ROOT/config.toml" "$T/orig/"
BEFORE=$(tree_sum "$ROOT" data config.toml)
LIVE_LS=$(ls -A "$ROOT"; ls -A "$MNT")
subvols() { btrfs subvolume list -o "$MNT" | awk '{print $NF}' | sort | tr '\n' ' '; }
note "subvolumes: $(subvols)"
TAG=fssnap.files
PATHS=(data config.toml data/link gone/deeper)

# ------------------------------------------------------------------------
section "snapshot beside the subvolume, read-only, the old content"
t0=$(date +%s%N)
hold main btrfs "$ROOT" "$TAG" "${PATHS[@]}" || die "take failed: $ERR"
note "take: $((($(date +%s%N) - t0) / 1000000)) ms"
SNAP=$(map_of main .)
SNAPDIR=$MNT/.coffer-snapshots
assert_match "$SNAP" "^$SNAPDIR/coffer_${TAG}_[0-9a-f]{8}\.[0-9a-f]+\.[0-9a-f]+\.[0-9a-f]+\.[0-9]+\$" \
    "the snapshot lies in $SNAPDIR (beside the subvolume), named for the tag and its owner"
assert_contains "$(held main)" "desc: btrfs snapshot $SNAP of subvolume $ROOT" "describe names snapshot and subvolume"
assert_eq "$SNAP/data" "$(map_of main data)" "data maps into the snapshot"
assert_eq "$SNAP/config.toml" "$(map_of main config.toml)" "a file maps into the snapshot"
assert_eq "$SNAP/data/link" "$(map_of main data/link)" "a symbolic link maps to itself, not its target"
assert_eq "$SNAP/gone/deeper" "$(map_of main gone/deeper)" "a missing path maps to where it would be"
assert_not_contains "$(held main)" "skip:" "nothing to skip: the snapshot is outside the root"
assert_eq "pid: ${HOLD_PID[main]}" "$(grep '^pid:' "$T/hold-main.out")" "the holder is the process that took it"
assert_eq "ro=true" "$(btrfs property get -ts "$SNAP" ro)" "the snapshot is read-only"
assert_eq "700 0" "$(stat -c '%a %u' "$SNAPDIR")" "the snapshot directory is root's, 0700"
assert_eq "$LIVE_LS" "$(ls -A "$ROOT"; ls -A "$MNT" | grep -v '^\.coffer-snapshots$')" \
    "the live tree has no new entry (the snapshot directory is beside it)"
assert_eq "$BEFORE" "$(tree_sum "$ROOT" data config.toml)" "taking it changed nothing in the live tree"
assert_eq "$BEFORE" "$(tree_sum "$SNAP" data config.toml)" "the snapshot holds the same tree"

# the application goes on writing
echo "second version" >"$ROOT/data/a.txt"
rm "$ROOT/data/sub/b.bin"
echo new >"$ROOT/data/new.txt"
printf 'key = "2"\n' >>"$ROOT/config.toml"
chmod 600 "$ROOT/config.toml"
ln -sfn sub "$ROOT/data/link"
rmdir "$ROOT/data/empty"
assert_ne "$BEFORE" "$(tree_sum "$ROOT" data config.toml)" "the live tree changed"
assert_eq "$BEFORE" "$(tree_sum "$SNAP" data config.toml)" "the snapshot did not"
ok=1
for f in data/a.txt data/hard data/sub/b.bin config.toml; do
    cmp -s "$T/orig/$f" "$SNAP/$f" || { ok=0; fail "$f differs from the original"; }
done
[ $ok = 1 ] && pass "every file in the snapshot is the original byte for byte"
assert_eq "a.txt" "$(readlink "$SNAP/data/link")" "the old link target"
assert_absent "$SNAP/data/new.txt" "a file made afterwards is not in the snapshot"
assert_eq "second version" "$(cat "$ROOT/data/a.txt")" "the live tree has the new content"
expect_fail_desc "the snapshot cannot be written" touch "$SNAP/data/x"
tell main "map nowhere"
wait_for "the answer to map" 10 grep -q '^error: nowhere' "$T/hold-main.out" &&
    pass "map refuses a path it was not given"
assert_contains "$(held main)" "error: nowhere: not a path of the snapshot" "and says why"

stop main
assert_eq 0 "$RC" "release exits 0"
assert_contains "$OUT" "released"
assert_absent "$SNAP" "the snapshot is gone"
assert_absent "$SNAPDIR" "its directory is removed once empty"
assert_not_contains "$(subvols)" "coffer_" "btrfs subvolume list shows no snapshot left"

# ------------------------------------------------------------------------
section "snapshot at the top of a mounted subvolume (nowhere else on the file system)"
APPMNT=$T/appmnt
mkdir -p "$APPMNT"
mount_late -o subvol=app "$LOOP" "$APPMNT" || die "cannot mount subvolume app"
LIVE2=$(tree_sum "$APPMNT" .)
hold top btrfs "$APPMNT" fssnap.top . || die "take failed: $ERR"
SNAP2=$(map_of top .)
assert_match "$SNAP2" "^$APPMNT/\.coffer-snapshots/coffer_fssnap\.top_" "the snapshot lies at the top of the subvolume"
assert_contains "$(held top)" "skip: .coffer-snapshots" "the walk is told to leave the snapshot directory out"
assert_eq "$LIVE2" "$(tree_sum "$SNAP2" . | grep -v '\.coffer-snapshots')" \
    "the snapshot holds the live tree"
assert_eq "" "$(ls -A "$SNAP2/.coffer-snapshots")" "in the snapshot, the snapshot directory is an empty stub"
stop top
assert_eq 0 "$RC" "released"
assert_absent "$APPMNT/.coffer-snapshots" "the directory at the top of the subvolume is removed"

# ------------------------------------------------------------------------
section "interrupted: SIGTERM and SIGINT release the snapshot"
for sig in TERM INT; do
    hold sig btrfs "$ROOT" "$TAG" data || die "take failed: $ERR"
    S=$(map_of sig .)
    kill_hold sig "$sig"
    assert_contains "$OUT" "released" "SIG$sig: released"
    assert_absent "$S" "SIG$sig: the snapshot is gone"
done

# ------------------------------------------------------------------------
section "the sweep removes what dead runs left, and nothing else"
hold dead1 btrfs "$ROOT" "$TAG" data config.toml || die "take failed: $ERR"
L1=$(map_of dead1 .)
stop dead1 abandon
assert_exists "$L1" "a run that exits without releasing leaves its snapshot"
hold dead2 btrfs "$ROOT" "$TAG" data config.toml || die "take failed: $ERR"
L2=$(map_of dead2 .)
kill_hold dead2 KILL
assert_exists "$L2" "a run killed with SIGKILL leaves its snapshot"
hold alive btrfs "$ROOT" "$TAG" data config.toml || die "take failed: $ERR"
LA=$(map_of alive .)
hold othertag btrfs "$ROOT" fssnap.other data || die "take failed: $ERR"
L3=$(map_of othertag .)
stop othertag abandon
# look-alikes: coffer's name, but not what coffer makes
boot=$(cut -c1-8 /proc/sys/kernel/random/boot_id)
dead=deadbeef
[ "$boot" = "$dead" ] && dead=feedface
LK_PLAIN=$SNAPDIR/coffer_${TAG}_$dead.1.2.3.0
LK_OTHER=$SNAPDIR/coffer_${TAG}_$dead.1.2.3.1
LK_RW=$SNAPDIR/coffer_${TAG}_$dead.1.2.3.2
LK_DIR=$SNAPDIR/coffer_${TAG}_$dead.1.2.3.3
LK_NAME=$SNAPDIR/coffer_${TAG}_$dead.1.2.3
LK_NAME2=$SNAPDIR/coffer_${TAG}x_$dead.1.2.3.0
OLDBOOT=$SNAPDIR/coffer_${TAG}_$dead.1.2.3.9
btrfs -q subvolume create "$LK_PLAIN" >/dev/null
btrfs -q subvolume snapshot -r "$MNT/other" "$LK_OTHER" >/dev/null
btrfs -q subvolume snapshot "$ROOT" "$LK_RW" >/dev/null
mkdir "$LK_DIR"
btrfs -q subvolume snapshot -r "$ROOT" "$LK_NAME" >/dev/null
btrfs -q subvolume snapshot -r "$ROOT" "$LK_NAME2" >/dev/null
# what a run of an earlier boot left: removed
btrfs -q subvolume snapshot -r "$ROOT" "$OLDBOOT" >/dev/null
on_cleanup "for s in $LK_PLAIN $LK_OTHER $LK_RW $LK_NAME $LK_NAME2 $L3; do btrfs subvolume delete \$s; done; rmdir $LK_DIR"
note "in $SNAPDIR: $(ls "$SNAPDIR" | tr '\n' ' ')"

t0=$(date +%s%N)
expect_ok "sweep" "$FSSNAP_TOOL" sweep btrfs "$ROOT" "$TAG" data config.toml
note "sweep: $((($(date +%s%N) - t0) / 1000000)) ms"
assert_eq "removed 3" "$OUT" "three leftovers removed"
assert_absent "$L1" "the abandoned run's snapshot is removed"
assert_absent "$L2" "the killed run's snapshot is removed"
assert_absent "$OLDBOOT" "a snapshot of an earlier boot is removed"
assert_exists "$LA/data/a.txt" "the running holder's snapshot is untouched"
assert_exists "$L3" "another tag's leftover is untouched"
for lk in "$LK_PLAIN" "$LK_OTHER" "$LK_RW" "$LK_DIR" "$LK_NAME" "$LK_NAME2"; do
    assert_exists "$lk" "look-alike $(basename "$lk") is untouched"
done
assert_contains "$ERR" "$(basename "$LK_PLAIN"): left alone" "the sweep says what it left alone"
assert_contains "$ERR" "removed $L1" "and what it removed"
expect_ok "sweep again" "$FSSNAP_TOOL" sweep btrfs "$ROOT" "$TAG" data
assert_eq "removed 0" "$OUT" "nothing more to remove"
expect_ok "sweep for the other tag" "$FSSNAP_TOOL" sweep btrfs "$ROOT" fssnap.other data
assert_eq "removed 1" "$OUT" "the other tag's leftover removed by its own sweep"
assert_absent "$L3"
stop alive
assert_eq 0 "$RC" "the running holder releases normally"
assert_absent "$LA"
for s in "$LK_PLAIN" "$LK_OTHER" "$LK_RW" "$LK_NAME" "$LK_NAME2"; do btrfs -q subvolume delete "$s" >/dev/null; done
rmdir "$LK_DIR" "$SNAPDIR"
assert_eq "app other " "$(subvols)" "only the test's subvolumes are left"

# ------------------------------------------------------------------------
section "refused: what one snapshot cannot cover"
TMPFS=$T/tmpfs
mkdir -p "$TMPFS"
mount_late -t tmpfs -o size=1m tmpfs "$TMPFS" || die "cannot mount a tmpfs"
mkdir "$TMPFS/x"
expect_fail_desc "a path on tmpfs" "$FSSNAP_TOOL" take btrfs "$TMPFS" t x
assert_contains "$ERR" "x ($TMPFS/x) lies on tmpfs tmpfs mounted at $TMPFS, not on btrfs" \
    "the error names the path and what it lies on"
expect_fail_desc "paths on two subvolumes" "$FSSNAP_TOOL" take btrfs "$MNT" t app/data other
assert_contains "$ERR" "app/data ($MNT/app/data) lies on btrfs subvolume $MNT/app, other ($MNT/other) on subvolume $MNT/other" \
    "the error names both paths and their subvolumes"
btrfs -q subvolume create "$ROOT/data/inner" >/dev/null
expect_fail_desc "a subvolume inside a path" "$FSSNAP_TOOL" take btrfs "$ROOT" t data
assert_contains "$ERR" "$ROOT/data/inner is a btrfs subvolume of its own inside it" "the error names it"
btrfs -q subvolume delete "$ROOT/data/inner" >/dev/null
mkdir "$ROOT/data/m"
mount_late -t tmpfs -o size=1m tmpfs "$ROOT/data/m" || die "cannot mount a tmpfs"
expect_fail_desc "a mount inside a path" "$FSSNAP_TOOL" take btrfs "$ROOT" t data
assert_contains "$ERR" "$ROOT/data/m (tmpfs tmpfs) is mounted inside it" "the error names the mount"
umount "$ROOT/data/m" && rmdir "$ROOT/data/m"
expect_fail_desc "a size for btrfs" "$FSSNAP_TOOL" take btrfs "$ROOT" t -s 1G data
assert_contains "$ERR" "only lvm snapshots have a size"
expect_fail_desc "a tag with a slash" "$FSSNAP_TOOL" take btrfs "$ROOT" a/b data
np=0
setpriv --reuid=nobody --regid=nogroup --clear-groups "$FSSNAP_TOOL" >/dev/null 2>&1 </dev/null || np=$?
if [ "$np" = 2 ]; then # its usage message: it runs
    expect_fail_desc "an unprivileged user" setpriv --reuid=nobody --regid=nogroup --clear-groups \
        "$FSSNAP_TOOL" take btrfs "$ROOT" t data
    assert_contains "$ERR" "$ROOT" "the error names the subvolume"
    note "unprivileged: $ERR"
else
    skip "unprivileged take: user nobody cannot run $FSSNAP_TOOL here"
fi
assert_eq "app other " "$(subvols)" "no failed take left anything"
assert_absent "$SNAPDIR"
assert_absent "$ROOT/.coffer-snapshots"

finish
