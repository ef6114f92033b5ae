/*
 * coffer storage driver ABI: a flat namespace of objects named by keys
 * ("config", "data/ab/ab12...", "sets/2026..."). Keys use '/' as separator,
 * never start with '/', never contain "." or ".." segments.
 *
 * Everything streams: open a reader or writer, move buffers, then close.
 * A writer's data becomes visible under its key only at commit, atomically;
 * abort (or a crash) leaves no object behind under that key.
 */
#ifndef COFFER_STORAGE_H
#define COFFER_STORAGE_H

#include "coffer/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Capability bits: optional operations are callable only when their bit
 * is set AND the function pointer is non-NULL. */
#define COFFER_CAP_ATOMIC_PUBLISH (1u << 0)     /* commit is all-or-nothing */
#define COFFER_CAP_CONDITIONAL_CREATE (1u << 1) /* COFFER_WRITE_IF_ABSENT honoured */
#define COFFER_CAP_VERSIONING (1u << 2)         /* versioning_status/list_versions/reader_open_version */
#define COFFER_CAP_OBJECT_LOCK (1u << 3)        /* object_lock_status */
#define COFFER_CAP_RANGED_READ (1u << 4)        /* reader_open honours offset/length cheaply */
#define COFFER_CAP_RESTORE_VERSION (1u << 5)    /* restore_version */
#define COFFER_CAP_LOCAL (1u << 6)              /* objects are local files (cheap random access) */
#define COFFER_CAP_RETENTION (1u << 7)   /* since 1.2: write_opts lock_mode/retain_until honoured;
                                            server_time, object_retention, set_retention */
#define COFFER_CAP_APPEND_ONLY (1u << 8) /* since 1.2: the store never removes or rewrites an
                                            object but a lock (locks/...) unless remove_ex
                                            carries COFFER_REMOVE_MAINTENANCE */
/* since 1.3: prepare(create=0) may run on one thread while stat, list and
 * readers run on others; the core writes and removes nothing, and asks
 * for nothing prepare learns (capabilities included), until it returned */
#define COFFER_CAP_CONCURRENT_PREPARE (1u << 9)

/* Object lock (retention) modes, since 1.2. Governance: a holder of the
 * bypass permission may shorten or remove it; compliance: nobody can
 * before the date. Either way a version under retention cannot be
 * removed, and its retention can only be extended. */
typedef enum coffer_lock_mode {
    COFFER_LOCK_NONE = 0,
    COFFER_LOCK_GOVERNANCE = 1,
    COFFER_LOCK_COMPLIANCE = 2,
} coffer_lock_mode;

/* remove_ex flags, since 1.2 */
#define COFFER_REMOVE_MAINTENANCE (1u << 0)       /* an append-only store removes the object */
#define COFFER_REMOVE_BYPASS_GOVERNANCE (1u << 1) /* remove a governance-locked version */
/* since 1.3: the caller does not need to know whether the key existed:
 * a missing key is COFFER_OK, and the driver may skip finding out (S3:
 * DELETE without a HEAD first). Never sent to a driver built for 1.2 or
 * older. */
#define COFFER_REMOVE_ABSENT_OK (1u << 2)

/* Writer flags */
#define COFFER_WRITE_IF_ABSENT (1u << 0) /* fail with COFFER_ERR_EXISTS if the key exists */
#define COFFER_WRITE_PRIVATE (1u << 1)   /* backup data: readable by owner only (0600) */

typedef struct coffer_write_opts {
    uint32_t struct_size;  /* since 1.0 */
    uint32_t flags;        /* since 1.0: COFFER_WRITE_* */
    uint64_t size_hint;    /* since 1.0: expected length, 0 if unknown */
    /* since 1.2, with COFFER_CAP_RETENTION: the new object is stored under
     * retention lock_mode until retain_until (seconds since the epoch, by
     * the server's clock); COFFER_LOCK_NONE: no retention of coffer's. */
    uint32_t lock_mode;
    int64_t retain_until;
} coffer_write_opts;

typedef struct coffer_object_stat {
    uint32_t struct_size; /* since 1.0 */
    uint64_t size;        /* since 1.0 */
    int64_t mtime;        /* since 1.0: seconds since epoch, 0 if unknown */
    char etag[80];        /* since 1.0: "" if unknown */
} coffer_object_stat;

typedef enum coffer_versioning {
    COFFER_VERSIONING_NEVER = 0,     /* never enabled on this bucket */
    COFFER_VERSIONING_ENABLED = 1,
    COFFER_VERSIONING_SUSPENDED = 2,
} coffer_versioning;

typedef struct coffer_object_version {
    uint32_t struct_size;   /* since 1.0 */
    const char *key;        /* since 1.0 */
    const char *version_id; /* since 1.0 */
    uint64_t size;          /* since 1.0 */
    const char *etag;       /* since 1.0 */
    int64_t mtime;          /* since 1.0 */
    int is_latest;          /* since 1.0 */
    int is_delete_marker;   /* since 1.0 */
} coffer_object_version;

/* List callbacks return 0 to continue, nonzero to stop early. */
typedef int (*coffer_list_cb)(void *ud, const char *key, const coffer_object_stat *st);
typedef int (*coffer_version_cb)(void *ud, const coffer_object_version *v);

/* Threading: the core creates instances and handles on its worker
 * threads as the descriptor's coffer_threading allows; one handle is never
 * used by two threads at once. Errors: a failing call returns its code
 * after host->error on the same thread. The core does not retry
 * COFFER_ERR_RETRY itself.
 *
 * Order of calls: instance_new, capabilities, prepare (create=1 for
 * `init`, 0 otherwise), then any mix of writer_open/write/commit|abort,
 * reader_open/read/close, stat, list and remove, possibly from several
 * threads, and finally instance_free after every handle was closed. With
 * COFFER_CAP_CONCURRENT_PREPARE, prepare(0) may overlap reads (above). */
typedef struct coffer_storage_ops {
    uint32_t struct_size; /* since 1.0 */

    /* Lifecycle. instance_new reads its options through host->config_get.
     * Returns an instance the driver frees in instance_free. since 1.0 */
    coffer_status (*instance_new)(const coffer_host *host, coffer_hctx *h, const coffer_config *cfg,
                                  void **instance);
    void (*instance_free)(void *instance);
    uint32_t (*capabilities)(void *instance);

    /* Create the location if needed (directory, or check the bucket). since 1.0 */
    coffer_status (*prepare)(void *instance, int create);

    /* Writers. commit publishes and frees; abort discards and frees. since 1.0 */
    coffer_status (*writer_open)(void *instance, const char *key, const coffer_write_opts *opts,
                                 void **writer);
    coffer_status (*writer_write)(void *writer, const void *buf, size_t len);
    coffer_status (*writer_commit)(void *writer);
    void (*writer_abort)(void *writer);

    /* Readers. length 0 means "to the end". read sets *got to 0 at end of
     * object. close frees. since 1.0 */
    coffer_status (*reader_open)(void *instance, const char *key, uint64_t offset, uint64_t length,
                                 void **reader);
    coffer_status (*reader_read)(void *reader, void *buf, size_t len, size_t *got);
    void (*reader_close)(void *reader);

    coffer_status (*stat)(void *instance, const char *key, coffer_object_stat *st);
    /* Every key under prefix ("" for all), in no particular order. since 1.0 */
    coffer_status (*list)(void *instance, const char *prefix, coffer_list_cb cb, void *ud);
    /* Removing a missing key is COFFER_ERR_NOT_FOUND. since 1.0 */
    coffer_status (*remove)(void *instance, const char *key);

    /* ---- optional (NULL when unsupported) ---- */
    coffer_status (*versioning_status)(void *instance, coffer_versioning *status); /* since 1.0 */
    coffer_status (*list_versions)(void *instance, const char *prefix, coffer_version_cb cb,
                                   void *ud);                                      /* since 1.0 */
    coffer_status (*reader_open_version)(void *instance, const char *key, const char *version_id,
                                         void **reader);                           /* since 1.0 */
    /* enabled: 1 if the bucket has object lock; mode/days describe the
     * default retention ("" / 0 if none). since 1.0 */
    coffer_status (*object_lock_status)(void *instance, int *enabled, char *mode, size_t mode_len,
                                        int *days);
    /* Make version_id the current version of key again. since 1.0 */
    coffer_status (*restore_version)(void *instance, const char *key, const char *version_id);

    /* Check the options of one target or component without touching the
     * storage (no network, no files created): `coffer policy check` calls
     * it after the core checked types and required options. Returns
     * COFFER_OK, or COFFER_ERR_INVALID with the message given to
     * host->error and *bad_option set to the name of the option at fault
     * (a string of the driver's own option table; NULL when none is), so
     * the core reports the policy file, line and column of that option.
     * cfg and h are valid only during the call; no instance exists. May be
     * NULL. Called from one thread. since 1.1 */
    coffer_status (*validate)(const coffer_host *host, coffer_hctx *h, const coffer_config *cfg,
                              const char **bad_option);

    /* ---- since 1.2, optional ---- */

    /* With COFFER_CAP_RETENTION. The storage's clock (seconds since the
     * epoch), from the server's own answer (an HTTP Date header): retention
     * dates are computed from it, never from the host's clock. */
    coffer_status (*server_time)(void *instance, int64_t *now);
    /* With COFFER_CAP_RETENTION. The retention of key (version_id NULL: the
     * current version): *mode COFFER_LOCK_NONE and *until 0 when it has
     * none. COFFER_ERR_NOT_FOUND when there is no such object or version. */
    coffer_status (*object_retention)(void *instance, const char *key, const char *version_id,
                                      coffer_lock_mode *mode, int64_t *until);
    /* With COFFER_CAP_RETENTION. Set the retention of key (version_id NULL:
     * the current version) to mode until `until`. Extending is always
     * allowed to the credentials that may set retention; shortening or
     * weakening is refused (COFFER_ERR_LOCKED) unless flags holds
     * COFFER_REMOVE_BYPASS_GOVERNANCE and the lock is governance. */
    coffer_status (*set_retention)(void *instance, const char *key, const char *version_id,
                                   coffer_lock_mode mode, int64_t until, uint32_t flags);
    /* Remove one version (version_id) or the key (NULL: as remove), with
     * COFFER_REMOVE_* flags. A version under retention is COFFER_ERR_LOCKED;
     * an append-only store without COFFER_REMOVE_MAINTENANCE is
     * COFFER_ERR_LOCKED too. */
    coffer_status (*remove_ex)(void *instance, const char *key, const char *version_id,
                               uint32_t flags);
    /* With COFFER_CAP_VERSIONING: like reader_open, of one version. */
    coffer_status (*reader_open_version_range)(void *instance, const char *key,
                                               const char *version_id, uint64_t offset,
                                               uint64_t length, void **reader);
} coffer_storage_ops;

#ifdef __cplusplus
}
#endif
#endif
