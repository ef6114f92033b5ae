#!/usr/bin/env bash
# Every command's --json output (docs/json.md): each command runs with
# --json on a small deployment, its stdout parses as one JSON document, and
# the documented fields are there with their types (the table below is kept
# in step with docs/json.md: a field missing, of another type, or not
# documented fails). Counts are numbers, flags booleans, lists arrays.
# Then failures: the error object on stdout, the same exit status as
# without --json and the error line on stderr; and partial successes
# (exit 3), which print their report saying what went wrong.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env
P=$POLICY
# The same deployment with a second target, for copy.
P2=$T/two-targets.yaml
make_policy "$P2" "s|^\( *\)location: \(.*COFFER_REPO.*\)\$|\1location: \2\n  - name: second\n    location: $T/repo2|"

# The schema of each command's output. A type is int, num, str, bool,
# null, "a|b" (either), [TYPE] (an array of TYPE), {FIELD: TYPE} (an object
# with exactly these fields; "FIELD?" may be absent), {"*": TYPE} (any keys).
cat >"$T/schema.py" <<'EOF'
import json, sys

BACKUP_COMMON = {
    "policy": "str", "files": "int", "bytes": "int", "new_bytes": "int", "stored_bytes": "int",
    "unchanged_files": "int", "duration": "num", "vanished_files": "int|null", "unreadable": "int",
    "incomplete": "bool",
    "unreadable_paths": [{"component": "str", "path": "str", "reason": "str"}],
    "inconsistent": "bool", "missing_references": "int", "refetched": "int",
    "missing_paths": [{"check": "str", "component": "str", "path": "str", "reason": "str"}],
    "references?": [{"name": "str", "component": "str", "rows": "int", "missing": "int",
                     "problems": "int", "skipped?": "bool", "error?": "str"}],
}
COPY = {"id": "str", "target": "str", "copied": "bool", "bytes_sent": "int"}
DRIVER = {"name": "str", "kind": "str", "version": "str|null", "abi_major": "int",
          "abi_minor": "int", "capabilities": ["str"], "built_in": "bool", "path": "str|null"}
PROBLEM = {"set?": "str", "path?": "str", "object?": "str", "chunk?": "str", "pack?": "str",
           "problem": "str", "fix?": "str"}
PCHECK = {"name": "str", "type": "str", "level": "str", "status": "str", "rows": "int",
          "problems": "int", "first": ["str"], "detail": "str", "seconds": "num"}
PCHECK_SUM = {"name": "str", "status": "str", "problems": "int"}
VALIDATE_SUM = {"name": "str", "exit": "int", "ok": "bool"}
VALIDATE = {"name": "str", "run": "str", "exit": "int", "ok": "bool", "output": "str",
            "error?": "str"}
DBCHECK = {"component": "str", "check": "str", "ok": "bool", "detail": "str"}
SCHEMA = {
    "init": {"targets": [{"name": "str", "location": "str", "encryption": "str",
                          "passphrase_source": "str|null"}]},
    "backup": dict(BACKUP_COMMON, set="str", repository={"sets": "int", "size_bytes": "int"},
                   copies=[COPY], errors=["str"]),
    "backup-dry-run": dict(BACKUP_COMMON, dry_run="bool", mode="str"),
    "sets": [{"id": "str", "policy": "str", "host": "str", "time": "str", "mode": "str",
              "components": ["str"],
              "totals": {"files": "int", "dirs": "int", "links": "int", "bytes": "int",
                         "new_bytes": "int", "stored_bytes": "int", "unchanged_files": "int",
                         "unreadable?": "int"},
              "databases": {"*": {"*": "str|int|[str]"}}, "incomplete": "bool",
              "unreadable": [{"component": "str", "path": "str", "reason": "str"}],
              "inconsistent": "bool", "missing_references": "int",
              "missing_paths": [{"check": "str", "component": "str", "path": "str",
                                 "reason": "str"}],
              "proof": {"proven": "bool", "last_proven": "str|null",
                        "last_rehearsal?": {"time": "str", "ok": "bool", "duration_ms": "int",
                                            "checks": [PCHECK_SUM], "validate": [VALIDATE_SUM],
                                            "error?": "str"}}}],
    "restore": {"set": "str", "root": "str", "dry_run": "bool", "ok": "bool",
                "components": [{"name": "str", "destination": "str"}],
                "checks": [DBCHECK], "policy_checks": [PCHECK], "validate": [VALIDATE]},
    "rehearse": {"ok": "bool", "cleaned": [{"dir": "str", "databases": ["str"]}],
                 "sets": [{"set": "str", "time": "str", "ok": "bool", "duration_ms": "int",
                           "scratch_dir?": "str",
                           "scratch_databases": [{"component": "str", "name": "str",
                                                  "target": "str"}],
                           "components?": [{"name": "str", "destination": "str"}],
                           "checks?": [DBCHECK], "policy_checks?": [PCHECK],
                           "validate?": [VALIDATE], "kept": "bool", "removed": "bool",
                           "recorded": "bool", "error?": "str", "inconsistent?": "bool",
                           "missing_references?": "int"}]},
    "restore-dry-run": {"set": "str", "time": "str", "root": "str", "in_place": "bool",
                        "dry_run": "bool",
                        "components": [{"name": "str", "type": "str", "destination": "str",
                                        "paths?": ["str"], "driver?": "str", "files": "int",
                                        "bytes": "int"}],
                        "commands": [{"stop": "str", "start": "str"}],
                        "policy_checks": [{"name": "str", "type": "str"}],
                        "validate": [{"name": "str", "run": "str"}]},
    "restore-cleanup": {"root": "str", "dry_run": "bool", "removed": ["str"]},
    "verify": {"problems": [PROBLEM], "sets": "int", "ok": "bool",
               "not_checked": [{"set": "str", "component": "str", "reason": "str"}]},
    "forget": [{"id": "str", "keep": "bool", "reasons": ["str"], "removed": "bool"}],
    "copy": {"from": "str", "to": "str", "sets": [COPY]},
    "unlock": {"removed": "int", "all": "bool"},
    "check": {"sets": "int", "entries": "int", "orphan_bytes": "int", "problem_count": "int",
              "problems": [PROBLEM], "ok": "bool", "fixes": ["str"],
              "orphans": [{"object": "str", "size": "int", "mtime": "int"}],
              "packs_read?": "int", "packs_total?": "int", "bytes_read?": "int",
              "read_seconds?": "num"},
    "prune": {"dry_run": "bool", "sets": "int", "policies": "int", "chunks_used": "int",
              "chunks_total": "int", "index_objects_removed": "int", "seconds": "num",
              "packs_written": "int",
              "packs": {"total": "int", "kept": "int", "repacked": "int", "removed": "int"},
              "bytes": {"total": "int", "used": "int", "unused": "int", "removed": "int",
                        "copied": "int", "unused_kept": "int"},
              "unindexed": {"removed": "int", "removed_bytes": "int", "kept": "int",
                            "kept_bytes": "int"}},
    "key-list": [{"id": "str", "created": "str", "host": "str", "opslimit": "int",
                  "memlimit": "int", "current": "bool", "foreign": "bool"}],
    "key-change": {"action": "str", "added": "str|null", "removed": "str|null"},
    "plugins": {"drivers": [DRIVER], "not_loaded": ["str"]},
    "plugins-policy": {"policy": "str", "instances": [{"kind": "str", "name": "str", "driver": "str",
                                                     "capabilities": ["str"]}]},
    "plugins-describe": dict(DRIVER, description="str",
                             options=[{"name": "str", "type": "str", "required": "bool",
                                       "description": "str", "default": "str|null"}]),
    "policy-check": {"file": "str", "valid": "bool", "name": "str", "root": "str", "mode": "str",
                     "components": [{"name": "str", "type": "str"}],
                     "targets": [{"name": "str", "location": "str"}]},
    "error": {"error": {"message": "str", "exit": "int", "command": "str|null"}},
}

SCALARS = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
           "num": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
           "str": lambda v: isinstance(v, str), "bool": lambda v: isinstance(v, bool),
           "null": lambda v: v is None}


def check(v, t, where, errs):
    if isinstance(t, str):
        alts = t.split("|")
        for a in alts:
            if a.startswith("["):
                if isinstance(v, list):
                    for i, x in enumerate(v):
                        check(x, a[1:-1], f"{where}[{i}]", errs)
                    return
            elif SCALARS[a](v):
                return
        errs.append(f"{where}: {json.dumps(v)[:80]} is not {t}")
    elif isinstance(t, list):
        if not isinstance(v, list):
            errs.append(f"{where}: not an array")
            return
        for i, x in enumerate(v):
            check(x, t[0], f"{where}[{i}]", errs)
    elif isinstance(t, dict):
        if not isinstance(v, dict):
            errs.append(f"{where}: not an object")
            return
        if "*" in t:
            for k, x in v.items():
                check(x, t["*"], f"{where}.{k}", errs)
            return
        for k, sub in t.items():
            name = k.rstrip("?")
            if name in v:
                check(v[name], sub, f"{where}.{name}", errs)
            elif not k.endswith("?"):
                errs.append(f"{where}: no field '{name}'")
        for k in v:
            if k not in t and k + "?" not in t:
                errs.append(f"{where}: field '{k}' is not documented")


try:
    doc = json.loads(sys.stdin.read())
except ValueError as e:
    print(f"stdout is not one JSON document: {e}")
    sys.exit(1)
errs = []
check(doc, SCHEMA[sys.argv[1]], sys.argv[1], errs)
print("\n".join(errs[:20]))
sys.exit(1 if errs else 0)
EOF

# schema NAME [DESCRIPTION]: $OUT is one JSON document of schema NAME
schema() {
    local o
    if o=$(printf '%s' "$OUT" | "$PY" "$T/schema.py" "$1" 2>&1); then
        pass "${2:-$1}: stdout matches the $1 schema"
    else
        fail "${2:-$1}: stdout does not match the $1 schema:"
        printf '%s\n' "$o" | show
    fi
}
# jrun NAME DESCRIPTION CMD...: the command exits 0 with a NAME document
jrun() {
    local name=$1 desc=$2; shift 2
    expect_ok "$desc" "$@" && schema "$name" "$desc"
}
# jfail CODE COMMAND DESCRIPTION CMD...: exit CODE, the error object for
# COMMAND on stdout, and the same message as the error line on stderr
jfail() {
    local code=$1 command=$2 desc=$3; shift 3
    expect_rc "$code" "$desc" "$@" || return
    schema error "$desc"
    assert_eq "$code" "$(json_get "$OUT" 'j["error"]["exit"]')" "$desc: the object gives exit $code"
    assert_eq "${command:-None}" "$(json_get "$OUT" 'j["error"]["command"]')" "$desc: the object names '${command:-no command}'"
    assert_eq 1 "$(printf '%s\n' "$ERR" | grep -c '^coffer: error: ')" "$desc: one error line on stderr"
    assert_eq "$(printf '%s\n' "$ERR" | sed -n 's/^coffer: error: //p')" \
        "$(json_get "$OUT" 'j["error"]["message"]')" "$desc: the object carries the error line's message"
    # the same command line without --json: same status and error line, no stdout
    local line=$ERR jout=$OUT plain=() x
    for x in "$@"; do
        if [ "$x" = --json ]; then continue; fi
        if [[ "$x" =~ ^-[a-z]+$ ]]; then x=${x//j/}; fi
        plain+=("$x")
    done
    run "${plain[@]}"
    assert_eq "$code|$(printf '%s\n' "$line" | grep '^coffer: error: ')|" \
        "$RC|$(printf '%s\n' "$ERR" | grep '^coffer: error: ')|$OUT" "$desc: without --json the same exit status and error line"
    OUT=$jout ERR=$line RC=$code
}

section "a deployment and its repositories"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 2 --seed 31
jrun policy-check "policy check --json" cf policy check "$P" --json
assert_eq "config database data" "$(json_get "$OUT" '" ".join(c["name"] for c in j["components"])')" \
    "policy check lists the components in order"
assert_eq True "$(json_get "$OUT" 'j["valid"]')" "policy check says valid"
jrun init "init --json (both targets)" cf init -p "$P2" --json
assert_eq "primary second" "$(json_get "$OUT" '" ".join(t["name"] for t in j["targets"])')" "init lists both targets"
assert_eq repokey "$(json_get "$OUT" 'j["targets"][0]["encryption"]')" "init: encrypted"
# shellcheck disable=SC2016 # the variable's name, not its value
assert_eq '$COFFER_PASSPHRASE' "$(json_get "$OUT" 'j["targets"][0]["passphrase_source"]')" \
    "init names the passphrase source, never the passphrase"
assert_not_contains "$OUT" "$COFFER_PASSPHRASE" "no passphrase in the output"

section "backup, sets, verify, check"
jrun backup-dry-run "backup --dry-run --json" cf backup -p "$P" --dry-run --json
assert_eq True "$(json_get "$OUT" 'j["dry_run"]')" "the dry run says so"
jrun backup "backup --json" cf backup -p "$P" --json
S1=$(json_get "$OUT" 'j["set"]')
assert_match "$S1" "$SETID_RE" "backup --json gives the set id"
assert_eq "False []" "$(json_get "$OUT" 'j["incomplete"]') $(json_get "$OUT" 'j["errors"]')" \
    "a complete backup: incomplete false, no errors"
jrun backup "backup --json (two targets: copied)" cf backup -p "$P2" --json
S2=$(json_get "$OUT" 'j["set"]')
assert_eq "second True" "$(json_get "$OUT" 'j["copies"][0]["target"]') $(json_get "$OUT" 'j["copies"][0]["copied"]')" \
    "the summary lists the copy to the second target"
jrun sets "sets --json" cf sets -p "$P" --json
SETS=$OUT
assert_eq "$S1 $S2" "$(json_get "$SETS" '" ".join(s["id"] for s in j)')" "sets lists both sets"
assert_eq "$(sql "$ASTERDRIVE_ROOT/data/asterdrive.db" 'select count(*) from files')" \
    "$(json_get "$SETS" 'j[-1]["databases"]["database"]["rows.files"]')" "rows.files is the table's row count"
assert_eq "int int str str" \
    "$(json_get "$SETS" '" ".join(type(j[-1]["databases"]["database"][k]).__name__ for k in ("rows.users", "size", "server_version", "snapshot"))')" \
    "row counts and size are numbers; server_version and snapshot stay strings"
assert_eq str "$(json_get "$SETS" 'type(j[-1]["databases"]["database"]["file_mode"]).__name__')" \
    "file_mode (octal) stays a string"
jrun verify "verify --json" cf verify -p "$P" --set all --read-data --json
assert_eq "True 2 0" "$(json_get "$OUT" 'j["ok"]') $(json_get "$OUT" 'j["sets"]') $(json_get "$OUT" 'len(j["problems"])')" \
    "verify: ok, both sets, no problems"
jrun check "check --json" cf check -p "$P" --read-data --json
assert_eq "True 0" "$(json_get "$OUT" 'j["ok"]') $(json_get "$OUT" 'j["problem_count"]')" "check: ok, no problems"
assert_gt "$(json_get "$OUT" 'j["packs_read"]')" 0 "check --read-data counts the packs read"

section "rehearse"
mkdir -p "$T/rscratch"
TMPDIR=$T/rscratch jrun rehearse "rehearse --json" cf rehearse -p "$P" --set "$S1" --json
assert_eq "True $S1 True" "$(json_get "$OUT" 'j["ok"]') $(json_get "$OUT" 'j["sets"][0]["set"]') $(json_get "$OUT" 'j["sets"][0]["recorded"]')" \
    "rehearse: ok, the set, recorded"
TMPDIR=$T/rscratch jrun rehearse "rehearse --cleanup --json" cf rehearse -p "$P" --cleanup --json
jrun sets "sets --json after a rehearsal" cf sets -p "$P" --json
assert_eq "True" "$(json_get "$OUT" '[s["proof"]["proven"] for s in j if s["id"] == "'"$S1"'"][0]')" "sets: the rehearsed set is proven"

section "restore"
jrun restore-dry-run "restore --dry-run --json" cf restore -p "$P" --to "$T/r0" --dry-run --json
assert_eq "True config database data" "$(json_get "$OUT" 'j["dry_run"]') $(json_get "$OUT" '" ".join(c["name"] for c in j["components"])')" \
    "the plan: dry_run, components in restore order"
assert_absent "$T/r0" "the dry run wrote nothing"
jrun restore "restore --json" cf restore -p "$P" --set "$S1" --to "$T/r1" --json
assert_eq "True $S1 $T/r1" "$(json_get "$OUT" 'j["ok"]') $(json_get "$OUT" 'j["set"]') $(json_get "$OUT" 'j["root"]')" \
    "restore: ok, the set, the root"
assert_eq "True" "$(json_get "$OUT" 'all(c["ok"] for c in j["checks"]) and j["validate"][0]["ok"]')" \
    "every check and the validate command passed"
assert_exists "$T/r1/data/config.toml" "the set was restored"
# an in-place restore keeps what it replaced aside; --cleanup-previous removes it
expect_ok "restore --in-place" cf restore -p "$P" --set "$S2" --in-place
jrun restore-cleanup "restore --cleanup-previous --dry-run --json" cf restore -p "$P" --cleanup-previous --dry-run --json
assert_eq "True 1" "$(json_get "$OUT" 'j["dry_run"]') $(json_get "$OUT" 'len(j["removed"])')" \
    "the dry run names the one directory kept aside"
jrun restore-cleanup "restore --cleanup-previous --json" cf restore -p "$P" --cleanup-previous --json
assert_absent "$(json_get "$OUT" 'j["removed"][0]')" "the directory kept aside is gone"

section "copy, forget, prune, unlock"
jrun copy "copy --json" cf copy -p "$P2" --from primary --to second --set all --json
assert_eq "$S1 True $S2 False" "$(json_get "$OUT" '" ".join(s["id"] + " " + str(s["copied"]) for s in j["sets"])')" \
    "the first set copied, the second (backed up with both targets) already there"
jrun forget "forget --dry-run --json" cf forget -p "$P" --dry-run --keep-last 1 --keep-daily 1 --json
assert_eq '["last", "daily"]' "$(json_get "$OUT" 'j[-1]["reasons"]')" "the newest set: kept by two rules, as an array"
assert_eq '[] False False' "$(json_get "$OUT" 'j[0]["reasons"]') $(json_get "$OUT" 'j[0]["keep"]') $(json_get "$OUT" 'j[0]["removed"]')" \
    "the older set: no rule keeps it, not removed in a dry run"
jrun forget "forget SET --json" cf forget -p "$P" "$S1" --json
assert_eq '["named"] True' "$(json_get "$OUT" 'j[0]["reasons"]') $(json_get "$OUT" 'j[0]["removed"]')" \
    "the named set is removed, the reason given"
jrun prune "prune --json" cf prune -p "$P" --json
assert_eq "False 1" "$(json_get "$OUT" 'j["dry_run"]') $(json_get "$OUT" 'j["sets"]')" "prune: one set left"
NOW=$(date +%s)
printf '{"host":"elsewhere.example","pid":4242,"kind":"exclusive","command":"prune","created":%s,"refreshed":%s}' \
    "$NOW" "$NOW" >"$COFFER_REPO/locks/0123456789abcdef0123456789abcdef"
jfail 1 backup "backup --json into a locked repository" cf backup -p "$P" --json
assert_contains "$OUT" "elsewhere.example" "the error object names the lock's host"
jfail 1 prune "prune --json into a locked repository" cf prune -p "$P" --json
jrun unlock "unlock --json (the live lock stays)" cf unlock -p "$P" --json
assert_eq 0 "$(json_get "$OUT" 'j["removed"]')" "no stale lock removed"
jrun unlock "unlock --all --json" cf unlock -p "$P" --all --json
assert_eq "1 True" "$(json_get "$OUT" 'j["removed"]') $(json_get "$OUT" 'j["all"]')" "unlock --all removed the lock"

section "keys, drivers"
jrun key-list "key list --json" cf key list -p "$P" --json
assert_eq 1 "$(json_get "$OUT" 'len(j)')" "one key"
echo "second e2e passphrase" >"$T/pass2"
jrun key-change "key add --json" cf key add -p "$P" --new-passphrase-file "$T/pass2" --json
K2=$(json_get "$OUT" 'j["added"]')
assert_eq "add None" "$(json_get "$OUT" 'j["action"]') $(json_get "$OUT" 'j["removed"]')" "key add: the added key only"
jrun key-list "key list --json (two keys)" cf key list -p "$P" --json
assert_eq "$K2 False" "$(json_get "$OUT" '" ".join(k["id"] + " " + str(k["current"]) for k in j if k["id"] == "'"$K2"'")')" \
    "the new key is listed, not in use"
jrun key-change "key remove --json" cf key remove -p "$P" "$K2" --json
assert_eq "remove $K2" "$(json_get "$OUT" 'j["action"]') $(json_get "$OUT" 'j["removed"]')" "key remove names the key"
OLD=$(json_get "$(cf key list -p "$P" --json)" 'j[0]["id"]')
jrun key-change "key passwd --json" cf key passwd -p "$P" --new-passphrase-file "$T/pass2" --json
assert_eq "passwd $OLD" "$(json_get "$OUT" 'j["action"]') $(json_get "$OUT" 'j["removed"]')" "key passwd: the old key replaced"
export COFFER_PASSPHRASE="second e2e passphrase"
jrun key-list "key list --json with the new passphrase" cf key list -p "$P" --json
jrun plugins "plugins --json" cf plugins --json
assert_eq "True" "$(json_get "$OUT" 'any(d["name"] == "sqlite" and d["built_in"] and "verify" in d["capabilities"] for d in j["drivers"])')" \
    "the built-in sqlite driver with its capabilities as an array"
jrun plugins-policy "plugins -p POLICY --json" cf plugins -p "$P" --json
assert_eq "True" "$(json_get "$OUT" 'any(i["kind"] == "target" and "atomic-publish" in i["capabilities"] for i in j["instances"]) and any(i["driver"] == "sqlite" and "owns-files" in i["capabilities"] for i in j["instances"])')" \
    "each target's and database's instance capabilities"
jrun plugins-describe "plugins --describe sqlite --json" cf plugins --describe sqlite --json
assert_eq "True" "$(json_get "$OUT" 'any(o["name"] == "path" and o["required"] is True for o in j["options"])')" \
    "sqlite's path option is required (a boolean)"

section "failures: the error object"
jfail 1 restore "restore --json of an unknown set" cf restore -p "$P" --set 20000101T000000Z-deadbeef --to "$T/r2" --json
assert_absent "$T/r2" "nothing restored"
jfail 1 verify "verify --json of an unknown set" cf verify -p "$P" --set 20000101T000000Z-deadbeef --json
jfail 2 sets "sets --json with a missing policy file" cf sets -p "$T/no-such-policy.yaml" --json
jfail 2 policy "policy check --json of a missing file" cf policy check "$T/no-such-policy.yaml" --json
jfail 2 verify "a usage error with --json (unknown option)" cf verify -p "$P" --json --frobnicate
assert_contains "$OUT" "--frobnicate" "the error object names the option"
jfail 2 restore "a usage error with --json (neither --to nor --in-place)" cf restore -p "$P" --json
jfail 2 forget "forget --json of an id that is not a set" cf forget -p "$P" 20000101T000000Z-deadbeef --json
jfail 2 plugins "plugins --describe --json of an unknown driver" cf plugins --describe nosuch --json
jfail 1 key "key remove --json of the key in use" cf key remove -p "$P" "$(json_get "$(cf key list -p "$P" --json)" 'j[0]["id"]')" --json
jfail 2 init "init --json of an unknown target" cf init -p "$P" --target nosuch --json
jfail 2 "" "an unknown command with --json (command null)" cf frobnicate --json
jfail 2 sets "-j grouped with -v" cf sets -vj -p "$T/no-such-policy.yaml"
expect_rc 2 "the same usage error without --json" cf verify -p "$P" --frobnicate
assert_eq "" "$OUT" "without --json nothing on stdout"

section "partial successes (exit 3): the report says what went wrong"
# a set written, then the start command failed: exit 1, but the set exists,
# so the summary is printed and names the error (no error object)
ASTERDRIVE_START=false expect_rc 1 "backup --json with a failing start command" cf backup -p "$P" --json
schema backup "backup with a failing start command"
assert_match "$(json_get "$OUT" 'j["set"]')" "$SETID_RE" "the summary names the set written"
assert_contains "$(json_get "$OUT" 'j["errors"][0]')" "start command" "and the failed start command"
assert_eq "$(json_get "$(cf sets -p "$P" --json)" 'j[-1]["totals"]["files"]')" "$(json_get "$OUT" 'j["files"]')" \
    "its figures are the set's (from the manifest)"
assert_error_line "and the error line on stderr"
ASTERDRIVE_DOCTOR=false expect_rc 3 "restore --json with a failing validate command" \
    cf restore -p "$P" --to "$T/r3" --json
schema restore "restore with a failing validate command"
assert_eq "False False 1" "$(json_get "$OUT" 'j["ok"]') $(json_get "$OUT" 'j["validate"][0]["ok"]') $(json_get "$OUT" 'j["validate"][0]["exit"]')" \
    "the report: not ok, the validate command failed with exit 1"
assert_error_line "and the error line on stderr"
# a file coffer cannot read (without CAP_DAC_OVERRIDE, also as root): the set
# is written without it, marked incomplete, exit 3
locked=$ASTERDRIVE_ROOT/data/locked.bin
echo secret >"$locked"
chmod 000 "$locked"
nocaps() { setpriv --bounding-set=-dac_override,-dac_read_search "$@"; }
if [ "$(nocaps cat "$locked" 2>/dev/null | wc -c)" = 0 ]; then
    run nocaps "$COFFER" --no-progress backup -p "$P" --json
    assert_eq 3 "$RC" "backup --json with an unreadable file exits 3"
    schema backup "an incomplete backup"
    assert_eq "True 1 data/locked.bin" \
        "$(json_get "$OUT" 'j["incomplete"]') $(json_get "$OUT" 'j["unreadable"]') $(json_get "$OUT" 'j["unreadable_paths"][0]["path"]')" \
        "the summary: incomplete, the path left out"
    assert_error_line "and the error line on stderr"
    jrun sets "sets --json with an incomplete set" cf sets -p "$P" --json
    assert_eq "True data/locked.bin" "$(json_get "$OUT" 'j[-1]["incomplete"]') $(json_get "$OUT" 'j[-1]["unreadable"][0]["path"]')" \
        "sets: the set is incomplete, the path listed"
else
    skip "cannot make a file unreadable here (setpriv)"
fi
rm -f "$locked"
cp -a "$COFFER_REPO" "$T/damaged"
# every pack gone: the index, the manifests and the keys are still there
[ -n "$(find "$T/damaged/data" -type f)" ] || die "no pack found in the repository copy"
find "$T/damaged/data" -type f -delete
COFFER_REPO=$T/damaged expect_rc 3 "verify --json of a repository with its packs missing" cf verify -p "$P" --json
schema verify "verify with the packs missing"
assert_eq False "$(json_get "$OUT" 'j["ok"]')" "verify: not ok"
assert_gt "$(json_get "$OUT" 'len(j["problems"])')" 0 "the problems are listed"
assert_error_line "and the error line on stderr"
COFFER_REPO=$T/damaged expect_rc 3 "check --json of a repository with its packs missing" cf check -p "$P" --json
schema check "check with the packs missing"
assert_eq False "$(json_get "$OUT" 'j["ok"]')" "check: not ok"
assert_gt "$(json_get "$OUT" 'j["problem_count"]')" 0 "the problems are counted"
# a manifest that does not parse: listed with its error, the others as usual
bad=$(find "$T/damaged/sets" -type f | sort | tail -1)
echo "not a manifest" >"$bad"
COFFER_REPO=$T/damaged expect_rc 3 "sets --json with an unreadable manifest" cf sets -p "$P" --json
assert_eq "$(basename "$bad")" "$(json_get "$OUT" '" ".join(s["id"] for s in j if set(s) == {"id", "error"})')" \
    "the unreadable set is an entry with id and error only"
OUT=$(json_get "$OUT" '[s for s in j if "error" not in s]') schema sets "the other sets"
assert_error_line "and the error line on stderr"

finish
