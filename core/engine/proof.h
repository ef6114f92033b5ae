/*
 * Proven sets: the result of every rehearsal, stored in the repository
 * beside the set it proves as proofs/<set>/<time>-<8 hex> (envelope type
 * 6, compressed and encrypted like a manifest). A record is one JSON
 * object (docs/repository-format.md, "Proofs"):
 *   {"set","policy","host","time","duration_ms","ok","coffer",
 *    "checks":[{"name","status","problems"}],
 *    "validate":[{"name","exit","ok"}], "error"?}
 * Records are read as untrusted input: one that does not parse, names
 * another set or lacks the members above is skipped with a warning.
 */
#ifndef CF_PROOF_H
#define CF_PROOF_H

#include <jansson.h>

#include "repo/repo.h"

/* Store a record for set_id (its "time" member names the object). */
int cf_proof_put(cf_repo *r, const char *set_id, json_t *record);
/* The newest record of a set and the newest passing one (new references,
 * NULL when there is none). 0, or -1 when the proofs cannot be listed. */
int cf_proof_latest(cf_repo *r, const char *set_id, json_t **last, json_t **last_ok);
/* Copy the records of a set that dst lacks (copy to another target). */
int cf_proof_copy(cf_repo *src, cf_repo *dst, const char *set_id);
/* Remove every record of a set (after the set itself is gone). */
int cf_proof_remove_all(cf_repo *r, const char *set_id);

#endif
