/* core/engine/browse.c: the pattern rule of coffer find (the rest is
 * driven through the binary by tests/e2e/browse.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/browse.h"

static void test_base_name_patterns(void **state)
{
    (void)state;
    assert_true(cf_find_match("*.log", "data", "data/logs/a.log"));
    assert_true(cf_find_match("a.log", "data", "a.log"));
    assert_false(cf_find_match("a.log", "data", "data/logs/b.log"));
    assert_false(cf_find_match("*.log", "data", "data/logs.d/x")); /* the base name only */
    assert_true(cf_find_match("logs", "data", "data/logs"));       /* a directory by name */
    assert_true(cf_find_match("[ab].txt", "c", "x/b.txt"));
}

static void test_path_patterns(void **state)
{
    (void)state;
    /* with '/': the path as recorded, or COMPONENT/path */
    assert_true(cf_find_match("data/logs/*.log", "data", "data/logs/a.log"));
    assert_true(cf_find_match("data/data/logs/*.log", "data", "data/logs/a.log"));
    assert_false(cf_find_match("data/*.log", "data", "data/logs/a.log")); /* '*' stops at '/' */
    assert_false(cf_find_match("config/data/logs/*", "data", "data/logs/a.log"));
    assert_true(cf_find_match("*/logs/a.log", "data", "data/logs/a.log"));
    assert_false(cf_find_match("logs/a.log", "data", "data/logs/a.log")); /* anchored */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base_name_patterns),
        cmocka_unit_test(test_path_patterns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
