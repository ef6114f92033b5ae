/*
 * Shared by the repository format harnesses: one unencrypted and one
 * encrypted repository on in-memory stores (made once per process), and
 * helpers to place an input in them as an object.
 */
#ifndef COFFER_FUZZ_REPO_H
#define COFFER_FUZZ_REPO_H

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem_storage.h"
#include "repo/repo.h"
#include "repo/repo_int.h"
#include "util/util.h"

#if defined(__SANITIZE_ADDRESS__) /* gcc */
#define FZ_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) /* clang */
#define FZ_LSAN 1
#endif
#endif
#ifdef FZ_LSAN
#include <sanitizer/lsan_interface.h>
#endif

static cf_repo *fz_repos[2];

/* encrypted: 0 or 1. The repositories live until the process ends. */
static inline cf_repo *fz_repo(int encrypted)
{
    if (fz_repos[encrypted])
        return fz_repos[encrypted];
    cf_log_set_level(CF_LOG_ERROR); /* warnings per damaged input are noise here */
    setenv("COFFER_FUZZ_PASSPHRASE", "fuzz", 1);
    cf_passphrase_src ps = {.env = "COFFER_FUZZ_PASSPHRASE", .what = "fuzz"};
    cf_repo_params p = {.cdc = {.min_size = 2048, .avg_size = 8192, .max_size = 65536, .seed = 42},
                        .pack_size = 1 << 20};
    if (encrypted) {
        p.encryption = CF_REPO_ENC_REPOKEY;
        p.pass = &ps;
        p.kdf = (cf_kdf_params){1, 8192};
    }
    cf_store *st = mem_store_new(encrypted ? "fuzz-enc" : "fuzz", NULL);
    cf_repo_open_opts o = {.pass = &ps};
    if (cf_repo_init(st, &p) != 0 || cf_repo_open_with(st, &o, &fz_repos[encrypted]) != 0) {
        fprintf(stderr, "fuzz repository: %s\n", cf_error());
        abort();
    }
#ifdef FZ_LSAN
    /* The keys live in sodium_malloc memory, which LeakSanitizer does not
     * scan: what they point to (OpenSSL contexts) would look leaked. */
    if (fz_repos[encrypted]->crypt)
        __lsan_register_root_region(fz_repos[encrypted]->crypt, sizeof *fz_repos[encrypted]->crypt);
#endif
    return fz_repos[encrypted];
}

/* Store an object as is (replacing any previous one). */
static inline void fz_put(cf_repo *r, const char *key, const void *data, size_t len)
{
    cf_store *st = cf_repo_store(r);
    cf_store_remove(st, key);
    if (cf_store_put(st, key, data, len, 0) != 0) {
        fprintf(stderr, "fuzz put %s: %s\n", key, cf_error());
        abort();
    }
}

/* data followed by its SHA-256: an envelope whose trailer matches, so
 * the input reaches the decoding behind the hash check. */
static inline void fz_put_hashed(cf_repo *r, const char *key, const uint8_t *data, size_t len)
{
    uint8_t *b = cf_malloc(len + SHA256_DIGEST_LENGTH);
    if (len)
        memcpy(b, data, len);
    SHA256(data, len, b + len);
    fz_put(r, key, b, len + SHA256_DIGEST_LENGTH);
    free(b);
}

/* body written through the repository's own object writer (type,
 * compression and encryption as coffer writes them). */
static inline void fz_put_object(cf_repo *r, int type, const char *key, const uint8_t *data,
                                 size_t len)
{
    cf_store_remove(cf_repo_store(r), key);
    cf_objw *w;
    if (cf_repo_objw_open(r, type, key, &w) != 0 || cf_repo_objw_write(w, data, len) != 0 ||
        cf_repo_objw_commit(w) != 0) {
        fprintf(stderr, "fuzz object %s: %s\n", key, cf_error());
        abort();
    }
}

#endif
