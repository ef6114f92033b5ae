/* Prune at the repository layer: plan (remove, repack, keep), execution
 * order, and safety: a stop before removal, write failures at every
 * point, damaged blobs, objects newer than the snapshot, unindexed packs.
 * Each case runs on an unencrypted and an encrypted repository. */
#include "repo_test.h"

#include <limits.h>

#include "repo/repo_int.h"

#define NCHUNK 60

static const cf_kdf_params FAST = {1, 8192};

typedef struct fx {
    cf_store *st;
    mem_storage *ms;
    cf_repo *r;
    int enc;
    cf_id ids[NCHUNK];
} fx;

/* chunks 0-19 all kept; 20-39 every other one; 40-59 none */
static int kept(size_t i)
{
    return i < 20 || (i < 40 && i % 2 == 0);
}

static void chunk(uint8_t *buf, size_t i, size_t *len)
{
    *len = 2000 + i * 211;
    if (i % 3)
        fill_text(buf, *len, i);
    else
        fill_random(buf, *len, i);
}

static int open_r(fx *f, cf_repo **r)
{
    cf_passphrase_src ps = {.env = "T_PRUNE"};
    cf_repo_open_opts o = {.pass = &ps};
    int rc = cf_repo_open_with(f->st, &o, r);
    if (rc != 0)
        print_error("open: %s\n", cf_error());
    return rc;
}

static fx *make(int enc)
{
    setenv("T_PRUNE", "prune test", 1);
    fx *f = calloc(1, sizeof *f);
    f->enc = enc;
    f->st = mem_store_new("mem", &f->ms);
    cf_passphrase_src ps = {.env = "T_PRUNE"};
    cf_repo_params p = {.cdc = {.min_size = 2048, .avg_size = 8192, .max_size = 65536, .seed = 7},
                        .pack_size = 16 * 1024,
                        .encryption = enc,
                        .pass = &ps,
                        .kdf = FAST};
    if (cf_repo_init(f->st, &p) != 0 || open_r(f, &f->r) != 0)
        fail_msg("init: %s", cf_error());
    uint8_t buf[20000];
    for (size_t i = 0; i < NCHUNK; i++) {
        size_t len;
        chunk(buf, i, &len);
        cf_repo_hash(f->r, buf, len, &f->ids[i]);
        assert_int_equal(cf_repo_put_chunk(f->r, &f->ids[i], buf, len, NULL), 0);
    }
    assert_int_equal(cf_repo_flush(f->r), 0);
    return f;
}

static void drop(fx *f)
{
    cf_repo_close(f->r);
    cf_store_free(f->st);
    free(f);
}

static void problem(void *ud, const char *object, const char *chunk, const char *msg)
{
    (void)ud;
    print_error("problem: %s %s %s\n", object, chunk ? chunk : "-", msg);
}

/* Reopen: every kept chunk reads back; structure is clean. all: the
 * unkept ones must read too (nothing was removed). */
static void assert_repo(fx *f, int all)
{
    cf_repo *r;
    assert_int_equal(open_r(f, &r), 0);
    uint8_t buf[20000];
    cf_buf out = {0};
    for (size_t i = 0; i < NCHUNK; i++) {
        if (!kept(i) && !all)
            continue;
        size_t len;
        chunk(buf, i, &len);
        if (cf_repo_get_chunk(r, &f->ids[i], &out) != 0)
            fail_msg("chunk %zu: %s", i, cf_error());
        assert_int_equal(out.len, len);
        assert_memory_equal(out.data, buf, len);
    }
    assert_int_equal(cf_repo_check_structure(r, problem, NULL), 0);
    cf_buf_free(&out);
    cf_repo_close(r);
}

static cf_prune *begin_marked(fx *f, cf_repo *r)
{
    cf_prune *p;
    assert_int_equal(cf_prune_begin(r, &p), 0);
    for (size_t i = 0; i < NCHUNK; i++)
        if (kept(i))
            assert_int_equal(cf_prune_mark(p, &f->ids[i]), 0);
    return p;
}

static void t_basic(int enc)
{
    fx *f = make(enc);
    size_t packs0 = mem_storage_count(f->ms, "data/");
    cf_prune *p = begin_marked(f, f->r);
    cf_prune_stats st;
    cf_prune_opts o = {.max_unused = 0, .orphan_grace_s = -1};
    assert_int_equal(cf_prune_plan(p, &o, &st), 0);
    assert_int_equal(st.chunks_total, NCHUNK);
    assert_int_equal(st.chunks_used, 30);
    assert_true(st.packs_delete > 0);
    assert_true(st.packs_repack > 0);
    assert_int_equal(st.packs_total, packs0);
    assert_int_equal(st.bytes_unused_kept, 0);
    assert_int_equal(cf_prune_run(p, NULL, NULL, &st), 0);
    assert_true(st.packs_written > 0);
    assert_int_equal(st.index_removed, 1);
    cf_prune_free(p);
    /* the handle refuses new writes: its index is stale */
    assert_int_equal(cf_repo_put_chunk(f->r, &f->ids[0], "x", 1, NULL), -1);
    assert_repo(f, 0);
    assert_int_equal(mem_storage_count(f->ms, "index/"), 1);
    assert_int_equal(mem_storage_count(f->ms, "data/"),
                     packs0 - st.packs_delete - st.packs_repack + st.packs_written);
    cf_repo *r;
    assert_int_equal(open_r(f, &r), 0);
    for (size_t i = 0; i < NCHUNK; i++)
        assert_int_equal(cf_repo_has(r, &f->ids[i]), kept(i));
    /* no unindexed pack is left behind */
    cf_pack_list orph;
    assert_int_equal(cf_repo_orphan_packs(r, &orph, NULL), 0);
    assert_int_equal(orph.n, 0);
    cf_pack_list_free(&orph);
    /* a second prune finds nothing to do */
    p = begin_marked(f, r);
    assert_int_equal(cf_prune_plan(p, &o, &st), 0);
    assert_int_equal(st.packs_delete + st.packs_repack, 0);
    cf_prune_free(p);
    cf_repo_close(r);
    drop(f);
}

static void test_basic(void **s)
{
    (void)s;
    t_basic(0);
    t_basic(1);
}

/* --max-unused: a generous allowance repacks nothing; unused packs still go. */
static void test_max_unused(void **s)
{
    (void)s;
    fx *f = make(1);
    cf_prune *p = begin_marked(f, f->r);
    cf_prune_stats st;
    cf_prune_opts o = {.max_unused = 100, .orphan_grace_s = -1};
    assert_int_equal(cf_prune_plan(p, &o, &st), 0);
    assert_int_equal(st.packs_repack, 0);
    assert_true(st.packs_delete > 0);
    assert_true(st.bytes_unused_kept > 0);
    assert_int_equal(cf_prune_run(p, NULL, NULL, &st), 0);
    assert_int_equal(st.packs_written, 0);
    cf_prune_free(p);
    assert_repo(f, 0);
    drop(f);
}

static int refuse(void *ud)
{
    (*(int *)ud)++;
    return cf_fail("a new set appeared");
}

/* Stopped just before removal: nothing is removed, the new objects go. */
static void test_stop_before_delete(void **s)
{
    (void)s;
    for (int enc = 0; enc < 2; enc++) {
        fx *f = make(enc);
        size_t packs0 = mem_storage_count(f->ms, "data/");
        cf_prune *p = begin_marked(f, f->r);
        cf_prune_stats st;
        cf_prune_opts o = {.max_unused = 0, .orphan_grace_s = -1};
        assert_int_equal(cf_prune_plan(p, &o, &st), 0);
        int called = 0;
        assert_int_equal(cf_prune_run(p, refuse, &called, &st), -1);
        assert_int_equal(called, 1);
        assert_error_has("a new set appeared");
        cf_prune_free(p);
        assert_int_equal(mem_storage_count(f->ms, "data/"), packs0);
        assert_int_equal(mem_storage_count(f->ms, "index/"), 1);
        assert_repo(f, 1);
        drop(f);
    }
}

/* Writes fail at every point of the repack and index write (a full
 * disk, a lost connection): the repository keeps every chunk. */
static void test_write_faults(void **s)
{
    (void)s;
    for (int enc = 0; enc < 2; enc++) {
        int done = 0;
        for (uint64_t budget = 0; !done; budget += 2500) {
            fx *f = make(enc);
            cf_prune *p = begin_marked(f, f->r);
            cf_prune_stats st;
            cf_prune_opts o = {.max_unused = 0, .orphan_grace_s = -1};
            assert_int_equal(cf_prune_plan(p, &o, &st), 0);
            mem_storage_fail_writes_after(f->ms, budget);
            int rc = cf_prune_run(p, NULL, NULL, &st);
            mem_storage_fail_writes_after(f->ms, UINT64_MAX);
            cf_prune_free(p);
            assert_int_equal(mem_storage_open_writers(f->ms), 0);
            assert_repo(f, rc != 0);
            done = rc == 0;
            drop(f);
            assert_true(budget < 10000000);
        }
    }
}

/* A damaged blob among those to copy stops the prune before any removal. */
static void test_damaged_blob(void **s)
{
    (void)s;
    for (int enc = 0; enc < 2; enc++) {
        fx *f = make(enc);
        size_t packs0 = mem_storage_count(f->ms, "data/");
        /* chunk 22 is kept in a partly used pack */
        ssize_t k = cf_index_find(&f->r->idx, &f->ids[22]);
        assert_true(k >= 0);
        cf_loc l;
        cf_index_get(&f->r->idx, (size_t)k, &l);
        char pack[CF_PACK_KEY_LEN + 1];
        cf_pack_key(&f->r->idx.packs[l.pack].id, pack);
        assert_int_equal(mem_storage_flip(f->ms, pack, l.offset + l.stored - 1), 0);
        cf_prune *p = begin_marked(f, f->r);
        cf_prune_stats st;
        cf_prune_opts o = {.max_unused = 0, .orphan_grace_s = -1};
        assert_int_equal(cf_prune_plan(p, &o, &st), 0);
        assert_int_equal(cf_prune_run(p, NULL, NULL, &st), -1);
        assert_error_has("damaged");
        char hex[65];
        cf_id_hex(&f->ids[22], hex);
        assert_error_has(hex);
        cf_prune_free(p);
        assert_int_equal(mem_storage_count(f->ms, "data/"), packs0);
        assert_int_equal(mem_storage_count(f->ms, "index/"), 1);
        drop(f);
    }
}

/* Marking a chunk the snapshot does not hold is an error (prune stops). */
static void test_mark_unknown(void **s)
{
    (void)s;
    fx *f = make(0);
    cf_prune *p;
    assert_int_equal(cf_prune_begin(f->r, &p), 0);
    cf_id x;
    memset(x.b, 0xab, sizeof x.b);
    /* at once with the index in memory, at the flush when it is on disk */
    int rc = cf_prune_mark(p, &x);
    if (rc == 0)
        rc = cf_prune_mark_flush(p);
    assert_int_equal(rc, -1);
    assert_error_has("abababab");
    assert_error_has("not in the index");
    cf_prune_free(p);
    drop(f);
}

/* Objects written after the snapshot are never removed, even when they
 * hold nothing the marked sets use. */
static void test_newer_than_snapshot(void **s)
{
    (void)s;
    fx *f = make(1);
    cf_repo *pr;
    assert_int_equal(open_r(f, &pr), 0);
    cf_prune *p = begin_marked(f, pr);
    /* another writer (say a backup that ignored the lock) adds chunks */
    uint8_t buf[5000];
    fill_random(buf, sizeof buf, 999);
    cf_id nid;
    cf_repo_hash(f->r, buf, sizeof buf, &nid);
    assert_int_equal(cf_repo_put_chunk(f->r, &nid, buf, sizeof buf, NULL), 0);
    assert_int_equal(cf_repo_flush(f->r), 0);
    cf_prune_stats st;
    cf_prune_opts o = {.max_unused = 0, .orphan_grace_s = INT_MAX};
    assert_int_equal(cf_prune_plan(p, &o, &st), 0);
    assert_int_equal(cf_prune_run(p, NULL, NULL, &st), 0);
    cf_prune_free(p);
    cf_repo_close(pr);
    cf_repo *r;
    assert_int_equal(open_r(f, &r), 0);
    cf_buf out = {0};
    assert_int_equal(cf_repo_get_chunk(r, &nid, &out), 0);
    assert_int_equal(out.len, sizeof buf);
    cf_buf_free(&out);
    assert_int_equal(mem_storage_count(f->ms, "index/"), 2);
    cf_repo_close(r);
    assert_repo(f, 0);
    drop(f);
}

/* Unindexed packs: removed once older than the grace period, kept before. */
static void test_orphans(void **s)
{
    (void)s;
    fx *f = make(0);
    char *pk = mem_storage_key(f->ms, "data/", 0);
    size_t len;
    uint8_t *data = mem_storage_get(f->ms, pk, &len);
    const char *orphan = "data/ee/ee00000000000000000000000000000000000000000000000000000000000001";
    assert_int_equal(cf_store_put(f->st, orphan, data, len, COFFER_WRITE_PRIVATE), 0);
    free(data);
    free(pk);
    cf_prune *p = begin_marked(f, f->r);
    cf_prune_stats st;
    cf_prune_opts o = {.max_unused = 5, .orphan_grace_s = INT_MAX};
    assert_int_equal(cf_prune_plan(p, &o, &st), 0);
    assert_int_equal(st.orphans_recent, 1);
    assert_int_equal(st.orphans_delete, 0);
    o.orphan_grace_s = 0; /* the in-memory store's clock is far in the past */
    assert_int_equal(cf_prune_plan(p, &o, &st), 0);
    assert_int_equal(st.orphans_delete, 1);
    assert_int_equal(st.orphan_bytes_delete, len);
    assert_int_equal(cf_prune_run(p, NULL, NULL, &st), 0);
    assert_false(mem_storage_exists(f->ms, orphan));
    cf_prune_free(p);
    assert_repo(f, 0);
    drop(f);
}

/* Every set forgotten: every pack and index object goes. */
static void test_nothing_kept(void **s)
{
    (void)s;
    fx *f = make(1);
    cf_prune *p;
    assert_int_equal(cf_prune_begin(f->r, &p), 0);
    cf_prune_stats st;
    cf_prune_opts o = {.max_unused = 5, .orphan_grace_s = -1};
    assert_int_equal(cf_prune_plan(p, &o, &st), 0);
    assert_int_equal(cf_prune_run(p, NULL, NULL, &st), 0);
    cf_prune_free(p);
    assert_int_equal(mem_storage_count(f->ms, "data/"), 0);
    assert_int_equal(mem_storage_count(f->ms, "index/"), 0);
    cf_repo *r;
    assert_int_equal(open_r(f, &r), 0);
    assert_int_equal(cf_repo_has(r, &f->ids[0]), 0);
    cf_repo_close(r);
    drop(f);
}

/* An immutable store: packs under retention are neither removed nor
 * repacked; once the locks end (the storage's clock moves on) a later
 * prune removes them, and a governance bypass removes them at once. */
static void test_respects_locks(void **s)
{
    (void)s;
    setenv("T_PRUNE", "prune test", 1);
    fx *f = calloc(1, sizeof *f);
    f->st = mem_store_new("mem", &f->ms);
    const int64_t now = 1800000000;
    mem_storage_set_retention(f->ms, 1, now);
    assert_int_equal(cf_store_prepare(f->st, 1), 0);
    assert_true(f->st->caps & COFFER_CAP_RETENTION);
    f->st->lock_mode = COFFER_LOCK_GOVERNANCE;
    f->st->retain_until = now + 3600;
    cf_passphrase_src ps = {.env = "T_PRUNE"};
    cf_repo_params rp = {.cdc = {.min_size = 2048, .avg_size = 8192, .max_size = 65536, .seed = 7},
                         .pack_size = 16 * 1024,
                         .pass = &ps,
                         .kdf = FAST};
    assert_int_equal(cf_repo_init(f->st, &rp), 0);
    assert_int_equal(open_r(f, &f->r), 0);
    uint8_t buf[20000];
    for (size_t i = 0; i < NCHUNK; i++) {
        size_t len;
        chunk(buf, i, &len);
        cf_repo_hash(f->r, buf, len, &f->ids[i]);
        assert_int_equal(cf_repo_put_chunk(f->r, &f->ids[i], buf, len, NULL), 0);
    }
    assert_int_equal(cf_repo_flush(f->r), 0);
    char *pk = mem_storage_key(f->ms, "data/", 0), *cfgk = "config";
    assert_int_equal(mem_storage_retain_until(f->ms, pk), now + 3600);
    assert_int_equal(mem_storage_retain_until(f->ms, cfgk), now + 3600);
    free(pk);
    size_t packs0 = mem_storage_count(f->ms, "data/");

    /* locked: nothing is removed or repacked, every pack waits */
    cf_prune *p = begin_marked(f, f->r);
    cf_prune_stats st;
    cf_prune_opts o = {.max_unused = 0, .orphan_grace_s = -1, .respect_locks = 1, .now = now};
    assert_int_equal(cf_prune_plan(p, &o, &st), 0);
    assert_int_equal(st.packs_delete + st.packs_repack, 0);
    assert_true(st.packs_waiting > 0);
    assert_int_equal(st.waiting_until, now + 3600);
    assert_true(st.retention_checks > 0);
    assert_int_equal(cf_prune_run(p, NULL, NULL, &st), 0);
    cf_prune_free(p);
    assert_int_equal(mem_storage_count(f->ms, "data/"), packs0);
    assert_repo(f, 0);

    /* the locks ended: a later prune finishes the job */
    mem_storage_set_retention(f->ms, 1, now + 7200);
    cf_repo *r;
    assert_int_equal(open_r(f, &r), 0);
    p = begin_marked(f, r);
    o.now = now + 7200;
    assert_int_equal(cf_prune_plan(p, &o, &st), 0);
    assert_int_equal(st.packs_waiting, 0);
    assert_true(st.packs_repack > 0 || st.orphans_delete > 0 || st.packs_delete > 0);
    assert_int_equal(cf_prune_run(p, NULL, NULL, &st), 0);
    cf_prune_free(p);
    cf_repo_close(r);
    assert_repo(f, 0);
    assert_true(mem_storage_count(f->ms, "data/") < packs0 + st.packs_written);

    /* governance bypass: treated as unlocked at once */
    mem_storage_set_retention(f->ms, 1, now);
    assert_int_equal(open_r(f, &r), 0);
    p = begin_marked(f, r);
    o.now = now;
    o.bypass_governance = 1;
    assert_int_equal(cf_prune_plan(p, &o, &st), 0);
    assert_int_equal(st.packs_waiting, 0);
    cf_prune_free(p);
    cf_repo_close(r);
    cf_repo_close(f->r);
    cf_store_free(f->st);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_respects_locks),
        cmocka_unit_test(test_max_unused),
        cmocka_unit_test(test_stop_before_delete),
        cmocka_unit_test(test_write_faults),
        cmocka_unit_test(test_damaged_blob),
        cmocka_unit_test(test_mark_unknown),
        cmocka_unit_test(test_newer_than_snapshot),
        cmocka_unit_test(test_orphans),
        cmocka_unit_test(test_nothing_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
