/*
 * In-memory storage driver with fault injection (see mem_storage.h).
 * Objects live in a sorted array under one mutex: tests hold hundreds of
 * objects, not millions. Writers buffer privately and publish at commit,
 * so readers never see a half-written object. Readers copy their range at
 * open, so a concurrent remove or flip cannot pull memory from under them.
 */
#include "mem_storage.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/types.h>
#include <unistd.h>

typedef struct mem_obj {
    char *key;
    uint8_t *data;
    size_t len;
    uint32_t flags;
    int64_t mtime;
    int lock_mode;       /* coffer_lock_mode */
    int64_t retain_until;
} mem_obj;

struct mem_storage {
    uint32_t magic;
    const coffer_host *host;
    coffer_hctx *h;
    pthread_mutex_t lock;
    mem_obj *objs; /* sorted by key */
    size_t n, cap;
    uint64_t budget; /* bytes writers may still accept */
    size_t open_writers;
    int64_t clock;
    int retention;      /* object lock on: COFFER_CAP_RETENTION */
    int append_only;    /* COFFER_CAP_APPEND_ONLY */
    int64_t now;        /* the storage's clock for retention (0: time(NULL)) */
    uint64_t retention_sets; /* set_retention calls that changed something */
    _Atomic unsigned latency_us; /* each request waits this long first */
};

/* A distant store: every request waits its round trip before it starts. */
static void wait_round_trip(mem_storage *ms)
{
    unsigned us = atomic_load(&ms->latency_us);
    if (us)
        usleep(us);
}

typedef struct mem_writer {
    uint32_t magic;
    mem_storage *ms;
    char *key;
    uint32_t flags;
    uint8_t *data;
    size_t len, cap;
    int lock_mode;
    int64_t retain_until;
} mem_writer;

typedef struct mem_reader {
    uint32_t magic;
    uint8_t *data;
    size_t len, pos;
} mem_reader;

/* ---- Helpers (call with the lock held) -------------------------------- */

static ssize_t find(mem_storage *ms, const char *key, size_t *ins)
{
    size_t lo = 0, hi = ms->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(ms->objs[mid].key, key);
        if (c == 0)
            return (ssize_t)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (ins)
        *ins = lo;
    return -1;
}

static void remove_at(mem_storage *ms, size_t i)
{
    free(ms->objs[i].key);
    free(ms->objs[i].data);
    memmove(&ms->objs[i], &ms->objs[i + 1], (ms->n - i - 1) * sizeof *ms->objs);
    ms->n--;
}

static int key_ok(const char *key)
{
    if (!key || !*key || key[0] == '/')
        return 0;
    for (const char *s = key; *s;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return 0;
        s += n;
        if (*s == '/')
            s++;
    }
    return 1;
}

/* ---- Lifecycle ----------------------------------------------------------- */

static coffer_status m_instance_new(const coffer_host *host, coffer_hctx *h, const coffer_config *cfg,
                                    void **instance)
{
    (void)cfg;
    mem_storage *ms = calloc(1, sizeof *ms);
    if (!ms)
        return host->error(h, COFFER_ERR_FATAL, "out of memory");
    ms->magic = COFFER_MAGIC_INSTANCE;
    ms->host = host;
    ms->h = h;
    ms->budget = UINT64_MAX;
    pthread_mutex_init(&ms->lock, NULL);
    *instance = ms;
    return COFFER_OK;
}

static void m_instance_free(void *instance)
{
    mem_storage *ms = instance;
    if (!ms)
        return;
    for (size_t i = 0; i < ms->n; i++) {
        free(ms->objs[i].key);
        free(ms->objs[i].data);
    }
    free(ms->objs);
    pthread_mutex_destroy(&ms->lock);
    ms->magic = 0;
    free(ms);
}

static uint32_t m_capabilities(void *instance)
{
    mem_storage *ms = instance;
    return COFFER_CAP_ATOMIC_PUBLISH | COFFER_CAP_CONDITIONAL_CREATE | COFFER_CAP_RANGED_READ |
           (ms->retention ? COFFER_CAP_RETENTION : 0) | (ms->append_only ? COFFER_CAP_APPEND_ONLY : 0);
}

static int64_t m_now(mem_storage *ms)
{
    return ms->now ? ms->now : (int64_t)time(NULL);
}

/* Under retention at the storage's clock (lock held). */
static int locked(mem_storage *ms, const mem_obj *o)
{
    return o->lock_mode != COFFER_LOCK_NONE && o->retain_until > m_now(ms);
}

static coffer_status m_prepare(void *instance, int create)
{
    (void)instance;
    (void)create;
    return COFFER_OK;
}

/* ---- Writers ------------------------------------------------------------- */

static coffer_status m_writer_open(void *instance, const char *key, const coffer_write_opts *o,
                                   void **writer)
{
    mem_storage *ms = instance;
    if (!key_ok(key))
        return ms->host->error(ms->h, COFFER_ERR_INVALID, "invalid key '%s'", key ? key : "");
    uint32_t flags = o && o->struct_size >= offsetof(coffer_write_opts, flags) + sizeof o->flags ? o->flags : 0;
    int lock = o && o->struct_size >= COFFER_HAS_MEMBER_SIZE(coffer_write_opts, retain_until) &&
               o->lock_mode != COFFER_LOCK_NONE;
    if (lock && !ms->retention)
        return ms->host->error(ms->h, COFFER_ERR_UNSUPPORTED, "%s: no object lock", key);
    pthread_mutex_lock(&ms->lock);
    int exists = find(ms, key, NULL) >= 0;
    if (!exists || !(flags & COFFER_WRITE_IF_ABSENT))
        ms->open_writers++;
    pthread_mutex_unlock(&ms->lock);
    if (exists && (flags & COFFER_WRITE_IF_ABSENT))
        return ms->host->error(ms->h, COFFER_ERR_EXISTS, "%s exists", key);
    mem_writer *w = calloc(1, sizeof *w);
    w->magic = COFFER_MAGIC_WRITER;
    w->ms = ms;
    w->key = strdup(key);
    w->flags = flags;
    if (lock) {
        w->lock_mode = (int)o->lock_mode;
        w->retain_until = o->retain_until;
    }
    *writer = w;
    return COFFER_OK;
}

static void writer_free(mem_writer *w)
{
    pthread_mutex_lock(&w->ms->lock);
    w->ms->open_writers--;
    pthread_mutex_unlock(&w->ms->lock);
    w->magic = 0;
    free(w->key);
    free(w->data);
    free(w);
}

static coffer_status m_writer_write(void *writer, const void *buf, size_t len)
{
    mem_writer *w = writer;
    if (!w || w->magic != COFFER_MAGIC_WRITER)
        abort(); /* misuse must fail loudly */
    mem_storage *ms = w->ms;
    pthread_mutex_lock(&ms->lock);
    int full = ms->budget < len;
    if (full)
        ms->budget = 0;
    else if (ms->budget != UINT64_MAX)
        ms->budget -= len;
    pthread_mutex_unlock(&ms->lock);
    if (full)
        return ms->host->error(ms->h, COFFER_ERR_NO_SPACE, "%s: no space left on device (injected)",
                               w->key);
    if (w->len + len > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + len)
            cap *= 2;
        uint8_t *p = realloc(w->data, cap);
        if (!p)
            return ms->host->error(ms->h, COFFER_ERR_FAILED, "out of memory");
        w->data = p;
        w->cap = cap;
    }
    if (len)
        memcpy(w->data + w->len, buf, len);
    w->len += len;
    return COFFER_OK;
}

static coffer_status m_writer_commit(void *writer)
{
    mem_writer *w = writer;
    if (!w || w->magic != COFFER_MAGIC_WRITER)
        abort();
    mem_storage *ms = w->ms;
    coffer_status st = COFFER_OK;
    wait_round_trip(ms);
    pthread_mutex_lock(&ms->lock);
    size_t ins = 0;
    ssize_t i = find(ms, w->key, &ins);
    if (i >= 0 && (w->flags & COFFER_WRITE_IF_ABSENT)) {
        st = COFFER_ERR_EXISTS;
    } else if (i >= 0 && (locked(ms, &ms->objs[i]) ||
                          (ms->append_only && strncmp(w->key, "locks/", 6) != 0))) {
        st = COFFER_ERR_LOCKED;
    } else if (i >= 0) {
        free(ms->objs[i].data);
        ms->objs[i].data = w->data;
        ms->objs[i].len = w->len;
        ms->objs[i].flags = w->flags;
        ms->objs[i].mtime = ++ms->clock;
        ms->objs[i].lock_mode = w->lock_mode;
        ms->objs[i].retain_until = w->retain_until;
        w->data = NULL;
    } else {
        if (ms->n == ms->cap) {
            ms->cap = ms->cap ? ms->cap * 2 : 64;
            ms->objs = realloc(ms->objs, ms->cap * sizeof *ms->objs);
            if (!ms->objs)
                abort();
        }
        memmove(&ms->objs[ins + 1], &ms->objs[ins], (ms->n - ins) * sizeof *ms->objs);
        ms->objs[ins] = (mem_obj){w->key,         w->data,         w->len, w->flags, ++ms->clock,
                                  w->lock_mode, w->retain_until};
        ms->n++;
        w->key = NULL;
        w->data = NULL;
    }
    pthread_mutex_unlock(&ms->lock);
    if (st == COFFER_ERR_EXISTS)
        ms->host->error(ms->h, st, "%s exists", w->key);
    else if (st == COFFER_ERR_LOCKED)
        ms->host->error(ms->h, st, "%s is locked or the store append-only: not replaced", w->key);
    writer_free(w);
    return st;
}

static void m_writer_abort(void *writer)
{
    mem_writer *w = writer;
    if (!w)
        return;
    if (w->magic != COFFER_MAGIC_WRITER)
        abort();
    writer_free(w);
}

/* ---- Readers ------------------------------------------------------------- */

static coffer_status m_reader_open(void *instance, const char *key, uint64_t offset, uint64_t length,
                                   void **reader)
{
    mem_storage *ms = instance;
    wait_round_trip(ms);
    pthread_mutex_lock(&ms->lock);
    ssize_t i = find(ms, key, NULL);
    if (i < 0) {
        pthread_mutex_unlock(&ms->lock);
        return ms->host->error(ms->h, COFFER_ERR_NOT_FOUND, "%s: no such object", key);
    }
    mem_obj *o = &ms->objs[i];
    size_t off = offset < o->len ? (size_t)offset : o->len;
    size_t len = o->len - off;
    if (length && length < len)
        len = (size_t)length;
    mem_reader *r = calloc(1, sizeof *r);
    r->magic = COFFER_MAGIC_READER;
    r->data = malloc(len ? len : 1);
    if (len)
        memcpy(r->data, o->data + off, len);
    r->len = len;
    pthread_mutex_unlock(&ms->lock);
    *reader = r;
    return COFFER_OK;
}

static coffer_status m_reader_read(void *reader, void *buf, size_t len, size_t *got)
{
    mem_reader *r = reader;
    if (!r || r->magic != COFFER_MAGIC_READER)
        abort();
    /* Hand out at most 4000 bytes per call: callers must loop, as they
     * must with a network driver. */
    size_t n = r->len - r->pos;
    if (n > len)
        n = len;
    if (n > 4000)
        n = 4000;
    memcpy(buf, r->data + r->pos, n);
    r->pos += n;
    *got = n;
    return COFFER_OK;
}

static void m_reader_close(void *reader)
{
    mem_reader *r = reader;
    if (!r)
        return;
    if (r->magic != COFFER_MAGIC_READER)
        abort();
    r->magic = 0;
    free(r->data);
    free(r);
}

/* ---- Namespace ----------------------------------------------------------- */

static coffer_status m_stat(void *instance, const char *key, coffer_object_stat *st)
{
    mem_storage *ms = instance;
    wait_round_trip(ms);
    pthread_mutex_lock(&ms->lock);
    ssize_t i = find(ms, key, NULL);
    if (i >= 0) {
        st->size = ms->objs[i].len;
        st->mtime = ms->objs[i].mtime;
        snprintf(st->etag, sizeof st->etag, "m%lld", (long long)ms->objs[i].mtime);
    }
    pthread_mutex_unlock(&ms->lock);
    return i >= 0 ? COFFER_OK : ms->host->error(ms->h, COFFER_ERR_NOT_FOUND, "%s: no such object", key);
}

static coffer_status m_list(void *instance, const char *prefix, coffer_list_cb cb, void *ud)
{
    mem_storage *ms = instance;
    size_t plen = prefix ? strlen(prefix) : 0;
    /* Snapshot first: the callback may call back into the driver. */
    pthread_mutex_lock(&ms->lock);
    size_t n = 0;
    char **keys = malloc((ms->n ? ms->n : 1) * sizeof *keys);
    coffer_object_stat *sts = calloc(ms->n ? ms->n : 1, sizeof *sts);
    for (size_t i = 0; i < ms->n; i++) {
        if (plen && strncmp(ms->objs[i].key, prefix, plen) != 0)
            continue;
        keys[n] = strdup(ms->objs[i].key);
        sts[n].struct_size = sizeof *sts;
        sts[n].size = ms->objs[i].len;
        sts[n].mtime = ms->objs[i].mtime;
        n++;
    }
    pthread_mutex_unlock(&ms->lock);
    int stop = 0;
    for (size_t i = 0; i < n; i++) {
        if (!stop)
            stop = cb(ud, keys[i], &sts[i]);
        free(keys[i]);
    }
    free(keys);
    free(sts);
    return COFFER_OK;
}

static coffer_status m_remove_ex(void *instance, const char *key, const char *version_id,
                                 uint32_t flags)
{
    mem_storage *ms = instance;
    if (version_id)
        return ms->host->error(ms->h, COFFER_ERR_UNSUPPORTED, "%s: no versions", key);
    pthread_mutex_lock(&ms->lock);
    ssize_t i = find(ms, key, NULL);
    int refused = i >= 0 && ((locked(ms, &ms->objs[i]) &&
                              !((flags & COFFER_REMOVE_BYPASS_GOVERNANCE) &&
                                ms->objs[i].lock_mode == COFFER_LOCK_GOVERNANCE)) ||
                             (ms->append_only && strncmp(key, "locks/", 6) != 0 &&
                              !(flags & COFFER_REMOVE_MAINTENANCE)));
    if (i >= 0 && !refused)
        remove_at(ms, (size_t)i);
    pthread_mutex_unlock(&ms->lock);
    if (refused)
        return ms->host->error(ms->h, COFFER_ERR_LOCKED, "%s: locked or append-only", key);
    if (i < 0 && !(flags & COFFER_REMOVE_ABSENT_OK))
        return ms->host->error(ms->h, COFFER_ERR_NOT_FOUND, "%s: no such object", key);
    return COFFER_OK;
}

static coffer_status m_remove(void *instance, const char *key)
{
    return m_remove_ex(instance, key, NULL, 0);
}

static coffer_status m_server_time(void *instance, int64_t *now)
{
    mem_storage *ms = instance;
    pthread_mutex_lock(&ms->lock);
    *now = m_now(ms);
    pthread_mutex_unlock(&ms->lock);
    return COFFER_OK;
}

static coffer_status m_object_retention(void *instance, const char *key, const char *version_id,
                                        coffer_lock_mode *mode, int64_t *until)
{
    mem_storage *ms = instance;
    (void)version_id;
    pthread_mutex_lock(&ms->lock);
    ssize_t i = find(ms, key, NULL);
    if (i >= 0) {
        *mode = (coffer_lock_mode)ms->objs[i].lock_mode;
        *until = ms->objs[i].retain_until;
    }
    pthread_mutex_unlock(&ms->lock);
    return i >= 0 ? COFFER_OK : ms->host->error(ms->h, COFFER_ERR_NOT_FOUND, "%s: no such object", key);
}

static coffer_status m_set_retention(void *instance, const char *key, const char *version_id,
                                     coffer_lock_mode mode, int64_t until, uint32_t flags)
{
    mem_storage *ms = instance;
    (void)version_id;
    pthread_mutex_lock(&ms->lock);
    ssize_t i = find(ms, key, NULL);
    int shorter = i >= 0 && locked(ms, &ms->objs[i]) &&
                  (until < ms->objs[i].retain_until ||
                   (ms->objs[i].lock_mode == COFFER_LOCK_COMPLIANCE && mode != COFFER_LOCK_COMPLIANCE)) &&
                  !((flags & COFFER_REMOVE_BYPASS_GOVERNANCE) &&
                    ms->objs[i].lock_mode == COFFER_LOCK_GOVERNANCE);
    if (i >= 0 && !shorter) {
        ms->objs[i].lock_mode = (int)mode;
        ms->objs[i].retain_until = until;
        ms->retention_sets++;
    }
    pthread_mutex_unlock(&ms->lock);
    if (shorter)
        return ms->host->error(ms->h, COFFER_ERR_LOCKED, "%s: retention cannot be shortened", key);
    return i >= 0 ? COFFER_OK : ms->host->error(ms->h, COFFER_ERR_NOT_FOUND, "%s: no such object", key);
}

static const coffer_storage_ops mem_ops = {
    .struct_size = sizeof(coffer_storage_ops),
    .instance_new = m_instance_new,
    .instance_free = m_instance_free,
    .capabilities = m_capabilities,
    .prepare = m_prepare,
    .writer_open = m_writer_open,
    .writer_write = m_writer_write,
    .writer_commit = m_writer_commit,
    .writer_abort = m_writer_abort,
    .reader_open = m_reader_open,
    .reader_read = m_reader_read,
    .reader_close = m_reader_close,
    .stat = m_stat,
    .list = m_list,
    .remove = m_remove,
    .server_time = m_server_time,
    .object_retention = m_object_retention,
    .set_retention = m_set_retention,
    .remove_ex = m_remove_ex,
};

static const coffer_plugin mem_plugin = {
    COFFER_PLUGIN_HEADER,
    .kind = COFFER_KIND_STORAGE,
    .name = "mem",
    .version = "1",
    .description = "in-memory storage for tests, with fault injection",
    .threading = COFFER_THREADS_HANDLES,
    .options = NULL,
    .storage = &mem_ops,
};

const coffer_plugin *mem_storage_plugin(void)
{
    return &mem_plugin;
}

cf_store *mem_store_new(const char *label, mem_storage **ms)
{
    cf_store *st = NULL;
    if (cf_store_new(&mem_plugin, NULL, label ? label : "mem", NULL, &st) != COFFER_OK) {
        fprintf(stderr, "mem_store_new: %s\n", cf_error());
        abort();
    }
    if (ms)
        *ms = st->inst;
    return st;
}

mem_storage *mem_store_backend(cf_store *st)
{
    return st->inst;
}

/* ---- Fault injection and inspection --------------------------------------- */

void mem_storage_fail_writes_after(mem_storage *ms, uint64_t bytes)
{
    pthread_mutex_lock(&ms->lock);
    ms->budget = bytes;
    pthread_mutex_unlock(&ms->lock);
}

int mem_storage_drop(mem_storage *ms, const char *key)
{
    pthread_mutex_lock(&ms->lock);
    ssize_t i = find(ms, key, NULL);
    if (i >= 0)
        remove_at(ms, (size_t)i);
    pthread_mutex_unlock(&ms->lock);
    return i >= 0 ? 0 : -1;
}

int mem_storage_flip(mem_storage *ms, const char *key, uint64_t offset)
{
    pthread_mutex_lock(&ms->lock);
    ssize_t i = find(ms, key, NULL);
    int ok = i >= 0 && offset < ms->objs[i].len;
    if (ok)
        ms->objs[i].data[offset] ^= 0xff;
    pthread_mutex_unlock(&ms->lock);
    return ok ? 0 : -1;
}

int mem_storage_truncate(mem_storage *ms, const char *key, uint64_t len)
{
    pthread_mutex_lock(&ms->lock);
    ssize_t i = find(ms, key, NULL);
    int ok = i >= 0 && len <= ms->objs[i].len;
    if (ok)
        ms->objs[i].len = (size_t)len;
    pthread_mutex_unlock(&ms->lock);
    return ok ? 0 : -1;
}

size_t mem_storage_count(mem_storage *ms, const char *prefix)
{
    size_t plen = prefix ? strlen(prefix) : 0, n = 0;
    pthread_mutex_lock(&ms->lock);
    for (size_t i = 0; i < ms->n; i++)
        if (!plen || strncmp(ms->objs[i].key, prefix, plen) == 0)
            n++;
    pthread_mutex_unlock(&ms->lock);
    return n;
}

int mem_storage_exists(mem_storage *ms, const char *key)
{
    pthread_mutex_lock(&ms->lock);
    int e = find(ms, key, NULL) >= 0;
    pthread_mutex_unlock(&ms->lock);
    return e;
}

int64_t mem_storage_size(mem_storage *ms, const char *key)
{
    pthread_mutex_lock(&ms->lock);
    ssize_t i = find(ms, key, NULL);
    int64_t n = i >= 0 ? (int64_t)ms->objs[i].len : -1;
    pthread_mutex_unlock(&ms->lock);
    return n;
}

int mem_storage_flags(mem_storage *ms, const char *key)
{
    pthread_mutex_lock(&ms->lock);
    ssize_t i = find(ms, key, NULL);
    int f = i >= 0 ? (int)ms->objs[i].flags : -1;
    pthread_mutex_unlock(&ms->lock);
    return f;
}

uint8_t *mem_storage_get(mem_storage *ms, const char *key, size_t *len)
{
    pthread_mutex_lock(&ms->lock);
    ssize_t i = find(ms, key, NULL);
    uint8_t *p = NULL;
    if (i >= 0) {
        *len = ms->objs[i].len;
        p = malloc(*len ? *len : 1);
        memcpy(p, ms->objs[i].data, *len);
    }
    pthread_mutex_unlock(&ms->lock);
    return p;
}

char *mem_storage_key(mem_storage *ms, const char *prefix, size_t idx)
{
    size_t plen = prefix ? strlen(prefix) : 0, n = 0;
    char *out = NULL;
    pthread_mutex_lock(&ms->lock);
    for (size_t i = 0; i < ms->n && !out; i++)
        if (!plen || strncmp(ms->objs[i].key, prefix, plen) == 0) {
            if (n++ == idx)
                out = strdup(ms->objs[i].key);
        }
    pthread_mutex_unlock(&ms->lock);
    return out;
}

size_t mem_storage_open_writers(mem_storage *ms)
{
    pthread_mutex_lock(&ms->lock);
    size_t n = ms->open_writers;
    pthread_mutex_unlock(&ms->lock);
    return n;
}

void mem_storage_set_retention(mem_storage *ms, int on, int64_t now)
{
    pthread_mutex_lock(&ms->lock);
    ms->retention = on;
    ms->now = now;
    pthread_mutex_unlock(&ms->lock);
}

void mem_storage_set_latency(mem_storage *ms, unsigned usec)
{
    atomic_store(&ms->latency_us, usec);
}

void mem_storage_set_append_only(mem_storage *ms, int on)
{
    pthread_mutex_lock(&ms->lock);
    ms->append_only = on;
    pthread_mutex_unlock(&ms->lock);
}

int64_t mem_storage_retain_until(mem_storage *ms, const char *key)
{
    pthread_mutex_lock(&ms->lock);
    ssize_t i = find(ms, key, NULL);
    int64_t u = i >= 0 && ms->objs[i].lock_mode != COFFER_LOCK_NONE ? ms->objs[i].retain_until : -1;
    pthread_mutex_unlock(&ms->lock);
    return u;
}

uint64_t mem_storage_retention_sets(mem_storage *ms)
{
    pthread_mutex_lock(&ms->lock);
    uint64_t n = ms->retention_sets;
    pthread_mutex_unlock(&ms->lock);
    return n;
}
