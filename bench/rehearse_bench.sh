#!/usr/bin/env bash
# Rehearsal benchmark: what a rehearsal costs over a plain restore of the
# same set, and the memory of a rehearsal whose references check covers a
# million rows. See bench/README.md.
#
#   bench/rehearse_bench.sh [--size-mb N] [--runs N] [--rows N] [--cold]
#                           [--keep] [--workdir DIR] [--skip-time] [--skip-rss]
#
#   --size-mb N    size of the generated deployment for the timing (default 1024)
#   --runs N       timed runs of each command; the median is reported (default 3)
#   --rows N       file_blobs rows of the memory case (default 1000000)
#   --cold         drop the page cache before every timed command (root)
#   --keep         keep the work directory
#   --workdir DIR  parent of the work directory (default $BENCH_TMPDIR, else /var/tmp)
#   --skip-time / --skip-rss   run only the other part
#
# Environment: COFFER (default build/coffer; built with cmake when missing).
# Targets: rehearse/restore <= 1.3; peak RSS of the million-row rehearsal < 64 MiB.
set -uo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
size_mb=1024
runs=3
rows=1000000
cold=0
keep=0
do_time=1
do_rss=1
workparent="${BENCH_TMPDIR:-/var/tmp}"

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "rehearse_bench: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --size-mb) size_mb="${2:?--size-mb needs a value}"; shift 2 ;;
        --runs) runs="${2:?--runs needs a value}"; shift 2 ;;
        --rows) rows="${2:?--rows needs a value}"; shift 2 ;;
        --cold) cold=1; shift ;;
        --keep) keep=1; shift ;;
        --workdir) workparent="${2:?--workdir needs a value}"; shift 2 ;;
        --skip-time) do_time=0; shift ;;
        --skip-rss) do_rss=0; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "rehearse_bench: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
for v in "$size_mb" "$runs" "$rows"; do
    case "$v" in '' | *[!0-9]*) die "--size-mb, --runs and --rows take whole numbers" ;; esac
done
[ "$runs" -ge 1 ] || die "--runs must be at least 1"

[ -x /usr/bin/time ] || die "GNU time (/usr/bin/time, Debian package 'time') is required"
[ -x /usr/bin/python3 ] || die "/usr/bin/python3 is required"
command -v sqlite3 >/dev/null || die "sqlite3 is required"
PY=/usr/bin/python3
tools="$src/tests/tools"
policy="$src/policies/asterdrive-sqlite-local.yaml"
coffer="${COFFER:-$src/build/coffer}"
case "$coffer" in /*) ;; *) coffer="$PWD/$coffer" ;; esac
if [ ! -x "$coffer" ]; then
    echo "rehearse_bench: $coffer missing: building it (cmake, RelWithDebInfo)"
    cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
        cmake --build "$src/build" -j2 >/dev/null || die "building coffer failed"
    coffer="$src/build/coffer"
fi
plugins="${COFFER_PLUGIN_BUILD_DIR:-$(dirname "$coffer")/plugins}"
cfx=("$coffer" --no-progress --plugin-dir "$plugins")
cf() { "${cfx[@]}" "$@"; }

mkdir -p "$workparent" || die "cannot create $workparent"
work=$(mktemp -d "$workparent/coffer-rehearse-bench.XXXXXX") || die "mktemp failed"
chmod 755 "$work"
cleanup() {
    if [ "$keep" = 1 ]; then echo "rehearse_bench: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$cold" = 1 ] && { [ "$(id -u)" -ne 0 ] || ! { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; }; then
    echo "rehearse_bench: cannot drop the page cache (needs root): running warm"
    cold=0
fi
drop_caches() { [ "$cold" = 1 ] && { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }; }

export COFFER_PASSPHRASE=bench-passphrase-not-a-secret
export ASTERDRIVE_STOP=true ASTERDRIVE_START=true
# The doctor is `true`: both commands then measure coffer alone (restore,
# checks, scratch handling), not the doctor.
export ASTERDRIVE_DOCTOR=true

# timed LABEL CMD...: run under GNU time; sets SECS, RSS_KIB; output in $work/LABEL.out
timed() {
    local label=$1; shift
    # no dirty pages of the previous command left to write back meanwhile
    sync
    drop_caches
    /usr/bin/time -f '%e %M' -o "$work/$label.time" "$@" >"$work/$label.out" 2>"$work/$label.err"
    local rc=$?
    read -r SECS RSS_KIB <"$work/$label.time" || true
    return $rc
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

echo "rehearse_bench: coffer $coffer, work directory $work ($([ "$cold" = 1 ] && echo cold || echo warm) cache)"

# ---- part 1: rehearse vs restore --to on a 1 GiB deployment ----------------
if [ "$do_time" = 1 ]; then
    root=$work/live
    echo "rehearse_bench: generating a ${size_mb} MiB AsterDrive deployment (SQLite)"
    "$PY" "$tools/gen_asterdrive.py" "$root" --size-mb "$size_mb" --seed 1 >"$work/gen.json" ||
        die "gen_asterdrive.py failed"
    export ASTERDRIVE_ROOT=$root COFFER_REPO=$work/repo TMPDIR=$work/scratch
    mkdir -p "$TMPDIR"
    cf init -p "$policy" >/dev/null 2>&1 || die "init failed"
    cf backup -p "$policy" >"$work/backup.out" 2>&1 || die "backup failed: $(tail -3 "$work/backup.out")"
    set_id=$(tail -1 "$work/backup.out")
    bytes=$(du -sb "$root/data" | cut -f1)
    restore_s=() rehearse_s=() ratios=()
    run_restore() {
        rm -rf "$work/restored"
        timed "restore$1" "${cfx[@]}" restore -p "$policy" --set "$set_id" --to "$work/restored" ||
            die "restore failed: $(tail -3 "$work/restore$1.err")"
        restore_s+=("$SECS")
        rs=$SECS
        rm -rf "$work/restored"
    }
    run_rehearse() {
        timed "rehearse$1" "${cfx[@]}" rehearse -p "$policy" --set "$set_id" --json ||
            die "rehearse failed (exit $?): $(tail -3 "$work/rehearse$1.err")"
        rehearse_s+=("$SECS")
        hs=$SECS
    }
    for i in $(seq 1 "$runs"); do
        # alternate the order so that a drift in the machine's load cancels
        if [ $((i % 2)) = 1 ]; then run_restore "$i"; run_rehearse "$i"; else run_rehearse "$i"; run_restore "$i"; fi
        r=$(awk -v a="$hs" -v b="$rs" 'BEGIN {printf "%.2f", a / b}')
        ratios+=("$r")
        printf 'rehearse_bench: run %d: restore --to %6.2f s   rehearse %6.2f s   ratio %s\n' "$i" "$rs" "$hs" "$r"
    done
    mr=$(median "${restore_s[@]}")
    mh=$(median "${rehearse_s[@]}")
    ratio=$(median "${ratios[@]}")
    checks=$("$PY" -c 'import json, sys; j = json.load(open(sys.argv[1]))
print(", ".join("%s %s" % (c["name"], c["status"]) for c in j["sets"][0]["policy_checks"]))' "$work/rehearse1.out")
    echo "rehearse_bench: checks: $checks"
    printf 'rehearse_bench: %s MiB deployment (%s bytes): restore --to median %.2f s, rehearse median %.2f s (ratio of medians %.2f)\n' \
        "$size_mb" "$bytes" "$mr" "$mh" "$(awk -v a="$mh" -v b="$mr" 'BEGIN {print a / b}')"
    verdict=$(awk -v r="$ratio" 'BEGIN {print (r <= 1.3) ? "ok" : "ABOVE TARGET"}')
    echo "RATIO rehearse/restore = $ratio (median of the per-run ratios; target <= 1.3: $verdict)"
    [ "$keep" = 1 ] || rm -rf "$root" "$work/repo"
fi

# ---- part 2: peak RSS of a rehearsal checking a million references --------
if [ "$do_rss" = 1 ]; then
    root=$work/many
    echo "rehearse_bench: a deployment whose file_blobs has $rows rows"
    "$PY" "$tools/gen_asterdrive.py" "$root" --files 2000 --small-kb 1:2 --size-mb 2 --seed 3 \
        >"$work/gen2.json" || die "gen_asterdrive.py failed"
    # Extra rows reference the real objects again (paths repeat; sizes match),
    # with ref_count 0 and no file: every shipped check stays clean.
    sqlite3 "$root/data/asterdrive.db" >/dev/null <<EOF || die "cannot add rows"
PRAGMA journal_mode=WAL;
CREATE TEMP TABLE real(i INTEGER PRIMARY KEY, id INTEGER);
INSERT INTO real(id) SELECT id FROM file_blobs WHERE backing = 'stored' ORDER BY id;
WITH RECURSIVE n(x) AS (SELECT (SELECT COUNT(*) FROM file_blobs WHERE backing = 'stored') UNION ALL SELECT x + 1 FROM n WHERE x < $rows - 1)
INSERT INTO file_blobs (hash, size, policy_id, storage_path, backing, thumbnail_path,
                        thumbnail_processor, ref_count, created_at, updated_at)
SELECT b.hash, b.size, b.policy_id, b.storage_path, 'stored', NULL, NULL, 0, b.created_at, b.updated_at
FROM n JOIN real r ON r.i = x % (SELECT COUNT(*) FROM real) + 1 JOIN file_blobs b ON b.id = r.id;
PRAGMA wal_checkpoint(TRUNCATE);
EOF
    nrows=$(sqlite3 "$root/data/asterdrive.db" "SELECT COUNT(*) FROM file_blobs WHERE backing = 'stored'")
    export ASTERDRIVE_ROOT=$root COFFER_REPO=$work/repo2 TMPDIR=$work/scratch
    mkdir -p "$TMPDIR"
    cf init -p "$policy" >/dev/null 2>&1 || die "init failed"
    cf backup -p "$policy" >"$work/backup2.out" 2>&1 || die "backup failed: $(tail -3 "$work/backup2.out")"
    timed rss "${cfx[@]}" rehearse -p "$policy" --json || die "rehearse failed (exit $?): $(tail -3 "$work/rss.err")"
    checked=$("$PY" -c 'import json, sys; j = json.load(open(sys.argv[1]))
print([c["rows"] for c in j["sets"][0]["policy_checks"] if c["name"] == "storage-objects"][0])' "$work/rss.out")
    mib=$(awk -v k="$RSS_KIB" 'BEGIN {printf "%.1f", k / 1024}')
    verdict=$(awk -v m="$mib" 'BEGIN {print (m < 64) ? "ok" : "ABOVE TARGET"}')
    echo "rehearse_bench: $nrows stored file_blobs rows, storage-objects checked $checked paths in $SECS s"
    echo "PEAK_RSS rehearse = $mib MiB (target < 64 MiB: $verdict)"
fi
