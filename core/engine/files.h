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
    /* Where the tree is read from, when not from root: the absolute path
     * that holds root/<path> for each of the component's paths ("." for
     * root itself), malloc'd; a file system snapshot's. Entries keep their
     * paths relative to root. NULL: read the live tree. */
    char *(*source)(void *sud, const char *path);
    void *sud;
    /* The previous set's entry at e's place (e: an entry with its stat
     * fields), or NULL; called with ud. When kind, times, inode, owner,
     * mode (and a file's size) are unchanged, xattrs and a link's target
     * are taken from it rather than read again. NULL: always read. */
    const cf_entry *(*prior)(void *ud, const cf_entry *e);
} cf_walk_opts;

/* Walk every path of the component. Missing `required` paths fail (the
 * caller checks them first too); missing other paths are warned about. */
int cf_walk_component(const cf_walk_opts *o);

/* The entry of one file already open as fd (abs its path, rel relative to
 * the policy root), with the walk's metadata. */
int cf_file_entry(const cf_component *c, const char *abs, const char *rel, int fd, cf_entry *e);

/* 1 if rel is, lies under, or holds one of the component's required
 * paths: such a path can never be skipped. */
int cf_path_required(const cf_component *c, const char *rel);

/* 1 if a failure to read rel (errno err) may leave it out of the set. */
int cf_unreadable_skippable(const cf_component *c, const char *rel, int err);

/* 1 if rel matches an exclude pattern (see docs/policy-reference.md). */
int cf_exclude_match(const cf_strlist *patterns, const char *rel);

/* 1 if now (an entry with its stat fields) is as `was` recorded it: same
 * kind, times, inode, owner, mode and, for a file, size. Any change to
 * content, xattrs or a link's target moves mtime or ctime. was may be
 * NULL (0). */
int cf_entry_unchanged(const cf_entry *was, const cf_entry *now);

/* Position of a component in the policy (ncomponents when unknown). */
int cf_comp_index(const cf_policy *p, const char *name);

/* Order of two entries in the walk of policy p: components in policy
 * order, a component's paths in their order, then name by name (a
 * directory before what it holds). <0, 0 (the same entry), >0. Entries of
 * components the policy does not have compare equal to each other. */
int cf_walk_cmp(const cf_policy *p, const cf_entry *a, const cf_entry *b);

#endif
