/*
 * database "postgres" against a real PostgreSQL (tests/tools/pg_server.sh,
 * label "server"): query_snapshot after a dump that kept its snapshot.
 * The live database changes after the dump; queries still answer as of
 * the dump, a failed statement leaves the snapshot usable, writes and
 * transaction control are refused, large results stream, and
 * instance_free ends the kept transaction and its session.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pg_server.h"

static int group_setup(void **state)
{
    (void)state;
    return pgsrv_start("pgsnap", "COFFER_TEST_PGSNAP_PW");
}

static int group_teardown(void **state)
{
    (void)state;
    return pgsrv_stop();
}

static int setup(void **state)
{
    db_fx *f = pgsrv_fx_new("COFFER_TEST_PGSNAP_PW");
    /* The application's tables: t (1000 rows, v = id % 10), big (200,000). */
    assert_int_equal(pgsrv_admin("asterdrive",
                                 "SET ROLE asterdrive; DROP TABLE IF EXISTS t, big;"
                                 " CREATE TABLE t (id int PRIMARY KEY, v int);"
                                 " INSERT INTO t SELECT g, g % 10 FROM generate_series(1, 1000) g;"
                                 " CREATE TABLE big (id int PRIMARY KEY);"
                                 " INSERT INTO big SELECT generate_series(1, 200000)",
                                 NULL, 0),
                     0);
    *state = f;
    return 0;
}

static const char *meta(db_fx *f, const char *key)
{
    const char *v = f->d.src.meta_get(&f->d.src, key);
    if (!v)
        fail_msg("no metadata %s", key);
    return v;
}

/* Deletes, inserts and updates after the dump are not seen; the row
 * counts the dump recorded are what the snapshot says. */
static void test_sees_the_dump(void **state)
{
    db_fx *f = *state;
    db_fx_dump_keeping(f);
    assert_string_equal(meta(f, "rows.public.t"), "1000");
    assert_int_equal(pgsrv_sessions("asterdrive", 1), 1);

    assert_int_equal(pgsrv_admin("asterdrive",
                                 "DELETE FROM t WHERE id > 500; UPDATE t SET v = 100;"
                                 " INSERT INTO t SELECT g, 1 FROM generate_series(2001, 2010) g;"
                                 " DELETE FROM big WHERE id % 2 = 0",
                                 NULL, 0),
                     0);
    assert_int_equal(pgsrv_admin_long("asterdrive", "SELECT count(*) FROM t"), 510);
    assert_int_equal(pgsrv_admin_long("asterdrive", "SELECT sum(v) FROM t"), 500 * 100 + 10);

    for (int i = 0; i < 2; i++) {
        assert_int_equal(db_fx_snap_sum(f, "SELECT count(*) FROM t"), 1000);
        assert_int_equal(db_fx_snap_sum(f, "SELECT sum(v) FROM t"), 100 * 45);
        assert_int_equal(db_fx_snap_sum(f, "SELECT count(*) FROM t WHERE id > 2000"), 0);
        assert_int_equal(db_fx_snap_sum(f, "SELECT count(*) FROM big"), 200000);
    }
    /* The query runs in the first (here: only) database of the component. */
    db_rows c;
    db_fx_snap_query(f, "SELECT 1 WHERE current_database() = 'asterdrive'", &c);
    assert_int_equal(c.rows, 1);

    /* The cost: the dump's locks stay with the snapshot, so a statement
     * that needs its table exclusively waits until the backup ends. */
    const char *truncate = "SET lock_timeout = '300ms'; TRUNCATE big";
    assert_int_not_equal(pgsrv_admin("asterdrive", truncate, NULL, 0), 0);

    /* instance_free ends the transaction and closes the session. */
    f->ops->instance_free(f->in);
    f->in = NULL;
    assert_int_equal(pgsrv_wait_sessions("asterdrive", 1, 0), 0);
    assert_int_equal(pgsrv_wait_sessions("asterdrive", 0, 0), 0);
    assert_int_equal(pgsrv_admin("asterdrive", truncate, NULL, 0), 0);
}

/* A statement that fails leaves the snapshot usable (savepoint); writes
 * are refused by the read-only transaction; several statements and
 * transaction control are refused before they run. */
static void test_statements(void **state)
{
    db_fx *f = *state;
    db_fx_dump_keeping(f);
    assert_int_equal(pgsrv_admin("asterdrive", "DELETE FROM t WHERE id <= 100", NULL, 0), 0);
    db_rows c = {0};
    assert_int_equal(f->ops->query_snapshot(f->in, "SELEKT 1", db_rows_count, &c),
                     COFFER_ERR_INVALID);
    db_fx_show(f);
    assert_non_null(strstr(f->mh.last_error, "syntax error"));
    assert_non_null(strstr(f->mh.last_error, "snapshot of postgres://asterdrive@127.0.0.1"));
    assert_int_equal(db_fx_snap_sum(f, "SELECT count(*) FROM t"), 1000);
    assert_int_equal(
        f->ops->query_snapshot(f->in, "SELECT nope FROM nosuchtable", db_rows_count, &c),
        COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "nosuchtable"));
    /* An error while rows already arrived. */
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT 1 / (id - 600) FROM t ORDER BY id",
                                            db_rows_count, &c),
                     COFFER_ERR_FAILED);
    db_fx_show(f);
    assert_non_null(strstr(f->mh.last_error, "division by zero"));
    assert_int_equal(c.rows, 599); /* the rows before it were handed over */
    memset(&c, 0, sizeof c);
    assert_int_equal(db_fx_snap_sum(f, "SELECT count(*) FROM t"), 1000);

    /* Writes: refused, nothing changes, live or in the snapshot. */
    const char *writes[] = {
        "INSERT INTO t VALUES (5000, 1)",
        "DELETE FROM t",
        "UPDATE t SET v = 7",
        "WITH d AS (DELETE FROM t RETURNING id) SELECT count(*) FROM d",
        "CREATE TABLE sneaky (x int)",
        "SELECT 1; DELETE FROM t",
    };
    for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
        assert_int_equal(f->ops->query_snapshot(f->in, writes[i], db_rows_count, &c),
                         COFFER_ERR_INVALID);
        db_fx_show(f);
    }
    assert_int_equal(pgsrv_admin_long("asterdrive", "SELECT count(*) FROM t"), 900);
    assert_int_equal(pgsrv_admin_long("asterdrive", "SELECT count(*) FROM pg_class WHERE relname = "
                                                    "'sneaky'"),
                     0);
    assert_int_equal(db_fx_snap_sum(f, "SELECT count(*) FROM t"), 1000);

    /* Ending the transaction is refused: the snapshot would be gone. */
    const char *control[] = {"COMMIT",
                             "rollback",
                             "  /* a /* nested */ comment */ -- and a line\n END",
                             "ABORT",
                             "BEGIN",
                             "START TRANSACTION",
                             "SAVEPOINT x",
                             "RELEASE SAVEPOINT coffer_snapshot",
                             "ROLLBACK TO SAVEPOINT coffer_snapshot",
                             "PREPARE TRANSACTION 'x'"};
    for (size_t i = 0; i < sizeof control / sizeof control[0]; i++) {
        assert_int_equal(f->ops->query_snapshot(f->in, control[i], db_rows_count, &c),
                         COFFER_ERR_INVALID);
        assert_non_null(strstr(f->mh.last_error, "may not end it"));
    }
    db_fx_show(f);
    assert_int_equal(f->ops->query_snapshot(f->in, "", db_rows_count, &c), COFFER_ERR_INVALID);
    assert_int_equal(c.rows, 0);
    assert_int_equal(pgsrv_sessions("asterdrive", 1), 1);

    /* A statement's settings do not outlive it. */
    assert_int_equal(f->ops->query_snapshot(f->in, "SET search_path = nowhere", db_rows_count, &c),
                     COFFER_OK);
    assert_int_equal(db_fx_snap_sum(f, "SELECT count(*) FROM t"), 1000);
    /* NULLs come as NULL pointers. */
    memset(&c, 0, sizeof c);
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT NULL::int, 5", db_rows_count, &c),
                     COFFER_OK);
    assert_int_equal(c.nulls, 1);
    assert_int_equal(c.sum, 5);
}

/* 200,000 rows stream; stopping early is not an error and the snapshot
 * stays usable after the cancel that stops the server. */
static void test_streaming(void **state)
{
    db_fx *f = *state;
    db_fx_expect_snapshot_streams(f, "SELECT b.id FROM big a, big b", "SELECT pg_sleep(30)");
    assert_int_equal(pgsrv_admin_long("asterdrive", "SELECT count(*) FROM big"), 0);
}

/* The kept session dies (an administrator ends it): the snapshot is
 * reported lost, also to later calls, never replaced by the live state. */
static void test_session_lost(void **state)
{
    db_fx *f = *state;
    db_fx_dump_keeping(f);
    assert_int_equal(db_fx_snap_sum(f, "SELECT count(*) FROM t"), 1000);
    assert_int_equal(pgsrv_admin("postgres",
                                 "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                 " WHERE application_name = 'coffer' AND datname = 'asterdrive'",
                                 NULL, 0),
                     0);
    assert_int_equal(pgsrv_wait_sessions("asterdrive", 0, 0), 0);
    db_fx_expect_snapshot_lost(f);
}

/* Several databases dumped in parallel: the snapshot kept is the first
 * database's, the others end as usual. */
static void test_several_databases(void **state)
{
    db_fx *f = *state;
    pgsrv_admin("postgres", "DROP DATABASE IF EXISTS snapq_second", NULL, 0);
    assert_int_equal(
        pgsrv_admin("postgres", "CREATE DATABASE snapq_second OWNER asterdrive", NULL, 0), 0);
    f->ops->instance_free(f->in);
    f->in = NULL;
    cf_config_list_add(f->cfg, "databases", "asterdrive", 4, 1);
    cf_config_list_add(f->cfg, "databases", "snapq_second", 4, 1);
    cf_config_set(f->cfg, "jobs", "2", 5, 1);
    db_fx_open(f);
    db_fx_dump_keeping(f);
    db_rows c;
    db_fx_snap_query(f, "SELECT 1 WHERE current_database() = 'asterdrive'", &c);
    assert_int_equal(c.rows, 1);
    assert_int_equal(pgsrv_wait_sessions("snapq_second", 0, 0), 0);
    assert_int_equal(pgsrv_sessions("asterdrive", 1), 1);
    f->ops->instance_free(f->in);
    f->in = NULL;
    assert_int_equal(pgsrv_wait_sessions("asterdrive", 0, 0), 0);
    pgsrv_admin("postgres", "DROP DATABASE snapq_second", NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(db_fx_test_snapshot_abi, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_sees_the_dump, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_statements, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_streaming, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(db_fx_test_snapshot_unsupported, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(db_fx_test_snapshot_failed_dump, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_session_lost, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_several_databases, setup, db_fx_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
