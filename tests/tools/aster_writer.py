#!/usr/bin/env python3
"""Keep uploading and purging files in a live AsterDrive deployment while a
backup runs, on SQLite or on PostgreSQL, as AsterDrive does it.

  aster_writer.py ROOT (--seconds N | --until-file F | --max-ops N)
                  [--rate OPS] [--purge-fraction P] [--copy-fraction C]
                  [--count-file F] [--summary F] [--journal F]
                  [--seed S] [--min-object-kib K] [--max-object-kib K]
                  [--database-url URL] [--password-file F]
                  [--purge-only-own] [--purge-min-age SECONDS] [--doctor-every N]

The database is the one data/config.toml names ([database] url: sqlite
relative to data/, or postgres://...), or --database-url. A PostgreSQL
database is reached through one long-lived psql process (no Python driver
needed); its password comes from --password-file, else PGPASSWORD.

Operations, one transaction each, at a steady --rate per second (0: as fast
as possible):
  upload  the object is written first (temporary file under the policy
          root's .staging/, fsync, rename to <base>/<k0:2>/<k2:4>/<k>,
          fsync of the directory); then one transaction inserts the
          file_blobs row (ref_count 1) and the files row and adds the size
          to users.storage_used;
  copy    a files row that reuses a blob (ref_count + 1, storage_used +);
  purge   one transaction deletes a file's shares and row, lowers the
          blob's ref_count and the owner's storage_used, and deletes the
          blob row when its ref_count reaches 0; it commits, and THEN the
          object is deleted (with the blob's thumbnails and previews when
          no other blob has its hash). Purged files are the writer's own and
          those of the deployment without revisions whose blob no revision
          names (--purge-only-own: only the writer's); the writer's own
          once they are --purge-min-age seconds old (default 0).
So every committed state satisfies the doctor: an object exists for every
stored blob row, usage and reference counts add up; the only thing a
snapshot can see between two commits is an object without a row yet (an
"untracked" warning) or, after a purge, no object and no row.

Progress: --count-file holds one line "TRANSACTIONS UPLOADS PURGES COPIES"
(replaced atomically after every commit, written as 0 0 0 0 at start).
--journal appends one line per operation, flushed at once:
  SEQ UNIX_TIME OP FILE_ID BLOB_ID PATH OBJECT_DELETED
where PATH is the object's path relative to ROOT (as the policy's
references checks name it; "-" for a virtual-empty blob, which has none)
and OBJECT_DELETED is 1 when a purge removed the object (0 when another row
still uses it; always 0 for upload, copy).
At exit a JSON summary goes to stdout and to --summary:
  {"transactions", "uploads", "purges", "copies", "objects_deleted",
   "bytes_uploaded", "files_rows_start", "files_rows_end", "seconds",
   "rate", "doctor_runs", "kind"}
--doctor-every N runs tests/tools/asterdoctor.py --deep on the deployment
after every N transactions (the writer waits for it: a committed state) and
exits 1 at once when it finds a failure.

Stops after --seconds, after --max-ops transactions, when --until-file
exists, or on SIGTERM/SIGINT (the operation in progress is finished).
"""

import argparse
import collections
import glob
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import asterlib as al  # noqa: E402
import asterdb  # noqa: E402

stop = False


def on_signal(_sig, _frm):
    global stop
    stop = True


# ---------------------------------------------------------------- databases

class SqliteDb:
    """The deployment's SQLite database (WAL), one write transaction at a
    time with BEGIN IMMEDIATE; busy/locked errors retry the transaction."""

    kind = "sqlite"

    def __init__(self, path):
        self.conn = al.open_db(path)
        if self.conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            self.conn.execute("PRAGMA journal_mode=WAL")

    def rows(self, sql, params=()):
        return self.conn.execute(sql, params).fetchall()

    def transaction(self, fn):
        for _attempt in range(100):
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                r = fn(self)
                self.conn.execute("COMMIT")
                return r
            except sqlite3.OperationalError as e:
                try:
                    self.conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                time.sleep(0.05)
        sys.exit("aster_writer: the database stayed locked")

    def close(self):
        self.conn.close()


def _lit(v):
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return "'%s'" % str(v).replace("'", "''")


class PsqlDb:
    """A PostgreSQL database through one psql process: each call sends
    statements followed by an \\echo marker and reads rows up to it.
    ON_ERROR_STOP: any SQL error ends psql, and the writer with it."""

    kind = "postgres"
    END = "__aster_writer_end__"
    NULL = "\\N"

    def __init__(self, url, password):
        u = asterdb.parse_url(url)
        if u["kind"] != "postgres":
            raise ValueError("only sqlite:// and postgres:// databases: %s" % url)
        client = asterdb.ServerDb(u, password)  # finds psql, builds the environment
        argv = [client.client, "-X", "-q", "-A", "-t", "-F", "\x1f", "-P", "null=" + self.NULL,
                "-v", "ON_ERROR_STOP=1", "-d", u["url"]]
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=client.env)
        self.call("SET client_min_messages = warning;")

    def call(self, script):
        self.p.stdin.write((script + "\n\\echo " + self.END + "\n").encode())
        self.p.stdin.flush()
        out = []
        while True:
            line = self.p.stdout.readline()
            if not line:
                err = self.p.stderr.read().decode(errors="replace").strip()
                sys.exit("aster_writer: psql: %s" % (err or "exited"))
            line = line.decode().rstrip("\n")
            if line == self.END:
                return out
            out.append(tuple(None if f == self.NULL else f for f in line.split("\x1f")))

    def rows(self, sql, params=()):
        parts = sql.split("?")
        if len(parts) != len(params) + 1:
            raise ValueError("placeholders do not match: %s" % sql)
        text = parts[0] + "".join(_lit(v) + p for v, p in zip(params, parts[1:]))
        return [tuple(_num(x) for x in r) for r in self.call(text.rstrip().rstrip(";") + ";")]

    def transaction(self, fn):
        self.call("BEGIN;")
        r = fn(self)
        self.call("COMMIT;")
        return r

    def close(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        self.p.wait()


def _num(x):
    if x is None:
        return None
    try:
        return int(x)
    except ValueError:
        return x


# ---------------------------------------------------------------- objects

def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_object(base, key, data, mode=0o640):
    """Object written as AsterDrive does: temporary file, fsync, rename into
    place, fsync of the directory. Returns the absolute path."""
    staging = os.path.join(base, ".staging")
    al.makedirs(staging)
    tmp = os.path.join(staging, "writer-%d.tmp" % os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    path = os.path.join(base, al.blob_rel(key))
    d = os.path.dirname(path)
    al.makedirs(d)
    os.rename(tmp, path)
    fsync_dir(d)
    return path


def unlink(path):
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


# ---------------------------------------------------------------- the writer

class Writer:
    def __init__(self, root, db, a):
        self.root, self.db, self.a = root, db, a
        self.rng = random.Random(a.seed)
        q = db.rows
        pols = {}
        for pid, conn_id, cfg in q("SELECT id, connector_id, storage_config FROM storage_policies"):
            if conn_id != "local":
                continue
            cfg = json.loads(cfg) if isinstance(cfg, str) else cfg
            if cfg.get("base_path"):
                pols[pid] = cfg["base_path"].rstrip("/")
        default = [r[0] for r in q("SELECT id FROM storage_policies WHERE is_default = ? "
                                   "AND connector_id = 'local' ORDER BY id",
                                   (True if db.kind == "postgres" else 1,))]
        if not pols:
            sys.exit("aster_writer: no local storage policy")
        self.pid = default[0] if default else sorted(pols)[0]
        self.policies = pols
        dedup = q("SELECT content_dedup FROM storage_policies WHERE id = ?", (self.pid,))[0][0]
        self.dedup = dedup in (1, "t", True)
        self.base = al.resolve(root, pols[self.pid])
        self.users = [r[0] for r in q("SELECT id FROM users ORDER BY id")]
        if not self.users:
            sys.exit("aster_writer: no users")
        self.folders = {u: [] for u in self.users}
        for fid, owner in q("SELECT id, owner_user_id FROM folders WHERE deleted_at IS NULL "
                            "AND team_id IS NULL ORDER BY id"):
            if owner in self.folders:
                self.folders[owner].append(fid)
        # Files that can be purged without touching revisions: no revision of
        # their own, and a blob no revision names (its ref_count is files only).
        own_only = a.purge_only_own
        self.purgeable = [] if own_only else [r[0] for r in q(
            "SELECT f.id FROM files f JOIN file_blobs b ON b.id = f.blob_id "
            "WHERE NOT EXISTS (SELECT 1 FROM file_revisions r WHERE r.file_id = f.id) "
            "AND NOT EXISTS (SELECT 1 FROM file_revision_histories h WHERE h.file_id = f.id) "
            "AND NOT EXISTS (SELECT 1 FROM file_revisions r WHERE r.blob_id = f.blob_id) "
            "ORDER BY f.id")]
        self.blobs = [] if own_only else [r for r in q(
            "SELECT b.id, b.size FROM file_blobs b WHERE b.backing = 'stored' "
            "AND EXISTS (SELECT 1 FROM files f WHERE f.blob_id = b.id) "
            "AND NOT EXISTS (SELECT 1 FROM file_revisions r WHERE r.blob_id = b.id) ORDER BY b.id")]
        self.blob_index = {b[0]: i for i, b in enumerate(self.blobs)}
        self.young = collections.deque()  # (time added, file id) of own files
        self.files_start = q("SELECT COUNT(*) FROM files")[0][0]
        self.n = self.uploads = self.purges = self.copies = self.deleted = self.nbytes = 0
        self.doctor_runs = 0
        self.journal = open(a.journal, "a", encoding="utf-8") if a.journal else None

    def now(self):
        return al.iso(int(time.time()))

    def relpath(self, pid, storage_path):
        return os.path.relpath(os.path.join(al.resolve(self.root, self.policies[pid]), storage_path),
                               self.root)

    def log(self, op, fid, bid, path, deleted=0):
        if self.journal:
            self.journal.write("%d %.6f %s %s %s %s %d\n" % (self.n, time.time(), op, fid, bid, path,
                                                           deleted))
            self.journal.flush()

    def pick_owner(self):
        u = self.rng.choice(self.users)
        fl = self.folders[u]
        return u, (self.rng.choice(fl) if fl else None)

    def upload(self):
        size = self.rng.randint(self.a.min_object_kib * 1024, self.a.max_object_kib * 1024)
        data = self.rng.randbytes(size)
        sha = hashlib.sha256(data).hexdigest()
        key = sha if self.dedup else al.rand_hex(self.rng, 32)
        write_object(self.base, key, data)
        u, folder = self.pick_owner()
        ts = self.now()
        name = "live-%d-%d.bin" % (os.getpid(), self.n)

        def tx(db):
            bid = db.rows("INSERT INTO file_blobs (hash, size, policy_id, storage_path, backing, "
                          "ref_count, created_at, updated_at) VALUES (?, ?, ?, ?, 'stored', 1, ?, ?) "
                          "RETURNING id", (sha, size, self.pid, al.blob_rel(key), ts, ts))[0][0]
            fid = db.rows("INSERT INTO files (name, folder_id, blob_id, size, owner_user_id, "
                          "mime_type, created_at, updated_at) VALUES (?, ?, ?, ?, ?, "
                          "'application/octet-stream', ?, ?) RETURNING id",
                          (name, folder, bid, size, u, ts, ts))[0][0]
            db.rows("UPDATE users SET storage_used = storage_used + ?, updated_at = ? WHERE id = ?",
                    (size, ts, u))
            return bid, fid

        bid, fid = self.db.transaction(tx)
        self.uploads += 1
        self.nbytes += size
        self.young.append((time.time(), fid))
        self.blob_index[bid] = len(self.blobs)
        self.blobs.append((bid, size))
        self.log("upload", fid, bid, self.relpath(self.pid, al.blob_rel(key)))

    def copy(self):
        bid, size = self.rng.choice(self.blobs)
        u, folder = self.pick_owner()
        ts = self.now()
        name = "copy-%d-%d.bin" % (os.getpid(), self.n)

        def tx(db):
            r = db.rows("UPDATE file_blobs SET ref_count = ref_count + 1, updated_at = ? "
                        "WHERE id = ? RETURNING policy_id, storage_path", (ts, bid))
            fid = db.rows("INSERT INTO files (name, folder_id, blob_id, size, owner_user_id, "
                          "mime_type, created_at, updated_at) VALUES (?, ?, ?, ?, ?, "
                          "'application/octet-stream', ?, ?) RETURNING id",
                          (name, folder, bid, size, u, ts, ts))[0][0]
            db.rows("UPDATE users SET storage_used = storage_used + ?, updated_at = ? WHERE id = ?",
                    (size, ts, u))
            return fid, r[0]

        fid, (pid, sp) = self.db.transaction(tx)
        self.copies += 1
        self.young.append((time.time(), fid))
        self.log("copy", fid, bid, self.relpath(pid, sp) if pid in self.policies else sp)

    def purge(self):
        i = self.rng.randrange(len(self.purgeable))
        fid = self.purgeable[i]
        self.purgeable[i] = self.purgeable[-1]
        self.purgeable.pop()
        ts = self.now()

        def tx(db):
            f = db.rows("SELECT blob_id, size, owner_user_id FROM files WHERE id = ?", (fid,))
            if not f:
                return None
            bid, size, owner = f[0]
            db.rows("DELETE FROM shares WHERE file_id = ?", (fid,))
            db.rows("DELETE FROM files WHERE id = ?", (fid,))
            if owner is not None:
                db.rows("UPDATE users SET storage_used = storage_used - ?, updated_at = ? "
                        "WHERE id = ?", (size, ts, owner))
            b = db.rows("UPDATE file_blobs SET ref_count = ref_count - 1, updated_at = ? "
                        "WHERE id = ? RETURNING ref_count, policy_id, storage_path, backing, hash",
                        (ts, bid))[0]
            rc, pid, sp, backing, h = b
            gone = False
            others = 1
            same_hash = 1
            if rc <= 0:
                db.rows("DELETE FROM file_blobs WHERE id = ?", (bid,))
                gone = True
                others = db.rows("SELECT COUNT(*) FROM file_blobs WHERE policy_id = ? AND "
                                 "storage_path = ? AND backing = 'stored'", (pid, sp))[0][0]
                same_hash = db.rows("SELECT COUNT(*) FROM file_blobs WHERE policy_id = ? AND hash = ?",
                                    (pid, h))[0][0]
            return bid, pid, sp, backing, h, gone, others, same_hash

        r = self.db.transaction(tx)
        if r is None:
            return False
        bid, pid, sp, backing, h, gone, others, same_hash = r
        # Committed: now the object goes (never before: a snapshot between
        # the two would have a row without its object).
        deleted = 0
        if gone:
            if bid in self.blob_index:
                j = self.blob_index.pop(bid)
                last = self.blobs.pop()
                if j < len(self.blobs):
                    self.blobs[j] = last
                    self.blob_index[last[0]] = j
            if pid in self.policies:
                base = al.resolve(self.root, self.policies[pid])
                if backing == "stored" and others == 0:
                    deleted = 1 if unlink(os.path.join(base, sp)) else 0
                if same_hash == 0:
                    for kind in ("_thumb", "_preview"):
                        for p in glob.glob(os.path.join(base, kind, "*", "1", h[0:2], h[2:4],
                                                        h + ".webp")):
                            unlink(p)
        self.purges += 1
        self.deleted += deleted
        if backing != "stored":
            path = "-"  # a virtual-empty blob has no object
        elif pid in self.policies:
            path = self.relpath(pid, sp)
        else:
            path = sp
        self.log("purge", fid, bid, path, deleted)
        return True

    def step(self):
        a = self.a
        limit = time.time() - a.purge_min_age
        while self.young and self.young[0][0] <= limit:
            self.purgeable.append(self.young.popleft()[1])
        r = self.rng.random()
        if r < a.purge_fraction and self.purgeable:
            if not self.purge():
                return False
        elif r < a.purge_fraction + a.copy_fraction and self.blobs:
            self.copy()
        else:
            self.upload()
        return True

    def doctor(self):
        argv = [sys.executable, os.path.join(HERE, "asterdoctor.py"), "--deep", self.root]
        if self.db.kind == "postgres":
            argv += ["--database-url", self.a.url]
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.doctor_runs += 1
        if r.returncode != 0:
            sys.stderr.write(r.stdout.decode(errors="replace"))
            sys.exit("aster_writer: the doctor failed after transaction %d" % self.n)


def write_count(path, w):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d %d %d %d\n" % (w.n, w.uploads, w.purges, w.copies))
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description="concurrent AsterDrive writer (uploads and purges)")
    ap.add_argument("root")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--seconds", type=float)
    g.add_argument("--until-file")
    g.add_argument("--max-ops", type=int)
    ap.add_argument("--rate", type=float, default=50.0, help="transactions per second (0: no limit)")
    ap.add_argument("--purge-fraction", type=float, default=0.4)
    ap.add_argument("--copy-fraction", type=float, default=0.1)
    ap.add_argument("--count-file")
    ap.add_argument("--summary")
    ap.add_argument("--journal")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--min-object-kib", type=int, default=1)
    ap.add_argument("--max-object-kib", type=int, default=16)
    ap.add_argument("--database-url", dest="url")
    ap.add_argument("--password-file")
    ap.add_argument("--purge-only-own", action="store_true")
    ap.add_argument("--purge-min-age", type=float, default=0.0,
                    help="purge the writer's own files only once they are this many seconds old")
    ap.add_argument("--doctor-every", type=int, default=0)
    a = ap.parse_args()
    if a.purge_fraction < 0 or a.copy_fraction < 0 or a.purge_fraction + a.copy_fraction > 1:
        ap.error("--purge-fraction and --copy-fraction must be >= 0 and add up to at most 1")
    if a.min_object_kib < 0 or a.max_object_kib < a.min_object_kib:
        ap.error("need 0 <= --min-object-kib <= --max-object-kib")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    root = os.path.abspath(a.root)
    if not a.url:
        a.url = al.load_config(root).get("database", {}).get("url", "sqlite://asterdrive.db")
    u = asterdb.parse_url(a.url)
    if u["kind"] == "sqlite":
        p = u["path"] if os.path.isabs(u["path"]) else os.path.join(root, "data", u["path"])
        db = SqliteDb(p)
    else:
        pw = None
        if a.password_file:
            with open(a.password_file, encoding="utf-8") as f:
                pw = f.read().rstrip("\r\n")
        db = PsqlDb(a.url, pw if pw is not None else os.environ.get("PGPASSWORD"))
    w = Writer(root, db, a)

    t0 = time.time()
    if a.count_file:
        write_count(a.count_file, w)
    next_t = t0
    while not stop:
        now = time.time()
        if a.seconds is not None and now - t0 >= a.seconds:
            break
        if a.max_ops is not None and w.n >= a.max_ops:
            break
        if a.until_file and os.path.exists(a.until_file):
            break
        if a.rate > 0:
            if next_t > now:
                time.sleep(next_t - now)
                continue  # look at the stop conditions again
            # Behind by more than a second (a stalled database): do not burst.
            next_t = max(next_t, now - 1.0) + 1.0 / a.rate
        if not w.step():
            continue
        w.n += 1
        if a.count_file:
            write_count(a.count_file, w)
        if a.doctor_every and w.n % a.doctor_every == 0:
            w.doctor()
    files_end = db.rows("SELECT COUNT(*) FROM files")[0][0]
    db.close()
    secs = time.time() - t0
    s = {"kind": db.kind, "transactions": w.n, "uploads": w.uploads, "purges": w.purges,
         "copies": w.copies, "objects_deleted": w.deleted, "bytes_uploaded": w.nbytes,
         "files_rows_start": w.files_start, "files_rows_end": files_end,
         "seconds": round(secs, 3), "rate": round(w.n / secs, 2) if secs > 0 else 0.0,
         "doctor_runs": w.doctor_runs}
    text = json.dumps(s, sort_keys=True)
    if a.summary:
        with open(a.summary + ".tmp", "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(a.summary + ".tmp", a.summary)
    print(text)
    sys.stdout.flush()
    if w.journal:
        w.journal.close()


if __name__ == "__main__":
    main()
