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
 * Scratch databases: CREATE DATABASE (never IF NOT EXISTS: an existing
 * one is refused, untouched) and DROP DATABASE IF EXISTS after killing
 * the sessions of the same account still using it.
 */
#include "db_mysql.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errmsg.h>
#include <mysqld_error.h>

#define SCRATCH_PREFIX "coffer_rehearse_"

int dbmysql_scratch_name_ok(const char *name)
{
    size_t pl = sizeof SCRATCH_PREFIX - 1;
    if (!name || strncmp(name, SCRATCH_PREFIX, pl) != 0)
        return 0;
    size_t n = strlen(name);
    if (n <= pl || n > 63)
        return 0;
    for (size_t i = pl; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

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

/* Refuse, before it runs, a statement that returns no rows. */
static coffer_status prepare_check(dbmysql_instance *in, MYSQL *m, const char *sql, const char *where)
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

/* Connect to u's database db, read only, and stream sql's rows. */
static coffer_status run_read_only(dbmysql_instance *in, const dbmysql_url *u, const char *db, const char *sql,
                                   coffer_row_cb row_cb, void *ud)
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
    const char **vals = NULL;
    MYSQL_RES *r = NULL;
    int aborted = 0;
    if (dbmysql_exec(m, "SET SESSION TRANSACTION READ ONLY") != 0 ||
        dbmysql_exec(m, "START TRANSACTION READ ONLY") != 0) {
        st = dbmysql_fail(in, m, "query: cannot start a read-only transaction");
        goto done;
    }
    if ((st = prepare_check(in, m, sql, where)) != COFFER_OK)
        goto done;
    if (mysql_send_query(m, sql, (unsigned long)strlen(sql)) != 0) {
        st = qfail(in, m, mysql_errno(m), mysql_error(m), where);
        goto done;
    }
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
            dbmysql_abort(m);
            aborted = 1;
            st = in->host->error(in->h, COFFER_ERR_CANCELLED, "query on %s cancelled", where);
            goto done;
        }
    }
    if (mysql_read_query_result(m) != 0) {
        st = qfail(in, m, mysql_errno(m), mysql_error(m), where);
        goto done;
    }
    r = mysql_use_result(m);
    if (!r) {
        st = mysql_errno(m) ? qfail(in, m, mysql_errno(m), mysql_error(m), where)
                            : in->host->error(in->h, COFFER_ERR_INVALID, "query on %s returned no rows", where);
        goto done;
    }
    unsigned n = mysql_num_fields(r);
    if (!(vals = calloc(n + 1, sizeof *vals))) {
        st = in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
        goto done;
    }
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(r)) != NULL) {
        for (unsigned i = 0; i < n; i++)
            vals[i] = row[i];
        if (row_cb(ud, (int)n, vals) != 0) {
            aborted = 1;
            break;
        }
        if (in->host->cancelled(in->h)) {
            aborted = 1;
            st = in->host->error(in->h, COFFER_ERR_CANCELLED, "query on %s cancelled", where);
            break;
        }
    }
    if (aborted)
        dbmysql_abort(m); /* the rest is not read: the server stops sending */
    else if (mysql_errno(m))
        st = qfail(in, m, mysql_errno(m), mysql_error(m), where);
done:
    if (r)
        mysql_free_result(r);
    free(vals);
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

/* ---- scratch databases -------------------------------------------------- */

static coffer_status check_name(dbmysql_instance *in, const char *name)
{
    if (dbmysql_scratch_name_ok(name))
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
