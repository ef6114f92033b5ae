#!/usr/bin/env bash
# A database component restored from object storage reads its stream
# ahead: on the real Ceph RGW behind a recording proxy that holds every
# answer for a pack 400 ms, several ranged reads of the stream are asked
# before the first answer leaves the proxy (one at a time, each would wait
# for the one before). The restored database equals the source, and a
# restore that stops part way (a pack of the stream gone) names the
# missing object and leaves no database behind.
. "$(dirname "$0")/lib.sh"
require_coffer
T_RGW_LIB=$COFFER_SRC/tests/plugins/storage_s3/rgw_lib.sh
# shellcheck disable=SC1090
. "$T_RGW_LIB"
rgw_repo readahead-test

rgw_fault_proxy

section "a deployment whose database spans several chunks"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 2 --seed 17
DB=$ASTERDRIVE_ROOT/data/asterdrive.db
# 8 MiB of incompressible rows in a table of its own: the stream is
# several chunks, stored in more than one ranged read.
pad_database "$DB" 2048 4096
note "database: $(stat -c %s "$DB") bytes"
expect_ok "init" cf init -p "$POLICY" || die "init"
expect_ok "backup" cf backup -p "$POLICY" || die "backup"
dbsum() { "$PY" -c "import sqlite3,sys,hashlib; c=sqlite3.connect(sys.argv[1]); print(hashlib.sha256(b''.join(r[0] for r in c.execute('SELECT b FROM padding ORDER BY id'))).hexdigest(), c.execute('SELECT count(*) FROM files').fetchone()[0])" "$1"; }
want=$(dbsum "$DB")

section "the stream's reads go out together"
echo "GET /$BUCKET/repo/data/ slow 1000 400" >"$RULES"
: >"$PLOG"
expect_ok "restore of the database alone, packs held 400 ms each" \
    cf restore -p "$POLICY" --to "$T/r1" --only database --no-validate || die "restore"
: >"$RULES"
# The log lines before the first held answer left the proxy.
before=$(sed -n "1,/^SENT GET \/$BUCKET\/repo\/data\//p" "$PLOG" | grep -c "^GET /$BUCKET/repo/data/")
note "pack reads asked before the first answer left: $before of $(grep -c "^GET /$BUCKET/repo/data/" "$PLOG")"
assert_gt "$before" 1 "several reads of the stream were on their way at once"
assert_eq "$want" "$(dbsum "$T/r1/data/asterdrive.db")" "the restored database equals the source"

section "a pack of the stream gone"
pack=$(grep -o "^GET /$BUCKET/repo/data/[^ ?]*" "$PLOG" | tail -1 | sed "s|^GET /$BUCKET/||")
[ -n "$pack" ] || die "no pack read found in the proxy log"
awsx s3 rm "s3://$BUCKET/$pack" >/dev/null 2>&1 || die "aws s3 rm"
expect_fail_desc "restore with a pack missing" cf restore -p "$POLICY" --to "$T/r2" --only database --no-validate
assert_contains "$ERR" "${pack#repo/}" "the error names the missing pack"
assert_absent "$T/r2/data/asterdrive.db" "no database is left at the target"

finish
