#!/usr/bin/env bash
# Copy between sites, interrupted and resumed: sets go from an encrypted
# repository to another one with its own key; the copy is killed while it
# writes, more than once; each rerun resumes (sets already there are
# skipped) and in the end every set is at the destination, restores byte
# for byte and passes check --read-data. Also the multi-target backup,
# and copies into and out of an unencrypted repository.
HERE=$(cd "$(dirname "$0")" && pwd)
. "${COFFER_SRC:-$HERE/../../..}/tests/e2e/lib.sh"
. "$HERE/lifecycle.sh"
require_coffer
setup_env
export COFFER_PASSPHRASE="site one" SECOND_PASS="site two" COFFER_REPO2=$T/second
two_target_policy "$T/multi.yaml" "passphrase_env: SECOND_PASS"
P2=$T/multi.yaml

section "four sets at the first site"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 40 --seed 81
expect_ok "init primary" cf init -p "$P2" --target primary || die init
expect_ok "init second (another key)" cf init -p "$P2" --target second || die init
for n in 1 2 3 4; do
    [ $n -gt 1 ] && mutate_deployment "$ASTERDRIVE_ROOT" --percent 10 --seed $((81 + n))
    backup_set -p "$P2" --target primary
    IDS[$n]=$SET
    snapshot "$ASTERDRIVE_ROOT" "$T/snap$n.json"
done

section "copy killed while writing, then resumed"
# PID DIR MINSETS: once DIR holds MINSETS sets, SIGKILL at the next new pack
kill_when_writing() {
    "$PY" - "$@" <<'PYEOF'
import os, signal, sys, time
pid, repo, minsets = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def count(sub):
    return sum(len([f for f in fs if not f.startswith(".")]) for _, _, fs in os.walk(os.path.join(repo, sub)))
t0, n0 = time.time(), None
while time.time() - t0 < 120:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        print("finished"); sys.exit()
    if n0 is None and count("sets") >= minsets:
        n0 = count("data")
    if n0 is not None and count("data") > n0:
        os.kill(pid, signal.SIGKILL); print("killed"); sys.exit()
    time.sleep(0.001)
print("timeout")
PYEOF
}
interrupted=0
for attempt in 1 2 3; do
    "$COFFER" --no-progress copy -p "$P2" --from primary --to second --set all >"$T/copy$attempt.log" 2>&1 &
    pid=$!
    what=$(kill_when_writing $pid "$COFFER_REPO2" $((attempt - 1)))
    wait $pid 2>/dev/null
    note "copy attempt $attempt: $what; sets at the second site: $(count_sets "$COFFER_REPO2")"
    [ "$what" = killed ] && interrupted=$((interrupted + 1))
done
assert_gt "$interrupted" 0 "the copy was interrupted while writing"
assert_lt "$(count_sets "$COFFER_REPO2")" 4 "not every set got there before the kills"
expect_ok "check on the interrupted destination (leftovers are harmless)" cf check -p "$P2" --target second
expect_ok "copy resumed" cf copy -p "$P2" --from primary --to second --set all
assert_contains "$OUT" "4 set(s) present at target 'second'"
assert_eq 4 "$(count_sets "$COFFER_REPO2")" "all four sets at the second site"
expect_ok "copy again: nothing to do" cf copy -p "$P2" --from primary --to second --set all
assert_match "$ERR" "already at target 'second'" "sets already copied are skipped"
expect_ok "check --read-data at the second site" cf check -p "$P2" --target second --read-data
for n in 1 2 3 4; do
    restore_compare "set $n from the second site" "${IDS[$n]}" "$T/snap$n.json" -p "$P2" --target second
done
expect_ok "prune at the second site removes the interrupted copies' leftovers when old" \
    cf prune -p "$P2" --target second

section "multi-target backup"
mutate_deployment "$ASTERDRIVE_ROOT" --percent 5 --seed 90
expect_ok "backup to both sites" cf -v backup -p "$P2"
S5=$(last_line "$OUT")
# The sites have different keys, so chunk ids differ; set 4, copied
# earlier, is in both, and its two manifests say where each chunk went:
# the copy reads what changed since, not the whole set.
read5=$(printf '%s\n' "$ERR" | sed -n 's/.*: read \([0-9.]*\) MiB of packs in .*/\1/p')
packs=$(du -sm "$COFFER_REPO/data" | cut -f1)
note "the copy of set 5 read ${read5:-?} MiB of packs; the primary holds $packs MiB"
assert_contains "$ERR" "is in both repositories: its chunks need no reading again" \
    "the copy starts from the newest set both sites hold"
assert_lt "$(awk -v r="${read5:-999999}" -v p="$packs" 'BEGIN {print (r < 0.25 * p) ? 0 : 1}')" 1 \
    "the copy read under a quarter of the primary's packs"
snapshot "$ASTERDRIVE_ROOT" "$T/snap5.json"
assert_exists "$COFFER_REPO2/sets/$S5" "the new set is at the second site too"
restore_compare "set 5 from the second site" "$S5" "$T/snap5.json" -p "$P2" --target second

section "one copy of several sets reads each source chunk once"
# Both repositories are encrypted with their own keys, so chunk ids differ
# and the destination cannot be asked for a source id: what a set shares
# with one copied earlier in the same run is known from that run.
SAVED_REPO2=$COFFER_REPO2
export COFFER_REPO2=$T/fifth
expect_ok "init a fifth site (its own key)" cf init -p "$P2" --target second
expect_ok "copy -v of all sets in one run" cf -v copy -p "$P2" --from primary --to second --set all
mib=$(printf '%s\n' "$ERR" | sed -n 's/.*: read \([0-9.]*\) MiB of packs in .*/\1/p')
first=$(printf '%s\n' "$mib" | head -1)
total=$(printf '%s\n' "$mib" | awk '{s += $1} END {print s}')
note "MiB of packs read per set: $(printf '%s ' $mib)"
assert_eq "$(count_sets "$COFFER_REPO")" "$(printf '%s\n' "$mib" | grep -c .)" "each set reports what it read"
# each later set differs from the one before by 5-10%: read again in
# full, the run would read about five times the first set
assert_lt "$(awk -v t="$total" -v f="$first" 'BEGIN {print (t < 1.6 * f) ? 0 : 1}')" 1 \
    "the run read $total MiB in all, under 1.6 x the first set's $first MiB"
for n in 1 4; do
    restore_compare "set $n from the fifth site" "${IDS[$n]}" "$T/snap$n.json" -p "$P2" --target second
done
expect_ok "check --read-data at the fifth site" cf check -p "$P2" --target second --read-data
export COFFER_REPO2=$SAVED_REPO2

section "to and from an unencrypted repository"
two_target_policy "$T/plain.yaml"
export COFFER_REPO2=$T/plain
expect_ok "init unencrypted target" cf init -p "$T/plain.yaml" --target second --encryption none
expect_ok "copy encrypted -> unencrypted" cf copy -p "$T/plain.yaml" --from primary --to second --set "${IDS[2]}"
restore_compare "set 2 from the unencrypted copy" "${IDS[2]}" "$T/snap2.json" -p "$T/plain.yaml" --target second
export COFFER_REPO=$T/back
expect_ok "init a third, encrypted" cf init -p "$T/plain.yaml" --target primary
expect_ok "copy unencrypted -> encrypted" cf copy -p "$T/plain.yaml" --from second --to primary --set "${IDS[2]}"
restore_compare "set 2 after the round trip" "${IDS[2]}" "$T/snap2.json" -p "$T/plain.yaml" --target primary
expect_ok "check --read-data" cf check -p "$T/plain.yaml" --target primary --read-data

section "copy reads ahead in ranged reads, and a damaged source fails it cleanly"
export COFFER_REPO2=$T/third
expect_ok "init a fresh unencrypted target" cf init -p "$T/plain.yaml" --target second --encryption none
expect_ok "copy -v encrypted -> fresh" cf -v copy -p "$T/plain.yaml" --from primary --to second --set "${IDS[2]}"
reads=$(printf '%s\n' "$ERR" | sed -n 's/.*read [0-9.]* MiB of packs in \([0-9]*\) ranged read.*/\1/p')
run cf stats -p "$T/plain.yaml" --target second --json
chunks=$(json_get "$OUT" 'j["repository"]["chunks"]')
note "copy of set 2: ${reads:-?} ranged reads for $chunks chunks"
assert_gt "${reads:-0}" 0 "copy -v reports its ranged reads"
assert_lt "${reads:-999999}" "$chunks" "chunks of one pack lying together are read in one request"
restore_compare "set 2 from the fresh copy" "${IDS[2]}" "$T/snap2.json" -p "$T/plain.yaml" --target second
export COFFER_REPO2=$T/fourth
expect_ok "init another fresh target" cf init -p "$T/plain.yaml" --target second --encryption none
big=$(find "$COFFER_REPO/data" -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2)
flip "$big" $(($(stat -c %s "$big") / 2))
expect_rc 1 "copy from a source with a damaged pack" \
    cf copy -p "$T/plain.yaml" --from primary --to second --set "${IDS[2]}"
assert_error_line
assert_contains "$ERR" "${big#"$COFFER_REPO"/}" "the error names the damaged pack"
assert_match "$ERR" "chunk [0-9a-f]{64}" "the error names the chunk"
assert_eq 0 "$(count_sets "$COFFER_REPO2")" "the destination gained no set"

finish
