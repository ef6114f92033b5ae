/*
 * Repository locks: objects locks/<id> holding who (host, pid), what
 * (shared or exclusive, command) and when (created, refreshed). Backups
 * and restores take shared locks, so several run at once; forget, prune
 * and key changes take an exclusive one. A lock whose owner is provably
 * gone (same host, no such pid) or that has not been refreshed within the
 * expiry is removed with a log line; `coffer unlock` removes the rest.
 */
#ifndef CF_LOCK_H
#define CF_LOCK_H

#include "plugin/store.h"

#define CF_LOCK_REFRESH_S 300 /* held locks are rewritten this often */
#define CF_LOCK_EXPIRY_S 1800 /* a lock not refreshed for this long is stale */

typedef struct cf_lock cf_lock;

/* Take a lock. Fails (naming the holder) if a conflicting live lock
 * exists. A background thread refreshes it until cf_lock_release. */
int cf_lock_acquire(cf_store *st, int exclusive, const char *command, cf_lock **out);
/* The same; written(ud) is called each time this run's lock object has
 * been written, before the other locks are looked at: what it starts
 * then sees the repository as a holder of the lock would (a prune that
 * starts later sees the lock; one that started earlier is seen by it). */
int cf_lock_acquire_then(cf_store *st, int exclusive, const char *command,
                         void (*written)(void *ud), void *ud, cf_lock **out);
void cf_lock_release(cf_lock *l);

/* Remove stale locks (all locks with all=1); returns how many, or -1. */
int cf_lock_remove_stale(cf_store *st, int all);

#endif
