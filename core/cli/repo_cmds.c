/* Repository maintenance commands: check, prune, key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "engine/check.h"
#include "engine/immutable.h"
#include "engine/monitor.h"
#include "engine/progress.h"
#include "engine/prune.h"
#include "engine/run.h"
#include "util/util.h"

/* ---- check ---------------------------------------------------------------- */

static const cli_spec spec_check = {
    "check",
    "usage: coffer check -p POLICY [--target NAME] [--read-data | --read-data-subset N%]\n"
    "                    [--rebuild-index] [--json]\n"
    "Check the whole repository (every set of every policy): config, index objects,\n"
    "that every indexed pack exists with its recorded size, that every manifest\n"
    "parses and every chunk it names is indexed. Packs no index names are listed\n"
    "(harmless leftovers of an interrupted backup; prune removes them).\n"
    "--read-data reads every pack: decrypts, decompresses and hashes every blob.\n"
    "--read-data-subset N% reads a random N% of the packs, a different share each run.\n"
    "--rebuild-index first rebuilds the index from the packs' own tables (under the\n"
    "exclusive lock): the repair for damaged or lost index objects.\n"
    "Each problem names set, path, chunk and object. Exit status 3 when problems are found.\n",
    (const cli_use[]){{OPT_POLICY, "FILE", "the policy (required)", 0},
                      {OPT_TARGET, "NAME", "the policy's target to check (default: the first)", 0},
                      {OPT_READ_DATA, NULL, "read every pack", 0},
                      {OPT_READ_DATA_SUBSET, "N%", "read a random N% of the packs", 0},
                      {OPT_REBUILD_INDEX, NULL, "rebuild the index from the packs first", 0},
                      {OPT_JSON, NULL, "print the report as JSON", 0},
                      {-1, NULL, NULL, 0}},
    0};

int cmd_check(int argc, char **argv)
{
    args a = {0};
    if (parse(argc, argv, &spec_check, &a) != 0)
        return CF_EXIT_USAGE;
    if (need_policy("check", &a))
        return CF_EXIT_USAGE;
    if (a.read_data && a.read_data_subset)
        return usage_error("check", "give --read-data or --read-data-subset, not both");
    cf_check_opts o = {.read_data = a.read_data, .policy = a.policy};
    if (a.read_data_subset && cf_check_parse_subset(a.read_data_subset, &o.subset_pct) != 0)
        return usage_error("check", "%s", cf_error());
    cf_run *run;
    int orc = cf_run_open(a.policy, a.target, 0, &run);
    if (orc != 0) /* -2: the policy or target is wrong */
        return die(orc == -2 ? CF_EXIT_USAGE : CF_EXIT_FAILED);
    run->no_progress = no_progress;
    cf_watch *w; /* the metrics file records every check, also one that could not run */
    cf_watch_begin(run->policy, "check", &w);
    /* Damaged index objects are findings here, not a reason to stop. The
     * lock is written while the repository opens. */
    const char *lname = a.rebuild_index ? "check --rebuild-index" : "check";
    cf_run_lock_early(run, a.rebuild_index, lname);
    if (cf_run_open_repo(run, CF_REPO_OPEN_SKIP_BAD_INDEX | CF_REPO_OPEN_NO_CACHE) != 0 ||
        cf_run_lock(run, a.rebuild_index, lname) != 0) {
        cf_watch_end(w, CF_EXIT_FAILED, cf_error(), NULL, NULL);
        cf_run_close(run);
        return die(CF_EXIT_FAILED);
    }
    /* Under the exclusive lock: no backup can add an index object that the
     * rebuild would then remove. */
    if (a.rebuild_index && cf_repo_rebuild_index(run->repo) != 0) {
        cf_error_prefix("rebuilding the index");
        cf_watch_end(w, CF_EXIT_FAILED, cf_error(), NULL, NULL);
        cf_run_close(run);
        return die(CF_EXIT_FAILED);
    }
    json_t *rep = NULL;
    int rc = cf_check(run, &o, &rep);
    cf_watch_end(w, rc, rc == CF_EXIT_FAILED ? cf_error() : NULL, rep, NULL);
    long long np = (long long)json_integer_value(json_object_get(rep, "problem_count"));
    size_t no = json_array_size(json_object_get(rep, "orphans"));
    if (rc == CF_EXIT_FAILED) {
        die(rc);
    } else if (a.json) {
        json_object_set_new(rep, "ok", json_boolean(rc == CF_EXIT_OK));
        print_json(rep);
        if (rc != CF_EXIT_OK)
            cli_error("check found %lld problem(s) (see above)", np);
    } else if (rc == CF_EXIT_OK)
        printf("check: no problems found (%lld set(s)%s%s)\n",
               (long long)json_integer_value(json_object_get(rep, "sets")),
               json_object_get(rep, "packs_read") ? ", data read" : "",
               no ? "; unindexed packs listed above" : "");
    else {
        json_t *f;
        size_t i;
        json_array_foreach(json_object_get(rep, "fixes"), i, f)
            fprintf(stderr, "fix: %s\n", json_string_value(f));
        cli_error("check found %lld problem(s) (see above)", np);
    }
    json_decref(rep);
    cf_run_close(run);
    return rc;
}

/* ---- prune ------------------------------------------------------------------ */

static const cli_spec spec_prune = {
    "prune",
    "usage: coffer prune -p POLICY [--target NAME] [--dry-run] [--max-unused PERCENT]\n"
    "                    [--bypass-governance] [--apply-tombstones] [--json]\n"
    "Remove the data no set references (after `coffer forget`), looking at every\n"
    "set of every policy in the repository. Packs nothing uses are removed; packs\n"
    "partly used are repacked (their used blobs copied into new packs), most\n"
    "wasteful first, until the unused bytes left are at most PERCENT (default 5)\n"
    "of the used ones; 0 repacks every partly used pack. Packs no index names\n"
    "are removed once older than an hour. Takes the exclusive lock; safe to\n"
    "interrupt at any point. --dry-run prints the plan and changes nothing.\n"
    "Prune removes, so it uses the target's maintenance: options (credentials\n"
    "that may delete) when it has them. On an immutable target, packs under\n"
    "retention are neither removed nor repacked until their locks end (a later\n"
    "prune removes them), and removed objects' old versions go once unlocked.\n"
    "--bypass-governance removes governance-locked objects now (credentials with\n"
    "the bypass permission). On an append-only target, removals are tombstones;\n"
    "--apply-tombstones removes for real what the tombstones name.\n",
    (const cli_use[]){{OPT_POLICY, "FILE", "the policy (required)", 0},
                      {OPT_TARGET, "NAME", "the policy's target to prune (default: the first)", 0},
                      {OPT_DRY_RUN, NULL, "print the plan, change nothing", 0},
                      {OPT_MAX_UNUSED, "PERCENT", "unused bytes allowed to stay (default 5)", 0},
                      {OPT_BYPASS_GOVERNANCE, NULL,
                       "remove objects under a governance lock (immutable targets)", 0},
                      {OPT_APPLY_TOMBSTONES, NULL,
                       "remove what tombstones name (append-only targets)", 0},
                      {OPT_JSON, NULL, "print the report as JSON", 0},
                      {-1, NULL, NULL, 0}},
    0};

int cmd_prune(int argc, char **argv)
{
    args a = {0};
    if (parse(argc, argv, &spec_prune, &a) != 0)
        return CF_EXIT_USAGE;
    cf_prune_cmd o = {.dry_run = a.dry_run,
                      .max_unused = 5,
                      .verbose = cf_log_level_get() >= CF_LOG_DEBUG,
                      .bypass_governance = a.bypass_governance,
                      .apply_tombstones = a.apply_tombstones};
    if (a.dry_run && (a.bypass_governance || a.apply_tombstones))
        return usage_error("prune", "--dry-run changes nothing: drop %s",
                           a.bypass_governance ? "--bypass-governance" : "--apply-tombstones");
    if (a.max_unused && cf_prune_parse_percent(a.max_unused, &o.max_unused) != 0)
        return usage_error("prune", "%s", cf_error());
    cf_run *run; /* the prune takes its exclusive lock itself */
    int orc = cli_open_parsed("prune", CF_RUN_REPO | (a.dry_run ? 0 : CF_RUN_MAINT), CLI_LOCK_NONE,
                              &a, &run);
    if (orc)
        return orc;
    if ((a.bypass_governance && !run->target->immutable) ||
        (a.apply_tombstones && !cf_store_append_only(run->store))) {
        int urc = usage_error("prune", a.bypass_governance ? "--bypass-governance: target '%s' is not immutable"
                                                           : "--apply-tombstones: target '%s' is not append-only",
                              run->target->name);
        cf_run_close(run);
        return urc;
    }
    /* Only with the flag do an append-only store's removals happen. */
    run->store->maintenance = a.apply_tombstones;
    json_t *rep = NULL;
    if (cf_prune_repository(run, &o, &rep) != 0) {
        cf_run_close(run);
        return die(CF_EXIT_FAILED);
    }
    if (a.json) {
        print_json(rep);
    } else {
        json_t *pk = json_object_get(rep, "packs"), *by = json_object_get(rep, "bytes");
        char b1[32];
        printf("prune%s: %s %lld pack(s) (%lld unused, %lld repacked), %s; kept %lld pack(s), "
               "%lld set(s)\n",
               a.dry_run ? " (dry run)" : "", a.dry_run ? "would remove" : "removed",
               (long long)(json_integer_value(json_object_get(pk, "removed")) +
                           json_integer_value(json_object_get(pk, "repacked"))),
               (long long)json_integer_value(json_object_get(pk, "removed")),
               (long long)json_integer_value(json_object_get(pk, "repacked")),
               cf_human_bytes((uint64_t)json_integer_value(json_object_get(by, "removed")), b1, 32),
               (long long)json_integer_value(json_object_get(pk, "kept")),
               (long long)json_integer_value(json_object_get(rep, "sets")));
    }
    json_decref(rep);
    cf_run_close(run);
    return CF_EXIT_OK;
}

/* ---- key ------------------------------------------------------------------------ */

static const cli_spec spec_key = {
    "key",
    "usage: coffer key list   -p POLICY [--target NAME] [--json]\n"
    "       coffer key add    -p POLICY [--target NAME] [--new-passphrase-file FILE] [--json]\n"
    "       coffer key remove -p POLICY [--target NAME] [--json] ID\n"
    "       coffer key passwd -p POLICY [--target NAME] [--new-passphrase-file FILE] [--json]\n"
    "Manage the passphrases of an encrypted repository. Each key (keys/ID) holds\n"
    "the repository's master key wrapped under one passphrase. The current\n"
    "passphrase comes from the target's source ($COFFER_PASSPHRASE by default);\n"
    "a new one from $COFFER_NEW_PASSPHRASE or --new-passphrase-file.\n"
    "add: another passphrase; remove: a key other than the one in use (never the\n"
    "last); passwd: replace the key in use with one for the new passphrase.\n"
    "There is no --dry-run: `key list` shows the keys, and remove refuses the key\n"
    "in use and the last one.\n",
    (const cli_use[]){{OPT_POLICY, "FILE", "the policy (required)", 0},
                      {OPT_TARGET, "NAME", "the policy's target (default: the first)", 0},
                      {OPT_JSON, NULL, "print the keys (list) or the key changed as JSON", 0},
                      {OPT_NEW_PASSPHRASE_FILE, "FILE",
                       "add, passwd: read the new passphrase "
                       "from FILE",
                       0},
                      {-1, NULL, NULL, 0}},
    2};

static int new_pass(const args *a, char **p, size_t *n)
{
    cf_passphrase_src s = {
        .env = "COFFER_NEW_PASSPHRASE", .file = a->new_passphrase_file, .what = "new passphrase"};
    return cf_passphrase_read(&s, p, n);
}

static int key_list(cf_run *run, const args *a)
{
    cf_key_info *v;
    size_t n;
    if (cf_repo_key_list(run->repo, &v, &n) != 0)
        return die(CF_EXIT_FAILED);
    json_t *arr = json_array();
    if (!a->json)
        printf("%-12s %-20s %-20s %-14s %s\n", "ID", "CREATED", "HOST", "KDF", "");
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:I,s:I,s:b,s:b}", "id", v[i].id,
                                             "created", v[i].created, "host", v[i].host, "opslimit",
                                             (json_int_t)v[i].opslimit, "memlimit",
                                             (json_int_t)v[i].memlimit, "current", v[i].current,
                                             "foreign", v[i].foreign));
        if (!a->json) {
            char kdf[32];
            snprintf(kdf, sizeof kdf, "argon2id %llux%lluM", (unsigned long long)v[i].opslimit,
                     (unsigned long long)(v[i].memlimit >> 20));
            printf("%-12.12s %-20s %-20.20s %-14s %s\n", v[i].id, v[i].created, v[i].host, kdf,
                   v[i].current   ? "(in use)"
                   : v[i].foreign ? "(another repository's: left by "
                                    "a failed init)"
                                  : "");
        }
    }
    if (a->json)
        print_json(arr);
    json_decref(arr);
    free(v);
    return CF_EXIT_OK;
}

/* add, remove, passwd: {"action", "added": ID|null, "removed": ID|null} */
static void key_json(const char *action, const char *added, const char *removed)
{
    json_t *j = json_pack("{s:s,s:s?,s:s?}", "action", action, "added", added, "removed", removed);
    print_json(j);
    json_decref(j);
}

int cmd_key(int argc, char **argv)
{
    args a = {0};
    if (parse(argc, argv, &spec_key, &a) != 0) {
        args_free(&a);
        return CF_EXIT_USAGE;
    }
    int urc = 0;
    const char *sub = a.npos ? a.pos[0] : "";
    int is_remove = strcmp(sub, "remove") == 0, is_list = strcmp(sub, "list") == 0;
    if (!a.npos)
        urc = usage_error("key", "expected list, add, remove ID or passwd");
    else if (!is_list && !is_remove && strcmp(sub, "add") != 0 && strcmp(sub, "passwd") != 0)
        urc = usage_error("key", "unknown subcommand '%s'; expected list, add, remove ID or passwd",
                          sub);
    else if (is_remove && a.npos != 2)
        urc = usage_error("key", "remove takes one key ID");
    else if (!is_remove && a.npos > 1)
        urc = usage_error("key", "unexpected argument '%s'", a.pos[1]);
    else if (a.new_passphrase_file && (is_list || is_remove))
        urc =
            usage_error("key", "--new-passphrase-file applies to `key add` and `key passwd` only");
    char *remove_id = is_remove && a.npos == 2 ? a.pos[1] : NULL;
    args_free(&a);
    if (urc)
        return urc;
    cf_run *run; /* locked below, once the passphrase was asked for */
    int removes = is_remove || strcmp(sub, "passwd") == 0;
    int orc = cli_open_parsed("key", CF_RUN_REPO | (removes ? CF_RUN_MAINT : 0), CLI_LOCK_NONE, &a,
                              &run);
    if (orc)
        return orc;
    int rc = CF_EXIT_OK;
    if (cf_repo_encryption(run->repo) == CF_REPO_ENC_NONE) {
        cf_fail("target '%s' (%s): the repository is not encrypted: it has no keys",
                run->target->name, run->target->location);
        rc = die(CF_EXIT_FAILED);
    } else if (strcmp(sub, "list") == 0) {
        rc = key_list(run, &a);
    } else {
        char lockname[32];
        snprintf(lockname, sizeof lockname, "key %s", sub);
        char *np = NULL;
        size_t nl = 0;
        char id[2 * CF_ID_LEN + 1];
        char old[2 * CF_ID_LEN + 1];
        snprintf(old, sizeof old, "%s", cf_repo_key_current(run->repo));
        if ((!is_remove && new_pass(&a, &np, &nl) != 0) || cf_run_lock(run, 1, lockname) != 0) {
            rc = die(CF_EXIT_FAILED);
        } else if (is_remove) {
            if (cf_repo_key_remove(run->repo, remove_id, 0) != 0)
                rc = die(CF_EXIT_FAILED);
            else if (a.json)
                key_json("remove", NULL, remove_id);
            else
                printf("removed key %s\n", remove_id);
        } else if (cf_repo_key_add(run->repo, np, nl, NULL, id) != 0) {
            rc = die(CF_EXIT_FAILED);
        } else if (strcmp(sub, "add") == 0) {
            if (a.json)
                key_json("add", id, NULL);
            else
                printf("added key %s\n", id);
        } else if (cf_repo_key_remove(run->repo, old, 1) != 0) {
            /* The new key works already; the old one still opens too. */
            cf_error_prefix("new key %.12s added, but the old key %.12s could not be removed", id,
                            old);
            rc = die(CF_EXIT_FAILED);
        } else if (a.json) {
            key_json("passwd", id, old);
        } else {
            printf("passphrase changed: key %s replaces %s\n", id, old);
        }
        cf_passphrase_free(np, nl);
    }
    cf_run_close(run);
    return rc;
}

/* ---- extend-locks --------------------------------------------------------------- */

static const cli_spec spec_extend_locks = {
    "extend-locks",
    "usage: coffer extend-locks -p POLICY [--target NAME] [--json]\n"
    "Extend the object lock retention of every live object of an immutable\n"
    "target (each pack the index names, the index and key objects, manifests,\n"
    "proofs, and the config last) to the date the sets need: their time plus\n"
    "the lock period.\n"
    "A backup does this itself when the locks would end too soon; run it when\n"
    "`coffer check` names objects whose lock ends early, or on a repository no\n"
    "backup wrote to for a while. Safe to repeat and to interrupt. The backup\n"
    "credentials may extend retention; none may shorten it.\n",
    (const cli_use[]){{OPT_POLICY, "FILE", "the policy (required)", 0},
                      {OPT_TARGET, "NAME", "the policy's target (default: the first)", 0},
                      {OPT_JSON, NULL, "print what was done as JSON", 0},
                      {-1, NULL, NULL, 0}},
    0};

int cmd_extend_locks(int argc, char **argv)
{
    args a = {0};
    cf_run *run;
    int orc = cli_open(argc, argv, &spec_extend_locks, CF_RUN_REPO, CLI_LOCK_SHARED, &a, &run);
    if (orc)
        return orc;
    if (!run->target->immutable) {
        cf_fail("target '%s' (%s) is not immutable: it has no locks to extend (see immutable: "
                "in coffer-policy(5))",
                run->target->name, run->target->location);
        cf_run_close(run);
        return die(CF_EXIT_USAGE);
    }
    double t0 = cf_now();
    if (cf_immutable_roll(run) != 0) {
        cf_run_close(run);
        return die(CF_EXIT_FAILED);
    }
    char until[64];
    cf_utc_time(run->store->retain_until, until, sizeof until);
    if (a.json) {
        json_t *j = json_pack("{s:s,s:s,s:I,s:I,s:f}", "target", run->target->name, "mode",
                              run->target->lock_mode == COFFER_LOCK_COMPLIANCE ? "compliance"
                                                                               : "governance",
                              "locked_until", (json_int_t)run->store->retain_until, "requests",
                              (json_int_t)run->retention_requests, "seconds", cf_now() - t0);
        print_json(j);
        json_decref(j);
    } else {
        printf("extend-locks: %llu object(s) locked until %s\n",
               (unsigned long long)run->retention_requests, until);
    }
    cf_run_close(run);
    return CF_EXIT_OK;
}
