#!/usr/bin/env bash
# Object-storage benchmark: coffer against restic, both with an encrypted
# repository in the same Ceph RGW (tests/tools/ceph_rgw.sh), on the same
# AsterDrive-like deployment, in the same run. Phases, each timed for both
# tools one after the other: full backup, second backup after a ~1%
# change (tests/tools/mutate_asterdrive.py), restore of the latest set,
# a copy of both sets to a second repository in the same RGW (restic copy
# --from-repo, coffer copy --set all to a second target), and a check that
# reads every pack (restic check --read-data, coffer check --read-data). Prints wall time, peak RSS and coffer/restic ratios,
# and compares both restores with the source (bench/treesum.py). A cold
# `find` that stats every file of the deployment is timed too: what one
# thread pays to look at every file on this disk (coffer's metadata
# read-ahead stats on several threads, and can come in under it).
#
#   bench/s3_restic_bench.sh [--size-mb N] [--delay-ms MS]
#                            [--link-rtt-ms MS] [--request-delay-ms MS] [--data DIR]
#                            [--coffer-opt KEY=VALUE]... [--restore-runs N]
#                            [--keep] [--workdir DIR]
#
#   --size-mb N        deployment size (default 1024)
#   --delay-ms MS      round-trip delay between the tools and RGW: RGW
#                      listens on one end of a veth pair, the tools run in
#                      a network namespace on the other, and tc netem
#                      delays each direction by MS/2 (default 0: loopback)
#   --link-rtt-ms MS   where the kernel has no netem: both tools talk to
#                      RGW through tests/tools/delay_proxy.c (compiled into
#                      the work directory), a TCP proxy that holds the bytes
#                      of each direction MS/2 ms, a new connection one round
#                      trip more, with at most 3 MiB waiting per direction
#   --request-delay-ms MS  both tools talk to
#                      RGW through tests/tools/s3_fault_proxy.py, which holds
#                      every answer MS ms before sending it (one round trip
#                      per request; the proxy's own CPU time counts against
#                      both tools alike)
#   --data DIR         an existing deployment (gen_asterdrive.py output);
#                      it is copied, since the second phase changes it
#   --coffer-opt K=V   an extra option of coffer's s3 driver (repeatable),
#                      e.g. connections=16
#   --restore-runs N   restore the latest set N times with each tool,
#                      alternating (default 1); the table shows each
#                      tool's median and the runs are listed below it
#   --keep             keep the work directory
#   --workdir DIR      parent of the work directory (default $BENCH_TMPDIR,
#                      else /var/tmp)
#
# Targets (issue figures, printed with the results): coffer/restic <= 0.5
# for the full backup and the restore, <= 0.3 for the second backup, and
# coffer's peak RSS <= 128 MiB in every phase. Exit status 0 when all hold.
# The page cache is dropped before every timed command when running as root.
#
# Environment: COFFER (default build/coffer), COFFER_PLUGIN_DIR (default the
# plugins/ beside it).
set -uo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
size_mb=1024
delay_ms=0
req_delay_ms=0
link_rtt_ms=0
data=""
keep=0
restore_runs=1
copts=()
workparent="${BENCH_TMPDIR:-/var/tmp}"
while [ $# -gt 0 ]; do
    case "$1" in
        --size-mb) size_mb=${2:?}; shift 2 ;;
        --delay-ms) delay_ms=${2:?}; shift 2 ;;
        --request-delay-ms) req_delay_ms=${2:?}; shift 2 ;;
        --link-rtt-ms) link_rtt_ms=${2:?}; shift 2 ;;
        --data) data=${2:?}; shift 2 ;;
        --coffer-opt) copts+=("${2:?}"); shift 2 ;;
        --restore-runs) restore_runs=${2:?}; shift 2 ;;
        --keep) keep=1; shift ;;
        --workdir) workparent=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "s3_restic_bench: unknown argument $1" >&2; exit 2 ;;
    esac
done
die() { echo "s3_restic_bench: $*" >&2; exit 1; }
case "$restore_runs" in ''|*[!0-9]*|0) die "--restore-runs needs a positive whole number, not '$restore_runs'" ;; esac

COFFER=${COFFER:-$src/build/coffer}
[ -x "$COFFER" ] || die "no coffer at $COFFER (build first or set COFFER)"
COFFER=$(cd "$(dirname "$COFFER")" && pwd)/$(basename "$COFFER")
PLUGINS=${COFFER_PLUGIN_DIR:-$(dirname "$COFFER")/plugins}
[ -f "$PLUGINS/storage_s3.so" ] || die "no storage_s3.so in $PLUGINS"
for b in restic radosgw /usr/bin/time python3 curl; do
    command -v "$b" >/dev/null || die "$b not installed"
done
if [ "$delay_ms" != 0 ]; then
    [ "$(id -u)" = 0 ] || die "--delay-ms needs root (ip netns, tc)"
    command -v tc >/dev/null && command -v ip >/dev/null || die "--delay-ms needs iproute2"
fi

W=$(mktemp -d "$workparent/coffer-s3r-bench.XXXXXX")
RGW=$W/rgw
NS=""
PROXY=""
cleanup() {
    [ -n "$PROXY" ] && kill "$PROXY" 2>/dev/null
    bash "$src/tests/tools/ceph_rgw.sh" stop "$RGW" >/dev/null 2>&1
    if [ -n "$NS" ]; then
        ip link del "cfb$$a" 2>/dev/null
        ip netns del "$NS" 2>/dev/null
    fi
    if [ "$keep" = 1 ]; then echo "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

# The delayed link: RGW on 10.X.Y.1 in this namespace, the tools in $NS
# on 10.X.Y.2, netem on both ends of the veth pair.
INNS=()
RGW_ADDR=127.0.0.1
if [ "$delay_ms" != 0 ]; then
    NS=cfbench$$
    net="10.$(( ($$ >> 8) % 200 + 20 )).$(( $$ % 250 ))"
    ip netns add "$NS" || die "ip netns add failed"
    ip link add "cfb$$a" type veth peer name "cfb$$b" || die "veth failed"
    ip link set "cfb$$b" netns "$NS"
    ip addr add "$net.1/24" dev "cfb$$a"
    ip link set "cfb$$a" up
    ip -n "$NS" addr add "$net.2/24" dev "cfb$$b"
    ip -n "$NS" link set "cfb$$b" up
    ip -n "$NS" link set lo up
    half=$(python3 -c "print($delay_ms / 2)")
    tc qdisc add dev "cfb$$a" root netem delay "${half}ms" limit 1000000 || die "tc netem failed: this kernel has no netem qdisc (sch_netem)"
    tc -n "$NS" qdisc add dev "cfb$$b" root netem delay "${half}ms" limit 1000000 || die "tc netem failed: this kernel has no netem qdisc (sch_netem)"
    RGW_ADDR=$net.1
    INNS=(ip netns exec "$NS")
    echo "== delayed link: ${delay_ms} ms round trip ($(ip netns exec "$NS" ping -c 3 -q "$RGW_ADDR" | tail -1))"
fi

echo "== work directory $W"
echo "== starting Ceph RGW on $RGW_ADDR"
RGW_ADDR=$RGW_ADDR RGW_MEMSTORE_BYTES=$(( (size_mb * 4 + 2048) * 1024 * 1024 )) \
    bash "$src/tests/tools/ceph_rgw.sh" start "$RGW" >"$W/rgw.env" || die "RGW failed to start"
. "$W/rgw.env"
if [ "$req_delay_ms" != 0 ]; then
    echo "* . slow 1000000000 $req_delay_ms" >"$W/proxy.rules"
    python3 "$src/tests/tools/s3_fault_proxy.py" --upstream "${AWS_ENDPOINT_URL#http://}" \
        --rules "$W/proxy.rules" --log /dev/null --port-file "$W/proxy.port" >"$W/proxy.out" 2>&1 &
    PROXY=$!
    for _ in $(seq 50); do [ -s "$W/proxy.port" ] && break; sleep 0.1; done
    [ -s "$W/proxy.port" ] || die "the delaying proxy did not start"
    export AWS_ENDPOINT_URL=http://127.0.0.1:$(cat "$W/proxy.port")
    echo "== every S3 answer held ${req_delay_ms} ms (proxy on $AWS_ENDPOINT_URL)"
fi

if [ "$link_rtt_ms" != 0 ]; then
    [ "$req_delay_ms" = 0 ] || die "--link-rtt-ms and --request-delay-ms exclude each other"
    cc -O2 -o "$W/delay_proxy" "$src/tests/tools/delay_proxy.c" || die "cannot compile tests/tools/delay_proxy.c"
    "$W/delay_proxy" --upstream "${AWS_ENDPOINT_URL#http://}" --rtt-ms "$link_rtt_ms" \
        --port-file "$W/proxy.port" >"$W/proxy.out" 2>&1 &
    PROXY=$!
    for _ in $(seq 50); do [ -s "$W/proxy.port" ] && break; sleep 0.1; done
    [ -s "$W/proxy.port" ] || die "the delay proxy did not start"
    export AWS_ENDPOINT_URL=http://127.0.0.1:$(cat "$W/proxy.port")
    echo "== ${link_rtt_ms} ms round trips to RGW (delay proxy on $AWS_ENDPOINT_URL; $(curl -s -o /dev/null -w '%{time_total}' "$AWS_ENDPOINT_URL/") s for one request on a new connection)"
fi

LIVE=$W/live
if [ -n "$data" ]; then
    echo "== copying the deployment $data"
    cp -a "$data" "$LIVE" || exit 1
else
    echo "== generating a ${size_mb} MiB AsterDrive deployment"
    python3 "$src/tests/tools/gen_asterdrive.py" "$LIVE" --size-mb "$size_mb" --seed 1 >"$W/gen.json" || exit 1
fi
echo "   $(du -sh "$LIVE" | cut -f1), $(find "$LIVE" -type f | wc -l) files"

export COFFER_PASSPHRASE=s3-restic-bench-passphrase
export RESTIC_PASSWORD=$COFFER_PASSPHRASE
export COFFER_CACHE_DIR=$W/coffer-cache
export ASTERDRIVE_ROOT=$LIVE ASTERDRIVE_STOP=true ASTERDRIVE_START=true ASTERDRIVE_DOCTOR=true
export COFFER_REPO=s3://coffer-bench/asterdrive
POLICY=$W/policy.yaml
extra=""
for o in ${copts[@]+"${copts[@]}"}; do extra+="\n    ${o%%=*}: ${o#*=}"; done
sed "s|^\(    location: .*\)$|\1$extra\n  - name: second\n    location: s3://coffer-bench/copy$extra|" \
    "$src/policies/asterdrive-sqlite-local.yaml" >"$POLICY"
CF=("$COFFER" --no-progress --plugin-dir "$PLUGINS")
RESTIC=(restic -r "s3:$AWS_ENDPOINT_URL/restic-bench" --cache-dir "$W/restic-cache" --quiet)

drop_caches() {
    [ "$(id -u)" = 0 ] && { sync; echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null
    return 0
}
# timed LABEL CMD...: wall seconds and peak RSS (KiB) into $W/LABEL.time
timed() {
    local label=$1; shift
    drop_caches
    ${INNS[@]+"${INNS[@]}"} /usr/bin/time -f '%e %M' -o "$W/$label.time" "$@" \
        >"$W/$label.out" 2>"$W/$label.err" || {
        echo "s3_restic_bench: $label failed:" >&2; tail -5 "$W/$label.err" >&2; exit 1; }
    echo "   $label: $(cut -d' ' -f1 "$W/$label.time") s, $(( $(cut -d' ' -f2 "$W/$label.time") / 1024 )) MiB"
}
treesum() { python3 "$src/bench/treesum.py" "$1" | cut -d' ' -f1; }

${INNS[@]+"${INNS[@]}"} "${RESTIC[@]}" init >/dev/null 2>"$W/restic-init.err" || die "restic init: $(tail -2 "$W/restic-init.err")"
${INNS[@]+"${INNS[@]}"} "${CF[@]}" init -p "$POLICY" >/dev/null 2>"$W/coffer-init.err" || die "coffer init: $(tail -2 "$W/coffer-init.err")"
export RESTIC_FROM_PASSWORD=$RESTIC_PASSWORD
RESTIC2=(restic -r "s3:$AWS_ENDPOINT_URL/restic-copy" --cache-dir "$W/restic-cache2" --quiet)
${INNS[@]+"${INNS[@]}"} "${RESTIC2[@]}" init --copy-chunker-params --from-repo "s3:$AWS_ENDPOINT_URL/restic-bench" \
    >/dev/null 2>"$W/restic-init2.err" || die "restic init (copy): $(tail -2 "$W/restic-init2.err")"

# The policy's second target is only the copy's destination: every
# other command names --target primary (a backup would copy to it).
# restic backs up what coffer's policy does: the deployment without the
# upload staging directories (the application is stopped in this
# benchmark, as the policy would stop it, so the SQLite file is consistent).
restic_backup() {
    (cd "$LIVE" && timed "$1" "${RESTIC[@]}" backup --exclude data/.tmp --exclude data/.uploads .) || exit 1
}
echo "== full backup"
restic_backup restic-full
timed coffer-full "${CF[@]}" backup -p "$POLICY" --target primary
SUM1=$(treesum "$LIVE")

echo "== second backup after a ~1% change"
python3 "$src/tests/tools/mutate_asterdrive.py" "$LIVE" --percent 1 --seed 2 >"$W/mutate.log" 2>&1 || die "mutate failed"
restic_backup restic-second
timed coffer-second "${CF[@]}" backup -p "$POLICY" --target primary
SUM2=$(treesum "$LIVE")
# What one thread pays to look at every file: a cold find that stats each
# one (no repository, no network).
timed find-cold find "$LIVE" -printf '%s %T@ %C@\n'

echo "== restore latest"
ok_r=identical ok_c=identical
for run in $(seq "$restore_runs"); do
    timed "restic-restore-$run" "${RESTIC[@]}" restore latest --target "$W/r-restic"
    timed "coffer-restore-$run" "${CF[@]}" restore -p "$POLICY" --target primary --no-checks --no-validate --to "$W/r-coffer"
    R1=$(treesum "$W/r-restic"); R2=$(treesum "$W/r-coffer")
    [ "$R1" = "$SUM2" ] || ok_r="DIFFERS"
    [ "$R2" = "$SUM2" ] || ok_c="DIFFERS"
    rm -rf "$W/r-restic" "$W/r-coffer"
done
echo "   restored trees: restic $ok_r, coffer $ok_c (source before the change: $SUM1)"

echo "== copy of both sets to a second repository"
timed restic-copy "${RESTIC2[@]}" copy --from-repo "s3:$AWS_ENDPOINT_URL/restic-bench"
timed coffer-copy "${CF[@]}" copy -p "$POLICY" --from primary --to second --set all

echo "== check, reading every pack"
timed restic-check "${RESTIC[@]}" check --read-data
timed coffer-check "${CF[@]}" check -p "$POLICY" --target primary --read-data

python3 - "$W" "$size_mb" "$delay_ms" "$ok_r" "$ok_c" "$req_delay_ms" "$link_rtt_ms" "$restore_runs" <<'PY'
import statistics, sys
w, size, delay, okr, okc, rdelay, lrtt = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
runs = int(sys.argv[8])
def rd1(label):
    t, m = open(f"{w}/{label}.time").read().split()
    return float(t), int(m) / 1024
def rd(label):
    # the restore's median time over its runs, and its largest peak RSS
    if not label.endswith("-restore"):
        return rd1(label)
    v = [rd1(f"{label}-{i}") for i in range(1, runs + 1)]
    return statistics.median(t for t, _ in v), max(m for _, m in v)
targets = {"full": 0.5, "second": 0.3, "restore": 0.5, "copy": None, "check": None}
ok = okr == "identical" and okc == "identical"
link = "loopback" if delay == "0" else f"{delay} ms round trip"
if lrtt != "0":
    link = f"{lrtt} ms round trip (tests/tools/delay_proxy.c)"
if rdelay != "0":
    link += f", every answer held {rdelay} ms by a proxy"
print()
print(f"deployment {size} MiB, Ceph RGW, {link}")
print(f"{'phase':<9} {'restic s':>9} {'MiB':>6} {'coffer s':>9} {'MiB':>6} {'ratio':>6}  target")
for ph, tgt in targets.items():
    rt, rm = rd(f"restic-{ph}")
    ct, cm = rd(f"coffer-{ph}")
    ratio = ct / rt if rt else 0
    verdict = []
    if tgt is not None:
        verdict.append(f"<= {tgt}: {'ok' if ratio <= tgt else 'MISSED'}")
        ok &= ratio <= tgt
    verdict.append(f"RSS <= 128: {'ok' if cm <= 128 else 'MISSED'}")
    ok &= cm <= 128
    print(f"{ph:<9} {rt:9.2f} {rm:6.0f} {ct:9.2f} {cm:6.0f} {ratio:6.2f}  {', '.join(verdict)}")
ft, _ = rd("find-cold")
rt, _ = rd("restic-second")
print(f"cold find stat'ing every file (one thread): {ft:.2f} s, {ft / rt:.2f} x restic's "
      f"second backup")
if runs > 1:
    for tool in ("restic", "coffer"):
        v = [rd1(f"{tool}-restore-{i}")[0] for i in range(1, runs + 1)]
        print(f"{tool} restores (s): {' '.join(f'{t:.2f}' for t in v)}; median {statistics.median(v):.2f}")
print(f"restores: restic {okr}, coffer {okc}")
sys.exit(0 if ok else 1)
PY
