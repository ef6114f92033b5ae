#include "engine/check.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/immutable.h"
#include "engine/manifest.h"
#include "engine/progress.h"
#include "engine/setcheck.h"
#include "plugin/host.h"
#include "util/util.h"

/* ---- A small set of ids with a verdict each -------------------------------
 * Suspect chunks (a blob failed in a pack) and suspect packs (missing,
 * truncated, unreadable table) are few; a chunk a set needs that is
 * suspect is re-read through the index to get the authoritative answer
 * (a damaged blob may be an unused duplicate). */
typedef struct idslot {
    cf_id id;
    int used;
    int state; /* 0 unknown, 1 ok, 2 bad */
    char *msg;
} idslot;

typedef struct idset {
    idslot *v;
    size_t cap, n;
} idset;

static uint64_t id_h(const cf_id *id)
{
    uint64_t h;
    memcpy(&h, id->b, sizeof h);
    return h * 0x9E3779B97F4A7C15ull; /* pack ids and ids are random already; spread anyway */
}

static idslot *idset_find(idset *s, const cf_id *id)
{
    if (!s->cap)
        return NULL;
    for (size_t i = id_h(id) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (!s->v[i].used)
            return NULL;
        if (memcmp(s->v[i].id.b, id->b, CF_ID_LEN) == 0)
            return &s->v[i];
    }
}

static idslot *idset_add(idset *s, const cf_id *id)
{
    idslot *e = idset_find(s, id);
    if (e)
        return e;
    if ((s->n + 1) * 2 > s->cap) {
        idset old = *s;
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = cf_calloc(s->cap, sizeof *s->v);
        s->n = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.v[i].used)
                *idset_add(s, &old.v[i].id) = old.v[i];
        free(old.v);
    }
    size_t i = id_h(id) & (s->cap - 1);
    while (s->v[i].used)
        i = (i + 1) & (s->cap - 1);
    s->v[i] = (idslot){.id = *id, .used = 1};
    s->n++;
    return &s->v[i];
}

static void idset_free(idset *s)
{
    for (size_t i = 0; i < s->cap; i++)
        free(s->v[i].msg);
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* ---- Context ------------------------------------------------------------------ */

typedef struct cctx {
    cf_run *run;
    pthread_mutex_t mu;
    size_t nproblems;
    json_t *problems, *orphans;
    idset bad_chunks, bad_packs, verdicts;
    int bad_index; /* an index object is damaged: missing chunks are expected */
    /* pack reading */
    cf_pack_list *packs;
    size_t *order, norder, next;
    uint64_t bytes_read;
    cf_buf buf;
    const char *policy;
    cf_damaged_chunk *dchunks; /* damaged copies: chunk and the pack holding it */
    size_t ndchunks;
    char *fix_text[5]; /* per fix kind, the first one seen */
    json_t *fix_sets;  /* sets with unreadable data (object: id -> true) */
} cctx;

/* What repairs a problem, by what it names. */
enum { FIX_PACK, FIX_INDEX, FIX_SET, FIX_MANIFEST, FIX_OTHER };

static char *fix_for(cctx *c, const char *set, const char *object, int *kind)
{
    const char *p = c->policy ? c->policy : "POLICY";
    char *s = NULL;
    int k;
    if (object && strncmp(object, "data/", 5) == 0) {
        k = FIX_PACK;
        s = cf_asprintf("coffer check -p %s --rebuild-index, then coffer backup -p %s (stores the "
                        "lost chunks again while the source still has them); a set that still "
                        "misses data: coffer restore -p %s --set SET --to DIR --salvage",
                        p, p, p);
    } else if (object && strncmp(object, "index/", 6) == 0) {
        k = FIX_INDEX;
        s = cf_asprintf("coffer check -p %s --rebuild-index", p);
    } else if (object && strncmp(object, "sets/", 5) == 0) {
        k = FIX_MANIFEST;
        s = cf_asprintf("coffer forget -p %s %s (its manifest is unreadable; other sets are not "
                        "affected)",
                        p, set ? set : object + 5);
    } else if (set) {
        k = FIX_SET;
        s = cf_asprintf("coffer backup -p %s (stores the missing chunks again while the source "
                        "still has them), or coffer forget -p %s %s",
                        p, p, set);
    } else {
        k = FIX_OTHER;
        s = cf_asprintf("no command repairs this: see docs/repair.md");
    }
    *kind = k;
    return s;
}

/* Messages from lower layers often start with what the line already
 * names ("chunk X in pack Y: ...", "sets/Z: ..."): drop that. */
static const char *strip_known(const char *msg, const char *object, const char *chunk)
{
    for (int again = 1; again;) {
        again = 0;
        size_t n;
        if (chunk && strncmp(msg, "chunk ", 6) == 0 && strncmp(msg + 6, chunk, 64) == 0) {
            msg += 6 + 64;
            if (object && strncmp(msg, " in pack ", 9) == 0 &&
                !strncmp(msg + 9, object, strlen(object)))
                msg += 9 + strlen(object);
            else if (object && strncmp(msg, " in ", 4) == 0 &&
                     !strncmp(msg + 4, object, strlen(object)))
                msg += 4 + strlen(object);
            if (*msg == ':')
                msg++;
            while (*msg == ' ')
                msg++;
            again = 1;
        }
        if (object && (n = strlen(object)) && strncmp(msg, object, n) == 0 && msg[n] == ':') {
            msg += n + 1;
            while (*msg == ' ')
                msg++;
            again = 1;
        }
        if (object && strncmp(msg, "pack ", 5) == 0 && (n = strlen(object)) &&
            strncmp(msg + 5, object, n) == 0 && msg[5 + n] == ':') {
            msg += 5 + n + 1;
            while (*msg == ' ')
                msg++;
            again = 1;
        }
    }
    return msg;
}

#define MAX_LISTED 1000 /* problems kept in the report; all are counted */

/* One line: "set S: PATH: chunk C in OBJECT: message". */
static void add_problem(cctx *c, const char *set, const char *path, const char *object,
                        const char *chunk, const char *msg)
{
    msg = strip_known(msg, object, chunk);
    char line[4096];
    size_t n = 0;
    line[0] = 0;
#define ADD(...) n += (size_t)snprintf(line + n, n < sizeof line ? sizeof line - n : 0, __VA_ARGS__)
    if (set)
        ADD("set %s", set);
    if (path)
        ADD("%s%s", n ? ": " : "", path);
    if (chunk)
        ADD("%schunk %s%s%s", n ? ": " : "", chunk, object ? " in " : "", object ? object : "");
    else if (object)
        ADD("%s%s", n ? ": " : "", object);
#undef ADD
    pthread_mutex_lock(&c->mu);
    c->nproblems++;
    int listed = c->nproblems <= MAX_LISTED;
    if (listed) {
        json_t *j = json_object();
        if (set)
            json_object_set_new(j, "set", json_string(set));
        if (path)
            json_object_set_new(j, "path", json_string(path));
        if (object)
            json_object_set_new(j, "object", json_string(object));
        if (chunk)
            json_object_set_new(j, "chunk", json_string(chunk));
        json_object_set_new(j, "problem", json_string(msg));
        int kind;
        char *fix = fix_for(c, set, object, &kind);
        json_object_set_new(j, "fix", json_string(fix));
        if (!c->fix_text[kind])
            c->fix_text[kind] = fix;
        else
            free(fix);
        json_array_append_new(c->problems, j);
    }
    if (set)
        json_object_set_new(c->fix_sets, set, json_true());
    pthread_mutex_unlock(&c->mu);
    if (listed)
        cf_log(CF_LOG_ERROR, "%s: %s", line, msg);
    else if (c->nproblems == MAX_LISTED + 1)
        cf_log(CF_LOG_ERROR, "more than %d problems: the rest are only counted", MAX_LISTED);
}

/* Problems found in repository objects (structure and pack reads). */
static void object_problem(void *ud, const char *object, const char *chunk, const char *msg)
{
    cctx *c = ud;
    add_problem(c, NULL, NULL, object, chunk, msg);
    pthread_mutex_lock(&c->mu);
    if (object && strncmp(object, "index/", 6) == 0)
        c->bad_index = 1;
    cf_id id, pk;
    if (chunk && cf_id_parse(chunk, &id) == 0) {
        idset_add(&c->bad_chunks, &id);
        if (object && strncmp(object, "data/", 5) == 0 && strlen(object) == 72 &&
            cf_unhex(object + 8, pk.b, CF_ID_LEN) == 0) {
            c->dchunks = cf_realloc(c->dchunks, (c->ndchunks + 1) * sizeof *c->dchunks);
            c->dchunks[c->ndchunks++] = (cf_damaged_chunk){id, pk};
        }
    } else if (object && strncmp(object, "data/", 5) == 0 && strlen(object) == 72 &&
               cf_unhex(object + 8, id.b, CF_ID_LEN) == 0)
        idset_add(&c->bad_packs, &id);
    pthread_mutex_unlock(&c->mu);
}

int cf_check_parse_subset(const char *s, double *pct)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || (*end && strcmp(end, "%") != 0) || !(v > 0) || v > 100 || isnan(v))
        return cf_fail("--read-data-subset: expected a percentage like 10%% (0 < N <= 100), got "
                       "'%s'",
                       s);
    *pct = v;
    return 0;
}

/* ---- Reading packs ---------------------------------------------------------- */

static void *reader(void *arg)
{
    cctx *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        size_t k = c->next < c->norder && !cf_cancel_flag ? c->order[c->next++] : SIZE_MAX;
        pthread_mutex_unlock(&c->mu);
        if (k == SIZE_MAX)
            break;
        const char *key = c->packs->keys[k];
        long n = cf_repo_check_pack(c->run->repo, key, object_problem, c);
        if (n < 0)
            object_problem(c, key, NULL, cf_error());
        pthread_mutex_lock(&c->mu);
        c->bytes_read += c->packs->sizes[k];
        pthread_mutex_unlock(&c->mu);
        cf_progress_add(c->packs->sizes[k], 1);
    }
    return NULL;
}

static int read_packs(cctx *c, const cf_check_opts *o, json_t *rep)
{
    cf_pack_list pl;
    if (cf_repo_indexed_packs(c->run->repo, &pl) != 0)
        return -1;
    c->packs = &pl;
    c->order = cf_malloc((pl.n ? pl.n : 1) * sizeof *c->order);
    for (size_t i = 0; i < pl.n; i++)
        c->order[i] = i;
    c->norder = pl.n;
    if (!o->read_data && o->subset_pct > 0) {
        /* A different random share every run (Fisher-Yates on the OS
         * CSPRNG): over many runs every pack gets read. */
        for (size_t i = pl.n; i > 1; i--) {
            uint64_t x;
            cf_random(&x, sizeof x);
            size_t j = (size_t)(x % i), t = c->order[i - 1];
            c->order[i - 1] = c->order[j];
            c->order[j] = t;
        }
        c->norder = (size_t)ceil((double)pl.n * o->subset_pct / 100.0);
        if (c->norder > pl.n)
            c->norder = pl.n;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < c->norder; i++)
        total += pl.sizes[c->order[i]];
    /* One reader per CPU (at most 4) keeps the decryption, decompression
     * and hashing busy; more, up to the target's `connections`, keep reads
     * in flight while the CPUs work (object storage: one more than the
     * CPUs, and more the farther the bucket, cf_repo_connections). */
    int nt = o->threads;
    if (nt <= 0) {
        nt = cf_cpus(1, 4);
        int conns = cf_repo_connections(c->run->repo);
        if (conns > nt)
            nt = conns;
    }
    if ((size_t)nt > c->norder)
        nt = c->norder ? (int)c->norder : 1;
    double t0 = cf_now();
    cf_progress_start("check", total, c->run->no_progress);
    pthread_t *th = cf_calloc((size_t)nt, sizeof *th);
    int started = 0;
    for (int i = 0; i < nt; i++)
        if (pthread_create(&th[i], NULL, reader, c) == 0)
            started++;
        else
            break;
    if (!started)
        reader(c);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    free(th);
    double dt = cf_now() - t0;
    cf_progress_stop();
    char b[32];
    cf_log(CF_LOG_INFO, "read %zu of %zu pack(s), %s in %.1f s (%.0f MiB/s)", c->norder, pl.n,
           cf_human_bytes(c->bytes_read, b, sizeof b), dt,
           dt > 0 ? (double)c->bytes_read / dt / 1048576.0 : 0.0);
    json_object_set_new(rep, "packs_read", json_integer((json_int_t)c->norder));
    json_object_set_new(rep, "packs_total", json_integer((json_int_t)pl.n));
    json_object_set_new(rep, "bytes_read", json_integer((json_int_t)c->bytes_read));
    json_object_set_new(rep, "read_seconds", json_real(dt));
    free(c->order);
    c->order = NULL;
    c->packs = NULL;
    cf_pack_list_free(&pl);
    return cf_cancel_flag ? cf_fail("cancelled") : 0;
}

/* ---- Manifests ----------------------------------------------------------------- */

#define PER_SET 20 /* files listed per set; the rest are counted */

/* NULL if a set can rely on the chunk, else why not. */
static const char *chunk_verdict(cctx *c, const cf_id *id, const cf_chunk_state *st)
{
    if (st->state == 2)
        return "damaged according to an earlier check (state/damaged); the next backup stores "
               "it again";
    if (st->state == 0)
        return c->bad_index ? "not in the repository index (an index object is damaged, see "
                              "above; `coffer check --rebuild-index` rebuilds it from the packs)"
                            : "not in the repository index: no pack holds it";
    if (!c->bad_chunks.n && !c->bad_packs.n)
        return NULL;
    if (!idset_find(&c->bad_chunks, id) && !idset_find(&c->bad_packs, &st->pack))
        return NULL;
    /* Sets are checked in parallel: one verdict per chunk, under mu. */
    pthread_mutex_lock(&c->mu);
    idslot *v = idset_add(&c->verdicts, id);
    if (!v->state) {
        /* Authoritative: read it where the index says it is. */
        if (cf_repo_get_chunk(c->run->repo, id, &c->buf) == 0) {
            v->state = 1;
        } else {
            v->state = 2;
            v->msg = cf_strdup(cf_error());
        }
    }
    const char *why = v->state == 1 ? NULL : v->msg; /* slots move, messages do not */
    pthread_mutex_unlock(&c->mu);
    return why;
}

/* Problems of one set, kept until the set's turn comes: sets are checked
 * in parallel and reported in order. */
typedef struct set_problem {
    char *path, *object, *chunk, *msg;
} set_problem;

typedef struct set_result {
    const char *id;
    set_problem *v;
    size_t n;
    uint64_t entries;
} set_result;

static void set_add(set_result *sr, const char *path, const char *object, const char *chunk,
                    const char *msg)
{
    sr->v = cf_realloc(sr->v, (sr->n + 1) * sizeof *sr->v);
    set_problem *p = &sr->v[sr->n++];
    p->path = path ? cf_strdup(path) : NULL;
    p->object = object ? cf_strdup(object) : NULL;
    p->chunk = chunk ? cf_strdup(chunk) : NULL;
    p->msg = cf_strdup(msg);
}

static void set_flush(cctx *c, set_result *sr)
{
    for (size_t i = 0; i < sr->n; i++) {
        set_problem *p = &sr->v[i];
        add_problem(c, sr->id, p->path, p->object, p->chunk, p->msg);
        free(p->path);
        free(p->object);
        free(p->chunk);
        free(p->msg);
    }
    free(sr->v);
    sr->v = NULL;
    sr->n = 0;
}

/* Entries of a manifest waiting for their chunks to be looked up
 * together. */
#define BATCH_CHUNKS 65536
#define BATCH_ENTRIES 4096

typedef struct batch {
    cf_entry *v;
    size_t n, cap, nchunks;
    size_t files_bad;
} batch;

static void check_file(cctx *c, set_result *sr, batch *b, const char *obj, const cf_entry *e,
                       const cf_chunk_state *st)
{
    uint64_t sum = 0;
    size_t nbad = 0, first = 0;
    const char *firstmsg = NULL;
    for (size_t i = 0; i < e->nchunks; i++) {
        if (st[i].state)
            sum += st[i].raw;
        const char *why = chunk_verdict(c, &e->chunks[i], &st[i]);
        if (why && !nbad++) {
            firstmsg = why;
            first = i;
        }
    }
    if (nbad && ++b->files_bad > PER_SET)
        return; /* counted, not listed: one damaged index object can touch
                 * every file of every set */
    if (nbad) {
        char msg[2600], fhex[2 * CF_ID_LEN + 1], fpack[CF_PACK_KEY_LEN + 1] = "";
        if (nbad > 1)
            snprintf(msg, sizeof msg, "%zu of %zu chunks unusable; first: %s", nbad, e->nchunks,
                     firstmsg);
        else
            snprintf(msg, sizeof msg, "%s", firstmsg);
        cf_id_hex(&e->chunks[first], fhex);
        if (st[first].state)
            cf_pack_key(&st[first].pack, fpack);
        set_add(sr, e->path, fpack[0] ? fpack : NULL, fhex, msg);
    } else if (sum != e->size) {
        set_add(sr, e->path, obj, NULL, "chunk sizes do not add up to the recorded size");
    }
}

/* The batch's chunks in one sorted pass over the index, then each entry
 * in manifest order (obj: the set's manifest, named in problems). */
static void check_batch(cctx *c, set_result *sr, batch *b, const char *obj)
{
    cf_id *ids = cf_malloc((b->nchunks ? b->nchunks : 1) * sizeof *ids);
    cf_chunk_state *st = cf_malloc((b->nchunks ? b->nchunks : 1) * sizeof *st);
    size_t k = 0;
    for (size_t i = 0; i < b->n; i++)
        if (b->v[i].kind == CF_ENT_FILE || b->v[i].kind == CF_ENT_STREAM)
            for (size_t j = 0; j < b->v[i].nchunks; j++)
                ids[k++] = b->v[i].chunks[j];
    cf_repo_chunk_states(c->run->repo, ids, k, st);
    k = 0;
    for (size_t i = 0; i < b->n; i++) {
        cf_entry *e = &b->v[i];
        if (cf_entry_check(e) != 0)
            set_add(sr, NULL, obj, NULL, cf_error());
        if (e->kind == CF_ENT_FILE || e->kind == CF_ENT_STREAM) {
            check_file(c, sr, b, obj, e, st + k);
            k += e->nchunks;
        }
        cf_entry_clear(e);
    }
    b->n = b->nchunks = 0;
    free(st);
    free(ids);
}

static void check_set(cctx *c, set_result *sr)
{
    cf_mreader *m;
    json_t *h;
    char obj[300];
    snprintf(obj, sizeof obj, "sets/%s", sr->id);
    if (cf_manifest_open(c->run->repo, sr->id, &m, &h) != 0) {
        set_add(sr, NULL, obj, NULL, cf_error());
        return;
    }
    json_decref(h);
    batch b = {0};
    int rc;
    for (;;) {
        if (b.n == b.cap) {
            b.cap = b.cap ? b.cap * 2 : 256;
            b.v = cf_realloc(b.v, b.cap * sizeof *b.v);
        }
        cf_entry *e = &b.v[b.n];
        if ((rc = cf_manifest_next(m, e)) != 1)
            break;
        sr->entries++;
        b.n++;
        if (e->kind == CF_ENT_FILE || e->kind == CF_ENT_STREAM)
            b.nchunks += e->nchunks;
        if (b.nchunks >= BATCH_CHUNKS || b.n >= BATCH_ENTRIES)
            check_batch(c, sr, &b, obj);
        if (cf_cancel_flag) {
            rc = cf_fail("cancelled");
            break;
        }
    }
    char *err = rc < 0 ? cf_strdup(cf_error()) : NULL;
    check_batch(c, sr, &b, obj); /* what was read before an error is still checked */
    free(b.v);
    if (err)
        set_add(sr, NULL, obj, NULL, err);
    free(err);
    cf_manifest_close(m);
    if (b.files_bad > PER_SET) {
        char msg[200];
        snprintf(msg, sizeof msg, "%zu more file(s) with unusable chunks (not listed)",
                 b.files_bad - PER_SET);
        set_add(sr, NULL, NULL, NULL, msg);
    }
}

typedef struct set_queue {
    cctx *c;
    set_result *r;
    size_t n, next;
} set_queue;

static void *set_worker(void *arg)
{
    set_queue *q = arg;
    for (;;) {
        pthread_mutex_lock(&q->c->mu);
        size_t k = q->next < q->n && !cf_cancel_flag ? q->next++ : SIZE_MAX;
        pthread_mutex_unlock(&q->c->mu);
        if (k == SIZE_MAX)
            return NULL;
        check_set(q->c, &q->r[k]);
    }
}

/* Every set's manifest against the index, on as many threads as the
 * pack reading uses; problems come out in set order. */
static uint64_t check_sets(cctx *c, char **ids, size_t n, int nt)
{
    set_queue q = {c, cf_calloc(n ? n : 1, sizeof *q.r), n, 0};
    for (size_t i = 0; i < n; i++)
        q.r[i].id = ids[i];
    if (nt <= 0) {
        nt = cf_cpus(1, 4);
    }
    if ((size_t)nt > n)
        nt = n ? (int)n : 1;
    pthread_t *th = cf_calloc((size_t)nt, sizeof *th);
    int started = 0;
    for (int i = 1; i < nt; i++)
        if (pthread_create(&th[started], NULL, set_worker, &q) == 0)
            started++;
    set_worker(&q);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    free(th);
    uint64_t entries = 0;
    for (size_t i = 0; i < n; i++) {
        entries += q.r[i].entries;
        set_flush(c, &q.r[i]);
    }
    free(q.r);
    return entries;
}

/* One line per kind of fix; set-level ones name every affected set. */
static json_t *fixes_json(cctx *c)
{
    json_t *a = json_array();
    for (int k = 0; k < (int)(sizeof c->fix_text / sizeof *c->fix_text); k++) {
        if (!c->fix_text[k])
            continue;
        if (k != FIX_SET) {
            json_array_append_new(a, json_string(c->fix_text[k]));
            continue;
        }
        const char *p = c->policy ? c->policy : "POLICY", *id;
        json_t *v;
        size_t len = 0, nsets = json_object_size(c->fix_sets);
        json_object_foreach(c->fix_sets, id, v) len += strlen(id) + 1;
        char *ids = cf_calloc(len + 1, 1);
        json_object_foreach(c->fix_sets, id, v)
        {
            if (ids[0])
                strcat(ids, " ");
            strcat(ids, id);
        }
        char *s = cf_asprintf("coffer backup -p %s (stores the missing chunks again while the "
                              "source still has them), or remove the affected set%s: coffer "
                              "forget -p %s %s",
                              p, nsets == 1 ? "" : "s", p, ids);
        json_array_append_new(a, json_string(s));
        free(s);
        free(ids);
    }
    return a;
}

/* state/damaged: the packs and chunks found missing or damaged now. A check
 * that did not read the packs cannot clear chunks an earlier --read-data
 * found damaged: those stay. Failing to write it is not a check failure. */
static void record_damage(cctx *c, const cf_check_opts *o)
{
    cf_repo *r = c->run->repo;
    const cf_damage *old = cf_repo_damage(r);
    cf_damage d = {0};
    size_t cap = c->bad_packs.n + c->ndchunks + (o->read_data ? 0 : old->nchunks) + 1;
    d.packs = cf_malloc(cap * sizeof *d.packs);
    d.chunks = cf_malloc(cap * sizeof *d.chunks);
    for (size_t i = 0; i < c->bad_packs.cap; i++)
        if (c->bad_packs.v[i].used)
            d.packs[d.npacks++] = c->bad_packs.v[i].id;
    for (size_t i = 0; i < c->ndchunks; i++)
        d.chunks[d.nchunks++] = c->dchunks[i];
    if (!o->read_data)
        for (size_t i = 0; i < old->nchunks; i++)
            d.chunks[d.nchunks++] = old->chunks[i];
    int had = old->npacks || old->nchunks || old->time[0];
    if ((d.npacks || d.nchunks || had) && cf_repo_damage_store(r, &d) != 0)
        cf_log(CF_LOG_WARN, "cannot record the damage found: %s", cf_error());
    else if (d.npacks || d.nchunks)
        cf_log(CF_LOG_INFO,
               "recorded %zu damaged pack(s) and %zu chunk(s) in %s: the next backup stores "
               "their chunks again",
               d.npacks, d.nchunks, CF_DAMAGE_KEY);
    else if (had)
        cf_log(CF_LOG_INFO, "cleared the damage record %s", CF_DAMAGE_KEY);
    cf_damage_free(&d);
}

int cf_check(cf_run *run, const cf_check_opts *o, json_t **report)
{
    cctx c = {.run = run,
              .problems = json_array(),
              .orphans = json_array(),
              .policy = o->policy,
              .fix_sets = json_object()};
    pthread_mutex_init(&c.mu, NULL);
    json_t *rep = json_object();
    int rc = CF_EXIT_FAILED;

    long sp = cf_repo_check_structure(run->repo, object_problem, &c);
    if (sp < 0)
        goto out;

    cf_pack_list orph;
    int64_t *mt = NULL;
    if (cf_repo_orphan_packs(run->repo, &orph, &mt) != 0)
        goto out;
    uint64_t obytes = 0;
    for (size_t i = 0; i < orph.n; i++) {
        char b[32];
        obytes += orph.sizes[i];
        json_array_append_new(c.orphans,
                              json_pack("{s:s,s:I,s:I}", "object", orph.keys[i], "size",
                                        (json_int_t)orph.sizes[i], "mtime", (json_int_t)mt[i]));
        cf_log(CF_LOG_WARN,
               "%s: pack not in any index (%s): left by an interrupted backup or prune, or "
               "written by a backup running now; harmless, `coffer prune` removes it",
               orph.keys[i], cf_human_bytes(orph.sizes[i], b, sizeof b));
    }
    cf_pack_list_free(&orph);
    free(mt);

    if ((o->read_data || o->subset_pct > 0) && read_packs(&c, o, rep) != 0)
        goto out;

    char **ids;
    size_t n;
    if (cf_sets_list(run->repo, &ids, &n) != 0)
        goto out;
    uint64_t entries = check_sets(&c, ids, n, o->threads);
    cf_strv_free(ids, n);
    if (cf_cancel_flag) {
        cf_fail("cancelled");
        goto out;
    }
    cf_log(CF_LOG_INFO, "%zu set(s), %llu entries checked", n, (unsigned long long)entries);
    json_object_set_new(rep, "sets", json_integer((json_int_t)n));
    json_object_set_new(rep, "entries", json_integer((json_int_t)entries));
    json_object_set_new(rep, "orphan_bytes", json_integer((json_int_t)obytes));
    /* An immutable target: every object's lock against what the sets need. */
    uint64_t nlock = 0;
    if (run->target->immutable) {
        json_t *lp = json_array();
        uint64_t before = run->retention_requests;
        int na = cf_immutable_audit(run, lp, o->policy ? o->policy : run->policy->file);
        if (na < 0) {
            json_decref(lp);
            goto out;
        }
        nlock = (uint64_t)na;
        json_object_set_new(rep, "retention",
                            json_pack("{s:o,s:I,s:I,s:I}", "problems", lp, "locked_until",
                                      (json_int_t)run->lock_epoch, "lock_period",
                                      (json_int_t)run->lock_period, "requests",
                                      (json_int_t)(run->retention_requests - before)));
        if (nlock)
            cf_log(CF_LOG_WARN, "retention: %llu object(s) not locked as the sets need (above)",
                   (unsigned long long)nlock);
    }
    json_object_set_new(rep, "problem_count", json_integer((json_int_t)(c.nproblems + nlock)));
    rc = c.nproblems || nlock ? CF_EXIT_PROBLEMS : CF_EXIT_OK;
    record_damage(&c, o);
out:
    json_object_set_new(rep, "fixes", fixes_json(&c));
    json_object_set(rep, "problems", c.problems);
    json_object_set(rep, "orphans", c.orphans);
    json_decref(c.problems);
    json_decref(c.orphans);
    *report = rep;
    for (size_t i = 0; i < sizeof c.fix_text / sizeof *c.fix_text; i++)
        free(c.fix_text[i]);
    json_decref(c.fix_sets);
    free(c.dchunks);
    idset_free(&c.bad_chunks);
    idset_free(&c.bad_packs);
    idset_free(&c.verdicts);
    cf_buf_free(&c.buf);
    pthread_mutex_destroy(&c.mu);
    return rc;
}
