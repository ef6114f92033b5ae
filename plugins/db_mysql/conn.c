/*
 * database "mysql": connections. The password reaches the client library
 * in memory only (never argv, never an environment variable we set) and is
 * wiped right after the handshake; messages name the URL, which cannot
 * hold a password (url.c refuses one).
 */
#include "db_mysql.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/socket.h>

#include <errmsg.h>
#include <mysqld_error.h>

char *dbmysql_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) {
        fprintf(stderr, "coffer database mysql: out of memory\n");
        abort();
    }
    va_end(ap);
    return s;
}

void dbmysql_check_magic(const void *p, uint32_t magic, const char *what)
{
    if (!p || *(const uint32_t *)p != magic) {
        fprintf(stderr, "coffer database mysql: invalid or already freed %s handle %p\n", what, p);
        abort();
    }
}

coffer_status dbmysql_status_of(unsigned err)
{
    switch (err) {
    case ER_ACCESS_DENIED_ERROR:
    case ER_DBACCESS_DENIED_ERROR:
    case ER_TABLEACCESS_DENIED_ERROR:
    case ER_COLUMNACCESS_DENIED_ERROR:
    case ER_SPECIFIC_ACCESS_DENIED_ERROR:
    case ER_ACCESS_DENIED_NO_PASSWORD_ERROR:
    case ER_NOT_SUPPORTED_AUTH_MODE:
        return COFFER_ERR_AUTH;
    case ER_BAD_DB_ERROR:
    case ER_NO_SUCH_TABLE:
    case ER_BAD_TABLE_ERROR:
        return COFFER_ERR_NOT_FOUND;
    case ER_DB_CREATE_EXISTS:
    case ER_TABLE_EXISTS_ERROR:
        return COFFER_ERR_EXISTS;
    case ER_LOCK_WAIT_TIMEOUT:
    case ER_LOCK_DEADLOCK:
    case ER_CON_COUNT_ERROR:
    case ER_TOO_MANY_USER_CONNECTIONS:
    case CR_CONNECTION_ERROR:
    case CR_CONN_HOST_ERROR:
    case CR_SERVER_GONE_ERROR:
    case CR_SERVER_LOST:
    case CR_SERVER_LOST_EXTENDED:
    case ER_SERVER_SHUTDOWN:
    case ER_CONNECTION_KILLED:
        return COFFER_ERR_RETRY;
    case ER_RECORD_FILE_FULL:
    case ER_DISK_FULL:
        return COFFER_ERR_NO_SPACE;
    case CR_OUT_OF_MEMORY:
        return COFFER_ERR_FATAL;
    default:
        return COFFER_ERR_FAILED;
    }
}

void dbmysql_abort(MYSQL *m)
{
    /* Linger 0: closing sends a reset, so the server stops sending at
     * once (a plain close after shutdown() leaves it blocked on a full
     * socket for net_write_timeout). Then every further read fails
     * immediately, so freeing an unfinished result does not drain it. */
    my_socket fd = mysql_get_socket(m);
    if ((int)fd >= 0) {
        struct linger l = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    mariadb_cancel(m);
}

coffer_status dbmysql_fail_buf(MYSQL *m, const char *what, char *buf, size_t len)
{
    unsigned e = m ? mysql_errno(m) : 0;
    if (e)
        snprintf(buf, len, "%s: %s (error %u)", what, mysql_error(m), e);
    else
        snprintf(buf, len, "%s", what);
    return e ? dbmysql_status_of(e) : COFFER_ERR_FAILED;
}

coffer_status dbmysql_fail(dbmysql_instance *in, MYSQL *m, const char *what)
{
    char msg[1024];
    coffer_status st = dbmysql_fail_buf(m, what, msg, sizeof msg);
    return in->host->error(in->h, st, "%s", msg);
}

char *dbmysql_sql_string(MYSQL *m, const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(2 * n + 3);
    if (!o) {
        fprintf(stderr, "coffer database mysql: out of memory\n");
        abort();
    }
    o[0] = '\'';
    unsigned long k = mysql_real_escape_string(m, o + 1, s, (unsigned long)n);
    o[k + 1] = '\'';
    o[k + 2] = 0;
    return o;
}

unsigned dbmysql_exec(MYSQL *m, const char *sql)
{
    if (mysql_real_query(m, sql, strlen(sql)) != 0)
        return mysql_errno(m) ? mysql_errno(m) : CR_UNKNOWN_ERROR;
    do {
        MYSQL_RES *r = mysql_store_result(m);
        if (r)
            mysql_free_result(r);
        else if (mysql_field_count(m) != 0)
            return mysql_errno(m);
    } while (mysql_next_result(m) == 0);
    return mysql_errno(m);
}

int dbmysql_scalar(MYSQL *m, const char *sql, char *buf, size_t len, unsigned *err)
{
    *err = 0;
    if (len)
        buf[0] = 0;
    if (mysql_real_query(m, sql, strlen(sql)) != 0) {
        *err = mysql_errno(m) ? mysql_errno(m) : CR_UNKNOWN_ERROR;
        return -1;
    }
    MYSQL_RES *r = mysql_store_result(m);
    if (!r) {
        *err = mysql_errno(m) ? mysql_errno(m) : CR_UNKNOWN_ERROR;
        return -1;
    }
    MYSQL_ROW row = mysql_fetch_row(r);
    int rc = -1;
    if (row && mysql_num_fields(r) > 0) {
        unsigned long *l = mysql_fetch_lengths(r);
        if (row[0])
            snprintf(buf, len, "%.*s", (int)l[0], row[0]);
        rc = 0;
    }
    mysql_free_result(r);
    return rc;
}

/* A secret named by NAME (an environment variable) or a file's first line. */
static char *url_secret(dbmysql_instance *in, const dbmysql_url *u)
{
    if (u->password_env) {
        /* A --map URL's variable is not among the policy's options: tell
         * the host, so the validate commands after the restore lack it. */
        const coffer_host *host = in->host;
        if (host->struct_size >= offsetof(coffer_host, child_env_secret) + sizeof(void *) &&
            host->child_env_secret)
            host->child_env_secret(in->h, u->password_env);
        const char *v = getenv(u->password_env);
        if (v)
            return strdup(v);
        in->host->log(in->h, COFFER_LOG_WARN, "URL password_env: environment variable %s is not set",
                      u->password_env);
    }
    if (u->password_file) {
        FILE *f = fopen(u->password_file, "r");
        if (!f) {
            in->host->log(in->h, COFFER_LOG_WARN, "URL password_file: cannot read %s: %s", u->password_file,
                          strerror(errno));
            return NULL;
        }
        char *line = NULL;
        size_t cap = 0;
        ssize_t n = getline(&line, &cap, f);
        fclose(f);
        if (n < 0) {
            free(line);
            return strdup("");
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        return line;
    }
    return NULL;
}

static void wipe_free(char *s)
{
    if (!s)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = 0;
    free(s);
}

static dbmysql_tls_mode tls_mode_of(dbmysql_instance *in, const dbmysql_url *u, int *bad)
{
    *bad = 0;
    if (!u->ssl_mode)
        return in->tls;
    static const char *const names[] = {"disabled", "preferred", "required", "verify_ca", "verify_identity"};
    for (int i = 0; i < 5; i++)
        if (strcasecmp(u->ssl_mode, names[i]) == 0)
            return (dbmysql_tls_mode)i;
    *bad = 1;
    return in->tls;
}

coffer_status dbmysql_connect(dbmysql_instance *in, const dbmysql_url *u, const char *db, MYSQL **out)
{
    *out = NULL;
    char where[600];
    dbmysql_url_describe(u, where, sizeof where);
    int bad = 0;
    dbmysql_tls_mode tls = tls_mode_of(in, u, &bad);
    if (bad)
        return in->host->error(in->h, COFFER_ERR_INVALID,
                               "%s: ssl_mode must be disabled, preferred, required, verify_ca or verify_identity",
                               where);
    MYSQL *m = mysql_init(NULL);
    if (!m)
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    unsigned timeout = (unsigned)in->timeout;
    unsigned connect_timeout = timeout < 30 ? timeout : 30;
    mysql_optionsv(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    mysql_optionsv(m, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
    mysql_optionsv(m, MYSQL_OPT_READ_TIMEOUT, &timeout);
    mysql_optionsv(m, MYSQL_OPT_WRITE_TIMEOUT, &timeout);
    mysql_optionsv(m, MYSQL_OPT_LOCAL_INFILE, &(unsigned){0});
    /* Visible in the server's process list: who is holding a snapshot. */
    mysql_optionsv(m, MYSQL_OPT_CONNECT_ATTR_ADD, "program_name", "coffer");
    if (tls != DBMYSQL_TLS_DISABLED) {
        const char *ca = u->ssl_ca ? u->ssl_ca : in->ssl_ca;
        const char *cert = u->ssl_cert ? u->ssl_cert : in->ssl_cert;
        const char *key = u->ssl_key ? u->ssl_key : in->ssl_key;
        mysql_ssl_set(m, key, cert, ca, in->ssl_capath, in->ssl_cipher);
        if (tls >= DBMYSQL_TLS_REQUIRED) {
            my_bool on = 1;
            mysql_optionsv(m, MYSQL_OPT_SSL_ENFORCE, &on);
        }
        if (tls >= DBMYSQL_TLS_VERIFY_CA) {
            my_bool on = 1;
            mysql_optionsv(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &on);
        }
    }
    const char *host = u->host;
    if (u->socket && (!host || strcmp(host, "localhost") == 0))
        host = "localhost";
    char *pw = url_secret(in, u);
    if (!pw && in->cfg)
        pw = in->host->secret_get(in->h, in->cfg, "password");
    MYSQL *ok = mysql_real_connect(m, host, u->user, pw, db, u->port, u->socket, CLIENT_MULTI_RESULTS);
    if (pw) {
        /* secret_get's strings go back through secret_free; ours are wiped here. */
        if (u->password_env || u->password_file)
            wipe_free(pw);
        else
            in->host->secret_free(pw);
    }
    if (!ok) {
        char what[700];
        snprintf(what, sizeof what, "cannot connect to %s", where);
        coffer_status st = dbmysql_fail(in, m, what);
        mysql_close(m);
        return st;
    }
    if (tls >= DBMYSQL_TLS_REQUIRED && !mysql_get_ssl_cipher(m)) {
        mysql_close(m);
        return in->host->error(in->h, COFFER_ERR_AUTH,
                               "%s: ssl_mode %s, but the connection is not encrypted (the server offers no TLS)",
                               where, u->ssl_mode ? u->ssl_mode : "required");
    }
    /* No NO_BACKSLASH_ESCAPES (literals are escaped with backslashes), no
     * ANSI_QUOTES (SHOW CREATE quotes with backticks), NO_AUTO_VALUE_ON_ZERO
     * (a 0 in an AUTO_INCREMENT column stays 0 on load); TIMESTAMPs in UTC. */
    char *sql = dbmysql_printf("SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION',"
                               " time_zone = '+00:00', net_read_timeout = %d, net_write_timeout = %d,"
                               " wait_timeout = GREATEST(@@wait_timeout, %d)",
                               in->timeout, in->timeout, in->timeout);
    unsigned e = dbmysql_exec(m, sql);
    free(sql);
    if (e) {
        char what[700];
        snprintf(what, sizeof what, "cannot set up the session on %s", where);
        coffer_status st = dbmysql_fail(in, m, what);
        mysql_close(m);
        return st;
    }
    *out = m;
    return COFFER_OK;
}
