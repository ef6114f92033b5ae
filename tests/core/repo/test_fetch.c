/* Planned parallel reads (core/repo/fetch.c): chunks come back as
 * written, in any order of taking and from several threads, close chunks
 * of one pack are read together, skipped chunks cost nothing, a small
 * window still makes progress, and failures are named per chunk. Each
 * case runs on a local store (reads into memory) and a distant one
 * (streamed reads, repeated chunks kept). */
#include "repo_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "plugin/config.h"
#include "plugin/store.h"
#include "repo/repo_int.h"

/* Whether the cases below see a distant store (set by the group). */
static int g_distant;

/* The store as the case wants it: its caps say whether it is local. */
static void place(cf_store *st)
{
    if (g_distant)
        st->caps &= ~COFFER_CAP_LOCAL;
    else
        st->caps |= COFFER_CAP_LOCAL;
}

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

/* The end of a case: its fetch, buffer, repository and store go. */
static void done(cf_fetch *f, cf_buf *b, cf_repo *r, cf_store *st)
{
    cf_buf_free(b);
    cf_fetch_free(f);
    cf_repo_close(r);
    cf_store_free(st);
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
    place(st);
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
    place(st);
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
    place(st);
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
    place(st);
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
    done(f, &b, r, st);
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
    place(st);
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
    done(f, &b, r, st);
}

static int local_group(void **state)
{
    (void)state;
    g_distant = 0;
    return 0;
}

static int distant_group(void **state)
{
    (void)state;
    g_distant = 1;
    return 0;
}

/* A blob damaged in its pack fails alone, named; a pack cut short fails
 * the chunks past the cut and no other (a streamed read ends early:
 * what it did not bring is read chunk by chunk). */
static void test_damaged(void **state)
{
    (void)state;
    cf_store *st;
    mem_storage *ms;
    cf_repo *r = new_repo(&st, &ms, 256 * 1024);
    assert_non_null(r);
    put_chunks(r, 200);
    place(st);
    uint8_t buf[30000];
    cf_id ids[200];
    for (size_t i = 0; i < 200; i++)
        make_chunk(r, buf, i, &ids[i]);
    cf_loc bad, cut;
    cf_pack_rec pr;
    char bad_pack[128], cut_pack[128];
    assert_int_equal(cf_repo_lookup(r, &ids[20], &bad, &pr), 0);
    assert_non_null(cf_repo_chunk_pack(r, &ids[20], bad_pack, sizeof bad_pack));
    assert_int_equal(mem_storage_flip(ms, bad_pack, bad.offset + bad.stored / 2), 0);
    /* the cut pack is another one, cut inside chunk 150 */
    size_t c = 150;
    while (strcmp(cf_repo_chunk_pack(r, &ids[c], cut_pack, sizeof cut_pack), bad_pack) == 0)
        c++;
    assert_int_equal(cf_repo_lookup(r, &ids[c], &cut, &pr), 0);
    assert_int_equal(mem_storage_truncate(ms, cut_pack, cut.offset + 1), 0);
    cf_fetch *f = cf_fetch_new(r, 0);
    uint64_t first = cf_fetch_want(f, ids, 200);
    cf_buf b = {0};
    size_t failed = 0;
    for (size_t i = 0; i < 200; i++) {
        char hex[2 * CF_ID_LEN + 1], pk[128];
        cf_id_hex(&ids[i], hex);
        cf_loc l;
        assert_int_equal(cf_repo_lookup(r, &ids[i], &l, &pr), 0);
        cf_repo_chunk_pack(r, &ids[i], pk, sizeof pk);
        int in_cut = strcmp(pk, cut_pack) == 0 && l.offset >= cut.offset;
        int rc = cf_fetch_take(f, first + i, &b);
        if (i == 20 || in_cut) {
            assert_int_equal(rc, -1);
            assert_error_has(pk);
            if (i == 20)
                assert_error_has(hex);
            failed++;
        } else {
            assert_int_equal(rc, 0);
            make_chunk(r, buf, i, &ids[0]);
            assert_int_equal(b.len, chunk_len(i));
            assert_memory_equal(b.data, buf, b.len);
        }
    }
    assert_true(failed >= 2);
    done(f, &b, r, st);
}

/* A repository of 300 chunks read with 2 connections and a 1 MiB
 * window, and ids naming each twice (seeds 0..299, then again). */
static cf_repo *twice_repo(cf_store **st, mem_storage **ms, cf_id ids[600])
{
    cf_repo *r = new_repo(st, ms, 256 * 1024);
    assert_non_null(r);
    put_chunks(r, 300);
    place(*st);
    set_opts(*st, "2", "1M");
    uint8_t buf[30000];
    for (size_t i = 0; i < 600; i++)
        make_chunk(r, buf, i % 300, &ids[i]);
    return r;
}

/* Names the 600 chunks (noted first, as a restore does), takes them in
 * order and compares each with its seed's bytes, calling each (if any)
 * after every take. Returns the chunks read back from the kept file. */
static uint64_t take_twice(cf_fetch *f, cf_repo *r, const cf_id *ids, void (*each)(void *),
                           void *ud)
{
    cf_fetch_note(f, ids, 600);
    uint64_t first = cf_fetch_want(f, ids, 600);
    cf_buf b = {0};
    static uint8_t buf[30000];
    for (size_t i = 0; i < 600; i++) {
        cf_id id;
        assert_int_equal(cf_fetch_take(f, first + i, &b), 0);
        make_chunk(r, buf, i % 300, &id);
        assert_int_equal(b.len, chunk_len(i % 300));
        assert_memory_equal(b.data, buf, b.len);
        if (each)
            each(ud);
    }
    cf_buf_free(&b);
    return cf_fetch_kept_hits(f);
}

/* Every chunk named twice, the second time far past the window: on a
 * distant store each is read once, kept in an unnamed file of the given
 * directory and read back from there; nothing is left in the directory.
 * A local store keeps nothing. */
static void test_keep(void **state)
{
    (void)state;
    cf_store *st;
    mem_storage *ms;
    cf_id ids[600];
    cf_repo *r = twice_repo(&st, &ms, ids);
    char dir[] = "/tmp/coffer-fetch-keep-XXXXXX";
    assert_non_null(mkdtemp(dir));
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    assert_true(dfd >= 0);
    cf_repo_stats s0, s1;
    cf_repo_get_stats(r, &s0);
    cf_fetch *f = cf_fetch_new(r, 0);
    int keeps = cf_fetch_keep_in(f, dfd) == 0;
    assert_int_equal(keeps, g_distant);
    uint64_t kept = take_twice(f, r, ids, NULL, NULL);
    cf_fetch_free(f);
    cf_repo_get_stats(r, &s1);
    size_t packs = mem_storage_count(ms, "data/");
    if (g_distant) {
        assert_int_equal(kept, 300);
        /* one pass over the packs: a read each, a few more where the
         * window cut a read short */
        assert_true(s1.reads - s0.reads <= 2 * packs);
    } else {
        assert_int_equal(kept, 0);
        assert_true(s1.reads - s0.reads >= packs * 2);
    }
    DIR *d = fdopendir(dfd);
    assert_non_null(d);
    struct dirent *de;
    size_t left = 0;
    while ((de = readdir(d)))
        left += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    assert_int_equal(left, 0);
    rmdir(dir);
    cf_repo_close(r);
    cf_store_free(st);
}

/* Bytes used on the file system of fd. */
static uint64_t used_on(int fd)
{
    struct statvfs vs;
    assert_int_equal(fstatvfs(fd, &vs), 0);
    return (uint64_t)(vs.f_blocks - vs.f_bfree) * vs.f_frsize;
}

/* The most a file system was seen to hold beyond what it held first. */
typedef struct fs_watch {
    int fd;
    uint64_t used0, peak;
} fs_watch;

static void watch_fs(void *ud)
{
    fs_watch *w = ud;
    uint64_t u = used_on(w->fd) - w->used0;
    w->peak = u > w->peak ? u : w->peak;
}

/* The kept chunks take at most a sixteenth of the free space where they
 * are kept, and none below 1 MiB of it: on a 16 MiB tmpfs (1 MiB for
 * chunks) part of 4 MiB of repeated chunks is kept and the rest read
 * again, every byte equal; an 8 MiB one keeps nothing. The tmpfs is
 * mounted in a mount namespace of the test's own (needs root). */
static void test_keep_bounded(void **state)
{
    (void)state;
    if (geteuid() != 0 || unshare(CLONE_NEWNS) != 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        skip(); /* as root, in CI, it runs */
        return;
    }
    g_distant = 1;
    cf_store *st;
    mem_storage *ms;
    cf_id ids[600];
    cf_repo *r = twice_repo(&st, &ms, ids);
    uint64_t twice = 0;
    for (uint64_t i = 0; i < 300; i++)
        twice += chunk_len(i);
    assert_true(twice > 4 * 1024 * 1024);
    char dir[] = "/tmp/coffer-fetch-small-XXXXXX";
    assert_non_null(mkdtemp(dir));
    static const char *const sizes[] = {"size=16m", "size=8m"};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(mount("tmpfs", dir, "tmpfs", 0, sizes[k]), 0);
        fs_watch w = {.fd = open(dir, O_RDONLY | O_DIRECTORY)};
        assert_true(w.fd >= 0);
        w.used0 = used_on(w.fd);
        cf_fetch *f = cf_fetch_new(r, 0);
        int keeps = cf_fetch_keep_in(f, w.fd) == 0;
        assert_int_equal(keeps, k == 0);
        uint64_t kept = take_twice(f, r, ids, watch_fs, &w);
        cf_fetch_free(f);
        if (k == 0) {
            /* some kept, not all: 1 MiB holds about 70 of 300 */
            assert_true(kept > 10);
            assert_true(kept < 150);
            assert_true(w.peak <= (1u << 20));
        } else {
            assert_int_equal(kept, 0);
            assert_int_equal(w.peak, 0);
        }
        assert_int_equal(used_on(w.fd), w.used0);
        close(w.fd);
        assert_int_equal(umount(dir), 0);
    }
    rmdir(dir);
    cf_repo_close(r);
    cf_store_free(st);
}

int main(void)
{
    const struct CMUnitTest sizing[] = {
        cmocka_unit_test(test_connections),
        cmocka_unit_test(test_connections_distant),
        cmocka_unit_test(test_keep_bounded),
    };
    const struct CMUnitTest cases[] = {
        cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_encrypted_duplicates),
        cmocka_unit_test(test_small_window), cmocka_unit_test(test_skip),
        cmocka_unit_test(test_errors),       cmocka_unit_test(test_damaged),
        cmocka_unit_test(test_keep),
    };
    int failed = cmocka_run_group_tests_name("sizing", sizing, NULL, NULL);
    failed += cmocka_run_group_tests_name("local store", cases, local_group, NULL);
    failed += cmocka_run_group_tests_name("distant store", cases, distant_group, NULL);
    return failed;
}
