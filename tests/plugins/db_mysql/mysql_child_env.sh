#!/usr/bin/env bash
# database "mysql": what the children see, against a real MariaDB.
# The driver dumps and restores through the client library and starts no
# program; the children of a backup or restore are the policy's stop, start
# and validate commands. Every execve of coffer and its descendants is
# recorded with strace (argv and environment), and the commands copy their
# own /proc/PID/environ. coffer's environment holds the password (under a
# name only the policy says is secret, as MYSQL_PWD, in a --map URL's
# ?password_env variable), the repository passphrase, *_PASSWORD variables
# and a URL with the password. Checked:
#   - no program but the policy's commands (and what they run) is started;
#   - no child has a password in its environment or argv, the operator's
#     variables and validate's COFFER_* are there;
#   - a wrong password and a password in the URL: the error and the log
#     lines never show it.
. "$(dirname "$0")/../../e2e/lib.sh"
. "$(dirname "$0")/mysql_lib.sh"
require_coffer
mysql_start

PW=$MYSQL_TEST_PASSWORD
export MYCRED=$PW                  # secret only because the policy names it (password_env)
export APP_DB_PASSWORD=$PW
export APP_DATABASE_URL="mysql://coffer:$PW@127.0.0.1:$MYSQL_PORT/asterdrive"
export COFFER_PASSPHRASE
SECRETS=("$PW" "$COFFER_PASSPHRASE")
# ALTCRED: secret only because a --map URL names it; set for that restore only.
SECRET_NAMES=(MYCRED ALTCRED MYSQL_PWD MYSQL_TEST_PASSWORD APP_DB_PASSWORD APP_DATABASE_URL COFFER_PASSPHRASE)
export LANG=C.UTF-8 TZ=UTC ASTERDRIVE_MODE=childenv-test

LOG=$T/children
mkdir -p "$LOG"
cat >"$T/dump-env.sh" <<EOF
tr '\\0' '\\n' </proc/\$\$/environ >"$LOG/cmd-\$1.\$\$.env"
tr '\\0' '\\n' </proc/\$\$/cmdline >"$LOG/cmd-\$1.\$\$.argv"
EOF
# policy OUT URL
policy() {
    cat >"$1" <<EOF
version: 1
name: mychildenv
root: \${ASTERDRIVE_ROOT}
consistency:
  mode: maintenance
  stop: sh $T/dump-env.sh stop
  start: sh $T/dump-env.sh start
targets:
  - name: primary
    location: \${COFFER_REPO}
components:
  - name: config
    type: files
    paths: [data/config.toml]
  - name: database
    type: database
    driver: mysql
    url: $2
    password_env: MYCRED
validate:
  - name: envdump
    run: sh $T/dump-env.sh validate
EOF
}

STRACE=0
if strace -f -qq -o /dev/null -e trace=execve true 2>/dev/null; then STRACE=1; else
    skip "strace cannot trace here: execve records left out, /proc environ checks only"
fi
TRACES=0
# tcf ARGS...: coffer -v, every execve of it and its descendants in $T/trace.N
tcf() {
    TRACES=$((TRACES + 1))
    if [ "$STRACE" = 1 ]; then
        # LeakSanitizer cannot run under ptrace (a sanitizer build's leaks
        # are checked by the other tests).
        ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -qq -v -s 65536 -e trace=execve -o "$T/trace.$TRACES" \
            "$COFFER" --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" --no-progress -v "$@"
    else
        "$COFFER" --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" --no-progress -v "$@"
    fi
}
OUTPUTS=$T/outputs
: >"$OUTPUTS"
keep_output() { { printf '%s\n' "$OUT"; printf '%s\n' "$ERR"; } >>"$OUTPUTS"; }
names_of() { cut -d= -f1 "$1" | sort | tr '\n' ' '; }

# check_trace WHAT: the last trace's programs, after coffer's own execve.
check_trace() {
    [ "$STRACE" = 1 ] || return 0
    local tr=$T/trace.$TRACES progs s
    # Line 1 is coffer itself (its environment holds the secrets).
    progs=$(tail -n +2 "$tr" | grep -o '^[0-9]* *execve("[^"]*"' | sed 's/.*execve("//; s/"$//' | xargs -rn1 basename -- | sort -u | tr '\n' ' ')
    note "$1: programs started: ${progs:-none}"
    if printf '%s' "$progs" | grep -qE 'mysql|mariadb|dump'; then fail "$1: a database program was started: $progs"; else
        pass "$1: no database client program started (only: ${progs:-none})"
    fi
    for s in "${SECRETS[@]}"; do
        if tail -n +2 "$tr" | grep -qF -- "$s"; then fail "$1: a secret is in some child's argv or environment (execve record)"; fi
    done
    pass "$1: $(tail -n +2 "$tr" | grep -c '^[0-9]* *execve("') execve records after coffer's own carry no secret"
}
# check_cmds WHAT: every command's /proc environ and argv.
check_cmds() {
    local f n s leak seen=0
    for f in "$LOG"/cmd-*.env; do
        [ -f "$f" ] || continue
        seen=1
        local what="$1 ($(basename "$f" | cut -d. -f1))"
        note "$what received: $(names_of "$f")"
        leak=0
        for n in "${SECRET_NAMES[@]}"; do
            if grep -q "^$n=" "$f"; then fail "$what: $n reached it"; leak=1; fi
        done
        for s in "${SECRETS[@]}"; do
            if grep -qF -- "$s" "$f" "${f%.env}.argv"; then fail "$what: a secret value reached it"; leak=1; fi
        done
        [ "$leak" = 0 ] && pass "$what: no password, passphrase or URL with a password"
        assert_eq "C.UTF-8 UTC childenv-test $PATH" \
            "$(sed -n 's/^LANG=//p' "$f") $(sed -n 's/^TZ=//p' "$f") $(sed -n 's/^ASTERDRIVE_MODE=//p' "$f") $(sed -n 's/^PATH=//p' "$f")" \
            "$what: LANG, TZ, PATH and the operator's variable kept"
    done
    [ "$seen" = 1 ] || fail "$1: no command observed"
}
clear_log() { rm -f "$LOG"/*; }

section "database, deployment, repository"
load_asterdrive asterdrive 1
export ASTERDRIVE_ROOT=$T/live COFFER_REPO=$T/repo
mkdir -p "$ASTERDRIVE_ROOT/data"
echo '[auth]' >"$ASTERDRIVE_ROOT/data/config.toml"
policy "$T/p.yaml" "$(url_of asterdrive)"
expect_ok "init" tcf init -p "$T/p.yaml" || die "init failed"

section "backup"
clear_log
expect_ok "backup" tcf backup -p "$T/p.yaml" || die "backup failed"
keep_output
SET=$(last_line "$OUT")
check_trace "backup"
check_cmds "backup"
assert_eq 2 "$(ls "$LOG"/cmd-stop.*.env "$LOG"/cmd-start.*.env 2>/dev/null | wc -l)" "stop and start observed"

section "restore into another database, password from a --map URL's ?password_env"
clear_log
ALTCRED=$PW MYCRED=not-this-one expect_ok "restore to alt_target" tcf restore -p "$T/p.yaml" --set "$SET" --to "$T/R1" \
    --map "database=$(url_of alt_target)?password_env=ALTCRED"
keep_output
assert_eq "$(val asterdrive 'SELECT COUNT(*) FROM files')" "$(val alt_target 'SELECT COUNT(*) FROM files')" \
    "restored with the URL's password"
check_trace "restore"
check_cmds "restore"
f=$(ls "$LOG"/cmd-validate.*.env 2>/dev/null | head -1)
if [ -n "$f" ]; then
    assert_eq "$T/R1 $SET $ASTERDRIVE_ROOT" \
        "$(sed -n 's/^COFFER_RESTORE_ROOT=//p' "$f") $(sed -n 's/^COFFER_SET_ID=//p' "$f") $(sed -n 's/^COFFER_POLICY_ROOT=//p' "$f")" \
        "validate: COFFER_RESTORE_ROOT, COFFER_SET_ID, COFFER_POLICY_ROOT"
else
    fail "no validate command observed"
fi

section "in-place restore"
clear_log
expect_ok "restore --in-place" tcf restore -p "$T/p.yaml" --set "$SET" --in-place
keep_output
check_trace "in-place restore"
check_cmds "in-place restore"
assert_eq 3 "$(ls "$LOG"/cmd-*.env 2>/dev/null | wc -l)" "stop, start and validate observed"

section "a wrong password"
MYCRED=wrong-my-pw-4711 expect_rc 1 "backup with a wrong password fails" tcf backup -p "$T/p.yaml"
keep_output
assert_contains "$ERR" "Access denied" "the error says access was denied"
assert_not_contains "$ERR$OUT" "wrong-my-pw-4711" "the password is not in the error or any log line"
[ "$STRACE" = 1 ] && { grep -qF wrong-my-pw-4711 <(tail -n +2 "$T/trace.$TRACES") && fail "the wrong password reached a child" || pass "the wrong password reached no child"; }

section "a password in the URL"
policy "$T/url.yaml" "\${APP_DATABASE_URL}"
expect_fail_desc "a password in the URL is refused" tcf backup -p "$T/url.yaml"
keep_output
assert_contains "$ERR" "password in the URL is refused" "the refusal says why"
assert_not_contains "$ERR$OUT" "$PW" "the password is not in the error or any log line"

section "no secret in coffer's output or the repository"
for s in "${SECRETS[@]}"; do
    if grep -qF -- "$s" "$OUTPUTS"; then fail "a secret value appears in coffer's output"; fi
done
pass "checked $(wc -l <"$OUTPUTS") lines of coffer's stdout/stderr (-v)"
if grep -rqF -- "$PW" "$COFFER_REPO"; then fail "the password is in the repository"; else pass "the password is not in the repository"; fi

finish
