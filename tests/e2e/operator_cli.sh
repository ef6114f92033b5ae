#!/usr/bin/env bash
# The command line as an operator meets it: `coffer help [COMMAND]`, the
# progress bar's file count equal to the summary's, and the directories
# in-place restores keep aside: listed by `sets`, removed on request by
# `restore --cleanup-previous` (with a --dry-run first).
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 3 --seed 31

section "help"
expect_ok "coffer help" cf help
assert_contains "$OUT" "commands:" "lists the commands"
assert_contains "$OUT" "restore" "restore among them"
expect_ok "coffer help restore" cf help restore
assert_eq "$OUT" "$("$COFFER" restore --help)" "the same text as restore --help"
expect_rc 2 "help of an unknown command" cf help nosuch
assert_contains "$ERR" "nosuch" "names it"
expect_rc 2 "help takes one command" cf help restore backup
assert_contains "$ERR" "backup" "names the extra argument"

section "progress counts what the summary counts"
run cf init -p "$POLICY"
screen=$("$PY" - "$COFFER" "$POLICY" <<'PYEOF'
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "backup", "-p", sys.argv[2]])
out = b""
while True:
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
PYEOF
)
bar=$(printf '%s\n' "$screen" | tr '\r' '\n' | grep -oE '[0-9]+ files, ' | tail -1 | grep -oE '^[0-9]+')
summary=$(printf '%s\n' "$screen" | grep -oE 'set [0-9T]+Z-[0-9a-f]+: [0-9]+ files' | tail -1 | grep -oE '[0-9]+ files' | grep -oE '^[0-9]+')
assert_match "$summary" '^[0-9]+$' "the summary has a file count ($summary)"
assert_eq "$bar" "$summary" "the progress bar's last count equals the summary's"

section "directories kept aside by in-place restores"
run cf sets -p "$POLICY"
assert_not_contains "$OUT" "kept aside" "nothing kept aside yet"
expect_ok "restore in place" cf restore -p "$POLICY" --in-place --no-validate
prev=$(cd "$ASTERDRIVE_ROOT" && ls -d .coffer-previous-* 2>/dev/null | head -1)
assert_match "$prev" '^\.coffer-previous-' "the replaced files were kept aside"
run cf sets -p "$POLICY"
assert_contains "$OUT" "$ASTERDRIVE_ROOT/$prev" "sets lists the kept directory"
assert_contains "$OUT" "--cleanup-previous" "and says how to remove it"
expect_rc 2 "--cleanup-previous refuses restore options" cf restore -p "$POLICY" --cleanup-previous --set latest
expect_ok "--cleanup-previous --dry-run" cf restore -p "$POLICY" --cleanup-previous --dry-run
assert_contains "$OUT" "would remove $ASTERDRIVE_ROOT/$prev" "dry run names it"
assert_exists "$ASTERDRIVE_ROOT/$prev" "and keeps it"
expect_ok "--cleanup-previous" cf restore -p "$POLICY" --cleanup-previous
assert_contains "$OUT" "removed $ASTERDRIVE_ROOT/$prev" "names what it removed"
assert_absent "$ASTERDRIVE_ROOT/$prev" "removed"
assert_exists "$ASTERDRIVE_ROOT/data/config.toml" "the live tree is intact"
expect_ok "--cleanup-previous with nothing to remove" cf restore -p "$POLICY" --cleanup-previous
assert_contains "$OUT" "nothing kept aside" "says so"
finish
