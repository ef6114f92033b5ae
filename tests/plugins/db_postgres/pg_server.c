#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db_server.h"
#include "pg_server.h"

extern const coffer_plugin *coffer_builtin_postgres(const coffer_host *host);

char pgsrv_dir[512];
char pgsrv_bin[512], pgsrv_port[16], pgsrv_password[128];
static char pgsrv_psql[1024]; /* PG_ADMIN: psql with its connection options */

static void env_value(const char *file, const char *key, char *out, size_t len)
{
    FILE *fp = fopen(file, "r");
    assert_non_null(fp);
    char line[2048];
    size_t kl = strlen(key);
    out[0] = 0;
    while (fgets(line, sizeof line, fp)) {
        if (strncmp(line, key, kl) != 0 || line[kl] != '=')
            continue;
        char *v = line + kl + 1;
        v[strcspn(v, "\n")] = 0;
        size_t n = strlen(v);
        if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
            v[n - 1] = 0;
            v++;
        }
        snprintf(out, len, "%s", v);
    }
    fclose(fp);
}

int pgsrv_start(const char *name, const char *password_env)
{
    const char *src = getenv("COFFER_TEST_SRC");
    if (!src)
        return -1;
    snprintf(pgsrv_dir, sizeof pgsrv_dir, "/tmp/coffer-%s-%d", name, (int)getpid());
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "bash '%s/tests/tools/pg_server.sh' start '%s' >/dev/null", src,
             pgsrv_dir);
    if (system(cmd) != 0)
        return -1;
    char envf[600];
    snprintf(envf, sizeof envf, "%s/pg.env", pgsrv_dir);
    env_value(envf, "PG_BIN", pgsrv_bin, sizeof pgsrv_bin);
    env_value(envf, "PG_PORT", pgsrv_port, sizeof pgsrv_port);
    env_value(envf, "PG_PASSWORD", pgsrv_password, sizeof pgsrv_password);
    env_value(envf, "PG_ADMIN", pgsrv_psql, sizeof pgsrv_psql);
    setenv(password_env, pgsrv_password, 1);
    return 0;
}

int pgsrv_stop(void)
{
    return db_server_stop("pg_server.sh", pgsrv_dir);
}

int pgsrv_admin(const char *db, const char *sql, char *out, size_t len)
{
    char f[600];
    db_server_sql_file(pgsrv_dir, sql, f, sizeof f);
    char cmd[3000];
    snprintf(cmd, sizeof cmd,
             "PGOPTIONS='-c client_min_messages=warning' runuser -u postgres -- %s -At "
             "-v ON_ERROR_STOP=1 -d %s -f %s",
             pgsrv_psql, db, f);
    return db_server_run(cmd, out, len);
}

long pgsrv_admin_long(const char *db, const char *sql)
{
    char out[256];
    assert_int_equal(pgsrv_admin(db, sql, out, sizeof out), 0);
    return atol(out);
}

long pgsrv_sessions(const char *db, int in_transaction)
{
    char sql[400];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'coffer'"
             " AND datname = '%s'%s",
             db, in_transaction ? " AND xact_start IS NOT NULL" : "");
    return pgsrv_admin_long("postgres", sql);
}

long pgsrv_wait_sessions(const char *db, int in_transaction, long want)
{
    long n = -1;
    for (int i = 0; i < 50; i++) {
        if ((n = pgsrv_sessions(db, in_transaction)) == want)
            break;
        usleep(100000);
    }
    return n;
}

static long wait_all(long want)
{
    return pgsrv_wait_sessions("asterdrive", 0, want);
}

static long wait_kept(long want)
{
    return pgsrv_wait_sessions("asterdrive", 1, want);
}

static int admin_app(const char *sql)
{
    return pgsrv_admin("asterdrive", sql, NULL, 0);
}

db_fx *pgsrv_fx_new(const char *password_env)
{
    db_fx *f = db_fx_new(coffer_builtin_postgres, pgsrv_password);
    f->wait_sessions = wait_all;
    f->wait_kept = wait_kept;
    f->admin = admin_app;
    f->cfg = cf_config_new();
    char url[300];
    snprintf(url, sizeof url, "postgres://asterdrive@127.0.0.1:%s/asterdrive", pgsrv_port);
    cf_config_set(f->cfg, "url", url, 1, 1);
    cf_config_set(f->cfg, "password_env", password_env, 2, 1);
    cf_config_set(f->cfg, "pg_bin_dir", pgsrv_bin, 3, 1);
    db_fx_open(f);
    return f;
}
