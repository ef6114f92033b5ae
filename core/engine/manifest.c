#include "engine/manifest.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yajl/yajl_gen.h>

#include "engine/setcheck.h"
#include "plugin/host.h"
#include "util/util.h"

static const char *kind_names[] = {"file",   "dir",  "symlink", "hardlink",
                                   "stream", "meta", "object",  "other"};

const char *cf_ent_kind_name(cf_ent_kind k)
{
    return k <= CF_ENT_OTHER ? kind_names[k] : "other";
}

void cf_entry_clear(cf_entry *e)
{
    free(e->component);
    free(e->path);
    free(e->user);
    free(e->group);
    free(e->target);
    free(e->chunks);
    for (size_t i = 0; i < e->nxattrs; i++) {
        free(e->xattrs[i].name);
        free(e->xattrs[i].value);
    }
    free(e->xattrs);
    free(e->version_id);
    free(e->etag);
    if (e->meta)
        json_decref(e->meta);
    memset(e, 0, sizeof *e);
}

void cf_json_set_name(json_t *obj, const char *key, const char *value)
{
    json_t *s = json_string(value);
    if (s) {
        json_object_set_new(obj, key, s);
        return;
    }
    /* Not UTF-8: keep the exact bytes, hex-encoded, under KEY_hex. */
    size_t n = strlen(value);
    char *hex = cf_malloc(2 * n + 1);
    cf_hex((const uint8_t *)value, n, hex);
    char k[64];
    snprintf(k, sizeof k, "%s_hex", key);
    json_object_set_new(obj, k, json_string(hex));
    free(hex);
}

char *cf_json_get_name(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    if (s)
        return cf_strdup(s);
    char k[64];
    snprintf(k, sizeof k, "%s_hex", key);
    s = json_string_value(json_object_get(obj, k));
    return s ? cf_name_from_hex(s) : NULL;
}

char *cf_name_from_hex(const char *hex)
{
    size_t n = strlen(hex) / 2;
    char *out = cf_malloc(n + 1);
    if (strlen(hex) % 2 || cf_unhex(hex, (uint8_t *)out, n) != 0 || memchr(out, 0, n)) {
        free(out);
        return NULL;
    }
    out[n] = 0;
    return out;
}

static int utf8_valid(const char *s);
static char *xattr_key(const char *name);

static json_t *chunks_json(const cf_entry *e)
{
    json_t *a = json_array();
    char hex[2 * CF_ID_LEN + 1];
    for (size_t i = 0; i < e->nchunks; i++) {
        cf_id_hex(&e->chunks[i], hex);
        json_array_append_new(a, json_string(hex));
    }
    return a;
}

json_t *cf_entry_to_json(const cf_entry *e)
{
    json_t *j = json_object();
    json_object_set_new(j, "type", json_string(cf_ent_kind_name(e->kind)));
    json_object_set_new(j, "component", json_string(e->component));
    if (e->kind == CF_ENT_META) {
        json_object_set_new(j, "meta", e->meta ? json_incref(e->meta) : json_object());
        return j;
    }
    if (e->kind == CF_ENT_OBJECT) {
        cf_json_set_name(j, "key", e->path);
        if (e->version_id)
            json_object_set_new(j, "version_id", json_string(e->version_id));
        if (e->etag)
            json_object_set_new(j, "etag", json_string(e->etag));
        json_object_set_new(j, "size", json_integer((json_int_t)e->size));
        json_object_set_new(j, "mtime", json_integer(e->mtime));
        if (e->chunks)
            json_object_set_new(j, "chunks", chunks_json(e));
        return j;
    }
    cf_json_set_name(j, e->kind == CF_ENT_STREAM ? "name" : "path", e->path);
    if (e->kind != CF_ENT_STREAM) {
        json_object_set_new(j, "mode", json_integer(e->mode));
        json_object_set_new(j, "uid", json_integer(e->uid));
        json_object_set_new(j, "gid", json_integer(e->gid));
        if (e->user)
            json_object_set_new(j, "user", json_string(e->user));
        if (e->group)
            json_object_set_new(j, "group", json_string(e->group));
        json_object_set_new(j, "mtime", json_integer(e->mtime));
        json_object_set_new(j, "mtime_ns", json_integer(e->mtime_ns));
    }
    if (e->kind == CF_ENT_STREAM)
        json_object_set_new(j, "mtime", json_integer(e->mtime)); /* capture time */
    if (e->kind == CF_ENT_FILE || e->kind == CF_ENT_STREAM) {
        json_object_set_new(j, "size", json_integer((json_int_t)e->size));
        json_object_set_new(j, "chunks", chunks_json(e));
    }
    if (e->kind == CF_ENT_FILE) {
        /* Change detection for the next backup. */
        json_object_set_new(j, "dev", json_integer((json_int_t)e->dev));
        json_object_set_new(j, "ino", json_integer((json_int_t)e->ino));
        json_object_set_new(j, "nlink", json_integer((json_int_t)e->nlink));
        json_object_set_new(j, "ctime", json_integer(e->ctime));
        json_object_set_new(j, "ctime_ns", json_integer(e->ctime_ns));
    }
    if (e->target)
        cf_json_set_name(j, "target", e->target);
    if (e->nxattrs) {
        json_t *x = json_object();
        for (size_t i = 0; i < e->nxattrs; i++) {
            char *hex = cf_malloc(2 * e->xattrs[i].len + 1);
            cf_hex(e->xattrs[i].value, e->xattrs[i].len, hex);
            char *key = xattr_key(e->xattrs[i].name);
            json_object_set_new(x, key ? key : e->xattrs[i].name, json_string(hex));
            free(key);
            free(hex);
        }
        json_object_set_new(j, "xattrs", x);
    }
    return j;
}

/* ---- the entry line grammar, shared by both readers ---------------------- */

const char *const cf_mfield_names[CF_MF_COUNT] = {
    "type",    "component", "path",       "path_hex", "name",     "name_hex",   "key",
    "key_hex", "target",    "target_hex", "user",     "group",    "version_id", "etag",
    "mode",    "uid",       "gid",        "mtime",    "mtime_ns", "ctime",      "ctime_ns",
    "dev",     "ino",       "nlink",      "size",     "chunks",   "xattrs",     "meta",
};

int cf_mfield_lookup(const char *name, size_t len)
{
    /* Called for every member of every line: compare only candidates.
     * (name may hold a NUL: strnlen never reads past the candidate's.) */
    for (int i = 0; i < CF_MF_COUNT; i++) {
        const char *c = cf_mfield_names[i];
        if (len && c[0] == name[0] && strnlen(c, len + 1) == len && memcmp(c, name, len) == 0)
            return i;
    }
    return -1;
}

/* Length of the UTF-8 sequence at s (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t left)
{
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, min = 0x10000;
    else
        return 0;
    if (left < n)
        return 0;
    unsigned cp = c & (0x3f >> (n - 1));
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static int utf8_valid(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t left = strlen(s);
    while (left) {
        size_t n = utf8_seq(u, left);
        if (!n)
            return 0;
        u += n;
        left -= n;
    }
    return 1;
}

/* The key an xattr is written under: NULL when its name serves as is,
 * else (not UTF-8, or looking encoded) "hex:" + the hex of the name,
 * malloc'd. */
static char *xattr_key(const char *name)
{
    if (utf8_valid(name) && strncmp(name, "hex:", 4) != 0)
        return NULL;
    size_t nl = strlen(name);
    char *key = cf_malloc(2 * nl + 5);
    memcpy(key, "hex:", 4);
    cf_hex((const uint8_t *)name, nl, key + 4);
    return key;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v << 4 | (unsigned)d;
    }
    *out = v;
    return 0;
}

int cf_mline_lex_check(const char *line, size_t len)
{
    /* Quotes are not tracked: a backslash is only valid inside a string
     * (the parsers refuse one anywhere else), so every backslash starts
     * an escape, and the fast path runs over keys and strings alike. */
    const unsigned char *s = (const unsigned char *)line;
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    for (size_t i = 0; i < len;) {
        /* Eight ordinary bytes at a time (printable ASCII, no backslash). */
        while (i + 8 <= len) {
            uint64_t w, b;
            memcpy(&w, s + i, 8);
            b = w ^ (ones * '\\'); /* zero bytes where w has a backslash */
            uint64_t special = ((w - ones * 0x20) & ~w) /* a byte < 0x20 */
                               | ((b - ones) & ~b)      /* a backslash */
                               | w;                     /* a byte >= 0x80 */
            if (special & high)
                break;
            i += 8;
        }
        if (i >= len)
            break;
        unsigned c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '\\') { /* most bytes */
            i++;
            continue;
        }
        if (c < 0x20 && !(c == '\t' || c == '\r'))
            return cf_fail("control character 0x%02x at byte %zu", c, i);
        if (c == '\\' && i + 1 < len) {
            if (s[i + 1] == 'u') {
                unsigned u, lo;
                if (i + 6 > len || hex4(line + i + 2, &u) != 0)
                    return cf_fail("malformed \\u escape at byte %zu", i);
                if (u == 0)
                    return cf_fail("\\u0000 at byte %zu", i);
                if (u >= 0xdc00 && u <= 0xdfff)
                    return cf_fail("unpaired surrogate escape at byte %zu", i);
                if (u >= 0xd800 && u <= 0xdbff) {
                    if (i + 12 > len || s[i + 6] != '\\' || s[i + 7] != 'u' ||
                        hex4(line + i + 8, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
                        return cf_fail("unpaired surrogate escape at byte %zu", i);
                    i += 12;
                    continue;
                }
                i += 6;
                continue;
            }
            i += 2; /* the escaped byte is ASCII or the parser refuses it */
            continue;
        }
        size_t n = utf8_seq(s + i, len - i);
        if (!n)
            return cf_fail("invalid UTF-8 at byte %zu", i);
        i += n;
    }
    return 0;
}

void cf_mraw_add_chunk(cf_mraw *r, const char *s, size_t len)
{
    if (r->nchunks == r->chunks_cap) {
        r->chunks_cap = r->chunks_cap ? 2 * r->chunks_cap : 8;
        r->chunks = cf_realloc(r->chunks, r->chunks_cap * sizeof *r->chunks);
    }
    cf_id *id = &r->chunks[r->nchunks++];
    if (s && len == 2 * CF_ID_LEN) {
        char hex[2 * CF_ID_LEN + 1]; /* yajl's strings are not terminated */
        memcpy(hex, s, len);
        hex[len] = 0;
        if (cf_unhex(hex, id->b, CF_ID_LEN) == 0)
            return;
    }
    memset(id, 0, sizeof *id);
    if (!r->chunk_bad)
        r->chunk_bad = r->nchunks;
}

void cf_mraw_add_xattr(cf_mraw *r, const char *name, const char *value, size_t vlen)
{
    if (r->nx == r->xcap) {
        r->xcap = r->xcap ? 2 * r->xcap : 4;
        r->xnames = cf_realloc(r->xnames, r->xcap * sizeof *r->xnames);
        r->xvalues = cf_realloc(r->xvalues, r->xcap * sizeof *r->xvalues);
    }
    r->xnames[r->nx] = cf_strdup(name);
    r->xvalues[r->nx] = value ? cf_strndup(value, vlen) : NULL;
    r->nx++;
}

void cf_mraw_free(cf_mraw *r)
{
    for (int i = 0; i < CF_MF_SCALARS; i++)
        free(r->str[i]);
    free(r->chunks);
    for (size_t i = 0; i < r->nx; i++) {
        free(r->xnames[i]);
        free(r->xvalues[i]);
    }
    free(r->xnames);
    free(r->xvalues);
    if (r->meta)
        json_decref(r->meta);
    memset(r, 0, sizeof *r);
}

static char *take_str(cf_mraw *r, int f)
{
    char *s = r->str[f];
    r->str[f] = NULL;
    return s;
}

/* Ranges of the integer members. */
static int int_range(int f, int64_t *lo, int64_t *hi)
{
    *lo = 0;
    *hi = INT64_MAX;
    switch (f) {
    case CF_MF_MODE:
        *hi = 07777;
        break;
    case CF_MF_UID:
    case CF_MF_GID:
        *hi = UINT32_MAX;
        break;
    case CF_MF_MTIME:
    case CF_MF_CTIME:
        *lo = -INT64_MAX;
        break;
    case CF_MF_MTIME_NS:
    case CF_MF_CTIME_NS:
        *hi = 999999999;
        break;
    }
    return 0;
}

/* NAME or NAME_hex (decoded) into *out; -1 if malformed or both given. */
static int take_name(cf_mraw *r, int plain, char **out)
{
    int hex = plain + 1;
    if (r->t[plain] && r->t[hex])
        return cf_fail("both '%s' and '%s'", cf_mfield_names[plain], cf_mfield_names[hex]);
    if (r->t[plain]) {
        *out = take_str(r, plain);
        return 0;
    }
    if (!r->t[hex])
        return 0;
    *out = cf_name_from_hex(r->str[hex]);
    if (!*out)
        return cf_fail("member '%s' is not the hex of a name without NUL", cf_mfield_names[hex]);
    return 0;
}

static int finish(cf_mraw *r, cf_entry *e)
{
    if (r->t[CF_MF_TYPE] != CF_MV_STRING)
        return cf_fail("manifest line without type (a string)");
    const char *type = r->str[CF_MF_TYPE];
    e->kind = CF_ENT_OTHER;
    for (int k = 0; k < CF_ENT_OTHER; k++)
        if (strcmp(type, kind_names[k]) == 0)
            e->kind = (cf_ent_kind)k;
    if (e->kind == CF_ENT_OTHER) {
        /* A line type of a later version: only its component is read. */
        e->component =
            cf_strdup(r->t[CF_MF_COMPONENT] == CF_MV_STRING ? r->str[CF_MF_COMPONENT] : "");
        return 0;
    }
    for (int f = 0; f < CF_MF_SCALARS; f++) {
        if (!r->t[f])
            continue;
        if (f < CF_MF_MODE) {
            if (r->t[f] != CF_MV_STRING)
                return cf_fail("member '%s' is not a string", cf_mfield_names[f]);
            continue;
        }
        int64_t lo, hi;
        int_range(f, &lo, &hi);
        if (r->t[f] != CF_MV_INTEGER || r->num[f] < lo || r->num[f] > hi)
            return cf_fail("member '%s' is not an integer in [%lld, %lld]", cf_mfield_names[f],
                           (long long)lo, (long long)hi);
    }
    e->component = take_str(r, CF_MF_COMPONENT);
    if (!e->component)
        e->component = cf_strdup("");
    if (e->kind == CF_ENT_META) {
        if (r->t[CF_MF_META] != CF_MV_OBJECT)
            return cf_fail("manifest meta line of component '%s' without meta object", e->component);
        if (r->meta_bad)
            return cf_fail("manifest meta line of component '%s': a meta value is not a string",
                           e->component);
        e->meta = r->meta;
        r->meta = NULL;
        return 0;
    }
    int name = e->kind == CF_ENT_STREAM   ? CF_MF_NAME
               : e->kind == CF_ENT_OBJECT ? CF_MF_KEY
                                          : CF_MF_PATH;
    /* Every hex form must decode, whether this kind reads it or not. */
    static const int names[] = {CF_MF_PATH, CF_MF_NAME, CF_MF_KEY, CF_MF_TARGET};
    for (size_t i = 0; i < CF_ARRAY_LEN(names); i++) {
        char *v = NULL;
        if (take_name(r, names[i], &v) != 0)
            return -1;
        if (names[i] == name)
            e->path = v;
        else if (names[i] == CF_MF_TARGET)
            e->target = v;
        else
            free(v);
    }
    if (!e->path)
        return cf_fail("manifest %s entry of component '%s' without a name", type, e->component);
    e->version_id = take_str(r, CF_MF_VERSION_ID);
    e->etag = take_str(r, CF_MF_ETAG);
    e->user = take_str(r, CF_MF_USER);
    e->group = take_str(r, CF_MF_GROUP);
    const int64_t *v = r->num;
    e->mode = (uint32_t)v[CF_MF_MODE];
    e->uid = v[CF_MF_UID];
    e->gid = v[CF_MF_GID];
    e->mtime = v[CF_MF_MTIME];
    e->mtime_ns = (long)v[CF_MF_MTIME_NS];
    e->ctime = v[CF_MF_CTIME];
    e->ctime_ns = (long)v[CF_MF_CTIME_NS];
    e->dev = (uint64_t)v[CF_MF_DEV];
    e->ino = (uint64_t)v[CF_MF_INO];
    e->nlink = (uint64_t)v[CF_MF_NLINK];
    e->size = (uint64_t)v[CF_MF_SIZE];
    if (r->t[CF_MF_CHUNKS]) {
        if (r->t[CF_MF_CHUNKS] != CF_MV_ARRAY)
            return cf_fail("manifest entry %s: member 'chunks' is not an array", e->path);
        if (r->chunk_bad)
            return cf_fail("manifest entry %s: malformed chunk id #%zu", e->path, r->chunk_bad - 1);
        /* Every chunk holds at least one byte: bounds the list by the size. */
        if (r->nchunks > e->size)
            return cf_fail("manifest entry %s: %zu chunks for %llu bytes", e->path, r->nchunks,
                           (unsigned long long)e->size);
        e->nchunks = r->nchunks;
        e->chunks = r->chunks ? r->chunks : cf_malloc(sizeof(cf_id));
        r->chunks = NULL;
    }
    if (r->t[CF_MF_XATTRS] && r->t[CF_MF_XATTRS] != CF_MV_OBJECT)
        return cf_fail("manifest entry %s: member 'xattrs' is not an object", e->path);
    if (r->nx)
        e->xattrs = cf_calloc(r->nx, sizeof(cf_xattr));
    for (size_t i = 0; i < r->nx; i++) {
        const char *name = r->xnames[i], *h = r->xvalues[i];
        size_t n = h ? strlen(h) / 2 : 0;
        if (!h || strlen(h) % 2)
            return cf_fail("manifest entry %s: malformed xattr %s", e->path, name);
        cf_xattr *xa = &e->xattrs[e->nxattrs];
        xa->value = cf_malloc(n + 1);
        if (cf_unhex(h, xa->value, n) != 0) {
            free(xa->value);
            xa->value = NULL;
            return cf_fail("manifest entry %s: malformed xattr %s", e->path, name);
        }
        xa->len = n;
        if (strncmp(name, "hex:", 4) == 0) {
            xa->name = cf_name_from_hex(name + 4);
            if (!xa->name) {
                free(xa->value);
                xa->value = NULL;
                return cf_fail("manifest entry %s: malformed xattr name %s", e->path, name);
            }
        } else {
            xa->name = cf_strdup(name);
        }
        e->nxattrs++;
    }
    return 0;
}

int cf_mraw_finish(cf_mraw *r, cf_entry *e)
{
    memset(e, 0, sizeof *e);
    int rc = finish(r, e);
    cf_mraw_free(r);
    if (rc != 0)
        cf_entry_clear(e);
    return rc;
}

static enum cf_mval json_mval(const json_t *v)
{
    return json_is_string(v)    ? CF_MV_STRING
           : json_is_integer(v) ? CF_MV_INTEGER
           : json_is_object(v)  ? CF_MV_OBJECT
           : json_is_array(v)   ? CF_MV_ARRAY
                                : CF_MV_OTHER;
}

int cf_entry_from_json(json_t *j, cf_entry *e)
{
    cf_mraw r = {0};
    const char *k;
    json_t *v;
    if (!json_is_object(j)) {
        memset(e, 0, sizeof *e);
        return cf_fail("manifest line is not an object");
    }
    json_object_foreach(j, k, v)
    {
        int f = cf_mfield_lookup(k, strlen(k));
        if (f < 0)
            continue;
        r.t[f] = json_mval(v);
        if (f < CF_MF_SCALARS) {
            if (r.t[f] == CF_MV_STRING)
                r.str[f] = cf_strdup(json_string_value(v));
            else if (r.t[f] == CF_MV_INTEGER)
                r.num[f] = (int64_t)json_integer_value(v);
        } else if (f == CF_MF_CHUNKS && r.t[f] == CF_MV_ARRAY) {
            size_t i;
            json_t *c;
            json_array_foreach(v, i, c)
            {
                cf_mraw_add_chunk(&r, json_string_value(c),
                                  json_is_string(c) ? json_string_length(c) : 0);
            }
        } else if (f == CF_MF_XATTRS && r.t[f] == CF_MV_OBJECT) {
            const char *xk;
            json_t *xv;
            json_object_foreach(v, xk, xv)
            {
                const char *s = json_string_value(xv);
                cf_mraw_add_xattr(&r, xk, s, s ? json_string_length(xv) : 0);
            }
        } else if (f == CF_MF_META && r.t[f] == CF_MV_OBJECT) {
            const char *mk;
            json_t *mv;
            r.meta = json_object();
            json_object_foreach(v, mk, mv)
            {
                if (json_is_string(mv))
                    json_object_set(r.meta, mk, mv);
                else
                    r.meta_bad = 1;
            }
        }
    }
    return cf_mraw_finish(&r, e);
}

/* What jansson takes but the grammar does not: nesting deeper than
 * CF_MLINE_MAX_DEPTH, and the integer -2^63 (yajl reports it as overflow). */
static int tree_check(const json_t *v, int depth)
{
    if (json_is_object(v) || json_is_array(v)) {
        if (depth > CF_MLINE_MAX_DEPTH)
            return cf_fail("nested deeper than %d levels", CF_MLINE_MAX_DEPTH);
        if (json_is_object(v)) {
            const char *k;
            json_t *c;
            json_object_foreach((json_t *)v, k, c)
            {
                if (tree_check(c, depth + 1) != 0)
                    return -1;
            }
        } else {
            for (size_t i = 0; i < json_array_size(v); i++)
                if (tree_check(json_array_get(v, i), depth + 1) != 0)
                    return -1;
        }
    } else if (json_is_integer(v) && json_integer_value(v) == INT64_MIN) {
        return cf_fail("integer out of range");
    }
    return 0;
}

int cf_entry_parse_tree(const char *line, size_t len, cf_entry *e)
{
    memset(e, 0, sizeof *e);
    if (cf_mline_lex_check(line, len) != 0)
        return -1;
    json_error_t err;
    json_t *j = json_loadb(line, len, JSON_REJECT_DUPLICATES, &err);
    if (!j)
        return cf_fail("not valid JSON: %s", err.text);
    int rc = !json_is_object(j) ? cf_fail("not a JSON object") : tree_check(j, 1);
    if (rc == 0)
        rc = cf_entry_from_json(j, e);
    json_decref(j);
    return rc;
}

/* ---- writer ---------------------------------------------------------- */

#define SPOOL_BUF (1 << 20)

struct cf_mwriter {
    FILE *spool;
    char *spool_buf; /* its stdio buffer, freed after fclose */
    uint64_t count;
    yajl_gen gen; /* the walk's entries, written without a tree */
};

/* ---- the walk's entries, generated ---------------------------------------
 * A metadata scan writes one line per file: building a jansson tree for
 * each costs more than the stat. Files, directories and links are
 * written by yajl's generator instead, with the members, order and
 * escapes of cf_entry_to_json (a test holds the two to the same bytes);
 * the other kinds go through the tree. */

/* The kinds a walk yields: written by the generator. */
static int walk_kind(cf_ent_kind k)
{
    return k == CF_ENT_FILE || k == CF_ENT_DIR || k == CF_ENT_SYMLINK || k == CF_ENT_HARDLINK;
}

#define GSTR(g, s) yajl_gen_string(g, (const unsigned char *)(s), strlen(s))

static void gen_hex(yajl_gen g, const uint8_t *v, size_t len)
{
    char small[129];
    char *hex = 2 * len + 1 <= sizeof small ? small : cf_malloc(2 * len + 1);
    cf_hex(v, len, hex);
    yajl_gen_string(g, (const unsigned char *)hex, 2 * len);
    if (hex != small)
        free(hex);
}

/* KEY: value, or KEY_hex: hex of its bytes when it is not UTF-8. */
static void gen_name(yajl_gen g, const char *key, const char *value)
{
    if (utf8_valid(value)) {
        GSTR(g, key);
        GSTR(g, value);
        return;
    }
    char k[64];
    snprintf(k, sizeof k, "%s_hex", key);
    GSTR(g, k);
    gen_hex(g, (const uint8_t *)value, strlen(value));
}

/* yajl_gen_integer formats with sprintf, a measurable share of a
 * backup of many small files (a dozen integers a line): the digits are
 * written here and handed over as a number. */
static void gen_int(yajl_gen g, const char *key, long long v)
{
    GSTR(g, key);
    char buf[24], *p = buf + sizeof buf;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    yajl_gen_number(g, p, (size_t)(buf + sizeof buf - p));
}

static void gen_walk_entry(yajl_gen g, const cf_entry *e)
{
    yajl_gen_map_open(g);
    GSTR(g, "type");
    GSTR(g, cf_ent_kind_name(e->kind));
    GSTR(g, "component");
    GSTR(g, e->component);
    gen_name(g, "path", e->path);
    gen_int(g, "mode", e->mode);
    gen_int(g, "uid", e->uid);
    gen_int(g, "gid", e->gid);
    /* (A name that is not UTF-8 is left out, as json_string refuses it.) */
    if (e->user && utf8_valid(e->user)) {
        GSTR(g, "user");
        GSTR(g, e->user);
    }
    if (e->group && utf8_valid(e->group)) {
        GSTR(g, "group");
        GSTR(g, e->group);
    }
    gen_int(g, "mtime", e->mtime);
    gen_int(g, "mtime_ns", e->mtime_ns);
    if (e->kind == CF_ENT_FILE) {
        gen_int(g, "size", (long long)e->size);
        GSTR(g, "chunks");
        yajl_gen_array_open(g);
        for (size_t i = 0; i < e->nchunks; i++)
            gen_hex(g, e->chunks[i].b, CF_ID_LEN);
        yajl_gen_array_close(g);
        gen_int(g, "dev", (long long)e->dev);
        gen_int(g, "ino", (long long)e->ino);
        gen_int(g, "nlink", (long long)e->nlink);
        gen_int(g, "ctime", e->ctime);
        gen_int(g, "ctime_ns", e->ctime_ns);
    }
    if (e->target)
        gen_name(g, "target", e->target);
    if (e->nxattrs) {
        GSTR(g, "xattrs");
        yajl_gen_map_open(g);
        for (size_t i = 0; i < e->nxattrs; i++) {
            char *key = xattr_key(e->xattrs[i].name);
            GSTR(g, key ? key : e->xattrs[i].name);
            free(key);
            gen_hex(g, e->xattrs[i].value, e->xattrs[i].len);
        }
        yajl_gen_map_close(g);
    }
    yajl_gen_map_close(g);
}

/* The line of entry e, without its newline: malloc'd, *len bytes. */
char *cf_entry_line(const cf_entry *e, size_t *len)
{
    if (!walk_kind(e->kind)) {
        json_t *j = cf_entry_to_json(e);
        char *s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (!s)
            cf_fail("cannot encode a manifest line");
        else
            *len = strlen(s);
        return s;
    }
    yajl_gen g = yajl_gen_alloc(NULL);
    gen_walk_entry(g, e);
    const unsigned char *buf;
    size_t n;
    yajl_gen_get_buf(g, &buf, &n);
    char *s = cf_malloc(n + 1);
    memcpy(s, buf, n);
    s[n] = 0;
    *len = n;
    yajl_gen_free(g);
    return s;
}

int cf_manifest_begin(cf_mwriter **out)
{
    FILE *f = cf_tmpfile("manifest-spool");
    if (!f)
        return -1;
    cf_mwriter *w = cf_calloc(1, sizeof *w);
    w->spool = f;
    /* a line per file: stdio's 4 KiB buffer would make a write per dozen */
    w->spool_buf = cf_malloc(SPOOL_BUF);
    setvbuf(f, w->spool_buf, _IOFBF, SPOOL_BUF);
    *out = w;
    return 0;
}

int cf_manifest_add(cf_mwriter *w, const cf_entry *e)
{
    if (walk_kind(e->kind)) {
        if (!w->gen)
            w->gen = yajl_gen_alloc(NULL);
        yajl_gen_reset(w->gen, NULL);
        gen_walk_entry(w->gen, e);
        const unsigned char *buf;
        size_t n;
        yajl_gen_get_buf(w->gen, &buf, &n);
        int rc = cf_manifest_add_line(w, (const char *)buf, n);
        yajl_gen_clear(w->gen);
        return rc;
    }
    json_t *j = cf_entry_to_json(e);
    int r = json_dumpf(j, w->spool, JSON_COMPACT);
    json_decref(j);
    if (r != 0 || fputc('\n', w->spool) == EOF)
        return cf_fail_errno("cannot write manifest spool file");
    w->count++;
    return 0;
}

int cf_manifest_spool_rewind(cf_mwriter *w)
{
    if (fflush(w->spool) != 0 || fseek(w->spool, 0, SEEK_SET) != 0)
        return cf_fail_errno("manifest spool file");
    return 0;
}

int cf_manifest_spool_next(cf_mwriter *w, cf_entry *e)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, w->spool);
    if (n < 0) {
        free(line);
        return ferror(w->spool) ? cf_fail_errno("cannot read manifest spool file") : 0;
    }
    if (n && line[n - 1] == '\n')
        n--;
    int rc = cf_entry_parse_fast(line, (size_t)n, e);
    free(line);
    return rc == 0 ? 1 : -1;
}

int cf_manifest_add_line(cf_mwriter *w, const char *line, size_t len)
{
    if (fwrite(line, 1, len, w->spool) != len || fputc('\n', w->spool) == EOF)
        return cf_fail_errno("cannot write manifest spool file");
    w->count++;
    return 0;
}

uint64_t cf_manifest_count(cf_mwriter *w)
{
    return w->count;
}

static int write_line(cf_objw *ow, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    if (!s)
        return cf_fail("cannot encode manifest line");
    int r = cf_repo_objw_write(ow, s, strlen(s));
    if (r == 0)
        r = cf_repo_objw_write(ow, "\n", 1);
    free(s);
    return r;
}

/* Spool size from which the manifest is compressed by several threads. */
#define MANIFEST_PARALLEL_BYTES (8L << 20)

int cf_manifest_commit(cf_mwriter *w, cf_repo *r, const char *set_id, json_t *header)
{
    long size = fflush(w->spool) == 0 ? ftell(w->spool) : -1;
    if (size < 0 || fseek(w->spool, 0, SEEK_SET) != 0)
        return cf_fail_errno("manifest spool file");
    char *key = cf_asprintf("sets/%s", set_id);
    cf_objw *ow;
    if (cf_repo_objw_open(r, CF_OBJ_MANIFEST, key, &ow) != 0) {
        free(key);
        return -1;
    }
    /* The walk is over when the set is written: a large manifest is
     * compressed on every core rather than on this one. */
    cf_repo_objw_manifest(ow, size >= MANIFEST_PARALLEL_BYTES ? cf_cpus(1, 4) : 1);
    json_object_set_new(header, "type", json_string("set"));
    json_object_set_new(header, "format", json_integer(CF_MANIFEST_FORMAT));
    json_object_set_new(header, "entries", json_integer((json_int_t)w->count));
    int rc = write_line(ow, header);
    char buf[1 << 16];
    size_t n;
    while (rc == 0 && (n = fread(buf, 1, sizeof buf, w->spool)) > 0)
        rc = cf_repo_objw_write(ow, buf, n);
    if (rc == 0 && ferror(w->spool))
        rc = cf_fail_errno("reading manifest spool file");
    if (rc == 0) {
        json_t *end = json_pack("{s:s,s:I}", "type", "end", "entries", (json_int_t)w->count);
        rc = write_line(ow, end);
        json_decref(end);
    }
    if (rc == 0)
        rc = cf_repo_objw_commit(ow);
    else
        cf_repo_objw_abort(ow);
    if (rc != 0)
        cf_error_prefix("writing manifest %s", key);
    free(key);
    return rc;
}

void cf_manifest_free(cf_mwriter *w)
{
    if (!w)
        return;
    if (w->spool)
        fclose(w->spool);
    free(w->spool_buf);
    if (w->gen)
        yajl_gen_free(w->gen);
    free(w);
}

/* ---- reader ---------------------------------------------------------- */

struct cf_mreader {
    cf_objr *rd;
    char *key;
    char *buf;
    size_t len, cap, pos;
    int eof;
    uint64_t seen;
    uint64_t expected;
    uint64_t lineno; /* of the last line read; the header is line 1 */
    int ended;
    const char *line; /* the last line read, line_len bytes (in buf) */
    size_t line_len;
};

/* Next line without the newline (NUL-terminated, *len bytes: a NUL inside
 * is part of the line, and refused), 0 at the end. */
static int read_line(cf_mreader *m, char **line, size_t *len)
{
    for (;;) {
        char *nl = m->pos < m->len ? memchr(m->buf + m->pos, '\n', m->len - m->pos) : NULL;
        if (nl) {
            *nl = 0;
            *line = m->buf + m->pos;
            *len = (size_t)(nl - *line);
            m->pos = (size_t)(nl - m->buf) + 1;
            m->lineno++;
            m->line = *line;
            m->line_len = *len;
            return 1;
        }
        if (m->eof) {
            if (m->pos < m->len)
                return cf_fail("%s: line %llu: truncated (last line has no end)", m->key,
                               (unsigned long long)m->lineno + 1);
            return 0;
        }
        /* compact, grow, refill (the last line moves) */
        m->line = NULL;
        if (m->pos) /* buf is NULL before the first read: no memmove(NULL, ...) */
            memmove(m->buf, m->buf + m->pos, m->len - m->pos);
        m->len -= m->pos;
        m->pos = 0;
        if (m->cap - m->len < 65536) {
            m->cap = m->cap ? m->cap * 2 : 1 << 17;
            m->buf = cf_realloc(m->buf, m->cap);
        }
        long n = cf_repo_objr_read(m->rd, m->buf + m->len, m->cap - m->len);
        if (n < 0)
            return -1;
        if (n == 0)
            m->eof = 1;
        m->len += (size_t)n;
    }
}

static json_t *parse_line(cf_mreader *m, const char *line, size_t len)
{
    json_error_t err;
    json_t *j = NULL;
    if (cf_mline_lex_check(line, len) != 0) {
        cf_error_prefix("%s: line %llu is not valid JSON", m->key, (unsigned long long)m->lineno);
        return NULL;
    }
    j = json_loadb(line, len, JSON_REJECT_DUPLICATES, &err);
    if (!j || !json_is_object(j)) {
        cf_fail("%s: line %llu is not valid JSON: %s", m->key, (unsigned long long)m->lineno,
                j ? "not an object" : err.text);
        if (j)
            json_decref(j);
        return NULL;
    }
    return j;
}

int cf_manifest_open(cf_repo *r, const char *set_id, cf_mreader **out, json_t **header)
{
    cf_mreader *m = cf_calloc(1, sizeof *m);
    m->key = cf_asprintf("sets/%s", set_id);
    if (cf_repo_objr_open(r, CF_OBJ_MANIFEST, m->key, &m->rd) != 0) {
        free(m->key);
        free(m);
        return -1;
    }
    char *line;
    size_t len;
    int rc = read_line(m, &line, &len);
    json_t *h = rc == 1 ? parse_line(m, line, len) : NULL;
    if (!h || strcmp(json_string_value(json_object_get(h, "type")) ?: "", "set") != 0) {
        if (rc == 0)
            cf_fail("%s: empty manifest", m->key);
        else if (rc == 1 && h)
            cf_fail("%s: first line is not a set header", m->key);
        if (h)
            json_decref(h);
        cf_manifest_close(m);
        return -1;
    }
    json_int_t fmt = json_integer_value(json_object_get(h, "format"));
    if (fmt != CF_MANIFEST_FORMAT) {
        cf_fail("%s: manifest format %lld is not supported by this coffer (knows %d)", m->key,
                (long long)fmt, CF_MANIFEST_FORMAT);
        json_decref(h);
        cf_manifest_close(m);
        return -1;
    }
    if (cf_set_header_check(set_id, h) != 0) {
        json_decref(h);
        cf_manifest_close(m);
        return -1;
    }
    m->expected = (uint64_t)json_integer_value(json_object_get(h, "entries"));
    *header = h;
    *out = m;
    return 0;
}

/* Lines shorter than this are parsed whole even when a caller could
 * pass over them: the head costs about what the line does. */
#define SKIM_MIN_LINE 4096

int cf_manifest_next(cf_mreader *m, cf_entry *e)
{
    return cf_manifest_next_skim(m, e, NULL, NULL);
}

int cf_manifest_next_skim(cf_mreader *m, cf_entry *e, int (*pass)(void *ud, const cf_entry *head),
                          void *ud)
{
    if (m->ended)
        return 0;
    char *line;
    size_t len;
    int rc = read_line(m, &line, &len);
    if (rc < 0)
        return -1;
    if (rc == 0)
        return cf_fail("%s: truncated: no end line after %llu entries", m->key,
                       (unsigned long long)m->seen);
    if (pass && len >= SKIM_MIN_LINE && cf_entry_parse_head(line, len, e) == 1) {
        int skip = pass(ud, e);
        cf_entry_clear(e);
        if (skip) {
            m->seen++;
            return 2;
        }
    }
    if (cf_entry_parse_fast(line, len, e) != 0) {
        cf_error_prefix("%s: line %llu", m->key, (unsigned long long)m->lineno);
        return -1;
    }
    if (e->kind != CF_ENT_OTHER) {
        m->seen++;
        return 1;
    }
    /* A line type this reader does not know, or the end line (rare: one
     * tree per manifest). */
    json_t *j = parse_line(m, line, len);
    if (!j) {
        cf_entry_clear(e);
        return -1;
    }
    const char *type = json_string_value(json_object_get(j, "type"));
    if (type && strcmp(type, "end") == 0) {
        cf_entry_clear(e);
        json_t *cnt = json_object_get(j, "entries");
        uint64_t end_count = (uint64_t)json_integer_value(cnt);
        int bad = !json_is_integer(cnt) || json_integer_value(cnt) < 0;
        json_decref(j);
        m->ended = 1;
        if (bad)
            return cf_fail("%s: line %llu: end line without a count of entries", m->key,
                           (unsigned long long)m->lineno);
        if (m->seen != m->expected || end_count != m->seen)
            return cf_fail("%s: has %llu entries, header says %llu and end line %llu", m->key,
                           (unsigned long long)m->seen, (unsigned long long)m->expected,
                           (unsigned long long)end_count);
        /* Drain to the end so the trailer hash is checked. */
        char tmp[4096];
        long n;
        while ((n = cf_repo_objr_read(m->rd, tmp, sizeof tmp)) > 0)
            ;
        return n < 0 ? -1 : 0;
    }
    json_decref(j);
    m->seen++;
    return 1;
}

const char *cf_manifest_line(const cf_mreader *m, size_t *len)
{
    *len = m->line ? m->line_len : 0;
    return m->line;
}

void cf_manifest_close(cf_mreader *m)
{
    if (!m)
        return;
    if (m->rd)
        cf_repo_objr_close(m->rd);
    free(m->key);
    free(m->buf);
    free(m);
}

json_t *cf_set_component(json_t *header, const char *name)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(header, "components"), i, c)
    {
        if (strcmp(json_string_value(json_object_get(c, "name")) ?: "", name) == 0)
            return c;
    }
    return NULL;
}

int cf_manifest_header(cf_repo *r, const char *set_id, json_t **header)
{
    cf_mreader *m;
    if (cf_manifest_open(r, set_id, &m, header) != 0)
        return -1;
    cf_manifest_close(m);
    return 0;
}

struct list_ctx {
    char **ids;
    size_t n;
};

static int list_cb(void *ud, const char *key, const coffer_object_stat *st)
{
    (void)st;
    struct list_ctx *c = ud;
    const char *id = strncmp(key, "sets/", 5) == 0 ? key + 5 : key;
    if (!*id || strchr(id, '/'))
        return 0;
    c->ids = cf_realloc(c->ids, (c->n + 1) * sizeof(char *));
    c->ids[c->n++] = cf_strdup(id);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int cf_sets_list(cf_repo *r, char ***ids, size_t *n)
{
    struct list_ctx c = {0};
    char **keys;
    size_t nk;
    if (cf_repo_sets_ahead_take(r, &keys, &nk) == 1) {
        /* listed once the lock was written (cf_run_lock) */
        for (size_t i = 0; i < nk; i++)
            list_cb(&c, keys[i], NULL);
        cf_strv_free(keys, nk);
    } else if (cf_store_list(cf_repo_store(r), "sets/", list_cb, &c) != 0) {
        cf_strv_free(c.ids, c.n);
        return -1;
    }
    if (c.n) /* c.ids is NULL without sets */
        qsort(c.ids, c.n, sizeof(char *), cmp_str);
    cf_repo_cache_trim(r, CF_OBJ_MANIFEST, c.ids, c.n);
    *ids = c.ids;
    *n = c.n;
    return 0;
}
