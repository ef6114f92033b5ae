#!/usr/bin/env bash
# coffer with an S3 repository on a real Ceph RGW, through the shipped
# AsterDrive policy (COFFER_REPO=s3://BUCKET/asterdrive): init, backup,
# verify, restore equal to the source; the AWS CLI as an independent
# client (it lists what coffer wrote, copies the repository out, and
# coffer's local driver restores from that copy); versioning switched by
# the CLI seen by require_versioning; and the bad cases: wrong keys (no
# secret echoed), missing bucket, server down, an object deleted behind
# coffer's back (verify names it).
. "$COFFER_SRC/tests/e2e/lib.sh"
. "$(dirname "$0")/rgw_lib.sh"
require_coffer
rgw_start
setup_env
export COFFER_REPO=s3://coffer-e2e/asterdrive
ALL_OUT=$T/all-output.txt
# every command's output is kept to look for the secret at the end
keep() { printf '%s\n%s\n' "$OUT" "$ERR" >>"$ALL_OUT"; }

section "generate"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 30 --seed 21

section "init, backup"
expect_ok "init creates the bucket and the repository" cfs init -p "$POLICY" || die "init failed"
keep
assert_eq 1 "$(s3_count coffer-e2e asterdrive/config)" "CLI sees asterdrive/config"
expect_ok "backup #1" cfs backup -p "$POLICY" --json || die "backup failed"
keep
SET1=$(json_get "$OUT" 'j["set"]')
assert_match "$SET1" "$SETID_RE" "backup #1 set id ($SET1)"
snapshot "$ASTERDRIVE_ROOT" "$T/snap1.json"
assert_eq 1 "$(s3_count coffer-e2e asterdrive/sets/)" "CLI sees one set manifest"
NPACKS=$(s3_count coffer-e2e asterdrive/data/)
assert_gt "$NPACKS" 0 "CLI sees pack objects"
run awsx s3api list-multipart-uploads --bucket coffer-e2e
assert_not_contains "$OUT" "UploadId" "no multipart upload left open"

section "verify, restore"
expect_ok "verify --read-data" cfs verify -p "$POLICY" --read-data
keep
expect_ok "restore --to" cfs restore -p "$POLICY" --set latest --to "$T/restored" || die "restore failed"
keep
snapshot "$T/restored" "$T/restored.json"
compare "restore equals the source" "$T/snap1.json" "$T/restored.json" "${RESTORE_EXCLUDES[@]}"
doctor "restored deployment is doctor-clean" "$T/restored"

section "the AWS CLI copies the repository; coffer's local driver reads the copy"
expect_ok "aws s3 sync s3://coffer-e2e/asterdrive" awsx s3 sync --only-show-errors s3://coffer-e2e/asterdrive "$T/copy"
expect_ok "verify --read-data of the copy" env COFFER_REPO="$T/copy" "$COFFER" --no-progress --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" verify -p "$POLICY" --read-data
expect_ok "restore from the copy" env COFFER_REPO="$T/copy" "$COFFER" --no-progress --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" restore -p "$POLICY" --set "$SET1" --to "$T/restored-copy"
snapshot "$T/restored-copy" "$T/restored-copy.json"
compare "restore from the CLI's copy equals the source" "$T/snap1.json" "$T/restored-copy.json" "${RESTORE_EXCLUDES[@]}"

section "second backup"
mutate_deployment "$ASTERDRIVE_ROOT" --percent 1 --seed 22
expect_ok "backup #2" cfs backup -p "$POLICY" --json
keep
expect_ok "sets" cfs sets -p "$POLICY" --json
assert_eq 2 "$(json_get "$OUT" 'len(j)')" "two sets listed"

section "require_versioning, versioning switched by the CLI"
policy_with "$T/versioned.yaml" "require_versioning: true"
expect_fail_desc "backup refused: bucket without versioning" cfs backup -p "$T/versioned.yaml"
keep
assert_contains "$ERR" "lost for good" "the error says why versioning matters"
assert_contains "$ERR" "coffer-e2e" "the error names the bucket"
policy_with "$T/versioned-warn.yaml" "require_versioning: warn"
expect_ok "require_versioning: warn passes with a warning" cfs backup -p "$T/versioned-warn.yaml"
keep
assert_contains "$ERR" "lost for good" "the warning says why"
expect_ok "CLI enables versioning" awsx s3api put-bucket-versioning --bucket coffer-e2e --versioning-configuration Status=Enabled
expect_ok "backup passes once the CLI enabled versioning" cfs backup -p "$T/versioned.yaml"
keep

section "wrong keys"
WRONG='Wr0ng+Secret/Key=DoNotEcho'
run env AWS_SECRET_ACCESS_KEY="$WRONG" "$COFFER" --no-progress --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" backup -p "$POLICY"
keep
if [ "$RC" -ne 0 ]; then pass "backup with a wrong secret fails (exit $RC)"; else fail "backup with a wrong secret succeeded"; fi
assert_error_line
assert_contains "$ERR" "SignatureDoesNotMatch" "the error names the S3 error code"
assert_contains "$ERR" "coffer-e2e" "the error names the bucket"
assert_not_contains "$OUT$ERR" "$WRONG" "the wrong secret is not echoed"
run env AWS_ACCESS_KEY_ID=NOSUCHKEY "$COFFER" --no-progress --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" sets -p "$POLICY"
keep
if [ "$RC" -ne 0 ]; then pass "an unknown access key fails (exit $RC)"; else fail "an unknown access key worked"; fi
assert_contains "$ERR" "InvalidAccessKeyId" "the error names InvalidAccessKeyId"
run env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY "$COFFER" --no-progress --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" sets -p "$POLICY"
if [ "$RC" -ne 0 ]; then pass "no credentials at all fails (exit $RC)"; else fail "no credentials worked"; fi
assert_contains "$ERR" "AWS_ACCESS_KEY_ID" "the error says where credentials come from"

section "bucket missing"
run env COFFER_REPO=s3://no-such-bucket/asterdrive "$COFFER" --no-progress --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" backup -p "$POLICY"
keep
if [ "$RC" -ne 0 ]; then pass "backup into a missing bucket fails (exit $RC)"; else fail "backup into a missing bucket succeeded"; fi
assert_contains "$ERR" "no-such-bucket" "the error names the bucket"
assert_contains "$ERR" "does not exist" "the error says it does not exist"

section "server down"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
policy_with "$T/fast-fail.yaml" "retries: 2" "retry_delay: 50"
t0=$SECONDS
run env AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" "$COFFER" --no-progress --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" backup -p "$T/fast-fail.yaml"
keep
if [ "$RC" -ne 0 ]; then pass "backup with the server down fails (exit $RC, $((SECONDS - t0)) s)"; else fail "backup with the server down succeeded"; fi
assert_error_line
assert_contains "$ERR" "127.0.0.1:$PORT" "the error names the endpoint"
assert_contains "$ERR" "attempts" "the error says it was retried"

section "an object deleted behind coffer's back"
PACK=$(awsx s3 ls --recursive s3://coffer-e2e/asterdrive/data/ | awk '{print $4}' | head -1)
PACKKEY=${PACK#asterdrive/}
expect_ok "CLI deletes $PACKKEY" awsx s3 rm "s3://coffer-e2e/$PACK"
run cfs verify -p "$POLICY" --set all
keep
if [ "$RC" -ne 0 ]; then pass "verify fails (exit $RC)"; else fail "verify passed with a pack missing"; fi
assert_contains "$OUT$ERR" "$PACKKEY" "verify names the missing pack"

section "secrets"
assert_not_contains "$(cat "$ALL_OUT")" "$AWS_SECRET_ACCESS_KEY" "the real secret key appears in no output"
finish
