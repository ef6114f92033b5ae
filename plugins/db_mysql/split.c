/*
 * database "mysql": split SQL text into statements the way the stock mysql
 * client does, so a stream restores the same through coffer as through
 * `mysql < file`: statements end with the current delimiter outside
 * quotes ('..', "..", `..`) and comments (-- , #, / * * /); a line
 * "DELIMITER x" at the start of a statement changes the delimiter.
 * Backslash escapes apply inside '..' and ".." (the sessions coffer opens
 * never set NO_BACKSLASH_ESCAPES).
 *
 * The text is buffered from the start of the current statement; the lexer
 * resumes where it stopped when more input arrives, so statements may span
 * any number of feeds.
 */
#include "db_mysql.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { S_NORMAL, S_SQ, S_DQ, S_BT, S_LINE, S_BLOCK };

void dbmysql_split_init(dbmysql_split *s, dbmysql_stmt_fn fn, void *ud)
{
    memset(s, 0, sizeof *s);
    strcpy(s->delim, ";");
    s->dlen = 1;
    s->fn = fn;
    s->ud = ud;
    s->line = 1;
    s->stmt_line = 1;
}

void dbmysql_split_free(dbmysql_split *s)
{
    free(s->buf);
    s->buf = NULL;
}

/* Skip whitespace and plain comments (not the executable slash-star-bang
 * kind) at p; returns the first byte of real content. */
static const char *skip_blank(const char *p, const char *end)
{
    for (;;) {
        while (p < end && isspace((unsigned char)*p))
            p++;
        if (p < end && *p == '#') {
            while (p < end && *p != '\n')
                p++;
        } else if (end - p >= 3 && p[0] == '-' && p[1] == '-' && (isspace((unsigned char)p[2]) || iscntrl((unsigned char)p[2]))) {
            while (p < end && *p != '\n')
                p++;
        } else if (end - p == 2 && p[0] == '-' && p[1] == '-') {
            return end;
        } else if (end - p >= 2 && p[0] == '/' && p[1] == '*' && !(end - p >= 3 && p[2] == '!') &&
                   !(end - p >= 4 && p[2] == 'M' && p[3] == '!')) {
            const char *c = p + 2;
            while (c + 1 < end && !(c[0] == '*' && c[1] == '/'))
                c++;
            if (c + 1 >= end)
                return end;
            p = c + 2;
        } else {
            return p;
        }
    }
}

static coffer_status emit(dbmysql_split *s, size_t from, size_t to)
{
    const char *b = s->buf + from, *e = s->buf + to;
    b = skip_blank(b, e);
    while (e > b && isspace((unsigned char)e[-1]))
        e--;
    if (e == b)
        return COFFER_OK;
    size_t n = (size_t)(e - b);
    if (s->max && n > s->max) {
        snprintf(s->err, sizeof s->err, "statement at line %llu is %zu bytes, more than the %zu allowed",
                 (unsigned long long)s->stmt_line, n, s->max);
        return COFFER_ERR_CORRUPT;
    }
    char *w = s->buf + (e - s->buf);
    char saved = *w; /* a delimiter byte, whitespace, or the spare byte past len */
    *w = 0;
    coffer_status st = s->fn(s->ud, s->buf + (b - s->buf), n);
    *w = saved;
    return st;
}

/* Is [p, e) (one line) a DELIMITER command? Then set the delimiter. */
static int delimiter_command(dbmysql_split *s, const char *p, const char *e)
{
    if (e - p < 10 || strncasecmp(p, "delimiter", 9) != 0 || (p[9] != ' ' && p[9] != '\t'))
        return 0;
    const char *t = p + 10;
    while (t < e && (*t == ' ' || *t == '\t'))
        t++;
    const char *te = t;
    while (te < e && !isspace((unsigned char)*te))
        te++;
    size_t n = (size_t)(te - t);
    if (n == 0 || n >= sizeof s->delim)
        return 0;
    memcpy(s->delim, t, n);
    s->delim[n] = 0;
    s->dlen = n;
    return 1;
}

/* Run the lexer over the buffered text. With `end`, the input is complete:
 * look-ahead past the end does not wait. */
static coffer_status lex(dbmysql_split *s, int end)
{
    char *buf = s->buf;
    size_t len = s->len, pos = s->pos;
    coffer_status st = COFFER_OK;
    while (pos < len) {
        char c = buf[pos];
        switch (s->state) {
        case S_SQ:
        case S_DQ: {
            char q = s->state == S_SQ ? '\'' : '"';
            while (pos < len && buf[pos] != q && buf[pos] != '\\') {
                if (buf[pos] == '\n')
                    s->line++;
                pos++;
            }
            if (pos == len)
                break;
            if (buf[pos] == '\\') {
                if (pos + 1 == len && !end)
                    goto wait;
                if (pos + 1 < len && buf[pos + 1] == '\n')
                    s->line++;
                pos += 2;
            } else {
                s->state = S_NORMAL;
                pos++;
            }
            break;
        }
        case S_BT:
            while (pos < len && buf[pos] != '`') {
                if (buf[pos] == '\n')
                    s->line++;
                pos++;
            }
            if (pos < len) {
                s->state = S_NORMAL;
                pos++;
            }
            break;
        case S_LINE:
            while (pos < len && buf[pos] != '\n')
                pos++;
            if (pos < len)
                s->state = S_NORMAL; /* the newline itself is handled as normal text */
            break;
        case S_BLOCK:
            while (pos < len && buf[pos] != '*') {
                if (buf[pos] == '\n')
                    s->line++;
                pos++;
            }
            if (pos == len)
                break;
            if (pos + 1 == len && !end)
                goto wait;
            if (pos + 1 < len && buf[pos + 1] == '/') {
                s->state = S_NORMAL;
                pos += 2;
            } else {
                pos++;
            }
            break;
        default: /* S_NORMAL */
            if (c == '\'') {
                s->state = S_SQ;
                pos++;
            } else if (c == '"') {
                s->state = S_DQ;
                pos++;
            } else if (c == '`') {
                s->state = S_BT;
                pos++;
            } else if (c == '#') {
                s->state = S_LINE;
                pos++;
            } else if (c == '-' && (pos + 2 < len || end)) {
                if (pos + 2 < len && buf[pos + 1] == '-' &&
                    (isspace((unsigned char)buf[pos + 2]) || iscntrl((unsigned char)buf[pos + 2]))) {
                    s->state = S_LINE;
                    pos += 2;
                } else {
                    goto plain;
                }
            } else if (c == '-') {
                goto wait;
            } else if (c == '/' && pos + 1 == len && !end) {
                goto wait;
            } else if (c == '/' && pos + 1 < len && buf[pos + 1] == '*') {
                s->state = S_BLOCK;
                pos += 2;
            } else if (c == '\n') {
                s->line++;
                pos++;
            } else if ((c == 'd' || c == 'D') && skip_blank(buf + s->start, buf + pos) == buf + pos) {
                /* A client command is a whole line at the start of a statement. */
                const char *nl = memchr(buf + pos, '\n', len - pos);
                if (!nl && !end)
                    goto wait;
                const char *eol = nl ? nl : buf + len;
                if (!delimiter_command(s, buf + pos, eol))
                    goto plain;
                pos = (size_t)(eol - buf) + (nl ? 1 : 0);
                if (nl)
                    s->line++;
                s->start = pos;
                s->stmt_line = s->line;
            } else {
            plain:
                pos++;
                if (c == s->delim[s->dlen - 1] && pos - s->start >= s->dlen &&
                    memcmp(buf + pos - s->dlen, s->delim, s->dlen) == 0) {
                    if ((st = emit(s, s->start, pos - s->dlen)) != COFFER_OK)
                        goto out;
                    s->start = pos;
                    s->stmt_line = s->line;
                }
            }
            break;
        }
        if (s->max && pos - s->start > s->max + 2 * sizeof s->delim) {
            snprintf(s->err, sizeof s->err, "statement at line %llu is longer than the %zu bytes allowed",
                     (unsigned long long)s->stmt_line, s->max);
            st = COFFER_ERR_CORRUPT;
            goto out;
        }
    }
wait:
out:
    s->pos = pos;
    return st;
}

coffer_status dbmysql_split_feed(dbmysql_split *s, const char *p, size_t n)
{
    if (s->start > 0 && (s->start == s->len || s->len + n + 1 > s->cap)) {
        memmove(s->buf, s->buf + s->start, s->len - s->start);
        s->len -= s->start;
        s->pos -= s->start;
        s->start = 0;
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 1u << 16;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *b = realloc(s->buf, cap);
        if (!b) {
            snprintf(s->err, sizeof s->err, "out of memory for a %zu-byte statement", s->len + n);
            return COFFER_ERR_FATAL;
        }
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    return lex(s, 0);
}

coffer_status dbmysql_split_end(dbmysql_split *s)
{
    if (!s->buf)
        return COFFER_OK;
    coffer_status st = lex(s, 1);
    if (st)
        return st;
    if (s->state == S_SQ || s->state == S_DQ || s->state == S_BT || s->state == S_BLOCK) {
        static const char *const what[] = {"", "string '...'", "string \"...\"", "identifier `...`", "",
                                           "comment"};
        snprintf(s->err, sizeof s->err, "input ends inside a %s that began in the statement at line %llu",
                 what[s->state], (unsigned long long)s->stmt_line);
        return COFFER_ERR_CORRUPT;
    }
    st = emit(s, s->start, s->len);
    s->start = s->pos = s->len;
    return st;
}

const char *dbmysql_pick_delimiter(const char *text)
{
    static const char *const cand[] = {";;", "$$", "//", ";;;;", "$$$$", "///", "@@coffer@@"};
    for (size_t i = 0; i < sizeof cand / sizeof cand[0]; i++)
        if (!strstr(text, cand[i]))
            return cand[i];
    return NULL;
}
