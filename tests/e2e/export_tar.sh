#!/usr/bin/env bash
# coffer export: a set as a plain tar. Restored with stock tools only (tar,
# sqlite3) it equals the deployment at backup time (bytes, modes, owners,
# times, links, database rows); a full disk leaves no archive under the
# name; the archive is safe to extract; bad options are refused.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env
command -v sqlite3 >/dev/null || { skip "sqlite3 is not installed"; finish; }

section "generate, back up, export"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 8 --seed 11
ln -s config.toml "$ASTERDRIVE_ROOT/data/config-link.toml" 2>/dev/null || true
expect_ok "init" cf init -p "$POLICY" || die "init failed"
expect_ok "backup" cf backup -p "$POLICY" --json || die "backup failed"
SET=$(json_get "$OUT" 'j["set"]')
snapshot "$ASTERDRIVE_ROOT" "$T/snap.json"
# the live tree changes after the backup: the export must hold the set
mutate_deployment "$ASTERDRIVE_ROOT" --seed 12
expect_ok "export --to FILE --json" cf export -p "$POLICY" --set "$SET" --to "$T/set.tar" --json
assert_eq "$SET" "$(json_get "$OUT" 'j["set"]')" "report names the set"
assert_gt "$(json_get "$OUT" 'j["files"]')" 10 "files exported"
assert_eq 600 "$(stat -c %a "$T/set.tar")" "archive is 0600"
assert_eq "" "$(ls -A "$T" | grep coffer-export)" "no temporary left beside it"

section "the archive"
list=$(tar -tf "$T/set.tar") || fail "stock tar cannot list the archive"
assert_eq "RESTORE.txt" "$(printf '%s\n' "$list" | head -1)" "RESTORE.txt comes first"
assert_contains "$list" "files/data/config.toml" "config under files/"
assert_contains "$list" "databases/database.sqlite" "SQLite database under databases/"
assert_eq "" "$(printf '%s\n' "$list" | grep -E '(^/|(^|/)\.\.(/|$))')" "no absolute or .. names"
tar -xOf "$T/set.tar" RESTORE.txt >"$T/RESTORE.txt"
assert_contains "$(cat "$T/RESTORE.txt")" "$SET" "RESTORE.txt names the set"
assert_contains "$(cat "$T/RESTORE.txt")" "tar -x -f THIS.tar" "RESTORE.txt gives the tar command"
assert_contains "$(cat "$T/RESTORE.txt")" "sqlite3" "RESTORE.txt gives the sqlite3 check"

section "restore with stock tools only"
R=$T/restored
mkdir -p "$R/data"
tar -x -f "$T/set.tar" -C "$T" databases/database.sqlite || fail "tar -x of the database failed"
assert_eq ok "$(sqlite3 "$T/databases/database.sqlite" 'PRAGMA integrity_check')" "sqlite3 finds the database intact"
# the database first: tar sets the directories' times after their content
cp "$T/databases/database.sqlite" "$R/data/asterdrive.db"
tar -x -f "$T/set.tar" --xattrs --xattrs-include='*' --numeric-owner --same-permissions \
    --strip-components=1 -C "$R" files || fail "tar -x of files/ failed"
snapshot "$R" "$T/snapR.json"
compare "stock-tool restore equals the deployment at backup time (bytes, metadata, rows)" \
    "$T/snap.json" "$T/snapR.json" "${RESTORE_EXCLUDES[@]}"
assert_eq "config.toml" "$(readlink "$R/data/config-link.toml")" "symbolic link kept"

section "stdout"
"$COFFER" --no-progress export -p "$POLICY" --set "$SET" --to - >"$T/stdout.tar" 2>"$T/err"
assert_eq 0 $? "export --to - exits 0"
assert_eq "$(tar -tf "$T/set.tar" | sort)" "$(tar -tf "$T/stdout.tar" | sort)" "same entries on stdout"

section "full disk"
M=$T/small
mkdir -p "$M"
if ! mount -t tmpfs -o size=2m tmpfs "$M" 2>/dev/null; then
    skip "full disk: cannot mount a tmpfs here (needs root)"
else
    mount_register "$M"
    expect_rc 1 "export onto a full disk fails" cf export -p "$POLICY" --set "$SET" --to "$M/set.tar"
    assert_imatch "$ERR" 'space' "error says no space"
    assert_absent "$M/set.tar" "no archive under the name"
    assert_eq "" "$(ls -A "$M")" "no temporary left behind"
fi

section "refusals"
expect_rc 2 "--to missing" cf export -p "$POLICY"
expect_rc 2 "an unknown option" cf export -p "$POLICY" --to "$T/x.tar" --bogus
assert_contains "$ERR" "--bogus"
expect_rc 2 "a stray argument" cf export -p "$POLICY" --to "$T/x.tar" extra
expect_rc 2 "--json with --to -" cf export -p "$POLICY" --to - --json
expect_rc 1 "--to a directory" cf export -p "$POLICY" --to "$T"
assert_contains "$ERR" "directory"
expect_rc 1 "an unknown set" cf export -p "$POLICY" --set 19990101T000000Z-00000000 --to "$T/x.tar"
assert_absent "$T/x.tar" "nothing written for an unknown set"

section "a damaged repository"
damage_packs "$COFFER_REPO"
expect_rc 1 "export of a set with damaged packs fails" cf export -p "$POLICY" --set "$SET" --to "$T/bad.tar"
assert_match "$ERR" "chunk [0-9a-f]{64} in pack data/" "the error names the chunk and its pack"
assert_absent "$T/bad.tar" "no archive under the name"
assert_eq "" "$(find "$T" -maxdepth 1 -name '*bad.tar*')" "no temporary left behind"

finish
