/* How a repository derives chunk ids. Unencrypted repositories all use
 * plain SHA-256 of the plaintext, so their ids compare directly (copy
 * between sites skips chunks the destination has without reading them).
 * An encrypted repository uses HMAC-SHA256 under its own id key: ids are
 * comparable only with a repository holding the same id key. */
#include <sodium.h>

#include "repo/repo_int.h"

int cf_repo_id_scheme_equal(cf_repo *a, cf_repo *b)
{
    if (!a->crypt && !b->crypt)
        return 1;
    if (!a->crypt || !b->crypt)
        return 0;
    return sodium_memcmp(a->crypt->id, b->crypt->id, CF_KEY_LEN) == 0;
}
