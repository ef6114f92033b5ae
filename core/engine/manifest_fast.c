/*
 * Fast reading of manifest entry lines.
 *
 * A set of a large tree has millions of entry lines and every backup
 * (change detection), restore, verify and check reads them all. Building
 * a jansson tree per line costs a hash table per object; this reader
 * streams the line through yajl's callback parser into a cf_mraw, the
 * same record the tree reader (cf_entry_from_json) fills from jansson,
 * and both end in cf_mraw_finish. What is left to each parser is the
 * JSON itself; where yajl is more lenient than the grammar (trailing
 * bytes, duplicate names, nesting without limit) this file holds it to
 * the grammar. tests/core/engine/test_manifest.c and the manifest fuzz
 * harness run both readers over the same lines and require the same
 * answer.
 */
#include "engine/manifest.h"

#include <stddef.h>
#include <stdlib.h>
#include <sys/types.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "util/util.h"

/* What the values of a container mean. */
enum role { R_TOP, R_CHUNKS, R_XATTRS, R_META, R_SKIP };

typedef struct level {
    int is_map;
    enum role role;
    char **keys; /* member names seen (duplicate check), not the known top-level ones */
    size_t *klen;
    size_t nkeys, kcap;
} level;

typedef struct fast {
    int head;      /* cf_entry_parse_head: stop at "chunks" */
    int cut;       /* stopped there */
    int depth;     /* 0: outside the line's object; 1: inside it */
    int done;      /* the line's object closed */
    int field;     /* depth 1: member whose value comes next (-1 unknown) */
    uint32_t seen; /* known members seen at depth 1 */
    char *xname;   /* xattrs/meta member whose value comes next */
    const char *err;
    int maxd; /* deepest level of lv initialised */
    cf_mraw r;
    level lv[CF_MLINE_MAX_DEPTH + 1]; /* last: only the levels used are initialised */
} fast;

static int stop(fast *f, const char *err)
{
    f->err = err;
    return 0; /* yajl: cancel the parse */
}

/* A duplicate member name in the object at the current depth? */
static int dup_key(fast *f, const unsigned char *k, size_t len)
{
    level *l = &f->lv[f->depth];
    for (size_t i = 0; i < l->nkeys; i++)
        if (l->klen[i] == len && memcmp(l->keys[i], k, len) == 0)
            return 1;
    if (l->nkeys == l->kcap) {
        l->kcap = l->kcap ? 2 * l->kcap : 8;
        l->keys = cf_realloc(l->keys, l->kcap * sizeof *l->keys);
        l->klen = cf_realloc(l->klen, l->kcap * sizeof *l->klen);
    }
    l->keys[l->nkeys] = cf_strndup((const char *)k, len);
    l->klen[l->nkeys++] = len;
    return 0;
}

/* A value (scalar, or the start of a container: t OBJECT/ARRAY) at the
 * current depth; s/len for strings, v for integers. */
static void value(fast *f, enum cf_mval t, const char *s, size_t len, int64_t v)
{
    level *l = &f->lv[f->depth];
    if (f->depth == 1) {
        int fl = f->field;
        f->field = -1;
        if (fl < 0)
            return;
        f->r.t[fl] = t;
        if (fl < CF_MF_SCALARS && t == CF_MV_STRING)
            f->r.str[fl] = cf_strndup(s, len);
        else if (fl < CF_MF_SCALARS && t == CF_MV_INTEGER)
            f->r.num[fl] = v;
        return;
    }
    switch (l->role) {
    case R_CHUNKS:
        cf_mraw_add_chunk(&f->r, t == CF_MV_STRING ? s : NULL, len);
        break;
    case R_XATTRS:
        cf_mraw_add_xattr(&f->r, f->xname, t == CF_MV_STRING ? s : NULL, len);
        break;
    case R_META:
        if (t == CF_MV_STRING)
            json_object_set_new(f->r.meta, f->xname, json_stringn(s, len));
        else
            f->r.meta_bad = 1;
        break;
    default:
        break;
    }
    free(f->xname);
    f->xname = NULL;
}

static int on_null(void *ctx)
{
    value(ctx, CF_MV_OTHER, NULL, 0, 0);
    return 1;
}

static int on_bool(void *ctx, int b)
{
    (void)b;
    value(ctx, CF_MV_OTHER, NULL, 0, 0);
    return 1;
}

static int on_integer(void *ctx, long long v)
{
    value(ctx, CF_MV_INTEGER, NULL, 0, (int64_t)v);
    return 1;
}

static int on_double(void *ctx, double d)
{
    (void)d;
    value(ctx, CF_MV_OTHER, NULL, 0, 0);
    return 1;
}

static int on_string(void *ctx, const unsigned char *s, size_t len)
{
    fast *f = ctx;
    if (f->depth == 0)
        return stop(f, "not a JSON object");
    value(f, CF_MV_STRING, (const char *)s, len, 0);
    return 1;
}

static int on_key(void *ctx, const unsigned char *k, size_t len)
{
    fast *f = ctx;
    if (f->depth == 1) {
        f->field = cf_mfield_lookup((const char *)k, len);
        if (f->head && f->field == CF_MF_CHUNKS) {
            f->cut = 1;
            return 0;
        }
        if (f->field >= 0) {
            if (f->seen & (1u << f->field))
                return stop(f, "duplicate member name");
            f->seen |= 1u << f->field;
            return 1;
        }
    }
    if (dup_key(f, k, len))
        return stop(f, "duplicate member name");
    if (f->depth > 1 && (f->lv[f->depth].role == R_XATTRS || f->lv[f->depth].role == R_META)) {
        free(f->xname);
        f->xname = cf_strndup((const char *)k, len);
    }
    return 1;
}

static int open_container(fast *f, int is_map)
{
    if (f->done)
        return stop(f, "more than one value");
    if (f->depth == CF_MLINE_MAX_DEPTH)
        return stop(f, "nested too deeply");
    enum role role = R_SKIP;
    if (f->depth == 0) {
        if (!is_map)
            return stop(f, "not a JSON object");
        role = R_TOP;
    } else if (f->depth == 1) {
        int fl = f->field;
        if (fl == CF_MF_CHUNKS && !is_map)
            role = R_CHUNKS;
        else if (fl == CF_MF_XATTRS && is_map)
            role = R_XATTRS;
        else if (fl == CF_MF_META && is_map) {
            role = R_META;
            f->r.meta = json_object();
        }
        value(f, is_map ? CF_MV_OBJECT : CF_MV_ARRAY, NULL, 0, 0);
    } else {
        /* a container inside chunks, xattrs or meta is a wrong value */
        value(f, CF_MV_OTHER, NULL, 0, 0);
    }
    f->depth++;
    level *l = &f->lv[f->depth];
    if (f->depth > f->maxd) {
        memset(l, 0, sizeof *l);
        f->maxd = f->depth;
    }
    l->is_map = is_map;
    l->role = role;
    l->nkeys = 0;
    return 1;
}

static int close_container(fast *f)
{
    level *l = &f->lv[f->depth];
    for (size_t i = 0; i < l->nkeys; i++)
        free(l->keys[i]);
    l->nkeys = 0;
    f->depth--;
    if (f->depth == 0) {
        f->done = 1;
        return 0; /* stop here: what follows is checked by the caller */
    }
    return 1;
}

static int on_start_map(void *ctx)
{
    return open_container(ctx, 1);
}

static int on_end_map(void *ctx)
{
    return close_container(ctx);
}

static int on_start_array(void *ctx)
{
    return open_container(ctx, 0);
}

static int on_end_array(void *ctx)
{
    return close_container(ctx);
}

static const yajl_callbacks callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_bool,
    .yajl_integer = on_integer,
    .yajl_double = on_double,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_key,
    .yajl_end_map = on_end_map,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end_array,
};

static void fast_free(fast *f)
{
    for (int d = 1; d <= f->maxd; d++) {
        level *l = &f->lv[d];
        for (size_t i = 0; i < l->nkeys; i++)
            free(l->keys[i]);
        free(l->keys);
        free(l->klen);
    }
    free(f->xname);
    cf_mraw_free(&f->r);
}

/* A parser state for one line; head: stop at the chunk list. */
static fast *fast_new(int head)
{
    fast *f = cf_malloc(sizeof *f);
    memset(f, 0, offsetof(fast, lv) + sizeof f->lv[0]); /* lv[0]: outside any container */
    f->field = -1;
    f->head = head;
    return f;
}

/* Only the start of a file line, up to its chunk list: the type,
 * component and path members, when they come first (as coffer writes
 * them). 1: e holds kind CF_ENT_FILE, component and path, nothing else;
 * 0: the line must be parsed whole (another type, another order, a
 * path_hex, or not valid). Nothing is checked beyond that: a caller uses
 * the head only to pass over a line it will not read. */
int cf_entry_parse_head(const char *line, size_t len, cf_entry *e)
{
    memset(e, 0, sizeof *e);
    fast *f = fast_new(1);
    yajl_handle h = yajl_alloc(&callbacks, NULL, f);
    int rc = 0;
    if (h) {
        yajl_parse(h, (const unsigned char *)line, len);
        yajl_free(h);
        cf_mraw *r = &f->r;
        if (f->cut && !f->err && r->t[CF_MF_TYPE] == CF_MV_STRING &&
            strcmp(r->str[CF_MF_TYPE], "file") == 0 && r->t[CF_MF_COMPONENT] == CF_MV_STRING &&
            r->t[CF_MF_PATH] == CF_MV_STRING && r->t[CF_MF_PATH_HEX] == CF_MV_ABSENT) {
            e->kind = CF_ENT_FILE;
            e->component = r->str[CF_MF_COMPONENT];
            e->path = r->str[CF_MF_PATH];
            r->str[CF_MF_COMPONENT] = r->str[CF_MF_PATH] = NULL;
            rc = 1;
        }
    }
    fast_free(f);
    free(f);
    return rc;
}

/* ---- plain lines -------------------------------------------------------
 * Nearly every line coffer writes is plain: one flat object of known
 * members whose strings are printable ASCII without escapes (a chunk
 * list the only array), no whitespace. Such a line is read here straight
 * into the cf_mraw, without yajl; anything else (an escape, a byte above
 * 0x7e, an unknown or repeated member, another kind of value, a number
 * yajl might read otherwise) is left to the general reader below, which
 * also gives the errors. Over what it takes, this reader fills the
 * record exactly as the callbacks above would. */

/* A plain string at *p (after its opening quote): its length, the
 * closing quote at (*p)[len]; -1 if not plain. */
static ssize_t plain_str(const char *p, const char *end)
{
    const char *q = p;
    while (q < end && *q != '"') {
        unsigned char c = (unsigned char)*q;
        if (c < 0x20 || c > 0x7e || c == '\\')
            return -1;
        q++;
    }
    return q < end ? q - p : -1;
}

/* A plain integer: -?(0|[1-9][0-9]{0,17}) (never out of int64's range,
 * no leading zero, no "-0"); the bytes read, 0 if not plain. */
static size_t plain_int(const char *p, const char *end, int64_t *v)
{
    const char *q = p;
    int neg = q < end && *q == '-';
    q += neg;
    if (q >= end || *q < '0' || *q > '9' || (*q == '0' && neg))
        return 0;
    int64_t x = 0;
    const char *d = q;
    if (*q == '0')
        q++;
    else
        while (q < end && *q >= '0' && *q <= '9' && q - d < 18)
            x = 10 * x + (*q++ - '0');
    if (q < end && (*q == '.' || *q == 'e' || *q == 'E' || (*q >= '0' && *q <= '9')))
        return 0;
    *v = neg ? -x : x;
    return (size_t)(q - p);
}

/* The members of a walk entry's line in the order coffer writes them:
 * the member expected next is tried first. */
#define M(f, name) {f, sizeof(name) - 1, name}
static const struct {
    int8_t field;
    uint8_t len;
    const char *name;
} line_order[] = {
    M(CF_MF_TYPE, "type"),   M(CF_MF_COMPONENT, "component"), M(CF_MF_PATH, "path"),
    M(CF_MF_MODE, "mode"),   M(CF_MF_UID, "uid"),             M(CF_MF_GID, "gid"),
    M(CF_MF_USER, "user"),   M(CF_MF_GROUP, "group"),         M(CF_MF_MTIME, "mtime"),
    M(CF_MF_MTIME_NS, "mtime_ns"), M(CF_MF_SIZE, "size"),     M(CF_MF_CHUNKS, "chunks"),
    M(CF_MF_DEV, "dev"),     M(CF_MF_INO, "ino"),             M(CF_MF_NLINK, "nlink"),
    M(CF_MF_CTIME, "ctime"), M(CF_MF_CTIME_NS, "ctime_ns"),   M(CF_MF_TARGET, "target"),
};
#undef M

/* Member name to enum cf_mfield; *next: position in line_order to try
 * first, moved past the name found. */
static int plain_field(const char *name, size_t len, size_t *next)
{
    for (size_t i = *next; i < *next + 3 && i < CF_ARRAY_LEN(line_order); i++)
        if (line_order[i].len == len && memcmp(line_order[i].name, name, len) == 0) {
            *next = i + 1;
            return line_order[i].field;
        }
    return cf_mfield_lookup(name, len);
}

/* 1: the whole line was plain and r holds it; 0: not plain (r empty). */
static int parse_plain(const char *line, size_t len, cf_mraw *r)
{
    const char *p = line, *end = line + len;
    uint32_t seen = 0;
    size_t next = 0;
    if (len < 2 || *p++ != '{')
        return 0;
    for (;;) {
        if (p >= end || *p++ != '"')
            goto not_plain;
        ssize_t kl = plain_str(p, end);
        if (kl <= 0)
            goto not_plain;
        int fl = plain_field(p, (size_t)kl, &next);
        p += kl + 1;
        if (fl < 0 || fl == CF_MF_XATTRS || fl == CF_MF_META || (seen & (1u << fl)) ||
            p >= end || *p++ != ':' || p >= end)
            goto not_plain;
        seen |= 1u << fl;
        if (fl == CF_MF_CHUNKS) {
            if (*p++ != '[')
                goto not_plain;
            r->t[fl] = CF_MV_ARRAY;
            if (p < end && *p == ']')
                p++;
            else
                for (;;) {
                    if (p >= end || *p++ != '"')
                        goto not_plain;
                    ssize_t sl = plain_str(p, end);
                    if (sl < 0)
                        goto not_plain;
                    cf_mraw_add_chunk(r, p, (size_t)sl);
                    p += sl + 1;
                    if (p < end && *p == ',') {
                        p++;
                        continue;
                    }
                    if (p < end && *p == ']') {
                        p++;
                        break;
                    }
                    goto not_plain;
                }
        } else if (*p == '"') {
            ssize_t sl = plain_str(++p, end);
            if (sl < 0)
                goto not_plain;
            r->t[fl] = CF_MV_STRING;
            r->str[fl] = cf_strndup(p, (size_t)sl);
            p += sl + 1;
        } else {
            size_t n = plain_int(p, end, &r->num[fl]);
            if (!n)
                goto not_plain;
            r->t[fl] = CF_MV_INTEGER;
            p += n;
        }
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        if (p + 1 == end && *p == '}')
            return 1;
        goto not_plain;
    }
not_plain:
    cf_mraw_free(r);
    return 0;
}

int cf_entry_parse_plain(const char *line, size_t len, cf_entry *e)
{
    memset(e, 0, sizeof *e);
    cf_mraw r;
    memset(&r, 0, sizeof r);
    if (!parse_plain(line, len, &r))
        return 1;
    return cf_mraw_finish(&r, e);
}

int cf_entry_parse_fast(const char *line, size_t len, cf_entry *e)
{
    int plain = cf_entry_parse_plain(line, len, e);
    if (plain != 1)
        return plain;
    if (cf_mline_lex_check(line, len) != 0)
        return -1;
    fast *f = fast_new(0);
    yajl_handle h = yajl_alloc(&callbacks, NULL, f);
    if (!h) {
        free(f);
        return cf_fail("out of memory");
    }
    yajl_status st = yajl_parse(h, (const unsigned char *)line, len);
    int rc = 0;
    if (f->done) {
        /* Only whitespace may follow the object (yajl would take more). */
        for (size_t i = yajl_get_bytes_consumed(h); i < len; i++)
            if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r') {
                rc = cf_fail("bytes after the JSON object");
                break;
            }
    } else if (f->err) {
        rc = cf_fail("not valid JSON: %s", f->err);
    } else {
        if (st == yajl_status_ok)
            st = yajl_complete_parse(h);
        if (st != yajl_status_ok) {
            unsigned char *msg = yajl_get_error(h, 0, NULL, 0);
            rc = cf_fail("not valid JSON: %s", msg ? (const char *)msg : "parse error");
            yajl_free_error(h, msg);
        } else {
            rc = cf_fail("not valid JSON: %s", f->depth ? "truncated" : "no object");
        }
    }
    yajl_free(h);
    if (rc == 0) {
        rc = cf_mraw_finish(&f->r, e);
    }
    fast_free(f);
    free(f);
    return rc;
}
