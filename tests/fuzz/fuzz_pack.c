/*
 * Pack trailer tables (core/repo/pack.c): header, tail and table checks,
 * then each listed blob opened (decrypted, decompressed, hashed). First
 * input byte, bit 0: the encrypted repository; the rest is the pack.
 */
#include "fuzz_repo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    cf_repo *r = fz_repo(data[0] & 1);
    const uint8_t *pack = data + 1;
    size_t len = size - 1;
    cf_id pid;
    memset(pid.b, 0xab, sizeof pid.b);
    char key[CF_PACK_KEY_LEN + 1];
    cf_pack_key(&pid, key);
    fz_put(r, key, pack, len);
    cf_loc *ents;
    size_t n;
    if (cf_pack_read_table(r, key, len, &ents, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            /* read_table promised: inside the pack, before the table */
            if (ents[i].offset + ents[i].stored > len)
                abort();
            cf_buf out = {0};
            if (cf_blob_open(r, &ents[i], key, pack + ents[i].offset, &out) == 0 &&
                out.len != ents[i].raw)
                abort(); /* verified, yet not the size the table says */
            cf_buf_free(&out);
        }
        free(ents);
    }
    return 0;
}
