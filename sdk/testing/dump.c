/* The testing kit's in-memory dump sink and source (coffer/testing.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "coffer/testing.h"
#include "kit.h"

typedef struct stream {
    char *name;
    unsigned char *data;
    size_t len, cap;
    int closed;
    struct coffer_test_dump *d;
} stream;

typedef struct reader {
    const stream *s;
    size_t pos;
} reader;

struct coffer_test_dump {
    coffer_dump_sink sink;
    coffer_dump_source source;
    pthread_mutex_t lock;
    stream **streams;
    size_t nstreams;
    char **keys, **values;
    size_t nmeta;
};

static stream *find_stream(struct coffer_test_dump *d, const char *name)
{
    for (size_t i = 0; i < d->nstreams; i++)
        if (d->streams[i]->closed && strcmp(d->streams[i]->name, name) == 0)
            return d->streams[i];
    return NULL;
}

static coffer_status sink_open(coffer_dump_sink *sink, const char *name, void **out)
{
    struct coffer_test_dump *d = sink->ctx;
    stream *s = kit_alloc(sizeof *s);
    s->name = kit_strdup(name);
    s->d = d;
    pthread_mutex_lock(&d->lock);
    stream **n = realloc(d->streams, (d->nstreams + 1) * sizeof *n);
    if (!n)
        abort();
    d->streams = n;
    d->streams[d->nstreams++] = s;
    pthread_mutex_unlock(&d->lock);
    *out = s;
    return COFFER_OK;
}

static coffer_status sink_write(void *sp, const void *buf, size_t len)
{
    stream *s = sp;
    if (s->closed)
        return COFFER_ERR_INVALID;
    if (s->len + len > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + len)
            cap *= 2;
        unsigned char *n = realloc(s->data, cap);
        if (!n)
            abort();
        s->data = n;
        s->cap = cap;
    }
    memcpy(s->data + s->len, buf, len);
    s->len += len;
    return COFFER_OK;
}

static coffer_status sink_close(void *sp)
{
    stream *s = sp;
    pthread_mutex_lock(&s->d->lock);
    s->closed = 1;
    pthread_mutex_unlock(&s->d->lock);
    return COFFER_OK;
}

static coffer_status sink_meta(coffer_dump_sink *sink, const char *key, const char *value)
{
    struct coffer_test_dump *d = sink->ctx;
    pthread_mutex_lock(&d->lock);
    size_t i = 0;
    while (i < d->nmeta && strcmp(d->keys[i], key) != 0)
        i++;
    if (i == d->nmeta) {
        char **k = realloc(d->keys, (d->nmeta + 1) * sizeof *k);
        char **v = k ? realloc(d->values, (d->nmeta + 1) * sizeof *v) : NULL;
        if (!k || !v)
            abort();
        d->keys = k;
        d->values = v;
        d->keys[i] = kit_strdup(key);
        d->values[i] = NULL;
        d->nmeta++;
    }
    free(d->values[i]);
    d->values[i] = kit_strdup(value);
    pthread_mutex_unlock(&d->lock);
    return COFFER_OK;
}

/* The source lists closed streams only, in the order they were opened. */
static const stream *nth_closed(struct coffer_test_dump *d, size_t i)
{
    for (size_t k = 0; k < d->nstreams; k++)
        if (d->streams[k]->closed && i-- == 0)
            return d->streams[k];
    return NULL;
}

static size_t src_count(coffer_dump_source *src)
{
    return coffer_test_dump_streams(src->ctx);
}

static const char *src_name(coffer_dump_source *src, size_t i)
{
    const stream *s = nth_closed(src->ctx, i);
    return s ? s->name : NULL;
}

static uint64_t src_size(coffer_dump_source *src, size_t i)
{
    const stream *s = nth_closed(src->ctx, i);
    return s ? s->len : 0;
}

static coffer_status src_open(coffer_dump_source *src, const char *name, void **out)
{
    const stream *s = find_stream(src->ctx, name);
    if (!s)
        return COFFER_ERR_NOT_FOUND;
    reader *r = kit_alloc(sizeof *r);
    r->s = s;
    *out = r;
    return COFFER_OK;
}

static coffer_status src_read(void *rp, void *buf, size_t len, size_t *got)
{
    reader *r = rp;
    size_t n = r->s->len - r->pos < len ? r->s->len - r->pos : len;
    if (n)
        memcpy(buf, r->s->data + r->pos, n);
    r->pos += n;
    *got = n;
    return COFFER_OK;
}

static void src_close(void *rp)
{
    free(rp);
}

static const char *src_meta_get(coffer_dump_source *src, const char *key)
{
    return coffer_test_dump_meta(src->ctx, key);
}

static size_t src_meta_count(coffer_dump_source *src)
{
    return ((struct coffer_test_dump *)src->ctx)->nmeta;
}

static const char *src_meta_key(coffer_dump_source *src, size_t i)
{
    struct coffer_test_dump *d = src->ctx;
    return i < d->nmeta ? d->keys[i] : NULL;
}

coffer_test_dump *coffer_test_dump_new(void)
{
    coffer_test_dump *d = kit_alloc(sizeof *d);
    pthread_mutex_init(&d->lock, NULL);
    d->sink = (coffer_dump_sink){.struct_size = sizeof(coffer_dump_sink),
                                 .ctx = d,
                                 .stream_open = sink_open,
                                 .stream_write = sink_write,
                                 .stream_close = sink_close,
                                 .meta = sink_meta};
    d->source = (coffer_dump_source){.struct_size = sizeof(coffer_dump_source),
                                     .ctx = d,
                                     .stream_count = src_count,
                                     .stream_name = src_name,
                                     .stream_size = src_size,
                                     .stream_open = src_open,
                                     .stream_read = src_read,
                                     .stream_close = src_close,
                                     .meta_get = src_meta_get,
                                     .meta_count = src_meta_count,
                                     .meta_key = src_meta_key};
    return d;
}

void coffer_test_dump_free(coffer_test_dump *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->nstreams; i++) {
        free(d->streams[i]->name);
        free(d->streams[i]->data);
        free(d->streams[i]);
    }
    for (size_t i = 0; i < d->nmeta; i++) {
        free(d->keys[i]);
        free(d->values[i]);
    }
    free(d->streams);
    free(d->keys);
    free(d->values);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

coffer_dump_sink *coffer_test_dump_sink(coffer_test_dump *d)
{
    return &d->sink;
}

coffer_dump_source *coffer_test_dump_source(coffer_test_dump *d)
{
    return &d->source;
}

size_t coffer_test_dump_streams(coffer_test_dump *d)
{
    size_t n = 0;
    for (size_t i = 0; i < d->nstreams; i++)
        n += d->streams[i]->closed != 0;
    return n;
}

const void *coffer_test_dump_stream(coffer_test_dump *d, const char *name, size_t *len)
{
    const stream *s = find_stream(d, name);
    if (len)
        *len = s ? s->len : 0;
    return s ? (s->data ? (const void *)s->data : (const void *)"") : NULL;
}

const char *coffer_test_dump_meta(coffer_test_dump *d, const char *key)
{
    for (size_t i = 0; i < d->nmeta; i++)
        if (strcmp(d->keys[i], key) == 0)
            return d->values[i];
    return NULL;
}
