/*
 * Verify: a set is restorable if its manifest is intact, every chunk it
 * names is indexed and lives in an existing pack, and (with --read-data)
 * every chunk decompresses to bytes whose hash is its id, file sizes add
 * up, and database dumps pass their driver's checks.
 */
#include "engine/verify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/manifest.h"
#include "engine/objects.h"
#include "engine/progress.h"
#include "engine/restore.h"
#include "engine/setcheck.h"
#include "plugin/host.h"
#include "util/util.h"

typedef struct vctx {
    cf_run *run;
    const char *set;
    json_t *problems;
    json_t *unchecked; /* database dumps --read-data could not check, and why */
    char **packs_ok;
    size_t npacks, cappacks;
    cf_buf buf;
} vctx;

static void problem(vctx *v, const char *path, const cf_id *chunk, const char *pack,
                    const char *msg)
{
    char hex[2 * CF_ID_LEN + 1] = "";
    if (chunk)
        cf_id_hex(chunk, hex);
    json_t *j = json_pack("{s:s,s:s,s:s}", "set", v->set, "path", path ? path : "", "problem", msg);
    if (chunk)
        json_object_set_new(j, "chunk", json_string(hex));
    if (pack)
        json_object_set_new(j, "pack", json_string(pack));
    json_array_append_new(v->problems, j);
    cf_log(CF_LOG_ERROR, "set %s: %s%s%s%s%s%s: %s", v->set, path ? path : "", chunk ? ": chunk " : "",
           hex, pack ? " in pack " : "", pack ? pack : "", "", msg);
}

static int pack_known(vctx *v, const char *pack)
{
    for (size_t i = 0; i < v->npacks; i++)
        if (strcmp(v->packs_ok[i], pack) == 0)
            return 1;
    return 0;
}

static void check_chunk(vctx *v, const char *path, const cf_id *id, int read_data, uint64_t *sum)
{
    char pack[256];
    if (!cf_repo_has(v->run->repo, id)) {
        problem(v, path, id, NULL, "chunk is not in the repository index");
        return;
    }
    const char *pk = cf_repo_chunk_pack(v->run->repo, id, pack, sizeof pack);
    int64_t sz = cf_repo_chunk_size(v->run->repo, id);
    if (sz > 0)
        *sum += (uint64_t)sz;
    if (pk && !pack_known(v, pk)) {
        coffer_object_stat st;
        if (cf_store_stat(cf_repo_store(v->run->repo), pk, &st) != 0) {
            problem(v, path, id, pk, "pack is missing");
            return;
        }
        if (v->npacks == v->cappacks) {
            v->cappacks = v->cappacks ? 2 * v->cappacks : 64;
            v->packs_ok = cf_realloc(v->packs_ok, v->cappacks * sizeof(char *));
        }
        v->packs_ok[v->npacks++] = cf_strdup(pk);
    }
    if (read_data) {
        if (cf_repo_get_chunk(v->run->repo, id, &v->buf) != 0)
            problem(v, path, id, pk, cf_error());
        else
            cf_progress_add(v->buf.len, 0);
    }
}

/* A dump --read-data leaves unread is named, never passed over in silence. */
static void unchecked(vctx *v, const char *component, const char *why)
{
    json_array_append_new(v->unchecked, json_pack("{s:s,s:s,s:s}", "set", v->set, "component",
                                                  component, "reason", why));
    cf_log(CF_LOG_WARN, "set %s: database component '%s' not checked: %s", v->set, component, why);
}

static void db_check_cb(void *ud, int ok, const char *check, const char *detail)
{
    const char *component = ud;
    if (!ok)
        cf_log(CF_LOG_ERROR, "check %s: %s: %s", component, check, detail ? detail : "failed");
}

static void check_databases(vctx *v, json_t *header)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(header, "components"), i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *type = json_string_value(json_object_get(c, "type"));
        if (!name || !type || strcmp(type, "database") != 0)
            continue;
        const cf_component *pc = cf_policy_component(v->run->policy, name);
        if (!pc || pc->type != CF_COMP_DATABASE) {
            unchecked(v, name, "the policy does not declare this database component, so its "
                               "driver options are unknown");
            continue;
        }
        cf_dbinst db;
        if (cf_dbinst_open(pc, v->run->policy->root, &db) != 0) {
            problem(v, name, NULL, NULL, cf_error());
            continue;
        }
        if (!db.ops->verify) {
            unchecked(v, name, "its driver has no verify operation");
            cf_dbinst_close(&db);
            continue;
        }
        if (!db.ops->owned_paths) {
            /* Reading a server database's dump back needs a server: restore
             * with --map NAME=URL checks it there. */
            unchecked(v, name, "a server database is checked by a restore into another "
                               "database (--map), not by verify");
            cf_dbinst_close(&db);
            continue;
        }
        cf_dbsource *src;
        if (cf_dbsource_load(v->run->repo, v->set, name, &src) != 0) {
            problem(v, name, NULL, NULL, cf_error());
            cf_dbinst_close(&db);
            continue;
        }
        char *scratch = cf_asprintf("%s/verify-%s", cf_tmpdir(), name);
        mkdir(scratch, 0700);
        coffer_restore_opts ro = {.struct_size = sizeof ro, .root = scratch, .force = 1,
                                  .create = 1};
        coffer_status st = db.ops->restore(db.inst, cf_dbsource_api(src), &ro);
        if (st != COFFER_OK) {
            cf_hctx_fail(db.hctx, st, "restore into scratch space failed");
            problem(v, name, NULL, NULL, cf_error());
        } else {
            st = db.ops->verify(db.inst, cf_dbsource_api(src), &ro, db_check_cb, (void *)name);
            if (st != COFFER_OK) {
                cf_hctx_fail(db.hctx, st, "database check failed");
                problem(v, name, NULL, NULL, cf_error());
            } else {
                cf_log(CF_LOG_INFO, "component '%s': database checks passed", name);
            }
        }
        cf_rmtree(scratch);
        free(scratch);
        cf_dbsource_free(src);
        cf_dbinst_close(&db);
    }
}

/* Versioned object stores: every recorded version must still exist. */
static void check_object_versions(vctx *v, json_t *header)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(header, "components"), i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *prot = json_string_value(json_object_get(c, "protect"));
        if (!name || !prot || strcmp(prot, "versioning") != 0)
            continue;
        const cf_component *pc = cf_policy_component(v->run->policy, name);
        if (!pc || pc->type != CF_COMP_OBJECT_STORE) {
            problem(v, name, NULL, NULL, "object store no longer declared by the policy");
            continue;
        }
        json_t *checks = json_array();
        cf_objects_restore_opts oo = {0};
        long np = cf_objects_restore(v->run, v->set, pc, &oo, checks);
        if (np < 0) {
            problem(v, name, NULL, NULL, cf_error());
        } else {
            size_t k;
            json_t *ck;
            json_array_foreach(checks, k, ck)
            {
                if (!json_is_true(json_object_get(ck, "ok")))
                    json_array_append_new(
                        v->problems,
                        json_pack("{s:s,s:s,s:s}", "set", v->set, "path", name, "problem",
                                  json_string_value(json_object_get(ck, "detail"))));
            }
        }
        json_decref(checks);
    }
}

static int verify_set(vctx *v, const char *set_id, int read_data)
{
    v->set = set_id;
    cf_mreader *m;
    json_t *h;
    if (cf_manifest_open(v->run->repo, set_id, &m, &h) != 0) {
        problem(v, NULL, NULL, NULL, cf_error());
        return 0;
    }
    cf_entry e;
    int rc;
    uint64_t entries = 0;
    while ((rc = cf_manifest_next(m, &e)) == 1) {
        entries++;
        if (cf_entry_check(&e) != 0)
            problem(v, NULL, NULL, NULL, cf_error());
        if (e.kind == CF_ENT_FILE || e.kind == CF_ENT_STREAM ||
            (e.kind == CF_ENT_OBJECT && e.chunks)) {
            uint64_t sum = 0;
            for (size_t i = 0; i < e.nchunks; i++)
                check_chunk(v, e.path, &e.chunks[i], read_data, &sum);
            if (sum != e.size)
                problem(v, e.path, NULL, NULL, "chunk sizes do not add up to the recorded size");
            cf_progress_add(0, 1);
        }
        cf_entry_clear(&e);
        if (cf_cancel_flag) {
            rc = cf_fail("cancelled");
            break;
        }
    }
    if (rc < 0)
        problem(v, NULL, NULL, NULL, cf_error());
    cf_manifest_close(m);
    if (json_is_true(json_object_get(h, "incomplete")))
        cf_log(CF_LOG_WARN, "set %s is incomplete: %lld path(s) could not be read at backup "
               "time and are not in it (coffer sets --json lists them)",
               set_id, (long long)json_integer_value(
                           json_object_get(json_object_get(h, "totals"), "unreadable")));
    if (json_is_true(json_object_get(h, "inconsistent"))) {
        /* Marked at backup: its database references what it lacks. */
        json_t *refs = json_object_get(h, "references"), *x;
        size_t i;
        json_array_foreach(json_object_get(refs, "paths"), i, x) {
            char *path = cf_json_get_name(x, "path");
            char *msg = cf_asprintf("inconsistent set: the database snapshot references it "
                                    "(check %s) but the set lacks it: %s",
                                    json_string_value(json_object_get(x, "check")),
                                    json_string_value(json_object_get(x, "reason")));
            problem(v, path, NULL, NULL, msg);
            free(msg);
            free(path);
        }
        long long n = json_integer_value(json_object_get(h, "missing_references"));
        if ((long long)json_array_size(json_object_get(refs, "paths")) < n) {
            char *msg = cf_asprintf("inconsistent set: %lld referenced paths missing in all "
                                    "(the first %zu are listed)", n,
                                    json_array_size(json_object_get(refs, "paths")));
            problem(v, NULL, NULL, NULL, msg);
            free(msg);
        }
    }
    if (read_data && rc == 0)
        check_databases(v, h);
    if (rc == 0)
        check_object_versions(v, h);
    json_decref(h);
    cf_log(CF_LOG_INFO, "set %s: %llu entries checked%s", set_id, (unsigned long long)entries,
           read_data ? " (data read)" : "");
    return 0;
}

static void struct_cb(void *ud, const char *object, const char *chunk, const char *msg)
{
    vctx *v = ud;
    json_t *j = json_pack("{s:s,s:s}", "object", object ? object : "", "problem", msg);
    if (chunk)
        json_object_set_new(j, "chunk", json_string(chunk));
    json_array_append_new(v->problems, j);
    cf_log(CF_LOG_ERROR, "%s%s%s: %s", object ? object : "", chunk ? ": chunk " : "",
           chunk ? chunk : "", msg);
}

int cf_verify(cf_run *run, const cf_verify_opts *o, json_t **report)
{
    vctx v = {.run = run, .problems = json_array(), .unchecked = json_array()};
    char **ids = NULL;
    size_t n = 0;
    if (o->set && strcmp(o->set, "all") == 0) {
        if (cf_sets_list(run->repo, &ids, &n) != 0) {
            json_decref(v.problems);
            json_decref(v.unchecked);
            return CF_EXIT_FAILED;
        }
    } else {
        char *id;
        if (cf_resolve_set(run, o->set ? o->set : "latest", &id) != 0) {
            json_decref(v.problems);
            json_decref(v.unchecked);
            return CF_EXIT_FAILED;
        }
        ids = cf_malloc(sizeof(char *));
        ids[0] = id;
        n = 1;
    }
    cf_progress_start("verify", 0, run->no_progress);
    long sp = cf_repo_check_structure(run->repo, struct_cb, &v);
    if (sp < 0)
        struct_cb(&v, "repository", NULL, cf_error());
    for (size_t i = 0; i < n; i++)
        verify_set(&v, ids[i], o->read_data);
    cf_progress_stop();
    size_t np = json_array_size(v.problems);
    *report = json_pack("{s:o,s:o,s:i}", "problems", v.problems, "not_checked", v.unchecked,
                        "sets", (int)n);
    cf_strv_free(ids, n);
    for (size_t i = 0; i < v.npacks; i++)
        free(v.packs_ok[i]);
    free(v.packs_ok);
    cf_buf_free(&v.buf);
    return np ? CF_EXIT_PROBLEMS : CF_EXIT_OK;
}
