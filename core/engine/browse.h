/*
 * Browsing a repository by its set manifests alone (no pack is read):
 * ls, find, diff and stats. Entries are named COMPONENT/PATH, PATH as the
 * set records it (relative to the policy root for files components, the
 * stream name for databases, the key for object stores).
 *
 * Memory: ls and find stream the manifests; diff keeps 24 bytes per entry
 * of the first set; stats keeps 8 bytes per distinct chunk.
 *
 * Each function reports through `out`: NULL prints text lines on stdout
 * as it goes; a JSON array (or object for diff/stats) collects them.
 */
#ifndef CF_BROWSE_H
#define CF_BROWSE_H

#include <jansson.h>
#include <stddef.h>

#include "engine/run.h"

typedef struct cf_ls_opts {
    const char *path; /* NULL, "" or "/": the set's components */
    int longfmt;
    int recursive;
} cf_ls_opts;
/* CF_EXIT_OK, or CF_EXIT_FAILED with cf_error (a PATH the set lacks). */
int cf_ls(cf_run *run, const char *set_id, const cf_ls_opts *o, json_t *out);

/* Every set of this policy (set NULL or "all"), or one set, oldest first:
 * each entry a pattern matches, with its set, size, mtime and status
 * (new / changed / unchanged against the previous set holding it). A
 * pattern without '/' matches the base name, one with '/' the whole
 * COMPONENT/PATH or the PATH (fnmatch, '*' not crossing '/').
 * CF_EXIT_OK, or CF_EXIT_FAILED when a pattern matched nothing (all
 * matches are still reported; cf_error names the patterns). */
int cf_find(cf_run *run, const char *set, char *const *patterns, size_t n, json_t *out);

/* Differences from set a to set b (of any policies), optionally below
 * COMPONENT/PATH: added, removed, modified (other chunks), metadata
 * (same content, other mode/owner/times/xattrs), and per database
 * component the row counts the sets recorded. *report gets counts. */
int cf_diff(cf_run *run, const char *a, const char *b, const char *path, json_t *out,
            json_t **report);

/* Repository and per-set figures (every set of the policy, or one). */
int cf_stats(cf_run *run, const char *set, json_t **report);

/* The fnmatch rule of cf_find, for tests: 1 when pattern matches. */
int cf_find_match(const char *pattern, const char *component, const char *path);

#endif
