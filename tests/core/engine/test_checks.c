/* core/engine/checks.c: application checks against a real restore. A
 * policy over a temporary root (files and a SQLite database that
 * references them) is backed up, restored into a separate directory, the
 * restored tree is damaged on purpose, and every check type runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "engine/backup.h"
#include "engine/checks.h"
#include "engine/restore.h"
#include "engine/run.h"
#include "engine_test.h"
#include "plugin/registry.h"

/* AddressSanitizer's quarantine keeps freed memory resident, and
 * ThreadSanitizer's shadow memory grows with it: peak RSS says nothing
 * there, so only the results are checked. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define RSS_CHECKED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define RSS_CHECKED 0
#endif
#endif
#ifndef RSS_CHECKED
#define RSS_CHECKED 1
#endif

typedef struct fx {
    et_dir d;
    char root[300], repo[300], out[300];
} fx;

static void sh(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = cf_vasprintf(fmt, ap);
    va_end(ap);
    if (system(cmd) != 0)
        fail_msg("command failed: %s", cmd);
    free(cmd);
}

static void put(const char *dir, const char *rel, const char *content)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    assert_int_equal(et_write_str(p, content), 0);
}

static void sql(const char *path, const char *text)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *err = NULL;
    if (sqlite3_exec(db, text, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("sqlite: %s", err);
    sqlite3_close(db);
}

static char *sha256_hex(const char *s)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL), 1);
    char *hex = calloc(1, 2 * n + 1);
    for (unsigned i = 0; i < n; i++)
        sprintf(hex + 2 * i, "%02x", md[i]);
    return hex;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (et_dir_new(&f->d) != 0)
        return -1;
    setenv("COFFER_WORKERS", "2", 1);
    snprintf(f->root, sizeof f->root, "%s/app", f->d.path);
    snprintf(f->repo, sizeof f->repo, "%s/repo", f->d.path);
    snprintf(f->out, sizeof f->out, "%s/restored", f->d.path);
    sh("mkdir -p '%s/data/uploads/sub' '%s/data/cache'", f->root, f->root);
    put(f->root, "data/uploads/a.txt", "hello\n");
    put(f->root, "data/uploads/b.txt", "bbb");
    put(f->root, "data/uploads/size.txt", "abc");
    put(f->root, "data/uploads/sha.txt", "same size");
    put(f->root, "data/uploads/orphan.txt", "nobody");
    put(f->root, "data/uploads/.keep", "");
    put(f->root, "data/uploads/sub/c.txt", "c");
    put(f->root, "data/uploads/sub/orphan2.txt", "nobody either");
    put(f->root, "data/cache/x.tmp", "tmp");
    sh("ln -s sub '%s/data/uploads/link'", f->root);
    char db[400];
    snprintf(db, sizeof db, "%s/data/app.db", f->root);
    char *sha = sha256_hex("hello\n");
    char *text = cf_asprintf(
        "CREATE TABLE files(id INTEGER PRIMARY KEY, path TEXT, size INT, sha TEXT);"
        "INSERT INTO files(path, size, sha) VALUES"
        " ('data/uploads/a.txt', 6, '%s'),"
        " ('%s/data/uploads/b.txt', NULL, NULL),"
        " ('data/uploads/sub/c.txt', 1, NULL),"
        " ('data/uploads/missing.txt', 1, NULL),"
        " ('data/uploads/size.txt', 4, NULL),"
        " ('data/uploads/sha.txt', 9, '%s'),"
        " ('../x', NULL, NULL),"
        " ('/etc/passwd', NULL, NULL),"
        " ('data/cache/x.tmp', NULL, NULL),"
        " ('data/uploads/link/c.txt', NULL, NULL);"
        "CREATE TABLE folders(id INTEGER PRIMARY KEY, parent INT, name TEXT);"
        "INSERT INTO folders VALUES (1, NULL, 'root'), (2, 1, 'a'), (3, 99, 'lost'), (4, 98, NULL);",
        sha, f->root, sha);
    sql(db, text);
    free(text);
    free(sha);
    cf_registry_load(NULL, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    cf_registry_unload();
    unsetenv("COFFER_WORKERS");
    et_dir_free(&f->d);
    free(f);
    return 0;
}

static cf_run *open_run(fx *f, const char *checks, int open_repo)
{
    char *y = cf_asprintf("version: 1\n"
                          "name: app\n"
                          "root: %s\n"
                          "targets:\n"
                          "  - name: local\n"
                          "    location: %s\n"
                          "    fsync: false\n"
                          "components:\n"
                          "  - name: database\n"
                          "    type: database\n"
                          "    driver: sqlite\n"
                          "    path: data/app.db\n"
                          "  - name: uploads\n"
                          "    type: files\n"
                          "    paths: [data/uploads]\n"
                          "  - name: all\n"
                          "    type: files\n"
                          "    paths: [data]\n"
                          "    exclude: [data/uploads]\n"
                          "checks:\n"
                          "%s",
                          f->root, f->repo, checks);
    cf_policy *p;
    if (cf_policy_load_string("policy.yaml", y, strlen(y), &p) != 0)
        fail_msg("policy: %s", cf_error());
    free(y);
    if (cf_policy_check_drivers(p, cf_registry_options, NULL) != 0)
        fail_msg("policy drivers: %s", cf_error());
    cf_run *run = cf_calloc(1, sizeof *run);
    run->policy = p;
    run->no_progress = 1;
    if (cf_run_open_target(run, &p->targets[0], open_repo) != 0)
        fail_msg("open target: %s", cf_error());
    return run;
}

/* Back up, restore into f->out; returns the run (repository open), the set
 * id and the restore report. */
static cf_run *backup_restore(fx *f, const char *checks, char **set_id, json_t **report)
{
    cf_run *run = open_run(f, checks, 0);
    assert_int_equal(cf_store_prepare(run->store, 1), 0);
    assert_int_equal(cf_repo_init(run->store, NULL), 0);
    cf_run_close(run);
    run = open_run(f, checks, 1);
    json_t *sum = NULL;
    if (cf_backup(run, set_id, &sum) != 0)
        fail_msg("backup: %s", cf_error());
    json_decref(sum);
    cf_restore_opts o = {.set = *set_id, .to = f->out, .no_validate = 1};
    int rc = cf_restore(run, &o, report);
    if (rc != CF_EXIT_OK && rc != CF_EXIT_PROBLEMS)
        fail_msg("restore: %s", cf_error());
    return run;
}

typedef struct outcome {
    cf_run *run;
    char *set;
    json_t *report, *out;
    int failed;
} outcome;

static void run_checks(fx *f, const char *checks, void (*damage)(fx *f), outcome *o)
{
    memset(o, 0, sizeof *o);
    o->run = backup_restore(f, checks, &o->set, &o->report);
    if (damage)
        damage(f);
    cf_checks_env e = {.run = o->run, .set_id = o->set, .root = f->out,
                       .driver_checks = json_object_get(o->report, "checks")};
    o->out = json_array();
    o->failed = cf_checks_run(&e, o->out);
    if (getenv("TEST_VERBOSE")) {
        char *s = json_dumps(o->out, JSON_INDENT(2));
        print_message("%s\n", s);
        free(s);
    }
}

static void outcome_free(outcome *o)
{
    json_decref(o->out);
    json_decref(o->report);
    free(o->set);
    cf_run_close(o->run);
}

static json_t *entry(outcome *o, size_t i)
{
    json_t *e = json_array_get(o->out, i);
    assert_non_null(e);
    return e;
}

static const char *jstr(json_t *e, const char *k)
{
    const char *s = json_string_value(json_object_get(e, k));
    return s ? s : "";
}

static long long jint(json_t *e, const char *k)
{
    return (long long)json_integer_value(json_object_get(e, k));
}

static void assert_first(json_t *e, const char *const *want, size_t n)
{
    json_t *first = json_object_get(e, "first");
    if (json_array_size(first) != n) {
        char *s = json_dumps(first, 0);
        fail_msg("first: %s, expected %zu entries", s, n);
    }
    for (size_t i = 0; i < n; i++)
        assert_string_equal(json_string_value(json_array_get(first, i)), want[i]);
}

/* ---- references ------------------------------------------------------------ */

static void damage_refs(fx *f)
{
    /* rewritten after the database recorded its hash */
    sh("printf 'SAME SIZE' > '%s/data/uploads/sha.txt'", f->out);
}

static void references(void **state)
{
    fx *f = *state;
    outcome o;
    run_checks(f,
               "  - name: refs\n"
               "    type: references\n"
               "    database: database\n"
               "    query: SELECT path, size, sha FROM files ORDER BY id\n"
               "    component: uploads\n"
               "    show: 20\n"
               "  - name: refs-warn\n"
               "    type: references\n"
               "    database: database\n"
               "    query: SELECT path FROM files ORDER BY id\n"
               "    component: uploads\n"
               "    level: warn\n"
               "    show: 2\n"
               "  - name: prefixed\n"
               "    type: references\n"
               "    database: database\n"
               "    query: SELECT 'a.txt', 6 UNION ALL SELECT 'sub/c.txt', 1\n"
               "    component: uploads\n"
               "    prefix: data/uploads/\n",
               damage_refs, &o);
    assert_int_equal(o.failed, 1);
    assert_int_equal(json_array_size(o.out), 3);
    json_t *e = entry(&o, 0);
    assert_string_equal(jstr(e, "name"), "refs");
    assert_string_equal(jstr(e, "type"), "references");
    assert_string_equal(jstr(e, "level"), "fail");
    assert_string_equal(jstr(e, "status"), "fail");
    assert_int_equal(jint(e, "rows"), 10);
    assert_int_equal(jint(e, "problems"), 7);
    static const char *const want[] = {
        "data/uploads/missing.txt: missing",
        "data/uploads/size.txt: size 3 != recorded 4",
        "data/uploads/sha.txt: sha256 differs",
        "../x: not a plain path",
        "/etc/passwd: outside the policy root",
        "data/cache/x.tmp: outside component 'uploads'",
        "data/uploads/link/c.txt: missing", /* through a symbolic link: not followed */
    };
    assert_first(e, want, 7);
    assert_has(jstr(e, "detail"), "7 of 10 paths with problems: data/uploads/missing.txt: missing");

    /* level warn, show limits the names */
    e = entry(&o, 1);
    assert_string_equal(jstr(e, "status"), "warn");
    assert_string_equal(jstr(e, "level"), "warn");
    assert_int_equal(jint(e, "problems"), 5);
    static const char *const want2[] = {"data/uploads/missing.txt: missing", "../x: not a plain path"};
    assert_first(e, want2, 2);
    assert_has(jstr(e, "detail"), ", ...");

    /* prefix: rows relative to a folder */
    e = entry(&o, 2);
    assert_string_equal(jstr(e, "status"), "pass");
    assert_int_equal(jint(e, "rows"), 2);
    assert_int_equal(jint(e, "problems"), 0);
    assert_int_equal(json_array_size(json_object_get(e, "first")), 0);
    assert_string_equal(jstr(e, "detail"), "2 paths");
    outcome_free(&o);
}

static void damage_missing_only(fx *f)
{
    sh("rm '%s/data/uploads/a.txt' '%s/data/uploads/sub/c.txt'", f->out, f->out);
}

static void references_missing_summary(void **state)
{
    fx *f = *state;
    outcome o;
    run_checks(f,
               "  - name: refs\n"
               "    type: references\n"
               "    database: database\n"
               "    query: SELECT path FROM files WHERE id IN (1, 2, 3)\n"
               "    component: uploads\n",
               damage_missing_only, &o);
    json_t *e = entry(&o, 0);
    assert_string_equal(jstr(e, "status"), "fail");
    assert_string_equal(jstr(e, "detail"),
                        "2 of 3 paths missing: data/uploads/a.txt: missing, "
                        "data/uploads/sub/c.txt: missing");
    outcome_free(&o);
}

/* ---- orphans ----------------------------------------------------------------- */

static void orphans(void **state)
{
    fx *f = *state;
    outcome o;
    run_checks(f,
               "  - name: stray\n"
               "    type: orphans\n"
               "    database: database\n"
               "    query: SELECT path FROM files\n"
               "    component: uploads\n"
               "    exclude: ['**/.keep']\n"
               "  - name: stray-sub\n"
               "    type: orphans\n"
               "    database: database\n"
               "    query: SELECT path FROM files\n"
               "    component: uploads\n"
               "    under: [data/uploads/sub]\n"
               "    level: fail\n"
               "  - name: all\n"
               "    type: orphans\n"
               "    database: database\n"
               "    query: SELECT path FROM files\n"
               "    component: all\n",
               NULL, &o);
    assert_int_equal(o.failed, 1);
    json_t *e = entry(&o, 0);
    assert_string_equal(jstr(e, "type"), "orphans");
    assert_string_equal(jstr(e, "level"), "warn");
    assert_string_equal(jstr(e, "status"), "warn");
    assert_int_equal(jint(e, "rows"), 10);
    /* the symbolic link is no regular file, .keep is excluded; readdir
     * order is the file system's */
    assert_int_equal(jint(e, "problems"), 2);
    char *s = json_dumps(json_object_get(e, "first"), 0);
    assert_has(s, "\"data/uploads/orphan.txt\"");
    assert_has(s, "\"data/uploads/sub/orphan2.txt\"");
    free(s);
    e = entry(&o, 1);
    assert_string_equal(jstr(e, "status"), "fail");
    static const char *const want[] = {"data/uploads/sub/orphan2.txt"};
    assert_first(e, want, 1);
    /* data/app.db belongs to the database component: no orphan */
    e = entry(&o, 2);
    assert_string_equal(jstr(e, "status"), "pass");
    outcome_free(&o);
}

/* ---- sql ------------------------------------------------------------------------ */

static void sql_checks(void **state)
{
    fx *f = *state;
    outcome o;
    run_checks(f,
               "  - name: tree\n"
               "    type: sql\n"
               "    database: database\n"
               "    query: SELECT id, parent, name FROM folders\n"
               "      WHERE parent IS NOT NULL AND parent NOT IN (SELECT id FROM folders)\n"
               "  - name: fine\n"
               "    type: sql\n"
               "    database: database\n"
               "    query: SELECT id FROM folders WHERE id > 100\n"
               "  - name: bad\n"
               "    type: sql\n"
               "    database: database\n"
               "    query: SELEC id FROM folders\n"
               "  - name: slow\n"
               "    type: sql\n"
               "    database: database\n"
               "    query: WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n\n"
               "    timeout: 1\n"
               "    show: 1\n",
               NULL, &o);
    assert_int_equal(o.failed, 3);
    json_t *e = entry(&o, 0);
    assert_string_equal(jstr(e, "status"), "fail");
    assert_int_equal(jint(e, "rows"), 2);
    static const char *const want[] = {"3 | 99 | lost", "4 | 98 | NULL"};
    assert_first(e, want, 2);
    assert_string_equal(jstr(e, "detail"), "2 row(s): 3 | 99 | lost, 4 | 98 | NULL");
    e = entry(&o, 1);
    assert_string_equal(jstr(e, "status"), "pass");
    assert_string_equal(jstr(e, "detail"), "0 rows");
    e = entry(&o, 2);
    assert_string_equal(jstr(e, "status"), "error");
    const cf_app_check *ck = &o.run->policy->checks[2];
    assert_int_equal(ck->query_line, 33);
    assert_int_equal(ck->query_col, 12);
    assert_has(jstr(e, "detail"), "policy.yaml:33:12: check 'bad': ");
    assert_has(jstr(e, "detail"), "syntax error");
    e = entry(&o, 3);
    assert_string_equal(jstr(e, "status"), "error");
    assert_has(jstr(e, "detail"), "check 'slow': timed out after 1 s");
    assert_true(jint(e, "rows") > 1000);
    outcome_free(&o);
}

/* ---- row_counts -------------------------------------------------------------- */

static void row_counts(void **state)
{
    fx *f = *state;
    outcome o;
    run_checks(f,
               "  - name: counts\n"
               "    type: row_counts\n",
               NULL, &o);
    assert_int_equal(o.failed, 0);
    json_t *e = entry(&o, 0);
    assert_string_equal(jstr(e, "type"), "row_counts");
    assert_string_equal(jstr(e, "status"), "pass");
    assert_int_equal(jint(e, "rows"), 2); /* files, folders */
    assert_string_equal(jstr(e, "detail"), "2 tables");

    /* the driver reported nothing: the recorded counts went unchecked */
    cf_checks_env env = {.run = o.run, .set_id = o.set, .root = f->out, .driver_checks = NULL};
    json_t *out = json_array();
    assert_int_equal(cf_checks_run(&env, out), 1);
    e = json_array_get(out, 0);
    assert_string_equal(jstr(e, "status"), "fail");
    static const char *const want[] = {
        "database: the set recorded 2 row count(s), the driver reported none"};
    assert_first(e, want, 1);
    json_decref(out);

    /* a count the driver found different */
    json_t *dc = json_pack("[{s:s,s:s,s:b,s:s},{s:s,s:s,s:b,s:s}]", "component", "database",
                           "check", "rows.files", "ok", 0, "detail",
                           "table files has 9 rows, the dump had 10", "component", "database",
                           "check", "rows.folders", "ok", 1, "detail", "4 rows");
    env.driver_checks = dc;
    out = json_array();
    assert_int_equal(cf_checks_run(&env, out), 1);
    e = json_array_get(out, 0);
    static const char *const want2[] = {
        "database: rows.files: table files has 9 rows, the dump had 10"};
    assert_first(e, want2, 1);
    json_decref(out);
    json_decref(dc);
    outcome_free(&o);
}

/* ---- several at once ------------------------------------------------------------- */

/* Checks run on several threads: whatever order they finish in (a slow
 * first check, fast ones after it), every result lands in policy order
 * with the outcome it has when run alone. */
static void in_policy_order(void **state)
{
    fx *f = *state;
    outcome o;
    run_checks(f,
               "  - name: slow\n"
               "    type: sql\n"
               "    database: database\n"
               "    query: WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT "
               "i FROM n\n"
               "    timeout: 1\n"
               "    show: 1\n"
               "  - name: counts\n"
               "    type: row_counts\n"
               "  - name: stray\n"
               "    type: orphans\n"
               "    database: database\n"
               "    query: SELECT path FROM files\n"
               "    component: uploads\n"
               "    exclude: ['**/.keep']\n"
               "  - name: tree\n"
               "    type: sql\n"
               "    database: database\n"
               "    query: SELECT id, parent, name FROM folders\n"
               "      WHERE parent IS NOT NULL AND parent NOT IN (SELECT id FROM folders)\n"
               "  - name: refs\n"
               "    type: references\n"
               "    database: database\n"
               "    query: SELECT 'a.txt', 6 UNION ALL SELECT 'sub/c.txt', 1\n"
               "    component: uploads\n"
               "    prefix: data/uploads/\n"
               "  - name: counts-again\n"
               "    type: row_counts\n"
               "  - name: stray-sub\n"
               "    type: orphans\n"
               "    database: database\n"
               "    query: SELECT path FROM files\n"
               "    component: uploads\n"
               "    under: [data/uploads/sub]\n"
               "    level: fail\n"
               "  - name: bad\n"
               "    type: sql\n"
               "    database: database\n"
               "    query: SELEC id FROM folders\n",
               NULL, &o);
    static const char *const names[] = {"slow", "counts",       "stray",     "tree",
                                        "refs", "counts-again", "stray-sub", "bad"};
    static const char *const status[] = {"error", "pass", "warn", "fail",
                                         "pass",  "pass", "fail", "error"};
    assert_int_equal(json_array_size(o.out), 8);
    for (size_t i = 0; i < 8; i++) {
        json_t *e = entry(&o, i);
        assert_string_equal(jstr(e, "name"), names[i]);
        assert_string_equal(jstr(e, "status"), status[i]);
    }
    assert_int_equal(o.failed, 4);
    assert_has(jstr(entry(&o, 0), "detail"), "check 'slow': timed out after 1 s");
    assert_string_equal(jstr(entry(&o, 1), "detail"), "2 tables");
    assert_int_equal(jint(entry(&o, 2), "problems"), 2);
    assert_string_equal(jstr(entry(&o, 3), "detail"), "2 row(s): 3 | 99 | lost, 4 | 98 | NULL");
    assert_string_equal(jstr(entry(&o, 4), "detail"), "2 paths");
    assert_string_equal(jstr(entry(&o, 5), "detail"), "2 tables");
    static const char *const sub[] = {"data/uploads/sub/orphan2.txt"};
    assert_first(entry(&o, 6), sub, 1);
    assert_has(jstr(entry(&o, 7), "detail"), "check 'bad': ");
    assert_has(jstr(entry(&o, 7), "detail"), "syntax error");
    outcome_free(&o);
}

/* ---- memory: streaming a million rows ------------------------------------------- */

static long maxrss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Run the checks in a child (whose peak starts at its current size);
 * the child exits 0 when the peak grew by less than limit_kib. */
static void bounded(outcome *o, fx *f, long limit_kib, const char *status)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        long before = maxrss_kib();
        cf_checks_env e = {.run = o->run, .set_id = o->set, .root = f->out,
                           .driver_checks = json_object_get(o->report, "checks")};
        json_t *out = json_array();
        int failed = cf_checks_run(&e, out);
        long grew = maxrss_kib() - before;
        json_t *en = json_array_get(out, 0);
        fprintf(stderr, "peak RSS grew by %ld KiB (%s, %lld rows, status %s)\n", grew,
                jstr(en, "name"), jint(en, "rows"), jstr(en, "status"));
        int ok = failed >= 0 && (grew < limit_kib || !RSS_CHECKED) && strcmp(jstr(en, "status"), status) == 0 &&
                 jint(en, "rows") == 1000000;
        _exit(ok ? 0 : 1);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void million_rows(void **state)
{
    fx *f = *state;
    outcome o;
    run_checks(f,
               "  - name: refs\n"
               "    type: references\n"
               "    database: database\n"
               "    query: SELECT path, size FROM big\n"
               "    component: uploads\n"
               "  - name: stray\n"
               "    type: orphans\n"
               "    database: database\n"
               "    query: SELECT path FROM many\n"
               "    component: uploads\n"
               "    exclude: ['**/.keep']\n",
               NULL, &o);
    /* a million rows referencing a handful of files, and a million
     * distinct paths, added to the restored database */
    char db[400];
    snprintf(db, sizeof db, "%s/data/app.db", f->out);
    sql(db, "CREATE TABLE big(path TEXT, size INT);"
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 999999)"
            " INSERT INTO big SELECT CASE i % 3 WHEN 0 THEN 'data/uploads/a.txt'"
            " WHEN 1 THEN 'data/uploads/b.txt' ELSE 'data/uploads/sub/c.txt' END,"
            " CASE i % 3 WHEN 0 THEN 6 WHEN 1 THEN 3 ELSE 1 END FROM n;"
            "CREATE TABLE many(path TEXT);"
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 999995)"
            " INSERT INTO many SELECT 'data/uploads/deep/folder/file-' || i || '.bin' FROM n;"
            "INSERT INTO many VALUES ('data/uploads/orphan.txt'), ('data/uploads/sub/orphan2.txt'),"
            " ('data/uploads/a.txt'), ('data/uploads/b.txt');");
    /* one check at a time */
    cf_policy *p = o.run->policy;
    cf_app_check *all = p->checks;
    p->nchecks = 1;
    bounded(&o, f, 32 * 1024, "pass");
    p->checks = all + 1;
    bounded(&o, f, 48 * 1024, "warn"); /* size.txt, sha.txt, sub/c.txt are unreferenced */
    p->checks = all;
    p->nchecks = 2;
    outcome_free(&o);
}

/* ---- maps and a driver without query_target ------------------------------------ */

static void maps_and_old_driver(void **state)
{
    fx *f = *state;
    outcome o;
    const char *checks = "  - name: refs\n"
                         "    type: references\n"
                         "    database: database\n"
                         "    query: SELECT path FROM files WHERE id IN (1, 3)\n"
                         "    component: uploads\n"
                         "  - name: marker\n"
                         "    type: sql\n"
                         "    database: database\n"
                         "    query: SELECT * FROM marker\n";
    run_checks(f, checks, NULL, &o);
    /* the restored database has no table marker */
    assert_string_equal(jstr(entry(&o, 1), "status"), "error");
    assert_has(jstr(entry(&o, 1), "detail"), "no such table: marker");

    /* --map uploads=DIR: files are checked there; --map database=FILE:
     * the query runs there */
    char mapped[400], dbcopy[500];
    snprintf(mapped, sizeof mapped, "%s/mapped", f->d.path);
    snprintf(dbcopy, sizeof dbcopy, "%s/copy.db", mapped);
    sh("mkdir -p '%s/data' && mv '%s/data/uploads' '%s/data/' && cp '%s/data/app.db' '%s'",
       mapped, f->out, mapped, f->out, dbcopy);
    sql(dbcopy, "CREATE TABLE marker(x); INSERT INTO marker VALUES ('copy')");
    char *m1 = cf_asprintf("uploads=%s", mapped), *m2 = cf_asprintf("database=%s", dbcopy);
    char *maps[] = {m1, m2};
    cf_restore_opts ro = {.maps = maps, .nmaps = 2};
    cf_checks_env e = {.run = o.run, .set_id = o.set, .root = f->out, .ro = &ro};
    json_t *out = json_array();
    assert_int_equal(cf_checks_run(&e, out), 1);
    assert_string_equal(jstr(json_array_get(out, 0), "status"), "pass");
    json_t *m = json_array_get(out, 1);
    assert_string_equal(jstr(m, "status"), "fail");
    static const char *const want[] = {"copy"};
    assert_first(m, want, 1);
    json_decref(out);

    /* a 1.0 driver: its table has no query_target */
    const cf_driver *d = cf_registry_find(COFFER_KIND_DATABASE, "sqlite");
    coffer_database_ops *ops = (coffer_database_ops *)d->desc.database;
    void *saved = (void *)ops->query_target;
    ops->query_target = NULL;
    out = json_array();
    assert_int_equal(cf_checks_run(&e, out), 2);
    ops->query_target = (coffer_status(*)(void *, const coffer_restore_opts *, const char *,
                                          coffer_row_cb, void *))saved;
    json_t *r = json_array_get(out, 0);
    assert_string_equal(jstr(r, "status"), "error");
    const cf_app_check *ck = &o.run->policy->checks[0];
    char *want2 = cf_asprintf("policy.yaml:%d:%d: check 'refs': database driver 'sqlite' "
                              "(component 'database') cannot run queries against a restored "
                              "database",
                              ck->query_line, ck->query_col);
    assert_string_equal(jstr(r, "detail"), want2);
    free(want2);
    json_decref(out);
    free(m1);
    free(m2);
    outcome_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(references, setup, teardown),
        cmocka_unit_test_setup_teardown(references_missing_summary, setup, teardown),
        cmocka_unit_test_setup_teardown(orphans, setup, teardown),
        cmocka_unit_test_setup_teardown(sql_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(row_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(in_policy_order, setup, teardown),
        cmocka_unit_test_setup_teardown(maps_and_old_driver, setup, teardown),
        cmocka_unit_test_setup_teardown(million_rows, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
