/* Building the tree of one set from its manifest (fsview.h). */
#include "mount/fsview.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/manifest.h"
#include "util/beneath.h"
#include "util/util.h"

typedef struct builder {
    cf_setview *v;
    size_t ncap, acap, ccap, alen;
    uint32_t *hash; /* (parent, name) -> node, open addressing */
    size_t hcap, hcount;
    /* hard links, resolved once every file is known */
    uint32_t *hl_node;
    uint64_t *hl_target;
    size_t nhl, hlcap;
    int64_t set_time;
} builder;

static uint64_t hash_of(uint32_t parent, const char *name)
{
    uint64_t h = 1469598103934665603ull ^ parent;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h;
}

static uint64_t arena_add(builder *b, const char *s, size_t len)
{
    if (b->alen + len + 1 > b->acap) {
        b->acap = (b->alen + len + 1) * 2;
        b->v->arena = cf_realloc(b->v->arena, b->acap);
    }
    uint64_t off = b->alen;
    memcpy(b->v->arena + off, s, len);
    b->v->arena[off + len] = 0;
    b->alen += len + 1;
    return off;
}

static void hash_insert(builder *b, uint32_t node);

static void hash_grow(builder *b)
{
    uint32_t *old = b->hash;
    size_t ocap = b->hcap;
    b->hcap = ocap ? ocap * 2 : 1024;
    b->hash = malloc(b->hcap * sizeof *b->hash);
    if (!b->hash)
        abort();
    memset(b->hash, 0xff, b->hcap * sizeof *b->hash);
    b->hcount = 0;
    for (size_t i = 0; i < ocap; i++)
        if (old[i] != CF_FS_NONE)
            hash_insert(b, old[i]);
    free(old);
}

static void hash_insert(builder *b, uint32_t node)
{
    if ((b->hcount + 1) * 2 > b->hcap)
        hash_grow(b);
    const cf_fsnode *n = &b->v->nodes[node];
    size_t i = hash_of(n->parent, b->v->arena + n->name) & (b->hcap - 1);
    while (b->hash[i] != CF_FS_NONE)
        i = (i + 1) & (b->hcap - 1);
    b->hash[i] = node;
    b->hcount++;
}

static uint32_t hash_find(const builder *b, uint32_t parent, const char *name, size_t len)
{
    if (!b->hcap)
        return CF_FS_NONE;
    char tmp[256];
    char *nm = len < sizeof tmp ? tmp : cf_malloc(len + 1);
    memcpy(nm, name, len);
    nm[len] = 0;
    uint32_t found = CF_FS_NONE;
    for (size_t i = hash_of(parent, nm) & (b->hcap - 1); b->hash[i] != CF_FS_NONE;
         i = (i + 1) & (b->hcap - 1)) {
        const cf_fsnode *n = &b->v->nodes[b->hash[i]];
        if (n->parent == parent && strcmp(b->v->arena + n->name, nm) == 0) {
            found = b->hash[i];
            break;
        }
    }
    if (nm != tmp)
        free(nm);
    return found;
}

static uint32_t node_new(builder *b, uint32_t parent, const char *name, size_t len)
{
    cf_setview *v = b->v;
    if (v->nnodes == CF_FS_NONE - 1)
        return CF_FS_NONE;
    if (v->nnodes == b->ncap) {
        b->ncap = b->ncap ? b->ncap * 2 : 256;
        v->nodes = cf_realloc(v->nodes, b->ncap * sizeof *v->nodes);
    }
    uint32_t idx = v->nnodes++;
    cf_fsnode *n = &v->nodes[idx];
    memset(n, 0, sizeof *n);
    n->name = arena_add(b, name, len);
    n->parent = parent;
    n->type = CF_FS_DIR;
    n->mode = 0555;
    n->mtime = b->set_time;
    if (idx != 0) {
        hash_insert(b, idx);
        v->nodes[parent].nkids++; /* a count while building */
    }
    return idx;
}

/* Walk (creating directories) to the node for `path` under dir; the last
 * segment is created when missing. CF_FS_NONE when a segment is not a
 * plain name or a non-directory is in the way. */
static uint32_t walk(builder *b, uint32_t dir, const char *path)
{
    const char *p = path;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return CF_FS_NONE;
        if (b->v->nodes[dir].type != CF_FS_DIR)
            return CF_FS_NONE;
        uint32_t n = hash_find(b, dir, p, len);
        if (n == CF_FS_NONE)
            n = node_new(b, dir, p, len);
        if (n == CF_FS_NONE || !slash)
            return n;
        dir = n;
        p = slash + 1;
    }
}

static void add_chunks(builder *b, cf_fsnode *n, const cf_entry *e)
{
    cf_setview *v = b->v;
    if (v->nchunks + e->nchunks > b->ccap) {
        b->ccap = (v->nchunks + e->nchunks) * 2;
        v->chunks = cf_realloc(v->chunks, b->ccap * sizeof *v->chunks);
    }
    n->chunk0 = v->nchunks;
    n->nchunks = (uint32_t)e->nchunks;
    memcpy(v->chunks + v->nchunks, e->chunks, e->nchunks * sizeof *e->chunks);
    v->nchunks += e->nchunks;
}

static void skip(builder *b, const char *setid, const cf_entry *e, const char *why)
{
    b->v->skipped++;
    cf_log(CF_LOG_WARN, "set %s: entry %s/%s not shown: %s", setid,
           e->component ? e->component : "?", e->path ? e->path : "?", why);
}

static void add_entry(builder *b, const char *setid, const cf_entry *e)
{
    int type;
    switch (e->kind) {
    case CF_ENT_FILE:
    case CF_ENT_STREAM:
    case CF_ENT_HARDLINK:
        type = CF_FS_FILE;
        break;
    case CF_ENT_DIR:
        type = CF_FS_DIR;
        break;
    case CF_ENT_SYMLINK:
        type = CF_FS_LINK;
        break;
    default:
        return;
    }
    if (!e->component || !e->path) {
        skip(b, setid, e, "no component or path");
        return;
    }
    size_t cl = strlen(e->component);
    if (!cl || strchr(e->component, '/') || strcmp(e->component, ".") == 0 ||
        strcmp(e->component, "..") == 0) {
        skip(b, setid, e, "component name is not a plain name");
        return;
    }
    /* checked whole first: a bad segment must not leave directories behind */
    if (cf_path_safe(e->path) != 0) {
        skip(b, setid, e, "path is not a relative path of plain names beneath its component");
        return;
    }
    uint32_t comp = walk(b, 0, e->component);
    if (comp == CF_FS_NONE) {
        skip(b, setid, e, "component name is not a plain name");
        return;
    }
    uint32_t idx = walk(b, comp, e->path);
    if (idx == CF_FS_NONE) {
        skip(b, setid, e, "path is not a relative path of plain names beneath its component");
        return;
    }
    cf_fsnode *n = &b->v->nodes[idx];
    if (n->given || (type != CF_FS_DIR && n->nkids)) {
        skip(b, setid, e, "duplicate path");
        return;
    }
    n->given = 1;
    n->type = (uint8_t)type;
    n->mode = e->mode & 07777;
    if (e->kind == CF_ENT_STREAM)
        n->mode = 0400;
    n->uid = e->uid >= 0 && e->uid <= UINT32_MAX ? (uint32_t)e->uid : 0;
    n->gid = e->gid >= 0 && e->gid <= UINT32_MAX ? (uint32_t)e->gid : 0;
    n->mtime = e->mtime;
    n->mtime_ns = e->mtime_ns >= 0 && e->mtime_ns < 1000000000 ? (uint32_t)e->mtime_ns : 0;
    n->size = e->size;
    if (type == CF_FS_LINK) {
        const char *t = e->target ? e->target : "";
        n->target = arena_add(b, t, strlen(t));
        n->size = strlen(t);
    } else if (e->kind == CF_ENT_HARDLINK) {
        if (!e->target) {
            n->given = 0;
            skip(b, setid, e, "hard link without a target");
            return;
        }
        /* the target path, resolved against the component at the end */
        if (b->nhl == b->hlcap) {
            b->hlcap = b->hlcap ? b->hlcap * 2 : 64;
            b->hl_node = cf_realloc(b->hl_node, b->hlcap * sizeof *b->hl_node);
            b->hl_target = cf_realloc(b->hl_target, b->hlcap * sizeof *b->hl_target);
        }
        uint64_t t = arena_add(b, e->target, strlen(e->target));
        b->hl_node[b->nhl] = idx;
        b->hl_target[b->nhl++] = t;
        b->v->nodes[idx].target = comp; /* the component, until resolved */
    } else if (type == CF_FS_FILE) {
        add_chunks(b, n, e);
    }
}

/* Hard links take the content of the entry they name in their component. */
static void resolve_links(builder *b, const char *setid)
{
    cf_setview *v = b->v;
    for (size_t i = 0; i < b->nhl; i++) {
        cf_fsnode *n = &v->nodes[b->hl_node[i]];
        uint32_t at = (uint32_t)n->target;
        const char *p = v->arena + b->hl_target[i];
        while (at != CF_FS_NONE && *p) {
            const char *slash = strchr(p, '/');
            size_t len = slash ? (size_t)(slash - p) : strlen(p);
            at = hash_find(b, at, p, len);
            p = slash ? slash + 1 : p + len;
        }
        n->target = 0;
        if (at == CF_FS_NONE || v->nodes[at].type != CF_FS_FILE || !v->nodes[at].given ||
            b->hl_node[i] == at) {
            n->given = 0;
            v->skipped++;
            cf_log(CF_LOG_WARN, "set %s: hard link %s not shown: its target %s is not a file",
                   setid, v->arena + n->name, v->arena + b->hl_target[i]);
            /* an empty file in its place: the tree stays consistent */
            n->size = 0;
            n->nchunks = 0;
            continue;
        }
        n->chunk0 = v->nodes[at].chunk0;
        n->nchunks = v->nodes[at].nchunks;
        n->size = v->nodes[at].size;
    }
}

static const cf_setview *sort_view;

static int kid_cmp(const void *a, const void *b)
{
    const cf_fsnode *x = &sort_view->nodes[*(const uint32_t *)a];
    const cf_fsnode *y = &sort_view->nodes[*(const uint32_t *)b];
    if (x->parent != y->parent)
        return x->parent < y->parent ? -1 : 1;
    return strcmp(sort_view->arena + x->name, sort_view->arena + y->name);
}

static void build_kids(cf_setview *v)
{
    uint32_t n = v->nnodes ? v->nnodes - 1 : 0;
    v->kids = cf_malloc((n ? n : 1) * sizeof *v->kids);
    for (uint32_t i = 0; i < n; i++)
        v->kids[i] = i + 1;
    sort_view = v; /* loads are serialised by the caller */
    qsort(v->kids, n, sizeof *v->kids, kid_cmp);
    sort_view = NULL;
    for (uint32_t i = 0; i < v->nnodes; i++)
        v->nodes[i].nkids = 0;
    for (uint32_t i = 0; i < n; i++) {
        cf_fsnode *p = &v->nodes[v->nodes[v->kids[i]].parent];
        if (p->nkids++ == 0)
            p->kid0 = i;
    }
}

int cf_setview_load(cf_repo *r, const char *id, int64_t set_time, cf_setview **out)
{
    *out = NULL;
    builder b = {0};
    b.v = cf_calloc(1, sizeof *b.v);
    b.set_time = set_time;
    node_new(&b, 0, id, strlen(id));
    cf_mreader *m;
    json_t *h;
    if (cf_manifest_open(r, id, &m, &h) != 0) {
        cf_setview_free(b.v);
        return -1;
    }
    json_decref(h);
    cf_entry e;
    int rc;
    while ((rc = cf_manifest_next(m, &e)) == 1) {
        add_entry(&b, id, &e);
        cf_entry_clear(&e);
    }
    cf_manifest_close(m);
    if (rc == 0)
        resolve_links(&b, id);
    free(b.hash);
    free(b.hl_node);
    free(b.hl_target);
    if (rc != 0) {
        cf_setview_free(b.v);
        return -1;
    }
    /* give back what growth reserved */
    b.v->nodes = cf_realloc(b.v->nodes, b.v->nnodes * sizeof *b.v->nodes);
    b.v->arena = cf_realloc(b.v->arena, b.alen ? b.alen : 1);
    if (b.v->nchunks)
        b.v->chunks = cf_realloc(b.v->chunks, b.v->nchunks * sizeof *b.v->chunks);
    build_kids(b.v);
    *out = b.v;
    return 0;
}

void cf_setview_free(cf_setview *v)
{
    if (!v)
        return;
    free(v->nodes);
    free(v->kids);
    free(v->arena);
    free(v->chunks);
    free(v);
}

uint32_t cf_setview_child(const cf_setview *v, uint32_t dir, const char *name)
{
    const cf_fsnode *d = &v->nodes[dir];
    if (d->type != CF_FS_DIR)
        return CF_FS_NONE;
    size_t lo = d->kid0, hi = (size_t)d->kid0 + d->nkids;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(v->arena + v->nodes[v->kids[mid]].name, name);
        if (c == 0)
            return v->kids[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return CF_FS_NONE;
}

size_t cf_setview_memory(const cf_setview *v)
{
    size_t arena = 0;
    for (uint32_t i = 0; i < v->nnodes; i++)
        if (v->nodes[i].name > arena)
            arena = v->nodes[i].name;
    return v->nnodes * (sizeof *v->nodes + sizeof *v->kids) + v->nchunks * sizeof *v->chunks +
           arena;
}
