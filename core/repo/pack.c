/*
 * Packs: many chunk blobs in one storage object, so a repository holds
 * thousands of objects rather than millions. A pack is streamed to the
 * store as blobs arrive (only its trailer table is kept in memory) and
 * ends with that table, which lets cf_repo_rebuild_index recover the
 * index from the packs alone.
 *
 * Layout: envelope header (type pack, flags 0) | blobs | table (52 bytes
 * per blob) | table_len u32 | count u32 | SHA-256 of all preceding bytes.
 *
 * Encrypted (scheme 1): each blob is sealed alone (nonce | ciphertext |
 * tag, the chunk id as associated data), so a ranged read of one chunk
 * still works and prune can move a blob to another pack unopened; the
 * table is sealed as one message bound to the pack id, which hides chunk
 * sizes and compression from the storage.
 */
#include <stdlib.h>
#include <string.h>

#include "repo/repo_int.h"

/* Bounds table_len (a u32) and the memory a pack's table takes. */
#define PACK_MAX_ENTRIES (1u << 20)

struct cf_packw {
    cf_repo *r;
    void *w; /* store writer; NULL while no pack is open */
    cf_id id;
    char key[CF_PACK_KEY_LEN + 1];
    uint32_t pno; /* number in r->idx.packs */
    uint64_t size;
    EVP_MD_CTX *sha;
    uint8_t *table; /* encoded entries */
    size_t ntab, tab_cap;
    ZSTD_CCtx *cctx; /* one per writer: compression runs without locks */
    cf_buf cbuf, sbuf; /* compressed, sealed */
};

void cf_pack_key(const cf_id *pack_id, char out[CF_PACK_KEY_LEN + 1])
{
    char hex[2 * CF_ID_LEN + 1];
    cf_hex(pack_id->b, CF_ID_LEN, hex);
    snprintf(out, CF_PACK_KEY_LEN + 1, "data/%.2s/%s", hex, hex);
}

int cf_pack_key_parse(const char *key, cf_id *pack_id)
{
    if (strlen(key) != CF_PACK_KEY_LEN || strncmp(key, "data/", 5) != 0 || key[7] != '/')
        return -1;
    if (cf_unhex(key + 8, pack_id->b, CF_ID_LEN) != 0)
        return -1;
    char hex[2 * CF_ID_LEN + 1];
    cf_hex(pack_id->b, CF_ID_LEN, hex);
    /* the directory must be the id's first byte, in lower case */
    return strncmp(key + 5, hex, 2) == 0 && strcmp(key + 8, hex) == 0 ? 0 : -1;
}

cf_packw *cf_packw_new(cf_repo *r)
{
    cf_packw *pw = cf_calloc(1, sizeof *pw);
    pw->r = r;
    pw->sha = EVP_MD_CTX_new();
    pw->cctx = ZSTD_createCCtx();
    if (!pw->sha || !pw->cctx)
        abort(); /* allocation failure: same policy as cf_malloc */
    ZSTD_CCtx_setParameter(pw->cctx, ZSTD_c_compressionLevel, r->zstd_level);
    return pw;
}

static void packw_reset(cf_packw *pw)
{
    pw->w = NULL;
    pw->size = 0;
    pw->ntab = 0;
    pw->key[0] = 0;
}

void cf_packw_abort(cf_packw *pw)
{
    if (pw->w)
        cf_store_abort(pw->r->st, pw->w);
    packw_reset(pw);
}

void cf_packw_free(cf_packw *pw)
{
    if (!pw)
        return;
    cf_packw_abort(pw);
    EVP_MD_CTX_free(pw->sha);
    ZSTD_freeCCtx(pw->cctx);
    cf_buf_free(&pw->cbuf);
    cf_buf_free(&pw->sbuf);
    free(pw->table);
    free(pw);
}

int cf_packw_is_open(const cf_packw *pw)
{
    return pw->w != NULL;
}

int cf_packw_full(const cf_packw *pw)
{
    return pw->w && (pw->size >= pw->r->pack_size || pw->ntab >= PACK_MAX_ENTRIES);
}

/* Write to the open pack; on failure the pack is discarded. */
static int packw_emit(cf_packw *pw, const void *buf, size_t len)
{
    double t = cf_now();
    int rc = len ? cf_store_write(pw->r->st, pw->w, buf, len) : 0;
    cf_phase_add(CF_PHASE_STORE, t);
    if (rc != 0) {
        cf_error_prefix("pack %s", pw->key);
        cf_packw_abort(pw);
        return -1;
    }
    EVP_DigestUpdate(pw->sha, buf, len);
    pw->size += len;
    return 0;
}

static int packw_open(cf_packw *pw)
{
    cf_repo *r = pw->r;
    cf_random(pw->id.b, CF_ID_LEN);
    cf_pack_key(&pw->id, pw->key);
    if (!EVP_DigestInit_ex(pw->sha, r->sha, NULL))
        return cf_fail("pack %s: cannot initialise SHA-256", pw->key);
    /* The size a pack ends near: it closes once past pack_size, so at
     * most one more blob (a chunk of max_size, sealed) and the table. A
     * store may size its buffer by it (s3: one PUT instead of a
     * multipart upload of a full part and a small one). */
    uint64_t hint = r->pack_size + r->cdc.p.max_size + r->seal_overhead + (64u << 10);
    void *w;
    if (cf_store_writer_open(r->st, pw->key, COFFER_WRITE_PRIVATE, hint, &w) != 0) {
        cf_error_prefix("pack %s", pw->key);
        packw_reset(pw);
        return -1;
    }
    pw->w = w;
    pw->size = 0;
    pw->ntab = 0;
    pthread_rwlock_wrlock(&r->lock);
    pw->pno = cf_index_pack(&r->idx, &pw->id, 0);
    pthread_rwlock_unlock(&r->lock);
    uint8_t hdr[CF_ENV_HDR_LEN];
    cf_env_header(hdr, CF_OBJ_PACK, 0, r->scheme);
    return packw_emit(pw, hdr, sizeof hdr);
}

const char *cf_packw_key(const cf_packw *pw)
{
    return pw->key;
}

static void packw_table_add(cf_packw *pw, const cf_loc *loc)
{
    if (pw->ntab == pw->tab_cap) {
        pw->tab_cap = pw->tab_cap ? pw->tab_cap * 2 : 64;
        pw->table = cf_realloc(pw->table, pw->tab_cap * CF_ENTRY_LEN);
    }
    cf_entry_encode(pw->table + pw->ntab * CF_ENTRY_LEN, loc);
    pw->ntab++;
}

int cf_packw_add_stored(cf_packw *pw, const cf_loc *src, const uint8_t *blob, cf_loc *loc)
{
    *loc = *src;
    loc->bad = 0; /* copied after verification */
    if (!pw->w && packw_open(pw) != 0)
        return -1;
    loc->pack = pw->pno;
    loc->offset = pw->size;
    if (packw_emit(pw, blob, src->stored) != 0)
        return -1;
    packw_table_add(pw, loc);
    return 0;
}

int cf_packw_add(cf_packw *pw, const cf_id *id, const void *data, size_t len, int level,
                 cf_loc *loc)
{
    memset(loc, 0, sizeof *loc);
    loc->id = *id;
    loc->raw = (uint32_t)len;
    loc->comp = CF_COMP_NONE;
    const void *blob = data;
    size_t stored = len;
    double t = cf_now();
    if (len > 0) {
        size_t bound = ZSTD_compressBound(len);
        pw->cbuf.len = 0;
        cf_buf_reserve(&pw->cbuf, bound);
        int lv = cf_zstd_level(pw->r->zstd_level, level);
        if (lv != pw->r->zstd_level)
            ZSTD_CCtx_setParameter(pw->cctx, ZSTD_c_compressionLevel, lv);
        size_t cs = ZSTD_compress2(pw->cctx, pw->cbuf.data, bound, data, len);
        if (lv != pw->r->zstd_level)
            ZSTD_CCtx_setParameter(pw->cctx, ZSTD_c_compressionLevel, pw->r->zstd_level);
        /* Keep whichever is smaller: incompressible data stays raw. */
        if (!ZSTD_isError(cs) && cs < len) {
            blob = pw->cbuf.data;
            stored = cs;
            loc->comp = CF_COMP_ZSTD;
        }
    }
    if (pw->r->crypt) {
        cf_seal(pw->r->crypt, id->b, CF_ID_LEN, blob, stored, &pw->sbuf);
        blob = pw->sbuf.data;
        stored = pw->sbuf.len;
    }
    cf_phase_add(CF_PHASE_PACK, t);
    if (!pw->w && packw_open(pw) != 0)
        return -1;
    loc->pack = pw->pno;
    loc->offset = pw->size;
    loc->stored = (uint32_t)stored;
    if (packw_emit(pw, blob, stored) != 0)
        return -1;
    packw_table_add(pw, loc);
    return 0;
}

int cf_packw_close(cf_packw *pw)
{
    if (!pw->w)
        return 0;
    cf_repo *r = pw->r;
    size_t tlen = pw->ntab * CF_ENTRY_LEN;
    const uint8_t *table = pw->table;
    if (r->crypt) {
        cf_seal(r->crypt, pw->id.b, CF_ID_LEN, pw->table, tlen, &pw->sbuf);
        table = pw->sbuf.data;
        tlen = pw->sbuf.len;
    }
    if (packw_emit(pw, table, tlen) != 0)
        return -1;
    uint8_t tail[8];
    cf_put32(tail, (uint32_t)tlen);
    cf_put32(tail + 4, (uint32_t)pw->ntab);
    if (packw_emit(pw, tail, sizeof tail) != 0)
        return -1;
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_DigestFinal_ex(pw->sha, md, &mdlen);
    if (packw_emit(pw, md, CF_ENV_TRAILER_LEN) != 0)
        return -1;
    void *w = pw->w;
    pw->w = NULL; /* commit frees the store writer, success or not */
    int rc = cf_repo_commit_pack(r, w, pw->key, pw->pno, pw->size);
    packw_reset(pw);
    return rc;
}

/* ---- Reading ------------------------------------------------------------ */

static int get_exact(cf_store *st, const char *key, uint64_t off, uint64_t len, cf_buf *b)
{
    if (cf_store_get_range(st, key, off, len, b) != 0)
        return -1;
    if (b->len != len)
        return cf_fail("pack %s: short read at offset %llu (%zu of %llu bytes)", key,
                       (unsigned long long)off, b->len, (unsigned long long)len);
    return 0;
}

uint64_t cf_pack_overhead(const cf_repo *r, uint64_t nblobs)
{
    return CF_ENV_HDR_LEN + CF_PACK_TAIL_LEN + nblobs * CF_ENTRY_LEN + (r->crypt ? CF_SEAL_OVERHEAD : 0);
}

int cf_pack_read_table(cf_repo *r, const char *key, uint64_t size, cf_loc **ents, size_t *n)
{
    *ents = NULL;
    *n = 0;
    cf_store *st = r->st;
    uint32_t seal = r->crypt ? CF_SEAL_OVERHEAD : 0;
    if (size < CF_ENV_HDR_LEN + CF_PACK_TAIL_LEN + seal)
        return cf_fail("pack %s: truncated (%llu bytes)", key, (unsigned long long)size);
    cf_buf b = {0}, plain = {0};
    int rc = -1;
    if (get_exact(st, key, 0, CF_ENV_HDR_LEN, &b) != 0)
        goto out;
    unsigned flags;
    if (cf_env_check(b.data, CF_OBJ_PACK, key, &flags, r->scheme) != 0)
        goto out;
    if (flags != 0) {
        cf_fail("pack %s: unexpected flags 0x%02x", key, flags);
        goto out;
    }
    if (get_exact(st, key, size - CF_PACK_TAIL_LEN, CF_PACK_TAIL_LEN, &b) != 0)
        goto out;
    uint32_t tlen = cf_get32(b.data), count = cf_get32(b.data + 4);
    if ((uint64_t)count * CF_ENTRY_LEN + seal != tlen ||
        (uint64_t)tlen + CF_ENV_HDR_LEN + CF_PACK_TAIL_LEN > size) {
        cf_fail("pack %s: corrupt trailer (table of %u bytes, %u entries, pack of %llu bytes)", key,
                tlen, count, (unsigned long long)size);
        goto out;
    }
    uint64_t tstart = size - CF_PACK_TAIL_LEN - tlen;
    if (tlen && get_exact(st, key, tstart, tlen, &b) != 0)
        goto out;
    if (r->crypt) {
        cf_id pid;
        if (cf_pack_key_parse(key, &pid) != 0 ||
            cf_unseal(r->crypt, pid.b, CF_ID_LEN, b.data, tlen, &plain) != 0) {
            cf_fail("pack %s: corrupt trailer table: authentication failed (damaged or tampered "
                    "with)",
                    key);
            goto out;
        }
        cf_buf tmp = b;
        b = plain;
        plain = tmp;
    }
    cf_loc *e = cf_malloc((count ? count : 1) * sizeof *e);
    /* Blobs are contiguous from the header to the table: checking that
     * catches most trailer damage even without reading the whole pack. */
    uint64_t expect = CF_ENV_HDR_LEN;
    for (uint32_t i = 0; i < count; i++) {
        cf_entry_decode(b.data + (size_t)i * CF_ENTRY_LEN, &e[i]);
        if (e[i].offset != expect || !cf_entry_valid(&e[i], size, seal)) {
            char hex[2 * CF_ID_LEN + 1];
            cf_id_hex(&e[i].id, hex);
            cf_fail("pack %s: corrupt trailer table (entry %u, chunk %s)", key, i, hex);
            free(e);
            goto out;
        }
        expect += e[i].stored;
    }
    if (expect != tstart) {
        cf_fail("pack %s: corrupt trailer table (blobs end at %llu, table starts at %llu)", key,
                (unsigned long long)expect, (unsigned long long)tstart);
        free(e);
        goto out;
    }
    *ents = e;
    *n = count;
    rc = 0;
out:
    cf_buf_free(&b);
    cf_buf_free(&plain);
    return rc;
}

int cf_blob_verify(cf_repo *r, const cf_loc *l, const char *pack_key, const uint8_t *data,
                   size_t len)
{
    char hex[2 * CF_ID_LEN + 1];
    if (len != l->raw) {
        cf_id_hex(&l->id, hex);
        return cf_fail("chunk %s in pack %s: size mismatch (%zu bytes, expected %u)", hex, pack_key,
                       len, l->raw);
    }
    cf_id got;
    cf_repo_hash(r, data, len, &got);
    if (memcmp(got.b, l->id.b, CF_ID_LEN) != 0) {
        cf_id_hex(&l->id, hex);
        return cf_fail("chunk %s in pack %s: hash mismatch", hex, pack_key);
    }
    return 0;
}

/* One decompression context per thread, kept: ZSTD_decompress would
 * allocate and initialise one for every chunk. */
static pthread_key_t dctx_key;
static pthread_once_t dctx_once = PTHREAD_ONCE_INIT;

static void dctx_free(void *p)
{
    ZSTD_freeDCtx(p);
}

static int blob_open(cf_repo *r, const cf_loc *l, const char *pack_key, const uint8_t *blob,
                     uint8_t *inplace, cf_buf *out, cf_buf *dec);

int cf_blob_open_inplace(cf_repo *r, const cf_loc *l, const char *pack_key, uint8_t *blob,
                         cf_buf *out)
{
    return blob_open(r, l, pack_key, blob, blob, out, NULL);
}

/* And one buffer for decrypted, still compressed blobs: a fresh large
 * allocation for every chunk costs a page fault per page. */
static pthread_key_t scratch_key;

static void scratch_free(void *p)
{
    cf_buf_free(p);
    free(p);
}

static void dctx_init(void)
{
    pthread_key_create(&dctx_key, dctx_free);
    pthread_key_create(&scratch_key, scratch_free);
}

static cf_buf *thread_scratch(void)
{
    pthread_once(&dctx_once, dctx_init);
    cf_buf *b = pthread_getspecific(scratch_key);
    if (!b) {
        b = cf_calloc(1, sizeof *b);
        pthread_setspecific(scratch_key, b);
    }
    b->len = 0;
    return b;
}

/* A scratch buffer larger than this is not kept. */
#define SCRATCH_KEEP (16u << 20)

static ZSTD_DCtx *thread_dctx(void)
{
    pthread_once(&dctx_once, dctx_init);
    ZSTD_DCtx *d = pthread_getspecific(dctx_key);
    if (!d) {
        if (!(d = ZSTD_createDCtx()))
            abort(); /* allocation failure: same policy as cf_malloc */
        pthread_setspecific(dctx_key, d);
    }
    return d;
}

/* cf_blob_open with dec, a scratch buffer for the decrypted blob; with
 * inplace, blob itself is decrypted (and dec unused). */
static int blob_open(cf_repo *r, const cf_loc *l, const char *pack_key, const uint8_t *blob,
                     uint8_t *inplace, cf_buf *out, cf_buf *dec)
{
    out->len = 0;
    size_t stored = l->stored;
    if (r->crypt && inplace && l->comp != CF_COMP_NONE) {
        if (cf_unseal_inplace(r->crypt, l->id.b, CF_ID_LEN, inplace, stored) != 0) {
            char hex[2 * CF_ID_LEN + 1];
            cf_id_hex(&l->id, hex);
            return cf_fail("chunk %s in pack %s: authentication failed (damaged or tampered with)",
                           hex, pack_key);
        }
        blob = inplace + CF_BLOB_NONCE_LEN;
        stored -= CF_SEAL_OVERHEAD;
    } else if (r->crypt) {
        /* Authenticated before anything else looks at the bytes. */
        cf_buf *dst = l->comp == CF_COMP_NONE ? out : dec;
        if (cf_unseal(r->crypt, l->id.b, CF_ID_LEN, blob, stored, dst) != 0) {
            char hex[2 * CF_ID_LEN + 1];
            cf_id_hex(&l->id, hex);
            out->len = 0;
            return cf_fail("chunk %s in pack %s: authentication failed (damaged or tampered with)",
                           hex, pack_key);
        }
        if (l->comp == CF_COMP_NONE)
            return cf_blob_verify(r, l, pack_key, out->data, out->len);
        blob = dec->data;
        stored = dec->len;
    }
    if (l->comp == CF_COMP_NONE) {
        cf_buf_append(out, blob, stored);
    } else {
        /* raw comes from a table that may be damaged: before reserving
         * that much, the frame must declare the same size (coffer's frames
         * do), or raw must be a size a chunk can have. */
        unsigned long long fcs = ZSTD_getFrameContentSize(blob, stored);
        if (fcs == ZSTD_CONTENTSIZE_ERROR ||
            (fcs == ZSTD_CONTENTSIZE_UNKNOWN ? l->raw > CF_CHUNK_MAX : fcs != l->raw)) {
            char hex[2 * CF_ID_LEN + 1];
            cf_id_hex(&l->id, hex);
            return cf_fail("chunk %s in pack %s: cannot decompress: the frame does not hold %u "
                           "bytes",
                           hex, pack_key, l->raw);
        }
        cf_buf_reserve(out, l->raw);
        size_t n = ZSTD_decompressDCtx(thread_dctx(), out->data, l->raw, blob, stored);
        if (ZSTD_isError(n)) {
            char hex[2 * CF_ID_LEN + 1];
            cf_id_hex(&l->id, hex);
            return cf_fail("chunk %s in pack %s: cannot decompress: %s", hex, pack_key,
                           ZSTD_getErrorName(n));
        }
        out->len = n;
    }
    return cf_blob_verify(r, l, pack_key, out->data, out->len);
}

int cf_blob_open(cf_repo *r, const cf_loc *l, const char *pack_key, const uint8_t *blob,
                 cf_buf *out)
{
    cf_buf *dec = thread_scratch();
    int rc = blob_open(r, l, pack_key, blob, NULL, out, dec);
    dec->len = 0;
    if (dec->cap > SCRATCH_KEEP)
        cf_buf_free(dec);
    return rc;
}
