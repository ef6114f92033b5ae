/* The damage record (state/damaged): parse and format, malformed records
 * rejected with the line named, and at open: chunks it lists count as
 * absent, a new copy supersedes them for reads and for later opens, and an
 * unreadable record is ignored. */
#include "repo_test.h"

#include "repo/repo_int.h"

static const char *H1 = "1111111111111111111111111111111111111111111111111111111111111111";
static const char *H2 = "2222222222222222222222222222222222222222222222222222222222222222";

static void test_parse_format(void **state)
{
    (void)state;
    char in[600];
    snprintf(in, sizeof in,
             "coffer-damaged 1\ntime 2026-01-02T03:04:05Z\npack %s\nchunk %s %s\npack %s\n"
             "later-kind whatever\n",
             H2, H1, H2, H2);
    cf_damage d;
    assert_int_equal(cf_damage_parse(in, strlen(in), &d), 0);
    assert_int_equal(d.npacks, 1); /* the duplicate is dropped */
    assert_int_equal(d.nchunks, 1);
    assert_string_equal(d.time, "2026-01-02T03:04:05Z");
    cf_id a, b;
    assert_int_equal(cf_id_parse(H1, &a), 0);
    assert_int_equal(cf_id_parse(H2, &b), 0);
    assert_true(cf_damage_has_pack(&d, &b));
    assert_false(cf_damage_has_pack(&d, &a));
    assert_true(cf_damage_has_chunk(&d, &a, &b));
    assert_false(cf_damage_has_chunk(&d, &a, &a)); /* another copy of the chunk is sound */
    char *out = cf_damage_format(&d);
    char want[600];
    snprintf(want, sizeof want,
             "coffer-damaged 1\ntime 2026-01-02T03:04:05Z\npack %s\nchunk %s %s\n", H2, H1, H2);
    assert_string_equal(out, want);
    cf_damage d2;
    assert_int_equal(cf_damage_parse(out, strlen(out), &d2), 0);
    assert_int_equal(d2.npacks, 1);
    assert_int_equal(d2.nchunks, 1);
    free(out);
    cf_damage_free(&d);
    cf_damage_free(&d2);
}

static void test_malformed(void **state)
{
    (void)state;
    cf_damage d;
    const char *bad[] = {
        "",
        "coffer-damaged 2\n",
        "something else\npack 11\n",
        "coffer-damaged 1\npack 1234\n",
        ("coffer-damaged 1\nchunk "
         "1111111111111111111111111111111111111111111111111111111111111111\n"),
        "coffer-damaged 1\npack zz11111111111111111111111111111111111111111111111111111111111111\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(cf_damage_parse(bad[i], strlen(bad[i]), &d), -1);
        assert_error_has("state/damaged");
        assert_int_equal(d.npacks + d.nchunks, 0);
    }
    assert_int_equal(cf_damage_parse("coffer-damaged 1\npack 12\n", 25, &d), -1);
    assert_error_has("line 2");
}

/* Store n chunks, flush; ids out. */
static void put_chunks(cf_repo *r, cf_id *ids, int n, uint64_t seed)
{
    uint8_t buf[4096];
    for (int i = 0; i < n; i++) {
        fill_random(buf, sizeof buf, seed + (uint64_t)i);
        cf_repo_hash(r, buf, sizeof buf, &ids[i]);
        assert_int_equal(cf_repo_put_chunk(r, &ids[i], buf, sizeof buf, NULL), 0);
    }
    assert_int_equal(cf_repo_flush(r), 0);
}

static void test_open_supersede(void **state)
{
    (void)state;
    cf_store *st;
    mem_storage *ms;
    cf_repo *r = new_repo(&st, &ms, 0);
    assert_non_null(r);
    cf_id ids[4];
    put_chunks(r, ids, 4, 7);
    char pk[128];
    assert_non_null(cf_repo_chunk_pack(r, &ids[0], pk, sizeof pk));
    cf_id pack;
    assert_int_equal(cf_pack_key_parse(pk, &pack), 0);

    /* chunk 0 damaged in its pack */
    cf_damage d = {0};
    d.chunks = cf_malloc(sizeof *d.chunks);
    d.chunks[d.nchunks++] = (cf_damaged_chunk){ids[0], pack};
    assert_int_equal(cf_repo_damage_store(r, &d), 0);
    cf_damage_free(&d);
    cf_repo_close(r);
    mem_storage_flip(ms, pk, 10); /* the damage itself */

    assert_int_equal(cf_repo_open(st, &r), 0);
    assert_int_equal(cf_repo_damage(r)->nchunks, 1);
    assert_false(cf_repo_has(r, &ids[0]));
    assert_true(cf_repo_has(r, &ids[1]));
    uint8_t buf[4096];
    fill_random(buf, sizeof buf, 7);
    int added = 0;
    assert_int_equal(cf_repo_put_chunk(r, &ids[0], buf, sizeof buf, &added), 0);
    assert_int_equal(added, 1);
    assert_int_equal(cf_repo_flush(r), 0);
    cf_buf out = {0};
    assert_int_equal(cf_repo_get_chunk(r, &ids[0], &out), 0);
    assert_memory_equal(out.data, buf, sizeof buf);
    cf_repo_close(r);

    /* reopened: the new copy wins whatever the order of index objects */
    assert_int_equal(cf_repo_open(st, &r), 0);
    assert_true(cf_repo_has(r, &ids[0]));
    out.len = 0;
    assert_int_equal(cf_repo_get_chunk(r, &ids[0], &out), 0);
    assert_memory_equal(out.data, buf, sizeof buf);
    /* a clean record removes the object */
    cf_damage empty = {0};
    assert_int_equal(cf_repo_damage_store(r, &empty), 0);
    assert_false(mem_storage_exists(ms, CF_DAMAGE_KEY));
    cf_buf_free(&out);
    cf_repo_close(r);
    cf_store_free(st);
}

static void test_bad_record_ignored(void **state)
{
    (void)state;
    cf_store *st;
    mem_storage *ms;
    cf_repo *r = new_repo(&st, &ms, 0);
    assert_non_null(r);
    cf_id ids[2];
    put_chunks(r, ids, 2, 99);
    const char *junk = "coffer-damaged 1\npack nothex\n";
    assert_int_equal(cf_repo_put_object(r, CF_OBJ_STATE, CF_DAMAGE_KEY, junk, strlen(junk)), 0);
    cf_repo_close(r);
    assert_int_equal(cf_repo_open(st, &r), 0); /* opens; the record is ignored */
    assert_int_equal(cf_repo_damage(r)->npacks, 0);
    assert_true(cf_repo_has(r, &ids[0]));
    cf_repo_close(r);
    cf_store_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_format),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_open_supersede),
        cmocka_unit_test(test_bad_record_ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
