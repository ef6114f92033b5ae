/* core/util: the thread-local error message, hex, cf_buf, cf_asprintf,
 * logging. Every test that touches the file system runs in a fresh
 * temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"

/* ---- helpers ---------------------------------------------------------- */

typedef struct tmp {
    char dir[256];
} tmp;

static int setup_tmp(void **state)
{
    tmp *t = calloc(1, sizeof *t);
    snprintf(t->dir, sizeof t->dir, "/tmp/coffer-util-XXXXXX");
    if (!mkdtemp(t->dir))
        return -1;
    *state = t;
    return 0;
}

static int teardown_tmp(void **state)
{
    tmp *t = *state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
    if (system(cmd) != 0)
        return -1;
    free(t);
    return 0;
}

/* Redirect fd 2 into a file while fn runs; returns what was written. */
static char *capture_stderr(const char *dir, void (*fn)(void *), void *arg)
{
    char path[300];
    snprintf(path, sizeof path, "%s/stderr.txt", dir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *f = fopen(path, "r");
    char *buf = calloc(1, 65536);
    size_t n = f ? fread(buf, 1, 65535, f) : 0;
    buf[n] = 0;
    if (f)
        fclose(f);
    unlink(path);
    return buf;
}

/* ---- errors: thread-local --------------------------------------------- */

typedef struct thr_arg {
    const char *msg;
    pthread_barrier_t *bar;
    char seen_initial[64];
    char seen_after[256];
    char seen_prefixed[256];
} thr_arg;

static void *err_thread(void *p)
{
    thr_arg *a = p;
    /* A new thread starts without a message. */
    snprintf(a->seen_initial, sizeof a->seen_initial, "%s", cf_error());
    cf_fail("%s %d", a->msg, 42);
    pthread_barrier_wait(a->bar); /* both have set their message */
    pthread_barrier_wait(a->bar); /* ... and the other one had a chance to overwrite */
    snprintf(a->seen_after, sizeof a->seen_after, "%s", cf_error());
    cf_error_prefix("ctx %s", a->msg);
    pthread_barrier_wait(a->bar);
    snprintf(a->seen_prefixed, sizeof a->seen_prefixed, "%s", cf_error());
    return NULL;
}

static void test_error_thread_local(void **state)
{
    (void)state;
    cf_fail("main thread message");
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    thr_arg a = {.msg = "alpha", .bar = &bar}, b = {.msg = "beta", .bar = &bar};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, err_thread, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, err_thread, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&bar);

    assert_string_equal(a.seen_initial, "unknown error");
    assert_string_equal(b.seen_initial, "unknown error");
    assert_string_equal(a.seen_after, "alpha 42");
    assert_string_equal(b.seen_after, "beta 42");
    assert_string_equal(a.seen_prefixed, "ctx alpha: alpha 42");
    assert_string_equal(b.seen_prefixed, "ctx beta: beta 42");
    /* The main thread's message was never touched. */
    assert_string_equal(cf_error(), "main thread message");
}

static void test_error_basics(void **state)
{
    (void)state;
    cf_error_clear();
    assert_string_equal(cf_error(), "unknown error");
    assert_int_equal(cf_fail("file %s line %d", "a.yaml", 3), -1);
    assert_string_equal(cf_error(), "file a.yaml line 3");
    cf_error_prefix("outer");
    cf_error_prefix("%s", "outermost");
    assert_string_equal(cf_error(), "outermost: outer: file a.yaml line 3");

    errno = ENOENT;
    assert_int_equal(cf_fail_errno("cannot open %s", "/x"), -1);
    assert_int_equal(errno, ENOENT); /* preserved for the caller */
    char want[256];
    snprintf(want, sizeof want, "cannot open /x: %s", strerror(ENOENT));
    assert_string_equal(cf_error(), want);
    cf_error_clear();
    assert_string_equal(cf_error(), "unknown error");
}

static void test_error_long_messages_truncate(void **state)
{
    (void)state;
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    cf_fail("%s", big);
    size_t l = strlen(cf_error());
    assert_true(l > 1000 && l < 2048);
    /* Prefixing a full buffer stays bounded and keeps the prefix. */
    cf_error_prefix("%s", big);
    l = strlen(cf_error());
    assert_true(l < 2048);
    assert_int_equal(cf_error()[0], 'x');
    errno = EACCES;
    cf_fail_errno("%s", big); /* no room for ": strerror": still terminated */
    assert_true(strlen(cf_error()) < 2048);
}

/* ---- hex ---------------------------------------------------------------- */

static void test_hex_roundtrip(void **state)
{
    (void)state;
    uint8_t in[256], out[256];
    char hex[513];
    for (int i = 0; i < 256; i++)
        in[i] = (uint8_t)i;
    cf_hex(in, sizeof in, hex);
    assert_int_equal(strlen(hex), 512);
    assert_memory_equal(hex, "000102", 6);
    assert_string_equal(hex + 506, "fdfeff");
    for (size_t i = 0; i < 512; i++)
        assert_true((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f'));
    memset(out, 0, sizeof out);
    assert_int_equal(cf_unhex(hex, out, sizeof out), 0);
    assert_memory_equal(in, out, sizeof in);

    /* Upper case is accepted. */
    uint8_t two[2];
    assert_int_equal(cf_unhex("ABcd", two, 2), 0);
    assert_int_equal(two[0], 0xab);
    assert_int_equal(two[1], 0xcd);

    /* Zero bytes: empty string. */
    char e[1];
    cf_hex(in, 0, e);
    assert_string_equal(e, "");
    assert_int_equal(cf_unhex("", two, 0), 0);
}

static void test_hex_rejects(void **state)
{
    (void)state;
    uint8_t out[4];
    assert_int_equal(cf_unhex("0g", out, 1), -1);     /* not a digit */
    assert_int_equal(cf_unhex("g0", out, 1), -1);
    assert_int_equal(cf_unhex("0", out, 1), -1);      /* too short (odd) */
    assert_int_equal(cf_unhex("", out, 1), -1);       /* too short */
    assert_int_equal(cf_unhex("abc", out, 1), -1);    /* too long */
    assert_int_equal(cf_unhex("abcd", out, 1), -1);   /* too long */
    assert_int_equal(cf_unhex(" abc", out, 2), -1);   /* space */
    assert_int_equal(cf_unhex("ab-d", out, 2), -1);
    assert_int_equal(cf_unhex("0x12", out, 2), -1);
    assert_int_equal(cf_unhex("abcd", out, 2), 0);
}

/* ---- cf_buf --------------------------------------------------------------- */

static void test_buf_growth(void **state)
{
    (void)state;
    cf_buf b = {0};
    cf_buf_append(&b, "", 0); /* no-op, no allocation */
    assert_null(b.data);
    assert_int_equal(b.len, 0);

    /* Byte by byte across many growths: content intact, capacity a
     * power-of-two multiple of the first allocation and always enough. */
    for (size_t i = 0; i < 100000; i++) {
        uint8_t c = (uint8_t)(i * 7);
        cf_buf_append(&b, &c, 1);
        assert_true(b.cap >= b.len);
    }
    assert_int_equal(b.len, 100000);
    assert_int_equal(b.cap, 131072);
    for (size_t i = 0; i < 100000; i++)
        if (b.data[i] != (uint8_t)(i * 7))
            fail_msg("byte %zu wrong", i);

    /* A big append grows in one step. */
    size_t big = 3u << 20;
    uint8_t *p = malloc(big);
    memset(p, 0x5a, big);
    cf_buf_append(&b, p, big);
    assert_int_equal(b.len, 100000 + big);
    assert_true(b.cap >= b.len);
    assert_int_equal(b.data[100000 + big - 1], 0x5a);
    assert_int_equal(b.data[99999], (uint8_t)(99999 * 7));
    free(p);

    /* reserve does not change len, and gives room for the promised bytes. */
    size_t len = b.len;
    cf_buf_reserve(&b, 10u << 20);
    assert_int_equal(b.len, len);
    assert_true(b.cap - b.len >= (10u << 20));
    size_t cap = b.cap;
    cf_buf_reserve(&b, 1);
    assert_int_equal(b.cap, cap); /* enough room already: unchanged */

    cf_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    /* Reusable after free. */
    cf_buf_append(&b, "abc", 3);
    assert_int_equal(b.len, 3);
    assert_int_equal(b.cap, 256);
    assert_memory_equal(b.data, "abc", 3);
    cf_buf_free(&b);
    cf_buf_free(&b); /* twice is harmless */
}

/* ---- strings ----------------------------------------------------------------- */

static char *vwrap(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = cf_vasprintf(fmt, ap);
    va_end(ap);
    return s;
}

static void test_redact(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"hook 'x': running `PGPASSWORD=hunter2 psql -c 1`", "hook 'x': running `PGPASSWORD=*** psql -c 1`"},
        {"ping to https://bob:s3cr%40t@hc.example/abc failed", "ping to https://bob:***@hc.example/abc failed"},
        {"url postgres://u:pw@h:5432/db?sslmode=require&password=x y",
         "url postgres://u:**@h:5432/db?sslmode=require&password=* y"},
        {"host=h password='p w' dbname=d", "host=h password=*** dbname=d"},
        {"MY_API_TOKEN=abc; DB_PWD=z; mode=0600 user=a", "MY_API_TOKEN=***; DB_PWD=*; mode=0600 user=a"},
        {"no secrets: a=b, http://host:80/path, s3://bucket/p", "no secrets: a=b, http://host:80/path, s3://bucket/p"},
        {"secret_key= empty", "secret_key= empty"},
        {"ssh://git@host", "ssh://git@host"},
        {"password=x pwd=ab https://u:p@h", "password=* pwd=** https://u:*@h"}, /* never grows */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", cases[i][0]);
        cf_redact(buf);
        assert_string_equal(buf, cases[i][1]);
    }
    /* a message that fills the error buffer, short secrets at its end */
    char big[4096];
    memset(big, 'a', sizeof big);
    big[sizeof big - 1] = 0;
    memcpy(big + 2030, " password=x y", 13);
    cf_fail("%s", big);
    assert_true(strlen(cf_error()) < 2048);
    cf_fail("cannot connect to mysql://root:topsecret@db/x");
    assert_null(strstr(cf_error(), "topsecret"));
}

static void test_asprintf(void **state)
{
    (void)state;
    char *s = cf_asprintf("%s-%d-%05.1f-%c", "abc", -12, 3.14159, 'z');
    assert_string_equal(s, "abc--12-003.1-z");
    free(s);
    s = cf_asprintf("%s", "");
    assert_string_equal(s, "");
    free(s);
    /* Longer than any fixed buffer. */
    char *big = malloc(100001);
    memset(big, 'q', 100000);
    big[100000] = 0;
    s = cf_asprintf("<%s>", big);
    assert_int_equal(strlen(s), 100002);
    assert_int_equal(s[0], '<');
    assert_int_equal(s[100001], '>');
    free(s);
    free(big);
    /* The va_list variant is reusable by callers (it copies the list). */
    s = vwrap("%d %s %llu", 7, "x", 18446744073709551615ULL);
    assert_string_equal(s, "7 x 18446744073709551615");
    free(s);

    s = cf_strndup("abcdef", 3);
    assert_string_equal(s, "abc");
    free(s);
    s = cf_strdup("hello");
    assert_string_equal(s, "hello");
    free(s);
    assert_null(cf_strdup(NULL));
    /* zero-size allocations still return usable pointers */
    void *z = cf_malloc(0);
    assert_non_null(z);
    free(z);
    z = cf_calloc(0, 0);
    assert_non_null(z);
    free(z);
    int *v = cf_calloc(16, sizeof(int));
    for (int i = 0; i < 16; i++)
        assert_int_equal(v[i], 0);
    v = cf_realloc(v, 1000 * sizeof(int));
    assert_int_equal(v[15], 0);
    free(v);
}

static void test_random_and_now(void **state)
{
    (void)state;
    uint8_t a[64] = {0}, b[64] = {0}, zero[64] = {0};
    cf_random(a, sizeof a);
    cf_random(b, sizeof b);
    assert_memory_not_equal(a, zero, sizeof a);
    assert_memory_not_equal(a, b, sizeof a);
    double t0 = cf_now();
    usleep(20000);
    double t1 = cf_now();
    assert_true(t1 - t0 >= 0.015 && t1 - t0 < 5);
}

/* ---- logging --------------------------------------------------------- */

static int hook_calls;
static void count_hook(void)
{
    hook_calls++;
}

static void do_logs(void *arg)
{
    (void)arg;
    cf_log(CF_LOG_ERROR, "err %d", 1);
    cf_log(CF_LOG_WARN, "warn %s", "two");
    cf_log(CF_LOG_INFO, "info hidden");
    cf_log(CF_LOG_DEBUG, "debug hidden");
}

static void do_debug_logs(void *arg)
{
    (void)arg;
    cf_log(CF_LOG_INFO, "info shown");
    cf_log(CF_LOG_DEBUG, "debug shown");
}

static void test_log_levels_and_hook(void **state)
{
    tmp *t = *state;
    int old = cf_log_level_get();
    cf_log_set_level(CF_LOG_WARN);
    assert_int_equal(cf_log_level_get(), CF_LOG_WARN);
    hook_calls = 0;
    cf_log_set_hook(count_hook);
    char *out = capture_stderr(t->dir, do_logs, NULL);
    cf_log_set_hook(NULL);
    assert_string_equal(out, "coffer: error: err 1\ncoffer: warning: warn two\n");
    assert_int_equal(hook_calls, 2); /* once per line written, not for filtered ones */
    free(out);

    cf_log_set_level(CF_LOG_DEBUG);
    out = capture_stderr(t->dir, do_debug_logs, NULL);
    assert_string_equal(out, "coffer: info: info shown\ncoffer: debug: debug shown\n");
    free(out);
    assert_int_equal(hook_calls, 2); /* hook removed */
    cf_log_set_level(old);
}

/* cf_write_all: every byte through a pipe in short writes; a write that
 * fails keeps its errno. */
static void *drain(void *arg)
{
    int fd = *(int *)arg;
    static char got[1 << 20];
    size_t n = 0;
    ssize_t r;
    while ((r = read(fd, got + n, sizeof got - n)) > 0)
        n += (size_t)r;
    return (void *)(uintptr_t)(n == sizeof got && got[12345] == (char)(12345 % 251));
}

/* cf_cpus: the online CPUs, held to the bounds it is given. */
static void test_cpus(void **state)
{
    (void)state;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    assert_true(online >= 1);
    assert_int_equal(cf_cpus(1, 1 << 20), (int)online);
    assert_int_equal(cf_cpus(1, 1), 1);
    assert_int_equal(cf_cpus((int)online + 3, (int)online + 9), (int)online + 3);
    assert_int_equal(cf_cpus(0, 0), 0);
}

static void test_write_all(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    static char buf[1 << 20]; /* more than a pipe holds: short writes */
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (char)(i % 251);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, drain, &p[0]), 0);
    assert_int_equal(cf_write_all(p[1], buf, sizeof buf), 0);
    close(p[1]);
    void *ok;
    pthread_join(t, &ok);
    close(p[0]);
    assert_true(ok != NULL);
    int full = open("/dev/full", O_WRONLY);
    if (full >= 0) {
        errno = 0;
        assert_int_equal(cf_write_all(full, "x", 1), -1);
        assert_int_equal(errno, ENOSPC);
        close(full);
    }
    errno = 0;
    assert_int_equal(cf_write_all(-1, "x", 1), -1);
    assert_int_equal(errno, EBADF);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_thread_local),
        cmocka_unit_test(test_cpus),
        cmocka_unit_test(test_error_basics),
        cmocka_unit_test(test_error_long_messages_truncate),
        cmocka_unit_test(test_hex_roundtrip),
        cmocka_unit_test(test_write_all),
        cmocka_unit_test(test_hex_rejects),
        cmocka_unit_test(test_buf_growth),
        cmocka_unit_test(test_redact),
        cmocka_unit_test(test_asprintf),
        cmocka_unit_test(test_random_and_now),
        cmocka_unit_test_setup_teardown(test_log_levels_and_hook, setup_tmp, teardown_tmp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
