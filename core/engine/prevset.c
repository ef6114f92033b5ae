/*
 * The previous set, streamed in walk order (see prevset.h).
 */
#include "engine/prevset.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/files.h"
#include "engine/manifest.h"
#include "util/util.h"

/* Parsed entries handed over in batches, so the two threads meet once
 * per batch rather than once per file. A batch also closes at
 * BATCH_CHUNKS chunk ids (1 MiB), so a set of large files queues a few
 * megabytes, not BATCHES x BATCH files' chunk lists. */
#define BATCH 512
#define BATCHES 4
#define BATCH_CHUNKS 32768
/* A file's line up to this long is kept as read (a small file's: what
 * an unchanged file's new line is, copied rather than generated again). */
#define LINE_KEPT 2048

typedef struct batch {
    cf_entry e[BATCH];
    uint8_t stored[BATCH]; /* every chunk of e[i] is in the repository */
    uint32_t line[BATCH], line_len[BATCH]; /* e[i]'s line in lines (line_len 0: none) */
    char *lines;
    size_t n, chunks, lines_len, lines_cap;
    struct batch *next; /* on the spent list */
} batch;

struct cf_prevset {
    cf_run *run;
    char *id;
    pthread_t thr;
    int running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    batch *q[BATCHES]; /* filled batches, q[qhead..qhead+qn) */
    size_t qhead, qn;
    /* Batches the walk is done with, cleared and filled again by the
     * reader: what the reader allocates is freed on its own thread (a
     * free of another thread's memory waits for that thread's arena). */
    batch *spent;
    int eof;          /* the reader has pushed its last batch */
    int stop;         /* the consumer is gone */
    int header_known; /* bytes is set (or there is no previous set) */
    uint64_t bytes;
    /* Where the walk was when it last waited for the reader: entries
     * before it are passed over unparsed (component and path, under mu). */
    char *front_comp, *front_path;
    _Atomic int has_front;
    /* consumer side */
    batch *cur;
    size_t pos;
    int have_last;
    const cf_entry *last; /* the last entry found */
    int last_stored;
    const char *last_line;
    size_t last_line_len;
    uint64_t looked_up, found;
};

static void batch_clear(batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        cf_entry_clear(&b->e[i]);
    b->n = b->chunks = b->lines_len = 0;
}

static void batch_free(batch *b)
{
    if (!b)
        return;
    batch_clear(b);
    free(b->lines);
    free(b);
}

/* A batch to fill: a spent one cleared, else a new one (reader). */
static batch *batch_get(cf_prevset *ps)
{
    pthread_mutex_lock(&ps->mu);
    batch *b = ps->spent;
    if (b)
        ps->spent = b->next;
    pthread_mutex_unlock(&ps->mu);
    if (!b)
        return cf_calloc(1, sizeof(batch));
    batch_clear(b);
    return b;
}

/* Newest set of this policy written by this host, else the newest of
 * this policy: change detection is about the tree this host walks. */
static char *choose_set(cf_run *run)
{
    char host[256] = "unknown";
    gethostname(host, sizeof host - 1);
    return cf_newest_set(run, host);
}

static void publish_header(cf_prevset *ps, uint64_t bytes)
{
    pthread_mutex_lock(&ps->mu);
    ps->bytes = bytes;
    ps->header_known = 1;
    pthread_cond_broadcast(&ps->cv);
    pthread_mutex_unlock(&ps->mu);
}

/* Queue a batch; 0 when the consumer has gone. */
static int push(cf_prevset *ps, batch *b)
{
    pthread_mutex_lock(&ps->mu);
    while (ps->qn == BATCHES && !ps->stop)
        pthread_cond_wait(&ps->cv, &ps->mu);
    int ok = !ps->stop;
    if (ok) {
        ps->q[(ps->qhead + ps->qn) % BATCHES] = b;
        ps->qn++;
        pthread_cond_broadcast(&ps->cv);
    }
    pthread_mutex_unlock(&ps->mu);
    if (!ok)
        batch_free(b);
    return ok;
}

/* cf_manifest_next_skim: is this entry behind the walk already? Entries
 * of other components are dropped anyway. */
static int passed(void *ud, const cf_entry *head)
{
    cf_prevset *ps = ud;
    const cf_policy *p = ps->run->policy;
    const cf_component *c = cf_policy_component(p, head->component);
    if (!c || c->type != CF_COMP_FILES)
        return 1;
    pthread_mutex_lock(&ps->mu);
    cf_entry front = {.kind = CF_ENT_FILE, .component = ps->front_comp, .path = ps->front_path};
    int behind = cf_walk_cmp(p, head, &front) < 0;
    pthread_mutex_unlock(&ps->mu);
    return behind;
}

/* Whether every chunk of each entry is still stored: the index lookups
 * of the reused chunks, made here off the walking thread (the index
 * takes concurrent readers), a batch at a time. */
static void batch_lookup(cf_prevset *ps, batch *b)
{
    const cf_id *lists[BATCH];
    size_t lens[BATCH];
    for (size_t i = 0; i < b->n; i++) {
        lists[i] = b->e[i].chunks;
        lens[i] = b->e[i].nchunks;
    }
    cf_repo_has_lists(ps->run->repo, lists, lens, b->n, b->stored);
    /* a kept line is only ever used for a file whose chunks are stored */
    for (size_t i = 0; i < b->n; i++)
        if (!b->stored[i])
            b->line_len[i] = 0;
}

static void *reader(void *arg)
{
    cf_prevset *ps = arg;
    const cf_policy *p = ps->run->policy;
    double t0 = cf_now();
    if (!ps->id)
        ps->id = choose_set(ps->run);
    cf_mreader *mr = NULL;
    json_t *h = NULL;
    if (ps->id && cf_manifest_open(ps->run->repo, ps->id, &mr, &h) != 0) {
        cf_log(CF_LOG_WARN, "previous set %s unreadable, reading every file: %s", ps->id,
               cf_error());
        mr = NULL;
    }
    publish_header(ps, h ? (uint64_t)json_integer_value(
                               json_object_get(json_object_get(h, "totals"), "bytes"))
                         : 0);
    if (h)
        json_decref(h);
    uint64_t ents = 0, skimmed = 0;
    int rc = 1;
    batch *b = NULL;
    while (mr) {
        if (!b)
            b = batch_get(ps);
        cf_entry *e = &b->e[b->n];
        rc = cf_manifest_next_skim(mr, e, atomic_load(&ps->has_front) ? passed : NULL, ps);
        if (rc == 2) {
            skimmed++;
            continue;
        }
        if (rc != 1)
            break;
        /* Only what the walk of a files component meets counts (files,
         * directories, symbolic links); everything else would stall the
         * merge (another order, or no place in the walk). */
        const cf_component *c = cf_policy_component(p, e->component);
        if ((e->kind != CF_ENT_FILE && e->kind != CF_ENT_DIR && e->kind != CF_ENT_SYMLINK) ||
            !c || c->type != CF_COMP_FILES) {
            cf_entry_clear(e);
            continue;
        }
        ents++;
        b->line_len[b->n] = 0;
        size_t ll;
        const char *line = cf_manifest_line(mr, &ll);
        if (e->kind == CF_ENT_FILE && line && ll <= LINE_KEPT) {
            if (b->lines_len + ll > b->lines_cap) {
                b->lines_cap = b->lines_cap ? 2 * b->lines_cap : 64 * 1024;
                b->lines = cf_realloc(b->lines, b->lines_cap);
            }
            memcpy(b->lines + b->lines_len, line, ll);
            b->line[b->n] = (uint32_t)b->lines_len;
            b->line_len[b->n] = (uint32_t)ll;
            b->lines_len += ll;
        }
        b->chunks += e->nchunks;
        if (++b->n == BATCH || b->chunks >= BATCH_CHUNKS) {
            batch_lookup(ps, b);
            if (!push(ps, b)) {
                b = NULL;
                break;
            }
            b = NULL;
        }
    }
    if (rc < 0)
        /* What was handed over was read from authenticated frames and is
         * sound; the rest of the files are simply read. */
        cf_log(CF_LOG_WARN, "previous set %s unreadable after %llu entries, reading the rest: %s",
               ps->id, (unsigned long long)ents, cf_error());
    if (b && b->n) {
        batch_lookup(ps, b);
        push(ps, b);
    }
    else
        batch_free(b);
    if (mr) {
        cf_manifest_close(mr);
        cf_log(CF_LOG_DEBUG,
               "change detection against set %s (%llu entries, %llu passed over unparsed as "
               "the walk was past them, read in %.2f s)",
               ps->id, (unsigned long long)ents, (unsigned long long)skimmed, cf_now() - t0);
    }
    pthread_mutex_lock(&ps->mu);
    ps->eof = 1;
    pthread_cond_broadcast(&ps->cv);
    pthread_mutex_unlock(&ps->mu);
    return NULL;
}

cf_prevset *cf_prevset_open(cf_run *run, const char *set_id)
{
    cf_prevset *ps = cf_calloc(1, sizeof *ps);
    ps->run = run;
    ps->id = set_id ? cf_strdup(set_id) : NULL;
    pthread_mutex_init(&ps->mu, NULL);
    pthread_cond_init(&ps->cv, NULL);
    ps->running = pthread_create(&ps->thr, NULL, reader, ps) == 0;
    if (!ps->running) {
        ps->eof = ps->header_known = 1;
        cf_log(CF_LOG_WARN, "cannot start a thread for the previous set: reading every file");
    }
    return ps;
}

/* Next entry of the previous set, NULL at its end. want: the walk's
 * entry, published to the reader if the walk has to wait. */
static const cf_entry *peek(cf_prevset *ps, const cf_entry *want)
{
    if (ps->cur && ps->pos < ps->cur->n)
        return &ps->cur->e[ps->pos];
    pthread_mutex_lock(&ps->mu);
    if (ps->cur) {
        ps->cur->next = ps->spent;
        ps->spent = ps->cur;
    }
    ps->cur = NULL;
    ps->pos = 0;
    if (ps->qn == 0 && !ps->eof &&
        (!ps->front_path || strcmp(ps->front_path, want->path) != 0 ||
         strcmp(ps->front_comp, want->component) != 0)) {
        free(ps->front_comp);
        free(ps->front_path);
        ps->front_comp = cf_strdup(want->component);
        ps->front_path = cf_strdup(want->path);
        atomic_store(&ps->has_front, 1);
    }
    while (ps->qn == 0 && !ps->eof)
        pthread_cond_wait(&ps->cv, &ps->mu);
    if (ps->qn) {
        ps->cur = ps->q[ps->qhead];
        ps->qhead = (ps->qhead + 1) % BATCHES;
        ps->qn--;
        pthread_cond_broadcast(&ps->cv);
    }
    pthread_mutex_unlock(&ps->mu);
    return ps->cur && ps->cur->n ? &ps->cur->e[0] : NULL;
}

const cf_entry *cf_prevset_find(cf_prevset *ps, const cf_entry *e)
{
    if (!ps)
        return NULL;
    if (ps->last && ps->last->path && strcmp(ps->last->path, e->path) == 0 &&
        strcmp(ps->last->component, e->component) == 0)
        return ps->last;
    ps->looked_up++;
    const cf_policy *p = ps->run->policy;
    const cf_entry *x;
    while ((x = peek(ps, e)) != NULL) {
        int c = cf_walk_cmp(p, x, e);
        if (c > 0)
            return NULL;
        if (c == 0 && strcmp(x->component, e->component) == 0 && strcmp(x->path, e->path) == 0) {
            /* kept until the walk passes it: asked again for the same
             * entry, the same answer */
            if (x != ps->last)
                ps->found++;
            ps->last = x;
            ps->last_stored = ps->cur->stored[ps->pos];
            ps->last_line_len = ps->cur->line_len[ps->pos];
            ps->last_line = ps->last_line_len ? ps->cur->lines + ps->cur->line[ps->pos] : NULL;
            return x;
        }
        ps->pos++; /* the walk never comes back */
        ps->last = NULL;
    }
    return NULL;
}

int cf_prevset_stored(const cf_prevset *ps)
{
    return ps && ps->last && ps->last_stored;
}

const char *cf_prevset_line(const cf_prevset *ps, size_t *len)
{
    *len = ps && ps->last && ps->last_line ? ps->last_line_len : 0;
    return *len ? ps->last_line : NULL;
}

uint64_t cf_prevset_bytes(cf_prevset *ps)
{
    if (!ps)
        return 0;
    pthread_mutex_lock(&ps->mu);
    while (!ps->header_known)
        pthread_cond_wait(&ps->cv, &ps->mu);
    uint64_t b = ps->bytes;
    pthread_mutex_unlock(&ps->mu);
    return b;
}

void cf_prevset_counts(const cf_prevset *ps, uint64_t *looked_up, uint64_t *found)
{
    *looked_up = ps ? ps->looked_up : 0;
    *found = ps ? ps->found : 0;
}

const char *cf_prevset_id(const cf_prevset *ps)
{
    return ps ? ps->id : NULL;
}

void cf_prevset_close(cf_prevset *ps)
{
    if (!ps)
        return;
    pthread_mutex_lock(&ps->mu);
    ps->stop = 1;
    pthread_cond_broadcast(&ps->cv);
    pthread_mutex_unlock(&ps->mu);
    if (ps->running)
        pthread_join(ps->thr, NULL);
    while (ps->qn) {
        batch_free(ps->q[ps->qhead]);
        ps->qhead = (ps->qhead + 1) % BATCHES;
        ps->qn--;
    }
    batch_free(ps->cur);
    while (ps->spent) {
        batch *b = ps->spent;
        ps->spent = b->next;
        batch_free(b);
    }
    pthread_mutex_destroy(&ps->mu);
    pthread_cond_destroy(&ps->cv);
    free(ps->id);
    free(ps->front_comp);
    free(ps->front_path);
    free(ps);
}
