#!/usr/bin/env python3
"""Compare two snapshots made by snapshot.py; print every difference.

  compare.py A.json B.json [--exclude GLOB]... [--ignore-mtime-dirs]
             [--ignore-mtime] [--ignore-mtime-of GLOB]... [--ignore-owner]
             [--strict-db-files] [--db-only] [--no-db] [--max-rows N]

A is the reference (e.g. the source tree), B the candidate (e.g. a restore).
Lines:
  missing PATH (TYPE)            in A, not in B
  extra PATH (TYPE)              in B, not in A
  type PATH: A != B
  content PATH: size/sha256 A != B
  mode PATH: A != B
  owner PATH: uid:gid A != B
  mtime PATH: A != B (ns)
  link PATH: target A != B
  hardlink PATH: group A != B
  db ...                         database differences (per table: schema,
                                 count, rows missing/extra/different by rowid)
Exit status 1 if there is any difference, else 0.

Database files (every path in the snapshot's "dbs") are compared row for row
through their tables, not byte for byte: for those paths only the existence
and type are compared (use --strict-db-files for everything), and their -wal,
-shm and -journal companions are ignored. --db-only compares only the first
database of each snapshot (e.g. a database restored to another path).
--exclude GLOB (fnmatch on the relative path; a matching directory excludes
its subtree) applies to both sides.
"""

import argparse
import fnmatch
import json
import sys


def excluded(rel, globs):
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        for g in globs:
            if fnmatch.fnmatchcase(prefix, g):
                return True
    return False


class Diff:
    def __init__(self):
        self.n = 0

    def __call__(self, msg):
        self.n += 1
        print(msg)


def compare_db(name, a, b, out, max_rows):
    if a.get("integrity") != b.get("integrity"):
        out("db %s: integrity_check %s != %s" % (name, a.get("integrity"), b.get("integrity")))
    for k in ("user_version", "application_id"):
        if a.get(k) != b.get(k):
            out("db %s: %s %s != %s" % (name, k, a.get(k), b.get(k)))
    if a.get("journal_mode") != b.get("journal_mode"):
        print("note: db %s: journal_mode %s != %s (not counted)" %
              (name, a.get("journal_mode"), b.get("journal_mode")))
    ta, tb = a["tables"], b["tables"]
    for t in sorted(set(ta) | set(tb)):
        if t not in tb:
            out("db %s: table %s missing (%d rows)" % (name, t, ta[t]["count"]))
            continue
        if t not in ta:
            out("db %s: table %s extra (%d rows)" % (name, t, tb[t]["count"]))
            continue
        x, y = ta[t], tb[t]
        if x["sql"] != y["sql"]:
            out("db %s: table %s: schema differs:\n  A: %s\n  B: %s" % (name, t, x["sql"], y["sql"]))
        if x["count"] != y["count"]:
            out("db %s: table %s: %d rows != %d rows" % (name, t, x["count"], y["count"]))
        if x["hash"] == y["hash"]:
            continue
        shown = 0
        ra, rb = x["rows"], y["rows"]
        keys = sorted(set(ra) | set(rb), key=lambda k: (len(k), k))
        for k in keys:
            if ra.get(k) == rb.get(k):
                continue
            if shown >= max_rows:
                out("db %s: table %s: ... more row differences" % (name, t))
                break
            shown += 1
            what = "missing" if k not in rb else "extra" if k not in ra else "differs"
            out("db %s: table %s: row %s %s" % (name, t, k, what))
        if shown == 0:
            out("db %s: table %s: row order/content hash differs" % (name, t))
    sa, sb = a.get("other_schema", {}), b.get("other_schema", {})
    for k in sorted(set(sa) | set(sb)):
        if sa.get(k) != sb.get(k):
            out("db %s: %s: %s" % (name, k, "missing" if k not in sb else
                                    "extra" if k not in sa else "differs"))


def main():
    ap = argparse.ArgumentParser(description="compare two snapshot.py outputs")
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--exclude", action="append", default=[])
    ap.add_argument("--ignore-mtime-dirs", action="store_true")
    ap.add_argument("--ignore-mtime", action="store_true")
    ap.add_argument("--ignore-owner", action="store_true")
    ap.add_argument("--ignore-mtime-of", action="append", default=[], metavar="GLOB",
                    help="ignore the mtime of matching paths only (not their subtree)")
    ap.add_argument("--strict-db-files", action="store_true")
    ap.add_argument("--db-only", action="store_true")
    ap.add_argument("--no-db", action="store_true",
                    help="compare the trees only (database files by existence and type)")
    ap.add_argument("--max-rows", type=int, default=50)
    a = ap.parse_args()
    with open(a.a) as f:
        A = json.load(f)
    with open(a.b) as f:
        B = json.load(f)
    out = Diff()

    if a.db_only:
        if not A["dbs"] or not B["dbs"]:
            out("db: no database in %s" % (a.a if not A["dbs"] else a.b))
        else:
            na, nb = sorted(A["dbs"])[0], sorted(B["dbs"])[0]
            compare_db("%s|%s" % (na, nb) if na != nb else na, A["dbs"][na], B["dbs"][nb],
                       out, a.max_rows)
        return finish(out, 0, len(A["dbs"]))

    dbpaths = set(A["dbs"]) | set(B["dbs"])
    companions = {p + s for p in dbpaths for s in ("-wal", "-shm", "-journal")}
    ea, eb = A["entries"], B["entries"]
    paths = sorted(set(ea) | set(eb))
    compared = 0
    for p in paths:
        if excluded(p, a.exclude):
            continue
        if not a.strict_db_files and p in companions:
            continue
        x, y = ea.get(p), eb.get(p)
        if y is None:
            out("missing %s (%s)" % (p, x["type"]))
            continue
        if x is None:
            out("extra %s (%s)" % (p, y["type"]))
            continue
        compared += 1
        if x["type"] != y["type"]:
            out("type %s: %s != %s" % (p, x["type"], y["type"]))
            continue
        if p in dbpaths and not a.strict_db_files:
            continue
        t = x["type"]
        if t == "file" and (x.get("size") != y.get("size") or x.get("sha256") != y.get("sha256")):
            out("content %s: size %s sha256 %s != size %s sha256 %s" %
                (p, x.get("size"), x.get("sha256", "")[:16], y.get("size"), y.get("sha256", "")[:16]))
        if t != "symlink" and x["mode"] != y["mode"]:
            out("mode %s: %s != %s" % (p, x["mode"], y["mode"]))
        if not a.ignore_owner and (x["uid"], x["gid"]) != (y["uid"], y["gid"]):
            out("owner %s: %d:%d != %d:%d" % (p, x["uid"], x["gid"], y["uid"], y["gid"]))
        if not a.ignore_mtime and not (t == "dir" and a.ignore_mtime_dirs) \
                and not any(fnmatch.fnmatchcase(p, g) for g in a.ignore_mtime_of) \
                and x["mtime_ns"] != y["mtime_ns"]:
            out("mtime %s: %d != %d (%+.9f s)" % (p, x["mtime_ns"], y["mtime_ns"],
                                                 (y["mtime_ns"] - x["mtime_ns"]) / 1e9))
        if t == "symlink" and x.get("target") != y.get("target"):
            out("link %s: target %r != %r" % (p, x.get("target"), y.get("target")))
        if t in ("chardev", "blockdev") and x.get("rdev") != y.get("rdev"):
            out("rdev %s: %s != %s" % (p, x.get("rdev"), y.get("rdev")))
        ga, gb = x.get("link_group"), y.get("link_group")
        if ga or gb:
            ma = sorted(q for q, e in ea.items() if ga and e.get("link_group") == ga
                        and not excluded(q, a.exclude))
            mb = sorted(q for q, e in eb.items() if gb and e.get("link_group") == gb
                        and not excluded(q, a.exclude))
            if ma != mb:
                out("hardlink %s: group %s != %s" % (p, ma or "(none)", mb or "(none)"))

    for d in sorted(dbpaths) if not a.no_db else []:
        if d in A["dbs"] and d not in B["dbs"]:
            out("db %s: missing" % d)
        elif d in B["dbs"] and d not in A["dbs"]:
            out("db %s: extra" % d)
        else:
            compare_db(d, A["dbs"][d], B["dbs"][d], out, a.max_rows)
    return finish(out, compared, len(dbpaths))


def finish(out, npaths, ndbs):
    if out.n:
        print("compare: %d difference(s)" % out.n)
        return 1
    print("compare: identical (%d paths, %d databases)" % (npaths, ndbs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
