#!/usr/bin/env bash
# MySQL/MariaDB driver benchmark (not a timed test): on a private MariaDB
# server (tests/tools/mysql_server.sh) with an AsterDrive-shaped database of
# at least 500 MiB, in one run, compare
#   1. coffer's backup wall time (shipped policy, jobs 1, a new repository
#      each time) with `mysqldump --single-transaction` to a file (target:
#      coffer <= mysqldump), with mydumper (Debian package, 1 and 2 threads)
#      reported beside them; coffer runs unencrypted and encrypted (the
#      default; its passphrase key derivation costs ~0.3 s and 64 MiB), and
#      with jobs 2;
#   2. coffer's peak RSS (GNU time %M; target: <= 64 MiB);
#   3. for information: what a second backup adds after a small change (1%
#      of files renamed, 1% new uploads), and restore times (coffer into a
#      fresh schema vs `mysql < dump.sql`);
# and print the figures and ratios. Every dump runs BENCH_PASSES times (default 3),
# alternating with the others; best and median are reported (the buffer pool holds the whole
# database: every tool reads from memory).
#
#   bench/mysql_bench.sh [SCALE]     SCALE 42 (default) ~ 520 MiB of InnoDB data + indexes
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
scale=${1:-42}
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
# Repositories are encrypted by default (as an operator's would be).
export COFFER_PASSPHRASE=${COFFER_PASSPHRASE:-coffer-bench-passphrase}
policy=$src/policies/asterdrive-mysql-local.yaml
policy2=$work/jobs2.yaml
sed 's/^    password_env: MYSQL_PWD$/    password_env: MYSQL_PWD\n    jobs: 2/' "$policy" >"$policy2"

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
# coffer_fresh LABEL POLICY ENCRYPTION: a first backup into a new repository
coffer_fresh() {
    rm -rf "$COFFER_REPO"
    "$coffer" --plugin-dir "$plugins" --no-progress init -p "$2" --encryption "$3" >/dev/null
    time_it "$1" "$coffer" --plugin-dir "$plugins" --no-progress backup -p "$2"
}

load0=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A T R
passes=${BENCH_PASSES:-3}
for pass in $(seq 1 "$passes"); do
    echo "== pass $pass"
    mysqldump_run "mysqldump-$pass"
    T[mysqldump$pass]=$TIME_S R[mysqldump$pass]=$RSS_KB
    dump_size=$(stat -c %s "$work/dump.sql")
    [ "$pass" = "$passes" ] || rm -f "$work/dump.sql"
    coffer_fresh "coffer-$pass" "$policy" none
    T[coffer$pass]=$TIME_S R[coffer$pass]=$RSS_KB
    coffer_fresh "coffer-encrypted-$pass" "$policy" repokey
    T[cofferenc$pass]=$TIME_S R[cofferenc$pass]=$RSS_KB
    coffer_fresh "coffer-jobs2-$pass" "$policy2" none
    T[cofferj$pass]=$TIME_S R[cofferj$pass]=$RSS_KB
    if [ "$have_mydumper" = 1 ]; then
        mydumper_run "mydumper-t1-$pass" 1
        T[myd1$pass]=$TIME_S R[myd1$pass]=$RSS_KB
        mydumper_run "mydumper-t2-$pass" 2
        T[myd2$pass]=$TIME_S R[myd2$pass]=$RSS_KB
        myd_size=$(du -sb "$work/mydumper" | cut -f1)
        rm -rf "$work/mydumper"
    fi
done
# the repository the restore and the second backup use: encrypted, as by default
coffer_fresh "coffer-encrypted-3" "$policy" repokey
repo1=$(du -sb "$COFFER_REPO" | cut -f1)

echo "== restore: mysql < dump.sql, and coffer restore into a fresh schema"
my -e "CREATE DATABASE plain_copy"
time_it "mysql-load" sh -c "mysql --defaults-file='$MYSQL_CLIENT_CNF' plain_copy <'$work/dump.sql'"
T[load]=$TIME_S
rm -f "$work/dump.sql"
my -e "DROP DATABASE plain_copy"
time_it "coffer-restore" "$coffer" --plugin-dir "$plugins" --no-progress restore -p "$policy" --set latest \
    --to "$work/restore" --no-checks --map "database=mysql://coffer@127.0.0.1:$MYSQL_PORT/coffer_copy"
T[restore]=$TIME_S R[restore]=$RSS_KB
my -e "DROP DATABASE coffer_copy"

echo "== 1% change: 1% of files renamed, 1% new uploads; second backup"
files=$(my -N -e "SELECT COUNT(*) FROM $db.files")
my "$db" -e "UPDATE files SET name = CONCAT(name, ' (edited)') WHERE id % 100 = 7; CALL writer_replay($((files / 100)))"
time_it "coffer-backup-after-change" "$coffer" --plugin-dir "$plugins" --no-progress backup -p "$policy"
T[change]=$TIME_S R[change]=$RSS_KB
repo2=$(du -sb "$work/repo" | cut -f1)

python3 - <<EOF
import statistics
MiB = 1048576
P = $passes
T = {$(for k in "${!T[@]}"; do printf '"%s": %s, ' "$k" "${T[$k]}"; done)}
R = {$(for k in "${!R[@]}"; do printf '"%s": %s, ' "$k" "${R[$k]}"; done)}
def runs(name):
    return [T[f"{name}{i}"] for i in range(1, P + 1) if f"{name}{i}" in T]
def fmt(name):
    v = runs(name)
    return ", ".join(f"{x:.2f}" for x in v) + f" s (best {min(v):.2f}, median {statistics.median(v):.2f})"
def rss(name):
    return max(R[f"{name}{i}"] for i in range(1, P + 1) if f"{name}{i}" in R) / 1024
dbsize, dump_size = $dbsize, $dump_size
repo1, repo2 = $repo1, $repo2
have_myd = $have_mydumper
ok = lambda c: "ok" if c else "MISSED"
print()
print(f"MySQL/MariaDB driver benchmark (MariaDB $(my -N -e 'SELECT VERSION()'), scale $scale, $(nproc) CPUs, {P} passes, load average before: $load0)")
print(f"  database size (data + indexes)   {dbsize / MiB:.1f} MiB ({dbsize / 1e6:.0f} MB); mysqldump file {dump_size / MiB:.1f} MiB")
print(f"  mysqldump --single-transaction   {fmt('mysqldump')}, peak RSS {rss('mysqldump'):.1f} MiB")
if have_myd:
    print(f"  mydumper -t 1                    {fmt('myd1')}, peak RSS {rss('myd1'):.1f} MiB")
    print(f"  mydumper -t 2                    {fmt('myd2')}")
print(f"  coffer, jobs 1, unencrypted      {fmt('coffer')}, peak RSS {rss('coffer'):.1f} MiB")
print(f"  coffer, jobs 1, encrypted        {fmt('cofferenc')}, peak RSS {rss('cofferenc'):.1f} MiB")
print(f"  coffer, jobs 2, unencrypted      {fmt('cofferj')}, peak RSS {rss('cofferj'):.1f} MiB")
print(f"  coffer backup after a 1% change  {T['change']:.2f} s, repository {repo1 / MiB:.1f} MiB -> +{(repo2 - repo1) / MiB:.1f} MiB ({(repo2 - repo1) / repo1:.3f})")
print(f"  restore: mysql < dump.sql        {T['load']:.2f} s; coffer restore (jobs 1) {T['restore']:.2f} s")
md = runs("mysqldump")
for name, label in (("coffer", "unencrypted"), ("cofferenc", "encrypted"), ("cofferj", "jobs 2")):
    c = runs(name)
    pairs = [x / y for x, y in zip(c, md)]
    print(f"  coffer {label:<12} / mysqldump: best {min(c) / min(md):.3f}, median {statistics.median(c) / statistics.median(md):.3f},"
          f" per pass {', '.join(f'{x:.2f}' for x in pairs)}  (target <= 1: {ok(min(c) <= min(md))})")
if have_myd:
    c = runs("coffer")
    print(f"  coffer unencrypted / mydumper -t 1, -t 2 (best): {min(c) / min(runs('myd1')):.3f}, {min(c) / min(runs('myd2')):.3f}")
print(f"  peak RSS of coffer, jobs 1: {rss('coffer'):.1f} MiB unencrypted (target <= 64: {ok(rss('coffer') <= 64)}), "
      f"{rss('cofferenc'):.1f} MiB encrypted (includes the core's 64 MiB Argon2id key derivation)")
EOF
