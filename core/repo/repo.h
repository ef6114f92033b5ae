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
 *   keys/<keyid>           wrapped master keys (encrypted repositories)
 *   locks/<id>             repository locks (repo/lock.h)
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
    CF_OBJ_KEY = 5,
    CF_OBJ_PROOF = 6, /* a rehearsal's result: proofs/<set>/<time>-<rand> */
    CF_OBJ_STATE = 7, /* state/damaged: what the last check found broken */
};

/* Encryption at rest, chosen at init (docs/repository-format.md, 2.1):
 * "repokey" encrypts every pack blob, pack table, index object and
 * manifest with a random master key that keys/<id> objects hold wrapped
 * under passphrase-derived keys (Argon2id). Chunk ids become HMAC-SHA256
 * under a secret key, so the storage learns nothing about content. */
enum { CF_REPO_ENC_NONE = 0, CF_REPO_ENC_REPOKEY = 1 };

/* Where a passphrase comes from: a command's output, a file, or an
 * environment variable (default COFFER_PASSPHRASE), in that order of
 * precedence. Never the policy text. Strings are borrowed. */
typedef struct cf_passphrase_src {
    const char *env;     /* variable name; NULL: COFFER_PASSPHRASE */
    const char *file;    /* one trailing newline is dropped */
    const char *command; /* /bin/sh -c, stdout; one trailing newline dropped */
    const char *what;    /* for messages ("target 'primary'"); may be NULL */
} cf_passphrase_src;

/* 1 if the source can give a passphrase (file or command configured, or
 * the variable set and non-empty). */
int cf_passphrase_available(const cf_passphrase_src *s);
/* Read the passphrase into locked memory; free with cf_passphrase_free. */
int cf_passphrase_read(const cf_passphrase_src *s, char **pass, size_t *len);
void cf_passphrase_free(char *pass, size_t len);
/* "$COFFER_PASSPHRASE", "passphrase_file /x", "passphrase_command" */
const char *cf_passphrase_describe(const cf_passphrase_src *s, char *buf, size_t len);

/* Argon2id parameters of a new key; 0 fields: defaults (3 passes, 64 MiB). */
typedef struct cf_kdf_params {
    uint64_t opslimit;
    uint64_t memlimit; /* bytes */
} cf_kdf_params;

typedef struct cf_repo cf_repo;

typedef struct cf_repo_params {
    cf_cdc_params cdc;   /* zero: defaults (min 512 KiB, avg 1 MiB, max 8 MiB, random seed) */
    int zstd_level;      /* 0: default (3) */
    uint64_t pack_size;  /* 0: default (16 MiB): target pack size */
    int encryption;      /* CF_REPO_ENC_*; 0: none */
    const cf_passphrase_src *pass; /* repokey: the first key's passphrase */
    cf_kdf_params kdf;   /* repokey: parameters of the first key */
} cf_repo_params;

/* Create a repository in an empty location; refuses if "config" exists. */
int cf_repo_init(cf_store *st, const cf_repo_params *p);
/* Open: read config and load every index object into memory. The store
 * stays owned by the caller. An unreadable index object is an error. */
int cf_repo_open(cf_store *st, cf_repo **out);
/* cf_repo_open_ex flags */
#define CF_REPO_OPEN_SKIP_BAD_INDEX 0x1u /* log and skip unreadable index objects
                                          * (to run checks or rebuild the index) */
#define CF_REPO_OPEN_NO_INDEX 0x2u /* load no index: the repository serves objects
                                    * (manifests) only, no chunk (ls, find, diff) */
#define CF_REPO_OPEN_NO_CACHE 0x4u /* read every object from the store, none from the
                                    * local cache of a remote repository (repo/cache.c) */
#define CF_REPO_OPEN_SETS                                                                          \
    0x8u /* list sets/ during the open, for the first                                              \
          * cf_repo_sets_ahead_take (cf_sets_list) */
int cf_repo_open_ex(cf_store *st, unsigned flags, cf_repo **out);
/* Open with options: flags as above, and where the passphrase of an
 * encrypted repository comes from (NULL: $COFFER_PASSPHRASE). The
 * passphrase is read only when the config says the repository is
 * encrypted. A wrong one fails with "wrong passphrase for repository at
 * <store label>" and writes nothing. */
typedef struct cf_repo_open_opts {
    unsigned flags;
    const cf_passphrase_src *pass;
    /* Called once the config is read and parsed, before the key is
     * unlocked: the store holds a repository (engine/run.c writes the
     * command's lock then, beside the key derivation). */
    void (*on_config)(void *ud);
    void *ud;
} cf_repo_open_opts;
int cf_repo_open_with(cf_store *st, const cf_repo_open_opts *o, cf_repo **out);
/* Close without flush discards the packs still open (their chunks are
 * lost); packs already closed stay, unindexed, until rebuild or prune. */
void cf_repo_close(cf_repo *r);

const cf_cdc_params *cf_repo_cdc(cf_repo *r);
/* Repository id (hex, 64 chars + NUL). */
const char *cf_repo_id(cf_repo *r);
/* Remove local cached copies (repo/cache.c) of objects of this type
 * (CF_OBJ_INDEX or CF_OBJ_MANIFEST) whose names are not among keys: the
 * store no longer has them. keys may be full keys or bare names. */
void cf_repo_cache_trim(cf_repo *r, int type, char **keys, size_t n);

/* CF_REPO_ENC_NONE or CF_REPO_ENC_REPOKEY. */
int cf_repo_encryption(cf_repo *r);

/* Keys of an encrypted repository (keys/<id> objects). */
typedef struct cf_key_info {
    char id[2 * CF_ID_LEN + 1];
    char created[32];
    char host[64];
    uint64_t opslimit, memlimit;
    int current; /* the key this handle was opened with */
    int foreign; /* belongs to another repository id (left by a failed init) */
} cf_key_info;
int cf_repo_key_list(cf_repo *r, cf_key_info **keys, size_t *n);
/* Id of the key the repository was opened with ("" when unencrypted). */
const char *cf_repo_key_current(cf_repo *r);
/* Wrap the master key under a new passphrase as a new keys/<id> object. */
int cf_repo_key_add(cf_repo *r, const char *pass, size_t len, const cf_kdf_params *kdf,
                    char id_out[2 * CF_ID_LEN + 1]);
/* Remove keys/<id> (a unique prefix is enough). Refuses the last key and
 * the key in use (change that one with add + remove from another key, or
 * `coffer key passwd`, which removes it with allow_current). */
int cf_repo_key_remove(cf_repo *r, const char *id, int allow_current);

/* Chunk id of plaintext: SHA-256 when unencrypted, HMAC-SHA256 under the
 * repository's id key when encrypted. */
void cf_repo_hash(cf_repo *r, const void *data, size_t len, cf_id *out);
/* 1 if the chunk is stored (committed index or written in this session). */
int cf_repo_has(cf_repo *r, const cf_id *id);
/* cf_repo_has for n lists of ids at once: all[i] = 1 if every id of
 * lists[i] (lens[i] of them) is stored. The lookups overlap their memory
 * reads, so a previous set's many small files cost far less than one
 * cf_repo_has each. */
void cf_repo_has_lists(cf_repo *r, const cf_id *const *lists, const size_t *lens, size_t n,
                       uint8_t *all);
/* Store a chunk unless present: compress, append to one of the session's
 * open packs (one per calling thread), record in the session index.
 * *added = 1 if new (may be NULL). Thread safe. */
int cf_repo_put_chunk(cf_repo *r, const cf_id *id, const void *data, size_t len, int *added);
/* The same at zstd level `level` when the repository's level is 3 (the
 * default) or lower; 0: the repository's level. */
int cf_repo_put_chunk_level(cf_repo *r, const cf_id *id, const void *data, size_t len, int level,
                            int *added);
/* From now on, packs are published by n (1..4) background threads while
 * the writers go on with the next pack: an object store takes the last
 * part and the completion of a multipart upload out of the chunking
 * threads' time. cf_repo_flush and cf_repo_abort wait for them. For
 * backups only: whoever removes objects after writing packs (prune) needs
 * them published when cf_packw_close returns. */
void cf_repo_async_commits(cf_repo *r, int n);
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

/* After the commit of `key` (a manifest naming this session's chunks)
 * failed: the store may still have published it. 0 when key exists (the
 * session stays: the object is written); -1 with the error kept when it
 * does not (the session is aborted as by cf_repo_abort) or when that
 * cannot be told (the session's objects stay, for prune to collect). */
int cf_repo_commit_failed(cf_repo *r, const char *key);

/* Read a chunk: ranged read from its pack, decompress, check its id.
 * *out is reused/grown (caller frees with cf_buf_free). Thread safe.
 * Error names chunk id and pack key. */
int cf_repo_get_chunk(cf_repo *r, const cf_id *id, cf_buf *out);

/* Planned parallel reads (fetch.c), for whoever reads many chunks in a
 * known order (restores, whole or partial). The caller names
 * chunks in the order it will take them; threads read them ahead,
 * merging chunks of one pack that lie close together into one ranged
 * read, while the chunks read and not yet taken stay within a window.
 * The target's options `connections` (threads) and `inflight_bytes` (the
 * window) tune it; their defaults are 3 and 8M on local disks, and on
 * object storage one more than the CPUs and 24M, both raised with the
 * store's round trip (cf_store_round_trip). Every wanted chunk
 * must be taken or skipped, each once; want, take and skip may be called
 * from any threads. */
typedef struct cf_fetch cf_fetch;
/* window_cap: at most this many bytes in the window (0: the target's
 * inflight_bytes alone). */
cf_fetch *cf_fetch_new(cf_repo *r, uint64_t window_cap);
/* The target's `connections` option, or its default: how many reads of
 * the store run at once (fetch threads, check's pack readers). */
int cf_repo_connections(const cf_repo *r);
/* The target's `inflight_bytes` option, or its default: the window. */
uint64_t cf_repo_inflight_bytes(const cf_repo *r);
/* Name n chunks (ids copied); returns the sequence number of the first,
 * the others follow. */
uint64_t cf_fetch_want(cf_fetch *f, const cf_id *ids, size_t n);
/* Wait for chunk seq: as cf_repo_get_chunk, into *out (replaced). */
int cf_fetch_take(cf_fetch *f, uint64_t seq, cf_buf *out);
/* Give up chunks [seq, seq + n) without taking them. */
void cf_fetch_skip(cf_fetch *f, uint64_t seq, size_t n);
/* Where a read costs a request (a distant store), a chunk the caller
 * will want more than once is read once: the caller names every chunk it
 * will want, in a pass of its own before wanting any (cf_fetch_note);
 * a chunk named twice or more is written, once opened, to an unnamed
 * file (0600) in directory dirfd (cf_fetch_keep_in), up to 256 MiB and a
 * sixteenth of the free space there, and
 * its later wants read it back from there. keep_in returns -1 when the
 * fetch keeps nothing (a local store, no O_TMPFILE there); note is then
 * not needed. */
int cf_fetch_keep_in(cf_fetch *f, int dirfd);
void cf_fetch_note(cf_fetch *f, const cf_id *ids, size_t n);
/* Wants served from kept chunks so far. */
uint64_t cf_fetch_kept_hits(cf_fetch *f);
/* Stops the threads; chunks not taken are dropped. */
void cf_fetch_free(cf_fetch *f);
/* How many reads run at once: the connections, fewer for a window of
 * a few MiB (one per MiB, at least two). */
int cf_fetch_threads(const cf_fetch *f);

/* Size of the plaintext chunk, or -1 if unknown. */
int64_t cf_repo_chunk_size(cf_repo *r, const cf_id *id);
/* Bytes the chunk takes in its pack (compressed, encrypted), or -1. */
int64_t cf_repo_chunk_stored(cf_repo *r, const cf_id *id);
/* Pack key holding the chunk (for error messages), or NULL. */
const char *cf_repo_chunk_pack(cf_repo *r, const cf_id *id, char *buf, size_t len);
#define CF_PACK_KEY_LEN 72 /* "data/pp/" + 64 hex */
/* The object key of a pack. */
void cf_pack_key(const cf_id *pack_id, char out[CF_PACK_KEY_LEN + 1]);

/* What the index says of a chunk. */
typedef struct cf_chunk_state {
    uint8_t state; /* 1 a sound copy, 2 only a copy listed damaged, 0 none */
    uint32_t raw;  /* the copy's plaintext size (state != 0) */
    cf_id pack;    /* the pack holding the copy (state != 0) */
} cf_chunk_state;
/* The state of n chunks (any order, repeats allowed) in one pass over the
 * index: sorted lookups, so an index on disk is read in runs rather than
 * once per chunk. */
void cf_repo_chunk_states(cf_repo *r, const cf_id *ids, size_t n, cf_chunk_state *out);

/* Envelope objects (config/index/manifest): streamed, zstd-compressed,
 * SHA-256 trailer; visible only after commit. */
typedef struct cf_objw cf_objw;
int cf_repo_objw_open(cf_repo *r, int type, const char *key, cf_objw **w);
int cf_repo_objw_write(cf_objw *w, const void *buf, size_t len);
/* A manifest's body: compressed at level 1 unless the repository asks
 * for more than the default level (a manifest is mostly chunk ids, random
 * hex that level 1 packs as small as level 3, in half the time), and by
 * up to workers threads while the caller goes on feeding it (a large
 * one). Call before the first write; still one zstd frame. */
void cf_repo_objw_manifest(cf_objw *w, int workers);
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
/* Rebuild the index from the packs' own tables (writes a new index object
 * covering all packs, then removes the old index objects). Every blob is
 * read and checked (opens, decompresses, hashes to its id): one that does
 * not is left out and logged with its pack and the reason. */
int cf_repo_rebuild_index(cf_repo *r);

/* ---- Damage record (core/repo/damage.c) ------------------------------------
 * state/damaged lists the packs a check found missing or damaged and the
 * chunks it found unreadable, with the check's time. At open, index entries
 * in those packs (or for those chunks) count as absent: a backup stores
 * such chunks again, and the new copy then wins for every read. Text body:
 *   coffer-damaged 1
 *   time <UTC ISO 8601>
 *   pack <hex id>        (any number)
 *   chunk <hex id> <hex pack id>   (any number: that copy of the chunk)
 * Unknown line kinds are ignored (a later version may add some). */
#define CF_DAMAGE_KEY "state/damaged"
typedef struct cf_damaged_chunk {
    cf_id chunk, pack;
} cf_damaged_chunk;
typedef struct cf_damage {
    cf_id *packs;             /* sorted */
    cf_damaged_chunk *chunks; /* sorted */
    size_t npacks, nchunks;
    char time[32];
} cf_damage;
/* Parse a body; malformed text is an error naming the line, *d stays empty. */
int cf_damage_parse(const char *buf, size_t len, cf_damage *d);
/* Serialise (ids sorted and deduplicated first). Caller frees *out. */
char *cf_damage_format(cf_damage *d);
void cf_damage_free(cf_damage *d);
/* The record of this repository as loaded at open (empty: none). */
const cf_damage *cf_repo_damage(cf_repo *r);
/* Write state/damaged with these findings, or remove it when d is empty. */
int cf_repo_damage_store(cf_repo *r, cf_damage *d);

/* Packs the index names (committed ones holding indexed chunks). */
typedef struct cf_pack_list {
    char **keys;
    uint64_t *sizes;
    size_t n;
} cf_pack_list;
int cf_repo_indexed_packs(cf_repo *r, cf_pack_list *out);
/* Sets in the repository and the bytes its packs, index objects and
 * manifests take, for the metrics. Pack sizes come from the index; only
 * sets/ and index/ are listed (a request per thousand of them), so the
 * cost does not grow with the number of packs. Packs no index names
 * (an interrupted backup's, until prune) are not counted. */
int cf_repo_usage(cf_repo *r, uint64_t *sets, uint64_t *bytes);

/* List sets/ on a thread now (dropping any listing started before); the
 * next cf_repo_sets_ahead_take gets it. */
void cf_repo_sets_ahead(cf_repo *r);
/* The listing cf_repo_sets_ahead started, once it is in: 1 with keys
 * ("sets/ID", sorted; the caller frees them), 0 when none was started or
 * it failed (the caller lists again). */
int cf_repo_sets_ahead_take(cf_repo *r, char ***keys, size_t *n);
/* The same listing begun on a store before its repository is open
 * (started NULL when no thread could be made), handed to the repository
 * once it is (the next cf_repo_sets_ahead_take gets it), or dropped. */
typedef struct cf_sets_ahead cf_sets_ahead;
cf_sets_ahead *cf_sets_ahead_start(cf_store *st);
void cf_repo_sets_ahead_adopt(cf_repo *r, cf_sets_ahead *a);
void cf_sets_ahead_free(cf_sets_ahead *a);
/* Pack objects in storage that no loaded index names: leftovers of an
 * interrupted backup or prune (or a backup running now). mtimes: 0 if
 * the store does not say. */
int cf_repo_orphan_packs(cf_repo *r, cf_pack_list *out, int64_t **mtimes);
void cf_pack_list_free(cf_pack_list *l);

/* ---- Prune (core/repo/prune.c) -------------------------------------------
 * Two phases. cf_prune_begin reloads the index from the index objects
 * present now: that snapshot is all prune may ever remove (objects written
 * later by anyone are never touched). The caller marks every chunk a kept
 * set references, then plans and runs: used blobs of packs chosen for
 * repacking are copied (verified) into new packs, one new index object is
 * written covering every kept chunk, and only then are the snapshot's
 * index objects removed, and last the packs nothing uses. A kill at any
 * point leaves a repository whose index covers every kept chunk. */
typedef struct cf_prune cf_prune;
typedef struct cf_prune_stats {
    uint64_t chunks_total, chunks_used;
    uint64_t packs_total, packs_keep, packs_repack, packs_delete;
    uint64_t bytes_total, bytes_used, bytes_unused;     /* pack bytes */
    uint64_t bytes_delete, bytes_repack_used;           /* freed / copied */
    uint64_t bytes_unused_kept;                         /* left in kept packs */
    uint64_t packs_written, bytes_written;
    uint64_t index_removed;
    uint64_t orphans_delete, orphan_bytes_delete;       /* unindexed packs removed */
    uint64_t orphans_recent, orphan_bytes_recent;       /* unindexed, too new to remove */
    /* Under retention (an immutable target): packs prune would remove or
     * repack but leaves until their lock ends (unused ones drop out of
     * the index and a later prune removes them), and the earliest end. */
    uint64_t packs_waiting, bytes_waiting;
    int64_t waiting_until;
    uint64_t retention_checks; /* retention requests made while planning */
} cf_prune_stats;
typedef struct cf_prune_opts {
    double max_unused; /* percent of used bytes left unused in kept packs */
    int orphan_grace_s; /* unindexed packs younger than this stay; <0: default */
    int verbose;        /* log every pack removed or repacked */
    /* Retention: with respect_locks, a pack under retention at `now` (the
     * storage's clock) is neither removed nor repacked; bypass_governance
     * treats governance locks as absent. */
    int respect_locks, bypass_governance;
    int64_t now;
} cf_prune_opts;
int cf_prune_begin(cf_repo *r, cf_prune **out);
/* A kept set references id. -1 (cf_error set) if the snapshot index does
 * not hold it: prune must then stop before changing anything. */
int cf_prune_mark(cf_prune *p, const cf_id *id);
/* Marks are looked up in sorted batches when the index is on disk: flush
 * after each set so a missing chunk is reported with its set (plan
 * flushes what is left). */
int cf_prune_mark_flush(cf_prune *p);
int cf_prune_plan(cf_prune *p, const cf_prune_opts *o, cf_prune_stats *st);
/* Execute the plan. before_delete (may be NULL) runs after the new index
 * is written and before the first removal; non-zero stops the prune there
 * (nothing removed; the new packs and index are redundant but valid). */
int cf_prune_run(cf_prune *p, int (*before_delete)(void *ud), void *ud, cf_prune_stats *st);
void cf_prune_free(cf_prune *p);

/* Stats of this session (for progress / summary). */
typedef struct cf_repo_stats {
    uint64_t chunks_new, chunks_dup;
    uint64_t bytes_new_raw, bytes_new_stored, bytes_dup;
    uint64_t packs_written;
    uint64_t bytes_read, reads; /* pack bytes fetched by cf_repo_get_chunk, ranged reads */
} cf_repo_stats;
void cf_repo_get_stats(cf_repo *r, cf_repo_stats *out);

void cf_id_hex(const cf_id *id, char out[2 * CF_ID_LEN + 1]);
int cf_id_parse(const char *hex, cf_id *out);

#endif
