#!/usr/bin/env bash
# The core's refusals around a file database driver (tests/plugins/bad_abi/
# misdb.c): restored files the driver does not claim, a claimed path outside
# the root, a capability bit that disagrees with owned_paths, an option the
# driver's validate rejects (reported at file:line:col), a relative target
# location, and secret options marked in `plugins --describe`.
. "$(dirname "$0")/../../e2e/lib.sh"
require_coffer
PLUGDIR=$COFFER_BUILD/test-plugins/misdb
[ -f "$PLUGDIR/misdb.so" ] || die "misdb.so not built in $PLUGDIR"
APP=$T/app
mkdir -p "$APP/files"
echo "kept" >"$APP/files/a.txt"
C=("$COFFER" --plugin-dir "$PLUGDIR" --no-progress)

# policy MODE: the policy with the database in that mode; `mode` is line 15.
policy() {
    cat >"$T/policy.yaml" <<EOP
version: 1
name: misdb
root: $APP
targets:
  - name: repo
    location: $T/repo
components:
  - name: files
    type: files
    paths: [files/]
  - name: db
    type: database
    driver: misdb
    # the mode line must stay line 15 (checked below)
    mode: $1
EOP
}

section "a well-behaved restore (control)"
policy good
expect_ok "policy check" "${C[@]}" policy check "$T/policy.yaml"
expect_ok "init" "${C[@]}" init -p "$T/policy.yaml" --encryption none || die "init failed"
expect_ok "backup" "${C[@]}" backup -p "$T/policy.yaml" || die "backup failed"
expect_ok "restore" "${C[@]}" -v restore -p "$T/policy.yaml" --set latest --to "$T/r-good"
assert_contains "$ERR" "restored for $T/r-good" "the driver is told the final location (final_root)"
assert_exists "$T/r-good/data.bin" "the claimed file is restored"
assert_exists "$T/r-good/files/a.txt" "the files component is restored"

section "files written but not claimed"
policy unclaimed
expect_fail_desc "restore refuses unclaimed files" "${C[@]}" restore -p "$T/policy.yaml" --set latest --to "$T/r-unclaimed"
assert_error_line
assert_contains "$ERR" "driver 'misdb'" "the error names the driver"
assert_contains "$ERR" "data.bin" "the error names data.bin"
assert_contains "$ERR" "stray.log" "the error names stray.log"
assert_absent "$T/r-unclaimed/data.bin" "nothing of the database is placed"

section "a claimed path outside the root"
policy outside
expect_fail_desc "restore refuses ../escape.bin" "${C[@]}" restore -p "$T/policy.yaml" --set latest --to "$T/r-outside/in"
assert_contains "$ERR" "driver 'misdb' claims '../escape.bin'" "the error names the driver and the path"
assert_absent "$T/r-outside/escape.bin" "nothing written outside the restore directory"

section "capability bit and owned_paths disagree"
policy nobit
expect_fail_desc "backup refuses the instance" "${C[@]}" backup -p "$T/policy.yaml"
assert_contains "$ERR" "database driver 'misdb' does not declare COFFER_DBCAP_OWNS_FILES but has owned_paths" \
    "the error names the driver and the disagreement"
expect_fail_desc "restore refuses the instance" "${C[@]}" restore -p "$T/policy.yaml" --set latest --to "$T/r-nobit"
assert_contains "$ERR" "driver 'misdb'" "the restore error names the driver"

section "validate rejects an option"
policy reject
expect_rc 2 "policy check fails" "${C[@]}" policy check "$T/policy.yaml"
assert_contains "$ERR" "$T/policy.yaml:15:5: components[1].mode: database driver 'misdb': 'reject' is refused by this driver" \
    "the error names file, line, column, key and driver"

section "a relative target location with an explicit driver"
sed -e "s|^    location: .*|    location: backups\n    driver: misdbstore|" "$T/policy.yaml" >"$T/relative.yaml"
expect_rc 2 "policy check refuses it" "${C[@]}" policy check "$T/relative.yaml"
assert_contains "$ERR" "relative location 'backups'" "the error says why"
assert_match "$ERR" "relative.yaml:6:15: targets\[0\]\.location" "at the location's line and column"

section "secret options in plugins --describe"
expect_ok "describe misdb" "${C[@]}" plugins --describe misdb
assert_match "$OUT" '^ +token +string +\[secret\] ' "token is marked secret"
assert_not_contains "$(printf '%s\n' "$OUT" | grep '^ *mode ')" "[secret]" "mode is not marked secret"
finish
