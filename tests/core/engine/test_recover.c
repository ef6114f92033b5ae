/* core/engine/recover.c: what a set's policy record leaves out (every
 * secret form), the record of a loaded policy, its YAML read back by the
 * policy loader, and a policy rebuilt for another repository location. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/recover.h"
#include "engine/run.h"
#include "engine_test.h"
#include "plugin/registry.h"

static int setup(void **state)
{
    et_dir *d = calloc(1, sizeof *d);
    if (et_dir_new(d) != 0)
        return -1;
    cf_registry_load(NULL, 0);
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    cf_registry_unload();
    et_dir_free(*state);
    free(*state);
    return 0;
}

static void test_secret_keys(void **state)
{
    (void)state;
    static const char *const dropped[] = {
        "password",        "password_env",    "password_file",      "password_command",
        "sslpassword",     "passphrase_env",  "passphrase_file",    "passphrase_command",
        "passfile",        "access_key_env",  "secret_key_env",     "session_token_env",
        "access_key_file", "secret_key_file", "session_token_file", "PGPASSWORD",
        "api_token_file",  "credentials_file"};
    static const char *const kept[] = {
        "url",      "path",    "driver",  "location",     "name",   "ssl_key",
        "ssl_cert", "ca_file", "sslmode", "databases",    "run",    "endpoint",
        "region",   "key",     "bucket",  "metrics_file", "prefix", "query"};
    for (size_t i = 0; i < sizeof dropped / sizeof *dropped; i++)
        if (cf_recover_secret_key(dropped[i]) != 1)
            fail_msg("kept: %s", dropped[i]);
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++)
        if (cf_recover_secret_key(kept[i]) != 0)
            fail_msg("dropped: %s", kept[i]);
}

static void test_strip_values(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        /* URL userinfo: the user stays, the password goes */
        {"postgresql://app:s3cret@db.example:5432/app", "postgresql://app@db.example:5432/app"},
        {"mysql://root:pw@127.0.0.1/db?ssl_mode=required",
         "mysql://root@127.0.0.1/db?ssl_mode=required"},
        {"postgresql://app@db/app", "postgresql://app@db/app"},
        /* URL parameters naming or holding a secret */
        {"postgresql://app@db/app?password=s3cret", "postgresql://app@db/app"},
        {"postgresql://app@db/app?password=s3cret&sslmode=require",
         "postgresql://app@db/app?sslmode=require"},
        {"postgresql://app@db/app?sslmode=require&password=s3cret",
         "postgresql://app@db/app?sslmode=require"},
        {"postgresql://app@db/app?sslmode=require&passfile=/etc/pgpass&connect_timeout=5",
         "postgresql://app@db/app?sslmode=require&connect_timeout=5"},
        {"mysql://app@db/app?password_env=PGCRED", "mysql://app@db/app"},
        {"mysql://app@db/app?password_file=/run/pw&ssl_mode=required",
         "mysql://app@db/app?ssl_mode=required"},
        {"postgresql://app@db/app?sslpassword=k", "postgresql://app@db/app"},
        /* keyword lists */
        {"host=db port=5432 password=s3cret dbname=app", "host=db port=5432 dbname=app"},
        {"password='two words' host=db", "host=db"},
        {"host=db password=x", "host=db"},
        /* commands */
        {"PGPASSWORD=s3cret psql -c 'select 1'", "psql -c 'select 1'"},
        /* no secret: unchanged */
        {"data/asterdrive.db", "data/asterdrive.db"},
        {"cd {root} && doctor --deep", "cd {root} && doctor --deep"},
        {"https://hc.example/ping/abc?x=1", "https://hc.example/ping/abc?x=1"},
        {"a=b&c=d", "a=b&c=d"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int ch = -1;
        char *s = cf_recover_strip_value(cases[i][0], &ch);
        assert_string_equal(s, cases[i][1]);
        assert_int_equal(ch, strcmp(cases[i][0], cases[i][1]) != 0);
        free(s);
    }
}

static void test_strip_tree(void **state)
{
    (void)state;
    json_error_t e;
    json_t *t = json_loads(
        "{\"name\": \"app\", \"root\": \"/srv/app\","
        " \"targets\": [{\"name\": \"t\", \"location\": \"s3://b/p\", \"passphrase_env\": "
        "\"PASSVAR1\","
        "   \"secret_key_env\": \"SKVAR2\", \"access_key_file\": \"/run/akfile3\","
        "   \"endpoint\": \"http://127.0.0.1:7480\"},"
        "  {\"name\": \"u\", \"location\": \"/srv/r\", \"passphrase_file\": \"/run/ppfile4\"},"
        "  {\"name\": \"v\", \"location\": \"/srv/v\", \"passphrase_command\": \"pass show pp5\"}],"
        " \"components\": [{\"name\": \"db\", \"type\": \"database\", \"driver\": \"postgres\","
        "   \"url\": \"postgresql://app:urlpw6@db:5432/app?password=parampw7&sslmode=require\","
        "   \"password_env\": \"PWVAR8\", \"password_file\": \"/run/pwfile9\","
        "   \"databases\": [\"app\", \"mysql://r:listpw10@h/x\"]},"
        "  {\"name\": \"f\", \"type\": \"files\", \"paths\": [\"data/\"]}],"
        " \"hooks\": {\"after\": \"PGPASSWORD=hookpw11 true\"}}",
        0, &e);
    assert_non_null(t);
    json_t *removed = json_array();
    cf_recover_strip(t, removed);
    char *dump = json_dumps(t, 0);
    static const char *const secrets[] = {
        "PASSVAR1", "SKVAR2",  "akfile3",  "ppfile4",  "pp5",        "urlpw6",  "parampw7",
        "PWVAR8",   "pwfile9", "listpw10", "hookpw11", "passphrase", "password"};
    for (size_t i = 0; i < sizeof secrets / sizeof *secrets; i++)
        if (strstr(dump, secrets[i]))
            fail_msg("%s left in %s", secrets[i], dump);
    static const char *const kept[] = {"\"/srv/app\"",
                                       "s3://b/p",
                                       "http://127.0.0.1:7480",
                                       "postgresql://app@db:5432/app?sslmode=require",
                                       "\"app\"",
                                       "mysql://r@h/x",
                                       "\"data/\"",
                                       "\"true\""};
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++)
        if (!strstr(dump, kept[i]))
            fail_msg("%s lost: %s", kept[i], dump);
    free(dump);
    /* each removal is listed where it was, never with its value */
    char *r = json_dumps(removed, JSON_SORT_KEYS);
    assert_non_null(strstr(r, "{\"key\": \"passphrase_env\", \"path\": \"targets[0]\"}"));
    assert_non_null(strstr(r, "{\"key\": \"password_env\", \"path\": \"components[0]\"}"));
    assert_non_null(strstr(r, "{\"key\": \"url\", \"path\": \"components[0]\", \"value\": true}"));
    assert_null(strstr(r, "PWVAR8"));
    assert_int_equal(json_array_size(removed), 10); /* 7 keys, 3 values */
    free(r);
    json_decref(removed);
    json_decref(t);
}

/* A record from an unencrypted repository keeps nothing that runs a program. */
static void test_untrusted(void **state)
{
    (void)state;
    json_error_t e;
    json_t *rec = json_loads(
        "{\"version\": 1, \"policy\": {\"name\": \"a\", \"root\": \"/r\","
        " \"consistency\": {\"mode\": \"maintenance\", \"stop\": \"evil-stop\", \"start\": "
        "\"evil-start\"},"
        " \"hooks\": {\"after\": \"evil-hook\"}, \"validate\": [{\"name\": \"v\", \"run\": "
        "\"evil-validate\"}],"
        " \"targets\": [{\"name\": \"t\", \"location\": \"/x\", \"passphrase_command\": "
        "\"evil-pp\"}],"
        " \"components\": [{\"name\": \"db\", \"type\": \"database\", \"driver\": \"postgres\","
        "   \"url\": \"postgres://u@h/d\", \"pg_bin_dir\": \"/tmp/evil-bin\"}]}}",
        0, &e);
    assert_non_null(rec);
    cf_recover_untrusted(rec);
    char *d = json_dumps(rec, 0);
    assert_null(strstr(d, "evil"));
    assert_non_null(strstr(d, "postgres://u@h/d"));
    assert_non_null(strstr(d, "\"stop\": \"true\""));
    free(d);
    json_decref(rec);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_record_and_back(void **state)
{
    et_dir *d = *state;
    char file[512], root[400];
    snprintf(root, sizeof root, "%s/root", d->path);
    snprintf(file, sizeof file, "%s/p.yaml", d->path);
    setenv("REC_ROOT", root, 1);
    setenv("REC_SECRET_VAR", "RECPASS", 1);
    setenv("RECPASS", "never-recorded", 1);
    write_file(file, "name: rec\n"
                     "root: ${REC_ROOT}\n"
                     "targets:\n"
                     "  - name: main\n"
                     "    location: ${REC_ROOT}/../repo\n"
                     "    passphrase_env: ${REC_SECRET_VAR}\n"
                     "components:\n"
                     "  - name: data\n"
                     "    type: files\n"
                     "    paths: [data/]\n"
                     "  - name: db\n"
                     "    type: database\n"
                     "    driver: sqlite\n"
                     "    path: ${REC_ROOT}/data/app.db\n"
                     "  - name: conf\n"
                     "    type: files\n"
                     "    paths: [conf]\n"
                     "validate:\n"
                     "  - name: v\n"
                     "    run: |\n"
                     "      echo $$HOME costs $$5\n"
                     "      test -f {root}/conf\n");
    cf_policy *p;
    assert_int_equal(cf_run_load_policy(file, &p), 0);
    json_t *rec = cf_policy_record(p);
    assert_non_null(rec);
    json_t *pol = json_object_get(rec, "policy");
    assert_string_equal(json_string_value(json_object_get(pol, "root")), root);
    json_t *t0 = json_array_get(json_object_get(pol, "targets"), 0);
    assert_null(json_object_get(t0, "passphrase_env"));
    assert_string_equal(
        json_string_value(
            json_object_get(rec, "removed")
                ? json_object_get(json_array_get(json_object_get(rec, "removed"), 0), "key")
                : NULL),
        "passphrase_env");
    /* restore order, and where the database lives (relative to root) */
    json_t *order = json_object_get(rec, "restore_order");
    assert_int_equal(json_array_size(order), 3);
    assert_string_equal(json_string_value(json_array_get(order, 0)), "data");
    assert_string_equal(json_string_value(json_array_get(order, 2)), "conf");
    json_t *db = json_array_get(json_object_get(rec, "databases"), 0);
    assert_string_equal(json_string_value(json_object_get(db, "name")), "db");
    assert_string_equal(json_string_value(json_object_get(db, "path")), "data/app.db");
    assert_true(json_is_false(json_object_get(db, "server")));
    char *all = json_dumps(rec, 0);
    assert_null(strstr(all, "RECPASS"));
    assert_null(strstr(all, "never-recorded"));
    free(all);

    /* The YAML reads back as the same policy ($ kept literal). */
    char *y = cf_recover_yaml(rec);
    assert_non_null(strstr(y, "# passphrase_env: ..."));
    cf_policy *q;
    assert_int_equal(cf_policy_load_string("shown", y, strlen(y), &q), 0);
    assert_string_equal(q->root, root);
    assert_int_equal(q->ncomponents, 3);
    assert_string_equal(q->validate[0].run, p->validate[0].run);
    assert_non_null(strstr(q->validate[0].run, "$HOME costs $5"));
    assert_null(q->targets[0].passphrase_env);
    cf_policy_free(q);
    free(y);

    /* Rebuilt for another location: one target there. */
    char loc[512];
    snprintf(loc, sizeof loc, "%s/elsewhere", d->path);
    assert_int_equal(cf_recover_policy(rec, loc, &q), 0);
    assert_int_equal(q->ntargets, 1);
    assert_string_equal(q->targets[0].location, loc);
    assert_string_equal(q->components[1].driver, "sqlite");
    cf_policy_free(q);

    /* A set without a record: its files components from the header. */
    json_t *h = json_pack("{s:s,s:s,s:[{s:s,s:s,s:[s]},{s:s,s:s},{s:s,s:s,s:[s]}]}", "policy",
                          "old", "root", root, "components", "name", "data", "type", "files",
                          "paths", "data/", "name", "db", "type", "database", "name", "conf",
                          "type", "files", "paths", "conf");
    assert_int_equal(cf_recover_policy_files(h, loc, &q), 0);
    assert_int_equal(q->ncomponents, 2);
    assert_string_equal(q->components[1].name, "conf");
    cf_policy_free(q);
    json_decref(h);
    json_decref(rec);
    cf_policy_free(p);
}

int main(void)
{
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_secret_keys), T(test_strip_values),    T(test_strip_tree),
        T(test_untrusted),   T(test_record_and_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
