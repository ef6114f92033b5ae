/*
 * Rehearsal (see rehearse.h): scratch environment, restore into it,
 * checks and validate commands (inside cf_restore), proof record,
 * cleanup. Production is never a destination: files go under the scratch
 * root, every server database is mapped to a scratch database created
 * for this rehearsal, object stores are checked without writing.
 */
#include "engine/rehearse.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/manifest.h"
#include "engine/proof.h"
#include "engine/restore.h"
#include "plugin/host.h"
#include "util/util.h"

#define LEDGER "ledger.json"

const char *cf_rehearse_dir(const cf_policy *p)
{
    if (p->rehearse_dir)
        return p->rehearse_dir;
    const char *t = getenv("TMPDIR");
    return t && t[0] == '/' ? t : "/var/tmp";
}

/* ---- ledger -------------------------------------------------------------- */

typedef struct scratch {
    char *component;
    char *server; /* as given (--scratch / rehearse.scratch), or NULL */
    char *name;
    char target[1024];
    int created;
} scratch;

typedef struct env {
    char *dir;  /* DIR/coffer-rehearse-... */
    char *root; /* dir/root */
    int ledger_fd;
    json_t *ledger;
    scratch *db;
    size_t ndb;
} env;

/* Rewrite the ledger in place and make it durable: it must be on disk
 * before the database it announces exists. */
static int ledger_write(env *e)
{
    char *text = json_dumps(e->ledger, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (!text)
        return cf_fail("%s/%s: cannot encode", e->dir, LEDGER);
    size_t n = strlen(text);
    int rc = 0;
    if (ftruncate(e->ledger_fd, 0) != 0 || pwrite(e->ledger_fd, text, n, 0) != (ssize_t)n ||
        fsync(e->ledger_fd) != 0)
        rc = cf_fail_errno("cannot write %s/%s", e->dir, LEDGER);
    free(text);
    return rc;
}

/* A server URL for messages and the ledger: no password. */
static char *shown_server(const char *server)
{
    return server ? cf_redact_url(server) : cf_strdup("(the component's own server)");
}

static const cf_component *server_db(const cf_policy *p, const char *name)
{
    const cf_component *c = cf_policy_component(p, name);
    return c && c->type == CF_COMP_DATABASE ? c : NULL;
}

/* Drop one scratch database through the component's driver. */
static int drop_db(const cf_policy *p, const char *component, const char *server,
                   const char *name)
{
    const cf_component *c = server_db(p, component);
    if (!c)
        return cf_fail("scratch database %s: policy '%s' no longer has a database component "
                       "'%s' to drop it with; drop it by hand",
                       name, p->name, component);
    cf_dbinst db;
    if (cf_dbinst_open(c, p->root, &db) != 0)
        return -1;
    int rc = 0;
    if (!db.ops->scratch_drop) {
        rc = cf_fail("component '%s': driver '%s' cannot drop scratch databases", component,
                     c->driver);
    } else {
        coffer_status st = db.ops->scratch_drop(db.inst, server, name);
        if (st != COFFER_OK)
            rc = cf_hctx_fail(db.hctx, st, "cannot drop scratch database");
    }
    cf_dbinst_close(&db);
    return rc;
}

/* Leftovers: DIR/coffer-rehearse-<policy>-* directories of ours whose
 * ledger nobody holds. kept ones only when `all`. Each removed one is
 * appended to `cleaned`. Problems are warnings: a leftover must not stop
 * the next rehearsal. */
static void clean_leftovers(const cf_policy *p, int all, json_t *cleaned)
{
    const char *dir = cf_rehearse_dir(p);
    DIR *d = opendir(dir);
    if (!d)
        return;
    char *prefix = cf_asprintf("coffer-rehearse-%s-", p->name);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
            continue;
        char *path = cf_asprintf("%s/%s", dir, de->d_name);
        struct stat st;
        /* only our own private directories: /var/tmp is shared */
        if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
            (st.st_mode & 077)) {
            free(path);
            continue;
        }
        int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int fd = dfd >= 0 ? openat(dfd, LEDGER, O_RDWR | O_NOFOLLOW | O_CLOEXEC) : -1;
        if (dfd >= 0)
            close(dfd);
        if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0) {
            /* running now, or not a rehearsal directory */
            if (fd >= 0)
                close(fd);
            free(path);
            continue;
        }
        json_error_t err;
        json_t *l = json_loadfd(fd, JSON_REJECT_DUPLICATES, &err);
        int ok = json_is_object(l);
        if (ok && json_is_true(json_object_get(l, "kept")) && !all) {
            json_decref(l);
            close(fd);
            free(path);
            continue;
        }
        json_t *dropped = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(l, "databases"), i, x)
        {
            const char *comp = json_string_value(json_object_get(x, "component"));
            const char *name = json_string_value(json_object_get(x, "name"));
            const char *server = json_string_value(json_object_get(x, "server"));
            if (!comp || !name)
                continue;
            if (drop_db(p, comp, server, name) != 0) {
                cf_log(CF_LOG_WARN, "leftover rehearsal %s: %s", path, cf_error());
                ok = 0;
            } else {
                cf_log(CF_LOG_INFO, "dropped scratch database %s of an earlier rehearsal", name);
                json_array_append_new(dropped, json_string(name));
            }
        }
        if (ok) {
            cf_rmtree(path);
            cf_log(CF_LOG_INFO, "removed %s, left by an earlier rehearsal", path);
            json_array_append_new(cleaned, json_pack("{s:s,s:o}", "dir", path, "databases",
                                                     dropped));
        } else {
            json_decref(dropped);
            cf_log(CF_LOG_WARN, "kept %s: its scratch databases could not all be dropped", path);
        }
        json_decref(l);
        close(fd);
        free(path);
    }
    closedir(d);
    free(prefix);
}

static int env_make(const cf_policy *p, env *e)
{
    memset(e, 0, sizeof *e);
    e->ledger_fd = -1;
    const char *dir = cf_rehearse_dir(p);
    e->dir = cf_asprintf("%s/coffer-rehearse-%s-XXXXXX", dir, p->name);
    if (!mkdtemp(e->dir)) {
        int rc = cf_fail_errno("cannot create a scratch directory in %s", dir);
        free(e->dir);
        e->dir = NULL;
        return rc;
    }
    e->root = cf_asprintf("%s/root", e->dir);
    int dfd = open(e->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd >= 0) {
        e->ledger_fd =
            openat(dfd, LEDGER, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        close(dfd);
    }
    if (e->ledger_fd < 0 || flock(e->ledger_fd, LOCK_EX) != 0 || mkdir(e->root, 0700) != 0)
        return cf_fail_errno("cannot prepare %s", e->dir);
    e->ledger = json_pack("{s:s,s:i,s:b,s:[]}", "policy", p->name, "pid", (int)getpid(), "kept",
                          0, "databases");
    return ledger_write(e);
}

/* Drop what was created and remove the directory, unless kept. */
static void env_close(const cf_policy *p, env *e, int keep, json_t *out)
{
    int all_dropped = 1;
    for (size_t i = 0; i < e->ndb; i++) {
        scratch *s = &e->db[i];
        if (!keep && s->created) {
            if (drop_db(p, s->component, s->server, s->name) != 0) {
                cf_log(CF_LOG_ERROR, "%s", cf_error());
                all_dropped = 0;
            }
        }
        free(s->component);
        free(s->server);
        free(s->name);
    }
    free(e->db);
    if (e->dir) {
        if (keep) {
            json_object_set_new(e->ledger, "kept", json_true());
            ledger_write(e);
        } else if (all_dropped) {
            cf_rmtree(e->dir);
        } else {
            cf_log(CF_LOG_WARN, "kept %s: the next rehearsal drops what is left", e->dir);
        }
    }
    if (out)
        json_object_set_new(out, "removed", json_boolean(!keep && all_dropped));
    if (e->ledger_fd >= 0)
        close(e->ledger_fd);
    json_decref(e->ledger);
    free(e->dir);
    free(e->root);
    memset(e, 0, sizeof *e);
}

/* ---- scratch databases ----------------------------------------------- */

static const char *scratch_server(const cf_policy *p, const cf_rehearse_opts *o, const char *comp)
{
    size_t l = strlen(comp);
    for (size_t i = 0; i < o->nscratch; i++)
        if (strncmp(o->scratch[i], comp, l) == 0 && o->scratch[i][l] == '=')
            return o->scratch[i] + l + 1;
    for (size_t i = 0; i < p->nscratch; i++)
        if (strcmp(p->scratch_names[i], comp) == 0)
            return p->scratch_urls[i];
    return NULL;
}

/* coffer_rehearse_<set id, lowercase, '-' -> '_'>_<8 hex> */
static char *scratch_name(const char *set_id)
{
    uint32_t rnd;
    cf_random(&rnd, sizeof rnd);
    char *s = cf_asprintf("coffer_rehearse_%s_%08x", set_id, rnd);
    for (char *c = s; *c; c++)
        *c = *c == '-' ? '_' : (char)tolower((unsigned char)*c);
    return s;
}

/* One scratch database for a server database component of the set. */
static int make_scratch(const cf_policy *p, const cf_rehearse_opts *o, env *e,
                        const cf_component *c, const char *set_id, json_t *info)
{
    cf_dbinst db;
    if (cf_dbinst_open(c, p->root, &db) != 0)
        return -1;
    if (db.ops->owned_paths) { /* a file database lands under the scratch root */
        cf_dbinst_close(&db);
        return 0;
    }
    int rc = 0;
    if (!db.ops->scratch_create || !db.ops->scratch_drop) {
        rc = cf_fail("component '%s': driver '%s' cannot create scratch databases (it needs "
                     "scratch_create and scratch_drop, coffer ABI 1.1); a rehearsal would have "
                     "to write into the production database, so it is refused",
                     c->name, c->driver);
        cf_dbinst_close(&db);
        return rc;
    }
    const char *server = scratch_server(p, o, c->name);
    e->db = cf_realloc(e->db, (e->ndb + 1) * sizeof *e->db);
    scratch *s = &e->db[e->ndb++];
    memset(s, 0, sizeof *s);
    s->component = cf_strdup(c->name);
    s->server = server ? cf_strdup(server) : NULL;
    s->name = scratch_name(set_id);
    if (!coffer_scratch_name_valid(s->name)) { /* set ids are checked; never reached */
        cf_dbinst_close(&db);
        return cf_fail("set %s: cannot make a scratch database name of it", set_id);
    }
    char *shown = shown_server(server);
    json_array_append_new(json_object_get(e->ledger, "databases"),
                          json_pack("{s:s,s:s,s:s?}", "component", c->name, "name", s->name,
                                    "server", server ? shown : NULL));
    rc = ledger_write(e);
    if (rc == 0) {
        coffer_status st =
            db.ops->scratch_create(db.inst, server, s->name, s->target, sizeof s->target);
        if (st != COFFER_OK) {
            rc = cf_hctx_fail(db.hctx, st, "cannot create a scratch database for the rehearsal");
        } else {
            s->created = 1;
            char *t = cf_redact_url(s->target);
            cf_log(CF_LOG_INFO, "component '%s': scratch database %s on %s", c->name, s->name,
                   shown);
            json_array_append_new(info, json_pack("{s:s,s:s,s:s}", "component", c->name, "name",
                                                  s->name, "target", t));
            free(t);
        }
    }
    free(shown);
    cf_dbinst_close(&db);
    return rc;
}

/* ---- one set ------------------------------------------------------------- */

static json_t *summary(json_t *arr, const char *status_key)
{
    json_t *out = json_array();
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x)
    {
        json_t *s = json_object();
        json_object_set(s, "name", json_object_get(x, "name"));
        if (strcmp(status_key, "status") == 0) {
            json_object_set(s, "status", json_object_get(x, "status"));
            json_object_set(s, "problems", json_object_get(x, "problems"));
        } else {
            json_object_set(s, "exit", json_object_get(x, "exit"));
            json_object_set(s, "ok", json_object_get(x, "ok"));
        }
        json_array_append_new(out, s);
    }
    return out;
}

static int rehearse_one(cf_run *run, const cf_rehearse_opts *o, const char *set_id, json_t *out)
{
    cf_policy *p = run->policy;
    double t0 = cf_now();
    char when[32];
    cf_iso_time(time(NULL), when, sizeof when);
    json_object_set_new(out, "set", json_string(set_id));
    json_object_set_new(out, "time", json_string(when));
    cf_log(CF_LOG_INFO, "rehearsing set %s", set_id);

    env e;
    json_t *dbs = json_array();
    json_object_set_new(out, "scratch_databases", dbs);
    int rc = env_make(p, &e);
    if (rc == 0)
        json_object_set_new(out, "scratch_dir", json_string(e.dir));

    json_t *h = NULL;
    if (rc == 0)
        rc = cf_manifest_header(run->repo, set_id, &h);
    if (rc == 0 && json_is_true(json_object_get(h, "inconsistent"))) {
        long long n = json_integer_value(json_object_get(h, "missing_references"));
        cf_log(CF_LOG_WARN, "set %s was marked inconsistent at backup: its database references "
               "%lld path(s) it lacks; the checks below will show them", set_id, n);
        json_object_set_new(out, "inconsistent", json_true());
        json_object_set_new(out, "missing_references", json_integer(n));
    }
    char **maps = NULL;
    size_t nmaps = 0;
    size_t i;
    json_t *c;
    json_array_foreach(rc == 0 ? json_object_get(h, "components") : NULL, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *type = json_string_value(json_object_get(c, "type"));
        const cf_component *pc = name ? cf_policy_component(p, name) : NULL;
        if (!type || strcmp(type, "database") != 0 || !pc || pc->type != CF_COMP_DATABASE)
            continue; /* cf_restore reports what it cannot restore */
        size_t before = e.ndb;
        if (make_scratch(p, o, &e, pc, set_id, dbs) != 0) {
            rc = -1;
            break;
        }
        if (e.ndb > before) {
            maps = cf_realloc(maps, (nmaps + 1) * sizeof *maps);
            maps[nmaps++] = cf_asprintf("%s=%s", name, e.db[e.ndb - 1].target);
        }
    }
    if (h)
        json_decref(h);

    int exit_code = CF_EXIT_FAILED;
    json_t *rep = NULL;
    if (rc == 0) {
        cf_restore_opts ro = {.set = set_id, .to = e.root, .maps = maps, .nmaps = nmaps};
        exit_code = cf_restore(run, &ro, &rep);
    }
    if (rc != 0 || exit_code == CF_EXIT_FAILED || exit_code == CF_EXIT_USAGE) {
        exit_code = CF_EXIT_FAILED;
        json_object_set_new(out, "error", json_string(cf_error()));
    }
    if (rep) {
        const char *keys[] = {"components", "checks", "policy_checks", "validate"};
        for (size_t k = 0; k < CF_ARRAY_LEN(keys); k++)
            if (json_object_get(rep, keys[k]))
                json_object_set(out, keys[k], json_object_get(rep, keys[k]));
        json_decref(rep);
    }
    for (size_t k = 0; k < nmaps; k++)
        free(maps[k]);
    free(maps);

    char saved[2048];
    snprintf(saved, sizeof saved, "%s", cf_error());
    if (e.dir || e.ndb)
        env_close(p, &e, o->keep, out);
    json_object_set_new(out, "kept", json_boolean(o->keep));
    cf_fail("%s", saved);

    int ok = exit_code == CF_EXIT_OK;
    long long ms = (long long)((cf_now() - t0) * 1000);
    json_object_set_new(out, "ok", json_boolean(ok));
    json_object_set_new(out, "duration_ms", json_integer(ms));

    /* The proof record: what was found, never where (no URLs, no paths). */
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:I,s:b,s:s}", "set", set_id, "policy", p->name,
                            "host", host, "time", when, "duration_ms", (json_int_t)ms, "ok", ok,
                            "coffer", COFFER_VERSION);
    json_object_set_new(rec, "checks",
                        summary(json_object_get(out, "policy_checks") ?: json_array(), "status"));
    json_object_set_new(rec, "validate",
                        summary(json_object_get(out, "validate") ?: json_array(), "exit"));
    if (json_object_get(out, "error"))
        json_object_set(rec, "error", json_object_get(out, "error"));
    if (cf_proof_put(run->repo, set_id, rec) != 0) {
        cf_log(CF_LOG_ERROR, "set %s: cannot store the rehearsal's result: %s", set_id,
               cf_error());
        json_object_set_new(out, "recorded", json_false());
        if (exit_code == CF_EXIT_OK)
            exit_code = CF_EXIT_FAILED;
    } else {
        json_object_set_new(out, "recorded", json_true());
    }
    json_decref(rec);
    cf_fail("%s", saved);
    return exit_code;
}

/* ---- sets to rehearse ------------------------------------------------ */

static int choose(cf_run *run, const char *spec, char ***ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    if (strcmp(spec, "all") != 0 && strcmp(spec, "unproven") != 0) {
        char *id;
        if (cf_resolve_set(run, spec, &id) != 0)
            return -1;
        *ids = cf_malloc(sizeof **ids);
        (*ids)[0] = id;
        *n = 1;
        return 0;
    }
    char **all;
    size_t m;
    if (cf_policy_sets(run, &all, &m) != 0)
        return -1;
    for (size_t i = 0; i < m; i++) {
        if (strcmp(spec, "unproven") == 0) {
            json_t *last, *last_ok;
            if (cf_proof_latest(run->repo, all[i], &last, &last_ok) != 0) {
                cf_strv_free(all, m);
                cf_strv_free(*ids, *n);
                return -1;
            }
            int proven = last_ok != NULL;
            json_decref(last);
            json_decref(last_ok);
            if (proven)
                continue;
        }
        *ids = cf_realloc(*ids, (*n + 1) * sizeof **ids);
        (*ids)[(*n)++] = cf_strdup(all[i]);
    }
    cf_strv_free(all, m);
    return 0;
}

int cf_rehearse(cf_run *run, const cf_rehearse_opts *o, json_t **report)
{
    cf_policy *p = run->policy;
    *report = NULL;
    for (size_t i = 0; i < o->nscratch; i++) {
        const char *eq = strchr(o->scratch[i], '=');
        char *name = eq ? cf_strndup(o->scratch[i], (size_t)(eq - o->scratch[i])) : NULL;
        int bad = !name || !eq[1] || !server_db(p, name);
        if (bad) {
            cf_fail("--scratch %s: give COMPONENT=URL with a database component of policy "
                    "'%s'",
                    o->scratch[i], p->name);
            free(name);
            return CF_EXIT_USAGE;
        }
        free(name);
    }
    json_t *cleaned = json_array();
    clean_leftovers(p, o->cleanup, cleaned);
    json_t *rep = json_pack("{s:o,s:[]}", "cleaned", cleaned, "sets");
    *report = rep;
    if (o->cleanup) {
        json_object_set_new(rep, "ok", json_true());
        return CF_EXIT_OK;
    }
    char **ids;
    size_t n;
    if (choose(run, o->set ? o->set : "latest", &ids, &n) != 0) {
        json_object_set_new(rep, "ok", json_false());
        return CF_EXIT_FAILED;
    }
    int worst = CF_EXIT_OK;
    for (size_t i = 0; i < n && !cf_cancel_flag; i++) {
        json_t *one = json_object();
        json_array_append_new(json_object_get(rep, "sets"), one);
        int rc = rehearse_one(run, o, ids[i], one);
        if (rc == CF_EXIT_FAILED)
            worst = CF_EXIT_FAILED;
        else if (rc == CF_EXIT_PROBLEMS && worst == CF_EXIT_OK)
            worst = CF_EXIT_PROBLEMS;
    }
    if (n == 0)
        cf_log(CF_LOG_INFO, "no set to rehearse");
    cf_strv_free(ids, n);
    json_object_set_new(rep, "ok", json_boolean(worst == CF_EXIT_OK));
    return worst;
}
