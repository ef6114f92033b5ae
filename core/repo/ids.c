/* How a repository derives chunk ids. Format v1 repositories without
 * encryption all use plain SHA-256 of the plaintext, so their ids can be
 * compared directly (copy between sites skips chunks the destination
 * has without reading them). */
#include "repo/repo.h"

int cf_repo_id_scheme_equal(cf_repo *a, cf_repo *b)
{
    (void)a;
    (void)b;
    return 1;
}
