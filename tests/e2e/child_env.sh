#!/usr/bin/env bash
# The environment of the policy's commands: stop, start and validate read
# their own /proc/PID/environ and argv during a real backup, a restore to
# another root and an in-place restore. coffer's environment holds the
# repository passphrase (COFFER_PASSPHRASE and the target's passphrase_env),
# a *_PASSWORD variable, a URL and a conninfo string with a password and
# S3 style secrets: none may reach a command, an argv, a log line or an
# error message. What the commands need (PATH, HOME, LANG, TZ, the
# operator's ASTERDRIVE_* variables, URLs without a password, and for
# validate COFFER_RESTORE_ROOT/COFFER_SET_ID/COFFER_POLICY_ROOT) must.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env

rnd() { head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
# Distinct random values: any of them found in a child or an output is a leak.
S_PASSPHRASE="cp-$(rnd)"
S_KEYPHRASE="rk-$(rnd)"
S_DBPW="pw-$(rnd)"
S_URLPW="url-$(rnd)"
S_DSNPW="dsn-$(rnd)"
S_AWS="aws-$(rnd)"
S_TOKEN="tok-$(rnd)"
SECRETS=("$S_PASSPHRASE" "$S_KEYPHRASE" "$S_DBPW" "$S_URLPW" "$S_DSNPW" "$S_AWS" "$S_TOKEN")
SECRET_NAMES=(COFFER_PASSPHRASE REPO_KEYPHRASE APP_DB_PASSWORD APP_DATABASE_URL APP_DSN
    AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN GITHUB_TOKEN)
export COFFER_PASSPHRASE=$S_PASSPHRASE
export REPO_KEYPHRASE=$S_KEYPHRASE            # named by the policy: passphrase_env
export APP_DB_PASSWORD=$S_DBPW                # *_PASSWORD
export APP_DATABASE_URL="postgres://app:$S_URLPW@db.example:5432/app" # URL with a password
export APP_DSN="host=db.example user=app password=$S_DSNPW"
export AWS_SECRET_ACCESS_KEY=$S_AWS
export AWS_SESSION_TOKEN=$S_TOKEN
export GITHUB_TOKEN=$S_TOKEN
# What commands legitimately use.
export LANG=C.UTF-8 TZ=Europe/Berlin
export ASTERDRIVE_MODE=maintenance-test
export APP_PUBLIC_URL=https://drive.example.org/share
export APP_USER_URL=https://operator@status.example.org/
export PGPASSFILE=/nonexistent/.pgpass        # a path, not a secret

# coffer runs in exactly this environment (env -i), so what a command gets
# is compared with what it should get, name by name.
BASE_NAMES=(PATH HOME LANG TZ ASTERDRIVE_ROOT ASTERDRIVE_MODE COFFER_REPO APP_PUBLIC_URL
    APP_USER_URL PGPASSFILE)
# A sanitizer build's settings pass through like any operator variable.
[ -n "${ASAN_OPTIONS:-}" ] && BASE_NAMES+=(ASAN_OPTIONS)
[ -n "${UBSAN_OPTIONS:-}" ] && BASE_NAMES+=(UBSAN_OPTIONS)
cfx() {
    local a=() n
    for n in "${BASE_NAMES[@]}" "${SECRET_NAMES[@]}"; do a+=("$n=${!n}"); done
    [ -n "${FAIL_VALIDATE:-}" ] && a+=("FAIL_VALIDATE=$FAIL_VALIDATE")
    env -i "${a[@]}" "$COFFER" --no-progress "$@"
}

# Each command copies its environment and argv to $T/env/<what>.<pid>.
mkdir -p "$T/env"
cat >"$T/dump-env.sh" <<EOF
what=\$1
tr '\\0' '\\n' </proc/\$\$/environ >"$T/env/\$what.\$\$"
tr '\\0' ' ' </proc/\$\$/cmdline >"$T/env/\$what.\$\$.argv"
if [ "\$what" = validate ] && [ -n "\${FAIL_VALIDATE:-}" ]; then
    echo "validate: failing on purpose" >&2
    exit 4
fi
exit 0
EOF
cat >"$T/policy.yaml" <<EOF
version: 1
name: childenv
root: \${ASTERDRIVE_ROOT}
consistency:
  mode: maintenance
  stop: sh $T/dump-env.sh stop
  start: sh $T/dump-env.sh start
targets:
  - name: primary
    location: \${COFFER_REPO}
    passphrase_env: REPO_KEYPHRASE
components:
  - name: config
    type: files
    paths: [data/config.toml]
    required: [data/config.toml]
  - name: database
    type: database
    driver: sqlite
    path: data/asterdrive.db
  - name: data
    type: files
    paths: [data/]
    exclude: [data/.tmp, data/.uploads]
validate:
  - name: envdump
    run: sh $T/dump-env.sh validate
  - name: doctor
    run: $ASTERDRIVE_DOCTOR
EOF
P=$T/policy.yaml
ALL_OUTPUT=$T/outputs
: >"$ALL_OUTPUT"
keep_output() { { printf '%s\n' "$OUT"; printf '%s\n' "$ERR"; } >>"$ALL_OUTPUT"; }

names_of() { cut -d= -f1 "$1" | sort | tr '\n' ' '; }
# exact_names FILE WHAT EXTRA...: the names in FILE, but those the shell
# itself adds (PWD, OLDPWD, SHLVL, _), are BASE_NAMES and EXTRA exactly.
exact_names() {
    local f=$1 what=$2; shift 2
    local want got
    want=$(printf '%s\n' "${BASE_NAMES[@]}" "$@" | sort | tr '\n' ' ')
    got=$(cut -d= -f1 "$f" | grep -vxE 'PWD|OLDPWD|SHLVL|_' | sort | tr '\n' ' ')
    assert_eq "$want" "$got" "$what: exactly the operator's variables$( [ $# -gt 0 ] && echo " and $*")"
}
# check_child FILE WHAT: no secret name or value in FILE (an environ dump)
# nor in its argv; the needed variables are there with their values.
check_child() {
    local f=$1 what=$2 n s
    note "$what received: $(names_of "$f")"
    for n in "${SECRET_NAMES[@]}"; do
        if grep -q "^$n=" "$f"; then fail "$what: $n reached the command"; fi
    done
    for s in "${SECRETS[@]}"; do
        if grep -qF -- "$s" "$f" "$f.argv"; then fail "$what: a secret value reached the command ($s)"; fi
    done
    if grep -qiE '^[^=]*(password|passphrase|_secret|_token|_pwd)[^=]*=' "$f"; then
        fail "$what: a secret-named variable reached the command: $(grep -iE '^[^=]*(password|passphrase|_secret|_token|_pwd)' "$f" | cut -d= -f1)"
    fi
    assert_eq "$PATH" "$(sed -n 's/^PATH=//p' "$f")" "$what: PATH kept"
    assert_eq "$HOME" "$(sed -n 's/^HOME=//p' "$f")" "$what: HOME kept"
    assert_eq "C.UTF-8" "$(sed -n 's/^LANG=//p' "$f")" "$what: LANG kept"
    assert_eq "Europe/Berlin" "$(sed -n 's/^TZ=//p' "$f")" "$what: TZ kept"
    assert_eq "maintenance-test" "$(sed -n 's/^ASTERDRIVE_MODE=//p' "$f")" "$what: ASTERDRIVE_MODE kept"
    assert_eq "$ASTERDRIVE_ROOT" "$(sed -n 's/^ASTERDRIVE_ROOT=//p' "$f")" "$what: ASTERDRIVE_ROOT kept"
    assert_eq "$APP_PUBLIC_URL" "$(sed -n 's/^APP_PUBLIC_URL=//p' "$f")" "$what: a URL without password kept"
    assert_eq "$APP_USER_URL" "$(sed -n 's/^APP_USER_URL=//p' "$f")" "$what: a URL with a user but no password kept"
    assert_eq "$PGPASSFILE" "$(sed -n 's/^PGPASSFILE=//p' "$f")" "$what: PGPASSFILE (a path) kept"
}
# one_dump WHAT: the single new dump of WHAT since the last clear.
dumps() { find "$T/env" -maxdepth 1 -name "$1.*" ! -name '*.argv' | sort; }
one_dump() {
    local files
    files=$(dumps "$1")
    if [ "$(printf '%s' "$files" | grep -c .)" -ne 1 ]; then
        fail "$1: expected one environment dump, found: $(printf '%s' "$files" | tr '\n' ' ')"
        return 1
    fi
    DUMP=$files
}

section "backup: stop and start commands"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 4 --seed 41
expect_ok "init with the passphrase from passphrase_env" cfx init -p "$P" || die "init failed"
keep_output
expect_ok "backup with stop/start commands" cfx -v backup -p "$P" || die "backup failed"
keep_output
SET=$(last_line "$OUT")
assert_match "$SET" "$SETID_RE" "backup printed the set id"
for w in stop start; do
    one_dump "$w" && check_child "$DUMP" "backup $w" && exact_names "$DUMP" "backup $w"
done
assert_eq "" "$(dumps validate)" "no validate command during a backup"

section "restore to another root: validate commands"
rm -f "$T"/env/*
expect_ok "restore --to runs validate" cfx -v restore -p "$P" --set "$SET" --to "$T/R1" || die "restore failed"
keep_output
if one_dump validate; then
    check_child "$DUMP" "restore validate"
    exact_names "$DUMP" "restore validate" COFFER_DB_DATABASE_PATH COFFER_DB_DATABASE_URL COFFER_POLICY_ROOT COFFER_RESTORE_ROOT COFFER_SET_ID
    assert_eq "$T/R1/data/asterdrive.db" "$(sed -n 's/^COFFER_DB_DATABASE_PATH=//p' "$DUMP")" "validate: COFFER_DB_DATABASE_PATH is the restored database, not the production one"
    assert_eq "sqlite://$T/R1/data/asterdrive.db" "$(sed -n 's/^COFFER_DB_DATABASE_URL=//p' "$DUMP")" "validate: COFFER_DB_DATABASE_URL names the restored database"
    assert_eq "$T/R1" "$(sed -n 's/^COFFER_RESTORE_ROOT=//p' "$DUMP")" "validate: COFFER_RESTORE_ROOT is the restore root"
    assert_eq "$SET" "$(sed -n 's/^COFFER_SET_ID=//p' "$DUMP")" "validate: COFFER_SET_ID is the set"
    assert_eq "$ASTERDRIVE_ROOT" "$(sed -n 's/^COFFER_POLICY_ROOT=//p' "$DUMP")" "validate: COFFER_POLICY_ROOT is the policy root"
fi
assert_eq "" "$(dumps stop)$(dumps start)" "no stop/start for a restore to another root"

section "in-place restore: stop, start, validate"
rm -f "$T"/env/*
expect_ok "restore --in-place" cfx -v restore -p "$P" --set "$SET" --in-place
keep_output
for w in stop start; do
    one_dump "$w" && check_child "$DUMP" "in-place restore $w" && exact_names "$DUMP" "in-place restore $w"
done
one_dump validate && check_child "$DUMP" "in-place restore validate" &&
    exact_names "$DUMP" "in-place restore validate" COFFER_DB_DATABASE_PATH COFFER_DB_DATABASE_URL COFFER_POLICY_ROOT COFFER_RESTORE_ROOT COFFER_SET_ID
one_dump validate && assert_eq "$ASTERDRIVE_ROOT" "$(sed -n 's/^COFFER_RESTORE_ROOT=//p' "$DUMP")" \
    "in-place validate: COFFER_RESTORE_ROOT is the policy root"

section "a failing validate command"
rm -f "$T"/env/*
FAIL_VALIDATE=1 expect_rc 3 "a failing validate command is reported" \
    cfx -v restore -p "$P" --set "$SET" --to "$T/R2"
keep_output
assert_imatch "$ERR" "validate 'envdump'.*exit status 4" "the failure is named"
one_dump validate && check_child "$DUMP" "failing validate" &&
    exact_names "$DUMP" "failing validate" COFFER_DB_DATABASE_PATH COFFER_DB_DATABASE_URL COFFER_POLICY_ROOT COFFER_RESTORE_ROOT COFFER_SET_ID FAIL_VALIDATE
assert_eq "1" "$(sed -n 's/^FAIL_VALIDATE=//p' "$DUMP")" "an operator variable reaches the command"

section "no secret in coffer's own output"
for s in "${SECRETS[@]}"; do
    if grep -qF -- "$s" "$ALL_OUTPUT"; then fail "a secret value appears in coffer's output ($s)"; fi
done
pass "checked $(wc -l <"$ALL_OUTPUT") lines of coffer's stdout/stderr (-v) for the secret values"
if grep -rqF -- "$S_KEYPHRASE" "$COFFER_REPO"; then fail "the passphrase is stored in the repository"; else pass "the passphrase is not in the repository"; fi

finish
