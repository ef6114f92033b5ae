/* coffer --repo LOCATION sets | restore | policy show: recovery without the
 * policy file, from what each set records. */
#include "cli/cmd_recover.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "engine/manifest.h"
#include "engine/progress.h"
#include "engine/recover.h"
#include "engine/restore.h"
#include "engine/run.h"
#include "plugin/registry.h"
#include "util/util.h"

const char *cli_repo;

#define USE_END                                                                                    \
    {                                                                                              \
        -1, NULL, NULL, 0                                                                          \
    }

int cli_repo_allowed(const char *cmd, int argc, char **argv)
{
    if (strcmp(cmd, "sets") == 0 || strcmp(cmd, "restore") == 0 || strcmp(cmd, "help") == 0)
        return 0;
    if (strcmp(cmd, "policy") == 0 && argc > 1 && strcmp(argv[1], "show") == 0)
        return 0;
    return usage_error(NULL,
                       "--repo LOCATION works with `sets`, `restore` and `policy show`; "
                       "`%s%s%s` takes -p POLICY instead",
                       cmd, strcmp(cmd, "policy") == 0 && argc > 1 ? " " : "",
                       strcmp(cmd, "policy") == 0 && argc > 1 ? argv[1] : "");
}

/* -p names a policy, --repo a repository: one or the other. */
static int refuse_policy(const char *cmd, int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--policy") == 0 || strncmp(s, "--policy=", 9) == 0 ||
            (s[0] == '-' && s[1] == 'p') || strcmp(s, "--target") == 0 ||
            strncmp(s, "--target=", 9) == 0)
            return usage_error(cmd,
                               "%s and --repo exclude each other: --repo LOCATION takes the "
                               "policy each set records",
                               strncmp(s, "--target", 8) == 0 ? "--target" : "-p POLICY");
    }
    return 0;
}

/* ---- sets ------------------------------------------------------------------ */

static const cli_spec spec_sets_repo = {
    "sets",
    "usage: coffer --repo LOCATION sets [--json]\n"
    "List every set in the repository at LOCATION, whatever policy made it, with\n"
    "the policy's name and whether the set records that policy (sets made before\n"
    "coffer recorded policies do not: only their files can be restored with --repo).\n",
    (const cli_use[]){{OPT_JSON, NULL, "print the sets as JSON", 0}, USE_END}, 0};

int cmd_sets_repo(int argc, char **argv)
{
    args a = {0};
    if (refuse_policy("sets", argc, argv) || parse(argc, argv, &spec_sets_repo, &a) != 0) {
        args_free(&a);
        return CF_EXIT_USAGE;
    }
    args_free(&a);
    cf_run *run;
    if (cf_run_open_location(cli_repo, 1, &run) != 0)
        return die(CF_EXIT_FAILED);
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
            json_array_append_new(arr, json_pack("{s:s,s:s}", "id", ids[i], "error", cf_error()));
            bad++;
            continue;
        }
        json_t *names = json_array();
        size_t k;
        json_t *c;
        json_array_foreach(json_object_get(h, "components"), k, c)
            json_array_append(names, json_object_get(c, "name"));
        int recorded = json_is_object(json_object_get(h, "policy_record"));
        json_t *o =
            json_pack("{s:O,s:O,s:O,s:O,s:O,s:O,s:o,s:O,s:b}", "id", json_object_get(h, "id"),
                      "policy", json_object_get(h, "policy"), "host", json_object_get(h, "host"),
                      "time", json_object_get(h, "time"), "mode", json_object_get(h, "mode"),
                      "root", json_object_get(h, "root"), "components", names, "totals",
                      json_object_get(h, "totals"), "policy_recorded", recorded);
        if (!o) { /* an old or odd header: the id at least */
            o = json_pack("{s:s,s:b}", "id", ids[i], "policy_recorded", recorded);
            json_object_set(o, "policy", json_object_get(h, "policy"));
        }
        json_array_append_new(arr, o);
        if (!a.json) {
            char b[32];
            json_t *tot = json_object_get(h, "totals");
            printf("%s  %s  %-16s %-12s %8lld files  %10s  ", ids[i],
                   json_string_value(json_object_get(h, "time")) ?: "?",
                   json_string_value(json_object_get(h, "policy")) ?: "?",
                   json_string_value(json_object_get(h, "host")) ?: "?",
                   (long long)json_integer_value(json_object_get(tot, "files")),
                   cf_human_bytes((uint64_t)json_integer_value(json_object_get(tot, "bytes")), b,
                                  sizeof b));
            json_array_foreach(json_object_get(h, "components"), k, c)
                printf("%s%s", k ? "," : "", json_string_value(json_object_get(c, "name")) ?: "?");
            if (!recorded)
                printf("  (no policy recorded)");
            printf("\n");
        }
        json_decref(h);
    }
    if (a.json)
        print_json(arr);
    else if (!n)
        printf("no sets in %s\n", cli_repo);
    json_decref(arr);
    if (bad)
        cli_error("%d set(s) could not be read (named above)", bad);
    cf_strv_free(ids, n);
    cf_run_close(run);
    return bad ? CF_EXIT_PROBLEMS : CF_EXIT_OK;
}

/* ---- policy show ------------------------------------------------------------- */

static const cli_spec spec_policy_show = {
    "policy",
    "usage: coffer policy show --set ID|latest [-p POLICY [--target NAME]] [--json]\n"
    "       coffer --repo LOCATION policy show --set ID|latest [--json]\n"
    "Print the policy a set was made with, as recorded in the set, as a policy\n"
    "file: save it, fill in what it says was left out (passwords and the\n"
    "variables or files they came from are never recorded), check it with\n"
    "`coffer policy check FILE` and use it with -p FILE. With --repo, `latest`\n"
    "is the newest set in the repository, whatever its policy.\n",
    (const cli_use[]){{OPT_SET, "ID|latest", "the set (required)", 0},
                      {OPT_POLICY, "FILE", "a policy whose target holds the set (or --repo)", 0},
                      {OPT_TARGET, "NAME", "the policy's target to use (default: the first)", 0},
                      {OPT_JSON, NULL, "print the record as JSON", 0},
                      USE_END},
    1};

static void print_comment_header(const char *id, json_t *h, json_t *rec)
{
    printf("# Policy '%s' as recorded by set %s\n# (made %s on %s, root %s).\n",
           json_string_value(json_object_get(h, "policy")) ?: "?", id,
           json_string_value(json_object_get(h, "time")) ?: "?",
           json_string_value(json_object_get(h, "host")) ?: "?",
           json_string_value(json_object_get(h, "root")) ?: "?");
    printf("# Passwords, passphrases and the variables or files they come from are\n"
           "# not recorded: each commented \"# KEY: ...\" line below says what to give.\n");
    size_t i;
    json_t *v;
    printf("# Restore order:");
    json_array_foreach(json_object_get(rec, "restore_order"), i, v)
        printf("%s %s", i ? "," : "", json_string_value(v));
    printf("\n");
    json_array_foreach(json_object_get(rec, "databases"), i, v)
    {
        const char *name = json_string_value(json_object_get(v, "name")) ?: "?";
        printf("# Database '%s' (%s): ", name,
               json_string_value(json_object_get(v, "driver")) ?: "?");
        if (json_object_get(v, "path"))
            printf("file %s under the root\n", json_string_value(json_object_get(v, "path")));
        else
            printf("server %s%s%s%s%s; restore it with --map %s=URL (an empty database)\n",
                   json_string_value(json_object_get(v, "host")) ?: "(default host)",
                   json_object_get(v, "port") ? " port " : "",
                   json_string_value(json_object_get(v, "port")) ?: "",
                   json_object_get(v, "database") ? ", database " : "",
                   json_string_value(json_object_get(v, "database")) ?: "", name);
    }
    printf("# Check it with `coffer policy check FILE`, then use it with -p FILE.\n");
}

int cmd_policy_show(int argc, char **argv)
{
    args a = {0};
    if ((cli_repo && refuse_policy("policy", argc, argv)) ||
        parse(argc, argv, &spec_policy_show, &a) != 0) {
        args_free(&a);
        return CF_EXIT_USAGE;
    }
    int rc = CF_EXIT_OK;
    if (a.npos != 1 || strcmp(a.pos[0], "show") != 0)
        rc = usage_error("policy", "expected `policy show --set ID`");
    else if (!a.set)
        rc = usage_error("policy", "--set ID is required (see `coffer%s%s sets`)",
                         cli_repo ? " --repo " : "", cli_repo ? cli_repo : "");
    else if (!cli_repo && !a.policy)
        rc = usage_error("policy", "give --repo LOCATION (before the command) or -p POLICY");
    if (rc) {
        args_free(&a);
        return rc;
    }
    cf_run *run = NULL;
    if (cli_repo) {
        if (cf_run_open_location(cli_repo, 1, &run) != 0) {
            args_free(&a);
            return die(CF_EXIT_FAILED);
        }
    } else if ((rc = cli_open_parsed("policy", 1, CLI_LOCK_NONE, &a, &run)) != 0) {
        args_free(&a);
        return rc;
    }
    char *id = NULL;
    json_t *h = NULL;
    if (cli_repo
            ? cf_recover_set(run, a.set, &id, &h) != 0
            : cf_resolve_set(run, a.set, &id) != 0 || cf_manifest_header(run->repo, id, &h) != 0) {
        rc = die(CF_EXIT_FAILED);
        goto out;
    }
    json_t *rec = json_object_get(h, "policy_record");
    if (!json_is_object(rec)) {
        const char *v = json_string_value(json_object_get(h, "coffer_version"));
        cli_error("set %s does not record its policy (made by coffer %s, before sets did); "
                  "only its files components can be restored with --repo",
                  id, v ? v : "of an older version");
        rc = CF_EXIT_FAILED;
        goto out;
    }
    if (a.json) {
        json_t *j = json_pack("{s:s,s:O,s:O}", "set", id, "policy", json_object_get(h, "policy"),
                              "record", rec);
        char *y = cf_recover_yaml(rec);
        json_object_set_new(j, "yaml", json_string(y));
        free(y);
        print_json(j);
        json_decref(j);
    } else {
        print_comment_header(id, h, rec);
        char *y = cf_recover_yaml(rec);
        fputs(y, stdout);
        free(y);
    }
out:
    free(id);
    json_decref(h);
    args_free(&a);
    cf_run_close(run);
    return rc;
}

/* ---- restore ------------------------------------------------------------------ */

static const cli_spec spec_restore_repo = {
    "restore",
    "usage: coffer --repo LOCATION restore --set ID|latest --to DIR [--only NAME]...\n"
    "                      [--map NAME=VALUE]... [--force] [--no-validate] [--no-checks]\n"
    "                      [--json] [--dry-run]\n"
    "Restore one set of the repository at LOCATION with the policy the set records,\n"
    "under DIR, in the recorded order. A file database (SQLite) goes under DIR\n"
    "like the files. A server database (PostgreSQL, MariaDB) is restored only\n"
    "into the database --map NAME=URL names: create an empty one first; to\n"
    "restore into the recorded server, give its URL with --map on purpose. A set\n"
    "made before coffer recorded policies restores its files components only.\n"
    "The recorded checks and validate commands run only from an encrypted\n"
    "repository (its manifests are authenticated); from an unencrypted one they\n"
    "are skipped, with a warning: review them with `policy show` and use -p.\n",
    (const cli_use[]){
        {OPT_SET, "ID|latest", "the set (required; latest: the newest of the repository)", 0},
        {OPT_TO, "DIR", "restore under DIR (required)", 0},
        {OPT_ONLY, "NAME", "restore only this component", CLI_REPEAT},
        {OPT_MAP, "NAME=VALUE", "send one component elsewhere (a URL for a server database)",
         CLI_REPEAT},
        {OPT_FORCE, NULL, "restore into a non-empty directory", 0},
        {OPT_NO_VALIDATE, NULL, "do not run the policy's validate commands", 0},
        {OPT_NO_CHECKS, NULL, "do not run the policy's checks", 0},
        {OPT_JSON, NULL, "print the report as JSON", 0},
        {OPT_DRY_RUN, NULL, "print the plan, write nothing", 0},
        USE_END},
    0};

static int selected(const args *a, const char *name)
{
    if (!a->nonly)
        return 1;
    for (size_t i = 0; i < a->nonly; i++)
        if (strcmp(a->only[i], name) == 0)
            return 1;
    return 0;
}

/* What the recorded policy cannot do from a bare repository, refused
 * before anything is written. 0, or an exit code (reported). */
static int check_recoverable(const args *a, const char *id, json_t *h, const cf_policy *p,
                             const cf_restore_opts *o)
{
    int recorded = json_is_object(json_object_get(h, "policy_record"));
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(h, "components"), i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name")) ?: "";
        const char *type = json_string_value(json_object_get(c, "type")) ?: "";
        if (!selected(a, name))
            continue;
        const cf_component *pc = cf_policy_component(p, name);
        if (!pc && !recorded) {
            cli_error("set %s records no policy (made by an older coffer): component '%s' "
                      "(%s) cannot be restored from the repository alone; restore the files "
                      "components with --only NAME, or use the policy file with -p",
                      id, name, type);
            return CF_EXIT_FAILED;
        }
        if (!pc) {
            cli_error("set %s: its recorded policy does not declare component '%s' (%s); "
                      "leave it out with --only",
                      id, name, type);
            return CF_EXIT_FAILED;
        }
        if (pc->type != CF_COMP_DATABASE || cf_restore_map(o, name))
            continue;
        const cf_driver *d = cf_registry_find(COFFER_KIND_DATABASE, pc->driver);
        if (d && d->database.owned_paths)
            continue;
        return usage_error("restore",
                           "component '%s' is a %s database on a server: create an empty "
                           "database and give --map %s=URL (the recorded server only when "
                           "named with --map on purpose), or leave it out with --only",
                           name, pc->driver, name);
    }
    return 0;
}

int cmd_restore_repo(int argc, char **argv)
{
    args a = {0};
    if (refuse_policy("restore", argc, argv) || parse(argc, argv, &spec_restore_repo, &a) != 0) {
        args_free(&a);
        return CF_EXIT_USAGE;
    }
    int rc = 0;
    if (!a.set)
        rc = usage_error(
            "restore", "--set ID is required with --repo (see `coffer --repo %s sets`)", cli_repo);
    else if (!a.to)
        rc = usage_error("restore", "--to DIR is required with --repo: the recorded root may "
                                    "not exist here");
    if (rc) {
        args_free(&a);
        return rc;
    }
    cf_run *loc = NULL, *run = NULL;
    char *id = NULL;
    json_t *h = NULL, *rep = NULL;
    cf_policy *p = NULL;
    if (cf_run_open_location(cli_repo, 1, &loc) != 0 || cf_recover_set(loc, a.set, &id, &h) != 0) {
        rc = die(CF_EXIT_FAILED);
        goto out;
    }
    json_t *rec = json_object_get(h, "policy_record");
    /* Whoever can write to an unencrypted repository could have written
     * the record: nothing in it that runs a program is used, and its
     * checks and validate commands are not run. An encrypted repository
     * authenticates its manifests. */
    int trusted = cf_repo_encryption(loc->repo) != 0;
    if (!trusted && json_is_object(rec))
        cf_recover_untrusted(rec);
    if (json_is_object(rec) ? cf_recover_policy(rec, cli_repo, &p) != 0
                            : cf_recover_policy_files(h, cli_repo, &p) != 0) {
        cf_error_prefix("set %s", id);
        rc = die(CF_EXIT_FAILED);
        goto out;
    }
    if (!json_is_object(rec))
        cf_log(CF_LOG_WARN,
               "set %s records no policy: restoring its files components only, "
               "without the policy's checks and validate commands",
               id);
    if (!trusted && json_is_object(rec) && (!a.no_validate || !a.no_checks))
        cf_log(CF_LOG_WARN,
               "the repository is not encrypted, so the recorded policy's checks "
               "and validate commands are not run (anyone who can write there could have "
               "written them); read them with `coffer --repo %s policy show --set %s` and "
               "run them with -p once reviewed",
               cli_repo, id);
    cf_run_close(loc);
    loc = NULL;
    cf_restore_opts o = {.set = id,
                         .to = a.to,
                         .only = a.only,
                         .nonly = a.nonly,
                         .maps = a.maps,
                         .nmaps = a.nmaps,
                         .force = a.force,
                         .no_validate = a.no_validate || !trusted || !json_is_object(rec),
                         .no_checks = a.no_checks || !trusted || !json_is_object(rec)};
    if ((rc = check_recoverable(&a, id, h, p, &o)) != 0) {
        cf_policy_free(p);
        goto out;
    }
    if (cf_run_open_policy(p, 1, &run) != 0) {
        cf_error_prefix("--repo %s", cli_repo);
        rc = die(CF_EXIT_FAILED);
        goto out;
    }
    run->no_progress = no_progress;
    rc = cf_restore_plan(run, &o, &rep);
    if (rc == CF_EXIT_USAGE) {
        usage_error("restore", "%s", cf_error());
    } else if (rc != CF_EXIT_OK) {
        die(rc);
    } else if (a.dry_run) {
        json_object_set_new(rep, "dry_run", json_true());
        if (a.json) {
            print_json(rep);
        } else {
            size_t i;
            json_t *c;
            printf("dry run: restore set %s into %s\n", id,
                   json_string_value(json_object_get(rep, "root")));
            json_array_foreach(json_object_get(rep, "components"), i, c) printf(
                "  %zu. %-12s %-12s -> %s\n", i + 1, json_string_value(json_object_get(c, "name")),
                json_string_value(json_object_get(c, "type")),
                json_string_value(json_object_get(c, "destination")));
            printf("dry run: nothing was written\n");
        }
    } else if (cf_run_lock(run, 0, "restore") != 0) {
        rc = die(CF_EXIT_FAILED);
    } else {
        json_decref(rep);
        rep = NULL;
        rc = cf_restore(run, &o, &rep);
        if (rc == CF_EXIT_USAGE) {
            usage_error("restore", "%s", cf_error());
        } else if (rc == CF_EXIT_FAILED) {
            die(rc);
        } else {
            if (a.json) {
                json_object_set_new(rep, "dry_run", json_false());
                json_object_set_new(rep, "ok", json_boolean(rc == CF_EXIT_OK));
                print_json(rep);
            } else if (rc == CF_EXIT_OK) {
                printf("restored set %s into %s\n", id,
                       json_string_value(json_object_get(rep, "root")));
            }
            if (rc != CF_EXIT_OK)
                cli_error("set %s restored into %s, but checks failed (see above)", id,
                          json_string_value(json_object_get(rep, "root")));
        }
    }
out:
    if (rep)
        json_decref(rep);
    json_decref(h);
    free(id);
    args_free(&a);
    cf_run_close(loc);
    cf_run_close(run);
    return rc;
}
