/*
 * database "postgres": private declarations shared by postgres.c
 * (descriptor, options, instance, probe, query), conn.c (connection
 * parameters, password stripping, libpq sessions), proc.c (pg_dump /
 * pg_restore child processes, version checks, password file), dump.c,
 * restore.c and verify.c.
 *
 * Secrets: the password lives only in pgd_instance.password (wiped on
 * free), in libpq's own connection struct, and in a private 0600 password
 * file that exists while a child runs. It is never in argv, a log line,
 * an error or the set's metadata: every URL shown is pgd_redact()ed and
 * children get connection strings built without it (pgd_params_conninfo).
 */
#ifndef COFFER_DB_POSTGRES_H
#define COFFER_DB_POSTGRES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libpq-fe.h>

#include <coffer/coffer.h>

#define PGD_CHUNK (1u << 20) /* pipe <-> stream buffer: 1 MiB */
#define PGD_ERRTAIL 4096     /* bytes of a child's stderr kept for errors */
#define PGD_MAX_JOBS 16

/* libpq connection parameters (keyword -> value), without the password. */
typedef struct pgd_params {
    char **keys;
    char **vals;
    size_t n;
} pgd_params;

typedef struct pgd_instance {
    uint32_t magic; /* COFFER_MAGIC_INSTANCE while alive */
    const coffer_host *host;
    coffer_hctx *h;
    pgd_params params; /* from `url` (+ sslmode, connect_timeout) */
    char *password;    /* password_env/_file, else the URL's; NULL: libpq's defaults */
    char *display;     /* the URL with any password removed: for messages */
    char **dbs;        /* `databases`, default the URL's database */
    size_t ndbs;
    int jobs;
    char *bin_dir; /* `pg_bin_dir` resolved, or NULL: search PATH */
    char *maintenance_db;
    int restore_owner;
    int analyze;
    /* pg_dump as found and checked by pgd_check_pg_dump (cached) */
    char pg_dump[4096];
    int pg_dump_num;
    char pg_dump_text[128];
    /* The first database's dump session, its snapshot transaction still
     * open, when the last dump was asked to keep it (keep_snapshot);
     * query_snapshot runs there until instance_free. snap_lost: it was
     * kept but is gone (the session broke, a statement ended it). */
    PGconn *snap;
    char *snap_shown; /* "the snapshot of postgres://...", for messages */
    int snap_lost;
} pgd_instance;

void pgd_check_magic(const void *p, uint32_t magic, const char *what);
coffer_status pgd_oom(pgd_instance *in);

/* ---- conn.c: parameters, redaction, sessions ------------------------ */

/* Parse a libpq URI or key=value string. The password it may hold goes to
 * *password (malloc'd, or NULL); sslpassword is dropped (*dropped_ssl set).
 * On a syntax error returns COFFER_ERR_INVALID with a redacted message. */
coffer_status pgd_params_parse(pgd_instance *in, const char *what, const char *url, pgd_params *out,
                               char **password, int *dropped_ssl);
void pgd_params_free(pgd_params *p);
const char *pgd_params_get(const pgd_params *p, const char *key);
int pgd_params_set(pgd_params *p, const char *key, const char *val); /* 0, or -1 (no memory) */
int pgd_params_copy(pgd_params *dst, const pgd_params *src);
/* "key='value' ..." for a child's --dbname, with dbname replaced when
 * dbname is not NULL. Never contains a password (parse removed it). */
char *pgd_params_conninfo(const pgd_params *p, const char *dbname, const char *appname);
/* A URI libpq reads back to the same parameters, with dbname replaced
 * by dbname and without password: postgres://user@host:port/dbname?k=v
 * (the host and port go in the query when the host is a socket
 * directory or a list). malloc'd. */
char *pgd_params_uri(const pgd_params *p, const char *dbname);
/* "postgres://user@host:port/dbname" for messages (no password). */
char *pgd_params_display(const pgd_params *p, const char *dbname);

/* A copy of text with every password removed: the password part of
 * postgres:// and postgresql:// URIs, password= and sslpassword= in query
 * strings and key=value strings. */
char *pgd_redact(const char *text);

/* PostgreSQL version text ("15.20", "9.6.24", "16beta1", "pg_dump
 * (PostgreSQL) 15.4 (Debian ...)") -> 150020, 90624, 160000, 150004;
 * 0 when none is found. */
int pgd_parse_version(const char *text);
/* Major release of a version number: 15 for 150020, 906 for 90624. */
int pgd_major(int num);
/* "15" or "9.6" into buf. */
const char *pgd_major_str(int num, char *buf, size_t len);

/* Connect to dbname (NULL: the parameters' own) with the instance's
 * password. On failure: NULL, error set (COFFER_ERR_AUTH when the server
 * refused the credentials), naming the redacted URL. */
PGconn *pgd_connect(pgd_instance *in, const pgd_params *p, const char *password, const char *dbname,
                    coffer_status *st);
/* Run one statement (with optional text parameters), waiting on the
 * socket and polling host->cancelled (the query is cancelled then).
 * Returns the result (PQclear it) or NULL with the error set. */
PGresult *pgd_exec(pgd_instance *in, PGconn *c, const char *what, const char *sql, int nparams,
                   const char *const *params, coffer_status *st);
/* Route c's server notices to in's log (pgd_connect does it for the
 * instance it was given). */
void pgd_notices_to(pgd_instance *in, PGconn *c);
/* A libpq message, redacted, as one line ("; " between lines). */
void pgd_one_line(const char *msg, char *buf, size_t len);
/* Record a libpq error (message collapsed to one line). */
coffer_status pgd_conn_error(pgd_instance *in, PGconn *c, PGresult *r, const char *what);

/* One user table and its row count. */
typedef struct pgd_table {
    char *schema;
    char *name;
    int64_t rows;
} pgd_table;
void pgd_tables_free(pgd_table *t, size_t n);
/* SQL listing user tables (schema, name): ordinary and partition tables
 * outside the system schemas, not extension members; ordered. */
extern const char pgd_tables_sql[];
/* Count tables' rows in c's current transaction (one statement each). */
coffer_status pgd_count_rows(pgd_instance *in, PGconn *c, pgd_table *t, size_t n);
coffer_status pgd_list_tables(pgd_instance *in, PGconn *c, pgd_table **out, size_t *n);

/* Meta key of a table's row count: "rows.<schema>.<table>", prefixed by
 * "<database>/" when the set holds several databases. malloc'd. */
char *pgd_rows_key(const char *db, const char *schema, const char *table);

/* ---- proc.c: client programs ------------------------------------------ */

/* Locate tool ("pg_dump", "pg_restore") in pg_bin_dir or PATH. */
coffer_status pgd_find_tool(pgd_instance *in, const char *tool, char *path, size_t len);
/* Run `path --version`; parse it. */
coffer_status pgd_tool_version(pgd_instance *in, const char *path, int *num, char *text,
                               size_t len);
/* Find pg_dump and check it can dump a server of version server_num
 * (its major must be >= the server's). Cached in the instance. */
coffer_status pgd_check_pg_dump(pgd_instance *in, int server_num);
/* The version rule alone: COFFER_OK, or COFFER_ERR_UNSUPPORTED with a
 * message naming both versions. */
coffer_status pgd_check_tool_version(pgd_instance *in, const char *tool, const char *path,
                                     int tool_num, const char *tool_text, int need_num,
                                     const char *need_what);

/* A private 0600 password file ("*:*:*:*:password") for children; *path
 * stays empty when password is NULL. Remove with pgd_passfile_remove. */
coffer_status pgd_passfile_new(pgd_instance *in, const char *password, char *path, size_t len);
void pgd_passfile_remove(char *path);
/* The line written to the password file (escaped), malloc'd. */
char *pgd_passfile_line(const char *password);

typedef struct pgd_child {
    pid_t pid;
    int in_fd;  /* child's stdin (write end) or -1 */
    int out_fd; /* child's stdout (read end) or -1 */
    int err_fd; /* child's stderr (read end) or -1 once at EOF */
    char err[PGD_ERRTAIL];
    size_t errlen;
    int err_cut; /* earlier stderr bytes were dropped */
} pgd_child;

/* Start path with argv (argv[0] included) in its own process group, the
 * environment of this process plus PGPASSFILE=passfile (and without
 * PGPASSWORD) when passfile is not empty. stdin/stdout are pipes when
 * asked, else /dev/null; stderr is always captured. */
coffer_status pgd_spawn(pgd_instance *in, const char *path, char *const argv[],
                        const char *passfile, int want_stdin, int want_stdout, pgd_child *c);
/* Read what stderr has (non-blocking); 0 or -1 at EOF. */
void pgd_child_drain_err(pgd_child *c);
/* Close pipes, wait; returns the raw wait status (or -1). */
int pgd_child_wait(pgd_child *c);
/* Terminate (SIGTERM, then SIGKILL) and reap. */
void pgd_child_kill(pgd_child *c);
/* The last lines of stderr, redacted, '\n' -> "; ", into buf. */
const char *pgd_child_errtail(const pgd_child *c, char *buf, size_t len);
/* "exit status 1" / "killed by signal 9" */
const char *pgd_wait_str(int status, char *buf, size_t len);

/* ---- operations ------------------------------------------------------ */
coffer_status pgd_dump(void *instance, coffer_dump_sink *sink);
/* End the kept snapshot transaction (ROLLBACK) and close its session. */
void pgd_snapshot_release(pgd_instance *in);
coffer_status pgd_restore(void *instance, coffer_dump_source *src, const coffer_restore_opts *opts);
coffer_status pgd_verify(void *instance, coffer_dump_source *src, const coffer_restore_opts *opts,
                         coffer_check_cb cb, void *ud);

/* Restore/verify target: the parameters of opts->target (a URL given
 * with --map) or the instance's, the password to use, and the database
 * that receives stream i's database `orig` (with one database, --map's
 * own database name wins). */
typedef struct pgd_target {
    pgd_params params;
    char *password; /* malloc'd; may be NULL */
    int mapped;
} pgd_target;
coffer_status pgd_target_open(pgd_instance *in, const coffer_restore_opts *opts, pgd_target *t);
void pgd_target_free(pgd_target *t);
const char *pgd_target_db(const pgd_target *t, const char *orig, size_t ndbs);

/* ---- rehearse.c: queries and scratch databases (ABI 1.1) ------------- */
coffer_status pgd_query(void *instance, const char *sql, coffer_row_cb row_cb, void *ud);
coffer_status pgd_query_target(void *instance, const coffer_restore_opts *opts, const char *sql,
                               coffer_row_cb row_cb, void *ud);
coffer_status pgd_query_snapshot(void *instance, const char *sql, coffer_row_cb row_cb, void *ud);
coffer_status pgd_scratch_create(void *instance, const char *server, const char *name, char *target,
                                 size_t target_len);
coffer_status pgd_scratch_drop(void *instance, const char *server, const char *name);
/* Status of a failed statement from its SQLSTATE: syntax, semantic and
 * read-only violations COFFER_ERR_INVALID, privileges COFFER_ERR_AUTH. */
coffer_status pgd_sqlstate_status(const char *state);

/* Names of the databases a set holds ("databases" meta, ',' separated,
 * else derived from the stream names). */
coffer_status pgd_set_databases(pgd_instance *in, coffer_dump_source *src, char ***dbs, size_t *n);
void pgd_strv_free(char **v, size_t n);
/* Stream name of a database's dump: "<db>.pgdump". malloc'd */
char *pgd_stream_name(const char *db);

#endif
