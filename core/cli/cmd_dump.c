/* coffer dump: one file of a set, written to stdout. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "engine/manifest.h"
#include "engine/run.h"
#include "engine/select.h"
#include "util/util.h"

static const cli_spec spec_dump = {
    "dump",
    "usage: coffer dump -p POLICY [--target NAME] [--set ID|latest] (PATH | --component NAME)\n"
    "Write the content of one file of a set to stdout, reading only its chunks.\n"
    "PATH is COMPONENT/PATH, PATH as the set records it (relative to the policy\n"
    "root); COMPONENT/ may be left out when the set has one files component.\n"
    "A directory, a symbolic link or a path the set does not hold is an error.\n"
    "Stdout must not be a terminal unless --force is given.\n"
    "Exit status 0 when every byte was written, 1 otherwise (a partial output\n"
    "is never complete: the exit status says so).\n",
    (const cli_use[]){{OPT_POLICY, "FILE", "the policy (required)", 0},
                      {OPT_TARGET, "NAME", "the policy's target to use (default: the first)", 0},
                      {OPT_SET, "ID|latest", "the set to read (default: latest)", 0},
                      {OPT_FORCE, NULL, "write to a terminal", 0},
                      {-1, NULL, NULL, 0}},
    1};

__attribute__((weak)) int cmd_dump_component(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    cli_error("coffer dump --component is not available");
    return CF_EXIT_USAGE;
}

static int write_all(const void *p, size_t n)
{
    return cf_write_all(STDOUT_FILENO, p, n) == 0 ? 0 : cf_fail_errno("cannot write to stdout");
}

int cmd_dump(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--component") == 0 || strncmp(argv[i], "--component=", 12) == 0)
            return cmd_dump_component(argc, argv);
    }
    args a = {0};
    if (parse(argc, argv, &spec_dump, &a) != 0)
        return CF_EXIT_USAGE;
    if (a.npos != 1) {
        args_free(&a);
        return usage_error("dump", "name one PATH (or --component NAME)");
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
    const char *want = a.pos[0];
    char *id = NULL;
    json_t *h = NULL;
    cf_mreader *m = NULL;
    cf_select *sel = NULL;
    cf_entry e = {0};
    int found = 0;
    if (cf_resolve_set(run, a.set ? a.set : "latest", &id) != 0 ||
        cf_manifest_open(run->repo, id, &m, &h) != 0) {
        rc = die(CF_EXIT_FAILED);
        goto out;
    }
    /* the same COMPONENT/PATH rule as restore --include, without globs */
    const char *files[64];
    size_t nf = 0, k;
    json_t *c;
    json_array_foreach(json_object_get(h, "components"), k, c)
    {
        if (nf < 64 && strcmp(json_string_value(json_object_get(c, "type")) ?: "", "files") == 0)
            files[nf++] = json_string_value(json_object_get(c, "name"));
    }
    sel = cf_select_new(files, nf);
    cf_buf lit = {0};
    for (const char *p = want; *p; p++) {
        if (strchr("*?[\\", *p))
            cf_buf_append(&lit, "\\", 1);
        cf_buf_append(&lit, p, 1);
    }
    cf_buf_append(&lit, "", 1);
    int sr = cf_select_include(sel, (char *)lit.data);
    cf_buf_free(&lit);
    if (sr != 0) {
        rc = usage_error("dump", "%s",
                         cf_error() + (strncmp(cf_error(), "--include ", 10) ? 0 : 10));
        goto out;
    }
    /* want as cf_select reads it: COMPONENT/PATH, or beneath the one
     * files component when its first part names none */
    char *qual = cf_strdup(want);
    size_t ql = strlen(qual), first = strcspn(qual, "/");
    while (ql > 1 && qual[ql - 1] == '/')
        qual[--ql] = 0;
    int named = 0;
    for (size_t i = 0; i < nf; i++)
        named |= strlen(files[i]) == first && strncmp(files[i], qual, first) == 0;
    if (!named) {
        char *q = cf_asprintf("%s/%s", files[0], qual);
        free(qual);
        qual = q;
    }
    int mr;
    while ((mr = cf_manifest_next(m, &e)) == 1) {
        if (e.path && (e.kind == CF_ENT_FILE || e.kind == CF_ENT_DIR || e.kind == CF_ENT_SYMLINK ||
                       e.kind == CF_ENT_HARDLINK)) {
            char *q = cf_asprintf("%s/%s", e.component, e.path);
            int same = strcmp(q, qual) == 0;
            free(q);
            if (same) {
                found = 1;
                break;
            }
        }
        cf_entry_clear(&e);
    }
    free(qual);
    if (mr < 0) {
        rc = die(CF_EXIT_FAILED);
        goto out;
    }
    if (!found) {
        cli_error("set %s holds no file %s", id, want);
        rc = CF_EXIT_FAILED;
        goto out;
    }
    if (e.kind == CF_ENT_HARDLINK) {
        /* the content is the first path's: find it */
        char *first = cf_strdup(e.target);
        char *comp = cf_strdup(e.component);
        cf_entry_clear(&e);
        cf_manifest_close(m);
        json_decref(h);
        h = NULL;
        m = NULL;
        found = 0;
        if (cf_manifest_open(run->repo, id, &m, &h) == 0)
            while (cf_manifest_next(m, &e) == 1) {
                if (e.kind == CF_ENT_FILE && strcmp(e.component, comp) == 0 &&
                    strcmp(e.path, first) == 0) {
                    found = 1;
                    break;
                }
                cf_entry_clear(&e);
            }
        free(first);
        free(comp);
        if (!found) {
            cli_error("set %s: %s is a hard link to a file the set does not hold", id, want);
            rc = CF_EXIT_FAILED;
            goto out;
        }
    }
    if (e.kind == CF_ENT_DIR) {
        cli_error("%s is a directory in set %s; restore it with `coffer restore --include %s "
                  "--to DIR`",
                  want, id, want);
        rc = CF_EXIT_FAILED;
        goto out;
    }
    if (e.kind == CF_ENT_SYMLINK) {
        cli_error("%s is a symbolic link in set %s (to %s), not a file", want, id,
                  e.target ? e.target : "?");
        rc = CF_EXIT_FAILED;
        goto out;
    }
    cf_buf b = {0};
    uint64_t written = 0;
    rc = CF_EXIT_OK;
    /* The file's chunks are read ahead, in ranged reads on the target's
     * connections, while earlier ones are written out. */
    cf_fetch *f = cf_fetch_new(run->repo, 0);
    uint64_t seq = cf_fetch_want(f, e.chunks, e.nchunks);
    for (size_t i = 0; i < e.nchunks && rc == CF_EXIT_OK; i++) {
        if (cf_fetch_take(f, seq + i, &b) != 0) {
            cf_error_prefix("%s", want);
            rc = die(CF_EXIT_FAILED);
        } else if (b.len > e.size - written) {
            cli_error("%s: the chunks hold more than the %llu bytes the set recorded", want,
                      (unsigned long long)e.size);
            rc = CF_EXIT_FAILED;
        } else if (write_all(b.data, b.len) != 0) {
            rc = die(CF_EXIT_FAILED);
        } else {
            written += b.len;
        }
    }
    cf_fetch_free(f); /* drops what was not taken after an error */
    cf_buf_free(&b);
    if (rc == CF_EXIT_OK && written != e.size) {
        cli_error("%s: the chunks hold %llu of the %llu bytes the set recorded", want,
                  (unsigned long long)written, (unsigned long long)e.size);
        rc = CF_EXIT_FAILED;
    }
out:
    cf_entry_clear(&e);
    cf_select_free(sel);
    if (m)
        cf_manifest_close(m);
    json_decref(h);
    free(id);
    args_free(&a);
    cf_run_close(run);
    return rc;
}
