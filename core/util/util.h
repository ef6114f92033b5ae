/*
 * Small helpers shared by every core module: allocation that aborts on
 * exhaustion, the thread-local error message, logging, hex.
 *
 * Error convention in the core: a function returns 0 on success and -1 on
 * failure after describing the failure with cf_fail(); callers may add
 * context in front with cf_error_prefix(). The message must name the file,
 * key, object or line concerned, and never contain a secret.
 */
#ifndef CF_UTIL_H
#define CF_UTIL_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define CF_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CF_PRINTF(a, b)
#endif

void *cf_malloc(size_t n);
void *cf_calloc(size_t n, size_t size);
void *cf_realloc(void *p, size_t n);
char *cf_strdup(const char *s);
/* Both NULL, or both strings and equal. */
int cf_streq(const char *a, const char *b);
char *cf_strndup(const char *s, size_t n);
/* The CPUs online, held to [lo, hi] (lo when the count is unknown). */
int cf_cpus(int lo, int hi);
/* Run fn(arg) on a new thread: 1, and the caller joins *th. When no
 * thread can start, fn(arg) runs here before this returns: 0. */
int cf_thread_or_here(pthread_t *th, void *(*fn)(void *), void *arg);
char *cf_asprintf(const char *fmt, ...) CF_PRINTF(1, 2);
char *cf_vasprintf(const char *fmt, va_list ap);

/* Error message of the calling thread. */
int cf_fail(const char *fmt, ...) CF_PRINTF(1, 2);        /* sets, returns -1 */
int cf_fail_errno(const char *fmt, ...) CF_PRINTF(1, 2);  /* appends ": strerror(errno)" */
void cf_error_prefix(const char *fmt, ...) CF_PRINTF(1, 2); /* "prefix: old message" */
const char *cf_error(void);
void cf_error_clear(void);
/* Mask secrets in a message, in place: the value of NAME=VALUE when NAME
 * says it holds a secret (contains password, passphrase, passwd, secret
 * or token, or ends in pwd; any case), and the password of a URL's
 * user:password@. Every error message and log line goes through it. */
void cf_redact(char *msg);

typedef enum { CF_LOG_ERROR = 0, CF_LOG_WARN = 1, CF_LOG_INFO = 2, CF_LOG_DEBUG = 3 } cf_log_level;
void cf_log_set_level(int level);
int cf_log_level_get(void);
void cf_log(cf_log_level level, const char *fmt, ...) CF_PRINTF(2, 3);
void cf_vlog(cf_log_level level, const char *fmt, va_list ap);
/* The last max_lines lines logged at info level or above, whether shown
 * or not ("level: message\n" each); malloc'd. */
char *cf_log_tail(size_t max_lines);
/* Called before each log line is written (to clear a progress bar). */
void cf_log_set_hook(void (*hook)(void));

void cf_hex(const uint8_t *in, size_t n, char *out); /* out: 2n+1 */
int cf_unhex(const char *in, uint8_t *out, size_t n); /* 0 ok, -1 bad */

/* Dynamic byte buffer. */
typedef struct cf_buf {
    uint8_t *data;
    size_t len, cap;
} cf_buf;
void cf_buf_reserve(cf_buf *b, size_t extra);
void cf_buf_append(cf_buf *b, const void *p, size_t n);
void cf_buf_free(cf_buf *b);

/* Copy of a location with any password in it ("scheme://user:PASS@host")
 * replaced by "***", for messages and reports. */
char *cf_redact_url(const char *s);

/* Monotonic seconds. */
double cf_now(void);

/* Seconds spent in the phases of a backup, summed over its threads, so
 * `-v` can show where the time goes. cf_phase_add adds cf_now() - since. */
typedef enum {
    CF_PHASE_READ,   /* reading files and dump streams */
    CF_PHASE_CHUNK,  /* finding chunk boundaries, hashing chunks */
    CF_PHASE_PACK,   /* compressing and encrypting new chunks */
    CF_PHASE_STORE,  /* handing pack bytes to the storage (waits for upload room) */
    CF_PHASE_COMMIT, /* publishing packs (the last upload and its completion) */
    CF_PHASE_N
} cf_phase;
void cf_phase_add(cf_phase ph, double since);
double cf_phase_seconds(cf_phase ph);

/* Write all n bytes to fd (short writes and EINTR handled): 0, or -1
 * with errno set (EIO when the fd took nothing). No cf_fail: the caller
 * names what it was writing. */
int cf_write_all(int fd, const void *buf, size_t n);

/* Fill with cryptographically random bytes (getrandom). */
void cf_random(void *buf, size_t n);
/* Remove a tree, best effort, never following a symlink (staging areas,
 * scratch and temporary directories). */
void cf_rmtree(const char *path);

#define CF_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* 64-bit hash of a path (FNV-1a and a final mix): plenty to tell paths
 * apart in a hash table or a partition. */
uint64_t cf_path_hash(const char *s);
/* A decimal number without sign or spaces; 0, or -1 (empty, not a
 * number, too large). */
int cf_parse_u64(const char *s, uint64_t *out);

#endif
