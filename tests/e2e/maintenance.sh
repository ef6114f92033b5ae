#!/usr/bin/env bash
# Maintenance mode: the stop command runs before the capture and the start
# command after it, always: also when the stop command fails (no set is
# written) and when the backup is interrupted with SIGINT (no set is
# written, the next backup works).
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env

# stop.sh: log "stop", leave a marker inside data/ (it must be in the set:
# the capture happens while stopped). start.sh: log "start", remove it.
cat >"$T/stop.sh" <<EOF
echo "stop \$(date +%s.%N)" >>"$T/order"
echo "service stopped" >"\$ASTERDRIVE_ROOT/data/maintenance-marker"
EOF
cat >"$T/start.sh" <<EOF
echo "start \$(date +%s.%N)" >>"$T/order"
rm -f "\$ASTERDRIVE_ROOT/data/maintenance-marker"
EOF
cat >"$T/stop-fails.sh" <<EOF
echo "stop-fails \$(date +%s.%N)" >>"$T/order"
echo "cannot stop asterdrive: unit is masked" >&2
exit 1
EOF
order_words() { awk '{print $1}' "$T/order" 2>/dev/null | tr '\n' ' ' | sed 's/ $//'; }

section "stop, capture, start"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 8 --seed 31
expect_ok "init" cf init -p "$POLICY" || die "init failed"
rm -f "$T/order"
ASTERDRIVE_STOP="sh $T/stop.sh" ASTERDRIVE_START="sh $T/start.sh" \
    expect_ok "backup with stop/start commands" cf backup -p "$POLICY"
SET1=$(last_line "$OUT")
assert_match "$SET1" "$SETID_RE" "backup prints the set id as its last stdout line ($SET1)"
assert_eq "stop start" "$(order_words)" "stop ran once, then start once"
assert_absent "$ASTERDRIVE_ROOT/data/maintenance-marker" "start command ran after the capture (marker removed)"
assert_eq 1 "$(count_sets "$COFFER_REPO")" "one set written"
expect_ok "restore the set" cf restore -p "$POLICY" --set "$SET1" --to "$T/R1" --no-validate
assert_exists "$T/R1/data/maintenance-marker" "the set was captured after the stop command (marker is in it)"
# The set's time lies between stop and start.
stop_t=$(awk '$1=="stop"{print $2}' "$T/order")
start_t=$(awk '$1=="start"{print $2}' "$T/order")
set_t=$(json_get "$(cf sets -p "$POLICY" --json 2>/dev/null)" "next(s['time'] for s in j if s['id']=='$SET1')")
set_epoch=$(date -d "$set_t" +%s 2>/dev/null || echo 0)
if [ "${stop_t%.*}" -le "$((set_epoch + 1))" ] && [ "$set_epoch" -le "$((${start_t%.*} + 1))" ]; then
    pass "set time $set_t lies between stop and start"
else
    fail "set time $set_t ($set_epoch) not between stop ($stop_t) and start ($start_t)"
fi

section "stop command fails"
rm -f "$T/order"
n0=$(count_sets "$COFFER_REPO")
ASTERDRIVE_STOP="sh $T/stop-fails.sh" ASTERDRIVE_START="sh $T/start.sh" \
    expect_rc 1 "backup fails when the stop command fails" cf backup -p "$POLICY"
assert_error_line
assert_imatch "$ERR" 'stop' "the error names the stop command"
assert_eq "$n0" "$(count_sets "$COFFER_REPO")" "no new set written"
assert_eq "stop-fails start" "$(order_words)" "start command still ran after the failed stop"

section "in-place restore: stop, restore, start"
snapshot "$ASTERDRIVE_ROOT" "$T/snap-live1.json"
mutate_deployment "$ASTERDRIVE_ROOT" --percent 5 --seed 33
rm -f "$T/order"
ASTERDRIVE_STOP="sh $T/stop.sh" ASTERDRIVE_START="sh $T/start.sh" \
    expect_ok "restore --in-place of set 1 over the changed deployment" \
    cf restore -p "$POLICY" --set "$SET1" --in-place
assert_eq "stop start" "$(order_words)" "stop ran before and start after the in-place restore"
snapshot "$ASTERDRIVE_ROOT" "$T/snap-inplace.json"
# The set holds the marker (captured while stopped); start removed it again,
# which also changed data/'s mtime.
compare "deployment is back to set 1" "$T/snap-live1.json" "$T/snap-inplace.json" \
    "${RESTORE_EXCLUDES[@]}" --exclude '.coffer-previous-*' --exclude data/maintenance-marker \
    --ignore-mtime-of data
if compgen -G "$ASTERDRIVE_ROOT/.coffer-previous-*" >/dev/null; then
    pass "replaced files kept in $(cd "$ASTERDRIVE_ROOT" && echo .coffer-previous-*)"
else
    fail "no .coffer-previous-* directory with the replaced files"
fi
doctor "doctor passes after the in-place restore" "$ASTERDRIVE_ROOT"

section "SIGINT during the capture"
export ASTERDRIVE_ROOT=$T/big COFFER_REPO=$T/repo-big
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 250 --seed 32
expect_ok "init (big)" cf init -p "$POLICY" || die "init failed"
rm -f "$T/order"
stopped() { grep -q '^stop ' "$T/order" 2>/dev/null; }
# Background jobs of a non-interactive shell ignore SIGINT; give coffer the
# default disposition back so it sees the signal like an interactive user's ^C.
ASTERDRIVE_STOP="sh $T/stop.sh" ASTERDRIVE_START="sh $T/start.sh" \
    env --default-signal=INT "$COFFER" --no-progress backup -p "$POLICY" >"$T/int.out" 2>"$T/int.err" &
CPID=$!
bg_register "$CPID"
wait_for "the stop command" 60 stopped
sleep 0.5
if kill -0 "$CPID" 2>/dev/null; then
    kill -INT "$CPID"
    t_int=$(date +%s.%N)
    wait "$CPID"
    rc=$?
    note "coffer exited $rc $(awk "BEGIN{printf \"%.2f\", $(date +%s.%N) - $t_int}") s after SIGINT; stderr: $(tail -2 "$T/int.err" | tr '\n' ' ')"
    if [ "$rc" -ne 0 ]; then pass "interrupted backup exits non-zero ($rc)"; else
        fail "interrupted backup exited 0 (it finished before the signal was handled?)"; fi
    assert_eq "stop start" "$(order_words)" "start command ran after SIGINT"
    assert_absent "$ASTERDRIVE_ROOT/data/maintenance-marker" "service started again (marker removed)"
    assert_eq 0 "$(count_sets "$COFFER_REPO")" "no set under sets/ after SIGINT"
    note "packs left in the repository after the interrupted backup: $(find "$COFFER_REPO/data" -type f 2>/dev/null | wc -l) (unreferenced: no set uses them)"
    leftovers=$(find "$COFFER_REPO" -name '*.tmp*' -o -name '.*tmp*' | head -5)
    assert_eq "" "$leftovers" "no temporary files left in the repository"
else
    wait "$CPID"
    fail "backup finished before SIGINT could be sent (deployment too small for this machine?)"
fi

section "next backup after the interruption"
rm -f "$T/order"
ASTERDRIVE_STOP="sh $T/stop.sh" ASTERDRIVE_START="sh $T/start.sh" \
    expect_ok "backup after the interrupted one" cf backup -p "$POLICY"
SET2=$(last_line "$OUT")
assert_eq 1 "$(count_sets "$COFFER_REPO")" "one set written"
expect_ok "verify" cf verify -p "$POLICY" --set "$SET2"
snapshot "$ASTERDRIVE_ROOT" "$T/snap-big.json"
expect_ok "restore" cf restore -p "$POLICY" --set "$SET2" --to "$T/R2"
snapshot "$T/R2" "$T/snap-R2.json"
# The marker was in data/ during the capture, removed afterwards.
compare "restore equals the deployment (plus the maintenance marker)" "$T/snap-big.json" "$T/snap-R2.json" \
    "${RESTORE_EXCLUDES[@]}" --exclude data/maintenance-marker --ignore-mtime-of data

finish
