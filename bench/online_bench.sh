#!/usr/bin/env bash
# Online backup benchmark: what the protections of an online backup cost
# while the application keeps writing. See bench/README.md.
#
#   bench/online_bench.sh [--size-mb N] [--runs N] [--churn PCT] [--cold]
#                         [--keep] [--workdir DIR] [--skip-plain] [--skip-btrfs]
#                         [--breakdown]
#
#   --size-mb N    size of the generated deployment (default 1024)
#   --runs N       timed runs of each variant; medians are reported (default 3)
#   --churn PCT    files changed by the writer during one backup, in percent
#                  of the deployment's files rows (default 1)
#   --cold         drop the page cache before every timed backup (root)
#   --keep         keep the work directory
#   --workdir DIR  parent of the work directory (default $BENCH_TMPDIR, else /var/tmp)
#   --skip-plain / --skip-btrfs   run only the other part
#   --breakdown    part 1 also runs `twopass` (two passes, references skipped)
#                  and `refs` (one pass, references verified), to show which
#                  of the two costs what
#
# Part 1 (the work directory's file system): the shipped online SQLite policy
# (`online`: two file passes, references verified) against the same policy
# with `two_pass: false` and `references: skip` (`plain`). Part 2 (a btrfs
# file system on a loop device, data/ a subvolume; root): `plain` against
# the shipped online policy with `snapshot: btrfs` on the data component
# (`snapshot`), and `online` beside them. Every variant runs a full backup
# into a new repository and a second backup into the same repository, each
# while tests/tools/aster_writer.py uploads and purges files at the rate that
# changes --churn percent of the files during one backup (calibrated by an
# untimed backup of each kind first). Each timed command runs under GNU time
# (wall seconds, peak RSS of coffer).
#
# Environment: COFFER (default build/coffer; built with cmake when missing).
# Targets: online/plain <= 1.15; snapshot/plain <= 1.05 (within 5%).
set -uo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
size_mb=1024
runs=3
churn=1
cold=0
keep=0
do_plain=1
do_btrfs=1
breakdown=0
workparent="${BENCH_TMPDIR:-/var/tmp}"

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "online_bench: $*" >&2; exit 1; }
say() { echo "online_bench: $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --size-mb) size_mb="${2:?--size-mb needs a value}"; shift 2 ;;
        --runs) runs="${2:?--runs needs a value}"; shift 2 ;;
        --churn) churn="${2:?--churn needs a value}"; shift 2 ;;
        --cold) cold=1; shift ;;
        --keep) keep=1; shift ;;
        --workdir) workparent="${2:?--workdir needs a value}"; shift 2 ;;
        --skip-plain) do_plain=0; shift ;;
        --skip-btrfs) do_btrfs=0; shift ;;
        --breakdown) breakdown=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "online_bench: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
for v in "$size_mb" "$runs"; do
    case "$v" in '' | *[!0-9]*) die "--size-mb and --runs take whole numbers" ;; esac
done
case "$churn" in '' | *[!0-9.]*) die "--churn takes a number (percent)" ;; esac
[ "$runs" -ge 1 ] || die "--runs must be at least 1"

[ -x /usr/bin/time ] || die "GNU time (/usr/bin/time, Debian package 'time') is required"
[ -x /usr/bin/python3 ] || die "/usr/bin/python3 is required"
command -v sqlite3 >/dev/null || die "sqlite3 is required"
PY=/usr/bin/python3
tools="$src/tests/tools"
shipped="$src/policies/asterdrive-sqlite-online.yaml"
[ -f "$shipped" ] || die "$shipped is missing"
coffer="${COFFER:-$src/build/coffer}"
case "$coffer" in /*) ;; *) coffer="$PWD/$coffer" ;; esac
if [ ! -x "$coffer" ]; then
    say "$coffer missing: building it (cmake, RelWithDebInfo)"
    cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
        cmake --build "$src/build" -j2 >/dev/null || die "building coffer failed"
    coffer="$src/build/coffer"
fi
plugins="${COFFER_PLUGIN_BUILD_DIR:-$(dirname "$coffer")/plugins}"
cfx=("$coffer" --no-progress --plugin-dir "$plugins")
cf() { "${cfx[@]}" "$@"; }

mkdir -p "$workparent" || die "cannot create $workparent"
work=$(mktemp -d "$workparent/coffer-online-bench.XXXXXX") || die "mktemp failed"
chmod 755 "$work"
mnt=$work/mnt
loop=
wpid=
cleanup() {
    [ -n "$wpid" ] && kill "$wpid" 2>/dev/null && wait "$wpid" 2>/dev/null
    if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" 2>/dev/null || umount -l "$mnt"; fi
    [ -n "$loop" ] && losetup -d "$loop" 2>/dev/null
    if [ "$keep" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$cold" = 1 ] && { [ "$(id -u)" -ne 0 ] || ! { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; }; then
    say "cannot drop the page cache (needs root): running warm"
    cold=0
fi
drop_caches() { [ "$cold" = 1 ] && { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }; }

export COFFER_PASSPHRASE=bench-passphrase-not-a-secret
export ASTERDRIVE_DOCTOR=true

# ---- policies -------------------------------------------------------------
# plain: one file pass, no reference check; online: the shipped policy;
# snapshot: the shipped policy, data/ read from a btrfs snapshot.
sed -e 's/^\(  two_pass:\) true/\1 false/' -e 's/^\(  references:\) verify/\1 skip/' \
    "$shipped" >"$work/plain.yaml"
grep -q '^  two_pass: false' "$work/plain.yaml" && grep -q '^  references: skip' "$work/plain.yaml" ||
    die "cannot derive the plain policy from $shipped"
cp "$shipped" "$work/online.yaml"
sed -e 's/^\(  references:\) verify/\1 skip/' "$shipped" >"$work/twopass.yaml"
sed -e 's/^\(  two_pass:\) true/\1 false/' "$shipped" >"$work/refs.yaml"
sed 's/^\(    exclude: \[data\/.tmp, data\/.uploads\]\)$/\1\n    snapshot: btrfs/' "$shipped" >"$work/snapshot.yaml"
grep -q '^    snapshot: btrfs' "$work/snapshot.yaml" || die "cannot add snapshot: btrfs to $shipped"
for v in plain online snapshot twopass refs; do
    cf policy check "$work/$v.yaml" >/dev/null 2>"$work/check.err" ||
        die "policy $v refused: $(tail -2 "$work/check.err")"
done

# ---- helpers ----------------------------------------------------------------
# timed LABEL CMD...: under GNU time; SECS, RSS_KIB, RC; output in $work/LABEL.out
timed() {
    local label=$1; shift
    sync
    drop_caches
    /usr/bin/time -f '%e %M' -o "$work/$label.time" "$@" >"$work/$label.out" 2>"$work/$label.err"
    RC=$?
    # the last line: GNU time puts "Command exited with non-zero status N" first
    read -r SECS RSS_KIB < <(tail -1 "$work/$label.time") || true
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
fmt() { awk -v x="$1" 'BEGIN {printf "%.2f", x}'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", (b > 0) ? a / b : 0}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

# writer_start ROOT RATE / writer_stop: the writer at RATE transactions/s
writer_start() {
    rm -f "$work/writer.stop" "$work/writer.count"
    "$PY" "$tools/aster_writer.py" "$1" --until-file "$work/writer.stop" --rate "$2" \
        --purge-fraction 0.45 --copy-fraction 0.1 --count-file "$work/writer.count" \
        --seed "$RANDOM" >"$work/writer.json" 2>"$work/writer.err" &
    wpid=$!
    local i
    for i in $(seq 1 200); do
        [ "$(wcount)" -ge 3 ] && return 0
        kill -0 "$wpid" 2>/dev/null || die "the writer stopped: $(cat "$work/writer.err")"
        sleep 0.05
    done
    die "the writer did not start: $(cat "$work/writer.err")"
}
wcount() { awk '{print $1}' "$work/writer.count" 2>/dev/null || echo 0; }
writer_stop() {
    touch "$work/writer.stop"
    wait "$wpid" || die "the writer failed: $(cat "$work/writer.err")"
    wpid=
}

# backup_under_writer LABEL ROOT POLICY RATE: one timed backup while the
# writer runs; SECS, RSS_KIB, CHURN (transactions during the backup), and
# the backup's verdict in MARK (ok / INCONSISTENT) and REFS (verified /
# skipped / none: what the storage-objects reference check did)
backup_under_writer() {
    local label=$1 root=$2 pol=$3 rate=$4 c0 c1
    writer_start "$root" "$rate"
    c0=$(wcount)
    timed "$label" "${cfx[@]}" backup -p "$pol" --json
    c1=$(wcount)
    writer_stop
    [ "$RC" = 0 ] || [ "$RC" = 3 ] || die "$label: backup failed (exit $RC): $(tail -3 "$work/$label.err")"
    CHURN=$((c1 - c0))
    read -r MARK REFS < <("$PY" -c 'import json, sys
j = json.load(open(sys.argv[1]))
r = [x for x in j.get("references", []) if x["name"] == "storage-objects"]
print("INCONSISTENT" if j.get("inconsistent") else "ok",
      "none" if not r else ("skipped" if r[0].get("skipped") else "verified"))' "$work/$label.out")
    SNAP=no
    grep -qi 'btrfs snapshot' "$work/$label.err" && SNAP=yes
}

files_rows() { sqlite3 "file:$1/data/asterdrive.db?mode=ro" "SELECT COUNT(*) FROM files" 2>/dev/null; }

# rate_for SECONDS FILES: transactions per second that change --churn % of
# FILES in SECONDS
rate_for() { awk -v s="$1" -v f="$2" -v c="$churn" 'BEGIN {r = f * c / 100 / (s > 0.05 ? s : 0.05); printf "%.2f", (r < 0.5) ? 0.5 : r}'; }

# bench_part NAME ROOT VARIANT...: calibrate, then --runs runs of every
# variant (order rotated per run); results in $work/NAME.results
bench_part() {
    local part=$1 root=$2 i v k
    shift 2
    local variants=("$@")
    export ASTERDRIVE_ROOT=$root
    local nfiles
    nfiles=$(files_rows "$root")
    say "[$part] $nfiles files rows; calibrating the writer's rate with an untimed plain backup"
    export COFFER_REPO=$work/repo-cal
    cf init -p "$work/plain.yaml" >/dev/null 2>&1 || die "init failed"
    timed cal-full "${cfx[@]}" backup -p "$work/plain.yaml" --json
    [ "$RC" = 0 ] || [ "$RC" = 3 ] || die "calibration backup failed: $(tail -3 "$work/cal-full.err")"
    local rate_full
    rate_full=$(rate_for "$SECS" "$nfiles")
    timed cal-second "${cfx[@]}" backup -p "$work/plain.yaml" --json
    [ "$RC" = 0 ] || [ "$RC" = 3 ] || die "calibration backup failed: $(tail -3 "$work/cal-second.err")"
    local rate_second
    rate_second=$(rate_for "$SECS" "$nfiles")
    rm -rf "$COFFER_REPO"
    say "[$part] writer: $rate_full transactions/s during full backups, $rate_second during second backups ($churn% of $nfiles files per backup)"
    : >"$work/$part.results"
    for i in $(seq 1 "$runs"); do
        for k in $(seq 0 $((${#variants[@]} - 1))); do
            v=${variants[$(((k + i - 1) % ${#variants[@]}))]}
            export COFFER_REPO=$work/repo-$part-$v-$i
            cf init -p "$work/$v.yaml" >/dev/null 2>&1 || die "init failed"
            local phase rate
            for phase in full second; do
                rate=$rate_full
                [ $phase = second ] && rate=$rate_second
                nfiles=$(files_rows "$root")
                backup_under_writer "$part-$v-$phase-$i" "$root" "$work/$v.yaml" "$rate"
                local pct
                pct=$(awk -v c="$CHURN" -v f="$nfiles" 'BEGIN {printf "%.2f", 100 * c / f}')
                echo "$part $v $phase $i $SECS $RSS_KIB $CHURN $pct $MARK $REFS $SNAP" >>"$work/$part.results"
                printf 'online_bench: [%s] run %d %-8s %-6s %7.2f s  peak RSS %6s MiB  churn %4d (%s%%)  %s, references %s%s\n' \
                    "$part" "$i" "$v" "$phase" "$SECS" "$(mib "$RSS_KIB")" "$CHURN" "$pct" "$MARK" "$REFS" \
                    "$([ "$v" = snapshot ] && echo ", btrfs snapshot taken: $SNAP")"
            done
            rm -rf "$COFFER_REPO"
        done
    done
}

# report PART BASE OTHER TARGET: medians and the median of per-run ratios
report() {
    local part=$1 base=$2 other=$3 target=$4 phase
    for phase in full second; do
        local bs=() os=() rs=() br orr i b o
        for i in $(seq 1 "$runs"); do
            b=$(awk -v p="$part" -v v="$base" -v ph="$phase" -v r="$i" '$1 == p && $2 == v && $3 == ph && $4 == r {print $5}' "$work/$part.results")
            o=$(awk -v p="$part" -v v="$other" -v ph="$phase" -v r="$i" '$1 == p && $2 == v && $3 == ph && $4 == r {print $5}' "$work/$part.results")
            bs+=("$b") os+=("$o") rs+=("$(div "$o" "$b")")
        done
        br=$(awk -v p="$part" -v v="$base" -v ph="$phase" '$1 == p && $2 == v && $3 == ph {print $6}' "$work/$part.results" | sort -n | tail -1)
        orr=$(awk -v p="$part" -v v="$other" -v ph="$phase" '$1 == p && $2 == v && $3 == ph {print $6}' "$work/$part.results" | sort -n | tail -1)
        local ratio verdict
        ratio=$(fmt "$(median "${rs[@]}")")
        verdict=$(awk -v r="$ratio" -v t="$target" 'BEGIN {print (r <= t) ? "met" : "NOT met"}')
        printf 'online_bench: [%s] %-6s %s median %.2f s (peak RSS %s MiB), %s median %.2f s (peak RSS %s MiB)\n' \
            "$part" "$phase" "$base" "$(median "${bs[@]}")" "$(mib "$br")" "$other" "$(median "${os[@]}")" "$(mib "$orr")"
        echo "RATIO $part $phase $other/$base = $ratio (median of the per-run ratios; target <= $target: $verdict)"
    done
}

say "coffer $coffer, work directory $work ($([ "$cold" = 1 ] && echo cold || echo warm) cache), $runs runs"
root=$work/live
say "generating a ${size_mb} MiB AsterDrive deployment (SQLite)"
"$PY" "$tools/gen_asterdrive.py" "$root" --size-mb "$size_mb" --seed 1 >"$work/gen.json" ||
    die "gen_asterdrive.py failed"
say "deployment: $(du -sb "$root/data" | cut -f1) bytes in data/, $(files_rows "$root") files rows"

if [ "$do_plain" = 1 ]; then
    if [ "$breakdown" = 1 ]; then
        bench_part ext "$root" plain online twopass refs
    else
        bench_part ext "$root" plain online
    fi
fi

btrfs_ok=0
if [ "$do_btrfs" = 1 ]; then
    why=
    if [ "$(id -u)" != 0 ]; then why="needs root"
    elif ! command -v mkfs.btrfs >/dev/null || ! command -v losetup >/dev/null; then why="btrfs-progs or losetup missing"
    else
        grep -qw btrfs /proc/filesystems || modprobe btrfs 2>/dev/null
        grep -qw btrfs /proc/filesystems || why="the kernel has no btrfs"
    fi
    if [ -z "$why" ]; then
        # room for the deployment, the writer's uploads and btrfs's metadata
        truncate -s "$((size_mb * 3 + 1024))M" "$work/btrfs.img" &&
            mkfs.btrfs -q "$work/btrfs.img" >/dev/null 2>&1 || why="mkfs.btrfs failed"
    fi
    if [ -z "$why" ]; then
        loop=$(losetup -f --show "$work/btrfs.img" 2>/dev/null) || { loop=; why="no free loop device"; }
    fi
    if [ -z "$why" ]; then
        mkdir -p "$mnt"
        mount "$loop" "$mnt" 2>/dev/null || why="cannot mount $loop"
    fi
    if [ -n "$why" ]; then
        say "btrfs part skipped: $why"
    else
        mkdir -p "$mnt/live"
        btrfs subvolume create "$mnt/live/data" >/dev/null || die "btrfs subvolume create failed"
        cp -a "$root/data/." "$mnt/live/data/" || die "copying the deployment to btrfs failed"
        say "deployment copied to $mnt/live (data/ is a btrfs subvolume on $loop)"
        btrfs_ok=1
        bench_part btrfs "$mnt/live" plain online snapshot
    fi
fi

echo
say "results (wall seconds, peak RSS; churn = writer transactions during the backup)"
if [ "$do_plain" = 1 ]; then
    report ext plain online 1.15
    if [ "$breakdown" = 1 ]; then
        report ext plain twopass 1.15
        report ext plain refs 1.15
    fi
fi
if [ "$btrfs_ok" = 1 ]; then
    report btrfs plain snapshot 1.05
    report btrfs plain online 1.15
fi
all=$(cat "$work"/*.results 2>/dev/null)
echo "online_bench: references verified in $(grep -c ' verified' <<<"$all") of $(awk '$2 == "online" || $2 == "snapshot" || $2 == "refs"' <<<"$all" | wc -l) backups that verify them;" \
    "inconsistent sets: plain $(awk '$2 == "plain" && $9 == "INCONSISTENT"' <<<"$all" | wc -l)," \
    "online $(awk '$2 == "online" && $9 == "INCONSISTENT"' <<<"$all" | wc -l)," \
    "snapshot $(awk '$2 == "snapshot" && $9 == "INCONSISTENT"' <<<"$all" | wc -l)"
if [ "$btrfs_ok" = 1 ]; then
    echo "online_bench: btrfs snapshots seen in $(awk '$2 == "snapshot" && $11 == "yes"' <<<"$all" | wc -l) of $(awk '$2 == "snapshot"' <<<"$all" | wc -l) snapshot backups"
fi
