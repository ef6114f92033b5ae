/*
 * Reference-verified capture: before a set is published, the policy's
 * `references` checks on files components are evaluated against what the
 * set holds: each check's query runs on the database snapshot the backup
 * captured (the driver's query_snapshot: the same snapshot, not the live
 * database), and every path it yields is looked up in the set's own file
 * list. What the set lacks is listed so the backup can fetch it again,
 * and what stays missing marks the set inconsistent (or refuses it).
 *
 * Memory is bounded whatever the sizes: the file list is spooled to a
 * private temporary file while the set is captured; at evaluation it is
 * split by path hash into buckets of at most REFCHECK_BUCKET paths, the
 * query's rows are split the same way, and each bucket is joined in
 * memory on its own (a partitioned hash join).
 */
#ifndef CF_REFCHECK_H
#define CF_REFCHECK_H

#include <jansson.h>
#include <stdint.h>

#include "engine/manifest.h"
#include "engine/run.h"
#include "policy/policy.h"

typedef struct cf_refcheck cf_refcheck;

/* The checks a backup of p verifies: `references` checks on a files
 * component. NULL when there are none (or consistency.references: skip,
 * or its default in maintenance mode). */
cf_refcheck *cf_refcheck_new(const cf_policy *p);
void cf_refcheck_free(cf_refcheck *r);

/* 1 if a check queries database component `comp` (its dump must keep the
 * snapshot). */
int cf_refcheck_uses_db(const cf_refcheck *r, const char *comp);

/* Record one entry of the set (any component; one thread at a time). */
int cf_refcheck_note(cf_refcheck *r, const cf_entry *e);

/* Run every check against the snapshots of dbs (their dumps kept them).
 * A check whose driver cannot query its snapshot is skipped with a
 * warning. 0, or -1 when a query failed (cf_error names the check). */
int cf_refcheck_eval(cf_refcheck *r, cf_dbinst *dbs, size_t ndb);

/* The paths found missing, one at a time (in no particular order):
 * 1 with *comp and *rel set (valid until the next call), 0 at the end. */
int cf_refcheck_next_missing(cf_refcheck *r, const char **comp, const char **rel);
/* A missing path was captured after all (fetched again): not a problem. */
void cf_refcheck_fetched(cf_refcheck *r);

/* Problems left (missing paths not fetched, wrong sizes, unusable rows). */
uint64_t cf_refcheck_problems(const cf_refcheck *r);

/* {"checks":[{"name","component","rows","missing","problems"}],
 *  "rows":N,"problems":N,"refetched":N,"paths":[{"check","component","path","reason"}]}
 * with at most `limit` paths listed (new reference). */
json_t *cf_refcheck_report(const cf_refcheck *r, size_t limit);

#endif
