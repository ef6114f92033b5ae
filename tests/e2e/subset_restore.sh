#!/usr/bin/env bash
# Subset restore (--include/--exclude/--include-from) and `coffer dump`:
# exactly the chosen files come back, byte for byte with their metadata
# and their parent directories' metadata; nothing else is written; only
# the chosen files' chunks are read; in place, other files stay untouched;
# patterns matching nothing and paths leaving the set are refused.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env

# same_tree SRC DST: every entry under DST exists in SRC with the same
# type, bytes, mode, owner, mtime (ns) and xattrs; prints the entry count
# or the first difference (exit 1).
same_tree() {
    "$PY" - "$1" "$2" <<'PYEOF'
import os, sys
src, dst = sys.argv[1], sys.argv[2]
n = 0
for d, dirs, files in os.walk(dst):
    for name in dirs + files:
        p = os.path.join(d, name)
        rel = os.path.relpath(p, dst)
        q = os.path.join(src, rel)
        a, b = os.lstat(q), os.lstat(p)
        for k in ("st_mode", "st_uid", "st_gid"):
            if getattr(a, k) != getattr(b, k):
                sys.exit(f"{rel}: {k} {getattr(a, k)} != {getattr(b, k)}")
        if a.st_mtime_ns != b.st_mtime_ns and not os.path.isdir(q):
            sys.exit(f"{rel}: mtime differs")
        if os.path.isdir(q) and a.st_mtime_ns != b.st_mtime_ns:
            sys.exit(f"{rel}: directory mtime differs")
        if os.path.isfile(q) and not os.path.islink(q):
            if open(q, "rb").read() != open(p, "rb").read():
                sys.exit(f"{rel}: bytes differ")
            xa = {x: os.getxattr(q, x) for x in os.listxattr(q)}
            xb = {x: os.getxattr(p, x) for x in os.listxattr(p)}
            if xa != xb:
                sys.exit(f"{rel}: xattrs differ")
            n += 1
print(n)
PYEOF
}
# files_under DIR: regular files beneath DIR, relative, sorted
files_under() { (cd "$1" && find . -type f -printf '%P\n' | sort); }

section "generate, back up"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 40 --seed 21
# a file with a known xattr and a 1 MiB file of known content
BIG=data/uploads/zz/big.bin
mkdir -p "$ASTERDRIVE_ROOT/data/uploads/zz"
head -c 1048576 /dev/urandom >"$ASTERDRIVE_ROOT/$BIG"
setfattr -n user.coffer.test -v hello "$ASTERDRIVE_ROOT/$BIG" 2>/dev/null || note "no user xattrs here"
touch -d '2020-01-02 03:04:05.123456789' "$ASTERDRIVE_ROOT/$BIG"
chmod 0640 "$ASTERDRIVE_ROOT/$BIG"
ln -s big.bin "$ASTERDRIVE_ROOT/data/uploads/zz/link"
expect_ok "init" cf init -p "$POLICY" || die "init failed"
expect_ok "backup" cf backup -p "$POLICY" --json || die "backup failed"
SET=$(json_get "$OUT" 'j["set"]')
PACKS=$(find "$COFFER_REPO/data" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
note "pack bytes in the repository: $PACKS"
cp -a "$ASTERDRIVE_ROOT" "$T/src"   # the tree as backed up
DIR1=$(cd "$T/src" && find data/uploads -mindepth 1 -maxdepth 1 -type d -name '[0-9a-f][0-9a-f]' | sort | head -1)

section "one file"
expect_ok "restore --include one file" \
    cf restore -p "$POLICY" --to "$T/one" --include "data/$BIG" --json
READ=$(json_get "$OUT" 'j["bytes_read"]')
assert_eq 1 "$(json_get "$OUT" 'j["files"]')" "--json reports 1 file restored"
assert_eq "$BIG" "$(files_under "$T/one")" "only $BIG was written"
assert_eq 1 "$(same_tree "$T/src" "$T/one")" "bytes, mode, owner, mtime, xattrs and parent directories equal the source"
assert_lt "$READ" "$((PACKS / 20))" "bytes read ($READ) are far below the pack total ($PACKS)"
assert_gt "$READ" 1048575 "the file's own chunks were read ($READ bytes)"
assert_lt "$READ" 1100000 "and nothing more than them: 1 MiB of random bytes plus blob overhead ($READ bytes)"
assert_eq "0" "$(json_get "$OUT" 'len(j["validate"]) + len(j["policy_checks"])')" "checks and validate skipped"
assert_absent "$T/one/data/asterdrive.db" "the database is not restored by a subset restore"

section "a glob, a directory, --exclude, --include-from"
expect_ok "restore --include a glob" \
    cf restore -p "$POLICY" --to "$T/glob" --include "data/$DIR1/*/*"
assert_eq "$(cd "$T/src" && find "$DIR1" -type f | sort)" "$(files_under "$T/glob")" "the glob brought exactly the files beneath $DIR1"
assert_gt "$(same_tree "$T/src" "$T/glob")" 0 "glob restore equals the source"
expect_ok "restore --include a directory" \
    cf restore -p "$POLICY" --to "$T/dir" --include "data/$DIR1"
assert_eq "$(cd "$T/src" && find "$DIR1" -type f | sort)" "$(files_under "$T/dir")" "the directory brought its whole subtree"
EXCL=$(cd "$T/src" && find "$DIR1" -type f | sort | head -1)
expect_ok "restore --include DIR --exclude FILE" \
    cf restore -p "$POLICY" --to "$T/excl" --include "data/$DIR1" --exclude "data/$EXCL"
assert_eq "$(cd "$T/src" && find "$DIR1" -type f | sort | grep -vxF "$EXCL")" "$(files_under "$T/excl")" "--exclude left $EXCL out"
LIST=$(cd "$T/src" && find data/uploads -type f | sort | sed -n '3p;7p')
{ echo "# two files"; echo; printf 'data/%s\n' $LIST; } >"$T/list.txt"
expect_ok "restore --include-from" cf restore -p "$POLICY" --to "$T/from" --include-from "$T/list.txt"
assert_eq "$(printf '%s\n' $LIST | sort)" "$(files_under "$T/from")" "--include-from brought the two listed files"
assert_eq 2 "$(same_tree "$T/src" "$T/from")" "--include-from files equal the source"
expect_ok "one files component: COMPONENT/ may be left out when unambiguous? (config)" \
    cf restore -p "$POLICY" --to "$T/cfg" --include "config/data/config.toml"
cmp -s "$T/src/data/config.toml" "$T/cfg/data/config.toml" && pass "config/data/config.toml restored" || fail "config.toml differs"

section "refusals"
expect_rc 1 "a pattern matching nothing: exit 1" \
    cf restore -p "$POLICY" --to "$T/none" --include "data/data/uploads/nosuch*"
assert_contains "$ERR" "data/data/uploads/nosuch*" "the error names the pattern"
assert_absent "$T/none" "nothing was written"
expect_rc 2 "'..' refused" cf restore -p "$POLICY" --to "$T/dd" --include "data/../etc/passwd"
assert_contains "$ERR" ".." "the error names the '..'"
expect_rc 2 "an absolute path refused" cf restore -p "$POLICY" --to "$T/abs" --include "/etc/passwd"
expect_rc 2 "without a component name (two files components) refused" \
    cf restore -p "$POLICY" --to "$T/amb" --include "uploads/x"
assert_contains "$ERR" "COMPONENT/path" "the error says to name the component"
assert_absent "$T/dd" "nothing written for '..'"
expect_rc 2 "--exclude alone refused" cf restore -p "$POLICY" --to "$T/ex" --exclude "data/x"

section "in place"
OTHER=$(cd "$T/src" && find data/uploads -type f | sort | sed -n '2p')
echo changed >"$ASTERDRIVE_ROOT/$BIG"
echo changed-too >"$ASTERDRIVE_ROOT/$OTHER"
echo new >"$ASTERDRIVE_ROOT/data/uploads/zz/new.txt"
ASTERDRIVE_STOP="touch $T/stopped" ASTERDRIVE_START="touch $T/started" \
    expect_ok "restore --in-place --include one file" \
    cf restore -p "$POLICY" --in-place --include "data/$BIG"
if grep -q 'mode: *maintenance' "$POLICY"; then
    assert_exists "$T/stopped" "the stop command ran around the in-place subset restore"
    assert_exists "$T/started" "the start command ran after it"
fi
cmp -s "$T/src/$BIG" "$ASTERDRIVE_ROOT/$BIG" && pass "the chosen file is back" || fail "$BIG not restored"
assert_eq "changed-too" "$(cat "$ASTERDRIVE_ROOT/$OTHER")" "another changed file was left as it was"
assert_eq "new" "$(cat "$ASTERDRIVE_ROOT/data/uploads/zz/new.txt")" "a new file beside it was left as it was"
assert_eq "changed" "$(cat "$ASTERDRIVE_ROOT/.coffer-previous-$SET/$BIG")" "the replaced file is kept in .coffer-previous-$SET"
assert_eq 1 "$(find "$ASTERDRIVE_ROOT/.coffer-previous-$SET" -type f | wc -l)" "only the replaced file was moved aside"

section "--force into a non-empty directory"
cp -a "$T/from" "$T/forced"
echo keep >"$T/forced/data/uploads/keep.txt"
expect_ok "restore --include --force into a non-empty directory" \
    cf restore -p "$POLICY" --to "$T/forced" --force --include "data/$BIG"
cmp -s "$T/src/$BIG" "$T/forced/$BIG" && pass "the chosen file is there" || fail "$BIG missing"
assert_eq keep "$(cat "$T/forced/data/uploads/keep.txt")" "a file already there stays"
assert_eq "$(printf '%s\n' $LIST "$BIG" data/uploads/keep.txt | sort)" "$(files_under "$T/forced" | grep -v '^\.coffer')" "the earlier restore's files stay too"

section "dump"
run sh -c "'$COFFER' --no-progress dump -p '$POLICY' 'data/$BIG' > '$T/dumped'"
assert_eq 0 "$RC" "dump of a file exits 0"
cmp -s "$T/src/$BIG" "$T/dumped" && pass "dump output equals the source bytes" || fail "dump output differs"
run sh -c "'$COFFER' --no-progress dump -p '$POLICY' --set '$SET' 'config/data/config.toml' | cmp - '$T/src/data/config.toml'"
assert_eq 0 "$RC" "dump into a pipe equals the source (config.toml)"
expect_rc 1 "dump of a directory fails" cf dump -p "$POLICY" "data/$DIR1"
assert_contains "$ERR" "is a directory" "the error says it is a directory"
expect_rc 1 "dump of a symbolic link fails" cf dump -p "$POLICY" "data/data/uploads/zz/link"
assert_contains "$ERR" "symbolic link" "the error says it is a symbolic link"
expect_rc 1 "dump of a missing path fails" cf dump -p "$POLICY" "data/data/nosuch"
assert_contains "$ERR" "holds no file" "the error says the set holds no such file"
expect_rc 2 "dump with no PATH" cf dump -p "$POLICY"
expect_rc 0 "dump --component database writes the SQLite file" cf dump -p "$POLICY" --component database
run cf dump --help
assert_match "$(printf '%s\n' "$OUT" | head -1)" '^usage: coffer dump ' "dump --help starts with its usage line"

section "dump from a damaged repository"
damage_packs "$COFFER_REPO"
run sh -c "'$COFFER' --no-progress dump -p '$POLICY' 'data/$BIG' > '$T/dumped2'"
assert_eq 1 "$RC" "dump of a file in a damaged pack exits 1"
assert_match "$ERR" "chunk [0-9a-f]{64} in pack data/" "the error names the chunk and its pack"
assert_lt "$(stat -c %s "$T/dumped2")" "$(stat -c %s "$T/src/$BIG")" "dump stops at the damage"

finish
