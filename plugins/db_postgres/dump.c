/*
 * database "postgres": dump.
 *
 * Per database: a session opens a REPEATABLE READ, READ ONLY transaction
 * and exports its snapshot (pg_export_snapshot). Everything recorded in
 * the set is read in that snapshot: server version, database size,
 * extensions, encoding and locale, and every user table's row count.
 * pg_dump runs with --snapshot set to it, so its output is exactly that
 * state however much the application writes meanwhile; the exporting
 * transaction stays open until pg_dump has finished (the snapshot can
 * only be imported while it is).
 *
 * pg_dump writes the custom format uncompressed (-Fc -Z0) to a pipe that
 * is copied into the sink: no temporary file, memory bounded by one
 * buffer, and uncompressed output that the core's content-defined
 * chunking deduplicates from one day's dump to the next (compression
 * happens after, per chunk). The row counts run on the exporting session
 * while pg_dump streams, so they cost no wall time of their own.
 *
 * With several databases, `jobs` of them are dumped at once, each in its
 * own thread; the threads report errors into their own job (a private
 * host table), never through the instance's host concurrently.
 *
 * When the sink asks to keep the snapshot (keep_snapshot, ABI 1.1), the
 * first database's session does not commit after pg_dump: it stays open,
 * idle in its transaction, and query_snapshot runs there until
 * instance_free rolls it back. Meanwhile VACUUM cannot remove rows that
 * snapshot may still see, in that database and the shared catalogs.
 */
#include "db_postgres.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct dbjob {
    coffer_host host;   /* the instance's host with error/log/progress redirected */
    pgd_instance *real; /* the instance (host, h) */
    pgd_instance in;    /* shallow copy using `host`, h = this job */
    const char *db;
    coffer_dump_sink *sink;
    const char *passfile;
    int threaded;
    int keep; /* keep the session and its snapshot open (first database) */
    /* results */
    coffer_status st;
    char err[1024];
    char version[96];
    int version_num;
    uint64_t size;
    char *extensions;
    char encoding[64], collate[160], ctype[160];
    char snapshot[64];
    pgd_table *tables;
    size_t ntables;
    uint64_t bytes;
    PGconn *kept; /* with keep: the session, transaction open */
} dbjob;

static dbjob *J(coffer_hctx *h)
{
    return (dbjob *)h;
}

static coffer_status job_error(coffer_hctx *h, coffer_status code, const char *fmt, ...)
{
    dbjob *j = J(h);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->err, sizeof j->err, fmt, ap);
    va_end(ap);
    j->st = code;
    return code;
}

static void job_log(coffer_hctx *h, coffer_log_level level, const char *fmt, ...)
{
    dbjob *j = J(h);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    j->real->host->log(j->real->h, level, "%s", msg);
}

static int job_cancelled(coffer_hctx *h)
{
    return J(h)->real->host->cancelled(J(h)->real->h);
}

static void job_progress(coffer_hctx *h, uint64_t bytes)
{
    if (!J(h)->threaded)
        J(h)->real->host->progress(J(h)->real->h, bytes);
}

static int job_temp_path(coffer_hctx *h, const char *hint, char *buf, size_t len)
{
    return J(h)->real->host->temp_path(J(h)->real->h, hint, buf, len);
}

static const char *job_root(coffer_hctx *h)
{
    return J(h)->real->host->policy_root(J(h)->real->h);
}

static void job_init(dbjob *j, pgd_instance *in, const char *db, coffer_dump_sink *sink,
                     const char *passfile, int threaded)
{
    memset(j, 0, sizeof *j);
    j->host = *in->host;
    j->host.error = job_error;
    j->host.log = job_log;
    j->host.cancelled = job_cancelled;
    j->host.progress = job_progress;
    j->host.temp_path = job_temp_path;
    j->host.policy_root = job_root;
    j->real = in;
    j->in = *in;
    j->in.host = &j->host;
    j->in.h = (coffer_hctx *)j;
    j->db = db;
    j->sink = sink;
    j->passfile = passfile;
    j->threaded = threaded;
}

char *pgd_stream_name(const char *db)
{
    size_t len = strlen(db) + 8;
    char *s = malloc(len);
    if (s)
        snprintf(s, len, "%s.pgdump", db);
    return s;
}

/* "SELECT count(*) FROM a.b; SELECT count(*) FROM c.d; ..." */
static char *counts_sql(PGconn *c, const pgd_table *t, size_t n)
{
    size_t cap = 256, len = 0;
    char *sql = malloc(cap);
    if (!sql)
        return NULL;
    sql[0] = 0;
    for (size_t i = 0; i < n; i++) {
        char *s = PQescapeIdentifier(c, t[i].schema, strlen(t[i].schema));
        char *q = PQescapeIdentifier(c, t[i].name, strlen(t[i].name));
        if (!s || !q) {
            PQfreemem(s);
            PQfreemem(q);
            free(sql);
            return NULL;
        }
        size_t need = strlen(s) + strlen(q) + 32;
        if (len + need >= cap) {
            while (len + need >= cap)
                cap *= 2;
            char *b = realloc(sql, cap);
            if (!b) {
                PQfreemem(s);
                PQfreemem(q);
                free(sql);
                return NULL;
            }
            sql = b;
        }
        len += (size_t)snprintf(sql + len, cap - len, "SELECT count(*) FROM %s.%s;", s, q);
        PQfreemem(s);
        PQfreemem(q);
    }
    return sql;
}

/* Everything recorded about the database, in the exported snapshot. */
static coffer_status read_facts(dbjob *j, PGconn *c)
{
    pgd_instance *in = &j->in;
    coffer_status st;
    PGresult *r =
        pgd_exec(in, c, "cannot start the snapshot transaction",
                 "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", 0, NULL, &st);
    if (!r)
        return st;
    PQclear(r);
    r = pgd_exec(in, c, "cannot export a snapshot",
                 "SELECT pg_catalog.pg_export_snapshot(), current_setting('server_version'),"
                 " current_setting('server_version_num'), pg_catalog.pg_database_size(d.oid),"
                 " pg_catalog.pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,"
                 " (SELECT coalesce(string_agg(e.extname || ' ' || e.extversion, ',' ORDER BY "
                 "e.extname), '')"
                 "  FROM pg_catalog.pg_extension e)"
                 " FROM pg_catalog.pg_database d WHERE d.datname = current_database()",
                 0, NULL, &st);
    if (!r)
        return st;
    snprintf(j->snapshot, sizeof j->snapshot, "%s", PQgetvalue(r, 0, 0));
    snprintf(j->version, sizeof j->version, "%s", PQgetvalue(r, 0, 1));
    j->version_num = atoi(PQgetvalue(r, 0, 2));
    j->size = strtoull(PQgetvalue(r, 0, 3), NULL, 10);
    snprintf(j->encoding, sizeof j->encoding, "%s", PQgetvalue(r, 0, 4));
    snprintf(j->collate, sizeof j->collate, "%s", PQgetvalue(r, 0, 5));
    snprintf(j->ctype, sizeof j->ctype, "%s", PQgetvalue(r, 0, 6));
    j->extensions = strdup(PQgetvalue(r, 0, 7));
    PQclear(r);
    if (!j->extensions)
        return pgd_oom(in);
    return pgd_list_tables(in, c, &j->tables, &j->ntables);
}

/* Collect the results of the count statements that have arrived.
 * *next is the table the next result belongs to; *done set at the end. */
static coffer_status take_counts(dbjob *j, PGconn *c, size_t *next, int *done)
{
    pgd_instance *in = &j->in;
    if (!PQconsumeInput(c))
        return pgd_conn_error(in, c, NULL, "lost the snapshot session while counting rows");
    while (!PQisBusy(c)) {
        PGresult *r = PQgetResult(c);
        if (!r) {
            *done = 1;
            if (*next != j->ntables)
                return in->host->error(in->h, COFFER_ERR_FAILED,
                                       "row counts: %zu results for %zu tables", *next, j->ntables);
            return COFFER_OK;
        }
        if (PQresultStatus(r) != PGRES_TUPLES_OK || *next >= j->ntables) {
            char what[600];
            snprintf(what, sizeof what, "cannot count rows of %s.%s",
                     *next < j->ntables ? j->tables[*next].schema : "?",
                     *next < j->ntables ? j->tables[*next].name : "?");
            coffer_status st = pgd_conn_error(in, c, r, what);
            PQclear(r);
            return st;
        }
        j->tables[*next].rows = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        (*next)++;
        PQclear(r);
    }
    return COFFER_OK;
}

static void cancel_query(PGconn *c)
{
    PGcancel *pc = PQgetCancel(c);
    if (pc) {
        char eb[256];
        PQcancel(pc, eb, sizeof eb);
        PQfreeCancel(pc);
    }
}

static coffer_status dump_one(dbjob *j)
{
    pgd_instance *in = &j->in;
    coffer_status st;
    char *stream_name = NULL, *conninfo = NULL, *sql = NULL, *buf = NULL;
    void *stream = NULL;
    pgd_child child = {.pid = -1, .in_fd = -1, .out_fd = -1, .err_fd = -1};
    int counting = 0, counted = 1;
    PGconn *c = pgd_connect(in, &in->params, in->password, j->db, &st);
    if (!c)
        return st;
    if ((st = read_facts(j, c)) != COFFER_OK)
        goto done;
    if ((st = pgd_check_pg_dump(in, j->version_num)) != COFFER_OK)
        goto done;
    if (in->host->cancelled(in->h)) {
        st = in->host->error(in->h, COFFER_ERR_CANCELLED, "dump of database %s cancelled", j->db);
        goto done;
    }

    conninfo = pgd_params_conninfo(&in->params, j->db, "coffer-pg_dump");
    stream_name = pgd_stream_name(j->db);
    buf = malloc(PGD_CHUNK);
    sql = j->ntables ? counts_sql(c, j->tables, j->ntables) : NULL;
    if (!conninfo || !stream_name || !buf || (j->ntables && !sql)) {
        st = pgd_oom(in);
        goto done;
    }
    size_t dlen = strlen(conninfo) + 16, slen = strlen(j->snapshot) + 16;
    char *dbarg = malloc(dlen), *snaparg = malloc(slen);
    if (!dbarg || !snaparg) {
        free(dbarg);
        free(snaparg);
        st = pgd_oom(in);
        goto done;
    }
    snprintf(dbarg, dlen, "--dbname=%s", conninfo);
    snprintf(snaparg, slen, "--snapshot=%s", j->snapshot);
    char *argv[] = {in->pg_dump, "--format=custom", "--compress=0", "--no-password", snaparg, dbarg,
                    NULL};
    st = pgd_spawn(in, in->pg_dump, argv, j->passfile, 0, 1, &child);
    free(dbarg);
    free(snaparg);
    if (st)
        goto done;
    in->host->log(in->h, COFFER_LOG_INFO, "dumping database %s (snapshot %s, %zu tables) with %s",
                  j->db, j->snapshot, j->ntables, in->pg_dump);

    if (sql) {
        if (!PQsendQuery(c, sql)) {
            st = pgd_conn_error(in, c, NULL, "cannot start the row counts");
            goto done;
        }
        counting = 1;
    }
    if ((st = j->sink->stream_open(j->sink, stream_name, &stream)) != COFFER_OK) {
        stream = NULL;
        st = in->host->error(in->h, st, "cannot open dump stream %s", stream_name);
        goto done;
    }

    size_t next = 0;
    counted = !counting;
    while (child.out_fd >= 0 || !counted) {
        if (in->host->cancelled(in->h)) {
            st = in->host->error(in->h, COFFER_ERR_CANCELLED, "dump of database %s cancelled",
                                 j->db);
            goto done;
        }
        struct pollfd pfd[3];
        int np = 0, io = -1, ie = -1, is = -1;
        if (child.out_fd >= 0) {
            pfd[np] = (struct pollfd){.fd = child.out_fd, .events = POLLIN};
            io = np++;
        }
        if (child.err_fd >= 0) {
            pfd[np] = (struct pollfd){.fd = child.err_fd, .events = POLLIN};
            ie = np++;
        }
        if (!counted) {
            pfd[np] = (struct pollfd){.fd = PQsocket(c), .events = POLLIN};
            is = np++;
        }
        int pr = poll(pfd, (nfds_t)np, 200);
        if (pr < 0 && errno != EINTR) {
            st = in->host->error(in->h, COFFER_ERR_IO, "poll: %s", strerror(errno));
            goto done;
        }
        if (pr <= 0)
            continue;
        if (ie >= 0 && pfd[ie].revents)
            pgd_child_drain_err(&child);
        if (is >= 0 && pfd[is].revents) {
            if ((st = take_counts(j, c, &next, &counted)) != COFFER_OK)
                goto done;
        }
        if (io >= 0 && pfd[io].revents) {
            ssize_t n = read(child.out_fd, buf, PGD_CHUNK);
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (n < 0) {
                st = in->host->error(in->h, COFFER_ERR_IO, "cannot read pg_dump's output: %s",
                                     strerror(errno));
                goto done;
            }
            if (n == 0) {
                close(child.out_fd);
                child.out_fd = -1;
                continue;
            }
            if ((st = j->sink->stream_write(stream, buf, (size_t)n)) != COFFER_OK) {
                st = in->host->error(in->h, st, "cannot write dump stream %s", stream_name);
                goto done;
            }
            j->bytes += (uint64_t)n;
            in->host->progress(in->h, (uint64_t)n);
        }
    }
    int ws = pgd_child_wait(&child);
    if (ws != 0) {
        char how[64], tail[900];
        st = in->host->error(in->h, COFFER_ERR_FAILED, "pg_dump of database %s failed (%s): %s",
                             j->db, pgd_wait_str(ws, how, sizeof how),
                             pgd_child_errtail(&child, tail, sizeof tail));
        goto done;
    }
    if (child.errlen) {
        char tail[900];
        in->host->log(in->h, COFFER_LOG_WARN, "pg_dump (database %s): %s", j->db,
                      pgd_child_errtail(&child, tail, sizeof tail));
    }
    if (j->bytes == 0) {
        st = in->host->error(in->h, COFFER_ERR_FAILED, "pg_dump of database %s produced no output",
                             j->db);
        goto done;
    }
    if (j->keep) {
        /* Keep the transaction for query_snapshot. However long the
         * rest of the backup takes, the server must not end it for
         * idling; whatever a statement does to the transaction, no later
         * one on this session may write; and each query is rolled back
         * to the savepoint (rehearse.c). */
        static const char *const keep_sql[] = {
            "SET idle_in_transaction_session_timeout = 0",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "SAVEPOINT coffer_snapshot",
        };
        /* (idle_in_transaction_session_timeout exists since 9.6) */
        for (size_t i = j->version_num >= 90600 ? 0 : 1; i < sizeof keep_sql / sizeof keep_sql[0];
             i++) {
            PGresult *r =
                pgd_exec(in, c, "cannot keep the snapshot transaction", keep_sql[i], 0, NULL, &st);
            if (!r)
                goto done;
            PQclear(r);
        }
        j->kept = c;
        c = NULL;
        goto done;
    }
    /* pg_dump is done with the snapshot: end the exporting transaction. */
    PGresult *r = pgd_exec(in, c, "cannot end the snapshot transaction", "COMMIT", 0, NULL, &st);
    if (!r)
        goto done;
    PQclear(r);
done:
    if (child.pid > 0) {
        pgd_child_kill(&child);
        pgd_child_wait(&child);
    }
    if (stream) {
        /* Close even after a failure: the sink owns the stream's
         * resources, and a failed backup never publishes it. */
        coffer_status cst = j->sink->stream_close(stream);
        if (st == COFFER_OK && cst != COFFER_OK)
            st = in->host->error(in->h, cst, "cannot close dump stream %s", stream_name);
    }
    if (st != COFFER_OK && counting && !counted && PQstatus(c) == CONNECTION_OK)
        cancel_query(c);
    if (c)
        PQfinish(c);
    free(sql);
    free(buf);
    free(conninfo);
    free(stream_name);
    j->st = st;
    return st;
}

/* ---- several databases at once ------------------------------------------ */

typedef struct pool {
    dbjob *jobs;
    size_t n, next;
    int failed; /* after a failure, start nothing new */
    pthread_mutex_t mu;
} pool;

static void *worker(void *arg)
{
    pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        size_t i = !p->failed && p->next < p->n ? p->next++ : p->n;
        pthread_mutex_unlock(&p->mu);
        if (i >= p->n)
            return NULL;
        coffer_status st = dump_one(&p->jobs[i]);
        pthread_mutex_lock(&p->mu);
        if (st != COFFER_OK)
            p->failed = 1;
        pthread_mutex_unlock(&p->mu);
    }
}

/* ---- metadata ------------------------------------------------------------- */

static coffer_status emit(pgd_instance *in, coffer_dump_sink *sink, const char *key,
                          const char *value)
{
    coffer_status st = sink->meta(sink, key, value);
    if (st)
        return in->host->error(in->h, st, "cannot record metadata %s", key);
    return COFFER_OK;
}

static coffer_status emit_db(pgd_instance *in, coffer_dump_sink *sink, const char *base,
                             const char *db, const char *value)
{
    char key[512];
    if (db)
        snprintf(key, sizeof key, "%s.%s", base, db);
    else
        snprintf(key, sizeof key, "%s", base);
    return emit(in, sink, key, value);
}

static coffer_status emit_all(pgd_instance *in, coffer_dump_sink *sink, dbjob *jobs, size_t n)
{
    coffer_status st;
    char num[32], dbs[4096] = "";
    uint64_t total = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        total += jobs[i].size;
        o += (size_t)snprintf(dbs + o, o < sizeof dbs ? sizeof dbs - o : 0, "%s%s", i ? "," : "",
                              jobs[i].db);
    }
    if (o >= sizeof dbs)
        return in->host->error(in->h, COFFER_ERR_INVALID, "too many databases to record (%zu)", n);
    char snap[200];
    snprintf(snap, sizeof snap,
             "pg_export_snapshot in a REPEATABLE READ, READ ONLY transaction, shared with pg_dump "
             "--snapshot%s",
             n > 1 ? " (one snapshot per database)" : "");
    snprintf(num, sizeof num, "%" PRIu64, total);
    char vnum[16];
    snprintf(vnum, sizeof vnum, "%d", jobs[0].version_num);
    if ((st = emit(in, sink, "server_version", jobs[0].version)) ||
        (st = emit(in, sink, "server_version_num", vnum)) || (st = emit(in, sink, "size", num)) ||
        (st = emit(in, sink, "snapshot", snap)) || (st = emit(in, sink, "databases", dbs)) ||
        (st = emit(in, sink, "source", in->display)) ||
        (st = emit(in, sink, "pg_dump_version",
                   in->pg_dump_text[0] ? in->pg_dump_text : jobs[0].in.pg_dump_text)) ||
        (st = emit(in, sink, "format",
                   "pg_dump custom format, uncompressed (-Fc -Z0), one stream per database")))
        return st;
    for (size_t i = 0; i < n; i++) {
        dbjob *j = &jobs[i];
        const char *d = n > 1 ? j->db : NULL;
        snprintf(num, sizeof num, "%" PRIu64, j->size);
        if ((n > 1 && (st = emit_db(in, sink, "size", d, num))) ||
            (st = emit_db(in, sink, "extensions", d, j->extensions)) ||
            (st = emit_db(in, sink, "encoding", d, j->encoding)) ||
            (st = emit_db(in, sink, "lc_collate", d, j->collate)) ||
            (st = emit_db(in, sink, "lc_ctype", d, j->ctype)) ||
            (st = emit_db(in, sink, "snapshot_id", d, j->snapshot)))
            return st;
        for (size_t k = 0; k < j->ntables; k++) {
            char *key = pgd_rows_key(d, j->tables[k].schema, j->tables[k].name);
            if (!key)
                return pgd_oom(in);
            snprintf(num, sizeof num, "%" PRId64, j->tables[k].rows);
            st = emit(in, sink, key, num);
            free(key);
            if (st)
                return st;
        }
    }
    return COFFER_OK;
}

/* Roll c's transaction back, waiting for the answer a few seconds at
 * most: a server that does not answer must not hold up instance_free. */
static void rollback_briefly(PGconn *c)
{
    if (PQstatus(c) != CONNECTION_OK || !PQsendQuery(c, "ROLLBACK"))
        return;
    for (int waited = 0; PQisBusy(c) && waited < 5000; waited += 100) {
        struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
        if (poll(&pfd, 1, 100) > 0 && !PQconsumeInput(c))
            return;
    }
    if (PQisBusy(c))
        return;
    PGresult *r;
    while ((r = PQgetResult(c)) != NULL)
        PQclear(r);
}

void pgd_snapshot_release(pgd_instance *in)
{
    if (in->snap) {
        /* End the transaction before returning, rather than when the
         * backend has processed the disconnection: its locks go and the
         * horizon VACUUM waits for moves on at once. */
        rollback_briefly(in->snap);
        PQfinish(in->snap);
        in->snap = NULL;
    }
    free(in->snap_shown);
    in->snap_shown = NULL;
    in->snap_lost = 0;
}

/* Did the core ask to keep this dump's snapshot? A 1.0 sink ends before
 * the member. */
static int keep_requested(const coffer_dump_sink *sink)
{
    return sink->struct_size >= offsetof(coffer_dump_sink, keep_snapshot) + sizeof(int) &&
           sink->keep_snapshot;
}

coffer_status pgd_dump(void *instance, coffer_dump_sink *sink)
{
    pgd_instance *in = instance;
    pgd_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    /* A snapshot belongs to the last dump only, whatever becomes of this one. */
    pgd_snapshot_release(in);
    if (in->host->cancelled(in->h))
        return in->host->error(in->h, COFFER_ERR_CANCELLED, "dump cancelled");
    char passfile[4096];
    coffer_status st = pgd_passfile_new(in, in->password, passfile, sizeof passfile);
    if (st)
        return st;
    dbjob *jobs = calloc(in->ndbs, sizeof *jobs);
    if (!jobs) {
        pgd_passfile_remove(passfile);
        return pgd_oom(in);
    }
    int threaded = in->jobs > 1 && in->ndbs > 1;
    for (size_t i = 0; i < in->ndbs; i++)
        job_init(&jobs[i], in, in->dbs[i], sink, passfile, threaded);
    /* The database query_target would query: the first. */
    jobs[0].keep = keep_requested(sink);
    if (!threaded) {
        for (size_t i = 0; i < in->ndbs; i++)
            if (dump_one(&jobs[i]) != COFFER_OK)
                break;
    } else {
        pool p = {.jobs = jobs, .n = in->ndbs};
        pthread_mutex_init(&p.mu, NULL);
        size_t nt = (size_t)in->jobs < in->ndbs ? (size_t)in->jobs : in->ndbs;
        pthread_t th[PGD_MAX_JOBS];
        size_t started = 0;
        for (; started < nt; started++)
            if (pthread_create(&th[started], NULL, worker, &p) != 0)
                break;
        if (started == 0)
            worker(&p);
        for (size_t i = 0; i < started; i++)
            pthread_join(th[i], NULL);
        pthread_mutex_destroy(&p.mu);
    }
    pgd_passfile_remove(passfile);
    st = COFFER_OK;
    /* The first failure in database order; a cancellation wins. */
    for (size_t i = 0; i < in->ndbs && st == COFFER_OK; i++)
        if (jobs[i].st != COFFER_OK)
            st = in->host->error(in->h, jobs[i].st, "%s", jobs[i].err);
    for (size_t i = 0; i < in->ndbs; i++)
        if (jobs[i].st == COFFER_ERR_CANCELLED)
            st = in->host->error(in->h, COFFER_ERR_CANCELLED, "%s", jobs[i].err);
    /* Databases skipped after a failure have no facts: only emit on success. */
    if (st == COFFER_OK) {
        if (!in->pg_dump_num) { /* cache what the first job found */
            memcpy(in->pg_dump, jobs[0].in.pg_dump, sizeof in->pg_dump);
            memcpy(in->pg_dump_text, jobs[0].in.pg_dump_text, sizeof in->pg_dump_text);
            in->pg_dump_num = jobs[0].in.pg_dump_num;
        }
        st = emit_all(in, sink, jobs, in->ndbs);
    }
    if (st == COFFER_OK && jobs[0].kept) {
        char *shown = pgd_params_display(&in->params, in->dbs[0]);
        size_t len = shown ? strlen(shown) + 20 : 0;
        if (shown && (in->snap_shown = malloc(len)) != NULL) {
            snprintf(in->snap_shown, len, "the snapshot of %s", shown);
            pgd_notices_to(in, jobs[0].kept);
            in->snap = jobs[0].kept;
            jobs[0].kept = NULL;
            in->host->log(in->h, COFFER_LOG_INFO,
                          "keeping the snapshot of database %s open for queries until the "
                          "backup ends",
                          in->dbs[0]);
        } else {
            st = pgd_oom(in);
        }
        free(shown);
    }
    if (jobs[0].kept)
        PQfinish(jobs[0].kept); /* rolls the transaction back */
    for (size_t i = 0; i < in->ndbs; i++) {
        free(jobs[i].extensions);
        pgd_tables_free(jobs[i].tables, jobs[i].ntables);
    }
    free(jobs);
    return st;
}
