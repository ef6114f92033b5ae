/*
 * A MariaDB for the driver's server tests (tests/tools/mysql_server.sh):
 * start and stop it, run SQL as root, count the driver's connections,
 * and a db_fx on its database app.
 */
#ifndef COFFER_TEST_MYSQL_SERVER_H
#define COFFER_TEST_MYSQL_SERVER_H

#include <stddef.h>

#include "db_fixture.h"

extern char mysrv_dir[512];
extern char mysrv_port[16], mysrv_password[128];

/* Start a server in /tmp/coffer-<name>-<pid> with an (empty) database
 * app; the test account's password goes to the environment variable
 * password_env. 0 on success (a cmocka group setup). */
int mysrv_start(const char *name, const char *password_env);
int mysrv_stop(void);

/* Run SQL as root in database app; the first line of output into out.
 * Returns the client's exit status. */
int mysrv_admin(const char *sql, char *out, size_t len);
long mysrv_admin_long(const char *sql);

/* Connections of the test account (the driver's), and how many of them
 * have an InnoDB transaction open; wait polls until want. */
long mysrv_connections(int in_transaction);
long mysrv_wait_connections(int in_transaction, long want);

/* A fixture with an instance for mysql://coffer@.../app, its password
 * taken from password_env; jobs > 0 sets the option. */
db_fx *mysrv_fx_new(const char *password_env, int jobs);
/* Replace the fixture's configuration and instance by new ones. */
void mysrv_fx_open(db_fx *f, const char *password_env, int jobs);

#endif
