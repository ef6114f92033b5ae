/* Option parsing and output helpers shared by the commands. */
#include "cli/cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/run.h"
#include "util/util.h"

int no_progress;
int json_printed, json_wanted;

/* The last error line, for the error object of a command run with --json. */
static char last_error[2048];

/* Every option of every command, defined once. */
static const struct {
    const char *name;
    char shrt;
    int has_arg;
} optdefs[OPT_COUNT] = {
    [OPT_HELP] = {"help", 'h', 0},
    [OPT_VERBOSE] = {"verbose", 'v', 0},
    [OPT_QUIET] = {"quiet", 'q', 0},
    [OPT_NO_PROGRESS] = {"no-progress", 0, 0},
    [OPT_POLICY] = {"policy", 'p', 1},
    [OPT_TARGET] = {"target", 't', 1},
    [OPT_JSON] = {"json", 'j', 0},
    [OPT_SET] = {"set", 0, 1},
    [OPT_TO] = {"to", 0, 1},
    [OPT_IN_PLACE] = {"in-place", 0, 0},
    [OPT_ONLY] = {"only", 0, 1},
    [OPT_MAP] = {"map", 0, 1},
    [OPT_FORCE] = {"force", 0, 0},
    [OPT_READ_DATA] = {"read-data", 0, 0},
    [OPT_NO_VALIDATE] = {"no-validate", 0, 0},
    [OPT_DESCRIBE] = {"describe", 0, 1},
    [OPT_FROM] = {"from", 0, 1},
    [OPT_DRY_RUN] = {"dry-run", 0, 0},
    [OPT_ROLLBACK_OBJECTS] = {"rollback-objects", 0, 0},
    [OPT_ALL] = {"all", 0, 0},
    [OPT_KEEP_LAST] = {"keep-last", 0, 1},
    [OPT_KEEP_HOURLY] = {"keep-hourly", 0, 1},
    [OPT_KEEP_DAILY] = {"keep-daily", 0, 1},
    [OPT_KEEP_WEEKLY] = {"keep-weekly", 0, 1},
    [OPT_KEEP_MONTHLY] = {"keep-monthly", 0, 1},
    [OPT_KEEP_YEARLY] = {"keep-yearly", 0, 1},
    [OPT_KEEP_WITHIN] = {"keep-within", 0, 1},
    [OPT_ENCRYPTION] = {"encryption", 0, 1},
    [OPT_READ_DATA_SUBSET] = {"read-data-subset", 0, 1},
    [OPT_MAX_UNUSED] = {"max-unused", 0, 1},
    [OPT_NEW_PASSPHRASE_FILE] = {"new-passphrase-file", 0, 1},
    [OPT_REBUILD_INDEX] = {"rebuild-index", 0, 0},
    [OPT_CLEANUP_PREVIOUS] = {"cleanup-previous", 0, 0},
    [OPT_KEEP] = {"keep", 0, 0},
    [OPT_SCRATCH] = {"scratch", 0, 1},
    [OPT_CLEANUP] = {"cleanup", 0, 0},
    [OPT_KEEP_PROVEN] = {"keep-proven", 0, 1},
    [OPT_NO_CHECKS] = {"no-checks", 0, 0},
    [OPT_INCLUDE] = {"include", 0, 1},
    [OPT_EXCLUDE] = {"exclude", 0, 1},
    [OPT_INCLUDE_FROM] = {"include-from", 0, 1},
    [OPT_SALVAGE] = {"salvage", 0, 0},
    [OPT_CACHE_SIZE] = {"cache-size", 0, 1},
    [OPT_LONG] = {"long", 'l', 0},
    [OPT_RECURSIVE] = {"recursive", 'R', 0},
    [OPT_BYPASS_GOVERNANCE] = {"bypass-governance", 0, 0},
    [OPT_APPLY_TOMBSTONES] = {"apply-tombstones", 0, 0},
};

/* Options every command takes: they change how much is printed, never
 * what is done. */
static int is_common(int id)
{
    return id == OPT_HELP || id == OPT_VERBOSE || id == OPT_QUIET || id == OPT_NO_PROGRESS;
}

const char *opt_name(int id)
{
    static char buf[OPT_COUNT][40];
    if (!buf[id][0])
        snprintf(buf[id], sizeof buf[id], "--%s", optdefs[id].name);
    return buf[id];
}

int given(const args *a, int id)
{
    return a->given[id];
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    fprintf(stderr, "coffer: error: %s\n", last_error);
}

int die(int code)
{
    cli_error("%s", cf_error());
    return code;
}

int usage_error(const char *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cmd)
        cli_error("%s: %s (see `coffer %s --help`)", cmd, msg, cmd);
    else
        cli_error("%s (see `coffer --help`)", msg);
    return CF_EXIT_USAGE;
}

void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!s)
        return;
    puts(s);
    fflush(stdout);
    free(s);
    json_printed = 1;
}

void print_json_error(const char *cmd, int code)
{
    const char *msg = last_error[0] ? last_error : cf_error();
    json_t *e = json_pack("{s:{s:s,s:i,s:s?}}", "error", "message", msg && *msg ? msg : "failed",
                          "exit", code, "command", cmd);
    print_json(e);
    json_decref(e);
}

static const cli_use *find_use(const cli_spec *spec, int id)
{
    for (const cli_use *u = spec->opts; u && u->id >= 0; u++)
        if (u->id == id)
            return u;
    return NULL;
}

static void print_help(const cli_spec *spec)
{
    fputs(spec->help, stdout);
    printf("\noptions:\n");
    for (const cli_use *u = spec->opts; u && u->id >= 0; u++) {
        char left[64];
        int n = snprintf(left, sizeof left, "%c%c%s--%s%s%s", optdefs[u->id].shrt ? '-' : ' ',
                         optdefs[u->id].shrt ? optdefs[u->id].shrt : ' ',
                         optdefs[u->id].shrt ? ", " : "  ", optdefs[u->id].name, u->arg ? " " : "",
                         u->arg ? u->arg : "");
        printf("  %-*s %s%s\n", n < 30 ? 30 : n, left, u->desc,
               u->flags & CLI_REPEAT ? " (repeatable)" : "");
    }
    printf("and, as for every command: -v/--verbose, -q/--quiet, --no-progress, -h/--help.\n"
           "Any other option or argument is refused (exit status 2).\n");
}

static void push(char ***v, size_t *n, char *s)
{
    *v = cf_realloc(*v, (*n + 1) * sizeof **v);
    (*v)[(*n)++] = s;
}

/* Store one option's value; 0, or CF_EXIT_USAGE (reported). */
static int take(const cli_spec *spec, args *a, int id, const char *shown, char *val)
{
    const cli_use *u = find_use(spec, id);
    if (!u && !is_common(id))
        return usage_error(spec->name, "%s does not apply to %s", shown, spec->name);
    if (a->given[id] && !(u && (u->flags & CLI_REPEAT)) && !is_common(id))
        return usage_error(spec->name, "%s given twice", opt_name(id));
    if ((id == OPT_VERBOSE && a->given[OPT_QUIET]) || (id == OPT_QUIET && a->given[OPT_VERBOSE]))
        return usage_error(spec->name, "give -v or -q, not both");
    a->given[id]++;
    switch (id) {
    case OPT_HELP: print_help(spec); exit(0);
    case OPT_VERBOSE: cf_log_set_level(CF_LOG_DEBUG); break;
    case OPT_QUIET: cf_log_set_level(CF_LOG_ERROR); break;
    case OPT_NO_PROGRESS: no_progress = 1; break;
    case OPT_POLICY: a->policy = val; break;
    case OPT_TARGET: a->target = val; break;
    case OPT_JSON:
        a->json = 1;
        json_wanted = 1;
        break;
    case OPT_SET: a->set = val; break;
    case OPT_TO: a->to = val; break;
    case OPT_IN_PLACE: a->in_place = 1; break;
    case OPT_ONLY:
        for (size_t i = 0; i < a->nonly; i++)
            if (strcmp(a->only[i], val) == 0)
                return usage_error(spec->name, "--only %s given twice", val);
        push(&a->only, &a->nonly, val);
        break;
    case OPT_MAP: push(&a->maps, &a->nmaps, val); break;
    case OPT_FORCE: a->force = 1; break;
    case OPT_READ_DATA: a->read_data = 1; break;
    case OPT_NO_VALIDATE: a->no_validate = 1; break;
    case OPT_NO_CHECKS: a->no_checks = 1; break;
    case OPT_DESCRIBE: a->describe = val; break;
    case OPT_FROM: a->from = val; break;
    case OPT_DRY_RUN: a->dry_run = 1; break;
    case OPT_ROLLBACK_OBJECTS: a->rollback_objects = 1; break;
    case OPT_ALL: a->all = 1; break;
    case OPT_KEEP_WITHIN: a->keep_within = val; break;
    case OPT_ENCRYPTION: a->encryption = val; break;
    case OPT_READ_DATA_SUBSET: a->read_data_subset = val; break;
    case OPT_MAX_UNUSED: a->max_unused = val; break;
    case OPT_NEW_PASSPHRASE_FILE: a->new_passphrase_file = val; break;
    case OPT_REBUILD_INDEX: a->rebuild_index = 1; break;
    case OPT_CLEANUP_PREVIOUS: a->cleanup_previous = 1; break;
    case OPT_KEEP: a->keep_scratch = 1; break;
    case OPT_SCRATCH: push(&a->scratch, &a->nscratch, val); break;
    case OPT_CLEANUP: a->cleanup = 1; break;
    case OPT_INCLUDE: push(&a->include, &a->ninclude, val); break;
    case OPT_EXCLUDE: push(&a->exclude, &a->nexclude, val); break;
    case OPT_INCLUDE_FROM: push(&a->include_from, &a->ninclude_from, val); break;
    case OPT_SALVAGE: a->salvage = 1; break;
    case OPT_CACHE_SIZE: a->cache_size = val; break;
    case OPT_LONG: a->long_format = 1; break;
    case OPT_RECURSIVE: a->recursive = 1; break;
    case OPT_BYPASS_GOVERNANCE: a->bypass_governance = 1; break;
    case OPT_APPLY_TOMBSTONES: a->apply_tombstones = 1; break;
    default:
        if ((id >= OPT_KEEP_LAST && id <= OPT_KEEP_YEARLY) || id == OPT_KEEP_PROVEN) {
            char *end;
            long v = strtol(val, &end, 10);
            if (!*val || *end || v < 0 || v > 1000000)
                return usage_error(spec->name, "%s needs a count, not '%s'", opt_name(id), val);
            if (id == OPT_KEEP_PROVEN)
                a->keep_proven = (int)v;
            else
                a->keep[id - OPT_KEEP_LAST] = (int)v;
        }
        break;
    }
    return 0;
}

/* Exact names only: an abbreviation ("--dry") is an unknown option, so a
 * later option never changes what an old command line means. */
static int parse_args(int argc, char **argv, const cli_spec *spec, args *a);

/* On a usage error nothing parsed is kept: the caller just returns. */
int parse(int argc, char **argv, const cli_spec *spec, args *a)
{
    int rc = parse_args(argc, argv, spec, a);
    if (rc != 0)
        args_free(a);
    return rc;
}

static int parse_args(int argc, char **argv, const cli_spec *spec, args *a)
{
    for (int k = 0; k < 6; k++)
        a->keep[k] = -1;
    a->keep_proven = -1;
    int only_args = 0;
    for (int i = 1; i < argc; i++) {
        char *s = argv[i];
        if (only_args || s[0] != '-' || !s[1]) {
            push(&a->pos, &a->npos, s);
            continue;
        }
        if (strcmp(s, "--") == 0) {
            only_args = 1;
            continue;
        }
        if (s[1] == '-') {
            char name[64];
            const char *eq = strchr(s + 2, '=');
            size_t l = eq ? (size_t)(eq - (s + 2)) : strlen(s + 2);
            snprintf(name, sizeof name, "%.*s", (int)(l < 60 ? l : 60), s + 2);
            int id = -1;
            for (int k = 0; k < OPT_COUNT; k++)
                if (strcmp(optdefs[k].name, name) == 0)
                    id = k;
            if (id < 0)
                return usage_error(spec->name, "unknown option --%s", name);
            char *val = NULL;
            if (!optdefs[id].has_arg && eq)
                return usage_error(spec->name, "--%s takes no value", name);
            if (optdefs[id].has_arg) {
                if (eq)
                    val = (char *)eq + 1;
                else if (i + 1 < argc)
                    val = argv[++i];
                else if (find_use(spec, id) || is_common(id))
                    return usage_error(spec->name, "--%s needs a value", name);
            }
            if (take(spec, a, id, opt_name(id), val) != 0)
                return CF_EXIT_USAGE;
            continue;
        }
        /* Short options: flags may be grouped (-vq), a value may follow
         * directly (-pFILE) or as the next argument. */
        for (char *c = s + 1; *c; c++) {
            int id = -1;
            for (int k = 0; k < OPT_COUNT; k++)
                if (optdefs[k].shrt && optdefs[k].shrt == *c)
                    id = k;
            if (id < 0)
                return usage_error(spec->name, "unknown option -%c", *c);
            char shown[3] = {'-', *c, 0};
            char *val = NULL;
            if (optdefs[id].has_arg) {
                if (c[1])
                    val = c + 1;
                else if (i + 1 < argc)
                    val = argv[++i];
                else if (find_use(spec, id))
                    return usage_error(spec->name, "-%c needs a value", *c);
            }
            if (take(spec, a, id, shown, val) != 0)
                return CF_EXIT_USAGE;
            if (val)
                break;
        }
    }
    if (spec->max_args >= 0 && a->npos > (size_t)spec->max_args)
        return usage_error(spec->name, "unexpected argument '%s'%s", a->pos[spec->max_args],
                           find_use(spec, OPT_SET) ? " (a set is chosen with --set)" : "");
    return 0;
}

void args_free(args *a)
{
    free(a->maps);
    free(a->only);
    free(a->pos);
    free(a->scratch);
    free(a->include);
    free(a->exclude);
    free(a->include_from);
    a->include = a->exclude = a->include_from = NULL;
    a->ninclude = a->nexclude = a->ninclude_from = 0;
    a->maps = a->only = a->pos = a->scratch = NULL;
    a->nmaps = a->nonly = a->npos = a->nscratch = 0;
}

int need_policy(const char *cmd, const args *a)
{
    if (!a->policy)
        return usage_error(cmd, "-p POLICY is required");
    return 0;
}

int cli_open(int argc, char **argv, const cli_spec *spec, int open_repo, int lock, args *a,
             cf_run **run)
{
    *run = NULL;
    if (parse(argc, argv, spec, a) != 0)
        return CF_EXIT_USAGE;
    return cli_open_parsed(spec->name, open_repo, lock, a, run);
}

int cli_open_parsed(const char *cmd, int open_repo, int lock, args *a, cf_run **run)
{
    *run = NULL;
    if (need_policy(cmd, a))
        return CF_EXIT_USAGE;
    /* A command locked here writes its lock while the repository opens
     * and looks at the sets next: they are listed as soon as the lock is
     * written, while the other locks are. */
    int orc = lock != CLI_LOCK_NONE ? cf_run_open_locking(a->policy, a->target, open_repo,
                                                          lock == CLI_LOCK_EXCLUSIVE, cmd, run)
                                    : cf_run_open(a->policy, a->target, open_repo, run);
    if (orc != 0) {
        *run = NULL;
        return die(orc == -2 ? CF_EXIT_USAGE : CF_EXIT_FAILED);
    }
    (*run)->no_progress = no_progress;
    if (lock != CLI_LOCK_NONE && cf_run_lock(*run, lock == CLI_LOCK_EXCLUSIVE, cmd) != 0) {
        cf_run_close(*run);
        *run = NULL;
        return die(CF_EXIT_FAILED);
    }
    return 0;
}
