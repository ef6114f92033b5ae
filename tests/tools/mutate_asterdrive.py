#!/usr/bin/env python3
"""Simulate AsterDrive activity on a deployment made by gen_asterdrive.py.

  mutate_asterdrive.py ROOT [--percent P] [--seed S]

Changes about P percent (default 1) of the stored blob bytes, in separate
transactions like the service would, keeping the deployment doctor-clean:
  uploads     new objects + file_blobs + files rows (about half the budget;
              with content_dedup an identical object is shared)
  edits       new revision of a file: new blob becomes current, the old one
              stays as a non-current revision (about a fifth)
  deletes     files removed for good (rows, revisions, shares); blobs whose
              ref_count drops to 0 are deleted with their object and
              thumbnail (object removal after commit, as AsterDrive does)
  updates     renames, trash/restore, share counters, a new folder, a new
              avatar version (new files written, old version removed)
  scratch     data/.tmp gets a new file (not backup content)
storage_used and ref_count are maintained in every transaction. config.toml
is never touched. Prints a JSON summary. Deterministic for a given seed and
starting state (timestamps are derived from the seed, not the clock; file
mtimes of new or changed files are the real time).
"""

import argparse
import glob
import json
import os
import random
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import asterlib as al  # noqa: E402

KiB = 1024
MiB = 1024 * 1024


def main():
    ap = argparse.ArgumentParser(description="simulate AsterDrive activity")
    ap.add_argument("root")
    ap.add_argument("--percent", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=2)
    a = ap.parse_args()
    root = os.path.abspath(a.root)
    rng = random.Random(a.seed)
    content = al.Content(random.Random(a.seed * 104729 + 3))
    db = al.find_db(root)
    conn = al.open_db(db)
    q = conn.execute
    clock = [al.BASE_TIME + 400 * 86400 + rng.randrange(86400)]

    def now():
        clock[0] += rng.randint(1, 120)
        return al.iso(clock[0])

    pols = [p for p in al.local_policies(conn)]
    default = q("SELECT id FROM storage_policies WHERE is_default=1 AND connector_id='local'").fetchone()
    pid = default[0] if default else pols[0][0]
    base_path, dedup = [(bp, d) for i, bp, d in pols if i == pid][0]
    bw = al.BlobWriter(root, base_path, dedup, content, rng)

    (total,) = q("SELECT COALESCE(SUM(size),0) FROM file_blobs WHERE backing='stored'").fetchone()
    budget = max(1, int(total * a.percent / 100.0))
    users = [r[0] for r in q("SELECT id FROM users ORDER BY id")]
    stats = {"uploads": 0, "edits": 0, "deletes": 0, "blobs_deleted": 0, "updates": 0,
             "bytes_added": 0, "bytes_deleted": 0}

    def live_folders(u):
        return [r[0] for r in q("SELECT id FROM folders WHERE owner_user_id=? AND deleted_at IS NULL "
                                "ORDER BY id", (u,))]

    def new_blob(size, kind):
        """Write an object, then (inside the caller's transaction) the row.
        Returns blob id."""
        key, sha, path, existed = bw.write(size, kind, 0o640)
        if existed:
            r = q("SELECT id FROM file_blobs WHERE policy_id=? AND storage_path=?",
                  (pid, al.blob_rel(key))).fetchone()
            if r:
                return r[0]
        stats["bytes_added"] += size
        t = now()
        cur = q("INSERT INTO file_blobs (hash,size,policy_id,storage_path,backing,thumbnail_path,"
                "thumbnail_processor,ref_count,created_at,updated_at) "
                "VALUES (?,?,?,?,'stored',NULL,NULL,0,?,?)", (sha, size, pid, al.blob_rel(key), t, t))
        return cur.lastrowid

    def fix_counts(blob_ids, user_ids):
        for b in blob_ids:
            q("UPDATE file_blobs SET ref_count=? WHERE id=?", (al.recompute_ref_count(conn, b), b))
        for u in user_ids:
            q("UPDATE users SET storage_used=?, updated_at=? WHERE id=?",
              (al.recompute_storage_used(conn, u), now(), u))

    def pick_size(limit):
        s = rng.randint(1 * KiB, 64 * KiB) if rng.random() < 0.7 else rng.randint(1 * MiB, 4 * MiB)
        return max(1, min(s, limit))

    # uploads
    spent = 0
    while spent < budget * 0.5 or stats["uploads"] == 0:
        size = pick_size(max(1 * KiB, int(budget * 0.5) - spent))
        u = rng.choice(users)
        fl = live_folders(u)
        kind = rng.choice(["text", "random", "mixed"])
        q("BEGIN IMMEDIATE")
        bid = new_blob(size, kind)
        mime = al.MIME_TEXT[0] if kind == "text" else "application/octet-stream"
        t = now()
        q("INSERT INTO files (name,folder_id,blob_id,size,owner_user_id,team_id,mime_type,is_locked,"
          "created_at,updated_at,deleted_at) VALUES (?,?,?,?,?,NULL,?,0,?,?,NULL)",
          (al.file_name(rng, mime, rng.randint(1000, 9999)), rng.choice(fl) if fl else None,
           bid, size, u, mime, t, t))
        fix_counts([bid], [u])
        q("COMMIT")
        spent += size
        stats["uploads"] += 1

    # edits: new current revision
    spent = 0
    while spent < budget * 0.2 or stats["edits"] == 0:
        r = q("SELECT id, blob_id, size, owner_user_id FROM files WHERE size > 0 AND deleted_at IS NULL "
              "ORDER BY id").fetchall()
        if not r:
            break
        fid, old_bid, old_size, owner = rng.choice(r)
        size = pick_size(max(1 * KiB, int(budget * 0.2) - spent))
        q("BEGIN IMMEDIATE")
        bid = new_blob(size, "text")
        h = q("SELECT id FROM file_revision_histories WHERE file_id=?", (fid,)).fetchone()
        if h:
            hid = h[0]
            q("UPDATE file_revisions SET is_current=0 WHERE file_id=? AND is_current=1", (fid,))
        else:
            hid = q("INSERT INTO file_revision_histories (file_id,current_revision_id,created_at) "
                    "VALUES (?,NULL,?)", (fid, now())).lastrowid
            q("INSERT INTO file_revisions (history_id,file_id,version,blob_id,logical_size,is_current,"
              "retired_at,created_at) VALUES (?,?,1,?,?,0,NULL,?)", (hid, fid, old_bid, old_size, now()))
        (ver,) = q("SELECT COALESCE(MAX(version),0)+1 FROM file_revisions WHERE file_id=?",
                   (fid,)).fetchone()
        rid = q("INSERT INTO file_revisions (history_id,file_id,version,blob_id,logical_size,is_current,"
                "retired_at,created_at) VALUES (?,?,?,?,?,1,NULL,?)",
                (hid, fid, ver, bid, size, now())).lastrowid
        q("UPDATE file_revision_histories SET current_revision_id=? WHERE id=?", (rid, hid))
        q("UPDATE files SET blob_id=?, size=?, updated_at=? WHERE id=?", (bid, size, now(), fid))
        fix_counts([bid, old_bid], [owner])
        q("COMMIT")
        spent += size
        stats["edits"] += 1

    # deletes (permanent)
    spent = 0
    while spent < budget * 0.3 or stats["deletes"] == 0:
        r = q("SELECT id, blob_id, size, owner_user_id FROM files ORDER BY id").fetchall()
        if len(r) < 5:
            break
        fid, bid, size, owner = rng.choice(r)
        q("BEGIN IMMEDIATE")
        blobs = {bid} | {x[0] for x in q("SELECT blob_id FROM file_revisions WHERE file_id=? AND "
                                         "blob_id IS NOT NULL", (fid,))}
        q("DELETE FROM shares WHERE file_id=?", (fid,))
        q("DELETE FROM file_revisions WHERE file_id=?", (fid,))
        q("DELETE FROM file_revision_histories WHERE file_id=?", (fid,))
        q("DELETE FROM files WHERE id=?", (fid,))
        fix_counts(sorted(blobs), [owner])
        gone = []
        for b in sorted(blobs):
            row = q("SELECT ref_count, storage_path, thumbnail_path, backing, size, hash FROM file_blobs "
                    "WHERE id=?", (b,)).fetchone()
            if row and row[0] == 0:
                q("DELETE FROM file_blobs WHERE id=?", (b,))
                gone.append(row)
        q("COMMIT")
        base = al.resolve(root, base_path)
        for _rc, sp, thumb, backing, bsize, bhash in gone:
            stats["blobs_deleted"] += 1
            if backing == "stored":
                (still,) = q("SELECT COUNT(*) FROM file_blobs WHERE policy_id=? AND storage_path=?",
                             (pid, sp)).fetchone()
                if not still:
                    try:
                        os.unlink(os.path.join(base, sp))
                        stats["bytes_deleted"] += bsize
                    except FileNotFoundError:
                        pass
            (same,) = q("SELECT COUNT(*) FROM file_blobs WHERE policy_id=? AND hash=?",
                        (pid, bhash)).fetchone()
            derived = [thumb] if thumb else []
            if not same:  # previews/thumbnails are per content hash
                derived += [os.path.relpath(p, base) for p in glob.glob(os.path.join(
                    base, "_*", "*", "1", bhash[0:2], bhash[2:4], bhash + ".webp"))]
            for d in derived:
                try:
                    os.unlink(os.path.join(base, d))
                except FileNotFoundError:
                    pass
        spent += max(size, 1)
        stats["deletes"] += 1

    # row updates
    files = [r[0] for r in q("SELECT id FROM files ORDER BY id")]
    q("BEGIN IMMEDIATE")
    for fid in rng.sample(files, min(3, len(files))):
        q("UPDATE files SET name=?, updated_at=? WHERE id=?",
          ("renamed-%d-%s.txt" % (fid, rng.choice(al.WORDS)), now(), fid))
        stats["updates"] += 1
    live = [r[0] for r in q("SELECT id FROM files WHERE deleted_at IS NULL ORDER BY id")]
    for fid in rng.sample(live, min(2, len(live))):
        q("UPDATE files SET deleted_at=? WHERE id=?", (now(), fid))
        stats["updates"] += 1
    trashed = [r[0] for r in q("SELECT f.id FROM files f LEFT JOIN folders d ON d.id=f.folder_id "
                               "WHERE f.deleted_at IS NOT NULL AND (d.id IS NULL OR "
                               "d.deleted_at IS NULL) ORDER BY f.id")]
    if trashed:
        q("UPDATE files SET deleted_at=NULL WHERE id=?", (rng.choice(trashed),))
        stats["updates"] += 1
    q("UPDATE shares SET download_count=download_count+1")
    u = rng.choice(users)
    fl = live_folders(u)
    t = now()
    q("INSERT INTO folders (name,parent_id,owner_user_id,team_id,policy_id,created_at,updated_at,"
      "deleted_at) VALUES (?,?,?,NULL,NULL,?,?,NULL)",
      ("New folder %d" % rng.randint(1, 999), rng.choice(fl) if fl else None, u, t, t))
    q("COMMIT")
    stats["updates"] += 2

    # new avatar version for one uploading user
    avatar_dir = al.resolve(root, al.system_config(conn, "avatar_dir", "data/avatar"))
    up = q("SELECT user_id, avatar_key, avatar_version FROM user_profiles WHERE avatar_source='upload' "
           "ORDER BY user_id").fetchall()
    if up:
        uid, key, ver = rng.choice(up)
        nkey = "user/%d/v%d" % (uid, ver + 1)
        d = os.path.join(avatar_dir, nkey)
        al.makedirs(d, 0o755)
        for px in (512, 1024):
            with open(os.path.join(d, "%d.webp" % px), "wb") as f:
                f.write(b"RIFF\0\0\0\0WEBPVP8 " + content.random(rng.randint(4, 40) * KiB))
        q("UPDATE user_profiles SET avatar_key=?, avatar_version=?, updated_at=? WHERE user_id=?",
          (nkey, ver + 1, now(), uid))
        if key and key != nkey:
            old = os.path.join(avatar_dir, key)
            for px in (512, 1024):
                try:
                    os.unlink(os.path.join(old, "%d.webp" % px))
                except FileNotFoundError:
                    pass
            try:
                os.rmdir(old)
            except OSError:
                pass
        stats["updates"] += 1

    # scratch
    tmpd = os.path.join(root, "data", ".tmp")
    al.makedirs(tmpd, 0o700)
    with open(os.path.join(tmpd, "tmp-%s" % al.rand_uuid(rng)), "wb") as f:
        f.write(content.random(64 * KiB))

    conn.close()
    stats["budget_bytes"] = budget
    stats["total_bytes_before"] = total
    stats["changed_percent"] = round(100.0 * (stats["bytes_added"] + stats["bytes_deleted"]) /
                                     max(total, 1), 3)
    print(json.dumps(stats, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
