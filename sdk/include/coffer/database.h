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
#define COFFER_DBCAP_OWNS_FILES (1u << 3)     /* a file database: see "Ownership" below */

/*
 * Ownership (one rule): a driver is a file database exactly when its
 * owned_paths operation is non-NULL, and then capabilities() must include
 * COFFER_DBCAP_OWNS_FILES; a driver without owned_paths must not set the
 * bit. The core refuses an instance whose bit and pointer disagree, naming
 * the driver.
 *
 * A file database's restore gets an empty private directory as opts->root
 * (opts->final_root says where the files will end up). After restore and
 * verify, the core moves each path owned_paths names from that directory
 * into the restore tree. A restore that wrote a file it does not claim is
 * refused, naming the driver and the files; so is a claimed path that is
 * absolute or leaves the root (".." segments).
 * A server database (no owned_paths) restores into its server: opts->root
 * is the restore root and only matters for relative paths in --map.
 */

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
    /* Nonzero when the core will query what this dump captured
     * (query_snapshot) before instance_free: the driver keeps its snapshot
     * (a private copy, an open transaction) until then. A driver reads it
     * only when struct_size covers it. since 1.1 */
    int keep_snapshot;
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

/* Scratch databases of rehearsals are named COFFER_SCRATCH_PREFIX followed
 * by lowercase letters, digits and '_', at most 63 bytes in all; drivers
 * refuse any other name in scratch_create and scratch_drop. */
#define COFFER_SCRATCH_PREFIX "coffer_rehearse_"
static inline int coffer_scratch_name_valid(const char *name)
{
    const char *p = COFFER_SCRATCH_PREFIX;
    size_t n = 0;
    if (!name)
        return 0;
    while (*p)
        if (name[n++] != *p++)
            return 0;
    if (!name[n])
        return 0;
    for (; name[n]; n++)
        if (n >= 63 || !((name[n] >= 'a' && name[n] <= 'z') ||
                         (name[n] >= '0' && name[n] <= '9') || name[n] == '_'))
            return 0;
    return 1;
}

/* One row of a query result: ncols columns as text (NULL for SQL NULL),
 * valid during the call only. Return 0 to go on, nonzero to stop. */
typedef int (*coffer_row_cb)(void *ud, int ncols, const char *const *values);

/* Set by the core (struct_size included) and valid during the call. */
typedef struct coffer_restore_opts {
    uint32_t struct_size; /* since 1.0 */
    /* Root against which relative paths resolve: the private staging
     * directory of a file database (see "Ownership"), the restore root
     * otherwise. */
    const char *root;     /* since 1.0 */
    /* Replacement target given with --map NAME=VALUE (a path or URL), or NULL. */
    const char *target;   /* since 1.0 */
    int force;            /* since 1.0: overwrite a non-empty target */
    int create;           /* since 1.0: create the target database if missing */
    /* Where the files written under root will end up once the core moved
     * them (the --to directory, or the policy root for --in-place); for
     * messages and for files that record their own location. NULL when
     * the restore is thrown away afterwards (verify --read-data's scratch
     * directory). Never write there. Check struct_size first. since 1.1 */
    const char *final_root;
} coffer_restore_opts;

/* One line of a verify report. check: a short name ("integrity",
 * "rows.users"); detail: free text or NULL. Both are copied by the core. */
typedef void (*coffer_check_cb)(void *ud, int ok, const char *check, const char *detail);

/* Order of calls. backup: instance_new, capabilities, probe, owned_paths
 * (file databases: so the files components skip those paths), dump,
 * instance_free. restore: instance_new, capabilities, restore, verify,
 * owned_paths (the core then moves the files), instance_free. verify
 * --read-data (file databases only): instance_new, capabilities, restore
 * into a scratch directory, verify, instance_free. checks (restore and
 * rehearse, after the files moved into place): instance_new, query_target
 * per check, instance_free. rehearse: instance_new, scratch_create (server
 * databases), instance_free; then as restore into it, with its target;
 * then checks; finally instance_new, scratch_drop, instance_free (also
 * for a killed rehearsal's leftovers). backup with reference checks: as
 * backup, dump with sink->keep_snapshot set, then query_snapshot per check,
 * then instance_free. policy check: validate only. A failing call returns its code after host->error on the same
 * thread; the core does not retry COFFER_ERR_RETRY. One instance is used by
 * one thread at a time; sink streams may be opened from several threads
 * only with COFFER_DBCAP_PARALLEL_DUMP. */
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
     * check through cb (failed ones with ok = 0); returns COFFER_OK only if
     * all passed, COFFER_ERR_FAILED when a check failed (the restore is
     * then reported with exit status 3), another code when it could not
     * check at all. since 1.0 */
    coffer_status (*verify)(void *instance, coffer_dump_source *src, const coffer_restore_opts *opts,
                            coffer_check_cb cb, void *ud);

    /* ---- optional ---- */
    /* Paths (relative to the policy root) of files this instance owns, so
     * a files component never captures them twice, and which restore moves
     * into place (see "Ownership"). Fills up to max entries (strings owned
     * by the instance, valid until instance_free); returns the count.
     * since 1.0 */
    size_t (*owned_paths)(void *instance, const char **paths, size_t max);
    /* Run a read-only query against the instance's own database; row_cb
     * gets each row's columns as text (NULL for SQL NULL) and returns
     * nonzero to stop early. Rows stream as query_target's do. since 1.0 */
    coffer_status (*query)(void *instance, const char *sql,
                           int (*row_cb)(void *ud, int ncols, const char *const *values), void *ud);

    /* Check the options without connecting or opening anything, as
     * coffer_storage_ops.validate does (same contract). May be NULL.
     * since 1.1 */
    coffer_status (*validate)(const coffer_host *host, coffer_hctx *h, const coffer_config *cfg,
                              const char **bad_option);

    /* ---- rehearsals and application checks (optional, since 1.1) ----
     * A 1.0 driver lacks these members: the core reads them only when the
     * table's struct_size covers them, and then only when non-NULL. */

    /* Run one read-only statement against the database a restore wrote:
     * opts as given to that restore's verify, except that opts->root is
     * where the restored files are now (a file database resolves its path
     * against it) and opts->final_root is NULL. row_cb gets each row's
     * columns as text, NULL for SQL NULL, valid during the call only; it
     * returns 0 to go on, nonzero to stop (the call then returns
     * COFFER_OK). Rows are handed over as the server sends them: the
     * driver holds at most a bounded number of rows in memory, whatever
     * the result's size (libpq single-row mode, mysql_use_result, sqlite
     * stepping). A statement that does not parse or is not read-only
     * returns COFFER_ERR_INVALID with the server's message. since 1.1 */
    coffer_status (*query_target)(void *instance, const coffer_restore_opts *opts, const char *sql,
                                  coffer_row_cb row_cb, void *ud);

    /* Server databases only. Create an empty database called `name`
     * (lowercase letters, digits and '_', at most 63 bytes, always
     * starting "coffer_rehearse_") for a rehearsal, on the instance's own
     * server when `server` is NULL, else on the server a URL of the
     * driver's own form names (its database part is ignored; its
     * credentials as for a --map URL). Fails with COFFER_ERR_EXISTS when
     * the name is taken (never touches an existing database) and with
     * COFFER_ERR_AUTH when the account may not create databases, naming
     * the server (without password) and the privilege it lacks. On
     * success writes into target (target_len bytes) the value a --map
     * would take to restore into the new database, without any password:
     * restore, verify and query_target accept it as opts->target.
     * since 1.1 */
    coffer_status (*scratch_create)(void *instance, const char *server, const char *name,
                                    char *target, size_t target_len);
    /* Drop the database `name` (same rule) on the same server; one that
     * does not exist is not an error. Refuses names without the
     * "coffer_rehearse_" prefix (COFFER_ERR_INVALID). since 1.1 */
    coffer_status (*scratch_drop)(void *instance, const char *server, const char *name);

    /* ---- reference-verified backups (optional, since 1.1) ---- */

    /* Run one read-only statement against exactly what the last dump of
     * this instance captured: the same snapshot, not the live database.
     * Called after dump returned COFFER_OK for a sink with keep_snapshot
     * set, from the thread that called dump; the snapshot stays valid for
     * further calls until instance_free, which releases it (drops the
     * copy, ends the transaction). Rows stream as query_target's (bounded
     * memory, row_cb may stop early). A statement that does not parse or
     * is not read-only returns COFFER_ERR_INVALID with the server's
     * message; COFFER_ERR_UNSUPPORTED when no snapshot was kept. A server
     * database whose component dumps several databases queries the first
     * one (the one query_target would query). since 1.1 */
    coffer_status (*query_snapshot)(void *instance, const char *sql, coffer_row_cb row_cb, void *ud);
} coffer_database_ops;

#ifdef __cplusplus
}
#endif
#endif
