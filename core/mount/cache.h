/*
 * Reading set files through the mount: where a byte offset falls among a
 * file's chunks, and a bounded LRU cache of plaintext chunks, so a read
 * fetches only the chunks covering its range, once.
 */
#ifndef CF_MOUNT_CACHE_H
#define CF_MOUNT_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "repo/repo.h"

/* offs holds n+1 prefix offsets: chunk i covers [offs[i], offs[i+1]).
 * Returns the index of the chunk holding byte `off`, or n when off is at
 * or past the end (offs[n]). Empty chunks are skipped. */
size_t cf_chunk_at(const uint64_t *offs, size_t n, uint64_t off);
/* Fill offs[0..n] from the chunk sizes; -1 when the total overflows. */
int cf_chunk_offsets(const int64_t *sizes, size_t n, uint64_t *offs);

/* The cache: thread safe; holds at most `cap` bytes of chunk data (a chunk
 * larger than that is never kept). Owns the buffers put into it. */
typedef struct cf_ccache cf_ccache;
cf_ccache *cf_ccache_new(size_t cap);
void cf_ccache_free(cf_ccache *c);
/* Copy len bytes at off of the chunk into dst: 1 when cached (the chunk
 * becomes the most recently used), 0 when not. off+len must lie inside. */
int cf_ccache_read(cf_ccache *c, const cf_id *id, size_t off, void *dst, size_t len);
/* 1 when the chunk is cached (no hit or miss counted). */
int cf_ccache_has(cf_ccache *c, const cf_id *id);
/* Add a chunk (data malloc'd, taken over, freed when evicted or at once
 * when not kept); older chunks are evicted to stay under the cap. */
void cf_ccache_put(cf_ccache *c, const cf_id *id, void *data, size_t len);
/* Bytes and chunks held now; hits and misses so far. */
void cf_ccache_stats(cf_ccache *c, size_t *bytes, size_t *chunks, uint64_t *hits, uint64_t *misses);

#endif
