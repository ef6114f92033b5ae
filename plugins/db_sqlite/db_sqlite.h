/*
 * database "sqlite": private declarations shared by sqlite.c (descriptor,
 * instance, probe, owned_paths), query.c, dump.c, restore.c and verify.c.
 *
 * Every symbol here is linked into the core when the driver is built in,
 * so all of them carry the dbsqlite_ prefix.
 */
#ifndef COFFER_DB_SQLITE_H
#define COFFER_DB_SQLITE_H

#include <stdint.h>

#include <sqlite3.h>

#include <coffer/coffer.h>

#define DBSQLITE_CHUNK (1u << 20) /* stream buffer: 1 MiB */

typedef struct dbsqlite_instance {
    uint32_t magic; /* COFFER_MAGIC_INSTANCE while alive */
    const coffer_host *host;
    coffer_hctx *h;
    char *path_opt; /* `path` as configured (relative to the policy root, or absolute) */
    char *path;     /* resolved against the policy root */
    int busy_ms;
    char *owned[4]; /* path_opt and its -wal, -shm, -journal siblings */
    /* The last dump's private copy, kept for query_snapshot when the sink
     * asked for it (keep_snapshot); removed by the next dump or
     * instance_free. NULL when none is kept. */
    char *snapshot;
} dbsqlite_instance;

void dbsqlite_check_magic(const void *p, uint32_t magic, const char *what);

/* Record a SQLite failure: maps rc to a status, names what and path, and
 * takes the message from db when given (else from rc). */
coffer_status dbsqlite_err(dbsqlite_instance *in, sqlite3 *db, int rc, const char *what, const char *path);

typedef enum {
    DBSQLITE_OPEN_RO = 0,        /* read-only, busy timeout: a live database */
    DBSQLITE_OPEN_IMMUTABLE = 1, /* read-only, no locks and no -wal/-shm: a file nobody else uses */
} dbsqlite_open_mode;

/* Open path; NOT_FOUND when it does not exist. *db is NULL on failure. */
coffer_status dbsqlite_open(dbsqlite_instance *in, const char *path, dbsqlite_open_mode mode, sqlite3 **db);
/* A database a restore wrote: immutable when it has no -wal or -journal
 * beside it (nothing is left behind), else read-only through them. */
coffer_status dbsqlite_open_restored(dbsqlite_instance *in, const char *path, sqlite3 **db);

/* Every user table (not sqlite_* internals, not virtual tables, whose
 * module may be missing) with its row count, ordered by name. fn returns
 * COFFER_OK to continue. */
typedef coffer_status (*dbsqlite_count_fn)(void *ud, const char *table, int64_t rows);
coffer_status dbsqlite_count_rows(dbsqlite_instance *in, sqlite3 *db, const char *path, dbsqlite_count_fn fn,
                                  void *ud);

/* malloc'd "base/rel", or a copy of rel when it is absolute or base is NULL. */
char *dbsqlite_join(const char *base, const char *rel);
const char *dbsqlite_basename(const char *path);

/* The database a restore or verify works on (opts->target, else `path`,
 * resolved against opts->root). malloc'd. */
char *dbsqlite_target(dbsqlite_instance *in, const coffer_restore_opts *opts);

/* Unlink path-wal, path-shm and path-journal. Returns 0 or an errno (and
 * the failing path in *failed, malloc'd). found counts files removed. */
int dbsqlite_remove_sidecars(const char *path, int *found, char **failed);

/* query.c: run one read-only statement on db, rows to row_cb. A
 * statement that is not exactly one read-only statement is
 * COFFER_ERR_INVALID; with strict (query_target), so is one SQLite
 * refuses (syntax, unknown table or column), with SQLite's message. */
coffer_status dbsqlite_run(dbsqlite_instance *in, sqlite3 *db, const char *path, const char *sql, coffer_row_cb row_cb,
                           void *ud, int strict);
coffer_status dbsqlite_query(void *instance, const char *sql, coffer_row_cb row_cb, void *ud);
coffer_status dbsqlite_query_target(void *instance, const coffer_restore_opts *opts, const char *sql,
                                    coffer_row_cb row_cb, void *ud);
coffer_status dbsqlite_query_snapshot(void *instance, const char *sql, coffer_row_cb row_cb,
                                      void *ud);

/* dump.c, restore.c, verify.c */
coffer_status dbsqlite_dump(void *instance, coffer_dump_sink *sink);
/* Remove the kept copy of the last dump (and its sidecars), if any. */
void dbsqlite_snapshot_release(dbsqlite_instance *in);
coffer_status dbsqlite_restore(void *instance, coffer_dump_source *src, const coffer_restore_opts *opts);
coffer_status dbsqlite_verify(void *instance, coffer_dump_source *src, const coffer_restore_opts *opts,
                              coffer_check_cb cb, void *ud);

#endif
