/*
 * coffer driver testing kit: test a driver without coffer itself.
 *
 * Link with libcoffer-testing (pkg-config coffer-testing). It provides
 *  - a mock host: a coffer_host whose log lines and errors are captured,
 *    with a configuration built from key/value pairs;
 *  - an in-memory dump sink and source, to run a database driver's dump
 *    and feed the same streams and metadata back to its restore/verify;
 *  - a storage conformance suite: one call runs the checks every storage
 *    driver must pass and returns the number of failures, printing each.
 *
 * The kit follows the ABI of the headers it was built with (1.1); it is
 * test code: out of memory aborts.
 */
#ifndef COFFER_TESTING_H
#define COFFER_TESTING_H

#include <stdio.h>

#include "coffer/coffer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Mock host -------------------------------------------------------- */

typedef struct coffer_test_host coffer_test_host;

/* A host whose policy_root() is root (may be NULL) and whose temp_path()
 * hands out paths in a fresh private directory, removed by _free. */
coffer_test_host *coffer_test_host_new(const char *root);
void coffer_test_host_free(coffer_test_host *t);
/* The table and the context to hand to instance_new / validate. The
 * table's struct_size and version are this kit's (ABI 1.1). */
const coffer_host *coffer_test_host_table(coffer_test_host *t);
coffer_hctx *coffer_test_hctx(coffer_test_host *t);
/* The message of the last host->error call ("" if none), its code, and
 * clearing it. Errors are kept per host, not per thread. */
const char *coffer_test_last_error(coffer_test_host *t);
coffer_status coffer_test_last_code(coffer_test_host *t);
void coffer_test_clear_error(coffer_test_host *t);
/* Every line logged so far, "LEVEL: message\n" each; whether one contains
 * needle. */
const char *coffer_test_log(coffer_test_host *t);
int coffer_test_log_contains(coffer_test_host *t, const char *needle);
/* Make cancelled() return nonzero from now on (or zero again). */
void coffer_test_set_cancelled(coffer_test_host *t, int on);
/* Sum of the bytes reported through progress(). */
uint64_t coffer_test_progress(coffer_test_host *t);

/* ---- Configuration ---------------------------------------------------- */

/* A configuration from pairs: ("path", "/srv/x", "fsync", "false", NULL).
 * A key given twice becomes a list option with both values. */
coffer_config *coffer_test_config(const char *key, ...);
/* Set (replace) a scalar; add an item to a list option. */
void coffer_test_config_set(coffer_config *c, const char *key, const char *value);
void coffer_test_config_add(coffer_config *c, const char *key, const char *item);
/* Fill the defaults of a driver's option table for keys not set. */
void coffer_test_config_defaults(coffer_config *c, const coffer_option *options);
void coffer_test_config_free(coffer_config *c);

/* ---- In-memory dumps -------------------------------------------------- */

typedef struct coffer_test_dump coffer_test_dump;

coffer_test_dump *coffer_test_dump_new(void);
void coffer_test_dump_free(coffer_test_dump *d);
/* Hand the sink to dump(); afterwards the source reads back exactly the
 * streams (closed ones only) and metadata the dump produced. The sink
 * accepts streams from several threads. Both live as long as d. */
coffer_dump_sink *coffer_test_dump_sink(coffer_test_dump *d);
coffer_dump_source *coffer_test_dump_source(coffer_test_dump *d);
/* Inspection: number of streams; the bytes of a stream (NULL if absent);
 * a metadata value (NULL if absent). */
size_t coffer_test_dump_streams(coffer_test_dump *d);
const void *coffer_test_dump_stream(coffer_test_dump *d, const char *name, size_t *len);
const char *coffer_test_dump_meta(coffer_test_dump *d, const char *key);

/* ---- Storage conformance ---------------------------------------------- */

/* Runs every check on a fresh instance of the storage driver p made with
 * cfg (the location must be empty and writable; the suite writes under
 * the prefix "conformance/" and removes what it wrote). Checks:
 *  - atomic publish: an object is invisible until commit, abort leaves
 *    nothing, and a concurrent reader sees the old or the new content of
 *    a replaced object, never a mix or a partial one;
 *  - COFFER_WRITE_IF_ABSENT (with COFFER_CAP_CONDITIONAL_CREATE): two
 *    threads creating the same key, exactly one wins, the other gets
 *    COFFER_ERR_EXISTS, and the object holds the winner's bytes;
 *  - ranged reads: an empty object, length 0 (to the end), the last byte,
 *    a range running past the end, an offset past the end (no bytes, or
 *    an error status);
 *  - list: every key once, also when the callback removes the key it was
 *    given; prefix filtering;
 *  - a reader opened before the object is replaced keeps reading the old
 *    content;
 *  - removing a missing key returns COFFER_ERR_NOT_FOUND, stat of one too.
 * The concurrent checks use the one instance from two threads when the
 * driver declares COFFER_THREADS_HANDLES, a second instance made with the
 * same cfg otherwise, and are skipped for COFFER_THREADS_NONE. root is
 * what host->policy_root returns (may be NULL).
 * Prints "ok"/"FAIL" lines with details to out (stderr when NULL) and
 * returns the number of failed checks (0: conformant). */
int coffer_test_storage_conformance(const coffer_plugin *p, const coffer_config *cfg,
                                    const char *root, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
