/*
 * Ingest: turn a byte stream into a list of chunk ids stored in the
 * repository (content-defined cuts, hash, dedup, compress, pack). One
 * cf_ingest per thread; its buffer (max chunk + 1 MiB) is reused across
 * streams so memory stays bounded.
 */
#ifndef CF_INGEST_H
#define CF_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "repo/repo.h"

typedef struct cf_ingest {
    cf_repo *repo;
    const cf_cdc *cdc;
    uint8_t *buf;
    size_t cap, len;
    cf_id *chunks;
    size_t nchunks, chunks_cap;
    uint64_t size;     /* bytes of the current stream */
    uint64_t new_raw;  /* bytes stored as new chunks (all streams) */
    int level;         /* zstd level of its chunks (cf_repo_put_chunk_level; 0: the repository's) */
} cf_ingest;

void cf_ingest_init(cf_ingest *g, cf_repo *repo, const cf_cdc *cdc);
void cf_ingest_free(cf_ingest *g);
/* Start a new stream (forgets the previous chunk list). */
void cf_ingest_reset(cf_ingest *g);
int cf_ingest_write(cf_ingest *g, const void *data, size_t len);
/* Read fd to its end; `what` names the file in errors. */
int cf_ingest_fd(cf_ingest *g, int fd, const char *what);
/* Store the tail; after this g->chunks/g->nchunks/g->size describe it. */
int cf_ingest_finish(cf_ingest *g);
/* Hand the chunk list over (caller frees). */
cf_id *cf_ingest_take(cf_ingest *g, size_t *n);

#endif
