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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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
    snprintf(srvdir, sizeof srvdir, "/tmp/coffer-pgreh-%d", (int)getpid());
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
    setenv("COFFER_TEST_PGREH_PW", pg_password, 1);
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

/* Run SQL as the superuser in database db; returns psql's output (first line). */
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
             "PGOPTIONS='-c client_min_messages=warning' runuser -u postgres -- %s -At -d %s -f %s",
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
    f->pl = coffer_builtin_postgres(&f->mh.host);
    f->ops = f->pl->database;
    char url[300];
    snprintf(url, sizeof url, "postgres://asterdrive@127.0.0.1:%s/asterdrive", pg_port);
    cf_config_set(f->cfg, "url", url, 1, 1);
    cf_config_set(f->cfg, "password_env", "COFFER_TEST_PGREH_PW", 2, 1);
    cf_config_set(f->cfg, "pg_bin_dir", pg_bin, 3, 1);
    assert_int_equal(f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), f->cfg, &f->in),
                     COFFER_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    /* No message, no log line ever shows the password. */
    assert_null(strstr(f->mh.last_error, pg_password));
    assert_null(strstr(f->mh.log, pg_password));
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
    assert_true(f->ops->struct_size >=
                offsetof(coffer_database_ops, scratch_drop) + sizeof(void *));
    assert_non_null(f->ops->query_target);
    assert_non_null(f->ops->scratch_create);
    assert_non_null(f->ops->scratch_drop);
}

static void test_stream_many(void **state)
{
    fx *f = *state;
    counter c = {0};
    coffer_status st = f->ops->query_target(f->in, NULL,
                                            "SELECT g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'row ' "
                                            "|| g END FROM generate_series(1, 200000) g",
                                            count_row, &c);
    assert_int_equal(st, COFFER_OK);
    assert_int_equal(c.rows, 200000);
    assert_int_equal(c.ncols, 2);
    assert_int_equal(c.nulls, 66666);
    assert_int_equal(c.sum, 200000L * 200001L / 2);
    /* The 1.0 query takes the same path. */
    counter d = {0};
    assert_int_equal(f->ops->query(f->in, "SELECT NULL::text, 1", count_row, &d), COFFER_OK);
    assert_int_equal(d.rows, 1);
    assert_int_equal(d.nulls, 1);
    /* No rows at all. */
    counter e = {0};
    assert_int_equal(f->ops->query_target(f->in, NULL, "SELECT 1 WHERE false", count_row, &e),
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
    fx *f = *state;
    long before = maxrss_kib();
    counter c = {0};
    coffer_status st = f->ops->query_target(
        f->in, NULL, "SELECT g, repeat('x', 100) FROM generate_series(1, 1000000) g", count_row,
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
    fx *f = *state;
    counter c = {.stop_after = 10};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    coffer_status st = f->ops->query_target(
        f->in, NULL, "SELECT g FROM generate_series(1, 50000000) g", count_row, &c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(st, COFFER_OK);
    assert_int_equal(c.rows, 10);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (secs > 10)
        fail_msg("stopping early took %.1f s: the rest was read", secs);
    /* No session of ours is left running the statement. */
    char out[64];
    for (int i = 0; i < 50; i++) {
        admin("postgres",
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
    fx *f = *state;
    f->mh.cancel = 1;
    counter c = {0};
    coffer_status st = f->ops->query_target(f->in, NULL, "SELECT pg_sleep(30)", count_row, &c);
    f->mh.cancel = 0;
    assert_int_equal(st, COFFER_ERR_CANCELLED);
}

static void test_refused(void **state)
{
    fx *f = *state;
    counter c = {0};
    assert_int_equal(f->ops->query_target(f->in, NULL, "SELEKT 1", count_row, &c),
                     COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "syntax error"));
    show(f);
    assert_non_null(strstr(f->mh.last_error, "127.0.0.1"));
    assert_int_equal(
        f->ops->query_target(f->in, NULL, "SELECT nosuchcol FROM nosuchtable", count_row, &c),
        COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "nosuchtable"));
    assert_int_equal(
        f->ops->query_target(f->in, NULL, "CREATE TABLE sneaky (x int)", count_row, &c),
        COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "read-only"));
    assert_int_equal(
        f->ops->query_target(f->in, NULL, "SELECT 1; CREATE TABLE sneaky (x int)", count_row, &c),
        COFFER_ERR_INVALID);
    assert_int_equal(f->ops->query(f->in, "DROP TABLE IF EXISTS anything", count_row, &c),
                     COFFER_ERR_INVALID);
    assert_int_equal(f->ops->query_target(f->in, NULL, "", count_row, &c), COFFER_ERR_INVALID);
    char out[64];
    admin("asterdrive", "SELECT count(*) FROM pg_class WHERE relname = 'sneaky'", out, sizeof out);
    assert_string_equal(out, "0");
    assert_int_equal(c.rows, 0);
}

/* Scratch: create, restore a dump of the application's database into it,
 * verify and query it there, drop it. */
static void test_scratch_roundtrip(void **state)
{
    fx *f = *state;
    assert_int_equal(
        admin("asterdrive",
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
    admin("postgres", "DROP DATABASE IF EXISTS coffer_rehearse_abcd1234_0a1b2c3d", NULL, 0);
    char target[1024];
    assert_int_equal(f->ops->scratch_create(f->in, NULL, name, target, sizeof target), COFFER_OK);
    char want[300];
    snprintf(want, sizeof want, "postgres://asterdrive@127.0.0.1:%s/%s", pg_port, name);
    assert_string_equal(target, want);
    assert_null(strstr(target, pg_password));

    /* Into the fresh, empty database: no --force needed. */
    coffer_restore_opts o = {
        .struct_size = sizeof o, .root = f->mh.tmpdir, .target = target, .create = 1};
    assert_int_equal(f->ops->restore(f->in, &d.src, &o), COFFER_OK);
    assert_int_equal(f->ops->verify(f->in, &d.src, &o, NULL, NULL), COFFER_OK);
    counter c = {0};
    assert_int_equal(
        f->ops->query_target(f->in, &o, "SELECT id, size FROM files ORDER BY id", count_row, &c),
        COFFER_OK);
    assert_int_equal(c.rows, 5000);
    assert_int_equal(c.nulls, 1000);
    counter cur = {0};
    assert_int_equal(
        f->ops->query_target(f->in, &o,
                             "SELECT current_database() = 'coffer_rehearse_abcd1234_0a1b2c3d'",
                             count_row, &cur),
        COFFER_OK);
    assert_int_equal(cur.rows, 1);

    /* A second restore into it now needs --force, as for any database. */
    assert_int_equal(f->ops->restore(f->in, &d.src, &o), COFFER_ERR_EXISTS);

    /* Drop even while another session is connected to it. */
    char dsn[400];
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%s user=asterdrive dbname=%s password=%s",
             pg_port, name, pg_password);
    PGconn *other = PQconnectdb(dsn);
    assert_int_equal(PQstatus(other), CONNECTION_OK);
    assert_int_equal(f->ops->scratch_drop(f->in, NULL, name), COFFER_OK);
    PQfinish(other);
    char out[64];
    admin("postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'coffer_rehearse_%'",
          out, sizeof out);
    assert_string_equal(out, "0");
    /* Gone already: not an error. */
    assert_int_equal(f->ops->scratch_drop(f->in, NULL, name), COFFER_OK);
    memdump_free(&d);
}

/* Another server named by URL (here the same one, with another database
 * part and a parameter that must survive); its database part is ignored. */
static void test_scratch_other_server(void **state)
{
    fx *f = *state;
    char server[300];
    snprintf(server, sizeof server,
             "postgresql://asterdrive@127.0.0.1:%s/ignored?sslmode=disable&connect_timeout=5",
             pg_port);
    const char *name = "coffer_rehearse_other_1";
    char target[1024];
    assert_int_equal(f->ops->scratch_create(f->in, server, name, target, sizeof target), COFFER_OK);
    assert_null(strstr(target, "ignored"));
    assert_non_null(strstr(target, "/coffer_rehearse_other_1?"));
    assert_non_null(strstr(target, "sslmode=disable"));
    coffer_restore_opts o = {.struct_size = sizeof o, .root = f->mh.tmpdir, .target = target};
    counter c = {0};
    assert_int_equal(f->ops->query_target(f->in, &o, "SELECT current_database()", count_row, &c),
                     COFFER_OK);
    assert_int_equal(c.rows, 1);
    /* Too small a buffer: refused before anything is created. */
    char tiny[16];
    assert_int_equal(
        f->ops->scratch_create(f->in, server, "coffer_rehearse_other_2", tiny, sizeof tiny),
        COFFER_ERR_INVALID);
    assert_int_equal(f->ops->scratch_drop(f->in, server, name), COFFER_OK);
    char out[64];
    admin("postgres",
          "SELECT count(*) FROM pg_database WHERE datname LIKE 'coffer_rehearse_other%'", out,
          sizeof out);
    assert_string_equal(out, "0");
}

static void test_scratch_exists(void **state)
{
    fx *f = *state;
    admin("postgres",
          "DROP DATABASE IF EXISTS coffer_rehearse_taken; CREATE DATABASE coffer_rehearse_taken",
          NULL, 0);
    admin("coffer_rehearse_taken", "CREATE TABLE keep (x int); INSERT INTO keep VALUES (42)", NULL,
          0);
    char target[1024] = "";
    assert_int_equal(
        f->ops->scratch_create(f->in, NULL, "coffer_rehearse_taken", target, sizeof target),
        COFFER_ERR_EXISTS);
    assert_non_null(strstr(f->mh.last_error, "coffer_rehearse_taken"));
    assert_string_equal(target, "");
    char out[64];
    admin("coffer_rehearse_taken", "SELECT x FROM keep", out, sizeof out);
    assert_string_equal(out, "42");
    admin("postgres", "DROP DATABASE coffer_rehearse_taken", NULL, 0);
}

static void test_scratch_bad_names(void **state)
{
    fx *f = *state;
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
        pgd_scratch_name_ok("coffer_rehearse_01234567890123456789012345678901234567890123456"));
    assert_false(
        pgd_scratch_name_ok("coffer_rehearse_012345678901234567890123456789012345678901234567"));
    char out[64];
    admin("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'asterdrive'", out,
          sizeof out);
    assert_string_equal(out, "1");
}

static void test_scratch_no_createdb(void **state)
{
    fx *f = *state;
    char sql[400];
    snprintf(sql, sizeof sql,
             "DROP ROLE IF EXISTS nocreate; CREATE ROLE nocreate LOGIN NOCREATEDB PASSWORD '%s'",
             pg_password);
    assert_int_equal(admin("postgres", sql, NULL, 0), 0);
    char server[300];
    snprintf(server, sizeof server, "postgres://nocreate@127.0.0.1:%s/postgres", pg_port);
    char target[1024];
    assert_int_equal(
        f->ops->scratch_create(f->in, server, "coffer_rehearse_denied", target, sizeof target),
        COFFER_ERR_AUTH);
    char where[100];
    snprintf(where, sizeof where, "nocreate@127.0.0.1:%s", pg_port);
    show(f);
    assert_non_null(strstr(f->mh.last_error, where));
    assert_non_null(strstr(f->mh.last_error, "CREATEDB"));
    /* A password in the server URL is used, never shown. */
    snprintf(server, sizeof server, "postgres://nocreate:%s@127.0.0.1:%s/postgres", pg_password,
             pg_port);
    assert_int_equal(
        f->ops->scratch_create(f->in, server, "coffer_rehearse_denied", target, sizeof target),
        COFFER_ERR_AUTH);
    assert_non_null(strstr(f->mh.last_error, "CREATEDB"));
    /* Wrong password: AUTH too. */
    snprintf(server, sizeof server, "postgres://nocreate:wrong-pw@127.0.0.1:%s/postgres", pg_port);
    assert_int_equal(
        f->ops->scratch_create(f->in, server, "coffer_rehearse_denied", target, sizeof target),
        COFFER_ERR_AUTH);
    assert_null(strstr(f->mh.last_error, "wrong-pw"));
    admin("postgres", "DROP ROLE nocreate", NULL, 0);
}

static void test_uri(void **state)
{
    fx *f = *state;
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
        cmocka_unit_test_setup_teardown(test_abi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uri, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancelled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scratch_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scratch_other_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scratch_exists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scratch_bad_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scratch_no_createdb, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
