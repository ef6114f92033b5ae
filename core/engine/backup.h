#ifndef CF_BACKUP_H
#define CF_BACKUP_H

#include <jansson.h>

#include "engine/run.h"

/* Back up the policy's boundary into run's repository. On success returns
 * 0, *set_id is the new set and *summary a JSON object of totals. On
 * failure the repository is as it was (no set, no new pack or index) --
 * except when only the maintenance start command failed: the set is
 * complete and kept (*set_id is set), and -1 reports the start failure. */
int cf_backup(cf_run *run, char **set_id, json_t **summary);

/* A dry run of cf_backup: the same walk, database dumps, chunking,
 * compression and deduplication against the index, but nothing reaches
 * the repository (no pack, index or set; run holds no lock) and no stop
 * or start command runs. *summary: files, bytes, new_bytes (not in the
 * repository yet), stored_bytes (what they would take there). */
int cf_backup_dry_run(cf_run *run, json_t **summary);

/* Number of worker threads for reading/hashing/compressing. */
int cf_worker_count(void);

#endif
