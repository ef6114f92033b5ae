/*
 * A fixture for a database driver against a server the test started:
 * the driver on the mock host, one instance, an in-memory dump; and the
 * query_snapshot tests every such driver passes alike. The driver's
 * test file fills in the configuration and the session probes.
 */
#ifndef COFFER_TEST_DB_FIXTURE_H
#define COFFER_TEST_DB_FIXTURE_H

#include "coffer/coffer.h"
#include "db_rows.h"
#include "memdump.h"
#include "mock_host.h"
#include "plugin/config.h"

typedef struct db_fx {
    mock_host mh;
    coffer_config *cfg; /* owned; instance_new reads it */
    const coffer_plugin *pl;
    const coffer_database_ops *ops;
    void *in; /* NULL once a test freed it */
    memdump d;
    const char *secret; /* no message, no log line may show it */
    /* Poll until the driver's sessions on the server, all of them or
     * the one holding a kept snapshot, number want; returns the last
     * count seen. */
    long (*wait_sessions)(long want);
    long (*wait_kept)(long want);
    /* Run sql on the live database as the server's administrator;
     * returns the client's exit status. */
    int (*admin)(const char *sql);
} db_fx;

typedef const coffer_plugin *(*db_builtin_fn)(const coffer_host *host);

/* A fixture with a fresh mock host and dump, no configuration and no
 * instance yet. */
db_fx *db_fx_new(db_builtin_fn builtin, const char *secret);
/* instance_new on f->cfg; fails the test on an error. */
void db_fx_open(db_fx *f);
/* cmocka teardown: checks the secret was never shown, frees all. */
int db_fx_teardown(void **state);

/* A fresh dump that asks to keep its snapshot; fails the test on an error. */
void db_fx_dump_keeping(db_fx *f);
void db_fx_snap_query(db_fx *f, const char *sql, db_rows *c);
long db_fx_snap_sum(db_fx *f, const char *sql);
void db_fx_show(const db_fx *f);

/* The query_snapshot tests alike for every server driver; each expects
 * a table t of 1000 rows. */
void db_fx_test_snapshot_abi(void **state);
void db_fx_test_snapshot_unsupported(void **state);
void db_fx_test_snapshot_failed_dump(void **state);
/* 200,000 rows of big stream from the snapshot after the live table
 * was emptied; stopping early (cross_join: big a, big b) is not an
 * error and costs no reading of the rest; the host cancels sleep. The
 * snapshot stays usable throughout. */
void db_fx_expect_snapshot_streams(db_fx *f, const char *cross_join, const char *sleep);
/* The kept session was ended behind the driver's back: the snapshot is
 * reported lost, also to later calls; the next dump starts afresh. */
void db_fx_expect_snapshot_lost(db_fx *f);

#endif
