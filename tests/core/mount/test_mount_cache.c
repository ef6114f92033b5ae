/* Chunk offset math and the LRU chunk cache of coffer mount (mount/cache.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mount/cache.h"
#include "mount/mount.h"

static cf_id id_of(uint8_t n)
{
    cf_id id;
    memset(id.b, n, sizeof id.b);
    id.b[0] = (uint8_t)(n * 37); /* spread over the buckets */
    return id;
}

static void *chunk(uint8_t fill, size_t len)
{
    void *p = malloc(len);
    memset(p, fill, len);
    return p;
}

static void test_offsets(void **state)
{
    (void)state;
    int64_t sizes[] = {100, 0, 50, 1, 200};
    uint64_t offs[6];
    assert_int_equal(cf_chunk_offsets(sizes, 5, offs), 0);
    uint64_t want[] = {0, 100, 100, 150, 151, 351};
    for (int i = 0; i < 6; i++)
        assert_int_equal(offs[i], want[i]);
    assert_int_equal(cf_chunk_at(offs, 5, 0), 0);
    assert_int_equal(cf_chunk_at(offs, 5, 99), 0);
    /* the empty chunk 1 is never the answer */
    assert_int_equal(cf_chunk_at(offs, 5, 100), 2);
    assert_int_equal(cf_chunk_at(offs, 5, 149), 2);
    assert_int_equal(cf_chunk_at(offs, 5, 150), 3);
    assert_int_equal(cf_chunk_at(offs, 5, 151), 4);
    assert_int_equal(cf_chunk_at(offs, 5, 350), 4);
    assert_int_equal(cf_chunk_at(offs, 5, 351), 5); /* end */
    assert_int_equal(cf_chunk_at(offs, 5, 10000), 5);
    assert_int_equal(cf_chunk_at(offs, 0, 0), 0); /* empty file */
}

static void test_offsets_every_byte(void **state)
{
    (void)state;
    enum { N = 64 };
    int64_t sizes[N];
    uint64_t offs[N + 1];
    for (int i = 0; i < N; i++)
        sizes[i] = (i * 7919) % 13; /* some zero */
    assert_int_equal(cf_chunk_offsets(sizes, N, offs), 0);
    for (uint64_t b = 0; b < offs[N]; b++) {
        size_t i = cf_chunk_at(offs, N, b);
        assert_true(i < N);
        assert_true(offs[i] <= b && b < offs[i + 1]);
    }
}

static void test_offsets_refused(void **state)
{
    (void)state;
    int64_t neg[] = {10, -1};
    uint64_t offs[3];
    assert_int_equal(cf_chunk_offsets(neg, 2, offs), -1);
    int64_t big[] = {INT64_MAX, INT64_MAX, INT64_MAX};
    uint64_t o4[4];
    assert_int_equal(cf_chunk_offsets(big, 3, o4), -1);
}

static void test_cache_hit_and_range(void **state)
{
    (void)state;
    cf_ccache *c = cf_ccache_new(1000);
    cf_id a = id_of(1);
    char buf[16];
    assert_int_equal(cf_ccache_read(c, &a, 0, buf, 4), 0);
    uint8_t *d = malloc(100);
    for (int i = 0; i < 100; i++)
        d[i] = (uint8_t)i;
    cf_ccache_put(c, &a, d, 100);
    assert_int_equal(cf_ccache_read(c, &a, 40, buf, 10), 1);
    for (int i = 0; i < 10; i++)
        assert_int_equal((uint8_t)buf[i], 40 + i);
    /* a range past the chunk's end is a miss, never an overread */
    assert_int_equal(cf_ccache_read(c, &a, 95, buf, 10), 0);
    size_t bytes, n;
    uint64_t hits, misses;
    cf_ccache_stats(c, &bytes, &n, &hits, &misses);
    assert_int_equal(bytes, 100);
    assert_int_equal(n, 1);
    assert_int_equal(hits, 1);
    assert_int_equal(misses, 2);
    cf_ccache_free(c);
}

static void test_cache_lru_bound(void **state)
{
    (void)state;
    cf_ccache *c = cf_ccache_new(300);
    cf_id ids[5];
    for (int i = 0; i < 5; i++)
        ids[i] = id_of((uint8_t)(i + 1));
    char b;
    cf_ccache_put(c, &ids[0], chunk('a', 100), 100);
    cf_ccache_put(c, &ids[1], chunk('b', 100), 100);
    cf_ccache_put(c, &ids[2], chunk('c', 100), 100);
    /* touch the oldest: the next put evicts ids[1] instead */
    assert_int_equal(cf_ccache_read(c, &ids[0], 0, &b, 1), 1);
    cf_ccache_put(c, &ids[3], chunk('d', 100), 100);
    assert_int_equal(cf_ccache_read(c, &ids[1], 0, &b, 1), 0);
    assert_int_equal(cf_ccache_read(c, &ids[0], 99, &b, 1), 1);
    assert_int_equal(b, 'a');
    assert_int_equal(cf_ccache_read(c, &ids[2], 0, &b, 1), 1);
    assert_int_equal(cf_ccache_read(c, &ids[3], 0, &b, 1), 1);
    size_t bytes, n;
    uint64_t h, m;
    cf_ccache_stats(c, &bytes, &n, &h, &m);
    assert_true(bytes <= 300);
    assert_int_equal(n, 3);
    /* a chunk larger than the whole cache is not kept (and not leaked) */
    cf_ccache_put(c, &ids[4], chunk('e', 301), 301);
    assert_int_equal(cf_ccache_read(c, &ids[4], 0, &b, 1), 0);
    cf_ccache_stats(c, &bytes, &n, &h, &m);
    assert_int_equal(n, 3);
    /* a second put of a cached id keeps one copy */
    cf_ccache_put(c, &ids[3], chunk('x', 100), 100);
    assert_int_equal(cf_ccache_read(c, &ids[3], 0, &b, 1), 1);
    assert_int_equal(b, 'd');
    cf_ccache_stats(c, &bytes, &n, &h, &m);
    assert_int_equal(bytes, 300);
    cf_ccache_free(c);
}

static void test_cache_many(void **state)
{
    (void)state;
    cf_ccache *c = cf_ccache_new(64 * 10);
    for (int i = 0; i < 5000; i++) {
        cf_id id;
        memset(&id, 0, sizeof id);
        memcpy(id.b, &i, sizeof i);
        cf_ccache_put(c, &id, chunk((uint8_t)i, 64), 64);
    }
    size_t bytes, n;
    uint64_t h, m;
    cf_ccache_stats(c, &bytes, &n, &h, &m);
    assert_int_equal(n, 10);
    assert_int_equal(bytes, 640);
    char b;
    for (int i = 4990; i < 5000; i++) {
        cf_id id;
        memset(&id, 0, sizeof id);
        memcpy(id.b, &i, sizeof i);
        assert_int_equal(cf_ccache_read(c, &id, 0, &b, 1), 1);
        assert_int_equal((uint8_t)b, (uint8_t)i);
    }
    cf_ccache_free(c);
}

static void test_parse_size(void **state)
{
    (void)state;
    size_t v;
    assert_int_equal(cf_mount_parse_size("65536", &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(cf_mount_parse_size("32M", &v), 0);
    assert_int_equal(v, 32u << 20);
    assert_int_equal(cf_mount_parse_size("1GiB", &v), 0);
    assert_int_equal(v, 1u << 30);
    assert_int_equal(cf_mount_parse_size("4k", &v), 0);
    assert_int_equal(v, 4096);
    assert_int_equal(cf_mount_parse_size("", &v), -1);
    assert_int_equal(cf_mount_parse_size("-1", &v), -1);
    assert_int_equal(cf_mount_parse_size("12X", &v), -1);
    assert_int_equal(cf_mount_parse_size("M", &v), -1);
    assert_int_equal(cf_mount_parse_size("99999999999999999999G", &v), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offsets),         cmocka_unit_test(test_offsets_every_byte),
        cmocka_unit_test(test_offsets_refused), cmocka_unit_test(test_cache_hit_and_range),
        cmocka_unit_test(test_cache_lru_bound), cmocka_unit_test(test_cache_many),
        cmocka_unit_test(test_parse_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
