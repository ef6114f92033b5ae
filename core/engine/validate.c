/*
 * Validate commands with the restored environment (see validate.h).
 */
#include "engine/validate.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/run.h"
#include "plugin/host.h"
#include "util/util.h"

/* Output kept for the report, per command. */
#define OUTPUT_TAIL 4096

void cf_restored_init(cf_restored *r, const char *root, const char *set_id)
{
    memset(r, 0, sizeof *r);
    r->root = cf_strdup(root);
    r->set_id = cf_strdup(set_id);
}

void cf_restored_add_db(cf_restored *r, const char *name, const char *url, const char *path,
                        const char *target)
{
    r->db = cf_realloc(r->db, (r->ndb + 1) * sizeof *r->db);
    cf_restored_db *d = &r->db[r->ndb++];
    d->name = cf_strdup(name);
    d->url = url ? cf_strdup(url) : NULL;
    d->path = path ? cf_strdup(path) : NULL;
    d->target = target ? cf_strdup(target) : NULL;
}

const cf_restored_db *cf_restored_find(const cf_restored *r, const char *name)
{
    for (size_t i = 0; i < r->ndb; i++)
        if (strcmp(r->db[i].name, name) == 0)
            return &r->db[i];
    return NULL;
}

static void cf_restored_wipe(char *s)
{
    volatile char *c = s;
    while (*c)
        *c++ = 0;
    free(s);
}

void cf_restored_free(cf_restored *r)
{
    for (size_t i = 0; i < r->ndb; i++) {
        free(r->db[i].name);
        free(r->db[i].url);
        free(r->db[i].path);
        if (r->db[i].target)
            cf_restored_wipe(r->db[i].target);
    }
    free(r->db);
    free(r->root);
    free(r->set_id);
    memset(r, 0, sizeof *r);
}

/* 'value' for sh, with embedded quotes closed and reopened. */
static void shell_quote(cf_buf *b, const char *v)
{
    cf_buf_append(b, "'", 1);
    for (const char *c = v; *c; c++) {
        if (*c == '\'')
            cf_buf_append(b, "'\\''", 4);
        else
            cf_buf_append(b, c, 1);
    }
    cf_buf_append(b, "'", 1);
}

char *cf_validate_expand(const char *run, const cf_restored *r, const cf_policy *p)
{
    cf_buf b = {0};
    const char *s = run;
    while (*s) {
        if (s[0] == '{' && s[1] == '{') {
            cf_buf_append(&b, "{", 1);
            s += 2;
            continue;
        }
        const char *close = s[0] == '{' ? strchr(s, '}') : NULL;
        if (!close) {
            cf_buf_append(&b, s, 1);
            s++;
            continue;
        }
        size_t n = (size_t)(close - s - 1);
        char key[300];
        if (n >= sizeof key) {
            cf_buf_append(&b, s, 1);
            s++;
            continue;
        }
        memcpy(key, s + 1, n);
        key[n] = 0;
        const char *val = NULL;
        if (strcmp(key, "root") == 0) {
            val = r->root;
        } else if (strcmp(key, "set") == 0) {
            val = r->set_id;
        } else if (strcmp(key, "policy_root") == 0) {
            val = p->root;
        } else if (strncmp(key, "db.", 3) == 0) {
            char *dot = strrchr(key + 3, '.');
            if (dot && (strcmp(dot, ".url") == 0 || strcmp(dot, ".path") == 0)) {
                *dot = 0;
                const cf_restored_db *d = cf_restored_find(r, key + 3);
                if (!d) {
                    cf_buf_free(&b);
                    cf_fail("{db.%s.%s}: no database component '%s' was restored", key + 3,
                            dot + 1, key + 3);
                    return NULL;
                }
                val = strcmp(dot + 1, "url") == 0 ? d->url : d->path;
                if (!val) {
                    cf_buf_free(&b);
                    cf_fail("{db.%s.path}: component '%s' is a server database and has no "
                            "file; use {db.%s.url}", key + 3, key + 3, key + 3);
                    return NULL;
                }
            }
        }
        if (!val) {
            cf_buf_append(&b, s, 1);
            s++;
            continue;
        }
        shell_quote(&b, val);
        s = close + 1;
    }
    cf_buf_append(&b, "", 1);
    return (char *)b.data;
}

/* COFFER_DB_<NAME>_<what>=value */
static char *db_var(const char *name, const char *what, const char *value)
{
    cf_buf b = {0};
    cf_buf_append(&b, "COFFER_DB_", 10);
    for (const char *c = name; *c; c++) {
        char u = isalnum((unsigned char)*c) ? (char)toupper((unsigned char)*c) : '_';
        cf_buf_append(&b, &u, 1);
    }
    cf_buf_append(&b, "_", 1);
    cf_buf_append(&b, what, strlen(what));
    cf_buf_append(&b, "=", 1);
    cf_buf_append(&b, value, strlen(value));
    cf_buf_append(&b, "", 1);
    return (char *)b.data;
}

/* The password of a database component as a file only the command can
 * read: a sealed memory file inherited on descriptor *fd, named
 * /dev/fd/N. Nothing reaches the disk, and nothing outlives the command
 * and its children, whatever happens to coffer. NULL when the component
 * has no password. */
static char *password_file(const cf_component *c, int *fd, int *err)
{
    *err = 0;
    *fd = -1;
    coffer_hctx *h = cf_hctx_new(c->name, NULL);
    char *pw = cf_host_table()->secret_get(h, c->options, "password");
    cf_hctx_free(h);
    if (!pw)
        return NULL;
    size_t n = strlen(pw);
    int m = memfd_create("coffer-password", MFD_ALLOW_SEALING);
    if (m < 0 || fchmod(m, 0600) != 0 || write(m, pw, n) != (ssize_t)n ||
        fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
        *err = cf_fail_errno("cannot hand over the password of '%s'", c->name);
        if (m >= 0)
            close(m);
        cf_host_table()->secret_free(pw);
        return NULL;
    }
    cf_host_table()->secret_free(pw);
    *fd = m;
    return cf_asprintf("/dev/fd/%d", m);
}

int cf_validate_run(const cf_policy *p, const cf_restored *r, json_t *out)
{
    int failed = 0;
    for (size_t i = 0; i < p->nvalidate; i++) {
        const cf_command *v = &p->validate[i];
        json_t *e = json_pack("{s:s,s:s}", "name", v->name, "run", v->run);
        json_array_append_new(out, e);
        char *cmd = cf_validate_expand(v->run, r, p);
        if (!cmd) {
            cf_log(CF_LOG_ERROR, "validate '%s': %s", v->name, cf_error());
            json_object_set_new(e, "exit", json_integer(-1));
            json_object_set_new(e, "ok", json_false());
            json_object_set_new(e, "error", json_string(cf_error()));
            failed++;
            continue;
        }
        size_t cap = 4 + 3 * r->ndb + v->credentials.n + 1, n = 0;
        char **env = cf_calloc(cap, sizeof *env);
        char **pwfiles = cf_calloc(v->credentials.n + 1, sizeof *pwfiles);
        int *pwfds = cf_calloc(v->credentials.n + 1, sizeof *pwfds);
        env[n++] = cf_asprintf("COFFER_RESTORE_ROOT=%s", r->root);
        env[n++] = cf_asprintf("COFFER_SET_ID=%s", r->set_id);
        env[n++] = cf_asprintf("COFFER_POLICY_ROOT=%s", p->root);
        for (size_t k = 0; k < r->ndb; k++) {
            if (r->db[k].url)
                env[n++] = db_var(r->db[k].name, "URL", r->db[k].url);
            if (r->db[k].path)
                env[n++] = db_var(r->db[k].name, "PATH", r->db[k].path);
        }
        int perr = 0;
        for (size_t k = 0; k < v->credentials.n && !perr; k++) {
            const cf_component *c = cf_policy_component(p, v->credentials.v[k]);
            if (!c || c->type != CF_COMP_DATABASE)
                continue;
            pwfiles[k] = password_file(c, &pwfds[k], &perr);
            if (pwfiles[k])
                env[n++] = db_var(c->name, "PASSWORD_FILE", pwfiles[k]);
        }
        int st = -1;
        char *output = NULL;
        if (perr) {
            cf_log(CF_LOG_ERROR, "validate '%s': %s", v->name, cf_error());
        } else {
            cf_log(CF_LOG_INFO, "validate '%s': running `%s` in %s", v->name, cmd, r->root);
            st = cf_run_command_output(v->name, cmd, r->root, v->timeout, env, &output,
                                       OUTPUT_TAIL);
            if (st < 0)
                cf_log(CF_LOG_ERROR, "validate '%s': %s", v->name, cf_error());
            else
                cf_log(st == 0 ? CF_LOG_INFO : CF_LOG_ERROR, "validate '%s': exit status %d (%s)",
                       v->name, st, st == 0 ? "ok" : "FAILED");
        }
        if (st != 0 && !perr && st < 0)
            json_object_set_new(e, "error", json_string(cf_error()));
        else if (perr)
            json_object_set_new(e, "error", json_string(cf_error()));
        json_object_set_new(e, "exit", json_integer(st));
        json_object_set_new(e, "ok", json_boolean(st == 0));
        json_object_set_new(e, "output", json_string(output ? output : ""));
        if (!json_is_string(json_object_get(e, "output")))
            json_object_set_new(e, "output", json_string("(output is not UTF-8)"));
        free(output);
        if (st != 0)
            failed++;
        for (size_t k = 0; k < v->credentials.n; k++) {
            if (pwfiles[k])
                close(pwfds[k]);
            free(pwfiles[k]);
        }
        free(pwfiles);
        free(pwfds);
        for (size_t k = 0; k < n; k++)
            free(env[k]);
        free(env);
        free(cmd);
    }
    return failed;
}
