#!/usr/bin/env python3
"""Record the state of a tree (and its SQLite databases) as JSON.

  snapshot.py ROOT OUT.json [--db REL]... [--no-db] [--exclude GLOB]...
  snapshot.py DBFILE OUT.json          (a single database, no tree)

For every path under ROOT (relative, ROOT itself excluded): type (file, dir,
symlink, fifo, socket, chardev, blockdev), mode (permission bits incl.
setuid/setgid/sticky), uid, gid, mtime_ns; files: size and sha256;
symlinks: target; hard links: link_group = the smallest path of the group of
paths inside ROOT sharing the inode (only when the group has >= 2 members).

Databases: data/asterdrive.db when it exists (unless --no-db) plus every
--db (relative to ROOT or absolute). Each is read through the SQLite API in
one read transaction, so WAL content counts: per table the CREATE
statement, row count, and a sha256 per row (SELECT rowid, * ORDER BY
rowid; WITHOUT ROWID tables ordered by all columns, keyed by position),
plus index/trigger/view SQL, user_version and application_id, journal_mode
(informational), and the result of PRAGMA integrity_check. The database is
opened without creating files in ROOT (asterlib.open_ro).

Compare two snapshots with compare.py. Meant for quiescent trees.
"""

import argparse
import fnmatch
import hashlib
import json
import os
import sqlite3
import stat
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import asterlib as al  # noqa: E402


def excluded(rel, globs):
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        for g in globs:
            if fnmatch.fnmatchcase(prefix, g):
                return True
    return False


def ftype(m):
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "chardev"), (stat.S_ISBLK, "blockdev")):
        if test(m):
            return name
    return "other"


def walk_tree(root, globs):
    entries = {}
    inodes = {}
    for dp, dns, fns in os.walk(root):
        dns.sort()
        for n in sorted(dns) + sorted(fns):
            p = os.path.join(dp, n)
            rel = os.path.relpath(p, root)
            if excluded(rel, globs):
                if n in dns:
                    dns.remove(n)
                continue
            st = os.lstat(p)
            e = {"type": ftype(st.st_mode), "mode": "%04o" % stat.S_IMODE(st.st_mode),
                 "uid": st.st_uid, "gid": st.st_gid, "mtime_ns": st.st_mtime_ns}
            if e["type"] == "file":
                e["size"] = st.st_size
                try:
                    e["sha256"] = al.sha256_file(p)
                except OSError as ex:
                    e["sha256"] = "unreadable: %s" % ex.strerror
                if st.st_nlink > 1:
                    inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            elif e["type"] == "symlink":
                e["target"] = os.readlink(p)
            elif e["type"] in ("chardev", "blockdev"):
                e["rdev"] = "%d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
            entries[rel] = e
    for paths in inodes.values():
        if len(paths) >= 2:
            g = min(paths)
            for p in paths:
                entries[p]["link_group"] = g
    return entries


def tag(v):
    if v is None:
        return ["null"]
    if isinstance(v, bytes):
        return ["blob", v.hex()]
    if isinstance(v, float):
        return ["real", repr(v)]
    if isinstance(v, int):
        return ["int", v]
    return ["text", v]


def row_hash(row):
    return hashlib.sha256(json.dumps([tag(v) for v in row], separators=(",", ":"))
                          .encode()).hexdigest()


def snapshot_db(path):
    conn, closer = al.open_ro(path)
    try:
        conn.execute("BEGIN")
        out = {
            "user_version": conn.execute("PRAGMA user_version").fetchone()[0],
            "application_id": conn.execute("PRAGMA application_id").fetchone()[0],
            "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
            "integrity": [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()],
            "tables": {}, "other_schema": {},
        }
        for typ, name, sql in conn.execute(
                "SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall():
            if typ != "table":
                if sql:  # autoindexes have no sql
                    out["other_schema"]["%s %s" % (typ, name)] = sql
                continue
            qn = '"%s"' % name.replace('"', '""')
            try:
                cur = conn.execute("SELECT rowid, * FROM %s ORDER BY rowid" % qn)
                rows = {str(r[0]): row_hash(r[1:]) for r in cur}
            except Exception:  # noqa: BLE001 - WITHOUT ROWID table
                ncol = len(conn.execute("SELECT * FROM %s LIMIT 0" % qn).description)
                order = ",".join(str(i) for i in range(1, ncol + 1))
                cur = conn.execute("SELECT * FROM %s ORDER BY %s" % (qn, order))
                rows = {"#%d" % i: row_hash(r) for i, r in enumerate(cur)}
            h = hashlib.sha256()
            for k in rows:
                h.update(("%s=%s\n" % (k, rows[k])).encode())
            out["tables"][name] = {"sql": sql, "count": len(rows), "hash": h.hexdigest(),
                                   "rows": rows}
        conn.execute("COMMIT")
        return out
    finally:
        closer()


def snapshot_db_safe(path):
    """A database that cannot be read is recorded as such (compare.py then
    reports it) instead of stopping the snapshot."""
    try:
        return snapshot_db(path)
    except (sqlite3.Error, OSError) as e:
        return {"error": str(e), "integrity": ["unreadable: %s" % e], "tables": {},
                "other_schema": {}}


def main():
    ap = argparse.ArgumentParser(description="snapshot a tree and its SQLite databases")
    ap.add_argument("root")
    ap.add_argument("out")
    ap.add_argument("--db", action="append", default=[])
    ap.add_argument("--no-db", action="store_true")
    ap.add_argument("--exclude", action="append", default=[])
    a = ap.parse_args()
    root = os.path.abspath(a.root)
    snap = {"root": root, "entries": {}, "dbs": {}}
    if os.path.isfile(root):
        snap["dbs"]["db"] = snapshot_db_safe(root)
        snap["single_db"] = True
    elif os.path.isdir(root):
        snap["entries"] = walk_tree(root, a.exclude)
        dbs = list(a.db)
        if not a.no_db and not dbs and os.path.exists(os.path.join(root, "data", "asterdrive.db")):
            dbs.append("data/asterdrive.db")
        for d in dbs:
            p = d if os.path.isabs(d) else os.path.join(root, d)
            rel = os.path.relpath(p, root)
            snap["dbs"][rel] = snapshot_db_safe(p)
    else:
        sys.exit("snapshot: %s does not exist" % root)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(snap, f, indent=0, sort_keys=True)
    os.replace(tmp, a.out)
    nrows = sum(t["count"] for d in snap["dbs"].values() for t in d["tables"].values())
    print("snapshot: %s: %d paths, %d databases, %d rows" %
          (root, len(snap["entries"]), len(snap["dbs"]), nrows))


if __name__ == "__main__":
    main()
