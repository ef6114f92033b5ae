/*
 * Being told how a run went, without a wrapper script: the policy's
 * hooks (before, after, on_success, on_failure commands), pings to a
 * healthchecks-style service (start, success, failure with the last log
 * lines) and a Prometheus node-exporter textfile, written atomically.
 *
 * Nothing here changes the result of the command it watches: a hook or a
 * ping that fails or hangs past its timeout is reported and the command's
 * exit status stays what it was. Only the `before` hook can stop a backup
 * (before anything of it ran).
 */
#ifndef CF_MONITOR_H
#define CF_MONITOR_H

#include <jansson.h>

#include "policy/policy.h"

typedef struct cf_watch cf_watch;

/* Start watching `command` ("backup", "check") of policy p (borrowed; it
 * must outlive the watch). For a backup: runs the `before` hook and sends
 * the start ping. Returns 0, or -1 with cf_error set when the `before` hook
 * failed (the backup must not run; still call cf_watch_end). */
int cf_watch_begin(const cf_policy *p, const char *command, cf_watch **out);

/* The run is over: exit_code as the command returns it, error (NULL on
 * success), the command's summary (borrowed; the numbers of `backup
 * --json` or `check --json`) and, for a backup, the new set id. Runs the
 * after/on_success/on_failure hooks, sends the success or failure ping,
 * updates the metrics file. Frees the watch. */
void cf_watch_end(cf_watch *w, int exit_code, const char *error, json_t *summary,
                  const char *set_id);

/* Metrics file: merge `samples` (metric name -> number) into the file,
 * keeping the values of other commands already there. 0, or -1 with
 * cf_error set. */
int cf_metrics_update(const char *file, const char *policy, json_t *samples);

#endif
