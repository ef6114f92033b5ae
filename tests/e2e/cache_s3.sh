#!/usr/bin/env bash
# The local cache of a remote repository's index objects and manifests,
# on a real Ceph RGW behind a recording proxy: a backup fetches no index
# object or manifest it has already seen (or written); a host with an
# empty cache fetches each once; a damaged cached copy is never used;
# copies of objects the store no longer has are removed; copies are 0600
# in a 0700 directory.
. "$(dirname "$0")/lib.sh"
require_coffer
T_RGW_LIB=$COFFER_SRC/tests/plugins/storage_s3/rgw_lib.sh
# shellcheck disable=SC1090
. "$T_RGW_LIB"
rgw_repo cache-test

rgw_fault_proxy
awsx() { aws --endpoint-url "$RGW_URL" "$@"; }
gets() { grep -c "^GET /$BUCKET/repo/$1" "$PLOG"; } # GETs of keys under PREFIX
CACHE=$COFFER_CACHE_DIR

section "three backups"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 3 --seed 71
expect_ok "init" cf init -p "$POLICY" || die "init"
expect_ok "backup 1" cf backup -p "$POLICY" --json || die "backup 1"
SET1=$(json_get "$OUT" 'j["set"]')
for i in 2 3; do
    mutate_deployment "$ASTERDRIVE_ROOT" --percent 5 --seed $((71 + i))
    expect_ok "backup $i" cf backup -p "$POLICY" || die "backup $i"
done
nindex=$(s3_count "$BUCKET" repo/index/)
nsets=$(s3_count "$BUCKET" repo/sets/)
assert_eq 3 "$nsets" "three sets"
note "$nindex index objects in the bucket"
repo_dir=$(find "$CACHE" -mindepth 1 -maxdepth 1 -type d)
assert_eq "$nindex" "$(find "$repo_dir/index" -type f | wc -l)" "every index object has a cached copy"
assert_eq 3 "$(find "$repo_dir/sets" -type f | wc -l)" "every manifest has a cached copy"
assert_eq "" "$(find "$CACHE" -type f ! -perm 0600)" "cached copies are 0600"
assert_eq "" "$(find "$CACHE" -mindepth 1 -type d ! -perm 0700)" "cache directories are 0700"
latest=$(ls "$repo_dir/sets" | sort | tail -1)
awsx s3 cp "s3://$BUCKET/repo/sets/$latest" "$T/latest.obj" >/dev/null 2>&1 || die "aws s3 cp"
assert_eq "$(sha256sum <"$T/latest.obj")" "$(sha256sum <"$repo_dir/sets/$latest")" \
    "a cached copy holds the stored bytes"

section "a backup fetches nothing it has seen"
mutate_deployment "$ASTERDRIVE_ROOT" --percent 5 --seed 80
: >"$PLOG"
expect_ok "backup 4" cf backup -p "$POLICY" || die "backup 4"
assert_eq 0 "$(gets index/)" "no index object fetched"
assert_eq 0 "$(gets sets/)" "no manifest fetched"
assert_gt "$(grep -c "^PUT /$BUCKET/repo/data/" "$PLOG")" 0 "(the backup did store data)"
note "backup 4 listed: $(grep -o 'prefix=[^& ]*' "$PLOG" | sort -u | tr '\n' ' ')"
assert_eq 0 "$(grep -c 'prefix=repo%2Fdata' "$PLOG")" "no listing of the packs"
# Each request is a round trip to a distant bucket: none asked twice.
assert_eq 0 "$(grep -c "^HEAD /$BUCKET/repo/config " "$PLOG")" "the config is not HEADed before it is read"
assert_eq 1 "$(gets config)" "the config is read once"
assert_eq 0 "$(gets locks/)" "the backup's own lock is not read back"
assert_eq 1 "$(grep -c "^PUT /$BUCKET/repo/locks/" "$PLOG")" "... yet it is written"
assert_eq 1 "$(grep -c "^DELETE /$BUCKET/repo/locks/" "$PLOG")" "... and removed"
assert_eq 0 "$(grep -c "^HEAD /$BUCKET/repo/locks/" "$PLOG")" "... without a HEAD first"
assert_eq 1 "$(grep -c "^GET /$BUCKET?.*uploads" "$PLOG")" "old incomplete uploads are still looked for, once"

# first_line REGEX: the number of the proxy log's first line matching REGEX
first_line() { grep -n "$1" "$PLOG" | head -1 | cut -d: -f1; }
# hold RULE: the proxy holds the answers RULE names (s3_fault_proxy rules),
# from a fresh log; release: none from now on
hold() { echo "$1" >"$RULES"; : >"$PLOG"; }
release() { : >"$RULES"; }
# show_log [CHARS]: the proxy log so far, on one note line
show_log() { note "proxy log: $(tr '\n' '|' <"$PLOG" | cut -c1-"${1:-600}")"; }

section "the bucket's HEAD and its object-lock query go at once"
hold "HEAD ^/$BUCKET\$ slow 1 1500"
expect_ok "sets, the bucket's HEAD held 1.5 s" cf sets -p "$POLICY" || die "sets"
asked=$(first_line "^GET /$BUCKET?object-lock")
held=$(first_line "^SENT HEAD /$BUCKET\$")
show_log 300
assert_ne "" "$asked" "the object-lock query was asked"
assert_ne "" "$held" "the HEAD was held"
assert_lt "$asked" "$held" "... and answered while the HEAD's answer was held"
release

section "an open reads the repository while the bucket is checked"
hold "HEAD ^/$BUCKET\$ slow 1 1500"
mutate_deployment "$ASTERDRIVE_ROOT" --percent 1 --seed 77
expect_ok "backup, the bucket's HEAD held 1.5 s" cf backup -p "$POLICY" || die "backup, HEAD held"
held=$(first_line "^SENT HEAD /$BUCKET\$")
config=$(first_line "^GET /$BUCKET/repo/config")
keys=$(first_line "^GET /$BUCKET?.*prefix=repo%2Fkeys%2F")
lockput=$(first_line "^PUT /$BUCKET/repo/locks/")
show_log 400
assert_ne "" "$held" "the bucket's HEAD was held"
assert_ne "" "$lockput" "the backup wrote its lock"
assert_lt "$config" "$held" "the config was read while the HEAD's answer was held"
assert_lt "$keys" "$held" "... and the keys listed"
assert_lt "$held" "$lockput" "the lock is written only once the bucket is checked"
assert_eq 0 "$(s3_count "$BUCKET" repo/locks/)" "no lock is left"
release

section "an open lists the keys and the index while it reads the config"
hold "GET ^/$BUCKET/repo/config\$ slow 1 1500"
expect_ok "backup, the config's answer held 1.5 s" cf backup -p "$POLICY" || die "backup, config held"
held=$(first_line "^SENT GET /$BUCKET/repo/config\$")
keys=$(first_line "^GET /$BUCKET?.*prefix=repo%2Fkeys%2F")
index=$(first_line "^GET /$BUCKET?.*prefix=repo%2Findex%2F")
show_log 400
assert_ne "" "$held" "the config's answer was held"
assert_ne "" "$keys" "the keys were listed"
assert_ne "" "$index" "the index was listed"
assert_lt "$keys" "$held" "... the keys while the config's answer was held"
assert_lt "$index" "$held" "... and the index too"
assert_eq 1 "$(grep -c "^GET /$BUCKET?.*prefix=repo%2Fkeys%2F" "$PLOG")" "the keys are listed once"
release

section "a restore lists the sets while it opens the repository"
hold "GET ^/$BUCKET/repo/config\$ slow 1 1500"
expect_ok "restore, the config's answer held 1.5 s" cf restore -p "$POLICY" --to "$T/opened" \
    || die "restore, config held"
held=$(first_line "^SENT GET /$BUCKET/repo/config\$")
sets=$(first_line "^GET /$BUCKET?.*prefix=repo%2Fsets%2F")
lockput=$(first_line "^PUT /$BUCKET/repo/locks/")
show_log 600
assert_ne "" "$sets" "the sets were listed"
assert_lt "$sets" "$held" "... while the config's answer was held"
assert_eq 2 "$(grep -c "^GET /$BUCKET?.*prefix=repo%2Fsets%2F" "$PLOG")" \
    "... twice: for the plan, and again once the lock is written"
assert_lt "$lockput" "$(grep -n "^GET /$BUCKET?.*prefix=repo%2Fsets%2F" "$PLOG" | tail -1 | cut -d: -f1)" \
    "... the second after the lock"
snapshot "$ASTERDRIVE_ROOT" "$T/snap-live.json"
snapshot "$T/opened" "$T/snap-opened.json"
compare "... and restored the latest set" "$T/snap-live.json" "$T/snap-opened.json" "${RESTORE_EXCLUDES[@]}"
release

section "a restore reads its first packs while its lock is written"
hold "PUT ^/$BUCKET/repo/locks/ slow 1 1500"
expect_ok "restore, the lock's answer held 1.5 s" cf restore -p "$POLICY" --to "$T/beside" \
    || die "restore, lock held"
held=$(first_line "^SENT PUT /$BUCKET/repo/locks/")
pack=$(first_line "^GET /$BUCKET/repo/data/")
show_log 600
assert_ne "" "$held" "the lock's answer was held"
assert_ne "" "$pack" "packs were read"
assert_lt "$pack" "$held" "... the first while the lock's answer was held"
assert_eq 0 "$(s3_count "$BUCKET" repo/locks/)" "no lock is left"
snapshot "$T/beside" "$T/snap-beside.json"
compare "... and restored the latest set" "$T/snap-live.json" "$T/snap-beside.json" "${RESTORE_EXCLUDES[@]}"
release

section "a backup writes its lock while the key is unlocked"
hold "GET ^/$BUCKET/repo/keys/ slow 1 1500"
mutate_deployment "$ASTERDRIVE_ROOT" --percent 1 --seed 78
expect_ok "backup, the key object's answer held 1.5 s" cf backup -p "$POLICY" || die "backup, key held"
held=$(first_line "^SENT GET /$BUCKET/repo/keys/")
config=$(first_line "^GET /$BUCKET/repo/config")
lockput=$(first_line "^PUT /$BUCKET/repo/locks/")
locks=$(first_line "^GET /$BUCKET?.*prefix=repo%2Flocks%2F")
sets=$(first_line "^GET /$BUCKET?.*prefix=repo%2Fsets%2F")
show_log 600
assert_ne "" "$held" "the key object's answer was held"
assert_lt "$config" "$lockput" "the lock is written once the config is read"
assert_lt "$lockput" "$held" "... while the key object's answer was held"
assert_lt "$locks" "$held" "... and the other locks listed then"
assert_lt "$lockput" "$sets" "the sets are listed after the lock is written"
assert_lt "$sets" "$held" "... also while the key's answer was held"
assert_eq 0 "$(s3_count "$BUCKET" repo/locks/)" "no lock is left"
release

section "a wrong passphrase leaves no lock"
hold "GET ^/$BUCKET/repo/keys/ slow 1 1000"
nsets=$(s3_count "$BUCKET" repo/sets/)
expect_fail_desc "backup with a wrong passphrase fails" env COFFER_PASSPHRASE=not-the-passphrase \
    "$COFFER" --no-progress backup -p "$POLICY"
assert_contains "$(last_line "$ERR")" "wrong passphrase" "the error is the passphrase's, not the lock's"
assert_ne "" "$(first_line "^PUT /$BUCKET/repo/locks/")" "the lock was written while the key was read"
assert_eq 0 "$(s3_count "$BUCKET" repo/locks/)" "... and removed"
assert_eq "$nsets" "$(s3_count "$BUCKET" repo/sets/)" "no set was written"
release

section "a backup lists the sets while it looks at the other locks"
nsets=$(s3_count "$BUCKET" repo/sets/)
hold "GET prefix=repo%2Flocks%2F slow 1 1500"
mutate_deployment "$ASTERDRIVE_ROOT" --percent 1 --seed 79
expect_ok "backup, the locks' listing held 1.5 s" cf backup -p "$POLICY" || die "backup, locks held"
held=$(first_line "^SENT GET /$BUCKET?.*prefix=repo%2Flocks%2F")
lockput=$(first_line "^PUT /$BUCKET/repo/locks/")
sets=$(first_line "^GET /$BUCKET?.*prefix=repo%2Fsets%2F")
show_log 600
assert_ne "" "$held" "the locks' listing was held"
assert_ne "" "$sets" "the sets were listed"
assert_lt "$lockput" "$sets" "the sets are listed after the backup's lock is written"
assert_lt "$sets" "$held" "... and while the locks' listing was held"
setput=$(first_line "^PUT /$BUCKET/repo/sets/")
assert_eq 1 "$(head -n "$setput" "$PLOG" | grep -c "^GET /$BUCKET?.*prefix=repo%2Fsets%2F")" \
    "... once: the previous set is found in that listing"
unlock=$(grep -n "^HEAD /$BUCKET/repo/locks/\|^DELETE /$BUCKET/repo/locks/" "$PLOG" | tail -1 | cut -d: -f1)
assert_ne "" "$unlock" "the backup's lock was removed"
assert_eq 0 "$(s3_count "$BUCKET" repo/locks/)" "... and no lock is left"
release
assert_eq "$((nsets + 1))" "$(s3_count "$BUCKET" repo/sets/)" "the backup added its set"

section "a command locked before it looks at the sets lists them while it looks at the other locks"
hold "GET prefix=repo%2Flocks%2F slow 1 1500"
expect_ok "verify, the locks' listing held 1.5 s" cf verify -p "$POLICY" || die "verify, locks held"
held=$(first_line "^SENT GET /$BUCKET?.*prefix=repo%2Flocks%2F")
lockput=$(first_line "^PUT /$BUCKET/repo/locks/")
sets=$(first_line "^GET /$BUCKET?.*prefix=repo%2Fsets%2F")
show_log 600
assert_ne "" "$held" "the locks' listing was held"
assert_lt "$lockput" "$sets" "verify lists the sets after its lock is written"
assert_lt "$sets" "$held" "... and while the locks' listing was held"
assert_eq 1 "$(grep -c "^GET /$BUCKET?.*prefix=repo%2Fsets%2F" "$PLOG")" "... once"
release

section "a backup removes its lock while it lists the repository's figures"
hold "GET prefix=repo%2Fsets%2F slow 2 1500"
mutate_deployment "$ASTERDRIVE_ROOT" --percent 1 --seed 78
expect_ok "backup, both listings of the sets held 1.5 s" cf backup -p "$POLICY" || die "backup, sets held"
show_log 800
assert_eq 2 "$(grep -c "^SENT GET /$BUCKET?.*prefix=repo%2Fsets%2F" "$PLOG")" "both listings of the sets were held"
held=$(grep -n "^SENT GET /$BUCKET?.*prefix=repo%2Fsets%2F" "$PLOG" | tail -1 | cut -d: -f1)
setput=$(first_line "^PUT /$BUCKET/repo/sets/")
delete=$(first_line "^DELETE /$BUCKET/repo/locks/")
assert_ne "" "$delete" "the backup's lock was removed"
assert_lt "$setput" "$held" "the second listing is the figures', after the set's PUT"
assert_lt "$delete" "$held" "... and the lock was removed while it was held"
assert_eq 0 "$(s3_count "$BUCKET" repo/locks/)" "no lock is left"
release

section "a check lists the packs instead of asking for each"
: >"$PLOG"
expect_ok "check" cf check -p "$POLICY" || die "check"
assert_eq 0 "$(grep -c "^HEAD /$BUCKET/repo/data/" "$PLOG")" "no pack is asked for on its own"
assert_gt "$(grep -c "prefix=repo%2Fdata" "$PLOG")" 0 "... the packs are listed"

section "a host with an empty cache fetches each object once"
mutate_deployment "$ASTERDRIVE_ROOT" --percent 5 --seed 81
nindex=$(s3_count "$BUCKET" repo/index/)
: >"$PLOG"
COFFER_CACHE_DIR=$T/cache2 expect_ok "backup 5, empty cache" cf backup -p "$POLICY" || die "backup 5"
assert_eq "$nindex" "$(gets index/)" "each index object fetched once"
assert_eq "$nindex" "$(grep "^GET /$BUCKET/repo/index/" "$PLOG" | sort -u | wc -l)" "... each a different one"
: >"$PLOG"
COFFER_CACHE_DIR=$T/cache2 expect_ok "restore latest, that cache" cf restore -p "$POLICY" --to "$T/r5" --no-validate
assert_eq 0 "$(gets index/)" "... then none again"
assert_eq 0 "$(gets sets/)" "... nor the manifest the backup wrote"
snapshot "$ASTERDRIVE_ROOT" "$T/snap5.json"
snapshot "$T/r5" "$T/snap-r5.json"
compare "restored from cached metadata: byte-identical" "$T/snap5.json" "$T/snap-r5.json" "${RESTORE_EXCLUDES[@]}"

section "a damaged cached copy is never used"
expect_ok "restore latest (its manifest into the cache)" cf restore -p "$POLICY" --to "$T/r5b" --no-validate
latest=$(ls "$repo_dir/sets" | sort | tail -1)
assert_eq "$(awsx s3 ls "s3://$BUCKET/repo/sets/" | awk '{print $4}' | sort | tail -1)" "$latest" \
    "(the newest set is cached)"
# flip the bits of one byte (writing a fixed byte leaves the copy intact
# when the byte already has that value)
"$PY" - "$repo_dir/sets/$latest" <<'PYEOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[200] ^= 0xFF
open(p, "wb").write(bytes(b))
PYEOF
: >"$PLOG"
expect_ok "restore latest over a damaged copy" cf restore -p "$POLICY" --to "$T/r6" --no-validate
assert_gt "$(gets "sets/$latest")" 0 "the manifest was fetched from the store"
snapshot "$T/r6" "$T/snap-r6.json"
compare "restored byte-identical" "$T/snap5.json" "$T/snap-r6.json" "${RESTORE_EXCLUDES[@]}"
assert_eq "$(awsx s3 cp "s3://$BUCKET/repo/sets/$latest" - 2>/dev/null | sha256sum)" \
    "$(sha256sum <"$repo_dir/sets/$latest")" "the damaged copy was replaced by the stored bytes"
# A copy that matches its trailer but not its envelope (rewritten by
# hand): the index object is read from the store.
idx=$(ls "$repo_dir/index" | head -1)
"$PY" - "$repo_dir/index/$idx" <<'PYEOF'
import hashlib, sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
body = b[:-32]
body[len(body) // 2] ^= 0xFF
open(p, "wb").write(bytes(body) + hashlib.sha256(bytes(body)).digest())
PYEOF
: >"$PLOG"
expect_ok "backup over a forged copy" cf backup -p "$POLICY"
assert_eq 1 "$(gets "index/$idx")" "the index object was fetched from the store"
assert_eq "$(awsx s3 cp "s3://$BUCKET/repo/index/$idx" - 2>/dev/null | sha256sum)" \
    "$(sha256sum <"$repo_dir/index/$idx")" "the forged copy was replaced by the stored bytes"

section "check and verify judge the store, not the cache"
latest=$(ls "$repo_dir/sets" | sort | tail -1)
awsx s3 cp "s3://$BUCKET/repo/sets/$latest" "$T/good.obj" >/dev/null 2>&1 || die "aws s3 cp"
"$PY" -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[len(b) // 2] ^= 1; open(sys.argv[2], "wb").write(bytes(b))' \
    "$T/good.obj" "$T/bad.obj"
awsx s3 cp "$T/bad.obj" "s3://$BUCKET/repo/sets/$latest" >/dev/null 2>&1 || die "aws s3 cp"
expect_rc 3 "check finds the damaged manifest in the store" cf check -p "$POLICY"
assert_contains "$OUT$ERR" "sets/$latest" "... naming it"
expect_rc 3 "verify finds it too" cf verify -p "$POLICY" --set "$latest"
awsx s3 cp "$T/good.obj" "s3://$BUCKET/repo/sets/$latest" >/dev/null 2>&1 || die "aws s3 cp"
expect_ok "check after repairing it" cf check -p "$POLICY"

section "copies of removed objects are removed"
expect_ok "forget set 1" cf forget -p "$POLICY" "$SET1"
expect_ok "prune" cf prune -p "$POLICY" --max-unused 0
expect_ok "sets" cf sets -p "$POLICY"
assert_absent "$repo_dir/sets/$SET1"
expect_ok "backup 6" cf backup -p "$POLICY"
assert_eq "$(s3_count "$BUCKET" repo/index/)" "$(find "$repo_dir/index" -type f | wc -l)" \
    "the cache holds exactly the index objects the store has"
assert_eq "" "$(find "$CACHE" -name '*.tmp-*')" "no temporary copy left"

section "COFFER_CACHE_DIR=none"
: >"$PLOG"
COFFER_CACHE_DIR=none expect_ok "restore without a cache" cf restore -p "$POLICY" --to "$T/r7" --no-validate
assert_gt "$(gets index/)" 0 "index objects fetched"
finish
