/*
 * storage "s3": private declarations shared by the driver's files.
 *
 *   storage.c  options, instance, descriptor, prepare, stat, list, remove,
 *              versioning, object lock, restore_version
 *   retention.c object lock retention of objects: server_time,
 *              object_retention, set_retention, and the headers, dates
 *              and refusals they share with the writers
 *   read.c     readers: ranged GET streamed through a bounded buffer
 *   write.c    writers: single PUT or multipart upload, parts sent by a
 *              per-instance pool of upload threads
 *   sign.c     AWS Signature Version 4, URI encoding, string buffers
 *   xml.c      the few XML documents S3 speaks (libxml2)
 *   http.c     libcurl transport: handle pool, requests, retries, errors
 *
 * Every symbol carries the s3_ prefix. Threading: the instance is shared
 * by all handles; the handle pool and the upload queue are guarded by
 * in->lock. Worker threads never call host->error (the host keeps one
 * error slot per instance): they record the failure on their writer, and
 * the thread that owns the writer reports it.
 */
#ifndef COFFER_STORAGE_S3_H
#define COFFER_STORAGE_S3_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include <coffer/coffer.h>

#define S3_KEY_MAX 1024          /* S3's own limit on key length */
#define S3_MIN_PART (5ull << 20) /* S3: every part but the last */
#define S3_MAX_PART (5ull << 30)
#define S3_MAX_PARTS 10000
#define S3_XML_MAX (16u << 20) /* largest XML response kept in memory */
#define S3_ERRMSG 768

/* ---- strings (sign.c) --------------------------------------------------- */

typedef struct s3_str {
    char *s;
    size_t len, cap;
} s3_str;

void s3_str_add(s3_str *b, const void *p, size_t n);
void s3_str_adds(s3_str *b, const char *s);
void s3_str_addf(s3_str *b, const char *fmt, ...) COFFER_PRINTF(2, 3);
void s3_str_addc(s3_str *b, char c);
void s3_str_clear(s3_str *b);
void s3_str_free(s3_str *b);
/* Never NULL: "" for an empty buffer. */
const char *s3_str_cstr(s3_str *b);

typedef struct s3_kv {
    const char *name;
    const char *value; /* NULL: a query parameter without value ("?versioning") */
} s3_kv;

/* ---- SigV4 (sign.c) ------------------------------------------------------ */

/* Percent-encode as SigV4 wants: unreserved A-Za-z0-9-._~ stay, '/' stays
 * when keep_slash, everything else (each UTF-8 byte) becomes %XX. */
void s3_uri_encode(s3_str *out, const char *s, int keep_slash);
/* "a=1&b=2": names and values encoded, sorted by name then value. An entry
 * without value gives "name=" (canonical form); with for_url "name". */
void s3_query_string(s3_str *out, const s3_kv *q, size_t n, int for_url);
void s3_hex(const unsigned char *p, size_t n, char *out);
void s3_sha256_hex(const void *p, size_t n, char out[65]);
/* "YYYYMMDDTHHMMSSZ" for t. */
void s3_amz_date(int64_t t, char out[17]);

typedef struct s3_sign_in {
    const char *method;
    const char *path; /* raw absolute path: "/bucket/key", encoded here */
    const s3_kv *query;
    size_t nquery;
    const s3_kv *headers; /* every header to sign, host and x-amz-date included */
    size_t nheaders;
    const char *payload_hash; /* hex SHA-256 of the body, or UNSIGNED-PAYLOAD */
    const char *access_key;
    const char *secret_key;
    const char *region;
    const char *service;  /* "s3" */
    const char *amz_date; /* YYYYMMDDTHHMMSSZ */
} s3_sign_in;

typedef struct s3_sign_out {
    s3_str canonical; /* canonical request */
    s3_str string_to_sign;
    s3_str signed_headers; /* "host;x-amz-date" */
    char signature[65];
    s3_str authorization; /* value of the Authorization header */
} s3_sign_out;

/* 0, or -1 when OpenSSL fails. out must be freed with s3_sign_out_free. */
int s3_sign(const s3_sign_in *in, s3_sign_out *out);
void s3_sign_out_free(s3_sign_out *out);

/* ---- XML (xml.c) --------------------------------------------------------- */

typedef struct s3_xml s3_xml; /* a parsed document */
typedef struct s3_xml_node s3_xml_node;

/* NULL when not well-formed. */
s3_xml *s3_xml_parse(const char *buf, size_t len);
void s3_xml_free(s3_xml *x);
s3_xml_node *s3_xml_root(s3_xml *x);
/* Local name of a node ("Error", "ListBucketResult"). */
const char *s3_xml_name(const s3_xml_node *n);
/* First child element named name, or NULL. */
s3_xml_node *s3_xml_child(const s3_xml_node *n, const char *name);
/* Next sibling element after `after` (NULL: first) named name. */
s3_xml_node *s3_xml_next(const s3_xml_node *parent, const s3_xml_node *after, const char *name);
/* Text of child `name` copied into buf ("" when absent). Returns 1 if the
 * child exists. */
int s3_xml_text(const s3_xml_node *n, const char *name, char *buf, size_t len);
/* malloc'd text of child `name`, NULL when absent. */
char *s3_xml_strdup(const s3_xml_node *n, const char *name);

/* <Error><Code>..</Code><Message>..</Message></Error>: 1 if buf is one. */
int s3_xml_error(const char *buf, size_t len, char *code, size_t clen, char *msg, size_t mlen);

/* CompleteMultipartUpload request body. */
void s3_xml_complete_body(s3_str *out, char (*etags)[80], int nparts);

/* ISO 8601 "2026-11-27T03:30:00.000Z" to seconds since the epoch, 0 if bad. */
int64_t s3_parse_iso8601(const char *s);

/* ---- instance ------------------------------------------------------------ */

typedef enum { S3_REQ_OFF = 0, S3_REQ_ON = 1, S3_REQ_WARN = 2 } s3_require;

typedef struct s3_job s3_job;

/* A reader's transfer runs on a multi handle, which owns the connection
 * cache: the pair is pooled together so readers reuse connections. */
typedef struct s3_rconn {
    CURLM *m;
    CURL *e;
    curl_socket_t *fd; /* the connection's socket (see s3_conn_setup) */
} s3_rconn;

/* A pooled easy handle and the socket of its live connection. */
typedef struct s3_conn {
    CURL *e;
    curl_socket_t fd;
} s3_conn;

#define S3_SPARES 8 /* part buffers kept for reuse, at most */

typedef struct s3_instance {
    uint32_t magic; /* COFFER_MAGIC_INSTANCE while alive */
    const coffer_host *host;
    coffer_hctx *h;

    /* options */
    char *scheme;    /* "http" / "https" */
    char *host_port; /* "127.0.0.1:8000", "s3.us-east-1.amazonaws.com" */
    char *base_path; /* path part of the endpoint without trailing '/', often "" */
    char *region;
    char *bucket;
    char *prefix; /* "" or "a/b/" */
    int path_style;
    char *access_key;
    char *secret_key; /* wiped on free */
    char *session_token;
    uint64_t part_size;
    int parallel_parts;
    int connections; /* reads the core runs at once: idle read connections kept */
    char *storage_class;
    s3_require require_versioning, require_object_lock;
    char *ca_file;
    char *proxy;
    int retries;         /* attempts after the first */
    int timeout;         /* seconds without progress before a transfer is abandoned */
    unsigned backoff_ms; /* first retry delay; doubles with each attempt */
    /* Retries made and milliseconds slept before them, reported when the
     * instance is freed: a slow run on a flaky link says why. */
    _Atomic unsigned long nretries, retry_ms;
    int sign_payload; /* x-amz-content-sha256 is the body hash, else UNSIGNED-PAYLOAD for bodies */
    int list_page;    /* max-keys of list calls (1000; tests make it small to page) */
    int64_t abort_uploads_after; /* s; incomplete uploads older than this are aborted; 0: never */

    /* learned at run time */
    _Atomic int lock_enabled; /* bucket has object lock: uploads carry Content-MD5 */
    int64_t clock_offset; /* server's clock minus the host's, learned from a
                             RequestTimeTooSkewed answer (under lock); requests
                             are signed with the server's time */
    int cond_unsupported; /* server answered If-None-Match with 501 */
    int uploads_swept;    /* old incomplete uploads looked for (under lock) */
    int sweeper_running;  /* the sweeper thread is to be joined */
    pthread_t sweeper;
    int64_t sweep_clock; /* server time before the run's first write */

    pthread_mutex_t lock;
    pthread_cond_t cv;
    CURLSH *share;
    pthread_mutex_t share_lock[CURL_LOCK_DATA_LAST];
    s3_conn **idle; /* easy handles with live connections */
    size_t nidle, idle_cap;
    struct s3_rconn *ridle; /* readers' multi+easy pairs (the multi keeps the connection) */
    size_t nridle, ridle_cap;
    uint32_t rng; /* jitter state (under lock) */

    /* upload pool (write.c) */
    pthread_t *workers;
    int nworkers;
    int stopping;
    s3_job *queue_head, *queue_tail;
    uint64_t mem_used, mem_limit; /* part buffers, bytes */
    int inflight;                 /* jobs queued or running */
    /* freed part buffers kept for the next of the same size (write.c) */
    struct s3_spare {
        char *p;
        size_t size;
    } spare[S3_SPARES];
    int nspare;
    uint64_t spare_bytes;
} s3_instance;

void s3_check_magic(const void *p, uint32_t magic, const char *what);

/* The run was cancelled (a signal, a check past its deadline). */
static inline int s3_cancelled(const s3_instance *in)
{
    return in->host->cancelled && in->host->cancelled(in->h);
}

/* Full object key: prefix + key (malloc'd); key validated. NULL and an
 * error recorded through host->error when the key is bad. */
char *s3_object_key(s3_instance *in, const char *key, coffer_status *st);

/* ---- http.c -------------------------------------------------------------- */

/* Stall watch of one transfer: no byte moved either way for `timeout`
 * seconds (libcurl's low-speed limit averages over several seconds, so
 * a stall right after a burst went unseen for that long). The same
 * callback ends a transfer that moves data (GET, PUT) within a second of
 * a cancellation (SIGINT, SIGTERM), instead of after the timeout and its
 * retries; the requests that clean up after it (DELETE of a lock,
 * AbortMultipartUpload) still go. */
typedef struct s3_stall {
    const struct s3_instance *in; /* NULL: not ended by a cancellation */
    int timeout_s;
    int64_t bytes;      /* up + down at the last movement */
    double moved;       /* monotonic time of the last movement */
    const int *paused;  /* a reader's own pause: waiting on the caller, not stalled */
    int stalled;
} s3_stall;

typedef struct s3_resp {
    long status;
    s3_str body; /* response body, kept up to max_body */
    size_t max_body;
    char etag[80];
    char version_id[256];
    char content_range[128];
    char bucket_region[64];
    char lock_mode[32];  /* x-amz-object-lock-mode, "" when absent */
    char lock_until[64]; /* x-amz-object-lock-retain-until-date, "" when absent */
    int64_t date;        /* the Date header, seconds since the epoch; 0 when absent */
    uint64_t content_length;
    int has_length;
    int64_t last_modified;
    char err_code[96]; /* S3 error code from the body ("NoSuchKey") */
    char err_msg[256];
    CURLcode curl_rc;
    char curl_err[CURL_ERROR_SIZE];
    int attempts;
    int resent;          /* libcurl sent the request again on a new connection */
    int error_in_200;    /* a 200 whose body is <Error> */
    curl_socket_t *sock; /* the transfer's socket, for s3_quickack from the callbacks */
    s3_stall stall;
} s3_resp;

typedef struct s3_req {
    const char *method;
    const char *okey; /* full object key, NULL for the bucket itself */
    s3_kv query[8];
    size_t nquery;
    s3_kv headers[12]; /* extra headers, all signed */
    size_t nheaders;
    int content_md5; /* send Content-MD5 of the body even outside an object lock bucket */
    const void *body;
    size_t body_len;
    int retry_200_error; /* an <Error> in a 200 is retried (Complete/Copy) */
    int no_retry;        /* one attempt only */
} s3_req;

void s3_req_query(s3_req *rq, const char *name, const char *value);
void s3_req_header(s3_req *rq, const char *name, const char *value);

/* Run rq with retries. Returns COFFER_OK for a 2xx without an embedded
 * error; otherwise a status mapped from the failure, and rs filled so
 * s3_describe can phrase it. Never calls host->error: safe in workers. */
coffer_status s3_request(s3_instance *in, const s3_req *rq, s3_resp *rs);
void s3_resp_init(s3_resp *rs, size_t max_body);
void s3_resp_free(s3_resp *rs);

/* "PUT bucket/key: 403 SignatureDoesNotMatch: message" into buf. */
void s3_describe(s3_instance *in, const char *method, const char *okey, const s3_resp *rs,
                 char *buf, size_t len);
/* s3_describe then host->error(st). */
coffer_status s3_fail(s3_instance *in, coffer_status st, const char *method, const char *okey,
                      const s3_resp *rs);

/* Status for a finished response (used by s3_request and the reader). */
coffer_status s3_map_status(const s3_resp *rs);
/* 1 when the failure is worth another attempt. */
int s3_retryable(CURLcode cc, long status, const char *err_code);
/* Seconds since the epoch by the server's clock as far as the instance
 * knows it (the host's clock plus the learned offset). */
int64_t s3_now(s3_instance *in);
/* Delay before retry number `attempt` (1, 2, ...): exponential from base
 * with full jitter in [d/2, d], capped at cap_ms. */
unsigned s3_backoff_ms(unsigned base_ms, unsigned cap_ms, int attempt, uint32_t *rng);
/* Sleep ms, waking early when the host cancels; 1 if cancelled. */
int s3_sleep(s3_instance *in, unsigned ms);

/* URL for an object key (NULL: the bucket), with a query string. */
void s3_url(const s3_instance *in, const char *okey, const s3_kv *q, size_t nq, s3_str *out);
/* Path that is signed: "/bucket/key" or "/key" (virtual-hosted). */
void s3_path(const s3_instance *in, const char *okey, s3_str *out);
/* Host header value. */
void s3_host_header(const s3_instance *in, s3_str *out);

/* Easy handle pool. */
s3_conn *s3_conn_get(s3_instance *in);
void s3_conn_put(s3_instance *in, s3_conn *c);
void s3_conn_free(s3_conn *c);
void s3_conn_pool_free(s3_instance *in);
int s3_share_init(s3_instance *in);

/* Reset a handle and apply the common options (TLS, proxy, timeouts,
 * share). *fd tracks the socket of the connection the handle opens (set
 * when curl creates it, CURL_SOCKET_BAD once curl closes it); it must
 * outlive every connection the handle (or its multi) keeps. */
void s3_conn_setup(s3_instance *in, CURL *c, curl_socket_t *fd);
/* Build the signed header list for a request. NULL on failure (out of
 * memory, OpenSSL). payload_hash: hex or "UNSIGNED-PAYLOAD". */
struct curl_slist *s3_signed_headers(s3_instance *in, const char *method, const char *okey,
                                     const s3_kv *q, size_t nq, const s3_kv *extra, size_t nextra,
                                     const char *payload_hash);
/* Watch c's next transfer for a stall (see s3_stall); paused may be NULL;
 * cancellable: a cancellation ends it (CURLE_ABORTED_BY_CALLBACK). */
void s3_stall_arm(s3_instance *in, CURL *c, s3_stall *st, const int *paused, int cancellable);
/* After a transfer: a stall abort becomes CURLE_OPERATION_TIMEDOUT with a
 * message in err (retried like any timeout). */
CURLcode s3_stall_result(const s3_instance *in, const s3_stall *st, CURLcode cc, char *err);

/* Acknowledge received data at once. Servers that send the headers and
 * the body of an answer in two writes (Ceph's beast frontend) otherwise
 * wait for the client's delayed ACK (40 ms on Linux) under Nagle. */
void s3_quickack(const curl_socket_t *fd);
/* Header callback that fills an s3_resp (userdata = s3_resp *). */
size_t s3_header_cb(char *line, size_t size, size_t n, void *ud);

/* ---- parse helpers shared by storage.c and read.c ------------------------ */

/* "bytes 0-9/1234": total size, or -1. */
int64_t s3_content_range_total(const char *cr);

/* ---- retention.c ------------------------------------------------------- */

/* "GOVERNANCE" / "COMPLIANCE" (NULL for COFFER_LOCK_NONE or a bad value). */
const char *s3_lock_mode_name(uint32_t mode);
/* S3's mode name to a mode, case-insensitive; COFFER_LOCK_NONE for "" or
 * anything else. */
coffer_lock_mode s3_lock_mode_parse(const char *s);
/* "2026-12-04T22:40:08Z" (the retain-until date S3 takes). */
void s3_iso8601(int64_t t, char out[32]);
/* An HTTP date (IMF-fixdate "Fri, 04 Dec 2026 22:40:08 GMT") to seconds
 * since the epoch; 0 when unreadable. */
int64_t s3_parse_http_date(const char *s);
/* 1 when a refusal is object lock's (a version under retention, a
 * retention that may not be shortened), not a lack of permission: S3 and
 * RGW both answer 403 AccessDenied, and only the message tells. */
int s3_lock_refusal(long status, const char *code, const char *msg);
/* <Retention> document of PutObjectRetention. */
void s3_retention_body(s3_str *out, coffer_lock_mode mode, int64_t until);

/* PUT ?retention of okey (one version when version_id): a status, rs
 * initialised and filled (free it); never calls host->error. */
coffer_status s3_put_retention(s3_instance *in, const char *okey, const char *version_id,
                               coffer_lock_mode mode, int64_t until, uint32_t flags, s3_resp *rs);
coffer_status s3_server_time(void *instance, int64_t *now);
coffer_status s3_object_retention(void *instance, const char *key, const char *version_id,
                                  coffer_lock_mode *mode, int64_t *until);
coffer_status s3_set_retention(void *instance, const char *key, const char *version_id,
                               coffer_lock_mode mode, int64_t until, uint32_t flags);

/* ---- write.c ------------------------------------------------------------- */

coffer_status s3_writer_open(void *instance, const char *key, const coffer_write_opts *opts,
                             void **writer);
coffer_status s3_writer_write(void *writer, const void *buf, size_t len);
coffer_status s3_writer_commit(void *writer);
void s3_writer_abort(void *writer);
void s3_workers_stop(s3_instance *in);
/* Unmaps the part buffers kept for reuse (after s3_workers_stop). */
void s3_parts_free(s3_instance *in);
/* Waits for the sweep of old incomplete uploads, if one runs. */
void s3_sweeper_join(s3_instance *in);

/* ---- read.c -------------------------------------------------------------- */

coffer_status s3_reader_open(void *instance, const char *key, uint64_t offset, uint64_t length,
                             void **reader);
coffer_status s3_reader_open_version(void *instance, const char *key, const char *version_id,
                                     void **reader);
coffer_status s3_reader_open_version_range(void *instance, const char *key, const char *version_id,
                                           uint64_t offset, uint64_t length, void **reader);
coffer_status s3_reader_read(void *reader, void *buf, size_t len, size_t *got);
void s3_reader_close(void *reader);
void s3_rconn_pool_free(s3_instance *in);

#endif
