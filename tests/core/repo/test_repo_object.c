/* Envelope objects: streamed writer/reader, header and trailer checks. */
#include <sys/stat.h>

#include "repo_test.h"

#include <openssl/evp.h>

typedef struct fx {
    cf_store *st;
    mem_storage *ms;
    cf_repo *r;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->r = new_repo(&f->st, &f->ms, 0);
    if (!f->r)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    assert_int_equal(mem_storage_open_writers(f->ms), 0);
    cf_repo_close(f->r);
    cf_store_free(f->st);
    free(f);
    return 0;
}

/* 10 MB through odd-sized writes and reads; bytes checked against the
 * documented layout. */
static void test_large_round_trip(void **state)
{
    fx *f = *state;
    size_t len = 10 * 1000 * 1000;
    uint8_t *data = malloc(len), *back = malloc(len + 1);
    fill_text(data, len / 2, 1);
    fill_random(data + len / 2, len - len / 2, 2);

    cf_objw *w;
    assert_int_equal(cf_repo_objw_open(f->r, CF_OBJ_MANIFEST, "sets/big", &w), 0);
    for (size_t off = 0, step = 1; off < len; step = step * 3 % 100003 + 1) {
        size_t n = step < len - off ? step : len - off;
        assert_int_equal(cf_repo_objw_write(w, data + off, n), 0);
        off += n;
    }
    /* invisible until commit */
    assert_false(mem_storage_exists(f->ms, "sets/big"));
    assert_int_equal(cf_repo_objw_commit(w), 0);
    assert_int_equal(mem_storage_flags(f->ms, "sets/big"), COFFER_WRITE_PRIVATE);

    cf_objr *rd;
    assert_int_equal(cf_repo_objr_open(f->r, CF_OBJ_MANIFEST, "sets/big", &rd), 0);
    size_t got = 0;
    for (size_t step = 7;; step = step * 5 % 65521 + 1) {
        long n = cf_repo_objr_read(rd, back + got, step < len + 1 - got ? step : len + 1 - got);
        assert_true(n >= 0);
        if (n == 0)
            break;
        got += (size_t)n;
    }
    assert_int_equal(cf_repo_objr_read(rd, back, 10), 0); /* stays at end */
    cf_repo_objr_close(rd);
    assert_int_equal(got, len);
    assert_memory_equal(data, back, len);

    /* layout: "COFR", version 1, type, flags (zstd), encryption 0 ...
     * SHA-256 of everything before the last 32 bytes */
    size_t olen;
    uint8_t *obj = mem_storage_get(f->ms, "sets/big", &olen);
    assert_memory_equal(obj, "COFR\x01\x04\x01\x00", 8);
    assert_true(olen < len); /* half of it compresses */
    uint8_t md[32];
    unsigned mdlen;
    EVP_Digest(obj, olen - 32, md, &mdlen, EVP_sha256(), NULL);
    assert_memory_equal(md, obj + olen - 32, 32);
    free(obj);
    free(data);
    free(back);
}

static void test_small_and_empty(void **state)
{
    fx *f = *state;
    cf_buf b = {0};
    assert_int_equal(cf_repo_put_object(f->r, CF_OBJ_MANIFEST, "sets/a", "hello", 5), 0);
    assert_int_equal(cf_repo_get_object(f->r, CF_OBJ_MANIFEST, "sets/a", &b), 0);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "hello", 5);
    assert_int_equal(cf_repo_put_object(f->r, CF_OBJ_MANIFEST, "sets/empty", "", 0), 0);
    assert_int_equal(cf_repo_get_object(f->r, CF_OBJ_MANIFEST, "sets/empty", &b), 0);
    assert_int_equal(b.len, 0);
    cf_buf_free(&b);
}

static void test_abort_leaves_nothing(void **state)
{
    fx *f = *state;
    cf_objw *w;
    assert_int_equal(cf_repo_objw_open(f->r, CF_OBJ_MANIFEST, "sets/x", &w), 0);
    assert_int_equal(cf_repo_objw_write(w, "abc", 3), 0);
    cf_repo_objw_abort(w);
    assert_false(mem_storage_exists(f->ms, "sets/x"));
}

/* Run a read to its end; return 0 if it succeeded. */
static int read_all(cf_repo *r, int type, const char *key)
{
    cf_buf b = {0};
    int rc = cf_repo_get_object(r, type, key, &b);
    cf_buf_free(&b);
    return rc;
}

static void test_corruption_named(void **state)
{
    fx *f = *state;
    size_t len = 300000;
    uint8_t *data = malloc(len);
    fill_random(data, len, 9);
    assert_int_equal(cf_repo_put_object(f->r, CF_OBJ_MANIFEST, "sets/c", data, len), 0);
    int64_t olen = mem_storage_size(f->ms, "sets/c");

    /* a byte in the body (zstd or the hash catches it) */
    assert_int_equal(mem_storage_flip(f->ms, "sets/c", (uint64_t)olen / 2), 0);
    assert_int_equal(read_all(f->r, CF_OBJ_MANIFEST, "sets/c"), -1);
    assert_error_has("sets/c");
    assert_error_has("corrupt");
    mem_storage_flip(f->ms, "sets/c", (uint64_t)olen / 2);
    assert_int_equal(read_all(f->r, CF_OBJ_MANIFEST, "sets/c"), 0);

    /* a byte of the trailer: only the hash catches it, at the end */
    mem_storage_flip(f->ms, "sets/c", (uint64_t)olen - 1);
    assert_int_equal(read_all(f->r, CF_OBJ_MANIFEST, "sets/c"), -1);
    assert_error_has("sets/c: corrupt object: SHA-256 trailer mismatch");
    mem_storage_flip(f->ms, "sets/c", (uint64_t)olen - 1);

    /* wrong type asked for */
    assert_int_equal(read_all(f->r, CF_OBJ_INDEX, "sets/c"), -1);
    assert_error_has("sets/c: object is a manifest");

    /* encryption scheme from a later version: refused as such */
    mem_storage_flip(f->ms, "sets/c", 7); /* 0x00 -> 0xff */
    assert_int_equal(read_all(f->r, CF_OBJ_MANIFEST, "sets/c"), -1);
    assert_error_has("encryption scheme 255");
    mem_storage_flip(f->ms, "sets/c", 7);
    /* format version */
    mem_storage_flip(f->ms, "sets/c", 4);
    assert_int_equal(read_all(f->r, CF_OBJ_MANIFEST, "sets/c"), -1);
    assert_error_has("format version 254 is not supported");
    mem_storage_flip(f->ms, "sets/c", 4);
    /* magic */
    mem_storage_flip(f->ms, "sets/c", 0);
    assert_int_equal(read_all(f->r, CF_OBJ_MANIFEST, "sets/c"), -1);
    assert_error_has("bad magic");
    mem_storage_flip(f->ms, "sets/c", 0);

    /* truncation, in the body and into the header */
    assert_int_equal(mem_storage_truncate(f->ms, "sets/c", (uint64_t)olen - 10), 0);
    assert_int_equal(read_all(f->r, CF_OBJ_MANIFEST, "sets/c"), -1);
    assert_error_has("sets/c");
    assert_int_equal(mem_storage_truncate(f->ms, "sets/c", 20), 0);
    assert_int_equal(read_all(f->r, CF_OBJ_MANIFEST, "sets/c"), -1);
    assert_error_has("sets/c: truncated object");

    /* missing */
    assert_int_equal(read_all(f->r, CF_OBJ_MANIFEST, "sets/none"), -1);
    assert_error_has("sets/none");
    free(data);
}

/* A write failure mid-stream (disk full) surfaces and leaves nothing. */
static void test_write_fails(void **state)
{
    fx *f = *state;
    uint8_t *data = malloc(1 << 20);
    fill_random(data, 1 << 20, 4);
    mem_storage_fail_writes_after(f->ms, 100000);
    cf_objw *w;
    assert_int_equal(cf_repo_objw_open(f->r, CF_OBJ_MANIFEST, "sets/full", &w), 0);
    int rc = 0;
    for (int i = 0; i < 4 && rc == 0; i++)
        rc = cf_repo_objw_write(w, data, 1 << 20);
    if (rc == 0)
        rc = cf_repo_objw_commit(w);
    else
        cf_repo_objw_abort(w);
    assert_int_equal(rc, -1);
    assert_error_has("no space left");
    assert_false(mem_storage_exists(f->ms, "sets/full"));
    mem_storage_fail_writes_after(f->ms, UINT64_MAX);
    free(data);
}

/* The local cache of a remote repository (repo/cache.c): what is written
 * is kept, reads are served from the copy, a damaged copy is replaced by
 * the store's, copies of objects gone from the store are removed. */
static void test_local_cache(void **state)
{
    (void)state;
    char dir[] = "/tmp/coffer-cache-test.XXXXXX";
    assert_non_null(mkdtemp(dir));
    setenv("COFFER_CACHE_DIR", dir, 1);
    cf_store *st;
    mem_storage *ms;
    cf_repo *r = new_repo(&st, &ms, 1 << 20);
    assert_non_null(r);
    size_t len = 100000;
    uint8_t *data = malloc(len);
    fill_text(data, len, 3);
    assert_int_equal(cf_repo_put_object(r, CF_OBJ_MANIFEST, "sets/s1", data, len), 0);
    char copy[512];
    snprintf(copy, sizeof copy, "%s/%s/sets/s1", dir, cf_repo_id(r));
    struct stat sb;
    assert_int_equal(stat(copy, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal((int64_t)sb.st_size, mem_storage_size(ms, "sets/s1"));

    /* served from the copy: damage in the store is not seen */
    int64_t olen = mem_storage_size(ms, "sets/s1");
    mem_storage_flip(ms, "sets/s1", (uint64_t)olen / 2);
    cf_buf b = {0};
    assert_int_equal(cf_repo_get_object(r, CF_OBJ_MANIFEST, "sets/s1", &b), 0);
    assert_int_equal(b.len, len);
    assert_memory_equal(b.data, data, len);
    mem_storage_flip(ms, "sets/s1", (uint64_t)olen / 2);

    /* a damaged copy is never used: the store's is read and kept */
    FILE *f = fopen(copy, "r+b");
    assert_non_null(f);
    fseek(f, (long)olen / 3, SEEK_SET);
    int c = fgetc(f);
    fseek(f, (long)olen / 3, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
    assert_int_equal(cf_repo_get_object(r, CF_OBJ_MANIFEST, "sets/s1", &b), 0);
    assert_memory_equal(b.data, data, len);
    size_t slen;
    uint8_t *stored = mem_storage_get(ms, "sets/s1", &slen);
    size_t clen;
    char *cached = NULL;
    {
        FILE *g = fopen(copy, "rb");
        assert_non_null(g);
        cached = malloc(slen + 1);
        clen = fread(cached, 1, slen + 1, g);
        fclose(g);
    }
    assert_int_equal(clen, slen);
    assert_memory_equal(cached, stored, slen);
    free(cached);
    free(stored);

    /* only objects the store lists are kept */
    char *keep[] = {"sets/other"};
    cf_repo_cache_trim(r, CF_OBJ_MANIFEST, keep, 1);
    assert_int_not_equal(stat(copy, &sb), 0);

    cf_buf_free(&b);
    free(data);
    cf_repo_close(r);
    cf_store_free(st);

    /* none: no cache at all */
    setenv("COFFER_CACHE_DIR", "none", 1);
    r = new_repo(&st, &ms, 1 << 20);
    assert_non_null(r);
    char sub[512];
    snprintf(sub, sizeof sub, "%s/%s", dir, cf_repo_id(r));
    assert_int_not_equal(stat(sub, &sb), 0);
    cf_repo_close(r);
    cf_store_free(st);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_large_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_and_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corruption_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_fails, setup, teardown),
        cmocka_unit_test(test_local_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
