#!/usr/bin/env bash
# Every command accepts exactly the options and arguments it uses. Each
# refused command line must exit 2 with one error line naming what was
# refused, and change nothing: the repositories (every file, size, hash and
# mtime), the live tree and the restore destination stay as they were, and
# no stop, start or validate command runs (they touch marker files).
# Then what the strict options are for: forget by set id, backup and
# restore dry runs, --only given twice.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env
export ASTERDRIVE_STOP="touch $T/marker-stop"
export ASTERDRIVE_START="touch $T/marker-start"
export ASTERDRIVE_DOCTOR="touch $T/marker-validate"
P=$POLICY
# The same deployment with a second target, for copy.
P2=$T/two-targets.yaml
make_policy "$P2" "s|^\( *\)location: \(.*COFFER_REPO.*\)\$|\1location: \2\n  - name: second\n    location: $T/repo2|"

# tree_state DIR...: every entry with type, size, mtime, and file hashes
tree_state() {
    local d
    for d in "$@"; do
        echo "== $d"
        [ -d "$d" ] || continue
        (cd "$d" && find . -printf '%P %y %s %T@\n' | sort &&
            find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
    done
}
repo_state() { tree_state "$T/repo" "$T/repo2"; }
# live_state: the live tree's entries, file sizes, mtimes and hashes; not
# directory mtimes nor the database's -shm file, which every SQLite reader
# (a backup too) touches
live_state() {
    (cd "$ASTERDRIVE_ROOT" && find . ! -type d ! -name '*-shm' -printf '%P %y %s %T@\n' | sort &&
        find . -type d | sort && find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
}
markers() { find "$T" -maxdepth 1 -name 'marker-*' -printf '%f ' | sort; }
set_ids() { cf sets -p "$P" | awk '{print $1}' | tr '\n' ' '; }

section "a deployment, two repositories, three sets"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 4 --seed 77
grep -q 'name: second' "$P2" || die "two-target policy not made"
expect_ok "init both targets" cf init -p "$P2" || die "init failed"
for i in 1 2 3; do
    expect_ok "backup $i" cf backup -p "$P" || die "backup failed"
    S[i]=$(last_line "$OUT")
done
expect_ok "copy the newest set to the second target" \
    cf copy -p "$P2" --from primary --to second --set "${S[3]}"
rm -f "$T"/marker-*
RDEST=$T/rdest

section "refused command lines"
# The options each command uses (mirrors core/cli); everything else,
# from the full list below, must be refused by name.
declare -A USES=(
    [init]="policy target encryption json"
    [backup]="policy target json dry-run"
    [sets]="policy target json"
    [restore]="policy target set to in-place only map force no-validate no-checks rollback-objects json dry-run cleanup-previous include exclude include-from salvage"
    [dump]="policy target set force"
    [verify]="policy target set read-data json"
    [forget]="policy target dry-run json keep-last keep-hourly keep-daily keep-weekly keep-monthly keep-yearly keep-within keep-proven"
    [rehearse]="policy target set keep scratch cleanup json"
    [copy]="policy from to set json"
    [unlock]="policy target all json"
    [check]="policy target read-data read-data-subset rebuild-index json"
    [prune]="policy target dry-run max-unused json bypass-governance apply-tombstones"
    [key]="policy target json new-passphrase-file"
    [plugins]="describe policy json"
    [policy]="json"
)
# A command line each command would otherwise run (and act on).
declare -A BASE=(
    [init]="init -p $P"
    [backup]="backup -p $P"
    [sets]="sets -p $P"
    [restore]="restore -p $P --set ${S[3]} --to $RDEST"
    [verify]="verify -p $P"
    [forget]="forget -p $P --keep-last 1"
    [rehearse]="rehearse -p $P --set ${S[1]}"
    [copy]="copy -p $P2 --from primary --to second --set ${S[1]}"
    [unlock]="unlock -p $P --all"
    [check]="check -p $P"
    [prune]="prune -p $P --max-unused 0"
    [key]="key list -p $P"
    [plugins]="plugins"
    [policy]="policy check $P"
    [dump]="dump -p $P config/data/config.toml"
)
# option -> a value when it takes one ("" for a flag)
declare -A VALUE=(
    [policy]="$P" [target]=primary [json]="" [set]="${S[1]}" [to]="$T/elsewhere"
    [in-place]="" [only]=config [map]="data=$T/elsewhere" [force]="" [read-data]=""
    [no-validate]="" [describe]=sqlite [from]=primary [dry-run]="" [rollback-objects]=""
    [all]="" [keep-last]=1 [keep-hourly]=1 [keep-daily]=1 [keep-weekly]=1 [keep-monthly]=1
    [keep-yearly]=1 [keep-within]=1d [encryption]=none [read-data-subset]=50%
    [max-unused]=0 [new-passphrase-file]="$T/newpass" [rebuild-index]=""
    [keep]="" [scratch]="database=postgres://127.0.0.1/x" [cleanup]="" [keep-proven]=1
    [no-checks]=""
    [include]=config/data/config.toml [exclude]=data/x [include-from]="$T/newpass" [salvage]=""
    [bypass-governance]="" [apply-tombstones]=""
)
echo "new-e2e-passphrase" >"$T/newpass"

# Cases: one per line, "WORD<TAB>ARGS", ARGS split on spaces.
CASES=$T/cases
: >"$CASES"
for cmd in "${!BASE[@]}"; do
    for opt in "${!VALUE[@]}"; do
        [[ " ${USES[$cmd]} " == *" $opt "* ]] && continue
        # commands without -p still refuse it; the value follows it
        printf -- '--%s\t%s --%s %s\n' "$opt" "${BASE[$cmd]}" "$opt" "${VALUE[$opt]}" >>"$CASES"
    done
    printf 'stray\t%s stray\n' "${BASE[$cmd]}" >>"$CASES"
    printf -- '--frobnicate\t%s --frobnicate\n' "${BASE[$cmd]}" >>"$CASES"
done
cat >>"$CASES" <<EOF
${S[2]}	verify -p $P ${S[2]}
-x	sets -p $P -x
--dry	backup -p $P --dry
--in	restore -p $P --set ${S[3]} --in
--dry-run	backup -p $P --dry-run=yes
--set	verify -p $P --set ${S[1]} --set ${S[2]}
--set	restore -p $P --set ${S[1]} --set ${S[2]} --to $RDEST
--to	restore -p $P --set ${S[3]} --to $RDEST --to $T/other
--only config	restore -p $P --set ${S[3]} --only config --only config --to $RDEST
--policy	sets -p $P -p $P
--json	backup -p $P --json --json
--keep-last	forget -p $P --keep-last 1 --keep-last 2
--keep-last	forget -p $P --keep-last x
--keep-last	forget -p $P ${S[1]} --keep-last 1
--keep-within	forget -p $P --keep-within 1d ${S[1]}
--set	verify -p $P --set
--to	copy -p $P2 --from primary --to primary
--in-place	restore -p $P --set ${S[3]} --to $RDEST --in-place
--read-data-subset	check -p $P --read-data --read-data-subset 5%
nosuch	restore -p $P --set ${S[3]} --only config --only nosuch --to $RDEST
nosuch	restore -p $P --set ${S[3]} --only nosuch --to $RDEST --dry-run
nosuch	restore -p $P --set ${S[3]} --map nosuch=$T/x --to $RDEST
20000101T000000Z-deadbeef	forget -p $P ${S[1]} 20000101T000000Z-deadbeef
${S[1]:0:12}	forget -p $P ${S[1]:0:12}
${S[1]}	forget -p $P ${S[1]} ${S[1]}
--json	key list -p $P --json --json
--new-passphrase-file	key list -p $P --new-passphrase-file $T/newpass
frob	key frob -p $P
remove	key remove -p $P
-q	sets -p $P -v -q
extra	key list -p $P extra
frob	policy frob $P
extra	policy check $P extra
--encryption	init -p $P --encryption none --encryption repokey
--bogus	--bogus sets -p $P
--plugin-dir	--plugin-dir
EOF
note "$(wc -l <"$CASES") refused command lines"

BEFORE=$(repo_state)
LIVE_BEFORE=$(live_state)
n=0
while IFS=$'\t' read -r word line; do
    n=$((n + 1))
    read -ra argv <<<"$line"
    run "$COFFER" --no-progress "${argv[@]}"
    lines=$(printf '%s\n' "$ERR" | grep -c .)
    # with --json among the arguments stdout carries the same error as an
    # object (docs/json.md); otherwise stdout stays empty
    want_out=""
    if [[ " $line " == *" --json "* ]]; then
        want_out=$(printf '%s' "${ERR#coffer: error: }" | "$PY" -c '
import json, sys
print(json.dumps({"error": {"message": sys.stdin.read(), "exit": 2, "command": sys.argv[1]}}, sort_keys=True))' "${argv[0]}")
        OUT=$(printf '%s' "$OUT" | "$PY" -c 'import json, sys; print(json.dumps(json.load(sys.stdin), sort_keys=True))' 2>&1)
    fi
    if [ "$RC" -eq 2 ] && [[ "$ERR" == *"$word"* ]] && [ "$lines" -eq 1 ] &&
        [[ "$ERR" == "coffer: error: "* ]] && [ "$OUT" = "$want_out" ]; then
        pass "refused ($word): $line"
    else
        fail "coffer $line: expected exit 2 and one error line naming '$word', got exit $RC:"
        { printf '%s\n' "$ERR"; printf '%s\n' "$OUT"; } | show
    fi
    if [ -n "$(markers)" ] || [ -e "$RDEST" ] || [ -e "$T/elsewhere" ]; then
        fail "coffer $line: something ran or was written: markers '$(markers)'"
        rm -rf "$T"/marker-* "$RDEST" "$T/elsewhere"
    fi
    # the full comparison every few cases and at the end (it reads the repository)
    if [ $((n % 10)) -eq 0 ]; then
        now=$(repo_state)
        if [ "$now" != "$BEFORE" ]; then
            diff <(printf '%s\n' "$BEFORE") <(printf '%s\n' "$now") | show
            die "the repository changed during the last 10 cases (up to: coffer $line)"
        fi
    fi
done <"$CASES"
assert_eq "$BEFORE" "$(repo_state)" "the repositories are unchanged by $n refused command lines"
assert_eq "$LIVE_BEFORE" "$(live_state)" "the live tree is unchanged"
assert_eq "" "$(markers)" "no stop, start or validate command ran"
assert_eq "${S[1]} ${S[2]} ${S[3]} " "$(set_ids)" "all three sets are still there"

section "--help lists exactly the options a command uses"
for cmd in "${!USES[@]}"; do
    run "$COFFER" "$cmd" --help
    listed=$(printf '%s\n' "$OUT" | sed -n '/^options:/,$p' | grep -oE '^ +(-[a-z], )?--[a-z-]+' |
        sed -E 's/.*--//' | sort | tr '\n' ' ')
    # shellcheck disable=SC2086 # the list is split into words on purpose
    want=$(printf '%s\n' ${USES[$cmd]} | grep . | sort | tr '\n' ' ')
    assert_eq "$want" "$listed" "coffer $cmd --help lists its options"
done

section "forget SET: exactly the named set"
expect_ok "forget --dry-run ${S[2]}" cf forget -p "$P" --dry-run "${S[2]}"
assert_match "$OUT" "^would remove ${S[2]}" "the dry run names the set"
assert_eq 1 "$(printf '%s\n' "$OUT" | grep -c 'would remove')" "and only that set"
assert_eq "$BEFORE" "$(repo_state)" "forget --dry-run changed nothing"
expect_ok "forget ${S[2]}" cf forget -p "$P" "${S[2]}"
assert_match "$OUT" "^remove +${S[2]}" "forget names the removed set"
assert_eq "${S[1]} ${S[3]} " "$(set_ids)" "exactly ${S[2]} was removed"
AFTER_FORGET=$(repo_state)
expect_rc 2 "forget of a removed set is refused" cf forget -p "$P" "${S[1]}" "${S[2]}"
assert_contains "$ERR" "${S[2]}" "the error names the unknown id"
assert_eq "${S[1]} ${S[3]} " "$(set_ids)" "nothing was removed (${S[1]} is still there)"
assert_eq "$AFTER_FORGET" "$(repo_state)" "the repository is unchanged"

section "backup --dry-run"
head -c 3000000 /dev/urandom >"$ASTERDRIVE_ROOT/data/dry-run-new.bin"
LIVE_BEFORE=$(live_state)
BEFORE=$(repo_state)
expect_ok "backup --dry-run" cf backup -p "$P" --dry-run
assert_contains "$OUT" "nothing was written" "says nothing was written"
assert_contains "$OUT" "would stop the application" "says a real backup would stop the application"
assert_eq "" "$(markers)" "no stop or start command ran"
assert_eq "$BEFORE" "$(repo_state)" "the repositories are byte-identical (files, sizes, hashes, mtimes)"
expect_ok "backup --dry-run --json" cf backup -p "$P" --dry-run --json
assert_eq True "$(json_get "$OUT" 'j["dry_run"]')" "the summary says dry_run"
assert_gt "$(json_get "$OUT" 'j["files"]')" 0 "files counted"
assert_gt "$(json_get "$OUT" 'j["new_bytes"]')" 2999999 "the new 3 MB file counted as new bytes"
assert_eq "$BEFORE" "$(repo_state)" "still byte-identical"
assert_eq "$LIVE_BEFORE" "$(live_state)" "the live tree is untouched"
assert_eq "${S[1]} ${S[3]} " "$(set_ids)" "no set was written"
# a dry run holds no lock: an exclusive forget runs while one is going on
cf backup -p "$P" --dry-run >/dev/null 2>&1 &
DRY=$!
bg_register $DRY
expect_ok "forget --dry-run while a backup dry run goes on" cf forget -p "$P" --keep-last 5
wait $DRY
assert_eq 0 $? "the concurrent backup dry run succeeded"
rm -f "$ASTERDRIVE_ROOT/data/dry-run-new.bin" "$T"/marker-*

section "restore --dry-run"
BEFORE=$(repo_state)
LIVE_BEFORE=$(live_state)
expect_ok "restore --dry-run --to" cf restore -p "$P" --set "${S[3]}" --to "$RDEST" --dry-run
assert_absent "$RDEST" "nothing written at the destination"
assert_eq "config database data" "$(printf '%s\n' "$OUT" | awk '$1 ~ /^[0-9]+\.$/ {print $2}' | tr '\n' ' ' | sed 's/ $//')" \
    "the plan lists the components in restore order"
assert_contains "$OUT" "$RDEST" "the plan names the destination"
assert_match "$OUT" 'data .*files, ' "the plan counts files"
assert_contains "$OUT" "validate 'doctor'" "the plan names the validate command"
expect_ok "restore --dry-run --in-place" cf restore -p "$P" --set "${S[3]}" --in-place --dry-run
assert_contains "$OUT" "would run the stop command" "the in-place plan names the stop command"
assert_eq "" "$(markers)" "no stop, start or validate command ran"
assert_eq "$LIVE_BEFORE" "$(live_state)" "the live tree is untouched"
expect_ok "restore --dry-run --json --only data --only config" \
    cf restore -p "$P" --set "${S[3]}" --to "$RDEST" --dry-run --json --only data --only config
assert_eq "config data" "$(json_get "$OUT" '" ".join(c["name"] for c in j["components"])')" \
    "two --only: both components, in restore order"
assert_eq 0 "$(json_get "$OUT" 'len(j["validate"])')" "no validate commands with --only"
assert_eq "$BEFORE" "$(repo_state)" "the repositories are unchanged"

section "restore --only config --only database"
expect_ok "restore --only config --only database" \
    cf restore -p "$P" --set "${S[3]}" --only config --only database --to "$T/r-two"
assert_exists "$T/r-two/data/config.toml" "config restored"
assert_exists "$T/r-two/data/asterdrive.db" "database restored"
assert_eq "data/asterdrive.db data/config.toml" \
    "$(cd "$T/r-two" && find . ! -type d | sed 's|^\./||' | sort | tr '\n' ' ' | sed 's/ $//')" \
    "nothing of the data component"
assert_eq "ok" "$(sql "$T/r-two/data/asterdrive.db" 'pragma integrity_check')" "the database is intact"
assert_eq "" "$(markers)" "no validate command ran for a partial restore"

finish
