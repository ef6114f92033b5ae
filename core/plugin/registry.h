/*
 * The driver registry: built-in drivers plus every loadable driver found
 * in the plugin directories. Drivers that fail to load (missing library,
 * other ABI major, malformed descriptor) are remembered with the reason,
 * so "no driver named X" can say why.
 */
#ifndef CF_REGISTRY_H
#define CF_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "coffer/coffer.h"

typedef struct cf_driver {
    coffer_plugin desc;          /* copy, zero-extended to this core's size */
    coffer_storage_ops storage;  /* copies of the ops tables, likewise */
    coffer_database_ops database;
    void *dl;                    /* dlopen handle; NULL for built-ins */
    char *path;                  /* file it came from; NULL for built-ins */
} cf_driver;

typedef struct cf_load_failure {
    char *path;
    char *reason;
} cf_load_failure;

/* Register built-ins, then load every *.so in dirs (in order; a later
 * driver with the same kind and name as an earlier one is ignored, a
 * loadable one replaces a built-in). Never fails as a whole. */
void cf_registry_load(const char *const *dirs, size_t ndirs);
void cf_registry_unload(void);

/* Load one file; 0 ok, -1 with cf_error() naming the path and reason. */
int cf_registry_load_file(const char *path);

size_t cf_registry_count(void);
const cf_driver *cf_registry_at(size_t i);
size_t cf_registry_failure_count(void);
const cf_load_failure *cf_registry_failure_at(size_t i);

/* Find by kind and name; NULL with cf_error() listing what is available
 * and what failed to load. */
const cf_driver *cf_registry_find(coffer_driver_kind kind, const char *name);
/* Find by name across kinds (for `plugins --describe`). */
const cf_driver *cf_registry_find_any(const char *name);

/* cf_option_lookup-compatible adapter for the policy checker. */
const coffer_option *cf_registry_options(void *ud, coffer_driver_kind kind, const char *name);

const char *cf_kind_name(coffer_driver_kind kind);

/* The ownership rule of database.h: owned_paths non-NULL exactly when
 * caps has COFFER_DBCAP_OWNS_FILES. 0, or -1 with cf_error() naming the
 * driver. */
int cf_registry_db_caps_check(const char *driver, const coffer_database_ops *ops, uint32_t caps);

/* cf_error() for an operation the driver's ABI minor predates (or that it
 * leaves NULL): "OP is not supported by DRIVER (ABI 1.0)". Returns -1. */
int cf_registry_unsupported(const cf_driver *d, const char *op);

/* Run each target's and component's driver validate operation (ABI 1.1)
 * on its options; a driver without one is skipped. 0, or -1 with
 * cf_error() naming file:line:col of the option at fault, the key path
 * and the driver. root: the policy root (host->policy_root). */
struct cf_policy;
int cf_registry_validate_policy(const struct cf_policy *p);

#endif
