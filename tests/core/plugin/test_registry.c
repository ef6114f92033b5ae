/* core/plugin/registry.c: built-in drivers, loading drivers from files and
 * directories, refusals (foreign ABI, not a library, not a driver), and
 * the messages "no driver named X" gives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dlfcn.h>

#include "plugin/host.h"
#include "plugin/registry.h"
#include "plugin_test.h"
#include "util/util.h"

#ifndef BAD_ABI_SO
#error "BAD_ABI_SO must name the bad-ABI test driver"
#endif
#ifndef PLUGIN_DIR
#error "PLUGIN_DIR must name the directory of the built loadable drivers"
#endif

typedef struct fx {
    char dir[256];
    char plugins[512]; /* the build's plugin directory */
    int old_level;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (pt_mkdtemp(f->dir, sizeof f->dir) != 0)
        return -1;
    const char *env = getenv("COFFER_PLUGIN_BUILD_DIR");
    snprintf(f->plugins, sizeof f->plugins, "%s", env && *env ? env : PLUGIN_DIR);
    f->old_level = cf_log_level_get();
    cf_log_set_level(CF_LOG_WARN);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    cf_registry_unload();
    cf_log_set_level(f->old_level);
    pt_rmrf(f->dir);
    free(f);
    return 0;
}

static int copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    if (!in)
        return -1;
    FILE *out = fopen(to, "wb");
    if (!out) {
        fclose(in);
        return -1;
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        fwrite(buf, 1, n, out);
    fclose(in);
    return fclose(out);
}

static void test_builtins(void **state)
{
    (void)state;
    assert_int_equal(cf_registry_count(), 0);
    cf_registry_load(NULL, 0);
    assert_int_equal(cf_registry_count(), 2);
    assert_int_equal(cf_registry_failure_count(), 0);

    const cf_driver *local = cf_registry_find(COFFER_KIND_STORAGE, "local");
    assert_non_null(local);
    assert_null(local->dl);
    assert_null(local->path);
    assert_string_equal(local->desc.name, "local");
    assert_int_equal(local->desc.kind, COFFER_KIND_STORAGE);
    assert_int_equal(local->desc.abi_major, COFFER_ABI_MAJOR);
    assert_ptr_equal(local->desc.storage, &local->storage); /* points at the registry's copy */
    assert_null(local->desc.database);
    assert_non_null(local->storage.writer_open);

    const cf_driver *sqlite = cf_registry_find(COFFER_KIND_DATABASE, "sqlite");
    assert_non_null(sqlite);
    assert_null(sqlite->dl);
    assert_ptr_equal(sqlite->desc.database, &sqlite->database);
    assert_null(sqlite->desc.storage);
    assert_non_null(sqlite->database.dump);

    /* Kinds are separate namespaces. */
    assert_null(cf_registry_find(COFFER_KIND_DATABASE, "local"));
    assert_null(cf_registry_find(COFFER_KIND_STORAGE, "sqlite"));
    assert_ptr_equal(cf_registry_find_any("sqlite"), sqlite);
    assert_ptr_equal(cf_registry_find_any("local"), local);
    assert_null(cf_registry_find_any("nope"));
    assert_error_has("no driver named 'nope'");

    assert_ptr_equal(cf_registry_at(0), local);
    assert_ptr_equal(cf_registry_at(1), sqlite);
    assert_null(cf_registry_at(2));
    assert_null(cf_registry_failure_at(0));

    /* Option tables for the policy checker. */
    const coffer_option *o = cf_registry_options(NULL, COFFER_KIND_STORAGE, "local");
    assert_non_null(o);
    int has_path = 0;
    for (; o->name; o++)
        if (strcmp(o->name, "path") == 0)
            has_path = o->required;
    assert_true(has_path);
    assert_null(cf_registry_options(NULL, COFFER_KIND_DATABASE, "oracle"));
    assert_error_has("no database driver named 'oracle'");

    assert_string_equal(cf_kind_name(COFFER_KIND_STORAGE), "storage");
    assert_string_equal(cf_kind_name(COFFER_KIND_DATABASE), "database");
    assert_string_equal(cf_kind_name((coffer_driver_kind)42), "unknown");

    /* Loading built-ins again registers nothing twice. */
    cf_registry_load(NULL, 0);
    assert_int_equal(cf_registry_count(), 2);
    cf_registry_unload();
    assert_int_equal(cf_registry_count(), 0);
    assert_null(cf_registry_find(COFFER_KIND_STORAGE, "local"));
    assert_error_has("none");
}

static void test_bad_abi_refused(void **state)
{
    (void)state;
    cf_registry_load(NULL, 0);
    assert_int_equal(cf_registry_load_file(BAD_ABI_SO), -1);
    assert_error_has(BAD_ABI_SO);
    assert_error_has("99.7");
    char provides[32];
    snprintf(provides, sizeof provides, "%d.%d", COFFER_ABI_MAJOR, COFFER_ABI_MINOR);
    assert_error_has(provides);
    assert_error_has("rebuild");
    /* Remembered, and not registered. */
    assert_int_equal(cf_registry_count(), 2);
    assert_int_equal(cf_registry_failure_count(), 1);
    const cf_load_failure *lf = cf_registry_failure_at(0);
    assert_string_equal(lf->path, BAD_ABI_SO);
    assert_has(lf->reason, "99.7");
    assert_null(cf_registry_find(COFFER_KIND_STORAGE, "badabi"));
    /* "no driver" lists what is there and why badabi is not. */
    assert_error_has("no storage driver named 'badabi'; available: local");
    assert_error_has("not loaded: ");
    assert_error_has("99.7");
}

static void test_garbage_file_refused(void **state)
{
    fx *f = *state;
    char path[400];
    snprintf(path, sizeof path, "%s/junk.so", f->dir);
    const char junk[] = "this is not an ELF shared object, just text\n";
    assert_int_equal(pt_write(path, junk, sizeof junk - 1), 0);
    /* What the dynamic loader says about it. */
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    assert_null(dl);
    char dlerr[1024];
    snprintf(dlerr, sizeof dlerr, "%s", dlerror());

    assert_int_equal(cf_registry_load_file(path), -1);
    assert_error_has(path);
    assert_error_has("cannot load");
    assert_error_has(dlerr);
    assert_int_equal(cf_registry_failure_count(), 1);
    assert_has(cf_registry_failure_at(0)->reason, dlerr);

    /* A file that does not exist. */
    snprintf(path, sizeof path, "%s/missing.so", f->dir);
    assert_int_equal(cf_registry_load_file(path), -1);
    assert_error_has(path);
    assert_error_has("No such file");

    /* A real library that is not a driver. */
    assert_int_equal(cf_registry_load_file("libm.so.6"), -1);
    assert_error_has("libm.so.6: not a coffer driver (no coffer_plugin_init symbol)");
    assert_int_equal(cf_registry_failure_count(), 3);
    assert_int_equal(cf_registry_count(), 0);
}

static void test_plugin_dir_replaces_builtins(void **state)
{
    fx *f = *state;
    char local_so[700], sqlite_so[700];
    snprintf(local_so, sizeof local_so, "%s/storage_local.so", f->plugins);
    snprintf(sqlite_so, sizeof sqlite_so, "%s/db_sqlite.so", f->plugins);
    assert_true(pt_exists(local_so));
    assert_true(pt_exists(sqlite_so));

    /* Only the two drivers we know, in a private directory (the build's
     * plugin directory may hold drivers of other engineers' work). */
    char pdir[400], a[800], b[800], txt[800];
    snprintf(pdir, sizeof pdir, "%s/plugins", f->dir);
    assert_int_equal(mkdir(pdir, 0755), 0);
    snprintf(a, sizeof a, "%s/storage_local.so", pdir);
    snprintf(b, sizeof b, "%s/db_sqlite.so", pdir);
    snprintf(txt, sizeof txt, "%s/README.txt", pdir);
    assert_int_equal(copy_file(local_so, a), 0);
    assert_int_equal(copy_file(sqlite_so, b), 0);
    assert_int_equal(pt_write(txt, "not a driver", 12), 0); /* not *.so: ignored */

    const char *dirs[] = {pdir, "/nonexistent/coffer/plugins"}; /* a missing dir is skipped */
    cf_registry_load(dirs, 2);
    assert_int_equal(cf_registry_count(), 2);
    assert_int_equal(cf_registry_failure_count(), 0);
    const cf_driver *local = cf_registry_find(COFFER_KIND_STORAGE, "local");
    const cf_driver *sqlite = cf_registry_find(COFFER_KIND_DATABASE, "sqlite");
    assert_non_null(local);
    assert_non_null(sqlite);
    assert_non_null(local->dl);
    assert_non_null(sqlite->dl);
    assert_string_equal(local->path, a);
    assert_string_equal(sqlite->path, b);
    assert_ptr_equal(local->desc.storage, &local->storage);
    /* The loadable copy's code, not the built-in's. */
    extern const coffer_plugin *coffer_builtin_local(const coffer_host *host);
    assert_ptr_not_equal((void *)local->storage.writer_open,
                         (void *)coffer_builtin_local(cf_host_table())->storage->writer_open);

    /* A second copy of the same driver is ignored: the first one wins. */
    char again[800];
    snprintf(again, sizeof again, "%s/again.so", f->dir);
    assert_int_equal(copy_file(local_so, again), 0);
    assert_int_equal(cf_registry_load_file(again), 0);
    assert_int_equal(cf_registry_count(), 2);
    assert_string_equal(cf_registry_find(COFFER_KIND_STORAGE, "local")->path, a);
}

/* A plugin directory without drivers: built-ins only, no failures. */
static void test_empty_plugin_dir(void **state)
{
    fx *f = *state;
    char pdir[400], txt[800];
    snprintf(pdir, sizeof pdir, "%s/empty", f->dir);
    assert_int_equal(mkdir(pdir, 0755), 0);
    const char *dirs[] = {pdir};
    cf_registry_load(dirs, 1);
    assert_int_equal(cf_registry_count(), 2);
    assert_int_equal(cf_registry_failure_count(), 0);
    cf_registry_unload();
    snprintf(txt, sizeof txt, "%s/notes.txt", pdir);
    assert_int_equal(pt_write(txt, "x", 1), 0);
    cf_registry_load(dirs, 1);
    assert_int_equal(cf_registry_count(), 2);
    assert_int_equal(cf_registry_failure_count(), 0);
}

static void test_find_unknown_lists_available_and_failures(void **state)
{
    fx *f = *state;
    char pdir[400], bad[800], junk[800];
    snprintf(pdir, sizeof pdir, "%s/plugins", f->dir);
    assert_int_equal(mkdir(pdir, 0755), 0);
    snprintf(bad, sizeof bad, "%s/a_bad_abi.so", pdir);
    snprintf(junk, sizeof junk, "%s/b_junk.so", pdir);
    assert_int_equal(copy_file(BAD_ABI_SO, bad), 0);
    assert_int_equal(pt_write(junk, "garbage", 7), 0);
    const char *dirs[] = {pdir};
    cf_registry_load(dirs, 1); /* never fails as a whole */
    assert_int_equal(cf_registry_count(), 2);
    assert_int_equal(cf_registry_failure_count(), 2);
    /* Files load in name order. */
    assert_string_equal(cf_registry_failure_at(0)->path, bad);
    assert_string_equal(cf_registry_failure_at(1)->path, junk);

    assert_null(cf_registry_find(COFFER_KIND_DATABASE, "postgres"));
    assert_error_has("no database driver named 'postgres'; available: sqlite");
    assert_error_has("not loaded: ");
    assert_error_has(bad);
    assert_error_has("99.7");
    assert_error_has(junk);
    assert_error_has("cannot load");
    assert_null(cf_registry_find(COFFER_KIND_STORAGE, "s3"));
    assert_error_has("no storage driver named 's3'; available: local;");

    /* unload forgets failures too */
    cf_registry_unload();
    assert_int_equal(cf_registry_failure_count(), 0);
    assert_null(cf_registry_find(COFFER_KIND_STORAGE, "s3"));
    assert_string_equal(cf_error(), "no storage driver named 's3'; available: none");
}

int main(void)
{
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_builtins),
        T(test_bad_abi_refused),
        T(test_garbage_file_refused),
        T(test_plugin_dir_replaces_builtins),
        T(test_empty_plugin_dir),
        T(test_find_unknown_lists_available_and_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
