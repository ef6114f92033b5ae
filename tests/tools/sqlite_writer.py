#!/usr/bin/env python3
"""Keep writing to a live AsterDrive database while a backup runs.

  sqlite_writer.py DB (--seconds N | --until-file F) [--count-file C]
                   [--sleep-ms MS] [--seed S] [--max-object-kib K]

Each transaction (BEGIN IMMEDIATE ... COMMIT, WAL mode) is one of
  - an upload: the object is written under the default local policy root
    first (as AsterDrive does), then file_blobs (ref_count 1) + files rows
    are inserted and users.storage_used is increased;
  - a copy (about 30%): a files row that reuses an existing stored blob,
    with file_blobs.ref_count + 1 and users.storage_used increased.
Nothing is ever deleted, so every transactionally consistent snapshot of
the database, paired with the object directory captured after it, passes
the doctor (objects written after the snapshot are only "untracked" WARNs),
while a torn copy of the database does not.

Progress: the number of committed transactions is written to --count-file
(atomically, after every commit when given); at exit a JSON line
{"transactions": N, "uploads": U, "copies": C, "bytes": B, "seconds": S}
goes to stdout. Stops after --seconds, when --until-file exists, or on
SIGTERM/SIGINT (finishing the transaction in progress).
"""

import argparse
import json
import os
import random
import signal
import sqlite3
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import asterlib as al  # noqa: E402

stop = False


def on_signal(_sig, _frm):
    global stop
    stop = True


def write_count(path, n):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % n)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description="concurrent AsterDrive database writer")
    ap.add_argument("db")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--seconds", type=float)
    g.add_argument("--until-file")
    ap.add_argument("--count-file")
    ap.add_argument("--sleep-ms", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--max-object-kib", type=int, default=16)
    ap.add_argument("--root", help="deployment root (default: two levels above DB)")
    a = ap.parse_args()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    db = os.path.abspath(a.db)
    root = os.path.abspath(a.root) if a.root else os.path.dirname(os.path.dirname(db))
    rng = random.Random(a.seed)
    content = al.Content(random.Random(a.seed + 1))
    conn = al.open_db(db)
    q = conn.execute
    if q("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        q("PRAGMA journal_mode=WAL")
    default = q("SELECT id FROM storage_policies WHERE is_default=1 AND connector_id='local'").fetchone()
    pols = al.local_policies(conn)
    pid = default[0] if default else pols[0][0]
    base_path, dedup = [(bp, d) for i, bp, d in pols if i == pid][0]
    bw = al.BlobWriter(root, base_path, dedup, content, rng)
    users = [r[0] for r in q("SELECT id FROM users ORDER BY id")]
    folders = {u: [r[0] for r in q("SELECT id FROM folders WHERE owner_user_id=? AND deleted_at IS NULL",
                                   (u,))] for u in users}
    blobs = [r for r in q("SELECT id, size FROM file_blobs WHERE backing='stored' ORDER BY id")]

    t0 = time.time()
    n = uploads = copies = nbytes = 0
    if a.count_file:
        write_count(a.count_file, 0)
    while not stop:
        if a.seconds is not None and time.time() - t0 >= a.seconds:
            break
        if a.until_file and os.path.exists(a.until_file):
            break
        u = rng.choice(users)
        folder = rng.choice(folders[u]) if folders[u] else None
        ts = al.iso(int(time.time()))
        if blobs and rng.random() < 0.3:
            kind = "copy"
            bid, size = rng.choice(blobs)
        else:
            kind = "upload"
            size = rng.randint(1024, a.max_object_kib * 1024)
            key, sha, path, existed = bw.write(size, "random", 0o640)
        for attempt in range(50):
            try:
                if kind == "copy":
                    q("BEGIN IMMEDIATE")
                    q("UPDATE file_blobs SET ref_count=ref_count+1, updated_at=? WHERE id=?", (ts, bid))
                else:
                    q("BEGIN IMMEDIATE")
                    bid = q("INSERT INTO file_blobs (hash,size,policy_id,storage_path,backing,"
                            "thumbnail_path,thumbnail_processor,ref_count,created_at,updated_at) "
                            "VALUES (?,?,?,?,'stored',NULL,NULL,1,?,?)",
                            (sha, size, pid, al.blob_rel(key), ts, ts)).lastrowid
                q("INSERT INTO files (name,folder_id,blob_id,size,owner_user_id,team_id,mime_type,"
                  "is_locked,created_at,updated_at,deleted_at) VALUES (?,?,?,?,?,NULL,?,0,?,?,NULL)",
                  ("live-%d.bin" % n, folder, bid, size, u, "application/octet-stream", ts, ts))
                q("UPDATE users SET storage_used=storage_used+?, updated_at=? WHERE id=?", (size, ts, u))
                q("COMMIT")
                break
            except sqlite3.OperationalError as e:
                try:
                    q("ROLLBACK")
                except sqlite3.Error:
                    pass
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                time.sleep(0.05)
        else:
            sys.exit("sqlite_writer: database stayed locked")
        n += 1
        nbytes += size
        if kind == "upload":
            uploads += 1
            blobs.append((bid, size))
        else:
            copies += 1
        if a.count_file:
            write_count(a.count_file, n)
        if a.sleep_ms > 0:
            time.sleep(a.sleep_ms / 1000.0)
    conn.close()
    print(json.dumps({"transactions": n, "uploads": uploads, "copies": copies, "bytes": nbytes,
                      "seconds": round(time.time() - t0, 3)}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
