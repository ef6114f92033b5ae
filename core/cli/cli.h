/*
 * The coffer command line: shared option parsing and output helpers. One
 * file per group of commands; main.c holds the command table.
 *
 * Every option is defined once (cli.c); each command lists the options it
 * uses (a cli_spec), and that list both drives parsing and prints the
 * command's option help, so a command never accepts an option it ignores.
 */
#ifndef CF_CLI_H
#define CF_CLI_H

#include <jansson.h>
#include <stddef.h>

enum cli_opt_id {
    OPT_HELP,
    OPT_VERBOSE,
    OPT_QUIET,
    OPT_NO_PROGRESS,
    OPT_POLICY,
    OPT_TARGET,
    OPT_JSON,
    OPT_SET,
    OPT_TO,
    OPT_IN_PLACE,
    OPT_ONLY,
    OPT_MAP,
    OPT_FORCE,
    OPT_READ_DATA,
    OPT_NO_VALIDATE,
    OPT_DESCRIBE,
    OPT_FROM,
    OPT_DRY_RUN,
    OPT_ROLLBACK_OBJECTS,
    OPT_ALL,
    OPT_KEEP_LAST, /* the six counts in cf_retention's order */
    OPT_KEEP_HOURLY,
    OPT_KEEP_DAILY,
    OPT_KEEP_WEEKLY,
    OPT_KEEP_MONTHLY,
    OPT_KEEP_YEARLY,
    OPT_KEEP_WITHIN,
    OPT_ENCRYPTION,
    OPT_READ_DATA_SUBSET,
    OPT_MAX_UNUSED,
    OPT_NEW_PASSPHRASE_FILE,
    OPT_REBUILD_INDEX,
    OPT_CLEANUP_PREVIOUS,
    OPT_KEEP,
    OPT_SCRATCH,
    OPT_CLEANUP,
    OPT_KEEP_PROVEN,
    OPT_NO_CHECKS,
    OPT_INCLUDE,
    OPT_EXCLUDE,
    OPT_INCLUDE_FROM,
    OPT_SALVAGE,
    OPT_CACHE_SIZE,
    OPT_LONG,
    OPT_RECURSIVE,
    OPT_BYPASS_GOVERNANCE,
    OPT_APPLY_TOMBSTONES,
    OPT_COUNT
};

/* One option a command uses: its value's name and what it does there. */
#define CLI_REPEAT 1u /* may be given several times; the values accumulate */
typedef struct cli_use {
    int id;
    const char *arg; /* value name in the help ("DIR"); NULL for a flag */
    const char *desc;
    unsigned flags;
} cli_use;

typedef struct cli_spec {
    const char *name;    /* "forget", "key", "policy" */
    const char *help;    /* synopsis and description, printed by --help */
    const cli_use *opts; /* ends with {-1} */
    int max_args;        /* positional arguments: at most this many; -1 any */
} cli_spec;

typedef struct args {
    const char *policy, *target, *set, *to, *describe, *from, *keep_within;
    int json, in_place, force, read_data, no_validate, no_checks, dry_run, all, rollback_objects;
    int keep[6]; /* last, hourly, daily, weekly, monthly, yearly; -1 unset */
    char **maps, **only, **pos; /* --map, --only, positional arguments */
    size_t nmaps, nonly, npos;
    const char *encryption, *read_data_subset, *max_unused, *new_passphrase_file;
    int rebuild_index;
    int cleanup_previous;
    int keep_scratch, cleanup;
    int keep_proven; /* -1 unset */
    char **scratch; /* --scratch */
    size_t nscratch;
    char **include, **exclude, **include_from; /* --include, --exclude, --include-from */
    size_t ninclude, nexclude, ninclude_from;
    int salvage;
    const char *cache_size; /* --cache-size */
    int long_format, recursive; /* --long, --recursive */
    int bypass_governance, apply_tombstones;
    int given[OPT_COUNT]; /* how often each option was given */
} args;

/* Parse a command's options into a; prints help and exits on --help.
 * Anything the command does not use is refused: returns CF_EXIT_USAGE
 * (reported, naming the option or argument), 0 when fine. */
int parse(int argc, char **argv, const cli_spec *spec, args *a);
void args_free(args *a);
/* Whether an option was given ("--NAME" for messages). */
int given(const args *a, int id);
const char *opt_name(int id);
int need_policy(const char *cmd, const args *a);
/* The one way an error line is printed: "coffer: error: MSG" on stderr.
 * The message is kept: a command run with --json that fails before it
 * printed its report gets it back as an error object (print_json_error). */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* cli_error("<cf_error()>"), returns code. */
int die(int code);
/* One line "coffer: error: CMD: MSG (see `coffer CMD --help`)", returns
 * CF_EXIT_USAGE. */
int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print j on stdout and note that this command's JSON was printed. */
void print_json(json_t *j);
extern int json_printed;
/* --json was parsed (main also looks for it in a line parse refused). */
extern int json_wanted;
/* {"error": {"message": <last error line>, "exit": code, "command": cmd}};
 * cmd NULL when the command line named none. */
void print_json_error(const char *cmd, int code);
extern int no_progress;

/* The common start of a policy command: parse options, require -p, open
 * the target (and its repository when open_repo), take a lock. Returns 0
 * with *run open, or the exit code the command returns (already
 * reported). */
enum { CLI_LOCK_NONE = -1, CLI_LOCK_SHARED = 0, CLI_LOCK_EXCLUSIVE = 1 };
struct cf_run;
int cli_open(int argc, char **argv, const cli_spec *spec, int open_repo, int lock, args *a,
             struct cf_run **run);
/* The same after the command parsed (and checked) its options itself. */
int cli_open_parsed(const char *cmd, int open_repo, int lock, args *a, struct cf_run **run);

/* Commands living outside main.c (same signature as main). */
int cmd_check(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_extend_locks(int argc, char **argv);
int cmd_key(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_dump_component(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_find(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_stats(int argc, char **argv);

#endif
