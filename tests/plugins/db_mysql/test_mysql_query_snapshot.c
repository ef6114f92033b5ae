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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    snprintf(srvdir, sizeof srvdir, "/tmp/coffer-mysnap-%d", (int)getpid());
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
    setenv("COFFER_TEST_MYSNAP_PW", my_password, 1);
    snprintf(cmd, sizeof cmd, "mysql --defaults-file='%s' -e 'CREATE DATABASE IF NOT EXISTS app'",
             my_cnf);
    return system(cmd) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    const char *src = getenv("COFFER_TEST_SRC");
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "bash '%s/tests/tools/mysql_server.sh' stop '%s' >/dev/null 2>&1; rm -rf '%s'", src,
             srvdir, srvdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Run SQL as root; the first line of output into out. Returns the
 * client's exit status. */
static int admin(const char *sql, char *out, size_t len)
{
    char f[600];
    snprintf(f, sizeof f, "%s/admin.sql", srvdir);
    FILE *fp = fopen(f, "w");
    fprintf(fp, "%s\n", sql);
    fclose(fp);
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "mysql --defaults-file='%s' -N -B app < '%s'", my_cnf, f);
    FILE *p = popen(cmd, "r");
    char buf[1024] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    buf[strcspn(buf, "\n")] = 0;
    if (out)
        snprintf(out, len, "%s", buf);
    return pclose(p);
}

static long admin_long(const char *sql)
{
    char out[256];
    assert_int_equal(admin(sql, out, sizeof out), 0);
    return atol(out);
}

/* Connections of the test account (the driver's), and how many of them
 * have an InnoDB transaction open. */
static long coffer_connections(int in_transaction)
{
    if (in_transaction)
        return admin_long("SELECT COUNT(*) FROM information_schema.INNODB_TRX t"
                          " JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id"
                          " WHERE p.USER = 'coffer'");
    return admin_long("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'coffer'");
}

static long wait_connections(int in_transaction, long want)
{
    long n = -1;
    for (int i = 0; i < 50; i++) {
        if ((n = coffer_connections(in_transaction)) == want)
            break;
        usleep(100000);
    }
    return n;
}

typedef struct fx {
    mock_host mh;
    coffer_config *cfg;
    const coffer_plugin *pl;
    const coffer_database_ops *ops;
    void *in;
    memdump d;
} fx;

static void new_instance(fx *f, int jobs)
{
    if (f->in)
        f->ops->instance_free(f->in);
    f->in = NULL;
    if (f->cfg)
        cf_config_free(f->cfg);
    f->cfg = cf_config_new();
    char url[300];
    snprintf(url, sizeof url, "mysql://coffer@127.0.0.1:%s/app", my_port);
    cf_config_set(f->cfg, "url", url, 1, 1);
    cf_config_set(f->cfg, "password_env", "COFFER_TEST_MYSNAP_PW", 2, 1);
    char j[16];
    snprintf(j, sizeof j, "%d", jobs);
    cf_config_set(f->cfg, "jobs", j, 3, 1);
    coffer_status st = f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), f->cfg, &f->in);
    if (st != COFFER_OK)
        fail_msg("instance_new: %s", f->mh.last_error);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    mock_host_init(&f->mh);
    f->pl = coffer_builtin_mysql(&f->mh.host);
    f->ops = f->pl->database;
    /* The application's tables: t (1000 rows, v = id % 10), big (200,000),
     * w (where the writer adds rows). */
    assert_int_equal(
        admin("DROP TABLE IF EXISTS t, big, w, m;"
              " CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB;"
              " INSERT INTO t SELECT seq, seq % 10 FROM seq_1_to_1000;"
              " CREATE TABLE big (id INT PRIMARY KEY) ENGINE=InnoDB;"
              " INSERT INTO big SELECT seq FROM seq_1_to_200000;"
              " CREATE TABLE w (id INT AUTO_INCREMENT PRIMARY KEY, a INT) ENGINE=InnoDB",
              NULL, 0),
        0);
    new_instance(f, 1);
    memdump_init(&f->d);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    assert_null(strstr(f->mh.last_error, my_password));
    assert_null(strstr(f->mh.log, my_password));
    if (f->in)
        f->ops->instance_free(f->in);
    memdump_free(&f->d);
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
    for (int i = 0; i < ncols; i++) {
        if (!v[i])
            c->nulls++;
        else
            c->sum += atol(v[i]);
    }
    return c->stop_after && c->rows >= c->stop_after;
}

/* TEST_VERBOSE=1 shows the messages the assertions look at. */
static void show(const fx *f)
{
    if (getenv("TEST_VERBOSE"))
        print_message("  error: %s\n", f->mh.last_error);
}

static long snap_sum(fx *f, const char *sql)
{
    counter c = {0};
    coffer_status st = f->ops->query_snapshot(f->in, sql, count_row, &c);
    if (st != COFFER_OK)
        fail_msg("query_snapshot %s: %s", sql, f->mh.last_error);
    assert_int_equal(c.rows, 1);
    return c.sum;
}

static void dump_keeping(fx *f)
{
    memdump_free(&f->d);
    memdump_init(&f->d);
    f->d.sink.keep_snapshot = 1;
    coffer_status st = f->ops->dump(f->in, &f->d.sink);
    if (st != COFFER_OK)
        fail_msg("dump: %s", f->mh.last_error);
}

static long meta_long(fx *f, const char *key)
{
    const char *v = f->d.src.meta_get(&f->d.src, key);
    if (!v)
        fail_msg("no metadata %s", key);
    return atol(v);
}

/* Commits one row into w at a time, from its own connection, until told
 * to stop. */
typedef struct writer {
    volatile int stop;
    volatile long commits;
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    MYSQL *m = mysql_init(NULL);
    if (!mysql_real_connect(m, "127.0.0.1", "coffer", my_password, "app", (unsigned)atoi(my_port),
                            NULL, 0)) {
        fprintf(stderr, "writer: %s\n", mysql_error(m));
        abort();
    }
    while (!w->stop) {
        if (mysql_query(m, "INSERT INTO w (a) VALUES (1)") != 0) {
            fprintf(stderr, "writer: %s\n", mysql_error(m));
            abort();
        }
        __atomic_add_fetch(&w->commits, 1, __ATOMIC_SEQ_CST);
    }
    mysql_close(m);
    return NULL;
}

static void test_abi(void **state)
{
    fx *f = *state;
    assert_true(f->ops->struct_size >=
                offsetof(coffer_database_ops, query_snapshot) + sizeof(void *));
    assert_non_null(f->ops->query_snapshot);
}

/* While a writer commits throughout the dump, the snapshot kept is the
 * very state dumped; later deletes, updates and inserts are not seen. */
static void sees_the_dump(fx *f, int jobs)
{
    new_instance(f, jobs);
    writer w = {0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
    while (__atomic_load_n(&w.commits, __ATOMIC_SEQ_CST) < 50)
        usleep(1000);
    dump_keeping(f);
    long at_dump = __atomic_load_n(&w.commits, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&w.commits, __ATOMIC_SEQ_CST) < at_dump + 50)
        usleep(1000);
    long dumped = meta_long(f, "rows.app.w");
    assert_true(dumped >= 50);
    assert_int_equal(meta_long(f, "rows.app.t"), 1000);
    if (jobs > 1)
        assert_non_null(strstr(f->d.src.meta_get(&f->d.src, "snapshot"), "FLUSH TABLES"));

    assert_int_equal(admin("DELETE FROM t WHERE id > 500; UPDATE t SET v = 100;"
                           " INSERT INTO t SELECT seq, 1 FROM seq_2001_to_2010;"
                           " DELETE FROM big WHERE id % 2 = 0",
                           NULL, 0),
                     0);
    assert_int_equal(admin_long("SELECT COUNT(*) FROM t"), 510);

    for (int i = 0; i < 2; i++) {
        assert_int_equal(snap_sum(f, "SELECT COUNT(*) FROM w"), dumped);
        assert_int_equal(snap_sum(f, "SELECT COUNT(*) FROM t"), 1000);
        assert_int_equal(snap_sum(f, "SELECT SUM(v) FROM t"), 100 * 45);
        assert_int_equal(snap_sum(f, "SELECT COUNT(*) FROM t WHERE id > 2000"), 0);
        assert_int_equal(snap_sum(f, "SELECT COUNT(*) FROM big"), 200000);
    }
    w.stop = 1;
    pthread_join(th, NULL);
    assert_true(admin_long("SELECT COUNT(*) FROM w") > dumped);
    /* In the database query_target would use. */
    counter c = {0};
    assert_int_equal(
        f->ops->query_snapshot(f->in, "SELECT 1 FROM DUAL WHERE DATABASE() = 'app'", count_row, &c),
        COFFER_OK);
    assert_int_equal(c.rows, 1);
    assert_int_equal(wait_connections(0, 1), 1);
    assert_int_equal(coffer_connections(1), 1);

    /* instance_free ends the transaction and closes the connection. */
    f->ops->instance_free(f->in);
    f->in = NULL;
    assert_int_equal(wait_connections(0, 0), 0);
    assert_int_equal(coffer_connections(1), 0);
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
    fx *f = *state;
    assert_int_equal(admin("CREATE TABLE m (id INT PRIMARY KEY) ENGINE=MyISAM;"
                           " INSERT INTO m SELECT seq FROM seq_1_to_10",
                           NULL, 0),
                     0);
    dump_keeping(f);
    assert_non_null(strstr(f->mh.log, "`app`.`m` (MyISAM) is not transactional: queries on the "
                                      "snapshot read its current rows"));
    assert_int_equal(snap_sum(f, "SELECT COUNT(*) FROM t"), 1000);
    assert_int_equal(admin("DROP TABLE m", NULL, 0), 0);
}

static void test_statements(void **state)
{
    fx *f = *state;
    dump_keeping(f);
    assert_int_equal(admin("DELETE FROM t WHERE id <= 100", NULL, 0), 0);
    counter c = {0};
    assert_int_equal(f->ops->query_snapshot(f->in, "SELEKT 1", count_row, &c), COFFER_ERR_INVALID);
    show(f);
    assert_non_null(strstr(f->mh.last_error, "syntax"));
    assert_non_null(strstr(f->mh.last_error, "the snapshot of coffer@127.0.0.1"));
    assert_int_equal(snap_sum(f, "SELECT COUNT(*) FROM t"), 1000);
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT nope FROM nosuchtable", count_row, &c),
                     COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "nosuchtable"));
    assert_int_equal(snap_sum(f, "SELECT COUNT(*) FROM t"), 1000);

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
        coffer_status st = f->ops->query_snapshot(f->in, refused[i], count_row, &c);
        show(f);
        if (st != COFFER_ERR_INVALID)
            fail_msg("%s: status %d, %s", refused[i], st, f->mh.last_error);
        assert_int_equal(snap_sum(f, "SELECT COUNT(*) FROM t"), 1000);
    }
    assert_int_equal(f->ops->query_snapshot(f->in, "", count_row, &c), COFFER_ERR_INVALID);
    assert_int_equal(c.rows, 0);
    assert_int_equal(admin_long("SELECT COUNT(*) FROM t"), 900);
    assert_int_equal(admin_long("SELECT COUNT(*) FROM big"), 200000);
    assert_int_equal(admin_long("SELECT COUNT(*) FROM information_schema.TABLES"
                                " WHERE TABLE_NAME = 'sneaky'"),
                     0);
    /* Words inside strings and quoted names are not taken for a locking read. */
    memset(&c, 0, sizeof c);
    assert_int_equal(f->ops->query_snapshot(f->in,
                                            "SELECT 'for update', `for` FROM (SELECT 1 AS "
                                            "`for`) x -- lock in share mode",
                                            count_row, &c),
                     COFFER_OK);
    assert_int_equal(c.rows, 1);
    /* NULLs come as NULL pointers; SHOW runs. */
    memset(&c, 0, sizeof c);
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT NULL, 5", count_row, &c), COFFER_OK);
    assert_int_equal(c.nulls, 1);
    assert_int_equal(c.sum, 5);
    memset(&c, 0, sizeof c);
    assert_int_equal(f->ops->query_snapshot(f->in, "SHOW TABLES", count_row, &c), COFFER_OK);
    assert_true(c.rows >= 3);
    assert_int_equal(coffer_connections(1), 1);
}

/* The dump's metadata locks are released: DDL on the live tables does
 * not wait for the backup. A table changed that way cannot be read in
 * the snapshot any more (an error, never other rows); the rest can. */
static void test_ddl_does_not_wait(void **state)
{
    fx *f = *state;
    dump_keeping(f);
    assert_int_equal(snap_sum(f, "SELECT COUNT(*) FROM big"), 200000);
    assert_int_equal(admin("SET SESSION lock_wait_timeout = 5; TRUNCATE big;"
                           " ALTER TABLE t ADD COLUMN x INT DEFAULT 1, ALGORITHM = COPY",
                           NULL, 0),
                     0);
    counter c = {0};
    coffer_status st = f->ops->query_snapshot(f->in, "SELECT COUNT(*) FROM big", count_row, &c);
    show(f);
    assert_int_not_equal(st, COFFER_OK);
    assert_int_equal(c.rows, 0);
    assert_non_null(strstr(f->mh.last_error, "1412"));
    assert_int_equal(snap_sum(f, "SELECT COUNT(*) FROM w"), 0);
    assert_int_equal(coffer_connections(1), 1);
}

/* 200,000 rows stream; stopping early is not an error, costs no reading
 * of the rest, and leaves the snapshot usable. */
static void test_streaming(void **state)
{
    fx *f = *state;
    dump_keeping(f);
    assert_int_equal(admin("DELETE FROM big", NULL, 0), 0);
    counter c = {0};
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT id FROM big ORDER BY id", count_row, &c),
                     COFFER_OK);
    assert_int_equal(c.rows, 200000);
    assert_int_equal(c.sum, 200000L * 200001L / 2);
    for (int i = 0; i < 5; i++) {
        memset(&c, 0, sizeof c);
        c.stop_after = 10;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(
            f->ops->query_snapshot(f->in, "SELECT a.id FROM big a, big b", count_row, &c),
            COFFER_OK);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_int_equal(c.rows, 10);
        if (t1.tv_sec - t0.tv_sec > 10)
            fail_msg("stopping early took %ld s: the rest was read", (long)(t1.tv_sec - t0.tv_sec));
        assert_int_equal(snap_sum(f, "SELECT COUNT(*) FROM big"), 200000);
    }
    /* The host cancels, while the server is still computing. */
    f->mh.cancel = 1;
    memset(&c, 0, sizeof c);
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT SLEEP(30)", count_row, &c),
                     COFFER_ERR_CANCELLED);
    f->mh.cancel = 0;
    assert_int_equal(snap_sum(f, "SELECT COUNT(*) FROM big"), 200000);
    /* Nothing of ours is left running on the server. */
    long running = -1;
    for (int i = 0; i < 50 && running != 0; i++) {
        running = admin_long("SELECT COUNT(*) FROM information_schema.PROCESSLIST"
                             " WHERE (INFO LIKE '%big a, big b%' OR INFO LIKE '%SLEEP(30)%')"
                             " AND ID <> CONNECTION_ID()");
        if (running)
            usleep(100000);
    }
    assert_int_equal(running, 0);
}

/* No snapshot: before any dump, after a dump that did not ask (also a
 * 1.0 sink); a later dump without keep_snapshot ends a kept one. */
static void test_unsupported(void **state)
{
    fx *f = *state;
    counter c = {0};
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT 1", count_row, &c),
                     COFFER_ERR_UNSUPPORTED);
    show(f);
    assert_int_equal(f->ops->dump(f->in, &f->d.sink), COFFER_OK);
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT 1", count_row, &c),
                     COFFER_ERR_UNSUPPORTED);
    assert_int_equal(wait_connections(0, 0), 0);

    memdump_free(&f->d);
    memdump_init(&f->d);
    f->d.sink.keep_snapshot = 1;
    f->d.sink.struct_size = offsetof(coffer_dump_sink, keep_snapshot);
    assert_int_equal(f->ops->dump(f->in, &f->d.sink), COFFER_OK);
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT 1", count_row, &c),
                     COFFER_ERR_UNSUPPORTED);
    assert_int_equal(wait_connections(0, 0), 0);

    dump_keeping(f);
    assert_int_equal(admin("DELETE FROM t WHERE id <= 10", NULL, 0), 0);
    assert_int_equal(snap_sum(f, "SELECT COUNT(*) FROM t"), 1000);
    /* A second kept dump replaces the first. */
    dump_keeping(f);
    assert_int_equal(snap_sum(f, "SELECT COUNT(*) FROM t"), 990);
    assert_int_equal(wait_connections(0, 1), 1);
    memdump_free(&f->d);
    memdump_init(&f->d);
    assert_int_equal(f->ops->dump(f->in, &f->d.sink), COFFER_OK);
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT 1", count_row, &c),
                     COFFER_ERR_UNSUPPORTED);
    assert_int_equal(wait_connections(0, 0), 0);
    assert_int_equal(c.rows, 0);
}

/* A failed dump keeps nothing. */
static void test_failed_dump(void **state)
{
    fx *f = *state;
    dump_keeping(f);
    memdump_free(&f->d);
    memdump_init(&f->d);
    f->d.sink.keep_snapshot = 1;
    f->mh.cancel = 1;
    assert_int_equal(f->ops->dump(f->in, &f->d.sink), COFFER_ERR_CANCELLED);
    f->mh.cancel = 0;
    counter c = {0};
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT 1", count_row, &c),
                     COFFER_ERR_UNSUPPORTED);
    assert_int_equal(wait_connections(0, 0), 0);
}

/* The kept connection is killed: the snapshot is reported lost, also to
 * later calls, never replaced by the live state. */
static void test_connection_lost(void **state)
{
    fx *f = *state;
    dump_keeping(f);
    assert_int_equal(snap_sum(f, "SELECT COUNT(*) FROM t"), 1000);
    long id = admin_long("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'coffer'");
    char sql[64];
    snprintf(sql, sizeof sql, "KILL %ld", id);
    assert_int_equal(admin(sql, NULL, 0), 0);
    counter c = {0};
    coffer_status st = f->ops->query_snapshot(f->in, "SELECT COUNT(*) FROM t", count_row, &c);
    show(f);
    assert_int_not_equal(st, COFFER_OK);
    assert_int_not_equal(st, COFFER_ERR_UNSUPPORTED);
    assert_non_null(strstr(f->mh.last_error, "is lost"));
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT 1", count_row, &c), COFFER_ERR_FAILED);
    assert_non_null(strstr(f->mh.last_error, "lost earlier"));
    assert_int_equal(c.rows, 0);
    dump_keeping(f);
    assert_int_equal(snap_sum(f, "SELECT COUNT(*) FROM t"), 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_abi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sees_the_dump, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sees_the_dump_locked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nontransactional_warned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_statements, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ddl_does_not_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_streaming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsupported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_dump, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_lost, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
