/*
 * storage "s3": the libcurl transport.
 *
 * Connections: each instance keeps a pool of easy handles; a handle keeps
 * its connection alive between requests, so a run opens a few TCP (and
 * TLS) connections, not one per object. A CURLSH shares the DNS cache and
 * TLS sessions between them.
 *
 * Retries: connection failures, timeouts, 5xx, 429 and S3's SlowDown /
 * RequestTimeout / InternalError are tried again after an exponential
 * delay with jitter (in->backoff_ms doubling, capped at 20 s), up to
 * in->retries more times. Everything else fails at once.
 *
 * Secrets: the Authorization header and the secret key never reach a
 * message or a log line; CURLOPT_VERBOSE is never set.
 */
#include "s3.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <openssl/evp.h>
#include <openssl/md5.h>

#define S3_BACKOFF_CAP_MS 20000u
#define S3_IDLE_MAX 32

/* ---- URLs ---------------------------------------------------------------- */

void s3_path(const s3_instance *in, const char *okey, s3_str *out)
{
    s3_str_adds(out, in->base_path);
    s3_str_addc(out, '/');
    if (in->path_style) {
        s3_str_adds(out, in->bucket);
        if (okey)
            s3_str_addc(out, '/');
    }
    if (okey)
        s3_str_adds(out, okey);
}

void s3_host_header(const s3_instance *in, s3_str *out)
{
    if (!in->path_style) {
        s3_str_adds(out, in->bucket);
        s3_str_addc(out, '.');
    }
    s3_str_adds(out, in->host_port);
}

void s3_url(const s3_instance *in, const char *okey, const s3_kv *q, size_t nq, s3_str *out)
{
    s3_str_adds(out, in->scheme);
    s3_str_adds(out, "://");
    s3_host_header(in, out);
    s3_str p = {0};
    s3_path(in, okey, &p);
    s3_uri_encode(out, s3_str_cstr(&p), 1);
    s3_str_free(&p);
    if (nq) {
        s3_str_addc(out, '?');
        s3_query_string(out, q, nq, 1);
    }
}

/* ---- requests: small helpers ---------------------------------------------- */

void s3_req_query(s3_req *rq, const char *name, const char *value)
{
    if (rq->nquery < sizeof rq->query / sizeof rq->query[0])
        rq->query[rq->nquery++] = (s3_kv){name, value};
    else
        abort(); /* a programming error: the tables are sized for every call */
}

void s3_req_header(s3_req *rq, const char *name, const char *value)
{
    if (rq->nheaders < sizeof rq->headers / sizeof rq->headers[0])
        rq->headers[rq->nheaders++] = (s3_kv){name, value};
    else
        abort();
}

void s3_resp_init(s3_resp *rs, size_t max_body)
{
    memset(rs, 0, sizeof *rs);
    rs->max_body = max_body;
}

void s3_resp_free(s3_resp *rs)
{
    s3_str_free(&rs->body);
}

static void resp_reset(s3_resp *rs)
{
    size_t max = rs->max_body;
    int attempts = rs->attempts, resent = rs->resent;
    s3_str body = rs->body;
    /* easy is set again by the next attempt */
    s3_str_clear(&body);
    memset(rs, 0, sizeof *rs);
    rs->body = body;
    rs->max_body = max;
    rs->attempts = attempts;
    rs->resent = resent;
}

/* ---- handle pool ------------------------------------------------------------ */

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ud)
{
    (void)h;
    (void)access;
    s3_instance *in = ud;
    pthread_mutex_lock(&in->share_lock[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud)
{
    (void)h;
    s3_instance *in = ud;
    pthread_mutex_unlock(&in->share_lock[data]);
}

int s3_share_init(s3_instance *in)
{
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&in->share_lock[i], NULL);
    in->share = curl_share_init();
    if (!in->share)
        return -1;
    curl_share_setopt(in->share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(in->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(in->share, CURLSHOPT_USERDATA, in);
    curl_share_setopt(in->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(in->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    return 0;
}

s3_conn *s3_conn_get(s3_instance *in)
{
    s3_conn *c = NULL;
    pthread_mutex_lock(&in->lock);
    if (in->nidle)
        c = in->idle[--in->nidle];
    pthread_mutex_unlock(&in->lock);
    if (c)
        return c;
    c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = CURL_SOCKET_BAD;
    if (!(c->e = curl_easy_init())) {
        free(c);
        return NULL;
    }
    return c;
}

void s3_conn_free(s3_conn *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->e); /* closes the connection through c->fd's callback */
    free(c);
}

void s3_conn_put(s3_instance *in, s3_conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&in->lock);
    if (in->nidle < S3_IDLE_MAX) {
        if (in->nidle == in->idle_cap) {
            size_t cap = in->idle_cap ? in->idle_cap * 2 : 8;
            s3_conn **v = realloc(in->idle, cap * sizeof *v);
            if (v) {
                in->idle = v;
                in->idle_cap = cap;
            }
        }
        if (in->nidle < in->idle_cap) {
            in->idle[in->nidle++] = c;
            c = NULL;
        }
    }
    pthread_mutex_unlock(&in->lock);
    s3_conn_free(c);
}

void s3_conn_pool_free(s3_instance *in)
{
    for (size_t i = 0; i < in->nidle; i++)
        s3_conn_free(in->idle[i]);
    free(in->idle);
    in->idle = NULL;
    in->nidle = in->idle_cap = 0;
    if (in->share)
        curl_share_cleanup(in->share);
    in->share = NULL;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&in->share_lock[i]);
}

static int sockopt_cb(void *ud, curl_socket_t fd, curlsocktype purpose)
{
    if (purpose == CURLSOCKTYPE_IPCXN)
        *(curl_socket_t *)ud = fd;
    return CURL_SOCKOPT_OK;
}

static int closesocket_cb(void *ud, curl_socket_t fd)
{
    curl_socket_t *slot = ud;
    if (*slot == fd)
        *slot = CURL_SOCKET_BAD;
    return close(fd);
}

void s3_conn_setup(s3_instance *in, CURL *c, curl_socket_t *fd)
{
    curl_easy_reset(c); /* keeps the live connection, DNS and session caches */
    curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, sockopt_cb);
    curl_easy_setopt(c, CURLOPT_SOCKOPTDATA, fd);
    curl_easy_setopt(c, CURLOPT_CLOSESOCKETFUNCTION, closesocket_cb);
    curl_easy_setopt(c, CURLOPT_CLOSESOCKETDATA, fd);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_SHARE, in->share);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L); /* the signed path is the sent path */
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "coffer-s3/1.0.0");
    if (in->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, in->ca_file);
    if (in->proxy)
        curl_easy_setopt(c, CURLOPT_PROXY, in->proxy);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
    /* A stalled transfer (no byte for `timeout` seconds) is abandoned and
     * retried; a slow but moving one is never cut off. */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)in->timeout);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
}

/* ---- stalls ------------------------------------------------------------------ */

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int stall_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                    curl_off_t ulnow)
{
    (void)dltotal;
    (void)ultotal;
    s3_stall *st = ud;
    const s3_instance *in = st->in;
    if (in && s3_cancelled(in))
        return 1; /* CURLE_ABORTED_BY_CALLBACK, not stalled: cancelled */
    double now = mono_now();
    int64_t bytes = (int64_t)dlnow + (int64_t)ulnow;
    if (bytes != st->bytes || (st->paused && *st->paused)) {
        st->bytes = bytes;
        st->moved = now;
        return 0;
    }
    if (now - st->moved >= st->timeout_s) {
        st->stalled = 1;
        return 1; /* CURLE_ABORTED_BY_CALLBACK, see s3_stall_result */
    }
    return 0;
}

void s3_stall_arm(s3_instance *in, CURL *c, s3_stall *st, const int *paused, int cancellable)
{
    *st = (s3_stall){.in = cancellable ? in : NULL,
                     .timeout_s = in->timeout,
                     .bytes = 0,
                     .moved = mono_now(),
                     .paused = paused};
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, stall_cb);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, st);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
}

CURLcode s3_stall_result(const s3_instance *in, const s3_stall *st, CURLcode cc, char *err)
{
    if (cc != CURLE_ABORTED_BY_CALLBACK || !st->stalled)
        return cc;
    snprintf(err, CURL_ERROR_SIZE, "no data moved for %d s (timeout)", in->timeout);
    return CURLE_OPERATION_TIMEDOUT;
}

/* ---- headers ---------------------------------------------------------------- */

static void copy_value(char *dst, size_t dlen, const char *v, size_t vlen)
{
    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
        vlen--;
    while (vlen && *v == ' ') {
        v++;
        vlen--;
    }
    if (vlen >= dlen)
        vlen = dlen - 1;
    memcpy(dst, v, vlen);
    dst[vlen] = 0;
}

static int header_is(const char *line, size_t n, const char *name, const char **val, size_t *vlen)
{
    size_t k = strlen(name);
    if (n <= k || line[k] != ':' || strncasecmp(line, name, k) != 0)
        return 0;
    *val = line + k + 1;
    *vlen = n - k - 1;
    return 1;
}

void s3_quickack(const curl_socket_t *fd)
{
    if (fd && *fd != CURL_SOCKET_BAD) {
        int one = 1;
        (void)setsockopt(*fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    }
}

size_t s3_header_cb(char *line, size_t size, size_t n, void *ud)
{
    s3_resp *rs = ud;
    size_t len = size * n;
    const char *v;
    size_t vl;
    char tmp[128];
    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* a new response (after 100 Continue, or a retry): start over */
        rs->etag[0] = rs->version_id[0] = rs->content_range[0] = rs->bucket_region[0] = 0;
        rs->lock_mode[0] = rs->lock_until[0] = 0;
        rs->has_length = 0;
        rs->last_modified = 0;
        rs->date = 0;
        s3_quickack(rs->sock);
    } else if (header_is(line, len, "etag", &v, &vl)) {
        copy_value(rs->etag, sizeof rs->etag, v, vl);
    } else if (header_is(line, len, "x-amz-version-id", &v, &vl)) {
        copy_value(rs->version_id, sizeof rs->version_id, v, vl);
    } else if (header_is(line, len, "content-range", &v, &vl)) {
        copy_value(rs->content_range, sizeof rs->content_range, v, vl);
    } else if (header_is(line, len, "x-amz-object-lock-mode", &v, &vl)) {
        copy_value(rs->lock_mode, sizeof rs->lock_mode, v, vl);
    } else if (header_is(line, len, "x-amz-object-lock-retain-until-date", &v, &vl)) {
        copy_value(rs->lock_until, sizeof rs->lock_until, v, vl);
    } else if (header_is(line, len, "date", &v, &vl)) {
        copy_value(tmp, sizeof tmp, v, vl);
        rs->date = s3_parse_http_date(tmp);
    } else if (header_is(line, len, "x-amz-bucket-region", &v, &vl)) {
        copy_value(rs->bucket_region, sizeof rs->bucket_region, v, vl);
    } else if (header_is(line, len, "content-length", &v, &vl)) {
        copy_value(tmp, sizeof tmp, v, vl);
        char *end;
        unsigned long long x = strtoull(tmp, &end, 10);
        if (end != tmp && *end == 0) {
            rs->content_length = x;
            rs->has_length = 1;
        }
    } else if (header_is(line, len, "last-modified", &v, &vl)) {
        copy_value(tmp, sizeof tmp, v, vl);
        time_t t = curl_getdate(tmp, NULL);
        rs->last_modified = t > 0 ? (int64_t)t : 0;
    }
    return len;
}

int64_t s3_content_range_total(const char *cr)
{
    const char *slash = cr ? strrchr(cr, '/') : NULL;
    if (!slash || slash[1] == '*' || !isdigit((unsigned char)slash[1]))
        return -1;
    return (int64_t)strtoll(slash + 1, NULL, 10);
}

struct curl_slist *s3_signed_headers(s3_instance *in, const char *method, const char *okey,
                                     const s3_kv *q, size_t nq, const s3_kv *extra, size_t nextra,
                                     const char *payload_hash)
{
    char date[17];
    s3_amz_date(s3_now(in), date);
    s3_str host = {0}, path = {0};
    s3_host_header(in, &host);
    s3_path(in, okey, &path);

    s3_kv hs[16];
    size_t nh = 0;
    hs[nh++] = (s3_kv){"host", s3_str_cstr(&host)};
    hs[nh++] = (s3_kv){"x-amz-date", date};
    hs[nh++] = (s3_kv){"x-amz-content-sha256", payload_hash};
    if (in->session_token)
        hs[nh++] = (s3_kv){"x-amz-security-token", in->session_token};
    for (size_t i = 0; i < nextra && nh < sizeof hs / sizeof hs[0]; i++)
        hs[nh++] = extra[i];

    s3_sign_in si = {
        .method = method,
        .path = s3_str_cstr(&path),
        .query = q,
        .nquery = nq,
        .headers = hs,
        .nheaders = nh,
        .payload_hash = payload_hash,
        .access_key = in->access_key,
        .secret_key = in->secret_key,
        .region = in->region,
        .service = "s3",
        .amz_date = date,
    };
    s3_sign_out so;
    struct curl_slist *list = NULL;
    if (s3_sign(&si, &so) == 0) {
        s3_str line = {0};
        int ok = 1;
        for (size_t i = 0; i < nh && ok; i++) {
            s3_str_clear(&line);
            s3_str_addf(&line, "%s: %s", hs[i].name, hs[i].value);
            struct curl_slist *l = curl_slist_append(list, s3_str_cstr(&line));
            ok = l != NULL;
            if (l)
                list = l;
        }
        if (ok) {
            s3_str_clear(&line);
            s3_str_addf(&line, "Authorization: %s", s3_str_cstr(&so.authorization));
            struct curl_slist *l = curl_slist_append(list, s3_str_cstr(&line));
            ok = l != NULL;
            if (l)
                list = l;
            /* the line held the signature: do not leave it in freed memory */
            memset(line.s, 0, line.cap);
        }
        /* No "Expect: 100-continue" round trip before each part; no
         * Accept header nobody asked for. */
        struct curl_slist *l = ok ? curl_slist_append(list, "Expect:") : NULL;
        if (l)
            list = l;
        l = l ? curl_slist_append(list, "Accept:") : NULL;
        if (l)
            list = l;
        if (!ok || !l) {
            curl_slist_free_all(list);
            list = NULL;
        }
        s3_str_free(&line);
    }
    s3_sign_out_free(&so);
    s3_str_free(&host);
    s3_str_free(&path);
    return list;
}

/* ---- one attempt ------------------------------------------------------------ */

typedef struct upload_src {
    const char *base, *p;
    size_t len, left;
} upload_src;

/* curl rewinds the body when it sends the request again on a new
 * connection (a reused one was found closed): without this it gives up
 * with CURLE_SEND_FAIL_REWIND. */
static int seek_cb(void *ud, curl_off_t offset, int origin)
{
    upload_src *u = ud;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > u->len)
        return CURL_SEEKFUNC_FAIL;
    u->p = u->base + offset;
    u->left = u->len - (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

static size_t read_cb(char *dst, size_t size, size_t n, void *ud)
{
    upload_src *u = ud;
    size_t want = size * n;
    if (want > u->left)
        want = u->left;
    memcpy(dst, u->p, want);
    u->p += want;
    u->left -= want;
    return want;
}

static size_t body_cb(char *p, size_t size, size_t n, void *ud)
{
    s3_resp *rs = ud;
    size_t len = size * n;
    s3_quickack(rs->sock); /* as rd_write: the answer's last segment must not wait */
    size_t room = rs->max_body > rs->body.len ? rs->max_body - rs->body.len : 0;
    /* Past the limit the rest is dropped, not an error: error bodies and
     * listings fit; anything longer is not something we parse. */
    s3_str_add(&rs->body, p, len < room ? len : room);
    return len;
}

static void attempt(s3_instance *in, s3_conn *conn, const s3_req *rq, const char *payload_hash,
                    s3_resp *rs)
{
    CURL *c = conn->e;
    s3_conn_setup(in, c, &conn->fd);
    s3_str url = {0};
    s3_url(in, rq->okey, rq->query, rq->nquery, &url);
    struct curl_slist *hl = s3_signed_headers(in, rq->method, rq->okey, rq->query, rq->nquery,
                                              rq->headers, rq->nheaders, payload_hash);
    if (!hl) {
        rs->curl_rc = CURLE_OUT_OF_MEMORY;
        snprintf(rs->curl_err, sizeof rs->curl_err, "cannot sign the request");
        s3_str_free(&url);
        return;
    }
    upload_src src = {rq->body, rq->body, rq->body_len, rq->body_len};
    rs->sock = &conn->fd;
    curl_easy_setopt(c, CURLOPT_URL, s3_str_cstr(&url));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, rs->curl_err);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, s3_header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, rs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, rs);
    if (strcmp(rq->method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(rq->method, "PUT") == 0 || strcmp(rq->method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(c, CURLOPT_READDATA, &src);
        curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, seek_cb);
        curl_easy_setopt(c, CURLOPT_SEEKDATA, &src);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->body_len);
        if (strcmp(rq->method, "POST") == 0)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "POST");
    } else if (strcmp(rq->method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, rq->method);
    }
    int reused = conn->fd != CURL_SOCKET_BAD;
    s3_stall_arm(in, c, &rs->stall, NULL,
                 strcmp(rq->method, "GET") == 0 || strcmp(rq->method, "PUT") == 0);
    rs->curl_rc = s3_stall_result(in, &rs->stall, curl_easy_perform(c), rs->curl_err);
    if (rs->curl_rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &rs->status);
    else if (!rs->curl_err[0])
        snprintf(rs->curl_err, sizeof rs->curl_err, "%s", curl_easy_strerror(rs->curl_rc));
    long nconn = 0;
    if (reused && curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &nconn) == CURLE_OK && nconn > 0)
        rs->resent = 1;
    if (rs->resent && nconn > 0 && in->host->log)
        /* libcurl found the kept-alive connection closed (by the server
         * while idle, or broken under this request) and sent the request
         * again on a new one: a retry of its own, said here so it shows */
        in->host->log(in->h, COFFER_LOG_DEBUG,
                      "S3 %s %s/%s: the kept-alive connection was closed; sent on a new one",
                      rq->method, in->bucket, rq->okey ? rq->okey : "");
    if (rs->curl_rc == CURLE_OK && rs->has_length && strcmp(rq->method, "HEAD") != 0 &&
        rs->status != 204 && rs->status != 304 && rs->body.len < rs->max_body &&
        rs->body.len < rs->content_length) {
        /* fewer bytes than Content-Length said (libcurl reports that as
         * CURLE_PARTIAL_FILE; checked here whatever it does) */
        rs->curl_rc = CURLE_PARTIAL_FILE;
        snprintf(rs->curl_err, sizeof rs->curl_err, "the answer ended at byte %zu of %llu",
                 rs->body.len, (unsigned long long)rs->content_length);
    }
    /* The header list holds the signature. */
    for (struct curl_slist *l = hl; l; l = l->next)
        if (strncmp(l->data, "Authorization:", 14) == 0)
            memset(l->data, 0, strlen(l->data));
    curl_slist_free_all(hl);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
    s3_str_free(&url);
    if (rs->curl_rc == CURLE_OK && rs->body.len)
        s3_xml_error(rs->body.s, rs->body.len, rs->err_code, sizeof rs->err_code, rs->err_msg,
                     sizeof rs->err_msg);
    if (rs->curl_rc == CURLE_OK && rs->status >= 200 && rs->status < 300 && rs->err_code[0])
        rs->error_in_200 = 1;
}

/* ---- policy --------------------------------------------------------------------- */

int s3_retryable(CURLcode cc, long status, const char *err_code)
{
    if (cc != CURLE_OK) {
        switch (cc) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_SEND_FAIL_REWIND: /* the body is in memory: sent again whole */
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_HTTP3:
        case CURLE_WEIRD_SERVER_REPLY:
        case CURLE_AGAIN:
            return 1;
        default:
            return 0;
        }
    }
    if (status >= 500 || status == 429 || status == 408)
        return status != 501; /* NotImplemented stays not implemented */
    if (err_code &&
        (strcmp(err_code, "RequestTimeout") == 0 || strcmp(err_code, "SlowDown") == 0 ||
         strcmp(err_code, "InternalError") == 0 || strcmp(err_code, "RequestTimeTooSkewed") == 0 ||
         strcmp(err_code, "OperationAborted") == 0))
        return 1;
    return 0;
}

unsigned s3_backoff_ms(unsigned base_ms, unsigned cap_ms, int attempt, uint32_t *rng)
{
    if (attempt < 1)
        attempt = 1;
    uint64_t d = base_ms;
    for (int i = 1; i < attempt && d < cap_ms; i++)
        d *= 2;
    if (d > cap_ms)
        d = cap_ms;
    /* xorshift32: jitter, not secrecy */
    uint32_t x = *rng ? *rng : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *rng = x;
    uint64_t half = d / 2;
    return (unsigned)(half + (half ? x % (half + 1) : 0));
}

int s3_sleep(s3_instance *in, unsigned ms)
{
    while (ms > 0) {
        if (s3_cancelled(in))
            return 1;
        unsigned step = ms < 100 ? ms : 100;
        usleep(step * 1000u);
        ms -= step;
    }
    return s3_cancelled(in);
}

coffer_status s3_map_status(const s3_resp *rs)
{
    const char *code = rs->err_code;
    if (rs->curl_rc != CURLE_OK) {
        if (rs->curl_rc == CURLE_ABORTED_BY_CALLBACK)
            return COFFER_ERR_CANCELLED;
        if (rs->curl_rc == CURLE_OUT_OF_MEMORY)
            return COFFER_ERR_FATAL;
        return s3_retryable(rs->curl_rc, 0, NULL) ? COFFER_ERR_RETRY : COFFER_ERR_FAILED;
    }
    if (rs->status >= 200 && rs->status < 300 && !rs->error_in_200)
        return COFFER_OK;
    if (strcmp(code, "NoSuchKey") == 0 || strcmp(code, "NoSuchVersion") == 0 ||
        strcmp(code, "NoSuchBucket") == 0 || strcmp(code, "NoSuchUpload") == 0 ||
        (rs->status == 404 && !code[0]))
        return COFFER_ERR_NOT_FOUND;
    if (rs->status == 412 || strcmp(code, "PreconditionFailed") == 0)
        return COFFER_ERR_EXISTS;
    if (s3_lock_refusal(rs->status, code, rs->err_msg))
        return COFFER_ERR_LOCKED;
    if (rs->status == 501 || strcmp(code, "NotImplemented") == 0)
        return COFFER_ERR_UNSUPPORTED;
    if (rs->status == 401 || rs->status == 403 || strcmp(code, "InvalidAccessKeyId") == 0 ||
        strcmp(code, "SignatureDoesNotMatch") == 0 || strcmp(code, "AccessDenied") == 0 ||
        strcmp(code, "ExpiredToken") == 0 || strcmp(code, "InvalidToken") == 0)
        return COFFER_ERR_AUTH;
    if (rs->status == 507 || strcmp(code, "QuotaExceeded") == 0 ||
        strcmp(code, "EntityTooLarge") == 0)
        return COFFER_ERR_NO_SPACE;
    if (s3_retryable(CURLE_OK, rs->status, code))
        return COFFER_ERR_RETRY;
    if (rs->status == 400 || rs->status == 416)
        return COFFER_ERR_INVALID;
    return COFFER_ERR_FAILED;
}

int64_t s3_now(s3_instance *in)
{
    pthread_mutex_lock(&in->lock);
    int64_t off = in->clock_offset;
    pthread_mutex_unlock(&in->lock);
    return (int64_t)time(NULL) + off;
}

/* The server refused a signature as too far from its clock: sign with its
 * time from now on (as the AWS SDKs do), and say so once. */
static void learn_clock(s3_instance *in, const s3_resp *rs)
{
    if (strcmp(rs->err_code, "RequestTimeTooSkewed") != 0 || rs->date <= 0)
        return;
    int64_t off = rs->date - (int64_t)time(NULL);
    pthread_mutex_lock(&in->lock);
    int first = in->clock_offset == 0;
    in->clock_offset = off;
    pthread_mutex_unlock(&in->lock);
    if (first && in->host->log)
        in->host->log(in->h, COFFER_LOG_WARN,
                      "S3 %s: the host's clock is %lld s %s the server's; signing requests with "
                      "the server's time (set the host's clock right: NTP)",
                      in->bucket, (long long)(off < 0 ? -off : off), off > 0 ? "behind" : "ahead of");
}

coffer_status s3_request(s3_instance *in, const s3_req *rq, s3_resp *rs)
{
    char payload_hash[65];
    if (!in->sign_payload && rq->body_len >= 64 * 1024)
        /* object data: the repository hashes (and authenticates) it
         * itself; skip a SHA-256 pass here and on the server */
        snprintf(payload_hash, sizeof payload_hash, "UNSIGNED-PAYLOAD");
    else
        s3_sha256_hex(rq->body ? rq->body : "", rq->body ? rq->body_len : 0, payload_hash);
    s3_req r = *rq;
    char md5b64[32];
    if (((strcmp(rq->method, "PUT") == 0 && in->lock_enabled) || rq->content_md5) &&
        r.nheaders < sizeof r.headers / sizeof r.headers[0]) {
        /* Object Lock buckets refuse uploads without an integrity header. */
        unsigned char md[16];
        EVP_Digest(rq->body ? rq->body : "", rq->body ? rq->body_len : 0, md, NULL, EVP_md5(),
                   NULL);
        EVP_EncodeBlock((unsigned char *)md5b64, md, 16);
        s3_req_header(&r, "content-md5", md5b64);
    }
    s3_conn *c = s3_conn_get(in);
    if (!c) {
        rs->curl_rc = CURLE_OUT_OF_MEMORY;
        snprintf(rs->curl_err, sizeof rs->curl_err, "cannot create a curl handle");
        return COFFER_ERR_FATAL;
    }
    coffer_status st = COFFER_OK;
    for (int n = 0;; n++) {
        resp_reset(rs);
        rs->attempts = n + 1;
        attempt(in, c, &r, payload_hash, rs);
        st = s3_map_status(rs);
        if (st == COFFER_OK)
            break;
        learn_clock(in, rs);
        int again = rq->no_retry ? 0
                    : rs->error_in_200
                        ? rq->retry_200_error && s3_retryable(CURLE_OK, 500, rs->err_code)
                        : s3_retryable(rs->curl_rc, rs->status, rs->err_code);
        if (!again || n >= in->retries)
            break;
        pthread_mutex_lock(&in->lock);
        unsigned ms = s3_backoff_ms(in->backoff_ms, S3_BACKOFF_CAP_MS, n + 1, &in->rng);
        pthread_mutex_unlock(&in->lock);
        atomic_fetch_add(&in->nretries, 1);
        atomic_fetch_add(&in->retry_ms, ms);
        if (in->host->log) {
            char why[CURL_ERROR_SIZE + 128];
            if (rs->curl_rc)
                snprintf(why, sizeof why, "%s", rs->curl_err);
            else
                snprintf(why, sizeof why, "HTTP %ld%s%s", rs->status, rs->err_code[0] ? " " : "",
                         rs->err_code);
            in->host->log(in->h, COFFER_LOG_DEBUG, "S3 %s %s/%s: %s; retry %d of %d in %u ms",
                          rq->method, in->bucket, rq->okey ? rq->okey : "", why, n + 1,
                          in->retries, ms);
        }
        /* a broken connection must not be reused */
        if (rs->curl_rc != CURLE_OK) {
            s3_conn_free(c);
            c = s3_conn_get(in);
            if (!c) {
                rs->curl_rc = CURLE_OUT_OF_MEMORY;
                return COFFER_ERR_FATAL;
            }
        }
        if (s3_sleep(in, ms)) {
            st = COFFER_ERR_CANCELLED;
            break;
        }
    }
    s3_conn_put(in, c);
    return st;
}

/* ---- messages ----------------------------------------------------------------------- */

void s3_describe(s3_instance *in, const char *method, const char *okey, const s3_resp *rs,
                 char *buf, size_t len)
{
    char where[1200];
    snprintf(where, sizeof where, "S3 %s %s%s%s", method, in->bucket, okey ? "/" : "",
             okey ? okey : "");
    char tries[48] = "";
    if (rs->attempts > 1)
        snprintf(tries, sizeof tries, " (after %d attempts)", rs->attempts);
    if (rs->curl_rc == CURLE_ABORTED_BY_CALLBACK) {
        snprintf(buf, len, "%s: cancelled", where);
        return;
    }
    if (rs->curl_rc != CURLE_OK) {
        snprintf(buf, len, "%s: cannot reach %s://%s: %s%s", where, in->scheme, in->host_port,
                 rs->curl_err[0] ? rs->curl_err : curl_easy_strerror(rs->curl_rc), tries);
        return;
    }
    const char *hint = "";
    if (strcmp(rs->err_code, "NoSuchBucket") == 0 || (!okey && rs->status == 404))
        hint = " (the bucket does not exist)";
    else if (strcmp(rs->err_code, "InvalidAccessKeyId") == 0)
        hint = " (the access key id is not known to the server: check AWS_ACCESS_KEY_ID or "
               "access_key_env)";
    else if (strcmp(rs->err_code, "SignatureDoesNotMatch") == 0)
        hint = " (wrong secret key, or a proxy rewrote the request: check AWS_SECRET_ACCESS_KEY or "
               "secret_key_env/secret_key_file)";
    else if (rs->status == 403 && !rs->err_code[0])
        hint = " (access denied: wrong credentials or no permission)";
    else if (rs->status == 403 && strcmp(rs->err_code, "AccessDenied") == 0 &&
             !s3_lock_refusal(rs->status, rs->err_code, rs->err_msg))
        /* a policy's denial: RGW gives no message, AWS a generic one */
        hint = strncmp(method, "DELETE", 6) == 0
                   ? " (access denied: these credentials may not delete; forget and prune need "
                     "the maintenance credentials)"
               : strstr(method, "retention")
                   ? " (access denied: these credentials may not read or set retention: "
                     "s3:GetObjectRetention, s3:PutObjectRetention)"
                   : " (access denied: these credentials may not do this)";
    else if (rs->status == 301 && rs->bucket_region[0])
        hint = " (the bucket is in another region)";
    if (rs->error_in_200)
        snprintf(buf, len, "%s: error inside a 200 response: %s%s%s%s", where, rs->err_code,
                 rs->err_msg[0] ? ": " : "", rs->err_msg, tries);
    else if (rs->err_code[0])
        snprintf(buf, len, "%s: HTTP %ld %s%s%s%s%s", where, rs->status, rs->err_code,
                 rs->err_msg[0] ? ": " : "", rs->err_msg, hint, tries);
    else
        snprintf(buf, len, "%s: HTTP %ld%s%s%s%s", where, rs->status, hint,
                 rs->status == 301 && rs->bucket_region[0] ? " " : "", rs->bucket_region, tries);
}

coffer_status s3_fail(s3_instance *in, coffer_status st, const char *method, const char *okey,
                      const s3_resp *rs)
{
    char msg[S3_ERRMSG + 600];
    s3_describe(in, method, okey, rs, msg, sizeof msg);
    return in->host->error(in->h, st, "%s", msg);
}
