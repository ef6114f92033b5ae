/*
 * coffer database driver ABI.
 *
 * A dump is a set of named byte streams plus key/value metadata, all
 * captured at one consistent point in time. The core chunks, deduplicates,
 * compresses and stores the streams; the driver never sees the repository.
 * Restore hands the same streams and metadata back.
 *
 * Metadata keys the core understands (others are kept verbatim):
 *   "server_version"       version of the server/library at capture
 *   "size"                 database size in bytes at capture
 *   "rows.<table>"         row count of <table> in the snapshot
 *   "snapshot"             how consistency was obtained (free text)
 * Metadata must never contain secrets.
 */
#ifndef COFFER_DATABASE_H
#define COFFER_DATABASE_H

#include "coffer/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

#define COFFER_DBCAP_PARALLEL_DUMP (1u << 0)  /* may open several sink streams at once, from several threads */
#define COFFER_DBCAP_POINT_IN_TIME (1u << 1)  /* can restore to a time inside a set (log based) */
#define COFFER_DBCAP_QUERY (1u << 2)          /* query() available */
#define COFFER_DBCAP_OWNS_FILES (1u << 3)     /* owned_paths() names files under the policy root */

typedef struct coffer_db_info {
    uint32_t struct_size;    /* since 1.0 */
    char server_version[96]; /* since 1.0 */
    uint64_t size_bytes;     /* since 1.0 */
    char detail[256];        /* since 1.0: free text for humans, no secrets */
} coffer_db_info;

/* Where a dump goes. Provided by the core. A stream is written, then
 * closed; it becomes part of the set only if the whole backup succeeds. */
typedef struct coffer_dump_sink {
    uint32_t struct_size; /* since 1.0 */
    void *ctx;            /* since 1.0: core's own */
    coffer_status (*stream_open)(struct coffer_dump_sink *sink, const char *name, void **stream);
    coffer_status (*stream_write)(void *stream, const void *buf, size_t len);
    coffer_status (*stream_close)(void *stream);
    coffer_status (*meta)(struct coffer_dump_sink *sink, const char *key, const char *value);
} coffer_dump_sink;

/* Where a restore reads from. Provided by the core. */
typedef struct coffer_dump_source {
    uint32_t struct_size; /* since 1.0 */
    void *ctx;            /* since 1.0 */
    size_t (*stream_count)(struct coffer_dump_source *src);
    const char *(*stream_name)(struct coffer_dump_source *src, size_t i);
    uint64_t (*stream_size)(struct coffer_dump_source *src, size_t i);
    coffer_status (*stream_open)(struct coffer_dump_source *src, const char *name, void **stream);
    coffer_status (*stream_read)(void *stream, void *buf, size_t len, size_t *got);
    void (*stream_close)(void *stream);
    /* Metadata recorded at dump time; NULL when absent. */
    const char *(*meta_get)(struct coffer_dump_source *src, const char *key);
    size_t (*meta_count)(struct coffer_dump_source *src);
    const char *(*meta_key)(struct coffer_dump_source *src, size_t i);
} coffer_dump_source;

typedef struct coffer_restore_opts {
    uint32_t struct_size; /* since 1.0 */
    /* Root against which relative paths resolve (the restore root). */
    const char *root;     /* since 1.0 */
    /* Replacement target given with --map NAME=VALUE (a path or URL), or NULL. */
    const char *target;   /* since 1.0 */
    int force;            /* since 1.0: overwrite a non-empty target */
    int create;           /* since 1.0: create the target database if missing */
} coffer_restore_opts;

/* One line of a verify report. */
typedef void (*coffer_check_cb)(void *ud, int ok, const char *check, const char *detail);

typedef struct coffer_database_ops {
    uint32_t struct_size; /* since 1.0 */
    coffer_status (*instance_new)(const coffer_host *host, coffer_hctx *h, const coffer_config *cfg,
                                  void **instance);
    void (*instance_free)(void *instance);
    uint32_t (*capabilities)(void *instance);

    /* Connect/open and describe. since 1.0 */
    coffer_status (*probe)(void *instance, coffer_db_info *info);
    /* Consistent dump into the sink. since 1.0 */
    coffer_status (*dump)(void *instance, coffer_dump_sink *sink);
    /* Restore from a source (same streams the dump produced). since 1.0 */
    coffer_status (*restore)(void *instance, coffer_dump_source *src, const coffer_restore_opts *opts);
    /* Check the database at the restore target (opts as for restore) against
     * the metadata in src: integrity checks, row counts. Reports each
     * check through cb; returns COFFER_OK only if all passed. since 1.0 */
    coffer_status (*verify)(void *instance, coffer_dump_source *src, const coffer_restore_opts *opts,
                            coffer_check_cb cb, void *ud);

    /* ---- optional ---- */
    /* Paths (relative to the policy root) of files this instance owns, so
     * a files component never captures them twice. Fills up to max entries
     * (strings owned by the instance); returns the count. since 1.0 */
    size_t (*owned_paths)(void *instance, const char **paths, size_t max);
    /* Run a read-only query; row_cb gets each row's columns as text. since 1.0 */
    coffer_status (*query)(void *instance, const char *sql,
                           int (*row_cb)(void *ud, int ncols, const char *const *values), void *ud);
} coffer_database_ops;

#ifdef __cplusplus
}
#endif
#endif
