/*
 * coffer export: one set as a plain tar archive that stock tools restore,
 * without coffer. Files components go under files/ with their recorded
 * metadata (owner ids and names, mode, times to the nanosecond, xattrs,
 * symbolic and hard links), each database component in its engine's
 * native form under databases/ (engine/native.h), and RESTORE.txt, first
 * in the archive, says how to put everything back in the policy's order.
 */
#ifndef CF_ENGINE_EXPORT_H
#define CF_ENGINE_EXPORT_H

#include <jansson.h>

#include "engine/run.h"

/* Writes set_id to `to`: a file path, or "-" for stdout. A file is
 * written to a private temporary beside it and renamed into place only
 * when complete and synced, so a failure (a full disk) leaves no archive
 * under that name. *report (may be NULL) gets what was written and what
 * was left out. 0 or -1 with cf_error. */
int cf_export(cf_run *run, const char *set_id, const char *to, json_t **report);

#endif
