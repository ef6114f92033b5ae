#!/usr/bin/env bash
# Browsing benchmark: coffer ls / find / diff against restic ls / find / diff
# on the same many-small-files tree, two snapshots each (0.1% of the files
# touched between them), same run, warm cache. See bench/README.md.
#
#   bench/browse_bench.sh [--files N] [--dirs N] [--keep] [--workdir DIR]
#
#   --files N      small files to generate (default 1000000)
#   --dirs N       directories they are spread over (default 4096)
#   --keep         keep the work directory
#   --workdir DIR  parent of the work directory (default $BENCH_TMPDIR, else /var/tmp)
#
# Environment: COFFER (default build/coffer).
set -uo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
files=1000000
dirs=4096
keep=0
workparent="${BENCH_TMPDIR:-/var/tmp}"
while [ $# -gt 0 ]; do
    case "$1" in
        --files) files="${2:?}"; shift 2 ;;
        --dirs) dirs="${2:?}"; shift 2 ;;
        --keep) keep=1; shift ;;
        --workdir) workparent="${2:?}"; shift 2 ;;
        -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "browse_bench: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
die() { echo "browse_bench: $*" >&2; exit 1; }
COFFER=${COFFER:-$src/build/coffer}
[ -x "$COFFER" ] || die "coffer not built: $COFFER"
command -v restic >/dev/null || die "restic is required (Debian package restic)"
[ -x /usr/bin/time ] || die "GNU time is required"

W=$(mktemp -d "$workparent/coffer-browse-bench.XXXXXX") || die "cannot make a work directory"
[ "$keep" = 1 ] || trap 'rm -rf "$W"' EXIT
echo "browse_bench: work directory $W, $files files in $dirs directories"

/usr/bin/python3 - "$W/root/data" "$files" "$dirs" <<'PY'
import os, sys
base, n, nd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for d in range(nd):
    os.makedirs(f"{base}/d{d:05d}", exist_ok=True)
for i in range(n):
    with open(f"{base}/d{i % nd:05d}/f{i:08d}.txt", "wb") as f:
        f.write(b"%d " % i * (1 + i % 64))
PY
cat >"$W/policy.yaml" <<YAML
version: 1
name: browse
root: $W/root
consistency:
  mode: online
  two_pass: false
targets:
  - name: t
    location: $W/coffer-repo
components:
  - name: data
    type: files
    paths: [data]
YAML
export COFFER_PASSPHRASE=browse-bench RESTIC_PASSWORD=browse-bench RESTIC_REPOSITORY=$W/restic-repo
"$COFFER" -q init -p "$W/policy.yaml" >/dev/null || die "coffer init failed"
restic init -q >/dev/null || die "restic init failed"
snap() {
    "$COFFER" -q --no-progress backup -p "$W/policy.yaml" >/dev/null || die "coffer backup failed"
    (cd "$W/root" && restic backup -q data >/dev/null) || die "restic backup failed"
}
snap
find "$W/root/data" -type f | awk -v n=$((files / 1000)) 'NR % 1000 == 1 && c++ < n' | while read -r f; do echo x >>"$f"; done
snap
ids=$("$COFFER" sets -p "$W/policy.yaml" | awk '{print $1}')
c1=$(echo "$ids" | head -1); c2=$(echo "$ids" | tail -1)
r1=$(restic snapshots --json | /usr/bin/python3 -c 'import json,sys; s=json.load(sys.stdin); print(s[0]["short_id"])')
r2=$(restic snapshots --json | /usr/bin/python3 -c 'import json,sys; s=json.load(sys.stdin); print(s[-1]["short_id"])')
name=f$(printf '%08d' $((files / 2))).txt
dir=d$(printf '%05d' $(((files / 2) % dirs)))

results=()
measure() { # LABEL CMD...: wall seconds and peak RSS (KiB), output discarded
    local label=$1; shift
    /usr/bin/time -f '%e %M' -o "$W/time" "$@" >"$W/out" 2>"$W/err" || { echo "browse_bench: $label failed:"; head -5 "$W/err"; }
    read -r s k <"$W/time"
    results+=("$label $s $k $(wc -l <"$W/out")")
}
measure "coffer-ls"   "$COFFER" ls -p "$W/policy.yaml" "data/data/$dir"
measure "restic-ls"   restic ls latest "/data/$dir"
measure "coffer-find" "$COFFER" find -p "$W/policy.yaml" --set latest "$name"
measure "restic-find" restic find --snapshot "$r2" "$name"
measure "coffer-find-all" "$COFFER" find -p "$W/policy.yaml" "$name"
measure "restic-find-all" restic find "$name"
measure "coffer-diff" "$COFFER" diff -p "$W/policy.yaml" "$c1" "$c2"
measure "restic-diff" restic diff "$r1" "$r2"
measure "coffer-stats" "$COFFER" stats -p "$W/policy.yaml"
printf '\n%-16s %9s %10s %8s\n' command seconds "peak MiB" lines
for r in "${results[@]}"; do
    set -- $r
    printf '%-16s %9s %10.1f %8s\n' "$1" "$2" "$(awk -v k="$3" 'BEGIN{print k/1024}')" "$4"
done
get() { for r in "${results[@]}"; do set -- $r; [ "$1" = "$2$3" ] 2>/dev/null; done; }
sec() { for r in "${results[@]}"; do set -- $r; [ "$1" = "$want" ] && echo "$2"; done; }
echo
for op in ls find find-all diff; do
    want=coffer-$op; c=$(sec); want=restic-$op; r=$(sec)
    awk -v c="$c" -v r="$r" -v op="$op" 'BEGIN{ if (r > 0) printf "ratio %-9s coffer/restic %.2f (%.2f s vs %.2f s)\n", op, c/r, c, r }'
done
