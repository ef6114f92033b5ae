#!/usr/bin/env bash
# Hostile repositories: whoever can write to the storage controls what a
# restore reads. Sets crafted by hand into an unencrypted repository
# (tests/tools/hostile_sets.py) try every way out of the restore target:
# ".." and absolute paths in entries and headers, links placed before or
# after children, duplicate entries, hard links out, huge counts and
# sizes, invalid UTF-8, damaged objects, index entries past a pack's end.
# For each: the restore fails naming the cause (or succeeds, for the
# controls), the target holds nothing after a failure, and nothing outside
# the target exists or changed afterwards; verify reports the damage that
# the readers can see. The racy cases are restored many times.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 4 --seed 77
RACE_ROUNDS=${HOSTILE_RACE_ROUNDS:-12}

first_plain_set base

area=$T/area
outside=$area/outside
mkdir -p "$outside/dir"
printf 'secret\n' >"$outside/secret"
chmod 0600 "$outside/secret"
printf 'keep\n' >"$outside/dir/keep"

# The neighbourhood of every target: all of $T but the repository (a
# restore takes a lock there), the live deployment, the targets and this
# script's own output files.
neighbourhood() {
    "$PY" - "$T" <<'EOF'
import hashlib, os, stat, sys
top = sys.argv[1]
skip = {"repo", "repo2", "live", "work"}
for dirpath, dirs, files in os.walk(top):
    rel = os.path.relpath(dirpath, top)
    if rel == ".":
        dirs[:] = [d for d in dirs if d not in skip]
        files = [f for f in files if not f.startswith(".run") and f != "live.gen.json"]
    if rel == "area":
        dirs[:] = [d for d in dirs if not d.startswith("t-")]
    dirs.sort()
    for name in sorted(dirs + files):
        p = os.path.join(dirpath, name)
        st = os.lstat(p)
        what = ""
        if stat.S_ISLNK(st.st_mode):
            what = os.readlink(p)
        elif stat.S_ISREG(st.st_mode):
            what = hashlib.sha256(open(p, "rb").read()).hexdigest()
        r = os.path.relpath(p, top)
        # the targets' parent changes as targets are made
        mt = "-" if r == "area" else st.st_mtime_ns
        print(r, oct(st.st_mode), st.st_uid, st.st_gid, mt, what)
EOF
}
# Also anything new at the filesystem root or in /tmp named like the
# payloads (absolute paths in crafted sets point into $outside, but a
# resolver bug could put a name anywhere).
stray() { find / -xdev -maxdepth 3 \( -name 'evil*' -o -name 'cron.d' -path '*/x/*' \) 2>/dev/null | grep -v "^$T" || true; }

W=$T/work # this script's own files, outside the neighbourhood
mkdir -p "$W"
neighbourhood >"$W/nb.before"
stray >"$W/stray.before"

"$PY" "$TOOLS/hostile_sets.py" "$T/repo" "$base" "$outside" >"$W/cases" ||
    die "hostile_sets.py failed"
ncases=$(wc -l <"$W/cases")
note "$ncases crafted sets"
assert_gt "$ncases" 25 "all crafted sets written"

restores=0
# try NAME SET EXPECT PATTERN ROUND: one restore into a fresh target
try() {
    local name=$1 set=$2 expect=$3 pattern=$4 round=$5
    local tgt=$area/t-$name-$round
    run cf restore -p "$POLICY" --set "$set" --to "$tgt" --no-validate
    restores=$((restores + 1))
    if [ "$expect" = ok ]; then
        [ "$RC" -eq 0 ] || { fail "$name: restore failed: $(last_line "$ERR")"; return; }
    else
        if [ "$RC" -eq 0 ]; then
            fail "$name: restore of a hostile set exited 0"
        elif [ "$pattern" != - ] && ! grep -Eq "$pattern" <<<"$ERR"; then
            fail "$name: error does not say /$pattern/: $(last_line "$ERR")"
        elif ! grep -q "^coffer: error: .*$set" <<<"$ERR"; then
            fail "$name: error does not name the set: $(last_line "$ERR")"
        fi
        [ "$round" -gt 1 ] || note "$(last_line "$ERR" | cut -c1-240)"
        local left
        left=$(find "$tgt" -mindepth 1 2>/dev/null | head -3)
        [ -z "$left" ] || fail "$name: failed restore left $left"
    fi
    neighbourhood >"$W/nb.after"
    if ! cmp -s "$W/nb.before" "$W/nb.after"; then
        fail "$name (round $round): something outside the target changed:"
        diff "$W/nb.before" "$W/nb.after" | show 10
        cp "$W/nb.after" "$W/nb.before" # report each change once
    fi
}

while read -r name set expect vexpect pattern; do
    section "$name"
    rounds=1
    case "$name" in child-then-symlink* | symlink-then-* | dir-symlink-child | dir-twice-*) rounds=$RACE_ROUNDS ;; esac
    f0=$FAILS
    for ((r = 1; r <= rounds; r++)); do
        try "$name" "$set" "$expect" "$pattern" "$r"
    done
    [ "$FAILS" -eq "$f0" ] && pass "$name: $expect in $rounds restore(s), nothing outside the target touched"
    run cf verify -p "$POLICY" --set "$set"
    if [ "$vexpect" = damage ]; then
        if [ "$RC" -ne 0 ] && grep -q "$set" <<<"$ERR$OUT"; then
            pass "$name: verify reports the set (exit $RC)"
        else
            fail "$name: verify exit $RC, set not named: $(last_line "$ERR")"
        fi
    fi
done <"$W/cases"

section "controls restored what they hold"
ctl=$(awk '$1 == "control" {print $2}' "$W/cases")
snapshot "$ASTERDRIVE_ROOT" "$W/live.json"
snapshot "$area/t-control-1" "$W/ctl.json"
compare "crafted copy of the real set restores identical to the deployment" \
    "$W/live.json" "$W/ctl.json" "${RESTORE_EXCLUDES[@]}" --exclude data/asterdrive.db \
    --ignore-mtime-dirs
assert_exists "$area/t-non-utf8-name-1/data/name-$(printf '\xff\xfe')" "non-UTF-8 name restored as bytes"
sub=$area/t-stream-name-subdir-1
assert_exists "$sub/data/asterdrive.db" "a stream named x/NAME restores to the policy's database path"
assert_absent "$sub/x" "and nowhere the stream name points"
extra=$(awk '$1 == "component-not-in-policy" {print $2}' "$W/cases")
expect_ok "a component the policy lacks is restored when named (--only extra)" \
    cf restore -p "$POLICY" --set "$extra" --to "$area/t-extra-only" --only extra --no-validate
assert_exists "$area/t-extra-only/extra/f" "component 'extra' restored by name"
assert_absent "$area/t-extra-only/data" "only the named component"

section "damaged objects"
victim=$(awk '$1 == "control" {print $2}' "$W/cases")
cp "$T/repo/sets/$victim" "$W/manifest.orig"
head -c -100 "$W/manifest.orig" >"$T/repo/sets/$victim"
expect_rc 1 "truncated manifest refused" cf restore -p "$POLICY" --set "$victim" --to "$area/t-trunc"
assert_contains "$ERR" "sets/$victim" "error names the object"
assert_eq "$(find "$area/t-trunc" -mindepth 1 2>/dev/null | wc -l)" 0 "nothing written"
{ cat "$W/manifest.orig"; head -c 5000 /dev/urandom; } >"$T/repo/sets/$victim"
expect_rc 1 "oversized manifest refused" cf restore -p "$POLICY" --set "$victim" --to "$area/t-over"
assert_contains "$ERR" "sets/$victim" "error names the object"
assert_eq "$(find "$area/t-over" -mindepth 1 2>/dev/null | wc -l)" 0 "nothing written"
run cf verify -p "$POLICY" --set "$victim"
assert_ne "$RC" 0 "verify reports the oversized manifest"
cp "$W/manifest.orig" "$T/repo/sets/$victim"
pack=$(find "$T/repo/data" -type f | head -1)
cp "$pack" "$W/pack.orig"
head -c -4096 "$W/pack.orig" >"$pack"
run cf restore -p "$POLICY" --set "$base" --to "$area/t-packcut" --no-validate
assert_ne "$RC" 0 "restore with a truncated pack fails"
assert_eq "$(find "$area/t-packcut" -mindepth 1 2>/dev/null | wc -l)" 0 "nothing written"
cp "$W/pack.orig" "$pack"

section "index entries past the end of their packs"
cp -a "$T/repo" "$T/repo2"
"$PY" "$TOOLS/craft_set.py" index-past-end "$T/repo2" | show
COFFER_REPO=$T/repo2 run cf restore -p "$POLICY" --set "$base" --to "$area/t-index"
assert_ne "$RC" 0 "restore refuses index entries past the end of a pack"
assert_match "$ERR" 'index/' "error names the index object"
assert_eq "$(find "$area/t-index" -mindepth 1 2>/dev/null | wc -l)" 0 "nothing written"

section "nothing outside any target"
neighbourhood >"$W/nb.final"
if cmp -s "$W/nb.before" "$W/nb.final"; then
    pass "after $restores hostile restores the neighbourhood is unchanged"
else
    fail "neighbourhood changed"
    diff "$W/nb.before" "$W/nb.final" | show 20
fi
stray >"$W/stray.after"
if cmp -s "$W/stray.before" "$W/stray.after"; then
    pass "no payload name appeared anywhere on the filesystem"
else
    fail "payload names appeared: $(diff "$W/stray.before" "$W/stray.after" | grep '^>' | head -3)"
fi
assert_eq "$(cat "$outside/secret")" "secret" "outside file content unchanged"
assert_eq "$(stat -c %a "$outside/secret")" "600" "outside file mode unchanged (0600)"
finish
