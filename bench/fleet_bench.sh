#!/usr/bin/env bash
# Fleet benchmark: eight hosts (UTS namespaces with their own host names)
# back up distinct AsterDrive-like deployments to one repository on Ceph
# RGW (loopback, tests/tools/ceph_rgw.sh) at the same time, against one
# such backup alone; then a ninth host backs up a copy of the first
# host's deployment. Needs root (unshare --uts).
#
#   bench/fleet_bench.sh [--hosts N] [--size-mb N] [--keep] [--workdir DIR]
#
#   --hosts N      concurrent hosts (default 8)
#   --size-mb N    size of each host's deployment (default 128)
#   --keep         keep the work directory
#   --workdir DIR  parent of the work directory (default $BENCH_TMPDIR, else
#                  /var/tmp)
#
# Targets: the N concurrent backups finish within 1.5 x (one backup alone
# x N / cores); the ninth host adds < 2% to the repository. Every host's
# set is restored and compared with its deployment.
# Environment: COFFER (default build/coffer).
set -uo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
hosts=8
size_mb=128
keep=0
workparent="${BENCH_TMPDIR:-/var/tmp}"
while [ $# -gt 0 ]; do
    case "$1" in
        --hosts) hosts=${2:?--hosts needs a value}; shift 2 ;;
        --size-mb) size_mb=${2:?--size-mb needs a value}; shift 2 ;;
        --keep) keep=1; shift ;;
        --workdir) workparent=${2:?--workdir needs a value}; shift 2 ;;
        -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "fleet_bench: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
die() { echo "fleet_bench: $*" >&2; exit 1; }
for v in "$hosts" "$size_mb"; do
    case "$v" in '' | *[!0-9]*) die "--hosts and --size-mb take numbers" ;; esac
done
COFFER=${COFFER:-$src/build/coffer}
[ -x "$COFFER" ] || die "no coffer at $COFFER (build first or set COFFER)"
PLUGINS=$(dirname "$COFFER")/plugins
[ -f "$PLUGINS/storage_s3.so" ] || die "no storage_s3.so in $PLUGINS"
for b in aws radosgw unshare python3 /usr/bin/time; do
    command -v "$b" >/dev/null || die "$b not installed"
done
unshare --uts true 2>/dev/null || die "cannot make UTS namespaces (run as root)"
cores=$(nproc)

W=$(mktemp -d "$workparent/coffer-fleet-bench.XXXXXX") || die "mktemp failed"
RGW=$W/rgw
cleanup() {
    bash "$src/tests/tools/ceph_rgw.sh" stop "$RGW" >/dev/null 2>&1
    if [ "$keep" = 1 ]; then echo "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== starting Ceph RGW"
RGW_MEMSTORE_BYTES=$(((size_mb * (hosts + 2) * 2 + 2048) * 1024 * 1024)) \
    bash "$src/tests/tools/ceph_rgw.sh" start "$RGW" >"$W/rgw.env" || die "RGW failed to start"
. "$W/rgw.env"
awsx() { aws --endpoint-url "$AWS_ENDPOINT_URL" "$@"; }
awsx s3 mb s3://fleet >/dev/null || die "cannot create the bucket"
export COFFER_PASSPHRASE=coffer-bench-password COFFER_PLUGIN_PATH=$PLUGINS
export ASTERDRIVE_STOP=true ASTERDRIVE_START=true ASTERDRIVE_DOCTOR=true

policy() { # I ROOT LOCATION
    sed -e "s|^name: .*|name: fleet-h$1|" -e "s|^root: .*|root: $2|" \
        -e "s|    location: .*|    location: $3\n    endpoint: $AWS_ENDPOINT_URL\n    access_key_env: AWS_ACCESS_KEY_ID\n    secret_key_env: AWS_SECRET_ACCESS_KEY|" \
        "$src/policies/asterdrive-sqlite-local.yaml" >"$W/h$1.yaml"
}
# "${on_host[@]}" NAME CMD...: CMD with the host name NAME
on_host=(unshare --uts -- sh -c 'hostname "$0" && exec "$@"')
bytes_under() {
    awsx s3api list-objects-v2 --bucket fleet --prefix "$1" --query 'sum(Contents[].Size || `[0]`)' --output text
}
secs() { python3 -c 'import sys; print("%.2f" % float(sys.argv[1]))' "$1"; }

echo "== generating $((hosts + 1)) deployments of $size_mb MiB"
for i in $(seq 0 "$hosts"); do
    python3 "$src/tests/tools/gen_asterdrive.py" "$W/host$i" --size-mb "$size_mb" --seed $((500 + i)) >/dev/null ||
        die "gen_asterdrive.py failed"
done

# One backup alone (host 0, its own repository in the same bucket).
policy 0 "$W/host0" s3://fleet/alone
"$COFFER" --no-progress init -p "$W/h0.yaml" >/dev/null 2>&1 || die "init (alone) failed"
/usr/bin/time -f '%e %M' -o "$W/alone.time" "${on_host[@]}" fleet-h0 "$COFFER" --no-progress backup -p "$W/h0.yaml" \
    >"$W/alone.log" 2>&1 || die "the lone backup failed: $(tail -3 "$W/alone.log")"
read -r t_alone m_alone <"$W/alone.time"
echo "   one backup alone: $t_alone s, peak RSS $((m_alone / 1024)) MiB"

# N at once into one repository.
for i in $(seq 1 "$hosts"); do policy "$i" "$W/host$i" s3://fleet/shared; done
"$COFFER" --no-progress init -p "$W/h1.yaml" >/dev/null 2>&1 || die "init (shared) failed"
t0=$(date +%s.%N)
pids=()
for i in $(seq 1 "$hosts"); do
    /usr/bin/time -f '%e %M' -o "$W/b$i.time" "${on_host[@]}" "fleet-h$i" "$COFFER" --no-progress backup \
        -p "$W/h$i.yaml" >"$W/b$i.log" 2>&1 &
    pids+=($!)
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
t1=$(date +%s.%N)
[ "$failed" = 0 ] || die "$failed of the concurrent backups failed (logs in $W/b*.log; --keep)"
t_fleet=$(python3 -c "print(round($t1 - $t0, 2))")
m_fleet=0
for i in $(seq 1 "$hosts"); do
    read -r _ m <"$W/b$i.time"
    [ "$m" -gt "$m_fleet" ] && m_fleet=$m
done
echo "   $hosts backups at once: $t_fleet s, largest peak RSS $((m_fleet / 1024)) MiB"

# Every set restores to its deployment.
for i in $(seq 1 "$hosts"); do
    "$COFFER" --no-progress restore -p "$W/h$i.yaml" --to "$W/out$i" --no-validate >/dev/null 2>&1 ||
        die "restore of host $i failed"
    diff -r -q --no-dereference -x .tmp -x .uploads -x 'asterdrive.db*' "$W/host$i/data" "$W/out$i/data" >/dev/null ||
        die "host $i's restored files differ"
done
echo "   every host's set restores to its files"

# A ninth host with the first host's data.
before=$(bytes_under shared/data/)
cp -a "$W/host1" "$W/host9"
policy 9 "$W/host9" s3://fleet/shared
/usr/bin/time -f '%e %M' -o "$W/b9.time" "${on_host[@]}" fleet-h9 "$COFFER" --no-progress backup -p "$W/h9.yaml" \
    >"$W/b9.log" 2>&1 || die "host 9's backup failed"
after=$(bytes_under shared/data/)
total=$(bytes_under shared/)

limit=$(python3 -c "print(round(1.5 * $t_alone * $hosts / $cores, 2))")
grown=$(python3 -c "print(round(100 * ($after - $before) / $total, 3))")
v1=$(python3 -c "print('met' if $t_fleet <= $limit else 'NOT met')")
v2=$(python3 -c "print('met' if $grown < 2 else 'NOT met')")
echo
echo "fleet_bench: $hosts hosts x $size_mb MiB, $cores cores, Ceph RGW on loopback"
printf '  one backup alone            %8s s\n' "$(secs "$t_alone")"
printf '  %d backups at once           %8s s (target <= 1.5 x %s x %d / %d = %s): %s\n' \
    "$hosts" "$(secs "$t_fleet")" "$(secs "$t_alone")" "$hosts" "$cores" "$limit" "$v1"
printf '  ratio to one alone x N/cores %7s\n' "$(python3 -c "print(round($t_fleet / ($t_alone * $hosts / $cores), 3))")"
printf '  ninth host, same data       %8s%% of the repository added (target < 2): %s\n' "$grown" "$v2"
printf '  largest peak RSS            %8s MiB\n' "$((m_fleet / 1024))"
echo "{\"bench\":\"fleet\",\"hosts\":$hosts,\"size_mb\":$size_mb,\"alone_s\":$t_alone,\"fleet_s\":$t_fleet,\"limit_s\":$limit,\"ninth_host_growth_pct\":$grown}"
[ "$v1" = met ] && [ "$v2" = met ]
