/*
 * Planned parallel reads of chunks (repo.h, cf_fetch). The caller names
 * the chunks it will consume, in order; a planner turns them into ranged
 * reads of packs, several threads run those reads at once, open the blobs
 * and hand each chunk to whoever takes it.
 *
 * Planning happens as chunks are admitted into a window of bounded size
 * (bytes of admitted chunks not yet taken): a chunk joins a planned read
 * of the same pack that has not started yet when it lies within `gap`
 * bytes of it and the read stays under `read_max`, else it starts a new
 * read. Reads run oldest first, so the network works in the order the
 * data is consumed. A read that fails, or a blob in it that does not
 * open, is retried chunk by chunk with cf_repo_get_chunk, which knows
 * about pinned versions and words the errors.
 *
 * On a local disk a read lands in memory whole, and starts as soon as it
 * is planned. On a distant store every read is a request, costing the
 * server (and the round trip) more than its bytes do: reads are streamed
 * blob by blob, so they can be long (up to a pack), and a planned read
 * waits until its first chunk is about to be needed, growing meanwhile
 * (ripe()). A chunk named more than once (a file stored twice) is written,
 * once opened, to a local keep file and read back from there for its
 * later uses (cf_fetch_note).
 *
 * Chunk records live in a ring indexed by sequence number; threads keep
 * sequence numbers, never pointers into the ring, since want() may grow it.
 */
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "plugin/config.h"
#include "repo/repo_int.h"

enum { R_WANTED, R_PLANNED, R_READY, R_FAILED, R_DONE };

typedef struct fref {
    cf_id id;
    uint8_t state;
    uint8_t skip;  /* given up: released when it arrives */
    uint32_t cost; /* bytes counted in the window */
    cf_buf data;
    char *err;
} fref;

typedef struct fitem {
    uint64_t seq;
    cf_loc loc;
} fitem;

typedef struct fplan {
    struct fplan *next;
    cf_id pack;
    uint32_t packno;
    uint64_t start, end;
    uint64_t acc0; /* bytes admitted before its first chunk (cf_fetch.acc) */
    fitem *items;
    size_t n, cap;
    int single; /* one chunk, read with cf_repo_get_chunk */
} fplan;

/* An opened chunk kept for its next use (cf_fetch_note), in the keep
 * file at [off, off + len). */
typedef struct fkeep {
    struct fkeep *hnext; /* in its hash bucket */
    cf_id id;
    uint64_t off;
    size_t len;
} fkeep;

#define KEEP_BUCKETS 16384
/* At most this many bytes and chunks kept. */
#define KEEP_BYTES (256ull << 20)
#define KEEP_COUNT 65536

struct cf_fetch {
    cf_repo *r;
    pthread_mutex_t mu;
    pthread_cond_t work, ready;
    fref *ring;
    size_t cap;             /* power of two */
    uint64_t lo, admit, hi; /* [lo, hi) wanted and not released; [admit, hi) not planned */
    uint64_t window, window_max, read_max, gap;
    uint64_t plan_max; /* admitted bytes at most: window_max, 1.5x streamed */
    uint64_t acc;      /* bytes ever admitted: acc - window were taken */
    /* Reads are streamed blob by blob (a distant store): a read costs one
     * request whatever its length and holds one blob at a time, so reads
     * are long, and wait in the queue to grow (ripe()). */
    int stream;
    fplan *qhead, *qtail; /* planned reads not started, oldest first */
    size_t nq;
    /* Buffers handed back by takers, reused for the next chunks (at most
     * pool_max bytes: a quarter of a local window, a sixteenth of a
     * streamed one, whose chunks come in more slowly): a fresh large
     * allocation costs a page fault per page. */
    cf_buf pool[256];
    size_t npool, pool_bytes, pool_max;
    int closing;
    int nthreads;
    pthread_t *th;
    /* Chunks named more than once (cf_fetch_note): two bitmaps indexed
     * by id bits, set for a first and a second naming. An opened chunk
     * whose second bit is set is written to the keep file (unnamed, in
     * the caller's directory, cf_fetch_keep_in): its next use reads it
     * back instead of asking the store. */
    uint64_t *seen1, *seen2, bits_mask;
    fkeep **keep;
    int keep_fd;
    uint64_t keep_end, keep_max, kept, kept_hits;
};

#define REF(f, s) (&(f)->ring[(s) & ((f)->cap - 1)])

static uint64_t id_bits(const cf_id *id)
{
    uint64_t v;
    memcpy(&v, id->b, sizeof v);
    return v;
}

static int named_twice(const cf_fetch *f, const cf_id *id)
{
    if (!f->seen2)
        return 0;
    uint64_t b = id_bits(id) & f->bits_mask;
    return (f->seen2[b >> 6] >> (b & 63)) & 1;
}

static fkeep *keep_find(cf_fetch *f, const cf_id *id)
{
    for (fkeep *k = f->keep[id_bits(id) % KEEP_BUCKETS]; k; k = k->hnext)
        if (memcmp(k->id.b, id->b, CF_ID_LEN) == 0)
            return k;
    return NULL;
}

/* A kept copy of x's chunk into x->data: 1, or 0 when there is none. */
static int kept_read(cf_fetch *f, fref *x)
{
    fkeep *k = keep_find(f, &x->id);
    if (!k)
        return 0;
    x->data = (cf_buf){0};
    cf_buf_reserve(&x->data, k->len);
    if (pread(f->keep_fd, x->data.data, k->len, (off_t)k->off) != (ssize_t)k->len) {
        cf_buf_free(&x->data);
        return 0;
    }
    x->data.len = k->len;
    return 1;
}

/* Keep an opened chunk that will be named again (not under mu). A write
 * that fails (a full disk) keeps nothing: the next use reads the store. */
static void keep_put(cf_fetch *f, const cf_id *id, const cf_buf *b)
{
    pthread_mutex_lock(&f->mu);
    int skip = keep_find(f, id) || f->kept >= KEEP_COUNT || f->keep_end + b->len > f->keep_max;
    uint64_t off = f->keep_end;
    if (!skip) {
        f->keep_end += b->len;
        f->kept++;
    }
    pthread_mutex_unlock(&f->mu);
    if (skip || pwrite(f->keep_fd, b->data, b->len, (off_t)off) != (ssize_t)b->len)
        return;
    pthread_mutex_lock(&f->mu);
    if (!keep_find(f, id)) { /* another thread's copy may have come first */
        fkeep *k = cf_calloc(1, sizeof *k);
        k->id = *id;
        k->off = off;
        k->len = b->len;
        fkeep **bucket = &f->keep[id_bits(id) % KEEP_BUCKETS];
        k->hnext = *bucket;
        *bucket = k;
    }
    pthread_mutex_unlock(&f->mu);
}

/* How far back in the queue a chunk looks for a read of its pack to join. */
#define JOIN_LOOKBACK 256

static void plan_free(fplan *p)
{
    free(p->items);
    free(p);
}

static void plan_add(fplan *p, uint64_t seq, const cf_loc *l)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 8;
        p->items = cf_realloc(p->items, p->cap * sizeof *p->items);
    }
    p->items[p->n++] = (fitem){.seq = seq, .loc = *l};
    if (!p->single) {
        if (l->offset < p->start)
            p->start = l->offset;
        if (l->offset + l->stored > p->end)
            p->end = l->offset + l->stored;
    }
}

static void enqueue(cf_fetch *f, fplan *p)
{
    if (f->qtail)
        f->qtail->next = p;
    else
        f->qhead = p;
    f->qtail = p;
    f->nq++;
}

/* A planned read of the same pack this chunk can join, or NULL. The
 * queue is short (reads leave it as threads start them); only its tail
 * is searched. */
static fplan *joinable(cf_fetch *f, const cf_loc *l)
{
    size_t skip = f->nq > JOIN_LOOKBACK ? f->nq - JOIN_LOOKBACK : 0;
    fplan *best = NULL;
    for (fplan *p = f->qhead; p; p = p->next) {
        if (skip) {
            skip--;
            continue;
        }
        if (p->single || p->packno != l->pack)
            continue;
        uint64_t s = l->offset < p->start ? l->offset : p->start;
        uint64_t e = l->offset + l->stored > p->end ? l->offset + l->stored : p->end;
        if (e - s > f->read_max)
            continue;
        if (l->offset > p->end + f->gap || l->offset + l->stored + f->gap < p->start)
            continue;
        best = p;
    }
    return best;
}

/* Plan wanted chunks while the window has room (plan_max; always at
 * least one, so the oldest chunk a consumer waits for is never held
 * back). Admission waits until a quarter of the window is free: chunks
 * admitted one at a time, as takers free room, would each become a read
 * of their own. */
static void admit_locked(cf_fetch *f)
{
    int added = 0;
    if (f->window && f->window > f->plan_max - f->window_max / 4)
        return;
    while (f->admit < f->hi && (f->window < f->plan_max || f->window == 0)) {
        uint64_t seq = f->admit++;
        fref *x = REF(f, seq);
        if (x->skip) {
            x->state = R_DONE;
            continue;
        }
        if (f->keep && kept_read(f, x)) {
            x->cost = x->data.len ? x->data.len : 1;
            x->state = R_READY;
            f->window += x->cost;
            f->acc += x->cost;
            f->kept_hits++;
            pthread_cond_broadcast(&f->ready);
            continue;
        }
        cf_loc l;
        cf_pack_rec pr;
        fplan *p = NULL;
        if (cf_repo_lookup(f->r, &x->id, &l, &pr) == 0 && pr.size && l.stored) {
            /* A streamed read holds one blob at a time: what the window
             * must bound is the opened chunks waiting to be taken. A read
             * into memory holds the stored bytes too. */
            x->cost = l.raw + (f->stream ? 0 : l.stored);
            if (!x->cost)
                x->cost = 1;
            p = joinable(f, &l);
            if (!p) {
                p = cf_calloc(1, sizeof *p);
                p->pack = pr.id;
                p->packno = l.pack;
                p->start = l.offset;
                p->end = l.offset + l.stored;
                p->acc0 = f->acc;
                enqueue(f, p);
            }
        } else {
            /* Unknown chunk, unwritten pack, empty chunk: the plain path
             * gives the answer and the message. */
            l = (cf_loc){.id = x->id};
            x->cost = 1;
            p = cf_calloc(1, sizeof *p);
            p->single = 1;
            p->acc0 = f->acc;
            enqueue(f, p);
        }
        plan_add(p, seq, &l);
        x->state = R_PLANNED;
        f->window += x->cost;
        f->acc += x->cost;
        added = 1;
    }
    if (added)
        pthread_cond_broadcast(&f->work);
}

/* Whether a planned read should start now. Reads into memory start at
 * once. Streamed reads are planned up to 1.5 windows ahead of the takers
 * (plan_max: planned chunks cost no memory yet) and wait while they can
 * still grow: a read starts when its first chunk is within three
 * quarters of a window of the takers, or within a window when it is as
 * long as a read gets or nothing more is wanted. Opened chunks not yet
 * taken stay under 1.5 windows. */
static int ripe(const cf_fetch *f, const fplan *p)
{
    if (!f->stream || p->single)
        return 1;
    uint64_t taken = f->acc - f->window;
    if (p->acc0 <= taken + f->window_max - f->window_max / 4)
        return 1;
    if (p->acc0 > taken + f->window_max)
        return 0;
    return f->admit == f->hi || p->end - p->start >= f->read_max - f->read_max / 4;
}

/* The oldest ripe read, unlinked from the queue, or NULL. */
static fplan *dequeue_ripe(cf_fetch *f)
{
    fplan *prev = NULL;
    for (fplan *p = f->qhead; p; prev = p, p = p->next) {
        if (!ripe(f, p))
            continue;
        if (prev)
            prev->next = p->next;
        else
            f->qhead = p->next;
        if (f->qtail == p)
            f->qtail = prev;
        p->next = NULL;
        f->nq--;
        return p;
    }
    return NULL;
}

static void pool_put_locked(cf_fetch *f, cf_buf *b)
{
    if (b->cap && f->npool < CF_ARRAY_LEN(f->pool) && f->pool_bytes + b->cap <= f->pool_max) {
        b->len = 0;
        f->pool_bytes += b->cap;
        f->pool[f->npool++] = *b;
        *b = (cf_buf){0};
    } else {
        cf_buf_free(b);
    }
}

static cf_buf pool_get(cf_fetch *f)
{
    cf_buf b = {0};
    pthread_mutex_lock(&f->mu);
    if (f->npool) {
        b = f->pool[--f->npool];
        f->pool_bytes -= b.cap;
    }
    pthread_mutex_unlock(&f->mu);
    return b;
}

static void release_locked(cf_fetch *f, fref *x)
{
    f->window -= x->cost;
    x->cost = 0;
    x->state = R_DONE;
    pool_put_locked(f, &x->data);
    free(x->err);
    x->err = NULL;
    while (f->lo < f->admit && REF(f, f->lo)->state == R_DONE)
        f->lo++;
    /* Taking moves the nearer half of the window: a waiting read may be
     * due (the oldest is the first to be). */
    if (f->stream && f->qhead && ripe(f, f->qhead))
        pthread_cond_signal(&f->work);
}

/* Hand over one chunk's outcome (data moved out of *b). */
static void deliver(cf_fetch *f, uint64_t seq, const cf_id *id, int rc, cf_buf *b)
{
    if (rc == 0 && f->keep && named_twice(f, id))
        keep_put(f, id, b);
    pthread_mutex_lock(&f->mu);
    fref *x = REF(f, seq);
    if (x->skip) {
        release_locked(f, x);
        admit_locked(f);
    } else {
        x->data = *b;
        *b = (cf_buf){0};
        x->state = rc == 0 ? R_READY : R_FAILED;
        if (rc != 0)
            x->err = cf_strdup(cf_error());
        pthread_cond_broadcast(&f->ready);
    }
    pthread_mutex_unlock(&f->mu);
}

static void run_plan(cf_fetch *f, fplan *p, cf_buf *raw)
{
    cf_repo *r = f->r;
    int whole = -1;
    char key[CF_PACK_KEY_LEN + 1];
    if (!p->single) {
        cf_pack_key(&p->pack, key);
        whole = cf_store_get_range(r->st, key, p->start, p->end - p->start, raw);
        atomic_fetch_add(&r->bytes_read, raw->len);
        atomic_fetch_add(&r->reads, 1);
        if (whole == 0 && raw->len != p->end - p->start)
            whole = -1;
    }
    for (size_t i = 0; i < p->n; i++) {
        fitem *it = &p->items[i];
        cf_buf out = pool_get(f);
        int rc = -1;
        /* A chunk named twice in one read: its bytes were decrypted in
         * place the first time. */
        int again = 0;
        for (size_t k = 0; k < i && !again; k++)
            again = p->items[k].loc.offset == it->loc.offset;
        if (whole == 0 && !again)
            rc = cf_blob_open_inplace(r, &it->loc, key, raw->data + (it->loc.offset - p->start),
                                      &out);
        if (rc != 0)
            rc = cf_repo_get_chunk(r, &it->loc.id, &out);
        deliver(f, it->seq, &it->loc.id, rc, &out);
        cf_buf_free(&out);
    }
}

static int by_offset(const void *a, const void *b)
{
    const fitem *x = a, *y = b;
    if (x->loc.offset != y->loc.offset)
        return x->loc.offset < y->loc.offset ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Exactly n bytes from a reader, or an error (an early end is one). */
static int read_exact(cf_store *st, void *rd, uint8_t *buf, size_t n)
{
    while (n) {
        size_t got = 0;
        if (cf_store_read(st, rd, buf, n, &got) != 0)
            return -1;
        if (got == 0)
            return cf_fail("the pack ended early");
        buf += got;
        n -= got;
    }
    return 0;
}

/* One request for the whole span, its blobs opened as they arrive, in
 * pack order: the first chunks reach the takers while the rest are still
 * on their way, and the thread holds one blob. A chunk named twice is
 * opened once. Whatever the stream did not bring is read chunk by chunk. */
static void run_stream(cf_fetch *f, fplan *p, cf_buf *blob)
{
    cf_repo *r = f->r;
    char key[CF_PACK_KEY_LEN + 1];
    cf_pack_key(&p->pack, key);
    qsort(p->items, p->n, sizeof *p->items, by_offset);
    void *rd = NULL;
    int ok = cf_store_reader_open(r->st, key, p->start, p->end - p->start, &rd) == 0;
    uint64_t pos = p->start;
    if (ok)
        atomic_fetch_add(&r->reads, 1);
    for (size_t i = 0; i < p->n;) {
        fitem *it = &p->items[i];
        cf_buf out = pool_get(f);
        int rc = -1;
        /* a blob that overlaps the one before (a damaged table) is not
         * in the stream */
        if (ok && it->loc.offset >= pos) {
            /* the gap to this blob is read and dropped */
            while (ok && pos < it->loc.offset) {
                size_t k =
                    it->loc.offset - pos > (1u << 20) ? (1u << 20) : (size_t)(it->loc.offset - pos);
                cf_buf_reserve(blob, k);
                ok = read_exact(r->st, rd, blob->data, k) == 0;
                pos += k;
            }
            if (ok) {
                cf_buf_reserve(blob, it->loc.stored);
                ok = read_exact(r->st, rd, blob->data, it->loc.stored) == 0;
                pos += it->loc.stored;
            }
            if (ok)
                rc = cf_blob_open_inplace(r, &it->loc, key, blob->data, &out);
        }
        if (rc != 0)
            rc = cf_repo_get_chunk(r, &it->loc.id, &out);
        /* the same blob again: a copy of what was opened */
        size_t j = i + 1;
        for (; j < p->n && p->items[j].loc.offset == it->loc.offset; j++) {
            cf_buf dup = pool_get(f);
            int drc = rc;
            if (rc == 0)
                cf_buf_append(&dup, out.data, out.len);
            else
                drc = cf_repo_get_chunk(r, &p->items[j].loc.id, &dup);
            deliver(f, p->items[j].seq, &p->items[j].loc.id, drc, &dup);
            cf_buf_free(&dup);
        }
        deliver(f, it->seq, &it->loc.id, rc, &out);
        cf_buf_free(&out);
        i = j;
    }
    atomic_fetch_add(&r->bytes_read, pos - p->start);
    if (rd)
        cf_store_reader_close(r->st, rd);
}

static void *fetcher(void *arg)
{
    cf_fetch *f = arg;
    cf_buf raw = {0};
    pthread_mutex_lock(&f->mu);
    for (;;) {
        fplan *p = NULL;
        while (!f->closing && !(p = dequeue_ripe(f)))
            pthread_cond_wait(&f->work, &f->mu);
        if (f->closing)
            break;
        /* Chunks given up since planning are not read. */
        size_t keep = 0;
        for (size_t i = 0; i < p->n; i++) {
            fref *x = REF(f, p->items[i].seq);
            if (x->skip)
                release_locked(f, x);
            else
                p->items[keep++] = p->items[i];
        }
        p->n = keep;
        pthread_mutex_unlock(&f->mu);
        if (p->n && f->stream && !p->single)
            run_stream(f, p, &raw);
        else if (p->n)
            run_plan(f, p, &raw);
        plan_free(p);
        /* One large chunk makes a read past read_max: its buffer is not
         * kept for the reads after it (each thread would hold its largest).
         * A streamed read's buffer holds a blob: kept up to 2 MiB. */
        if (raw.cap > (f->stream ? (2u << 20) : f->read_max))
            cf_buf_free(&raw);
        pthread_mutex_lock(&f->mu);
        admit_locked(f);
    }
    pthread_mutex_unlock(&f->mu);
    cf_buf_free(&raw);
    return NULL;
}

static int local_default(const cf_repo *r)
{
    return (r->st->caps & COFFER_CAP_LOCAL) != 0;
}

/* The `connections` option, or one more read in flight for every
 * ms_per_read of the store's round trip. */
static int connections(const cf_repo *r, double ms_per_read)
{
    const coffer_config *cfg = r->st->cfg;
    int64_t conns = cfg ? cf_config_get_int(cfg, "connections", 0) : 0;
    if (conns <= 0) {
        /* Near the store, reads beyond one per core (and one waiting on
         * the network) add requests and smaller reads, not speed. A
         * distant store keeps each read waiting a round trip before its
         * first byte: more reads in flight, up to 16. */
        if (local_default(r)) {
            conns = 3;
        } else {
            conns = cf_cpus(2, 7) + 1 + (int64_t)(cf_store_round_trip(r->st) * 1e3 / ms_per_read);
            if (conns > 16)
                conns = 16;
        }
    }
    return conns > 64 ? 64 : (int)conns;
}

/* Whole packs (check, copy): one more for every 2 ms (a 20 ms round trip:
 * 13 on two cores). */
int cf_repo_connections(const cf_repo *r)
{
    return connections(r, 2);
}

uint64_t cf_repo_inflight_bytes(const cf_repo *r)
{
    const coffer_config *cfg = r->st->cfg;
    int64_t infl = cfg ? cf_config_get_int(cfg, "inflight_bytes", 0) : 0;
    if (infl <= 0) {
        /* A local disk answers at once: a short window keeps it busy. A
         * distant store needs more bytes on their way: 0.6 MiB more for
         * every ms of round trip, up to 32 MiB (a 20 ms round trip: 32). */
        if (local_default(r)) {
            infl = 8ll << 20;
        } else {
            infl = (24ll << 20) + (int64_t)(cf_store_round_trip(r->st) * 1e3 * 0.6 * 1048576);
            if (infl > (32ll << 20))
                infl = 32ll << 20;
        }
    }
    return (uint64_t)infl;
}

cf_fetch *cf_fetch_new(cf_repo *r, uint64_t window_cap)
{
    cf_fetch *f = cf_calloc(1, sizeof *f);
    f->r = r;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->work, NULL);
    pthread_cond_init(&f->ready, NULL);
    f->cap = 1024;
    f->ring = cf_calloc(f->cap, sizeof *f->ring);
    /* A streamed read waits one round trip for the first of many blobs:
     * one more for every 4 ms (a 20 ms round trip: 8 on two cores). */
    f->stream = !local_default(r);
    int64_t conns = connections(r, f->stream ? 4 : 2);
    int64_t infl = (int64_t)cf_repo_inflight_bytes(r);
    if (window_cap && (uint64_t)infl > window_cap)
        infl = (int64_t)window_cap;
    if (infl < (1ll << 20))
        infl = 1ll << 20;
    f->window_max = (uint64_t)infl;
    f->plan_max = f->stream ? f->window_max + f->window_max / 2 : f->window_max;
    f->pool_max = f->window_max / (f->stream ? 16 : 4);
    /* A small window holds few chunks at once: more threads than MiB in
     * it would wait idle (and, on object storage, hold connections). */
    if ((uint64_t)conns > f->window_max >> 20)
        conns = (int64_t)(f->window_max >> 20) < 2 ? 2 : (int64_t)(f->window_max >> 20);
    /* A read into memory holds its raw bytes besides the window; a
     * streamed one holds a blob, and is long to cost few requests. */
    f->read_max = f->window_max / (2 * (uint64_t)conns);
    if (f->read_max > (8u << 20) || f->stream)
        f->read_max = 8u << 20;
    if (f->read_max < (256u << 10))
        f->read_max = 256u << 10;
    f->gap = f->stream ? (512u << 10) : (64u << 10);
    f->nthreads = (int)conns;
    f->th = cf_calloc((size_t)conns, sizeof *f->th);
    for (int i = 0; i < f->nthreads; i++)
        pthread_create(&f->th[i], NULL, fetcher, f);
    return f;
}

static void grow_locked(cf_fetch *f, size_t need)
{
    if (f->hi - f->lo + need <= f->cap)
        return;
    size_t cap = f->cap;
    while (f->hi - f->lo + need > cap)
        cap *= 2;
    fref *ring = cf_calloc(cap, sizeof *ring);
    for (uint64_t s = f->lo; s < f->hi; s++)
        ring[s & (cap - 1)] = *REF(f, s);
    free(f->ring);
    f->ring = ring;
    f->cap = cap;
}

uint64_t cf_fetch_want(cf_fetch *f, const cf_id *ids, size_t n)
{
    pthread_mutex_lock(&f->mu);
    grow_locked(f, n);
    uint64_t first = f->hi;
    for (size_t i = 0; i < n; i++) {
        fref *x = REF(f, f->hi++);
        *x = (fref){.id = ids[i], .state = R_WANTED};
    }
    admit_locked(f);
    pthread_mutex_unlock(&f->mu);
    return first;
}

int cf_fetch_take(cf_fetch *f, uint64_t seq, cf_buf *out)
{
    pthread_mutex_lock(&f->mu);
    while (REF(f, seq)->state != R_READY && REF(f, seq)->state != R_FAILED)
        pthread_cond_wait(&f->ready, &f->mu);
    fref *x = REF(f, seq);
    int rc = 0;
    if (x->state == R_READY) {
        pool_put_locked(f, out);
        *out = x->data;
        x->data = (cf_buf){0};
    } else {
        rc = cf_fail("%s", x->err ? x->err : "read failed");
    }
    release_locked(f, x);
    admit_locked(f);
    pthread_mutex_unlock(&f->mu);
    return rc;
}

void cf_fetch_skip(cf_fetch *f, uint64_t seq, size_t n)
{
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < n; i++) {
        fref *x = REF(f, seq + i);
        if (x->state == R_READY || x->state == R_FAILED)
            release_locked(f, x);
        else if (x->state != R_DONE)
            x->skip = 1;
    }
    admit_locked(f);
    pthread_mutex_unlock(&f->mu);
}

int cf_fetch_keep_in(cf_fetch *f, int dirfd)
{
    if (!f->stream || f->keep)
        return f->keep ? 0 : -1;
    /* a sixteenth of the free space at most: the caller needs the rest */
    struct statvfs vs;
    if (fstatvfs(dirfd, &vs) != 0)
        return -1;
    f->keep_max = (uint64_t)vs.f_bavail * vs.f_frsize / 16;
    if (f->keep_max > KEEP_BYTES)
        f->keep_max = KEEP_BYTES;
    if (f->keep_max < (1u << 20))
        return -1;
    f->keep_fd = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (f->keep_fd < 0)
        return -1;
    f->keep = cf_calloc(KEEP_BUCKETS, sizeof *f->keep);
    return 0;
}

void cf_fetch_note(cf_fetch *f, const cf_id *ids, size_t n)
{
    if (!f->keep)
        return;
    pthread_mutex_lock(&f->mu);
    if (!f->seen1) {
        /* 16 bits a chunk of the repository, 2^16..2^25 bits: a chunk
         * named once is seldom taken for a repeated one, and a false
         * match only keeps a copy for nothing */
        uint64_t bits = 1u << 16;
        while (bits < (1u << 25) && bits < 16 * (uint64_t)f->r->ents_open)
            bits <<= 1;
        f->bits_mask = bits - 1;
        f->seen1 = cf_calloc(bits / 64, sizeof *f->seen1);
        f->seen2 = cf_calloc(bits / 64, sizeof *f->seen2);
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t b = id_bits(&ids[i]) & f->bits_mask, w = b >> 6, m = 1ull << (b & 63);
        if (f->seen1[w] & m)
            f->seen2[w] |= m;
        f->seen1[w] |= m;
    }
    pthread_mutex_unlock(&f->mu);
}

uint64_t cf_fetch_kept_hits(cf_fetch *f)
{
    pthread_mutex_lock(&f->mu);
    uint64_t n = f->kept_hits;
    pthread_mutex_unlock(&f->mu);
    return n;
}

int cf_fetch_threads(const cf_fetch *f)
{
    return f->nthreads;
}

void cf_fetch_free(cf_fetch *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    f->closing = 1;
    pthread_cond_broadcast(&f->work);
    pthread_mutex_unlock(&f->mu);
    for (int i = 0; i < f->nthreads; i++)
        pthread_join(f->th[i], NULL);
    while (f->qhead) {
        fplan *p = f->qhead;
        f->qhead = p->next;
        plan_free(p);
    }
    for (uint64_t s = f->lo; s < f->hi; s++) {
        cf_buf_free(&REF(f, s)->data);
        free(REF(f, s)->err);
    }
    for (size_t i = 0; i < f->npool; i++)
        cf_buf_free(&f->pool[i]);
    if (f->keep) {
        for (size_t i = 0; i < KEEP_BUCKETS; i++)
            while (f->keep[i]) {
                fkeep *k = f->keep[i];
                f->keep[i] = k->hnext;
                free(k);
            }
        free(f->keep);
        close(f->keep_fd);
    }
    free(f->seen1);
    free(f->seen2);
    free(f->ring);
    free(f->th);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->work);
    pthread_cond_destroy(&f->ready);
    free(f);
}
