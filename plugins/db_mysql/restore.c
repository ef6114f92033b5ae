/*
 * database "mysql": restore a set into a server, or into a plain SQL file.
 *
 * Target (opts->target, the core's --map VALUE):
 *   NULL                          the policy's server and database names
 *   mysql://user@host:port[/db]   another server or schema; with /db the
 *                                 set's one database lands under that name
 *   file:///path/dump.sql[?database=NAME]
 *                                 a file for the stock client: `mysql < dump.sql`
 *
 * Into a server: every target database is checked first; a non-empty one
 * is refused unless --force, which drops and recreates it. A missing one
 * is created when opts->create allows, with the character set and
 * collation the set recorded. Then, for all databases, schemas, then
 * data (foreign_key_checks and unique_checks off, commits every few MB),
 * then views, routines, triggers and events (so no trigger fires during
 * the load). A failure leaves the target incomplete, and says so.
 */
#include "db_mysql.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mysqld_error.h>

#define READ_CHUNK (1u << 20)
#define COMMIT_EVERY (16u << 20) /* bytes of INSERTs between commits */

/* ---- plan ---------------------------------------------------------------------- */

void dbmysql_plan_free(dbmysql_plan *p)
{
    dbmysql_strv_free(p->src, p->n);
    dbmysql_strv_free(p->dst, p->n);
    free(p->file);
    dbmysql_url_free(&p->url);
    memset(p, 0, sizeof *p);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Databases of the set: meta "databases", else the first path element of
 * the stream names (sets written before that key existed). */
static coffer_status set_databases(dbmysql_instance *in, coffer_dump_source *src, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    const char *list = src->meta_get ? src->meta_get(src, "databases") : NULL;
    char **v = NULL;
    size_t k = 0;
    if (list && *list) {
        size_t cap = 1;
        for (const char *p = list; *p; p++)
            cap += *p == ',';
        v = calloc(cap, sizeof *v);
        const char *p = list;
        while (v) {
            const char *c = strchr(p, ',');
            size_t len = c ? (size_t)(c - p) : strlen(p);
            char *name = dbmysql_name_decode(p, len);
            if (!name || !*name) {
                free(name);
                dbmysql_strv_free(v, k);
                return in->host->error(in->h, COFFER_ERR_CORRUPT, "set metadata 'databases' is malformed");
            }
            v[k++] = name;
            if (!c)
                break;
            p = c + 1;
        }
    } else {
        size_t ns = src->stream_count(src);
        v = calloc(ns + 1, sizeof *v);
        for (size_t i = 0; v && i < ns; i++) {
            const char *s = src->stream_name(src, i);
            const char *slash = s ? strchr(s, '/') : NULL;
            if (!slash)
                continue;
            char *name = dbmysql_name_decode(s, (size_t)(slash - s));
            if (!name)
                continue;
            int dup = 0;
            for (size_t j = 0; j < k && !dup; j++)
                dup = strcmp(v[j], name) == 0;
            if (dup)
                free(name);
            else
                v[k++] = name;
        }
        if (v)
            qsort(v, k, sizeof *v, cmp_str);
    }
    if (!v)
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    if (k == 0) {
        free(v);
        return in->host->error(in->h, COFFER_ERR_CORRUPT, "the set holds no MySQL database streams");
    }
    *out = v;
    *n = k;
    return COFFER_OK;
}

coffer_status dbmysql_plan_make(dbmysql_instance *in, coffer_dump_source *src, const coffer_restore_opts *opts,
                                dbmysql_plan *p)
{
    memset(p, 0, sizeof *p);
    const char *fmt = src->meta_get ? src->meta_get(src, "format") : NULL;
    if (fmt && strcmp(fmt, DBMYSQL_FORMAT) != 0)
        return in->host->error(in->h, COFFER_ERR_UNSUPPORTED,
                               "the set's MySQL dump has format '%s'; this driver reads '%s'", fmt, DBMYSQL_FORMAT);
    coffer_status st = set_databases(in, src, &p->src, &p->n);
    if (st)
        return st;
    p->dst = calloc(p->n, sizeof *p->dst);
    if (!p->dst) {
        dbmysql_plan_free(p);
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    }
    const char *target = opts && opts->target && *opts->target ? opts->target : NULL;
    const char *rename = NULL;
    char err[300];
    char *file = NULL, *fdb = NULL;
    int isfile = target ? dbmysql_file_url(target, &file, &fdb, err, sizeof err) : 0;
    if (isfile < 0) {
        dbmysql_plan_free(p);
        return in->host->error(in->h, COFFER_ERR_INVALID, "restore target: %s", err);
    }
    if (isfile) {
        p->to_file = 1;
        p->file = file;
        rename = fdb;
        snprintf(p->where, sizeof p->where, "%s", file);
    } else {
        const char *u = target ? target : in->url_text;
        if (dbmysql_url_parse(u, &p->url, err, sizeof err) != 0) {
            dbmysql_plan_free(p);
            if (target && strncmp(target, "mysql://", 8) != 0 && strncmp(target, "mariadb://", 10) != 0)
                return in->host->error(in->h, COFFER_ERR_INVALID,
                                       "restore target '%s': expected mysql://user@host:port/database, "
                                       "mariadb://... or file:///path/dump.sql",
                                       target);
            return in->host->error(in->h, COFFER_ERR_INVALID, "restore target: %s", err);
        }
        /* The policy's own URL names the database it dumped (or none):
         * restore under the original names. A --map URL renames. */
        if (target)
            rename = p->url.database;
        dbmysql_url_describe(&p->url, p->where, sizeof p->where);
    }
    if (rename && p->n != 1) {
        coffer_status e = in->host->error(in->h, COFFER_ERR_INVALID,
                                          "restore target names database '%s', but the set holds %zu databases; "
                                          "omit the name to restore each under its own",
                                          rename, p->n);
        free(fdb);
        dbmysql_plan_free(p);
        return e;
    }
    for (size_t i = 0; i < p->n; i++)
        p->dst[i] = strdup(rename ? rename : p->src[i]);
    free(fdb);
    return COFFER_OK;
}

/* Streams of database `enc` in phase: "schema.sql", "data/", "post.sql".
 * Returns a malloc'd, sorted vector of names (borrowed from src). */
static const char **streams_of(coffer_dump_source *src, const char *enc, const char *what, size_t *n)
{
    size_t ns = src->stream_count(src), k = 0, el = strlen(enc), wl = strlen(what);
    const char **v = calloc(ns + 1, sizeof *v);
    if (!v)
        return NULL;
    for (size_t i = 0; i < ns; i++) {
        const char *s = src->stream_name(src, i);
        if (!s || strncmp(s, enc, el) != 0 || s[el] != '/')
            continue;
        const char *rest = s + el + 1;
        int match = what[wl - 1] == '/' ? strncmp(rest, what, wl) == 0 && rest[wl] : strcmp(rest, what) == 0;
        if (match)
            v[k++] = s;
    }
    qsort(v, k, sizeof *v, cmp_str);
    *n = k;
    return v;
}

/* ---- server target ---------------------------------------------------------------------- */

/* One loading connection. Errors are kept in err (the host's error slot
 * belongs to the calling thread) and reported by the main thread. */
typedef struct rctx {
    dbmysql_instance *in;
    coffer_dump_source *src;
    MYSQL *m;
    struct rshared *sh;
    const char *stream; /* being loaded, for messages */
    const char *db;     /* target database selected on m */
    size_t max;         /* largest statement the server accepts */
    char *buf;          /* READ_CHUNK bytes */
    uint64_t since_commit;
    int data;           /* loading a data stream: commit in batches */
    uint64_t statements, warnings;
    char first_warning[300];
    coffer_status st;
    char err[1024];
    pthread_t th;
    int started;
} rctx;

/* Data streams shared by the loading connections, largest first. */
typedef struct ritem {
    const char *name;
    size_t db;
    uint64_t size;
} ritem;

typedef struct rshared {
    dbmysql_plan *plan;
    ritem *items;
    size_t n, next;
    pthread_mutex_t mu;
    atomic_int stop;
} rshared;

static coffer_status rfail(rctx *r, coffer_status st, const char *fmt, ...) COFFER_PRINTF(3, 4);

static coffer_status rfail(rctx *r, coffer_status st, const char *fmt, ...)
{
    if (r->st == COFFER_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, sizeof r->err, fmt, ap);
        va_end(ap);
        r->st = st;
    }
    if (r->sh)
        atomic_store(&r->sh->stop, 1);
    return st;
}

static coffer_status rfail_sql(rctx *r, const char *what)
{
    char msg[1024];
    coffer_status st = dbmysql_fail_buf(r->m, what, msg, sizeof msg);
    return rfail(r, st, "%s", msg);
}

static coffer_status run_stmt(void *ud, char *sql, size_t len)
{
    rctx *r = ud;
    dbmysql_instance *in = r->in;
    if (mysql_real_query(r->m, sql, (unsigned long)len) != 0) {
        char what[700];
        snprintf(what, sizeof what, "restoring %s into `%s` failed (the database is incomplete) at \"%.60s%s\"",
                 r->stream, r->db, sql, len > 60 ? "..." : "");
        for (char *c = what; *c; c++)
            if (*c == '\n' || *c == '\r')
                *c = ' ';
        return rfail_sql(r, what);
    }
    do {
        MYSQL_RES *res = mysql_store_result(r->m);
        if (res)
            mysql_free_result(res);
    } while (mysql_next_result(r->m) == 0);
    if (mysql_errno(r->m))
        return rfail_sql(r, "restore: statement failed");
    r->statements++;
    unsigned w = mysql_warning_count(r->m);
    if (w) {
        MYSQL_RES *res = NULL;
        if (!r->warnings && mysql_query(r->m, "SHOW WARNINGS LIMIT 1") == 0 && (res = mysql_store_result(r->m))) {
            MYSQL_ROW row = mysql_fetch_row(res);
            if (row && mysql_num_fields(res) >= 3)
                snprintf(r->first_warning, sizeof r->first_warning, "%s %s: %s", row[0] ? row[0] : "",
                         row[1] ? row[1] : "", row[2] ? row[2] : "");
            mysql_free_result(res);
        }
        r->warnings += w;
    }
    if (r->data) {
        r->since_commit += len;
        if (r->since_commit >= COMMIT_EVERY) {
            if (dbmysql_exec(r->m, "COMMIT") != 0)
                return rfail_sql(r, "restore: COMMIT failed");
            r->since_commit = 0;
        }
    }
    if (in->host->cancelled(in->h))
        return rfail(r, COFFER_ERR_CANCELLED, "restore cancelled");
    if (r->sh && atomic_load(&r->sh->stop))
        return rfail(r, COFFER_ERR_CANCELLED, "stopped: another connection failed");
    return COFFER_OK;
}

/* Load one stream of the set through the statement splitter. */
static coffer_status load_stream(rctx *r, const char *name, int data)
{
    dbmysql_instance *in = r->in;
    coffer_dump_source *src = r->src;
    dbmysql_split sp;
    dbmysql_split_init(&sp, run_stmt, r);
    sp.max = r->max;
    r->stream = name;
    r->data = data;
    r->since_commit = 0;
    r->warnings = 0;
    r->first_warning[0] = 0;
    void *stream = NULL;
    coffer_status st = src->stream_open(src, name, &stream);
    if (st) {
        dbmysql_split_free(&sp);
        return rfail(r, st, "cannot open stream %s of the set", name);
    }
    for (;;) {
        size_t got = 0;
        if ((st = src->stream_read(stream, r->buf, READ_CHUNK, &got)) != COFFER_OK) {
            rfail(r, st, "cannot read stream %s of the set", name);
            break;
        }
        if (got == 0)
            break;
        in->host->progress(in->h, got);
        if ((st = dbmysql_split_feed(&sp, r->buf, got)) != COFFER_OK)
            break;
    }
    if (st == COFFER_OK)
        st = dbmysql_split_end(&sp);
    if (st && sp.err[0])
        rfail(r, st, "stream %s: %s", name, sp.err);
    src->stream_close(stream);
    dbmysql_split_free(&sp);
    if (st == COFFER_OK && data && dbmysql_exec(r->m, "COMMIT") != 0)
        st = rfail_sql(r, "restore: COMMIT failed");
    if (st == COFFER_OK && r->warnings)
        in->host->log(in->h, COFFER_LOG_WARN, "%s: %" PRIu64 " warning%s while loading into `%s` (first: %s)", name,
                      r->warnings, r->warnings == 1 ? "" : "s", r->db, r->first_warning);
    return st;
}

static coffer_status use_db(rctx *r, const char *db)
{
    if (r->db && strcmp(r->db, db) == 0)
        return COFFER_OK;
    if (mysql_select_db(r->m, db) != 0) {
        char what[600];
        snprintf(what, sizeof what, "cannot select the target database `%s`", db);
        return rfail_sql(r, what);
    }
    r->db = db;
    return COFFER_OK;
}

static void *data_worker(void *arg)
{
    rctx *r = arg;
    rshared *sh = r->sh;
    if (r->started)
        mysql_thread_init();
    for (;;) {
        pthread_mutex_lock(&sh->mu);
        size_t i = sh->next < sh->n && !atomic_load(&sh->stop) ? sh->next++ : SIZE_MAX;
        pthread_mutex_unlock(&sh->mu);
        if (i == SIZE_MAX)
            break;
        if (use_db(r, sh->plan->dst[sh->items[i].db]) != COFFER_OK ||
            load_stream(r, sh->items[i].name, 1) != COFFER_OK)
            break;
    }
    if (r->started)
        mysql_thread_end();
    return NULL;
}

static int cmp_item(const void *a, const void *b)
{
    const ritem *x = a, *y = b;
    if (x->size != y->size)
        return x->size > y->size ? -1 : 1;
    return strcmp(x->name, y->name);
}


/* Objects in database db: tables and views, routines, events. -1: absent. */
static int64_t db_objects(dbmysql_instance *in, MYSQL *m, const char *db, coffer_status *st)
{
    *st = COFFER_OK;
    char *l = dbmysql_sql_string(m, db);
    char *sql = dbmysql_printf(
        "SELECT (SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s),"
        " (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s)"
        " + (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s)"
        " + (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s)",
        l, l, l, l);
    free(l);
    int64_t n = -1;
    MYSQL_RES *r = NULL;
    if (mysql_query(m, sql) == 0 && (r = mysql_store_result(m))) {
        MYSQL_ROW row = mysql_fetch_row(r);
        if (row && row[0] && row[1])
            n = strcmp(row[0], "0") == 0 ? -1 : strtoll(row[1], NULL, 10);
        mysql_free_result(r);
    } else {
        char what[600];
        snprintf(what, sizeof what, "cannot inspect restore target database `%s`", db);
        *st = dbmysql_fail(in, m, what);
    }
    free(sql);
    return n;
}

static coffer_status exec_or_fail(dbmysql_instance *in, MYSQL *m, const char *sql, const char *what)
{
    if (dbmysql_exec(m, sql) != 0)
        return dbmysql_fail(in, m, what);
    return COFFER_OK;
}

#define SESSION_SETUP "SET SESSION foreign_key_checks = 0, unique_checks = 0"

/* Phase 2: every table's rows, over `jobs` connections. */
static coffer_status load_data(rctx *main, dbmysql_plan *p)
{
    dbmysql_instance *in = main->in;
    coffer_dump_source *src = main->src;
    size_t ns = src->stream_count(src);
    rshared sh = {.plan = p};
    sh.items = calloc(ns + 1, sizeof *sh.items);
    if (!sh.items)
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    for (size_t d = 0; d < p->n; d++) {
        char *enc = dbmysql_name_encode(p->src[d]);
        size_t el = strlen(enc);
        for (size_t i = 0; i < ns; i++) {
            const char *name = src->stream_name(src, i);
            if (name && strncmp(name, enc, el) == 0 && strncmp(name + el, "/data/", 6) == 0 && name[el + 6])
                sh.items[sh.n++] = (ritem){name, d, src->stream_size(src, i)};
        }
        free(enc);
    }
    qsort(sh.items, sh.n, sizeof *sh.items, cmp_item);
    pthread_mutex_init(&sh.mu, NULL);
    size_t nw = (size_t)in->jobs < sh.n ? (size_t)in->jobs : sh.n;
    if (nw < 1)
        nw = 1;
    rctx *w = calloc(nw, sizeof *w);
    coffer_status st = w ? COFFER_OK : in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    main->sh = &sh;
    for (size_t i = 1; i < nw && st == COFFER_OK; i++) {
        w[i] = (rctx){.in = in, .src = src, .sh = &sh, .max = main->max};
        if ((st = dbmysql_connect(in, &p->url, NULL, &w[i].m)) != COFFER_OK)
            break;
        if (!(w[i].buf = malloc(READ_CHUNK))) {
            st = in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
            break;
        }
        st = exec_or_fail(in, w[i].m, SESSION_SETUP ", autocommit = 0", "cannot set up a restore session");
    }
    if (st == COFFER_OK && dbmysql_exec(main->m, "SET SESSION autocommit = 0") != 0)
        st = dbmysql_fail(in, main->m, "cannot set up the restore session");
    if (st == COFFER_OK) {
        for (size_t i = 1; i < nw; i++) {
            w[i].started = 1;
            if (pthread_create(&w[i].th, NULL, data_worker, &w[i]) != 0) {
                w[i].started = 0;
                break;
            }
        }
        data_worker(main);
        for (size_t i = 1; i < nw; i++)
            if (w[i].started)
                pthread_join(w[i].th, NULL);
        /* The first real failure (not a "stopped" echo of it) is reported. */
        rctx *bad = main->st && main->st != COFFER_ERR_CANCELLED ? main : NULL;
        for (size_t i = 1; i < nw && !bad; i++)
            if (w[i].st && w[i].st != COFFER_ERR_CANCELLED)
                bad = &w[i];
        for (size_t i = 1; i < nw && !bad; i++)
            if (w[i].st)
                bad = &w[i];
        if (!bad && main->st)
            bad = main;
        if (bad)
            st = in->host->error(in->h, bad->st, "%s", bad->err);
        for (size_t i = 1; i < nw; i++)
            main->statements += w[i].statements;
    }
    if (st == COFFER_OK && dbmysql_exec(main->m, "SET SESSION autocommit = 1") != 0)
        st = dbmysql_fail(in, main->m, "cannot set up the restore session");
    for (size_t i = 1; w && i < nw; i++) {
        if (w[i].m)
            mysql_close(w[i].m);
        free(w[i].buf);
    }
    free(w);
    main->sh = NULL;
    pthread_mutex_destroy(&sh.mu);
    free(sh.items);
    return st;
}

static coffer_status restore_server(dbmysql_instance *in, coffer_dump_source *src, const coffer_restore_opts *opts,
                                    dbmysql_plan *p)
{
    MYSQL *m = NULL;
    coffer_status st = dbmysql_connect(in, &p->url, NULL, &m);
    if (st)
        return st;
    int force = opts && opts->force, create = !opts || opts->create;
    int64_t *objs = calloc(p->n, sizeof *objs);
    rctx r = {.in = in, .src = src, .m = m};
    r.buf = malloc(READ_CHUNK);
    if (!objs || !r.buf) {
        st = in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
        goto done;
    }
    /* Refuse before touching anything. */
    for (size_t i = 0; i < p->n; i++) {
        objs[i] = db_objects(in, m, p->dst[i], &st);
        if (st)
            goto done;
        if (objs[i] > 0 && !force) {
            st = in->host->error(in->h, COFFER_ERR_EXISTS,
                                 "restore target database `%s` on %s is not empty (%" PRId64
                                 " tables, views, routines or events); use --force to replace it, "
                                 "or --map the database to an empty one",
                                 p->dst[i], p->where, objs[i]);
            goto done;
        }
        if (objs[i] < 0 && !create) {
            st = in->host->error(in->h, COFFER_ERR_NOT_FOUND, "restore target database `%s` does not exist on %s",
                                 p->dst[i], p->where);
            goto done;
        }
    }
    if (!opts || !opts->target || !*opts->target)
        in->host->log(in->h, COFFER_LOG_WARN,
                      "no --map for this database: restoring into the server and database%s the policy names (%s)",
                      p->n == 1 ? "" : "s", p->where);
    char maxbuf[32];
    unsigned e;
    if (dbmysql_scalar(m, "SELECT @@max_allowed_packet", maxbuf, sizeof maxbuf, &e) == 0)
        r.max = (size_t)strtoull(maxbuf, NULL, 10);
    for (size_t i = 0; i < p->n; i++) {
        char *q = dbmysql_quote_ident(p->dst[i]);
        char *ck = dbmysql_printf("charset.%s", p->src[i]), *ok = dbmysql_printf("collation.%s", p->src[i]);
        const char *cs = src->meta_get(src, ck), *co = src->meta_get(src, ok);
        free(ck);
        free(ok);
        char *opts_sql = NULL;
        if (cs && *cs && co && *co) {
            char *lcs = dbmysql_sql_string(m, cs), *lco = dbmysql_sql_string(m, co);
            opts_sql = dbmysql_printf(" CHARACTER SET %s COLLATE %s", lcs, lco);
            free(lcs);
            free(lco);
        } else {
            opts_sql = strdup("");
        }
        char *sql = NULL;
        if (objs[i] > 0) {
            in->host->log(in->h, COFFER_LOG_WARN, "--force: dropping database `%s` on %s (%" PRId64 " objects) to replace it",
                          p->dst[i], p->where, objs[i]);
            sql = dbmysql_printf("DROP DATABASE %s", q);
            st = exec_or_fail(in, m, sql, "cannot drop the database to replace");
            free(sql);
            objs[i] = -1;
        }
        if (st == COFFER_OK) {
            sql = objs[i] < 0 ? dbmysql_printf("CREATE DATABASE %s%s", q, opts_sql)
                              : dbmysql_printf("ALTER DATABASE %s%s", q, opts_sql);
            st = *opts_sql || objs[i] < 0 ? exec_or_fail(in, m, sql, "cannot create the target database") : COFFER_OK;
            free(sql);
        }
        free(opts_sql);
        free(q);
        if (st)
            goto done;
    }
    if ((st = exec_or_fail(in, m, SESSION_SETUP, "cannot set up the restore session")))
        goto done;

    /* Schemas, then data, then views/routines/triggers/events, each
     * phase across all databases (a view may read another database). */
    static const char *const phase[] = {"schema.sql", NULL, "post.sql"};
    for (int ph = 0; ph < 3 && st == COFFER_OK; ph++) {
        if (ph == 1) {
            st = load_data(&r, p);
            continue;
        }
        for (size_t i = 0; i < p->n && st == COFFER_OK; i++) {
            char *enc = dbmysql_name_encode(p->src[i]);
            size_t ns = 0;
            const char **names = streams_of(src, enc, phase[ph], &ns);
            if (!names)
                st = in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
            else if (ns == 0)
                st = in->host->error(in->h, COFFER_ERR_CORRUPT, "the set has no stream %s/%s", enc, phase[ph]);
            if (st == COFFER_OK && use_db(&r, p->dst[i]) != COFFER_OK)
                st = in->host->error(in->h, r.st, "%s", r.err);
            for (size_t k = 0; k < ns && st == COFFER_OK; k++)
                if (load_stream(&r, names[k], 0) != COFFER_OK)
                    st = in->host->error(in->h, r.st, "%s", r.err);
            free(names);
            free(enc);
        }
    }
    if (st == COFFER_OK)
        st = exec_or_fail(in, m, "SET SESSION foreign_key_checks = 1, unique_checks = 1", "cannot finish the restore");
    if (st == COFFER_OK)
        in->host->log(in->h, COFFER_LOG_INFO, "restored %zu database%s into %s (%" PRIu64 " statements, %d connection%s)",
                      p->n, p->n == 1 ? "" : "s", p->where, r.statements, in->jobs, in->jobs == 1 ? "" : "s");
done:
    free(objs);
    free(r.buf);
    mysql_close(m);
    return st;
}

/* ---- file target ----------------------------------------------------------------------------- */

typedef struct fout {
    int fd;
    const char *path;
    dbmysql_instance *in;
} fout;

static coffer_status fd_write(void *ud, const void *buf, size_t len)
{
    fout *f = ud;
    const char *p = buf;
    while (len) {
        ssize_t w = write(f->fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int err = errno;
            return f->in->host->error(f->in->h, err == ENOSPC || err == EDQUOT ? COFFER_ERR_NO_SPACE : COFFER_ERR_IO,
                                      "cannot write %s: %s", f->path, strerror(err));
        }
        p += w;
        len -= (size_t)w;
    }
    return COFFER_OK;
}

static coffer_status copy_stream(dbmysql_instance *in, coffer_dump_source *src, const char *name, dbmysql_out *o,
                                 char *buf)
{
    void *stream = NULL;
    coffer_status st = src->stream_open(src, name, &stream);
    if (st)
        return in->host->error(in->h, st, "cannot open stream %s of the set", name);
    for (;;) {
        size_t got = 0;
        if ((st = src->stream_read(stream, buf, READ_CHUNK, &got)) != COFFER_OK) {
            st = in->host->error(in->h, st, "cannot read stream %s of the set", name);
            break;
        }
        if (got == 0)
            break;
        in->host->progress(in->h, got);
        if ((st = dbmysql_out_put(o, buf, got)) != COFFER_OK)
            break;
        if (in->host->cancelled(in->h)) {
            st = in->host->error(in->h, COFFER_ERR_CANCELLED, "restore cancelled");
            break;
        }
    }
    src->stream_close(stream);
    return st;
}

/* Escape for the file (no connection): the same bytes
 * mysql_real_escape_string writes for utf8mb4. */
static char *file_lit(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(2 * n + 3), *w = o;
    if (!o)
        return NULL;
    *w++ = '\'';
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        switch (c) {
        case '\n': *w++ = '\\'; *w++ = 'n'; break;
        case '\r': *w++ = '\\'; *w++ = 'r'; break;
        case '\032': *w++ = '\\'; *w++ = 'Z'; break;
        case '\\': case '\'': case '"': *w++ = '\\'; *w++ = c; break;
        default: *w++ = c;
        }
    }
    *w++ = '\'';
    *w = 0;
    return o;
}

static int mkdir_parents(const char *path)
{
    char *d = strdup(path);
    if (!d)
        return ENOMEM;
    char *slash = strrchr(d, '/');
    int err = 0;
    if (slash && slash != d) {
        *slash = 0;
        for (char *p = d + 1;; p++) {
            if (*p != '/' && *p)
                continue;
            char c = *p;
            *p = 0;
            if (mkdir(d, 0755) != 0 && errno != EEXIST) {
                err = errno;
                break;
            }
            *p = c;
            if (!c)
                break;
        }
    }
    free(d);
    return err;
}

static coffer_status restore_file(dbmysql_instance *in, coffer_dump_source *src, const coffer_restore_opts *opts,
                                  dbmysql_plan *p)
{
    int force = opts && opts->force;
    struct stat sb;
    if (stat(p->file, &sb) == 0) {
        if (!S_ISREG(sb.st_mode))
            return in->host->error(in->h, COFFER_ERR_INVALID, "restore target %s exists and is not a regular file",
                                   p->file);
        if (sb.st_size > 0 && !force)
            return in->host->error(in->h, COFFER_ERR_EXISTS, "restore target %s exists and is not empty; use --force",
                                   p->file);
    }
    int err = mkdir_parents(p->file);
    if (err)
        return in->host->error(in->h, COFFER_ERR_IO, "cannot create the directory of %s: %s", p->file, strerror(err));
    char *tmp = dbmysql_printf("%s.coffer-XXXXXX", p->file);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        err = errno;
        free(tmp);
        return in->host->error(in->h, err == ENOSPC ? COFFER_ERR_NO_SPACE : COFFER_ERR_IO,
                               "cannot create a temporary file beside %s: %s", p->file, strerror(err));
    }
    fchmod(fd, 0600); /* a dump holds the application's data */
    fout f = {fd, p->file, in};
    dbmysql_out o;
    char *buf = malloc(READ_CHUNK);
    coffer_status st = COFFER_OK;
    if (!buf || dbmysql_out_init(&o, DBMYSQL_OUT_CAP, fd_write, &f) != 0) {
        free(buf);
        close(fd);
        unlink(tmp);
        free(tmp);
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    }
    const char *ver = src->meta_get(src, "server_version");
    char *hdr = dbmysql_printf(
        "-- coffer: MySQL/MariaDB dump (format %s) of %s\n"
        "-- Load it with the stock client: mysql [connection options] < this-file\n"
        "-- It creates the database(s) below when missing; their tables must not exist yet.\n"
        "SET NAMES utf8mb4;\n"
        "SET SESSION time_zone = '+00:00';\n"
        "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION';\n"
        "SET SESSION foreign_key_checks = 0;\n"
        "SET SESSION unique_checks = 0;\n\n",
        DBMYSQL_FORMAT, ver ? ver : "an unknown server");
    dbmysql_out_str(&o, hdr);
    free(hdr);
    static const char *const phase[] = {"schema.sql", "data/", "post.sql"};
    for (int ph = 0; ph < 3 && st == COFFER_OK; ph++) {
        for (size_t i = 0; i < p->n && st == COFFER_OK; i++) {
            char *enc = dbmysql_name_encode(p->src[i]);
            char *q = dbmysql_quote_ident(p->dst[i]);
            if (ph == 0) {
                char *ck = dbmysql_printf("charset.%s", p->src[i]), *ok = dbmysql_printf("collation.%s", p->src[i]);
                const char *cs = src->meta_get(src, ck), *co = src->meta_get(src, ok);
                dbmysql_out_str(&o, "CREATE DATABASE IF NOT EXISTS ");
                dbmysql_out_str(&o, q);
                if (cs && *cs && co && *co) {
                    char *lcs = file_lit(cs), *lco = file_lit(co);
                    dbmysql_out_str(&o, " CHARACTER SET ");
                    dbmysql_out_str(&o, lcs);
                    dbmysql_out_str(&o, " COLLATE ");
                    dbmysql_out_str(&o, lco);
                    free(lcs);
                    free(lco);
                }
                dbmysql_out_str(&o, ";\n");
                free(ck);
                free(ok);
            }
            dbmysql_out_str(&o, "USE ");
            dbmysql_out_str(&o, q);
            dbmysql_out_str(&o, ";\n\n");
            free(q);
            size_t ns = 0;
            const char **names = streams_of(src, enc, phase[ph], &ns);
            if (!names)
                st = in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
            else if (ph != 1 && ns == 0)
                st = in->host->error(in->h, COFFER_ERR_CORRUPT, "the set has no stream %s/%s", enc, phase[ph]);
            if (!st && ph == 1)
                st = dbmysql_out_str(&o, "SET SESSION autocommit = 0;\n");
            for (size_t k = 0; k < ns && st == COFFER_OK; k++) {
                st = copy_stream(in, src, names[k], &o, buf);
                if (!st && ph == 1)
                    st = dbmysql_out_str(&o, "COMMIT;\n");
            }
            if (!st && ph == 1)
                st = dbmysql_out_str(&o, "SET SESSION autocommit = 1;\n\n");
            free(names);
            free(enc);
        }
    }
    if (st == COFFER_OK) {
        dbmysql_out_str(&o, "SET SESSION foreign_key_checks = 1;\nSET SESSION unique_checks = 1;\n"
                            "-- coffer: end of dump\n");
        st = dbmysql_out_flush(&o);
    }
    if (st == COFFER_OK && o.st)
        st = o.st;
    if (st == COFFER_OK && fsync(fd) != 0)
        st = in->host->error(in->h, COFFER_ERR_IO, "cannot flush %s: %s", tmp, strerror(errno));
    if (close(fd) != 0 && st == COFFER_OK)
        st = in->host->error(in->h, COFFER_ERR_IO, "cannot close %s: %s", tmp, strerror(errno));
    if (st == COFFER_OK && rename(tmp, p->file) != 0)
        st = in->host->error(in->h, COFFER_ERR_IO, "cannot rename %s to %s: %s", tmp, p->file, strerror(errno));
    if (st != COFFER_OK)
        unlink(tmp);
    else
        in->host->log(in->h, COFFER_LOG_INFO, "wrote %s (%" PRIu64 " bytes); load it with: mysql < %s", p->file,
                      o.total, p->file);
    dbmysql_out_free(&o);
    free(buf);
    free(tmp);
    return st;
}

coffer_status dbmysql_restore(void *instance, coffer_dump_source *src, const coffer_restore_opts *opts)
{
    dbmysql_instance *in = instance;
    dbmysql_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    dbmysql_plan p;
    coffer_status st = dbmysql_plan_make(in, src, opts, &p);
    if (st)
        return st;
    st = p.to_file ? restore_file(in, src, opts, &p) : restore_server(in, src, opts, &p);
    dbmysql_plan_free(&p);
    return st;
}
