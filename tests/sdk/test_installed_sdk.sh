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

finish
