"""Server databases for the AsterDrive test tools: PostgreSQL and MariaDB/MySQL
through their command-line clients (psql, mariadb), standard library only.

  url = parse_url("postgres://asterdrive@127.0.0.1:5432/asterdrive")
  db = ServerDb(url, password)      # password: None, or the string
  db.run("SQL;")                    # a script; returns stdout
  for row in db.rows("SELECT ..."): # tuples of str/None, every row streamed
  db.copy_in(table, cols, rows)     # bulk load (COPY FROM STDIN / LOAD DATA)

The password never appears on a command line: it goes to the client in the
environment (PGPASSWORD, MYSQL_PWD). URLs: postgres[ql]://user[:pw]@host[:port]/db
(any libpq URI), mysql|mariadb://user[:pw]@host[:port]/db[?socket=PATH].

PG_SCHEMA / MYSQL_SCHEMA: the AsterDrive tables of asterlib.SCHEMA in each
dialect (as in tests/plugins/db_postgres/asterdrive_pg.sql and
tests/plugins/db_mysql/asterdrive_mysql.sql, with every column of the SQLite
schema): booleans are boolean, timestamps timestamptz / DATETIME(6),
storage_config jsonb / JSON.
"""

import os
import shutil
import subprocess
import tempfile
import urllib.parse

TABLES = ["seaql_migrations", "storage_policies", "users", "user_profiles", "folders",
          "file_blobs", "files", "file_revision_histories", "file_revisions", "shares",
          "upload_sessions", "system_config"]

BOOL_COLS = {"content_dedup", "is_default", "is_locked", "is_current"}

PG_SCHEMA = r"""
CREATE TABLE seaql_migrations (
    version     text PRIMARY KEY,
    applied_at  bigint NOT NULL
);
CREATE TABLE storage_policies (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL,
    connector_id    text NOT NULL,
    storage_config  jsonb NOT NULL,
    content_dedup   boolean NOT NULL DEFAULT false,
    is_default      boolean NOT NULL DEFAULT false,
    max_file_size   bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE TABLE users (
    id              bigserial PRIMARY KEY,
    username        text NOT NULL UNIQUE,
    email           text NOT NULL UNIQUE,
    password_hash   text NOT NULL,
    role            text NOT NULL DEFAULT 'user',
    status          text NOT NULL DEFAULT 'active',
    storage_used    bigint NOT NULL DEFAULT 0,
    storage_quota   bigint NOT NULL DEFAULT 0,
    policy_id       bigint REFERENCES storage_policies(id),
    totp_secret_enc text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE TABLE user_profiles (
    user_id         bigint PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    display_name    text,
    avatar_source   text NOT NULL DEFAULT 'none' CHECK (avatar_source IN ('none', 'gravatar', 'upload')),
    avatar_key      text,
    avatar_version  integer NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL
);
CREATE TABLE folders (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL,
    parent_id       bigint REFERENCES folders(id),
    owner_user_id   bigint REFERENCES users(id),
    team_id         bigint,
    policy_id       bigint REFERENCES storage_policies(id),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz
);
CREATE INDEX idx_folders_parent ON folders(parent_id);
CREATE TABLE file_blobs (
    id                  bigserial PRIMARY KEY,
    hash                text NOT NULL,
    size                bigint NOT NULL,
    policy_id           bigint NOT NULL REFERENCES storage_policies(id),
    storage_path        text NOT NULL,
    backing             text NOT NULL DEFAULT 'stored' CHECK (backing IN ('stored', 'virtual_empty')),
    thumbnail_path      text,
    thumbnail_processor text,
    ref_count           bigint NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE INDEX idx_file_blobs_hash ON file_blobs(hash);
CREATE TABLE files (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL,
    folder_id       bigint REFERENCES folders(id),
    blob_id         bigint NOT NULL REFERENCES file_blobs(id),
    size            bigint NOT NULL,
    owner_user_id   bigint REFERENCES users(id),
    team_id         bigint,
    mime_type       text NOT NULL,
    is_locked       boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz
);
CREATE INDEX idx_files_folder ON files(folder_id);
CREATE INDEX idx_files_blob ON files(blob_id);
CREATE TABLE file_revision_histories (
    id                  bigserial PRIMARY KEY,
    file_id             bigint NOT NULL UNIQUE REFERENCES files(id) ON DELETE CASCADE,
    current_revision_id bigint,
    created_at          timestamptz NOT NULL
);
CREATE TABLE file_revisions (
    id              bigserial PRIMARY KEY,
    history_id      bigint NOT NULL REFERENCES file_revision_histories(id) ON DELETE CASCADE,
    file_id         bigint NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    version         integer NOT NULL,
    blob_id         bigint REFERENCES file_blobs(id),
    logical_size    bigint NOT NULL,
    is_current      boolean NOT NULL DEFAULT false,
    retired_at      timestamptz,
    created_at      timestamptz NOT NULL
);
CREATE INDEX idx_file_revisions_blob ON file_revisions(blob_id);
CREATE TABLE shares (
    id              bigserial PRIMARY KEY,
    token           text NOT NULL UNIQUE,
    user_id         bigint NOT NULL REFERENCES users(id),
    file_id         bigint REFERENCES files(id) ON DELETE CASCADE,
    folder_id       bigint REFERENCES folders(id) ON DELETE CASCADE,
    password_hash   text,
    expires_at      timestamptz,
    max_downloads   integer NOT NULL DEFAULT 0,
    download_count  integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    CHECK ((file_id IS NULL) <> (folder_id IS NULL))
);
CREATE TABLE upload_sessions (
    id              text PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users(id),
    policy_id       bigint NOT NULL REFERENCES storage_policies(id),
    folder_id       bigint REFERENCES folders(id),
    filename        text NOT NULL,
    total_size      bigint NOT NULL,
    chunk_size      bigint NOT NULL,
    total_chunks    integer NOT NULL,
    received_count  integer NOT NULL DEFAULT 0,
    object_temp_key text,
    status          text NOT NULL DEFAULT 'uploading',
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL
);
CREATE TABLE system_config (
    key         text PRIMARY KEY,
    value       text NOT NULL,
    value_type  text NOT NULL DEFAULT 'string',
    updated_at  timestamptz NOT NULL
);
"""

MYSQL_SCHEMA = r"""
CREATE TABLE seaql_migrations (
    version     VARCHAR(191) NOT NULL PRIMARY KEY,
    applied_at  BIGINT NOT NULL
) ENGINE=InnoDB;
CREATE TABLE storage_policies (
    id              BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name            VARCHAR(255) NOT NULL,
    connector_id    VARCHAR(64) NOT NULL,
    storage_config  JSON NOT NULL,
    content_dedup   BOOLEAN NOT NULL DEFAULT FALSE,
    is_default      BOOLEAN NOT NULL DEFAULT FALSE,
    max_file_size   BIGINT NOT NULL DEFAULT 0,
    created_at      DATETIME(6) NOT NULL,
    updated_at      DATETIME(6) NOT NULL
) ENGINE=InnoDB;
CREATE TABLE users (
    id              BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    username        VARCHAR(191) NOT NULL UNIQUE,
    email           VARCHAR(191) NOT NULL UNIQUE,
    password_hash   VARCHAR(255) NOT NULL,
    role            VARCHAR(32) NOT NULL DEFAULT 'user',
    status          VARCHAR(32) NOT NULL DEFAULT 'active',
    storage_used    BIGINT NOT NULL DEFAULT 0,
    storage_quota   BIGINT NOT NULL DEFAULT 0,
    policy_id       BIGINT NULL,
    totp_secret_enc TEXT NULL,
    created_at      DATETIME(6) NOT NULL,
    updated_at      DATETIME(6) NOT NULL,
    CONSTRAINT fk_users_policy FOREIGN KEY (policy_id) REFERENCES storage_policies(id)
) ENGINE=InnoDB;
CREATE TABLE user_profiles (
    user_id         BIGINT NOT NULL PRIMARY KEY,
    display_name    VARCHAR(255) NULL,
    avatar_source   ENUM('none', 'gravatar', 'upload') NOT NULL DEFAULT 'none',
    avatar_key      VARCHAR(255) NULL,
    avatar_version  INT NOT NULL DEFAULT 0,
    updated_at      DATETIME(6) NOT NULL,
    CONSTRAINT fk_profiles_user FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE=InnoDB;
CREATE TABLE folders (
    id              BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name            VARCHAR(255) NOT NULL,
    parent_id       BIGINT NULL,
    owner_user_id   BIGINT NULL,
    team_id         BIGINT NULL,
    policy_id       BIGINT NULL,
    created_at      DATETIME(6) NOT NULL,
    updated_at      DATETIME(6) NOT NULL,
    deleted_at      DATETIME(6) NULL,
    KEY idx_folders_parent (parent_id),
    CONSTRAINT fk_folders_parent FOREIGN KEY (parent_id) REFERENCES folders(id),
    CONSTRAINT fk_folders_owner FOREIGN KEY (owner_user_id) REFERENCES users(id),
    CONSTRAINT fk_folders_policy FOREIGN KEY (policy_id) REFERENCES storage_policies(id)
) ENGINE=InnoDB;
CREATE TABLE file_blobs (
    id                  BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    hash                CHAR(64) NOT NULL,
    size                BIGINT NOT NULL,
    policy_id           BIGINT NOT NULL,
    storage_path        VARCHAR(255) NOT NULL,
    backing             ENUM('stored', 'virtual_empty') NOT NULL DEFAULT 'stored',
    thumbnail_path      VARCHAR(255) NULL,
    thumbnail_processor VARCHAR(64) NULL,
    ref_count           BIGINT NOT NULL DEFAULT 0,
    created_at          DATETIME(6) NOT NULL,
    updated_at          DATETIME(6) NOT NULL,
    KEY idx_file_blobs_hash (hash),
    CONSTRAINT fk_blobs_policy FOREIGN KEY (policy_id) REFERENCES storage_policies(id)
) ENGINE=InnoDB;
CREATE TABLE files (
    id              BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name            VARCHAR(255) NOT NULL,
    folder_id       BIGINT NULL,
    blob_id         BIGINT NOT NULL,
    size            BIGINT NOT NULL,
    owner_user_id   BIGINT NULL,
    team_id         BIGINT NULL,
    mime_type       VARCHAR(127) NOT NULL,
    is_locked       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      DATETIME(6) NOT NULL,
    updated_at      DATETIME(6) NOT NULL,
    deleted_at      DATETIME(6) NULL,
    KEY idx_files_folder (folder_id),
    KEY idx_files_blob (blob_id),
    CONSTRAINT fk_files_folder FOREIGN KEY (folder_id) REFERENCES folders(id),
    CONSTRAINT fk_files_blob FOREIGN KEY (blob_id) REFERENCES file_blobs(id),
    CONSTRAINT fk_files_owner FOREIGN KEY (owner_user_id) REFERENCES users(id)
) ENGINE=InnoDB;
CREATE TABLE file_revision_histories (
    id                  BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    file_id             BIGINT NOT NULL UNIQUE,
    current_revision_id BIGINT NULL,
    created_at          DATETIME(6) NOT NULL,
    CONSTRAINT fk_hist_file FOREIGN KEY (file_id) REFERENCES files(id) ON DELETE CASCADE
) ENGINE=InnoDB;
CREATE TABLE file_revisions (
    id              BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    history_id      BIGINT NOT NULL,
    file_id         BIGINT NOT NULL,
    version         INT NOT NULL,
    blob_id         BIGINT NULL,
    logical_size    BIGINT NOT NULL,
    is_current      BOOLEAN NOT NULL DEFAULT FALSE,
    retired_at      DATETIME(6) NULL,
    created_at      DATETIME(6) NOT NULL,
    KEY idx_file_revisions_blob (blob_id),
    CONSTRAINT fk_rev_hist FOREIGN KEY (history_id) REFERENCES file_revision_histories(id) ON DELETE CASCADE,
    CONSTRAINT fk_rev_file FOREIGN KEY (file_id) REFERENCES files(id) ON DELETE CASCADE,
    CONSTRAINT fk_rev_blob FOREIGN KEY (blob_id) REFERENCES file_blobs(id)
) ENGINE=InnoDB;
CREATE TABLE shares (
    id              BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    token           VARCHAR(64) NOT NULL UNIQUE,
    user_id         BIGINT NOT NULL,
    file_id         BIGINT NULL,
    folder_id       BIGINT NULL,
    password_hash   VARCHAR(255) NULL,
    expires_at      DATETIME(6) NULL,
    max_downloads   INT NOT NULL DEFAULT 0,
    download_count  INT NOT NULL DEFAULT 0,
    created_at      DATETIME(6) NOT NULL,
    CONSTRAINT fk_shares_user FOREIGN KEY (user_id) REFERENCES users(id),
    CONSTRAINT fk_shares_file FOREIGN KEY (file_id) REFERENCES files(id) ON DELETE CASCADE,
    CONSTRAINT fk_shares_folder FOREIGN KEY (folder_id) REFERENCES folders(id) ON DELETE CASCADE,
    CONSTRAINT chk_share_target CHECK ((file_id IS NULL) <> (folder_id IS NULL))
) ENGINE=InnoDB;
CREATE TABLE upload_sessions (
    id              CHAR(36) NOT NULL PRIMARY KEY,
    user_id         BIGINT NOT NULL,
    policy_id       BIGINT NOT NULL,
    folder_id       BIGINT NULL,
    filename        VARCHAR(255) NOT NULL,
    total_size      BIGINT NOT NULL,
    chunk_size      BIGINT NOT NULL,
    total_chunks    INT NOT NULL,
    received_count  INT NOT NULL DEFAULT 0,
    object_temp_key VARCHAR(255) NULL,
    status          VARCHAR(32) NOT NULL DEFAULT 'uploading',
    created_at      DATETIME(6) NOT NULL,
    expires_at      DATETIME(6) NOT NULL,
    CONSTRAINT fk_uploads_user FOREIGN KEY (user_id) REFERENCES users(id),
    CONSTRAINT fk_uploads_policy FOREIGN KEY (policy_id) REFERENCES storage_policies(id),
    CONSTRAINT fk_uploads_folder FOREIGN KEY (folder_id) REFERENCES folders(id)
) ENGINE=InnoDB;
CREATE TABLE system_config (
    `key`           VARCHAR(191) NOT NULL PRIMARY KEY,
    value           TEXT NOT NULL,
    value_type      VARCHAR(32) NOT NULL DEFAULT 'string',
    updated_at      DATETIME(6) NOT NULL
) ENGINE=InnoDB;
"""


def parse_url(url):
    """{'kind': 'postgres'|'mysql'|'sqlite', 'user', 'password', 'host', 'port',
    'database', 'socket', 'path', 'url' (without password)}."""
    u = urllib.parse.urlsplit(url)
    scheme = u.scheme.lower()
    if scheme == "sqlite":
        p = url[len("sqlite:"):]
        if p.startswith("//"):
            p = p[2:]
        return {"kind": "sqlite", "path": p.split("?", 1)[0], "url": url}
    if scheme in ("postgres", "postgresql"):
        kind = "postgres"
    elif scheme in ("mysql", "mariadb"):
        kind = "mysql"
    else:
        raise ValueError("unsupported database URL scheme '%s' (postgres://, mysql://, sqlite://)"
                         % u.scheme)
    q = urllib.parse.parse_qs(u.query)
    netloc = u.hostname or ""
    if u.port:
        netloc += ":%d" % u.port
    if u.username:
        netloc = urllib.parse.quote(urllib.parse.unquote(u.username), safe="") + "@" + netloc
    clean = urllib.parse.urlunsplit((u.scheme, netloc, u.path, u.query, ""))
    return {"kind": kind,
            "user": urllib.parse.unquote(u.username) if u.username else None,
            "password": urllib.parse.unquote(u.password) if u.password else None,
            "host": u.hostname, "port": u.port,
            "database": urllib.parse.unquote(u.path.lstrip("/")) or None,
            "socket": (q.get("socket") or [None])[0], "query": u.query, "url": clean}


def _which(names, extra_globs=()):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    import glob
    for g in extra_globs:
        c = sorted(glob.glob(g))
        if c:
            return c[-1]
    raise FileNotFoundError("none of %s found (install the database client)" % ", ".join(names))


def _escape(v):
    """PostgreSQL COPY text / MySQL LOAD DATA default format field."""
    if v is None:
        return "\\N"
    s = str(v)
    return (s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


_UNESC = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\", "0": "\0", "b": "\b", "f": "\f",
          "v": "\v"}


def _unescape(s):
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            out.append(_UNESC.get(s[i + 1], s[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


class ServerDb:
    """One server database reached through its CLI client."""

    def __init__(self, url, password=None):
        self.u = parse_url(url) if isinstance(url, str) else url
        if self.u["kind"] not in ("postgres", "mysql"):
            raise ValueError("not a server database URL: %s" % self.u["url"])
        self.password = password if password is not None else self.u.get("password")
        self.kind = self.u["kind"]
        self.env = dict(os.environ)
        if self.kind == "postgres":
            self.client = _which(["psql"], ["/usr/lib/postgresql/*/bin/psql"])
            self.env.pop("PGPASSWORD", None)
            if self.password is not None:
                self.env["PGPASSWORD"] = self.password
            self.env["PGCLIENTENCODING"] = "UTF8"
        else:
            self.client = _which(["mariadb", "mysql"])
            self.env.pop("MYSQL_PWD", None)
            if self.password is not None:
                self.env["MYSQL_PWD"] = self.password

    def _argv(self, database=True):
        u = self.u
        if self.kind == "postgres":
            return [self.client, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", u["url"]]
        a = [self.client, "--no-defaults", "--batch", "--skip-column-names",
             "--default-character-set=utf8mb4", "--local-infile=1"]
        if u["user"]:
            a += ["-u", u["user"]]
        if u["socket"]:
            a += ["-S", u["socket"]]
        else:
            a += ["-h", u["host"] or "localhost", "--protocol=TCP"]
            if u["port"]:
                a += ["-P", str(u["port"])]
        if database and u["database"]:
            a += ["-D", u["database"]]
        return a

    def run(self, script, database=True):
        """Run an SQL script; return its stdout (raises on error)."""
        argv = self._argv(database)
        if self.kind == "postgres":
            argv += ["-At", "-f", "-"]
        r = subprocess.run(argv, input=script.encode(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=self.env)
        if r.returncode != 0:
            raise RuntimeError("%s: %s" % (os.path.basename(self.client),
                                           r.stderr.decode(errors="replace").strip()))
        return r.stdout.decode()

    def rows(self, query):
        """Stream the rows of a query: tuples of str (None for NULL)."""
        if self.kind == "postgres":
            argv = self._argv() + ["-c", "COPY (%s) TO STDOUT" % query.rstrip().rstrip(";")]
            null = "\\N"
        else:
            argv = self._argv() + ["-e", query]
            null = "NULL"
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)
        try:
            for line in p.stdout:
                line = line.decode().rstrip("\n")
                yield tuple(None if f == null else _unescape(f) for f in line.split("\t"))
        finally:
            p.stdout.close()
            err = p.stderr.read()
            if p.wait() != 0:
                raise RuntimeError("%s: %s" % (os.path.basename(self.client),
                                               err.decode(errors="replace").strip()))

    def copy_in(self, table, cols, rows):
        """Bulk-load rows (sequences of values; None = NULL) into table."""
        qcols = ", ".join(self.quote(c) for c in cols)
        if self.kind == "postgres":
            parts = ["SET client_min_messages = warning;\n",
                     "COPY %s (%s) FROM STDIN;\n" % (table, qcols)]
            parts += ["\t".join(_escape(v) for v in r) + "\n" for r in rows]
            parts.append("\\.\n")
            self.run("".join(parts))
            return
        fd, path = tempfile.mkstemp(prefix="asterdb.", suffix=".tsv")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                for r in rows:
                    f.write("\t".join(_escape(v) for v in r) + "\n")
            self.run("SET FOREIGN_KEY_CHECKS=0;\n"
                     "LOAD DATA LOCAL INFILE '%s' INTO TABLE %s CHARACTER SET utf8mb4 (%s);\n"
                     "SET FOREIGN_KEY_CHECKS=1;\n" % (path.replace("'", "''"), table, qcols))
        finally:
            os.unlink(path)

    def quote(self, ident):
        return '"%s"' % ident if self.kind == "postgres" else "`%s`" % ident
