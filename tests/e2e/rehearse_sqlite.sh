#!/usr/bin/env bash
# coffer rehearse with the shipped SQLite policy on an AsterDrive deployment
# of tens of thousands of rows: every shipped check passes, the doctor
# checks the restored database (never production's), production is unchanged
# while the rehearsal runs and afterwards, nothing is left behind; a set
# that lacks one blob file fails storage-objects, which names it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/rehearse_lib.sh"
require_coffer
POLICY=$COFFER_SRC/policies/asterdrive-sqlite-local.yaml
PROD_DB=$T/live/data/asterdrive.db

rh_db_state() {
    "$PY" - "$PROD_DB" <<'PYEOF'
import hashlib, os, sys
sys.path.insert(0, os.environ["TOOLS"])
import asterlib as al
# a private copy of the file and its -wal: opening the database itself would
# touch its -shm (left by the backup)
ro = al.ReadOnlyDb(sys.argv[1])
conn, close = ro.conn, ro.close
try:
    for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' "
                             "AND name NOT LIKE 'sqlite_%' ORDER BY name").fetchall():
        h = hashlib.sha256()
        n = 0
        for r in conn.execute('SELECT * FROM "%s" ORDER BY 1' % t):
            h.update(repr(r).encode())
            n += 1
        print(t, n, h.hexdigest()[:16])
finally:
    close()
PYEOF
}
rh_scratch_dbs() { :; }
rsql() { # rsql QUERY: one value from a private copy of the production database
    "$PY" - "$PROD_DB" "$1" <<'PYEOF'
import os, sys
sys.path.insert(0, os.environ["TOOLS"])
import asterlib as al
with al.ReadOnlyDb(sys.argv[1]) as conn:
    print("\n".join("|".join(str(x) for x in r) for r in conn.execute(sys.argv[2])))
PYEOF
}

section "an AsterDrive deployment on SQLite"
rh_generate
rh_env
RH_STORED_BLOBS=$(rsql "SELECT COUNT(*) FROM file_blobs WHERE backing = 'stored'")
expect_ok "shipped policy is valid" rcf policy check "$POLICY" || { printf '%s\n' "$ERR" | show; die "policy check"; }
expect_ok "init" rcf init -p "$POLICY" || die "init failed"
rh_backup "backup"

section "rehearse: every check passes against the scratch copy"
rh_rehearse_pass "$RH_CHECKS_LOCAL" "^sqlite://$TMPDIR/coffer-rehearse-[^/]+/root/data/asterdrive.db$"
assert_not_contains "$(cat "$RH_DOCTOR_LOG")" "\"sqlite://$PROD_DB\"" "the doctor never saw the production database"

BLOB=data/uploads/$(rsql "SELECT storage_path FROM file_blobs WHERE backing = 'stored' AND thumbnail_path IS NULL ORDER BY id LIMIT 1")
rh_missing_blob "$BLOB"
finish
