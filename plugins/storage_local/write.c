/*
 * storage "local": writers. Data goes to "<dir>/.tmp-<random>" beside the
 * destination, is flushed, then renamed into place: readers see the old
 * object or the whole new one, never a partial file, and a crash leaves
 * only a temporary file that list ignores.
 *
 * COFFER_WRITE_IF_ABSENT publishes with renameat2(RENAME_NOREPLACE), or
 * with link()+unlink() where the filesystem lacks it: both fail if the
 * key exists, atomically, so two processes racing for a lock object
 * cannot both win.
 */
#include "local.h"

#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct local_writer {
    uint32_t magic; /* COFFER_MAGIC_WRITER until commit/abort */
    local_instance *in;
    int fd;
    uint32_t flags;
    char *key;
    char *path; /* destination */
    char *tmp;  /* temporary file beside it */
    uint64_t written;
    uint64_t reserved; /* bytes preallocated from size_hint */
    int keep_old;      /* append-only: an existing object is a refusal, not a lost race */
} local_writer;

static void writer_free(local_writer *w)
{
    w->magic = 0;
    if (w->fd >= 0)
        close(w->fd);
    if (w->tmp)
        unlink(w->tmp); /* no-op (ENOENT) once published */
    free(w->key);
    free(w->path);
    free(w->tmp);
    free(w);
}

/* "<dir of path>/.tmp-<16 hex>" */
static char *temp_name(const char *path)
{
    uint64_t rnd;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd) {
        /* Uniqueness only matters within the directory and O_EXCL
         * catches a clash, so a weak fallback is enough. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        rnd = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40) ^
              (uint64_t)(uintptr_t)&ts;
    }
    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path) + 1 : 0;
    size_t len = dlen + strlen(LOCAL_TMP_PREFIX) + 16 + 1;
    char *t = malloc(len);
    if (t)
        snprintf(t, len, "%.*s%s%016llx", (int)dlen, path, LOCAL_TMP_PREFIX, (unsigned long long)rnd);
    return t;
}

coffer_status local_writer_open(void *instance, const char *key, const coffer_write_opts *opts,
                                void **writer)
{
    local_instance *in = instance;
    local_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    *writer = NULL;
    coffer_status rc = local_key_check(in, key);
    if (rc)
        return rc;

    /* Read only the members the caller's struct has (ABI rule 3). */
    uint32_t flags = 0;
    uint64_t size_hint = 0;
    if (opts && opts->struct_size >= offsetof(coffer_write_opts, flags) + sizeof opts->flags)
        flags = opts->flags;
    if (opts && opts->struct_size >= offsetof(coffer_write_opts, size_hint) + sizeof opts->size_hint)
        size_hint = opts->size_hint;

    /* Append-only: an object is never replaced (the no-replace publish
     * makes that race-free). */
    int keep_old = in->append_only && !local_mutable_key(key) && !(flags & COFFER_WRITE_IF_ABSENT);
    if (keep_old)
        flags |= COFFER_WRITE_IF_ABSENT;

    local_writer *w = calloc(1, sizeof *w);
    if (!w)
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    w->magic = COFFER_MAGIC_WRITER;
    w->in = in;
    w->fd = -1;
    w->flags = flags;
    w->keep_old = keep_old;
    w->key = strdup(key);
    w->path = local_path(in, key);
    if (!w->key || !w->path) {
        rc = in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
        goto fail;
    }

    /* Cheap early answer; the real test is the atomic publish. */
    struct stat sb;
    if ((flags & COFFER_WRITE_IF_ABSENT) && lstat(w->path, &sb) == 0) {
        rc = keep_old
                 ? in->host->error(in->h, COFFER_ERR_LOCKED,
                                   "object %s already exists (%s) and the repository is "
                                   "append-only: it is never replaced",
                                   key, w->path)
                 : in->host->error(in->h, COFFER_ERR_EXISTS, "object %s already exists (%s)", key,
                                   w->path);
        goto fail;
    }

    mode_t mode = (flags & COFFER_WRITE_PRIVATE) ? 0600 : in->file_mode;
    for (int attempt = 0; w->fd < 0; attempt++) {
        free(w->tmp);
        if (!(w->tmp = temp_name(w->path))) {
            rc = in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
            goto fail;
        }
        w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (w->fd >= 0)
            break;
        int err = errno;
        free(w->tmp); /* not ours: never unlink it */
        w->tmp = NULL;
        if (err == ENOENT && attempt == 0) {
            if ((err = local_mkdir_parents(in, w->path)) != 0) {
                rc = local_errno(in, err, "cannot create directory for", w->path);
                goto fail;
            }
            continue;
        }
        if (err == EEXIST && attempt < 8)
            continue;
        rc = local_errno(in, err, "cannot create temporary file for", w->path);
        goto fail;
    }

    /* The configured mode exactly, whatever the umask. */
    if (fchmod(w->fd, mode) != 0) {
        rc = local_errno(in, errno, "cannot set the mode of the temporary file for", w->path);
        goto fail;
    }

    /* Reserve space up front: fewer fragments, and a full disk is reported
     * before any data moves. Filesystems without fallocate just skip it. */
    if (size_hint > 0) {
        if (fallocate(w->fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)size_hint) == 0) {
            w->reserved = size_hint;
        } else if (errno == ENOSPC || errno == EDQUOT) {
            rc = local_errno(in, errno, "cannot reserve space for", w->path);
            goto fail;
        }
    }
    *writer = w;
    return COFFER_OK;
fail:
    writer_free(w);
    return rc;
}

coffer_status local_writer_write(void *writer, const void *buf, size_t len)
{
    local_writer *w = writer;
    local_check_magic(w, COFFER_MAGIC_WRITER, "writer");
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(w->fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return local_errno(w->in, errno, "cannot write", w->path);
        }
        p += n;
        len -= (size_t)n;
        w->written += (uint64_t)n;
    }
    return COFFER_OK;
}

/* Atomically create path from tmp, failing if path exists. */
static int publish_if_absent(const char *tmp, const char *path)
{
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
        return errno;
    /* No RENAME_NOREPLACE here (some network and FUSE filesystems). */
    if (link(tmp, path) != 0)
        return errno;
    unlink(tmp);
    return 0;
}

coffer_status local_writer_commit(void *writer)
{
    local_writer *w = writer;
    local_check_magic(w, COFFER_MAGIC_WRITER, "writer");
    local_instance *in = w->in;
    coffer_status rc = COFFER_OK;

    /* A size_hint larger than the object leaves blocks allocated past the
     * end (KEEP_SIZE): truncating to the same size gives them back. */
    if (w->reserved > w->written && ftruncate(w->fd, (off_t)w->written) != 0) {
        rc = local_errno(in, errno, "cannot release reserved space of", w->path);
        goto done;
    }

    /* Data first, then the name: after a crash the name never points at
     * a file whose data did not make it. */
    if (in->fsync && fdatasync(w->fd) != 0) {
        rc = local_errno(in, errno, "cannot flush", w->path);
        goto done;
    }
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0) { /* network filesystems report write errors here */
        rc = local_errno(in, errno, "cannot close", w->path);
        goto done;
    }
    if (w->flags & COFFER_WRITE_IF_ABSENT) {
        int err = publish_if_absent(w->tmp, w->path);
        if (err == EEXIST) {
            rc = w->keep_old ? in->host->error(in->h, COFFER_ERR_LOCKED,
                                               "object %s already exists (%s) and the repository "
                                               "is append-only: it is never replaced",
                                               w->key, w->path)
                             : in->host->error(in->h, COFFER_ERR_EXISTS,
                                               "object %s already exists (%s)", w->key, w->path);
            goto done;
        }
        if (err) {
            rc = local_errno(in, err, "cannot publish", w->path);
            goto done;
        }
    } else if (rename(w->tmp, w->path) != 0) {
        rc = local_errno(in, errno, "cannot publish", w->path);
        goto done;
    }
    free(w->tmp); /* published: nothing left to clean up */
    w->tmp = NULL;
    int err = local_fsync_parent(in, w->path);
    if (err)
        rc = local_errno(in, err, "cannot sync directory of", w->path);
done:
    writer_free(w); /* commit frees, even when it failed (ABI) */
    return rc;
}

void local_writer_abort(void *writer)
{
    if (!writer)
        return;
    local_check_magic(writer, COFFER_MAGIC_WRITER, "writer");
    writer_free(writer);
}
