/*
 * btrfs snapshots (libbtrfsutil): a read-only snapshot of the subvolume
 * holding the paths, created in a CF_FSSNAP_DIR directory next to the
 * subvolume (in the directory holding its top, when that is on the same
 * file system: the application never sees it in its own tree) or, when
 * the subvolume's top is a mount point or the file system's top, at the
 * top of the subvolume itself. A snapshot is cheap whatever its size:
 * the whole subvolume is taken, the paths are mapped into it.
 */
#include "snapshot/snapshot_int.h"

#include <btrfsutil.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "util/util.h"

typedef struct btrfs_snap {
    cf_fssnap base;
    char *dir;  /* the CF_FSSNAP_DIR holding it */
    char *name; /* its name there */
} btrfs_snap;

/* cf_fail with libbtrfsutil's words for e and errno's. */
static int bfail(enum btrfs_util_error e, const char *fmt, ...) CF_PRINTF(2, 3);
static int bfail(enum btrfs_util_error e, const char *fmt, ...)
{
    int err = errno;
    va_list ap;
    va_start(ap, fmt);
    char *what = cf_vasprintf(fmt, ap);
    va_end(ap);
    if (err)
        cf_fail("%s: %s: %s", what, btrfs_util_strerror(e), strerror(err));
    else
        cf_fail("%s: %s", what, btrfs_util_strerror(e));
    free(what);
    return -1;
}

static char *parent_of(const char *path)
{
    const char *c = strrchr(path, '/');
    return c == path ? cf_strdup("/") : cf_strndup(path, (size_t)(c - path));
}

static char *child(const char *dir, const char *name)
{
    return strcmp(dir, "/") == 0 ? cf_asprintf("/%s", name) : cf_asprintf("%s/%s", dir, name);
}

/* f_type is a signed word: compare the magic's 32 bits */
static int on_btrfs(const struct statfs *sf)
{
    return (uint32_t)sf->f_type == (uint32_t)BTRFS_SUPER_MAGIC;
}

static uint64_t mount_id(const char *path)
{
    struct statx sx;
    if (statx(AT_FDCWD, path, 0, STATX_MNT_ID, &sx) == 0 && (sx.stx_mask & STATX_MNT_ID))
        return sx.stx_mnt_id;
    return 0;
}

/* The top of the subvolume holding p: up from p's directory while the
 * parent is on the same subvolume (st_dev) and the same mount. */
static int find_top(const cf_fssnap_path *p, char **top)
{
    char *cur = cf_strdup(p->anchor);
    uint64_t mnt = mount_id(cur);
    while (strcmp(cur, "/") != 0) {
        char *par = parent_of(cur);
        struct stat st;
        if (stat(par, &st) != 0 || st.st_dev != p->dev || mount_id(par) != mnt) {
            free(par);
            break;
        }
        free(cur);
        cur = par;
    }
    errno = 0;
    enum btrfs_util_error e = btrfs_util_is_subvolume(cur);
    if (e == BTRFS_UTIL_OK) {
        *top = cur;
        return 0;
    }
    if (e == BTRFS_UTIL_ERROR_NOT_SUBVOLUME)
        cf_fail("%s: %s, the highest directory of its subvolume that can be reached, is "
                "not the top of a btrfs subvolume (a bind mount of a directory inside one?); "
                "mount the subvolume itself",
                cf_fssnap_show(p, 0), cur);
    else
        bfail(e, "%s: btrfs_util_is_subvolume(%s)", cf_fssnap_show(p, 0), cur);
    free(cur);
    return -1;
}

static void free_tops(char **tops, size_t n)
{
    for (size_t i = 0; tops && i < n; i++)
        free(tops[i]);
    free(tops);
}

/* Fail when a subvolume other than coffer's snapshots lies inside one of
 * the paths: a snapshot shows it as an empty directory. */
static int check_nested_subvolumes(const cf_fssnap_req *rq, char **tops)
{
    struct btrfs_util_subvolume_iterator *it;
    errno = 0;
    enum btrfs_util_error e = btrfs_util_create_subvolume_iterator(tops[0], 0, 0, &it);
    if (e)
        return bfail(e, "listing the subvolumes inside %s", tops[0]);
    char *path;
    uint64_t id;
    int rc = 0;
    while (rc == 0 && (e = btrfs_util_subvolume_iterator_next(it, &path, &id)) == BTRFS_UTIL_OK) {
        if (!cf_fssnap_under(path, CF_FSSNAP_DIR)) {
            for (size_t i = 0; i < rq->n && rc == 0; i++) {
                const cf_fssnap_path *p = &rq->p[i];
                if (!p->exists || !p->is_dir)
                    continue;
                const char *inner = p->abs + (strcmp(tops[i], "/") == 0 ? 0 : strlen(tops[i]));
                while (*inner == '/')
                    inner++;
                if (!*inner || cf_fssnap_under(path, inner))
                    rc = cf_fail("%s: %s/%s is a btrfs subvolume of its own inside it, which a "
                                 "snapshot of subvolume %s would show empty; capture it in a "
                                 "component of its own, or leave out the snapshot",
                                 cf_fssnap_show(p, 0), strcmp(tops[i], "/") ? tops[i] : "", path,
                                 tops[i]);
            }
        }
        free(path);
    }
    if (rc == 0 && e != BTRFS_UTIL_ERROR_STOP_ITERATION)
        rc = bfail(e, "listing the subvolumes inside %s", tops[0]);
    btrfs_util_destroy_subvolume_iterator(it);
    return rc;
}

/* Check that the request's paths lie on one btrfs subvolume; tops[i] is
 * that subvolume's top as reached from path i. */
static int locate(const cf_fssnap_req *rq, int check_nested, char ***tops_out)
{
    cf_fssnap_mount *m;
    size_t nm;
    if (cf_fssnap_mounts_load(&m, &nm) != 0)
        return -1;
    char **tops = cf_calloc(rq->n, sizeof *tops);
    int rc = 0;
    for (size_t i = 0; i < rq->n && rc == 0; i++) {
        const cf_fssnap_path *p = &rq->p[i];
        struct statfs sf;
        if (statfs(p->anchor, &sf) != 0)
            rc = cf_fail_errno("%s: statfs(%s)", cf_fssnap_show(p, 0), p->anchor);
        else if (!on_btrfs(&sf))
            rc = cf_fail("%s lies on %s, not on btrfs: a btrfs snapshot cannot cover it",
                         cf_fssnap_show(p, 0), cf_fssnap_where(m, nm, p->anchor));
        else
            rc = find_top(p, &tops[i]);
    }
    for (size_t i = 1; i < rq->n && rc == 0; i++)
        if (rq->p[i].dev != rq->p[0].dev)
            rc = cf_fail("%s lies on btrfs subvolume %s, %s on subvolume %s: one snapshot "
                         "covers one subvolume; put them in separate components",
                         cf_fssnap_show(&rq->p[0], 0), tops[0], cf_fssnap_show(&rq->p[i], 1),
                         tops[i]);
    if (rc == 0 && check_nested) {
        char *what = cf_asprintf("a snapshot of btrfs subvolume %s", tops[0]);
        rc = cf_fssnap_check_nested(rq, m, nm, what, NULL);
        free(what);
        if (rc == 0)
            rc = check_nested_subvolumes(rq, tops);
    }
    cf_fssnap_mounts_free(m, nm);
    if (rc != 0) {
        free_tops(tops, rq->n);
        return -1;
    }
    *tops_out = tops;
    return 0;
}

static int fsid_of(const char *path, uint8_t fsid[BTRFS_FSID_SIZE])
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct btrfs_ioctl_fs_info_args a;
    memset(&a, 0, sizeof a);
    int r = ioctl(fd, BTRFS_IOC_FS_INFO, &a);
    close(fd);
    if (r == 0)
        memcpy(fsid, a.fsid, BTRFS_FSID_SIZE);
    return r;
}

/* Where snapshots of the subvolume at top go, best first: the directory
 * holding top when it is on the same btrfs file system, then top. */
static size_t candidates(const char *top, char *dirs[2])
{
    size_t n = 0;
    if (strcmp(top, "/") != 0) {
        char *par = parent_of(top);
        uint8_t a[BTRFS_FSID_SIZE], b[BTRFS_FSID_SIZE];
        struct statfs sf;
        if (statfs(par, &sf) == 0 && on_btrfs(&sf) && fsid_of(par, a) == 0 &&
            fsid_of(top, b) == 0 && memcmp(a, b, sizeof a) == 0)
            dirs[n++] = child(par, CF_FSSNAP_DIR);
        free(par);
    }
    dirs[n++] = child(top, CF_FSSNAP_DIR);
    return n;
}

/* dir must be coffer's: a directory (not a link) of ours that nobody
 * else may write to. */
static int check_dir(const char *dir, const struct stat *st)
{
    if (!S_ISDIR(st->st_mode) || st->st_uid != geteuid() || (st->st_mode & 022))
        return cf_fail("%s exists but is not coffer's snapshot directory (a directory owned by "
                       "uid %u, writable by nobody else); move it away",
                       dir, (unsigned)geteuid());
    return 0;
}

/* Open dir (created 0700 when missing): a descriptor, -1 with cf_fail,
 * or -2 with cf_fail when the directory cannot be made there (read-only,
 * no permission: another place may do). */
static int open_dir(const char *dir)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        cf_fail_errno("cannot create %s", dir);
        return e == EROFS || e == EACCES || e == EPERM ? -2 : -1;
    }
    struct stat st;
    if (lstat(dir, &st) != 0)
        return cf_fail_errno("%s", dir);
    if (check_dir(dir, &st) != 0)
        return -1;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return cf_fail_errno("cannot open %s", dir);
    return fd;
}

static int delete_in(const char *dir, const char *name)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return cf_fail_errno("btrfs snapshot %s/%s: cannot open %s", dir, name, dir);
    errno = 0;
    enum btrfs_util_error e = btrfs_util_delete_subvolume_fd(fd, name, 0);
    close(fd);
    if (e)
        return bfail(e, "btrfs snapshot %s/%s: btrfs_util_delete_subvolume_fd", dir, name);
    return 0;
}

/* Snapshot the subvolume open as src (its top is top) into dir as name:
 * 0, -1 with cf_fail, or -2 when dir cannot be made there. */
static int create_in(int src, const char *top, const char *dir, const char *name)
{
    /* A concurrent release removes the directory when it empties it: try
     * again when it vanished under us. */
    for (int attempt = 0;; attempt++) {
        int fd = open_dir(dir);
        if (fd < 0) {
            cf_error_prefix("btrfs snapshot of subvolume %s", top);
            return fd;
        }
        errno = 0;
        enum btrfs_util_error e = btrfs_util_create_snapshot_fd2(
            src, fd, name, BTRFS_UTIL_CREATE_SNAPSHOT_READ_ONLY, NULL, NULL);
        int err = errno;
        close(fd);
        if (e == BTRFS_UTIL_OK)
            return 0;
        errno = err;
        bfail(e, "btrfs snapshot of subvolume %s as %s/%s: btrfs_util_create_snapshot_fd2", top,
              dir, name);
        if (err != ENOENT || attempt == 4)
            return -1;
    }
}

static int btrfs_take(const cf_fssnap_req *rq, cf_fssnap **out)
{
    if (rq->size)
        return cf_fail("snapshot size '%s': only lvm snapshots have a size", rq->size);
    char **tops;
    if (locate(rq, 1, &tops) != 0)
        return -1;
    const char *top = tops[0];
    int src = open(top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (src < 0) {
        cf_fail_errno("btrfs subvolume %s: cannot open", top);
        free_tops(tops, rq->n);
        return -1;
    }
    char *dirs[2];
    size_t nd = candidates(top, dirs);
    char *name = cf_fssnap_name_new(rq->tag);
    int rc = -1;
    size_t used = 0;
    for (; used < nd; used++) {
        rc = create_in(src, top, dirs[used], name);
        if (rc != -2 || used + 1 == nd)
            break;
    }
    close(src);
    if (rc != 0) {
        for (size_t k = 0; k < nd; k++)
            free(dirs[k]);
        free(name);
        free_tops(tops, rq->n);
        return -1;
    }
    btrfs_snap *s = cf_calloc(1, sizeof *s);
    s->base.ops = &cf_fssnap_btrfs_ops;
    s->dir = dirs[used];
    s->name = name;
    for (size_t k = 0; k < nd; k++)
        if (k != used)
            free(dirs[k]);
    char *snap = child(s->dir, s->name);
    s->base.desc = cf_asprintf("btrfs snapshot %s of subvolume %s", snap, top);
    int has_root = 0;
    for (size_t i = 0; i < rq->n; i++) {
        cf_fssnap_add_map(&s->base, rq->p[i].rel, rq->p[i].abs, tops[i], snap);
        has_root |= strcmp(rq->p[i].rel, ".") == 0;
    }
    /* "." too, when the root lies on the subvolume */
    char *rtop;
    if (!has_root && rq->top.dev == rq->p[0].dev && find_top(&rq->top, &rtop) == 0) {
        cf_fssnap_add_map(&s->base, ".", rq->top.abs, rtop, snap);
        free(rtop);
    }
    cf_error_clear();
    cf_fssnap_set_skip(&s->base, rq, s->dir);
    free(snap);
    free_tops(tops, rq->n);
    cf_log(CF_LOG_DEBUG, "took %s", s->base.desc);
    *out = &s->base;
    return 0;
}

static int btrfs_release(cf_fssnap *base)
{
    btrfs_snap *s = (btrfs_snap *)base;
    int rc = delete_in(s->dir, s->name);
    if (rc == 0) {
        cf_log(CF_LOG_DEBUG, "deleted %s", base->desc);
        rmdir(s->dir); /* when it was the last one there */
    }
    free(s->dir);
    free(s->name);
    return rc;
}

/* Leftovers in one snapshot directory: 0 or -1, *removed counted. */
static int sweep_dir(const cf_fssnap_req *rq, const char *dir, const char *top,
                     const uint8_t *top_uuid, int *removed)
{
    struct stat st;
    if (lstat(dir, &st) != 0)
        return errno == ENOENT ? 0 : cf_fail_errno("%s", dir);
    if (check_dir(dir, &st) != 0) {
        cf_log(CF_LOG_WARN, "%s", cf_error());
        return 0;
    }
    DIR *d = opendir(dir);
    if (!d)
        return cf_fail_errno("cannot list %s", dir);
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        cf_fssnap_owner o;
        if (!cf_fssnap_name_parse(de->d_name, rq->tag, &o))
            continue;
        char *path = child(dir, de->d_name);
        cf_fssnap_owner_state state = cf_fssnap_owner_check(&o);
        struct btrfs_util_subvolume_info si;
        bool ro = false;
        if (state == CF_OWNER_ALIVE) {
            cf_log(CF_LOG_DEBUG, "%s: in use by coffer process %llu", path, o.pid);
        } else if (state == CF_OWNER_UNKNOWN) {
            cf_log(CF_LOG_INFO,
                   "%s: left alone: taken by coffer process %llu of another pid namespace", path,
                   o.pid);
        } else if (btrfs_util_is_subvolume(path) != BTRFS_UTIL_OK ||
                   btrfs_util_subvolume_info(path, 0, &si) != BTRFS_UTIL_OK ||
                   btrfs_util_get_subvolume_read_only(path, &ro) != BTRFS_UTIL_OK || !ro ||
                   memcmp(si.parent_uuid, top_uuid, sizeof si.parent_uuid) != 0) {
            cf_log(CF_LOG_WARN,
                   "%s: left alone: named like coffer's snapshots but not a read-only snapshot "
                   "of subvolume %s",
                   path, top);
        } else if (delete_in(dir, de->d_name) == 0) {
            cf_log(CF_LOG_INFO,
                   "removed %s: a snapshot of subvolume %s left by coffer process "
                   "%llu, which is gone",
                   path, top, o.pid);
            (*removed)++;
        } else if (rc == 0) {
            rc = -1; /* go on with the others; the first error is kept */
        }
        free(path);
    }
    closedir(d);
    if (*removed)
        rmdir(dir);
    return rc;
}

static int btrfs_sweep(const cf_fssnap_req *rq)
{
    char **tops;
    if (locate(rq, 0, &tops) != 0)
        return -1;
    struct btrfs_util_subvolume_info info;
    errno = 0;
    enum btrfs_util_error e = btrfs_util_subvolume_info(tops[0], 0, &info);
    if (e) {
        bfail(e, "btrfs subvolume %s: btrfs_util_subvolume_info", tops[0]);
        free_tops(tops, rq->n);
        return -1;
    }
    char *dirs[2];
    size_t nd = candidates(tops[0], dirs);
    int removed = 0, rc = 0;
    char first[2048] = "";
    for (size_t k = 0; k < nd; k++) {
        if (sweep_dir(rq, dirs[k], tops[0], info.uuid, &removed) != 0 && !first[0]) {
            snprintf(first, sizeof first, "%s", cf_error());
            rc = -1;
        }
        free(dirs[k]);
    }
    free_tops(tops, rq->n);
    if (rc != 0)
        return cf_fail("%s", first);
    return removed;
}

const cf_fssnap_ops cf_fssnap_btrfs_ops = {
    .kind = "btrfs", .take = btrfs_take, .release = btrfs_release, .sweep = btrfs_sweep};
