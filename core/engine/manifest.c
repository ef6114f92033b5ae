#include "engine/manifest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
            const char *name = e->xattrs[i].name;
            json_t *probe = json_string(name);
            if (probe && strncmp(name, "hex:", 4) != 0) {
                json_object_set_new(x, name, json_string(hex));
            } else {
                /* not UTF-8 (or looks encoded): "hex:" + hex of the name */
                size_t nl = strlen(name);
                char *key = cf_malloc(2 * nl + 5);
                memcpy(key, "hex:", 4);
                cf_hex((const uint8_t *)name, nl, key + 4);
                json_object_set_new(x, key, json_string(hex));
                free(key);
            }
            if (probe)
                json_decref(probe);
            free(hex);
        }
        json_object_set_new(j, "xattrs", x);
    }
    return j;
}

static int64_t geti(json_t *j, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(j, k));
}

int cf_entry_from_json(json_t *j, cf_entry *e)
{
    memset(e, 0, sizeof *e);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type)
        return cf_fail("manifest line without type");
    e->kind = CF_ENT_OTHER;
    for (int k = 0; k < CF_ENT_OTHER; k++)
        if (strcmp(type, kind_names[k]) == 0)
            e->kind = (cf_ent_kind)k;
    const char *comp = json_string_value(json_object_get(j, "component"));
    e->component = cf_strdup(comp ? comp : "");
    if (e->kind == CF_ENT_OTHER)
        return 0;
    if (e->kind == CF_ENT_META) {
        e->meta = json_object_get(j, "meta");
        if (!json_is_object(e->meta)) {
            e->meta = NULL;
            return cf_fail("manifest meta line of component '%s' without meta object", e->component);
        }
        json_incref(e->meta);
        return 0;
    }
    e->path = cf_json_get_name(j, e->kind == CF_ENT_STREAM   ? "name"
                                  : e->kind == CF_ENT_OBJECT ? "key"
                                                             : "path");
    e->version_id = cf_strdup(json_string_value(json_object_get(j, "version_id")));
    e->etag = cf_strdup(json_string_value(json_object_get(j, "etag")));
    if (!e->path)
        return cf_fail("manifest %s entry of component '%s' without a name", type, e->component);
    e->mode = (uint32_t)geti(j, "mode") & 07777;
    e->uid = geti(j, "uid");
    e->gid = geti(j, "gid");
    e->user = cf_strdup(json_string_value(json_object_get(j, "user")));
    e->group = cf_strdup(json_string_value(json_object_get(j, "group")));
    e->mtime = geti(j, "mtime");
    e->mtime_ns = (long)geti(j, "mtime_ns");
    e->ctime = geti(j, "ctime");
    e->ctime_ns = (long)geti(j, "ctime_ns");
    e->dev = (uint64_t)geti(j, "dev");
    e->ino = (uint64_t)geti(j, "ino");
    e->nlink = (uint64_t)geti(j, "nlink");
    e->size = (uint64_t)geti(j, "size");
    e->target = cf_json_get_name(j, "target");
    json_t *a = json_object_get(j, "chunks");
    if (json_is_array(a)) {
        e->nchunks = json_array_size(a);
        e->chunks = cf_malloc((e->nchunks ? e->nchunks : 1) * sizeof(cf_id));
        for (size_t i = 0; i < e->nchunks; i++) {
            const char *h = json_string_value(json_array_get(a, i));
            if (!h || cf_id_parse(h, &e->chunks[i]) != 0)
                return cf_fail("manifest entry %s: malformed chunk id #%zu", e->path, i);
        }
    }
    json_t *x = json_object_get(j, "xattrs");
    if (json_is_object(x)) {
        const char *name;
        json_t *v;
        e->xattrs = cf_calloc(json_object_size(x), sizeof(cf_xattr));
        json_object_foreach(x, name, v)
        {
            const char *h = json_string_value(v);
            size_t n = h ? strlen(h) / 2 : 0;
            cf_xattr *xa = &e->xattrs[e->nxattrs];
            xa->value = cf_malloc(n + 1);
            if (!h || cf_unhex(h, xa->value, n) != 0) {
                free(xa->value);
                return cf_fail("manifest entry %s: malformed xattr %s", e->path, name);
            }
            if (strncmp(name, "hex:", 4) == 0) {
                size_t nl = strlen(name + 4) / 2;
                xa->name = cf_malloc(nl + 1);
                if (strlen(name + 4) % 2 || cf_unhex(name + 4, (uint8_t *)xa->name, nl) != 0) {
                    free(xa->name);
                    free(xa->value);
                    xa->name = NULL;
                    return cf_fail("manifest entry %s: malformed xattr name %s", e->path, name);
                }
                xa->name[nl] = 0;
            } else {
                xa->name = cf_strdup(name);
            }
            xa->len = n;
            e->nxattrs++;
        }
    }
    return 0;
}

/* ---- writer ---------------------------------------------------------- */

struct cf_mwriter {
    FILE *spool;
    char *path;
    uint64_t count;
};

int cf_manifest_begin(cf_mwriter **out)
{
    cf_mwriter *w = cf_calloc(1, sizeof *w);
    w->path = cf_asprintf("%s/manifest-XXXXXX", cf_tmpdir());
    int fd = mkstemp(w->path);
    if (fd < 0) {
        cf_fail_errno("cannot create manifest spool file %s", w->path);
        free(w->path);
        free(w);
        return -1;
    }
    unlink(w->path); /* private: gone with the process */
    w->spool = fdopen(fd, "w+");
    *out = w;
    return 0;
}

int cf_manifest_add(cf_mwriter *w, const cf_entry *e)
{
    json_t *j = cf_entry_to_json(e);
    int r = json_dumpf(j, w->spool, JSON_COMPACT);
    json_decref(j);
    if (r != 0 || fputc('\n', w->spool) == EOF)
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

int cf_manifest_commit(cf_mwriter *w, cf_repo *r, const char *set_id, json_t *header)
{
    if (fflush(w->spool) != 0 || fseek(w->spool, 0, SEEK_SET) != 0)
        return cf_fail_errno("manifest spool file");
    char *key = cf_asprintf("sets/%s", set_id);
    cf_objw *ow;
    if (cf_repo_objw_open(r, CF_OBJ_MANIFEST, key, &ow) != 0) {
        free(key);
        return -1;
    }
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
    free(w->path);
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
    int ended;
};

/* Next line without the newline, or NULL at the end. */
static int read_line(cf_mreader *m, char **line)
{
    for (;;) {
        char *nl = m->pos < m->len ? memchr(m->buf + m->pos, '\n', m->len - m->pos) : NULL;
        if (nl) {
            *nl = 0;
            *line = m->buf + m->pos;
            m->pos = (size_t)(nl - m->buf) + 1;
            return 1;
        }
        if (m->eof) {
            if (m->pos < m->len)
                return cf_fail("%s: truncated (last line has no end)", m->key);
            return 0;
        }
        /* compact, grow, refill */
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

static json_t *parse_line(cf_mreader *m, const char *line)
{
    json_error_t err;
    json_t *j = json_loads(line, 0, &err);
    if (!j || !json_is_object(j)) {
        cf_fail("%s: line %llu is not valid JSON: %s", m->key,
                (unsigned long long)m->seen + 1, err.text);
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
    int rc = read_line(m, &line);
    json_t *h = rc == 1 ? parse_line(m, line) : NULL;
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

int cf_manifest_next(cf_mreader *m, cf_entry *e)
{
    if (m->ended)
        return 0;
    char *line;
    int rc = read_line(m, &line);
    if (rc < 0)
        return -1;
    if (rc == 0)
        return cf_fail("%s: truncated: no end line after %llu entries", m->key,
                       (unsigned long long)m->seen);
    if (cf_entry_parse_fast(line, strlen(line), e) == 1) {
        m->seen++;
        return 1;
    }
    json_t *j = parse_line(m, line);
    if (!j)
        return -1;
    const char *type = json_string_value(json_object_get(j, "type"));
    if (type && strcmp(type, "end") == 0) {
        uint64_t end_count = (uint64_t)json_integer_value(json_object_get(j, "entries"));
        json_decref(j);
        m->ended = 1;
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
    m->seen++;
    rc = cf_entry_from_json(j, e);
    json_decref(j);
    if (rc != 0) {
        cf_error_prefix("%s", m->key);
        cf_entry_clear(e);
        return -1;
    }
    return 1;
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
    if (cf_store_list(cf_repo_store(r), "sets/", list_cb, &c) != 0) {
        cf_strv_free(c.ids, c.n);
        return -1;
    }
    if (c.n) /* c.ids is NULL without sets */
        qsort(c.ids, c.n, sizeof(char *), cmp_str);
    *ids = c.ids;
    *n = c.n;
    return 0;
}
