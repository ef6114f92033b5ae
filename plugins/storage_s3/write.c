/*
 * storage "s3": writers.
 *
 * Data of unknown length is collected in a part buffer. An object that
 * ends before filling one part goes up in a single PUT at commit; a longer
 * one becomes a multipart upload: each full part is handed to the
 * instance's upload threads (parallel_parts of them) while the writer goes
 * on filling the next buffer. Commit sends the last part, waits for all,
 * and publishes with CompleteMultipartUpload; any failure (and abort)
 * sends AbortMultipartUpload so no parts are left behind.
 *
 * Memory: part buffers of all writers of an instance share one budget of
 * part_size x parallel_parts bytes. A writer that needs a buffer waits
 * while the budget is spent, as long as some upload is in flight (which
 * will give memory back); when none is, it goes over rather than
 * deadlock (several writers each holding a half-full buffer). Buffers are
 * mmap'ed, and a freed one is kept for the next buffer of its size as
 * long as the buffers in use and those kept fit in the budget (the rest
 * go back to the system). Objects that stay under 1 MiB live in small
 * heap buffers outside the budget.
 */
#include "s3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>

#include <openssl/evp.h>

#define SMALL_MAX (1u << 20)

typedef struct s3_writer s3_writer;

struct s3_job {
    s3_job *next;
    s3_writer *w;
    int part; /* 1-based */
    char *buf;
    size_t len, cap;
};

struct s3_writer {
    uint32_t magic; /* COFFER_MAGIC_WRITER until commit/abort */
    s3_instance *in;
    char *key;  /* as the caller named it, for messages */
    char *okey; /* with the prefix */
    uint32_t flags;
    const char *lock_mode; /* "GOVERNANCE"/"COMPLIANCE", NULL: no retention of ours */
    char lock_until[32];   /* its retain-until date */
    coffer_lock_mode lock;
    int64_t until;
    char *buf; /* part being filled */
    size_t len, cap;
    size_t first_cap; /* the first part buffer's size (see s3_writer_open) */
    int mapped; /* buf is an mmap'ed part buffer counted in the budget */
    uint64_t total;
    char *upload_id;
    int nparts;        /* parts handed to the upload threads */
    char (*etags)[80]; /* under in->lock */
    int etag_cap;
    int inflight;      /* under in->lock */
    coffer_status err; /* first failure of a part, under in->lock */
    char errmsg[S3_ERRMSG];
    int aborting; /* under in->lock: queued parts are dropped */
};

/* ---- part buffers ------------------------------------------------------------ */

static char *part_alloc(s3_instance *in, size_t size)
{
    pthread_mutex_lock(&in->lock);
    while (in->mem_used + size > in->mem_limit && in->inflight > 0)
        pthread_cond_wait(&in->cv, &in->lock);
    in->mem_used += size;
    for (int i = in->nspare - 1; i >= 0; i--)
        if (in->spare[i].size == size) {
            char *p = in->spare[i].p;
            in->spare[i] = in->spare[--in->nspare];
            in->spare_bytes -= size;
            pthread_mutex_unlock(&in->lock);
            return p;
        }
    /* none of this size: give back kept ones that no longer fit */
    struct s3_spare drop[S3_SPARES];
    int ndrop = 0;
    while (in->nspare > 0 && in->mem_used + in->spare_bytes > in->mem_limit) {
        drop[ndrop] = in->spare[--in->nspare];
        in->spare_bytes -= drop[ndrop++].size;
    }
    pthread_mutex_unlock(&in->lock);
    for (int i = 0; i < ndrop; i++)
        munmap(drop[i].p, drop[i].size);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        pthread_mutex_lock(&in->lock);
        in->mem_used -= size;
        pthread_cond_broadcast(&in->cv);
        pthread_mutex_unlock(&in->lock);
        return NULL;
    }
    return p;
}

/* Caller holds in->lock. A buffer is kept for the next one of its size
 * while the buffers in use and those kept stay within the budget: a new
 * mapping costs a page fault and a cleared page for every 4 KiB written. */
static void part_release_locked(s3_instance *in, char *p, size_t size)
{
    in->mem_used -= size;
    if (in->nspare < S3_SPARES && in->mem_used + in->spare_bytes + size <= in->mem_limit) {
        in->spare[in->nspare++] = (struct s3_spare){p, size};
        in->spare_bytes += size;
    } else {
        munmap(p, size);
    }
    pthread_cond_broadcast(&in->cv);
}

void s3_parts_free(s3_instance *in)
{
    for (int i = 0; i < in->nspare; i++)
        munmap(in->spare[i].p, in->spare[i].size);
    in->nspare = 0;
    in->spare_bytes = 0;
}

static void part_release(s3_instance *in, char *p, size_t size)
{
    pthread_mutex_lock(&in->lock);
    part_release_locked(in, p, size);
    pthread_mutex_unlock(&in->lock);
}

static void drop_buffer(s3_writer *w)
{
    if (!w->buf)
        return;
    if (w->mapped)
        part_release(w->in, w->buf, w->cap);
    else
        free(w->buf);
    w->buf = NULL;
    w->len = w->cap = 0;
    w->mapped = 0;
}

/* ---- upload threads ---------------------------------------------------------- */

static void upload_part(s3_instance *in, s3_job *j)
{
    s3_writer *w = j->w;
    char num[16];
    snprintf(num, sizeof num, "%d", j->part);
    s3_req rq = {.method = "PUT", .okey = w->okey, .body = j->buf, .body_len = j->len};
    s3_req_query(&rq, "partNumber", num);
    s3_req_query(&rq, "uploadId", w->upload_id);
    s3_resp rs;
    s3_resp_init(&rs, 64 * 1024);
    coffer_status st = s3_request(in, &rq, &rs);
    if (st == COFFER_OK && !rs.etag[0]) {
        st = COFFER_ERR_FAILED;
        snprintf(rs.err_code, sizeof rs.err_code, "NoETag");
        snprintf(rs.err_msg, sizeof rs.err_msg, "the server returned no ETag for part %d", j->part);
        rs.status = rs.status ? rs.status : 200;
        rs.error_in_200 = 1;
    }
    pthread_mutex_lock(&in->lock);
    if (st) {
        if (!w->err) {
            w->err = st;
            char what[64];
            snprintf(what, sizeof what, "PUT (part %d)", j->part);
            s3_describe(in, what, w->okey, &rs, w->errmsg, sizeof w->errmsg);
        }
    } else {
        snprintf(w->etags[j->part - 1], sizeof w->etags[0], "%s", rs.etag);
    }
    pthread_mutex_unlock(&in->lock);
    s3_resp_free(&rs);
}

static void *worker_main(void *arg)
{
    s3_instance *in = arg;
    pthread_mutex_lock(&in->lock);
    for (;;) {
        while (!in->queue_head && !in->stopping)
            pthread_cond_wait(&in->cv, &in->lock);
        if (!in->queue_head)
            break;
        s3_job *j = in->queue_head;
        in->queue_head = j->next;
        if (!in->queue_head)
            in->queue_tail = NULL;
        int skip = j->w->aborting || j->w->err;
        pthread_mutex_unlock(&in->lock);
        if (!skip)
            upload_part(in, j);
        pthread_mutex_lock(&in->lock);
        part_release_locked(in, j->buf, j->cap);
        j->w->inflight--;
        in->inflight--;
        pthread_cond_broadcast(&in->cv);
        free(j);
    }
    pthread_mutex_unlock(&in->lock);
    return NULL;
}

/* Caller holds in->lock. */
static int workers_start_locked(s3_instance *in)
{
    if (in->nworkers)
        return 0;
    in->workers = calloc((size_t)in->parallel_parts, sizeof *in->workers);
    if (!in->workers)
        return -1;
    for (int i = 0; i < in->parallel_parts; i++) {
        if (pthread_create(&in->workers[i], NULL, worker_main, in) != 0)
            break;
        in->nworkers++;
    }
    return in->nworkers ? 0 : -1;
}

void s3_workers_stop(s3_instance *in)
{
    pthread_mutex_lock(&in->lock);
    in->stopping = 1;
    pthread_cond_broadcast(&in->cv);
    int n = in->nworkers;
    pthread_mutex_unlock(&in->lock);
    for (int i = 0; i < n; i++)
        pthread_join(in->workers[i], NULL);
    free(in->workers);
    in->workers = NULL;
    in->nworkers = 0;
}

/* ---- multipart ------------------------------------------------------------------ */

static void add_object_headers(s3_writer *w, s3_req *rq)
{
    s3_req_header(rq, "content-type", "application/octet-stream");
    if (w->in->storage_class)
        s3_req_header(rq, "x-amz-storage-class", w->in->storage_class);
    if (w->lock_mode) {
        /* on the single PUT (locked from its first moment) or on
         * CreateMultipartUpload (see complete_upload) */
        s3_req_header(rq, "x-amz-object-lock-mode", w->lock_mode);
        s3_req_header(rq, "x-amz-object-lock-retain-until-date", w->lock_until);
    }
}

static void abort_other_uploads(s3_writer *w);

static coffer_status create_upload(s3_writer *w)
{
    s3_instance *in = w->in;
    s3_req rq = {.method = "POST", .okey = w->okey};
    s3_req_query(&rq, "uploads", NULL);
    add_object_headers(w, &rq);
    s3_resp rs;
    s3_resp_init(&rs, 64 * 1024);
    coffer_status st = s3_request(in, &rq, &rs);
    if (st == COFFER_OK) {
        s3_xml *x = s3_xml_parse(rs.body.s, rs.body.len);
        if (x) {
            w->upload_id = s3_xml_strdup(s3_xml_root(x), "UploadId");
            s3_xml_free(x);
        }
        if (!w->upload_id || !*w->upload_id) {
            free(w->upload_id);
            w->upload_id = NULL;
            st = in->host->error(in->h, COFFER_ERR_FAILED,
                                 "S3 POST %s/%s?uploads: no UploadId in the answer", in->bucket,
                                 w->okey);
        }
    } else {
        st = s3_fail(in, st, "POST ?uploads", w->okey, &rs);
    }
    s3_resp_free(&rs);
    if (st == COFFER_OK)
        abort_other_uploads(w);
    return st;
}

/* CreateMultipartUpload is not idempotent: when an attempt reached the
 * server but its answer was lost, the retry (ours, or libcurl's resend)
 * starts a second upload and the first is never completed. Object keys
 * are written by one writer at a time, so every other upload of this key
 * is such an orphan: abort them. Best effort; a failure only logs. */
static void abort_other_uploads(s3_writer *w)
{
    s3_instance *in = w->in;
    s3_req rq = {.method = "GET"};
    s3_req_query(&rq, "uploads", NULL);
    s3_req_query(&rq, "prefix", w->okey);
    s3_resp rs;
    s3_resp_init(&rs, S3_XML_MAX);
    coffer_status st = s3_request(in, &rq, &rs);
    s3_xml *x = st == COFFER_OK ? s3_xml_parse(rs.body.s, rs.body.len) : NULL;
    if (!x) {
        char msg[S3_ERRMSG];
        s3_describe(in, "GET ?uploads", w->okey, &rs, msg, sizeof msg);
        in->host->log(in->h, COFFER_LOG_DEBUG, "cannot list the uploads of %s: %s", w->key,
                      st == COFFER_OK ? "unreadable answer" : msg);
        s3_resp_free(&rs);
        return;
    }
    s3_xml_node *root = s3_xml_root(x);
    for (s3_xml_node *u = s3_xml_next(root, NULL, "Upload"); u; u = s3_xml_next(root, u, "Upload")) {
        char key[S3_KEY_MAX + 1], id[1024];
        if (!s3_xml_text(u, "Key", key, sizeof key) || !s3_xml_text(u, "UploadId", id, sizeof id) ||
            strcmp(key, w->okey) != 0 || strcmp(id, w->upload_id) == 0)
            continue;
        s3_req dq = {.method = "DELETE", .okey = w->okey};
        s3_req_query(&dq, "uploadId", id);
        s3_resp ds;
        s3_resp_init(&ds, 64 * 1024);
        coffer_status d = s3_request(in, &dq, &ds);
        in->host->log(in->h, d == COFFER_OK ? COFFER_LOG_INFO : COFFER_LOG_WARN,
                      "%s: %s a second multipart upload left by a retried request (%s)", w->key,
                      d == COFFER_OK ? "aborted" : "cannot abort", id);
        s3_resp_free(&ds);
    }
    s3_xml_free(x);
    s3_resp_free(&rs);
}

static void abort_upload(s3_writer *w)
{
    if (!w->upload_id)
        return;
    s3_instance *in = w->in;
    s3_req rq = {.method = "DELETE", .okey = w->okey};
    s3_req_query(&rq, "uploadId", w->upload_id);
    s3_resp rs;
    s3_resp_init(&rs, 64 * 1024);
    coffer_status st = s3_request(in, &rq, &rs);
    if (st && st != COFFER_ERR_NOT_FOUND) {
        char msg[S3_ERRMSG];
        s3_describe(in, "DELETE ?uploadId", w->okey, &rs, msg, sizeof msg);
        in->host->log(in->h, COFFER_LOG_WARN,
                      "cannot abort multipart upload %s (a lifecycle rule for incomplete uploads "
                      "will have to): %s",
                      w->upload_id, msg);
    }
    s3_resp_free(&rs);
    free(w->upload_id);
    w->upload_id = NULL;
}

/* Report a part failure recorded by an upload thread. */
static coffer_status part_error(s3_writer *w)
{
    pthread_mutex_lock(&w->in->lock);
    coffer_status st = w->err;
    char msg[S3_ERRMSG];
    memcpy(msg, w->errmsg, sizeof msg);
    pthread_mutex_unlock(&w->in->lock);
    return st ? w->in->host->error(w->in->h, st, "%s", msg) : COFFER_OK;
}

static void wait_parts(s3_writer *w)
{
    pthread_mutex_lock(&w->in->lock);
    while (w->inflight > 0)
        pthread_cond_wait(&w->in->cv, &w->in->lock);
    pthread_mutex_unlock(&w->in->lock);
}

/* Hand the current buffer to the upload threads as the next part. */
static coffer_status submit_part(s3_writer *w)
{
    s3_instance *in = w->in;
    coffer_status st;
    if (!w->upload_id && (st = create_upload(w)) != COFFER_OK)
        return st;
    if (w->nparts >= S3_MAX_PARTS)
        return in->host->error(in->h, COFFER_ERR_NO_SPACE,
                               "object %s: more than %d parts of %llu bytes; raise part_size",
                               w->key, S3_MAX_PARTS, (unsigned long long)in->part_size);
    if (!w->mapped) {
        /* a small buffer never becomes a part except as the last one:
         * copy it into a budgeted one so every job is alike */
        char *p = part_alloc(in, w->len ? w->len : 1);
        if (!p)
            return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
        memcpy(p, w->buf, w->len);
        free(w->buf);
        w->buf = p;
        w->cap = w->len ? w->len : 1;
        w->mapped = 1;
    }
    s3_job *j = calloc(1, sizeof *j);
    if (!j)
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    j->w = w;
    j->part = w->nparts + 1;
    j->buf = w->buf;
    j->len = w->len;
    j->cap = w->cap;
    pthread_mutex_lock(&in->lock);
    if (w->etag_cap < j->part) {
        int cap = w->etag_cap ? w->etag_cap * 2 : 16;
        while (cap < j->part)
            cap *= 2;
        void *e = realloc(w->etags, (size_t)cap * sizeof w->etags[0]);
        if (!e) {
            pthread_mutex_unlock(&in->lock);
            free(j);
            return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
        }
        w->etags = e;
        memset(w->etags + w->etag_cap, 0, (size_t)(cap - w->etag_cap) * sizeof w->etags[0]);
        w->etag_cap = cap;
    }
    if (workers_start_locked(in) != 0) {
        pthread_mutex_unlock(&in->lock);
        free(j);
        return in->host->error(in->h, COFFER_ERR_FATAL, "cannot start upload threads");
    }
    w->nparts++;
    w->inflight++;
    in->inflight++;
    if (in->queue_tail)
        in->queue_tail->next = j;
    else
        in->queue_head = j;
    in->queue_tail = j;
    pthread_cond_broadcast(&in->cv);
    pthread_mutex_unlock(&in->lock);
    w->buf = NULL;
    w->len = w->cap = 0;
    w->mapped = 0;
    return COFFER_OK;
}

/* ---- ABI ------------------------------------------------------------------------- */

static void writer_free(s3_writer *w)
{
    w->magic = 0;
    drop_buffer(w);
    free(w->key);
    free(w->okey);
    free(w->upload_id);
    free(w->etags);
    free(w);
}

/* A run killed in the middle of a multipart upload cannot abort it: its
 * parts stay stored (and billed) but invisible. The first writer of a run
 * looks for incomplete uploads under the prefix started more than
 * abort_uploads_after seconds ago and aborts them. Nothing of a live run
 * is that old: an upload lasts from a pack's first full part to its
 * commit. Best effort: failures are logged, never returned. */
static void sweep_old_uploads(s3_instance *in)
{
    char key_marker[S3_KEY_MAX + 1] = "", id_marker[1024] = "";
    int64_t now = in->sweep_clock; /* uploads are dated by the server */
    int aborted = 0, failed = 0;
    for (int page = 0; page < 100; page++) {
        s3_req rq = {.method = "GET"};
        s3_req_query(&rq, "uploads", NULL);
        s3_req_query(&rq, "prefix", in->prefix);
        if (key_marker[0]) {
            s3_req_query(&rq, "key-marker", key_marker);
            s3_req_query(&rq, "upload-id-marker", id_marker);
        }
        s3_resp rs;
        s3_resp_init(&rs, S3_XML_MAX);
        coffer_status st = s3_request(in, &rq, &rs);
        s3_xml *x = st == COFFER_OK ? s3_xml_parse(rs.body.s, rs.body.len) : NULL;
        if (!x) {
            char msg[S3_ERRMSG];
            s3_describe(in, "GET ?uploads", NULL, &rs, msg, sizeof msg);
            in->host->log(in->h, COFFER_LOG_DEBUG, "cannot list incomplete uploads: %s",
                          st == COFFER_OK ? "unreadable answer" : msg);
            s3_resp_free(&rs);
            break;
        }
        s3_xml_node *root = s3_xml_root(x);
        for (s3_xml_node *u = s3_xml_next(root, NULL, "Upload"); u;
             u = s3_xml_next(root, u, "Upload")) {
            char key[S3_KEY_MAX + 1], id[1024], init[64];
            if (!s3_xml_text(u, "Key", key, sizeof key) ||
                !s3_xml_text(u, "UploadId", id, sizeof id))
                continue;
            s3_xml_text(u, "Initiated", init, sizeof init);
            int64_t t = s3_parse_iso8601(init);
            if (t <= 0 || now - t < in->abort_uploads_after ||
                strncmp(key, in->prefix, strlen(in->prefix)) != 0)
                continue;
            s3_req dq = {.method = "DELETE", .okey = key};
            s3_req_query(&dq, "uploadId", id);
            s3_resp ds;
            s3_resp_init(&ds, 64 * 1024);
            coffer_status d = s3_request(in, &dq, &ds);
            if (d == COFFER_OK || d == COFFER_ERR_NOT_FOUND) {
                aborted++;
                in->host->log(in->h, COFFER_LOG_DEBUG,
                              "aborted incomplete multipart upload of %s started %s", key, init);
            } else {
                failed++;
            }
            s3_resp_free(&ds);
        }
        char trunc[16] = "";
        s3_xml_text(root, "IsTruncated", trunc, sizeof trunc);
        int more = strcmp(trunc, "true") == 0 &&
                   s3_xml_text(root, "NextKeyMarker", key_marker, sizeof key_marker) &&
                   s3_xml_text(root, "NextUploadIdMarker", id_marker, sizeof id_marker) &&
                   key_marker[0];
        s3_xml_free(x);
        s3_resp_free(&rs);
        if (!more)
            break;
    }
    if (failed)
        in->host->log(in->h, COFFER_LOG_WARN,
                      "incomplete multipart uploads older than %lld s (left by interrupted runs): "
                      "%d aborted, %d could not be",
                      (long long)in->abort_uploads_after, aborted, failed);
    else if (aborted)
        in->host->log(in->h, COFFER_LOG_INFO,
                      "incomplete multipart uploads older than %lld s (left by interrupted runs): "
                      "%d aborted",
                      (long long)in->abort_uploads_after, aborted);
}

static void *sweeper(void *arg)
{
    sweep_old_uploads(arg);
    return NULL;
}

void s3_sweeper_join(s3_instance *in)
{
    if (in->sweeper_running) {
        pthread_join(in->sweeper, NULL);
        in->sweeper_running = 0;
    }
}

coffer_status s3_writer_open(void *instance, const char *key, const coffer_write_opts *opts,
                             void **writer)
{
    s3_instance *in = instance;
    s3_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    *writer = NULL;
    if (in->abort_uploads_after > 0) {
        /* The sweep's clock is read here, before this run's first write:
         * every upload the run starts is younger, so never swept, though
         * the sweep runs on its own thread (the writes need not wait for
         * its listing). */
        int64_t clock = s3_now(in);
        pthread_mutex_lock(&in->lock);
        int first = !in->uploads_swept;
        in->uploads_swept = 1;
        if (first)
            in->sweep_clock = clock;
        if (first && pthread_create(&in->sweeper, NULL, sweeper, in) == 0) {
            in->sweeper_running = 1;
            first = 0;
        }
        pthread_mutex_unlock(&in->lock);
        if (first)
            sweep_old_uploads(in);
    }
    uint32_t flags = 0;
    if (opts && opts->struct_size >= offsetof(coffer_write_opts, flags) + sizeof opts->flags)
        flags = opts->flags;
    uint32_t lock_mode = COFFER_LOCK_NONE;
    int64_t until = 0;
    if (opts && opts->struct_size >=
                    offsetof(coffer_write_opts, retain_until) + sizeof opts->retain_until) {
        lock_mode = opts->lock_mode;
        until = opts->retain_until;
    }
    if (lock_mode != COFFER_LOCK_NONE && (!s3_lock_mode_name(lock_mode) || until <= 0))
        return in->host->error(in->h, COFFER_ERR_INVALID,
                               "write of %s: lock mode %u until %lld is not a retention", key,
                               (unsigned)lock_mode, (long long)until);
    if (lock_mode != COFFER_LOCK_NONE && !in->lock_enabled)
        return in->host->error(in->h, COFFER_ERR_UNSUPPORTED,
                               "write of %s with retention: bucket %s has no object lock", key,
                               in->bucket);
    if ((flags & COFFER_WRITE_IF_ABSENT) && in->cond_unsupported)
        return in->host->error(
            in->h, COFFER_ERR_UNSUPPORTED,
            "the server at %s://%s does not support conditional writes (If-None-Match)", in->scheme,
            in->host_port);
    coffer_status st;
    char *okey = s3_object_key(in, key, &st);
    if (!okey)
        return st;
    s3_writer *w = calloc(1, sizeof *w);
    if (!w) {
        free(okey);
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    }
    w->magic = COFFER_MAGIC_WRITER;
    w->in = in;
    w->okey = okey;
    w->flags = flags;
    /* An object expected a little over part_size (a pack: its target
     * size plus one chunk) gets a first buffer of the expected size, up to
     * two parts' worth, so it goes up in one PUT rather than as a
     * multipart upload of a full part and a small one (4 requests). Pages
     * of the buffer that are never written cost no memory. */
    w->first_cap = in->part_size;
    uint64_t hint = 0;
    if (opts && opts->struct_size >= offsetof(coffer_write_opts, size_hint) + sizeof opts->size_hint)
        hint = opts->size_hint;
    if (hint > in->part_size && hint <= 2 * in->part_size)
        w->first_cap = (size_t)hint;
    if (lock_mode != COFFER_LOCK_NONE) {
        w->lock_mode = s3_lock_mode_name(lock_mode);
        w->lock = (coffer_lock_mode)lock_mode;
        w->until = until;
        s3_iso8601(until, w->lock_until);
    }
    w->key = strdup(key);
    if (!w->key) {
        writer_free(w);
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    }
    *writer = w;
    return COFFER_OK;
}

coffer_status s3_writer_write(void *writer, const void *buf, size_t len)
{
    s3_writer *w = writer;
    s3_check_magic(w, COFFER_MAGIC_WRITER, "writer");
    s3_instance *in = w->in;
    coffer_status st;
    if (s3_cancelled(in))
        return in->host->error(in->h, COFFER_ERR_CANCELLED, "cancelled while writing %s", w->key);
    if ((st = part_error(w)) != COFFER_OK)
        return st;
    const char *p = buf;
    while (len > 0) {
        if (!w->mapped && w->len + len <= SMALL_MAX && w->len + len <= in->part_size) {
            if (w->len + len > w->cap) {
                size_t cap = w->cap ? w->cap : 4096;
                while (cap < w->len + len)
                    cap *= 2;
                char *nb = realloc(w->buf, cap);
                if (!nb)
                    return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
                w->buf = nb;
                w->cap = cap;
            }
            memcpy(w->buf + w->len, p, len);
            w->len += len;
            w->total += len;
            return COFFER_OK;
        }
        if (!w->mapped) {
            /* grown past the small buffer: move to a part buffer */
            size_t cap = w->nparts ? in->part_size : w->first_cap;
            char *nb = part_alloc(in, cap);
            if (!nb)
                return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
            if (w->len)
                memcpy(nb, w->buf, w->len);
            free(w->buf);
            w->buf = nb;
            w->cap = cap;
            w->mapped = 1;
        }
        if (w->len == w->cap) {
            /* full, and more data comes: it is not the last part */
            if ((st = submit_part(w)) != COFFER_OK)
                return st;
            if ((st = part_error(w)) != COFFER_OK)
                return st;
            char *nb = part_alloc(in, in->part_size);
            if (!nb)
                return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
            w->buf = nb;
            w->cap = in->part_size;
            w->mapped = 1;
            if (s3_cancelled(in))
                return in->host->error(in->h, COFFER_ERR_CANCELLED, "cancelled while writing %s",
                                       w->key);
        }
        size_t n = w->cap - w->len;
        if (n > len)
            n = len;
        memcpy(w->buf + w->len, p, n);
        w->len += n;
        w->total += n;
        p += n;
        len -= n;
    }
    return COFFER_OK;
}

static int etag_is_md5_of(const char *etag, const void *buf, size_t len)
{
    unsigned char md[16];
    char hex[33], e[80];
    EVP_Digest(buf ? buf : "", len, md, NULL, EVP_md5(), NULL);
    s3_hex(md, 16, hex);
    size_t n = strlen(etag);
    if (n >= 2 && etag[0] == '"')
        snprintf(e, sizeof e, "%.*s", (int)(n - 2), etag + 1);
    else
        snprintf(e, sizeof e, "%s", etag);
    return strcasecmp(e, hex) == 0;
}

static coffer_status single_put(s3_writer *w)
{
    s3_instance *in = w->in;
    s3_req rq = {
        .method = "PUT", .okey = w->okey, .body = w->buf ? w->buf : "", .body_len = w->len};
    add_object_headers(w, &rq);
    int cond = (w->flags & COFFER_WRITE_IF_ABSENT) != 0;
    if (cond)
        s3_req_header(&rq, "if-none-match", "*");
    s3_resp rs;
    s3_resp_init(&rs, 64 * 1024);
    /* A part buffer on its way counts as an upload in flight: writers
     * that need a buffer wait for it (part_alloc) instead of going over
     * the budget. */
    if (w->mapped) {
        pthread_mutex_lock(&in->lock);
        in->inflight++;
        pthread_mutex_unlock(&in->lock);
    }
    coffer_status st = s3_request(in, &rq, &rs);
    if (w->mapped) {
        pthread_mutex_lock(&in->lock);
        in->inflight--;
        pthread_cond_broadcast(&in->cv);
        pthread_mutex_unlock(&in->lock);
    }
    if (st == COFFER_ERR_EXISTS && cond && (rs.attempts > 1 || rs.resent)) {
        /* This request was sent more than once, so an earlier attempt may
         * have landed before its answer was lost (ours, or libcurl's own
         * resend on a fresh connection when a reused one died): the object
         * is ours if it holds exactly our bytes. Sent once, 412 is the
         * answer: the key existed before. */
        s3_req hq = {.method = "HEAD", .okey = w->okey};
        s3_resp hs;
        s3_resp_init(&hs, 0);
        if (s3_request(in, &hq, &hs) == COFFER_OK && hs.has_length && hs.content_length == w->len &&
            etag_is_md5_of(hs.etag, w->buf, w->len))
            st = COFFER_OK;
        s3_resp_free(&hs);
    }
    if (st == COFFER_ERR_EXISTS && cond) {
        st = in->host->error(in->h, COFFER_ERR_EXISTS, "object %s already exists (s3://%s/%s)",
                             w->key, in->bucket, w->okey);
    } else if (st == COFFER_ERR_UNSUPPORTED && cond) {
        in->cond_unsupported = 1;
        st = in->host->error(
            in->h, COFFER_ERR_UNSUPPORTED,
            "the server at %s://%s does not support conditional writes (If-None-Match: *): %s",
            in->scheme, in->host_port, rs.err_code[0] ? rs.err_code : "HTTP 501");
    } else if (st) {
        st = s3_fail(in, st, "PUT", w->okey, &rs);
    }
    s3_resp_free(&rs);
    return st;
}

static coffer_status complete_upload(s3_writer *w)
{
    s3_instance *in = w->in;
    s3_str body = {0};
    pthread_mutex_lock(&in->lock);
    s3_xml_complete_body(&body, w->etags, w->nparts);
    pthread_mutex_unlock(&in->lock);
    s3_req rq = {.method = "POST",
                 .okey = w->okey,
                 .body = body.s,
                 .body_len = body.len,
                 .retry_200_error = 1};
    s3_req_query(&rq, "uploadId", w->upload_id);
    s3_req_header(&rq, "content-type", "application/xml");
    int cond = (w->flags & COFFER_WRITE_IF_ABSENT) != 0;
    if (cond)
        s3_req_header(&rq, "if-none-match", "*");
    s3_resp rs;
    s3_resp_init(&rs, 64 * 1024);
    coffer_status st = s3_request(in, &rq, &rs);
    char vid[256];
    snprintf(vid, sizeof vid, "%s", rs.version_id);
    if (st == COFFER_ERR_NOT_FOUND && strcmp(rs.err_code, "NoSuchUpload") == 0) {
        /* The upload is gone after a retry (ours or libcurl's resend): an
         * earlier attempt completed it if the object now has a multipart ETag of our part count. */
        s3_req hq = {.method = "HEAD", .okey = w->okey};
        s3_resp hs;
        s3_resp_init(&hs, 0);
        char suffix[24];
        snprintf(suffix, sizeof suffix, "-%d\"", w->nparts);
        if (s3_request(in, &hq, &hs) == COFFER_OK && hs.has_length &&
            hs.content_length == w->total && strlen(hs.etag) > strlen(suffix) &&
            strcmp(hs.etag + strlen(hs.etag) - strlen(suffix), suffix) == 0) {
            st = COFFER_OK;
            snprintf(vid, sizeof vid, "%s", hs.version_id);
        }
        s3_resp_free(&hs);
    }
    if (st == COFFER_OK) {
        free(w->upload_id); /* completed: nothing to abort */
        w->upload_id = NULL;
    } else if (st == COFFER_ERR_EXISTS && cond) {
        st = in->host->error(in->h, COFFER_ERR_EXISTS, "object %s already exists (s3://%s/%s)",
                             w->key, in->bucket, w->okey);
    } else {
        st = s3_fail(in, st, "POST ?uploadId (complete)", w->okey, &rs);
    }
    s3_resp_free(&rs);
    s3_str_free(&body);
    if (st == COFFER_OK && w->lock_mode) {
        /* Some servers (Ceph RGW 16) take the lock headers of
         * CreateMultipartUpload and drop them: the completed version gets
         * its retention set explicitly. The same date again is accepted
         * where the headers did work. */
        s3_resp ps;
        st = s3_put_retention(in, w->okey, vid[0] ? vid : NULL, w->lock, w->until, 0, &ps);
        if (st) {
            char why[S3_ERRMSG + 600];
            s3_describe(in, "PUT ?retention", w->okey, &ps, why, sizeof why);
            st = in->host->error(in->h, st,
                                 "object %s was uploaded but its retention %s until %s could "
                                 "not be set: %s",
                                 w->key, w->lock_mode, w->lock_until, why);
        }
        s3_resp_free(&ps);
    }
    return st;
}

coffer_status s3_writer_commit(void *writer)
{
    s3_writer *w = writer;
    s3_check_magic(w, COFFER_MAGIC_WRITER, "writer");
    s3_instance *in = w->in;
    coffer_status st = COFFER_OK;
    if (!w->upload_id) {
        st = single_put(w);
        goto done;
    }
    if ((w->flags & COFFER_WRITE_IF_ABSENT) && in->cond_unsupported == 0) {
        /* Early answer; Complete carries If-None-Match too where the
         * server knows it. */
        s3_req hq = {.method = "HEAD", .okey = w->okey};
        s3_resp hs;
        s3_resp_init(&hs, 0);
        coffer_status h = s3_request(in, &hq, &hs);
        s3_resp_free(&hs);
        if (h == COFFER_OK) {
            st = in->host->error(in->h, COFFER_ERR_EXISTS, "object %s already exists (s3://%s/%s)",
                                 w->key, in->bucket, w->okey);
            goto fail;
        }
    }
    if (w->len > 0 && (st = submit_part(w)) != COFFER_OK)
        goto fail;
    wait_parts(w);
    if ((st = part_error(w)) != COFFER_OK)
        goto fail;
    if (s3_cancelled(in)) {
        st = in->host->error(in->h, COFFER_ERR_CANCELLED, "cancelled before publishing %s", w->key);
        goto fail;
    }
    st = complete_upload(w);
    if (st == COFFER_OK)
        goto done;
fail:
    pthread_mutex_lock(&in->lock);
    w->aborting = 1;
    pthread_mutex_unlock(&in->lock);
    wait_parts(w);
    abort_upload(w);
done:
    writer_free(w); /* commit frees, even when it failed (ABI) */
    return st;
}

void s3_writer_abort(void *writer)
{
    if (!writer)
        return;
    s3_writer *w = writer;
    s3_check_magic(w, COFFER_MAGIC_WRITER, "writer");
    pthread_mutex_lock(&w->in->lock);
    w->aborting = 1;
    pthread_mutex_unlock(&w->in->lock);
    wait_parts(w);
    abort_upload(w);
    writer_free(w);
}
