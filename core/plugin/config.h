/*
 * coffer_config: the resolved options of one driver instance, as the
 * policy gave them (after ${VAR} expansion) plus declared defaults.
 * Drivers see it only through coffer_host's config_* functions.
 * Owned by whoever called cf_config_new (the policy, or a test).
 */
#ifndef CF_CONFIG_H
#define CF_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "coffer/plugin.h"

typedef struct cf_config_item {
    char *name;
    char *value;   /* scalar value; NULL for lists */
    char **items;  /* list values */
    size_t nitems;
    int is_list;
    int line, col; /* where the policy set it (0 for defaults) */
} cf_config_item;

struct coffer_config {
    cf_config_item *items;
    size_t n;
};

coffer_config *cf_config_new(void);
void cf_config_free(coffer_config *c);
/* Set (or replace) a scalar. */
void cf_config_set(coffer_config *c, const char *name, const char *value, int line, int col);
/* Append to a list (created on first use). */
void cf_config_list_add(coffer_config *c, const char *name, const char *item, int line, int col);
cf_config_item *cf_config_find(const coffer_config *c, const char *name);
coffer_config *cf_config_dup(const coffer_config *c);
/* Drop the option name (nothing when absent). */
void cf_config_remove(coffer_config *c, const char *name);

const char *cf_config_get(const coffer_config *c, const char *name);
size_t cf_config_list_len(const coffer_config *c, const char *name);
const char *cf_config_list_item(const coffer_config *c, const char *name, size_t i);
int64_t cf_config_get_int(const coffer_config *c, const char *name, int64_t dflt);
int cf_config_get_bool(const coffer_config *c, const char *name, int dflt);

/* Parsers shared with the policy validator. Return 0 ok, -1 bad. */
int cf_parse_bool(const char *s, int *out);
int cf_parse_int(const char *s, int64_t *out);
int cf_parse_size(const char *s, int64_t *out); /* "64M", "1G", "4096" */

#endif
