/* The storage conformance suite (coffer/testing.h): the promises the core
 * relies on, checked against a real driver instance. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coffer/testing.h"
#include "kit.h"

typedef struct suite {
    const coffer_storage_ops *ops;
    coffer_storage_ops copy; /* zero-extended to this kit's size */
    const coffer_plugin *p;
    const coffer_config *cfg;
    coffer_test_host *host;
    void *inst;
    uint32_t caps;
    FILE *out;
    int failures;
} suite;

static void report(suite *s, int ok, const char *name, const char *fmt, ...)
{
    if (ok) {
        fprintf(s->out, "ok - %s: %s\n", s->p->name, name);
        coffer_test_clear_error(s->host);
        return;
    }
    s->failures++;
    fprintf(s->out, "FAIL - %s: %s: ", s->p->name, name);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(s->out, fmt, ap);
    va_end(ap);
    const char *e = coffer_test_last_error(s->host);
    fprintf(s->out, "%s%s%s\n", *e ? " (last driver error: " : "", e, *e ? ")" : "");
    fflush(s->out);
    coffer_test_clear_error(s->host);
}

static const char *status_name(coffer_status st)
{
    static const char *n[] = {
        "OK",         "ERR_RETRY",       "ERR_FAILED",    "ERR_FATAL",    "ERR_NOT_FOUND",
        "ERR_EXISTS", "ERR_UNSUPPORTED", "ERR_CANCELLED", "ERR_NO_SPACE", "ERR_INVALID",
        "ERR_AUTH",   "ERR_IO",          "ERR_CORRUPT",   "ERR_LOCKED"};
    return (unsigned)st < sizeof n / sizeof n[0] ? n[st] : "unknown status";
}

/* An instance for a second thread: the same one when the driver allows
 * handles of one instance on several threads, a new one otherwise. */
static coffer_status thread_instance(suite *s, void **inst)
{
    if (s->p->threading == COFFER_THREADS_HANDLES) {
        *inst = s->inst;
        return COFFER_OK;
    }
    return s->ops->instance_new(coffer_test_host_table(s->host), coffer_test_hctx(s->host), s->cfg,
                                inst);
}

static void thread_instance_free(suite *s, void *inst)
{
    if (inst && inst != s->inst)
        s->ops->instance_free(inst);
}

static coffer_status new_instance(suite *s, void **inst)
{
    return s->ops->instance_new(coffer_test_host_table(s->host), coffer_test_hctx(s->host), s->cfg,
                                inst);
}

/* Write len bytes of buf under key, in chunks of at most chunk bytes. */
static coffer_status put(suite *s, void *inst, const char *key, const void *buf, size_t len,
                         uint32_t flags, size_t chunk)
{
    coffer_write_opts o = {.struct_size = sizeof o, .flags = flags, .size_hint = len};
    void *w = NULL;
    coffer_status st = s->ops->writer_open(inst, key, &o, &w);
    if (st != COFFER_OK)
        return st;
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        if ((st = s->ops->writer_write(w, (const char *)buf + off, n)) != COFFER_OK) {
            s->ops->writer_abort(w);
            return st;
        }
    }
    return s->ops->writer_commit(w);
}

/* Read [off, off+len) (len 0: to the end) into a fresh buffer. */
static coffer_status get(suite *s, void *inst, const char *key, uint64_t off, uint64_t len,
                         unsigned char **out, size_t *got)
{
    *out = NULL;
    *got = 0;
    void *r = NULL;
    coffer_status st = s->ops->reader_open(inst, key, off, len, &r);
    if (st != COFFER_OK)
        return st;
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = kit_alloc(cap);
    for (;;) {
        if (n == cap) {
            unsigned char *nb = realloc(buf, cap * 2);
            if (!nb)
                abort();
            buf = nb;
            cap *= 2;
        }
        size_t k = 0;
        if ((st = s->ops->reader_read(r, buf + n, cap - n, &k)) != COFFER_OK)
            break;
        if (k == 0)
            break;
        n += k;
    }
    s->ops->reader_close(r);
    if (st != COFFER_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    *got = n;
    return COFFER_OK;
}

static unsigned char *filled(size_t len, unsigned char c)
{
    unsigned char *b = kit_alloc(len);
    memset(b, c, len);
    return b;
}

static int all_bytes(const unsigned char *b, size_t len, unsigned char c)
{
    for (size_t i = 0; i < len; i++)
        if (b[i] != c)
            return 0;
    return 1;
}

/* ---- atomic publish -------------------------------------------------- */

static void check_publish(suite *s)
{
    const char *key = "conformance/atomic";
    coffer_write_opts o = {.struct_size = sizeof o};
    void *w = NULL;
    coffer_status st = s->ops->writer_open(s->inst, key, &o, &w);
    if (st != COFFER_OK) {
        report(s, 0, "publish at commit", "writer_open returned %s", status_name(st));
        return;
    }
    unsigned char *data = filled(100000, 'p');
    s->ops->writer_write(w, data, 50000);
    coffer_object_stat sb = {.struct_size = sizeof sb};
    coffer_status st1 = s->ops->stat(s->inst, key, &sb);
    void *r = NULL;
    coffer_status st2 = s->ops->reader_open(s->inst, key, 0, 0, &r);
    if (st2 == COFFER_OK)
        s->ops->reader_close(r);
    s->ops->writer_write(w, data + 50000, 50000);
    coffer_status st3 = s->ops->writer_commit(w);
    unsigned char *back;
    size_t n;
    coffer_status st4 = get(s, s->inst, key, 0, 0, &back, &n);
    report(s, st1 == COFFER_ERR_NOT_FOUND && st2 == COFFER_ERR_NOT_FOUND,
           "an object is invisible before commit", "stat %s, reader_open %s on a key being written",
           status_name(st1), status_name(st2));
    report(s, st3 == COFFER_OK && st4 == COFFER_OK && n == 100000 && all_bytes(back, n, 'p'),
           "commit publishes the whole object", "commit %s, read %s, %zu bytes back",
           status_name(st3), status_name(st4), n);
    free(back);

    w = NULL;
    st = s->ops->writer_open(s->inst, "conformance/aborted", &o, &w);
    if (st == COFFER_OK) {
        s->ops->writer_write(w, data, 1000);
        s->ops->writer_abort(w);
    }
    st1 = s->ops->stat(s->inst, "conformance/aborted", &sb);
    report(s, st == COFFER_OK && st1 == COFFER_ERR_NOT_FOUND, "abort leaves no object",
           "writer_open %s, stat after abort %s", status_name(st), status_name(st1));
    free(data);
}

typedef struct replace_reader {
    suite *s;
    void *inst;
    const char *key;
    volatile int stop;
    size_t len_a, len_b;
    int reads, bad;
    char detail[256];
} replace_reader;

static void *replace_reader_main(void *arg)
{
    replace_reader *rr = arg;
    while (!__atomic_load_n(&rr->stop, __ATOMIC_SEQ_CST)) {
        unsigned char *b;
        size_t n;
        coffer_status st = get(rr->s, rr->inst, rr->key, 0, 0, &b, &n);
        if (st != COFFER_OK) {
            if (!rr->bad++)
                snprintf(rr->detail, sizeof rr->detail, "read returned %s", status_name(st));
            continue;
        }
        rr->reads++;
        int ok =
            (n == rr->len_a && all_bytes(b, n, 'a')) || (n == rr->len_b && all_bytes(b, n, 'b'));
        if (!ok && !rr->bad++)
            snprintf(rr->detail, sizeof rr->detail,
                     "read %zu bytes starting '%c', neither the old (%zu x 'a') nor the new "
                     "(%zu x 'b') object",
                     n, n ? b[0] : ' ', rr->len_a, rr->len_b);
        free(b);
    }
    return NULL;
}

static void check_replace_concurrent(suite *s)
{
    const char *name = "a concurrent reader sees the old or the new object, never a mix";
    if (s->p->threading == COFFER_THREADS_NONE) {
        fprintf(s->out, "skip - %s: %s (driver is not thread safe)\n", s->p->name, name);
        return;
    }
    replace_reader rr = {.s = s, .key = "conformance/replaced", .len_a = 200000, .len_b = 300000};
    unsigned char *a = filled(rr.len_a, 'a'), *b = filled(rr.len_b, 'b');
    coffer_status st = put(s, s->inst, rr.key, a, rr.len_a, 0, 1 << 16);
    if (st == COFFER_OK)
        st = thread_instance(s, &rr.inst);
    if (st != COFFER_OK) {
        report(s, 0, name, "setup failed: %s", status_name(st));
        free(a);
        free(b);
        return;
    }
    pthread_t th;
    pthread_create(&th, NULL, replace_reader_main, &rr);
    for (int i = 0; i < 30 && st == COFFER_OK; i++)
        st = i % 2 ? put(s, s->inst, rr.key, a, rr.len_a, 0, 16384)
                   : put(s, s->inst, rr.key, b, rr.len_b, 0, 16384);
    __atomic_store_n(&rr.stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(th, NULL);
    thread_instance_free(s, rr.inst);
    if (st != COFFER_OK)
        report(s, 0, name, "replacing the object failed: %s", status_name(st));
    else
        report(s, rr.bad == 0, name, "%d of %d reads wrong; first: %s", rr.bad, rr.reads + rr.bad,
               rr.detail);
    free(a);
    free(b);
}

/* ---- conditional create ---------------------------------------------- */

typedef struct racer {
    suite *s;
    void *inst;
    const char *key;
    unsigned char tag;
    pthread_barrier_t *go;
    coffer_status st;
} racer;

static void *racer_main(void *arg)
{
    racer *r = arg;
    unsigned char buf[4096];
    memset(buf, r->tag, sizeof buf);
    pthread_barrier_wait(r->go);
    r->st = put(r->s, r->inst, r->key, buf, sizeof buf, COFFER_WRITE_IF_ABSENT, 1024);
    return NULL;
}

static void check_if_absent(suite *s)
{
    const char *name = "IF_ABSENT: of two threads creating one key, exactly one wins";
    if (!(s->caps & COFFER_CAP_CONDITIONAL_CREATE) || s->p->threading == COFFER_THREADS_NONE) {
        fprintf(s->out, "skip - %s: %s (%s)\n", s->p->name, name,
                s->p->threading == COFFER_THREADS_NONE ? "driver is not thread safe"
                                                       : "no COFFER_CAP_CONDITIONAL_CREATE");
        return;
    }
    unsigned char one = 1;
    coffer_status st = put(s, s->inst, "conformance/exists", &one, 1, 0, 1);
    coffer_status st2 =
        st == COFFER_OK ? put(s, s->inst, "conformance/exists", &one, 1, COFFER_WRITE_IF_ABSENT, 1)
                        : st;
    report(s, st2 == COFFER_ERR_EXISTS, "IF_ABSENT on an existing key returns ERR_EXISTS", "got %s",
           status_name(st2));

    racer r[2] = {{.s = s, .tag = 'x'}, {.s = s, .tag = 'y'}};
    for (int i = 0; i < 2; i++)
        if ((st = thread_instance(s, &r[i].inst)) != COFFER_OK) {
            report(s, 0, name, "instance_new failed: %s", status_name(st));
            if (i)
                thread_instance_free(s, r[0].inst);
            return;
        }
    int bad = 0;
    char detail[256] = "";
    for (int round = 0; round < 25; round++) {
        char key[64];
        snprintf(key, sizeof key, "conformance/race-%02d", round);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        pthread_t th[2];
        for (int i = 0; i < 2; i++) {
            r[i].key = key;
            r[i].go = &go;
            pthread_create(&th[i], NULL, racer_main, &r[i]);
        }
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&go);
        int wins = (r[0].st == COFFER_OK) + (r[1].st == COFFER_OK);
        int lost = (r[0].st == COFFER_ERR_EXISTS) + (r[1].st == COFFER_ERR_EXISTS);
        unsigned char *b = NULL;
        size_t n = 0;
        int winner = r[0].st == COFFER_OK ? 0 : 1;
        coffer_status rs = get(s, s->inst, key, 0, 0, &b, &n);
        int content = rs == COFFER_OK && n == 4096 && all_bytes(b, n, r[winner].tag);
        free(b);
        if ((wins != 1 || lost != 1 || !content) && !bad++)
            snprintf(detail, sizeof detail,
                     "round %d: the threads got %s and %s; the object %s the winner's bytes", round,
                     status_name(r[0].st), status_name(r[1].st),
                     content ? "holds" : "does not hold");
    }
    for (int i = 0; i < 2; i++)
        thread_instance_free(s, r[i].inst);
    report(s, bad == 0, name, "%d of 25 rounds wrong; first: %s", bad, detail);
}

/* ---- ranged reads ---------------------------------------------------- */

static void check_ranges(suite *s)
{
    const char *key = "conformance/range";
    unsigned char data[1000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i % 251);
    coffer_status st = put(s, s->inst, key, data, sizeof data, 0, 333);
    if (st != COFFER_OK) {
        report(s, 0, "ranged reads", "writing the object failed: %s", status_name(st));
        return;
    }
    static const struct {
        uint64_t off, len;
        size_t want; /* bytes expected */
        const char *what;
    } cases[] = {
        {0, 0, 1000, "offset 0, length 0 reads the whole object"},
        {999, 1, 1, "the last byte"},
        {999, 0, 1, "from the last byte to the end"},
        {990, 100, 10, "a range running past the end stops at the end"},
        {1000, 0, 0, "offset at the end reads nothing"},
        {500, 250, 250, "a range in the middle"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char *b;
        size_t n;
        st = get(s, s->inst, key, cases[i].off, cases[i].len, &b, &n);
        int ok = st == COFFER_OK && n == cases[i].want &&
                 (n == 0 || memcmp(b, data + cases[i].off, n) == 0);
        report(s, ok, cases[i].what, "offset %llu length %llu: %s, %zu bytes (want %zu)%s",
               (unsigned long long)cases[i].off, (unsigned long long)cases[i].len, status_name(st),
               n, cases[i].want, st == COFFER_OK && n == cases[i].want ? ", wrong bytes" : "");
        free(b);
    }
    unsigned char *b;
    size_t n;
    st = get(s, s->inst, key, 5000, 10, &b, &n);
    report(s, st != COFFER_OK || n == 0, "an offset past the end yields no bytes",
           "offset 5000 of a 1000-byte object: %zu bytes", n);
    free(b);

    st = put(s, s->inst, "conformance/empty", "", 0, 0, 1);
    coffer_object_stat sb = {.struct_size = sizeof sb};
    coffer_status st1 = st == COFFER_OK ? s->ops->stat(s->inst, "conformance/empty", &sb) : st;
    coffer_status st2 = st == COFFER_OK ? get(s, s->inst, "conformance/empty", 0, 0, &b, &n) : st;
    report(s, st1 == COFFER_OK && sb.size == 0 && st2 == COFFER_OK && n == 0,
           "an empty object is stored and read back empty",
           "write %s, stat %s (size %llu), read %s", status_name(st), status_name(st1),
           (unsigned long long)sb.size, status_name(st2));
    if (st2 == COFFER_OK)
        free(b);
}

/* ---- list ------------------------------------------------------------ */

typedef struct lister {
    suite *s;
    int seen[20];
    int foreign, rm_failed;
    coffer_status rm_st;
} lister;

static int list_remove_cb(void *ud, const char *key, const coffer_object_stat *st)
{
    (void)st;
    lister *l = ud;
    int k;
    if (sscanf(key, "conformance/list/k%02d", &k) == 1 && k >= 0 && k < 20)
        l->seen[k]++;
    else
        l->foreign++;
    coffer_status rs = l->s->ops->remove(l->s->inst, key);
    if (rs != COFFER_OK && !l->rm_failed++)
        l->rm_st = rs;
    return 0;
}

static int count_cb(void *ud, const char *key, const coffer_object_stat *st)
{
    (void)key;
    (void)st;
    (*(int *)ud)++;
    return 0;
}

static void check_list(suite *s)
{
    coffer_status st = COFFER_OK;
    for (int i = 0; i < 20 && st == COFFER_OK; i++) {
        char key[64];
        snprintf(key, sizeof key, "conformance/list/k%02d", i);
        st = put(s, s->inst, key, key, strlen(key), 0, 64);
    }
    if (st == COFFER_OK)
        st = put(s, s->inst, "conformance/listx", "x", 1, 0, 1);
    if (st != COFFER_OK) {
        report(s, 0, "list", "writing the objects failed: %s", status_name(st));
        return;
    }
    lister l = {.s = s};
    st = s->ops->list(s->inst, "conformance/list/", list_remove_cb, &l);
    int once = 1;
    for (int i = 0; i < 20; i++)
        once &= l.seen[i] == 1;
    report(s, st == COFFER_OK && once && !l.foreign && !l.rm_failed,
           "list reports each key once while the callback removes it",
           "list %s; %d key(s) outside the prefix; remove in the callback %s", status_name(st),
           l.foreign, l.rm_failed ? status_name(l.rm_st) : "ok");
    int left = 0, other = 0;
    s->ops->list(s->inst, "conformance/list/", count_cb, &left);
    coffer_object_stat sb = {.struct_size = sizeof sb};
    coffer_status sx = s->ops->stat(s->inst, "conformance/listx", &sb);
    s->ops->list(s->inst, "conformance/listx", count_cb, &other);
    report(s, left == 0 && sx == COFFER_OK && other == 1,
           "removed keys are gone, keys outside the prefix stay",
           "%d key(s) left under the prefix, conformance/listx: stat %s, listed %d time(s)", left,
           status_name(sx), other);
}

/* ---- snapshot reader ------------------------------------------------- */

static void check_snapshot(suite *s)
{
    const char *key = "conformance/snapshot",
               *name = "a reader keeps its snapshot while the object is replaced";
    size_t len = 150000;
    unsigned char *old = filled(len, 'o'), *neu = filled(len, 'n');
    coffer_status st = put(s, s->inst, key, old, len, 0, 1 << 16);
    void *r = NULL;
    if (st == COFFER_OK)
        st = s->ops->reader_open(s->inst, key, 0, 0, &r);
    if (st != COFFER_OK) {
        report(s, 0, name, "setup failed: %s", status_name(st));
        free(old);
        free(neu);
        return;
    }
    unsigned char *buf = kit_alloc(len + 1);
    size_t got = 0, k = 0;
    st = s->ops->reader_read(r, buf, 10, &k);
    got += k;
    coffer_status pst = put(s, s->inst, key, neu, len, 0, 1 << 16);
    while (st == COFFER_OK) {
        st = s->ops->reader_read(r, buf + got, len + 1 - got, &k);
        if (st != COFFER_OK || k == 0)
            break;
        got += k;
    }
    s->ops->reader_close(r);
    report(s, pst == COFFER_OK && st == COFFER_OK && got == len && all_bytes(buf, got, 'o'), name,
           "replace %s, read %s, %zu of %zu bytes, %s", status_name(pst), status_name(st), got, len,
           all_bytes(buf, got, 'o') ? "old content" : "content changed under the reader");
    free(buf);
    free(old);
    free(neu);
}

/* ---- missing objects ------------------------------------------------- */

static void check_missing(suite *s)
{
    coffer_status st = s->ops->remove(s->inst, "conformance/never-written");
    report(s, st == COFFER_ERR_NOT_FOUND, "removing a missing object returns ERR_NOT_FOUND",
           "got %s", status_name(st));
    coffer_object_stat sb = {.struct_size = sizeof sb};
    st = s->ops->stat(s->inst, "conformance/never-written", &sb);
    report(s, st == COFFER_ERR_NOT_FOUND, "stat of a missing object returns ERR_NOT_FOUND",
           "got %s", status_name(st));
    void *r = NULL;
    st = s->ops->reader_open(s->inst, "conformance/never-written", 0, 0, &r);
    if (st == COFFER_OK)
        s->ops->reader_close(r);
    report(s, st == COFFER_ERR_NOT_FOUND, "reading a missing object returns ERR_NOT_FOUND",
           "got %s", status_name(st));
    if (s->p->abi_minor < 3 || !s->ops->remove_ex)
        return;
    /* ABI 1.3: a removal that need not find out whether the key exists */
    st = s->ops->remove_ex(s->inst, "conformance/never-written", NULL, COFFER_REMOVE_ABSENT_OK);
    report(s, st == COFFER_OK, "remove_ex(REMOVE_ABSENT_OK) of a missing object returns OK",
           "got %s", status_name(st));
    coffer_status pst = put(s, s->inst, "conformance/absent-ok", "x", 1, 0, 1);
    coffer_status rst =
        pst ? pst
            : s->ops->remove_ex(s->inst, "conformance/absent-ok", NULL, COFFER_REMOVE_ABSENT_OK);
    st = s->ops->stat(s->inst, "conformance/absent-ok", &sb);
    report(s, pst == COFFER_OK && rst == COFFER_OK && st == COFFER_ERR_NOT_FOUND,
           "remove_ex(REMOVE_ABSENT_OK) removes an object that exists",
           "put %s, remove_ex %s, stat afterwards %s", status_name(pst), status_name(rst),
           status_name(st));
}

/* ---- prepare alongside reads (1.3) ----------------------------------- */

typedef struct prep_run {
    suite *s;
    coffer_status st;
} prep_run;

static void *prep_main(void *arg)
{
    prep_run *p = arg;
    p->st = p->s->ops->prepare(p->s->inst, 0);
    return NULL;
}

static void check_concurrent_prepare(suite *s)
{
    if (!(s->caps & COFFER_CAP_CONCURRENT_PREPARE) || !s->ops->prepare)
        return;
    coffer_status pst = put(s, s->inst, "conformance/prep", "p", 1, 0, 1);
    prep_run p = {s, COFFER_ERR_FAILED};
    pthread_t th;
    int started = pthread_create(&th, NULL, prep_main, &p) == 0;
    int listed = 0, reads_ok = 1;
    for (int i = 0; i < 8 && reads_ok; i++) {
        coffer_object_stat sb = {.struct_size = sizeof sb};
        reads_ok = s->ops->list(s->inst, "conformance/", count_cb, &listed) == COFFER_OK &&
                   s->ops->stat(s->inst, "conformance/prep", &sb) == COFFER_OK && sb.size == 1;
    }
    if (started)
        pthread_join(th, NULL);
    report(s, pst == COFFER_OK && started && p.st == COFFER_OK && reads_ok && listed > 0,
           "CONCURRENT_PREPARE: prepare(0) runs while other threads list and stat",
           "put %s, prepare %s, reads %s", status_name(pst), status_name(p.st),
           reads_ok ? "ok" : "failed");
}

static int remove_cb(void *ud, const char *key, const coffer_object_stat *st)
{
    (void)st;
    suite *s = ud;
    s->ops->remove(s->inst, key);
    return 0;
}

int coffer_test_storage_conformance(const coffer_plugin *p, const coffer_config *cfg,
                                    const char *root, FILE *out)
{
    suite s = {.p = p, .cfg = cfg, .out = out ? out : stderr};
    if (!p || p->kind != COFFER_KIND_STORAGE || !p->storage) {
        fprintf(s.out, "FAIL - not a storage driver\n");
        return 1;
    }
    /* Honour the driver's table size, as the core does. */
    uint32_t n = p->storage->struct_size;
    memcpy(&s.copy, p->storage, n < sizeof s.copy ? n : sizeof s.copy);
    s.ops = &s.copy;
    s.host = coffer_test_host_new(root);
    coffer_status st = new_instance(&s, &s.inst);
    if (st != COFFER_OK) {
        report(&s, 0, "instance_new", "returned %s", status_name(st));
    } else {
        s.caps = s.ops->capabilities ? s.ops->capabilities(s.inst) : 0;
        st = s.ops->prepare ? s.ops->prepare(s.inst, 1) : COFFER_OK;
        report(&s, st == COFFER_OK, "prepare(create)", "returned %s", status_name(st));
        if (st == COFFER_OK) {
            check_publish(&s);
            check_replace_concurrent(&s);
            check_if_absent(&s);
            check_ranges(&s);
            check_list(&s);
            check_snapshot(&s);
            check_missing(&s);
            check_concurrent_prepare(&s);
            s.ops->list(s.inst, "conformance/", remove_cb, &s);
        }
        s.ops->instance_free(s.inst);
    }
    fprintf(s.out, "%s: %d conformance failure(s)\n", p->name, s.failures);
    fflush(s.out);
    coffer_test_host_free(s.host);
    return s.failures;
}
