/*
 * Recovery from a bare repository. Each set records the policy it was
 * made with (header member "policy_record", docs/repository-format.md
 * section 9): the policy after ${VAR} expansion with every secret and
 * every reference to a secret removed, the restore order and where each
 * database lives. From that record and a repository location, coffer
 * lists, prints and restores sets without the policy file.
 */
#ifndef CF_RECOVER_H
#define CF_RECOVER_H

#include <jansson.h>

#include "engine/run.h"
#include "policy/policy.h"

/* The rule for what a record leaves out, in one place.
 *
 * A key is removed, wherever it appears, when it
 *  - is "password" or starts with "password" (password_env, password_file,
 *    password_command, ...), or ends with "password" (sslpassword);
 *  - starts with "passphrase" (a target's passphrase_env/_file/_command);
 *  - ends in "_env": it names the variable a secret comes from
 *    (access_key_env, secret_key_env, session_token_env, ...);
 *  - ends in "_file" or "_command" and names a credential: it contains
 *    "pass", "secret", "token", "credential" or "key" (access_key_file,
 *    secret_key_file, session_token_file; ssl_key, a path, is kept).
 * In every string value:
 *  - URL userinfo "user:password@" becomes "user@";
 *  - parameters whose name the key rule removes (password=..., passfile=...,
 *    password_env=..., sslpassword=...) are dropped from a URL query
 *    ("?a=1&password=x") and from a keyword list ("host=h password=x").
 * Returns 1 when the key is removed. */
int cf_recover_secret_key(const char *key);
/* v with the value rule applied (malloc'd); *changed set when it differs. */
char *cf_recover_strip_value(const char *v, int *changed);
/* Apply the rule to a JSON tree in place; each removal is appended to
 * `removed` (if not NULL) as {"path": "components[1]", "key": "password_env"}
 * or {"path": "components[1]", "key": "url", "value": true} for a value
 * that lost a part. */
void cf_recover_strip(json_t *tree, json_t *removed);

/* The record of a loaded policy (re-reads p->file, expands every scalar,
 * strips secrets). NULL with cf_error set when the file cannot be read. */
json_t *cf_policy_record(const cf_policy *p);

/* The recorded policy as YAML an operator can save and load with -p:
 * every removed key is shown as a comment saying what to provide. */
char *cf_recover_yaml(json_t *record);

/* A policy from a record, its targets replaced by one target at
 * `location` (keeping the recorded options of a target at the same
 * location), checked against the drivers. 0 or -1 with cf_error. */
int cf_recover_policy(json_t *record, const char *location, cf_policy **out);
/* For a record read from an unencrypted repository (anyone who can write
 * there could have written it): removes, in place, every key that makes
 * coffer run a program: "hooks", "validate", the consistency stop/start
 * commands, and driver options ending in "_bin_dir", "_bin" or "_command". */
void cf_recover_untrusted(json_t *record);
/* A files-only policy for a set without a record: its files components,
 * read from the set header. */
int cf_recover_policy_files(json_t *header, const char *location, cf_policy **out);

/* Open the repository at location and pick a set by id (unique prefix)
 * or "latest" (the newest set in the repository, whatever its policy).
 * *id_out and *header_out are the set's. */
int cf_recover_set(cf_run *run, const char *spec, char **id_out, json_t **header_out);

#endif
