/* Repository: init/open, chunk put/get (threads, dedup), flush, abort,
 * rebuild, disk full. */
#include "repo_test.h"

#include <jansson.h>
#include <pthread.h>
#include <zstd.h>

#include "repo/repo_int.h"

static void make_chunk(cf_repo *r, uint8_t *buf, size_t len, uint64_t seed, cf_id *id)
{
    if (seed & 1)
        fill_text(buf, len, seed);
    else
        fill_random(buf, len, seed);
    cf_repo_hash(r, buf, len, id);
}

static size_t chunk_len(uint64_t seed)
{
    return 1 + (size_t)(seed * 2654435761u % 40000);
}

/* Every object in the store was written with COFFER_WRITE_PRIVATE. */
static void assert_all_private(mem_storage *ms)
{
    for (size_t i = 0;; i++) {
        char *k = mem_storage_key(ms, "", i);
        if (!k)
            break;
        if (!(mem_storage_flags(ms, k) & COFFER_WRITE_PRIVATE)) {
            print_error("%s is not private\n", k);
            fail();
        }
        free(k);
    }
}

static void test_init_open(void **state)
{
    (void)state;
    mem_storage *ms;
    cf_store *st = mem_store_new("mem", &ms);
    cf_repo *r;
    assert_int_equal(cf_repo_open(st, &r), -1); /* nothing there */
    assert_error_has("mem: no repository here (object 'config' not found)");

    assert_int_equal(cf_repo_init(st, NULL), 0);
    assert_int_equal(cf_repo_init(st, NULL), -1);
    assert_error_has("already exists");
    assert_int_equal(mem_storage_flags(ms, "config"), COFFER_WRITE_IF_ABSENT | COFFER_WRITE_PRIVATE);

    assert_int_equal(cf_repo_open(st, &r), 0);
    const cf_cdc_params *c = cf_repo_cdc(r);
    assert_int_equal(c->min_size, 512 * 1024);
    assert_int_equal(c->avg_size, 1024 * 1024);
    assert_int_equal(c->max_size, 8 * 1024 * 1024);
    assert_true(c->seed != 0); /* random */
    assert_int_equal(strlen(cf_repo_id(r)), 64);

    /* The config body is plain JSON between the 8-byte header and the
     * 32-byte trailer, readable by anyone. */
    size_t len;
    uint8_t *obj = mem_storage_get(ms, "config", &len);
    assert_memory_equal(obj, "COFR\x01\x01\x00\x00", 8);
    json_error_t je;
    json_t *j = json_loadb((const char *)obj + 8, len - 40, 0, &je);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "format")), 1);
    assert_string_equal(json_string_value(json_object_get(j, "id")), cf_repo_id(r));
    assert_string_equal(json_string_value(json_object_get(j, "hash")), "sha256");
    assert_string_equal(json_string_value(json_object_get(j, "encryption")), "none");
    assert_int_equal(json_integer_value(json_object_get(j, "pack_size")), 16 << 20);
    json_t *comp = json_object_get(j, "compression");
    assert_string_equal(json_string_value(json_object_get(comp, "algorithm")), "zstd");
    assert_int_equal(json_integer_value(json_object_get(comp, "level")), 3);
    char seed[17];
    snprintf(seed, sizeof seed, "%016llx", (unsigned long long)c->seed);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "chunker"), "seed")),
                        seed);
    json_decref(j);
    free(obj);
    cf_repo_close(r);

    /* parameters are validated before anything is written */
    mem_storage *ms2;
    cf_store *st2 = mem_store_new("mem2", &ms2);
    cf_repo_params bad = {.pack_size = 100};
    assert_int_equal(cf_repo_init(st2, &bad), -1);
    assert_error_has("pack size");
    bad = (cf_repo_params){.cdc = {.avg_size = 3000}};
    assert_int_equal(cf_repo_init(st2, &bad), -1);
    assert_int_equal(mem_storage_count(ms2, ""), 0);
    cf_store_free(st2);
    cf_store_free(st);
}

typedef struct worker {
    cf_repo *r;
    uint64_t first, count;
    int rc;
    char err[256];
} worker;

static void *put_worker(void *arg)
{
    worker *w = arg;
    uint8_t *buf = malloc(40000);
    for (uint64_t s = w->first; s < w->first + w->count && w->rc == 0; s++) {
        cf_id id;
        size_t len = chunk_len(s);
        make_chunk(w->r, buf, len, s, &id);
        w->rc = cf_repo_put_chunk(w->r, &id, buf, len, NULL);
        if (w->rc)
            snprintf(w->err, sizeof w->err, "%s", cf_error());
    }
    free(buf);
    return NULL;
}

static void run_workers(cf_repo *r, worker *w, int n)
{
    pthread_t t[8];
    for (int i = 0; i < n; i++) {
        w[i].r = r;
        pthread_create(&t[i], NULL, put_worker, &w[i]);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        if (w[i].rc)
            print_error("worker %d: %s\n", i, w[i].err);
        assert_int_equal(w[i].rc, 0);
    }
}

static void check_chunks(cf_repo *r, uint64_t first, uint64_t count)
{
    uint8_t *buf = malloc(40000);
    cf_buf out = {0};
    for (uint64_t s = first; s < first + count; s++) {
        cf_id id;
        size_t len = chunk_len(s);
        make_chunk(r, buf, len, s, &id);
        assert_true(cf_repo_has(r, &id));
        assert_int_equal(cf_repo_chunk_size(r, &id), len);
        if (cf_repo_get_chunk(r, &id, &out) != 0) {
            print_error("get %llu: %s\n", (unsigned long long)s, cf_error());
            fail();
        }
        assert_int_equal(out.len, len);
        assert_memory_equal(out.data, buf, len);
    }
    cf_buf_free(&out);
    free(buf);
}

/* Two threads, distinct chunks, small packs: many packs written
 * concurrently, everything readable after flush and after reopen. */
static void test_threads_round_trip(void **state)
{
    (void)state;
    cf_store *st;
    mem_storage *ms;
    cf_repo *r = new_repo(&st, &ms, 256 * 1024);
    assert_non_null(r);
    worker w[2] = {{.first = 1000, .count = 300}, {.first = 2000, .count = 300}};
    run_workers(r, w, 2);
    assert_int_equal(cf_repo_flush(r), 0);
    cf_repo_stats s;
    cf_repo_get_stats(r, &s);
    assert_int_equal(s.chunks_new, 600);
    assert_int_equal(s.chunks_dup, 0);
    assert_true(s.packs_written > 4);
    assert_int_equal(mem_storage_count(ms, "data/"), s.packs_written);
    assert_int_equal(mem_storage_count(ms, "index/"), 1);
    assert_true(s.bytes_new_stored < s.bytes_new_raw); /* half the chunks are text */
    check_chunks(r, 1000, 300);
    check_chunks(r, 2000, 300);

    /* chunk_pack names an existing pack */
    uint8_t buf[40000];
    cf_id id;
    make_chunk(r, buf, chunk_len(1000), 1000, &id);
    char pk[128];
    assert_non_null(cf_repo_chunk_pack(r, &id, pk, sizeof pk));
    assert_true(mem_storage_exists(ms, pk));
    assert_all_private(ms);
    assert_int_equal(cf_repo_check_structure(r, NULL, NULL), 0);
    cf_repo_close(r);

    /* reopen: loaded from the index object */
    assert_int_equal(cf_repo_open(st, &r), 0);
    check_chunks(r, 1000, 300);
    check_chunks(r, 2000, 300);
    cf_repo_close(r);
    assert_int_equal(mem_storage_open_writers(ms), 0);
    cf_store_free(st);
}

/* Same chunks from two threads at once: each stored (indexed) once. */
static void test_dedup(void **state)
{
    (void)state;
    cf_store *st;
    mem_storage *ms;
    cf_repo *r = new_repo(&st, &ms, 0);
    assert_non_null(r);
    uint8_t buf[40000];
    cf_id id;
    make_chunk(r, buf, 30000, 8, &id); /* random: stored raw */
    int added = -1;
    assert_int_equal(cf_repo_put_chunk(r, &id, buf, 30000, &added), 0);
    assert_int_equal(added, 1);
    assert_int_equal(cf_repo_put_chunk(r, &id, buf, 30000, &added), 0);
    assert_int_equal(added, 0);
    assert_int_equal(cf_repo_flush(r), 0);
    /* one pack holding one blob: header + 30000 raw bytes + 52 + 40 */
    assert_int_equal(mem_storage_count(ms, "data/"), 1);
    char *pk = mem_storage_key(ms, "data/", 0);
    assert_int_equal(mem_storage_size(ms, pk), 8 + 30000 + 52 + 40);
    free(pk);

    worker w[2] = {{.first = 100, .count = 200}, {.first = 100, .count = 200}};
    run_workers(r, w, 2);
    cf_repo_stats s;
    cf_repo_get_stats(r, &s);
    assert_int_equal(s.chunks_new, 1 + 200);
    assert_int_equal(s.chunks_dup, 1 + 200);
    assert_int_equal(cf_repo_flush(r), 0);
    check_chunks(r, 100, 200);
    /* a chunk already in the committed index is a dup in a new session */
    cf_repo_close(r);
    assert_int_equal(cf_repo_open(st, &r), 0);
    assert_int_equal(cf_repo_put_chunk(r, &id, buf, 30000, &added), 0);
    assert_int_equal(added, 0);
    size_t packs = mem_storage_count(ms, "data/");
    assert_int_equal(cf_repo_flush(r), 0); /* nothing new: no pack, no index */
    assert_int_equal(mem_storage_count(ms, "data/"), packs);
    assert_int_equal(mem_storage_count(ms, "index/"), 2);
    cf_repo_close(r);
    cf_store_free(st);
}

/* cf_repo_has_lists answers as cf_repo_has id by id: lists empty,
 * short and longer than its look-ahead, stored ids and absent ones (in
 * the committed index and in the session's). */
static void test_has_lists(void **state)
{
    (void)state;
    cf_store *st;
    mem_storage *ms;
    cf_repo *r = new_repo(&st, &ms, 0);
    assert_non_null(r);
    enum { N = 300 };
    static uint8_t buf[40000];
    static cf_id ids[N];
    for (uint64_t k = 0; k < N; k++) {
        make_chunk(r, buf, 1 + k, 1000 + k, &ids[k]);
        if (k % 7 != 3) /* every seventh id is never stored */
            assert_int_equal(cf_repo_put_chunk(r, &ids[k], buf, 1 + k, NULL), 0);
        if (k == N / 2)
            assert_int_equal(cf_repo_flush(r), 0); /* half committed */
    }
    /* lists cut from ids: lengths 0, 1, 2, 3, 0, 5, ... up to 40 */
    const cf_id *lists[64];
    size_t lens[64], n = 0, at = 0;
    for (size_t len = 0; at < N && n < 64; len = (len + 1) % 41, n++) {
        if (n % 5 == 4)
            len = 0;
        lens[n] = at + len <= N ? len : N - at;
        lists[n] = &ids[at];
        at += lens[n];
    }
    uint8_t all[64];
    memset(all, 7, sizeof all);
    cf_repo_has_lists(r, lists, lens, n, all);
    size_t yes = 0, no = 0;
    for (size_t i = 0; i < n; i++) {
        int want = 1;
        for (size_t j = 0; j < lens[i]; j++)
            want = want && cf_repo_has(r, &lists[i][j]);
        if (all[i] != want)
            fail_msg("list %zu (%zu ids): %d, cf_repo_has says %d", i, lens[i], all[i], want);
        want ? yes++ : no++;
    }
    assert_true(yes >= 10 && no >= 10);
    cf_repo_has_lists(r, lists, lens, 0, all); /* nothing to do */
    cf_repo_close(r);
    cf_store_free(st);
}

/* Abort removes every pack and index of the session, flushed or not,
 * and leaves what was there before. */
static void test_abort(void **state)
{
    (void)state;
    cf_store *st;
    mem_storage *ms;
    cf_repo *r = new_repo(&st, &ms, 64 * 1024);
    assert_non_null(r);
    worker w[1] = {{.first = 1, .count = 50}};
    run_workers(r, w, 1);
    assert_int_equal(cf_repo_flush(r), 0);
    cf_repo_close(r);
    size_t objs = mem_storage_count(ms, "");

    assert_int_equal(cf_repo_open(st, &r), 0);
    w[0] = (worker){.first = 100, .count = 50};
    run_workers(r, w, 1);
    assert_int_equal(cf_repo_flush(r), 0);
    w[0] = (worker){.first = 200, .count = 50};
    run_workers(r, w, 1);
    assert_true(mem_storage_count(ms, "") > objs);
    cf_repo_abort(r);
    assert_int_equal(mem_storage_count(ms, ""), objs);
    assert_int_equal(mem_storage_open_writers(ms), 0);
    uint8_t buf[40000];
    cf_id id;
    make_chunk(r, buf, chunk_len(100), 100, &id);
    assert_false(cf_repo_has(r, &id));
    check_chunks(r, 1, 50); /* the earlier session is intact */
    /* the handle stays usable after abort */
    w[0] = (worker){.first = 300, .count = 20};
    run_workers(r, w, 1);
    assert_int_equal(cf_repo_flush(r), 0);
    check_chunks(r, 300, 20);
    cf_repo_close(r);

    /* in a fresh repository, abort leaves only the config */
    cf_store *st2;
    mem_storage *ms2;
    r = new_repo(&st2, &ms2, 64 * 1024);
    w[0] = (worker){.first = 1, .count = 50};
    run_workers(r, w, 1);
    assert_int_equal(cf_repo_flush(r), 0);
    cf_repo_abort(r);
    assert_int_equal(mem_storage_count(ms2, "data/"), 0);
    assert_int_equal(mem_storage_count(ms2, "index/"), 0);
    assert_int_equal(mem_storage_count(ms2, ""), 1);
    cf_repo_close(r);
    cf_store_free(st2);
    cf_store_free(st);
}

/* Disk full during put and during flush: an error naming the cause; after
 * abort the store holds only what it held before. */
static void test_disk_full(void **state)
{
    (void)state;
    for (int phase = 0; phase < 3; phase++) {
        cf_store *st;
        mem_storage *ms;
        cf_repo *r = new_repo(&st, &ms, phase == 0 ? 64 * 1024 : 64 << 20);
        assert_non_null(r);
        worker w[1] = {{.first = 1, .count = 30}};
        run_workers(r, w, 1);
        assert_int_equal(cf_repo_flush(r), 0);
        cf_repo_close(r);
        size_t objs = mem_storage_count(ms, "");
        assert_int_equal(cf_repo_open(st, &r), 0);

        uint8_t buf[40000];
        int rc = 0;
        if (phase == 0) {
            /* packs close during puts: fails in put */
            mem_storage_fail_writes_after(ms, 200000);
            for (uint64_t s = 1000; s < 1200 && rc == 0; s++) {
                cf_id id;
                make_chunk(r, buf, chunk_len(s), s, &id);
                rc = cf_repo_put_chunk(r, &id, buf, chunk_len(s), NULL);
            }
        } else {
            /* one big open pack; the disk fills at flush (pack trailer in
             * phase 1, index object in phase 2) */
            for (uint64_t s = 1000; s < 1020; s++) {
                cf_id id;
                make_chunk(r, buf, chunk_len(s), s, &id);
                assert_int_equal(cf_repo_put_chunk(r, &id, buf, chunk_len(s), NULL), 0);
            }
            /* the pack trailer of 20 chunks is 20 * 52 + 40 bytes */
            mem_storage_fail_writes_after(ms, phase == 1 ? 10 : 20 * 52 + 40 + 100);
            rc = cf_repo_flush(r);
        }
        assert_int_equal(rc, -1);
        assert_error_has("no space left");
        /* the session is poisoned until aborted */
        cf_id id;
        make_chunk(r, buf, 100, 5000, &id);
        assert_int_equal(cf_repo_put_chunk(r, &id, buf, 100, NULL), -1);
        assert_error_has("abort");
        assert_int_equal(cf_repo_flush(r), -1);
        cf_repo_abort(r);
        mem_storage_fail_writes_after(ms, UINT64_MAX);
        assert_int_equal(mem_storage_count(ms, ""), objs);
        assert_int_equal(mem_storage_open_writers(ms), 0);
        check_chunks(r, 1, 30);
        cf_repo_close(r);
        cf_store_free(st);
    }
}

/* Packs published in the background: after flush every chunk reads back
 * and every pack is counted; an abort waits for the committers and
 * leaves the store as it was; a failure poisons the session as before. */
static void test_async_commits(void **state)
{
    (void)state;
    cf_store *st;
    mem_storage *ms;
    cf_repo *r = new_repo(&st, &ms, 64 * 1024);
    assert_non_null(r);
    cf_repo_async_commits(r, 2);
    worker w[2] = {{.first = 1, .count = 200}, {.first = 500, .count = 200}};
    run_workers(r, w, 2);
    assert_int_equal(cf_repo_flush(r), 0);
    cf_repo_stats s;
    cf_repo_get_stats(r, &s);
    assert_true(s.packs_written > 8);
    assert_int_equal(mem_storage_count(ms, "data/"), s.packs_written);
    assert_int_equal(mem_storage_open_writers(ms), 0);
    check_chunks(r, 1, 200);
    check_chunks(r, 500, 200);
    cf_repo_close(r);
    size_t objs = mem_storage_count(ms, "");
    assert_int_equal(cf_repo_open(st, &r), 0);
    cf_repo_async_commits(r, 2);

    /* many packs closed and queued, then abort */
    worker w2[2] = {{.first = 2000, .count = 200}, {.first = 3000, .count = 200}};
    run_workers(r, w2, 2);
    cf_repo_abort(r);
    assert_int_equal(mem_storage_count(ms, ""), objs);
    assert_int_equal(mem_storage_open_writers(ms), 0);
    check_chunks(r, 1, 200);

    /* a write that fails while commits are queued */
    mem_storage_fail_writes_after(ms, 300000);
    uint8_t buf[40000];
    int rc = 0;
    for (uint64_t k = 4000; k < 4400 && rc == 0; k++) {
        cf_id id;
        make_chunk(r, buf, chunk_len(k), k, &id);
        rc = cf_repo_put_chunk(r, &id, buf, chunk_len(k), NULL);
    }
    assert_int_equal(rc, -1);
    assert_int_equal(cf_repo_flush(r), -1);
    assert_error_has("no space left");
    cf_repo_abort(r);
    mem_storage_fail_writes_after(ms, UINT64_MAX);
    assert_int_equal(mem_storage_count(ms, ""), objs);
    cf_repo_close(r);

    assert_int_equal(cf_repo_open(st, &r), 0);
    check_chunks(r, 500, 200);
    cf_repo_close(r);
    cf_store_free(st);
}

/* Index objects a rebuild of n chunks writes: one, unless the memory
 * threshold (COFFER_INDEX_MEMORY_ENTRIES, which the suite also runs at 0)
 * makes its shares smaller than n. */
static void assert_rebuilt_objects(mem_storage *ms, size_t n)
{
    const char *e = getenv("COFFER_INDEX_MEMORY_ENTRIES");
    unsigned long long lim = e && *e ? strtoull(e, NULL, 10) : 1000000;
    size_t got = mem_storage_count(ms, "index/");
    if (lim < 64)
        lim = 64;
    if (lim >= n)
        assert_int_equal(got, 1);
    else
        assert_true(got >= 2);
}

static char *env_swap(const char *v)
{
    const char *o = getenv("COFFER_INDEX_MEMORY_ENTRIES");
    char *old = o ? strdup(o) : NULL;
    if (v)
        setenv("COFFER_INDEX_MEMORY_ENTRIES", v, 1);
    else
        unsetenv("COFFER_INDEX_MEMORY_ENTRIES");
    return old;
}

static void env_restore(char *old)
{
    if (old)
        setenv("COFFER_INDEX_MEMORY_ENTRIES", old, 1);
    else
        unsetenv("COFFER_INDEX_MEMORY_ENTRIES");
    free(old);
}

static void test_rebuild_index(void **state)
{
    (void)state;
    cf_store *st;
    mem_storage *ms;
    cf_repo *r = new_repo(&st, &ms, 128 * 1024);
    assert_non_null(r);
    worker w[2] = {{.first = 1, .count = 100}, {.first = 500, .count = 100}};
    run_workers(r, w, 2);
    assert_int_equal(cf_repo_flush(r), 0);
    w[0] = (worker){.first = 1000, .count = 60};
    run_workers(r, w, 1);
    assert_int_equal(cf_repo_flush(r), 0);
    cf_repo_close(r);
    assert_int_equal(mem_storage_count(ms, "index/"), 2);

    /* lose every index object */
    char *k;
    while ((k = mem_storage_key(ms, "index/", 0)) != NULL) {
        mem_storage_drop(ms, k);
        free(k);
    }
    assert_int_equal(cf_repo_open(st, &r), 0);
    uint8_t buf[40000];
    cf_id id;
    make_chunk(r, buf, chunk_len(1), 1, &id);
    assert_false(cf_repo_has(r, &id));
    assert_int_equal(cf_repo_rebuild_index(r), 0);
    assert_rebuilt_objects(ms, 260);
    check_chunks(r, 1, 100);
    check_chunks(r, 500, 100);
    check_chunks(r, 1000, 60);
    cf_repo_close(r);

    /* rebuild replaces existing index objects by one */
    assert_int_equal(cf_repo_open(st, &r), 0);
    check_chunks(r, 1000, 60);
    w[0] = (worker){.first = 3000, .count = 10};
    run_workers(r, w, 1);
    assert_int_equal(cf_repo_flush(r), 0);
    size_t before = mem_storage_count(ms, "index/");
    assert_true(before >= 2);
    assert_int_equal(cf_repo_rebuild_index(r), 0);
    assert_rebuilt_objects(ms, 270);
    cf_repo_abort(r); /* rebuilt state is committed: abort keeps it */
    check_chunks(r, 3000, 10);
    cf_repo_close(r);
    assert_int_equal(cf_repo_open(st, &r), 0);
    check_chunks(r, 1, 100);
    check_chunks(r, 3000, 10);
    /* refused while the session has unflushed chunks */
    make_chunk(r, buf, 100, 9999, &id);
    assert_int_equal(cf_repo_put_chunk(r, &id, buf, 100, NULL), 0);
    assert_int_equal(cf_repo_rebuild_index(r), -1);
    assert_error_has("flush");
    cf_repo_close(r);
    cf_store_free(st);
}

/* A rebuild holds a bounded number of entries: past it, each share goes
 * out as an index object of its own, and the rebuilt index is loaded
 * again from the store (here sorted to disk: the threshold is tiny). */
static void test_rebuild_index_pieces(void **state)
{
    (void)state;
    cf_store *st;
    mem_storage *ms;
    cf_repo *r = new_repo(&st, &ms, 64 * 1024);
    assert_non_null(r);
    worker w[2] = {{.first = 1, .count = 150}, {.first = 500, .count = 150}};
    run_workers(r, w, 2);
    assert_int_equal(cf_repo_flush(r), 0);
    cf_repo_close(r);
    assert_int_equal(mem_storage_count(ms, "index/"), 1);

    char *saved = env_swap("64");
    assert_int_equal(cf_repo_open(st, &r), 0);
    assert_int_equal(cf_repo_rebuild_index(r), 0);
    /* 300 chunks, at most 64 (and never a pack split) per object */
    size_t nix = mem_storage_count(ms, "index/");
    assert_true(nix >= 5);
    check_chunks(r, 1, 150);
    check_chunks(r, 500, 150);
    /* the session goes on: new chunks, flushed, read back */
    w[0] = (worker){.first = 2000, .count = 20};
    run_workers(r, w, 1);
    assert_int_equal(cf_repo_flush(r), 0);
    check_chunks(r, 2000, 20);
    cf_repo_close(r);
    assert_int_equal(mem_storage_count(ms, "index/"), nix + 1);

    /* a second rebuild replaces every object, the earlier pieces too */
    assert_int_equal(cf_repo_open(st, &r), 0);
    assert_int_equal(cf_repo_rebuild_index(r), 0);
    cf_repo_close(r);
    free(env_swap(NULL)); /* the default threshold: one object */
    assert_int_equal(cf_repo_open(st, &r), 0);
    check_chunks(r, 1, 150);
    check_chunks(r, 500, 150);
    check_chunks(r, 2000, 20);
    assert_int_equal(cf_repo_rebuild_index(r), 0);
    assert_int_equal(mem_storage_count(ms, "index/"), 1);
    check_chunks(r, 2000, 20);
    cf_repo_close(r);
    cf_store_free(st);
    env_restore(saved);
}

static void test_unknown_chunk(void **state)
{
    (void)state;
    cf_store *st;
    mem_storage *ms;
    cf_repo *r = new_repo(&st, &ms, 0);
    cf_id id;
    memset(&id, 0xab, sizeof id);
    cf_buf out = {0};
    assert_int_equal(cf_repo_get_chunk(r, &id, &out), -1);
    assert_error_has("chunk abababab");
    assert_int_equal(cf_repo_chunk_size(r, &id), -1);
    char pk[128];
    assert_null(cf_repo_chunk_pack(r, &id, pk, sizeof pk));
    /* empty chunk round trip */
    cf_repo_hash(r, "", 0, &id);
    assert_int_equal(cf_repo_put_chunk(r, &id, "", 0, NULL), 0);
    /* not readable before its pack is closed */
    assert_int_equal(cf_repo_get_chunk(r, &id, &out), -1);
    assert_error_has("flush first");
    assert_int_equal(cf_repo_flush(r), 0);
    assert_int_equal(cf_repo_get_chunk(r, &id, &out), 0);
    assert_int_equal(out.len, 0);
    /* id helpers */
    char hex[65];
    cf_id back;
    cf_id_hex(&id, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_int_equal(cf_id_parse(hex, &back), 0);
    assert_memory_equal(&back, &id, sizeof id);
    assert_int_equal(cf_id_parse("e3b0", &back), -1);
    cf_buf_free(&out);
    cf_repo_close(r);
    cf_store_free(st);
}

/* The example pack of docs/repository-format.md section 6, byte for byte
 * (a pack's bytes do not depend on its random id). */
static void test_pack_golden(void **state)
{
    (void)state;
    static const uint8_t golden[105] = {
        0x43, 0x4f, 0x46, 0x52, 0x01, 0x02, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x2c, 0xf2,
        0x4d, 0xba, 0x5f, 0xb0, 0xa3, 0x0e, 0x26, 0xe8, 0x3b, 0x2a, 0xc5, 0xb9, 0xe2, 0x9e, 0x1b,
        0x16, 0x1e, 0x5c, 0x1f, 0xa7, 0x42, 0x5e, 0x73, 0x04, 0x33, 0x62, 0x93, 0x8b, 0x98, 0x24,
        0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00,
        0x00, 0x05, 0x00, 0x00, 0x00, 0x34, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x5c, 0xdb,
        0x49, 0x7c, 0x77, 0x43, 0x88, 0x34, 0xf1, 0x95, 0xe4, 0x83, 0x0d, 0x63, 0x3e, 0xf8, 0x98,
        0xae, 0x0e, 0xa8, 0x75, 0x2b, 0xa7, 0x85, 0x96, 0x60, 0x5e, 0xea, 0x55, 0x86, 0x61, 0x8a,
    };
    cf_store *st;
    mem_storage *ms;
    cf_repo *r = new_repo(&st, &ms, 0);
    cf_id id;
    cf_repo_hash(r, "hello", 5, &id);
    assert_int_equal(cf_repo_put_chunk(r, &id, "hello", 5, NULL), 0);
    assert_int_equal(cf_repo_flush(r), 0);
    char *k = mem_storage_key(ms, "data/", 0);
    size_t len;
    uint8_t *p = mem_storage_get(ms, k, &len);
    assert_int_equal(len, sizeof golden);
    assert_memory_equal(p, golden, sizeof golden);
    free(p);
    free(k);
    cf_repo_close(r);
    cf_store_free(st);
}

/* Bytes stored for one chunk put at level `wanted` (0: no wish) into a
 * fresh repository at level `repo_level` (0: the default). */
static uint64_t stored_at(int repo_level, int wanted, const uint8_t *data, size_t len)
{
    mem_storage *ms;
    cf_store *st = mem_store_new("mem", &ms);
    cf_repo_params p = {.cdc = {.min_size = 2048, .avg_size = 8192, .max_size = 65536, .seed = 42},
                        .zstd_level = repo_level};
    assert_int_equal(cf_repo_init(st, &p), 0);
    cf_repo *r;
    assert_int_equal(cf_repo_open(st, &r), 0);
    cf_id id;
    cf_repo_hash(r, data, len, &id);
    int added = 0;
    assert_int_equal(cf_repo_put_chunk_level(r, &id, data, len, wanted, &added), 0);
    assert_int_equal(added, 1);
    assert_int_equal(cf_repo_flush(r), 0);
    cf_buf out = {0};
    assert_int_equal(cf_repo_get_chunk(r, &id, &out), 0);
    assert_int_equal(out.len, len);
    assert_memory_equal(out.data, data, len);
    cf_buf_free(&out);
    cf_repo_stats s;
    cf_repo_get_stats(r, &s);
    cf_repo_close(r);
    cf_store_free(st);
    return s.bytes_new_stored;
}

/* A chunk put with a wish for level 1 (database dumps) is compressed at
 * level 1 in a repository at the default level, and at the repository's
 * own level when an operator set it above the default. */
/* A table entry is refused when it could not have been written: an
 * unknown compression, a stored size that does not fit the pack or the
 * raw size, a chunk larger than any chunker makes. */
static void test_entry_valid(void **state)
{
    (void)state;
    const uint64_t big = 1ull << 40; /* a pack that holds anything */
    const uint32_t ov = CF_SEAL_OVERHEAD;
    cf_loc l = {.comp = CF_COMP_ZSTD, .offset = CF_ENV_HDR_LEN, .stored = 1000, .raw = 5000};
    assert_true(cf_entry_valid(&l, big, ov));
    l.raw = CF_CHUNK_MAX;
    assert_true(cf_entry_valid(&l, big, ov));
    l.raw = CF_CHUNK_MAX + 1; /* a frame may claim that much: never reserved */
    assert_false(cf_entry_valid(&l, big, ov));
    l.raw = 5000;
    l.stored = UINT32_MAX;
    assert_false(cf_entry_valid(&l, big, ov));
    l.stored = ov; /* nothing but the seal */
    assert_false(cf_entry_valid(&l, big, ov));
    l = (cf_loc){.comp = CF_COMP_NONE, .offset = CF_ENV_HDR_LEN, .stored = 5000 + ov, .raw = 5000};
    assert_true(cf_entry_valid(&l, big, ov));
    l.stored--;
    assert_false(cf_entry_valid(&l, big, ov));
    l.stored = CF_CHUNK_MAX + 1 + ov;
    l.raw = CF_CHUNK_MAX + 1;
    assert_false(cf_entry_valid(&l, big, ov));
    l = (cf_loc){.comp = 7, .offset = CF_ENV_HDR_LEN, .stored = 100, .raw = 100};
    assert_false(cf_entry_valid(&l, big, ov));
    l = (cf_loc){.comp = CF_COMP_ZSTD, .offset = CF_ENV_HDR_LEN, .stored = 1000, .raw = 5000};
    assert_false(
        cf_entry_valid(&l, CF_ENV_HDR_LEN + 999 + CF_PACK_TAIL_LEN, ov)); /* past the end */
    assert_true(cf_entry_valid(&l, CF_ENV_HDR_LEN + 1000 + CF_PACK_TAIL_LEN, ov));
}

static void test_chunk_level(void **state)
{
    (void)state;
    size_t len = 200000;
    uint8_t *data = malloc(len);
    fill_text(data, len, 11);
    uint8_t *z = malloc(ZSTD_compressBound(len));
    size_t z1 = ZSTD_compress(z, ZSTD_compressBound(len), data, len, 1);
    size_t z3 = ZSTD_compress(z, ZSTD_compressBound(len), data, len, 3);
    assert_false(ZSTD_isError(z1) || ZSTD_isError(z3));
    assert_int_not_equal(z1, z3);
    /* the same envelope around either: the difference is the level's */
    uint64_t def = stored_at(0, 0, data, len), def1 = stored_at(0, 1, data, len);
    assert_int_equal((int64_t)def1 - (int64_t)def, (int64_t)z1 - (int64_t)z3);
    assert_int_equal(stored_at(3, 1, data, len), def1);
    /* above the default, the operator's level holds */
    assert_int_equal(stored_at(19, 1, data, len), stored_at(19, 0, data, len));
    assert_int_not_equal(stored_at(19, 0, data, len), def);
    free(z);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_open),
        cmocka_unit_test(test_threads_round_trip),
        cmocka_unit_test(test_dedup),
        cmocka_unit_test(test_has_lists),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_disk_full),
        cmocka_unit_test(test_async_commits),
        cmocka_unit_test(test_rebuild_index),
        cmocka_unit_test(test_rebuild_index_pieces),
        cmocka_unit_test(test_chunk_level),
        cmocka_unit_test(test_unknown_chunk),
        cmocka_unit_test(test_pack_golden),
        cmocka_unit_test(test_entry_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
