/*
 * The object envelope decoder (core/repo/object.c). First input byte:
 * bit 0: append the matching SHA-256 trailer to the rest; bit 1: read it
 * in the encrypted repository; bits 2-4: the object type expected. The
 * rest is the stored object.
 */
#include "fuzz_repo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    cf_repo *r = fz_repo((mode >> 1) & 1);
    int type = 1 + (int)((mode >> 2) & 7) % 5;
    const char *key = "fuzz/object";
    if (mode & 1)
        fz_put_hashed(r, key, data + 1, size - 1);
    else
        fz_put(r, key, data + 1, size - 1);
    cf_objr *rd;
    if (cf_repo_objr_open(r, type, key, &rd) == 0) {
        uint8_t buf[4096];
        long n;
        size_t total = 0;
        while ((n = cf_repo_objr_read(rd, buf, sizeof buf)) > 0)
            total += (size_t)n;
        cf_repo_objr_close(rd);
        (void)total;
    }
    cf_buf b = {0};
    (void)cf_repo_get_object(r, type, key, &b);
    cf_buf_free(&b);
    return 0;
}
