#!/usr/bin/env bash
# Backups while the application keeps writing: sqlite_writer.py commits
# upload transactions (object first, then blob + file rows + usage and
# reference counts) during the backups. Each restored set must be a
# transactionally consistent snapshot: integrity_check ok, doctor clean
# (objects written after the snapshot are only "untracked" warnings), the
# row counts recorded in the set equal the restored ones, and they lie
# between the counts before the writer started and after it stopped.
# Once with the shipped policy (maintenance mode, stop/start = true, i.e.
# the service keeps running) and once with the same policy in online mode.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env
DB=$ASTERDRIVE_ROOT/data/asterdrive.db

section "generate, init"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 20 --seed 21
expect_ok "init" cf init -p "$POLICY" || die "init failed"
ONLINE=$T/online.yaml
make_policy "$ONLINE" 's/^\(  mode:\) maintenance/\1 online/' '/^  stop:/d' '/^  start:/d'
expect_ok "online variant of the shipped policy is valid" cf policy check "$ONLINE"
FILES0=$(sql "$DB" 'select count(*) from files')
note "files rows before the writer: $FILES0"

section "start the writer"
"$PY" "$TOOLS/sqlite_writer.py" "$DB" --until-file "$T/stop-writer" --count-file "$T/count" \
    --sleep-ms 2 >"$T/writer.json" 2>"$T/writer.err" &
WPID=$!
bg_register "$WPID"
count() { cat "$T/count" 2>/dev/null || echo 0; }
writer_started() { [ "$(count)" -ge 20 ]; }
wait_for "the writer to commit 20 transactions" 30 writer_started || die "writer did not start: $(cat "$T/writer.err")"

declare -A SETS
for mode in maintenance online; do
    section "backup while writing ($mode)"
    p=$POLICY
    [ $mode = online ] && p=$ONLINE
    c0=$(count)
    expect_ok "backup ($mode) while the writer runs" cf backup -p "$p" --json || continue
    c1=$(count)
    SETS[$mode]=$(json_get "$OUT" 'j["set"]')
    assert_gt "$c1" "$c0" "the writer committed during the $mode backup ($c0 -> $c1 transactions)"
    sleep 0.3
done

section "stop the writer"
touch "$T/stop-writer"
wait "$WPID"
assert_eq 0 $? "writer exited cleanly"
TOTAL=$(json_get "$(cat "$T/writer.json")" 'j["transactions"]')
FILES_END=$(sql "$DB" 'select count(*) from files')
note "writer: $(cat "$T/writer.json"); files rows now: $FILES_END"
assert_eq "$((FILES0 + TOTAL))" "$FILES_END" "every writer transaction added one files row"
doctor "live deployment is doctor-clean after the writer" "$ASTERDRIVE_ROOT"

expect_ok "sets --json" cf sets -p "$POLICY" --json
SETSJSON=$OUT
for mode in maintenance online; do
    set=${SETS[$mode]:-}
    [ -n "$set" ] || { fail "no set from the $mode backup"; continue; }
    section "restore the $mode set ($set)"
    R=$T/restore-$mode
    expect_ok "restore $mode set (validate = doctor --deep passes)" \
        cf restore -p "$POLICY" --set "$set" --to "$R"
    RDB=$R/data/asterdrive.db
    assert_eq ok "$(sql "$RDB" 'pragma integrity_check')" "restored database passes integrity_check"
    assert_eq "" "$(sql "$RDB" 'pragma foreign_key_check')" "restored database passes foreign_key_check"
    doctor "doctor --deep passes on the restored $mode set (consistent snapshot)" "$R"
    n=$(sql "$RDB" 'select count(*) from files')
    assert_gt "$n" "$FILES0" "restored files rows include writer transactions"
    if [ "$n" -le "$FILES_END" ]; then pass "restored files rows ($n) <= rows at the end ($FILES_END)"
    else fail "restored files rows ($n) > rows at the end ($FILES_END)"; fi
    # Row counts the driver recorded at the snapshot (sets --json "databases").
    for t in files file_blobs users; do
        rec=$(json_get "$SETSJSON" "next((s.get('databases') or {}).get('database', {}).get('rows.$t') for s in j if s['id'] == '$set')")
        if [ "$rec" = None ]; then
            fail "sets --json records no row count for $t in set $set"
        else
            assert_eq "$rec" "$(sql "$RDB" "select count(*) from $t")" "recorded row count of $t equals the restored one"
        fi
    done
    expect_ok "verify --read-data $mode set" cf verify -p "$POLICY" --set "$set" --read-data
done

finish
