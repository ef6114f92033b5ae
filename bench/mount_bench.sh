#!/usr/bin/env bash
# Mount benchmark: reading one large file through `coffer mount` against
# `coffer restore` of the same set, per byte, on a local repository; the
# peak memory of the mount once the whole set has been listed and read.
# With restic installed, `restic mount` reads the same file side by side.
#
#   bench/mount_bench.sh [--file-mb N] [--size-mb N] [--cache-size SIZE]
#                        [--keep] [--workdir DIR]
#
#   --file-mb N        size of the large file read (default 100)
#   --size-mb N        size of the rest of the deployment (default 64)
#   --cache-size SIZE  coffer mount --cache-size (default: coffer's, 32M)
#   --keep             keep the work directory
#   --workdir DIR      parent of the work directory (default $BENCH_TMPDIR,
#                      else /var/tmp)
#
# Targets (printed with the figures):
#   mount read throughput >= 0.5 x restore throughput (bytes per second)
#   mount peak RSS <= 64 MiB after `find` over every set and the reads
# Exit status 0 when both hold, 1 otherwise.
#
# Environment: COFFER (default build/coffer), COFFER_PASSPHRASE (default a
# fixed one: the repository is encrypted, coffer's default). Needs
# /dev/fuse and fusermount3.
set -uo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
file_mb=100
size_mb=64
cache=""
keep=0
workparent="${BENCH_TMPDIR:-/var/tmp}"
while [ $# -gt 0 ]; do
    case "$1" in
        --file-mb) file_mb=${2:?}; shift 2 ;;
        --size-mb) size_mb=${2:?}; shift 2 ;;
        --cache-size) cache=${2:?}; shift 2 ;;
        --keep) keep=1; shift ;;
        --workdir) workparent=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "mount_bench: unknown argument $1" >&2; exit 2 ;;
    esac
done

COFFER=${COFFER:-$src/build/coffer}
[ -x "$COFFER" ] || { echo "mount_bench: no coffer at $COFFER (build first or set COFFER)" >&2; exit 2; }
[ -e /dev/fuse ] && command -v fusermount3 >/dev/null ||
    { echo "mount_bench: /dev/fuse or fusermount3 missing" >&2; exit 2; }

W=$(mktemp -d "$workparent/coffer-mount-bench.XXXXXX")
MNT=$W/mnt
MPID=""
cleanup() {
    [ -n "$MPID" ] && kill -INT "$MPID" 2>/dev/null && wait "$MPID" 2>/dev/null
    mountpoint -q "$MNT" 2>/dev/null && fusermount3 -u "$MNT"
    mountpoint -q "$W/rmnt" 2>/dev/null && fusermount3 -u "$W/rmnt"
    if [ "$keep" = 1 ]; then echo "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
export COFFER_PASSPHRASE=${COFFER_PASSPHRASE:-bench-passphrase}
export ASTERDRIVE_ROOT=$W/live COFFER_REPO=$W/repo ASTERDRIVE_STOP=true ASTERDRIVE_START=true
POLICY=$src/policies/asterdrive-sqlite-local.yaml
cf() { "$COFFER" --no-progress -q "$@"; }
now() { date +%s.%N; }
mibs() { python3 -c "import sys; print('%.1f' % ($1 / 1048576 / ($2)))"; }

echo "== generating a ${size_mb} MiB deployment and a ${file_mb} MiB file"
python3 "$src/tests/tools/gen_asterdrive.py" "$ASTERDRIVE_ROOT" --size-mb "$size_mb" --seed 1 >/dev/null || exit 2
head -c $((file_mb << 20)) /dev/urandom >"$ASTERDRIVE_ROOT/data/big.bin"
BYTES=$((file_mb << 20))
cf init -p "$POLICY" >/dev/null || exit 2
cf backup -p "$POLICY" >/dev/null || exit 2
sync

echo "== coffer restore --only data"
t0=$(now)
cf restore -p "$POLICY" --to "$W/out" --only data --no-validate --no-checks >/dev/null || exit 2
t1=$(now)
RT=$(python3 -c "print($t1 - $t0)")
DATA_BYTES=$(du -sb --apparent-size "$W/out" | cut -f1)
R_RATE=$(mibs "$DATA_BYTES" "$RT")
echo "restore: $DATA_BYTES bytes in ${RT}s = $R_RATE MiB/s"
rm -rf "$W/out"

echo "== coffer mount: cat of the ${file_mb} MiB file"
mkdir -p "$MNT"
args=()
[ -n "$cache" ] && args=(--cache-size "$cache")
"$COFFER" --no-progress mount -p "$POLICY" "${args[@]}" "$MNT" 2>"$W/mount.err" &
MPID=$!
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
mountpoint -q "$MNT" || { cat "$W/mount.err"; exit 2; }
t0=$(now)
cat "$MNT/latest/data/data/big.bin" >/dev/null
t1=$(now)
MT=$(python3 -c "print($t1 - $t0)")
M_RATE=$(mibs "$BYTES" "$MT")
echo "mount: $BYTES bytes in ${MT}s = $M_RATE MiB/s"
cmp -s "$ASTERDRIVE_ROOT/data/big.bin" "$MNT/latest/data/data/big.bin" && echo "mount: content equal" ||
    { echo "mount: content DIFFERS"; exit 1; }
N=$(find "$MNT/sets" | wc -l)
RSS_KB=$(awk '/^VmHWM/ {print $2}' "/proc/$MPID/status")
echo "mount: $N names listed; peak RSS $((RSS_KB / 1024)) MiB"
kill -INT "$MPID"
wait "$MPID"
echo "mount: exit $?"
MPID=""

if command -v restic >/dev/null; then
    echo "== restic mount (side by side)"
    export RESTIC_PASSWORD=bench RESTIC_REPOSITORY=$W/restic
    restic init -q >/dev/null 2>&1 && restic backup -q "$ASTERDRIVE_ROOT/data/big.bin" >/dev/null 2>&1
    mkdir -p "$W/rmnt"
    restic mount "$W/rmnt" >/dev/null 2>&1 &
    RPID=$!
    f=""
    for _ in $(seq 100); do
        f=$(find "$W/rmnt/snapshots/latest/" -name big.bin 2>/dev/null | head -1)
        [ -n "$f" ] && break
        sleep 0.2
    done
    if [ -n "$f" ]; then
        t0=$(now); cat "$f" >/dev/null; t1=$(now)
        echo "restic mount: $BYTES bytes in $(python3 -c "print($t1 - $t0)")s = $(mibs "$BYTES" "$(python3 -c "print($t1 - $t0)")") MiB/s"
    else
        echo "restic mount: not mounted, skipped"
    fi
    kill -INT "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null
fi

echo
ok=0
ratio=$(python3 -c "print('%.2f' % ($M_RATE / $R_RATE))")
if python3 -c "import sys; sys.exit(0 if $M_RATE >= 0.5 * $R_RATE else 1)"; then
    echo "target met: mount read $M_RATE MiB/s >= 0.5 x restore $R_RATE MiB/s (ratio $ratio)"
else
    echo "target MISSED: mount read $M_RATE MiB/s < 0.5 x restore $R_RATE MiB/s (ratio $ratio)"; ok=1
fi
if [ "$RSS_KB" -le $((64 * 1024)) ]; then
    echo "target met: mount peak RSS $((RSS_KB / 1024)) MiB <= 64 MiB"
else
    echo "target MISSED: mount peak RSS $((RSS_KB / 1024)) MiB > 64 MiB"; ok=1
fi
exit $ok
