/* Native form of a database component: its streams as the engine reads them. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/manifest.h"
#include "engine/native.h"
#include "engine/restore.h"
#include "plugin/host.h"
#include "util/util.h"

static int write_fd(int fd, const char *p, size_t n)
{
    return cf_write_all(fd, p, n) == 0 ? 0 : cf_fail_errno("cannot write the dump");
}

/* The component's driver name from the set header, or -1. */
static int component_driver(cf_run *run, const char *set_id, const char *component,
                            char **driver)
{
    cf_mreader *m;
    json_t *h;
    if (cf_manifest_open(run->repo, set_id, &m, &h) != 0)
        return -1;
    cf_manifest_close(m);
    json_t *c = cf_set_component(h, component);
    const char *type = c ? json_string_value(json_object_get(c, "type")) ?: "" : NULL;
    int rc;
    if (!c) {
        rc = cf_fail("set %s has no component '%s'", set_id, component);
    } else if (strcmp(type, "database") != 0) {
        rc = cf_fail("component '%s' of set %s is a %s component, not a database", component,
                     set_id, *type ? type : "untyped");
    } else {
        *driver = cf_strdup(json_string_value(json_object_get(c, "driver")) ?: "");
        rc = 0;
    }
    json_decref(h);
    return rc;
}

/* MySQL/MariaDB: the driver's own restore into a SQL file (the target
 * file:///PATH its restore understands), made in a private temporary
 * directory and copied to fd: SQL text the stock mysql client loads. */
static int mysql_sql(cf_run *run, const char *set_id, const char *component, int fd)
{
    const cf_component *pc = cf_policy_component(run->policy, component);
    if (!pc)
        return cf_fail("component '%s' of set %s is not in the policy %s; a MySQL dump needs the "
                       "policy's driver options",
                       component, set_id, run->policy->file ? run->policy->file : "");
    const char *tmp = cf_tmpdir();
    if (!tmp)
        return -1;
    char *dir = cf_asprintf("%s/native-XXXXXX", tmp);
    if (!mkdtemp(dir)) {
        int rc = cf_fail_errno("cannot create a directory in %s", tmp);
        free(dir);
        return rc;
    }
    char *file = cf_asprintf("%s/dump.sql", dir);
    char *url = cf_asprintf("file://%s", file);
    cf_dbsource *s = NULL;
    cf_dbinst db = {0};
    int rc = cf_dbsource_load(run->repo, set_id, component, &s);
    if (rc == 0)
        rc = cf_dbinst_open(pc, dir, &db);
    if (rc == 0) {
        coffer_restore_opts ro = {.struct_size = sizeof ro, .root = dir, .target = url,
                                  .force = 0, .create = 1, .final_root = dir};
        coffer_status st = db.ops->restore(db.inst, cf_dbsource_api(s), &ro);
        if (st != COFFER_OK)
            rc = cf_hctx_fail(db.hctx, st, "writing the SQL text failed");
        cf_dbinst_close(&db);
    }
    if (s)
        cf_dbsource_free(s);
    if (rc == 0) {
        int in = open(file, O_RDONLY | O_CLOEXEC);
        if (in < 0) {
            rc = cf_fail_errno("component '%s': %s", component, file);
        } else {
            char *buf = cf_malloc(1 << 20);
            ssize_t n;
            while (rc == 0 && (n = read(in, buf, 1 << 20)) != 0) {
                if (n < 0)
                    rc = cf_fail_errno("component '%s': reading %s", component, file);
                else
                    rc = write_fd(fd, buf, (size_t)n);
            }
            free(buf);
            close(in);
        }
    }
    unlink(file);
    rmdir(dir);
    free(url);
    free(file);
    free(dir);
    return rc;
}

int cf_native_dump(cf_run *run, const char *set_id, const char *component, int fd,
                   char **kind_out)
{
    char *driver = NULL;
    if (kind_out)
        *kind_out = NULL;
    if (component_driver(run, set_id, component, &driver) != 0)
        return -1;
    int pg = strcmp(driver, "postgres") == 0;
    if (strcmp(driver, "mysql") == 0) {
        free(driver);
        int rc = mysql_sql(run, set_id, component, fd);
        if (rc == 0 && kind_out)
            *kind_out = cf_strdup("sql");
        return rc;
    }
    if (!pg && strcmp(driver, "sqlite") != 0) {
        int rc = cf_fail("component '%s' (driver %s): a native dump is available for sqlite "
                         "and postgres databases only; use coffer restore",
                         component, driver);
        free(driver);
        return rc;
    }
    free(driver);
    cf_dbsource *s;
    if (cf_dbsource_load(run->repo, set_id, component, &s) != 0)
        return -1;
    coffer_dump_source *src = cf_dbsource_api(s);
    /* sqlite: the one stream; postgres: the one DB.pgdump stream (pg_dump
     * --format=custom output, what pg_restore reads) */
    size_t n = src->stream_count(src), pick = n, found = 0;
    for (size_t i = 0; i < n; i++) {
        const char *nm = src->stream_name(src, i);
        size_t l = strlen(nm);
        if (!pg || (l > 7 && strcmp(nm + l - 7, ".pgdump") == 0)) {
            pick = i;
            found++;
        }
    }
    if (found != 1) {
        int rc = cf_fail("component '%s' of set %s holds %zu %s; a native dump is written for "
                         "exactly one",
                         component, set_id, found, pg ? "database dumps" : "streams");
        cf_dbsource_free(s);
        return rc;
    }
    const char *name = src->stream_name(src, pick);
    uint64_t want = src->stream_size(src, pick), total = 0;
    void *st = NULL;
    int rc = 0;
    if (src->stream_open(src, name, &st) != COFFER_OK) {
        rc = cf_fail("component '%s': cannot open stream %s: %s", component, name, cf_error());
    } else {
        char *buf = cf_malloc(1 << 20);
        for (;;) {
            size_t got = 0;
            if (src->stream_read(st, buf, 1 << 20, &got) != COFFER_OK) {
                rc = cf_fail("component '%s': cannot read stream %s: %s", component, name,
                             cf_error());
                break;
            }
            if (got == 0)
                break;
            if (write_fd(fd, buf, got) != 0) {
                rc = -1;
                break;
            }
            total += got;
        }
        free(buf);
        src->stream_close(st);
    }
    if (rc == 0 && total != want)
        rc = cf_fail("component '%s': stream %s holds %llu of the %llu bytes the set recorded",
                     component, name, (unsigned long long)total, (unsigned long long)want);
    cf_dbsource_free(s);
    if (rc == 0 && kind_out)
        *kind_out = cf_strdup(pg ? "pgdump" : "sqlite");
    return rc;
}
