/*
 * A PostgreSQL for the driver's server tests (tests/tools/pg_server.sh):
 * start and stop it, run SQL as its superuser, count the driver's
 * sessions, and a db_fx on its database asterdrive.
 */
#ifndef COFFER_TEST_PG_SERVER_H
#define COFFER_TEST_PG_SERVER_H

#include <stddef.h>

#include "db_fixture.h"

extern char pgsrv_dir[512];
extern char pgsrv_bin[512], pgsrv_port[16], pgsrv_password[128];

/* Start a server in /tmp/coffer-<name>-<pid>; its password goes to the
 * environment variable password_env. 0 on success (a cmocka group setup). */
int pgsrv_start(const char *name, const char *password_env);
int pgsrv_stop(void);

/* Run SQL as the superuser in database db; psql's output (first line)
 * into out. Returns psql's exit status. */
int pgsrv_admin(const char *db, const char *sql, char *out, size_t len);
long pgsrv_admin_long(const char *db, const char *sql);

/* Sessions of the driver (application_name coffer) in database db, and
 * how many of them are inside a transaction; wait polls until want (a
 * closed session's backend exits shortly after). */
long pgsrv_sessions(const char *db, int in_transaction);
long pgsrv_wait_sessions(const char *db, int in_transaction, long want);

/* A fixture with an instance for postgres://asterdrive@.../asterdrive,
 * its password taken from password_env. */
db_fx *pgsrv_fx_new(const char *password_env);

#endif
