/* core/plugin/config.c: driver option values and the shared parsers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/config.h"
#include "util/util.h"

static void test_set_replace(void **state)
{
    (void)state;
    coffer_config *c = cf_config_new();
    assert_null(cf_config_get(c, "a"));
    cf_config_set(c, "a", "1", 3, 5);
    cf_config_set(c, "b", "two", 4, 5);
    assert_string_equal(cf_config_get(c, "a"), "1");
    assert_string_equal(cf_config_get(c, "b"), "two");
    assert_int_equal(c->n, 2);

    cf_config_set(c, "a", "replaced", 9, 7);
    assert_int_equal(c->n, 2); /* replaced in place, not appended */
    assert_string_equal(cf_config_get(c, "a"), "replaced");
    cf_config_item *it = cf_config_find(c, "a");
    assert_non_null(it);
    assert_int_equal(it->line, 9);
    assert_int_equal(it->col, 7);
    assert_false(it->is_list);
    assert_null(cf_config_find(c, "zzz"));
    assert_null(cf_config_find(NULL, "a"));
    assert_null(cf_config_get(NULL, "a"));

    /* Names are case-sensitive. */
    assert_null(cf_config_get(c, "A"));
    cf_config_free(c);
    cf_config_free(NULL);
}

static void test_lists(void **state)
{
    (void)state;
    coffer_config *c = cf_config_new();
    assert_int_equal(cf_config_list_len(c, "l"), 0);
    assert_null(cf_config_list_item(c, "l", 0));
    cf_config_list_add(c, "l", "x", 2, 3);
    cf_config_list_add(c, "l", "y", 0, 0);
    cf_config_list_add(c, "l", "z", 0, 0);
    assert_int_equal(cf_config_list_len(c, "l"), 3);
    assert_string_equal(cf_config_list_item(c, "l", 0), "x");
    assert_string_equal(cf_config_list_item(c, "l", 2), "z");
    assert_null(cf_config_list_item(c, "l", 3));
    assert_string_equal(cf_config_get(c, "l"), "x"); /* first item */
    cf_config_item *it = cf_config_find(c, "l");
    assert_true(it->is_list);
    assert_int_equal(it->line, 2); /* position of the first item */

    /* A scalar reads as a one-item list. */
    cf_config_set(c, "s", "only", 0, 0);
    assert_int_equal(cf_config_list_len(c, "s"), 1);
    assert_string_equal(cf_config_list_item(c, "s", 0), "only");
    assert_null(cf_config_list_item(c, "s", 1));

    /* Adding to a scalar turns it into a list; setting a list makes a scalar. */
    cf_config_list_add(c, "s", "more", 0, 0);
    assert_true(cf_config_find(c, "s")->is_list);
    assert_int_equal(cf_config_list_len(c, "s"), 1);
    assert_string_equal(cf_config_list_item(c, "s", 0), "more");
    cf_config_set(c, "l", "scalar now", 0, 0);
    assert_false(cf_config_find(c, "l")->is_list);
    assert_int_equal(cf_config_list_len(c, "l"), 1);
    assert_string_equal(cf_config_get(c, "l"), "scalar now");

    /* dup is deep and keeps positions. */
    cf_config_list_add(c, "m", "1", 8, 9);
    cf_config_list_add(c, "m", "2", 8, 9);
    coffer_config *d = cf_config_dup(c);
    cf_config_free(c);
    assert_int_equal(d->n, 3);
    assert_int_equal(cf_config_list_len(d, "m"), 2);
    assert_string_equal(cf_config_list_item(d, "m", 1), "2");
    assert_int_equal(cf_config_find(d, "m")->line, 8);
    assert_string_equal(cf_config_get(d, "l"), "scalar now");
    assert_string_equal(cf_config_get(d, "s"), "more");
    cf_config_free(d);
    d = cf_config_dup(NULL);
    assert_int_equal(d->n, 0);
    cf_config_free(d);
}

static void size_ok(const char *s, int64_t want)
{
    int64_t v = -12345;
    if (cf_parse_size(s, &v) != 0)
        fail_msg("cf_parse_size(\"%s\") refused", s);
    if (v != want)
        fail_msg("cf_parse_size(\"%s\") = %lld, want %lld", s, (long long)v, (long long)want);
}

static void size_bad(const char *s)
{
    int64_t v = -12345;
    if (cf_parse_size(s, &v) == 0)
        fail_msg("cf_parse_size(\"%s\") accepted (%lld)", s, (long long)v);
    assert_int_equal(v, -12345); /* untouched */
}

static void test_parse_size(void **state)
{
    (void)state;
    size_ok("10", 10);
    size_ok("0", 0);
    size_ok("4096", 4096);
    size_ok("64M", 64LL << 20);
    size_ok("64m", 64LL << 20);
    size_ok("64MB", 64LL << 20);
    size_ok("64MiB", 64LL << 20);
    size_ok("1GiB", 1LL << 30);
    size_ok("1G", 1LL << 30);
    size_ok("2K", 2048);
    size_ok("3T", 3LL << 40);
    size_ok("64 M", 64LL << 20);
    size_ok("9223372036854775807", INT64_MAX);
    size_ok("8589934591G", (8589934591LL) << 30);
    size_bad("x");
    size_bad("");
    size_bad("M");
    size_bad("-1");
    size_bad("-1K");
    size_bad("1.5G");
    size_bad("64X");
    size_bad("64MBx");
    size_bad("64KiBB");
    size_bad("0x10");
    size_bad("9223372036854775808");   /* strtoll overflow */
    size_bad("99999999999999999999T"); /* strtoll overflow */
    size_bad("8589934592G");           /* 2^63 after the multiplier */
    size_bad("8388608T");              /* 2^63 */
}

static void test_parse_int_bool(void **state)
{
    (void)state;
    int64_t v;
    assert_int_equal(cf_parse_int("42", &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(cf_parse_int("-7", &v), 0);
    assert_int_equal(v, -7);
    assert_int_equal(cf_parse_int("", &v), -1);
    assert_int_equal(cf_parse_int("12abc", &v), -1);
    assert_int_equal(cf_parse_int("1K", &v), -1);
    assert_int_equal(cf_parse_int("9223372036854775808", &v), -1);

    static const char *yes[] = {"true", "TRUE", "True", "yes", "YES", "on", "On", "1"};
    static const char *no[] = {"false", "FALSE", "no", "No", "off", "OFF", "0"};
    static const char *bad[] = {"", "2", "y", "n", "tru", "truee", "yes ", " on", "-1", "enabled"};
    for (size_t i = 0; i < CF_ARRAY_LEN(yes); i++) {
        int b = -1;
        assert_int_equal(cf_parse_bool(yes[i], &b), 0);
        assert_int_equal(b, 1);
    }
    for (size_t i = 0; i < CF_ARRAY_LEN(no); i++) {
        int b = -1;
        assert_int_equal(cf_parse_bool(no[i], &b), 0);
        assert_int_equal(b, 0);
    }
    for (size_t i = 0; i < CF_ARRAY_LEN(bad); i++) {
        int b = -1;
        if (cf_parse_bool(bad[i], &b) == 0)
            fail_msg("cf_parse_bool(\"%s\") accepted", bad[i]);
        assert_int_equal(b, -1);
    }
}

static void test_get_int_bool_defaults(void **state)
{
    (void)state;
    coffer_config *c = cf_config_new();
    cf_config_set(c, "n", "123", 0, 0);
    cf_config_set(c, "sz", "16M", 0, 0);
    cf_config_set(c, "junk", "many", 0, 0);
    cf_config_set(c, "t", "yes", 0, 0);
    cf_config_set(c, "f", "off", 0, 0);
    assert_int_equal(cf_config_get_int(c, "n", 5), 123);
    assert_int_equal(cf_config_get_int(c, "sz", 5), 16LL << 20);
    assert_int_equal(cf_config_get_int(c, "junk", 5), 5);
    assert_int_equal(cf_config_get_int(c, "missing", -9), -9);
    assert_int_equal(cf_config_get_int(NULL, "n", 77), 77);
    assert_int_equal(cf_config_get_bool(c, "t", 0), 1);
    assert_int_equal(cf_config_get_bool(c, "f", 1), 0);
    assert_int_equal(cf_config_get_bool(c, "junk", 1), 1);
    assert_int_equal(cf_config_get_bool(c, "junk", 0), 0);
    assert_int_equal(cf_config_get_bool(c, "missing", 1), 1);
    assert_int_equal(cf_config_get_bool(c, "n", 0), 0); /* "123" is not a bool */
    cf_config_free(c);
}

/* A COFFER_OPT_INT option is validated with cf_parse_int, which accepts
 * negative values; cf_config_get_int must read them too. (Regression: it
 * parsed with cf_parse_size only, so a validated "-1" read as the default.) */
static void test_get_int_negative_value(void **state)
{
    (void)state;
    coffer_config *c = cf_config_new();
    cf_config_set(c, "busy_timeout", "-1", 0, 0);
    int64_t v;
    assert_int_equal(cf_parse_int("-1", &v), 0); /* what the policy checker accepts */
    assert_int_equal(cf_config_get_int(c, "busy_timeout", 10000), -1);
    cf_config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_replace),
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_int_bool),
        cmocka_unit_test(test_get_int_bool_defaults),
        cmocka_unit_test(test_get_int_negative_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
