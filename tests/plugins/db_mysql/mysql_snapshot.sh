#!/usr/bin/env bash
# database "mysql": backups of an AsterDrive-shaped database (~16 MB) while a
# writer commits, one with a single connection (START TRANSACTION WITH
# CONSISTENT SNAPSHOT, no lock) and one with jobs: 3 (three connections
# sharing one snapshot, taken under a brief FLUSH TABLES WITH READ LOCK);
# each restored into a fresh schema (the second over three connections)
# and compared table by table.
#
# Why the assertion is sound: the writer (writer_run in
# asterdrive_mysql.sql) is one session committing deterministic steps 1, 2,
# 3, ... in order, each recording its number k in writer_state, and each
# touching several tables (a blob row, a file row, the owner's usage,
# sometimes a rename of an old file and a share). The commits are
# serialised, so a consistent snapshot holds exactly the seeded data plus
# steps 1..K for the K it shows, and nothing else. A reference schema
# seeded alike that replays steps 1..K (writer_replay) is the only state a
# correct restore may equal; every table of the restore must equal it byte
# for byte (HEX of every column, rows in primary-key order). A torn capture
# (tables from different moments, or two connections on different
# snapshots) leaves some table off by a step. (Comparing against the live
# source "up to the restored max id" would not do: the writer also renames
# old rows after the snapshot.) The row counts recorded in the set must
# match too (files = seeded rows + K), tying the metadata to the same
# snapshot, and K must lie between the writer's counts before and after
# the backup.
. "$(dirname "$0")/../../e2e/lib.sh"
. "$(dirname "$0")/mysql_lib.sh"
require_coffer
mysql_start
SCALE=${MYSQL_TEST_SCALE:-2}

section "AsterDrive-shaped database (scale $SCALE), deployment, repository"
load_asterdrive asterdrive "$SCALE"
FILES0=$(val asterdrive "SELECT COUNT(*) FROM files")
note "files rows: $FILES0, $(val asterdrive "SELECT ROUND(SUM(DATA_LENGTH + INDEX_LENGTH) / 1048576) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'asterdrive'") MiB"
export ASTERDRIVE_ROOT=$T/live COFFER_REPO=$T/repo ASTERDRIVE_STOP=true ASTERDRIVE_START=true ASTERDRIVE_DOCTOR=true
export ASTERDRIVE_DATABASE_URL=$(url_of asterdrive)
mkdir -p "$ASTERDRIVE_ROOT/data/uploads/ab/cd" "$ASTERDRIVE_ROOT/data/avatar"
printf '[auth]\njwt_secret = "%064d"\n[database]\nurl = "%s"\n' 7 "$ASTERDRIVE_DATABASE_URL" >"$ASTERDRIVE_ROOT/data/config.toml"
head -c 1000 /dev/urandom >"$ASTERDRIVE_ROOT/data/uploads/ab/cd/abcdef"
JOBS3=$T/jobs3.yaml
sed 's/^    password_env: MYSQL_PWD$/    password_env: MYSQL_PWD\n    jobs: 3/' "$MYSQL_POLICY" >"$JOBS3"
grep -q '^    jobs: 3$' "$JOBS3" || die "cannot make the jobs: 3 policy"
expect_ok "jobs: 3 variant of the shipped policy is valid" mcf policy check "$JOBS3"
expect_ok "init" mcf init -p "$MYSQL_POLICY" || die "init failed"

section "start the writer (one session, deterministic steps)"
my asterdrive -e "CALL writer_run(0.002)" >"$T/writer.out" 2>&1 &
WPID=$!
bg_register "$WPID"
kval() { val asterdrive "SELECT k FROM writer_state"; }
writer_started() { [ "$(kval)" -ge 20 ]; }
wait_for "the writer to commit 20 steps" 30 writer_started || die "writer did not start: $(cat "$T/writer.out")"

declare -A SET KB KA
for v in jobs1 jobs3; do
    section "backup ($v) while the writer commits"
    p=$MYSQL_POLICY
    [ $v = jobs3 ] && p=$JOBS3
    KB[$v]=$(kval)
    expect_ok "backup ($v)" mcf backup -p "$p" --json || die "backup $v failed"
    KA[$v]=$(kval)
    SET[$v]=$(json_get "$OUT" 'j["set"]')
    printf '%s\n' "$ERR" >"$T/backup-$v.err"
    assert_gt "${KA[$v]}" "${KB[$v]}" "the writer committed during the backup (k ${KB[$v]} -> ${KA[$v]})"
    if [ $v = jobs1 ]; then
        assert_match "$ERR" 'START TRANSACTION WITH CONSISTENT SNAPSHOT on 1 connection\)' "one connection, no lock"
    else
        assert_match "$ERR" 'FLUSH TABLES WITH READ LOCK, START TRANSACTION WITH CONSISTENT SNAPSHOT on 3 connections' \
            "three connections sharing one snapshot under the read lock"
    fi
    sleep 0.5
done

section "stop the writer"
my -e "UPDATE coffer_ctl.writer_ctl SET stop = 1"
wait "$WPID"
assert_eq 0 $? "writer exited cleanly"
note "writer reached k = $(kval)"

expect_ok "sets --json" mcf sets -p "$MYSQL_POLICY" --json
SETS=$OUT
for v in jobs1 jobs3; do
    set=${SET[$v]}
    section "restore the $v set ($set) and compare with a replay"
    db=restored_$v
    p=$MYSQL_POLICY
    [ $v = jobs3 ] && p=$JOBS3 # three loading connections too
    expect_ok "restore into a fresh schema" \
        mcf restore --no-checks -p "$p" --set "$set" --to "$T/r-$v" --map "database=$(url_of $db)" || continue
    [ $v = jobs3 ] && assert_match "$ERR" 'restored 1 database into .*, 3 connections\)' "loaded over three connections"
    K=$(val $db "SELECT k FROM writer_state")
    note "restored snapshot holds writer steps 1..$K"
    if [ "$K" -ge "${KB[$v]}" ] && [ "$K" -le "${KA[$v]}" ]; then
        pass "K=$K lies between the writer's counts before (${KB[$v]}) and after (${KA[$v]}) the backup"
    else
        fail "K=$K outside [${KB[$v]}, ${KA[$v]}]"
    fi
    ref=ref_$v
    load_asterdrive $ref "$SCALE"
    my $ref -e "CALL writer_replay($K)" || die "replay failed"
    assert_eq "" "$(db_diff $ref $db)" "every table equals seed + steps 1..$K (a consistent snapshot)"
    assert_eq "$((FILES0 + K))" "$(val $db "SELECT COUNT(*) FROM files")" "files = seeded rows + K"
    for t in files file_blobs users shares writer_state; do
        rec=$(json_get "$SETS" "next(s for s in j if s['id'] == '$set')['databases']['database']['rows.asterdrive.$t']")
        assert_eq "$rec" "$(val $db "SELECT COUNT(*) FROM $t")" "recorded row count of $t equals the restored one"
    done
    assert_eq "$(val $db 'SELECT SUM(storage_used) FROM users')" "$(val $db 'SELECT SUM(size) FROM files')" \
        "users.storage_used sums to the files' sizes (no torn upload)"
    my -e "DROP DATABASE $ref"
done
finish
