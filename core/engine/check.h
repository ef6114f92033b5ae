/*
 * check: the whole repository, every set of every policy (verify is one
 * set of one policy). Structure (config, index objects, indexed packs
 * exist with their recorded size), unindexed packs (named, harmless),
 * optionally the data of all packs or a random share of them, and every
 * manifest: it parses, every chunk it names is indexed, sizes add up, and
 * no chunk it needs sits in damaged data. Problems name set, path, chunk
 * and object.
 */
#ifndef CF_CHECK_H
#define CF_CHECK_H

#include <jansson.h>

#include "engine/run.h"

typedef struct cf_check_opts {
    int read_data;      /* read every pack */
    double subset_pct;  /* > 0: read this percentage of packs, chosen at random */
    int threads;        /* pack readers; 0: one per CPU (at most 4) or the target's connections */
    const char *policy; /* policy file as given, for the repair commands; NULL: POLICY */
} cf_check_opts;

/* Parse "N%" or "N" (0 < N <= 100) for --read-data-subset. */
int cf_check_parse_subset(const char *s, double *pct);

/* run->repo should be opened with CF_REPO_OPEN_SKIP_BAD_INDEX so damaged
 * index objects are reported rather than fatal. Returns CF_EXIT_OK,
 * CF_EXIT_PROBLEMS or CF_EXIT_FAILED; *report lists problems, unindexed
 * packs and what was read. */
int cf_check(cf_run *run, const cf_check_opts *o, json_t **report);
/* Every problem in the report has a "fix" member (the commands that repair
 * it) and the report's "fixes" array holds each distinct fix once.
 * A check also records the packs and chunks it found missing or damaged
 * in state/damaged (so the next backup stores those chunks again), and a
 * check that finds nothing clears the record. */

#endif
