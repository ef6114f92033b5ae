/*
 * Application checks (the policy's checks:), run after a restore or a
 * rehearsal against what was restored: queries through the database
 * driver's query_target, paths resolved beneath the restored tree without
 * following symbolic links, object keys looked up among the objects the
 * set recorded.
 *
 *   row_counts  the rows.* counts the set recorded equal the restored
 *               database's (taken from the driver's verify results)
 *   references  every path the query yields exists (column 2: size,
 *               column 3: lowercase hex SHA-256, each when not NULL)
 *   orphans     regular files under the component that no row references
 *   sql         the query returns no rows; each row is a problem
 *
 * Memory is bounded whatever the row count, except orphans' 8 bytes per
 * referenced path (a sorted array of 64-bit path hashes).
 *
 * A check's timeout is enforced between rows (the row callback stops the
 * query once it is exceeded) and, for a statement still computing, through
 * the host's cancelled() of the driver instance, which turns true at the
 * deadline (drivers that poll it cancel the statement on the server).
 */
#ifndef CF_CHECKS_H
#define CF_CHECKS_H

#include <jansson.h>

#include "engine/restore.h"
#include "engine/run.h"

typedef struct cf_checks_env {
    cf_run *run;               /* policy, repo */
    const char *set_id;
    const char *root;          /* restore root (files components land here unless mapped) */
    const cf_restore_opts *ro; /* its maps: a files component mapped to DIR is checked there,
                                  a database component's map is its query target; may be NULL */
    json_t *driver_checks;     /* the restore report's "checks" array (verify results:
                                  {"component","check","ok","detail"}); may be NULL */
} cf_checks_env;

/* Run every check of the policy. Appends one entry per check to out (a
 * JSON array):
 *   {"name","type","level":"fail"|"warn","status":"pass"|"warn"|"fail"|"error",
 *    "rows":N,"problems":N,"first":[up to `show` strings],"detail":"..."}
 * and logs one line per check ("check NAME: PASS (N rows)").
 * Returns the number of checks that failed (status fail or error), or -1
 * when nothing could run (cf_error). */
int cf_checks_run(const cf_checks_env *e, json_t *out);

/* How a references check reads a row's path (shared with the backup's
 * reference verification, engine/refcheck.h): prefix + value made
 * relative to the policy root, a pointer into buf, or NULL (why says:
 * "outside the policy root", "not a plain path"). */
const char *cf_check_ref_path(const cf_policy *p, const cf_app_check *ck, const char *value,
                              cf_buf *buf, const char **why);
/* Is rel one of paths, below one, or is "." among them? */
int cf_check_in_paths(const cf_strlist *paths, const char *rel);

#endif
