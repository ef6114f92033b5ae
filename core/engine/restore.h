#ifndef CF_RESTORE_H
#define CF_RESTORE_H

#include <jansson.h>

#include "engine/run.h"
#include "engine/manifest.h"

typedef struct cf_restore_opts {
    const char *set;     /* id, prefix or "latest" */
    const char *to;      /* restore root; NULL with in_place */
    int in_place;
    char **only;         /* components to restore (none: all) */
    size_t nonly;
    char **maps;         /* "NAME=VALUE" */
    size_t nmaps;
    int force;
    int no_validate;
    int no_checks;        /* skip the policy's checks: (the drivers' own checks still run) */
    int rollback_objects; /* versioned object stores: make recorded versions current */
    struct cf_select *select; /* --include/--exclude: only these paths (engine/select.h) */
    int salvage;          /* write what can be read; list the rest, exit 3 */
} cf_restore_opts;

/* The file --salvage writes at the root of the restore when something
 * could not be restored. */
#define CF_SALVAGE_REPORT "COFFER-SALVAGE-REPORT.txt"


/* Restore one set. Returns CF_EXIT_OK, CF_EXIT_FAILED (nothing in the
 * target changed, error in cf_error) or CF_EXIT_PROBLEMS (restored, but a
 * database check or a validate command failed: see *report). */
int cf_restore(cf_run *run, const cf_restore_opts *o, json_t **report);
/* With o->select or o->salvage the report also holds "bytes_read" and
 * "reads" (pack bytes and ranged reads), "files" restored, and with
 * --salvage "unrestored": [{component, path, size, missing: [[from, to]],
 * error}], [from, to) byte ranges written as zeros; exit CF_EXIT_PROBLEMS
 * when that list is not empty. */

/* What cf_restore would do, written nowhere: the set, its components in
 * restore order with destination, files and bytes, the stop/start and
 * validate commands that would run. Fails like cf_restore would before
 * writing (CF_EXIT_USAGE for an unknown --only or --map name, or
 * CF_EXIT_FAILED, error in cf_error); CF_EXIT_OK with *plan set. */
int cf_restore_plan(cf_run *run, const cf_restore_opts *o, json_t **plan);
/* The first --only name the set's components (a JSON array) lack, or NULL. */
const char *cf_restore_only_missing(const cf_restore_opts *o, json_t *set_comps);
/* Whether component `name` is restored under o's --only list. */
int cf_restore_only_has(const cf_restore_opts *o, const char *name);

/* Shared by restore and its plan: the components of a set in restore
 * order (the policy's declaration order, then components only the set
 * has, object stores last), filtered by --only; new reference in
 * *ordered; returns the count. */
size_t cf_restore_order(const cf_policy *p, json_t *set_comps, const cf_restore_opts *o,
                        json_t **ordered);
/* Every --map is NAME=VALUE with NAME among comps; -1 with cf_error. */
int cf_restore_check_maps(const cf_restore_opts *o, json_t *comps);
/* The VALUE of --map NAME=VALUE for a component, or NULL. */
const char *cf_restore_map(const cf_restore_opts *o, const char *name);
/* p made absolute against the working directory (malloc'd). */
char *cf_abspath(const char *p);
/* 1 if path is a directory with at least one entry. */
int cf_dir_nonempty(const char *path);

/* A coffer_dump_source over the streams of one database component of a
 * set (used by restore and verify --read-data). */
typedef struct cf_dbsource cf_dbsource;
int cf_dbsource_load(cf_repo *repo, const char *set_id, const char *component, cf_dbsource **out);
coffer_dump_source *cf_dbsource_api(cf_dbsource *s);
void cf_dbsource_free(cf_dbsource *s);

/* The ".coffer-previous-SET" directories in root: what in-place restores
 * (and --force restores) moved aside. Names only, sorted; 0 or -1. */
int cf_previous_list(const char *root, char ***names, size_t *n);


#endif
