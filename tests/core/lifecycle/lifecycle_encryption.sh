#!/usr/bin/env bash
# Encryption at rest: init refuses to create an unencrypted repository by
# accident; an encrypted one round-trips; its storage holds no plaintext;
# a wrong passphrase fails clearly and writes nothing; passphrase_file and
# passphrase_command; key add / list / remove / passwd; a tampered config
# is refused; copy between repositories with different keys.
HERE=$(cd "$(dirname "$0")" && pwd)
. "${COFFER_SRC:-$HERE/../../..}/tests/e2e/lib.sh"
. "$HERE/lifecycle.sh"
require_coffer
setup_env
unset COFFER_PASSPHRASE COFFER_NEW_PASSPHRASE

section "generate"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 12 --seed 21

section "init: never unencrypted by accident"
expect_rc 2 "init without any passphrase source is refused" cf init -p "$POLICY"
assert_error_line
assert_contains "$ERR" "--encryption none" "the refusal says how to ask for an unencrypted repository"
assert_contains "$ERR" "COFFER_PASSPHRASE" "the refusal names the variable it looked at"
assert_absent "$COFFER_REPO/config" "nothing was created"
expect_rc 2 "init --encryption bogus is a usage error" cf init -p "$POLICY" --encryption bogus
COFFER_REPO=$T/plain expect_ok "init --encryption none" cf init -p "$POLICY" --encryption none
assert_contains "$OUT" "unencrypted" "init says the repository is unencrypted"
assert_contains "$(tail -c +9 "$T/plain/config")" '"encryption": "none"' "plain config says none"
COFFER_PASSPHRASE= expect_rc 1 "init --encryption repokey with an empty passphrase fails" \
    cf init -p "$POLICY" --encryption repokey
assert_contains "$ERR" "COFFER_PASSPHRASE is empty"
assert_absent "$COFFER_REPO/config" "nothing was created"
export COFFER_PASSPHRASE="first passphrase"
expect_ok "init with COFFER_PASSPHRASE set: encrypted by default" cf init -p "$POLICY" || die "init"
assert_contains "$OUT" "encrypted (repokey" "init says it is encrypted"
CFG=$(tail -c +9 "$COFFER_REPO/config")
assert_contains "$CFG" '"encryption": "repokey"' "config says repokey"
assert_contains "$CFG" '"hash": "hmac-sha256"' "config says chunk ids are HMAC-SHA256"
assert_not_contains "$CFG" '"seed"' "config does not reveal the chunker seed"
assert_eq 1 "$(ls "$COFFER_REPO/keys" | wc -l)" "one key object under keys/"

section "backup and restore"
backup_set -p "$POLICY"
SET1=$SET
snapshot "$ASTERDRIVE_ROOT" "$T/snap1.json"
restore_compare "encrypted set 1" "$SET1" "$T/snap1.json" -p "$POLICY"
COFFER_REPO=$T/plain backup_set -p "$POLICY"
expect_ok "verify --read-data" cf verify -p "$POLICY" --read-data
expect_ok "check --read-data" cf check -p "$POLICY" --read-data

section "the storage holds no plaintext"
# 64 bytes from the middle of the largest uploaded file: the unencrypted
# repository holds them verbatim (stored raw, incompressible), the
# encrypted one must not.
BIG=$(find "$ASTERDRIVE_ROOT/data/uploads" -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
has_bytes() {
    "$PY" - "$BIG" "$1" <<'PYEOF'
import os, sys
data = open(sys.argv[1], "rb").read()
needle = data[len(data) // 2: len(data) // 2 + 64]
found = 0
for d, _, fs in os.walk(sys.argv[2]):
    for f in fs:
        if needle in open(os.path.join(d, f), "rb").read():
            found += 1
print(found)
PYEOF
}
assert_gt "$(has_bytes "$T/plain")" 0 "the unencrypted repository holds file bytes verbatim (the probe works)"
assert_eq 0 "$(has_bytes "$COFFER_REPO")" "the encrypted repository holds no file bytes verbatim"
assert_eq 0 "$(grep -rl 'config.toml' "$COFFER_REPO" | wc -l)" "no object names a file in clear"

section "wrong passphrase: clear error, nothing written"
BEFORE=$(tree_state "$COFFER_REPO")
for cmd in "sets" "backup" "verify" "check" "prune" "forget --keep-last 1" "key list" \
    "restore --set latest --to $T/never"; do
    COFFER_PASSPHRASE="not it" expect_rc 1 "$cmd with a wrong passphrase fails" cf $cmd -p "$POLICY"
    assert_contains "$ERR" "wrong passphrase for repository at target 'primary' ($COFFER_REPO)" \
        "$cmd: the error says wrong passphrase and names the repository"
done
assert_absent "$T/never" "restore with a wrong passphrase created nothing"
assert_eq "$BEFORE" "$(tree_state "$COFFER_REPO")" "the repository is byte for byte unchanged (no lock, no object)"
expect_rc 1 "no passphrase at all fails, naming the variable" env -u COFFER_PASSPHRASE "$COFFER" --no-progress sets -p "$POLICY"
assert_contains "$ERR" "COFFER_PASSPHRASE is not set"

section "passphrase_file, passphrase_command, passphrase_env"
printf '%s\n' "$COFFER_PASSPHRASE" >"$T/pass"
chmod 600 "$T/pass"
policy_with_target_keys "$T/pfile.yaml" "passphrase_file: $T/pass"
policy_with_target_keys "$T/pcmd.yaml" "passphrase_command: cat $T/pass"
policy_with_target_keys "$T/penv.yaml" "passphrase_env: MY_PASS"
env -u COFFER_PASSPHRASE "$COFFER" --no-progress sets -p "$T/pfile.yaml" >/dev/null 2>&1 &&
    pass "sets with passphrase_file (trailing newline dropped)" || fail "sets with passphrase_file"
env -u COFFER_PASSPHRASE "$COFFER" --no-progress sets -p "$T/pcmd.yaml" >/dev/null 2>&1 &&
    pass "sets with passphrase_command" || fail "sets with passphrase_command"
env -u COFFER_PASSPHRASE MY_PASS="$COFFER_PASSPHRASE" "$COFFER" --no-progress sets -p "$T/penv.yaml" >/dev/null 2>&1 &&
    pass "sets with passphrase_env" || fail "sets with passphrase_env"
policy_with_target_keys "$T/pfail.yaml" "passphrase_command: exit 7"
expect_rc 1 "a failing passphrase_command is reported" cf sets -p "$T/pfail.yaml"
assert_contains "$ERR" "exit status 7"
policy_with_target_keys "$T/plain-text.yaml" "passphrase: hunter2"
expect_rc 2 "a passphrase written in the policy is refused" cf policy check "$T/plain-text.yaml"
assert_contains "$ERR" "secrets never go into a policy"
assert_not_contains "$ERR" "hunter2" "the refusal does not repeat the secret"
policy_with_target_keys "$T/two.yaml" "passphrase_file: $T/pass" "passphrase_command: cat $T/pass"
expect_rc 2 "two passphrase sources are refused" cf policy check "$T/two.yaml"
assert_contains "$ERR" "give one passphrase source"

section "keys"
expect_ok "key list" cf key list -p "$POLICY"
assert_eq 1 "$(printf '%s\n' "$OUT" | grep -c '(in use)')" "key list marks the key in use"
KEY1=$(printf '%s\n' "$OUT" | awk '/in use/ {print $1}')
COFFER_NEW_PASSPHRASE="second passphrase" expect_ok "key add" cf key add -p "$POLICY"
KEY2=$(printf '%s\n' "$OUT" | awk '/added key/ {print $3}')
assert_eq 2 "$(ls "$COFFER_REPO/keys" | wc -l)" "two key objects"
COFFER_PASSPHRASE="second passphrase" expect_ok "the second passphrase opens the repository" cf sets -p "$POLICY"
expect_rc 1 "key add without a new passphrase fails" env -u COFFER_NEW_PASSPHRASE "$COFFER" --no-progress key add -p "$POLICY"
assert_contains "$ERR" "COFFER_NEW_PASSPHRASE"
expect_rc 1 "removing the key in use is refused" cf key remove -p "$POLICY" "$KEY1"
assert_contains "$ERR" "key passwd"
printf 'third passphrase\n' >"$T/newpass"
chmod 600 "$T/newpass"
expect_ok "key passwd (new passphrase from a file)" cf key passwd -p "$POLICY" --new-passphrase-file "$T/newpass"
expect_rc 1 "the old passphrase no longer opens it" cf sets -p "$POLICY"
export COFFER_PASSPHRASE="third passphrase"
expect_ok "the new passphrase opens it" cf sets -p "$POLICY"
expect_ok "key remove ID (a prefix) of the other key" cf key remove -p "$POLICY" "${KEY2:0:10}"
expect_ok "key list --json" cf key list -p "$POLICY" --json
assert_eq 1 "$(json_get "$OUT" 'len(j)')" "one key left"
expect_rc 1 "removing the only key is refused" cf key remove -p "$POLICY" "$(json_get "$OUT" 'j[0]["id"]')"
assert_eq 1 "$(ls "$COFFER_REPO/keys" | wc -l)" "the key is still there"
restore_compare "after key changes" "$SET1" "$T/snap1.json" -p "$POLICY"
COFFER_REPO=$T/plain expect_rc 1 "key list on an unencrypted repository says so" cf key list -p "$POLICY"
assert_contains "$ERR" "not encrypted"

section "a tampered config is refused"
cp -a "$COFFER_REPO" "$T/tampered"
"$PY" - "$T/tampered/config" <<'PYEOF'
import hashlib, sys
p = sys.argv[1]
b = open(p, "rb").read()
body = b[8:-32].replace(b'"level": 3', b'"level": 4')
assert body != b[8:-32]
hdr = b[:8]
open(p, "wb").write(hdr + body + hashlib.sha256(hdr + body).digest())
PYEOF
COFFER_REPO=$T/tampered expect_rc 1 "open with a modified config fails" cf sets -p "$POLICY"
assert_contains "$ERR" "config does not match the repository key"
cp "$T/plain/config" "$T/tampered/config"
COFFER_REPO=$T/tampered expect_rc 1 "a config swapped for an unencrypted one is refused" cf sets -p "$POLICY"
assert_contains "$ERR" "config says unencrypted, but keys/ holds"

section "copy between repositories with different keys"
two_target_policy "$T/multi.yaml" "passphrase_env: SECOND_PASS"
export COFFER_REPO2=$T/second SECOND_PASS="another repository's passphrase"
expect_ok "init second target (encrypted, its own passphrase)" cf init -p "$T/multi.yaml" --target second
mutate_deployment "$ASTERDRIVE_ROOT" --percent 3 --seed 22
backup_set -p "$T/multi.yaml" --target primary
SET2=$SET
snapshot "$ASTERDRIVE_ROOT" "$T/snap2.json"
expect_ok "copy --set all primary -> second" cf copy -p "$T/multi.yaml" --from primary --to second --set all
expect_ok "check --read-data on the copy" cf check -p "$T/multi.yaml" --target second --read-data
restore_compare "set 1 from the copy" "$SET1" "$T/snap1.json" -p "$T/multi.yaml" --target second
restore_compare "set 2 from the copy" "$SET2" "$T/snap2.json" -p "$T/multi.yaml" --target second
SECOND_PASS=wrong expect_rc 1 "the second target's wrong passphrase fails the copy" \
    cf copy -p "$T/multi.yaml" --from primary --to second --set all
assert_contains "$ERR" "wrong passphrase for repository at target 'second'"

finish
