/*
 * Repository v1: content-defined chunks, deduplicated, compressed, packed
 * into pack objects, indexed; other objects (config, index, set manifests)
 * share one envelope. The byte-level format is docs/repository-format.md.
 *
 * Object keys inside the storage location:
 *   config                 repository parameters (written once, at init)
 *   data/<pp>/<packid>     packs (<pp> = first two hex digits of packid)
 *   index/<id>             index objects (which chunk lives where)
 *   sets/<setid>           set manifests, written last
 *   locks/, keys/          reserved for later versions
 *
 * Thread safety: cf_repo_put_chunk, cf_repo_has and cf_repo_get_chunk may
 * be called from several threads at once; the rest from one thread.
 */
#ifndef CF_REPO_H
#define CF_REPO_H

#include <stddef.h>
#include <stdint.h>

#include "plugin/store.h"
#include "repo/chunker.h"

#define CF_ID_LEN 32

typedef struct cf_id {
    uint8_t b[CF_ID_LEN];
} cf_id;

/* Object types in the envelope header. */
enum {
    CF_OBJ_CONFIG = 1,
    CF_OBJ_PACK = 2,
    CF_OBJ_INDEX = 3,
    CF_OBJ_MANIFEST = 4,
};

typedef struct cf_repo cf_repo;

typedef struct cf_repo_params {
    cf_cdc_params cdc;   /* zero: defaults (min 512 KiB, avg 1 MiB, max 8 MiB, random seed) */
    int zstd_level;      /* 0: default (3) */
    uint64_t pack_size;  /* 0: default (16 MiB): target pack size */
} cf_repo_params;

/* Create a repository in an empty location; refuses if "config" exists. */
int cf_repo_init(cf_store *st, const cf_repo_params *p);
/* Open: read config and load every index object into memory. The store
 * stays owned by the caller. An unreadable index object is an error. */
int cf_repo_open(cf_store *st, cf_repo **out);
/* cf_repo_open_ex flags */
#define CF_REPO_OPEN_SKIP_BAD_INDEX 0x1u /* log and skip unreadable index objects
                                          * (to run checks or rebuild the index) */
int cf_repo_open_ex(cf_store *st, unsigned flags, cf_repo **out);
/* Close without flush discards the packs still open (their chunks are
 * lost); packs already closed stay, unindexed, until rebuild or prune. */
void cf_repo_close(cf_repo *r);

const cf_cdc_params *cf_repo_cdc(cf_repo *r);
/* Repository id (hex, 64 chars + NUL). */
const char *cf_repo_id(cf_repo *r);

/* Chunk id of plaintext (SHA-256 in v1 unencrypted repositories). */
void cf_repo_hash(cf_repo *r, const void *data, size_t len, cf_id *out);
/* 1 if the chunk is stored (committed index or written in this session). */
int cf_repo_has(cf_repo *r, const cf_id *id);
/* Store a chunk unless present: compress, append to one of the session's
 * open packs (one per calling thread), record in the session index.
 * *added = 1 if new (may be NULL). Thread safe. */
int cf_repo_put_chunk(cf_repo *r, const cf_id *id, const void *data, size_t len, int *added);
/* Close open packs and write one index object for this session's chunks.
 * After success, the chunks are durable and indexed. A chunk is readable
 * with cf_repo_get_chunk once its pack is closed (at the latest, here).
 * After a failed put or flush, only cf_repo_abort (or close) is allowed. */
int cf_repo_flush(cf_repo *r);
/* Remove every pack and index object this session wrote (failed backup).
 * The session starts at cf_repo_open and includes flushed work, so the
 * repository is as it was at open: never call it once a manifest that
 * references this session's chunks is committed. */
void cf_repo_abort(cf_repo *r);

/* Read a chunk: ranged read from its pack, decompress, check its id.
 * *out is reused/grown (caller frees with cf_buf_free). Thread safe.
 * Error names chunk id and pack key. */
int cf_repo_get_chunk(cf_repo *r, const cf_id *id, cf_buf *out);
/* Size of the plaintext chunk, or -1 if unknown. */
int64_t cf_repo_chunk_size(cf_repo *r, const cf_id *id);
/* Pack key holding the chunk (for error messages), or NULL. */
const char *cf_repo_chunk_pack(cf_repo *r, const cf_id *id, char *buf, size_t len);

/* Envelope objects (config/index/manifest): streamed, zstd-compressed,
 * SHA-256 trailer; visible only after commit. */
typedef struct cf_objw cf_objw;
int cf_repo_objw_open(cf_repo *r, int type, const char *key, cf_objw **w);
int cf_repo_objw_write(cf_objw *w, const void *buf, size_t len);
int cf_repo_objw_commit(cf_objw *w); /* frees */
void cf_repo_objw_abort(cf_objw *w); /* frees */

typedef struct cf_objr cf_objr;
int cf_repo_objr_open(cf_repo *r, int type, const char *key, cf_objr **rd);
/* Returns bytes read (0 at end) or -1. The trailer hash is checked when the
 * end is reached: a mismatch is an error naming the key. */
long cf_repo_objr_read(cf_objr *rd, void *buf, size_t len);
void cf_repo_objr_close(cf_objr *rd);
/* Convenience: whole object into memory. */
int cf_repo_get_object(cf_repo *r, int type, const char *key, cf_buf *out);
int cf_repo_put_object(cf_repo *r, int type, const char *key, const void *buf, size_t len);

/* Storage of the repository (for listing sets etc.). */
cf_store *cf_repo_store(cf_repo *r);

/* Integrity checks. The callback receives one line per problem found
 * (object key, chunk id hex or NULL, message). Return value: number of
 * problems, or -1 on an error that stopped the check. */
typedef void (*cf_repo_problem_cb)(void *ud, const char *object, const char *chunk, const char *msg);
/* Every pack listed by the index exists with the right size; every index
 * and config object passes its trailer hash. */
long cf_repo_check_structure(cf_repo *r, cf_repo_problem_cb cb, void *ud);
/* Read one pack whole: trailer hash, every blob decompresses and hashes to
 * its id. */
long cf_repo_check_pack(cf_repo *r, const char *pack_key, cf_repo_problem_cb cb, void *ud);
/* Rebuild the index from pack trailers alone (writes a new index object
 * covering all packs and removes the old index objects). */
int cf_repo_rebuild_index(cf_repo *r);

/* Stats of this session (for progress / summary). */
typedef struct cf_repo_stats {
    uint64_t chunks_new, chunks_dup;
    uint64_t bytes_new_raw, bytes_new_stored, bytes_dup;
    uint64_t packs_written;
} cf_repo_stats;
void cf_repo_get_stats(cf_repo *r, cf_repo_stats *out);

void cf_id_hex(const cf_id *id, char out[2 * CF_ID_LEN + 1]);
int cf_id_parse(const char *hex, cf_id *out);

#endif
