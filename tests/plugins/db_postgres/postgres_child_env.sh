#!/usr/bin/env bash
# database "postgres": what the children see, against a real PostgreSQL 15.
# pg_dump and pg_restore are wrappers in pg_bin_dir that copy their own
# /proc/PID/environ and argv, the mode and content of the password file
# PGPASSFILE names, then exec the real program; stop/start/validate commands
# copy their environment too. coffer's environment holds the password
# (under a name only the policy says is secret, and as PGPASSWORD), the
# repository passphrase, a *_PASSWORD variable and the URL with the
# password. Every execve of coffer and its descendants is also
# recorded with strace (argv and environment). Checked, for a backup and a
# restore:
#   - no child has a password in its environment or argv; pg_dump and
#     pg_restore have PGPASSFILE, a 0600 file holding exactly the password,
#     gone when coffer exits;
#   - with the password only in the policy's URL, the same;
#   - a failing pg_dump whose stderr repeats the URL with the password, and
#     a wrong password in the URL: the error and log lines never show it.
. "$(dirname "$0")/../../e2e/lib.sh"
require_coffer

PGT=$T/pg
trap '_rc=$?; "$TOOLS/pg_server.sh" stop "$PGT" >/dev/null 2>&1; (exit $_rc); _cleanup' EXIT
"$TOOLS/pg_server.sh" start "$PGT" || die "cannot start PostgreSQL"
# shellcheck disable=SC1091
. "$PGT/pg.env"
SQL=$COFFER_SRC/tests/plugins/db_postgres/asterdrive_pg.sql
psql_db() { local db=$1; shift; PGPASSWORD=$PG_PASSWORD "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$db" "$@"; }
val() { psql_db "$1" -Atc "$2"; }
pwurl() { echo "postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$1"; }

# The secrets in coffer's environment.
export PGCRED=$PG_PASSWORD           # secret only because the policy names it (password_env)
export PGPASSWORD=$PG_PASSWORD       # libpq's own variable
export APP_DB_PASSWORD=$PG_PASSWORD
export APP_DATABASE_URL; APP_DATABASE_URL=$(pwurl asterdrive)
export COFFER_PASSPHRASE
SECRETS=("$PG_PASSWORD" "$COFFER_PASSPHRASE")
SECRET_NAMES=(PGCRED PGPASSWORD APP_DB_PASSWORD APP_DATABASE_URL COFFER_PASSPHRASE)
export LANG=C.UTF-8 TZ=UTC ASTERDRIVE_MODE=childenv-test
# coffer's private temporary directory (where the password file lives) goes here.
export TMPDIR=$T/tmp
mkdir -p "$TMPDIR"

# Wrappers: everything they learn goes to $LOG/<tool>.<pid>.*
LOG=$T/children
mkdir -p "$LOG" "$T/pgbin"
PW_HASH=$(printf '*:*:*:*:%s\n' "$PG_PASSWORD" | sha256sum | cut -c1-64)
for tool in pg_dump pg_restore; do
    cat >"$T/pgbin/$tool" <<EOF
#!/bin/bash
b=$LOG/$tool.\$\$
tr '\\0' '\\n' </proc/\$\$/environ >"\$b.env"
tr '\\0' '\\n' </proc/\$\$/cmdline >"\$b.argv"
pf=\$(sed -n 's/^PGPASSFILE=//p' "\$b.env")
if [ -n "\$pf" ]; then
    echo "\$pf" >"\$b.pfpath"
    stat -c '%a' "\$pf" >"\$b.pfmode"
    if [ "\$(sha256sum <"\$pf" | cut -c1-64)" = "$PW_HASH" ]; then echo yes; else echo no; fi >"\$b.pfok"
fi
case " \$* " in *" --version "*) ;; *)
    if [ -e "$T/fail-$tool" ]; then
        echo "$tool: error: connection to server failed: could not connect to $(pwurl asterdrive) (password=$PG_PASSWORD)" >&2
        exit 1
    fi
esac
exec "$PG_BIN/$tool" "\$@"
EOF
    chmod 755 "$T/pgbin/$tool"
done
cat >"$T/dump-env.sh" <<EOF
tr '\\0' '\\n' </proc/\$\$/environ >"$LOG/cmd-\$1.\$\$.env"
tr '\\0' '\\n' </proc/\$\$/cmdline >"$LOG/cmd-\$1.\$\$.argv"
EOF

# policy OUT URL [EXTRA OPTION LINE]
policy() {
    cat >"$1" <<EOF
version: 1
name: pgchildenv
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
    driver: postgres
    url: $2
    pg_bin_dir: $T/pgbin
${3:+    $3}
validate:
  - name: envdump
    run: sh $T/dump-env.sh validate
EOF
}
# pcf ARGS...: coffer -v; with strace, every execve of it and its
# descendants (argv and environment) in $T/trace.N.
STRACE=0
if strace -f -qq -o /dev/null -e trace=execve true 2>/dev/null; then STRACE=1; else
    skip "strace cannot trace here: execve records left out, wrapper checks only"
fi
TRACES=0
pcf() {
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
# check_trace WHAT: no execve after coffer's own (line 1, whose environment
# holds the secrets) carries a secret in its argv or environment.
check_trace() {
    [ "$STRACE" = 1 ] || return 0
    local tr=$T/trace.$TRACES s leak=0 progs
    progs=$(tail -n +2 "$tr" | grep -o '^[0-9]* *execve("[^"]*"' | sed 's/.*execve("//; s/"$//' | xargs -rn1 basename -- | sort -u | tr '\n' ' ')
    for s in "${SECRETS[@]}"; do
        if tail -n +2 "$tr" | grep -qF -- "$s"; then fail "$1: a secret is in some child's argv or environment (execve record)"; leak=1; fi
    done
    [ "$leak" = 0 ] && pass "$1: $(tail -n +2 "$tr" | grep -c '^[0-9]* *execve("') execve records after coffer's own carry no secret (programs: $progs)"
}
OUTPUTS=$T/outputs
: >"$OUTPUTS"
keep_output() { { printf '%s\n' "$OUT"; printf '%s\n' "$ERR"; } >>"$OUTPUTS"; }
names_of() { cut -d= -f1 "$1" | sort | tr '\n' ' '; }

# check_env FILE WHAT: no secret name or value in the environment FILE and
# its argv; the operator's variables are kept.
check_env() {
    local f=$1 what=$2 n s leak=0
    note "$what received: $(names_of "$f")"
    for n in "${SECRET_NAMES[@]}"; do
        if grep -q "^$n=" "$f"; then fail "$what: $n reached it"; leak=1; fi
    done
    for s in "${SECRETS[@]}"; do
        if grep -qF -- "$s" "$f"; then fail "$what: a secret value is in its environment"; leak=1; fi
        if grep -qF -- "$s" "${f%.env}.argv"; then fail "$what: a secret value is in its argv"; leak=1; fi
    done
    [ "$leak" = 0 ] && pass "$what: no password, passphrase or URL with a password in environment or argv"
    assert_eq "C.UTF-8 UTC childenv-test" \
        "$(sed -n 's/^LANG=//p' "$f") $(sed -n 's/^TZ=//p' "$f") $(sed -n 's/^ASTERDRIVE_MODE=//p' "$f")" \
        "$what: LANG, TZ and the operator's variable kept"
}
# check_tool TOOL WHAT: every recorded run of TOOL (but --version) had a
# PGPASSFILE of mode 600 holding the password, now removed.
check_tool() {
    local tool=$1 what=$2 b seen=0
    for b in "$LOG/$tool".*.argv; do
        [ -f "$b" ] || continue
        b=${b%.argv}
        check_env "$b.env" "$what ($tool $(sed -n 3p "$b.argv"))"
        grep -qx -- --version "$b.argv" && continue
        seen=1
        if [ ! -f "$b.pfpath" ]; then fail "$what: $tool had no PGPASSFILE"; continue; fi
        assert_eq 600 "$(cat "$b.pfmode")" "$what: $tool's password file is mode 0600"
        assert_eq yes "$(cat "$b.pfok")" "$what: $tool's password file holds the password"
        assert_absent "$(cat "$b.pfpath")" "$what: $tool's password file is gone afterwards"
        assert_contains "$(cat "$b.argv")" "--no-password" "$what: $tool runs with --no-password"
    done
    [ "$seen" = 1 ] || fail "$what: $tool did not run"
}
check_cmds() {
    local f
    for f in "$LOG"/cmd-*.env; do
        [ -f "$f" ] || continue
        check_env "$f" "$1 ($(basename "$f" | cut -d. -f1))"
    done
}
clear_log() { rm -f "$LOG"/*; }

section "database, deployment, repository"
psql_db asterdrive -v scale=1 -f "$SQL" >/dev/null || die "cannot load $SQL"
export ASTERDRIVE_ROOT=$T/live COFFER_REPO=$T/repo
mkdir -p "$ASTERDRIVE_ROOT/data"
echo '[auth]' >"$ASTERDRIVE_ROOT/data/config.toml"
ROWS=$(val asterdrive "select count(*) from files")
policy "$T/env.yaml" "$PG_URL" "password_env: PGCRED"
expect_ok "init" pcf init -p "$T/env.yaml" || die "init failed"

section "password from password_env: backup"
clear_log
expect_ok "backup" pcf backup -p "$T/env.yaml" || die "backup failed"
keep_output
check_trace "backup"
SET=$(last_line "$OUT")
check_tool pg_dump "backup"
check_cmds "backup"
[ -f "$(ls "$LOG"/cmd-stop.*.env 2>/dev/null | head -1)" ] && pass "the stop command was observed" || fail "no stop command observed"

section "password from password_env: restore into another database"
clear_log
expect_ok "restore to asterdrive_check" pcf restore -p "$T/env.yaml" --set "$SET" --to "$T/R1" \
    --map "database=postgres://$PG_USER@127.0.0.1:$PG_PORT/asterdrive_check"
keep_output
check_trace "restore"
assert_eq "$ROWS" "$(val asterdrive_check "select count(*) from files")" "restored rows"
check_tool pg_restore "restore"
check_cmds "restore"
[ -f "$(ls "$LOG"/cmd-validate.*.env 2>/dev/null | head -1)" ] && pass "the validate command was observed" || fail "no validate command observed"

section "password only in the policy's URL (coffer has no PGPASSWORD)"
clear_log
unset PGPASSWORD PGCRED
policy "$T/url.yaml" "\${APP_DATABASE_URL}"
expect_ok "backup with the password in the URL" pcf backup -p "$T/url.yaml" || die "backup failed"
keep_output
check_trace "URL backup"
SET2=$(last_line "$OUT")
check_tool pg_dump "URL backup"
check_cmds "URL backup"
clear_log
expect_ok "restore with the password in the URL" pcf restore -p "$T/url.yaml" --set "$SET2" --to "$T/R2" \
    --map "database=postgres://$PG_USER@127.0.0.1:$PG_PORT/asterdrive_check2"
keep_output
check_trace "URL restore"
check_tool pg_restore "URL restore"

section "a failing pg_dump that prints the URL with the password"
clear_log
touch "$T/fail-pg_dump"
n0=$(count_sets "$COFFER_REPO")
expect_fail_desc "the backup fails" pcf backup -p "$T/url.yaml"
keep_output
check_trace "failing backup"
assert_contains "$ERR" "could not connect to postgres://$PG_USER@127.0.0.1:$PG_PORT/asterdrive" \
    "the error quotes pg_dump's message, URL without the password"
assert_not_contains "$ERR$OUT" "$PG_PASSWORD" "the password is not in the error or any log line"
assert_eq "$n0" "$(count_sets "$COFFER_REPO")" "no set written"
check_tool pg_dump "failing backup"
rm -f "$T/fail-pg_dump"

section "a failing pg_restore that prints the URL with the password"
clear_log
touch "$T/fail-pg_restore"
expect_fail_desc "the restore fails" pcf restore -p "$T/url.yaml" --set "$SET2" --to "$T/R3" \
    --map "database=postgres://$PG_USER@127.0.0.1:$PG_PORT/asterdrive_check3"
keep_output
check_trace "failing restore"
assert_imatch "$ERR" "pg_restore.*could not connect to postgres://$PG_USER@127" "the error quotes pg_restore's message, URL without the password"
assert_not_contains "$ERR$OUT" "$PG_PASSWORD" "the password is not in the error or any log line"
check_tool pg_restore "failing restore"
rm -f "$T/fail-pg_restore"

section "a wrong password in the URL"
export APP_DATABASE_URL="postgres://$PG_USER:wrong-url-pw-4711@127.0.0.1:$PG_PORT/asterdrive"
expect_fail_desc "the backup fails" pcf backup -p "$T/url.yaml"
keep_output
assert_contains "$ERR" "password authentication failed" "the error says the password was refused"
assert_not_contains "$ERR$OUT" "wrong-url-pw-4711" "the wrong password is not echoed"

section "no secret in coffer's output or the repository"
for s in "${SECRETS[@]}"; do
    if grep -qF -- "$s" "$OUTPUTS"; then fail "a secret value appears in coffer's output"; fi
done
pass "checked $(wc -l <"$OUTPUTS") lines of coffer's stdout/stderr (-v)"
if grep -rqF -- "$PG_PASSWORD" "$COFFER_REPO"; then fail "the password is in the repository"; else pass "the password is not in the repository"; fi
assert_eq "" "$(find "$TMPDIR" -mindepth 1 | head -3)" "coffer's temporary directories are gone (no password file left)"

finish
