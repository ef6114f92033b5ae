#!/usr/bin/env python3
"""Move the database of a deployment made by gen_asterdrive.py to a server.

  aster_load.py ROOT --url URL [--password-file F] [--replace] [--keep-sqlite]
                [--no-foreign-keys]
                [--objects-dir DIR --bucket B [--s3-prefix P] [--endpoint E]]

Reads ROOT's SQLite database (read-only, WAL included), creates the
AsterDrive tables on the server given by URL (PostgreSQL:
postgres://user@host:port/db, the database must exist; MariaDB/MySQL:
mysql://user@host:port/db or ...?socket=PATH, the schema is created when
missing), loads every row with the client's bulk path (psql COPY FROM
STDIN, mariadb LOAD DATA LOCAL INFILE), sets the sequences, checks the row
count of every table, then points data/config.toml's [database] url at URL
(no password in it) and removes data/asterdrive.db and its -wal/-shm
(--keep-sqlite keeps them). The blobs stay on disk: the result is the same
deployment, consistent (doctor-clean when the source was), with its
database on the server.

The password comes from --password-file, else PGPASSWORD / MYSQL_PWD, else
the URL; it is given to the client in its environment, never on a command
line. --replace drops existing AsterDrive tables first (else they must not
exist). --no-foreign-keys creates the tables without foreign keys, to load
a deliberately broken database (rows naming missing blobs or folders).

--objects-dir DIR turns the default local storage policy into an S3 policy
(connector s3, storage_config {"bucket","prefix","endpoint"}): its stored
blobs become objects `files/<key>` (storage_path) and are moved to
DIR/<s3-prefix>files/<key>, ready for `aws s3 sync DIR s3://BUCKET/`;
thumbnails and previews are dropped (thumbnail_path NULL) and data/uploads
is removed.

Prints a JSON summary: url, kind, rows per table, seconds.
Needs python3 (standard library) and psql or mariadb.
"""

import argparse
import json
import os
import re
import shutil
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import asterlib as al  # noqa: E402
import asterdb  # noqa: E402

TZ_RE = re.compile(r"([+-]00:00|Z)$")


def read_password(a, kind):
    if a.password_file:
        with open(a.password_file, "r", encoding="utf-8") as f:
            return f.read().rstrip("\r\n")
    env = "PGPASSWORD" if kind == "postgres" else "MYSQL_PWD"
    return os.environ.get(env)


def table_rows(conn, table, cols):
    pk = "id" if "id" in cols else cols[0]
    return conn.execute('SELECT %s FROM "%s" ORDER BY "%s"' %
                        (", ".join('"%s"' % c for c in cols), table, pk))


def convert(kind, cols, row):
    out = []
    for c, v in zip(cols, row):
        if v is not None and c in asterdb.BOOL_COLS and kind == "postgres":
            v = "t" if int(v) else "f"
        elif v is not None and kind == "mysql" and c.endswith("_at") and c != "applied_at":
            v = TZ_RE.sub("", str(v))
        out.append(v)
    return out


def s3_rewrite(root, conn, a):
    """Rows rewritten for an S3 storage policy; objects moved to objects-dir.
    Returns {table: callable(cols, row) -> row}."""
    pol = conn.execute("SELECT id, storage_config FROM storage_policies WHERE is_default=1 "
                       "AND connector_id='local'").fetchone()
    if not pol:
        sys.exit("aster_load: no default local storage policy to turn into S3")
    pid = pol[0]
    base = al.resolve(root, json.loads(pol[1])["base_path"])
    prefix = a.s3_prefix or ""
    moved = {}

    def policies(cols, row):
        r = dict(zip(cols, row))
        if r["id"] == pid:
            r["connector_id"] = "s3"
            r["storage_config"] = json.dumps({"bucket": a.bucket, "prefix": prefix,
                                              "endpoint": a.endpoint or "", "region": "us-east-1"})
            r["content_dedup"] = 0
        return [r[c] for c in cols]

    def blobs(cols, row):
        r = dict(zip(cols, row))
        if r["policy_id"] == pid:
            r["thumbnail_path"] = r["thumbnail_processor"] = None
            if r["backing"] == "stored":
                key = os.path.basename(r["storage_path"])
                newp = "files/%s" % key
                src = os.path.join(base, r["storage_path"])
                dst = os.path.join(a.objects_dir, prefix + newp)
                if newp not in moved:
                    al.makedirs(os.path.dirname(dst))
                    shutil.copyfile(src, dst)
                    moved[newp] = True
                r["storage_path"] = newp
        return [r[c] for c in cols]

    def uploads(cols, row):
        r = dict(zip(cols, row))
        if r["policy_id"] == pid and r["object_temp_key"]:
            src = os.path.join(base, r["object_temp_key"])
            r["object_temp_key"] = "files/" + r["object_temp_key"]
            if os.path.isfile(src):
                dst = os.path.join(a.objects_dir, prefix + r["object_temp_key"])
                al.makedirs(os.path.dirname(dst))
                shutil.copyfile(src, dst)
        return [r[c] for c in cols]

    return {"storage_policies": policies, "file_blobs": blobs, "upload_sessions": uploads}, base


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("root")
    ap.add_argument("--url", required=True)
    ap.add_argument("--password-file")
    ap.add_argument("--replace", action="store_true")
    ap.add_argument("--keep-sqlite", action="store_true")
    ap.add_argument("--no-foreign-keys", action="store_true")
    ap.add_argument("--objects-dir")
    ap.add_argument("--bucket")
    ap.add_argument("--s3-prefix", default="")
    ap.add_argument("--endpoint")
    a = ap.parse_args()
    if a.objects_dir and not a.bucket:
        sys.exit("aster_load: --objects-dir needs --bucket")
    t0 = time.time()
    root = os.path.abspath(a.root)
    u = asterdb.parse_url(a.url)
    if u["kind"] not in ("postgres", "mysql"):
        sys.exit("aster_load: --url must be postgres://... or mysql://...")
    if not u["database"]:
        sys.exit("aster_load: --url names no database")
    db = asterdb.ServerDb(u, read_password(a, u["kind"]))
    src = al.find_db(root)
    conn, close = al.open_ro(src)
    rewrite, s3_base = ({}, None)
    try:
        if a.objects_dir:
            rewrite, s3_base = s3_rewrite(root, conn, a)
        if db.kind == "mysql":
            db.run("CREATE DATABASE IF NOT EXISTS `%s` CHARACTER SET utf8mb4 "
                   "COLLATE utf8mb4_unicode_ci;" % u["database"], database=False)
        drop = ""
        if a.replace:
            if db.kind == "postgres":
                drop = "".join("DROP TABLE IF EXISTS %s CASCADE;\n" % t
                               for t in reversed(asterdb.TABLES))
            else:
                drop = "SET FOREIGN_KEY_CHECKS=0;\n" + "".join(
                    "DROP TABLE IF EXISTS %s;\n" % t for t in reversed(asterdb.TABLES)) + \
                    "SET FOREIGN_KEY_CHECKS=1;\n"
        schema = asterdb.PG_SCHEMA if db.kind == "postgres" else asterdb.MYSQL_SCHEMA
        if a.no_foreign_keys:
            schema = re.sub(r"\s+REFERENCES \w+\(\w+\)( ON DELETE CASCADE)?", "", schema)
            schema = re.sub(r",\n\s+CONSTRAINT fk_\w+ FOREIGN KEY [^\n]*?(?=,?\n)", "", schema)
        pre = "SET client_min_messages = warning;\n" if db.kind == "postgres" else ""
        db.run(pre + drop + schema)
        rows = {}
        for t in asterdb.TABLES:
            cols = [r[1] for r in conn.execute('PRAGMA table_info("%s")' % t)]
            fix = rewrite.get(t)
            data = (convert(db.kind, cols, fix(cols, r) if fix else r)
                    for r in table_rows(conn, t, cols))
            db.copy_in(t, cols, data)
            rows[t] = conn.execute('SELECT COUNT(*) FROM "%s"' % t).fetchone()[0]
    finally:
        close()
    # sequences, statistics, row counts
    if db.kind == "postgres":
        db.run("".join(
            "SELECT setval(pg_get_serial_sequence('%s', 'id'), COALESCE(MAX(id), 0) + 1, false) "
            "FROM %s;\n" % (t, t) for t in asterdb.TABLES
            if t not in ("seaql_migrations", "user_profiles", "upload_sessions", "system_config"))
            + "ANALYZE;\n")
    else:
        db.run("ANALYZE TABLE %s;\n" % ", ".join(asterdb.TABLES))
    q = " UNION ALL ".join("SELECT '%s', COUNT(*) FROM %s" % (t, t) for t in asterdb.TABLES)
    got = {r[0]: int(r[1]) for r in db.rows(q)}
    if got != rows:
        sys.exit("aster_load: row counts differ after loading: sqlite %s, server %s" % (rows, got))

    # config.toml: [database] url
    cfg = os.path.join(root, "data", "config.toml")
    with open(cfg, "r", encoding="utf-8") as f:
        text = f.read()
    new, n = re.subn(r'(?m)^(\[database\][^\[]*?^url\s*=\s*)"[^"]*"', lambda m: m.group(1) +
                     '"%s"' % u["url"], text)
    if n != 1:
        sys.exit("aster_load: no [database] url in %s" % cfg)
    st = os.stat(cfg)
    with open(cfg + ".new", "w", encoding="utf-8") as f:
        f.write(new)
    os.chmod(cfg + ".new", st.st_mode & 0o7777)
    os.replace(cfg + ".new", cfg)
    os.utime(cfg, ns=(st.st_atime_ns, st.st_mtime_ns))
    if not a.keep_sqlite:
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(src + suffix)
            except FileNotFoundError:
                pass
    if s3_base:
        shutil.rmtree(s3_base)
    print(json.dumps({"url": u["url"], "kind": db.kind, "rows": rows,
                      "seconds": round(time.time() - t0, 2)}, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
