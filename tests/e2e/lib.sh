# shellcheck shell=bash
# Shared helpers for coffer end-to-end tests (bash; source it first).
#
# Environment (set by ctest through coffer_e2e_test; defaults for manual runs):
#   COFFER                   the coffer binary   (default $COFFER_BUILD/coffer)
#   COFFER_SRC               source root         (default: two levels above this file)
#   COFFER_BUILD             build directory     (default $COFFER_SRC/build)
#   COFFER_PLUGIN_BUILD_DIR  built driver .so files (default $COFFER_BUILD/plugins)
#   KEEP_TMP=1               keep the test's temporary directory
#
# Every test runs in a fresh directory $T under ${TMPDIR:-/tmp}, removed on
# exit (processes registered with bg_register are killed, mounts registered
# with mount_register are unmounted first). Assertions print "PASS: ..." or
# "FAIL: ..." and go on; `finish` exits 1 when any failed. `die` stops the
# test at once (a step later steps depend on failed).

set -u
set -o pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${COFFER_SRC:=$(cd "$E2E_DIR/../.." && pwd)}"
: "${COFFER_BUILD:=$COFFER_SRC/build}"
: "${COFFER:=$COFFER_BUILD/coffer}"
: "${COFFER_PLUGIN_BUILD_DIR:=$COFFER_BUILD/plugins}"
export COFFER COFFER_SRC COFFER_BUILD COFFER_PLUGIN_BUILD_DIR
# Repositories are encrypted unless created with --encryption none; the
# tests use a fixed passphrase (never a real secret).
: "${COFFER_PASSPHRASE:=e2e-test-passphrase}"
export COFFER_PASSPHRASE
TOOLS=$COFFER_SRC/tests/tools
if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=python3; fi
POLICY=$COFFER_SRC/policies/asterdrive-sqlite-local.yaml
SETID_RE='^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$'
TEST_NAME=$(basename "$0" .sh)

T=$(mktemp -d "${TMPDIR:-/tmp}/coffer-e2e-$TEST_NAME.XXXXXX") || { echo "FAIL: mktemp"; exit 1; }
chmod 755 "$T"
# remote repositories' local cache (index objects, manifests): per test
export COFFER_CACHE_DIR=$T/cache
FAILS=0
PASSES=0
SKIPS=0
_BG_PIDS=()
_MOUNTS=()

_cleanup() {
    local rc=$?
    local p m
    for p in "${_BG_PIDS[@]}"; do
        kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    for m in "${_MOUNTS[@]}"; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done
    if [ "${KEEP_TMP:-0}" = 1 ]; then
        echo "note: kept $T"
    else
        chmod -R u+rwX "$T" 2>/dev/null
        rm -rf "$T"
    fi
    exit "$rc"
}
trap _cleanup EXIT
trap 'echo "FAIL: $TEST_NAME: interrupted"; exit 130' INT TERM

bg_register() { _BG_PIDS+=("$1"); }
mount_register() { _MOUNTS+=("$1"); }

# ---- reporting ---------------------------------------------------------

pass() { PASSES=$((PASSES + 1)); echo "PASS: $*"; }
fail() { FAILS=$((FAILS + 1)); echo "FAIL: $*"; }
skip() { SKIPS=$((SKIPS + 1)); echo "SKIP: $*"; }
note() { echo "note: $*"; }
section() { echo; echo "=== $TEST_NAME: $*"; }
die() {
    echo "FAIL: $TEST_NAME: $*"
    echo "RESULT: $TEST_NAME FAILED (stopped early; $PASSES passed, $((FAILS + 1)) failed)"
    exit 1
}
finish() {
    echo
    if [ "$FAILS" -gt 0 ]; then
        echo "RESULT: $TEST_NAME FAILED ($PASSES passed, $FAILS failed, $SKIPS skipped)"
        exit 1
    fi
    echo "RESULT: $TEST_NAME PASSED ($PASSES passed, $SKIPS skipped)"
    exit 0
}

# Indent a block of text (command output shown with a failure).
show() { sed -e 's/^/    | /' | head -n "${2:-40}"; }

# ---- assertions ----------------------------------------------------------

# assert_eq EXPECTED ACTUAL DESCRIPTION
assert_eq() {
    if [ "$1" = "$2" ]; then pass "$3"; else fail "$3: expected '$1', got '$2'"; fi
}
assert_ne() {
    if [ "$1" != "$2" ]; then pass "$3"; else fail "$3: both are '$1'"; fi
}
# assert_contains "$output" "substring" [DESCRIPTION]
assert_contains() {
    local desc=${3:-"output contains '$2'"}
    if [[ "$1" == *"$2"* ]]; then pass "$desc"; else
        fail "$desc: '$2' not found in:"; printf '%s\n' "$1" | show
    fi
}
assert_not_contains() {
    local desc=${3:-"output does not contain '$2'"}
    if [[ "$1" != *"$2"* ]]; then pass "$desc"; else
        fail "$desc: '$2' found in:"; printf '%s\n' "$1" | show
    fi
}
# assert_match "$output" EXTENDED_REGEX [DESCRIPTION]  (grep -E, per line)
assert_match() {
    local desc=${3:-"output matches /$2/"}
    if grep -Eq -- "$2" <<<"$1"; then pass "$desc"; else
        fail "$desc: no line matches /$2/ in:"; printf '%s\n' "$1" | show
    fi
}
assert_imatch() {
    local desc=${3:-"output matches /$2/i"}
    if grep -Eiq -- "$2" <<<"$1"; then pass "$desc"; else
        fail "$desc: no line matches /$2/i in:"; printf '%s\n' "$1" | show
    fi
}
# assert_lt A B DESCRIPTION (integers)
assert_lt() {
    if [ "$1" -lt "$2" ]; then pass "$3 ($1 < $2)"; else fail "$3: $1 is not < $2"; fi
}
assert_gt() {
    if [ "$1" -gt "$2" ]; then pass "$3 ($1 > $2)"; else fail "$3: $1 is not > $2"; fi
}
assert_exists() {
    if [ -e "$1" ] || [ -L "$1" ]; then pass "${2:-$1 exists}"; else fail "${2:-$1 exists}: missing"; fi
}
assert_absent() {
    if [ -e "$1" ] || [ -L "$1" ]; then fail "${2:-$1 absent}: it exists"; else pass "${2:-$1 absent}"; fi
}

# ---- running commands ------------------------------------------------------

# run CMD...: run, keep stdout in $OUT, stderr in $ERR, status in $RC.
# Never fails by itself.
_RUNS=0
run() {
    _RUNS=$((_RUNS + 1))
    local o="$T/.run$_RUNS.out" e="$T/.run$_RUNS.err"
    echo "+ $*" | cut -c1-300
    "$@" >"$o" 2>"$e"
    RC=$?
    OUT=$(cat "$o")
    ERR=$(cat "$e")
    rm -f "$o" "$e"
    return 0
}
# expect_ok DESCRIPTION CMD...: the command must exit 0.
expect_ok() {
    local desc=$1; shift
    run "$@"
    if [ "$RC" -eq 0 ]; then pass "$desc"; return 0; fi
    fail "$desc: exit $RC"
    printf '%s\n' "$ERR" | show
    return 1
}
# expect_fail CMD...: the command must exit non-zero; stderr in $ERR, status
# in $RC. expect_fail_desc DESCRIPTION CMD... names the check.
expect_fail() { expect_fail_desc "fails: $*" "$@"; }
expect_fail_desc() {
    local desc=$1; shift
    run "$@"
    if [ "$RC" -ne 0 ]; then pass "$desc (exit $RC)"; return 0; fi
    fail "$desc: exited 0"
    printf '%s\n' "$OUT" | show
    return 1
}
# expect_rc CODE DESCRIPTION CMD...
expect_rc() {
    local code=$1 desc=$2; shift 2
    run "$@"
    if [ "$RC" -eq "$code" ]; then pass "$desc (exit $RC)"; return 0; fi
    fail "$desc: expected exit $code, got $RC"
    { printf '%s\n' "$ERR"; printf '%s\n' "$OUT"; } | show
    return 1
}
# Some stderr line is a coffer error line ("coffer: error: ...").
assert_error_line() {
    assert_match "$ERR" '^coffer: error: ' "${1:-stderr has a 'coffer: error: ' line}"
}

cf() { "$COFFER" --no-progress "$@"; }

require_coffer() {
    [ -x "$COFFER" ] || die "coffer binary not found at $COFFER (set COFFER)"
}

# ---- deployments, snapshots ------------------------------------------------

# gen_deployment DIR [gen_asterdrive.py args]: summary JSON in DIR.gen.json
gen_deployment() {
    local dir=$1; shift
    echo "+ gen_asterdrive.py $dir $*"
    "$PY" "$TOOLS/gen_asterdrive.py" "$dir" "$@" >"$dir.gen.json" || die "gen_asterdrive.py $dir failed"
}
mutate_deployment() {
    local dir=$1; shift
    echo "+ mutate_asterdrive.py $dir $*"
    "$PY" "$TOOLS/mutate_asterdrive.py" "$dir" "$@" >"$dir.mutate.json" || die "mutate_asterdrive.py failed"
}
# damage_packs REPO: flip one byte in every 64 KiB of every pack of a local
# repository, so every chunk larger than that is damaged
damage_packs() {
    find "$1/data" -type f -exec "$PY" -c '
import sys
for p in sys.argv[1:]:
    b = bytearray(open(p, "rb").read())
    for o in range(32768, len(b), 65536):
        b[o] ^= 0xFF
    open(p, "wb").write(b)' {} +
}
# snapshot ROOT OUT.json [snapshot.py args]
snapshot() {
    "$PY" "$TOOLS/snapshot.py" "$@" >/dev/null || die "snapshot.py $1 failed"
}
# compare DESCRIPTION A.json B.json [compare.py args]: PASS/FAIL with diff lines
compare() {
    local desc=$1; shift
    local o
    o=$("$PY" "$TOOLS/compare.py" "$@" 2>&1)
    local rc=$?
    if [ $rc -eq 0 ]; then pass "$desc ($(printf '%s\n' "$o" | tail -1 | sed 's/^compare: //'))"; return 0; fi
    fail "$desc:"
    printf '%s\n' "$o" | show 60
    return 1
}
# Paths that are not backup content in a deployment (policy excludes).
RESTORE_EXCLUDES=(--exclude data/.tmp --exclude data/.uploads)

# doctor DESCRIPTION ROOT: asterdoctor --deep must pass (no FAIL)
doctor() {
    local o rc
    o=$("$PY" "$TOOLS/asterdoctor.py" --deep "$2" 2>&1)
    rc=$?
    if [ $rc -eq 0 ]; then pass "$1 ($(printf '%s\n' "$o" | tail -1))"; return 0; fi
    fail "$1:"
    printf '%s\n' "$o" | grep -v '^PASS' | show
    return 1
}

# setup_env [NAME]: environment for the shipped policy; live root $T/live,
# repository $T/repo, stop/start `true`, doctor as validate command.
setup_env() {
    export ASTERDRIVE_ROOT=$T/live
    export COFFER_REPO=$T/repo
    export ASTERDRIVE_STOP=true
    export ASTERDRIVE_START=true
    export ASTERDRIVE_DOCTOR="$PY $TOOLS/asterdoctor.py --deep ."
    [ -f "$POLICY" ] || die "shipped policy $POLICY not found"
}

# count_sets REPO: number of set manifests
count_sets() {
    if [ -d "$1/sets" ]; then find "$1/sets" -type f | wc -l; else echo 0; fi
}

# json_get JSON PYEXPR: evaluate PYEXPR on the parsed JSON (as `j`), print it
json_get() {
    printf '%s' "$1" | "$PY" -c '
import json, sys
j = json.loads(sys.stdin.read())
v = eval(sys.argv[1])
print(json.dumps(v) if isinstance(v, (dict, list)) else v)' "$2"
}

# sql DB QUERY: one value (read-only, never leaves files behind)
sql() {
    "$PY" - "$1" "$2" <<'EOF'
import os, sys
sys.path.insert(0, os.environ["TOOLS"])
import asterlib as al
conn, close = al.open_ro(sys.argv[1])
try:
    r = conn.execute(sys.argv[2]).fetchall()
    print("\n".join("|".join(str(x) for x in row) for row in r))
finally:
    close()
EOF
}
export TOOLS
export PYTHONDONTWRITEBYTECODE=1

# last_line TEXT
last_line() { printf '%s\n' "$1" | grep -v '^\s*$' | tail -1; }

# pad_database DB ROWS BYTES: a table `padding` of ROWS incompressible
# blobs of BYTES each in the SQLite database DB (a database of several
# chunks, or one that takes a while to restore)
pad_database() {
    "$PY" - "$@" <<'EOF' || die "cannot grow the database $1"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("CREATE TABLE padding (id INTEGER PRIMARY KEY, b BLOB)")
c.executemany("INSERT INTO padding (b) VALUES (randomblob(?))", [(int(sys.argv[3]),)] * int(sys.argv[2]))
c.commit()
c.close()
EOF
}

# first_plain_set VAR: an unencrypted repository at $COFFER_REPO with one
# backup of the shipped policy; its set id in VAR
first_plain_set() {
    run cf init -p "$POLICY" --encryption none
    [ "$RC" -eq 0 ] || die "init failed: $ERR"
    run cf backup -p "$POLICY"
    [ "$RC" -eq 0 ] || die "backup failed: $ERR"
    printf -v "$1" '%s' "$(last_line "$OUT")"
    assert_match "${!1}" "$SETID_RE" "set id of the first backup"
}

# make_policy OUT SED-EXPR...: a copy of the shipped policy edited by sed
make_policy() {
    local out=$1; shift
    local args=()
    local e
    for e in "$@"; do args+=(-e "$e"); done
    sed "${args[@]}" "$POLICY" >"$out" || die "make_policy $out"
}

# wait_for DESCRIPTION SECONDS TEST-CMD...
wait_for() {
    local desc=$1 secs=$2; shift 2
    local i=0 n=$((secs * 20))
    while [ $i -lt $n ]; do
        if "$@"; then return 0; fi
        sleep 0.05
        i=$((i + 1))
    done
    fail "timed out after ${secs}s waiting for $desc"
    return 1
}

echo "=== $TEST_NAME: temp dir $T, coffer $COFFER"
