#!/usr/bin/env bash
# PostgreSQL driver benchmark (not a timed test): on a private PostgreSQL
# server with an AsterDrive-shaped database of at least 500 MB, compare
#   1. coffer's backup wall time with a plain `pg_dump -Fc` to a file,
#      same run, same server (target: <= 1.15x);
#   2. what a second backup adds to the repository after a 1% change of
#      the rows (target: <= 15% of the first backup's repository size);
#   3. coffer's peak RSS (GNU time %M; target: <= 64 MiB).
# and print the figures and ratios.
#
#   bench/pg_bench.sh [SCALE]     SCALE 25 (default) ~ 520 MiB of database
#
# Needs: a built coffer (COFFER_BUILD, default build/), PostgreSQL 15
# server and client packages, /usr/bin/time. Run as root (the server runs
# as `postgres`). KEEP_TMP=1 keeps the work directory.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${COFFER_BUILD:-$src/build}
coffer=${COFFER:-$build/coffer}
plugins=${COFFER_PLUGIN_BUILD_DIR:-$build/plugins}
scale=${1:-25}
[ -x "$coffer" ] || { echo "pg_bench: no coffer at $coffer (build first, or set COFFER_BUILD)" >&2; exit 1; }
[ -f "$plugins/db_postgres.so" ] || { echo "pg_bench: no db_postgres.so in $plugins" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "pg_bench: GNU time missing (apt-get install time)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/coffer-pgbench.XXXXXX")
chmod 755 "$work"
cleanup() {
    "$src/tests/tools/pg_server.sh" stop "$work/pg" >/dev/null 2>&1 || true
    if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

"$src/tests/tools/pg_server.sh" start "$work/pg"
# shellcheck disable=SC1091
. "$work/pg/pg.env"
export PGPASSWORD=$PG_PASSWORD
PSQL=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB")

echo "== loading the AsterDrive-shaped database (scale $scale)"
t0=$(date +%s)
"${PSQL[@]}" -v scale="$scale" -f "$src/tests/plugins/db_postgres/asterdrive_pg.sql" >/dev/null
$PG_ADMIN -d "$PG_DB" -c "VACUUM ANALYZE" >/dev/null 2>&1 || true
dbsize=$("${PSQL[@]}" -Atc "SELECT pg_database_size('$PG_DB')")
echo "database: $((dbsize / 1048576)) MiB, loaded in $(($(date +%s) - t0)) s"
[ "$dbsize" -ge $((500 * 1024 * 1024)) ] || echo "warning: the database is smaller than 500 MiB; raise SCALE"

# The deployment around it (small files) and the shipped policy.
root=$work/live
mkdir -p "$root/data/uploads/ab/cd" "$root/data/avatar/user/1/v1"
printf '[auth]\njwt_secret = "%064d"\n[database]\nurl = "%s"\n' 0 "$PG_URL" >"$root/data/config.toml"
head -c 65536 /dev/urandom >"$root/data/uploads/ab/cd/abcd0001"
export ASTERDRIVE_ROOT=$root COFFER_REPO=$work/repo ASTERDRIVE_STOP=true ASTERDRIVE_START=true
export ASTERDRIVE_DOCTOR=true ASTERDRIVE_DATABASE_URL=$PG_URL
# Repositories are encrypted by default (the figures include the encryption).
export COFFER_PASSPHRASE=${COFFER_PASSPHRASE:-coffer-bench-passphrase}
policy=$src/policies/asterdrive-postgres-local.yaml
cf() { "$coffer" --plugin-dir "$plugins" --no-progress "$@"; }
cf init -p "$policy" >/dev/null

# time_it LABEL CMD...: wall seconds and peak RSS (KiB) into TIME_S / RSS_KB
time_it() {
    local label=$1
    shift
    /usr/bin/time -f '%e %M' -o "$work/time.out" "$@" >"$work/$label.out" 2>"$work/$label.err" ||
        { echo "pg_bench: $label failed:"; tail -5 "$work/$label.err"; exit 1; }
    read -r TIME_S RSS_KB <"$work/time.out"
}

echo "== plain pg_dump -Fc (1/2)"
time_it plain1 "$PG_BIN/pg_dump" -Fc -f "$work/plain.dump" -d "$PG_URL"
plain1=$TIME_S
plain_size=$(stat -c %s "$work/plain.dump")
rm -f "$work/plain.dump"
echo "== coffer backup (first)"
time_it backup1 "$coffer" --plugin-dir "$plugins" --no-progress backup -p "$policy"
b1=$TIME_S rss1=$RSS_KB
repo1=$(du -sb "$work/repo" | cut -f1)
echo "== plain pg_dump -Fc (2/2)"
time_it plain2 "$PG_BIN/pg_dump" -Fc -f "$work/plain.dump" -d "$PG_URL"
plain2=$TIME_S
rm -f "$work/plain.dump"
plain=$(python3 -c "print(min($plain1, $plain2))")

# A 1% change as AsterDrive makes one: 0.5% new uploads (blob + file rows)
# and 0.5% of the files updated in one contiguous range (a folder's files
# renamed/moved). Then, as the worst case, 1% of the rows updated scattered
# uniformly (every 100th row): with the repository's 1 MiB average chunks
# that touches every chunk of those tables.
files=$("${PSQL[@]}" -Atc "SELECT count(*) FROM files")
half=$((files / 200))
echo "== change 1: $half uploads + $half contiguous updates (1% of $files files rows)"
"${PSQL[@]}" -c "INSERT INTO file_blobs (id, hash, size, policy_id, storage_path, ref_count, created_at, updated_at)
      SELECT 200000000 + i, md5('n' || i) || md5('m' || i), 1000 + i, 1, 'ne/w/' || i, 1, now(), now() FROM generate_series(1, $half) i" \
    -c "INSERT INTO files (id, name, folder_id, blob_id, size, owner_user_id, mime_type, created_at, updated_at)
      SELECT 200000000 + i, 'new upload ' || i, 1, 200000000 + i, 1000 + i, 1, 'application/octet-stream', now(), now()
      FROM generate_series(1, $half) i" \
    -c "UPDATE files SET name = name || ' (moved)', folder_id = 2, updated_at = now() WHERE id BETWEEN $((files / 2)) AND $((files / 2 + half - 1))" >/dev/null
echo "== coffer backup (second)"
time_it backup2 "$coffer" --plugin-dir "$plugins" --no-progress backup -p "$policy"
b2=$TIME_S rss2=$RSS_KB
repo2=$(du -sb "$work/repo" | cut -f1)
echo "== change 2 (worst case): every 100th row of files and file_blobs updated"
"${PSQL[@]}" -c "UPDATE files SET name = name || ' (edited)' WHERE id % 100 = 7" \
    -c "UPDATE file_blobs SET ref_count = ref_count + 1 WHERE id % 100 = 7" >/dev/null
echo "== coffer backup (third)"
time_it backup3 "$coffer" --plugin-dir "$plugins" --no-progress backup -p "$policy"
b3=$TIME_S rss3=$RSS_KB
repo3=$(du -sb "$work/repo" | cut -f1)

python3 - "$dbsize" "$plain1" "$plain2" "$plain" "$plain_size" "$b1" "$rss1" "$repo1" "$b2" "$rss2" "$repo2" "$b3" "$rss3" "$repo3" <<'EOF'
import sys
dbsize, p1, p2, plain, psize, b1, rss1, repo1, b2, rss2, repo2, b3, rss3, repo3 = sys.argv[1:]
dbsize, psize, repo1, repo2, repo3, rss1, rss2, rss3 = map(int, (dbsize, psize, repo1, repo2, repo3, rss1, rss2, rss3))
p1, p2, plain, b1, b2, b3 = map(float, (p1, p2, plain, b1, b2, b3))
MiB = 1048576
print()
print("PostgreSQL driver benchmark")
print(f"  database size                 {dbsize / MiB:9.1f} MiB")
print(f"  plain pg_dump -Fc             {p1:9.2f} s, {p2:.2f} s (best {plain:.2f} s), file {psize / MiB:.1f} MiB")
print(f"  coffer backup 1               {b1:9.2f} s, peak RSS {rss1 / 1024:.1f} MiB, repository {repo1 / MiB:.1f} MiB")
print(f"  coffer backup 2 (1% changed)  {b2:9.2f} s, peak RSS {rss2 / 1024:.1f} MiB, repository +{(repo2 - repo1) / MiB:.1f} MiB")
print(f"  coffer backup 3 (1% scattered) {b3:8.2f} s, peak RSS {rss3 / 1024:.1f} MiB, repository +{(repo3 - repo2) / MiB:.1f} MiB")
ratio_t = b1 / plain if plain else float("inf")
ratio_g = (repo2 - repo1) / repo1 if repo1 else float("inf")
ratio_w = (repo3 - repo2) / repo1 if repo1 else float("inf")
rss = max(rss1, rss2, rss3) / 1024
ok = lambda c: "ok" if c else "MISSED"
print(f"  wall time ratio (backup 1 / pg_dump -Fc)   {ratio_t:.3f}  (target <= 1.15: {ok(ratio_t <= 1.15)})")
print(f"  second backup growth / first repository    {ratio_g:.3f}  (target <= 0.15: {ok(ratio_g <= 0.15)})")
print(f"  worst case: 1% of rows scattered / first     {ratio_w:.3f}  (informative: 1 MiB average chunks, a change every ~100 rows)")
print(f"  peak RSS of coffer                         {rss:.1f} MiB  (target <= 64: {ok(rss <= 64)})")
EOF
