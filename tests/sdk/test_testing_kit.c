/* The SDK's testing kit: the storage conformance suite passes on the local
 * driver and on the in-memory test driver, and catches a driver that
 * breaks a promise; the mock host and the in-memory dumps round-trip the
 * sqlite driver. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "coffer/testing.h"
#include "mem_storage.h"

extern const coffer_plugin *coffer_builtin_local(const coffer_host *host);
extern const coffer_plugin *coffer_builtin_sqlite(const coffer_host *host);

static char *fresh_dir(void)
{
    char tmpl[] = "/tmp/coffer-kit-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    return strdup(tmpl);
}

static void rmrf(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static const coffer_plugin *local_plugin(void)
{
    coffer_test_host *t = coffer_test_host_new(NULL);
    const coffer_plugin *p = coffer_builtin_local(coffer_test_host_table(t));
    coffer_test_host_free(t);
    return p;
}

static void local_driver_conforms(void **state)
{
    (void)state;
    char *dir = fresh_dir();
    char repo[600];
    snprintf(repo, sizeof repo, "%s/repo", dir);
    coffer_config *cfg = coffer_test_config("path", repo, "fsync", "false", NULL);
    coffer_test_config_defaults(cfg, local_plugin()->options);
    assert_int_equal(coffer_test_storage_conformance(local_plugin(), cfg, dir, stdout), 0);
    coffer_test_config_free(cfg);
    rmrf(dir);
    free(dir);
}

static void mem_driver_conforms(void **state)
{
    (void)state;
    coffer_config *cfg = coffer_test_config(NULL);
    assert_int_equal(coffer_test_storage_conformance(mem_storage_plugin(), cfg, NULL, stdout), 0);
    coffer_test_config_free(cfg);
}

/* A local driver that reports success for removing a missing key and
 * ignores IF_ABSENT: the suite must name both. */
static coffer_storage_ops broken_ops;
static coffer_plugin broken;
static coffer_status broken_remove(void *inst, const char *key)
{
    coffer_status st = local_plugin()->storage->remove(inst, key);
    return st == COFFER_ERR_NOT_FOUND ? COFFER_OK : st;
}
static coffer_status broken_writer_open(void *inst, const char *key, const coffer_write_opts *o,
                                        void **w)
{
    coffer_write_opts plain = *o;
    plain.flags &= ~COFFER_WRITE_IF_ABSENT;
    return local_plugin()->storage->writer_open(inst, key, &plain, w);
}

static void broken_driver_fails(void **state)
{
    (void)state;
    broken_ops = *local_plugin()->storage;
    broken_ops.remove = broken_remove;
    broken_ops.writer_open = broken_writer_open;
    broken = *local_plugin();
    broken.name = "broken";
    broken.storage = &broken_ops;
    char *dir = fresh_dir();
    coffer_config *cfg = coffer_test_config("path", dir, "fsync", "false", NULL);
    char out[600];
    snprintf(out, sizeof out, "%s.log", dir);
    FILE *f = fopen(out, "w+");
    assert_non_null(f);
    int fails = coffer_test_storage_conformance(&broken, cfg, NULL, f);
    rewind(f);
    char text[65536];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    unlink(out);
    assert_true(fails >= 2);
    assert_non_null(
        strstr(text, "FAIL - broken: removing a missing object returns ERR_NOT_FOUND: got OK"));
    assert_non_null(strstr(text, "FAIL - broken: IF_ABSENT"));
    coffer_test_config_free(cfg);
    rmrf(dir);
    free(dir);
}

static void mock_host_records(void **state)
{
    (void)state;
    coffer_test_host *t = coffer_test_host_new("/srv/app");
    const coffer_host *h = coffer_test_host_table(t);
    assert_int_equal(h->abi_minor, COFFER_ABI_MINOR);
    assert_string_equal(h->policy_root(coffer_test_hctx(t)), "/srv/app");
    h->log(coffer_test_hctx(t), COFFER_LOG_WARN, "disk %d%% full", 91);
    assert_true(coffer_test_log_contains(t, "warning: disk 91% full"));
    assert_int_equal(h->error(coffer_test_hctx(t), COFFER_ERR_AUTH, "refused for %s", "bob"),
                     COFFER_ERR_AUTH);
    assert_string_equal(coffer_test_last_error(t), "refused for bob");
    coffer_config *c = coffer_test_config("a", "1", "list", "x", "list", "y", "big", "64K", NULL);
    assert_string_equal(h->config_get(c, "a"), "1");
    assert_int_equal(h->config_list_len(c, "list"), 2);
    assert_string_equal(h->config_list_item(c, "list", 1), "y");
    assert_int_equal(h->config_get_int(c, "big", 0), 65536);
    assert_null(h->config_get(c, "missing"));
    const char *add[] = {"EXTRA=1", NULL};
    char **env = h->child_env(coffer_test_hctx(t), NULL, add);
    int found = 0;
    for (char **e = env; *e; e++)
        found |= strcmp(*e, "EXTRA=1") == 0;
    assert_true(found);
    h->child_env_free(env);
    coffer_test_config_free(c);
    coffer_test_host_free(t);
}

/* The sqlite driver through the kit: dump into memory, restore from it. */
static void sqlite_roundtrip_in_memory(void **state)
{
    (void)state;
    char *dir = fresh_dir();
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "sqlite3 '%s/app.db' 'create table t(x); insert into t values (1),(2),(3);'", dir);
    if (system(cmd) != 0) {
        rmrf(dir);
        free(dir);
        skip();
    }
    coffer_test_host *t = coffer_test_host_new(dir);
    const coffer_host *h = coffer_test_host_table(t);
    const coffer_plugin *p = coffer_builtin_sqlite(h);
    coffer_config *cfg = coffer_test_config("path", "app.db", NULL);
    coffer_test_config_defaults(cfg, p->options);
    void *inst;
    assert_int_equal(p->database->instance_new(h, coffer_test_hctx(t), cfg, &inst), COFFER_OK);
    coffer_test_dump *d = coffer_test_dump_new();
    assert_int_equal(p->database->dump(inst, coffer_test_dump_sink(d)), COFFER_OK);
    assert_true(coffer_test_dump_streams(d) >= 1);
    assert_string_equal(coffer_test_dump_meta(d, "rows.t"), "3");
    char out[600];
    snprintf(out, sizeof out, "%s/out", dir);
    assert_int_equal(mkdir(out, 0700), 0);
    coffer_restore_opts ro = {
        .struct_size = sizeof ro, .root = out, .create = 1, .final_root = "/srv/restored"};
    assert_int_equal(p->database->restore(inst, coffer_test_dump_source(d), &ro), COFFER_OK);
    snprintf(cmd, sizeof cmd, "%s/app.db", out);
    assert_int_equal(access(cmd, F_OK), 0);
    p->database->instance_free(inst);
    coffer_test_dump_free(d);
    coffer_test_config_free(cfg);
    coffer_test_host_free(t);
    rmrf(dir);
    free(dir);
}

/* validate (ABI 1.1) of the built-in drivers: each names the option at
 * fault, so policy check can point at its line. */
static void builtin_validate(void **state)
{
    (void)state;
    char *dir = fresh_dir();
    char file[600];
    snprintf(file, sizeof file, "%s/plain", dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    coffer_test_host *t = coffer_test_host_new(dir);
    const coffer_host *h = coffer_test_host_table(t);
    const coffer_storage_ops *lo = local_plugin()->storage;
    assert_true(lo->struct_size >= COFFER_HAS_MEMBER_SIZE(coffer_storage_ops, validate));
    const char *bad = NULL;
    coffer_config *c = coffer_test_config("path", "/srv/repo", "dir_mode", "0999", NULL);
    assert_int_equal(lo->validate(h, coffer_test_hctx(t), c, &bad), COFFER_ERR_INVALID);
    assert_string_equal(bad, "dir_mode");
    coffer_test_config_free(c);
    c = coffer_test_config("path", "plain", NULL); /* relative: resolves under the root */
    assert_int_equal(lo->validate(h, coffer_test_hctx(t), c, &bad), COFFER_ERR_INVALID);
    assert_string_equal(bad, "path");
    assert_non_null(strstr(coffer_test_last_error(t), "is not a directory"));
    coffer_test_config_free(c);
    c = coffer_test_config("path", dir, NULL);
    assert_int_equal(lo->validate(h, coffer_test_hctx(t), c, &bad), COFFER_ERR_INVALID);
    assert_non_null(strstr(coffer_test_last_error(t), "is the policy root"));
    coffer_test_config_free(c);
    c = coffer_test_config("path", "/srv/elsewhere", "dir_mode", "0750", NULL);
    assert_int_equal(lo->validate(h, coffer_test_hctx(t), c, &bad), COFFER_OK);
    assert_null(bad);
    coffer_test_config_free(c);

    const coffer_database_ops *so = coffer_builtin_sqlite(h)->database;
    c = coffer_test_config("path", ".", NULL); /* the root: a directory */
    assert_int_equal(so->validate(h, coffer_test_hctx(t), c, &bad), COFFER_ERR_INVALID);
    assert_string_equal(bad, "path");
    assert_non_null(strstr(coffer_test_last_error(t), "is a directory"));
    coffer_test_config_free(c);
    c = coffer_test_config("path", "app.db", "busy_timeout", "-5", NULL);
    assert_int_equal(so->validate(h, coffer_test_hctx(t), c, &bad), COFFER_ERR_INVALID);
    assert_string_equal(bad, "busy_timeout");
    coffer_test_config_free(c);
    c = coffer_test_config("path", "data/app.db", NULL);
    assert_int_equal(so->validate(h, coffer_test_hctx(t), c, &bad), COFFER_OK);
    coffer_test_config_free(c);
    coffer_test_host_free(t);
    rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(local_driver_conforms),      cmocka_unit_test(mem_driver_conforms),
        cmocka_unit_test(broken_driver_fails),        cmocka_unit_test(mock_host_records),
        cmocka_unit_test(sqlite_roundtrip_in_memory), cmocka_unit_test(builtin_validate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
