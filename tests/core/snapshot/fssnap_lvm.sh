#!/usr/bin/env bash
# LVM snapshots through core/snapshot, on a volume group made on a loop
# device: a thin snapshot of a thin LV (ext4) and a classic one with a
# size, mounted read-only, show the tree as it was while the live tree
# changes; release unmounts and removes them; the sweep removes what dead
# runs left (also still mounted) and nothing else; paths off LVM or on two
# LVs are refused, naming them. Needs device-mapper with the thin-pool
# target in the kernel: without it (containers, small VMs) it skips and
# says what is missing.
. "$(dirname "$0")/../../e2e/lib.sh"
. "$(dirname "$0")/fssnap.sh"

require_root_loop "LVM snapshots"
for t in pvcreate vgcreate lvcreate lvs lvremove dmsetup mkfs.ext4; do
    command -v "$t" >/dev/null || skip_all "LVM snapshots: $t not installed (Debian packages lvm2, e2fsprogs)"
done
command -v thin_check >/dev/null || skip_all "LVM snapshots: thin_check not installed (Debian package thin-provisioning-tools): thin pools cannot be activated"
# Without a udev daemon, device-mapper makes the device nodes itself (as
# core/snapshot tells it to).
[ -e /run/udev/control ] || export DM_DISABLE_UDEV=1
# /proc/misc first: dmsetup would make /dev/mapper/control even where the
# kernel has no device-mapper.
grep -qw device-mapper /proc/misc || modprobe dm_mod 2>/dev/null
if ! grep -qw device-mapper /proc/misc; then
    skip_all "LVM snapshots: the kernel has no device-mapper here (no device-mapper in /proc/misc, kernel $(uname -r)); e2e_fssnap_lvm_tools tests the LVM code against scripted tools instead"
fi
if ! dmv=$(dmsetup version 2>&1); then
    skip_all "LVM snapshots: device-mapper does not answer (\`dmsetup version\`: $(printf '%s' "$dmv" | grep -v '^Library' | tr '\n' ' '))"
fi
targets=$(dmsetup targets 2>&1)
for tg in thin-pool snapshot; do
    if ! grep -q "^$tg " <<<"$targets"; then
        modprobe "dm_${tg//-/_}" 2>/dev/null || modprobe "dm-$tg" 2>/dev/null
        targets=$(dmsetup targets 2>&1)
        grep -q "^$tg " <<<"$targets" || skip_all "LVM snapshots: device-mapper has no $tg target (\`dmsetup targets\`: $(tr '\n' ' ' <<<"$targets"))"
    fi
done

section "a volume group with a thin pool on a loop device"
loop_file 640M || die "cannot make a loop device"
VG=coffertest$$
pvcreate -q "$LOOP" >/dev/null || die "pvcreate $LOOP failed"
on_cleanup "pvremove -ff -y $LOOP"
vgcreate -q "$VG" "$LOOP" >/dev/null || die "vgcreate failed"
on_cleanup "vgremove -ff -y $VG"
umount_lvm_snapshots_at_exit
lvcreate -q -L 256M --type thin-pool -n pool "$VG" >/dev/null || die "thin pool: lvcreate failed"
lvcreate -q -V 192M --thin -n data "$VG/pool" >/dev/null || die "thin LV: lvcreate failed"
lvcreate -q -L 96M -n plain "$VG" >/dev/null || die "plain LV: lvcreate failed"
mkfs.ext4 -q "/dev/$VG/data" || die "mkfs.ext4 failed"
mkfs.ext4 -q "/dev/$VG/plain" || die "mkfs.ext4 failed"
MNT=$T/mnt
PLAIN=$T/plain
mkdir -p "$MNT" "$PLAIN"
# unmounted before the volume group goes (cleanups run last first)
mount "/dev/$VG/data" "$MNT" || die "cannot mount the thin LV"
on_cleanup "umount -R $MNT"
mount "/dev/$VG/plain" "$PLAIN" || die "cannot mount the plain LV"
on_cleanup "umount -R $PLAIN"
ROOT=$MNT/app
mkdir -p "$ROOT/data/sub"
echo "first version" >"$ROOT/data/a.txt"
head -c 3000000 /dev/urandom >"$ROOT/data/sub/b.bin"
ln -s a.txt "$ROOT/data/link"
printf 'key = "1"\n' >"$ROOT/config.toml"
mkdir "$T/orig"
cp -a "$ROOT/data" "$ROOT/config.toml" "$T/orig/"
BEFORE=$(tree_sum "$ROOT" data config.toml)
TAG=fssnap.files
coffer_lvs() { lvs --noheadings -o lv_name "$VG" | awk '{print $1}' | grep '^coffer_' | tr '\n' ' '; }
run_mounts() { grep -c " $CF_RUN/coffer_" /proc/self/mountinfo; }
CF_RUN=/run/coffer/fssnap

# ------------------------------------------------------------------------
section "a thin snapshot, mounted read-only, the old content"
t0=$(date +%s%N)
hold main lvm "$ROOT" "$TAG" data config.toml || die "take failed: $ERR"
note "take: $((($(date +%s%N) - t0) / 1000000)) ms"
assert_match "$(held main)" "^desc: lvm snapshot $VG/coffer_${TAG}_[0-9a-f.]+ of LV $VG/data, mounted at $CF_RUN/coffer_${TAG}_" \
    "describe names the snapshot LV, its origin and its mount"
MP=$(held main | sed -n "s|^desc: .* mounted at ||p")
NAME=$(basename "$MP")
assert_eq "$MP/app/data" "$(map_of main data)" "data maps into the mounted snapshot"
assert_eq "$MP/app" "$(map_of main .)" "the root maps too"
assert_eq "700" "$(stat -c %a "$CF_RUN")" "the mount directories are private"
assert_match "$(lvs --noheadings -o lv_name,origin,lv_attr,lv_tags "$VG/$NAME")" "$NAME +data +Vr[^ ]* +coffer_fssnap" \
    "a read-only thin snapshot of data, tagged coffer_fssnap"
assert_match "$(grep " $MP " /proc/self/mountinfo)" " ro[, ]" "mounted read-only"
assert_eq "$BEFORE" "$(tree_sum "$(map_of main .)" data config.toml)" "the snapshot holds the same tree"
echo "second version" >"$ROOT/data/a.txt"
rm "$ROOT/data/sub/b.bin"
echo new >"$ROOT/data/new.txt"
printf 'key = "2"\n' >>"$ROOT/config.toml"
sync
assert_eq "$BEFORE" "$(tree_sum "$(map_of main .)" data config.toml)" "the snapshot did not change with the live tree"
cmp -s "$T/orig/data/sub/b.bin" "$MP/app/data/sub/b.bin" && pass "a deleted file is there byte for byte"
expect_fail_desc "the snapshot cannot be written" touch "$MP/app/data/x"
stop main
assert_eq 0 "$RC" "release exits 0"
assert_absent "$MP" "the mount directory is gone"
assert_eq "" "$(coffer_lvs)" "no snapshot LV left"

# ------------------------------------------------------------------------
section "a classic snapshot needs a size"
echo "plain" >"$PLAIN/f"
expect_fail_desc "no size for a non-thin LV" "$FSSNAP_TOOL" take lvm "$PLAIN" "$TAG" .
assert_contains "$ERR" "LV $VG/plain, which is not a thin volume" "the error names the LV"
assert_contains "$ERR" "snapshot size" "and says what to give"
hold classic lvm "$PLAIN" "$TAG" -s 32M . || die "take failed: $ERR"
CMP=$(map_of classic .)
echo "changed" >"$PLAIN/f"
assert_eq "plain" "$(cat "$CMP/f")" "the classic snapshot shows the old content"
assert_match "$(lvs --noheadings -o lv_name,origin,lv_size --units m "$VG" | grep coffer_)" "plain +32" \
    "a 32 MiB snapshot of plain"
stop classic
assert_eq 0 "$RC" "released"
assert_eq "" "$(coffer_lvs)" "no snapshot LV left"

# ------------------------------------------------------------------------
section "the sweep removes what dead runs left (also mounted), and nothing else"
hold dead1 lvm "$ROOT" "$TAG" data || die "take failed: $ERR"
D1=$(held dead1 | sed -n "s|^desc: .* mounted at ||p")
stop dead1 abandon
hold dead2 lvm "$ROOT" "$TAG" data || die "take failed: $ERR"
kill_hold dead2 KILL
hold alive lvm "$ROOT" "$TAG" data || die "take failed: $ERR"
LA=$(map_of alive data)
assert_eq 3 "$(coffer_lvs | wc -w)" "three snapshot LVs"
assert_exists "$D1/app" "the dead run's snapshot is still mounted"
dead=deadbeef
[ "$(cut -c1-8 /proc/sys/kernel/random/boot_id)" = $dead ] && dead=feedface
lvcreate -q -V 16M --thin -n "coffer_${TAG}_$dead.1.2.3.0" "$VG/pool" >/dev/null # no tag, no origin
lvcreate -q -s -n "coffer_${TAG}_$dead.1.2.3.1" -kn "$VG/data" >/dev/null          # no tag
on_cleanup "lvremove -f $VG/coffer_${TAG}_$dead.1.2.3.0 $VG/coffer_${TAG}_$dead.1.2.3.1"
expect_ok "sweep" "$FSSNAP_TOOL" sweep lvm "$ROOT" "$TAG" data
assert_eq "removed 2" "$OUT" "the two dead runs' snapshots are removed"
assert_absent "$D1" "the dead run's mount is undone, its directory removed"
assert_exists "$LA/a.txt" "the running holder's snapshot is untouched"
assert_contains "$(coffer_lvs)" "coffer_${TAG}_$dead.1.2.3.0" "a look-alike without the tag is untouched"
assert_contains "$(coffer_lvs)" "coffer_${TAG}_$dead.1.2.3.1" "a snapshot without the tag is untouched"
assert_contains "$ERR" "left alone" "the sweep says what it left alone"
stop alive
assert_eq 0 "$RC" "released"
lvremove -q -f "$VG/coffer_${TAG}_$dead.1.2.3.0" "$VG/coffer_${TAG}_$dead.1.2.3.1" >/dev/null
assert_eq "" "$(coffer_lvs)" "no snapshot LV left"

# ------------------------------------------------------------------------
section "refused: what one snapshot cannot cover"
TMPFS=$T/tmpfs
mkdir -p "$TMPFS"
mount_late -t tmpfs -o size=1m tmpfs "$TMPFS" || die "cannot mount a tmpfs"
mkdir "$TMPFS/x"
expect_fail_desc "a path on tmpfs" "$FSSNAP_TOOL" take lvm "$TMPFS" t x
assert_contains "$ERR" "x ($TMPFS/x) lies on tmpfs tmpfs mounted at $TMPFS" "the error names the path and what it lies on"
assert_contains "$ERR" "not an LVM logical volume"
expect_fail_desc "paths on two LVs" "$FSSNAP_TOOL" take lvm "$T" t mnt/app plain
assert_contains "$ERR" "one snapshot covers one logical volume" "the error says why"
assert_contains "$ERR" "plain ($PLAIN)" "and names the path"
mkdir "$ROOT/data/m"
mount -t tmpfs -o size=1m tmpfs "$ROOT/data/m" || die "cannot mount a tmpfs"
expect_fail_desc "a mount inside a path" "$FSSNAP_TOOL" take lvm "$ROOT" t data
assert_contains "$ERR" "$ROOT/data/m (tmpfs tmpfs) is mounted inside it"
umount "$ROOT/data/m"
expect_fail_desc "a bad size" "$FSSNAP_TOOL" take lvm "$PLAIN" t -s 10%FREE .
assert_contains "$ERR" "snapshot size '10%FREE'"
assert_eq "" "$(coffer_lvs)" "no failed take left an LV"
assert_eq 0 "$(run_mounts)" "nor a mount"

finish
