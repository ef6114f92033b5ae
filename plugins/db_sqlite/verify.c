/*
 * database "sqlite": verify a restored database against its set:
 * integrity_check (the file is sound), foreign_key_check (references
 * hold even if the application never turned foreign_keys on), and the row
 * count of every table against the "rows.<table>" metadata of the dump (a
 * table missing on either side is a mismatch). Each check is reported
 * through the callback; the result is COFFER_OK only if all passed.
 */
#include "db_sqlite.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DETAIL_MAX 512

typedef struct table_count {
    char *name;
    int64_t rows;
    int seen; /* matched by a rows.<table> entry */
} table_count;

typedef struct verify_ctx {
    dbsqlite_instance *in;
    coffer_check_cb cb;
    void *ud;
    int failed;
    table_count *tables;
    size_t ntables, cap;
} verify_ctx;

static void report(verify_ctx *v, int ok, const char *check, const char *fmt, ...) COFFER_PRINTF(4, 5);

static void report(verify_ctx *v, int ok, const char *check, const char *fmt, ...)
{
    char detail[DETAIL_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (!ok)
        v->failed++;
    if (v->cb)
        v->cb(v->ud, ok, check, detail);
}

/* Returns 0 when the file could be read at all. */
static int check_integrity(verify_ctx *v, sqlite3 *db, const char *path)
{
    sqlite3_stmt *s = NULL;
    char detail[DETAIL_MAX] = "";
    size_t len = 0;
    int rows = 0, ok = 0;
    int rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check(20)", -1, &s, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        const char *t = (const char *)sqlite3_column_text(s, 0);
        if (rows++ == 0 && t && strcmp(t, "ok") == 0)
            ok = 1;
        /* One row may hold several '\n'-separated messages: keep one line. */
        for (const char *p = t; p && *p && rows <= 3 && len < sizeof detail - 3; p++) {
            if (p == t && rows > 1) {
                detail[len++] = ';';
                detail[len++] = ' ';
            }
            if (*p == '\n') {
                detail[len++] = ';';
                detail[len++] = ' ';
            } else {
                detail[len++] = *p;
            }
        }
        detail[len] = 0;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        report(v, 0, "integrity_check", "%s: %s", path, sqlite3_errmsg(db));
        return -1;
    }
    if (ok && rows == 1)
        report(v, 1, "integrity_check", "ok");
    else
        report(v, 0, "integrity_check", "%s: %s%s", path, detail, rows > 3 ? "; ..." : "");
    return 0;
}

static void check_foreign_keys(verify_ctx *v, sqlite3 *db, const char *path)
{
    /* Rows come grouped by table; count per (table, parent). */
    sqlite3_stmt *s = NULL;
    char table[256] = "", parent[256] = "";
    int64_t n = 0, total = 0;
    int rc = sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &s, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        const char *t = (const char *)sqlite3_column_text(s, 0);
        const char *p = (const char *)sqlite3_column_text(s, 2);
        t = t ? t : "";
        p = p ? p : "";
        if (n && (strcmp(t, table) != 0 || strcmp(p, parent) != 0)) {
            report(v, 0, "foreign_key_check", "%s: %" PRId64 " rows reference missing rows of %s", table, n, parent);
            n = 0;
        }
        snprintf(table, sizeof table, "%s", t);
        snprintf(parent, sizeof parent, "%s", p);
        n++;
        total++;
    }
    sqlite3_finalize(s);
    if (n)
        report(v, 0, "foreign_key_check", "%s: %" PRId64 " rows reference missing rows of %s", table, n, parent);
    if (rc != SQLITE_DONE)
        report(v, 0, "foreign_key_check", "%s: %s", path, sqlite3_errmsg(db));
    else if (total == 0)
        report(v, 1, "foreign_key_check", "no violations");
}

static coffer_status collect(void *ud, const char *table, int64_t rows)
{
    verify_ctx *v = ud;
    if (v->ntables == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 32;
        table_count *t = realloc(v->tables, cap * sizeof *t);
        if (!t)
            return v->in->host->error(v->in->h, COFFER_ERR_FATAL, "out of memory");
        v->tables = t;
        v->cap = cap;
    }
    char *name = strdup(table);
    if (!name)
        return v->in->host->error(v->in->h, COFFER_ERR_FATAL, "out of memory");
    v->tables[v->ntables++] = (table_count){name, rows, 0};
    return COFFER_OK;
}

static void check_rows(verify_ctx *v, coffer_dump_source *src)
{
    size_t nmeta = src->meta_count ? src->meta_count(src) : 0;
    for (size_t i = 0; i < nmeta; i++) {
        const char *key = src->meta_key(src, i);
        if (!key || strncmp(key, "rows.", 5) != 0)
            continue;
        const char *table = key + 5;
        const char *val = src->meta_get(src, key);
        char *end = NULL;
        long long want = val ? strtoll(val, &end, 10) : -1;
        if (!val || end == val || *end || want < 0) {
            report(v, 0, key, "recorded count '%s' is not a number", val ? val : "(null)");
            continue;
        }
        table_count *t = NULL;
        for (size_t j = 0; j < v->ntables && !t; j++)
            if (strcmp(v->tables[j].name, table) == 0)
                t = &v->tables[j];
        if (!t) {
            report(v, 0, key, "table %s is missing (the dump had %lld rows)", table, want);
            continue;
        }
        t->seen = 1;
        if (t->rows == want)
            report(v, 1, key, "%" PRId64 " rows", t->rows);
        else
            report(v, 0, key, "table %s has %" PRId64 " rows, the dump had %lld", t->name, t->rows, want);
    }
    for (size_t j = 0; j < v->ntables; j++) {
        if (v->tables[j].seen)
            continue;
        char key[300];
        snprintf(key, sizeof key, "rows.%s", v->tables[j].name);
        report(v, 0, key, "table %s (%" PRId64 " rows) was not in the dump", v->tables[j].name, v->tables[j].rows);
    }
}

coffer_status dbsqlite_verify(void *instance, coffer_dump_source *src, const coffer_restore_opts *opts,
                              coffer_check_cb cb, void *ud)
{
    dbsqlite_instance *in = instance;
    dbsqlite_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    verify_ctx v = {.in = in, .cb = cb, .ud = ud};
    char *target = dbsqlite_target(in, opts);
    if (!target)
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    sqlite3 *db = NULL;
    coffer_status st = dbsqlite_open_restored(in, target, &db);
    if (st) {
        report(&v, 0, "open", "%s: %s", target, st == COFFER_ERR_NOT_FOUND ? "does not exist" : "cannot open");
        goto done;
    }
    if (check_integrity(&v, db, target) != 0) {
        st = in->host->error(in->h, COFFER_ERR_CORRUPT, "%s is not a readable SQLite database: %s", target,
                             sqlite3_errmsg(db));
        goto done;
    }
    check_foreign_keys(&v, db, target);
    if (in->host->cancelled(in->h)) {
        st = in->host->error(in->h, COFFER_ERR_CANCELLED, "verify of %s cancelled", target);
        goto done;
    }
    st = dbsqlite_count_rows(in, db, target, collect, &v);
    if (st == COFFER_OK)
        check_rows(&v, src);
    else
        report(&v, 0, "rows", "%s: cannot count rows", target);
    if (st == COFFER_OK && v.failed)
        st = in->host->error(in->h, COFFER_ERR_CORRUPT, "%s: %d verify check%s failed", target, v.failed,
                             v.failed == 1 ? "" : "s");
done:
    sqlite3_close(db);
    for (size_t j = 0; j < v.ntables; j++)
        free(v.tables[j].name);
    free(v.tables);
    free(target);
    return st;
}
