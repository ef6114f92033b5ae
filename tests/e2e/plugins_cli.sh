#!/usr/bin/env bash
# The command line itself: version, help, plugin listing and description,
# policy check, and the usage errors every command shares.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env

section "version, help"
expect_ok "--version exits 0" "$COFFER" --version
assert_match "$OUT" '^coffer [0-9]+\.[0-9]+' "--version prints 'coffer X.Y...'"
expect_ok "--help exits 0" "$COFFER" --help
for c in init backup sets restore verify plugins policy; do
    assert_match "$OUT" "^ +$c " "--help lists '$c'"
done
for c in init backup sets restore verify plugins; do
    expect_ok "$c --help exits 0" "$COFFER" "$c" --help
    assert_contains "$OUT" "usage: coffer $c" "$c --help shows its usage"
done

section "plugins"
expect_ok "plugins" cf plugins
assert_match "$OUT" '^sqlite +database ' "plugins lists sqlite as a database driver"
assert_match "$OUT" '^local +storage ' "plugins lists local as a storage driver"
expect_ok "plugins --describe sqlite" cf plugins --describe sqlite
assert_match "$OUT" '^ +path ' "sqlite's option 'path' is described"
assert_match "$OUT" 'path +path +required' "'path' is a required path option"
expect_ok "plugins --describe local" cf plugins --describe local
assert_match "$OUT" 'storage' "local is described as a storage driver"
expect_rc 2 "plugins --describe nosuch is an error" cf plugins --describe nosuch
assert_error_line
assert_contains "$ERR" "nosuch" "error names the unknown driver"
if ls "$COFFER_PLUGIN_BUILD_DIR"/*.so >/dev/null 2>&1; then
    expect_ok "plugins --plugin-dir with the built driver objects" cf --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" plugins
    assert_match "$OUT" '^sqlite +database ' "sqlite still listed once loaded from a directory too"
    assert_not_contains "$OUT" "not loaded" "no driver in $COFFER_PLUGIN_BUILD_DIR is rejected"
else
    skip "no driver objects in $COFFER_PLUGIN_BUILD_DIR"
fi

section "policy check"
expect_ok "policy check of the shipped policy" cf policy check "$POLICY"
assert_contains "$OUT" "valid" "policy check says the policy is valid"
assert_contains "$OUT" "$T/live" "policy check shows the expanded root"
expect_rc 2 "policy check of a missing file" cf policy check "$T/nope.yaml"
assert_error_line
assert_contains "$ERR" "$T/nope.yaml" "error names the file"
# shellcheck disable=SC2016 # a literal ${VAR} for the policy
make_policy "$T/noenv.yaml" 's/\${ASTERDRIVE_ROOT:-\/var\/lib\/asterdrive}/${COFFER_E2E_UNSET_VARIABLE}/'
expect_rc 2 "a policy using an unset variable is rejected" cf policy check "$T/noenv.yaml"
assert_contains "$ERR" "COFFER_E2E_UNSET_VARIABLE" "error names the variable"

section "usage errors"
expect_rc 2 "no command" "$COFFER"
expect_rc 2 "unknown command" "$COFFER" frobnicate
assert_error_line
assert_contains "$ERR" "frobnicate" "error names the command"
expect_rc 2 "unknown global option" "$COFFER" --frobnicate
expect_rc 2 "unknown command option" cf backup -p "$POLICY" --frobnicate
for c in init backup sets restore verify; do
    expect_rc 2 "$c without -p" cf "$c"
    assert_error_line
done
expect_rc 2 "restore without --to or --in-place" cf restore -p "$POLICY"
expect_rc 2 "restore with both --to and --in-place" cf restore -p "$POLICY" --to "$T/x" --in-place
expect_rc 2 "policy without 'check FILE'" cf policy
expect_fail_desc "sets on a location without a repository fails" cf sets -p "$POLICY"
assert_error_line
assert_contains "$ERR" "$T/repo" "error names the repository location"

finish
