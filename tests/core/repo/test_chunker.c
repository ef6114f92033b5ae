/* FastCDC chunker: reproducible, content-defined, bounded, fast. */
#include "repo_test.h"

#include <time.h>

#include "repo/chunker.h"

static const cf_cdc_params small = {.min_size = 2048, .avg_size = 8192, .max_size = 65536, .seed = 7};

typedef struct cutlist {
    size_t *len;
    size_t n;
} cutlist;

static cutlist chunk_all(const cf_cdc *c, const uint8_t *buf, size_t len)
{
    cutlist cl = {malloc(sizeof(size_t) * (len / c->p.min_size + 2)), 0};
    size_t off = 0;
    while (off < len) {
        size_t n = cf_cdc_cut(c, buf + off, len - off);
        assert_true(n > 0);
        cl.len[cl.n++] = n;
        off += n;
    }
    return cl;
}

static uint64_t fnv(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* The gear table is splitmix64 from the seed: these values let a reader
 * of docs/repository-format.md check an independent implementation. */
static void test_gear_and_masks(void **state)
{
    (void)state;
    cf_cdc c;
    cf_cdc_params p = {.seed = 0};
    assert_int_equal(cf_cdc_init(&c, &p), 0);
    assert_true(c.gear[0] == 0xe220a8397b1dcdafull);
    assert_true(c.gear[1] == 0x6e789e6aa1b965f4ull);
    assert_true(c.gear[2] == 0x06c45d188009454full);
    /* defaults: 512 KiB / 1 MiB / 8 MiB, masks of 22 and 18 top bits */
    assert_int_equal(c.p.min_size, 512 * 1024);
    assert_int_equal(c.p.avg_size, 1024 * 1024);
    assert_int_equal(c.p.max_size, 8 * 1024 * 1024);
    assert_true(c.mask_s == 0xfffffc0000000000ull);
    assert_true(c.mask_l == 0xffffc00000000000ull);
}

/* The vector of docs/repository-format.md section 4. */
static void test_doc_vector(void **state)
{
    (void)state;
    cf_cdc c;
    cf_cdc_params p = {.min_size = 2048, .avg_size = 8192, .max_size = 65536,
                       .seed = 0x0123456789abcdefull};
    assert_int_equal(cf_cdc_init(&c, &p), 0);
    assert_true(c.gear[0] == 0x157a3807a48faa9dull);
    assert_true(c.gear[255] == 0x293d194eee358ff8ull);
    size_t len = 1 << 20;
    uint8_t *buf = malloc(len);
    uint64_t st = 1;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t z = (st += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        for (int k = 0; k < 8; k++)
            buf[i + k] = (uint8_t)(z >> (8 * k));
    }
    assert_memory_equal(buf, "\xc1\x5c\x02\x89\xec\x2d\x0a\x91", 8);
    static const size_t want[10] = {10764, 8491, 9337, 8651, 14466, 10113, 2573, 8536, 2658, 8533};
    cutlist cl = chunk_all(&c, buf, len);
    assert_int_equal(cl.n, 111);
    for (int i = 0; i < 10; i++)
        assert_int_equal(cl.len[i], want[i]);
    free(cl.len);
    free(buf);
}

static void test_params_validated(void **state)
{
    (void)state;
    cf_cdc c;
    cf_cdc_params bad[] = {
        {.min_size = 2048, .avg_size = 10000, .max_size = 65536}, /* avg not a power of two */
        {.min_size = 32, .avg_size = 8192, .max_size = 65536},    /* min below the window */
        {.min_size = 8192, .avg_size = 8192, .max_size = 65536},  /* min == avg */
        {.min_size = 2048, .avg_size = 8192, .max_size = 8192},   /* max == avg */
        {.min_size = 2048, .avg_size = 8192, .max_size = 1u << 30}, /* max too large */
    };
    for (size_t i = 0; i < CF_ARRAY_LEN(bad); i++) {
        assert_int_equal(cf_cdc_init(&c, &bad[i]), -1);
        assert_non_null(strstr(cf_error(), "chunker"));
    }
    assert_int_equal(cf_cdc_init(&c, &small), 0);
}

static void test_deterministic(void **state)
{
    (void)state;
    size_t len = 4 << 20;
    uint8_t *buf = malloc(len);
    fill_random(buf, len, 1);
    cf_cdc a, b, other;
    cf_cdc_params p2 = small;
    p2.seed = 8;
    assert_int_equal(cf_cdc_init(&a, &small), 0);
    assert_int_equal(cf_cdc_init(&b, &small), 0);
    assert_int_equal(cf_cdc_init(&other, &p2), 0);
    cutlist x = chunk_all(&a, buf, len), y = chunk_all(&b, buf, len), z = chunk_all(&other, buf, len);
    assert_int_equal(x.n, y.n);
    assert_memory_equal(x.len, y.len, x.n * sizeof *x.len);
    /* another seed, other boundaries */
    int same = x.n == z.n && memcmp(x.len, z.len, x.n * sizeof *x.len) == 0;
    assert_false(same);
    free(x.len);
    free(y.len);
    free(z.len);
    free(buf);
}

static void test_bounds(void **state)
{
    (void)state;
    cf_cdc c;
    assert_int_equal(cf_cdc_init(&c, &small), 0);
    size_t len = 2 << 20;
    uint8_t *buf = malloc(len);
    /* random data, then constant data (where a gear hash never changes, so
     * every chunk is min or max) */
    for (int kind = 0; kind < 2; kind++) {
        if (kind == 0)
            fill_random(buf, len, 3);
        else
            memset(buf, 0, len);
        cutlist cl = chunk_all(&c, buf, len);
        size_t total = 0;
        for (size_t i = 0; i < cl.n; i++) {
            if (i + 1 < cl.n)
                assert_true(cl.len[i] >= small.min_size);
            assert_true(cl.len[i] <= small.max_size);
            total += cl.len[i];
        }
        assert_int_equal(total, len);
        free(cl.len);
    }
    /* short inputs come back whole */
    assert_int_equal(cf_cdc_cut(&c, buf, 0), 0);
    assert_int_equal(cf_cdc_cut(&c, buf, 100), 100);
    assert_int_equal(cf_cdc_cut(&c, buf, small.min_size), small.min_size);
    free(buf);
}

static void test_average(void **state)
{
    (void)state;
    cf_cdc c;
    assert_int_equal(cf_cdc_init(&c, &small), 0);
    size_t len = 32 << 20;
    uint8_t *buf = malloc(len);
    fill_random(buf, len, 5);
    cutlist cl = chunk_all(&c, buf, len);
    double mean = (double)len / (double)cl.n;
    print_message("chunker: min 2 KiB avg 8 KiB max 64 KiB: %zu chunks, mean %.0f bytes (%.2f x avg)\n",
                  cl.n, mean, mean / small.avg_size);
    /* With min = avg/4 and normalization level 2 the mean lands a little
     * above avg (see docs/repository-format.md). */
    assert_true(mean > 0.8 * small.avg_size && mean < 1.5 * small.avg_size);
    free(cl.len);
    free(buf);
}

/* Count chunks of b that are not chunks of a (by content). */
static size_t unshared(const uint8_t *a, const cutlist *ca, const uint8_t *b, const cutlist *cb)
{
    uint64_t *ha = malloc(ca->n * sizeof *ha);
    size_t off = 0;
    for (size_t i = 0; i < ca->n; i++) {
        ha[i] = fnv(a + off, ca->len[i]) ^ ca->len[i];
        off += ca->len[i];
    }
    size_t miss = 0;
    off = 0;
    for (size_t i = 0; i < cb->n; i++) {
        uint64_t h = fnv(b + off, cb->len[i]) ^ cb->len[i];
        off += cb->len[i];
        int found = 0;
        for (size_t k = 0; k < ca->n && !found; k++)
            found = ha[k] == h;
        miss += !found;
    }
    free(ha);
    return miss;
}

static void test_resync(void **state)
{
    (void)state;
    cf_cdc c;
    assert_int_equal(cf_cdc_init(&c, &small), 0);
    size_t len = 8 << 20, ins = 100;
    uint8_t *a = malloc(len), *b = malloc(len + ins);
    fill_random(a, len, 11);
    /* insertion in the middle */
    memcpy(b, a, len / 2);
    fill_random(b + len / 2, ins, 12);
    memcpy(b + len / 2 + ins, a + len / 2, len - len / 2);
    cutlist ca = chunk_all(&c, a, len), cb = chunk_all(&c, b, len + ins);
    size_t miss = unshared(a, &ca, b, &cb);
    print_message("chunker: insertion of %zu bytes: %zu of %zu chunks new\n", ins, miss, cb.n);
    /* the edited chunk and at most a couple around it */
    assert_true(miss >= 1 && miss <= 3);
    free(cb.len);

    /* deletion in the middle */
    memcpy(b, a, len / 3);
    memcpy(b + len / 3, a + len / 3 + ins, len - len / 3 - ins);
    cb = chunk_all(&c, b, len - ins);
    miss = unshared(a, &ca, b, &cb);
    print_message("chunker: deletion of %zu bytes: %zu of %zu chunks new\n", ins, miss, cb.n);
    assert_true(miss >= 1 && miss <= 3);
    free(ca.len);
    free(cb.len);
    free(a);
    free(b);
}

/* Not an assertion: the throughput lands in the test log. */
static void test_benchmark(void **state)
{
    (void)state;
    cf_cdc c;
    assert_int_equal(cf_cdc_init(&c, &(cf_cdc_params){.seed = 99}), 0); /* defaults */
    size_t len = 256 << 20;
    uint8_t *buf = malloc(len);
    fill_random(buf, len, 13);
    double best = 0;
    size_t nchunks = 0;
    for (int round = 0; round < 3; round++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        size_t off = 0, n = 0;
        while (off < len) {
            off += cf_cdc_cut(&c, buf + off, len - off);
            n++;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        double mbs = (double)len / s / 1e6;
        if (mbs > best)
            best = mbs;
        nchunks = n;
    }
    print_message("chunker benchmark: defaults (512K/1M/8M), 256 MiB random: %.0f MB/s, "
                  "%zu chunks, mean %.2f MiB\n",
                  best, nchunks, (double)len / (double)nchunks / (1 << 20));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gear_and_masks), cmocka_unit_test(test_doc_vector),
        cmocka_unit_test(test_params_validated),
        cmocka_unit_test(test_deterministic),  cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_average),        cmocka_unit_test(test_resync),
        cmocka_unit_test(test_benchmark),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
