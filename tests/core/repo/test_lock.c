/* Repository locks (core/repo/lock.c) on the in-memory store: shared
 * locks coexist, an exclusive one excludes and names the holder, a stale
 * lock of a dead process is removed, and a shared lock waits out an
 * exclusive one being taken that very moment. */
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "repo/lock.h"
#include "repo_test.h"
#include "util/util.h"

static cf_store *st;
static mem_storage *ms;

static int setup(void **state)
{
    (void)state;
    st = mem_store_new("mem", &ms);
    return st ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    cf_store_free(st);
    return 0;
}

/* A lock object as another process writes it. */
static void put_lock(const char *key, const char *host, long pid, const char *kind,
                     time_t refreshed)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"host\":\"%s\",\"pid\":%ld,\"kind\":\"%s\",\"command\":\"prune\","
             "\"created\":%lld,\"refreshed\":%lld}",
             host, pid, kind, (long long)refreshed, (long long)refreshed);
    assert_int_equal(cf_store_put(st, key, body, strlen(body), 0), 0);
}

static void test_shared_locks_coexist(void **state)
{
    (void)state;
    cf_lock *a, *b, *x;
    assert_int_equal(cf_lock_acquire(st, 0, "backup", &a), 0);
    assert_int_equal(cf_lock_acquire(st, 0, "backup", &b), 0);
    assert_int_equal(mem_storage_count(ms, "locks/"), 2);
    /* an exclusive lock is refused, naming a holder, and leaves nothing */
    assert_int_equal(cf_lock_acquire(st, 1, "prune", &x), -1);
    assert_error_has("repository is locked (shared lock");
    assert_error_has("'backup'");
    assert_int_equal(mem_storage_count(ms, "locks/"), 2);
    cf_lock_release(a);
    cf_lock_release(b);
    assert_int_equal(mem_storage_count(ms, "locks/"), 0);
    assert_int_equal(cf_lock_acquire(st, 1, "prune", &x), 0);
    cf_lock_release(x);
}

/* Another host's exclusive lock, refreshed long ago (but within the
 * expiry): a backup fails at once, naming it. */
static void test_held_exclusive_refuses_at_once(void **state)
{
    (void)state;
    put_lock("locks/other", "elsewhere", 4242, "exclusive", time(NULL) - 120);
    cf_lock *l;
    double t0 = cf_now();
    assert_int_equal(cf_lock_acquire(st, 0, "backup", &l), -1);
    assert_true(cf_now() - t0 < 0.5);
    assert_error_has("exclusive lock locks/other held by 'prune', pid 4242 on elsewhere");
    assert_int_equal(mem_storage_count(ms, "locks/"), 1);
}

/* A lock of this host whose process is gone is stale: removed. */
static void test_stale_lock_removed(void **state)
{
    (void)state;
    char host[256] = "unknown";
    gethostname(host, sizeof host - 1);
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    waitpid(pid, NULL, 0); /* a pid that no longer runs */
    put_lock("locks/dead", host, (long)pid, "exclusive", time(NULL));
    cf_lock *l;
    assert_int_equal(cf_lock_acquire(st, 0, "backup", &l), 0);
    assert_false(mem_storage_exists(ms, "locks/dead"));
    cf_lock_release(l);
}

static void *drop_later(void *arg)
{
    (void)arg;
    usleep(800000);
    mem_storage_drop(ms, "locks/contender");
    return NULL;
}

/* An exclusive lock written this very moment (a prune that will see the
 * backups' locks and back off): the backup waits it out. */
static void test_shared_waits_out_a_contender(void **state)
{
    (void)state;
    put_lock("locks/contender", "elsewhere", 4343, "exclusive", time(NULL));
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, drop_later, NULL), 0);
    cf_lock *l;
    int rc = cf_lock_acquire(st, 0, "backup", &l);
    pthread_join(t, NULL);
    if (rc != 0)
        fail_msg("not acquired: %s", cf_error());
    cf_lock_release(l);
    /* an exclusive request does not wait: a fresh shared lock refuses it */
    cf_lock *b, *x;
    assert_int_equal(cf_lock_acquire(st, 0, "backup", &b), 0);
    double t0 = cf_now();
    assert_int_equal(cf_lock_acquire(st, 1, "prune", &x), -1);
    assert_true(cf_now() - t0 < 0.5);
    cf_lock_release(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shared_locks_coexist, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_exclusive_refuses_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_lock_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_waits_out_a_contender, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
