# Helpers for the lifecycle end-to-end tests (source after tests/e2e/lib.sh).

# flip FILE OFFSET: XOR one byte with 0xff (negative offset: from the end)
flip() {
    "$PY" - "$1" "$2" <<'PYEOF'
import sys
p, o = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read())
if o < 0:
    o += len(b)
b[o] ^= 0xFF
open(p, "wb").write(b)
PYEOF
}

# tree_state DIR: one line per file (path, size, mtime ns, sha1): "was
# anything written, removed or changed?"
tree_state() {
    (cd "$1" && find . -type f -printf '%p %s %T@\n' | sort | while read -r p s m; do
        echo "$p $s $m $(sha1sum <"$p" | cut -c1-40)"
    done)
}

# policy_with_target_keys OUT KEY: VALUE...: the shipped policy with extra
# keys under its target
policy_with_target_keys() {
    local out=$1; shift
    local lines="" kv
    for kv in "$@"; do lines="$lines\\n    $kv"; done
    sed "s|^    location: \${COFFER_REPO:-/srv/backups/asterdrive}\$|&$lines|" "$POLICY" >"$out" ||
        die "policy_with_target_keys"
    grep -q "${1%%:*}" "$out" || die "policy_with_target_keys: key not inserted"
}

# two_target_policy OUT: targets primary ($COFFER_REPO) and second
# ($COFFER_REPO2), with extra keys for the second given as arguments
two_target_policy() {
    local out=$1; shift
    local lines="\\n  - name: second\\n    location: \${COFFER_REPO2}" kv
    for kv in "$@"; do lines="$lines\\n    $kv"; done
    sed "s|^    location: \${COFFER_REPO:-/srv/backups/asterdrive}\$|&$lines|" "$POLICY" >"$out" ||
        die "two_target_policy"
}

# restore_compare DESC SET SNAPSHOT [policy args...]: restore SET into a
# fresh directory and compare it with a snapshot taken at backup time
_RC=0
restore_compare() {
    local desc=$1 set=$2 snap=$3; shift 3
    _RC=$((_RC + 1))
    local dir="$T/restore-$_RC"
    if expect_ok "$desc: restore" cf restore "$@" --set "$set" --to "$dir" --no-validate; then
        snapshot "$dir" "$dir.json"
        compare "$desc: restored tree equals the tree at backup time" "$snap" "$dir.json" \
            "${RESTORE_EXCLUDES[@]}"
    fi
    rm -rf "$dir" "$dir.json"
}

# backup_set [policy args...]: run a backup, print the set id in $SET
backup_set() {
    expect_ok "backup $*" cf backup "$@" || die "backup failed: $ERR"
    SET=$(last_line "$OUT")
}
