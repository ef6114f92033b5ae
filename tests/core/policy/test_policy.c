/* Policy loading, schema errors, ${VAR} expansion, driver option checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/immutable.h"
#include "plugin/config.h"
#include "policy/policy.h"
#include "util/util.h"

/* ---- helpers --------------------------------------------------------- */

static cf_policy *load_at(const char *yaml, const char *file, int line)
{
    cf_policy *p = NULL;
    if (cf_policy_load_string("policy.yaml", yaml, strlen(yaml), &p) != 0) {
        print_error("policy did not load: %s\n--- yaml ---\n%s\n", cf_error(), yaml);
        _fail(file, line);
    }
    return p;
}
#define LOAD(y) load_at((y), __FILE__, __LINE__)

/* The load must fail with exactly `want`. */
static void fails_at(const char *yaml, const char *want, const char *file, int line)
{
    cf_policy *p = (cf_policy *)&p;
    int rc = cf_policy_load_string("policy.yaml", yaml, strlen(yaml), &p);
    if (rc == 0) {
        print_error("policy loaded; expected error:\n  %s\n--- yaml ---\n%s\n", want, yaml);
        cf_policy_free(p);
        _fail(file, line);
    }
    if (p != NULL) {
        print_error("*out not NULL after a failed load\n");
        _fail(file, line);
    }
    if (strcmp(cf_error(), want) != 0) {
        print_error("error was\n  %s\nexpected\n  %s\n--- yaml ---\n%s\n", cf_error(), want, yaml);
        _fail(file, line);
    }
}
#define FAILS(y, want) fails_at((y), (want), __FILE__, __LINE__)

/* A valid minimal policy to prepend sections to. */
#define HEAD "name: t\nroot: /srv\n"
#define TARGETS "targets:\n  - name: a\n    location: /backups\n"
#define FILES "components:\n  - name: f\n    type: files\n    paths: [x]\n"

/* ---- the shipped AsterDrive policy -------------------------------------- */

static const char asterdrive_yaml[] =
    "version: 1\n"
    "name: asterdrive\n"
    "description: AsterDrive with SQLite and local storage (the default deployment)\n"
    "root: ${ASTERDRIVE_ROOT:-/var/lib/asterdrive}\n"
    "consistency:\n"
    "  mode: maintenance\n"
    "  stop: ${ASTERDRIVE_STOP:-systemctl stop asterdrive}\n"
    "  start: ${ASTERDRIVE_START:-systemctl start asterdrive}\n"
    "targets:\n"
    "  - name: primary\n"
    "    location: ${COFFER_REPO:-/srv/backups/asterdrive}\n"
    "components:\n"
    "  - name: config\n"
    "    type: files\n"
    "    paths: [data/config.toml]\n"
    "    required: [data/config.toml]\n"
    "  - name: database\n"
    "    type: database\n"
    "    driver: sqlite\n"
    "    path: data/asterdrive.db\n"
    "  - name: data\n"
    "    type: files\n"
    "    paths: [data/]\n"
    "    exclude: [data/.tmp, data/.uploads]\n"
    "validate:\n"
    "  - name: doctor\n"
    "    run: ${ASTERDRIVE_DOCTOR:-aster_drive doctor --deep}\n"
    "retention:\n"
    "  keep_daily: 7\n"
    "  keep_weekly: 4\n"
    "  keep_monthly: 6\n";

static void unset_aster_env(void)
{
    unsetenv("ASTERDRIVE_ROOT");
    unsetenv("ASTERDRIVE_STOP");
    unsetenv("ASTERDRIVE_START");
    unsetenv("ASTERDRIVE_DOCTOR");
    unsetenv("COFFER_REPO");
}

/* Everything but positions, which differ between the file and the string. */
static void check_asterdrive(const cf_policy *p)
{
    assert_string_equal(p->name, "asterdrive");
    assert_string_equal(p->description,
                        "AsterDrive with SQLite and local storage (the default deployment)");
    assert_string_equal(p->root, "/var/lib/asterdrive");
    assert_int_equal(p->mode, CF_MODE_MAINTENANCE);
    assert_string_equal(p->stop_cmd, "systemctl stop asterdrive");
    assert_string_equal(p->start_cmd, "systemctl start asterdrive");
    assert_int_equal(p->command_timeout, 600);

    assert_int_equal(p->ntargets, 1);
    const cf_target *t = &p->targets[0];
    assert_string_equal(t->name, "primary");
    assert_string_equal(t->location, "/srv/backups/asterdrive");
    assert_string_equal(t->driver, "local");
    assert_non_null(t->options);
    assert_int_equal(t->options->n, 1);
    assert_string_equal(cf_config_get(t->options, "path"), "/srv/backups/asterdrive");

    assert_int_equal(p->ncomponents, 3);
    const cf_component *c = &p->components[0];
    assert_string_equal(c->name, "config");
    assert_int_equal(c->type, CF_COMP_FILES);
    assert_int_equal(c->paths.n, 1);
    assert_string_equal(c->paths.v[0], "data/config.toml");
    assert_int_equal(c->required.n, 1);
    assert_string_equal(c->required.v[0], "data/config.toml");
    assert_int_equal(c->exclude.n, 0);
    assert_null(c->driver);
    assert_null(c->options);

    c = &p->components[1];
    assert_string_equal(c->name, "database");
    assert_int_equal(c->type, CF_COMP_DATABASE);
    assert_string_equal(c->driver, "sqlite");
    assert_int_equal(c->paths.n, 0);
    assert_non_null(c->options);
    assert_int_equal(c->options->n, 1);
    assert_string_equal(cf_config_get(c->options, "path"), "data/asterdrive.db");

    c = &p->components[2];
    assert_string_equal(c->name, "data");
    assert_int_equal(c->type, CF_COMP_FILES);
    assert_int_equal(c->paths.n, 1);
    assert_string_equal(c->paths.v[0], "data"); /* trailing slash stripped */
    assert_int_equal(c->exclude.n, 2);
    assert_string_equal(c->exclude.v[0], "data/.tmp");
    assert_string_equal(c->exclude.v[1], "data/.uploads");
    assert_int_equal(c->required.n, 0);

    assert_int_equal(p->nvalidate, 1);
    assert_string_equal(p->validate[0].name, "doctor");
    assert_non_null(strstr(p->validate[0].run, "aster_drive doctor --deep"));
    assert_int_equal(p->validate[0].timeout, 3600);

    assert_int_equal(p->retention.keep_last, -1);
    assert_int_equal(p->retention.keep_hourly, -1);
    assert_int_equal(p->retention.keep_daily, 7);
    assert_int_equal(p->retention.keep_weekly, 4);
    assert_int_equal(p->retention.keep_monthly, 6);
    assert_int_equal(p->retention.keep_yearly, -1);
    assert_null(p->retention.keep_within);

    assert_ptr_equal(cf_policy_component(p, "database"), &p->components[1]);
    assert_null(cf_policy_component(p, "nope"));
    assert_ptr_equal(cf_policy_target(p, "primary"), &p->targets[0]);
    assert_null(cf_policy_target(p, "secondary"));
}

static void asterdrive_string(void **state)
{
    (void)state;
    unset_aster_env();
    cf_policy *p = LOAD(asterdrive_yaml);
    check_asterdrive(p);
    assert_string_equal(p->file, "policy.yaml");
    /* Positions: of the list item, of the driver value, of option keys. */
    assert_int_equal(p->targets[0].line, 10);
    assert_int_equal(p->targets[0].col, 5);
    assert_int_equal(p->targets[0].driver_line, 11); /* inferred from location */
    assert_int_equal(p->targets[0].driver_col, 15);
    assert_int_equal(p->components[0].line, 13);
    assert_int_equal(p->components[0].col, 5);
    assert_int_equal(p->components[1].line, 17);
    assert_int_equal(p->components[1].driver_line, 19);
    assert_int_equal(p->components[1].driver_col, 13);
    const cf_config_item *it = cf_config_find(p->components[1].options, "path");
    assert_int_equal(it->line, 20);
    assert_int_equal(it->col, 5);
    assert_int_equal(p->components[2].line, 21);
    cf_policy_free(p);
}

static void asterdrive_file(void **state)
{
    (void)state;
    unset_aster_env();
    const char *src = getenv("COFFER_TEST_SRC");
    char *path = src ? cf_asprintf("%s/policies/asterdrive-sqlite-local.yaml", src)
                     : cf_strdup(__FILE__ "/../../../../policies/asterdrive-sqlite-local.yaml");
    cf_policy *p = NULL;
    if (cf_policy_load(path, &p) != 0)
        fail_msg("%s", cf_error());
check_asterdrive(p);
    /* the shipped file tells the doctor which database to check (the
     * restored one) and carries checks equivalent to doctor --deep */
    assert_string_equal(p->validate[0].run,
                        "cd {root} && aster_drive doctor --deep --database-url {db.database.url}");
    assert_true(p->nchecks >= 8);
    assert_string_equal(p->file, path);
    cf_policy_free(p);
    free(path);
}

static void asterdrive_env_overrides(void **state)
{
    (void)state;
    unset_aster_env();
    setenv("ASTERDRIVE_ROOT", "/opt/aster//", 1);
    setenv("ASTERDRIVE_STOP", "docker stop aster", 1);
    setenv("COFFER_REPO", "s3://backups/aster/prod", 1);
    cf_policy *p = LOAD(asterdrive_yaml);
    assert_string_equal(p->root, "/opt/aster");
    assert_string_equal(p->stop_cmd, "docker stop aster");
    assert_string_equal(p->start_cmd, "systemctl start asterdrive");
    assert_string_equal(p->targets[0].driver, "s3");
    assert_string_equal(p->targets[0].location, "s3://backups/aster/prod");
    assert_string_equal(cf_config_get(p->targets[0].options, "bucket"), "backups");
    assert_string_equal(cf_config_get(p->targets[0].options, "prefix"), "aster/prod");
    assert_null(cf_config_find(p->targets[0].options, "path"));
    cf_policy_free(p);
    unset_aster_env();
}

static void missing_file(void **state)
{
    (void)state;
    cf_policy *p = (cf_policy *)&p;
    assert_int_equal(cf_policy_load("/nonexistent/policy.yaml", &p), -1);
    assert_null(p);
    assert_string_equal(cf_error(),
                        "/nonexistent/policy.yaml: cannot open policy: No such file or directory");
}

/* ---- ${VAR} expansion ----------------------------------------------- */

static void expect_expand(const char *in, const char *want)
{
    char *s = cf_expand_env(in);
    if (!s)
        fail_msg("expanding '%s': %s", in, cf_error());
    assert_string_equal(s, want);
    free(s);
}

static void expect_expand_error(const char *in, const char *want)
{
    char *s = cf_expand_env(in);
    if (s) {
        free(s);
        fail_msg("expanding '%s' succeeded", in);
    }
    assert_string_equal(cf_error(), want);
}

static void expand_env(void **state)
{
    (void)state;
    setenv("CF_T_SET", "value with spaces", 1);
    setenv("CF_T_EMPTY", "", 1);
    unsetenv("CF_T_UNSET");
    expect_expand("plain text", "plain text");
    expect_expand("", "");
    expect_expand("${CF_T_SET}", "value with spaces");
    expect_expand("a/${CF_T_SET}/b", "a/value with spaces/b");
    expect_expand("${CF_T_EMPTY}", "");
    expect_expand("${CF_T_UNSET:-fallback}", "fallback");
    expect_expand("${CF_T_UNSET:-two words}", "two words");
    expect_expand("${CF_T_UNSET:-}", "");
    expect_expand("[${CF_T_UNSET:-}]", "[]");
    expect_expand("${CF_T_SET:-fallback}", "value with spaces");
    expect_expand("${CF_T_EMPTY:-fallback}", "fallback"); /* empty counts as unset, as in sh */
    expect_expand("${CF_T_UNSET:-${CF_T_SET}}", "value with spaces");
    expect_expand("${CF_T_UNSET:-a ${CF_T_UNSET:-b} c}", "a b c");
    expect_expand("${CF_T_UNSET:-x$$y}", "x$y");
    expect_expand("$$", "$");
    expect_expand("cost $$5 and $$${CF_T_SET}", "cost $5 and $value with spaces");
    expect_expand("$$${CF_T_UNSET:-}{x}", "${x}");
    expect_expand("$HOME stays", "$HOME stays");
    expect_expand("trailing $", "trailing $");
    expect_expand_error("${CF_T_UNSET}", "environment variable CF_T_UNSET is not set (use "
                                         "${CF_T_UNSET:-default} to give a default)");
    expect_expand_error("x ${CF_T_SET", "unterminated ${CF_T_SET: missing '}'");
    expect_expand_error("${CF_T_UNSET:-abc", "unterminated ${CF_T_UNSET:-...}: missing '}'");
    expect_expand_error("${}", "empty variable name in '${}'");
    expect_expand_error("${1X}", "invalid variable name after '${': names are letters, digits and "
                                 "'_', not starting with a digit (write $$ for a literal $)");
    expect_expand_error(
        "${CF_T_SET-x}",
        "invalid reference ${CF_T_SET...: expected '}' or ':-' after the variable name");
    expect_expand_error("${CF_T_UNSET:-${CF_T_UNSET}}",
                        "environment variable CF_T_UNSET is not set (use ${CF_T_UNSET:-default} to "
                        "give a default)");
}

static void expand_in_policy(void **state)
{
    (void)state;
    setenv("CF_T_NAME", "app", 1);
    setenv("CF_T_DIR", "/srv/app/", 1);
    unsetenv("CF_T_UNSET");
    cf_policy *p = LOAD("name: ${CF_T_NAME}\n"
                        "root: \"${CF_T_DIR}\"\n"
                        "description: 'costs $$1 ${CF_T_UNSET:-}'\n"
                        "targets:\n"
                        "  - name: ${CF_T_NAME}-t\n"
                        "    location: ${CF_T_UNSET:-/backups/${CF_T_NAME}}\n"
                        "components:\n"
                        "  - name: f\n"
                        "    type: files\n"
                        "    paths: [\"${CF_T_UNSET:-data}/\", 'x']\n"
                        "  - name: db\n"
                        "    type: database\n"
                        "    driver: sqlite\n"
                        "    path: ${CF_T_NAME}.db\n"
                        "    tables: ['${CF_T_NAME}', b]\n");
    assert_string_equal(p->name, "app");
    assert_string_equal(p->root, "/srv/app");
    assert_string_equal(p->description, "costs $1 ");
    assert_string_equal(p->targets[0].name, "app-t");
    assert_string_equal(p->targets[0].location, "/backups/app");
    assert_string_equal(p->components[0].paths.v[0], "data");
    assert_string_equal(p->components[0].paths.v[1], "x");
    assert_string_equal(cf_config_get(p->components[1].options, "path"), "app.db");
    assert_int_equal(cf_config_list_len(p->components[1].options, "tables"), 2);
    assert_string_equal(cf_config_list_item(p->components[1].options, "tables", 0), "app");
    cf_policy_free(p);

    /* Keys are not expanded: "${CF_T_NAME}" is an unknown key. */
    FAILS(
        "${CF_T_NAME}: x\n" HEAD TARGETS FILES,
        "policy.yaml:1:1: ${CF_T_NAME}: unknown key; valid keys: version, name, description, root, "
        "consistency, targets, components, validate, retention, hooks, monitor, checks, rehearse");
    /* An unset variable names the variable and the key, at the value. */
    FAILS("name: t\nroot: ${CF_T_UNSET}/x\n" TARGETS FILES,
          "policy.yaml:2:7: root: environment variable CF_T_UNSET is not set "
          "(use ${CF_T_UNSET:-default} to give a default)");
    FAILS(HEAD TARGETS
          "components:\n  - name: f\n    type: files\n    paths: [a, '${CF_T_UNSET}']\n",
          "policy.yaml:9:16: components[0].paths[1]: environment variable CF_T_UNSET is not set "
          "(use ${CF_T_UNSET:-default} to give a default)");
    FAILS(HEAD TARGETS FILES "retention:\n  keep_last: ${CF_T_UNSET:-}\n",
          "policy.yaml:11:14: retention.keep_last: expected a whole number, got ''");
    /* A root that expands to nothing. */
    FAILS("name: t\nroot: ${CF_T_UNSET:-}\n" TARGETS FILES,
          "policy.yaml:2:7: root: '' is not an absolute path");
}

/* ---- malformed YAML ------------------------------------------------- */

static void malformed_yaml(void **state)
{
    (void)state;
    FAILS("name: t\nroot: [/srv\n",
          "policy.yaml:3:1: invalid YAML: did not find expected ',' or ']' "
          "(while parsing a flow sequence started at line 2, column 7)");
    FAILS("name: t\nroot: x: y\n",
          "policy.yaml:2:8: invalid YAML: mapping values are not allowed in this context");
    FAILS("name: t\n  root: /x\n",
          "policy.yaml:2:7: invalid YAML: mapping values are not allowed in this context");
    FAILS("name: t\nroot: /x\n\tfoo: 1\n",
          "policy.yaml:3:1: invalid YAML: found a tab character that violates indentation "
          "(while scanning a plain scalar started at line 2, column 7)");
    FAILS("name: \"abc\n", "policy.yaml:2:1: invalid YAML: found unexpected end of stream "
                           "(while scanning a quoted scalar started at line 1, column 7)");
    FAILS("targets:\n  - name: a\n    location: /b\n  - name: c\n   location: /d\n",
          "policy.yaml:5:4: invalid YAML: did not find expected '-' indicator "
          "(while parsing a block collection started at line 2, column 3)");
    FAILS("name: \xff\n", "policy.yaml:1:7: invalid YAML: invalid leading UTF-8 octet (byte 0xff)");
    FAILS(
        "name: a\n---\nname: b\n",
        "policy.yaml:2:1: invalid YAML: a policy file holds one YAML document; found a second one");
    FAILS("a: &x [*x]\n",
          "policy.yaml:1:8: invalid YAML: alias *x refers to no complete anchor above it");
    FAILS("", "policy.yaml:1:1: the policy is empty; expected a mapping with name, root, targets "
              "and components");
    FAILS("# only a comment\n", "policy.yaml:1:1: the policy is empty; expected a mapping with "
                                "name, root, targets and components");
    FAILS("- a\n- b\n", "policy.yaml:1:1: expected a mapping at the top level (name, root, "
                        "targets, ...), got a list");
    FAILS("just text\n", "policy.yaml:1:1: expected a mapping at the top level (name, root, "
                         "targets, ...), got a string");
    FAILS("name: \"a\\0b\"\n", "policy.yaml:1:7: invalid YAML: a value contains a NUL character");

    /* Deep nesting is refused rather than recursed into. */
    char deep[400];
    memset(deep, '[', 200);
    memset(deep + 200, ']', 200);
    cf_policy *p = NULL;
    assert_int_equal(cf_policy_load_string("policy.yaml", deep, sizeof deep, &p), -1);
    assert_non_null(
        strstr(cf_error(), "policy.yaml:1:66: invalid YAML: nested more than 64 levels deep"));
}

static void anchors_and_aliases(void **state)
{
    (void)state;
    cf_policy *p = LOAD(HEAD TARGETS "components:\n"
                                     "  - name: a\n"
                                     "    type: files\n"
                                     "    paths: &common [x, y/]\n"
                                     "  - name: b\n"
                                     "    type: files\n"
                                     "    paths: [z]\n"
                                     "    exclude: *common\n");
    assert_int_equal(p->components[1].exclude.n, 2);
    assert_string_equal(p->components[1].exclude.v[1], "y");
    cf_policy_free(p);
}

/* ---- unknown, duplicate and missing keys ------------------------------ */

static void unknown_keys(void **state)
{
    (void)state;
    /* The example from policy.h, at the exact position. */
    FAILS("name: t\n"
          "root: /srv\n"
          "targets:\n"
          "  - name: a\n"
          "    location: /backups\n"
          "components:\n"
          "  - name: f\n"
          "    type: files\n"
          "    paths: [x]\n"
          "  - name: g\n"
          "    type: files\n"
          "    pathz: [y]\n",
          "policy.yaml:12:5: components[1].pathz: unknown key; valid keys: name, type, paths, "
          "exclude, required, on_unreadable, snapshot, snapshot_size");
    FAILS(HEAD "target:\n  - name: a\n", "policy.yaml:3:1: target: unknown key; valid keys: "
                                         "version, name, description, root, consistency, "
                                         "targets, components, validate, retention, hooks, monitor, "
                                         "checks, rehearse");
    FAILS(
        HEAD
        "consistency:\n  mode: maintenance\n  stop: a\n  start: b\n  timout: 5\n" TARGETS FILES,
        "policy.yaml:7:3: consistency.timout: unknown key; valid keys: mode, stop, start, timeout, "
        "two_pass, references, on_inconsistent");
    FAILS(HEAD TARGETS FILES "validate:\n  - name: v\n    run: x\n    command: y\n",
          "policy.yaml:13:5: validate[0].command: unknown key; valid keys: name, run, timeout, "
          "credentials");
    FAILS(HEAD TARGETS FILES "retention:\n  keep_daily: 3\n  keep_days: 3\n",
          "policy.yaml:12:3: retention.keep_days: unknown key; valid keys: keep_last, keep_hourly, "
          "keep_daily, "
          "keep_weekly, keep_monthly, keep_yearly, keep_within, keep_proven");
    /* Flow mappings report the key's own column. */
    FAILS(HEAD TARGETS FILES "retention: {keep_daily: 3, keep_dayly: 3}\n",
          "policy.yaml:10:28: retention.keep_dayly: unknown key; valid keys: keep_last, "
          "keep_hourly, keep_daily, "
          "keep_weekly, keep_monthly, keep_yearly, keep_within, keep_proven");
    /* Non-string keys. */
    FAILS(HEAD "? [a, b]\n: c\n" TARGETS FILES,
          "policy.yaml:3:3: keys must be plain names, got a list");
}

static void duplicate_keys(void **state)
{
    (void)state;
    FAILS("name: t\nroot: /srv\nname: u\n" TARGETS FILES,
          "policy.yaml:3:1: name: duplicate key (first given at line 1, column 1)");
    FAILS(HEAD TARGETS
          "components:\n  - name: f\n    type: files\n    paths: [x]\n    paths: [y]\n",
          "policy.yaml:10:5: components[0].paths: duplicate key (first given at line 9, column 5)");
    FAILS(HEAD TARGETS
          "components:\n  - name: f\n    type: database\n    type: files\n    paths: [x]\n",
          "policy.yaml:9:5: components[0].type: duplicate key (first given at line 8, column 5)");
    FAILS(HEAD "targets:\n  - name: a\n    location: /b\n    region: x\n    region: y\n" FILES,
          "policy.yaml:7:5: targets[0].region: duplicate key (first given at line 6, column 5)");
}

static void missing_required(void **state)
{
    (void)state;
    FAILS("root: /srv\n" TARGETS FILES, "policy.yaml:1:1: name: required key is missing");
    FAILS("name: t\n" TARGETS FILES, "policy.yaml:1:1: root: required key is missing");
    FAILS(HEAD FILES,
          "policy.yaml:1:1: targets: required key is missing; give at least one target");
    FAILS(HEAD TARGETS,
          "policy.yaml:1:1: components: required key is missing; give at least one component");
    FAILS(HEAD "targets: []\n" FILES,
          "policy.yaml:3:10: targets: empty list; give at least one target");
    FAILS(HEAD TARGETS "components:\n",
          "policy.yaml:6:12: components: expected a list of components, got an empty value");
    FAILS(HEAD "targets:\n  - location: /b\n" FILES,
          "policy.yaml:4:5: targets[0].name: required key is missing");
    FAILS(HEAD "targets:\n  - name: a\n" FILES,
          "policy.yaml:4:5: targets[0].location: required key is missing");
    FAILS(HEAD TARGETS "components:\n  - name: f\n    paths: [x]\n",
          "policy.yaml:7:5: components[0].type: required key is missing");
    FAILS(HEAD TARGETS "components:\n  - name: f\n    type: files\n",
          "policy.yaml:7:5: components[0].paths: required key is missing; list the paths to back "
          "up, relative to root");
    FAILS(HEAD TARGETS "components:\n  - name: f\n    type: files\n    paths: []\n",
          "policy.yaml:9:12: components[0].paths: empty list; give at least one path, relative to "
          "root");
    FAILS(HEAD TARGETS "components:\n  - name: f\n    type: files\n    paths:\n",
          "policy.yaml:9:11: components[0].paths: empty list; give at least one path, relative to "
          "root");
    FAILS(HEAD TARGETS "components:\n  - name: db\n    type: database\n    path: x.db\n",
          "policy.yaml:7:5: components[0].driver: required key is missing");
    FAILS(HEAD "consistency:\n  mode: maintenance\n  stop: systemctl stop x\n" TARGETS FILES,
          "policy.yaml:4:3: consistency.start: required key is missing");
    FAILS(HEAD "consistency:\n  mode: maintenance\n  stop: ' '\n  start: x\n" TARGETS FILES,
          "policy.yaml:5:9: consistency.stop: empty command");
    FAILS(HEAD TARGETS FILES "validate:\n  - name: v\n",
          "policy.yaml:11:5: validate[0].run: required key is missing");
    FAILS("name:\nroot: /srv\n" TARGETS FILES, "policy.yaml:1:6: name: no value given");
}

/* ---- wrong types and bad values --------------------------------------- */

static void wrong_types(void **state)
{
    (void)state;
    FAILS(HEAD "targets:\n  name: a\n" FILES,
          "policy.yaml:4:3: targets: expected a list of targets, got a mapping");
    FAILS(HEAD TARGETS "components:\n  - files\n",
          "policy.yaml:7:5: components[0]: expected a mapping, got a string");
    FAILS(HEAD TARGETS "components:\n  - name: f\n    type: files\n    paths: {a: b}\n",
          "policy.yaml:9:12: components[0].paths: expected a list of strings, got a mapping");
    FAILS(HEAD TARGETS "components:\n  - name: f\n    type: files\n    paths: [[a]]\n",
          "policy.yaml:9:13: components[0].paths[0]: expected a string, got a list");
    FAILS("name: [a]\nroot: /srv\n" TARGETS FILES,
          "policy.yaml:1:7: name: expected a string, got a list");
    FAILS(HEAD "consistency: maintenance\n" TARGETS FILES,
          "policy.yaml:3:14: consistency: expected a mapping, got a string");
    FAILS(HEAD TARGETS FILES "retention: [1]\n",
          "policy.yaml:10:12: retention: expected a mapping, got a list");
    FAILS(HEAD TARGETS FILES "validate: {name: x}\n",
          "policy.yaml:10:11: validate: expected a list of commands, got a mapping");
    FAILS(HEAD TARGETS
          "components:\n  - name: db\n    type: database\n    driver: sqlite\n    path: {a: 1}\n",
          "policy.yaml:10:11: components[0].path: expected a string or a list of strings, got a "
          "mapping");
    FAILS(HEAD TARGETS "components:\n  - name: f\n    type: dir\n    paths: [x]\n",
          "policy.yaml:8:11: components[0].type: unknown component type 'dir'; valid types: files, "
          "database, object_store");
    FAILS("version: 2\n" HEAD TARGETS FILES,
          "policy.yaml:1:10: version: unsupported policy version 2; this coffer reads version 1");
    FAILS("version: one\n" HEAD TARGETS FILES,
          "policy.yaml:1:10: version: expected a whole number, got 'one'");
    FAILS(HEAD "consistency:\n  mode: offline\n" TARGETS FILES,
          "policy.yaml:4:9: consistency.mode: unknown mode 'offline'; valid modes: maintenance, "
          "online");
    FAILS(HEAD
          "consistency:\n  mode: maintenance\n  stop: a\n  start: b\n  timeout: 0\n" TARGETS FILES,
          "policy.yaml:7:12: consistency.timeout: must be 1 or more, got 0");
    FAILS(HEAD TARGETS FILES "validate:\n  - name: v\n    run: x\n    timeout: 1h\n",
          "policy.yaml:13:14: validate[0].timeout: expected a whole number, got '1h'");
}

static void names(void **state)
{
    (void)state;
    FAILS("name: my app\nroot: /srv\n" TARGETS FILES,
          "policy.yaml:1:7: name: invalid name 'my app': use letters, digits, '.', '_' and '-'");
    FAILS(HEAD TARGETS "components:\n  - name: a/b\n    type: files\n    paths: [x]\n",
          "policy.yaml:7:11: components[0].name: invalid name 'a/b': use letters, digits, '.', '_' "
          "and '-'");
    FAILS(HEAD TARGETS "components:\n  - name: f\n    type: files\n    paths: [x]\n"
                       "  - name: f\n    type: database\n    driver: sqlite\n",
          "policy.yaml:10:11: components[1].name: duplicate component name 'f' (also "
          "components[0], line 7)");
    FAILS(HEAD "targets:\n  - name: a\n    location: /b\n  - name: a\n    location: /c\n" FILES,
          "policy.yaml:6:11: targets[1].name: duplicate target name 'a' (also targets[0], line 4)");
    FAILS(HEAD TARGETS FILES "validate:\n  - name: v\n    run: x\n  - name: v\n    run: y\n",
          "policy.yaml:13:11: validate[1].name: duplicate check name 'v' (also validate[0])");
    cf_policy *p = LOAD("name: My_app-2.0\nroot: /srv\n" TARGETS FILES);
    assert_string_equal(p->name, "My_app-2.0");
    cf_policy_free(p);
}

/* ---- root and paths --------------------------------------------------- */

static void root_and_paths(void **state)
{
    (void)state;
    FAILS("name: t\nroot: srv/app\n" TARGETS FILES,
          "policy.yaml:2:7: root: 'srv/app' is not an absolute path");
    FAILS("name: t\nroot: ~/app\n" TARGETS FILES,
          "policy.yaml:2:7: root: '~/app' is not an absolute path");

    cf_policy *p = LOAD("name: t\nroot: //srv//app///\n" TARGETS FILES);
    assert_string_equal(p->root, "/srv/app");
    cf_policy_free(p);
    p = LOAD("name: t\nroot: /\n" TARGETS FILES);
    assert_string_equal(p->root, "/");
    cf_policy_free(p);

    FAILS(HEAD TARGETS "components:\n  - name: f\n    type: files\n    paths: [data, ../etc]\n",
          "policy.yaml:9:19: components[0].paths[1]: '../etc' contains '..'; paths must stay "
          "inside root");
    FAILS(HEAD TARGETS "components:\n  - name: f\n    type: files\n    paths: data/../../x\n",
          "policy.yaml:9:12: components[0].paths: 'data/../../x' contains '..'; paths must stay "
          "inside root");
    FAILS(
        HEAD TARGETS "components:\n  - name: f\n    type: files\n    paths: [/etc]\n",
        "policy.yaml:9:13: components[0].paths[0]: '/etc' is absolute; paths are relative to root");
    FAILS(HEAD TARGETS
          "components:\n  - name: f\n    type: files\n    paths: [x]\n    exclude: [x/..]\n",
          "policy.yaml:10:15: components[0].exclude[0]: 'x/..' contains '..'; paths must stay "
          "inside root");
    FAILS(HEAD TARGETS
          "components:\n  - name: f\n    type: files\n    paths: [x]\n    exclude: ['']\n",
          "policy.yaml:10:15: components[0].exclude[0]: empty path");
    FAILS(HEAD TARGETS
          "components:\n  - name: f\n    type: files\n    paths: [x]\n    required: [/x/conf]\n",
          "policy.yaml:10:16: components[0].required[0]: '/x/conf' is absolute; paths are relative "
          "to root");
    FAILS(HEAD TARGETS "components:\n  - name: f\n    type: files\n    paths: [data]\n    "
                       "required: [data/a, other/b]\n",
          "policy.yaml:10:24: components[0].required[1]: 'other/b' is not under any of paths, so "
          "it would never be backed up");
    FAILS(
        HEAD TARGETS
        "components:\n  - name: f\n    type: files\n    paths: [data]\n    required: database.db\n",
        "policy.yaml:10:15: components[0].required: 'database.db' is not under any of paths, so it "
        "would never be backed up");

    /* One string for a list; "..x" is a name, not "..". */
    p = LOAD(HEAD TARGETS "components:\n  - name: f\n    type: files\n    paths: ./data//sub/\n"
                          "    exclude: '**/*.tmp'\n    required: data/sub/..keep\n"
                          "  - name: g\n    type: files\n    paths: [., ..x]\n    exclude:\n");
    const cf_component *c = &p->components[0];
    assert_int_equal(c->paths.n, 1);
    assert_string_equal(c->paths.v[0], "data/sub");
    assert_int_equal(c->exclude.n, 1);
    assert_string_equal(c->exclude.v[0], "**/*.tmp");
    assert_string_equal(c->required.v[0], "data/sub/..keep");
    c = &p->components[1];
    assert_string_equal(c->paths.v[0], ".");
    assert_string_equal(c->paths.v[1], "..x");
    assert_int_equal(c->exclude.n, 0);
    cf_policy_free(p);
}

/* ---- consistency, retention, object stores ----------------------------- */

static void consistency(void **state)
{
    (void)state;
    cf_policy *p = LOAD(HEAD TARGETS FILES);
    assert_int_equal(p->mode, CF_MODE_ONLINE);
    assert_null(p->stop_cmd);
    assert_int_equal(p->command_timeout, 600);
    assert_null(p->validate);
    assert_int_equal(p->nvalidate, 0);
    assert_int_equal(p->retention.keep_daily, -1);
    assert_null(p->description);
    cf_policy_free(p);

    p = LOAD(
        HEAD
        "consistency:\n  mode: maintenance\n  stop: a\n  start: b\n  timeout: 30\n" TARGETS FILES);
    assert_int_equal(p->mode, CF_MODE_MAINTENANCE);
    assert_int_equal(p->command_timeout, 30);
    cf_policy_free(p);

    p = LOAD(HEAD "consistency:\n  mode: online\n" TARGETS FILES);
    assert_int_equal(p->mode, CF_MODE_ONLINE);
    cf_policy_free(p);

    FAILS(HEAD "consistency:\n  mode: online\n  stop: systemctl stop x\n" TARGETS FILES,
          "policy.yaml:5:9: consistency.stop: stop/start only apply to maintenance mode (mode is "
          "online); "
          "remove stop or set mode: maintenance");
    FAILS(HEAD "consistency:\n  start: x\n" TARGETS FILES,
          "policy.yaml:4:10: consistency.start: stop/start only apply to maintenance mode (mode is "
          "online); "
          "remove start or set mode: maintenance");

    /* online consistency: defaults, then each key */
    p = LOAD(HEAD TARGETS FILES);
    assert_int_equal(p->two_pass, -1);
    assert_int_equal(p->verify_refs, -1);
    assert_int_equal(p->inconsistent_fail, 0);
    assert_null(p->components[0].snapshot);
    cf_policy_free(p);
    p = LOAD(HEAD "consistency:\n  two_pass: false\n  references: skip\n  on_inconsistent: fail\n"
                  TARGETS "components:\n  - name: f\n    type: files\n    paths: [x]\n"
                  "    snapshot: lvm\n    snapshot_size: 2G\n  - name: g\n    type: files\n"
                  "    paths: [y]\n    snapshot: btrfs\n");
    assert_int_equal(p->two_pass, 0);
    assert_int_equal(p->verify_refs, 0);
    assert_int_equal(p->inconsistent_fail, 1);
    assert_string_equal(p->components[0].snapshot, "lvm");
    assert_string_equal(p->components[0].snapshot_size, "2G");
    assert_string_equal(p->components[1].snapshot, "btrfs");
    assert_null(p->components[1].snapshot_size);
    cf_policy_free(p);
    p = LOAD(HEAD "consistency:\n  mode: maintenance\n  stop: a\n  start: b\n  references: verify\n"
                  TARGETS FILES);
    assert_int_equal(p->verify_refs, 1);
    cf_policy_free(p);
    FAILS(HEAD "consistency:\n  two_pass: maybe\n" TARGETS FILES,
          "policy.yaml:4:13: consistency.two_pass: unknown value 'maybe'; valid values: false, true");
    FAILS(HEAD "consistency:\n  on_inconsistent: ignore\n" TARGETS FILES,
          "policy.yaml:4:20: consistency.on_inconsistent: unknown value 'ignore'; valid values: "
          "mark, fail");
    FAILS(HEAD "consistency:\n  mode: maintenance\n  stop: a\n  start: b\n  two_pass: true\n"
               TARGETS FILES,
          "policy.yaml:7:13: consistency.two_pass: two_pass only applies to online mode (mode is "
          "maintenance: nothing changes while the application is stopped); remove it or set "
          "mode: online");
    FAILS(HEAD TARGETS "components:\n  - name: f\n    type: files\n    paths: [x]\n"
                       "    snapshot: zfs\n",
          "policy.yaml:10:15: components[0].snapshot: unknown value 'zfs'; valid values: none, "
          "btrfs, lvm");
    FAILS(HEAD TARGETS "components:\n  - name: f\n    type: files\n    paths: [x]\n"
                       "    snapshot: btrfs\n    snapshot_size: 1G\n",
          "policy.yaml:11:20: components[0].snapshot_size: snapshot_size only applies to "
          "snapshot: lvm (the size of a classic, non-thin snapshot)");
}

static void retention(void **state)
{
    (void)state;
    cf_policy *p =
        LOAD(HEAD TARGETS FILES
             "retention:\n  keep_last: 0\n  keep_hourly: 24\n  keep_daily: '7'\n  keep_weekly: 4\n"
             "  keep_monthly: 12\n  keep_yearly: 3\n  keep_within: 1y6m\n");
    const cf_retention *r = &p->retention;
    assert_int_equal(r->keep_last, 0);
    assert_int_equal(r->keep_hourly, 24);
    assert_int_equal(r->keep_daily, 7);
    assert_int_equal(r->keep_weekly, 4);
    assert_int_equal(r->keep_monthly, 12);
    assert_int_equal(r->keep_yearly, 3);
    assert_string_equal(r->keep_within, "1y6m");
    cf_policy_free(p);

    FAILS(HEAD TARGETS FILES "retention:\n  keep_daily: -1\n",
          "policy.yaml:11:15: retention.keep_daily: must be 0 or more, got -1");
    FAILS(HEAD TARGETS FILES "retention:\n  keep_daily: 7d\n",
          "policy.yaml:11:15: retention.keep_daily: expected a whole number, got '7d'");
    FAILS(HEAD TARGETS FILES "retention:\n  keep_daily: 99999999999\n",
          "policy.yaml:11:15: retention.keep_daily: too large (at most 2147483647)");
    FAILS(HEAD TARGETS FILES "retention:\n  keep_within: 30 days\n",
          "policy.yaml:11:16: retention.keep_within: invalid duration '30 days': expected a unit "
          "after 30: "
          "y (years), m (months), w (weeks), d (days) or h (hours)");
}

static void durations(void **state)
{
    (void)state;
    cf_duration d;
    assert_int_equal(cf_duration_parse("30d", &d), 0);
    assert_int_equal(d.days, 30);
    assert_int_equal(d.years + d.months + d.weeks + d.hours, 0);
    assert_int_equal(cf_duration_parse("1y6m2w3d12h", &d), 0);
    assert_int_equal(d.years, 1);
    assert_int_equal(d.months, 6);
    assert_int_equal(d.weeks, 2);
    assert_int_equal(d.days, 3);
    assert_int_equal(d.hours, 12);
    assert_int_equal(cf_duration_parse("12h", &d), 0);
    assert_int_equal(d.hours, 12);
    assert_int_equal(cf_duration_parse("2w", NULL), 0);
    assert_int_equal(cf_duration_parse("", &d), -1);
    assert_int_equal(cf_duration_parse("d", &d), -1);
    assert_non_null(strstr(cf_error(), "invalid duration 'd': expected a number at 'd'"));
    assert_int_equal(cf_duration_parse("30", &d), -1);
    assert_int_equal(cf_duration_parse("5s", &d), -1);
    assert_int_equal(cf_duration_parse("1d1d", &d), -1);
    assert_string_equal(cf_error(), "invalid duration '1d1d': unit 'd' given twice");
    assert_int_equal(cf_duration_parse("-1d", &d), -1);
    assert_int_equal(cf_duration_parse("99999999d", &d), -1);
    assert_int_equal(cf_duration_parse("1D", &d), -1);
}

static void object_store(void **state)
{
    (void)state;
    cf_policy *p =
        LOAD(HEAD TARGETS
             "components:\n"
             "  - name: blobs\n    type: object_store\n    driver: s3\n    bucket: app-files\n"
             "  - name: other\n    type: object_store\n    driver: s3\n    protect: copy\n"
             "    bucket: b2\n");
    assert_int_equal(p->components[0].type, CF_COMP_OBJECT_STORE);
    assert_int_equal(p->components[0].protect, CF_PROTECT_VERSIONING);
    assert_string_equal(cf_config_get(p->components[0].options, "bucket"), "app-files");
    assert_int_equal(p->components[1].protect, CF_PROTECT_COPY);
    assert_null(cf_config_find(p->components[1].options, "protect"));
    cf_policy_free(p);
    FAILS(
        HEAD TARGETS
        "components:\n  - name: o\n    type: object_store\n    driver: s3\n    protect: snapshot\n",
        "policy.yaml:10:14: components[0].protect: unknown protection 'snapshot'; valid values: "
        "versioning, copy");
}

/* ---- targets ------------------------------------------------------------ */

static void targets(void **state)
{
    (void)state;
    cf_policy *p =
        LOAD(HEAD "targets:\n"
                  "  - name: local\n    location: /mnt/backup/\n"
                  "  - name: s3a\n    location: s3://my-bucket/coffer/app\n    region: eu-west-1\n"
                  "  - name: s3b\n    location: s3://only-bucket\n"
                  "  - name: s3c\n    location: s3://b/p\n    bucket: explicit\n    prefix: other\n"
                  "  - name: sftp\n    driver: sftp\n    location: host:backups\n" FILES);
    const cf_target *t = &p->targets[0];
    assert_string_equal(t->driver, "local");
    assert_string_equal(t->location, "/mnt/backup");
    assert_string_equal(cf_config_get(t->options, "path"), "/mnt/backup");
    t = &p->targets[1];
    assert_string_equal(t->driver, "s3");
    assert_string_equal(cf_config_get(t->options, "bucket"), "my-bucket");
    assert_string_equal(cf_config_get(t->options, "prefix"), "coffer/app");
    assert_string_equal(cf_config_get(t->options, "region"), "eu-west-1");
    assert_int_equal(cf_config_find(t->options, "region")->line, 8);
    assert_int_equal(cf_config_find(t->options, "region")->col, 5);
    assert_int_equal(cf_config_find(t->options, "bucket")->line, 7);
    assert_int_equal(cf_config_find(t->options, "bucket")->col, 15);
    t = &p->targets[2];
    assert_string_equal(cf_config_get(t->options, "bucket"), "only-bucket");
    assert_null(cf_config_find(t->options, "prefix"));
    t = &p->targets[3];
    assert_string_equal(cf_config_get(t->options, "bucket"), "explicit");
    assert_string_equal(cf_config_get(t->options, "prefix"), "other");
    t = &p->targets[4];
    assert_string_equal(t->driver, "sftp");
    assert_string_equal(t->location, "host:backups");
    assert_int_equal(t->options->n, 0);
    assert_int_equal(t->driver_line, 16);
    assert_int_equal(t->driver_col, 13);
    cf_policy_free(p);

    FAILS(HEAD "targets:\n  - name: a\n    location: backups\n" FILES,
          "policy.yaml:5:15: targets[0].location: relative location 'backups'; use an absolute "
          "path or s3://BUCKET/PREFIX");
    FAILS(HEAD "targets:\n  - name: a\n    location: ./backups\n" FILES,
          "policy.yaml:5:15: targets[0].location: relative location './backups'; use an absolute "
          "path or s3://BUCKET/PREFIX");
    FAILS(HEAD "targets:\n  - name: a\n    location: s3:///prefix\n" FILES,
          "policy.yaml:5:15: targets[0].location: no bucket in 's3:///prefix'; expected "
          "s3://BUCKET/PREFIX");
    FAILS(HEAD "targets:\n  - name: a\n    location: gs://b/p\n" FILES,
          "policy.yaml:5:15: targets[0].location: cannot tell the driver from 'gs://b/p'; add a "
          "driver key");
    FAILS(HEAD "targets:\n  - name: a\n    driver: s3\n    location: /srv/b\n" FILES,
          "policy.yaml:6:15: targets[0].location: the s3 driver needs a location like "
          "s3://BUCKET/PREFIX, got '/srv/b'");
    FAILS(HEAD "targets:\n  - name: a\n    driver: local\n    location: s3://b/p\n" FILES,
          "policy.yaml:6:15: targets[0].location: the local driver needs an absolute path, got "
          "'s3://b/p'");
    FAILS(HEAD "targets:\n  - name: a\n    location: ''\n" FILES,
          "policy.yaml:5:15: targets[0].location: empty location");
}

/* ---- driver option tables -------------------------------------------- */

static const coffer_option sqlite_opts[] = {
    {"path", COFFER_OPT_PATH, NULL, 1, 0, "database file"},
    {"busy_timeout", COFFER_OPT_INT, "5000", 0, 0, "milliseconds"},
    {"integrity_check", COFFER_OPT_BOOL, "true", 0, 0, "run PRAGMA integrity_check"},
    {"tables", COFFER_OPT_LIST, NULL, 0, 0, "tables to count"},
    {NULL, 0, NULL, 0, 0, NULL},
};
static const coffer_option postgres_opts[] = {
    {"host", COFFER_OPT_STRING, "localhost", 0, 0, ""},
    {"password", COFFER_OPT_STRING, NULL, 0, 1, ""},
    {"password_env", COFFER_OPT_STRING, NULL, 0, 0, ""},
    {NULL, 0, NULL, 0, 0, NULL},
};
static const coffer_option local_opts[] = {
    {"path", COFFER_OPT_PATH, NULL, 1, 0, ""},
    {"pack_size", COFFER_OPT_SIZE, "64M", 0, 0, ""},
    {NULL, 0, NULL, 0, 0, NULL},
};
static const coffer_option s3_opts[] = {
    {"bucket", COFFER_OPT_STRING, NULL, 1, 0, ""},
    {"prefix", COFFER_OPT_STRING, "", 0, 0, ""},
    {"region", COFFER_OPT_STRING, "us-east-1", 0, 0, ""},
    {"secret_key", COFFER_OPT_STRING, NULL, 1, 1, ""},
    {"secret_key_env", COFFER_OPT_STRING, NULL, 0, 0, ""},
    {"secret_key_file", COFFER_OPT_PATH, NULL, 0, 0, ""},
    {NULL, 0, NULL, 0, 0, NULL},
};
static const coffer_option bare_opts[] = {{NULL, 0, NULL, 0, 0, NULL}};

static int lookups;

static const coffer_option *fake_lookup(void *ud, coffer_driver_kind kind, const char *name)
{
    assert_ptr_equal(ud, &lookups);
    lookups++;
    if (kind == COFFER_KIND_DATABASE && strcmp(name, "sqlite") == 0)
        return sqlite_opts;
    if (kind == COFFER_KIND_DATABASE && strcmp(name, "postgres") == 0)
        return postgres_opts;
    if (kind == COFFER_KIND_STORAGE && strcmp(name, "local") == 0)
        return local_opts;
    if (kind == COFFER_KIND_STORAGE && strcmp(name, "s3") == 0)
        return s3_opts;
    if (kind == COFFER_KIND_STORAGE && strcmp(name, "bare") == 0)
        return bare_opts;
    cf_fail("no %s driver named '%s'; available: %s",
            kind == COFFER_KIND_DATABASE ? "database" : "storage", name,
            kind == COFFER_KIND_DATABASE ? "sqlite, postgres" : "local, s3, bare");
    return NULL;
}

/* Load (must succeed), then check drivers and expect `want` (NULL: ok). */
static void drivers_at(const char *yaml, const char *want, const char *file, int line)
{
    cf_policy *p = load_at(yaml, file, line);
    int rc = cf_policy_check_drivers(p, fake_lookup, &lookups);
    if (!want && rc != 0) {
        print_error("driver check failed: %s\n--- yaml ---\n%s\n", cf_error(), yaml);
        cf_policy_free(p);
        _fail(file, line);
    }
    if (want && rc == 0) {
        print_error("driver check passed; expected\n  %s\n--- yaml ---\n%s\n", want, yaml);
        cf_policy_free(p);
        _fail(file, line);
    }
    if (want && strcmp(cf_error(), want) != 0) {
        print_error("error was\n  %s\nexpected\n  %s\n--- yaml ---\n%s\n", cf_error(), want, yaml);
        cf_policy_free(p);
        _fail(file, line);
    }
    cf_policy_free(p);
}
#define DRIVERS(y, want) drivers_at((y), (want), __FILE__, __LINE__)

#define DB(extra)                                                                                  \
    HEAD TARGETS "components:\n  - name: db\n    type: database\n    driver: sqlite\n" extra

static void drivers_ok(void **state)
{
    (void)state;
    unset_aster_env();
    cf_policy *p = LOAD(asterdrive_yaml);
    lookups = 0;
    assert_int_equal(cf_policy_check_drivers(p, fake_lookup, &lookups), 0);
    assert_int_equal(lookups, 2); /* target "local", component "sqlite"; files need none */
    const coffer_config *o = p->components[1].options;
    assert_string_equal(cf_config_get(o, "path"), "data/asterdrive.db");
    assert_int_equal(cf_config_find(o, "path")->line, 20);
    /* Defaults filled at line 0; options without default stay unset. */
    assert_string_equal(cf_config_get(o, "busy_timeout"), "5000");
    assert_int_equal(cf_config_find(o, "busy_timeout")->line, 0);
    assert_string_equal(cf_config_get(o, "integrity_check"), "true");
    assert_null(cf_config_find(o, "tables"));
    assert_string_equal(cf_config_get(p->targets[0].options, "pack_size"), "64M");
    /* A second pass changes nothing and passes again. */
    size_t n = o->n;
    assert_int_equal(cf_policy_check_drivers(p, fake_lookup, &lookups), 0);
    assert_int_equal(o->n, n);
    cf_policy_free(p);

    /* Given values win over defaults; lists as list or as one string. */
    p = LOAD(
        DB("    path: x.db\n    busy_timeout: 100\n    integrity_check: no\n    tables: [a, b]\n"));
    assert_int_equal(cf_policy_check_drivers(p, fake_lookup, &lookups), 0);
    o = p->components[0].options;
    assert_string_equal(cf_config_get(o, "busy_timeout"), "100");
    assert_int_equal(cf_config_get_bool(o, "integrity_check", 1), 0);
    assert_int_equal(cf_config_list_len(o, "tables"), 2);
    assert_string_equal(cf_config_list_item(o, "tables", 1), "b");
    cf_policy_free(p);
    DRIVERS(DB("    path: x.db\n    tables: a\n"), NULL);
    DRIVERS(DB("    path: x.db\n    tables: []\n"), NULL);
    DRIVERS(HEAD "targets:\n  - name: a\n    location: /b\n    pack_size: 1G\n" FILES, NULL);
    /* A required secret is satisfied by its _env or _file companion. */
    DRIVERS(HEAD
            "targets:\n  - name: a\n    location: s3://b/p\n    secret_key_env: S3_SECRET\n" FILES,
            NULL);
    DRIVERS(HEAD "targets:\n  - name: a\n    location: s3://b/p\n    secret_key_file: "
                 "/etc/coffer/s3\n" FILES,
            NULL);
}

static void drivers_errors(void **state)
{
    (void)state;
    DRIVERS(
        DB("    path: x.db\n    busy_timeot: 5\n"),
        "policy.yaml:11:5: components[0].busy_timeot: unknown option of database driver 'sqlite'; "
        "valid options: path, busy_timeout, integrity_check, tables");
    DRIVERS(DB("    path: x.db\n    busy_timeout: soon\n"),
            "policy.yaml:11:5: components[0].busy_timeout: expected a whole number, got 'soon'");
    DRIVERS(DB("    path: x.db\n    integrity_check: maybe\n"),
            "policy.yaml:11:5: components[0].integrity_check: expected true or false, got 'maybe'");
    DRIVERS(DB("    path: [a.db, b.db]\n"),
            "policy.yaml:10:5: components[0].path: expected a single value, got a list");
    DRIVERS(
        DB(""),
        "policy.yaml:7:5: components[0].path: missing required option of database driver 'sqlite'");
    DRIVERS(HEAD "targets:\n  - name: a\n    location: /b\n    pack_size: huge\n" FILES,
            "policy.yaml:6:5: targets[0].pack_size: expected a size such as 4096, 64K, 64M or 1G, "
            "got 'huge'");
    /* Secrets in the policy text are refused, even through ${VAR}. */
    DRIVERS(HEAD "targets:\n  - name: a\n    location: s3://b/p\n    secret_key: abc123\n" FILES,
            "policy.yaml:6:5: targets[0].secret_key: secret_key holds a secret: do not write it in "
            "the policy; "
            "use secret_key_env or secret_key_file");
    setenv("CF_T_SECRET", "hunter2", 1);
    DRIVERS(HEAD TARGETS "components:\n  - name: pg\n    type: database\n    driver: postgres\n"
                         "    password: ${CF_T_SECRET}\n",
            "policy.yaml:10:5: components[0].password: password holds a secret: do not write it in "
            "the policy; "
            "use password_env");
    assert_null(strstr(cf_error(), "hunter2"));
    DRIVERS(
        HEAD "targets:\n  - name: a\n    location: s3://b/p\n" FILES,
        "policy.yaml:4:5: targets[0].secret_key: missing required option of storage driver 's3'; "
        "give secret_key_env or secret_key_file");
    /* Unknown drivers: the lookup's message, placed at the driver value. */
    DRIVERS(HEAD TARGETS "components:\n  - name: db\n    type: database\n    driver: oracle\n",
            "policy.yaml:9:13: components[0].driver: no database driver named 'oracle'; available: "
            "sqlite, postgres");
    DRIVERS(HEAD "targets:\n  - name: a\n    location: /b\n  - name: c\n    driver: ftp\n    "
                 "location: ftp://x\n" FILES,
            "policy.yaml:7:13: targets[1].driver: no storage driver named 'ftp'; available: local, "
            "s3, bare");
    /* A driver without options refuses any. */
    DRIVERS(
        HEAD "targets:\n  - name: a\n    driver: bare\n    location: /b\n    x: 1\n" FILES,
        "policy.yaml:7:5: targets[0].x: unknown option: storage driver 'bare' takes no options");
    /* object_store components are checked against storage drivers. */
    DRIVERS(HEAD TARGETS
            "components:\n  - name: o\n    type: object_store\n    driver: s3\n    bucket: x\n"
            "    secret_key_env: K\n    endpoint: http://rgw\n",
            "policy.yaml:12:5: components[0].endpoint: unknown option of storage driver 's3'; "
            "valid options: bucket, prefix, region, secret_key, secret_key_env, secret_key_file");
}

/* ---- checks:, rehearse:, validate[].credentials ------------------------ */

/* Components for the checks tests: the section under test starts at line 17. */
#define APP                                                                                        \
    "components:\n"                                                                                \
    "  - name: f\n"                                                                                \
    "    type: files\n"                                                                            \
    "    paths: [data]\n"                                                                          \
    "  - name: db\n"                                                                               \
    "    type: database\n"                                                                         \
    "    driver: sqlite\n"                                                                         \
    "    path: x.db\n"                                                                             \
    "  - name: bucket\n"                                                                           \
    "    type: object_store\n"                                                                     \
    "    driver: s3\n"

static void checks_valid(void **state)
{
    (void)state;
    cf_policy *p = LOAD(HEAD TARGETS APP
                        "checks:\n"
                        "  - name: counts\n"
                        "    type: row_counts\n"
                        "  - name: files-exist\n"
                        "    type: references\n"
                        "    database: db\n"
                        "    query: SELECT path, size FROM files\n"
                        "    component: f\n"
                        "    prefix: data/uploads/\n"
                        "    show: 0\n"
                        "  - name: stray\n"
                        "    type: orphans\n"
                        "    database: db\n"
                        "    query: SELECT path FROM files\n"
                        "    component: f\n"
                        "    under: [data/uploads/]\n"
                        "    exclude: ['**/.keep']\n"
                        "    level: fail\n"
                        "    show: 1000\n"
                        "    timeout: 60\n"
                        "  - name: tree\n"
                        "    type: sql\n"
                        "    database: db\n"
                        "    query: |\n"
                        "      SELECT id FROM folders WHERE parent NOT IN (SELECT id FROM folders)\n"
                        "    level: warn\n"
                        "  - name: objs\n"
                        "    type: references\n"
                        "    database: db\n"
                        "    query: SELECT key FROM blobs\n"
                        "    component: bucket\n"
                        "validate:\n"
                        "  - name: doctor\n"
                        "    run: app doctor\n"
                        "    credentials: [db]\n"
                        "rehearse:\n"
                        "  dir: /var//tmp/\n"
                        "  scratch:\n"
                        "    db: postgres://coffer@db-test/postgres\n");
    assert_int_equal(p->nchecks, 5);
    cf_app_check *c = &p->checks[0];
    assert_string_equal(c->name, "counts");
    assert_int_equal(c->type, CF_CHECK_ROW_COUNTS);
    assert_null(c->database);
    assert_null(c->query);
    assert_null(c->component);
    assert_string_equal(c->prefix, "");
    assert_int_equal(c->warn, 0);
    assert_int_equal(c->show, 10);
    assert_int_equal(c->timeout, 3600);
    assert_int_equal(c->line, 18);
    assert_int_equal(c->col, 5);
    c = &p->checks[1];
    assert_int_equal(c->type, CF_CHECK_REFERENCES);
    assert_string_equal(c->database, "db");
    assert_string_equal(c->query, "SELECT path, size FROM files");
    assert_int_equal(c->query_line, 23);
    assert_int_equal(c->query_col, 12);
    assert_string_equal(c->component, "f");
    assert_string_equal(c->prefix, "data/uploads/");
    assert_int_equal(c->show, 0);
    assert_int_equal(c->warn, 0);
    c = &p->checks[2];
    assert_int_equal(c->type, CF_CHECK_ORPHANS);
    assert_int_equal(c->warn, 0); /* orphans default to warn; level: fail given */
    assert_int_equal(c->under.n, 1);
    assert_string_equal(c->under.v[0], "data/uploads");
    assert_int_equal(c->exclude.n, 1);
    assert_string_equal(c->exclude.v[0], "**/.keep");
    assert_int_equal(c->show, 1000);
    assert_int_equal(c->timeout, 60);
    c = &p->checks[3];
    assert_int_equal(c->type, CF_CHECK_SQL);
    assert_int_equal(c->warn, 1);
    assert_string_equal(c->query,
                        "SELECT id FROM folders WHERE parent NOT IN (SELECT id FROM folders)\n");
    c = &p->checks[4];
    assert_string_equal(c->component, "bucket");
    assert_int_equal(p->validate[0].credentials.n, 1);
    assert_string_equal(p->validate[0].credentials.v[0], "db");
    assert_string_equal(p->rehearse_dir, "/var/tmp");
    assert_int_equal(p->nscratch, 1);
    assert_string_equal(cf_policy_scratch(p, "db"), "postgres://coffer@db-test/postgres");
    assert_null(cf_policy_scratch(p, "f"));
    cf_policy_free(p);

    /* orphans default to level warn; empty sections are fine */
    p = LOAD(HEAD TARGETS APP "checks:\n  - name: o\n    type: orphans\n    database: db\n"
                              "    query: SELECT p FROM t\n    component: f\n"
                              "rehearse:\n");
    assert_int_equal(p->checks[0].warn, 1);
    assert_int_equal(p->checks[0].under.n, 0);
    assert_null(p->rehearse_dir);
    cf_policy_free(p);
    p = LOAD(HEAD TARGETS APP "checks: []\n");
    assert_int_equal(p->nchecks, 0);
    cf_policy_free(p);
}

#define CK "checks:\n  - name: c\n"

static void checks_errors(void **state)
{
    (void)state;
    FAILS(HEAD TARGETS APP "checks: x\n",
          "policy.yaml:17:9: checks: expected a list of checks, got a string");
    FAILS(HEAD TARGETS APP CK "    type: sql\n    databse: db\n",
          "policy.yaml:20:5: checks[0].databse: unknown key; valid keys: name, type, database, "
          "query, component, prefix, under, exclude, level, show, timeout");
    FAILS(HEAD TARGETS APP CK "    type: row_counts\n  - name: c\n    type: row_counts\n",
          "policy.yaml:20:11: checks[1].name: duplicate check name 'c' (also checks[0], line 18)");
    FAILS(HEAD TARGETS APP "checks:\n  - name: a/b\n    type: sql\n",
          "policy.yaml:18:11: checks[0].name: invalid name 'a/b': use letters, digits, '.', '_' "
          "and '-'");
    FAILS(HEAD TARGETS APP "checks:\n  - type: sql\n",
          "policy.yaml:18:5: checks[0].name: required key is missing");
    FAILS(HEAD TARGETS APP CK "    type: count\n",
          "policy.yaml:19:11: checks[0].type: unknown check type 'count'; valid types: "
          "row_counts, references, orphans, sql");
    FAILS(HEAD TARGETS APP CK "    type: sql\n    query: SELECT 1\n",
          "policy.yaml:18:5: checks[0].database: required key is missing");
    FAILS(HEAD TARGETS APP CK "    type: sql\n    database: dbx\n    query: SELECT 1\n",
          "policy.yaml:20:15: checks[0].database: no component named 'dbx'; database "
          "components: db");
    FAILS(HEAD TARGETS APP CK "    type: sql\n    database: f\n    query: SELECT 1\n",
          "policy.yaml:20:15: checks[0].database: component 'f' is of type files; give a "
          "database component (db)");
    FAILS(HEAD TARGETS APP CK "    type: row_counts\n    database: bucket\n",
          "policy.yaml:20:15: checks[0].database: component 'bucket' is of type object_store; "
          "give a database component (db)");
    FAILS(HEAD TARGETS APP CK "    type: row_counts\n    query: SELECT 1\n",
          "policy.yaml:20:12: checks[0].query: row_counts takes no query: it compares the row "
          "counts the set recorded with the restored database's");
    FAILS(HEAD TARGETS APP CK "    type: sql\n    database: db\n",
          "policy.yaml:18:5: checks[0].query: required key is missing");
    FAILS(HEAD TARGETS APP CK "    type: sql\n    database: db\n    query: ' ; '\n",
          "policy.yaml:21:12: checks[0].query: empty query");
    FAILS(HEAD TARGETS APP CK "    type: sql\n    database: db\n    query: SELECT 1\n"
                              "    component: f\n",
          "policy.yaml:22:16: checks[0].component: only references and orphans checks take a "
          "component (this is a sql check)");
    FAILS(HEAD TARGETS APP CK "    type: sql\n    database: db\n    query: SELECT 1\n"
                              "    prefix: x/\n",
          "policy.yaml:22:13: checks[0].prefix: only references and orphans checks take a prefix "
          "(this is a sql check)");
    FAILS(HEAD TARGETS APP CK "    type: references\n    database: db\n    query: SELECT 1\n",
          "policy.yaml:18:5: checks[0].component: required key is missing");
    FAILS(HEAD TARGETS APP CK "    type: references\n    database: db\n    query: SELECT 1\n"
                              "    component: db\n",
          "policy.yaml:22:16: checks[0].component: component 'db' is of type database; give a "
          "files or object_store component (f, bucket)");
    FAILS(HEAD TARGETS APP CK "    type: references\n    database: db\n    query: SELECT 1\n"
                              "    component: g\n",
          "policy.yaml:22:16: checks[0].component: no component named 'g'; files or "
          "object_store components: f, bucket");
    FAILS(HEAD TARGETS APP CK "    type: references\n    database: db\n    query: SELECT 1\n"
                              "    component: f\n    prefix: ../x\n",
          "policy.yaml:23:13: checks[0].prefix: '../x' has a '..' segment; give a plain relative "
          "prefix");
    FAILS(HEAD TARGETS APP CK "    type: references\n    database: db\n    query: SELECT 1\n"
                              "    component: f\n    prefix: /srv/x\n",
          "policy.yaml:23:13: checks[0].prefix: '/srv/x' is absolute; a prefix is relative to "
          "root");
    FAILS(HEAD TARGETS APP CK "    type: references\n    database: db\n    query: SELECT 1\n"
                              "    component: f\n    under: [data]\n",
          "policy.yaml:23:12: checks[0].under: only orphans checks take under (this is a "
          "references check)");
    FAILS(HEAD TARGETS APP CK "    type: references\n    database: db\n    query: SELECT 1\n"
                              "    component: f\n    exclude: [data]\n",
          "policy.yaml:23:14: checks[0].exclude: only orphans checks take exclude (this is a "
          "references check)");
    FAILS(HEAD TARGETS APP CK "    type: orphans\n    database: db\n    query: SELECT 1\n"
                              "    component: f\n    under: [data/a, other]\n",
          "policy.yaml:23:21: checks[0].under[1]: 'other' is not under any of component 'f''s "
          "paths");
    FAILS(HEAD TARGETS APP CK "    type: orphans\n    database: db\n    query: SELECT 1\n"
                              "    component: f\n    exclude: [../x]\n",
          "policy.yaml:23:15: checks[0].exclude[0]: '../x' contains '..'; paths must stay inside "
          "root");
    FAILS(HEAD TARGETS APP CK "    type: row_counts\n    level: error\n",
          "policy.yaml:20:12: checks[0].level: expected fail or warn, got 'error'");
    FAILS(HEAD TARGETS APP CK "    type: row_counts\n    show: 1001\n",
          "policy.yaml:20:11: checks[0].show: must be at most 1000, got 1001");
    FAILS(HEAD TARGETS APP CK "    type: row_counts\n    show: -1\n",
          "policy.yaml:20:11: checks[0].show: must be 0 or more, got -1");
    FAILS(HEAD TARGETS APP CK "    type: row_counts\n    timeout: 0\n",
          "policy.yaml:20:14: checks[0].timeout: must be 1 or more, got 0");
}

static void rehearse_and_credentials(void **state)
{
    (void)state;
    FAILS(HEAD TARGETS APP "rehearse:\n  dir: var/tmp\n",
          "policy.yaml:18:8: rehearse.dir: 'var/tmp' is not an absolute path");
    FAILS(HEAD TARGETS APP "rehearse:\n  directory: /x\n",
          "policy.yaml:18:3: rehearse.directory: unknown key; valid keys: dir, scratch");
    FAILS(HEAD TARGETS APP "rehearse:\n  scratch:\n    f: postgres://x/y\n",
          "policy.yaml:19:5: rehearse.scratch.f: component 'f' is of type files; give a database "
          "component (db)");
    FAILS(HEAD TARGETS APP "rehearse:\n  scratch:\n    pg: postgres://x/y\n",
          "policy.yaml:19:5: rehearse.scratch.pg: no component named 'pg'; database components: "
          "db");
    FAILS(HEAD TARGETS APP "rehearse:\n  scratch:\n    db: ''\n",
          "policy.yaml:19:9: rehearse.scratch.db: empty URL");
    FAILS(HEAD TARGETS APP "rehearse:\n  scratch: [a]\n",
          "policy.yaml:18:12: rehearse.scratch: expected a mapping, got a list");
    FAILS(HEAD TARGETS APP "validate:\n  - name: v\n    run: x\n    credentials: [db, f]\n",
          "policy.yaml:20:23: validate[0].credentials[1]: component 'f' is of type files; give a "
          "database component (db)");
    FAILS(HEAD TARGETS APP "validate:\n  - name: v\n    run: x\n    credentials: nope\n",
          "policy.yaml:20:18: validate[0].credentials: no component named 'nope'; database "
          "components: db");
    FAILS(HEAD TARGETS APP "validate:\n  - name: v\n    run: x\n    credentials: [db, db]\n",
          "policy.yaml:20:23: validate[0].credentials[1]: 'db' is listed twice");
}

/* immutable: and maintenance: on a target; the lock period against the
 * retention rules' horizon. */
static void immutable_targets(void **state)
{
    (void)state;
    cf_policy *p = LOAD(HEAD "targets:\n  - name: a\n    location: s3://b/p\n"
                             "    immutable:\n      mode: compliance\n      days: 30\n"
                             "    maintenance:\n      access_key_env: MAINT_KEY\n"
                             "      secret_key_file: /etc/coffer/maint\n"
                             "  - name: b\n    location: s3://b/q\n"
                             "    immutable: {mode: governance, minutes: 2}\n" FILES
                             "retention:\n  keep_daily: 7\n  keep_monthly: 3\n");
    const cf_target *t = &p->targets[0];
    assert_true(t->immutable);
    assert_int_equal(t->lock_mode, COFFER_LOCK_COMPLIANCE);
    assert_int_equal(t->lock_seconds, 30 * 86400);
    assert_string_equal(cf_config_get(t->maintenance, "access_key_env"), "MAINT_KEY");
    assert_string_equal(cf_config_get(t->maintenance, "secret_key_file"), "/etc/coffer/maint");
    assert_null(cf_config_find(t->options, "maintenance"));
    assert_null(cf_config_find(t->options, "immutable"));
    t = &p->targets[1];
    assert_int_equal(t->lock_mode, COFFER_LOCK_GOVERNANCE);
    assert_int_equal(t->lock_seconds, 120);
    assert_null(t->maintenance);
    char why[64];
    assert_int_equal(cf_retention_horizon(&p->retention, why, sizeof why), 3 * 31 * 86400);
    assert_string_equal(why, "keep_monthly: 3");
    cf_policy_free(p);

    p = LOAD(HEAD TARGETS FILES "retention:\n  keep_last: 5\n  keep_within: 1y2w\n");
    assert_int_equal(cf_retention_horizon(&p->retention, why, sizeof why), (366 + 14) * 86400);
    assert_string_equal(why, "keep_within: 1y2w");
    cf_policy_free(p);
    p = LOAD(HEAD TARGETS FILES "retention:\n  keep_last: 5\n");
    assert_int_equal(cf_retention_horizon(&p->retention, why, sizeof why), 0);
    cf_policy_free(p);

#define IMM(body) HEAD "targets:\n  - name: a\n    location: s3://b/p\n" body FILES
    FAILS(IMM("    immutable:\n      mode: governance\n      days: 0\n"),
          "policy.yaml:8:13: targets[0].immutable.days: must be 1 or more, got 0");
    FAILS(IMM("    immutable:\n      days: 3\n"),
          "policy.yaml:7:7: targets[0].immutable: mode is missing: governance or compliance");
    FAILS(IMM("    immutable:\n      mode: legal\n      days: 3\n"),
          "policy.yaml:7:13: targets[0].immutable.mode: unknown value 'legal'; valid values: "
          "governance, compliance");
    FAILS(IMM("    immutable:\n      mode: governance\n"),
          "policy.yaml:7:7: targets[0].immutable: days is missing: how long each object stays "
          "locked at least");
    FAILS(IMM("    immutable:\n      mode: governance\n      days: 3\n      minutes: 5\n"),
          "policy.yaml:9:16: targets[0].immutable.minutes: give days or minutes, not both");
    FAILS(IMM("    immutable: true\n"),
          "policy.yaml:6:16: targets[0].immutable: expected a mapping with mode and days, got a "
          "string");
    FAILS(IMM("    immutable:\n      mode: governance\n      years: 3\n"),
          "policy.yaml:8:7: targets[0].immutable.years: unknown key; valid keys: mode, days, "
          "minutes");
    FAILS(IMM("    maintenance:\n      bucket: other\n"),
          "policy.yaml:7:7: targets[0].maintenance.bucket: maintenance changes credentials only, "
          "never where the repository is");
    FAILS(IMM("    maintenance: MAINT\n"),
          "policy.yaml:6:18: targets[0].maintenance: expected a mapping of driver options (the "
          "maintenance credentials)");
#undef IMM
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(asterdrive_string),
        cmocka_unit_test(asterdrive_file),
        cmocka_unit_test(asterdrive_env_overrides),
        cmocka_unit_test(missing_file),
        cmocka_unit_test(expand_env),
        cmocka_unit_test(expand_in_policy),
        cmocka_unit_test(malformed_yaml),
        cmocka_unit_test(anchors_and_aliases),
        cmocka_unit_test(unknown_keys),
        cmocka_unit_test(duplicate_keys),
        cmocka_unit_test(missing_required),
        cmocka_unit_test(wrong_types),
        cmocka_unit_test(names),
        cmocka_unit_test(root_and_paths),
        cmocka_unit_test(consistency),
        cmocka_unit_test(retention),
        cmocka_unit_test(durations),
        cmocka_unit_test(object_store),
        cmocka_unit_test(targets),
        cmocka_unit_test(immutable_targets),
        cmocka_unit_test(drivers_ok),
        cmocka_unit_test(drivers_errors),
        cmocka_unit_test(checks_valid),
        cmocka_unit_test(checks_errors),
        cmocka_unit_test(rehearse_and_credentials),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
