#!/usr/bin/env python3
"""Digests of an AsterDrive-like tree, to check that a restore is complete.

    treesum.py ROOT [--list PREFIX]

Prints one line: "CONTENT META FILES BYTES".
  CONTENT  SHA-256 over every entry's relative path and type, each regular
           file's content, each symlink's target, each hard-link group, and
           each SQLite database's logical content (schema and rows, read
           through a private copy so the tree is never written: a live
           database's -wal file is folded in, not checkpointed away).
  META     SHA-256 over mode bits, owner, group and mtime (seconds) of every
           entry (databases: no mtime; a restore rewrites them).
--list PREFIX writes the entries, one per line, to PREFIX.content and
PREFIX.meta, to compare two trees with diff.
Skipped: data/.tmp, data/.uploads (not backup content) and -wal / -shm /
-journal files (their content is part of the database's digest).
"""

import hashlib
import os
import shutil
import sqlite3
import sys
import tempfile

SKIP_DIRS = ("data/.tmp", "data/.uploads")
SIDE_SUFFIXES = ("-wal", "-shm", "-journal")
SQLITE_MAGIC = b"SQLite format 3\x00"


def is_sqlite(path):
    try:
        with open(path, "rb") as f:
            return f.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def db_digest(path):
    """Logical digest of a database: schema and rows, via a private copy."""
    with tempfile.TemporaryDirectory(prefix="treesum-") as tmp:
        copy = os.path.join(tmp, "db")
        shutil.copyfile(path, copy)
        if os.path.exists(path + "-wal"):
            shutil.copyfile(path + "-wal", copy + "-wal")
        conn = sqlite3.connect(copy)
        h = hashlib.sha256()
        try:
            for line in conn.iterdump():
                h.update(line.encode("utf-8"))
                h.update(b"\n")
        finally:
            conn.close()
        return h.hexdigest()


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def tree_entries(root):
    """Returns (content entries, meta entries, regular files, bytes)."""
    content = []
    meta = []
    links = {}  # (dev, ino) -> [rel] for files with several links
    nfiles = 0
    nbytes = 0
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        keep = []
        for d in sorted(dirnames):
            rel = os.path.join(rel_dir, d)
            if rel in SKIP_DIRS:
                continue
            full = os.path.join(dirpath, d)
            st = os.lstat(full)
            if os.path.islink(full):
                # os.walk lists symlinks to directories as directories
                content.append("L %s -> %s" % (rel, os.readlink(full)))
                meta.append("L %s %d:%d" % (rel, st.st_uid, st.st_gid))
                continue
            keep.append(d)
            content.append("d %s" % rel)
            meta.append(
                "d %s %o %d:%d %d"
                % (rel, st.st_mode & 0o7777, st.st_uid, st.st_gid, int(st.st_mtime))
            )
        dirnames[:] = keep
        for name in sorted(filenames):
            rel = os.path.join(rel_dir, name)
            full = os.path.join(dirpath, name)
            if name.endswith(SIDE_SUFFIXES):
                continue
            st = os.lstat(full)
            owner = "%d:%d" % (st.st_uid, st.st_gid)
            if os.path.islink(full):
                content.append("L %s -> %s" % (rel, os.readlink(full)))
                meta.append("L %s %s" % (rel, owner))
                continue
            if not os.path.isfile(full):
                content.append("S %s %o" % (rel, st.st_mode >> 12))
                continue
            nfiles += 1
            nbytes += st.st_size
            if st.st_nlink > 1:
                links.setdefault((st.st_dev, st.st_ino), []).append(rel)
            mode = st.st_mode & 0o7777
            if is_sqlite(full):
                content.append("D %s %s" % (rel, db_digest(full)))
                meta.append("D %s %o %s" % (rel, mode, owner))
            else:
                content.append("F %s %d %s" % (rel, st.st_size, file_digest(full)))
                meta.append("F %s %o %s %d" % (rel, mode, owner, int(st.st_mtime)))
    for group in links.values():
        if len(group) > 1:
            content.append("H " + " = ".join(sorted(group)))
    content.sort()
    meta.sort()
    return content, meta, nfiles, nbytes


def digest(lines):
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def main():
    args = sys.argv[1:]
    listfile = None
    if len(args) == 3 and args[1] == "--list":
        listfile = args[2]
        args = args[:1]
    if len(args) != 1:
        sys.stderr.write("usage: treesum.py ROOT [--list PREFIX]\n")
        return 2
    content, meta, nfiles, nbytes = tree_entries(args[0])
    if listfile:
        for suffix, lines in ((".content", content), (".meta", meta)):
            with open(listfile + suffix, "w") as f:
                for line in lines:
                    f.write(line + "\n")
    print("%s %s %d %d" % (digest(content), digest(meta), nfiles, nbytes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
