#!/usr/bin/env bash
# The SDK as a third party sees it: install coffer into a fresh prefix, build
# sdk/examples/hello_storage against that install only (pkg-config finds it;
# nothing points into the source tree), with CMake and with make, then check
# that coffer loads the driver, lists it and describes its options, and that a
# repository works on it (init, backup, restore).
#
# The install is staged with DESTDIR, so an install rule that ignores --prefix
# (an absolute DESTINATION) cannot write into the real system; it is reported.
. "$(dirname "$0")/../e2e/lib.sh"
require_coffer
[ -f "$COFFER_BUILD/CMakeCache.txt" ] || die "no build directory at $COFFER_BUILD (set COFFER_BUILD)"
EXAMPLE=$COFFER_SRC/sdk/examples/hello_storage
PREFIX=$T/prefix
STAGE=$T/stage

section "install into a fresh prefix"
expect_ok "cmake --install --prefix $PREFIX" env DESTDIR="$STAGE" cmake --install "$COFFER_BUILD" --prefix "$PREFIX" ||
    die "install failed"
stray=$(cd "$STAGE" && find . ! -type d | sed 's|^\.||' | grep -v "^$PREFIX/" || true)
if [ -z "$stray" ]; then
    pass "every installed file is under --prefix"
else
    fail "files installed outside --prefix (absolute DESTINATION in an install rule?):"
    printf '%s\n' "$stray" | sed "s|^|$STAGE|" | show
fi
[ -d "$STAGE$PREFIX" ] || die "nothing was installed under $PREFIX"
mv "$STAGE$PREFIX" "$PREFIX"
assert_exists "$PREFIX/bin/coffer" "coffer binary installed"
assert_exists "$PREFIX/include/coffer/coffer.h" "SDK headers installed"
if diff -r "$COFFER_SRC/sdk/include/coffer" "$PREFIX/include/coffer" >/dev/null; then
    pass "installed headers are exactly sdk/include/coffer"
else
    fail "installed headers differ from sdk/include/coffer"
fi

# GNUInstallDirs gives lib/ for most prefixes, lib/<multiarch>/ for /usr on Debian.
PCFILE=$(find "$PREFIX" -name coffer-sdk.pc -path '*/pkgconfig/*' | head -n 1)
[ -n "$PCFILE" ] || die "coffer-sdk.pc not installed under $PREFIX"
PCDIR=$(dirname "$PCFILE")
case "$PCDIR" in
"$PREFIX"/lib/pkgconfig | "$PREFIX"/lib64/pkgconfig | "$PREFIX"/lib/*-linux-gnu*/pkgconfig)
    pass "coffer-sdk.pc in ${PCDIR#"$PREFIX"/}" ;;
*) fail "coffer-sdk.pc in an unexpected place: $PCDIR" ;;
esac

section "pkg-config sees the install, and only it"
unset PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR CPATH C_INCLUDE_PATH
export PKG_CONFIG_PATH=$PCDIR
expect_ok "pkg-config --modversion coffer-sdk" pkg-config --modversion coffer-sdk || die "pkg-config cannot find coffer-sdk"
note "coffer-sdk $OUT, cflags: $(pkg-config --cflags coffer-sdk)"
INCDIR=$(pkg-config --variable=includedir coffer-sdk)
INCREAL=$(realpath -m "$INCDIR")
if [ -f "$INCDIR/coffer/coffer.h" ] && [[ "$INCREAL" == "$PREFIX"/* ]]; then
    pass "includedir of coffer-sdk.pc is inside the prefix ($INCDIR)"
else
    fail "coffer-sdk.pc says includedir=$INCDIR, not $PREFIX/include: the .pc file is not relocatable (write its paths relative to \${pcfiledir})"
fi
PLUGINDIR=$(pkg-config --variable=plugindir coffer-sdk)
if [[ "$(realpath -m "$PLUGINDIR")" == "$PREFIX"/* ]]; then
    pass "plugindir of coffer-sdk.pc is inside the prefix ($PLUGINDIR)"
else
    fail "coffer-sdk.pc says plugindir=$PLUGINDIR, outside $PREFIX"
fi

assert_eq "$(sed -n 's/^#define COFFER_ABI_MAJOR //p' "$PREFIX/include/coffer/plugin.h")" "$(pkg-config --variable=abi_major coffer-sdk)" "coffer-sdk.pc abi_major matches the header"
assert_eq "$(sed -n 's/^#define COFFER_ABI_MINOR //p' "$PREFIX/include/coffer/plugin.h")" "$(pkg-config --variable=abi_minor coffer-sdk)" "coffer-sdk.pc abi_minor matches the header"

section "build the example with CMake"
expect_ok "configure hello_storage" cmake -S "$EXAMPLE" -B "$T/hello-cmake" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON
expect_ok "build hello_storage" cmake --build "$T/hello-cmake"
SO=$T/hello-cmake/hello.so
assert_exists "$SO" "hello.so built"
if [ -f "$T/hello-cmake/compile_commands.json" ]; then
    CC_JSON=$(cat "$T/hello-cmake/compile_commands.json")
    assert_not_contains "$CC_JSON" "$COFFER_SRC/sdk/include" "compiled without the source tree's headers"
    assert_contains "$CC_JSON" "$PREFIX" "compiled with the installed headers"
fi

section "build the example with make"
mkdir -p "$T/hello-make"
cp "$EXAMPLE/hello.c" "$EXAMPLE/Makefile" "$T/hello-make/"
expect_ok "make" make -C "$T/hello-make"
assert_exists "$T/hello-make/hello.so" "hello.so built by make"

section "the driver"
[ -f "$SO" ] || die "no hello.so to load"
SYMS=$(nm -D --defined-only "$SO" | awk '{print $3}' | tr '\n' ' ')
assert_eq "coffer_plugin_init " "$SYMS" "hello.so exports exactly coffer_plugin_init"
PLUGDIR=$T/plugins
mkdir -p "$PLUGDIR"
cp "$SO" "$PLUGDIR/"

for bin in "$PREFIX/bin/coffer" "$COFFER"; do
    expect_ok "$bin --plugin-dir DIR plugins" "$bin" --plugin-dir "$PLUGDIR" plugins
    printf '%s\n' "$OUT" | show
    assert_match "$OUT" '^hello +storage +0\.1\.0 +1\.[0-9]+ ' "plugins lists hello: storage, 0.1.0, ABI 1.x"
    assert_match "$OUT" '^local +storage ' "plugins still lists the built-in local driver"
    assert_match "$OUT" '^sqlite +database ' "plugins still lists the built-in sqlite driver"
    assert_not_contains "$OUT" "not loaded" "every driver in the plugin directory loaded"
done
expect_ok "plugins --describe hello" "$COFFER" --plugin-dir "$PLUGDIR" plugins --describe hello
assert_match "$OUT" '^ +dir +path +directory' "describe shows the optional dir option"
assert_match "$OUT" '^ +prefix +string .*default: obj-' "describe shows prefix with its default"
expect_ok "COFFER_PLUGIN_PATH instead of --plugin-dir" env COFFER_PLUGIN_PATH="$PLUGDIR" "$COFFER" plugins
assert_match "$OUT" '^hello +storage ' "COFFER_PLUGIN_PATH loads hello"

section "a repository on the example driver"
APP=$T/app
mkdir -p "$APP/data/sub"
echo "hello, coffer" >"$APP/data/greeting.txt"
head -c 700000 /dev/urandom >"$APP/data/sub/blob.bin"
cat >"$T/policy.yaml" <<EOF
version: 1
name: hello-sdk
root: $APP
targets:
  - name: flat
    driver: hello
    location: $T/flat
components:
  - name: data
    type: files
    paths: [data/]
EOF
C=("$PREFIX/bin/coffer" --plugin-dir "$PLUGDIR" --no-progress)
if expect_ok "init a repository on hello" "${C[@]}" init -p "$T/policy.yaml" &&
    expect_ok "backup to hello" "${C[@]}" backup -p "$T/policy.yaml" &&
    expect_ok "restore from hello" "${C[@]}" restore -p "$T/policy.yaml" --set latest --to "$T/restored"; then
    if diff -r "$APP/data" "$T/restored/data" >/dev/null; then
        pass "restored tree equals the original"
    else
        fail "restored tree differs:"
        diff -r "$APP/data" "$T/restored/data" 2>&1 | show
    fi
    assert_gt "$(find "$T/flat" -maxdepth 1 -name 'obj-*' | wc -l)" 0 "objects stored as obj-* files"
    assert_eq 0 "$(find "$T/flat" -maxdepth 1 -name '.hello-tmp-*' | wc -l)" "no temporary files left"
    expect_ok "verify --read-data on hello" "${C[@]}" verify -p "$T/policy.yaml" --read-data
else
    printf '%s\n' "$ERR" | show
fi

section "the testing kit, installed"
assert_exists "$PREFIX/include/coffer/testing.h" "coffer/testing.h installed"
expect_ok "pkg-config --libs coffer-testing" pkg-config --libs coffer-testing
# The conformance suite run against the example driver, from the install only.
cat >"$T/conform.c" <<'EOC'
#include <dlfcn.h>
#include <stdio.h>
#include <coffer/testing.h>
int main(int argc, char **argv)
{
    void *dl = argc > 2 ? dlopen(argv[1], RTLD_NOW) : NULL;
    coffer_plugin_init_fn init;
    if (!dl)
        return 99;
    *(void **)&init = dlsym(dl, COFFER_PLUGIN_ENTRY);
    if (!init)
        return 98;
    coffer_test_host *t = coffer_test_host_new(NULL);
    const coffer_plugin *p = init(coffer_test_host_table(t));
    coffer_config *cfg = coffer_test_config("dir", argv[2], NULL);
    coffer_test_config_defaults(cfg, p->options);
    int fails = coffer_test_storage_conformance(p, cfg, NULL, stdout);
    coffer_test_config_free(cfg);
    coffer_test_host_free(t);
    return fails;
}
EOC
# A sanitizer build installs a sanitized testing library: link the runner the same way.
san=()
if grep -q '^COFFER_SANITIZE:BOOL=ON' "$COFFER_BUILD/CMakeCache.txt"; then
    san=(-fsanitize=address,undefined)
fi
# shellcheck disable=SC2046
if expect_ok "build a conformance runner with pkg-config coffer-testing" \
    cc -std=c11 -D_GNU_SOURCE "${san[@]}" -o "$T/conform" "$T/conform.c" $(pkg-config --cflags --libs coffer-testing) -ldl; then
    mkdir -p "$T/conform-dir"
    expect_ok "hello passes the storage conformance suite" "$T/conform" "$SO" "$T/conform-dir"
    printf '%s\n' "$OUT" | tail -n 3 | show
    assert_contains "$OUT" "hello: 0 conformance failure(s)" "the suite reports no failure"
fi

section "the database example (csv_database), built against the install"
CSVEX=$COFFER_SRC/sdk/examples/csv_database
expect_ok "configure csv_database" cmake -S "$CSVEX" -B "$T/csv-build" || die "cannot configure csv_database"
expect_ok "reconfigure without PKG_CONFIG_PATH" env -u PKG_CONFIG_PATH cmake -S "$CSVEX" -B "$T/csv-build"
expect_ok "build csv_database" cmake --build "$T/csv-build"
CSVSO=$T/csv-build/csvdb.so
assert_exists "$CSVSO" "csvdb.so built"
assert_eq "coffer_plugin_init " "$(nm -D --defined-only "$CSVSO" | awk '{print $3}' | tr '\n' ' ')" "csvdb.so exports exactly coffer_plugin_init"
cp "$CSVSO" "$PLUGDIR/"
CAPP=$T/csvapp
mkdir -p "$CAPP/tables" "$CAPP/conf"
printf 'id,name\n1,ann\n2,bob\n3,cy\n' >"$CAPP/tables/users.csv"
printf 'id,total\n10,5\n' >"$CAPP/tables/orders.csv"
echo "setting=1" >"$CAPP/conf/app.conf"
cat >"$T/csv.yaml" <<EOP
version: 1
name: csv-sdk
root: $CAPP
targets:
  - name: repo
    location: $T/csvrepo
components:
  - name: conf
    type: files
    paths: [conf/]
  - name: tables
    type: database
    driver: csvdb
    dir: tables
EOP
C=("$PREFIX/bin/coffer" --plugin-dir "$PLUGDIR" --no-progress)
expect_ok "describe csvdb" "${C[@]}" plugins --describe csvdb
assert_match "$OUT" '^ +dir +path +required' "describe shows the dir option"
expect_ok "policy check" "${C[@]}" policy check "$T/csv.yaml"
if expect_ok "init" "${C[@]}" init -p "$T/csv.yaml" --encryption none &&
    expect_ok "backup" "${C[@]}" backup -p "$T/csv.yaml" &&
    expect_ok "sets --json" "${C[@]}" sets -p "$T/csv.yaml" --json; then
    assert_match "$OUT" '"rows.users": *"?3' "rows.users recorded as 3"
    assert_match "$OUT" '"rows.orders": *"?1' "rows.orders recorded as 1"
    expect_ok "restore" "${C[@]}" restore -p "$T/csv.yaml" --set latest --to "$T/csvrestored"
    if diff -r "$CAPP" "$T/csvrestored" >/dev/null; then
        pass "restored tables and files equal the original"
    else
        fail "restored tree differs:"
        diff -r "$CAPP" "$T/csvrestored" 2>&1 | show
    fi
    expect_ok "verify --read-data checks the tables" "${C[@]}" verify -p "$T/csv.yaml" --read-data
fi
sed -i 's|^    dir: tables$|    dir: ../elsewhere|' "$T/csv.yaml"
expect_rc 2 "policy check runs the driver's validate" "${C[@]}" policy check "$T/csv.yaml"
assert_contains "$ERR" "csv.yaml:14:5: components[1].dir: database driver 'csvdb'" "the error names file:line:col, key and driver"

finish
