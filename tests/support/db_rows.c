#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "db_rows.h"

int db_rows_count(void *ud, int ncols, const char *const *v)
{
    db_rows *c = ud;
    c->ncols = ncols;
    c->rows++;
    for (int i = 0; i < ncols; i++) {
        if (!v[i])
            c->nulls++;
        else
            c->sum += strtol(v[i], NULL, 10);
    }
    return c->stop_after && c->rows >= c->stop_after;
}

void db_show_error(const mock_host *mh)
{
    if (getenv("TEST_VERBOSE"))
        print_message("  error: %s\n", mh->last_error);
}

void db_snapshot_query(const coffer_database_ops *ops, void *in, const mock_host *mh,
                       const char *sql, db_rows *c)
{
    memset(c, 0, sizeof *c);
    coffer_status st = ops->query_snapshot(in, sql, db_rows_count, c);
    if (st != COFFER_OK)
        fail_msg("query_snapshot %s: %s", sql, mh->last_error);
}

long db_snapshot_sum(const coffer_database_ops *ops, void *in, const mock_host *mh, const char *sql)
{
    db_rows c;
    db_snapshot_query(ops, in, mh, sql, &c);
    assert_int_equal(c.rows, 1);
    return c.sum;
}
