/* Second pass over a loaded policy: driver options against the option
 * table each driver declares. */
#include "policy/policy.h"

#include <stdlib.h>
#include <string.h>

#include "util/util.h"

static const coffer_option *find_opt(const coffer_option *tab, const char *name)
{
    for (; tab && tab->name; tab++)
        if (strcmp(tab->name, name) == 0)
            return tab;
    return NULL;
}

static char *opt_names(const coffer_option *tab)
{
    cf_buf b = {0};
    for (; tab && tab->name; tab++) {
        if (b.len)
            cf_buf_append(&b, ", ", 2);
        cf_buf_append(&b, tab->name, strlen(tab->name));
    }
    cf_buf_append(&b, "", 1);
    return (char *)b.data;
}

typedef struct owner {
    const char *file;
    const char *path; /* "targets[0]", "components[1]" */
    const char *driver;
    const char *kind; /* "storage", "database" */
    int line, col;    /* of the target or component */
} owner;

static int bad_secret(const owner *o, const cf_config_item *it, const coffer_option *tab)
{
    char *env = cf_asprintf("%s_env", it->name), *file = cf_asprintf("%s_file", it->name);
    int has_env = find_opt(tab, env) != NULL, has_file = find_opt(tab, file) != NULL;
    if (has_env && has_file)
        cf_fail("%s:%d:%d: %s.%s: %s holds a secret: do not write it in the policy; use %s or %s",
                o->file, it->line, it->col, o->path, it->name, it->name, env, file);
    else if (has_env || has_file)
        cf_fail("%s:%d:%d: %s.%s: %s holds a secret: do not write it in the policy; use %s",
                o->file, it->line, it->col, o->path, it->name, it->name, has_env ? env : file);
    else
        cf_fail("%s:%d:%d: %s.%s: %s holds a secret: do not write it in the policy "
                "(%s driver '%s' declares no %s or %s option to read it from)",
                o->file, it->line, it->col, o->path, it->name, it->name, o->kind, o->driver, env,
                file);
    free(env);
    free(file);
    return -1;
}

static int check_item(const owner *o, const cf_config_item *it, const coffer_option *opt,
                      const coffer_option *tab)
{
    const char *expect = NULL;
    int64_t n;
    int b;
    if (it->line == 0)
        return 0; /* a default we filled on an earlier pass */
    if (opt->secret)
        return bad_secret(o, it, tab);
    if (opt->type == COFFER_OPT_LIST)
        return 0;
    if (it->is_list)
        return cf_fail("%s:%d:%d: %s.%s: expected a single value, got a list", o->file, it->line,
                       it->col, o->path, it->name);
    switch (opt->type) {
    case COFFER_OPT_INT:
        if (cf_parse_int(it->value, &n) < 0)
            expect = "a whole number";
        break;
    case COFFER_OPT_SIZE:
        if (cf_parse_size(it->value, &n) < 0)
            expect = "a size such as 4096, 64K, 64M or 1G";
        break;
    case COFFER_OPT_BOOL:
        if (cf_parse_bool(it->value, &b) < 0)
            expect = "true or false";
        break;
    default:
        break;
    }
    if (expect)
        return cf_fail("%s:%d:%d: %s.%s: expected %s, got '%s'", o->file, it->line, it->col,
                       o->path, it->name, expect, it->value);
    return 0;
}

/* Every option given is one of the driver's, with a value of its type. */
static int check_given(const owner *o, coffer_config *cfg, const coffer_option *tab)
{
    for (size_t i = 0; i < cfg->n; i++) {
        const cf_config_item *it = &cfg->items[i];
        const coffer_option *opt = find_opt(tab, it->name);
        if (!opt) {
            char *names = opt_names(tab);
            if (*names)
                cf_fail("%s:%d:%d: %s.%s: unknown option of %s driver '%s'; valid options: %s",
                        o->file, it->line, it->col, o->path, it->name, o->kind, o->driver, names);
            else
                cf_fail("%s:%d:%d: %s.%s: unknown option: %s driver '%s' takes no options", o->file,
                        it->line, it->col, o->path, it->name, o->kind, o->driver);
            free(names);
            return -1;
        }
        if (check_item(o, it, opt, tab) < 0)
            return -1;
    }
    return 0;
}

static int check_options(const owner *o, coffer_config *cfg, const coffer_option *tab)
{
    if (check_given(o, cfg, tab) < 0)
        return -1;
    for (const coffer_option *opt = tab; opt && opt->name; opt++) {
        if (cf_config_find(cfg, opt->name))
            continue;
        if (opt->required) {
            if (opt->secret) {
                char *env = cf_asprintf("%s_env", opt->name),
                     *file = cf_asprintf("%s_file", opt->name);
                int given = cf_config_find(cfg, env) || cf_config_find(cfg, file);
                if (!given)
                    cf_fail(
                        "%s:%d:%d: %s.%s: missing required option of %s driver '%s'; give %s or %s",
                        o->file, o->line, o->col, o->path, opt->name, o->kind, o->driver, env,
                        file);
                free(env);
                free(file);
                if (!given)
                    return -1;
                continue;
            }
            return cf_fail("%s:%d:%d: %s.%s: missing required option of %s driver '%s'", o->file,
                           o->line, o->col, o->path, opt->name, o->kind, o->driver);
        }
        if (opt->default_value)
            cf_config_set(cfg, opt->name, opt->default_value, 0, 0);
    }
    return 0;
}

static int check_one(const owner *o, coffer_driver_kind kind, int dline, int dcol,
                     coffer_config *cfg, cf_option_lookup lookup, void *ud)
{
    cf_error_clear();
    const coffer_option *tab = lookup(ud, kind, o->driver);
    if (!tab) {
        if (strcmp(cf_error(), "unknown error") == 0)
            cf_fail("no %s driver named '%s'", o->kind, o->driver);
        cf_error_prefix("%s:%d:%d: %s.driver", o->file, dline, dcol, o->path);
        return -1;
    }
    return check_options(o, cfg, tab);
}

int cf_policy_check_drivers(cf_policy *p, cf_option_lookup lookup, void *ud)
{
    for (size_t i = 0; i < p->ntargets; i++) {
        cf_target *t = &p->targets[i];
        char *path = cf_asprintf("targets[%zu]", i);
        owner o = {p->file, path, t->driver, "storage", t->line, t->col};
        int rc = check_one(&o, COFFER_KIND_STORAGE, t->driver_line, t->driver_col, t->options,
                           lookup, ud);
        if (rc == 0 && t->maintenance) {
            char *mp = cf_asprintf("%s.maintenance", path);
            owner m = {p->file, mp, t->driver, "storage", t->maint_line, t->maint_col};
            rc = check_given(&m, t->maintenance, lookup(ud, COFFER_KIND_STORAGE, t->driver));
            free(mp);
        }
        free(path);
        if (rc < 0)
            return -1;
    }
    for (size_t i = 0; i < p->ncomponents; i++) {
        cf_component *co = &p->components[i];
        if (co->type == CF_COMP_FILES)
            continue;
        char *path = cf_asprintf("components[%zu]", i);
        int db = co->type == CF_COMP_DATABASE;
        owner o = {p->file, path, co->driver, db ? "database" : "storage", co->line, co->col};
        int rc = check_one(&o, db ? COFFER_KIND_DATABASE : COFFER_KIND_STORAGE, co->driver_line,
                           co->driver_col, co->options, lookup, ud);
        free(path);
        if (rc < 0)
            return -1;
    }
    return 0;
}
