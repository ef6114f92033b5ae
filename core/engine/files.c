#include "engine/files.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugin/host.h"
#include "snapshot/snapshot.h"
#include "util/util.h"

int cf_path_required(const cf_component *c, const char *rel)
{
    size_t l = strlen(rel);
    for (size_t i = 0; i < c->required.n; i++) {
        const char *r = c->required.v[i];
        size_t rl = strlen(r);
        if (strcmp(r, rel) == 0 || (strncmp(rel, r, rl) == 0 && rel[rl] == '/') ||
            (strncmp(r, rel, l) == 0 && r[l] == '/'))
            return 1;
    }
    return 0;
}

int cf_unreadable_skippable(const cf_component *c, const char *rel, int err)
{
    return !c->unreadable_fail && (err == EACCES || err == EPERM || err == EIO) &&
           !cf_path_required(c, rel);
}

int cf_exclude_match(const cf_strlist *pats, const char *rel)
{
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    for (size_t i = 0; pats && i < pats->n; i++) {
        const char *pat = pats->v[i];
        if (strncmp(pat, "./", 2) == 0)
            pat += 2;
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", pat);
        size_t l = strlen(buf);
        while (l > 1 && buf[l - 1] == '/')
            buf[--l] = 0;
        if (!strchr(buf, '/')) {
            if (fnmatch(buf, base, 0) == 0)
                return 1;
            continue;
        }
        if (strstr(buf, "**")) {
            /* "**" crosses directories: match without FNM_PATHNAME. */
            char g[4096];
            size_t o = 0;
            for (size_t k = 0; buf[k] && o < sizeof g - 1; k++) {
                if (buf[k] == '*' && buf[k + 1] == '*')
                    k++;
                g[o++] = buf[k];
            }
            g[o] = 0;
            if (fnmatch(g, rel, 0) == 0)
                return 1;
        } else if (fnmatch(buf, rel, FNM_PATHNAME) == 0) {
            return 1;
        }
    }
    return 0;
}

typedef struct hl_ent {
    uint64_t dev, ino;
    char *path;
} hl_ent;

typedef struct lister lister;

typedef struct walker {
    const cf_walk_opts *o;
    struct archive *disk;
    hl_ent *hl;
    size_t nhl, caphl;
    lister *ls; /* set on the lister's walker: entries are queued, not visited */
} walker;

static const char *find_hardlink(walker *w, uint64_t dev, uint64_t ino)
{
    for (size_t i = 0; i < w->nhl; i++)
        if (w->hl[i].dev == dev && w->hl[i].ino == ino)
            return w->hl[i].path;
    return NULL;
}

static void add_hardlink(walker *w, uint64_t dev, uint64_t ino, const char *path)
{
    if (w->nhl == w->caphl) {
        w->caphl = w->caphl ? 2 * w->caphl : 64;
        w->hl = cf_realloc(w->hl, w->caphl * sizeof *w->hl);
    }
    w->hl[w->nhl++] = (hl_ent){dev, ino, cf_strdup(path)};
}

static int skipped(walker *w, const char *rel)
{
    for (size_t i = 0; i < w->o->nskip; i++)
        if (strcmp(w->o->skip[i], rel) == 0)
            return 1;
    return cf_exclude_match(&w->o->comp->exclude, rel);
}

/* Metadata of one entry from lstat alone. */
static void fill_stat(walker *w, const char *rel, const struct stat *st, cf_entry *e)
{
    memset(e, 0, sizeof *e);
    e->component = cf_strdup(w->o->comp->name);
    e->path = cf_strdup(rel);
    e->mode = st->st_mode & 07777;
    e->uid = st->st_uid;
    e->gid = st->st_gid;
    e->mtime = st->st_mtim.tv_sec;
    e->mtime_ns = st->st_mtim.tv_nsec;
    e->ctime = st->st_ctim.tv_sec;
    e->ctime_ns = st->st_ctim.tv_nsec;
    e->dev = st->st_dev;
    e->ino = st->st_ino;
    e->nlink = st->st_nlink;
    if (S_ISLNK(st->st_mode)) {
        e->kind = CF_ENT_SYMLINK;
    } else if (S_ISDIR(st->st_mode)) {
        e->kind = CF_ENT_DIR;
    } else {
        e->kind = CF_ENT_FILE;
        e->size = (uint64_t)st->st_size;
    }
}

int cf_entry_unchanged(const cf_entry *was, const cf_entry *now)
{
    return was && was->kind == now->kind && was->mtime == now->mtime &&
           was->mtime_ns == now->mtime_ns && was->ctime == now->ctime &&
           was->ctime_ns == now->ctime_ns && was->ino == now->ino && was->uid == now->uid &&
           was->gid == now->gid && was->mode == now->mode &&
           (now->kind != CF_ENT_FILE || was->size == now->size);
}

/* An entry unchanged since the previous set (cf_entry_unchanged) has the
 * same xattrs and link target too (any change moves ctime): those are
 * taken from the previous set instead of being read again. Owners' names
 * still come from the (cached) lookup. */
static int fill_known(walker *w, cf_entry *e)
{
    if (!w->o->prior || e->kind == CF_ENT_HARDLINK)
        return 0;
    const cf_entry *p = w->o->prior(w->o->ud, e);
    if (!cf_entry_unchanged(p, e) || (e->kind == CF_ENT_SYMLINK && !p->target))
        return 0;
    const char *u = archive_read_disk_uname(w->disk, e->uid);
    const char *g = archive_read_disk_gname(w->disk, e->gid);
    e->user = u ? cf_strdup(u) : NULL;
    e->group = g ? cf_strdup(g) : NULL;
    if (e->kind == CF_ENT_SYMLINK)
        e->target = cf_strdup(p->target);
    if (p->nxattrs) {
        e->xattrs = cf_calloc(p->nxattrs, sizeof(cf_xattr));
        for (size_t i = 0; i < p->nxattrs; i++) {
            cf_xattr *x = &e->xattrs[e->nxattrs++];
            x->name = cf_strdup(p->xattrs[i].name);
            x->value = cf_malloc(p->xattrs[i].len + 1);
            memcpy(x->value, p->xattrs[i].value, p->xattrs[i].len);
            x->len = p->xattrs[i].len;
        }
    }
    return 1;
}

/* Fill metadata of one entry from lstat and libarchive (names, xattrs). */
static int fill_entry(walker *w, const char *abs, const char *rel, const struct stat *st, cf_entry *e)
{
    fill_stat(w, rel, st, e);
    if (fill_known(w, e))
        return 0;
    struct archive_entry *ae = archive_entry_new();
    archive_entry_copy_sourcepath(ae, abs);
    if (archive_read_disk_entry_from_file(w->disk, ae, -1, st) != ARCHIVE_OK) {
        /* Metadata beyond stat (xattrs) could not be read: keep stat's. */
        cf_log(CF_LOG_WARN, "%s: %s", rel, archive_error_string(w->disk));
    }
    if (archive_entry_uname(ae))
        e->user = cf_strdup(archive_entry_uname(ae));
    if (archive_entry_gname(ae))
        e->group = cf_strdup(archive_entry_gname(ae));
    size_t nx = (size_t)archive_entry_xattr_reset(ae);
    if (nx) {
        const char *name;
        const void *val;
        size_t len;
        e->xattrs = cf_calloc(nx, sizeof(cf_xattr));
        while (archive_entry_xattr_next(ae, &name, &val, &len) == ARCHIVE_OK) {
            cf_xattr *x = &e->xattrs[e->nxattrs++];
            x->name = cf_strdup(name);
            x->value = cf_malloc(len + 1);
            memcpy(x->value, val, len);
            x->len = len;
        }
    }
    if (S_ISLNK(st->st_mode)) {
        const char *t = archive_entry_symlink(ae);
        if (t) {
            e->target = cf_strdup(t);
        } else {
            char buf[4096];
            ssize_t n = readlink(abs, buf, sizeof buf - 1);
            if (n < 0) {
                archive_entry_free(ae);
                return cf_fail_errno("%s: cannot read symbolic link", rel);
            }
            buf[n] = 0;
            e->target = cf_strdup(buf);
        }
    }
    archive_entry_free(ae);
    return 0;
}

/* a "/" b, malloc'd (the walk's hot path: no printf) */
static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = cf_malloc(la + lb + 2);
    memcpy(s, a, la);
    s[la] = '/';
    memcpy(s + la + 1, b, lb + 1);
    return s;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int walk_children(walker *w, int pfd, const char *name, const char *abs, const char *rel);

/* One entry the walk has stat'ed: its metadata, then the callback. */
static int visit(walker *w, const char *abs, const char *rel, const struct stat *st)
{
    cf_entry e;
    if (fill_entry(w, abs, rel, st, &e) != 0)
        return -1;
    if (e.kind == CF_ENT_FILE && st->st_nlink > 1) {
        const char *first = find_hardlink(w, st->st_dev, st->st_ino);
        if (first) {
            e.kind = CF_ENT_HARDLINK;
            e.target = cf_strdup(first);
            e.size = 0;
        } else {
            add_hardlink(w, st->st_dev, st->st_ino, rel);
        }
    }
    int rc = w->o->cb(w->o->ud, &e, abs);
    cf_entry_clear(&e);
    return rc;
}

/* ---- the lister ---------------------------------------------------------
 * On more than one core, the directory reads and the stats of the walk
 * run on a thread of their own, ahead of the thread that visits the
 * entries (their metadata beyond stat, change detection, the callback):
 * a metadata scan of an unchanged tree is mostly those two halves. The
 * lister walks exactly as the walk would, in the same order, and hands
 * over stat'ed entries in batches; a failure of the lister reaches the
 * walk after the entries it listed before it, as the walk alone would
 * have met it. */

#define LBATCH 256
#define LBATCHES 8

typedef struct litem {
    struct stat st;
    size_t abs, rel; /* offsets in the batch's arena */
} litem;

typedef struct lbatch {
    litem it[LBATCH];
    size_t n;
    char *arena;
    size_t alen, acap;
    char *err; /* the lister failed after these entries: why */
    struct lbatch *next; /* on the spent list */
} lbatch;

struct lister {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    lbatch *q[LBATCHES]; /* full batches, q[qhead..qhead+qn) */
    size_t qhead, qn;
    int done; /* the lister has queued its last batch */
    int stop; /* the walk is gone: stop listing */
    lbatch *cur; /* being filled (lister thread) */
    /* Batches the walk is done with, filled again by the lister: its
     * memory stays with the thread that allocated it. */
    lbatch *spent;
};

static void lbatch_free(lbatch *b)
{
    if (!b)
        return;
    free(b->arena);
    free(b->err);
    free(b);
}

/* Queue b (may be NULL for none) and, when last, the end. 0, or -1
 * when the walk has gone. */
static int lister_queue(lister *ls, lbatch *b, int last)
{
    pthread_mutex_lock(&ls->mu);
    while (b && ls->qn == LBATCHES && !ls->stop)
        pthread_cond_wait(&ls->cv, &ls->mu);
    int ok = !ls->stop;
    if (ok && b) {
        ls->q[(ls->qhead + ls->qn) % LBATCHES] = b;
        ls->qn++;
        b = NULL;
    }
    if (last)
        ls->done = 1;
    pthread_cond_broadcast(&ls->cv);
    pthread_mutex_unlock(&ls->mu);
    lbatch_free(b);
    return ok ? 0 : -1;
}

static size_t arena_put(lbatch *b, const char *str)
{
    size_t l = strlen(str) + 1;
    if (b->alen + l > b->acap) {
        b->acap = b->acap ? 2 * b->acap : 16384;
        while (b->alen + l > b->acap)
            b->acap *= 2;
        b->arena = cf_realloc(b->arena, b->acap);
    }
    size_t off = b->alen;
    memcpy(b->arena + off, str, l);
    b->alen += l;
    return off;
}

/* An empty batch to fill: a spent one, else a new one (lister). */
static lbatch *lbatch_get(lister *ls)
{
    pthread_mutex_lock(&ls->mu);
    lbatch *b = ls->spent;
    if (b)
        ls->spent = b->next;
    pthread_mutex_unlock(&ls->mu);
    if (!b)
        return cf_calloc(1, sizeof(lbatch));
    b->n = b->alen = 0;
    return b;
}

static int lister_push(lister *ls, const char *abs, const char *rel, const struct stat *st)
{
    if (!ls->cur)
        ls->cur = lbatch_get(ls);
    lbatch *b = ls->cur;
    litem *it = &b->it[b->n++];
    it->st = *st;
    it->abs = arena_put(b, abs);
    it->rel = arena_put(b, rel);
    if (b->n < LBATCH)
        return 0;
    ls->cur = NULL;
    return lister_queue(ls, b, 0) == 0 ? 0 : cf_fail("walk stopped");
}

static int walk_paths(walker *w);

static void *lister_main(void *arg)
{
    walker *w = arg;
    lister *ls = w->ls;
    int rc = walk_paths(w);
    lbatch *b = ls->cur;
    ls->cur = NULL;
    if (rc != 0) {
        if (!b)
            b = cf_calloc(1, sizeof *b);
        b->err = cf_strdup(cf_error());
    }
    lister_queue(ls, b, 1); /* b: NULL, or entries and/or an error */
    return NULL;
}

/* The walk's side: visit what the lister queues, in order. */
static int visit_listed(walker *w, lister *ls)
{
    int rc = 0;
    while (rc == 0) {
        pthread_mutex_lock(&ls->mu);
        while (ls->qn == 0 && !ls->done)
            pthread_cond_wait(&ls->cv, &ls->mu);
        lbatch *b = NULL;
        if (ls->qn) {
            b = ls->q[ls->qhead];
            ls->qhead = (ls->qhead + 1) % LBATCHES;
            ls->qn--;
            pthread_cond_broadcast(&ls->cv);
        }
        pthread_mutex_unlock(&ls->mu);
        if (!b)
            break;
        for (size_t i = 0; i < b->n && rc == 0; i++) {
            if (cf_cancel_flag)
                rc = cf_fail("cancelled");
            else
                rc = visit(w, b->arena + b->it[i].abs, b->arena + b->it[i].rel, &b->it[i].st);
        }
        if (rc == 0 && b->err)
            rc = cf_fail("%s", b->err);
        if (b->err) {
            lbatch_free(b);
            continue;
        }
        pthread_mutex_lock(&ls->mu);
        b->next = ls->spent;
        ls->spent = b;
        pthread_mutex_unlock(&ls->mu);
    }
    return rc;
}

/* Walk with a lister thread; 1 when no thread could be started (walk
 * alone then). */
static int walk_with_lister(walker *w)
{
    lister ls = {0};
    pthread_mutex_init(&ls.mu, NULL);
    pthread_cond_init(&ls.cv, NULL);
    walker lw = {.o = w->o, .ls = &ls};
    pthread_t thr;
    if (pthread_create(&thr, NULL, lister_main, &lw) != 0) {
        pthread_mutex_destroy(&ls.mu);
        pthread_cond_destroy(&ls.cv);
        return 1;
    }
    int rc = visit_listed(w, &ls);
    pthread_mutex_lock(&ls.mu);
    ls.stop = 1;
    pthread_cond_broadcast(&ls.cv);
    pthread_mutex_unlock(&ls.mu);
    pthread_join(thr, NULL);
    while (ls.qn) {
        lbatch_free(ls.q[ls.qhead]);
        ls.qhead = (ls.qhead + 1) % LBATCHES;
        ls.qn--;
    }
    while (ls.spent) {
        lbatch *b = ls.spent;
        ls.spent = b->next;
        lbatch_free(b);
    }
    pthread_mutex_destroy(&ls.mu);
    pthread_cond_destroy(&ls.cv);
    return rc;
}

/* One entry: abs, which is name in the directory open as dfd (dfd -1:
 * by its path alone). */
static int walk(walker *w, int dfd, const char *name, const char *abs, const char *rel, int top)
{
    if (cf_cancel_flag)
        return cf_fail("cancelled");
    struct stat st;
    if ((dfd >= 0 ? fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) : lstat(abs, &st)) != 0) {
        if (errno == ENOENT && !top) {
            cf_log(CF_LOG_WARN, "%s: vanished during the backup", rel);
            return 0;
        }
        if (w->o->unreadable && cf_unreadable_skippable(w->o->comp, rel, errno)) {
            w->o->unreadable(w->o->ud, rel, strerror(errno));
            return 0;
        }
        return cf_fail_errno("%s", rel);
    }
    if (!(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode))) {
        cf_log(CF_LOG_WARN, "%s: special file (fifo, socket or device) skipped", rel);
        return 0;
    }
    int rc = w->ls ? lister_push(w->ls, abs, rel, &st) : visit(w, abs, rel, &st);
    if (rc != 0 || !S_ISDIR(st.st_mode))
        return rc;
    return walk_children(w, dfd, name, abs, rel);
}

/* Walk the entries of directory abs, sorted by name; rel NULL means the
 * policy root itself (children are named without a prefix). */
static int walk_children(walker *w, int pfd, const char *name, const char *abs, const char *rel)
{
    int rc = 0;
    /* Opened beneath its parent's descriptor when there is one (no lookup
     * of the whole path; a directory swapped for a link is not followed),
     * and kept open while its entries are stat'ed beneath it; without a
     * descriptor to spare, by paths. */
    int fd = pfd >= 0 ? openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                      : open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int dfd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (fd >= 0 && !d)
        close(fd);
    if (!d && rel && w->o->unreadable && cf_unreadable_skippable(w->o->comp, rel, errno)) {
        /* The directory's own entry is in the set; its content is not. */
        w->o->unreadable(w->o->ud, rel, strerror(errno));
        return 0;
    }
    if (!d) {
        int err = errno;
        if (dfd >= 0)
            close(dfd);
        errno = err;
        return cf_fail_errno("%s: cannot open directory", rel ? rel : abs);
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        /* coffer's own file system snapshots are never captured */
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strcmp(de->d_name, CF_FSSNAP_DIR) == 0)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            names = cf_realloc(names, cap * sizeof *names);
        }
        names[n++] = cf_strdup(de->d_name);
    }
    closedir(d);
    if (n) /* names is NULL for an empty directory */
        qsort(names, n, sizeof *names, cmp_name);
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *crel = rel ? join(rel, names[i]) : cf_strdup(names[i]);
        if (!skipped(w, crel)) {
            char *cabs = join(abs, names[i]);
            rc = walk(w, dfd, names[i], cabs, crel, 0);
            free(cabs);
        }
        free(crel);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (dfd >= 0)
        close(dfd);
    return rc;
}

int cf_file_entry(const cf_component *c, const char *abs, const char *rel, int fd, cf_entry *e)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return cf_fail_errno("%s", rel);
    cf_walk_opts o = {.comp = c};
    walker w = {.o = &o};
    w.disk = archive_read_disk_new();
    archive_read_disk_set_standard_lookup(w.disk);
    archive_read_disk_set_symlink_physical(w.disk);
    archive_read_disk_set_behavior(w.disk, ARCHIVE_READDISK_NO_ACL | ARCHIVE_READDISK_NO_FFLAGS |
                                               ARCHIVE_READDISK_NO_SPARSE);
    int rc = fill_entry(&w, abs, rel, &st, e);
    archive_read_free(w.disk);
    return rc;
}

/* Every path of the component, in order. */
static int walk_paths(walker *w)
{
    const cf_walk_opts *o = w->o;
    int rc = 0;
    for (size_t i = 0; i < o->comp->paths.n && rc == 0; i++) {
        const char *rel = o->comp->paths.v[i];
        if (strcmp(rel, ".") == 0) {
            /* the whole root: its content, not an entry named "." */
            char *src = o->source ? o->source(o->sud, ".") : cf_strdup(o->root);
            rc = walk_children(w, -1, NULL, src, NULL);
            free(src);
            continue;
        }
        char *abs = o->source ? o->source(o->sud, rel) : cf_asprintf("%s/%s", o->root, rel);
        struct stat st;
        if (lstat(abs, &st) != 0 && errno == ENOENT) {
            int required = 0;
            for (size_t k = 0; k < o->comp->required.n; k++)
                if (strcmp(o->comp->required.v[k], rel) == 0)
                    required = 1;
            if (required)
                rc = cf_fail("component '%s': required path %s is missing", o->comp->name, abs);
            else
                cf_log(CF_LOG_WARN, "component '%s': %s does not exist, nothing captured there",
                       o->comp->name, abs);
        } else if (!skipped(w, rel)) {
            rc = walk(w, -1, NULL, abs, rel, 1);
        }
        free(abs);
    }
    return rc;
}

int cf_walk_component(const cf_walk_opts *o)
{
    walker w = {.o = o};
    w.disk = archive_read_disk_new();
    archive_read_disk_set_standard_lookup(w.disk);
    archive_read_disk_set_symlink_physical(w.disk);
    /* ACLs and file flags are not recorded (yet); skipping them saves an
     * open() per file on the metadata scan of an unchanged tree; sparse
     * files are stored dense. */
    archive_read_disk_set_behavior(w.disk, ARCHIVE_READDISK_NO_ACL | ARCHIVE_READDISK_NO_FFLAGS |
                                               ARCHIVE_READDISK_NO_SPARSE);
    int rc = cf_cpus(1, 2) > 1 ? walk_with_lister(&w) : 1;
    if (rc == 1)
        rc = walk_paths(&w);
    for (size_t i = 0; i < w.nhl; i++)
        free(w.hl[i].path);
    free(w.hl);
    archive_read_free(w.disk);
    return rc;
}

/* ---- walk order ------------------------------------------------------ */

/* Position of a component in the policy (ncomponents when unknown). */
int cf_comp_index(const cf_policy *p, const char *name)
{
    const cf_component *c = cf_policy_component(p, name);
    return (int)(c ? (size_t)(c - p->components) : p->ncomponents);
}

/* Which of the component's paths the walk found rel under. */
static size_t root_index(const cf_component *c, const char *rel)
{
    for (size_t i = 0; i < c->paths.n; i++) {
        const char *r = c->paths.v[i];
        size_t n = strlen(r);
        if (strcmp(r, ".") == 0 || (strncmp(rel, r, n) == 0 && (!rel[n] || rel[n] == '/')))
            return i;
    }
    return c->paths.n;
}

/* Walk order of two paths below one top: name by name (strcmp, as the
 * walk sorts a directory), a directory before what it holds. */
static int seg_cmp(const char *a, const char *b)
{
    for (;;) {
        size_t la = strcspn(a, "/"), lb = strcspn(b, "/");
        int c = memcmp(a, b, la < lb ? la : lb);
        if (c)
            return c;
        if (la != lb)
            return la < lb ? -1 : 1;
        a += la;
        b += lb;
        if (!*a || !*b)
            return *a ? 1 : *b ? -1 : 0;
        a++;
        b++;
    }
}

int cf_walk_cmp(const cf_policy *p, const cf_entry *a, const cf_entry *b)
{
    int ca = cf_comp_index(p, a->component), cb = cf_comp_index(p, b->component);
    if (ca != cb)
        return ca < cb ? -1 : 1;
    if (ca == (int)p->ncomponents)
        return 0;
    const cf_component *c = &p->components[ca];
    size_t ra = root_index(c, a->path), rb = root_index(c, b->path);
    if (ra != rb)
        return ra < rb ? -1 : 1;
    return seg_cmp(a->path, b->path);
}
