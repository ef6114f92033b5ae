#include "plugin/registry.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/host.h"
#include "util/util.h"

/* Built-in drivers: the same sources as the loadable ones, compiled with
 * COFFER_BUILTIN, so the embedded default needs no plugin directory. */
extern const coffer_plugin *coffer_builtin_local(const coffer_host *host);
extern const coffer_plugin *coffer_builtin_sqlite(const coffer_host *host);

static coffer_plugin_init_fn builtins[] = {coffer_builtin_local, coffer_builtin_sqlite};

static cf_driver **drivers;
static size_t ndrivers;
static cf_load_failure *failures;
static size_t nfailures;

const char *cf_kind_name(coffer_driver_kind kind)
{
    switch (kind) {
    case COFFER_KIND_STORAGE: return "storage";
    case COFFER_KIND_DATABASE: return "database";
    }
    return "unknown";
}

static void add_failure(const char *path, const char *reason)
{
    failures = cf_realloc(failures, (nfailures + 1) * sizeof *failures);
    failures[nfailures].path = cf_strdup(path);
    failures[nfailures].reason = cf_strdup(reason);
    nfailures++;
}

/* Copy a table the driver filled, honouring its struct_size: members the
 * driver does not know about stay zero (NULL). */
static void copy_sized(void *dst, size_t dst_size, const void *src)
{
    uint32_t n;
    memcpy(&n, src, sizeof n);
    memset(dst, 0, dst_size);
    memcpy(dst, src, n < dst_size ? n : dst_size);
}

static int validate(const coffer_plugin *p, cf_driver *d, const char *origin)
{
    if (!p)
        return cf_fail("%s: entry point returned no descriptor", origin);
    if (p->abi_major != COFFER_ABI_MAJOR)
        return cf_fail("%s: driver built for coffer ABI %u.%u, this coffer provides ABI %u.%u; "
                       "rebuild the driver against this SDK",
                       origin, p->abi_major, p->abi_minor, COFFER_ABI_MAJOR, COFFER_ABI_MINOR);
    if (p->struct_size < offsetof(coffer_plugin, teardown))
        return cf_fail("%s: descriptor too small (%u bytes)", origin, p->struct_size);
    copy_sized(&d->desc, sizeof d->desc, p);
    if (!d->desc.name || !*d->desc.name)
        return cf_fail("%s: driver has no name", origin);
    if (d->desc.kind == COFFER_KIND_STORAGE) {
        if (!d->desc.storage)
            return cf_fail("%s: storage driver '%s' has no storage operations", origin, d->desc.name);
        copy_sized(&d->storage, sizeof d->storage, d->desc.storage);
        const coffer_storage_ops *o = &d->storage;
        if (!o->instance_new || !o->instance_free || !o->writer_open || !o->writer_write ||
            !o->writer_commit || !o->writer_abort || !o->reader_open || !o->reader_read ||
            !o->reader_close || !o->stat || !o->list || !o->remove)
            return cf_fail("%s: storage driver '%s' lacks a mandatory operation", origin,
                           d->desc.name);
        d->desc.storage = &d->storage;
        d->desc.database = NULL;
    } else if (d->desc.kind == COFFER_KIND_DATABASE) {
        if (!d->desc.database)
            return cf_fail("%s: database driver '%s' has no database operations", origin,
                           d->desc.name);
        copy_sized(&d->database, sizeof d->database, d->desc.database);
        const coffer_database_ops *o = &d->database;
        if (!o->instance_new || !o->instance_free || !o->dump || !o->restore)
            return cf_fail("%s: database driver '%s' lacks a mandatory operation", origin,
                           d->desc.name);
        d->desc.database = &d->database;
        d->desc.storage = NULL;
    } else {
        return cf_fail("%s: driver '%s' has unknown kind %d", origin, d->desc.name,
                       (int)d->desc.kind);
    }
    return 0;
}

static cf_driver *find(coffer_driver_kind kind, const char *name, size_t *idx)
{
    for (size_t i = 0; i < ndrivers; i++)
        if (drivers[i]->desc.kind == kind && strcmp(drivers[i]->desc.name, name) == 0) {
            if (idx)
                *idx = i;
            return drivers[i];
        }
    return NULL;
}

static void free_driver(cf_driver *d)
{
    if (d->desc.teardown)
        d->desc.teardown();
    if (d->dl)
        dlclose(d->dl);
    free(d->path);
    free(d);
}

/* Register d; a loadable driver replaces a built-in of the same name,
 * otherwise the first one wins. */
static void add(cf_driver *d)
{
    size_t i;
    cf_driver *old = find(d->desc.kind, d->desc.name, &i);
    if (old) {
        if (!old->dl && d->dl) {
            cf_log(CF_LOG_DEBUG, "%s replaces the built-in %s driver '%s'", d->path,
                   cf_kind_name(d->desc.kind), d->desc.name);
            drivers[i] = d;
            free_driver(old);
            return;
        }
        cf_log(CF_LOG_DEBUG, "%s: ignored, %s driver '%s' already loaded", d->path ? d->path : "built-in",
               cf_kind_name(d->desc.kind), d->desc.name);
        free_driver(d);
        return;
    }
    drivers = cf_realloc(drivers, (ndrivers + 1) * sizeof *drivers);
    drivers[ndrivers++] = d;
}

int cf_registry_load_file(const char *path)
{
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        const char *e = dlerror();
        cf_fail("%s: cannot load: %s (a library the driver needs may be missing: check with ldd)",
                path, e ? e : "unknown error");
        add_failure(path, cf_error());
        return -1;
    }
    coffer_plugin_init_fn init;
    *(void **)&init = dlsym(dl, COFFER_PLUGIN_ENTRY);
    if (!init) {
        cf_fail("%s: not a coffer driver (no %s symbol)", path, COFFER_PLUGIN_ENTRY);
        add_failure(path, cf_error());
        dlclose(dl);
        return -1;
    }
    cf_driver *d = cf_calloc(1, sizeof *d);
    if (validate(init(cf_host_table()), d, path) != 0) {
        add_failure(path, cf_error());
        free(d);
        dlclose(dl);
        return -1;
    }
    d->dl = dl;
    d->path = cf_strdup(path);
    add(d);
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void load_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || !ends_with(e->d_name, ".so"))
            continue;
        names = cf_realloc(names, (n + 1) * sizeof *names);
        names[n++] = cf_asprintf("%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (n) /* names is NULL when the directory holds no driver */
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (cf_registry_load_file(names[i]) != 0)
            cf_log(CF_LOG_DEBUG, "%s", cf_error());
        free(names[i]);
    }
    free(names);
}

void cf_registry_load(const char *const *dirs, size_t ndirs)
{
    for (size_t i = 0; i < CF_ARRAY_LEN(builtins); i++) {
        cf_driver *d = cf_calloc(1, sizeof *d);
        if (validate(builtins[i](cf_host_table()), d, "built-in driver") != 0) {
            add_failure("built-in", cf_error());
            free(d);
            continue;
        }
        add(d);
    }
    for (size_t i = 0; i < ndirs; i++)
        load_dir(dirs[i]);
}

void cf_registry_unload(void)
{
    for (size_t i = 0; i < ndrivers; i++)
        free_driver(drivers[i]);
    free(drivers);
    drivers = NULL;
    ndrivers = 0;
    for (size_t i = 0; i < nfailures; i++) {
        free(failures[i].path);
        free(failures[i].reason);
    }
    free(failures);
    failures = NULL;
    nfailures = 0;
}

size_t cf_registry_count(void)
{
    return ndrivers;
}

const cf_driver *cf_registry_at(size_t i)
{
    return i < ndrivers ? drivers[i] : NULL;
}

size_t cf_registry_failure_count(void)
{
    return nfailures;
}

const cf_load_failure *cf_registry_failure_at(size_t i)
{
    return i < nfailures ? &failures[i] : NULL;
}

const cf_driver *cf_registry_find(coffer_driver_kind kind, const char *name)
{
    cf_driver *d = find(kind, name, NULL);
    if (d)
        return d;
    cf_buf msg = {0};
    char *head = cf_asprintf("no %s driver named '%s'; available:", cf_kind_name(kind), name);
    cf_buf_append(&msg, head, strlen(head));
    free(head);
    int any = 0;
    for (size_t i = 0; i < ndrivers; i++) {
        if (drivers[i]->desc.kind != kind)
            continue;
        cf_buf_append(&msg, any ? ", " : " ", any ? 2 : 1);
        cf_buf_append(&msg, drivers[i]->desc.name, strlen(drivers[i]->desc.name));
        any = 1;
    }
    if (!any)
        cf_buf_append(&msg, " none", 5);
    for (size_t i = 0; i < nfailures; i++) {
        cf_buf_append(&msg, "; not loaded: ", 14);
        cf_buf_append(&msg, failures[i].reason, strlen(failures[i].reason));
    }
    cf_buf_append(&msg, "", 1);
    cf_fail("%s", (char *)msg.data);
    cf_buf_free(&msg);
    return NULL;
}

const cf_driver *cf_registry_find_any(const char *name)
{
    for (size_t i = 0; i < ndrivers; i++)
        if (strcmp(drivers[i]->desc.name, name) == 0)
            return drivers[i];
    cf_fail("no driver named '%s' (see `coffer plugins`)", name);
    return NULL;
}

const coffer_option *cf_registry_options(void *ud, coffer_driver_kind kind, const char *name)
{
    static const coffer_option none[] = {{0}};
    (void)ud;
    const cf_driver *d = cf_registry_find(kind, name);
    if (!d)
        return NULL;
    return d->desc.options ? d->desc.options : none;
}

int cf_registry_db_caps_check(const char *driver, const coffer_database_ops *ops, uint32_t caps)
{
    int bit = (caps & COFFER_DBCAP_OWNS_FILES) != 0, fn = ops->owned_paths != NULL;
    if (bit == fn)
        return 0;
    return cf_fail("database driver '%s' %s COFFER_DBCAP_OWNS_FILES but %s owned_paths; "
                   "a file database sets both, a server database neither",
                   driver, bit ? "declares" : "does not declare", fn ? "has" : "lacks");
}

int cf_registry_unsupported(const cf_driver *d, const char *op)
{
    return cf_fail("%s is not supported by %s driver '%s' (ABI %u.%u)", op,
                   cf_kind_name(d->desc.kind), d->desc.name, d->desc.abi_major,
                   d->desc.abi_minor);
}
