/*
 * The kind-independent part of filesystem snapshots (see snapshot.h):
 * choosing the backend, resolving the paths of a request as the walk
 * will see them, and the table cf_fssnap_map answers from.
 */
#include "snapshot/snapshot_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/util.h"

static const cf_fssnap_ops *const backends[] = {&cf_fssnap_btrfs_ops, &cf_fssnap_lvm_ops};

static const cf_fssnap_ops *backend(const char *kind)
{
    for (size_t i = 0; kind && i < CF_ARRAY_LEN(backends); i++)
        if (strcmp(backends[i]->kind, kind) == 0)
            return backends[i];
    return NULL;
}

int cf_fssnap_kind_valid(const char *kind)
{
    return backend(kind) != NULL;
}

int cf_fssnap_tag_valid(const char *tag)
{
    size_t n = tag ? strlen(tag) : 0;
    if (n == 0 || n > CF_FSSNAP_TAG_MAX || tag[0] == '-' || tag[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = tag[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int cf_fssnap_under(const char *path, const char *dir)
{
    size_t l = strlen(dir);
    if (strcmp(dir, "/") == 0)
        return path[0] == '/';
    return strncmp(path, dir, l) == 0 && (path[l] == 0 || path[l] == '/');
}

const char *cf_fssnap_show(const cf_fssnap_path *p, int slot)
{
    static _Thread_local char buf[2][1024];
    char *b = buf[slot & 1];
    if (strcmp(p->rel, ".") == 0)
        snprintf(b, sizeof buf[0], "the root %s", p->abs);
    else
        snprintf(b, sizeof buf[0], "%s (%s)", p->rel, p->abs);
    return b;
}

/* ---- resolving paths -------------------------------------------------- */

static void path_clear(cf_fssnap_path *p)
{
    free(p->abs);
    free(p->anchor);
    memset(p, 0, sizeof *p);
}

/* canon: canonical directory; rest: what follows it (may be ""). */
static void join(char **out, const char *canon, const char *rest)
{
    if (!*rest)
        *out = cf_strdup(canon);
    else if (strcmp(canon, "/") == 0)
        *out = cf_asprintf("/%s", rest);
    else
        *out = cf_asprintf("%s/%s", canon, rest);
}

/* Resolve rel beneath the canonical root. */
static int resolve(const char *root, const char *rel, cf_fssnap_path *p)
{
    memset(p, 0, sizeof *p);
    p->rel = rel;
    struct stat st;
    if (strcmp(rel, ".") == 0) {
        if (stat(root, &st) != 0)
            return cf_fail_errno("root %s", root);
        p->abs = cf_strdup(root);
        p->anchor = cf_strdup(root);
        p->dev = st.st_dev;
        p->exists = 1;
        p->is_dir = S_ISDIR(st.st_mode);
        return 0;
    }
    char *full;
    join(&full, root, rel);
    size_t l = strlen(full);
    while (l > 1 && full[l - 1] == '/')
        full[--l] = 0;
    /* The parent, canonical; climb while it does not exist (the path is
     * then missing: its nearest existing directory says where it would be). */
    char *cut = strrchr(full, '/');
    char *parent = cf_strndup(full, cut == full ? 1 : (size_t)(cut - full));
    const char *base = cut + 1;
    char canon[PATH_MAX];
    int missing_parent = 0;
    while (!realpath(parent, canon)) {
        if (errno != ENOENT && errno != ENOTDIR) {
            int e = errno;
            free(full);
            errno = e;
            cf_fail_errno("%s: %s", rel, parent);
            free(parent);
            return -1;
        }
        missing_parent = 1;
        char *c = strrchr(parent, '/');
        if (c == parent) {
            parent[1] = 0;
            continue; /* "/" always resolves */
        }
        *c = 0;
    }
    if (missing_parent) {
        /* full is beneath parent; keep the rest of it */
        const char *rest = full + strlen(parent);
        while (*rest == '/')
            rest++;
        join(&p->abs, canon, rest);
        p->anchor = cf_strdup(canon);
    } else {
        join(&p->abs, canon, base);
        if (lstat(p->abs, &st) == 0) {
            p->exists = 1;
            p->is_dir = S_ISDIR(st.st_mode);
            p->dev = st.st_dev;
        } else if (errno != ENOENT) {
            int e = errno;
            free(full);
            free(parent);
            errno = e;
            cf_fail_errno("%s: %s", rel, p->abs);
            path_clear(p);
            return -1;
        }
        p->anchor = cf_strdup(p->is_dir ? p->abs : canon);
    }
    free(full);
    free(parent);
    if (!p->exists || !p->is_dir) {
        if (stat(p->anchor, &st) != 0) {
            cf_fail_errno("%s: %s", rel, p->anchor);
            path_clear(p);
            return -1;
        }
        if (!p->exists)
            p->dev = st.st_dev;
        else if (st.st_dev != p->dev) {
            /* a file mounted over a file: its own file system */
            cf_fail("%s: %s is a mount point of its own; a snapshot covers whole directories", rel,
                    p->abs);
            path_clear(p);
            return -1;
        }
    }
    p->rel = rel;
    return 0;
}

static void req_free(cf_fssnap_req *rq)
{
    for (size_t i = 0; i < rq->n; i++)
        path_clear(&rq->p[i]);
    free(rq->p);
    path_clear(&rq->top);
    free(rq->root);
}

static int req_init(cf_fssnap_req *rq, const char *kind, const char *root, char *const *paths,
                    size_t npaths, const char *tag, const char *size)
{
    memset(rq, 0, sizeof *rq);
    rq->kind = kind;
    rq->tag = tag;
    rq->size = size;
    if (!cf_fssnap_tag_valid(tag))
        return cf_fail("snapshot tag '%s': use 1 to %d of A-Z a-z 0-9 . _ - (not first . or -)",
                       tag ? tag : "", CF_FSSNAP_TAG_MAX);
    if (!root || root[0] != '/')
        return cf_fail("snapshot: root '%s' is not an absolute path", root ? root : "");
    if (npaths == 0)
        return cf_fail("snapshot: no path to snapshot");
    char canon[PATH_MAX];
    if (!realpath(root, canon))
        return cf_fail_errno("snapshot: root %s", root);
    rq->root = cf_strdup(canon);
    rq->p = cf_calloc(npaths, sizeof *rq->p);
    for (size_t i = 0; i < npaths; i++) {
        if (!paths[i] || paths[i][0] == '/' || !paths[i][0]) {
            cf_fail("snapshot: path '%s' is not relative to the root", paths[i] ? paths[i] : "");
            req_free(rq);
            return -1;
        }
        if (resolve(rq->root, paths[i], &rq->p[i]) != 0) {
            req_free(rq);
            return -1;
        }
        rq->n++;
    }
    if (resolve(rq->root, ".", &rq->top) != 0) {
        req_free(rq);
        return -1;
    }
    return 0;
}

/* ---- the interface ------------------------------------------------------- */

int cf_fssnap_take(const char *kind, const char *root, char *const *paths, size_t npaths,
                   const char *tag, const char *size_opt, cf_fssnap **out)
{
    *out = NULL;
    const cf_fssnap_ops *ops = backend(kind);
    if (!ops)
        return cf_fail("snapshot kind '%s' is unknown (btrfs or lvm)", kind ? kind : "");
    cf_fssnap_req rq;
    if (req_init(&rq, kind, root, paths, npaths, tag, size_opt) != 0)
        return -1;
    int rc = ops->take(&rq, out);
    req_free(&rq);
    return rc;
}

int cf_fssnap_sweep(const char *kind, const char *root, char *const *paths, size_t npaths,
                    const char *tag)
{
    const cf_fssnap_ops *ops = backend(kind);
    if (!ops)
        return cf_fail("snapshot kind '%s' is unknown (btrfs or lvm)", kind ? kind : "");
    cf_fssnap_req rq;
    if (req_init(&rq, kind, root, paths, npaths, tag, NULL) != 0)
        return -1;
    int rc = ops->sweep(&rq);
    req_free(&rq);
    return rc;
}

void cf_fssnap_add_map(cf_fssnap *s, const char *rel, const char *abs, const char *live_top,
                       const char *snap_top)
{
    const char *rest = abs + (strcmp(live_top, "/") == 0 ? 0 : strlen(live_top));
    while (*rest == '/')
        rest++;
    s->rel = cf_realloc(s->rel, (s->nmap + 1) * sizeof *s->rel);
    s->mapped = cf_realloc(s->mapped, (s->nmap + 1) * sizeof *s->mapped);
    s->rel[s->nmap] = cf_strdup(rel);
    join(&s->mapped[s->nmap], snap_top, rest);
    s->nmap++;
}

void cf_fssnap_set_skip(cf_fssnap *s, const cf_fssnap_req *rq, const char *dir)
{
    if (!cf_fssnap_under(dir, rq->root) || strcmp(dir, rq->root) == 0)
        return;
    const char *rest = dir + (strcmp(rq->root, "/") == 0 ? 0 : strlen(rq->root));
    while (*rest == '/')
        rest++;
    free(s->skip);
    s->skip = cf_strdup(rest);
}

static int same_rel(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    while (la > 1 && a[la - 1] == '/')
        la--;
    while (lb > 1 && b[lb - 1] == '/')
        lb--;
    return la == lb && strncmp(a, b, la) == 0;
}

char *cf_fssnap_map(const cf_fssnap *s, const char *rel)
{
    for (size_t i = 0; s && rel && i < s->nmap; i++)
        if (same_rel(s->rel[i], rel))
            return cf_strdup(s->mapped[i]);
    cf_fail("%s: not a path of the snapshot%s%s", rel ? rel : "(null)", s ? " " : "",
            s ? s->desc : "");
    return NULL;
}

const char *cf_fssnap_skip(const cf_fssnap *s)
{
    return s ? s->skip : NULL;
}

const char *cf_fssnap_describe(const cf_fssnap *s)
{
    return s ? s->desc : "";
}

int cf_fssnap_release(cf_fssnap *s)
{
    if (!s)
        return 0;
    int rc = s->ops->release(s);
    for (size_t i = 0; i < s->nmap; i++) {
        free(s->rel[i]);
        free(s->mapped[i]);
    }
    free(s->rel);
    free(s->mapped);
    free(s->desc);
    free(s->skip);
    free(s);
    return rc;
}
