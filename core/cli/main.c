/*
 * coffer command line. Every command prints one clear line on failure
 * ("coffer: error: ...", through cli_error) and exits 0 ok, 1 failed,
 * 2 usage/policy error, 3 problems found (verify, restore checks). With
 * --json it prints one JSON document: its report, or the error object
 * main() adds for a failure (docs/json.md).
 */
#include <jansson.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/immutable.h"
#include "engine/backup.h"
#include "engine/copy.h"
#include "engine/forget.h"
#include "engine/manifest.h"
#include "engine/monitor.h"
#include "engine/progress.h"
#include "engine/proof.h"
#include "engine/rehearse.h"
#include "engine/restore.h"
#include "engine/run.h"
#include "engine/select.h"
#include "engine/verify.h"
#include "plugin/host.h"
#include "plugin/registry.h"
#include "policy/policy.h"
#include "util/util.h"

static const char *usage_main =
    "usage: coffer [--plugin-dir DIR]... [--repo LOCATION] [-v|-q] [--no-progress] COMMAND [ARGS]\n"
    "\n"
    "Policy-driven backups of whole application boundaries (files + databases).\n"
    "\n"
    "commands:\n"
    "  init     -p POLICY [--target NAME] [--encryption repokey|none]  create the repository\n"
    "  backup   -p POLICY [--target NAME] [--json] [--dry-run]   capture a new set\n"
    "  sets     -p POLICY [--target NAME] [--json]   list sets\n"
    "  restore  -p POLICY [--set ID|latest] (--to DIR | --in-place) [--only NAME]...\n"
    "           [--map NAME=VALUE]... [--force] [--no-validate] [--dry-run]  restore one set\n"
    "           [--include PATH|GLOB]... [--exclude PATH|GLOB]... [--salvage]  or part of it\n"
    "  dump     -p POLICY [--set ID|latest] PATH      write one file of a set to stdout\n"
    "           or --component NAME: a database in its native form (SQLite, pg_dump)\n"
    "  verify   -p POLICY [--set ID|latest|all] [--read-data] [--json]   check one set\n"
    "  rehearse -p POLICY [--set ID|latest|unproven|all] [--keep] [--scratch NAME=URL]...\n"
    "           [--json]   prove a set: restore into scratch, run checks and validate\n"
    "  forget   -p POLICY [--dry-run] [--keep-* N]   apply retention, remove sets\n"
    "  forget   -p POLICY [--dry-run] SET...         remove exactly these sets\n"
    "  copy     -p POLICY --from T --to T [--set ID|latest|all]  copy sets between targets\n"
    "  unlock   -p POLICY [--all]                    remove stale repository locks\n"
    "  check    -p POLICY [--read-data | --read-data-subset N%]  check the whole repository\n"
    "  prune    -p POLICY [--dry-run] [--max-unused PERCENT]     remove unreferenced data\n"
    "  key      list|add|remove ID|passwd -p POLICY   manage passphrases of an encrypted repository\n"
    "  extend-locks -p POLICY [--target NAME]        extend the locks of an immutable target\n"
    "  mount    -p POLICY [--target NAME] [--cache-size SIZE] MOUNTPOINT  browse sets read-only\n"
    "  ls       -p POLICY [--set ID|latest] [PATH] [--long] [--recursive]  list a set's entries\n"
    "  find     -p POLICY PATTERN... [--set ID|all|latest]  which sets hold matching paths\n"
    "  diff     -p POLICY SET1 SET2 [PATH]           what changed between two sets\n"
    "  stats    -p POLICY [--set ID]                 repository and per-set sizes, deduplication\n"
    "  export   -p POLICY [--set ID|latest] --to FILE.tar|-   a plain tar stock tools restore\n"
    "  plugins  [--describe NAME]                    list drivers or show options\n"
    "  policy   check FILE                           validate a policy\n"
    "  policy   show --set ID (-p POLICY | with --repo)  print the policy a set records\n"
    "  help     [COMMAND]                            describe coffer or one command\n"
    "\n"
    "Every command takes --json: one JSON document on stdout (on failure an object\n"
    "{\"error\": {\"message\", \"exit\", \"command\"}}), as docs/json.md describes.\n"
    "A command refuses (exit status 2) every option and argument it does not use;\n"
    "--dry-run exists where a command changes something (backup, restore, forget,\n"
    "prune) and nowhere else.\n"
    "\n"
    "global options (-v, -q and --no-progress may also follow the command):\n"
    "  --plugin-dir DIR   also load drivers from DIR (repeatable; also COFFER_PLUGIN_PATH)\n"
    "  --repo LOCATION    work on the repository at LOCATION (a directory or\n"
    "                     s3://BUCKET/PREFIX) with the policy each set records, no -p:\n"
    "                     `sets`, `restore --set ID --to DIR`, `policy show --set ID`\n"
    "  -v, --verbose      more log lines;  -q, --quiet  errors only\n"
    "  --no-progress      no progress bar\n"
    "  --version, --help\n"
    "\n"
    "`coffer COMMAND --help` describes one command.\n";

#include "cli/cli.h"
#include "cli/cmd_recover.h"

#define USE_POLICY {OPT_POLICY, "FILE", "the policy (required)", 0}
#define USE_TARGET {OPT_TARGET, "NAME", "the policy's target to use (default: the first)", 0}
#define USE_JSON(what) {OPT_JSON, NULL, what, 0}
#define USE_END {-1, NULL, NULL, 0}

/* ---- init --------------------------------------------------------------- */

static const cli_spec spec_init = {
    "init",
    "usage: coffer init -p POLICY [--target NAME] [--encryption repokey|none] [--json]\n"
    "Create an empty repository at every target of the policy (or one).\n"
    "Refuses a location that already holds a repository.\n"
    "--encryption repokey (the default when the target has a passphrase source:\n"
    "$COFFER_PASSPHRASE, or its passphrase_env / passphrase_file / passphrase_command)\n"
    "encrypts everything with a random key wrapped under the passphrase;\n"
    "--encryption none creates an unencrypted repository, and must be asked for.\n"
    "There is no --dry-run: `coffer policy check` checks the policy, and init\n"
    "itself refuses to touch a location that holds a repository.\n",
    (const cli_use[]){USE_POLICY,
                      {OPT_TARGET, "NAME", "create only this target's repository", 0},
                      {OPT_ENCRYPTION, "repokey|none", "encrypted (default) or not", 0},
                      USE_JSON("print the repositories created as JSON"),
                      USE_END},
    0};

static int cmd_init(int argc, char **argv)
{
    args a = {0};
    if (parse(argc, argv, &spec_init, &a) != 0) {
        args_free(&a);
        return CF_EXIT_USAGE;
    }
    if (need_policy("init", &a))
        return CF_EXIT_USAGE;
    if (a.encryption && strcmp(a.encryption, "repokey") != 0 && strcmp(a.encryption, "none") != 0)
        return usage_error("init", "--encryption must be repokey or none");
    cf_policy *p;
    if (cf_run_load_policy(a.policy, &p) != 0)
        return die(CF_EXIT_USAGE);
    int rc = CF_EXIT_OK;
    json_t *created = json_array();
    for (size_t i = 0; i < p->ntargets && rc == CF_EXIT_OK; i++) {
        const cf_target *t = &p->targets[i];
        if (a.target && strcmp(a.target, t->name) != 0)
            continue;
        cf_passphrase_src ps;
        cf_run_passphrase(t, &ps);
        cf_repo_params prm = {.pass = &ps};
        if (a.encryption ? strcmp(a.encryption, "repokey") == 0 : cf_passphrase_available(&ps)) {
            prm.encryption = CF_REPO_ENC_REPOKEY;
        } else if (!a.encryption) {
            /* Unencrypted only when asked for: never by a missing variable. */
            char d[1100];
            cf_fail("init target '%s' (%s): no passphrase (%s is not set and the target has no "
                    "passphrase_file or passphrase_command); set one to create an encrypted "
                    "repository, or pass --encryption none for an unencrypted one",
                    t->name, t->location, cf_passphrase_describe(&ps, d, sizeof d));
            rc = die(CF_EXIT_USAGE);
            break;
        }
        cf_run run = {.policy = p};
        if (cf_run_open_target(&run, t, 0) != 0 || cf_store_prepare(run.store, 1) != 0 ||
            (t->immutable && cf_immutable_open(&run) != 0) || cf_repo_init(run.store, &prm) != 0) {
            cf_error_prefix("init target '%s' (%s)", t->name, t->location);
            rc = die(CF_EXIT_FAILED);
        } else if (a.json) {
            char d[1100];
            json_array_append_new(
                created,
                json_pack("{s:s,s:s,s:s,s:s?}", "name", t->name, "location", t->location,
                          "encryption", prm.encryption ? "repokey" : "none", "passphrase_source",
                          prm.encryption ? cf_passphrase_describe(&ps, d, sizeof d) : NULL));
        } else {
            char d[1100];
            printf("created repository at target '%s' (%s), %s%s%s\n", t->name, t->location,
                   prm.encryption ? "encrypted (repokey; passphrase from " : "unencrypted",
                   prm.encryption ? cf_passphrase_describe(&ps, d, sizeof d) : "",
                   prm.encryption ? ")" : "");
        }
        cf_store_free(run.store);
    }
    if (a.target && !cf_policy_target(p, a.target)) {
        cf_fail("%s: no target named '%s'", a.policy, a.target);
        rc = die(CF_EXIT_USAGE);
    }
    if (a.json && rc == CF_EXIT_OK) {
        json_t *j = json_pack("{s:o}", "targets", created);
        print_json(j);
        json_decref(j);
    } else {
        json_decref(created);
    }
    cf_policy_free(p);
    args_free(&a);
    return rc;
}

/* Copy sets from run's (open, locked) target to another target, opened
 * and locked once for all of them; adds {"id", "target", "copied",
 * "bytes_sent"} per set to done when given. Stops at the first set that
 * fails (the sets before it stay copied). */
static int copy_to_target(cf_run *run, const cf_target *t, const char *const *ids, size_t n,
                          json_t *done)
{
    cf_run dst = {.policy = run->policy};
    int rc = cf_run_open_target(&dst, t, 1);
    if (rc == 0)
        rc = cf_run_lock(&dst, 0, "copy");
    cf_copy_ids *map = cf_copy_ids_new();
    if (rc == 0)
        cf_copy_ids_seed(map, run->repo, dst.repo, run->policy->name);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *id = ids[i];
        int copied = 0;
        uint64_t sent = 0;
        cf_repo_stats s0, s1;
        cf_repo_get_stats(run->repo, &s0);
        double t0 = cf_now();
        rc = cf_copy_set(run->repo, dst.repo, id, map, &copied, &sent);
        cf_repo_get_stats(run->repo, &s1);
        if (rc == 0 && copied) {
            double dt = cf_now() - t0;
            uint64_t rd = s1.bytes_read - s0.bytes_read;
            cf_log(CF_LOG_DEBUG, "set %s: read %.1f MiB of packs in %llu ranged read(s) in %.1f s",
                   id, (double)rd / 1048576.0, (unsigned long long)(s1.reads - s0.reads), dt);
        }
        if (rc == 0) {
            char b[32];
            cf_log(CF_LOG_INFO, "set %s %s target '%s' (%s sent)", id,
                   copied ? "copied to" : "already at", t->name, cf_human_bytes(sent, b, sizeof b));
            if (done)
                json_array_append_new(done, json_pack("{s:s,s:s,s:b,s:I}", "id", id, "target",
                                                      t->name, "copied", copied, "bytes_sent",
                                                      (json_int_t)sent));
        }
    }
    cf_copy_ids_free(map);
    if (rc == 0 && t->immutable && dst.roll_due)
        rc = cf_immutable_roll(&dst);
    cf_lock_release(dst.lock);
    if (dst.repo)
        cf_repo_close(dst.repo);
    cf_store_free(dst.store);
    return rc;
}

/* ---- backup --------------------------------------------------------------- */

static const cli_spec spec_backup = {
    "backup",
    "usage: coffer backup -p POLICY [--target NAME] [--json] [--dry-run]\n"
    "Capture the policy's boundary (maintenance: stop, capture, start) as one\n"
    "new set in the target's repository (default: the first target). Prints\n"
    "the set id; --json prints a summary object (with the errors, if the set was\n"
    "written but the start command or a copy failed). A policy with several targets\n"
    "then copies the set to the others (not with --target).\n"
    "--dry-run reads, dumps and chunks everything like a backup and prints what\n"
    "would be stored (files, bytes, bytes the repository lacks), but writes\n"
    "nothing, takes no lock and runs no stop/start command.\n"
    "Online, the files are read before and after the database snapshots and the\n"
    "policy's references checks run on the captured snapshot: a set that lacks\n"
    "referenced files is published marked inconsistent (exit 3), or refused with\n"
    "consistency.on_inconsistent: fail.\n",
    (const cli_use[]){USE_POLICY,
                      USE_TARGET,
                      USE_JSON("print a summary object"),
                      {OPT_DRY_RUN, NULL, "capture without storing: print what would be stored", 0},
                      USE_END},
    0};

/* The same fields in every summary: "incomplete" and "unreadable_paths"
 * also when nothing was left out. */
static void typed_summary(json_t *sum)
{
    json_object_set_new(sum, "inconsistent",
                        json_boolean(json_is_true(json_object_get(sum, "inconsistent"))));
    if (!json_is_array(json_object_get(sum, "missing_paths")))
        json_object_set_new(sum, "missing_paths", json_array());
    if (!json_is_integer(json_object_get(sum, "missing_references")))
        json_object_set_new(sum, "missing_references", json_integer(0));
    json_object_set_new(sum, "incomplete",
                        json_boolean(json_is_true(json_object_get(sum, "incomplete"))));
    if (!json_is_array(json_object_get(sum, "unreadable_paths")))
        json_object_set_new(sum, "unreadable_paths", json_array());
}

static int backup_dry_run(args *a)
{
    cf_run *run;
    int orc = cli_open_parsed("backup", 1, CLI_LOCK_NONE, a, &run);
    if (orc)
        return orc;
    json_t *sum = NULL;
    int rc = cf_backup_dry_run(run, &sum);
    const cf_policy *p = run->policy;
    if (rc != 0) {
        cf_run_close(run);
        return die(CF_EXIT_FAILED);
    }
    if (a->json) {
        typed_summary(sum);
        print_json(sum);
    } else {
        char b1[32], b2[32], b3[32];
        printf("dry run: a backup of policy '%s' to target '%s' would store %lld files, %s; "
               "%s new to the repository (%s stored); nothing was written\n",
               p->name, run->target->name,
               (long long)json_integer_value(json_object_get(sum, "files")),
               cf_human_bytes((uint64_t)json_integer_value(json_object_get(sum, "bytes")), b1, 32),
               cf_human_bytes((uint64_t)json_integer_value(json_object_get(sum, "new_bytes")), b2,
                              32),
               cf_human_bytes((uint64_t)json_integer_value(json_object_get(sum, "stored_bytes")),
                              b3, 32));
        if (p->mode == CF_MODE_MAINTENANCE)
            printf("dry run: a real backup would stop the application (`%s`) during the capture "
                   "and start it again (`%s`); neither ran\n",
                   p->stop_cmd, p->start_cmd);
    }
    json_decref(sum);
    cf_run_close(run);
    return CF_EXIT_OK;
}

/* Sets and stored bytes of the repository, for the metrics and the
 * --json summary of a backup (cf_repo_usage: no listing of every pack). */
typedef struct repo_stats {
    cf_run *run;
    json_t *sum;
} repo_stats;

static void add_repo_stats(void *ud)
{
    cf_run *run = ((repo_stats *)ud)->run;
    json_t *sum = ((repo_stats *)ud)->sum;
    uint64_t sets = 0, bytes = 0;
    if (cf_repo_usage(run->repo, &sets, &bytes) != 0) {
        cf_log(CF_LOG_WARN, "repository size not known: %s", cf_error());
        return;
    }
    json_object_set_new(sum, "repository", json_pack("{s:I,s:I}", "sets", (json_int_t)sets,
                                                     "size_bytes", (json_int_t)bytes));
}

/* The engine keeps no summary when the start command failed after the set
 * was written: the set's manifest has its figures, all but the vanished
 * files (null: not known). */
static json_t *summary_from_manifest(cf_run *run, const char *id, double duration)
{
    json_t *h = NULL;
    if (cf_manifest_header(run->repo, id, &h) != 0)
        h = json_object();
    json_t *tot = json_object_get(h, "totals");
    json_t *sum = json_pack("{s:s,s:s}", "set", id, "policy", run->policy->name);
    static const char *const keys[] = {"files", "bytes", "new_bytes", "stored_bytes",
                                       "unchanged_files"};
    for (size_t i = 0; i < CF_ARRAY_LEN(keys); i++)
        json_object_set_new(sum, keys[i],
                            json_integer(json_integer_value(json_object_get(tot, keys[i]))));
    json_object_set_new(sum, "duration", json_real(duration));
    json_object_set_new(sum, "vanished_files", json_null());
    json_object_set_new(sum, "unreadable",
                        json_integer(json_integer_value(json_object_get(tot, "unreadable"))));
    if (json_is_true(json_object_get(h, "incomplete")))
        json_object_set_new(sum, "incomplete", json_true());
    if (json_is_array(json_object_get(h, "unreadable")))
        json_object_set(sum, "unreadable_paths", json_object_get(h, "unreadable"));
    json_object_set_new(sum, "inconsistent",
                        json_boolean(json_is_true(json_object_get(h, "inconsistent"))));
    json_object_set_new(sum, "missing_references",
                        json_integer(json_integer_value(json_object_get(h, "missing_references"))));
    json_t *refs = json_object_get(h, "references");
    json_object_set_new(sum, "refetched",
                        json_integer(json_integer_value(json_object_get(refs, "refetched"))));
    json_t *paths = json_object_get(refs, "paths");
    json_object_set_new(sum, "missing_paths", paths ? json_incref(paths) : json_array());
    json_decref(h);
    return sum;
}

static int backup_run(args *a, char **id_out, json_t **sum_out)
{
    cf_run *run;
    /* locked as the repository opens; the previous set is what the
     * backup looks for first, listed once the lock is written */
    int orc = cli_open_parsed("backup", CF_RUN_REPO | CF_RUN_WARM, CLI_LOCK_SHARED, a, &run);
    if (orc)
        return orc;
    char *id = NULL;
    json_t *sum = NULL;
    double t0 = cf_now();
    int rc = cf_backup(run, &id, &sum);
    if (rc != 0 && !id) {
        cf_run_close(run);
        return die(CF_EXIT_FAILED);
    }
    /* rc != 0 with a set: only the start command failed; the set is good
     * and still goes to the other targets. */
    char start_err[2048] = "";
    if (rc != 0)
        snprintf(start_err, sizeof start_err, "%s", cf_error());
    /* An immutable target: the set's objects are locked; when the lock
     * epoch ends too soon, every live object's lock is extended now. */
    char lock_err[2048] = "";
    int rolled = 0;
    if (run->target->immutable && run->roll_due) {
        if (cf_immutable_roll(run) != 0)
            snprintf(lock_err, sizeof lock_err,
                     "set %s is saved, but extending the locks failed: %s; run `coffer "
                     "extend-locks -p %s --target %s`",
                     id, cf_error(), a->policy, run->target->name);
        else
            rolled = 1;
    }
    /* Multi-site: the first target gets the backup, the others a copy. */
    int copy_failed = 0;
    char copy_err[2048] = "";
    json_t *errors = json_array(), *copies = json_array();
    if (start_err[0])
        json_array_append_new(errors, json_string(start_err));
    if (lock_err[0]) {
        cli_error("%s", lock_err);
        json_array_append_new(errors, json_string(lock_err));
    }
    for (size_t i = 0; !a->target && i < run->policy->ntargets; i++) {
        const cf_target *t = &run->policy->targets[i];
        if (t == run->target)
            continue;
        if (copy_to_target(run, t, (const char *const[]){id}, 1, copies) != 0) {
            snprintf(copy_err, sizeof copy_err, "set %s: copy to target '%s' failed: %s", id,
                     t->name, cf_error());
            cli_error("%s", copy_err);
            json_array_append_new(errors, json_string(copy_err));
            copy_failed = 1;
        }
    }
    /* only printed: hooks and metrics see what the engine reported */
    json_t *made = !sum && a->json ? summary_from_manifest(run, id, cf_now() - t0) : NULL;
    if (made)
        sum = made;
    /* The set is stored (and copied): the lock goes while the repository's
     * figures are listed, each a round trip on a distant bucket. */
    if (sum)
        cf_run_unlock_during(run, add_repo_stats, &(repo_stats){run, sum});
    if (sum && run->target->immutable)
        json_object_set_new(sum, "retention",
                            json_pack("{s:s,s:I,s:b,s:I}", "mode",
                                      run->target->lock_mode == COFFER_LOCK_COMPLIANCE
                                          ? "compliance"
                                          : "governance",
                                      "locked_until", (json_int_t)run->store->retain_until,
                                      "extended", rolled, "requests",
                                      (json_int_t)run->retention_requests));
    if (sum && a->json) {
        /* The set exists whatever failed after it: the summary says what. */
        typed_summary(sum);
        json_object_set(sum, "copies", copies);
        json_object_set(sum, "errors", errors);
    }
    json_decref(copies);
    json_decref(errors);
    if (!sum) {
        printf("%s\n", id);
    } else if (a->json) {
        print_json(sum);
    } else {
        char b1[32], b2[32], b3[32];
        cf_log(CF_LOG_INFO, "set %s: %lld files, %s, %s new, %s stored, %.1f s", id,
               (long long)json_integer_value(json_object_get(sum, "files")),
               cf_human_bytes((uint64_t)json_integer_value(json_object_get(sum, "bytes")), b1, 32),
               cf_human_bytes((uint64_t)json_integer_value(json_object_get(sum, "new_bytes")), b2,
                              32),
               cf_human_bytes((uint64_t)json_integer_value(json_object_get(sum, "stored_bytes")),
                              b3, 32),
               json_real_value(json_object_get(sum, "duration")));
        printf("%s\n", id);
    }
    *id_out = id;
    if (made) {
        json_decref(made);
        sum = NULL;
    }
    *sum_out = sum;
    if (run->target->immutable && !a->json) {
        char until[64];
        cf_utc_time(run->store->retain_until, until, sizeof until);
        cf_log(CF_LOG_INFO, "set %s: locked until %s%s (%llu retention requests)", id, until,
               rolled ? ", every live object's lock extended" : "",
               (unsigned long long)run->retention_requests);
    }
    cf_run_close(run);
    if (lock_err[0]) {
        cf_fail("%s", lock_err);
        return CF_EXIT_FAILED;
    }
    if (start_err[0]) {
        cli_error("%s", start_err);
        cf_fail("%s", start_err);
        return CF_EXIT_FAILED;
    }
    if (copy_failed) {
        cf_fail("%s", copy_err);
        return CF_EXIT_FAILED;
    }
    if (sum && json_is_true(json_object_get(sum, "inconsistent"))) {
        /* Published, marked: everything that could be captured is there. */
        cf_fail("set %s is inconsistent: its database references %lld path(s) it lacks (listed "
                "above); `coffer sets` marks it, consistency.on_inconsistent: fail refuses such "
                "a set",
                id, (long long)json_integer_value(json_object_get(sum, "missing_references")));
        cli_error("%s", cf_error());
        return CF_EXIT_PROBLEMS;
    }
    if (sum && json_is_true(json_object_get(sum, "incomplete"))) {
        /* Like restic and borg: everything else is in the set, exit 3. */
        cf_fail("set %s is incomplete: %lld path(s) could not be read and are not in it "
                "(listed above; on_unreadable: fail refuses such a set)",
                id, (long long)json_integer_value(json_object_get(sum, "unreadable")));
        cli_error("%s", cf_error());
        return CF_EXIT_PROBLEMS;
    }
    return CF_EXIT_OK;
}

static int cmd_backup(int argc, char **argv)
{
    args a = {0};
    if (parse(argc, argv, &spec_backup, &a) != 0)
        return CF_EXIT_USAGE;
    if (a.dry_run)
        return backup_dry_run(&a);
    if (need_policy("backup", &a))
        return CF_EXIT_USAGE;
    /* The policy first, on its own: its hooks and monitor hear about every
     * failure after this point, an unreachable repository included. */
    cf_policy *pol;
    if (cf_run_load_policy(a.policy, &pol) != 0)
        return die(CF_EXIT_USAGE);
    cf_watch *w;
    char *id = NULL;
    json_t *sum = NULL;
    int rc;
    if (cf_watch_begin(pol, "backup", &w) != 0)
        rc = die(CF_EXIT_FAILED);
    else
        rc = backup_run(&a, &id, &sum);
    char err[2048] = "";
    if (rc != CF_EXIT_OK)
        snprintf(err, sizeof err, "%s", cf_error());
    cf_watch_end(w, rc, rc != CF_EXIT_OK ? err : NULL, sum, id);
    if (sum)
        json_decref(sum);
    free(id);
    cf_policy_free(pol);
    return rc;
}

/* ---- sets ------------------------------------------------------------------ */

static const cli_spec spec_sets = {
    "sets",
    "usage: coffer sets -p POLICY [--target NAME] [--json]\n"
    "List the sets of this policy in the target's repository.\n",
    (const cli_use[]){USE_POLICY, USE_TARGET,
                      USE_JSON("print the sets as JSON, with the databases' recorded metadata"),
                      USE_END},
    0};

/* A database's recorded metadata with typed values: the drivers record
 * strings; counts and sizes become integers, the database list an array.
 * Other values (versions, modes such as "0644") stay strings. */
static int numeric_meta(const char *key)
{
    static const char *const bases[] = {"rows", "size", "server_version_num", "binlog_position"};
    size_t l = strcspn(key, ".");
    for (size_t i = 0; i < CF_ARRAY_LEN(bases); i++)
        if (strlen(bases[i]) == l && strncmp(key, bases[i], l) == 0)
            return 1;
    return 0;
}

static json_t *typed_meta(json_t *meta)
{
    json_t *out = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v)
    {
        const char *s = json_string_value(v);
        char *end;
        if (s && *s && numeric_meta(k) && strspn(s, "0123456789") == strlen(s) && strlen(s) < 19) {
            json_object_set_new(out, k, json_integer((json_int_t)strtoll(s, &end, 10)));
        } else if (s && strcmp(k, "databases") == 0) {
            json_t *arr = json_array();
            char *copy = cf_strdup(s), *save = NULL;
            for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
                json_array_append_new(arr, json_string(t));
            free(copy);
            json_object_set_new(out, k, arr);
        } else {
            json_object_set(out, k, v);
        }
    }
    return out;
}

static int cmd_sets(int argc, char **argv)
{
    if (cli_repo)
        return cmd_sets_repo(argc, argv);
    args a = {0};
    cf_run *run;
    int orc = cli_open(argc, argv, &spec_sets, CF_RUN_REPO | CF_RUN_SETS, CLI_LOCK_NONE, &a, &run);
    if (orc)
        return orc;
    char **ids;
    size_t n;
    if (cf_sets_list(run->repo, &ids, &n) != 0) {
        cf_run_close(run);
        return die(CF_EXIT_FAILED);
    }
    json_t *arr = json_array();
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *h;
        if (cf_manifest_header(run->repo, ids[i], &h) != 0) {
            cf_log(CF_LOG_ERROR, "set %s: %s", ids[i], cf_error());
            /* its policy is unknown: listed with the reason, exit 3 */
            json_array_append_new(arr, json_pack("{s:s,s:s}", "id", ids[i], "error", cf_error()));
            bad++;
            continue;
        }
        const char *pol = json_string_value(json_object_get(h, "policy"));
        if (!pol || strcmp(pol, run->policy->name) != 0) {
            json_decref(h);
            continue;
        }
        json_t *names = json_array();
        size_t k;
        json_t *c;
        json_array_foreach(json_object_get(h, "components"), k, c)
            json_array_append(names, json_object_get(c, "name"));
        json_t *o = json_pack("{s:O,s:O,s:O,s:O,s:O,s:o}", "id", json_object_get(h, "id"),
                              "policy", json_object_get(h, "policy"), "host",
                              json_object_get(h, "host"), "time", json_object_get(h, "time"),
                              "mode", json_object_get(h, "mode"), "components", names);
        json_object_set(o, "totals", json_object_get(h, "totals"));
        json_t *dbmeta = json_object();
        json_array_foreach(json_object_get(h, "components"), k, c)
        {
            if (json_object_get(c, "meta"))
                json_object_set_new(dbmeta, json_string_value(json_object_get(c, "name")),
                                    typed_meta(json_object_get(c, "meta")));
        }
        json_object_set_new(o, "databases", dbmeta);
        json_object_set_new(o, "incomplete",
                            json_boolean(json_is_true(json_object_get(h, "incomplete"))));
        json_t *unr = json_object_get(h, "unreadable");
        json_object_set_new(o, "unreadable", json_is_array(unr) ? json_incref(unr) : json_array());
        int inconsistent = json_is_true(json_object_get(h, "inconsistent"));
        json_t *mp = json_object_get(json_object_get(h, "references"), "paths");
        json_object_set_new(o, "inconsistent", json_boolean(inconsistent));
        json_object_set_new(o, "missing_references",
                            json_integer(json_integer_value(json_object_get(h, "missing_references"))));
        json_object_set_new(o, "missing_paths",
                            inconsistent && json_is_array(mp) ? json_incref(mp) : json_array());
        /* When a rehearsal last proved it, and how the last one went. */
        json_t *last = NULL, *last_ok = NULL;
        if (cf_proof_latest(run->repo, ids[i], &last, &last_ok) != 0)
            cf_log(CF_LOG_WARN, "set %s: cannot list its rehearsals: %s", ids[i], cf_error());
        json_t *proof = json_object();
        json_object_set_new(proof, "proven", json_boolean(last_ok != NULL));
        json_object_set(proof, "last_proven", last_ok ? json_object_get(last_ok, "time") : json_null());
        json_t *lr = NULL;
        if (last) {
            lr = json_pack("{s:O,s:O,s:O}", "time", json_object_get(last, "time"), "ok",
                           json_object_get(last, "ok"), "duration_ms",
                           json_object_get(last, "duration_ms"));
            json_object_set(lr, "checks", json_object_get(last, "checks"));
            json_object_set(lr, "validate", json_object_get(last, "validate"));
            if (json_object_get(last, "error"))
                json_object_set(lr, "error", json_object_get(last, "error"));
        }
        if (lr) /* absent when never rehearsed */
            json_object_set_new(proof, "last_rehearsal", lr);
        json_object_set_new(o, "proof", proof);
        json_array_append_new(arr, o);
        if (!a.json) {
            char b[32];
            json_t *tot = json_object_get(h, "totals");
            printf("%s  %s  %-12s %8lld files  %10s  ", ids[i],
                   json_string_value(json_object_get(h, "time")),
                   json_string_value(json_object_get(h, "host")),
                   (long long)json_integer_value(json_object_get(tot, "files")),
                   cf_human_bytes((uint64_t)json_integer_value(json_object_get(tot, "bytes")), b,
                                  32));
            json_array_foreach(names, k, c) printf("%s%s", k ? "," : "", json_string_value(c));
            if (json_is_true(json_object_get(h, "incomplete")))
                printf("  INCOMPLETE (%lld unreadable)",
                       (long long)json_integer_value(json_object_get(tot, "unreadable")));
            if (inconsistent)
                printf("  INCONSISTENT (%lld referenced paths missing)",
                       (long long)json_integer_value(json_object_get(h, "missing_references")));
            if (last && json_is_true(json_object_get(last, "ok")))
                printf("  proven %s", json_string_value(json_object_get(last, "time")));
            else if (last)
                printf("  rehearsal FAILED %s%s%s", json_string_value(json_object_get(last, "time")),
                       last_ok ? ", proven " : "",
                       last_ok ? json_string_value(json_object_get(last_ok, "time")) : "");
            printf("\n");
        }
        json_decref(h);
        json_decref(last);
        json_decref(last_ok);
    }
    if (a.json)
        print_json(arr);
    json_decref(arr);
    if (bad)
        cli_error("%d set(s) could not be read (named above)", bad);
    if (!a.json) {
        /* What in-place restores moved aside stays until removed on purpose. */
        char **prev;
        size_t nprev;
        if (cf_previous_list(run->policy->root, &prev, &nprev) == 0 && nprev) {
            printf("\nkept aside by earlier restores (remove with `coffer restore -p %s "
                   "--cleanup-previous`):\n",
                   a.policy);
            for (size_t k = 0; k < nprev; k++)
                printf("  %s/%s\n", run->policy->root, prev[k]);
            cf_strv_free(prev, nprev);
        }
    }
    cf_strv_free(ids, n);
    cf_run_close(run);
    return bad ? CF_EXIT_PROBLEMS : CF_EXIT_OK;
}

/* ---- restore ------------------------------------------------------------- */

static const cli_spec spec_restore = {
    "restore",
    "usage: coffer restore -p POLICY [--target NAME] [--set ID|latest]\n"
    "                      (--to DIR | --in-place) [--only NAME]...\n"
    "                      [--map NAME=VALUE]... [--force] [--no-validate] [--no-checks]\n"
    "                      [--json] [--rollback-objects] [--dry-run]\n"
    "                      [--include PATH|GLOB]... [--exclude PATH|GLOB]...\n"
    "                      [--include-from FILE]... [--salvage]\n"
    "       coffer restore -p POLICY --cleanup-previous [--to DIR] [--dry-run] [--json]\n"
    "Restore exactly one set: components in the policy's order (config files,\n"
    "databases, data directories), then database checks, the policy's checks\n"
    "and its validate commands. --to DIR re-roots every path under DIR (which must be\n"
    "empty unless --force); --in-place runs the stop/start commands around the\n"
    "restore and keeps replaced files in ROOT/.coffer-previous-SET. --only NAME\n"
    "(repeatable) restores only those components, and skips the policy's checks\n"
    "and validate commands.\n"
    "--map sends one component elsewhere: a directory for files, a file or URL\n"
    "for a database. Object stores: versioned buckets are checked (recorded\n"
    "versions still exist); --rollback-objects makes each recorded version current\n"
    "again and deletes keys created after the set. Copied buckets are written back\n"
    "only with --in-place, otherwise into DIR/NAME/.\n"
    "--dry-run prints the plan (set, components in order, destinations, files and\n"
    "bytes, commands that would run) and writes nothing. --cleanup-previous removes\n"
    "the ROOT/.coffer-previous-SET directories restores left (`coffer sets` lists them).\n"
    "--include restores only some files: COMPONENT/PATH, PATH as the set records it\n"
    "(relative to the policy root; COMPONENT/ may be left out when the set has one\n"
    "files component), or a glob (fnmatch, '*' stops at '/'); a directory brings\n"
    "everything beneath it. Only packs holding chunks of chosen files are read, in\n"
    "ranges around those chunks (short gaps between them are read through).\n"
    "Databases and object stores are left out unless --only names them; checks\n"
    "and validate commands are skipped. A pattern that matches nothing fails the\n"
    "restore.\n"
    "--salvage (with --to) restores everything that can be read: unreadable parts of\n"
    "files are written as zeros, unreadable databases are left out, all of it is\n"
    "listed on stdout and in DIR/COFFER-SALVAGE-REPORT.txt, and the exit status is 3.\n",
    (const cli_use[]){USE_POLICY,
                      USE_TARGET,
                      {OPT_SET, "ID|latest", "the set to restore (default: latest)", 0},
                      {OPT_TO, "DIR", "restore under DIR, a separate root", 0},
                      {OPT_IN_PLACE, NULL, "restore over the policy's root (stop/start around)", 0},
                      {OPT_ONLY, "NAME", "restore only this component", CLI_REPEAT},
                      {OPT_MAP, "NAME=VALUE", "send one component elsewhere", CLI_REPEAT},
                      {OPT_FORCE, NULL, "restore into a non-empty directory", 0},
                      {OPT_NO_VALIDATE, NULL, "do not run the policy's validate commands", 0},
                      {OPT_NO_CHECKS, NULL,
                       "do not run the policy's checks (the databases' own checks still run)", 0},
                      {OPT_ROLLBACK_OBJECTS, NULL, "make recorded object versions current", 0},
                      USE_JSON("print the report as JSON"),
                      {OPT_DRY_RUN, NULL, "print the plan, write nothing", 0},
                      {OPT_CLEANUP_PREVIOUS, NULL,
                       "remove the .coffer-previous-SET directories earlier restores left in "
                       "the root (or in --to DIR)",
                       0},
                      {OPT_INCLUDE, "PATH|GLOB", "restore only these files (COMPONENT/PATH)",
                       CLI_REPEAT},
                      {OPT_EXCLUDE, "PATH|GLOB", "leave these out of an --include restore",
                       CLI_REPEAT},
                      {OPT_INCLUDE_FROM, "FILE", "--include each path listed in FILE",
                       CLI_REPEAT},
                      {OPT_SALVAGE, NULL,
                       "restore what can be read, list the rest (exit status 3)", 0},
                      USE_END},
    0};

/* restore --cleanup-previous [--to DIR] [--dry-run]: what in-place restores
 * moved aside, removed once the operator has looked at it. */
static int cleanup_previous(const args *a)
{
    if (a->set || a->in_place || a->nonly || a->nmaps || a->force || a->no_validate || a->no_checks ||
        a->rollback_objects || a->ninclude || a->nexclude || a->ninclude_from || a->salvage)
        return usage_error("restore",
                           "--cleanup-previous takes only -p, --to DIR, --dry-run and --json");
    cf_policy *p;
    if (cf_run_load_policy(a->policy, &p) != 0)
        return die(CF_EXIT_USAGE);
    char *root = a->to ? cf_abspath(a->to) : cf_strdup(p->root);
    char **names;
    size_t n;
    int rc = cf_previous_list(root, &names, &n) != 0 ? die(CF_EXIT_FAILED) : CF_EXIT_OK;
    if (rc == CF_EXIT_OK && n == 0 && !a->json)
        printf("nothing kept aside in %s\n", root);
    json_t *done = json_array();
    for (size_t i = 0; i < n && rc == CF_EXIT_OK; i++) {
        char *path = cf_asprintf("%s/%s", root, names[i]);
        if (a->dry_run) {
            if (!a->json)
                printf("would remove %s\n", path);
            json_array_append_new(done, json_string(path));
        } else {
            cf_rmtree(path);
            struct stat st;
            if (lstat(path, &st) == 0) {
                cli_error("%s could not be removed completely", path);
                rc = CF_EXIT_FAILED;
            } else {
                if (!a->json)
                    printf("removed %s\n", path);
                json_array_append_new(done, json_string(path));
            }
        }
        free(path);
    }
    if (a->json && rc == CF_EXIT_OK) {
        json_t *j =
            json_pack("{s:s,s:b,s:O}", "root", root, "dry_run", a->dry_run, "removed", done);
        print_json(j);
        json_decref(j);
    }
    json_decref(done);
    cf_strv_free(names, n);
    free(root);
    cf_policy_free(p);
    return rc;
}

static void print_plan(json_t *plan)
{
    printf("dry run: restore set %s (%s) into %s%s\n",
           json_string_value(json_object_get(plan, "set")),
           json_string_value(json_object_get(plan, "time")),
           json_string_value(json_object_get(plan, "root")),
           json_is_true(json_object_get(plan, "in_place")) ? " (in place)" : "");
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(plan, "commands"), i, c)
        printf("  would run the stop command `%s` first and the start command `%s` last\n",
               json_string_value(json_object_get(c, "stop")),
               json_string_value(json_object_get(c, "start")));
    json_array_foreach(json_object_get(plan, "components"), i, c)
    {
        char b[32];
        const char *type = json_string_value(json_object_get(c, "type"));
        printf("  %zu. %-12s %-12s -> %s  (", i + 1,
               json_string_value(json_object_get(c, "name")), type,
               json_string_value(json_object_get(c, "destination")));
        if (strcmp(type, "files") == 0)
            printf("%lld files, ", (long long)json_integer_value(json_object_get(c, "files")));
        printf("%s)\n", cf_human_bytes((uint64_t)json_integer_value(json_object_get(c, "bytes")),
                                       b, sizeof b));
    }
    json_array_foreach(json_object_get(plan, "policy_checks"), i, c)
        printf("  then check '%s' (%s)\n", json_string_value(json_object_get(c, "name")),
               json_string_value(json_object_get(c, "type")));
    json_array_foreach(json_object_get(plan, "validate"), i, c)
        printf("  then validate '%s': `%s`\n", json_string_value(json_object_get(c, "name")),
               json_string_value(json_object_get(c, "run")));
    printf("dry run: nothing was written\n");
}

/* --include/--exclude/--include-from made a selection over the latest
 * set's (or --set's) files components; 0 or an exit code (reported). */
static int subset_select(cf_run *run, const args *a, cf_select **out)
{
    char *id = NULL;
    json_t *h = NULL;
    if (cf_resolve_set(run, a->set ? a->set : "latest", &id) != 0 ||
        cf_manifest_header(run->repo, id, &h) != 0) {
        free(id);
        return die(CF_EXIT_FAILED);
    }
    const char *files[64];
    size_t nf = 0, k;
    json_t *c;
    json_array_foreach(json_object_get(h, "components"), k, c)
        if (nf < 64 && strcmp(json_string_value(json_object_get(c, "type")) ?: "", "files") == 0)
            files[nf++] = json_string_value(json_object_get(c, "name"));
    cf_select *s = cf_select_new(files, nf);
    int rc = 0;
    for (size_t i = 0; i < a->ninclude && rc == 0; i++)
        rc = cf_select_include(s, a->include[i]);
    for (size_t i = 0; i < a->nexclude && rc == 0; i++)
        rc = cf_select_exclude(s, a->exclude[i]);
    if (rc == 0) {
        for (size_t i = 0; i < a->ninclude_from && rc == 0; i++)
            if (cf_select_include_from(s, a->include_from[i]) != 0)
                rc = -2;
        if (rc == 0 && cf_select_count(s) == 0)
            rc = cf_fail("--include-from: no paths listed");
    }
    json_decref(h);
    free(id);
    if (rc != 0) {
        cf_select_free(s);
        return rc == -2 ? die(CF_EXIT_FAILED) : usage_error("restore", "%s", cf_error());
    }
    *out = s;
    return 0;
}

/* A subset or a salvaged restore says what it did and what it could not. */
static void print_partial(json_t *rep)
{
    json_t *sub = json_object_get(rep, "subset");
    if (sub)
        printf("subset: %lld file(s) restored; the policy's checks and validate commands "
               "were skipped\n", (long long)json_integer_value(json_object_get(rep, "files")));
    if (json_object_get(rep, "bytes_read"))
        cf_log(CF_LOG_INFO, "read %lld pack bytes in %lld reads",
               (long long)json_integer_value(json_object_get(rep, "bytes_read")),
               (long long)json_integer_value(json_object_get(rep, "reads")));
    size_t i;
    json_t *u;
    json_array_foreach(json_object_get(rep, "unrestored"), i, u)
    {
        const char *path = json_string_value(json_object_get(u, "path"));
        if (!i)
            printf("could not be restored:\n");
        printf("  %s/%s", json_string_value(json_object_get(u, "component")),
               path ? path : "(component not restored)");
        size_t k;
        json_t *r;
        json_array_foreach(json_object_get(u, "missing"), k, r)
            printf(" %lld-%lld", (long long)json_integer_value(json_array_get(r, 0)),
                   (long long)json_integer_value(json_array_get(r, 1)));
        printf("\n");
    }
}

static int cmd_restore(int argc, char **argv)
{
    if (cli_repo)
        return cmd_restore_repo(argc, argv);
    args a = {0};
    if (parse(argc, argv, &spec_restore, &a) != 0) {
        args_free(&a);
        return CF_EXIT_USAGE;
    }
    if (a.cleanup_previous && a.policy) {
        int rc = cleanup_previous(&a);
        args_free(&a);
        return rc;
    }
    if (a.policy && !a.to == !a.in_place) {
        args_free(&a);
        return usage_error("restore", "choose one of --to DIR (a separate root) or --in-place");
    }
    if (a.nexclude && !a.ninclude && !a.ninclude_from) {
        args_free(&a);
        return usage_error("restore", "--exclude needs --include or --include-from");
    }
    if (a.dry_run && (a.ninclude || a.ninclude_from || a.salvage)) {
        args_free(&a);
        return usage_error("restore", "--dry-run does not apply to --include or --salvage");
    }
    if (a.salvage && a.in_place) {
        args_free(&a);
        return usage_error("restore", "--salvage restores with --to DIR only, never in place");
    }
    cf_run *run;
    /* the plan lists the sets before anything is locked */
    int orc = cli_open_parsed("restore", CF_RUN_REPO | CF_RUN_SETS, CLI_LOCK_NONE, &a, &run);
    if (orc) {
        args_free(&a);
        return orc;
    }
    cf_restore_opts o = {.set = a.set, .to = a.to, .in_place = a.in_place, .only = a.only,
                         .nonly = a.nonly, .maps = a.maps, .nmaps = a.nmaps, .force = a.force,
                         .no_validate = a.no_validate, .no_checks = a.no_checks,
                         .rollback_objects = a.rollback_objects, .salvage = a.salvage};
    if (a.ninclude || a.ninclude_from) {
        int src = subset_select(run, &a, &o.select);
        if (src) {
            args_free(&a);
            cf_run_close(run);
            return src;
        }
    }
    json_t *rep = NULL;
    /* The plan checks the set, --only, --map and the destination before
     * anything is locked or written; a dry run stops there. */
    int rc = cf_restore_plan(run, &o, &rep);
    run->list_sets_ahead = 1; /* the lock's listing confirms the planned set */
    if (rc == CF_EXIT_USAGE) {
        usage_error("restore", "%s", cf_error());
    } else if (rc != CF_EXIT_OK) {
        die(rc);
    } else if (a.dry_run) {
        if (a.json) {
            json_object_set_new(rep, "dry_run", json_true());
            print_json(rep);
        } else {
            print_plan(rep);
        }
    } else {
        /* The lock is written and the other locks listed while the first
         * packs are read (cf_restore waits for it before anything leaves
         * its staging files); the set is the one the plan resolved, even
         * if "latest" moved since. */
        cf_run_lock_begin(run, 0, "restore");
        char *id = cf_strdup(json_string_value(json_object_get(rep, "set")));
        json_decref(rep);
        rep = NULL;
        o.set = id;
        rc = cf_restore(run, &o, &rep);
        free(id);
        if (rc == CF_EXIT_USAGE) {
            usage_error("restore", "%s", cf_error());
        } else if (rc == CF_EXIT_FAILED) {
            die(rc);
        } else {
            if (a.json) {
                /* exit 3: the failed checks are those with "ok": false */
                json_object_set_new(rep, "dry_run", json_false());
                json_object_set_new(rep, "ok", json_boolean(rc == CF_EXIT_OK));
                print_json(rep);
            } else if (rc == CF_EXIT_OK || json_array_size(json_object_get(rep, "unrestored"))) {
                print_partial(rep);
                printf("restored set %s into %s\n", json_string_value(json_object_get(rep, "set")),
                       json_string_value(json_object_get(rep, "root")));
            }
            if (json_array_size(json_object_get(rep, "unrestored")))
                cli_error("set %s restored into %s INCOMPLETE: see the list above and %s",
                          json_string_value(json_object_get(rep, "set")),
                          json_string_value(json_object_get(rep, "root")), CF_SALVAGE_REPORT);
            else if (rc != CF_EXIT_OK)
                cli_error("set %s restored into %s, but checks failed (see above)",
                          json_string_value(json_object_get(rep, "set")),
                          json_string_value(json_object_get(rep, "root")));
        }
    }
    if (rep)
        json_decref(rep);
    cf_select_free(o.select);
    args_free(&a);
    cf_run_close(run);
    return rc;
}

/* ---- rehearse ------------------------------------------------------------ */

static const cli_spec spec_rehearse = {
    "rehearse",
    "usage: coffer rehearse -p POLICY [--target NAME] [--set ID|latest|unproven|all]\n"
    "                       [--keep] [--scratch NAME=URL]... [--json]\n"
    "       coffer rehearse -p POLICY --cleanup [--json]\n"
    "Prove that a set brings the application back, without touching production:\n"
    "restore it into a private scratch directory and scratch databases that coffer\n"
    "creates (coffer_rehearse_<set>_<random>, on the component's server or on the\n"
    "one rehearse.scratch or --scratch names), check versioned object stores in\n"
    "place, run the policy's checks and validate commands against the scratch\n"
    "copy, record the result beside the set (`coffer sets` shows it) and remove\n"
    "the scratch environment. What a killed rehearsal left behind is removed by\n"
    "the next one; --cleanup removes leftovers, --keep ones included, and\n"
    "rehearses nothing.\n"
    "Exit status 0 when every set was proven, 3 when a check or validate command\n"
    "failed, 1 when a rehearsal could not run.\n",
    (const cli_use[]){USE_POLICY,
                      USE_TARGET,
                      {OPT_SET, "ID|latest|unproven|all",
                       "the set(s) to rehearse (default: latest); unproven: every set without "
                       "a passing rehearsal",
                       0},
                      {OPT_KEEP, NULL, "leave the scratch directory and databases in place", 0},
                      {OPT_SCRATCH, "NAME=URL",
                       "create database component NAME's scratch database on this server",
                       CLI_REPEAT},
                      {OPT_CLEANUP, NULL, "only remove what earlier rehearsals left", 0},
                      USE_JSON("print the report as JSON"),
                      USE_END},
    0};

static void print_rehearsal(json_t *one)
{
    const char *set = json_string_value(json_object_get(one, "set"));
    double secs = (double)json_integer_value(json_object_get(one, "duration_ms")) / 1000.0;
    int ok = json_is_true(json_object_get(one, "ok"));
    size_t npass = 0, nwarn = 0, nfail = 0, nval = 0, nvalfail = 0, i;
    json_t *x;
    json_array_foreach(json_object_get(one, "policy_checks"), i, x)
    {
        const char *st = json_string_value(json_object_get(x, "status")) ?: "";
        if (strcmp(st, "pass") == 0)
            npass++;
        else if (strcmp(st, "warn") == 0)
            nwarn++;
        else
            nfail++;
    }
    json_array_foreach(json_object_get(one, "validate"), i, x)
    {
        nval++;
        if (!json_is_true(json_object_get(x, "ok")))
            nvalfail++;
    }
    const char *err = json_string_value(json_object_get(one, "error"));
    if (err)
        printf("set %s: NOT PROVEN: the rehearsal could not run: %s\n", set, err);
    else
        printf("set %s: %s in %.1f s: checks %zu passed, %zu warned, %zu failed; validate "
               "commands %zu ok, %zu failed\n",
               set, ok ? "PROVEN" : "NOT PROVEN", secs, npass, nwarn, nfail, nval - nvalfail,
               nvalfail);
    json_array_foreach(json_object_get(one, "policy_checks"), i, x)
    {
        const char *st = json_string_value(json_object_get(x, "status")) ?: "";
        if (strcmp(st, "pass") == 0)
            continue;
        printf("  check %s: %s: %s\n", json_string_value(json_object_get(x, "name")), st,
               json_string_value(json_object_get(x, "detail")) ?: "");
    }
    json_array_foreach(json_object_get(one, "validate"), i, x)
    {
        if (json_is_true(json_object_get(x, "ok")))
            continue;
        printf("  validate %s: exit %lld%s%s\n", json_string_value(json_object_get(x, "name")),
               (long long)json_integer_value(json_object_get(x, "exit")),
               json_object_get(x, "error") ? ": " : "",
               json_string_value(json_object_get(x, "error")) ?: "");
        const char *out = json_string_value(json_object_get(x, "output"));
        if (out && *out) {
            printf("    its last output:\n");
            const char *line = out;
            while (*line) {
                size_t l = strcspn(line, "\n");
                printf("    | %.*s\n", (int)l, line);
                line += l + (line[l] == '\n');
            }
        }
    }
    if (json_is_true(json_object_get(one, "kept"))) {
        printf("  kept: %s", json_string_value(json_object_get(one, "scratch_dir")) ?: "");
        json_array_foreach(json_object_get(one, "scratch_databases"), i, x)
            printf(", database %s", json_string_value(json_object_get(x, "target")));
        printf("\n  (remove with `coffer rehearse --cleanup`)\n");
    }
}

static int cmd_rehearse(int argc, char **argv)
{
    args a = {0};
    if (parse(argc, argv, &spec_rehearse, &a) != 0)
        return CF_EXIT_USAGE;
    if (a.cleanup && (a.set || a.keep_scratch || a.nscratch)) {
        args_free(&a);
        return usage_error("rehearse", "--cleanup takes only -p, --target and --json");
    }
    cf_run *run;
    int orc = cli_open_parsed("rehearse", 1, a.cleanup ? CLI_LOCK_NONE : CLI_LOCK_SHARED, &a,
                              &run);
    if (orc) {
        args_free(&a);
        return orc;
    }
    cf_rehearse_opts o = {.set = a.set, .keep = a.keep_scratch, .scratch = a.scratch,
                          .nscratch = a.nscratch, .cleanup = a.cleanup};
    json_t *rep = NULL;
    int rc = cf_rehearse(run, &o, &rep);
    if (rc == CF_EXIT_USAGE) {
        usage_error("rehearse", "%s", cf_error());
    } else if (a.json && rep) {
        print_json(rep);
        if (rc == CF_EXIT_FAILED && json_array_size(json_object_get(rep, "sets")) == 0)
            cli_error("%s", cf_error());
    } else if (rep) {
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(rep, "cleaned"), i, x)
            printf("removed what an earlier rehearsal left: %s\n",
                   json_string_value(json_object_get(x, "dir")));
        json_array_foreach(json_object_get(rep, "sets"), i, x) print_rehearsal(x);
        if (rc == CF_EXIT_FAILED && json_array_size(json_object_get(rep, "sets")) == 0)
            die(rc);
        else if (rc == CF_EXIT_FAILED)
            cli_error("a rehearsal could not run (see above)");
        else if (rc == CF_EXIT_PROBLEMS)
            cli_error("not every set was proven (see above)");
    }
    if (rep)
        json_decref(rep);
    args_free(&a);
    cf_run_close(run);
    return rc;
}

/* ---- verify -------------------------------------------------------------- */

static const cli_spec spec_verify = {
    "verify",
    "usage: coffer verify -p POLICY [--target NAME] [--set ID|latest|all] [--read-data] [--json]\n"
    "Check that a set can be restored: its manifest is intact and every chunk\n"
    "it references is indexed in an existing pack. --read-data also reads,\n"
    "decompresses and hashes every chunk and checks database dumps.\n"
    "Exit status 3 when problems are found; each names set, path, chunk, pack.\n",
    (const cli_use[]){USE_POLICY, USE_TARGET,
                      {OPT_SET, "ID|latest|all", "the set(s) to verify (default: latest)", 0},
                      {OPT_READ_DATA, NULL, "read and hash all data, check database dumps", 0},
                      USE_JSON("print the report as JSON"), USE_END},
    0};

static int cmd_verify(int argc, char **argv)
{
    args a = {0};
    cf_run *run;
    int orc = cli_open(argc, argv, &spec_verify, CF_RUN_REPO | CF_RUN_NO_CACHE, CLI_LOCK_SHARED, &a, &run);
    if (orc)
        return orc;
    cf_verify_opts o = {.set = a.set, .read_data = a.read_data};
    json_t *rep = NULL;
    int rc = cf_verify(run, &o, &rep);
    if (rc == CF_EXIT_FAILED) {
        die(rc);
    } else if (a.json) {
        json_object_set_new(rep, "ok", json_boolean(rc == CF_EXIT_OK));
        print_json(rep);
        if (rc != CF_EXIT_OK)
            cli_error("verify found %zu problem(s)",
                      json_array_size(json_object_get(rep, "problems")));
    } else if (rc == CF_EXIT_OK && json_array_size(json_object_get(rep, "not_checked")))
        printf("verify: no problems found; %zu database dump(s) not read back (named above)\n",
               json_array_size(json_object_get(rep, "not_checked")));
    else if (rc == CF_EXIT_OK)
        printf("verify: no problems found\n");
    else
        cli_error("verify found %zu problem(s)", json_array_size(json_object_get(rep, "problems")));
    if (rep)
        json_decref(rep);
    cf_run_close(run);
    return rc;
}

/* ---- forget ------------------------------------------------------------------ */

static const cli_spec spec_forget = {
    "forget",
    "usage: coffer forget -p POLICY [--target NAME] [--dry-run] [--json]\n"
    "                     [--keep-last N] [--keep-hourly N] [--keep-daily N] [--keep-weekly N]\n"
    "                     [--keep-monthly N] [--keep-yearly N] [--keep-within DURATION]\n"
    "                     [--keep-proven N]\n"
    "       coffer forget -p POLICY [--target NAME] [--dry-run] [--json] SET...\n"
    "Apply the retention rules (the policy's, or those given here, which replace\n"
    "them) and remove the other sets of this policy. Prints each set with the\n"
    "rules that keep it. Given set ids (full ids, as `coffer sets` lists them),\n"
    "removes exactly those sets instead, and nothing when one of them is not a\n"
    "set of this policy. Data is freed by `coffer prune`. Forget removes, so it\n"
    "uses the target's maintenance: options (credentials that may delete) when\n"
    "it has them; on an immutable target a forgotten set's objects stay locked\n"
    "(hidden, not deleted) until their retention ends.\n",
    (const cli_use[]){USE_POLICY, USE_TARGET,
                      {OPT_DRY_RUN, NULL, "print what would be removed, remove nothing", 0},
                      USE_JSON("print every set with keep/remove and reasons as JSON"),
                      {OPT_KEEP_LAST, "N", "keep the N newest sets", 0},
                      {OPT_KEEP_HOURLY, "N", "keep the newest set of each of N hours", 0},
                      {OPT_KEEP_DAILY, "N", "... of each of N days", 0},
                      {OPT_KEEP_WEEKLY, "N", "... of each of N weeks", 0},
                      {OPT_KEEP_MONTHLY, "N", "... of each of N months", 0},
                      {OPT_KEEP_YEARLY, "N", "... of each of N years", 0},
                      {OPT_KEEP_PROVEN, "N", "keep the N newest sets a rehearsal proved", 0},
                      {OPT_KEEP_WITHIN, "DURATION", "keep every set within DURATION (1y2m3w4d5h) "
                                                    "of the newest",
                       0},
                      USE_END},
    -1};

static int cmd_forget(int argc, char **argv)
{
    args a = {0};
    if (parse(argc, argv, &spec_forget, &a) != 0) {
        args_free(&a);
        return CF_EXIT_USAGE;
    }
    for (int id = OPT_KEEP_LAST; a.npos && id <= OPT_KEEP_PROVEN; id++)
        if ((id <= OPT_KEEP_WITHIN || id == OPT_KEEP_PROVEN) && given(&a, id)) {
            usage_error("forget", "set id '%s' and %s exclude each other: give rules or sets",
                        a.pos[0], opt_name(id));
            args_free(&a);
            return CF_EXIT_USAGE;
        }
    if (a.keep_within) {
        cf_duration d;
        if (cf_duration_parse(a.keep_within, &d) != 0) {
            args_free(&a);
            return usage_error("forget", "%s", cf_error());
        }
    }
    cf_run *run; /* cf_forget takes the exclusive lock itself */
    int orc = cli_open_parsed("forget", CF_RUN_REPO | (a.dry_run ? 0 : CF_RUN_MAINT), CLI_LOCK_NONE,
                              &a, &run);
    if (orc) {
        args_free(&a);
        return orc;
    }
    cf_retention o = {a.keep[0], a.keep[1], a.keep[2], a.keep[3], a.keep[4], a.keep[5],
                      (char *)a.keep_within, a.keep_proven};
    json_t *rep = NULL;
    int frc = cf_forget(run, &o, a.pos, a.npos, a.dry_run, &rep);
    if (frc != 0) {
        cf_run_close(run);
        args_free(&a);
        return frc == -2 ? usage_error("forget", "%s", cf_error()) : die(CF_EXIT_FAILED);
    }
    if (a.json) {
        /* the engine joins the rules with commas; JSON gets a list */
        size_t i;
        json_t *s;
        json_array_foreach(rep, i, s)
        {
            json_t *list = json_array();
            char *copy = cf_strdup(json_string_value(json_object_get(s, "reasons")));
            for (char *save = NULL, *t = strtok_r(copy, ",", &save); t;
                 t = strtok_r(NULL, ",", &save))
                json_array_append_new(list, json_string(t));
            free(copy);
            json_object_set_new(s, "reasons", list);
            json_object_set_new(
                s, "removed",
                json_boolean(!json_is_true(json_object_get(s, "keep")) && !a.dry_run));
        }
        print_json(rep);
    } else {
        size_t i;
        json_t *s;
        size_t removed = 0;
        json_array_foreach(rep, i, s)
        {
            int keep = json_is_true(json_object_get(s, "keep"));
            removed += !keep;
            printf("%-6s %s  %s\n", keep ? "keep" : (a.dry_run ? "would remove" : "remove"),
                   json_string_value(json_object_get(s, "id")),
                   json_string_value(json_object_get(s, "reasons")));
        }
        printf("%zu set(s) kept, %zu %s\n", json_array_size(rep) - removed, removed,
               a.dry_run ? "would be removed (dry run)" : "removed");
    }
    json_decref(rep);
    cf_run_close(run);
    args_free(&a);
    return CF_EXIT_OK;
}

/* ---- unlock -------------------------------------------------------------------- */

static const cli_spec spec_unlock = {
    "unlock",
    "usage: coffer unlock -p POLICY [--target NAME] [--all] [--json]\n"
    "Remove stale locks (owner process gone, or not refreshed for 30 minutes);\n"
    "--all removes every lock: only when no other coffer uses the repository.\n"
    "There is no --dry-run: each lock removed is logged.\n",
    (const cli_use[]){USE_POLICY,
                      USE_TARGET,
                      {OPT_ALL, NULL, "remove every lock, also live ones", 0},
                      USE_JSON("print the number of locks removed as JSON"),
                      USE_END},
    0};

static int cmd_unlock(int argc, char **argv)
{
    args a = {0};
    cf_run *run;
    int orc = cli_open(argc, argv, &spec_unlock, 0, CLI_LOCK_NONE, &a, &run);
    if (orc)
        return orc;
    int n = cf_lock_remove_stale(run->store, a.all);
    cf_run_close(run);
    if (n < 0)
        return die(CF_EXIT_FAILED);
    if (a.json) {
        json_t *j = json_pack("{s:i,s:b}", "removed", n, "all", a.all);
        print_json(j);
        json_decref(j);
    } else {
        printf("%d lock(s) removed\n", n);
    }
    return CF_EXIT_OK;
}

/* ---- copy ---------------------------------------------------------------------- */

static const cli_spec spec_copy = {
    "copy",
    "usage: coffer copy -p POLICY --from TARGET --to TARGET [--set ID|latest|all] [--json]\n"
    "Copy sets of this policy between two targets (another site): only chunks the\n"
    "destination lacks are sent. Sets already there are skipped, so an\n"
    "interrupted copy resumes where it stopped. Default: --set latest.\n"
    "There is no --dry-run: a copy only adds to the destination.\n",
    (const cli_use[]){USE_POLICY,
                      {OPT_FROM, "TARGET", "the target the sets are read from (required)", 0},
                      {OPT_TO, "TARGET", "the target they are copied to (required)", 0},
                      {OPT_SET, "ID|latest|all", "the set(s) to copy (default: latest)", 0},
                      USE_JSON("print each set copied or already there as JSON"),
                      USE_END},
    0};

/* Past the first free of a large block glibc raises its mmap threshold
 * (up to 32 MiB), and chunk and pack buffers of a few MiB then come from
 * the arenas, which keep them resident once freed. A copy passes such
 * buffers between reader and writer threads: with a fixed 1 MiB threshold
 * one between object stores peaked at 120 MiB instead of 148 MiB, in the
 * same time. A restore, which allocates a buffer per chunk, took a third
 * longer with it (the pages are zeroed anew each time), so only copy
 * asks for it. */
static void malloc_return_large(void)
{
    if (!getenv("MALLOC_MMAP_THRESHOLD_"))
        mallopt(M_MMAP_THRESHOLD, 1 << 20);
}

static int cmd_copy(int argc, char **argv)
{
    args a = {0};
    if (parse(argc, argv, &spec_copy, &a) != 0)
        return CF_EXIT_USAGE;
    if (need_policy("copy", &a))
        return CF_EXIT_USAGE;
    if (!a.from || !a.to)
        return usage_error("copy", "--from TARGET and --to TARGET are required");
    if (strcmp(a.from, a.to) == 0)
        return usage_error("copy", "--from and --to name the same target");
    malloc_return_large();
    cf_run *run;
    int orc = cf_run_open_locking(a.policy, a.from, 1, 0, "copy", &run);
    if (orc != 0)
        return die(orc == -2 ? CF_EXIT_USAGE : CF_EXIT_FAILED);
    run->no_progress = no_progress;
    const cf_target *t = cf_policy_target(run->policy, a.to);
    if (!t) {
        cf_fail("%s: no target named '%s'", a.policy, a.to);
        cf_run_close(run);
        return die(CF_EXIT_USAGE);
    }
    if (cf_run_lock(run, 0, "copy") != 0) {
        cf_run_close(run);
        return die(CF_EXIT_FAILED);
    }
    char **ids = NULL;
    size_t n = 0;
    int rc = 0;
    if (a.set && strcmp(a.set, "all") == 0) {
        char **all;
        size_t na;
        rc = cf_sets_list(run->repo, &all, &na);
        for (size_t i = 0; rc == 0 && i < na; i++) {
            json_t *h;
            if (cf_manifest_header(run->repo, all[i], &h) != 0)
                continue;
            const char *pol = json_string_value(json_object_get(h, "policy"));
            if (pol && strcmp(pol, run->policy->name) == 0) {
                ids = cf_realloc(ids, (n + 1) * sizeof *ids);
                ids[n++] = cf_strdup(all[i]);
            }
            json_decref(h);
        }
        if (rc == 0)
            cf_strv_free(all, na);
    } else {
        char *id;
        rc = cf_resolve_set(run, a.set ? a.set : "latest", &id);
        if (rc == 0) {
            ids = cf_malloc(sizeof *ids);
            ids[n++] = id;
        }
    }
    json_t *done = json_array();
    if (rc == 0 && n)
        rc = copy_to_target(run, t, (const char *const *)ids, n, done);
    cf_strv_free(ids, n);
    cf_run_close(run);
    if (rc != 0) {
        json_decref(done);
        return die(CF_EXIT_FAILED);
    }
    if (a.json) {
        json_t *j = json_pack("{s:s,s:s,s:o}", "from", a.from, "to", a.to, "sets", done);
        print_json(j);
        json_decref(j);
    } else {
        json_decref(done);
        printf("%zu set(s) present at target '%s'\n", n, a.to);
    }
    return CF_EXIT_OK;
}

/* ---- plugins --------------------------------------------------------------- */

static const cli_spec spec_plugins = {
    "plugins",
    "usage: coffer plugins [--describe NAME | -p POLICY] [--json]\n"
    "List the drivers (built-in and loaded from plugin directories) with kind,\n"
    "version, ABI and capabilities, or print one driver's option table.\n"
    "With -p POLICY: the capabilities of each target's and component's driver\n"
    "instance as the policy configures it (storage capabilities depend on the\n"
    "location: versioning, object lock, ...). Nothing is written.\n"
    "Drivers are loaded from --plugin-dir DIR given before the command.\n",
    (const cli_use[]){{OPT_DESCRIBE, "NAME", "print this driver's options", 0},
                      {OPT_POLICY, "POLICY", "show the capabilities of this policy's instances", 0},
                      USE_JSON("print the drivers (or the driver) as JSON"),
                      USE_END},
    0};

static const char *type_name(coffer_opt_type t)
{
    static const char *n[] = {"string", "int", "bool", "size", "list", "path"};
    return (unsigned)t < CF_ARRAY_LEN(n) ? n[t] : "?";
}

/* The capabilities as a JSON array; caps_string joins it for the table. */
static json_t *caps_list(const cf_driver *d)
{
    json_t *arr = json_array();
    const coffer_storage_ops *s = d->desc.storage;
    const coffer_database_ops *db = d->desc.database;
#define CAP(cond, name)                                                                            \
    if (cond)                                                                                      \
    json_array_append_new(arr, json_string(name))
    CAP(s && s->versioning_status, "versioning");
    CAP(s && s->object_lock_status, "object-lock");
    CAP(s && s->restore_version, "restore-version");
    CAP(db && db->verify, "verify");
    CAP(db && db->owned_paths, "owns-files");
    CAP(db && db->query, "query");
    CAP(db && db->query_target, "checks");
    CAP(db && db->scratch_create && db->scratch_drop, "scratch");
    CAP(db && db->query_snapshot, "snapshot-query");
#undef CAP
    return arr;
}

static void caps_string(const cf_driver *d, char *buf, size_t len)
{
    buf[0] = 0;
    json_t *arr = caps_list(d);
    size_t i;
    json_t *c;
    json_array_foreach(arr, i, c)
        snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", i ? "," : "", json_string_value(c));
    json_decref(arr);
    if (!buf[0])
        snprintf(buf, len, "-");
}

static json_t *driver_json(const cf_driver *d)
{
    return json_pack("{s:s,s:s,s:s?,s:i,s:i,s:o,s:b,s:s?}", "name", d->desc.name, "kind",
                     cf_kind_name(d->desc.kind), "version", d->desc.version, "abi_major",
                     (int)d->desc.abi_major, "abi_minor", (int)d->desc.abi_minor, "capabilities",
                     caps_list(d), "built_in", d->path == NULL, "path", d->path);
}

static void instance_caps(uint32_t caps, int db, json_t *arr)
{
    static const struct {
        uint32_t bit;
        const char *name;
    } storage[] = {{COFFER_CAP_ATOMIC_PUBLISH, "atomic-publish"},
                   {COFFER_CAP_CONDITIONAL_CREATE, "conditional-create"},
                   {COFFER_CAP_VERSIONING, "versioning"},
                   {COFFER_CAP_OBJECT_LOCK, "object-lock"},
                   {COFFER_CAP_RANGED_READ, "ranged-read"},
                   {COFFER_CAP_RESTORE_VERSION, "restore-version"},
                   {COFFER_CAP_LOCAL, "local"},
                   {COFFER_CAP_CONCURRENT_PREPARE, "concurrent-prepare"}},
      database[] = {{COFFER_DBCAP_PARALLEL_DUMP, "parallel-dump"},
                    {COFFER_DBCAP_POINT_IN_TIME, "point-in-time"},
                    {COFFER_DBCAP_QUERY, "query"},
                    {COFFER_DBCAP_OWNS_FILES, "owns-files"}};
    size_t n = db ? CF_ARRAY_LEN(database) : CF_ARRAY_LEN(storage);
    for (size_t i = 0; i < n; i++)
        if (caps & (db ? database[i].bit : storage[i].bit))
            json_array_append_new(arr, json_string(db ? database[i].name : storage[i].name));
}

/* plugins -p POLICY: each instance the policy makes, with the capabilities
 * it reports (a storage driver's depend on its location). Opens drivers,
 * never a repository. */
static int plugins_instances(const args *a)
{
    cf_policy *p;
    if (cf_run_load_policy(a->policy, &p) != 0)
        return die(CF_EXIT_USAGE);
    json_t *rows = json_array();
    int rc = CF_EXIT_OK;
    for (size_t i = 0; i < p->ntargets; i++) {
        cf_run *run;
        json_t *caps = json_array();
        const char *err = NULL;
        if (cf_run_open(a->policy, p->targets[i].name, 0, &run) != 0) {
            err = cf_error();
            rc = CF_EXIT_FAILED;
        } else {
            instance_caps(run->store->caps, 0, caps);
        }
        json_t *r = json_pack("{s:s,s:s,s:s,s:o}", "kind", "target", "name", p->targets[i].name,
                              "driver", p->targets[i].driver, "capabilities", caps);
        if (err)
            json_object_set_new(r, "error", json_string(err));
        json_array_append_new(rows, r);
        if (!err)
            cf_run_close(run);
    }
    for (size_t i = 0; i < p->ncomponents; i++) {
        const cf_component *c = &p->components[i];
        if (c->type != CF_COMP_DATABASE)
            continue;
        json_t *caps = json_array();
        cf_dbinst db;
        const char *err = NULL;
        if (cf_dbinst_open(c, p->root, &db) != 0) {
            err = cf_error();
            rc = CF_EXIT_FAILED;
        } else {
            instance_caps(db.ops->capabilities ? db.ops->capabilities(db.inst) : 0, 1, caps);
            /* what rehearsals and the policy's checks need (ABI 1.1) */
            if (db.ops->query_target)
                json_array_append_new(caps, json_string("checks"));
            if (db.ops->scratch_create && db.ops->scratch_drop && !db.ops->owned_paths)
                json_array_append_new(caps, json_string("scratch"));
            /* what a backup's reference verification needs */
            if (db.ops->query_snapshot)
                json_array_append_new(caps, json_string("snapshot-query"));
            cf_dbinst_close(&db);
        }
        json_t *r = json_pack("{s:s,s:s,s:s,s:o}", "kind", "component", "name", c->name, "driver",
                              c->driver, "capabilities", caps);
        if (err)
            json_object_set_new(r, "error", json_string(err));
        json_array_append_new(rows, r);
    }
    if (a->json) {
        json_t *j = json_pack("{s:s,s:O}", "policy", p->name, "instances", rows);
        print_json(j);
        json_decref(j);
    } else {
        size_t k;
        json_t *r;
        printf("%-10s %-16s %-9s %s\n", "KIND", "NAME", "DRIVER", "CAPABILITIES");
        json_array_foreach(rows, k, r)
        {
            printf("%-10s %-16s %-9s ", json_string_value(json_object_get(r, "kind")),
                   json_string_value(json_object_get(r, "name")),
                   json_string_value(json_object_get(r, "driver")));
            json_t *caps = json_object_get(r, "capabilities"), *c;
            size_t m;
            json_array_foreach(caps, m, c) printf("%s%s", m ? "," : "", json_string_value(c));
            if (json_object_get(r, "error"))
                printf("(not opened: %s)", json_string_value(json_object_get(r, "error")));
            else if (!json_array_size(caps))
                printf("-");
            printf("\n");
        }
    }
    json_decref(rows);
    cf_policy_free(p);
    return rc;
}

static int cmd_plugins(int argc, char **argv)
{
    args a = {0};
    if (parse(argc, argv, &spec_plugins, &a) != 0)
        return CF_EXIT_USAGE;
    if (a.describe && a.policy)
        return usage_error("plugins", "give --describe NAME or -p POLICY, not both");
    if (a.policy)
        return plugins_instances(&a);
    if (a.describe) {
        const cf_driver *d = cf_registry_find_any(a.describe);
        if (!d) {
            /* name what exists */
            cf_buf names = {0};
            for (size_t i = 0; i < cf_registry_count(); i++) {
                const char *n = cf_registry_at(i)->desc.name;
                if (i)
                    cf_buf_append(&names, ", ", 2);
                cf_buf_append(&names, n, strlen(n));
            }
            cf_buf_append(&names, "", 1);
            cf_fail("no driver named '%s'; available: %s", a.describe, (char *)names.data);
            cf_buf_free(&names);
        }
        if (!d)
            return die(CF_EXIT_USAGE);
        if (a.json) {
            json_t *j = driver_json(d), *opts = json_array();
            json_object_set_new(j, "description",
                                json_string(d->desc.description ? d->desc.description : ""));
            for (const coffer_option *o = d->desc.options; o && o->name; o++)
                json_array_append_new(opts,
                                      json_pack("{s:s,s:s,s:b,s:s,s:s?}", "name", o->name, "type",
                                                type_name(o->type), "required", o->required,
                                                "description", o->description ? o->description : "",
                                                "default", o->default_value));
            json_object_set_new(j, "options", opts);
            print_json(j);
            json_decref(j);
            return CF_EXIT_OK;
        }
        printf("%s (%s driver) %s, ABI %u.%u, %s\n%s\n\noptions:\n", d->desc.name,
               cf_kind_name(d->desc.kind), d->desc.version ? d->desc.version : "?",
               d->desc.abi_major, d->desc.abi_minor, d->path ? d->path : "built in",
               d->desc.description ? d->desc.description : "");
        for (const coffer_option *o = d->desc.options; o && o->name; o++)
            printf("  %-20s %-6s %-9s %s%s%s%s%s\n", o->name, type_name(o->type),
                   o->required ? "required" : "", o->secret ? "[secret] " : "",
                   o->description ? o->description : "",
                   o->default_value ? " (default: " : "", o->default_value ? o->default_value : "",
                   o->default_value ? ")" : "");
        return CF_EXIT_OK;
    }
    if (a.json) {
        json_t *drv = json_array(), *bad = json_array();
        for (size_t i = 0; i < cf_registry_count(); i++)
            json_array_append_new(drv, driver_json(cf_registry_at(i)));
        for (size_t i = 0; i < cf_registry_failure_count(); i++)
            json_array_append_new(bad, json_string(cf_registry_failure_at(i)->reason));
        json_t *j = json_pack("{s:o,s:o}", "drivers", drv, "not_loaded", bad);
        print_json(j);
        json_decref(j);
        return CF_EXIT_OK;
    }
    printf("%-12s %-9s %-10s %-5s %-30s %s\n", "NAME", "KIND", "VERSION", "ABI", "CAPABILITIES",
           "SOURCE");
    for (size_t i = 0; i < cf_registry_count(); i++) {
        const cf_driver *d = cf_registry_at(i);
        char caps[128], abi[16];
        caps_string(d, caps, sizeof caps);
        snprintf(abi, sizeof abi, "%u.%u", d->desc.abi_major, d->desc.abi_minor);
        printf("%-12s %-9s %-10s %-5s %-30s %s\n", d->desc.name, cf_kind_name(d->desc.kind),
               d->desc.version ? d->desc.version : "?", abi, caps, d->path ? d->path : "built-in");
    }
    for (size_t i = 0; i < cf_registry_failure_count(); i++)
        printf("not loaded: %s\n", cf_registry_failure_at(i)->reason);
    return CF_EXIT_OK;
}

/* ---- policy check ---------------------------------------------------------- */

static const cli_spec spec_policy = {
    "policy",
    "usage: coffer policy check FILE [--json]\n"
    "       coffer policy show --set ID|latest [-p POLICY [--target NAME]] [--json]\n"
    "Validate a policy against the schema and its drivers' options. `policy show`\n"
    "prints the policy a set records (see `coffer policy show --help`); with\n"
    "--repo LOCATION before the command it needs no -p.\n",
    (const cli_use[]){USE_JSON("print what the policy holds as JSON"), USE_END}, 2};

static const char *comp_type_name(cf_comp_type t)
{
    return t == CF_COMP_DATABASE       ? "database"
           : t == CF_COMP_OBJECT_STORE ? "object_store"
                                       : "files";
}

static int cmd_policy(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "show") == 0)
        return cmd_policy_show(argc, argv);
    args a = {0};
    int rc = parse(argc, argv, &spec_policy, &a);
    if (rc == 0 && (a.npos < 1 || strcmp(a.pos[0], "check") != 0))
        rc = a.npos ? usage_error("policy", "unknown subcommand '%s'; expected `policy check FILE`",
                                  a.pos[0])
                    : usage_error("policy", "expected `policy check FILE`");
    else if (rc == 0 && a.npos != 2)
        rc = usage_error("policy", "expected `policy check FILE`");
    if (rc != 0) {
        args_free(&a);
        return CF_EXIT_USAGE;
    }
    const char *file = a.pos[1];
    args_free(&a);
    cf_policy *p;
    if (cf_run_load_policy(file, &p) != 0)
        return die(CF_EXIT_USAGE);
    if (cf_registry_validate_policy(p) != 0) { /* the drivers' own checks */
        cf_policy_free(p);
        return die(CF_EXIT_USAGE);
    }
    if (a.json) {
        json_t *comps = json_array(), *targets = json_array();
        for (size_t i = 0; i < p->ncomponents; i++)
            json_array_append_new(comps, json_pack("{s:s,s:s}", "name", p->components[i].name,
                                                   "type", comp_type_name(p->components[i].type)));
        for (size_t i = 0; i < p->ntargets; i++)
            json_array_append_new(targets, json_pack("{s:s,s:s}", "name", p->targets[i].name,
                                                     "location", p->targets[i].location));
        json_t *j = json_pack("{s:s,s:b,s:s,s:s,s:s,s:o,s:o}", "file", file, "valid", 1, "name",
                              p->name, "root", p->root, "mode",
                              p->mode == CF_MODE_MAINTENANCE ? "maintenance" : "online",
                              "components", comps, "targets", targets);
        print_json(j);
        json_decref(j);
        cf_policy_free(p);
        return CF_EXIT_OK;
    }
    printf("%s: policy '%s' is valid: root %s, %zu component(s), %zu target(s), %s mode\n", file,
           p->name, p->root, p->ncomponents, p->ntargets,
           p->mode == CF_MODE_MAINTENANCE ? "maintenance" : "online");
    cf_policy_free(p);
    return CF_EXIT_OK;
}

/* ---- main ------------------------------------------------------------------ */

static void load_plugins(char **dirs, size_t ndirs)
{
    const char *env = getenv("COFFER_PLUGIN_PATH");
    char *envcopy = env ? cf_strdup(env) : NULL;
    char **all = cf_calloc(ndirs + 64, sizeof(char *));
    size_t n = 0;
    for (size_t i = 0; i < ndirs; i++)
        all[n++] = dirs[i];
    for (char *save = NULL, *tok = envcopy ? strtok_r(envcopy, ":", &save) : NULL; tok && n < ndirs + 63;
         tok = strtok_r(NULL, ":", &save))
        all[n++] = tok;
    all[n++] = (char *)COFFER_PLUGIN_INSTALL_DIR;
    cf_registry_load((const char *const *)all, n);
    free(all);
    free(envcopy);
}

/* Runs the command line; *cmd_out names the command once known. */
static int dispatch(int argc, char **argv, const char **cmd_out)
{
    char **dirs = NULL;
    size_t ndirs = 0;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *o = argv[i];
        if (strcmp(o, "--plugin-dir") == 0) {
            if (i + 1 >= argc) {
                free(dirs);
                return usage_error(NULL, "--plugin-dir needs a value");
            }
            dirs = cf_realloc(dirs, (ndirs + 1) * sizeof(char *));
            dirs[ndirs++] = argv[++i];
        } else if (strncmp(o, "--plugin-dir=", 13) == 0) {
            dirs = cf_realloc(dirs, (ndirs + 1) * sizeof(char *));
            dirs[ndirs++] = (char *)o + 13;
        } else if (strcmp(o, "--repo") == 0 || strncmp(o, "--repo=", 7) == 0) {
            if (!o[6] && i + 1 >= argc) {
                free(dirs);
                return usage_error(NULL, "--repo needs a value");
            }
            cli_repo = o[6] ? o + 7 : argv[++i];
        } else if (strcmp(o, "-v") == 0 || strcmp(o, "--verbose") == 0) {
            cf_log_set_level(CF_LOG_DEBUG);
        } else if (strcmp(o, "-q") == 0 || strcmp(o, "--quiet") == 0) {
            cf_log_set_level(CF_LOG_ERROR);
        } else if (strcmp(o, "--no-progress") == 0) {
            no_progress = 1;
        } else if (strcmp(o, "--version") == 0) {
            printf("coffer %s (driver ABI %d.%d)\n", COFFER_VERSION, COFFER_ABI_MAJOR,
                   COFFER_ABI_MINOR);
            return 0;
        } else if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            fputs(usage_main, stdout);
            return 0;
        } else {
            free(dirs);
            return usage_error(NULL, "unknown option %s before the command", o);
        }
    }
    if (i >= argc) {
        fputs(usage_main, stderr);
        return CF_EXIT_USAGE;
    }
    const char *cmd = argv[i];
    *cmd_out = cmd;
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"init", cmd_init},       {"backup", cmd_backup}, {"sets", cmd_sets},
                {"restore", cmd_restore}, {"verify", cmd_verify}, {"rehearse", cmd_rehearse}, {"plugins", cmd_plugins},
                {"policy", cmd_policy},   {"forget", cmd_forget}, {"unlock", cmd_unlock},
                {"copy", cmd_copy},       {"check", cmd_check},   {"prune", cmd_prune},
                {"key", cmd_key},         {"extend-locks", cmd_extend_locks},
                {"dump", cmd_dump},
                {"mount", cmd_mount},     {"export", cmd_export},
                {"ls", cmd_ls},           {"find", cmd_find},     {"diff", cmd_diff},
                {"stats", cmd_stats}};
    if (strcmp(cmd, "help") == 0) {
        /* coffer help [COMMAND]: the same text as --help, on stdout. */
        free(dirs);
        if (i + 1 >= argc) {
            fputs(usage_main, stdout);
            return CF_EXIT_OK;
        }
        if (strcmp(argv[i + 1], "--help") == 0 || strcmp(argv[i + 1], "-h") == 0) {
            puts("usage: coffer help [COMMAND]\nDescribe coffer, or one command (the same text "
                 "as `coffer COMMAND --help`).");
            return CF_EXIT_OK;
        }
        if (i + 2 < argc)
            return usage_error("help", "unexpected argument '%s'", argv[i + 2]);
        for (size_t k = 0; k < CF_ARRAY_LEN(cmds); k++)
            if (strcmp(argv[i + 1], cmds[k].name) == 0) {
                char *av[] = {argv[i + 1], "--help", NULL};
                return cmds[k].fn(2, av);
            }
        return usage_error("help", "unknown command '%s'", argv[i + 1]);
    }
    for (size_t k = 0; k < CF_ARRAY_LEN(cmds); k++) {
        if (strcmp(cmd, cmds[k].name) != 0)
            continue;
        if (cli_repo && cli_repo_allowed(cmd, argc - i, argv + i) != 0) {
            free(dirs);
            return CF_EXIT_USAGE;
        }
        cf_signals_install();
        load_plugins(dirs, ndirs);
        int rc = cmds[k].fn(argc - i, argv + i);
        cf_registry_unload();
        cf_tmpdir_cleanup();
        free(dirs);
        if (rc != 0 && cf_cancel_flag)
            return 130;
        return rc;
    }
    free(dirs);
    *cmd_out = NULL;
    return usage_error(NULL, "unknown command '%s'", cmd);
}

/* Whether the command line asks for JSON: then a failure is reported as an
 * error object on stdout too, a usage error included. */
static int wants_json(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-j") == 0)
            return 1;
    return 0;
}

/* glibc gives every thread that allocates an arena of its own, up to 8
 * per core; buffers freed in one thread's arena are not reused by the
 * others, so readers, writers and upload threads that pass large buffers
 * between them hold several times what they use. One arena per core is
 * plenty for coffer's few long-lived threads. */
static void tune_malloc(void)
{
    if (!getenv("MALLOC_ARENA_MAX"))
        mallopt(M_ARENA_MAX, cf_cpus(2, INT_MAX));
}

int main(int argc, char **argv)
{
    tune_malloc();
    const char *cmd = NULL;
    int rc = dispatch(argc, argv, &cmd);
    /* A partial success (exit 3) printed its report, which says what went
     * wrong; a command that printed nothing gets the error object. */
    if (rc != 0 && !json_printed && (json_wanted || wants_json(argc, argv)))
        print_json_error(cmd, rc);
    return rc;
}
