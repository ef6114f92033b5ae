#!/usr/bin/env bash
# Subset restore benchmark: getting one 1 MiB file back from a set of an
# AsterDrive-like deployment, coffer (`restore --include`, `dump`) against
# a full coffer restore and restic (`restic restore --include`). See
# bench/README.md.
#
#   bench/subset_bench.sh [--size-mb N] [--keep] [--warm] [--no-restic]
#                         [--workdir DIR]
#
#   --size-mb N    size of the generated deployment (default 1024)
#   --keep         keep the work directory
#   --warm         never drop the page cache (default: drop it before every
#                  timed command when running as root)
#   --no-restic    coffer only
#   --workdir DIR  parent of the work directory (default $BENCH_TMPDIR, else
#                  /var/tmp)
#
# Targets: the one-file restore reads < 1% of the repository's pack bytes
# and takes < 0.05x the wall time of a full restore.
# Environment: COFFER (default build/coffer).
set -uo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
size_mb=1024
keep=0
cache_mode=cold
restic=1
workparent="${BENCH_TMPDIR:-/var/tmp}"

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --size-mb) size_mb="${2:?--size-mb needs a value}"; shift 2 ;;
        --size-mb=*) size_mb="${1#*=}"; shift ;;
        --keep) keep=1; shift ;;
        --warm) cache_mode=warm; shift ;;
        --no-restic) restic=0; shift ;;
        --workdir) workparent="${2:?--workdir needs a value}"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "subset_bench: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
case "$size_mb" in '' | *[!0-9]*) echo "subset_bench: --size-mb must be a number" >&2; exit 2 ;; esac
die() { echo "subset_bench: $*" >&2; exit 1; }
command -v python3 >/dev/null || die "python3 is required"
[ "$restic" = 0 ] || command -v restic >/dev/null || die "restic is required (or --no-restic)"
coffer="${COFFER:-$src/build/coffer}"
[ -x "$coffer" ] || die "$coffer missing: build it first (cmake --build build --target coffer)"
policy="$src/policies/asterdrive-sqlite-local.yaml"

if [ "$cache_mode" = cold ]; then
    if [ "$(id -u)" -ne 0 ] || ! { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
        cache_mode=warm
        echo "subset_bench: cannot drop the page cache: running warm"
    fi
fi
mkdir -p "$workparent" || die "cannot create $workparent"
work="$(mktemp -d "$workparent/coffer-subset-bench.XXXXXX")" || die "mktemp failed"
cleanup() { if [ "$keep" = 1 ]; then echo "subset_bench: kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

export ASTERDRIVE_ROOT="$work/asterdrive" COFFER_REPO="$work/repo-coffer"
export ASTERDRIVE_STOP=true ASTERDRIVE_START=true ASTERDRIVE_DOCTOR=true
export COFFER_PASSPHRASE=coffer-bench-password RESTIC_PASSWORD=coffer-bench-password
rrepo="$work/repo-restic"
rcmd() { restic -r "$rrepo" --cache-dir "$work/restic-cache" --quiet "$@"; }
cf() { "$coffer" --no-progress "$@"; }

drop_caches() { [ "$cache_mode" = cold ] && { sync; echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; true; }
# timed NAME CMD...: wall seconds in T_NAME, output in $work/NAME.log
timed() {
    local name=$1; shift
    drop_caches
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >"$work/$name.log" 2>"$work/$name.err" || { tail -20 "$work/$name.err"; die "$name failed"; }
    t1=$(date +%s.%N)
    printf -v "T_$name" '%s' "$(python3 -c "print(round($t1 - $t0, 3))")"
    printf 'subset_bench: %-16s %8ss\n' "$name" "$(eval echo "\$T_$name")"
}
ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{a / b:.4f}' if b else '-')" "$1" "$2"; }

echo "subset_bench: generating a ${size_mb} MiB deployment in $work"
python3 "$src/tests/tools/gen_asterdrive.py" "$ASTERDRIVE_ROOT" --size-mb "$size_mb" --seed 7 >/dev/null ||
    die "gen_asterdrive.py failed"
rel=data/uploads/zz/bench-1mib.bin
mkdir -p "$ASTERDRIVE_ROOT/data/uploads/zz"
head -c 1048576 /dev/urandom >"$ASTERDRIVE_ROOT/$rel"

cf init -p "$policy" >"$work/init.log" 2>&1 || die "coffer init failed"
timed coffer_backup cf backup -p "$policy"
if [ "$restic" = 1 ]; then
    rcmd init >"$work/rinit.log" 2>&1 || die "restic init failed"
    timed restic_backup bash -c "cd '$ASTERDRIVE_ROOT' && restic -r '$rrepo' --cache-dir '$work/restic-cache' --quiet backup --exclude data/.tmp --exclude data/.uploads ."
fi

timed coffer_full cf restore -p "$policy" --to "$work/full" --no-validate
timed coffer_one cf restore -p "$policy" --to "$work/one" --include "data/$rel" --json
timed coffer_dump bash -c "'$coffer' --no-progress dump -p '$policy' 'data/$rel' >'$work/dumped'"
cmp -s "$ASTERDRIVE_ROOT/$rel" "$work/one/$rel" || die "the restored file differs from the source"
cmp -s "$ASTERDRIVE_ROOT/$rel" "$work/dumped" || die "the dumped file differs from the source"
read_bytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_read"])' "$work/coffer_one.log")
pack_bytes=$(find "$COFFER_REPO/data" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
if [ "$restic" = 1 ]; then
    timed restic_full rcmd restore latest --target "$work/rfull"
    timed restic_one rcmd restore latest --target "$work/rone" --include "/$rel"
    cmp -s "$ASTERDRIVE_ROOT/$rel" "$work/rone/$rel" || die "restic's restored file differs"
fi

echo
echo "subset_bench: ${size_mb} MiB deployment, cache $cache_mode, one 1 MiB file"
printf '  pack bytes in the repository        %s\n' "$pack_bytes"
printf '  pack bytes read (restore --include) %s\n' "$read_bytes"
r1=$(ratio "$read_bytes" "$pack_bytes")
r2=$(ratio "$T_coffer_one" "$T_coffer_full")
v1=$(python3 -c "print('met' if $r1 < 0.01 else 'MISSED')")
v2=$(python3 -c "print('met' if $r2 < 0.05 else 'MISSED')")
printf '  bytes read / pack bytes             %s (target < 0.01): %s\n' "$r1" "$v1"
printf '  one file / full restore, wall time  %s (target < 0.05): %s\n' "$r2" "$v2"
printf '  dump / full restore, wall time      %s\n' "$(ratio "$T_coffer_dump" "$T_coffer_full")"
if [ "$restic" = 1 ]; then
    printf '  restic one file / restic full       %s\n' "$(ratio "$T_restic_one" "$T_restic_full")"
    printf '  coffer one file / restic one file   %s\n' "$(ratio "$T_coffer_one" "$T_restic_one")"
    printf '  coffer full / restic full           %s\n' "$(ratio "$T_coffer_full" "$T_restic_full")"
fi
[ "$v1" = met ] && [ "$v2" = met ]
