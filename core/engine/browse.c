/* ls, find, diff and stats over set manifests (see browse.h). */
#include "engine/browse.h"

#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "engine/manifest.h"
#include "engine/progress.h"
#include "util/util.h"

/* ---- small helpers -------------------------------------------------------- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        h ^= c[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
#define FNV0 0xcbf29ce484222325ULL

static uint64_t fnv_str(uint64_t h, const char *s)
{
    return fnv(h, s ? s : "", s ? strlen(s) + 1 : 1);
}

static uint64_t key_hash(const cf_entry *e)
{
    return fnv_str(fnv_str(FNV0, e->component), e->path);
}

/* What a file holds: kind, size, chunk ids, link target. */
static uint64_t content_hash(const cf_entry *e)
{
    uint64_t h = fnv(FNV0, &e->kind, sizeof e->kind);
    h = fnv(h, &e->size, sizeof e->size);
    for (size_t i = 0; i < e->nchunks; i++)
        h = fnv(h, &e->chunks[i], sizeof e->chunks[i]);
    h = fnv_str(h, e->target);
    return fnv_str(h, e->version_id);
}

/* Its metadata: mode, owner, mtime, xattrs. */
static uint64_t meta_hash(const cf_entry *e)
{
    uint64_t h = fnv(FNV0, &e->mode, sizeof e->mode);
    h = fnv(h, &e->uid, sizeof e->uid);
    h = fnv(h, &e->gid, sizeof e->gid);
    h = fnv_str(fnv_str(h, e->user), e->group);
    h = fnv(h, &e->mtime, sizeof e->mtime);
    h = fnv(h, &e->mtime_ns, sizeof e->mtime_ns);
    for (size_t i = 0; i < e->nxattrs; i++) {
        h = fnv_str(h, e->xattrs[i].name);
        h = fnv(h, e->xattrs[i].value, e->xattrs[i].len);
    }
    return h;
}

static int is_named(const cf_entry *e)
{
    return e->kind == CF_ENT_FILE || e->kind == CF_ENT_DIR || e->kind == CF_ENT_SYMLINK ||
           e->kind == CF_ENT_HARDLINK || e->kind == CF_ENT_STREAM || e->kind == CF_ENT_OBJECT;
}

static const char *kind_word(cf_ent_kind k)
{
    switch (k) {
    case CF_ENT_FILE: return "file";
    case CF_ENT_DIR: return "dir";
    case CF_ENT_SYMLINK: return "symlink";
    case CF_ENT_HARDLINK: return "hardlink";
    case CF_ENT_STREAM: return "stream";
    case CF_ENT_OBJECT: return "object";
    default: return "other";
    }
}

/* A name from a set, printable on a terminal: control bytes and
 * backslashes escaped (a set is untrusted input). */
static void put_name(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f || *p == '\\')
            printf("\\x%02x", *p);
        else
            putchar(*p);
    }
}

static void mode_string(const cf_entry *e, char out[11])
{
    static const char rwx[] = "rwxrwxrwx";
    out[0] = e->kind == CF_ENT_DIR ? 'd' : e->kind == CF_ENT_SYMLINK ? 'l' : '-';
    for (int i = 0; i < 9; i++)
        out[1 + i] = (e->mode & (0400u >> i)) ? rwx[i] : '-';
    if (e->mode & 04000)
        out[3] = out[3] == 'x' ? 's' : 'S';
    if (e->mode & 02000)
        out[6] = out[6] == 'x' ? 's' : 'S';
    if (e->mode & 01000)
        out[9] = out[9] == 'x' ? 't' : 'T';
    out[10] = 0;
}

static void time_string(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(buf, len, "%" PRId64, t);
}

static json_t *entry_json(const cf_entry *e, const char *set)
{
    json_t *j = json_object();
    if (set)
        json_object_set_new(j, "set", json_string(set));
    cf_json_set_name(j, "component", e->component);
    cf_json_set_name(j, "path", e->path);
    json_object_set_new(j, "type", json_string(kind_word(e->kind)));
    if (e->kind != CF_ENT_STREAM && e->kind != CF_ENT_OBJECT) {
        json_object_set_new(j, "mode", json_integer(e->mode));
        json_object_set_new(j, "uid", json_integer(e->uid));
        json_object_set_new(j, "gid", json_integer(e->gid));
        if (e->user)
            cf_json_set_name(j, "user", e->user);
        if (e->group)
            cf_json_set_name(j, "group", e->group);
    }
    json_object_set_new(j, "size", json_integer((json_int_t)e->size));
    json_object_set_new(j, "mtime", json_integer(e->mtime));
    if (e->target)
        cf_json_set_name(j, "target", e->target);
    return j;
}

static void print_long(const cf_entry *e, const char *name)
{
    char m[11], t[32], sz[32];
    mode_string(e, m);
    time_string(e->mtime, t, sizeof t);
    snprintf(sz, sizeof sz, "%" PRIu64, e->size);
    if (e->kind == CF_ENT_STREAM || e->kind == CF_ENT_OBJECT)
        printf("%-10s %-17s %12s %s  ", kind_word(e->kind), "-", sz, t);
    else {
        char owner[64];
        snprintf(owner, sizeof owner, "%s/%s", e->user ? e->user : "?", e->group ? e->group : "?");
        printf("%s %-17s %12s %s  ", m, owner, sz, t);
    }
    put_name(name);
    if (e->kind == CF_ENT_SYMLINK && e->target) {
        fputs(" -> ", stdout);
        put_name(e->target);
    } else if (e->kind == CF_ENT_HARDLINK && e->target) {
        fputs(" => ", stdout);
        put_name(e->target);
    }
    putchar('\n');
}

/* A PATH argument: relative, no "." or ".." part; leading and trailing
 * slashes dropped. Returns a copy or NULL with cf_error. */
static char *clean_path(const char *p)
{
    while (*p == '/')
        p++;
    char *c = cf_strdup(p);
    size_t n = strlen(c);
    while (n && c[n - 1] == '/')
        c[--n] = 0;
    for (char *s = c; *s;) {
        size_t l = strcspn(s, "/");
        if (l == 0 || (l == 1 && s[0] == '.') || (l == 2 && s[0] == '.' && s[1] == '.')) {
            cf_fail("path '%s': a path inside a set has no empty, '.' or '..' part", p);
            free(c);
            return NULL;
        }
        s += l;
        if (*s)
            s++;
    }
    return c;
}

/* A manifest opened for its entries (the header read and dropped). */
static int open_entries(cf_run *run, const char *id, cf_mreader **m)
{
    json_t *h;
    if (cf_manifest_open(run->repo, id, m, &h) != 0)
        return -1;
    json_decref(h);
    return 0;
}

/* ---- ls ------------------------------------------------------------------- */

int cf_ls(cf_run *run, const char *set_id, const cf_ls_opts *o, json_t *out)
{
    char *path = clean_path(o->path ? o->path : "");
    if (!path)
        return CF_EXIT_FAILED;
    cf_mreader *m;
    json_t *h;
    if (cf_manifest_open(run->repo, set_id, &m, &h) != 0) {
        free(path);
        return CF_EXIT_FAILED;
    }
    int rc = CF_EXIT_OK;
    if (!*path && !o->recursive) {
        /* the components */
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(h, "components"), i, c)
        {
            const char *n = json_string_value(json_object_get(c, "name")) ?: "?";
            const char *t = json_string_value(json_object_get(c, "type")) ?: "?";
            const char *d = json_string_value(json_object_get(c, "driver"));
            if (out)
                json_array_append_new(out, json_pack("{s:s,s:s,s:s?}", "component", n, "type", t,
                                                     "driver", d));
            else if (o->longfmt)
                printf("%-12s %-9s %s/\n", t, d ? d : "", n);
            else
                printf("%s/\n", n);
        }
        goto done;
    }
    char *comp = path, *sub = strchr(path, '/');
    if (sub)
        *sub++ = 0;
    else
        sub = path + strlen(path);
    if (*comp && !cf_set_component(h, comp)) {
        cf_fail("set %s has no component '%s'", set_id, comp);
        rc = CF_EXIT_FAILED;
        goto done;
    }
    size_t sl = strlen(sub), shown = 0;
    int found = !*sub; /* the component itself */
    cf_entry e;
    int more;
    while ((more = cf_manifest_next(m, &e)) == 1) {
        if (!is_named(&e) || (*comp && strcmp(e.component, comp) != 0)) {
            cf_entry_clear(&e);
            continue;
        }
        const char *rest = NULL;
        int self = 0;
        if (!*sub)
            rest = e.path;
        else if (strncmp(e.path, sub, sl) == 0 && e.path[sl] == '/')
            rest = e.path + sl + 1;
        else if (strcmp(e.path, sub) == 0) {
            found = 1;
            if (e.kind == CF_ENT_DIR) {
                cf_entry_clear(&e);
                continue;
            }
            rest = e.path; /* a file: listed itself */
            self = 1;
        }
        if (rest && (self || o->recursive || !strchr(rest, '/'))) {
            found = 1;
            shown++;
            if (out) {
                json_array_append_new(out, entry_json(&e, NULL));
            } else {
                char *name = o->recursive || rest == e.path
                                 ? cf_asprintf("%s/%s", e.component, e.path)
                                 : cf_asprintf("%s%s", rest, e.kind == CF_ENT_DIR ? "/" : "");
                if (o->longfmt)
                    print_long(&e, name);
                else {
                    put_name(name);
                    putchar('\n');
                }
                free(name);
            }
        }
        cf_entry_clear(&e);
    }
    if (more < 0)
        rc = CF_EXIT_FAILED;
    else if (!found) {
        cf_fail("set %s holds no %s/%s", set_id, comp, sub);
        rc = CF_EXIT_FAILED;
    }
    (void)shown;
done:
    json_decref(h);
    cf_manifest_close(m);
    free(path);
    return rc;
}

/* ---- sets of this policy ---------------------------------------------------- */

/* The sets `spec` names: "all" (or NULL) for every set of the policy,
 * oldest first, or one set. */
static int policy_sets(cf_run *run, const char *spec, char ***ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    if (spec && strcmp(spec, "all") != 0) {
        char *id;
        if (cf_resolve_set(run, spec, &id) != 0)
            return -1;
        *ids = cf_malloc(sizeof(char *));
        (*ids)[0] = id;
        *n = 1;
        return 0;
    }
    return cf_policy_sets(run, ids, n);
}

/* ---- a map of 64-bit keys to 64-bit values (open addressing) --------------- */

typedef struct u64map {
    uint64_t *k, *v;
    size_t cap, n;
} u64map;

static uint64_t *u64map_slot(u64map *m, uint64_t key, int *fresh)
{
    if (key == 0)
        key = 1; /* 0 marks an empty slot */
    if ((m->n + 1) * 4 > m->cap * 3) {
        u64map old = *m;
        m->cap = old.cap ? old.cap * 2 : 1024;
        m->k = cf_calloc(m->cap, sizeof *m->k);
        m->v = cf_calloc(m->cap, sizeof *m->v);
        m->n = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.k[i]) {
                int f;
                *u64map_slot(m, old.k[i], &f) = old.v[i];
            }
        free(old.k);
        free(old.v);
    }
    size_t i = (size_t)(key * 0x9e3779b97f4a7c15ULL) & (m->cap - 1);
    while (m->k[i] && m->k[i] != key)
        i = (i + 1) & (m->cap - 1);
    *fresh = !m->k[i];
    if (*fresh) {
        m->k[i] = key;
        m->n++;
    }
    return &m->v[i];
}

static void u64map_free(u64map *m)
{
    free(m->k);
    free(m->v);
}

/* ---- find ------------------------------------------------------------------- */

int cf_find_match(const char *pattern, const char *component, const char *path)
{
    if (!strchr(pattern, '/')) {
        const char *base = strrchr(path, '/');
        return fnmatch(pattern, base ? base + 1 : path, 0) == 0;
    }
    if (fnmatch(pattern, path, FNM_PATHNAME) == 0)
        return 1;
    size_t cl = strlen(component);
    if (strncmp(pattern, component, cl) == 0 && pattern[cl] == '/')
        return fnmatch(pattern + cl + 1, path, FNM_PATHNAME) == 0;
    return 0;
}

int cf_find(cf_run *run, const char *set, char *const *patterns, size_t np, json_t *out)
{
    char **ids;
    size_t n;
    if (policy_sets(run, set, &ids, &n) != 0)
        return CF_EXIT_FAILED;
    size_t *hits = cf_calloc(np ? np : 1, sizeof *hits);
    u64map seen = {0}; /* path key -> content hash, for matched paths only */
    int rc = CF_EXIT_OK;
    for (size_t s = 0; s < n && rc == CF_EXIT_OK; s++) {
        cf_mreader *m;
        json_t *h;
        if (cf_manifest_open(run->repo, ids[s], &m, &h) != 0) {
            rc = CF_EXIT_FAILED;
            break;
        }
        json_decref(h);
        cf_entry e;
        int more;
        while ((more = cf_manifest_next(m, &e)) == 1) {
            int hit = 0;
            if (is_named(&e))
                for (size_t i = 0; i < np; i++)
                    if (cf_find_match(patterns[i], e.component, e.path)) {
                        hits[i]++;
                        hit = 1;
                    }
            if (hit) {
                int fresh;
                uint64_t c = content_hash(&e);
                uint64_t *v = u64map_slot(&seen, key_hash(&e), &fresh);
                const char *status = fresh ? "new" : *v == c ? "unchanged" : "changed";
                *v = c;
                if (out) {
                    json_t *j = entry_json(&e, ids[s]);
                    json_object_set_new(j, "status", json_string(status));
                    json_array_append_new(out, j);
                } else {
                    char t[32];
                    time_string(e.mtime, t, sizeof t);
                    printf("%s  %-9s %12" PRIu64 "  %s  ", ids[s], status, e.size, t);
                    put_name(e.component);
                    putchar('/');
                    put_name(e.path);
                    putchar('\n');
                }
            }
            cf_entry_clear(&e);
        }
        cf_manifest_close(m);
        if (more < 0)
            rc = CF_EXIT_FAILED;
    }
    if (rc == CF_EXIT_OK) {
        cf_buf none = {0};
        for (size_t i = 0; i < np; i++)
            if (!hits[i]) {
                if (none.len)
                    cf_buf_append(&none, ", ", 2);
                cf_buf_append(&none, "'", 1);
                cf_buf_append(&none, patterns[i], strlen(patterns[i]));
                cf_buf_append(&none, "'", 1);
            }
        if (none.len) {
            cf_buf_append(&none, "", 1);
            cf_fail("no path in %zu set(s) of policy '%s' matches %s", n, run->policy->name,
                    (char *)none.data);
            rc = CF_EXIT_FAILED;
        }
        cf_buf_free(&none);
    }
    u64map_free(&seen);
    free(hits);
    cf_strv_free(ids, n);
    return rc;
}

/* ---- diff ------------------------------------------------------------------- */

typedef struct drec {
    uint64_t key, content, meta;
} drec;

static int drec_cmp(const void *a, const void *b)
{
    uint64_t x = ((const drec *)a)->key, y = ((const drec *)b)->key;
    return x < y ? -1 : x > y;
}

static ssize_t drec_find(const drec *r, size_t n, uint64_t key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r[mid].key < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && r[lo].key == key ? (ssize_t)lo : -1;
}

/* Within the PATH filter (component, then path below sub or equal). */
static int in_scope(const cf_entry *e, const char *comp, const char *sub)
{
    if (!comp || !*comp)
        return 1;
    if (strcmp(e->component, comp) != 0)
        return 0;
    size_t l = strlen(sub);
    return !l || (strncmp(e->path, sub, l) == 0 && (e->path[l] == 0 || e->path[l] == '/'));
}

/* rows.<table> of each database component's meta: {comp: {table: n}} */
static void collect_rows(const cf_entry *e, json_t *rows)
{
    if (e->kind != CF_ENT_META || !e->meta)
        return;
    const char *k;
    json_t *v;
    json_object_foreach(e->meta, k, v)
    {
        if (strncmp(k, "rows.", 5) != 0 || !json_is_string(v))
            continue;
        json_t *c = json_object_get(rows, e->component);
        if (!c) {
            c = json_object();
            json_object_set_new(rows, e->component, c);
        }
        json_object_set_new(c, k + 5, json_integer((json_int_t)strtoll(json_string_value(v), NULL, 10)));
    }
}

static void diff_emit(json_t *out, const char *what, const cf_entry *e, const char *detail)
{
    if (out) {
        json_t *j = entry_json(e, NULL);
        json_object_set_new(j, "change", json_string(what));
        if (detail)
            json_object_set_new(j, "detail", json_string(detail));
        json_array_append_new(out, j);
        return;
    }
    static const struct {
        const char *w, *mark;
    } marks[] = {{"added", "+"}, {"removed", "-"}, {"modified", "M"}, {"metadata", "m"}};
    const char *mk = "?";
    for (size_t i = 0; i < 4; i++)
        if (strcmp(marks[i].w, what) == 0)
            mk = marks[i].mark;
    printf("%s ", mk);
    put_name(e->component);
    putchar('/');
    put_name(e->path);
    if (e->kind == CF_ENT_DIR)
        putchar('/');
    if (detail)
        printf("  (%s)", detail);
    putchar('\n');
}

/* The metadata of a second-set entry whose content is unchanged but whose
 * metadata is not, kept until the first set's entry is read again. */
typedef struct bmeta {
    uint32_t mode;
    int64_t uid, gid, mtime;
    long mtime_ns;
    uint64_t names; /* user and group */
} bmeta;

static bmeta bmeta_of(const cf_entry *e)
{
    return (bmeta){e->mode, e->uid, e->gid, e->mtime, e->mtime_ns,
                   fnv_str(fnv_str(FNV0, e->user), e->group)};
}

/* Which metadata differs: "mode, owner, mtime" or "xattrs". */
static char *meta_detail(const cf_entry *a, const bmeta *b)
{
    cf_buf d = {0};
#define ADD(s)                                                                                     \
    do {                                                                                           \
        if (d.len)                                                                                 \
            cf_buf_append(&d, ", ", 2);                                                            \
        cf_buf_append(&d, s, strlen(s));                                                           \
    } while (0)
    if (a->mode != b->mode)
        ADD("mode");
    if (a->uid != b->uid || a->gid != b->gid ||
        fnv_str(fnv_str(FNV0, a->user), a->group) != b->names)
        ADD("owner");
    if (a->mtime != b->mtime || a->mtime_ns != b->mtime_ns)
        ADD("mtime");
    if (!d.len)
        ADD("xattrs");
#undef ADD
    cf_buf_append(&d, "", 1);
    return (char *)d.data;
}

static void rows_delta(json_t *ra, json_t *rb, json_t *out, json_t *dbs)
{
    const char *comp;
    json_t *ta;
    json_t *all = json_object();
    json_object_foreach(ra, comp, ta)
    json_object_set(all, comp, json_true());
    json_object_foreach(rb, comp, ta)
    json_object_set(all, comp, json_true());
    json_t *dummy;
    json_object_foreach(all, comp, dummy)
    {
        json_t *a = json_object_get(ra, comp), *b = json_object_get(rb, comp);
        json_t *tables = json_object();
        const char *t;
        json_t *v;
        json_t *names = json_object();
        json_object_foreach(a, t, v)
        json_object_set(names, t, json_true());
        json_object_foreach(b, t, v)
        json_object_set(names, t, json_true());
        json_object_foreach(names, t, v)
        {
            json_t *x = json_object_get(a, t), *y = json_object_get(b, t);
            json_int_t nx = x ? json_integer_value(x) : 0, ny = y ? json_integer_value(y) : 0;
            if (x && y && nx == ny)
                continue;
            json_object_set_new(tables, t, json_pack("{s:o,s:o,s:I}", "from",
                                                     x ? json_integer(nx) : json_null(), "to",
                                                     y ? json_integer(ny) : json_null(), "delta",
                                                     ny - nx));
            if (!out) {
                printf("R %s: table %s: ", comp, t);
                if (x)
                    printf("%" JSON_INTEGER_FORMAT, nx);
                else
                    printf("(none)");
                printf(" -> ");
                if (y)
                    printf("%" JSON_INTEGER_FORMAT, ny);
                else
                    printf("(none)");
                printf(" rows (%+" JSON_INTEGER_FORMAT ")\n", ny - nx);
            }
        }
        json_decref(names);
        json_object_set_new(dbs, comp, tables);
    }
    json_decref(all);
}

int cf_diff(cf_run *run, const char *sa, const char *sb, const char *path, json_t *out,
            json_t **report)
{
    *report = NULL;
    char *ida = NULL, *idb = NULL, *p = NULL;
    char *comp = NULL, *sub = NULL;
    drec *recs = NULL;
    size_t nrec = 0, cap = 0, nbm = 0;
    uint8_t *seen = NULL;
    bmeta *bm = NULL;
    u64map bmi = {0};
    json_t *ha = NULL, *hb = NULL, *rows_a = json_object(), *rows_b = json_object();
    cf_mreader *m = NULL;
    int rc = CF_EXIT_FAILED, more;
    uint64_t counts[4] = {0};
    size_t in_a = 0, in_b = 0;
    cf_entry e;
    if (cf_resolve_set(run, sa, &ida) != 0 || cf_resolve_set(run, sb, &idb) != 0)
        goto out;
    if (path) {
        if (!(p = clean_path(path)))
            goto out;
        comp = p;
        sub = strchr(p, '/');
        if (sub)
            *sub++ = 0;
        else
            sub = p + strlen(p);
    }
    if (cf_manifest_header(run->repo, ida, &ha) != 0 || cf_manifest_header(run->repo, idb, &hb) != 0)
        goto out;
    const char *pa = json_string_value(json_object_get(ha, "policy")) ?: "?";
    const char *pb = json_string_value(json_object_get(hb, "policy")) ?: "?";
    int same_policy = strcmp(pa, pb) == 0;
    if (!same_policy && !out)
        printf("note: set %s is of policy '%s', set %s of policy '%s': compared path by path\n",
               ida, pa, idb, pb);
    /* the first set: 24 bytes an entry, sorted by path key */
    if (open_entries(run, ida, &m) != 0)
        goto out;
    while ((more = cf_manifest_next(m, &e)) == 1) {
        if (is_named(&e) && in_scope(&e, comp, sub)) {
            if (nrec == cap) {
                cap = cap ? cap * 2 : 4096;
                recs = cf_realloc(recs, cap * sizeof *recs);
            }
            recs[nrec++] = (drec){key_hash(&e), content_hash(&e), meta_hash(&e)};
        }
        collect_rows(&e, rows_a);
        cf_entry_clear(&e);
    }
    cf_manifest_close(m);
    m = NULL;
    if (more < 0)
        goto out;
    in_a = nrec;
    if (nrec)
        qsort(recs, nrec, sizeof *recs, drec_cmp);
    seen = cf_calloc(nrec / 8 + 1, 1);
    /* the second set, streamed: added and modified now; metadata changes
     * wait for the first set's entry (their detail needs both) */
    if (open_entries(run, idb, &m) != 0)
        goto out;
    while ((more = cf_manifest_next(m, &e)) == 1) {
        collect_rows(&e, rows_b);
        if (!is_named(&e) || !in_scope(&e, comp, sub)) {
            cf_entry_clear(&e);
            continue;
        }
        in_b++;
        uint64_t k = key_hash(&e);
        ssize_t i = drec_find(recs, nrec, k);
        if (i < 0) {
            diff_emit(out, "added", &e, NULL);
            counts[0]++;
        } else {
            seen[i / 8] |= (uint8_t)(1u << (i % 8));
            if (recs[i].content != content_hash(&e)) {
                diff_emit(out, "modified", &e, NULL);
                counts[2]++;
            } else if (recs[i].meta != meta_hash(&e)) {
                int fresh;
                *u64map_slot(&bmi, k, &fresh) = nbm + 1;
                bm = cf_realloc(bm, (nbm + 1) * sizeof *bm);
                bm[nbm++] = bmeta_of(&e);
            }
        }
        cf_entry_clear(&e);
    }
    cf_manifest_close(m);
    m = NULL;
    if (more < 0)
        goto out;
    if (path && !in_a && !in_b) {
        cf_fail("neither set %s nor set %s holds %s%s%s", ida, idb, comp, *sub ? "/" : "", sub);
        goto out;
    }
    /* the first set again: removed entries and metadata changes */
    if (open_entries(run, ida, &m) != 0)
        goto out;
    while ((more = cf_manifest_next(m, &e)) == 1) {
        if (!is_named(&e) || !in_scope(&e, comp, sub)) {
            cf_entry_clear(&e);
            continue;
        }
        uint64_t k = key_hash(&e);
        ssize_t i = drec_find(recs, nrec, k);
        if (i >= 0 && !(seen[i / 8] & (1u << (i % 8)))) {
            diff_emit(out, "removed", &e, NULL);
            counts[1]++;
            seen[i / 8] |= (uint8_t)(1u << (i % 8)); /* a duplicate line: once */
        } else if (nbm) {
            int fresh;
            uint64_t *slot = u64map_slot(&bmi, k, &fresh);
            if (!fresh && *slot) {
                char *d = meta_detail(&e, &bm[*slot - 1]);
                diff_emit(out, "metadata", &e, d);
                free(d);
                counts[3]++;
                *slot = 0;
            }
        }
        cf_entry_clear(&e);
    }
    cf_manifest_close(m);
    m = NULL;
    if (more < 0)
        goto out;
    json_t *dbs = json_object();
    rows_delta(rows_a, rows_b, out, dbs);
    *report = json_pack("{s:s,s:s,s:s,s:s,s:b,s:{s:I,s:I,s:I,s:I},s:o}", "from", ida, "to", idb,
                        "from_policy", pa, "to_policy", pb, "same_policy", same_policy, "counts",
                        "added", (json_int_t)counts[0], "removed", (json_int_t)counts[1],
                        "modified", (json_int_t)counts[2], "metadata", (json_int_t)counts[3],
                        "rows", dbs);
    if (path)
        json_object_set_new(*report, "path", json_string(path));
    rc = CF_EXIT_OK;
out:
    if (m)
        cf_manifest_close(m);
    json_decref(ha);
    json_decref(hb);
    json_decref(rows_a);
    json_decref(rows_b);
    u64map_free(&bmi);
    free(bm);
    free(seen);
    free(recs);
    free(p);
    free(ida);
    free(idb);
    return rc;
}

/* ---- stats ------------------------------------------------------------------ */

typedef struct cstat {
    uint64_t files, bytes, added_raw, added_stored;
} cstat;

int cf_stats(cf_run *run, const char *set, json_t **report)
{
    *report = NULL;
    char *only = NULL;
    if (set && cf_resolve_set(run, set, &only) != 0)
        return CF_EXIT_FAILED;
    char **ids;
    size_t n;
    if (cf_sets_list(run->repo, &ids, &n) != 0) {
        free(only);
        return CF_EXIT_FAILED;
    }
    u64map chunks = {0}; /* first 8 bytes of every chunk id met so far */
    uint64_t logical = 0, referenced_raw = 0, referenced_stored = 0, nsets = 0;
    json_t *sets = json_array();
    int rc = CF_EXIT_OK;
    /* oldest first, every policy's sets: a chunk counts as added by the
     * first set (of any policy) that references it */
    for (size_t s = 0; s < n && rc == CF_EXIT_OK; s++) {
        cf_mreader *m;
        json_t *h;
        if (cf_manifest_open(run->repo, ids[s], &m, &h) != 0) {
            cf_log(CF_LOG_WARN, "set %s skipped: %s", ids[s], cf_error());
            continue;
        }
        const char *pol = json_string_value(json_object_get(h, "policy")) ?: "";
        int mine = only ? strcmp(ids[s], only) == 0 : strcmp(pol, run->policy->name) == 0;
        json_t *comps = json_object();
        cstat tot = {0};
        cf_entry e;
        int more;
        nsets++;
        while ((more = cf_manifest_next(m, &e)) == 1) {
            if (!is_named(&e)) {
                cf_entry_clear(&e);
                continue;
            }
            cstat add = {0};
            if (e.kind == CF_ENT_FILE || e.kind == CF_ENT_STREAM || e.kind == CF_ENT_OBJECT) {
                add.files = 1;
                add.bytes = e.size;
            }
            for (size_t i = 0; i < e.nchunks; i++) {
                uint64_t k;
                memcpy(&k, &e.chunks[i], sizeof k);
                int fresh;
                u64map_slot(&chunks, k, &fresh);
                if (!fresh)
                    continue;
                int64_t raw = cf_repo_chunk_size(run->repo, &e.chunks[i]);
                int64_t st = cf_repo_chunk_stored(run->repo, &e.chunks[i]);
                add.added_raw += raw > 0 ? (uint64_t)raw : 0;
                add.added_stored += st > 0 ? (uint64_t)st : 0;
            }
            logical += add.bytes;
            referenced_raw += add.added_raw;
            referenced_stored += add.added_stored;
            if (mine) {
                json_t *c = json_object_get(comps, e.component);
                if (!c) {
                    c = json_pack("{s:I,s:I,s:I,s:I}", "files", 0, "bytes", 0, "added_bytes", 0,
                                  "added_stored", 0);
                    json_object_set_new(comps, e.component, c);
                }
#define BUMP(k, v) json_object_set_new(c, k, json_integer(json_integer_value(json_object_get(c, k)) + (json_int_t)(v)))
                BUMP("files", add.files);
                BUMP("bytes", add.bytes);
                BUMP("added_bytes", add.added_raw);
                BUMP("added_stored", add.added_stored);
#undef BUMP
                tot.files += add.files;
                tot.bytes += add.bytes;
                tot.added_raw += add.added_raw;
                tot.added_stored += add.added_stored;
            }
            cf_entry_clear(&e);
        }
        cf_manifest_close(m);
        if (more < 0) {
            cf_log(CF_LOG_WARN, "set %s: %s", ids[s], cf_error());
            rc = CF_EXIT_PROBLEMS;
        }
        if (mine)
            json_array_append_new(
                sets, json_pack("{s:s,s:s,s:s?,s:I,s:I,s:I,s:I,s:o}", "id", ids[s], "policy", pol,
                                "time", json_string_value(json_object_get(h, "time")), "files",
                                (json_int_t)tot.files, "bytes", (json_int_t)tot.bytes,
                                "added_bytes", (json_int_t)tot.added_raw, "added_stored",
                                (json_int_t)tot.added_stored, "components", comps));
        else
            json_decref(comps);
        json_decref(h);
    }
    cf_pack_list packs = {0};
    uint64_t pack_bytes = 0;
    if (cf_repo_indexed_packs(run->repo, &packs) == 0)
        for (size_t i = 0; i < packs.n; i++)
            pack_bytes += packs.sizes[i];
    *report = json_pack(
        "{s:{s:I,s:I,s:I,s:I,s:I,s:I,s:f},s:o}", "repository", "sets", (json_int_t)nsets, "packs",
        (json_int_t)packs.n, "pack_bytes", (json_int_t)pack_bytes, "chunks", (json_int_t)chunks.n,
        "logical_bytes", (json_int_t)logical, "unique_bytes", (json_int_t)referenced_raw,
        "dedup_ratio",
        referenced_stored ? (double)logical / (double)referenced_stored : 0.0, "sets", sets);
    json_object_set_new(json_object_get(*report, "repository"), "stored_bytes",
                        json_integer((json_int_t)referenced_stored));
    cf_pack_list_free(&packs);
    u64map_free(&chunks);
    cf_strv_free(ids, n);
    free(only);
    return rc;
}
