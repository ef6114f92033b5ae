#!/usr/bin/env bash
# A repository of millions of chunks: a backup of new data into it, check
# and prune, against the same commands on a nearly empty repository, with
# the index on disk (the default past COFFER_INDEX_MEMORY_ENTRIES) and, for
# comparison, held in memory. The large repository is synthetic
# (bench/synth_repo.py: 16-byte chunks in packs of 4096, all referenced by
# one set), so it costs minutes to build, not terabytes. See bench/README.md.
#
#   bench/index_bench.sh [--chunks N] [--new-mb MB] [--keep] [--workdir DIR]
#
#   --chunks N     synthetic chunks in the large repository (default 10000000)
#   --new-mb MB    new data backed up into each repository (default 1024)
#   --keep         keep the work directory
#   --workdir DIR  parent of the work directory (default $BENCH_TMPDIR, else
#                  /var/tmp)
#
# The large repository's synthetic set is also restored (index on disk,
# then in memory), and its index finally rebuilt from the packs (check
# --rebuild-index). Prints wall time and peak RSS per command and repository, and the
# targets (met or NOT met): peak RSS <= 128 MiB for backup, check and prune
# on the large repository, their times within 1.5x of the small one's.
# Environment: COFFER (default build/coffer).
set -uo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
chunks=10000000
new_mb=1024
keep=0
workparent="${BENCH_TMPDIR:-/var/tmp}"

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --chunks) chunks="${2:?--chunks needs a value}"; shift 2 ;;
        --new-mb) new_mb="${2:?--new-mb needs a value}"; shift 2 ;;
        --keep) keep=1; shift ;;
        --workdir) workparent="${2:?--workdir needs a value}"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "index_bench: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
for v in "$chunks" "$new_mb"; do
    case "$v" in '' | *[!0-9]*) echo "index_bench: --chunks and --new-mb take numbers" >&2; exit 2 ;; esac
done
die() { echo "index_bench: $*" >&2; exit 1; }
[ -x /usr/bin/time ] || die "GNU time is required (package time)"
command -v zstd >/dev/null || die "zstd is required (package zstd)"
COFFER="${COFFER:-$src/build/coffer}"
[ -x "$COFFER" ] || die "coffer not found at $COFFER (build first, or set COFFER)"

W="$(mktemp -d "$workparent/coffer-index-bench.XXXXXX")" || die "cannot create a work directory"
cleanup() { if [ "$keep" = 1 ]; then echo "kept $W"; else rm -rf "$W"; fi; }
trap cleanup EXIT
POLICY="$src/policies/asterdrive-sqlite-local.yaml"
export ASTERDRIVE_STOP=true ASTERDRIVE_START=true COFFER_CACHE_DIR="$W/cache"
unset COFFER_INDEX_MEMORY_ENTRIES

# run LABEL REPO [ENV=V...] -- ARGS...: one coffer command, timed.
run() {
    local label=$1 repo=$2
    shift 2
    local envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    env COFFER_REPO="$repo" "${envs[@]}" /usr/bin/time -f "%e %M" -o "$W/time" \
        "$COFFER" --no-progress "$@" >"$W/out" 2>"$W/err"
    local rc=$?
    read -r secs kb <"$W/time" || true
    if [ $rc -ne 0 ]; then
        echo "index_bench: $label failed (exit $rc):" >&2
        tail -5 "$W/err" >&2
        exit 1
    fi
    printf '%-44s %8.2f s %8.1f MiB\n' "$label" "$secs" "$(awk -v k="$kb" 'BEGIN { print k / 1024 }')"
    echo "$label $secs $kb" >>"$W/results"
}

echo "== setup: two repositories with a small set; $chunks synthetic chunks into one"
python3 "$src/tests/tools/gen_asterdrive.py" "$W/small" --size-mb 2 --seed 1 >/dev/null || die "generator failed"
for r in S L; do
    COFFER_REPO="$W/$r" "$COFFER" --no-progress init -p "$POLICY" --encryption none >/dev/null 2>&1 ||
        die "init failed"
    COFFER_REPO="$W/$r" ASTERDRIVE_ROOT="$W/small" "$COFFER" --no-progress backup -p "$POLICY" \
        >"$W/set0.$r" 2>/dev/null || die "first backup failed"
done
t0=$SECONDS
python3 "$src/bench/synth_repo.py" "$W/L" "$(tail -1 "$W/set0.L")" "$chunks" >"$W/synth.id" ||
    die "synth_repo.py failed"
echo "   synthetic chunks written in $((SECONDS - t0)) s; repository $(du -sh "$W/L" | cut -f1)"
python3 "$src/tests/tools/gen_asterdrive.py" "$W/new" --size-mb "$new_mb" --seed 2 >/dev/null ||
    die "generator failed"
find "$W/new" -type f -exec cat {} + >/dev/null # warm: the data is read from the page cache

echo
printf '%-44s %10s %12s\n' command "wall" "peak RSS"
for r in S L; do
    name=small
    [ $r = L ] && name="$chunks chunks"
    # The first command after the index objects change sorts the index
    # to disk; later ones verify and reuse the file.
    run "first open: list sets ($name)" "$W/$r" -- sets -p "$POLICY"
    run "backup ${new_mb} MiB new data ($name)" "$W/$r" ASTERDRIVE_ROOT="$W/new" -- backup -p "$POLICY"
    run "check ($name)" "$W/$r" -- check -p "$POLICY"
    if [ $r = L ]; then
        # The synthetic set: 9908 files whose chunks are spread over the
        # whole index.
        synth=$(cat "$W/synth.id")
        run "restore the set of $chunks chunks" "$W/L" -- restore -p "$POLICY" --set "$synth" \
            --to "$W/restored" --no-validate
        rm -rf "$W/restored"
        run "restore, index in memory" "$W/L" COFFER_INDEX_MEMORY_ENTRIES=1000000000 -- \
            restore -p "$POLICY" --set "$synth" --to "$W/restored" --no-validate
        rm -rf "$W/restored"
    fi
    run "forget the first set ($name)" "$W/$r" -- forget -p "$POLICY" "$(tail -1 "$W/set0.$r")"
    cp -a "$W/$r" "$W/$r.before-prune"
    run "prune ($name)" "$W/$r" -- prune -p "$POLICY" --max-unused 0
    if [ $r = L ]; then
        rm -rf "$W/L" && mv "$W/L.before-prune" "$W/L"
        run "prune, index in memory ($name)" "$W/L" COFFER_INDEX_MEMORY_ENTRIES=1000000000 -- \
            prune -p "$POLICY" --max-unused 0
        run "check, index in memory ($name)" "$W/L" COFFER_INDEX_MEMORY_ENTRIES=1000000000 -- \
            check -p "$POLICY"
        run "check after prune ($name)" "$W/L" -- check -p "$POLICY"
        # Last: it replaces the index objects by new ones of at most
        # 256 Ki entries each, read from every pack.
        run "check --rebuild-index ($name)" "$W/L" -- check -p "$POLICY" --rebuild-index
    fi
done

echo
python3 - "$W/results" "$chunks" <<'EOF'
import sys
res = {}
for line in open(sys.argv[1]):
    label, secs, kb = line.rsplit(" ", 2)
    res[label] = (float(secs), int(kb) / 1024)
n = sys.argv[2]
for cmd in ("backup", "check", "prune"):
    s = next(v for k, v in res.items() if k.startswith(cmd) and k.endswith("(small)"))
    l = next(v for k, v in res.items() if k.startswith(cmd) and k.endswith("(%s chunks)" % n) and "memory" not in k)
    ratio = l[0] / s[0] if s[0] else float("inf")
    print("%-7s large/small time %.2fx (target <= 1.5x: %s); peak RSS %.1f MiB (target <= 128: %s)"
          % (cmd, ratio, "met" if ratio <= 1.5 else "NOT met", l[1], "met" if l[1] <= 128 else "NOT met"))
EOF
