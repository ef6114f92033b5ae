#include "engine/setcheck.h"

#include <string.h>

#include "policy/policy.h"
#include "util/beneath.h"
#include "util/util.h"

int cf_set_id_valid(const char *s)
{
    static const char shape[] = "DDDDDDDDTDDDDDDZ-";
    size_t n = strlen(shape), len = s ? strlen(s) : 0;
    if (len < n + 8 || len > n + 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (shape[i] == 'D' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != shape[i])
            return 0;
    }
    for (size_t i = n; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

int cf_stream_name_valid(const char *s)
{
    /* Drivers name streams like relative paths ("db/schema.sql") and may
     * use them as file names: the same rule as entry paths. */
    return s && strlen(s) <= 1024 && cf_path_safe(s) == 0;
}

static int count_ok(json_t *v)
{
    return !v || (json_is_integer(v) && json_integer_value(v) >= 0);
}

int cf_set_header_check(const char *set_id, json_t *h)
{
    json_t *idv = json_object_get(h, "id");
    const char *id = json_string_value(idv);
    if (idv && (!id || strcmp(id, set_id) != 0))
        return cf_fail("set %s: damaged header: it names set '%s'", set_id, id ? id : "?");
    if (!count_ok(json_object_get(h, "entries")))
        return cf_fail("set %s: damaged header: 'entries' is not a count", set_id);
    json_t *tot = json_object_get(h, "totals");
    const char *k;
    json_t *v;
    json_object_foreach(tot, k, v)
    {
        if (!count_ok(v))
            return cf_fail("set %s: damaged header: totals.%s is not a count", set_id, k);
    }
    json_t *comps = json_object_get(h, "components");
    if (comps && !json_is_array(comps))
        return cf_fail("set %s: damaged header: 'components' is not an array", set_id);
    size_t i;
    json_t *c;
    json_array_foreach(comps, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *type = json_string_value(json_object_get(c, "type"));
        if (!cf_name_valid(name))
            return cf_fail("set %s: damaged header: component #%zu has an invalid name", set_id,
                           i + 1);
        for (size_t j = 0; j < i; j++) {
            const char *o = json_string_value(json_object_get(json_array_get(comps, j), "name"));
            if (o && strcmp(o, name) == 0)
                return cf_fail("set %s: damaged header: component '%s' appears twice", set_id,
                               name);
        }
        if (!type)
            return cf_fail("set %s: damaged header: component '%s' has no type", set_id, name);
        if (!count_ok(json_object_get(c, "files")) || !count_ok(json_object_get(c, "bytes")))
            return cf_fail("set %s: damaged header: component '%s' has a count that is not one",
                           set_id, name);
        if (strcmp(type, "files") == 0) {
            json_t *paths = json_object_get(c, "paths");
            if (!json_is_array(paths) || json_array_size(paths) == 0)
                return cf_fail("set %s: damaged header: files component '%s' has no paths", set_id,
                               name);
            size_t k2;
            json_t *pv;
            json_array_foreach(paths, k2, pv)
            {
                const char *ps = json_string_value(pv);
                if (!ps || (strcmp(ps, ".") != 0 && cf_path_safe(ps) != 0))
                    return cf_fail("set %s: damaged header: component '%s' path %s%s%s is not a "
                                   "plain relative path",
                                   set_id, name, ps ? "'" : "#", ps ? ps : "", ps ? "'" : "");
            }
        } else if (strcmp(type, "database") == 0) {
            const char *drv = json_string_value(json_object_get(c, "driver"));
            if (drv && !cf_name_valid(drv))
                return cf_fail("set %s: damaged header: component '%s' names an invalid driver",
                               set_id, name);
        }
    }
    return 0;
}

int cf_entry_check(const cf_entry *e)
{
    const char *what = cf_ent_kind_name(e->kind);
    if (e->kind == CF_ENT_OTHER || e->kind == CF_ENT_META)
        return 0;
    if (!cf_name_valid(e->component))
        return cf_fail("%s entry %s refused: invalid component name", what,
                       e->path ? e->path : "-");
    if (e->kind == CF_ENT_STREAM) {
        if (!cf_stream_name_valid(e->path))
            return cf_fail("stream '%s' of component '%s' refused: not a plain relative name",
                           e->path ? e->path : "", e->component);
        return 0;
    }
    if (cf_path_safe(e->path) != 0)
        return cf_fail("%s entry '%s' of component '%s' refused: not a plain relative path", what,
                       e->path ? e->path : "", e->component);
    if (e->kind == CF_ENT_HARDLINK && (!e->target || cf_path_safe(e->target) != 0))
        return cf_fail("hardlink entry '%s' refused: target '%s' is not a plain relative path",
                       e->path, e->target ? e->target : "");
    if (e->kind == CF_ENT_SYMLINK && (!e->target || !*e->target))
        return cf_fail("symlink entry '%s' refused: no target", e->path);
    if (e->mtime_ns < 0 || e->mtime_ns > 999999999 || e->ctime_ns < 0 || e->ctime_ns > 999999999)
        return cf_fail("%s entry '%s' refused: nanoseconds out of range", what, e->path);
    return 0;
}
