#include "engine/copy.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/manifest.h"
#include "engine/progress.h"
#include "engine/proof.h"
#include "plugin/host.h"
#include "util/util.h"

/* Chunk ids are comparable when both repositories derive them the same
 * way: plain SHA-256 of the plaintext. A keyed (encrypted) repository
 * derives its own, so every chunk is read and re-identified. */
static int same_ids(cf_repo *a, cf_repo *b)
{
    return cf_repo_id_scheme_equal(a, b);
}

/* The set's rehearsal records go along; losing one only costs a rehearsal. */
static void copy_proofs(cf_repo *src, cf_repo *dst, const char *id)
{
    if (cf_proof_copy(src, dst, id) != 0) {
        cf_log(CF_LOG_WARN, "set %s: its rehearsal records were not copied: %s", id, cf_error());
        cf_error_clear();
    }
}

/* ---- Chunk ids of the run's earlier sets --------------------------------- */

#define COPY_MAP_MAX (128u * 1024)

typedef struct id_pair {
    cf_id src, dst;
} id_pair;

struct cf_copy_ids {
    id_pair *slots; /* open addressing; a zero source id marks a free slot */
    size_t cap, n;
};

static const cf_id zero_id;

static void pairs_push(id_pair **v, size_t *n, size_t *cap, const cf_id *src, const cf_id *dst)
{
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 1024;
        *v = cf_realloc(*v, *cap * sizeof **v);
    }
    (*v)[(*n)++] = (id_pair){*src, *dst};
}

cf_copy_ids *cf_copy_ids_new(void)
{
    return cf_calloc(1, sizeof(cf_copy_ids));
}

void cf_copy_ids_free(cf_copy_ids *m)
{
    if (!m)
        return;
    free(m->slots);
    free(m);
}

static size_t slot_of(const cf_copy_ids *m, const cf_id *id)
{
    uint64_t h;
    memcpy(&h, id->b, sizeof h); /* ids are hashes: any 8 bytes spread */
    size_t i = (size_t)h & (m->cap - 1);
    while (memcmp(&m->slots[i].src, &zero_id, sizeof zero_id) != 0 &&
           memcmp(&m->slots[i].src, id, sizeof *id) != 0)
        i = (i + 1) & (m->cap - 1);
    return i;
}

static const cf_id *ids_find(const cf_copy_ids *m, const cf_id *src)
{
    if (!m || !m->n)
        return NULL;
    size_t i = slot_of(m, src);
    return memcmp(&m->slots[i].src, src, sizeof *src) == 0 ? &m->slots[i].dst : NULL;
}

static void ids_add(cf_copy_ids *m, const cf_id *src, const cf_id *dst)
{
    if (m->n >= COPY_MAP_MAX || memcmp(src, &zero_id, sizeof zero_id) == 0)
        return;
    if (2 * (m->n + 1) > m->cap) { /* at most half full */
        cf_copy_ids old = *m;
        m->cap = old.cap ? 2 * old.cap : 1024;
        m->slots = cf_calloc(m->cap, sizeof *m->slots);
        m->n = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (memcmp(&old.slots[i].src, &zero_id, sizeof zero_id) != 0)
                ids_add(m, &old.slots[i].src, &old.slots[i].dst);
        free(old.slots);
    }
    size_t i = slot_of(m, src);
    if (memcmp(&m->slots[i].src, src, sizeof *src) != 0)
        m->n++;
    m->slots[i] = (id_pair){*src, *dst};
}

/* A set both repositories hold was copied chunk for chunk: its two
 * manifests list the same entries in the same order, the source's with
 * source ids and the destination's with destination ids. Reading them
 * side by side tells where each of its chunks went, from two manifests
 * each repository authenticates with its own key. */
static void seed_from_set(cf_copy_ids *m, cf_repo *src, cf_repo *dst, const char *id)
{
    cf_mreader *a = NULL, *b = NULL;
    json_t *ha = NULL, *hb = NULL;
    if (cf_manifest_open(src, id, &a, &ha) != 0 || cf_manifest_open(dst, id, &b, &hb) != 0) {
        cf_error_clear(); /* only a shortcut is lost */
        goto out;
    }
    /* All or nothing: the pairs count only if every entry matched. */
    id_pair *pairs = NULL;
    size_t np = 0, cap = 0;
    cf_entry ea = {0}, eb = {0};
    int alike = 1, ra = -1;
    while (alike && (ra = cf_manifest_next(a, &ea)) == 1) {
        if (cf_manifest_next(b, &eb) != 1) {
            alike = 0;
            break;
        }
        alike = ea.kind == eb.kind && ea.size == eb.size && ea.nchunks == eb.nchunks &&
                cf_streq(ea.path, eb.path) && cf_streq(ea.component, eb.component);
        for (size_t i = 0; alike && i < ea.nchunks && np < COPY_MAP_MAX; i++)
            pairs_push(&pairs, &np, &cap, &ea.chunks[i], &eb.chunks[i]);
        cf_entry_clear(&ea);
        cf_entry_clear(&eb);
    }
    if (alike && ra == 0) /* the source's end: the destination's too */
        alike = cf_manifest_next(b, &eb) == 0;
    else
        alike = 0;
    cf_entry_clear(&eb);
    cf_error_clear();
    for (size_t i = 0; alike && i < np; i++)
        ids_add(m, &pairs[i].src, &pairs[i].dst);
    free(pairs);
    cf_log(CF_LOG_DEBUG, "copy: set %s is in both repositories: %s", id,
           alike ? "its chunks need no reading again" : "its two manifests differ, not used");
out:
    cf_manifest_close(a);
    cf_manifest_close(b);
    json_decref(ha);
    json_decref(hb);
}

void cf_copy_ids_seed(cf_copy_ids *m, cf_repo *src, cf_repo *dst, const char *policy)
{
    if (same_ids(src, dst))
        return; /* the destination is asked for each id */
    char **ss = NULL, **ds = NULL;
    size_t ns = 0, nd = 0;
    if (cf_sets_list(src, &ss, &ns) != 0 || cf_sets_list(dst, &ds, &nd) != 0) {
        cf_error_clear();
        goto out;
    }
    /* Set ids begin with their time: the newest set of this policy both
     * hold, looked for from the end of both sorted lists. */
    size_t i = ns, j = nd;
    while (i > 0 && j > 0) {
        int c = strcmp(ss[i - 1], ds[j - 1]);
        if (c > 0) {
            i--;
        } else if (c < 0) {
            j--;
        } else {
            json_t *h = NULL;
            const char *pol = NULL;
            if (cf_manifest_header(src, ss[i - 1], &h) == 0)
                pol = json_string_value(json_object_get(h, "policy"));
            int match = pol && (!policy || strcmp(pol, policy) == 0);
            json_decref(h);
            cf_error_clear();
            if (match) {
                seed_from_set(m, src, dst, ss[i - 1]);
                break;
            }
            i--;
            j--;
        }
    }
out:
    cf_strv_free(ss, ns);
    cf_strv_free(ds, nd);
}

/*
 * A set is copied by a pipeline. This thread reads the source manifest
 * ahead (a ring of at most AHEAD_ENTRIES entries, AHEAD_CHUNKS chunks) and
 * names each chunk the destination lacks to the fetch planner, which reads
 * them in ranged reads on the source target's connections. Worker threads
 * take the chunks as they arrive, identify them for the destination,
 * compress, encrypt and store them; this thread adds each entry to the new
 * manifest, in order, once its chunks are stored.
 */
#define COPY_WINDOW (16u << 20)
#define AHEAD_ENTRIES 1024
#define AHEAD_CHUNKS 8192
#define NO_SEQ UINT64_MAX

typedef struct aentry {
    cf_entry e;
    uint64_t *seq;  /* per chunk: fetch sequence number, NO_SEQ: not needed */
    size_t pending; /* chunks not stored yet */
} aentry;

typedef struct job {
    aentry *a;
    size_t i;
} job;

typedef struct cpipe {
    cf_repo *dst;
    cf_fetch *f;
    const cf_copy_ids *ids; /* earlier sets' chunks (read only here) */
    id_pair *stored;        /* this set's chunks stored, for the map */
    size_t nstored, stored_cap;
    pthread_mutex_t mu;
    pthread_cond_t more, done;
    aentry e[AHEAD_ENTRIES];
    size_t head, n, nchunks;
    job *jobs; /* FIFO ring of chunks to store */
    size_t jcap, jhead, jn;
    int closing, failed;
    char *err; /* the first worker error */
    uint64_t sent;
} cpipe;

static void job_push_locked(cpipe *c, aentry *a, size_t i)
{
    if (c->jn == c->jcap) {
        size_t cap = c->jcap ? 2 * c->jcap : 1024;
        job *j = cf_malloc(cap * sizeof *j);
        for (size_t k = 0; k < c->jn; k++)
            j[k] = c->jobs[(c->jhead + k) % c->jcap];
        free(c->jobs);
        c->jobs = j;
        c->jcap = cap;
        c->jhead = 0;
    }
    c->jobs[(c->jhead + c->jn++) % c->jcap] = (job){a, i};
}

/* Read the next entry into the ring and name the chunks the destination
 * lacks (have: it has the ones with the same id): 1, 0 at the end of the
 * manifest, -1 on error. */
static int ahead_push(cpipe *c, cf_mreader *m, int same)
{
    aentry *a = &c->e[(c->head + c->n) % AHEAD_ENTRIES];
    int rc = cf_manifest_next(m, &a->e);
    if (rc != 1)
        return rc;
    size_t nc = a->e.nchunks;
    a->seq = cf_malloc((nc ? nc : 1) * sizeof *a->seq);
    a->pending = 0;
    for (size_t i = 0; i < nc; i++) {
        const cf_id *known = same ? NULL : ids_find(c->ids, &a->e.chunks[i]);
        if (same && cf_repo_has(c->dst, &a->e.chunks[i])) {
            a->seq[i] = NO_SEQ;
        } else if (known && cf_repo_has(c->dst, known)) {
            a->e.chunks[i] = *known; /* stored by an earlier set of this run */
            a->seq[i] = NO_SEQ;
        } else {
            a->seq[i] = cf_fetch_want(c->f, &a->e.chunks[i], 1);
            a->pending++;
        }
    }
    pthread_mutex_lock(&c->mu);
    c->n++;
    c->nchunks += nc;
    for (size_t i = 0; i < nc; i++)
        if (a->seq[i] != NO_SEQ)
            job_push_locked(c, a, i);
    pthread_cond_broadcast(&c->more);
    pthread_mutex_unlock(&c->mu);
    return 1;
}

static void ahead_pop(cpipe *c)
{
    aentry *a = &c->e[c->head];
    pthread_mutex_lock(&c->mu);
    c->nchunks -= a->e.nchunks;
    c->head = (c->head + 1) % AHEAD_ENTRIES;
    c->n--;
    pthread_mutex_unlock(&c->mu);
    cf_entry_clear(&a->e);
    free(a->seq);
    a->seq = NULL;
}

static void *store_worker(void *arg)
{
    cpipe *c = arg;
    cf_buf buf = {0};
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->jn && !c->closing)
            pthread_cond_wait(&c->more, &c->mu);
        if (!c->jn)
            break;
        job j = c->jobs[c->jhead];
        c->jhead = (c->jhead + 1) % c->jcap;
        c->jn--;
        if (cf_cancel_flag && !c->failed) {
            c->failed = 1; /* entries must not be added with chunks not stored */
            c->err = cf_strdup("cancelled");
        }
        int failed = c->failed;
        pthread_mutex_unlock(&c->mu);
        aentry *a = j.a;
        uint64_t added_bytes = 0;
        int rc = 0;
        if (failed) {
            cf_fetch_skip(c->f, a->seq[j.i], 1);
            rc = 1;
        } else if (cf_fetch_take(c->f, a->seq[j.i], &buf) != 0) {
            cf_error_prefix("%s", a->e.path);
            rc = -1;
        } else {
            cf_id nid;
            cf_repo_hash(c->dst, buf.data, buf.len, &nid);
            int added = 0;
            if (cf_repo_put_chunk(c->dst, &nid, buf.data, buf.len, &added) != 0) {
                rc = -1;
            } else {
                if (c->ids && memcmp(&nid, &a->e.chunks[j.i], sizeof nid) != 0) {
                    pthread_mutex_lock(&c->mu);
                    if (c->nstored < COPY_MAP_MAX)
                        pairs_push(&c->stored, &c->nstored, &c->stored_cap, &a->e.chunks[j.i],
                                   &nid);
                    pthread_mutex_unlock(&c->mu);
                }
                a->e.chunks[j.i] = nid;
                if (added)
                    added_bytes = buf.len;
                cf_progress_add(buf.len, 0);
            }
        }
        pthread_mutex_lock(&c->mu);
        if (rc < 0 && !c->failed) {
            c->failed = 1;
            c->err = cf_strdup(cf_error());
        }
        c->sent += added_bytes;
        a->pending--;
        pthread_cond_broadcast(&c->done);
    }
    pthread_mutex_unlock(&c->mu);
    cf_buf_free(&buf);
    return NULL;
}

/* Wait until the oldest entry's chunks are stored: 0, or -1 when a worker
 * failed (or the run was cancelled). */
static int head_stored(cpipe *c)
{
    aentry *a = &c->e[c->head];
    pthread_mutex_lock(&c->mu);
    while (a->pending && !c->failed)
        pthread_cond_wait(&c->done, &c->mu);
    int rc = c->failed ? -1 : 0;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int cf_copy_set(cf_repo *src, cf_repo *dst, const char *id, cf_copy_ids *ids, int *copied,
                uint64_t *bytes_sent)
{
    *copied = 0;
    char *key = cf_asprintf("sets/%s", id);
    coffer_object_stat st;
    if (cf_store_stat(cf_repo_store(dst), key, &st) == 0) {
        free(key);
        copy_proofs(src, dst, id); /* rehearsals since the last copy */
        return 0;                  /* already there */
    }
    free(key);
    cf_error_clear();
    cf_mreader *m;
    json_t *h;
    if (cf_manifest_open(src, id, &m, &h) != 0)
        return -1;
    cf_mwriter *w;
    if (cf_manifest_begin(&w) != 0) {
        cf_manifest_close(m);
        json_decref(h);
        return -1;
    }
    int same = same_ids(src, dst);
    cpipe *c = cf_calloc(1, sizeof *c); /* too large for a thread's stack */
    c->dst = dst;
    c->ids = same ? NULL : ids;
    /* The source's read window: the destination's pack buffers and the
     * workers' chunks come on top, and storing, not reading, sets the
     * pace (a smaller window cost nothing measurable on loopback). */
    c->f = cf_fetch_new(src, COPY_WINDOW);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->more, NULL);
    pthread_cond_init(&c->done, NULL);
    int nw = cf_cpus(1, 8), started = 0;
    pthread_t th[8];
    for (int i = 0; i < nw; i++)
        if (pthread_create(&th[started], NULL, store_worker, c) == 0)
            started++;
    int rc = started ? 1 : cf_fail("copy: cannot start threads"), aborted = 0, eof = 0;
    while (rc == 1) {
        while (!eof && c->n < AHEAD_ENTRIES && c->nchunks < AHEAD_CHUNKS) {
            int got = ahead_push(c, m, same);
            if (got < 0)
                rc = -1;
            if (got <= 0)
                eof = 1;
        }
        if (rc != 1 || !c->n)
            break;
        if (cf_cancel_flag) {
            rc = cf_fail("cancelled");
            break;
        }
        if (head_stored(c) != 0) {
            rc = cf_fail("set %s: %s", id, c->err ? c->err : "cancelled");
            break;
        }
        if (cf_manifest_add(w, &c->e[c->head].e) != 0)
            rc = -1;
        ahead_pop(c);
    }
    if (rc == 1)
        rc = 0;
    pthread_mutex_lock(&c->mu);
    c->closing = 1;
    if (rc != 0)
        c->failed = 1; /* the workers give up what is queued */
    pthread_cond_broadcast(&c->more);
    pthread_mutex_unlock(&c->mu);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    *bytes_sent += c->sent;
    cf_fetch_free(c->f);
    while (c->n)
        ahead_pop(c);
    free(c->jobs);
    free(c->err);
    id_pair *stored = c->stored;
    size_t nstored = c->nstored;
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->more);
    pthread_cond_destroy(&c->done);
    free(c);
    cf_manifest_close(m);
    if (rc == 0)
        rc = cf_repo_flush(dst);
    if (rc == 0) {
        /* same header: the set keeps its id, time and totals */
        rc = cf_manifest_commit(w, dst, id, h);
        if (rc != 0) {
            char *key = cf_asprintf("sets/%s", id);
            rc = cf_repo_commit_failed(dst, key);
            free(key);
            aborted = 1;
        }
    }
    if (rc != 0 && !aborted)
        cf_repo_abort(dst);
    else
        *copied = 1;
    cf_manifest_free(w);
    json_decref(h);
    /* Only a committed set's chunks are sure to stay: an aborted one's
     * packs are removed. */
    for (size_t i = 0; rc == 0 && ids && i < nstored; i++)
        ids_add(ids, &stored[i].src, &stored[i].dst);
    free(stored);
    if (rc == 0)
        copy_proofs(src, dst, id);
    return rc == 0 ? 0 : -1;
}
