#!/usr/bin/env bash
# Damage: a flipped byte in a pack, an index object and a manifest, in an
# encrypted and in an unencrypted repository. `check` finds and names each
# one (set, path, object) and exits 3; `restore` fails naming it and never
# hands out wrong data (nothing it wrote differs from the original).
HERE=$(cd "$(dirname "$0")" && pwd)
. "${COFFER_SRC:-$HERE/../../..}/tests/e2e/lib.sh"
. "$HERE/lifecycle.sh"
require_coffer
setup_env
export COFFER_PASSPHRASE="damage test"

section "generate, two sets in each repository"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 12 --seed 31
for kind in enc plain; do
    enc=repokey
    [ $kind = plain ] && enc=none
    COFFER_REPO=$T/$kind expect_ok "init $kind" cf init -p "$POLICY" --encryption $enc || die init
done
declare -A SETS
for n in 1 2; do
    [ $n = 2 ] && mutate_deployment "$ASTERDRIVE_ROOT" --percent 5 --seed 32
    for kind in enc plain; do
        COFFER_REPO=$T/$kind backup_set -p "$POLICY"
        SETS[$kind$n]=$SET
    done
    snapshot "$ASTERDRIVE_ROOT" "$T/snap$n.json"
done

# nothing_wrong DIR: every regular file restored under DIR equals the
# file of the live tree (set 2's state); absent files are fine
nothing_wrong() {
    local bad=0 f
    [ -d "$1" ] || { echo 0; return; }
    while IFS= read -r -d '' f; do
        cmp -s "$f" "$ASTERDRIVE_ROOT/${f#"$1"/}" || bad=$((bad + 1))
    done < <(find "$1" -type f ! -name '*.db' ! -name '*.db-*' -print0)
    echo $bad
}

for kind in enc plain; do
    section "$kind: healthy"
    export COFFER_REPO=$T/$kind
    expect_ok "$kind: check --read-data passes" cf check -p "$POLICY" --read-data
    S1=${SETS[${kind}1]}
    S2=${SETS[${kind}2]}

    section "$kind: a flipped byte in a pack"
    rm -rf "$T/d" && cp -a "$T/$kind" "$T/d"
    export COFFER_REPO=$T/d
    # a large pack, in the middle: inside some blob. Which set that blob
    # belongs to depends on how the backup's workers filled the packs, so
    # take the largest pack whose damaged blob set 2 needs.
    PK=
    while IFS= read -r cand; do
        flip "$cand" $(( $(stat -c %s "$cand") / 2 ))
        run cf check -p "$POLICY" --read-data
        if [ "$RC" = 3 ] && grep -q "set $S2: " <<<"$ERR"; then PK=$cand; break; fi
        cp -a "$T/$kind/${cand#"$T/d/"}" "$cand"
    done < <(find "$T/d/data" -type f -printf '%s %p\n' | sort -rn | head -8 | cut -d' ' -f2-)
    [ -n "$PK" ] || die "$kind: no large pack holds a blob of set $S2"
    PKEY=${PK#"$T/d/"}
    # the search's --read-data recorded the damage (state/damaged): without
    # that record a check that reads no pack cannot see a flipped byte
    rm -f "$T/d/state/damaged"
    expect_rc 0 "$kind: check without --read-data does not read packs" cf check -p "$POLICY"
    expect_rc 3 "$kind: check --read-data finds it" cf check -p "$POLICY" --read-data
    assert_contains "$ERR" "$PKEY" "$kind: the problem names the pack"
    assert_match "$ERR" "set ($S1|$S2): [^ ]+: chunk [0-9a-f]{64} in $PKEY" "$kind: a problem names set, path, chunk and pack"
    if [ $kind = enc ]; then
        assert_contains "$ERR" "authentication failed" "$kind: the blob fails authentication"
    else
        assert_imatch "$ERR" "hash mismatch|decompress|trailer mismatch" "$kind: the blob fails its check"
    fi
    expect_rc 3 "$kind: then a check without --read-data reports the recorded damage" cf check -p "$POLICY"
    assert_contains "$ERR" "damaged according to an earlier check" "$kind: ... as recorded by the earlier check"
    run cf check -p "$POLICY" --read-data-subset 100%
    assert_eq 3 "$RC" "$kind: check --read-data-subset 100% exit 3"
    expect_rc 3 "$kind: verify --read-data of the set finds it" cf verify -p "$POLICY" --set "$S2" --read-data
    expect_fail_desc "$kind: restore of the damaged set fails" cf restore -p "$POLICY" --set "$S2" --to "$T/r1" --no-validate
    assert_contains "$ERR" "$PKEY" "$kind: restore names the pack"
    assert_match "$ERR" "chunk [0-9a-f]{64}" "$kind: restore names the chunk"
    assert_eq 0 "$(nothing_wrong "$T/r1")" "$kind: restore wrote no wrong data"
    rm -rf "$T/r1"

    section "$kind: a flipped byte in an index object"
    rm -rf "$T/d" && cp -a "$T/$kind" "$T/d"
    IX=$(ls "$T/d/index" | head -1)
    flip "$T/d/index/$IX" 60
    expect_rc 3 "$kind: check finds it" cf check -p "$POLICY"
    assert_contains "$ERR" "index/$IX" "$kind: check names the index object"
    assert_match "$ERR" "set ($S1|$S2): " "$kind: check names the sets it affects"
    expect_fail_desc "$kind: restore fails" cf restore -p "$POLICY" --set "$S2" --to "$T/r2" --no-validate
    assert_contains "$ERR" "index/$IX" "$kind: restore names the index object"
    assert_eq 0 "$(nothing_wrong "$T/r2")" "$kind: restore wrote no wrong data"
    rm -rf "$T/r2"
    expect_ok "$kind: check --rebuild-index repairs it" cf check -p "$POLICY" --rebuild-index
    assert_absent "$T/d/index/$IX" "$kind: the damaged index object is gone"
    restore_compare "$kind: after the rebuild, the set" "$S2" "$T/snap2.json" -p "$POLICY"

    section "$kind: a flipped byte in a manifest"
    rm -rf "$T/d" && cp -a "$T/$kind" "$T/d"
    MSIZE=$(stat -c %s "$T/d/sets/$S2")
    flip "$T/d/sets/$S2" $((MSIZE / 2))
    expect_rc 3 "$kind: check finds it" cf check -p "$POLICY"
    assert_contains "$ERR" "set $S2: sets/$S2" "$kind: check names the set and its manifest object"
    assert_not_contains "$ERR" "set $S1:" "$kind: the other set is not reported"
    expect_fail_desc "$kind: restore of that set fails" cf restore -p "$POLICY" --set "$S2" --to "$T/r3" --no-validate
    assert_contains "$ERR" "sets/$S2" "$kind: restore names the manifest"
    assert_eq 0 "$(nothing_wrong "$T/r3")" "$kind: restore wrote no wrong data"
    rm -rf "$T/r3"
    restore_compare "$kind: the other set still restores" "$S1" "$T/snap1.json" -p "$POLICY"
done

finish
