#!/usr/bin/env bash
# Many small files: full and incremental backups of a tree of small files
# (bench/gen_smallfiles.py), coffer against restic and borg in the same
# run, and a `find` that stats every file as the floor of any metadata
# scan. See bench/README.md.
#
#   bench/smallfiles_bench.sh [--files N] [--dirs D] [--touch PCT] [--tools LIST]
#                             [--keep] [--workdir DIR]
#
#   --files N      number of files (default 300000)
#   --dirs D       number of directories they are spread over (default 4096)
#   --touch PCT    percent of the files rewritten before the second backup
#                  (default 0.1)
#   --tools LIST   comma-separated, from coffer,restic,borg (default all)
#   --keep         keep the work directory
#   --workdir DIR  parent of the work directory (default $BENCH_TMPDIR, else
#                  /var/tmp)
#
# Runs warm: the tree is read once before the first timed command, as an
# incremental backup on a busy server finds it. Targets (printed met or
# NOT met): second backup <= 0.15x coffer's full backup, <= 1.5x the find,
# <= 0.2x restic's and borg's second backups; full backup <= 0.5x
# restic's; coffer's peak RSS <= 128 MiB.
# Environment: COFFER (default build/coffer).
set -uo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
files=300000
dirs=4096
touch_pct=0.1
tools=coffer,restic,borg
keep=0
workparent="${BENCH_TMPDIR:-/var/tmp}"

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --files) files="${2:?--files needs a value}"; shift 2 ;;
        --dirs) dirs="${2:?--dirs needs a value}"; shift 2 ;;
        --touch) touch_pct="${2:?--touch needs a value}"; shift 2 ;;
        --tools) tools="${2:?--tools needs a value}"; shift 2 ;;
        --keep) keep=1; shift ;;
        --workdir) workparent="${2:?--workdir needs a value}"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "smallfiles_bench: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
for v in "$files" "$dirs"; do
    case "$v" in '' | *[!0-9]*) echo "smallfiles_bench: --files and --dirs take numbers" >&2; exit 2 ;; esac
done
die() { echo "smallfiles_bench: $*" >&2; exit 1; }
has() { case ",$tools," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
for t in ${tools//,/ }; do
    case "$t" in coffer | restic | borg) ;; *) die "unknown tool '$t' (coffer, restic, borg)" ;; esac
done
has coffer || die "--tools must include coffer"
command -v python3 >/dev/null || die "python3 is required"
[ -x /usr/bin/time ] || die "GNU time is required (package time)"
has restic && ! command -v restic >/dev/null && die "restic is required (package restic) or leave it out of --tools"
has borg && ! command -v borg >/dev/null && die "borg is required (package borgbackup) or leave it out of --tools"
coffer="${COFFER:-$src/build/coffer}"
[ -x "$coffer" ] || die "$coffer missing: build it first (cmake --build build --target coffer)"

mkdir -p "$workparent" || die "cannot create $workparent"
work="$(mktemp -d "$workparent/coffer-smallfiles-bench.XXXXXX")" || die "mktemp failed"
cleanup() { if [ "$keep" = 1 ]; then echo "smallfiles_bench: kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

tree="$work/tree"
export COFFER_PASSPHRASE=coffer-bench-password RESTIC_PASSWORD=coffer-bench-password
export BORG_PASSPHRASE=coffer-bench-password BORG_BASE_DIR="$work/borg-base"
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
policy="$work/smallfiles.yaml"
cat >"$policy" <<YAML
version: 1
name: smallfiles
root: $tree
consistency:
  mode: maintenance
  stop: "true"
  start: "true"
targets:
  - name: primary
    location: $work/repo-coffer
components:
  - name: files
    type: files
    paths: [.]
YAML

results="$work/results"
: >"$results"
# timed NAME CMD...: wall seconds and peak RSS (MiB) of the command
timed() {
    local name=$1; shift
    /usr/bin/time -f '%e %M' -o "$work/$name.time" "$@" >"$work/$name.log" 2>"$work/$name.err" ||
        { tail -20 "$work/$name.err"; die "$name failed"; }
    local wall rss
    read -r wall rss <"$work/$name.time"
    rss=$((rss / 1024))
    printf -v "T_$name" '%s' "$wall"
    printf -v "M_$name" '%s' "$rss"
    echo "$name $wall $rss" >>"$results"
    printf 'smallfiles_bench: %-16s %8ss %6s MiB\n' "$name" "$wall" "$rss"
}
ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{a / b:.3f}' if b else '-')" "$1" "$2"; }
verdict() { python3 -c "import sys; print('met' if float(sys.argv[1]) <= float(sys.argv[2]) else 'NOT met')" "$1" "$2"; }

echo "smallfiles_bench: generating $files files in $dirs directories in $work"
python3 "$src/bench/gen_smallfiles.py" "$tree" --files "$files" --dirs "$dirs" --seed 1 ||
    die "gen_smallfiles.py failed"
find "$tree" -printf '%s %T@ %C@ %i\n' >/dev/null # warm

timed find_full find "$tree" -printf '%s %T@ %C@ %i\n'
"$coffer" --no-progress init -p "$policy" >"$work/init.log" 2>&1 || die "coffer init failed"
timed coffer_full "$coffer" --no-progress backup -p "$policy"
if has restic; then
    restic -r "$work/repo-restic" --cache-dir "$work/restic-cache" --quiet init >/dev/null 2>&1 ||
        die "restic init failed"
    timed restic_full bash -c "cd '$tree' && exec restic -r '$work/repo-restic' --cache-dir '$work/restic-cache' --quiet backup ."
fi
if has borg; then
    borg init -e repokey "$work/repo-borg" >/dev/null 2>&1 || die "borg init failed"
    timed borg_full bash -c "cd '$tree' && exec borg create '$work/repo-borg::first' ."
fi

python3 "$src/bench/gen_smallfiles.py" "$tree" --touch "$touch_pct" --seed 2 || die "touch failed"
find "$tree" -printf '%s %T@ %C@ %i\n' >/dev/null # the touched files' metadata, warm again

timed find_second find "$tree" -printf '%s %T@ %C@ %i\n'
timed coffer_second "$coffer" --no-progress backup -p "$policy"
has restic && timed restic_second bash -c "cd '$tree' && exec restic -r '$work/repo-restic' --cache-dir '$work/restic-cache' --quiet backup ."
has borg && timed borg_second bash -c "cd '$tree' && exec borg create '$work/repo-borg::second' ."

# The second set is complete: restore it and compare with the tree.
"$coffer" --no-progress restore -p "$policy" --to "$work/restored" --no-validate >"$work/restore.log" 2>&1 ||
    die "coffer restore failed: $(tail -3 "$work/restore.log")"
diff -r -q "$tree" "$work/restored" >"$work/diff.log" 2>&1 ||
    die "the restored tree differs from the source: $(head -3 "$work/diff.log")"

echo
echo "smallfiles_bench: $files files in $dirs directories, ${touch_pct}% touched, warm cache"
printf '  %-14s %10s %10s\n' phase "wall s" "peak MiB"
while read -r n w m; do printf '  %-14s %10s %10s\n' "$n" "$w" "$m"; done <"$results"
echo
all=met
target() { # label value limit
    local v
    v=$(verdict "$2" "$3")
    [ "$v" = met ] || all="NOT met"
    printf '  %-40s %8s (target <= %s): %s\n' "$1" "$2" "$3" "$v"
    echo "{\"bench\":\"smallfiles\",\"files\":$files,\"target\":\"$1\",\"value\":$2,\"limit\":$3,\"met\":$([ "$v" = met ] && echo true || echo false)}" >>"$work/targets.jsonl"
}
target "coffer second / coffer full" "$(ratio "$T_coffer_second" "$T_coffer_full")" 0.15
target "coffer second / find" "$(ratio "$T_coffer_second" "$T_find_second")" 1.5
if has restic; then
    target "coffer second / restic second" "$(ratio "$T_coffer_second" "$T_restic_second")" 0.2
    target "coffer full / restic full" "$(ratio "$T_coffer_full" "$T_restic_full")" 0.5
fi
has borg && target "coffer second / borg second" "$(ratio "$T_coffer_second" "$T_borg_second")" 0.2
target "coffer peak RSS full, MiB" "$M_coffer_full" 128
target "coffer peak RSS second, MiB" "$M_coffer_second" 128
echo
cat "$work/targets.jsonl"
[ "$all" = met ]
