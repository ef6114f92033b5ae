#!/usr/bin/env python3
"""Stand-in for `aster_drive doctor --deep` on an AsterDrive-0.5-like root.

  asterdoctor.py [ROOT] [--deep] [--database-url URL] [--record FILE]
                 [--missing-list FILE]

ROOT defaults to $COFFER_RESTORE_ROOT when set, else "." (coffer runs
validate commands with `sh -c` in the restored root).

The database is the one named by --database-url, else $COFFER_DB_DATABASE_URL
(what coffer gives a validate command: the restored database), else
data/config.toml's [database] url. URLs: sqlite://PATH (relative: to
ROOT/data), postgres://user@host:port/db, mysql://user@host:port/db[?socket=P].
A server database is read with its CLI client (psql, mariadb) into a private
in-memory SQLite copy, then checked like a SQLite one; its password comes
from $COFFER_DB_DATABASE_PASSWORD_FILE, else PGPASSWORD / MYSQL_PWD.
--record FILE appends one JSON line {"root","database_url","failed","warned"}
(tests use it to see which database a validate command really checked).
--missing-list FILE writes every stored blob object that storage-objects
finds missing, as a path relative to ROOT (as the policy's references
checks name it), one per line, sorted (an empty file when none is).

One line per check:
  PASS name | WARN name: detail | FAIL name: detail
Exit status 0 when no check failed, 1 otherwise (2 on usage errors).

Checks (asterdrive.md, "What doctor --deep checks", plus stricter ones):
  config            data/config.toml exists, [auth] has the six 64-hex secrets,
                    [database] url is set
  db-integrity      the database opens and PRAGMA integrity_check is ok
  foreign-keys      PRAGMA foreign_key_check is empty
  migrations        seaql_migrations is not empty
  storage-usage     users.storage_used = sum of the user's files.size (trash
                    included) + sizes of non-current, non-retired revisions
  blob-ref-counts   file_blobs.ref_count = files using the blob + non-current,
                    non-retired revisions using it
  file-blobs        files.blob_id / file_revisions.blob_id exist
  storage-objects   every stored blob's object exists (missing = FAIL); every
                    object under a local policy root is a blob path, a
                    thumbnail/preview path of a blob hash, or an upload temp
                    key (else untracked / orphan = WARN)
  object-sizes      object size = file_blobs.size
  content-hashes    (--deep) every stored object's sha256 = file_blobs.hash;
                    content_dedup policies: storage_path is the hash path
  thumbnails        thumbnail_path objects exist (WARN)
  folder-tree       parent exists, same owner scope, no cycles
  shares            exactly one of file_id/folder_id, and it exists
  avatars           uploaded avatars have 512.webp and 1024.webp on disk
The database is opened read-only and nothing in ROOT is changed (see
asterlib.open_ro: a private copy when no -shm exists).
"""

import argparse
import json
import os
import re
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import asterlib as al  # noqa: E402
import asterdb  # noqa: E402

THUMB_RE = re.compile(r"^_(thumb|preview)/[^/]+/1/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})\.webp$")


class Report:
    def __init__(self):
        self.failed = 0
        self.warned = 0

    def result(self, name, fails=(), warns=(), note=None):
        fails, warns = list(fails), list(warns)
        if fails:
            self.failed += 1
            print("FAIL %s: %s" % (name, summarize(fails)))
        elif warns:
            self.warned += 1
            print("WARN %s: %s" % (name, summarize(warns)))
        else:
            print("PASS %s%s" % (name, (" (%s)" % note) if note else ""))
        sys.stdout.flush()


def summarize(items, limit=5):
    s = "; ".join(items[:limit])
    if len(items) > limit:
        s += "; ... and %d more" % (len(items) - limit)
    return "%d problem(s): %s" % (len(items), s)


def check_config(root, rep):
    p = os.path.join(root, "data", "config.toml")
    if not os.path.isfile(p):
        rep.result("config", ["%s is missing" % p])
        return None
    try:
        cfg = al.load_config(root)
    except Exception as e:  # noqa: BLE001 - any parse error is a failure
        rep.result("config", ["%s: cannot parse: %s" % (p, e)])
        return None
    fails = []
    auth = cfg.get("auth", {})
    for k in al.AUTH_SECRETS:
        v = auth.get(k)
        if not isinstance(v, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", v):
            fails.append("[auth] %s missing or not 64 hex digits" % k)
    if not cfg.get("database", {}).get("url"):
        fails.append("[database] url missing")
    rep.result("config", fails)
    return cfg


def db_password():
    pf = os.environ.get("COFFER_DB_DATABASE_PASSWORD_FILE")
    if pf:
        with open(pf, "r", encoding="utf-8") as f:
            return f.read().rstrip("\r\n")
    return None


def open_server_copy(url):
    """Copy the AsterDrive tables of a server database into an in-memory
    SQLite database with asterlib.SCHEMA. Returns (conn, closer, rows)."""
    import sqlite3
    u = asterdb.parse_url(url)
    pw = db_password()
    if pw is None:
        pw = os.environ.get("PGPASSWORD" if u["kind"] == "postgres" else "MYSQL_PWD")
    db = asterdb.ServerDb(u, pw)
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(al.SCHEMA)
    total = 0
    conn.execute("BEGIN")
    for t in asterdb.TABLES:
        cols = [r[1] for r in conn.execute('PRAGMA table_info("%s")' % t)]
        sel = ", ".join(("CASE WHEN %s THEN 1 ELSE 0 END" % db.quote(c))
                        if c in asterdb.BOOL_COLS and db.kind == "postgres" else db.quote(c)
                        for c in cols)
        ins = 'INSERT INTO "%s" VALUES (%s)' % (t, ",".join("?" * len(cols)))
        for row in db.rows("SELECT %s FROM %s" % (sel, t)):
            conn.execute(ins, row)
            total += 1
    conn.execute("COMMIT")
    return conn, conn.close, total


def main():
    ap = argparse.ArgumentParser(description="AsterDrive doctor stand-in")
    ap.add_argument("root", nargs="?", default=os.environ.get("COFFER_RESTORE_ROOT", "."))
    ap.add_argument("--deep", action="store_true")
    ap.add_argument("--database-url", default=os.environ.get("COFFER_DB_DATABASE_URL") or None)
    ap.add_argument("--record", help="append a JSON line with the result to this file")
    ap.add_argument("--missing-list", help="write the missing blob objects to this file")
    a = ap.parse_args()
    root = os.path.abspath(a.root)
    print("doctor: checking %s%s" % (root, " (deep)" if a.deep else ""))
    rep = Report()

    cfg = check_config(root, rep)
    url = a.database_url
    server = False
    if url:
        u = asterdb.parse_url(url)
        server = u["kind"] != "sqlite"
        if not server:
            db = u["path"] if os.path.isabs(u["path"]) else os.path.join(root, "data", u["path"])
        print("doctor: database %s" % u["url"])
    else:
        db = al.db_path_from_config(root, cfg) if cfg else os.path.join(root, "data", "asterdrive.db")
        print("doctor: database sqlite://%s (from config.toml)" % db)
    dbchecks = ["db-integrity", "foreign-keys", "migrations", "storage-usage", "blob-ref-counts",
                "file-blobs", "storage-objects", "object-sizes", "thumbnails", "folder-tree",
                "shares", "avatars"]
    closer = None

    def record():
        if a.record:
            with open(a.record, "a", encoding="utf-8") as f:
                f.write(json.dumps({"root": root, "database_url": url or "sqlite://" + db,
                                    "failed": rep.failed, "warned": rep.warned}) + "\n")

    try:
        if server:
            conn, closer, nrows = open_server_copy(url)
            ic = ["ok"]
        else:
            conn, closer = al.open_ro(db)
            ic = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
    except Exception as e:  # noqa: BLE001
        if closer:
            closer()
        rep.result("db-integrity", ["cannot open %s: %s" % (url or db, e)])
        for c in dbchecks[1:]:
            rep.result(c, ["database unavailable"])
        print("doctor: %d failed, %d warnings" % (rep.failed, rep.warned))
        record()
        return 1
    try:
        conn.execute("BEGIN")  # one read snapshot for every check
        if server:
            rep.result("db-integrity", note="server database, %d rows read" % nrows)
        else:
            rep.result("db-integrity", [] if ic == ["ok"] else ic)
        missing = run_db_checks(root, conn, a.deep, rep)
        if a.missing_list:
            with open(a.missing_list, "w", encoding="utf-8") as f:
                f.writelines(p + "\n" for p in sorted(missing))
        conn.execute("COMMIT")
    finally:
        closer()
    print("doctor: %d failed, %d warnings" % (rep.failed, rep.warned))
    record()
    return 1 if rep.failed else 0


def run_db_checks(root, conn, deep, rep):
    q = conn.execute
    fk = q("PRAGMA foreign_key_check").fetchall()
    rep.result("foreign-keys", ["%s rowid %s -> %s" % (r[0], r[1], r[2]) for r in fk])

    (nmig,) = q("SELECT COUNT(*) FROM seaql_migrations").fetchone()
    rep.result("migrations", [] if nmig else ["seaql_migrations is empty"], note="%d applied" % nmig)

    # storage-usage
    fails = []
    for uid, name, used in q("SELECT id, username, storage_used FROM users ORDER BY id").fetchall():
        want = al.recompute_storage_used(conn, uid)
        if want != used:
            fails.append("user %d (%s): storage_used %d, expected %d" % (uid, name, used, want))
    rep.result("storage-usage", fails)

    # blob-ref-counts
    fails = []
    nf = dict(q("SELECT blob_id, COUNT(*) FROM files GROUP BY blob_id").fetchall())
    nr = dict(q("SELECT blob_id, COUNT(*) FROM file_revisions WHERE is_current=0 AND "
                "retired_at IS NULL AND blob_id IS NOT NULL GROUP BY blob_id").fetchall())
    blobs = q("SELECT id, hash, size, policy_id, storage_path, backing, thumbnail_path, "
              "ref_count FROM file_blobs ORDER BY id").fetchall()
    for bid, _h, _s, _p, _sp, _b, _t, rc in blobs:
        want = nf.get(bid, 0) + nr.get(bid, 0)
        if want != rc:
            fails.append("blob %d: ref_count %d, expected %d" % (bid, rc, want))
    rep.result("blob-ref-counts", fails)

    # file-blobs
    ids = {b[0] for b in blobs}
    fails = ["file %d: blob %d does not exist" % (f, b)
             for f, b in q("SELECT id, blob_id FROM files ORDER BY id") if b not in ids]
    fails += ["revision %d: blob %d does not exist" % (r, b)
              for r, b in q("SELECT id, blob_id FROM file_revisions WHERE blob_id IS NOT NULL "
                            "ORDER BY id") if b not in ids]
    rep.result("file-blobs", fails)

    # storage-objects, object-sizes, hashes, thumbnails
    policies = {pid: (al.resolve(root, bp) if bp else None, dedup)
                for pid, bp, dedup in al.local_policies(conn)}
    missing, untracked, badsize, badhash, thumbs_missing = [], [], [], [], []
    missing_paths = []
    expected = {pid: set() for pid in policies}
    hashes = {pid: set() for pid in policies}
    for bid, h, size, pid, sp, backing, thumb, _rc in blobs:
        if pid not in policies:
            continue  # not a local policy (s3, ...): out of scope here
        base, dedup = policies[pid]
        hashes[pid].add(h)
        if thumb:
            expected[pid].add(thumb)
            if base and not os.path.isfile(os.path.join(base, thumb)):
                thumbs_missing.append("blob %d: %s" % (bid, thumb))
        if backing != "stored":
            continue
        expected[pid].add(sp)
        if not base:
            missing.append("blob %d: policy %d has no base_path" % (bid, pid))
            continue
        path = os.path.join(base, sp)
        try:
            st = os.stat(path)
        except OSError:
            missing.append("blob %d: %s missing" % (bid, path))
            missing_paths.append(os.path.relpath(path, root))
            continue
        if st.st_size != size:
            badsize.append("blob %d: %s is %d bytes, expected %d" % (bid, sp, st.st_size, size))
            continue
        if deep:
            digest = al.sha256_file(path)
            if digest != h:
                badhash.append("blob %d: sha256(%s) = %s, expected %s" % (bid, sp, digest, h))
            elif dedup and sp != al.blob_rel(h):
                badhash.append("blob %d: dedup path %s does not match hash %s" % (bid, sp, h))
    temp_keys = {}
    for pid, key in q("SELECT policy_id, object_temp_key FROM upload_sessions "
                      "WHERE object_temp_key IS NOT NULL"):
        temp_keys.setdefault(pid, set()).add(key)
    for pid, (base, _d) in sorted(policies.items()):
        if not base:
            continue
        if not os.path.isdir(base):
            if any(b[3] == pid and b[5] == "stored" for b in blobs):
                missing.append("policy %d root %s does not exist" % (pid, base))
            continue
        for dp, dns, fns in os.walk(base):
            dns.sort()
            for n in sorted(fns):
                rel = os.path.relpath(os.path.join(dp, n), base)
                if rel in expected[pid] or rel in temp_keys.get(pid, ()):
                    continue
                m = THUMB_RE.match(rel)
                if m and m.group(4) in hashes[pid]:
                    continue
                kind = "orphan thumbnail" if m else "untracked object"
                untracked.append("%s %s" % (kind, os.path.join(base, rel)))
    rep.result("storage-objects", missing, untracked)
    rep.result("object-sizes", badsize)
    if deep:
        rep.result("content-hashes", badhash)
    rep.result("thumbnails", (), thumbs_missing)

    # folder-tree
    fails = []
    folders = {r[0]: r[1:] for r in q("SELECT id, parent_id, owner_user_id, team_id FROM folders")}
    for fid, (parent, owner, team) in sorted(folders.items()):
        if parent is None:
            continue
        if parent not in folders:
            fails.append("folder %d: parent %d does not exist" % (fid, parent))
            continue
        if folders[parent][1:] != (owner, team):
            fails.append("folder %d: owner scope differs from parent %d" % (fid, parent))
        seen, cur = {fid}, parent
        while cur is not None:
            if cur in seen:
                fails.append("folder %d: cycle" % fid)
                break
            seen.add(cur)
            cur = folders.get(cur, (None,))[0]
    for f, folder in q("SELECT id, folder_id FROM files WHERE folder_id IS NOT NULL ORDER BY id"):
        if folder not in folders:
            fails.append("file %d: folder %d does not exist" % (f, folder))
    rep.result("folder-tree", fails)

    # shares
    fails = []
    fileids = {r[0] for r in q("SELECT id FROM files")}
    for sid, fid, fold in q("SELECT id, file_id, folder_id FROM shares ORDER BY id"):
        if (fid is None) == (fold is None):
            fails.append("share %d: needs exactly one of file_id, folder_id" % sid)
        elif fid is not None and fid not in fileids:
            fails.append("share %d: file %d does not exist" % (sid, fid))
        elif fold is not None and fold not in folders:
            fails.append("share %d: folder %d does not exist" % (sid, fold))
    rep.result("shares", fails)

    # avatars
    fails = []
    avatar_dir = al.resolve(root, al.system_config(conn, "avatar_dir", "data/avatar"))
    for uid, key, ver in q("SELECT user_id, avatar_key, avatar_version FROM user_profiles "
                           "WHERE avatar_source='upload' ORDER BY user_id"):
        if not key:
            fails.append("user %d: upload avatar without avatar_key" % uid)
            continue
        if key != "user/%d/v%d" % (uid, ver):
            fails.append("user %d: avatar_key %s does not match version %d" % (uid, key, ver))
        for px in (512, 1024):
            p = os.path.join(avatar_dir, key, "%d.webp" % px)
            if not os.path.isfile(p):
                fails.append("user %d: %s missing" % (uid, p))
    rep.result("avatars", fails)
    return missing_paths


if __name__ == "__main__":
    sys.exit(main())
