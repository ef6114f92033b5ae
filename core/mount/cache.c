/* Chunk offsets and the LRU chunk cache of the mount. */
#include "mount/cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

size_t cf_chunk_at(const uint64_t *offs, size_t n, uint64_t off)
{
    if (n == 0 || off >= offs[n])
        return n;
    /* the last i with offs[i] <= off; empty chunks share their start with
     * the next one, so the search lands past them */
    size_t lo = 0, hi = n; /* offs[lo] <= off < offs[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (offs[mid] <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

int cf_chunk_offsets(const int64_t *sizes, size_t n, uint64_t *offs)
{
    offs[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (sizes[i] < 0 || offs[i] + (uint64_t)sizes[i] < offs[i])
            return -1;
        offs[i + 1] = offs[i] + (uint64_t)sizes[i];
    }
    return 0;
}

typedef struct slot {
    cf_id id;
    void *data;
    size_t len;
    struct slot *prev, *next; /* LRU list, most recent first */
    struct slot *hnext;       /* hash chain */
} slot;

struct cf_ccache {
    pthread_mutex_t mu;
    size_t cap, bytes, count;
    slot **table;
    size_t nbuckets;
    slot *head, *tail;
    uint64_t hits, misses;
};

static size_t bucket(const cf_ccache *c, const cf_id *id)
{
    uint64_t h;
    memcpy(&h, id->b, sizeof h); /* ids are hashes: their bytes are uniform */
    return (size_t)(h % c->nbuckets);
}

cf_ccache *cf_ccache_new(size_t cap)
{
    cf_ccache *c = cf_calloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    c->cap = cap;
    c->nbuckets = 1024;
    c->table = cf_calloc(c->nbuckets, sizeof *c->table);
    return c;
}

static void unlink_lru(cf_ccache *c, slot *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        c->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        c->tail = s->prev;
    s->prev = s->next = NULL;
}

static void push_front(cf_ccache *c, slot *s)
{
    s->prev = NULL;
    s->next = c->head;
    if (c->head)
        c->head->prev = s;
    c->head = s;
    if (!c->tail)
        c->tail = s;
}

static slot *find(cf_ccache *c, const cf_id *id)
{
    for (slot *s = c->table[bucket(c, id)]; s; s = s->hnext)
        if (memcmp(s->id.b, id->b, CF_ID_LEN) == 0)
            return s;
    return NULL;
}

static void evict(cf_ccache *c, slot *s)
{
    unlink_lru(c, s);
    slot **pp = &c->table[bucket(c, &s->id)];
    while (*pp != s)
        pp = &(*pp)->hnext;
    *pp = s->hnext;
    c->bytes -= s->len;
    c->count--;
    free(s->data);
    free(s);
}

void cf_ccache_free(cf_ccache *c)
{
    if (!c)
        return;
    while (c->tail)
        evict(c, c->tail);
    free(c->table);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int cf_ccache_has(cf_ccache *c, const cf_id *id)
{
    pthread_mutex_lock(&c->mu);
    int has = find(c, id) != NULL;
    pthread_mutex_unlock(&c->mu);
    return has;
}

int cf_ccache_read(cf_ccache *c, const cf_id *id, size_t off, void *dst, size_t len)
{
    pthread_mutex_lock(&c->mu);
    slot *s = find(c, id);
    int hit = s && off <= s->len && len <= s->len - off;
    if (hit) {
        memcpy(dst, (const char *)s->data + off, len);
        unlink_lru(c, s);
        push_front(c, s);
        c->hits++;
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->mu);
    return hit;
}

void cf_ccache_put(cf_ccache *c, const cf_id *id, void *data, size_t len)
{
    pthread_mutex_lock(&c->mu);
    if (len > c->cap || find(c, id)) {
        pthread_mutex_unlock(&c->mu);
        free(data);
        return;
    }
    while (c->tail && c->bytes + len > c->cap)
        evict(c, c->tail);
    slot *s = cf_calloc(1, sizeof *s);
    s->id = *id;
    s->data = data;
    s->len = len;
    size_t b = bucket(c, id);
    s->hnext = c->table[b];
    c->table[b] = s;
    push_front(c, s);
    c->bytes += len;
    c->count++;
    pthread_mutex_unlock(&c->mu);
}

void cf_ccache_stats(cf_ccache *c, size_t *bytes, size_t *chunks, uint64_t *hits, uint64_t *misses)
{
    pthread_mutex_lock(&c->mu);
    *bytes = c->bytes;
    *chunks = c->count;
    *hits = c->hits;
    *misses = c->misses;
    pthread_mutex_unlock(&c->mu);
}
