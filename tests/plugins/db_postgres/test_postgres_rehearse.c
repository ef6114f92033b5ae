/*
 * database "postgres" against a real PostgreSQL (tests/tools/pg_server.sh,
 * label "server"): query_target streaming (many rows, bounded memory,
 * early stop, NULLs, refused statements) and scratch databases (create,
 * restore into, query, drop; taken names, bad names, a role without
 * CREATEDB), never a password in a message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "db_postgres.h"
#include "pg_server.h"

static int group_setup(void **state)
{
    (void)state;
    return pgsrv_start("pgreh", "COFFER_TEST_PGREH_PW");
}

static int group_teardown(void **state)
{
    (void)state;
    return pgsrv_stop();
}

static int setup(void **state)
{
    *state = pgsrv_fx_new("COFFER_TEST_PGREH_PW");
    return 0;
}

static void test_abi(void **state)
{
    db_fx *f = *state;
    assert_true(f->ops->struct_size >=
                offsetof(coffer_database_ops, scratch_drop) + sizeof(void *));
    assert_non_null(f->ops->query_target);
    assert_non_null(f->ops->scratch_create);
    assert_non_null(f->ops->scratch_drop);
}

static void test_stream_many(void **state)
{
    db_fx *f = *state;
    db_rows c = {0};
    coffer_status st = f->ops->query_target(f->in, NULL,
                                            "SELECT g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'row ' "
                                            "|| g END FROM generate_series(1, 200000) g",
                                            db_rows_count, &c);
    assert_int_equal(st, COFFER_OK);
    assert_int_equal(c.rows, 200000);
    assert_int_equal(c.ncols, 2);
    assert_int_equal(c.nulls, 66666);
    assert_int_equal(c.sum, 200000L * 200001L / 2);
    /* The 1.0 query takes the same path. */
    db_rows d = {0};
    assert_int_equal(f->ops->query(f->in, "SELECT NULL::text, 1", db_rows_count, &d), COFFER_OK);
    assert_int_equal(d.rows, 1);
    assert_int_equal(d.nulls, 1);
    /* No rows at all. */
    db_rows e = {0};
    assert_int_equal(f->ops->query_target(f->in, NULL, "SELECT 1 WHERE false", db_rows_count, &e),
                     COFFER_OK);
    assert_int_equal(e.rows, 0);
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
        f->in, NULL, "SELECT g, repeat('x', 100) FROM generate_series(1, 1000000) g", db_rows_count,
        &c);
    assert_int_equal(st, COFFER_OK);
    assert_int_equal(c.rows, 1000000);
    long grew = maxrss_kib() - before;
    if (getenv("TEST_VERBOSE"))
        print_message("  peak RSS grew by %ld KiB\n", grew);
    /* The whole result is over 100 MB; held at once it would show. */
    if (grew >= 16 * 1024)
        fail_msg("peak RSS grew by %ld KiB streaming 1,000,000 rows", grew);
}

static void test_early_stop(void **state)
{
    db_fx *f = *state;
    db_rows c = {.stop_after = 10};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    coffer_status st = f->ops->query_target(
        f->in, NULL, "SELECT g FROM generate_series(1, 50000000) g", db_rows_count, &c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(st, COFFER_OK);
    assert_int_equal(c.rows, 10);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (secs > 10)
        fail_msg("stopping early took %.1f s: the rest was read", secs);
    /* No session of ours is left running the statement. */
    char out[64];
    for (int i = 0; i < 50; i++) {
        pgsrv_admin("postgres",
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%generate_series(1, "
                    "50000000)%' "
                    "AND pid <> pg_backend_pid()",
                    out, sizeof out);
        if (strcmp(out, "0") == 0)
            break;
        usleep(100000);
    }
    assert_string_equal(out, "0");
}

static void test_cancelled(void **state)
{
    db_fx *f = *state;
    f->mh.cancel = 1;
    db_rows c = {0};
    coffer_status st = f->ops->query_target(f->in, NULL, "SELECT pg_sleep(30)", db_rows_count, &c);
    f->mh.cancel = 0;
    assert_int_equal(st, COFFER_ERR_CANCELLED);
}

static void test_refused(void **state)
{
    db_fx *f = *state;
    db_rows c = {0};
    assert_int_equal(f->ops->query_target(f->in, NULL, "SELEKT 1", db_rows_count, &c),
                     COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "syntax error"));
    db_fx_show(f);
    assert_non_null(strstr(f->mh.last_error, "127.0.0.1"));
    assert_int_equal(
        f->ops->query_target(f->in, NULL, "SELECT nosuchcol FROM nosuchtable", db_rows_count, &c),
        COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "nosuchtable"));
    assert_int_equal(
        f->ops->query_target(f->in, NULL, "CREATE TABLE sneaky (x int)", db_rows_count, &c),
        COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "read-only"));
    assert_int_equal(f->ops->query_target(f->in, NULL, "SELECT 1; CREATE TABLE sneaky (x int)",
                                          db_rows_count, &c),
                     COFFER_ERR_INVALID);
    assert_int_equal(f->ops->query(f->in, "DROP TABLE IF EXISTS anything", db_rows_count, &c),
                     COFFER_ERR_INVALID);
    assert_int_equal(f->ops->query_target(f->in, NULL, "", db_rows_count, &c), COFFER_ERR_INVALID);
    char out[64];
    pgsrv_admin("asterdrive", "SELECT count(*) FROM pg_class WHERE relname = 'sneaky'", out,
                sizeof out);
    assert_string_equal(out, "0");
    assert_int_equal(c.rows, 0);
}

/* Scratch: create, restore a dump of the application's database into it,
 * verify and query it there, drop it. */
static void test_scratch_roundtrip(void **state)
{
    db_fx *f = *state;
    assert_int_equal(
        pgsrv_admin(
            "asterdrive",
            "SET ROLE asterdrive; DROP TABLE IF EXISTS files;"
            " CREATE TABLE files (id int PRIMARY KEY, path text, size bigint);"
            " INSERT INTO files SELECT g, 'data/uploads/f' || g, CASE WHEN g % 5 = 0 THEN NULL"
            " ELSE g * 10 END FROM generate_series(1, 5000) g",
            NULL, 0),
        0);
    memdump d;
    memdump_init(&d);
    assert_int_equal(f->ops->dump(f->in, &d.sink), COFFER_OK);

    const char *name = "coffer_rehearse_abcd1234_0a1b2c3d";
    pgsrv_admin("postgres", "DROP DATABASE IF EXISTS coffer_rehearse_abcd1234_0a1b2c3d", NULL, 0);
    char target[1024];
    assert_int_equal(f->ops->scratch_create(f->in, NULL, name, target, sizeof target), COFFER_OK);
    char want[300];
    snprintf(want, sizeof want, "postgres://asterdrive@127.0.0.1:%s/%s", pgsrv_port, name);
    assert_string_equal(target, want);
    assert_null(strstr(target, pgsrv_password));

    /* Into the fresh, empty database: no --force needed. */
    coffer_restore_opts o = {
        .struct_size = sizeof o, .root = f->mh.tmpdir, .target = target, .create = 1};
    assert_int_equal(f->ops->restore(f->in, &d.src, &o), COFFER_OK);
    assert_int_equal(f->ops->verify(f->in, &d.src, &o, NULL, NULL), COFFER_OK);
    db_rows c = {0};
    assert_int_equal(f->ops->query_target(f->in, &o, "SELECT id, size FROM files ORDER BY id",
                                          db_rows_count, &c),
                     COFFER_OK);
    assert_int_equal(c.rows, 5000);
    assert_int_equal(c.nulls, 1000);
    db_rows cur = {0};
    assert_int_equal(
        f->ops->query_target(f->in, &o,
                             "SELECT current_database() = 'coffer_rehearse_abcd1234_0a1b2c3d'",
                             db_rows_count, &cur),
        COFFER_OK);
    assert_int_equal(cur.rows, 1);

    /* A second restore into it now needs --force, as for any database. */
    assert_int_equal(f->ops->restore(f->in, &d.src, &o), COFFER_ERR_EXISTS);

    /* Drop even while another session is connected to it. */
    char dsn[400];
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%s user=asterdrive dbname=%s password=%s",
             pgsrv_port, name, pgsrv_password);
    PGconn *other = PQconnectdb(dsn);
    assert_int_equal(PQstatus(other), CONNECTION_OK);
    assert_int_equal(f->ops->scratch_drop(f->in, NULL, name), COFFER_OK);
    PQfinish(other);
    char out[64];
    pgsrv_admin("postgres",
                "SELECT count(*) FROM pg_database WHERE datname LIKE 'coffer_rehearse_%'", out,
                sizeof out);
    assert_string_equal(out, "0");
    /* Gone already: not an error. */
    assert_int_equal(f->ops->scratch_drop(f->in, NULL, name), COFFER_OK);
    memdump_free(&d);
}

/* Another server named by URL (here the same one, with another database
 * part and a parameter that must survive); its database part is ignored. */
static void test_scratch_other_server(void **state)
{
    db_fx *f = *state;
    char server[300];
    snprintf(server, sizeof server,
             "postgresql://asterdrive@127.0.0.1:%s/ignored?sslmode=disable&connect_timeout=5",
             pgsrv_port);
    const char *name = "coffer_rehearse_other_1";
    char target[1024];
    assert_int_equal(f->ops->scratch_create(f->in, server, name, target, sizeof target), COFFER_OK);
    assert_null(strstr(target, "ignored"));
    assert_non_null(strstr(target, "/coffer_rehearse_other_1?"));
    assert_non_null(strstr(target, "sslmode=disable"));
    coffer_restore_opts o = {.struct_size = sizeof o, .root = f->mh.tmpdir, .target = target};
    db_rows c = {0};
    assert_int_equal(
        f->ops->query_target(f->in, &o, "SELECT current_database()", db_rows_count, &c), COFFER_OK);
    assert_int_equal(c.rows, 1);
    /* Too small a buffer: refused before anything is created. */
    char tiny[16];
    assert_int_equal(
        f->ops->scratch_create(f->in, server, "coffer_rehearse_other_2", tiny, sizeof tiny),
        COFFER_ERR_INVALID);
    assert_int_equal(f->ops->scratch_drop(f->in, server, name), COFFER_OK);
    char out[64];
    pgsrv_admin("postgres",
                "SELECT count(*) FROM pg_database WHERE datname LIKE 'coffer_rehearse_other%'", out,
                sizeof out);
    assert_string_equal(out, "0");
}

static void test_scratch_exists(void **state)
{
    db_fx *f = *state;
    pgsrv_admin(
        "postgres",
        "DROP DATABASE IF EXISTS coffer_rehearse_taken; CREATE DATABASE coffer_rehearse_taken",
        NULL, 0);
    pgsrv_admin("coffer_rehearse_taken", "CREATE TABLE keep (x int); INSERT INTO keep VALUES (42)",
                NULL, 0);
    char target[1024] = "";
    assert_int_equal(
        f->ops->scratch_create(f->in, NULL, "coffer_rehearse_taken", target, sizeof target),
        COFFER_ERR_EXISTS);
    assert_non_null(strstr(f->mh.last_error, "coffer_rehearse_taken"));
    assert_string_equal(target, "");
    char out[64];
    pgsrv_admin("coffer_rehearse_taken", "SELECT x FROM keep", out, sizeof out);
    assert_string_equal(out, "42");
    pgsrv_admin("postgres", "DROP DATABASE coffer_rehearse_taken", NULL, 0);
}

static void test_scratch_bad_names(void **state)
{
    db_fx *f = *state;
    const char *bad[] = {"asterdrive",
                         "postgres",
                         "coffer_rehearse_",
                         "Coffer_rehearse_x",
                         "coffer_rehearse_X",
                         "coffer_rehearse_a-b",
                         "coffer_rehearse_a\"; DROP DATABASE asterdrive; --",
                         "coffer_rehearse_0123456789012345678901234567890123456789012345678",
                         "",
                         NULL};
    char target[1024];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(f->ops->scratch_create(f->in, NULL, bad[i], target, sizeof target),
                         COFFER_ERR_INVALID);
        assert_int_equal(f->ops->scratch_drop(f->in, NULL, bad[i]), COFFER_ERR_INVALID);
    }
    /* 63 bytes is the limit. */
    assert_true(
        coffer_scratch_name_valid("coffer_rehearse_01234567890123456789012345678901234567890123456"));
    assert_false(
        coffer_scratch_name_valid("coffer_rehearse_012345678901234567890123456789012345678901234567"));
    char out[64];
    pgsrv_admin("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'asterdrive'", out,
                sizeof out);
    assert_string_equal(out, "1");
}

static void test_scratch_no_createdb(void **state)
{
    db_fx *f = *state;
    char sql[400];
    snprintf(sql, sizeof sql,
             "DROP ROLE IF EXISTS nocreate; CREATE ROLE nocreate LOGIN NOCREATEDB PASSWORD '%s'",
             pgsrv_password);
    assert_int_equal(pgsrv_admin("postgres", sql, NULL, 0), 0);
    char server[300];
    snprintf(server, sizeof server, "postgres://nocreate@127.0.0.1:%s/postgres", pgsrv_port);
    char target[1024];
    assert_int_equal(
        f->ops->scratch_create(f->in, server, "coffer_rehearse_denied", target, sizeof target),
        COFFER_ERR_AUTH);
    char where[100];
    snprintf(where, sizeof where, "nocreate@127.0.0.1:%s", pgsrv_port);
    db_fx_show(f);
    assert_non_null(strstr(f->mh.last_error, where));
    assert_non_null(strstr(f->mh.last_error, "CREATEDB"));
    /* A password in the server URL is used, never shown. */
    snprintf(server, sizeof server, "postgres://nocreate:%s@127.0.0.1:%s/postgres", pgsrv_password,
             pgsrv_port);
    assert_int_equal(
        f->ops->scratch_create(f->in, server, "coffer_rehearse_denied", target, sizeof target),
        COFFER_ERR_AUTH);
    assert_non_null(strstr(f->mh.last_error, "CREATEDB"));
    /* Wrong password: AUTH too. */
    snprintf(server, sizeof server, "postgres://nocreate:wrong-pw@127.0.0.1:%s/postgres",
             pgsrv_port);
    assert_int_equal(
        f->ops->scratch_create(f->in, server, "coffer_rehearse_denied", target, sizeof target),
        COFFER_ERR_AUTH);
    assert_null(strstr(f->mh.last_error, "wrong-pw"));
    pgsrv_admin("postgres", "DROP ROLE nocreate", NULL, 0);
}

static void test_uri(void **state)
{
    db_fx *f = *state;
    pgd_instance *in = f->in;
    pgd_params p;
    char *pw = NULL;
    assert_int_equal(
        pgd_params_parse(in, "t",
                         "host=/var/run/postgresql port=5433 user='a b' password=x sslmode=require",
                         &p, &pw, NULL),
        COFFER_OK);
    char *u = pgd_params_uri(&p, "coffer_rehearse_x");
    assert_string_equal(
        u, "postgres://a%20b@/"
           "coffer_rehearse_x?host=%2Fvar%2Frun%2Fpostgresql&port=5433&sslmode=require");
    pgd_params q;
    char *pw2 = NULL;
    assert_int_equal(pgd_params_parse(in, "t", u, &q, &pw2, NULL), COFFER_OK);
    assert_null(pw2);
    assert_string_equal(pgd_params_get(&q, "host"), "/var/run/postgresql");
    assert_string_equal(pgd_params_get(&q, "user"), "a b");
    assert_string_equal(pgd_params_get(&q, "dbname"), "coffer_rehearse_x");
    assert_string_equal(pgd_params_get(&q, "port"), "5433");
    free(u);
    free(pw);
    pgd_params_free(&p);
    pgd_params_free(&q);
    assert_int_equal(pgd_params_parse(in, "t", "postgres://u@[::1]:5432/db", &p, &pw, NULL),
                     COFFER_OK);
    u = pgd_params_uri(&p, "coffer_rehearse_y");
    assert_string_equal(u, "postgres://u@[::1]:5432/coffer_rehearse_y");
    free(u);
    pgd_params_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_abi, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_uri, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_stream_many, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_memory_bounded, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_early_stop, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_cancelled, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_scratch_roundtrip, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_scratch_other_server, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_scratch_exists, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_scratch_bad_names, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_scratch_no_createdb, setup, db_fx_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
