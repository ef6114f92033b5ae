#!/usr/bin/env bash
# Prune killed (SIGKILL) after random delays, again and again: after every
# kill the repository passes check, the kept sets restore byte for byte,
# and the stale lock the dead prune left is removed with a log line by the
# next command. Finally a prune completes and check --read-data passes.
HERE=$(cd "$(dirname "$0")" && pwd)
. "${COFFER_SRC:-$HERE/../../..}/tests/e2e/lib.sh"
. "$HERE/lifecycle.sh"
require_coffer
setup_env
export COFFER_PASSPHRASE="kill test"
KILLS=${LIFECYCLE_KILLS:-14}

section "history: six backups, forget four"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 40 --seed 51
expect_ok "init" cf init -p "$POLICY" || die init
for n in 1 2 3 4 5 6; do
    [ $n -gt 1 ] && mutate_deployment "$ASTERDRIVE_ROOT" --percent 20 --seed $((51 + n))
    backup_set -p "$POLICY"
    IDS[$n]=$SET
    snapshot "$ASTERDRIVE_ROOT" "$T/snap$n.json"
done
expect_ok "forget --keep-last 2" cf forget -p "$POLICY" --keep-last 2

section "calibrate: how long does a whole prune take?"
cp -a "$COFFER_REPO" "$T/orig"
cp -a "$COFFER_REPO" "$T/calib"
t0=$(date +%s%N)
COFFER_REPO=$T/calib expect_ok "prune (on a copy)" cf prune -p "$POLICY" --max-unused 0
DUR_MS=$((($(date +%s%N) - t0) / 1000000))
rm -rf "$T/calib"
SPAN=$((DUR_MS * 9 / 10))
note "a whole prune takes ${DUR_MS} ms; kills are spread over 0..${SPAN} ms"

section "kill prune $KILLS times"
# Where each kill lands: after a random delay, or the moment the prune
# reaches a phase (watched on the repository directory): a new pack being
# written (repacking), the index objects changing (new index written, old
# ones being removed), the first old pack removed.
watch_and_kill() {
    "$PY" - "$@" <<'PYEOF'
import os, signal, sys, time
pid, repo, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def packs():
    out = set()
    for d, _, fs in os.walk(os.path.join(repo, "data")):
        out.update(f for f in fs if not f.startswith("."))
    return out
def index():
    try:
        return set(f for f in os.listdir(os.path.join(repo, "index")) if not f.startswith("."))
    except FileNotFoundError:
        return set()
p0, i0 = packs(), index()
t0 = time.time()
delay = float(mode[6:]) / 1000 if mode.startswith("delay:") else None
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        print("finished"); break
    hit = False
    if delay is not None:
        hit = time.time() - t0 >= delay
    elif mode == "newpack":
        hit = bool(packs() - p0)
    elif mode == "index":
        hit = index() != i0
    elif mode == "packgone":
        hit = bool(p0 - packs())
    if hit:
        os.kill(pid, signal.SIGKILL)
        print("killed"); break
    if time.time() - t0 > 120:
        print("timeout"); break
    time.sleep(0.0005)
PYEOF
}
RANDOM=51
completed=0
stale_seen=0
kills=0
modes=(newpack index packgone delay)
for i in $(seq 1 "$KILLS"); do
    mode=${modes[$((i % 4))]}
    [ "$mode" = delay ] && mode="delay:$((RANDOM % (SPAN + 1)))"
    "$COFFER" --no-progress prune -p "$POLICY" --max-unused 0 >"$T/prune.$i.out" 2>&1 &
    pid=$!
    what=$(watch_and_kill $pid "$COFFER_REPO" "$mode")
    wait $pid 2>/dev/null
    rc=$?
    if [ "$what" = killed ]; then
        kills=$((kills + 1))
        note "#$i: killed ($mode)"
    else
        note "#$i: prune finished before the kill ($mode: $what), exit $rc"
        [ $rc -eq 0 ] && completed=$((completed + 1))
    fi
    LOCKS=$(ls "$COFFER_REPO/locks" 2>/dev/null | wc -l)
    run cf check -p "$POLICY"
    if [ "$RC" -eq 0 ]; then pass "#$i: check passes after the kill"; else
        fail "#$i: check after the kill exited $RC"; printf '%s\n' "$ERR" | show
    fi
    if [ "$LOCKS" -gt 0 ]; then
        if [[ "$ERR" == *"removing stale lock"*"its process is gone"* ]]; then
            stale_seen=$((stale_seen + 1)); pass "#$i: the dead prune's lock was removed with a log line"
        else
            fail "#$i: a lock was left but no 'removing stale lock' line"; printf '%s\n' "$ERR" | show
        fi
    fi
    # alternate between the two kept sets to keep the loop quick
    k=$((5 + i % 2))
    restore_compare "#$i: kept set $k" "${IDS[$k]}" "$T/snap$k.json" -p "$POLICY"
    if [ "$what" != killed ] && [ "$rc" -eq 0 ]; then
        # nothing left to prune: start over from the history, so the next
        # kills land in a prune with work to do again
        rm -rf "$COFFER_REPO" && cp -a "$T/orig" "$COFFER_REPO"
    fi
done
note "$kills kill(s), $completed prune(s) finished first"
assert_gt "$kills" $((KILLS / 2)) "most prunes were killed"
assert_gt "$stale_seen" 0 "kills left stale locks, and they were cleaned up"

section "a prune runs to the end"
expect_ok "prune (uninterrupted)" cf prune -p "$POLICY" --max-unused 0
expect_ok "check --read-data" cf check -p "$POLICY" --read-data
expect_ok "a second prune removes what the kills left (unindexed packs are recent: kept)" cf prune -p "$POLICY"
restore_compare "kept set 5" "${IDS[5]}" "$T/snap5.json" -p "$POLICY"
restore_compare "kept set 6" "${IDS[6]}" "$T/snap6.json" -p "$POLICY"
expect_ok "sets still lists the two kept sets" cf sets -p "$POLICY" --json
assert_eq 2 "$(json_get "$OUT" 'len(j)')" "two sets"

finish
