/*
 * The driver registry: built-in drivers plus every loadable driver found
 * in the plugin directories. Drivers that fail to load (missing library,
 * other ABI major, malformed descriptor) are remembered with the reason,
 * so "no driver named X" can say why.
 */
#ifndef CF_REGISTRY_H
#define CF_REGISTRY_H

#include <stddef.h>

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

#endif
