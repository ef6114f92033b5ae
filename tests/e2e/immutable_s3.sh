#!/usr/bin/env bash
# Immutable repository on a real Ceph RGW with object lock. The bucket
# belongs to a maintenance user; the backup host's user may read, write,
# set retention and remove locks/ only (a bucket policy). Shown here:
# - bad input: days: 0, a bucket without object lock (init and backup,
#   naming the bucket), a lock shorter than the retention horizon (both
#   numbers), a host clock 2 days off (dates follow the server's clock);
# - every object coffer writes is locked, lock objects never are;
# - an intruder with the backup credentials cannot delete or shorten
#   anything, overwriting a pack or forging a manifest is detected and
#   every set still restores byte-identical;
# - with a lock of one minute, an old pack a newer set reuses is still
#   locked after its first retention ended;
# - forget and prune need the maintenance credentials; prune waits for
#   locks and removes expired, unreferenced objects only.
. "$(dirname "$0")/lib.sh"
require_coffer
T_RGW_LIB=$COFFER_SRC/tests/plugins/storage_s3/rgw_lib.sh
# shellcheck disable=SC1090
. "$T_RGW_LIB"
rgw_start
export COFFER_PLUGIN_PATH=$COFFER_PLUGIN_BUILD_DIR # the s3 driver
setup_env

BUCKET=immutable-repo
MAINT_AK=$AWS_ACCESS_KEY_ID MAINT_SK=$AWS_SECRET_ACCESS_KEY
export BACKUP_AK=COFFERBACKUPUSER0001 BACKUP_SK=backupUserSecret/0123456789abcdefghij
radosgw-admin -c "$RGW_DIR/ceph.conf" user create --uid backup --display-name backup \
    --access-key "$BACKUP_AK" --secret-key "$BACKUP_SK" >/dev/null 2>&1 || die "cannot create the backup user"
# The intruder: the AWS CLI with the backup host's credentials.
intruder() { AWS_ACCESS_KEY_ID=$BACKUP_AK AWS_SECRET_ACCESS_KEY=$BACKUP_SK awsx "$@"; }

run awsx s3api create-bucket --bucket "$BUCKET" --object-lock-enabled-for-bucket
[ "$RC" = 0 ] || die "cannot create the bucket: $ERR"
cat >"$T/bucket-policy.json" <<EOF
{"Version": "2012-10-17", "Statement": [
 {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam:::user/test"]},
  "Action": ["s3:*"], "Resource": ["arn:aws:s3:::$BUCKET/*"]},
 {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam:::user/backup"]},
  "Action": ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketObjectLockConfiguration",
             "s3:GetBucketVersioning"],
  "Resource": ["arn:aws:s3:::$BUCKET"]},
 {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam:::user/backup"]},
  "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:GetObjectRetention",
             "s3:PutObjectRetention"],
  "Resource": ["arn:aws:s3:::$BUCKET/*"]},
 {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam:::user/backup"]},
  "Action": ["s3:DeleteObject"],
  "Resource": ["arn:aws:s3:::$BUCKET/repo/locks/*", "arn:aws:s3:::$BUCKET/repo/state/*"]}
]}
EOF
run awsx s3api put-bucket-policy --bucket "$BUCKET" --policy "file://$T/bucket-policy.json"
[ "$RC" = 0 ] || die "cannot set the bucket policy: $ERR"

# policy_for OUT LOCATION IMMUTABLE-LINES RETENTION-LINES
policy_for() {
    local out=$1 loc=$2 imm=$3 ret=$4
    make_policy "$out" "s|    location: .*|    location: $loc\n    endpoint: $AWS_ENDPOINT_URL\n    access_key_env: BACKUP_AK\n    secret_key_env: BACKUP_SK\n    maintenance:\n      access_key_env: MAINT_AK\n      secret_key_env: MAINT_SK$imm|"
    if [ -n "$ret" ]; then
        /usr/bin/python3 - "$out" "$ret" <<'PY'
import sys, re
p, ret = sys.argv[1], sys.argv[2]
s = open(p).read()
s = re.sub(r'(?ms)^retention:\n(  .*\n)*', '', s)
open(p, 'w').write(s.rstrip('\n') + '\nretention:\n' + ret + '\n')
PY
    fi
}
export MAINT_AK MAINT_SK
IMM='\n    immutable:\n      mode: governance\n      minutes: 1'
P=$T/immutable.yaml
policy_for "$P" "s3://$BUCKET/repo" "$IMM" "  keep_last: 10"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 12 --seed 91

section "bad input"
policy_for "$T/zero.yaml" "s3://$BUCKET/zero" '\n    immutable:\n      mode: governance\n      days: 0' ""
expect_rc 2 "days: 0 is refused" cf policy check "$T/zero.yaml"
assert_contains "$ERR" "immutable.days" "the error names the key"
assert_contains "$ERR" "zero.yaml:" "the error names the file"
policy_for "$T/nomode.yaml" "s3://$BUCKET/zero" '\n    immutable:\n      days: 3' ""
expect_rc 2 "immutable without mode is refused" cf policy check "$T/nomode.yaml"
assert_contains "$ERR" "mode is missing" "the error says what is missing"
run awsx s3api create-bucket --bucket plain-bucket
policy_for "$T/plain.yaml" "s3://plain-bucket/repo" "$IMM" ""
sed -i 's/access_key_env: BACKUP_AK/access_key_env: MAINT_AK/; s/secret_key_env: BACKUP_SK/secret_key_env: MAINT_SK/' "$T/plain.yaml"
expect_rc 1 "init on a bucket without object lock is refused" cf init -p "$T/plain.yaml"
assert_contains "$ERR" "plain-bucket" "the error names the bucket"
assert_contains "$ERR" "object lock" "the error says what is missing"
# A repository made before immutable: was set.
grep -v -e '^    immutable:' -e '^      mode:' -e '^      minutes:' "$T/plain.yaml" >"$T/plain-mutable.yaml"
expect_ok "init without immutable" cf init -p "$T/plain-mutable.yaml"
expect_rc 1 "backup to an immutable target on a bucket without object lock is refused" cf backup -p "$T/plain.yaml"
assert_contains "$ERR" "plain-bucket" "the backup error names the bucket"
policy_for "$T/horizon.yaml" "s3://$BUCKET/horizon" "$IMM" "  keep_daily: 7"
expect_ok "init with a lock shorter than the retention horizon" cf init -p "$T/horizon.yaml"
assert_contains "$ERR" "1 minute" "the warning gives the lock"
assert_contains "$ERR" "7 days (keep_daily: 7)" "the warning gives the horizon and its rule"

section "a repository made before immutable: was set"
policy_for "$T/late-mutable.yaml" "s3://$BUCKET/late" "" ""
policy_for "$T/late.yaml" "s3://$BUCKET/late" '\n    immutable:\n      mode: governance\n      days: 1' ""
expect_ok "init without immutable" cf init -p "$T/late-mutable.yaml"
expect_ok "backup without immutable" cf backup -p "$T/late-mutable.yaml"
expect_rc 3 "check with immutable: set finds the objects without a lock" cf check -p "$T/late.yaml" --json
assert_gt "$(json_get "$OUT" 'len([p for p in j["retention"]["problems"] if "not locked" in p["problem"]])')" 4 "every object is named"
assert_contains "$OUT" "coffer extend-locks -p $T/late.yaml --target primary" "the fix is extend-locks"
expect_ok "extend-locks" cf extend-locks -p "$T/late.yaml" --json
assert_gt "$(json_get "$OUT" 'j["requests"]')" 4 "every live object was extended"
expect_ok "check after extend-locks" cf check -p "$T/late.yaml" --json
assert_eq 0 "$(json_get "$OUT" 'len(j["retention"]["problems"])')" "no retention problem left"
expect_rc 2 "extend-locks on a target that is not immutable" cf extend-locks -p "$T/late-mutable.yaml"

section "init and a first backup under retention"
expect_ok "init" cf init -p "$P" || die "init"
expect_ok "backup 1" cf backup -p "$P" --json || die "backup 1"
SET1=$(json_get "$OUT" 'j["set"]')
T1=$(date +%s)
assert_eq "governance" "$(json_get "$OUT" 'j["retention"]["mode"]')" "the summary gives the lock mode"
snapshot "$ASTERDRIVE_ROOT" "$T/snap1.json"
run awsx s3api list-objects-v2 --bucket "$BUCKET" --prefix repo/ --query 'Contents[].Key' --output text
KEYS=$(tr '\t' '\n' <<<"$OUT" | grep -v -e '/locks/' -e '/state/')
n=0
for k in $KEYS; do
    run awsx s3api head-object --bucket "$BUCKET" --key "$k"
    mode=$(json_get "$OUT" 'j.get("ObjectLockMode", "")')
    [ "$mode" = GOVERNANCE ] || fail "$k is not locked (mode '$mode')"
    n=$((n + 1))
done
assert_gt "$n" 5 "all $n objects (config, keys, packs, index, manifest) are locked"
run awsx s3api list-object-versions --bucket "$BUCKET" --prefix repo/locks/ --output json
LOCKV=$(json_get "$OUT" '" ".join(v["Key"] + "@" + v["VersionId"] for v in j.get("Versions", []))')
assert_ne "" "$LOCKV" "the backup's lock object left a version behind"
for kv in $LOCKV; do
    run awsx s3api head-object --bucket "$BUCKET" --key "${kv%@*}" --version-id="${kv#*@}"
    assert_eq "" "$(json_get "$OUT" 'j.get("ObjectLockMode", "")')" "lock object ${kv%@*} is not locked"
done
run awsx s3api list-objects-v2 --bucket "$BUCKET" --prefix repo/locks/ --query 'length(Contents || `[]`)' --output text
assert_eq 0 "$OUT" "the backup removed its lock with the backup credentials"

section "clock skew: dates follow the server"
# S3 refuses signatures more than 15 minutes off its clock: the driver
# learns the server's time from that refusal and signs with it.
if command -v faketime >/dev/null; then
    printf '# skewed\n' >>"$ASTERDRIVE_ROOT/data/config.toml"
    # (an ASan build must let faketime's library load first)
    expect_ok "backup with the host clock 2 days behind" env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
        faketime -f -2d "$COFFER" --no-progress backup -p "$P" --json
    assert_contains "$ERR" "signing requests with the server's time" "the driver says it signs with the server's time"
    assert_contains "$ERR" "behind the storage's" "clock skew is reported"
    UNTIL=$(json_get "$OUT" 'j["retention"]["locked_until"]')
    assert_gt "$UNTIL" "$(($(date +%s) + 50))" "retain-until comes from the server's clock, not the host's"
    SETSK=$(json_get "$OUT" 'j["set"]')
    expect_ok "forget the skewed set" cf forget -p "$P" "$SETSK"
else
    skip "faketime is not installed"
fi

section "the intruder holds the backup credentials"
PACK=$(tr ' ' '\n' <<<"$KEYS" | grep '/data/' | head -1)
MANI=$(tr ' ' '\n' <<<"$KEYS" | grep '/sets/' | head -1)
IDX=$(tr ' ' '\n' <<<"$KEYS" | grep '/index/' | head -1)
KEYO=$(tr ' ' '\n' <<<"$KEYS" | grep '/keys/' | head -1)
for k in "$PACK" "$MANI" "$IDX" "$KEYO" repo/config; do
    run intruder s3api delete-object --bucket "$BUCKET" --key "$k"
    assert_ne 0 "$RC" "delete $k is refused"
    VID=$(awsx s3api list-object-versions --bucket "$BUCKET" --prefix "$k" --query 'Versions[0].VersionId' --output text)
    run intruder s3api delete-object --bucket "$BUCKET" --key "$k" --version-id="$VID"
    assert_ne 0 "$RC" "delete of version $VID of $k is refused"
    run intruder s3api delete-object --bucket "$BUCKET" --key "$k" --version-id="$VID" --bypass-governance-retention
    assert_ne 0 "$RC" "delete of $k bypassing governance is refused"
    run intruder s3api put-object-retention --bucket "$BUCKET" --key "$k" \
        --retention "Mode=GOVERNANCE,RetainUntilDate=$(date -u -d '+5 sec' +%Y-%m-%dT%H:%M:%SZ)"
    assert_ne 0 "$RC" "shortening the retention of $k is refused"
done
run awsx s3api delete-object --bucket "$BUCKET" --key "$PACK" --version-id="$(awsx s3api list-object-versions --bucket "$BUCKET" --prefix "$PACK" --query 'Versions[0].VersionId' --output text)"
assert_ne 0 "$RC" "even the bucket owner cannot delete a locked version"
assert_contains "$ERR" "object lock" "the server says why"
# Overwrite a pack with garbage and forge a manifest: a newer version of
# set 1 (another set's manifest) and a new set that copies set 1.
head -c 100000 /dev/urandom >"$T/garbage"
run intruder s3api put-object --bucket "$BUCKET" --key "$PACK" --body "$T/garbage"
assert_eq 0 "$RC" "an overwrite only adds a version (S3 cannot refuse it)"
awsx s3 cp "s3://$BUCKET/$MANI" "$T/manifest" >/dev/null || die "cannot read the manifest"
FORGED=repo/sets/$(date -u +%Y%m%dT%H%M%SZ)-ffffffff
run intruder s3api put-object --bucket "$BUCKET" --key "$FORGED" --body "$T/manifest"
assert_eq 0 "$RC" "a forged manifest can be written"
expect_rc 3 "check finds the replaced pack and the forged manifest" cf check -p "$P" --json
assert_contains "$OUT" "${PACK#repo/}" "check names the replaced pack"
assert_contains "$OUT" "replaced on" "check says it was replaced"
assert_contains "$OUT" "${FORGED#repo/}" "check names the forged manifest"
assert_contains "$OUT" "not locked" "the forged manifest carries no lock"
expect_ok "set 1 still restores (original versions)" cf restore -p "$P" --set "$SET1" --to "$T/out1"
snapshot "$T/out1" "$T/snap-out1.json"
compare "set 1 byte-identical after the attack" "$T/snap1.json" "$T/snap-out1.json" "${RESTORE_EXCLUDES[@]}"
# The remedy check names: the maintenance credentials remove what the
# intruder wrote (it carries no lock).
NEWV=$(awsx s3api list-object-versions --bucket "$BUCKET" --prefix "$PACK" --output json |
    /usr/bin/python3 -c 'import json,sys; print([v for v in json.load(sys.stdin)["Versions"] if v["IsLatest"]][0]["VersionId"])')
run awsx s3api delete-object --bucket "$BUCKET" --key "$PACK" --version-id="$NEWV"
assert_eq 0 "$RC" "the intruder's pack version is removed with the maintenance credentials"
run awsx s3api delete-object --bucket "$BUCKET" --key "$FORGED"
assert_eq 0 "$RC" "the forged manifest is removed with the maintenance credentials"
expect_ok "check is clean again" cf check -p "$P"

section "a reused pack stays locked beyond its first retention"
# Backup 2 reuses set 1's packs once the lock epoch ends within a lock
# period (one minute): every live object's lock is extended.
printf '# second\n' >>"$ASTERDRIVE_ROOT/data/config.toml"
while [ $(($(date +%s) - T1)) -lt 65 ]; do sleep 2; done
expect_ok "backup 2" cf backup -p "$P" --json || die "backup 2"
SET2=$(json_get "$OUT" 'j["set"]')
assert_eq True "$(json_get "$OUT" 'j["retention"]["extended"]')" "backup 2 extended the locks"
assert_gt "$(json_get "$OUT" 'j["retention"]["requests"]')" 3 "retention requests counted"
snapshot "$ASTERDRIVE_ROOT" "$T/snap2.json"
OLDV=$(awsx s3api list-object-versions --bucket "$BUCKET" --prefix "$PACK" --output json |
    /usr/bin/python3 -c 'import json,sys; v=sorted(json.load(sys.stdin)["Versions"], key=lambda v: v["LastModified"]); print(v[0]["VersionId"])')
run awsx s3api head-object --bucket "$BUCKET" --key "$PACK" --version-id="$OLDV"
UNTIL=$(/usr/bin/python3 -c 'import sys,datetime; print(int(datetime.datetime.fromisoformat(sys.argv[1]).timestamp()))' "$(json_get "$OUT" 'j["ObjectLockRetainUntilDate"]')")
# The first retention of set 1's objects ended at most 121 s after set 1.
while [ "$(date +%s)" -le $((T1 + 125)) ]; do sleep 2; done
assert_gt "$UNTIL" "$(date +%s)" "set 1's pack is still locked after its first retention ended"
run awsx s3api delete-object --bucket "$BUCKET" --key "$PACK" --version-id="$OLDV"
assert_ne 0 "$RC" "and deleting it is still refused"
expect_ok "check with the backup credentials: every lock as the sets need" cf check -p "$P" --json
assert_eq 0 "$(json_get "$OUT" 'len(j["retention"]["problems"])')" "no retention problem"

section "forget and prune"
expect_rc 1 "forget with only the backup credentials is refused" env MAINT_AK=$BACKUP_AK MAINT_SK=$BACKUP_SK "$COFFER" --no-progress forget -p "$P" "$SET1"
assert_imatch "$ERR" "denied|credentials" "the error says the credentials may not delete"
expect_ok "forget set 1 (maintenance credentials)" cf forget -p "$P" "$SET1"
expect_ok "prune while the locks hold" cf prune -p "$P" --json --max-unused 0
WAIT1=$(json_get "$OUT" 'j["retention"]["packs_waiting"] + j["retention"]["versions_waiting"]')
assert_gt "$WAIT1" 0 "prune reports what waits for a lock"
# Wait for every lock made so far to end, then prune again.
while [ "$(date +%s)" -le $((T1 + 200)) ]; do sleep 3; done
expect_ok "prune after the locks ended" cf prune -p "$P" --json --max-unused 0
assert_gt "$(json_get "$OUT" 'j["retention"]["versions_removed"]')" 0 "old versions of removed objects are gone"
expect_ok "set 2 restores after prune" cf restore -p "$P" --set "$SET2" --to "$T/out2"
snapshot "$T/out2" "$T/snap-out2.json"
compare "set 2 byte-identical" "$T/snap2.json" "$T/snap-out2.json" "${RESTORE_EXCLUDES[@]}"

section "a copy to an immutable target is locked too"
/usr/bin/python3 - "$POLICY" "$T/two.yaml" "$AWS_ENDPOINT_URL" "$BUCKET" <<'PY'
import sys
src, out, ep, bucket = sys.argv[1:5]
s = open(src).read()
block = ("  - name: offsite\n    location: s3://%s/copy\n    endpoint: %s\n"
         "    access_key_env: BACKUP_AK\n    secret_key_env: BACKUP_SK\n"
         "    immutable:\n      mode: governance\n      days: 1\n\ncomponents:\n" % (bucket, ep))
s = s.replace("\ncomponents:\n", "\n" + block, 1)
open(out, "w").write(s)
PY
COFFER_REPO=$T/localrepo
expect_ok "init both targets" cf init -p "$T/two.yaml"
expect_ok "backup, then the copy to the immutable target" cf backup -p "$T/two.yaml" --json
assert_eq 1 "$(json_get "$OUT" 'len(j["copies"])')" "one copy made"
run awsx s3api list-objects-v2 --bucket "$BUCKET" --prefix copy/ --query 'Contents[].Key' --output text
n=0
for k in $(tr '\t' '\n' <<<"$OUT" | grep -v -e '/locks/' -e '/state/'); do
    run awsx s3api head-object --bucket "$BUCKET" --key "$k"
    [ "$(json_get "$OUT" 'j.get("ObjectLockMode", "")')" = GOVERNANCE ] || fail "copied object $k is not locked"
    n=$((n + 1))
done
assert_gt "$n" 4 "every copied object ($n) is locked"

section "governance bypass: an explicit flag and the maintenance credentials"
printf '# third\n' >>"$ASTERDRIVE_ROOT/data/config.toml"
expect_ok "backup 3 (freshly locked)" cf backup -p "$P" --json
SET3=$(json_get "$OUT" 'j["set"]')
expect_ok "forget every set" cf forget -p "$P" "$SET2" "$SET3"
expect_rc 1 "prune --bypass-governance with the backup credentials" env MAINT_AK=$BACKUP_AK MAINT_SK=$BACKUP_SK "$COFFER" --no-progress prune -p "$P" --bypass-governance
expect_ok "prune --bypass-governance" cf prune -p "$P" --bypass-governance --json
assert_eq 0 "$(json_get "$OUT" 'j["retention"]["packs_waiting"] + j["retention"]["versions_waiting"]')" "nothing waits for a lock"
assert_gt "$(json_get "$OUT" 'j["packs"]["removed"]')" 0 "locked packs were removed"
# Left: packs no index names that are younger than prune's grace hour (a
# running backup's look the same), here the one an earlier prune left
# waiting for its lock.
YOUNG=$(json_get "$OUT" 'j["unindexed"]["kept"]')
run awsx s3api list-object-versions --bucket "$BUCKET" --prefix repo/data/ --output json
NV=$(printf '%s' "$OUT" | /usr/bin/python3 -c 'import json,sys; s=sys.stdin.read(); print(len(json.loads(s).get("Versions", [])) if s.strip() else 0)')
assert_eq "$YOUNG" "$NV" "no other version of any pack is left"
finish
