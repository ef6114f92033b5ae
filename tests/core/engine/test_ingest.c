/* core/engine/ingest.c: a byte stream becomes the same chunk list however
 * it is fed (pieces of any size, one big write, a file descriptor), the
 * second time adds nothing (dedup), and a 1-byte insertion only changes
 * the chunks around it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/ingest.h"
#include "engine/progress.h"
#include "engine_test.h"

#define STREAM (20u << 20)

typedef struct fx {
    et_dir d;
    cf_store *st;
    mem_storage *ms;
    cf_repo *repo;
    cf_cdc cdc;
    uint8_t *data;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (et_dir_new(&f->d) != 0)
        return -1;
    f->st = mem_store_new("target 'mem'", &f->ms);
    cf_repo_params p = {.cdc = {.min_size = 64 << 10, .avg_size = 256 << 10, .max_size = 1 << 20,
                                .seed = 7}};
    if (cf_repo_init(f->st, &p) != 0 || cf_repo_open(f->st, &f->repo) != 0)
        return -1;
    if (cf_cdc_init(&f->cdc, cf_repo_cdc(f->repo)) != 0)
        return -1;
    f->data = malloc(STREAM + 1);
    et_fill_random(f->data, STREAM, 11);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    cf_repo_close(f->repo);
    cf_store_free(f->st);
    free(f->data);
    et_dir_free(&f->d);
    free(f);
    return 0;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void finish(cf_ingest *g, cf_id **ids, size_t *n)
{
    if (cf_ingest_finish(g) != 0)
        fail_msg("finish: %s", cf_error());
    *ids = cf_ingest_take(g, n);
}

static void test_same_stream_same_chunks_and_dedup(void **state)
{
    fx *f = *state;
    cf_ingest g;
    cf_ingest_init(&g, f->repo, &f->cdc);

    /* 1: random piece sizes, from 1 byte to 3 MiB */
    size_t off = 0;
    while (off < STREAM) {
        size_t n = (next_rand() % 4 == 0) ? 1 + next_rand() % 7 : 1 + next_rand() % (3u << 20);
        if (n > STREAM - off)
            n = STREAM - off;
        assert_int_equal(cf_ingest_write(&g, f->data + off, n), 0);
        off += n;
    }
    cf_id *a;
    size_t na;
    finish(&g, &a, &na);
    assert_int_equal(g.size, STREAM);
    assert_int_equal(g.new_raw, STREAM); /* random data: every chunk new */
    assert_true(na >= 20 && na <= 320);

    /* Chunk sizes obey the parameters and add up. */
    uint64_t sum = 0;
    for (size_t i = 0; i < na; i++) {
        int64_t sz = cf_repo_chunk_size(f->repo, &a[i]);
        assert_true(sz > 0);
        assert_true(sz <= (1 << 20));
        if (i + 1 < na)
            assert_true(sz >= (64 << 10));
        sum += (uint64_t)sz;
    }
    assert_int_equal(sum, STREAM);

    /* The cuts are those of the chunker run over the whole stream at
     * once: cutting early inside the buffer never moves a boundary. */
    size_t pos = 0, k = 0;
    while (pos < STREAM) {
        size_t n = cf_cdc_cut(&f->cdc, f->data + pos, STREAM - pos);
        cf_id ref;
        cf_repo_hash(f->repo, f->data + pos, n, &ref);
        assert_true(k < na);
        assert_memory_equal(&ref, &a[k], sizeof ref);
        pos += n;
        k++;
    }
    assert_int_equal(k, na);

    /* 2: the same bytes in 4 KiB pieces: same list, nothing new. */
    cf_repo_stats s1, s2;
    cf_repo_get_stats(f->repo, &s1);
    cf_ingest_reset(&g);
    assert_int_equal(g.nchunks, 0);
    assert_int_equal(g.size, 0);
    for (off = 0; off < STREAM; off += 4096)
        assert_int_equal(cf_ingest_write(&g, f->data + off, 4096), 0);
    cf_id *b;
    size_t nb;
    finish(&g, &b, &nb);
    assert_int_equal(nb, na);
    assert_memory_equal(a, b, na * sizeof(cf_id));
    assert_int_equal(g.new_raw, STREAM); /* unchanged: no new bytes */
    cf_repo_get_stats(f->repo, &s2);
    assert_int_equal(s2.bytes_new_raw, s1.bytes_new_raw);
    assert_int_equal(s2.chunks_new, s1.chunks_new);
    assert_int_equal(s2.chunks_dup - s1.chunks_dup, na);

    /* 3: one write of everything. */
    cf_ingest_reset(&g);
    assert_int_equal(cf_ingest_write(&g, f->data, STREAM), 0);
    cf_id *c;
    size_t nc;
    finish(&g, &c, &nc);
    assert_int_equal(nc, na);
    assert_memory_equal(a, c, na * sizeof(cf_id));

    /* 4: from a file descriptor. */
    char path[400];
    snprintf(path, sizeof path, "%s/stream.bin", f->d.path);
    assert_int_equal(et_write(path, f->data, STREAM), 0);
    int fd = open(path, O_RDONLY);
    cf_ingest_reset(&g);
    assert_int_equal(cf_ingest_fd(&g, fd, path), 0);
    close(fd);
    cf_id *d;
    size_t nd;
    finish(&g, &d, &nd);
    assert_int_equal(nd, na);
    assert_memory_equal(a, d, na * sizeof(cf_id));
    assert_int_equal(g.new_raw, STREAM);

    /* The chunks read back as the stream. */
    assert_int_equal(cf_repo_flush(f->repo), 0);
    cf_buf buf = {0};
    off = 0;
    for (size_t i = 0; i < na; i++) {
        if (cf_repo_get_chunk(f->repo, &a[i], &buf) != 0)
            fail_msg("chunk %zu: %s", i, cf_error());
        assert_true(off + buf.len <= STREAM);
        assert_memory_equal(buf.data, f->data + off, buf.len);
        off += buf.len;
    }
    assert_int_equal(off, STREAM);
    cf_buf_free(&buf);
    free(a);
    free(b);
    free(c);
    free(d);
    cf_ingest_free(&g);
}

static void test_insertion_shares_most_chunks(void **state)
{
    fx *f = *state;
    cf_ingest g;
    cf_ingest_init(&g, f->repo, &f->cdc);
    assert_int_equal(cf_ingest_write(&g, f->data, STREAM), 0);
    cf_id *a;
    size_t na;
    finish(&g, &a, &na);
    uint64_t before = g.new_raw;

    /* One byte inserted in the middle. */
    size_t mid = STREAM / 2;
    memmove(f->data + mid + 1, f->data + mid, STREAM - mid);
    f->data[mid] = 'X';
    cf_ingest_reset(&g);
    for (size_t off = 0; off < STREAM + 1; off += 100000) {
        size_t n = STREAM + 1 - off < 100000 ? STREAM + 1 - off : 100000;
        assert_int_equal(cf_ingest_write(&g, f->data + off, n), 0);
    }
    cf_id *b;
    size_t nb;
    finish(&g, &b, &nb);
    assert_int_equal(g.size, STREAM + 1);
    size_t shared = 0;
    for (size_t i = 0; i < nb; i++)
        for (size_t k = 0; k < na; k++)
            if (memcmp(&b[i], &a[k], sizeof(cf_id)) == 0) {
                shared++;
                break;
            }
    /* Only the chunk holding the insertion (and at most its neighbours,
     * while the cut points resynchronise) is new. */
    if (shared + 3 < nb)
        fail_msg("only %zu of %zu chunks shared", shared, nb);
    assert_true(shared < nb);
    uint64_t added = g.new_raw - before;
    assert_true(added > 0);
    assert_true(added <= 3u << 20); /* at most three maximal chunks */
    /* The same prefix gives the same leading chunks. */
    assert_memory_equal(a, b, sizeof(cf_id) * 2);
    free(a);
    free(b);
    cf_ingest_free(&g);
}

static void test_small_and_empty_streams(void **state)
{
    fx *f = *state;
    cf_ingest g;
    cf_ingest_init(&g, f->repo, &f->cdc);
    cf_id *ids;
    size_t n;
    finish(&g, &ids, &n); /* nothing written */
    assert_int_equal(n, 0);
    assert_int_equal(g.size, 0);
    free(ids);

    cf_ingest_reset(&g);
    assert_int_equal(cf_ingest_write(&g, "x", 1), 0);
    assert_int_equal(cf_ingest_write(&g, "", 0), 0);
    finish(&g, &ids, &n);
    assert_int_equal(n, 1);
    assert_int_equal(g.size, 1);
    cf_id want;
    cf_repo_hash(f->repo, "x", 1, &want);
    assert_memory_equal(&ids[0], &want, sizeof want);
    free(ids);

    /* Below the minimum chunk size: one chunk. */
    cf_ingest_reset(&g);
    assert_int_equal(cf_ingest_write(&g, f->data, 1000), 0);
    finish(&g, &ids, &n);
    assert_int_equal(n, 1);
    free(ids);

    /* Progress counts every byte fed. */
    cf_progress_start("t", 0, 1);
    cf_ingest_reset(&g);
    assert_int_equal(cf_ingest_write(&g, f->data, 5000), 0);
    assert_int_equal(cf_progress_bytes(), 5000);
    cf_progress_stop();
    cf_ingest_free(&g);
}

static void test_errors(void **state)
{
    fx *f = *state;
    cf_ingest g;
    cf_ingest_init(&g, f->repo, &f->cdc);
    cf_cancel_flag = 1;
    int rc = cf_ingest_write(&g, f->data, 10);
    int rc2 = cf_ingest_fd(&g, 0, "stdin");
    cf_cancel_flag = 0;
    assert_int_equal(rc, -1);
    assert_int_equal(rc2, -1);
    assert_error_has("cancelled");

    /* A read error names the file. */
    int fd = open(f->d.path, O_RDONLY | O_DIRECTORY);
    cf_ingest_reset(&g);
    assert_int_equal(cf_ingest_fd(&g, fd, "data/dir"), -1);
    close(fd);
    assert_error_has("data/dir: read error");

    /* A full store fails the chunk's put. */
    mem_storage_fail_writes_after(f->ms, 0);
    cf_ingest_reset(&g);
    rc = cf_ingest_write(&g, f->data, STREAM);
    if (rc == 0)
        rc = cf_ingest_finish(&g);
    if (rc == 0)
        rc = cf_repo_flush(f->repo);
    assert_int_equal(rc, -1);
    assert_error_has("no space");
    mem_storage_fail_writes_after(f->ms, UINT64_MAX);
    cf_repo_abort(f->repo);
    cf_ingest_free(&g);
}

int main(void)
{
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_same_stream_same_chunks_and_dedup),
        T(test_insertion_shares_most_chunks),
        T(test_small_and_empty_streams),
        T(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
