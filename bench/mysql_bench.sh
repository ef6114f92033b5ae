#!/usr/bin/env bash
# MySQL/MariaDB driver benchmark (not a timed test): on a private MariaDB
# server (tests/tools/mysql_server.sh) with an AsterDrive-shaped database of
# at least 500 MB, in one run, compare
#   1. coffer's backup wall time with `mysqldump --single-transaction` to a
#      file (target: coffer <= mysqldump), with mydumper (Debian package)
#      reported beside them;
#   2. coffer's peak RSS (GNU time %M; target: <= 64 MiB);
#   3. what a second backup adds after a small change (1% of rows updated,
#      1% new uploads), and restore times (coffer into a fresh schema vs
#      `mysql < dump.sql`), for information;
# and print the figures and ratios. Each dump runs twice, alternating, and
# the best time counts (the first pass also warms the buffer pool).
#
#   bench/mysql_bench.sh [SCALE]     SCALE 40 (default) ~ 600 MiB of InnoDB data
#
# Needs: a built coffer (COFFER_BUILD, default build/) with db_mysql.so,
# mariadb-server, mariadb-client (mysqldump), mydumper, /usr/bin/time.
# KEEP_TMP=1 keeps the work directory. Passwords reach every tool through
# MYSQL_PWD or a 0600 defaults file, never argv.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${COFFER_BUILD:-$src/build}
coffer=${COFFER:-$build/coffer}
plugins=${COFFER_PLUGIN_BUILD_DIR:-$build/plugins}
scale=${1:-40}
[ -x "$coffer" ] || { echo "mysql_bench: no coffer at $coffer (build first, or set COFFER_BUILD)" >&2; exit 1; }
[ -f "$plugins/db_mysql.so" ] || { echo "mysql_bench: no db_mysql.so in $plugins" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "mysql_bench: GNU time missing (apt-get install time)" >&2; exit 1; }
command -v mysqldump >/dev/null || { echo "mysql_bench: mysqldump missing (apt-get install mariadb-client)" >&2; exit 1; }
have_mydumper=1
command -v mydumper >/dev/null || have_mydumper=0

work=$(mktemp -d "${TMPDIR:-/var/tmp}/coffer-mysqlbench.XXXXXX")
chmod 755 "$work"
cleanup() {
    "$src/tests/tools/mysql_server.sh" stop "$work/mysql" >/dev/null 2>&1 || true
    if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# A buffer pool that holds the whole database: every tool reads from memory.
export MYSQL_SERVER_ARGS="--innodb-buffer-pool-size=${BENCH_BUFFER_POOL:-1G} ${MYSQL_SERVER_ARGS:-}"
eval "$("$src/tests/tools/mysql_server.sh" start "$work/mysql" | sed 's/^/export /')"
export MYSQL_PWD=$MYSQL_TEST_PASSWORD
my() { mysql --defaults-file="$MYSQL_CLIENT_CNF" "$@"; }
db=asterdrive

echo "== loading the AsterDrive-shaped database (scale $scale)"
t0=$(date +%s)
my -e "CREATE DATABASE coffer_ctl; CREATE TABLE coffer_ctl.writer_ctl (id INT PRIMARY KEY, stop INT NOT NULL);
       INSERT INTO coffer_ctl.writer_ctl VALUES (1, 0); CREATE DATABASE $db"
my "$db" <"$src/tests/plugins/db_mysql/asterdrive_mysql.sql"
my "$db" -e "CALL seed($scale)"
my "$db" -e "ANALYZE TABLE files, file_blobs, file_revisions, shares" >/dev/null
dbsize=$(my -N -e "SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$db'")
rows=$(my -N -e "SELECT SUM(TABLE_ROWS) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$db'")
echo "database: $((dbsize / 1048576)) MiB (data + indexes), ~$rows rows, loaded in $(($(date +%s) - t0)) s"
[ "$dbsize" -ge $((500 * 1024 * 1024)) ] || echo "warning: the database is smaller than 500 MiB; raise SCALE"

# The deployment around it (small files) and the shipped policy.
root=$work/live
url="mysql://coffer@127.0.0.1:$MYSQL_PORT/$db"
mkdir -p "$root/data/uploads/ab/cd" "$root/data/avatar/user/1/v1"
printf '[auth]\njwt_secret = "%064d"\n[database]\nurl = "%s"\n' 0 "$url" >"$root/data/config.toml"
head -c 65536 /dev/urandom >"$root/data/uploads/ab/cd/abcd0001"
export ASTERDRIVE_ROOT=$root COFFER_REPO=$work/repo ASTERDRIVE_STOP=true ASTERDRIVE_START=true
export ASTERDRIVE_DOCTOR=true ASTERDRIVE_DATABASE_URL=$url
policy=$src/policies/asterdrive-mysql-local.yaml
policy2=$work/jobs2.yaml
sed 's/^    password_env: MYSQL_PWD$/    password_env: MYSQL_PWD\n    jobs: 2/' "$policy" >"$policy2"
"$coffer" --plugin-dir "$plugins" --no-progress init -p "$policy" >/dev/null
export COFFER_REPO=$work/repo2
"$coffer" --plugin-dir "$plugins" --no-progress init -p "$policy2" >/dev/null
export COFFER_REPO=$work/repo

# mydumper reads the password from a defaults file (0600), not argv.
umask 077
printf '[mydumper]\nuser=coffer\npassword=%s\n' "$MYSQL_PWD" >"$work/mydumper.cnf"
umask 022

# time_it LABEL CMD...: wall seconds and peak RSS (KiB) into TIME_S / RSS_KB
time_it() {
    local label=$1
    shift
    /usr/bin/time -f '%e %M' -o "$work/time.out" "$@" >"$work/$label.out" 2>"$work/$label.err" ||
        { echo "mysql_bench: $label failed:"; tail -5 "$work/$label.err"; exit 1; }
    read -r TIME_S RSS_KB <"$work/time.out"
    printf '   %-28s %8.2f s  %7.1f MiB RSS\n' "$label" "$TIME_S" "$(echo "$RSS_KB / 1024" | bc -l)"
}
mysqldump_run() {
    time_it "$1" sh -c "mysqldump --single-transaction --routines --triggers --events -h 127.0.0.1 \
        -P $MYSQL_PORT -u coffer $db >'$work/dump.sql'"
}
mydumper_run() {
    rm -rf "$work/mydumper"
    time_it "$1" mydumper --defaults-file="$work/mydumper.cnf" -h 127.0.0.1 -P "$MYSQL_PORT" -B "$db" \
        -t "$2" -o "$work/mydumper" --routines --triggers --events
}
coffer_run() {
    time_it "$1" "$coffer" --plugin-dir "$plugins" --no-progress backup -p "$2"
}
best() { python3 -c "import sys; print(min(float(x) for x in sys.argv[1:]))" "$@"; }

declare -A T R
for pass in 1 2; do
    echo "== pass $pass"
    mysqldump_run "mysqldump-$pass"
    T[mysqldump$pass]=$TIME_S R[mysqldump$pass]=$RSS_KB
    dump_size=$(stat -c %s "$work/dump.sql")
    [ "$pass" = 2 ] || rm -f "$work/dump.sql"
    if [ "$pass" = 1 ]; then
        coffer_run "coffer-backup-1" "$policy"
        T[coffer1]=$TIME_S R[coffer1]=$RSS_KB
        repo1=$(du -sb "$work/repo" | cut -f1)
    else
        # same data again: the dump is complete, the repository grows by
        # (nearly) nothing, so this also shows the dump path alone
        coffer_run "coffer-backup-1-again" "$policy"
        T[coffer1b]=$TIME_S R[coffer1b]=$RSS_KB
    fi
    export COFFER_REPO=$work/repo2
    coffer_run "coffer-jobs2-$pass" "$policy2"
    T[cofferj$pass]=$TIME_S R[cofferj$pass]=$RSS_KB
    export COFFER_REPO=$work/repo
    if [ "$have_mydumper" = 1 ]; then
        mydumper_run "mydumper-t1-$pass" 1
        T[myd1$pass]=$TIME_S R[myd1$pass]=$RSS_KB
        mydumper_run "mydumper-t2-$pass" 2
        T[myd2$pass]=$TIME_S R[myd2$pass]=$RSS_KB
        myd_size=$(du -sb "$work/mydumper" | cut -f1)
        rm -rf "$work/mydumper"
    fi
done

echo "== restore: mysql < dump.sql, and coffer restore into a fresh schema"
my -e "CREATE DATABASE plain_copy"
time_it "mysql-load" sh -c "mysql --defaults-file='$MYSQL_CLIENT_CNF' plain_copy <'$work/dump.sql'"
T[load]=$TIME_S
rm -f "$work/dump.sql"
my -e "DROP DATABASE plain_copy"
time_it "coffer-restore" "$coffer" --plugin-dir "$plugins" --no-progress restore -p "$policy" --set latest \
    --to "$work/restore" --map "database=mysql://coffer@127.0.0.1:$MYSQL_PORT/coffer_copy"
T[restore]=$TIME_S R[restore]=$RSS_KB
my -e "DROP DATABASE coffer_copy"

echo "== 1% change: 1% of files renamed, 1% new uploads; second backup"
files=$(my -N -e "SELECT COUNT(*) FROM $db.files")
my "$db" -e "UPDATE files SET name = CONCAT(name, ' (edited)') WHERE id % 100 = 7; CALL writer_replay($((files / 100)))"
coffer_run "coffer-backup-2" "$policy"
T[coffer2]=$TIME_S R[coffer2]=$RSS_KB
repo2=$(du -sb "$work/repo" | cut -f1)

python3 - <<EOF
MiB = 1048576
dbsize, dump_size = $dbsize, $dump_size
md = min(${T[mysqldump1]}, ${T[mysqldump2]})
c1, c1b, cj = ${T[coffer1]}, ${T[coffer1b]}, min(${T[cofferj1]}, ${T[cofferj2]})
rss = max(${R[coffer1]}, ${R[coffer1b]}, ${R[coffer2]}) / 1024
rssj = max(${R[cofferj1]}, ${R[cofferj2]}) / 1024
repo1, repo2 = $repo1, $repo2
have_myd = $have_mydumper
ok = lambda c: "ok" if c else "MISSED"
print()
print("MySQL/MariaDB driver benchmark (MariaDB $(my -N -e 'SELECT VERSION()'), scale $scale)")
print(f"  database size (data + indexes)       {dbsize / MiB:9.1f} MiB; mysqldump file {dump_size / MiB:.1f} MiB")
print(f"  mysqldump --single-transaction       {${T[mysqldump1]}:9.2f} s, {${T[mysqldump2]}:.2f} s (best {md:.2f} s)")
if have_myd:
    print(f"  mydumper -t 1                        {${T[myd11]:-0}:9.2f} s, {${T[myd12]:-0}:.2f} s"
          f"   (-t 2: {${T[myd21]:-0}:.2f} s, {${T[myd22]:-0}:.2f} s; output {${myd_size:-0} / MiB:.1f} MiB)")
print(f"  coffer backup (jobs 1), first        {c1:9.2f} s, peak RSS {${R[coffer1]} / 1024:.1f} MiB, repository {repo1 / MiB:.1f} MiB")
print(f"  coffer backup (jobs 1), same data    {c1b:9.2f} s, peak RSS {${R[coffer1b]} / 1024:.1f} MiB")
print(f"  coffer backup (jobs 2)               {${T[cofferj1]}:9.2f} s, {${T[cofferj2]}:.2f} s, peak RSS {rssj:.1f} MiB")
print(f"  coffer backup after a 1% change      {${T[coffer2]}:9.2f} s, repository +{(repo2 - repo1) / MiB:.1f} MiB")
print(f"  restore: mysql < dump.sql            {${T[load]}:9.2f} s; coffer restore {${T[restore]}:.2f} s")
best_c = min(c1, c1b)
print(f"  wall time ratio coffer / mysqldump   {c1 / md:9.3f} (first backup), {best_c / md:.3f} (best)  "
      f"(target <= 1: {ok(c1 / md <= 1.0)})")
print(f"  wall time ratio coffer jobs 2 / mysqldump {cj / md:.3f}")
if have_myd:
    myd = min(${T[myd11]:-0}, ${T[myd12]:-0}, ${T[myd21]:-0}, ${T[myd22]:-0})
    print(f"  wall time ratio coffer / mydumper (best)  {c1 / myd:.3f}")
print(f"  peak RSS of coffer (jobs 1)          {rss:9.1f} MiB (target <= 64: {ok(rss <= 64)}); jobs 2: {rssj:.1f} MiB")
print(f"  second backup growth / first repository    {(repo2 - repo1) / repo1:.3f}")
EOF
