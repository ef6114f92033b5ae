/* Target passphrase sources (passphrase_env / _file / _command): parsed
 * into the target, at most one, never the passphrase itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "plugin/config.h"
#include "policy/policy.h"
#include "util/util.h"

static char *policy_with(const char *target_keys)
{
    return cf_asprintf("name: p\n"
                       "root: /srv/app\n"
                       "targets:\n"
                       "  - name: t\n"
                       "    location: /srv/repo\n"
                       "%s"
                       "components:\n"
                       "  - name: c\n"
                       "    type: files\n"
                       "    paths: [data]\n",
                       target_keys);
}

static cf_policy *load(const char *keys)
{
    char *y = policy_with(keys);
    cf_policy *p = NULL;
    int rc = cf_policy_load_string("policy.yaml", y, strlen(y), &p);
    free(y);
    return rc == 0 ? p : NULL;
}

static void fails(const char *keys, const char *want)
{
    cf_policy *p = load(keys);
    if (p) {
        cf_policy_free(p);
        fail_msg("loaded; expected an error containing '%s'", want);
    }
    if (!strstr(cf_error(), want))
        fail_msg("error '%s' does not contain '%s'", cf_error(), want);
}

static void test_sources(void **state)
{
    (void)state;
    cf_policy *p = load("");
    assert_non_null(p);
    assert_null(p->targets[0].passphrase_env);
    assert_null(p->targets[0].passphrase_file);
    assert_null(p->targets[0].passphrase_command);
    cf_policy_free(p);
    p = load("    passphrase_file: /etc/coffer/pass\n");
    assert_non_null(p);
    assert_string_equal(p->targets[0].passphrase_file, "/etc/coffer/pass");
    /* not a driver option */
    assert_null(cf_config_find(p->targets[0].options, "passphrase_file"));
    cf_policy_free(p);
    setenv("T_PASSCMD", "pass show x", 1);
    p = load("    passphrase_command: ${T_PASSCMD}\n");
    assert_non_null(p);
    assert_string_equal(p->targets[0].passphrase_command, "pass show x");
    cf_policy_free(p);
    p = load("    passphrase_env: MY_PASS_1\n");
    assert_non_null(p);
    assert_string_equal(p->targets[0].passphrase_env, "MY_PASS_1");
    cf_policy_free(p);
}

static void test_refused(void **state)
{
    (void)state;
    fails("    passphrase: hunter2\n",
          "policy.yaml:6:17: targets[0].passphrase: secrets never go into a policy");
    char *e = cf_strdup(cf_error());
    assert_null(strstr(e, "hunter2"));
    free(e);
    fails("    passphrase_file: /a\n    passphrase_command: cat /a\n",
          "targets[0].passphrase_command: give one passphrase source; passphrase_file is already "
          "set (line 6)");
    fails("    passphrase_env: not-a-name\n", "'not-a-name' is not an environment variable name");
    fails("    passphrase_file: \"\"\n", "targets[0].passphrase_file: empty value");
    fails("    passphrase_command: [a, b]\n", "targets[0].passphrase_command");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sources),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
