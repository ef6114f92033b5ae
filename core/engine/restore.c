/*
 * Restore: one set, components in the policy's declared order (config
 * files, databases, data directories), each written into a private
 * staging directory inside its destination, then moved into place
 * together. The files components download on a thread of their own
 * while the databases restore (cf_restore's ftask). A failure removes
 * the staging areas: the destination never holds a half-written restore
 * that looks complete. Afterwards database checks and the policy's
 * validate commands run and are reported.
 */
#include "engine/restore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine/backup.h"
#include "engine/checks.h"
#include "engine/extract.h"
#include "engine/files.h"
#include "engine/setcheck.h"
#include "engine/validate.h"
#include "engine/objects.h"
#include "engine/progress.h"
#include "engine/select.h"
#include "plugin/host.h"
#include "util/util.h"

static int mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return cf_fail_errno("cannot create %s", buf);
        *p = '/';
    }
    if (mkdir(buf, mode) != 0 && errno != EEXIST)
        return cf_fail_errno("cannot create %s", buf);
    return 0;
}

/* ---- database source ------------------------------------------------ */

typedef struct src_stream {
    char *name;
    uint64_t size;
    cf_id *chunks;
    size_t nchunks;
} src_stream;

struct cf_dbsource {
    coffer_dump_source api;
    cf_repo *repo;
    src_stream *streams;
    size_t n;
    json_t *meta;
    const char **keys;
    _Atomic unsigned open; /* streams being read */
};

/* A stream's chunks are read ahead by a planner of its own (cf_fetch):
 * several ranged reads at once, decrypted on its threads while the
 * driver consumes the bytes before them. The streams open at once (a
 * driver restoring tables on several connections) share STREAM_BUDGET
 * of window, each at least STREAM_WINDOW_MIN. */
#define STREAM_BUDGET (16u << 20)
#define STREAM_WINDOW_MIN (2u << 20)

typedef struct src_reader {
    cf_dbsource *s;
    src_stream *st;
    cf_fetch *fetch;
    uint64_t seq0;
    size_t next_chunk;
    cf_buf buf;
    size_t pos;
} src_reader;

static size_t s_count(coffer_dump_source *a)
{
    return ((cf_dbsource *)a->ctx)->n;
}

static const char *s_name(coffer_dump_source *a, size_t i)
{
    cf_dbsource *s = a->ctx;
    return i < s->n ? s->streams[i].name : NULL;
}

static uint64_t s_size(coffer_dump_source *a, size_t i)
{
    cf_dbsource *s = a->ctx;
    return i < s->n ? s->streams[i].size : 0;
}

static coffer_status s_open(coffer_dump_source *a, const char *name, void **stream)
{
    cf_dbsource *s = a->ctx;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->streams[i].name, name) == 0) {
            src_reader *r = cf_calloc(1, sizeof *r);
            r->s = s;
            r->st = &s->streams[i];
            unsigned open = atomic_fetch_add(&s->open, 1) + 1;
            if (r->st->nchunks) {
                uint64_t window = STREAM_BUDGET / open;
                if (window < STREAM_WINDOW_MIN)
                    window = STREAM_WINDOW_MIN;
                r->fetch = cf_fetch_new(s->repo, window);
                r->seq0 = cf_fetch_want(r->fetch, r->st->chunks, r->st->nchunks);
            }
            *stream = r;
            return COFFER_OK;
        }
    return COFFER_ERR_NOT_FOUND;
}

static coffer_status s_read(void *stream, void *buf, size_t len, size_t *got)
{
    src_reader *r = stream;
    *got = 0;
    while (r->pos == r->buf.len) {
        if (r->next_chunk == r->st->nchunks)
            return COFFER_OK;
        if (cf_cancel_flag)
            return COFFER_ERR_CANCELLED;
        if (cf_fetch_take(r->fetch, r->seq0 + r->next_chunk, &r->buf) != 0) {
            cf_log(CF_LOG_ERROR, "stream %s: %s", r->st->name, cf_error());
            return COFFER_ERR_CORRUPT;
        }
        r->next_chunk++;
        r->pos = 0;
    }
    size_t n = r->buf.len - r->pos;
    if (n > len)
        n = len;
    memcpy(buf, r->buf.data + r->pos, n);
    r->pos += n;
    *got = n;
    cf_progress_add(n, 0);
    return COFFER_OK;
}

static void s_close(void *stream)
{
    src_reader *r = stream;
    atomic_fetch_sub(&r->s->open, 1);
    cf_fetch_free(r->fetch); /* drops what was not taken */
    cf_buf_free(&r->buf);
    free(r);
}

static const char *s_meta_get(coffer_dump_source *a, const char *key)
{
    cf_dbsource *s = a->ctx;
    return json_string_value(json_object_get(s->meta, key));
}

static size_t s_meta_count(coffer_dump_source *a)
{
    return json_object_size(((cf_dbsource *)a->ctx)->meta);
}

static const char *s_meta_key(coffer_dump_source *a, size_t i)
{
    cf_dbsource *s = a->ctx;
    return i < json_object_size(s->meta) ? s->keys[i] : NULL;
}

int cf_dbsource_load(cf_repo *repo, const char *set_id, const char *component, cf_dbsource **out)
{
    cf_mreader *m;
    json_t *h;
    if (cf_manifest_open(repo, set_id, &m, &h) != 0)
        return -1;
    json_decref(h);
    cf_dbsource *s = cf_calloc(1, sizeof *s);
    s->repo = repo;
    s->meta = json_object();
    cf_entry e;
    int rc;
    while ((rc = cf_manifest_next(m, &e)) == 1) {
        if (strcmp(e.component, component) == 0) {
            if (e.kind == CF_ENT_STREAM) {
                int dup = 0;
                for (size_t i = 0; i < s->n; i++)
                    dup |= strcmp(s->streams[i].name, e.path) == 0;
                if (!cf_stream_name_valid(e.path) || dup) {
                    rc = cf_fail("set %s, component '%s': stream name '%s' refused: %s", set_id,
                                 component, e.path,
                                 dup ? "it appears twice" : "not a plain relative name");
                    cf_entry_clear(&e);
                    break;
                }
                s->streams = cf_realloc(s->streams, (s->n + 1) * sizeof *s->streams);
                src_stream *st = &s->streams[s->n++];
                st->name = e.path;
                st->size = e.size;
                st->chunks = e.chunks;
                st->nchunks = e.nchunks;
                e.path = NULL;
                e.chunks = NULL;
            } else if (e.kind == CF_ENT_META && e.meta) {
                json_object_update(s->meta, e.meta);
            }
        }
        cf_entry_clear(&e);
    }
    cf_manifest_close(m);
    if (rc < 0) {
        cf_dbsource_free(s);
        return -1;
    }
    if (s->n == 0) {
        cf_dbsource_free(s);
        return cf_fail("set %s: component '%s' has no database dump", set_id, component);
    }
    size_t nk = json_object_size(s->meta), i = 0;
    s->keys = cf_calloc(nk + 1, sizeof(char *));
    const char *k;
    json_t *v;
    json_object_foreach(s->meta, k, v)
    {
        (void)v;
        s->keys[i++] = k;
    }
    s->api = (coffer_dump_source){
        .struct_size = sizeof(coffer_dump_source),
        .ctx = s,
        .stream_count = s_count,
        .stream_name = s_name,
        .stream_size = s_size,
        .stream_open = s_open,
        .stream_read = s_read,
        .stream_close = s_close,
        .meta_get = s_meta_get,
        .meta_count = s_meta_count,
        .meta_key = s_meta_key,
    };
    *out = s;
    return 0;
}

coffer_dump_source *cf_dbsource_api(cf_dbsource *s)
{
    return &s->api;
}

void cf_dbsource_free(cf_dbsource *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->streams[i].name);
        free(s->streams[i].chunks);
    }
    free(s->streams);
    free(s->keys);
    json_decref(s->meta);
    free(s);
}

/* ---- files ------------------------------------------------------------ */

/* Files queued ahead of the writers: their chunks are what the reads
 * are planned from, so the queue reaches well past the read window. It
 * also stops at QCHUNKS chunks (the planner keeps a record of each), so
 * a set of files with thousands of chunks each queues megabytes of
 * records, not the set's whole chunk list. */
#define QCAP 4096
#define QCHUNKS 65536

/* A parent directory, resolved beneath the staging root, shared by the
 * queued files in it. */
typedef struct rdir {
    int fd;
    _Atomic int refs;
    char *path;
} rdir;

static void rdir_put(rdir *d)
{
    if (d && atomic_fetch_sub(&d->refs, 1) == 1) {
        close(d->fd);
        free(d->path);
        free(d);
    }
}

typedef struct rjob {
    cf_entry e;
    rdir *dir;     /* the file's parent directory */
    uint64_t seq0; /* the fetch sequence number of its first chunk */
} rjob;

typedef struct rpool {
    cf_repo *repo;
    cf_fetch *fetch;
    cf_extract *x;
    int salvage;
    json_t *unrestored; /* --salvage: what could not be read (under mu) */
    uint64_t files;     /* files written (under mu) */
    rjob *q[QCAP];
    size_t head, tail;
    size_t qchunks; /* chunks of the queued files */
    int closing, failed;
    char err[2048];
    pthread_mutex_t mu;
    pthread_cond_t nonempty, nonfull;
} rpool;

/* --salvage: n zero bytes for what could not be read, noted as a range. */
static int write_hole(cf_xfile *f, uint64_t n, json_t *ranges)
{
    static const char zeros[65536];
    uint64_t from = f->written;
    if (n > f->e->size - f->written)
        n = f->e->size - f->written;
    while (n) {
        size_t k = n > sizeof zeros ? sizeof zeros : (size_t)n;
        if (cf_extract_file_data(f, zeros, k) != 0)
            return -1;
        n -= k;
    }
    size_t last = json_array_size(ranges);
    json_t *prev = last ? json_array_get(ranges, last - 1) : NULL;
    if (prev && (uint64_t)json_integer_value(json_array_get(prev, 1)) == from)
        json_array_set_new(prev, 1, json_integer((json_int_t)f->written));
    else if (f->written > from)
        json_array_append_new(ranges, json_pack("[I,I]", (json_int_t)from,
                                                (json_int_t)f->written));
    return 0;
}

static int write_file(rpool *p, rjob *j, cf_buf *buf)
{
    cf_xfile f;
    int rc = cf_extract_file_begin(p->x, j->dir->fd, &j->e, &f);
    if (rc != 0) {
        cf_fetch_skip(p->fetch, j->seq0, j->e.nchunks);
        return -1;
    }
    json_t *ranges = p->salvage ? json_array() : NULL;
    char why[512] = "";
    for (size_t i = 0; i < j->e.nchunks; i++) {
        size_t next = i + 1; /* the first chunk not taken */
        if (cf_cancel_flag) {
            rc = cf_fail("cancelled");
            next = i;
        } else if (cf_fetch_take(p->fetch, j->seq0 + i, buf) != 0) {
            cf_error_prefix("%s", j->e.path);
            rc = -1;
            if (p->salvage) {
                if (!why[0])
                    snprintf(why, sizeof why, "%s", cf_error());
                int64_t sz = cf_repo_chunk_size(p->repo, &j->e.chunks[i]);
                rc = write_hole(&f, sz > 0 ? (uint64_t)sz : 0, ranges);
            }
        } else if (buf->len > j->e.size - f.written) {
            rc = cf_fail("%s: the chunks hold more than the %llu bytes the set recorded",
                         j->e.path, (unsigned long long)j->e.size);
        } else {
            rc = cf_extract_file_data(&f, buf->data, buf->len);
            cf_progress_add(buf->len, 0);
        }
        if (rc != 0) {
            cf_fetch_skip(p->fetch, j->seq0 + next, j->e.nchunks - next);
            cf_extract_file_abort(&f);
            json_decref(ranges);
            return -1;
        }
    }
    /* a chunk of unknown size: the rest of the file is a hole */
    if (ranges && json_array_size(ranges) && f.written < j->e.size &&
        write_hole(&f, j->e.size - f.written, ranges) != 0) {
        cf_extract_file_abort(&f);
        json_decref(ranges);
        return -1;
    }
    cf_progress_add(0, 1);
    rc = cf_extract_file_end(p->x, &f);
    pthread_mutex_lock(&p->mu);
    if (rc == 0)
        p->files++;
    if (rc == 0 && ranges && json_array_size(ranges)) {
        cf_log(CF_LOG_ERROR, "%s: %zu byte range(s) could not be read, written as zeros: %s",
               j->e.path, json_array_size(ranges), why);
        json_array_append_new(p->unrestored,
                              json_pack("{s:s,s:s,s:I,s:O,s:s}", "component", j->e.component,
                                        "path", j->e.path, "size", (json_int_t)j->e.size,
                                        "missing", ranges, "error", why));
    }
    pthread_mutex_unlock(&p->mu);
    json_decref(ranges);
    return rc;
}

static void job_free(rjob *j)
{
    rdir_put(j->dir);
    cf_entry_clear(&j->e);
    free(j);
}

static void *rworker(void *arg)
{
    rpool *p = arg;
    cf_buf buf = {0};
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->head == p->tail && !p->closing)
            pthread_cond_wait(&p->nonempty, &p->mu);
        if (p->head == p->tail)
            break;
        rjob *j = p->q[p->head++ % QCAP];
        p->qchunks -= j->e.nchunks;
        pthread_cond_signal(&p->nonfull);
        int skip = p->failed;
        pthread_mutex_unlock(&p->mu);
        if (skip)
            cf_fetch_skip(p->fetch, j->seq0, j->e.nchunks);
        int rc = skip ? 0 : write_file(p, j, &buf);
        job_free(j);
        pthread_mutex_lock(&p->mu);
        if (rc != 0 && !p->failed) {
            p->failed = 1;
            snprintf(p->err, sizeof p->err, "%s", cf_error());
        }
    }
    pthread_mutex_unlock(&p->mu);
    cf_buf_free(&buf);
    return NULL;
}

/* Write every entry of a files component beneath the directory dirfd.
 * Directories are made in manifest order by this thread, files are
 * written by the workers into parent directories this thread resolved.
 * Links and directory metadata come last: restore_files hands back its
 * extract for the caller to finish (engine/extract.h) once no other
 * component writes into the staging tree. */
typedef struct rsub {
    cf_select *sel;     /* NULL: every entry */
    json_t *chosen;     /* "component/path" of chosen entries */
    json_t *unrestored; /* --salvage list, or NULL */
    uint64_t files;
    _Atomic int *halt; /* set: another component failed, stop */
} rsub;

/* Whether a subset restore chose this entry of component comp (every
 * entry when there is no selection). */
static int chosen(const rsub *sub, const char *comp, const cf_entry *e)
{
    if (!sub->sel || !e->path)
        return 1;
    char *full = cf_asprintf("%s/%s", comp, e->path);
    int take = json_object_get(sub->chosen, full) != NULL ||
               (e->kind == CF_ENT_DIR && cf_select_is_parent(sub->sel, comp, e->path));
    free(full);
    return take;
}

/* A first pass over the manifest names every chunk the component's files
 * will want, so that a chunk several files share is read once
 * (cf_fetch_note). Errors are left to the pass that restores. */
static void note_chunks(cf_repo *repo, const char *set_id, const char *comp, const rsub *sub,
                        cf_fetch *f)
{
    cf_mreader *m;
    json_t *h;
    if (cf_manifest_open(repo, set_id, &m, &h) != 0)
        return;
    json_decref(h);
    double t0 = cf_now();
    uint64_t n = 0;
    cf_entry e;
    while (cf_manifest_next(m, &e) == 1) {
        if (e.kind == CF_ENT_FILE && strcmp(e.component, comp) == 0 && chosen(sub, comp, &e)) {
            cf_fetch_note(f, e.chunks, e.nchunks);
            n += e.nchunks;
        }
        cf_entry_clear(&e);
    }
    cf_manifest_close(m);
    cf_log(CF_LOG_DEBUG, "component '%s': %llu chunks named in %.3f s", comp, (unsigned long long)n,
           cf_now() - t0);
}

/* What a files component needs before its first file: the manifest
 * opened, the reader made and the chunks named. It is made while the
 * component before it restores (ftask_main). */
typedef struct fprep {
    cf_mreader *m; /* NULL: the manifest could not be opened (err) */
    cf_fetch *fetch;
    cf_extract *x;
    char err[2048];
} fprep;

static void files_prep(cf_repo *repo, const char *set_id, const char *comp, int dirfd,
                       const rsub *sub, fprep *fp)
{
    json_t *h;
    if (cf_manifest_open(repo, set_id, &fp->m, &h) != 0) {
        fp->m = NULL;
        snprintf(fp->err, sizeof fp->err, "%s", cf_error());
        return;
    }
    /* A component of a few files shares few chunks: not worth a pass. */
    json_t *files = json_object_get(cf_set_component(h, comp), "files");
    json_int_t nfiles = json_is_integer(files) ? json_integer_value(files) : -1;
    json_decref(h);
    fp->fetch = cf_fetch_new(repo, 0);
    fp->x = cf_extract_new(dirfd);
    if ((nfiles < 0 || nfiles >= 16) && cf_fetch_keep_in(fp->fetch, dirfd) == 0)
        note_chunks(repo, set_id, comp, sub, fp->fetch);
}

static void fprep_free(fprep *fp)
{
    cf_fetch_free(fp->fetch);
    cf_extract_free(fp->x);
    cf_manifest_close(fp->m);
    memset(fp, 0, sizeof *fp);
}

static int restore_files(cf_repo *repo, const char *set_id, const char *comp, rsub *sub, fprep *fp,
                         cf_extract **xout)
{
    if (!fp->m)
        return cf_fail("%s", fp->err);
    cf_mreader *m = fp->m;
    rpool p = {.repo = repo,
               .fetch = fp->fetch,
               .x = fp->x,
               .salvage = sub->unrestored != NULL,
               .unrestored = sub->unrestored};
    memset(fp, 0, sizeof *fp); /* taken over */
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.nonempty, NULL);
    pthread_cond_init(&p.nonfull, NULL);
    int nt = cf_worker_count();
    pthread_t *th = cf_calloc((size_t)nt, sizeof *th);
    for (int i = 0; i < nt; i++)
        pthread_create(&th[i], NULL, rworker, &p);
    double t0 = cf_now();
    cf_repo_stats st0;
    cf_repo_get_stats(repo, &st0);
    rdir *dir = NULL; /* of the last file queued */
    cf_entry e;
    int rc;
    while ((rc = cf_manifest_next(m, &e)) == 1) {
        if (strcmp(e.component, comp) != 0 || e.kind == CF_ENT_OTHER) {
            cf_entry_clear(&e);
            continue;
        }
        if (!chosen(sub, comp, &e)) {
            cf_entry_clear(&e);
            continue;
        }
        if (cf_entry_check(&e) != 0) {
            rc = -1; /* prefixed with the set and component below */
            cf_entry_clear(&e);
            break;
        }
        if (e.kind == CF_ENT_META || e.kind == CF_ENT_STREAM || e.kind == CF_ENT_OBJECT) {
            rc = cf_fail("%s: refused: a %s entry in a files component", e.path ? e.path : "-",
                         cf_ent_kind_name(e.kind));
            cf_entry_clear(&e);
            break;
        }
        if (e.kind != CF_ENT_FILE) {
            rc = cf_extract_entry(p.x, &e);
            cf_entry_clear(&e);
            if (rc != 0)
                break;
            continue;
        }
        int pfd = cf_extract_parent(p.x, &e);
        const char *slash = strrchr(e.path, '/');
        size_t plen = slash ? (size_t)(slash - e.path) : 0;
        if (pfd >= 0 && dir && strlen(dir->path) == plen && strncmp(dir->path, e.path, plen) == 0) {
            close(pfd);
            pfd = dir->fd;
        } else if (pfd >= 0) {
            rdir_put(dir);
            dir = cf_calloc(1, sizeof *dir);
            dir->fd = pfd;
            dir->refs = 1;
            dir->path = cf_strndup(e.path, plen);
        }
        if (pfd < 0) {
            rc = -1;
            cf_entry_clear(&e);
            break;
        }
        rjob *j = cf_calloc(1, sizeof *j);
        j->e = e;
        j->dir = dir;
        atomic_fetch_add(&dir->refs, 1);
        j->seq0 = cf_fetch_want(p.fetch, e.chunks, e.nchunks);
        pthread_mutex_lock(&p.mu);
        while ((p.tail - p.head >= QCAP || (p.qchunks >= QCHUNKS && p.tail > p.head)) &&
               !p.failed)
            pthread_cond_wait(&p.nonfull, &p.mu);
        int failed = p.failed;
        if (!failed) {
            p.q[p.tail++ % QCAP] = j;
            p.qchunks += j->e.nchunks;
            pthread_cond_signal(&p.nonempty);
        }
        pthread_mutex_unlock(&p.mu);
        if (failed) {
            cf_fetch_skip(p.fetch, j->seq0, j->e.nchunks);
            job_free(j);
            break;
        }
        if (cf_cancel_flag || (sub->halt && atomic_load(sub->halt))) {
            rc = cf_fail(cf_cancel_flag ? "cancelled" : "stopped: another component failed");
            break;
        }
    }
    if (rc > 0)
        rc = 0;
    rdir_put(dir);
    char saved[2048];
    snprintf(saved, sizeof saved, "%s", cf_error());
    pthread_mutex_lock(&p.mu);
    p.closing = 1;
    if (rc != 0)
        p.failed = 1;
    pthread_cond_broadcast(&p.nonempty);
    pthread_mutex_unlock(&p.mu);
    for (int i = 0; i < nt; i++)
        pthread_join(th[i], NULL);
    free(th);
    int nthreads = cf_fetch_threads(p.fetch);
    uint64_t kept = cf_fetch_kept_hits(p.fetch);
    cf_fetch_free(p.fetch);
    if (rc != 0)
        cf_fail("%s", saved);
    else if (p.failed)
        rc = cf_fail("%s", p.err);
    if (rc == 0) {
        cf_repo_stats st1;
        cf_repo_get_stats(repo, &st1);
        double dt = cf_now() - t0, mib = (double)(st1.bytes_read - st0.bytes_read) / 1048576.0;
        cf_log(CF_LOG_INFO,
               "component '%s': %llu files in %.1f s; read %.1f MiB of packs in %llu ranged "
               "reads (%.0f MiB/s) on %d connections (round trip %.1f ms); %llu repeated "
               "chunks not read again",
               comp, (unsigned long long)p.files, dt, mib,
               (unsigned long long)(st1.reads - st0.reads), dt > 0 ? mib / dt : 0.0, nthreads,
               cf_store_round_trip(cf_repo_store(repo)) * 1e3, (unsigned long long)kept);
    }
    sub->files += p.files;
    if (rc != 0)
        cf_error_prefix("set %s, component '%s'", set_id, comp);
    if (rc == 0)
        *xout = p.x; /* links and directory metadata: cf_extract_finish */
    else
        cf_extract_free(p.x);
    cf_manifest_close(m);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.nonempty);
    pthread_cond_destroy(&p.nonfull);
    return rc;
}

/* ---- orchestration ---------------------------------------------------- */

typedef struct dest {
    char *root;    /* absolute destination root */
    char *staging; /* root/.coffer-restore-<set> */
    int rootfd, stagefd;
    char **units;  /* relative paths moved into place */
    size_t nunits;
} dest;

typedef struct rstate {
    dest *d;
    size_t nd;
} rstate;

/* The destination root (made if missing: it is the operator's choice, so
 * its own path may hold links) and a fresh private staging directory in
 * it, both held open: everything below them is resolved from these. */
static dest *dest_get(rstate *s, const char *root, const char *set_id)
{
    for (size_t i = 0; i < s->nd; i++)
        if (strcmp(s->d[i].root, root) == 0)
            return &s->d[i];
    if (mkdir_p(root, 0755) != 0)
        return NULL;
    int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) {
        cf_fail_errno("cannot open restore target %s", root);
        return NULL;
    }
    char *name = cf_asprintf(".coffer-restore-%s", set_id);
    char *staging = cf_asprintf("%s/%s", root, name);
    if (mkdirat(rootfd, name, 0700) != 0 && errno == EEXIST) {
        cf_log(CF_LOG_WARN, "removing %s, left by an interrupted restore", staging);
        cf_rmtree(staging);
        mkdirat(rootfd, name, 0700); /* a failure shows at the open below */
    }
    int stagefd = openat(rootfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    free(name);
    if (stagefd < 0) {
        cf_fail_errno("cannot create staging directory %s", staging);
        free(staging);
        close(rootfd);
        return NULL;
    }
    s->d = cf_realloc(s->d, (s->nd + 1) * sizeof *s->d);
    dest *d = &s->d[s->nd++];
    memset(d, 0, sizeof *d);
    d->root = cf_strdup(root);
    d->staging = staging;
    d->rootfd = rootfd;
    d->stagefd = stagefd;
    return d;
}

static void dest_add_unit(dest *d, const char *u)
{
    d->units = cf_realloc(d->units, (d->nunits + 1) * sizeof(char *));
    d->units[d->nunits++] = cf_strdup(u);
}

static int inside(const char *a, const char *b) /* a strictly inside b */
{
    size_t l = strlen(b);
    return strncmp(a, b, l) == 0 && a[l] == '/';
}

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

/* rename(2) that never replaces what is at the destination. */
static int rename_noreplace(int ofd, const char *old, int nfd, const char *new)
{
    return (int)syscall(SYS_renameat2, ofd, old, nfd, new, RENAME_NOREPLACE);
}

/* Move one unit from staging into place; what it replaces goes aside to
 * root/.coffer-previous-<set>/. Both sides are resolved beneath their
 * roots without following links: a link in the live tree is moved aside
 * as a link, never followed. */
static int swap_unit(dest *d, const char *u, int *prevfd, const char *prevname)
{
    const char *sbase, *dbase;
    struct stat st;
    int spfd = cf_beneath_parent(d->stagefd, u, 0, &sbase);
    int staged = spfd >= 0 && fstatat(spfd, sbase, &st, AT_SYMLINK_NOFOLLOW) == 0;
    int dpfd = cf_beneath_parent(d->rootfd, u, 0755, &dbase);
    int rc = 0;
    if (dpfd < 0) {
        rc = errno == ELOOP || errno == ENOTDIR
                 ? cf_fail("%s/%s: refused: the target has a symbolic link or a file on the "
                           "way; coffer does not restore through links",
                           d->root, u)
                 : cf_fail_errno("%s/%s: cannot open its directory", d->root, u);
    } else if (fstatat(dpfd, dbase, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (*prevfd < 0) {
            if (mkdirat(d->rootfd, prevname, 0700) != 0 && errno != EEXIST)
                rc = cf_fail_errno("cannot create %s/%s", d->root, prevname);
            else if ((*prevfd = cf_beneath_open(d->rootfd, prevname, O_RDONLY | O_DIRECTORY,
                                                0)) < 0)
                rc = cf_fail_errno("cannot open %s/%s", d->root, prevname);
        }
        const char *abase;
        int apfd = rc == 0 ? cf_beneath_parent(*prevfd, u, 0700, &abase) : -1;
        if (rc == 0 && apfd < 0)
            rc = cf_fail_errno("cannot create the directory for %s/%s/%s", d->root, prevname, u);
        else if (rc == 0 && rename_noreplace(dpfd, dbase, apfd, abase) != 0)
            rc = cf_fail_errno("cannot move %s/%s aside to %s/%s/%s", d->root, u, d->root,
                               prevname, u);
        if (apfd >= 0)
            close(apfd);
    }
    if (rc == 0 && staged && rename_noreplace(spfd, sbase, dpfd, dbase) != 0)
        rc = cf_fail_errno("cannot move %s/%s into place", d->root, u);
    if (spfd >= 0)
        close(spfd);
    if (dpfd >= 0)
        close(dpfd);
    return rc;
}

/* Move staged units into place; whatever they replace is kept aside in
 * root/.coffer-previous-<set>/ for the operator to inspect or remove. */
static int swap_in(dest *d, const char *set_id)
{
    /* A component of the whole root ("."): every top-level entry it wrote. */
    for (size_t i = 0; i < d->nunits; i++) {
        if (strcmp(d->units[i], ".") != 0)
            continue;
        int fd = fcntl(d->stagefd, F_DUPFD_CLOEXEC, 0);
        DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
        struct dirent *de;
        while (dir && (de = readdir(dir)) != NULL)
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                dest_add_unit(d, de->d_name);
        if (dir)
            closedir(dir);
        else if (fd >= 0)
            close(fd);
    }
    char *prevname = cf_asprintf(".coffer-previous-%s", set_id);
    int prevfd = -1, rc = 0;
    for (size_t i = 0; i < d->nunits && rc == 0; i++) {
        const char *u = d->units[i];
        if (strcmp(u, ".") == 0)
            continue;
        int covered = 0;
        for (size_t k = 0; k < d->nunits; k++)
            if (k != i && (inside(u, d->units[k]) || (strcmp(u, d->units[k]) == 0 && k < i)))
                covered = 1;
        if (!covered)
            rc = swap_unit(d, u, &prevfd, prevname);
    }
    if (prevfd >= 0) {
        close(prevfd);
        cf_log(CF_LOG_INFO, "replaced files were kept in %s/%s", d->root, prevname);
    }
    free(prevname);
    if (rc == 0)
        cf_rmtree(d->staging);
    return rc;
}

/* Move a file a database driver restored in its private directory into
 * the staging tree (never over anything there). */
static int move_owned(int privfd, dest *d, const char *rel)
{
    const char *sbase, *dbase;
    struct stat st;
    int spfd = cf_beneath_parent(privfd, rel, 0, &sbase);
    if (spfd < 0 || fstatat(spfd, sbase, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (spfd >= 0)
            close(spfd);
        return 0; /* the driver wrote no such file (a -wal, say) */
    }
    int rc = 0;
    int dpfd = cf_beneath_parent(d->stagefd, rel, 0755, &dbase);
    if (dpfd < 0)
        rc = cf_fail("%s: refused: a symbolic link or a file of the set is on its way", rel);
    else if (rename_noreplace(spfd, sbase, dpfd, dbase) != 0)
        rc = errno == EEXIST
                 ? cf_fail("%s: refused: another component of the set holds this path", rel)
                 : cf_fail_errno("%s: cannot move into the staging directory", rel);
    close(spfd);
    if (dpfd >= 0)
        close(dpfd);
    return rc;
}

/* Names (up to a few) of what a database driver left in its private
 * directory besides directories: files it wrote but did not claim. */
static size_t unclaimed(int dirfd, const char *prefix, cf_buf *names, size_t n)
{
    int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return n;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *rel = *prefix ? cf_asprintf("%s/%s", prefix, de->d_name) : cf_strdup(de->d_name);
        struct stat st;
        if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                n = unclaimed(sub, rel, names, n);
                close(sub);
            }
        } else {
            if (n < 5) {
                if (names->len)
                    cf_buf_append(names, ", ", 2);
                cf_buf_append(names, rel, strlen(rel));
            }
            n++;
        }
        free(rel);
    }
    closedir(d);
    return n;
}

int cf_restore_check_maps(const cf_restore_opts *o, json_t *comps)
{
    for (size_t i = 0; i < o->nmaps; i++) {
        const char *eq = strchr(o->maps[i], '=');
        int found = 0;
        size_t k;
        json_t *c;
        json_array_foreach(comps, k, c)
        {
            const char *n = json_string_value(json_object_get(c, "name"));
            if (eq && n && strlen(n) == (size_t)(eq - o->maps[i]) &&
                strncmp(n, o->maps[i], strlen(n)) == 0)
                found = 1;
        }
        if (!eq || !found || !eq[1])
            return cf_fail("--map %s: expected NAME=VALUE with NAME a component being restored",
                           o->maps[i]);
    }
    return 0;
}

const char *cf_restore_map(const cf_restore_opts *o, const char *name)
{
    size_t l = strlen(name);
    for (size_t i = 0; i < o->nmaps; i++)
        if (strncmp(o->maps[i], name, l) == 0 && o->maps[i][l] == '=')
            return o->maps[i] + l + 1;
    return NULL;
}

int cf_dir_nonempty(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n > 0;
}

char *cf_abspath(const char *p)
{
    if (p[0] == '/')
        return cf_strdup(p);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return cf_strdup(p);
    return cf_asprintf("%s/%s", cwd, p);
}

typedef struct check_ctx {
    json_t *arr;
    const char *component;
} check_ctx;

/* A database check's line names its component: a policy with two
 * databases has two "rows.users" checks. */
static void check_cb(void *ud, int ok, const char *check, const char *detail)
{
    check_ctx *c = ud;
    json_array_append_new(c->arr, json_pack("{s:s,s:s,s:b,s:s}", "component", c->component,
                                            "check", check, "ok", ok, "detail",
                                            detail ? detail : ""));
    cf_log(ok ? CF_LOG_INFO : CF_LOG_ERROR, "check %s: %s: %s%s%s", c->component, check,
           ok ? "ok" : "FAILED", detail && *detail ? ": " : "", detail ? detail : "");
}

/* Component order: the policy's declaration order, then components of
 * the set the policy no longer declares. */
size_t cf_restore_order(const cf_policy *p, json_t *set_comps, const cf_restore_opts *o,
                            json_t **ordered)
{
    json_t *out = json_array();
    for (size_t i = 0; i < p->ncomponents; i++) {
        size_t k;
        json_t *c;
        json_array_foreach(set_comps, k, c)
        {
            const char *n = json_string_value(json_object_get(c, "name"));
            if (n && strcmp(n, p->components[i].name) == 0)
                json_array_append(out, c);
        }
    }
    size_t k;
    json_t *c;
    json_array_foreach(set_comps, k, c)
    {
        const char *n = json_string_value(json_object_get(c, "name"));
        if (!cf_policy_component(p, n ? n : ""))
            json_array_append(out, c);
    }
    /* Object stores come last, whatever the declaration order. */
    json_t *sorted = json_array();
    for (int pass = 0; pass < 2; pass++)
        json_array_foreach(out, k, c)
        {
            int obj = strcmp(json_string_value(json_object_get(c, "type")) ?: "", "object_store") == 0;
            if (obj == pass)
                json_array_append(sorted, c);
        }
    json_decref(out);
    out = sorted;
    if (o->nonly) {
        json_t *f = json_array();
        json_array_foreach(out, k, c)
        {
            if (cf_restore_only_has(o, json_string_value(json_object_get(c, "name")) ?: ""))
                json_array_append(f, c);
        }
        json_decref(out);
        out = f;
    }
    *ordered = out;
    return json_array_size(out);
}

/* A subset restore: the components it restores. Files components the
 * patterns reach into; others only when --only names them. */
static json_t *subset_comps(const cf_restore_opts *o, json_t *all)
{
    json_t *out = json_array();
    size_t k;
    json_t *c;
    json_array_foreach(all, k, c)
    {
        const char *n = json_string_value(json_object_get(c, "name")) ?: "";
        int files = strcmp(json_string_value(json_object_get(c, "type")) ?: "", "files") == 0;
        if (files ? cf_select_names_component(o->select, n) : cf_restore_only_has(o, n))
            json_array_append(out, c);
    }
    return out;
}

/* One pass over the set before anything is written: which entries the
 * patterns choose (chosen), the units to move into place in place
 * (units: component -> paths) and what that is (files, bytes). A pattern
 * taking nothing fails the restore here. */
static int subset_choose(cf_repo *repo, const char *set_id, json_t *comps, cf_select *sel,
                         json_t *chosen, json_t *units, uint64_t *files, uint64_t *bytes)
{
    cf_mreader *m;
    json_t *h;
    if (cf_manifest_open(repo, set_id, &m, &h) != 0)
        return -1;
    json_decref(h);
    cf_entry e;
    int rc;
    while ((rc = cf_manifest_next(m, &e)) == 1) {
        json_t *u = json_object_get(units, e.component);
        if (!u || !e.path ||
            (e.kind != CF_ENT_FILE && e.kind != CF_ENT_DIR && e.kind != CF_ENT_SYMLINK &&
             e.kind != CF_ENT_HARDLINK) ||
            !cf_select_match(sel, e.component, e.path)) {
            cf_entry_clear(&e);
            continue;
        }
        const char *paths[2] = {e.path, e.kind == CF_ENT_HARDLINK ? e.target : NULL};
        for (int i = 0; i < 2 && paths[i]; i++) {
            char *full = cf_asprintf("%s/%s", e.component, paths[i]);
            if (!json_object_get(chosen, full)) {
                json_object_set_new(chosen, full, json_true());
                cf_select_note_chosen(sel, e.component, paths[i]);
                if (e.kind != CF_ENT_DIR)
                    json_array_append_new(u, json_string(paths[i]));
            }
            free(full);
        }
        if (e.kind == CF_ENT_FILE) {
            (*files)++;
            *bytes += e.size;
        }
        cf_entry_clear(&e);
    }
    cf_manifest_close(m);
    (void)comps;
    if (rc < 0)
        return -1;
    const char *none = cf_select_unmatched(sel);
    if (none)
        return cf_fail("set %s: nothing matches '%s'; nothing was restored", set_id, none);
    return 0;
}

/* --salvage: a database component is restored only if every chunk of its
 * streams reads back; otherwise it is listed and left out. */
static int db_readable(cf_repo *repo, const char *set_id, const char *name, char *why,
                       size_t wlen)
{
    cf_dbsource *src;
    if (cf_dbsource_load(repo, set_id, name, &src) != 0) {
        snprintf(why, wlen, "%s", cf_error());
        return 0;
    }
    cf_buf b = {0};
    int ok = 1;
    for (size_t i = 0; i < src->n && ok; i++)
        for (size_t k = 0; k < src->streams[i].nchunks && ok; k++)
            if (cf_repo_get_chunk(repo, &src->streams[i].chunks[k], &b) != 0) {
                snprintf(why, wlen, "stream %s: %s", src->streams[i].name, cf_error());
                ok = 0;
            }
    cf_buf_free(&b);
    cf_dbsource_free(src);
    return ok;
}

static void salvage_report(const char *root, const char *set_id, json_t *list)
{
    char *path = cf_asprintf("%s/%s", root, CF_SALVAGE_REPORT);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        cf_log(CF_LOG_ERROR, "cannot write %s", path);
        if (fd >= 0)
            close(fd);
        free(path);
        return;
    }
    fprintf(f, "coffer restore --salvage of set %s: INCOMPLETE.\n"
               "What follows could not be read from the repository. Files listed with\n"
               "byte ranges hold zeros there; components listed alone were not restored.\n\n",
            set_id);
    size_t i;
    json_t *u;
    json_array_foreach(list, i, u)
    {
        const char *path_ = json_string_value(json_object_get(u, "path"));
        fprintf(f, "%s/%s", json_string_value(json_object_get(u, "component")),
                path_ ? path_ : "(component not restored)");
        size_t k;
        json_t *r;
        json_array_foreach(json_object_get(u, "missing"), k, r)
            fprintf(f, " %lld-%lld", (long long)json_integer_value(json_array_get(r, 0)),
                    (long long)json_integer_value(json_array_get(r, 1)));
        fprintf(f, "\n    %s\n", json_string_value(json_object_get(u, "error")) ?: "");
    }
    fclose(f);
    free(path);
}

/* A set's files components are restored one after the other by a
 * thread of their own while this one restores its databases and object
 * stores: a tree's download overlaps a database's restore. The files
 * components write beneath the staging directories only; a database or
 * object store, which may be live, starts only once every component
 * before it in the set's order is restored. What else depends on order waits
 * until both are done and then follows the set's order, as a restore of
 * one component at a time would: links and directory metadata (a
 * database file moved into a directory would change its time), the
 * units moved into place, the report. --salvage keeps one thread: its
 * list of what could not be read is shared. */
typedef struct fjob {
    size_t ci; /* place in the restore order */
    const char *name;
    int stagefd;
    fprep prep; /* made ahead (prepped), taken over by restore_files */
    int prepped;
    cf_extract *x; /* restored, links and directory metadata to come */
    int rc;        /* 0 restored, -1 failed, 1 not run */
    int halted;    /* failed because the other thread had */
    char err[2048];
} fjob;

typedef struct ftask {
    cf_repo *repo;
    const char *set_id;
    rsub *sub;
    fjob *jobs;
    size_t n;
    pthread_t th;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t ndone; /* jobs restored, in order (under mu) */
    int over;     /* the thread has ended (under mu) */
} ftask;

static void fjob_prep(ftask *t, fjob *j)
{
    files_prep(t->repo, t->set_id, j->name, j->stagefd, t->sub, &j->prep);
    j->prepped = 1;
}

static void fjob_run(ftask *t, fjob *j)
{
    cf_log(CF_LOG_INFO, "restoring component '%s' (files)", j->name);
    if (!j->prepped)
        fjob_prep(t, j);
    j->rc = restore_files(t->repo, t->set_id, j->name, t->sub, &j->prep, &j->x);
    if (j->rc != 0) {
        j->halted = t->sub->halt && atomic_load(t->sub->halt);
        snprintf(j->err, sizeof j->err, "%s", cf_error());
    }
}

typedef struct fahead {
    ftask *t;
    fjob *j;
} fahead;

static void *fahead_main(void *arg)
{
    fahead *a = arg;
    fjob_prep(a->t, a->j);
    return NULL;
}

static void *ftask_main(void *arg)
{
    ftask *t = arg;
    for (size_t i = 0; i < t->n && !atomic_load(t->sub->halt); i++) {
        /* The next component's manifest is opened and its chunks named
         * while this one restores: its first read leaves at once. */
        fahead a = {t, i + 1 < t->n ? &t->jobs[i + 1] : NULL};
        pthread_t th;
        int ahead = a.j && pthread_create(&th, NULL, fahead_main, &a) == 0;
        fjob_run(t, &t->jobs[i]);
        if (ahead)
            pthread_join(th, NULL);
        if (t->jobs[i].rc != 0)
            break;
        pthread_mutex_lock(&t->mu);
        t->ndone++;
        pthread_cond_broadcast(&t->cv);
        pthread_mutex_unlock(&t->mu);
    }
    pthread_mutex_lock(&t->mu);
    t->over = 1;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* Waits until the first n files components are restored; 0 when they
 * are, -1 when one failed (its error is reported after the join). */
static int ftask_wait(ftask *t, size_t n)
{
    pthread_mutex_lock(&t->mu);
    while (t->ndone < n && !t->over)
        pthread_cond_wait(&t->cv, &t->mu);
    int rc = t->ndone >= n ? 0 : -1;
    pthread_mutex_unlock(&t->mu);
    return rc;
}

/* A unit to move into place, noted while components restore and added
 * to its destination in the set's order afterwards. */
typedef struct punit {
    size_t ci, seq, di; /* component, order noted, destination (rstate index) */
    char *u;
} punit;

static void punit_add(punit **v, size_t *n, size_t ci, size_t di, const char *u)
{
    *v = cf_realloc(*v, (*n + 1) * sizeof **v);
    (*v)[*n] = (punit){ci, *n, di, cf_strdup(u)};
    ++*n;
}

static int cmp_punit(const void *a, const void *b)
{
    const punit *x = a, *y = b;
    if (x->ci != y->ci)
        return x->ci < y->ci ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq ? 1 : 0;
}

/* The lock begun beside the restore (cf_run_lock_begin), waited for
 * before anything but the staging tree is written: the stop command, a
 * database or bucket restored, the swap into place. Its listing of the
 * sets, made once the lock was written, must still hold the set. */
static int lock_join(cf_run *run, const char *set_id)
{
    if (!run->early)
        return 0;
    char *still = NULL;
    if (cf_run_lock(run, 0, "restore") != 0 || cf_resolve_set(run, set_id, &still) != 0)
        return -1;
    free(still);
    return 0;
}

int cf_restore(cf_run *run, const cf_restore_opts *o, json_t **report)
{
    cf_policy *p = run->policy;
    char *set_id = NULL;
    /* With the lock beside it, the set is the one the plan resolved
     * (o->set, whole), confirmed by lock_join. */
    if (run->early && o->set && !o->in_place)
        set_id = cf_strdup(o->set);
    else if ((run->early && cf_run_lock(run, 0, "restore") != 0) ||
             cf_resolve_set(run, o->set ? o->set : "latest", &set_id) != 0)
        return CF_EXIT_FAILED;
    json_t *h;
    if (cf_manifest_header(run->repo, set_id, &h) != 0) {
        free(set_id);
        return CF_EXIT_FAILED;
    }
    json_t *rep = json_pack("{s:s,s:[],s:[],s:[]}", "set", set_id, "components", "checks",
                            "validate");
    *report = rep;
    json_t *comps = NULL;
    int rc = 0, exit_code = CF_EXIT_OK, usage = 0;
    char *root = NULL;
    rstate rs = {0};
    int stopped = 0;
    cf_restored restored = {0};

    const char *bad_only = cf_restore_only_missing(o, json_object_get(h, "components"));
    json_t *chosen = json_object(), *units = json_object();
    rsub sub = {.sel = o->select, .chosen = chosen,
                .unrestored = o->salvage ? json_array() : NULL};
    cf_repo_stats st0;
    cf_repo_get_stats(run->repo, &st0);
    if (!bad_only && o->select) {
        cf_restore_opts all = *o;
        all.nonly = 0;
        json_t *every = NULL;
        cf_restore_order(p, json_object_get(h, "components"), &all, &every);
        comps = subset_comps(o, every);
        json_decref(every);
        size_t k;
        json_t *c;
        json_array_foreach(comps, k, c)
            if (strcmp(json_string_value(json_object_get(c, "type")) ?: "", "files") == 0)
                json_object_set_new(units, json_string_value(json_object_get(c, "name")),
                                    json_array());
        uint64_t nf = 0, nb = 0;
        if (subset_choose(run->repo, set_id, comps, o->select, chosen, units, &nf, &nb) != 0) {
            rc = -1;
            goto out;
        }
        cf_log(CF_LOG_INFO, "subset: %llu file(s), %llu bytes chosen; the policy's checks and "
               "validate commands are skipped", (unsigned long long)nf, (unsigned long long)nb);
        json_object_set_new(rep, "subset", json_pack("{s:I,s:I}", "files", (json_int_t)nf,
                                                     "bytes", (json_int_t)nb));
    }
    if (bad_only || (!o->select && cf_restore_order(p, json_object_get(h, "components"), o,
                                                     &comps) == 0)) {
        rc = bad_only
                 ? cf_fail("--only %s: set %s has no component '%s'", bad_only, set_id, bad_only)
                 : cf_fail("set %s has no components", set_id);
        usage = bad_only != NULL;
        goto out;
    }
    if (cf_restore_check_maps(o, comps) != 0) {
        rc = -1;
        usage = 1;
        goto out;
    }
    root = o->in_place ? cf_strdup(p->root) : cf_abspath(o->to);
    cf_restored_init(&restored, root, set_id);
    if (!o->in_place && cf_dir_nonempty(root) && !o->force) {
        rc = cf_fail("restore target %s is not empty; use an empty directory or --force "
                     "(replaced files are kept aside)", root);
        goto out;
    }
    if (o->in_place && p->mode == CF_MODE_MAINTENANCE) {
        cf_log(CF_LOG_INFO, "maintenance: running stop command before restoring in place");
        int st = cf_run_command("stop command", p->stop_cmd, p->root, p->command_timeout, NULL);
        stopped = 1;
        if (st != 0) {
            if (st > 0)
                cf_fail("stop command `%s` failed with exit status %d; nothing was restored",
                        p->stop_cmd, st);
            rc = -1;
            goto out;
        }
    } else if (o->in_place) {
        cf_log(CF_LOG_WARN, "online policy: restoring in place while the application may run");
    }

    /* Before anything is restored: every component declared, every
     * files destination ready. Then the files components start. */
    size_t ncomps = json_array_size(comps), ci;
    json_t *cj;
    json_t **slot = cf_calloc(ncomps + 1, sizeof *slot); /* report entries */
    fjob *jobs = cf_calloc(ncomps + 1, sizeof *jobs);
    size_t njobs = 0, npu = 0;
    punit *pu = NULL;
    _Atomic int halt = 0;
    sub.halt = &halt;
    json_array_foreach(comps, ci, cj)
    {
        const char *name = json_string_value(json_object_get(cj, "name"));
        const char *type = json_string_value(json_object_get(cj, "type")) ?: "";
        if (!cf_policy_component(p, name) && !cf_restore_only_has(o, name)) {
            /* What a set holds beyond the policy is restored only when
             * asked for by name: a hand-made set could otherwise add a
             * component the operator never declared. */
            rc = cf_fail("set %s has component '%s', which policy '%s' does not declare; "
                         "restore it by name with --only %s if it is wanted",
                         set_id, name, p->name, name);
            break;
        }
        if (strcmp(type, "files") != 0)
            continue;
        const char *map = cf_restore_map(o, name);
        char *droot = map ? cf_abspath(map) : cf_strdup(root);
        if (map && !o->force && cf_dir_nonempty(droot)) {
            rc = cf_fail("--map %s: %s is not empty; use --force", name, droot);
            free(droot);
            break;
        }
        dest *d = dest_get(&rs, droot, set_id);
        free(droot);
        if (!d) {
            rc = -1;
            break;
        }
        jobs[njobs++] = (fjob){.ci = ci, .name = name, .stagefd = d->stagefd, .rc = 1};
        /* A subset over an existing tree (in place, or --force)
         * replaces the chosen entries one by one, never a whole
         * component path: what the patterns left out stays. */
        json_t *paths = o->select && (o->in_place || o->force) ? json_object_get(units, name)
                                                               : json_object_get(cj, "paths");
        size_t k;
        json_t *pv;
        json_array_foreach(paths, k, pv)
            punit_add(&pu, &npu, ci, (size_t)(d - rs.d), json_string_value(pv));
        slot[ci] = json_pack("{s:s,s:s}", "name", name, "destination", d->root);
    }
    json_t *tot = json_object_get(h, "totals");
    cf_progress_start("restore", (uint64_t)json_integer_value(json_object_get(tot, "bytes")),
                      run->no_progress);
    ftask ft = {.repo = run->repo, .set_id = set_id, .sub = &sub, .jobs = jobs, .n = njobs};
    pthread_mutex_init(&ft.mu, NULL);
    pthread_cond_init(&ft.cv, NULL);
    if (rc == 0 && njobs && !o->salvage)
        ft.started = pthread_create(&ft.th, NULL, ftask_main, &ft) == 0;
    size_t nextjob = 0;
    json_array_foreach(comps, ci, cj)
    {
        if (rc != 0)
            break;
        const char *name = json_string_value(json_object_get(cj, "name"));
        const char *type = json_string_value(json_object_get(cj, "type")) ?: "";
        if (strcmp(type, "files") == 0) {
            fjob *j = &jobs[nextjob++];
            if (!ft.started) {
                fjob_run(&ft, j);
                if (j->rc != 0)
                    rc = cf_fail("%s", j->err);
            }
            continue;
        }
        if (ft.started && ftask_wait(&ft, nextjob) != 0)
            break; /* a files component before this one failed */
        if (lock_join(run, set_id) != 0) {
            rc = -1;
            break;
        }
        const char *map = cf_restore_map(o, name);
        cf_log(CF_LOG_INFO, "restoring component '%s' (%s)", name, type);
        if (strcmp(type, "database") == 0) {
            const cf_component *pc = cf_policy_component(p, name);
            if (!pc || pc->type != CF_COMP_DATABASE) {
                rc = cf_fail("set %s: component '%s' is a database, but the policy no longer "
                             "declares it; its driver options are unknown",
                             set_id, name);
                break;
            }
            char why[1024];
            if (o->salvage && !db_readable(run->repo, set_id, name, why, sizeof why)) {
                cf_log(CF_LOG_ERROR, "component '%s' not restored: %s", name, why);
                json_array_append_new(sub.unrestored, json_pack("{s:s,s:n,s:s}", "component",
                                                                name, "path", "error", why));
                continue;
            }
            cf_dbsource *src;
            if (cf_dbsource_load(run->repo, set_id, name, &src) != 0) {
                rc = -1;
                break;
            }
            cf_dbinst db;
            if (cf_dbinst_open(pc, root, &db) != 0) {
                cf_dbsource_free(src);
                rc = -1;
                break;
            }
            dest *d = NULL;
            const char *droot = root;
            char *priv = NULL;
            int privfd = -1;
            if (!map && db.ops->owned_paths) {
                /* A file database is restored into an empty private
                 * directory, then its files are moved into the staging
                 * tree: the driver never meets a link that an earlier
                 * component of the set placed there. */
                d = dest_get(&rs, root, set_id);
                if (!d) {
                    rc = -1;
                } else {
                    char *pn = cf_asprintf(".coffer-db-%s", name);
                    priv = cf_asprintf("%s/%s", d->staging, pn);
                    if (mkdirat(d->stagefd, pn, 0700) != 0 ||
                        (privfd = openat(d->stagefd, pn,
                                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
                        rc = cf_fail_errno("cannot create %s", priv);
                    free(pn);
                    droot = priv;
                }
            }
            /* --force is about the restore directory. A server database
             * restored without --map is the live one: it is only ever
             * overwritten by --in-place, never by `--to DIR --force`. */
            int server_db = !db.ops->owned_paths;
            int force = server_db && !map ? o->in_place : (o->force || o->in_place);
            if (server_db && !map && o->force && !o->in_place)
                cf_log(CF_LOG_WARN, "component '%s': --force does not apply to the live "
                       "database; use --map %s=URL for another one, or --in-place", name, name);
            coffer_restore_opts ro = {.struct_size = sizeof ro, .root = droot, .target = map,
                                      .force = force, .create = 1, .final_root = root};
            if (rc == 0) {
                coffer_status st = db.ops->restore(db.inst, cf_dbsource_api(src), &ro);
                if (st != COFFER_OK)
                    rc = cf_hctx_fail(db.hctx, st, "restore failed");
            }
            if (rc == 0 && db.ops->verify) {
                check_ctx cc = {json_object_get(rep, "checks"), name};
                coffer_status st =
                    db.ops->verify(db.inst, cf_dbsource_api(src), &ro, check_cb, &cc);
                if (st != COFFER_OK)
                    exit_code = CF_EXIT_PROBLEMS;
            }
            if (rc == 0 && d) {
                const char *paths[16];
                size_t n = db.ops->owned_paths(db.inst, paths, 16);
                for (size_t k = 0; k < n && k < 16 && rc == 0; k++) {
                    if (cf_path_safe(paths[k]) != 0) {
                        rc = cf_fail("component '%s': driver '%s' claims '%s', which is not a "
                                     "plain path under the policy root; refused",
                                     name, pc->driver, paths[k]);
                        break;
                    }
                    rc = move_owned(privfd, d, paths[k]);
                    punit_add(&pu, &npu, ci, (size_t)(d - rs.d), paths[k]);
                }
                cf_buf left = {0};
                size_t nleft = rc == 0 ? unclaimed(privfd, "", &left, 0) : 0;
                if (nleft) {
                    cf_buf_append(&left, "", 1);
                    rc = cf_fail("component '%s': driver '%s' restored %zu file(s) it does not "
                                 "claim in owned_paths (%s%s); refusing a restore that would "
                                 "drop them",
                                 name, pc->driver, nleft, (char *)left.data,
                                 nleft > 5 ? ", ..." : "");
                }
                cf_buf_free(&left);
            }
            if (privfd >= 0)
                close(privfd);
            if (priv)
                cf_rmtree(priv);
            free(priv);
            if (rc == 0) {
                /* Where validate commands and checks find it. */
                const char *url = map ? map : cf_config_get(pc->options, "url");
                char *rurl = url ? cf_redact_url(url) : NULL;
                char *path = NULL, *furl = NULL;
                if (db.ops->owned_paths) {
                    const char *paths[16];
                    if (map)
                        path = cf_abspath(map);
                    else if (db.ops->owned_paths(db.inst, paths, 16) > 0)
                        path = cf_asprintf("%s/%s", root, paths[0]);
                    if (path)
                        furl = cf_asprintf("%s://%s", pc->driver, path);
                }
                cf_restored_add_db(&restored, name, furl ? furl : rurl, path, map);
                free(rurl);
                free(path);
                free(furl);
            }
            char *shown = cf_redact_url(map ? map : root);
            slot[ci] = json_pack("{s:s,s:s}", "name", name, "destination", shown);
            free(shown);
            cf_dbinst_close(&db);
            cf_dbsource_free(src);
        } else if (strcmp(type, "object_store") == 0) {
            const cf_component *pc = cf_policy_component(p, name);
            if (!pc || pc->type != CF_COMP_OBJECT_STORE) {
                rc = cf_fail("set %s: component '%s' is an object store the policy no longer "
                             "declares; its bucket settings are unknown",
                             set_id, name);
                break;
            }
            cf_objects_restore_opts oo = {.rollback = o->rollback_objects};
            char *dir = NULL;
            dest *d = NULL;
            if (pc->protect == CF_PROTECT_COPY) {
                if (o->in_place) {
                    oo.write_back = 1;
                } else {
                    /* a rehearsal never writes into the live bucket */
                    char *droot = map ? cf_abspath(map) : cf_strdup(root);
                    d = dest_get(&rs, droot, set_id);
                    free(droot);
                    if (!d) {
                        rc = -1;
                    } else {
                        dir = cf_asprintf("%s/%s", d->staging, name);
                        if (mkdirat(d->stagefd, name, 0700) != 0)
                            rc = cf_fail_errno("cannot create %s", dir);
                        oo.dir = dir;
                    }
                }
            }
            long np = rc == 0 ? cf_objects_restore(run, set_id, pc, &oo,
                                                   json_object_get(rep, "checks"))
                              : -1;
            if (np < 0)
                rc = -1;
            else if (np > 0)
                exit_code = CF_EXIT_PROBLEMS;
            if (d && rc == 0)
                punit_add(&pu, &npu, ci, (size_t)(d - rs.d), name);
            free(dir);
            slot[ci] = json_pack("{s:s,s:s}", "name", name, "destination",
                                 oo.write_back || pc->protect == CF_PROTECT_VERSIONING
                                     ? "bucket"
                                     : (d ? d->root : root));
        } else {
            rc = cf_fail("set %s: component '%s' has type '%s', which this build cannot restore",
                         set_id, name, type);
        }
    }
    /* The files components' thread ends here: at once when this one
     * failed. The first failure in the set's order is the one reported;
     * a component stopped by another's failure is not one. */
    size_t fail_ci = rc != 0 ? ci : SIZE_MAX;
    if (ft.started) {
        if (rc != 0)
            atomic_store(&halt, 1);
        pthread_join(ft.th, NULL);
    }
    pthread_mutex_destroy(&ft.mu);
    pthread_cond_destroy(&ft.cv);
    for (size_t i = 0; i < njobs; i++)
        if (jobs[i].rc < 0 && !jobs[i].halted && jobs[i].ci < fail_ci) {
            rc = cf_fail("%s", jobs[i].err);
            break;
        }
    for (size_t i = 0; i < njobs; i++) {
        fprep_free(&jobs[i].prep); /* made ahead, never run */
        if (rc == 0 && jobs[i].x && cf_extract_finish(jobs[i].x) != 0) {
            cf_error_prefix("set %s, component '%s'", set_id, jobs[i].name);
            rc = -1;
        }
        cf_extract_free(jobs[i].x);
    }
    free(jobs);
    if (npu)
        qsort(pu, npu, sizeof *pu, cmp_punit);
    for (size_t i = 0; i < npu; i++) {
        dest_add_unit(&rs.d[pu[i].di], pu[i].u);
        free(pu[i].u);
    }
    free(pu);
    for (size_t i = 0; i < ncomps; i++)
        if (slot[i])
            json_array_append_new(json_object_get(rep, "components"), slot[i]);
    free(slot);
    cf_progress_stop();
    if (rc == 0 && cf_cancel_flag)
        rc = cf_fail("cancelled");
    if (rc == 0)
        rc = lock_join(run, set_id);
    for (size_t i = 0; i < rs.nd && rc == 0; i++)
        rc = swap_in(&rs.d[i], set_id);

out:
    if (rc != 0) {
        char saved[2048];
        snprintf(saved, sizeof saved, "%s", cf_error());
        /* A read that failed under a lock not granted (a prune at work)
         * is explained by the lock. */
        if (run->early && lock_join(run, set_id) != 0)
            snprintf(saved, sizeof saved, "%s", cf_error());
        for (size_t i = 0; i < rs.nd; i++)
            cf_rmtree(rs.d[i].staging);
        cf_fail("%s", saved);
        exit_code = usage ? CF_EXIT_USAGE : CF_EXIT_FAILED;
    }
    if (stopped) {
        char saved[2048];
        snprintf(saved, sizeof saved, "%s", cf_error());
        int st = cf_run_command("start command", p->start_cmd, p->root, p->command_timeout, NULL);
        if (st != 0) {
            cf_log(CF_LOG_ERROR, "start command `%s` failed (%d): the application may be down",
                   p->start_cmd, st);
            if (exit_code == CF_EXIT_OK)
                exit_code = CF_EXIT_FAILED;
        }
        cf_fail("%s", saved);
    }
    /* The policy's checks read what was restored, where it now is; with
     * --only a part of the set is missing and they would all fail. */
    if (o->select || o->salvage) {
        cf_repo_stats st1;
        cf_repo_get_stats(run->repo, &st1);
        json_object_set_new(rep, "bytes_read", json_integer((json_int_t)(st1.bytes_read -
                                                                          st0.bytes_read)));
        json_object_set_new(rep, "reads", json_integer((json_int_t)(st1.reads - st0.reads)));
        json_object_set_new(rep, "files", json_integer((json_int_t)sub.files));
    }
    int damaged = sub.unrestored && json_array_size(sub.unrestored) > 0;
    if (sub.unrestored) {
        json_object_set(rep, "unrestored", sub.unrestored);
        if (rc == 0 && damaged) {
            salvage_report(root, set_id, sub.unrestored);
            exit_code = CF_EXIT_PROBLEMS;
        }
    }
    /* A subset or a salvaged restore is not the application as it was:
     * the policy's checks and validate commands would report on what is
     * missing. */
    int partial = o->nonly || o->select || damaged;
    json_object_set_new(rep, "policy_checks", json_array());
    if (rc == 0 && !partial && !o->no_checks && p->nchecks) {
        cf_checks_env ce = {.run = run, .set_id = set_id, .root = root, .ro = o,
                            .driver_checks = json_object_get(rep, "checks")};
        int nf = cf_checks_run(&ce, json_object_get(rep, "policy_checks"));
        if (nf != 0) {
            if (nf < 0)
                cf_log(CF_LOG_ERROR, "checks: %s", cf_error());
            exit_code = CF_EXIT_PROBLEMS;
        }
    }
    if (rc == 0 && !o->no_validate && !partial) {
        if (cf_validate_run(p, &restored, json_object_get(rep, "validate")) > 0)
            exit_code = CF_EXIT_PROBLEMS;
    }
    if (rc == 0)
        json_object_set_new(rep, "root", json_string(root));
    for (size_t i = 0; i < rs.nd; i++) {
        close(rs.d[i].rootfd);
        close(rs.d[i].stagefd);
        free(rs.d[i].root);
        free(rs.d[i].staging);
        cf_strv_free(rs.d[i].units, rs.d[i].nunits);
    }
    free(rs.d);
    cf_restored_free(&restored);
    json_decref(chosen);
    json_decref(units);
    json_decref(sub.unrestored);
    if (comps)
        json_decref(comps);
    json_decref(h);
    free(root);
    free(set_id);
    return exit_code;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int cf_previous_list(const char *root, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(root);
    if (!d)
        return errno == ENOENT ? 0 : cf_fail_errno("cannot read %s", root);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        if (strncmp(de->d_name, ".coffer-previous-", 17) != 0 ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode))
            continue;
        *names = cf_realloc(*names, (*n + 1) * sizeof **names);
        (*names)[(*n)++] = cf_strdup(de->d_name);
    }
    closedir(d);
    if (*n)
        qsort(*names, *n, sizeof **names, cmp_name);
    return 0;
}
