/*
 * Writing a set's entries beneath a directory, confined by construction.
 *
 * A set is untrusted input: whoever can write to the storage chooses its
 * entries. Every path is resolved from a directory descriptor through
 * util/beneath.h, never through a symbolic link and never above that
 * directory; files are created with O_EXCL (a second entry for the same
 * path is refused, never written over); metadata is set on descriptors
 * held since creation. Symbolic and hard links are made last, after every
 * file is written, so no worker thread can meet a link a set placed in
 * its way; directory metadata comes after them: on several threads, and
 * deepest first wherever a directory's final mode would stop the search
 * of those below it.
 *
 * Threads: cf_extract_entry, cf_extract_parent and cf_extract_finish from
 * one thread, in manifest order; cf_extract_file_* from any thread.
 */
#ifndef CF_EXTRACT_H
#define CF_EXTRACT_H

#include <stdint.h>

#include "engine/manifest.h"

typedef struct cf_extract cf_extract;

/* Entries go beneath dirfd (borrowed: the caller keeps it open until
 * cf_extract_free). */
cf_extract *cf_extract_new(int dirfd);

/* A directory (made now, its metadata applied by cf_extract_finish), a
 * symbolic link or a hard link (both made by cf_extract_finish). */
int cf_extract_entry(cf_extract *x, const cf_entry *e);

/* Regular files. cf_extract_parent checks e->path, makes the directories
 * above it and returns a descriptor of its parent (the caller closes it);
 * it also maps e's owner names to this host's ids (e->uid, e->gid). */
int cf_extract_parent(cf_extract *x, cf_entry *e);

typedef struct cf_xfile {
    int fd;
    const cf_entry *e;
    uint64_t written;
} cf_xfile;
/* Create e->path's file in the directory pfd (O_EXCL). */
int cf_extract_file_begin(cf_extract *x, int pfd, const cf_entry *e, cf_xfile *f);
int cf_extract_file_data(cf_xfile *f, const void *buf, size_t len);
/* Checks the length against e->size, sets owner, xattrs, mode, times;
 * closes the file (also on failure). */
int cf_extract_file_end(cf_extract *x, cf_xfile *f);
void cf_extract_file_abort(cf_xfile *f);

/* Makes the recorded links, refuses duplicate directory entries, applies
 * directory metadata (on its own threads when there are many). */
int cf_extract_finish(cf_extract *x);
void cf_extract_free(cf_extract *x);

#endif
