#!/usr/bin/env bash
# restore --salvage: with one pack deleted or one blob corrupted, a plain
# restore fails and writes nothing; --salvage exits 3, restores every other
# file byte-identical, lists each damaged file with the byte ranges it
# could not read (zeros there, the right bytes elsewhere) on stdout, in
# --json and in DIR/COFFER-SALVAGE-REPORT.txt.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env

# check_salvage SRC DST REPORT.json: every regular file of SRC under the
# restored components is in DST; listed ones hold zeros in their missing
# ranges and SRC's bytes elsewhere, the others equal SRC. Prints
# "OK <files> <damaged>" or the first difference.
check_salvage() {
    "$PY" - "$1" "$2" "$3" <<'PYEOF'
import json, os, sys
src, dst, rep = sys.argv[1:4]
j = json.load(open(rep))
damaged = {u["path"]: u["missing"] for u in j["unrestored"] if u.get("path")}
# a hard link shares its first path's content, and so its holes
byino = {os.lstat(os.path.join(src, p)).st_ino: r for p, r in damaged.items()}
n = 0
for top in ("data/uploads", "data/avatar", "data/config.toml"):
    base = os.path.join(src, top)
    walk = [(os.path.dirname(base), [], [os.path.basename(base)])] if os.path.isfile(base) else os.walk(base)
    for d, _, files in walk:
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), src)
            p = os.path.join(src, rel)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            q = os.path.join(dst, rel)
            if not os.path.isfile(q):
                sys.exit(f"{rel}: not restored")
            a, b = open(p, "rb").read(), open(q, "rb").read()
            if len(a) != len(b):
                sys.exit(f"{rel}: size {len(b)} != {len(a)}")
            holes = byino.get(os.lstat(p).st_ino)
            if holes is not None:
                exp = bytearray(a)
                for lo, hi in holes:
                    if not (0 <= lo < hi <= len(a)):
                        sys.exit(f"{rel}: bad range {lo}-{hi}")
                    exp[lo:hi] = bytes(hi - lo)
                if bytes(exp) != b:
                    sys.exit(f"{rel}: not zeros in the listed ranges and the source elsewhere")
                if a == b and rel in damaged:
                    sys.exit(f"{rel}: listed as damaged but intact")
            elif a != b:
                sys.exit(f"{rel}: bytes differ and it is not listed")
            n += 1
print("OK", n, len(damaged))
PYEOF
}

section "generate, back up"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 40 --seed 31
expect_ok "init (encrypted: a corrupt blob fails to decrypt)" cf init -p "$POLICY" || die "init failed"
expect_ok "backup" cf backup -p "$POLICY" --json || die "backup failed"
SET=$(json_get "$OUT" 'j["set"]')
cp -a "$ASTERDRIVE_ROOT" "$T/src"
mapfile -t PACKS < <(find "$COFFER_REPO/data" -type f -printf '%s %p\n' | sort -n | awk '{print $2}')
note "${#PACKS[@]} packs"
[ "${#PACKS[@]}" -ge 2 ] || die "need at least 2 packs"

section "a plain restore of an intact set"
expect_ok "restore (intact repository)" cf restore -p "$POLICY" --to "$T/intact" --salvage --json
assert_eq 0 "$(json_get "$OUT" 'len(j["unrestored"])')" "--salvage on an intact set lists nothing"
assert_absent "$T/intact/COFFER-SALVAGE-REPORT.txt" "no report file when nothing is missing"

section "one blob corrupted"
# a byte in the middle of the largest pack: one blob fails its check
P=${PACKS[-1]}
SZ=$(stat -c %s "$P")
cp "$P" "$T/pack.orig"
printf '\xff' | dd of="$P" bs=1 seek=$((SZ / 2)) conv=notrunc status=none
cmp -s "$P" "$T/pack.orig" && printf '\x00' | dd of="$P" bs=1 seek=$((SZ / 2)) conv=notrunc status=none
expect_rc 1 "a plain restore fails" cf restore -p "$POLICY" --to "$T/plain1"
[ -z "$(ls -A "$T/plain1" 2>/dev/null)" ] && pass "the plain restore wrote nothing" || fail "plain restore left files in $T/plain1"
expect_rc 3 "restore --salvage exits 3" cf restore -p "$POLICY" --to "$T/s1" --salvage --json
printf '%s\n' "$OUT" >"$T/s1.json"
# One chunk is lost. The deployment holds a few files with identical
# content (stored once), so the files listed are the damaged one and its
# copies: every entry names the same chunk, and there are as many entries
# as files (hard links counted once) with the first one's content.
R=$("$PY" - "$T/src" "$T/s1.json" <<'PYEOF'
import hashlib, json, os, re, sys
src, rep = sys.argv[1:3]
un = json.load(open(rep))["unrestored"]
if not un:
    sys.exit("nothing listed")
chunks = {m.group(1) for u in un for m in [re.search(r"chunk ([0-9a-f]{64})", u.get("error", ""))] if m}
if len(chunks) != 1 or any("chunk " not in u.get("error", "") for u in un):
    sys.exit("entries name %d chunks: %s" % (len(chunks), [u.get("error") for u in un]))
def digest(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()
want = digest(os.path.join(src, un[0]["path"]))
inodes = set()
for d, _, files in os.walk(os.path.join(src, "data")):
    for f in files:
        p = os.path.join(d, f)
        if not os.path.islink(p) and os.path.isfile(p) and digest(p) == want:
            inodes.add(os.lstat(p).st_ino)
print("OK" if len(un) == len(inodes) else "MISMATCH", len(un), len(inodes))
PYEOF
)
assert_match "$R" "^OK " "one chunk lost: its file and the files with the same content are listed ($R)"
assert_eq False "$(json_get "$OUT" 'j["ok"]')" "--json says ok: false"
R=$(check_salvage "$T/src" "$T/s1" "$T/s1.json")
assert_match "$R" '^OK ' "salvaged tree: damaged file zeros in its ranges, all else byte-identical ($R)"
assert_exists "$T/s1/COFFER-SALVAGE-REPORT.txt" "the report file is written at the root"
DP=$(json_get "$OUT" 'j["unrestored"][0]["component"] + "/" + (j["unrestored"][0]["path"] or "")')
assert_contains "$(cat "$T/s1/COFFER-SALVAGE-REPORT.txt")" "$DP" "the report file names $DP"
assert_eq 600 "$(stat -c %a "$T/s1/COFFER-SALVAGE-REPORT.txt")" "the report file is 0600"
run cf restore -p "$POLICY" --to "$T/s1t" --salvage
assert_eq 3 "$RC" "text output: exit 3"
assert_contains "$OUT" "could not be restored:" "stdout lists what could not be restored"
assert_contains "$OUT" "$DP" "stdout names $DP"
assert_contains "$ERR" "INCOMPLETE" "stderr says the restore is incomplete"
cp "$T/pack.orig" "$P"

section "one pack deleted"
P=${PACKS[0]}
mv "$P" "$T/pack0"
expect_rc 1 "a plain restore fails" cf restore -p "$POLICY" --to "$T/plain2"
[ -z "$(ls -A "$T/plain2" 2>/dev/null)" ] && pass "the plain restore wrote nothing" || fail "plain restore left files in $T/plain2"
expect_rc 3 "restore --salvage exits 3" cf restore -p "$POLICY" --to "$T/s2" --salvage --json
printf '%s\n' "$OUT" >"$T/s2.json"
N=$(json_get "$OUT" 'len(j["unrestored"])')
assert_gt "$N" 0 "the pack's files are listed ($N)"
R=$(check_salvage "$T/src" "$T/s2" "$T/s2.json")
assert_match "$R" '^OK ' "salvaged tree: damaged files zeros in their ranges, all else byte-identical ($R)"
DB=$(json_get "$OUT" '[u["component"] for u in j["unrestored"] if u["path"] is None]')
if [ "$DB" = '["database"]' ]; then
    assert_absent "$T/s2/data/asterdrive.db" "the unreadable database was not restored"
else
    assert_eq "$(sql "$T/src/data/asterdrive.db" 'select count(*) from files')" \
        "$(sql "$T/s2/data/asterdrive.db" 'select count(*) from files')" "the readable database was restored"
fi
expect_rc 2 "--salvage --in-place refused" cf restore -p "$POLICY" --in-place --salvage
mv "$T/pack0" "$P"

finish
