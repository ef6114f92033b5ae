/*
 * database "sqlite": one SQLite database file, such as AsterDrive's
 * data/asterdrive.db. This file holds the descriptor, the instance, probe,
 * owned_paths and the helpers the other operations share; the
 * consistent capture is in dump.c, restore.c and verify.c do the rest.
 */
#include "db_sqlite.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void dbsqlite_check_magic(const void *p, uint32_t magic, const char *what)
{
    if (!p || *(const uint32_t *)p != magic) {
        fprintf(stderr, "coffer database sqlite: invalid or already freed %s handle %p\n", what, p);
        abort();
    }
}

coffer_status dbsqlite_err(dbsqlite_instance *in, sqlite3 *db, int rc, const char *what, const char *path)
{
    coffer_status st;
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        st = COFFER_ERR_RETRY;
        break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        st = COFFER_ERR_CORRUPT;
        break;
    case SQLITE_FULL:
        st = COFFER_ERR_NO_SPACE;
        break;
    case SQLITE_IOERR:
        st = COFFER_ERR_IO;
        break;
    case SQLITE_NOMEM:
        st = COFFER_ERR_FATAL;
        break;
    case SQLITE_INTERRUPT:
        st = COFFER_ERR_CANCELLED;
        break;
    default:
        st = COFFER_ERR_FAILED;
        break;
    }
    const char *msg = db && sqlite3_errcode(db) != SQLITE_OK ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    return in->host->error(in->h, st, "%s %s: %s", what, path, msg);
}

/* "file:" URI of a path, for the immutable flag. */
static char *file_uri(const char *path, const char *query)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(path);
    char *u = malloc(5 + 3 * n + strlen(query) + 2);
    if (!u)
        return NULL;
    char *o = u;
    memcpy(o, "file:", 5);
    o += 5;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("/-._~", *p)) {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o++ = '?';
    strcpy(o, query);
    return u;
}

coffer_status dbsqlite_open(dbsqlite_instance *in, const char *path, dbsqlite_open_mode mode, sqlite3 **db)
{
    *db = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return in->host->error(in->h, COFFER_ERR_NOT_FOUND, "database %s does not exist", path);
        return in->host->error(in->h, COFFER_ERR_IO, "cannot access database %s: %s", path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode))
        return in->host->error(in->h, COFFER_ERR_INVALID, "database %s is not a regular file", path);

    sqlite3 *d = NULL;
    int rc;
    if (mode == DBSQLITE_OPEN_IMMUTABLE) {
        char *uri = file_uri(path, "immutable=1");
        if (!uri)
            return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
        rc = sqlite3_open_v2(uri, &d, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
        free(uri);
    } else {
        rc = sqlite3_open_v2(path, &d, SQLITE_OPEN_READONLY, NULL);
    }
    if (rc != SQLITE_OK) {
        coffer_status st = dbsqlite_err(in, d, rc, "cannot open database", path);
        sqlite3_close(d);
        return st;
    }
    sqlite3_busy_timeout(d, in->busy_ms);
    *db = d;
    return COFFER_OK;
}

/* The user's own tables: LIKE is case-insensitive, as SQLite's
 * reservation of sqlite_ names is. */
#define USER_TABLES                                                                                \
    "type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"                                    \
    " AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL TABLE%'"

coffer_status dbsqlite_count_rows(dbsqlite_instance *in, sqlite3 *db, const char *path, dbsqlite_count_fn fn,
                                  void *ud)
{
    static const char list_sql[] =
        "SELECT name FROM sqlite_master WHERE " USER_TABLES " ORDER BY name";
    sqlite3_stmt *list = NULL;
    int rc = sqlite3_prepare_v2(db, list_sql, -1, &list, NULL);
    if (rc != SQLITE_OK)
        return dbsqlite_err(in, db, rc, "cannot list tables of", path);
    coffer_status st = COFFER_OK;
    /* The open list statement holds one read transaction across the
     * counts, so they describe a single state. */
    while (st == COFFER_OK && (rc = sqlite3_step(list)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(list, 0);
        if (!name)
            continue;
        char *sql = sqlite3_mprintf("SELECT count(*) FROM \"%w\"", name);
        sqlite3_stmt *cnt = NULL;
        if (!sql) {
            st = in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
            break;
        }
        rc = sqlite3_prepare_v2(db, sql, -1, &cnt, NULL);
        sqlite3_free(sql);
        if (rc == SQLITE_OK && (rc = sqlite3_step(cnt)) == SQLITE_ROW) {
            st = fn(ud, name, sqlite3_column_int64(cnt, 0));
        } else {
            char what[600];
            snprintf(what, sizeof what, "cannot count rows of table \"%s\" in", name);
            st = dbsqlite_err(in, db, rc, what, path);
        }
        sqlite3_finalize(cnt);
    }
    if (st == COFFER_OK && rc != SQLITE_DONE)
        st = dbsqlite_err(in, db, rc, "cannot list tables of", path);
    sqlite3_finalize(list);
    return st;
}

char *dbsqlite_join(const char *base, const char *rel)
{
    if (rel[0] == '/' || !base || !*base)
        return strdup(rel);
    size_t b = strlen(base), r = strlen(rel);
    while (b > 1 && base[b - 1] == '/')
        b--;
    char *p = malloc(b + r + 2);
    if (p) {
        memcpy(p, base, b);
        p[b] = '/';
        memcpy(p + b + 1, rel, r + 1);
    }
    return p;
}

const char *dbsqlite_basename(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

char *dbsqlite_target(dbsqlite_instance *in, const coffer_restore_opts *opts)
{
    const char *root = opts && opts->root ? opts->root : in->host->policy_root(in->h);
    const char *t = opts && opts->target && *opts->target ? opts->target : in->path_opt;
    return dbsqlite_join(root, t);
}

int dbsqlite_remove_sidecars(const char *path, int *found, char **failed)
{
    static const char *const suffix[] = {"-wal", "-shm", "-journal"};
    size_t n = strlen(path);
    *failed = NULL;
    if (found)
        *found = 0;
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        char *p = malloc(n + strlen(suffix[i]) + 1);
        if (!p)
            return ENOMEM;
        memcpy(p, path, n);
        strcpy(p + n, suffix[i]);
        if (unlink(p) == 0) {
            if (found)
                (*found)++;
        } else if (errno != ENOENT) {
            int err = errno;
            *failed = p;
            return err;
        }
        free(p);
    }
    return 0;
}

/* ---- options and instance ------------------------------------------- */

static const coffer_option dbsqlite_options[] = {
    {"path", COFFER_OPT_PATH, NULL, 1, 0,
     "database file (relative paths resolve against the policy root)"},
    {"busy_timeout", COFFER_OPT_INT, "10000", 0, 0,
     "milliseconds to wait for a lock held by the application before retrying"},
    {NULL, 0, NULL, 0, 0, NULL},
};

static void dbsqlite_instance_free(void *instance)
{
    if (!instance)
        return;
    dbsqlite_instance *in = instance;
    dbsqlite_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    dbsqlite_snapshot_release(in);
    in->magic = 0;
    free(in->path_opt);
    free(in->path);
    for (size_t i = 0; i < 4; i++)
        free(in->owned[i]);
    free(in);
}

static coffer_status dbsqlite_instance_new(const coffer_host *host, coffer_hctx *h, const coffer_config *cfg,
                                           void **instance)
{
    *instance = NULL;
    dbsqlite_instance *in = calloc(1, sizeof *in);
    if (!in)
        return host->error(h, COFFER_ERR_FATAL, "out of memory");
    in->magic = COFFER_MAGIC_INSTANCE;
    in->host = host;
    in->h = h;
    coffer_status st;
    const char *path = host->config_get(cfg, "path");
    if (!path || !*path) {
        st = host->error(h, COFFER_ERR_INVALID, "option 'path' (the database file) is required");
        goto fail;
    }
    size_t n = strlen(path);
    if (path[n - 1] == '/') {
        st = host->error(h, COFFER_ERR_INVALID, "option path: '%s' names a directory, not a database file",
                         path);
        goto fail;
    }
    int64_t busy = host->config_get_int(cfg, "busy_timeout", 10000);
    if (busy < 0 || busy > 3600 * 1000) {
        st = host->error(h, COFFER_ERR_INVALID, "option busy_timeout: %lld ms is out of range (0..3600000)",
                         (long long)busy);
        goto fail;
    }
    in->busy_ms = (int)busy;
    /* owned_paths are relative to the policy root: drop a leading "./". */
    while (path[0] == '.' && path[1] == '/')
        path += 2;
    in->path_opt = strdup(path);
    in->path = dbsqlite_join(host->policy_root ? host->policy_root(h) : NULL, path);
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        size_t len = strlen(path) + strlen(suffix[i]) + 1;
        if ((in->owned[i] = malloc(len)) != NULL)
            snprintf(in->owned[i], len, "%s%s", path, suffix[i]);
    }
    if (!in->path_opt || !in->path || !in->owned[0] || !in->owned[1] || !in->owned[2] || !in->owned[3]) {
        st = host->error(h, COFFER_ERR_FATAL, "out of memory");
        goto fail;
    }
    *instance = in;
    return COFFER_OK;
fail:
    dbsqlite_instance_free(in);
    return st;
}

static uint32_t dbsqlite_capabilities(void *instance)
{
    dbsqlite_check_magic(instance, COFFER_MAGIC_INSTANCE, "instance");
    return COFFER_DBCAP_OWNS_FILES | COFFER_DBCAP_QUERY;
}

/* First column of the first row of sql, as text, into buf ("" if none). */
static int query_text(sqlite3 *db, const char *sql, char *buf, size_t len)
{
    sqlite3_stmt *s = NULL;
    buf[0] = 0;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        snprintf(buf, len, "%s", t ? t : "");
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    return rc;
}

coffer_status dbsqlite_open_restored(dbsqlite_instance *in, const char *path, sqlite3 **db)
{
    /* A freshly restored database has no -wal or -journal: read it as
     * immutable so reading it leaves no -wal/-shm behind. Otherwise it is
     * in use (or was not cleanly closed) and must be read through them. */
    dbsqlite_open_mode mode = DBSQLITE_OPEN_IMMUTABLE;
    size_t tlen = strlen(path);
    char *side = malloc(tlen + 10);
    if (!side)
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    static const char *const suffix[] = {"-wal", "-journal"};
    for (size_t i = 0; i < 2; i++) {
        memcpy(side, path, tlen);
        strcpy(side + tlen, suffix[i]);
        if (access(side, F_OK) == 0)
            mode = DBSQLITE_OPEN_RO;
    }
    free(side);
    return dbsqlite_open(in, path, mode, db);
}

static coffer_status dbsqlite_probe(void *instance, coffer_db_info *info)
{
    dbsqlite_instance *in = instance;
    dbsqlite_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    sqlite3 *db;
    coffer_status st = dbsqlite_open(in, in->path, DBSQLITE_OPEN_RO, &db);
    if (st)
        return st;
    /* Read from the schema alone: a probe runs before every backup, and
     * counting rows would read the whole database once more. */
    char mode[32], psize[32], pcount[32], tables[32];
    int rc = query_text(db, "PRAGMA journal_mode", mode, sizeof mode);
    if (rc == SQLITE_OK)
        rc = query_text(db, "PRAGMA page_size", psize, sizeof psize);
    if (rc == SQLITE_OK)
        rc = query_text(db, "PRAGMA page_count", pcount, sizeof pcount);
    if (rc == SQLITE_OK)
        rc = query_text(db, "SELECT count(*) FROM sqlite_master WHERE " USER_TABLES, tables,
                        sizeof tables);
    if (rc != SQLITE_OK) {
        st = dbsqlite_err(in, db, rc, "cannot read", in->path);
        sqlite3_close(db);
        return st;
    }
    sqlite3_close(db);

    struct stat sb, wal;
    uint64_t size = stat(in->path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    char walpath[4200];
    snprintf(walpath, sizeof walpath, "%s-wal", in->path);
    uint64_t walsize = stat(walpath, &wal) == 0 ? (uint64_t)wal.st_size : 0;
    snprintf(info->server_version, sizeof info->server_version, "SQLite %s", sqlite3_libversion());
    info->size_bytes = size;
    snprintf(info->detail, sizeof info->detail,
             "%s: journal_mode=%s, page_size=%s, pages=%s, tables=%s, wal=%llu bytes", in->path,
             mode, psize, pcount, tables, (unsigned long long)walsize);
    return COFFER_OK;
}

static size_t dbsqlite_owned_paths(void *instance, const char **paths, size_t max)
{
    dbsqlite_instance *in = instance;
    dbsqlite_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    size_t n = 0;
    for (; n < 4 && n < max; n++)
        paths[n] = in->owned[n];
    return n;
}

/* policy check: the options instance_new reads, and a path that names a
 * directory on this machine (a file database cannot live there). */
static coffer_status dbsqlite_validate(const coffer_host *host, coffer_hctx *h, const coffer_config *cfg,
                                       const char **bad_option)
{
    *bad_option = "busy_timeout";
    int64_t busy = host->config_get_int(cfg, "busy_timeout", 10000);
    if (busy < 0 || busy > 3600 * 1000)
        return host->error(h, COFFER_ERR_INVALID, "%lld ms is out of range (0..3600000)", (long long)busy);
    *bad_option = "path";
    const char *path = host->config_get(cfg, "path");
    if (!path || !*path)
        return COFFER_OK; /* the option table makes it required */
    if (path[strlen(path) - 1] == '/')
        return host->error(h, COFFER_ERR_INVALID, "'%s' names a directory, not a database file", path);
    char *full = dbsqlite_join(host->policy_root ? host->policy_root(h) : NULL, path);
    if (!full)
        return host->error(h, COFFER_ERR_FATAL, "out of memory");
    struct stat st;
    coffer_status rc = COFFER_OK;
    if (stat(full, &st) == 0 && S_ISDIR(st.st_mode))
        rc = host->error(h, COFFER_ERR_INVALID, "'%s' is a directory, not a database file", full);
    free(full);
    if (rc == COFFER_OK)
        *bad_option = NULL;
    return rc;
}

/* ---- descriptor -------------------------------------------------------- */

static const coffer_database_ops dbsqlite_ops = {
    .struct_size = sizeof(coffer_database_ops),
    .instance_new = dbsqlite_instance_new,
    .instance_free = dbsqlite_instance_free,
    .capabilities = dbsqlite_capabilities,
    .probe = dbsqlite_probe,
    .dump = dbsqlite_dump,
    .restore = dbsqlite_restore,
    .verify = dbsqlite_verify,
    .owned_paths = dbsqlite_owned_paths,
    .query = dbsqlite_query,
    .query_target = dbsqlite_query_target,
    .validate = dbsqlite_validate,
    .query_snapshot = dbsqlite_query_snapshot,
};

static const coffer_plugin dbsqlite_plugin = {
    COFFER_PLUGIN_HEADER,
    .kind = COFFER_KIND_DATABASE,
    .name = "sqlite",
    .version = "1.0.0",
    .description = "SQLite database file (online backup API snapshot, WAL aware)",
    /* Each operation opens its own connections: instances are independent. */
    .threading = COFFER_THREADS_PER_INSTANCE,
    .options = dbsqlite_options,
    .database = &dbsqlite_ops,
};

COFFER_DRIVER_ENTRY(sqlite)
{
    if (!host || host->abi_major != COFFER_ABI_MAJOR)
        return NULL;
    return &dbsqlite_plugin;
}
