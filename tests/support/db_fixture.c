#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db_fixture.h"

db_fx *db_fx_new(db_builtin_fn builtin, const char *secret)
{
    db_fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    mock_host_init(&f->mh);
    f->pl = builtin(&f->mh.host);
    assert_non_null(f->pl);
    f->ops = f->pl->database;
    f->secret = secret;
    memdump_init(&f->d);
    return f;
}

void db_fx_open(db_fx *f)
{
    coffer_status st = f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), f->cfg, &f->in);
    if (st != COFFER_OK)
        fail_msg("instance_new: %s", f->mh.last_error);
}

int db_fx_teardown(void **state)
{
    db_fx *f = *state;
    assert_null(strstr(f->mh.last_error, f->secret));
    assert_null(strstr(f->mh.log, f->secret));
    if (f->in)
        f->ops->instance_free(f->in);
    memdump_free(&f->d);
    if (f->cfg)
        cf_config_free(f->cfg);
    mock_host_cleanup(&f->mh);
    free(f);
    return 0;
}

/* A fresh, empty dump; keep asks to keep the snapshot. */
static void fresh_dump(db_fx *f, int keep)
{
    memdump_free(&f->d);
    memdump_init(&f->d);
    f->d.sink.keep_snapshot = keep;
}

void db_fx_dump_keeping(db_fx *f)
{
    fresh_dump(f, 1);
    coffer_status st = f->ops->dump(f->in, &f->d.sink);
    if (st != COFFER_OK)
        fail_msg("dump: %s", f->mh.last_error);
}

void db_fx_snap_query(db_fx *f, const char *sql, db_rows *c)
{
    db_snapshot_query(f->ops, f->in, &f->mh, sql, c);
}

long db_fx_snap_sum(db_fx *f, const char *sql)
{
    return db_snapshot_sum(f->ops, f->in, &f->mh, sql);
}

void db_fx_show(const db_fx *f)
{
    db_show_error(&f->mh);
}

static void expect_no_snapshot(db_fx *f, db_rows *c)
{
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT 1", db_rows_count, c),
                     COFFER_ERR_UNSUPPORTED);
}

void db_fx_test_snapshot_abi(void **state)
{
    db_fx *f = *state;
    assert_true(f->ops->struct_size >=
                offsetof(coffer_database_ops, query_snapshot) + sizeof(void *));
    assert_non_null(f->ops->query_snapshot);
}

/* No snapshot: before any dump, after a dump that did not ask (also a
 * 1.0 sink); a later dump without keep_snapshot ends a kept one. */
void db_fx_test_snapshot_unsupported(void **state)
{
    db_fx *f = *state;
    db_rows c = {0};
    expect_no_snapshot(f, &c);
    db_fx_show(f);
    assert_int_equal(f->ops->dump(f->in, &f->d.sink), COFFER_OK);
    expect_no_snapshot(f, &c);
    assert_int_equal(f->wait_sessions(0), 0);

    fresh_dump(f, 1);
    f->d.sink.struct_size = offsetof(coffer_dump_sink, keep_snapshot);
    assert_int_equal(f->ops->dump(f->in, &f->d.sink), COFFER_OK);
    expect_no_snapshot(f, &c);
    assert_int_equal(f->wait_sessions(0), 0);

    db_fx_dump_keeping(f);
    assert_int_equal(f->admin("DELETE FROM t WHERE id <= 10"), 0);
    assert_int_equal(db_fx_snap_sum(f, "SELECT COUNT(*) FROM t"), 1000);
    /* A second kept dump replaces the first. */
    db_fx_dump_keeping(f);
    assert_int_equal(db_fx_snap_sum(f, "SELECT COUNT(*) FROM t"), 990);
    assert_int_equal(f->wait_kept(1), 1);
    fresh_dump(f, 0);
    assert_int_equal(f->ops->dump(f->in, &f->d.sink), COFFER_OK);
    expect_no_snapshot(f, &c);
    assert_int_equal(f->wait_sessions(0), 0);
    assert_int_equal(c.rows, 0);
}

/* A failed dump keeps nothing. */
void db_fx_test_snapshot_failed_dump(void **state)
{
    db_fx *f = *state;
    db_fx_dump_keeping(f);
    fresh_dump(f, 1);
    f->mh.cancel = 1;
    assert_int_equal(f->ops->dump(f->in, &f->d.sink), COFFER_ERR_CANCELLED);
    f->mh.cancel = 0;
    db_rows c = {0};
    expect_no_snapshot(f, &c);
    assert_int_equal(f->wait_sessions(0), 0);
}

void db_fx_expect_snapshot_lost(db_fx *f)
{
    db_rows c = {0};
    coffer_status st = f->ops->query_snapshot(f->in, "SELECT COUNT(*) FROM t", db_rows_count, &c);
    db_fx_show(f);
    assert_int_not_equal(st, COFFER_OK);
    assert_int_not_equal(st, COFFER_ERR_UNSUPPORTED);
    assert_non_null(strstr(f->mh.last_error, "is lost"));
    assert_int_equal(f->ops->query_snapshot(f->in, "SELECT 1", db_rows_count, &c),
                     COFFER_ERR_FAILED);
    assert_non_null(strstr(f->mh.last_error, "lost earlier"));
    assert_int_equal(c.rows, 0);
    /* The next dump starts afresh. */
    db_fx_dump_keeping(f);
    assert_int_equal(db_fx_snap_sum(f, "SELECT COUNT(*) FROM t"), 1000);
}

void db_fx_expect_snapshot_streams(db_fx *f, const char *cross_join, const char *sleep)
{
    db_fx_dump_keeping(f);
    assert_int_equal(f->admin("DELETE FROM big"), 0);
    db_rows c = {0};
    assert_int_equal(
        f->ops->query_snapshot(f->in, "SELECT id FROM big ORDER BY id", db_rows_count, &c),
        COFFER_OK);
    assert_int_equal(c.rows, 200000);
    assert_int_equal(c.sum, 200000L * 200001L / 2);
    for (int i = 0; i < 5; i++) {
        memset(&c, 0, sizeof c);
        c.stop_after = 10;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(f->ops->query_snapshot(f->in, cross_join, db_rows_count, &c), COFFER_OK);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_int_equal(c.rows, 10);
        if (t1.tv_sec - t0.tv_sec > 10)
            fail_msg("stopping early took %ld s: the rest was read", (long)(t1.tv_sec - t0.tv_sec));
        assert_int_equal(db_fx_snap_sum(f, "SELECT COUNT(*) FROM big"), 200000);
    }
    f->mh.cancel = 1;
    memset(&c, 0, sizeof c);
    assert_int_equal(f->ops->query_snapshot(f->in, sleep, db_rows_count, &c), COFFER_ERR_CANCELLED);
    f->mh.cancel = 0;
    assert_int_equal(db_fx_snap_sum(f, "SELECT COUNT(*) FROM big"), 200000);
}
