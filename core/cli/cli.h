/*
 * The coffer command line: shared option parsing and output helpers. One
 * file per group of commands; main.c holds the command table.
 */
#ifndef CF_CLI_H
#define CF_CLI_H

#include <jansson.h>

/* Options every command understands. */
#define COMMON_OPTS                                                                                \
    {"help", no_argument, 0, 'h'}, {"policy", required_argument, 0, 'p'},                          \
        {"target", required_argument, 0, 't'}, {"json", no_argument, 0, 'j'},                      \
        {"verbose", no_argument, 0, 'v'}, {"quiet", no_argument, 0, 'q'},                          \
        {"no-progress", no_argument, 0, 'P'}

typedef struct args {
    const char *policy, *target, *set, *to, *only, *describe, *from, *keep_within;
    int json, in_place, force, read_data, no_validate, dry_run, all, rollback_objects;
    int keep[6]; /* last, hourly, daily, weekly, monthly, yearly; -1 unset */
    char **maps;
    size_t nmaps;
    const char *encryption, *read_data_subset, *max_unused, *new_passphrase_file;
    int rebuild_index;
} args;

/* Parse a command's options into a; prints help and exits on --help.
 * Returns -1 on a usage error (already reported by getopt). */
int parse(int argc, char **argv, const char *help, args *a);
int need_policy(const char *cmd, const args *a);
/* "coffer: error: <cf_error()>", returns code. */
int die(int code);
int usage_error(const char *cmd, const char *msg);
void print_json(json_t *j);
extern int no_progress;

/* The common start of a policy command: parse options, require -p, open
 * the target (and its repository when open_repo), take a lock. Returns 0
 * with *run open, or the exit code the command returns (already
 * reported). */
enum { CLI_LOCK_NONE = -1, CLI_LOCK_SHARED = 0, CLI_LOCK_EXCLUSIVE = 1 };
struct cf_run;
int cli_open(int argc, char **argv, const char *help, const char *cmd, int open_repo, int lock,
             args *a, struct cf_run **run);
/* The same after the command parsed (and checked) its options itself. */
int cli_open_parsed(const char *cmd, int open_repo, int lock, args *a, struct cf_run **run);

/* Commands living outside main.c (same signature as main). */
int cmd_check(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_key(int argc, char **argv);

#endif
