# shellcheck shell=bash
# Shared steps of the rehearse_*.sh tests (source after lib.sh): a shipped
# AsterDrive policy, a generated deployment with tens of thousands of rows,
# `coffer rehearse --json` watched while it runs, and a set whose files
# component lacks a blob the database names.
#
# A test sets POLICY, defines rh_db_state (prints one line per production
# table: name, row count, hash of the rows) and rh_scratch_dbs (the scratch
# databases on the server, space separated; empty for SQLite), then calls
# rh_env, rh_backup, rh_rehearse_pass, rh_missing_blob.
#
# Environment: RH_FILES (rows of `files`, default 20000).

RH_FILES=${RH_FILES:-20000}
RH_CHECKS_LOCAL="row-counts storage-usage blob-ref-counts file-blobs folder-tree storage-objects avatars untracked-objects orphan-thumbnails"

rcf() { "$COFFER" --no-progress --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" "$@"; }

# rh_generate: the deployment in $T/live (SQLite), summary in $T/live.gen.json
rh_generate() {
    gen_deployment "$T/live" --files "${1:-$RH_FILES}" --small-kb 1:2 --size-mb 2 --users 6 --seed 7
    pass "deployment: $(json_get "$(cat "$T/live.gen.json")" 'j["rows"]["files"]') files rows, $(json_get "$(cat "$T/live.gen.json")" 'j["rows"]["file_blobs"]') file_blobs rows"
}

# rh_env: the policy's variables; scratch directories under $T/scratch
# ($TMPDIR is rehearse.dir's default); the doctor stand-in as validate
# command, recording the database it checked in $T/doctor.jsonl and, while
# $T/gate exists, waiting (so that the test can look at production while
# the rehearsal runs).
rh_env() {
    export ASTERDRIVE_ROOT=$T/live COFFER_REPO=$T/repo ASTERDRIVE_STOP=true ASTERDRIVE_START=true
    export TMPDIR=$T/scratch
    mkdir -p "$TMPDIR"
    export RH_DOCTOR_LOG=$T/doctor.jsonl RH_GATE=$T/gate PY TOOLS
    cat >"$T/doctor.sh" <<'EOF'
#!/bin/sh
"$PY" "$TOOLS/asterdoctor.py" --deep --record "$RH_DOCTOR_LOG" "$@"
rc=$?
if [ -e "$RH_GATE" ]; then
    : >"$RH_GATE.reached"
    i=0
    while [ -e "$RH_GATE" ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i + 1)); done
fi
exit $rc
EOF
    export ASTERDRIVE_DOCTOR="sh $T/doctor.sh"
}

# rh_tree_state: hash of the production tree (paths, types, sizes, modes,
# mtimes, link targets, contents)
rh_tree_state() {
    {
        (cd "$ASTERDRIVE_ROOT" && find . -printf '%p %y %s %m %T@ %l\n' | LC_ALL=C sort)
        (cd "$ASTERDRIVE_ROOT" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    } >"$T/tree.list.new"
    # keep the listing of the first state, to show what changed
    [ -e "$T/tree.list" ] || cp "$T/tree.list.new" "$T/tree.list"
    sha256sum <"$T/tree.list.new" | cut -c1-16
}

rh_prod_state() {
    echo "tree $(rh_tree_state)"
    rh_db_state
}

rh_backup() { # rh_backup DESCRIPTION: a backup; the set id in $SET
    expect_ok "${1:-backup}" rcf backup -p "$POLICY" || { printf '%s\n' "$ERR" | show; die "backup failed"; }
    SET=$(last_line "$OUT")
    [[ "$SET" =~ $SETID_RE ]] || die "backup printed no set id: $OUT"
}

# rh_rehearse_pass EXPECTED_CHECKS SCRATCH_URL_REGEX: rehearse the latest set,
# look at production and the scratch environment while the validate command
# waits, then assert everything passed and nothing is left.
rh_rehearse_pass() {
    local expected=$1 url_re=$2 pid i
    rm -f "$T/tree.list"
    rh_prod_state >"$T/prod.before"
    : >"$RH_DOCTOR_LOG"
    : >"$RH_GATE"
    rm -f "$RH_GATE.reached"
    echo "+ coffer rehearse -p $POLICY --json"
    rcf rehearse -p "$POLICY" --json >"$T/rh.json" 2>"$T/rh.err" &
    pid=$!
    for i in $(seq 1 3000); do
        [ -e "$RH_GATE.reached" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    local during_dirs during_dbs
    during_dirs=$(find "$TMPDIR" -mindepth 1 -maxdepth 1 -name 'coffer-rehearse-*' | wc -l)
    during_dbs=$(rh_scratch_dbs)
    rh_prod_state >"$T/prod.during"
    rm -f "$RH_GATE"
    wait "$pid"
    RC=$?
    REP=$(cat "$T/rh.json")
    assert_eq 0 "$RC" "rehearse exits 0"
    if [ "$RC" != 0 ]; then
        show <"$T/rh.err"
        printf '%s\n' "$REP" | show 80
    fi
    [ -n "$REP" ] || die "rehearse printed no JSON report"
    assert_eq True "$(json_get "$REP" 'j["ok"]')" "report: ok"
    assert_eq "$SET" "$(json_get "$REP" 'j["sets"][0]["set"]')" "the latest set was rehearsed"
    assert_eq "$expected" "$(json_get "$REP" '" ".join(c["name"] for c in j["sets"][0]["policy_checks"])')" \
        "every shipped check ran"
    assert_eq "pass" "$(json_get "$REP" '" ".join(sorted(set(c["status"] for c in j["sets"][0]["policy_checks"])))')" \
        "every check passed"
    local bad
    bad=$(json_get "$REP" '"; ".join("%s: %s %s" % (c["name"], c["status"], c.get("detail", "")) for c in j["sets"][0]["policy_checks"] if c["status"] != "pass")')
    [ -z "$bad" ] || note "not passed: $bad"
    assert_eq "$RH_STORED_BLOBS" "$(json_get "$REP" '[c["rows"] for c in j["sets"][0]["policy_checks"] if c["name"] == "storage-objects"][0]')" \
        "storage-objects checked every stored blob"
    assert_eq "doctor True" "$(json_get "$REP" '" ".join("%s %s" % (v["name"], v["ok"]) for v in j["sets"][0]["validate"])')" \
        "the doctor ran and passed"
    # what the doctor checked
    assert_eq 1 "$(wc -l <"$RH_DOCTOR_LOG")" "the doctor ran once"
    local durl
    durl=$(json_get "$(head -1 "$RH_DOCTOR_LOG")" 'j["database_url"]')
    assert_match "$durl" "$url_re" "the doctor checked the scratch database ($durl)"
    assert_eq 0 "$(json_get "$(head -1 "$RH_DOCTOR_LOG")" 'j["failed"]')" "the doctor found no problem"
    assert_match "$(json_get "$(head -1 "$RH_DOCTOR_LOG")" 'j["root"]')" "^$TMPDIR/coffer-rehearse-" \
        "the doctor ran in the scratch root"
    # while it ran, and afterwards
    assert_eq 1 "$during_dirs" "one scratch directory under rehearse.dir while it ran"
    RH_DURING_DBS=$during_dbs
    assert_eq "" "$(rh_scratch_dbs)" "no scratch database left"
    assert_eq 0 "$(find "$TMPDIR" -mindepth 1 -maxdepth 1 | wc -l)" "scratch directory removed"
    assert_eq True "$(json_get "$REP" 'j["sets"][0]["removed"]')" "report: removed"
    compare_state "while the rehearsal ran" "$T/prod.during"
    rh_prod_state >"$T/prod.after"
    compare_state "after the rehearsal" "$T/prod.after"
}

compare_state() {
    if cmp -s "$T/prod.before" "$2"; then
        pass "production unchanged $1 (tree and $(($(wc -l <"$2") - 1)) tables)"
    else
        fail "production changed $1:"
        diff "$T/prod.before" "$2" | show
        diff "$T/tree.list" "$T/tree.list.new" | show
    fi
}

# rh_hide_blob / rh_unhide_blob NAME: take a blob away from production and
# put it back (default: a file under the root; a test may redefine them)
rh_hide_blob() { mv "$ASTERDRIVE_ROOT/$1" "$T/blob.aside" || die "cannot move $1 aside"; }
rh_unhide_blob() { mv "$T/blob.aside" "$ASTERDRIVE_ROOT/$1" || die "cannot put $1 back"; }

# rh_missing_blob NAME: a set whose files component (or object store) lacks
# a blob the database names: rehearse exits 3, storage-objects fails and
# names it, with the count; nothing is left behind.
rh_missing_blob() {
    local rel=$1
    section "a set without one blob"
    rh_hide_blob "$rel"
    rh_backup "backup while $rel is missing"
    rh_unhide_blob "$rel"
    rm -f "$T/tree.list"
    rh_prod_state >"$T/prod.before"
    : >"$RH_DOCTOR_LOG"
    expect_rc 3 "rehearse exits 3 (problems)" rcf rehearse -p "$POLICY" --set "$SET" --json
    REP=$OUT
    assert_eq False "$(json_get "$REP" 'j["ok"]')" "report: not ok"
    assert_eq fail "$(json_get "$REP" '[c["status"] for c in j["sets"][0]["policy_checks"] if c["name"] == "storage-objects"][0]')" \
        "storage-objects fails"
    assert_eq 1 "$(json_get "$REP" '[c["problems"] for c in j["sets"][0]["policy_checks"] if c["name"] == "storage-objects"][0]')" \
        "storage-objects counts one problem"
    assert_contains "$(json_get "$REP" '[c["first"] for c in j["sets"][0]["policy_checks"] if c["name"] == "storage-objects"][0]')" \
        "$rel" "storage-objects names the missing path"
    assert_imatch "$(json_get "$REP" '[c["first"] for c in j["sets"][0]["policy_checks"] if c["name"] == "storage-objects"][0]')" \
        "missing" "and says it is missing"
    assert_match "$(json_get "$REP" '[c["detail"] for c in j["sets"][0]["policy_checks"] if c["name"] == "storage-objects"][0]')" \
        "^1 of $RH_STORED_BLOBS paths missing: .*$rel" "the summary gives the count and the path"
    assert_eq "pass" "$(json_get "$REP" '" ".join(sorted(set(c["status"] for c in j["sets"][0]["policy_checks"] if c["name"] not in ("storage-objects", "untracked-objects", "orphan-thumbnails"))))')" \
        "the database checks still pass"
    assert_eq "" "$(rh_scratch_dbs)" "no scratch database left after a failed rehearsal"
    assert_eq 0 "$(find "$TMPDIR" -mindepth 1 -maxdepth 1 | wc -l)" "scratch directory removed after a failed rehearsal"
    rh_prod_state >"$T/prod.after"
    compare_state "after the failed rehearsal" "$T/prod.after"
    expect_ok "sets" rcf sets -p "$POLICY"
    assert_imatch "$(grep "^$SET" <<<"$OUT")" "fail" "the set is recorded as failing its rehearsal"
}
