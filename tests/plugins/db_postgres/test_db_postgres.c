/*
 * database "postgres" against the mock host, no server: option handling,
 * password stripping (URLs, conninfo, child stderr), version parsing and
 * the pg_dump >= server rule, the password file, the children's
 * environment and argv, connection errors. The driver's sources are
 * compiled into this test (COFFER_BUILTIN) to reach its private helpers;
 * everything that needs a server is in the e2e scripts beside this file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db_postgres.h"
#include "engine/run.h"
#include "mock_host.h"
#include "plugin/config.h"
#include "plugin/host.h"

extern const coffer_plugin *coffer_builtin_postgres(const coffer_host *host);

typedef struct fx {
    mock_host mh;
    coffer_config *cfg;
    const coffer_plugin *pl;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    mock_host_init(&f->mh);
    f->cfg = cf_config_new();
    f->pl = coffer_builtin_postgres(&f->mh.host);
    assert_non_null(f->pl);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    cf_config_free(f->cfg);
    mock_host_cleanup(&f->mh);
    free(f);
    unsetenv("COFFER_TEST_PGPW");
    return 0;
}

static coffer_status new_instance(fx *f, pgd_instance **in)
{
    void *inst = NULL;
    coffer_status st = f->pl->database->instance_new(&f->mh.host, mock_hctx(&f->mh), f->cfg, &inst);
    *in = inst;
    return st;
}

/* ---- descriptor and options ---------------------------------------------- */

static void test_descriptor(void **state)
{
    fx *f = *state;
    assert_int_equal(f->pl->kind, COFFER_KIND_DATABASE);
    assert_string_equal(f->pl->name, "postgres");
    const char *want[] = {"url",       "password", "password_env", "password_file",
                          "databases", "jobs",     "sslmode",      "pg_bin_dir"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const coffer_option *o = f->pl->options;
        while (o->name && strcmp(o->name, want[i]) != 0)
            o++;
        assert_non_null(o->name);
        if (strcmp(want[i], "password") == 0)
            assert_true(o->secret);
        if (strcmp(want[i], "url") == 0)
            assert_true(o->required);
    }
}

static void test_options_errors(void **state)
{
    fx *f = *state;
    pgd_instance *in;
    assert_int_equal(new_instance(f, &in), COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "url"));

    cf_config_set(f->cfg, "url", "postgres://u@h:5432/db", 1, 1);
    cf_config_set(f->cfg, "sslmode", "sometimes", 2, 1);
    assert_int_equal(new_instance(f, &in), COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "sslmode"));
    cf_config_set(f->cfg, "sslmode", "require", 2, 1);

    cf_config_set(f->cfg, "jobs", "0", 3, 1);
    assert_int_equal(new_instance(f, &in), COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "jobs"));
    cf_config_set(f->cfg, "jobs", "99", 3, 1);
    assert_int_equal(new_instance(f, &in), COFFER_ERR_INVALID);
    cf_config_set(f->cfg, "jobs", "2", 3, 1);

    cf_config_set(f->cfg, "url", "postgres://u@h:5432/db?sslmode=bogus", 1, 1);
    cf_config_set(f->cfg, "sslmode", "", 2, 1);
    assert_int_equal(new_instance(f, &in), COFFER_ERR_INVALID);

    cf_config_set(f->cfg, "url", "postgres://u:pw@h:5432/db?nosuchparam=1", 1, 1);
    assert_int_equal(new_instance(f, &in), COFFER_ERR_INVALID);
    assert_null(strstr(f->mh.last_error, "pw@"));

    cf_config_set(f->cfg, "url", "postgres://u@h/db", 1, 1);
    cf_config_list_add(f->cfg, "databases", "a", 4, 1);
    cf_config_list_add(f->cfg, "databases", "a", 4, 1);
    assert_int_equal(new_instance(f, &in), COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "twice"));
}

static void test_options_ok(void **state)
{
    fx *f = *state;
    pgd_instance *in;
    cf_config_set(f->cfg, "url",
                  "postgres://app:urlsecret@db.example:6543/asterdrive?sslmode=disable", 1, 1);
    assert_int_equal(new_instance(f, &in), COFFER_OK);
    assert_int_equal(in->ndbs, 1);
    assert_string_equal(in->dbs[0], "asterdrive");
    assert_string_equal(in->password, "urlsecret");
    assert_string_equal(in->display, "postgres://app@db.example:6543/asterdrive");
    assert_int_equal(in->jobs, 1);
    assert_int_equal(f->pl->database->capabilities(in) & COFFER_DBCAP_PARALLEL_DUMP, 0);
    assert_non_null(f->pl->database->capabilities(in) & COFFER_DBCAP_QUERY);
    f->pl->database->instance_free(in);

    /* password_env wins over the URL's; databases listed; sslmode option wins. */
    setenv("COFFER_TEST_PGPW", "envsecret", 1);
    cf_config_set(f->cfg, "password_env", "COFFER_TEST_PGPW", 2, 1);
    cf_config_list_add(f->cfg, "databases", "one", 3, 1);
    cf_config_list_add(f->cfg, "databases", "two", 3, 1);
    cf_config_set(f->cfg, "jobs", "2", 4, 1);
    cf_config_set(f->cfg, "sslmode", "verify-full", 5, 1);
    cf_config_set(f->cfg, "pg_bin_dir", "bin/", 6, 1);
    snprintf(f->mh.root, sizeof f->mh.root, "/srv/app");
    assert_int_equal(new_instance(f, &in), COFFER_OK);
    assert_string_equal(in->password, "envsecret");
    assert_int_equal(in->ndbs, 2);
    assert_string_equal(in->dbs[1], "two");
    assert_string_equal(pgd_params_get(&in->params, "sslmode"), "verify-full");
    assert_string_equal(in->bin_dir, "/srv/app/bin");
    assert_non_null(f->pl->database->capabilities(in) & COFFER_DBCAP_PARALLEL_DUMP);
    f->pl->database->instance_free(in);

    /* No database in the URL: libpq's default, the user name. */
    cf_config_free(f->cfg);
    f->cfg = cf_config_new();
    cf_config_set(f->cfg, "url", "host=/var/run/postgresql user=aster", 1, 1);
    assert_int_equal(new_instance(f, &in), COFFER_OK);
    assert_string_equal(in->dbs[0], "aster");
    assert_null(in->password);
    assert_string_equal(in->display, "postgres://aster@/aster?host=/var/run/postgresql");
    f->pl->database->instance_free(in);
}

/* ---- redaction and connection strings ------------------------------------ */

static void expect_redact(const char *in, const char *want)
{
    char *r = pgd_redact(in);
    assert_non_null(r);
    assert_string_equal(r, want);
    free(r);
}

static void test_redact(void **state)
{
    (void)state;
    expect_redact("postgres://u:s3cret@h:5432/db", "postgres://u@h:5432/db");
    expect_redact("postgresql://u:s3cret@h/db?sslmode=require",
                  "postgresql://u@h/db?sslmode=require");
    expect_redact("postgres://u@h/db", "postgres://u@h/db");
    expect_redact("postgres://h/db?user=u&password=s3cret&sslmode=disable",
                  "postgres://h/db?user=u&password=***&sslmode=disable");
    expect_redact("host=h password=s3cret user=u", "host=h password=*** user=u");
    expect_redact("host=h password = 'se cr\\'et' user=u", "host=h password =*** user=u");
    expect_redact("POSTGRES://u:p%40ss@h/db", "POSTGRES://u@h/db");
    /* Unencoded '/' or '@' in a password: still hidden. */
    expect_redact("postgres://u:a/b@c@h/db", "postgres://u@h/db");
    expect_redact("error at postgres://u:x@h/db: refused", "error at postgres://u@h/db: refused");
    expect_redact("sslpassword=k1 dbname=d", "sslpassword=*** dbname=d");
    expect_redact("no secrets here, passwords are fine", "no secrets here, passwords are fine");
    expect_redact("", "");
}

static void test_params(void **state)
{
    fx *f = *state;
    pgd_instance in = {.magic = COFFER_MAGIC_INSTANCE, .host = &f->mh.host, .h = mock_hctx(&f->mh)};
    pgd_params p;
    char *pw = NULL;
    int dropped = 0;
    assert_int_equal(pgd_params_parse(&in, "url",
                                      "postgres://u:p'w@h:5/db?sslpassword=k&application_name=x",
                                      &p, &pw, &dropped),
                     COFFER_OK);
    assert_string_equal(pw, "p'w");
    assert_true(dropped);
    assert_null(pgd_params_get(&p, "password"));
    assert_null(pgd_params_get(&p, "sslpassword"));
    char *ci = pgd_params_conninfo(&p, "other db", "coffer-pg_dump");
    assert_non_null(ci);
    assert_null(strstr(ci, "p'w"));
    assert_null(strstr(ci, "password"));
    assert_non_null(strstr(ci, "dbname='other db'"));
    assert_non_null(strstr(ci, "application_name='coffer-pg_dump'"));
    assert_null(strstr(ci, "application_name='x'"));
    /* libpq reads back what we wrote. */
    char *err = NULL;
    PQconninfoOption *o = PQconninfoParse(ci, &err);
    assert_non_null(o);
    for (PQconninfoOption *q = o; q->keyword; q++)
        if (strcmp(q->keyword, "dbname") == 0)
            assert_string_equal(q->val, "other db");
    PQconninfoFree(o);
    free(ci);
    char *d = pgd_params_display(&p, NULL);
    assert_string_equal(d, "postgres://u@h:5/db");
    free(d);
    free(pw);
    pgd_params_free(&p);

    /* A value with quotes and backslashes survives the round trip. */
    assert_int_equal(pgd_params_parse(&in, "url", "host=h dbname='a\\'b\\\\c'", &p, &pw, NULL),
                     COFFER_OK);
    assert_null(pw);
    ci = pgd_params_conninfo(&p, NULL, NULL);
    o = PQconninfoParse(ci, &err);
    assert_non_null(o);
    for (PQconninfoOption *q = o; q->keyword; q++)
        if (strcmp(q->keyword, "dbname") == 0)
            assert_string_equal(q->val, "a'b\\c");
    PQconninfoFree(o);
    free(ci);
    pgd_params_free(&p);

    /* A parse error never echoes the password. */
    assert_int_equal(
        pgd_params_parse(&in, "url", "postgres://u:topsecret@h/db?bogus", &p, &pw, NULL),
        COFFER_ERR_INVALID);
    assert_null(strstr(f->mh.last_error, "topsecret"));
    assert_int_equal(pgd_params_parse(&in, "url", "host=h password=topsecret junk", &p, &pw, NULL),
                     COFFER_ERR_INVALID);
    assert_null(strstr(f->mh.last_error, "topsecret"));

    char *k = pgd_rows_key(NULL, "public", "files");
    assert_string_equal(k, "rows.public.files");
    free(k);
    k = pgd_rows_key("db2", "public", "files");
    assert_string_equal(k, "rows.db2/public.files");
    free(k);
}

/* ---- versions ------------------------------------------------------------ */

static void test_versions(void **state)
{
    fx *f = *state;
    assert_int_equal(pgd_parse_version("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"),
                     150020);
    assert_int_equal(pgd_parse_version("15.4"), 150004);
    assert_int_equal(pgd_parse_version("pg_dump (PostgreSQL) 9.6.24"), 90624);
    assert_int_equal(pgd_parse_version("16beta1"), 160000);
    assert_int_equal(pgd_parse_version("pg_restore (PostgreSQL) 17.0"), 170000);
    assert_int_equal(pgd_parse_version("garbage"), 0);
    assert_int_equal(pgd_parse_version(NULL), 0);
    assert_int_equal(pgd_major(150020), 15);
    assert_int_equal(pgd_major(90624), 906);
    char b[16];
    assert_string_equal(pgd_major_str(90624, b, sizeof b), "9.6");
    assert_string_equal(pgd_major_str(160002, b, sizeof b), "16");

    pgd_instance in = {.magic = COFFER_MAGIC_INSTANCE, .host = &f->mh.host, .h = mock_hctx(&f->mh)};
    /* Same major, newer, older minor: fine. */
    assert_int_equal(
        pgd_check_tool_version(&in, "pg_dump", "/x/pg_dump", 150002, "15.2", 150020, "the server"),
        COFFER_OK);
    assert_int_equal(
        pgd_check_tool_version(&in, "pg_dump", "/x/pg_dump", 160000, "16.0", 150020, "the server"),
        COFFER_OK);
    assert_int_equal(
        pgd_check_tool_version(&in, "pg_dump", "/x/pg_dump", 90624, "9.6.24", 90600, "the server"),
        COFFER_OK);
    /* Older major: refused, naming both. */
    assert_int_equal(pgd_check_tool_version(&in, "pg_dump", "/x/pg_dump", 140010, "14.10", 150020,
                                            "the server (PostgreSQL 15.20)"),
                     COFFER_ERR_UNSUPPORTED);
    assert_non_null(strstr(f->mh.last_error, "14.10"));
    assert_non_null(strstr(f->mh.last_error, "15.20"));
    assert_non_null(strstr(f->mh.last_error, "at least version 15"));
    assert_int_equal(
        pgd_check_tool_version(&in, "pg_dump", "/x/pg_dump", 90624, "9.6.24", 100000, "the server"),
        COFFER_ERR_UNSUPPORTED);
}

/* A shell script named tool in dir. */
static void write_script(const char *dir, const char *tool, const char *body)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, tool);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp, "#!/bin/sh\n%s\n", body);
    fclose(fp);
    chmod(path, 0755);
}

static void test_tools(void **state)
{
    fx *f = *state;
    char dir[400];
    snprintf(dir, sizeof dir, "%s/bin", f->mh.tmpdir);
    mkdir(dir, 0700);
    pgd_instance in = {.magic = COFFER_MAGIC_INSTANCE,
                       .host = &f->mh.host,
                       .h = mock_hctx(&f->mh),
                       .bin_dir = dir};
    /* Missing in pg_bin_dir. */
    assert_int_equal(pgd_check_pg_dump(&in, 150020), COFFER_ERR_NOT_FOUND);
    assert_non_null(strstr(f->mh.last_error, "pg_dump"));
    /* An old one. */
    write_script(dir, "pg_dump", "echo 'pg_dump (PostgreSQL) 13.11 (Debian 13.11-1)'");
    assert_int_equal(pgd_check_pg_dump(&in, 150020), COFFER_ERR_UNSUPPORTED);
    assert_non_null(strstr(f->mh.last_error, "13.11"));
    assert_non_null(strstr(f->mh.last_error, "15.20"));
    /* One that fails. */
    in.pg_dump_num = 0;
    write_script(dir, "pg_dump", "echo 'cannot start' >&2; exit 3");
    assert_int_equal(pgd_check_pg_dump(&in, 150020), COFFER_ERR_FAILED);
    assert_non_null(strstr(f->mh.last_error, "exit status 3"));
    assert_non_null(strstr(f->mh.last_error, "cannot start"));
    /* A good one, found through PATH. */
    in.pg_dump_num = 0;
    in.bin_dir = NULL;
    write_script(dir, "pg_dump", "echo 'pg_dump (PostgreSQL) 15.3'");
    char *old = strdup(getenv("PATH"));
    char path[1200];
    snprintf(path, sizeof path, "%s:%s", dir, old);
    setenv("PATH", path, 1);
    coffer_status st = pgd_check_pg_dump(&in, 150020);
    setenv("PATH", old, 1);
    free(old);
    assert_int_equal(st, COFFER_OK);
    assert_int_equal(in.pg_dump_num, 150003);
    assert_non_null(strstr(in.pg_dump, "/bin/pg_dump"));
}

/* ---- password file and children --------------------------------------------- */

static void test_passfile(void **state)
{
    fx *f = *state;
    char *line = pgd_passfile_line("a:b\\c");
    assert_string_equal(line, "*:*:*:*:a\\:b\\\\c\n");
    free(line);
    pgd_instance in = {.magic = COFFER_MAGIC_INSTANCE, .host = &f->mh.host, .h = mock_hctx(&f->mh)};
    char path[512];
    assert_int_equal(pgd_passfile_new(&in, NULL, path, sizeof path), COFFER_OK);
    assert_string_equal(path, "");
    assert_int_equal(pgd_passfile_new(&in, "two\nlines", path, sizeof path), COFFER_ERR_INVALID);
    assert_null(strstr(f->mh.last_error, "two"));
    assert_int_equal(pgd_passfile_new(&in, "s3cret", path, sizeof path), COFFER_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    char copy[512];
    snprintf(copy, sizeof copy, "%s", path);
    pgd_passfile_remove(path);
    assert_string_equal(path, "");
    assert_int_not_equal(access(copy, F_OK), 0);
}

/* The child sees PGPASSFILE (a 0600 file with the password), no
 * PGPASSWORD, and the password nowhere in its argv. */
static void test_child_env(void **state)
{
    fx *f = *state;
    pgd_instance in = {.magic = COFFER_MAGIC_INSTANCE, .host = &f->mh.host, .h = mock_hctx(&f->mh)};
    char dir[400], out[500];
    snprintf(dir, sizeof dir, "%s/envbin", f->mh.tmpdir);
    snprintf(out, sizeof out, "%s/child.txt", f->mh.tmpdir);
    mkdir(dir, 0700);
    char body[1200];
    snprintf(
        body, sizeof body,
        "{ echo \"argv=$*\"; echo \"PGPASSWORD=${PGPASSWORD-unset}\"; echo "
        "\"PGPASSFILE=$PGPASSFILE\";"
        " stat -c 'mode=%%a' \"$PGPASSFILE\"; echo \"content=$(cat \"$PGPASSFILE\")\"; } > '%s';"
        " cat; echo 'done' >&2",
        out);
    write_script(dir, "tool", body);
    setenv("PGPASSWORD", "inherited", 1);
    char pf[512];
    assert_int_equal(pgd_passfile_new(&in, "child-s3cret", pf, sizeof pf), COFFER_OK);
    char tool[500];
    snprintf(tool, sizeof tool, "%s/tool", dir);
    char *argv[] = {tool, "--dbname=host='h' dbname='d'", NULL};
    pgd_child c;
    assert_int_equal(pgd_spawn(&in, tool, argv, pf, 1, 1, &c), COFFER_OK);
    assert_int_equal(write(c.in_fd, "ping", 4), 4);
    close(c.in_fd);
    c.in_fd = -1;
    char buf[16] = "";
    ssize_t n = 0, r;
    while ((r = read(c.out_fd, buf + n, sizeof buf - 1 - (size_t)n)) > 0)
        n += r;
    assert_string_equal(buf, "ping");
    int ws = pgd_child_wait(&c);
    assert_int_equal(ws, 0);
    char tail[200];
    assert_string_equal(pgd_child_errtail(&c, tail, sizeof tail), "done");
    pgd_passfile_remove(pf);
    unsetenv("PGPASSWORD");
    FILE *fp = fopen(out, "r");
    assert_non_null(fp);
    char text[2000] = "";
    size_t len = fread(text, 1, sizeof text - 1, fp);
    text[len] = 0;
    fclose(fp);
    assert_non_null(strstr(text, "PGPASSWORD=unset"));
    assert_non_null(strstr(text, "mode=600"));
    assert_non_null(strstr(text, "content=*:*:*:*:child-s3cret"));
    char *argl = strstr(text, "argv=");
    assert_non_null(argl);
    *strchr(argl, '\n') = 0;
    assert_null(strstr(argl, "s3cret"));

    /* stderr tail is redacted. */
    write_script(dir, "tool2", "echo 'connecting to postgres://u:leaked@h/db failed' >&2; exit 1");
    snprintf(tool, sizeof tool, "%s/tool2", dir);
    char *argv2[] = {tool, NULL};
    assert_int_equal(pgd_spawn(&in, tool, argv2, "", 0, 0, &c), COFFER_OK);
    ws = pgd_child_wait(&c);
    char how[64];
    assert_string_equal(pgd_wait_str(ws, how, sizeof how), "exit status 1");
    pgd_child_errtail(&c, tail, sizeof tail);
    assert_null(strstr(tail, "leaked"));
    assert_non_null(strstr(tail, "postgres://u@h/db"));
}

/* Run a tool that writes its environment's names (and PGPASSFILE) to a file. */
static void env_of_child(fx *f, pgd_instance *in, const char *pf, char *text, size_t len)
{
    char dir[400], out[500], body[700], tool[500];
    snprintf(dir, sizeof dir, "%s/envbin", f->mh.tmpdir);
    snprintf(out, sizeof out, "%s/env.txt", f->mh.tmpdir);
    mkdir(dir, 0700);
    snprintf(body, sizeof body, "env > '%s'", out);
    write_script(dir, "envtool", body);
    snprintf(tool, sizeof tool, "%s/envtool", dir);
    char *argv[] = {tool, NULL};
    pgd_child c;
    assert_int_equal(pgd_spawn(in, tool, argv, pf, 0, 0, &c), COFFER_OK);
    assert_int_equal(pgd_child_wait(&c), 0);
    FILE *fp = fopen(out, "r");
    assert_non_null(fp);
    size_t n = fread(text, 1, len - 1, fp);
    text[n] = 0;
    fclose(fp);
}

static int has_var(const char *text, const char *name)
{
    size_t l = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, name, l) == 0 && p[l] == '=')
            return 1;
    return 0;
}

/* pg_dump/pg_restore get the host's child environment (no secret, the
 * operator's variables kept) plus PGPASSFILE; under a host without the
 * service, only the variables the client programs use. */
static void test_child_env_rule(void **state)
{
    fx *f = *state;
    pgd_instance in = {.magic = COFFER_MAGIC_INSTANCE, .host = &f->mh.host, .h = mock_hctx(&f->mh)};
    setenv("PGPASSWORD", "inherited", 1);
    setenv("UNIT_DB_PASSWORD", "pw1", 1);
    setenv("UNIT_URL", "postgres://u:urlpw@h:5432/db", 1);
    setenv("UNIT_DSN", "host=h password=dsnpw", 1);
    setenv("UNIT_CRED", "credpw", 1);
    setenv("UNIT_API_TOKEN", "tok", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "aws", 1);
    setenv("UNIT_PLAIN_URL", "https://user@h/x", 1);
    setenv("UNIT_KEEP", "yes", 1);
    setenv("LANG", "C.UTF-8", 1);
    cf_child_env_secret("UNIT_CRED"); /* as a policy's password_env would */
    const char *secrets[] = {"PGPASSWORD", "UNIT_DB_PASSWORD",      "UNIT_URL",      "UNIT_DSN",
                             "UNIT_CRED",  "AWS_SECRET_ACCESS_KEY", "UNIT_API_TOKEN"};
    char pf[512];
    assert_int_equal(pgd_passfile_new(&in, "rule-pw", pf, sizeof pf), COFFER_OK);
    char text[16384];

    /* A 1.1 host: the core's rule. */
    const coffer_host *core = cf_host_table();
    f->mh.host.child_env = core->child_env;
    f->mh.host.child_env_free = core->child_env_free;
    env_of_child(f, &in, pf, text, sizeof text);
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        if (has_var(text, secrets[i]))
            fail_msg("%s reached the child", secrets[i]);
    }
    assert_true(has_var(text, "UNIT_KEEP"));
    assert_true(has_var(text, "UNIT_PLAIN_URL"));
    assert_true(has_var(text, "LANG"));
    assert_true(has_var(text, "PATH"));
    assert_true(has_var(text, "PGPASSFILE"));
    assert_non_null(strstr(text, pf));

    /* A 1.0 host: the driver's own allow list. */
    f->mh.host.child_env = NULL;
    f->mh.host.child_env_free = NULL;
    env_of_child(f, &in, pf, text, sizeof text);
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        if (has_var(text, secrets[i]))
            fail_msg("%s reached the child", secrets[i]);
    }
    assert_false(has_var(text, "UNIT_KEEP"));
    assert_true(has_var(text, "LANG"));
    assert_true(has_var(text, "PGPASSFILE"));
    pgd_passfile_remove(pf);

    /* The core's rule itself. */
    assert_true(cf_child_env_is_secret("X_PASSPHRASE=a"));
    assert_true(cf_child_env_is_secret("my_secret_key=a"));
    assert_true(cf_child_env_is_secret("MYSQL_PWD=a"));
    assert_true(cf_child_env_is_secret("DSN=mysql://root:pw@db/app"));
    assert_true(cf_child_env_is_secret("CONN=dbname=app PASSWORD=x"));
    assert_false(cf_child_env_is_secret("PWD=/root"));
    assert_false(cf_child_env_is_secret("OLDPWD=/root"));
    assert_false(cf_child_env_is_secret("SITE=https://example.org/a:b"));
    assert_false(cf_child_env_is_secret("GIT=ssh://git@example.org:22/repo"));
    assert_false(cf_child_env_is_secret("PGPASSFILE=/root/.pgpass"));
    const char *drop[] = {"UNIT_KEEP", NULL};
    const char *add[] = {"LANG=de_DE.UTF-8", NULL};
    char **env = cf_child_env(drop, add);
    assert_non_null(env);
    int lang = 0;
    for (char **e = env; *e; e++) {
        assert_false(strncmp(*e, "UNIT_KEEP=", 10) == 0);
        assert_false(strncmp(*e, "UNIT_CRED=", 10) == 0);
        if (strncmp(*e, "LANG=", 5) == 0) {
            assert_string_equal(*e, "LANG=de_DE.UTF-8");
            lang++;
        }
    }
    assert_int_equal(lang, 1);
    cf_child_env_free(env);

    const char *names[] = {
        "PGPASSWORD", "UNIT_DB_PASSWORD", "UNIT_URL",       "UNIT_DSN",
        "UNIT_CRED",  "UNIT_API_TOKEN",   "UNIT_PLAIN_URL", "AWS_SECRET_ACCESS_KEY",
        "UNIT_KEEP"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        unsetenv(names[i]);
}

/* Without password_env/password_file or a URL password, coffer's PGPASSWORD
 * (libpq's default for its own sessions) is what the children get, through
 * the password file, as they no longer inherit PGPASSWORD. */
static void test_pgpassword_adopted(void **state)
{
    fx *f = *state;
    pgd_instance *in;
    setenv("PGPASSWORD", "from-env", 1);
    cf_config_set(f->cfg, "url", "postgres://app@127.0.0.1:5432/asterdrive", 1, 1);
    assert_int_equal(new_instance(f, &in), COFFER_OK);
    assert_non_null(in->password);
    assert_string_equal(in->password, "from-env");
    f->pl->database->instance_free(in);
    setenv("COFFER_TEST_PGPW", "from-option", 1);
    cf_config_set(f->cfg, "password_env", "COFFER_TEST_PGPW", 1, 1);
    assert_int_equal(new_instance(f, &in), COFFER_OK);
    assert_string_equal(in->password, "from-option");
    f->pl->database->instance_free(in);
    unsetenv("PGPASSWORD");
}

/* ---- connection errors ---------------------------------------------------------- */

static void test_probe_refused(void **state)
{
    fx *f = *state;
    pgd_instance *in;
    /* Port 1 on loopback: nothing listens. */
    cf_config_set(f->cfg, "url",
                  "postgres://app:hidden-pw@127.0.0.1:1/asterdrive?connect_timeout=3", 1, 1);
    assert_int_equal(new_instance(f, &in), COFFER_OK);
    coffer_db_info info = {.struct_size = sizeof info};
    coffer_status st = f->pl->database->probe(in, &info);
    assert_int_not_equal(st, COFFER_OK);
    assert_non_null(strstr(f->mh.last_error, "postgres://app@127.0.0.1:1/asterdrive"));
    assert_null(strstr(f->mh.last_error, "hidden-pw"));
    assert_null(strstr(f->mh.log, "hidden-pw"));
    f->pl->database->instance_free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_descriptor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_options_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_options_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passfile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_env_rule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pgpassword_adopted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
