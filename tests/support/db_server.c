#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "db_server.h"

int db_server_stop(const char *script, const char *dir)
{
    const char *src = getenv("COFFER_TEST_SRC");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "bash '%s/tests/tools/%s' stop '%s' >/dev/null 2>&1; rm -rf '%s'",
             src, script, dir, dir);
    return system(cmd) == 0 ? 0 : -1;
}

void db_server_sql_file(const char *dir, const char *sql, char *path, size_t len)
{
    snprintf(path, len, "%s/admin.sql", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp, "%s\n", sql);
    fclose(fp);
    chmod(path, 0644);
}

int db_server_run(const char *cmd, char *out, size_t len)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char buf[1024] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    buf[strcspn(buf, "\n")] = 0;
    if (out)
        snprintf(out, len, "%s", buf);
    return pclose(p);
}
