/* Planned parallel reads (core/repo/fetch.c): chunks come back as
 * written, in any order of taking and from several threads, close chunks
 * of one pack are read together, skipped chunks cost nothing, a small
 * window still makes progress, and failures are named per chunk. */
#include "repo_test.h"

#include <pthread.h>
#include <unistd.h>

#include "plugin/config.h"
#include "plugin/store.h"

static size_t chunk_len(uint64_t seed)
{
    return 1 + (size_t)(seed * 2654435761u % 30000);
}

static void make_chunk(cf_repo *r, uint8_t *buf, uint64_t seed, cf_id *id)
{
    size_t len = chunk_len(seed);
    if (seed & 1)
        fill_text(buf, len, seed);
    else
        fill_random(buf, len, seed);
    cf_repo_hash(r, buf, len, id);
}

/* n chunks with seeds 0..n-1, flushed. */
static void put_chunks(cf_repo *r, uint64_t n)
{
    static uint8_t buf[30000];
    for (uint64_t s = 0; s < n; s++) {
        cf_id id;
        make_chunk(r, buf, s, &id);
        assert_int_equal(cf_repo_put_chunk(r, &id, buf, chunk_len(s), NULL), 0);
    }
    assert_int_equal(cf_repo_flush(r), 0);
}

static void set_opts(cf_store *st, const char *conns, const char *inflight)
{
    if (!st->cfg)
        st->cfg = cf_config_new();
    cf_config_set(st->cfg, "connections", conns, 0, 0);
    cf_config_set(st->cfg, "inflight_bytes", inflight, 0, 0);
}

typedef struct taker {
    cf_fetch *f;
    cf_repo *r;
    const uint64_t *seeds;
    uint64_t first;
    size_t n, stride, offset;
    int bad;
} taker;

static void *take_worker(void *arg)
{
    taker *t = arg;
    static _Thread_local uint8_t want[30000];
    cf_buf b = {0};
    for (size_t i = t->offset; i < t->n; i += t->stride) {
        cf_id id;
        make_chunk(t->r, want, t->seeds[i], &id);
        if (cf_fetch_take(t->f, t->first + i, &b) != 0 || b.len != chunk_len(t->seeds[i]) ||
            memcmp(b.data, want, b.len) != 0)
            t->bad++;
    }
    cf_buf_free(&b);
    return NULL;
}

/* Wants seeds[0..n) and takes them from two threads (even and odd
 * positions, each in order). Returns the ranged reads it cost. */
static uint64_t fetch_all(cf_repo *r, const uint64_t *seeds, size_t n)
{
    uint8_t *buf = malloc(30000);
    cf_id *ids = calloc(n, sizeof *ids);
    for (size_t i = 0; i < n; i++)
        make_chunk(r, buf, seeds[i], &ids[i]);
    free(buf);
    cf_repo_stats s0, s1;
    cf_repo_get_stats(r, &s0);
    cf_fetch *f = cf_fetch_new(r, 0);
    /* named in two batches, as a restore names file after file */
    uint64_t first = cf_fetch_want(f, ids, n / 2);
    assert_int_equal(cf_fetch_want(f, ids + n / 2, n - n / 2), first + n / 2);
    taker t[2] = {{f, r, seeds, first, n, 2, 0, 0}, {f, r, seeds, first, n, 2, 1, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, take_worker, &t[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(t[0].bad + t[1].bad, 0);
    cf_fetch_free(f);
    free(ids);
    cf_repo_get_stats(r, &s1);
    return s1.reads - s0.reads;
}

/* How many reads run at once: the target's `connections`, else 3 on a
 * local disk and one more than the CPUs (3 to 8) elsewhere; 64 at most. */
static void test_connections(void **state)
{
    (void)state;
    cf_store *st;
    mem_storage *ms;
    cf_repo *r = new_repo(&st, &ms, 0);
    assert_non_null(r);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int want = cpus + 1 < 3 ? 3 : cpus + 1 > 8 ? 8 : (int)cpus + 1;
    uint32_t caps = st->caps;
    st->caps = caps & ~COFFER_CAP_LOCAL;
    assert_int_equal(cf_repo_connections(r), want);
    st->caps = caps | COFFER_CAP_LOCAL;
    assert_int_equal(cf_repo_connections(r), 3);
    set_opts(st, "5", "24M");
    assert_int_equal(cf_repo_connections(r), 5);
    st->caps = caps & ~COFFER_CAP_LOCAL;
    assert_int_equal(cf_repo_connections(r), 5);
    set_opts(st, "100", "24M");
    assert_int_equal(cf_repo_connections(r), 64);
    st->caps = caps;
    cf_repo_close(r);
    cf_store_free(st);
}

/* A distant store gets more reads in flight: one more for every 2 ms of
 * its quickest small request, up to 16; a local one and an explicit
 * value do not change. Large reads do not count as round trips. */
static void test_connections_distant(void **state)
{
    (void)state;
    cf_store *st;
    mem_storage *ms;
    cf_repo *r = new_repo(&st, &ms, 256 * 1024);
    assert_non_null(r);
    put_chunks(r, 100);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int base = cpus + 1 < 3 ? 3 : cpus + 1 > 8 ? 8 : (int)cpus + 1;
    uint32_t caps = st->caps;
    st->caps = caps & ~COFFER_CAP_LOCAL;
    /* opening the repository measured it: quick */
    double rtt = cf_store_round_trip(st);
    assert_true(rtt > 0 && rtt < 0.002);
    assert_int_equal(cf_repo_connections(r), base);
    assert_true(cf_repo_inflight_bytes(r) >= 24u << 20 &&
                cf_repo_inflight_bytes(r) < (24u << 20) + (2u << 20));

    /* a large read, however slow, is no round trip */
    char *pack = mem_storage_key(ms, "data/", 0);
    assert_non_null(pack);
    assert_true(mem_storage_size(ms, pack) > 64 * 1024);
    atomic_store(&st->rtt_ns, 0);
    mem_storage_set_latency(ms, 20000);
    cf_buf b = {0};
    assert_int_equal(cf_store_get(st, pack, &b), 0);
    assert_true(cf_store_round_trip(st) == 0);
    assert_int_equal(cf_repo_connections(r), base);

    /* 20 ms a request, then 200: the slower one does not count */
    coffer_object_stat os;
    assert_int_equal(cf_store_stat(st, "config", &os), 0);
    mem_storage_set_latency(ms, 200000);
    assert_int_equal(cf_store_get_range(st, pack, 0, 100, &b), 0);
    rtt = cf_store_round_trip(st);
    assert_true(rtt >= 0.020 && rtt < 0.200);
    int want = base + (int)(rtt * 1e3 / 2);
    assert_int_equal(cf_repo_connections(r), want > 16 ? 16 : want);
    assert_true(cf_repo_connections(r) >= base + 10 || cf_repo_connections(r) == 16);
    assert_int_equal(cf_repo_inflight_bytes(r), 32u << 20); /* 24M + 12M, held to 32M */

    /* far away: at most 16 */
    atomic_store(&st->rtt_ns, 0);
    mem_storage_set_latency(ms, 60000);
    assert_int_equal(cf_store_stat(st, "config", &os), 0);
    assert_int_equal(cf_repo_connections(r), 16);
    st->caps = caps | COFFER_CAP_LOCAL;
    assert_int_equal(cf_repo_connections(r), 3);
    assert_int_equal(cf_repo_inflight_bytes(r), 8u << 20);
    set_opts(st, "5", "40M");
    st->caps = caps & ~COFFER_CAP_LOCAL;
    assert_int_equal(cf_repo_connections(r), 5);
    assert_int_equal(cf_repo_inflight_bytes(r), 40u << 20);

    mem_storage_set_latency(ms, 0);
    st->caps = caps;
    cf_buf_free(&b);
    free(pack);
    cf_repo_close(r);
    cf_store_free(st);
}

static void test_round_trip(void **state)
{
    (void)state;
    cf_store *st;
    mem_storage *ms;
    cf_repo *r = new_repo(&st, &ms, 256 * 1024);
    assert_non_null(r);
    put_chunks(r, 600);
    /* in order, then with repeats and references back */
    uint64_t seeds[900];
    for (size_t i = 0; i < 600; i++)
        seeds[i] = i;
    for (size_t i = 600; i < 900; i++)
        seeds[i] = (i * 7) % 600;
    uint64_t reads = fetch_all(r, seeds, 900);
    /* neighbours in a pack are read together */
    assert_true(reads < 600);
    cf_repo_close(r);
    cf_store_free(st);
}

/* The chunk data is decrypted in place in the read buffer: a chunk that
 * appears twice in one read must still come back twice. */
static void test_encrypted_duplicates(void **state)
{
    (void)state;
    setenv("FETCH_TEST_PASS", "fetch test passphrase", 1);
    cf_store *st = mem_store_new("mem", NULL);
    cf_passphrase_src ps = {.env = "FETCH_TEST_PASS", .what = "test"};
    cf_repo_params p = {.cdc = {.min_size = 2048, .avg_size = 8192, .max_size = 65536},
                        .pack_size = 1 << 20,
                        .encryption = CF_REPO_ENC_REPOKEY,
                        .pass = &ps,
                        .kdf = {1, 8192}};
    assert_int_equal(cf_repo_init(st, &p), 0);
    cf_repo *r = NULL;
    cf_repo_open_opts o = {.pass = &ps};
    assert_int_equal(cf_repo_open_with(st, &o, &r), 0);
    put_chunks(r, 200);
    uint64_t seeds[300];
    for (size_t i = 0; i < 300; i++)
        seeds[i] = i < 200 ? i : (i % 3 ? i - 200 : 5); /* 5 many times */
    fetch_all(r, seeds, 300);
    cf_repo_close(r);
    cf_store_free(st);
}

/* A window smaller than one chunk, one connection: still every chunk. */
static void test_small_window(void **state)
{
    (void)state;
    cf_store *st;
    mem_storage *ms;
    cf_repo *r = new_repo(&st, &ms, 64 * 1024);
    assert_non_null(r);
    put_chunks(r, 300);
    set_opts(st, "1", "1");
    uint64_t seeds[300];
    for (size_t i = 0; i < 300; i++)
        seeds[i] = 299 - i;
    fetch_all(r, seeds, 300);
    cf_repo_close(r);
    cf_store_free(st);
}

/* Skipped chunks are not read (a whole skipped stretch costs no read);
 * freeing with chunks neither taken nor skipped is allowed. */
static void test_skip(void **state)
{
    (void)state;
    cf_store *st;
    mem_storage *ms;
    cf_repo *r = new_repo(&st, &ms, 256 * 1024);
    assert_non_null(r);
    put_chunks(r, 400);
    set_opts(st, "2", "1M");
    uint8_t buf[30000];
    cf_id ids[400];
    for (size_t i = 0; i < 400; i++)
        make_chunk(r, buf, i, &ids[i]);
    cf_fetch *f = cf_fetch_new(r, 0);
    /* given up before the planner got to them */
    uint64_t first = cf_fetch_want(f, ids, 400);
    cf_fetch_skip(f, first + 100, 300);
    cf_buf b = {0};
    for (size_t i = 0; i < 100; i++) {
        assert_int_equal(cf_fetch_take(f, first + i, &b), 0);
        assert_int_equal(b.len, chunk_len(i));
    }
    cf_repo_stats s0, s1;
    cf_repo_get_stats(r, &s0);
    /* the skipped ones were never read: a new want of one reads it */
    uint64_t again = cf_fetch_want(f, &ids[399], 1);
    assert_int_equal(cf_fetch_take(f, again, &b), 0);
    make_chunk(r, buf, 399, &ids[0]);
    assert_memory_equal(b.data, buf, chunk_len(399));
    cf_repo_get_stats(r, &s1);
    assert_int_equal(s1.reads - s0.reads, 1);
    /* left behind at free */
    cf_fetch_want(f, ids, 50);
    cf_buf_free(&b);
    cf_fetch_free(f);
    cf_repo_close(r);
    cf_store_free(st);
}

/* Each failure is the chunk's own, named as cf_repo_get_chunk names it;
 * the chunks around it are unharmed. */
static void test_errors(void **state)
{
    (void)state;
    cf_store *st;
    mem_storage *ms;
    cf_repo *r = new_repo(&st, &ms, 64 * 1024);
    assert_non_null(r);
    put_chunks(r, 100);
    uint8_t buf[30000];
    cf_id ids[102];
    for (size_t i = 0; i < 100; i++)
        make_chunk(r, buf, i, &ids[i]);
    char pk[128];
    assert_non_null(cf_repo_chunk_pack(r, &ids[50], pk, sizeof pk));
    assert_int_equal(mem_storage_drop(ms, pk), 0);
    memset(&ids[100], 0xab, sizeof ids[100]); /* in no index */
    ids[101] = ids[0];
    cf_fetch *f = cf_fetch_new(r, 0);
    uint64_t first = cf_fetch_want(f, ids, 102);
    cf_buf b = {0};
    size_t missing = 0;
    for (size_t i = 0; i < 102; i++) {
        char hex[2 * CF_ID_LEN + 1];
        cf_id_hex(&ids[i], hex);
        char other[128];
        int rc = cf_fetch_take(f, first + i, &b);
        if (i == 100) {
            assert_int_equal(rc, -1);
            assert_error_has("not in the repository index");
            assert_error_has(hex);
        } else if (strcmp(cf_repo_chunk_pack(r, &ids[i], other, sizeof other), pk) == 0) {
            assert_int_equal(rc, -1);
            assert_error_has("missing");
            assert_error_has(pk);
            missing++;
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(b.len, chunk_len(i == 101 ? 0 : i));
        }
    }
    assert_true(missing >= 1);
    cf_buf_free(&b);
    cf_fetch_free(f);
    cf_repo_close(r);
    cf_store_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connections),  cmocka_unit_test(test_connections_distant),
        cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_encrypted_duplicates),
        cmocka_unit_test(test_small_window), cmocka_unit_test(test_skip),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
