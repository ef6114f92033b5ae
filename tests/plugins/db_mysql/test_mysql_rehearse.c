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
#include <time.h>
#include <unistd.h>

#include "db_mysql.h"
#include "mysql_server.h"

static int group_setup(void **state)
{
    (void)state;
    return mysrv_start("myreh", "COFFER_TEST_MYREH_PW");
}

static int group_teardown(void **state)
{
    (void)state;
    return mysrv_stop();
}

static int setup(void **state)
{
    *state = mysrv_fx_new("COFFER_TEST_MYREH_PW", 0);
    return 0;
}

static void test_abi(void **state)
{
    db_fx *f = *state;
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
    db_fx *f = *state;
    db_rows c = {0};
    coffer_status st = f->ops->query_target(
        f->in, NULL, "SELECT seq, IF(seq % 3 = 0, NULL, CONCAT('row ', seq)) FROM seq_1_to_200000",
        db_rows_count, &c);
    assert_int_equal(st, COFFER_OK);
    assert_int_equal(c.rows, 200000);
    assert_int_equal(c.ncols, 2);
    assert_int_equal(c.nulls, 66666);
    assert_int_equal(c.sum, 200000L * 200001L / 2);
    db_rows r = {0};
    assert_int_equal(
        f->ops->query_target(
            f->in, NULL,
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 1000)"
            " SELECT n FROM s",
            db_rows_count, &r),
        COFFER_OK);
    assert_int_equal(r.rows, 1000);
    db_rows d = {0};
    assert_int_equal(f->ops->query(f->in, "SELECT NULL, 1", db_rows_count, &d), COFFER_OK);
    assert_int_equal(d.rows, 1);
    assert_int_equal(d.nulls, 1);
    db_rows e = {0};
    assert_int_equal(
        f->ops->query_target(f->in, NULL, "SELECT 1 FROM DUAL WHERE 1 = 0", db_rows_count, &e),
        COFFER_OK);
    assert_int_equal(e.rows, 0);
    db_rows g = {0};
    assert_int_equal(f->ops->query_target(f->in, NULL, "SHOW DATABASES", db_rows_count, &g),
                     COFFER_OK);
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
    db_fx *f = *state;
    long before = maxrss_kib();
    db_rows c = {0};
    coffer_status st = f->ops->query_target(
        f->in, NULL, "SELECT seq, REPEAT('x', 100) FROM seq_1_to_1000000", db_rows_count, &c);
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
    db_fx *f = *state;
    db_rows c = {.stop_after = 10};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    coffer_status st =
        f->ops->query_target(f->in, NULL, "SELECT seq FROM seq_1_to_50000000", db_rows_count, &c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(st, COFFER_OK);
    assert_int_equal(c.rows, 10);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (secs > 10)
        fail_msg("stopping early took %.1f s: the rest was read", secs);
    char out[64];
    for (int i = 0; i < 100; i++) {
        mysrv_admin("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE "
                    "'%seq_1_to_50000000%'"
                    " AND ID <> CONNECTION_ID()",
                    out, sizeof out);
        if (strcmp(out, "0") == 0)
            break;
        usleep(100000);
    }
    assert_string_equal(out, "0");
    /* The server is fine afterwards. */
    db_rows d = {0};
    assert_int_equal(f->ops->query_target(f->in, NULL, "SELECT 1", db_rows_count, &d), COFFER_OK);
    assert_int_equal(d.rows, 1);
}

static void test_cancelled(void **state)
{
    db_fx *f = *state;
    f->mh.cancel = 1;
    db_rows c = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    coffer_status st = f->ops->query_target(f->in, NULL, "SELECT SLEEP(30)", db_rows_count, &c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    f->mh.cancel = 0;
    assert_int_equal(st, COFFER_ERR_CANCELLED);
    assert_true(t1.tv_sec - t0.tv_sec < 10);
}

static void test_refused(void **state)
{
    db_fx *f = *state;
    mysrv_admin(
        "CREATE TABLE IF NOT EXISTS app.t (x INT); DELETE FROM app.t; INSERT INTO app.t VALUES (7)",
        NULL, 0);
    db_rows c = {0};
    assert_int_equal(f->ops->query_target(f->in, NULL, "SELEKT 1", db_rows_count, &c),
                     COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "SQL syntax"));
    db_fx_show(f);
    assert_non_null(strstr(f->mh.last_error, "127.0.0.1"));
    assert_int_equal(
        f->ops->query_target(f->in, NULL, "SELECT nosuchcol FROM nosuchtable", db_rows_count, &c),
        COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "nosuchtable"));
    assert_int_equal(
        f->ops->query_target(f->in, NULL, "CREATE TABLE sneaky (x INT)", db_rows_count, &c),
        COFFER_ERR_INVALID);
    assert_int_equal(f->ops->query_target(f->in, NULL, "DROP TABLE t", db_rows_count, &c),
                     COFFER_ERR_INVALID);
    assert_int_equal(
        f->ops->query_target(f->in, NULL, "INSERT INTO t VALUES (8)", db_rows_count, &c),
        COFFER_ERR_INVALID);
    assert_int_equal(f->ops->query(f->in, "DELETE FROM t", db_rows_count, &c), COFFER_ERR_INVALID);
    char outfile[600];
    snprintf(outfile, sizeof outfile, "SELECT x FROM t INTO OUTFILE '%s/leak.txt'", mysrv_dir);
    assert_int_equal(f->ops->query_target(f->in, NULL, outfile, db_rows_count, &c),
                     COFFER_ERR_INVALID);
    assert_int_equal(f->ops->query_target(f->in, NULL, "SELECT 1; DROP TABLE t", db_rows_count, &c),
                     COFFER_ERR_INVALID);
    assert_int_equal(f->ops->query_target(f->in, NULL, "", db_rows_count, &c), COFFER_ERR_INVALID);
    assert_int_equal(c.rows, 0);
    char path[700];
    snprintf(path, sizeof path, "%s/leak.txt", mysrv_dir);
    assert_int_not_equal(access(path, F_OK), 0);
    char out[64];
    mysrv_admin("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'app' AND "
                "TABLE_NAME = 'sneaky'",
                out, sizeof out);
    assert_string_equal(out, "0");
    mysrv_admin("SELECT GROUP_CONCAT(x) FROM app.t", out, sizeof out);
    assert_string_equal(out, "7");
}

static void test_scratch_roundtrip(void **state)
{
    db_fx *f = *state;
    assert_int_equal(
        mysrv_admin("DROP TABLE IF EXISTS app.t; DROP TABLE IF EXISTS app.files;"
                    " CREATE TABLE app.files (id INT PRIMARY KEY, path VARCHAR(200), size BIGINT);"
                    " INSERT INTO app.files SELECT seq, CONCAT('data/uploads/f', seq),"
                    " IF(seq % 5 = 0, NULL, seq * 10) FROM app.seq_1_to_5000",
                    NULL, 0),
        0);
    memdump d;
    memdump_init(&d);
    assert_int_equal(f->ops->dump(f->in, &d.sink), COFFER_OK);

    const char *name = "coffer_rehearse_abcd1234_0a1b2c3d";
    mysrv_admin("DROP DATABASE IF EXISTS coffer_rehearse_abcd1234_0a1b2c3d", NULL, 0);
    char target[1024];
    assert_int_equal(f->ops->scratch_create(f->in, NULL, name, target, sizeof target), COFFER_OK);
    char want[300];
    snprintf(want, sizeof want, "mysql://coffer@127.0.0.1:%s/%s", mysrv_port, name);
    assert_string_equal(target, want);

    coffer_restore_opts o = {.struct_size = sizeof o, .root = f->mh.tmpdir, .target = target, .create = 1};
    assert_int_equal(f->ops->restore(f->in, &d.src, &o), COFFER_OK);
    assert_int_equal(f->ops->verify(f->in, &d.src, &o, NULL, NULL), COFFER_OK);
    db_rows c = {0};
    assert_int_equal(f->ops->query_target(f->in, &o, "SELECT id, size FROM files ORDER BY id",
                                          db_rows_count, &c),
                     COFFER_OK);
    assert_int_equal(c.rows, 5000);
    assert_int_equal(c.nulls, 1000);
    db_rows cur = {0};
    assert_int_equal(f->ops->query_target(f->in, &o,
                                          "SELECT DATABASE() FROM DUAL WHERE DATABASE() = "
                                          "'coffer_rehearse_abcd1234_0a1b2c3d'",
                                          db_rows_count, &cur),
                     COFFER_OK);
    assert_int_equal(cur.rows, 1);
    assert_int_equal(f->ops->restore(f->in, &d.src, &o), COFFER_ERR_EXISTS);

    assert_int_equal(f->ops->scratch_drop(f->in, NULL, name), COFFER_OK);
    char out[64];
    mysrv_admin("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE "
                "'coffer\\_rehearse\\_%'",
                out, sizeof out);
    assert_string_equal(out, "0");
    assert_int_equal(f->ops->scratch_drop(f->in, NULL, name), COFFER_OK);
    memdump_free(&d);
}

/* Another server by URL: its own credentials (password_env), carried in
 * the target so restore and query_target use them too. */
static void test_scratch_other_server(void **state)
{
    db_fx *f = *state;
    char sql[600];
    snprintf(sql, sizeof sql,
             "DROP USER IF EXISTS 'rehearser'@'127.0.0.1'; CREATE USER 'rehearser'@'127.0.0.1' IDENTIFIED BY "
             "'other-pw-9';"
             " GRANT ALL ON `coffer\\_rehearse\\_%%`.* TO 'rehearser'@'127.0.0.1'");
    assert_int_equal(mysrv_admin(sql, NULL, 0), 0);
    setenv("COFFER_TEST_MYREH_OTHER", "other-pw-9", 1);
    char server[300];
    snprintf(server, sizeof server,
             "mysql://rehearser@127.0.0.1:%s/ignored?password_env=COFFER_TEST_MYREH_OTHER",
             mysrv_port);
    const char *name = "coffer_rehearse_other_1";
    char target[1024];
    assert_int_equal(f->ops->scratch_create(f->in, server, name, target, sizeof target), COFFER_OK);
    char want[300];
    snprintf(want, sizeof want,
             "mysql://rehearser@127.0.0.1:%s/%s?password_env=COFFER_TEST_MYREH_OTHER", mysrv_port,
             name);
    assert_string_equal(target, want);
    coffer_restore_opts o = {.struct_size = sizeof o, .root = f->mh.tmpdir, .target = target};
    db_rows c = {0};
    assert_int_equal(f->ops->query_target(f->in, &o, "SELECT CURRENT_USER()", db_rows_count, &c),
                     COFFER_OK);
    assert_int_equal(c.rows, 1);
    char tiny[16];
    assert_int_equal(f->ops->scratch_create(f->in, server, "coffer_rehearse_other_2", tiny, sizeof tiny),
                     COFFER_ERR_INVALID);
    assert_int_equal(f->ops->scratch_drop(f->in, server, name), COFFER_OK);
    char out[64];
    mysrv_admin("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE "
                "'coffer\\_rehearse\\_other%'",
                out, sizeof out);
    assert_string_equal(out, "0");
    assert_null(strstr(f->mh.last_error, "other-pw-9"));
    assert_null(strstr(f->mh.log, "other-pw-9"));
    mysrv_admin("DROP USER 'rehearser'@'127.0.0.1'", NULL, 0);
    unsetenv("COFFER_TEST_MYREH_OTHER");
}

static void test_scratch_exists(void **state)
{
    db_fx *f = *state;
    mysrv_admin(
        "DROP DATABASE IF EXISTS coffer_rehearse_taken; CREATE DATABASE coffer_rehearse_taken;"
        " CREATE TABLE coffer_rehearse_taken.keep (x INT); INSERT INTO coffer_rehearse_taken.keep "
        "VALUES (42)",
        NULL, 0);
    char target[1024] = "";
    assert_int_equal(f->ops->scratch_create(f->in, NULL, "coffer_rehearse_taken", target, sizeof target),
                     COFFER_ERR_EXISTS);
    assert_non_null(strstr(f->mh.last_error, "coffer_rehearse_taken"));
    assert_string_equal(target, "");
    char out[64];
    mysrv_admin("SELECT x FROM coffer_rehearse_taken.keep", out, sizeof out);
    assert_string_equal(out, "42");
    mysrv_admin("DROP DATABASE coffer_rehearse_taken", NULL, 0);
}

static void test_scratch_bad_names(void **state)
{
    db_fx *f = *state;
    const char *bad[] = {"app", "mysql", "coffer_rehearse_", "Coffer_rehearse_x", "coffer_rehearse_X",
                         "coffer_rehearse_a-b", "coffer_rehearse_a`; DROP DATABASE app; --",
                         "coffer_rehearse_0123456789012345678901234567890123456789012345678", "", NULL};
    char target[1024];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(f->ops->scratch_create(f->in, NULL, bad[i], target, sizeof target), COFFER_ERR_INVALID);
        assert_int_equal(f->ops->scratch_drop(f->in, NULL, bad[i]), COFFER_ERR_INVALID);
    }
    assert_true(coffer_scratch_name_valid("coffer_rehearse_01234567890123456789012345678901234567890123456"));
    assert_false(coffer_scratch_name_valid("coffer_rehearse_012345678901234567890123456789012345678901234567"));
    char out[64];
    mysrv_admin("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'app'", out,
                sizeof out);
    assert_string_equal(out, "1");
}

static void test_scratch_no_create(void **state)
{
    db_fx *f = *state;
    assert_int_equal(
        mysrv_admin(
            "DROP USER IF EXISTS 'nocreate'@'127.0.0.1'; CREATE USER 'nocreate'@'127.0.0.1' "
            "IDENTIFIED BY 'nc-pw-5'; GRANT SELECT ON app.* TO 'nocreate'@'127.0.0.1'",
            NULL, 0),
        0);
    char pwfile[600];
    snprintf(pwfile, sizeof pwfile, "%s/nc.pw", mysrv_dir);
    FILE *fp = fopen(pwfile, "w");
    fprintf(fp, "nc-pw-5\n");
    fclose(fp);
    char server[900];
    snprintf(server, sizeof server, "mysql://nocreate@127.0.0.1:%s/?password_file=%s", mysrv_port,
             pwfile);
    char target[1024];
    assert_int_equal(f->ops->scratch_create(f->in, server, "coffer_rehearse_denied", target, sizeof target),
                     COFFER_ERR_AUTH);
    char where[100];
    snprintf(where, sizeof where, "nocreate@127.0.0.1:%s", mysrv_port);
    db_fx_show(f);
    assert_non_null(strstr(f->mh.last_error, where));
    assert_non_null(strstr(f->mh.last_error, "CREATE privilege"));
    assert_null(strstr(f->mh.last_error, "nc-pw-5"));
    /* Dropping: AUTH as well, nothing dropped. */
    mysrv_admin("CREATE DATABASE IF NOT EXISTS coffer_rehearse_denied", NULL, 0);
    assert_int_equal(f->ops->scratch_drop(f->in, server, "coffer_rehearse_denied"), COFFER_ERR_AUTH);
    assert_null(strstr(f->mh.last_error, "nc-pw-5"));
    char out[64];
    mysrv_admin("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = "
                "'coffer_rehearse_denied'",
                out, sizeof out);
    assert_string_equal(out, "1");
    mysrv_admin("DROP DATABASE coffer_rehearse_denied; DROP USER 'nocreate'@'127.0.0.1'", NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_abi, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_url_format, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_stream_many, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_memory_bounded, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_early_stop, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_cancelled, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_scratch_roundtrip, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_scratch_other_server, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_scratch_exists, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_scratch_bad_names, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_scratch_no_create, setup, db_fx_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
