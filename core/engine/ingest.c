#include "engine/ingest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/progress.h"
#include "plugin/host.h"
#include "util/util.h"

#define READ_WINDOW (1u << 20)

void cf_ingest_init(cf_ingest *g, cf_repo *repo, const cf_cdc *cdc)
{
    memset(g, 0, sizeof *g);
    g->repo = repo;
    g->cdc = cdc;
    g->cap = cdc->p.max_size + READ_WINDOW;
    g->buf = cf_malloc(g->cap);
}

void cf_ingest_free(cf_ingest *g)
{
    free(g->buf);
    free(g->chunks);
    memset(g, 0, sizeof *g);
}

void cf_ingest_reset(cf_ingest *g)
{
    g->len = 0;
    g->nchunks = 0;
    g->size = 0;
}

static int store(cf_ingest *g, const uint8_t *p, size_t n)
{
    cf_id id;
    int added = 0;
    double t = cf_now();
    cf_repo_hash(g->repo, p, n, &id);
    cf_phase_add(CF_PHASE_CHUNK, t);
    if (cf_repo_put_chunk_level(g->repo, &id, p, n, g->level, &added) != 0)
        return -1;
    if (added)
        g->new_raw += n;
    if (g->nchunks == g->chunks_cap) {
        g->chunks_cap = g->chunks_cap ? 2 * g->chunks_cap : 16;
        g->chunks = cf_realloc(g->chunks, g->chunks_cap * sizeof(cf_id));
    }
    g->chunks[g->nchunks++] = id;
    return 0;
}

/* Cut and store every chunk that is certainly complete. A cut found
 * inside the buffered data is final (it is the first position after the
 * minimum size where the rolling hash matches, whatever follows), and so
 * is a chunk of max_size; only a tail with no cut yet waits for more data.
 * The tail moved to the front is then about half a chunk, not max_size. */
static int drain(cf_ingest *g, int final)
{
    size_t off = 0, max = g->cdc->p.max_size;
    while (off < g->len) {
        size_t avail = g->len - off;
        double t = cf_now();
        size_t n = cf_cdc_cut(g->cdc, g->buf + off, avail);
        cf_phase_add(CF_PHASE_CHUNK, t);
        if (!final && n == avail && avail < max)
            break;
        if (store(g, g->buf + off, n) != 0)
            return -1;
        off += n;
    }
    if (off) {
        memmove(g->buf, g->buf + off, g->len - off);
        g->len -= off;
    }
    return 0;
}

int cf_ingest_write(cf_ingest *g, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len) {
        if (cf_cancel_flag)
            return cf_fail("cancelled");
        size_t n = g->cap - g->len;
        if (n > len)
            n = len;
        memcpy(g->buf + g->len, p, n);
        g->len += n;
        g->size += n;
        p += n;
        len -= n;
        cf_progress_add(n, 0);
        if (g->len == g->cap && drain(g, 0) != 0)
            return -1;
    }
    return 0;
}

int cf_ingest_fd(cf_ingest *g, int fd, const char *what)
{
    for (;;) {
        if (cf_cancel_flag)
            return cf_fail("cancelled");
        if (g->len == g->cap && drain(g, 0) != 0)
            return -1;
        double t = cf_now();
        ssize_t n = read(fd, g->buf + g->len, g->cap - g->len);
        cf_phase_add(CF_PHASE_READ, t);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return cf_fail_errno("%s: read error", what);
        }
        if (n == 0)
            return 0;
        g->len += (size_t)n;
        g->size += (uint64_t)n;
        cf_progress_add((uint64_t)n, 0);
    }
}

int cf_ingest_finish(cf_ingest *g)
{
    return drain(g, 1);
}

cf_id *cf_ingest_take(cf_ingest *g, size_t *n)
{
    *n = g->nchunks;
    cf_id *c = cf_malloc((g->nchunks ? g->nchunks : 1) * sizeof(cf_id));
    if (g->nchunks) /* chunks is NULL for an empty first stream */
        memcpy(c, g->chunks, g->nchunks * sizeof(cf_id));
    return c;
}
