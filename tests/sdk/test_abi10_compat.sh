#!/usr/bin/env bash
# A driver built against the 1.0 headers (tests/sdk/abi-1.0) in this core:
# it loads and is listed as ABI 1.0, a repository works on it, and the one
# 1.1 operation the core asks for (validate, at policy check) is reported
# as not supported by that driver, naming it and its ABI.
. "$(dirname "$0")/../e2e/lib.sh"
require_coffer
PLUGDIR=$COFFER_BUILD/test-plugins/abi-1.0
[ -f "$PLUGDIR/hello.so" ] || die "hello.so (ABI 1.0) not built in $PLUGDIR"
if grep -q 'COFFER_ABI_MINOR 0' "$COFFER_SRC/tests/sdk/abi-1.0/coffer/plugin.h"; then
    pass "the copied headers are ABI 1.0"
else
    fail "tests/sdk/abi-1.0 does not hold the 1.0 headers"
fi
C=("$COFFER" --plugin-dir "$PLUGDIR" --no-progress)

section "load"
expect_ok "plugins" "${C[@]}" plugins
assert_match "$OUT" '^hello +storage +0\.1\.0 +1\.0 ' "hello is listed with ABI 1.0"
assert_not_contains "$OUT" "not loaded" "the 1.0 driver loaded"

section "policy check asks for validate (1.1)"
APP=$T/app
mkdir -p "$APP/data"
echo "one" >"$APP/data/one.txt"
head -c 300000 /dev/urandom >"$APP/data/blob.bin"
cat >"$T/policy.yaml" <<EOP
version: 1
name: abi10
root: $APP
targets:
  - name: flat
    driver: hello
    location: $T/flat
components:
  - name: data
    type: files
    paths: [data/]
EOP
expect_ok "policy check passes" "${C[@]}" policy check "$T/policy.yaml"
assert_contains "$ERR" "validate is not supported by storage driver 'hello' (ABI 1.0)" \
    "the missing 1.1 operation is named with the driver and its ABI"

section "a repository on the 1.0 driver"
if expect_ok "init" "${C[@]}" init -p "$T/policy.yaml" --encryption none &&
    expect_ok "backup" "${C[@]}" backup -p "$T/policy.yaml" &&
    expect_ok "restore" "${C[@]}" restore -p "$T/policy.yaml" --set latest --to "$T/restored"; then
    if diff -r "$APP/data" "$T/restored/data" >/dev/null; then
        pass "restored tree equals the original"
    else
        fail "restored tree differs"
    fi
    assert_gt "$(find "$T/flat" -maxdepth 1 -name 'obj-*' | wc -l)" 0 "objects under the location (read through config_get)"
    expect_ok "verify --read-data" "${C[@]}" verify -p "$T/policy.yaml" --read-data
fi
finish
