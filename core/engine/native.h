/* The content of one database component of a set in its engine's native
 * form, for restoring without coffer. */
#ifndef CF_ENGINE_NATIVE_H
#define CF_ENGINE_NATIVE_H

#include "engine/run.h"

/* Writes component's content of set_id to fd: for SQLite, the database
 * file itself; for PostgreSQL, the pg_dump custom-format archive of its one
 * database (pg_restore reads it); for MySQL/MariaDB, SQL text the stock
 * client loads (written by the driver's restore to a file). *kind_out (malloc'd, may be NULL) names
 * the form ("sqlite", "pgdump", "sql"). 0, or -1 with cf_error() set; a form not supported for the
 * component's driver is an error, and nothing is written then. */
int cf_native_dump(cf_run *run, const char *set_id, const char *component, int fd,
                   char **kind_out);

#endif
