/*
 * database "mysql": verify a restore against its set. Every table's row
 * count must equal the "rows.<db>.<table>" the dump recorded (a table
 * missing on either side is a mismatch), and each database must hold the
 * views, routines, triggers and events the set had ("objects.<db>").
 * For a file:// target the file is read back: it must be complete (end
 * marker) and its INSERT statements must carry those row counts.
 * Each check is reported through the callback; COFFER_OK only if all pass.
 */
#include "db_mysql.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define END_MARK "-- coffer: end of dump\n"

typedef struct tcount {
    char *db, *table; /* db: the set's name */
    uint64_t rows;
    int seen;
} tcount;

typedef struct vctx {
    dbmysql_instance *in;
    coffer_check_cb cb;
    void *ud;
    int failed;
    tcount *t;
    size_t n, cap;
    dbmysql_plan *plan;
} vctx;

static void report(vctx *v, int ok, const char *check, const char *fmt, ...) COFFER_PRINTF(4, 5);

static void report(vctx *v, int ok, const char *check, const char *fmt, ...)
{
    char detail[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (!ok)
        v->failed++;
    if (v->cb)
        v->cb(v->ud, ok, check, detail);
}

static coffer_status add_count(vctx *v, const char *db, const char *table, uint64_t rows)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->t[i].db, db) == 0 && strcmp(v->t[i].table, table) == 0) {
            v->t[i].rows += rows;
            return COFFER_OK;
        }
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 64;
        tcount *t = realloc(v->t, cap * sizeof *t);
        if (!t)
            return v->in->host->error(v->in->h, COFFER_ERR_FATAL, "out of memory");
        v->t = t;
        v->cap = cap;
    }
    v->t[v->n++] = (tcount){strdup(db), strdup(table), rows, 0};
    return COFFER_OK;
}

/* Compare the collected counts with the set's rows.* metadata. */
static void check_rows(vctx *v, coffer_dump_source *src)
{
    dbmysql_plan *p = v->plan;
    for (size_t d = 0; d < p->n; d++) {
        size_t plen = 5 + strlen(p->src[d]) + 1;
        size_t nmeta = src->meta_count(src);
        for (size_t i = 0; i < nmeta; i++) {
            const char *key = src->meta_key(src, i);
            if (!key || strncmp(key, "rows.", 5) != 0 || strncmp(key + 5, p->src[d], plen - 6) != 0 ||
                key[plen - 1] != '.')
                continue;
            const char *table = key + plen;
            /* a longer database name sharing this prefix ("a" vs "a.b") */
            int other = 0;
            for (size_t k = 0; k < p->n && !other; k++)
                if (k != d && strlen(p->src[k]) > strlen(p->src[d]) && strncmp(key + 5, p->src[k], strlen(p->src[k])) == 0 &&
                    key[5 + strlen(p->src[k])] == '.')
                    other = 1;
            if (other)
                continue;
            const char *val = src->meta_get(src, key);
            char *end = NULL;
            long long want = val ? strtoll(val, &end, 10) : -1;
            if (!val || end == val || *end || want < 0) {
                report(v, 0, key, "recorded count '%s' is not a number", val ? val : "(null)");
                continue;
            }
            tcount *t = NULL;
            for (size_t j = 0; j < v->n && !t; j++)
                if (strcmp(v->t[j].db, p->src[d]) == 0 && strcmp(v->t[j].table, table) == 0)
                    t = &v->t[j];
            if (!t) {
                report(v, 0, key, "table `%s`.`%s` is missing (the dump had %lld rows)", p->dst[d], table, want);
                continue;
            }
            t->seen = 1;
            if ((long long)t->rows == want)
                report(v, 1, key, "%" PRIu64 " rows", t->rows);
            else
                report(v, 0, key, "table `%s`.`%s` has %" PRIu64 " rows, the dump had %lld", p->dst[d], table,
                       t->rows, want);
        }
    }
    for (size_t j = 0; j < v->n; j++) {
        if (v->t[j].seen)
            continue;
        char key[600];
        snprintf(key, sizeof key, "rows.%s.%s", v->t[j].db, v->t[j].table);
        report(v, 0, key, "table `%s` (%" PRIu64 " rows) was not in the dump", v->t[j].table, v->t[j].rows);
    }
}

/* ---- server target ------------------------------------------------------------------ */


static coffer_status count_server(vctx *v, MYSQL *m, size_t d)
{
    dbmysql_instance *in = v->in;
    dbmysql_plan *p = v->plan;
    char *l = dbmysql_sql_string(m, p->dst[d]);
    char *sql = dbmysql_printf("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
                               " AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY TABLE_NAME",
                               l);
    free(l);
    MYSQL_RES *r = NULL;
    int q = mysql_query(m, sql);
    free(sql);
    if (q != 0 || !(r = mysql_store_result(m)))
        return dbmysql_fail(in, m, "verify: cannot list tables");
    char *qdb = dbmysql_quote_ident(p->dst[d]);
    coffer_status st = COFFER_OK;
    MYSQL_ROW row;
    while (st == COFFER_OK && (row = mysql_fetch_row(r)) != NULL) {
        if (!row[0])
            continue;
        char *qt = dbmysql_quote_ident(row[0]);
        char *cnt = dbmysql_printf("SELECT COUNT(*) FROM %s.%s", qdb, qt);
        free(qt);
        char buf[32];
        unsigned e;
        if (dbmysql_scalar(m, cnt, buf, sizeof buf, &e) != 0) {
            char what[600];
            snprintf(what, sizeof what, "verify: cannot count rows of `%s`.`%s`", p->dst[d], row[0]);
            st = dbmysql_fail(in, m, what);
        } else {
            st = add_count(v, p->src[d], row[0], strtoull(buf, NULL, 10));
        }
        free(cnt);
        if (st == COFFER_OK && in->host->cancelled(in->h))
            st = in->host->error(in->h, COFFER_ERR_CANCELLED, "verify cancelled");
    }
    free(qdb);
    mysql_free_result(r);
    return st;
}

static void check_objects(vctx *v, MYSQL *m, coffer_dump_source *src, size_t d)
{
    dbmysql_plan *p = v->plan;
    char *key = dbmysql_printf("objects.%s", p->src[d]);
    const char *want = src->meta_get(src, key);
    if (!want) {
        free(key);
        return;
    }
    char *l = dbmysql_sql_string(m, p->dst[d]);
    char *sql = dbmysql_printf(
        "SELECT (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
        "         AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')),"
        " (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'SEQUENCE'),"
        " (SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s),"
        " (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s"
        "         AND ROUTINE_TYPE IN ('PROCEDURE', 'FUNCTION')),"
        " (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s),"
        " (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s)",
        l, l, l, l, l, l);
    free(l);
    MYSQL_RES *r = NULL;
    if (mysql_query(m, sql) == 0 && (r = mysql_store_result(m))) {
        MYSQL_ROW row = mysql_fetch_row(r);
        char have[256];
        snprintf(have, sizeof have, "tables=%s sequences=%s views=%s routines=%s triggers=%s events=%s",
                 row && row[0] ? row[0] : "?", row && row[1] ? row[1] : "?", row && row[2] ? row[2] : "?",
                 row && row[3] ? row[3] : "?", row && row[4] ? row[4] : "?", row && row[5] ? row[5] : "?");
        if (strcmp(have, want) == 0)
            report(v, 1, key, "%s", have);
        else
            report(v, 0, key, "`%s` has %s, the dump had %s", p->dst[d], have, want);
        mysql_free_result(r);
    } else {
        report(v, 0, key, "cannot count objects: %s", mysql_error(m));
    }
    free(sql);
    free(key);
}

/* ---- file target -------------------------------------------------------------------------- */

typedef struct fcount {
    dbmysql_instance *in;
    char *db;
    dbmysql_filecount_fn fn;
    void *ud;
} fcount;

/* The identifier at p (`quoted` or bare), malloc'd; *end after it. */
static char *ident(const char *p, const char **end)
{
    if (*p == '`') {
        size_t cap = strlen(p), k = 0;
        char *o = malloc(cap + 1);
        if (!o)
            return NULL;
        for (p++; *p; p++) {
            if (*p == '`') {
                if (p[1] == '`') {
                    o[k++] = '`';
                    p++;
                    continue;
                }
                o[k] = 0;
                *end = p + 1;
                return o;
            }
            o[k++] = *p;
        }
        free(o);
        return NULL;
    }
    const char *s = p;
    while (*p && *p != ' ' && *p != '\n' && *p != '(' && *p != ';' && *p != '\t')
        p++;
    *end = p;
    return p > s ? strndup(s, (size_t)(p - s)) : NULL;
}

static coffer_status file_stmt(void *ud, char *sql, size_t len)
{
    fcount *f = ud;
    const char *end = NULL;
    if (len > 4 && strncasecmp(sql, "USE ", 4) == 0) {
        char *db = ident(sql + 4, &end);
        if (db) {
            free(f->db);
            f->db = db;
        }
        return COFFER_OK;
    }
    if (len < 12 || strncasecmp(sql, "INSERT INTO ", 12) != 0)
        return COFFER_OK;
    char *table = ident(sql + 12, &end);
    if (!table)
        return COFFER_OK;
    /* One row per line: string literals never hold a raw newline. */
    uint64_t rows = 0;
    for (const char *p = sql; (p = memchr(p, '\n', len - (size_t)(p - sql))) != NULL; p++)
        if (p[1] == '(')
            rows++;
    coffer_status st = f->fn(f->ud, f->db ? f->db : "", table, rows);
    free(table);
    return st;
}

coffer_status dbmysql_count_file(dbmysql_instance *in, const char *path, dbmysql_filecount_fn fn, void *ud,
                                 int *complete)
{
    *complete = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return in->host->error(in->h, COFFER_ERR_NOT_FOUND, "cannot open %s: %m", path);
    off_t size = lseek(fd, 0, SEEK_END);
    char tail[sizeof END_MARK];
    size_t ml = sizeof END_MARK - 1;
    if (size >= (off_t)ml && pread(fd, tail, ml, size - (off_t)ml) == (ssize_t)ml && memcmp(tail, END_MARK, ml) == 0)
        *complete = 1;
    lseek(fd, 0, SEEK_SET);
    fcount f = {in, NULL, fn, ud};
    dbmysql_split sp;
    dbmysql_split_init(&sp, file_stmt, &f);
    char *buf = malloc(1u << 20);
    coffer_status st = buf ? COFFER_OK : in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    while (st == COFFER_OK) {
        ssize_t n = read(fd, buf, 1u << 20);
        if (n < 0) {
            st = in->host->error(in->h, COFFER_ERR_IO, "cannot read %s: %m", path);
            break;
        }
        if (n == 0) {
            st = dbmysql_split_end(&sp);
            break;
        }
        st = dbmysql_split_feed(&sp, buf, (size_t)n);
        if (st == COFFER_OK && in->host->cancelled(in->h))
            st = in->host->error(in->h, COFFER_ERR_CANCELLED, "verify cancelled");
    }
    if (st && sp.err[0])
        st = in->host->error(in->h, st, "%s: %s", path, sp.err);
    dbmysql_split_free(&sp);
    free(buf);
    free(f.db);
    close(fd);
    return st;
}

static coffer_status collect_file(void *ud, const char *db, const char *table, uint64_t rows)
{
    vctx *v = ud;
    /* file databases carry target names: map back to the set's */
    for (size_t i = 0; i < v->plan->n; i++)
        if (strcmp(v->plan->dst[i], db) == 0)
            return add_count(v, v->plan->src[i], table, rows);
    return add_count(v, db, table, rows);
}

coffer_status dbmysql_verify(void *instance, coffer_dump_source *src, const coffer_restore_opts *opts,
                             coffer_check_cb cb, void *ud)
{
    dbmysql_instance *in = instance;
    dbmysql_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    dbmysql_plan p;
    coffer_status st = dbmysql_plan_make(in, src, opts, &p);
    if (st)
        return st;
    vctx v = {.in = in, .cb = cb, .ud = ud, .plan = &p};
    if (p.to_file) {
        int complete = 0;
        st = dbmysql_count_file(in, p.file, collect_file, &v, &complete);
        if (st) {
            report(&v, 0, "sql_file", "%s cannot be read back", p.file);
            goto done;
        }
        if (complete)
            report(&v, 1, "sql_file", "%s is complete", p.file);
        else
            report(&v, 0, "sql_file", "%s lacks the end marker: truncated", p.file);
        /* tables without INSERTs (empty) still have a rows.* entry */
        for (size_t d = 0; d < p.n; d++) {
            size_t nmeta = src->meta_count(src);
            size_t plen = 5 + strlen(p.src[d]) + 1;
            for (size_t i = 0; i < nmeta; i++) {
                const char *key = src->meta_key(src, i);
                if (key && strncmp(key, "rows.", 5) == 0 && strncmp(key + 5, p.src[d], plen - 6) == 0 &&
                    key[plen - 1] == '.' && strcmp(src->meta_get(src, key), "0") == 0)
                    add_count(&v, p.src[d], key + plen, 0);
            }
        }
        check_rows(&v, src);
    } else {
        MYSQL *m = NULL;
        if ((st = dbmysql_connect(in, &p.url, NULL, &m)) != COFFER_OK) {
            report(&v, 0, "connect", "cannot connect to %s", p.where);
            goto done;
        }
        for (size_t d = 0; d < p.n && st == COFFER_OK; d++)
            st = count_server(&v, m, d);
        if (st == COFFER_OK) {
            check_rows(&v, src);
            for (size_t d = 0; d < p.n; d++)
                check_objects(&v, m, src, d);
        } else {
            report(&v, 0, "rows", "cannot count rows at %s", p.where);
        }
        mysql_close(m);
    }
    if (st == COFFER_OK && v.failed)
        st = in->host->error(in->h, COFFER_ERR_CORRUPT, "%s: %d verify check%s failed", p.where, v.failed,
                             v.failed == 1 ? "" : "s");
done:
    for (size_t i = 0; i < v.n; i++) {
        free(v.t[i].db);
        free(v.t[i].table);
    }
    free(v.t);
    dbmysql_plan_free(&p);
    return st;
}
