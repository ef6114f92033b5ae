/*
 * Reference verification at backup (engine/refcheck.c): a policy's
 * references checks joined against the set's file list, with a database
 * driver whose query_snapshot streams generated rows. Small sets are
 * joined in one bucket, large ones partitioned; both must find exactly
 * the missing paths, the wrong sizes and the rows that name no plain path.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/refcheck.h"
#include "plugin/host.h"
#include "util/util.h"

static const char policy_yaml[] =
    "name: t\nroot: /srv/app\n"
    "targets:\n  - name: a\n    location: /backups\n"
    "components:\n"
    "  - name: db\n    type: database\n    driver: sqlite\n    path: app.db\n"
    "  - name: data\n    type: files\n    paths: [data]\n"
    "checks:\n"
    "  - name: blobs\n    type: references\n    database: db\n    component: data\n"
    "    query: SELECT path, size FROM blobs\n"
    "  - name: avatars\n    type: references\n    database: db\n    component: data\n"
    "    prefix: data/avatar/\n    query: SELECT key FROM avatars\n";

/* The fake snapshot: rows generated from a few numbers. */
typedef struct fake {
    long files;       /* data/b/<i> exists for i < files */
    long rows;        /* rows name data/b/<i> for i < rows (i >= files: missing) */
    long wrong_size;  /* this row records size 1 more than the file's (-1: none) */
    int bad_rows;     /* rows naming an absolute path outside the root, and ../ */
    long avatars;     /* avatar rows: u<i>.webp, present for even i */
    long calls;
} fake;

static fake F;

static coffer_status fake_query(void *inst, const char *sql, coffer_row_cb cb, void *ud)
{
    (void)inst;
    F.calls++;
    char path[64], size[32];
    const char *v[2] = {path, size};
    if (strstr(sql, "broken")) {
        /* a few rows, then the server gives up */
        snprintf(path, sizeof path, "data/b/%d", 999999);
        cb(ud, 1, v);
        return COFFER_ERR_INVALID;
    }
    if (strstr(sql, "avatars")) {
        for (long i = 0; i < F.avatars; i++) {
            snprintf(path, sizeof path, "u%ld.webp", i);
            if (cb(ud, 1, v))
                return COFFER_OK;
        }
        return COFFER_OK;
    }
    for (long i = 0; i < F.rows; i++) {
        snprintf(path, sizeof path, "data/b/%ld", i);
        snprintf(size, sizeof size, "%ld", (i % 1000) + (i == F.wrong_size));
        if (cb(ud, 2, v))
            return COFFER_OK;
    }
    if (F.bad_rows) {
        const char *abs[2] = {"/etc/passwd", NULL};
        const char *up[2] = {"data/../../x", NULL};
        cb(ud, 1, abs);
        cb(ud, 1, up);
    }
    return COFFER_OK;
}

static void note_files(cf_refcheck *r)
{
    cf_entry e = {0};
    char path[64];
    e.component = (char *)"data";
    e.path = path;
    for (long i = 0; i < F.files; i++) {
        snprintf(path, sizeof path, "data/b/%ld", i);
        e.kind = CF_ENT_FILE;
        e.size = (uint64_t)(i % 1000);
        assert_int_equal(cf_refcheck_note(r, &e), 0);
    }
    for (long i = 0; i < F.avatars; i += 2) {
        snprintf(path, sizeof path, "data/avatar/u%ld.webp", i);
        assert_int_equal(cf_refcheck_note(r, &e), 0);
    }
    /* other components and kinds are not files of this list */
    e.component = (char *)"config";
    snprintf(path, sizeof path, "data/b/%ld", F.files);
    assert_int_equal(cf_refcheck_note(r, &e), 0);
    e.component = (char *)"data";
    e.kind = CF_ENT_DIR;
    assert_int_equal(cf_refcheck_note(r, &e), 0);
}

static coffer_database_ops fake_ops = {.struct_size = sizeof fake_ops,
                                       .query_snapshot = fake_query};

/* Run the checks of policy_yaml with F; returns the report. */
static json_t *run_checks(cf_policy *p, cf_refcheck **out)
{
    cf_refcheck *r = cf_refcheck_new(p);
    assert_non_null(r);
    assert_true(cf_refcheck_uses_db(r, "db"));
    assert_false(cf_refcheck_uses_db(r, "data"));
    note_files(r);
    cf_dbinst db = {.ops = &fake_ops, .comp = cf_policy_component(p, "db")};
    coffer_hctx *h = cf_calloc(1, sizeof *h);
    db.hctx = h;
    assert_int_equal(cf_refcheck_eval(r, &db, 1), 0);
    free(h);
    *out = r;
    return cf_refcheck_report(r, 1000);
}

static cf_policy *load(void)
{
    cf_policy *p;
    assert_int_equal(cf_policy_load_string("policy.yaml", policy_yaml, strlen(policy_yaml), &p),
                     0);
    return p;
}

static long count_missing(cf_refcheck *r, long *fetched_every_other)
{
    const char *comp, *rel;
    long n = 0;
    while (cf_refcheck_next_missing(r, &comp, &rel) == 1) {
        assert_string_equal(comp, "data");
        assert_true(strncmp(rel, "data/", 5) == 0);
        if (fetched_every_other && n % 2 == 0) {
            cf_refcheck_fetched(r);
            (*fetched_every_other)++;
        }
        n++;
    }
    return n;
}

static void small_set_one_bucket(void **state)
{
    (void)state;
    cf_policy *p = load();
    F = (fake){.files = 1000, .rows = 1010, .wrong_size = 7, .bad_rows = 1, .avatars = 6};
    cf_refcheck *r;
    json_t *rep = run_checks(p, &r);
    /* 10 blobs missing, 3 avatars (odd ones), 1 wrong size, 2 bad rows */
    assert_int_equal(cf_refcheck_problems(r), 10 + 3 + 1 + 2);
    assert_int_equal(count_missing(r, NULL), 13);
    json_t *checks = json_object_get(rep, "checks");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(checks, 0), "rows")), 1012);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(checks, 0), "missing")), 10);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(checks, 1), "missing")), 3);
    /* every problem is listed with its reason */
    json_t *paths = json_object_get(rep, "paths"), *x;
    size_t i;
    int size_seen = 0, outside = 0, plain = 0, missing_1005 = 0;
    json_array_foreach(paths, i, x)
    {
        const char *path = json_string_value(json_object_get(x, "path"));
        const char *why = json_string_value(json_object_get(x, "reason"));
        if (strcmp(path, "data/b/7") == 0 && strstr(why, "size 7 != recorded 8"))
            size_seen = 1;
        if (strcmp(path, "/etc/passwd") == 0 && strstr(why, "outside the policy root"))
            outside = 1;
        if (strstr(why, "not a plain path"))
            plain = 1;
        if (strcmp(path, "data/b/1005") == 0 && strcmp(why, "missing") == 0)
            missing_1005 = 1;
    }
    assert_int_equal(json_array_size(paths), 16);
    assert_true(size_seen && outside && plain && missing_1005);
    json_decref(rep);
    cf_refcheck_free(r);
    cf_policy_free(p);
}

static void large_set_partitioned(void **state)
{
    (void)state;
    cf_policy *p = load();
    /* 300 000 files: three buckets; 2 500 rows name files that are not there.
     * REFCHECK_FILES=N runs it with N files (to measure peak memory). */
    long n = getenv("REFCHECK_FILES") ? atol(getenv("REFCHECK_FILES")) : 300000;
    F = (fake){.files = n, .rows = n + 2500, .wrong_size = n - 1, .avatars = 0};
    cf_refcheck *r;
    json_t *rep = run_checks(p, &r);
    assert_int_equal(cf_refcheck_problems(r), 2500 + 1);
    long fetched = 0;
    assert_int_equal(count_missing(r, &fetched), 2500);
    assert_int_equal(fetched, 1250);
    /* fetched paths are no longer problems, nor listed */
    assert_int_equal(cf_refcheck_problems(r), 1250 + 1);
    json_decref(rep);
    rep = cf_refcheck_report(r, 100);
    assert_int_equal(json_array_size(json_object_get(rep, "paths")), 100);
    assert_int_equal(json_integer_value(json_object_get(rep, "refetched")), 1250);
    assert_int_equal(json_integer_value(json_object_get(rep, "problems")), 1251);
    json_decref(rep);
    cf_refcheck_free(r);
    cf_policy_free(p);
}

static void nothing_to_verify(void **state)
{
    (void)state;
    /* maintenance mode skips by default; online without references checks too */
    static const char maint[] = "name: t\nroot: /srv\nconsistency:\n  mode: maintenance\n"
                                "  stop: a\n  start: b\n"
                                "targets:\n  - name: a\n    location: /b\n"
                                "components:\n  - name: db\n    type: database\n"
                                "    driver: sqlite\n    path: x.db\n"
                                "  - name: data\n    type: files\n    paths: [data]\n"
                                "checks:\n  - name: c\n    type: references\n    database: db\n"
                                "    component: data\n    query: SELECT 1\n";
    cf_policy *p;
    assert_int_equal(cf_policy_load_string("m.yaml", maint, strlen(maint), &p), 0);
    assert_null(cf_refcheck_new(p));
    p->verify_refs = 1; /* references: verify */
    cf_refcheck *r = cf_refcheck_new(p);
    assert_non_null(r);
    cf_refcheck_free(r);
    cf_policy_free(p);

    /* a driver without query_snapshot: the check is skipped, not failed */
    p = load();
    F = (fake){.files = 10, .rows = 20};
    r = cf_refcheck_new(p);
    note_files(r);
    coffer_database_ops none = {.struct_size = sizeof none};
    coffer_hctx h = {0};
    cf_dbinst db = {.ops = &none, .comp = cf_policy_component(p, "db"), .hctx = &h};
    assert_int_equal(cf_refcheck_eval(r, &db, 1), 0);
    assert_int_equal(cf_refcheck_problems(r), 0);
    json_t *rep = cf_refcheck_report(r, 10);
    assert_true(json_is_true(json_object_get(json_array_get(json_object_get(rep, "checks"), 0),
                                             "skipped")));
    json_decref(rep);
    cf_refcheck_free(r);
    cf_policy_free(p);
}

static void failing_query_not_verified(void **state)
{
    (void)state;
    /* the blobs query fails after one missing row: the check is reported
     * as not verified, its problems dropped; the other check still runs */
    cf_policy *p = load();
    free(p->checks[0].query);
    p->checks[0].query = cf_strdup("SELECT broken FROM blobs");
    F = (fake){.files = 10, .rows = 10, .avatars = 4};
    cf_refcheck *r;
    json_t *rep = run_checks(p, &r);
    assert_int_equal(cf_refcheck_problems(r), 2); /* u1, u3 */
    json_t *c0 = json_array_get(json_object_get(rep, "checks"), 0);
    assert_non_null(strstr(json_string_value(json_object_get(c0, "error")), "blobs"));
    assert_int_equal(json_integer_value(json_object_get(c0, "problems")), 0);
    assert_int_equal(json_array_size(json_object_get(rep, "paths")), 2);
    json_decref(rep);
    cf_refcheck_free(r);
    cf_policy_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(small_set_one_bucket),
        cmocka_unit_test(large_set_partitioned),
        cmocka_unit_test(nothing_to_verify),
        cmocka_unit_test(failing_query_not_verified),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
