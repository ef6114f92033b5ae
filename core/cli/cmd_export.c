/* coffer dump --component: a database component of a set in its engine's
 * native form, written to stdout. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "engine/export.h"
#include "engine/native.h"
#include "engine/run.h"
#include "util/util.h"

static const cli_spec spec_dump_component = {
    "dump",
    "usage: coffer dump -p POLICY [--target NAME] [--set ID|latest] --component NAME\n"
    "Write database component NAME of a set to stdout in its engine's native form:\n"
    "for SQLite, the database file itself (open it with sqlite3); for PostgreSQL,\n"
    "the pg_dump custom-format archive of its database (load it with pg_restore);\n"
    "for MySQL/MariaDB, SQL text the stock mysql client loads.\n"
    "Stdout must not be a terminal unless --force is given.\n"
    "Exit status 0 when the whole dump was written, 1 otherwise.\n",
    (const cli_use[]){{OPT_POLICY, "FILE", "the policy (required)", 0},
                      {OPT_TARGET, "NAME", "the policy's target to use (default: the first)", 0},
                      {OPT_SET, "ID|latest", "the set to read (default: latest)", 0},
                      {OPT_FORCE, NULL, "write to a terminal", 0},
                      {-1, NULL, NULL, 0}},
    1};

int cmd_dump_component(int argc, char **argv)
{
    /* --component NAME is taken out here; parse() reads the rest */
    char **av = cf_calloc((size_t)argc + 1, sizeof *av);
    int ac = 0;
    const char *component = NULL;
    int ncomp = 0, dashdash = 0;
    for (int i = 0; i < argc; i++) {
        if (!dashdash && i > 0 && strcmp(argv[i], "--") == 0)
            dashdash = 1;
        if (!dashdash && i > 0 && strcmp(argv[i], "--component") == 0) {
            if (i + 1 >= argc) {
                free(av);
                return usage_error("dump", "--component needs a NAME");
            }
            component = argv[++i];
            ncomp++;
            continue;
        }
        if (!dashdash && i > 0 && strncmp(argv[i], "--component=", 12) == 0) {
            component = argv[i] + 12;
            ncomp++;
            continue;
        }
        av[ac++] = argv[i];
    }
    args a = {0};
    int prc = parse(ac, av, &spec_dump_component, &a);
    free(av);
    if (prc != 0)
        return CF_EXIT_USAGE;
    if (ncomp != 1 || !component || !*component) {
        args_free(&a);
        return usage_error("dump", "give --component NAME once");
    }
    if (a.npos != 0) {
        args_free(&a);
        return usage_error("dump", "--component takes no PATH");
    }
    if (!a.force && isatty(STDOUT_FILENO)) {
        args_free(&a);
        return usage_error("dump", "stdout is a terminal; redirect it to a file or pipe, or "
                                   "give --force");
    }
    cf_run *run;
    int rc = cli_open_parsed("dump", 1, CLI_LOCK_NONE, &a, &run);
    if (rc) {
        args_free(&a);
        return rc;
    }
    char *id = NULL;
    if (cf_resolve_set(run, a.set ? a.set : "latest", &id) != 0 ||
        cf_native_dump(run, id, component, STDOUT_FILENO, NULL) != 0)
        rc = die(CF_EXIT_FAILED);
    else
        rc = CF_EXIT_OK;
    free(id);
    args_free(&a);
    cf_run_close(run);
    return rc;
}

/* coffer export: a set as a plain tar archive (engine/export.h). */
static const cli_spec spec_export = {
    "export",
    "usage: coffer export -p POLICY [--target NAME] [--set ID|latest] --to FILE.tar|- [--json]\n"
    "Write one set as a plain tar archive that stock tools restore without coffer:\n"
    "files/ holds the files components with owners, modes, times, xattrs and links,\n"
    "databases/ each SQLite database file, PostgreSQL pg_dump archive and MySQL\n"
    "SQL text, and RESTORE.txt, first in the archive, the commands (tar, sqlite3,\n"
    "pg_restore, mysql) that put everything back in the policy's order. Object\n"
    "stores are named there as left out.\n"
    "FILE is written beside itself under a temporary name and renamed when complete,\n"
    "so a failure (a full disk) never leaves an archive under FILE. With - the\n"
    "archive goes to stdout (not a terminal); after a failure it lacks its end marker.\n",
    (const cli_use[]){{OPT_POLICY, "FILE", "the policy (required)", 0},
                      {OPT_TARGET, "NAME", "the policy's target to use (default: the first)", 0},
                      {OPT_SET, "ID|latest", "the set to export (default: latest)", 0},
                      {OPT_TO, "FILE|-", "the archive to write (required)", 0},
                      {OPT_JSON, NULL, "print what was written as JSON (not with --to -)", 0},
                      {-1, NULL, NULL, 0}},
    0};

int cmd_export(int argc, char **argv)
{
    args a = {0};
    if (parse(argc, argv, &spec_export, &a) != 0)
        return CF_EXIT_USAGE;
    if (!a.to || !*a.to) {
        args_free(&a);
        return usage_error("export", "--to FILE.tar (or - for stdout) is required");
    }
    int to_stdout = strcmp(a.to, "-") == 0;
    if (to_stdout && a.json) {
        args_free(&a);
        return usage_error("export", "--json needs --to FILE: stdout holds the archive");
    }
    if (to_stdout && isatty(STDOUT_FILENO)) {
        args_free(&a);
        return usage_error("export", "stdout is a terminal; redirect it or give --to FILE.tar");
    }
    cf_run *run;
    int rc = cli_open_parsed("export", 1, CLI_LOCK_SHARED, &a, &run);
    if (rc) {
        args_free(&a);
        return rc;
    }
    char *id = NULL;
    json_t *rep = NULL;
    if (cf_resolve_set(run, a.set ? a.set : "latest", &id) != 0 ||
        cf_export(run, id, a.to, &rep) != 0) {
        rc = die(CF_EXIT_FAILED);
    } else {
        size_t nleft = json_array_size(json_object_get(rep, "left_out"));
        if (a.json)
            print_json(rep);
        else if (!to_stdout)
            printf("exported set %s to %s: %" PRId64 " files, %" PRId64 " bytes, %zu database(s)%s\n",
                   id, a.to, (int64_t)json_integer_value(json_object_get(rep, "files")),
                   (int64_t)json_integer_value(json_object_get(rep, "bytes")),
                   json_object_size(json_object_get(rep, "databases")),
                   nleft ? "; some components left out (see RESTORE.txt)" : "");
        rc = CF_EXIT_OK;
    }
    json_decref(rep);
    free(id);
    args_free(&a);
    cf_run_close(run);
    return rc;
}
