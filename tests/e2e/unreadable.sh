#!/usr/bin/env bash
# Files coffer cannot read: by default a files component leaves them out
# of the set with the reason, keeps everything else, marks the set
# incomplete and exits 3 (as restic and borg do); `on_unreadable: fail`
# and a `required` path fail the backup and write no set. sets, verify
# --json and the metrics file show an incomplete set.
# coffer runs without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH here, so a
# mode 000 file is unreadable even when the test runs as root.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 2 --seed 21
nocaps() { setpriv --bounding-set=-dac_override,-dac_read_search "$@"; }
cfn() { nocaps "$COFFER" --no-progress "$@"; }
cp "$POLICY" "$T/p.yaml"
printf 'monitor:\n  metrics_file: %s/coffer.prom\n' "$T" >>"$T/p.yaml"
run cfn init -p "$T/p.yaml"
[ "$RC" -eq 0 ] || die "init: $ERR"

secret_file=$ASTERDRIVE_ROOT/data/uploads/locked.bin
mkdir -p "$(dirname "$secret_file")"
head -c 10000 /dev/urandom >"$secret_file"
chmod 000 "$secret_file"
mkdir -p "$ASTERDRIVE_ROOT/data/closed"
echo x >"$ASTERDRIVE_ROOT/data/closed/inside.txt"
chmod 000 "$ASTERDRIVE_ROOT/data/closed"
[ "$(nocaps cat "$secret_file" 2>/dev/null | wc -c)" = 0 ] || die "the test cannot make a file unreadable here"

section "default: skip, keep the rest, exit 3"
expect_rc 3 "backup with unreadable paths exits 3" cfn backup -p "$T/p.yaml"
set_id=$(printf '%s\n' "$OUT" | grep -E "$SETID_RE" | tail -1)
assert_match "$set_id" "$SETID_RE" "the set was written"
assert_contains "$ERR" "data/uploads/locked.bin: cannot be read (Permission denied)" "the file is named with the reason"
assert_contains "$ERR" "data/closed: cannot be read" "the closed directory is named"
assert_contains "$ERR" "is incomplete: 2 path(s)" "the summary says the set is incomplete"
run cfn sets -p "$T/p.yaml"
assert_contains "$OUT" "INCOMPLETE (2 unreadable)" "sets shows it"
run cfn sets -p "$T/p.yaml" --json
assert_eq "$(json_get "$OUT" 'j[-1]["incomplete"]')" True "sets --json: incomplete"
assert_eq "$(json_get "$OUT" 'sorted(u["path"] for u in j[-1]["unreadable"])')" \
    '["data/closed", "data/uploads/locked.bin"]' "sets --json lists the paths"
run cfn verify -p "$T/p.yaml" --set "$set_id"
assert_contains "$ERR" "is incomplete" "verify shows it"
assert_contains "$(cat "$T/coffer.prom")" 'coffer_backup_unreadable_files{policy="asterdrive"} 2' "metrics show it"
assert_contains "$(cat "$T/coffer.prom")" 'coffer_backup_last_status{policy="asterdrive"} 0' "metrics: not a clean backup"
run cfn restore -p "$T/p.yaml" --set "$set_id" --to "$T/restored" --no-validate
assert_eq "$RC" 0 "the incomplete set restores"
assert_absent "$T/restored/data/uploads/locked.bin" "without the unreadable file"
assert_exists "$T/restored/data/closed" "the closed directory itself is in the set"
assert_exists "$T/restored/data/config.toml" "everything else is there"
n_live=$(cd "$ASTERDRIVE_ROOT" && find data -type f ! -path 'data/.tmp/*' ! -path 'data/.uploads/*' ! -path 'data/closed/*' \
    ! -name locked.bin ! -name 'asterdrive.db*' | wc -l)
n_rest=$(cd "$T/restored" && find data -type f ! -name 'asterdrive.db*' | wc -l)
assert_eq "$n_rest" "$n_live" "every readable file restored ($n_live)"

section "on_unreadable: fail"
sed 's|^    exclude: \[data/.tmp, data/.uploads\]$|&\n    on_unreadable: fail|' "$T/p.yaml" >"$T/fail.yaml"
grep -q 'on_unreadable: fail' "$T/fail.yaml" || die "could not edit the policy"
n=$(count_sets "$COFFER_REPO")
expect_rc 1 "on_unreadable: fail refuses the backup" cfn backup -p "$T/fail.yaml"
assert_contains "$ERR" "Permission denied" "error names the cause"
assert_eq "$(count_sets "$COFFER_REPO")" "$n" "no set written"

section "a required path is never skipped"
chmod 000 "$ASTERDRIVE_ROOT/data/config.toml"
expect_rc 1 "unreadable required config fails the backup" cfn backup -p "$T/p.yaml"
assert_contains "$ERR" "config.toml" "error names the required file"
assert_eq "$(count_sets "$COFFER_REPO")" "$n" "no set written"
chmod 644 "$ASTERDRIVE_ROOT/data/config.toml"

section "bad setting"
sed 's|^    exclude: \[data/.tmp, data/.uploads\]$|&\n    on_unreadable: maybe|' "$T/p.yaml" >"$T/bad.yaml"
expect_rc 2 "on_unreadable: maybe is refused" cf policy check "$T/bad.yaml"
assert_match "$ERR" 'bad\.yaml:[0-9]+:[0-9]+: .*on_unreadable' "error names file:line:col and key"
chmod 755 "$ASTERDRIVE_ROOT/data/closed"
chmod 644 "$secret_file"
finish
