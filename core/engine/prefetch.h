/*
 * Metadata read-ahead for the walk. The walk is one thread in sorted
 * order (the manifest needs that order); on a cold cache every lstat then
 * waits for the disk in turn. A few helper threads traverse the same
 * trees ahead of it, so inodes and directories are already cached when
 * the walk gets there. They only read metadata and never affect results.
 * When the first few thousand stats show the metadata is cached already,
 * they stop: the walk then only needs the CPU they would take.
 */
#ifndef CF_PREFETCH_H
#define CF_PREFETCH_H

#include <stddef.h>

typedef struct cf_prefetch cf_prefetch;

/* Start traversing root/paths[i] for each i. Never fails (returns NULL
 * when threads cannot be made: the walk just runs without it). */
cf_prefetch *cf_prefetch_start(const char *root, char *const *paths, size_t n);
/* cf_prefetch_start over every files component of policy p (NULL when
 * it has none). */
struct cf_policy;
cf_prefetch *cf_prefetch_policy(const struct cf_policy *p);
/* Stop early if still running, join, free. */
void cf_prefetch_stop(cf_prefetch *p);

#endif
