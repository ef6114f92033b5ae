/*
 * database "mysql" against a real MariaDB (tests/tools/mysql_server.sh,
 * label "server"): query_snapshot after a dump that kept its snapshot.
 * A writer commits throughout the dump and the live tables change after
 * it; queries answer exactly as of the dump, with one connection and
 * with the FLUSH TABLES WITH READ LOCK path (jobs = 2). Failed and
 * refused statements (writes, DDL, transaction control, locking reads)
 * leave the snapshot usable, large results stream and stop early, DDL
 * on the live tables does not wait for the snapshot, and instance_free
 * ends the transaction and closes the connection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db_mysql.h"
#include "mysql_server.h"

#define PW_ENV "COFFER_TEST_MYSNAP_PW"

static int group_setup(void **state)
{
    (void)state;
    return mysrv_start("mysnap", PW_ENV);
}

static int group_teardown(void **state)
{
    (void)state;
    return mysrv_stop();
}

static int setup(void **state)
{
    /* The application's tables: t (1000 rows, v = id % 10), big (200,000),
     * w (where the writer adds rows). */
    assert_int_equal(
        mysrv_admin("DROP TABLE IF EXISTS t, big, w, m;"
                    " CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB;"
                    " INSERT INTO t SELECT seq, seq % 10 FROM seq_1_to_1000;"
                    " CREATE TABLE big (id INT PRIMARY KEY) ENGINE=InnoDB;"
                    " INSERT INTO big SELECT seq FROM seq_1_to_200000;"
                    " CREATE TABLE w (id INT AUTO_INCREMENT PRIMARY KEY, a INT) ENGINE=InnoDB",
                    NULL, 0),
        0);
    *state = mysrv_fx_new(PW_ENV, 1);
    return 0;
}

static long meta_long(db_fx *f, const char *key)
{
    const char *v = f->d.src.meta_get(&f->d.src, key);
    if (!v)
        fail_msg("no metadata %s", key);
    return atol(v);
}

/* Commits one row into w at a time, from its own connection, until told
 * to stop. */
typedef struct writer {
    atomic_int stop;
    volatile long commits;
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    MYSQL *m = mysql_init(NULL);
    if (!mysql_real_connect(m, "127.0.0.1", "coffer", mysrv_password, "app",
                            (unsigned)atoi(mysrv_port), NULL, 0)) {
        fprintf(stderr, "writer: %s\n", mysql_error(m));
        abort();
    }
    while (!atomic_load(&w->stop)) {
        if (mysql_query(m, "INSERT INTO w (a) VALUES (1)") != 0) {
            fprintf(stderr, "writer: %s\n", mysql_error(m));
            abort();
        }
        __atomic_add_fetch(&w->commits, 1, __ATOMIC_SEQ_CST);
    }
    mysql_close(m);
    return NULL;
}

/* While a writer commits throughout the dump, the snapshot kept is the
 * very state dumped; later deletes, updates and inserts are not seen. */
static void sees_the_dump(db_fx *f, int jobs)
{
    mysrv_fx_open(f, PW_ENV, jobs);
    writer w = {0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
    while (__atomic_load_n(&w.commits, __ATOMIC_SEQ_CST) < 50)
        usleep(1000);
    db_fx_dump_keeping(f);
    long at_dump = __atomic_load_n(&w.commits, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&w.commits, __ATOMIC_SEQ_CST) < at_dump + 50)
        usleep(1000);
    long dumped = meta_long(f, "rows.app.w");
    assert_true(dumped >= 50);
    assert_int_equal(meta_long(f, "rows.app.t"), 1000);
    if (jobs > 1)
        assert_non_null(strstr(f->d.src.meta_get(&f->d.src, "snapshot"), "FLUSH TABLES"));

    assert_int_equal(mysrv_admin("DELETE FROM t WHERE id > 500; UPDATE t SET v = 100;"
                                 " INSERT INTO t SELECT seq, 1 FROM seq_2001_to_2010;"
                                 " DELETE FROM big WHERE id % 2 = 0",
                                 NULL, 0),
                     0);
    assert_int_equal(mysrv_admin_long("SELECT COUNT(*) FROM t"), 510);

    for (int i = 0; i < 2; i++) {
        assert_int_equal(db_fx_snap_sum(f, "SELECT COUNT(*) FROM w"), dumped);
        assert_int_equal(db_fx_snap_sum(f, "SELECT COUNT(*) FROM t"), 1000);
        assert_int_equal(db_fx_snap_sum(f, "SELECT SUM(v) FROM t"), 100 * 45);
        assert_int_equal(db_fx_snap_sum(f, "SELECT COUNT(*) FROM t WHERE id > 2000"), 0);
        assert_int_equal(db_fx_snap_sum(f, "SELECT COUNT(*) FROM big"), 200000);
    }
    atomic_store(&w.stop, 1);
    pthread_join(th, NULL);
    assert_true(mysrv_admin_long("SELECT COUNT(*) FROM w") > dumped);
    /* In the database query_target would use. */
    db_rows c;
    db_fx_snap_query(f, "SELECT 1 FROM DUAL WHERE DATABASE() = 'app'", &c);
    assert_int_equal(c.rows, 1);
    assert_int_equal(mysrv_wait_connections(0, 1), 1);
    assert_int_equal(mysrv_connections(1), 1);

    /* instance_free ends the transaction and closes the connection. */
    f->ops->instance_free(f->in);
    f->in = NULL;
    assert_int_equal(mysrv_wait_connections(0, 0), 0);
    assert_int_equal(mysrv_connections(1), 0);
}

static void test_sees_the_dump(void **state)
{
    sees_the_dump(*state, 1);
}

/* jobs > 1: FLUSH TABLES WITH READ LOCK, a snapshot on each connection
 * started while it holds writes; the kept one is among them. */
static void test_sees_the_dump_locked(void **state)
{
    sees_the_dump(*state, 2);
}

/* A non-transactional table is copied under the lock, but the snapshot
 * cannot keep it: the dump says so. */
static void test_nontransactional_warned(void **state)
{
    db_fx *f = *state;
    assert_int_equal(mysrv_admin("CREATE TABLE m (id INT PRIMARY KEY) ENGINE=MyISAM;"
                                 " INSERT INTO m SELECT seq FROM seq_1_to_10",
                                 NULL, 0),
                     0);
    db_fx_dump_keeping(f);
    assert_non_null(strstr(f->mh.log, "`app`.`m` (MyISAM) is not transactional: queries on the "
                                      "snapshot read its current rows"));
    assert_int_equal(db_fx_snap_sum(f, "SELECT COUNT(*) FROM t"), 1000);
    assert_int_equal(mysrv_admin("DROP TABLE m", NULL, 0), 0);
}

static void test_statements(void **state)
{
    db_fx *f = *state;
    db_fx_dump_keeping(f);
    assert_int_equal(mysrv_admin("DELETE FROM t WHERE id <= 100", NULL, 0), 0);
    db_rows c = {0};
    assert_int_equal(f->ops->query_snapshot(f->in, "SELEKT 1", db_rows_count, &c),
                     COFFER_ERR_INVALID);
    db_fx_show(f);
    assert_non_null(strstr(f->mh.last_error, "syntax"));
    assert_non_null(strstr(f->mh.last_error, "the snapshot of coffer@127.0.0.1"));
    assert_int_equal(db_fx_snap_sum(f, "SELECT COUNT(*) FROM t"), 1000);
    assert_int_equal(
        f->ops->query_snapshot(f->in, "SELECT nope FROM nosuchtable", db_rows_count, &c),
        COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "nosuchtable"));
    assert_int_equal(db_fx_snap_sum(f, "SELECT COUNT(*) FROM t"), 1000);

    /* Writes, DDL, transaction control: refused, nothing changes. */
    const char *refused[] = {
        "INSERT INTO t VALUES (5000, 1)",
        "DELETE FROM t",
        "UPDATE t SET v = 7",
        "REPLACE INTO t VALUES (1, 1)",
        "CREATE TABLE sneaky (x INT)",
        "DROP TABLE big",
        "TRUNCATE t",
        "SELECT 1; DELETE FROM t",
        "COMMIT",
        "ROLLBACK",
        "START TRANSACTION",
        "SET autocommit = 1",
        "RELEASE SAVEPOINT coffer_snapshot",
        "SELECT * FROM t INTO OUTFILE '/tmp/coffer-sneaky'",
        "CALL nosuchproc()",
        "SELECT COUNT(*) FROM t FOR UPDATE",
        "SELECT COUNT(*) FROM t LOCK IN SHARE MODE",
        "select count(*) from t /*!50000 lock in share mode */",
        "SELECT COUNT(*) FROM t FOR SHARE",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        coffer_status st = f->ops->query_snapshot(f->in, refused[i], db_rows_count, &c);
        db_fx_show(f);
        if (st != COFFER_ERR_INVALID)
            fail_msg("%s: status %d, %s", refused[i], st, f->mh.last_error);
        assert_int_equal(db_fx_snap_sum(f, "SELECT COUNT(*) FROM t"), 1000);
    }
    assert_int_equal(f->ops->query_snapshot(f->in, "", db_rows_count, &c), COFFER_ERR_INVALID);
    assert_int_equal(c.rows, 0);
    assert_int_equal(mysrv_admin_long("SELECT COUNT(*) FROM t"), 900);
    assert_int_equal(mysrv_admin_long("SELECT COUNT(*) FROM big"), 200000);
    assert_int_equal(mysrv_admin_long("SELECT COUNT(*) FROM information_schema.TABLES"
                                      " WHERE TABLE_NAME = 'sneaky'"),
                     0);
    /* Words inside strings and quoted names are not taken for a locking read. */
    memset(&c, 0, sizeof c);
    assert_int_equal(f->ops->query_snapshot(f->in,
                                            "SELECT 'for update', `for` FROM (SELECT 1 AS "
                                            "`for`) x -- lock in share mode",
                                            db_rows_count, &c),
                     COFFER_OK);
    assert_int_equal(c.rows, 1);
    /* NULLs come as NULL pointers; SHOW runs. */
    memset(&c, 0, sizeof c);
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT NULL, 5", db_rows_count, &c), COFFER_OK);
    assert_int_equal(c.nulls, 1);
    assert_int_equal(c.sum, 5);
    memset(&c, 0, sizeof c);
    assert_int_equal(f->ops->query_snapshot(f->in, "SHOW TABLES", db_rows_count, &c), COFFER_OK);
    assert_true(c.rows >= 3);
    assert_int_equal(mysrv_connections(1), 1);
}

/* The dump's metadata locks are released: DDL on the live tables does
 * not wait for the backup. A table changed that way cannot be read in
 * the snapshot any more (an error, never other rows); the rest can. */
static void test_ddl_does_not_wait(void **state)
{
    db_fx *f = *state;
    db_fx_dump_keeping(f);
    assert_int_equal(db_fx_snap_sum(f, "SELECT COUNT(*) FROM big"), 200000);
    assert_int_equal(mysrv_admin("SET SESSION lock_wait_timeout = 5; TRUNCATE big;"
                                 " ALTER TABLE t ADD COLUMN x INT DEFAULT 1, ALGORITHM = COPY",
                                 NULL, 0),
                     0);
    db_rows c = {0};
    coffer_status st = f->ops->query_snapshot(f->in, "SELECT COUNT(*) FROM big", db_rows_count, &c);
    db_fx_show(f);
    assert_int_not_equal(st, COFFER_OK);
    assert_int_equal(c.rows, 0);
    assert_non_null(strstr(f->mh.last_error, "1412"));
    assert_int_equal(db_fx_snap_sum(f, "SELECT COUNT(*) FROM w"), 0);
    assert_int_equal(mysrv_connections(1), 1);
}

/* 200,000 rows stream; stopping early is not an error, costs no reading
 * of the rest, and leaves the snapshot usable. */
static void test_streaming(void **state)
{
    db_fx *f = *state;
    db_fx_expect_snapshot_streams(f, "SELECT a.id FROM big a, big b", "SELECT SLEEP(30)");
    /* Nothing of ours is left running on the server. */
    long running = -1;
    for (int i = 0; i < 50 && running != 0; i++) {
        running = mysrv_admin_long("SELECT COUNT(*) FROM information_schema.PROCESSLIST"
                                   " WHERE (INFO LIKE '%big a, big b%' OR INFO LIKE '%SLEEP(30)%')"
                                   " AND ID <> CONNECTION_ID()");
        if (running)
            usleep(100000);
    }
    assert_int_equal(running, 0);
}

/* The kept connection is killed: the snapshot is reported lost, also to
 * later calls, never replaced by the live state. */
static void test_connection_lost(void **state)
{
    db_fx *f = *state;
    db_fx_dump_keeping(f);
    assert_int_equal(db_fx_snap_sum(f, "SELECT COUNT(*) FROM t"), 1000);
    long id =
        mysrv_admin_long("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'coffer'");
    char sql[64];
    snprintf(sql, sizeof sql, "KILL %ld", id);
    assert_int_equal(mysrv_admin(sql, NULL, 0), 0);
    db_fx_expect_snapshot_lost(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(db_fx_test_snapshot_abi, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_sees_the_dump, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_sees_the_dump_locked, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_nontransactional_warned, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_statements, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_ddl_does_not_wait, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_streaming, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(db_fx_test_snapshot_unsupported, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(db_fx_test_snapshot_failed_dump, setup, db_fx_teardown),
        cmocka_unit_test_setup_teardown(test_connection_lost, setup, db_fx_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
