#!/usr/bin/env bash
# LVM snapshots through core/snapshot against scripted LVM tools
# (fake_lvm.in), for machines whose kernel has no device-mapper, where
# fssnap_lvm.sh skips. In a private mount namespace, the scripted tools
# stand in for /usr/sbin/lvm, "LVs" are ext4 file systems on loop devices
# that sysfs (overlaid) calls device-mapper LVs, and a "snapshot" is a
# frozen copy attached read-only. What is tested is core/snapshot's side:
# the commands it runs and their environment, the device it mounts and
# how, the paths it maps, release, the sweep of dead runs' snapshots
# (also still mounted), the refusals, and a release that cannot unmount.
if [ -z "${FSSNAP_NS:-}" ] && [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
    FSSNAP_NS=1 exec unshare -m --propagation private bash "$0" "$@"
fi
. "$(dirname "$0")/../../e2e/lib.sh"
. "$(dirname "$0")/fssnap.sh"

[ -n "${FSSNAP_NS:-}" ] || skip_all "scripted LVM: needs root and a private mount namespace (unshare -m)"
require_root_loop "scripted LVM"
for t in mkfs.ext4 fsfreeze findmnt mknod; do
    command -v "$t" >/dev/null || skip_all "scripted LVM: $t not installed (e2fsprogs, util-linux, coreutils)"
done
[ -x /usr/sbin/lvm ] || skip_all "scripted LVM: lvm2 not installed (/usr/sbin/lvm is what the scripted tools stand in for)"

section "scripted lvm tools, LVs on loop devices"
STATE=$T/lvm
mkdir -p "$STATE"
: >"$STATE/lvs"
sed "s|@STATE@|$STATE|" "$(dirname "$0")/fake_lvm.in" >"$T/fake_lvm" && chmod 755 "$T/fake_lvm"
mount_late --bind "$T/fake_lvm" /usr/sbin/lvm || die "cannot put the scripted tools in place"
if [ ! -d /dev/mapper ]; then
    mkdir /dev/mapper || die "cannot make /dev/mapper"
    on_cleanup "umount /dev/mapper; rmdir /dev/mapper"
else
    on_cleanup "umount /dev/mapper"
fi
mount -t tmpfs -o mode=755,size=1m tmpfs /dev/mapper || die "cannot mount a tmpfs on /dev/mapper"
umount_lvm_snapshots_at_exit

# new_lv NAME POOL MOUNTPOINT: ext4 on a loop device that sysfs calls
# device-mapper device vg-NAME (LVM), mounted.
new_lv() {
    loop_file 96M || die "cannot make a loop device"
    local min=${LOOP#/dev/loop} img
    img=$(losetup -n -O BACK-FILE "$LOOP")
    mkfs.ext4 -q "$LOOP" || die "mkfs.ext4 $LOOP"
    local sys=/sys/devices/virtual/block/loop$min over=$T/sys-loop$min
    [ -d "$sys" ] || die "$sys missing"
    mkdir -p "$over/dm"
    echo "vg-$1" >"$over/dm/name"
    echo "LVM-fakeuuid$1" >"$over/dm/uuid"
    mount_late --bind "$over" "$sys" || die "cannot overlay $sys"
    mknod "/dev/mapper/vg-$1" b 7 "$min"
    echo "vg|$1|$2|||7|$min|$img" >>"$STATE/lvs"
    mkdir -p "$3"
    mount_late "$LOOP" "$3" || die "cannot mount $LOOP"
}
MNT=$T/mnt
PLAIN=$T/plain
new_lv data pool "$MNT"
new_lv plain "" "$PLAIN"
ROOT=$MNT/app
mkdir -p "$ROOT/data/sub"
echo "first version" >"$ROOT/data/a.txt"
head -c 2000000 /dev/urandom >"$ROOT/data/sub/b.bin"
ln -s a.txt "$ROOT/data/link"
printf 'key = "1"\n' >"$ROOT/config.toml"
mkdir "$T/orig"
cp -a "$ROOT/data" "$ROOT/config.toml" "$T/orig/"
BEFORE=$(tree_sum "$ROOT" data config.toml)
TAG=fssnap.files
CF_RUN=/run/coffer/fssnap
coffer_lvs() { awk -F'|' '$2 ~ /^coffer_/ {print $2}' "$STATE/lvs" | tr '\n' ' '; }
run_mounts() { grep -c " $CF_RUN/coffer_" /proc/self/mountinfo; }
# a secret in coffer's environment must not reach the tools
export COFFER_PASSPHRASE=fssnap-secret
expected_env="LC_ALL=C LVM_SUPPRESS_FD_WARNINGS=1 PATH=/usr/sbin:/usr/bin:/sbin:/bin "
[ -e /run/udev/control ] || expected_env="DM_DISABLE_UDEV=1 $expected_env"

# ------------------------------------------------------------------------
section "a thin snapshot, mounted read-only, the old content"
: >"$STATE/calls.log"
hold main lvm "$ROOT" "$TAG" data config.toml || die "take failed: $ERR"
assert_match "$(held main)" "^desc: lvm snapshot vg/coffer_${TAG}_[0-9a-f.]+ of LV vg/data, mounted at $CF_RUN/coffer_${TAG}_" \
    "describe names the snapshot LV, its origin and its mount"
MP=$(held main | sed -n "s|^desc: .* mounted at ||p")
NAME=$(basename "$MP")
calls=$(grep -v '^env:' "$STATE/calls.log")
assert_eq "lvs --noheadings --separator \| -o vg_name\,lv_name\,pool_lv\,lv_kernel_major\,lv_kernel_minor /dev/mapper/vg-data
lvcreate --snapshot --name $NAME --permission r --setactivationskip n --activate y --addtag coffer_fssnap --yes vg/data" \
    "$calls" "lvs finds the LV of the device, lvcreate makes a read-only, tagged, activated thin snapshot"
assert_eq "$expected_env" "$(grep '^env:' "$STATE/calls.log" | sort -u | sed 's/^env: //')" \
    "the tools get PATH, LC_ALL and LVM's own variables, nothing of coffer's"
assert_eq "$MP/app/data" "$(map_of main data)" "data maps into the mounted snapshot"
assert_eq "$MP/app/config.toml" "$(map_of main config.toml)" "a file too"
assert_eq "$MP/app" "$(map_of main .)" "the root maps too"
assert_eq "700" "$(stat -c %a "$CF_RUN")" "the mount directories are private"
mnt_line=$(awk -v m="$MP" '$5 == m' /proc/self/mountinfo)
assert_match "$mnt_line" "^[0-9]+ [0-9]+ 7:[0-9]+ / $MP ro,nosuid,nodev,noexec" "mounted read-only, nosuid, nodev, noexec"
assert_match "$mnt_line" " - ext4 /dev/mapper/vg-$NAME " "from the snapshot's device"
assert_eq "$BEFORE" "$(tree_sum "$MP/app" data config.toml)" "the snapshot holds the same tree"
echo "second version" >"$ROOT/data/a.txt"
rm "$ROOT/data/sub/b.bin"
echo new >"$ROOT/data/new.txt"
assert_eq "$BEFORE" "$(tree_sum "$MP/app" data config.toml)" "the snapshot did not change with the live tree"
cmp -s "$T/orig/data/sub/b.bin" "$MP/app/data/sub/b.bin" && pass "a deleted file is there byte for byte"
expect_fail_desc "the snapshot cannot be written" touch "$MP/app/data/x"
stop main
assert_eq 0 "$RC" "release exits 0"
assert_contains "$(tail -n 2 "$STATE/calls.log" | head -n1)" "lvremove --force --yes vg/$NAME" "release runs lvremove"
assert_absent "$MP" "the mount directory is gone"
assert_eq 0 "$(run_mounts)" "nothing mounted"
assert_eq "" "$(coffer_lvs)" "no snapshot LV left"

# ------------------------------------------------------------------------
section "a classic snapshot needs a size"
echo "plain" >"$PLAIN/f"
expect_fail_desc "no size for a non-thin LV" "$FSSNAP_TOOL" take lvm "$PLAIN" "$TAG" .
assert_contains "$ERR" "lies on LV vg/plain, which is not a thin volume" "the error names the LV"
assert_contains "$ERR" "give a snapshot size" "and says what to give"
hold classic lvm "$PLAIN" "$TAG" -s 32M . || die "take failed: $ERR"
assert_contains "$(grep '^lvcreate' "$STATE/calls.log" | tail -n1)" "--size 32M --yes vg/plain" "lvcreate gets the size"
CMP=$(map_of classic .)
echo "changed" >"$PLAIN/f"
assert_eq "plain" "$(cat "$CMP/f")" "the classic snapshot shows the old content"
stop classic
assert_eq 0 "$RC" "released"
assert_eq "" "$(coffer_lvs)" "no snapshot LV left"

# ------------------------------------------------------------------------
section "the sweep removes what dead runs left (also mounted), and nothing else"
hold dead1 lvm "$ROOT" "$TAG" data || die "take failed: $ERR"
D1=$(held dead1 | sed -n "s|^desc: .* mounted at ||p")
stop dead1 abandon
hold dead2 lvm "$ROOT" "$TAG" data || die "take failed: $ERR"
D2=$(held dead2 | sed -n "s|^desc: .* mounted at ||p")
kill_hold dead2 KILL
hold alive lvm "$ROOT" "$TAG" data || die "take failed: $ERR"
LA=$(map_of alive data)
hold other lvm "$ROOT" fssnap.other data || die "take failed: $ERR"
stop other abandon
assert_eq 4 "$(coffer_lvs | wc -w)" "four snapshot LVs"
assert_exists "$D1/app" "the abandoned run's snapshot is still mounted"
assert_exists "$D2/app" "the killed run's snapshot is still mounted"
dead=deadbeef
[ "$(cut -c1-8 /proc/sys/kernel/random/boot_id)" = $dead ] && dead=feedface
# look-alikes: an LV without the tag, a tagged snapshot of another LV
echo "vg|coffer_${TAG}_$dead.1.2.3.0|pool|data||7|999|/nonexistent" >>"$STATE/lvs"
echo "vg|coffer_${TAG}_$dead.1.2.3.1||plain|coffer_fssnap|7|998|/nonexistent" >>"$STATE/lvs"
: >"$STATE/calls.log"
expect_ok "sweep" "$FSSNAP_TOOL" sweep lvm "$ROOT" "$TAG" data
assert_eq "removed 2" "$OUT" "the two dead runs' snapshots are removed"
assert_absent "$D1" "the abandoned run's mount is undone, its directory removed"
assert_absent "$D2" "the killed run's too"
assert_exists "$LA/a.txt" "the running holder's snapshot is untouched"
assert_eq 2 "$(grep -c '^lvremove' "$STATE/calls.log")" "lvremove ran for the two leftovers only"
assert_contains "$(coffer_lvs)" "coffer_${TAG}_$dead.1.2.3.0" "the look-alike without the tag is untouched"
assert_contains "$(coffer_lvs)" "coffer_${TAG}_$dead.1.2.3.1" "the snapshot of another LV is untouched"
assert_contains "$(coffer_lvs)" "coffer_fssnap.other_" "another tag's leftover is untouched"
assert_contains "$ERR" "coffer_${TAG}_$dead.1.2.3.0: left alone" "the sweep says what it left alone"
stop alive
assert_eq 0 "$RC" "the running holder releases normally"
expect_ok "sweep for the other tag" "$FSSNAP_TOOL" sweep lvm "$ROOT" fssnap.other data
assert_eq "removed 1" "$OUT" "its leftover is removed by its own sweep"
grep -v "_$dead\." "$STATE/lvs" >"$STATE/lvs.new" && mv "$STATE/lvs.new" "$STATE/lvs"
assert_eq "" "$(coffer_lvs)" "no snapshot LV left"
assert_eq 0 "$(run_mounts)" "nothing mounted"

# ------------------------------------------------------------------------
section "a release that cannot unmount says so, and the next sweep cleans up"
hold busy lvm "$ROOT" "$TAG" data || die "take failed: $ERR"
BM=$(held busy | sed -n "s|^desc: .* mounted at ||p")
(cd "$BM/app" && sleep 6.5) &
bg_register $!
sleep 0.3
t0=$(date +%s)
stop busy
assert_eq 1 "$RC" "release fails while the snapshot is in use"
assert_contains "$ERR" "cannot unmount $BM: Device or resource busy" "the error names the mount"
assert_contains "$ERR" "deleting lvm snapshot vg/" "and the snapshot"
note "release gave up after $(($(date +%s) - t0)) s"
wait
expect_ok "sweep" "$FSSNAP_TOOL" sweep lvm "$ROOT" "$TAG" data
assert_eq "removed 1" "$OUT" "the next sweep removes it"
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
assert_contains "$ERR" "mnt/app ($ROOT) lies on ext4 /dev/loop" "the error names the first path and what it lies on"
assert_contains "$ERR" "plain ($PLAIN) on ext4 /dev/loop" "and the second"
assert_contains "$ERR" "one snapshot covers one logical volume" "and says why"
mkdir "$ROOT/data/m"
mount_late -t tmpfs -o size=1m tmpfs "$ROOT/data/m" || die "cannot mount a tmpfs"
expect_fail_desc "a mount inside a path" "$FSSNAP_TOOL" take lvm "$ROOT" t data
assert_contains "$ERR" "$ROOT/data/m (tmpfs tmpfs) is mounted inside it, and a snapshot of LV vg/data would show it empty"
umount "$ROOT/data/m"
expect_fail_desc "a bad size" "$FSSNAP_TOOL" take lvm "$PLAIN" t -s 10%FREE .
assert_contains "$ERR" "snapshot size '10%FREE'"
echo "vg|data|pool|||7|1234|x" >"$STATE/lvs" # lvs now names another device
expect_fail_desc "lvs names another device" "$FSSNAP_TOOL" take lvm "$ROOT" t data
assert_contains "$ERR" "lvs names vg/data for device vg-data, but that LV is device 7:1234" "the mismatch is caught"
: >"$STATE/lvs"
expect_fail_desc "lvs fails" "$FSSNAP_TOOL" take lvm "$ROOT" t data
assert_contains "$ERR" "failed (exit 5): Failed to find logical volume" "lvs's own words are in the error"
assert_eq 0 "$(run_mounts)" "no failed take left a mount"

finish
