/*
 * coffer mount: a policy's sets as a read-only FUSE file system.
 *   /latest                      symlink to sets/<newest set>
 *   /sets/<id>/<component>/...   files components as they were backed up
 *   /sets/<id>/<component>/<s>   a database component's dump streams
 * A set's manifest is read when the set is first looked into; file reads
 * fetch only the chunks covering the range read (cache.h).
 */
#ifndef CF_MOUNT_H
#define CF_MOUNT_H

#include <stddef.h>

struct cf_run;

typedef struct cf_mount_opts {
    const char *mountpoint;
    size_t cache_size; /* bytes of decrypted chunks kept */
    int single_thread; /* serve one request at a time */
} cf_mount_opts;

#define CF_MOUNT_CACHE_DEFAULT (32u << 20)

/* 0 when path is an existing, empty directory; -1 with cf_error naming it. */
int cf_mount_check_point(const char *path);
/* Mount the sets of run's policy and serve until unmounted (fusermount3
 * -u, umount) or SIGINT/SIGTERM/SIGHUP; unmounts before returning. 0, or
 * -1 with cf_error. */
int cf_mount_run(struct cf_run *run, const cf_mount_opts *o);
/* "32M", "1GiB", "65536": bytes; -1 when malformed. */
int cf_mount_parse_size(const char *s, size_t *out);

#endif
