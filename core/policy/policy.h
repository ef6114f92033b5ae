/*
 * Policies: one YAML file describes a backup boundary. Loading parses the
 * YAML (libyaml), expands ${VAR} / ${VAR:-default} / $$ in every scalar,
 * and checks the core schema. Driver options are checked in a second step
 * against each driver's declared option table (cf_policy_check_drivers).
 *
 * Every error reads "FILE:LINE:COL: KEY.PATH: message", for example
 *   policy.yaml:12:5: components[1].pathz: unknown key; valid keys: name, type, paths, exclude, required
 *
 * Schema (version 1):
 *   version: 1                         optional
 *   name: NAME                         required, [A-Za-z0-9._-]+
 *   description: TEXT                  optional
 *   root: /ABS/PATH                    required, absolute after expansion
 *   consistency:                       optional (default mode: online)
 *     mode: maintenance | online
 *     stop: CMD                        required when mode is maintenance
 *     start: CMD                       required when mode is maintenance
 *     timeout: SECONDS                 optional, default 600, for stop/start
 *     two_pass: true | false           online only; default true: files are walked before
 *                                      and after the database snapshots
 *     references: verify | skip        check the `references` checks against the captured
 *                                      set before publishing it (default: verify online,
 *                                      skip in maintenance mode)
 *     on_inconsistent: mark | fail     a set whose database references paths it lacks:
 *                                      published marked (exit 3) or refused (default mark)
 *   targets:                           required, one or more
 *     - name: NAME                     required, unique
 *       location: PATH | s3://BUCKET/PREFIX   required
 *       driver: local | s3 | ...       optional (from location: path -> local, s3:// -> s3)
 *       passphrase_env: VAR            optional: encrypted repository passphrase from $VAR
 *                                      (default COFFER_PASSPHRASE)
 *       passphrase_file: PATH          optional: ... from a file (one trailing newline dropped)
 *       passphrase_command: CMD        optional: ... from a command's stdout
 *                                      (at most one of the three; never the passphrase itself)
 *       immutable:                     optional: every object coffer writes is locked
 *         mode: governance | compliance          (S3 object lock retention)
 *         days: N | minutes: N         one of the two, N >= 1: the shortest lock; coffer
 *                                      locks for the policy's retention horizon when longer
 *       maintenance:                   optional: driver options used instead of the
 *         <driver options>             target's by forget, prune and key removal (the
 *                                      credentials that may delete)
 *       <driver options>               checked against the driver's table
 *   components:                        required, one or more, names unique
 *     - name: NAME
 *       type: files
 *       paths: [REL, ...]              required, relative to root, no ".."
 *       exclude: [GLOB, ...]           optional, relative to root (fnmatch, ** allowed)
 *       required: [REL, ...]           optional: each must exist at backup
 *       snapshot: none | btrfs | lvm   optional: capture from a read-only file system
 *                                      snapshot taken right before the database snapshots
 *       snapshot_size: SIZE            lvm only: size of a classic (non-thin) snapshot
 *     - name: NAME
 *       type: database
 *       driver: sqlite | postgres | mysql | ...
 *       <driver options>
 *     - name: NAME
 *       type: object_store
 *       driver: s3
 *       protect: versioning | copy     default versioning
 *       <driver options>
 *   validate:                          optional list, run after restore
 *     - name: NAME
 *       run: CMD
 *       timeout: SECONDS               optional, default 3600
 *       credentials: [COMPONENT]       optional: database components whose password the
 *                                      command gets as a 0600 file
 *   checks:                            optional list, run after restore (application checks)
 *     - name: NAME                     required, unique among checks
 *       type: row_counts | references | orphans | sql
 *       database: COMPONENT            a database component; required but for row_counts
 *                                      (default there: every database component)
 *       query: SQL                     required for references, orphans, sql; refused for
 *                                      row_counts
 *       component: COMPONENT           references, orphans only (and required there): a
 *                                      files or object_store component
 *       prefix: REL                    references, orphans: prepended to each path (default "")
 *       under: [REL, ...]              orphans only (default: the component's paths)
 *       exclude: [GLOB, ...]           orphans only
 *       level: fail | warn             default fail (orphans: warn)
 *       show: N                        0..1000, default 10
 *       timeout: SECONDS               default 3600
 *   rehearse:                          optional
 *     dir: /ABS/PATH                   where scratch directories are made
 *     scratch:                         database component -> server URL
 *       COMPONENT: URL
 *   retention:                         optional
 *     keep_last/keep_hourly/keep_daily/keep_weekly/keep_monthly/keep_yearly: INT
 *     keep_within: DURATION (e.g. 30d, 12h, 1y2m)
 *     keep_proven: INT                 the newest sets a rehearsal proved
 *
 * Index paths count from 0: components[1] is the second component.
 * Durations: one or more NUMBER UNIT pairs, each unit at most once, no
 * spaces; units y (years), m (months), w (weeks), d (days), h (hours).
 * "m" is months: there is no minutes unit. Examples: 30d, 12h, 2w, 1y6m.
 *
 * ${VAR} fails when VAR is unset (an empty VAR gives an empty string);
 * ${VAR:-default} uses default when VAR is unset or empty (default may be
 * empty, contain spaces, or hold further ${...}); $$ is a literal $; any
 * other $ is kept as is. Keys are never expanded.
 */
#ifndef CF_POLICY_H
#define CF_POLICY_H

#include <stddef.h>

#include "coffer/coffer.h"
#include "plugin/config.h"

typedef enum { CF_MODE_ONLINE = 0, CF_MODE_MAINTENANCE = 1 } cf_mode;
typedef enum { CF_COMP_FILES = 0, CF_COMP_DATABASE = 1, CF_COMP_OBJECT_STORE = 2 } cf_comp_type;
typedef enum { CF_PROTECT_VERSIONING = 0, CF_PROTECT_COPY = 1 } cf_protect;

typedef struct cf_strlist {
    char **v;
    size_t n;
} cf_strlist;

typedef struct cf_component {
    char *name;
    cf_comp_type type;
    int line, col;         /* of the list item */
    /* files */
    cf_strlist paths, exclude, required;
    int unreadable_fail; /* on_unreadable: fail (1) or skip (0, the default) */
    char *snapshot;      /* snapshot: "btrfs", "lvm", or NULL (none) */
    char *snapshot_size; /* snapshot_size (lvm, classic snapshot), or NULL (thin) */
    /* database / object_store */
    char *driver;
    cf_protect protect;
    coffer_config *options; /* driver options (never NULL for database/object_store) */
    int driver_line, driver_col; /* of the driver value (0 for files) */
} cf_component;

typedef struct cf_target {
    char *name;
    char *location;
    char *driver;           /* resolved: "local", "s3", ... */
    int line, col;
    coffer_config *options; /* driver options; for local, "path" = location;
                               for s3://B/P, "bucket" = B and "prefix" = P unless given */
    int driver_line, driver_col; /* of the driver value, or of location when inferred */
    char *passphrase_env, *passphrase_file, *passphrase_command; /* NULL unset */
    /* immutable: objects written under S3 object lock retention */
    int immutable;          /* 1 when the key is given */
    int lock_mode;          /* COFFER_LOCK_GOVERNANCE or COFFER_LOCK_COMPLIANCE */
    int64_t lock_seconds;   /* days or minutes, in seconds */
    int imm_line, imm_col;  /* of the immutable mapping */
    /* maintenance: driver options that replace the target's for the
     * commands that remove (forget, prune, key remove); NULL when absent */
    coffer_config *maintenance;
    int maint_line, maint_col;
} cf_target;

typedef struct cf_command {
    char *name;
    char *run;
    int timeout; /* seconds */
    cf_strlist credentials; /* validate: database components whose password file it gets */
} cf_command;

typedef enum { CF_CHECK_ROW_COUNTS, CF_CHECK_REFERENCES, CF_CHECK_ORPHANS, CF_CHECK_SQL } cf_check_type;

/* One application check (checks:), run after a restore or rehearsal.
 * The tag is struct cf_check; the typedef is cf_app_check, because
 * cf_check is already the repository check function (engine/check.h). */
typedef struct cf_check {
    char *name;
    cf_check_type type;
    char *database;  /* component name or NULL (row_counts: all) */
    char *query;     /* NULL for row_counts */
    char *component; /* references/orphans */
    char *prefix;    /* "" default */
    cf_strlist under, exclude;
    int warn;    /* level: warn */
    int show;    /* default 10 */
    int timeout; /* seconds, default 3600 */
    int line, col; /* of the list item */
    int query_line, query_col;
} cf_app_check;

typedef struct cf_retention {
    int keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly; /* -1 unset */
    char *keep_within; /* NULL unset */
    int keep_proven;   /* the N newest sets a rehearsal proved; -1 unset */
} cf_retention;

/* Commands run around a backup (hooks:), each with a timeout; none gets a
 * secret in its environment. */
typedef struct cf_hooks {
    char *before;     /* a failure aborts the backup before anything runs */
    char *after;      /* always, after the backup */
    char *on_success; /* after a backup that produced a set */
    char *on_failure; /* after a backup that failed */
    int timeout;      /* seconds, each (default 300) */
} cf_hooks;

/* Being told (monitor:): pings to a healthchecks-style service and a
 * Prometheus node-exporter textfile. Never fails the command it watches. */
typedef struct cf_monitor {
    char *ping_start, *ping_success, *ping_failure; /* URLs, or NULL */
    int ping_timeout;                               /* seconds (default 10) */
    char *metrics_file;                             /* absolute path, or NULL */
} cf_monitor;

typedef struct cf_policy {
    char *file;           /* path as given */
    char *name;
    char *description;
    char *root;           /* absolute, no trailing slash (except "/") */
    cf_mode mode;
    char *stop_cmd, *start_cmd;
    int command_timeout;  /* seconds */
    int two_pass;          /* online: files walked before and after the database snapshots
                              (-1 unset: on where a component has no snapshot) */
    int verify_refs;       /* references: verify (1) | skip (0); -1 unset: online only */
    int inconsistent_fail; /* on_inconsistent: fail (1) | mark (0, the default) */
    cf_target *targets;
    size_t ntargets;
    cf_component *components;
    size_t ncomponents;
    cf_command *validate;
    size_t nvalidate;
    cf_app_check *checks;
    size_t nchecks;
    char *rehearse_dir; /* absolute, or NULL (default: $TMPDIR if absolute, else /var/tmp) */
    char **scratch_names, **scratch_urls; /* rehearse.scratch: component -> server URL */
    size_t nscratch;
    cf_retention retention;
    cf_hooks hooks;
    cf_monitor monitor;
} cf_policy;

/* 1 if s may name a policy, component, target, check or driver: letters,
 * digits, '.', '_' and '-', at most 128 bytes, not "." or "..". Sets are
 * checked against the same rule (engine/setcheck.h). */
int cf_name_valid(const char *s);

/* Parse, expand and check the core schema. 0 ok; -1 with cf_error() set. */
int cf_policy_load(const char *file, cf_policy **out);
/* Same from a string (file is used only in messages). */
int cf_policy_load_string(const char *file, const char *yaml, size_t len, cf_policy **out);
void cf_policy_free(cf_policy *p);

/* Looks up the option table of a driver; returns NULL (with cf_error set,
 * e.g. "no database driver named 'foo'; available: sqlite, postgres") if
 * there is none. */
typedef const coffer_option *(*cf_option_lookup)(void *ud, coffer_driver_kind kind, const char *driver);

/* Check every target's and component's driver options against the
 * driver's table: unknown keys (listing valid ones), missing required
 * options, type errors (int/bool/size), secret options given as plain text
 * (refused: "use NAME_env or NAME_file"). Fills declared defaults into the
 * config. Errors name file, line, column and key path. */
int cf_policy_check_drivers(cf_policy *p, cf_option_lookup lookup, void *ud);

/* Expand ${VAR}, ${VAR:-default} and $$ in s. Returns malloc'd string, or
 * NULL with cf_error set ("environment variable X is not set"). */
char *cf_expand_env(const char *s);

/* keep_within, parsed. */
typedef struct cf_duration {
    int years, months, weeks, days, hours;
} cf_duration;
/* 0 ok; -1 with cf_error set ("invalid duration '3x': ..."). */
int cf_duration_parse(const char *s, cf_duration *out);

const cf_component *cf_policy_component(const cf_policy *p, const char *name);
const cf_target *cf_policy_target(const cf_policy *p, const char *name);
/* rehearse.scratch's URL for a database component, or NULL. */
const char *cf_policy_scratch(const cf_policy *p, const char *component);
/* "row_counts", "references", "orphans", "sql". */
const char *cf_check_type_name(cf_check_type t);

#endif
