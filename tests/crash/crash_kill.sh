#!/usr/bin/env bash
# kill -9 at random moments of backup, prune, copy and key add / remove /
# passwd, on a local repository (`crash_kill.sh local`) or on a real Ceph
# RGW (`crash_kill.sh s3`). Each operation is timed once uninterrupted;
# every round then starts it again and sends SIGKILL after a delay drawn
# uniformly from 0 to that duration. After each kill:
#   - `coffer check` passes on every target (the only reports allowed are
#     the documented harmless ones: unindexed packs, stale locks removed),
#   - `coffer sets` lists no partial set: the set count is the one before
#     or one more, and every listed set verifies,
#   - a passphrase still opens the repository (key changes),
#   - the next backup and prune succeed; the prune removes the dead
#     process's stale lock, and the leftovers it is documented to remove
#     (local: unindexed packs once older than an hour, which the test
#     simulates by ageing them),
#   - the latest set restores byte for byte equal to its source.
# Counted and printed at the end: runs per operation, kills that landed
# mid-operation, partial sets seen, check failures (must be 0), leftovers.
# Kills aimed at prune's phases (a new pack, the index swap, the first
# pack removed) are in tests/core/lifecycle/lifecycle_prune_kill.sh.
#
#   CRASH_ROUNDS  rounds per operation (default 5 local, 2 on S3)
#   CRASH_SEED    seed of the kill delays (default 1)
#   CRASH_OPS     operations to run (default "backup prune copy key-add key-remove key-passwd")
HERE=$(cd "$(dirname "$0")" && pwd)
. "${COFFER_SRC:-$HERE/../..}/tests/e2e/lib.sh"
. "$COFFER_SRC/tests/core/lifecycle/lifecycle.sh"
require_coffer
MODE=${1:-local}
case "$MODE" in
local) ROUNDS=${CRASH_ROUNDS:-5} ;;
s3)
    . "$COFFER_SRC/tests/plugins/storage_s3/rgw_lib.sh"
    ROUNDS=${CRASH_ROUNDS:-2}
    rgw_start
    ;;
*) die "usage: crash_kill.sh local|s3" ;;
esac
SEED=${CRASH_SEED:-1}
OPS=${CRASH_OPS:-"backup prune copy key-add key-remove key-passwd"}
setup_env
export COFFER_PASSPHRASE="crash one" SECOND_PASS="crash two"
if [ "$MODE" = s3 ]; then
    export COFFER_REPO=s3://coffer-crash/primary COFFER_REPO2=s3://coffer-crash/second
    # small parts: every pack of the test goes up as a multipart upload;
    # the next run that writes aborts uploads a killed run left (after
    # 1 s here: nothing else runs at the same time in this test)
    EXTRA=("part_size: 5M" "abort_uploads_after: 1")
else
    export COFFER_REPO2=$T/second
    EXTRA=()
fi
# primary and second (own passphrase), both with EXTRA options
lines=""
for kv in "${EXTRA[@]}"; do lines="$lines\\n    $kv"; done
lines="$lines\\n  - name: second\\n    location: \${COFFER_REPO2}\\n    passphrase_env: SECOND_PASS"
for kv in "${EXTRA[@]}"; do lines="$lines\\n    $kv"; done
sed "s|^    location: \${COFFER_REPO:-/srv/backups/asterdrive}\$|&$lines|" "$POLICY" >"$T/policy.yaml" ||
    die "policy"
P=$T/policy.yaml
# the S3 driver of this build, also for the helpers of lib.sh
export COFFER_PLUGIN_PATH=$COFFER_PLUGIN_BUILD_DIR
ccf() { "$COFFER" --no-progress "$@"; }

# ---- what the targets hold ------------------------------------------------
# (one AWS CLI call each on S3: the bucket holds only the two repositories)
repo_of() { if [ "$1" = primary ]; then echo "$COFFER_REPO"; else echo "$COFFER_REPO2"; fi; }
# nlocks: lock objects of both targets
nlocks() {
    if [ "$MODE" = s3 ]; then
        awsx s3api list-objects-v2 --bucket coffer-crash \
            --query 'length(Contents[?contains(Key, `/locks/`)] || `[]`)' --output text 2>/dev/null
    else
        find "$COFFER_REPO/locks" "$COFFER_REPO2/locks" -type f ! -name '.tmp-*' 2>/dev/null | wc -l
    fi
}
# nleft: incomplete multipart uploads (S3) or temporary files (local) of both targets
nleft() {
    if [ "$MODE" = s3 ]; then
        awsx s3api list-multipart-uploads --bucket coffer-crash \
            --query 'length(Uploads || `[]`)' --output text 2>/dev/null
    else
        find "$COFFER_REPO" "$COFFER_REPO2" -name '.tmp-*' 2>/dev/null | wc -l
    fi
}
# local only: make every pack look two hours old, as if the hour prune
# waits before removing unindexed packs had passed
age_packs() {
    [ "$MODE" = local ] || return 0
    find "$(repo_of "$1")/data" -type f ! -name '.tmp-*' -exec touch -d '2 hours ago' {} +
}

# ---- statistics ----------------------------------------------------------------
declare -A RUNS KILLED FINISHED PARTIAL CHECKFAIL DUR
PARTIAL_TOTAL=0
CHECKFAIL_TOTAL=0
STALE_REMOVED=0
LEFT_AFTER_KILL=0
LEFT_AFTER_PRUNE=0
ORPHANS_LEFT=0

# check_target LABEL OP TARGET: check passes; counted
check_target() {
    run ccf check -p "$P" --target "$3"
    if [ "$RC" -eq 0 ]; then
        pass "$1: check of $3 passes"
    else
        fail "$1: check of $3 exited $RC"
        printf '%s\n%s\n' "$OUT" "$ERR" | show
        CHECKFAIL[$2]=$((${CHECKFAIL[$2]:-0} + 1))
        CHECKFAIL_TOTAL=$((CHECKFAIL_TOTAL + 1))
    fi
    if [[ "$ERR" == *"removing stale lock"*"its process is gone"* ]]; then
        STALE_REMOVED=$((STALE_REMOVED + 1))
    fi
}

# set_ids TARGET: the ids `coffer sets` lists, one a line
set_ids() {
    local o
    o=$(ccf sets -p "$P" --target "$1" --json 2>/dev/null) || return 0
    json_get "$o" '"\n".join(s["id"] for s in j)'
}

# sets_whole LABEL OP TARGET MIN MAX BEFORE: MIN..MAX sets listed; every
# set not in BEFORE (the ids listed before the kill) verifies (check has
# read every manifest and looked up every chunk already)
sets_whole() {
    local label=$1 op=$2 tg=$3 min=$4 max=$5 before=$6 n ids id bad=0
    run ccf sets -p "$P" --target "$tg" --json
    if [ "$RC" -ne 0 ]; then
        fail "$label: sets on $tg exited $RC"; printf '%s\n' "$ERR" | show
        bad=1
    else
        n=$(json_get "$OUT" 'len(j)')
        ids=$(json_get "$OUT" '" ".join(s["id"] for s in j)')
        if [ "$n" -lt "$min" ] || [ "$n" -gt "$max" ]; then
            fail "$label: $tg lists $n sets, expected $min..$max"; bad=1
        fi
        for id in $ids; do
            grep -qx "$id" <<<"$before" && continue
            run ccf verify -p "$P" --target "$tg" --set "$id"
            if [ "$RC" -ne 0 ]; then
                fail "$label: set $id, new on $tg, does not verify (exit $RC)"
                printf '%s\n' "$ERR" | show 10
                bad=1
            else
                pass "$label: set $id, new on $tg, verifies"
            fi
        done
        [ $bad -eq 0 ] && pass "$label: $tg lists $n whole set(s) (expected $min..$max)"
    fi
    if [ $bad -ne 0 ]; then
        PARTIAL[$op]=$((${PARTIAL[$op]:-0} + 1))
        PARTIAL_TOTAL=$((PARTIAL_TOTAL + 1))
    fi
}

# A uniform delay in 0..$1 ms from the seeded generator.
RANDOM=$SEED
rand_ms() { echo $(((RANDOM * 32768 + RANDOM) % ($1 + 1))); }

# kill_after MS CMD...: start CMD, SIGKILL it after MS ms; KRC = its status
# (137: killed while running), output in $T/killed.out
kill_after() {
    local ms=$1; shift
    "$@" >"$T/killed.out" 2>&1 &
    local pid=$!
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    KRC=$?
}

# timed OP CMD...: run CMD (must succeed), record its duration in ms as DUR[OP]
timed() {
    local op=$1; shift
    local t0; t0=$(date +%s%N)
    expect_ok "$op, uninterrupted (timing run)" "$@" || die "$op failed: $ERR"
    DUR[$op]=$((($(date +%s%N) - t0) / 1000000))
    note "$op takes ${DUR[$op]} ms"
}

# new_data SEED: the deployment changed, plus 8 MiB that do not compress
# (a pack big enough to go up in parts on S3, and a backup long enough to
# be killed in the middle of its writes)
new_data() {
    mutate_deployment "$ASTERDRIVE_ROOT" --percent 15 --seed "$1" >/dev/null
    head -c 8M /dev/urandom >"$ASTERDRIVE_ROOT/data/incoming.bin"
}

# ---- history ---------------------------------------------------------------
section "setup ($MODE): two targets, timing runs"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb "${CRASH_SIZE_MB:-16}" --seed 61
expect_ok "init primary" ccf init -p "$P" --target primary || die init
expect_ok "init second" ccf init -p "$P" --target second || die init
backup_set -p "$P" --target primary
expect_ok "copy" ccf copy -p "$P" --from primary --to second --set all
# the timing runs do what a round does: one new backup, one set to copy,
# the data of the sets forget dropped to prune
new_data 62
timed backup ccf backup -p "$P" --target primary
timed copy ccf copy -p "$P" --from primary --to second --set all
new_data 63
expect_ok "backup" ccf backup -p "$P" --target primary
expect_ok "forget --keep-last 2" ccf forget -p "$P" --target primary --keep-last 2
timed prune ccf prune -p "$P" --target primary --max-unused 0
NEWP="crash timing"
COFFER_NEW_PASSPHRASE=$NEWP timed key-add ccf key add -p "$P" --target primary
KEYID=$(printf '%s\n' "$OUT" | awk '/added key/ {print $3}')
timed key-remove ccf key remove -p "$P" --target primary "$KEYID"
COFFER_NEW_PASSPHRASE=$NEWP timed key-passwd ccf key passwd -p "$P" --target primary
export COFFER_PASSPHRASE=$NEWP

# ---- one round ------------------------------------------------------------------
# prepare OP N: make the operation have work to do
prepare() {
    case "$1" in
    backup) new_data $((100 + $2)) ;;
    prune)
        expect_ok "forget --keep-last 2 (work for prune)" ccf forget -p "$P" --target primary --keep-last 2 ;;
    copy) ;; # every round's backup adds a set the second target lacks
    key-remove)
        COFFER_NEW_PASSPHRASE="crash extra $2" expect_ok "key add (a key to remove)" \
            ccf key add -p "$P" --target primary
        KEYID=$(printf '%s\n' "$OUT" | awk '/added key/ {print $3}') ;;
    esac
}

# the command a round kills; exec: the process killed is coffer itself
victim() {
    case "$1" in
    backup) exec "$COFFER" --no-progress backup -p "$P" --target primary ;;
    prune) exec "$COFFER" --no-progress prune -p "$P" --target primary --max-unused 0 ;;
    copy) exec "$COFFER" --no-progress copy -p "$P" --from primary --to second --set all ;;
    key-add) COFFER_NEW_PASSPHRASE="crash added $2" exec "$COFFER" --no-progress key add -p "$P" --target primary ;;
    key-remove) exec "$COFFER" --no-progress key remove -p "$P" --target primary "$KEYID" ;;
    key-passwd) COFFER_NEW_PASSPHRASE="crash passwd $2" exec "$COFFER" --no-progress key passwd -p "$P" --target primary ;;
    esac
}

round() {
    local op=$1 i=$2 label="$1 #$2" ms s1 s2
    prepare "$op" "$i"
    local b1 b2 s1 s2
    b1=$(set_ids primary)
    b2=$(set_ids second)
    s1=$(grep -c . <<<"$b1")
    s2=$(grep -c . <<<"$b2")
    ms=$(rand_ms "${DUR[$op]}")
    kill_after "$ms" victim "$op" "$i"
    RUNS[$op]=$((${RUNS[$op]:-0} + 1))
    if [ "$KRC" -eq 137 ]; then
        KILLED[$op]=$((${KILLED[$op]:-0} + 1))
        note "$label: killed after $ms of ${DUR[$op]} ms"
    else
        FINISHED[$op]=$((${FINISHED[$op]:-0} + 1))
        note "$label: finished (exit $KRC) before the kill at $ms ms"
        [ "$KRC" -eq 0 ] || { fail "$label: exited $KRC without being killed"; show <"$T/killed.out"; }
    fi
    LEFT_AFTER_KILL=$((LEFT_AFTER_KILL + $(nleft)))

    # which passphrase opens the repository now
    if [ "$op" = key-passwd ]; then
        local new="crash passwd $i"
        if ! ccf sets -p "$P" --target primary >/dev/null 2>&1; then
            if COFFER_PASSPHRASE=$new ccf sets -p "$P" --target primary >/dev/null 2>&1; then
                export COFFER_PASSPHRASE=$new
                pass "$label: the new passphrase opens the repository"
            else
                fail "$label: neither the old nor the new passphrase opens the repository"
            fi
        else
            pass "$label: the old passphrase still opens the repository"
        fi
    fi

    check_target "$label" "$op" primary
    case "$op" in
    backup) sets_whole "$label" "$op" primary "$s1" $((s1 + 1)) "$b1" ;;
    copy)
        check_target "$label" "$op" second
        sets_whole "$label" "$op" second "$s2" $((s2 + 99)) "$b2" ;;
    *) sets_whole "$label" "$op" primary "$s1" "$s1" "$b1" ;;
    esac

    # the next backup and prune work and collect what the kill left
    age_packs primary
    age_packs second
    expect_ok "$label: next backup" ccf backup -p "$P" --target primary || die "backup after $label"
    local set; set=$(last_line "$OUT")
    snapshot "$ASTERDRIVE_ROOT" "$T/snap.json"
    expect_ok "$label: next prune (primary)" ccf prune -p "$P" --target primary
    [[ "$ERR" == *"removing stale lock"*"its process is gone"* ]] && STALE_REMOVED=$((STALE_REMOVED + 1))
    if [ "$op" = copy ]; then
        expect_ok "$label: copy completes" ccf copy -p "$P" --from primary --to second --set all
        expect_ok "$label: next prune (second)" ccf prune -p "$P" --target second
        [[ "$ERR" == *"removing stale lock"*"its process is gone"* ]] && STALE_REMOVED=$((STALE_REMOVED + 1))
    fi
    assert_eq 0 "$(nlocks)" "$label: no lock left at either target"
    run ccf check -p "$P" --target primary --json
    local orph; orph=$(json_get "$OUT" 'len(j.get("orphans", []))' 2>/dev/null || echo "?")
    if [ "$MODE" = local ]; then
        assert_eq 0 "$orph" "$label: no unindexed pack left after the prune"
    else
        # S3 objects cannot be aged: unindexed packs younger than an hour stay
        [ "$orph" != 0 ] && ORPHANS_LEFT=$((ORPHANS_LEFT + orph))
    fi
    local left; left=$(nleft)
    LEFT_AFTER_PRUNE=$((LEFT_AFTER_PRUNE + left))
    # S3: the next backup aborted what the kill left. Local: the driver
    # hides its temporary files from listings and nothing removes them
    # yet, so they are only counted.
    [ "$MODE" = s3 ] && assert_eq 0 "$left" "$label: no incomplete multipart upload left"
    restore_compare "$label: latest set" "$set" "$T/snap.json" -p "$P" --target primary
}

t_start=$SECONDS
for op in $OPS; do
    section "kill $op, $ROUNDS round(s), delays within ${DUR[$op]} ms"
    for i in $(seq 1 "$ROUNDS"); do
        round "$op" "$i"
    done
done

section "statistics ($MODE, seed $SEED, $((SECONDS - t_start)) s of rounds)"
printf '%-11s %5s %7s %9s %8s %11s %9s\n' operation runs killed finished partial check-fail "dur(ms)"
killed_total=0
for op in $OPS; do
    printf '%-11s %5d %7d %9d %8d %11d %9d\n' "$op" "${RUNS[$op]:-0}" "${KILLED[$op]:-0}" \
        "${FINISHED[$op]:-0}" "${PARTIAL[$op]:-0}" "${CHECKFAIL[$op]:-0}" "${DUR[$op]}"
    killed_total=$((killed_total + ${KILLED[$op]:-0}))
done
what_left="temporary files"
[ "$MODE" = s3 ] && what_left="incomplete multipart uploads"
echo "partial sets seen: $PARTIAL_TOTAL; check failures: $CHECKFAIL_TOTAL"
echo "stale locks removed by the next command: $STALE_REMOVED"
echo "$what_left seen right after the kills (summed over rounds): $LEFT_AFTER_KILL; still there after the next prune: $LEFT_AFTER_PRUNE"
[ "$MODE" = s3 ] && echo "unindexed packs kept by prune (younger than an hour, summed over rounds): $ORPHANS_LEFT"
assert_eq 0 "$PARTIAL_TOTAL" "no partial set was ever listed"
assert_eq 0 "$CHECKFAIL_TOTAL" "check never failed after a kill"
assert_gt "$killed_total" 0 "kills landed mid-operation"

section "the end: every set of both targets reads back"
expect_ok "check --read-data (primary)" ccf check -p "$P" --target primary --read-data
expect_ok "check --read-data (second)" ccf check -p "$P" --target second --read-data
finish
