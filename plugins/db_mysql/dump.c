/*
 * database "mysql": the consistent dump.
 *
 * Snapshot. With one connection and only transactional (InnoDB) tables,
 * START TRANSACTION WITH CONSISTENT SNAPSHOT is all it takes: no lock, the
 * application keeps writing. With jobs > 1, or when a table is not
 * transactional (MyISAM, Aria, MEMORY...), the dump takes FLUSH TABLES WITH
 * READ LOCK, starts the snapshot on every connection while writes are held
 * (so all connections see the same point in time, as mydumper does), reads
 * the schema, copies the non-transactional tables, and only then releases
 * the lock; InnoDB tables are read from the snapshots afterwards.
 *
 * Streams (see db_mysql.h): per database a schema stream, one data stream
 * per table and a post stream. Rows come through mysql_use_result (one
 * row in memory at a time) in primary-key order and are batched into
 * INSERT statements by content (sqlout.c), so an unchanged table gives the
 * same bytes every day and the repository deduplicates it.
 *
 * Metadata recorded:
 *   format                 coffer-mysql-1
 *   server_version, server MariaDB/MySQL version string, flavour
 *   size                   data + index bytes of the dumped databases
 *   snapshot               how consistency was obtained
 *   databases              dumped databases, name-encoded, comma-separated
 *   charset.<db>, collation.<db>   database defaults, for CREATE DATABASE
 *   rows.<db>.<table>      rows dumped (exactly the snapshot's)
 *   objects.<db>           "tables=N sequences=N views=N routines=N triggers=N events=N"
 *   nontransactional.<db>.<table>  engine of a table copied under the read lock
 *   binlog_file, binlog_position   binary log coordinates of the snapshot, when logging
 *
 * Keeping the snapshot (keep_snapshot, ABI 1.1): the first connection,
 * whose snapshot starts READ ONLY and with a savepoint right after it,
 * does not commit. Rolling back to the savepoint releases the metadata
 * locks the dump took, so the application's DDL need not wait for the
 * backup to end (a table changed that way can no longer be read in the
 * snapshot: error 1412, never other rows); the transaction itself stays
 * for query_snapshot until instance_free. Meanwhile InnoDB keeps the undo
 * history that snapshot may still read, purging nothing newer.
 */
#include "db_mysql.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysqld_error.h>

#define ERRLEN 1024
#define CHECK_EVERY 1024 /* rows between cancellation checks */

enum { K_TABLE, K_SEQUENCE };

typedef struct mcol {
    char *name;
    int is_float;
} mcol;

typedef struct mtable {
    char *name;
    size_t db; /* index into dctx.dbs */
    int kind;
    int trans; /* transactional: read from the snapshot, no lock needed */
    char engine[64];
    uint64_t size;
    mcol *cols;
    size_t ncols, capcols;
    char **key; /* ORDER BY columns (primary key, else a NOT NULL unique key) */
    size_t nkey;
    char *stream; /* D/data/T: its part streams are D/data/T/0.sql, .../1.sql */
    uint64_t rows;
} mtable;

typedef struct mdb {
    char *name, *enc;
    char charset[64], collation[128];
    size_t first, ntables; /* its tables in dctx.tables, sorted by name */
    unsigned views, routines, triggers, events, sequences;
} mdb;

typedef struct dctx {
    dbmysql_instance *in;
    coffer_dump_sink *sink;
    MYSQL *c0;
    mdb *dbs;
    size_t ndbs;
    mtable *tables;
    size_t ntables, captables;
    int mariadb;
    /* work queue of transactional tables (indices, largest first) */
    size_t *queue;
    size_t nqueue, next;
    pthread_mutex_t mu;
    atomic_int stop; /* a worker failed, or the run is cancelled */
    coffer_status st;
    char err[ERRLEN];
} dctx;

typedef struct worker {
    dctx *d;
    MYSQL *m;
    dbmysql_pipe *pipe[DBMYSQL_PARTS]; /* its writer threads, one per part */
    pthread_t th;
    int started;
} worker;

/* First failure wins; later ones (often consequences) are dropped. */
static coffer_status record(dctx *d, coffer_status st, const char *fmt, ...) COFFER_PRINTF(3, 4);

static coffer_status record(dctx *d, coffer_status st, const char *fmt, ...)
{
    pthread_mutex_lock(&d->mu);
    if (d->st == COFFER_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->err, sizeof d->err, fmt, ap);
        va_end(ap);
        d->st = st;
    }
    pthread_mutex_unlock(&d->mu);
    atomic_store(&d->stop, 1);
    return st;
}

static coffer_status record_sql(dctx *d, MYSQL *m, const char *fmt, ...) COFFER_PRINTF(3, 4);

static coffer_status record_sql(dctx *d, MYSQL *m, const char *fmt, ...)
{
    char what[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    char msg[ERRLEN];
    coffer_status st = dbmysql_fail_buf(m, what, msg, sizeof msg);
    return record(d, st, "%s", msg);
}


static char *qid(const char *name)
{
    char *q = dbmysql_quote_ident(name);
    if (!q) {
        fprintf(stderr, "coffer database mysql: out of memory\n");
        abort();
    }
    return q;
}

static unsigned long esc_cb(void *ud, char *to, const char *from, unsigned long len)
{
    return mysql_real_escape_string((MYSQL *)ud, to, from, len);
}

/* ---- sink streams ---------------------------------------------------------- */

typedef struct sstream {
    coffer_dump_sink *sink;
    void *stream;
    dbmysql_pipe *pipe;
} sstream;

static coffer_status sink_swap(void *ud, char **buf, size_t len)
{
    sstream *s = ud;
    coffer_status st = dbmysql_pipe_put(s->pipe, s->sink, s->stream, *buf, len);
    *buf = dbmysql_pipe_get(s->pipe);
    return st;
}

/* Open stream `name` with an output buffer in front of it, written by
 * w's writer thread for part `part`. */
static coffer_status open_out(worker *w, int part, const char *name, sstream *s, dbmysql_out *o)
{
    dctx *d = w->d;
    s->sink = d->sink;
    s->stream = NULL;
    s->pipe = w->pipe[part];
    coffer_status st = d->sink->stream_open(d->sink, name, &s->stream);
    if (st)
        return record(d, st, "cannot open dump stream %s", name);
    dbmysql_out_init_swap(o, DBMYSQL_OUT_CAP, dbmysql_pipe_get(s->pipe), sink_swap, s);
    return COFFER_OK;
}

/* Flush, wait for the writer, close; the stream is closed even after a
 * failure (the sink owns it, and a failed backup never publishes it). */
static coffer_status close_out(dctx *d, const char *name, sstream *s, dbmysql_out *o, coffer_status st)
{
    coffer_status fst = st ? st : dbmysql_out_flush(o);
    coffer_status dst = dbmysql_pipe_drain(s->pipe);
    if (fst == COFFER_OK)
        fst = dst;
    if (st == COFFER_OK && fst != COFFER_OK)
        st = record(d, fst, "cannot write dump stream %s", name);
    dbmysql_pipe_release(s->pipe, o->buf);
    coffer_status cst = d->sink->stream_close(s->stream);
    if (st == COFFER_OK && cst != COFFER_OK)
        st = record(d, cst, "cannot close dump stream %s", name);
    dbmysql_out_free(o);
    return st;
}

/* ---- discovery ---------------------------------------------------------------- */

static MYSQL_RES *query(dctx *d, MYSQL *m, const char *sql, const char *what)
{
    if (mysql_real_query(m, sql, strlen(sql)) != 0) {
        record_sql(d, m, "cannot %s", what);
        return NULL;
    }
    MYSQL_RES *r = mysql_store_result(m);
    if (!r)
        record_sql(d, m, "cannot %s", what);
    return r;
}

static int cmp_table(const void *a, const void *b)
{
    const mtable *x = a, *y = b;
    if (x->db != y->db)
        return x->db < y->db ? -1 : 1;
    return strcmp(x->name, y->name);
}

static mtable *find_table(dctx *d, size_t db, const char *name)
{
    mdb *D = &d->dbs[db];
    size_t lo = D->first, hi = D->first + D->ntables;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(d->tables[mid].name, name);
        if (c == 0)
            return &d->tables[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int is_transactional(const char *engine)
{
    return strcasecmp(engine, "InnoDB") == 0 || strcasecmp(engine, "XtraDB") == 0;
}

/* Any base table of the dumped databases that is not transactional?
 * Decides whether the read lock is needed, before the snapshot exists. */
static int need_lock_for_engines(dctx *d)
{
    for (size_t i = 0; i < d->ndbs; i++) {
        char *l = dbmysql_sql_string(d->c0, d->dbs[i].name);
        char *sql = dbmysql_printf("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
                                   " AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')"
                                   " AND ENGINE NOT IN ('InnoDB', 'XtraDB')",
                                   l);
        free(l);
        char buf[32];
        unsigned e;
        int rc = dbmysql_scalar(d->c0, sql, buf, sizeof buf, &e);
        free(sql);
        if (rc != 0 || strtoull(buf, NULL, 10) > 0)
            return 1; /* unknown counts as yes: the lock is the safe side */
    }
    return 0;
}

static coffer_status discover_db(dctx *d, size_t di)
{
    mdb *D = &d->dbs[di];
    MYSQL *m = d->c0;
    char *l = dbmysql_sql_string(m, D->name);
    coffer_status st = COFFER_OK;
    MYSQL_RES *r = NULL;
    MYSQL_ROW row;

    char *sql = dbmysql_printf("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM "
                               "information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                               l);
    r = query(d, m, sql, "read the database's character set");
    free(sql);
    if (!r)
        goto fail;
    if (!(row = mysql_fetch_row(r))) {
        mysql_free_result(r);
        st = record(d, COFFER_ERR_NOT_FOUND, "database '%s' disappeared during the dump", D->name);
        goto out;
    }
    snprintf(D->charset, sizeof D->charset, "%s", row[0] ? row[0] : "");
    snprintf(D->collation, sizeof D->collation, "%s", row[1] ? row[1] : "");
    mysql_free_result(r);

    sql = dbmysql_printf("SELECT TABLE_NAME, TABLE_TYPE, COALESCE(ENGINE, ''),"
                         " COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0)"
                         " FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
                         l);
    r = query(d, m, sql, "list tables");
    free(sql);
    if (!r)
        goto fail;
    D->first = d->ntables;
    while ((row = mysql_fetch_row(r)) != NULL) {
        if (!row[0] || !row[1])
            continue;
        if (strcmp(row[1], "VIEW") == 0) {
            D->views++;
            continue;
        }
        int kind;
        if (strcmp(row[1], "BASE TABLE") == 0 || strcmp(row[1], "SYSTEM VERSIONED") == 0)
            kind = K_TABLE;
        else if (strcmp(row[1], "SEQUENCE") == 0)
            kind = K_SEQUENCE;
        else
            continue; /* SYSTEM VIEW, TEMPORARY */
        if (d->ntables == d->captables) {
            size_t cap = d->captables ? 2 * d->captables : 64;
            mtable *t = realloc(d->tables, cap * sizeof *t);
            if (!t) {
                mysql_free_result(r);
                st = record(d, COFFER_ERR_FATAL, "out of memory");
                goto out;
            }
            d->tables = t;
            d->captables = cap;
        }
        mtable *t = &d->tables[d->ntables++];
        memset(t, 0, sizeof *t);
        t->name = strdup(row[0]);
        t->db = di;
        t->kind = kind;
        snprintf(t->engine, sizeof t->engine, "%s", row[2] ? row[2] : "");
        t->trans = kind == K_SEQUENCE || is_transactional(t->engine);
        t->size = row[3] ? strtoull(row[3], NULL, 10) : 0;
        if (strcmp(row[1], "SYSTEM VERSIONED") == 0)
            d->in->host->log(d->in->h, COFFER_LOG_WARN,
                             "table `%s`.`%s` is system-versioned: only its current rows are dumped, not its history",
                             D->name, t->name);
        if (kind == K_SEQUENCE)
            D->sequences++;
    }
    mysql_free_result(r);
    D->ntables = d->ntables - D->first;
    qsort(d->tables + D->first, D->ntables, sizeof *d->tables, cmp_table);

    /* Columns, in order; generated columns are computed by the server on
     * load and are neither selected nor inserted. */
    sql = dbmysql_printf("SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, EXTRA%s FROM information_schema.COLUMNS"
                         " WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, ORDINAL_POSITION",
                         d->mariadb ? ", IS_GENERATED" : "", l);
    r = query(d, m, sql, "list columns");
    free(sql);
    if (!r)
        goto fail;
    while ((row = mysql_fetch_row(r)) != NULL) {
        if (!row[0] || !row[1])
            continue;
        mtable *t = find_table(d, di, row[0]);
        if (!t || t->kind != K_TABLE)
            continue;
        const char *extra = row[3] ? row[3] : "";
        int generated = strstr(extra, "VIRTUAL") || strstr(extra, "STORED GENERATED") || strstr(extra, "PERSISTENT") ||
                        (d->mariadb && row[4] && strcmp(row[4], "ALWAYS") == 0);
        if (generated)
            continue;
        if (t->ncols == t->capcols) {
            size_t cap = t->capcols ? 2 * t->capcols : 16;
            mcol *c = realloc(t->cols, cap * sizeof *c);
            if (!c) {
                mysql_free_result(r);
                st = record(d, COFFER_ERR_FATAL, "out of memory");
                goto out;
            }
            t->cols = c;
            t->capcols = cap;
        }
        t->cols[t->ncols].name = strdup(row[1]);
        t->cols[t->ncols].is_float = row[2] && strcasecmp(row[2], "float") == 0;
        t->ncols++;
    }
    mysql_free_result(r);

    /* Row order: the primary key, else the first unique key without NULLs. */
    sql = dbmysql_printf("SELECT TABLE_NAME, INDEX_NAME, COLUMN_NAME, NON_UNIQUE, NULLABLE"
                         " FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s"
                         " ORDER BY TABLE_NAME, INDEX_NAME = 'PRIMARY' DESC, INDEX_NAME, SEQ_IN_INDEX",
                         l);
    r = query(d, m, sql, "list keys");
    free(sql);
    if (!r)
        goto fail;
    {
        char *tname = NULL, *iname = NULL;
        mtable *cur = NULL;
        char **cols = NULL;
        size_t ncols = 0;
        int usable = 0;
        for (;;) {
            row = mysql_fetch_row(r);
            int valid = row && row[0] && row[1] && row[2];
            int new_table = !valid || !tname || strcmp(row[0], tname) != 0;
            int new_index = new_table || strcmp(row[1], iname) != 0;
            if (new_index) { /* finish the previous index */
                if (cur && cur->nkey == 0 && usable && ncols) {
                    cur->key = cols;
                    cur->nkey = ncols;
                } else {
                    dbmysql_strv_free(cols, ncols);
                }
                cols = NULL;
                ncols = 0;
            }
            if (!row)
                break;
            if (!valid)
                continue;
            if (new_table) {
                free(tname);
                tname = strdup(row[0]);
                cur = find_table(d, di, row[0]);
            }
            if (new_index) {
                free(iname);
                iname = strdup(row[1]);
                usable = row[3] && strcmp(row[3], "0") == 0;
            }
            if (row[4] && strcmp(row[4], "YES") == 0)
                usable = 0;
            char **nc = realloc(cols, (ncols + 1) * sizeof *nc);
            if (nc) {
                cols = nc;
                cols[ncols++] = strdup(row[2]);
            } else {
                usable = 0;
            }
        }
        free(tname);
        free(iname);
    }
    mysql_free_result(r);

    for (size_t i = D->first; i < D->first + D->ntables; i++) {
        char *enc = dbmysql_name_encode(d->tables[i].name);
        d->tables[i].stream = dbmysql_printf("%s/data/%s", D->enc, enc);
        free(enc);
    }
    goto out;
fail:
    st = d->st ? d->st : COFFER_ERR_FAILED;
out:
    free(l);
    return st;
}

/* ---- schema and post streams ------------------------------------------------------ */

/* Run `SHOW CREATE ...`; *res and *row hold its first row, whose column
 * col_name must be set (NULL means a missing privilege: fail). */
static coffer_status show_create(dctx *d, const char *sql, const char *col_name, const char *what, MYSQL_RES **res,
                                 MYSQL_ROW *rowp)
{
    *res = NULL;
    MYSQL_RES *r = query(d, d->c0, sql, what);
    if (!r)
        return d->st;
    MYSQL_ROW row = mysql_fetch_row(r);
    MYSQL_FIELD *f = mysql_fetch_fields(r);
    unsigned n = mysql_num_fields(r);
    unsigned col = n;
    for (unsigned i = 0; i < n; i++)
        if (strcasecmp(f[i].name, col_name) == 0)
            col = i;
    if (!row || col == n || !row[col]) {
        mysql_free_result(r);
        return record(d, COFFER_ERR_AUTH, "cannot %s: the server returned no definition (missing privilege?)",
                      what);
    }
    *res = r;
    *rowp = row;
    return COFFER_OK;
}

static const char *field(MYSQL_RES *r, MYSQL_ROW row, const char *name)
{
    MYSQL_FIELD *f = mysql_fetch_fields(r);
    unsigned n = mysql_num_fields(r);
    for (unsigned i = 0; i < n; i++)
        if (strcasecmp(f[i].name, name) == 0)
            return row[i];
    return NULL;
}

/* SHOW CREATE qualifies same-schema names with the schema unless it is
 * the connection's default: select it, so definitions restore into
 * whatever schema they are loaded in (--map), never into the original. */
static coffer_status use_db(dctx *d, mdb *D)
{
    if (mysql_select_db(d->c0, D->name) != 0)
        return record_sql(d, d->c0, "cannot select database `%s`", D->name);
    return COFFER_OK;
}

static coffer_status dump_schema(worker *w, size_t di)
{
    dctx *d = w->d;
    mdb *D = &d->dbs[di];
    if (use_db(d, D))
        return d->st;
    char *name = dbmysql_printf("%s/schema.sql", D->enc);
    sstream s;
    dbmysql_out o;
    coffer_status st = open_out(w, 0, name, &s, &o);
    if (st) {
        free(name);
        return st;
    }
    char *qdb = qid(D->name);
    for (size_t i = D->first; i < D->first + D->ntables && st == COFFER_OK; i++) {
        mtable *t = &d->tables[i];
        char *qt = qid(t->name);
        char *sql = dbmysql_printf("SHOW CREATE TABLE %s.%s", qdb, qt);
        char what[600];
        snprintf(what, sizeof what, "read the definition of %s.%s", qdb, qt);
        MYSQL_RES *r = NULL;
        MYSQL_ROW row = NULL;
        st = show_create(d, sql, "Create Table", what, &r, &row);
        free(sql);
        free(qt);
        if (st)
            break;
        dbmysql_out_str(&o, field(r, row, "Create Table"));
        st = dbmysql_out_str(&o, ";\n\n");
        mysql_free_result(r);
        if (st)
            st = record(d, st, "cannot write dump stream %s", name);
    }
    free(qdb);
    st = close_out(d, name, &s, &o, st);
    free(name);
    return st;
}

/* One object in the post stream: session settings it was created with,
 * then its CREATE statement inside a DELIMITER block. */
static coffer_status post_object(dctx *d, dbmysql_out *o, const char *def, const char *sql_mode, const char *tz,
                                 const char *collation)
{
    MYSQL *m = d->c0;
    const char *delim = dbmysql_pick_delimiter(def);
    if (!delim)
        return record(d, COFFER_ERR_FAILED, "cannot find a DELIMITER for a definition");
    if (sql_mode) {
        char *l = dbmysql_sql_string(m, sql_mode);
        dbmysql_out_str(o, "SET SESSION sql_mode = ");
        dbmysql_out_str(o, l);
        dbmysql_out_str(o, ";\n");
        free(l);
    }
    if (tz) {
        char *l = dbmysql_sql_string(m, tz);
        dbmysql_out_str(o, "SET SESSION time_zone = ");
        dbmysql_out_str(o, l);
        dbmysql_out_str(o, ";\n");
        free(l);
    }
    if (collation) {
        char *l = dbmysql_sql_string(m, collation);
        dbmysql_out_str(o, "SET SESSION collation_connection = ");
        dbmysql_out_str(o, l);
        dbmysql_out_str(o, ";\n");
        free(l);
    }
    dbmysql_out_str(o, "DELIMITER ");
    dbmysql_out_str(o, delim);
    dbmysql_out_str(o, "\n");
    dbmysql_out_str(o, def);
    dbmysql_out_str(o, delim);
    dbmysql_out_str(o, "\nDELIMITER ;\n");
    if (sql_mode)
        dbmysql_out_str(o, "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION';\n");
    if (tz)
        dbmysql_out_str(o, "SET SESSION time_zone = '+00:00';\n");
    if (collation)
        dbmysql_out_str(o, "SET NAMES utf8mb4;\n");
    return dbmysql_out_str(o, "\n");
}

typedef struct view {
    char *name, *def;
    int done;
} view;

/* Views in an order where each comes after the views it selects from
 * (same-schema references are unqualified `name` in MariaDB and MySQL);
 * a cycle, which the server cannot have, falls back to name order. */
static coffer_status write_views(dbmysql_out *o, view *v, size_t n)
{
    size_t left = n;
    while (left) {
        size_t progress = 0;
        for (size_t i = 0; i < n; i++) {
            if (v[i].done)
                continue;
            int ready = 1;
            for (size_t k = 0; k < n && ready; k++) {
                if (k == i || v[k].done)
                    continue;
                char *q = qid(v[k].name);
                if (strstr(v[i].def, q))
                    ready = 0;
                free(q);
            }
            if (!ready)
                continue;
            dbmysql_out_str(o, v[i].def);
            dbmysql_out_str(o, ";\n\n");
            v[i].done = 1;
            left--;
            progress++;
        }
        if (!progress) { /* a cycle: write the rest in name order */
            for (size_t i = 0; i < n; i++)
                if (!v[i].done) {
                    dbmysql_out_str(o, v[i].def);
                    dbmysql_out_str(o, ";\n\n");
                    v[i].done = 1;
                    left--;
                }
        }
    }
    return o->st;
}

/* Routines, triggers and events: list the names (sql), read each one's
 * SHOW CREATE and post it with its own sql_mode, collation (and time zone
 * for events). A routine list has the type (PROCEDURE or FUNCTION) as its
 * first column; its noun, statement and column follow from it. */
typedef struct defn_kind {
    const char *plural;  /* "triggers" */
    const char *noun;    /* "trigger"; NULL for routines */
    const char *keyword; /* SHOW CREATE "TRIGGER" */
    const char *column;  /* "SQL Original Statement"; NULL for routines */
    int time_zone;
} defn_kind;

static coffer_status post_definitions(dctx *d, dbmysql_out *o, const mdb *D, const char *qdb, const char *sql,
                                      const defn_kind *k, unsigned *count)
{
    char what[600];
    snprintf(what, sizeof what, "list %s", k->plural);
    MYSQL_RES *r = query(d, d->c0, sql, what), *c = NULL;
    if (!r)
        return d->st;
    coffer_status st = COFFER_OK;
    MYSQL_ROW row;
    while (st == COFFER_OK && (row = mysql_fetch_row(r)) != NULL) {
        const char *type = k->noun ? NULL : row[0], *nm = k->noun ? row[0] : row[1];
        if (!nm || (!k->noun && !type))
            continue;
        const char *noun = k->noun, *column = k->column;
        if (!k->noun) {
            int fn = strcmp(type, "FUNCTION") == 0;
            if (!fn && strcmp(type, "PROCEDURE") != 0) {
                d->in->host->log(d->in->h, COFFER_LOG_WARN, "routine `%s`.`%s` of type %s is not dumped", D->name,
                                 nm, type);
                continue;
            }
            noun = fn ? "function" : "procedure";
            column = fn ? "Create Function" : "Create Procedure";
        }
        char *qn = qid(nm);
        char *q = dbmysql_printf("SHOW CREATE %s %s.%s", k->noun ? k->keyword : type, qdb, qn);
        snprintf(what, sizeof what, "read the definition of %s %s.%s", noun, qdb, qn);
        free(qn);
        MYSQL_ROW cr = NULL;
        st = show_create(d, q, column, what, &c, &cr);
        free(q);
        if (st)
            break;
        st = post_object(d, o, field(c, cr, column), field(c, cr, "sql_mode"),
                         k->time_zone ? field(c, cr, "time_zone") : NULL, field(c, cr, "collation_connection"));
        mysql_free_result(c);
        c = NULL;
        (*count)++;
    }
    mysql_free_result(r);
    return st;
}

static coffer_status dump_post(worker *w, size_t di)
{
    dctx *d = w->d;
    mdb *D = &d->dbs[di];
    if (use_db(d, D))
        return d->st;
    MYSQL *m = d->c0;
    char *name = dbmysql_printf("%s/post.sql", D->enc);
    sstream s;
    dbmysql_out o;
    coffer_status st = open_out(w, 0, name, &s, &o);
    if (st) {
        free(name);
        return st;
    }
    char *qdb = qid(D->name);
    char *l = dbmysql_sql_string(m, D->name);
    MYSQL_RES *r = NULL, *c = NULL;
    MYSQL_ROW row;
    view *views = NULL;
    size_t nviews = 0;

    /* views */
    char *sql = dbmysql_printf("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s"
                               " ORDER BY TABLE_NAME",
                               l);
    r = query(d, m, sql, "list views");
    free(sql);
    if (!r) {
        st = d->st;
        goto out;
    }
    views = calloc(mysql_num_rows(r) + 1, sizeof *views);
    while (views && (row = mysql_fetch_row(r)) != NULL) {
        if (!row[0])
            continue;
        char *qv = qid(row[0]);
        char *q = dbmysql_printf("SHOW CREATE VIEW %s.%s", qdb, qv);
        char what[600];
        snprintf(what, sizeof what, "read the definition of view %s.%s", qdb, qv);
        free(qv);
        MYSQL_ROW cr = NULL;
        st = show_create(d, q, "Create View", what, &c, &cr);
        free(q);
        if (st)
            break;
        views[nviews].name = strdup(row[0]);
        views[nviews].def = strdup(field(c, cr, "Create View"));
        nviews++;
        mysql_free_result(c);
        c = NULL;
    }
    mysql_free_result(r);
    r = NULL;
    if (st)
        goto out;
    if (!views) {
        st = record(d, COFFER_ERR_FATAL, "out of memory");
        goto out;
    }
    D->views = (unsigned)nviews;
    if ((st = write_views(&o, views, nviews)) != COFFER_OK)
        goto out;

    /* routines, then triggers in their firing order per table and event,
     * then events */
    static const defn_kind routines = {"routines", NULL, NULL, NULL, 0},
                           triggers = {"triggers", "trigger", "TRIGGER", "SQL Original Statement", 0},
                           events = {"events", "event", "EVENT", "Create Event", 1};
    sql = dbmysql_printf("SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES"
                         " WHERE ROUTINE_SCHEMA = %s ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
                         l);
    st = post_definitions(d, &o, D, qdb, sql, &routines, &D->routines);
    free(sql);
    if (st)
        goto out;
    sql = dbmysql_printf("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s"
                         " ORDER BY EVENT_OBJECT_TABLE, EVENT_MANIPULATION, ACTION_TIMING, ACTION_ORDER",
                         l);
    st = post_definitions(d, &o, D, qdb, sql, &triggers, &D->triggers);
    free(sql);
    if (st)
        goto out;
    sql = dbmysql_printf("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s"
                         " ORDER BY EVENT_NAME",
                         l);
    st = post_definitions(d, &o, D, qdb, sql, &events, &D->events);
    free(sql);
    if (st == COFFER_OK && o.st)
        st = record(d, o.st, "cannot write dump stream %s", name);
out:
    for (size_t i = 0; i < nviews; i++) {
        free(views[i].name);
        free(views[i].def);
    }
    free(views);
    if (c)
        mysql_free_result(c);
    if (r)
        mysql_free_result(r);
    free(l);
    free(qdb);
    st = close_out(d, name, &s, &o, st);
    free(name);
    return st;
}

/* ---- data ------------------------------------------------------------------------ */

static coffer_status dump_sequence(worker *w, mtable *t)
{
    dctx *d = w->d;
    MYSQL *m = w->m;
    mdb *D = &d->dbs[t->db];
    char *qdb = qid(D->name), *qt = qid(t->name);
    char *sql = dbmysql_printf("SELECT next_not_cached_value FROM %s.%s", qdb, qt);
    char val[64];
    unsigned e;
    int rc = dbmysql_scalar(m, sql, val, sizeof val, &e);
    free(sql);
    coffer_status st = COFFER_OK;
    if (rc != 0) {
        char msg[ERRLEN];
        st = dbmysql_fail_buf(m, "cannot read sequence", msg, sizeof msg);
        st = record(d, st, "%s %s.%s: %s", "sequence", qdb, qt, msg);
    }
    sstream s;
    dbmysql_out o;
    char *name = dbmysql_printf("%s/0.sql", t->stream);
    if (st == COFFER_OK && (st = open_out(w, 0, name, &s, &o)) == COFFER_OK) {
        dbmysql_out_str(&o, "DO SETVAL(");
        dbmysql_out_str(&o, qt);
        dbmysql_out_str(&o, ", ");
        dbmysql_out_str(&o, val);
        st = dbmysql_out_str(&o, ", 0);\n");
        st = close_out(d, name, &s, &o, st);
    }
    free(name);
    free(qdb);
    free(qt);
    return st;
}

/* The part streams of one table, opened on first use. */
typedef struct tparts {
    worker *w;
    mtable *t;
    sstream s[DBMYSQL_PARTS];
    dbmysql_out o[DBMYSQL_PARTS];
    char *name[DBMYSQL_PARTS]; /* set once opened */
} tparts;

static coffer_status open_part(void *ud, int part, dbmysql_out **out)
{
    tparts *tp = ud;
    char *name = dbmysql_printf("%s/%d.sql", tp->t->stream, part);
    coffer_status st = open_out(tp->w, part, name, &tp->s[part], &tp->o[part]);
    if (st) {
        free(name);
        return st;
    }
    tp->name[part] = name;
    *out = &tp->o[part];
    return COFFER_OK;
}

static coffer_status close_parts(tparts *tp, coffer_status st)
{
    for (int p = 0; p < DBMYSQL_PARTS; p++) {
        if (!tp->name[p])
            continue;
        st = close_out(tp->w->d, tp->name[p], &tp->s[p], &tp->o[p], st);
        free(tp->name[p]);
        tp->name[p] = NULL;
    }
    return st;
}

static coffer_status dump_table(worker *w, mtable *t)
{
    if (t->kind == K_SEQUENCE)
        return dump_sequence(w, t);
    dctx *d = w->d;
    MYSQL *m = w->m;
    dbmysql_instance *in = d->in;
    mdb *D = &d->dbs[t->db];
    char *qdb = qid(D->name), *qt = qid(t->name);
    coffer_status st = COFFER_OK;
    if (t->ncols == 0) {
        free(qdb);
        free(qt);
        return record(d, COFFER_ERR_FAILED, "table %s has no columns to dump (all generated?)", t->name);
    }
    /* SELECT `a`, `f` + 0e0, ... FROM `db`.`t` ORDER BY key;
     * INSERT INTO `t` (`a`, `f`, ...) VALUES */
    size_t cap = 256 + strlen(qdb) + 2 * strlen(qt);
    for (size_t i = 0; i < t->ncols; i++)
        cap += 2 * (2 * strlen(t->cols[i].name) + 12);
    for (size_t i = 0; i < t->nkey; i++)
        cap += 2 * strlen(t->key[i]) + 4;
    char *sel = malloc(cap), *ins = malloc(cap);
    if (!sel || !ins) {
        free(sel);
        free(ins);
        free(qdb);
        free(qt);
        return record(d, COFFER_ERR_FATAL, "out of memory");
    }
    size_t ls = (size_t)snprintf(sel, cap, "SELECT ");
    size_t li = (size_t)snprintf(ins, cap, "INSERT INTO %s (", qt);
    for (size_t i = 0; i < t->ncols; i++) {
        char *qc = qid(t->cols[i].name);
        ls += (size_t)snprintf(sel + ls, cap - ls, "%s%s%s", i ? ", " : "", qc, t->cols[i].is_float ? " + 0e0" : "");
        li += (size_t)snprintf(ins + li, cap - li, "%s%s", i ? "," : "", qc);
        free(qc);
    }
    ls += (size_t)snprintf(sel + ls, cap - ls, " FROM %s.%s", qdb, qt);
    for (size_t i = 0; i < t->nkey; i++) {
        char *qc = qid(t->key[i]);
        ls += (size_t)snprintf(sel + ls, cap - ls, "%s%s", i ? ", " : " ORDER BY ", qc);
        free(qc);
    }
    snprintf(ins + li, cap - li, ") VALUES\n");

    tparts tp = {.w = w, .t = t};
    MYSQL_RES *r = NULL;
    int aborted = 0;
    if (mysql_real_query(m, sel, strlen(sel)) != 0 || !(r = mysql_use_result(m))) {
        st = record_sql(d, m, "cannot read table %s.%s", qdb, qt);
        goto close;
    }
    unsigned n = mysql_num_fields(r);
    MYSQL_FIELD *f = mysql_fetch_fields(r);
    dbmysql_lit *kinds = calloc(n + 1, sizeof *kinds);
    if (!kinds) {
        dbmysql_abort(m);
        mysql_free_result(r);
        st = record(d, COFFER_ERR_FATAL, "out of memory");
        goto close;
    }
    for (unsigned i = 0; i < n; i++)
        kinds[i] = dbmysql_lit_of(f[i].type, f[i].charsetnr);
    dbmysql_batch b;
    dbmysql_batch_init(&b, ins, DBMYSQL_PARTS, open_part, &tp);
    MYSQL_ROW row;
    uint64_t rows = 0;
    while ((row = mysql_fetch_row(r)) != NULL) {
        unsigned long *len = mysql_fetch_lengths(r);
        if (dbmysql_batch_row_begin(&b) == COFFER_OK) {
            for (unsigned i = 0; i < n; i++) {
                if (i)
                    dbmysql_batch_sep(&b);
                dbmysql_out_literal(b.out, kinds[i], row[i], len[i], esc_cb, m);
            }
        }
        if (dbmysql_batch_row_end(&b) != COFFER_OK) {
            st = d->st ? d->st : record(d, b.st, "cannot write dump stream %s/*.sql", t->stream);
            aborted = 1;
            break;
        }
        if (++rows % CHECK_EVERY == 0) {
            if (in->host->cancelled(in->h)) {
                st = record(d, COFFER_ERR_CANCELLED, "dump cancelled");
                aborted = 1;
                break;
            }
            if (atomic_load(&d->stop)) {
                st = d->st ? d->st : COFFER_ERR_FAILED;
                aborted = 1;
                break;
            }
        }
    }
    if (!aborted && mysql_errno(m)) {
        st = record_sql(d, m, "reading table %s.%s failed after %" PRIu64 " rows", qdb, qt, rows);
        aborted = 1;
    }
    if (aborted) {
        /* Do not drain the rest of the table: make the connection fail
         * every further read, so the result is freed at once. */
        dbmysql_abort(m);
    } else if ((st = dbmysql_batch_finish(&b)) != COFFER_OK) {
        st = record(d, st, "cannot write dump stream %s/*.sql", t->stream);
    } else {
        t->rows = rows;
    }
    free(kinds);
    mysql_free_result(r);
close:
    st = close_parts(&tp, st);
    free(sel);
    free(ins);
    free(qdb);
    free(qt);
    return st;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    dctx *d = w->d;
    mysql_thread_init();
    for (;;) {
        pthread_mutex_lock(&d->mu);
        size_t i = d->next < d->nqueue && !atomic_load(&d->stop) ? d->queue[d->next++] : SIZE_MAX;
        pthread_mutex_unlock(&d->mu);
        if (i == SIZE_MAX)
            break;
        if (dump_table(w, &d->tables[i]) != COFFER_OK)
            break;
    }
    mysql_thread_end();
    return NULL;
}

static int cmp_size_desc(const void *a, const void *b, void *ud)
{
    const mtable *t = ud;
    const mtable *x = &t[*(const size_t *)a], *y = &t[*(const size_t *)b];
    if (x->size != y->size)
        return x->size > y->size ? -1 : 1;
    return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

/* ---- snapshot ------------------------------------------------------------------------ */

/* keep: the snapshot outlives the dump (query_snapshot) */
static coffer_status start_snapshot(dctx *d, MYSQL *m, int keep)
{
    if (dbmysql_exec(m, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ") != 0 ||
        dbmysql_exec(m, keep ? "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"
                             : "START TRANSACTION WITH CONSISTENT SNAPSHOT") != 0 ||
        (keep && dbmysql_exec(m, "SAVEPOINT coffer_snapshot") != 0))
        return record_sql(d, m, "cannot start a consistent snapshot");
    return COFFER_OK;
}

void dbmysql_snapshot_release(dbmysql_instance *in)
{
    if (in->snap) {
        /* COM_QUIT: the server ends the session, rolling the transaction
         * back, as soon as it reads it; nothing to wait for here, so a
         * server that stopped answering cannot hold up instance_free. */
        mysql_close(in->snap);
        in->snap = NULL;
    }
    in->snap_where[0] = 0;
    in->snap_lost = 0;
}

/* Did the core ask to keep this dump's snapshot? A 1.0 sink ends before
 * the member. */
static int keep_requested(const coffer_dump_sink *sink)
{
    return sink->struct_size >= offsetof(coffer_dump_sink, keep_snapshot) + sizeof(int) &&
           sink->keep_snapshot;
}

/* Hand c0, its transaction open, to the instance for query_snapshot. */
static coffer_status hand_over_snapshot(dctx *d)
{
    dbmysql_instance *in = d->in;
    MYSQL *m = d->c0;
    /* The database query_target would use; with none named, the first dumped. */
    const char *db = in->url.database ? in->url.database
                     : in->ndatabases ? in->databases[0]
                                      : d->dbs[0].name;
    if (dbmysql_exec(m, "ROLLBACK TO SAVEPOINT coffer_snapshot") != 0 ||
        mysql_select_db(m, db) != 0 || dbmysql_exec(m, "SET SESSION TRANSACTION READ ONLY") != 0 ||
        dbmysql_exec(m, "SET SESSION wait_timeout = GREATEST(@@wait_timeout, 86400)") != 0)
        return record_sql(d, m, "cannot keep the snapshot for queries");
    if (!(m->server_status & SERVER_STATUS_IN_TRANS))
        return record(d, COFFER_ERR_FAILED,
                      "cannot keep the snapshot for queries: its transaction has ended");
    for (size_t i = 0; i < d->ntables; i++)
        if (!d->tables[i].trans)
            in->host->log(
                in->h, COFFER_LOG_WARN,
                "table `%s`.`%s` (%s) is not transactional: queries on the snapshot read its "
                "current rows, not the dumped ones",
                d->dbs[d->tables[i].db].name, d->tables[i].name, d->tables[i].engine);
    dbmysql_url shown = in->url;
    shown.database = (char *)db;
    char where[600];
    dbmysql_url_describe(&shown, where, sizeof where);
    snprintf(in->snap_where, sizeof in->snap_where, "the snapshot of %s", where);
    in->snap = m;
    d->c0 = NULL;
    in->host->log(in->h, COFFER_LOG_INFO,
                  "keeping the snapshot open for queries until the backup ends (%s)", where);
    return COFFER_OK;
}

static coffer_status meta(dctx *d, const char *key, const char *value)
{
    coffer_status st = d->sink->meta(d->sink, key, value);
    if (st)
        return record(d, st, "cannot record metadata %s", key);
    return COFFER_OK;
}

static coffer_status emit_meta(dctx *d, const char *snapshot, const char *binlog_file, const char *binlog_pos,
                               uint64_t size)
{
    char buf[256];
    coffer_status st;
    if ((st = meta(d, "format", DBMYSQL_FORMAT)) || (st = meta(d, "server_version", mysql_get_server_info(d->c0))) ||
        (st = meta(d, "server", d->mariadb ? "MariaDB" : "MySQL")) || (st = meta(d, "snapshot", snapshot)))
        return st;
    snprintf(buf, sizeof buf, "%" PRIu64, size);
    if ((st = meta(d, "size", buf)))
        return st;
    if (binlog_file && *binlog_file && ((st = meta(d, "binlog_file", binlog_file)) || (st = meta(d, "binlog_position", binlog_pos))))
        return st;
    size_t total = 1;
    for (size_t i = 0; i < d->ndbs; i++)
        total += strlen(d->dbs[i].enc) + 1;
    char *list = calloc(1, total);
    if (!list)
        return record(d, COFFER_ERR_FATAL, "out of memory");
    for (size_t i = 0; i < d->ndbs; i++) {
        if (i)
            strcat(list, ",");
        strcat(list, d->dbs[i].enc);
    }
    st = meta(d, "databases", list);
    free(list);
    for (size_t i = 0; i < d->ndbs && st == COFFER_OK; i++) {
        mdb *D = &d->dbs[i];
        char *k = dbmysql_printf("charset.%s", D->name);
        st = meta(d, k, D->charset);
        free(k);
        if (st)
            break;
        k = dbmysql_printf("collation.%s", D->name);
        st = meta(d, k, D->collation);
        free(k);
        if (st)
            break;
        k = dbmysql_printf("objects.%s", D->name);
        snprintf(buf, sizeof buf, "tables=%zu sequences=%u views=%u routines=%u triggers=%u events=%u",
                 D->ntables - D->sequences, D->sequences, D->views, D->routines, D->triggers, D->events);
        st = meta(d, k, buf);
        free(k);
        for (size_t j = D->first; j < D->first + D->ntables && st == COFFER_OK; j++) {
            mtable *t = &d->tables[j];
            if (t->kind != K_TABLE)
                continue;
            k = dbmysql_printf("rows.%s.%s", D->name, t->name);
            snprintf(buf, sizeof buf, "%" PRIu64, t->rows);
            st = meta(d, k, buf);
            free(k);
            if (st == COFFER_OK && !t->trans) {
                k = dbmysql_printf("nontransactional.%s.%s", D->name, t->name);
                st = meta(d, k, t->engine);
                free(k);
            }
        }
    }
    return st;
}

static void dctx_free(dctx *d)
{
    for (size_t i = 0; i < d->ntables; i++) {
        mtable *t = &d->tables[i];
        free(t->name);
        for (size_t k = 0; k < t->ncols; k++)
            free(t->cols[k].name);
        free(t->cols);
        dbmysql_strv_free(t->key, t->nkey);
        free(t->stream);
    }
    free(d->tables);
    for (size_t i = 0; i < d->ndbs; i++) {
        free(d->dbs[i].name);
        free(d->dbs[i].enc);
    }
    free(d->dbs);
    free(d->queue);
    pthread_mutex_destroy(&d->mu);
}

coffer_status dbmysql_dump(void *instance, coffer_dump_sink *sink)
{
    dbmysql_instance *in = instance;
    dbmysql_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    /* A snapshot belongs to the last dump only, whatever becomes of this one. */
    dbmysql_snapshot_release(in);
    const coffer_host *host = in->host;
    if (host->cancelled(in->h))
        return host->error(in->h, COFFER_ERR_CANCELLED, "dump cancelled");
    char where[600];
    dbmysql_url_describe(&in->url, where, sizeof where);

    dctx d;
    memset(&d, 0, sizeof d);
    d.in = in;
    d.sink = sink;
    pthread_mutex_init(&d.mu, NULL);
    worker w[DBMYSQL_MAX_JOBS];
    memset(w, 0, sizeof w);
    int locked = 0, lock_used = 0, jobs = in->jobs;
    char snapshot[256], binlog_file[256] = "", binlog_pos[32] = "";
    uint64_t size = 0;
    int keep = keep_requested(sink);
    coffer_status st = dbmysql_connect(in, &in->url, NULL, &d.c0);
    if (st)
        goto out_reported;
    d.mariadb = strstr(mysql_get_server_info(d.c0), "MariaDB") != NULL;
    {
        char **names = NULL;
        size_t n = 0;
        if ((st = dbmysql_list_databases(in, d.c0, &names, &n)) != COFFER_OK)
            goto out_reported;
        d.dbs = calloc(n, sizeof *d.dbs);
        if (!d.dbs) {
            dbmysql_strv_free(names, n);
            st = record(&d, COFFER_ERR_FATAL, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            d.dbs[i].name = names[i];
            d.dbs[i].enc = dbmysql_name_encode(names[i]);
        }
        free(names);
        d.ndbs = n;
    }

    int need_lock = jobs > 1 || need_lock_for_engines(&d);
    /* Worker connections exist before the lock, so it is held only for
     * as long as starting the snapshots (and copying MyISAM tables) takes. */
    for (int i = 1; i < jobs; i++) {
        if ((st = dbmysql_connect(in, &in->url, NULL, &w[i].m)) != COFFER_OK)
            goto out_reported;
    }
    if (need_lock) {
        char *sql = dbmysql_printf("SET SESSION lock_wait_timeout = %d", in->lock_wait_timeout);
        unsigned e = dbmysql_exec(d.c0, sql);
        free(sql);
        if (!e)
            e = dbmysql_exec(d.c0, "FLUSH TABLES WITH READ LOCK");
        if (e && dbmysql_status_of(e) == COFFER_ERR_AUTH) {
            host->log(in->h, COFFER_LOG_WARN,
                      "FLUSH TABLES WITH READ LOCK refused (%s): the account lacks the RELOAD privilege; "
                      "dumping with one connection%s",
                      mysql_error(d.c0),
                      jobs > 1 ? "" : ", and non-transactional tables without a lock (they may be inconsistent)");
            for (int i = 1; i < jobs; i++) {
                mysql_close(w[i].m);
                w[i].m = NULL;
            }
            jobs = 1;
        } else if (e) {
            st = record_sql(&d, d.c0, "FLUSH TABLES WITH READ LOCK failed on %s (lock_wait_timeout %d s)", where,
                            in->lock_wait_timeout);
            goto out;
        } else {
            locked = lock_used = 1;
        }
    }
    for (int i = 1; i < jobs; i++)
        if ((st = start_snapshot(&d, w[i].m, 0)) != COFFER_OK)
            goto out;
    /* A kept snapshot is c0's: started, like the others, while the lock
     * (if any) holds writes. */
    if ((st = start_snapshot(&d, d.c0, keep)) != COFFER_OK)
        goto out;
    w[0].m = d.c0;
    for (int i = 0; i < jobs; i++) {
        w[i].d = &d;
        for (int p = 0; p < DBMYSQL_PARTS; p++)
            if (!(w[i].pipe[p] = dbmysql_pipe_new(host, in->h, DBMYSQL_OUT_CAP))) {
                st = record(&d, COFFER_ERR_FATAL, "cannot start a dump writer thread");
                goto out;
            }
    }
    {
        /* MariaDB reports the binary log position matching the snapshot
         * even without the lock; MySQL needs the lock (SHOW MASTER STATUS). */
        MYSQL_RES *r = NULL;
        if (mysql_query(d.c0, "SHOW STATUS LIKE 'binlog_snapshot_%'") == 0 && (r = mysql_store_result(d.c0))) {
            MYSQL_ROW row;
            while ((row = mysql_fetch_row(r)) != NULL) {
                if (row[0] && row[1] && strcasecmp(row[0], "Binlog_snapshot_file") == 0)
                    snprintf(binlog_file, sizeof binlog_file, "%s", row[1]);
                if (row[0] && row[1] && strcasecmp(row[0], "Binlog_snapshot_position") == 0)
                    snprintf(binlog_pos, sizeof binlog_pos, "%s", row[1]);
            }
            mysql_free_result(r);
        }
        if (!binlog_file[0] && locked && mysql_query(d.c0, "SHOW MASTER STATUS") == 0 &&
            (r = mysql_store_result(d.c0))) {
            MYSQL_ROW row = mysql_fetch_row(r);
            if (row && row[0] && row[1]) {
                snprintf(binlog_file, sizeof binlog_file, "%s", row[0]);
                snprintf(binlog_pos, sizeof binlog_pos, "%s", row[1]);
            }
            mysql_free_result(r);
        }
    }

    /* Schema as of the snapshot (DDL waits while the lock is held). */
    for (size_t i = 0; i < d.ndbs; i++)
        if ((st = discover_db(&d, i)) != COFFER_OK)
            goto out;
    for (size_t i = 0; i < d.ntables; i++)
        size += d.tables[i].size;
    for (size_t i = 0; i < d.ndbs; i++)
        if ((st = dump_schema(&w[0], i)) != COFFER_OK || (st = dump_post(&w[0], i)) != COFFER_OK)
            goto out;

    /* Non-transactional tables: copied while writes are held. */
    size_t nlocked = 0;
    for (size_t i = 0; i < d.ntables; i++) {
        mtable *t = &d.tables[i];
        if (t->trans)
            continue;
        host->log(in->h, COFFER_LOG_WARN,
                  "table `%s`.`%s` uses %s, which is not transactional: %s", d.dbs[t->db].name, t->name,
                  t->engine[0] ? t->engine : "an unknown engine",
                  locked ? "copied under FLUSH TABLES WITH READ LOCK (writes to every table wait meanwhile)"
                         : "copied WITHOUT a lock, it may not match the other tables");
        if ((st = dump_table(&w[0], t)) != COFFER_OK)
            goto out;
        nlocked++;
    }
    if (locked) {
        if (dbmysql_exec(d.c0, "UNLOCK TABLES") != 0) {
            st = record_sql(&d, d.c0, "UNLOCK TABLES failed");
            goto out;
        }
        locked = 0;
    }
    if (lock_used)
        snprintf(snapshot, sizeof snapshot,
                 "FLUSH TABLES WITH READ LOCK, START TRANSACTION WITH CONSISTENT SNAPSHOT on %d connection%s, "
                 "%zu non-transactional table%s copied under the lock",
                 jobs, jobs == 1 ? "" : "s", nlocked, nlocked == 1 ? "" : "s");
    else
        snprintf(snapshot, sizeof snapshot, "START TRANSACTION WITH CONSISTENT SNAPSHOT on 1 connection%s",
                 nlocked ? ", non-transactional tables copied WITHOUT a lock" : "");

    /* Transactional tables from the snapshots, largest first. */
    d.queue = calloc(d.ntables + 1, sizeof *d.queue);
    if (!d.queue) {
        st = record(&d, COFFER_ERR_FATAL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < d.ntables; i++)
        if (d.tables[i].trans)
            d.queue[d.nqueue++] = i;
    qsort_r(d.queue, d.nqueue, sizeof *d.queue, cmp_size_desc, d.tables);
    for (int i = 1; i < jobs; i++) {
        if (pthread_create(&w[i].th, NULL, worker_main, &w[i]) != 0) {
            record(&d, COFFER_ERR_FATAL, "cannot start dump thread");
            break;
        }
        w[i].started = 1;
    }
    worker_main(&w[0]);
    for (int i = 1; i < jobs; i++)
        if (w[i].started)
            pthread_join(w[i].th, NULL);
    st = d.st;
    if (st == COFFER_OK && host->cancelled(in->h))
        st = record(&d, COFFER_ERR_CANCELLED, "dump cancelled");
    if (st)
        goto out;
    for (int i = keep ? 1 : 0; i < jobs; i++) {
        MYSQL *m = i ? w[i].m : d.c0;
        if (dbmysql_exec(m, "COMMIT") != 0) {
            st = record_sql(&d, m, "cannot end the snapshot");
            goto out;
        }
    }
    st = emit_meta(&d, snapshot, binlog_file, binlog_pos, size);
    if (st == COFFER_OK) {
        uint64_t rows = 0;
        for (size_t i = 0; i < d.ntables; i++)
            rows += d.tables[i].rows;
        host->log(in->h, COFFER_LOG_INFO, "dumped %zu database%s, %zu tables, %" PRIu64 " rows from %s (%s)", d.ndbs,
                  d.ndbs == 1 ? "" : "s", d.ntables, rows, where, snapshot);
    }
    if (st == COFFER_OK && keep)
        st = hand_over_snapshot(&d);
out:
    if (st && d.err[0])
        host->error(in->h, st, "%s", d.err);
out_reported:
    if (locked && d.c0)
        dbmysql_exec(d.c0, "UNLOCK TABLES");
    for (int i = 0; i < DBMYSQL_MAX_JOBS; i++) {
        for (int p = 0; p < DBMYSQL_PARTS; p++)
            dbmysql_pipe_free(w[i].pipe[p]);
        if (i && w[i].m)
            mysql_close(w[i].m);
    }
    if (d.c0)
        mysql_close(d.c0);
    dctx_free(&d);
    return st;
}
