/*
 * Plumbing for tests that run their own database server through a
 * script in tests/tools/: stopping it, running its administrator's
 * client on a file of SQL.
 */
#ifndef COFFER_TEST_DB_SERVER_H
#define COFFER_TEST_DB_SERVER_H

#include <stddef.h>

/* Stop the server script (e.g. "pg_server.sh") started in dir and remove
 * dir. 0 on success (a cmocka group teardown). */
int db_server_stop(const char *script, const char *dir);

/* Write sql to <dir>/admin.sql, readable by all (the client may run as
 * another user); its path into path. */
void db_server_sql_file(const char *dir, const char *sql, char *path, size_t len);

/* Run cmd in a shell; the first line of its output into out (if not
 * NULL). Returns its exit status as pclose does. */
int db_server_run(const char *cmd, char *out, size_t len);

#endif
