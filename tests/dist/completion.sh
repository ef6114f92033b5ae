#!/usr/bin/env bash
# Shell completion: the bash script completes commands, each command's own
# options (read from the binary's help, so a refused option is never
# offered), policy files and set ids of the policy on the line; the zsh
# script parses.
. "$(dirname "$0")/../e2e/lib.sh"
require_coffer
setup_env
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 1 --seed 3
run cf init -p "$POLICY"
run cf backup -p "$POLICY"
set_id=$(last_line "$OUT")
assert_match "$set_id" "$SETID_RE" "a set to complete"
export PATH="$(dirname "$COFFER"):$PATH"
# shellcheck disable=SC1091
. "$COFFER_SRC/dist/completion/coffer.bash"

complete_line() { # complete_line WORD... ; the last word is being completed
    COMP_WORDS=(coffer "$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    _coffer
    printf '%s\n' "${COMPREPLY[@]}"
}
got=$(complete_line re)
assert_contains "$got" restore "commands: re -> restore"
assert_not_contains "$got" backup "commands: only matching ones"
got=$(complete_line restore --)
assert_contains "$got" --to "restore options: --to"
assert_contains "$got" --only "restore options: --only"
assert_not_contains "$got" --keep-last "restore options: no forget option"
got=$(complete_line backup --)
assert_contains "$got" --target "backup options: --target"
assert_not_contains "$got" --to "backup options: no restore option"
cp "$POLICY" "$T/mine.yaml"
(cd "$T" && complete_line backup -p mi) >"$T/got"
assert_contains "$(cat "$T/got")" mine.yaml "policy file names"
got=$(complete_line restore -p "$POLICY" --set "")
assert_contains "$got" "$set_id" "set ids of the policy on the line"
assert_contains "$got" latest "latest"
got=$(complete_line forget -p "$POLICY" "")
assert_contains "$got" "$set_id" "forget completes set ids"
if command -v zsh >/dev/null; then
    zsh -n "$COFFER_SRC/dist/completion/_coffer" && pass "zsh completion parses" ||
        fail "zsh completion does not parse"
else
    skip "zsh not installed"
fi
finish
