#!/usr/bin/env bash
# Immutable targets: the cost of object lock retention on backups. The same
# AsterDrive-like deployment is backed up to two repositories on Ceph RGW
# (loopback, tests/tools/ceph_rgw.sh): one in a plain bucket, one with
# `immutable:` in a bucket with object lock. Each gets a full backup, then
# RUNS second backups after changing --change-pct of the files; then
# `coffer extend-locks` measures what one lock extension of every live
# object costs (a backup does one about every quarter lock period).
#
#   bench/immutable_bench.sh [--size-mb N] [--change-pct P] [--runs N]
#                            [--keep] [--workdir DIR]
#
#   --size-mb N      deployment size (default 1024)
#   --change-pct P   share of the files changed before each second backup (default 0.5)
#   --runs N         second backups per repository, alternating (default 3)
#
# Target (printed with the figures): second backup to the immutable target
# <= 1.15 x the same backup to the plain one (median of the runs). Exit
# status 0 when it holds, 1 otherwise.
set -uo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
size_mb=1024
change=0.5
runs=3
keep=0
workparent="${BENCH_TMPDIR:-/var/tmp}"
while [ $# -gt 0 ]; do
    case "$1" in
        --size-mb) size_mb=${2:?}; shift 2 ;;
        --change-pct) change=${2:?}; shift 2 ;;
        --runs) runs=${2:?}; shift 2 ;;
        --keep) keep=1; shift ;;
        --workdir) workparent=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "immutable_bench: unknown argument $1" >&2; exit 2 ;;
    esac
done

COFFER=${COFFER:-$src/build/coffer}
[ -x "$COFFER" ] || { echo "immutable_bench: no coffer at $COFFER (build first or set COFFER)" >&2; exit 2; }
PLUGINS=${COFFER_PLUGIN_DIR:-$(dirname "$COFFER")/plugins}
for b in aws radosgw /usr/bin/time python3; do
    command -v "$b" >/dev/null || { echo "immutable_bench: $b not installed" >&2; exit 2; }
done

W=$(mktemp -d "$workparent/coffer-immutable-bench.XXXXXX")
RGW=$W/rgw
cleanup() {
    bash "$src/tests/tools/ceph_rgw.sh" stop "$RGW" >/dev/null 2>&1
    if [ "$keep" = 1 ]; then echo "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

echo "== work directory $W"
echo "== starting Ceph RGW"
RGW_MEMSTORE_BYTES=$(( (size_mb * 3 + 2048) * 1024 * 1024 )) \
    bash "$src/tests/tools/ceph_rgw.sh" start "$RGW" >"$W/rgw.env" || { echo "immutable_bench: RGW failed" >&2; exit 1; }
. "$W/rgw.env"
AWSX=(aws --endpoint-url "$AWS_ENDPOINT_URL")
"${AWSX[@]}" s3api create-bucket --bucket bench-plain >/dev/null || exit 1
"${AWSX[@]}" s3api put-bucket-versioning --bucket bench-plain --versioning-configuration Status=Enabled || exit 1
"${AWSX[@]}" s3api create-bucket --bucket bench-locked --object-lock-enabled-for-bucket >/dev/null || exit 1

LIVE=$W/live
echo "== generating a ${size_mb} MiB AsterDrive deployment"
python3 "$src/tests/tools/gen_asterdrive.py" "$LIVE" --size-mb "$size_mb" --seed 3 >"$W/gen.json" || exit 1

: "${COFFER_PASSPHRASE:=immutable-bench-passphrase}"
export COFFER_PASSPHRASE
export ASTERDRIVE_ROOT=$LIVE ASTERDRIVE_STOP=true ASTERDRIVE_START=true ASTERDRIVE_DOCTOR=true
base=$src/policies/asterdrive-sqlite-local.yaml
sed "s|^\(    location: \).*$|\1s3://bench-plain/repo|" "$base" >"$W/plain.yaml"
sed "s|^\(    location: \).*$|\1s3://bench-locked/repo\n    immutable:\n      mode: governance\n      days: 30|" "$base" >"$W/locked.yaml"
CF=("$COFFER" --no-progress --plugin-dir "$PLUGINS")

# timed LABEL CMD...: wall seconds and peak RSS (KiB) into $W/LABEL.time
timed() {
    local label=$1; shift
    /usr/bin/time -f '%e %M' -o "$W/$label.time" "$@" >"$W/$label.out" 2>"$W/$label.err" || {
        echo "immutable_bench: $label failed:" >&2; tail -5 "$W/$label.err" >&2; exit 1; }
}

for r in plain locked; do
    "${CF[@]}" init -p "$W/$r.yaml" >/dev/null 2>&1 || { echo "init $r failed" >&2; exit 1; }
done
echo "== full backups"
for r in plain locked; do timed "full-$r" "${CF[@]}" backup -p "$W/$r.yaml" --json; done
for i in $(seq 1 "$runs"); do
    python3 "$src/tests/tools/mutate_asterdrive.py" "$LIVE" --percent "$change" --seed "$i" >/dev/null ||
        { echo "immutable_bench: mutate failed" >&2; exit 1; }
    # alternate which repository goes first: neither gets a warmer cache
    if [ $((i % 2)) = 1 ]; then order="plain locked"; else order="locked plain"; fi
    for r in $order; do timed "second$i-$r" "${CF[@]}" backup -p "$W/$r.yaml" --json; done
done
echo "== one lock extension of every live object"
timed extend "${CF[@]}" extend-locks -p "$W/locked.yaml" --json
objects=$("${AWSX[@]}" s3api list-objects-v2 --bucket bench-locked --prefix repo/ --query 'length(Contents)' --output text)

python3 - "$W" "$runs" "$size_mb" "$change" "$objects" <<'PY'
import json, statistics, sys
W, runs, size_mb, change, objects = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def t(label):
    e, m = open(f"{W}/{label}.time").read().split()
    return float(e), int(m) / 1024
def req(label):
    try:
        return json.load(open(f"{W}/{label}.out")).get("retention", {}).get("requests", 0)
    except Exception:
        return "?"
print()
print(f"deployment {size_mb} MiB, {change}% of the files changed before each second backup; "
      f"immutable repository: {objects} objects")
fp, fl = t("full-plain"), t("full-locked")
print(f"full backup     plain {fp[0]:7.2f} s {fp[1]:6.1f} MiB   immutable {fl[0]:7.2f} s {fl[1]:6.1f} MiB"
      f"   ratio {fl[0] / fp[0]:.2f}   retention requests {req('full-locked')}")
ratios = []
for i in range(1, runs + 1):
    p, l = t(f"second{i}-plain"), t(f"second{i}-locked")
    ratios.append(l[0] / p[0])
    print(f"second backup {i} plain {p[0]:7.2f} s {p[1]:6.1f} MiB   immutable {l[0]:7.2f} s {l[1]:6.1f} MiB"
          f"   ratio {l[0] / p[0]:.2f}   retention requests {req(f'second{i}-locked')}")
e = t("extend")
ej = json.load(open(f"{W}/extend.out"))
print(f"extend-locks    {e[0]:7.2f} s {e[1]:6.1f} MiB   {ej['requests']} retention requests "
      f"({ej['requests'] / max(e[0], 0.001):.0f}/s); with days: 30 a backup does this about every 7.5 days")
med = statistics.median(ratios)
print(f"second backup, immutable / plain (median of {runs}): {med:.2f}   "
      f"(target <= 1.15: {'ok' if med <= 1.15 else 'MISSED'})")
sys.exit(0 if med <= 1.15 else 1)
PY
