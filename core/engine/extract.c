#include "engine/extract.h"

#include <errno.h>
#include <linux/capability.h>
#include <pthread.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "util/beneath.h"
#include "util/util.h"

/* What is applied after the files: a directory's metadata, or a link. */
typedef struct xmeta {
    cf_ent_kind kind;
    char *path, *target;
    uint32_t mode;
    int64_t uid, gid;
    struct timespec mtime;
    cf_xattr *xattrs;
    size_t nxattrs;
} xmeta;

typedef struct owner {
    int group;
    char *name;
    int64_t id; /* -1: no such name here */
} owner;

struct cf_extract {
    int dirfd;
    int privileged; /* may set owners */
    xmeta *dirs, *links;
    size_t ndirs, capdirs, nlinks, caplinks;
    owner *owners;
    size_t nowners;
    /* parent of the last file: most files share their directory */
    char *last_parent;
    int last_pfd;
};

cf_extract *cf_extract_new(int dirfd)
{
    cf_extract *x = cf_calloc(1, sizeof *x);
    x->dirfd = dirfd;
    x->privileged = geteuid() == 0;
    x->last_pfd = -1;
    return x;
}

static void meta_clear(xmeta *m)
{
    free(m->path);
    free(m->target);
    for (size_t i = 0; i < m->nxattrs; i++) {
        free(m->xattrs[i].name);
        free(m->xattrs[i].value);
    }
    free(m->xattrs);
}

void cf_extract_free(cf_extract *x)
{
    if (!x)
        return;
    for (size_t i = 0; i < x->ndirs; i++)
        meta_clear(&x->dirs[i]);
    for (size_t i = 0; i < x->nlinks; i++)
        meta_clear(&x->links[i]);
    free(x->dirs);
    free(x->links);
    for (size_t i = 0; i < x->nowners; i++)
        free(x->owners[i].name);
    free(x->owners);
    free(x->last_parent);
    if (x->last_pfd >= 0)
        close(x->last_pfd);
    free(x);
}

/* The id a user or group name has on this host (as tar does: the name
 * wins over the recorded number when it exists here). */
static int64_t map_owner(cf_extract *x, int group, const char *name, int64_t recorded)
{
    if (!name || !*name)
        return recorded;
    for (size_t i = 0; i < x->nowners; i++)
        if (x->owners[i].group == group && strcmp(x->owners[i].name, name) == 0)
            return x->owners[i].id >= 0 ? x->owners[i].id : recorded;
    char buf[16384];
    int64_t id = -1;
    if (group) {
        struct group g, *gp = NULL;
        if (getgrnam_r(name, &g, buf, sizeof buf, &gp) == 0 && gp)
            id = gp->gr_gid;
    } else {
        struct passwd pw, *pp = NULL;
        if (getpwnam_r(name, &pw, buf, sizeof buf, &pp) == 0 && pp)
            id = pp->pw_uid;
    }
    x->owners = cf_realloc(x->owners, (x->nowners + 1) * sizeof *x->owners);
    x->owners[x->nowners++] = (owner){group, cf_strdup(name), id};
    return id >= 0 ? id : recorded;
}

static void map_owners(cf_extract *x, int64_t *uid, int64_t *gid, const char *user,
                       const char *group)
{
    *uid = map_owner(x, 0, user, *uid);
    *gid = map_owner(x, 1, group, *gid);
}

/* Permission bits as they may be set: without the privilege to give a
 * file its recorded owner, no set-id bit for somebody else. */
static mode_t allowed_mode(const cf_extract *x, uint32_t mode, int64_t uid, int64_t gid)
{
    mode_t m = mode & 07777;
    if (!x->privileged) {
        if (uid != (int64_t)geteuid())
            m &= ~(mode_t)S_ISUID;
        if (gid != (int64_t)getegid())
            m &= ~(mode_t)S_ISGID;
    }
    return m;
}

static int check_path(const char *path)
{
    if (cf_path_safe(path) != 0)
        return cf_fail("%s: refused: the path escapes the restore target", path ? path : "(none)");
    return 0;
}

static int resolve_fail(const char *path, const char *what)
{
    if (errno == ELOOP || errno == ENOTDIR || errno == EXDEV)
        return cf_fail("%s: refused: %s passes through a symbolic link or a non-directory", path,
                       what);
    return cf_fail_errno("%s: cannot open %s", path, what);
}

static xmeta *record(xmeta **v, size_t *n, size_t *cap, const cf_entry *e)
{
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        *v = cf_realloc(*v, *cap * sizeof **v);
    }
    xmeta *m = &(*v)[(*n)++];
    memset(m, 0, sizeof *m);
    m->kind = e->kind;
    m->path = cf_strdup(e->path);
    m->target = e->target ? cf_strdup(e->target) : NULL;
    m->mode = e->mode;
    m->uid = e->uid;
    m->gid = e->gid;
    m->mtime.tv_sec = e->mtime;
    m->mtime.tv_nsec = e->mtime_ns;
    if (e->nxattrs) {
        m->xattrs = cf_calloc(e->nxattrs, sizeof *m->xattrs);
        for (size_t i = 0; i < e->nxattrs; i++) {
            m->xattrs[i].name = cf_strdup(e->xattrs[i].name);
            m->xattrs[i].value = cf_malloc(e->xattrs[i].len + 1);
            memcpy(m->xattrs[i].value, e->xattrs[i].value, e->xattrs[i].len);
            m->xattrs[i].len = e->xattrs[i].len;
        }
        m->nxattrs = e->nxattrs;
    }
    return m;
}

static int valid_times(const cf_entry *e)
{
    if (e->mtime_ns < 0 || e->mtime_ns > 999999999)
        return cf_fail("%s: refused: mtime_ns %ld out of range", e->path, e->mtime_ns);
    return 0;
}

int cf_extract_entry(cf_extract *x, const cf_entry *e)
{
    if (check_path(e->path) != 0 || valid_times(e) != 0)
        return -1;
    switch (e->kind) {
    case CF_ENT_DIR: {
        const char *base;
        int pfd = cf_beneath_parent(x->dirfd, e->path, 0755, &base);
        if (pfd < 0)
            return resolve_fail(e->path, "its parent directory");
        int rc = 0;
        if (mkdirat(pfd, base, 0700) != 0) {
            struct stat st;
            if (errno != EEXIST)
                rc = cf_fail_errno("%s: cannot create directory", e->path);
            else if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode))
                rc = cf_fail("%s: refused: a directory entry where the set already has "
                             "another entry",
                             e->path);
            /* else made earlier: by a parent's creation or by a component
             * restored before this one; a second entry of this component is
             * found by cf_extract_finish. */
        }
        close(pfd);
        if (rc == 0) {
            xmeta *m = record(&x->dirs, &x->ndirs, &x->capdirs, e);
            map_owners(x, &m->uid, &m->gid, e->user, e->group);
        }
        return rc;
    }
    case CF_ENT_SYMLINK:
        if (!e->target || !*e->target)
            return cf_fail("%s: refused: symbolic link without a target", e->path);
        break;
    case CF_ENT_HARDLINK:
        if (!e->target || cf_path_safe(e->target) != 0)
            return cf_fail("%s: refused: hard link target %s escapes the restore target", e->path,
                           e->target ? e->target : "(none)");
        if (strcmp(e->target, e->path) == 0)
            return cf_fail("%s: refused: hard link to itself", e->path);
        break;
    default:
        return cf_fail("%s: refused: not a directory or link entry", e->path);
    }
    xmeta *m = record(&x->links, &x->nlinks, &x->caplinks, e);
    map_owners(x, &m->uid, &m->gid, e->user, e->group);
    return 0;
}

int cf_extract_parent(cf_extract *x, cf_entry *e)
{
    if (check_path(e->path) != 0 || valid_times(e) != 0)
        return -1;
    if (e->kind != CF_ENT_FILE)
        return cf_fail("%s: refused: not a regular file entry", e->path);
    map_owners(x, &e->uid, &e->gid, e->user, e->group);
    const char *slash = strrchr(e->path, '/');
    size_t plen = slash ? (size_t)(slash - e->path) : 0;
    if (x->last_pfd < 0 || strlen(x->last_parent) != plen ||
        strncmp(x->last_parent, e->path, plen) != 0) {
        const char *base;
        int pfd = cf_beneath_parent(x->dirfd, e->path, 0755, &base);
        if (pfd < 0)
            return resolve_fail(e->path, "its parent directory");
        if (x->last_pfd >= 0)
            close(x->last_pfd);
        free(x->last_parent);
        x->last_pfd = pfd;
        x->last_parent = cf_strndup(e->path, plen);
    }
    int fd = fcntl(x->last_pfd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return cf_fail_errno("%s: cannot duplicate a directory descriptor", e->path);
    return fd;
}

int cf_extract_file_begin(cf_extract *x, int pfd, const cf_entry *e, cf_xfile *f)
{
    (void)x;
    const char *base = strrchr(e->path, '/');
    base = base ? base + 1 : e->path;
    f->e = e;
    f->written = 0;
    f->fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (f->fd < 0) {
        if (errno == EEXIST)
            return cf_fail("%s: refused: the set holds this path twice", e->path);
        return cf_fail_errno("%s: cannot create", e->path);
    }
    return 0;
}

int cf_extract_file_data(cf_xfile *f, const void *buf, size_t len)
{
    if (cf_write_all(f->fd, buf, len) != 0)
        return cf_fail_errno("%s: cannot write", f->e->path);
    f->written += (uint64_t)len;
    return 0;
}

void cf_extract_file_abort(cf_xfile *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
}

static void set_xattrs_fd(int fd, const char *path, const cf_xattr *xa, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fsetxattr(fd, xa[i].name, xa[i].value, xa[i].len, 0) != 0)
            cf_log(CF_LOG_WARN, "%s: extended attribute %s not restored: %s", path, xa[i].name,
                   strerror(errno));
}

/* Owner, extended attributes, mode, times, in that order: a change of
 * owner clears set-id bits and file capabilities. */
static int set_meta_fd(cf_extract *x, int fd, const char *path, uint32_t mode, int64_t uid,
                       int64_t gid, const cf_xattr *xa, size_t nxa, struct timespec mtime)
{
    if (x->privileged && fchown(fd, (uid_t)uid, (gid_t)gid) != 0)
        return cf_fail_errno("%s: cannot set owner %lld:%lld", path, (long long)uid,
                             (long long)gid);
    set_xattrs_fd(fd, path, xa, nxa);
    if (fchmod(fd, allowed_mode(x, mode, uid, gid)) != 0)
        return cf_fail_errno("%s: cannot set mode", path);
    struct timespec ts[2] = {mtime, mtime};
    if (futimens(fd, ts) != 0)
        return cf_fail_errno("%s: cannot set times", path);
    return 0;
}

int cf_extract_file_end(cf_extract *x, cf_xfile *f)
{
    const cf_entry *e = f->e;
    int rc = 0;
    if (f->written != e->size)
        rc = cf_fail("%s: restored %llu bytes, the set recorded %llu", e->path,
                     (unsigned long long)f->written, (unsigned long long)e->size);
    struct timespec mt = {.tv_sec = e->mtime, .tv_nsec = e->mtime_ns};
    if (rc == 0)
        rc = set_meta_fd(x, f->fd, e->path, e->mode, e->uid, e->gid, e->xattrs, e->nxattrs, mt);
    if (close(f->fd) != 0 && rc == 0)
        rc = cf_fail_errno("%s: cannot write", e->path);
    f->fd = -1;
    return rc;
}

static int make_link(cf_extract *x, const xmeta *m)
{
    const char *base;
    int pfd = cf_beneath_parent(x->dirfd, m->path, 0755, &base);
    if (pfd < 0)
        return resolve_fail(m->path, "its parent directory");
    int rc = 0;
    if (m->kind == CF_ENT_HARDLINK) {
        const char *tbase;
        int tfd = cf_beneath_parent(x->dirfd, m->target, 0, &tbase);
        struct stat st;
        if (tfd < 0)
            rc = resolve_fail(m->path, "the hard link's target");
        else if (fstatat(tfd, tbase, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            rc = cf_fail("%s: refused: hard link target %s is not a regular file of the set",
                         m->path, m->target);
        else if (linkat(tfd, tbase, pfd, base, 0) != 0)
            rc = errno == EEXIST ? cf_fail("%s: refused: the set holds this path twice", m->path)
                                 : cf_fail_errno("%s: cannot link to %s", m->path, m->target);
        if (tfd >= 0)
            close(tfd);
        close(pfd);
        return rc;
    }
    if (symlinkat(m->target, pfd, base) != 0) {
        rc = errno == EEXIST ? cf_fail("%s: refused: the set holds this path twice", m->path)
                             : cf_fail_errno("%s: cannot create symbolic link", m->path);
        close(pfd);
        return rc;
    }
    if (x->privileged &&
        fchownat(pfd, base, (uid_t)m->uid, (gid_t)m->gid, AT_SYMLINK_NOFOLLOW) != 0)
        rc = cf_fail_errno("%s: cannot set owner", m->path);
    for (size_t i = 0; rc == 0 && i < m->nxattrs; i++) {
        /* No fsetxattr on a link itself: the descriptor's /proc name with
         * the link's own name, which lsetxattr does not follow. */
        char *p = cf_asprintf("/proc/self/fd/%d/%s", pfd, base);
        if (lsetxattr(p, m->xattrs[i].name, m->xattrs[i].value, m->xattrs[i].len, 0) != 0)
            cf_log(CF_LOG_WARN, "%s: extended attribute %s not restored: %s", m->path,
                   m->xattrs[i].name, strerror(errno));
        free(p);
    }
    struct timespec ts[2] = {m->mtime, m->mtime};
    if (rc == 0 && utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW) != 0)
        rc = cf_fail_errno("%s: cannot set times", m->path);
    close(pfd);
    return rc;
}

/* Whether this process searches any directory whatever its mode
 * (CAP_DAC_READ_SEARCH or CAP_DAC_OVERRIDE in its effective set). */
static int searches_anything(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capget, &h, d) != 0)
        return 0;
    return ((d[0].effective >> CAP_DAC_READ_SEARCH) & 1) ||
           ((d[0].effective >> CAP_DAC_OVERRIDE) & 1);
}

static int dir_meta(cf_extract *x, const xmeta *m)
{
    int fd = cf_beneath_open(x->dirfd, m->path, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return resolve_fail(m->path, "the directory");
    int rc = set_meta_fd(x, fd, m->path, m->mode, m->uid, m->gid, m->xattrs, m->nxattrs, m->mtime);
    close(fd);
    return rc;
}

/* Directory metadata on several threads: a blob store's fan-out makes
 * nearly as many directories as files, and each costs five system calls.
 * Setting one directory's owner, mode or times changes no other
 * directory, so the order matters only where a final mode would stop this
 * process from searching a directory to reach the ones below it: those
 * wait for a last pass on this thread, in reverse manifest order (a
 * directory after everything in it). */
typedef struct dpass {
    cf_extract *x;
    const xmeta **v;
    size_t n;
    _Atomic size_t next;
    _Atomic int failed;
    char err[2048]; /* the first failure: written by the thread that set failed */
} dpass;

static void *dpass_main(void *arg)
{
    dpass *d = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&d->next, 1);
        if (i >= d->n || atomic_load(&d->failed))
            break;
        if (dir_meta(d->x, d->v[d->n - 1 - i]) != 0) {
            if (!atomic_exchange(&d->failed, 1))
                snprintf(d->err, sizeof d->err, "%s", cf_error());
            break;
        }
    }
    return NULL;
}

#define DPASS_MIN 256 /* fewer directories: one thread */

static int dirs_meta(cf_extract *x)
{
    int nt = cf_cpus(1, 4);
    if (x->ndirs < DPASS_MIN || nt < 2) {
        for (size_t i = x->ndirs; i-- > 0;)
            if (dir_meta(x, &x->dirs[i]) != 0)
                return -1;
        return 0;
    }
    int any = searches_anything();
    dpass d = {.x = x, .v = cf_calloc(x->ndirs, sizeof *d.v)};
    const xmeta **late = cf_calloc(x->ndirs, sizeof *late);
    size_t nlate = 0;
    for (size_t i = 0; i < x->ndirs; i++) {
        const xmeta *m = &x->dirs[i];
        if (any || (allowed_mode(x, m->mode, m->uid, m->gid) & 0111) == 0111)
            d.v[d.n++] = m;
        else
            late[nlate++] = m;
    }
    pthread_t th[4];
    int started = 0;
    for (int i = 1; i < nt; i++)
        if (pthread_create(&th[started], NULL, dpass_main, &d) == 0)
            started++;
    dpass_main(&d);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    int rc = 0;
    if (atomic_load(&d.failed))
        rc = cf_fail("%s", d.err);
    for (size_t i = nlate; rc == 0 && i-- > 0;)
        rc = dir_meta(x, late[i]);
    free(d.v);
    free(late);
    return rc;
}

static int cmp_dir(const void *a, const void *b)
{
    return strcmp((*(xmeta *const *)a)->path, (*(xmeta *const *)b)->path);
}

int cf_extract_finish(cf_extract *x)
{
    if (x->last_pfd >= 0) {
        close(x->last_pfd);
        x->last_pfd = -1;
    }
    /* Hard links before symbolic links: a link's target is found without
     * crossing any link. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < x->nlinks; i++)
            if ((x->links[i].kind == CF_ENT_SYMLINK) == (pass == 1) &&
                make_link(x, &x->links[i]) != 0)
                return -1;
    if (x->ndirs > 1) {
        xmeta **sorted = cf_malloc(x->ndirs * sizeof *sorted);
        for (size_t i = 0; i < x->ndirs; i++)
            sorted[i] = &x->dirs[i];
        qsort(sorted, x->ndirs, sizeof *sorted, cmp_dir);
        int rc = 0;
        for (size_t i = 1; i < x->ndirs && rc == 0; i++)
            if (strcmp(sorted[i - 1]->path, sorted[i]->path) == 0)
                rc = cf_fail("%s: refused: the set holds this directory twice", sorted[i]->path);
        free(sorted);
        if (rc != 0)
            return -1;
    }
    double t0 = cf_now();
    int rc = dirs_meta(x);
    cf_log(CF_LOG_DEBUG, "metadata of %zu directories set in %.3f s", x->ndirs, cf_now() - t0);
    return rc;
}
