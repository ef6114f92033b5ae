#!/usr/bin/env bash
# The manual pages built with coffer: both render without a groff warning,
# coffer(1) documents every command the binary has (with its usage line),
# coffer-policy(5) every top-level policy key of the reference.
. "$(dirname "$0")/../e2e/lib.sh"
require_coffer
man_dir=$COFFER_BUILD/dist/man
for p in coffer.1 coffer-policy.5; do
    [ -s "$man_dir/$p" ] || die "$man_dir/$p was not built (go-md2man missing?)"
    # The policy reference's wide tables overflow 80 columns; every other
    # warning (bad escapes, unknown macros) fails.
    warn=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$man_dir/$p" 2>&1 >/dev/null |
        grep -v -e "^warning: file '<standard input>', around line [0-9]*:$" -e 'table wider than line width')
    [ -z "$warn" ] && pass "$p renders without warnings" || { fail "$p: groff warnings"; printf '%s\n' "$warn" | show; }
done
page=$(LC_ALL=C.UTF-8 MANWIDTH=200 man -l "$man_dir/coffer.1" 2>/dev/null)
cmds=$("$COFFER" --help | awk '/^commands:/ {on = 1; next} on && /^  [a-z]/ {print $1} /^$/ && on {on = 0}')
n=0
for c in $cmds; do
    usage=$("$COFFER" "$c" --help 2>&1 | head -1)
    grep -qF -- "$usage" <<<"$page" || fail "coffer(1) lacks the usage of '$c': $usage"
    n=$((n + 1))
done
assert_gt "$n" 10 "coffer(1) checked against $n commands"
for s in NAME SYNOPSIS DESCRIPTION COMMANDS "EXIT STATUS" ENVIRONMENT FILES; do
    grep -q "^$s" <<<"$page" || fail "coffer(1) has no $s section"
done
ppage=$(LC_ALL=C.UTF-8 MANWIDTH=200 man -l "$man_dir/coffer-policy.5" 2>/dev/null)
for k in version name root consistency targets components retention validate; do
    grep -q "$k" <<<"$ppage" || fail "coffer-policy(5) does not mention '$k'"
done
assert_match "$(head -5 <<<"$ppage")" "COFFER-POLICY\(5\)" "coffer-policy(5) title"
finish
