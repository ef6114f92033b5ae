"""Shared helpers for the AsterDrive test tools (standard library only).

The tools in this folder build, mutate, check and snapshot a deployment that
looks like AsterDrive 0.5 (see /work/shared/design/asterdrive.md):

  ROOT/data/config.toml            [auth] secrets, [database] url
  ROOT/data/asterdrive.db          SQLite, WAL, foreign_keys=ON
  ROOT/data/uploads/<k0:2>/<k2:4>/<k>   blob objects of the local policy
  ROOT/data/uploads/_thumb/<proc>/1/<h0:2>/<h2:4>/<h>.webp
  ROOT/data/avatar/user/<id>/v<ver>/{512,1024}.webp
  ROOT/data/.tmp/, ROOT/data/.uploads/   scratch (not backup content)

Paths stored in the database (storage_config.base_path, system_config
avatar_dir) are relative to ROOT (the service's working directory) unless
absolute.
"""

import hashlib
import json
import os
import random
import re
import shutil
import sqlite3
import tempfile

AUTH_SECRETS = (
    "jwt_secret",
    "mfa_secret_key",
    "storage_credential_secret_key",
    "share_cookie_secret",
    "direct_link_secret",
    "webdav_auth_cache_secret",
)

# Fixed base time (2024-01-01T00:00:00Z) so that generated trees are
# deterministic; every timestamp is derived from it and the seed.
BASE_TIME = 1704067200

SCHEMA = r"""
CREATE TABLE seaql_migrations (
    version     TEXT PRIMARY KEY NOT NULL,
    applied_at  INTEGER NOT NULL
);
CREATE TABLE storage_policies (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL,
    connector_id    TEXT NOT NULL,
    storage_config  TEXT NOT NULL,
    content_dedup   INTEGER NOT NULL DEFAULT 0,
    is_default      INTEGER NOT NULL DEFAULT 0,
    max_file_size   INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE TABLE users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    username        TEXT NOT NULL UNIQUE,
    email           TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    role            TEXT NOT NULL DEFAULT 'user',
    status          TEXT NOT NULL DEFAULT 'active',
    storage_used    INTEGER NOT NULL DEFAULT 0,
    storage_quota   INTEGER NOT NULL DEFAULT 0,
    policy_id       INTEGER REFERENCES storage_policies(id),
    totp_secret_enc TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE TABLE user_profiles (
    user_id         INTEGER PRIMARY KEY NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    display_name    TEXT,
    avatar_source   TEXT NOT NULL DEFAULT 'none'
                    CHECK (avatar_source IN ('none', 'gravatar', 'upload')),
    avatar_key      TEXT,
    avatar_version  INTEGER NOT NULL DEFAULT 0,
    updated_at      TEXT NOT NULL
);
CREATE TABLE folders (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL,
    parent_id       INTEGER REFERENCES folders(id),
    owner_user_id   INTEGER REFERENCES users(id),
    team_id         INTEGER,
    policy_id       INTEGER REFERENCES storage_policies(id),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    deleted_at      TEXT
);
CREATE INDEX idx_folders_parent ON folders(parent_id);
CREATE TABLE file_blobs (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    hash                TEXT NOT NULL,
    size                INTEGER NOT NULL,
    policy_id           INTEGER NOT NULL REFERENCES storage_policies(id),
    storage_path        TEXT NOT NULL,
    backing             TEXT NOT NULL DEFAULT 'stored'
                        CHECK (backing IN ('stored', 'virtual_empty')),
    thumbnail_path      TEXT,
    thumbnail_processor TEXT,
    ref_count           INTEGER NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
CREATE INDEX idx_file_blobs_hash ON file_blobs(hash);
CREATE TABLE files (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL,
    folder_id       INTEGER REFERENCES folders(id),
    blob_id         INTEGER NOT NULL REFERENCES file_blobs(id),
    size            INTEGER NOT NULL,
    owner_user_id   INTEGER REFERENCES users(id),
    team_id         INTEGER,
    mime_type       TEXT NOT NULL,
    is_locked       INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    deleted_at      TEXT
);
CREATE INDEX idx_files_folder ON files(folder_id);
CREATE INDEX idx_files_blob ON files(blob_id);
CREATE TABLE file_revision_histories (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id             INTEGER NOT NULL UNIQUE REFERENCES files(id) ON DELETE CASCADE,
    current_revision_id INTEGER,
    created_at          TEXT NOT NULL
);
CREATE TABLE file_revisions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    history_id      INTEGER NOT NULL REFERENCES file_revision_histories(id) ON DELETE CASCADE,
    file_id         INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    version         INTEGER NOT NULL,
    blob_id         INTEGER REFERENCES file_blobs(id),
    logical_size    INTEGER NOT NULL,
    is_current      INTEGER NOT NULL DEFAULT 0,
    retired_at      TEXT,
    created_at      TEXT NOT NULL
);
CREATE INDEX idx_file_revisions_blob ON file_revisions(blob_id);
CREATE TABLE shares (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    token           TEXT NOT NULL UNIQUE,
    user_id         INTEGER NOT NULL REFERENCES users(id),
    file_id         INTEGER REFERENCES files(id) ON DELETE CASCADE,
    folder_id       INTEGER REFERENCES folders(id) ON DELETE CASCADE,
    password_hash   TEXT,
    expires_at      TEXT,
    max_downloads   INTEGER NOT NULL DEFAULT 0,
    download_count  INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    CHECK ((file_id IS NULL) <> (folder_id IS NULL))
);
CREATE TABLE upload_sessions (
    id              TEXT PRIMARY KEY NOT NULL,
    user_id         INTEGER NOT NULL REFERENCES users(id),
    policy_id       INTEGER NOT NULL REFERENCES storage_policies(id),
    folder_id       INTEGER REFERENCES folders(id),
    filename        TEXT NOT NULL,
    total_size      INTEGER NOT NULL,
    chunk_size      INTEGER NOT NULL,
    total_chunks    INTEGER NOT NULL,
    received_count  INTEGER NOT NULL DEFAULT 0,
    object_temp_key TEXT,
    status          TEXT NOT NULL DEFAULT 'uploading',
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL
);
CREATE TABLE system_config (
    key         TEXT PRIMARY KEY NOT NULL,
    value       TEXT NOT NULL,
    value_type  TEXT NOT NULL DEFAULT 'string',
    updated_at  TEXT NOT NULL
);
"""

MIGRATIONS = [
    "m20250101_000001_create_users",
    "m20250101_000002_create_storage_policies",
    "m20250101_000003_create_folders",
    "m20250101_000004_create_file_blobs",
    "m20250101_000005_create_files",
    "m20250102_000001_create_shares",
    "m20250110_000001_create_upload_sessions",
    "m20250115_000001_create_system_config",
    "m20250201_000001_add_user_profiles",
    "m20250215_000001_add_file_revisions",
    "m20250301_000001_add_blob_thumbnails",
    "m20250320_000001_add_blob_backing",
    "m20250401_000001_add_teams",
    "m20250420_000001_add_content_dedup",
    "m20250501_000001_add_avatar_versions",
]

WORDS = (
    "the of and to in is that for it as with was on be by this are at from or "
    "an have not which but all were when we there can been has more if will "
    "one would so what their out up about into than them only other some "
    "could time these two may then do first any my now such like our over "
    "backup restore storage policy folder file blob share upload session "
    "token user admin drive cloud sqlite config secret thumbnail preview "
    "revision history trash quota report invoice meeting notes project "
    "budget draft final review photo album music video archive release "
    "kernel server network client request response error warning info debug"
).split()


def iso(ts):
    """ISO-8601 UTC text for a Unix time (as SeaORM stores in SQLite)."""
    import time as _t
    return _t.strftime("%Y-%m-%d %H:%M:%S", _t.gmtime(ts)) + "+00:00"


class Content:
    """Deterministic content source: text-like (compressible, mostly unique
    at chunk scale) and random bytes, written in large blocks."""

    BLOCK = 4 << 20

    def __init__(self, rng):
        self.rng = rng
        self._pool = None

    @property
    def pool(self):
        """Text pool, built on first use (from its own derived generator so
        the main sequence does not depend on when it is built)."""
        if self._pool is None:
            self._pool = self._build_pool(random.Random(self.rng.getrandbits(64)))
        return self._pool

    @staticmethod
    def _build_pool(rng):
        words = rng.choices(WORDS, k=600000)
        lines = []
        i = 0
        while i < len(words):
            n = rng.randint(6, 16)
            lines.append(" ".join(words[i:i + n]).capitalize() + ".")
            i += n
        return ("\n".join(lines) + "\n").encode()

    def text(self, n):
        rng, pool = self.rng, self.pool
        parts, have = [], 0
        while have < n:
            seg = min(n - have, rng.randint(2048, 65536))
            off = rng.randrange(0, len(pool) - seg)
            parts.append(pool[off:off + seg])
            have += seg
        return b"".join(parts)

    def random(self, n):
        return self.rng.randbytes(n)

    def write(self, f, size, kind):
        """Write size bytes of kind ('text', 'random', 'mixed') to file
        object f; return the sha256 hex digest."""
        h = hashlib.sha256()
        done = 0
        while done < size:
            n = min(self.BLOCK, size - done)
            if kind == "text" or (kind == "mixed" and done < size // 2):
                b = self.text(n)
            else:
                b = self.random(n)
            f.write(b)
            h.update(b)
            done += n
        return h.hexdigest()


def blob_rel(key):
    return "%s/%s/%s" % (key[0:2], key[2:4], key)


def thumb_rel(proc, h):
    return "_thumb/%s/1/%s/%s/%s.webp" % (proc, h[0:2], h[2:4], h)


def preview_rel(proc, h):
    return "_preview/%s/1/%s/%s/%s.webp" % (proc, h[0:2], h[2:4], h)


def makedirs(path, mode=0o755):
    """mkdir -p with an explicit mode for every directory created."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent):
        makedirs(parent, mode)
    os.mkdir(path)
    os.chmod(path, mode)


# ---------------------------------------------------------------- config

def parse_toml(text):
    """tomllib when available (Python >= 3.11), else a tiny parser for the
    subset config.toml uses (tables, key = "string" | int | bool)."""
    try:
        import tomllib
        return tomllib.loads(text)
    except ImportError:
        pass
    out = {}
    cur = out
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^\[([A-Za-z0-9_.-]+)\]$", line)
        if m:
            cur = out.setdefault(m.group(1), {})
            continue
        m = re.match(r'^([A-Za-z0-9_-]+)\s*=\s*(.+)$', line)
        if not m:
            raise ValueError("cannot parse line: %r" % raw)
        k, v = m.group(1), m.group(2).strip()
        if v.startswith('"'):
            v = v[1:v.rindex('"')]
        elif v in ("true", "false"):
            v = v == "true"
        else:
            v = int(v)
        cur[k] = v
    return out


def load_config(root):
    p = os.path.join(root, "data", "config.toml")
    with open(p, "r", encoding="utf-8") as f:
        return parse_toml(f.read())


def db_path_from_config(root, cfg):
    """Resolve [database] url to a file path. Relative sqlite paths are
    relative to data/ (where config.toml lives)."""
    url = cfg.get("database", {}).get("url", "sqlite://asterdrive.db?mode=rwc")
    if not url.startswith("sqlite:"):
        raise ValueError("not a sqlite database url: %s" % url)
    p = url[len("sqlite:"):]
    if p.startswith("//"):
        p = p[2:]
    p = p.split("?", 1)[0]
    if not os.path.isabs(p):
        p = os.path.join(root, "data", p)
    return p


def find_db(root):
    try:
        return db_path_from_config(root, load_config(root))
    except (OSError, ValueError):
        return os.path.join(root, "data", "asterdrive.db")


def resolve(root, p):
    return p if os.path.isabs(p) else os.path.join(root, p)


# ---------------------------------------------------------------- database

def open_db(path):
    """Read-write connection with the settings AsterDrive uses."""
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    c = sqlite3.connect("file:%s?mode=rw" % path, uri=True, timeout=30,
                        isolation_level=None)
    c.execute("PRAGMA busy_timeout=30000")
    c.execute("PRAGMA foreign_keys=ON")
    return c


class ReadOnlyDb:
    """Open a database without changing it on disk: copy the main file and
    its -wal (never -shm) into a temporary directory and open the copy.
    WAL content is therefore visible, and closing never checkpoints or
    deletes the original -wal. Meant for quiescent databases."""

    def __init__(self, path):
        if not os.path.exists(path):
            raise FileNotFoundError(path)
        self.tmp = tempfile.mkdtemp(prefix="asterdb.")
        try:
            dst = os.path.join(self.tmp, "db")
            shutil.copyfile(path, dst)
            if os.path.exists(path + "-wal"):
                shutil.copyfile(path + "-wal", dst + "-wal")
            self.conn = sqlite3.connect(dst, isolation_level=None)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise

    def close(self):
        try:
            self.conn.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.conn

    def __exit__(self, *a):
        self.close()


def open_ro(path):
    """Read-only access that changes nothing in the database's directory.
    When a -shm exists (the database is in use, e.g. a live service), open
    with mode=ro and normal locking: consistent even against writers, and no
    file is created. Otherwise (a quiescent copy, e.g. a restored tree) read
    a private copy of the main file and -wal, because the first reader of a
    WAL database creates -shm, which would change the directory's mtime.
    Returns (conn, closer)."""
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    if not os.path.exists(path + "-shm"):
        ro = ReadOnlyDb(path)
        return ro.conn, ro.close
    try:
        c = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=30,
                            isolation_level=None)
        c.execute("PRAGMA busy_timeout=30000")
        c.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return c, c.close
    except sqlite3.Error:
        ro = ReadOnlyDb(path)
        return ro.conn, ro.close


def close_keep_wal(conn, path):
    """Close the last connection to a WAL database but leave the -wal file
    (and the main file) as they were while open, as a running service (or a
    crash) leaves them. Closing would checkpoint and delete the -wal; we copy
    both files aside first and put them back afterwards. The -shm is not
    needed: SQLite rebuilds it from the -wal. Call only when idle."""
    wal = path + "-wal"
    if not os.path.exists(wal) or os.path.getsize(wal) == 0:
        conn.close()
        return False
    keep_db, keep_wal = path + ".keep", wal + ".keep"
    shutil.copyfile(path, keep_db)
    shutil.copyfile(wal, keep_wal)
    st = os.stat(path)
    conn.close()
    os.replace(keep_db, path)
    os.replace(keep_wal, wal)
    os.chmod(path, st.st_mode & 0o7777)
    os.chmod(wal, st.st_mode & 0o7777)
    try:
        os.unlink(path + "-shm")
    except FileNotFoundError:
        pass
    return True


def local_policies(conn):
    """[(id, base_path, content_dedup)] for local storage policies."""
    out = []
    for pid, conn_id, cfg, dedup in conn.execute(
            "SELECT id, connector_id, storage_config, content_dedup FROM storage_policies"):
        if conn_id != "local":
            continue
        try:
            bp = json.loads(cfg).get("base_path")
        except ValueError:
            bp = None
        out.append((pid, bp, bool(dedup)))
    return out


def system_config(conn, key, default=None):
    r = conn.execute("SELECT value FROM system_config WHERE key=?", (key,)).fetchone()
    return r[0] if r else default


def recompute_storage_used(conn, user_id):
    (files_sum,) = conn.execute(
        "SELECT COALESCE(SUM(size),0) FROM files WHERE owner_user_id=?", (user_id,)).fetchone()
    (rev_sum,) = conn.execute(
        "SELECT COALESCE(SUM(r.logical_size),0) FROM file_revisions r "
        "JOIN files f ON f.id=r.file_id "
        "WHERE f.owner_user_id=? AND r.is_current=0 AND r.retired_at IS NULL",
        (user_id,)).fetchone()
    return files_sum + rev_sum


def recompute_ref_count(conn, blob_id):
    (nf,) = conn.execute("SELECT COUNT(*) FROM files WHERE blob_id=?", (blob_id,)).fetchone()
    (nr,) = conn.execute(
        "SELECT COUNT(*) FROM file_revisions WHERE blob_id=? AND is_current=0 "
        "AND retired_at IS NULL", (blob_id,)).fetchone()
    return nf + nr


def sha256_file(path, bufsize=4 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(bufsize)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def rand_hex(rng, n):
    return "%0*x" % (n, rng.getrandbits(4 * n))


def rand_uuid(rng):
    h = rand_hex(rng, 32)
    return "%s-%s-4%s-a%s-%s" % (h[0:8], h[8:12], h[13:16], h[17:20], h[20:32])


MIME_TEXT = ["text/plain", "text/markdown", "application/json", "text/csv",
             "application/x-yaml", "text/html"]
MIME_BIN = ["application/pdf", "application/zip", "application/octet-stream",
            "video/mp4", "audio/mpeg", "application/x-tar"]
MIME_IMAGE = ["image/jpeg", "image/png", "image/webp"]
EXT = {"text/plain": "txt", "text/markdown": "md", "application/json": "json",
       "text/csv": "csv", "application/x-yaml": "yaml", "text/html": "html",
       "application/pdf": "pdf", "application/zip": "zip",
       "application/octet-stream": "bin", "video/mp4": "mp4",
       "audio/mpeg": "mp3", "application/x-tar": "tar", "image/jpeg": "jpg",
       "image/png": "png", "image/webp": "webp"}


def file_name(rng, mime, n):
    stem = "%s-%s-%d" % (rng.choice(WORDS), rng.choice(WORDS), n)
    return "%s.%s" % (stem, EXT.get(mime, "bin"))


class BlobWriter:
    """Writes a blob object under a local policy root, choosing the key
    (random 32-hex, or sha256 of the content when dedup is on). Objects are
    written to a temporary name first and renamed into place."""

    def __init__(self, root, base_path, dedup, content, rng):
        self.base = resolve(root, base_path)
        self.dedup = dedup
        self.content = content
        self.rng = rng
        makedirs(self.base)

    def write(self, size, kind, mode=0o640):
        """Returns (key, sha256, abs_path, existed). With dedup, an existing
        object with the same hash is reused (existed=True)."""
        tmp = os.path.join(self.base, ".gen-%d.tmp" % os.getpid())
        with open(tmp, "wb") as f:
            digest = self.content.write(f, size, kind)
        key = digest if self.dedup else rand_hex(self.rng, 32)
        path = os.path.join(self.base, blob_rel(key))
        if os.path.exists(path):
            os.unlink(tmp)
            return key, digest, path, True
        makedirs(os.path.dirname(path))
        os.chmod(tmp, mode)
        os.rename(tmp, path)
        return key, digest, path, False

    def copy_of(self, src_path, digest, mode=0o640, hardlink=False):
        """A second object with the same content (non-dedup policies)."""
        key = rand_hex(self.rng, 32)
        path = os.path.join(self.base, blob_rel(key))
        makedirs(os.path.dirname(path))
        if hardlink:
            os.link(src_path, path)
        else:
            shutil.copyfile(src_path, path)
            os.chmod(path, mode)
        return key, path
