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

/* Number of worker threads for reading/hashing/compressing. */
int cf_worker_count(void);

#endif
