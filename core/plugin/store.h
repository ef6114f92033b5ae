/*
 * cf_store: the core's handle on one storage driver instance. Every call
 * returns a coffer_status (COFFER_OK == 0); on failure cf_error() holds
 * "<label>: <what>: <driver message>".
 */
#ifndef CF_STORE_H
#define CF_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "coffer/coffer.h"
#include "util/util.h"

typedef struct cf_store {
    const coffer_storage_ops *ops;
    void *inst;
    coffer_hctx *hctx;
    uint32_t caps;
    char *label;
    coffer_config *cfg; /* the options plus "location", owned (cf_store_new_at) */
} cf_store;

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
int cf_store_remove(cf_store *s, const char *key);

/* Whole-object helpers for small objects. */
int cf_store_put(cf_store *s, const char *key, const void *buf, size_t len, uint32_t flags);
int cf_store_get(cf_store *s, const char *key, cf_buf *out);
int cf_store_get_range(cf_store *s, const char *key, uint64_t off, uint64_t len, cf_buf *out);

#endif
