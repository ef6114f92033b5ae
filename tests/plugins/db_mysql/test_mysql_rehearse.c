/*
 * database "mysql" against a real MariaDB (tests/tools/mysql_server.sh,
 * label "server"): query_target streaming (many rows, bounded memory,
 * early stop, NULLs, refused statements: DDL, writes, INTO OUTFILE) and
 * scratch databases (create, restore into, query, drop; taken names, bad
 * names, an account without CREATE), never a password in a message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db_mysql.h"
#include "memdump.h"
#include "mock_host.h"
#include "plugin/config.h"

extern const coffer_plugin *coffer_builtin_mysql(const coffer_host *host);

static char srvdir[512];
static char my_port[16], my_password[128], my_cnf[600];

static int group_setup(void **state)
{
    (void)state;
    const char *src = getenv("COFFER_TEST_SRC");
    if (!src)
        return -1;
    snprintf(srvdir, sizeof srvdir, "/tmp/coffer-myreh-%d", (int)getpid());
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "bash '%s/tests/tools/mysql_server.sh' start '%s'", src, srvdir);
    FILE *p = popen(cmd, "r");
    char line[1024];
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = 0;
        if (strncmp(line, "MYSQL_PORT=", 11) == 0)
            snprintf(my_port, sizeof my_port, "%s", line + 11);
        else if (strncmp(line, "MYSQL_TEST_PASSWORD=", 20) == 0)
            snprintf(my_password, sizeof my_password, "%s", line + 20);
        else if (strncmp(line, "MYSQL_CLIENT_CNF=", 17) == 0)
            snprintf(my_cnf, sizeof my_cnf, "%s", line + 17);
    }
    if (pclose(p) != 0 || !*my_port || !*my_password)
        return -1;
    setenv("COFFER_TEST_MYREH_PW", my_password, 1);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    const char *src = getenv("COFFER_TEST_SRC");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "bash '%s/tests/tools/mysql_server.sh' stop '%s' >/dev/null 2>&1; rm -rf '%s'", src,
             srvdir, srvdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Run SQL as root; the first line of output into out. */
static int admin(const char *sql, char *out, size_t len)
{
    char f[600];
    snprintf(f, sizeof f, "%s/admin.sql", srvdir);
    FILE *fp = fopen(f, "w");
    fprintf(fp, "%s\n", sql);
    fclose(fp);
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "mysql --defaults-file='%s' -N -B < '%s'", my_cnf, f);
    FILE *p = popen(cmd, "r");
    char buf[1024] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    buf[strcspn(buf, "\n")] = 0;
    if (out)
        snprintf(out, len, "%s", buf);
    return pclose(p);
}

typedef struct fx {
    mock_host mh;
    coffer_config *cfg;
    const coffer_plugin *pl;
    const coffer_database_ops *ops;
    void *in;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    mock_host_init(&f->mh);
    f->cfg = cf_config_new();
    f->pl = coffer_builtin_mysql(&f->mh.host);
    f->ops = f->pl->database;
    admin("CREATE DATABASE IF NOT EXISTS app", NULL, 0);
    char url[300];
    snprintf(url, sizeof url, "mysql://coffer@127.0.0.1:%s/app", my_port);
    cf_config_set(f->cfg, "url", url, 1, 1);
    cf_config_set(f->cfg, "password_env", "COFFER_TEST_MYREH_PW", 2, 1);
    assert_int_equal(f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), f->cfg, &f->in), COFFER_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    assert_null(strstr(f->mh.last_error, my_password));
    assert_null(strstr(f->mh.log, my_password));
    f->ops->instance_free(f->in);
    cf_config_free(f->cfg);
    mock_host_cleanup(&f->mh);
    free(f);
    return 0;
}

typedef struct counter {
    long rows, nulls, stop_after;
    long sum;
    int ncols;
} counter;

static int count_row(void *ud, int ncols, const char *const *v)
{
    counter *c = ud;
    c->ncols = ncols;
    c->rows++;
    if (ncols > 0 && v[0])
        c->sum += atol(v[0]);
    for (int i = 0; i < ncols; i++)
        if (!v[i])
            c->nulls++;
    return c->stop_after && c->rows >= c->stop_after;
}

/* TEST_VERBOSE=1 shows the messages the assertions look at. */
static void show(const fx *f)
{
    if (getenv("TEST_VERBOSE"))
        print_message("  error: %s\n", f->mh.last_error);
}

static void test_abi(void **state)
{
    fx *f = *state;
    assert_true(f->ops->struct_size >= offsetof(coffer_database_ops, scratch_drop) + sizeof(void *));
    assert_non_null(f->ops->query_target);
    assert_non_null(f->ops->scratch_create);
    assert_non_null(f->ops->scratch_drop);
}

static void test_url_format(void **state)
{
    (void)state;
    dbmysql_url u;
    char err[300];
    assert_int_equal(dbmysql_url_parse("mysql://us%20er@db.example:3307/app?socket=/run/my%20sql.sock&ssl_mode=required"
                                       "&password_env=OTHER_PW",
                                       &u, err, sizeof err),
                     0);
    char *s = dbmysql_url_format(&u, "coffer_rehearse_x");
    assert_string_equal(s, "mysql://us%20er@db.example:3307/coffer_rehearse_x?socket=%2Frun%2Fmy%20sql.sock"
                           "&ssl_mode=required&password_env=OTHER_PW");
    dbmysql_url v;
    assert_int_equal(dbmysql_url_parse(s, &v, err, sizeof err), 0);
    assert_string_equal(v.user, "us er");
    assert_string_equal(v.socket, "/run/my sql.sock");
    assert_string_equal(v.database, "coffer_rehearse_x");
    assert_string_equal(v.password_env, "OTHER_PW");
    assert_int_equal(v.port, 3307);
    free(s);
    dbmysql_url_free(&u);
    dbmysql_url_free(&v);
    assert_int_equal(dbmysql_url_parse("mysql://[::1]:3306/", &u, err, sizeof err), 0);
    s = dbmysql_url_format(&u, "coffer_rehearse_y");
    assert_string_equal(s, "mysql://[::1]:3306/coffer_rehearse_y");
    free(s);
    dbmysql_url_free(&u);
}

static void test_stream_many(void **state)
{
    fx *f = *state;
    counter c = {0};
    coffer_status st = f->ops->query_target(
        f->in, NULL, "SELECT seq, IF(seq % 3 = 0, NULL, CONCAT('row ', seq)) FROM seq_1_to_200000", count_row, &c);
    assert_int_equal(st, COFFER_OK);
    assert_int_equal(c.rows, 200000);
    assert_int_equal(c.ncols, 2);
    assert_int_equal(c.nulls, 66666);
    assert_int_equal(c.sum, 200000L * 200001L / 2);
    counter r = {0};
    assert_int_equal(f->ops->query_target(f->in, NULL,
                                          "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 1000)"
                                          " SELECT n FROM s",
                                          count_row, &r),
                     COFFER_OK);
    assert_int_equal(r.rows, 1000);
    counter d = {0};
    assert_int_equal(f->ops->query(f->in, "SELECT NULL, 1", count_row, &d), COFFER_OK);
    assert_int_equal(d.rows, 1);
    assert_int_equal(d.nulls, 1);
    counter e = {0};
    assert_int_equal(f->ops->query_target(f->in, NULL, "SELECT 1 FROM DUAL WHERE 1 = 0", count_row, &e), COFFER_OK);
    assert_int_equal(e.rows, 0);
    counter g = {0};
    assert_int_equal(f->ops->query_target(f->in, NULL, "SHOW DATABASES", count_row, &g), COFFER_OK);
    assert_true(g.rows >= 1);
}

static long maxrss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void test_memory_bounded(void **state)
{
    fx *f = *state;
    long before = maxrss_kib();
    counter c = {0};
    coffer_status st =
        f->ops->query_target(f->in, NULL, "SELECT seq, REPEAT('x', 100) FROM seq_1_to_1000000", count_row, &c);
    assert_int_equal(st, COFFER_OK);
    assert_int_equal(c.rows, 1000000);
    long grew = maxrss_kib() - before;
    if (getenv("TEST_VERBOSE"))
        print_message("  peak RSS grew by %ld KiB\n", grew);
    if (grew >= 16 * 1024)
        fail_msg("peak RSS grew by %ld KiB streaming 1,000,000 rows", grew);
}

static void test_early_stop(void **state)
{
    fx *f = *state;
    counter c = {.stop_after = 10};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    coffer_status st = f->ops->query_target(f->in, NULL, "SELECT seq FROM seq_1_to_50000000", count_row, &c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(st, COFFER_OK);
    assert_int_equal(c.rows, 10);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (secs > 10)
        fail_msg("stopping early took %.1f s: the rest was read", secs);
    char out[64];
    for (int i = 0; i < 100; i++) {
        admin("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%seq_1_to_50000000%'"
              " AND ID <> CONNECTION_ID()",
              out, sizeof out);
        if (strcmp(out, "0") == 0)
            break;
        usleep(100000);
    }
    assert_string_equal(out, "0");
    /* The server is fine afterwards. */
    counter d = {0};
    assert_int_equal(f->ops->query_target(f->in, NULL, "SELECT 1", count_row, &d), COFFER_OK);
    assert_int_equal(d.rows, 1);
}

static void test_cancelled(void **state)
{
    fx *f = *state;
    f->mh.cancel = 1;
    counter c = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    coffer_status st = f->ops->query_target(f->in, NULL, "SELECT SLEEP(30)", count_row, &c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    f->mh.cancel = 0;
    assert_int_equal(st, COFFER_ERR_CANCELLED);
    assert_true(t1.tv_sec - t0.tv_sec < 10);
}

static void test_refused(void **state)
{
    fx *f = *state;
    admin("CREATE TABLE IF NOT EXISTS app.t (x INT); DELETE FROM app.t; INSERT INTO app.t VALUES (7)", NULL, 0);
    counter c = {0};
    assert_int_equal(f->ops->query_target(f->in, NULL, "SELEKT 1", count_row, &c), COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "SQL syntax"));
    show(f);
    assert_non_null(strstr(f->mh.last_error, "127.0.0.1"));
    assert_int_equal(f->ops->query_target(f->in, NULL, "SELECT nosuchcol FROM nosuchtable", count_row, &c),
                     COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "nosuchtable"));
    assert_int_equal(f->ops->query_target(f->in, NULL, "CREATE TABLE sneaky (x INT)", count_row, &c),
                     COFFER_ERR_INVALID);
    assert_int_equal(f->ops->query_target(f->in, NULL, "DROP TABLE t", count_row, &c), COFFER_ERR_INVALID);
    assert_int_equal(f->ops->query_target(f->in, NULL, "INSERT INTO t VALUES (8)", count_row, &c), COFFER_ERR_INVALID);
    assert_int_equal(f->ops->query(f->in, "DELETE FROM t", count_row, &c), COFFER_ERR_INVALID);
    char outfile[600];
    snprintf(outfile, sizeof outfile, "SELECT x FROM t INTO OUTFILE '%s/leak.txt'", srvdir);
    assert_int_equal(f->ops->query_target(f->in, NULL, outfile, count_row, &c), COFFER_ERR_INVALID);
    assert_int_equal(f->ops->query_target(f->in, NULL, "SELECT 1; DROP TABLE t", count_row, &c), COFFER_ERR_INVALID);
    assert_int_equal(f->ops->query_target(f->in, NULL, "", count_row, &c), COFFER_ERR_INVALID);
    assert_int_equal(c.rows, 0);
    char path[700];
    snprintf(path, sizeof path, "%s/leak.txt", srvdir);
    assert_int_not_equal(access(path, F_OK), 0);
    char out[64];
    admin("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'app' AND TABLE_NAME = 'sneaky'", out,
          sizeof out);
    assert_string_equal(out, "0");
    admin("SELECT GROUP_CONCAT(x) FROM app.t", out, sizeof out);
    assert_string_equal(out, "7");
}

static void test_scratch_roundtrip(void **state)
{
    fx *f = *state;
    assert_int_equal(admin("DROP TABLE IF EXISTS app.t; DROP TABLE IF EXISTS app.files;"
                           " CREATE TABLE app.files (id INT PRIMARY KEY, path VARCHAR(200), size BIGINT);"
                           " INSERT INTO app.files SELECT seq, CONCAT('data/uploads/f', seq),"
                           " IF(seq % 5 = 0, NULL, seq * 10) FROM app.seq_1_to_5000",
                           NULL, 0),
                     0);
    memdump d;
    memdump_init(&d);
    assert_int_equal(f->ops->dump(f->in, &d.sink), COFFER_OK);

    const char *name = "coffer_rehearse_abcd1234_0a1b2c3d";
    admin("DROP DATABASE IF EXISTS coffer_rehearse_abcd1234_0a1b2c3d", NULL, 0);
    char target[1024];
    assert_int_equal(f->ops->scratch_create(f->in, NULL, name, target, sizeof target), COFFER_OK);
    char want[300];
    snprintf(want, sizeof want, "mysql://coffer@127.0.0.1:%s/%s", my_port, name);
    assert_string_equal(target, want);

    coffer_restore_opts o = {.struct_size = sizeof o, .root = f->mh.tmpdir, .target = target, .create = 1};
    assert_int_equal(f->ops->restore(f->in, &d.src, &o), COFFER_OK);
    assert_int_equal(f->ops->verify(f->in, &d.src, &o, NULL, NULL), COFFER_OK);
    counter c = {0};
    assert_int_equal(f->ops->query_target(f->in, &o, "SELECT id, size FROM files ORDER BY id", count_row, &c),
                     COFFER_OK);
    assert_int_equal(c.rows, 5000);
    assert_int_equal(c.nulls, 1000);
    counter cur = {0};
    assert_int_equal(f->ops->query_target(f->in, &o, "SELECT DATABASE() FROM DUAL WHERE DATABASE() = "
                                                     "'coffer_rehearse_abcd1234_0a1b2c3d'",
                                          count_row, &cur),
                     COFFER_OK);
    assert_int_equal(cur.rows, 1);
    assert_int_equal(f->ops->restore(f->in, &d.src, &o), COFFER_ERR_EXISTS);

    assert_int_equal(f->ops->scratch_drop(f->in, NULL, name), COFFER_OK);
    char out[64];
    admin("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'coffer\\_rehearse\\_%'", out,
          sizeof out);
    assert_string_equal(out, "0");
    assert_int_equal(f->ops->scratch_drop(f->in, NULL, name), COFFER_OK);
    memdump_free(&d);
}

/* Another server by URL: its own credentials (password_env), carried in
 * the target so restore and query_target use them too. */
static void test_scratch_other_server(void **state)
{
    fx *f = *state;
    char sql[600];
    snprintf(sql, sizeof sql,
             "DROP USER IF EXISTS 'rehearser'@'127.0.0.1'; CREATE USER 'rehearser'@'127.0.0.1' IDENTIFIED BY "
             "'other-pw-9';"
             " GRANT ALL ON `coffer\\_rehearse\\_%%`.* TO 'rehearser'@'127.0.0.1'");
    assert_int_equal(admin(sql, NULL, 0), 0);
    setenv("COFFER_TEST_MYREH_OTHER", "other-pw-9", 1);
    char server[300];
    snprintf(server, sizeof server, "mysql://rehearser@127.0.0.1:%s/ignored?password_env=COFFER_TEST_MYREH_OTHER",
             my_port);
    const char *name = "coffer_rehearse_other_1";
    char target[1024];
    assert_int_equal(f->ops->scratch_create(f->in, server, name, target, sizeof target), COFFER_OK);
    char want[300];
    snprintf(want, sizeof want, "mysql://rehearser@127.0.0.1:%s/%s?password_env=COFFER_TEST_MYREH_OTHER", my_port,
             name);
    assert_string_equal(target, want);
    coffer_restore_opts o = {.struct_size = sizeof o, .root = f->mh.tmpdir, .target = target};
    counter c = {0};
    assert_int_equal(f->ops->query_target(f->in, &o, "SELECT CURRENT_USER()", count_row, &c), COFFER_OK);
    assert_int_equal(c.rows, 1);
    char tiny[16];
    assert_int_equal(f->ops->scratch_create(f->in, server, "coffer_rehearse_other_2", tiny, sizeof tiny),
                     COFFER_ERR_INVALID);
    assert_int_equal(f->ops->scratch_drop(f->in, server, name), COFFER_OK);
    char out[64];
    admin("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'coffer\\_rehearse\\_other%'", out,
          sizeof out);
    assert_string_equal(out, "0");
    assert_null(strstr(f->mh.last_error, "other-pw-9"));
    assert_null(strstr(f->mh.log, "other-pw-9"));
    admin("DROP USER 'rehearser'@'127.0.0.1'", NULL, 0);
    unsetenv("COFFER_TEST_MYREH_OTHER");
}

static void test_scratch_exists(void **state)
{
    fx *f = *state;
    admin("DROP DATABASE IF EXISTS coffer_rehearse_taken; CREATE DATABASE coffer_rehearse_taken;"
          " CREATE TABLE coffer_rehearse_taken.keep (x INT); INSERT INTO coffer_rehearse_taken.keep VALUES (42)",
          NULL, 0);
    char target[1024] = "";
    assert_int_equal(f->ops->scratch_create(f->in, NULL, "coffer_rehearse_taken", target, sizeof target),
                     COFFER_ERR_EXISTS);
    assert_non_null(strstr(f->mh.last_error, "coffer_rehearse_taken"));
    assert_string_equal(target, "");
    char out[64];
    admin("SELECT x FROM coffer_rehearse_taken.keep", out, sizeof out);
    assert_string_equal(out, "42");
    admin("DROP DATABASE coffer_rehearse_taken", NULL, 0);
}

static void test_scratch_bad_names(void **state)
{
    fx *f = *state;
    const char *bad[] = {"app", "mysql", "coffer_rehearse_", "Coffer_rehearse_x", "coffer_rehearse_X",
                         "coffer_rehearse_a-b", "coffer_rehearse_a`; DROP DATABASE app; --",
                         "coffer_rehearse_0123456789012345678901234567890123456789012345678", "", NULL};
    char target[1024];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(f->ops->scratch_create(f->in, NULL, bad[i], target, sizeof target), COFFER_ERR_INVALID);
        assert_int_equal(f->ops->scratch_drop(f->in, NULL, bad[i]), COFFER_ERR_INVALID);
    }
    assert_true(dbmysql_scratch_name_ok("coffer_rehearse_01234567890123456789012345678901234567890123456"));
    assert_false(dbmysql_scratch_name_ok("coffer_rehearse_012345678901234567890123456789012345678901234567"));
    char out[64];
    admin("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'app'", out, sizeof out);
    assert_string_equal(out, "1");
}

static void test_scratch_no_create(void **state)
{
    fx *f = *state;
    assert_int_equal(admin("DROP USER IF EXISTS 'nocreate'@'127.0.0.1'; CREATE USER 'nocreate'@'127.0.0.1' "
                           "IDENTIFIED BY 'nc-pw-5'; GRANT SELECT ON app.* TO 'nocreate'@'127.0.0.1'",
                           NULL, 0),
                     0);
    char pwfile[600];
    snprintf(pwfile, sizeof pwfile, "%s/nc.pw", srvdir);
    FILE *fp = fopen(pwfile, "w");
    fprintf(fp, "nc-pw-5\n");
    fclose(fp);
    char server[900];
    snprintf(server, sizeof server, "mysql://nocreate@127.0.0.1:%s/?password_file=%s", my_port, pwfile);
    char target[1024];
    assert_int_equal(f->ops->scratch_create(f->in, server, "coffer_rehearse_denied", target, sizeof target),
                     COFFER_ERR_AUTH);
    char where[100];
    snprintf(where, sizeof where, "nocreate@127.0.0.1:%s", my_port);
    show(f);
    assert_non_null(strstr(f->mh.last_error, where));
    assert_non_null(strstr(f->mh.last_error, "CREATE privilege"));
    assert_null(strstr(f->mh.last_error, "nc-pw-5"));
    /* Dropping: AUTH as well, nothing dropped. */
    admin("CREATE DATABASE IF NOT EXISTS coffer_rehearse_denied", NULL, 0);
    assert_int_equal(f->ops->scratch_drop(f->in, server, "coffer_rehearse_denied"), COFFER_ERR_AUTH);
    assert_null(strstr(f->mh.last_error, "nc-pw-5"));
    char out[64];
    admin("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'coffer_rehearse_denied'", out,
          sizeof out);
    assert_string_equal(out, "1");
    admin("DROP DATABASE coffer_rehearse_denied; DROP USER 'nocreate'@'127.0.0.1'", NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_abi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_url_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancelled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scratch_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scratch_other_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scratch_exists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scratch_bad_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scratch_no_create, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
