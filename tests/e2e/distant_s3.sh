#!/usr/bin/env bash
# A distant bucket: the real Ceph RGW behind tests/tools/delay_proxy (30 ms
# round trips, a new connection one more). coffer times its small
# requests and, unless the target says otherwise, reads with more
# connections the farther the bucket is: a restore over the delayed link
# runs on one more than the CPUs plus one for every 4 ms, one straight to
# RGW on loopback on fewer, an explicit `connections` is kept. A file
# stored twice is read from the bucket once. Every restore equals the
# source, and a check that reads all data passes over the delayed link.
. "$(dirname "$0")/lib.sh"
require_coffer
T_RGW_LIB=$COFFER_SRC/tests/plugins/storage_s3/rgw_lib.sh
# shellcheck disable=SC1090
. "$T_RGW_LIB"
rgw_repo distant-test

PROXY_BIN=$COFFER_BUILD/tests/delay_proxy
[ -x "$PROXY_BIN" ] || die "no delay_proxy at $PROXY_BIN (build the tests)"
"$PROXY_BIN" --upstream "${RGW_URL#http://}" --rtt-ms 30 --port-file "$T/proxy.port" \
    >"$T/proxy.out" 2>&1 &
bg_register $!
wait_for "the delay proxy's port" 10 test -s "$T/proxy.port" || die "delay proxy did not start"
FAR=http://127.0.0.1:$(cat "$T/proxy.port")

# conns_of OUTPUT: "N RTT_MS" from restore -v's line for the data component
conns_of() {
    printf '%s\n' "$1" | sed -n "s/.*component 'data': .* on \([0-9]*\) connections (round trip \([0-9.]*\) ms).*/\1 \2/p" | head -1
}

section "a backup over 30 ms round trips"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 24 --seed 91
# a large object stored a second time, far from the first in the walk
big=$(find "$ASTERDRIVE_ROOT/data" -type f -size +200k | sort | head -1)
[ -n "$big" ] || die "no object over 200 KiB in the deployment"
mkdir -p "$ASTERDRIVE_ROOT/data/zz-copies"
cp "$big" "$ASTERDRIVE_ROOT/data/zz-copies/again"
export AWS_ENDPOINT_URL=$FAR
expect_ok "init" cf init -p "$POLICY" || die "init"
expect_ok "backup" cf backup -p "$POLICY" || die "backup"
snapshot "$ASTERDRIVE_ROOT" "$T/snap.json"

section "restore far away: more connections"
expect_ok "restore over the delayed link" cf -v restore -p "$POLICY" --to "$T/far" || die "restore"
read -r n rtt <<<"$(conns_of "$ERR")"
note "far: $n connections, round trip $rtt ms"
# one more than the CPUs (3 to 8), one more for every 4 ms of the round
# trip measured when the restore began (30 ms or a little more), 16 at most
base=$("$PY" -c "import os; print(min(8, max(3, os.cpu_count() + 1)))")
want=$((base + 7 > 16 ? 16 : base + 7))
assert_gt "$n" $((want - 1)) "30 ms round trips: at least $want connections"
assert_lt "$n" 17 "30 ms round trips: 16 connections at most"
assert_eq 1 "$("$PY" -c "print(int($rtt >= 30))")" "the round trip measured is at least the link's ($rtt ms)"
# the chunks of a component are named before its files are read, to spot
# the repeated ones; a component of fewer than 16 files (config) skips that
assert_contains "$ERR" "component 'data': " "the data component was restored"
assert_match "$ERR" "debug: component 'data': [0-9]+ chunks named" "the data component's chunks were named first"
assert_eq "" "$(grep -E "component 'config': [0-9]+ chunks named" <<<"$ERR")" \
    "config (1 file) was not worth naming its chunks"
snapshot "$T/far" "$T/snap-far.json"
compare "restored over the delayed link: equal to the source" "$T/snap.json" "$T/snap-far.json" "${RESTORE_EXCLUDES[@]}"

section "restore near: fewer"
export AWS_ENDPOINT_URL=$RGW_URL
expect_ok "restore straight from RGW" cf -v restore -p "$POLICY" --to "$T/near" || die "restore"
read -r n2 rtt2 <<<"$(conns_of "$ERR")"
note "near: $n2 connections, round trip $rtt2 ms"
assert_lt "$n2" 16 "loopback: fewer than 16 connections"
assert_lt "${rtt2%.*}" 30 "loopback: round trip under the link's"
snapshot "$T/near" "$T/snap-near.json"
compare "restored on loopback: equal to the source" "$T/snap.json" "$T/snap-near.json" "${RESTORE_EXCLUDES[@]}"

section "an explicit connections is kept"
policy_with "$T/p4.yaml" "connections: 4"
export AWS_ENDPOINT_URL=$FAR
expect_ok "restore with connections: 4" cf -v restore -p "$T/p4.yaml" --to "$T/four" || die "restore"
read -r n3 _ <<<"$(conns_of "$ERR")"
assert_eq 4 "$n3" "connections: 4 over the delayed link: 4"
snapshot "$T/four" "$T/snap-four.json"
compare "restored with 4 connections: equal to the source" "$T/snap.json" "$T/snap-four.json" "${RESTORE_EXCLUDES[@]}"

section "a file stored twice is read from the bucket once"
# a window of 2 MiB: the copy is planned long after the original was read
policy_with "$T/p2m.yaml" "inflight_bytes: 2M"
expect_ok "restore with inflight_bytes: 2M" cf -v restore -p "$T/p2m.yaml" --to "$T/twice" || die "restore"
again=$(printf '%s\n' "$ERR" | sed -n "s/.*component 'data': .*; \([0-9]*\) repeated chunks not read again.*/\1/p" | head -1)
note "$again repeated chunks not read again"
assert_gt "${again:-0}" 0 "the object stored twice was read from the bucket once"
snapshot "$T/twice" "$T/snap-twice.json"
compare "restored with a 2 MiB window: equal to the source" "$T/snap.json" "$T/snap-twice.json" "${RESTORE_EXCLUDES[@]}"
assert_eq "" "$(find "$T/twice" -name '.coffer-*' | head -1)" "nothing of the restore's own is left in the target"

section "check reading all data over the delayed link"
expect_ok "check --read-data" cf check -p "$POLICY" --read-data || die "check"
finish
