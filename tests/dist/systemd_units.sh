#!/usr/bin/env bash
# The shipped systemd units: `systemd-analyze verify` accepts every
# service and timer with no warning (an unknown key is only a warning to
# systemd, so any output fails), each service runs the coffer command it
# should, and the check itself catches a broken unit.
. "$(dirname "$0")/../e2e/lib.sh"
require_coffer
command -v systemd-analyze >/dev/null || die "systemd-analyze not installed"
units=$T/units
mkdir -p "$units"
bindir=$(dirname "$COFFER")
for f in "$COFFER_SRC"/dist/systemd/*; do
    b=$(basename "$f" .in)
    sed "s|@COFFER_BINDIR@|$bindir|g" "$f" >"$units/$b"
done

verify_unit() { # verify_unit FILE-NAME-OF-AN-INSTANCE
    (cd "$units" && systemd-analyze verify --man=no "$units/$1" 2>&1)
}

for kind in backup check forget rehearse; do
    out=$(verify_unit "coffer-$kind@demo.service")
    rc=$?
    if [ $rc -eq 0 ] && [ -z "$out" ]; then
        pass "coffer-$kind@.service verifies cleanly"
    else
        fail "coffer-$kind@.service: exit $rc"
        printf '%s\n' "$out" | show
    fi
    out=$(verify_unit "coffer-$kind@demo.timer")
    rc=$?
    if [ $rc -eq 0 ] && [ -z "$out" ]; then
        pass "coffer-$kind@.timer verifies cleanly"
    else
        fail "coffer-$kind@.timer: exit $rc"
        printf '%s\n' "$out" | show
    fi
    grep -q '^LoadCredential=passphrase:/etc/coffer/%i.passphrase$' "$units/coffer-$kind@.service" &&
        pass "coffer-$kind: passphrase through LoadCredential" ||
        fail "coffer-$kind: no LoadCredential for the passphrase"
    for h in NoNewPrivileges=yes PrivateTmp=yes ProtectSystem=full; do
        grep -qx "$h" "$units/coffer-$kind@.service" || fail "coffer-$kind: $h missing"
    done
done
assert_match "$(grep ^ExecStart= "$units/coffer-backup@.service")" \
    "^ExecStart=$bindir/coffer --no-progress backup -p /etc/coffer/%i.yaml$" "backup unit command"
assert_match "$(grep -c ^ExecStart= "$units/coffer-forget@.service")" '^2$' "forget unit: forget then prune"
assert_match "$(grep ^ExecStart= "$units/coffer-rehearse@.service")" \
    "^ExecStart=$bindir/coffer --no-progress rehearse -p /etc/coffer/%i.yaml --set latest$" "rehearse unit command"
grep -qx 'Environment=TMPDIR=%S/coffer/rehearse' "$units/coffer-rehearse@.service" &&
    pass "rehearse unit: scratch outside the private /tmp, so leftovers are found next time" ||
    fail "rehearse unit: scratch directory not kept across runs"

# The check can fail: a unit with an unknown key and a missing binary.
sed -e 's|^Nice=10$|Nice=10\nBogusKey=1|' -e "s|$bindir/coffer|/nonexistent/coffer|" \
    "$units/coffer-backup@.service" >"$units/coffer-broken@.service"
out=$(verify_unit "coffer-broken@demo.service")
assert_contains "$out" "BogusKey" "a broken unit is reported (unknown key)"
assert_contains "$out" "/nonexistent/coffer" "a broken unit is reported (missing binary)"
finish
