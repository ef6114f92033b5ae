#include "plugin/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/config.h"
#include "plugin/host.h"

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int fail(cf_store *s, coffer_status st, const char *what, const char *key)
{
    char w[1200];
    snprintf(w, sizeof w, "%s%s%s", what, key ? " " : "", key ? key : "");
    cf_hctx_fail(s->hctx, st, w);
    return st ? (int)st : COFFER_ERR_FAILED;
}

int cf_store_new(const coffer_plugin *drv, const coffer_config *cfg, const char *label,
                 const char *root, cf_store **out)
{
    cf_store *s = cf_calloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->prep_cv, NULL);
    s->ops = drv->storage;
    s->threading = drv->threading;
    s->abi_minor = drv->abi_minor;
    s->label = cf_strdup(label);
    s->hctx = cf_hctx_new(label, root);
    coffer_status st = s->ops->instance_new(cf_host_table(), s->hctx, cfg, &s->inst);
    if (st != COFFER_OK) {
        fail(s, st, "cannot open", NULL);
        cf_hctx_free(s->hctx);
        free(s->label);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->prep_cv);
        free(s);
        return st;
    }
    s->caps = s->ops->capabilities ? s->ops->capabilities(s->inst) : 0;
    *out = s;
    return COFFER_OK;
}

int cf_store_new_at(const coffer_plugin *drv, const coffer_config *cfg, const char *location,
                    const char *label, const char *root, cf_store **out)
{
    coffer_config *c = cf_config_dup(cfg);
    if (location && !cf_config_find(c, "location"))
        cf_config_set(c, "location", location, 0, 0);
    int st = cf_store_new(drv, c, label, root, out);
    if (st != COFFER_OK) {
        cf_config_free(c);
        return st;
    }
    (*out)->cfg = c; /* lives as long as the instance */
    return COFFER_OK;
}

void cf_store_free(cf_store *s)
{
    if (!s)
        return;
    if (s->prep_running)
        pthread_join(s->prep_thread, NULL);
    free(s->prep_err);
    if (s->inst)
        s->ops->instance_free(s->inst);
    cf_config_free(s->cfg);
    cf_hctx_free(s->hctx);
    free(s->label);
    free_strv(s->pins, s->npins);
    free_strv(s->dead, s->ndead);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->prep_cv);
    free(s);
}

/* ---- tombstones (append-only stores) ------------------------------------- */

int cf_store_append_only(const cf_store *s)
{
    return (s->caps & COFFER_CAP_APPEND_ONLY) && s->ops->remove_ex;
}

static int is_lock_key(const char *key)
{
    return strncmp(key, "locks/", 6) == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void cf_keys_add(cf_keys *k, const char *key)
{
    if (k->n == k->cap) {
        k->cap = k->cap ? 2 * k->cap : 64;
        k->v = cf_realloc(k->v, k->cap * sizeof *k->v);
    }
    k->v[k->n++] = cf_strdup(key);
}

void cf_keys_free(cf_keys *k)
{
    free_strv(k->v, k->n);
    k->v = NULL;
    k->n = k->cap = 0;
}

static int collect_key(void *ud, const char *key, const coffer_object_stat *st)
{
    (void)st;
    cf_keys_add(ud, key);
    return 0;
}

static int load_dead(cf_store *s)
{
    pthread_mutex_lock(&s->mu);
    int loaded = s->dead_loaded;
    pthread_mutex_unlock(&s->mu);
    if (loaded)
        return 0;
    cf_keys d = {0};
    coffer_status st = s->ops->list(s->inst, CF_TOMBSTONE_PREFIX, collect_key, &d);
    if (st) {
        cf_keys_free(&d);
        return fail(s, st, "cannot list", CF_TOMBSTONE_PREFIX);
    }
    for (size_t i = 0; i < d.n; i++) /* the removed key: the tombstone's name without prefix */
        memmove(d.v[i], d.v[i] + strlen(CF_TOMBSTONE_PREFIX),
                strlen(d.v[i]) - strlen(CF_TOMBSTONE_PREFIX) + 1);
    if (d.n)
        qsort(d.v, d.n, sizeof *d.v, cmp_str);
    pthread_mutex_lock(&s->mu);
    if (!s->dead_loaded) {
        free_strv(s->dead, s->ndead); /* what this run removed: also in the listing */
        s->dead = d.v;
        s->ndead = d.n;
        s->dead_loaded = 1;
        d.v = NULL;
        d.n = 0;
    }
    pthread_mutex_unlock(&s->mu);
    free_strv(d.v, d.n);
    return 0;
}

/* 1 when a tombstone removed key (append-only stores only). */
static int is_dead(cf_store *s, const char *key)
{
    if (!cf_store_append_only(s) || strncmp(key, CF_TOMBSTONE_PREFIX, 8) == 0 ||
        is_lock_key(key) || load_dead(s) != 0)
        return 0;
    pthread_mutex_lock(&s->mu);
    int dead = s->ndead && bsearch(&key, s->dead, s->ndead, sizeof *s->dead, cmp_str) != NULL;
    pthread_mutex_unlock(&s->mu);
    return dead;
}

static void add_dead(cf_store *s, const char *key)
{
    pthread_mutex_lock(&s->mu);
    char *k = (char *)key;
    if (!s->ndead || !bsearch(&k, s->dead, s->ndead, sizeof *s->dead, cmp_str)) {
        s->dead = cf_realloc(s->dead, (s->ndead + 1) * sizeof *s->dead);
        s->dead[s->ndead++] = cf_strdup(key);
        qsort(s->dead, s->ndead, sizeof *s->dead, cmp_str);
    }
    pthread_mutex_unlock(&s->mu);
}

static void *prepare_thread(void *arg)
{
    cf_store *s = arg;
    s->prep_st = s->ops->prepare(s->inst, 0);
    if (s->prep_st) {
        fail(s, s->prep_st, "cannot prepare location", NULL);
        s->prep_err = cf_strdup(cf_error());
    } else if (s->ops->capabilities) {
        /* Before prep_done: a thread that waited for the checks
         * (cf_store_prepare_wait) sees what they learned. */
        s->caps = s->ops->capabilities(s->inst);
    }
    pthread_mutex_lock(&s->mu);
    s->prep_done = 1;
    pthread_cond_broadcast(&s->prep_cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int cf_store_prepare_wait(cf_store *s)
{
    pthread_mutex_lock(&s->mu);
    while (s->prep_started && !s->prep_done)
        pthread_cond_wait(&s->prep_cv, &s->mu);
    int rc = s->prep_started && s->prep_st != COFFER_OK ? -1 : 0;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int cf_store_prepare_begin(cf_store *s)
{
    if (!s->ops->prepare || s->prepared || s->prep_running || (s->caps & COFFER_CAP_LOCAL) ||
        !(s->caps & COFFER_CAP_CONCURRENT_PREPARE) || s->abi_minor < 3 ||
        s->threading < COFFER_THREADS_HANDLES)
        return 0;
    s->prep_started = 1; /* read by other threads only once it is running */
    s->prep_running = pthread_create(&s->prep_thread, NULL, prepare_thread, s) == 0;
    if (!s->prep_running)
        s->prep_started = 0;
    return s->prep_running;
}

int cf_store_preparing(const cf_store *s)
{
    return s->prep_running;
}

int cf_store_prepare(cf_store *s, int create)
{
    /* Once per store: a run opens its target and then its repository,
     * and on S3 each prepare costs a HEAD of the bucket and a GET of its
     * object-lock configuration (and logs its warnings again). */
    coffer_status st;
    if (s->prep_running) {
        pthread_join(s->prep_thread, NULL);
        s->prep_running = 0;
        if ((st = s->prep_st) != COFFER_OK) {
            cf_fail("%s", s->prep_err); /* set by prepare_thread with the status */
            return st;
        }
        s->prepared = 1; /* the thread read the capabilities again */
        return 0;
    }
    if (!s->ops->prepare || s->prepared)
        return COFFER_OK;
    if ((st = s->ops->prepare(s->inst, create)) != COFFER_OK)
        return fail(s, st, "cannot prepare location", NULL);
    s->prepared = 1;
    /* What the storage can do may depend on what prepare learned (a
     * bucket with object lock). */
    if (s->ops->capabilities)
        s->caps = s->ops->capabilities(s->inst);
    return 0;
}

/* Objects coffer rewrites or removes as a matter of course are never
 * locked: repository locks and the state record. */
static int lockable(const char *key)
{
    return !is_lock_key(key) && strncmp(key, "state/", 6) != 0 &&
           strncmp(key, CF_TOMBSTONE_PREFIX, 8) != 0;
}

int cf_store_writer_open(cf_store *s, const char *key, uint32_t flags, uint64_t size_hint, void **w)
{
    coffer_write_opts o = {.struct_size = sizeof o, .flags = flags, .size_hint = size_hint};
    if (s->lock_mode != COFFER_LOCK_NONE && lockable(key)) {
        o.lock_mode = s->lock_mode;
        o.retain_until = s->retain_until;
    }
    coffer_status st = s->ops->writer_open(s->inst, key, &o, w);
    return st ? fail(s, st, "cannot create", key) : 0;
}

int cf_store_write(cf_store *s, void *w, const void *buf, size_t len)
{
    coffer_status st = s->ops->writer_write(w, buf, len);
    return st ? fail(s, st, "write failed", NULL) : 0;
}

int cf_store_commit(cf_store *s, void *w)
{
    coffer_status st = s->ops->writer_commit(w);
    return st ? fail(s, st, "commit failed", NULL) : 0;
}

void cf_store_abort(cf_store *s, void *w)
{
    if (w)
        s->ops->writer_abort(w);
}

int cf_store_reader_open(cf_store *s, const char *key, uint64_t off, uint64_t len, void **r)
{
    if (is_dead(s, key))
        return fail(s, COFFER_ERR_NOT_FOUND, "cannot read (removed by a tombstone)", key);
    char *vid = cf_store_pinned(s, key);
    coffer_status st;
    if (vid && s->ops->reader_open_version_range)
        st = s->ops->reader_open_version_range(s->inst, key, vid, off, len, r);
    else
        st = s->ops->reader_open(s->inst, key, off, len, r);
    free(vid);
    return st ? fail(s, st, "cannot read", key) : 0;
}

int cf_store_read(cf_store *s, void *r, void *buf, size_t len, size_t *got)
{
    size_t total = 0;
    while (total < len) {
        size_t n = 0;
        coffer_status st = s->ops->reader_read(r, (char *)buf + total, len - total, &n);
        if (st)
            return fail(s, st, "read failed", NULL);
        if (n == 0)
            break;
        total += n;
    }
    *got = total;
    return 0;
}

void cf_store_reader_close(cf_store *s, void *r)
{
    if (r)
        s->ops->reader_close(r);
}

/* Requests up to this size count as round trips. */
#define RTT_SMALL (64u << 10)

static void note_rtt(cf_store *s, double since)
{
    double d = cf_now() - since;
    uint64_t ns = d <= 0 ? 1 : (uint64_t)(d * 1e9) + 1;
    uint64_t cur = atomic_load(&s->rtt_ns);
    while ((cur == 0 || ns < cur) && !atomic_compare_exchange_weak(&s->rtt_ns, &cur, ns))
        ;
}

double cf_store_round_trip(cf_store *s)
{
    return (double)atomic_load(&s->rtt_ns) / 1e9;
}

int cf_store_stat(cf_store *s, const char *key, coffer_object_stat *st_out)
{
    double t0 = cf_now();
    memset(st_out, 0, sizeof *st_out);
    st_out->struct_size = sizeof *st_out;
    if (is_dead(s, key))
        return fail(s, COFFER_ERR_NOT_FOUND, "cannot stat (removed by a tombstone)", key);
    coffer_status st = s->ops->stat(s->inst, key, st_out);
    if (st == COFFER_OK || st == COFFER_ERR_NOT_FOUND)
        note_rtt(s, t0);
    return st ? fail(s, st, "cannot stat", key) : 0;
}

typedef struct {
    cf_store *s;
    coffer_list_cb cb;
    void *ud;
} live_list;

static int list_live(void *ud, const char *key, const coffer_object_stat *st)
{
    live_list *l = ud;
    if (is_dead(l->s, key))
        return 0;
    return l->cb(l->ud, key, st);
}

int cf_store_list(cf_store *s, const char *prefix, coffer_list_cb cb, void *ud)
{
    coffer_status st;
    if (cf_store_append_only(s) && strncmp(prefix, CF_TOMBSTONE_PREFIX, 8) != 0) {
        if (load_dead(s) != 0)
            return -1;
        live_list l = {s, cb, ud};
        st = s->ops->list(s->inst, prefix, list_live, &l);
    } else {
        st = s->ops->list(s->inst, prefix, cb, ud);
    }
    return st ? fail(s, st, "cannot list", prefix) : 0;
}

int cf_store_list_keys(cf_store *s, const char *prefix, cf_keys *k)
{
    return cf_store_list(s, prefix, collect_key, k);
}

int cf_store_remove(cf_store *s, const char *key)
{
    if (cf_store_append_only(s) && !is_lock_key(key) &&
        strncmp(key, CF_TOMBSTONE_PREFIX, 8) != 0) {
        if (!s->maintenance) {
            if (is_dead(s, key))
                return fail(s, COFFER_ERR_NOT_FOUND, "cannot remove (already removed)", key);
            char *t = cf_asprintf("%s%s", CF_TOMBSTONE_PREFIX, key);
            int rc = cf_store_put(s, t, "", 0, COFFER_WRITE_IF_ABSENT | COFFER_WRITE_PRIVATE);
            free(t);
            if (rc == COFFER_ERR_EXISTS)
                rc = 0;
            if (rc == 0)
                add_dead(s, key);
            return rc;
        }
        return cf_store_remove_version(s, key, NULL, COFFER_REMOVE_MAINTENANCE);
    }
    if (s->remove_flags && s->ops->remove_ex)
        return cf_store_remove_version(s, key, NULL, 0);
    coffer_status st = s->ops->remove(s->inst, key);
    return st ? fail(s, st, "cannot remove", key) : 0;
}

int cf_store_remove_absent_ok(cf_store *s, const char *key)
{
    int rc;
    if (s->ops->remove_ex && s->abi_minor >= 3 && (!cf_store_append_only(s) || is_lock_key(key))) {
        coffer_status st =
            s->ops->remove_ex(s->inst, key, NULL, COFFER_REMOVE_ABSENT_OK | s->remove_flags);
        rc = st ? fail(s, st, "cannot remove", key) : 0;
    } else {
        rc = cf_store_remove(s, key);
    }
    if (rc == COFFER_ERR_NOT_FOUND) { /* also from a driver that ignores the flag */
        cf_error_clear();
        rc = 0;
    }
    return rc;
}

int cf_store_remove_version(cf_store *s, const char *key, const char *version_id, uint32_t flags)
{
    if (!s->ops->remove_ex)
        return fail(s, COFFER_ERR_UNSUPPORTED, "cannot remove one version of", key);
    coffer_status st = s->ops->remove_ex(s->inst, key, version_id, flags | s->remove_flags);
    return st ? fail(s, st, "cannot remove", key) : 0;
}

/* ---- retention and versions ---------------------------------------------- */

int cf_store_server_time(cf_store *s, int64_t *now)
{
    if (!(s->caps & COFFER_CAP_RETENTION) || !s->ops->server_time)
        return fail(s, COFFER_ERR_UNSUPPORTED, "no object lock on this storage", NULL);
    coffer_status st = s->ops->server_time(s->inst, now);
    return st ? fail(s, st, "cannot read the server's clock", NULL) : 0;
}

int cf_store_retention(cf_store *s, const char *key, const char *version_id, coffer_lock_mode *mode,
                       int64_t *until)
{
    *mode = COFFER_LOCK_NONE;
    *until = 0;
    if (!(s->caps & COFFER_CAP_RETENTION) || !s->ops->object_retention)
        return fail(s, COFFER_ERR_UNSUPPORTED, "no object lock on this storage", NULL);
    coffer_status st = s->ops->object_retention(s->inst, key, version_id, mode, until);
    return st ? fail(s, st, "cannot read the retention of", key) : 0;
}

int cf_store_set_retention(cf_store *s, const char *key, const char *version_id,
                           coffer_lock_mode mode, int64_t until)
{
    if (!(s->caps & COFFER_CAP_RETENTION) || !s->ops->set_retention)
        return fail(s, COFFER_ERR_UNSUPPORTED, "no object lock on this storage", NULL);
    coffer_status st = s->ops->set_retention(s->inst, key, version_id, mode, until, 0);
    return st ? fail(s, st, "cannot extend the retention of", key) : 0;
}

int cf_store_list_versions(cf_store *s, const char *prefix, coffer_version_cb cb, void *ud)
{
    if (!(s->caps & COFFER_CAP_VERSIONING) || !s->ops->list_versions)
        return fail(s, COFFER_ERR_UNSUPPORTED, "no object versions on this storage", NULL);
    coffer_status st = s->ops->list_versions(s->inst, prefix, cb, ud);
    return st ? fail(s, st, "cannot list the versions under", prefix) : 0;
}

void cf_store_pin(cf_store *s, const char *key, const char *version_id)
{
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i + 1 < s->npins; i += 2)
        if (strcmp(s->pins[i], key) == 0) {
            free(s->pins[i + 1]);
            s->pins[i + 1] = cf_strdup(version_id);
            pthread_mutex_unlock(&s->mu);
            return;
        }
    s->pins = cf_realloc(s->pins, (s->npins + 2) * sizeof *s->pins);
    s->pins[s->npins++] = cf_strdup(key);
    s->pins[s->npins++] = cf_strdup(version_id);
    pthread_mutex_unlock(&s->mu);
}

char *cf_store_pinned(cf_store *s, const char *key)
{
    char *v = NULL;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i + 1 < s->npins && !v; i += 2)
        if (strcmp(s->pins[i], key) == 0)
            v = cf_strdup(s->pins[i + 1]);
    pthread_mutex_unlock(&s->mu);
    return v;
}

static int collect_version(void *ud, const coffer_object_version *v)
{
    cf_versions *a = ud;
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 256;
        a->v = cf_realloc(a->v, a->cap * sizeof *a->v);
    }
    a->v[a->n++] = (cf_version){cf_strdup(v->key), cf_strdup(v->version_id ? v->version_id : ""),
                                cf_strdup(v->etag ? v->etag : ""), v->mtime, v->is_delete_marker,
                                v->is_latest};
    return 0;
}

void cf_versions_free(cf_versions *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->v[i].key);
        free(a->v[i].vid);
        free(a->v[i].etag);
    }
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

static int cmp_version(const void *a, const void *b)
{
    const cf_version *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    if (x->latest != y->latest) /* the newest last, whatever the clock says */
        return x->latest - y->latest;
    return x->mtime < y->mtime ? -1 : x->mtime > y->mtime;
}

int cf_store_versions(cf_store *s, const char *prefix, cf_versions *out)
{
    if (cf_store_list_versions(s, prefix, collect_version, out) != 0)
        return -1;
    if (out->n)
        qsort(out->v, out->n, sizeof *out->v, cmp_version);
    return 0;
}

void cf_versions_each_replaced(const cf_versions *a, cf_replaced_fn fn, void *ud)
{
    for (size_t i = 0; i < a->n;) {
        size_t j = i;
        while (j < a->n && strcmp(a->v[j].key, a->v[i].key) == 0)
            j++;
        const cf_version *oldest = NULL, *newest = &a->v[j - 1];
        int n = 0;
        for (size_t k = i; k < j; k++)
            if (!a->v[k].marker) {
                n++;
                if (!oldest)
                    oldest = &a->v[k];
            }
        if (oldest && !newest->marker && n > 1 && strcmp(oldest->etag, newest->etag) != 0 &&
            lockable(oldest->key))
            fn(ud, oldest, newest, n);
        i = j;
    }
}

typedef struct {
    const char *key;
    char *original;
} original_of;

static void note_original(void *ud, const cf_version *oldest, const cf_version *newest, int n)
{
    (void)newest;
    (void)n;
    original_of *o = ud;
    if (strcmp(oldest->key, o->key) == 0) /* not a longer key under the same prefix */
        o->original = cf_strdup(oldest->vid);
}

int cf_store_pin_original(cf_store *s, const char *key)
{
    if (!(s->caps & COFFER_CAP_VERSIONING) || !s->ops->list_versions ||
        !s->ops->reader_open_version_range)
        return 0;
    cf_versions a = {0};
    if (cf_store_versions(s, key, &a) != 0) {
        cf_versions_free(&a);
        return -1;
    }
    original_of o = {.key = key};
    cf_versions_each_replaced(&a, note_original, &o);
    cf_versions_free(&a);
    /* 1 also when another thread pinned it meanwhile: the caller's read
     * may have happened before, and is worth once more. */
    int pinned = 0;
    if (o.original) {
        char *cur = cf_store_pinned(s, key);
        pinned = cur && strcmp(cur, o.original) == 0 ? 1 : 2;
        free(cur);
        if (pinned == 2)
            cf_store_pin(s, key, o.original);
    }
    free(o.original);
    return pinned;
}

int cf_store_put(cf_store *s, const char *key, const void *buf, size_t len, uint32_t flags)
{
    double t0 = cf_now();
    void *w;
    int st = cf_store_writer_open(s, key, flags, len, &w);
    if (st)
        return st;
    if ((st = cf_store_write(s, w, buf, len)) != 0) {
        cf_store_abort(s, w);
        return st;
    }
    if ((st = cf_store_commit(s, w)) == 0 && len <= RTT_SMALL)
        note_rtt(s, t0);
    return st;
}

int cf_store_get_range(cf_store *s, const char *key, uint64_t off, uint64_t len, cf_buf *out)
{
    double t0 = cf_now();
    void *r;
    int st = cf_store_reader_open(s, key, off, len, &r);
    if (st)
        return st;
    out->len = 0;
    if (len && out->cap < len) {
        /* A ranged read knows its size: no doubling past it. */
        out->data = cf_realloc(out->data, len);
        out->cap = len;
    }
    for (;;) {
        cf_buf_reserve(out, 1 << 16);
        /* fail() returns -1, but gcc -O3 cannot see that got is set on success only */
        size_t got = 0, want = out->cap - out->len;
        st = cf_store_read(s, r, out->data + out->len, want, &got);
        if (st) {
            cf_store_reader_close(s, r);
            return st;
        }
        out->len += got;
        if (got < want || (len && out->len >= len))
            break;
    }
    cf_store_reader_close(s, r);
    if (out->len <= RTT_SMALL)
        note_rtt(s, t0);
    return 0;
}

int cf_store_get(cf_store *s, const char *key, cf_buf *out)
{
    return cf_store_get_range(s, key, 0, 0, out);
}
