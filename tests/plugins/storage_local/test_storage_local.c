/*
 * storage "local" against the mock host: no core engine involved. Each
 * test gets a fresh mock host (and so a fresh temporary directory) with
 * the repository at <tmpdir>/repo.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mock_host.h"
#include "plugin/config.h"

extern const coffer_plugin *coffer_builtin_local(const coffer_host *host);

typedef struct fixture {
    mock_host mh;
    const coffer_plugin *drv;
    const coffer_storage_ops *ops;
    coffer_config *cfg;
    void *inst;
    char repo[600];
    char mnt[600]; /* tmpfs mount point to undo, "" if none */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    mock_host_init(&f->mh);
    f->drv = coffer_builtin_local(&f->mh.host);
    assert_non_null(f->drv);
    f->ops = f->drv->storage;
    snprintf(f->repo, sizeof f->repo, "%s/repo", f->mh.tmpdir);
    f->cfg = cf_config_new();
    cf_config_set(f->cfg, "path", f->repo, 0, 0);
    cf_config_set(f->cfg, "fsync", "false", 0, 0); /* speed; commit logic is the same */
    assert_int_equal(f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), f->cfg, &f->inst), COFFER_OK);
    assert_int_equal(f->ops->prepare(f->inst, 1), COFFER_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->inst)
        f->ops->instance_free(f->inst);
    if (f->mnt[0])
        umount2(f->mnt, MNT_DETACH);
    cf_config_free(f->cfg);
    mock_host_cleanup(&f->mh);
    free(f);
    return 0;
}

/* ---- helpers ----------------------------------------------------------- */

static coffer_status put(fixture *f, const char *key, const void *data, size_t len, uint32_t flags)
{
    coffer_write_opts o = {.struct_size = sizeof o, .flags = flags, .size_hint = len};
    void *w;
    coffer_status st = f->ops->writer_open(f->inst, key, &o, &w);
    if (st)
        return st;
    if ((st = f->ops->writer_write(w, data, len)) != COFFER_OK) {
        f->ops->writer_abort(w);
        return st;
    }
    return f->ops->writer_commit(w);
}

/* Read [off, off+len) into a malloc'd buffer, in small reads. */
static coffer_status get(fixture *f, const char *key, uint64_t off, uint64_t len, char **out, size_t *outlen)
{
    void *r;
    coffer_status st = f->ops->reader_open(f->inst, key, off, len, &r);
    if (st)
        return st;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (cap - n < 1000)
            buf = realloc(buf, cap *= 2);
        size_t got;
        st = f->ops->reader_read(r, buf + n, 1000, &got);
        if (st || got == 0)
            break;
        n += got;
    }
    f->ops->reader_close(r);
    if (st) {
        free(buf);
        return st;
    }
    *out = buf;
    *outlen = n;
    return COFFER_OK;
}

/* Entries of a directory whose name starts with prefix. */
static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strncmp(de->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

typedef struct listing {
    char keys[32][128];
    uint64_t sizes[32];
    int n;
    int stop_after;
} listing;

static int list_cb(void *ud, const char *key, const coffer_object_stat *st)
{
    listing *l = ud;
    if (l->n < 32) {
        snprintf(l->keys[l->n], sizeof l->keys[0], "%s", key);
        l->sizes[l->n] = st->size;
    }
    l->n++;
    return l->stop_after && l->n >= l->stop_after;
}

static int listed(const listing *l, const char *key)
{
    for (int i = 0; i < l->n && i < 32; i++)
        if (strcmp(l->keys[i], key) == 0)
            return 1;
    return 0;
}

/* ---- tests ------------------------------------------------------------- */

static void test_descriptor(void **state)
{
    fixture *f = *state;
    assert_int_equal(f->drv->abi_major, COFFER_ABI_MAJOR);
    assert_int_equal(f->drv->struct_size, sizeof(coffer_plugin));
    assert_int_equal(f->drv->kind, COFFER_KIND_STORAGE);
    assert_string_equal(f->drv->name, "local");
    assert_null(f->drv->database);
    int has_path = 0;
    for (const coffer_option *o = f->drv->options; o->name; o++)
        if (strcmp(o->name, "path") == 0)
            has_path = o->required && o->type == COFFER_OPT_PATH;
    assert_true(has_path);
    uint32_t caps = f->ops->capabilities(f->inst);
    assert_int_equal(caps, COFFER_CAP_ATOMIC_PUBLISH | COFFER_CAP_CONDITIONAL_CREATE | COFFER_CAP_RANGED_READ |
                               COFFER_CAP_LOCAL);
    /* Optional operations this driver lacks are NULL, matching the bits. */
    assert_null(f->ops->versioning_status);
    assert_null(f->ops->restore_version);
}

static void test_round_trip(void **state)
{
    fixture *f = *state;
    size_t len = 3 * 1024 * 1024 + 17;
    char *data = malloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (char)(i * 31 + (i >> 11));
    /* Several writes of odd sizes into one object. */
    coffer_write_opts o = {.struct_size = sizeof o, .flags = COFFER_WRITE_PRIVATE};
    void *w;
    assert_int_equal(f->ops->writer_open(f->inst, "data/ab/ab12cd", &o, &w), COFFER_OK);
    size_t off = 0, step = 1;
    while (off < len) {
        size_t n = step < len - off ? step : len - off;
        assert_int_equal(f->ops->writer_write(w, data + off, n), COFFER_OK);
        off += n;
        step = step * 7 + 3;
    }
    assert_int_equal(f->ops->writer_commit(w), COFFER_OK);

    coffer_object_stat st = {.struct_size = sizeof st};
    assert_int_equal(f->ops->stat(f->inst, "data/ab/ab12cd", &st), COFFER_OK);
    assert_int_equal(st.size, len);
    assert_true(st.mtime > 0);

    char *back;
    size_t blen;
    assert_int_equal(get(f, "data/ab/ab12cd", 0, 0, &back, &blen), COFFER_OK);
    assert_int_equal(blen, len);
    assert_memory_equal(back, data, len);
    free(back);

    /* Empty object. */
    assert_int_equal(put(f, "empty", "", 0, 0), COFFER_OK);
    assert_int_equal(get(f, "empty", 0, 0, &back, &blen), COFFER_OK);
    assert_int_equal(blen, 0);
    free(back);

    /* Overwrite replaces. */
    assert_int_equal(put(f, "data/ab/ab12cd", "new", 3, 0), COFFER_OK);
    assert_int_equal(get(f, "data/ab/ab12cd", 0, 0, &back, &blen), COFFER_OK);
    assert_int_equal(blen, 3);
    assert_memory_equal(back, "new", 3);
    free(back);
    free(data);
}

static void test_modes(void **state)
{
    fixture *f = *state;
    mode_t old = umask(022);
    assert_int_equal(put(f, "sets/one", "x", 1, COFFER_WRITE_PRIVATE), COFFER_OK);
    assert_int_equal(put(f, "sets/two", "x", 1, 0), COFFER_OK);
    char p[700];
    struct stat sb;
    snprintf(p, sizeof p, "%s/sets/one", f->repo);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0600);
    snprintf(p, sizeof p, "%s/sets/two", f->repo);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0600); /* default file_mode */
    snprintf(p, sizeof p, "%s/sets", f->repo);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0700);
    assert_int_equal(stat(f->repo, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0700);

    /* file_mode applies to non-private objects, exactly, whatever the
     * umask; private stays 0600. */
    umask(077);
    f->ops->instance_free(f->inst);
    cf_config_set(f->cfg, "file_mode", "0640", 0, 0);
    assert_int_equal(f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), f->cfg, &f->inst), COFFER_OK);
    assert_int_equal(put(f, "pub", "x", 1, 0), COFFER_OK);
    assert_int_equal(put(f, "priv", "x", 1, COFFER_WRITE_PRIVATE), COFFER_OK);
    snprintf(p, sizeof p, "%s/pub", f->repo);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0640);
    snprintf(p, sizeof p, "%s/priv", f->repo);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0600);
    umask(old);
}

/* append_only: no object but a lock is ever removed or replaced, unless
 * remove_ex carries the maintenance flag. */
static void test_append_only(void **state)
{
    fixture *f = *state;
    assert_false(f->ops->capabilities(f->inst) & COFFER_CAP_APPEND_ONLY);
    f->ops->instance_free(f->inst);
    cf_config_set(f->cfg, "append_only", "true", 0, 0);
    assert_int_equal(f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), f->cfg, &f->inst), COFFER_OK);
    assert_true(f->ops->capabilities(f->inst) & COFFER_CAP_APPEND_ONLY);

    assert_int_equal(put(f, "sets/a", "first", 5, 0), COFFER_OK);
    assert_int_equal(f->ops->remove(f->inst, "sets/a"), COFFER_ERR_LOCKED);
    assert_non_null(strstr(f->mh.last_error, "append-only"));
    assert_int_equal(f->ops->remove_ex(f->inst, "sets/a", NULL, 0), COFFER_ERR_LOCKED);
    assert_int_equal(put(f, "sets/a", "other", 5, 0), COFFER_ERR_LOCKED);
    assert_non_null(strstr(f->mh.last_error, "never replaced"));
    char *b;
    size_t n;
    assert_int_equal(get(f, "sets/a", 0, 0, &b, &n), COFFER_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(b, "first", 5); /* the old bytes stay */
    free(b);
    /* conditional create keeps its own answer */
    assert_int_equal(put(f, "sets/a", "x", 1, COFFER_WRITE_IF_ABSENT), COFFER_ERR_EXISTS);

    /* locks come and go */
    assert_int_equal(put(f, "locks/l", "1", 1, COFFER_WRITE_IF_ABSENT), COFFER_OK);
    assert_int_equal(f->ops->remove(f->inst, "locks/l"), COFFER_OK);

    assert_int_equal(f->ops->remove_ex(f->inst, "sets/a", "v1", COFFER_REMOVE_MAINTENANCE),
                     COFFER_ERR_UNSUPPORTED);
    assert_int_equal(f->ops->remove_ex(f->inst, "sets/a", NULL, COFFER_REMOVE_MAINTENANCE), COFFER_OK);
    assert_int_equal(get(f, "sets/a", 0, 0, &b, &n), COFFER_ERR_NOT_FOUND);

    /* a value that is not a boolean is refused, naming the option */
    f->ops->instance_free(f->inst);
    f->inst = NULL;
    cf_config_set(f->cfg, "append_only", "sometimes", 0, 0);
    void *inst = NULL;
    coffer_status st = f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), f->cfg, &inst);
    if (st == COFFER_OK)
        f->ops->instance_free(inst);
    assert_int_not_equal(st, COFFER_OK);
    assert_non_null(strstr(f->mh.last_error, "append_only"));
}

static void test_atomic_publish(void **state)
{
    fixture *f = *state;
    assert_int_equal(put(f, "obj", "old content", 11, 0), COFFER_OK);

    coffer_write_opts o = {.struct_size = sizeof o};
    void *w, *w2;
    assert_int_equal(f->ops->writer_open(f->inst, "obj", &o, &w), COFFER_OK);
    assert_int_equal(f->ops->writer_write(w, "new ", 4), COFFER_OK);
    assert_int_equal(f->ops->writer_open(f->inst, "dir/fresh", &o, &w2), COFFER_OK);
    assert_int_equal(f->ops->writer_write(w2, "partial", 7), COFFER_OK);

    /* Mid-write: readers see the old object, the new key does not exist,
     * and list shows neither temporary file. */
    char *back;
    size_t blen;
    assert_int_equal(get(f, "obj", 0, 0, &back, &blen), COFFER_OK);
    assert_int_equal(blen, 11);
    assert_memory_equal(back, "old content", 11);
    free(back);
    coffer_object_stat st = {.struct_size = sizeof st};
    assert_int_equal(f->ops->stat(f->inst, "dir/fresh", &st), COFFER_ERR_NOT_FOUND);
    void *r;
    assert_int_equal(f->ops->reader_open(f->inst, "dir/fresh", 0, 0, &r), COFFER_ERR_NOT_FOUND);
    assert_int_equal(count_entries(f->repo, ".tmp-"), 1);
    char dir[700];
    snprintf(dir, sizeof dir, "%s/dir", f->repo);
    assert_int_equal(count_entries(dir, ".tmp-"), 1);
    listing l = {0};
    assert_int_equal(f->ops->list(f->inst, "", list_cb, &l), COFFER_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.keys[0], "obj");

    /* A reader opened before commit keeps reading the old object. */
    assert_int_equal(f->ops->reader_open(f->inst, "obj", 0, 0, &r), COFFER_OK);
    assert_int_equal(f->ops->writer_write(w, "content!", 8), COFFER_OK);
    assert_int_equal(f->ops->writer_commit(w), COFFER_OK);
    char buf[64];
    size_t got;
    assert_int_equal(f->ops->reader_read(r, buf, sizeof buf, &got), COFFER_OK);
    assert_int_equal(got, 11);
    assert_memory_equal(buf, "old content", 11);
    assert_int_equal(f->ops->reader_read(r, buf, sizeof buf, &got), COFFER_OK);
    assert_int_equal(got, 0);
    f->ops->reader_close(r);

    assert_int_equal(get(f, "obj", 0, 0, &back, &blen), COFFER_OK);
    assert_int_equal(blen, 12);
    assert_memory_equal(back, "new content!", 12);
    free(back);

    /* Aborted writer leaves nothing behind. */
    f->ops->writer_abort(w2);
    assert_int_equal(f->ops->stat(f->inst, "dir/fresh", &st), COFFER_ERR_NOT_FOUND);
    assert_int_equal(count_entries(dir, ""), 0);
    assert_int_equal(count_entries(f->repo, ".tmp-"), 0);
}

static void test_list_skips_stray_temp_files(void **state)
{
    fixture *f = *state;
    /* What a crash mid-write leaves behind. */
    assert_int_equal(put(f, "data/ab/real", "x", 1, 0), COFFER_OK);
    char p[700];
    snprintf(p, sizeof p, "%s/data/ab/.tmp-deadbeef00000000", f->repo);
    FILE *fp = fopen(p, "w");
    fputs("partial", fp);
    fclose(fp);
    listing l = {0};
    assert_int_equal(f->ops->list(f->inst, "", list_cb, &l), COFFER_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.keys[0], "data/ab/real");
    /* And temporary names are not keys. */
    coffer_object_stat st = {.struct_size = sizeof st};
    assert_int_equal(f->ops->stat(f->inst, "data/ab/.tmp-deadbeef00000000", &st), COFFER_ERR_INVALID);
}

/* Overwrites in one thread, whole-object reads in another: every read
 * must see one complete version. Each version is n bytes of value n%251
 * preceded by its length. */
typedef struct race {
    fixture *f;
    atomic_int stop;
    int versions; /* read after the join */
} race;

static void *race_writer(void *arg)
{
    race *rc = arg;
    char *buf = malloc(70000);
    for (int i = 1; !atomic_load(&rc->stop) && i < 400; i++) {
        uint32_t n = (uint32_t)(1000 + (i * 7919) % 65000);
        memcpy(buf, &n, 4);
        memset(buf + 4, (int)(n % 251), n);
        if (put(rc->f, "locks/hot", buf, n + 4, 0) == COFFER_OK)
            rc->versions++;
    }
    free(buf);
    atomic_store(&rc->stop, 1);
    return NULL;
}

static void test_readers_never_see_partial_objects(void **state)
{
    fixture *f = *state;
    uint32_t n0 = 10;
    char first[14];
    memcpy(first, &n0, 4);
    memset(first + 4, 10, 10);
    assert_int_equal(put(f, "locks/hot", first, sizeof first, 0), COFFER_OK);
    race rc = {.f = f};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, race_writer, &rc), 0);
    int reads = 0;
    while (!atomic_load(&rc.stop)) {
        char *back;
        size_t blen;
        assert_int_equal(get(f, "locks/hot", 0, 0, &back, &blen), COFFER_OK);
        uint32_t n;
        assert_true(blen >= 4);
        memcpy(&n, back, 4);
        assert_int_equal(blen, n + 4);
        for (uint32_t i = 0; i < n; i++)
            if ((unsigned char)back[4 + i] != n % 251)
                fail_msg("byte %u of a %u-byte version is wrong", i, n);
        free(back);
        reads++;
    }
    pthread_join(t, NULL);
    assert_true(rc.versions > 100);
    assert_true(reads > 0);
    assert_int_equal(count_entries(f->repo, ".tmp-"), 0);
}

static void test_conditional_create(void **state)
{
    fixture *f = *state;
    assert_int_equal(put(f, "locks/run", "first", 5, COFFER_WRITE_IF_ABSENT), COFFER_OK);
    assert_int_equal(put(f, "locks/run", "second", 6, COFFER_WRITE_IF_ABSENT), COFFER_ERR_EXISTS);
    assert_non_null(strstr(f->mh.last_error, "locks/run"));

    /* Two writers racing: both open before either commits; one wins. */
    coffer_write_opts o = {.struct_size = sizeof o, .flags = COFFER_WRITE_IF_ABSENT};
    void *a, *b;
    assert_int_equal(f->ops->writer_open(f->inst, "locks/race", &o, &a), COFFER_OK);
    assert_int_equal(f->ops->writer_open(f->inst, "locks/race", &o, &b), COFFER_OK);
    assert_int_equal(f->ops->writer_write(a, "A", 1), COFFER_OK);
    assert_int_equal(f->ops->writer_write(b, "B", 1), COFFER_OK);
    assert_int_equal(f->ops->writer_commit(b), COFFER_OK);
    assert_int_equal(f->ops->writer_commit(a), COFFER_ERR_EXISTS);
    char *back;
    size_t blen;
    assert_int_equal(get(f, "locks/race", 0, 0, &back, &blen), COFFER_OK);
    assert_int_equal(blen, 1);
    assert_int_equal(back[0], 'B');
    free(back);
    char dir[700];
    snprintf(dir, sizeof dir, "%s/locks", f->repo);
    assert_int_equal(count_entries(dir, ".tmp-"), 0);

    /* Unconditional write still replaces; removal frees the key. */
    assert_int_equal(put(f, "locks/run", "third", 5, 0), COFFER_OK);
    assert_int_equal(f->ops->remove(f->inst, "locks/run"), COFFER_OK);
    assert_int_equal(put(f, "locks/run", "fourth", 6, COFFER_WRITE_IF_ABSENT), COFFER_OK);
}

static void test_ranged_read(void **state)
{
    fixture *f = *state;
    char data[1000];
    for (int i = 0; i < 1000; i++)
        data[i] = (char)i;
    assert_int_equal(put(f, "packs/p1", data, sizeof data, 0), COFFER_OK);
    char *back;
    size_t blen;
    assert_int_equal(get(f, "packs/p1", 100, 50, &back, &blen), COFFER_OK);
    assert_int_equal(blen, 50);
    assert_memory_equal(back, data + 100, 50);
    free(back);
    assert_int_equal(get(f, "packs/p1", 990, 0, &back, &blen), COFFER_OK); /* to the end */
    assert_int_equal(blen, 10);
    assert_memory_equal(back, data + 990, 10);
    free(back);
    assert_int_equal(get(f, "packs/p1", 900, 500, &back, &blen), COFFER_OK); /* clipped */
    assert_int_equal(blen, 100);
    free(back);
    assert_int_equal(get(f, "packs/p1", 1000, 0, &back, &blen), COFFER_OK); /* empty range at end */
    assert_int_equal(blen, 0);
    free(back);
    void *r;
    assert_int_equal(f->ops->reader_open(f->inst, "packs/p1", 1001, 1, &r), COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "packs/p1"));
}

static void test_not_found(void **state)
{
    fixture *f = *state;
    coffer_object_stat st = {.struct_size = sizeof st};
    void *r;
    assert_int_equal(f->ops->stat(f->inst, "nope/missing", &st), COFFER_ERR_NOT_FOUND);
    assert_non_null(strstr(f->mh.last_error, "nope/missing"));
    assert_int_equal(f->ops->reader_open(f->inst, "missing", 0, 0, &r), COFFER_ERR_NOT_FOUND);
    assert_non_null(strstr(f->mh.last_error, "missing"));
    assert_int_equal(f->ops->remove(f->inst, "missing"), COFFER_ERR_NOT_FOUND);
    /* A directory is not an object. */
    assert_int_equal(put(f, "d/x", "1", 1, 0), COFFER_OK);
    assert_int_equal(f->ops->stat(f->inst, "d", &st), COFFER_ERR_NOT_FOUND);
    assert_int_equal(f->ops->reader_open(f->inst, "d", 0, 0, &r), COFFER_ERR_NOT_FOUND);
    assert_int_equal(f->ops->remove(f->inst, "d"), COFFER_ERR_NOT_FOUND);
    /* Below a file. */
    assert_int_equal(f->ops->stat(f->inst, "d/x/y", &st), COFFER_ERR_NOT_FOUND);
    /* Remove, then it is gone. */
    assert_int_equal(f->ops->remove(f->inst, "d/x"), COFFER_OK);
    assert_int_equal(f->ops->stat(f->inst, "d/x", &st), COFFER_ERR_NOT_FOUND);
    assert_int_equal(f->ops->remove(f->inst, "d/x"), COFFER_ERR_NOT_FOUND);
}

static void test_key_validation(void **state)
{
    fixture *f = *state;
    static const char *bad[] = {"../x", "a/../../x", "/etc/passwd", "", "a//b", "a/./b", "a/..", "./a",
                                "trailing/", ".tmp-x", "a/.tmp-y"};
    coffer_write_opts o = {.struct_size = sizeof o};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *h = NULL;
        coffer_object_stat st = {.struct_size = sizeof st};
        f->mh.last_error[0] = 0;
        assert_int_equal(f->ops->writer_open(f->inst, bad[i], &o, &h), COFFER_ERR_INVALID);
        assert_null(h);
        assert_true(f->mh.last_error[0] != 0);
        if (bad[i][0]) /* the message names the key */
            assert_non_null(strstr(f->mh.last_error, bad[i]));
        assert_int_equal(f->ops->reader_open(f->inst, bad[i], 0, 0, &h), COFFER_ERR_INVALID);
        assert_int_equal(f->ops->stat(f->inst, bad[i], &st), COFFER_ERR_INVALID);
        assert_int_equal(f->ops->remove(f->inst, bad[i]), COFFER_ERR_INVALID);
    }
    assert_int_equal(f->ops->writer_open(f->inst, NULL, &o, &(void *){0}), COFFER_ERR_INVALID);
    /* Nothing escaped the repository. */
    char p[700];
    snprintf(p, sizeof p, "%s/x", f->mh.tmpdir);
    assert_int_equal(access(p, F_OK), -1);
    /* Dots inside names are fine. */
    assert_int_equal(put(f, "a/.hidden", "1", 1, 0), COFFER_OK);
    assert_int_equal(put(f, "a..b/c.d", "1", 1, 0), COFFER_OK);
    listing l = {0};
    assert_int_equal(f->ops->list(f->inst, "../", list_cb, &l), COFFER_ERR_INVALID);
    assert_int_equal(f->ops->list(f->inst, "/abs", list_cb, &l), COFFER_ERR_INVALID);
    assert_int_equal(f->ops->list(f->inst, "a//", list_cb, &l), COFFER_ERR_INVALID);
}

static void test_list(void **state)
{
    fixture *f = *state;
    const char *keys[] = {"config", "data/ab/1", "data/ab/22", "data/abc/3", "data/cd/4", "sets/x", "datafile"};
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(put(f, keys[i], keys[i], strlen(keys[i]), 0), COFFER_OK);
    listing l = {0};
    assert_int_equal(f->ops->list(f->inst, "", list_cb, &l), COFFER_OK);
    assert_int_equal(l.n, 7);
    for (size_t i = 0; i < 7; i++)
        assert_true(listed(&l, keys[i]));
    for (int i = 0; i < l.n; i++)
        assert_int_equal(l.sizes[i], strlen(l.keys[i]));

    memset(&l, 0, sizeof l);
    assert_int_equal(f->ops->list(f->inst, "data/", list_cb, &l), COFFER_OK);
    assert_int_equal(l.n, 4);
    assert_false(listed(&l, "datafile"));

    memset(&l, 0, sizeof l);
    assert_int_equal(f->ops->list(f->inst, "data/ab", list_cb, &l), COFFER_OK); /* a string prefix */
    assert_int_equal(l.n, 3);
    assert_true(listed(&l, "data/abc/3"));

    memset(&l, 0, sizeof l);
    assert_int_equal(f->ops->list(f->inst, "data/ab/", list_cb, &l), COFFER_OK);
    assert_int_equal(l.n, 2);

    memset(&l, 0, sizeof l);
    assert_int_equal(f->ops->list(f->inst, "data", list_cb, &l), COFFER_OK);
    assert_int_equal(l.n, 5);

    memset(&l, 0, sizeof l);
    assert_int_equal(f->ops->list(f->inst, "nothing/here/", list_cb, &l), COFFER_OK);
    assert_int_equal(l.n, 0);

    memset(&l, 0, sizeof l);
    assert_int_equal(f->ops->list(f->inst, "sets/x", list_cb, &l), COFFER_OK); /* exact key */
    assert_int_equal(l.n, 1);

    /* Early stop. */
    memset(&l, 0, sizeof l);
    l.stop_after = 2;
    assert_int_equal(f->ops->list(f->inst, "", list_cb, &l), COFFER_OK);
    assert_int_equal(l.n, 2);
}

static void test_prepare_and_options(void **state)
{
    fixture *f = *state;
    void *in2;
    coffer_config *c = cf_config_new();
    char p[700];

    /* Missing root: prepare(0) refuses, prepare(1) creates it (0700). */
    snprintf(p, sizeof p, "%s/deep/new/repo", f->mh.tmpdir);
    cf_config_set(c, "path", p, 0, 0);
    assert_int_equal(f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), c, &in2), COFFER_OK);
    assert_int_equal(f->ops->prepare(in2, 0), COFFER_ERR_NOT_FOUND);
    assert_non_null(strstr(f->mh.last_error, p));
    assert_int_equal(f->ops->prepare(in2, 1), COFFER_OK);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0700);
    assert_int_equal(f->ops->prepare(in2, 0), COFFER_OK);
    f->ops->instance_free(in2);

    /* Root is a file. */
    snprintf(p, sizeof p, "%s/plainfile", f->mh.tmpdir);
    fclose(fopen(p, "w"));
    cf_config_set(c, "path", p, 0, 0);
    assert_int_equal(f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), c, &in2), COFFER_OK);
    assert_int_not_equal(f->ops->prepare(in2, 0), COFFER_OK);
    f->ops->instance_free(in2);

    /* Relative path resolves against the policy root; trailing '/' ok. */
    snprintf(f->mh.root, sizeof f->mh.root, "%s", f->mh.tmpdir);
    cf_config_set(c, "path", "rel/repo/", 0, 0);
    assert_int_equal(f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), c, &in2), COFFER_OK);
    assert_int_equal(f->ops->prepare(in2, 1), COFFER_OK);
    void *w;
    coffer_write_opts o = {.struct_size = sizeof o};
    assert_int_equal(f->ops->writer_open(in2, "k", &o, &w), COFFER_OK);
    assert_int_equal(f->ops->writer_commit(w), COFFER_OK);
    snprintf(p, sizeof p, "%s/rel/repo/k", f->mh.tmpdir);
    assert_int_equal(access(p, F_OK), 0);
    f->ops->instance_free(in2);

    /* Bad options. */
    cf_config_set(c, "file_mode", "rw-r--r--", 0, 0);
    assert_int_equal(f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), c, &in2), COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "file_mode"));
    cf_config_set(c, "file_mode", "0600", 0, 0);
    cf_config_set(c, "dir_mode", "0500", 0, 0);
    assert_int_equal(f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), c, &in2), COFFER_ERR_INVALID);
    cf_config_free(c);
    c = cf_config_new();
    assert_int_equal(f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), c, &in2), COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "path"));
    cf_config_free(c);
}

/* A writer handle from a struct that is smaller than today's: the driver
 * must not read past struct_size (ABI rule 3). */
static void test_old_write_opts(void **state)
{
    fixture *f = *state;
    coffer_write_opts o = {.struct_size = offsetof(coffer_write_opts, flags), .flags = COFFER_WRITE_IF_ABSENT};
    assert_int_equal(put(f, "k", "1", 1, 0), COFFER_OK);
    void *w;
    /* flags is beyond struct_size: ignored, so the write is unconditional. */
    assert_int_equal(f->ops->writer_open(f->inst, "k", &o, &w), COFFER_OK);
    assert_int_equal(f->ops->writer_commit(w), COFFER_OK);
    assert_int_equal(f->ops->writer_open(f->inst, "k", NULL, &w), COFFER_OK);
    f->ops->writer_abort(w);
}

/* Space reserved from a too-large size_hint is given back at commit. */
static void test_size_hint_overestimate(void **state)
{
    fixture *f = *state;
    coffer_write_opts o = {.struct_size = sizeof o, .size_hint = 8 << 20};
    void *w;
    assert_int_equal(f->ops->writer_open(f->inst, "packs/small", &o, &w), COFFER_OK);
    assert_int_equal(f->ops->writer_write(w, "tiny", 4), COFFER_OK);
    assert_int_equal(f->ops->writer_commit(w), COFFER_OK);
    char p[700];
    struct stat sb;
    snprintf(p, sizeof p, "%s/packs/small", f->repo);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_size, 4);
    assert_true((uint64_t)sb.st_blocks * 512 < (1u << 20));
}

static void test_misuse_aborts(void **state)
{
    fixture *f = *state;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2);
        uint32_t fake[16] = {COFFER_MAGIC_WRITER}; /* a writer passed as a reader */
        size_t got;
        char buf[4];
        f->ops->reader_read(fake, buf, sizeof buf, &got);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void test_no_space(void **state)
{
    fixture *f = *state;
    snprintf(f->mnt, sizeof f->mnt, "%s/small", f->mh.tmpdir);
    mkdir(f->mnt, 0700);
    if (mount("tmpfs", f->mnt, "tmpfs", 0, "size=64k,mode=0700") != 0) {
        f->mnt[0] = 0;
        skip(); /* needs CAP_SYS_ADMIN */
    }
    coffer_config *c = cf_config_new();
    cf_config_set(c, "path", f->mnt, 0, 0);
    void *in2;
    assert_int_equal(f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), c, &in2), COFFER_OK);
    assert_int_equal(f->ops->prepare(in2, 1), COFFER_OK);

    /* Found while writing. */
    char *big = calloc(1, 1 << 20);
    coffer_write_opts o = {.struct_size = sizeof o};
    void *w;
    assert_int_equal(f->ops->writer_open(in2, "data/big", &o, &w), COFFER_OK);
    coffer_status st = f->ops->writer_write(w, big, 1 << 20);
    if (st == COFFER_OK)
        st = f->ops->writer_commit(w);
    else
        f->ops->writer_abort(w);
    assert_int_equal(st, COFFER_ERR_NO_SPACE);
    assert_non_null(strstr(f->mh.last_error, "data/big"));

    /* Found up front from the size hint. */
    o.size_hint = 1 << 20;
    assert_int_equal(f->ops->writer_open(in2, "data/big2", &o, &w), COFFER_ERR_NO_SPACE);
    assert_non_null(strstr(f->mh.last_error, "data/big2"));

    /* Nothing left behind; small objects still fit. */
    char dir[700];
    snprintf(dir, sizeof dir, "%s/data", f->mnt);
    assert_int_equal(count_entries(dir, ""), 0);
    o.size_hint = 0;
    assert_int_equal(f->ops->writer_open(in2, "data/small", &o, &w), COFFER_OK);
    assert_int_equal(f->ops->writer_write(w, big, 100), COFFER_OK);
    assert_int_equal(f->ops->writer_commit(w), COFFER_OK);
    free(big);
    f->ops->instance_free(in2);
    cf_config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_descriptor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_atomic_publish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_skips_stray_temp_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readers_never_see_partial_objects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conditional_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ranged_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prepare_and_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_write_opts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_hint_overestimate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misuse_aborts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_space, setup, teardown),
    };
    return cmocka_run_group_tests_name("storage_local", tests, NULL, NULL);
}
