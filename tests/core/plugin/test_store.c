/* core/plugin/store.c: the core's storage wrapper, over the in-memory
 * driver (with fault injection) and over the built-in local driver in a
 * temporary directory. Errors must name the store's label and the key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mem_storage.h"
#include "plugin/config.h"
#include "plugin/host.h"
#include "plugin/store.h"
#include "plugin_test.h"
#include "util/util.h"

extern const coffer_plugin *coffer_builtin_local(const coffer_host *host);

typedef struct fx {
    char dir[256];
    coffer_config *cfg;
    cf_store *st;
    mem_storage *ms; /* NULL for the local driver */
} fx;

static int setup_mem(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (pt_mkdtemp(f->dir, sizeof f->dir) != 0)
        return -1;
    f->st = mem_store_new("target 'mem'", &f->ms);
    *state = f;
    return 0;
}

static int setup_local(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (pt_mkdtemp(f->dir, sizeof f->dir) != 0)
        return -1;
    char repo[400];
    snprintf(repo, sizeof repo, "%s/repo", f->dir);
    f->cfg = cf_config_new();
    cf_config_set(f->cfg, "path", repo, 0, 0);
    cf_config_set(f->cfg, "fsync", "false", 0, 0);
    const coffer_plugin *p = coffer_builtin_local(cf_host_table());
    if (cf_store_new(p, f->cfg, "target 'disk'", f->dir, &f->st) != COFFER_OK)
        return -1;
    if (cf_store_prepare(f->st, 1) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (f->ms)
        assert_int_equal(mem_storage_open_writers(f->ms), 0);
    cf_store_free(f->st);
    cf_config_free(f->cfg);
    pt_rmrf(f->dir);
    free(f);
    return 0;
}

static const char *label(fx *f)
{
    return f->ms ? "target 'mem'" : "target 'disk'";
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

typedef struct keys {
    char *v[64];
    uint64_t size[64];
    size_t n;
} keys;

static int collect(void *ud, const char *key, const coffer_object_stat *st)
{
    keys *k = ud;
    if (k->n < 64) {
        k->size[k->n] = st ? st->size : 0;
        k->v[k->n++] = cf_strdup(key);
    }
    return 0;
}

static int stop_after_one(void *ud, const char *key, const coffer_object_stat *st)
{
    (void)key;
    (void)st;
    (*(int *)ud)++;
    return 1;
}

static int has_key(const keys *k, const char *key)
{
    for (size_t i = 0; i < k->n; i++)
        if (strcmp(k->v[i], key) == 0)
            return 1;
    return 0;
}

static void keys_free(keys *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->v[i]);
    k->n = 0;
}

static void test_put_get_list_remove(void **state)
{
    fx *f = *state;
    size_t big_n = 300000; /* several refills of get's 64 KiB steps */
    uint8_t *big = malloc(big_n);
    fill(big, big_n, 7);
    assert_int_equal(cf_store_put(f->st, "data/ab/pack1", big, big_n, COFFER_WRITE_PRIVATE), 0);
    assert_int_equal(cf_store_put(f->st, "sets/one", "hello", 5, 0), 0);
    assert_int_equal(cf_store_put(f->st, "sets/empty", "", 0, 0), 0);
    assert_int_equal(cf_store_put(f->st, "config", "cfg", 3, COFFER_WRITE_IF_ABSENT), 0);

    cf_buf b = {0};
    assert_int_equal(cf_store_get(f->st, "data/ab/pack1", &b), 0);
    assert_int_equal(b.len, big_n);
    assert_memory_equal(b.data, big, big_n);
    /* The buffer is reused: len restarts. */
    assert_int_equal(cf_store_get(f->st, "sets/one", &b), 0);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "hello", 5);
    assert_int_equal(cf_store_get(f->st, "sets/empty", &b), 0);
    assert_int_equal(b.len, 0);

    /* Ranges: inside, across the 64 KiB steps, to the end, past the end. */
    assert_int_equal(cf_store_get_range(f->st, "data/ab/pack1", 5, 10, &b), 0);
    assert_int_equal(b.len, 10);
    assert_memory_equal(b.data, big + 5, 10);
    assert_int_equal(cf_store_get_range(f->st, "data/ab/pack1", 1000, 200000, &b), 0);
    assert_int_equal(b.len, 200000);
    assert_memory_equal(b.data, big + 1000, 200000);
    assert_int_equal(cf_store_get_range(f->st, "data/ab/pack1", 65536, 65536, &b), 0);
    assert_int_equal(b.len, 65536);
    assert_memory_equal(b.data, big + 65536, 65536);
    assert_int_equal(cf_store_get_range(f->st, "data/ab/pack1", big_n - 7, 0, &b), 0);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, big + big_n - 7, 7);
    assert_int_equal(cf_store_get_range(f->st, "data/ab/pack1", big_n - 7, 100, &b), 0);
    assert_int_equal(b.len, 7);

    coffer_object_stat os;
    assert_int_equal(cf_store_stat(f->st, "data/ab/pack1", &os), 0);
    assert_int_equal(os.size, big_n);
    assert_int_equal(os.struct_size, sizeof os);

    keys k = {0};
    assert_int_equal(cf_store_list(f->st, "sets/", collect, &k), 0);
    assert_int_equal(k.n, 2);
    assert_true(has_key(&k, "sets/one"));
    assert_true(has_key(&k, "sets/empty"));
    keys_free(&k);
    assert_int_equal(cf_store_list(f->st, "", collect, &k), 0);
    assert_int_equal(k.n, 4);
    assert_true(has_key(&k, "data/ab/pack1"));
    assert_true(has_key(&k, "config"));
    for (size_t i = 0; i < k.n; i++)
        if (strcmp(k.v[i], "data/ab/pack1") == 0)
            assert_int_equal(k.size[i], big_n);
    keys_free(&k);
    int calls = 0;
    assert_int_equal(cf_store_list(f->st, "", stop_after_one, &calls), 0);
    assert_int_equal(calls, 1);

    /* Replace an object. */
    assert_int_equal(cf_store_put(f->st, "sets/one", "bye", 3, 0), 0);
    assert_int_equal(cf_store_get(f->st, "sets/one", &b), 0);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "bye", 3);

    assert_int_equal(cf_store_remove(f->st, "sets/one"), 0);
    assert_int_equal(cf_store_list(f->st, "sets/", collect, &k), 0);
    assert_int_equal(k.n, 1);
    assert_string_equal(k.v[0], "sets/empty");
    keys_free(&k);
    cf_buf_free(&b);
    free(big);
}

static void test_errors_name_label_and_key(void **state)
{
    fx *f = *state;
    cf_buf b = {0};
    assert_int_equal(cf_store_get(f->st, "sets/missing", &b), COFFER_ERR_NOT_FOUND);
    assert_error_has(label(f));
    assert_error_has("cannot read sets/missing");
    /* "<label>: <what>: <driver message>" */
    char want[200];
    snprintf(want, sizeof want, "%s: cannot read sets/missing: ", label(f));
    assert_true(strncmp(cf_error(), want, strlen(want)) == 0);

    assert_int_equal(cf_store_get_range(f->st, "data/zz/nope", 10, 10, &b), COFFER_ERR_NOT_FOUND);
    assert_error_has(label(f));
    assert_error_has("data/zz/nope");

    coffer_object_stat os;
    assert_int_equal(cf_store_stat(f->st, "index/x", &os), COFFER_ERR_NOT_FOUND);
    assert_error_has(label(f));
    assert_error_has("cannot stat index/x");

    assert_int_equal(cf_store_remove(f->st, "index/gone"), COFFER_ERR_NOT_FOUND);
    assert_error_has(label(f));
    assert_error_has("cannot remove index/gone");

    /* Conditional create loses: EXISTS, naming the key. */
    assert_int_equal(cf_store_put(f->st, "config", "a", 1, COFFER_WRITE_IF_ABSENT), 0);
    int rc = cf_store_put(f->st, "config", "b", 1, COFFER_WRITE_IF_ABSENT);
    assert_int_equal(rc, COFFER_ERR_EXISTS);
    assert_error_has(label(f));
    assert_error_has("config");
    assert_int_equal(cf_store_get(f->st, "config", &b), 0);
    assert_memory_equal(b.data, "a", 1); /* the first one stays */

    /* Keys the ABI forbids. */
    assert_int_not_equal(cf_store_put(f->st, "../escape", "x", 1, 0), 0);
    assert_error_has(label(f));
    assert_error_has("../escape");
    assert_int_not_equal(cf_store_put(f->st, "/abs", "x", 1, 0), 0);
    assert_error_has("/abs");
    cf_buf_free(&b);
}

/* Messages without a key have no stray blank before the colon. */
static void test_error_format_without_key(void **state)
{
    fx *f = *state;
    if (!f->ms)
        skip();
    mem_storage_fail_writes_after(f->ms, 10);
    void *w;
    assert_int_equal(cf_store_writer_open(f->st, "data/aa/p", 0, 0, &w), 0);
    assert_int_equal(cf_store_write(f->st, w, "0123456789abcdef", 16), COFFER_ERR_NO_SPACE);
    assert_string_equal(cf_error(),
                        "target 'mem': write failed: data/aa/p: no space left on device (injected)");
    cf_store_abort(f->st, w);
}

static void test_faults_mem(void **state)
{
    fx *f = *state;
    if (!f->ms)
        skip();
    /* Full disk: the put fails with NO_SPACE, names the key, leaves nothing. */
    mem_storage_fail_writes_after(f->ms, 100);
    uint8_t buf[1000];
    fill(buf, sizeof buf, 1);
    int rc = cf_store_put(f->st, "data/aa/full", buf, sizeof buf, 0);
    assert_int_equal(rc, COFFER_ERR_NO_SPACE);
    assert_error_has("target 'mem'");
    assert_error_has("data/aa/full");
    assert_false(mem_storage_exists(f->ms, "data/aa/full"));
    assert_int_equal(mem_storage_open_writers(f->ms), 0);
    mem_storage_fail_writes_after(f->ms, UINT64_MAX);
    assert_int_equal(cf_store_put(f->st, "data/aa/full", buf, sizeof buf, COFFER_WRITE_PRIVATE), 0);
    assert_int_equal(mem_storage_flags(f->ms, "data/aa/full"), COFFER_WRITE_PRIVATE);

    /* Aborted writers publish nothing. */
    void *w;
    assert_int_equal(cf_store_writer_open(f->st, "sets/aborted", 0, 0, &w), 0);
    assert_int_equal(cf_store_write(f->st, w, "abc", 3), 0);
    assert_false(mem_storage_exists(f->ms, "sets/aborted")); /* not before commit */
    cf_store_abort(f->st, w);
    cf_store_abort(f->st, NULL);
    assert_false(mem_storage_exists(f->ms, "sets/aborted"));

    /* Streaming reads loop over the driver's short reads. */
    void *r;
    assert_int_equal(cf_store_reader_open(f->st, "data/aa/full", 100, 0, &r), 0);
    uint8_t got[2000];
    size_t n = 0;
    assert_int_equal(cf_store_read(f->st, r, got, sizeof got, &n), 0);
    assert_int_equal(n, 900);
    assert_memory_equal(got, buf + 100, 900);
    assert_int_equal(cf_store_read(f->st, r, got, sizeof got, &n), 0);
    assert_int_equal(n, 0);
    cf_store_reader_close(f->st, r);
    cf_store_reader_close(f->st, NULL);

    /* Bit rot is not the wrapper's business: bytes come back as stored. */
    assert_int_equal(mem_storage_flip(f->ms, "data/aa/full", 3), 0);
    cf_buf b = {0};
    assert_int_equal(cf_store_get(f->st, "data/aa/full", &b), 0);
    assert_int_equal(b.data[3], (uint8_t)(buf[3] ^ 0xff));
    cf_buf_free(&b);
    assert_true(f->st->caps & COFFER_CAP_ATOMIC_PUBLISH);
}

static void test_open_failure_names_label(void **state)
{
    fx *f = *state;
    /* The local driver without its path option refuses to open. */
    coffer_config *c = cf_config_new();
    cf_store *st = (cf_store *)&st;
    int rc = cf_store_new(coffer_builtin_local(cf_host_table()), c, "target 'broken'", f->dir, &st);
    assert_int_not_equal(rc, COFFER_OK);
    assert_error_has("target 'broken': cannot open");
    cf_config_free(c);
}

/* An append-only store: cf_store_remove writes tombstones (deleted/KEY)
 * and the key is gone for listings, stat and reads while its bytes stay;
 * a maintenance store removes for real; locks come and go. */
static void test_tombstones(void **state)
{
    fx *f = *state;
    mem_storage_set_append_only(f->ms, 1);
    assert_int_equal(cf_store_prepare(f->st, 1), 0);
    assert_true(cf_store_append_only(f->st));
    assert_int_equal(cf_store_put(f->st, "sets/a", "A", 1, 0), 0);
    assert_int_equal(cf_store_put(f->st, "sets/b", "B", 1, 0), 0);
    assert_int_equal(cf_store_put(f->st, "locks/l", "L", 1, COFFER_WRITE_IF_ABSENT), 0);
    assert_int_equal(cf_store_remove(f->st, "sets/a"), 0);
    assert_true(mem_storage_exists(f->ms, "sets/a"));      /* the bytes stay */
    assert_true(mem_storage_exists(f->ms, "deleted/sets/a")); /* the tombstone */
    keys k = {0};
    assert_int_equal(cf_store_list(f->st, "sets/", collect, &k), 0);
    assert_int_equal(k.n, 1);
    assert_string_equal(k.v[0], "sets/b");
    keys_free(&k);
    coffer_object_stat os;
    assert_int_equal(cf_store_stat(f->st, "sets/a", &os), COFFER_ERR_NOT_FOUND);
    cf_buf b = {0};
    assert_int_equal(cf_store_get(f->st, "sets/a", &b), COFFER_ERR_NOT_FOUND);
    assert_int_equal(cf_store_remove(f->st, "sets/a"), COFFER_ERR_NOT_FOUND);
    /* the store itself refuses removal and replacement */
    assert_int_equal(f->st->ops->remove(f->st->inst, "sets/b"), COFFER_ERR_LOCKED);
    assert_int_equal(cf_store_put(f->st, "sets/b", "X", 1, 0), COFFER_ERR_LOCKED);
    /* locks are removed for real */
    assert_int_equal(cf_store_remove(f->st, "locks/l"), 0);
    assert_false(mem_storage_exists(f->ms, "locks/l"));
    /* a fresh store sees the tombstones written before */
    cf_store *again = f->st;
    again->dead_loaded = 0;
    assert_int_equal(cf_store_stat(again, "sets/a", &os), COFFER_ERR_NOT_FOUND);
    /* maintenance: removal happens */
    f->st->maintenance = 1;
    assert_int_equal(cf_store_remove(f->st, "sets/b"), 0);
    assert_false(mem_storage_exists(f->ms, "sets/b"));
    assert_int_equal(cf_store_remove_version(f->st, "sets/a", NULL, COFFER_REMOVE_MAINTENANCE), 0);
    assert_false(mem_storage_exists(f->ms, "sets/a"));
    cf_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get_list_remove, setup_mem, teardown),
        cmocka_unit_test_setup_teardown(test_put_get_list_remove, setup_local, teardown),
        cmocka_unit_test_setup_teardown(test_errors_name_label_and_key, setup_mem, teardown),
        cmocka_unit_test_setup_teardown(test_errors_name_label_and_key, setup_local, teardown),
        cmocka_unit_test_setup_teardown(test_error_format_without_key, setup_mem, teardown),
        cmocka_unit_test_setup_teardown(test_faults_mem, setup_mem, teardown),
        cmocka_unit_test_setup_teardown(test_tombstones, setup_mem, teardown),
        cmocka_unit_test_setup_teardown(test_open_failure_names_label, setup_local, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
