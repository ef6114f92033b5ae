/* core/engine/progress.c: counters, human-readable sizes, and the bar
 * drawn on a terminal (a pseudo-terminal stands in for it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <poll.h>
#include <pthread.h>

#include "engine/progress.h"
#include "engine_test.h"

static void test_human_bytes(void **state)
{
    (void)state;
    char b[32];
    assert_string_equal(cf_human_bytes(0, b, sizeof b), "0 B");
    assert_string_equal(cf_human_bytes(1023, b, sizeof b), "1023 B");
    assert_string_equal(cf_human_bytes(1024, b, sizeof b), "1.0 KiB");
    assert_string_equal(cf_human_bytes(1536, b, sizeof b), "1.5 KiB");
    assert_string_equal(cf_human_bytes(64ull << 20, b, sizeof b), "64.0 MiB");
    assert_string_equal(cf_human_bytes((5ull << 30) + (1ull << 29), b, sizeof b), "5.5 GiB");
    assert_string_equal(cf_human_bytes(3ull << 40, b, sizeof b), "3.0 TiB");
    assert_string_equal(cf_human_bytes(1ull << 50, b, sizeof b), "1024.0 TiB"); /* no PiB */
    assert_string_equal(cf_human_bytes(UINT64_MAX, b, sizeof b), "16777216.0 TiB");
    char small[6];
    assert_string_equal(cf_human_bytes(1ull << 30, small, sizeof small), "1.0 G"); /* cut, terminated */
}

static void *adder(void *p)
{
    (void)p;
    for (int i = 0; i < 100000; i++)
        cf_progress_add(3, 1);
    return NULL;
}

static void test_counters(void **state)
{
    (void)state;
    cf_progress_start("t", 100, 1); /* never draws */
    assert_int_equal(cf_progress_bytes(), 0);
    assert_int_equal(cf_progress_files(), 0);
    cf_progress_add(10, 0);
    cf_progress_add(0, 2);
    assert_int_equal(cf_progress_bytes(), 10);
    assert_int_equal(cf_progress_files(), 2);
    /* Any thread may add: no update is lost. */
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, adder, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(cf_progress_bytes(), 10 + 4 * 300000);
    assert_int_equal(cf_progress_files(), 2 + 4 * 100000);
    cf_progress_set_total(5);
    cf_progress_stop(); /* not running: nothing to do */
    /* A new start resets the counters. */
    cf_progress_start("u", 0, 1);
    assert_int_equal(cf_progress_bytes(), 0);
    assert_int_equal(cf_progress_files(), 0);
    cf_progress_stop();
}

typedef struct pty {
    int master, saved;
} pty;

static int pty_open(pty *p)
{
    p->master = posix_openpt(O_RDWR | O_NOCTTY);
    if (p->master < 0 || grantpt(p->master) != 0 || unlockpt(p->master) != 0)
        return -1;
    int slave = open(ptsname(p->master), O_RDWR | O_NOCTTY);
    if (slave < 0)
        return -1;
    fflush(stderr);
    p->saved = dup(2);
    dup2(slave, 2);
    close(slave);
    return 0;
}

static char *pty_close(pty *p)
{
    fflush(stderr);
    dup2(p->saved, 2);
    close(p->saved);
    cf_buf b = {0};
    char tmp[4096];
    struct pollfd pf = {p->master, POLLIN, 0};
    while (poll(&pf, 1, 100) > 0 && (pf.revents & POLLIN)) {
        ssize_t n = read(p->master, tmp, sizeof tmp);
        if (n <= 0)
            break;
        cf_buf_append(&b, tmp, (size_t)n);
    }
    close(p->master);
    cf_buf_append(&b, "", 1);
    return (char *)b.data;
}

static void test_bar_on_terminal(void **state)
{
    (void)state;
    int old = cf_log_level_get();
    cf_log_set_level(CF_LOG_INFO);
    pty p;
    if (pty_open(&p) != 0)
        skip();
    cf_progress_start("backup", 4ull << 20, 0);
    cf_progress_add(2ull << 20, 3);
    usleep(450000); /* two redraws at least */
    cf_log(CF_LOG_INFO, "a log line");
    cf_progress_stop();
    char *out = pty_close(&p);
    cf_log_set_level(old);
    assert_has(out, "\r\033[Kbackup 2.0 MiB, 3 files, ");
    assert_has(out, "[##########..........]  50% ETA ");
    /* A log line clears the bar first, then the bar comes back. */
    assert_has(out, "\r\033[Kcoffer: info: a log line");
    /* The final bar ends its line. */
    size_t l = strlen(out);
    assert_true(l > 2);
    assert_true(out[l - 1] == '\n');
    free(out);
    /* The hook is gone after stop: a log line does not clear anything. */
    pty_open(&p);
    cf_log(CF_LOG_ERROR, "after");
    out = pty_close(&p);
    assert_null(strstr(out, "\033[K"));
    free(out);
}

static void quiet_run(void *arg)
{
    (void)arg;
    cf_progress_start("restore", 0, 0);
    cf_progress_add(100, 1);
    usleep(250000);
    cf_log(CF_LOG_WARN, "warned");
    cf_progress_stop();
}

static void test_no_bar_when_not_a_terminal(void **state)
{
    (void)state;
    et_dir d;
    assert_int_equal(et_dir_new(&d), 0);
    cf_log_set_level(CF_LOG_INFO);
    char *out = et_capture_stderr(d.path, quiet_run, NULL);
    /* Plain logs get a progress line only every 30 s; nothing here. */
    assert_string_equal(out, "coffer: warning: warned\n");
    free(out);
    et_dir_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_human_bytes),
        cmocka_unit_test(test_counters),
        cmocka_unit_test(test_bar_on_terminal),
        cmocka_unit_test(test_no_bar_when_not_a_terminal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
