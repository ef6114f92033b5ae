/*
 * storage "local": readers. A reader holds an open descriptor, so an
 * object replaced or removed while it is read keeps its old content; the
 * range [offset, offset+length) is fixed at open and read with pread.
 */
#include "local.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct local_reader {
    uint32_t magic; /* COFFER_MAGIC_READER while open */
    local_instance *in;
    int fd;
    uint64_t pos;       /* next byte to read */
    uint64_t remaining; /* bytes left in the requested range */
    char *path;         /* for messages */
} local_reader;

coffer_status local_reader_open(void *instance, const char *key, uint64_t offset, uint64_t length,
                                void **reader)
{
    local_instance *in = instance;
    local_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    *reader = NULL;
    coffer_status rc = local_key_check(in, key);
    if (rc)
        return rc;
    char *path = local_path(in, key);
    if (!path)
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = errno == ENOENT || errno == ENOTDIR
                 ? in->host->error(in->h, COFFER_ERR_NOT_FOUND, "no object %s (%s)", key, path)
                 : local_errno(in, errno, "cannot open", path);
        free(path);
        return rc;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        rc = local_errno(in, errno, "cannot stat", path);
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        rc = in->host->error(in->h, COFFER_ERR_NOT_FOUND, "no object %s (%s is not a regular file)", key,
                             path);
        goto fail;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (offset > size) {
        rc = in->host->error(in->h, COFFER_ERR_INVALID,
                             "range starts at %llu, past the end of %s (%llu bytes)",
                             (unsigned long long)offset, path, (unsigned long long)size);
        goto fail;
    }
    local_reader *r = calloc(1, sizeof *r);
    if (!r) {
        rc = in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
        goto fail;
    }
    r->magic = COFFER_MAGIC_READER;
    r->in = in;
    r->fd = fd;
    r->pos = offset;
    /* A range reaching past the end is cut at the end, as S3 does. */
    r->remaining = (length == 0 || length > size - offset) ? size - offset : length;
    r->path = path;
    if (offset == 0 && r->remaining == size)
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    /* The caller reads the whole range: let the disk fetch it while the
     * first bytes are decrypted and checked (a pack is tens of MiB). */
    if (r->remaining > 0)
        (void)posix_fadvise(fd, (off_t)offset, (off_t)r->remaining, POSIX_FADV_WILLNEED);
    *reader = r;
    return COFFER_OK;
fail:
    close(fd);
    free(path);
    return rc;
}

coffer_status local_reader_read(void *reader, void *buf, size_t len, size_t *got)
{
    local_reader *r = reader;
    local_check_magic(r, COFFER_MAGIC_READER, "reader");
    *got = 0;
    if (r->remaining == 0 || len == 0)
        return COFFER_OK;
    size_t want = len < r->remaining ? len : (size_t)r->remaining;
    ssize_t n;
    do
        n = pread(r->fd, buf, want, (off_t)r->pos);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return local_errno(r->in, errno, "cannot read", r->path);
    if (n == 0)
        /* Objects are immutable once published: a shrinking file was
         * truncated behind our back. */
        return r->in->host->error(r->in->h, COFFER_ERR_CORRUPT,
                                  "%s ended at byte %llu, %llu bytes early (truncated by someone else?)",
                                  r->path, (unsigned long long)r->pos, (unsigned long long)r->remaining);
    r->pos += (uint64_t)n;
    r->remaining -= (uint64_t)n;
    *got = (size_t)n;
    return COFFER_OK;
}

void local_reader_close(void *reader)
{
    if (!reader)
        return;
    local_reader *r = reader;
    local_check_magic(r, COFFER_MAGIC_READER, "reader");
    r->magic = 0;
    close(r->fd);
    free(r->path);
    free(r);
}
