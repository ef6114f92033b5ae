#include "engine/copy.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* Entries read from the source manifest ahead of the one being copied,
 * with the fetch sequence number of each chunk they need (NO_SEQ: the
 * destination already had it). A ring of at most AHEAD_ENTRIES. */
#define AHEAD_ENTRIES 1024
#define AHEAD_CHUNKS 8192
#define NO_SEQ UINT64_MAX

typedef struct aentry {
    cf_entry e;
    uint64_t *seq;
} aentry;

typedef struct ahead {
    aentry e[AHEAD_ENTRIES];
    size_t head, n, nchunks;
} ahead;

/* Read the next entry into the ring and name its chunks: 1, 0 at the end
 * of the manifest, -1 on error. dst: skip chunks it has (same ids). */
static int ahead_push(ahead *q, cf_mreader *m, cf_fetch *f, cf_repo *dst)
{
    aentry *a = &q->e[(q->head + q->n) % AHEAD_ENTRIES];
    int rc = cf_manifest_next(m, &a->e);
    if (rc != 1)
        return rc;
    a->seq = cf_malloc((a->e.nchunks ? a->e.nchunks : 1) * sizeof *a->seq);
    for (size_t i = 0; i < a->e.nchunks; i++)
        a->seq[i] = dst && cf_repo_has(dst, &a->e.chunks[i]) ? NO_SEQ
                                                             : cf_fetch_want(f, &a->e.chunks[i], 1);
    q->n++;
    q->nchunks += a->e.nchunks;
    return 1;
}

static void ahead_pop(ahead *q)
{
    aentry *a = &q->e[q->head];
    q->nchunks -= a->e.nchunks;
    cf_entry_clear(&a->e);
    free(a->seq);
    a->seq = NULL;
    q->head = (q->head + 1) % AHEAD_ENTRIES;
    q->n--;
}

static void ahead_free(ahead *q)
{
    while (q->n)
        ahead_pop(q);
}

int cf_copy_set(cf_repo *src, cf_repo *dst, const char *id, int *copied, uint64_t *bytes_sent)
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
    cf_fetch *f = cf_fetch_new(src);
    ahead *q = cf_calloc(1, sizeof *q); /* too large for a thread's stack */
    cf_buf buf = {0};
    int rc = 1, aborted = 0, eof = 0;
    for (;;) {
        /* Name the chunks of the entries ahead, so the fetch threads
         * read them while this one writes to the destination. */
        while (!eof && q->n < AHEAD_ENTRIES && q->nchunks < AHEAD_CHUNKS) {
            int got = ahead_push(q, m, f, same ? dst : NULL);
            if (got < 0)
                rc = -1;
            if (got <= 0) {
                eof = 1;
                break;
            }
        }
        if (rc != 1 || !q->n)
            break;
        aentry *a = &q->e[q->head];
        cf_entry *e = &a->e;
        for (size_t i = 0; i < e->nchunks && rc == 1; i++) {
            if (cf_cancel_flag) {
                rc = cf_fail("cancelled");
                break;
            }
            if (a->seq[i] == NO_SEQ)
                continue; /* the destination had it when named */
            if (same && cf_repo_has(dst, &e->chunks[i])) {
                cf_fetch_skip(f, a->seq[i], 1); /* stored since, by this copy */
                continue;
            }
            if (cf_fetch_take(f, a->seq[i], &buf) != 0) {
                cf_error_prefix("set %s: %s", id, e->path);
                rc = -1;
                break;
            }
            cf_id nid;
            cf_repo_hash(dst, buf.data, buf.len, &nid);
            int added = 0;
            if (cf_repo_put_chunk(dst, &nid, buf.data, buf.len, &added) != 0) {
                rc = -1;
                break;
            }
            if (added)
                *bytes_sent += buf.len;
            cf_progress_add(buf.len, 0);
            e->chunks[i] = nid;
        }
        if (rc == 1 && cf_manifest_add(w, e) != 0)
            rc = -1;
        ahead_pop(q);
    }
    if (rc == 1)
        rc = 0;
    cf_fetch_free(f); /* drops chunks named and not taken */
    ahead_free(q);
    free(q);
    cf_manifest_close(m);
    cf_buf_free(&buf);
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
    if (rc == 0)
        copy_proofs(src, dst, id);
    return rc == 0 ? 0 : -1;
}
