#!/usr/bin/env python3
"""Generate an AsterDrive-0.5-like deployment under ROOT for coffer tests.

  gen_asterdrive.py ROOT [--size-mb N] [--files N] [--small-kb LO:HI] [--seed S]
                    [--users N] [--dedup]

Creates (layout: /work/shared/design/asterdrive.md)
  ROOT/data/config.toml       [auth] six 64-hex secrets, [database] url
  ROOT/data/asterdrive.db     SQLite, journal_mode=WAL, foreign_keys=ON
  ROOT/data/uploads/...       blob objects <k0:2>/<k2:4>/<k>, thumbnails,
                              previews, one .staging upload temp object
  ROOT/data/avatar/user/<id>/v<ver>/{512,1024}.webp
  ROOT/data/.tmp/, ROOT/data/.uploads/   junk that is not backup content
  ROOT/data/logs/             a symlink, a dangling symlink, a hard link
  ROOT/data/hooks/notify.sh   mode 0755
and prints a JSON summary (files, bytes, rows per table).

Sizes: about --size-mb MiB (default 20) of blob bytes: ~30% small objects
(1-64 KiB), ~45% medium (1-8 MiB), ~25% large (16 MiB and up, only when the
total is at least 64 MiB). --files N fixes the number of small objects
instead (the total then follows; --small-kb LO:HI sets their size range,
e.g. --files 20000 --small-kb 1:2 for tens of thousands of rows). Content is part text-like (compressible,
unique at chunk scale), part random, part mixed; ~6% of objects duplicate
another one's content (with --dedup: several files share one blob; without:
separate objects, one pair hard-linked).

Consistency: users.storage_used and file_blobs.ref_count satisfy the doctor
rules. They are written by the last transaction, which is left in
data/asterdrive.db-wal (not checkpointed): the main file alone still holds
zeros there, so a copy of asterdrive.db without its -wal fails the doctor,
while anything that reads through SQLite sees a clean database.

Determinism: for a given seed and options, every path, mode, mtime, file
content and database row is the same. The only bytes that vary are the WAL
header salts inside asterdrive.db-wal (SQLite picks them at random).

When run as root, data/avatar is chowned to 1000:1000 (--no-chown to skip)
so that ownership restore is exercised.
"""

import argparse
import json
import os
import random
import sqlite3
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import asterlib as al  # noqa: E402

KiB = 1024
MiB = 1024 * 1024


class Clock:
    """Deterministic, increasing timestamps."""

    def __init__(self, rng, start):
        self.rng = rng
        self.t = start

    def tick(self, lo=1, hi=3600):
        self.t += self.rng.randint(lo, hi)
        return self.t


def plan_sizes(rng, total, nfiles, small=(1 * KiB, 64 * KiB)):
    small_b = int(total * 0.30)
    med_b = int(total * 0.45)
    large_b = total - small_b - med_b
    if total < 64 * MiB:
        med_b += large_b
        large_b = 0
    sizes = []
    rem = large_b
    while rem >= 16 * MiB:
        s = min(rem, rng.randint(16 * MiB, max(16 * MiB, min(128 * MiB, large_b // 2))))
        sizes.append(s)
        rem -= s
    med_b += rem
    rem = med_b
    while rem >= 1 * MiB:
        s = min(rem, rng.randint(1 * MiB, 8 * MiB))
        sizes.append(s)
        rem -= s
    small_b += rem
    if nfiles is not None:
        for _ in range(max(0, nfiles - len(sizes))):
            sizes.append(rng.randint(*small))
    else:
        rem = small_b
        while rem >= 1 * KiB:
            s = min(rem, rng.randint(1 * KiB, 64 * KiB))
            sizes.append(s)
            rem -= s
    rng.shuffle(sizes)
    return sizes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("root")
    ap.add_argument("--size-mb", type=float, default=20)
    ap.add_argument("--files", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--users", type=int, default=3)
    ap.add_argument("--small-kb", default="1:64", metavar="LO:HI",
                    help="size range of the small objects in KiB (default 1:64); "
                         "with --files, e.g. --files 20000 --small-kb 1:2 gives "
                         "tens of thousands of rows in a few tens of MB")
    ap.add_argument("--dedup", action="store_true",
                    help="content_dedup policy: blob key = sha256 of content")
    ap.add_argument("--no-chown", action="store_true")
    ap.add_argument("--force", action="store_true",
                    help="allow an existing ROOT/data (it is not cleaned)")
    a = ap.parse_args()

    try:
        lo, hi = (float(x) for x in a.small_kb.split(":"))
        small_range = (max(1, int(lo * KiB)), max(1, int(hi * KiB)))
        if small_range[0] > small_range[1]:
            raise ValueError
    except ValueError:
        sys.exit("gen_asterdrive: --small-kb must be LO:HI (KiB, LO <= HI)")
    root = os.path.abspath(a.root)
    data = os.path.join(root, "data")
    if os.path.exists(data) and not a.force:
        sys.exit("gen_asterdrive: %s exists (use --force or an empty ROOT)" % data)
    if a.users < 1:
        sys.exit("gen_asterdrive: --users must be >= 1")
    os.umask(0o022)
    al.makedirs(data, 0o755)

    rng = random.Random(a.seed)                 # structure, keys, names
    content = al.Content(random.Random(a.seed * 7919 + 17))
    clock = Clock(rng, al.BASE_TIME)
    mtimes = {}  # abs path -> mtime ns (files and symlinks); dirs at the end

    def mtime_for(path):
        mtimes[path] = (al.BASE_TIME + rng.randrange(0, 300 * 86400)) * 10**9 + \
            rng.randrange(0, 10**9)

    # ---------------------------------------------------------- config
    secrets = {k: al.rand_hex(rng, 64) for k in al.AUTH_SECRETS}
    cfg_path = os.path.join(data, "config.toml")
    with open(cfg_path, "w") as f:
        f.write("# AsterDrive configuration (generated for coffer tests)\n\n")
        f.write('[server]\nhost = "127.0.0.1"\nport = 3000\nworkers = 4\n\n')
        f.write('[database]\nurl = "sqlite://asterdrive.db?mode=rwc"\n'
                'pool_size = 10\nretry_count = 3\n\n')
        f.write("[auth]\n")
        for k in al.AUTH_SECRETS:
            f.write('%s = "%s"\n' % (k, secrets[k]))
        f.write("access_token_ttl_secs = 900\nrefresh_token_ttl_secs = 604800\n\n")
        f.write('[cache]\nenabled = true\nbackend = "memory"\n\n')
        f.write('[logging]\nlevel = "info"\nformat = "text"\nfile = "data/logs/asterdrive.log"\n')
    os.chmod(cfg_path, 0o600)
    mtime_for(cfg_path)

    # ---------------------------------------------------------- database
    db_path = os.path.join(data, "asterdrive.db")
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.executescript(al.SCHEMA)
    conn.execute("BEGIN")
    t = al.BASE_TIME - 86400 * 30
    for m in al.MIGRATIONS:
        t += rng.randint(60, 86400)
        conn.execute("INSERT INTO seaql_migrations VALUES (?,?)", (m, t))

    now = al.iso(clock.tick())
    base_path = "data/uploads"
    conn.execute(
        "INSERT INTO storage_policies (id,name,connector_id,storage_config,content_dedup,"
        "is_default,max_file_size,created_at,updated_at) VALUES (1,?,?,?,?,1,0,?,?)",
        ("Local Default", "local",
         json.dumps({"base_path": base_path, "dir_mode": "0755"}),
         1 if a.dedup else 0, now, now))
    conn.execute(
        "INSERT INTO storage_policies (id,name,connector_id,storage_config,content_dedup,"
        "is_default,max_file_size,created_at,updated_at) VALUES (2,?,?,?,0,0,0,?,?)",
        ("S3 Archive", "s3",
         json.dumps({"bucket": "asterdrive-archive", "prefix": "prod/",
                     "endpoint": "https://s3.example.invalid", "region": "us-east-1"}),
         now, now))

    users = []
    for i in range(1, a.users + 1):
        now = al.iso(clock.tick())
        name = "admin" if i == 1 else "user%d" % i
        conn.execute(
            "INSERT INTO users (id,username,email,password_hash,role,status,storage_used,"
            "storage_quota,policy_id,totp_secret_enc,created_at,updated_at) "
            "VALUES (?,?,?,?,?,'active',0,?,1,?,?,?)",
            (i, name, "%s@example.org" % name,
             "$argon2id$v=19$m=19456,t=2,p=1$%s$%s" % (al.rand_hex(rng, 22), al.rand_hex(rng, 43)),
             "admin" if i == 1 else "user", 0 if i == 1 else 10 * 1024**3,
             al.rand_hex(rng, 96) if i % 2 == 1 else None, now, now))
        users.append(i)

    # avatars
    avatar_dir = "data/avatar"
    for u in users:
        now = al.iso(clock.tick())
        if u % 2 == 1:
            ver = rng.randint(1, 4)
            key = "user/%d/v%d" % (u, ver)
            d = os.path.join(root, avatar_dir, key)
            al.makedirs(d, 0o755)
            for px, lo, hi in ((512, 4, 20), (1024, 10, 60)):
                p = os.path.join(d, "%d.webp" % px)
                with open(p, "wb") as f:
                    f.write(b"RIFF\0\0\0\0WEBPVP8 " + content.random(rng.randint(lo, hi) * KiB))
                os.chmod(p, 0o644)
                mtime_for(p)
            conn.execute("INSERT INTO user_profiles VALUES (?,?,?,?,?,?)",
                         (u, "User %d" % u, "upload", key, ver, now))
        elif u == 2:
            conn.execute("INSERT INTO user_profiles VALUES (?,?,'gravatar',NULL,0,?)",
                         (u, "User %d" % u, now))
        else:
            conn.execute("INSERT INTO user_profiles VALUES (?,?,'none',NULL,0,?)",
                         (u, None, now))

    # folders
    folders = {u: [] for u in users}       # live folder ids per user
    trashed_folders = set()
    top_names = ["Documents", "Photos", "Projects", "Music", "Archive", "Shared", "Work"]
    for u in users:
        ids = []
        children = {}
        for name in rng.sample(top_names, rng.randint(3, 5)):
            now = al.iso(clock.tick())
            cur = conn.execute(
                "INSERT INTO folders (name,parent_id,owner_user_id,team_id,policy_id,"
                "created_at,updated_at,deleted_at) VALUES (?,NULL,?,NULL,NULL,?,?,NULL)",
                (name, u, now, now))
            ids.append(cur.lastrowid)
            children[cur.lastrowid] = []
        for _ in range(rng.randint(5, 12)):
            parent = rng.choice(ids)
            now = al.iso(clock.tick())
            cur = conn.execute(
                "INSERT INTO folders (name,parent_id,owner_user_id,team_id,policy_id,"
                "created_at,updated_at,deleted_at) VALUES (?,?,?,NULL,NULL,?,?,NULL)",
                ("%s %d" % (rng.choice(al.WORDS).capitalize(), rng.randint(1, 99)),
                 parent, u, now, now))
            ids.append(cur.lastrowid)
            children.setdefault(parent, []).append(cur.lastrowid)
            children[cur.lastrowid] = []
        # trash one subtree per user
        victim = rng.choice(ids[1:])
        stack = [victim]
        dt = al.iso(clock.tick())
        while stack:
            fid = stack.pop()
            trashed_folders.add(fid)
            conn.execute("UPDATE folders SET deleted_at=? WHERE id=?", (dt, fid))
            stack.extend(children.get(fid, []))
        folders[u] = [f for f in ids if f not in trashed_folders]
    all_folder_owner = {}
    for fid, owner in conn.execute("SELECT id, owner_user_id FROM folders"):
        all_folder_owner[fid] = owner

    # blobs and files
    bw = al.BlobWriter(root, base_path, a.dedup, content, rng)
    blob_ids = {}      # key -> blob id
    blob_info = {}     # blob id -> (key, sha, size, abspath)
    n_objects = 0
    hardlinked = False
    nfile = 0

    def add_blob(size, kind, mime):
        nonlocal n_objects
        mode = rng.choices([0o640, 0o600, 0o644], [70, 20, 10])[0]
        key, sha, path, existed = bw.write(size, kind, mode)
        if existed:
            return blob_ids[key]
        mtime_for(path)
        n_objects += 1
        now = al.iso(clock.tick(1, 600))
        thumb = proc = None
        if mime in al.MIME_IMAGE:
            proc = "images"
            thumb = al.thumb_rel(proc, sha)
            tp = os.path.join(bw.base, thumb)
            al.makedirs(os.path.dirname(tp))
            with open(tp, "wb") as f:
                f.write(b"RIFF\0\0\0\0WEBPVP8 " + content.random(min(rng.randint(1, 8) * KiB, small_range[1])))
            os.chmod(tp, 0o644)
            mtime_for(tp)
        elif mime == "application/pdf" and rng.random() < 0.5:
            pp = os.path.join(bw.base, al.preview_rel("office", sha))
            al.makedirs(os.path.dirname(pp))
            with open(pp, "wb") as f:
                f.write(content.random(min(rng.randint(2, 16) * KiB, small_range[1])))
            os.chmod(pp, 0o644)
            mtime_for(pp)
        cur = conn.execute(
            "INSERT INTO file_blobs (hash,size,policy_id,storage_path,backing,thumbnail_path,"
            "thumbnail_processor,ref_count,created_at,updated_at) "
            "VALUES (?,?,1,?,'stored',?,?,0,?,?)",
            (sha, size, al.blob_rel(key), thumb, proc, now, now))
        blob_ids[key] = cur.lastrowid
        blob_info[cur.lastrowid] = (key, sha, size, path)
        return cur.lastrowid

    def add_file(blob_id, size, mime, owner=None):
        nonlocal nfile
        nfile += 1
        owner = owner or rng.choice(users)
        folder = rng.choice(folders[owner]) if folders[owner] and rng.random() > 0.1 else None
        if rng.random() < 0.2:
            # some files live in trashed folders (and are trashed with them)
            tf = [f for f in trashed_folders if all_folder_owner[f] == owner]
            if tf:
                folder = rng.choice(tf)
        now = al.iso(clock.tick(1, 600))
        deleted = None
        if folder in trashed_folders or rng.random() < 0.04:
            deleted = al.iso(clock.tick(1, 60))
        cur = conn.execute(
            "INSERT INTO files (name,folder_id,blob_id,size,owner_user_id,team_id,mime_type,"
            "is_locked,created_at,updated_at,deleted_at) VALUES (?,?,?,?,?,NULL,?,?,?,?,?)",
            (al.file_name(rng, mime, nfile), folder, blob_id, size, owner, mime,
             1 if rng.random() < 0.02 else 0, now, now, deleted))
        return cur.lastrowid, owner

    sizes = plan_sizes(rng, int(a.size_mb * MiB), a.files, small_range)
    file_rows = []   # (file id, owner, blob id, size)
    for size in sizes:
        dup_src = None
        if blob_info and size <= 8 * MiB and rng.random() < 0.06:
            small = sorted(b for b, v in blob_info.items() if v[2] <= 8 * MiB)
            dup_src = rng.choice(small) if small else None
        if dup_src is not None:
            key, sha, dsize, dpath = blob_info[dup_src]
            mime = rng.choice(al.MIME_BIN)
            if a.dedup:
                fid, owner = add_file(dup_src, dsize, mime)
                file_rows.append((fid, owner, dup_src, dsize))
            else:
                link = not hardlinked and os.stat(dpath).st_nlink == 1
                nkey, npath = bw.copy_of(dpath, sha, 0o640, hardlink=link)
                hardlinked = hardlinked or link
                n_objects += 1
                if not link:
                    mtime_for(npath)
                now = al.iso(clock.tick(1, 600))
                cur = conn.execute(
                    "INSERT INTO file_blobs (hash,size,policy_id,storage_path,backing,"
                    "thumbnail_path,thumbnail_processor,ref_count,created_at,updated_at) "
                    "VALUES (?,?,1,?,'stored',NULL,NULL,0,?,?)",
                    (sha, dsize, al.blob_rel(nkey), now, now))
                blob_ids[nkey] = cur.lastrowid
                blob_info[cur.lastrowid] = (nkey, sha, dsize, npath)
                fid, owner = add_file(cur.lastrowid, dsize, mime)
                file_rows.append((fid, owner, cur.lastrowid, dsize))
            continue
        kind = rng.choices(["text", "random", "mixed"], [45, 40, 15])[0]
        if kind == "text":
            mime = rng.choice(al.MIME_TEXT)
        elif kind == "mixed":
            mime = "application/pdf"
        else:
            mime = rng.choice(al.MIME_IMAGE + al.MIME_BIN)
        bid = add_blob(size, kind, mime)
        fid, owner = add_file(bid, size, mime)
        file_rows.append((fid, owner, bid, size))

    # virtual empty files: one blob without an object
    now = al.iso(clock.tick())
    empty_sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    cur = conn.execute(
        "INSERT INTO file_blobs (hash,size,policy_id,storage_path,backing,thumbnail_path,"
        "thumbnail_processor,ref_count,created_at,updated_at) "
        "VALUES (?,0,1,'','virtual_empty',NULL,NULL,0,?,?)", (empty_sha, now, now))
    empty_blob = cur.lastrowid
    for _ in range(3):
        fid, owner = add_file(empty_blob, 0, "text/plain")
        file_rows.append((fid, owner, empty_blob, 0))

    # revisions: ~8% of files get a history with older versions
    for fid, owner, bid, size in list(file_rows):
        if rng.random() >= 0.08 or size == 0:
            continue
        now = al.iso(clock.tick())
        cur = conn.execute(
            "INSERT INTO file_revision_histories (file_id,current_revision_id,created_at) "
            "VALUES (?,NULL,?)", (fid, now))
        hid = cur.lastrowid
        version = 0
        if rng.random() < 0.3:
            version += 1
            conn.execute(
                "INSERT INTO file_revisions (history_id,file_id,version,blob_id,logical_size,"
                "is_current,retired_at,created_at) VALUES (?,?,?,NULL,?,0,?,?)",
                (hid, fid, version, rng.randint(*small_range), al.iso(clock.tick()),
                 al.iso(clock.tick())))
        for _ in range(rng.randint(1, 2)):
            version += 1
            osize = rng.randint(*small_range)
            obid = add_blob(osize, "text", "text/plain")
            conn.execute(
                "INSERT INTO file_revisions (history_id,file_id,version,blob_id,logical_size,"
                "is_current,retired_at,created_at) VALUES (?,?,?,?,?,0,NULL,?)",
                (hid, fid, version, obid, osize, al.iso(clock.tick())))
        version += 1
        cur = conn.execute(
            "INSERT INTO file_revisions (history_id,file_id,version,blob_id,logical_size,"
            "is_current,retired_at,created_at) VALUES (?,?,?,?,?,1,NULL,?)",
            (hid, fid, version, bid, size, al.iso(clock.tick())))
        conn.execute("UPDATE file_revision_histories SET current_revision_id=? WHERE id=?",
                     (cur.lastrowid, hid))

    # shares
    for fid, owner, bid, size in file_rows:
        if rng.random() < 0.05:
            conn.execute(
                "INSERT INTO shares (token,user_id,file_id,folder_id,password_hash,expires_at,"
                "max_downloads,download_count,created_at) VALUES (?,?,?,NULL,?,?,?,?,?)",
                (al.rand_hex(rng, 16), owner, fid,
                 None if rng.random() < 0.7 else "$argon2id$" + al.rand_hex(rng, 32),
                 None if rng.random() < 0.5 else al.iso(clock.t + 86400 * 30),
                 rng.choice([0, 0, 10, 100]), rng.randint(0, 9), al.iso(clock.tick())))
    for u in users[:2]:
        if folders[u]:
            conn.execute(
                "INSERT INTO shares (token,user_id,file_id,folder_id,password_hash,expires_at,"
                "max_downloads,download_count,created_at) VALUES (?,?,NULL,?,NULL,NULL,0,?,?)",
                (al.rand_hex(rng, 16), u, rng.choice(folders[u]), rng.randint(0, 50),
                 al.iso(clock.tick())))

    # upload sessions: one with a temp object under the policy root, one
    # chunked session staged in data/.uploads (scratch, not backup content)
    s1 = al.rand_uuid(rng)
    temp_key = ".staging/%s" % s1
    tp = os.path.join(bw.base, temp_key)
    al.makedirs(os.path.dirname(tp), 0o750)
    with open(tp, "wb") as f:
        f.write(content.random(rng.randint(100, 900) * KiB))
    os.chmod(tp, 0o600)
    mtime_for(tp)
    conn.execute(
        "INSERT INTO upload_sessions VALUES (?,?,1,?,?,?,?,?,?,?,'uploading',?,?)",
        (s1, users[0], folders[users[0]][0] if folders[users[0]] else None, "big-video.mp4",
         4 * MiB, 1 * MiB, 4, 1, temp_key, al.iso(clock.tick()), al.iso(clock.t + 86400)))
    s2 = al.rand_uuid(rng)
    updir = os.path.join(data, ".uploads", s2)
    al.makedirs(updir, 0o750)
    for i in range(3):
        p = os.path.join(updir, "chunk_%05d" % i)
        with open(p, "wb") as f:
            f.write(content.random(256 * KiB))
        mtime_for(p)
    conn.execute(
        "INSERT INTO upload_sessions VALUES (?,?,1,NULL,?,?,?,?,?,NULL,'uploading',?,?)",
        (s2, users[-1], "dataset.tar", 1 * MiB, 256 * KiB, 4, 3,
         al.iso(clock.tick()), al.iso(clock.t + 86400)))
    tmpdir = os.path.join(data, ".tmp")
    al.makedirs(tmpdir, 0o700)
    for i in range(3):
        p = os.path.join(tmpdir, "tmp-%s" % al.rand_uuid(rng))
        with open(p, "wb") as f:
            f.write(content.random(rng.randint(16, 200) * KiB))
        mtime_for(p)

    # system config
    for k, v, ty in (("avatar_dir", avatar_dir, "string"),
                     ("site_name", "AsterDrive", "string"),
                     ("public_site_url", "https://drive.example.org", "string"),
                     ("default_storage_quota", str(10 * 1024**3), "number"),
                     ("thumbnail_max_source_bytes", str(50 * MiB), "number"),
                     ("webdav_enabled", "true", "boolean"),
                     ("registration_enabled", "false", "boolean")):
        conn.execute("INSERT INTO system_config VALUES (?,?,?,?)", (k, v, ty, al.iso(clock.tick())))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # Last transaction (left in the -wal): usage and reference counts.
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("BEGIN")
    for u in users:
        conn.execute("UPDATE users SET storage_used=? WHERE id=?",
                     (al.recompute_storage_used(conn, u), u))
    for (bid,) in conn.execute("SELECT id FROM file_blobs").fetchall():
        conn.execute("UPDATE file_blobs SET ref_count=? WHERE id=?",
                     (al.recompute_ref_count(conn, bid), bid))
    conn.execute("COMMIT")

    rows = {}
    for (t,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name").fetchall():
        rows[t] = conn.execute('SELECT COUNT(*) FROM "%s"' % t).fetchone()[0]
    wal_left = al.close_keep_wal(conn, db_path)
    os.chmod(db_path, 0o644)
    mtime_for(db_path)
    if wal_left:
        mtimes[db_path + "-wal"] = mtimes[db_path] + 1

    # logs: a symlink, a dangling symlink, a hard link
    logs = os.path.join(data, "logs")
    al.makedirs(os.path.join(logs, "archive"), 0o755)
    for name, n in (("asterdrive.log", 64), ("asterdrive.log.1", 32)):
        p = os.path.join(logs, name)
        with open(p, "wb") as f:
            f.write(content.text(n * KiB))
        os.chmod(p, 0o644)
        mtime_for(p)
    os.link(os.path.join(logs, "asterdrive.log.1"), os.path.join(logs, "archive", "2024-06.log"))
    os.symlink("asterdrive.log", os.path.join(logs, "latest.log"))
    os.symlink("asterdrive.log.0", os.path.join(logs, "old.log"))
    mtime_for(os.path.join(logs, "latest.log"))
    mtime_for(os.path.join(logs, "old.log"))
    hooks = os.path.join(data, "hooks")
    al.makedirs(hooks, 0o755)
    p = os.path.join(hooks, "notify.sh")
    with open(p, "w") as f:
        f.write("#!/bin/sh\necho \"asterdrive event: $1\" >&2\n")
    os.chmod(p, 0o755)
    mtime_for(p)

    # ownership, mtimes
    if os.geteuid() == 0 and not a.no_chown:
        av = os.path.join(root, avatar_dir)
        for dp, dns, fns in os.walk(av):
            for n in [dp] + [os.path.join(dp, x) for x in fns]:
                os.lchown(n, 1000, 1000)
    for p, ns in sorted(mtimes.items()):
        os.utime(p, ns=(ns, ns), follow_symlinks=False)
    dirs = []
    for dp, dns, fns in os.walk(data):
        dirs.append(dp)
    for dp in sorted(dirs, key=lambda d: -d.count(os.sep)):
        ns = (al.BASE_TIME + 301 * 86400 + rng.randrange(0, 86400)) * 10**9 + rng.randrange(10**9)
        os.utime(dp, ns=(ns, ns), follow_symlinks=False)

    nfiles = nbytes = 0
    for dp, dns, fns in os.walk(data):
        for n in fns:
            st = os.lstat(os.path.join(dp, n))
            if not os.path.islink(os.path.join(dp, n)):
                nfiles += 1
                nbytes += st.st_size
    print(json.dumps({
        "root": root, "seed": a.seed, "dedup": a.dedup, "files": nfiles, "bytes": nbytes,
        "blob_objects": n_objects,
        "blob_bytes": sum(v[2] for v in blob_info.values()),
        "wal": wal_left, "rows": rows}, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
