/*
 * Index objects (core/repo/index.c). First input byte: 0 the rest is the
 * stored object; 1 the rest is the body, written by coffer's object
 * writer (compressed); 2 the same in the encrypted repository.
 */
#include "fuzz_repo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0] % 3;
    cf_repo *r = fz_repo(mode == 2);
    const char *key = "index/fuzz";
    if (mode == 0)
        fz_put(r, key, data + 1, size - 1);
    else
        fz_put_object(r, CF_OBJ_INDEX, key, data + 1, size - 1);
    cf_index ix;
    cf_index_init(&ix);
    if (cf_index_load_object(r, key, &ix) == 0) {
        /* every entry loaded lies inside its pack, after the header */
        for (size_t i = 0; i < ix.n; i++)
            if (!cf_entry_valid(&ix.ents[i], ix.packs[ix.ents[i].pack].size, r->seal_overhead))
                abort();
    }
    cf_index_free(&ix);
    return 0;
}
