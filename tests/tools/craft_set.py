#!/usr/bin/env python3
"""Read and write objects of an unencrypted coffer repository on a local
directory, as someone with write access to the storage could: the tests
use it to hand-craft hostile sets (docs/repository-format.md).

  craft_set.py read REPO SETID            manifest lines to stdout
  craft_set.py write REPO SETID           manifest lines from stdin -> sets/SETID
  craft_set.py index-past-end REPO        every index entry's offset moved past
                                          the end of its pack (objects rewritten)

Objects are written with a valid envelope (zstd body, SHA-256 trailer), so
only coffer's own checks of the content stand between them and a restore.
"""
import glob
import hashlib
import os
import struct
import subprocess
import sys

MAGIC = b"COFR"
T_INDEX, T_MANIFEST = 3, 4


def unwrap(path, want_type):
    data = open(path, "rb").read()
    if data[:4] != MAGIC or data[5] != want_type:
        sys.exit("craft_set: %s is not an object of type %d" % (path, want_type))
    if data[7] != 0:
        sys.exit("craft_set: %s is encrypted; use --encryption none" % path)
    body = data[8:-32]
    if data[6] & 1:
        body = subprocess.run(["zstd", "-q", "-d", "-c"], input=body, check=True,
                              stdout=subprocess.PIPE).stdout
    return body


def wrap(path, obj_type, content):
    body = subprocess.run(["zstd", "-q", "-c", "-3"], input=content, check=True,
                          stdout=subprocess.PIPE).stdout
    head = MAGIC + bytes([1, obj_type, 1, 0])
    data = head + body
    data += hashlib.sha256(data).digest()
    tmp = path + ".craft"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def index_past_end(repo):
    n = 0
    for path in sorted(glob.glob(os.path.join(repo, "index", "*"))):
        c = bytearray(unwrap(path, T_INDEX))
        pos = 0
        while pos + 48 <= len(c):
            size, count = struct.unpack_from("<QI", c, pos + 32)
            pos += 48
            for _ in range(count):
                # offset (u64 at +36) just past the pack's end
                struct.pack_into("<Q", c, pos + 36, size + 4096)
                pos += 52
                n += 1
        wrap(path, T_INDEX, bytes(c))
    print("craft_set: %d index entries moved past the end of their packs" % n)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    cmd, repo = sys.argv[1], sys.argv[2]
    if cmd == "read":
        sys.stdout.buffer.write(unwrap(os.path.join(repo, "sets", sys.argv[3]), T_MANIFEST))
    elif cmd == "write":
        wrap(os.path.join(repo, "sets", sys.argv[3]), T_MANIFEST, sys.stdin.buffer.read())
    elif cmd == "index-past-end":
        index_past_end(repo)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
