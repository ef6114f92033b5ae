/* core/engine/run.c: shell commands (status, cwd, environment, output,
 * timeouts, signals), time and set id formats, set selection, opening a
 * policy's target, database driver instances, signal handling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <regex.h>
#include <signal.h>
#include <time.h>

#include "engine/manifest.h"
#include "engine/run.h"
#include "engine/immutable.h"
#include "engine_test.h"
#include "plugin/registry.h"

typedef struct fx {
    et_dir d;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (et_dir_new(&f->d) != 0)
        return -1;
    cf_registry_load(NULL, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    cf_registry_unload();
    et_dir_free(&f->d);
    free(f);
    return 0;
}

/* ---- commands ------------------------------------------------------------ */

typedef struct cmd_call {
    const char *cmd, *cwd;
    int timeout;
    char *const *env;
    int rc;
    char err[1024];
} cmd_call;

static void do_cmd(void *p)
{
    cmd_call *c = p;
    c->rc = cf_run_command("test command", c->cmd, c->cwd, c->timeout, c->env);
    snprintf(c->err, sizeof c->err, "%s", c->rc < 0 ? cf_error() : "");
}

static void test_command_status_cwd_env(void **state)
{
    fx *f = *state;
    assert_int_equal(cf_run_command("t", "true", NULL, 0, NULL), 0);
    assert_int_equal(cf_run_command("t", "exit 3", NULL, 0, NULL), 3);
    assert_int_equal(cf_run_command("t", "false", f->d.path, 10, NULL), 1);

    /* Runs in cwd, with the extra environment. */
    char *env[] = {"COFFER_T1=one", "COFFER_T2=two words", NULL};
    assert_int_equal(cf_run_command("t", "pwd > out && echo \"$COFFER_T1/$COFFER_T2\" >> out", f->d.path,
                                    10, env),
                     0);
    char p[400];
    snprintf(p, sizeof p, "%s/out", f->d.path);
    char *s = et_read(p, NULL);
    char want[600];
    snprintf(want, sizeof want, "%s\none/two words\n", f->d.path);
    assert_string_equal(s, want);
    free(s);
    assert_null(getenv("COFFER_T1")); /* the parent's environment is untouched */

    /* stdout goes to stderr (stdout may carry --json). */
    cmd_call c = {.cmd = "echo to-stdout; echo to-stderr >&2"};
    char *out = et_capture_stderr(f->d.path, do_cmd, &c);
    assert_int_equal(c.rc, 0);
    assert_string_equal(out, "to-stdout\nto-stderr\n");
    free(out);

    /* A directory that does not exist: 126, with a message. */
    c = (cmd_call){.cmd = "true", .cwd = "/nonexistent/coffer"};
    out = et_capture_stderr(f->d.path, do_cmd, &c);
    assert_int_equal(c.rc, 126);
    assert_has(out, "test command: cannot enter /nonexistent/coffer");
    free(out);
    /* A command that does not exist: the shell's 127. */
    c = (cmd_call){.cmd = "coffer-no-such-command-xyz"};
    out = et_capture_stderr(f->d.path, do_cmd, &c);
    assert_int_equal(c.rc, 127);
    free(out);
}

static void test_command_signal_and_timeout(void **state)
{
    fx *f = *state;
    assert_int_equal(cf_run_command("stop command", "kill -TERM $$", NULL, 0, NULL), -1);
    assert_string_equal(cf_error(), "stop command: `kill -TERM $$` killed by signal 15");

    /* Timeout: the whole process group goes, even a child that ignores TERM. */
    char pidfile[400], cmd[800];
    snprintf(pidfile, sizeof pidfile, "%s/child.pid", f->d.path);
    snprintf(cmd, sizeof cmd, "(trap '' TERM; echo $$ > /dev/null; sleep 30) & echo $! > '%s'; wait",
             pidfile);
    double t0 = cf_now();
    int rc = cf_run_command("start command", cmd, NULL, 1, NULL);
    double el = cf_now() - t0;
    assert_int_equal(rc, -1);
    assert_error_has("start command: `");
    assert_error_has("` timed out after 1 s and was killed");
    assert_true(el >= 1.0 && el < 6.0);
    char *s = et_read(pidfile, NULL);
    assert_non_null(s);
    pid_t child = (pid_t)atoi(s);
    free(s);
    assert_true(child > 0);
    /* gone (or a zombie waiting for init to reap it) */
    char stat_path[64];
    snprintf(stat_path, sizeof stat_path, "/proc/%d/stat", (int)child);
    for (int i = 0; i < 50 && kill(child, 0) == 0; i++) {
        char *st = et_read(stat_path, NULL);
        char *rp = st ? strrchr(st, ')') : NULL;
        int zombie = rp && rp[1] == ' ' && rp[2] == 'Z';
        free(st);
        if (zombie)
            break;
        usleep(20000);
        if (i == 49)
            fail_msg("process %d of the timed-out command still runs", (int)child);
    }
}

/* ---- formats -------------------------------------------------------------- */

static void test_time_and_set_ids(void **state)
{
    (void)state;
    char b[64];
    cf_iso_time(0, b, sizeof b);
    assert_string_equal(b, "1970-01-01T00:00:00Z");
    cf_iso_time(1764213000, b, sizeof b);
    assert_string_equal(b, "2025-11-27T03:10:00Z");

    regex_t re;
    assert_int_equal(regcomp(&re, "^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$", REG_EXTENDED | REG_NOSUB), 0);
    char a[64], c[64];
    cf_new_set_id(a, sizeof a);
    cf_new_set_id(c, sizeof c);
    assert_int_equal(regexec(&re, a, 0, NULL, 0), 0);
    assert_int_equal(regexec(&re, c, 0, NULL, 0), 0);
    assert_string_not_equal(a, c); /* random part */
    regfree(&re);
    /* The time part is now (UTC). */
    char now[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(now, sizeof now, "%Y%m%dT%H", &tm);
    assert_memory_equal(a, now, strlen(now));
}

/* ---- runs over a policy ---------------------------------------------------- */

static char *write_policy(fx *f, const char *extra)
{
    char root[400], repo[400];
    snprintf(root, sizeof root, "%s/app", f->d.path);
    snprintf(repo, sizeof repo, "%s/repo", f->d.path);
    mkdir(root, 0755);
    char *yaml = cf_asprintf("name: p\nroot: %s\n"
                             "targets:\n  - name: main\n    location: %s\n    fsync: false\n"
                             "components:\n  - name: db\n    type: database\n    driver: sqlite\n"
                             "    path: app.db\n%s",
                             root, repo, extra ? extra : "");
    char *file = cf_asprintf("%s/policy.yaml", f->d.path);
    assert_int_equal(et_write_str(file, yaml), 0);
    free(yaml);
    return file;
}

static void test_run_open(void **state)
{
    fx *f = *state;
    char *file = write_policy(f, NULL);
    cf_run *run = NULL;
    /* No repository yet: no directory, then an empty one. */
    assert_int_equal(cf_run_open(file, NULL, 1, &run), -1);
    assert_error_has("target 'main' (");
    assert_error_has("/repo");
    assert_error_has("does not exist");
    char repo[400];
    snprintf(repo, sizeof repo, "%s/repo", f->d.path);
    assert_int_equal(mkdir(repo, 0700), 0);
    assert_int_equal(cf_run_open(file, NULL, 1, &run), -1);
    assert_error_has("target 'main' (");
    assert_error_has("no repository there; create it with `coffer init -p ");
    assert_error_has(file);
    /* Unknown target name: a usage error (-2). */
    assert_int_equal(cf_run_open(file, "elsewhere", 0, &run), -2);
    assert_error_has("no target named 'elsewhere'");
    /* Without the repository: the store only. */
    assert_int_equal(cf_run_open(file, "main", 0, &run), 0);
    assert_non_null(run->store);
    assert_null(run->repo);
    assert_string_equal(run->target->name, "main");
    assert_string_equal(run->policy->name, "p");
    /* Driver defaults were filled in by the check. */
    assert_non_null(cf_config_get(run->policy->components[0].options, "busy_timeout"));
    assert_int_equal(cf_store_prepare(run->store, 1), 0);
    assert_int_equal(cf_repo_init(run->store, NULL), 0);
    cf_run_close(run);
    assert_int_equal(cf_run_open(file, NULL, 1, &run), 0);
    assert_non_null(run->repo);
    cf_run_close(run);
    cf_run_close(NULL);

    /* A policy whose driver is unknown fails at load, naming the file. */
    char *bad = cf_asprintf("%s/bad.yaml", f->d.path);
    assert_int_equal(et_write_str(bad, "name: p\nroot: /srv\ntargets:\n  - name: t\n    location: /x\n"
                                       "components:\n  - name: db\n    type: database\n    driver: oracle\n"),
                     0);
    assert_int_equal(cf_run_open(bad, NULL, 0, &run), -2); /* policy error */
    assert_error_has("bad.yaml");
    assert_error_has("oracle");
    free(bad);
    free(file);
}

static void commit(cf_repo *r, const char *id, const char *policy)
{
    cf_mwriter *w;
    assert_int_equal(cf_manifest_begin(&w), 0);
    json_t *h = json_pack("{s:s,s:s}", "id", id, "policy", policy);
    assert_int_equal(cf_manifest_commit(w, r, id, h), 0);
    json_decref(h);
    cf_manifest_free(w);
}

static void test_resolve_set(void **state)
{
    fx *f = *state;
    char *file = write_policy(f, NULL);
    cf_run *run;
    assert_int_equal(cf_run_open(file, NULL, 0, &run), 0);
    mem_storage *ms;
    cf_store *st = mem_store_new("target 'mem'", &ms);
    assert_int_equal(cf_repo_init(st, NULL), 0);
    assert_int_equal(cf_repo_open(st, &run->repo), 0);

    char *id = NULL;
    assert_int_equal(cf_resolve_set(run, "latest", &id), -1);
    assert_string_equal(cf_error(), "target 'main': no set of policy 'p' yet");

    commit(run->repo, "20260101T000000Z-11111111", "p");
    commit(run->repo, "20260102T000000Z-22222222", "p");
    commit(run->repo, "20260103T000000Z-33333333", "other"); /* newest, another policy */
    assert_int_equal(cf_resolve_set(run, "latest", &id), 0);
    assert_string_equal(id, "20260102T000000Z-22222222");
    free(id);
    assert_int_equal(cf_resolve_set(run, NULL, &id), 0);
    assert_string_equal(id, "20260102T000000Z-22222222");
    free(id);
    /* Ids and unique prefixes, of any policy. */
    assert_int_equal(cf_resolve_set(run, "20260103T000000Z-33333333", &id), 0);
    assert_string_equal(id, "20260103T000000Z-33333333");
    free(id);
    assert_int_equal(cf_resolve_set(run, "20260101", &id), 0);
    assert_string_equal(id, "20260101T000000Z-11111111");
    free(id);
    id = NULL;
    assert_int_equal(cf_resolve_set(run, "202601", &id), -1);
    assert_null(id);
    assert_string_equal(cf_error(), "target 'main': set id 202601 is ambiguous (3 sets match)");
    assert_int_equal(cf_resolve_set(run, "2027", &id), -1);
    assert_string_equal(cf_error(), "target 'main': no set 2027 (see `coffer sets`)");

    /* An unreadable newest set is skipped (with a warning) for "latest". */
    commit(run->repo, "20260104T000000Z-44444444", "p");
    assert_int_equal(mem_storage_truncate(ms, "sets/20260104T000000Z-44444444", 20), 0);
    assert_int_equal(cf_resolve_set(run, "latest", &id), 0);
    assert_string_equal(id, "20260102T000000Z-22222222");
    free(id);

    cf_repo_close(run->repo);
    run->repo = NULL;
    cf_run_close(run);
    cf_store_free(st);
    free(file);
}

static void test_dbinst(void **state)
{
    fx *f = *state;
    char *file = write_policy(f, NULL);
    cf_policy *p;
    assert_int_equal(cf_run_load_policy(file, &p), 0);
    cf_dbinst db;
    assert_int_equal(cf_dbinst_open(&p->components[0], p->root, &db), 0);
    assert_non_null(db.ops);
    assert_non_null(db.inst);
    assert_ptr_equal(db.comp, &p->components[0]);
    assert_string_equal(db.hctx->label, "component 'db' (sqlite)");
    cf_dbinst_close(&db);
    assert_null(db.inst);

    cf_component c = p->components[0];
    c.driver = "oracle";
    assert_int_equal(cf_dbinst_open(&c, p->root, &db), -1);
    assert_error_has("no database driver named 'oracle'; available: sqlite");
    cf_policy_free(p);
    free(file);
}

static void test_signals(void **state)
{
    (void)state;
    struct sigaction old_int, old_term, old_hup;
    sigaction(SIGINT, NULL, &old_int);
    sigaction(SIGTERM, NULL, &old_term);
    sigaction(SIGHUP, NULL, &old_hup);
    cf_signals_install();
    cf_cancel_flag = 0;
    raise(SIGTERM);
    assert_int_equal(cf_cancel_flag, 1);
    cf_cancel_flag = 0;
    raise(SIGINT);
    assert_int_equal(cf_cancel_flag, 1);
    cf_cancel_flag = 0;
    raise(SIGHUP);
    assert_int_equal(cf_cancel_flag, 1);
    cf_cancel_flag = 0;
    raise(SIGPIPE); /* ignored */
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    signal(SIGPIPE, SIG_DFL);
}

/* Immutable targets: a storage without object lock is refused; the lock
 * period follows the retention horizon; new objects get the epoch's date;
 * an extension moves every live object (the config last); the audit finds
 * an object written without a lock. */
static void test_immutable(void **state)
{
    fx *f = *state;
    char root[400], repo[400];
    snprintf(root, sizeof root, "%s/app", f->d.path);
    snprintf(repo, sizeof repo, "%s/repo", f->d.path);
    mkdir(root, 0755);
    char *yaml = cf_asprintf("name: p\nroot: %s\n"
                             "targets:\n  - name: main\n    location: %s\n    fsync: false\n"
                             "    immutable:\n      mode: governance\n      days: 1\n"
                             "components:\n  - name: f\n    type: files\n    paths: [x]\n"
                             "retention:\n  keep_daily: 3\n",
                             root, repo);
    char *file = cf_asprintf("%s/immutable.yaml", f->d.path);
    assert_int_equal(et_write_str(file, yaml), 0);
    free(yaml);
    cf_run *run;
    assert_int_equal(cf_run_open(file, NULL, 0, &run), 0);
    assert_int_equal(cf_store_prepare(run->store, 1), 0);
    assert_int_equal(cf_immutable_open(run), -1);
    assert_error_has("immutable: this storage has no object lock");

    cf_store_free(run->store);
    mem_storage *ms;
    run->store = mem_store_new("target 'main'", &ms);
    const int64_t now = 1900000000, day = 86400;
    mem_storage_set_retention(ms, 1, now);
    assert_int_equal(cf_store_prepare(run->store, 1), 0);
    assert_int_equal(cf_immutable_open(run), 0);
    assert_int_equal(run->lock_period, 3 * day); /* keep_daily: 3 outlasts days: 1 */
    assert_int_equal(run->store->retain_until, now + 3 * day + 3 * day / 4);
    assert_int_equal(run->roll_due, 0); /* nothing written yet */
    assert_int_equal(cf_repo_init(run->store, NULL), 0);
    assert_int_equal(mem_storage_retain_until(ms, "config"), now + 3 * day + 3 * day / 4);
    assert_int_equal(cf_repo_open(run->store, &run->repo), 0);
    cf_id id;
    cf_repo_hash(run->repo, "chunk", 5, &id);
    assert_int_equal(cf_repo_put_chunk(run->repo, &id, "chunk", 5, NULL), 0);
    assert_int_equal(cf_repo_flush(run->repo), 0);
    cf_mwriter *w;
    assert_int_equal(cf_manifest_begin(&w), 0);
    char when[32]; /* the host's clock, as a backup records it */
    cf_iso_time(time(NULL), when, sizeof when);
    json_t *h = json_pack("{s:s,s:s,s:s}", "id", "20300101T000000Z-11111111", "policy", "p",
                          "time", when);
    assert_int_equal(cf_manifest_commit(w, run->repo, "20300101T000000Z-11111111", h), 0);
    json_decref(h);
    cf_manifest_free(w);
    char *pk = mem_storage_key(ms, "data/", 0);
    assert_int_equal(mem_storage_retain_until(ms, pk), now + 3 * day + 3 * day / 4);
    assert_int_equal(mem_storage_retain_until(ms, "locks/none"), -1);

    /* A day later the epoch ends within a lock period: extend everything. */
    mem_storage_set_retention(ms, 1, now + day);
    assert_int_equal(cf_immutable_open(run), 0);
    assert_int_equal(run->roll_due, 1);
    int64_t e2 = now + day + 3 * day + 3 * day / 4;
    assert_int_equal(run->store->retain_until, e2);
    uint64_t before = mem_storage_retention_sets(ms);
    assert_int_equal(cf_immutable_roll(run), 0);
    assert_int_equal(run->roll_due, 0);
    assert_int_equal(mem_storage_retain_until(ms, pk), e2);
    assert_int_equal(mem_storage_retain_until(ms, "config"), e2);
    assert_int_equal(mem_storage_retain_until(ms, "sets/20300101T000000Z-11111111"), e2);
    assert_int_equal(mem_storage_retention_sets(ms) - before, run->retention_requests);
    free(pk);

    /* The audit: all fine, then an object nobody locked. */
    json_t *probs = json_array();
    int np = cf_immutable_audit(run, probs, file);
    if (np != 0)
        print_error("%s\n", json_dumps(probs, 0));
    assert_int_equal(np, 0);
    run->store->lock_mode = COFFER_LOCK_NONE;
    assert_int_equal(cf_store_put(run->store, "sets/20300102T000000Z-22222222", "x", 1, 0), 0);
    assert_int_equal(cf_immutable_audit(run, probs, file), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(probs, 0), "key")),
                        "sets/20300102T000000Z-22222222");
    assert_non_null(strstr(json_string_value(json_object_get(json_array_get(probs, 0), "fix")),
                           "coffer extend-locks -p "));
    json_decref(probs);
    cf_repo_close(run->repo);
    run->repo = NULL;
    cf_run_close(run);
    free(file);
}

int main(void)
{
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_command_status_cwd_env),
        T(test_command_signal_and_timeout),
        T(test_time_and_set_ids),
        T(test_run_open),
        T(test_resolve_set),
        T(test_immutable),
        T(test_dbinst),
        T(test_signals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
