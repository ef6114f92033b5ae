/*
 * The envelope every repository object shares: 8-byte header, body, and a
 * SHA-256 trailer over all preceding bytes, so any object can be checked
 * on its own. Writer and reader stream (manifests can be large): the body
 * goes through ZSTD_compressStream2 / ZSTD_decompressStream and the reader
 * holds back the last 32 bytes it has seen, since the trailer is only
 * known to be the trailer once the store reports the end of the object.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "repo/repo_int.h"

void cf_env_header(uint8_t out[CF_ENV_HDR_LEN], int type, unsigned flags)
{
    memcpy(out, CF_ENV_MAGIC, 4);
    out[4] = CF_FORMAT_VERSION;
    out[5] = (uint8_t)type;
    out[6] = (uint8_t)flags;
    out[7] = CF_ENC_NONE;
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
    default:
        return "unknown";
    }
}

int cf_env_check(const uint8_t h[CF_ENV_HDR_LEN], int type, const char *key, unsigned *flags)
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
    if (h[7] != CF_ENC_NONE)
        return cf_fail("%s: object uses encryption scheme %u, which this version of coffer cannot "
                       "read (only unencrypted repositories are supported)",
                       key, h[7]);
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
    uint8_t *out;
    size_t out_cap;
    int err;
};

static void objw_free(cf_objw *w)
{
    if (w->w)
        cf_store_abort(w->st, w->w);
    EVP_MD_CTX_free(w->sha);
    ZSTD_freeCCtx(w->cctx);
    free(w->out);
    free(w->key);
    free(w);
}

static int objw_emit(cf_objw *w, const void *buf, size_t len)
{
    if (len == 0)
        return 0;
    if (cf_store_write(w->st, w->w, buf, len) != 0) {
        w->err = 1;
        cf_error_prefix("%s", w->key);
        return -1;
    }
    EVP_DigestUpdate(w->sha, buf, len);
    return 0;
}

int cf_objw_open_raw(cf_store *st, const EVP_MD *md, int level, int type, const char *key,
                     uint32_t wflags, int compress, cf_objw **out)
{
    cf_objw *w = cf_calloc(1, sizeof *w);
    w->st = st;
    w->key = cf_strdup(key);
    w->sha = EVP_MD_CTX_new();
    if (!w->sha || !EVP_DigestInit_ex(w->sha, md, NULL)) {
        objw_free(w);
        return cf_fail("%s: cannot initialise SHA-256", key);
    }
    if (compress) {
        w->cctx = ZSTD_createCCtx();
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
    cf_env_header(hdr, type, compress ? CF_ENV_FLAG_ZSTD : 0);
    if (objw_emit(w, hdr, sizeof hdr) != 0) {
        objw_free(w);
        return -1;
    }
    *out = w;
    return 0;
}

int cf_repo_objw_open(cf_repo *r, int type, const char *key, cf_objw **w)
{
    return cf_objw_open_raw(r->st, r->sha, r->zstd_level, type, key, COFFER_WRITE_PRIVATE, 1, w);
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
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_DigestFinal_ex(w->sha, md, &mdlen);
    if (cf_store_write(w->st, w->w, md, CF_ENV_TRAILER_LEN) != 0) {
        cf_error_prefix("%s", w->key);
        objw_free(w);
        return -1;
    }
    void *sw = w->w;
    w->w = NULL; /* commit frees the store writer, success or not */
    int rc = cf_store_commit(w->st, sw);
    if (rc != 0)
        cf_error_prefix("%s", w->key);
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
};

static void objr_free(cf_objr *rd)
{
    cf_store_reader_close(rd->st, rd->rd);
    EVP_MD_CTX_free(rd->sha);
    ZSTD_freeDCtx(rd->dctx);
    free(rd->in);
    free(rd->key);
    free(rd);
}

static int objr_fail(cf_objr *rd)
{
    rd->err = 1;
    return -1;
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
    if (cf_store_read(rd->st, rd->rd, rd->in + rd->in_len, want, &got) != 0) {
        cf_error_prefix("%s", rd->key);
        return objr_fail(rd);
    }
    rd->in_len += got;
    if (got < want)
        rd->eof = 1;
    return 0;
}

/* Body bytes that are certainly not part of the trailer. */
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

int cf_objr_open_raw(cf_store *st, const EVP_MD *md, int type, const char *key, cf_objr **out)
{
    cf_objr *rd = cf_calloc(1, sizeof *rd);
    rd->st = st;
    rd->key = cf_strdup(key);
    rd->sha = EVP_MD_CTX_new();
    if (!rd->sha || !EVP_DigestInit_ex(rd->sha, md, NULL)) {
        objr_free(rd);
        return cf_fail("%s: cannot initialise SHA-256", key);
    }
    rd->in_cap = ZSTD_DStreamInSize() + CF_ENV_TRAILER_LEN;
    rd->in = cf_malloc(rd->in_cap);
    if (cf_store_reader_open(st, key, 0, 0, &rd->rd) != 0) {
        rd->rd = NULL;
        objr_free(rd);
        return -1;
    }
    if (objr_fill(rd) != 0) {
        objr_free(rd);
        return -1;
    }
    if (rd->in_len < CF_ENV_HDR_LEN + CF_ENV_TRAILER_LEN) {
        cf_fail("%s: truncated object (%zu bytes)", key, rd->in_len);
        objr_free(rd);
        return -1;
    }
    unsigned flags;
    if (cf_env_check(rd->in, type, key, &flags) != 0) {
        objr_free(rd);
        return -1;
    }
    objr_consume(rd, CF_ENV_HDR_LEN);
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

int cf_repo_objr_open(cf_repo *r, int type, const char *key, cf_objr **rd)
{
    return cf_objr_open_raw(r->st, r->sha, type, key, rd);
}

/* End of the body: check what remains is exactly the trailer. */
static int objr_finish(cf_objr *rd)
{
    if (rd->dctx && !rd->frame_done) {
        cf_fail("%s: corrupt object: compressed body is truncated", rd->key);
        return objr_fail(rd);
    }
    if (rd->in_len - rd->in_pos != CF_ENV_TRAILER_LEN) {
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
        size_t avail = objr_body_avail(rd);
        if (avail == 0) {
            if (!rd->eof) {
                if (objr_fill(rd) != 0)
                    return -1;
                continue;
            }
            if (objr_finish(rd) != 0)
                return -1;
            break;
        }
        if (!rd->dctx) {
            size_t n = avail < len - out ? avail : len - out;
            memcpy(p + out, rd->in + rd->in_pos, n);
            objr_consume(rd, n);
            out += n;
            continue;
        }
        if (rd->frame_done) {
            cf_fail("%s: corrupt object: data after the compressed body", rd->key);
            return objr_fail(rd);
        }
        ZSTD_inBuffer ib = {rd->in + rd->in_pos, avail, 0};
        ZSTD_outBuffer ob = {p + out, len - out, 0};
        size_t rc = ZSTD_decompressStream(rd->dctx, &ob, &ib);
        if (ZSTD_isError(rc)) {
            cf_fail("%s: corrupt object: zstd: %s", rd->key, ZSTD_getErrorName(rc));
            return objr_fail(rd);
        }
        objr_consume(rd, ib.pos);
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

int cf_repo_get_object(cf_repo *r, int type, const char *key, cf_buf *out)
{
    cf_objr *rd;
    if (cf_repo_objr_open(r, type, key, &rd) != 0)
        return -1;
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
