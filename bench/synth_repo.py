#!/usr/bin/env python3
"""Grow an unencrypted local coffer repository by N synthetic chunks, all
referenced by one new set, written straight in the repository format
(docs/repository-format.md): packs of CHUNKS_PER_PACK raw 16-byte blobs,
index objects of at most INDEX_ENTRIES entries, and a set manifest copied
from an existing set with one file entry per CHUNKS_PER_FILE chunks added.

  synth_repo.py REPO FROM_SET N [--seed S]

Prints the new set's id. The repository must have been created with
`coffer init --encryption none` and hold FROM_SET (any small backup).
Used by bench/index_bench.sh to build repositories of millions of chunks
without backing up terabytes.
"""
import hashlib
import json
import os
import struct
import subprocess
import sys
import time

MAGIC = b"COFR"
T_PACK, T_INDEX, T_MANIFEST = 2, 3, 4
CHUNKS_PER_PACK = 4096
CHUNKS_PER_FILE = 1024
INDEX_ENTRIES = 1 << 20


def envelope(obj_type, body, compressed):
    head = MAGIC + bytes([1, obj_type, 1 if compressed else 0, 0])
    data = head + body
    return data + hashlib.sha256(data).digest()


def zstd(data):
    return subprocess.run(["zstd", "-q", "-c", "-1", "-T0"], input=data, check=True,
                          stdout=subprocess.PIPE).stdout


def unzstd(data):
    return subprocess.run(["zstd", "-q", "-d", "-c"], input=data, check=True,
                          stdout=subprocess.PIPE).stdout


def put(repo, key, data):
    path = os.path.join(repo, key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".synth"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    repo, from_set, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seed = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "--seed" else 1
    raw = open(os.path.join(repo, "sets", from_set), "rb").read()
    if raw[:4] != MAGIC or raw[5] != T_MANIFEST or raw[7] != 0:
        sys.exit("synth_repo: %s is not an unencrypted set manifest" % from_set)
    lines = (unzstd(raw[8:-32]) if raw[6] & 1 else raw[8:-32]).decode().splitlines()
    header, body = lines[0], [l for l in lines[1:] if not l.startswith('{"type":"end"')]

    set_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(4).hex()
    header = json.loads(header)
    header["id"] = set_id
    ids_hex = []
    index = bytearray()
    n_index = 0
    done = 0
    t0 = time.time()
    man = [None] + body
    while done < n:
        k = min(CHUNKS_PER_PACK, n - done)
        pack_id = os.urandom(32)
        blobs = bytearray(MAGIC + bytes([1, T_PACK, 0, 0]))
        table = bytearray()
        for i in range(k):
            data = struct.pack("<QQ", seed, done + i)
            cid = hashlib.sha256(data).digest()
            table += cid + bytes(4) + struct.pack("<QII", len(blobs), 16, 16)
            blobs += data
            ids_hex.append(cid.hex())
        blobs += table + struct.pack("<II", len(table), k)
        blobs += hashlib.sha256(blobs).digest()
        key = "data/%s/%s" % (pack_id.hex()[:2], pack_id.hex())
        put(repo, key, bytes(blobs))
        index += pack_id + struct.pack("<QII", len(blobs), k, 0) + table
        done += k
        if done % INDEX_ENTRIES == 0 or done == n:
            put(repo, "index/" + os.urandom(32).hex(), envelope(T_INDEX, zstd(bytes(index)), True))
            index = bytearray()
            n_index += 1
        while len(ids_hex) >= CHUNKS_PER_FILE or (done == n and ids_hex):
            part, ids_hex = ids_hex[:CHUNKS_PER_FILE], ids_hex[CHUNKS_PER_FILE:]
            f = len(man)
            man.append('{"type":"file","component":"data","path":"data/synthetic/%03d/f%07d",'
                       '"mode":384,"uid":0,"gid":0,"mtime":1700000000,"size":%d,"chunks":["%s"]}'
                       % (f % 1000, f, 16 * len(part), '","'.join(part)))
    header["entries"] = len(man) - 1
    man[0] = json.dumps(header, separators=(",", ":"))
    man.append('{"type":"end","entries":%d}' % (len(man) - 1))
    content = ("\n".join(man) + "\n").encode()
    put(repo, "sets/" + set_id, envelope(T_MANIFEST, zstd(content), True))
    sys.stderr.write("synth_repo: %d chunks in %d packs, %d index objects, %d entries in set %s "
                     "(%.1f s)\n" % (n, (n + CHUNKS_PER_PACK - 1) // CHUNKS_PER_PACK, n_index,
                                     len(man) - 2, set_id, time.time() - t0))
    print(set_id)


if __name__ == "__main__":
    main()
