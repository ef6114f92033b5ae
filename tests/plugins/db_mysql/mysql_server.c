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
#include "mysql_server.h"

extern const coffer_plugin *coffer_builtin_mysql(const coffer_host *host);

char mysrv_dir[512];
char mysrv_port[16], mysrv_password[128];
static char mysrv_cnf[600]; /* root's client option file */

int mysrv_start(const char *name, const char *password_env)
{
    const char *src = getenv("COFFER_TEST_SRC");
    if (!src)
        return -1;
    snprintf(mysrv_dir, sizeof mysrv_dir, "/tmp/coffer-%s-%d", name, (int)getpid());
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "bash '%s/tests/tools/mysql_server.sh' start '%s'", src, mysrv_dir);
    FILE *p = popen(cmd, "r");
    char line[1024];
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = 0;
        if (strncmp(line, "MYSQL_PORT=", 11) == 0)
            snprintf(mysrv_port, sizeof mysrv_port, "%s", line + 11);
        else if (strncmp(line, "MYSQL_TEST_PASSWORD=", 20) == 0)
            snprintf(mysrv_password, sizeof mysrv_password, "%s", line + 20);
        else if (strncmp(line, "MYSQL_CLIENT_CNF=", 17) == 0)
            snprintf(mysrv_cnf, sizeof mysrv_cnf, "%s", line + 17);
    }
    if (pclose(p) != 0 || !*mysrv_port || !*mysrv_password)
        return -1;
    setenv(password_env, mysrv_password, 1);
    snprintf(cmd, sizeof cmd, "mysql --defaults-file='%s' -e 'CREATE DATABASE IF NOT EXISTS app'",
             mysrv_cnf);
    return system(cmd) == 0 ? 0 : -1;
}

int mysrv_stop(void)
{
    return db_server_stop("mysql_server.sh", mysrv_dir);
}

int mysrv_admin(const char *sql, char *out, size_t len)
{
    char f[600];
    db_server_sql_file(mysrv_dir, sql, f, sizeof f);
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "mysql --defaults-file='%s' -N -B app < '%s'", mysrv_cnf, f);
    return db_server_run(cmd, out, len);
}

long mysrv_admin_long(const char *sql)
{
    char out[256];
    assert_int_equal(mysrv_admin(sql, out, sizeof out), 0);
    return atol(out);
}

long mysrv_connections(int in_transaction)
{
    if (in_transaction)
        return mysrv_admin_long(
            "SELECT COUNT(*) FROM information_schema.INNODB_TRX t"
            " JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id"
            " WHERE p.USER = 'coffer'");
    return mysrv_admin_long(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'coffer'");
}

long mysrv_wait_connections(int in_transaction, long want)
{
    long n = -1;
    for (int i = 0; i < 50; i++) {
        if ((n = mysrv_connections(in_transaction)) == want)
            break;
        usleep(100000);
    }
    return n;
}

/* The kept snapshot is on one of the account's connections, the only
 * one left once the dump is over. */
static long wait_all(long want)
{
    return mysrv_wait_connections(0, want);
}

static int admin_app(const char *sql)
{
    return mysrv_admin(sql, NULL, 0);
}

void mysrv_fx_open(db_fx *f, const char *password_env, int jobs)
{
    if (f->in)
        f->ops->instance_free(f->in);
    f->in = NULL;
    if (f->cfg)
        cf_config_free(f->cfg);
    f->cfg = cf_config_new();
    char url[300];
    snprintf(url, sizeof url, "mysql://coffer@127.0.0.1:%s/app", mysrv_port);
    cf_config_set(f->cfg, "url", url, 1, 1);
    cf_config_set(f->cfg, "password_env", password_env, 2, 1);
    if (jobs > 0) {
        char j[16];
        snprintf(j, sizeof j, "%d", jobs);
        cf_config_set(f->cfg, "jobs", j, 3, 1);
    }
    db_fx_open(f);
}

db_fx *mysrv_fx_new(const char *password_env, int jobs)
{
    db_fx *f = db_fx_new(coffer_builtin_mysql, mysrv_password);
    f->wait_sessions = wait_all;
    f->wait_kept = wait_all;
    f->admin = admin_app;
    mysrv_fx_open(f, password_env, jobs);
    return f;
}
