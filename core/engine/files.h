/*
 * Files components: walking a tree with full metadata (libarchive's disk
 * reader fills owners' names, xattrs). Writing entries back is
 * engine/extract.h.
 */
#ifndef CF_FILES_H
#define CF_FILES_H

#include "engine/manifest.h"
#include "policy/policy.h"
#include "util/beneath.h"

/* Called for every entry in walk order (parents before children). For a
 * regular file e->kind is CF_ENT_FILE without chunks; abspath opens it.
 * The callback takes ownership of *e (may move it). Return 0 to go on. */
typedef int (*cf_walk_cb)(void *ud, cf_entry *e, const char *abspath);

typedef struct cf_walk_opts {
    const char *root;         /* absolute root of the policy */
    const cf_component *comp; /* files component */
    char **skip;              /* relative paths captured by other components */
    size_t nskip;
    cf_walk_cb cb;
    void *ud;
    /* A path that cannot be read (no permission) and is not required:
     * reported here and left out, when this is set and the component's
     * on_unreadable is skip; otherwise the walk fails. */
    void (*unreadable)(void *ud, const char *rel, const char *reason);
} cf_walk_opts;

/* Walk every path of the component. Missing `required` paths fail (the
 * caller checks them first too); missing other paths are warned about. */
int cf_walk_component(const cf_walk_opts *o);

/* 1 if rel is, lies under, or holds one of the component's required
 * paths: such a path can never be skipped. */
int cf_path_required(const cf_component *c, const char *rel);

/* 1 if a failure to read rel (errno err) may leave it out of the set. */
int cf_unreadable_skippable(const cf_component *c, const char *rel, int err);

/* 1 if rel matches an exclude pattern (see docs/policy-reference.md). */
int cf_exclude_match(const cf_strlist *patterns, const char *rel);

#endif
