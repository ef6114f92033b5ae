#!/usr/bin/env python3
"""Write hand-crafted hostile sets into an unencrypted local repository,
each derived from a real set, and list them for the test that restores
them (tests/e2e/hostile_repo.sh).

  hostile_sets.py REPO BASE_SETID OUTSIDE_DIR

OUTSIDE_DIR is a directory beside the restore targets that no restore may
touch. Prints one line per case: NAME SETID EXPECT VERIFY PATTERN
  EXPECT  refuse: restore must fail with PATTERN in its error
          ok:     restore must succeed
  VERIFY  damage: verify must report the set; clean: verify may pass
"""
import copy
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def read_set(repo, set_id):
    raw = subprocess.run([sys.executable, os.path.join(HERE, "craft_set.py"), "read", repo, set_id],
                         check=True, stdout=subprocess.PIPE).stdout
    lines = raw.split(b"\n")
    assert lines[-1] == b""
    return [json.loads(x) for x in lines[:-1]]


def write_raw(repo, set_id, lines_bytes):
    subprocess.run([sys.executable, os.path.join(HERE, "craft_set.py"), "write", repo, set_id],
                   input=b"".join(x + b"\n" for x in lines_bytes), check=True)


def dump(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def main():
    repo, base, outside = sys.argv[1], sys.argv[2], sys.argv[3]
    lines = read_set(repo, base)
    header, entries, end = lines[0], lines[1:-1], lines[-1]
    files = [e for e in entries if e.get("type") == "file" and e.get("component") == "data"
             and e.get("chunks")]
    sample = files[0]
    comps = {c["name"]: c for c in header["components"]}
    assert "data" in comps and "database" in comps
    counter = [0]

    def new_id():
        counter[0] += 1
        return "20300101T%06dZ-%08x" % (counter[0], 0xbad00000 + counter[0])

    def f(path, **kw):
        e = copy.deepcopy(sample)
        e["path"] = path
        e.update(kw)
        return e

    def d(path):
        return {"type": "dir", "component": "data", "path": path, "mode": 0o755, "uid": 0,
                "gid": 0, "mtime": 1700000000, "mtime_ns": 0}

    def s(path, target):
        e = d(path)
        e["type"] = "symlink"
        e["target"] = target
        return e

    def h(path, target):
        e = d(path)
        e["type"] = "hardlink"
        e["target"] = target
        return e

    cases = []

    def case(name, expect, verify, pattern, extra=(), hdr=None, drop=None, raw=None):
        set_id = new_id()
        hd = copy.deepcopy(header)
        hd["id"] = set_id
        if hdr:
            hdr(hd)
        ents = [e for e in entries if not (drop and drop(e))] + list(extra)
        hd["entries"] = len(ents)
        out = [dump(hd)] + [dump(e) for e in ents] + [dump({"type": "end", "entries": len(ents)})]
        if raw:
            out = raw(out)
        write_raw(repo, set_id, out)
        cases.append((name, set_id, expect, verify, pattern))

    secret = os.path.join(outside, "secret")
    case("control", "ok", "clean", "-")

    def hdr_dotdot(hd):
        for c in hd["components"]:
            if c["name"] == "data":
                c["paths"] = ["data", "x", "../x", "../../x/cron.d/evil"]
    # Staged "x" moves to the target, then "../x" moves it up a level, and so on.
    payload = [d("x"), d("x/cron.d"), f("x/cron.d/evil")]
    case("header-paths-dotdot", "refuse", "damage", "not a plain relative path", payload,
         hdr=hdr_dotdot)

    def hdr_abs(hd):
        for c in hd["components"]:
            if c["name"] == "config":
                c["paths"] = [outside + "/evil"]
    case("header-path-absolute", "refuse", "damage", "not a plain relative path", hdr=hdr_abs)

    def hdr_name(hd):
        hd["components"].append({"name": "../c", "type": "files", "paths": ["c"]})
    case("header-component-name", "refuse", "damage", "invalid name", hdr=hdr_name)

    def hdr_dup(hd):
        hd["components"].append(copy.deepcopy(comps["data"]))
    case("header-component-twice", "refuse", "damage", "appears twice", hdr=hdr_dup)

    def hdr_id(hd):
        hd["id"] = "20300101T999999Z-00000000"
    case("header-other-id", "refuse", "damage", "names set", hdr=hdr_id)

    case("entry-dotdot", "refuse", "damage", "not a plain relative path", [f("../evil")])
    case("entry-dotdot-deep", "refuse", "damage", "not a plain relative path",
         [f("data/../../evil")])
    case("entry-absolute", "refuse", "damage", "not a plain relative path",
         [f(outside + "/evil-abs")])
    case("entry-dot-segment", "refuse", "damage", "not a plain relative path", [f("data/./x")])
    case("entry-path-hex-dotdot", "refuse", "damage", "relative path",
         [{k: v for k, v in f("x").items() if k != "path"} | {"path_hex": b"../evilhex".hex()}])
    case("entry-path-hex-nul", "refuse", "damage", "-",
         [{k: v for k, v in f("x").items() if k != "path"} | {"path_hex": "610062"}])
    case("dir-twice-then-symlink", "refuse", "clean", "twice",
         [d("data/dd"), d("data/dd"), s("data/dd", secret)])
    case("symlink-then-child", "refuse", "clean", "symbolic link|twice",
         [s("data/sl", outside), f("data/sl/f")])
    case("symlink-then-dir", "refuse", "clean", "symbolic link|twice",
         [s("data/sd", outside), d("data/sd/sub")])
    case("dir-symlink-child", "refuse", "clean", "symbolic link|twice",
         [d("data/q"), s("data/q", outside), f("data/q/f")])
    race = []
    for i in range(300):
        race += [f("data/r%d/f" % i), s("data/r%d" % i, outside)]
    case("child-then-symlink-x300", "refuse", "clean", "twice", race)
    case("hardlink-out", "refuse", "damage", "not a plain relative path",
         [h("data/h", "../outside/secret")])
    case("hardlink-absolute", "refuse", "damage", "not a plain relative path",
         [h("data/h", secret)])
    case("hardlink-through-symlink", "refuse", "clean", "hard link",
         [s("data/L", outside), h("data/h2", "data/L/secret")])
    case("hardlink-to-symlink", "refuse", "clean", "hard link",
         [s("data/ls", secret), h("data/h3", "data/ls")])
    case("file-twice", "refuse", "clean", "twice", [sample])
    case("symlink-over-file", "refuse", "clean", "twice", [s(sample["path"], secret)])
    case("huge-size", "refuse", "damage", "recorded", [f("data/huge", size=1 << 62)])
    case("many-chunks", "refuse", "damage", "more than",
         [f("data/many", chunks=sample["chunks"] * 5000)])
    case("negative-nanoseconds", "refuse", "damage", "mtime_ns",
         [f("data/ns", mtime_ns=-5)])

    def entries_huge(out):
        hd = json.loads(out[0])
        hd["entries"] = 10 ** 15
        return [dump(hd)] + out[1:]
    case("header-entries-huge", "refuse", "damage", "entries", raw=entries_huge)

    def bad_utf8(out):
        line = dump(f("data/x-PLACE"))
        return out[:1] + [line.replace(b"PLACE", b"\xff\xfe")] + out[1:-1] + [
            dump({"type": "end", "entries": len(out) - 1})]
    case("invalid-utf8", "refuse", "damage", "-", raw=lambda out: fix_count(bad_utf8(out)))

    def stream_slash(hd):
        pass
    streams = [e for e in entries if e.get("type") == "stream"]
    if streams:
        def drop_stream(e):
            return e.get("type") == "stream"
        evil = [copy.deepcopy(x) for x in streams]
        for x in evil:
            x["name"] = "../../evil-" + x["name"]
        case("stream-name-slash", "refuse", "damage", "stream", evil, drop=drop_stream)
        sub = [copy.deepcopy(x) for x in streams]
        for x in sub:
            x["name"] = "x/" + x["name"]
        # a well-formed name with "/": the sqlite driver takes its only stream
        # and writes it to the policy's path, never to a path from the set
        case("stream-name-subdir", "ok", "clean", "-", sub, drop=drop_stream)

    def extra_comp(hd):
        hd["components"].append({"name": "extra", "type": "files", "paths": ["extra"],
                                 "files": 1, "bytes": sample["size"]})
    ex = f("extra/f")
    ex["component"] = "extra"
    case("component-not-in-policy", "refuse", "clean", "does not declare", [ex], hdr=extra_comp)
    nonutf8 = {k: v for k, v in f("x").items() if k != "path"}
    nonutf8["path_hex"] = (b"data/name-\xff\xfe").hex()
    case("non-utf8-name", "ok", "clean", "-", [nonutf8])

    for c in cases:
        print(" ".join(c))


def fix_count(out):
    hd = json.loads(out[0])
    hd["entries"] = len(out) - 2
    return [dump(hd)] + out[1:-1] + [dump({"type": "end", "entries": len(out) - 2})]


if __name__ == "__main__":
    main()
