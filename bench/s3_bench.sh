#!/usr/bin/env bash
# S3 benchmark: coffer's direct backup to an S3 target against the
# two-step alternative (coffer's backup to a local target, then
# `aws s3 sync` of that repository to a bucket), on one AsterDrive-like
# deployment, with Ceph RGW on loopback (tests/tools/ceph_rgw.sh).
#
#   bench/s3_bench.sh [--size-mb N] [--part-size SIZE] [--parallel-parts N]
#                     [--keep] [--workdir DIR]
#
#   --size-mb N          deployment size (default 1024)
#   --part-size SIZE     the s3 driver's part_size (default 16M)
#   --parallel-parts N   the s3 driver's parallel_parts (default 4)
#   --sign-payload B     the s3 driver's sign_payload (default true)
#   --data DIR           use an existing deployment (gen_asterdrive.py output)
#                        instead of generating one
#   --keep               keep the work directory
#   --workdir DIR        parent of the work directory (default $BENCH_TMPDIR,
#                        else /var/tmp)
#
# Targets (printed with the figures):
#   direct S3 time <= 0.8 x (local backup time + aws s3 sync time)
#   direct S3 peak RSS <= part_size x parallel_parts + 48 MiB
# Exit status 0 when both hold, 1 otherwise.
#
# Environment: COFFER (default build/coffer), COFFER_PLUGIN_DIR (default
# the directory holding coffer's build plugins/), COFFER_PASSPHRASE
# (default a fixed one: both repositories are encrypted, coffer's default).
set -uo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
size_mb=1024
part_size=16M
parallel=4
sign_payload=true
keep=0
data=""
workparent="${BENCH_TMPDIR:-/var/tmp}"
while [ $# -gt 0 ]; do
    case "$1" in
        --size-mb) size_mb=${2:?}; shift 2 ;;
        --part-size) part_size=${2:?}; shift 2 ;;
        --parallel-parts) parallel=${2:?}; shift 2 ;;
        --sign-payload) sign_payload=${2:?}; shift 2 ;;
        --keep) keep=1; shift ;;
        --data) data=${2:?}; shift 2 ;;
        --workdir) workparent=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "s3_bench: unknown argument $1" >&2; exit 2 ;;
    esac
done

COFFER=${COFFER:-$src/build/coffer}
[ -x "$COFFER" ] || { echo "s3_bench: no coffer at $COFFER (build first or set COFFER)" >&2; exit 2; }
PLUGINS=${COFFER_PLUGIN_DIR:-$(dirname "$COFFER")/plugins}
[ -f "$PLUGINS/storage_s3.so" ] || { echo "s3_bench: no storage_s3.so in $PLUGINS" >&2; exit 2; }
for b in aws radosgw /usr/bin/time python3; do
    command -v "$b" >/dev/null || { echo "s3_bench: $b not installed" >&2; exit 2; }
done

W=$(mktemp -d "$workparent/coffer-s3-bench.XXXXXX")
RGW=$W/rgw
cleanup() {
    bash "$src/tests/tools/ceph_rgw.sh" stop "$RGW" >/dev/null 2>&1
    if [ "$keep" = 1 ]; then echo "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

to_bytes() { python3 -c 'import sys,re; m=re.fullmatch(r"(\d+)([KMGT]?)i?B?",sys.argv[1].upper()); print(int(m[1])*1024**" KMGT".index(m[2] or " "))' "$1"; }
secs() { python3 -c 'import sys; print("%.2f" % float(sys.argv[1]))' "$1"; }

echo "== work directory $W"
echo "== starting Ceph RGW"
RGW_MEMSTORE_BYTES=$(( (size_mb * 3 + 2048) * 1024 * 1024 )) \
    bash "$src/tests/tools/ceph_rgw.sh" start "$RGW" >"$W/rgw.env" || { echo "s3_bench: RGW failed" >&2; exit 1; }
. "$W/rgw.env"
awsx() { aws --endpoint-url "$AWS_ENDPOINT_URL" "$@"; }
echo "   $AWS_ENDPOINT_URL"

LIVE=$W/live
if [ -n "$data" ]; then
    LIVE=$(cd "$data" && pwd) || exit 2
    echo "== deployment $LIVE"
else
    echo "== generating a ${size_mb} MiB AsterDrive deployment"
    python3 "$src/tests/tools/gen_asterdrive.py" "$LIVE" --size-mb "$size_mb" --seed 1 >"$W/gen.json" || exit 1
fi
du -sh "$LIVE" | awk '{print "   " $1}'

# Repositories are encrypted by default; both runs use the same passphrase.
: "${COFFER_PASSPHRASE:=s3-bench-passphrase}"
export COFFER_PASSPHRASE
export ASTERDRIVE_ROOT=$LIVE ASTERDRIVE_STOP=true ASTERDRIVE_START=true ASTERDRIVE_DOCTOR=true
POLICY=$W/policy.yaml
sed "s|^\(    location: .*\)$|\1\n    part_size: $part_size\n    parallel_parts: $parallel\n    sign_payload: $sign_payload|" \
    "$src/policies/asterdrive-sqlite-local.yaml" >"$POLICY.s3"
cp "$src/policies/asterdrive-sqlite-local.yaml" "$POLICY.local"
CF=("$COFFER" --no-progress --plugin-dir "$PLUGINS")
AWSX=(aws --endpoint-url "$AWS_ENDPOINT_URL")

# timed LABEL CMD...: wall seconds and peak RSS (KiB) into $W/LABEL.time
timed() {
    local label=$1; shift
    /usr/bin/time -f '%e %M' -o "$W/$label.time" "$@" >"$W/$label.out" 2>"$W/$label.err" || {
        echo "s3_bench: $label failed:" >&2; tail -5 "$W/$label.err" >&2; exit 1; }
}

COFFER_REPO=$W/repo-local "${CF[@]}" init -p "$POLICY.local" >/dev/null 2>&1 || { echo "init local failed" >&2; exit 1; }
COFFER_REPO=s3://bench-direct/asterdrive "${CF[@]}" init -p "$POLICY.s3" >/dev/null 2>&1 || { echo "init s3 failed" >&2; exit 1; }
awsx s3 mb s3://bench-sync >/dev/null || exit 1
sync

echo "== two-step: coffer backup to a local target, then aws s3 sync"
COFFER_REPO=$W/repo-local timed local "${CF[@]}" backup -p "$POLICY.local"
timed sync "${AWSX[@]}" s3 sync --only-show-errors "$W/repo-local" s3://bench-sync/asterdrive
echo "== direct: coffer backup to s3://bench-direct/asterdrive"
COFFER_REPO=s3://bench-direct/asterdrive timed direct "${CF[@]}" backup -p "$POLICY.s3"

read -r t_local rss_local <"$W/local.time"
read -r t_sync rss_sync <"$W/sync.time"
read -r t_direct rss_direct <"$W/direct.time"
stored=$(du -sb "$W/repo-local" | awk '{print $1}')
n_sync=$(awsx s3api list-objects-v2 --bucket bench-sync --query 'length(Contents)' --output text)
n_direct=$(awsx s3api list-objects-v2 --bucket bench-direct --query 'length(Contents)' --output text)
budget=$(( $(to_bytes "$part_size") * parallel / 1024 + 48 * 1024 ))

python3 - "$t_local" "$t_sync" "$t_direct" "$rss_local" "$rss_direct" "$budget" "$stored" "$size_mb" \
    "$n_sync" "$n_direct" "$part_size" "$parallel" <<'PY'
import sys
tl, ts, td = map(float, sys.argv[1:4])
rl, rd, budget, stored = map(int, sys.argv[4:8])
size_mb = int(sys.argv[8])
two = tl + ts
ratio = td / two
print()
print(f"deployment          {size_mb} MiB, repository {stored / 2**20:.0f} MiB, "
      f"objects: sync {sys.argv[9]}, direct {sys.argv[10]}")
print(f"local backup        {tl:8.2f} s   peak RSS {rl / 1024:7.1f} MiB")
print(f"aws s3 sync         {ts:8.2f} s")
print(f"two-step total      {two:8.2f} s")
print(f"direct S3 backup    {td:8.2f} s   peak RSS {rd / 1024:7.1f} MiB   ({size_mb / td:.0f} MiB/s)")
print(f"ratio direct / two-step   {ratio:.2f}   (target <= 0.80: {'ok' if ratio <= 0.8 else 'MISSED'})")
print(f"peak RSS direct           {rd / 1024:.1f} MiB   (target <= part_size {sys.argv[11]} x "
      f"{sys.argv[12]} + 48 MiB = {budget / 1024:.0f} MiB: {'ok' if rd <= budget else 'MISSED'})")
sys.exit(0 if ratio <= 0.8 and rd <= budget else 1)
PY
