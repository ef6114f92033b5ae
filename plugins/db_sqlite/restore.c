/*
 * database "sqlite": restore. The stream is written to a temporary file
 * beside the target, flushed and checked (it must open and pass
 * quick_check), then renamed over the target, so the target is always
 * either the old database or the whole new one.
 *
 * The old database's -wal, -shm and -journal files are removed before the
 * rename: SQLite would replay a stale WAL or hot journal into the new file
 * and corrupt it, since nothing ties those files to a particular database.
 */
#include "db_sqlite.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int mkdir_p(char *dir, mode_t mode)
{
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p != 0)
            continue;
        char c = *p;
        *p = 0;
        int r = mkdir(dir, mode);
        int err = errno;
        *p = c;
        if (r != 0 && err != EEXIST)
            return err;
        if (!c)
            return 0;
    }
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = fsync(fd) != 0 && errno != EINVAL ? errno : 0;
    close(fd);
    return err;
}

static uint64_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

/* The stream dump.c wrote: named after the database, or the only one. */
static const char *pick_stream(dbsqlite_instance *in, coffer_dump_source *src)
{
    size_t n = src->stream_count(src);
    const char *want = dbsqlite_basename(in->path_opt);
    for (size_t i = 0; i < n; i++) {
        const char *name = src->stream_name(src, i);
        if (name && strcmp(name, want) == 0)
            return name;
    }
    if (n == 1)
        return src->stream_name(src, 0);
    in->host->error(in->h, COFFER_ERR_NOT_FOUND, "the set has no stream '%s' for database %s (%zu streams)", want,
                    in->path_opt, n);
    return NULL;
}

static coffer_status copy_stream(dbsqlite_instance *in, coffer_dump_source *src, const char *name, int fd,
                                 const char *tmp, uint64_t *total)
{
    void *stream = NULL;
    coffer_status st = src->stream_open(src, name, &stream);
    if (st)
        return in->host->error(in->h, st, "cannot open stream %s of the set", name);
    char *buf = malloc(DBSQLITE_CHUNK);
    if (!buf) {
        src->stream_close(stream);
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    }
    *total = 0;
    for (;;) {
        if (in->host->cancelled(in->h)) {
            st = in->host->error(in->h, COFFER_ERR_CANCELLED, "restore of %s cancelled", name);
            break;
        }
        size_t got = 0;
        if ((st = src->stream_read(stream, buf, DBSQLITE_CHUNK, &got)) != COFFER_OK) {
            st = in->host->error(in->h, st, "cannot read stream %s of the set", name);
            break;
        }
        if (got == 0)
            break;
        for (size_t off = 0; off < got;) {
            ssize_t w = write(fd, buf + off, got - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                int err = errno;
                st = in->host->error(in->h, err == ENOSPC || err == EDQUOT ? COFFER_ERR_NO_SPACE : COFFER_ERR_IO,
                                     "cannot write %s: %s", tmp, strerror(err));
                goto out;
            }
            off += (size_t)w;
        }
        *total += got;
        in->host->progress(in->h, got);
    }
out:
    free(buf);
    src->stream_close(stream);
    return st;
}

/* Open the new file and run quick_check: a truncated or damaged stream is
 * refused before it replaces anything. */
static coffer_status check_copy(dbsqlite_instance *in, const char *tmp, const char *target)
{
    sqlite3 *db;
    coffer_status st = dbsqlite_open(in, tmp, DBSQLITE_OPEN_IMMUTABLE, &db);
    if (st)
        return st;
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &s, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(s, 0);
        if (!r || strcmp(r, "ok") != 0)
            st = in->host->error(in->h, COFFER_ERR_CORRUPT, "restored copy of %s fails quick_check: %s", target,
                                 r ? r : "(no result)");
    } else {
        st = dbsqlite_err(in, db, rc, "restored copy fails to open:", target);
        if (st != COFFER_ERR_CANCELLED && st != COFFER_ERR_FATAL)
            st = COFFER_ERR_CORRUPT;
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return st;
}

/* Mode and owner: as recorded at dump time, else those of the file being
 * replaced; a non-root run cannot chown, which is fine. */
static void apply_ownership(dbsqlite_instance *in, coffer_dump_source *src, int fd, const struct stat *old)
{
    const char *m = src->meta_get ? src->meta_get(src, "file_mode") : NULL;
    const char *o = src->meta_get ? src->meta_get(src, "file_owner") : NULL;
    char *end;
    long mode = m ? strtol(m, &end, 8) : -1;
    if (m && (*end || mode < 0 || mode > 07777))
        mode = -1;
    if (mode < 0 && old)
        mode = old->st_mode & 07777;
    if (mode >= 0 && fchmod(fd, (mode_t)mode) != 0)
        in->host->log(in->h, COFFER_LOG_WARN, "cannot set mode %04lo on restored %s: %s", mode, in->path_opt,
                      strerror(errno));
    unsigned long uid, gid;
    int have = 0;
    if (o && sscanf(o, "%lu:%lu", &uid, &gid) == 2)
        have = 1;
    else if (old) {
        uid = old->st_uid;
        gid = old->st_gid;
        have = 1;
    }
    if (have && fchown(fd, (uid_t)uid, (gid_t)gid) != 0 && errno != EPERM)
        in->host->log(in->h, COFFER_LOG_WARN, "cannot set owner %lu:%lu on restored %s: %s", uid, gid,
                      in->path_opt, strerror(errno));
}

coffer_status dbsqlite_restore(void *instance, coffer_dump_source *src, const coffer_restore_opts *opts)
{
    dbsqlite_instance *in = instance;
    dbsqlite_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    int force = opts ? opts->force : 0;
    char *target = dbsqlite_target(in, opts);
    char *dir = NULL, *tmp = NULL, *failed = NULL;
    int fd = -1;
    coffer_status st = COFFER_OK;
    if (!target)
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");

    const char *name = pick_stream(in, src);
    if (!name) {
        st = COFFER_ERR_NOT_FOUND;
        goto done;
    }

    /* A database counts as non-empty if it or its WAL has any content. */
    struct stat old;
    int exists = stat(target, &old) == 0;
    if (exists && !S_ISREG(old.st_mode)) {
        st = in->host->error(in->h, COFFER_ERR_INVALID, "restore target %s is not a regular file", target);
        goto done;
    }
    char walpath[4200];
    snprintf(walpath, sizeof walpath, "%s-wal", target);
    if (((exists && old.st_size > 0) || file_size(walpath) > 0) && !force) {
        st = in->host->error(in->h, COFFER_ERR_EXISTS,
                             "restore target %s exists and is not empty; use --force to replace it", target);
        goto done;
    }

    const char *base = dbsqlite_basename(target);
    dir = base == target ? strdup(".") : strndup(target, (size_t)(base - target - (base - target > 1)));
    if (!dir || !(tmp = malloc(strlen(dir) + strlen(base) + 32))) {
        st = in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
        goto done;
    }
    int err = mkdir_p(dir, 0700);
    if (err) {
        st = in->host->error(in->h, err == ENOSPC ? COFFER_ERR_NO_SPACE : COFFER_ERR_IO,
                             "cannot create directory %s for %s: %s", dir, target, strerror(err));
        goto done;
    }
    sprintf(tmp, "%s/.%s.coffer-XXXXXX", dir, base);
    fd = mkostemp(tmp, O_CLOEXEC); /* 0600 */
    if (fd < 0) {
        err = errno;
        free(tmp);
        tmp = NULL; /* not ours to unlink */
        st = in->host->error(in->h, err == ENOSPC ? COFFER_ERR_NO_SPACE : COFFER_ERR_IO,
                             "cannot create temporary file beside %s: %s", target, strerror(err));
        goto done;
    }

    uint64_t total = 0;
    if ((st = copy_stream(in, src, name, fd, tmp, &total)) != COFFER_OK)
        goto done;
    const char *size = src->meta_get ? src->meta_get(src, "size") : NULL;
    if (size && strtoull(size, NULL, 10) != total) {
        st = in->host->error(in->h, COFFER_ERR_CORRUPT, "stream %s for %s has %llu bytes, the dump recorded %s",
                             name, target, (unsigned long long)total, size);
        goto done;
    }
    apply_ownership(in, src, fd, exists ? &old : NULL);
    int frc = fsync(fd) != 0 ? errno : 0;
    int crc = close(fd) != 0 ? errno : 0;
    fd = -1;
    if (frc || crc) {
        err = frc ? frc : crc;
        st = in->host->error(in->h, err == ENOSPC || err == EDQUOT ? COFFER_ERR_NO_SPACE : COFFER_ERR_IO,
                             "cannot flush %s: %s", tmp, strerror(err));
        goto done;
    }
    if ((st = check_copy(in, tmp, target)) != COFFER_OK)
        goto done;

    if ((err = dbsqlite_remove_sidecars(target, NULL, &failed)) != 0) {
        st = in->host->error(in->h, COFFER_ERR_IO, "cannot remove stale %s: %s", failed, strerror(err));
        goto done;
    }
    if (rename(tmp, target) != 0) {
        st = in->host->error(in->h, COFFER_ERR_IO, "cannot rename %s to %s: %s", tmp, target, strerror(errno));
        goto done;
    }
    free(tmp);
    tmp = NULL;
    if ((err = fsync_dir(dir)) != 0) {
        st = in->host->error(in->h, COFFER_ERR_IO, "cannot sync directory %s: %s", dir, strerror(err));
        goto done;
    }
    /* Something recreated them between our unlink and the rename: a process
     * still has the old database open. */
    int found = 0;
    if (dbsqlite_remove_sidecars(target, &found, &failed) == 0 && found)
        in->host->log(in->h, COFFER_LOG_WARN,
                      "%s: stale -wal/-shm reappeared during restore and were removed; "
                      "is the application still running?",
                      target);
    in->host->log(in->h, COFFER_LOG_INFO, "restored %s (%llu bytes)", target, (unsigned long long)total);
done:
    if (fd >= 0)
        close(fd);
    if (tmp)
        unlink(tmp);
    free(failed);
    free(tmp);
    free(dir);
    free(target);
    return st;
}
