#!/usr/bin/env bash
# Passphrase sources beyond the environment: a systemd credential
# ($CREDENTIALS_DIRECTORY/passphrase, what LoadCredential= provides) and a
# prompt without echo when stdin is a terminal and no other source is set.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 2 --seed 5
pass_word="credential-pass-$$"
unset COFFER_PASSPHRASE

section "systemd credential"
mkdir -p "$T/cred"
printf '%s\n' "$pass_word" >"$T/cred/passphrase"
chmod 600 "$T/cred/passphrase"
export CREDENTIALS_DIRECTORY=$T/cred
expect_ok "init reads the passphrase from the credential" cf init -p "$POLICY"
assert_contains "$(cat "$T/repo/config" | tail -c +9 | head -c -32)" '"encryption"' "repository config written"
expect_ok "backup with the credential" cf backup -p "$POLICY"
set_id=$(last_line "$OUT")
assert_not_contains "$OUT$ERR" "$pass_word" "the passphrase is never printed"
printf 'wrong\n' >"$T/cred/passphrase"
expect_rc 1 "a wrong credential is refused" cf sets -p "$POLICY"
assert_contains "$ERR" "systemd credential" "the error names the source"
printf '%s\n' "$pass_word" >"$T/cred/passphrase"
COFFER_PASSPHRASE=wrong run cf sets -p "$POLICY"
assert_eq "$RC" 1 "the environment variable still comes first"
unset CREDENTIALS_DIRECTORY

section "prompt on a terminal"
# A pseudo-terminal: type the passphrase at the prompt, read the screen.
tty_run() { # tty_run ANSWER CMD...
    "$PY" - "$@" <<'PYEOF'
import os, pty, select, sys, time
answer = sys.argv[1].encode() + b"\n"
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
out, sent, end = b"", False, time.time() + 60
while time.time() < end:
    r, _, _ = select.select([fd], [], [], 0.5)
    if r:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    if not sent and b"passphrase for" in out:
        os.write(fd, answer)
        sent = True
_, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(st))
PYEOF
}
screen=$(tty_run "$pass_word" "$COFFER" --no-progress sets -p "$POLICY")
rc=$?
assert_eq "$rc" 0 "sets on a terminal succeeds after the prompt"
assert_contains "$screen" "passphrase for" "a prompt was shown"
assert_contains "$screen" "$set_id" "the set is listed"
assert_not_contains "$screen" "$pass_word" "the typed passphrase is not echoed"
screen=$(tty_run "not-it" "$COFFER" --no-progress sets -p "$POLICY")
assert_ne "$?" 0 "a wrong typed passphrase is refused"
run cf sets -p "$POLICY" </dev/null
assert_eq "$RC" 1 "without a terminal and without a source: an error, no prompt"
assert_contains "$ERR" "COFFER_PASSPHRASE" "the error names the missing variable"
finish
