/*
 * database "postgres": connection parameters and libpq sessions.
 *
 * The `url` option (or a --map URL) is parsed once by libpq itself
 * (PQconninfoParse understands both URIs and key=value strings); the
 * password is taken out at that point, so every string built from the
 * parameters afterwards (children's --dbname, messages) is free of it.
 * pgd_redact() covers the other direction: text we did not build (a URL
 * that failed to parse, a child's stderr).
 */
#include "db_postgres.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- parameters ------------------------------------------------------ */

void pgd_params_free(pgd_params *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->keys[i]);
        free(p->vals[i]);
    }
    free(p->keys);
    free(p->vals);
    memset(p, 0, sizeof *p);
}

const char *pgd_params_get(const pgd_params *p, const char *key)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->keys[i], key) == 0)
            return p->vals[i];
    return NULL;
}

int pgd_params_set(pgd_params *p, const char *key, const char *val)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->keys[i], key) == 0) {
            char *v = strdup(val);
            if (!v)
                return -1;
            free(p->vals[i]);
            p->vals[i] = v;
            return 0;
        }
    char **k = realloc(p->keys, (p->n + 1) * sizeof *k);
    if (!k)
        return -1;
    p->keys = k;
    char **v = realloc(p->vals, (p->n + 1) * sizeof *v);
    if (!v)
        return -1;
    p->vals = v;
    p->keys[p->n] = strdup(key);
    p->vals[p->n] = strdup(val);
    if (!p->keys[p->n] || !p->vals[p->n]) {
        free(p->keys[p->n]);
        free(p->vals[p->n]);
        return -1;
    }
    p->n++;
    return 0;
}

int pgd_params_copy(pgd_params *dst, const pgd_params *src)
{
    memset(dst, 0, sizeof *dst);
    for (size_t i = 0; i < src->n; i++)
        if (pgd_params_set(dst, src->keys[i], src->vals[i]) != 0) {
            pgd_params_free(dst);
            return -1;
        }
    return 0;
}

coffer_status pgd_params_parse(pgd_instance *in, const char *what, const char *url, pgd_params *out,
                               char **password, int *dropped_ssl)
{
    memset(out, 0, sizeof *out);
    *password = NULL;
    if (dropped_ssl)
        *dropped_ssl = 0;
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &err);
    if (!opts) {
        char *shown = pgd_redact(url);
        char *msg = err ? pgd_redact(err) : NULL;
        if (msg)
            msg[strcspn(msg, "\n")] = 0;
        coffer_status st = in->host->error(in->h, COFFER_ERR_INVALID, "%s: cannot parse '%s': %s",
                                           what, shown ? shown : "?", msg ? msg : "out of memory");
        free(shown);
        free(msg);
        if (err)
            PQfreemem(err);
        return st;
    }
    coffer_status st = COFFER_OK;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        if (strcmp(o->keyword, "password") == 0) {
            if (*o->val && !(*password = strdup(o->val)))
                st = COFFER_ERR_FATAL;
            memset(o->val, 0, strlen(o->val));
            continue;
        }
        if (strcmp(o->keyword, "sslpassword") == 0) {
            memset(o->val, 0, strlen(o->val));
            if (dropped_ssl)
                *dropped_ssl = 1;
            continue;
        }
        if (pgd_params_set(out, o->keyword, o->val) != 0)
            st = COFFER_ERR_FATAL;
    }
    PQconninfoFree(opts);
    if (st) {
        pgd_params_free(out);
        if (*password) {
            memset(*password, 0, strlen(*password));
            free(*password);
            *password = NULL;
        }
        return pgd_oom(in);
    }
    return COFFER_OK;
}

/* Append s to a growing string; sets *ok = 0 on allocation failure. */
static void cat(char **buf, size_t *len, size_t *cap, const char *s, size_t n, int *ok)
{
    if (!*ok)
        return;
    if (*len + n + 1 > *cap) {
        size_t c = (*cap ? *cap * 2 : 128);
        while (c < *len + n + 1)
            c *= 2;
        char *b = realloc(*buf, c);
        if (!b) {
            *ok = 0;
            return;
        }
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
}

char *pgd_params_conninfo(const pgd_params *p, const char *dbname, const char *appname)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int ok = 1;
    cat(&buf, &len, &cap, "", 0, &ok);
    for (size_t i = 0; i <= p->n + 1; i++) {
        const char *k, *v;
        if (i < p->n) {
            k = p->keys[i];
            v = p->vals[i];
            if (strcmp(k, "password") == 0 || strcmp(k, "sslpassword") == 0)
                continue; /* never: parse removed them, but be sure */
            if (strcmp(k, "dbname") == 0 && dbname)
                continue;
            if (strcmp(k, "application_name") == 0 && appname)
                continue;
        } else if (i == p->n) {
            if (!dbname)
                continue;
            k = "dbname";
            v = dbname;
        } else {
            if (!appname)
                continue;
            k = "application_name";
            v = appname;
        }
        if (len)
            cat(&buf, &len, &cap, " ", 1, &ok);
        cat(&buf, &len, &cap, k, strlen(k), &ok);
        cat(&buf, &len, &cap, "='", 2, &ok);
        for (const char *c = v; *c; c++) {
            if (*c == '\'' || *c == '\\')
                cat(&buf, &len, &cap, "\\", 1, &ok);
            cat(&buf, &len, &cap, c, 1, &ok);
        }
        cat(&buf, &len, &cap, "'", 1, &ok);
    }
    if (!ok) {
        free(buf);
        return NULL;
    }
    return buf;
}

char *pgd_params_display(const pgd_params *p, const char *dbname)
{
    const char *user = pgd_params_get(p, "user");
    const char *host = pgd_params_get(p, "host");
    const char *hostaddr = pgd_params_get(p, "hostaddr");
    const char *port = pgd_params_get(p, "port");
    const char *db = dbname ? dbname : pgd_params_get(p, "dbname");
    if (!host || !*host)
        host = hostaddr;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int ok = 1;
    cat(&buf, &len, &cap, "postgres://", 11, &ok);
    if (user && *user) {
        cat(&buf, &len, &cap, user, strlen(user), &ok);
        cat(&buf, &len, &cap, "@", 1, &ok);
    }
    /* A socket directory is not a host name: show it as the URI would. */
    int socket_dir = host && host[0] == '/';
    if (host && *host && !socket_dir)
        cat(&buf, &len, &cap, host, strlen(host), &ok);
    if (port && *port) {
        cat(&buf, &len, &cap, ":", 1, &ok);
        cat(&buf, &len, &cap, port, strlen(port), &ok);
    }
    cat(&buf, &len, &cap, "/", 1, &ok);
    if (db && *db)
        cat(&buf, &len, &cap, db, strlen(db), &ok);
    if (socket_dir) {
        cat(&buf, &len, &cap, "?host=", 6, &ok);
        cat(&buf, &len, &cap, host, strlen(host), &ok);
    }
    if (!ok) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Percent-encode everything but RFC 3986 unreserved characters. */
static void cat_pct(char **buf, size_t *len, size_t *cap, const char *s, int *ok)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
            *c == '-' || *c == '.' || *c == '_' || *c == '~') {
            cat(buf, len, cap, (const char *)c, 1, ok);
        } else {
            char e[3] = {'%', hex[*c >> 4], hex[*c & 15]};
            cat(buf, len, cap, e, 3, ok);
        }
    }
}

char *pgd_params_uri(const pgd_params *p, const char *dbname)
{
    const char *user = pgd_params_get(p, "user");
    const char *host = pgd_params_get(p, "host");
    const char *port = pgd_params_get(p, "port");
    const char *db = dbname ? dbname : pgd_params_get(p, "dbname");
    /* The authority holds one plain host name or address only. */
    int host_in_query = host && (host[0] == '/' || host[0] == '@' || strchr(host, ',') ||
                                 strchr(host, '%') || strchr(host, '[') || !*host);
    int port_in_query = port && (host_in_query || !host || strchr(port, ','));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int ok = 1;
    cat(&buf, &len, &cap, "postgres://", 11, &ok);
    if (user && *user) {
        cat_pct(&buf, &len, &cap, user, &ok);
        cat(&buf, &len, &cap, "@", 1, &ok);
    }
    if (host && !host_in_query) {
        int v6 = strchr(host, ':') != NULL;
        if (v6)
            cat(&buf, &len, &cap, "[", 1, &ok);
        if (v6)
            cat(&buf, &len, &cap, host, strlen(host), &ok);
        else
            cat_pct(&buf, &len, &cap, host, &ok);
        if (v6)
            cat(&buf, &len, &cap, "]", 1, &ok);
    }
    if (port && *port && !port_in_query) {
        cat(&buf, &len, &cap, ":", 1, &ok);
        cat_pct(&buf, &len, &cap, port, &ok);
    }
    cat(&buf, &len, &cap, "/", 1, &ok);
    if (db && *db)
        cat_pct(&buf, &len, &cap, db, &ok);
    int first = 1;
    for (size_t i = 0; i < p->n; i++) {
        const char *k = p->keys[i];
        if (strcmp(k, "password") == 0 || strcmp(k, "sslpassword") == 0 ||
            strcmp(k, "dbname") == 0 || strcmp(k, "user") == 0 ||
            (strcmp(k, "host") == 0 && !host_in_query) ||
            (strcmp(k, "port") == 0 && !port_in_query))
            continue;
        cat(&buf, &len, &cap, first ? "?" : "&", 1, &ok);
        first = 0;
        cat_pct(&buf, &len, &cap, k, &ok);
        cat(&buf, &len, &cap, "=", 1, &ok);
        cat_pct(&buf, &len, &cap, p->vals[i], &ok);
    }
    if (!ok) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* ---- redaction ------------------------------------------------------- */

static int has_prefix_ci(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* At s (a word start), "password=" or "sslpassword=" (any case): the
 * length of the key including '=', else 0. Spaces around '=' are allowed
 * in key=value strings. */
static size_t password_key(const char *s)
{
    size_t k = 0;
    if (has_prefix_ci(s, "sslpassword"))
        k = 11;
    else if (has_prefix_ci(s, "password"))
        k = 8;
    else
        return 0;
    size_t j = k;
    while (s[j] == ' ' || s[j] == '\t')
        j++;
    return s[j] == '=' ? j + 1 : 0;
}

char *pgd_redact(const char *text)
{
    if (!text)
        return NULL;
    size_t n = strlen(text);
    char *out = malloc(2 * n + 8); /* each "***" may be longer than what it hides */
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        /* URI user info: scheme://user:password@host -> scheme://user@host */
        if ((has_prefix_ci(text + i, "postgresql://") || has_prefix_ci(text + i, "postgres://"))) {
            size_t s = has_prefix_ci(text + i, "postgresql://") ? 13 : 11;
            memcpy(out + o, text + i, s);
            o += s;
            i += s;
            /* Be wider than libpq (user info ends at the first '@' before a
             * '/'): strip up to the last '@' of the token, so a password
             * holding an unencoded '/' or '@' is not shown either. */
            size_t e = n, t = i;
            while (t < n && text[t] != ' ' && text[t] != '"' && text[t] != '\'' &&
                   text[t] != '\n') {
                if (text[t] == '@')
                    e = t;
                t++;
            }
            if (e < n) {
                size_t colon = i;
                while (colon < e && text[colon] != ':')
                    colon++;
                memcpy(out + o, text + i, colon - i);
                o += colon - i;
                i = e; /* continue at '@' */
            }
            continue;
        }
        int word_start = i == 0 || text[i - 1] == ' ' || text[i - 1] == '?' || text[i - 1] == '&' ||
                         text[i - 1] == '\t' || text[i - 1] == '"' || text[i - 1] == '\'' ||
                         text[i - 1] == '(' || text[i - 1] == ',';
        size_t k = word_start ? password_key(text + i) : 0;
        if (k) {
            memcpy(out + o, text + i, k);
            o += k;
            i += k;
            while (i < n && (text[i] == ' ' || text[i] == '\t'))
                i++;
            if (i < n && text[i] == '\'') { /* quoted key=value value */
                i++;
                while (i < n && text[i] != '\'') {
                    if (text[i] == '\\' && i + 1 < n)
                        i++;
                    i++;
                }
                if (i < n)
                    i++;
            } else {
                while (i < n && text[i] != ' ' && text[i] != '&' && text[i] != '\t' &&
                       text[i] != '\n' && text[i] != '"')
                    i++;
            }
            memcpy(out + o, "***", 3);
            o += 3;
            continue;
        }
        out[o++] = text[i++];
    }
    out[o] = 0;
    return out;
}

/* ---- versions -------------------------------------------------------- */

int pgd_parse_version(const char *text)
{
    if (!text)
        return 0;
    const char *p = strstr(text, "(PostgreSQL)");
    p = p ? p + 12 : text;
    while (*p && !isdigit((unsigned char)*p))
        p++;
    if (!*p)
        return 0;
    char *end;
    long major = strtol(p, &end, 10);
    long minor = 0, patch = 0;
    if (*end == '.') {
        minor = strtol(end + 1, &end, 10);
        if (*end == '.')
            patch = strtol(end + 1, &end, 10);
    }
    if (major <= 0 || major > 999 || minor < 0 || minor > 99 || patch < 0 || patch > 99)
        return 0;
    if (major >= 10)
        return (int)(major * 10000 + minor);           /* 15.20 -> 150020 (as server_version_num) */
    return (int)(major * 10000 + minor * 100 + patch); /* 9.6.24 -> 90624 */
}

int pgd_major(int num)
{
    return num >= 100000 ? num / 10000 : num / 100;
}

const char *pgd_major_str(int num, char *buf, size_t len)
{
    if (num >= 100000)
        snprintf(buf, len, "%d", num / 10000);
    else
        snprintf(buf, len, "%d.%d", num / 10000, num / 100 % 100);
    return buf;
}

/* ---- sessions -------------------------------------------------------- */

/* libpq messages are multi-line ("FATAL:  ...\nDETAIL: ..."): one line. */
void pgd_one_line(const char *msg, char *buf, size_t len)
{
    size_t o = 0;
    char *r = pgd_redact(msg ? msg : "");
    const char *m = r ? r : "";
    for (const char *p = m; *p && o + 3 < len; p++) {
        if (*p == '\n') {
            if (p[1] == 0)
                break;
            buf[o++] = ';';
            buf[o++] = ' ';
        } else if (*p != '\r') {
            buf[o++] = *p == '\t' ? ' ' : *p;
        }
    }
    while (o > 0 && (buf[o - 1] == ' ' || buf[o - 1] == ';'))
        o--;
    buf[o] = 0;
    free(r);
}

coffer_status pgd_conn_error(pgd_instance *in, PGconn *c, PGresult *r, const char *what)
{
    char msg[1024];
    const char *m = r ? PQresultErrorMessage(r) : NULL;
    if (!m || !*m)
        m = c ? PQerrorMessage(c) : "no connection";
    pgd_one_line(m, msg, sizeof msg);
    coffer_status st = COFFER_ERR_FAILED;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (state && strcmp(state, "57014") == 0 && in->host->cancelled(in->h))
        st = COFFER_ERR_CANCELLED;
    else if (c && PQstatus(c) == CONNECTION_BAD)
        st = COFFER_ERR_RETRY; /* the connection is gone: server stopped or backend terminated */
    return in->host->error(in->h, st, "%s: %s", what, msg);
}

/* Server notices (ANALYZE skipping catalogs it may not touch, ...) would
 * go to stderr: log them at debug level instead. */
static void on_notice(void *arg, const char *message)
{
    pgd_instance *in = arg;
    char msg[1024];
    pgd_one_line(message, msg, sizeof msg);
    in->host->log(in->h, COFFER_LOG_DEBUG, "server: %s", msg);
}

void pgd_notices_to(pgd_instance *in, PGconn *c)
{
    PQsetNoticeProcessor(c, on_notice, in);
}

PGconn *pgd_connect(pgd_instance *in, const pgd_params *p, const char *password, const char *dbname,
                    coffer_status *st)
{
    const char *keys[64], *vals[64];
    size_t n = 0;
    int have_timeout = 0;
    for (size_t i = 0; i < p->n && n < 60; i++) {
        if (strcmp(p->keys[i], "dbname") == 0 && dbname)
            continue;
        if (strcmp(p->keys[i], "application_name") == 0)
            continue;
        if (strcmp(p->keys[i], "connect_timeout") == 0)
            have_timeout = 1;
        keys[n] = p->keys[i];
        vals[n++] = p->vals[i];
    }
    if (dbname) {
        keys[n] = "dbname";
        vals[n++] = dbname;
    }
    keys[n] = "application_name";
    vals[n++] = "coffer";
    if (!have_timeout) {
        keys[n] = "connect_timeout";
        vals[n++] = "10";
    }
    if (password) {
        keys[n] = "password";
        vals[n++] = password;
    }
    keys[n] = NULL;
    vals[n] = NULL;
    PGconn *c = PQconnectdbParams(keys, vals, 0);
    char *shown = pgd_params_display(p, dbname);
    if (!c) {
        *st = in->host->error(in->h, COFFER_ERR_FATAL, "cannot connect to %s: out of memory",
                              shown ? shown : "?");
        free(shown);
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[1024];
        pgd_one_line(PQerrorMessage(c), msg, sizeof msg);
        coffer_status code = COFFER_ERR_FAILED;
        if (PQconnectionNeedsPassword(c) ||
            (PQconnectionUsedPassword(c) && strstr(msg, "authentication failed")) ||
            strstr(msg, "password authentication failed"))
            code = COFFER_ERR_AUTH;
        if (code == COFFER_ERR_AUTH && !password && PQconnectionNeedsPassword(c))
            *st = in->host->error(
                in->h, code,
                "cannot connect to %s: the server asks for a password and none is configured "
                "(set password_env or password_file): %s",
                shown ? shown : "?", msg);
        else
            *st =
                in->host->error(in->h, code, "cannot connect to %s: %s", shown ? shown : "?", msg);
        PQfinish(c);
        free(shown);
        return NULL;
    }
    free(shown);
    PQsetNoticeProcessor(c, on_notice, in);
    *st = COFFER_OK;
    return c;
}

PGresult *pgd_exec(pgd_instance *in, PGconn *c, const char *what, const char *sql, int nparams,
                   const char *const *params, coffer_status *st)
{
    *st = COFFER_OK;
    if (!PQsendQueryParams(c, sql, nparams, NULL, params, NULL, NULL, 0)) {
        *st = pgd_conn_error(in, c, NULL, what);
        return NULL;
    }
    int cancelled = 0;
    while (PQisBusy(c)) {
        struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
        int r = poll(&pfd, 1, 200);
        if (r < 0 && errno != EINTR) {
            *st = in->host->error(in->h, COFFER_ERR_IO, "%s: poll: %s", what, strerror(errno));
            return NULL;
        }
        if (!cancelled && in->host->cancelled(in->h)) {
            PGcancel *pc = PQgetCancel(c);
            char eb[256];
            if (pc) {
                PQcancel(pc, eb, sizeof eb);
                PQfreeCancel(pc);
            }
            cancelled = 1;
        }
        if (r > 0 && !PQconsumeInput(c)) {
            *st = pgd_conn_error(in, c, NULL, what);
            return NULL;
        }
    }
    PGresult *res = NULL, *r;
    while ((r = PQgetResult(c)) != NULL) {
        if (res)
            PQclear(res);
        res = r;
    }
    ExecStatusType es = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (es != PGRES_TUPLES_OK && es != PGRES_COMMAND_OK) {
        if (cancelled)
            *st = in->host->error(in->h, COFFER_ERR_CANCELLED, "%s: cancelled", what);
        else
            *st = pgd_conn_error(in, c, res, what);
        PQclear(res);
        return NULL;
    }
    return res;
}

/* ---- tables and row counts ------------------------------------------- */

const char pgd_tables_sql[] =
    "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind = 'r'"
    " AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'"
    " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = "
    "'pg_catalog.pg_class'::regclass"
    "   AND d.objid = c.oid AND d.deptype = 'e')"
    " ORDER BY 1, 2";

void pgd_tables_free(pgd_table *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(t[i].schema);
        free(t[i].name);
    }
    free(t);
}

coffer_status pgd_list_tables(pgd_instance *in, PGconn *c, pgd_table **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    coffer_status st;
    PGresult *r = pgd_exec(in, c, "cannot list tables", pgd_tables_sql, 0, NULL, &st);
    if (!r)
        return st;
    size_t rows = (size_t)PQntuples(r);
    pgd_table *t = calloc(rows ? rows : 1, sizeof *t);
    if (!t) {
        PQclear(r);
        return pgd_oom(in);
    }
    for (size_t i = 0; i < rows; i++) {
        t[i].schema = strdup(PQgetvalue(r, (int)i, 0));
        t[i].name = strdup(PQgetvalue(r, (int)i, 1));
        t[i].rows = -1;
        if (!t[i].schema || !t[i].name) {
            PQclear(r);
            pgd_tables_free(t, rows);
            return pgd_oom(in);
        }
    }
    PQclear(r);
    *out = t;
    *n = rows;
    return COFFER_OK;
}

coffer_status pgd_count_rows(pgd_instance *in, PGconn *c, pgd_table *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *s = PQescapeIdentifier(c, t[i].schema, strlen(t[i].schema));
        char *q = PQescapeIdentifier(c, t[i].name, strlen(t[i].name));
        if (!s || !q) {
            PQfreemem(s);
            PQfreemem(q);
            return pgd_oom(in);
        }
        size_t len = strlen(s) + strlen(q) + 40;
        char *sql = malloc(len);
        if (sql)
            snprintf(sql, len, "SELECT count(*) FROM %s.%s", s, q);
        PQfreemem(s);
        PQfreemem(q);
        if (!sql)
            return pgd_oom(in);
        char what[600];
        snprintf(what, sizeof what, "cannot count rows of %s.%s", t[i].schema, t[i].name);
        coffer_status st;
        PGresult *r = pgd_exec(in, c, what, sql, 0, NULL, &st);
        free(sql);
        if (!r)
            return st;
        t[i].rows = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
    }
    return COFFER_OK;
}

char *pgd_rows_key(const char *db, const char *schema, const char *table)
{
    size_t len = (db ? strlen(db) + 1 : 0) + strlen(schema) + strlen(table) + 8;
    char *k = malloc(len);
    if (!k)
        return NULL;
    if (db)
        snprintf(k, len, "rows.%s/%s.%s", db, schema, table);
    else
        snprintf(k, len, "rows.%s.%s", schema, table);
    return k;
}
