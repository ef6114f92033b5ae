/*
 * Compares what the two manifest line readers made of one line: shared
 * by the manifest fuzz harness and tests/core/engine/test_manifest.c.
 */
#ifndef COFFER_MANIFEST_DIFF_H
#define COFFER_MANIFEST_DIFF_H

#include <string.h>

#include "engine/manifest.h"

static inline int md_same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* NULL if a and b are the same entry, else the name of a field that differs. */
static inline const char *cf_entry_diff(const cf_entry *a, const cf_entry *b)
{
    if (a->kind != b->kind)
        return "kind";
    if (!md_same_str(a->component, b->component))
        return "component";
    if (!md_same_str(a->path, b->path))
        return "path";
    if (!md_same_str(a->target, b->target))
        return "target";
    if (!md_same_str(a->user, b->user) || !md_same_str(a->group, b->group))
        return "user/group";
    if (!md_same_str(a->version_id, b->version_id) || !md_same_str(a->etag, b->etag))
        return "version_id/etag";
    if (a->mode != b->mode || a->uid != b->uid || a->gid != b->gid)
        return "mode/uid/gid";
    if (a->mtime != b->mtime || a->mtime_ns != b->mtime_ns || a->ctime != b->ctime ||
        a->ctime_ns != b->ctime_ns)
        return "times";
    if (a->dev != b->dev || a->ino != b->ino || a->nlink != b->nlink || a->size != b->size)
        return "dev/ino/nlink/size";
    if (!a->chunks != !b->chunks || a->nchunks != b->nchunks ||
        (a->nchunks && memcmp(a->chunks, b->chunks, a->nchunks * sizeof *a->chunks) != 0))
        return "chunks";
    if (a->nxattrs != b->nxattrs)
        return "xattrs";
    for (size_t i = 0; i < a->nxattrs; i++) {
        const cf_xattr *x = &a->xattrs[i], *y = &b->xattrs[i];
        if (!md_same_str(x->name, y->name) || x->len != y->len ||
            (x->len && memcmp(x->value, y->value, x->len) != 0))
            return "xattrs";
    }
    if (!a->meta != !b->meta || (a->meta && !json_equal(a->meta, b->meta)))
        return "meta";
    return NULL;
}

#endif
