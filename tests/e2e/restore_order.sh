#!/usr/bin/env bash
# A restore downloads its files components on a thread of their own while
# the database restores, and still leaves what a restore of one component
# at a time would:
# - the data component starts before the database's restore has ended
#   (a database of ~48 MiB, a deployment of 2 MiB);
# - the restored tree equals the source, data/'s mtime included: the
#   database file is moved into data/ after the data component has
#   written its files, and directory metadata is set once both are done;
# - a files component before the database that fails stops the restore
#   before the database starts: no database line in the log, the error
#   names the component, the target holds nothing; a data component
#   that fails (the database, before it, restored meanwhile) leaves the
#   target empty too.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env

section "generate"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 2 --seed 41
DB=$ASTERDRIVE_ROOT/data/asterdrive.db
pad_database "$DB" 768 65536
note "database $(($(stat -c %s "$DB") >> 20)) MiB"

first_plain_set SET
# after the backup: the database's dump touches data/
snapshot "$ASTERDRIVE_ROOT" "$T/snap.json"

section "restore: data beside the database"
expect_ok "restore -v" cf -v restore -p "$POLICY" --to "$T/r1" --no-validate
LOG=$ERR
line_of() { grep -n -m1 -F "$1" <<<"$LOG" | cut -d: -f1; }
l_data=$(line_of "restoring component 'data' (files)")
l_db_start=$(line_of "restoring component 'database' (database)")
l_db_done=$(line_of "component 'database' (sqlite): restored")
l_data_done=$(line_of "component 'data': ")
l_cfg_done=$(line_of "component 'config': ")
[ -n "$l_data" ] && [ -n "$l_db_done" ] && [ -n "$l_db_start" ] && [ -n "$l_cfg_done" ] ||
    die "restore log lacks a component line: $(printf '%s\n' "$LOG" | show)"
assert_lt "$l_cfg_done" "$l_db_start" "the database starts after config, the files component before it, is restored"
assert_lt "$l_data" "$l_db_done" "the data component started before the database's restore ended"
if [ -n "$l_data_done" ] && [ "$l_data_done" -lt "$l_db_done" ]; then
    pass "the data component ended before the database file was moved into data/"
else
    note "the database ended first this time: data/'s mtime is not at stake in this run"
fi
snapshot "$T/r1" "$T/r1.json"
compare "restored tree equals the source, directory times included" "$T/snap.json" "$T/r1.json" \
    "${RESTORE_EXCLUDES[@]}"
assert_eq "$(stat -c %.9Y "$ASTERDRIVE_ROOT/data")" "$(stat -c %.9Y "$T/r1/data")" "data/'s mtime is the source's"
assert_eq 768 "$(sql "$T/r1/data/asterdrive.db" 'SELECT count(*) FROM padding')" "the database's rows are restored"

# craft NEWID COMPONENT: the set with the first file entry of COMPONENT
# renamed ../evil-COMPONENT, out of the target
craft() {
    "$PY" "$TOOLS/craft_set.py" read "$T/repo" "$SET" | "$PY" -c '
import json, sys
bad, comp = sys.argv[1], sys.argv[2]
lines = [json.loads(x) for x in sys.stdin]
lines[0]["id"] = bad
for e in lines[1:-1]:
    if e.get("component") == comp and e.get("type") == "file":
        e["path"] = "../evil-" + comp
        break
else:
    sys.exit("no file entry in " + comp)
for x in lines:
    print(json.dumps(x, separators=(",", ":")))' "$1" "$2" | "$PY" "$TOOLS/craft_set.py" write "$T/repo" "$1" ||
        die "cannot craft set $1"
}
# refused SET TARGET COMPONENT: the restore fails naming the component and
# the entry, and leaves nothing in or beside the target
refused() {
    expect_fail_desc "restore of a set whose $3 entry leaves the target fails" \
        cf -v restore -p "$POLICY" --set "$1" --to "$2" --no-validate
    assert_contains "$(last_line "$ERR")" "component '$3'" "the error names the $3 component"
    assert_contains "$(last_line "$ERR")" "../evil-$3" "the error names the entry"
    assert_eq "" "$(find "$2" -mindepth 1 2>/dev/null | head -3)" "the target holds nothing"
    assert_absent "$T/evil-$3" "nothing was written beside the target"
}

section "a files component before the database fails"
BAD1=20300101T000001Z-0badc0f1
craft "$BAD1" config
refused "$BAD1" "$T/r2" config
assert_not_contains "$ERR" "restoring component 'database'" "the database was never started"
assert_not_contains "$ERR" "restoring component 'data'" "nor the data component"

section "the data component fails beside the database"
BAD2=20300101T000002Z-0badc0f2
craft "$BAD2" data
refused "$BAD2" "$T/r3" data
assert_contains "$ERR" "restoring component 'database'" "the database, before data in the set's order, was restored meanwhile"
finish
