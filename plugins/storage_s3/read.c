/*
 * storage "s3": readers. One ranged GET per reader, streamed: libcurl's
 * multi interface is driven from reader_read, the body is written
 * straight into the caller's buffer, and what does not fit waits in a
 * small stash; when the stash is full the transfer is paused. Memory per
 * reader stays at a few hundred KiB whatever the object size.
 *
 * open returns only after the response headers arrived, so a missing
 * object or version is reported by open (NOT_FOUND), not by the first
 * read. A transfer that breaks or stalls part way is resumed from the
 * next undelivered byte (Range from there, If-Match on the first ETag so
 * a replaced object is never spliced), with the same retry budget and
 * backoff as every other request.
 */
#include "s3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STASH_MAX (256u * 1024)
#define ERRBODY_MAX (64u * 1024)
#define RCONN_IDLE_MAX 32

typedef struct s3_reader {
    uint32_t magic; /* COFFER_MAGIC_READER while open */
    s3_instance *in;
    char *key, *okey, *version_id;
    uint64_t pos; /* absolute offset of the next byte to hand out */
    uint64_t end; /* exclusive end of the range; UINT64_MAX: the object's end */
    int eof;
    s3_rconn c;
    struct curl_slist *hl;
    int in_multi, finished, headers_done;
    CURLcode result;
    s3_resp rs; /* status and headers of the current transfer */
    long status;
    int ranged;    /* the current request carries a Range */
    char etag[80]; /* of the first answer, for If-Match on resume */
    char *dst;     /* caller's buffer during reader_read */
    size_t dst_len, dst_got;
    char *stash;
    size_t stash_off, stash_len, stash_cap;
    int paused;
    int attempts;
    uint64_t body_end; /* pos + Content-Length of the current answer; UINT64_MAX unknown */
} s3_reader;

/* ---- connection pairs ------------------------------------------------------- */

static int rconn_get(s3_instance *in, s3_rconn *c)
{
    pthread_mutex_lock(&in->lock);
    if (in->nridle) {
        *c = in->ridle[--in->nridle];
        pthread_mutex_unlock(&in->lock);
        return 0;
    }
    pthread_mutex_unlock(&in->lock);
    c->m = curl_multi_init();
    c->e = curl_easy_init();
    c->fd = malloc(sizeof *c->fd);
    if (!c->m || !c->e || !c->fd) {
        if (c->m)
            curl_multi_cleanup(c->m);
        if (c->e)
            curl_easy_cleanup(c->e);
        free(c->fd);
        c->m = NULL;
        c->e = NULL;
        c->fd = NULL;
        return -1;
    }
    *c->fd = CURL_SOCKET_BAD;
    return 0;
}

static void rconn_discard(s3_rconn *c)
{
    /* the multi holds the connection, whose close callback writes *fd */
    if (c->e)
        curl_easy_cleanup(c->e);
    if (c->m)
        curl_multi_cleanup(c->m);
    free(c->fd);
    c->e = NULL;
    c->m = NULL;
    c->fd = NULL;
}

static void rconn_put(s3_instance *in, s3_rconn *c, int reusable)
{
    if (!c->m)
        return;
    if (reusable) {
        pthread_mutex_lock(&in->lock);
        if (in->nridle < RCONN_IDLE_MAX && in->nridle < (size_t)in->connections + 2) {
            if (in->nridle == in->ridle_cap) {
                size_t cap = in->ridle_cap ? in->ridle_cap * 2 : 8;
                s3_rconn *v = realloc(in->ridle, cap * sizeof *v);
                if (v) {
                    in->ridle = v;
                    in->ridle_cap = cap;
                }
            }
            if (in->nridle < in->ridle_cap) {
                in->ridle[in->nridle++] = *c;
                c->m = NULL;
                c->e = NULL;
                c->fd = NULL;
            }
        }
        pthread_mutex_unlock(&in->lock);
    }
    rconn_discard(c);
}

void s3_rconn_pool_free(s3_instance *in)
{
    for (size_t i = 0; i < in->nridle; i++)
        rconn_discard(&in->ridle[i]);
    free(in->ridle);
    in->ridle = NULL;
    in->nridle = in->ridle_cap = 0;
}

/* ---- callbacks ----------------------------------------------------------------- */

static size_t rd_header(char *line, size_t size, size_t n, void *ud)
{
    s3_reader *r = ud;
    size_t len = size * n;
    r->rs.sock = r->c.fd;
    s3_header_cb(line, size, n, &r->rs);
    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        long code = 0;
        sscanf(line, "HTTP/%*s %ld", &code);
        r->status = code;
    } else if ((len == 2 && line[0] == '\r') || (len == 1 && line[0] == '\n')) {
        if (r->status >= 200) /* the end of a final header block, not a 100's */
            r->headers_done = 1;
    }
    return len;
}

static int stash_reserve(s3_reader *r, size_t need)
{
    if (r->stash_off && r->stash_off == r->stash_len)
        r->stash_off = r->stash_len = 0;
    if (r->stash_len + need <= r->stash_cap)
        return 0;
    if (r->stash_off) {
        memmove(r->stash, r->stash + r->stash_off, r->stash_len - r->stash_off);
        r->stash_len -= r->stash_off;
        r->stash_off = 0;
        if (r->stash_len + need <= r->stash_cap)
            return 0;
    }
    size_t cap = r->stash_cap ? r->stash_cap : 64 * 1024;
    while (cap < r->stash_len + need)
        cap *= 2;
    char *s = realloc(r->stash, cap);
    if (!s)
        return -1;
    r->stash = s;
    r->stash_cap = cap;
    return 0;
}

static size_t rd_write(char *p, size_t size, size_t n, void *ud)
{
    s3_reader *r = ud;
    size_t len = size * n;
    if (r->status < 200 || r->status >= 300) {
        /* an error document: kept for the message */
        size_t room = ERRBODY_MAX > r->rs.body.len ? ERRBODY_MAX - r->rs.body.len : 0;
        s3_str_add(&r->rs.body, p, len < room ? len : room);
        return len;
    }
    /* Acknowledge what arrived at once: a server with Nagle's algorithm on
     * (RGW's default) holds the answer's last small segment until the
     * bytes before it are acknowledged, and a delayed acknowledgement
     * would cost 40 ms on about half the reads. */
    s3_quickack(r->c.fd);
    size_t pending = r->stash_len - r->stash_off;
    if (pending) {
        /* older bytes wait in the stash: keep the order */
        if (pending + len > STASH_MAX) {
            r->paused = 1;
            return CURL_WRITEFUNC_PAUSE;
        }
        if (stash_reserve(r, len) != 0)
            return 0; /* out of memory: curl fails the transfer */
        memcpy(r->stash + r->stash_len, p, len);
        r->stash_len += len;
        return len;
    }
    size_t k = 0;
    if (r->dst) {
        k = r->dst_len - r->dst_got;
        if (k > len)
            k = len;
        memcpy(r->dst + r->dst_got, p, k);
        r->dst_got += k;
    }
    if (k < len) {
        if (stash_reserve(r, len - k) != 0)
            return 0;
        memcpy(r->stash + r->stash_len, p + k, len - k);
        r->stash_len += len - k;
    }
    return len;
}

/* ---- transfers ----------------------------------------------------------------- */

static void transfer_end(s3_reader *r)
{
    if (r->in_multi) {
        curl_multi_remove_handle(r->c.m, r->c.e);
        r->in_multi = 0;
    }
    if (r->hl) {
        for (struct curl_slist *l = r->hl; l; l = l->next)
            if (strncmp(l->data, "Authorization:", 14) == 0)
                memset(l->data, 0, strlen(l->data));
        curl_slist_free_all(r->hl);
        r->hl = NULL;
        curl_easy_setopt(r->c.e, CURLOPT_HTTPHEADER, NULL);
    }
}

/* Start a GET for [pos, end). */
static coffer_status transfer_start(s3_reader *r)
{
    s3_instance *in = r->in;
    transfer_end(r);
    if (!r->c.m && rconn_get(in, &r->c) != 0)
        return COFFER_ERR_FATAL;
    s3_str_clear(&r->rs.body);
    r->finished = r->headers_done = 0;
    r->status = 0;
    r->result = CURLE_OK;
    r->paused = 0;
    r->stash_off = r->stash_len = 0;
    size_t max = r->rs.max_body;
    s3_str body = r->rs.body;
    memset(&r->rs, 0, sizeof r->rs);
    r->rs.body = body;
    r->rs.max_body = max;

    s3_kv q[1];
    size_t nq = 0;
    if (r->version_id)
        q[nq++] = (s3_kv){"versionId", r->version_id};
    s3_kv hx[2];
    size_t nh = 0;
    char range[64];
    r->ranged = 0;
    if (r->pos > 0 || r->end != UINT64_MAX) {
        if (r->end == UINT64_MAX)
            snprintf(range, sizeof range, "bytes=%llu-", (unsigned long long)r->pos);
        else
            snprintf(range, sizeof range, "bytes=%llu-%llu", (unsigned long long)r->pos,
                     (unsigned long long)(r->end - 1));
        hx[nh++] = (s3_kv){"range", range};
        r->ranged = 1;
    }
    if (r->etag[0])
        hx[nh++] = (s3_kv){"if-match", r->etag};
    s3_conn_setup(in, r->c.e, r->c.fd);
    s3_stall_arm(in, r->c.e, &r->rs.stall, &r->paused, 1);
    r->hl = s3_signed_headers(in, "GET", r->okey, q, nq, hx, nh,
                              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    if (!r->hl)
        return COFFER_ERR_FATAL;
    s3_str url = {0};
    s3_url(in, r->okey, q, nq, &url);
    curl_easy_setopt(r->c.e, CURLOPT_URL, s3_str_cstr(&url));
    s3_str_free(&url);
    curl_easy_setopt(r->c.e, CURLOPT_HTTPHEADER, r->hl);
    curl_easy_setopt(r->c.e, CURLOPT_HEADERFUNCTION, rd_header);
    curl_easy_setopt(r->c.e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(r->c.e, CURLOPT_WRITEFUNCTION, rd_write);
    curl_easy_setopt(r->c.e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->c.e, CURLOPT_ERRORBUFFER, r->rs.curl_err);
    if (curl_multi_add_handle(r->c.m, r->c.e) != CURLM_OK)
        return COFFER_ERR_FATAL;
    r->in_multi = 1;
    return COFFER_OK;
}

/* Run the transfer a step: until `until_headers` and headers are in, or
 * some bytes reached the caller, or the transfer finished. */
static coffer_status pump(s3_reader *r, int until_headers)
{
    s3_instance *in = r->in;
    for (;;) {
        int running = 0;
        CURLMcode mc = curl_multi_perform(r->c.m, &running);
        if (mc != CURLM_OK)
            return in->host->error(in->h, COFFER_ERR_FATAL, "libcurl: %s", curl_multi_strerror(mc));
        int left;
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(r->c.m, &left)) != NULL) {
            if (msg->msg == CURLMSG_DONE) {
                r->finished = 1;
                r->result = msg->data.result;
            }
        }
        if (r->finished)
            return COFFER_OK;
        if (until_headers ? r->headers_done : (r->dst_got > 0 || r->stash_len > r->stash_off))
            return COFFER_OK;
        if (s3_cancelled(in))
            return in->host->error(in->h, COFFER_ERR_CANCELLED, "cancelled while reading %s",
                                   r->key);
        curl_multi_poll(r->c.m, NULL, 0, 500, NULL);
    }
}

/* Map a finished (or failed) transfer to a status; retryable failures
 * come back as COFFER_ERR_RETRY with r->rs filled for the message. */
static coffer_status transfer_status(s3_reader *r)
{
    if (r->finished)
        r->result = s3_stall_result(r->in, &r->rs.stall, r->result, r->rs.curl_err);
    r->rs.curl_rc = r->finished ? r->result : CURLE_OK;
    r->rs.status = r->status;
    if (r->rs.curl_rc == CURLE_OK && r->rs.body.len)
        s3_xml_error(r->rs.body.s, r->rs.body.len, r->rs.err_code, sizeof r->rs.err_code,
                     r->rs.err_msg, sizeof r->rs.err_msg);
    if (r->rs.curl_rc != CURLE_OK && !r->rs.curl_err[0])
        snprintf(r->rs.curl_err, sizeof r->rs.curl_err, "%s", curl_easy_strerror(r->rs.curl_rc));
    return s3_map_status(&r->rs);
}

/* (Re)open at r->pos: start, wait for the headers, retry transient
 * failures. Sets r->eof for an empty range. */
static coffer_status open_at(s3_reader *r)
{
    s3_instance *in = r->in;
    coffer_status st;
    if (r->end != UINT64_MAX && r->pos >= r->end) {
        r->eof = 1;
        return COFFER_OK;
    }
    for (;;) {
        r->attempts++;
        if ((st = transfer_start(r)) != COFFER_OK)
            return in->host->error(in->h, st, "cannot start a transfer for %s", r->key);
        if ((st = pump(r, 1)) != COFFER_OK)
            return st;
        if (r->headers_done && r->status >= 200 && r->status < 300) {
            /* a 200 to a Range is the whole object: right only when the
             * range started at 0 and covered it all */
            if (r->ranged && r->status != 206 &&
                (r->pos > 0 || !r->rs.has_length ||
                 (r->end != UINT64_MAX && r->rs.content_length > r->end)))
                return in->host->error(
                    in->h, COFFER_ERR_FAILED,
                    "S3 GET %s/%s: the server ignored the Range header (HTTP %ld)", in->bucket,
                    r->okey, r->status);
            if (!r->etag[0])
                snprintf(r->etag, sizeof r->etag, "%s", r->rs.etag);
            r->body_end = r->rs.has_length ? r->pos + r->rs.content_length : UINT64_MAX;
            return COFFER_OK;
        }
        if (r->headers_done && r->status == 416) {
            /* the range starts at or past the end */
            int64_t total = s3_content_range_total(r->rs.content_range);
            if (total < 0) {
                /* no "bytes *\/SIZE" in the answer (RGW): ask for the size */
                s3_req hq = {.method = "HEAD", .okey = r->okey};
                if (r->version_id)
                    s3_req_query(&hq, "versionId", r->version_id);
                s3_resp hs;
                s3_resp_init(&hs, 0);
                if (s3_request(in, &hq, &hs) == COFFER_OK && hs.has_length)
                    total = (int64_t)hs.content_length;
                s3_resp_free(&hs);
            }
            if (total >= 0 && (uint64_t)total == r->pos) {
                r->eof = 1;
                return COFFER_OK;
            }
            if (total >= 0)
                return in->host->error(in->h, COFFER_ERR_INVALID,
                                       "range starts at %llu, past the end of %s (%lld bytes)",
                                       (unsigned long long)r->pos, r->key, (long long)total);
        }
        /* an error answer: let it finish so its body names the error */
        while (!r->finished)
            if ((st = pump(r, 0)) != COFFER_OK)
                return st;
        st = transfer_status(r);
        if (st == COFFER_OK) /* finished with no body at all */
            return COFFER_OK;
        if (st == COFFER_ERR_NOT_FOUND) {
            if (strcmp(r->rs.err_code, "NoSuchBucket") == 0)
                return s3_fail(in, st, "GET", r->okey, &r->rs);
            if (r->version_id)
                return in->host->error(in->h, st, "no version %s of object %s (s3://%s/%s)",
                                       r->version_id, r->key, in->bucket, r->okey);
            return in->host->error(in->h, st, "no object %s (s3://%s/%s)", r->key, in->bucket,
                                   r->okey);
        }
        if (st == COFFER_ERR_EXISTS && r->etag[0]) /* If-Match failed on resume */
            return in->host->error(in->h, COFFER_ERR_CORRUPT,
                                   "object %s (s3://%s/%s) was replaced while it was being read",
                                   r->key, in->bucket, r->okey);
        if (r->status == 416)
            return in->host->error(in->h, COFFER_ERR_INVALID,
                                   "range starts at %llu, past the end of %s",
                                   (unsigned long long)r->pos, r->key);
        int again = s3_retryable(r->rs.curl_rc, r->status, r->rs.err_code);
        if (!again || r->attempts > in->retries) {
            r->rs.attempts = r->attempts;
            return s3_fail(in, st, "GET", r->okey, &r->rs);
        }
        if (r->rs.curl_rc != CURLE_OK) {
            transfer_end(r);
            rconn_discard(&r->c); /* do not reuse a broken connection */
        }
        pthread_mutex_lock(&in->lock);
        unsigned ms = s3_backoff_ms(in->backoff_ms, 20000, r->attempts, &in->rng);
        pthread_mutex_unlock(&in->lock);
        atomic_fetch_add(&in->nretries, 1);
        atomic_fetch_add(&in->retry_ms, ms);
        char why[CURL_ERROR_SIZE + 128];
        if (r->rs.curl_rc)
            snprintf(why, sizeof why, "%s", r->rs.curl_err);
        else
            snprintf(why, sizeof why, "HTTP %ld%s%s", r->status, r->rs.err_code[0] ? " " : "",
                     r->rs.err_code);
        in->host->log(in->h, COFFER_LOG_DEBUG, "S3 GET %s/%s: %s; retry %d of %d in %u ms",
                      in->bucket, r->okey, why, r->attempts, in->retries, ms);
        if (s3_sleep(in, ms))
            return in->host->error(in->h, COFFER_ERR_CANCELLED, "cancelled while reading %s",
                                   r->key);
    }
}

static void reader_free(s3_reader *r)
{
    /* Every byte was handed out but curl has not seen the end yet (the
     * caller stopped reading at the range's length): let it finish, so the
     * connection goes back to the pool instead of being closed. */
    if (r->in_multi && !r->finished && r->body_end != UINT64_MAX &&
        r->pos + (r->stash_len - r->stash_off) >= r->body_end) {
        for (int i = 0; i < 20 && !r->finished; i++) {
            int running = 0, left;
            if (curl_multi_perform(r->c.m, &running) != CURLM_OK)
                break;
            CURLMsg *msg;
            while ((msg = curl_multi_info_read(r->c.m, &left)) != NULL)
                if (msg->msg == CURLMSG_DONE) {
                    r->finished = 1;
                    r->result = msg->data.result;
                }
            if (!r->finished)
                curl_multi_poll(r->c.m, NULL, 0, 50, NULL);
        }
    }
    transfer_end(r);
    /* A connection is reusable only when its transfer ran to its end. */
    rconn_put(r->in, &r->c, r->finished && r->result == CURLE_OK);
    r->magic = 0;
    s3_str_free(&r->rs.body);
    free(r->stash);
    free(r->key);
    free(r->okey);
    free(r->version_id);
    free(r);
}

static coffer_status reader_new(s3_instance *in, const char *key, const char *version_id,
                                uint64_t offset, uint64_t length, void **reader)
{
    *reader = NULL;
    coffer_status st;
    char *okey = s3_object_key(in, key, &st);
    if (!okey)
        return st;
    s3_reader *r = calloc(1, sizeof *r);
    if (!r) {
        free(okey);
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    }
    r->magic = COFFER_MAGIC_READER;
    r->in = in;
    r->okey = okey;
    r->key = strdup(key);
    r->version_id = version_id ? strdup(version_id) : NULL;
    r->rs.max_body = ERRBODY_MAX;
    r->pos = offset;
    r->body_end = UINT64_MAX;
    r->end = length == 0 || length > UINT64_MAX - offset ? UINT64_MAX : offset + length;
    if (!r->key || (version_id && !r->version_id)) {
        reader_free(r);
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    }
    if ((st = open_at(r)) != COFFER_OK) {
        reader_free(r);
        return st;
    }
    *reader = r;
    return COFFER_OK;
}

coffer_status s3_reader_open(void *instance, const char *key, uint64_t offset, uint64_t length,
                             void **reader)
{
    s3_instance *in = instance;
    s3_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    return reader_new(in, key, NULL, offset, length, reader);
}

coffer_status s3_reader_open_version(void *instance, const char *key, const char *version_id,
                                     void **reader)
{
    s3_instance *in = instance;
    s3_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    if (!version_id || !*version_id)
        return in->host->error(in->h, COFFER_ERR_INVALID, "empty version id");
    return reader_new(in, key, version_id, 0, 0, reader);
}

coffer_status s3_reader_open_version_range(void *instance, const char *key, const char *version_id,
                                           uint64_t offset, uint64_t length, void **reader)
{
    s3_instance *in = instance;
    s3_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    if (!version_id || !*version_id)
        return in->host->error(in->h, COFFER_ERR_INVALID, "empty version id");
    return reader_new(in, key, version_id, offset, length, reader);
}

coffer_status s3_reader_read(void *reader, void *buf, size_t len, size_t *got)
{
    s3_reader *r = reader;
    s3_check_magic(r, COFFER_MAGIC_READER, "reader");
    s3_instance *in = r->in;
    *got = 0;
    if (len == 0 || r->eof)
        return COFFER_OK;
    r->dst = buf;
    r->dst_len = len;
    r->dst_got = 0;
    coffer_status st = COFFER_OK;
    for (;;) {
        size_t pending = r->stash_len - r->stash_off;
        if (pending) {
            size_t k = pending < len - r->dst_got ? pending : len - r->dst_got;
            memcpy(r->dst + r->dst_got, r->stash + r->stash_off, k);
            r->dst_got += k;
            r->stash_off += k;
        }
        if (r->paused && r->stash_len == r->stash_off && r->dst_got < len) {
            /* room again: resuming may deliver right away, into dst */
            r->paused = 0;
            curl_easy_pause(r->c.e, CURLPAUSE_CONT);
        }
        if (r->dst_got > 0)
            break;
        if (r->finished) {
            st = transfer_status(r);
            if (st == COFFER_OK && r->body_end != UINT64_MAX && r->pos < r->body_end) {
                /* the answer ended before the length it announced (libcurl
                 * catches this for Content-Length; be sure whatever the
                 * framing): go on from the next byte */
                r->rs.curl_rc = r->result = CURLE_PARTIAL_FILE;
                snprintf(r->rs.curl_err, sizeof r->rs.curl_err,
                         "the answer ended at byte %llu of %llu",
                         (unsigned long long)r->pos, (unsigned long long)r->body_end);
                st = COFFER_ERR_RETRY;
            }
            if (st == COFFER_OK) {
                r->eof = 1;
                break;
            }
            /* broke mid-body: go on from the next byte */
            if (!s3_retryable(r->rs.curl_rc, r->status, r->rs.err_code) ||
                r->attempts > in->retries) {
                r->rs.attempts = r->attempts;
                st = s3_fail(in, st, "GET", r->okey, &r->rs);
                break;
            }
            in->host->log(in->h, COFFER_LOG_DEBUG,
                          "S3 GET %s/%s broke at byte %llu (%s); retry %d of %d: resuming there",
                          in->bucket, r->okey, (unsigned long long)r->pos, r->rs.curl_err,
                          r->attempts, in->retries);
            transfer_end(r);
            rconn_discard(&r->c);
            pthread_mutex_lock(&in->lock);
            unsigned ms = s3_backoff_ms(in->backoff_ms, 20000, r->attempts, &in->rng);
            pthread_mutex_unlock(&in->lock);
            if (s3_sleep(in, ms)) {
                st = in->host->error(in->h, COFFER_ERR_CANCELLED, "cancelled while reading %s",
                                     r->key);
                break;
            }
            if ((st = open_at(r)) != COFFER_OK || r->eof)
                break;
            continue;
        }
        if ((st = pump(r, 0)) != COFFER_OK)
            break;
    }
    r->pos += r->dst_got;
    *got = r->dst_got;
    r->dst = NULL;
    r->dst_len = r->dst_got = 0;
    return st;
}

void s3_reader_close(void *reader)
{
    if (!reader)
        return;
    s3_reader *r = reader;
    s3_check_magic(r, COFFER_MAGIC_READER, "reader");
    reader_free(r);
}
