/*
 * Rehearsal: restore a set into a scratch environment that can never be
 * production, run the policy's checks and validate commands there,
 * record the result beside the set (engine/proof.h) and remove the
 * scratch environment.
 *
 * The scratch environment of one rehearsal is
 *   DIR/coffer-rehearse-<policy>-<XXXXXX>/     0700, DIR = rehearse.dir
 *       ledger.json   what was created, written before it is created;
 *                     flock'ed while the rehearsal runs
 *       root/         the restore root (files, file databases, copied
 *                     object stores)
 * plus one database coffer_rehearse_<set>_<8 hex> per server database
 * component, created by its driver (scratch_create) on the component's
 * server, or on the one rehearse.scratch / --scratch names. Versioned
 * object stores are checked in place, never written.
 *
 * A rehearsal killed before it cleaned up leaves its directory and ledger
 * behind; the next rehearsal of the same policy finds ledgers nobody holds
 * a lock on, drops the databases they list and removes the directories.
 * Ledgers of --keep rehearsals are left alone until --cleanup.
 */
#ifndef CF_REHEARSE_H
#define CF_REHEARSE_H

#include <jansson.h>

#include "engine/run.h"

typedef struct cf_rehearse_opts {
    const char *set; /* id or prefix, "latest" (default), "unproven" or "all" */
    int keep;        /* leave the scratch environment in place */
    char **scratch;  /* "COMPONENT=URL": server for that component's scratch database */
    size_t nscratch;
    int cleanup;     /* only remove leftovers, kept ones included; rehearse nothing */
} cf_rehearse_opts;

/* Rehearse the chosen sets. *report: {"ok", "sets": [one per set],
 * "cleaned": [leftovers removed]}. Returns CF_EXIT_OK when every set was
 * proven, CF_EXIT_PROBLEMS when a check or validate command failed,
 * CF_EXIT_FAILED when a rehearsal could not run (error in cf_error; its
 * entry in the report says so too), CF_EXIT_USAGE for a bad --scratch. */
int cf_rehearse(cf_run *run, const cf_rehearse_opts *o, json_t **report);

/* The directory scratch environments are made in: the policy's
 * rehearse.dir, else $TMPDIR when absolute, else /var/tmp. */
const char *cf_rehearse_dir(const cf_policy *p);

#endif
