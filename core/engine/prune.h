/*
 * prune: remove the data no set references any more (after forget), for
 * every set of every policy in the repository. The repository layer does
 * the snapshot, plan and safe removal order (core/repo/prune.c); this
 * streams the manifests, marks what they need, and reports.
 */
#ifndef CF_PRUNE_H
#define CF_PRUNE_H

#include <jansson.h>

#include "engine/run.h"

typedef struct cf_prune_cmd {
    int dry_run;
    double max_unused; /* percent of used bytes allowed to stay unused (default 5) */
    int verbose;       /* log every object removed */
    int bypass_governance; /* remove governance-locked objects (immutable targets) */
    int apply_tombstones;  /* append-only stores: remove what tombstones name */
} cf_prune_cmd;

/* Parse "5", "5%" or "0" for --max-unused. */
int cf_prune_parse_percent(const char *s, double *out);

/* Append-only stores: remove every object a tombstone names, then the
 * tombstone (a maintenance run: the store must be opened with
 * CF_RUN_MAINT). */
int cf_prune_apply_tombstones(cf_run *run, uint64_t *applied);

/* Takes the exclusive lock itself (a shared one for a dry run). */
int cf_prune_repository(cf_run *run, const cf_prune_cmd *o, json_t **report);

#endif
