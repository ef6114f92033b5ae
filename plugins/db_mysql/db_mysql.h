/*
 * database "mysql": private declarations shared by the driver's files.
 *
 *   mysql.c    descriptor, options, instance, probe, query
 *   url.c      mysql:// and file:// URLs, stream-name encoding
 *   conn.c     connecting (password, TLS), errors, small query helpers
 *   sqlout.c   buffered output, SQL literals, content-defined INSERT batching
 *   pipe.c     writer threads between the formatting and the sink
 *   split.c    splitting SQL text into statements as the mysql client does
 *   dump.c     consistent snapshot, schema, data streams (parallel with jobs > 1)
 *   restore.c  into a server (original or mapped schema) or a plain .sql file
 *   verify.c   row counts and object counts against the set
 *
 * The driver is only ever built as a loadable module, but every symbol
 * still carries the dbmysql_ prefix, as if it could be linked into the core.
 *
 * Stream layout of a set (format "coffer-mysql-1"), for each dumped
 * database D (names encoded with dbmysql_name_encode):
 *   D/schema.sql         CREATE TABLE / CREATE SEQUENCE, tables in name order
 *   D/data/T/P.sql       rows of table T in primary-key order, as INSERT
 *                        statements split by content between parts P = 0, 1
 *                        (sqlout.c); a sequence as DO SETVAL(...) in 0.sql
 *   D/post.sql           views, routines, triggers, events (after the data,
 *                        so triggers never fire during a load)
 * Every stream is plain SQL the stock mysql client accepts (post.sql uses
 * DELIMITER). Metadata: see dump.c.
 */
#ifndef COFFER_DB_MYSQL_H
#define COFFER_DB_MYSQL_H

#include <stddef.h>
#include <stdint.h>

#include <mysql.h>

#include <coffer/coffer.h>

#define DBMYSQL_FORMAT "coffer-mysql-1"
#define DBMYSQL_OUT_CAP (1u << 20) /* output buffer per stream: 1 MiB */
#define DBMYSQL_MAX_JOBS 32

/* ---- URLs (url.c) ------------------------------------------------------ */

typedef enum { DBMYSQL_TLS_DISABLED, DBMYSQL_TLS_PREFERRED, DBMYSQL_TLS_REQUIRED, DBMYSQL_TLS_VERIFY_CA,
               DBMYSQL_TLS_VERIFY_IDENTITY } dbmysql_tls_mode;

/* mysql://[user@]host[:port][/database][?socket=/path&ssl_mode=..&ssl_ca=..
 *   &password_env=VAR&password_file=/path]  (also mariadb://). A password in
 * the URL is refused: URLs appear in logs and on command lines. */
typedef struct dbmysql_url {
    char *user;     /* NULL: the library default (the OS user name) */
    char *host;     /* NULL or "localhost": the socket */
    unsigned port;  /* 0: default 3306 */
    char *database; /* NULL when the path is empty */
    char *socket;
    char *password_env, *password_file; /* target URLs may name their own */
    char *ssl_mode, *ssl_ca, *ssl_cert, *ssl_key;
} dbmysql_url;

/* Parse; on failure returns -1 with a message (no secrets) in err. */
int dbmysql_url_parse(const char *text, dbmysql_url *u, char *err, size_t errlen);
void dbmysql_url_free(dbmysql_url *u);
/* The URL again, with `database` (NULL: none) as its path; every part
 * percent-encoded as needed, password_env/password_file kept (it never
 * holds a password itself). malloc'd, NULL without memory. */
char *dbmysql_url_format(const dbmysql_url *u, const char *database);
/* "user@host:port/db" or "user@localhost/db (socket /path)", for messages. */
void dbmysql_url_describe(const dbmysql_url *u, char *buf, size_t len);

/* file:///abs/path.sql[?database=NAME]: a restore target that is a plain
 * SQL file. Returns 1 (and fills path, database: malloc'd, database may be
 * NULL) when text is a file URL, 0 when it is not, -1 when malformed. */
int dbmysql_file_url(const char *text, char **path, char **database, char *err, size_t errlen);

/* Stream-name encoding of an identifier: bytes that are '/', '%', ',',
 * control characters, DEL, or a leading '.' become %XX. malloc'd. */
char *dbmysql_name_encode(const char *name);
/* Inverse; NULL when malformed. malloc'd. */
char *dbmysql_name_decode(const char *enc, size_t len);

/* `name` with backticks doubled, into a malloc'd string. */
char *dbmysql_quote_ident(const char *name);

/* ---- instance and connections (mysql.c, conn.c) --------------------------- */

typedef struct dbmysql_instance {
    uint32_t magic; /* COFFER_MAGIC_INSTANCE while alive */
    const coffer_host *host;
    coffer_hctx *h;
    const coffer_config *cfg; /* lives as long as the instance; for secret_get */
    char *url_text;
    dbmysql_url url;
    char **databases; /* explicit list, or NULL: the URL's database, or all */
    size_t ndatabases;
    int jobs;
    int timeout;           /* seconds: connect and network read/write */
    int lock_wait_timeout; /* seconds FLUSH TABLES WITH READ LOCK may wait */
    dbmysql_tls_mode tls;
    char *ssl_ca, *ssl_capath, *ssl_cert, *ssl_key, *ssl_cipher; /* resolved paths */
    /* The last dump's first connection, its snapshot transaction still
     * open, when the sink asked to keep it (keep_snapshot): query_snapshot
     * runs there until instance_free. snap_lost: it was kept but is gone
     * (the connection broke, a statement ended the transaction). */
    MYSQL *snap;
    char snap_where[700]; /* "the snapshot of user@host:port/db", for messages */
    int snap_lost;
} dbmysql_instance;

void dbmysql_check_magic(const void *p, uint32_t magic, const char *what);

/* Map a client/server error number to a coffer status. */
coffer_status dbmysql_status_of(unsigned err);

/* Connect to u (the instance's own URL or a restore target), to database
 * db (NULL: none). The password comes from u's password_env/_file when it
 * names one, else from the instance's (host->secret_get "password"). The
 * session is set up for dumping and loading: utf8mb4, time_zone +00:00,
 * sql_mode NO_AUTO_VALUE_ON_ZERO (backslash escapes on), long network
 * timeouts. On failure records the error through host->error. */
coffer_status dbmysql_connect(dbmysql_instance *in, const dbmysql_url *u, const char *db, MYSQL **out);

/* Record a failed call on m: "<what>: <server message> (errno)". */
coffer_status dbmysql_fail(dbmysql_instance *in, MYSQL *m, const char *what);
/* The same message into buf (for worker threads), returning the status. */
coffer_status dbmysql_fail_buf(MYSQL *m, const char *what, char *buf, size_t len);

/* Abandon m mid-result (failure, cancellation): the connection is reset,
 * the server stops at once; only mysql_free_result/mysql_close may follow. */
void dbmysql_abort(MYSQL *m);

/* s as a quoted SQL string literal for m's connection, malloc'd. */
char *dbmysql_sql_string(MYSQL *m, const char *s);

/* Run a statement that returns no rows (or discard them). 0 or the errno. */
unsigned dbmysql_exec(MYSQL *m, const char *sql);
/* First column of the first row into buf ("" when NULL); -1 with no row. */
int dbmysql_scalar(MYSQL *m, const char *sql, char *buf, size_t len, unsigned *err);

/* printf into a malloc'd string (abort on ENOMEM: messages are small). */
char *dbmysql_printf(const char *fmt, ...) COFFER_PRINTF(1, 2);

/* ---- output and SQL literals (sqlout.c) ------------------------------------ */

typedef coffer_status (*dbmysql_write_fn)(void *ud, const void *buf, size_t len);
/* Hand over the full buffer *buf (len bytes) and put a free one in *buf. */
typedef coffer_status (*dbmysql_swap_fn)(void *ud, char **buf, size_t len);

/* A buffered writer in front of a sink stream or a file. The first error is
 * sticky: later calls do nothing and out->st keeps it. */
typedef struct dbmysql_out {
    char *buf;
    size_t len, cap;
    dbmysql_write_fn write; /* either write (copying) ... */
    dbmysql_swap_fn swap;   /* ... or swap (buffers change hands) */
    void *ud;
    uint64_t total; /* bytes handed to write */
    coffer_status st;
    /* Row hashing for batch boundaries: bytes from hash_from on are folded
     * into hash before they leave the buffer. SIZE_MAX: not hashing. */
    size_t hash_from;
    uint64_t hash, hcarry;
    unsigned hcarry_n;
} dbmysql_out;

int dbmysql_out_init(dbmysql_out *o, size_t cap, dbmysql_write_fn write, void *ud);
/* Swapping mode: buf (cap bytes) is borrowed; dbmysql_out_free leaves
 * whatever buffer o->buf holds then to the caller. */
void dbmysql_out_init_swap(dbmysql_out *o, size_t cap, char *buf, dbmysql_swap_fn swap, void *ud);
void dbmysql_out_free(dbmysql_out *o);
coffer_status dbmysql_out_put_slow(dbmysql_out *o, const void *p, size_t n);
/* Append n bytes (the common small case inline). */
static inline coffer_status dbmysql_out_put(dbmysql_out *o, const void *p, size_t n)
{
    if (o->cap - o->len >= n) {
        __builtin_memcpy(o->buf + o->len, p, n);
        o->len += n;
        return o->st;
    }
    return dbmysql_out_put_slow(o, p, n);
}
coffer_status dbmysql_out_str(dbmysql_out *o, const char *s);
coffer_status dbmysql_out_flush(dbmysql_out *o);
/* Room for at least n contiguous bytes at o->buf + o->len (n <= cap). */
char *dbmysql_out_room(dbmysql_out *o, size_t n);

/* Escapes `len` bytes of utf8mb4 text for a single-quoted literal into to
 * (room for 2 * len + 1) and returns the length: mysql_real_escape_string
 * on the dump connection, or a stand-in in unit tests. */
typedef unsigned long (*dbmysql_escape_fn)(void *ud, char *to, const char *from, unsigned long len);

typedef enum { DBMYSQL_LIT_NUMBER, DBMYSQL_LIT_STRING, DBMYSQL_LIT_HEX } dbmysql_lit;

/* How a result column is written: numbers as they come, binary data
 * (binary charset strings, BLOBs, BIT, GEOMETRY) as X'..', the rest as
 * escaped strings. */
dbmysql_lit dbmysql_lit_of(enum enum_field_types type, unsigned charsetnr);

coffer_status dbmysql_out_literal(dbmysql_out *o, dbmysql_lit kind, const char *val, unsigned long len,
                                  dbmysql_escape_fn esc, void *esc_ud);

/* Content-defined batching of rows into INSERT statements. A statement
 * ends after a row when the statement has at least min bytes and the row's
 * hash says so (probability row_len / target), or when it reaches max
 * bytes. The decision depends only on the rows themselves, so an unchanged
 * run of rows produces the same statements, and hence the same bytes, day
 * after day even when rows are inserted or deleted elsewhere.
 *
 * A table's statements go to one of nparts outputs (its part streams), the
 * next statement's part chosen by the hash of the row that ended the
 * previous one: also content-defined, so the parts are as stable as the
 * statements, and two writer threads can ingest one table at once. */
#define DBMYSQL_PARTS 2

/* Open part p (first use) and return its output. */
typedef coffer_status (*dbmysql_part_fn)(void *ud, int part, dbmysql_out **out);

typedef struct dbmysql_batch {
    dbmysql_out *parts[DBMYSQL_PARTS]; /* NULL until a statement goes there */
    int nparts, cur;
    dbmysql_part_fn open_part;
    void *ud;
    dbmysql_out *out; /* the part being written */
    const char *prefix; /* "INSERT INTO `t` (`a`,`b`) VALUES\n" */
    size_t prefix_len;
    uint64_t min, target, max; /* target: a power of two */
    uint64_t stmt_bytes;       /* 0: no statement open */
    uint64_t row_start;        /* out->total + out->len at the row's '(' */
    uint64_t rows, statements;
    coffer_status st;          /* first failure (opening a part, writing) */
} dbmysql_batch;

#define DBMYSQL_BATCH_MIN (16u << 10)
#define DBMYSQL_BATCH_TARGET (128u << 10)
#define DBMYSQL_BATCH_MAX (1u << 20)

void dbmysql_batch_init(dbmysql_batch *b, const char *prefix, int nparts, dbmysql_part_fn open_part, void *ud);
/* One output, for tests and small uses. */
void dbmysql_batch_init1(dbmysql_batch *b, dbmysql_out *o, const char *prefix);
coffer_status dbmysql_batch_row_begin(dbmysql_batch *b);
/* Separator before every column but the first. */
static inline coffer_status dbmysql_batch_sep(dbmysql_batch *b)
{
    return b->out ? dbmysql_out_put(b->out, ",", 1) : b->st;
}
coffer_status dbmysql_batch_row_end(dbmysql_batch *b);
coffer_status dbmysql_batch_finish(dbmysql_batch *b);

/* ---- writer threads (pipe.c) ------------------------------------------------ */

/* One writer thread and a few DBMYSQL_OUT_CAP buffers: pipe_put queues a
 * full buffer for sink->stream_write on the thread; pipe_get returns a
 * free buffer (waiting for one). The first write failure is sticky and
 * returned by every later put and drain. */
typedef struct dbmysql_pipe dbmysql_pipe;
dbmysql_pipe *dbmysql_pipe_new(const coffer_host *host, coffer_hctx *h, size_t cap);
void dbmysql_pipe_free(dbmysql_pipe *p);
char *dbmysql_pipe_get(dbmysql_pipe *p);
void dbmysql_pipe_release(dbmysql_pipe *p, char *buf);
coffer_status dbmysql_pipe_put(dbmysql_pipe *p, coffer_dump_sink *sink, void *stream, char *buf, size_t len);
/* Wait until everything queued is written. */
coffer_status dbmysql_pipe_drain(dbmysql_pipe *p);

/* ---- statement splitting (split.c) ------------------------------------------ */

/* Receives each complete statement (without its delimiter, NUL-terminated,
 * leading whitespace and comment-only text dropped). Return COFFER_OK to go on. */
typedef coffer_status (*dbmysql_stmt_fn)(void *ud, char *sql, size_t len);

typedef struct dbmysql_split {
    char *buf;
    size_t len, cap;
    size_t start; /* the current statement begins here */
    size_t pos;   /* lexer position */
    char delim[16];
    size_t dlen;
    int state;      /* lexer state, see split.c */
    size_t max;     /* largest statement accepted (0: no limit) */
    uint64_t line;  /* current line number (1-based), for messages */
    uint64_t stmt_line; /* line where the current statement began */
    dbmysql_stmt_fn fn;
    void *ud;
    char err[256]; /* why feed/end failed, when the lexer (not fn) failed */
} dbmysql_split;

void dbmysql_split_init(dbmysql_split *s, dbmysql_stmt_fn fn, void *ud);
void dbmysql_split_free(dbmysql_split *s);
/* Feed bytes; calls fn for each statement completed. */
coffer_status dbmysql_split_feed(dbmysql_split *s, const char *p, size_t n);
/* End of input: a last statement without delimiter is passed on too. */
coffer_status dbmysql_split_end(dbmysql_split *s);

/* Pick a DELIMITER for text: ";;" unless it occurs in it, then others. */
const char *dbmysql_pick_delimiter(const char *text);

/* ---- operations (dump.c, restore.c, verify.c) ------------------------------------- */

/* The databases a dump covers: option `databases`, else the URL's, else
 * every database but the system ones. Fills a malloc'd vector. */
coffer_status dbmysql_list_databases(dbmysql_instance *in, MYSQL *m, char ***out, size_t *n);
void dbmysql_strv_free(char **v, size_t n);

coffer_status dbmysql_dump(void *instance, coffer_dump_sink *sink);
/* End the kept snapshot transaction and close its connection. */
void dbmysql_snapshot_release(dbmysql_instance *in);
coffer_status dbmysql_restore(void *instance, coffer_dump_source *src, const coffer_restore_opts *opts);
coffer_status dbmysql_verify(void *instance, coffer_dump_source *src, const coffer_restore_opts *opts,
                             coffer_check_cb cb, void *ud);

/* Queries and scratch databases (rehearse.c, ABI 1.1). */
coffer_status dbmysql_query(void *instance, const char *sql, coffer_row_cb row_cb, void *ud);
coffer_status dbmysql_query_target(void *instance, const coffer_restore_opts *opts, const char *sql,
                                   coffer_row_cb row_cb, void *ud);
coffer_status dbmysql_query_snapshot(void *instance, const char *sql, coffer_row_cb row_cb,
                                     void *ud);
/* Is sql a locking read (FOR UPDATE, FOR SHARE, LOCK IN SHARE MODE)?
 * Those read the latest rows, not the snapshot's. Strings, quoted names
 * and comments are skipped; executable comments are read. */
int dbmysql_locking_read(const char *sql);
coffer_status dbmysql_scratch_create(void *instance, const char *server, const char *name, char *target,
                                     size_t target_len);
coffer_status dbmysql_scratch_drop(void *instance, const char *server, const char *name);
/* Status of a failed query from its error number: parse and semantic
 * errors and read-only violations COFFER_ERR_INVALID, else as
 * dbmysql_status_of. */
coffer_status dbmysql_query_status(unsigned err);
/* Shared by restore and verify: the databases of a set (meta "databases",
 * in order) and the name each lands under. */
typedef struct dbmysql_plan {
    char **src;   /* names in the set */
    char **dst;   /* names at the target */
    size_t n;
    int to_file;  /* target is a file:// URL */
    char *file;   /* its path */
    dbmysql_url url; /* server target (when !to_file) */
    char where[512]; /* target description for messages */
} dbmysql_plan;

coffer_status dbmysql_plan_make(dbmysql_instance *in, coffer_dump_source *src, const coffer_restore_opts *opts,
                                dbmysql_plan *p);
void dbmysql_plan_free(dbmysql_plan *p);

/* Count rows per table in a restored SQL file (the verify of a file
 * target). fn gets (db as named in the file, table, rows). */
typedef coffer_status (*dbmysql_filecount_fn)(void *ud, const char *db, const char *table, uint64_t rows);
coffer_status dbmysql_count_file(dbmysql_instance *in, const char *path, dbmysql_filecount_fn fn, void *ud,
                                 int *complete);

#endif
