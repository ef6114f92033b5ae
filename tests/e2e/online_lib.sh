# shellcheck shell=bash
# Shared steps of the online_*.sh tests (source after lib.sh): online
# backups of an AsterDrive deployment while tests/tools/aster_writer.py
# uploads and purges files, each published set checked against a restore
# of it, and a deployment whose database names an object it lacks.
#
# A test sets POLICY (the online policy) and ASTERDRIVE_ROOT, and may set
#   OL_DB_URL        the live database URL for the writer and the doctor
#                    (default: the deployment's config.toml)
#   OL_RESTORE_MAP   a function printing extra `coffer restore` arguments
#                    for restore N (e.g. --map database=URL), and
#   OL_RESTORED_URL  a function printing the restored database URL of
#                    restore N for the doctor (default: the restored SQLite)
#   OL_BACKUP_LOG_RE a regular expression some line of every backup's
#                    stderr must match (e.g. the file system snapshot taken)
# then calls ol_writer_start, ol_backups N, ol_writer_stop, ol_check_sets,
# ol_broken.

OL_WRITER_RATE=${OL_WRITER_RATE:-150}
# the built drivers (postgres, ...) for every coffer command
export COFFER_PLUGIN_PATH=$COFFER_PLUGIN_BUILD_DIR
declare -a OL_SETS=()
declare -A OL_INCONSISTENT=() OL_MISSING=()

# ol_counts: "TRANSACTIONS UPLOADS PURGES COPIES" of the running writer
ol_counts() { cat "$T/writer.count" 2>/dev/null || echo "0 0 0 0"; }
ol_purges() { ol_counts | awk '{print $3}'; }
ol_uploads() { ol_counts | awk '{print $2}'; }

# ol_writer_selfcheck ROOT N [aster_writer.py args]: the writer alone, as
# fast as it goes, with the doctor after every transaction (committed states
# are doctor-clean); its counts add up and its journal matches the tree.
ol_writer_selfcheck() {
    local root=$1 n=$2 s
    shift 2
    echo "+ aster_writer.py $root --max-ops $n --rate 0 --doctor-every 1 $*"
    "$PY" "$TOOLS/aster_writer.py" "$root" --max-ops "$n" --rate 0 --doctor-every 1 \
        --purge-fraction 0.45 --copy-fraction 0.2 --journal "$T/self.journal" "$@" \
        >"$T/self.json" 2>"$T/self.err"
    assert_eq 0 $? "the writer ran $n transactions, the doctor clean after each" ||
        { show <"$T/self.err"; return 1; }
    s=$(cat "$T/self.json")
    note "writer: $s"
    assert_eq "$n $n" "$(json_get "$s" '"%d %d" % (j["transactions"], j["doctor_runs"])')" "$n transactions, $n doctor runs"
    assert_eq "$n" "$(json_get "$s" 'j["uploads"] + j["purges"] + j["copies"]')" "uploads + purges + copies = transactions"
    assert_gt "$(json_get "$s" 'j["purges"]')" 0 "some purges"
    assert_gt "$(json_get "$s" 'j["objects_deleted"]')" 0 "some purges deleted their object"
    assert_eq "$(json_get "$s" 'j["files_rows_start"] + j["uploads"] + j["copies"] - j["purges"]')" \
        "$(json_get "$s" 'j["files_rows_end"]')" "files rows at the end = start + uploads + copies - purges"
    # the journal against the tree: deleted objects are gone, uploads kept exist
    local bad
    bad=$(awk -v root="$root" '
        $3 == "upload" { up[$6] = 1 }
        $3 == "purge" && $7 == 1 { del[$6] = 1; delete up[$6] }
        END {
            for (p in del) if (system("test -e \"" root "/" p "\"") == 0) print "still there: " p
            for (p in up) if (system("test -f \"" root "/" p "\"") != 0) print "missing: " p
        }' "$T/self.journal")
    assert_eq "" "$bad" "purged objects are gone, uploaded ones that were not purged exist"
}

# ol_writer_start [aster_writer.py args]: uploads and purges until stopped
ol_writer_start() {
    local args=()
    [ -n "${OL_DB_URL:-}" ] && args+=(--database-url "$OL_DB_URL")
    echo "+ aster_writer.py $ASTERDRIVE_ROOT --rate $OL_WRITER_RATE $*"
    rm -f "$T/writer.stop"
    "$PY" "$TOOLS/aster_writer.py" "$ASTERDRIVE_ROOT" "${args[@]}" --until-file "$T/writer.stop" \
        --rate "$OL_WRITER_RATE" --purge-fraction 0.45 --copy-fraction 0.1 \
        --count-file "$T/writer.count" --journal "$T/writer.journal" --summary "$T/writer.json" \
        "$@" >/dev/null 2>"$T/writer.err" &
    OL_WPID=$!
    bg_register "$OL_WPID"
    _ol_started() { [ "$(ol_counts | awk '{print $1}')" -ge 20 ]; }
    wait_for "the writer to commit 20 transactions" 60 _ol_started ||
        die "the writer did not start: $(cat "$T/writer.err")"
}

# ol_writer_stop: stop it; its summary's counts must add up
ol_writer_stop() {
    touch "$T/writer.stop"
    wait "$OL_WPID"
    assert_eq 0 $? "the writer exited cleanly"
    [ -s "$T/writer.json" ] || { fail "the writer left no summary: $(cat "$T/writer.err")"; return 1; }
    local s
    s=$(cat "$T/writer.json")
    note "writer: $s"
    OL_W_PURGES=$(json_get "$s" 'j["purges"]')
    OL_W_UPLOADS=$(json_get "$s" 'j["uploads"]')
    assert_gt "$OL_W_PURGES" 0 "the writer purged files"
    assert_gt "$OL_W_UPLOADS" 0 "the writer uploaded files"
    assert_eq "$(json_get "$s" 'j["files_rows_start"] + j["uploads"] + j["copies"] - j["purges"]')" \
        "$(json_get "$s" 'j["files_rows_end"]')" "files rows at the end = start + uploads + copies - purges"
    assert_eq "$(json_get "$s" 'j["transactions"]')" "$(wc -l <"$T/writer.journal")" \
        "one journal line per writer transaction"
    assert_eq "$(json_get "$s" '"%d %d %d %d" % (j["transactions"], j["uploads"], j["purges"], j["copies"])')" \
        "$(ol_counts)" "the count file holds the final counts"
}

# ol_backups N [POLICY]: N online backups while the writer runs; each
# publishes a set (exit 0, or 3 when marked inconsistent), the writer
# uploaded files while each ran and purged files while they ran (a purge
# needs an old enough file, so a short backup may see none of its own).
ol_backups() {
    local n=$1 p=${2:-$POLICY} i p0 p1 u0 u1 set pstart
    pstart=$(ol_purges)
    for _ in $(seq 1 "$n"); do
        OL_NBACKUP=$((${OL_NBACKUP:-0} + 1))
        i=$OL_NBACKUP
        section "online backup $i while the writer uploads and purges"
        p0=$(ol_purges) u0=$(ol_uploads)
        run cf backup -p "$p" --json
        p1=$(ol_purges) u1=$(ol_uploads)
        if [ "$RC" != 0 ] && [ "$RC" != 3 ]; then
            fail "backup $i: exit $RC (expected 0, or 3 for a set marked inconsistent)"
            printf '%s\n' "$ERR" | show
            continue
        fi
        set=$(json_get "$OUT" 'j["set"]')
        [[ "$set" =~ $SETID_RE ]] || { fail "backup $i printed no set id"; continue; }
        pass "backup $i published $set (exit $RC)"
        note "the writer purged $((p1 - p0)) file(s) during backup $i"
        assert_gt "$u1" "$u0" "the writer uploaded files during backup $i ($u0 -> $u1 uploads)"
        OL_SETS+=("$set")
        printf '%s' "$OUT" >"$T/backup-$set.json"
        local inc nmiss
        inc=$(json_get "$OUT" 'j["inconsistent"]')
        nmiss=$(json_get "$OUT" 'j["missing_references"]')
        OL_INCONSISTENT[$set]=$inc
        OL_MISSING[$set]=$nmiss
        if [ "$RC" = 3 ]; then
            assert_eq True "$inc" "exit 3: the set is marked inconsistent"
        else
            assert_eq "False 0" "$inc $nmiss" "exit 0: the set is consistent, no missing reference"
        fi
        assert_eq "False" "$(json_get "$OUT" 'any(r.get("skipped") for r in j["references"] if r["name"] == "storage-objects")')" \
            "backup $i verified storage-objects against the captured snapshot (not skipped)"
        assert_gt "$(json_get "$OUT" '[r["rows"] for r in j["references"] if r["name"] == "storage-objects"][0]')" 0 \
            "backup $i: storage-objects looked up the snapshot's blob paths"
        [ -n "${OL_BACKUP_LOG_RE:-}" ] && assert_match "$ERR" "$OL_BACKUP_LOG_RE" "backup $i logged /$OL_BACKUP_LOG_RE/"
        note "backup $i: inconsistent=$inc missing=$nmiss refetched=$(json_get "$OUT" 'j["refetched"]')"
        sleep 0.2
    done
    p1=$(ol_purges)
    assert_gt "$p1" "$pstart" "the writer purged files during these $n backups ($pstart -> $p1 purges)"
}

# ol_backup_missing SET CHECK: the missing paths the backup of SET listed
# for CHECK, sorted, one per line
ol_backup_missing() {
    json_get "$(cat "$T/backup-$1.json")" \
        '"\n".join(sorted(m["path"] for m in j["missing_paths"] if m["check"] == "'"$2"'"))'
}

# ol_restore_check SET N: restore SET into $T/restore-N (no validate
# command), run the doctor on it; the restored set's missing blob objects
# (storage-objects) must be exactly the ones its backup listed: none for a
# consistent set.
ol_restore_check() {
    local set=$1 n=$2 R=$T/restore-$2 extra=() want got status problems url
    [ "$(type -t OL_RESTORE_MAP)" = function ] && read -r -a extra <<<"$(OL_RESTORE_MAP "$n")"
    run cf restore -p "$POLICY" --set "$set" --to "$R" --no-validate --json "${extra[@]}"
    local rep=$OUT
    want=$(ol_backup_missing "$set" storage-objects)
    if [ -z "$rep" ]; then
        fail "restore of $set printed no report (exit $RC)"
        printf '%s\n' "$ERR" | show
        return 1
    fi
    status=$(json_get "$rep" '[c["status"] for c in j["policy_checks"] if c["name"] == "storage-objects"][0]')
    problems=$(json_get "$rep" '[c["problems"] for c in j["policy_checks"] if c["name"] == "storage-objects"][0]')
    url=sqlite://$R/data/asterdrive.db
    [ "$(type -t OL_RESTORED_URL)" = function ] && url=$(OL_RESTORED_URL "$n")
    "$PY" "$TOOLS/asterdoctor.py" "$R" --database-url "$url" --missing-list "$T/missing-$n" >"$T/doctor-$n.out" 2>&1
    got=$(cat "$T/missing-$n" 2>/dev/null)
    if [ "${OL_INCONSISTENT[$set]}" = True ]; then
        assert_eq 3 "$RC" "restore of inconsistent set $set exits 3 (its checks fail)"
        assert_eq fail "$status" "restored $set: storage-objects fails"
        assert_eq "$(printf '%s\n' "$want" | grep -c .)" "$problems" "restored $set: storage-objects counts the paths the backup listed"
        assert_eq "$want" "$got" "restored $set: the objects missing from the restored tree are exactly the paths the backup listed"
        local p bad=0
        while read -r p; do
            [ -n "$p" ] && [ "$p" != "${OL_BROKEN_REL:-}" ] || continue
            # every one of them was deleted by the writer after its row went
            grep -q " purge [0-9]* [0-9]* $p 1\$" "$T/writer.journal" || { bad=1; fail "missing path $p was never purged by the writer"; }
        done <<<"$want"
        [ $bad = 0 ] && pass "restored $set: every missing path is an object the writer purged (or the broken one)"
    else
        assert_eq 0 "$RC" "restore of consistent set $set exits 0 (every check passes)"
        [ "$RC" = 0 ] || printf '%s\n' "$rep" | show 60
        assert_eq pass "$status" "restored $set: storage-objects passes"
        assert_eq "" "$got" "restored $set: no blob object is missing (doctor)"
        if grep -q '^FAIL' "$T/doctor-$n.out"; then
            fail "restored $set: the doctor fails:"; grep '^FAIL' "$T/doctor-$n.out" | show
        else
            pass "restored $set: the doctor passes ($(tail -1 "$T/doctor-$n.out"))"
        fi
    fi
}

# ol_check_sets: sets --json marks exactly the sets the backups marked;
# every set restored and checked.
ol_check_sets() {
    section "sets --json, and each set restored and checked"
    expect_ok "sets --json" cf sets -p "$POLICY" --json || return 1
    local sets=$OUT set n=0
    for set in "${OL_SETS[@]}"; do
        n=$((n + 1))
        assert_eq "${OL_INCONSISTENT[$set]} ${OL_MISSING[$set]}" \
            "$(json_get "$sets" "' '.join(str(s.get(k)) for s in j if s['id'] == '$set' for k in ('inconsistent', 'missing_references'))")" \
            "sets --json: $set inconsistent/missing_references as its backup said"
        ol_restore_check "$set" "$n"
    done
}

# ol_broken REL: the deployment's database names REL, which is deleted (a
# broken deployment: no backup can ever find it). on_inconsistent: fail
# refuses the set; mark publishes it marked, and verify, restore and
# rehearse report it.
ol_broken() {
    local rel=$1 failp=$T/online-fail.yaml nsets rep set
    section "a broken deployment: the database names $rel, which is gone"
    [ -f "$ASTERDRIVE_ROOT/$rel" ] || die "$rel is not in the deployment"
    OL_BROKEN_REL=$rel
    rm -f "$ASTERDRIVE_ROOT/$rel"
    sed 's/^\(  on_inconsistent:\) mark/\1 fail/' "$POLICY" >"$failp"
    grep -q '^  on_inconsistent: fail' "$failp" || die "cannot make an on_inconsistent: fail policy"
    nsets=$(count_sets "$COFFER_REPO")
    expect_rc 1 "on_inconsistent: fail: the backup is refused" cf backup -p "$failp" --json
    assert_contains "$ERR" "$rel" "the error names the missing path"
    assert_error_line
    assert_eq "$nsets" "$(count_sets "$COFFER_REPO")" "no set published (still $nsets)"
    expect_ok "sets --json" cf sets -p "$POLICY" --json
    assert_eq "$nsets" "$(json_get "$OUT" 'len(j)')" "sets lists no new set"

    expect_rc 3 "on_inconsistent: mark: the set is published, exit 3" cf backup -p "$POLICY" --json
    rep=$OUT
    set=$(json_get "$rep" 'j["set"]')
    [[ "$set" =~ $SETID_RE ]] || { fail "the marked backup printed no set id"; return 1; }
    assert_eq "$((nsets + 1))" "$(count_sets "$COFFER_REPO")" "one set published"
    assert_eq "True 1" "$(json_get "$rep" '"%s %s" % (j["inconsistent"], j["missing_references"])')" \
        "backup --json: inconsistent, one missing reference"
    assert_eq "storage-objects data $rel" \
        "$(json_get "$rep" '" ".join("%s %s %s" % (m["check"], m["component"], m["path"]) for m in j["missing_paths"])')" \
        "backup --json names the check, the component and the path"
    assert_eq 0 "$(json_get "$rep" 'j["refetched"]')" "nothing could be fetched again"
    expect_ok "sets --json" cf sets -p "$POLICY" --json
    assert_eq "True 1" "$(json_get "$OUT" "' '.join(str(s[k]) for s in j if s['id'] == '$set' for k in ('inconsistent', 'missing_references'))")" \
        "sets --json marks the set inconsistent with one missing reference"
    expect_ok "sets" cf sets -p "$POLICY"
    assert_imatch "$(grep "$set" <<<"$OUT")" "inconsistent" "sets shows the set INCONSISTENT"
    expect_rc 3 "verify of the marked set exits 3" cf verify -p "$POLICY" --set "$set"
    assert_contains "$OUT$ERR" "$rel" "verify names the missing path"
    expect_rc 3 "rehearse of the marked set exits 3" cf rehearse -p "$POLICY" --set "$set" --json
    assert_eq "True 1" "$(json_get "$OUT" '"%s %s" % (j["sets"][0].get("inconsistent"), j["sets"][0].get("missing_references"))')" \
        "rehearse --json reports the set inconsistent, one missing reference"
    OL_SETS+=("$set")
    printf '%s' "$rep" >"$T/backup-$set.json"
    OL_INCONSISTENT[$set]=True
    OL_MISSING[$set]=1
    ol_restore_check "$set" broken
}
