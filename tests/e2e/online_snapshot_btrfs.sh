#!/usr/bin/env bash
# Online backups with the shipped online SQLite policy plus `snapshot:
# btrfs` on its data component, the deployment's data/ a btrfs subvolume
# (a file system on a loop device), while tests/tools/aster_writer.py
# uploads and purges files: the files are read from a read-only snapshot
# taken right before the database snapshot, so every set is consistent
# (none marked, every restored set passes storage-objects and the doctor),
# also with two_pass: false, and no snapshot is left behind.
# Skipped (SKIP, exit 0) without root, btrfs, or a free loop device.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/online_lib.sh"
require_coffer

MNT=$T/mnt
LOOP=
btrfs_cleanup() {
    # the writer first: it holds files open on the file system
    [ -n "${OL_WPID:-}" ] && kill "$OL_WPID" 2>/dev/null && wait "$OL_WPID" 2>/dev/null
    if mountpoint -q "$MNT" 2>/dev/null; then
        umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
    fi
    [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
}
trap '_rc=$?; btrfs_cleanup; (exit $_rc); _cleanup' EXIT

skip_all() { skip "$*"; finish; }
section "a btrfs file system on a loop device"
[ "$(id -u)" = 0 ] || skip_all "needs root (loop devices, mount, btrfs snapshots)"
for c in mkfs.btrfs btrfs losetup mount; do
    command -v "$c" >/dev/null || skip_all "$c not installed (apt-get install btrfs-progs)"
done
grep -qw btrfs /proc/filesystems || modprobe btrfs 2>/dev/null
grep -qw btrfs /proc/filesystems || skip_all "the kernel has no btrfs"
truncate -s 1G "$T/btrfs.img" || die "truncate"
mkfs.btrfs -q "$T/btrfs.img" >"$T/mkfs.out" 2>&1 || die "mkfs.btrfs: $(cat "$T/mkfs.out")"
LOOP=$(losetup -f --show "$T/btrfs.img" 2>"$T/losetup.err") || { LOOP=; skip_all "no loop device: $(cat "$T/losetup.err")"; }
mkdir -p "$MNT"
mount "$LOOP" "$MNT" 2>"$T/mount.err" || skip_all "cannot mount btrfs on $LOOP: $(cat "$T/mount.err")"
pass "btrfs on $LOOP mounted at $MNT"

section "deployment: data/ is a btrfs subvolume"
# Enough rows that purges (of files 30 s old, see below) last the whole run.
gen_deployment "$T/gen" --size-mb 30 --files 2500 --small-kb 1:8 --seed 51
mkdir -p "$MNT/live"
btrfs subvolume create "$MNT/live/data" >/dev/null || die "btrfs subvolume create"
# everything, the database's -wal included, with modes, owners, links
cp -a "$T/gen/data/." "$MNT/live/data/" || die "copy the deployment into the subvolume"
rm -rf "$T/gen"
POLICY=$T/online-btrfs.yaml
sed 's/^\(    exclude: \[data\/.tmp, data\/.uploads\]\)$/\1\n    snapshot: btrfs/' \
    "$COFFER_SRC/policies/asterdrive-sqlite-online.yaml" >"$POLICY"
grep -q '^    snapshot: btrfs' "$POLICY" || die "cannot add snapshot: btrfs to the data component"
setup_env
export ASTERDRIVE_ROOT=$MNT/live
export TMPDIR=$T/scratch
mkdir -p "$TMPDIR"
doctor "the deployment on btrfs is doctor-clean" "$ASTERDRIVE_ROOT"
expect_ok "the policy with snapshot: btrfs is valid" cf policy check "$POLICY" || die "policy check"
expect_ok "init" cf init -p "$POLICY" || die "init failed"
SUBVOLS0=$(btrfs subvolume list "$MNT" | wc -l)

section "writer: uploads and purges"
OL_BACKUP_LOG_RE="component 'data': btrfs snapshot $MNT/live/\.coffer-snapshots/coffer_[^ ]+ of subvolume $MNT/live/data"
# An object uploaded between the file system snapshot and the database
# snapshot is fetched again from the live tree; a file purged again before
# that (within the same second) would be lost, and the set rightly marked:
# the writer leaves its own files alone for their first 30 s, as users do.
ol_writer_start --purge-min-age 30
ol_backups 4
SINGLE=$T/online-btrfs-single-pass.yaml
make_policy "$SINGLE" 's/^\(  two_pass:\) true/\1 false/'
grep -q '^  two_pass: false' "$SINGLE" || die "cannot make a two_pass: false policy"
ol_backups 2 "$SINGLE"
ol_writer_stop
doctor "the live deployment is doctor-clean after the writer" "$ASTERDRIVE_ROOT"

section "every set is consistent"
n=0
for set in "${OL_SETS[@]}"; do
    [ "${OL_INCONSISTENT[$set]}" = False ] && n=$((n + 1))
done
assert_eq "${#OL_SETS[@]}" "$n" "none of the ${#OL_SETS[@]} sets is marked inconsistent"
assert_eq "$SUBVOLS0" "$(btrfs subvolume list "$MNT" | wc -l)" "no snapshot subvolume left behind"
assert_absent "$ASTERDRIVE_ROOT/.coffer-snapshots" "no snapshot directory left in the root"
ol_check_sets
finish
