/*
 * Copy sets between repositories (multi-site): only chunks the
 * destination lacks travel; chunk ids are recomputed with the
 * destination's hash (they differ when either repository is encrypted).
 * Each set is flushed and its manifest written before the next one, so
 * an interrupted copy resumes where it stopped.
 */
#ifndef CF_COPY_H
#define CF_COPY_H

#include <jansson.h>

#include "repo/repo.h"

/* 1 if both repositories derive chunk ids the same way (core/repo/ids.c). */
int cf_repo_id_scheme_equal(cf_repo *a, cf_repo *b);

/* Where the chunks of sets already copied in this run went: the source's
 * chunk id and the destination's, for repositories that derive ids
 * differently (encrypted ones). A later set reads only the chunks no
 * earlier set of the run held. Bounded (COPY_MAP_MAX entries, 16 MiB);
 * past it, chunks are read again. */
typedef struct cf_copy_ids cf_copy_ids;
cf_copy_ids *cf_copy_ids_new(void);
void cf_copy_ids_free(cf_copy_ids *m);
/* Fill the map from the newest set of `policy` that both repositories
 * hold (a copy made earlier), so a copy of the next set reads only what
 * changed since. Nothing happens when the ids are alike or no set is
 * common; a manifest that cannot be read only loses the shortcut. */
void cf_copy_ids_seed(cf_copy_ids *m, cf_repo *src, cf_repo *dst, const char *policy);

/* Copy set `id` from src to dst unless dst has it. *copied = 1 if written.
 * ids: NULL, or the run's map, which learns the set's chunks once the set
 * is committed. */
int cf_copy_set(cf_repo *src, cf_repo *dst, const char *id, cf_copy_ids *ids, int *copied,
                uint64_t *bytes_sent);

#endif
