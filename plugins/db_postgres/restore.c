/*
 * database "postgres": restore.
 *
 * Each database's stream is piped from the set into pg_restore's stdin
 * (no temporary file), run with --single-transaction: a failed or
 * interrupted restore leaves the target as it was. The target is the
 * original database on the policy's server, or the one named at restore
 * time with --map NAME=postgres://... (opts->target); it is created when
 * missing (opts->create). A target that already holds user tables is
 * refused unless opts->force, and then restored with --clean --if-exists
 * (objects of the dump are replaced; other objects stay, and verify
 * reports their tables).
 */
#include "db_postgres.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- the set and the target ---------------------------------------------- */

coffer_status pgd_set_databases(pgd_instance *in, coffer_dump_source *src, char ***dbs, size_t *n)
{
    *dbs = NULL;
    *n = 0;
    const char *list = src->meta_get ? src->meta_get(src, "databases") : NULL;
    size_t cap = 0;
    char **v = NULL;
    if (list && *list) {
        for (const char *p = list; *p;) {
            size_t len = strcspn(p, ",");
            if (*n == cap) {
                cap = cap ? cap * 2 : 4;
                char **nv = realloc(v, cap * sizeof *v);
                if (!nv)
                    goto oom;
                v = nv;
            }
            if (!(v[*n] = strndup(p, len)))
                goto oom;
            (*n)++;
            p += len;
            if (*p == ',')
                p++;
        }
    } else {
        /* A set without the list: one database per "<db>.pgdump" stream. */
        size_t ns = src->stream_count(src);
        for (size_t i = 0; i < ns; i++) {
            const char *s = src->stream_name(src, i);
            size_t len = s ? strlen(s) : 0;
            if (len <= 7 || strcmp(s + len - 7, ".pgdump") != 0)
                continue;
            if (*n == cap) {
                cap = cap ? cap * 2 : 4;
                char **nv = realloc(v, cap * sizeof *v);
                if (!nv)
                    goto oom;
                v = nv;
            }
            if (!(v[*n] = strndup(s, len - 7)))
                goto oom;
            (*n)++;
        }
    }
    if (*n == 0) {
        free(v);
        return in->host->error(in->h, COFFER_ERR_NOT_FOUND,
                               "the set holds no PostgreSQL dump (no *.pgdump stream)");
    }
    *dbs = v;
    return COFFER_OK;
oom:
    pgd_strv_free(v, *n);
    *n = 0;
    return pgd_oom(in);
}

coffer_status pgd_target_open(pgd_instance *in, const coffer_restore_opts *opts, pgd_target *t)
{
    memset(t, 0, sizeof *t);
    if (opts && opts->target && *opts->target) {
        coffer_status st =
            pgd_params_parse(in, "--map", opts->target, &t->params, &t->password, NULL);
        if (st)
            return st;
        t->mapped = 1;
        /* The policy's password serves a mapped URL that has none. */
        if (!t->password && in->password && !(t->password = strdup(in->password))) {
            pgd_target_free(t);
            return pgd_oom(in);
        }
        return COFFER_OK;
    }
    if (pgd_params_copy(&t->params, &in->params) != 0 ||
        (in->password && !(t->password = strdup(in->password)))) {
        pgd_target_free(t);
        return pgd_oom(in);
    }
    return COFFER_OK;
}

void pgd_target_free(pgd_target *t)
{
    pgd_params_free(&t->params);
    if (t->password) {
        volatile char *p = t->password;
        while (*p)
            *p++ = 0;
        free(t->password);
    }
    memset(t, 0, sizeof *t);
}

const char *pgd_target_db(const pgd_target *t, const char *orig, size_t ndbs)
{
    if (t->mapped && ndbs == 1) {
        const char *d = pgd_params_get(&t->params, "dbname");
        if (d && *d)
            return d;
    }
    return orig;
}

/* ---- creating and checking the target ---------------------------------- */

static coffer_status create_db(pgd_instance *in, PGconn *mc, coffer_dump_source *src,
                               const char *db, const char *orig, size_t ndbs, const char *shown)
{
    char key[600];
    const char *enc, *coll, *ctype;
    if (ndbs > 1) {
        snprintf(key, sizeof key, "encoding.%s", orig);
        enc = src->meta_get(src, key);
        snprintf(key, sizeof key, "lc_collate.%s", orig);
        coll = src->meta_get(src, key);
        snprintf(key, sizeof key, "lc_ctype.%s", orig);
        ctype = src->meta_get(src, key);
    } else {
        enc = src->meta_get(src, "encoding");
        coll = src->meta_get(src, "lc_collate");
        ctype = src->meta_get(src, "lc_ctype");
    }
    char *ident = PQescapeIdentifier(mc, db, strlen(db));
    char *e = enc && *enc ? PQescapeLiteral(mc, enc, strlen(enc)) : NULL;
    char *c = coll && *coll ? PQescapeLiteral(mc, coll, strlen(coll)) : NULL;
    char *t = ctype && *ctype ? PQescapeLiteral(mc, ctype, strlen(ctype)) : NULL;
    coffer_status st = COFFER_OK;
    if (!ident) {
        st = pgd_oom(in);
        goto done;
    }
    char sql[2048], what[1200];
    snprintf(what, sizeof what, "cannot create restore target database %s (%s)", db, shown);
    /* As the source was: same encoding and locale, from template0. */
    snprintf(sql, sizeof sql, "CREATE DATABASE %s TEMPLATE template0%s%s%s%s%s%s", ident,
             e ? " ENCODING " : "", e ? e : "", c ? " LC_COLLATE " : "", c ? c : "",
             t ? " LC_CTYPE " : "", t ? t : "");
    PGresult *r = PQexec(mc, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && (c || t) && PQstatus(mc) == CONNECTION_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        /* 22023 invalid_parameter_value: that locale does not exist here. */
        if (state && strcmp(state, "22023") == 0) {
            in->host->log(in->h, COFFER_LOG_WARN,
                          "the source's locale (%s/%s) does not exist on the target server; "
                          "creating %s with the "
                          "server's default locale",
                          coll ? coll : "", ctype ? ctype : "", db);
            PQclear(r);
            snprintf(sql, sizeof sql, "CREATE DATABASE %s TEMPLATE template0%s%s", ident,
                     e ? " ENCODING " : "", e ? e : "");
            r = PQexec(mc, sql);
        }
    }
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        st = pgd_conn_error(in, mc, r, what);
        PQclear(r);
        goto done;
    }
    PQclear(r);
    in->host->log(in->h, COFFER_LOG_INFO, "created database %s", shown);
done:
    PQfreemem(ident);
    PQfreemem(e);
    PQfreemem(c);
    PQfreemem(t);
    return st;
}

/* Make sure the target database exists (creating it if allowed). */
static coffer_status ensure_db(pgd_instance *in, const pgd_target *t, coffer_dump_source *src,
                               const coffer_restore_opts *opts, const char *db, const char *orig,
                               size_t ndbs, const char *shown, int *created)
{
    *created = 0;
    coffer_status st;
    PGconn *mc = NULL;
    if (strcmp(db, in->maintenance_db) != 0)
        mc = pgd_connect(in, &t->params, t->password, in->maintenance_db, &st);
    if (!mc) {
        /* No maintenance database to ask: the target must exist. */
        PGconn *tc = pgd_connect(in, &t->params, t->password, db, &st);
        if (!tc)
            return st;
        PQfinish(tc);
        return COFFER_OK;
    }
    const char *params[1] = {db};
    PGresult *r =
        pgd_exec(in, mc, "cannot look up the restore target",
                 "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1", 1, params, &st);
    if (!r) {
        PQfinish(mc);
        return st;
    }
    int exists = PQntuples(r) > 0;
    PQclear(r);
    if (!exists) {
        if (!opts || !opts->create)
            st = in->host->error(in->h, COFFER_ERR_NOT_FOUND,
                                 "restore target database %s (%s) does not exist", db, shown);
        else if ((st = create_db(in, mc, src, db, orig, ndbs, shown)) == COFFER_OK)
            *created = 1;
    }
    PQfinish(mc);
    return st;
}

/* ---- pumping the stream into pg_restore ----------------------------------- */

static coffer_status pump(pgd_instance *in, coffer_dump_source *src, const char *name, pgd_child *c,
                          uint64_t *total)
{
    void *stream = NULL;
    coffer_status st = src->stream_open(src, name, &stream);
    if (st)
        return in->host->error(in->h, st, "cannot open stream %s of the set", name);
    char *buf = malloc(PGD_CHUNK);
    if (!buf) {
        src->stream_close(stream);
        return pgd_oom(in);
    }
    /* A child that dies early closes the pipe: see EPIPE, not SIGPIPE. */
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    *total = 0;
    int broken = 0;
    while (!broken) {
        if (in->host->cancelled(in->h)) {
            st = in->host->error(in->h, COFFER_ERR_CANCELLED, "restore of %s cancelled", name);
            break;
        }
        size_t got = 0;
        if ((st = src->stream_read(stream, buf, PGD_CHUNK, &got)) != COFFER_OK) {
            st = in->host->error(in->h, st, "cannot read stream %s of the set", name);
            break;
        }
        if (got == 0)
            break;
        for (size_t off = 0; off < got && !broken;) {
            struct pollfd pfd[2] = {{.fd = c->in_fd, .events = POLLOUT},
                                    {.fd = c->err_fd, .events = POLLIN}};
            int pr = poll(pfd, c->err_fd >= 0 ? 2 : 1, 200);
            if (pr < 0 && errno != EINTR) {
                st = in->host->error(in->h, COFFER_ERR_IO, "poll: %s", strerror(errno));
                broken = 1;
                break;
            }
            if (c->err_fd >= 0 && pfd[1].revents)
                pgd_child_drain_err(c);
            if (in->host->cancelled(in->h)) {
                st = in->host->error(in->h, COFFER_ERR_CANCELLED, "restore of %s cancelled", name);
                broken = 1;
                break;
            }
            if (!(pfd[0].revents & (POLLOUT | POLLERR | POLLHUP)))
                continue;
            ssize_t w = write(c->in_fd, buf + off, got - off);
            if (w < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (w < 0) {
                /* EPIPE: pg_restore stopped reading; its status says why. */
                broken = 1;
                break;
            }
            off += (size_t)w;
        }
        *total += got;
        in->host->progress(in->h, got);
    }
    close(c->in_fd);
    c->in_fd = -1;
    struct timespec zero = {0, 0};
    sigset_t pending;
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE))
        sigtimedwait(&pipe_set, NULL, &zero);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    free(buf);
    src->stream_close(stream);
    return st;
}

static coffer_status restore_one(pgd_instance *in, coffer_dump_source *src,
                                 const coffer_restore_opts *opts, const pgd_target *t,
                                 const char *orig, size_t ndbs, const char *passfile,
                                 const char *pg_restore)
{
    const char *db = pgd_target_db(t, orig, ndbs);
    char *shown = pgd_params_display(&t->params, db);
    char *stream = pgd_stream_name(orig);
    char *conninfo = pgd_params_conninfo(&t->params, db, "coffer-pg_restore");
    char *dbarg = NULL;
    PGconn *tc = NULL;
    pgd_table *tables = NULL;
    size_t ntables = 0;
    pgd_child child = {.pid = -1, .in_fd = -1, .out_fd = -1, .err_fd = -1};
    coffer_status st = COFFER_OK;
    if (!shown || !stream || !conninfo || !(dbarg = malloc(strlen(conninfo) + 16))) {
        st = pgd_oom(in);
        goto done;
    }
    sprintf(dbarg, "--dbname=%s", conninfo);
    int found = 0;
    for (size_t i = 0; i < src->stream_count(src) && !found; i++)
        found = strcmp(src->stream_name(src, i), stream) == 0;
    if (!found) {
        st = in->host->error(in->h, COFFER_ERR_NOT_FOUND,
                             "the set has no stream %s for database %s", stream, orig);
        goto done;
    }

    int created = 0;
    if ((st = ensure_db(in, t, src, opts, db, orig, ndbs, shown, &created)) != COFFER_OK)
        goto done;
    if (!(tc = pgd_connect(in, &t->params, t->password, db, &st)))
        goto done;
    if ((st = pgd_list_tables(in, tc, &tables, &ntables)) != COFFER_OK)
        goto done;
    int force = opts && opts->force;
    if (ntables && !force) {
        st = in->host->error(
            in->h, COFFER_ERR_EXISTS,
            "restore target database %s (%s) exists and is not empty (%zu tables, e.g. %s.%s); use "
            "--force to restore over it, or --map %s to another database",
            db, shown, ntables, tables[0].schema, tables[0].name, "NAME=postgres://...");
        goto done;
    }

    char *argv[12];
    int a = 0;
    argv[a++] = (char *)pg_restore;
    argv[a++] = "--no-password";
    argv[a++] = "--single-transaction"; /* all or nothing; implies --exit-on-error */
    argv[a++] = "--exit-on-error";
    if (ntables) {
        argv[a++] = "--clean";
        argv[a++] = "--if-exists";
    }
    if (!in->restore_owner) {
        argv[a++] = "--no-owner";
        argv[a++] = "--no-privileges";
    }
    argv[a++] = dbarg;
    argv[a] = NULL;
    if ((st = pgd_spawn(in, pg_restore, argv, passfile, 1, 0, &child)) != COFFER_OK)
        goto done;
    in->host->log(in->h, COFFER_LOG_INFO, "restoring database %s from stream %s%s", shown, stream,
                  ntables ? " (--force: replacing the objects of the dump)" : "");
    uint64_t total = 0;
    st = pump(in, src, stream, &child, &total);
    int ws = pgd_child_wait(&child);
    if (st != COFFER_OK)
        goto done;
    if (ws != 0) {
        char how[64], tail[900];
        st = in->host->error(in->h, COFFER_ERR_FAILED,
                             "pg_restore into %s failed (%s); the restore was rolled back: %s",
                             shown, pgd_wait_str(ws, how, sizeof how),
                             pgd_child_errtail(&child, tail, sizeof tail));
        goto done;
    }
    if (child.errlen) {
        char tail[900];
        in->host->log(in->h, COFFER_LOG_WARN, "pg_restore (%s): %s", shown,
                      pgd_child_errtail(&child, tail, sizeof tail));
    }
    if (in->analyze) {
        PGresult *r = pgd_exec(in, tc, "ANALYZE after the restore", "ANALYZE", 0, NULL, &st);
        if (!r)
            goto done;
        PQclear(r);
    }
    in->host->log(in->h, COFFER_LOG_INFO, "restored database %s (%llu bytes of dump)", shown,
                  (unsigned long long)total);
done:
    if (child.pid > 0) {
        pgd_child_kill(&child);
        pgd_child_wait(&child);
    }
    if (tc)
        PQfinish(tc);
    pgd_tables_free(tables, ntables);
    free(dbarg);
    free(conninfo);
    free(stream);
    free(shown);
    return st;
}

coffer_status pgd_restore(void *instance, coffer_dump_source *src, const coffer_restore_opts *opts)
{
    pgd_instance *in = instance;
    pgd_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    char **dbs = NULL;
    size_t n = 0;
    pgd_target t;
    char passfile[4096] = "";
    coffer_status st = pgd_set_databases(in, src, &dbs, &n);
    if (st)
        return st;
    if ((st = pgd_target_open(in, opts, &t)) != COFFER_OK) {
        pgd_strv_free(dbs, n);
        return st;
    }
    /* pg_restore must read what this pg_dump wrote: same major or newer. */
    char pg_restore[4096];
    int num = 0;
    char text[256];
    if ((st = pgd_find_tool(in, "pg_restore", pg_restore, sizeof pg_restore)) != COFFER_OK ||
        (st = pgd_tool_version(in, pg_restore, &num, text, sizeof text)) != COFFER_OK)
        goto done;
    const char *dumped = src->meta_get ? src->meta_get(src, "pg_dump_version") : NULL;
    int dnum = pgd_parse_version(dumped);
    if (dnum) {
        char what[160];
        snprintf(what, sizeof what, "the pg_dump that wrote the set (%s)", dumped);
        const char *v = strstr(text, "(PostgreSQL)");
        if ((st = pgd_check_tool_version(in, "pg_restore", pg_restore, num, v ? v + 13 : text, dnum,
                                         what)) != COFFER_OK)
            goto done;
    }
    if ((st = pgd_passfile_new(in, t.password, passfile, sizeof passfile)) != COFFER_OK)
        goto done;
    for (size_t i = 0; i < n && st == COFFER_OK; i++)
        st = restore_one(in, src, opts, &t, dbs[i], n, passfile, pg_restore);
done:
    pgd_passfile_remove(passfile);
    pgd_target_free(&t);
    pgd_strv_free(dbs, n);
    return st;
}
