#!/usr/bin/env python3
"""Generate a tree of many small files, and touch a fraction of them.

  gen_smallfiles.py ROOT --files N --dirs D [--seed S]     create
  gen_smallfiles.py ROOT --touch PERCENT [--seed S]        change PERCENT % of the files

Files are spread over D directories two levels deep (ROOT/ab/cdef/),
sizes drawn from 200 B to 16 KiB (mean about 4 KiB), contents random
except for one file in eight that repeats another's bytes (duplicates, as
a file share has). --touch rewrites the chosen files' contents (same size,
new bytes) and prints how many it changed.
"""
import argparse, os, random, sys


def dirname(i, ndirs):
    # two levels: at most 256 top directories
    top = i % 256
    return "d%02x/%06d" % (top, i // 256) if ndirs > 256 else "d%02x" % top


def files_of(root):
    out = []
    for dp, dns, fns in os.walk(root):
        dns.sort()
        for f in sorted(fns):
            out.append(os.path.join(dp, f))
    return out


def create(a):
    rnd = random.Random(a.seed)
    os.makedirs(a.root, exist_ok=True)
    dirs = [os.path.join(a.root, dirname(i, a.dirs)) for i in range(a.dirs)]
    for d in dirs:
        os.makedirs(d, exist_ok=True)
    pool = []
    total = 0
    for i in range(a.files):
        size = min(16384, max(200, int(rnd.expovariate(1 / 4096))))
        if pool and i % 8 == 7:
            data = rnd.choice(pool)
        else:
            data = rnd.randbytes(size)
            if len(pool) < 64:
                pool.append(data)
        with open(os.path.join(dirs[i % a.dirs], "f%07d.bin" % i), "wb") as f:
            f.write(data)
        total += len(data)
    print("%d files in %d directories, %d MiB" % (a.files, a.dirs, total >> 20))


def touch(a):
    rnd = random.Random(a.seed)
    names = files_of(a.root)
    n = max(1, int(len(names) * a.touch / 100))
    for p in rnd.sample(names, n):
        size = os.path.getsize(p)
        with open(p, "wb") as f:
            f.write(rnd.randbytes(size))
    print("%d of %d files changed" % (n, len(names)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--files", type=int, default=300000)
    ap.add_argument("--dirs", type=int, default=4096)
    ap.add_argument("--touch", type=float)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.dirs < 1 or a.files < 1:
        sys.exit("gen_smallfiles.py: --files and --dirs must be positive")
    touch(a) if a.touch is not None else create(a)


if __name__ == "__main__":
    main()
