/*
 * An in-memory storage driver for tests: implements coffer_storage_ops
 * fully (atomic publish at commit, conditional create, ranged reads), is
 * thread safe (COFFER_THREADS_HANDLES), and injects faults the way
 * SQLite's test_vfs does, so error paths are tested rather than hoped for:
 *   - writes fail with COFFER_ERR_NO_SPACE once a byte budget is spent
 *     (a full disk),
 *   - a key can be made to disappear behind the repository's back,
 *   - a byte of a stored object can be flipped (bit rot).
 *
 * Typical use:
 *   mem_storage *ms;
 *   cf_store *st = mem_store_new("mem", &ms);
 *   ... cf_repo_init(st, NULL) ...
 *   mem_storage_fail_writes_after(ms, 1000);
 *   cf_store_free(st);   // frees ms too
 */
#ifndef COFFER_MEM_STORAGE_H
#define COFFER_MEM_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "coffer/coffer.h"
#include "plugin/store.h"

typedef struct mem_storage mem_storage;

/* The driver descriptor ("mem"); usable with cf_store_new or a loader. */
const coffer_plugin *mem_storage_plugin(void);

/* A cf_store over a fresh, empty in-memory instance. *ms (may be NULL)
 * receives the instance for fault injection; it belongs to the store and
 * is freed by cf_store_free. Aborts the test process on failure. */
cf_store *mem_store_new(const char *label, mem_storage **ms);
/* The instance behind a store made by mem_store_new. */
mem_storage *mem_store_backend(cf_store *st);

/* ---- Fault injection ---- */
/* Writes fail with COFFER_ERR_NO_SPACE once `bytes` more bytes have been
 * accepted (counted over every writer). UINT64_MAX disables. */
void mem_storage_fail_writes_after(mem_storage *ms, uint64_t bytes);
/* Remove a key directly (not through the ABI). 0, or -1 if absent. */
int mem_storage_drop(mem_storage *ms, const char *key);
/* XOR the byte at offset with 0xff. 0, or -1 if key/offset is absent. */
int mem_storage_flip(mem_storage *ms, const char *key, uint64_t offset);
/* Truncate an object to len bytes. 0, or -1. */
int mem_storage_truncate(mem_storage *ms, const char *key, uint64_t len);

/* Object lock: on makes the store report COFFER_CAP_RETENTION and honour
 * retention (refusing to remove or replace a locked object, or to shorten
 * its lock); now is the storage's clock (0: the host's). Call before the
 * store's prepare, which reads the capabilities again. */
void mem_storage_set_retention(mem_storage *ms, int on, int64_t now);
/* A distant store: stat, a read's open and a writer's commit each wait
 * usec first (0: none). */
void mem_storage_set_latency(mem_storage *ms, unsigned usec);
/* Append-only: nothing but locks/ is removed or replaced without
 * COFFER_REMOVE_MAINTENANCE. */
void mem_storage_set_append_only(mem_storage *ms, int on);

/* ---- Inspection ---- */
/* Retain-until date of an object, or -1 when it has no lock or is absent. */
int64_t mem_storage_retain_until(mem_storage *ms, const char *key);
/* set_retention calls that changed an object. */
uint64_t mem_storage_retention_sets(mem_storage *ms);
size_t mem_storage_count(mem_storage *ms, const char *prefix); /* objects under prefix */
int mem_storage_exists(mem_storage *ms, const char *key);
/* Size of an object, or -1. */
int64_t mem_storage_size(mem_storage *ms, const char *key);
/* Writer flags the object was committed with, or -1 if absent. */
int mem_storage_flags(mem_storage *ms, const char *key);
/* Copy of the object (malloc'd, *len set), or NULL. */
uint8_t *mem_storage_get(mem_storage *ms, const char *key, size_t *len);
/* Key of the i-th object under prefix in sorted order (malloc'd), or NULL. */
char *mem_storage_key(mem_storage *ms, const char *prefix, size_t i);
/* Writers opened and not yet committed or aborted (leak check). */
size_t mem_storage_open_writers(mem_storage *ms);

#endif
