/* The on-disk part of the index (dindex.c): the same answers as the
 * in-memory index for lookups, damaged copies, session additions and
 * iteration; a load that fails half-way through an index object after the
 * move to disk leaves nothing of that object; a tampered sorted file is
 * never used. Each case runs with the index forced to disk
 * (COFFER_INDEX_MEMORY_ENTRIES=0) and, where it compares, in memory. */
#include "repo_test.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "repo/repo_int.h"

#define NCHUNK 300

static char cache_dir[] = "/tmp/coffer-test-dindex-XXXXXX";

static void chunk(uint8_t *buf, size_t i, size_t *len)
{
    *len = 1000 + (i * 37) % 3000;
    fill_random(buf, *len, i + 1);
}

typedef struct fx {
    cf_store *st;
    mem_storage *ms;
    cf_id ids[NCHUNK];
} fx;

static cf_repo *reopen(fx *f)
{
    cf_repo *r = NULL;
    if (cf_repo_open(f->st, &r) != 0)
        fail_msg("open: %s", cf_error());
    return r;
}

/* NCHUNK chunks in three index objects (three sessions). */
static fx *make(void)
{
    fx *f = calloc(1, sizeof *f);
    cf_repo *r = new_repo(&f->st, &f->ms, 64 * 1024);
    assert_non_null(r);
    uint8_t buf[4096];
    for (size_t i = 0; i < NCHUNK; i++) {
        size_t len;
        chunk(buf, i, &len);
        cf_repo_hash(r, buf, len, &f->ids[i]);
        assert_int_equal(cf_repo_put_chunk(r, &f->ids[i], buf, len, NULL), 0);
        if (i % 100 == 99)
            assert_int_equal(cf_repo_flush(r), 0);
    }
    cf_repo_close(r);
    return f;
}

static void drop(fx *f)
{
    cf_store_free(f->st);
    free(f);
}

/* Open f's repository with the index on disk (disk) or in memory. */
static cf_repo *open_as(fx *f, int disk)
{
    if (disk)
        setenv("COFFER_INDEX_MEMORY_ENTRIES", "0", 1);
    else
        unsetenv("COFFER_INDEX_MEMORY_ENTRIES");
    cf_repo *r = reopen(f);
    assert_int_equal(disk, r->idx.disk != NULL);
    return r;
}

/* List one pack damaged in the repository's damage record. */
static void damage_pack(cf_repo *r, const char *pack)
{
    cf_damage d = {0};
    d.packs = malloc(sizeof *d.packs);
    assert_int_equal(cf_pack_key_parse(pack, &d.packs[0]), 0);
    d.npacks = 1;
    assert_int_equal(cf_repo_damage_store(r, &d), 0);
    cf_damage_free(&d);
}

static void assert_all_read(fx *f, cf_repo *r)
{
    uint8_t buf[4096];
    cf_buf out = {0};
    for (size_t i = 0; i < NCHUNK; i++) {
        size_t len;
        chunk(buf, i, &len);
        if (cf_repo_get_chunk(r, &f->ids[i], &out) != 0)
            fail_msg("chunk %zu: %s", i, cf_error());
        assert_int_equal(out.len, len);
        assert_memory_equal(out.data, buf, len);
    }
    cf_buf_free(&out);
}

static void test_lookups(void **s)
{
    (void)s;
    fx *f = make();
    setenv("COFFER_INDEX_MEMORY_ENTRIES", "0", 1);
    cf_repo *r = reopen(f);
    assert_non_null(r->idx.disk);
    assert_int_equal(r->idx.nbase, NCHUNK);
    assert_int_equal(r->idx.n, 0);
    assert_all_read(f, r);
    /* absent ids */
    for (int k = 0; k < 50; k++) {
        cf_id id;
        fill_random(id.b, sizeof id.b, 1000 + k);
        assert_int_equal(cf_repo_has(r, &id), 0);
    }
    /* iteration sees every entry once, in id order, with its pack */
    uint32_t *counts = cf_index_pack_counts(&r->idx);
    uint64_t total = 0;
    for (size_t i = 0; i < r->idx.npacks; i++)
        total += counts[i];
    assert_int_equal(total, NCHUNK);
    free(counts);
    cf_index_iter it;
    cf_index_iter_init(&it, &r->idx);
    size_t pos, n = 0;
    cf_loc l, prev;
    while (cf_index_iter_next(&it, &pos, &l) > 0) {
        assert_int_equal(pos, n);
        if (n)
            assert_true(memcmp(prev.id.b, l.id.b, CF_ID_LEN) < 0);
        assert_true(l.pack < r->idx.npacks);
        prev = l;
        n++;
    }
    cf_index_iter_free(&it);
    assert_int_equal(n, NCHUNK);

    /* a session adds to memory; abort drops it; the disk part stays */
    uint8_t buf[2000];
    cf_id nid;
    fill_random(buf, sizeof buf, 77777);
    cf_repo_hash(r, buf, sizeof buf, &nid);
    int added = 0;
    assert_int_equal(cf_repo_put_chunk(r, &nid, buf, sizeof buf, &added), 0);
    assert_int_equal(added, 1);
    assert_int_equal(cf_repo_has(r, &nid), 1);
    cf_repo_abort(r);
    assert_int_equal(cf_repo_has(r, &nid), 0);
    assert_int_equal(cf_index_count(&r->idx), NCHUNK);
    /* a chunk already on disk is not stored again */
    chunk(buf, 5, &(size_t){0});
    size_t len5;
    chunk(buf, 5, &len5);
    assert_int_equal(cf_repo_put_chunk(r, &f->ids[5], buf, len5, &added), 0);
    assert_int_equal(added, 0);
    cf_repo_close(r);

    /* the second open reuses the file */
    r = reopen(f);
    assert_non_null(r->idx.disk);
    assert_all_read(f, r);
    cf_repo_close(r);
    unsetenv("COFFER_INDEX_MEMORY_ENTRIES");
    drop(f);
}

/* Two copies of a chunk, the first in a pack listed damaged: readers get
 * the sound one, from disk as from memory. */
static void test_damaged_copy(void **s)
{
    (void)s;
    for (int disk = 0; disk < 2; disk++) {
        fx *f = make();
        cf_repo *r = open_as(f, disk);
        char pack[CF_PACK_KEY_LEN + 1];
        assert_non_null(cf_repo_chunk_pack(r, &f->ids[10], pack, sizeof pack));
        damage_pack(r, pack);
        cf_repo_close(r);

        /* the damaged pack's chunks count as absent: store them again */
        r = reopen(f);
        assert_int_equal(cf_repo_has(r, &f->ids[10]), 0);
        uint8_t buf[4096];
        size_t again = 0;
        for (size_t i = 0; i < NCHUNK; i++) {
            if (cf_repo_has(r, &f->ids[i]))
                continue;
            size_t len;
            chunk(buf, i, &len);
            int added = 0;
            assert_int_equal(cf_repo_put_chunk(r, &f->ids[i], buf, len, &added), 0);
            assert_int_equal(added, 1);
            again++;
        }
        assert_true(again > 0);
        assert_int_equal(cf_repo_flush(r), 0);
        assert_int_equal(cf_repo_has(r, &f->ids[10]), 1);
        cf_repo_close(r);

        /* reopen: two copies on disk (or one superseded in memory) */
        r = reopen(f);
        assert_int_equal(disk, r->idx.disk != NULL);
        char pack2[CF_PACK_KEY_LEN + 1];
        assert_non_null(cf_repo_chunk_pack(r, &f->ids[10], pack2, sizeof pack2));
        assert_string_not_equal(pack, pack2);
        /* the damaged pack is really unreadable now: the sound copy serves */
        assert_int_equal(mem_storage_flip(f->ms, pack, 100), 0);
        assert_all_read(f, r);
        cf_repo_close(r);
        unsetenv("COFFER_INDEX_MEMORY_ENTRIES");
        drop(f);
    }
}

/* cf_repo_chunk_states: ids in any order, repeated, absent, added in the
 * session, or in a pack listed damaged get the answers of one lookup each,
 * on disk as in memory. */
static void check_states(cf_repo *r, const cf_id *ids, size_t n, const int *want_state)
{
    cf_chunk_state *st = calloc(n, sizeof *st);
    cf_repo_chunk_states(r, ids, n, st);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(st[i].state, want_state[i]);
        char pack[CF_PACK_KEY_LEN + 1], got[CF_PACK_KEY_LEN + 1];
        if (!want_state[i]) {
            assert_null(cf_repo_chunk_pack(r, &ids[i], pack, sizeof pack));
            continue;
        }
        assert_non_null(cf_repo_chunk_pack(r, &ids[i], pack, sizeof pack));
        cf_pack_key(&st[i].pack, got);
        assert_string_equal(got, pack);
        assert_int_equal(st[i].raw, cf_repo_chunk_size(r, &ids[i]));
    }
    free(st);
}

static void test_chunk_states(void **s)
{
    (void)s;
    for (int disk = 0; disk < 2; disk++) {
        fx *f = make();
        cf_repo *r = open_as(f, disk);
        enum { N = NCHUNK + 40 };
        cf_id ids[N];
        int want[N];
        for (size_t i = 0; i < NCHUNK; i++) {
            ids[i] = f->ids[NCHUNK - 1 - i];
            want[i] = 1;
        }
        for (size_t i = NCHUNK; i < NCHUNK + 20; i++) { /* absent */
            fill_random(ids[i].b, sizeof ids[i].b, 5000 + i);
            want[i] = 0;
        }
        for (size_t i = NCHUNK + 20; i < N - 1; i++) { /* repeats */
            ids[i] = f->ids[(i * 7) % NCHUNK];
            want[i] = 1;
        }
        uint8_t buf[2000];
        fill_random(buf, sizeof buf, 4242); /* added in this session */
        cf_repo_hash(r, buf, sizeof buf, &ids[N - 1]);
        assert_int_equal(cf_repo_put_chunk(r, &ids[N - 1], buf, sizeof buf, NULL), 0);
        want[N - 1] = 1;
        for (size_t i = 0; i < N; i++) { /* shuffle */
            size_t j = (i * 131 + 17) % N;
            cf_id t = ids[i];
            ids[i] = ids[j];
            ids[j] = t;
            int w = want[i];
            want[i] = want[j];
            want[j] = w;
        }
        check_states(r, ids, N, want);
        assert_int_equal(cf_repo_flush(r), 0);

        /* a pack listed damaged: its chunks are state 2 */
        char pack[CF_PACK_KEY_LEN + 1];
        assert_non_null(cf_repo_chunk_pack(r, &f->ids[10], pack, sizeof pack));
        damage_pack(r, pack);
        cf_repo_close(r);
        r = reopen(f);
        size_t ndamaged = 0;
        for (size_t i = 0; i < N; i++) {
            char p2[CF_PACK_KEY_LEN + 1];
            if (want[i] && strcmp(cf_repo_chunk_pack(r, &ids[i], p2, sizeof p2), pack) == 0) {
                want[i] = 2;
                ndamaged++;
            }
        }
        assert_true(ndamaged > 0);
        check_states(r, ids, N, want);
        cf_repo_close(r);
        unsetenv("COFFER_INDEX_MEMORY_ENTRIES");
        drop(f);
    }
}

/* An index object that fails half-way after the move to disk: skipped
 * whole with CF_REPO_OPEN_SKIP_BAD_INDEX, the open fails without it. */
static void test_bad_object_rollback(void **s)
{
    (void)s;
    fx *f = make();
    char **keys;
    size_t n;
    cf_repo *r = reopen(f); /* in memory: no sorted file yet */
    assert_null(r->idx.disk);
    assert_int_equal(cf_repo_list_index(r, &keys, &n), 0);
    assert_int_equal(n, 3);
    cf_repo_close(r);
    setenv("COFFER_INDEX_MEMORY_ENTRIES", "0", 1);
    /* Damage the middle of the second object (its entries are parsed
     * after the first object's moved everything to disk). */
    assert_int_equal(mem_storage_flip(f->ms, keys[1], 200), 0);
    cf_repo *bad = NULL;
    /* (no cache: the cached copies of index objects are sound) */
    assert_int_equal(cf_repo_open_ex(f->st, CF_REPO_OPEN_NO_CACHE, &bad), -1);
    assert_error_has(keys[1]);
    assert_int_equal(
        cf_repo_open_ex(f->st, CF_REPO_OPEN_SKIP_BAD_INDEX | CF_REPO_OPEN_NO_CACHE, &r), 0);
    assert_non_null(r->idx.disk);
    /* only the two sound objects' chunks are indexed */
    size_t have = 0;
    for (size_t i = 0; i < NCHUNK; i++)
        have += (size_t)cf_repo_has(r, &f->ids[i]);
    assert_int_equal(have, 200);
    assert_int_equal(cf_index_count(&r->idx), 200);
    cf_repo_close(r);
    cf_strv_free(keys, n);
    unsetenv("COFFER_INDEX_MEMORY_ENTRIES");
    drop(f);
}

/* A byte changed in the cached sorted file: not used, rebuilt. */
static void test_tampered_file(void **s)
{
    (void)s;
    fx *f = make();
    setenv("COFFER_INDEX_MEMORY_ENTRIES", "0", 1);
    cf_repo *r = reopen(f);
    char *path = cf_repo_cache_file(r, "index.sorted");
    assert_non_null(path);
    cf_repo_close(r);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* point one entry's offset elsewhere, as an intruder would */
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    off_t off = st.st_size - 32 - 600; /* inside the last entries */
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
    r = reopen(f);
    assert_non_null(r->idx.disk);
    assert_all_read(f, r);
    cf_repo_close(r);
    free(path);
    unsetenv("COFFER_INDEX_MEMORY_ENTRIES");
    drop(f);
}

int main(void)
{
    if (!mkdtemp(cache_dir))
        return 1;
    setenv("COFFER_CACHE_DIR", cache_dir, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_damaged_copy),
        cmocka_unit_test(test_chunk_states),
        cmocka_unit_test(test_bad_object_rollback),
        cmocka_unit_test(test_tampered_file),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache_dir);
    if (system(cmd) != 0)
        rc = rc ? rc : 1;
    return rc;
}
