/*
 * storage "s3" against a real server (Ceph RGW from tests/tools/ceph_rgw.sh),
 * driven by e2e_s3_driver.sh, which exports AWS_ENDPOINT_URL and the keys
 * and has the AWS CLI at hand. Without an endpoint every test is skipped.
 *
 * Each test works in its own bucket (or prefix), so they do not depend on
 * each other's leftovers. The AWS CLI is called as an independent client
 * where the point is interoperability (versioning switched on by it,
 * objects put by it read here).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mock_host.h"
#include "plugin/config.h"

#include "../../../plugins/storage_s3/s3.h"

extern const coffer_plugin *coffer_builtin_s3(const coffer_host *host);

typedef struct fx {
    mock_host mh;
    const coffer_storage_ops *ops;
    coffer_config *cfg;
    void *inst;
    char bucket[64];
} fx;

static int counter;

static int have_server(void)
{
    return getenv("AWS_ENDPOINT_URL") && getenv("AWS_ACCESS_KEY_ID") &&
           getenv("AWS_SECRET_ACCESS_KEY");
}

static int aws(const char *fmt, ...)
{
    char cmd[2048], args[1800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "aws --endpoint-url \"$AWS_ENDPOINT_URL\" %s >/dev/null 2>&1", args);
    return system(cmd);
}

static coffer_status make(fx *f)
{
    if (f->inst)
        f->ops->instance_free(f->inst);
    f->inst = NULL;
    coffer_status st = f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), f->cfg, &f->inst);
    if (st == COFFER_OK) {
        s3_instance *in = f->inst;
        in->list_page = 7; /* every listing pages */
    }
    return st;
}

static int setup(void **state)
{
    if (!have_server()) {
        *state = NULL;
        return 0;
    }
    fx *f = calloc(1, sizeof *f);
    mock_host_init(&f->mh);
    f->ops = coffer_builtin_s3(&f->mh.host)->storage;
    f->cfg = cf_config_new();
    snprintf(f->bucket, sizeof f->bucket, "drv-%d-%d", (int)getpid(), ++counter);
    cf_config_set(f->cfg, "bucket", f->bucket, 0, 0);
    cf_config_set(f->cfg, "prefix", "repo", 0, 0);
    cf_config_set(f->cfg, "part_size", "5M", 0, 0);
    cf_config_set(f->cfg, "parallel_parts", "3", 0, 0);
    cf_config_set(f->cfg, "retries", "2", 0, 0);
    cf_config_set(f->cfg, "retry_delay", "20", 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    assert_int_equal(f->ops->prepare(f->inst, 1), COFFER_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (!f)
        return 0;
    if (f->inst)
        f->ops->instance_free(f->inst);
    cf_config_free(f->cfg);
    mock_host_cleanup(&f->mh);
    free(f);
    return 0;
}

#define NEED_SERVER(f)                                                                             \
    do {                                                                                           \
        if (!(f)) {                                                                                \
            print_message("  no AWS_ENDPOINT_URL: skipped\n");                                     \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* ---- helpers ------------------------------------------------------------------ */

/* Deterministic bytes: byte i of stream `seed`. */
static unsigned char pat(uint32_t seed, uint64_t i)
{
    uint64_t x = (i / 8) * 0x9E3779B97F4A7C15ull ^ seed;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 32;
    return (unsigned char)(x >> ((i % 8) * 8));
}

static coffer_status put(fx *f, const char *key, const void *data, size_t len, uint32_t flags)
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

/* Whole object (or range) into a malloc'd buffer. */
static coffer_status get(fx *f, const char *key, uint64_t off, uint64_t len, char **out,
                         size_t *outlen)
{
    void *r;
    coffer_status st = f->ops->reader_open(f->inst, key, off, len, &r);
    if (st)
        return st;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (n + 4096 > cap)
            b = realloc(b, cap *= 2);
        size_t got = 0;
        /* odd read sizes, to cross the stash and the caller's buffer */
        size_t want = 1 + (n * 7919) % 40000;
        if (want > cap - n)
            want = cap - n;
        if ((st = f->ops->reader_read(r, b + n, want, &got)) != COFFER_OK)
            break;
        if (got == 0)
            break;
        n += got;
    }
    f->ops->reader_close(r);
    if (st) {
        free(b);
        return st;
    }
    *out = b;
    *outlen = n;
    return COFFER_OK;
}

typedef struct keys {
    char *k[4096];
    uint64_t size[4096];
    int n;
} keys;

static int collect(void *ud, const char *key, const coffer_object_stat *st)
{
    keys *k = ud;
    if (k->n < 4096) {
        k->size[k->n] = st->size;
        k->k[k->n++] = strdup(key);
    }
    return 0;
}

static void keys_free(keys *k)
{
    for (int i = 0; i < k->n; i++)
        free(k->k[i]);
    k->n = 0;
}

static int has_key(const keys *k, const char *key)
{
    for (int i = 0; i < k->n; i++)
        if (strcmp(k->k[i], key) == 0)
            return 1;
    return 0;
}

/* Multipart uploads still open in the bucket. */
static int open_uploads(fx *f)
{
    s3_instance *in = f->inst;
    s3_req rq = {.method = "GET"};
    s3_req_query(&rq, "uploads", NULL);
    s3_resp rs;
    s3_resp_init(&rs, 1 << 20);
    assert_int_equal(s3_request(in, &rq, &rs), COFFER_OK);
    int n = 0;
    for (const char *p = rs.body.s; p && (p = strstr(p, "<Upload>")) != NULL; p++)
        n++;
    s3_resp_free(&rs);
    return n;
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_small_objects(void **state)
{
    fx *f = *state;
    NEED_SERVER(f);
    assert_int_equal(put(f, "config", "hello", 5, COFFER_WRITE_PRIVATE), COFFER_OK);
    assert_int_equal(put(f, "empty", "", 0, 0), COFFER_OK);
    coffer_object_stat st = {.struct_size = sizeof st};
    assert_int_equal(f->ops->stat(f->inst, "config", &st), COFFER_OK);
    assert_int_equal(st.size, 5);
    assert_true(st.mtime > 1700000000);
    assert_string_equal(st.etag, "5d41402abc4b2a76b9719d911017c592"); /* md5("hello") */
    char *b;
    size_t n;
    assert_int_equal(get(f, "config", 0, 0, &b, &n), COFFER_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(b, "hello", 5);
    free(b);
    assert_int_equal(get(f, "config", 1, 3, &b, &n), COFFER_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(b, "ell", 3);
    free(b);
    /* a range running past the end is cut there; at the end it is empty */
    assert_int_equal(get(f, "config", 3, 100, &b, &n), COFFER_OK);
    assert_int_equal(n, 2);
    free(b);
    assert_int_equal(get(f, "config", 5, 0, &b, &n), COFFER_OK);
    assert_int_equal(n, 0);
    free(b);
    assert_int_equal(get(f, "empty", 0, 0, &b, &n), COFFER_OK);
    assert_int_equal(n, 0);
    free(b);
    void *r = NULL;
    assert_int_equal(f->ops->reader_open(f->inst, "config", 6, 0, &r), COFFER_ERR_INVALID);
    assert_int_equal(f->ops->reader_open(f->inst, "nope", 0, 0, &r), COFFER_ERR_NOT_FOUND);
    assert_non_null(strstr(f->mh.last_error, "nope"));
    assert_int_equal(f->ops->stat(f->inst, "nope", &st), COFFER_ERR_NOT_FOUND);
    /* overwrite */
    assert_int_equal(put(f, "config", "bye", 3, 0), COFFER_OK);
    assert_int_equal(get(f, "config", 0, 0, &b, &n), COFFER_OK);
    assert_int_equal(n, 3);
    free(b);
    /* conditional create */
    assert_int_equal(put(f, "locks/a", "1", 1, COFFER_WRITE_IF_ABSENT), COFFER_OK);
    assert_int_equal(put(f, "locks/a", "2", 1, COFFER_WRITE_IF_ABSENT), COFFER_ERR_EXISTS);
    assert_non_null(strstr(f->mh.last_error, "already exists"));
    assert_int_equal(get(f, "locks/a", 0, 0, &b, &n), COFFER_OK);
    assert_memory_equal(b, "1", 1);
    free(b);
    assert_true(f->ops->capabilities(f->inst) & COFFER_CAP_CONDITIONAL_CREATE);
    /* remove */
    assert_int_equal(f->ops->remove(f->inst, "locks/a"), COFFER_OK);
    assert_int_equal(f->ops->remove(f->inst, "locks/a"), COFFER_ERR_NOT_FOUND);
    assert_int_equal(f->ops->stat(f->inst, "locks/a", &st), COFFER_ERR_NOT_FOUND);
}

static void test_list_paging(void **state)
{
    fx *f = *state;
    NEED_SERVER(f);
    char key[64];
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "data/%02x/obj%03d", i % 5, i);
        assert_int_equal(put(f, key, key, strlen(key), 0), COFFER_OK);
    }
    assert_int_equal(put(f, "index/one", "x", 1, 0), COFFER_OK);
    keys k = {0};
    assert_int_equal(f->ops->list(f->inst, "data/", collect, &k), COFFER_OK);
    assert_int_equal(k.n, 40); /* 6 pages of 7 */
    assert_true(has_key(&k, "data/00/obj000"));
    assert_true(has_key(&k, "data/04/obj039"));
    for (int i = 0; i < k.n; i++)
        assert_int_equal(k.size[i], strlen(k.k[i]));
    keys_free(&k);
    assert_int_equal(f->ops->list(f->inst, "", collect, &k), COFFER_OK);
    assert_int_equal(k.n, 41);
    assert_true(has_key(&k, "index/one"));
    keys_free(&k);
    assert_int_equal(f->ops->list(f->inst, "data/03", collect, &k), COFFER_OK);
    assert_int_equal(k.n, 8);
    keys_free(&k);
    assert_int_equal(f->ops->list(f->inst, "zzz/", collect, &k), COFFER_OK);
    assert_int_equal(k.n, 0);
}

/* Multipart: unknown length, uneven writes, parts in parallel; ranged
 * reads across part boundaries. */
static void test_multipart(void **state)
{
    fx *f = *state;
    NEED_SERVER(f);
    const uint64_t total = 23ull * 1024 * 1024 + 12345; /* 5 parts of 5 MiB */
    /* parts go up with UNSIGNED-PAYLOAD here; signed ones everywhere else */
    cf_config_set(f->cfg, "sign_payload", "false", 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    coffer_write_opts o = {.struct_size = sizeof o};
    void *w;
    assert_int_equal(f->ops->writer_open(f->inst, "data/big", &o, &w), COFFER_OK);
    unsigned char *chunk = malloc(1 << 20);
    uint64_t pos = 0;
    for (int i = 0; pos < total; i++) {
        size_t n = (size_t)(1 + (i * 104729u) % (1 << 20));
        if (n > total - pos)
            n = (size_t)(total - pos);
        for (size_t j = 0; j < n; j++)
            chunk[j] = pat(7, pos + j);
        assert_int_equal(f->ops->writer_write(w, chunk, n), COFFER_OK);
        pos += n;
    }
    free(chunk);
    s3_instance *in = f->inst;
    assert_true(in->mem_used <= in->mem_limit + in->part_size);
    assert_int_equal(f->ops->writer_commit(w), COFFER_OK);
    coffer_object_stat st = {.struct_size = sizeof st};
    assert_int_equal(f->ops->stat(f->inst, "data/big", &st), COFFER_OK);
    assert_int_equal(st.size, total);
    assert_non_null(strstr(st.etag, "-5")); /* a multipart ETag */
    char *b;
    size_t n;
    assert_int_equal(get(f, "data/big", 0, 0, &b, &n), COFFER_OK);
    assert_int_equal(n, total);
    for (uint64_t i = 0; i < total; i++)
        if ((unsigned char)b[i] != pat(7, i))
            fail_msg("byte %llu differs", (unsigned long long)i);
    free(b);
    uint64_t off = 5ull * 1024 * 1024 - 100;
    assert_int_equal(get(f, "data/big", off, 300000, &b, &n), COFFER_OK);
    assert_int_equal(n, 300000);
    for (uint64_t i = 0; i < n; i++)
        assert_int_equal((unsigned char)b[i], pat(7, off + i));
    free(b);
    assert_int_equal(get(f, "data/big", total - 10, 0, &b, &n), COFFER_OK);
    assert_int_equal(n, 10);
    free(b);
    assert_int_equal(open_uploads(f), 0);
    assert_int_equal(in->mem_used, 0);
}

/* With a size hint a little over part_size (a pack: its target plus one
 * chunk), an object that ends within the hint goes up in one PUT; one that
 * runs past it still becomes a multipart upload. part_size is 5M here. */
static void hinted_write(fx *f, const char *key, uint64_t hint, uint64_t total, char *etag)
{
    coffer_write_opts o = {.struct_size = sizeof o, .size_hint = hint};
    void *w;
    assert_int_equal(f->ops->writer_open(f->inst, key, &o, &w), COFFER_OK);
    unsigned char *chunk = malloc(1 << 20);
    for (uint64_t pos = 0; pos < total;) {
        size_t n = total - pos < (1 << 20) ? (size_t)(total - pos) : (1 << 20);
        for (size_t j = 0; j < n; j++)
            chunk[j] = pat(9, pos + j);
        assert_int_equal(f->ops->writer_write(w, chunk, n), COFFER_OK);
        pos += n;
    }
    free(chunk);
    assert_int_equal(f->ops->writer_commit(w), COFFER_OK);
    coffer_object_stat st = {.struct_size = sizeof st};
    assert_int_equal(f->ops->stat(f->inst, key, &st), COFFER_OK);
    assert_int_equal(st.size, total);
    strcpy(etag, st.etag);
    char *b;
    size_t n;
    assert_int_equal(get(f, key, 0, 0, &b, &n), COFFER_OK);
    assert_int_equal(n, total);
    for (uint64_t i = 0; i < total; i++)
        if ((unsigned char)b[i] != pat(9, i))
            fail_msg("%s: byte %llu differs", key, (unsigned long long)i);
    free(b);
}

static void test_size_hint(void **state)
{
    fx *f = *state;
    NEED_SERVER(f);
    assert_int_equal(make(f), COFFER_OK);
    char etag[80];
    const uint64_t mib = 1024 * 1024;
    hinted_write(f, "data/hinted", 8 * mib, 6 * mib + 777, etag);
    assert_null(strchr(etag, '-')); /* one PUT: a plain MD5 ETag */
    hinted_write(f, "data/past-hint", 8 * mib, 9 * mib + 777, etag);
    assert_non_null(strchr(etag, '-')); /* past the hint: multipart */
    hinted_write(f, "data/unhinted", 0, 6 * mib + 777, etag);
    assert_non_null(strstr(etag, "-2")); /* no hint: a full part and the rest */
    hinted_write(f, "data/far-hint", 50 * mib, 6 * mib + 777, etag);
    assert_non_null(strstr(etag, "-2")); /* a hint over two parts is not used */
    s3_instance *in = f->inst;
    assert_int_equal(open_uploads(f), 0);
    assert_int_equal(in->mem_used, 0);
}

/* An aborted writer leaves neither an object nor an open upload. */
static void test_abort(void **state)
{
    fx *f = *state;
    NEED_SERVER(f);
    coffer_write_opts o = {.struct_size = sizeof o};
    void *w;
    assert_int_equal(f->ops->writer_open(f->inst, "data/aborted", &o, &w), COFFER_OK);
    char *buf = calloc(1, 1 << 20);
    for (int i = 0; i < 13; i++)
        assert_int_equal(f->ops->writer_write(w, buf, 1 << 20), COFFER_OK);
    f->ops->writer_abort(w);
    coffer_object_stat st = {.struct_size = sizeof st};
    assert_int_equal(f->ops->stat(f->inst, "data/aborted", &st), COFFER_ERR_NOT_FOUND);
    assert_int_equal(open_uploads(f), 0);
    /* a small writer aborted: nothing either */
    assert_int_equal(f->ops->writer_open(f->inst, "data/aborted2", &o, &w), COFFER_OK);
    assert_int_equal(f->ops->writer_write(w, buf, 100), COFFER_OK);
    f->ops->writer_abort(w);
    assert_int_equal(f->ops->stat(f->inst, "data/aborted2", &st), COFFER_ERR_NOT_FOUND);
    free(buf);
}

/* Keys that need careful signing, read back here and (by the script) by
 * the AWS CLI; and an object the CLI wrote, read here. */
static void test_special_keys(void **state)
{
    fx *f = *state;
    NEED_SERVER(f);
    const char *interop = getenv("S3_INTEROP_BUCKET");
    static const char *const names[] = {
        "with space/and+plus/file name.txt",
        "unicode/\xc3\xbc\x6e\xc3\xaf\x63\xc3\xb8\x64\xc3\xa9 \xe1\x88\xb4.txt",
        "odd/a&b=c;d,e@f$g'h(i)!*~.txt",
        "odd/percent%20not-a-space+%2B",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "from-driver:%s", names[i]);
        assert_int_equal(put(f, names[i], body, strlen(body), 0), COFFER_OK);
        char *b;
        size_t n;
        assert_int_equal(get(f, names[i], 0, 0, &b, &n), COFFER_OK);
        assert_int_equal(n, strlen(body));
        assert_memory_equal(b, body, n);
        free(b);
        coffer_object_stat st = {.struct_size = sizeof st};
        assert_int_equal(f->ops->stat(f->inst, names[i], &st), COFFER_OK);
    }
    keys k = {0};
    assert_int_equal(f->ops->list(f->inst, "", collect, &k), COFFER_OK);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        assert_true(has_key(&k, names[i]));
    keys_free(&k);
    assert_int_equal(f->ops->list(f->inst, "with space/and+", collect, &k), COFFER_OK);
    assert_int_equal(k.n, 1);
    keys_free(&k);
    if (!interop)
        return;
    /* the same keys into the interop bucket (no prefix) for the CLI; and
     * read what the CLI put there */
    cf_config_set(f->cfg, "bucket", interop, 0, 0);
    cf_config_set(f->cfg, "prefix", "", 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char key[512], body[256];
        snprintf(key, sizeof key, "driver/%s", names[i]);
        snprintf(body, sizeof body, "from-driver:%s", names[i]);
        assert_int_equal(put(f, key, body, strlen(body), 0), COFFER_OK);
    }
    assert_int_equal(f->ops->list(f->inst, "cli/", collect, &k), COFFER_OK);
    assert_true(k.n >= 1);
    for (int i = 0; i < k.n; i++) {
        char *b;
        size_t n;
        assert_int_equal(get(f, k.k[i], 0, 0, &b, &n), COFFER_OK);
        char want[600];
        snprintf(want, sizeof want, "from-cli:%s", k.k[i] + 4);
        print_message("  read CLI object '%s'\n", k.k[i]);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(b, want, n);
        free(b);
    }
    keys_free(&k);
}

typedef struct vers {
    int n;
    char key[16][128];
    char id[16][128];
    int latest[16], marker[16];
    uint64_t size[16];
} vers;

static int collect_versions(void *ud, const coffer_object_version *v)
{
    vers *x = ud;
    if (x->n < 16) {
        snprintf(x->key[x->n], sizeof x->key[0], "%s", v->key);
        snprintf(x->id[x->n], sizeof x->id[0], "%s", v->version_id);
        x->latest[x->n] = v->is_latest;
        x->marker[x->n] = v->is_delete_marker;
        x->size[x->n] = v->size;
        x->n++;
    }
    return 0;
}

static void test_versioning(void **state)
{
    fx *f = *state;
    NEED_SERVER(f);
    coffer_versioning v;
    assert_int_equal(f->ops->versioning_status(f->inst, &v), COFFER_OK);
    assert_int_equal(v, COFFER_VERSIONING_NEVER);
    /* require_versioning refuses this bucket, saying why; warn lets it pass */
    cf_config_set(f->cfg, "require_versioning", "true", 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    assert_int_equal(f->ops->prepare(f->inst, 0), COFFER_ERR_FAILED);
    assert_non_null(strstr(f->mh.last_error, "lost for good"));
    assert_non_null(strstr(f->mh.last_error, "not a complete plan"));
    cf_config_set(f->cfg, "require_versioning", "warn", 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    assert_int_equal(f->ops->prepare(f->inst, 0), COFFER_OK);
    assert_non_null(strstr(f->mh.log, "lost for good"));

    /* versioning switched on by another client */
    assert_int_equal(
        aws("s3api put-bucket-versioning --bucket %s --versioning-configuration Status=Enabled",
            f->bucket),
        0);
    assert_int_equal(f->ops->versioning_status(f->inst, &v), COFFER_OK);
    assert_int_equal(v, COFFER_VERSIONING_ENABLED);
    cf_config_set(f->cfg, "require_versioning", "true", 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    assert_int_equal(f->ops->prepare(f->inst, 0), COFFER_OK);

    assert_int_equal(put(f, "files/a", "version-one", 11, 0), COFFER_OK);
    assert_int_equal(put(f, "files/a", "v2", 2, 0), COFFER_OK);
    for (int i = 0; i < 9; i++) /* enough versions to page (7 a page) */
        assert_int_equal(put(f, "files/b", "bb", 2, 0), COFFER_OK);
    vers x = {0};
    assert_int_equal(f->ops->list_versions(f->inst, "files/a", collect_versions, &x), COFFER_OK);
    assert_int_equal(x.n, 2);
    int old = x.latest[0] ? 1 : 0;
    assert_true(x.latest[1 - old]);
    assert_int_equal(x.size[old], 11);
    assert_string_equal(x.key[old], "files/a");
    char old_id[128];
    snprintf(old_id, sizeof old_id, "%s", x.id[old]);
    vers y = {0};
    assert_int_equal(f->ops->list_versions(f->inst, "files/", collect_versions, &y), COFFER_OK);
    assert_int_equal(y.n, 11);

    /* read the old version */
    void *r;
    assert_int_equal(f->ops->reader_open_version(f->inst, "files/a", old_id, &r), COFFER_OK);
    char buf[64];
    size_t got, n = 0;
    while (f->ops->reader_read(r, buf + n, sizeof buf - n, &got) == COFFER_OK && got)
        n += got;
    f->ops->reader_close(r);
    assert_int_equal(n, 11);
    assert_memory_equal(buf, "version-one", 11);
    assert_int_equal(f->ops->reader_open_version(f->inst, "files/a", "no-such-version", &r),
                     COFFER_ERR_NOT_FOUND);

    /* restore it: it becomes current again, as a new version */
    assert_int_equal(f->ops->restore_version(f->inst, "files/a", old_id), COFFER_OK);
    char *b;
    assert_int_equal(get(f, "files/a", 0, 0, &b, &n), COFFER_OK);
    assert_int_equal(n, 11);
    assert_memory_equal(b, "version-one", 11);
    free(b);
    memset(&x, 0, sizeof x);
    assert_int_equal(f->ops->list_versions(f->inst, "files/a", collect_versions, &x), COFFER_OK);
    assert_int_equal(x.n, 3);

    /* delete: a marker; the data is still there by version */
    assert_int_equal(f->ops->remove(f->inst, "files/a"), COFFER_OK);
    coffer_object_stat st = {.struct_size = sizeof st};
    assert_int_equal(f->ops->stat(f->inst, "files/a", &st), COFFER_ERR_NOT_FOUND);
    memset(&x, 0, sizeof x);
    assert_int_equal(f->ops->list_versions(f->inst, "files/a", collect_versions, &x), COFFER_OK);
    assert_int_equal(x.n, 4);
    int markers = 0;
    for (int i = 0; i < x.n; i++)
        markers += x.marker[i] && x.latest[i];
    assert_int_equal(markers, 1);
    assert_int_equal(f->ops->restore_version(f->inst, "files/a", old_id), COFFER_OK);
    assert_int_equal(f->ops->stat(f->inst, "files/a", &st), COFFER_OK);
    assert_int_equal(st.size, 11);
    assert_int_equal(f->ops->restore_version(f->inst, "files/a", "no-such-version"),
                     COFFER_ERR_NOT_FOUND);

    /* suspended is reported as such */
    assert_int_equal(
        aws("s3api put-bucket-versioning --bucket %s --versioning-configuration Status=Suspended",
            f->bucket),
        0);
    assert_int_equal(f->ops->versioning_status(f->inst, &v), COFFER_OK);
    assert_int_equal(v, COFFER_VERSIONING_SUSPENDED);
    assert_int_equal(f->ops->prepare(f->inst, 0), COFFER_ERR_FAILED);
    assert_non_null(strstr(f->mh.last_error, "suspended"));
}

static void test_object_lock(void **state)
{
    fx *f = *state;
    NEED_SERVER(f);
    int en = -1, days = -1;
    char mode[32];
    assert_int_equal(f->ops->object_lock_status(f->inst, &en, mode, sizeof mode, &days), COFFER_OK);
    assert_int_equal(en, 0);
    cf_config_set(f->cfg, "require_object_lock", "true", 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    assert_int_equal(f->ops->prepare(f->inst, 0), COFFER_ERR_FAILED);
    assert_non_null(strstr(f->mh.last_error, "object lock"));

    /* a bucket made with object lock by the CLI, default retention set */
    char lb[80];
    snprintf(lb, sizeof lb, "%s-lock", f->bucket);
    assert_int_equal(aws("s3api create-bucket --bucket %s --object-lock-enabled-for-bucket", lb),
                     0);
    assert_int_equal(
        aws("s3api put-object-lock-configuration --bucket %s --object-lock-configuration "
            "'{\"ObjectLockEnabled\":\"Enabled\",\"Rule\":{\"DefaultRetention\":{\"Mode\":"
            "\"GOVERNANCE\",\"Days\":1}}}'",
            lb),
        0);
    cf_config_set(f->cfg, "bucket", lb, 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    assert_int_equal(f->ops->prepare(f->inst, 0), COFFER_OK);
    assert_int_equal(f->ops->object_lock_status(f->inst, &en, mode, sizeof mode, &days), COFFER_OK);
    assert_int_equal(en, 1);
    assert_string_equal(mode, "GOVERNANCE");
    assert_int_equal(days, 1);
    /* uploads into a locked bucket carry Content-MD5: small and multipart */
    assert_int_equal(put(f, "locked/small", "abc", 3, 0), COFFER_OK);
    size_t big = 11u << 20;
    char *buf = malloc(big);
    for (size_t i = 0; i < big; i++)
        buf[i] = (char)pat(3, i);
    assert_int_equal(put(f, "locked/big", buf, big, 0), COFFER_OK);
    free(buf);
    coffer_object_stat st = {.struct_size = sizeof st};
    assert_int_equal(f->ops->stat(f->inst, "locked/big", &st), COFFER_OK);
    assert_int_equal(st.size, big);
    coffer_versioning v;
    assert_int_equal(f->ops->versioning_status(f->inst, &v), COFFER_OK);
    assert_int_equal(v, COFFER_VERSIONING_ENABLED);
}

/* ---- object lock retention -------------------------------------------------------- */

static coffer_status put_locked(fx *f, const char *key, const void *data, size_t len,
                                coffer_lock_mode mode, int64_t until)
{
    coffer_write_opts o = {
        .struct_size = sizeof o, .size_hint = len, .lock_mode = mode, .retain_until = until};
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

typedef struct lvers {
    char key[8][128];
    char id[8][256];
    int latest[8], marker[8];
    int n;
} lvers;

static int collect_version(void *ud, const coffer_object_version *v)
{
    lvers *x = ud;
    if (x->n < 8) {
        snprintf(x->key[x->n], sizeof x->key[0], "%s", v->key);
        snprintf(x->id[x->n], sizeof x->id[0], "%s", v->version_id);
        x->latest[x->n] = v->is_latest;
        x->marker[x->n] = v->is_delete_marker;
        x->n++;
    }
    return 0;
}

/* Versions of exactly `key` (not a delete marker) into x. */
static void versions_of(fx *f, const char *key, lvers *x)
{
    lvers all = {0};
    assert_int_equal(f->ops->list_versions(f->inst, key, collect_version, &all), COFFER_OK);
    memset(x, 0, sizeof *x);
    for (int i = 0; i < all.n; i++)
        if (strcmp(all.key[i], key) == 0 && !all.marker[i]) {
            snprintf(x->key[x->n], sizeof x->key[0], "%s", all.key[i]);
            snprintf(x->id[x->n], sizeof x->id[0], "%s", all.id[i]);
            x->latest[x->n] = all.latest[i];
            x->n++;
        }
}

/* A bucket made by the driver with object lock (require_object_lock:
 * true), so every retention call has a bucket that accepts it. */
static void use_lock_bucket(fx *f)
{
    char lb[80];
    snprintf(lb, sizeof lb, "%s-ret", f->bucket);
    cf_config_set(f->cfg, "bucket", lb, 0, 0);
    cf_config_set(f->cfg, "require_object_lock", "true", 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    assert_int_equal(f->ops->prepare(f->inst, 1), COFFER_OK);
}

static void test_retention(void **state)
{
    fx *f = *state;
    NEED_SERVER(f);
    /* without object lock: no capability, and writes with retention are refused */
    assert_int_equal(f->ops->capabilities(f->inst) & COFFER_CAP_RETENTION, 0);
    assert_int_equal(put_locked(f, "ret/none", "x", 1, COFFER_LOCK_GOVERNANCE, time(NULL) + 60),
                     COFFER_ERR_UNSUPPORTED);
    assert_non_null(strstr(f->mh.last_error, "no object lock"));

    use_lock_bucket(f);
    assert_int_not_equal(f->ops->capabilities(f->inst) & COFFER_CAP_RETENTION, 0);

    /* the server's clock, from its Date header: loopback, same host */
    int64_t now = 0;
    assert_int_equal(f->ops->server_time(f->inst, &now), COFFER_OK);
    int64_t d = now - (int64_t)time(NULL);
    print_message("  server time %lld, host time differs by %lld s\n", (long long)now,
                  (long long)d);
    assert_true(d >= -5 && d <= 5);

    /* written under retention: HEAD reports exactly that */
    int64_t until = now + 3600;
    const char body[] = "locked bytes, version one";
    assert_int_equal(put_locked(f, "ret/a", body, sizeof body - 1, COFFER_LOCK_GOVERNANCE, until),
                     COFFER_OK);
    coffer_lock_mode mode = COFFER_LOCK_NONE;
    int64_t got = 0;
    assert_int_equal(f->ops->object_retention(f->inst, "ret/a", NULL, &mode, &got), COFFER_OK);
    assert_int_equal(mode, COFFER_LOCK_GOVERNANCE);
    assert_int_equal(got, until);

    /* an object written without retention has none */
    assert_int_equal(put(f, "ret/plain", "p", 1, 0), COFFER_OK);
    mode = COFFER_LOCK_COMPLIANCE;
    got = -1;
    assert_int_equal(f->ops->object_retention(f->inst, "ret/plain", NULL, &mode, &got), COFFER_OK);
    assert_int_equal(mode, COFFER_LOCK_NONE);
    assert_int_equal(got, 0);
    assert_int_equal(f->ops->object_retention(f->inst, "ret/missing", NULL, &mode, &got),
                     COFFER_ERR_NOT_FOUND);

    /* extending is allowed, of the current version and of a named one */
    lvers v;
    versions_of(f, "ret/a", &v);
    assert_int_equal(v.n, 1);
    char vid[256];
    snprintf(vid, sizeof vid, "%s", v.id[0]);
    assert_int_equal(
        f->ops->set_retention(f->inst, "ret/a", NULL, COFFER_LOCK_GOVERNANCE, until + 3600, 0),
        COFFER_OK);
    assert_int_equal(f->ops->object_retention(f->inst, "ret/a", NULL, &mode, &got), COFFER_OK);
    assert_int_equal(got, until + 3600);
    assert_int_equal(
        f->ops->set_retention(f->inst, "ret/a", vid, COFFER_LOCK_GOVERNANCE, until + 7200, 0),
        COFFER_OK);
    assert_int_equal(f->ops->object_retention(f->inst, "ret/a", vid, &mode, &got), COFFER_OK);
    assert_int_equal(mode, COFFER_LOCK_GOVERNANCE);
    assert_int_equal(got, until + 7200);

    /* shortening is refused, named with both dates; nothing changed */
    char want[32], have[32];
    s3_iso8601(until + 1800, want);
    s3_iso8601(until + 7200, have);
    assert_int_equal(
        f->ops->set_retention(f->inst, "ret/a", NULL, COFFER_LOCK_GOVERNANCE, until + 1800, 0),
        COFFER_ERR_LOCKED);
    print_message("  %s\n", f->mh.last_error);
    assert_non_null(strstr(f->mh.last_error, "ret/a"));
    assert_non_null(strstr(f->mh.last_error, want));
    assert_non_null(strstr(f->mh.last_error, have));
    assert_int_equal(f->ops->object_retention(f->inst, "ret/a", NULL, &mode, &got), COFFER_OK);
    assert_int_equal(got, until + 7200);

    /* the locked version cannot be removed; its bytes stay readable */
    assert_int_equal(f->ops->remove_ex(f->inst, "ret/a", vid, 0), COFFER_ERR_LOCKED);
    print_message("  %s\n", f->mh.last_error);
    assert_non_null(strstr(f->mh.last_error, "ret/a"));
    assert_non_null(strstr(f->mh.last_error, vid));
    char *b;
    size_t n;
    assert_int_equal(get(f, "ret/a", 0, 0, &b, &n), COFFER_OK);
    assert_int_equal(n, sizeof body - 1);
    assert_memory_equal(b, body, n);
    free(b);

    /* remove without a version: a delete marker; the key is gone from
     * the listing, the locked version stays among the versions */
    assert_int_equal(f->ops->remove_ex(f->inst, "ret/a", NULL, 0), COFFER_OK);
    keys k = {0};
    assert_int_equal(f->ops->list(f->inst, "ret/", collect, &k), COFFER_OK);
    assert_false(has_key(&k, "ret/a"));
    assert_true(has_key(&k, "ret/plain"));
    keys_free(&k);
    versions_of(f, "ret/a", &v);
    assert_int_equal(v.n, 1);
    assert_string_equal(v.id[0], vid);
    assert_int_equal(f->ops->object_retention(f->inst, "ret/a", vid, &mode, &got), COFFER_OK);
    assert_int_equal(got, until + 7200);
    void *r;
    assert_int_equal(f->ops->reader_open_version_range(f->inst, "ret/a", vid, 7, 5, &r), COFFER_OK);
    char five[16];
    size_t g = 0;
    assert_int_equal(f->ops->reader_read(r, five, sizeof five, &g), COFFER_OK);
    f->ops->reader_close(r);
    assert_int_equal(g, 5);
    assert_memory_equal(five, body + 7, 5);

    /* a version without retention goes at once; missing versions are named */
    versions_of(f, "ret/plain", &v);
    assert_int_equal(v.n, 1);
    assert_int_equal(f->ops->remove_ex(f->inst, "ret/plain", v.id[0], 0), COFFER_OK);
    versions_of(f, "ret/plain", &v);
    assert_int_equal(v.n, 0);
    assert_int_equal(f->ops->remove(f->inst, "ret/plain"), COFFER_ERR_NOT_FOUND);
}

static void test_retention_bypass(void **state)
{
    fx *f = *state;
    NEED_SERVER(f);
    use_lock_bucket(f);
    int64_t now = 0;
    assert_int_equal(f->ops->server_time(f->inst, &now), COFFER_OK);
    assert_int_equal(put_locked(f, "gov/a", "g", 1, COFFER_LOCK_GOVERNANCE, now + 7200), COFFER_OK);
    lvers v;
    versions_of(f, "gov/a", &v);
    assert_int_equal(v.n, 1);
    /* the bucket owner may bypass governance: shorten, then remove */
    assert_int_equal(f->ops->set_retention(f->inst, "gov/a", v.id[0], COFFER_LOCK_GOVERNANCE,
                                           now + 600, COFFER_REMOVE_BYPASS_GOVERNANCE),
                     COFFER_OK);
    coffer_lock_mode mode;
    int64_t got;
    assert_int_equal(f->ops->object_retention(f->inst, "gov/a", v.id[0], &mode, &got), COFFER_OK);
    assert_int_equal(got, now + 600);
    assert_int_equal(f->ops->remove_ex(f->inst, "gov/a", v.id[0], 0), COFFER_ERR_LOCKED);
    assert_int_equal(f->ops->remove_ex(f->inst, "gov/a", v.id[0], COFFER_REMOVE_BYPASS_GOVERNANCE),
                     COFFER_OK);
    versions_of(f, "gov/a", &v);
    assert_int_equal(v.n, 0);

    /* compliance yields to nobody: not shortened, not removed, even with the bypass */
    assert_int_equal(put_locked(f, "comp/a", "c", 1, COFFER_LOCK_COMPLIANCE, now + 3600),
                     COFFER_OK);
    versions_of(f, "comp/a", &v);
    assert_int_equal(v.n, 1);
    assert_int_equal(f->ops->set_retention(f->inst, "comp/a", NULL, COFFER_LOCK_COMPLIANCE,
                                           now + 60, COFFER_REMOVE_BYPASS_GOVERNANCE),
                     COFFER_ERR_LOCKED);
    assert_int_equal(f->ops->remove_ex(f->inst, "comp/a", v.id[0], COFFER_REMOVE_BYPASS_GOVERNANCE),
                     COFFER_ERR_LOCKED);
    assert_int_equal(f->ops->object_retention(f->inst, "comp/a", NULL, &mode, &got), COFFER_OK);
    assert_int_equal(mode, COFFER_LOCK_COMPLIANCE);
    assert_int_equal(got, now + 3600);
}

static void test_retention_versions(void **state)
{
    fx *f = *state;
    NEED_SERVER(f);
    use_lock_bucket(f);
    int64_t now = 0;
    assert_int_equal(f->ops->server_time(f->inst, &now), COFFER_OK);

    /* an older version's bytes, by range, after an overwrite */
    size_t len = 100000;
    char *one = malloc(len), *two = malloc(len);
    for (size_t i = 0; i < len; i++) {
        one[i] = (char)pat(11, i);
        two[i] = (char)pat(12, i);
    }
    assert_int_equal(put(f, "ver/x", one, len, 0), COFFER_OK);
    lvers v;
    versions_of(f, "ver/x", &v);
    assert_int_equal(v.n, 1);
    char old[256];
    snprintf(old, sizeof old, "%s", v.id[0]);
    assert_int_equal(put(f, "ver/x", two, len, 0), COFFER_OK);
    versions_of(f, "ver/x", &v);
    assert_int_equal(v.n, 2);
    void *r;
    assert_int_equal(f->ops->reader_open_version_range(f->inst, "ver/x", old, 4096, 50000, &r),
                     COFFER_OK);
    char *b = malloc(len);
    size_t n = 0, g;
    do {
        g = 0;
        assert_int_equal(f->ops->reader_read(r, b + n, 7000, &g), COFFER_OK);
        n += g;
    } while (g && n < len);
    f->ops->reader_close(r);
    assert_int_equal(n, 50000);
    assert_memory_equal(b, one + 4096, n);
    /* to the end when length is 0 */
    assert_int_equal(f->ops->reader_open_version_range(f->inst, "ver/x", old, 99990, 0, &r),
                     COFFER_OK);
    g = 0;
    assert_int_equal(f->ops->reader_read(r, b, len, &g), COFFER_OK);
    f->ops->reader_close(r);
    assert_int_equal(g, 10);
    assert_memory_equal(b, one + 99990, 10);
    assert_int_equal(
        f->ops->reader_open_version_range(f->inst, "ver/x", "no-such-version", 0, 0, &r),
        COFFER_ERR_NOT_FOUND);
    free(b);
    free(one);
    free(two);

    /* a multipart upload (5 MiB parts) carries the retention of CreateMultipartUpload */
    size_t big = 11u << 20;
    char *buf = malloc(big);
    for (size_t i = 0; i < big; i++)
        buf[i] = (char)pat(13, i);
    assert_int_equal(put_locked(f, "ver/big", buf, big, COFFER_LOCK_GOVERNANCE, now + 5400),
                     COFFER_OK);
    coffer_lock_mode mode;
    int64_t got;
    assert_int_equal(f->ops->object_retention(f->inst, "ver/big", NULL, &mode, &got), COFFER_OK);
    assert_int_equal(mode, COFFER_LOCK_GOVERNANCE);
    assert_int_equal(got, now + 5400);
    coffer_object_stat st = {.struct_size = sizeof st};
    assert_int_equal(f->ops->stat(f->inst, "ver/big", &st), COFFER_OK);
    assert_int_equal(st.size, big);
    assert_true(strchr(st.etag, '-') != NULL); /* it was a multipart upload */
    char *back;
    size_t bl;
    assert_int_equal(get(f, "ver/big", 0, 0, &back, &bl), COFFER_OK);
    assert_int_equal(bl, big);
    assert_memory_equal(back, buf, big);
    free(back);
    free(buf);
    versions_of(f, "ver/big", &v);
    assert_int_equal(v.n, 1);
    assert_int_equal(f->ops->remove_ex(f->inst, "ver/big", v.id[0], 0), COFFER_ERR_LOCKED);
    /* plain remove of a locked object: a delete marker, allowed */
    assert_int_equal(f->ops->remove(f->inst, "ver/big"), COFFER_OK);
    assert_int_equal(f->ops->stat(f->inst, "ver/big", &st), COFFER_ERR_NOT_FOUND);
    keys k = {0};
    assert_int_equal(f->ops->list(f->inst, "ver/", collect, &k), COFFER_OK);
    assert_false(has_key(&k, "ver/big"));
    assert_true(has_key(&k, "ver/x"));
    keys_free(&k);
    versions_of(f, "ver/big", &v);
    assert_int_equal(v.n, 1);
    assert_int_equal(f->ops->object_retention(f->inst, "ver/big", v.id[0], &mode, &got), COFFER_OK);
    assert_int_equal(got, now + 5400);
}

/* A policy that denies deleting versions: COFFER_ERR_AUTH, naming the
 * operation and the key; never taken for a lock. */
static void test_retention_denied(void **state)
{
    fx *f = *state;
    NEED_SERVER(f);
    use_lock_bucket(f);
    assert_int_equal(put(f, "den/a", "d", 1, 0), COFFER_OK);
    lvers v;
    versions_of(f, "den/a", &v);
    assert_int_equal(v.n, 1);
    s3_instance *in = f->inst;
    assert_int_equal(
        aws("s3api put-bucket-policy --bucket %s --policy "
            "'{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Deny\",\"Principal\":\"*\","
            "\"Action\":[\"s3:DeleteObjectVersion\",\"s3:DeleteObject\"],\"Resource\":"
            "\"arn:aws:s3:::%s/*\"}]}'",
            in->bucket, in->bucket),
        0);
    coffer_status st = f->ops->remove_ex(f->inst, "den/a", v.id[0], 0);
    print_message("  %s\n", f->mh.last_error);
    assert_int_equal(st, COFFER_ERR_AUTH);
    assert_non_null(strstr(f->mh.last_error, "DELETE"));
    assert_non_null(strstr(f->mh.last_error, "repo/den/a"));
    assert_non_null(strstr(f->mh.last_error, "may not delete"));
    assert_int_equal(f->ops->remove(f->inst, "den/a"), COFFER_ERR_AUTH);
    assert_non_null(strstr(f->mh.last_error, "may not delete"));
    assert_int_equal(aws("s3api delete-bucket-policy --bucket %s", in->bucket), 0);
    assert_int_equal(f->ops->remove_ex(f->inst, "den/a", v.id[0], 0), COFFER_OK);
}

static void test_bad_credentials(void **state)
{
    fx *f = *state;
    NEED_SERVER(f);
    setenv("S3_WRONG_SECRET", "Wr0ngSecretValue/ThatMustNotLeak+", 1);
    cf_config_set(f->cfg, "secret_key_env", "S3_WRONG_SECRET", 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    assert_int_equal(f->ops->prepare(f->inst, 0), COFFER_ERR_AUTH);
    print_message("  %s\n", f->mh.last_error);
    assert_null(strstr(f->mh.last_error, "Wr0ngSecretValue"));
    assert_null(strstr(f->mh.log, "Wr0ngSecretValue"));
    assert_non_null(strstr(f->mh.last_error, f->bucket));
    coffer_object_stat st = {.struct_size = sizeof st};
    assert_int_equal(f->ops->stat(f->inst, "config", &st), COFFER_ERR_AUTH);
    assert_int_equal(put(f, "config", "x", 1, 0), COFFER_ERR_AUTH);
    assert_non_null(strstr(f->mh.last_error, "SignatureDoesNotMatch"));
    assert_null(strstr(f->mh.last_error, "Wr0ngSecretValue"));
    /* an unknown access key */
    setenv("S3_WRONG_AK", "NOSUCHACCESSKEY", 1);
    cf_config_set(f->cfg, "access_key_env", "S3_WRONG_AK", 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    assert_int_equal(f->ops->prepare(f->inst, 0), COFFER_ERR_AUTH);
    assert_non_null(strstr(f->mh.last_error, "InvalidAccessKeyId"));
}

static void test_missing_bucket(void **state)
{
    fx *f = *state;
    NEED_SERVER(f);
    cf_config_set(f->cfg, "bucket", "no-such-bucket-here", 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    assert_int_equal(f->ops->prepare(f->inst, 0), COFFER_ERR_NOT_FOUND);
    assert_non_null(strstr(f->mh.last_error, "no-such-bucket-here"));
    assert_non_null(strstr(f->mh.last_error, "does not exist"));
    void *r;
    assert_int_equal(f->ops->reader_open(f->inst, "config", 0, 0, &r), COFFER_ERR_NOT_FOUND);
    assert_non_null(strstr(f->mh.last_error, "NoSuchBucket"));
    keys k = {0};
    assert_int_equal(f->ops->list(f->inst, "", collect, &k), COFFER_ERR_NOT_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_small_objects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_hint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_special_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_versioning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_object_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_bypass, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_credentials, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_bucket, setup, teardown),
    };
    return cmocka_run_group_tests_name("storage_s3 (RGW)", tests, NULL, NULL);
}
