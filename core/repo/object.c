/*
 * The envelope every repository object shares: 8-byte header, body, and a
 * SHA-256 trailer over all preceding bytes, so any object can be checked
 * on its own. Writer and reader stream (manifests can be large): the body
 * goes through ZSTD_compressStream2 / ZSTD_decompressStream and the reader
 * holds back the last 32 bytes it has seen, since the trailer is only
 * known to be the trailer once the store reports the end of the object.
 *
 * In an encrypted repository (scheme 1) the compressed body is then cut
 * into 64 KiB segments sealed with libsodium's secretstream, so a reader
 * only ever hands out authenticated bytes, and truncation, reordering or
 * splicing of segments is detected. The associated data of every segment
 * is the 8-byte header followed by the object's key: an object cannot be
 * passed off under another name or type.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "repo/repo_int.h"

_Static_assert(CF_SS_HDR_LEN == crypto_secretstream_xchacha20poly1305_HEADERBYTES, "header");
_Static_assert(CF_SS_ABYTES == crypto_secretstream_xchacha20poly1305_ABYTES, "abytes");

void cf_env_header(uint8_t out[CF_ENV_HDR_LEN], int type, unsigned flags, int scheme)
{
    memcpy(out, CF_ENV_MAGIC, 4);
    out[4] = CF_FORMAT_VERSION;
    out[5] = (uint8_t)type;
    out[6] = (uint8_t)flags;
    out[7] = (uint8_t)scheme;
}

const char *cf_obj_type_name(int type)
{
    switch (type) {
    case CF_OBJ_CONFIG:
        return "config";
    case CF_OBJ_PACK:
        return "pack";
    case CF_OBJ_INDEX:
        return "index";
    case CF_OBJ_MANIFEST:
        return "manifest";
    case CF_OBJ_KEY:
        return "key";
    case CF_OBJ_PROOF:
        return "proof";
    case CF_OBJ_STATE:
        return "state";
    default:
        return "unknown";
    }
}

int cf_env_check(const uint8_t h[CF_ENV_HDR_LEN], int type, const char *key, unsigned *flags,
                 int scheme)
{
    if (memcmp(h, CF_ENV_MAGIC, 4) != 0)
        return cf_fail("%s: not a coffer repository object (bad magic)", key);
    if (h[4] != CF_FORMAT_VERSION)
        return cf_fail("%s: object format version %u is not supported (this coffer reads version %u)",
                       key, h[4], CF_FORMAT_VERSION);
    if (h[5] != type)
        return cf_fail("%s: object is a %s (type %u), expected a %s", key, cf_obj_type_name(h[5]),
                       h[5], cf_obj_type_name(type));
    /* Encryption goes before flags: an encrypted object from a later
     * version must be refused as such, whatever flags it carries. */
    if (h[7] != CF_ENC_NONE && h[7] != CF_ENC_XCHACHA)
        return cf_fail("%s: object uses encryption scheme %u, which this version of coffer cannot "
                       "read",
                       key, h[7]);
    /* Never accept a plaintext object into an encrypted repository: whoever
     * can write to the storage could otherwise inject index entries or
     * manifests without the key. */
    if (h[7] != scheme && scheme == CF_ENC_NONE)
        return cf_fail("%s: object is encrypted (scheme %u) but this %s must not be", key, h[7],
                       type == CF_OBJ_CONFIG || type == CF_OBJ_KEY ? "object"
                                                                   : "repository is unencrypted");
    if (h[7] != scheme)
        return cf_fail("%s: object is not encrypted, but the repository is: refusing it (coffer "
                       "never writes such an object; it was put there by something else)",
                       key);
    if (h[6] & ~CF_ENV_FLAGS_KNOWN)
        return cf_fail("%s: object has unknown flags 0x%02x (written by a newer coffer?)", key, h[6]);
    if (flags)
        *flags = h[6];
    return 0;
}

/* ---- Writer ------------------------------------------------------------- */

struct cf_objw {
    cf_store *st;
    void *w;
    char *key;
    EVP_MD_CTX *sha;
    ZSTD_CCtx *cctx; /* NULL: body stored as is */
    int level;
    uint8_t *out;
    size_t out_cap;
    int err;
    /* encryption (cr != NULL): plaintext segment being filled, sealed */
    const cf_crypt *cr;
    crypto_secretstream_xchacha20poly1305_state ss;
    uint8_t *seg, *sealed;
    size_t seg_len;
    uint8_t *ad;
    size_t adlen;
    /* a copy for the local cache (repo/cache.c), renamed to tee_path once
     * the store has committed the object; -1: none */
    int tee_fd;
    char *tee_tmp, *tee_path;
    uint8_t *tee_pending; /* bytes written while opening, before the copy exists */
    size_t tee_npending;
    int pending_on;
};

static void objw_tee_end(cf_objw *w, int keep)
{
    if (w->tee_fd < 0)
        return;
    int ok = close(w->tee_fd) == 0 && keep && rename(w->tee_tmp, w->tee_path) == 0;
    if (!ok)
        unlink(w->tee_tmp);
    w->tee_fd = -1;
}

static void objw_tee(cf_objw *w, const void *buf, size_t len)
{
    if (w->tee_fd >= 0 && cf_write_all(w->tee_fd, buf, len) != 0)
        objw_tee_end(w, 0); /* a full cache disk only costs the copy */
}

static void objw_free(cf_objw *w)
{
    objw_tee_end(w, 0);
    free(w->tee_tmp);
    free(w->tee_path);
    free(w->tee_pending);
    if (w->w)
        cf_store_abort(w->st, w->w);
    EVP_MD_CTX_free(w->sha);
    ZSTD_freeCCtx(w->cctx);
    free(w->out);
    free(w->key);
    if (w->seg)
        sodium_memzero(w->seg, CF_SEG_LEN);
    sodium_memzero(&w->ss, sizeof w->ss);
    free(w->seg);
    free(w->sealed);
    free(w->ad);
    free(w);
}

/* Raw bytes to the store (and the trailer hash). */
static int objw_raw(cf_objw *w, const void *buf, size_t len)
{
    if (len == 0)
        return 0;
    if (cf_store_write(w->st, w->w, buf, len) != 0) {
        w->err = 1;
        cf_error_prefix("%s", w->key);
        return -1;
    }
    EVP_DigestUpdate(w->sha, buf, len);
    if (w->pending_on) {
        w->tee_pending = cf_realloc(w->tee_pending, w->tee_npending + len);
        memcpy(w->tee_pending + w->tee_npending, buf, len);
        w->tee_npending += len;
    }
    objw_tee(w, buf, len);
    return 0;
}

static int objw_push(cf_objw *w, unsigned char tag)
{
    unsigned long long clen = 0;
    crypto_secretstream_xchacha20poly1305_push(&w->ss, w->sealed, &clen, w->seg, w->seg_len,
                                               w->ad, w->adlen, tag);
    w->seg_len = 0;
    return objw_raw(w, w->sealed, (size_t)clen);
}

/* Body bytes (after compression): sealed in segments when encrypted. A
 * full segment is pushed only once more bytes arrive, so the final one
 * (tagged FINAL at commit) is never empty unless the body is. */
static int objw_emit(cf_objw *w, const void *buf, size_t len)
{
    if (!w->cr)
        return objw_raw(w, buf, len);
    const uint8_t *p = buf;
    while (len > 0) {
        if (w->seg_len == CF_SEG_LEN &&
            objw_push(w, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE) != 0)
            return -1;
        size_t n = CF_SEG_LEN - w->seg_len < len ? CF_SEG_LEN - w->seg_len : len;
        memcpy(w->seg + w->seg_len, p, n);
        w->seg_len += n;
        p += n;
        len -= n;
    }
    return 0;
}

int cf_objw_open_raw(cf_store *st, const EVP_MD *md, const cf_crypt *cr, int level, int type,
                     const char *key, uint32_t wflags, int compress, cf_objw **out)
{
    cf_objw *w = cf_calloc(1, sizeof *w);
    w->tee_fd = -1;
    w->pending_on = 1;
    w->st = st;
    w->key = cf_strdup(key);
    w->cr = cr;
    w->sha = EVP_MD_CTX_new();
    if (!w->sha || !EVP_DigestInit_ex(w->sha, md, NULL)) {
        objw_free(w);
        return cf_fail("%s: cannot initialise SHA-256", key);
    }
    if (compress) {
        w->cctx = ZSTD_createCCtx();
        w->level = level;
        w->out_cap = ZSTD_CStreamOutSize();
        w->out = cf_malloc(w->out_cap);
        if (!w->cctx || ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level))) {
            objw_free(w);
            return cf_fail("%s: cannot initialise zstd", key);
        }
    }
    if (cf_store_writer_open(st, key, wflags, 0, &w->w) != 0) {
        w->w = NULL;
        objw_free(w);
        return -1;
    }
    uint8_t hdr[CF_ENV_HDR_LEN];
    cf_env_header(hdr, type, compress ? CF_ENV_FLAG_ZSTD : 0, cr ? CF_ENC_XCHACHA : CF_ENC_NONE);
    if (objw_raw(w, hdr, sizeof hdr) != 0) {
        objw_free(w);
        return -1;
    }
    if (cr) {
        size_t kl = strlen(key);
        w->adlen = CF_ENV_HDR_LEN + kl;
        w->ad = cf_malloc(w->adlen);
        memcpy(w->ad, hdr, CF_ENV_HDR_LEN);
        memcpy(w->ad + CF_ENV_HDR_LEN, key, kl);
        w->seg = cf_malloc(CF_SEG_LEN);
        w->sealed = cf_malloc(CF_SEG_LEN + CF_SS_ABYTES);
        uint8_t sh[CF_SS_HDR_LEN];
        crypto_secretstream_xchacha20poly1305_init_push(&w->ss, sh, cr->enc);
        if (objw_raw(w, sh, sizeof sh) != 0) {
            objw_free(w);
            return -1;
        }
    }
    w->pending_on = 0; /* the header, kept for cf_repo_objw_open's copy */
    *out = w;
    return 0;
}

/* The config and key objects stay readable without the master key (they
 * are what leads to it); everything else follows the repository. */
static const cf_crypt *obj_crypt(const cf_repo *r, int type)
{
    return type == CF_OBJ_CONFIG || type == CF_OBJ_KEY ? NULL : r->crypt;
}

int cf_repo_objw_open(cf_repo *r, int type, const char *key, cf_objw **w)
{
    if (cf_objw_open_raw(r->st, r->sha, obj_crypt(r, type), r->zstd_level, type, key,
                         COFFER_WRITE_PRIVATE, 1, w) != 0)
        return -1;
    char *cached = cf_repo_cache_path(r, type, key);
    if (cached) {
        /* what is written so far (the header) goes to the copy too */
        (*w)->tee_fd = cf_repo_cache_tee(cached, &(*w)->tee_tmp);
        if ((*w)->tee_fd >= 0) {
            (*w)->tee_path = cached;
            cached = NULL;
            if ((*w)->tee_pending)
                objw_tee(*w, (*w)->tee_pending, (*w)->tee_npending);
        }
    }
    free(cached);
    free((*w)->tee_pending);
    (*w)->tee_pending = NULL;
    return 0;
}

void cf_repo_objw_manifest(cf_objw *w, int workers)
{
    if (!w->cctx)
        return;
    int lv = cf_zstd_level(w->level, 1);
    if (lv != w->level)
        ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, lv);
    if (workers < 2)
        return;
    /* 2 MiB jobs: the window of the default levels; memory stays a few
     * jobs' worth, whatever the size of the body. A libzstd built
     * without threads refuses the parameter: then it is one thread. */
    if (!ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_nbWorkers, workers)))
        ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_jobSize, 2 << 20);
}

int cf_repo_objw_write(cf_objw *w, const void *buf, size_t len)
{
    if (w->err)
        return cf_fail("%s: write after an earlier error", w->key);
    if (!w->cctx)
        return objw_emit(w, buf, len);
    ZSTD_inBuffer in = {buf, len, 0};
    while (in.pos < in.size) {
        ZSTD_outBuffer ob = {w->out, w->out_cap, 0};
        size_t rc = ZSTD_compressStream2(w->cctx, &ob, &in, ZSTD_e_continue);
        if (ZSTD_isError(rc)) {
            w->err = 1;
            return cf_fail("%s: zstd: %s", w->key, ZSTD_getErrorName(rc));
        }
        if (objw_emit(w, w->out, ob.pos) != 0)
            return -1;
    }
    return 0;
}

int cf_repo_objw_commit(cf_objw *w)
{
    if (w->err) {
        cf_fail("%s: not committed after an earlier error", w->key);
        objw_free(w);
        return -1;
    }
    if (w->cctx) {
        ZSTD_inBuffer in = {NULL, 0, 0};
        size_t rc;
        do {
            ZSTD_outBuffer ob = {w->out, w->out_cap, 0};
            rc = ZSTD_compressStream2(w->cctx, &ob, &in, ZSTD_e_end);
            if (ZSTD_isError(rc)) {
                cf_fail("%s: zstd: %s", w->key, ZSTD_getErrorName(rc));
                objw_free(w);
                return -1;
            }
            if (objw_emit(w, w->out, ob.pos) != 0) {
                objw_free(w);
                return -1;
            }
        } while (rc != 0);
    }
    if (w->cr && objw_push(w, crypto_secretstream_xchacha20poly1305_TAG_FINAL) != 0) {
        objw_free(w);
        return -1;
    }
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_DigestFinal_ex(w->sha, md, &mdlen);
    if (cf_store_write(w->st, w->w, md, CF_ENV_TRAILER_LEN) != 0) {
        cf_error_prefix("%s", w->key);
        objw_free(w);
        return -1;
    }
    objw_tee(w, md, CF_ENV_TRAILER_LEN);
    void *sw = w->w;
    w->w = NULL; /* commit frees the store writer, success or not */
    int rc = cf_store_commit(w->st, sw);
    if (rc != 0)
        cf_error_prefix("%s", w->key);
    objw_tee_end(w, rc == 0);
    objw_free(w);
    return rc ? -1 : 0;
}

void cf_repo_objw_abort(cf_objw *w)
{
    if (w)
        objw_free(w);
}

/* ---- Reader ------------------------------------------------------------- */

struct cf_objr {
    cf_store *st;
    void *rd;
    char *key;
    EVP_MD_CTX *sha;
    ZSTD_DCtx *dctx; /* NULL: body stored as is */
    uint8_t *in;
    size_t in_cap, in_pos, in_len; /* [in_pos, in_len) not yet consumed */
    int eof;        /* the store has no more bytes */
    int frame_done; /* zstd frame fully decoded */
    int done;       /* trailer verified */
    int err;
    /* encryption: the current opened segment [p_pos, p_len) of plain */
    const cf_crypt *cr;
    crypto_secretstream_xchacha20poly1305_state ss;
    uint8_t *plain;
    size_t p_pos, p_len;
    int final_seen;
    uint8_t *ad;
    size_t adlen;
    /* Local cache (repo/cache.c): read from src_fd instead of the store
     * (src_path names the copy, removed when it fails), or copy what the
     * store gives into tee_fd (tee_tmp), renamed to tee_path once the
     * whole object has checked out. -1/NULL: not used. */
    int src_fd, tee_fd;
    char *src_path, *tee_tmp, *tee_path;
};

static void objr_free(cf_objr *rd)
{
    if (rd->rd)
        cf_store_reader_close(rd->st, rd->rd);
    if (rd->src_fd >= 0)
        close(rd->src_fd);
    if (rd->tee_fd >= 0) { /* not complete: no copy */
        close(rd->tee_fd);
        unlink(rd->tee_tmp);
    }
    free(rd->src_path);
    free(rd->tee_tmp);
    free(rd->tee_path);
    EVP_MD_CTX_free(rd->sha);
    ZSTD_freeDCtx(rd->dctx);
    free(rd->in);
    free(rd->key);
    if (rd->plain)
        sodium_memzero(rd->plain, CF_SEG_LEN);
    sodium_memzero(&rd->ss, sizeof rd->ss);
    free(rd->plain);
    free(rd->ad);
    free(rd);
}

static int objr_fail(cf_objr *rd)
{
    rd->err = 1;
    if (rd->src_path) { /* a cached copy that fails is not kept */
        unlink(rd->src_path);
        cf_log(CF_LOG_DEBUG, "cached copy %s removed: %s", rd->src_path, cf_error());
    }
    return -1;
}

static void tee_stop(cf_objr *rd)
{
    if (rd->tee_fd < 0)
        return;
    close(rd->tee_fd);
    unlink(rd->tee_tmp);
    rd->tee_fd = -1;
}

/* Top up the input buffer from the store. */
static int objr_fill(cf_objr *rd)
{
    if (rd->eof)
        return 0;
    memmove(rd->in, rd->in + rd->in_pos, rd->in_len - rd->in_pos);
    rd->in_len -= rd->in_pos;
    rd->in_pos = 0;
    size_t want = rd->in_cap - rd->in_len, got = 0;
    if (rd->src_fd >= 0) {
        while (got < want) {
            ssize_t n = read(rd->src_fd, rd->in + rd->in_len + got, want - got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                cf_fail_errno("%s: reading the cached copy %s", rd->key, rd->src_path);
                return objr_fail(rd);
            }
            if (n == 0)
                break;
            got += (size_t)n;
        }
    } else if (cf_store_read(rd->st, rd->rd, rd->in + rd->in_len, want, &got) != 0) {
        cf_error_prefix("%s", rd->key);
        return objr_fail(rd);
    }
    if (rd->tee_fd >= 0 && cf_write_all(rd->tee_fd, rd->in + rd->in_len, got) != 0)
        tee_stop(rd); /* a full cache disk only costs the copy */
    rd->in_len += got;
    if (got < want)
        rd->eof = 1;
    return 0;
}

/* Stored bytes that are certainly not part of the trailer. */
static size_t objr_body_avail(const cf_objr *rd)
{
    size_t have = rd->in_len - rd->in_pos;
    return have > CF_ENV_TRAILER_LEN ? have - CF_ENV_TRAILER_LEN : 0;
}

static void objr_consume(cf_objr *rd, size_t n)
{
    EVP_DigestUpdate(rd->sha, rd->in + rd->in_pos, n);
    rd->in_pos += n;
}

/* Open the next sealed segment into rd->plain. */
static int objr_next_segment(cf_objr *rd)
{
    size_t full = CF_SEG_LEN + CF_SS_ABYTES, avail;
    while ((avail = objr_body_avail(rd)) < full && !rd->eof)
        if (objr_fill(rd) != 0)
            return -1;
    size_t n = avail < full ? avail : full;
    if (n < CF_SS_ABYTES) {
        cf_fail("%s: corrupt object: truncated (the final encrypted segment is missing)", rd->key);
        return objr_fail(rd);
    }
    unsigned long long plen = 0;
    unsigned char tag = 0;
    if (crypto_secretstream_xchacha20poly1305_pull(&rd->ss, rd->plain, &plen, &tag,
                                                   rd->in + rd->in_pos, n, rd->ad,
                                                   rd->adlen) != 0) {
        cf_fail("%s: corrupt object: authentication failed (damaged or tampered with)", rd->key);
        return objr_fail(rd);
    }
    objr_consume(rd, n);
    rd->p_pos = 0;
    rd->p_len = (size_t)plen;
    if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL)
        rd->final_seen = 1;
    else if (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE) {
        cf_fail("%s: corrupt object: unexpected segment tag %u", rd->key, tag);
        return objr_fail(rd);
    }
    return 0;
}

/* Body bytes (decrypted, still compressed when the flag says so) ready
 * to use: *avail = 0 means the body has ended. */
static int objr_peek(cf_objr *rd, const uint8_t **p, size_t *avail)
{
    for (;;) {
        if (!rd->cr) {
            *avail = objr_body_avail(rd);
            *p = rd->in + rd->in_pos;
            if (*avail || rd->eof)
                return 0;
            if (objr_fill(rd) != 0)
                return -1;
            continue;
        }
        if (rd->p_pos < rd->p_len || rd->final_seen) {
            *p = rd->plain + rd->p_pos;
            *avail = rd->p_len - rd->p_pos;
            return 0;
        }
        if (objr_next_segment(rd) != 0)
            return -1;
    }
}

static void objr_take(cf_objr *rd, size_t n)
{
    if (rd->cr)
        rd->p_pos += n;
    else
        objr_consume(rd, n);
}

/* Open key: from the store, or from the open cached copy src_fd (path
 * src_path; both taken), copying to the cache at tee_path when set. */
static int objr_open(cf_store *st, const EVP_MD *md, const cf_crypt *cr, int type,
                     const char *key, int src_fd, char *src_path, const char *tee_path,
                     cf_objr **out)
{
    cf_objr *rd = cf_calloc(1, sizeof *rd);
    rd->st = st;
    rd->src_fd = src_fd;
    rd->src_path = src_path;
    rd->tee_fd = -1;
    if (src_fd < 0 && tee_path) {
        rd->tee_fd = cf_repo_cache_tee(tee_path, &rd->tee_tmp);
        if (rd->tee_fd >= 0)
            rd->tee_path = cf_strdup(tee_path);
    }
    rd->key = cf_strdup(key);
    rd->cr = cr;
    rd->sha = EVP_MD_CTX_new();
    if (!rd->sha || !EVP_DigestInit_ex(rd->sha, md, NULL)) {
        objr_free(rd);
        return cf_fail("%s: cannot initialise SHA-256", key);
    }
    /* Room for a whole sealed segment plus the held-back trailer. */
    rd->in_cap = ZSTD_DStreamInSize() + CF_ENV_TRAILER_LEN;
    if (rd->in_cap < CF_SEG_LEN + CF_SS_ABYTES + CF_ENV_TRAILER_LEN)
        rd->in_cap = CF_SEG_LEN + CF_SS_ABYTES + CF_ENV_TRAILER_LEN;
    rd->in = cf_malloc(rd->in_cap);
    if (src_fd < 0 && cf_store_reader_open(st, key, 0, 0, &rd->rd) != 0) {
        rd->rd = NULL;
        objr_free(rd);
        return -1;
    }
    if (objr_fill(rd) != 0) {
        objr_free(rd);
        return -1;
    }
    size_t min = CF_ENV_HDR_LEN + CF_ENV_TRAILER_LEN + (cr ? CF_SS_HDR_LEN : 0);
    if (rd->in_len < min) {
        /* Check the header first when there is one: a short object of
         * the wrong scheme is refused as such. */
        if (rd->in_len >= CF_ENV_HDR_LEN &&
            cf_env_check(rd->in, type, key, NULL, cr ? CF_ENC_XCHACHA : CF_ENC_NONE) != 0) {
            objr_free(rd);
            return -1;
        }
        cf_fail("%s: truncated object (%zu bytes)", key, rd->in_len);
        objr_free(rd);
        return -1;
    }
    unsigned flags;
    if (cf_env_check(rd->in, type, key, &flags, cr ? CF_ENC_XCHACHA : CF_ENC_NONE) != 0) {
        objr_free(rd);
        return -1;
    }
    if (cr) {
        size_t kl = strlen(key);
        rd->adlen = CF_ENV_HDR_LEN + kl;
        rd->ad = cf_malloc(rd->adlen);
        memcpy(rd->ad, rd->in, CF_ENV_HDR_LEN);
        memcpy(rd->ad + CF_ENV_HDR_LEN, key, kl);
        rd->plain = cf_malloc(CF_SEG_LEN);
        if (crypto_secretstream_xchacha20poly1305_init_pull(&rd->ss, rd->in + CF_ENV_HDR_LEN,
                                                            cr->enc) != 0) {
            objr_free(rd);
            return cf_fail("%s: corrupt object: invalid encryption header", key);
        }
        objr_consume(rd, CF_ENV_HDR_LEN + CF_SS_HDR_LEN);
    } else {
        objr_consume(rd, CF_ENV_HDR_LEN);
    }
    if (flags & CF_ENV_FLAG_ZSTD) {
        rd->dctx = ZSTD_createDCtx();
        if (!rd->dctx) {
            objr_free(rd);
            return cf_fail("%s: cannot initialise zstd", key);
        }
    }
    *out = rd;
    return 0;
}

int cf_objr_from_cache(const cf_objr *rd)
{
    return rd->src_fd >= 0 || rd->src_path != NULL;
}

int cf_objr_open_raw(cf_store *st, const EVP_MD *md, const cf_crypt *cr, int type,
                     const char *key, cf_objr **out)
{
    return objr_open(st, md, cr, type, key, -1, NULL, NULL, out);
}

int cf_repo_objr_open(cf_repo *r, int type, const char *key, cf_objr **rd)
{
    char *cached = cf_repo_cache_path(r, type, key);
    if (cached) {
        int fd = cf_repo_cache_open(r, cached);
        if (fd >= 0) {
            if (objr_open(r->st, r->sha, obj_crypt(r, type), type, key, fd, cf_strdup(cached),
                          NULL, rd) == 0) {
                free(cached);
                return 0;
            }
            /* the copy's envelope did not check out: the store's, then */
            unlink(cached);
        }
    }
    int rc = objr_open(r->st, r->sha, obj_crypt(r, type), type, key, -1, NULL, cached, rd);
    free(cached);
    return rc;
}

/* End of the body: check what remains is exactly the trailer. */
static int objr_finish(cf_objr *rd)
{
    if (rd->dctx && !rd->frame_done) {
        cf_fail("%s: corrupt object: compressed body is truncated", rd->key);
        return objr_fail(rd);
    }
    while (!rd->eof && rd->in_len - rd->in_pos <= CF_ENV_TRAILER_LEN)
        if (objr_fill(rd) != 0)
            return -1;
    if (rd->in_len - rd->in_pos != CF_ENV_TRAILER_LEN) {
        if (rd->cr && rd->in_len - rd->in_pos > CF_ENV_TRAILER_LEN)
            cf_fail("%s: corrupt object: data after the final encrypted segment", rd->key);
        else
            cf_fail("%s: truncated object", rd->key);
        return objr_fail(rd);
    }
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_DigestFinal_ex(rd->sha, md, &mdlen);
    if (memcmp(md, rd->in + rd->in_pos, CF_ENV_TRAILER_LEN) != 0) {
        cf_fail("%s: corrupt object: SHA-256 trailer mismatch", rd->key);
        return objr_fail(rd);
    }
    rd->done = 1;
    if (rd->tee_fd >= 0) { /* the whole object checked out: keep the copy */
        int ok = close(rd->tee_fd) == 0 && rename(rd->tee_tmp, rd->tee_path) == 0;
        rd->tee_fd = -1;
        if (!ok)
            unlink(rd->tee_tmp);
    }
    return 0;
}

long cf_repo_objr_read(cf_objr *rd, void *buf, size_t len)
{
    if (rd->err)
        return cf_fail("%s: read after an earlier error", rd->key);
    uint8_t *p = buf;
    size_t out = 0;
    if (len > (size_t)LONG_MAX)
        len = (size_t)LONG_MAX;
    while (out < len && !rd->done) {
        const uint8_t *src;
        size_t avail;
        if (objr_peek(rd, &src, &avail) != 0)
            return -1;
        if (avail == 0) {
            if (objr_finish(rd) != 0)
                return -1;
            break;
        }
        if (!rd->dctx) {
            size_t n = avail < len - out ? avail : len - out;
            memcpy(p + out, src, n);
            objr_take(rd, n);
            out += n;
            continue;
        }
        if (rd->frame_done) {
            cf_fail("%s: corrupt object: data after the compressed body", rd->key);
            return objr_fail(rd);
        }
        ZSTD_inBuffer ib = {src, avail, 0};
        ZSTD_outBuffer ob = {p + out, len - out, 0};
        size_t rc = ZSTD_decompressStream(rd->dctx, &ob, &ib);
        if (ZSTD_isError(rc)) {
            cf_fail("%s: corrupt object: zstd: %s", rd->key, ZSTD_getErrorName(rc));
            return objr_fail(rd);
        }
        objr_take(rd, ib.pos);
        out += ob.pos;
        if (rc == 0)
            rd->frame_done = 1;
        else if (ib.pos == 0 && ob.pos == 0) {
            /* zstd always progresses given input and room; guard anyway. */
            cf_fail("%s: corrupt object: zstd made no progress", rd->key);
            return objr_fail(rd);
        }
    }
    return (long)out;
}

long cf_objr_read_full(cf_objr *rd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        long n = cf_repo_objr_read(rd, (uint8_t *)buf + got, len - got);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (long)got;
}

void cf_repo_objr_close(cf_objr *rd)
{
    if (rd)
        objr_free(rd);
}

/* ---- Whole objects ------------------------------------------------------ */

static int get_object(cf_repo *r, int type, const char *key, cf_buf *out, int *from_cache)
{
    cf_objr *rd;
    if (cf_repo_objr_open(r, type, key, &rd) != 0)
        return -1;
    *from_cache = cf_objr_from_cache(rd);
    out->len = 0;
    for (;;) {
        cf_buf_reserve(out, 1 << 16);
        long n = cf_repo_objr_read(rd, out->data + out->len, out->cap - out->len);
        if (n < 0) {
            cf_repo_objr_close(rd);
            return -1;
        }
        if (n == 0)
            break;
        out->len += (size_t)n;
    }
    cf_repo_objr_close(rd);
    return 0;
}

int cf_repo_get_object(cf_repo *r, int type, const char *key, cf_buf *out)
{
    int from_cache = 0;
    if (get_object(r, type, key, out, &from_cache) == 0)
        return 0;
    if (!from_cache)
        return -1;
    /* The cached copy matched its trailer but not its envelope (it is
     * gone now): the store's copy. */
    cf_log(CF_LOG_DEBUG, "%s: cached copy unusable (%s); reading the store's", key, cf_error());
    return get_object(r, type, key, out, &from_cache);
}

int cf_repo_put_object(cf_repo *r, int type, const char *key, const void *buf, size_t len)
{
    cf_objw *w;
    if (cf_repo_objw_open(r, type, key, &w) != 0)
        return -1;
    if (cf_repo_objw_write(w, buf, len) != 0) {
        cf_repo_objw_abort(w);
        return -1;
    }
    return cf_repo_objw_commit(w);
}
