#!/usr/bin/env bash
# A fleet on one repository on a real Ceph RGW: eight hosts (UTS
# namespaces with their own host names) back up their own deployments to
# one S3 repository at the same time, each with its own policy, while a
# check and a prune run against it. Every set is complete and restores
# byte-identical; data every host holds is stored once; the prune refuses
# (backups hold shared locks) rather than removing anything they need; a
# ninth host with the same data as the first adds almost nothing.
. "$(dirname "$0")/lib.sh"
require_coffer
command -v unshare >/dev/null || { skip "unshare missing (util-linux)"; finish; }
if ! unshare --uts sh -c 'hostname coffer-probe' 2>/dev/null; then
    skip "cannot make UTS namespaces here (needs root)"
    finish
fi
T_RGW_LIB=$COFFER_SRC/tests/plugins/storage_s3/rgw_lib.sh
# shellcheck disable=SC1090
. "$T_RGW_LIB"
rgw_start
export COFFER_PLUGIN_PATH=$COFFER_PLUGIN_BUILD_DIR # the s3 driver
setup_env
BUCKET=fleet
rgw_bucket "$BUCKET"
LOC=s3://$BUCKET/repo
N=8

# host_policy I ROOT: policy fleet-hI for the deployment at ROOT
host_policy() {
    make_policy "$T/h$1.yaml" \
        "s|^name: .*|name: fleet-h$1|" \
        "s|^root: .*|root: $2|" \
        "s|    location: .*|    location: $LOC\n    endpoint: $AWS_ENDPOINT_URL\n    access_key_env: AWS_ACCESS_KEY_ID\n    secret_key_env: AWS_SECRET_ACCESS_KEY|"
}
# on_host NAME CMD...: CMD with the host name NAME
on_host() {
    local name=$1; shift
    unshare --uts -- sh -c 'hostname "$0" && exec "$@"' "$name" "$@"
}
bytes_under() { # PREFIX: bytes stored under s3://BUCKET/PREFIX
    awsx s3api list-objects-v2 --bucket "$BUCKET" --prefix "$1" \
        --query 'sum(Contents[].Size || `[0]`)' --output text 2>/dev/null
}

section "eight deployments, 6 MiB every host holds alike"
head -c $((6 * 1048576)) /dev/urandom >"$T/shared.bin"
for i in $(seq 1 $N); do
    gen_deployment "$T/host$i" --size-mb 2 --seed $((300 + i))
    mkdir -p "$T/host$i/data/shared"
    cp "$T/shared.bin" "$T/host$i/data/shared/installer.bin"
    host_policy "$i" "$T/host$i"
done
expect_ok "init" cf init -p "$T/h1.yaml" || die "init"
# Host 1 first, alone: the shared data is in the repository before the
# others start, so what they add is their own data only.
expect_ok "host 1 backs up" on_host fleet-h1 "$COFFER" --no-progress backup -p "$T/h1.yaml" --json ||
    die "first backup"
assert_eq fleet-h1 "$(json_get "$(cf --repo "$LOC" sets --json 2>/dev/null)" 'j[0].get("host")')" \
    "the set names its host"
snapshot "$T/host1" "$T/snap1.json" # after the backup: SQLite's files settle
data0=$(bytes_under repo/data/)
note "pack bytes after host 1: $data0"

section "hosts 2..$N at once, with a check and a prune running"
# The application's stop command takes 4 s: the backups hold their
# locks while the check and the prune start.
pids=()
for i in $(seq 2 $N); do
    ASTERDRIVE_STOP="sleep 4" on_host "fleet-h$i" "$COFFER" --no-progress backup -p "$T/h$i.yaml" \
        --json >"$T/b$i.out" 2>"$T/b$i.err" &
    pids+=($!)
done
sleep 1.5
run cf check -p "$T/h1.yaml" --json
check_rc=$RC
check_out=$OUT
run cf prune -p "$T/h1.yaml" --json
prune_rc=$RC
prune_err=$ERR
ok=0
for k in "${!pids[@]}"; do
    i=$((k + 2))
    if wait "${pids[$k]}"; then
        ok=$((ok + 1))
    else
        fail "host $i's backup failed: $(tail -3 "$T/b$i.err")"
    fi
done
assert_eq $((N - 1)) "$ok" "all $((N - 1)) concurrent backups succeeded"
for i in $(seq 2 $N); do
    assert_not_contains "$(cat "$T/b$i.err")" "repository is locked" "host $i was not locked out"
done
assert_eq 1 "$prune_rc" "prune during the backups exits 1"
assert_contains "$prune_err" "repository is locked (shared lock" "prune names a backup's shared lock"
assert_match "$prune_err" "on fleet-h[2-8]" "... and the host holding it"
if [ "$check_rc" = 0 ]; then
    pass "check during the backups is clean"
else
    fail "check during the backups exited $check_rc: $(printf '%s' "$check_out" | head -c 400)"
fi

for i in $(seq 2 $N); do snapshot "$T/host$i" "$T/snap$i.json"; done

section "every set is complete"
expect_ok "sets" cf --repo "$LOC" sets --json
assert_eq $N "$(json_get "$OUT" 'len(j)')" "$N sets"
hosts=$(json_get "$OUT" '" ".join(sorted(set(s.get("host", "?") for s in j)))')
assert_eq "$(for i in $(seq 1 $N); do printf 'fleet-h%s ' "$i"; done | sed 's/ $//' | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//')" \
    "$hosts" "each set names the host that made it"
for i in $(seq 1 $N); do
    expect_ok "restore host $i" cf restore -p "$T/h$i.yaml" --to "$T/out$i" --no-validate --json ||
        continue
    snapshot "$T/out$i" "$T/snap-out$i.json"
    compare "host $i restores byte-identical" "$T/snap$i.json" "$T/snap-out$i.json" "${RESTORE_EXCLUDES[@]}"
done
expect_ok "check after the backups" cf check -p "$T/h1.yaml" --read-data

section "shared data is stored once"
data1=$(bytes_under repo/data/)
unique=0
for i in $(seq 2 $N); do
    unique=$((unique + $(du -sb --exclude=shared "$T/host$i/data" | cut -f1)))
done
added=$((data1 - data0))
note "hosts 2..$N added $added pack bytes for $unique bytes of their own data (6 MiB each held alike)"
# Their own data is random and compresses little; the 6 MiB they share
# would add 42 MiB if stored again.
assert_lt "$added" $((unique + 4 * 1048576)) "the shared 6 MiB were not stored again"

section "a ninth host with host 1's data"
cp -a "$T/host1" "$T/host9"
host_policy 9 "$T/host9"
expect_ok "host 9 backs up" on_host fleet-h9 "$COFFER" --no-progress backup -p "$T/h9.yaml" --json
data2=$(bytes_under repo/data/)
total=$(bytes_under repo/)
grown=$(( (data2 - data1) * 10000 / total ))
note "host 9 added $((data2 - data1)) pack bytes to a repository of $total bytes"
assert_lt "$grown" 200 "identical data on a second host adds < 2% to the repository"

section "change detection against this host's own sets"
# Another host backs up its own tree under host 1's policy name: the
# newest set of policy fleet-h1 is now that host's. Host 1's next backup
# still compares with its own last set and reads no file again.
sed "s|^name: .*|name: fleet-h1|" "$T/h2.yaml" >"$T/h1-other.yaml"
expect_ok "another host, same policy name" on_host fleet-other "$COFFER" --no-progress backup \
    -p "$T/h1-other.yaml" --json
expect_ok "host 1 again" on_host fleet-h1 "$COFFER" --no-progress backup -p "$T/h1.yaml" --json
assert_gt "$(json_get "$OUT" 'j["files"]')" 0 "(host 1 has files)"
assert_eq "$(json_get "$OUT" 'j["files"]')" "$(json_get "$OUT" 'j["unchanged_files"]')" \
    "every file of host 1 found unchanged in its own last set"
finish
