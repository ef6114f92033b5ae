/* Policy records in sets, and policies rebuilt from them (engine/recover.h). */
#include "engine/recover.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/manifest.h"
#include "engine/restore.h"
#include "plugin/config.h"
#include "plugin/registry.h"
/* The record keeps the policy's own structure: the YAML tree as written,
 * not the loaded struct, so nothing a later schema adds is lost. */
#include "policy/ytree.h"
#include "util/util.h"

#define RECORD_VERSION 1

/* ---- the secret rule ---------------------------------------------------- */

static int starts_ci(const char *s, const char *p)
{
    return strncasecmp(s, p, strlen(p)) == 0;
}

static int ends_ci(const char *s, const char *suffix)
{
    size_t n = strlen(s), l = strlen(suffix);
    return n >= l && strcasecmp(s + n - l, suffix) == 0;
}

int cf_recover_secret_key(const char *k)
{
    if (!k || !*k)
        return 0;
    if (starts_ci(k, "password") || ends_ci(k, "password") || starts_ci(k, "passphrase") ||
        strcasecmp(k, "passfile") == 0)
        return 1;
    if (ends_ci(k, "_env"))
        return 1;
    if (ends_ci(k, "_file") || ends_ci(k, "_command")) {
        static const char *const words[] = {"pass", "secret", "token", "credential", "key"};
        for (size_t i = 0; i < CF_ARRAY_LEN(words); i++)
            if (strcasestr(k, words[i]))
                return 1;
    }
    return 0;
}

/* "scheme://user:password@host" -> "scheme://user@host", in place. */
static int strip_userinfo(char *s)
{
    int changed = 0;
    for (char *p = strstr(s, "://"); p; p = strstr(p + 1, "://")) {
        char *a = p + 3;
        size_t auth = strcspn(a, "/?#& \t\r\n\"'");
        char *at = NULL;
        for (size_t i = 0; i < auth; i++)
            if (a[i] == '@')
                at = a + i;
        char *colon = at ? memchr(a, ':', (size_t)(at - a)) : NULL;
        if (colon) {
            memmove(colon, at, strlen(at) + 1);
            changed = 1;
        }
    }
    return changed;
}

char *cf_recover_strip_value(const char *v, int *changed)
{
    cf_buf out = {0};
    int ch = 0;
    size_t i = 0;
    while (v[i]) {
        int start = i == 0 || strchr("?&; \t", v[i - 1]);
        size_t n = 0;
        while (start && (isalnum((unsigned char)v[i + n]) || v[i + n] == '_'))
            n++;
        if (n && n < 128 && v[i + n] == '=') {
            char name[128];
            memcpy(name, v + i, n);
            name[n] = 0;
            if (cf_recover_secret_key(name)) {
                size_t j = i + n + 1;
                if (v[j] == '\'') {
                    j++;
                    while (v[j] && v[j] != '\'')
                        j += v[j] == '\\' && v[j + 1] ? 2 : 1;
                    if (v[j])
                        j++;
                } else {
                    while (v[j] && !strchr("&; \t#", v[j]))
                        j++;
                }
                /* one separator goes with it */
                char *o = (char *)out.data;
                if (out.len && (o[out.len - 1] == '&' || o[out.len - 1] == ';')) {
                    out.len--;
                } else if (out.len && (o[out.len - 1] == ' ' || o[out.len - 1] == '\t')) {
                    while (out.len && (o[out.len - 1] == ' ' || o[out.len - 1] == '\t'))
                        out.len--;
                } else {
                    while (v[j] && strchr("&; \t", v[j]))
                        j++;
                    if (out.len && o[out.len - 1] == '?' && (!v[j] || v[j] == '#'))
                        out.len--;
                }
                i = j;
                ch = 1;
                continue;
            }
        }
        cf_buf_append(&out, v + i, 1);
        i++;
    }
    cf_buf_append(&out, "", 1);
    char *s = (char *)out.data;
    if (strip_userinfo(s))
        ch = 1;
    if (changed)
        *changed = ch;
    return s;
}

static void strip_at(json_t *node, const char *path, json_t *removed)
{
    if (json_is_object(node)) {
        const char *k;
        json_t *v, *tmp;
        json_object_foreach_safe(node, tmp, k, v)
        {
            if (cf_recover_secret_key(k)) {
                if (removed)
                    json_array_append_new(removed, json_pack("{s:s,s:s}", "path", path, "key", k));
                json_object_del(node, k);
                continue;
            }
            if (json_is_string(v)) {
                int ch;
                char *s = cf_recover_strip_value(json_string_value(v), &ch);
                if (ch) {
                    json_object_set_new(node, k, json_string(s));
                    if (removed)
                        json_array_append_new(removed, json_pack("{s:s,s:s,s:b}", "path", path,
                                                                 "key", k, "value", 1));
                }
                free(s);
                continue;
            }
            char *sub = *path ? cf_asprintf("%s.%s", path, k) : cf_strdup(k);
            strip_at(v, sub, removed);
            free(sub);
        }
    } else if (json_is_array(node)) {
        size_t i;
        json_t *v;
        json_array_foreach(node, i, v)
        {
            char *sub = cf_asprintf("%s[%zu]", path, i);
            if (json_is_string(v)) {
                int ch;
                char *s = cf_recover_strip_value(json_string_value(v), &ch);
                if (ch) {
                    json_array_set_new(node, i, json_string(s));
                    if (removed) {
                        char idx[32];
                        snprintf(idx, sizeof idx, "[%zu]", i);
                        json_array_append_new(removed, json_pack("{s:s,s:s,s:b}", "path", path,
                                                                 "key", idx, "value", 1));
                    }
                }
                free(s);
            } else {
                strip_at(v, sub, removed);
            }
            free(sub);
        }
    }
}

void cf_recover_strip(json_t *tree, json_t *removed)
{
    strip_at(tree, "", removed);
}

/* ---- the record ------------------------------------------------------------ */

static json_t *tree_json(const cf_yn *n)
{
    if (!n)
        return json_null();
    if (n->kind == CF_YN_SCALAR) {
        if (n->null)
            return json_null();
        char *s = cf_expand_env(n->str);
        json_t *j = json_string(s ? s : n->str);
        free(s);
        return j ? j : json_null(); /* not UTF-8 */
    }
    if (n->kind == CF_YN_SEQ) {
        json_t *a = json_array();
        for (size_t i = 0; i < n->n; i++)
            json_array_append_new(a, tree_json(n->kids[i]));
        return a;
    }
    json_t *o = json_object();
    for (size_t i = 0; i + 1 < n->n; i += 2)
        if (n->kids[i]->kind == CF_YN_SCALAR && n->kids[i]->str)
            json_object_set_new(o, n->kids[i]->str, tree_json(n->kids[i + 1]));
    return o;
}

/* host, port and database of "scheme://user@host:port/db?..." or of a
 * keyword list "host=H port=P dbname=D". */
static void url_parts(const char *url, json_t *o)
{
    const char *p = strstr(url, "://");
    if (p) {
        const char *a = p + 3;
        size_t auth = strcspn(a, "/?#");
        const char *at = memchr(a, '@', auth);
        const char *h = at ? at + 1 : a;
        size_t hl = auth - (size_t)(h - a);
        const char *colon = NULL;
        if (*h == '[') {
            const char *rb = memchr(h, ']', hl);
            colon = rb && rb + 1 < h + hl && rb[1] == ':' ? rb + 1 : NULL;
        } else {
            colon = memchr(h, ':', hl);
        }
        size_t host_len = colon ? (size_t)(colon - h) : hl;
        if (host_len)
            json_object_set_new(o, "host", json_stringn(h, host_len));
        if (colon && (size_t)(colon + 1 - h) < hl)
            json_object_set_new(o, "port", json_stringn(colon + 1, hl - (size_t)(colon + 1 - h)));
        if (a[auth] == '/') {
            const char *d = a + auth + 1;
            size_t dl = strcspn(d, "?#");
            if (dl)
                json_object_set_new(o, "database", json_stringn(d, dl));
        }
        return;
    }
    static const char *const keys[][2] = {
        {"host", "host"}, {"port", "port"}, {"dbname", "database"}};
    for (size_t k = 0; k < CF_ARRAY_LEN(keys); k++) {
        char pat[16];
        snprintf(pat, sizeof pat, "%s=", keys[k][0]);
        for (const char *q = strstr(url, pat); q; q = strstr(q + 1, pat))
            if (q == url || isspace((unsigned char)q[-1])) {
                const char *v = q + strlen(pat);
                json_object_set_new(o, keys[k][1], json_stringn(v, strcspn(v, " \t")));
                break;
            }
    }
}

static json_t *database_location(const cf_policy *p, const cf_component *c)
{
    json_t *o = json_pack("{s:s,s:s}", "name", c->name, "driver", c->driver);
    const cf_driver *d = cf_registry_find(COFFER_KIND_DATABASE, c->driver);
    int file_db = d && d->database.owned_paths;
    json_object_set_new(o, "server", json_boolean(!file_db));
    const char *path = cf_config_get(c->options, "path");
    if (file_db && path) {
        size_t rl = strlen(p->root);
        if (path[0] == '/' && strncmp(path, p->root, rl) == 0 && path[rl] == '/')
            path += rl + 1;
        else if (path[0] == '/' && strcmp(p->root, "/") == 0)
            path++;
        json_object_set_new(o, "path", json_string(path));
    }
    const char *url = cf_config_get(c->options, "url");
    if (url) {
        char *s = cf_recover_strip_value(url, NULL);
        json_object_set_new(o, "url", json_string(s));
        url_parts(s, o);
        free(s);
    }
    size_t nd = cf_config_list_len(c->options, "databases");
    if (nd) {
        json_t *a = json_array();
        for (size_t i = 0; i < nd; i++)
            json_array_append_new(a, json_string(cf_config_list_item(c->options, "databases", i)));
        json_object_set_new(o, "databases", a);
    }
    return o;
}

json_t *cf_policy_record(const cf_policy *p)
{
    FILE *f = fopen(p->file, "rb");
    if (!f) {
        cf_fail_errno("%s: cannot read the policy to record it", p->file);
        return NULL;
    }
    cf_buf b = {0};
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        cf_buf_append(&b, chunk, n);
    fclose(f);
    cf_ydoc doc;
    int rc = cf_ydoc_parse(&doc, p->file, b.data ? (const char *)b.data : "", b.len);
    cf_buf_free(&b);
    if (rc < 0)
        return NULL;
    json_t *tree = tree_json(doc.root);
    cf_ydoc_free(&doc);
    if (!json_is_object(tree)) {
        json_decref(tree);
        cf_fail("%s: not a mapping", p->file);
        return NULL;
    }
    json_t *removed = json_array();
    cf_recover_strip(tree, removed);
    json_t *order = json_array(), *dbs = json_array();
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < p->ncomponents; i++)
            if ((p->components[i].type == CF_COMP_OBJECT_STORE) == pass)
                json_array_append_new(order, json_string(p->components[i].name));
    for (size_t i = 0; i < p->ncomponents; i++)
        if (p->components[i].type == CF_COMP_DATABASE)
            json_array_append_new(dbs, database_location(p, &p->components[i]));
    return json_pack("{s:i,s:o,s:o,s:o,s:o}", "version", RECORD_VERSION, "policy", tree, "removed",
                     removed, "restore_order", order, "databases", dbs);
}

/* ---- the record as YAML -------------------------------------------------- */

static void put(cf_buf *b, const char *s)
{
    cf_buf_append(b, s, strlen(s));
}

static void indent(cf_buf *b, int n)
{
    for (int i = 0; i < n; i++)
        put(b, " ");
}

/* A scalar the loader reads back as s: a literal block (|) for text of
 * several lines, else double-quoted; "$" doubled either way, so the
 * loader's ${VAR} expansion gives the recorded text back. ind: the
 * indentation of the key. */
static int block_ok(const char *s)
{
    if (!strchr(s, '\n') || s[0] == ' ' || s[0] == '\n' || s[0] == '\t')
        return 0;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if ((*c < 0x20 && *c != '\n' && *c != '\t') || *c == 0x7f)
            return 0;
    return 1;
}

static void put_scalar(cf_buf *b, const char *s, int ind, int expanded)
{
    const char *dollar = expanded ? "$$" : "$";
    if (expanded && block_ok(s)) {
        size_t n = strlen(s), trail = 0;
        while (trail < n && s[n - 1 - trail] == '\n')
            trail++;
        put(b, trail == 0 ? "|-" : trail == 1 ? "|" : "|+");
        int bol = 0;
        put(b, "\n");
        indent(b, ind + 2);
        for (const char *c = s; *c; c++) {
            if (bol && *c != '\n')
                indent(b, ind + 2);
            bol = 0;
            if (*c == '$')
                put(b, dollar);
            else
                cf_buf_append(b, c, 1);
            if (*c == '\n')
                bol = 1;
        }
        /* the caller ends the line */
        if (b->len && ((char *)b->data)[b->len - 1] == '\n')
            b->len--;
        return;
    }
    json_t *j = json_string(s);
    char *q = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    for (const char *c = q ? q : "\"\""; *c; c++) {
        if (*c == '$')
            put(b, dollar);
        else
            cf_buf_append(b, c, 1);
    }
    free(q);
}

static void put_key(cf_buf *b, const char *k)
{
    if (*k &&
        strspn(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == strlen(k))
        put(b, k);
    else
        put_scalar(b, k, 0, 0); /* keys are never expanded */
}

static const char *hint(const char *key)
{
    if (starts_ci(key, "passphrase"))
        return "the repository passphrase: give passphrase_env, passphrase_file or "
               "passphrase_command, or set COFFER_PASSPHRASE";
    if (starts_ci(key, "password") || ends_ci(key, "password") || strcasecmp(key, "passfile") == 0)
        return "the database password: name its variable (password_env: VAR) or file "
               "(password_file: PATH)";
    if (ends_ci(key, "_env"))
        return "name the environment variable that holds this secret";
    return "name the file or command that holds this secret";
}

static void comments_for(cf_buf *b, json_t *removed, const char *path, int ind)
{
    size_t i;
    json_t *r;
    json_array_foreach(removed, i, r)
    {
        const char *rp = json_string_value(json_object_get(r, "path"));
        const char *k = json_string_value(json_object_get(r, "key"));
        if (!rp || !k || strcmp(rp, path) != 0 || json_is_true(json_object_get(r, "value")))
            continue;
        indent(b, ind);
        put(b, "# ");
        put(b, k);
        put(b, ": ...   left out of the record; ");
        put(b, hint(k));
        put(b, "\n");
    }
}

static void value_note(cf_buf *b, json_t *removed, const char *path, const char *key, int ind)
{
    size_t i;
    json_t *r;
    json_array_foreach(removed, i, r)
    {
        const char *rp = json_string_value(json_object_get(r, "path"));
        const char *k = json_string_value(json_object_get(r, "key"));
        if (rp && k && strcmp(rp, path) == 0 && strcmp(k, key) == 0 &&
            json_is_true(json_object_get(r, "value"))) {
            indent(b, ind);
            put(b, "# a password (or where it came from) was removed from this value: "
                   "put back what it needs\n");
        }
    }
}

static void emit(cf_buf *b, json_t *v, const char *path, int ind, json_t *removed);

static void emit_map_body(cf_buf *b, json_t *o, const char *path, int ind, int first_inline,
                          json_t *removed)
{
    const char *k;
    json_t *v;
    int first = 1;
    json_object_foreach(o, k, v)
    {
        if (!(first && first_inline)) {
            value_note(b, removed, path, k, ind);
            indent(b, ind);
        }
        first = 0;
        put_key(b, k);
        put(b, ":");
        char *sub = *path ? cf_asprintf("%s.%s", path, k) : cf_strdup(k);
        if (json_is_object(v) && json_object_size(v)) {
            put(b, "\n");
            emit_map_body(b, v, sub, ind + 2, 0, removed);
        } else if (json_is_array(v) && json_array_size(v)) {
            put(b, "\n");
            emit(b, v, sub, ind + 2, removed);
        } else {
            put(b, " ");
            emit(b, v, sub, ind, removed);
            put(b, "\n");
        }
        free(sub);
    }
    comments_for(b, removed, path, ind);
}

static void emit(cf_buf *b, json_t *v, const char *path, int ind, json_t *removed)
{
    if (json_is_string(v)) {
        put_scalar(b, json_string_value(v), ind, 1);
    } else if (json_is_object(v) && json_object_size(v)) {
        emit_map_body(b, v, path, ind, 0, removed);
    } else if (json_is_object(v)) {
        put(b, "{}");
    } else if (json_is_array(v) && json_array_size(v)) {
        size_t i;
        json_t *it;
        json_array_foreach(v, i, it)
        {
            char *sub = cf_asprintf("%s[%zu]", path, i);
            indent(b, ind);
            put(b, "- ");
            if (json_is_object(it) && json_object_size(it)) {
                emit_map_body(b, it, sub, ind + 2, 1, removed);
            } else if (json_is_array(it) && json_array_size(it)) {
                put(b, "\n");
                emit(b, it, sub, ind + 2, removed);
            } else {
                emit(b, it, sub, ind, removed);
                put(b, "\n");
            }
            free(sub);
        }
    } else if (json_is_array(v)) {
        put(b, "[]");
    } else {
        put(b, "~");
    }
}

char *cf_recover_yaml(json_t *record)
{
    cf_buf b = {0};
    json_t *pol = json_object_get(record, "policy");
    json_t *removed = json_object_get(record, "removed");
    if (!json_is_array(removed))
        removed = NULL;
    json_t *none = json_array(), *empty = json_object();
    emit(&b, json_is_object(pol) ? pol : empty, "", 0, removed ? removed : none);
    json_decref(none);
    json_decref(empty);
    cf_buf_append(&b, "", 1);
    return (char *)b.data;
}

/* ---- policies rebuilt --------------------------------------------------- */

static char *norm_location(const char *loc)
{
    if (strncmp(loc, "s3://", 5) == 0 || loc[0] == '/')
        return cf_strdup(loc);
    return cf_abspath(loc);
}

static int same_location(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    while (la > 1 && a[la - 1] == '/')
        la--;
    while (lb > 1 && b[lb - 1] == '/')
        lb--;
    return la == lb && strncmp(a, b, la) == 0;
}

static int load_yaml(const char *label, json_t *tree, cf_policy **out)
{
    json_t *none = json_array();
    cf_buf b = {0};
    emit(&b, tree, "", 0, none);
    json_decref(none);
    cf_policy *p;
    int rc = cf_policy_load_string(label, b.data ? (const char *)b.data : "", b.len, &p);
    cf_buf_free(&b);
    if (rc != 0)
        return -1;
    if (cf_policy_check_drivers(p, cf_registry_options, NULL) != 0) {
        cf_policy_free(p);
        return -1;
    }
    cf_child_env_policy(p);
    *out = p;
    return 0;
}

static json_t *target_for(json_t *targets, const char *location)
{
    char *loc = norm_location(location);
    json_t *t = NULL;
    size_t i;
    json_t *rt;
    json_array_foreach(targets, i, rt)
    {
        const char *l = json_string_value(json_object_get(rt, "location"));
        if (l && same_location(l, loc)) {
            t = json_deep_copy(rt);
            break;
        }
    }
    if (!t)
        t = json_pack("{s:s}", "name", "repository");
    json_object_set_new(t, "location", json_string(loc));
    free(loc);
    json_t *arr = json_array();
    json_array_append_new(arr, t);
    return arr;
}

int cf_recover_policy(json_t *record, const char *location, cf_policy **out)
{
    json_t *pol = json_object_get(record, "policy");
    if (!json_is_object(pol))
        return cf_fail("the set's policy record holds no policy");
    json_t *tree = json_deep_copy(pol);
    /* a record is stripped already; strip again in case a writer did not */
    cf_recover_strip(tree, NULL);
    json_object_set_new(tree, "targets", target_for(json_object_get(pol, "targets"), location));
    int rc = load_yaml("recorded policy", tree, out);
    json_decref(tree);
    return rc;
}

static void drop_programs(json_t *node)
{
    if (json_is_object(node)) {
        const char *k;
        json_t *v, *tmp;
        json_object_foreach_safe(node, tmp, k, v)
        {
            if (ends_ci(k, "_bin_dir") || ends_ci(k, "_bin") || ends_ci(k, "_command"))
                json_object_del(node, k);
            else
                drop_programs(v);
        }
    } else if (json_is_array(node)) {
        size_t i;
        json_t *v;
        json_array_foreach(node, i, v) drop_programs(v);
    }
}

void cf_recover_untrusted(json_t *record)
{
    json_t *pol = json_object_get(record, "policy");
    if (!json_is_object(pol))
        return;
    json_object_del(pol, "hooks");
    json_object_del(pol, "validate");
    json_t *cons = json_object_get(pol, "consistency");
    if (json_is_object(cons)) {
        /* maintenance mode needs both: run `true`, which changes nothing */
        if (json_object_get(cons, "stop"))
            json_object_set_new(cons, "stop", json_string("true"));
        if (json_object_get(cons, "start"))
            json_object_set_new(cons, "start", json_string("true"));
    }
    drop_programs(pol);
}

int cf_recover_policy_files(json_t *header, const char *location, cf_policy **out)
{
    const char *name = json_string_value(json_object_get(header, "policy"));
    const char *root = json_string_value(json_object_get(header, "root"));
    json_t *comps = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(header, "components"), i, c)
    {
        const char *type = json_string_value(json_object_get(c, "type"));
        json_t *paths = json_object_get(c, "paths");
        if (!type || strcmp(type, "files") != 0 || !json_is_array(paths) || !json_array_size(paths))
            continue;
        json_array_append_new(comps, json_pack("{s:O,s:s,s:O}", "name", json_object_get(c, "name"),
                                               "type", "files", "paths", paths));
    }
    if (!json_array_size(comps)) {
        json_decref(comps);
        return cf_fail("the set records no policy and has no files components");
    }
    json_t *tree = json_pack("{s:s,s:s,s:o,s:o}", "name", name ? name : "recovered", "root",
                             root && root[0] == '/' ? root : "/", "targets",
                             target_for(NULL, location), "components", comps);
    int rc = load_yaml("set header", tree, out);
    json_decref(tree);
    return rc;
}

int cf_recover_set(cf_run *run, const char *spec, char **id_out, json_t **header_out)
{
    char **ids;
    size_t n;
    *id_out = NULL;
    *header_out = NULL;
    if (cf_sets_list(run->repo, &ids, &n) != 0)
        return -1;
    const char *loc = run->target->location;
    char *id = NULL;
    if (!spec || strcmp(spec, "latest") == 0) {
        if (n)
            id = cf_strdup(ids[n - 1]);
        else
            cf_fail("%s: the repository holds no sets", loc);
    } else {
        size_t l = strlen(spec), hits = 0;
        for (size_t i = 0; i < n; i++)
            if (strncmp(ids[i], spec, l) == 0 && hits++ == 0)
                id = cf_strdup(ids[i]);
        if (hits > 1) {
            free(id);
            id = NULL;
            cf_fail("%s: '%s' names %zu sets; give more of the id", loc, spec, hits);
        } else if (!hits) {
            cf_fail("%s: no set %s (see `coffer --repo %s sets`)", loc, spec, loc);
        }
    }
    cf_strv_free(ids, n);
    if (!id)
        return -1;
    if (cf_manifest_header(run->repo, id, header_out) != 0) {
        cf_error_prefix("set %s", id);
        free(id);
        return -1;
    }
    *id_out = id;
    return 0;
}
