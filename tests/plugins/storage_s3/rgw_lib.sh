# Helpers for the S3 end-to-end tests (source after tests/e2e/lib.sh):
# start a private Ceph RGW for the test, stop it on exit, run the AWS CLI
# against it, run coffer with the built drivers.

RGW_DIR=$T/rgw

# rgw_start: start the cluster (skips the whole test when the Debian
# packages are missing) and export its endpoint and keys.
rgw_start() {
    local b
    for b in radosgw ceph-mon ceph-osd ceph-authtool aws; do
        if ! command -v "$b" >/dev/null; then
            skip "$b is not installed (apt-get install radosgw ceph-mon ceph-osd ceph-common awscli)"
            finish
        fi
    done
    trap 'rc=$?; bash "$TOOLS/ceph_rgw.sh" stop "$RGW_DIR" >/dev/null 2>&1; (exit $rc); _cleanup' EXIT
    local t0=$SECONDS out
    out=$(bash "$TOOLS/ceph_rgw.sh" start "$RGW_DIR" 2>&1) || {
        printf '%s\n' "$out" | show
        tail -n 20 "$RGW_DIR"/log/*.log 2>/dev/null | show 60
        die "cannot start Ceph RGW"
    }
    eval "$out"
    pass "Ceph RGW up at $AWS_ENDPOINT_URL in $((SECONDS - t0)) s"
}

# rgw_bucket NAME: create the bucket on the test's RGW, or stop the test.
rgw_bucket() {
    run awsx s3 mb "s3://$1"
    [ "$RC" = 0 ] || die "cannot create the bucket $1: $ERR"
}

# rgw_repo BUCKET: RGW started, the shipped policy's environment
# (setup_env) with COFFER_REPO=s3://BUCKET/repo in a new bucket, the
# drivers of this build; RGW_URL and BUCKET set.
rgw_repo() {
    rgw_start
    setup_env
    export COFFER_PLUGIN_PATH=$COFFER_PLUGIN_BUILD_DIR
    RGW_URL=$AWS_ENDPOINT_URL
    BUCKET=$1
    rgw_bucket "$BUCKET"
    export COFFER_REPO=s3://$BUCKET/repo
}

# rgw_fault_proxy: tests/tools/s3_fault_proxy.py in front of RGW (after
# rgw_repo), coffer pointed at it; RULES (empty: no fault) and PLOG (one
# line a request) set.
rgw_fault_proxy() {
    RULES=$T/rules
    PLOG=$T/proxy.log
    : >"$RULES"
    : >"$PLOG"
    "$PY" "$TOOLS/s3_fault_proxy.py" --upstream "${RGW_URL#http://}" --rules "$RULES" \
        --log "$PLOG" --port-file "$T/proxy.port" >"$T/proxy.out" 2>&1 &
    bg_register $!
    wait_for "the proxy's port" 10 test -s "$T/proxy.port" || die "proxy did not start"
    export AWS_ENDPOINT_URL=http://127.0.0.1:$(cat "$T/proxy.port")
}

# The AWS CLI (Debian's awscli 2.9 does not read AWS_ENDPOINT_URL).
awsx() { aws --endpoint-url "$AWS_ENDPOINT_URL" "$@"; }

# coffer with the drivers of this build.
cfs() { "$COFFER" --no-progress --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" "$@"; }

# s3_count BUCKET PREFIX: number of objects under s3://BUCKET/PREFIX
s3_count() {
    awsx s3api list-objects-v2 --bucket "$1" --prefix "$2" --query 'length(Contents || `[]`)' --output text 2>/dev/null
}

# policy_with OUT OPTION-LINES...: the shipped policy with driver options
# added to the target (each argument is "key: value").
policy_with() {
    local out=$1; shift
    local add="" o
    for o in "$@"; do add="$add\\n    $o"; done
    sed "s|^\(    location: .*\)$|\1$add|" "$POLICY" >"$out" || die "policy_with $out"
}
