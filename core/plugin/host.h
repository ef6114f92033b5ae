/*
 * The host side of the driver ABI: the services table every driver gets,
 * and the per-instance context (coffer_hctx) that carries the instance's
 * label, last error, root, temporary directory and cancellation flag.
 */
#ifndef CF_HOST_H
#define CF_HOST_H

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "coffer/coffer.h"

struct coffer_hctx {
    char *label;                   /* "target 'local'", "component 'database' (sqlite)" */
    const char *root;              /* absolute policy (or restore) root; may be NULL */
    void (*progress)(void *ud, uint64_t bytes);
    void *progress_ud;
    double deadline;               /* cf_now() after which cancelled() says yes; 0: none */
};

/* The table handed to drivers (static, lives forever). */
const coffer_host *cf_host_table(void);

coffer_hctx *cf_hctx_new(const char *label, const char *root);
void cf_hctx_free(coffer_hctx *h);
/* Words for a status code ("not found"). */
const char *coffer_status_name(coffer_status st);

/* Copy the calling thread's last driver error into the thread's cf_error, prefixed by
 * the label; returns -1 for convenient `return cf_hctx_fail(h, st);`. */
int cf_hctx_fail(coffer_hctx *h, coffer_status st, const char *what);

/* Cancellation: set from the signal handler, read by every thread (a
 * lock-free atomic, safe in a handler and between threads). */
extern atomic_int cf_cancel_flag;

/* The run's private temporary directory (created 0700 on first use,
 * removed with its content by cf_tmpdir_cleanup). */
const char *cf_tmpdir(void);
/* A new private file in cf_tmpdir(), already unlinked (gone with the
 * process), open for writing and reading; what names it in errors. NULL
 * with cf_fail. */
FILE *cf_tmpfile(const char *what);
void cf_tmpdir_cleanup(void);

#endif
