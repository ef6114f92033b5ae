/* core/plugin/host.c: the services table drivers get (errors, logging,
 * secrets, temporary paths, progress, cancellation) and the run's private
 * temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <limits.h>
#include <pthread.h>

#include "plugin/config.h"
#include "plugin/host.h"
#include "plugin_test.h"
#include "util/util.h"

/* ---- free() interposition (linked with -Wl,--wrap=free) ---------------- *
 * Lets the test see a secret's bytes at the moment it is freed. */
void __real_free(void *p);
static const void *watch_ptr;
static size_t watch_len;
static int watch_seen, watch_wiped;

void __wrap_free(void *p)
{
    if (p && p == watch_ptr) {
        const unsigned char *b = p;
        int wiped = 1;
        for (size_t i = 0; i < watch_len; i++)
            if (b[i])
                wiped = 0;
        watch_seen = 1;
        watch_wiped = wiped;
        watch_ptr = NULL;
    }
    __real_free(p);
}

typedef struct fx {
    char dir[256];
    coffer_hctx *h;
    coffer_config *cfg;
    const coffer_host *host;
    char *old_tmpdir;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (pt_mkdtemp(f->dir, sizeof f->dir) != 0)
        return -1;
    const char *t = getenv("TMPDIR");
    f->old_tmpdir = t ? strdup(t) : NULL;
    setenv("TMPDIR", f->dir, 1);
    cf_tmpdir_cleanup(); /* forget any directory of an earlier test */
    f->h = cf_hctx_new("component 'db' (test)", "/srv/app");
    f->cfg = cf_config_new();
    f->host = cf_host_table();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    cf_tmpdir_cleanup();
    if (f->old_tmpdir)
        setenv("TMPDIR", f->old_tmpdir, 1);
    else
        unsetenv("TMPDIR");
    free(f->old_tmpdir);
    cf_hctx_free(f->h);
    cf_config_free(f->cfg);
    pt_rmrf(f->dir);
    free(f);
    return 0;
}

/* ---- the table --------------------------------------------------------- */

static void test_table_header(void **state)
{
    fx *f = *state;
    const coffer_host *h = f->host;
    assert_int_equal(h->struct_size, sizeof(coffer_host));
    assert_int_equal(h->abi_major, COFFER_ABI_MAJOR);
    assert_int_equal(h->abi_minor, COFFER_ABI_MINOR);
    assert_non_null(h->log);
    assert_non_null(h->error);
    assert_non_null(h->cancelled);
    assert_non_null(h->progress);
    assert_non_null(h->secret_get);
    assert_non_null(h->secret_free);
    assert_non_null(h->temp_path);
    assert_non_null(h->policy_root);
    /* Option access goes straight to the policy's values. */
    cf_config_set(f->cfg, "port", "5432", 0, 0);
    cf_config_set(f->cfg, "tls", "on", 0, 0);
    cf_config_list_add(f->cfg, "hosts", "a", 0, 0);
    cf_config_list_add(f->cfg, "hosts", "b", 0, 0);
    assert_string_equal(h->config_get(f->cfg, "port"), "5432");
    assert_int_equal(h->config_get_int(f->cfg, "port", 1), 5432);
    assert_int_equal(h->config_get_bool(f->cfg, "tls", 0), 1);
    assert_int_equal(h->config_list_len(f->cfg, "hosts"), 2);
    assert_string_equal(h->config_list_item(f->cfg, "hosts", 1), "b");
    assert_string_equal(h->policy_root(f->h), "/srv/app");
    assert_null(h->policy_root(NULL));
}

static void test_error_records_code_and_message(void **state)
{
    fx *f = *state;
    /* error() returns the code and records the message of this thread;
     * cf_hctx_fail moves it into cf_error with the label, and clears it. */
    coffer_status st = f->host->error(f->h, COFFER_ERR_NOT_FOUND, "object %s: %d", "k/1", 404);
    assert_int_equal(st, COFFER_ERR_NOT_FOUND);
    assert_int_equal(cf_hctx_fail(f->h, st, "cannot read"), -1);
    assert_string_equal(cf_error(), "component 'db' (test): cannot read: object k/1: 404");

    /* The next error replaces the previous one. */
    f->host->error(f->h, COFFER_ERR_IO, "first");
    assert_int_equal(f->host->error(f->h, COFFER_ERR_AUTH, "denied"), COFFER_ERR_AUTH);
    cf_hctx_fail(f->h, COFFER_ERR_AUTH, NULL);
    assert_string_equal(cf_error(), "component 'db' (test): denied");

    /* Consumed: a failure without a message falls back to the code's words. */
    assert_int_equal(cf_hctx_fail(f->h, COFFER_ERR_NOT_FOUND, "stat"), -1);
    assert_string_equal(cf_error(), "component 'db' (test): stat: not found");
    cf_hctx_fail(f->h, COFFER_ERR_CORRUPT, NULL);
    assert_string_equal(cf_error(), "component 'db' (test): data corrupt");
    assert_string_equal(coffer_status_name(COFFER_OK), "ok");
    assert_string_equal(coffer_status_name(COFFER_ERR_NO_SPACE), "no space left");
    assert_string_equal(coffer_status_name((coffer_status)99), "unknown error");
    assert_string_equal(coffer_status_name((coffer_status)-1), "unknown error");

    /* No context: the code still comes back. */
    assert_int_equal(f->host->error(NULL, COFFER_ERR_IO, "no ctx"), COFFER_ERR_IO);
    cf_hctx_fail(f->h, COFFER_ERR_IO, NULL);
    assert_string_equal(cf_error(), "component 'db' (test): no ctx");

    /* A long message is cut, not overflowed. */
    char big[3000];
    memset(big, 'e', sizeof big - 1);
    big[sizeof big - 1] = 0;
    f->host->error(f->h, COFFER_ERR_FAILED, "%s", big);
    cf_hctx_fail(f->h, COFFER_ERR_FAILED, NULL);
    size_t l = strlen(cf_error());
    assert_true(l > 1000 && l < 2048);
}

/* One instance used from two threads: each failure keeps its own message. */
typedef struct terr {
    fx *f;
    const char *msg;
    pthread_barrier_t *bar;
    char got[512];
} terr;

static void *err_thread(void *p)
{
    terr *t = p;
    t->f->host->error(t->f->h, COFFER_ERR_FAILED, "%s", t->msg);
    pthread_barrier_wait(t->bar); /* both reported before either reads */
    cf_hctx_fail(t->f->h, COFFER_ERR_FAILED, "write");
    snprintf(t->got, sizeof t->got, "%s", cf_error());
    return NULL;
}

static void test_error_per_thread(void **state)
{
    fx *f = *state;
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    terr a = {f, "thread a broke", &bar, ""}, b = {f, "thread b broke", &bar, ""};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, err_thread, &a);
    pthread_create(&tb, NULL, err_thread, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&bar);
    assert_string_equal(a.got, "component 'db' (test): write: thread a broke");
    assert_string_equal(b.got, "component 'db' (test): write: thread b broke");
}

typedef struct log_arg {
    fx *f;
} log_arg;

static void do_log(void *p)
{
    fx *f = p;
    f->host->log(f->h, COFFER_LOG_WARN, "slow disk: %d ms", 250);
    f->host->log(NULL, COFFER_LOG_ERROR, "no context");
    f->host->log(f->h, COFFER_LOG_DEBUG, "hidden at info level");
}

static void test_log_names_instance(void **state)
{
    fx *f = *state;
    int old = cf_log_level_get();
    cf_log_set_level(CF_LOG_INFO);
    char *out = pt_capture_stderr(f->dir, do_log, f);
    cf_log_set_level(old);
    assert_string_equal(out, "coffer: warning: component 'db' (test): slow disk: 250 ms\n"
                             "coffer: error: driver: no context\n");
    free(out);
}

static uint64_t progress_sum;
static void on_progress(void *ud, uint64_t bytes)
{
    assert_ptr_equal(ud, &progress_sum);
    progress_sum += bytes;
}

static void test_progress_and_cancel(void **state)
{
    fx *f = *state;
    f->host->progress(f->h, 10); /* no callback: ignored */
    f->h->progress = on_progress;
    f->h->progress_ud = &progress_sum;
    progress_sum = 0;
    f->host->progress(f->h, 100);
    f->host->progress(f->h, 23);
    f->host->progress(NULL, 1000);
    assert_int_equal(progress_sum, 123);

    assert_int_equal(f->host->cancelled(f->h), 0);
    cf_cancel_flag = 1;
    assert_int_equal(f->host->cancelled(f->h), 1);
    assert_int_equal(f->host->cancelled(NULL), 1);
    cf_cancel_flag = 0;
    assert_int_equal(f->host->cancelled(f->h), 0);
}

/* ---- secrets ------------------------------------------------------------ */

static void test_secret_env(void **state)
{
    fx *f = *state;
    assert_null(f->host->secret_get(f->h, f->cfg, "password")); /* neither given */
    cf_config_set(f->cfg, "password_env", "COFFER_TEST_SECRET_VAR", 0, 0);
    setenv("COFFER_TEST_SECRET_VAR", "s3cr3t value", 1);
    char *s = f->host->secret_get(f->h, f->cfg, "password");
    assert_non_null(s);
    assert_string_equal(s, "s3cr3t value");

    watch_ptr = s;
    watch_len = strlen(s);
    watch_seen = watch_wiped = 0;
    f->host->secret_free(s);
    assert_true(watch_seen);  /* it was freed ... */
    assert_true(watch_wiped); /* ... after every byte was zeroed */
    f->host->secret_free(NULL);
    unsetenv("COFFER_TEST_SECRET_VAR");
}

static void secret_unset_env(void *p)
{
    fx *f = p;
    char *s = f->host->secret_get(f->h, f->cfg, "password");
    /* falls through to the file */
    if (s) {
        fputs(strcmp(s, "from file") == 0 ? "[got file]\n" : "[wrong]\n", stderr);
        f->host->secret_free(s);
    } else {
        fputs("[null]\n", stderr);
    }
}

static void test_secret_file(void **state)
{
    fx *f = *state;
    char path[400];
    snprintf(path, sizeof path, "%s/pw", f->dir);
    assert_int_equal(pt_write(path, "from file\r\nsecond line\n", 23), 0);
    cf_config_set(f->cfg, "password_file", path, 0, 0);
    char *s = f->host->secret_get(f->h, f->cfg, "password");
    assert_non_null(s);
    assert_string_equal(s, "from file"); /* first line, no CR/LF */
    watch_ptr = s;
    watch_len = strlen(s);
    watch_seen = watch_wiped = 0;
    f->host->secret_free(s);
    assert_true(watch_seen);
    assert_true(watch_wiped);

    /* No trailing newline, and an empty file. */
    assert_int_equal(pt_write(path, "abc", 3), 0);
    s = f->host->secret_get(f->h, f->cfg, "password");
    assert_string_equal(s, "abc");
    f->host->secret_free(s);
    assert_int_equal(pt_write(path, "", 0), 0);
    s = f->host->secret_get(f->h, f->cfg, "password");
    assert_non_null(s);
    assert_string_equal(s, "");
    f->host->secret_free(s);

    /* An env option naming an unset variable falls back to the file,
     * with a warning naming the option and the variable. */
    assert_int_equal(pt_write(path, "from file\n", 10), 0);
    cf_config_set(f->cfg, "password_env", "COFFER_TEST_UNSET_VAR", 0, 0);
    unsetenv("COFFER_TEST_UNSET_VAR");
    char *out = pt_capture_stderr(f->dir, secret_unset_env, f);
    assert_has(out, "[got file]");
    assert_has(out, "password_env: environment variable COFFER_TEST_UNSET_VAR is not set");
    free(out);

    /* The environment wins when both are given. */
    setenv("COFFER_TEST_UNSET_VAR", "from env", 1);
    s = f->host->secret_get(f->h, f->cfg, "password");
    assert_string_equal(s, "from env");
    f->host->secret_free(s);
    unsetenv("COFFER_TEST_UNSET_VAR");
}

static void secret_missing_file(void *p)
{
    fx *f = p;
    char *s = f->host->secret_get(f->h, f->cfg, "token");
    fputs(s ? "[not null]\n" : "[null]\n", stderr);
    f->host->secret_free(s);
}

static void test_secret_missing_file(void **state)
{
    fx *f = *state;
    char path[400];
    snprintf(path, sizeof path, "%s/does-not-exist", f->dir);
    cf_config_set(f->cfg, "token_file", path, 0, 0);
    cf_config_set(f->cfg, "token_env", "", 0, 0); /* empty: ignored */
    char *out = pt_capture_stderr(f->dir, secret_missing_file, f);
    assert_has(out, "[null]");
    assert_has(out, "token_file: cannot read ");
    assert_has(out, path);
    assert_has(out, strerror(ENOENT));
    free(out);
}

/* ---- temporary paths ----------------------------------------------------- */

static void test_temp_path(void **state)
{
    fx *f = *state;
    const char *td = cf_tmpdir();
    assert_non_null(td);
    assert_true(strncmp(td, f->dir, strlen(f->dir)) == 0 && td[strlen(f->dir)] == '/');
    assert_ptr_equal(cf_tmpdir(), td); /* created once */
    struct stat st;
    assert_int_equal(stat(td, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0700);

    char a[512], b[512], c[512];
    assert_int_equal(f->host->temp_path(f->h, "dump.sql", a, sizeof a), 0);
    assert_int_equal(f->host->temp_path(f->h, "dump.sql", b, sizeof b), 0);
    assert_int_equal(f->host->temp_path(f->h, NULL, c, sizeof c), 0);
    assert_string_not_equal(a, b);
    size_t l = strlen(td);
    assert_true(strncmp(a, td, l) == 0 && a[l] == '/' && !strchr(a + l + 1, '/'));
    assert_true(strncmp(c, td, l) == 0 && c[l] == '/');
    assert_has(a + l, "dump.sql");
    assert_has(c + l, "tmp");
    assert_false(pt_exists(a)); /* not created */

    /* Too small a buffer is refused. */
    char small[8];
    assert_int_equal(f->host->temp_path(f->h, "x", small, sizeof small), -1);

    /* Cleanup removes the directory with whatever the drivers left. */
    assert_int_equal(pt_write(a, "x", 1), 0);
    char sub[600], subf[700];
    snprintf(sub, sizeof sub, "%s/subdir", td);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(subf, sizeof subf, "%s/f", sub);
    assert_int_equal(pt_write(subf, "y", 1), 0);
    char saved[512];
    snprintf(saved, sizeof saved, "%s", td);
    cf_tmpdir_cleanup();
    assert_false(pt_exists(saved));
    assert_false(pt_exists(a));
    cf_tmpdir_cleanup(); /* again: nothing to do */

    /* The next use makes a new one. */
    const char *td2 = cf_tmpdir();
    assert_true(pt_exists(td2));
    assert_int_equal(f->host->temp_path(f->h, "n", a, sizeof a), 0);
    assert_true(strncmp(a, td2, strlen(td2)) == 0);
}

/* When mkdtemp fails, $TMPDIR itself must not become the run's "private"
 * directory (chmod'ed 0700, then emptied by cf_tmpdir_cleanup: with TMPDIR
 * unset and /tmp full, a root backup would have emptied /tmp). Regression
 * test; mkdtemp is made to fail with ENAMETOOLONG: the base directory fits
 * in PATH_MAX, base/coffer-XXXXXX does not. */
static void test_tmpdir_fallback_keeps_base(void **state)
{
    fx *f = *state;
    char base[PATH_MAX];
    snprintf(base, sizeof base, "%s", f->dir);
    char seg[201];
    memset(seg, 'd', 200);
    seg[200] = 0;
    /* grow base to exactly 4084 characters */
    while (strlen(base) + 201 < 4084) {
        strcat(base, "/");
        strcat(base, seg);
        assert_int_equal(mkdir(base, 0755), 0);
    }
    size_t l = strlen(base);
    strcat(base, "/");
    memset(base + l + 1, 'e', 4084 - l - 1);
    base[4084] = 0;
    assert_int_equal(mkdir(base, 0755), 0);
    char keep[PATH_MAX];
    snprintf(keep, sizeof keep, "%s/keep", base);
    assert_int_equal(pt_write(keep, "precious", 8), 0);

    setenv("TMPDIR", base, 1);
    cf_tmpdir_cleanup();
    int old = cf_log_level_get();
    cf_log_set_level(-1); /* the "cannot create" error line is expected */
    const char *td = cf_tmpdir();
    cf_log_set_level(old);
    (void)td;
    struct stat st;
    assert_int_equal(stat(base, &st), 0);
    int mode = st.st_mode & 07777;
    cf_tmpdir_cleanup();
    setenv("TMPDIR", f->dir, 1);
    assert_true(pt_exists(keep));      /* the user's directory keeps its content */
    assert_int_equal(mode, 0755);      /* ... and its mode */
}

/* A dead coffer's private temporary directory (unlocked liveness lock,
 * older than a few seconds) is swept when the next one makes its own; a
 * live one, a fresh one and one others may read are left alone. */
static void make_tmp(const char *base, const char *name, mode_t mode, int with_lock, time_t age)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", base, name);
    assert_int_equal(mkdir(p, mode), 0);
    assert_int_equal(chmod(p, mode), 0);
    snprintf(p, sizeof p, "%s/%s/password-x", base, name);
    assert_int_equal(pt_write(p, "secret", 6), 0);
    if (with_lock) {
        snprintf(p, sizeof p, "%s/%s/.coffer-alive", base, name);
        assert_int_equal(pt_write(p, "", 0), 0);
        struct timespec ts[2] = {{time(NULL) - age, 0}, {time(NULL) - age, 0}};
        assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    }
}

static void test_tmpdir_sweeps_dead_ones(void **state)
{
    fx *f = *state;
    char base[PATH_MAX], p[PATH_MAX];
    snprintf(base, sizeof base, "%s/sweep", f->dir);
    assert_int_equal(mkdir(base, 0755), 0);
    make_tmp(base, "coffer-dead01", 0700, 1, 60);
    make_tmp(base, "coffer-live01", 0700, 1, 60);
    make_tmp(base, "coffer-young1", 0700, 1, 0);
    make_tmp(base, "coffer-shared", 0755, 1, 60);
    make_tmp(base, "coffer-nolock", 0700, 0, 0);
    make_tmp(base, "coffer-longer-name", 0700, 1, 60);
    snprintf(p, sizeof p, "%s/coffer-live01/.coffer-alive", base);
    int held = open(p, O_RDONLY);
    assert_true(held >= 0);
    assert_int_equal(flock(held, LOCK_EX), 0); /* a running coffer */

    setenv("TMPDIR", base, 1);
    cf_tmpdir_cleanup();
    const char *td = cf_tmpdir();
    assert_non_null(td);
    const char *const gone[] = {"coffer-dead01"};
    const char *const kept[] = {"coffer-live01", "coffer-young1", "coffer-shared", "coffer-nolock",
                                "coffer-longer-name"};
    for (size_t i = 0; i < CF_ARRAY_LEN(gone); i++) {
        snprintf(p, sizeof p, "%s/%s", base, gone[i]);
        assert_false(pt_exists(p));
    }
    for (size_t i = 0; i < CF_ARRAY_LEN(kept); i++) {
        snprintf(p, sizeof p, "%s/%s/password-x", base, kept[i]);
        assert_true(pt_exists(p));
    }
    /* our own directory carries the lock, held */
    snprintf(p, sizeof p, "%s/.coffer-alive", td);
    int mine = open(p, O_RDONLY);
    assert_true(mine >= 0);
    assert_int_not_equal(flock(mine, LOCK_EX | LOCK_NB), 0);
    close(mine);
    close(held);
    cf_tmpdir_cleanup();
    setenv("TMPDIR", f->dir, 1);
}

int main(void)
{
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_table_header),
        T(test_error_records_code_and_message),
        T(test_error_per_thread),
        T(test_log_names_instance),
        T(test_progress_and_cancel),
        T(test_secret_env),
        T(test_secret_file),
        T(test_secret_missing_file),
        T(test_temp_path),
        T(test_tmpdir_fallback_keeps_base),
        T(test_tmpdir_sweeps_dead_ones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
