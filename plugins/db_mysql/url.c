/*
 * database "mysql": connection URLs, file:// restore targets, and the
 * encoding of identifiers in stream names.
 */
#include "db_mysql.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode [p, p+n) into a malloc'd string; NULL when malformed or
 * when it would contain a NUL byte. */
static char *pct_decode(const char *p, size_t n)
{
    char *o = malloc(n + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '%') {
            if (i + 2 >= n) {
                free(o);
                return NULL;
            }
            int hi = hexval((unsigned char)p[i + 1]), lo = hexval((unsigned char)p[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(o);
                return NULL;
            }
            o[k++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            o[k++] = p[i];
        }
    }
    o[k] = 0;
    return o;
}

static int fail(char *err, size_t len, const char *fmt, ...) COFFER_PRINTF(3, 4);

static int fail(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
    return -1;
}

void dbmysql_url_free(dbmysql_url *u)
{
    free(u->user);
    free(u->host);
    free(u->database);
    free(u->socket);
    free(u->password_env);
    free(u->password_file);
    free(u->ssl_mode);
    free(u->ssl_ca);
    free(u->ssl_cert);
    free(u->ssl_key);
    memset(u, 0, sizeof *u);
}

static int set_param(dbmysql_url *u, const char *k, size_t klen, const char *v, size_t vlen, char *err,
                     size_t errlen)
{
    static const struct {
        const char *name;
        size_t off;
    } params[] = {
        {"socket", offsetof(dbmysql_url, socket)},
        {"password_env", offsetof(dbmysql_url, password_env)},
        {"password_file", offsetof(dbmysql_url, password_file)},
        {"ssl_mode", offsetof(dbmysql_url, ssl_mode)},
        {"ssl_ca", offsetof(dbmysql_url, ssl_ca)},
        {"ssl_cert", offsetof(dbmysql_url, ssl_cert)},
        {"ssl_key", offsetof(dbmysql_url, ssl_key)},
    };
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        if (strlen(params[i].name) != klen || strncmp(params[i].name, k, klen) != 0)
            continue;
        char **slot = (char **)((char *)u + params[i].off);
        char *val = pct_decode(v, vlen);
        if (!val || !*val) {
            free(val);
            return fail(err, errlen, "URL parameter %s has a malformed or empty value", params[i].name);
        }
        free(*slot);
        *slot = val;
        return 0;
    }
    if (klen >= 8 && strncmp(k, "password", 8) == 0 && (klen == 8 || k[8] != '_'))
        return fail(err, errlen,
                    "a password in the URL is refused (URLs end up in logs and on command lines); "
                    "use password_env or password_file");
    return fail(err, errlen,
                "unknown URL parameter '%.*s' (valid: socket, ssl_mode, ssl_ca, ssl_cert, ssl_key, "
                "password_env, password_file)",
                (int)(klen > 64 ? 64 : klen), k);
}

int dbmysql_url_parse(const char *text, dbmysql_url *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof *u);
    const char *p;
    if (strncmp(text, "mysql://", 8) == 0)
        p = text + 8;
    else if (strncmp(text, "mariadb://", 10) == 0)
        p = text + 10;
    else
        return fail(err, errlen, "expected a URL mysql://[user@]host[:port]/database (or mariadb://)");

    const char *q = strchr(p, '?');
    const char *end = q ? q : p + strlen(p);
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *auth_end = slash ? slash : end;
    const char *at = NULL;
    for (const char *c = p; c < auth_end; c++)
        if (*c == '@')
            at = c;
    const char *hp = p;
    if (at) {
        if (memchr(p, ':', (size_t)(at - p)))
            return fail(err, errlen,
                        "a password in the URL is refused (URLs end up in logs and on command lines); "
                        "use password_env or password_file");
        if (at > p && !(u->user = pct_decode(p, (size_t)(at - p)))) {
            fail(err, errlen, "malformed user name in URL");
            goto bad;
        }
        hp = at + 1;
    }
    /* host[:port], host may be [v6] */
    const char *hend = auth_end, *colon = NULL;
    if (hp < hend && *hp == '[') {
        const char *rb = memchr(hp, ']', (size_t)(hend - hp));
        if (!rb) {
            fail(err, errlen, "malformed IPv6 address in URL");
            goto bad;
        }
        u->host = strndup(hp + 1, (size_t)(rb - hp - 1));
        if (rb + 1 < hend) {
            if (rb[1] != ':') {
                fail(err, errlen, "malformed host in URL");
                goto bad;
            }
            colon = rb + 1;
        }
    } else {
        colon = memchr(hp, ':', (size_t)(hend - hp));
        const char *he = colon ? colon : hend;
        if (he > hp && !(u->host = pct_decode(hp, (size_t)(he - hp)))) {
            fail(err, errlen, "malformed host in URL");
            goto bad;
        }
    }
    if (colon) {
        char *e = NULL;
        unsigned long port = strtoul(colon + 1, &e, 10);
        if (e == colon + 1 || e != hend || port == 0 || port > 65535) {
            fail(err, errlen, "malformed port in URL (1..65535)");
            goto bad;
        }
        u->port = (unsigned)port;
    }
    if (slash && slash + 1 < end) {
        if (memchr(slash + 1, '/', (size_t)(end - slash - 1))) {
            fail(err, errlen, "URL path must be one database name (percent-encode a '/' in it)");
            goto bad;
        }
        if (!(u->database = pct_decode(slash + 1, (size_t)(end - slash - 1)))) {
            fail(err, errlen, "malformed database name in URL");
            goto bad;
        }
    }
    if (q) {
        const char *s = q + 1;
        while (*s) {
            const char *amp = strchr(s, '&');
            const char *pe = amp ? amp : s + strlen(s);
            const char *eq = memchr(s, '=', (size_t)(pe - s));
            if (!eq) {
                fail(err, errlen, "malformed URL parameter (expected NAME=VALUE)");
                goto bad;
            }
            if (set_param(u, s, (size_t)(eq - s), eq + 1, (size_t)(pe - eq - 1), err, errlen) != 0)
                goto bad;
            s = amp ? amp + 1 : pe;
        }
    }
    if (!u->host && !u->socket) {
        fail(err, errlen, "URL names no host (use mysql://user@localhost/db?socket=/path for a socket)");
        goto bad;
    }
    return 0;
bad:
    dbmysql_url_free(u);
    return -1;
}

void dbmysql_url_describe(const dbmysql_url *u, char *buf, size_t len)
{
    const char *host = u->host ? u->host : "localhost";
    int v6 = strchr(host, ':') != NULL;
    char port[16] = "";
    if (u->port)
        snprintf(port, sizeof port, ":%u", u->port);
    snprintf(buf, len, "%s%s%s%s%s%s/%s%s%s%s", u->user ? u->user : "", u->user ? "@" : "", v6 ? "[" : "", host,
             v6 ? "]" : "", port, u->database ? u->database : "", u->socket ? " (socket " : "",
             u->socket ? u->socket : "", u->socket ? ")" : "");
}

int dbmysql_file_url(const char *text, char **path, char **database, char *err, size_t errlen)
{
    *path = NULL;
    *database = NULL;
    if (strncmp(text, "file://", 7) != 0)
        return 0;
    const char *p = text + 7;
    if (*p != '/')
        return fail(err, errlen, "file URL must name an absolute path: file:///path/to/dump.sql");
    const char *q = strchr(p, '?');
    size_t plen = q ? (size_t)(q - p) : strlen(p);
    if (plen < 2 || p[plen - 1] == '/')
        return fail(err, errlen, "file URL must name a file, not a directory");
    if (!(*path = pct_decode(p, plen)))
        return fail(err, errlen, "malformed file URL");
    if (q) {
        if (strncmp(q + 1, "database=", 9) != 0 || strchr(q + 1, '&') || !q[10] ||
            !(*database = pct_decode(q + 10, strlen(q + 10)))) {
            free(*path);
            *path = NULL;
            return fail(err, errlen, "file URL takes one parameter: ?database=NAME");
        }
    }
    return 1;
}

char *dbmysql_name_encode(const char *name)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(name);
    char *o = malloc(3 * n + 1);
    if (!o)
        return NULL;
    char *w = o;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f || c == '/' || c == '%' || c == ',' || (i == 0 && c == '.')) {
            *w++ = '%';
            *w++ = hex[c >> 4];
            *w++ = hex[c & 15];
        } else {
            *w++ = (char)c;
        }
    }
    *w = 0;
    return o;
}

char *dbmysql_name_decode(const char *enc, size_t len)
{
    return pct_decode(enc, len);
}

char *dbmysql_quote_ident(const char *name)
{
    size_t n = strlen(name), ticks = 0;
    for (size_t i = 0; i < n; i++)
        ticks += name[i] == '`';
    char *o = malloc(n + ticks + 3);
    if (!o)
        return NULL;
    char *w = o;
    *w++ = '`';
    for (size_t i = 0; i < n; i++) {
        if (name[i] == '`')
            *w++ = '`';
        *w++ = name[i];
    }
    *w++ = '`';
    *w = 0;
    return o;
}

/* Append s percent-encoded (all but unreserved characters). */
static void put_pct(char **w, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' ||
            *c == '.' || *c == '_' || *c == '~') {
            *(*w)++ = (char)*c;
        } else {
            *(*w)++ = '%';
            *(*w)++ = hex[*c >> 4];
            *(*w)++ = hex[*c & 15];
        }
    }
}

char *dbmysql_url_format(const dbmysql_url *u, const char *database)
{
    const char *params[][2] = {
        {"socket", u->socket},     {"ssl_mode", u->ssl_mode},         {"ssl_ca", u->ssl_ca},
        {"ssl_cert", u->ssl_cert}, {"ssl_key", u->ssl_key},           {"password_env", u->password_env},
        {"password_file", u->password_file},
    };
    size_t need = 32 + 3 * ((u->user ? strlen(u->user) : 0) + (u->host ? strlen(u->host) : 0) +
                            (database ? strlen(database) : 0));
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++)
        if (params[i][1])
            need += strlen(params[i][0]) + 2 + 3 * strlen(params[i][1]);
    char *o = malloc(need);
    if (!o)
        return NULL;
    char *w = o;
    w += sprintf(w, "mysql://");
    if (u->user) {
        put_pct(&w, u->user);
        *w++ = '@';
    }
    const char *host = u->host ? u->host : "localhost";
    if (strchr(host, ':'))
        w += sprintf(w, "[%s]", host);
    else
        put_pct(&w, host);
    if (u->port)
        w += sprintf(w, ":%u", u->port);
    *w++ = '/';
    if (database)
        put_pct(&w, database);
    char sep = '?';
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        if (!params[i][1])
            continue;
        w += sprintf(w, "%c%s=", sep, params[i][0]);
        put_pct(&w, params[i][1]);
        sep = '&';
    }
    *w = 0;
    return o;
}
