/*
 * The policy's validate commands, run after a restore or a rehearsal with
 * the restored environment: where the files landed and where each
 * database component was restored, as environment variables and as
 * placeholders in the command text. A command never learns the
 * production database's location unless that is what was restored.
 *
 * Environment of each command (besides cf_child_env's):
 *   COFFER_RESTORE_ROOT, COFFER_SET_ID, COFFER_POLICY_ROOT
 *   COFFER_DB_<NAME>_URL   server database: the restore target without
 *                          password; file database: sqlite://<path>
 *   COFFER_DB_<NAME>_PATH  file database: absolute path of the restored file
 *   COFFER_DB_<NAME>_PASSWORD_FILE  only for components listed in the
 *                          command's `credentials`: /dev/fd/N, a sealed 0600
 *                          memory file holding the password that the command
 *                          inherits (never on disk, gone with the command)
 * <NAME> is the component name upper-cased, other characters than letters
 * and digits turned into '_'.
 * Placeholders in `run`, replaced by the shell-quoted value: {root},
 * {set}, {policy_root}, {db.NAME.url}, {db.NAME.path}; "{{" is a literal
 * "{". Any other text in braces is left alone (shell and awk use them).
 */
#ifndef CF_VALIDATE_H
#define CF_VALIDATE_H

#include <jansson.h>

#include "policy/policy.h"

typedef struct cf_restored_db {
    char *name;
    char *url;  /* without password */
    char *path; /* file databases: absolute restored path; else NULL */
    char *target; /* the --map value given to the driver (may hold a password), or NULL */
} cf_restored_db;

typedef struct cf_restored {
    char *root;   /* absolute restore root */
    char *set_id;
    cf_restored_db *db;
    size_t ndb;
} cf_restored;

void cf_restored_init(cf_restored *r, const char *root, const char *set_id);
void cf_restored_add_db(cf_restored *r, const char *name, const char *url, const char *path,
                        const char *target);
const cf_restored_db *cf_restored_find(const cf_restored *r, const char *name);
void cf_restored_free(cf_restored *r);

/* `run` with its placeholders replaced (malloc'd), or NULL with cf_error
 * set for a {db.NAME.x} naming no restored database or a path asked of a
 * server database. */
char *cf_validate_expand(const char *run, const cf_restored *r, const cf_policy *p);

/* Run every validate command of p in r->root; appends one object per
 * command to `out` ({"name","run","exit","ok","output"[, "error"]}).
 * Returns the number of commands that failed. */
int cf_validate_run(const cf_policy *p, const cf_restored *r, json_t *out);

#endif
