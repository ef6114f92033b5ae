/*
 * Private to core/policy: a YAML document as a small tree that keeps the
 * 1-based line and column of every node, built from libyaml events.
 * libyaml's own document API loses nothing we need but cannot tell us
 * about duplicate keys in time, and lets an alias refer to the node that
 * contains it (a cycle); here an anchor becomes visible only once its
 * node is complete, so the tree is always acyclic.
 */
#ifndef CF_POLICY_YTREE_H
#define CF_POLICY_YTREE_H

#include <stddef.h>

typedef enum { CF_YN_SCALAR = 0, CF_YN_SEQ = 1, CF_YN_MAP = 2 } cf_yn_kind;

typedef struct cf_yn {
    cf_yn_kind kind;
    int line, col;       /* 1-based start of the node */
    char *str;           /* scalar text (NUL-terminated, no embedded NUL) */
    int null;            /* plain scalar "", "~" or "null" */
    struct cf_yn **kids; /* seq: items; map: key0, value0, key1, value1, ... */
    size_t n;            /* number of kids */
    size_t cap;
} cf_yn;

/* Owns every node; aliases share nodes, so free through the doc only. */
typedef struct cf_ydoc {
    cf_yn *root; /* NULL for an empty stream */
    cf_yn **all;
    size_t nall, capall;
    char **anchor_names;
    cf_yn **anchor_nodes;
    size_t nanchors, capanchors;
} cf_ydoc;

/* Parse exactly one document. 0 ok; -1 with cf_error set to
 * "FILE:LINE:COL: invalid YAML: PROBLEM ...". */
int cf_ydoc_parse(cf_ydoc *d, const char *file, const char *buf, size_t len);
void cf_ydoc_free(cf_ydoc *d);

/* "a string", "an empty value", "a list", "a mapping": for messages. */
const char *cf_yn_kind_name(const cf_yn *n);
/* Value of key in mapping m (first match), or NULL. */
const cf_yn *cf_yn_get(const cf_yn *m, const char *key);

#endif
