/*
 * Fast reading of manifest entry lines.
 *
 * A set of a large tree has millions of entry lines and every backup
 * (change detection), restore, verify and check reads them all. Building
 * a jansson tree per line costs a hash table per object; this reader
 * streams the line through yajl's callback parser straight into a
 * cf_entry instead.
 *
 * It takes only the common case: an object of scalar members plus a
 * "chunks" array of ids and an "xattrs" object of strings, of the types
 * file, dir, symlink, hardlink, stream and object. Anything else (header,
 * meta and end lines, unknown nesting, non-integer numbers, NUL in a
 * string, a malformed id, invalid JSON) is left to the tree reader,
 * which has the final word, including its error messages. Both readers
 * must fill cf_entry identically (tests/core/engine/test_manifest.c runs
 * every case through both).
 */
#include "engine/manifest.h"

#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "util/util.h"

enum field {
    F_NONE = -1,
    /* strings */
    F_TYPE,
    F_COMPONENT,
    F_PATH,
    F_PATH_HEX,
    F_NAME,
    F_NAME_HEX,
    F_KEY,
    F_KEY_HEX,
    F_TARGET,
    F_TARGET_HEX,
    F_USER,
    F_GROUP,
    F_VERSION_ID,
    F_ETAG,
    F_NSTR,
    /* integers */
    F_MODE = F_NSTR,
    F_UID,
    F_GID,
    F_MTIME,
    F_MTIME_NS,
    F_CTIME,
    F_CTIME_NS,
    F_DEV,
    F_INO,
    F_NLINK,
    F_SIZE,
    F_NFIELDS,
    /* containers */
    F_CHUNKS = F_NFIELDS,
    F_XATTRS,
    F_UNKNOWN,
};

static const char *const field_names[F_NFIELDS] = {
    "type",  "component", "path",       "path_hex", "name",   "name_hex", "key",
    "key_hex", "target",  "target_hex", "user",     "group",  "version_id", "etag",
    "mode",  "uid",       "gid",        "mtime",    "mtime_ns", "ctime",  "ctime_ns",
    "dev",   "ino",       "nlink",      "size",
};

typedef struct fast {
    int depth;   /* 1: inside the line's object; 2: inside chunks or xattrs */
    int field;   /* member whose value comes next (depth 1) */
    int inside;  /* F_CHUNKS or F_XATTRS at depth 2 */
    int bail;    /* not a line for this reader */
    char *str[F_NSTR];
    int64_t num[F_NFIELDS - F_NSTR];
    int have_chunks, have_xattrs;
    cf_id *chunks;
    size_t nchunks, cap;
    cf_xattr *xattrs;
    size_t nxattrs, xcap;
    char *xname; /* pending xattr member name */
} fast;

static int stop(fast *f)
{
    f->bail = 1;
    return 0; /* yajl: cancel the parse */
}

static int on_null(void *ctx)
{
    return stop(ctx);
}

static int on_bool(void *ctx, int b)
{
    (void)b;
    return stop(ctx);
}

static int on_double(void *ctx, double d)
{
    (void)d;
    return stop(ctx);
}

static int on_integer(void *ctx, long long v)
{
    fast *f = ctx;
    if (f->depth != 1)
        return stop(f);
    if (f->field >= F_NSTR && f->field < F_NFIELDS)
        f->num[f->field - F_NSTR] = v;
    else if (f->field != F_UNKNOWN)
        return stop(f);
    f->field = F_NONE;
    return 1;
}

static int on_string(void *ctx, const unsigned char *s, size_t len)
{
    fast *f = ctx;
    if (memchr(s, 0, len))
        return stop(f);
    if (f->depth == 2 && f->inside == F_CHUNKS) {
        if (len != 2 * CF_ID_LEN)
            return stop(f);
        if (f->nchunks == f->cap) {
            f->cap = f->cap ? 2 * f->cap : 4;
            f->chunks = cf_realloc(f->chunks, f->cap * sizeof *f->chunks);
        }
        char hex[2 * CF_ID_LEN + 1];
        memcpy(hex, s, len);
        hex[len] = 0;
        if (cf_id_parse(hex, &f->chunks[f->nchunks]) != 0)
            return stop(f);
        f->nchunks++;
        return 1;
    }
    if (f->depth == 2 && f->inside == F_XATTRS) {
        if (!f->xname || len % 2)
            return stop(f);
        char *hex = cf_strndup((const char *)s, len);
        cf_xattr xa = {.len = len / 2, .value = cf_malloc(len / 2 + 1)};
        int bad = cf_unhex(hex, xa.value, xa.len) != 0;
        free(hex);
        if (!bad && strncmp(f->xname, "hex:", 4) == 0) {
            size_t hl = strlen(f->xname + 4), nl = hl / 2;
            xa.name = cf_malloc(nl + 1);
            bad = hl % 2 || cf_unhex(f->xname + 4, (uint8_t *)xa.name, nl) != 0;
            xa.name[nl] = 0;
        } else if (!bad) {
            xa.name = cf_strdup(f->xname);
        }
        free(f->xname);
        f->xname = NULL;
        if (bad) {
            free(xa.name);
            free(xa.value);
            return stop(f);
        }
        if (f->nxattrs == f->xcap) {
            f->xcap = f->xcap ? 2 * f->xcap : 4;
            f->xattrs = cf_realloc(f->xattrs, f->xcap * sizeof *f->xattrs);
        }
        f->xattrs[f->nxattrs++] = xa;
        return 1;
    }
    if (f->depth != 1)
        return stop(f);
    if (f->field >= 0 && f->field < F_NSTR) {
        free(f->str[f->field]);
        f->str[f->field] = cf_strndup((const char *)s, len);
    } else if (f->field != F_UNKNOWN) {
        return stop(f);
    }
    f->field = F_NONE;
    return 1;
}

static int on_key(void *ctx, const unsigned char *k, size_t len)
{
    fast *f = ctx;
    if (f->depth == 2 && f->inside == F_XATTRS) {
        if (memchr(k, 0, len))
            return stop(f);
        free(f->xname);
        f->xname = cf_strndup((const char *)k, len);
        return 1;
    }
    if (f->depth != 1)
        return stop(f);
    f->field = F_UNKNOWN;
    for (int i = 0; i < F_NFIELDS; i++)
        if (strlen(field_names[i]) == len && memcmp(field_names[i], k, len) == 0) {
            f->field = i;
            return 1;
        }
    if (len == 6 && memcmp(k, "chunks", 6) == 0)
        f->field = F_CHUNKS;
    else if (len == 6 && memcmp(k, "xattrs", 6) == 0)
        f->field = F_XATTRS;
    return 1;
}

static int on_start_map(void *ctx)
{
    fast *f = ctx;
    if (f->depth == 0) {
        f->depth = 1;
        return 1;
    }
    if (f->depth == 1 && f->field == F_XATTRS && !f->have_xattrs) {
        f->have_xattrs = 1;
        f->depth = 2;
        f->inside = F_XATTRS;
        return 1;
    }
    return stop(f);
}

static int on_end_map(void *ctx)
{
    fast *f = ctx;
    if (f->depth == 2 && f->xname) /* a name without a value cannot happen in JSON */
        return stop(f);
    f->depth--;
    f->field = F_NONE;
    return 1;
}

static int on_start_array(void *ctx)
{
    fast *f = ctx;
    if (f->depth == 1 && f->field == F_CHUNKS && !f->have_chunks) {
        f->have_chunks = 1;
        f->depth = 2;
        f->inside = F_CHUNKS;
        return 1;
    }
    return stop(f);
}

static int on_end_array(void *ctx)
{
    fast *f = ctx;
    f->depth--;
    f->field = F_NONE;
    return 1;
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
    for (int i = 0; i < F_NSTR; i++)
        free(f->str[i]);
    free(f->chunks);
    for (size_t i = 0; i < f->nxattrs; i++) {
        free(f->xattrs[i].name);
        free(f->xattrs[i].value);
    }
    free(f->xattrs);
    free(f->xname);
}

/* The string member NAME, or else NAME_hex decoded (as cf_json_get_name);
 * sets *bad when the hex form is malformed. Takes ownership. */
static char *take_name(fast *f, int plain, int hex, int *bad)
{
    if (f->str[plain]) {
        char *s = f->str[plain];
        f->str[plain] = NULL;
        return s;
    }
    if (!f->str[hex])
        return NULL;
    char *out = cf_name_from_hex(f->str[hex]);
    if (!out)
        *bad = 1;
    return out;
}

int cf_entry_parse_fast(const char *line, size_t len, cf_entry *e)
{
    fast f = {.field = F_NONE};
    yajl_handle h = yajl_alloc(&callbacks, NULL, &f);
    if (!h)
        return 0;
    int ok = yajl_parse(h, (const unsigned char *)line, len) == yajl_status_ok &&
             yajl_complete_parse(h) == yajl_status_ok && !f.bail && f.depth == 0;
    yajl_free(h);
    cf_ent_kind kind = CF_ENT_OTHER;
    if (ok && f.str[F_TYPE])
        for (int k = 0; k < CF_ENT_OTHER; k++)
            if (strcmp(f.str[F_TYPE], cf_ent_kind_name((cf_ent_kind)k)) == 0)
                kind = (cf_ent_kind)k;
    if (!ok || kind == CF_ENT_OTHER || kind == CF_ENT_META) {
        fast_free(&f);
        return 0;
    }
    memset(e, 0, sizeof *e);
    e->kind = kind;
    int bad = 0;
    e->component = f.str[F_COMPONENT] ? f.str[F_COMPONENT] : cf_strdup("");
    f.str[F_COMPONENT] = NULL;
    e->path = kind == CF_ENT_STREAM   ? take_name(&f, F_NAME, F_NAME_HEX, &bad)
              : kind == CF_ENT_OBJECT ? take_name(&f, F_KEY, F_KEY_HEX, &bad)
                                      : take_name(&f, F_PATH, F_PATH_HEX, &bad);
    e->target = take_name(&f, F_TARGET, F_TARGET_HEX, &bad);
    if (!e->path || bad) {
        cf_entry_clear(e);
        fast_free(&f);
        return 0; /* the tree reader names the problem */
    }
    e->version_id = f.str[F_VERSION_ID];
    e->etag = f.str[F_ETAG];
    e->user = f.str[F_USER];
    e->group = f.str[F_GROUP];
    f.str[F_VERSION_ID] = f.str[F_ETAG] = f.str[F_USER] = f.str[F_GROUP] = NULL;
    const int64_t *v = f.num;
    e->mode = (uint32_t)v[F_MODE - F_NSTR] & 07777;
    e->uid = v[F_UID - F_NSTR];
    e->gid = v[F_GID - F_NSTR];
    e->mtime = v[F_MTIME - F_NSTR];
    e->mtime_ns = (long)v[F_MTIME_NS - F_NSTR];
    e->ctime = v[F_CTIME - F_NSTR];
    e->ctime_ns = (long)v[F_CTIME_NS - F_NSTR];
    e->dev = (uint64_t)v[F_DEV - F_NSTR];
    e->ino = (uint64_t)v[F_INO - F_NSTR];
    e->nlink = (uint64_t)v[F_NLINK - F_NSTR];
    e->size = (uint64_t)v[F_SIZE - F_NSTR];
    if (f.have_chunks) {
        e->nchunks = f.nchunks;
        e->chunks = f.chunks ? f.chunks : cf_malloc(sizeof(cf_id));
        f.chunks = NULL;
    }
    if (f.nxattrs) {
        e->xattrs = f.xattrs;
        e->nxattrs = f.nxattrs;
        f.xattrs = NULL;
        f.nxattrs = 0;
    }
    fast_free(&f);
    return 1;
}
