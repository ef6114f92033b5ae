/*
 * One set seen as a directory tree: <component>/<path> for files
 * components, <component>/<stream> for database dumps. Built from the
 * set's manifest when the set is first looked up; held compactly (one
 * node array, one name arena, one chunk id array) so a large set costs
 * little memory. Names the manifest should not hold (empty, ".", "..",
 * a "/" in a component name, duplicates, a path through a non-directory)
 * are left out with a warning: nothing outside the tree is reachable.
 */
#ifndef CF_MOUNT_FSVIEW_H
#define CF_MOUNT_FSVIEW_H

#include <stddef.h>
#include <stdint.h>

#include "repo/repo.h"

#define CF_FS_NONE UINT32_MAX

enum { CF_FS_DIR = 1, CF_FS_FILE, CF_FS_LINK };

typedef struct cf_fsnode {
    uint64_t name;   /* arena offset of the name */
    uint64_t target; /* arena offset of a symlink's target */
    uint64_t size;
    uint64_t chunk0; /* first chunk id in the view's chunk array */
    int64_t mtime;
    uint32_t parent, kid0, nkids; /* children: kids[kid0 .. kid0+nkids) */
    uint32_t nchunks, mode, uid, gid, mtime_ns;
    uint8_t type;
    uint8_t given; /* the manifest named it (not only implied by a path) */
} cf_fsnode;

typedef struct cf_setview {
    cf_fsnode *nodes; /* nodes[0]: the set's own directory */
    uint32_t nnodes;
    uint32_t *kids; /* node indices, grouped by parent, sorted by name */
    char *arena;
    cf_id *chunks;
    uint64_t nchunks;
    uint64_t skipped; /* entries left out */
} cf_setview;

/* Read sets/<id> and build its view; -1 with cf_error on failure. */
int cf_setview_load(cf_repo *r, const char *id, int64_t set_time, cf_setview **out);
void cf_setview_free(cf_setview *v);
static inline const char *cf_fs_name(const cf_setview *v, const cf_fsnode *n)
{
    return v->arena + n->name;
}
/* Child `name` of directory node dir, or CF_FS_NONE. */
uint32_t cf_setview_child(const cf_setview *v, uint32_t dir, const char *name);
/* Bytes the view holds (for the log). */
size_t cf_setview_memory(const cf_setview *v);

#endif
