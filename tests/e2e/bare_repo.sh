#!/usr/bin/env bash
# Recovery from a bare repository: sets made with policies that hold secret
# references (a passphrase variable, a URL with user:password@ and a
# password= parameter, a command with PGPASSWORD=...), then the policy
# files deleted. `coffer --repo LOCATION` lists the sets of both policies,
# prints a recorded policy with no secret in it that `policy check` and -p
# accept, and restores a set (files and SQLite database equal to the
# original), on an unencrypted and an encrypted repository. The secrets
# are not in the manifest bytes either. Not a repository, or -p with
# --repo: refused.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env

PASS_VALUE=bare-Passphrase-4c1d
PING_PW=PingUserSecret-77
PARAM_PW=ParamSecret-91
HOOK_PW=HookSecret-35
export BARE_PASS_VAR=$PASS_VALUE
SECRETS=("$PASS_VALUE" "$PING_PW" "$PARAM_PW" "$HOOK_PW" BARE_PASS_VAR)

# policy OUT NAME REPO: the shipped policy, its target reading the
# passphrase from $BARE_PASS_VAR, with a ping URL and a hook holding secrets.
policy() {
    make_policy "$1" "s|^name: asterdrive|name: $2|" \
        "s|    location: .*|    location: $3\n    passphrase_env: BARE_PASS_VAR|"
    cat >>"$1" <<EOF
monitor:
  ping:
    success: http://hc:$PING_PW@127.0.0.1:1/ping/abc?password=$PARAM_PW&x=1
    timeout: 1
hooks:
  after: PGPASSWORD=$HOOK_PW true
EOF
}
# no_secret DESCRIPTION TEXT
no_secret() {
    local s bad=
    for s in "${SECRETS[@]}"; do
        grep -qF -- "$s" <<<"$2" && bad="$bad $s"
    done
    [ -z "$bad" ] && pass "$1: no secret in it" || fail "$1 holds:$bad"
}
# manifest_text FILE: the JSON lines of an unencrypted set manifest
manifest_text() {
    "$PY" - "$1" <<'EOF'
import subprocess, sys
b = open(sys.argv[1], "rb").read()
i = b.find(b"\x28\xb5\x2f\xfd")  # the zstd frame after the object header
sys.stdout.write(subprocess.run(["zstd", "-dcq"], input=b[i:], capture_output=True).stdout.decode())
EOF
}

section "two policies back up into one unencrypted repository"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 4 --seed 31
REPO_A=$T/repo-a
policy "$T/one.yaml" asterdrive "$REPO_A"
policy "$T/two.yaml" second "$REPO_A"
expect_ok "init (no encryption)" cf init -p "$T/one.yaml" --encryption none || die "init"
expect_ok "backup, policy one" cf backup -p "$T/one.yaml" --json || die "backup one"
SET_A=$(json_get "$OUT" 'j["set"]')
snapshot "$ASTERDRIVE_ROOT" "$T/snap-a.json"
expect_ok "backup, policy two" cf backup -p "$T/two.yaml" --json || die "backup two"
SET_A2=$(json_get "$OUT" 'j["set"]')
rm -f "$T/one.yaml" "$T/two.yaml"
unset COFFER_REPO ASTERDRIVE_ROOT ASTERDRIVE_STOP ASTERDRIVE_START

section "sets"
expect_ok "--repo sets --json, no policy file" cf --repo "$REPO_A" sets --json
assert_eq 2 "$(json_get "$OUT" 'len(j)')" "both sets listed"
assert_eq "asterdrive second" "$(json_get "$OUT" '" ".join(sorted(s["policy"] for s in j))')" "with their policies"
assert_eq "True True" "$(json_get "$OUT" '" ".join(str(s["policy_recorded"]) for s in j)')" "both record their policy"
expect_ok "--repo sets (text)" cf --repo "$REPO_A" sets
assert_contains "$OUT" "$SET_A" "text lists set one"
assert_contains "$OUT" "second" "text names policy two"
cd "$T" || die "cd"
run "$COFFER" --no-progress --repo repo-a sets --json
cd - >/dev/null || die "cd -"
assert_eq 2 "$(json_get "$OUT" 'len(j)')" "a relative --repo directory works too"

section "the record holds no secret"
SETFILE=$(find "$REPO_A/sets" -type f -name "$SET_A")
TEXT=$(manifest_text "$SETFILE")
assert_contains "$TEXT" '"policy_record"' "manifest header has policy_record"
assert_contains "$TEXT" '"restore_order":["config","database","data"]' "record has the restore order"
assert_contains "$TEXT" '"path":"data/asterdrive.db"' "record has the SQLite path relative to root"
no_secret "manifest bytes" "$TEXT"

section "policy show"
expect_ok "policy show --set" cf --repo "$REPO_A" policy show --set "$SET_A"
SHOWN=$OUT
printf '%s\n' "$SHOWN" >"$T/shown.yaml"
no_secret "policy show" "$SHOWN"
assert_contains "$SHOWN" "# passphrase_env: ..." "the left-out passphrase source is a comment"
assert_contains "$SHOWN" "success: \"http://hc@127.0.0.1:1/ping/abc?x=1\"" "the ping URL keeps its user, loses the password"
assert_contains "$SHOWN" "name: \"asterdrive\"" "the policy's name"
expect_ok "the shown policy passes policy check" cf policy check "$T/shown.yaml"
expect_ok "the shown policy works with -p" cf sets -p "$T/shown.yaml" --json
assert_eq "$SET_A" "$(json_get "$OUT" 'j[0]["id"]')" "sets -p shown.yaml finds the set"
expect_ok "policy show -p (no --repo)" cf policy show -p "$T/shown.yaml" --set "$SET_A"
assert_eq "$SHOWN" "$OUT" "policy show -p prints the same"
expect_ok "policy show --json" cf --repo "$REPO_A" policy show --set "$SET_A" --json
assert_eq second "$(json_get "$(cf --repo "$REPO_A" policy show --set "$SET_A2" --json)" 'j["policy"]')" \
    "policy show of the other set gives the other policy"
no_secret "policy show --json" "$OUT"

section "restore from the recorded policy"
expect_ok "--repo restore --set --to" cf --repo "$REPO_A" restore --set "$SET_A" --to "$T/out-a" --json
assert_eq "config database data" "$(json_get "$OUT" '" ".join(c["name"] for c in j["components"])')" \
    "components restored in the recorded order"
assert_eq True "$(json_get "$OUT" 'j["ok"]')" "the restore is ok"
assert_eq "0 0" "$(json_get "$OUT" 'str(len(j["validate"])) + " " + str(len(j["policy_checks"]))')" \
    "unencrypted repository: the recorded validate commands and checks are not run"
assert_contains "$ERR" "not encrypted" "and the restore says why"
snapshot "$T/out-a" "$T/snap-out-a.json"
compare "restored tree and SQLite database equal the original" "$T/snap-a.json" "$T/snap-out-a.json" "${RESTORE_EXCLUDES[@]}"
expect_ok "--only data" cf --repo "$REPO_A" restore --set "$SET_A" --to "$T/out-only" --only data --no-checks
assert_exists "$T/out-only/data/uploads" "--only data restored the data directory"
assert_absent "$T/out-only/data/asterdrive.db" "--only data left the database out"

section "a set made before sets recorded their policy"
# Set two's manifest rewritten without its record, as an older coffer wrote it.
"$PY" - "$(find "$REPO_A/sets" -type f -name "$SET_A2")" <<'EOF' || die "cannot rewrite the manifest"
import hashlib, json, subprocess, sys
path = sys.argv[1]
b = open(path, "rb").read()
head, body = b[:8], b[8:-32]
text = subprocess.run(["zstd", "-dcq"], input=body, capture_output=True).stdout
first, rest = text.split(b"\n", 1)
h = json.loads(first)
del h["policy_record"]
text = json.dumps(h, separators=(",", ":")).encode() + b"\n" + rest
body = subprocess.run(["zstd", "-cq"], input=text, capture_output=True, check=True).stdout
obj = head + body
open(path, "wb").write(obj + hashlib.sha256(obj).digest())
EOF
expect_ok "sets lists the old set" cf --repo "$REPO_A" sets --json
assert_eq False "$(json_get "$OUT" '[s["policy_recorded"] for s in j if s["id"] == "'"$SET_A2"'"][0]')" \
    "sets says it records no policy"
expect_rc 1 "policy show of the old set" cf --repo "$REPO_A" policy show --set "$SET_A2"
assert_contains "$ERR" "does not record its policy" "policy show says why"
expect_rc 1 "restore of the old set with its database" cf --repo "$REPO_A" restore --set "$SET_A2" --to "$T/out-old"
assert_contains "$ERR" "component 'database'" "the refusal names the database component"
assert_contains "$ERR" "--only" "and says how to restore the files"
assert_absent "$T/out-old" "nothing written"
expect_ok "restore of the old set's files components" \
    cf --repo "$REPO_A" restore --set "$SET_A2" --to "$T/out-old" --only config --only data
snapshot "$T/live" "$T/snap-live-files.json" --no-db --exclude data/asterdrive.db \
    --exclude data/asterdrive.db-wal --exclude data/asterdrive.db-shm
snapshot "$T/out-old" "$T/snap-old.json" --no-db
compare "the old set's files equal the original" "$T/snap-live-files.json" "$T/snap-old.json" \
    "${RESTORE_EXCLUDES[@]}" --no-db
expect_ok "verify -p still reads sets with a record" cf verify -p "$T/shown.yaml" --set "$SET_A"

section "encrypted repository"
export ASTERDRIVE_ROOT=$T/live ASTERDRIVE_STOP=true ASTERDRIVE_START=true
REPO_B=$T/repo-b
policy "$T/enc.yaml" asterdrive "$REPO_B"
expect_ok "init (encrypted, passphrase from \$BARE_PASS_VAR)" cf init -p "$T/enc.yaml" || die "init b"
expect_ok "backup" cf backup -p "$T/enc.yaml" --json || die "backup b"
SET_B=$(json_get "$OUT" 'j["set"]')
rm -f "$T/enc.yaml"
unset ASTERDRIVE_ROOT BARE_PASS_VAR
expect_rc 1 "wrong passphrase: exit 1" env COFFER_PASSPHRASE=wrong "$COFFER" --no-progress --repo "$REPO_B" sets
assert_contains "$ERR" "$REPO_B" "the error names the location"
export COFFER_PASSPHRASE=$PASS_VALUE
expect_ok "sets with COFFER_PASSPHRASE" cf --repo "$REPO_B" sets --json
assert_eq "$SET_B" "$(json_get "$OUT" 'j[0]["id"]')" "the encrypted set is listed"
expect_ok "policy show (encrypted)" cf --repo "$REPO_B" policy show --set latest
no_secret "policy show (encrypted)" "$OUT"
expect_ok "restore (encrypted)" cf --repo "$REPO_B" restore --set "$SET_B" --to "$T/out-b" --json
assert_eq "doctor True" "$(json_get "$OUT" '" ".join(v["name"] + " " + str(v["ok"]) for v in j["validate"])')" \
    "encrypted repository: the recorded validate command ran and passed"
assert_gt "$(json_get "$OUT" 'len(j["policy_checks"])')" 5 "and the recorded checks ran"
snapshot "$T/out-b" "$T/snap-out-b.json"
compare "encrypted: restored tree and database equal the original" "$T/snap-a.json" "$T/snap-out-b.json" "${RESTORE_EXCLUDES[@]}"
for f in $(find "$REPO_B" -type f); do
    for s in "${SECRETS[@]}"; do
        grep -qF -- "$s" "$f" && fail "$f holds $s"
    done
done
pass "no repository file of the encrypted repository holds a secret in clear"

section "refused"
mkdir -p "$T/empty"
for loc in "$T/empty" "$T/out-a" "$T/missing"; do
    expect_rc 1 "--repo $(basename "$loc"): not a repository" cf --repo "$loc" sets
    assert_contains "$ERR" "$loc" "the error names $(basename "$loc")"
    assert_error_line
done
cp "$T/shown.yaml" "$T/x.yaml"
expect_rc 2 "-p with --repo" cf --repo "$REPO_A" sets -p "$T/x.yaml"
assert_contains "$ERR" "--repo" "the refusal names --repo"
expect_rc 2 "-p with --repo (restore)" cf --repo "$REPO_A" restore -p "$T/x.yaml" --set "$SET_A" --to "$T/o"
expect_rc 2 "--repo with a command that needs -p" cf --repo "$REPO_A" verify
expect_rc 2 "--repo restore without --to" cf --repo "$REPO_A" restore --set "$SET_A"
expect_rc 2 "--repo restore --in-place" cf --repo "$REPO_A" restore --set "$SET_A" --in-place
expect_rc 1 "--repo restore of an unknown set" cf --repo "$REPO_A" restore --set 1999 --to "$T/o"
assert_absent "$T/o" "nothing written for an unknown set"
expect_rc 2 "policy show without --set" cf --repo "$REPO_A" policy show
run "$COFFER" --repo "$REPO_A" sets --help
assert_match "$(head -1 <<<"$OUT")" '^usage: coffer --repo LOCATION sets' "sets --help with --repo"
finish
