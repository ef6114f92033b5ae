#ifndef CF_RESTORE_H
#define CF_RESTORE_H

#include <jansson.h>

#include "engine/run.h"
#include "engine/manifest.h"

typedef struct cf_restore_opts {
    const char *set;     /* id, prefix or "latest" */
    const char *to;      /* restore root; NULL with in_place */
    int in_place;
    const char *only;    /* one component, or NULL */
    char **maps;         /* "NAME=VALUE" */
    size_t nmaps;
    int force;
    int no_validate;
    int rollback_objects; /* versioned object stores: make recorded versions current */
} cf_restore_opts;

/* Restore one set. Returns CF_EXIT_OK, CF_EXIT_FAILED (nothing in the
 * target changed, error in cf_error) or CF_EXIT_PROBLEMS (restored, but a
 * database check or a validate command failed: see *report). */
int cf_restore(cf_run *run, const cf_restore_opts *o, json_t **report);

/* A coffer_dump_source over the streams of one database component of a
 * set (used by restore and verify --read-data). */
typedef struct cf_dbsource cf_dbsource;
int cf_dbsource_load(cf_repo *repo, const char *set_id, const char *component, cf_dbsource **out);
coffer_dump_source *cf_dbsource_api(cf_dbsource *s);
void cf_dbsource_free(cf_dbsource *s);

/* Remove a directory tree (used for staging areas). */
void cf_rmtree(const char *path);

#endif
