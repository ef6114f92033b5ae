/*
 * database "mysql": MySQL and MariaDB servers through the client library
 * (MariaDB Connector/C, the libmysqlclient API). This file holds the
 * descriptor, the option table, the instance, probe and query; the dump
 * is in dump.c, restore.c and verify.c do the rest.
 */
#include "db_mysql.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const coffer_option dbmysql_options[] = {
    {"url", COFFER_OPT_STRING, NULL, 1, 0,
     "server and database: mysql://user@host:3306/database, or "
     "mysql://user@localhost/database?socket=/run/mysqld/mysqld.sock (no password in it)"},
    {"password", COFFER_OPT_STRING, NULL, 0, 1, "never in the policy: use password_env or password_file"},
    {"password_env", COFFER_OPT_STRING, NULL, 0, 0, "environment variable holding the password (e.g. MYSQL_PWD)"},
    {"password_file", COFFER_OPT_PATH, NULL, 0, 0, "file whose first line is the password"},
    {"databases", COFFER_OPT_LIST, NULL, 0, 0,
     "databases to dump (default: the URL's database; with none in the URL, every non-system database)"},
    {"jobs", COFFER_OPT_INT, "1", 0, 0,
     "connections dumping tables in parallel; more than 1 takes a brief FLUSH TABLES WITH READ LOCK "
     "so that all of them share one snapshot (needs the RELOAD privilege)"},
    {"ssl_mode", COFFER_OPT_STRING, "preferred", 0, 0,
     "disabled, preferred (TLS when the server offers it), required, verify_ca, verify_identity"},
    {"ssl_ca", COFFER_OPT_PATH, NULL, 0, 0, "CA certificate file (PEM) to verify the server with"},
    {"ssl_capath", COFFER_OPT_PATH, NULL, 0, 0, "directory of CA certificates"},
    {"ssl_cert", COFFER_OPT_PATH, NULL, 0, 0, "client certificate (PEM)"},
    {"ssl_key", COFFER_OPT_PATH, NULL, 0, 0, "client private key (PEM)"},
    {"ssl_cipher", COFFER_OPT_STRING, NULL, 0, 0, "permitted ciphers (OpenSSL list)"},
    {"timeout", COFFER_OPT_INT, "600", 0, 0, "seconds a network read or write may stall before giving up"},
    {"lock_wait_timeout", COFFER_OPT_INT, "60", 0, 0,
     "seconds to wait for FLUSH TABLES WITH READ LOCK (long-running statements delay it)"},
    {NULL, 0, NULL, 0, 0, NULL},
};

static char *resolve_path(const coffer_host *host, coffer_hctx *h, const char *p)
{
    if (!p || !*p)
        return NULL;
    const char *root = host->policy_root ? host->policy_root(h) : NULL;
    if (p[0] == '/' || !root || !*root)
        return strdup(p);
    return dbmysql_printf("%s/%s", root, p);
}

static void dbmysql_instance_free(void *instance)
{
    if (!instance)
        return;
    dbmysql_instance *in = instance;
    dbmysql_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    dbmysql_snapshot_release(in);
    in->magic = 0;
    free(in->url_text);
    dbmysql_url_free(&in->url);
    dbmysql_strv_free(in->databases, in->ndatabases);
    free(in->ssl_ca);
    free(in->ssl_capath);
    free(in->ssl_cert);
    free(in->ssl_key);
    free(in->ssl_cipher);
    free(in);
}

void dbmysql_strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static coffer_status dbmysql_instance_new(const coffer_host *host, coffer_hctx *h, const coffer_config *cfg,
                                          void **instance)
{
    *instance = NULL;
    dbmysql_instance *in = calloc(1, sizeof *in);
    if (!in)
        return host->error(h, COFFER_ERR_FATAL, "out of memory");
    in->magic = COFFER_MAGIC_INSTANCE;
    in->host = host;
    in->h = h;
    in->cfg = cfg;
    coffer_status st;
    char err[300];
    const char *url = host->config_get(cfg, "url");
    if (!url || !*url) {
        st = host->error(h, COFFER_ERR_INVALID, "option 'url' (mysql://user@host:3306/database) is required");
        goto fail;
    }
    if (dbmysql_url_parse(url, &in->url, err, sizeof err) != 0) {
        st = host->error(h, COFFER_ERR_INVALID, "option url: %s", err);
        goto fail;
    }
    if (in->url.password_env || in->url.password_file) {
        st = host->error(h, COFFER_ERR_INVALID,
                         "option url: give password_env/password_file as options of the component, not in its URL");
        goto fail;
    }
    in->url_text = strdup(url);
    size_t nd = host->config_list_len(cfg, "databases");
    if (nd) {
        in->databases = calloc(nd, sizeof *in->databases);
        if (!in->databases) {
            st = host->error(h, COFFER_ERR_FATAL, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < nd; i++) {
            const char *d = host->config_list_item(cfg, "databases", i);
            if (!d || !*d) {
                st = host->error(h, COFFER_ERR_INVALID, "option databases: item %zu is empty", i + 1);
                goto fail;
            }
            for (size_t k = 0; k < in->ndatabases; k++)
                if (strcmp(in->databases[k], d) == 0) {
                    st = host->error(h, COFFER_ERR_INVALID, "option databases: '%s' is listed twice", d);
                    goto fail;
                }
            in->databases[in->ndatabases++] = strdup(d);
        }
    }
    int64_t jobs = host->config_get_int(cfg, "jobs", 1);
    if (jobs < 1 || jobs > DBMYSQL_MAX_JOBS) {
        st = host->error(h, COFFER_ERR_INVALID, "option jobs: %lld is out of range (1..%d)", (long long)jobs,
                         DBMYSQL_MAX_JOBS);
        goto fail;
    }
    in->jobs = (int)jobs;
    int64_t t = host->config_get_int(cfg, "timeout", 600);
    if (t < 1 || t > 86400 * 7) {
        st = host->error(h, COFFER_ERR_INVALID, "option timeout: %lld s is out of range (1..604800)", (long long)t);
        goto fail;
    }
    in->timeout = (int)t;
    t = host->config_get_int(cfg, "lock_wait_timeout", 60);
    if (t < 1 || t > 86400) {
        st = host->error(h, COFFER_ERR_INVALID, "option lock_wait_timeout: %lld s is out of range (1..86400)",
                         (long long)t);
        goto fail;
    }
    in->lock_wait_timeout = (int)t;
    const char *mode = host->config_get(cfg, "ssl_mode");
    static const char *const modes[] = {"disabled", "preferred", "required", "verify_ca", "verify_identity"};
    in->tls = DBMYSQL_TLS_PREFERRED;
    if (mode && *mode) {
        int found = 0;
        for (int i = 0; i < 5; i++)
            if (strcasecmp(mode, modes[i]) == 0) {
                in->tls = (dbmysql_tls_mode)i;
                found = 1;
            }
        if (!found) {
            st = host->error(h, COFFER_ERR_INVALID,
                             "option ssl_mode: '%s' is not one of disabled, preferred, required, verify_ca, "
                             "verify_identity",
                             mode);
            goto fail;
        }
    }
    in->ssl_ca = resolve_path(host, h, host->config_get(cfg, "ssl_ca"));
    in->ssl_capath = resolve_path(host, h, host->config_get(cfg, "ssl_capath"));
    in->ssl_cert = resolve_path(host, h, host->config_get(cfg, "ssl_cert"));
    in->ssl_key = resolve_path(host, h, host->config_get(cfg, "ssl_key"));
    const char *cipher = host->config_get(cfg, "ssl_cipher");
    in->ssl_cipher = cipher && *cipher ? strdup(cipher) : NULL;
    if (in->tls >= DBMYSQL_TLS_VERIFY_CA && !in->ssl_ca && !in->ssl_capath)
        host->log(h, COFFER_LOG_INFO, "ssl_mode %s without ssl_ca/ssl_capath: the system's CA store is used",
                  modes[in->tls]);
    if (!host->config_get(cfg, "password_env") && !host->config_get(cfg, "password_file"))
        host->log(h, COFFER_LOG_DEBUG, "no password_env/password_file: connecting without a password");
    /* Connector/C initialises itself on the first mysql_init, which is not
     * thread-safe; do it here, before any dump thread exists. */
    if (mysql_library_init(0, NULL, NULL) != 0) {
        st = host->error(h, COFFER_ERR_FATAL, "cannot initialise the MySQL client library");
        goto fail;
    }
    *instance = in;
    return COFFER_OK;
fail:
    dbmysql_instance_free(in);
    return st;
}

static uint32_t dbmysql_capabilities(void *instance)
{
    dbmysql_instance *in = instance;
    dbmysql_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    /* Sink streams are written from the dump's writer threads (and, with
     * jobs > 1, several are open at once). */
    return COFFER_DBCAP_QUERY | COFFER_DBCAP_PARALLEL_DUMP;
}

static int is_system_db(const char *d)
{
    return strcasecmp(d, "information_schema") == 0 || strcasecmp(d, "performance_schema") == 0 ||
           strcasecmp(d, "mysql") == 0 || strcasecmp(d, "sys") == 0;
}

coffer_status dbmysql_list_databases(dbmysql_instance *in, MYSQL *m, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    char **v = NULL;
    size_t k = 0;
    if (in->ndatabases || in->url.database) {
        size_t want = in->ndatabases ? in->ndatabases : 1;
        v = calloc(want, sizeof *v);
        if (!v)
            return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
        for (size_t i = 0; i < want; i++) {
            const char *d = in->ndatabases ? in->databases[i] : in->url.database;
            /* The database must exist: a typo must not produce an empty set. */
            MYSQL_RES *r = NULL;
            char *l = dbmysql_sql_string(m, d);
            char *sql = dbmysql_printf("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", l);
            free(l);
            int q = mysql_query(m, sql);
            free(sql);
            if (q != 0 || !(r = mysql_store_result(m))) {
                dbmysql_strv_free(v, k);
                return dbmysql_fail(in, m, "cannot list databases");
            }
            int found = mysql_num_rows(r) > 0;
            mysql_free_result(r);
            if (!found) {
                dbmysql_strv_free(v, k);
                return in->host->error(in->h, COFFER_ERR_NOT_FOUND, "database '%s' does not exist on the server", d);
            }
            v[k++] = strdup(d);
        }
        *out = v;
        *n = k;
        return COFFER_OK;
    }
    if (mysql_query(m, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME") != 0)
        return dbmysql_fail(in, m, "cannot list databases");
    MYSQL_RES *r = mysql_store_result(m);
    if (!r)
        return dbmysql_fail(in, m, "cannot list databases");
    v = calloc(mysql_num_rows(r) + 1, sizeof *v);
    MYSQL_ROW row;
    while (v && (row = mysql_fetch_row(r)) != NULL)
        if (row[0] && !is_system_db(row[0]))
            v[k++] = strdup(row[0]);
    mysql_free_result(r);
    if (!v)
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    if (k == 0) {
        free(v);
        return in->host->error(in->h, COFFER_ERR_NOT_FOUND, "the server has no database to dump (besides system ones)");
    }
    *out = v;
    *n = k;
    return COFFER_OK;
}

static coffer_status dbmysql_probe(void *instance, coffer_db_info *info)
{
    dbmysql_instance *in = instance;
    dbmysql_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    MYSQL *m;
    coffer_status st = dbmysql_connect(in, &in->url, NULL, &m);
    if (st)
        return st;
    char **dbs = NULL;
    size_t nd = 0;
    if ((st = dbmysql_list_databases(in, m, &dbs, &nd)) != COFFER_OK) {
        mysql_close(m);
        return st;
    }
    uint64_t size = 0, tables = 0;
    for (size_t i = 0; i < nd; i++) {
        char *l = dbmysql_sql_string(m, dbs[i]);
        char *sql = dbmysql_printf("SELECT COUNT(*), COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0)"
                                   " FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
                                   l);
        free(l);
        MYSQL_RES *r = NULL;
        if (mysql_query(m, sql) == 0 && (r = mysql_store_result(m)) != NULL) {
            MYSQL_ROW row = mysql_fetch_row(r);
            if (row && row[0] && row[1]) {
                tables += strtoull(row[0], NULL, 10);
                size += strtoull(row[1], NULL, 10);
            }
            mysql_free_result(r);
        }
        free(sql);
    }
    char where[600];
    dbmysql_url_describe(&in->url, where, sizeof where);
    snprintf(info->server_version, sizeof info->server_version, "%s", mysql_get_server_info(m));
    info->size_bytes = size;
    snprintf(info->detail, sizeof info->detail, "%s: %zu database%s, %" PRIu64 " tables, %s", where, nd,
             nd == 1 ? "" : "s", tables, mysql_get_ssl_cipher(m) ? "TLS" : "no TLS");
    dbmysql_strv_free(dbs, nd);
    mysql_close(m);
    return COFFER_OK;
}

static const coffer_database_ops dbmysql_ops = {
    .struct_size = sizeof(coffer_database_ops),
    .instance_new = dbmysql_instance_new,
    .instance_free = dbmysql_instance_free,
    .capabilities = dbmysql_capabilities,
    .probe = dbmysql_probe,
    .dump = dbmysql_dump,
    .restore = dbmysql_restore,
    .verify = dbmysql_verify,
    .owned_paths = NULL, /* a server owns no file under the policy root */
    .query = dbmysql_query,
    .query_target = dbmysql_query_target,
    .scratch_create = dbmysql_scratch_create,
    .scratch_drop = dbmysql_scratch_drop,
    .query_snapshot = dbmysql_query_snapshot,
};

static void dbmysql_teardown(void)
{
    mysql_library_end();
}

static const coffer_plugin dbmysql_plugin = {
    COFFER_PLUGIN_HEADER,
    .kind = COFFER_KIND_DATABASE,
    .name = "mysql",
    .version = "1.0.0",
    .description = "MySQL/MariaDB server (consistent snapshot, per-table SQL streams, libmysqlclient API)",
    /* Instances are independent; a dump with jobs > 1 runs its own threads,
     * each with its own connection and sink stream. */
    .threading = COFFER_THREADS_PER_INSTANCE,
    .options = dbmysql_options,
    .database = &dbmysql_ops,
    .teardown = dbmysql_teardown,
};

COFFER_DRIVER_ENTRY(mysql)
{
    if (!host || host->abi_major != COFFER_ABI_MAJOR)
        return NULL;
    return &dbmysql_plugin;
}
