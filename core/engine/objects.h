/*
 * object_store components: an application's bucket, part of the boundary.
 *   protect: versioning  the bucket must have versioning Enabled; the set
 *                        records every key with its version id, size and
 *                        ETag. Restore reports versions that are gone and,
 *                        with --rollback-objects, makes every recorded
 *                        version current again and deletes keys created
 *                        after the set.
 *   protect: copy        the objects' bytes go into the repository (for
 *                        buckets without versioning).
 */
#ifndef CF_OBJECTS_H
#define CF_OBJECTS_H

#include <jansson.h>

#include "engine/ingest.h"
#include "engine/manifest.h"
#include "engine/run.h"

/* Open the component's storage instance. */
int cf_objects_open(const cf_component *c, const char *root, cf_store **out);

/* Before anything is stopped: the bucket is reachable and, for
 * protect: versioning, has versioning Enabled. */
int cf_objects_preflight(cf_run *run, const cf_component *c);

/* Capture: write CF_ENT_OBJECT entries. comp_json receives counts. */
int cf_objects_backup(cf_run *run, const cf_component *c, cf_ingest *g, cf_mwriter *mw,
                      json_t *comp_json);

typedef struct cf_objects_restore_opts {
    int rollback;      /* --rollback-objects */
    int write_back;    /* copy mode: write objects into the bucket (in place) */
    const char *dir;   /* copy mode, separate root: write objects as files here */
} cf_objects_restore_opts;

/* Restore/check one component of a set. Problems are appended to
 * `checks` (array of {check, ok, detail}); returns -1 on an error that
 * stopped the restore, else the number of problems. */
long cf_objects_restore(cf_run *run, const char *set_id, const cf_component *c,
                        const cf_objects_restore_opts *o, json_t *checks);

#endif
