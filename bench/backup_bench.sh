#!/usr/bin/env bash
# Backup benchmark: coffer against tar+gzip, tar+zstd and restic on the same
# AsterDrive-like deployment. See bench/README.md.
#
#   bench/backup_bench.sh [--size-mb N] [--keep] [--warm] [--tools LIST]
#                         [--no-check] [--workdir DIR]
#
#   --size-mb N    size of the generated deployment (default 1024)
#   --keep         keep the work directory (data, repositories, restores)
#   --warm         never drop the page cache (default: drop it before every
#                  timed command when running as root, so each starts cold)
#   --tools LIST   comma-separated subset of tar-gz,tar-zstd,restic,coffer
#   --no-check     do not compare restored trees with the source
#   --workdir DIR  parent of the temporary work directory (default
#                  $BENCH_TMPDIR, else /var/tmp); data, repositories and
#                  restores all live in it, on one filesystem
#
# Environment: COFFER (default build/coffer; built with cmake when missing).
set -uo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
size_mb=1024
keep=0
cache_mode=cold
tools="tar-gz,tar-zstd,restic,coffer"
check=1
workparent="${BENCH_TMPDIR:-/var/tmp}"

usage() {
    sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case "$1" in
        --size-mb) size_mb="${2:?--size-mb needs a value}"; shift 2 ;;
        --size-mb=*) size_mb="${1#*=}"; shift ;;
        --keep) keep=1; shift ;;
        --warm) cache_mode=warm; shift ;;
        --tools) tools="${2:?--tools needs a value}"; shift 2 ;;
        --tools=*) tools="${1#*=}"; shift ;;
        --no-check) check=0; shift ;;
        --workdir) workparent="${2:?--workdir needs a value}"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "backup_bench: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

case "$size_mb" in '' | *[!0-9]*) echo "backup_bench: --size-mb must be a number" >&2; exit 2 ;; esac

has_tool() { case ",$tools," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
for t in ${tools//,/ }; do
    case "$t" in tar-gz | tar-zstd | restic | coffer) ;;
        *) echo "backup_bench: unknown tool '$t'" >&2; exit 2 ;;
    esac
done

die() { echo "backup_bench: $*" >&2; exit 1; }

[ -x /usr/bin/time ] || die "GNU time (/usr/bin/time, Debian package 'time') is required"
command -v python3 >/dev/null || die "python3 is required"
gen="$src/tests/tools/gen_asterdrive.py"
mutate="$src/tests/tools/mutate_asterdrive.py"
[ -f "$gen" ] || die "missing $gen"
[ -f "$mutate" ] || die "missing $mutate"
has_tool tar-zstd && { command -v zstd >/dev/null || die "zstd is required"; }
has_tool restic && { command -v restic >/dev/null || die "restic is required"; }

policy="$src/policies/asterdrive-sqlite-local.yaml"
if has_tool coffer; then
    coffer="${COFFER:-$src/build/coffer}"
    case "$coffer" in
        /*) ;;
        *) if [ -e "$coffer" ]; then coffer="$PWD/$coffer"; else coffer="$src/$coffer"; fi ;;
    esac
    if [ ! -x "$coffer" ]; then
        echo "backup_bench: $coffer missing: building it (cmake, RelWithDebInfo)"
        cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
            cmake --build "$src/build" -j"$(nproc)" >/dev/null ||
            die "building coffer failed"
        coffer="$src/build/coffer"
    fi
    [ -f "$policy" ] || die "missing $policy"
fi

if [ "$cache_mode" = cold ]; then
    if [ "$(id -u)" -ne 0 ] || ! { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
        cache_mode=warm
        echo "backup_bench: cannot drop the page cache (needs root and a writable" \
            "/proc/sys/vm/drop_caches): running warm"
    fi
fi

mkdir -p "$workparent" || die "cannot create $workparent"
work="$(mktemp -d "$workparent/coffer-bench.XXXXXX")" || die "mktemp failed"
cleanup() {
    if [ "$keep" = 1 ]; then
        echo "backup_bench: kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

root="$work/asterdrive"
logs="$work/logs"
mkdir -p "$logs"

# --- measurement ---------------------------------------------------------------
# results: one "tool|phase|status|wall|rss_kib|repo_bytes" line per command.
results=()
failed=0

drop_caches() {
    if [ "$cache_mode" = cold ]; then
        sync
        echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
    fi
}

# measure TOOL PHASE REPO_PATH SHELL_COMMAND: run the command (bash -c, so a
# pipeline counts as one) under GNU time; record the wall time, the peak RSS
# of the largest single process it ran, and the size of REPO_PATH afterwards.
measure() {
    local tool="$1" phase="$2" repo="$3" cmd="$4"
    local tag="${tool}_${phase}"
    local tfile="$logs/$tag.time" out="$logs/$tag.log"
    drop_caches
    printf 'backup_bench: %-8s %-8s ... ' "$tool" "$phase"
    echo "+ $cmd" >"$out"
    /usr/bin/time -f '%e %M' -o "$tfile" bash -o pipefail -c "$cmd" >>"$out" 2>&1
    local rc=$?
    local wall="" rss="" size=""
    if [ -s "$tfile" ]; then
        read -r wall rss < <(tail -n1 "$tfile")
    fi
    if [ -n "$repo" ] && [ -e "$repo" ]; then
        size="$(du -sb "$repo" | cut -f1)"
    fi
    if [ "$rc" -eq 0 ]; then
        echo "ok (${wall}s, $((${rss:-0} / 1024)) MiB)"
        results+=("$tool|$phase|ok|$wall|$rss|$size")
    else
        failed=1
        echo "FAILED (exit $rc)"
        echo "---- last lines of the $tool $phase output ($out):"
        tail -n 20 "$out" | sed 's/^/    /'
        echo "----"
        results+=("$tool|$phase|FAILED (exit $rc)|$wall|$rss|$size")
    fi
    return "$rc"
}

na() { results+=("$1|$2|n/a|||"); }

# treesum ROOT NAME: digests of a tree ("CONTENT META FILES BYTES"); its
# entries go to $logs/NAME.list.content and $logs/NAME.list.meta.
treesum() {
    python3 "$src/bench/treesum.py" "$1" --list "$logs/$2.list" 2>>"$logs/$2.err"
}

# check_restore TOOL DIR SOURCE_NAME: compare a restored tree with the source
# tree it should equal (SOURCE_NAME: a treesum taken before or after the change).
check_restore() {
    local tool="$1" dir="$2" want="$3" got wc wm gc gm
    [ "$check" = 1 ] && [ -d "$dir" ] && [ -s "$logs/$want.sum" ] || return 0
    got="$(treesum "$dir" "restored-$tool")"
    read -r wc wm _ <<<"$(cat "$logs/$want.sum")"
    read -r gc gm _ <<<"$got"
    if [ -z "$gc" ] || [ "$gc" != "$wc" ]; then
        failed=1
        echo "backup_bench: $tool restore: content DIFFERS from the source (< source, > restored):"
        diff "$logs/$want.list.content" "$logs/restored-$tool.list.content" | grep '^[<>]' |
            head -n 10 | sed 's/^/    /'
        results+=("$tool|check|FAILED (restore differs)|||")
    elif [ "$gm" != "$wm" ]; then
        echo "backup_bench: $tool restore: same content; metadata differs (mode/owner/mtime):"
        diff "$logs/$want.list.meta" "$logs/restored-$tool.list.meta" | grep '^[<>]' | head -n 10 |
            sed 's/^/    /'
    else
        echo "backup_bench: $tool restore: identical to the source (content, databases, modes, owners, mtimes)"
    fi
}

# report_touched TOOL BEFORE AFTER: say what a backup changed in its source.
report_touched() {
    local tool="$1" before="$2" after="$3" bc bm ac am
    read -r bc bm _ <"$logs/$before.sum"
    read -r ac am _ <"$logs/$after.sum"
    if [ "$bc" != "$ac" ]; then
        echo "backup_bench: note: the $tool backup changed the CONTENT of its source:"
        diff "$logs/$before.list.content" "$logs/$after.list.content" | grep '^[<>]' |
            head -n 10 | sed 's/^/    /'
    elif [ "$bm" != "$am" ]; then
        echo "backup_bench: note: the $tool backup changed metadata in its source:"
        diff "$logs/$before.list.meta" "$logs/$after.list.meta" | grep '^[<>]' |
            head -n 10 | sed 's/^/    /'
    fi
}

q() { printf '%q' "$1"; }

# --- the deployment ---------------------------------------------------------
echo "backup_bench: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores," \
    "$(awk '/MemTotal/{printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)," \
    "page cache: $cache_mode"
echo "backup_bench: work dir $work ($(df -T "$work" | awk 'NR==2{print $2}')), load average $(cut -d' ' -f1-3 /proc/loadavg)"
versions="$(tar --version | head -n1)"
has_tool tar-zstd && versions+="; $(zstd --version | head -n1)"
has_tool restic && versions+="; $(restic version 2>/dev/null | head -n1)"
has_tool coffer && versions+="; $("$coffer" --version 2>/dev/null | head -n1) ($coffer)"
echo "backup_bench: $versions"
echo "backup_bench: generating a ${size_mb} MiB deployment (seed 1)"
python3 "$gen" "$root" --size-mb "$size_mb" --seed 1 >"$logs/gen.log" 2>&1 ||
    { tail -n 20 "$logs/gen.log"; die "gen_asterdrive.py failed"; }

source_stats() {
    local bytes files
    bytes="$(du -sb --exclude=./data/.tmp --exclude=./data/.uploads "$root" | cut -f1)"
    files="$(find "$root" -path "$root/data/.tmp" -prune -o -path "$root/data/.uploads" \
        -prune -o -type f -print | wc -l)"
    echo "$files files, $((bytes / 1048576)) MiB ($bytes bytes), excluding data/.tmp and data/.uploads"
}
echo "backup_bench: source: $(source_stats)"

if [ "$check" = 1 ]; then
    treesum "$root" source-full >"$logs/source-full.sum"
fi
second_source=source-full
second_failed=()

# --- tool commands ------------------------------------------------------------
R="$(q "$root")"
W="$(q "$work")"
tar_gz_file="$work/tar-gz.tar.gz"
tar_zstd_file="$work/tar-zstd.tar.zst"
restic_repo="$work/repo-restic"
coffer_repo="$work/repo-coffer"
echo "coffer-bench-password" >"$work/restic.password"
# Both tools encrypt, with the same throwaway passphrase (inherited, not on argv).
export COFFER_PASSPHRASE=coffer-bench-password
restic_cmd="RESTIC_PASSWORD_FILE=$W/restic.password restic -r $(q "$restic_repo") --cache-dir $W/restic-cache --quiet"
coffer_cmd="ASTERDRIVE_ROOT=$R COFFER_REPO=$(q "$coffer_repo") ASTERDRIVE_STOP=true ASTERDRIVE_START=true ASTERDRIVE_DOCTOR=true ${coffer:+$(q "$coffer")}"
P="$(q "$policy")"

backup_cmd() {
    case "$1" in
        tar-gz) echo "tar -C $R --exclude=./data/.tmp --exclude=./data/.uploads -czf $(q "$tar_gz_file") ." ;;
        tar-zstd) echo "tar -C $R --exclude=./data/.tmp --exclude=./data/.uploads -cf - . | zstd -T0 -q -o $(q "$tar_zstd_file")" ;;
        restic) echo "cd $R && $restic_cmd backup --exclude $R/data/.tmp --exclude $R/data/.uploads ." ;;
        coffer) echo "$coffer_cmd backup -p $P" ;;
    esac
}
restore_cmd() { # TOOL DIR
    local d
    d="$(q "$2")"
    case "$1" in
        tar-gz) echo "mkdir -p $d && tar -C $d -xzf $(q "$tar_gz_file")" ;;
        tar-zstd) echo "mkdir -p $d && zstd -dc -q $(q "$tar_zstd_file") | tar -C $d -xf -" ;;
        restic) echo "$restic_cmd restore latest --target $d" ;;
        coffer) echo "$coffer_cmd restore -p $P --to $d" ;;
    esac
}
repo_of() {
    case "$1" in
        tar-gz) echo "$tar_gz_file" ;;
        tar-zstd) echo "$tar_zstd_file" ;;
        restic) echo "$restic_repo" ;;
        coffer) echo "$coffer_repo" ;;
    esac
}

all_tools=(tar-gz tar-zstd restic coffer)
ok_init=()

# --- phase 0: repository set-up (not timed as a backup) -----------------------
if has_tool restic; then
    if bash -c "$restic_cmd init" >"$logs/restic_init.log" 2>&1; then
        ok_init+=(restic)
    else
        failed=1
        echo "backup_bench: restic init FAILED:"; tail -n 20 "$logs/restic_init.log"
        results+=("restic|init|FAILED|||")
    fi
fi
if has_tool coffer; then
    if bash -c "$coffer_cmd init -p $P" >"$logs/coffer_init.log" 2>&1; then
        ok_init+=(coffer)
    else
        failed=1
        echo "backup_bench: coffer init FAILED:"; tail -n 20 "$logs/coffer_init.log"
        results+=("coffer|init|FAILED|||")
    fi
fi
ready() { # TOOL: selected, and its repository exists
    has_tool "$1" || return 1
    case "$1" in
        restic | coffer) case " ${ok_init[*]} " in *" $1 "*) return 0 ;; esac; return 1 ;;
    esac
    return 0
}

# --- phase 1: full backups ----------------------------------------------------
echo "backup_bench: phase 1: full backup of every tool"
# skipped TOOL PHASE: true (and a row saying so) when a selected tool has no
# repository because its init failed.
skipped() {
    if has_tool "$1" && ! ready "$1"; then
        results+=("$1|$2|skipped (init failed)|||")
        return 0
    fi
    return 1
}

for t in "${all_tools[@]}"; do
    skipped "$t" full && continue
    ready "$t" && measure "$t" full "$(repo_of "$t")" "$(backup_cmd "$t")"
done

# --- phase 2: one ~1% change, then second backups -----------------------------
echo "backup_bench: mutating ~1% of the deployment (seed 2), once for every tool"
if python3 "$mutate" "$root" --percent 1 --seed 2 >"$logs/mutate.log" 2>&1; then
    echo "backup_bench: source after the change: $(source_stats)"
    second_source=second
    echo "backup_bench: phase 2: second backup after the change"
    for t in "${all_tools[@]}"; do
        case "$t" in
            tar-gz | tar-zstd) has_tool "$t" && na "$t" second ;;
            *)
                skipped "$t" second && continue
                ready "$t" || continue
                # The reference for this tool's restore is the tree as this
                # tool left it. A backup that changes its source (a database
                # checkpoint touches data/) is reported.
                [ "$check" = 1 ] && treesum "$root" "before-second-$t" >"$logs/before-second-$t.sum"
                measure "$t" second "$(repo_of "$t")" "$(backup_cmd "$t")" ||
                    second_failed+=("$t")
                if [ "$check" = 1 ]; then
                    treesum "$root" "source-second-$t" >"$logs/source-second-$t.sum"
                    report_touched "$t" "before-second-$t" "source-second-$t"
                fi
                ;;
        esac
    done
else
    failed=1
    echo "backup_bench: mutate_asterdrive.py FAILED:"; tail -n 20 "$logs/mutate.log"
fi

# --- phase 3: restore of the latest backup into an empty directory ------------
echo "backup_bench: phase 3: restore of each tool's latest backup"
for t in "${all_tools[@]}"; do
    skipped "$t" restore && continue
    ready "$t" || continue
    dir="$work/restore-$t"
    rm -rf "$dir"
    if measure "$t" restore "" "$(restore_cmd "$t" "$dir")"; then
        case "$t" in
            tar-gz | tar-zstd) check_restore "$t" "$dir" source-full ;; # full archive only
            *)
                # After a failed second backup, "latest" is the full one.
                if [ "$second_source" = second ] && [[ " ${second_failed[*]} " != *" $t "* ]]; then
                    check_restore "$t" "$dir" "source-second-$t"
                else
                    check_restore "$t" "$dir" source-full
                fi
                ;;
        esac
    fi
    # Free the space before the next tool restores.
    [ "$keep" = 1 ] || rm -rf "$dir"
done

# --- report -------------------------------------------------------------------
echo
echo "Results ($size_mb MiB deployment, page cache $cache_mode; peak RSS = largest single process;" \
    "load average now $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-9s %-8s %10s %14s %15s  %s\n' tool phase "wall s" "peak RSS MiB" "repo size MiB" status
mib() { [ -n "$1" ] && awk -v b="$1" 'BEGIN{printf "%.1f", b/1048576}' || echo "-"; }
for r in "${results[@]}"; do
    IFS='|' read -r tool phase status wall rss size <<<"$r"
    [ "$phase" = check ] && continue
    if [ "$status" = n/a ]; then
        printf '%-9s %-8s %10s %14s %15s  %s\n' "$tool" "$phase" n/a n/a n/a "n/a (no incremental mode)"
        continue
    fi
    rssm="-"
    [ -n "$rss" ] && rssm="$(awk -v k="$rss" 'BEGIN{printf "%.1f", k/1024}')"
    printf '%-9s %-8s %10s %14s %15s  %s\n' "$tool" "$phase" "${wall:--}" "$rssm" "$(mib "$size")" "$status"
done

# lookup TOOL PHASE FIELD(4=wall,5=rss): the value when the command succeeded
lookup() {
    local r
    for r in "${results[@]}"; do
        IFS='|' read -r tool phase status wall rss size <<<"$r"
        if [ "$tool" = "$1" ] && [ "$phase" = "$2" ] && [ "$status" = ok ]; then
            case "$3" in wall) echo "$wall" ;; rss) echo "$rss" ;; size) echo "$size" ;; esac
            return 0
        fi
    done
}

json_targets=()
if has_tool coffer; then
    echo
    echo "coffer against the targets from the issue"
fi
if has_tool coffer && has_tool restic; then
    for ph in full second restore; do
        case "$ph" in full | second) target=0.5 ;; restore) target=0.7 ;; esac
        c="$(lookup coffer "$ph" wall)"
        r="$(lookup restic "$ph" wall)"
        if [ -n "$c" ] && [ -n "$r" ] && awk -v r="$r" 'BEGIN{exit !(r > 0)}'; then
            ratio="$(awk -v c="$c" -v r="$r" 'BEGIN{printf "%.2f", c/r}')"
            verdict="$(awk -v x="$ratio" -v t="$target" 'BEGIN{print (x <= t) ? "met" : "NOT met"}')"
        else
            ratio="-"
            verdict="NOT measured"
        fi
        printf '  %-8s wall time coffer/restic = %-5s (target <= %sx): %s\n' "$ph" "$ratio" "$target" "$verdict"
        json_targets+=("{\"target\":\"${ph}_wall_ratio_vs_restic\",\"value\":$([ "$ratio" = - ] && echo null || echo "$ratio"),\"limit\":$target,\"met\":$([ "$verdict" = met ] && echo true || echo false)}")
    done
fi
if has_tool coffer; then
    peak=0
    for ph in full second restore; do
        v="$(lookup coffer "$ph" rss)"
        [ -n "$v" ] && [ "$v" -gt "$peak" ] && peak="$v"
    done
    if [ "$peak" -gt 0 ]; then
        peak_mib="$(awk -v k="$peak" 'BEGIN{printf "%.1f", k/1024}')"
        verdict="$(awk -v k="$peak" 'BEGIN{print (k <= 65536) ? "met" : "NOT met"}')"
    else
        peak_mib="-"
        verdict="NOT measured"
    fi
    printf '  coffer peak RSS = %s MiB (target <= 64 MiB): %s\n' "$peak_mib" "$verdict"
    json_targets+=("{\"target\":\"coffer_peak_rss_mib\",\"value\":$([ "$peak_mib" = - ] && echo null || echo "$peak_mib"),\"limit\":64,\"met\":$([ "$verdict" = met ] && echo true || echo false)}")
fi

echo
echo "JSON"
jnum() { [ -n "$1" ] && echo "$1" || echo null; }
for r in "${results[@]}"; do
    IFS='|' read -r tool phase status wall rss size <<<"$r"
    printf '{"tool":"%s","phase":"%s","status":"%s","wall_s":%s,"peak_rss_kib":%s,"repo_bytes":%s,"size_mb":%s,"page_cache":"%s"}\n' \
        "$tool" "$phase" "$status" "$(jnum "$wall")" "$(jnum "$rss")" "$(jnum "$size")" "$size_mb" "$cache_mode"
done
for j in "${json_targets[@]}"; do
    echo "$j"
done

if [ "$failed" -ne 0 ]; then
    echo
    echo "backup_bench: some phases FAILED (see above)"
    exit 1
fi
exit 0
