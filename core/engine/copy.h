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

/* Copy set `id` from src to dst unless dst has it. *copied = 1 if written. */
int cf_copy_set(cf_repo *src, cf_repo *dst, const char *id, int *copied, uint64_t *bytes_sent);

#endif
