/*
 * database "mysql": a writer thread beside each dump connection. The
 * connection's thread fetches and formats rows into 1 MiB buffers; the
 * writer thread hands full buffers to the sink (where the core chunks,
 * hashes and compresses them), so both run at once on two cores instead
 * of taking turns. A few buffers circulate: memory stays bounded.
 */
#include "db_mysql.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NBUF 3

typedef struct job {
    char *buf;
    size_t len;
    coffer_dump_sink *sink;
    void *stream;
} job;

struct dbmysql_pipe {
    const coffer_host *host;
    coffer_hctx *h;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *bufs[NBUF];
    char *free_[NBUF];
    size_t nfree;
    job q[NBUF];
    size_t head, n; /* queued jobs */
    int busy;       /* the thread is writing one */
    int quit;
    coffer_status st; /* first write failure, sticky */
};

static void *writer(void *arg)
{
    dbmysql_pipe *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->n && !p->quit)
            pthread_cond_wait(&p->cv, &p->mu);
        if (!p->n)
            break;
        job j = p->q[p->head];
        p->head = (p->head + 1) % NBUF;
        p->n--;
        p->busy = 1;
        coffer_status prev = p->st;
        pthread_mutex_unlock(&p->mu);
        coffer_status st = prev;
        if (st == COFFER_OK) {
            st = j.sink->stream_write(j.stream, j.buf, j.len);
            if (st == COFFER_OK)
                p->host->progress(p->h, j.len);
        }
        pthread_mutex_lock(&p->mu);
        if (st && !p->st)
            p->st = st;
        p->free_[p->nfree++] = j.buf;
        p->busy = 0;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

dbmysql_pipe *dbmysql_pipe_new(const coffer_host *host, coffer_hctx *h, size_t cap)
{
    dbmysql_pipe *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->host = host;
    p->h = h;
    for (size_t i = 0; i < NBUF; i++) {
        if (!(p->bufs[i] = malloc(cap))) {
            for (size_t k = 0; k < i; k++)
                free(p->bufs[k]);
            free(p);
            return NULL;
        }
        p->free_[p->nfree++] = p->bufs[i];
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pthread_create(&p->th, NULL, writer, p) != 0) {
        for (size_t i = 0; i < NBUF; i++)
            free(p->bufs[i]);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        free(p);
        return NULL;
    }
    return p;
}

void dbmysql_pipe_free(dbmysql_pipe *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->th, NULL);
    for (size_t i = 0; i < NBUF; i++)
        free(p->bufs[i]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

char *dbmysql_pipe_get(dbmysql_pipe *p)
{
    pthread_mutex_lock(&p->mu);
    while (!p->nfree)
        pthread_cond_wait(&p->cv, &p->mu);
    char *b = p->free_[--p->nfree];
    pthread_mutex_unlock(&p->mu);
    return b;
}

void dbmysql_pipe_release(dbmysql_pipe *p, char *buf)
{
    if (!buf)
        return;
    pthread_mutex_lock(&p->mu);
    p->free_[p->nfree++] = buf;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

coffer_status dbmysql_pipe_put(dbmysql_pipe *p, coffer_dump_sink *sink, void *stream, char *buf, size_t len)
{
    pthread_mutex_lock(&p->mu);
    coffer_status st = p->st;
    if (st || !len) {
        p->free_[p->nfree++] = buf;
        pthread_cond_broadcast(&p->cv);
    } else {
        /* at most NBUF buffers exist, so the queue cannot overflow */
        p->q[(p->head + p->n) % NBUF] = (job){buf, len, sink, stream};
        p->n++;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return st;
}

coffer_status dbmysql_pipe_drain(dbmysql_pipe *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->n || p->busy)
        pthread_cond_wait(&p->cv, &p->mu);
    coffer_status st = p->st;
    pthread_mutex_unlock(&p->mu);
    return st;
}
