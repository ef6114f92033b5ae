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

int cf_entry_parse_fast(const char *line, size_t len, cf_entry *e)
{
    memset(e, 0, sizeof *e);
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
