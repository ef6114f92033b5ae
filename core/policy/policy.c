/* Policy loading: YAML tree -> cf_policy, with the core schema checks.
 * Driver options are only collected here; check.c validates them. */
#include "policy/policy.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/ytree.h"
#include "util/util.h"

#define MAX_POLICY_BYTES (16u << 20)

typedef struct ctx {
    const char *file;
} ctx;

/* ---- messages ------------------------------------------------------ */

static int fail_at(const ctx *c, const cf_yn *n, const char *path, const char *fmt, ...)
    CF_PRINTF(4, 5);
static int fail_at(const ctx *c, const cf_yn *n, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = cf_vasprintf(fmt, ap);
    va_end(ap);
    int line = n ? n->line : 1, col = n ? n->col : 1;
    if (path && *path)
        cf_fail("%s:%d:%d: %s: %s", c->file, line, col, path, msg);
    else
        cf_fail("%s:%d:%d: %s", c->file, line, col, msg);
    free(msg);
    return -1;
}

static char *pjoin(const char *parent, const char *key)
{
    if (!parent || !*parent)
        return cf_strdup(key);
    return cf_asprintf("%s.%s", parent, key);
}

static char *pindex(const char *parent, size_t i)
{
    return cf_asprintf("%s[%zu]", parent, i);
}

static char *join_names(const char *const *names)
{
    cf_buf b = {0};
    for (size_t i = 0; names[i]; i++) {
        if (i)
            cf_buf_append(&b, ", ", 2);
        cf_buf_append(&b, names[i], strlen(names[i]));
    }
    cf_buf_append(&b, "", 1);
    return (char *)b.data;
}

static int in_list(const char *const *names, const char *s)
{
    for (size_t i = 0; names && names[i]; i++)
        if (strcmp(names[i], s) == 0)
            return 1;
    return 0;
}

/* ---- typed access -------------------------------------------------- */

/* A mapping whose keys are strings, each given once; when `valid` is not
 * NULL and !open, every key must be one of them. */
static int check_map(const ctx *c, const cf_yn *m, const char *path, const char *const *valid,
                     int open)
{
    if (m->kind != CF_YN_MAP)
        return fail_at(c, m, path, "expected a mapping, got %s", cf_yn_kind_name(m));
    for (size_t i = 0; i + 1 < m->n; i += 2) {
        const cf_yn *k = m->kids[i];
        if (k->kind != CF_YN_SCALAR || k->null)
            return fail_at(c, k, path, "keys must be plain names, got %s", cf_yn_kind_name(k));
        for (size_t j = 0; j < i; j += 2) {
            const cf_yn *prev = m->kids[j];
            if (strcmp(prev->str, k->str) == 0) {
                char *kp = pjoin(path, k->str);
                fail_at(c, k, kp, "duplicate key (first given at line %d, column %d)", prev->line,
                        prev->col);
                free(kp);
                return -1;
            }
        }
        if (valid && !open && !in_list(valid, k->str)) {
            char *kp = pjoin(path, k->str);
            char *names = join_names(valid);
            fail_at(c, k, kp, "unknown key; valid keys: %s", names);
            free(names);
            free(kp);
            return -1;
        }
    }
    return 0;
}

/* Expanded string value of a scalar. */
static int get_str(const ctx *c, const cf_yn *v, const char *path, char **out)
{
    if (v->kind != CF_YN_SCALAR)
        return fail_at(c, v, path, "expected a string, got %s", cf_yn_kind_name(v));
    if (v->null)
        return fail_at(c, v, path, "no value given");
    char *s = cf_expand_env(v->str);
    if (!s) {
        cf_error_prefix("%s:%d:%d: %s", c->file, v->line, v->col, path);
        return -1;
    }
    *out = s;
    return 0;
}

/* Required string key of mapping m. */
static int req_str(const ctx *c, const cf_yn *m, const char *path, const char *key, char **out,
                   const cf_yn **node)
{
    const cf_yn *v = cf_yn_get(m, key);
    char *kp = pjoin(path, key);
    int rc;
    if (!v)
        rc = fail_at(c, m, kp, "required key is missing");
    else
        rc = get_str(c, v, kp, out);
    free(kp);
    if (node)
        *node = v;
    return rc;
}

/* Optional string key: *out stays NULL when absent. */
static int opt_str(const ctx *c, const cf_yn *m, const char *path, const char *key, char **out,
                   const cf_yn **node)
{
    const cf_yn *v = cf_yn_get(m, key);
    if (node)
        *node = v;
    if (!v)
        return 0;
    char *kp = pjoin(path, key);
    int rc = get_str(c, v, kp, out);
    free(kp);
    return rc;
}

static int get_int(const ctx *c, const cf_yn *v, const char *path, int min, int *out)
{
    char *s = NULL; /* gcc -O3 cannot tell that get_str sets it whenever it returns 0 */
    int64_t n;
    if (get_str(c, v, path, &s) < 0)
        return -1;
    if (cf_parse_int(s, &n) < 0) {
        fail_at(c, v, path, "expected a whole number, got '%s'", s);
        free(s);
        return -1;
    }
    free(s);
    if (n < min)
        return fail_at(c, v, path, "must be %d or more, got %lld", min, (long long)n);
    if (n > INT_MAX)
        return fail_at(c, v, path, "too large (at most %d)", INT_MAX);
    *out = (int)n;
    return 0;
}

static int opt_int(const ctx *c, const cf_yn *m, const char *path, const char *key, int min,
                   int *out)
{
    const cf_yn *v = cf_yn_get(m, key);
    if (!v)
        return 0;
    char *kp = pjoin(path, key);
    int rc = get_int(c, v, kp, min, out);
    free(kp);
    return rc;
}

/* Optional key whose value is one of choices (NULL-terminated): *out is
 * its index, unchanged when the key is absent. */
static int opt_choice(const ctx *c, const cf_yn *m, const char *path, const char *key,
                      const char *const *choices, int *out)
{
    const cf_yn *v;
    char *s = NULL;
    if (opt_str(c, m, path, key, &s, &v) < 0)
        return -1;
    if (!s)
        return 0;
    char list[256] = "";
    for (int i = 0; choices[i]; i++) {
        if (strcmp(s, choices[i]) == 0) {
            *out = i;
            free(s);
            return 0;
        }
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                 choices[i]);
    }
    char *kp = pjoin(path, key);
    fail_at(c, v, kp, "unknown value '%s'; valid values: %s", s, list);
    free(kp);
    free(s);
    return -1;
}

static void strlist_add(cf_strlist *l, char *s)
{
    l->v = cf_realloc(l->v, (l->n + 1) * sizeof *l->v);
    l->v[l->n++] = s;
}

static void strlist_free(cf_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* A list of strings, or one string standing for a list of one; an empty
 * value is an empty list. `norm` checks and rewrites each item. */
typedef int (*item_fn)(const ctx *c, const cf_yn *v, const char *path, char **s);

static int get_strlist(const ctx *c, const cf_yn *v, const char *path, cf_strlist *out,
                       item_fn norm)
{
    if (v->kind == CF_YN_MAP)
        return fail_at(c, v, path, "expected a list of strings, got a mapping");
    if (v->kind == CF_YN_SCALAR) {
        char *s;
        if (v->null)
            return 0;
        if (get_str(c, v, path, &s) < 0)
            return -1;
        if (norm && norm(c, v, path, &s) < 0) {
            free(s);
            return -1;
        }
        strlist_add(out, s);
        return 0;
    }
    for (size_t i = 0; i < v->n; i++) {
        const cf_yn *it = v->kids[i];
        char *ip = pindex(path, i), *s = NULL;
        int rc;
        if (it->kind != CF_YN_SCALAR)
            rc = fail_at(c, it, ip, "expected a string, got %s", cf_yn_kind_name(it));
        else
            rc = get_str(c, it, ip, &s);
        if (rc == 0 && norm && norm(c, it, ip, &s) < 0) {
            free(s);
            rc = -1;
        }
        free(ip);
        if (rc < 0)
            return -1;
        strlist_add(out, s);
    }
    return 0;
}

/* ---- value checks -------------------------------------------------- */

int cf_name_valid(const char *s)
{
    if (!s || !*s || strlen(s) > 128 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return 0;
    for (; *s; s++) {
        char ch = *s;
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

static int check_name(const ctx *c, const cf_yn *v, const char *path, const char *s)
{
    if (!cf_name_valid(s))
        return fail_at(c, v, path, "invalid name '%s': use letters, digits, '.', '_' and '-'", s);
    return 0;
}

/* Collapse repeated slashes and drop trailing ones ("/" stays "/"). */
static void squash_slashes(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++)
        if (!(*r == '/' && w > s && w[-1] == '/'))
            *w++ = *r;
    *w = 0;
    while (w > s + 1 && w[-1] == '/')
        *--w = 0;
}

/* A path (or glob) relative to root: not absolute, no "..". Normalised:
 * empty and "." segments dropped, so "data/" is "data", "./x" is "x",
 * and "." (the whole root) stays ".". */
static int norm_rel(const ctx *c, const cf_yn *v, const char *path, char **s)
{
    const char *in = *s;
    if (!*in)
        return fail_at(c, v, path, "empty path");
    if (in[0] == '/')
        return fail_at(c, v, path, "'%s' is absolute; paths are relative to root", in);
    cf_buf out = {0};
    const char *p = in;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.') {
            cf_buf_free(&out);
            return fail_at(c, v, path, "'%s' contains '..'; paths must stay inside root", in);
        }
        if (len && !(len == 1 && p[0] == '.')) {
            if (out.len)
                cf_buf_append(&out, "/", 1);
            cf_buf_append(&out, p, len);
        }
        p += len;
        if (*p == '/')
            p++;
    }
    if (!out.len)
        cf_buf_append(&out, ".", 1);
    cf_buf_append(&out, "", 1);
    free(*s);
    *s = (char *)out.data;
    return 0;
}

static int nonempty_cmd(const ctx *c, const cf_yn *v, const char *path, const char *s)
{
    for (const char *p = s; *p; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n')
            return 0;
    return fail_at(c, v, path, "empty command");
}

int cf_duration_parse(const char *s, cf_duration *out)
{
    static const char units[] = "ymwdh";
    int seen[5] = {0};
    int vals[5] = {0};
    const char *p = s;
    if (!*p)
        return cf_fail("invalid duration '': expected NUMBER UNIT pairs such as 30d, 12h or 1y6m");
    while (*p) {
        long n = 0;
        const char *d = p;
        while (*p >= '0' && *p <= '9') {
            n = n * 10 + (*p - '0');
            if (n > 1000000)
                return cf_fail("invalid duration '%s': number too large", s);
            p++;
        }
        if (p == d)
            return cf_fail("invalid duration '%s': expected a number at '%s'; units are y (years), "
                           "m (months), w (weeks), d (days), h (hours), as in 30d, 12h or 1y6m",
                           s, p);
        const char *u = *p ? strchr(units, *p) : NULL;
        if (!u)
            return cf_fail(
                "invalid duration '%s': expected a unit after %ld: y (years), m (months), "
                "w (weeks), d (days) or h (hours)",
                s, n);
        size_t k = (size_t)(u - units);
        if (seen[k])
            return cf_fail("invalid duration '%s': unit '%c' given twice", s, *p);
        seen[k] = 1;
        vals[k] = (int)n;
        p++;
    }
    if (out) {
        out->years = vals[0];
        out->months = vals[1];
        out->weeks = vals[2];
        out->days = vals[3];
        out->hours = vals[4];
    }
    return 0;
}

/* ---- driver options ------------------------------------------------ */

/* An extra key of a target or component: a driver option. Scalars and
 * lists of scalars; positions are the key's. */
static int collect_opt(const ctx *c, coffer_config *cfg, const cf_yn *k, const cf_yn *v,
                       const char *path)
{
    char *kp = pjoin(path, k->str), *s = NULL;
    int rc = 0;
    if (v->kind == CF_YN_MAP) {
        rc = fail_at(c, v, kp, "expected a string or a list of strings, got a mapping");
    } else if (v->kind == CF_YN_SCALAR) {
        rc = get_str(c, v, kp, &s);
        if (rc == 0)
            cf_config_set(cfg, k->str, s, k->line, k->col);
        free(s);
    } else if (v->n == 0) {
        /* The config API has no "new empty list": add one item, drop it. */
        cf_config_list_add(cfg, k->str, "", k->line, k->col);
        cf_config_item *it = cf_config_find(cfg, k->str);
        free(it->items[0]);
        it->nitems = 0;
    } else {
        for (size_t i = 0; i < v->n && rc == 0; i++) {
            const cf_yn *it = v->kids[i];
            char *ip = pindex(kp, i);
            if (it->kind != CF_YN_SCALAR)
                rc = fail_at(c, it, ip, "expected a string, got %s", cf_yn_kind_name(it));
            else if ((rc = get_str(c, it, ip, &s)) == 0)
                cf_config_list_add(cfg, k->str, s, k->line, k->col);
            free(s);
            s = NULL;
            free(ip);
        }
    }
    free(kp);
    return rc;
}

static int collect_opts(const ctx *c, const cf_yn *m, const char *path, const char *const *core,
                        coffer_config *cfg)
{
    for (size_t i = 0; i + 1 < m->n; i += 2)
        if (!in_list(core, m->kids[i]->str) &&
            collect_opt(c, cfg, m->kids[i], m->kids[i + 1], path) < 0)
            return -1;
    return 0;
}

/* ---- sections ------------------------------------------------------ */

static int parse_consistency(const ctx *c, const cf_yn *root, cf_policy *p)
{
    static const char *const keys[] = {"mode",     "stop",       "start",           "timeout",
                                       "two_pass", "references", "on_inconsistent", NULL};
    static const char *const bools[] = {"false", "true", NULL};
    static const char *const refs[] = {"skip", "verify", NULL};
    static const char *const onin[] = {"mark", "fail", NULL};
    const cf_yn *m = cf_yn_get(root, "consistency"), *v;
    char *mode = NULL;
    p->mode = CF_MODE_ONLINE;
    p->command_timeout = 600;
    p->two_pass = -1;
    p->verify_refs = -1;
    p->inconsistent_fail = 0;
    if (!m || (m->kind == CF_YN_SCALAR && m->null))
        return 0;
    if (check_map(c, m, "consistency", keys, 0) < 0)
        return -1;
    if (opt_choice(c, m, "consistency", "two_pass", bools, &p->two_pass) < 0 ||
        opt_choice(c, m, "consistency", "references", refs, &p->verify_refs) < 0 ||
        opt_choice(c, m, "consistency", "on_inconsistent", onin, &p->inconsistent_fail) < 0)
        return -1;
    if (opt_str(c, m, "consistency", "mode", &mode, &v) < 0)
        return -1;
    if (mode) {
        int ok = 1;
        if (strcmp(mode, "maintenance") == 0)
            p->mode = CF_MODE_MAINTENANCE;
        else if (strcmp(mode, "online") != 0)
            ok = 0;
        if (!ok)
            fail_at(c, v, "consistency.mode", "unknown mode '%s'; valid modes: maintenance, online",
                    mode);
        free(mode);
        if (!ok)
            return -1;
    }
    if (p->mode == CF_MODE_ONLINE) {
        static const char *const maint_only[] = {"stop", "start", "timeout"};
        for (size_t i = 0; i < CF_ARRAY_LEN(maint_only); i++) {
            if ((v = cf_yn_get(m, maint_only[i]))) {
                char *kp = pjoin("consistency", maint_only[i]);
                fail_at(c, v, kp,
                        "stop/start only apply to maintenance mode (mode is online); "
                        "remove %s or set mode: maintenance",
                        maint_only[i]);
                free(kp);
                return -1;
            }
        }
        return 0;
    }
    if ((v = cf_yn_get(m, "two_pass"))) {
        fail_at(c, v, "consistency.two_pass",
                "two_pass only applies to online mode (mode is maintenance: nothing changes "
                "while the application is stopped); remove it or set mode: online");
        return -1;
    }
    if (req_str(c, m, "consistency", "stop", &p->stop_cmd, &v) < 0 ||
        nonempty_cmd(c, v, "consistency.stop", p->stop_cmd) < 0)
        return -1;
    if (req_str(c, m, "consistency", "start", &p->start_cmd, &v) < 0 ||
        nonempty_cmd(c, v, "consistency.start", p->start_cmd) < 0)
        return -1;
    return opt_int(c, m, "consistency", "timeout", 1, &p->command_timeout);
}

/* Need a non-empty list under `key` of the top-level mapping. */
static int need_list(const ctx *c, const cf_yn *root, const char *key, const char *what,
                     const cf_yn **out)
{
    const cf_yn *v = cf_yn_get(root, key);
    if (!v)
        return fail_at(c, root, key, "required key is missing; give at least one %s", what);
    if (v->kind != CF_YN_SEQ)
        return fail_at(c, v, key, "expected a list of %ss, got %s", what, cf_yn_kind_name(v));
    if (v->n == 0)
        return fail_at(c, v, key, "empty list; give at least one %s", what);
    *out = v;
    return 0;
}

static int infer_target(const ctx *c, cf_target *t, const cf_yn *locn, const char *path)
{
    char *lp = pjoin(path, "location");
    int rc = 0;
    int is_s3 = strncmp(t->location, "s3://", 5) == 0;
    if (!t->driver) {
        t->driver_line = locn->line;
        t->driver_col = locn->col;
        if (is_s3) {
            t->driver = cf_strdup("s3");
        } else if (strstr(t->location, "://")) {
            rc = fail_at(c, locn, lp, "cannot tell the driver from '%s'; add a driver key",
                         t->location);
            goto out;
        } else {
            t->driver = cf_strdup("local");
        }
    }
    if (strcmp(t->driver, "s3") == 0) {
        if (!is_s3) {
            rc = fail_at(c, locn, lp,
                         "the s3 driver needs a location like s3://BUCKET/PREFIX, got '%s'",
                         t->location);
            goto out;
        }
        const char *b = t->location + 5, *slash = strchr(b, '/');
        size_t blen = slash ? (size_t)(slash - b) : strlen(b);
        if (blen == 0) {
            rc =
                fail_at(c, locn, lp, "no bucket in '%s'; expected s3://BUCKET/PREFIX", t->location);
            goto out;
        }
        if (!cf_config_find(t->options, "bucket")) {
            char *bucket = cf_strndup(b, blen);
            cf_config_set(t->options, "bucket", bucket, locn->line, locn->col);
            free(bucket);
        }
        if (slash && slash[1] && !cf_config_find(t->options, "prefix"))
            cf_config_set(t->options, "prefix", slash + 1, locn->line, locn->col);
    } else if (strcmp(t->driver, "local") == 0) {
        if (t->location[0] != '/') {
            if (is_s3 || strstr(t->location, "://"))
                rc = fail_at(c, locn, lp, "the local driver needs an absolute path, got '%s'",
                             t->location);
            else
                rc = fail_at(c, locn, lp,
                             "relative location '%s'; use an absolute path or s3://BUCKET/PREFIX",
                             t->location);
            goto out;
        }
        squash_slashes(t->location);
        if (!cf_config_find(t->options, "path"))
            cf_config_set(t->options, "path", t->location, locn->line, locn->col);
    } else if (t->location[0] != '/' && strcspn(t->location, ":/") == strcspn(t->location, "/")) {
        /* No scheme or host part: a path relative to wherever coffer was
         * started, refused for any driver. */
        rc = fail_at(c, locn, lp, "relative location '%s'; use an absolute path", t->location);
        goto out;
    }
    /* Any other driver reads location its own way (config_get "location"). */
out:
    free(lp);
    return rc;
}

/* Where an encrypted repository's passphrase comes from: one source at
 * most, and never the passphrase itself. */
static int parse_passphrase(const ctx *c, const cf_yn *m, const char *path, cf_target *t)
{
    const cf_yn *v, *first = NULL;
    if ((v = cf_yn_get(m, "passphrase"))) {
        char *kp = pjoin(path, "passphrase");
        fail_at(c, v, kp,
                "secrets never go into a policy; use passphrase_env (a variable name), "
                "passphrase_file or passphrase_command");
        free(kp);
        return -1;
    }
    static const char *const keys[] = {"passphrase_env", "passphrase_file", "passphrase_command"};
    char **dst[] = {&t->passphrase_env, &t->passphrase_file, &t->passphrase_command};
    const char *firstname = NULL;
    for (size_t i = 0; i < CF_ARRAY_LEN(keys); i++) {
        if (opt_str(c, m, path, keys[i], dst[i], &v) < 0)
            return -1;
        if (!v)
            continue;
        char *kp = pjoin(path, keys[i]);
        int rc = 0;
        if (!**dst[i])
            rc = fail_at(c, v, kp, "empty value");
        else if (first)
            rc = fail_at(c, v, kp, "give one passphrase source; %s is already set (line %d)",
                         firstname, first->line);
        else if (i == 0 && strspn(*dst[i], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                            "0123456789_") != strlen(*dst[i]))
            rc = fail_at(c, v, kp, "'%s' is not an environment variable name", *dst[i]);
        free(kp);
        if (rc < 0)
            return -1;
        first = v;
        firstname = keys[i];
    }
    return 0;
}

/* immutable: {mode, days | minutes} */
static int parse_immutable(const ctx *c, const cf_yn *m, const char *path, cf_target *t)
{
    static const char *const keys[] = {"mode", "days", "minutes", NULL};
    static const char *const modes[] = {"governance", "compliance", NULL};
    const cf_yn *v = cf_yn_get(m, "immutable");
    if (!v)
        return 0;
    char *ip = pjoin(path, "immutable");
    int rc = -1, mode = -1, days = -1, minutes = -1;
    if (v->kind != CF_YN_MAP) {
        fail_at(c, v, ip, "expected a mapping with mode and days, got %s", cf_yn_kind_name(v));
        goto out;
    }
    if (check_map(c, v, ip, keys, 0) < 0 || opt_choice(c, v, ip, "mode", modes, &mode) < 0)
        goto out;
    if (mode < 0) {
        fail_at(c, v, ip, "mode is missing: governance or compliance");
        goto out;
    }
    const cf_yn *dn = cf_yn_get(v, "days"), *mn = cf_yn_get(v, "minutes");
    if (dn && mn) {
        char *kp = pjoin(ip, "minutes");
        fail_at(c, mn, kp, "give days or minutes, not both");
        free(kp);
        goto out;
    }
    if (!dn && !mn) {
        fail_at(c, v, ip, "days is missing: how long each object stays locked at least");
        goto out;
    }
    if (opt_int(c, v, ip, "days", 1, &days) < 0 || opt_int(c, v, ip, "minutes", 1, &minutes) < 0)
        goto out;
    if (days > 36600 || minutes > 36600 * 1440) {
        fail_at(c, dn ? dn : mn, ip, "a lock of more than 100 years is surely a mistake");
        goto out;
    }
    t->immutable = 1;
    t->lock_mode = mode == 0 ? COFFER_LOCK_GOVERNANCE : COFFER_LOCK_COMPLIANCE;
    t->lock_seconds = dn ? (int64_t)days * 86400 : (int64_t)minutes * 60;
    t->imm_line = v->line;
    t->imm_col = v->col;
    rc = 0;
out:
    free(ip);
    return rc;
}

/* maintenance: driver options for the commands that remove. */
static int parse_maintenance(const ctx *c, const cf_yn *m, const char *path, cf_target *t)
{
    static const char *const none[] = {NULL};
    const cf_yn *v = cf_yn_get(m, "maintenance");
    if (!v)
        return 0;
    char *mp = pjoin(path, "maintenance");
    int rc = -1;
    if (v->kind != CF_YN_MAP || v->n == 0) {
        fail_at(c, v, mp, "expected a mapping of driver options (the maintenance credentials)");
        goto out;
    }
    t->maintenance = cf_config_new();
    t->maint_line = v->line;
    t->maint_col = v->col;
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        const char *k = v->kids[i]->str;
        static const char *const refused[] = {"location", "bucket", "prefix", "path", "driver",
                                              "endpoint", NULL};
        if (in_list(refused, k)) {
            char *kp = pjoin(mp, k);
            fail_at(c, v->kids[i], kp,
                    "maintenance changes credentials only, never where the repository is");
            free(kp);
            goto out;
        }
    }
    rc = collect_opts(c, v, mp, none, t->maintenance);
out:
    free(mp);
    return rc;
}

static int parse_targets(const ctx *c, const cf_yn *root, cf_policy *p)
{
    static const char *const core[] = {"name",           "location",        "driver",
                                       "passphrase_env", "passphrase_file", "passphrase_command",
                                       "immutable",      "maintenance",     NULL};
    const cf_yn *list;
    if (need_list(c, root, "targets", "target", &list) < 0)
        return -1;
    p->targets = cf_calloc(list->n, sizeof *p->targets);
    p->ntargets = list->n;
    for (size_t i = 0; i < list->n; i++) {
        const cf_yn *m = list->kids[i], *namen, *locn, *drvn;
        cf_target *t = &p->targets[i];
        char *path = pindex("targets", i);
        int rc = -1;
        t->line = m->line;
        t->col = m->col;
        t->options = cf_config_new();
        if (check_map(c, m, path, core, 1) < 0 || req_str(c, m, path, "name", &t->name, &namen) < 0)
            goto next;
        {
            char *np = pjoin(path, "name");
            int bad = check_name(c, namen, np, t->name);
            for (size_t j = 0; !bad && j < i; j++)
                if (strcmp(p->targets[j].name, t->name) == 0)
                    bad = fail_at(c, namen, np,
                                  "duplicate target name '%s' (also targets[%zu], line %d)",
                                  t->name, j, p->targets[j].line);
            free(np);
            if (bad)
                goto next;
        }
        if (req_str(c, m, path, "location", &t->location, &locn) < 0)
            goto next;
        if (!*t->location) {
            char *lp = pjoin(path, "location");
            fail_at(c, locn, lp, "empty location");
            free(lp);
            goto next;
        }
        if (opt_str(c, m, path, "driver", &t->driver, &drvn) < 0)
            goto next;
        if (t->driver) {
            t->driver_line = drvn->line;
            t->driver_col = drvn->col;
            if (!*t->driver) {
                char *dp = pjoin(path, "driver");
                fail_at(c, drvn, dp, "empty driver name");
                free(dp);
                goto next;
            }
        }
        if (parse_passphrase(c, m, path, t) < 0 || parse_immutable(c, m, path, t) < 0 ||
            parse_maintenance(c, m, path, t) < 0)
            goto next;
        if (collect_opts(c, m, path, core, t->options) < 0 || infer_target(c, t, locn, path) < 0)
            goto next;
        rc = 0;
    next:
        free(path);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Is rel covered by one of paths (equal, below, or paths has ".")? */
static int covered(const cf_strlist *paths, const char *rel)
{
    for (size_t i = 0; i < paths->n; i++) {
        const char *p = paths->v[i];
        size_t n = strlen(p);
        if (strcmp(p, ".") == 0 || strcmp(p, rel) == 0 ||
            (strncmp(p, rel, n) == 0 && rel[n] == '/'))
            return 1;
    }
    return 0;
}

static int parse_files(const ctx *c, const cf_yn *m, const char *path, cf_component *co)
{
    static const char *const keys[] = {"name",          "type",     "paths",
                                       "exclude",       "required", "on_unreadable",
                                       "snapshot",      "snapshot_size", NULL};
    static const char *const snaps[] = {"none", "btrfs", "lvm", NULL};
    const cf_yn *v;
    char *kp;
    int rc;
    if (check_map(c, m, path, keys, 0) < 0)
        return -1;
    int snap = 0;
    if (opt_choice(c, m, path, "snapshot", snaps, &snap) < 0)
        return -1;
    if (snap)
        co->snapshot = cf_strdup(snaps[snap]);
    if (opt_str(c, m, path, "snapshot_size", &co->snapshot_size, &v) < 0)
        return -1;
    if (co->snapshot_size && snap != 2) {
        kp = pjoin(path, "snapshot_size");
        fail_at(c, v, kp, "snapshot_size only applies to snapshot: lvm (the size of a classic, "
                          "non-thin snapshot)");
        free(kp);
        return -1;
    }
    char *ou = NULL;
    if (opt_str(c, m, path, "on_unreadable", &ou, &v) < 0)
        return -1;
    if (ou) {
        int ok = strcmp(ou, "fail") == 0 || strcmp(ou, "skip") == 0;
        co->unreadable_fail = strcmp(ou, "fail") == 0;
        kp = pjoin(path, "on_unreadable");
        rc = ok ? 0 : fail_at(c, v, kp, "expected fail or skip, got '%s'", ou);
        free(kp);
        free(ou);
        if (rc < 0)
            return -1;
    }
    v = cf_yn_get(m, "paths");
    kp = pjoin(path, "paths");
    if (!v)
        rc = fail_at(c, m, kp,
                     "required key is missing; list the paths to back up, relative to root");
    else if ((rc = get_strlist(c, v, kp, &co->paths, norm_rel)) == 0 && co->paths.n == 0)
        rc = fail_at(c, v, kp, "empty list; give at least one path, relative to root");
    free(kp);
    if (rc < 0)
        return -1;
    if ((v = cf_yn_get(m, "exclude"))) {
        kp = pjoin(path, "exclude");
        rc = get_strlist(c, v, kp, &co->exclude, norm_rel);
        free(kp);
        if (rc < 0)
            return -1;
    }
    if ((v = cf_yn_get(m, "required"))) {
        kp = pjoin(path, "required");
        rc = get_strlist(c, v, kp, &co->required, norm_rel);
        for (size_t i = 0; rc == 0 && i < co->required.n; i++) {
            if (!covered(&co->paths, co->required.v[i])) {
                const cf_yn *at = v->kind == CF_YN_SEQ ? v->kids[i] : v;
                char *ip = v->kind == CF_YN_SEQ ? pindex(kp, i) : cf_strdup(kp);
                rc = fail_at(c, at, ip,
                             "'%s' is not under any of paths, so it would never be backed up",
                             co->required.v[i]);
                free(ip);
            }
        }
        free(kp);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int parse_driven(const ctx *c, const cf_yn *m, const char *path, cf_component *co)
{
    static const char *const db_core[] = {"name", "type", "driver", NULL};
    static const char *const os_core[] = {"name", "type", "driver", "protect", NULL};
    const char *const *core = co->type == CF_COMP_DATABASE ? db_core : os_core;
    const cf_yn *v;
    co->options = cf_config_new();
    if (req_str(c, m, path, "driver", &co->driver, &v) < 0)
        return -1;
    co->driver_line = v->line;
    co->driver_col = v->col;
    if (!*co->driver) {
        char *dp = pjoin(path, "driver");
        fail_at(c, v, dp, "empty driver name");
        free(dp);
        return -1;
    }
    if (co->type == CF_COMP_OBJECT_STORE) {
        char *prot = NULL;
        co->protect = CF_PROTECT_VERSIONING;
        if (opt_str(c, m, path, "protect", &prot, &v) < 0)
            return -1;
        if (prot) {
            int ok = 1;
            if (strcmp(prot, "copy") == 0)
                co->protect = CF_PROTECT_COPY;
            else if (strcmp(prot, "versioning") != 0)
                ok = 0;
            if (!ok) {
                char *pp = pjoin(path, "protect");
                fail_at(c, v, pp, "unknown protection '%s'; valid values: versioning, copy", prot);
                free(pp);
            }
            free(prot);
            if (!ok)
                return -1;
        }
    }
    return collect_opts(c, m, path, core, co->options);
}

static int parse_components(const ctx *c, const cf_yn *root, cf_policy *p)
{
    const cf_yn *list;
    if (need_list(c, root, "components", "component", &list) < 0)
        return -1;
    p->components = cf_calloc(list->n, sizeof *p->components);
    p->ncomponents = list->n;
    for (size_t i = 0; i < list->n; i++) {
        const cf_yn *m = list->kids[i], *namen, *typen;
        cf_component *co = &p->components[i];
        char *path = pindex("components", i), *type = NULL;
        int rc = -1;
        co->line = m->line;
        co->col = m->col;
        if (check_map(c, m, path, NULL, 1) < 0 ||
            req_str(c, m, path, "name", &co->name, &namen) < 0)
            goto next;
        {
            char *np = pjoin(path, "name");
            int bad = check_name(c, namen, np, co->name);
            for (size_t j = 0; !bad && j < i; j++)
                if (strcmp(p->components[j].name, co->name) == 0)
                    bad = fail_at(c, namen, np,
                                  "duplicate component name '%s' (also components[%zu], line %d)",
                                  co->name, j, p->components[j].line);
            free(np);
            if (bad)
                goto next;
        }
        if (req_str(c, m, path, "type", &type, &typen) < 0)
            goto next;
        if (strcmp(type, "files") == 0) {
            co->type = CF_COMP_FILES;
            rc = parse_files(c, m, path, co);
        } else if (strcmp(type, "database") == 0 || strcmp(type, "object_store") == 0) {
            co->type = type[0] == 'd' ? CF_COMP_DATABASE : CF_COMP_OBJECT_STORE;
            rc = parse_driven(c, m, path, co);
        } else {
            char *tp = pjoin(path, "type");
            fail_at(c, typen, tp,
                    "unknown component type '%s'; valid types: files, database, object_store",
                    type);
            free(tp);
        }
    next:
        free(type);
        free(path);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Names of the policy's components of one type, for messages ("" if none). */
static char *comp_names(const cf_policy *p, cf_comp_type t)
{
    cf_buf b = {0};
    for (size_t i = 0; i < p->ncomponents; i++) {
        if (p->components[i].type != t)
            continue;
        if (b.len)
            cf_buf_append(&b, ", ", 2);
        cf_buf_append(&b, p->components[i].name, strlen(p->components[i].name));
    }
    cf_buf_append(&b, "", 1);
    return (char *)b.data;
}

static const char *comp_type_word(cf_comp_type t)
{
    return t == CF_COMP_FILES ? "files" : t == CF_COMP_DATABASE ? "database" : "object_store";
}

/* s must name a component of type t (or, with t2 >= 0, of type t2). */
static int need_comp(const ctx *c, const cf_policy *p, const cf_yn *v, const char *path,
                     const char *s, cf_comp_type t, int t2)
{
    const cf_component *co = cf_policy_component(p, s);
    if (co && (co->type == t || (t2 >= 0 && co->type == (cf_comp_type)t2)))
        return 0;
    char *names = comp_names(p, t), *names2 = t2 >= 0 ? comp_names(p, (cf_comp_type)t2) : NULL;
    const char *sep = names2 && *names && *names2 ? ", " : "";
    const char *all_names = names2 ? names2 : "";
    char *want = t2 >= 0 ? cf_asprintf("%s or %s", comp_type_word(t), comp_type_word(t2))
                         : cf_strdup(comp_type_word(t));
    if (co)
        fail_at(c, v, path, "component '%s' is of type %s; give a %s component (%s%s%s)", s,
                comp_type_word(co->type), want, names, sep, all_names);
    else
        fail_at(c, v, path, "no component named '%s'; %s components: %s%s%s", s, want, names, sep,
                all_names);
    free(want);
    free(names);
    free(names2);
    return -1;
}

static int parse_validate(const ctx *c, const cf_yn *root, cf_policy *p)
{
    static const char *const keys[] = {"name", "run", "timeout", "credentials", NULL};
    const cf_yn *list = cf_yn_get(root, "validate");
    if (!list || (list->kind == CF_YN_SCALAR && list->null))
        return 0;
    if (list->kind != CF_YN_SEQ)
        return fail_at(c, list, "validate", "expected a list of commands, got %s",
                       cf_yn_kind_name(list));
    p->validate = cf_calloc(list->n ? list->n : 1, sizeof *p->validate);
    p->nvalidate = list->n;
    for (size_t i = 0; i < list->n; i++) {
        const cf_yn *m = list->kids[i], *namen, *runn;
        cf_command *cmd = &p->validate[i];
        char *path = pindex("validate", i);
        int rc = -1;
        cmd->timeout = 3600;
        if (check_map(c, m, path, keys, 0) < 0 ||
            req_str(c, m, path, "name", &cmd->name, &namen) < 0)
            goto next;
        {
            char *np = pjoin(path, "name");
            int bad = check_name(c, namen, np, cmd->name);
            for (size_t j = 0; !bad && j < i; j++)
                if (strcmp(p->validate[j].name, cmd->name) == 0)
                    bad = fail_at(c, namen, np, "duplicate check name '%s' (also validate[%zu])",
                                  cmd->name, j);
            free(np);
            if (bad)
                goto next;
        }
        if (req_str(c, m, path, "run", &cmd->run, &runn) < 0)
            goto next;
        {
            char *rp = pjoin(path, "run");
            int bad = nonempty_cmd(c, runn, rp, cmd->run);
            free(rp);
            if (bad)
                goto next;
        }
        if ((rc = opt_int(c, m, path, "timeout", 1, &cmd->timeout)) < 0)
            goto next;
        const cf_yn *cv = cf_yn_get(m, "credentials");
        if (cv) {
            char *kp = pjoin(path, "credentials");
            rc = get_strlist(c, cv, kp, &cmd->credentials, NULL);
            for (size_t k = 0; rc == 0 && k < cmd->credentials.n; k++) {
                const cf_yn *at = cv->kind == CF_YN_SEQ ? cv->kids[k] : cv;
                char *ip = cv->kind == CF_YN_SEQ ? pindex(kp, k) : cf_strdup(kp);
                rc = need_comp(c, p, at, ip, cmd->credentials.v[k], CF_COMP_DATABASE, -1);
                for (size_t j = 0; rc == 0 && j < k; j++)
                    if (strcmp(cmd->credentials.v[j], cmd->credentials.v[k]) == 0)
                        rc = fail_at(c, at, ip, "'%s' is listed twice", cmd->credentials.v[k]);
                free(ip);
            }
            free(kp);
        }
    next:
        free(path);
        if (rc < 0)
            return -1;
    }
    return 0;
}

const char *cf_check_type_name(cf_check_type t)
{
    switch (t) {
    case CF_CHECK_ROW_COUNTS: return "row_counts";
    case CF_CHECK_REFERENCES: return "references";
    case CF_CHECK_ORPHANS: return "orphans";
    case CF_CHECK_SQL: return "sql";
    }
    return "?";
}

/* A prefix prepended to query paths: relative, no "." or ".." segment;
 * kept as written (its trailing slash matters). */
static int check_prefix(const ctx *c, const cf_yn *v, const char *path, const char *s)
{
    if (s[0] == '/')
        return fail_at(c, v, path, "'%s' is absolute; a prefix is relative to root", s);
    for (const char *q = s; *q;) {
        size_t len = strcspn(q, "/");
        if ((len == 1 && q[0] == '.') || (len == 2 && q[0] == '.' && q[1] == '.'))
            return fail_at(c, v, path, "'%s' has a '%.*s' segment; give a plain relative prefix", s,
                           (int)len, q);
        q += len;
        if (*q == '/')
            q++;
    }
    return 0;
}

/* A key that only some check types take. */
static int refuse_key(const ctx *c, const cf_yn *m, const char *path, const char *key,
                      const char *why)
{
    const cf_yn *v = cf_yn_get(m, key);
    if (!v)
        return 0;
    char *kp = pjoin(path, key);
    fail_at(c, v, kp, "%s", why);
    free(kp);
    return -1;
}

static int parse_check(const ctx *c, const cf_yn *m, const char *path, cf_policy *p, size_t i)
{
    static const char *const keys[] = {"name",      "type",   "database", "query",
                                       "component", "prefix", "under",    "exclude",
                                       "level",     "show",   "timeout",  NULL};
    static const char *const types[] = {"row_counts", "references", "orphans", "sql", NULL};
    cf_app_check *ck = &p->checks[i];
    const cf_yn *namen, *typen, *v;
    char *type = NULL, *kp;
    int rc = -1;
    ck->line = m->line;
    ck->col = m->col;
    ck->show = 10;
    ck->timeout = 3600;
    if (check_map(c, m, path, keys, 0) < 0 || req_str(c, m, path, "name", &ck->name, &namen) < 0)
        return -1;
    kp = pjoin(path, "name");
    rc = check_name(c, namen, kp, ck->name);
    for (size_t j = 0; rc == 0 && j < i; j++)
        if (strcmp(p->checks[j].name, ck->name) == 0)
            rc = fail_at(c, namen, kp, "duplicate check name '%s' (also checks[%zu], line %d)",
                         ck->name, j, p->checks[j].line);
    free(kp);
    if (rc < 0 || req_str(c, m, path, "type", &type, &typen) < 0)
        return -1;
    rc = -1;
    for (size_t t = 0; types[t]; t++)
        if (strcmp(type, types[t]) == 0) {
            ck->type = (cf_check_type)t;
            rc = 0;
        }
    if (rc < 0) {
        char *names = join_names(types);
        kp = pjoin(path, "type");
        fail_at(c, typen, kp, "unknown check type '%s'; valid types: %s", type, names);
        free(kp);
        free(names);
    }
    free(type);
    if (rc < 0)
        return -1;
    int paths_check = ck->type == CF_CHECK_REFERENCES || ck->type == CF_CHECK_ORPHANS;
    const char *tn = cf_check_type_name(ck->type);

    /* database */
    if (ck->type == CF_CHECK_ROW_COUNTS)
        rc = opt_str(c, m, path, "database", &ck->database, &v);
    else
        rc = req_str(c, m, path, "database", &ck->database, &v);
    if (rc < 0)
        return -1;
    if (ck->database) {
        kp = pjoin(path, "database");
        rc = need_comp(c, p, v, kp, ck->database, CF_COMP_DATABASE, -1);
        free(kp);
        if (rc < 0)
            return -1;
    }

    /* query */
    if (ck->type == CF_CHECK_ROW_COUNTS) {
        if (refuse_key(c, m, path, "query",
                       "row_counts takes no query: it compares the row counts the set recorded "
                       "with the restored database's") < 0)
            return -1;
    } else {
        if (req_str(c, m, path, "query", &ck->query, &v) < 0)
            return -1;
        ck->query_line = v->line;
        ck->query_col = v->col;
        kp = pjoin(path, "query");
        rc = 0;
        if (strspn(ck->query, " \t\r\n;") == strlen(ck->query))
            rc = fail_at(c, v, kp, "empty query");
        free(kp);
        if (rc < 0)
            return -1;
    }

    /* component, prefix */
    if (!paths_check) {
        char *why = cf_asprintf("only references and orphans checks take a component (this is "
                                "a %s check)",
                                tn);
        rc = refuse_key(c, m, path, "component", why);
        free(why);
        why = cf_asprintf("only references and orphans checks take a prefix (this is a %s check)",
                          tn);
        if (rc == 0)
            rc = refuse_key(c, m, path, "prefix", why);
        free(why);
        if (rc < 0)
            return -1;
    } else {
        if (req_str(c, m, path, "component", &ck->component, &v) < 0)
            return -1;
        kp = pjoin(path, "component");
        rc = need_comp(c, p, v, kp, ck->component, CF_COMP_FILES, CF_COMP_OBJECT_STORE);
        free(kp);
        if (rc < 0 || opt_str(c, m, path, "prefix", &ck->prefix, &v) < 0)
            return -1;
        if (ck->prefix) {
            kp = pjoin(path, "prefix");
            rc = check_prefix(c, v, kp, ck->prefix);
            free(kp);
            if (rc < 0)
                return -1;
        }
    }
    if (!ck->prefix)
        ck->prefix = cf_strdup("");

    /* under, exclude */
    if (ck->type != CF_CHECK_ORPHANS) {
        char *why = cf_asprintf("only orphans checks take under (this is a %s check)", tn);
        rc = refuse_key(c, m, path, "under", why);
        free(why);
        why = cf_asprintf("only orphans checks take exclude (this is a %s check)", tn);
        if (rc == 0)
            rc = refuse_key(c, m, path, "exclude", why);
        free(why);
        if (rc < 0)
            return -1;
    } else {
        const cf_component *co = cf_policy_component(p, ck->component);
        if ((v = cf_yn_get(m, "under"))) {
            kp = pjoin(path, "under");
            rc = get_strlist(c, v, kp, &ck->under, norm_rel);
            for (size_t k = 0; rc == 0 && co->type == CF_COMP_FILES && k < ck->under.n; k++) {
                if (covered(&co->paths, ck->under.v[k]))
                    continue;
                const cf_yn *at = v->kind == CF_YN_SEQ ? v->kids[k] : v;
                char *ip = v->kind == CF_YN_SEQ ? pindex(kp, k) : cf_strdup(kp);
                rc = fail_at(c, at, ip, "'%s' is not under any of component '%s''s paths",
                             ck->under.v[k], co->name);
                free(ip);
            }
            free(kp);
            if (rc < 0)
                return -1;
        }
        if ((v = cf_yn_get(m, "exclude"))) {
            kp = pjoin(path, "exclude");
            rc = get_strlist(c, v, kp, &ck->exclude, norm_rel);
            free(kp);
            if (rc < 0)
                return -1;
        }
    }

    /* level, show, timeout */
    char *level = NULL;
    ck->warn = ck->type == CF_CHECK_ORPHANS;
    if (opt_str(c, m, path, "level", &level, &v) < 0)
        return -1;
    if (level) {
        rc = 0;
        if (strcmp(level, "warn") == 0 || strcmp(level, "fail") == 0) {
            ck->warn = level[0] == 'w';
        } else {
            kp = pjoin(path, "level");
            rc = fail_at(c, v, kp, "expected fail or warn, got '%s'", level);
            free(kp);
        }
        free(level);
        if (rc < 0)
            return -1;
    }
    if (opt_int(c, m, path, "show", 0, &ck->show) < 0)
        return -1;
    if (ck->show > 1000) {
        kp = pjoin(path, "show");
        fail_at(c, cf_yn_get(m, "show"), kp, "must be at most 1000, got %d", ck->show);
        free(kp);
        return -1;
    }
    return opt_int(c, m, path, "timeout", 1, &ck->timeout);
}

static int parse_checks(const ctx *c, const cf_yn *root, cf_policy *p)
{
    const cf_yn *list = cf_yn_get(root, "checks");
    if (!list || (list->kind == CF_YN_SCALAR && list->null))
        return 0;
    if (list->kind != CF_YN_SEQ)
        return fail_at(c, list, "checks", "expected a list of checks, got %s",
                       cf_yn_kind_name(list));
    p->checks = cf_calloc(list->n ? list->n : 1, sizeof *p->checks);
    p->nchecks = list->n;
    for (size_t i = 0; i < list->n; i++) {
        char *path = pindex("checks", i);
        int rc = parse_check(c, list->kids[i], path, p, i);
        free(path);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int parse_rehearse(const ctx *c, const cf_yn *root, cf_policy *p)
{
    static const char *const keys[] = {"dir", "scratch", NULL};
    const cf_yn *m = cf_yn_get(root, "rehearse"), *v;
    if (!m || (m->kind == CF_YN_SCALAR && m->null))
        return 0;
    if (check_map(c, m, "rehearse", keys, 0) < 0 ||
        opt_str(c, m, "rehearse", "dir", &p->rehearse_dir, &v) < 0)
        return -1;
    if (p->rehearse_dir) {
        if (p->rehearse_dir[0] != '/')
            return fail_at(c, v, "rehearse.dir", "'%s' is not an absolute path", p->rehearse_dir);
        squash_slashes(p->rehearse_dir);
    }
    const cf_yn *sm = cf_yn_get(m, "scratch");
    if (!sm || (sm->kind == CF_YN_SCALAR && sm->null))
        return 0;
    if (check_map(c, sm, "rehearse.scratch", NULL, 1) < 0)
        return -1;
    size_t n = sm->n / 2;
    p->scratch_names = cf_calloc(n ? n : 1, sizeof *p->scratch_names);
    p->scratch_urls = cf_calloc(n ? n : 1, sizeof *p->scratch_urls);
    for (size_t i = 0; i < n; i++) {
        const cf_yn *k = sm->kids[2 * i], *val = sm->kids[2 * i + 1];
        char *kp = pjoin("rehearse.scratch", k->str);
        int rc = need_comp(c, p, k, kp, k->str, CF_COMP_DATABASE, -1);
        char *url = NULL;
        if (rc == 0)
            rc = get_str(c, val, kp, &url);
        if (rc == 0 && !*url)
            rc = fail_at(c, val, kp, "empty URL");
        if (rc == 0) {
            p->scratch_names[p->nscratch] = cf_strdup(k->str);
            p->scratch_urls[p->nscratch++] = url;
        } else {
            free(url);
        }
        free(kp);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int parse_retention(const ctx *c, const cf_yn *root, cf_policy *p)
{
    static const char *const keys[] = {"keep_last",    "keep_hourly", "keep_daily",  "keep_weekly",
                                       "keep_monthly", "keep_yearly", "keep_within", "keep_proven",
                                       NULL};
    cf_retention *r = &p->retention;
    int *ints[] = {&r->keep_last,   &r->keep_hourly,  &r->keep_daily,
                   &r->keep_weekly, &r->keep_monthly, &r->keep_yearly};
    const cf_yn *m = cf_yn_get(root, "retention"), *v;
    if (!m || (m->kind == CF_YN_SCALAR && m->null))
        return 0;
    if (check_map(c, m, "retention", keys, 0) < 0)
        return -1;
    for (size_t i = 0; i < CF_ARRAY_LEN(ints); i++)
        if (opt_int(c, m, "retention", keys[i], 0, ints[i]) < 0)
            return -1;
    if (opt_str(c, m, "retention", "keep_within", &r->keep_within, &v) < 0 ||
        opt_int(c, m, "retention", "keep_proven", 0, &r->keep_proven) < 0)
        return -1;
    if (r->keep_within && cf_duration_parse(r->keep_within, NULL) < 0) {
        cf_error_prefix("%s:%d:%d: retention.keep_within", c->file, v->line, v->col);
        return -1;
    }
    return 0;
}

static int parse_hooks(const ctx *c, const cf_yn *root, cf_policy *p)
{
    static const char *const keys[] = {"before", "after", "on_success", "on_failure", "timeout",
                                       NULL};
    cf_hooks *h = &p->hooks;
    char **cmds[] = {&h->before, &h->after, &h->on_success, &h->on_failure};
    h->timeout = 300;
    const cf_yn *m = cf_yn_get(root, "hooks"), *v;
    if (!m || (m->kind == CF_YN_SCALAR && m->null))
        return 0;
    if (check_map(c, m, "hooks", keys, 0) < 0)
        return -1;
    for (size_t i = 0; i < CF_ARRAY_LEN(cmds); i++) {
        if (opt_str(c, m, "hooks", keys[i], cmds[i], &v) < 0)
            return -1;
        if (*cmds[i]) {
            char *kp = pjoin("hooks", keys[i]);
            int bad = nonempty_cmd(c, v, kp, *cmds[i]);
            free(kp);
            if (bad)
                return -1;
        }
    }
    return opt_int(c, m, "hooks", "timeout", 1, &h->timeout);
}

static int parse_url(const ctx *c, const cf_yn *m, const char *path, const char *key, char **out)
{
    const cf_yn *v;
    if (opt_str(c, m, path, key, out, &v) < 0)
        return -1;
    if (*out && strncmp(*out, "http://", 7) != 0 && strncmp(*out, "https://", 8) != 0) {
        char *kp = pjoin(path, key);
        int rc = fail_at(c, v, kp, "'%s' is not an http:// or https:// URL", *out);
        free(kp);
        return rc;
    }
    return 0;
}

static int parse_monitor(const ctx *c, const cf_yn *root, cf_policy *p)
{
    static const char *const keys[] = {"ping", "metrics_file", NULL};
    static const char *const ping_keys[] = {"start", "success", "failure", "timeout", NULL};
    cf_monitor *mo = &p->monitor;
    mo->ping_timeout = 10;
    const cf_yn *m = cf_yn_get(root, "monitor"), *v;
    if (!m || (m->kind == CF_YN_SCALAR && m->null))
        return 0;
    if (check_map(c, m, "monitor", keys, 0) < 0)
        return -1;
    const cf_yn *ping = cf_yn_get(m, "ping");
    if (ping && !(ping->kind == CF_YN_SCALAR && ping->null)) {
        if (check_map(c, ping, "monitor.ping", ping_keys, 0) < 0 ||
            parse_url(c, ping, "monitor.ping", "start", &mo->ping_start) < 0 ||
            parse_url(c, ping, "monitor.ping", "success", &mo->ping_success) < 0 ||
            parse_url(c, ping, "monitor.ping", "failure", &mo->ping_failure) < 0 ||
            opt_int(c, ping, "monitor.ping", "timeout", 1, &mo->ping_timeout) < 0)
            return -1;
    }
    if (opt_str(c, m, "monitor", "metrics_file", &mo->metrics_file, &v) < 0)
        return -1;
    if (mo->metrics_file && mo->metrics_file[0] != '/')
        return fail_at(c, v, "monitor.metrics_file", "'%s' is not an absolute path",
                       mo->metrics_file);
    return 0;
}

static int parse_policy(const ctx *c, const cf_yn *root, cf_policy *p)
{
    static const char *const keys[] = {"version",     "name",    "description", "root",
                                       "consistency", "targets", "components",  "validate",
                                       "retention",   "hooks",   "monitor",     "checks",
                                       "rehearse",    NULL};
    const cf_yn *v;
    if (!root || (root->kind == CF_YN_SCALAR && root->null))
        return cf_fail("%s:1:1: the policy is empty; expected a mapping with name, root, targets "
                       "and components",
                       c->file);
    if (root->kind != CF_YN_MAP)
        return fail_at(c, root, NULL,
                       "expected a mapping at the top level (name, root, targets, ...), got %s",
                       cf_yn_kind_name(root));
    if (check_map(c, root, NULL, keys, 0) < 0)
        return -1;
    if ((v = cf_yn_get(root, "version"))) {
        int ver;
        if (get_int(c, v, "version", 0, &ver) < 0)
            return -1;
        if (ver != 1)
            return fail_at(c, v, "version",
                           "unsupported policy version %d; this coffer reads version 1", ver);
    }
    if (req_str(c, root, NULL, "name", &p->name, &v) < 0 || check_name(c, v, "name", p->name) < 0)
        return -1;
    if ((v = cf_yn_get(root, "description")) && !(v->kind == CF_YN_SCALAR && v->null) &&
        get_str(c, v, "description", &p->description) < 0)
        return -1;
    if (req_str(c, root, NULL, "root", &p->root, &v) < 0)
        return -1;
    if (p->root[0] != '/')
        return fail_at(c, v, "root", "'%s' is not an absolute path", p->root);
    squash_slashes(p->root);
    if (parse_consistency(c, root, p) < 0 || parse_targets(c, root, p) < 0 ||
        parse_components(c, root, p) < 0 || parse_validate(c, root, p) < 0 ||
        parse_checks(c, root, p) < 0 || parse_rehearse(c, root, p) < 0 ||
        parse_retention(c, root, p) < 0 || parse_hooks(c, root, p) < 0 ||
        parse_monitor(c, root, p) < 0)
        return -1;
    return 0;
}

/* ---- public -------------------------------------------------------- */

int cf_policy_load_string(const char *file, const char *yaml, size_t len, cf_policy **out)
{
    ctx c = {.file = file ? file : "<policy>"};
    cf_ydoc doc;
    *out = NULL;
    if (cf_ydoc_parse(&doc, c.file, yaml, len) < 0)
        return -1;
    cf_policy *p = cf_calloc(1, sizeof *p);
    p->file = cf_strdup(c.file);
    p->retention = (cf_retention){-1, -1, -1, -1, -1, -1, NULL, -1};
    p->mode = CF_MODE_ONLINE;
    p->command_timeout = 600;
    int rc = parse_policy(&c, doc.root, p);
    cf_ydoc_free(&doc);
    if (rc < 0) {
        cf_policy_free(p);
        return -1;
    }
    *out = p;
    return 0;
}

int cf_policy_load(const char *file, cf_policy **out)
{
    *out = NULL;
    FILE *f = fopen(file, "rb");
    if (!f)
        return cf_fail_errno("%s: cannot open policy", file);
    cf_buf b = {0};
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.len + n > MAX_POLICY_BYTES) {
            fclose(f);
            cf_buf_free(&b);
            return cf_fail("%s: policy is larger than %u bytes", file, MAX_POLICY_BYTES);
        }
        cf_buf_append(&b, chunk, n);
    }
    if (ferror(f)) {
        int e = errno;
        fclose(f);
        cf_buf_free(&b);
        errno = e;
        return cf_fail_errno("%s: cannot read policy", file);
    }
    fclose(f);
    int rc = cf_policy_load_string(file, b.data ? (const char *)b.data : "", b.len, out);
    cf_buf_free(&b);
    return rc;
}

void cf_policy_free(cf_policy *p)
{
    if (!p)
        return;
    free(p->file);
    free(p->name);
    free(p->description);
    free(p->root);
    free(p->stop_cmd);
    free(p->start_cmd);
    for (size_t i = 0; i < p->ntargets; i++) {
        cf_target *t = &p->targets[i];
        free(t->name);
        free(t->location);
        free(t->driver);
        free(t->passphrase_env);
        free(t->passphrase_file);
        free(t->passphrase_command);
        cf_config_free(t->maintenance);
        cf_config_free(t->options);
    }
    free(p->targets);
    for (size_t i = 0; i < p->ncomponents; i++) {
        cf_component *co = &p->components[i];
        free(co->name);
        strlist_free(&co->paths);
        strlist_free(&co->exclude);
        strlist_free(&co->required);
        free(co->driver);
        free(co->snapshot);
        free(co->snapshot_size);
        cf_config_free(co->options);
    }
    free(p->components);
    for (size_t i = 0; i < p->nvalidate; i++) {
        free(p->validate[i].name);
        free(p->validate[i].run);
        strlist_free(&p->validate[i].credentials);
    }
    free(p->validate);
    for (size_t i = 0; i < p->nchecks; i++) {
        cf_app_check *ck = &p->checks[i];
        free(ck->name);
        free(ck->database);
        free(ck->query);
        free(ck->component);
        free(ck->prefix);
        strlist_free(&ck->under);
        strlist_free(&ck->exclude);
    }
    free(p->checks);
    free(p->rehearse_dir);
    for (size_t i = 0; i < p->nscratch; i++) {
        free(p->scratch_names[i]);
        free(p->scratch_urls[i]);
    }
    free(p->scratch_names);
    free(p->scratch_urls);
    free(p->hooks.before);
    free(p->hooks.after);
    free(p->hooks.on_success);
    free(p->hooks.on_failure);
    free(p->monitor.ping_start);
    free(p->monitor.ping_success);
    free(p->monitor.ping_failure);
    free(p->monitor.metrics_file);
    free(p->retention.keep_within);
    free(p);
}

const cf_component *cf_policy_component(const cf_policy *p, const char *name)
{
    for (size_t i = 0; p && i < p->ncomponents; i++)
        if (p->components[i].name && strcmp(p->components[i].name, name) == 0)
            return &p->components[i];
    return NULL;
}

const char *cf_policy_scratch(const cf_policy *p, const char *component)
{
    for (size_t i = 0; p && i < p->nscratch; i++)
        if (strcmp(p->scratch_names[i], component) == 0)
            return p->scratch_urls[i];
    return NULL;
}

const cf_target *cf_policy_target(const cf_policy *p, const char *name)
{
    for (size_t i = 0; p && i < p->ntargets; i++)
        if (p->targets[i].name && strcmp(p->targets[i].name, name) == 0)
            return &p->targets[i];
    return NULL;
}
