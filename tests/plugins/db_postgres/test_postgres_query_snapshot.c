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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db_postgres.h"
#include "memdump.h"
#include "mock_host.h"
#include "plugin/config.h"

extern const coffer_plugin *coffer_builtin_postgres(const coffer_host *host);

static char srvdir[512];
static char pg_bin[512], pg_port[16], pg_password[128], pg_admin[1024];

static void env_value(const char *file, const char *key, char *out, size_t len)
{
    FILE *fp = fopen(file, "r");
    assert_non_null(fp);
    char line[2048];
    size_t kl = strlen(key);
    out[0] = 0;
    while (fgets(line, sizeof line, fp)) {
        if (strncmp(line, key, kl) != 0 || line[kl] != '=')
            continue;
        char *v = line + kl + 1;
        v[strcspn(v, "\n")] = 0;
        size_t n = strlen(v);
        if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
            v[n - 1] = 0;
            v++;
        }
        snprintf(out, len, "%s", v);
    }
    fclose(fp);
}

static int group_setup(void **state)
{
    (void)state;
    const char *src = getenv("COFFER_TEST_SRC");
    if (!src)
        return -1;
    snprintf(srvdir, sizeof srvdir, "/tmp/coffer-pgsnap-%d", (int)getpid());
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "bash '%s/tests/tools/pg_server.sh' start '%s' >/dev/null", src,
             srvdir);
    if (system(cmd) != 0)
        return -1;
    char envf[600];
    snprintf(envf, sizeof envf, "%s/pg.env", srvdir);
    env_value(envf, "PG_BIN", pg_bin, sizeof pg_bin);
    env_value(envf, "PG_PORT", pg_port, sizeof pg_port);
    env_value(envf, "PG_PASSWORD", pg_password, sizeof pg_password);
    env_value(envf, "PG_ADMIN", pg_admin, sizeof pg_admin);
    setenv("COFFER_TEST_PGSNAP_PW", pg_password, 1);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    const char *src = getenv("COFFER_TEST_SRC");
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "bash '%s/tests/tools/pg_server.sh' stop '%s' >/dev/null 2>&1; rm -rf '%s'", src,
             srvdir, srvdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Run SQL as the superuser in database db; psql's output (first line)
 * into out. Returns psql's exit status. */
static int admin(const char *db, const char *sql, char *out, size_t len)
{
    char f[600];
    snprintf(f, sizeof f, "%s/admin.sql", srvdir);
    FILE *fp = fopen(f, "w");
    fprintf(fp, "%s\n", sql);
    fclose(fp);
    chmod(f, 0644);
    char cmd[3000];
    snprintf(cmd, sizeof cmd,
             "PGOPTIONS='-c client_min_messages=warning' runuser -u postgres -- %s -At "
             "-v ON_ERROR_STOP=1 -d %s -f %s",
             pg_admin, db, f);
    FILE *p = popen(cmd, "r");
    char buf[1024] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    buf[strcspn(buf, "\n")] = 0;
    if (out)
        snprintf(out, len, "%s", buf);
    return pclose(p);
}

static long admin_long(const char *db, const char *sql)
{
    char out[256];
    assert_int_equal(admin(db, sql, out, sizeof out), 0);
    return atol(out);
}

/* Sessions of the driver (application_name coffer) in database db, and
 * how many of them are inside a transaction. */
static long coffer_sessions(const char *db, int in_transaction)
{
    char sql[400];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'coffer'"
             " AND datname = '%s'%s",
             db, in_transaction ? " AND xact_start IS NOT NULL" : "");
    return admin_long("postgres", sql);
}

/* Poll until coffer_sessions() is want (a closed session's backend
 * exits shortly after). */
static long wait_sessions(const char *db, int in_transaction, long want)
{
    long n = -1;
    for (int i = 0; i < 50; i++) {
        if ((n = coffer_sessions(db, in_transaction)) == want)
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

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    mock_host_init(&f->mh);
    f->cfg = cf_config_new();
    f->pl = coffer_builtin_postgres(&f->mh.host);
    f->ops = f->pl->database;
    char url[300];
    snprintf(url, sizeof url, "postgres://asterdrive@127.0.0.1:%s/asterdrive", pg_port);
    cf_config_set(f->cfg, "url", url, 1, 1);
    cf_config_set(f->cfg, "password_env", "COFFER_TEST_PGSNAP_PW", 2, 1);
    cf_config_set(f->cfg, "pg_bin_dir", pg_bin, 3, 1);
    assert_int_equal(f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), f->cfg, &f->in),
                     COFFER_OK);
    memdump_init(&f->d);
    /* The application's tables: t (1000 rows, v = id % 10), big (200,000). */
    assert_int_equal(admin("asterdrive",
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

static int teardown(void **state)
{
    fx *f = *state;
    /* No message, no log line ever shows the password. */
    assert_null(strstr(f->mh.last_error, pg_password));
    assert_null(strstr(f->mh.log, pg_password));
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

/* The sum of the columns of the single row sql returns in the snapshot. */
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

static const char *meta(fx *f, const char *key)
{
    const char *v = f->d.src.meta_get(&f->d.src, key);
    if (!v)
        fail_msg("no metadata %s", key);
    return v;
}

static void test_abi(void **state)
{
    fx *f = *state;
    assert_true(f->ops->struct_size >=
                offsetof(coffer_database_ops, query_snapshot) + sizeof(void *));
    assert_non_null(f->ops->query_snapshot);
}

/* Deletes, inserts and updates after the dump are not seen; the row
 * counts the dump recorded are what the snapshot says. */
static void test_sees_the_dump(void **state)
{
    fx *f = *state;
    dump_keeping(f);
    assert_string_equal(meta(f, "rows.public.t"), "1000");
    assert_int_equal(coffer_sessions("asterdrive", 1), 1);

    assert_int_equal(admin("asterdrive",
                           "DELETE FROM t WHERE id > 500; UPDATE t SET v = 100;"
                           " INSERT INTO t SELECT g, 1 FROM generate_series(2001, 2010) g;"
                           " DELETE FROM big WHERE id % 2 = 0",
                           NULL, 0),
                     0);
    assert_int_equal(admin_long("asterdrive", "SELECT count(*) FROM t"), 510);
    assert_int_equal(admin_long("asterdrive", "SELECT sum(v) FROM t"), 500 * 100 + 10);

    for (int i = 0; i < 2; i++) {
        assert_int_equal(snap_sum(f, "SELECT count(*) FROM t"), 1000);
        assert_int_equal(snap_sum(f, "SELECT sum(v) FROM t"), 100 * 45);
        assert_int_equal(snap_sum(f, "SELECT count(*) FROM t WHERE id > 2000"), 0);
        assert_int_equal(snap_sum(f, "SELECT count(*) FROM big"), 200000);
    }
    /* The query runs in the first (here: only) database of the component. */
    counter c = {0};
    assert_int_equal(f->ops->query_snapshot(
                         f->in, "SELECT 1 WHERE current_database() = 'asterdrive'", count_row, &c),
                     COFFER_OK);
    assert_int_equal(c.rows, 1);

    /* The cost: the dump's locks stay with the snapshot, so a statement
     * that needs its table exclusively waits until the backup ends. */
    const char *truncate = "SET lock_timeout = '300ms'; TRUNCATE big";
    assert_int_not_equal(admin("asterdrive", truncate, NULL, 0), 0);

    /* instance_free ends the transaction and closes the session. */
    f->ops->instance_free(f->in);
    f->in = NULL;
    assert_int_equal(wait_sessions("asterdrive", 1, 0), 0);
    assert_int_equal(wait_sessions("asterdrive", 0, 0), 0);
    assert_int_equal(admin("asterdrive", truncate, NULL, 0), 0);
}

/* A statement that fails leaves the snapshot usable (savepoint); writes
 * are refused by the read-only transaction; several statements and
 * transaction control are refused before they run. */
static void test_statements(void **state)
{
    fx *f = *state;
    dump_keeping(f);
    assert_int_equal(admin("asterdrive", "DELETE FROM t WHERE id <= 100", NULL, 0), 0);
    counter c = {0};
    assert_int_equal(f->ops->query_snapshot(f->in, "SELEKT 1", count_row, &c), COFFER_ERR_INVALID);
    show(f);
    assert_non_null(strstr(f->mh.last_error, "syntax error"));
    assert_non_null(strstr(f->mh.last_error, "snapshot of postgres://asterdrive@127.0.0.1"));
    assert_int_equal(snap_sum(f, "SELECT count(*) FROM t"), 1000);
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT nope FROM nosuchtable", count_row, &c),
                     COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "nosuchtable"));
    /* An error while rows already arrived. */
    assert_int_equal(
        f->ops->query_snapshot(f->in, "SELECT 1 / (id - 600) FROM t ORDER BY id", count_row, &c),
        COFFER_ERR_FAILED);
    show(f);
    assert_non_null(strstr(f->mh.last_error, "division by zero"));
    assert_int_equal(c.rows, 599); /* the rows before it were handed over */
    memset(&c, 0, sizeof c);
    assert_int_equal(snap_sum(f, "SELECT count(*) FROM t"), 1000);

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
        assert_int_equal(f->ops->query_snapshot(f->in, writes[i], count_row, &c),
                         COFFER_ERR_INVALID);
        show(f);
    }
    assert_int_equal(admin_long("asterdrive", "SELECT count(*) FROM t"), 900);
    assert_int_equal(admin_long("asterdrive", "SELECT count(*) FROM pg_class WHERE relname = "
                                              "'sneaky'"),
                     0);
    assert_int_equal(snap_sum(f, "SELECT count(*) FROM t"), 1000);

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
        assert_int_equal(f->ops->query_snapshot(f->in, control[i], count_row, &c),
                         COFFER_ERR_INVALID);
        assert_non_null(strstr(f->mh.last_error, "may not end it"));
    }
    show(f);
    assert_int_equal(f->ops->query_snapshot(f->in, "", count_row, &c), COFFER_ERR_INVALID);
    assert_int_equal(c.rows, 0);
    assert_int_equal(coffer_sessions("asterdrive", 1), 1);

    /* A statement's settings do not outlive it. */
    assert_int_equal(f->ops->query_snapshot(f->in, "SET search_path = nowhere", count_row, &c),
                     COFFER_OK);
    assert_int_equal(snap_sum(f, "SELECT count(*) FROM t"), 1000);
    /* NULLs come as NULL pointers. */
    memset(&c, 0, sizeof c);
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT NULL::int, 5", count_row, &c),
                     COFFER_OK);
    assert_int_equal(c.nulls, 1);
    assert_int_equal(c.sum, 5);
}

/* 200,000 rows stream; stopping early is not an error and the snapshot
 * stays usable after the cancel that stops the server. */
static void test_streaming(void **state)
{
    fx *f = *state;
    dump_keeping(f);
    assert_int_equal(admin("asterdrive", "DELETE FROM big", NULL, 0), 0);
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
            f->ops->query_snapshot(f->in, "SELECT b.id FROM big a, big b", count_row, &c),
            COFFER_OK);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_int_equal(c.rows, 10);
        if (t1.tv_sec - t0.tv_sec > 10)
            fail_msg("stopping early took %ld s: the rest was read", (long)(t1.tv_sec - t0.tv_sec));
        assert_int_equal(snap_sum(f, "SELECT count(*) FROM big"), 200000);
    }
    /* The host cancels. */
    f->mh.cancel = 1;
    memset(&c, 0, sizeof c);
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT pg_sleep(30)", count_row, &c),
                     COFFER_ERR_CANCELLED);
    f->mh.cancel = 0;
    assert_int_equal(snap_sum(f, "SELECT count(*) FROM big"), 200000);
    assert_int_equal(admin_long("asterdrive", "SELECT count(*) FROM big"), 0);
}

/* No snapshot: before any dump, after a dump that did not ask (also a
 * 1.0 sink), and a later dump without keep_snapshot ends a kept one. */
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
    assert_int_equal(wait_sessions("asterdrive", 0, 0), 0);

    memdump_free(&f->d);
    memdump_init(&f->d);
    f->d.sink.keep_snapshot = 1;
    f->d.sink.struct_size = offsetof(coffer_dump_sink, keep_snapshot);
    assert_int_equal(f->ops->dump(f->in, &f->d.sink), COFFER_OK);
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT 1", count_row, &c),
                     COFFER_ERR_UNSUPPORTED);
    assert_int_equal(wait_sessions("asterdrive", 0, 0), 0);

    dump_keeping(f);
    assert_int_equal(snap_sum(f, "SELECT count(*) FROM t"), 1000);
    assert_int_equal(admin("asterdrive", "DELETE FROM t WHERE id <= 10", NULL, 0), 0);
    /* A second kept dump replaces the first. */
    dump_keeping(f);
    assert_int_equal(snap_sum(f, "SELECT count(*) FROM t"), 990);
    assert_int_equal(wait_sessions("asterdrive", 1, 1), 1);
    memdump_free(&f->d);
    memdump_init(&f->d);
    assert_int_equal(f->ops->dump(f->in, &f->d.sink), COFFER_OK);
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT 1", count_row, &c),
                     COFFER_ERR_UNSUPPORTED);
    assert_int_equal(wait_sessions("asterdrive", 0, 0), 0);
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
    assert_int_equal(wait_sessions("asterdrive", 0, 0), 0);
}

/* The kept session dies (an administrator ends it): the snapshot is
 * reported lost, also to later calls, never replaced by the live state. */
static void test_session_lost(void **state)
{
    fx *f = *state;
    dump_keeping(f);
    assert_int_equal(snap_sum(f, "SELECT count(*) FROM t"), 1000);
    assert_int_equal(admin("postgres",
                           "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                           " WHERE application_name = 'coffer' AND datname = 'asterdrive'",
                           NULL, 0),
                     0);
    assert_int_equal(wait_sessions("asterdrive", 0, 0), 0);
    counter c = {0};
    coffer_status st = f->ops->query_snapshot(f->in, "SELECT count(*) FROM t", count_row, &c);
    show(f);
    assert_int_not_equal(st, COFFER_OK);
    assert_int_not_equal(st, COFFER_ERR_UNSUPPORTED);
    assert_non_null(strstr(f->mh.last_error, "is lost"));
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT 1", count_row, &c), COFFER_ERR_FAILED);
    assert_non_null(strstr(f->mh.last_error, "lost earlier"));
    assert_int_equal(c.rows, 0);
    /* The next dump starts afresh. */
    dump_keeping(f);
    assert_int_equal(snap_sum(f, "SELECT count(*) FROM t"), 1000);
}

/* Several databases dumped in parallel: the snapshot kept is the first
 * database's, the others end as usual. */
static void test_several_databases(void **state)
{
    fx *f = *state;
    admin("postgres", "DROP DATABASE IF EXISTS snapq_second", NULL, 0);
    assert_int_equal(admin("postgres", "CREATE DATABASE snapq_second OWNER asterdrive", NULL, 0),
                     0);
    f->ops->instance_free(f->in);
    f->in = NULL;
    cf_config_list_add(f->cfg, "databases", "asterdrive", 4, 1);
    cf_config_list_add(f->cfg, "databases", "snapq_second", 4, 1);
    cf_config_set(f->cfg, "jobs", "2", 5, 1);
    assert_int_equal(f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), f->cfg, &f->in),
                     COFFER_OK);
    dump_keeping(f);
    counter c = {0};
    assert_int_equal(f->ops->query_snapshot(
                         f->in, "SELECT 1 WHERE current_database() = 'asterdrive'", count_row, &c),
                     COFFER_OK);
    assert_int_equal(c.rows, 1);
    assert_int_equal(wait_sessions("snapq_second", 0, 0), 0);
    assert_int_equal(coffer_sessions("asterdrive", 1), 1);
    f->ops->instance_free(f->in);
    f->in = NULL;
    assert_int_equal(wait_sessions("asterdrive", 0, 0), 0);
    admin("postgres", "DROP DATABASE snapq_second", NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_abi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sees_the_dump, setup, teardown),
        cmocka_unit_test_setup_teardown(test_statements, setup, teardown),
        cmocka_unit_test_setup_teardown(test_streaming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsupported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_dump, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_several_databases, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
