#include "util/beneath.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int cf_beneath_no_openat2;

/* 0: not known yet, 1: the kernel has openat2, -1: it does not. */
static atomic_int have_openat2; /* set by whichever thread first learns it */

int cf_path_safe(const char *rel)
{
    if (!rel || !*rel || rel[0] == '/')
        return -1;
    const char *p = rel;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 0 || (n == 2 && p[0] == '.' && p[1] == '.') || (n == 1 && p[0] == '.'))
            return -1;
        p += n;
        if (*p == '/') {
            p++;
            if (!*p) /* trailing slash: an empty last segment */
                return -1;
        }
    }
    return 0;
}

static int try_openat2(int dirfd, const char *rel, int flags, mode_t mode)
{
    int have = atomic_load_explicit(&have_openat2, memory_order_relaxed);
    if (cf_beneath_no_openat2 || have < 0)
        return -2;
    struct open_how how = {
        .flags = (unsigned long long)(flags | O_NOFOLLOW | O_CLOEXEC),
        .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
    if (fd < 0 && (errno == ENOSYS || errno == EPERM) && have == 0) {
        /* No openat2 (old kernel, or a seccomp filter refusing it). */
        atomic_store_explicit(&have_openat2, -1, memory_order_relaxed);
        return -2;
    }
    if (fd >= 0 && have == 0)
        atomic_store_explicit(&have_openat2, 1, memory_order_relaxed);
    return (int)fd;
}

/* One segment at a time: every directory opened with O_NOFOLLOW, so a
 * symbolic link fails with ELOOP and ".." never appears (cf_path_safe). */
static int walk_dirs(int dirfd, const char *rel, size_t len, mode_t mkmode)
{
    int cur = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (cur < 0)
        return -1;
    char seg[NAME_MAX + 1];
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && rel[j] != '/')
            j++;
        if (j - i > NAME_MAX) {
            close(cur);
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(seg, rel + i, j - i);
        seg[j - i] = 0;
        int next = openat(cur, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT && mkmode) {
            if (mkdirat(cur, seg, mkmode) != 0 && errno != EEXIST) {
                int e = errno;
                close(cur);
                errno = e;
                return -1;
            }
            next = openat(cur, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        int e = errno;
        close(cur);
        if (next < 0) {
            errno = e;
            return -1;
        }
        cur = next;
        i = j + 1;
    }
    return cur;
}

int cf_beneath_open(int dirfd, const char *rel, int flags, mode_t mode)
{
    if (cf_path_safe(rel) != 0) {
        errno = EINVAL;
        return -1;
    }
    int fd = try_openat2(dirfd, rel, flags, mode);
    if (fd != -2)
        return fd;
    const char *slash = strrchr(rel, '/');
    int pfd =
        slash ? walk_dirs(dirfd, rel, (size_t)(slash - rel), 0) : fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (pfd < 0)
        return -1;
    fd = openat(pfd, slash ? slash + 1 : rel, flags | O_NOFOLLOW | O_CLOEXEC, mode);
    int e = errno;
    close(pfd);
    errno = e;
    return fd;
}

int cf_beneath_parent(int dirfd, const char *rel, mode_t mkmode, const char **base)
{
    if (cf_path_safe(rel) != 0) {
        errno = EINVAL;
        return -1;
    }
    const char *slash = strrchr(rel, '/');
    *base = slash ? slash + 1 : rel;
    if (!slash)
        return fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    size_t len = (size_t)(slash - rel);
    char *dir = strndup(rel, len);
    if (!dir) {
        errno = ENOMEM;
        return -1;
    }
    int fd = try_openat2(dirfd, dir, O_PATH | O_DIRECTORY, 0);
    free(dir);
    if (fd >= 0 || (fd == -1 && !(errno == ENOENT && mkmode)))
        return fd;
    /* No openat2, or a directory to create on the way. */
    return walk_dirs(dirfd, rel, len, mkmode);
}
