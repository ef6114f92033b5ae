/*
 * database "postgres": one PostgreSQL server's database(s), such as
 * AsterDrive's `asterdrive`. This file holds the descriptor, the options,
 * the instance, probe and query; dump.c takes the consistent capture
 * (exported snapshot shared with pg_dump), restore.c and verify.c do the
 * rest. A loadable driver only: it links libpq and runs pg_dump.
 */
#include "db_postgres.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pgd_check_magic(const void *p, uint32_t magic, const char *what)
{
    if (!p || *(const uint32_t *)p != magic) {
        fprintf(stderr, "coffer database postgres: invalid or already freed %s handle %p\n", what,
                p);
        abort();
    }
}

coffer_status pgd_oom(pgd_instance *in)
{
    return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
}

/* ---- options and instance ------------------------------------------- */

static const coffer_option pgd_options[] = {
    {"url", COFFER_OPT_STRING, NULL, 1, 0,
     "libpq connection URI, e.g. postgres://asterdrive@127.0.0.1:5432/asterdrive (or a key=value "
     "string); "
     "a password in it is used but never shown: prefer password_env or password_file"},
    {"password", COFFER_OPT_STRING, NULL, 0, 1,
     "never written in a policy: give password_env or password_file"},
    {"password_env", COFFER_OPT_STRING, NULL, 0, 0,
     "environment variable holding the password (e.g. PGPASSWORD)"},
    {"password_file", COFFER_OPT_PATH, NULL, 0, 0, "file whose first line is the password"},
    {"databases", COFFER_OPT_LIST, NULL, 0, 0,
     "databases to capture, one stream each (default: the URL's)"},
    {"jobs", COFFER_OPT_INT, "1", 0, 0, "databases dumped at the same time (1..16)"},
    {"sslmode", COFFER_OPT_STRING, NULL, 0, 0,
     "disable, allow, prefer, require, verify-ca or verify-full (default: the URL's, else libpq's "
     "prefer)"},
    {"pg_bin_dir", COFFER_OPT_PATH, NULL, 0, 0,
     "directory of pg_dump and pg_restore (default: PATH); e.g. /usr/lib/postgresql/15/bin"},
    {"maintenance_db", COFFER_OPT_STRING, "postgres", 0, 0,
     "database to connect to when creating a restore target"},
    {"restore_owner", COFFER_OPT_BOOL, "true", 0, 0,
     "restore object owners and privileges (false: objects belong to the restoring user)"},
    {"analyze", COFFER_OPT_BOOL, "true", 0, 0,
     "run ANALYZE after a restore (pg_dump carries no statistics)"},
    {NULL, 0, NULL, 0, 0, NULL},
};

static void wipe(char *s)
{
    if (s) {
        volatile char *p = s;
        while (*p)
            *p++ = 0;
    }
    free(s);
}

void pgd_strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void pgd_instance_free(void *instance)
{
    if (!instance)
        return;
    pgd_instance *in = instance;
    pgd_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    pgd_snapshot_release(in);
    in->magic = 0;
    pgd_params_free(&in->params);
    wipe(in->password);
    free(in->display);
    pgd_strv_free(in->dbs, in->ndbs);
    free(in->bin_dir);
    free(in->maintenance_db);
    free(in);
}

static int valid_sslmode(const char *m)
{
    static const char *const modes[] = {"disable", "allow",     "prefer",
                                        "require", "verify-ca", "verify-full"};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        if (strcmp(m, modes[i]) == 0)
            return 1;
    return 0;
}

static char *join(const char *base, const char *rel)
{
    if (rel[0] == '/' || !base || !*base)
        return strdup(rel);
    size_t len = strlen(base) + strlen(rel) + 2;
    char *p = malloc(len);
    if (p)
        snprintf(p, len, "%s/%s", base, rel);
    return p;
}

static coffer_status pgd_instance_new(const coffer_host *host, coffer_hctx *h,
                                      const coffer_config *cfg, void **instance)
{
    *instance = NULL;
    pgd_instance *in = calloc(1, sizeof *in);
    if (!in)
        return host->error(h, COFFER_ERR_FATAL, "out of memory");
    in->magic = COFFER_MAGIC_INSTANCE;
    in->host = host;
    in->h = h;
    coffer_status st;
    const char *url = host->config_get(cfg, "url");
    if (!url || !*url) {
        st = host->error(h, COFFER_ERR_INVALID,
                         "option 'url' (e.g. postgres://user@host:5432/dbname) is required");
        goto fail;
    }
    if (host->config_get(cfg, "password")) {
        st = host->error(
            h, COFFER_ERR_INVALID,
            "option password: do not write the password in the policy; use password_env or "
            "password_file");
        goto fail;
    }
    char *url_password = NULL;
    int dropped = 0;
    if ((st = pgd_params_parse(in, "option url", url, &in->params, &url_password, &dropped)) !=
        COFFER_OK)
        goto fail;
    if (dropped)
        host->log(h, COFFER_LOG_WARN,
                  "option url: sslpassword is not passed to pg_dump/pg_restore; ignored");
    /* password_env / password_file win over a password in the URL. */
    char *secret = host->secret_get(h, cfg, "password");
    if (secret) {
        wipe(url_password);
        in->password = strdup(secret);
        host->secret_free(secret);
        if (!in->password) {
            st = pgd_oom(in);
            goto fail;
        }
    } else if (url_password) {
        in->password = url_password;
    } else if (getenv("PGPASSWORD") && *getenv("PGPASSWORD")) {
        /* libpq's own default for coffer's sessions; the children do not
         * inherit PGPASSWORD, so they get it through the password file. */
        if (!(in->password = strdup(getenv("PGPASSWORD")))) {
            st = pgd_oom(in);
            goto fail;
        }
    }

    const char *sslmode = host->config_get(cfg, "sslmode");
    if (sslmode && *sslmode) {
        if (!valid_sslmode(sslmode)) {
            st = host->error(
                h, COFFER_ERR_INVALID,
                "option sslmode: '%s' is not one of disable, allow, prefer, require, verify-ca, "
                "verify-full",
                sslmode);
            goto fail;
        }
        if (pgd_params_set(&in->params, "sslmode", sslmode) != 0) {
            st = pgd_oom(in);
            goto fail;
        }
    }
    const char *sm = pgd_params_get(&in->params, "sslmode");
    if (sm && !valid_sslmode(sm)) {
        st = host->error(h, COFFER_ERR_INVALID, "option url: sslmode '%s' is not a valid sslmode",
                         sm);
        goto fail;
    }

    int64_t jobs = host->config_get_int(cfg, "jobs", 1);
    if (jobs < 1 || jobs > PGD_MAX_JOBS) {
        st = host->error(h, COFFER_ERR_INVALID, "option jobs: %lld is out of range (1..%d)",
                         (long long)jobs, PGD_MAX_JOBS);
        goto fail;
    }
    in->jobs = (int)jobs;

    size_t n = host->config_list_len(cfg, "databases");
    if (n) {
        in->dbs = calloc(n, sizeof *in->dbs);
        if (!in->dbs) {
            st = pgd_oom(in);
            goto fail;
        }
        for (size_t i = 0; i < n; i++) {
            const char *d = host->config_list_item(cfg, "databases", i);
            if (!d || !*d || strchr(d, '/') || strchr(d, ',') || strchr(d, '\n')) {
                st = host->error(h, COFFER_ERR_INVALID,
                                 "option databases: '%s' is not a usable database name (empty, or "
                                 "holds '/', ',' "
                                 "or a line break)",
                                 d ? d : "");
                goto fail;
            }
            for (size_t k = 0; k < i; k++)
                if (strcmp(in->dbs[k], d) == 0) {
                    st = host->error(h, COFFER_ERR_INVALID,
                                     "option databases: '%s' is listed twice", d);
                    goto fail;
                }
            if (!(in->dbs[i] = strdup(d))) {
                st = pgd_oom(in);
                goto fail;
            }
            in->ndbs++;
        }
    } else {
        /* libpq's default database is the user name. */
        const char *d = pgd_params_get(&in->params, "dbname");
        if (!d || !*d)
            d = pgd_params_get(&in->params, "user");
        if (!d || !*d) {
            st = host->error(h, COFFER_ERR_INVALID,
                             "option url: it names no database (postgres://user@host:port/DBNAME); "
                             "give one there "
                             "or in the option databases");
            goto fail;
        }
        if (strchr(d, '/') || strchr(d, ',') || strchr(d, '\n')) {
            st = host->error(h, COFFER_ERR_INVALID,
                             "option url: database name '%s' holds '/', ',' or a line break", d);
            goto fail;
        }
        in->dbs = calloc(1, sizeof *in->dbs);
        if (!in->dbs || !(in->dbs[0] = strdup(d))) {
            st = pgd_oom(in);
            goto fail;
        }
        in->ndbs = 1;
    }

    const char *bin = host->config_get(cfg, "pg_bin_dir");
    if (bin && *bin) {
        in->bin_dir = join(host->policy_root ? host->policy_root(h) : NULL, bin);
        if (!in->bin_dir) {
            st = pgd_oom(in);
            goto fail;
        }
        size_t bl = strlen(in->bin_dir);
        while (bl > 1 && in->bin_dir[bl - 1] == '/')
            in->bin_dir[--bl] = 0;
    }
    const char *mdb = host->config_get(cfg, "maintenance_db");
    in->maintenance_db = strdup(mdb && *mdb ? mdb : "postgres");
    in->restore_owner = host->config_get_bool(cfg, "restore_owner", 1);
    in->analyze = host->config_get_bool(cfg, "analyze", 1);
    in->display =
        pgd_params_display(&in->params, pgd_params_get(&in->params, "dbname") ? NULL : in->dbs[0]);
    if (!in->maintenance_db || !in->display) {
        st = pgd_oom(in);
        goto fail;
    }
    *instance = in;
    return COFFER_OK;
fail:
    pgd_instance_free(in);
    return st;
}

static uint32_t pgd_capabilities(void *instance)
{
    pgd_instance *in = instance;
    pgd_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    uint32_t caps = COFFER_DBCAP_QUERY;
    if (in->jobs > 1 && in->ndbs > 1)
        caps |= COFFER_DBCAP_PARALLEL_DUMP;
    return caps;
}

/* ---- probe ------------------------------------------------------------ */

static coffer_status pgd_probe(void *instance, coffer_db_info *info)
{
    pgd_instance *in = instance;
    pgd_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    coffer_status st;
    uint64_t total = 0;
    char version[96] = "";
    for (size_t i = 0; i < in->ndbs; i++) {
        PGconn *c = pgd_connect(in, &in->params, in->password, in->dbs[i], &st);
        if (!c)
            return st;
        PGresult *r = pgd_exec(
            in, c, "cannot read the server version and database size",
            "SELECT current_setting('server_version'), pg_database_size(current_database())", 0,
            NULL, &st);
        if (r) {
            snprintf(version, sizeof version, "%s", PQgetvalue(r, 0, 0));
            total += strtoull(PQgetvalue(r, 0, 1), NULL, 10);
            PQclear(r);
        }
        int num = PQserverVersion(c);
        PQfinish(c);
        if (!r)
            return st;
        /* Checked here too: probe runs before a maintenance stop. */
        if ((st = pgd_check_pg_dump(in, num)) != COFFER_OK)
            return st;
    }
    if (info) {
        snprintf(info->server_version, sizeof info->server_version, "PostgreSQL %s", version);
        info->size_bytes = total;
        char dbs[160] = "";
        size_t o = 0;
        for (size_t i = 0; i < in->ndbs && o + 2 < sizeof dbs; i++)
            o += (size_t)snprintf(dbs + o, sizeof dbs - o, "%s%s", i ? "," : "", in->dbs[i]);
        snprintf(info->detail, sizeof info->detail, "%s: databases %s; pg_dump %s (%s)",
                 in->display, dbs, in->pg_dump_text, in->pg_dump);
    }
    return COFFER_OK;
}

/* ---- descriptor -------------------------------------------------------- */

static const coffer_database_ops pgd_ops = {
    .struct_size = sizeof(coffer_database_ops),
    .instance_new = pgd_instance_new,
    .instance_free = pgd_instance_free,
    .capabilities = pgd_capabilities,
    .probe = pgd_probe,
    .dump = pgd_dump,
    .restore = pgd_restore,
    .verify = pgd_verify,
    .owned_paths = NULL,
    .query = pgd_query,
    .query_target = pgd_query_target,
    .scratch_create = pgd_scratch_create,
    .scratch_drop = pgd_scratch_drop,
    .query_snapshot = pgd_query_snapshot,
};

static const coffer_plugin pgd_plugin = {
    COFFER_PLUGIN_HEADER,
    .kind = COFFER_KIND_DATABASE,
    .name = "postgres",
    .version = "1.0.0",
    .description =
        "PostgreSQL server (exported snapshot shared with pg_dump, custom format streamed)",
    /* Each operation opens its own sessions and children. */
    .threading = COFFER_THREADS_PER_INSTANCE,
    .options = pgd_options,
    .database = &pgd_ops,
};

COFFER_DRIVER_ENTRY(postgres)
{
    if (!host || host->abi_major != COFFER_ABI_MAJOR)
        return NULL;
    return &pgd_plugin;
}
