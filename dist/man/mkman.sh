#!/bin/sh
# Build the manual pages from the project's own documentation:
#   coffer(1)         docs/man/coffer.1.md, its COMMANDS section filled from the
#                     binary's own help (`coffer COMMAND --help`), so the page
#                     never disagrees with the command line
#   coffer-policy(5)  docs/policy-reference.md
# usage: mkman.sh COFFER SRCDIR OUTDIR
set -eu
coffer=$1 src=$2 out=$3
mkdir -p "$out"
cmds=$("$coffer" --help | awk '/^commands:/ {on = 1; next} on && /^  [a-z]/ {print $1} /^$/ && on {on = 0}')
tmp=$out/commands.md
: >"$tmp"
for c in $cmds; do
    {
        printf '## %s\n\n' "$c"
        "$coffer" "$c" --help 2>&1 | sed 's/^/    /'
        printf '\n'
    } >>"$tmp"
done
awk -v f="$tmp" '/^@COMMANDS@$/ {while ((getline l < f) > 0) print l; next} {print}' \
    "$src/docs/man/coffer.1.md" | go-md2man >"$out/coffer.1"
{
    printf '%% COFFER-POLICY 5 "" "coffer" "File Formats"\n\n'
    printf '# NAME\ncoffer-policy - the YAML policy file that describes a coffer backup boundary\n\n'
    sed '1s/^# Policy reference$/# DESCRIPTION/' "$src/docs/policy-reference.md"
} | go-md2man >"$out/coffer-policy.5"
rm -f "$tmp"
