/*
 * cf_store: the core's handle on one storage driver instance. Every call
 * returns a coffer_status (COFFER_OK == 0); on failure cf_error() holds
 * "<label>: <what>: <driver message>".
 */
#ifndef CF_STORE_H
#define CF_STORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "coffer/coffer.h"
#include "util/util.h"

typedef struct cf_store {
    const coffer_storage_ops *ops;
    void *inst;
    coffer_hctx *hctx;
    /* What the driver can do; prepare may change it (a bucket with object
     * lock). Atomic: a concurrent prepare updates it while other threads
     * read it (cf_store_prepare_begin). */
    _Atomic uint32_t caps;
    int prepared; /* prepare succeeded: later calls return at once */
    int threading;      /* the driver's coffer_threading */
    uint32_t abi_minor; /* of the driver: which flags it may be given */
    /* cf_store_prepare_begin: prepare on a thread of its own, joined by
     * the next cf_store_prepare */
    pthread_t prep_thread;
    int prep_running;
    coffer_status prep_st;
    char *prep_err;
    int prep_started, prep_done; /* under mu, with prep_cv: cf_store_prepare_wait */
    pthread_cond_t prep_cv;
    char *label;
    coffer_config *cfg; /* the options plus "location", owned (cf_store_new_at) */

    /* Retention of new objects (an immutable target): every object but
     * locks/ and state/ is written under lock_mode until retain_until. */
    coffer_lock_mode lock_mode;
    int64_t retain_until;
    int maintenance;      /* append-only: removals happen (prune --apply-tombstones) */
    uint32_t remove_flags; /* COFFER_REMOVE_* added to every removal */

    pthread_mutex_t mu;   /* guards what follows */
    /* Keys whose newest version coffer did not write: reads use the
     * original version (key, version id pairs). */
    char **pins;
    size_t npins;
    /* Append-only stores: keys removed by tombstones (deleted/KEY),
     * sorted; loaded at the first listing. */
    char **dead;
    size_t ndead;
    int dead_loaded;

    /* The quickest small request seen (stat, small get or put), in ns;
     * 0 before the first. What one request costs the network and the
     * server, whatever its size: it sizes the default number of reads in
     * flight (cf_repo_connections). */
    _Atomic uint64_t rtt_ns;
} cf_store;

/* The prefix of tombstones on an append-only store: it and the key. */
#define CF_TOMBSTONE_PREFIX "deleted/"


/* Create an instance of a storage driver. cfg stays owned by the caller
 * and must outlive the store. */
int cf_store_new(const coffer_plugin *drv, const coffer_config *cfg, const char *label,
                 const char *root, cf_store **out);
/* Same, for a target: the driver also sees location through config_get
 * "location" (unless the driver's own options already hold one). cfg is
 * copied. */
int cf_store_new_at(const coffer_plugin *drv, const coffer_config *cfg, const char *location,
                    const char *label, const char *root, cf_store **out);
void cf_store_free(cf_store *s);

int cf_store_prepare(cf_store *s, int create);
/* Start prepare (create=0) on a thread while the caller goes on reading:
 * on object storage the bucket's checks are round trips an open need not
 * wait for. Only for a remote store whose driver says prepare may overlap
 * reads (COFFER_CAP_CONCURRENT_PREPARE, ABI 1.3) and takes calls from
 * several threads at once (COFFER_THREADS_HANDLES); 1 when started, 0
 * when not (then nothing changed). Until cf_store_prepare joins it, the
 * caller only reads: no writes, no removals, and nothing that depends on
 * what prepare learns (capabilities are taken after the join). Its
 * failure is what cf_store_prepare returns then. */
int cf_store_prepare_begin(cf_store *s);
/* A prepare begun by cf_store_prepare_begin has not been joined yet. */
int cf_store_preparing(const cf_store *s);
/* From any thread: waits for a prepare begun by cf_store_prepare_begin
 * to end, without joining it. 0 when it succeeded or none was begun, -1
 * when it failed (the run reports that failure when it joins). */
int cf_store_prepare_wait(cf_store *s);
int cf_store_writer_open(cf_store *s, const char *key, uint32_t flags, uint64_t size_hint, void **w);
int cf_store_write(cf_store *s, void *w, const void *buf, size_t len);
int cf_store_commit(cf_store *s, void *w);
void cf_store_abort(cf_store *s, void *w);
int cf_store_reader_open(cf_store *s, const char *key, uint64_t off, uint64_t len, void **r);
/* Reads until buf is full or the object ends; *got < len only at the end. */
int cf_store_read(cf_store *s, void *r, void *buf, size_t len, size_t *got);
void cf_store_reader_close(cf_store *s, void *r);
int cf_store_stat(cf_store *s, const char *key, coffer_object_stat *st);
int cf_store_list(cf_store *s, const char *prefix, coffer_list_cb cb, void *ud);
/* Remove key. On an append-only store (outside a maintenance run) this
 * writes the tombstone deleted/KEY instead, and the key is gone for every
 * later listing, stat and read; locks/ are removed for real. */
int cf_store_remove(cf_store *s, const char *key);
/* Remove key if it is there: a missing key is no error. A driver of ABI
 * 1.3 or later is told so (COFFER_REMOVE_ABSENT_OK) and may skip finding
 * out: on S3 the DELETE goes without a HEAD first. For keys coffer alone
 * writes and removes, such as its own repository lock. */
int cf_store_remove_absent_ok(cf_store *s, const char *key);
/* Remove one version of key (version_id NULL: the key) with flags
 * COFFER_REMOVE_* (plus s->remove_flags). COFFER_ERR_LOCKED when the
 * version is under retention. */
int cf_store_remove_version(cf_store *s, const char *key, const char *version_id, uint32_t flags);
int cf_store_append_only(const cf_store *s);

/* A growing list of keys. */
typedef struct cf_keys {
    char **v;
    size_t n, cap;
} cf_keys;
void cf_keys_add(cf_keys *k, const char *key);
void cf_keys_free(cf_keys *k);
/* Append every key under prefix (as cf_store_list sees them) to k. */
int cf_store_list_keys(cf_store *s, const char *prefix, cf_keys *k);

/* Retention (COFFER_CAP_RETENTION). */
int cf_store_server_time(cf_store *s, int64_t *now);
int cf_store_retention(cf_store *s, const char *key, const char *version_id, coffer_lock_mode *mode,
                       int64_t *until);
int cf_store_set_retention(cf_store *s, const char *key, const char *version_id,
                           coffer_lock_mode mode, int64_t until);
/* Versions (COFFER_CAP_VERSIONING). */
int cf_store_list_versions(cf_store *s, const char *prefix, coffer_version_cb cb, void *ud);
typedef struct cf_version {
    char *key, *vid, *etag;
    int64_t mtime;
    int marker, latest;
} cf_version;
typedef struct cf_versions {
    cf_version *v;
    size_t n, cap;
} cf_versions;
/* Every version under prefix, sorted by key and, within a key, oldest
 * first with the newest last (whatever the clocks say). */
int cf_store_versions(cf_store *s, const char *prefix, cf_versions *out);
void cf_versions_free(cf_versions *a);
/* coffer writes each key once: for each key whose newest version holds
 * other data than its oldest (someone overwrote it), fn(ud, oldest,
 * newest, versions). Keys coffer itself rewrites or removes (locks/,
 * state/, tombstones) and keys whose newest version is a delete marker are
 * skipped. */
typedef void (*cf_replaced_fn)(void *ud, const cf_version *oldest, const cf_version *newest,
                               int nversions);
void cf_versions_each_replaced(const cf_versions *a, cf_replaced_fn fn, void *ud);
/* Read version_id instead of the newest version of key from now on. */
void cf_store_pin(cf_store *s, const char *key, const char *version_id);
/* The version pinned for key (malloc'd), or NULL. */
char *cf_store_pinned(cf_store *s, const char *key);
/* Pin the oldest version of key when its newest is another object (an
 * overwrite by someone else): 2 pinned now, 1 pinned already (by
 * another thread meanwhile), 0 nothing to pin, -1 error. */
int cf_store_pin_original(cf_store *s, const char *key);

/* The quickest small request so far, in seconds (0: none yet). */
double cf_store_round_trip(cf_store *s);

/* Whole-object helpers for small objects. */
int cf_store_put(cf_store *s, const char *key, const void *buf, size_t len, uint32_t flags);
int cf_store_get(cf_store *s, const char *key, cf_buf *out);
int cf_store_get_range(cf_store *s, const char *key, uint64_t off, uint64_t len, cf_buf *out);

#endif
