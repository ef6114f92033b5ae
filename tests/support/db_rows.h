/*
 * Row collection for database driver tests: a coffer_row_cb that counts
 * what a query hands over, and the query assertions built on it.
 */
#ifndef COFFER_TEST_DB_ROWS_H
#define COFFER_TEST_DB_ROWS_H

#include "coffer/coffer.h"
#include "mock_host.h"

/* What a query handed to db_rows_count: rows, NULL values, the sum of
 * the values that read as numbers (others count 0), the column count of
 * the last row. stop_after > 0 stops the query after that many rows. */
typedef struct db_rows {
    long rows, nulls, stop_after;
    long sum;
    int ncols;
} db_rows;

int db_rows_count(void *ud, int ncols, const char *const *v);

/* TEST_VERBOSE=1 shows the messages the assertions look at. */
void db_show_error(const mock_host *mh);

/* Run sql in the snapshot the last dump kept, its rows into *c (zeroed
 * first); fails the test on an error. */
void db_snapshot_query(const coffer_database_ops *ops, void *in, const mock_host *mh,
                       const char *sql, db_rows *c);

/* The sum of the columns of the single row sql returns in the snapshot
 * the last dump kept; fails the test on an error or another row count. */
long db_snapshot_sum(const coffer_database_ops *ops, void *in, const mock_host *mh,
                     const char *sql);

#endif
