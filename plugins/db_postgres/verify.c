/*
 * database "postgres": verify a restored database against its set: every
 * user table's row count (read in one REPEATABLE READ snapshot) against
 * the "rows.<schema>.<table>" metadata of the dump, a table missing on
 * either side being a mismatch, and every extension of the source being
 * installed. Each check is reported through the callback, per table; the
 * result is COFFER_OK only if all passed.
 */
#include "db_postgres.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct vctx {
    pgd_instance *in;
    coffer_check_cb cb;
    void *ud;
    int failed;
} vctx;

static void report(vctx *v, int ok, const char *check, const char *fmt, ...) COFFER_PRINTF(4, 5);

static void report(vctx *v, int ok, const char *check, const char *fmt, ...)
{
    char detail[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (!ok)
        v->failed++;
    if (v->cb)
        v->cb(v->ud, ok, check, detail);
}

/* "a 1.0,b 2.1" contains extension name? */
static int has_extension(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        size_t len = strcspn(p, ",");
        size_t nl = strcspn(p, " ,");
        if (nl == n && strncmp(p, name, n) == 0)
            return 1;
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

static void check_extensions(vctx *v, const char *check, const char *want, const char *have)
{
    if (!want)
        return;
    char missing[512] = "";
    size_t o = 0;
    for (const char *p = want; *p;) {
        size_t len = strcspn(p, ",");
        size_t nl = strcspn(p, " ,");
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(nl < sizeof name ? nl : sizeof name - 1), p);
        if (!has_extension(have, name) && o + 2 < sizeof missing)
            o += (size_t)snprintf(missing + o, sizeof missing - o, "%s%s", o ? ", " : "", name);
        p += len;
        if (*p == ',')
            p++;
    }
    if (o)
        report(v, 0, check, "extensions of the set missing here: %s", missing);
    else
        report(v, 1, check, "%s", *want ? want : "none");
}

static coffer_status verify_one(vctx *v, coffer_dump_source *src, const pgd_target *t,
                                const char *orig, size_t ndbs)
{
    pgd_instance *in = v->in;
    const char *db = pgd_target_db(t, orig, ndbs);
    const char *d = ndbs > 1 ? orig : NULL; /* key prefix */
    char check[600];
    char *shown = pgd_params_display(&t->params, db);
    if (!shown)
        return pgd_oom(in);
    coffer_status st;
    pgd_table *tables = NULL;
    size_t ntables = 0;
    int *seen = NULL;
    PGresult *r = NULL;
    snprintf(check, sizeof check, "connect%s%s", d ? "." : "", d ? d : "");
    PGconn *c = pgd_connect(in, &t->params, t->password, db, &st);
    if (!c) {
        report(v, 0, check, "%s: cannot connect", shown);
        goto done;
    }
    if (!(r = pgd_exec(in, c, "cannot start a read-only transaction",
                       "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", 0, NULL,
                       &st)))
        goto done;
    PQclear(r);
    if (!(r = pgd_exec(
              in, c, "cannot list extensions",
              "SELECT coalesce(string_agg(extname || ' ' || extversion, ',' ORDER BY extname), '')"
              " FROM pg_catalog.pg_extension",
              0, NULL, &st)))
        goto done;
    snprintf(check, sizeof check, "extensions%s%s", d ? "." : "", d ? d : "");
    check_extensions(v, check, src->meta_get(src, check), PQgetvalue(r, 0, 0));
    PQclear(r);
    r = NULL;
    if ((st = pgd_list_tables(in, c, &tables, &ntables)) != COFFER_OK ||
        (st = pgd_count_rows(in, c, tables, ntables)) != COFFER_OK)
        goto done;
    seen = calloc(ntables ? ntables : 1, sizeof *seen);
    if (!seen) {
        st = pgd_oom(in);
        goto done;
    }
    /* Every table the set recorded. */
    char prefix[512];
    snprintf(prefix, sizeof prefix, "rows.%s%s", d ? d : "", d ? "/" : "");
    size_t plen = strlen(prefix);
    size_t nmeta = src->meta_count ? src->meta_count(src) : 0;
    for (size_t i = 0; i < nmeta; i++) {
        const char *key = src->meta_key(src, i);
        if (!key || strncmp(key, prefix, plen) != 0)
            continue;
        if (!d && strchr(key + plen, '/'))
            continue; /* another database's key (not expected with one) */
        const char *val = src->meta_get(src, key);
        char *end = NULL;
        long long want = val ? strtoll(val, &end, 10) : -1;
        if (!val || end == val || *end || want < 0) {
            report(v, 0, key, "recorded count '%s' is not a number", val ? val : "(null)");
            continue;
        }
        size_t k = 0;
        for (; k < ntables; k++) {
            char *tk = pgd_rows_key(d, tables[k].schema, tables[k].name);
            int eq = tk && strcmp(tk, key) == 0;
            free(tk);
            if (eq)
                break;
        }
        if (k == ntables) {
            report(v, 0, key, "table %s is missing in %s (the set has %lld rows)", key + plen,
                   shown, want);
            continue;
        }
        seen[k] = 1;
        if (tables[k].rows == want)
            report(v, 1, key, "%" PRId64 " rows", tables[k].rows);
        else
            report(v, 0, key, "table %s.%s has %" PRId64 " rows in %s, the set recorded %lld",
                   tables[k].schema, tables[k].name, tables[k].rows, shown, want);
    }
    /* Tables the set does not know. */
    for (size_t k = 0; k < ntables; k++) {
        if (seen[k])
            continue;
        char *key = pgd_rows_key(d, tables[k].schema, tables[k].name);
        report(v, 0, key ? key : "rows", "table %s.%s (%" PRId64 " rows) in %s was not in the set",
               tables[k].schema, tables[k].name, tables[k].rows, shown);
        free(key);
    }
    st = COFFER_OK;
done:
    if (st != COFFER_OK && c)
        report(v, 0, check, "%s: cannot read (see the error)", shown);
    if (c)
        PQfinish(c);
    free(seen);
    pgd_tables_free(tables, ntables);
    free(shown);
    return st;
}

coffer_status pgd_verify(void *instance, coffer_dump_source *src, const coffer_restore_opts *opts,
                         coffer_check_cb cb, void *ud)
{
    pgd_instance *in = instance;
    pgd_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    vctx v = {.in = in, .cb = cb, .ud = ud};
    char **dbs = NULL;
    size_t n = 0;
    pgd_target t;
    coffer_status st = pgd_set_databases(in, src, &dbs, &n);
    if (st)
        return st;
    if ((st = pgd_target_open(in, opts, &t)) != COFFER_OK) {
        pgd_strv_free(dbs, n);
        return st;
    }
    for (size_t i = 0; i < n && st == COFFER_OK; i++)
        st = verify_one(&v, src, &t, dbs[i], n);
    if (st == COFFER_OK && v.failed)
        st = in->host->error(in->h, COFFER_ERR_CORRUPT, "%d verify check%s failed", v.failed,
                             v.failed == 1 ? "" : "s");
    pgd_target_free(&t);
    pgd_strv_free(dbs, n);
    return st;
}
