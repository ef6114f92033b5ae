#!/usr/bin/env bash
# Faults during an upload to S3 (Ceph RGW): radosgw is stopped while
# coffer is sending the packs of a backup.
#   1. stopped and started again a few seconds later: the backup either
#      completes through its retries or fails cleanly; a completed one
#      verifies and restores equal to the source; a failed one left no set.
#   2. stopped for good (retries: 2): the backup fails with a clear error
#      and no set manifest (sets/) is visible, unless the kill landed on
#      the manifest's own PUT and coffer said it cannot tell.
# After both, a plain backup works and every visible set verifies.
. "$COFFER_SRC/tests/e2e/lib.sh"
. "$(dirname "$0")/rgw_lib.sh"
require_coffer
rgw_start
setup_env
export COFFER_REPO=s3://coffer-fault/asterdrive
RGWLOG=$RGW_DIR/log/client.rgw.coffer.log

# wait_first_part: until RGW logged a part upload or a pack PUT (10 s max)
wait_upload() {
    local i
    for i in $(seq 1 400); do
        grep -q 'PUT /coffer-fault/asterdrive/data/' "$RGWLOG" 2>/dev/null && return 0
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.025
    done
    return 1
}

section "generate"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 160 --seed 31
expect_ok "init" cfs init -p "$POLICY" || die "init failed"

section "1: radosgw restarted in the middle of an upload"
: >"$RGWLOG"
cfs -v backup -p "$POLICY" >"$T/b1.out" 2>"$T/b1.err" &
BPID=$!
bg_register "$BPID"
if wait_upload "$BPID"; then
    # SIGKILL at once: a graceful stop lets radosgw finish what is in
    # flight, and a fast backup then completes before it is gone
    kill -9 "$(cat "$RGW_DIR/pids/radosgw")" 2>/dev/null
    bash "$TOOLS/ceph_rgw.sh" stop-rgw "$RGW_DIR"
    pass "radosgw stopped while the backup was uploading"
    sleep 4
    bash "$TOOLS/ceph_rgw.sh" start-rgw "$RGW_DIR" || die "radosgw did not come back"
    pass "radosgw started again"
else
    fail "the backup finished before an upload could be interrupted"
fi
wait "$BPID"
RC1=$?
# taken after the backup, like roundtrip.sh: the backup itself touches
# the mtime of data/ (the SQLite capture)
snapshot "$ASTERDRIVE_ROOT" "$T/snap.json"
SETS=$(s3_count coffer-fault asterdrive/sets/)
if [ "$RC1" -eq 0 ]; then
    pass "backup completed through retries"
    assert_match "$(cat "$T/b1.err")" "S3 coffer-fault: [1-9][0-9]* request\(s\) retried after transient failures, [0-9.]+ s spent in backoff" \
        "the retries are counted (-v)"
    assert_eq 1 "$SETS" "one set visible"
    expect_ok "verify --read-data of that set" cfs verify -p "$POLICY" --read-data
    expect_ok "restore it" cfs restore -p "$POLICY" --set latest --to "$T/restored1"
    snapshot "$T/restored1" "$T/restored1.json"
    compare "restore equals the source" "$T/snap.json" "$T/restored1.json" "${RESTORE_EXCLUDES[@]}"
else
    pass "backup failed cleanly (exit $RC1)"
    ERR=$(cat "$T/b1.err")
    assert_error_line
    assert_eq 0 "$SETS" "no set visible after the failed backup"
fi

section "2: radosgw down for good during an upload"
policy_with "$T/fast-fail.yaml" "retries: 2" "retry_delay: 100"
mutate_deployment "$ASTERDRIVE_ROOT" --percent 150 --seed 32
BEFORE=$(s3_count coffer-fault asterdrive/sets/)
: >"$RGWLOG"
cfs backup -p "$T/fast-fail.yaml" >"$T/b2.out" 2>"$T/b2.err" &
BPID=$!
bg_register "$BPID"
if wait_upload "$BPID"; then
    kill -9 "$(cat "$RGW_DIR/pids/radosgw")" 2>/dev/null # at once, as above
    bash "$TOOLS/ceph_rgw.sh" stop-rgw "$RGW_DIR"
    pass "radosgw stopped while the backup was uploading"
else
    fail "the backup finished before an upload could be interrupted"
fi
wait "$BPID"
RC2=$?
ERR=$(cat "$T/b2.err")
if [ "$RC2" -ne 0 ]; then pass "backup fails (exit $RC2)"; else fail "backup succeeded with radosgw down"; fi
assert_error_line
assert_match "$ERR" "cannot reach|attempts" "the error says the server could not be reached"
bash "$TOOLS/ceph_rgw.sh" start-rgw "$RGW_DIR" || die "radosgw did not come back"
# The one case where a set may show: the manifest's PUT was in flight
# when radosgw died, so the server may have stored it before its answer
# was lost. coffer must then say it cannot tell, and keep the data that
# set references (the verify of every set below proves it whole).
AFTER=$(s3_count coffer-fault asterdrive/sets/)
if grep -q "cannot tell whether sets/.* was stored" <<<"$ERR"; then
    note "the kill landed on the manifest's PUT: coffer reported it cannot tell ($AFTER sets)"
    if [ "$AFTER" -eq "$BEFORE" ] || [ "$AFTER" -eq $((BEFORE + 1)) ]; then
        pass "at most the set whose manifest was in flight is visible"
    else
        fail "sets: $BEFORE before, $AFTER after"
    fi
else
    assert_eq "$BEFORE" "$AFTER" "no new set visible"
fi

section "afterwards"
expect_ok "a plain backup works again" cfs backup -p "$POLICY"
snapshot "$ASTERDRIVE_ROOT" "$T/snap2.json"
expect_ok "verify --read-data of every set" cfs verify -p "$POLICY" --set all --read-data
expect_ok "restore the latest" cfs restore -p "$POLICY" --set latest --to "$T/restored2"
snapshot "$T/restored2" "$T/restored2.json"
compare "restore equals the source" "$T/snap2.json" "$T/restored2.json" "${RESTORE_EXCLUDES[@]}"
finish
