/*
 * storage "local": private declarations shared by storage.c (instance,
 * namespace operations), read.c (readers) and write.c (writers).
 *
 * Objects are plain files under the repository directory; a key maps to
 * the relative path of the same spelling. Writers stage data in a hidden
 * temporary file (LOCAL_TMP_PREFIX) in the destination directory and
 * rename it into place, so an object appears whole or not at all.
 *
 * Every symbol here is linked into the core when the driver is built in,
 * so all of them carry the local_ prefix.
 */
#ifndef COFFER_STORAGE_LOCAL_H
#define COFFER_STORAGE_LOCAL_H

#include <errno.h>
#include <stdint.h>
#include <sys/types.h>

#include <coffer/coffer.h>

/* Temporary files start with this; keys may not have a segment that does,
 * and list skips them. */
#define LOCAL_TMP_PREFIX ".tmp-"

typedef struct local_instance {
    uint32_t magic; /* COFFER_MAGIC_INSTANCE while alive */
    const coffer_host *host;
    coffer_hctx *h;
    char *root;     /* repository directory, absolute when a policy root was known */
    int fsync;      /* fsync files and directories on publish/remove */
    mode_t dir_mode;
    mode_t file_mode;
    int append_only; /* never remove or replace an object but locks/ (remove_ex can) */
} local_instance;

/* Append-only: may this key be removed or replaced? (repository locks) */
int local_mutable_key(const char *key);

/* Abort with a message when p is not a live handle of the expected kind:
 * using a freed or foreign handle is a bug in the caller, not an error. */
void local_check_magic(const void *p, uint32_t magic, const char *what);

/* Validate a key (COFFER_ERR_INVALID through host->error on failure). */
coffer_status local_key_check(local_instance *in, const char *key);

/* malloc'd "<root>/<key>". */
char *local_path(local_instance *in, const char *key);

/* Create the directories of path's parent below the root (mode dir_mode),
 * fsyncing each parent whose entry changed. 0 or an errno value. */
int local_mkdir_parents(local_instance *in, const char *path);

/* fsync the directory holding path (no-op when fsync is off). 0 or errno. */
int local_fsync_parent(local_instance *in, const char *path);

/* Map an errno of an operation on `path` to a status and record the error. */
coffer_status local_errno(local_instance *in, int err, const char *what, const char *path);

/* write.c */
coffer_status local_writer_open(void *instance, const char *key, const coffer_write_opts *opts,
                                void **writer);
coffer_status local_writer_write(void *writer, const void *buf, size_t len);
coffer_status local_writer_commit(void *writer);
void local_writer_abort(void *writer);

/* read.c */
coffer_status local_reader_open(void *instance, const char *key, uint64_t offset, uint64_t length,
                                void **reader);
coffer_status local_reader_read(void *reader, void *buf, size_t len, size_t *got);
void local_reader_close(void *reader);

#endif
