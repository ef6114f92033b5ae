/*
 * Key objects of encrypted repositories (core/repo/crypto.c), read as
 * `coffer key list` reads them (no key derivation). First input byte:
 * bit 0: the rest is the JSON body, enveloped with a matching trailer;
 * else the rest is the stored object.
 */
#include "fuzz_repo.h"

#define FUZZ_KEY "keys/1111111111111111111111111111111111111111111111111111111111111111"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    cf_repo *r = fz_repo(1);
    if (data[0] & 1) {
        uint8_t *b = cf_malloc(CF_ENV_HDR_LEN + size - 1);
        cf_env_header(b, CF_OBJ_KEY, 0, CF_ENC_NONE);
        memcpy(b + CF_ENV_HDR_LEN, data + 1, size - 1);
        fz_put_hashed(r, FUZZ_KEY, b, CF_ENV_HDR_LEN + size - 1);
        free(b);
    } else {
        fz_put(r, FUZZ_KEY, data + 1, size - 1);
    }
    cf_key_info *v;
    size_t n;
    if (cf_repo_key_list(r, &v, &n) == 0) {
        /* the repository's own key is always listed */
        if (n < 1)
            abort();
        free(v);
    }
    cf_store_remove(cf_repo_store(r), FUZZ_KEY);
    return 0;
}
