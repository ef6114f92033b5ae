#!/usr/bin/env bash
# S3 faults injected between coffer and a real Ceph RGW by
# tests/tools/s3_fault_proxy.py: 500 and 503 SlowDown answers, slow and
# stalled answers, connection resets (before and after the server acted),
# truncated bodies, radosgw stopped in the middle of a multipart upload,
# and a SIGTERM while an upload's answer is held. A request that is safe
# to repeat is retried with backoff (each retry is logged with -v and
# counted here) and the command succeeds with
# the same bytes; when the retries are spent the command fails cleanly:
# one error line naming the object, no new set, check clean, no
# multipart upload left open, and the next backup works.
HERE=$(cd "$(dirname "$0")" && pwd)
. "${COFFER_SRC:-$HERE/../..}/tests/e2e/lib.sh"
. "$COFFER_SRC/tests/core/lifecycle/lifecycle.sh"
. "$COFFER_SRC/tests/plugins/storage_s3/rgw_lib.sh"
require_coffer
rgw_start
setup_env
export COFFER_PLUGIN_PATH=$COFFER_PLUGIN_BUILD_DIR
RGW_URL=$AWS_ENDPOINT_URL
BUCKET=coffer-faults
export COFFER_REPO=s3://$BUCKET/repo

section "proxy"
RULES=$T/rules
PLOG=$T/proxy.log
: >"$RULES"
: >"$PLOG"
"$PY" "$TOOLS/s3_fault_proxy.py" --upstream "${RGW_URL#http://}" --rules "$RULES" --log "$PLOG" \
    --port-file "$T/proxy.port" \
    --stop-cmd "bash '$TOOLS/ceph_rgw.sh' stop-rgw '$RGW_DIR'" \
    --start-cmd "bash '$TOOLS/ceph_rgw.sh' start-rgw '$RGW_DIR' >/dev/null 2>&1" \
    >"$T/proxy.out" 2>&1 &
bg_register $!
wait_for "the proxy's port" 10 test -s "$T/proxy.port" || die "proxy did not start"
export AWS_ENDPOINT_URL=http://127.0.0.1:$(cat "$T/proxy.port")
# the AWS CLI talks to RGW directly
awsx() { aws --endpoint-url "$RGW_URL" "$@"; }
pass "fault proxy at $AWS_ENDPOINT_URL in front of $RGW_URL"

# small parts (packs go up as multipart uploads), quick retries, and
# incomplete uploads a failed run could not abort are aborted by the next
# run after 1 s (nothing else writes at the same time in this test)
make_target_policy() {
    local out=$1; shift
    local lines="" kv
    for kv in "part_size: 5M" "retry_delay: 50" "abort_uploads_after: 1" "$@"; do lines="$lines\\n    $kv"; done
    sed "s|^    location: \${COFFER_REPO:-/srv/backups/asterdrive}\$|&$lines|" "$POLICY" >"$out" ||
        die "policy $out"
}
make_target_policy "$T/p.yaml"
make_target_policy "$T/p-fail.yaml" "retries: 2"
make_target_policy "$T/p-stall.yaml" "timeout: 2"
P=$T/p.yaml
cfv() { "$COFFER" --no-progress -v "$@"; }

# ---- helpers ------------------------------------------------------------------
# rule LINE...: the proxy's rules from now on
rule() { printf '%s\n' "$@" >"$RULES"; : >"$PLOG"; }
faults() { grep -c "^FAULT $1 " "$PLOG"; }
# retry lines of -v: the driver's own retries, and libcurl's resend of a
# request whose kept-alive connection broke under it
retries_logged() { grep -cE "retry [0-9]+ of|sent on a new one" <<<"$ERR"; }
nsets() { s3_count "$BUCKET" repo/sets/; }
nuploads() {
    awsx s3api list-multipart-uploads --bucket "$BUCKET" --prefix repo/ \
        --query 'length(Uploads || `[]`)' --output text 2>/dev/null
}
# new data for a backup: the deployment changed, plus 8 MiB that do not
# compress, so the backup's pack goes up as a multipart upload of two parts
new_data() {
    mutate_deployment "$ASTERDRIVE_ROOT" --percent 10 --seed $((RANDOM % 1000)) >/dev/null
    head -c 8M /dev/urandom >"$ASTERDRIVE_ROOT/data/incoming.bin"
}
declare -A STAT
stat_line() { STAT[$1]="$2"; }

# ok_through FAULT DESC CMD...: the command succeeds through the fault,
# which was injected at least once; what was retried is logged (-v),
# except after a fault that needs no retry (RETRIES=none)
ok_through() {
    local f=$1 desc=$2; shift 2
    expect_ok "$desc" "$@"
    local n r
    n=$(faults "$f")
    r=$(retries_logged)
    assert_gt "$n" 0 "$desc: the proxy injected '$f' ($n time(s))"
    if [ "${RETRIES:-yes}" = none ]; then
        assert_eq 0 "$r" "$desc: nothing was retried"
    else
        assert_gt "$r" 0 "$desc: retries were logged"
    fi
    stat_line "$desc" "$f injected $n, retries logged $r, exit $RC"
}

# backup_ok DESC FAULT [RETRIES]: a backup through the fault (see
# ok_through); its set restores equal to the source; the set id in SET
backup_ok() {
    local desc=$1 f=$2
    new_data
    RETRIES=${3:-yes} ok_through "$f" "$desc" cfv backup -p "$P"
    [ "$RC" -eq 0 ] || return 1
    SET=$(last_line "$OUT")
    snapshot "$ASTERDRIVE_ROOT" "$T/snap.json"
    : >"$RULES"
    restore_compare "$desc" "$SET" "$T/snap.json" -p "$P"
    assert_eq 0 "$(nuploads)" "$desc: no multipart upload left open"
}

# backup_fails DESC FAULT OBJECT-RE [policy]: the backup fails cleanly
backup_fails() {
    local desc=$1 f=$2 re=$3 pol=${4:-$T/p-fail.yaml} before
    before=$(nsets)
    new_data
    run cfv backup -p "$pol"
    local n; n=$(faults "$f")
    if [ "$RC" -ne 0 ]; then pass "$desc: backup fails (exit $RC)"; else fail "$desc: backup succeeded"; fi
    assert_gt "$n" 0 "$desc: the proxy injected '$f' ($n time(s))"
    assert_match "$ERR" "^coffer: error: .*$re" "$desc: the error line names the object"
    printf '%s\n' "$ERR" | grep '^coffer: error' | head -1 | show
    stat_line "$desc" "$f injected $n, exit $RC, $(grep '^coffer: error' <<<"$ERR" | head -1 | cut -c1-160)"
    : >"$RULES"
    assert_eq "$before" "$(nsets)" "$desc: no new set"
    assert_eq 0 "$(nuploads)" "$desc: no multipart upload left open"
    expect_ok "$desc: check is clean" cf check -p "$P"
    expect_ok "$desc: the next backup works" cf backup -p "$P"
    SET=$(last_line "$OUT")
    snapshot "$ASTERDRIVE_ROOT" "$T/snap.json"
    restore_compare "$desc: next backup" "$SET" "$T/snap.json" -p "$P"
}

section "init through the proxy"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 10 --seed 71
expect_ok "init" cf init -p "$P" || die "init failed"
expect_ok "first backup" cf backup -p "$P" || die "backup failed"
RANDOM=71

section "500 and 503 SlowDown: retried"
rule "PUT partNumber= 500 2"
backup_ok "500 on two part uploads" 500
rule "PUT /repo/data/ 503 3"
backup_ok "503 SlowDown on pack uploads" 503
rule "POST uploadId= 503 1"
backup_ok "503 on CompleteMultipartUpload" 503
rule "PUT /repo/sets/ 500 1"
backup_ok "500 on the manifest PUT" 500
rule "GET /repo/data/ 503 3"
ok_through 503 "503 on pack reads: verify --read-data" cfv verify -p "$P" --read-data

section "connection resets"
rule "PUT partNumber= reset 2"
backup_ok "reset before part uploads reach the server" reset
rule "PUT partNumber= reset-after 2"
backup_ok "reset after part uploads reached the server" reset-after
rule "PUT /repo/sets/ reset-after 1"
backup_ok "reset after the manifest PUT reached the server" reset-after
rule "PUT /repo/locks/ reset-after 1"
backup_ok "reset after the lock PUT (conditional) reached the server" reset-after
rule "POST \\?uploads\$ reset-after 1"
backup_ok "reset after CreateMultipartUpload reached the server" reset-after
rule "GET /repo/data/ reset 2"
ok_through reset "reset on pack reads: verify --read-data" cfv verify -p "$P" --read-data

section "slow and stalled answers, truncated bodies"
rule "PUT partNumber= slow 2 1500"
backup_ok "slow answers to part uploads" slow none
rule "GET /repo/data/ stall 1 6000"
ok_through stall "an answer stalled past the timeout (2 s): verify --read-data" \
    cfv verify -p "$T/p-stall.yaml" --read-data
rule "GET /repo/data/ truncate 2"
ok_through truncate "pack bodies cut short: verify --read-data" cfv verify -p "$P" --read-data
rule "GET /repo/index/ truncate 1"
# (an empty local cache, so the index objects are fetched: a body cut
# short must not leave a cached copy behind)
COFFER_CACHE_DIR=$T/cache-trunc ok_through truncate "an index body cut short: sets" cfv sets -p "$P"
for c in "$T"/cache-trunc/*/index/*; do
    k=${c##*/}
    assert_eq "$(awsx s3 cp "s3://$BUCKET/repo/index/$k" - 2>/dev/null | sha256sum)" "$(sha256sum <"$c")" \
        "cached index/$k holds the stored bytes"
done
rule "GET /repo/data/ truncate 2"
expect_ok "restore through truncated bodies" cfv restore -p "$P" --set latest --to "$T/restored-trunc" --no-validate
snapshot "$T/restored-trunc" "$T/restored-trunc.json"
compare "restore through truncated bodies equals the source" "$T/snap.json" "$T/restored-trunc.json" "${RESTORE_EXCLUDES[@]}"
assert_gt "$(faults truncate)" 0 "truncated bodies were injected during the restore"

section "SIGTERM while an upload's answer is held"
# The answer to a pack upload is held 60 s, under the 120 s timeout: a
# SIGTERM must end the transfer at once, not when the answer comes, and
# the cancelled backup must clean up behind it (its lock, its upload).
rule "PUT /repo/data/ slow 1 60000"
before=$(nsets)
new_data
"$COFFER" --no-progress backup -p "$P" >"$T/term.out" 2>"$T/term.err" &
CPID=$!
bg_register "$CPID"
wait_for "a held pack upload" 60 grep -q "^FAULT slow PUT" "$PLOG" || die "no pack upload was held"
sleep 1
kill -TERM "$CPID"
t_term=$(date +%s.%N)
wait "$CPID"
rc=$?
took=$(awk "BEGIN{printf \"%.2f\", $(date +%s.%N) - $t_term}")
: >"$RULES"
note "coffer exited $rc $took s after SIGTERM: $(grep '^coffer: error' "$T/term.err" | head -1)"
if [ "$rc" -ne 0 ]; then pass "the backup exits non-zero after SIGTERM ($rc)"; else fail "the backup exited 0"; fi
assert_eq 1 "$(awk "BEGIN{print ($took < 10)}")" "it exits within 10 s of SIGTERM, not when the held answer comes ($took s)"
assert_match "$(cat "$T/term.err")" "^coffer: error: .*cancelled" "the error line says the backup was cancelled"
assert_eq "$before" "$(nsets)" "no new set after SIGTERM"
assert_eq 0 "$(s3_count "$BUCKET" repo/locks/)" "the cancelled backup removed its lock"
assert_eq 0 "$(nuploads)" "no multipart upload left open"
expect_ok "check is clean after SIGTERM" cf check -p "$P"
stat_line "SIGTERM while an answer is held" "exit $rc after $took s"

section "retries spent: clean failures"
rule "PUT partNumber= 500 100"
backup_fails "500 on every part upload" 500 "(write|commit) failed: S3 PUT .*repo/data/"
rule "PUT /repo/sets/ 503 100"
backup_fails "503 on every manifest PUT" 503 "writing manifest .*S3 PUT .*repo/sets/"
rule "PUT partNumber= reset 100"
backup_fails "reset on every part upload" reset "(write|commit) failed: S3 PUT .*repo/data/"

section "radosgw stopped in the middle of a multipart upload"
rule "PUT partNumber=2 stop 1 3000"
backup_ok "radosgw stopped at a part upload, back 3 s later" stop
rule "PUT partNumber=2 stop 1"
before=$(nsets)
new_data
run cfv backup -p "$T/p-fail.yaml"
if [ "$RC" -ne 0 ]; then pass "radosgw down for good: backup fails (exit $RC)"; else fail "backup succeeded with radosgw down"; fi
assert_match "$ERR" "^coffer: error: .*(write|commit) failed: S3 PUT .*repo/data/.*cannot reach" \
    "the error line names the object whose upload failed"
stat_line "radosgw down for good" "stop injected $(faults stop), exit $RC, $(grep '^coffer: error' <<<"$ERR" | head -1 | cut -c1-160)"
: >"$RULES"
bash "$TOOLS/ceph_rgw.sh" start-rgw "$RGW_DIR" || die "radosgw did not come back"
assert_eq "$before" "$(nsets)" "no new set"
LEFT=$(nuploads)
note "multipart uploads the failed backup could not abort (server down): $LEFT"
expect_ok "check is clean" cf check -p "$P"
expect_ok "the next backup works" cf backup -p "$P"
assert_eq 0 "$(nuploads)" "the uploads the failed backup left were aborted by a later run"
SET=$(last_line "$OUT")
snapshot "$ASTERDRIVE_ROOT" "$T/snap.json"
restore_compare "next backup" "$SET" "$T/snap.json" -p "$P"

section "summary"
for k in "${!STAT[@]}"; do printf '%-60s %s\n' "$k" "${STAT[$k]}"; done | sort
expect_ok "check --read-data" cf check -p "$P" --read-data
finish
