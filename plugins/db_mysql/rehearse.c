/*
 * database "mysql": what restore rehearsals and application checks need
 * (ABI 1.1) and the 1.0 query, which shares the same path.
 *
 * A query runs in a session whose transactions are all READ ONLY, inside
 * START TRANSACTION READ ONLY: START TRANSACTION READ ONLY alone is not
 * enough, as DDL commits implicitly and would then run outside it. The
 * statement is prepared first (not executed) to refuse one that returns
 * no rows (DDL, SELECT ... INTO OUTFILE, SET, CALL) before it can run;
 * then it runs through the text protocol with mysql_use_result, one row
 * in memory at a time. Stopping early resets the connection (the server
 * stops sending at once) rather than reading the rest.
 *
 * query_snapshot runs on the connection the dump kept, inside its
 * snapshot transaction (dump.c), with the same checks plus two of its
 * own: a locking read is refused (it would read the current rows), and
 * so is a statement the server cannot prepare (it could not be checked).
 * Stopping early must not reset that connection: KILL QUERY stops the
 * statement and the rows in flight are read. Every statement is rolled
 * back to the dump's savepoint after it, which releases its metadata
 * locks and tells whether the transaction is still there; if it is not,
 * the snapshot is reported lost, never silently replaced.
 *
 * Scratch databases: CREATE DATABASE (never IF NOT EXISTS: an existing
 * one is refused, untouched) and DROP DATABASE IF EXISTS after killing
 * the sessions of the same account still using it.
 */
#include "db_mysql.h"

#include <ctype.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errmsg.h>
#include <mysqld_error.h>


coffer_status dbmysql_query_status(unsigned err)
{
    switch (err) {
    case ER_PARSE_ERROR:
    case ER_SYNTAX_ERROR:
    case ER_EMPTY_QUERY:
    case ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION:
    case ER_BAD_FIELD_ERROR:
    case ER_NO_SUCH_TABLE:
    case ER_BAD_TABLE_ERROR:
    case ER_BAD_DB_ERROR:
    case ER_NO_DB_ERROR:
    case ER_NON_UNIQ_ERROR:
    case ER_WRONG_FIELD_WITH_GROUP:
    case ER_WRONG_GROUP_FIELD:
    case ER_WRONG_VALUE_COUNT:
    case ER_SP_DOES_NOT_EXIST:
    case ER_OPTION_PREVENTS_STATEMENT:
    case ER_NOT_SUPPORTED_YET:
        return COFFER_ERR_INVALID;
    default:
        return dbmysql_status_of(err);
    }
}

/* ---- streaming a statement ---------------------------------------------- */

/* Best effort: stop the statement of connection id (a new session of the
 * same account may kill its own threads). */
static void kill_query(dbmysql_instance *in, const dbmysql_url *u, unsigned long id)
{
    MYSQL *k;
    if (dbmysql_connect(in, u, NULL, &k) != COFFER_OK)
        return;
    char sql[64];
    snprintf(sql, sizeof sql, "KILL QUERY %lu", id);
    dbmysql_exec(k, sql);
    mysql_close(k);
}

static coffer_status qfail(dbmysql_instance *in, MYSQL *m, unsigned e, const char *err, const char *where)
{
    (void)m;
    return in->host->error(in->h, dbmysql_query_status(e), "query on %s: %s (error %u)", where, err, e);
}

/* Refuse, before it runs, a statement that returns no rows. strict: also
 * one that cannot be prepared, hence not checked. */
static coffer_status prepare_check(dbmysql_instance *in, MYSQL *m, const char *sql,
                                   const char *where, int strict)
{
    MYSQL_STMT *s = mysql_stmt_init(m);
    if (!s)
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    coffer_status st = COFFER_OK;
    if (mysql_stmt_prepare(s, sql, (unsigned long)strlen(sql)) != 0) {
        unsigned e = mysql_stmt_errno(s);
        /* Not preparable: the read-only transaction still guards it. */
        if (e != ER_UNSUPPORTED_PS)
            st = qfail(in, m, e, mysql_stmt_error(s), where);
        else if (strict)
            st = in->host->error(
                in->h, COFFER_ERR_INVALID,
                "query on %s: the server cannot check this statement before it runs "
                "(it cannot be prepared); use a SELECT",
                where);
    } else if (mysql_stmt_field_count(s) == 0) {
        st = in->host->error(in->h, COFFER_ERR_INVALID,
                             "query on %s: the statement returns no rows; only read-only queries that "
                             "return rows (SELECT, WITH, SHOW, ...) are run",
                             where);
    } else if (mysql_stmt_param_count(s) != 0) {
        st = in->host->error(in->h, COFFER_ERR_INVALID, "query on %s: the statement has '?' parameters", where);
    }
    mysql_stmt_close(s);
    return st;
}

/* Send sql on m and hand its rows to row_cb as they arrive. Stopping
 * early (the callback, the host cancelling) either resets the connection
 * (throwaway: the server stops at once, m is unusable after) or, for a
 * connection that must survive, stops the statement with KILL QUERY from
 * a second connection of u and reads what is still in flight. *broken is
 * set when m was reset. */
static coffer_status stream(dbmysql_instance *in, MYSQL *m, const dbmysql_url *u, const char *sql,
                            const char *where, coffer_row_cb row_cb, void *ud, int throwaway,
                            int *broken)
{
    const char **vals = NULL;
    MYSQL_RES *r = NULL;
    coffer_status st = COFFER_OK;
    int stop = 0; /* stop the statement: the callback or the host asked */
    *broken = 0;
    if (mysql_send_query(m, sql, (unsigned long)strlen(sql)) != 0)
        return qfail(in, m, mysql_errno(m), mysql_error(m), where);
    /* Wait for the answer watching for cancellation: a long statement
     * (a sort, an aggregate) sends nothing until it is done. */
    int fd = (int)mysql_get_socket(m);
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = fd >= 0 ? poll(&pfd, 1, 200) : 1;
        if (pr != 0)
            break;
        if (in->host->cancelled(in->h)) {
            kill_query(in, u, mysql_thread_id(m));
            if (throwaway) {
                dbmysql_abort(m);
                *broken = 1;
                return in->host->error(in->h, COFFER_ERR_CANCELLED, "query on %s cancelled", where);
            }
            st = in->host->error(in->h, COFFER_ERR_CANCELLED, "query on %s cancelled", where);
            stop = 1;
            break; /* the answer is the "interrupted" error, or the rows after all */
        }
    }
    if (mysql_read_query_result(m) != 0) {
        if (st == COFFER_OK)
            st = qfail(in, m, mysql_errno(m), mysql_error(m), where);
        return st;
    }
    r = mysql_use_result(m);
    if (!r) {
        if (st == COFFER_OK)
            st = mysql_errno(m) ? qfail(in, m, mysql_errno(m), mysql_error(m), where)
                                : in->host->error(in->h, COFFER_ERR_INVALID,
                                                  "query on %s returned no rows", where);
        return st;
    }
    unsigned n = mysql_num_fields(r);
    if (!stop && !(vals = calloc(n + 1, sizeof *vals))) {
        if (st == COFFER_OK)
            st = in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
        stop = 1;
    }
    MYSQL_ROW row;
    while (!stop && (row = mysql_fetch_row(r)) != NULL) {
        for (unsigned i = 0; i < n; i++)
            vals[i] = row[i];
        if (row_cb(ud, (int)n, vals) != 0) {
            stop = 1;
        } else if (in->host->cancelled(in->h)) {
            stop = 1;
            st = in->host->error(in->h, COFFER_ERR_CANCELLED, "query on %s cancelled", where);
        }
    }
    if (stop && throwaway) {
        dbmysql_abort(m); /* the rest is not read: the server stops sending */
        *broken = 1;
    } else if (stop) {
        /* Stop the server, then read the rows already under way (a
         * socket's worth) up to the "interrupted" error. Should the kill
         * not get through, this reads the whole rest, unless the host
         * cancels: then the connection goes. */
        kill_query(in, u, mysql_thread_id(m));
        unsigned long long drained = 0;
        while (mysql_fetch_row(r) != NULL) {
            if (++drained % 4096 == 0 && in->host->cancelled(in->h)) {
                dbmysql_abort(m);
                *broken = 1;
                break;
            }
        }
    } else if (st == COFFER_OK && mysql_errno(m)) {
        st = qfail(in, m, mysql_errno(m), mysql_error(m), where);
    }
    mysql_free_result(r);
    free(vals);
    return st;
}

/* Connect to u's database db, read only, and stream sql's rows. */
static coffer_status run_read_only(dbmysql_instance *in, const dbmysql_url *u, const char *db,
                                   const char *sql, coffer_row_cb row_cb, void *ud)
{
    if (!sql || !*sql)
        return in->host->error(in->h, COFFER_ERR_INVALID, "query: empty statement");
    MYSQL *m;
    coffer_status st = dbmysql_connect(in, u, db, &m);
    if (st)
        return st;
    dbmysql_url shown = *u;
    shown.database = (char *)db;
    char where[600];
    dbmysql_url_describe(&shown, where, sizeof where);
    int broken = 0;
    if (dbmysql_exec(m, "SET SESSION TRANSACTION READ ONLY") != 0 ||
        dbmysql_exec(m, "START TRANSACTION READ ONLY") != 0)
        st = dbmysql_fail(in, m, "query: cannot start a read-only transaction");
    else if ((st = prepare_check(in, m, sql, where, 0)) == COFFER_OK)
        st = stream(in, m, u, sql, where, row_cb, ud, 1, &broken);
    mysql_close(m); /* ends (rolls back) the transaction */
    return st;
}

coffer_status dbmysql_query(void *instance, const char *sql, coffer_row_cb row_cb, void *ud)
{
    dbmysql_instance *in = instance;
    dbmysql_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    const char *db = in->url.database ? in->url.database : in->ndatabases ? in->databases[0] : NULL;
    return run_read_only(in, &in->url, db, sql, row_cb, ud);
}

coffer_status dbmysql_query_target(void *instance, const coffer_restore_opts *opts, const char *sql,
                                   coffer_row_cb row_cb, void *ud)
{
    dbmysql_instance *in = instance;
    dbmysql_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    const char *target = opts && opts->target && *opts->target ? opts->target : NULL;
    const char *dflt = in->url.database ? in->url.database : in->ndatabases ? in->databases[0] : NULL;
    if (!target)
        return run_read_only(in, &in->url, dflt, sql, row_cb, ud);
    char err[300];
    char *file = NULL, *fdb = NULL;
    int isfile = dbmysql_file_url(target, &file, &fdb, err, sizeof err);
    free(file);
    free(fdb);
    if (isfile != 0)
        return in->host->error(in->h, isfile < 0 ? COFFER_ERR_INVALID : COFFER_ERR_UNSUPPORTED,
                               "query: the restore target is a SQL file, not a server; checks need a "
                               "server target (--map NAME=mysql://...)");
    dbmysql_url u;
    if (dbmysql_url_parse(target, &u, err, sizeof err) != 0)
        return in->host->error(in->h, COFFER_ERR_INVALID, "query: restore target: %s", err);
    /* As restore resolves it: the target's database, else the original name. */
    coffer_status st = run_read_only(in, &u, u.database ? u.database : dflt, sql, row_cb, ud);
    dbmysql_url_free(&u);
    return st;
}

/* ---- the dump's kept snapshot -------------------------------------------- */

/* The next word of SQL text at *p, outside strings, quoted names and
 * comments, into w (upper case, truncated); 0 at the end. */
static int next_word(const char **pp, char *w, size_t len)
{
    const char *p = *pp;
    for (;;) {
        if (!*p) {
            *pp = p;
            return 0;
        }
        if (*p == '\'' || *p == '"' || *p == '`') {
            char q = *p++;
            while (*p && *p != q) {
                if (*p == '\\' && q != '`' && p[1])
                    p++;
                p++;
            }
            if (*p)
                p++; /* a doubled quote is two strings in a row here: fine */
        } else if (*p == '#' || (p[0] == '-' && p[1] == '-' &&
                                 (p[2] == ' ' || p[2] == '\t' || p[2] == '\n' || !p[2]))) {
            p += strcspn(p, "\n");
        } else if (p[0] == '/' && p[1] == '*' && p[2] != '!' && !(p[2] == 'M' && p[3] == '!')) {
            const char *e = strstr(p + 2, "*/");
            p = e ? e + 2 : p + strlen(p);
        } else if (p[0] == '/' && p[1] == '*') {
            p += p[2] == '!' ? 3 : 4; /* executable comment: its text is read */
            while (isdigit((unsigned char)*p))
                p++; /* version */
        } else if (p[0] == '*' && p[1] == '/') {
            p += 2;
        } else if (isalpha((unsigned char)*p) || *p == '_') {
            size_t n = 0;
            while (isalnum((unsigned char)*p) || *p == '_' || *p == '$') {
                if (n + 1 < len)
                    w[n++] = (char)toupper((unsigned char)*p);
                p++;
            }
            w[n] = 0;
            *pp = p;
            return 1;
        } else {
            p++;
        }
    }
}

int dbmysql_locking_read(const char *sql)
{
    char w[3][16] = {"", "", ""}; /* the last three words, w[2] the newest */
    const char *p = sql;
    char cur[16];
    while (next_word(&p, cur, sizeof cur)) {
        memmove(w[0], w[1], sizeof w[0] * 2);
        memcpy(w[2], cur, sizeof cur);
        if (strcmp(w[1], "FOR") == 0 && (strcmp(w[2], "UPDATE") == 0 || strcmp(w[2], "SHARE") == 0))
            return 1;
        if (strcmp(w[0], "LOCK") == 0 && strcmp(w[1], "IN") == 0 && strcmp(w[2], "SHARE") == 0)
            return 1;
    }
    return 0;
}

/* The kept snapshot is gone: close its connection, remember why. */
static coffer_status snapshot_lost(dbmysql_instance *in, coffer_status st, const char *why)
{
    char where[sizeof in->snap_where];
    snprintf(where, sizeof where, "%s", in->snap_where);
    char msg[600];
    snprintf(msg, sizeof msg, "%s", why);
    dbmysql_snapshot_release(in);
    snprintf(in->snap_where, sizeof in->snap_where, "%s", where);
    in->snap_lost = 1;
    return in->host->error(in->h, st, "%s is lost: %s", where, msg);
}

coffer_status dbmysql_query_snapshot(void *instance, const char *sql, coffer_row_cb row_cb,
                                     void *ud)
{
    dbmysql_instance *in = instance;
    dbmysql_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    if (in->snap_lost)
        return in->host->error(in->h, COFFER_ERR_FAILED,
                               "query on %s: the snapshot was lost earlier (see the error then)",
                               in->snap_where);
    if (!in->snap) {
        char where[600];
        dbmysql_url_describe(&in->url, where, sizeof where);
        return in->host->error(
            in->h, COFFER_ERR_UNSUPPORTED,
            "query on the snapshot of %s: no dump of this instance kept its snapshot", where);
    }
    const char *where = in->snap_where;
    if (!sql || !*sql)
        return in->host->error(in->h, COFFER_ERR_INVALID, "query on %s: empty statement", where);
    /* They read the latest rows, not the snapshot's (and keep their locks
     * until the backup ends). */
    if (dbmysql_locking_read(sql))
        return in->host->error(
            in->h, COFFER_ERR_INVALID,
            "query on %s: a locking read (FOR UPDATE, FOR SHARE, LOCK IN SHARE MODE) "
            "reads the current rows, not the snapshot; refused",
            where);
    MYSQL *m = in->snap;
    /* Whatever returns no rows (DDL commits implicitly, SET, CALL, ...)
     * is refused before it runs, as for query_target; and here also what
     * cannot be checked that way. */
    coffer_status st = prepare_check(in, m, sql, where, 1);
    if (st != COFFER_OK && st != COFFER_ERR_RETRY)
        return st; /* refused: nothing ran */
    int broken = 0;
    if (st == COFFER_OK)
        st = stream(in, m, &in->url, sql, where, row_cb, ud, 0, &broken);
    if (broken)
        return snapshot_lost(in, st, "its connection was reset to stop a statement");
    /* Back to the savepoint, releasing what the statement locked (its
     * tables' metadata locks); the answer also says whether the
     * transaction is still there. */
    if (dbmysql_exec(m, "ROLLBACK TO SAVEPOINT coffer_snapshot") != 0) {
        char why[600];
        snprintf(why, sizeof why, "%s (error %u)", mysql_error(m), mysql_errno(m));
        return snapshot_lost(in, st != COFFER_OK ? st : COFFER_ERR_FAILED, why);
    }
    if (!(m->server_status & SERVER_STATUS_IN_TRANS))
        return snapshot_lost(in, COFFER_ERR_FAILED, "its transaction has ended");
    return st;
}

/* ---- scratch databases -------------------------------------------------- */

static coffer_status check_name(dbmysql_instance *in, const char *name)
{
    if (coffer_scratch_name_valid(name))
        return COFFER_OK;
    return in->host->error(in->h, COFFER_ERR_INVALID,
                           "scratch database: '%s' is not a scratch database name (coffer_rehearse_ followed "
                           "by lowercase letters, digits and '_', at most 63 bytes)",
                           name ? name : "");
}

/* The server URL (database part dropped) or the instance's own. */
static coffer_status scratch_server(dbmysql_instance *in, const char *server, dbmysql_url *u, char *where,
                                    size_t wlen)
{
    char err[300];
    const char *text = server ? server : in->url_text;
    if (server && strncmp(server, "file://", 7) == 0)
        return in->host->error(in->h, COFFER_ERR_INVALID,
                               "scratch server: a file:// URL is not a server (mysql://user@host:port/)");
    if (dbmysql_url_parse(text, u, err, sizeof err) != 0)
        return in->host->error(in->h, COFFER_ERR_INVALID, "scratch server: %s", err);
    free(u->database);
    u->database = NULL;
    dbmysql_url_describe(u, where, wlen);
    return COFFER_OK;
}

coffer_status dbmysql_scratch_create(void *instance, const char *server, const char *name, char *target,
                                     size_t target_len)
{
    dbmysql_instance *in = instance;
    dbmysql_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    coffer_status st = check_name(in, name);
    if (st)
        return st;
    dbmysql_url u;
    char where[600];
    if ((st = scratch_server(in, server, &u, where, sizeof where)) != COFFER_OK)
        return st;
    MYSQL *m = NULL;
    char *url = dbmysql_url_format(&u, name);
    if (!url) {
        st = in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
        goto done;
    }
    if (strlen(url) + 1 > target_len) {
        st = in->host->error(in->h, COFFER_ERR_INVALID,
                             "scratch database target URL needs %zu bytes, the buffer has %zu", strlen(url) + 1,
                             target_len);
        goto done;
    }
    if ((st = dbmysql_connect(in, &u, NULL, &m)) != COFFER_OK)
        goto done;
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE DATABASE `%s`", name);
    if (mysql_real_query(m, sql, strlen(sql)) != 0) {
        unsigned e = mysql_errno(m);
        if (e == ER_DB_CREATE_EXISTS)
            st = in->host->error(in->h, COFFER_ERR_EXISTS, "scratch database `%s` already exists on %s (left untouched)",
                                 name, where);
        else if (dbmysql_status_of(e) == COFFER_ERR_AUTH)
            st = in->host->error(in->h, COFFER_ERR_AUTH,
                                 "cannot create scratch database `%s` on %s: %s (error %u); the account needs the "
                                 "CREATE privilege on the scratch database name (e.g. GRANT ALL ON "
                                 "`coffer\\_rehearse\\_%%`.* TO ...) or global CREATE, or name a server where it has "
                                 "it (--scratch COMPONENT=URL, rehearse.scratch)",
                                 name, where, mysql_error(m), e);
        else
            st = dbmysql_fail(in, m, "cannot create the scratch database");
        goto done;
    }
    snprintf(target, target_len, "%s", url);
    in->host->log(in->h, COFFER_LOG_INFO, "created scratch database `%s` on %s", name, where);
done:
    if (m)
        mysql_close(m);
    free(url);
    dbmysql_url_free(&u);
    return st;
}

coffer_status dbmysql_scratch_drop(void *instance, const char *server, const char *name)
{
    dbmysql_instance *in = instance;
    dbmysql_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    coffer_status st = check_name(in, name);
    if (st)
        return st;
    dbmysql_url u;
    char where[600];
    if ((st = scratch_server(in, server, &u, where, sizeof where)) != COFFER_OK)
        return st;
    MYSQL *m = NULL;
    if ((st = dbmysql_connect(in, &u, NULL, &m)) != COFFER_OK)
        goto done;
    /* Sessions still in it (a killed rehearsal's) would hold metadata
     * locks: end those this account may see, and do not wait a day. */
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '%s' AND ID <> CONNECTION_ID()", name);
    if (mysql_real_query(m, sql, strlen(sql)) == 0) {
        MYSQL_RES *r = mysql_store_result(m);
        MYSQL_ROW row;
        char **ids = NULL;
        size_t nids = 0;
        while (r && (row = mysql_fetch_row(r)) != NULL) {
            char **v = row[0] ? realloc(ids, (nids + 1) * sizeof *ids) : NULL;
            if (!v)
                continue;
            ids = v;
            ids[nids++] = dbmysql_printf("KILL %s", row[0]);
        }
        if (r)
            mysql_free_result(r);
        for (size_t i = 0; i < nids; i++) {
            dbmysql_exec(m, ids[i]);
            free(ids[i]);
        }
        free(ids);
    }
    dbmysql_exec(m, "SET SESSION lock_wait_timeout = 60");
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS `%s`", name);
    if (mysql_real_query(m, sql, strlen(sql)) != 0) {
        unsigned e = mysql_errno(m);
        if (dbmysql_status_of(e) == COFFER_ERR_AUTH)
            st = in->host->error(in->h, COFFER_ERR_AUTH,
                                 "cannot drop scratch database `%s` on %s: %s (error %u); the account needs the "
                                 "DROP privilege on it",
                                 name, where, mysql_error(m), e);
        else
            st = dbmysql_fail(in, m, "cannot drop the scratch database");
        goto done;
    }
    in->host->log(in->h, COFFER_LOG_INFO, "dropped scratch database `%s` on %s", name, where);
done:
    if (m)
        mysql_close(m);
    dbmysql_url_free(&u);
    return st;
}
