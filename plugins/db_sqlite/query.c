/*
 * database "sqlite": queries. query runs against the live database (the
 * instance's path), query_target against the file a restore wrote, found
 * beneath opts->root without following a symbolic link, query_snapshot
 * against the private copy the last dump kept. All run exactly one
 * read-only statement and hand rows over as sqlite3_step yields them.
 */
#include "db_sqlite.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Stop a running statement when the host is cancelled (checked every
 * few thousand virtual machine instructions, also between rows). */
static int progress_cb(void *ud)
{
    dbsqlite_instance *in = ud;
    return in->host->cancelled(in->h) ? 1 : 0;
}

coffer_status dbsqlite_run(dbsqlite_instance *in, sqlite3 *db, const char *path, const char *sql, coffer_row_cb row_cb,
                           void *ud, int strict)
{
    sqlite3_stmt *s = NULL;
    const char *tail = NULL;
    const char **vals = NULL;
    coffer_status st = COFFER_OK;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, &tail);
    if (rc != SQLITE_OK) {
        /* a statement that does not parse, or names what does not exist */
        if (strict && (rc & 0xff) == SQLITE_ERROR)
            st = in->host->error(in->h, COFFER_ERR_INVALID, "query on %s: %s", path, sqlite3_errmsg(db));
        else
            st = dbsqlite_err(in, db, rc, "cannot prepare query on", path);
        goto done;
    }
    while (tail && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == '\r' || *tail == ';'))
        tail++;
    if (!s) {
        st = in->host->error(in->h, COFFER_ERR_INVALID, "query on %s: no statement given", path);
        goto done;
    }
    if (tail && *tail) {
        st = in->host->error(in->h, COFFER_ERR_INVALID,
                             "query on %s must be exactly one statement; more follows at '%.40s'", path, tail);
        goto done;
    }
    if (!sqlite3_stmt_readonly(s)) {
        st = in->host->error(in->h, COFFER_ERR_INVALID, "query on %s is not read-only: %s", path, sqlite3_sql(s));
        goto done;
    }
    int ncols = sqlite3_column_count(s);
    vals = calloc((size_t)ncols + 1, sizeof *vals);
    if (!vals) {
        st = in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
        goto done;
    }
    sqlite3_progress_handler(db, 10000, progress_cb, in);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        for (int i = 0; i < ncols; i++)
            vals[i] = (const char *)sqlite3_column_text(s, i);
        if (row_cb(ud, ncols, vals) != 0) {
            rc = SQLITE_DONE;
            break;
        }
        if (in->host->cancelled(in->h)) {
            st = in->host->error(in->h, COFFER_ERR_CANCELLED, "query on %s cancelled", path);
            goto done;
        }
    }
    if (rc != SQLITE_DONE) {
        if ((rc & 0xff) == SQLITE_INTERRUPT)
            st = in->host->error(in->h, COFFER_ERR_CANCELLED, "query on %s cancelled", path);
        else if (strict && (rc & 0xff) == SQLITE_ERROR)
            st = in->host->error(in->h, COFFER_ERR_INVALID, "query on %s: %s", path, sqlite3_errmsg(db));
        else
            st = dbsqlite_err(in, db, rc, "query failed on", path);
    }
done:
    sqlite3_progress_handler(db, 0, NULL, NULL);
    free(vals);
    sqlite3_finalize(s);
    return st;
}

coffer_status dbsqlite_query(void *instance, const char *sql, coffer_row_cb row_cb, void *ud)
{
    dbsqlite_instance *in = instance;
    dbsqlite_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    sqlite3 *db;
    coffer_status st = dbsqlite_open(in, in->path, DBSQLITE_OPEN_RO, &db);
    if (st)
        return st;
    st = dbsqlite_run(in, db, in->path, sql, row_cb, ud, 0);
    sqlite3_close(db);
    return st;
}

/* Open rel beneath dirfd, never through a symbolic link nor above dirfd:
 * openat2 where the kernel has it, else one component at a time. */
static int open_beneath(int dirfd, const char *rel)
{
    struct open_how how = {.flags = O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
    long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
    if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
        return (int)fd;
    /* the walk: plain names only */
    char *copy = strdup(rel);
    if (!copy) {
        errno = ENOMEM;
        return -1;
    }
    int cur = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    char *save = NULL;
    char *seg = strtok_r(copy, "/", &save);
    while (cur >= 0 && seg) {
        char *next = strtok_r(NULL, "/", &save);
        int nfd;
        if (strcmp(seg, "..") == 0) {
            errno = EXDEV;
            nfd = -1;
        } else if (strcmp(seg, ".") == 0) {
            seg = next;
            continue;
        } else {
            nfd = openat(cur, seg, (next ? O_DIRECTORY : O_NONBLOCK) | O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        }
        int e = errno;
        close(cur);
        errno = e;
        cur = nfd;
        seg = next;
    }
    free(copy);
    return cur;
}

coffer_status dbsqlite_query_target(void *instance, const coffer_restore_opts *opts, const char *sql,
                                    coffer_row_cb row_cb, void *ud)
{
    dbsqlite_instance *in = instance;
    dbsqlite_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    const char *root = opts && opts->root ? opts->root : in->host->policy_root(in->h);
    const char *rel = opts && opts->target && *opts->target ? opts->target : in->path_opt;
    char *target = dbsqlite_join(root, rel);
    if (!target)
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    coffer_status st = COFFER_OK;
    int fd;
    if (rel[0] == '/' || !root) {
        fd = open(rel, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    } else {
        int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        fd = rootfd < 0 ? -1 : open_beneath(rootfd, rel);
        int e = errno;
        if (rootfd >= 0)
            close(rootfd);
        errno = e;
    }
    struct stat sb;
    if (fd < 0) {
        if (errno == ENOENT)
            st = in->host->error(in->h, COFFER_ERR_NOT_FOUND, "restored database %s does not exist", target);
        else if (errno == ELOOP || errno == ENOTDIR || errno == EXDEV)
            st = in->host->error(in->h, COFFER_ERR_INVALID,
                                 "restored database %s: a symbolic link or a path leaving %s is in the way; "
                                 "refused",
                                 target, root ? root : "/");
        else
            st = in->host->error(in->h, COFFER_ERR_IO, "cannot open restored database %s: %s", target,
                                 strerror(errno));
        free(target);
        return st;
    }
    int reg = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode);
    close(fd);
    if (!reg) {
        st = in->host->error(in->h, COFFER_ERR_INVALID, "restored database %s is not a regular file", target);
        free(target);
        return st;
    }
    sqlite3 *db;
    st = dbsqlite_open_restored(in, target, &db);
    if (st == COFFER_OK) {
        st = dbsqlite_run(in, db, target, sql, row_cb, ud, 1);
        sqlite3_close(db);
    }
    free(target);
    return st;
}

coffer_status dbsqlite_query_snapshot(void *instance, const char *sql, coffer_row_cb row_cb,
                                      void *ud)
{
    dbsqlite_instance *in = instance;
    dbsqlite_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    if (!in->snapshot)
        return in->host->error(
            in->h, COFFER_ERR_UNSUPPORTED,
            "query on the snapshot of %s: no dump of this instance kept its snapshot", in->path);
    if (!sql)
        return in->host->error(in->h, COFFER_ERR_INVALID,
                               "query on the snapshot of %s: no statement given", in->path);
    /* Nobody else knows the copy: no locks, no -wal/-shm next to it. */
    sqlite3 *db;
    coffer_status st = dbsqlite_open(in, in->snapshot, DBSQLITE_OPEN_IMMUTABLE, &db);
    if (st)
        return st;
    size_t len = strlen(in->path) + 20;
    char *shown = malloc(len);
    if (!shown) {
        sqlite3_close(db);
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    }
    snprintf(shown, len, "the snapshot of %s", in->path);
    st = dbsqlite_run(in, db, shown, sql, row_cb, ud, 1);
    free(shown);
    sqlite3_close(db);
    return st;
}
