#!/usr/bin/env python3
"""Run a policy's `checks:` without coffer, against a deployment on disk.

  policy_checks.py POLICY ROOT [--database-url URL] [--only NAME,...] [-v]

An independent reading of the check semantics (docs/asterdrive.md), used to
test the SQL of the shipped policies directly against SQLite, PostgreSQL and
MariaDB: `sql` rows are problems; `references` paths (column 1, after
`prefix`, relative to ROOT or absolute under it) must be regular files
inside the component's paths with the size of column 2 and the SHA-256 of
column 3 when not NULL; `orphans` lists regular files under `under` (default
the component's paths) that no row names, minus `exclude` globs. row_counts
and object_store components are skipped (they need a backup set).

The database is --database-url (sqlite://PATH, postgres://..., mysql://...;
password from COFFER_DB_DATABASE_PASSWORD_FILE, PGPASSWORD or MYSQL_PWD),
else the policy's database component (sqlite path under ROOT, or url).
${VAR} and ${VAR:-default} in the policy are expanded from the environment.
Prints `check NAME: PASS|WARN|FAIL (N rows, P problems)` and the first
problems; exit 0 when no check failed, 1 otherwise, 2 on errors.
"""

import argparse
import os
import re
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import asterlib as al  # noqa: E402
import asterdb  # noqa: E402

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("policy_checks: needs python3-yaml")

VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(v):
    if isinstance(v, str):
        return VAR_RE.sub(lambda m: os.environ.get(m.group(1)) or (m.group(2) or ""), v)
    if isinstance(v, list):
        return [expand(x) for x in v]
    if isinstance(v, dict):
        return {k: expand(x) for k, x in v.items()}
    return v


def glob_match(path, pat):
    """fnmatch where ** crosses directories and * does not."""
    rx = ""
    i = 0
    while i < len(pat):
        if pat.startswith("**", i):
            rx += ".*"
            i += 2
        elif pat[i] == "*":
            rx += "[^/]*"
            i += 1
        elif pat[i] == "?":
            rx += "[^/]"
            i += 1
        else:
            rx += re.escape(pat[i])
            i += 1
    return re.fullmatch(rx, path) is not None


class Db:
    def __init__(self, url):
        self.u = asterdb.parse_url(url)
        if self.u["kind"] == "sqlite":
            self.conn, self.close = al.open_ro(self.u["path"])
        else:
            pw = None
            pf = os.environ.get("COFFER_DB_DATABASE_PASSWORD_FILE")
            if pf:
                with open(pf) as f:
                    pw = f.read().rstrip("\r\n")
            else:
                pw = os.environ.get("PGPASSWORD" if self.u["kind"] == "postgres" else "MYSQL_PWD")
            self.server = asterdb.ServerDb(self.u, pw)
            self.close = lambda: None

    def rows(self, q):
        if self.u["kind"] == "sqlite":
            for r in self.conn.execute(q):
                yield tuple(None if v is None else str(v) for v in r)
        else:
            yield from self.server.rows(q)


def rel_path(root, p, prefix):
    p = (prefix or "") + p
    if os.path.isabs(p):
        r = os.path.relpath(p, root)
        return None if r.startswith("..") else r
    return os.path.normpath(p)


def in_paths(rel, paths):
    for q in paths:
        q = q.rstrip("/")
        if q in ("", ".") or rel == q or rel.startswith(q + "/"):
            return True
    return False


def main():
    ap = argparse.ArgumentParser(description="run a policy's checks against a deployment")
    ap.add_argument("policy")
    ap.add_argument("root")
    ap.add_argument("--database-url")
    ap.add_argument("--only")
    ap.add_argument("-v", action="store_true")
    a = ap.parse_args()
    root = os.path.abspath(a.root)
    with open(a.policy) as f:
        pol = expand(yaml.safe_load(f))
    comps = {c["name"]: c for c in pol.get("components", [])}
    only = set(a.only.split(",")) if a.only else None
    dbs = {}

    def db_for(name):
        if name not in dbs:
            c = comps[name]
            url = a.database_url
            if not url:
                url = ("sqlite://" + os.path.join(root, c["path"])) if c.get("driver") == "sqlite" \
                    else c["url"]
            dbs[name] = Db(url)
        return dbs[name]

    failed = 0
    for ch in pol.get("checks", []):
        name, typ = ch["name"], ch["type"]
        if only and name not in only:
            continue
        warn = ch.get("level", "warn" if typ == "orphans" else "fail") == "warn"
        show = int(ch.get("show", 10))
        if typ == "row_counts":
            print("check %s: SKIP (needs a backup set)" % name)
            continue
        comp = comps.get(ch.get("component")) if ch.get("component") else None
        if comp and comp["type"] != "files":
            print("check %s: SKIP (object_store component)" % name)
            continue
        problems, nrows = [], 0
        try:
            rows = db_for(ch["database"]).rows(ch["query"])
            if typ == "sql":
                for r in rows:
                    nrows += 1
                    problems.append(" | ".join("NULL" if v is None else v for v in r))
            elif typ == "references":
                for r in rows:
                    nrows += 1
                    rel = rel_path(root, r[0], ch.get("prefix")) if r[0] is not None else None
                    if rel is None or not in_paths(rel, comp["paths"]):
                        problems.append("%s: outside" % r[0])
                        continue
                    p = os.path.join(root, rel)
                    if os.path.islink(p) or not os.path.isfile(p):
                        problems.append("%s: missing" % rel)
                        continue
                    if len(r) > 1 and r[1] is not None and os.path.getsize(p) != int(r[1]):
                        problems.append("%s: size %d != recorded %s" % (rel, os.path.getsize(p), r[1]))
                        continue
                    if len(r) > 2 and r[2] is not None and al.sha256_file(p) != r[2]:
                        problems.append("%s: sha256 differs" % rel)
            elif typ == "orphans":
                known = set()
                for r in rows:
                    nrows += 1
                    if r[0] is not None:
                        rel = rel_path(root, r[0], ch.get("prefix"))
                        if rel:
                            known.add(rel)
                excl = ch.get("exclude", [])
                for u in ch.get("under", comp["paths"]):
                    base = os.path.join(root, u)
                    for dp, dns, fns in os.walk(base):
                        dns.sort()
                        for n in sorted(fns):
                            full = os.path.join(dp, n)
                            if os.path.islink(full) or not os.path.isfile(full):
                                continue
                            rel = os.path.relpath(full, root)
                            if rel in known or any(glob_match(rel, g) for g in excl):
                                continue
                            problems.append(rel)
        except Exception as e:  # noqa: BLE001
            print("check %s: ERROR: %s" % (name, e))
            failed += 1
            continue
        if not problems:
            st = "PASS"
        elif warn:
            st = "WARN"
        else:
            st = "FAIL"
            failed += 1
        print("check %s: %s (%d rows, %d problems)" % (name, st, nrows, len(problems)))
        for p in problems[:show if not a.v else len(problems)]:
            print("    %s" % p)
    for d in dbs.values():
        d.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
