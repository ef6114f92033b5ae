/*
 * Immutable targets: every object coffer writes to the repository (packs,
 * index objects, manifests, proofs, key objects, the config) is stored
 * under object lock retention, and coffer keeps this invariant:
 *
 *   every object a set needs is locked at least until that set can be
 *   forgotten: the set's time plus the lock period, where the lock period
 *   is the target's `days` or, when longer, the horizon of the policy's
 *   retention rules (how long they may keep a set).
 *
 * It does so with one lock epoch per repository: the retention of the
 * `config` object is the date until which every live object (each pack the
 * index names, each index object, key object, manifest and proof, and the
 * config) is locked.
 * A new object is written locked until the epoch's end. When the epoch
 * ends sooner than now + lock period, the backup (or `coffer extend-locks`)
 * opens a new one, a quarter period longer than needed, by extending every
 * live object and the config last: a run killed half-way leaves the old
 * epoch in the config, so the next run repeats the extension (extending to
 * the same date twice is harmless). Packs that prune dropped from the index
 * are no longer extended and their locks run out, after which prune removes
 * them.
 *
 * Dates come from the storage's clock (its HTTP Date), never the host's.
 */
#ifndef CF_ENGINE_IMMUTABLE_H
#define CF_ENGINE_IMMUTABLE_H

#include <jansson.h>
#include <stdint.h>

#include "engine/run.h"

/* How long the policy's retention rules may keep a set, in seconds (0 when
 * only count rules such as keep_last are given); why receives the rule
 * that sets it ("keep_daily: 30"). */
int64_t cf_retention_horizon(const cf_retention *r, char *why, size_t len);

/* After the target's storage was prepared: refuse a storage without object
 * lock (naming the bucket), read the storage's clock, warn about clock
 * skew and a lock shorter than the retention horizon, read the lock epoch
 * and set the retention of every object the run will write. On a storage
 * with versions, objects of sets/, index/, keys/ and the config whose
 * newest version coffer did not write are read from their original. */
int cf_immutable_open(cf_run *run);

/* Extend every live object to the store's retain_until, the config last
 * (needs the repository open with its index). Counts requests in
 * run->retention_requests. 0 or -1 (cf_error names the object). */
int cf_immutable_roll(cf_run *run);

/* Check the invariant against the storage: every object's retention is
 * read and compared with what the sets need; objects whose newest version
 * coffer did not write are listed. Appends problem objects
 * {"key","problem","locked_until","needed_until","fix"} to problems and
 * prints them unless json. Returns the number of problems, -1 on error. */
int cf_immutable_audit(cf_run *run, json_t *problems, const char *policy_file);

/* The end of the maintenance run of prune on a storage with versions:
 * remove the versions of keys coffer removed (whose newest version is a
 * delete marker) once their retention allows. */
typedef struct cf_purge_stats {
    uint64_t versions_removed, versions_waiting;
    int64_t waiting_until;
} cf_purge_stats;
int cf_immutable_purge(cf_run *run, int bypass_governance, cf_purge_stats *st);

/* "2026-12-04 22:40:08 UTC" */
void cf_utc_time(int64_t t, char *buf, size_t len);

#endif
