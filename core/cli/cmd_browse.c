/* coffer ls, find, diff, stats: a repository browsed by its set
 * manifests (engine/browse.h). None of them reads a pack. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "engine/browse.h"
#include "engine/progress.h"
#include "engine/run.h"
#include "util/util.h"

#define USE_P {OPT_POLICY, "FILE", "the policy (required)", 0}
#define USE_T {OPT_TARGET, "NAME", "the policy's target to use (default: the first)", 0}
#define USE_J(d) {OPT_JSON, NULL, d, 0}
#define USE_E {-1, NULL, NULL, 0}

static const cli_spec spec_ls = {
    "ls",
    "usage: coffer ls -p POLICY [--target NAME] [--set ID|latest] [PATH] [--long] [--recursive] "
    "[--json]\n"
    "List the entries of one directory of a set, read from its manifest alone.\n"
    "PATH is COMPONENT/path as the set records it (relative to the policy root);\n"
    "without PATH, the set's components. A database component lists its dump\n"
    "streams, an object store its keys. Names holding control bytes are printed\n"
    "with \\xNN escapes. Exit status 1 when the set holds no PATH.\n",
    (const cli_use[]){USE_P, USE_T,
                      {OPT_SET, "ID|latest", "the set to list (default: latest)", 0},
                      {OPT_LONG, NULL, "mode, owner, size and mtime (UTC), like ls -l", 0},
                      {OPT_RECURSIVE, NULL, "everything beneath PATH, as COMPONENT/path", 0},
                      USE_J("print the entries as JSON"), USE_E},
    1};

int cmd_ls(int argc, char **argv)
{
    args a = {0};
    cf_run *run;
    int rc = cli_open(argc, argv, &spec_ls, CF_RUN_MANIFESTS, CLI_LOCK_NONE, &a, &run);
    if (rc)
        return rc;
    char *id = NULL;
    json_t *out = a.json ? json_array() : NULL;
    cf_ls_opts o = {a.npos ? a.pos[0] : NULL, a.long_format, a.recursive};
    if (cf_resolve_set(run, a.set ? a.set : "latest", &id) != 0)
        rc = die(CF_EXIT_FAILED);
    else if ((rc = cf_ls(run, id, &o, out)) != CF_EXIT_OK)
        rc = die(rc);
    else if (out) {
        json_t *r = json_pack("{s:s,s:s,s:O}", "set", id, "path", o.path ? o.path : "", "entries",
                              out);
        print_json(r);
        json_decref(r);
    }
    json_decref(out);
    free(id);
    args_free(&a);
    cf_run_close(run);
    return rc;
}

static const cli_spec spec_find = {
    "find",
    "usage: coffer find -p POLICY [--target NAME] [--set ID|all|latest] [--json] PATTERN...\n"
    "Which sets hold paths matching any PATTERN, oldest set first, with size,\n"
    "mtime (UTC) and status: new (first set listed that holds it), changed\n"
    "(other content than in the previous set holding it) or unchanged. A\n"
    "pattern without '/' matches the base name; one with '/' the whole\n"
    "COMPONENT/path or the path (fnmatch globs, '*' never crosses '/'). Only\n"
    "manifests are read. Exit status 1 when a pattern matches nothing (the\n"
    "error names it; the other patterns' matches are still printed).\n",
    (const cli_use[]){USE_P, USE_T,
                      {OPT_SET, "ID|all|latest", "the sets to search (default: all)", 0},
                      USE_J("print the matches as JSON"), USE_E},
    -1};

int cmd_find(int argc, char **argv)
{
    args a = {0};
    if (parse(argc, argv, &spec_find, &a) != 0)
        return CF_EXIT_USAGE;
    if (!a.npos) {
        args_free(&a);
        return usage_error("find", "give at least one PATTERN");
    }
    for (size_t i = 0; i < a.npos; i++)
        if (!*a.pos[i]) {
            args_free(&a);
            return usage_error("find", "an empty PATTERN matches nothing");
        }
    cf_run *run;
    int rc = cli_open_parsed("find", CF_RUN_MANIFESTS, CLI_LOCK_NONE, &a, &run);
    if (rc) {
        args_free(&a);
        return rc;
    }
    json_t *out = a.json ? json_array() : NULL;
    rc = cf_find(run, a.set, a.pos, a.npos, out);
    if (rc != CF_EXIT_OK)
        cli_error("%s", cf_error());
    if (out) {
        json_t *r = json_pack("{s:O}", "matches", out);
        if (rc != CF_EXIT_OK)
            json_object_set_new(r, "error", json_string(cf_error()));
        print_json(r);
        json_decref(r);
    }
    json_decref(out);
    args_free(&a);
    cf_run_close(run);
    return rc;
}

static const cli_spec spec_diff = {
    "diff",
    "usage: coffer diff -p POLICY [--target NAME] [--json] SET1 SET2 [PATH]\n"
    "What changed from SET1 to SET2, from their manifests alone: added (+),\n"
    "removed (-), modified (M: other chunks, so other content) and metadata only\n"
    "(m: mode, owner, mtime or xattrs), optionally below PATH (COMPONENT/path);\n"
    "then, for database components, the per-table row counts the sets recorded\n"
    "(R lines). Sets of different policies are compared path by path, and the\n"
    "output says so. SET is an id, a unique prefix of one, or latest.\n",
    (const cli_use[]){USE_P, USE_T, USE_J("print the changes and counts as JSON"), USE_E},
    3};

int cmd_diff(int argc, char **argv)
{
    args a = {0};
    if (parse(argc, argv, &spec_diff, &a) != 0)
        return CF_EXIT_USAGE;
    if (a.npos < 2) {
        args_free(&a);
        return usage_error("diff", "give two sets: SET1 SET2 [PATH]");
    }
    cf_run *run;
    int rc = cli_open_parsed("diff", CF_RUN_MANIFESTS, CLI_LOCK_NONE, &a, &run);
    if (rc) {
        args_free(&a);
        return rc;
    }
    json_t *out = a.json ? json_array() : NULL, *rep = NULL;
    rc = cf_diff(run, a.pos[0], a.pos[1], a.npos > 2 ? a.pos[2] : NULL, out, &rep);
    if (rc != CF_EXIT_OK) {
        rc = die(rc);
    } else if (out) {
        json_object_set(rep, "changes", out);
        print_json(rep);
    } else {
        json_t *c = json_object_get(rep, "counts");
        printf("%" JSON_INTEGER_FORMAT " added, %" JSON_INTEGER_FORMAT
               " removed, %" JSON_INTEGER_FORMAT " modified, %" JSON_INTEGER_FORMAT
               " metadata only\n",
               json_integer_value(json_object_get(c, "added")),
               json_integer_value(json_object_get(c, "removed")),
               json_integer_value(json_object_get(c, "modified")),
               json_integer_value(json_object_get(c, "metadata")));
    }
    json_decref(rep);
    json_decref(out);
    args_free(&a);
    cf_run_close(run);
    return rc;
}

static const cli_spec spec_stats = {
    "stats",
    "usage: coffer stats -p POLICY [--target NAME] [--set ID|latest] [--json]\n"
    "Sizes from the manifests and the index (no pack is read): the repository's\n"
    "packs and their bytes, distinct chunks, the logical bytes of all its sets,\n"
    "the bytes stored for them and the deduplication ratio; then, for each set\n"
    "of the policy (or the one given), its files, logical bytes and the bytes it\n"
    "added (chunks no older set of any policy references), per component.\n",
    (const cli_use[]){USE_P, USE_T, {OPT_SET, "ID|latest", "only this set", 0},
                      USE_J("print the figures as JSON"), USE_E},
    0};

int cmd_stats(int argc, char **argv)
{
    args a = {0};
    cf_run *run;
    int rc = cli_open(argc, argv, &spec_stats, 1, CLI_LOCK_NONE, &a, &run);
    if (rc)
        return rc;
    json_t *rep = NULL;
    rc = cf_stats(run, a.set, &rep);
    if (!rep) {
        rc = die(rc);
    } else if (a.json) {
        print_json(rep);
    } else {
        json_t *r = json_object_get(rep, "repository");
        char b1[32], b2[32], b3[32];
#define I(o, k) ((uint64_t)json_integer_value(json_object_get(o, k)))
        printf("repository: %" PRIu64 " sets, %" PRIu64 " packs (%s), %" PRIu64 " chunks\n",
               I(r, "sets"), I(r, "packs"), cf_human_bytes(I(r, "pack_bytes"), b1, sizeof b1),
               I(r, "chunks"));
        printf("  logical %s, distinct %s, stored %s: deduplication and compression %.2fx\n",
               cf_human_bytes(I(r, "logical_bytes"), b1, sizeof b1),
               cf_human_bytes(I(r, "unique_bytes"), b2, sizeof b2),
               cf_human_bytes(I(r, "stored_bytes"), b3, sizeof b3),
               json_real_value(json_object_get(r, "dedup_ratio")));
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(rep, "sets"), i, s)
        {
            printf("%s  %8" PRIu64 " files  %10s  added %10s (stored %s)\n",
                   json_string_value(json_object_get(s, "id")), I(s, "files"),
                   cf_human_bytes(I(s, "bytes"), b1, sizeof b1),
                   cf_human_bytes(I(s, "added_bytes"), b2, sizeof b2),
                   cf_human_bytes(I(s, "added_stored"), b3, sizeof b3));
            const char *cn;
            json_t *c;
            json_object_foreach(json_object_get(s, "components"), cn, c)
            printf("    %-16s %8" PRIu64 " files  %10s  added %10s\n", cn, I(c, "files"),
                   cf_human_bytes(I(c, "bytes"), b1, sizeof b1),
                   cf_human_bytes(I(c, "added_bytes"), b2, sizeof b2));
        }
#undef I
    }
    json_decref(rep);
    args_free(&a);
    cf_run_close(run);
    return rc;
}
