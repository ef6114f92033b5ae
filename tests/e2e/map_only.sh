#!/usr/bin/env bash
# Partial and relocated restores: --only NAME restores one component and
# nothing else; --map database=FILE writes the database there; --map
# data=DIR puts the files component elsewhere (a test environment).
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env

# files_under DIR: every non-directory path under DIR, relative, sorted
files_under() { (cd "$1" 2>/dev/null && find . ! -type d | sed 's|^\./||' | sort); }

section "generate, init, backup"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 10 --seed 51
expect_ok "init" cf init -p "$POLICY" || die "init failed"
expect_ok "backup" cf backup -p "$POLICY" || die "backup failed"
SET=$(last_line "$OUT")
snapshot "$ASTERDRIVE_ROOT" "$T/snap.json"
# partial restores do not contain a whole deployment: no doctor
export ASTERDRIVE_DOCTOR=true

section "--only database --map database=FILE"
ls "$T" >"$T/before.ls"
expect_ok "restore --only database --map database=$T/x.db" \
    cf restore -p "$POLICY" --set "$SET" --only database --map "database=$T/x.db" --to "$T/r1"
assert_exists "$T/x.db" "database written to the mapped path"
snapshot "$T/x.db" "$T/snap-x.json"
compare "mapped database equals the set's, row for row" "$T/snap.json" "$T/snap-x.json" --db-only
assert_eq "" "$(files_under "$T/r1")" "nothing written under the --to root"
# shellcheck disable=SC2010 # plain names only, made by this test
new=$(ls "$T" | grep -vxFf "$T/before.ls" | grep -Ev '^(x\.db(-wal|-shm|-journal)?|r1|snap-x\.json|\.run.*)$' | tr '\n' ' ')
assert_eq "" "$new" "nothing else written beside the mapped database"

section "--only config"
expect_ok "restore --only config" cf restore -p "$POLICY" --set "$SET" --only config --to "$T/r2"
assert_eq "data/config.toml" "$(files_under "$T/r2")" "only data/config.toml restored"
snapshot "$T/r2" "$T/snap-r2.json" --no-db
if "$PY" - "$T/snap.json" "$T/snap-r2.json" <<'EOF'
import json, sys
a = json.load(open(sys.argv[1]))["entries"]["data/config.toml"]
b = json.load(open(sys.argv[2]))["entries"].get("data/config.toml")
bad = [k for k in ("type", "mode", "uid", "gid", "mtime_ns", "size", "sha256") if not b or a[k] != b.get(k)]
if bad:
    print("    | differs in %s: source %s, restored %s" % (bad, a, b))
sys.exit(1 if bad else 0)
EOF
then pass "config.toml restored byte for byte with its mode, owner and mtime"
else fail "config.toml restored differently (above)"; fi

section "--only data"
expect_ok "restore --only data" cf restore -p "$POLICY" --set "$SET" --only data --to "$T/r3"
assert_absent "$T/r3/data/asterdrive.db" "no database in a data-only restore"
assert_exists "$T/r3/data/uploads" "uploads restored"
snapshot "$T/r3" "$T/snap-r3.json" --no-db
compare "data component restored (everything but config and database)" "$T/snap.json" "$T/snap-r3.json" \
    "${RESTORE_EXCLUDES[@]}" --exclude data/config.toml --exclude 'data/asterdrive.db*' --no-db

section "test environment: --map data=DIR"
export ASTERDRIVE_DOCTOR="$PY $TOOLS/asterdoctor.py --deep ."
expect_ok "restore --to env --map data=$T/otherdata" \
    cf restore -p "$POLICY" --set "$SET" --to "$T/env" --map "data=$T/otherdata" --no-validate
assert_exists "$T/env/data/config.toml" "config restored under the --to root"
assert_exists "$T/env/data/asterdrive.db" "database restored under the --to root"
assert_absent "$T/env/data/uploads" "data component not under the --to root"
if [ -d "$T/otherdata/data/uploads" ]; then
    note "--map data=DIR re-roots the component: DIR/data/uploads/..."
    mapped=$T/otherdata/data
elif [ -d "$T/otherdata/uploads" ]; then
    note "--map data=DIR puts the component's directory there: DIR/uploads/..."
    mapped=$T/otherdata
else
    mapped=""
    fail "no uploads/ under $T/otherdata:"; files_under "$T/otherdata" | show
fi
if [ -n "$mapped" ]; then
    snapshot "$ASTERDRIVE_ROOT/data" "$T/snap-data.json" --no-db
    snapshot "$mapped" "$T/snap-mapped.json" --no-db
    compare "mapped data directory equals the set's data/" "$T/snap-data.json" "$T/snap-mapped.json" \
        --exclude .tmp --exclude .uploads --exclude config.toml --exclude 'asterdrive.db*' --ignore-mtime-of .
fi
assert_eq ok "$(sql "$T/env/data/asterdrive.db" 'pragma integrity_check')" "test environment database is intact"

section "bad --only / --map"
expect_rc 2 "--only with an unknown component is a usage error" \
    cf restore -p "$POLICY" --set "$SET" --only nosuch --to "$T/r4"
assert_contains "$ERR" "nosuch" "error names the unknown component"
expect_rc 2 "--map with an unknown component is a usage error" \
    cf restore -p "$POLICY" --set "$SET" --map "nosuch=$T/y" --to "$T/r5"
assert_contains "$ERR" "nosuch" "error names the unknown component"
expect_rc 2 "--map without NAME=VALUE is a usage error" \
    cf restore -p "$POLICY" --set "$SET" --map "database" --to "$T/r6"
assert_absent "$T/r4/data" "nothing restored by the refused commands"

finish
