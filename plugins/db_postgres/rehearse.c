/*
 * database "postgres": what restore rehearsals and application checks
 * need (ABI 1.1) and the 1.0 query, which shares the same path.
 *
 * Queries run as one statement (the extended protocol refuses several)
 * in a READ ONLY transaction of a session whose transactions are all
 * read only, in libpq's single-row mode: one row in memory at a time
 * whatever the result's size. Stopping early (the callback, or the host
 * cancelling) sends a cancel request and reads what is still in flight,
 * one row at a time, so the session ends cleanly.
 *
 * query_snapshot runs in the transaction the dump kept open (dump.c),
 * after the savepoint the dump set there. Each statement is rolled back
 * to it, so a failed statement leaves the transaction usable and nothing
 * one does (a SET, a lock) outlives it. Statements that would end the
 * transaction (COMMIT, ROLLBACK, ...) are refused before they run; should
 * one get through anyway, the snapshot is reported lost, never silently
 * replaced by a newer one.
 *
 * Scratch databases are created from template0 (truly empty: template1
 * may carry objects of its own) and dropped WITH (FORCE) on servers that
 * have it (13+), else after terminating the sessions still connected.
 */
#include "db_postgres.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


coffer_status pgd_sqlstate_status(const char *state)
{
    if (!state)
        return COFFER_ERR_FAILED;
    if (strcmp(state, "42501") == 0) /* insufficient_privilege */
        return COFFER_ERR_AUTH;
    /* 42xxx syntax error or access rule violation (unknown table, column,
     * several statements), 25006 read_only_sql_transaction, 0A000
     * feature_not_supported, 2F003/2F004 prohibited statements, 3F000
     * invalid schema name. */
    if (strncmp(state, "42", 2) == 0 || strcmp(state, "25006") == 0 ||
        strcmp(state, "0A000") == 0 || strncmp(state, "2F", 2) == 0 || strcmp(state, "3F000") == 0)
        return COFFER_ERR_INVALID;
    return COFFER_ERR_FAILED;
}

/* ---- streaming a statement ---------------------------------------------- */

/* "ERROR: primary; DETAIL: ...; HINT: ... (at character N)": the server's
 * message without the echo of the statement libpq adds. */
static void result_message(const PGresult *r, char *buf, size_t len)
{
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY);
    const char *prim = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    if (!prim) {
        pgd_one_line(PQresultErrorMessage(r), buf, len);
        return;
    }
    const char *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
    const char *hint = PQresultErrorField(r, PG_DIAG_MESSAGE_HINT);
    const char *pos = PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION);
    char tmp[2048];
    snprintf(tmp, sizeof tmp, "%s: %s%s%s%s%s%s%s%s", sev ? sev : "ERROR", prim,
             detail ? "; DETAIL: " : "", detail ? detail : "", hint ? "; HINT: " : "",
             hint ? hint : "", pos ? " (at character " : "", pos ? pos : "", pos ? ")" : "");
    pgd_one_line(tmp, buf, len);
}

static void send_cancel(PGconn *c)
{
    PGcancel *pc = PQgetCancel(c);
    char eb[256];
    if (pc) {
        PQcancel(pc, eb, sizeof eb);
        PQfreeCancel(pc);
    }
}

/* Run sql on c, handing each row to row_cb as it arrives. */
static coffer_status stream(pgd_instance *in, PGconn *c, const char *shown, const char *sql,
                            coffer_row_cb row_cb, void *ud)
{
    char what[700];
    snprintf(what, sizeof what, "query on %s", shown);
    if (!PQsendQueryParams(c, sql, 0, NULL, NULL, NULL, NULL, 0))
        return pgd_conn_error(in, c, NULL, what);
    if (!PQsetSingleRowMode(c))
        in->host->log(in->h, COFFER_LOG_WARN, "%s: single-row mode refused; rows come at once",
                      what);
    const char **vals = NULL;
    int nvals = 0;
    int stopped = 0;   /* the callback asked to stop, or an error: ignore the rest */
    int cancelled = 0; /* the host cancels */
    int cancel_sent = 0;
    coffer_status st = COFFER_OK;
    for (;;) {
        while (PQisBusy(c)) {
            struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
            int r = poll(&pfd, 1, 200);
            if (r < 0 && errno != EINTR) {
                if (st == COFFER_OK)
                    st = in->host->error(in->h, COFFER_ERR_IO, "%s: poll: %s", what,
                                         strerror(errno));
                goto out;
            }
            if (!cancelled && in->host->cancelled(in->h)) {
                cancelled = 1;
                if (!cancel_sent) {
                    send_cancel(c);
                    cancel_sent = 1;
                }
            }
            if (r > 0 && !PQconsumeInput(c)) {
                if (st == COFFER_OK && !stopped)
                    st = pgd_conn_error(in, c, NULL, what);
                goto out;
            }
        }
        PGresult *r = PQgetResult(c);
        if (!r)
            break;
        switch (PQresultStatus(r)) {
        case PGRES_SINGLE_TUPLE:
        case PGRES_TUPLES_OK: {
            int nt = PQntuples(r), nf = PQnfields(r);
            if (nf + 1 > nvals) {
                const char **v = realloc(vals, (size_t)(nf + 1) * sizeof *v);
                if (!v) {
                    PQclear(r);
                    if (st == COFFER_OK)
                        st = pgd_oom(in);
                    if (!cancel_sent) {
                        send_cancel(c);
                        cancel_sent = 1;
                    }
                    stopped = 1;
                    continue;
                }
                vals = v;
                nvals = nf + 1;
            }
            for (int i = 0; i < nt && !stopped && !cancelled; i++) {
                for (int k = 0; k < nf; k++)
                    vals[k] = PQgetisnull(r, i, k) ? NULL : PQgetvalue(r, i, k);
                vals[nf] = NULL;
                if (row_cb(ud, nf, vals) != 0)
                    stopped = 1;
                else if (in->host->cancelled(in->h))
                    cancelled = 1;
            }
            if ((stopped || cancelled) && !cancel_sent) {
                send_cancel(c);
                cancel_sent = 1;
            }
            break;
        }
        case PGRES_COMMAND_OK:
        case PGRES_EMPTY_QUERY:
            break;
        case PGRES_COPY_OUT: {
            /* COPY TO STDOUT is no query that returns rows: read it away. */
            char *buf;
            while (PQgetCopyData(c, &buf, 0) > 0)
                PQfreemem(buf);
            if (st == COFFER_OK && !stopped)
                st = in->host->error(in->h, COFFER_ERR_INVALID,
                                     "%s: COPY is not a query that returns rows; use SELECT", what);
            stopped = 1;
            break;
        }
        case PGRES_COPY_IN:
            PQputCopyEnd(c, "coffer runs read-only queries only");
            if (st == COFFER_OK && !stopped)
                st = in->host->error(in->h, COFFER_ERR_INVALID,
                                     "%s: COPY FROM is not a read-only query", what);
            stopped = 1;
            break;
        default:
            /* After our own cancel request, its "canceling statement"
             * error is expected; any other error counts. */
            if (st == COFFER_OK && !stopped) {
                const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
                char msg[1024];
                result_message(r, msg, sizeof msg);
                if (cancelled)
                    st = in->host->error(in->h, COFFER_ERR_CANCELLED, "%s cancelled", what);
                else if (PQstatus(c) == CONNECTION_BAD)
                    st = in->host->error(in->h, COFFER_ERR_RETRY, "%s: %s", what, msg);
                else
                    st = in->host->error(in->h, pgd_sqlstate_status(state), "%s: %s", what, msg);
                stopped = 1;
            }
            break;
        }
        PQclear(r);
        if (PQstatus(c) == CONNECTION_BAD)
            break;
    }
out:
    free(vals);
    if (st == COFFER_OK && cancelled)
        st = in->host->error(in->h, COFFER_ERR_CANCELLED, "%s cancelled", what);
    return st;
}

/* Connect to db with params/password, make the session read only, run. */
static coffer_status run_read_only(pgd_instance *in, const pgd_params *params, const char *password,
                                   const char *db, const char *sql, coffer_row_cb row_cb, void *ud)
{
    if (!sql || !*sql)
        return in->host->error(in->h, COFFER_ERR_INVALID, "query: empty statement");
    coffer_status st;
    PGconn *c = pgd_connect(in, params, password, db, &st);
    if (!c)
        return st;
    char *shown = pgd_params_display(params, db);
    if (!shown) {
        PQfinish(c);
        return pgd_oom(in);
    }
    /* Every transaction of this session is read only, so a statement that
     * ends ours (COMMIT) cannot write in the next. */
    PGresult *r = pgd_exec(in, c, "cannot start a read-only transaction",
                           "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", 0, NULL, &st);
    if (r) {
        PQclear(r);
        r = pgd_exec(in, c, "cannot start a read-only transaction",
                     "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", 0, NULL, &st);
    }
    if (r) {
        PQclear(r);
        st = stream(in, c, shown, sql, row_cb, ud);
    }
    free(shown);
    PQfinish(c); /* ends (rolls back) the transaction */
    return st;
}

coffer_status pgd_query(void *instance, const char *sql, coffer_row_cb row_cb, void *ud)
{
    pgd_instance *in = instance;
    pgd_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    return run_read_only(in, &in->params, in->password, in->dbs[0], sql, row_cb, ud);
}

coffer_status pgd_query_target(void *instance, const coffer_restore_opts *opts, const char *sql,
                               coffer_row_cb row_cb, void *ud)
{
    pgd_instance *in = instance;
    pgd_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    pgd_target t;
    coffer_status st = pgd_target_open(in, opts, &t);
    if (st)
        return st;
    /* The database the restore wrote: --map's own name, else the (first)
     * database of the policy, as restore and verify resolve it. */
    const char *db = pgd_target_db(&t, in->dbs[0], 1);
    st = run_read_only(in, &t.params, t.password, db, sql, row_cb, ud);
    pgd_target_free(&t);
    return st;
}

/* ---- the dump's kept snapshot -------------------------------------------- */

/* The first keyword of sql, skipping blanks and comments, into kw
 * (upper case, truncated); *rest points after it. */
static void first_keyword(const char *sql, char *kw, size_t len, const char **rest)
{
    const char *p = sql;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '(')
            p++;
        if (p[0] == '-' && p[1] == '-') {
            p += strcspn(p, "\n");
        } else if (p[0] == '/' && p[1] == '*') {
            int depth = 0; /* PostgreSQL's block comments nest */
            while (*p) {
                if (p[0] == '/' && p[1] == '*') {
                    depth++;
                    p += 2;
                } else if (p[0] == '*' && p[1] == '/') {
                    p += 2;
                    if (--depth == 0)
                        break;
                } else {
                    p++;
                }
            }
        } else {
            break;
        }
    }
    size_t n = 0;
    while ((isalpha((unsigned char)*p) || *p == '_') && n + 1 < len)
        kw[n++] = (char)toupper((unsigned char)*p++);
    while (isalpha((unsigned char)*p) || *p == '_')
        p++;
    kw[n] = 0;
    if (rest)
        *rest = p;
}

/* Would sql end (or nest into) the snapshot's transaction? */
static int controls_transaction(const char *sql)
{
    static const char *const words[] = {"BEGIN", "START",    "COMMIT",  "END",
                                        "ABORT", "ROLLBACK", "RELEASE", "SAVEPOINT"};
    char kw[16];
    const char *rest;
    first_keyword(sql, kw, sizeof kw, &rest);
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcmp(kw, words[i]) == 0)
            return 1;
    if (strcmp(kw, "PREPARE") == 0) { /* PREPARE TRANSACTION, not PREPARE name AS ... */
        first_keyword(rest, kw, sizeof kw, NULL);
        return strcmp(kw, "TRANSACTION") == 0;
    }
    return 0;
}

/* The kept transaction is gone: close the session, remember why. */
static coffer_status snapshot_lost(pgd_instance *in, coffer_status st, const char *why)
{
    char msg[1024];
    pgd_one_line(why, msg, sizeof msg);
    char *shown = in->snap_shown;
    in->snap_shown = NULL;
    pgd_snapshot_release(in);
    in->snap_shown = shown;
    in->snap_lost = 1;
    return in->host->error(in->h, st, "%s is lost: %s", shown ? shown : "the snapshot", msg);
}

/* Undo what the last statement did, back to the savepoint the dump set
 * (which stays, for the next statement). A cancel request sent to stop
 * that statement early may still arrive while this runs: its "canceling
 * statement" error is not ours, so try again. */
static int rollback_to_savepoint(PGconn *c, char *err, size_t errlen)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        PGresult *r = PQexec(c, "ROLLBACK TO SAVEPOINT coffer_snapshot");
        if (PQresultStatus(r) == PGRES_COMMAND_OK) {
            PQclear(r);
            return 0;
        }
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        int again = state && strcmp(state, "57014") == 0 && PQstatus(c) == CONNECTION_OK;
        pgd_one_line(r ? PQresultErrorMessage(r) : PQerrorMessage(c), err, errlen);
        PQclear(r);
        if (!again)
            return -1;
    }
    return -1;
}

coffer_status pgd_query_snapshot(void *instance, const char *sql, coffer_row_cb row_cb, void *ud)
{
    pgd_instance *in = instance;
    pgd_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    if (in->snap_lost)
        return in->host->error(in->h, COFFER_ERR_FAILED,
                               "query on %s: the snapshot was lost earlier (see the error then)",
                               in->snap_shown ? in->snap_shown : "the snapshot");
    if (!in->snap)
        return in->host->error(in->h, COFFER_ERR_UNSUPPORTED,
                               "query on the snapshot of %s: no dump of this instance kept its "
                               "snapshot",
                               in->display);
    const char *shown = in->snap_shown;
    if (!sql || !*sql)
        return in->host->error(in->h, COFFER_ERR_INVALID, "query on %s: empty statement", shown);
    if (controls_transaction(sql)) {
        char kw[16];
        first_keyword(sql, kw, sizeof kw, NULL);
        return in->host->error(in->h, COFFER_ERR_INVALID,
                               "query on %s: %s is refused: queries run inside the snapshot's "
                               "transaction and may not end it",
                               shown, kw);
    }
    PGconn *c = in->snap;
    if (PQstatus(c) != CONNECTION_OK || PQtransactionStatus(c) != PQTRANS_INTRANS)
        return snapshot_lost(in, COFFER_ERR_FAILED,
                             PQstatus(c) != CONNECTION_OK ? PQerrorMessage(c)
                                                          : "its transaction has ended");
    coffer_status st = stream(in, c, shown, sql, row_cb, ud);
    /* What the statement did to the transaction. */
    if (PQstatus(c) != CONNECTION_OK)
        return snapshot_lost(in, st != COFFER_OK ? st : COFFER_ERR_FAILED, PQerrorMessage(c));
    if (PQtransactionStatus(c) == PQTRANS_IDLE)
        return snapshot_lost(in, COFFER_ERR_INVALID, "the statement ended its transaction");
    char err[1024];
    if (rollback_to_savepoint(c, err, sizeof err) != 0)
        return snapshot_lost(in, COFFER_ERR_FAILED, err);
    return st;
}

/* ---- scratch databases -------------------------------------------------- */

/* The server to work on: a URL's parameters (its password, else the
 * policy's, as for --map) or the instance's own. */
static coffer_status scratch_server(pgd_instance *in, const char *server, pgd_target *t)
{
    coffer_restore_opts o = {.struct_size = sizeof o, .target = server};
    if (server && !*server)
        return in->host->error(in->h, COFFER_ERR_INVALID, "scratch server: empty URL");
    return pgd_target_open(in, server ? &o : NULL, t);
}

static coffer_status check_name(pgd_instance *in, const char *name, const char *op)
{
    if (coffer_scratch_name_valid(name))
        return COFFER_OK;
    return in->host->error(in->h, COFFER_ERR_INVALID,
                           "%s: '%s' is not a scratch database name (coffer_rehearse_ followed by "
                           "lowercase letters, digits and '_', at most 63 bytes)",
                           op, name ? name : "");
}

coffer_status pgd_scratch_create(void *instance, const char *server, const char *name, char *target,
                                 size_t target_len)
{
    pgd_instance *in = instance;
    pgd_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    coffer_status st = check_name(in, name, "scratch database");
    if (st)
        return st;
    pgd_target t;
    if ((st = scratch_server(in, server, &t)) != COFFER_OK)
        return st;
    char *shown = pgd_params_display(&t.params, "");
    char *uri = pgd_params_uri(&t.params, name);
    PGconn *c = NULL;
    if (!shown || !uri) {
        st = pgd_oom(in);
        goto done;
    }
    if (strlen(uri) + 1 > target_len) {
        st = in->host->error(in->h, COFFER_ERR_INVALID,
                             "scratch database target URL needs %zu bytes, the buffer has %zu",
                             strlen(uri) + 1, target_len);
        goto done;
    }
    if (!(c = pgd_connect(in, &t.params, t.password, in->maintenance_db, &st)))
        goto done;
    char sql[160];
    snprintf(sql, sizeof sql, "CREATE DATABASE \"%s\" TEMPLATE template0", name);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        char msg[1024];
        result_message(r, msg, sizeof msg);
        const char *user = pgd_params_get(&t.params, "user");
        if (state && strcmp(state, "42P04") == 0)
            st = in->host->error(in->h, COFFER_ERR_EXISTS,
                                 "scratch database %s already exists on %s (left untouched)", name,
                                 shown);
        else if (state && strcmp(state, "42501") == 0)
            st = in->host->error(in->h, COFFER_ERR_AUTH,
                                 "cannot create scratch database %s on %s: %s; the role%s%s "
                                 "needs CREATEDB (ALTER ROLE ... CREATEDB), or name a server "
                                 "where it has it (--scratch COMPONENT=URL, rehearse.scratch)",
                                 name, shown, msg, user ? " " : "", user ? user : "");
        else
            st = pgd_conn_error(in, c, r, "cannot create the scratch database");
        PQclear(r);
        goto done;
    }
    PQclear(r);
    snprintf(target, target_len, "%s", uri);
    in->host->log(in->h, COFFER_LOG_INFO, "created scratch database %s on %s", name, shown);
done:
    if (c)
        PQfinish(c);
    free(uri);
    free(shown);
    pgd_target_free(&t);
    return st;
}

coffer_status pgd_scratch_drop(void *instance, const char *server, const char *name)
{
    pgd_instance *in = instance;
    pgd_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    coffer_status st = check_name(in, name, "scratch database");
    if (st)
        return st;
    pgd_target t;
    if ((st = scratch_server(in, server, &t)) != COFFER_OK)
        return st;
    char *shown = pgd_params_display(&t.params, "");
    PGconn *c = NULL;
    if (!shown) {
        st = pgd_oom(in);
        goto done;
    }
    if (!(c = pgd_connect(in, &t.params, t.password, in->maintenance_db, &st)))
        goto done;
    char sql[200];
    char what[700];
    snprintf(what, sizeof what, "cannot drop scratch database %s on %s", name, shown);
    PGresult *r;
    if (PQserverVersion(c) >= 130000) {
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", name);
    } else {
        /* Older servers: end the sessions still connected first. */
        const char *p[1] = {name};
        r = pgd_exec(in, c, what,
                     "SELECT pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
                     " WHERE datname = $1 AND pid <> pg_backend_pid()",
                     1, p, &st);
        if (r)
            PQclear(r);
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS \"%s\"", name);
    }
    st = COFFER_OK;
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (state && strcmp(state, "42501") == 0) {
            char msg[1024];
            result_message(r, msg, sizeof msg);
            st = in->host->error(in->h, COFFER_ERR_AUTH,
                                 "%s: %s; only its owner (the role that created it) or a "
                                 "superuser may drop it",
                                 what, msg);
        } else {
            st = pgd_conn_error(in, c, r, what);
        }
    } else {
        in->host->log(in->h, COFFER_LOG_INFO, "dropped scratch database %s on %s", name, shown);
    }
    PQclear(r);
done:
    if (c)
        PQfinish(c);
    free(shown);
    pgd_target_free(&t);
    return st;
}
