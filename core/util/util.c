#include "util/util.h"

#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>
#include <time.h>
#include <pthread.h>

static void oom(void)
{
    fputs("coffer: out of memory\n", stderr);
    abort();
}

void *cf_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom();
    return p;
}

void *cf_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom();
    return p;
}

void *cf_realloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        oom();
    return p;
}

char *cf_strdup(const char *s)
{
    return s ? cf_strndup(s, strlen(s)) : NULL;
}

int cf_streq(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

int cf_cpus(int lo, int hi)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < lo ? lo : n > hi ? hi : (int)n;
}

int cf_thread_or_here(pthread_t *th, void *(*fn)(void *), void *arg)
{
    if (pthread_create(th, NULL, fn, arg) == 0)
        return 1;
    fn(arg);
    return 0;
}

char *cf_strndup(const char *s, size_t n)
{
    char *p = cf_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *cf_vasprintf(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        n = 0;
    char *p = cf_malloc((size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *cf_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = cf_vasprintf(fmt, ap);
    va_end(ap);
    return p;
}

static _Thread_local char errbuf[2048];

static int secret_name(const char *name, size_t n)
{
    char low[64];
    if (n == 0 || n >= sizeof low)
        return 0;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)tolower((unsigned char)name[i]);
    low[n] = 0;
    static const char *const words[] = {"password", "passphrase", "passwd", "secret", "token"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strstr(low, words[i]))
            return 1;
    return n >= 3 && strcmp(low + n - 3, "pwd") == 0;
}

/* Replace s[from, to) with "***", or with as many '*' when shorter: the
 * message never grows (it may fill its buffer exactly). */
static size_t mask(char *s, size_t from, size_t to)
{
    if (to - from < 3) {
        memset(s + from, '*', to - from);
        return to;
    }
    size_t len = strlen(s);
    memmove(s + from + 3, s + to, len - to + 1);
    memcpy(s + from, "***", 3);
    return from + 3;
}

static int value_end(int c)
{
    return c == 0 || isspace(c) || c == '&' || c == ';' || c == '\'' || c == '"' || c == '`' ||
           c == ',' || c == ')';
}

void cf_redact(char *s)
{
    size_t i = 0;
    while (s[i]) {
        if (s[i] == '=' && i > 0) {
            size_t b = i;
            while (b > 0 && (isalnum((unsigned char)s[b - 1]) || s[b - 1] == '_' || s[b - 1] == '-' ||
                             s[b - 1] == '.'))
                b--;
            size_t e = i + 1;
            if (s[e] == '\'' || s[e] == '"') { /* a quoted value, quotes included */
                char q = s[e++];
                while (s[e] && s[e] != q)
                    e++;
                if (s[e])
                    e++;
            } else {
                while (!value_end((unsigned char)s[e]))
                    e++;
            }
            if (e > i + 1 && secret_name(s + b, i - b) && !(e - i - 1 == 3 && memcmp(s + i + 1, "***", 3) == 0)) {
                i = mask(s, i + 1, e);
                continue;
            }
        } else if (s[i] == ':' && s[i + 1] == '/' && s[i + 2] == '/') {
            /* scheme://user:password@host: the authority ends at / ? # or a space */
            size_t a = i + 3, e = a, at = 0, colon = 0;
            while (s[e] && !isspace((unsigned char)s[e]) && s[e] != '/' && s[e] != '?' && s[e] != '#' &&
                   s[e] != '`' && s[e] != '\'' && s[e] != '"') {
                if (s[e] == '@')
                    at = e;
                e++;
            }
            for (size_t k = a; at && k < at; k++)
                if (s[k] == ':') {
                    colon = k;
                    break;
                }
            if (at && colon && !(at - colon - 1 == 3 && memcmp(s + colon + 1, "***", 3) == 0)) {
                i = mask(s, colon + 1, at);
                continue;
            }
            i = a;
            continue;
        }
        i++;
    }
}

int cf_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    cf_redact(errbuf);
    return -1;
}

int cf_fail_errno(const char *fmt, ...)
{
    int e = errno;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof errbuf)
        snprintf(errbuf + n, sizeof errbuf - (size_t)n, ": %s", strerror(e));
    cf_redact(errbuf);
    errno = e;
    return -1;
}

void cf_error_prefix(const char *fmt, ...)
{
    char pre[1024], old[sizeof errbuf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, errbuf, sizeof old);
    snprintf(errbuf, sizeof errbuf, "%s: %s", pre, old);
    cf_redact(errbuf);
}

const char *cf_error(void)
{
    return errbuf[0] ? errbuf : "unknown error";
}

void cf_error_clear(void)
{
    errbuf[0] = 0;
}

static int log_level = CF_LOG_INFO;
static void (*log_hook)(void);
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void cf_log_set_level(int level)
{
    log_level = level;
}

int cf_log_level_get(void)
{
    return log_level;
}

void cf_log_set_hook(void (*hook)(void))
{
    log_hook = hook;
}

/* The last lines logged (shown or not), for a failure report sent to a
 * monitoring endpoint. */
#define TAIL_LINES 30
#define TAIL_WIDTH 400
static char log_tail[TAIL_LINES][TAIL_WIDTH];
static size_t log_tail_next;

void cf_vlog(cf_log_level level, const char *fmt, va_list ap)
{
    static const char *names[] = {"error", "warning", "info", "debug"};
    int shown = (int)level <= log_level;
    if (!shown && level == CF_LOG_DEBUG)
        return;
    char *line = cf_vasprintf(fmt, ap);
    cf_redact(line);
    pthread_mutex_lock(&log_lock);
    snprintf(log_tail[log_tail_next++ % TAIL_LINES], TAIL_WIDTH, "%s: %s", names[level], line);
    if (shown) {
        if (log_hook)
            log_hook();
        fprintf(stderr, "coffer: %s: %s\n", names[level], line);
        fflush(stderr);
    }
    free(line);
    pthread_mutex_unlock(&log_lock);
}

char *cf_log_tail(size_t max_lines)
{
    cf_buf b = {0};
    pthread_mutex_lock(&log_lock);
    size_t have = log_tail_next < TAIL_LINES ? log_tail_next : TAIL_LINES;
    if (max_lines > have)
        max_lines = have;
    for (size_t i = log_tail_next - max_lines; i < log_tail_next; i++) {
        const char *l = log_tail[i % TAIL_LINES];
        cf_buf_append(&b, l, strlen(l));
        cf_buf_append(&b, "\n", 1);
    }
    pthread_mutex_unlock(&log_lock);
    cf_buf_append(&b, "", 1);
    return (char *)b.data;
}

void cf_log(cf_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cf_vlog(level, fmt, ap);
    va_end(ap);
}

void cf_hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = 0;
}

/* Hex digit value + 1, 0 for anything else: a table, since manifests
 * decode millions of chunk ids. */
static const uint8_t hexval1[256] = {
    ['0'] = 1,   ['1'] = 2,   ['2'] = 3,   ['3'] = 4,   ['4'] = 5,   ['5'] = 6,
    ['6'] = 7,   ['7'] = 8,   ['8'] = 9,   ['9'] = 10,  ['a'] = 11,  ['b'] = 12,
    ['c'] = 13,  ['d'] = 14,  ['e'] = 15,  ['f'] = 16,  ['A'] = 11,  ['B'] = 12,
    ['C'] = 13,  ['D'] = 14,  ['E'] = 15,  ['F'] = 16,
};

int cf_unhex(const char *in, uint8_t *out, size_t n)
{
    const unsigned char *u = (const unsigned char *)in;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval1[u[2 * i]], lo;
        if (!hi) /* also the end of a short string: read no further */
            return -1;
        if (!(lo = hexval1[u[2 * i + 1]]))
            return -1;
        out[i] = (uint8_t)((hi - 1) << 4 | (lo - 1));
    }
    return in[2 * n] == 0 ? 0 : -1;
}

void cf_buf_reserve(cf_buf *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    b->data = cf_realloc(b->data, cap);
    b->cap = cap;
}

void cf_buf_append(cf_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    cf_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void cf_buf_free(cf_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

double cf_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static _Atomic uint64_t phase_ns[CF_PHASE_N];

void cf_phase_add(cf_phase ph, double since)
{
    double d = cf_now() - since;
    if (d > 0)
        atomic_fetch_add(&phase_ns[ph], (uint64_t)(d * 1e9));
}

double cf_phase_seconds(cf_phase ph)
{
    return (double)atomic_load(&phase_ns[ph]) / 1e9;
}

int cf_write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

void cf_random(void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            perror("coffer: getrandom");
            abort();
        }
        p += r;
        n -= (size_t)r;
    }
}

char *cf_redact_url(const char *s)
{
    const char *scheme = strstr(s, "://");
    if (!scheme)
        return cf_strdup(s);
    const char *auth = scheme + 3;
    const char *end = auth + strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < end; p++)
        if (*p == '@')
            at = p;
    if (!at)
        return cf_strdup(s);
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    if (!colon)
        return cf_strdup(s);
    return cf_asprintf("%.*s:***%s", (int)(colon - s), s, at);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path); /* unlink, or rmdir for a directory (emptied first: FTW_DEPTH) */
    return 0;
}

void cf_rmtree(const char *path)
{
    nftw(path, rm_cb, 32, FTW_DEPTH | FTW_PHYS);
}

uint64_t cf_path_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

int cf_parse_u64(const char *s, uint64_t *out)
{
    if (!*s)
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}
