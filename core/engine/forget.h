/*
 * Retention: which sets of a policy to keep (keep_last, keep_hourly,
 * keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within), each
 * kept set with the rules that keep it. `forget` removes the manifests of
 * the others; their data goes with the next prune.
 */
#ifndef CF_FORGET_H
#define CF_FORGET_H

#include <jansson.h>
#include <time.h>

#include "engine/run.h"

typedef struct cf_keep_set {
    char *id;
    time_t time;
    int keep;
    int proven;        /* a rehearsal proved it (filled only for keep_proven) */
    char reasons[128]; /* "last,daily,weekly" */
} cf_keep_set;

/* Decide, for sets sorted oldest first. Returns 0, or -1 (no rule given:
 * refusing to forget everything; or an invalid keep_within). */
int cf_retention_apply(const cf_retention *r, cf_keep_set *sets, size_t n);

/* Parse "2026-11-27T03:30:00Z". */
time_t cf_parse_iso(const char *s);

/* The forget command: r overrides the policy's rules where set (>= 0 /
 * non-NULL). With ids (nids > 0) the rules are not used: exactly those
 * sets of the policy are removed, after every id was found (an unknown
 * id, or one of another policy, removes nothing and returns -2). Not in
 * a dry run, the exclusive lock is held while sets are removed. *report
 * lists every set of the policy: {id, keep, reasons}. */
int cf_forget(cf_run *run, const cf_retention *override, char *const *ids, size_t nids, int dry_run,
              json_t **report);

#endif
