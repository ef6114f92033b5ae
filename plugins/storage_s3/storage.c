/*
 * storage "s3": a repository in an S3 bucket (AWS, Ceph RGW, MinIO, ...),
 * under an optional key prefix.
 *
 * This file holds the descriptor, options, the instance and the namespace
 * operations (prepare, stat, list, remove) plus the optional versioning
 * and object-lock calls; readers are in read.c, writers in write.c, the
 * transport in http.c, the signer in sign.c.
 *
 * Atomic publish comes from S3 itself: a PUT or CompleteMultipartUpload
 * makes the whole object visible at once, and an upload that never
 * completes leaves no object (the driver aborts it; a bucket lifecycle
 * rule for incomplete uploads catches what a crash leaves).
 *
 * remove is HEAD then DELETE, because the ABI wants NOT_FOUND for a
 * missing key and S3's DELETE answers 204 either way; remove_ex with
 * COFFER_REMOVE_ABSENT_OK is the DELETE alone. In a versioned
 * bucket DELETE adds a delete marker: older versions stay readable.
 */
#include "s3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <libxml/parser.h>

#define S3_DEFAULT_PART (16ull << 20)

static const char VERSIONING_REASON[] =
    "a bucket without versioning lets a deleted or overwritten object be lost for good, so a "
    "backup that relies on it is not a complete plan";

void s3_check_magic(const void *p, uint32_t magic, const char *what)
{
    if (!p || *(const uint32_t *)p != magic) {
        fprintf(stderr, "coffer storage s3: invalid or already closed %s handle %p\n", what, p);
        abort();
    }
}

/* ---- keys ------------------------------------------------------------------ */

static coffer_status key_check(s3_instance *in, const char *key, const char *what)
{
    if (!key || !*key)
        return in->host->error(in->h, COFFER_ERR_INVALID, "empty %s", what);
    if (key[0] == '/')
        return in->host->error(in->h, COFFER_ERR_INVALID, "%s '%s' is absolute", what, key);
    if (strlen(in->prefix) + strlen(key) > S3_KEY_MAX)
        return in->host->error(in->h, COFFER_ERR_INVALID,
                               "%s '%.64s...' with the prefix is longer than %d bytes", what, key,
                               S3_KEY_MAX);
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return in->host->error(in->h, COFFER_ERR_INVALID, "%s has a control character", what);
    const char *seg = key;
    for (;;) {
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        if (n == 0)
            return in->host->error(in->h, COFFER_ERR_INVALID, "%s '%s' has an empty segment", what,
                                   key);
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return in->host->error(in->h, COFFER_ERR_INVALID, "%s '%s' has a '.' or '..' segment",
                                   what, key);
        if (!end)
            return COFFER_OK;
        seg = end + 1;
    }
}

char *s3_object_key(s3_instance *in, const char *key, coffer_status *st)
{
    *st = key_check(in, key, "key");
    if (*st)
        return NULL;
    size_t p = strlen(in->prefix), k = strlen(key);
    char *o = malloc(p + k + 1);
    if (!o) {
        *st = in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
        return NULL;
    }
    memcpy(o, in->prefix, p);
    memcpy(o + p, key, k + 1);
    return o;
}

static void strip_quotes(char *dst, size_t dlen, const char *src)
{
    size_t n = strlen(src);
    if (n >= 2 && src[0] == '"' && src[n - 1] == '"') {
        src++;
        n -= 2;
    }
    if (n >= dlen)
        n = dlen - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* ---- options and instance ------------------------------------------------------ */

static const coffer_option s3_options[] = {
    {"bucket", COFFER_OPT_STRING, NULL, 1, 0, "bucket name (from s3://BUCKET/PREFIX)"},
    {"prefix", COFFER_OPT_STRING, "", 0, 0,
     "key prefix inside the bucket (from s3://BUCKET/PREFIX); a '/' is added at its end"},
    {"endpoint", COFFER_OPT_STRING, NULL, 0, 0,
     "server URL, e.g. http://127.0.0.1:7480 (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, "
     "else AWS: https://s3.REGION.amazonaws.com)"},
    {"region", COFFER_OPT_STRING, NULL, 0, 0,
     "signing region (default: $AWS_REGION, $AWS_DEFAULT_REGION, us-east-1)"},
    {"path_style", COFFER_OPT_STRING, "auto", 0, 0,
     "auto | true | false: http://HOST/BUCKET/KEY instead of http://BUCKET.HOST/KEY (auto: path "
     "style for "
     "custom endpoints and buckets with dots)"},
    {"access_key_env", COFFER_OPT_STRING, NULL, 0, 0,
     "environment variable holding the access key id (default AWS_ACCESS_KEY_ID)"},
    {"access_key_file", COFFER_OPT_PATH, NULL, 0, 0, "file whose first line is the access key id"},
    {"secret_key_env", COFFER_OPT_STRING, NULL, 0, 0,
     "environment variable holding the secret access key (default AWS_SECRET_ACCESS_KEY)"},
    {"secret_key_file", COFFER_OPT_PATH, NULL, 0, 0,
     "file whose first line is the secret access key"},
    {"session_token_env", COFFER_OPT_STRING, NULL, 0, 0,
     "environment variable holding a session token (default AWS_SESSION_TOKEN, if set)"},
    {"session_token_file", COFFER_OPT_PATH, NULL, 0, 0, "file whose first line is a session token"},
    {"part_size", COFFER_OPT_SIZE, "16M", 0, 0,
     "multipart part size (5M..5G); objects smaller than this go in one PUT"},
    {"parallel_parts", COFFER_OPT_INT, "4", 0, 0,
     "parts uploaded at once per target; part buffers take part_size x parallel_parts of memory"},
    {"connections", COFFER_OPT_INT, NULL, 0, 0,
     "pack reads a restore runs at once; 1..64 (default: one more than the CPUs, 3 to 8, "
     "plus one for every 2 ms of the bucket's round trip, 16 at most)"},
    {"inflight_bytes", COFFER_OPT_SIZE, NULL, 0, 0,
     "pack data read ahead and not yet used (1M..1G; default 24M, plus 0.6M for every ms of "
     "the bucket's round trip, 32M at most); with connections it bounds the memory reads "
     "take, and each read is at most inflight_bytes / (2 x connections), 8M at most"},
    {"storage_class", COFFER_OPT_STRING, NULL, 0, 0,
     "x-amz-storage-class of new objects (STANDARD, ...)"},
    {"require_versioning", COFFER_OPT_STRING, "false", 0, 0,
     "true | warn | false: refuse (or warn about) a bucket without versioning"},
    {"require_object_lock", COFFER_OPT_STRING, "false", 0, 0,
     "true | warn | false: refuse (or warn about) a bucket without object lock"},
    {"ca_file", COFFER_OPT_PATH, NULL, 0, 0, "PEM bundle of CAs to trust instead of the system's"},
    {"proxy", COFFER_OPT_STRING, NULL, 0, 0,
     "proxy URL (default: libcurl's https_proxy/http_proxy environment)"},
    {"retries", COFFER_OPT_INT, "8", 0, 0,
     "attempts after the first for transient failures (5xx, 429, resets, timeouts)"},
    {"retry_delay", COFFER_OPT_INT, "250", 0, 0,
     "first retry delay in milliseconds (doubles, with jitter)"},
    {"timeout", COFFER_OPT_INT, "120", 0, 0,
     "seconds without any progress before a transfer is retried"},
    {"abort_uploads_after", COFFER_OPT_INT, "86400", 0, 0,
     "seconds after which an incomplete multipart upload under the prefix (left by a killed "
     "run) is aborted by the next run that writes; 0: never (leave it to a bucket lifecycle "
     "rule)"},
    {"sign_payload", COFFER_OPT_BOOL, "true", 0, 0,
     "sign the SHA-256 of uploaded data (the server checks every byte); false sends "
     "UNSIGNED-PAYLOAD for "
     "bodies of 64 KiB and more, saving a hash pass on both ends"},
    {NULL, 0, NULL, 0, 0, NULL},
};

static void instance_free(void *instance)
{
    if (!instance)
        return;
    s3_instance *in = instance;
    s3_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    s3_sweeper_join(in);
    s3_workers_stop(in);
    s3_parts_free(in);
    unsigned long nr = atomic_load(&in->nretries);
    if (nr && in->host && in->host->log)
        in->host->log(in->h, COFFER_LOG_INFO,
                      "S3 %s: %lu request(s) retried after transient failures, %.1f s spent "
                      "in backoff",
                      in->bucket, nr, (double)atomic_load(&in->retry_ms) / 1000.0);
    s3_rconn_pool_free(in);
    s3_conn_pool_free(in);
    in->magic = 0;
    free(in->scheme);
    free(in->host_port);
    free(in->base_path);
    free(in->region);
    free(in->bucket);
    free(in->prefix);
    free(in->access_key);
    if (in->secret_key)
        in->host->secret_free(in->secret_key);
    if (in->session_token)
        in->host->secret_free(in->session_token);
    free(in->storage_class);
    free(in->ca_file);
    free(in->proxy);
    pthread_mutex_destroy(&in->lock);
    pthread_cond_destroy(&in->cv);
    free(in);
}

static char *dup_or_null(const char *s)
{
    if (!s || !*s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* Parse "scheme://host[:port][/path]" into the instance. */
static coffer_status parse_endpoint(s3_instance *in, const char *ep)
{
    const char *p = strstr(ep, "://");
    if (p) {
        size_t n = (size_t)(p - ep);
        if (!((n == 4 && strncasecmp(ep, "http", 4) == 0) ||
              (n == 5 && strncasecmp(ep, "https", 5) == 0)))
            return in->host->error(in->h, COFFER_ERR_INVALID,
                                   "option endpoint: '%s' is not an http or https URL", ep);
        in->scheme = n == 4 ? strdup("http") : strdup("https");
        p += 3;
    } else {
        in->scheme = strdup("https");
        p = ep;
    }
    const char *slash = strchr(p, '/');
    size_t hl = slash ? (size_t)(slash - p) : strlen(p);
    if (hl == 0)
        return in->host->error(in->h, COFFER_ERR_INVALID, "option endpoint: no host in '%s'", ep);
    if (memchr(p, '@', hl) || memchr(p, '?', hl) || memchr(p, '#', hl))
        return in->host->error(in->h, COFFER_ERR_INVALID,
                               "option endpoint: '%s' must be scheme://host[:port][/path] (no "
                               "credentials, query or fragment)",
                               ep);
    in->host_port = strndup(p, hl);
    if (!in->scheme || !in->host_port)
        abort();
    /* The Host header must be what curl derives from the URL: drop a
     * default port. */
    size_t n = strlen(in->host_port);
    const char *dflt = strcmp(in->scheme, "http") == 0 ? ":80" : ":443";
    size_t dl = strlen(dflt);
    if (n > dl && strcmp(in->host_port + n - dl, dflt) == 0 && in->host_port[n - dl - 1] != ']')
        in->host_port[n - dl] = 0;
    in->base_path = strdup(slash ? slash : "");
    if (!in->base_path)
        abort();
    for (size_t k = strlen(in->base_path); k > 0 && in->base_path[k - 1] == '/'; k--)
        in->base_path[k - 1] = 0;
    return COFFER_OK;
}

static coffer_status parse_require(s3_instance *in, const coffer_config *cfg, const char *name,
                                   s3_require *out)
{
    const char *v = in->host->config_get(cfg, name);
    *out = S3_REQ_OFF;
    if (!v || !*v || strcasecmp(v, "false") == 0 || strcasecmp(v, "no") == 0 ||
        strcasecmp(v, "off") == 0)
        return COFFER_OK;
    if (strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0 || strcasecmp(v, "on") == 0) {
        *out = S3_REQ_ON;
        return COFFER_OK;
    }
    if (strcasecmp(v, "warn") == 0) {
        *out = S3_REQ_WARN;
        return COFFER_OK;
    }
    return in->host->error(in->h, COFFER_ERR_INVALID, "option %s: '%s' is not true, false or warn",
                           name, v);
}

/* A credential: NAME_env / NAME_file through the host, else the standard
 * variable. */
static char *credential(s3_instance *in, const coffer_config *cfg, const char *name,
                        const char *std_env)
{
    char opt[64];
    snprintf(opt, sizeof opt, "%s_env", name);
    const char *e = in->host->config_get(cfg, opt);
    snprintf(opt, sizeof opt, "%s_file", name);
    const char *f = in->host->config_get(cfg, opt);
    if ((e && *e) || (f && *f))
        return in->host->secret_get(in->h, cfg, name);
    const char *v = getenv(std_env);
    if (!v || !*v)
        return NULL;
    /* malloc'd like the host's: the caller frees it with secret_free,
     * which wipes it. */
    char *s = strdup(v);
    if (!s)
        abort();
    return s;
}

static int dns_compatible(const char *b)
{
    size_t n = strlen(b);
    if (n < 3 || n > 63)
        return 0;
    for (const char *p = b; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return 0;
    return 1;
}

static coffer_status instance_new(const coffer_host *host, coffer_hctx *h, const coffer_config *cfg,
                                  void **instance)
{
    *instance = NULL;
    s3_instance *in = calloc(1, sizeof *in);
    if (!in)
        return host->error(h, COFFER_ERR_FATAL, "out of memory");
    in->magic = COFFER_MAGIC_INSTANCE;
    in->host = host;
    in->h = h;
    pthread_mutex_init(&in->lock, NULL);
    pthread_cond_init(&in->cv, NULL);
    in->rng = (uint32_t)time(NULL) ^ (uint32_t)(uintptr_t)in;
    coffer_status st;
    if (s3_share_init(in) != 0) {
        st = host->error(h, COFFER_ERR_FATAL, "cannot initialise libcurl");
        goto fail;
    }

    const char *bucket = host->config_get(cfg, "bucket");
    if (!bucket || !*bucket) {
        st = host->error(h, COFFER_ERR_INVALID,
                         "option 'bucket' is required (or a location s3://BUCKET/PREFIX)");
        goto fail;
    }
    if (strchr(bucket, '/') || strlen(bucket) > 255) {
        st = host->error(h, COFFER_ERR_INVALID, "option bucket: '%s' is not a bucket name", bucket);
        goto fail;
    }
    in->bucket = dup_or_null(bucket);

    /* prefix: no leading '/', one trailing '/' */
    const char *pfx = host->config_get(cfg, "prefix");
    while (pfx && *pfx == '/')
        pfx++;
    size_t pl = pfx ? strlen(pfx) : 0;
    while (pl && pfx[pl - 1] == '/')
        pl--;
    in->prefix = calloc(1, pl + 2);
    if (!in->prefix)
        abort();
    if (pl) {
        char *bare = strndup(pfx, pl);
        if (!bare)
            abort();
        st = key_check(in, bare, "prefix");
        free(bare);
        if (st)
            goto fail;
        memcpy(in->prefix, pfx, pl);
        in->prefix[pl] = '/';
    }

    const char *region = host->config_get(cfg, "region");
    if (!region || !*region)
        region = env_nonempty("AWS_REGION");
    if (!region)
        region = env_nonempty("AWS_DEFAULT_REGION");
    in->region = strdup(region ? region : "us-east-1");

    const char *ep = host->config_get(cfg, "endpoint");
    if (!ep || !*ep)
        ep = env_nonempty("AWS_ENDPOINT_URL_S3");
    if (!ep)
        ep = env_nonempty("AWS_ENDPOINT_URL");
    int custom = ep != NULL;
    char aws[160];
    if (!ep) {
        snprintf(aws, sizeof aws, "https://s3.%s.amazonaws.com", in->region);
        ep = aws;
    }
    if ((st = parse_endpoint(in, ep)) != COFFER_OK)
        goto fail;

    const char *ps = host->config_get(cfg, "path_style");
    if (!ps || !*ps || strcasecmp(ps, "auto") == 0) {
        in->path_style = custom || !dns_compatible(in->bucket);
    } else {
        int b = host->config_get_bool(cfg, "path_style", -1);
        if (b < 0) {
            st = host->error(h, COFFER_ERR_INVALID,
                             "option path_style: '%s' is not auto, true or false", ps);
            goto fail;
        }
        in->path_style = b;
    }

    in->part_size = (uint64_t)host->config_get_int(cfg, "part_size", (int64_t)S3_DEFAULT_PART);
    if (in->part_size < S3_MIN_PART || in->part_size > S3_MAX_PART) {
        st = host->error(h, COFFER_ERR_INVALID,
                         "option part_size: %llu is outside 5M..5G (S3's limits)",
                         (unsigned long long)in->part_size);
        goto fail;
    }
    int64_t pp = host->config_get_int(cfg, "parallel_parts", 4);
    if (pp < 1 || pp > 64) {
        st = host->error(h, COFFER_ERR_INVALID, "option parallel_parts: %lld is outside 1..64",
                         (long long)pp);
        goto fail;
    }
    in->parallel_parts = (int)pp;
    int64_t conns = host->config_get_int(cfg, "connections", 0); /* 0: the core's default */
    if (conns < 0 || conns > 64 || (conns == 0 && host->config_get(cfg, "connections"))) {
        st = host->error(h, COFFER_ERR_INVALID, "option connections: %lld is outside 1..64",
                         (long long)conns);
        goto fail;
    }
    int64_t infl = host->config_get_int(cfg, "inflight_bytes", 24ll << 20);
    if (infl < (1ll << 20) || infl > (1ll << 30)) {
        st = host->error(h, COFFER_ERR_INVALID, "option inflight_bytes: %lld is outside 1M..1G",
                         (long long)infl);
        goto fail;
    }
    /* Sizes the pool of idle connections: the core's default is 16 at most. */
    in->connections = conns ? (int)conns : 16;
    in->mem_limit = in->part_size * (uint64_t)in->parallel_parts;
    int64_t r = host->config_get_int(cfg, "retries", 8);
    int64_t d = host->config_get_int(cfg, "retry_delay", 250);
    int64_t t = host->config_get_int(cfg, "timeout", 120);
    if (r < 0 || r > 100 || d < 1 || d > 60000 || t < 1 || t > 86400) {
        st = host->error(h, COFFER_ERR_INVALID,
                         "options retries (0..100), retry_delay (1..60000 ms) or timeout "
                         "(1..86400 s) out of range");
        goto fail;
    }
    int64_t au = host->config_get_int(cfg, "abort_uploads_after", 86400);
    if (au < 0) {
        st = host->error(h, COFFER_ERR_INVALID, "option abort_uploads_after: %lld is negative",
                         (long long)au);
        goto fail;
    }
    in->abort_uploads_after = au;
    in->list_page = 1000;
    in->sign_payload = host->config_get_bool(cfg, "sign_payload", 1);
    in->retries = (int)r;
    in->backoff_ms = (unsigned)d;
    in->timeout = (int)t;
    in->storage_class = dup_or_null(host->config_get(cfg, "storage_class"));
    in->proxy = dup_or_null(host->config_get(cfg, "proxy"));
    const char *ca = host->config_get(cfg, "ca_file");
    if (ca && *ca) {
        const char *root = host->policy_root ? host->policy_root(h) : NULL;
        if (ca[0] != '/' && root && *root) {
            size_t n = strlen(root) + strlen(ca) + 2;
            in->ca_file = malloc(n);
            if (!in->ca_file)
                abort();
            snprintf(in->ca_file, n, "%s/%s", root, ca);
        } else {
            in->ca_file = dup_or_null(ca);
        }
    }
    if ((st = parse_require(in, cfg, "require_versioning", &in->require_versioning)) != COFFER_OK ||
        (st = parse_require(in, cfg, "require_object_lock", &in->require_object_lock)) != COFFER_OK)
        goto fail;

    char *ak = credential(in, cfg, "access_key", "AWS_ACCESS_KEY_ID");
    in->secret_key = credential(in, cfg, "secret_key", "AWS_SECRET_ACCESS_KEY");
    in->session_token = credential(in, cfg, "session_token", "AWS_SESSION_TOKEN");
    if (ak) {
        in->access_key = strdup(ak);
        host->secret_free(ak);
    }
    if (!in->access_key || !*in->access_key || !in->secret_key || !*in->secret_key) {
        st = host->error(
            h, COFFER_ERR_AUTH,
            "no S3 credentials for bucket %s: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
            "the options access_key_env/access_key_file and secret_key_env/secret_key_file",
            in->bucket);
        goto fail;
    }
    *instance = in;
    return COFFER_OK;
fail:
    instance_free(in);
    return st;
}

static uint32_t capabilities(void *instance)
{
    s3_instance *in = instance;
    s3_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    /* prepare only sends its own requests and records what it learns
     * under atomics: reads may go on meanwhile. */
    uint32_t caps = COFFER_CAP_ATOMIC_PUBLISH | COFFER_CAP_RANGED_READ | COFFER_CAP_VERSIONING |
                    COFFER_CAP_OBJECT_LOCK | COFFER_CAP_RESTORE_VERSION |
                    COFFER_CAP_CONCURRENT_PREPARE;
    if (!in->cond_unsupported)
        caps |= COFFER_CAP_CONDITIONAL_CREATE;
    if (in->lock_enabled)
        caps |= COFFER_CAP_RETENTION; /* learned in prepare */
    return caps;
}

/* ---- bucket-level calls ---------------------------------------------------------- */

static coffer_status bucket_get(s3_instance *in, const char *sub, s3_resp *rs)
{
    s3_req rq = {.method = "GET"};
    s3_req_query(&rq, sub, NULL);
    return s3_request(in, &rq, rs);
}

static coffer_status versioning_status(void *instance, coffer_versioning *status)
{
    s3_instance *in = instance;
    s3_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    s3_resp rs;
    s3_resp_init(&rs, S3_XML_MAX);
    coffer_status st = bucket_get(in, "versioning", &rs);
    if (st) {
        st = s3_fail(in, st, "GET ?versioning", NULL, &rs);
        s3_resp_free(&rs);
        return st;
    }
    *status = COFFER_VERSIONING_NEVER;
    s3_xml *x = s3_xml_parse(rs.body.s, rs.body.len);
    if (x) {
        char v[32];
        s3_xml_text(s3_xml_root(x), "Status", v, sizeof v);
        if (strcmp(v, "Enabled") == 0)
            *status = COFFER_VERSIONING_ENABLED;
        else if (strcmp(v, "Suspended") == 0)
            *status = COFFER_VERSIONING_SUSPENDED;
        s3_xml_free(x);
    } else if (rs.body.len) {
        st = in->host->error(in->h, COFFER_ERR_FAILED,
                             "S3 GET %s?versioning: unreadable XML answer", in->bucket);
    }
    s3_resp_free(&rs);
    return st;
}

/* Reads the answer to GET ?object-lock (st is the request's status);
 * frees rs. */
static coffer_status object_lock_answer(s3_instance *in, coffer_status st, s3_resp *rs,
                                        int *enabled, char *mode, size_t mode_len, int *days)
{
    *enabled = 0;
    if (mode && mode_len)
        mode[0] = 0;
    if (days)
        *days = 0;
    if (st) {
        /* No configuration at all is "not enabled", not a failure. */
        if (rs->curl_rc == CURLE_OK &&
            (rs->status == 404 ||
             strcmp(rs->err_code, "ObjectLockConfigurationNotFoundError") == 0) &&
            strcmp(rs->err_code, "NoSuchBucket") != 0)
            st = COFFER_OK;
        else
            st = s3_fail(in, st, "GET ?object-lock", NULL, rs);
        s3_resp_free(rs);
        return st;
    }
    s3_xml *x = s3_xml_parse(rs->body.s, rs->body.len);
    if (x) {
        s3_xml_node *r = s3_xml_root(x);
        char v[32];
        s3_xml_text(r, "ObjectLockEnabled", v, sizeof v);
        *enabled = strcmp(v, "Enabled") == 0;
        s3_xml_node *dr = s3_xml_child(s3_xml_child(r, "Rule"), "DefaultRetention");
        if (dr) {
            if (mode && mode_len)
                s3_xml_text(dr, "Mode", mode, mode_len);
            if (days) {
                char n[24];
                if (s3_xml_text(dr, "Days", n, sizeof n))
                    *days = atoi(n);
                else if (s3_xml_text(dr, "Years", n, sizeof n))
                    *days = atoi(n) * 365;
            }
        }
        s3_xml_free(x);
    }
    s3_resp_free(rs);
    if (*enabled)
        in->lock_enabled = 1;
    return COFFER_OK;
}

static coffer_status object_lock_status(void *instance, int *enabled, char *mode, size_t mode_len,
                                        int *days)
{
    s3_instance *in = instance;
    s3_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    s3_resp rs;
    s3_resp_init(&rs, S3_XML_MAX);
    coffer_status st = bucket_get(in, "object-lock", &rs);
    return object_lock_answer(in, st, &rs, enabled, mode, mode_len, days);
}

static coffer_status create_bucket(s3_instance *in)
{
    s3_req rq = {.method = "PUT"};
    s3_str body = {0};
    if (strcmp(in->region, "us-east-1") != 0) {
        s3_str_addf(&body,
                    "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                    "<LocationConstraint>%s</LocationConstraint></CreateBucketConfiguration>",
                    in->region);
        rq.body = body.s;
        rq.body_len = body.len;
    }
    if (in->require_object_lock == S3_REQ_ON)
        s3_req_header(&rq, "x-amz-bucket-object-lock-enabled", "true");
    s3_resp rs;
    s3_resp_init(&rs, 64 * 1024);
    coffer_status st = s3_request(in, &rq, &rs);
    if (st && strcmp(rs.err_code, "BucketAlreadyOwnedByYou") == 0)
        st = COFFER_OK; /* someone else just made it for us */
    if (st)
        st = s3_fail(in, st, "PUT (create bucket)", NULL, &rs);
    else
        in->host->log(in->h, COFFER_LOG_INFO, "created bucket %s", in->bucket);
    s3_resp_free(&rs);
    s3_str_free(&body);
    if (st || in->require_versioning != S3_REQ_ON || in->require_object_lock == S3_REQ_ON)
        return st;
    /* A bucket we make for a policy that requires versioning gets it. */
    static const char vbody[] =
        "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<Status>Enabled</Status></VersioningConfiguration>";
    s3_req vq = {.method = "PUT", .body = vbody, .body_len = sizeof vbody - 1};
    s3_req_query(&vq, "versioning", NULL);
    s3_resp_init(&rs, 64 * 1024);
    st = s3_request(in, &vq, &rs);
    if (st)
        st = s3_fail(in, st, "PUT ?versioning", NULL, &rs);
    s3_resp_free(&rs);
    return st;
}

/* GET ?object-lock on a thread of its own, asked while the bucket's HEAD
 * is: over a distant link each is a round trip. Its answer is read only
 * when the HEAD found the bucket, so the errors are those of the HEAD. */
typedef struct lock_query {
    s3_instance *in;
    s3_resp rs;
    coffer_status st;
    pthread_t th;
    int running;
} lock_query;

static void *lock_query_run(void *arg)
{
    lock_query *q = arg;
    q->st = bucket_get(q->in, "object-lock", &q->rs);
    return NULL;
}

static void lock_query_start(s3_instance *in, lock_query *q)
{
    q->in = in;
    s3_resp_init(&q->rs, S3_XML_MAX);
    q->running = pthread_create(&q->th, NULL, lock_query_run, q) == 0;
}

/* The answer, or -1 when there is none to use (no thread, or thrown away). */
static int lock_query_join(lock_query *q, int use)
{
    if (q->running) {
        pthread_join(q->th, NULL);
        q->running = 0;
        if (use)
            return 0;
    }
    s3_resp_free(&q->rs);
    return -1;
}

static coffer_status prepare(void *instance, int create)
{
    s3_instance *in = instance;
    s3_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    lock_query lq;
    lock_query_start(in, &lq);
    s3_req rq = {.method = "HEAD"};
    s3_resp rs;
    s3_resp_init(&rs, 0);
    coffer_status st = s3_request(in, &rq, &rs);
    /* The early answer stands only for a bucket that was there at once. */
    int lock_answer = lock_query_join(&lq, st == COFFER_OK);
    if (st == COFFER_ERR_AUTH) {
        /* HEAD has no body: ask again with a GET, whose error document names
         * the cause (InvalidAccessKeyId, SignatureDoesNotMatch). A refusal
         * for the clock (RequestTimeTooSkewed) teaches the instance the
         * server's time, and then the GET succeeds: ask the HEAD again. */
        s3_resp gs;
        s3_resp_init(&gs, 64 * 1024);
        coffer_status g = bucket_get(in, "versioning", &gs);
        if (g != COFFER_OK) {
            st = s3_fail(in, g, "GET ?versioning", NULL, &gs);
            s3_resp_free(&gs);
            s3_resp_free(&rs);
            return st;
        }
        s3_resp_free(&gs);
        s3_resp_free(&rs);
        s3_resp_init(&rs, 0);
        st = s3_request(in, &rq, &rs);
    }
    if (st == COFFER_ERR_NOT_FOUND && create) {
        s3_resp_free(&rs);
        if ((st = create_bucket(in)) != COFFER_OK)
            return st;
    } else if (st == COFFER_ERR_NOT_FOUND) {
        s3_resp_free(&rs);
        return in->host->error(
            in->h, COFFER_ERR_NOT_FOUND,
            "bucket %s does not exist at %s://%s (run `coffer init` to create it)", in->bucket,
            in->scheme, in->host_port);
    } else if (st) {
        if (rs.status == 301 || (rs.status == 400 && rs.bucket_region[0]))
            st = in->host->error(in->h, COFFER_ERR_INVALID,
                                 "bucket %s is in region %s, not %s: set the region option",
                                 in->bucket, rs.bucket_region[0] ? rs.bucket_region : "(unknown)",
                                 in->region);
        else
            st = s3_fail(in, st, "HEAD (bucket)", NULL, &rs);
        s3_resp_free(&rs);
        return st;
    } else {
        s3_resp_free(&rs);
    }

    /* Object lock: also tells whether uploads need Content-MD5. */
    int locked = 0, days = 0;
    char mode[32];
    if (lock_answer == 0)
        st = object_lock_answer(in, lq.st, &lq.rs, &locked, mode, sizeof mode, &days);
    else
        st = object_lock_status(in, &locked, mode, sizeof mode, &days);
    if (st && in->require_object_lock == S3_REQ_OFF) {
        /* Not asked for: a server or a policy that forbids the call is fine. */
        in->host->log(in->h, COFFER_LOG_DEBUG, "object lock status of bucket %s unknown",
                      in->bucket);
        st = COFFER_OK;
        locked = 0;
    } else if (st) {
        return st;
    }
    if (!locked && in->require_object_lock != S3_REQ_OFF) {
        if (in->require_object_lock == S3_REQ_ON)
            return in->host->error(
                in->h, COFFER_ERR_FAILED,
                "bucket %s has no object lock (require_object_lock: true): objects in it can be "
                "deleted or overwritten before their retention ends; object lock can only be "
                "turned "
                "on when a bucket is created",
                in->bucket);
        in->host->log(in->h, COFFER_LOG_WARN,
                      "bucket %s has no object lock (require_object_lock: warn)", in->bucket);
    }

    if (in->require_versioning != S3_REQ_OFF) {
        coffer_versioning v;
        if ((st = versioning_status(in, &v)) != COFFER_OK)
            return st;
        if (v != COFFER_VERSIONING_ENABLED) {
            const char *what =
                v == COFFER_VERSIONING_SUSPENDED ? "suspended" : "never been enabled";
            if (in->require_versioning == S3_REQ_ON)
                return in->host->error(
                    in->h, COFFER_ERR_FAILED,
                    "bucket %s: versioning has %s (require_versioning: true): %s; enable it with "
                    "`aws s3api put-bucket-versioning --bucket %s --versioning-configuration "
                    "Status=Enabled`",
                    in->bucket, v == COFFER_VERSIONING_SUSPENDED ? "been suspended" : what,
                    VERSIONING_REASON, in->bucket);
            in->host->log(in->h, COFFER_LOG_WARN,
                          "bucket %s: versioning has %s (require_versioning: warn): %s", in->bucket,
                          v == COFFER_VERSIONING_SUSPENDED ? "been suspended" : what,
                          VERSIONING_REASON);
        }
    }
    return COFFER_OK;
}

/* ---- objects ---------------------------------------------------------------------- */

static coffer_status head_object(s3_instance *in, const char *okey, const char *ukey,
                                 coffer_object_stat *st_out)
{
    s3_req rq = {.method = "HEAD", .okey = okey};
    s3_resp rs;
    s3_resp_init(&rs, 0);
    coffer_status st = s3_request(in, &rq, &rs);
    if (st == COFFER_ERR_NOT_FOUND)
        st = in->host->error(in->h, COFFER_ERR_NOT_FOUND, "no object %s (s3://%s/%s)", ukey,
                             in->bucket, okey);
    else if (st)
        st = s3_fail(in, st, "HEAD", okey, &rs);
    else if (st_out) {
        st_out->size = rs.has_length ? rs.content_length : 0;
        st_out->mtime = rs.last_modified;
        strip_quotes(st_out->etag, sizeof st_out->etag, rs.etag);
    }
    s3_resp_free(&rs);
    return st;
}

static coffer_status stat_object(void *instance, const char *key, coffer_object_stat *st_out)
{
    s3_instance *in = instance;
    s3_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    coffer_status st;
    char *okey = s3_object_key(in, key, &st);
    if (!okey)
        return st;
    coffer_object_stat tmp;
    st = head_object(in, okey, key, &tmp);
    if (st == COFFER_OK) {
        /* Fill only what the caller's struct holds (ABI rule 3). */
        uint32_t sz = st_out->struct_size ? st_out->struct_size : (uint32_t)sizeof *st_out;
        if (sz >= offsetof(coffer_object_stat, size) + sizeof st_out->size)
            st_out->size = tmp.size;
        if (sz >= offsetof(coffer_object_stat, mtime) + sizeof st_out->mtime)
            st_out->mtime = tmp.mtime;
        if (sz >= offsetof(coffer_object_stat, etag) + sizeof st_out->etag)
            memcpy(st_out->etag, tmp.etag, sizeof tmp.etag);
    }
    free(okey);
    return st;
}

/* DELETE of the key (a delete marker in a versioned bucket; allowed on
 * locked objects) or of one version (refused while it is under
 * retention). With COFFER_REMOVE_ABSENT_OK a missing key is no error, and
 * in a versioned bucket its DELETE may leave a delete marker. */
static coffer_status remove_common(s3_instance *in, const char *key, const char *version_id,
                                   uint32_t flags)
{
    coffer_status st;
    if (version_id && !*version_id)
        return in->host->error(in->h, COFFER_ERR_INVALID, "remove of %s: empty version id", key);
    char *okey = s3_object_key(in, key, &st);
    if (!okey)
        return st;
    /* A version is deleted by id alone: a delete marker has no HEAD. A
     * caller that does not care whether the key exists saves the HEAD's
     * round trip (S3 answers a DELETE of a missing key with 204 anyway). */
    if (version_id || (flags & COFFER_REMOVE_ABSENT_OK) ||
        (st = head_object(in, okey, key, NULL)) == COFFER_OK) {
        s3_req rq = {.method = "DELETE", .okey = okey};
        if (version_id)
            s3_req_query(&rq, "versionId", version_id);
        if (flags & COFFER_REMOVE_BYPASS_GOVERNANCE)
            s3_req_header(&rq, "x-amz-bypass-governance-retention", "true");
        s3_resp rs;
        s3_resp_init(&rs, 64 * 1024);
        st = s3_request(in, &rq, &rs);
        if (st == COFFER_ERR_NOT_FOUND && (flags & COFFER_REMOVE_ABSENT_OK))
            st = COFFER_OK;
        char vdesc[300] = "";
        if (version_id)
            snprintf(vdesc, sizeof vdesc, "version %s of ", version_id);
        if (st == COFFER_ERR_NOT_FOUND)
            st = in->host->error(in->h, COFFER_ERR_NOT_FOUND, "no %sobject %s (s3://%s/%s)", vdesc,
                                 key, in->bucket, okey);
        else if (st == COFFER_ERR_LOCKED)
            st = in->host->error(
                in->h, COFFER_ERR_LOCKED,
                "S3 DELETE %s: %sobject %s is under retention and cannot be removed before it "
                "ends%s (%s)",
                okey, vdesc, key,
                (flags & COFFER_REMOVE_BYPASS_GOVERNANCE)
                    ? ""
                    : "; a governance lock yields only to the bypass, with "
                      "s3:BypassGovernanceRetention",
                rs.err_msg[0] ? rs.err_msg : rs.err_code);
        else if (st == COFFER_ERR_AUTH && version_id) {
            s3_str what = {0};
            s3_str_addf(&what, "DELETE ?versionId=%s", version_id);
            st = s3_fail(in, st, s3_str_cstr(&what), okey, &rs);
            s3_str_free(&what);
        } else if (st)
            st = s3_fail(in, st, "DELETE", okey, &rs);
        s3_resp_free(&rs);
    }
    free(okey);
    return st;
}

static coffer_status remove_object(void *instance, const char *key)
{
    s3_instance *in = instance;
    s3_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    return remove_common(in, key, NULL, 0);
}

/* COFFER_REMOVE_MAINTENANCE changes nothing here: a bucket is never
 * append-only to the driver; S3's own policies refuse what they refuse. */
static coffer_status remove_ex(void *instance, const char *key, const char *version_id,
                               uint32_t flags)
{
    s3_instance *in = instance;
    s3_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    return remove_common(in, key, version_id, flags);
}

static coffer_status check_prefix(s3_instance *in, const char *prefix)
{
    if (prefix[0] == '/')
        return in->host->error(in->h, COFFER_ERR_INVALID, "list prefix '%s' is absolute", prefix);
    if (strlen(prefix) + strlen(in->prefix) > S3_KEY_MAX)
        return in->host->error(in->h, COFFER_ERR_INVALID, "list prefix is longer than %d bytes",
                               S3_KEY_MAX);
    return COFFER_OK;
}

static coffer_status list_objects(void *instance, const char *prefix, coffer_list_cb cb, void *ud)
{
    s3_instance *in = instance;
    s3_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    if (!prefix)
        prefix = "";
    coffer_status st = check_prefix(in, prefix);
    if (st)
        return st;
    size_t plen = strlen(in->prefix);
    char *full = malloc(plen + strlen(prefix) + 1);
    if (!full)
        abort();
    sprintf(full, "%s%s", in->prefix, prefix);
    char *token = NULL;
    int stop = 0;
    s3_resp rs;
    s3_resp_init(&rs, S3_XML_MAX);
    for (;;) {
        s3_req rq = {.method = "GET"};
        char maxk[16];
        snprintf(maxk, sizeof maxk, "%d", in->list_page);
        s3_req_query(&rq, "list-type", "2");
        s3_req_query(&rq, "max-keys", maxk);
        if (*full)
            s3_req_query(&rq, "prefix", full);
        if (token)
            s3_req_query(&rq, "continuation-token", token);
        st = s3_request(in, &rq, &rs);
        if (st) {
            st = s3_fail(in, st, "GET ?list-type=2 prefix", full, &rs);
            break;
        }
        s3_xml *x = s3_xml_parse(rs.body.s, rs.body.len);
        if (!x) {
            st = in->host->error(in->h, COFFER_ERR_FAILED,
                                 "S3 ListObjectsV2 %s/%s: unreadable XML answer", in->bucket, full);
            break;
        }
        s3_xml_node *r = s3_xml_root(x);
        for (s3_xml_node *c = s3_xml_next(r, NULL, "Contents"); c && !stop;
             c = s3_xml_next(r, c, "Contents")) {
            char *k = s3_xml_strdup(c, "Key");
            if (k && strncmp(k, in->prefix, plen) == 0 && k[plen]) {
                coffer_object_stat os = {.struct_size = sizeof os};
                char tmp[96];
                s3_xml_text(c, "Size", tmp, sizeof tmp);
                os.size = strtoull(tmp, NULL, 10);
                s3_xml_text(c, "LastModified", tmp, sizeof tmp);
                os.mtime = s3_parse_iso8601(tmp);
                s3_xml_text(c, "ETag", tmp, sizeof tmp);
                strip_quotes(os.etag, sizeof os.etag, tmp);
                if (cb(ud, k + plen, &os) != 0)
                    stop = 1;
            }
            free(k);
        }
        char trunc[16];
        s3_xml_text(r, "IsTruncated", trunc, sizeof trunc);
        free(token);
        token = s3_xml_strdup(r, "NextContinuationToken");
        s3_xml_free(x);
        if (stop || strcmp(trunc, "true") != 0)
            break;
        if (!token || !*token) {
            st = in->host->error(
                in->h, COFFER_ERR_FAILED,
                "S3 ListObjectsV2 %s/%s: truncated answer without a continuation token", in->bucket,
                full);
            break;
        }
    }
    free(token);
    free(full);
    s3_resp_free(&rs);
    return st;
}

static coffer_status list_versions(void *instance, const char *prefix, coffer_version_cb cb,
                                   void *ud)
{
    s3_instance *in = instance;
    s3_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    if (!prefix)
        prefix = "";
    coffer_status st = check_prefix(in, prefix);
    if (st)
        return st;
    size_t plen = strlen(in->prefix);
    char *full = malloc(plen + strlen(prefix) + 1);
    if (!full)
        abort();
    sprintf(full, "%s%s", in->prefix, prefix);
    char *kmark = NULL, *vmark = NULL;
    int stop = 0;
    s3_resp rs;
    s3_resp_init(&rs, S3_XML_MAX);
    for (;;) {
        s3_req rq = {.method = "GET"};
        char maxk[16];
        snprintf(maxk, sizeof maxk, "%d", in->list_page);
        s3_req_query(&rq, "versions", NULL);
        s3_req_query(&rq, "max-keys", maxk);
        if (*full)
            s3_req_query(&rq, "prefix", full);
        if (kmark)
            s3_req_query(&rq, "key-marker", kmark);
        if (vmark && *vmark)
            s3_req_query(&rq, "version-id-marker", vmark);
        st = s3_request(in, &rq, &rs);
        if (st) {
            st = s3_fail(in, st, "GET ?versions prefix", full, &rs);
            break;
        }
        s3_xml *x = s3_xml_parse(rs.body.s, rs.body.len);
        if (!x) {
            st = in->host->error(in->h, COFFER_ERR_FAILED,
                                 "S3 ListObjectVersions %s/%s: unreadable XML answer", in->bucket,
                                 full);
            break;
        }
        s3_xml_node *r = s3_xml_root(x);
        /* Versions and delete markers, in the server's order. */
        for (s3_xml_node *c = s3_xml_next(r, NULL, NULL); c && !stop; c = s3_xml_next(r, c, NULL)) {
            int marker = strcmp(s3_xml_name(c), "DeleteMarker") == 0;
            if (!marker && strcmp(s3_xml_name(c), "Version") != 0)
                continue;
            char *k = s3_xml_strdup(c, "Key");
            char *vid = s3_xml_strdup(c, "VersionId");
            char tmp[96], etag[96];
            if (k && strncmp(k, in->prefix, plen) == 0 && k[plen]) {
                coffer_object_version v = {.struct_size = sizeof v};
                v.key = k + plen;
                v.version_id = vid ? vid : "null";
                s3_xml_text(c, "Size", tmp, sizeof tmp);
                v.size = strtoull(tmp, NULL, 10);
                s3_xml_text(c, "ETag", tmp, sizeof tmp);
                strip_quotes(etag, sizeof etag, tmp);
                v.etag = etag;
                s3_xml_text(c, "LastModified", tmp, sizeof tmp);
                v.mtime = s3_parse_iso8601(tmp);
                s3_xml_text(c, "IsLatest", tmp, sizeof tmp);
                v.is_latest = strcmp(tmp, "true") == 0;
                v.is_delete_marker = marker;
                if (cb(ud, &v) != 0)
                    stop = 1;
            }
            free(k);
            free(vid);
        }
        char trunc[16];
        s3_xml_text(r, "IsTruncated", trunc, sizeof trunc);
        free(kmark);
        free(vmark);
        kmark = s3_xml_strdup(r, "NextKeyMarker");
        vmark = s3_xml_strdup(r, "NextVersionIdMarker");
        s3_xml_free(x);
        if (stop || strcmp(trunc, "true") != 0)
            break;
        if (!kmark || !*kmark) {
            st = in->host->error(
                in->h, COFFER_ERR_FAILED,
                "S3 ListObjectVersions %s/%s: truncated answer without a key marker", in->bucket,
                full);
            break;
        }
    }
    free(kmark);
    free(vmark);
    free(full);
    s3_resp_free(&rs);
    return st;
}

static coffer_status restore_version(void *instance, const char *key, const char *version_id)
{
    s3_instance *in = instance;
    s3_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    if (!version_id || !*version_id)
        return in->host->error(in->h, COFFER_ERR_INVALID, "restore_version: empty version id");
    coffer_status st;
    char *okey = s3_object_key(in, key, &st);
    if (!okey)
        return st;
    /* x-amz-copy-source: /bucket/key?versionId=ID, key URL-encoded */
    s3_str src = {0};
    s3_str_addc(&src, '/');
    s3_uri_encode(&src, in->bucket, 0);
    s3_str_addc(&src, '/');
    s3_uri_encode(&src, okey, 1);
    s3_str_adds(&src, "?versionId=");
    s3_uri_encode(&src, version_id, 0);
    s3_req rq = {.method = "PUT", .okey = okey, .retry_200_error = 1};
    s3_req_header(&rq, "x-amz-copy-source", s3_str_cstr(&src));
    if (in->storage_class)
        s3_req_header(&rq, "x-amz-storage-class", in->storage_class);
    s3_resp rs;
    s3_resp_init(&rs, 64 * 1024);
    st = s3_request(in, &rq, &rs);
    if (st == COFFER_ERR_NOT_FOUND)
        st = in->host->error(in->h, COFFER_ERR_NOT_FOUND, "no version %s of object %s (s3://%s/%s)",
                             version_id, key, in->bucket, okey);
    else if (st)
        st = s3_fail(in, st, "PUT (copy of a version)", okey, &rs);
    s3_resp_free(&rs);
    s3_str_free(&src);
    free(okey);
    return st;
}

/* ---- descriptor ------------------------------------------------------------------ */

static const coffer_storage_ops s3_ops = {
    .struct_size = sizeof(coffer_storage_ops),
    .instance_new = instance_new,
    .instance_free = instance_free,
    .capabilities = capabilities,
    .prepare = prepare,
    .writer_open = s3_writer_open,
    .writer_write = s3_writer_write,
    .writer_commit = s3_writer_commit,
    .writer_abort = s3_writer_abort,
    .reader_open = s3_reader_open,
    .reader_read = s3_reader_read,
    .reader_close = s3_reader_close,
    .stat = stat_object,
    .list = list_objects,
    .remove = remove_object,
    .versioning_status = versioning_status,
    .list_versions = list_versions,
    .reader_open_version = s3_reader_open_version,
    .object_lock_status = object_lock_status,
    .restore_version = restore_version,
    .server_time = s3_server_time,
    .object_retention = s3_object_retention,
    .set_retention = s3_set_retention,
    .remove_ex = remove_ex,
    .reader_open_version_range = s3_reader_open_version_range,
};

static const coffer_plugin s3_plugin = {
    COFFER_PLUGIN_HEADER,
    .kind = COFFER_KIND_STORAGE,
    .name = "s3",
    .version = "1.0.0",
    .description = "repository in an S3 bucket (SigV4, multipart upload, versioning, object lock)",
    /* The instance's shared state (handle pool, upload queue) is locked;
     * handles are independent. */
    .threading = COFFER_THREADS_HANDLES,
    .options = s3_options,
    .storage = &s3_ops,
};

static int global_ok;

static void global_init(void)
{
    global_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    xmlInitParser();
}

COFFER_DRIVER_ENTRY(s3)
{
    if (!host || host->abi_major != COFFER_ABI_MAJOR)
        return NULL;
    /* libcurl's and libxml2's process-wide state, set up once. */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, global_init);
    return global_ok ? &s3_plugin : NULL;
}
