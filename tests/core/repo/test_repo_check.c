/* Corruption is detected and named: flipped bytes in packs and indexes,
 * missing and truncated packs. The pack trailer is parsed here from the
 * bytes, following docs/repository-format.md, as an outside reader would. */
#include "repo_test.h"

typedef struct problems {
    size_t n;
    char lines[16][512];
} problems;

static void on_problem(void *ud, const char *object, const char *chunk, const char *msg)
{
    problems *p = ud;
    if (p->n < 16)
        snprintf(p->lines[p->n], sizeof p->lines[0], "%s | %s | %s", object, chunk ? chunk : "-", msg);
    p->n++;
}

static int has_line(const problems *p, const char *a, const char *b)
{
    for (size_t i = 0; i < p->n && i < 16; i++)
        if (strstr(p->lines[i], a) && (!b || strstr(p->lines[i], b)))
            return 1;
    for (size_t i = 0; i < p->n && i < 16; i++)
        print_error("problem: %s\n", p->lines[i]);
    return 0;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Offset and stored length of a chunk's blob, from the pack's trailer. */
static int blob_in_pack(mem_storage *ms, const char *pack, const cf_id *id, uint64_t *off,
                        uint32_t *stored, uint8_t *comp)
{
    size_t len;
    uint8_t *p = mem_storage_get(ms, pack, &len);
    uint32_t tlen = le32(p + len - 40), count = le32(p + len - 36);
    assert_int_equal(tlen, count * 52);
    const uint8_t *t = p + len - 40 - tlen;
    int found = 0;
    for (uint32_t i = 0; i < count && !found; i++, t += 52) {
        if (memcmp(t, id->b, 32) != 0)
            continue;
        *comp = t[32];
        *off = (uint64_t)le32(t + 36) | (uint64_t)le32(t + 40) << 32;
        *stored = le32(t + 44);
        found = 1;
    }
    free(p);
    return found ? 0 : -1;
}

typedef struct fx {
    cf_store *st;
    mem_storage *ms;
    cf_repo *r;
    cf_id ids[40];
    size_t lens[40];
} fx;

static void chunk(uint8_t *buf, size_t i, size_t *len)
{
    *len = 5000 + i * 997;
    if (i % 2)
        fill_text(buf, *len, i);
    else
        fill_random(buf, *len, i);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->r = new_repo(&f->st, &f->ms, 64 * 1024);
    if (!f->r)
        return -1;
    uint8_t buf[50000];
    for (size_t i = 0; i < 40; i++) {
        chunk(buf, i, &f->lens[i]);
        cf_repo_hash(f->r, buf, f->lens[i], &f->ids[i]);
        if (cf_repo_put_chunk(f->r, &f->ids[i], buf, f->lens[i], NULL) != 0)
            return -1;
    }
    if (cf_repo_flush(f->r) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    cf_repo_close(f->r);
    cf_store_free(f->st);
    free(f);
    return 0;
}

static void test_healthy(void **state)
{
    fx *f = *state;
    problems p = {0};
    assert_int_equal(cf_repo_check_structure(f->r, on_problem, &p), 0);
    size_t npacks = mem_storage_count(f->ms, "data/");
    assert_true(npacks > 2);
    for (size_t i = 0; i < npacks; i++) {
        char *k = mem_storage_key(f->ms, "data/", i);
        assert_int_equal(cf_repo_check_pack(f->r, k, on_problem, &p), 0);
        free(k);
    }
    assert_int_equal(p.n, 0);
    assert_int_equal(cf_repo_check_pack(f->r, "data/zz/nope", on_problem, &p), -1);
    assert_error_has("not a pack key");
}

/* A flipped byte inside a blob: get_chunk and check_pack name the chunk
 * and the pack; the other chunks of the pack stay readable. */
static void test_flipped_blob(void **state)
{
    fx *f = *state;
    for (size_t i = 4; i < 6; i++) { /* one raw blob, one zstd blob */
        char pack[128], hex[65];
        assert_non_null(cf_repo_chunk_pack(f->r, &f->ids[i], pack, sizeof pack));
        cf_id_hex(&f->ids[i], hex);
        uint64_t off = 0;
        uint32_t stored = 0;
        uint8_t comp = 9;
        assert_int_equal(blob_in_pack(f->ms, pack, &f->ids[i], &off, &stored, &comp), 0);
        assert_int_equal(comp, i % 2); /* random data raw (0), text zstd (1) */
        assert_int_equal(mem_storage_flip(f->ms, pack, off + stored / 2), 0);

        cf_buf out = {0};
        assert_int_equal(cf_repo_get_chunk(f->r, &f->ids[i], &out), -1);
        assert_error_has(hex);
        assert_error_has(pack);
        problems p = {0};
        assert_true(cf_repo_check_pack(f->r, pack, on_problem, &p) >= 1);
        assert_true(has_line(&p, pack, hex));
        assert_true(has_line(&p, pack, "trailer mismatch"));
        /* neighbours are fine */
        for (size_t k = 0; k < 40; k++) {
            if (k == i)
                continue;
            assert_int_equal(cf_repo_get_chunk(f->r, &f->ids[k], &out), 0);
            assert_int_equal(out.len, f->lens[k]);
        }
        cf_buf_free(&out);
        /* structure only checks presence and sizes */
        assert_int_equal(cf_repo_check_structure(f->r, NULL, NULL), 0);
        mem_storage_flip(f->ms, pack, off + stored / 2);
        assert_int_equal(cf_repo_check_pack(f->r, pack, NULL, NULL), 0);
    }
}

static void test_missing_pack(void **state)
{
    fx *f = *state;
    char pack[128], hex[65];
    assert_non_null(cf_repo_chunk_pack(f->r, &f->ids[10], pack, sizeof pack));
    cf_id_hex(&f->ids[10], hex);
    assert_int_equal(mem_storage_drop(f->ms, pack), 0);
    cf_buf out = {0};
    assert_int_equal(cf_repo_get_chunk(f->r, &f->ids[10], &out), -1);
    assert_error_has(hex);
    char want[160];
    snprintf(want, sizeof want, "pack %s missing", pack);
    assert_error_has(want);
    cf_buf_free(&out);
    problems p = {0};
    assert_int_equal(cf_repo_check_structure(f->r, on_problem, &p), 1);
    assert_true(has_line(&p, pack, "pack missing"));
    p.n = 0;
    assert_int_equal(cf_repo_check_pack(f->r, pack, on_problem, &p), 1);
    /* rebuild covers what is left */
    assert_int_equal(cf_repo_rebuild_index(f->r), 0);
    assert_false(cf_repo_has(f->r, &f->ids[10]));
    assert_int_equal(cf_repo_check_structure(f->r, NULL, NULL), 0);
}

static void test_truncated_pack(void **state)
{
    fx *f = *state;
    char pack[128];
    assert_non_null(cf_repo_chunk_pack(f->r, &f->ids[20], pack, sizeof pack));
    int64_t size = mem_storage_size(f->ms, pack);
    assert_int_equal(mem_storage_truncate(f->ms, pack, (uint64_t)size - 100), 0);
    problems p = {0};
    assert_int_equal(cf_repo_check_structure(f->r, on_problem, &p), 1);
    assert_true(has_line(&p, pack, "the index says"));
    p.n = 0;
    assert_true(cf_repo_check_pack(f->r, pack, on_problem, &p) >= 1);
    assert_true(has_line(&p, pack, NULL));
    /* rebuild skips the unreadable pack (with a warning) */
    assert_int_equal(cf_repo_rebuild_index(f->r), 0);
    assert_false(cf_repo_has(f->r, &f->ids[20]));
    assert_true(cf_repo_has(f->r, &f->ids[0]) || cf_repo_has(f->r, &f->ids[39]));
}

/* A damaged trailer table: check_pack reports it, rebuild skips the pack. */
static void test_flipped_table(void **state)
{
    fx *f = *state;
    char pack[128];
    assert_non_null(cf_repo_chunk_pack(f->r, &f->ids[30], pack, sizeof pack));
    int64_t size = mem_storage_size(f->ms, pack);
    /* the offset field of the last table entry */
    assert_int_equal(mem_storage_flip(f->ms, pack, (uint64_t)size - 40 - 52 + 36), 0);
    problems p = {0};
    assert_true(cf_repo_check_pack(f->r, pack, on_problem, &p) >= 2);
    assert_true(has_line(&p, pack, "corrupt trailer table"));
    assert_true(has_line(&p, pack, "trailer mismatch"));
    /* the index is independent of the table: data still readable */
    cf_buf out = {0};
    assert_int_equal(cf_repo_get_chunk(f->r, &f->ids[30], &out), 0);
    cf_buf_free(&out);
    assert_int_equal(cf_repo_rebuild_index(f->r), 0);
    assert_false(cf_repo_has(f->r, &f->ids[30]));
}

/* A flipped byte in an index object: open refuses, naming it; open with
 * SKIP_BAD_INDEX works, check_structure names it, rebuild repairs. */
static void test_flipped_index(void **state)
{
    fx *f = *state;
    char *ikey = mem_storage_key(f->ms, "index/", 0);
    assert_non_null(ikey);
    int64_t size = mem_storage_size(f->ms, ikey);
    assert_int_equal(mem_storage_flip(f->ms, ikey, (uint64_t)size / 2), 0);
    cf_repo_close(f->r);
    f->r = NULL;
    assert_int_equal(cf_repo_open(f->st, &f->r), -1);
    assert_error_has(ikey);
    assert_int_equal(cf_repo_open_ex(f->st, CF_REPO_OPEN_SKIP_BAD_INDEX, &f->r), 0);
    assert_false(cf_repo_has(f->r, &f->ids[0]));
    problems p = {0};
    assert_int_equal(cf_repo_check_structure(f->r, on_problem, &p), 1);
    assert_true(has_line(&p, ikey, "corrupt"));
    assert_int_equal(cf_repo_rebuild_index(f->r), 0);
    assert_false(mem_storage_exists(f->ms, ikey));
    cf_repo_close(f->r);
    f->r = NULL;
    assert_int_equal(cf_repo_open(f->st, &f->r), 0);
    cf_buf out = {0};
    for (size_t i = 0; i < 40; i++) {
        assert_int_equal(cf_repo_get_chunk(f->r, &f->ids[i], &out), 0);
        assert_int_equal(out.len, f->lens[i]);
    }
    cf_buf_free(&out);
    assert_int_equal(cf_repo_check_structure(f->r, NULL, NULL), 0);
    free(ikey);
}

static void test_flipped_config(void **state)
{
    fx *f = *state;
    assert_int_equal(mem_storage_flip(f->ms, "config", 20), 0);
    problems p = {0};
    assert_int_equal(cf_repo_check_structure(f->r, on_problem, &p), 1);
    assert_true(has_line(&p, "config", "trailer mismatch"));
    cf_repo *r2;
    assert_int_equal(cf_repo_open(f->st, &r2), -1);
    assert_error_has("config");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_healthy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_blob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_pack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_pack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_config, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
