/*
 * Restore plan (restore --dry-run): what cf_restore would do with the same
 * options, checked the same way up to the first write, and written
 * nowhere. It reads only the set's manifest header.
 */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/restore.h"
#include "util/util.h"

int cf_restore_only_has(const cf_restore_opts *o, const char *name)
{
    for (size_t i = 0; i < o->nonly; i++)
        if (strcmp(o->only[i], name) == 0)
            return 1;
    return 0;
}

const char *cf_restore_only_missing(const cf_restore_opts *o, json_t *set_comps)
{
    for (size_t i = 0; i < o->nonly; i++) {
        int found = 0;
        size_t k;
        json_t *c;
        json_array_foreach(set_comps, k, c)
        {
            const char *n = json_string_value(json_object_get(c, "name"));
            if (n && strcmp(n, o->only[i]) == 0)
                found = 1;
        }
        if (!found)
            return o->only[i];
    }
    return NULL;
}

int cf_restore_plan(cf_run *run, const cf_restore_opts *o, json_t **plan)
{
    cf_policy *p = run->policy;
    char *set_id = NULL;
    if (cf_resolve_set(run, o->set ? o->set : "latest", &set_id) != 0)
        return CF_EXIT_FAILED;
    json_t *h;
    if (cf_manifest_header(run->repo, set_id, &h) != 0) {
        free(set_id);
        return CF_EXIT_FAILED;
    }
    int rc = CF_EXIT_OK;
    json_t *comps = NULL, *out = NULL;
    char *root = o->in_place ? cf_strdup(p->root) : cf_abspath(o->to);
    const char *bad_only = cf_restore_only_missing(o, json_object_get(h, "components"));
    if (bad_only) {
        cf_fail("--only %s: set %s has no component '%s'", bad_only, set_id, bad_only);
        rc = CF_EXIT_USAGE;
        goto done;
    }
    cf_restore_order(p, json_object_get(h, "components"), o, &comps);
    if (cf_restore_check_maps(o, comps) != 0) {
        rc = CF_EXIT_USAGE;
        goto done;
    }
    if (!json_array_size(comps)) {
        cf_fail("set %s has no components", set_id);
        rc = CF_EXIT_FAILED;
        goto done;
    }
    if (!o->in_place && cf_dir_nonempty(root) && !o->force) {
        cf_fail("restore target %s is not empty; use an empty directory or --force "
                "(replaced files are kept aside)",
                root);
        rc = CF_EXIT_FAILED;
        goto done;
    }
    out = json_pack("{s:s,s:s,s:s,s:b,s:[],s:[],s:[]}", "set", set_id, "time",
                    json_string_value(json_object_get(h, "time")) ?: "", "root", root, "in_place",
                    o->in_place, "components", "commands", "validate");
    if (o->in_place && p->mode == CF_MODE_MAINTENANCE)
        json_array_append_new(json_object_get(out, "commands"),
                              json_pack("{s:s,s:s}", "stop", p->stop_cmd, "start", p->start_cmd));
    size_t k;
    json_t *c;
    json_array_foreach(comps, k, c)
    {
        const char *name = json_string_value(json_object_get(c, "name")) ?: "";
        const char *type = json_string_value(json_object_get(c, "type")) ?: "";
        const char *map = cf_restore_map(o, name);
        const cf_component *pc = cf_policy_component(p, name);
        char *dest = NULL;
        if (!pc && !cf_restore_only_has(o, name)) {
            cf_fail("set %s has component '%s', which policy '%s' does not declare; restore "
                    "it by name with --only %s if it is wanted",
                    set_id, name, p->name, name);
            rc = CF_EXIT_FAILED;
            break;
        }
        if (strcmp(type, "files") == 0) {
            dest = map ? cf_abspath(map) : cf_strdup(root);
            if (map && !o->force && cf_dir_nonempty(dest)) {
                cf_fail("--map %s: %s is not empty; use --force", name, dest);
                free(dest);
                rc = CF_EXIT_FAILED;
                break;
            }
        } else if (strcmp(type, "database") == 0) {
            if (!pc || pc->type != CF_COMP_DATABASE) {
                cf_fail("set %s: component '%s' is a database, but the policy no longer "
                        "declares it; its driver options are unknown",
                        set_id, name);
                rc = CF_EXIT_FAILED;
                break;
            }
            dest = map ? cf_redact_url(map) : cf_asprintf("%s database under %s", pc->driver, root);
        } else if (strcmp(type, "object_store") == 0) {
            if (!pc || pc->type != CF_COMP_OBJECT_STORE) {
                cf_fail("set %s: component '%s' is an object store the policy no longer "
                        "declares; its bucket settings are unknown",
                        set_id, name);
                rc = CF_EXIT_FAILED;
                break;
            }
            if (pc->protect == CF_PROTECT_VERSIONING || o->in_place)
                dest = cf_strdup("bucket");
            else
                dest = cf_asprintf("%s/%s", map ? map : root, name);
        } else {
            cf_fail("set %s: component '%s' has type '%s', which this build cannot restore", set_id,
                    name, type);
            rc = CF_EXIT_FAILED;
            break;
        }
        json_t *e = json_pack("{s:s,s:s,s:s}", "name", name, "type", type, "destination", dest);
        if (json_object_get(c, "driver"))
            json_object_set(e, "driver", json_object_get(c, "driver"));
        if (json_object_get(c, "paths"))
            json_object_set(e, "paths", json_object_get(c, "paths"));
        json_object_set_new(e, "files",
                            json_integer(json_integer_value(json_object_get(c, "files"))));
        json_object_set_new(e, "bytes",
                            json_integer(json_integer_value(json_object_get(c, "bytes"))));
        json_array_append_new(json_object_get(out, "components"), e);
        free(dest);
    }
    json_object_set_new(out, "policy_checks", json_array());
    if (rc == CF_EXIT_OK && !o->nonly && !o->no_checks)
        for (size_t i = 0; i < p->nchecks; i++)
            json_array_append_new(json_object_get(out, "policy_checks"),
                                  json_pack("{s:s,s:s}", "name", p->checks[i].name, "type",
                                            cf_check_type_name(p->checks[i].type)));
    if (rc == CF_EXIT_OK && !o->no_validate && !o->nonly)
        for (size_t i = 0; i < p->nvalidate; i++)
            json_array_append_new(
                json_object_get(out, "validate"),
                json_pack("{s:s,s:s}", "name", p->validate[i].name, "run", p->validate[i].run));
done:
    if (rc == CF_EXIT_OK) {
        *plan = out;
    } else if (out) {
        json_decref(out);
    }
    if (comps)
        json_decref(comps);
    json_decref(h);
    free(root);
    free(set_id);
    return rc;
}
