#!/usr/bin/env bash
# Repository lifecycle benchmark: what encryption, prune and check cost.
#
#   bench/lifecycle_bench.sh [--size-mb N] [--runs N] [--history N] [--forget N]
#                            [--cold] [--keep] [--workdir DIR] [--only LIST]
#
#   --size-mb N    deployment size (default 1024)
#   --runs N       backups of each kind for the encryption figure (default 3;
#                  the median is reported; runs alternate plain/encrypted)
#   --history N    backups of the prune history (default 30)
#   --forget N     sets forgotten before the prune (default 20)
#   --cold         drop the page cache before each timed command (root);
#                  default: warm (each input read once before timing)
#   --keep         keep the work directory
#   --workdir DIR  parent of the work directory (default $BENCH_TMPDIR or /var/tmp)
#   --only LIST    comma-separated subset of encryption,prune,check
#
# 1. encryption: a full backup of the same deployment into a fresh
#    unencrypted repository and into a fresh encrypted one (repokey), with
#    the shipped policy (stop/start `true`); median wall times and overhead.
# 2. prune: --history backups of coffer (encrypted) and of restic of the
#    same deployment, with tests/tools/mutate_asterdrive.py --percent 1
#    --seed N between them; then forget all but the last (history - forget)
#    and prune: `coffer forget --keep-last K && coffer prune` against
#    `restic forget --keep-last K --prune` (both at their default 5%
#    max-unused). Every kept set is restored and compared afterwards.
# 3. check: `coffer check --read-data` on the encrypted repository against
#    `cat` of all its pack files to /dev/null (both cold or both warm):
#    MiB/s of pack bytes, and the ratio.
#
# Environment: COFFER (default build/coffer), RESTIC (default restic).
set -uo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
size_mb=1024 runs=3 history=30 forget=20 cold=0 keep=0 only="encryption,prune,check"
workparent="${BENCH_TMPDIR:-/var/tmp}"
usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --size-mb) size_mb="${2:?}"; shift 2 ;;
        --runs) runs="${2:?}"; shift 2 ;;
        --history) history="${2:?}"; shift 2 ;;
        --forget) forget="${2:?}"; shift 2 ;;
        --cold) cold=1; shift ;;
        --keep) keep=1; shift ;;
        --workdir) workparent="${2:?}"; shift 2 ;;
        --only) only="${2:?}"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "lifecycle_bench: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
die() { echo "lifecycle_bench: $*" >&2; exit 1; }
want() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
[ "$forget" -lt "$history" ] || die "--forget must be below --history"

coffer="${COFFER:-$src/build/coffer}"
case "$coffer" in /*) ;; *) coffer="$src/$coffer" ;; esac
[ -x "$coffer" ] || die "coffer binary not found at $coffer (set COFFER or build)"
restic="${RESTIC:-restic}"
want prune && { command -v "$restic" >/dev/null || die "restic is required for the prune comparison"; }
[ -x /usr/bin/time ] || die "GNU time (/usr/bin/time) is required"
policy="$src/policies/asterdrive-sqlite-local.yaml"
gen="$src/tests/tools/gen_asterdrive.py"
mutate="$src/tests/tools/mutate_asterdrive.py"
if [ "$cold" = 1 ] && { [ "$(id -u)" -ne 0 ] || ! { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; }; then
    echo "lifecycle_bench: cannot drop the page cache: running warm"
    cold=0
fi

mkdir -p "$workparent" || die "cannot create $workparent"
work="$(mktemp -d "$workparent/coffer-lifecycle-bench.XXXXXX")" || die "mktemp failed"
cleanup() { if [ "$keep" = 1 ]; then echo "lifecycle_bench: kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM
logs="$work/logs"
mkdir -p "$logs"
export ASTERDRIVE_ROOT="$work/asterdrive" ASTERDRIVE_STOP=true ASTERDRIVE_START=true
export COFFER_PASSPHRASE="lifecycle bench" RESTIC_PASSWORD="lifecycle bench"
CF=("$coffer" --no-progress)

drop() { [ "$cold" = 1 ] && { sync; echo 3 >/proc/sys/vm/drop_caches; }; true; }
# timed NAME CMD...: wall seconds (GNU time) into $T_WALL, user+sys into $T_CPU
timed() {
    local name=$1; shift
    drop
    /usr/bin/time -f '%e %U %S' -o "$logs/$name.time" "$@" >"$logs/$name.log" 2>&1
    local rc=$?
    read -r T_WALL u s <"$logs/$name.time"
    T_CPU=$(echo "$u + $s" | bc)
    [ $rc -eq 0 ] || { tail -20 "$logs/$name.log"; die "$name failed (exit $rc)"; }
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
pct() { echo "scale=1; 100 * ($1 - $2) / $2" | bc; }
warm_tree() { [ "$cold" = 1 ] || find "$1" -type f -exec cat {} + >/dev/null 2>&1; }

echo "lifecycle_bench: $(nproc) CPU(s), $(uptime | sed 's/.*load/load/'), cache: $([ $cold = 1 ] && echo cold || echo warm)"
echo "lifecycle_bench: coffer $("$coffer" --version | head -1); $("$restic" version 2>/dev/null | head -1)"
echo "lifecycle_bench: generating a ${size_mb} MiB deployment"
python3 "$gen" "$ASTERDRIVE_ROOT" --size-mb "$size_mb" --seed 1 >"$logs/gen.json" || die "gen_asterdrive.py failed"

# ---- 1. encryption overhead ---------------------------------------------------
if want encryption; then
    plain=() enc=() plain_cpu=() enc_cpu=()
    warm_tree "$ASTERDRIVE_ROOT"
    for i in $(seq 1 "$runs"); do
        for kind in plain enc; do
            repo="$work/enc-$kind-$i"
            e=none
            [ $kind = enc ] && e=repokey
            COFFER_REPO=$repo "${CF[@]}" init -p "$policy" --encryption $e >/dev/null 2>&1 || die "init $kind"
            COFFER_REPO=$repo timed "backup-$kind-$i" "${CF[@]}" backup -p "$policy"
            echo "lifecycle_bench: encryption: run $i $kind backup ${T_WALL} s (cpu ${T_CPU} s)"
            if [ $kind = plain ]; then plain+=("$T_WALL") plain_cpu+=("$T_CPU"); else enc+=("$T_WALL") enc_cpu+=("$T_CPU"); fi
            [ $kind = enc ] && [ "$i" = 1 ] && want check && keep_repo="$repo" && continue
            rm -rf "$repo"
        done
    done
    mp=$(median "${plain[@]}") me=$(median "${enc[@]}")
    enc_overhead=$(pct "$me" "$mp")
    cp_=$(median "${plain_cpu[@]}") ce=$(median "${enc_cpu[@]}")
    echo "lifecycle_bench: encryption: median wall: unencrypted ${mp} s, encrypted ${me} s: overhead ${enc_overhead}% (target <= 15%)"
    echo "lifecycle_bench: encryption: median cpu (user+sys): unencrypted ${cp_} s, encrypted ${ce} s: overhead $(pct "$ce" "$cp_")%"
fi

# ---- 2. prune against restic --------------------------------------------------
if want prune; then
    C_REPO="$work/prune-coffer" R_REPO="$work/prune-restic"
    COFFER_REPO=$C_REPO "${CF[@]}" init -p "$policy" >/dev/null 2>&1 || die "coffer init"
    "$restic" -r "$R_REPO" init >/dev/null 2>&1 || die "restic init"
    snaps="$work/snaps"
    mkdir -p "$snaps"
    for n in $(seq 1 "$history"); do
        [ "$n" -gt 1 ] && { python3 "$mutate" "$ASTERDRIVE_ROOT" --percent 1 --seed "$n" >/dev/null || die "mutate"; }
        COFFER_REPO=$C_REPO "${CF[@]}" backup -p "$policy" >"$logs/hist-coffer-$n.log" 2>&1 || die "coffer backup $n"
        (cd "$ASTERDRIVE_ROOT" && "$restic" -r "$R_REPO" --quiet backup --exclude data/.tmp --exclude data/.uploads .) \
            >"$logs/hist-restic-$n.log" 2>&1 || die "restic backup $n"
        if [ "$n" -gt "$forget" ]; then
            python3 "$src/tests/tools/snapshot.py" "$ASTERDRIVE_ROOT" "$snaps/$n.json" >/dev/null || die snapshot
        fi
        printf '\rlifecycle_bench: prune: history %d/%d' "$n" "$history"
    done
    echo
    keep_last=$((history - forget))
    cb=$(du -sb "$C_REPO" | cut -f1) rb=$(du -sb "$R_REPO" | cut -f1)
    COFFER_REPO=$C_REPO timed prune-coffer bash -c "'$coffer' --no-progress forget -p '$policy' --keep-last $keep_last && '$coffer' --no-progress prune -p '$policy'"
    c_wall=$T_WALL c_cpu=$T_CPU
    timed prune-restic "$restic" -r "$R_REPO" forget --keep-last "$keep_last" --prune
    r_wall=$T_WALL r_cpu=$T_CPU
    ca=$(du -sb "$C_REPO" | cut -f1) ra=$(du -sb "$R_REPO" | cut -f1)
    echo "lifecycle_bench: prune: coffer forget+prune ${c_wall} s (cpu ${c_cpu} s), repository $((cb >> 20)) -> $((ca >> 20)) MiB"
    echo "lifecycle_bench: prune: restic forget --prune ${r_wall} s (cpu ${r_cpu} s), repository $((rb >> 20)) -> $((ra >> 20)) MiB"
    grep -E "kept|removed|plan" "$logs/prune-coffer.log" | sed 's/^/    /'
    # the kept sets must be intact
    ids=$(COFFER_REPO=$C_REPO "${CF[@]}" sets -p "$policy" --json 2>/dev/null |
        python3 -c 'import json,sys; print(" ".join(s["id"] for s in json.load(sys.stdin)))')
    n=$forget
    bad=0
    for id in $ids; do
        n=$((n + 1))
        rm -rf "$work/restored"
        COFFER_REPO=$C_REPO "${CF[@]}" restore -p "$policy" --set "$id" --to "$work/restored" --no-validate \
            >"$logs/restore-$n.log" 2>&1 || { bad=1; echo "lifecycle_bench: restore of $id FAILED"; continue; }
        python3 "$src/tests/tools/snapshot.py" "$work/restored" "$work/restored.json" >/dev/null
        python3 "$src/tests/tools/compare.py" "$snaps/$n.json" "$work/restored.json" \
            --exclude data/.tmp --exclude data/.uploads >"$logs/compare-$n.log" 2>&1 ||
            { bad=1; echo "lifecycle_bench: set $id DIFFERS after prune (see $logs/compare-$n.log)"; }
    done
    rm -rf "$work/restored"
    [ $bad = 0 ] && echo "lifecycle_bench: prune: all $keep_last kept sets restore identical to their source"
    prune_ratio=$(echo "scale=2; $c_wall / $r_wall" | bc)
    echo "lifecycle_bench: prune: coffer/restic time ratio ${prune_ratio} (target <= 1)"
    [ -z "${keep_repo:-}" ] && keep_repo=$C_REPO
fi

# ---- 3. check --read-data against raw reads ------------------------------------
if want check; then
    if [ -z "${keep_repo:-}" ]; then
        keep_repo="$work/check-repo"
        COFFER_REPO=$keep_repo "${CF[@]}" init -p "$policy" >/dev/null 2>&1 || die init
        COFFER_REPO=$keep_repo "${CF[@]}" backup -p "$policy" >/dev/null 2>&1 || die backup
    fi
    bytes=$(find "$keep_repo/data" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
    cat_w=() chk_w=() phase_s=()
    for i in 1 2 3; do
        warm_tree "$keep_repo/data"
        timed "cat-$i" bash -c "find '$keep_repo/data' -type f -exec cat {} + >/dev/null"
        cat_w+=("$T_WALL")
        warm_tree "$keep_repo/data"
        COFFER_REPO=$keep_repo timed "check-$i" "${CF[@]}" check -p "$policy" --read-data
        chk_w+=("$T_WALL")
        phase=$(grep -o 'read [0-9]* of [0-9]* pack(s), .* in [0-9.]* s ([0-9]* MiB/s)' "$logs/check-$i.log")
        phase_s+=("$(printf '%s\n' "$phase" | sed 's/.* in \([0-9.]*\) s .*/\1/')")
        echo "lifecycle_bench: check: run $i: cat ${cat_w[-1]} s, check --read-data ${T_WALL} s (cpu ${T_CPU} s; pack phase: $phase)"
    done
    mc=$(median "${cat_w[@]}") mk=$(median "${chk_w[@]}")
    raw=$(echo "scale=0; $bytes / 1048576 / $mc" | bc) got=$(echo "scale=0; $bytes / 1048576 / $mk" | bc)
    mp=$(median "${phase_s[@]}")
    ph=$(echo "scale=0; $bytes / 1048576 / $mp" | bc)
    echo "lifecycle_bench: check: $((bytes >> 20)) MiB of packs: cat ${raw} MiB/s; check --read-data, whole command ${got} MiB/s ($(echo "scale=1; 100 * $mc / $mk" | bc)% of raw), pack reading phase ${ph} MiB/s ($(echo "scale=1; 100 * $mc / $mp" | bc)% of raw) (target >= 80%)"
fi
