/*
 * An in-memory dump sink and source for driver tests against a server:
 * dump() writes the streams here, restore() and verify() read them back,
 * no repository involved. Header only (static functions); also used by
 * the mysql driver's server test.
 */
#ifndef COFFER_TEST_MEMDUMP_H
#define COFFER_TEST_MEMDUMP_H

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "coffer/coffer.h"

typedef struct memstream {
    char *name;
    char *buf;
    size_t len, cap;
    size_t pos; /* reading */
} memstream;

typedef struct memdump {
    coffer_dump_sink sink;
    coffer_dump_source src;
    pthread_mutex_t mu;
    memstream **streams;
    size_t n;
    char **keys, **vals;
    size_t nmeta;
} memdump;

static coffer_status md_open(coffer_dump_sink *sink, const char *name, void **stream)
{
    memdump *d = sink->ctx;
    memstream *s = calloc(1, sizeof *s);
    s->name = strdup(name);
    pthread_mutex_lock(&d->mu);
    d->streams = realloc(d->streams, (d->n + 1) * sizeof *d->streams);
    d->streams[d->n++] = s;
    pthread_mutex_unlock(&d->mu);
    *stream = s;
    return COFFER_OK;
}

static coffer_status md_write(void *stream, const void *buf, size_t len)
{
    memstream *s = stream;
    if (s->len + len > s->cap) {
        size_t c = s->cap ? s->cap * 2 : 65536;
        while (c < s->len + len)
            c *= 2;
        s->buf = realloc(s->buf, c);
        s->cap = c;
    }
    memcpy(s->buf + s->len, buf, len);
    s->len += len;
    return COFFER_OK;
}

static coffer_status md_close(void *stream)
{
    (void)stream;
    return COFFER_OK;
}

static coffer_status md_meta(coffer_dump_sink *sink, const char *key, const char *value)
{
    memdump *d = sink->ctx;
    pthread_mutex_lock(&d->mu);
    d->keys = realloc(d->keys, (d->nmeta + 1) * sizeof *d->keys);
    d->vals = realloc(d->vals, (d->nmeta + 1) * sizeof *d->vals);
    d->keys[d->nmeta] = strdup(key);
    d->vals[d->nmeta++] = strdup(value);
    pthread_mutex_unlock(&d->mu);
    return COFFER_OK;
}

static size_t md_count(coffer_dump_source *src)
{
    return ((memdump *)src->ctx)->n;
}

static const char *md_name(coffer_dump_source *src, size_t i)
{
    return ((memdump *)src->ctx)->streams[i]->name;
}

static uint64_t md_size(coffer_dump_source *src, size_t i)
{
    return ((memdump *)src->ctx)->streams[i]->len;
}

typedef struct mdreader {
    memstream *s;
    size_t pos;
} mdreader;

static coffer_status md_ropen(coffer_dump_source *src, const char *name, void **stream)
{
    memdump *d = src->ctx;
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->streams[i]->name, name) == 0) {
            mdreader *r = calloc(1, sizeof *r);
            r->s = d->streams[i];
            *stream = r;
            return COFFER_OK;
        }
    return COFFER_ERR_NOT_FOUND;
}

static coffer_status md_read(void *stream, void *buf, size_t len, size_t *got)
{
    mdreader *r = stream;
    size_t n = r->s->len - r->pos;
    if (n > len)
        n = len;
    if (n) /* an empty stream has no buffer */
        memcpy(buf, r->s->buf + r->pos, n);
    r->pos += n;
    *got = n;
    return COFFER_OK;
}

static void md_rclose(void *stream)
{
    free(stream);
}

static const char *md_meta_get(coffer_dump_source *src, const char *key)
{
    memdump *d = src->ctx;
    for (size_t i = 0; i < d->nmeta; i++)
        if (strcmp(d->keys[i], key) == 0)
            return d->vals[i];
    return NULL;
}

static size_t md_meta_count(coffer_dump_source *src)
{
    return ((memdump *)src->ctx)->nmeta;
}

static const char *md_meta_key(coffer_dump_source *src, size_t i)
{
    return ((memdump *)src->ctx)->keys[i];
}

static void memdump_init(memdump *d)
{
    memset(d, 0, sizeof *d);
    pthread_mutex_init(&d->mu, NULL);
    d->sink = (coffer_dump_sink){.struct_size = sizeof d->sink,
                                 .ctx = d,
                                 .stream_open = md_open,
                                 .stream_write = md_write,
                                 .stream_close = md_close,
                                 .meta = md_meta};
    d->src = (coffer_dump_source){.struct_size = sizeof d->src,
                                  .ctx = d,
                                  .stream_count = md_count,
                                  .stream_name = md_name,
                                  .stream_size = md_size,
                                  .stream_open = md_ropen,
                                  .stream_read = md_read,
                                  .stream_close = md_rclose,
                                  .meta_get = md_meta_get,
                                  .meta_count = md_meta_count,
                                  .meta_key = md_meta_key};
}

static void memdump_free(memdump *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->streams[i]->name);
        free(d->streams[i]->buf);
        free(d->streams[i]);
    }
    for (size_t i = 0; i < d->nmeta; i++) {
        free(d->keys[i]);
        free(d->vals[i]);
    }
    free(d->streams);
    free(d->keys);
    free(d->vals);
    pthread_mutex_destroy(&d->mu);
}

#endif
