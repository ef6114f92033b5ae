/*
 * A run: one command against one policy and one target. Loads the policy,
 * checks it against the drivers, opens the target's storage and (when
 * asked) the repository; runs the policy's shell commands; handles
 * SIGINT/SIGTERM by setting the cancellation flag every loop polls.
 */
#ifndef CF_RUN_H
#define CF_RUN_H

#include <jansson.h>

#include "policy/policy.h"
#include "repo/lock.h"
#include "repo/repo.h"

typedef struct cf_run {
    cf_policy *policy;
    const cf_target *target;
    cf_store *store;
    cf_repo *repo;
    cf_lock *lock;    /* held repository lock, released by cf_run_close */
    int json;         /* machine-readable output on stdout */
    int no_progress;
    int list_sets_ahead; /* cf_run_lock lists sets/ as soon as the lock is written: the
                            command's next cf_sets_list takes that listing */
    int maintenance;  /* opened with CF_RUN_MAINT: the target's maintenance options */
    /* cf_run_open_locking, cf_run_lock_begin: the command's lock,
     * written on a thread of its own; cf_run_lock takes it over */
    struct cf_early_lock *early;
    /* CF_RUN_WARM: metadata read-ahead begun before the open; the backup
     * takes it over, cf_run_close stops it otherwise */
    struct cf_prefetch *warm;
    /* An immutable target (core/engine/immutable.c): */
    int64_t lock_period; /* seconds every set's objects stay locked (days, or the horizon) */
    int64_t clock_skew;  /* the storage's clock minus the host's, seconds */
    int64_t lock_epoch;  /* the retention of `config`: every live object is locked until then */
    int roll_due;        /* lock_epoch ends too soon: extend every live object */
    uint64_t retention_requests; /* extensions sent by this run */
} cf_run;

/* Exit codes of the coffer binary. */
enum { CF_EXIT_OK = 0, CF_EXIT_FAILED = 1, CF_EXIT_USAGE = 2, CF_EXIT_PROBLEMS = 3 };

/* Load and check the policy (no storage opened). */
int cf_run_load_policy(const char *file, cf_policy **out);
/* open_repo: 0 no repository, CF_RUN_REPO the repository with its index,
 * CF_RUN_MANIFESTS without the index (objects only: set manifests). */
#define CF_RUN_REPO 1
#define CF_RUN_MANIFESTS 2
/* or'ed into open_repo: a command that removes (forget, prune, key
 * remove): the target's maintenance options replace its own */
#define CF_RUN_MAINT 0x10
/* or'ed into open_repo: every object is read from the store, never from
 * the local cache (check and verify judge the repository itself) */
#define CF_RUN_NO_CACHE 0x20
/* or'ed into open_repo of cf_run_open: the metadata read-ahead of the
 * policy's files starts before the repository is opened, so the inode
 * cache warms while a distant bucket answers (backup) */
#define CF_RUN_WARM 0x40
/* or'ed into open_repo: sets/ is listed while the repository is opened
 * (the key unlocked, the index read), for a command whose first look at
 * the sets comes before any lock (restore, sets): one round
 * trip fewer on a distant bucket */
#define CF_RUN_SETS 0x80
/* Open target (by name, or the first) and, if open_repo, the repository.
 * Returns 0, -2 for a policy error (bad file, unknown target), -1 else. */
int cf_run_open(const char *policy_file, const char *target, int open_repo, cf_run **out);
/* cf_run_open for a command that locks the repository next: its lock
 * (exclusive or shared, named command) is written as soon as the
 * repository's config is read, while the key is unlocked and the index
 * loaded, and the sets are listed once it is written (list_sets_ahead).
 * The command's cf_run_lock then waits for that lock, with its outcome;
 * a failed open removes it. Over a distant bucket the lock costs no
 * round trip of its own. */
int cf_run_open_locking(const char *policy_file, const char *target, int open_repo, int exclusive,
                        const char *command, cf_run **out);
/* The same for a run whose repository cf_run_open_repo opens next. */
void cf_run_lock_early(cf_run *run, int exclusive, const char *command);
int cf_run_open_target(cf_run *run, const cf_target *t, int open_repo);
/* Open the repository of the run's target (its store made, not yet
 * prepared) with cf_repo_open_with flags; a missing repository is named
 * as such. 0 or -1. */
int cf_run_open_repo(cf_run *run, unsigned flags);
/* A run for a policy built in memory (owned by the run from then on, also
 * on failure), on its first target. 0 or -1. */
int cf_run_open_policy(cf_policy *p, int open_repo, cf_run **out);
/* A run on a repository named by its location alone (coffer --repo): a
 * directory or s3://BUCKET/PREFIX, as a target's location. The run's
 * policy holds that one target and nothing to back up. Errors name the
 * location; 0 or -1. */
int cf_run_open_location(const char *location, int open_repo, cf_run **out);
/* Passphrase source of a target (its passphrase_* keys). out->what points
 * to thread-local storage valid until the next call. */
void cf_run_passphrase(const cf_target *t, cf_passphrase_src *out);
void cf_run_close(cf_run *run);
/* Take a shared (backup, restore, verify) or exclusive lock on the repository. */
int cf_run_lock(cf_run *run, int exclusive, const char *command);
/* The lock of cf_run_lock_early, for a repository already open: it is
 * written (and the other locks and sets/ listed) on a thread of its own
 * while the command goes on reading (restore: its first packs). The
 * command's cf_run_lock waits for it and returns its outcome, before the
 * command does anything beyond reading and writing its own staging
 * files; cf_run_close removes it when the command stops before. */
void cf_run_lock_begin(cf_run *run, int exclusive, const char *command);
/* Release the run's lock (when it holds one) while fn(ud) runs: for what
 * needs no lock once a command's work is done. */
void cf_run_unlock_during(cf_run *run, void (*fn)(void *ud), void *ud);

/* The environment of child processes (policy commands, database tools).
 * One rule: a child gets coffer's environment without its secrets. Left
 * out are
 *  - the variables the policy names as secret sources: every target's
 *    passphrase_env (and COFFER_PASSPHRASE, its default), every driver
 *    option ending in "_env" and every "..._env=NAME" URL parameter;
 *  - names that say they hold a secret (case-insensitive): ending in
 *    PASSWORD, PASSPHRASE, _TOKEN or _PWD, or containing _SECRET;
 *  - values that carry a password: a URL with user:password@, or a
 *    password=... parameter.
 * The policy's secret sources are registered by cf_run_load_policy. */
void cf_child_env_secret(const char *name);
void cf_child_env_policy(const cf_policy *p);
/* Does the entry "NAME=VALUE" hold (or name) a secret under that rule? */
int cf_child_env_is_secret(const char *entry);
/* A child's environment: environ under the rule above, without the names
 * in `drop`, plus the "NAME=VALUE" entries of `add` (replacing inherited
 * ones of the same name; added entries are not filtered). Both lists end
 * with NULL and may be NULL. Returns a NULL-terminated array of copies, or
 * NULL when out of memory; release with cf_child_env_free (wipes it). */
char **cf_child_env(const char *const *drop, const char *const *add);
void cf_child_env_free(char **env);

/* Run `cmd` with /bin/sh -c in cwd, in its own process group (a ^C on the
 * terminal does not kill the start command), stdout sent to stderr, in
 * cf_child_env's environment plus the "NAME=VALUE" entries of env_extra.
 * Returns the exit status (0-255), or -1 with cf_error set (could not
 * run / timed out / killed). */
int cf_run_command(const char *what, const char *cmd, const char *cwd, int timeout_s,
                   char *const *env_extra);
/* The same, the command's stdout and stderr also kept: *output gets the
 * last `max` bytes of them (malloc'd, NUL-terminated), whatever the
 * outcome, timeouts included. They still reach coffer's stderr. */
int cf_run_command_output(const char *what, const char *cmd, const char *cwd, int timeout_s,
                          char *const *env_extra, char **output, size_t max);

/* Signal handling: SIGINT/SIGTERM set cf_cancel_flag. */
void cf_signals_install(void);

/* "2026-11-27T03:30:00Z" */
void cf_iso_time(time_t t, char *buf, size_t len);
/* A new set id: time + 8 random hex. */
void cf_new_set_id(char *buf, size_t len);

/* The sets of run's policy, oldest first; a set whose header cannot be
 * read is logged and left out. 0, or -1 with cf_error. */
int cf_policy_sets(cf_run *run, char ***ids, size_t *n);
/* The newest set of run's policy made on host (malloc'd), else, when
 * there is none among the next 64 sets, the newest of the policy; NULL
 * when the policy has none (or the sets cannot be listed). */
char *cf_newest_set(cf_run *run, const char *host);
/* Set selection: "latest" (of this policy) or an id (unique prefix ok). */
int cf_resolve_set(cf_run *run, const char *spec, char **id_out);

/* Instantiate the database driver of a component. */
typedef struct cf_dbinst {
    const coffer_database_ops *ops;
    void *inst;
    coffer_hctx *hctx;
    const cf_component *comp;
} cf_dbinst;
int cf_dbinst_open(const cf_component *c, const char *root, cf_dbinst *out);
void cf_dbinst_close(cf_dbinst *d);

#endif
