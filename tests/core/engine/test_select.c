/* core/engine/select.c: include/exclude patterns over COMPONENT/path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/select.h"
#include "util/util.h"

static const char *const two[] = {"config", "data"};
static const char *const one[] = {"data"};

static void test_pattern_takes(void **state)
{
    (void)state;
    assert_true(cf_select_pattern_takes("data/a/b", "data/a/b"));
    assert_true(cf_select_pattern_takes("data/a", "data/a/b/c")); /* a directory: its subtree */
    assert_false(cf_select_pattern_takes("data/a", "data/ab"));
    assert_true(cf_select_pattern_takes("data/*/b", "data/x/b"));
    assert_false(cf_select_pattern_takes("data/*", "datax/y"));
    assert_true(cf_select_pattern_takes("data/*", "data/x/y"));          /* data/x taken, so y */
    assert_false(cf_select_pattern_takes("data/*.txt", "data/x/y.txt")); /* '*' stops at '/' */
    assert_true(cf_select_pattern_takes("data/x/*.txt", "data/x/y.txt"));
    assert_true(cf_select_pattern_takes("data/[ab]?", "data/bc"));
}

static void test_match_and_exclude(void **state)
{
    (void)state;
    cf_select *s = cf_select_new(two, 2);
    assert_int_equal(cf_select_include(s, "data/up/aa"), 0);
    assert_int_equal(cf_select_include(s, "config/etc/*.toml"), 0);
    assert_int_equal(cf_select_exclude(s, "data/up/aa/skip*"), 0);
    assert_int_equal(cf_select_count(s), 2);
    assert_true(cf_select_match(s, "data", "up/aa"));
    assert_true(cf_select_match(s, "data", "up/aa/f1"));
    assert_false(cf_select_match(s, "data", "up/aa/skip1"));
    assert_false(cf_select_match(s, "data", "up/ab/f1"));
    assert_false(cf_select_match(s, "config", "up/aa/f1")); /* another component */
    assert_string_equal(cf_select_unmatched(s), "config/etc/*.toml");
    assert_true(cf_select_match(s, "config", "etc/a.toml"));
    assert_null(cf_select_unmatched(s));
    assert_true(cf_select_names_component(s, "data"));
    assert_true(cf_select_names_component(s, "config"));
    assert_false(cf_select_names_component(s, "database"));
    cf_select_free(s);
}

static void test_parents(void **state)
{
    (void)state;
    cf_select *s = cf_select_new(one, 1);
    assert_int_equal(cf_select_include(s, "up/aa/f"), 0); /* one files component: implied */
    assert_true(cf_select_match(s, "data", "up/aa/f"));
    cf_select_note_chosen(s, "data", "up/aa/f");
    assert_true(cf_select_is_parent(s, "data", "up/aa"));
    assert_true(cf_select_is_parent(s, "data", "up"));
    assert_false(cf_select_is_parent(s, "data", "up/aa/f"));
    assert_false(cf_select_is_parent(s, "data", "up/ab"));
    cf_select_free(s);
}

static void test_refused(void **state)
{
    (void)state;
    cf_select *s = cf_select_new(two, 2);
    assert_int_equal(cf_select_include(s, "data/../etc"), -1);
    assert_non_null(strstr(cf_error(), ".."));
    assert_int_equal(cf_select_include(s, "/etc/passwd"), -1);
    assert_int_equal(cf_select_include(s, ""), -1);
    assert_int_equal(cf_select_include(s, "uploads/x"), -1); /* two files components */
    assert_non_null(strstr(cf_error(), "COMPONENT/path"));
    assert_int_equal(cf_select_exclude(s, "data/a/.."), -1);
    assert_int_equal(cf_select_include(s, "data/a/..b"), 0); /* a name, not '..' */
    assert_int_equal(cf_select_include(s, "data/dir/"), 0);  /* trailing '/' */
    assert_true(cf_select_match(s, "data", "dir/x"));
    cf_select_free(s);
    cf_select *z = cf_select_new(NULL, 0);
    assert_int_equal(cf_select_include(z, "x"), -1);
    cf_select_free(z);
}

static void test_include_from(void **state)
{
    (void)state;
    char path[] = "/tmp/coffer-test-select-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "# comment\n\ndata/a*b\r\ndata/plain\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    cf_select *s = cf_select_new(one, 1);
    assert_int_equal(cf_select_include_from(s, path), 0);
    assert_int_equal(cf_select_count(s), 2);
    assert_true(cf_select_match(s, "data", "a*b"));   /* literal '*' */
    assert_false(cf_select_match(s, "data", "axxb")); /* not a glob */
    assert_true(cf_select_match(s, "data", "plain/x"));
    cf_select_free(s);
    unlink(path);
    cf_select *t = cf_select_new(one, 1);
    assert_int_equal(cf_select_include_from(t, "/nonexistent/list"), -1);
    cf_select_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pattern_takes), cmocka_unit_test(test_match_and_exclude),
        cmocka_unit_test(test_parents),       cmocka_unit_test(test_refused),
        cmocka_unit_test(test_include_from),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
