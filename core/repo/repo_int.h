/*
 * Private to core/repo: the repository handle, the in-memory index, the
 * envelope and pack helpers shared by repo.c, object.c, pack.c, index.c
 * and check.c. Byte layouts are in docs/repository-format.md.
 */
#ifndef CF_REPO_INT_H
#define CF_REPO_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include <openssl/evp.h>
#include <zstd.h>

#include "repo/repo.h"

/* ---- Envelope --------------------------------------------------------- */
#define CF_ENV_MAGIC "COFR"
#define CF_ENV_HDR_LEN 8
#define CF_ENV_TRAILER_LEN 32 /* SHA-256 of every preceding byte */
#define CF_FORMAT_VERSION 1
#define CF_ENV_FLAG_ZSTD 0x01u /* body is one zstd frame */
#define CF_ENV_FLAGS_KNOWN CF_ENV_FLAG_ZSTD
#define CF_ENC_NONE 0    /* unencrypted */
#define CF_ENC_XCHACHA 1 /* "repokey": XChaCha20-Poly1305 (section 2.1) */

/* Scheme 1 sizes. */
#define CF_KEY_LEN 32
#define CF_BLOB_NONCE_LEN 24 /* crypto_aead_xchacha20poly1305_ietf_NPUBBYTES */
#define CF_BLOB_TAG_LEN 16   /* crypto_aead_xchacha20poly1305_ietf_ABYTES */
#define CF_SEAL_OVERHEAD (CF_BLOB_NONCE_LEN + CF_BLOB_TAG_LEN)
#define CF_SEG_LEN 65536     /* secretstream plaintext segment of envelope bodies */
#define CF_SS_HDR_LEN 24     /* crypto_secretstream_xchacha20poly1305_HEADERBYTES */
#define CF_SS_ABYTES 17      /* crypto_secretstream_xchacha20poly1305_ABYTES */
#define CF_MASTER_LEN 104    /* enc key 32, id key 32, config MAC key 32, seed 8 */

/* Per-blob compression in packs and indexes. */
#define CF_COMP_NONE 0
#define CF_COMP_ZSTD 1

/* Pack and index records. */
#define CF_ENTRY_LEN 52       /* id 32, comp 1, reserved 3, offset 8, stored 4, raw 4 */
#define CF_PACK_TAIL_LEN 40   /* table_len 4, count 4, SHA-256 32 */
#define CF_INDEX_GROUP_LEN 48 /* pack id 32, pack size 8, count 4, reserved 4 */

#define CF_PACK_SIZE_MAX (1ull << 30)
#define CF_CHUNK_MAX (256u << 20) /* the chunker's largest maximum chunk size */

/* ---- Keys (core/repo/crypto.c) ------------------------------------------ */

/* The master key of an encrypted repository, in locked memory
 * (sodium_malloc). hmac_in/hmac_out: SHA-256 states after absorbing the
 * id key XOR ipad / opad, so each chunk id costs one copy, not a key
 * schedule. */
typedef struct cf_crypt {
    uint8_t enc[CF_KEY_LEN]; /* XChaCha20-Poly1305: blobs, tables, bodies */
    uint8_t id[CF_KEY_LEN];  /* HMAC-SHA256: chunk ids */
    uint8_t mac[CF_KEY_LEN]; /* HMAC-SHA256: config authentication */
    uint64_t seed;           /* chunker gear seed */
    EVP_MD_CTX *hmac_in, *hmac_out;
    /* Fetched once: OpenSSL 3.0's implicit fetch (EVP_sha256() and the
     * like) takes a global lock on every use, which serialises threads. */
    EVP_MD *sha;
    EVP_CIPHER *chacha;
} cf_crypt;

int cf_crypt_new(const uint8_t master[CF_MASTER_LEN], cf_crypt **out);
void cf_crypt_generate(uint8_t master[CF_MASTER_LEN]);
void cf_crypt_master(const cf_crypt *c, uint8_t master[CF_MASTER_LEN]);
void cf_crypt_free(cf_crypt *c);
/* HMAC-SHA256 under the id key (thread safe). */
void cf_crypt_chunk_id(const cf_crypt *c, const void *data, size_t len, cf_id *out);
/* HMAC-SHA256 of the config bytes under the MAC key. */
void cf_crypt_config_mac(const cf_crypt *c, const void *data, size_t len, uint8_t out[32]);
/* AEAD seal: out = nonce (24) | ciphertext | tag (16); ad may be NULL. */
void cf_seal(const cf_crypt *c, const uint8_t *ad, size_t adlen, const void *in, size_t len,
             cf_buf *out);
/* Open what cf_seal made; -1 (no message set) if authentication fails. */
int cf_unseal(const cf_crypt *c, const uint8_t *ad, size_t adlen, const uint8_t *in, size_t len,
              cf_buf *out);

/* cf_unseal over the sealed bytes themselves: the plaintext is left at
 * in + CF_BLOB_NONCE_LEN (len - CF_SEAL_OVERHEAD bytes). */
int cf_unseal_inplace(const cf_crypt *c, const uint8_t *ad, size_t adlen, uint8_t *in, size_t len);
/* Write keys/<id> wrapping master under pass. *id_out receives the id. */
int cf_key_write(cf_store *st, const EVP_MD *md, const char *repo_id,
                 const uint8_t master[CF_MASTER_LEN], const uint8_t config_mac[32],
                 const char *pass, size_t plen, const cf_kdf_params *kdf,
                 char id_out[2 * CF_ID_LEN + 1]);
/* Find the key that pass opens among keys (the listing of keys/, n
 * names; this repo id's only); check the config against it. */
int cf_key_unlock(cf_repo *r, const cf_buf *config, const cf_passphrase_src *src, char *const *keys,
                  size_t n);

void cf_env_header(uint8_t out[CF_ENV_HDR_LEN], int type, unsigned flags, int scheme);
/* Validate a header read from `key`; *flags receives the flags byte.
 * scheme: the repository's (an object of another scheme is refused). */
int cf_env_check(const uint8_t hdr[CF_ENV_HDR_LEN], int type, const char *key, unsigned *flags,
                 int scheme);
const char *cf_obj_type_name(int type);

/* compression.level when the config does not set it */
#define DEFAULT_ZSTD_LEVEL 3

/* The level a writer uses where it wants `wanted` (0: no wish) in a
 * repository at repo_level: the wish holds up to the default level; an
 * operator who asked for more gets it everywhere. */
static inline int cf_zstd_level(int repo_level, int wanted)
{
    return wanted && repo_level <= DEFAULT_ZSTD_LEVEL ? wanted : repo_level;
}

/* Envelope writer/reader on a bare store (init has no cf_repo yet).
 * cr: the repository's keys (body encrypted), or NULL (plain). */
int cf_objw_open_raw(cf_store *st, const EVP_MD *md, const cf_crypt *cr, int level, int type,
                     const char *key, uint32_t wflags, int compress, cf_objw **out);
int cf_objr_open_raw(cf_store *st, const EVP_MD *md, const cf_crypt *cr, int type,
                     const char *key, cf_objr **out);
/* Read exactly len bytes; returns bytes read (< len only at the end), -1. */
long cf_objr_read_full(cf_objr *rd, void *buf, size_t len);

/* ---- Little-endian helpers --------------------------------------------- */
static inline void cf_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void cf_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t cf_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t cf_get64(const uint8_t *p)
{
    return (uint64_t)cf_get32(p) | (uint64_t)cf_get32(p + 4) << 32;
}

/* ---- In-memory index ---------------------------------------------------- */

/* Where one chunk lives. 56 bytes; with the slot table the index costs
 * about 65-95 bytes per chunk. */
typedef struct cf_loc {
    cf_id id;
    uint64_t offset; /* from the start of the pack object */
    uint32_t stored; /* bytes in the pack */
    uint32_t raw;    /* plaintext bytes */
    uint32_t pack;   /* index into cf_index.packs */
    uint8_t comp;    /* CF_COMP_* */
    uint8_t bad;     /* listed damaged by the last check (state/damaged) */
    uint8_t stale;   /* superseded by a sound copy appended later: the map skips it */
    uint8_t pad[1];
} cf_loc;
_Static_assert(sizeof(cf_loc) == 56, "cf_loc is the per-chunk memory cost: keep it compact");

typedef struct cf_pack_rec {
    cf_id id;
    uint64_t size; /* whole pack object; 0 while the pack is being written */
    uint32_t nbase;  /* entries of this pack in the on-disk part of the index */
    uint8_t damaged; /* missing or damaged per the last check (state/damaged) */
} cf_pack_rec;

/* Open addressing over an array whose elements start with a cf_id;
 * slots hold element index + 1 (0 = empty). The id is SHA-256 output, so
 * its first 8 bytes are already a good hash. */
typedef struct cf_idmap {
    uint32_t *slots;
    size_t nslots; /* power of two */
} cf_idmap;

/* The part of a large index kept on disk, sorted by chunk id (dindex.c). */
typedef struct cf_dindex cf_dindex;
typedef struct cf_dbuild cf_dbuild;

/*
 * The index is one numbering of entries over two parts: positions
 * [0, nbase) are the on-disk part (a sorted file read with pread, for
 * repositories past the memory threshold), positions nbase + i the
 * in-memory entries ents[i] (small repositories: all of them; large
 * ones: what this session and index objects newer than the disk file
 * added). Packs are always in memory.
 */
typedef struct cf_index {
    cf_loc *ents;
    size_t n, cap;
    cf_idmap emap;
    cf_pack_rec *packs;
    size_t npacks, packs_cap;
    cf_idmap pmap;
    cf_dindex *disk;        /* NULL: every entry is in memory */
    size_t nbase;           /* entries in disk */
    cf_dbuild *build;       /* while loading past spill_at: entries go to disk */
    size_t spill_at;        /* loading more entries than this builds the disk part (0: never) */
    const cf_damage *dmg;   /* damage record for entries read from disk */
    int discard;            /* loading only validates: entries are not kept */
} cf_index;

void cf_index_init(cf_index *ix);
void cf_index_free(cf_index *ix);
/* Total entries, both parts. */
static inline size_t cf_index_count(const cf_index *ix)
{
    return ix->nbase + ix->n;
}
/* Position of the copy of id a reader should use (a sound one when there
 * is one), or -1. */
ssize_t cf_index_find(const cf_index *ix, const cf_id *id);
/* A hint for a lookup of id soon (stage 0, then 1 a little later). */
void cf_index_prefetch(const cf_index *ix, const cf_id *id, int stage);
/* cf_index_find, and *ok: the copy found is sound (not listed damaged). */
ssize_t cf_index_find_sound(const cf_index *ix, const cf_id *id, int *ok);
/* cf_index_find and the entry found (bad set), in one read of the disk part. */
ssize_t cf_index_find_get(const cf_index *ix, const cf_id *id, cf_loc *out);
/* cf_index_find for n ids sorted ascending (far fewer reads of the disk
 * part than one lookup each); locs (optional) gets each entry found, bad
 * set, as cf_index_find_get. */
void cf_index_find_sorted(const cf_index *ix, const cf_id *ids, size_t n, ssize_t *pos,
                          cf_loc *locs);
/* Copy entry pos out (bad set from the damage record). */
void cf_index_get(const cf_index *ix, size_t pos, cf_loc *out);
/* Adds unless the id is present. Returns 1 added, 0 already there. */
int cf_index_add(cf_index *ix, const cf_loc *loc);
/* As cf_index_add, but a sound copy replaces a damaged one in place
 * (loading committed index objects: nothing is written from the array). */
int cf_index_add_loaded(cf_index *ix, const cf_loc *loc);
ssize_t cf_index_find_pack(const cf_index *ix, const cf_id *pack_id);
/* Find or append a pack; a known size is kept. Returns its number. */
uint32_t cf_index_pack(cf_index *ix, const cf_id *pack_id, uint64_t size);
/* Drop in-memory entries >= n and packs >= npacks (session rollback). */
void cf_index_truncate(cf_index *ix, size_t n, size_t npacks);
/* Entries per pack over both parts (calloc'd, npacks long). */
uint32_t *cf_index_pack_counts(const cf_index *ix);

/* Walk every entry in position order, the disk part read in blocks. */
typedef struct cf_index_iter {
    const cf_index *ix;
    size_t pos;
    cf_loc *buf;
    size_t buf_pos, buf_n;
} cf_index_iter;
void cf_index_iter_init(cf_index_iter *it, const cf_index *ix);
/* 1 with *pos and *out set, 0 at the end, -1 on a read error. */
int cf_index_iter_next(cf_index_iter *it, size_t *pos, cf_loc *out);
void cf_index_iter_free(cf_index_iter *it);

/* ---- On-disk part (dindex.c) ---------------------------------------------- */

/* Entries a loaded index keeps in memory before it moves them to disk:
 * COFFER_INDEX_MEMORY_ENTRIES, else CF_INDEX_MEMORY_DEFAULT. */
#define CF_INDEX_MEMORY_DEFAULT 1000000u
size_t cf_index_memory_entries(void);
/* Load the index of the given (sorted) index object keys into r->idx,
 * which must be empty: from the cached sorted file when it covers a
 * subset of keys and verifies, else from the objects, moving entries to
 * a sorted file on disk past the memory threshold. Objects that fail
 * are skipped (pushed to bad) when bad is not NULL, else fail. */
int cf_index_load_all(cf_repo *r, char **keys, const coffer_object_stat *sts, size_t nkeys,
                      char ***bad, size_t *nbad);
/* Loading: move the in-memory entries to bucket files (those past n0
 * after the rollback mark). */
int cf_dbuild_spill(cf_index *ix, size_t n0);
int cf_dbuild_add(cf_dbuild *b, const cf_loc *l);
void cf_dbuild_mark(cf_dbuild *b);
int cf_dbuild_rollback(cf_dbuild *b);
void cf_dbuild_free(cf_dbuild *b);
/* Position of id's copy on disk (*sound: it is not listed damaged), or -1. */
ssize_t cf_dindex_find(const cf_index *ix, const cf_id *id, int *sound, cf_loc *out);
/* The same for n ids sorted ascending, reading the file in blocks; locs
 * (optional) gets each copy found. */
void cf_dindex_find_sorted(const cf_index *ix, const cf_id *ids, size_t n, ssize_t *pos,
                           uint8_t *sound, cf_loc *locs);
int cf_dindex_read(const cf_dindex *d, size_t pos, size_t n, cf_loc *out);
void cf_dindex_free(cf_dindex *d);

/* Index objects. Parsing appends to ix (rolled back on failure). */
int cf_index_load_object(cf_repo *r, const char *key, cf_index *ix);
/* Write entries [from, ix->n) of ix as one new index object. *key_out
 * (malloc'd) names it; nothing is written when the range is empty. */
int cf_index_write_object(cf_repo *r, const cf_index *ix, size_t from, char **key_out);
/* Check one 52-byte record's fields against a pack size; overhead is
 * what sealing adds to every blob (0, or CF_SEAL_OVERHEAD). */
int cf_entry_valid(const cf_loc *l, uint64_t pack_size, uint32_t overhead);
void cf_entry_encode(uint8_t out[CF_ENTRY_LEN], const cf_loc *l);
void cf_entry_decode(const uint8_t in[CF_ENTRY_LEN], cf_loc *l);

/* Copy a chunk's location and its pack out from under the index lock;
 * -1 when the index does not hold the chunk. */
int cf_repo_lookup(cf_repo *r, const cf_id *id, cf_loc *l, cf_pack_rec *p);

/* ---- Packs ------------------------------------------------------------- */

typedef struct cf_packw cf_packw;

/* Parse "data/pp/<64 hex>"; -1 if key is not a pack key. */
int cf_pack_key_parse(const char *key, cf_id *pack_id);

/* Pack writers (pool in cf_repo). */
cf_packw *cf_packw_new(cf_repo *r);
void cf_packw_free(cf_packw *pw);
/* Compress (outside any lock) and append one blob, opening a pack when
 * none is open; *loc receives where it went. */
/* level: the zstd level wanted for this chunk (0: the repository's), as
 * cf_zstd_level allows it */
int cf_packw_add(cf_packw *pw, const cf_id *id, const void *data, size_t len, int level,
                 cf_loc *loc);
/* Append a blob exactly as stored elsewhere (prune's repacking: sealed
 * blobs are bound to their chunk id, not to a pack, so they move as is). */
int cf_packw_add_stored(cf_packw *pw, const cf_loc *src, const uint8_t *blob, cf_loc *loc);
/* The key and id of the pack being written ("" when none). */
const char *cf_packw_key(const cf_packw *pw);
int cf_packw_is_open(const cf_packw *pw);
/* The open pack reached the target size: close it. */
int cf_packw_full(const cf_packw *pw);
int cf_packw_close(cf_packw *pw);  /* write the trailer table, commit */
void cf_packw_abort(cf_packw *pw); /* discard the open pack, if any */

/* Read and validate the trailer table of a pack of known size. Entries are
 * in offset order, pack numbers unset. */
int cf_pack_read_table(cf_repo *r, const char *key, uint64_t size, cf_loc **ents, size_t *n);
/* Bytes of a pack that are not blobs: header, table, tail. */
uint64_t cf_pack_overhead(const cf_repo *r, uint64_t nblobs);

/* Decompress (CF_COMP_ZSTD) or copy one blob into out and check its id.
 * Errors name the chunk and the pack. */
/* cf_blob_open that may overwrite blob (decrypts in place). */
int cf_blob_open_inplace(cf_repo *r, const cf_loc *l, const char *pack_key, uint8_t *blob,
                         cf_buf *out);
int cf_blob_open(cf_repo *r, const cf_loc *l, const char *pack_key, const uint8_t *blob,
                 cf_buf *out);
/* Check that plaintext hashes to l->id (and has l->raw bytes). */
int cf_blob_verify(cf_repo *r, const cf_loc *l, const char *pack_key, const uint8_t *data,
                   size_t len);

/* ---- The repository ----------------------------------------------------- */

struct cf_repo {
    cf_store *st;
    _Atomic(cf_sets_ahead *) sets_ahead; /* a listing of sets/ on its way, or NULL */
    EVP_MD *sha;
    cf_crypt *crypt;              /* NULL: unencrypted */
    int scheme;                   /* CF_ENC_* of every object but config/keys */
    uint32_t seal_overhead;       /* per blob: 0 or CF_SEAL_OVERHEAD */
    char key_id[2 * CF_ID_LEN + 1]; /* keys/<id> that opened it */
    char id_hex[2 * CF_ID_LEN + 1];
    cf_cdc cdc;
    int zstd_level;
    uint64_t pack_size;

    /* Index: read-mostly, so a rwlock; writers hold it only to insert. */
    pthread_rwlock_t lock;
    cf_index idx;
    size_t ents_open, packs_open; /* index size at open: abort rolls back to it */
    size_t ents_indexed;          /* entries covered by an index object */

    /* Pack writer pool and the session's list of written objects. */
    pthread_mutex_t wlock;
    cf_packw **writers; /* every writer */
    size_t nwriters;
    cf_packw **idle; /* writers not checked out by a thread */
    size_t nidle;
    char **sess_packs, **sess_index;
    size_t nsess_packs, nsess_index;

    atomic_int failed; /* a write failed: only abort is allowed */
    char *fail_msg;    /* the first failure's message (under wlock) */

    cf_damage dmg; /* state/damaged as read at open */

    char **bad_index; /* index objects skipped at open (CF_REPO_OPEN_SKIP_BAD_INDEX) */
    size_t nbad_index;

    _Atomic uint64_t chunks_new, chunks_dup, bytes_new_raw, bytes_new_stored, bytes_dup,
        packs_written;
    _Atomic uint64_t bytes_read, reads;

    char *cache_dir; /* local cache of index objects and manifests (repo/cache.c), or NULL */
    int no_cache;    /* opened with CF_REPO_OPEN_NO_CACHE */

    /* Packs published in the background (cf_repo_async_commits): closed
     * packs wait in cq for one of cq_threads committers. Guarded by cq_mu. */
    pthread_mutex_t cq_mu;
    pthread_cond_t cq_cv;
    struct cf_pcommit {
        void *w;
        char key[CF_PACK_KEY_LEN + 1];
        uint32_t pno;
        uint64_t size;
    } cq[4];
    size_t cq_head, cq_n, cq_running;
    int cq_stop, cq_nthreads;
    pthread_t cq_th[4];
};

/* Publish a closed pack (its store writer w, which this takes over):
 * at once, or queued for a committer after cf_repo_async_commits. */
int cf_repo_commit_pack(cf_repo *r, void *w, const char *key, uint32_t pno, uint64_t size);

/* ---- Local cache of a remote repository (repo/cache.c) ----------------- */

/* Choose and create the cache directory (after the config is read). */
void cf_repo_cache_setup(cf_repo *r);
/* A file of the repository's cache directory (malloc'd; the directory
 * is created), or NULL when there is no cache. */
char *cf_repo_cache_file(cf_repo *r, const char *name);
/* Where key's copy lives (malloc'd), or NULL when it is not cached. */
char *cf_repo_cache_path(cf_repo *r, int type, const char *key);
/* Open the copy at path if it matches its trailer (else remove it): an
 * fd at its start, or -1. */
int cf_repo_cache_open(cf_repo *r, const char *path);
/* 1 if rd reads a cached copy rather than the store. */
int cf_objr_from_cache(const cf_objr *rd);
/* A new temporary file beside path (fd, *tmp malloc'd), or -1. */
int cf_repo_cache_tee(const char *path, char **tmp);

/* 1 if the damage record names the pack or the chunk. */
int cf_damage_has_pack(const cf_damage *d, const cf_id *pack);
int cf_damage_has_chunk(const cf_damage *d, const cf_id *chunk, const cf_id *pack);
void cf_repo_damage_load(cf_repo *r); /* at open, before the index, when a stat found it */

/* Record a committed object of this session (for abort). Locks wlock. */
void cf_repo_sess_add(cf_repo *r, int is_pack, const char *key);
/* Set a pack's final size once committed. */
void cf_repo_pack_committed(cf_repo *r, uint32_t pack, uint64_t size);

/* Every index object key with its listing's size, mtime and etag,
 * sorted by key. */
int cf_repo_list_index_stat(cf_repo *r, char ***keys, coffer_object_stat **sts, size_t *n);
/* List the index objects and load them into r->idx (empty), as an open
 * does; skip_bad: a damaged object is listed in r->bad_index and skipped
 * rather than failing the load. */
int cf_repo_load_index(cf_repo *r, int skip_bad);
/* Every index object key, sorted so loading is deterministic. */
int cf_repo_list_index(cf_repo *r, char ***keys, size_t *n);
/* Keys under prefix with one more path segment (e.g. "keys/<id>"), sorted. */
int cf_repo_list_flat(cf_store *st, const char *prefix, char ***keys, size_t *n);

/* Small string list helpers. */
void cf_strv_push(char ***v, size_t *n, const char *s);
void cf_strv_free(char **v, size_t n);

#endif
