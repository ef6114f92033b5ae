/*
 * database "sqlite" against the mock host: dump while a writer keeps
 * committing, restore (refusals, stale -wal/-shm), verify (row counts,
 * corruption, foreign keys), owned_paths, query, query_target and
 * query_snapshot (the copy a dump kept). The core's sink and
 * source are replaced by an in-memory one (msink below).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db_rows.h"
#include "mock_host.h"
#include "plugin/config.h"
#include "util/util.h"

extern const coffer_plugin *coffer_builtin_sqlite(const coffer_host *host);

/* ---- in-memory dump sink / source -------------------------------------- */

typedef struct mstream {
    char name[128];
    cf_buf data;
    int open;
} mstream;

typedef struct msink {
    coffer_dump_sink sink;
    coffer_dump_source src;
    mstream streams[4];
    size_t nstreams;
    char *keys[256], *vals[256];
    size_t nmeta;
    size_t serve_limit; /* source serves at most this many bytes (0: all) */
} msink;

typedef struct mreader {
    mstream *s;
    size_t pos, end;
} mreader;

static coffer_status ms_open(coffer_dump_sink *sink, const char *name, void **stream)
{
    msink *m = sink->ctx;
    if (m->nstreams == 4)
        return COFFER_ERR_FAILED;
    mstream *s = &m->streams[m->nstreams++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->open = 1;
    *stream = s;
    return COFFER_OK;
}

static coffer_status ms_write(void *stream, const void *buf, size_t len)
{
    mstream *s = stream;
    assert_true(s->open);
    cf_buf_append(&s->data, buf, len);
    return COFFER_OK;
}

static coffer_status ms_close(void *stream)
{
    mstream *s = stream;
    assert_true(s->open);
    s->open = 0;
    return COFFER_OK;
}

static coffer_status ms_meta(coffer_dump_sink *sink, const char *key, const char *value)
{
    msink *m = sink->ctx;
    assert_true(m->nmeta < 256);
    m->keys[m->nmeta] = cf_strdup(key);
    m->vals[m->nmeta++] = cf_strdup(value);
    return COFFER_OK;
}

static msink *src_m(coffer_dump_source *src)
{
    return src->ctx;
}

static size_t mr_count(coffer_dump_source *src)
{
    return src_m(src)->nstreams;
}

static const char *mr_name(coffer_dump_source *src, size_t i)
{
    return i < src_m(src)->nstreams ? src_m(src)->streams[i].name : NULL;
}

static uint64_t mr_size(coffer_dump_source *src, size_t i)
{
    return src_m(src)->streams[i].data.len;
}

static coffer_status mr_open(coffer_dump_source *src, const char *name, void **stream)
{
    msink *m = src_m(src);
    for (size_t i = 0; i < m->nstreams; i++) {
        if (strcmp(m->streams[i].name, name) == 0) {
            mreader *r = calloc(1, sizeof *r);
            r->s = &m->streams[i];
            r->end = m->serve_limit && m->serve_limit < r->s->data.len ? m->serve_limit : r->s->data.len;
            *stream = r;
            return COFFER_OK;
        }
    }
    return COFFER_ERR_NOT_FOUND;
}

static coffer_status mr_read(void *stream, void *buf, size_t len, size_t *got)
{
    mreader *r = stream;
    size_t n = r->end - r->pos < len ? r->end - r->pos : len;
    if (n > 100000)
        n = 100000; /* short reads, as a real source may give */
    memcpy(buf, r->s->data.data + r->pos, n);
    r->pos += n;
    *got = n;
    return COFFER_OK;
}

static void mr_close(void *stream)
{
    free(stream);
}

static const char *mr_meta_get(coffer_dump_source *src, const char *key)
{
    msink *m = src_m(src);
    for (size_t i = 0; i < m->nmeta; i++)
        if (strcmp(m->keys[i], key) == 0)
            return m->vals[i];
    return NULL;
}

static size_t mr_meta_count(coffer_dump_source *src)
{
    return src_m(src)->nmeta;
}

static const char *mr_meta_key(coffer_dump_source *src, size_t i)
{
    return src_m(src)->keys[i];
}

static void msink_init(msink *m)
{
    memset(m, 0, sizeof *m);
    m->sink = (coffer_dump_sink){sizeof m->sink, m, ms_open, ms_write, ms_close, ms_meta, 0};
    m->src = (coffer_dump_source){sizeof m->src, m,        mr_count,    mr_name,       mr_size,    mr_open,
                                  mr_read,          mr_close, mr_meta_get, mr_meta_count, mr_meta_key};
}

static void msink_free(msink *m)
{
    for (size_t i = 0; i < m->nstreams; i++)
        cf_buf_free(&m->streams[i].data);
    for (size_t i = 0; i < m->nmeta; i++) {
        free(m->keys[i]);
        free(m->vals[i]);
    }
    memset(m, 0, sizeof *m);
}

/* Replace (or add) a metadata value, as a tampered or older set would. */
static void msink_set_meta(msink *m, const char *key, const char *val)
{
    for (size_t i = 0; i < m->nmeta; i++) {
        if (strcmp(m->keys[i], key) == 0) {
            free(m->vals[i]);
            m->vals[i] = cf_strdup(val);
            return;
        }
    }
    ms_meta(&m->sink, key, val);
}

/* ---- fixture ----------------------------------------------------------- */

typedef struct fixture {
    mock_host mh;
    const coffer_plugin *drv;
    const coffer_database_ops *ops;
    coffer_config *cfg;
    void *inst;
    char db[700]; /* <root>/data/app.db */
    msink m;
} fixture;

static void exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", sql, err);
}

static int64_t scalar(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static sqlite3 *open_db(const char *path)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    return db;
}

/* An AsterDrive-like schema in WAL mode, plus the awkward cases: a quoted
 * table name, AUTOINCREMENT (sqlite_sequence), a view, an FTS5 table. */
static void make_app_db(const char *path, int users)
{
    sqlite3 *db = open_db(path);
    exec(db, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;"
             "CREATE TABLE users(id INTEGER PRIMARY KEY AUTOINCREMENT, username TEXT UNIQUE, storage_used INT);"
             "CREATE TABLE folders(id INTEGER PRIMARY KEY, name TEXT, parent_id INT REFERENCES folders(id),"
             "  owner_user_id INT NOT NULL REFERENCES users(id));"
             "CREATE TABLE files(id INTEGER PRIMARY KEY, name TEXT, folder_id INT REFERENCES folders(id),"
             "  owner_user_id INT NOT NULL REFERENCES users(id), size INT);"
             "CREATE TABLE a(id INTEGER PRIMARY KEY, v INT);"
             "CREATE TABLE b(id INTEGER PRIMARY KEY, v INT);"
             "CREATE TABLE \"odd \"\"name\"\" . t\"(x);"
             "CREATE TABLE blobs(id INTEGER PRIMARY KEY, data BLOB);"
             "CREATE VIEW big_files AS SELECT * FROM files WHERE size > 1000;"
             "CREATE VIRTUAL TABLE search USING fts5(body);"
             "INSERT INTO \"odd \"\"name\"\" . t\" VALUES (1), (2);"
             "INSERT INTO search VALUES ('hello world');");
    exec(db, "BEGIN");
    for (int i = 1; i <= users; i++) {
        char sql[300];
        snprintf(sql, sizeof sql,
                 "INSERT INTO users(username, storage_used) VALUES ('user%d', %d);"
                 "INSERT INTO folders VALUES (%d, 'root', NULL, %d);"
                 "INSERT INTO files VALUES (%d, 'f', %d, %d, 10), (%d, 'g', %d, %d, 2000);",
                 i, 2010, i, i, 2 * i, i, i, 2 * i + 1, i, i);
        exec(db, sql);
    }
    exec(db, "COMMIT");
    sqlite3_close(db);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    mock_host_init(&f->mh);
    f->drv = coffer_builtin_sqlite(&f->mh.host);
    assert_non_null(f->drv);
    f->ops = f->drv->database;
    snprintf(f->mh.root, sizeof f->mh.root, "%s/app", f->mh.tmpdir);
    snprintf(f->db, sizeof f->db, "%s/data", f->mh.root);
    assert_int_equal(mkdir(f->mh.root, 0700), 0);
    assert_int_equal(mkdir(f->db, 0700), 0);
    strcat(f->db, "/app.db");
    make_app_db(f->db, 50);
    f->cfg = cf_config_new();
    cf_config_set(f->cfg, "path", "data/app.db", 0, 0);
    assert_int_equal(f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), f->cfg, &f->inst), COFFER_OK);
    msink_init(&f->m);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    f->ops->instance_free(f->inst);
    cf_config_free(f->cfg);
    msink_free(&f->m);
    mock_host_cleanup(&f->mh);
    free(f);
    return 0;
}

/* Restore options for <tmpdir>/<root>, where the database lands at
 * <tmpdir>/<root>/data/app.db. */
typedef struct ropts {
    coffer_restore_opts o;
    char root[700];
    char db[800];
} ropts;

static void ropts_init(fixture *f, ropts *r, const char *root)
{
    memset(r, 0, sizeof *r);
    snprintf(r->root, sizeof r->root, "%s/%s", f->mh.tmpdir, root);
    snprintf(r->db, sizeof r->db, "%s/data/app.db", r->root);
    r->o.struct_size = sizeof r->o;
    r->o.root = r->root;
}

typedef struct checks {
    int n, failed;
    char lines[64][600];
} checks;

static void check_cb(void *ud, int ok, const char *check, const char *detail)
{
    checks *c = ud;
    if (getenv("TEST_VERBOSE"))
        print_message("  %s %s: %s\n", ok ? "ok" : "FAIL", check, detail);
    if (!ok)
        c->failed++;
    if (c->n < 64)
        snprintf(c->lines[c->n], sizeof c->lines[0], "%s %s: %s", ok ? "ok" : "FAIL", check, detail);
    c->n++;
}

/* The line for check `name` with that ok flag, or NULL. */
static const char *find_check(const checks *c, int ok, const char *name)
{
    char pre[300];
    snprintf(pre, sizeof pre, "%s %s: ", ok ? "ok" : "FAIL", name);
    for (int i = 0; i < c->n && i < 64; i++)
        if (strncmp(c->lines[i], pre, strlen(pre)) == 0)
            return c->lines[i];
    return NULL;
}

static int64_t meta_int(fixture *f, const char *key)
{
    const char *v = mr_meta_get(&f->m.src, key);
    if (!v)
        fail_msg("no metadata %s", key);
    return strtoll(v, NULL, 10);
}

static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* ---- tests ------------------------------------------------------------- */

static void test_descriptor_and_owned_paths(void **state)
{
    fixture *f = *state;
    assert_string_equal(f->drv->name, "sqlite");
    assert_int_equal(f->drv->kind, COFFER_KIND_DATABASE);
    assert_int_equal(f->drv->abi_major, COFFER_ABI_MAJOR);
    assert_null(f->drv->storage);
    uint32_t caps = f->ops->capabilities(f->inst);
    assert_true(caps & COFFER_DBCAP_OWNS_FILES);
    assert_false(caps & COFFER_DBCAP_PARALLEL_DUMP);

    const char *p[8];
    assert_int_equal(f->ops->owned_paths(f->inst, p, 8), 4);
    assert_string_equal(p[0], "data/app.db");
    assert_string_equal(p[1], "data/app.db-wal");
    assert_string_equal(p[2], "data/app.db-shm");
    assert_string_equal(p[3], "data/app.db-journal");
    assert_int_equal(f->ops->owned_paths(f->inst, p, 2), 2);

    /* "./" is dropped so the paths compare with the files component's. */
    coffer_config *c = cf_config_new();
    cf_config_set(c, "path", "./data/app.db", 0, 0);
    void *in2;
    assert_int_equal(f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), c, &in2), COFFER_OK);
    assert_int_equal(f->ops->owned_paths(in2, p, 8), 4);
    assert_string_equal(p[0], "data/app.db");
    f->ops->instance_free(in2);

    /* Options. */
    cf_config_set(c, "busy_timeout", "250", 0, 0);
    coffer_status st = f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), c, &in2);
    if (st != COFFER_OK)
        fail_msg("instance_new: %s", f->mh.last_error);
    f->ops->instance_free(in2);
    cf_config_set(c, "busy_timeout", "99999999", 0, 0);
    assert_int_equal(f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), c, &in2), COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "busy_timeout"));
    cf_config_free(c);
    c = cf_config_new();
    assert_int_equal(f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), c, &in2), COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "path"));
    cf_config_free(c);
}

static void test_probe(void **state)
{
    fixture *f = *state;
    coffer_db_info info = {.struct_size = sizeof info};
    assert_int_equal(f->ops->probe(f->inst, &info), COFFER_OK);
    assert_non_null(strstr(info.server_version, sqlite3_libversion()));
    struct stat sb;
    assert_int_equal(stat(f->db, &sb), 0);
    assert_int_equal(info.size_bytes, (uint64_t)sb.st_size);
    assert_non_null(strstr(info.detail, "journal_mode=wal"));

    coffer_config *c = cf_config_new();
    cf_config_set(c, "path", "data/missing.db", 0, 0);
    void *in2;
    assert_int_equal(f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), c, &in2), COFFER_OK);
    assert_int_equal(f->ops->probe(in2, &info), COFFER_ERR_NOT_FOUND);
    assert_non_null(strstr(f->mh.last_error, "data/missing.db"));
    assert_int_equal(f->ops->dump(in2, &f->m.sink), COFFER_ERR_NOT_FOUND);
    f->ops->instance_free(in2);
    cf_config_free(c);
}

static void test_dump_metadata(void **state)
{
    fixture *f = *state;
    assert_int_equal(chmod(f->db, 0640), 0);
    assert_int_equal(f->ops->dump(f->inst, &f->m.sink), COFFER_OK);
    assert_int_equal(f->m.nstreams, 1);
    assert_string_equal(f->m.streams[0].name, "app.db");
    assert_false(f->m.streams[0].open);
    assert_int_equal(meta_int(f, "size"), (int64_t)f->m.streams[0].data.len);
    assert_int_equal(f->mh.progress, f->m.streams[0].data.len);
    assert_int_equal(meta_int(f, "rows.users"), 50);
    assert_int_equal(meta_int(f, "rows.folders"), 50);
    assert_int_equal(meta_int(f, "rows.files"), 100);
    assert_int_equal(meta_int(f, "rows.odd \"name\" . t"), 2);
    assert_int_equal(meta_int(f, "rows.search_content"), 1); /* FTS5 shadow table */
    assert_null(mr_meta_get(&f->m.src, "rows.search"));          /* virtual: skipped */
    assert_null(mr_meta_get(&f->m.src, "rows.sqlite_sequence"));
    assert_null(mr_meta_get(&f->m.src, "rows.big_files"));       /* a view */
    assert_string_equal(mr_meta_get(&f->m.src, "server_version"), sqlite3_libversion());
    assert_string_equal(mr_meta_get(&f->m.src, "snapshot"), "sqlite backup API (single read transaction)");
    assert_string_equal(mr_meta_get(&f->m.src, "journal_mode"), "wal");
    assert_string_equal(mr_meta_get(&f->m.src, "file_mode"), "0640");
    /* The private copy is gone. */
    assert_int_equal(dir_entries(f->mh.tmpdir), 1); /* just app/ */
    /* The stream is a SQLite database. */
    assert_memory_equal(f->m.streams[0].data.data, "SQLite format 3", 16);
}

static void test_dump_cancelled(void **state)
{
    fixture *f = *state;
    f->mh.cancel = 1;
    assert_int_equal(f->ops->dump(f->inst, &f->m.sink), COFFER_ERR_CANCELLED);
    assert_int_equal(dir_entries(f->mh.tmpdir), 1);
}

/* ---- dump while writing -------------------------------------------------- */

typedef struct writer {
    const char *path;
    atomic_int stop;
    volatile int64_t commits;
} writer;

/* Each transaction adds one row to a and one to b: any consistent state
 * has count(a) == count(b). */
static void *writer_main(void *arg)
{
    writer *w = arg;
    sqlite3 *db = open_db(w->path);
    exec(db, "PRAGMA synchronous=OFF");
    for (int64_t i = 0; !atomic_load(&w->stop); i++) {
        char sql[300];
        snprintf(sql, sizeof sql,
                 "BEGIN IMMEDIATE; INSERT INTO a(v) VALUES (%" PRId64 "); INSERT INTO blobs(data) VALUES"
                 " (randomblob(3000)); INSERT INTO b(v) VALUES (%" PRId64 "); COMMIT;",
                 i, i);
        exec(db, sql);
        __atomic_add_fetch(&w->commits, 1, __ATOMIC_SEQ_CST);
    }
    sqlite3_close(db);
    return NULL;
}

static void test_dump_while_writing(void **state)
{
    fixture *f = *state;
    /* Some bulk so the copy takes a while. */
    sqlite3 *db = open_db(f->db);
    exec(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000)"
             " INSERT INTO blobs(data) SELECT randomblob(4000) FROM n");
    sqlite3_close(db);

    writer w = {.path = f->db};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
    while (__atomic_load_n(&w.commits, __ATOMIC_SEQ_CST) < 20)
        usleep(1000);

    int64_t during = 0;
    for (int round = 0; round < 3; round++) {
        msink_free(&f->m);
        msink_init(&f->m);
        int64_t before = __atomic_load_n(&w.commits, __ATOMIC_SEQ_CST);
        assert_int_equal(f->ops->dump(f->inst, &f->m.sink), COFFER_OK);
        int64_t after = __atomic_load_n(&w.commits, __ATOMIC_SEQ_CST);
        during += after - before;

        int64_t a = meta_int(f, "rows.a"), b = meta_int(f, "rows.b");
        assert_int_equal(a, b); /* one transaction boundary, not a torn state */
        assert_true(a >= before && a <= after + 1);

        char root[64];
        snprintf(root, sizeof root, "restore%d", round);
        ropts r;
        ropts_init(f, &r, root);
        assert_int_equal(f->ops->restore(f->inst, &f->m.src, &r.o), COFFER_OK);
        sqlite3 *rdb = open_db(r.db);
        sqlite3_stmt *s;
        assert_int_equal(sqlite3_prepare_v2(rdb, "PRAGMA integrity_check", -1, &s, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(s, 0), "ok");
        sqlite3_finalize(s);
        assert_int_equal(scalar(rdb, "SELECT count(*) FROM a"), a);
        assert_int_equal(scalar(rdb, "SELECT count(*) FROM b"), b);
        assert_int_equal(scalar(rdb, "SELECT count(*) FROM blobs"), meta_int(f, "rows.blobs"));
        assert_int_equal(scalar(rdb, "SELECT max(v) FROM a"), scalar(rdb, "SELECT max(v) FROM b"));
        sqlite3_close(rdb);

        checks c = {0};
        assert_int_equal(f->ops->verify(f->inst, &f->m.src, &r.o, check_cb, &c), COFFER_OK);
        assert_int_equal(c.failed, 0);
        assert_non_null(find_check(&c, 1, "integrity_check"));
        assert_non_null(find_check(&c, 1, "rows.a"));
    }
    atomic_store(&w.stop, 1);
    pthread_join(t, NULL);
    /* The writer was never blocked for the whole dump. */
    assert_true(during > 0);
    print_message("writer committed %" PRId64 " transactions during 3 dumps\n", during);
}

/* A rollback-journal database whose writer holds an exclusive lock for a
 * while: the backup is refused (busy) and retried. */
typedef struct locker {
    const char *path;
    volatile int locked;
} locker;

static void *locker_main(void *arg)
{
    locker *l = arg;
    sqlite3 *db = open_db(l->path);
    exec(db, "BEGIN EXCLUSIVE; INSERT INTO t VALUES (2)");
    __atomic_store_n(&l->locked, 1, __ATOMIC_SEQ_CST);
    usleep(400 * 1000); /* shorter than the driver's retries (3.1 s) */
    exec(db, "COMMIT");
    sqlite3_close(db);
    return NULL;
}

static void test_dump_retries_when_locked(void **state)
{
    fixture *f = *state;
    char path[800];
    snprintf(path, sizeof path, "%s/rollback.db", f->mh.root);
    sqlite3 *db = open_db(path);
    exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES (1)");
    sqlite3_close(db);
    coffer_config *c = cf_config_new();
    cf_config_set(c, "path", path, 0, 0); /* absolute */
    cf_config_set(c, "busy_timeout", "20", 0, 0);
    void *in2;
    assert_int_equal(f->ops->instance_new(&f->mh.host, mock_hctx(&f->mh), c, &in2), COFFER_OK);

    pthread_t t;
    locker l = {.path = path};
    assert_int_equal(pthread_create(&t, NULL, locker_main, &l), 0);
    while (!__atomic_load_n(&l.locked, __ATOMIC_SEQ_CST))
        usleep(1000);
    assert_int_equal(f->ops->dump(in2, &f->m.sink), COFFER_OK);
    pthread_join(t, NULL);
    assert_non_null(strstr(f->mh.log, "retrying"));
    assert_string_equal(mr_meta_get(&f->m.src, "journal_mode"), "delete");
    assert_int_equal(meta_int(f, "rows.t"), 2); /* after the writer committed */
    assert_string_equal(f->m.streams[0].name, "rollback.db");
    f->ops->instance_free(in2);
    cf_config_free(c);
}

/* ---- restore ------------------------------------------------------------- */

static void test_restore_refuses_non_empty_target(void **state)
{
    fixture *f = *state;
    assert_int_equal(f->ops->dump(f->inst, &f->m.sink), COFFER_OK);

    /* In place over the live database: refused without force. */
    coffer_restore_opts o = {.struct_size = sizeof o, .root = f->mh.root};
    sqlite3 *db = open_db(f->db);
    exec(db, "DELETE FROM files");
    sqlite3_close(db);
    assert_int_equal(f->ops->restore(f->inst, &f->m.src, &o), COFFER_ERR_EXISTS);
    assert_non_null(strstr(f->mh.last_error, f->db));
    assert_non_null(strstr(f->mh.last_error, "--force"));
    db = open_db(f->db);
    assert_int_equal(scalar(db, "SELECT count(*) FROM files"), 0); /* untouched */
    sqlite3_close(db);

    o.force = 1;
    assert_int_equal(f->ops->restore(f->inst, &f->m.src, &o), COFFER_OK);
    db = open_db(f->db);
    assert_int_equal(scalar(db, "SELECT count(*) FROM files"), 100);
    sqlite3_close(db);

    /* An empty file is not a database worth protecting. */
    ropts r;
    ropts_init(f, &r, "empty");
    assert_int_equal(mkdir(r.root, 0700), 0);
    char dir[800];
    snprintf(dir, sizeof dir, "%s/data", r.root);
    assert_int_equal(mkdir(dir, 0700), 0);
    fclose(fopen(r.db, "w"));
    assert_int_equal(f->ops->restore(f->inst, &f->m.src, &r.o), COFFER_OK);

    /* --map target: relative to the restore root; directories created. */
    r.o.target = "elsewhere/deep/copy.db";
    assert_int_equal(f->ops->restore(f->inst, &f->m.src, &r.o), COFFER_OK);
    char mapped[900];
    snprintf(mapped, sizeof mapped, "%s/elsewhere/deep/copy.db", r.root);
    struct stat sb;
    assert_int_equal(stat(mapped, &sb), 0);
    assert_int_equal((uint64_t)sb.st_size, f->m.streams[0].data.len);
    assert_int_equal(f->ops->restore(f->inst, &f->m.src, &r.o), COFFER_ERR_EXISTS);
    assert_non_null(strstr(f->mh.last_error, mapped));
    /* No temporary files left beside it. */
    snprintf(mapped, sizeof mapped, "%s/elsewhere/deep", r.root);
    assert_int_equal(dir_entries(mapped), 1);
}

static void test_restore_removes_stale_wal(void **state)
{
    fixture *f = *state;
    assert_int_equal(f->ops->dump(f->inst, &f->m.sink), COFFER_OK);

    /* An old database whose last transactions sit in its WAL: the kind of
     * -wal a crashed application leaves. Replaying it into the restored
     * file would corrupt it. */
    ropts r;
    ropts_init(f, &r, "old");
    char dir[800], wal[900], shm[900], save[900];
    snprintf(dir, sizeof dir, "%s", r.root);
    mkdir(dir, 0700);
    snprintf(dir, sizeof dir, "%s/data", r.root);
    mkdir(dir, 0700);
    snprintf(wal, sizeof wal, "%s-wal", r.db);
    snprintf(shm, sizeof shm, "%s-shm", r.db);
    snprintf(save, sizeof save, "%s.saved-wal", r.db);
    sqlite3 *db = open_db(r.db);
    exec(db, "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE other(x);"
             "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)");
    exec(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)"
             " INSERT INTO users(name) SELECT 'stale' || i FROM n");
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", wal, save);
    assert_int_equal(system(cmd), 0);
    sqlite3_close(db); /* checkpoints and deletes the WAL */
    assert_int_equal(rename(save, wal), 0);
    FILE *fp = fopen(shm, "w");
    fputs("stale shm", fp);
    fclose(fp);

    r.o.force = 1;
    assert_int_equal(f->ops->restore(f->inst, &f->m.src, &r.o), COFFER_OK);
    assert_int_equal(access(wal, F_OK), -1);
    assert_int_equal(access(shm, F_OK), -1);
    checks c = {0};
    assert_int_equal(f->ops->verify(f->inst, &f->m.src, &r.o, check_cb, &c), COFFER_OK);
    assert_int_equal(access(wal, F_OK), -1); /* verify left nothing beside it */
    assert_int_equal(access(shm, F_OK), -1);
    db = open_db(r.db);
    assert_int_equal(scalar(db, "SELECT count(*) FROM users"), 50);
    assert_int_equal(scalar(db, "SELECT count(*) FROM users WHERE username LIKE 'stale%'"), 0);
    sqlite3_close(db);

    /* Mode recorded at dump time is put back (not the temp file's 0600). */
    struct stat sb, orig;
    assert_int_equal(stat(f->db, &orig), 0);
    assert_int_equal(stat(r.db, &sb), 0);
    assert_int_not_equal(orig.st_mode & 07777, 0600);
    assert_int_equal(sb.st_mode & 07777, orig.st_mode & 07777);
}

static void test_restore_refuses_bad_stream(void **state)
{
    fixture *f = *state;
    assert_int_equal(f->ops->dump(f->inst, &f->m.sink), COFFER_OK);
    ropts r;
    ropts_init(f, &r, "bad");

    /* Short stream: caught by the recorded size. */
    f->m.serve_limit = f->m.streams[0].data.len / 2;
    assert_int_equal(f->ops->restore(f->inst, &f->m.src, &r.o), COFFER_ERR_CORRUPT);
    assert_non_null(strstr(f->mh.last_error, r.db));
    assert_int_equal(access(r.db, F_OK), -1);

    /* And without a recorded size, by quick_check. */
    for (size_t i = 0; i < f->m.nmeta; i++)
        if (strcmp(f->m.keys[i], "size") == 0)
            f->m.keys[i][0] = 'X'; /* hide it */
    f->m.serve_limit = 8192; /* header and schema only */
    assert_int_equal(f->ops->restore(f->inst, &f->m.src, &r.o), COFFER_ERR_CORRUPT);
    assert_int_equal(access(r.db, F_OK), -1);
    char dir[800];
    snprintf(dir, sizeof dir, "%s/data", r.root);
    assert_int_equal(dir_entries(dir), 0); /* temporary file removed */

    /* No stream of that name and several others: refused. */
    f->m.serve_limit = 0;
    snprintf(f->m.streams[0].name, sizeof f->m.streams[0].name, "other.db");
    f->m.nstreams = 2;
    snprintf(f->m.streams[1].name, sizeof f->m.streams[1].name, "third.db");
    assert_int_equal(f->ops->restore(f->inst, &f->m.src, &r.o), COFFER_ERR_NOT_FOUND);
    assert_non_null(strstr(f->mh.last_error, "app.db"));
}

/* ---- verify -------------------------------------------------------------- */

static void restore_copy(fixture *f, ropts *r, const char *root)
{
    ropts_init(f, r, root);
    assert_int_equal(f->ops->restore(f->inst, &f->m.src, &r->o), COFFER_OK);
}

static void test_verify_row_count_mismatch(void **state)
{
    fixture *f = *state;
    assert_int_equal(f->ops->dump(f->inst, &f->m.sink), COFFER_OK);
    ropts r;
    restore_copy(f, &r, "v1");
    /* The changes stay in the WAL of a still-open connection: verify must
     * read through it. */
    sqlite3 *db = open_db(r.db);
    exec(db, "PRAGMA wal_autocheckpoint=0; DELETE FROM files WHERE id = 7; DROP TABLE a;"
             "CREATE TABLE newcomer(x); INSERT INTO newcomer VALUES (1)");

    checks c = {0};
    assert_int_equal(f->ops->verify(f->inst, &f->m.src, &r.o, check_cb, &c), COFFER_ERR_CORRUPT);
    sqlite3_close(db);
    assert_int_equal(c.failed, 3);
    const char *l = find_check(&c, 0, "rows.files");
    assert_non_null(l);
    assert_non_null(strstr(l, "99"));
    assert_non_null(strstr(l, "100"));
    assert_non_null(find_check(&c, 0, "rows.a"));
    assert_non_null(find_check(&c, 0, "rows.newcomer"));
    assert_non_null(find_check(&c, 1, "rows.users"));
    assert_non_null(find_check(&c, 1, "integrity_check"));
    assert_non_null(find_check(&c, 1, "foreign_key_check"));

    /* A recorded count the database does not match: tampered metadata. */
    msink_set_meta(&f->m, "rows.users", "51");
    memset(&c, 0, sizeof c);
    assert_int_equal(f->ops->verify(f->inst, &f->m.src, &r.o, NULL, NULL), COFFER_ERR_CORRUPT);
}

static void test_verify_foreign_keys(void **state)
{
    fixture *f = *state;
    assert_int_equal(f->ops->dump(f->inst, &f->m.sink), COFFER_OK);
    ropts r;
    restore_copy(f, &r, "fk");
    sqlite3 *db = open_db(r.db);
    /* foreign_keys is off on this connection: the violation goes in. */
    exec(db, "DELETE FROM folders WHERE id IN (3, 4)");
    sqlite3_close(db);
    msink_set_meta(&f->m, "rows.folders", "48");
    checks c = {0};
    assert_int_equal(f->ops->verify(f->inst, &f->m.src, &r.o, check_cb, &c), COFFER_ERR_CORRUPT);
    const char *l = find_check(&c, 0, "foreign_key_check");
    assert_non_null(l);
    assert_non_null(strstr(l, "files: 4 rows reference missing rows of folders"));
    assert_int_equal(c.failed, 1);
}

static void test_verify_corrupt_file(void **state)
{
    fixture *f = *state;
    assert_int_equal(f->ops->dump(f->inst, &f->m.sink), COFFER_OK);
    ropts r;
    restore_copy(f, &r, "corrupt");

    /* Damage pages in the middle: integrity_check must say so. */
    int fd = open(r.db, O_WRONLY);
    assert_true(fd >= 0);
    char junk[4096];
    memset(junk, 0x5a, sizeof junk);
    struct stat sb;
    fstat(fd, &sb);
    for (off_t off = 4096 * 2; off < sb.st_size - 4096; off += 4096 * 3)
        assert_int_equal(pwrite(fd, junk, 200, off + 100), 200);
    close(fd);
    checks c = {0};
    assert_int_not_equal(f->ops->verify(f->inst, &f->m.src, &r.o, check_cb, &c), COFFER_OK);
    assert_true(c.failed >= 1);
    assert_non_null(find_check(&c, 0, "integrity_check"));

    /* Not a database at all. */
    fd = open(r.db, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);
    memset(&c, 0, sizeof c);
    assert_int_equal(f->ops->verify(f->inst, &f->m.src, &r.o, check_cb, &c), COFFER_ERR_CORRUPT);
    assert_non_null(find_check(&c, 0, "integrity_check"));
    assert_non_null(strstr(f->mh.last_error, r.db));

    /* Missing. */
    unlink(r.db);
    memset(&c, 0, sizeof c);
    assert_int_equal(f->ops->verify(f->inst, &f->m.src, &r.o, check_cb, &c), COFFER_ERR_NOT_FOUND);
    assert_int_equal(c.failed, 1);
}

/* ---- query --------------------------------------------------------------- */

static int row_cb(void *ud, int ncols, const char *const *values)
{
    int64_t *sum = ud;
    assert_int_equal(ncols, 2);
    *sum += strtoll(values[1], NULL, 10);
    return 0;
}

static void test_query(void **state)
{
    fixture *f = *state;
    assert_true(f->ops->capabilities(f->inst) & COFFER_DBCAP_QUERY);
    int64_t sum = 0;
    assert_int_equal(f->ops->query(f->inst, "SELECT id, size FROM files WHERE owner_user_id <= 2;", row_cb, &sum),
                     COFFER_OK);
    assert_int_equal(sum, 2 * (10 + 2000));
    assert_int_equal(f->ops->query(f->inst, "DELETE FROM files", row_cb, &sum), COFFER_ERR_INVALID);
    assert_int_equal(f->ops->query(f->inst, "SELECT 1, 2; DELETE FROM files", row_cb, &sum), COFFER_ERR_INVALID);
    assert_int_equal(f->ops->query(f->inst, "SELECT nope FROM nowhere", row_cb, &sum), COFFER_ERR_FAILED);
    assert_non_null(strstr(f->mh.last_error, "nowhere"));
}

/* ---- query_target: the database a restore wrote ---------------------------- */

static void test_query_target(void **state)
{
    fixture *f = *state;
    assert_non_null(f->ops->query_target);
    assert_int_equal(f->ops->dump(f->inst, &f->m.sink), COFFER_OK);
    ropts r;
    restore_copy(f, &r, "t1");
    char data[900];
    snprintf(data, sizeof data, "%s/data", r.root);
    int before = dir_entries(data);

    db_rows q = {0};
    assert_int_equal(f->ops->query_target(f->inst, &r.o,
                                          "SELECT id, size FROM files WHERE owner_user_id <= 2",
                                          db_rows_count, &q),
                     COFFER_OK);
    assert_int_equal(q.rows, 4);
    assert_int_equal(q.sum, 2 + 3 + 4 + 5 + 2 * (10 + 2000)); /* ids and sizes */
    /* SQL NULL is a NULL pointer */
    memset(&q, 0, sizeof q);
    assert_int_equal(f->ops->query_target(f->inst, &r.o, "SELECT NULL, 5", db_rows_count, &q),
                     COFFER_OK);
    assert_int_equal(q.rows, 1);
    assert_int_equal(q.nulls, 1);
    assert_int_equal(q.sum, 5);
    /* nonzero from the callback stops, and is not an error */
    memset(&q, 0, sizeof q);
    q.stop_after = 3;
    assert_int_equal(f->ops->query_target(f->inst, &r.o, "SELECT id FROM files", db_rows_count, &q),
                     COFFER_OK);
    assert_int_equal(q.rows, 3);
    /* rows stream: a large result is not held */
    memset(&q, 0, sizeof q);
    assert_int_equal(
        f->ops->query_target(f->inst, &r.o,
                             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                             "WHERE i < 300000) SELECT 1 FROM n",
                             db_rows_count, &q),
        COFFER_OK);
    assert_int_equal(q.rows, 300000);

    /* only one read-only statement that parses */
    assert_int_equal(f->ops->query_target(f->inst, &r.o, "DELETE FROM files", db_rows_count, &q),
                     COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "not read-only"));
    assert_int_equal(f->ops->query_target(f->inst, &r.o, "SELECT 1; SELECT 2", db_rows_count, &q),
                     COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "exactly one statement"));
    assert_int_equal(f->ops->query_target(f->inst, &r.o, "SELEC 1", db_rows_count, &q),
                     COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "syntax error"));
    assert_int_equal(
        f->ops->query_target(f->inst, &r.o, "SELECT nope FROM nowhere", db_rows_count, &q),
        COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "no such table: nowhere"));
    /* reading left nothing behind (no -wal, -shm) */
    assert_int_equal(dir_entries(data), before);

    /* --map: a target relative to root, or absolute */
    ropts m;
    ropts_init(f, &m, "elsewhere");
    m.o.target = "t1/data/app.db";
    snprintf(m.root, sizeof m.root, "%s", f->mh.tmpdir);
    m.o.root = m.root;
    memset(&q, 0, sizeof q);
    assert_int_equal(f->ops->query_target(f->inst, &m.o, "SELECT 7", db_rows_count, &q), COFFER_OK);
    assert_int_equal(q.sum, 7);
    m.o.target = r.db;
    m.o.root = "/nonexistent";
    assert_int_equal(f->ops->query_target(f->inst, &m.o, "SELECT 7", db_rows_count, &q), COFFER_OK);

    /* never through a symbolic link, never out of root */
    ropts l;
    ropts_init(f, &l, "t2");
    assert_int_equal(mkdir(l.root, 0700), 0);
    char link[900];
    snprintf(link, sizeof link, "%s/data", l.root);
    assert_int_equal(symlink(data, link), 0);
    assert_int_equal(f->ops->query_target(f->inst, &l.o, "SELECT 1", db_rows_count, &q),
                     COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "symbolic link"));
    l.o.target = "../t1/data/app.db";
    assert_int_equal(f->ops->query_target(f->inst, &l.o, "SELECT 1", db_rows_count, &q),
                     COFFER_ERR_INVALID);
    ropts e;
    ropts_init(f, &e, "empty");
    assert_int_equal(mkdir(e.root, 0700), 0);
    assert_int_equal(f->ops->query_target(f->inst, &e.o, "SELECT 1", db_rows_count, &q),
                     COFFER_ERR_NOT_FOUND);
}

/* ---- query_snapshot: what the last dump captured ---------------------------- */

/* Private copies kept in the run's temporary directory (temp_path hint
 * "sqlite-app.db"), and whether any has a -wal, -shm or -journal. */
static int kept_copies(fixture *f, int *sidecars)
{
    DIR *d = opendir(f->mh.tmpdir);
    assert_non_null(d);
    int n = 0;
    if (sidecars)
        *sidecars = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strstr(de->d_name, "sqlite-app.db"))
            continue;
        size_t len = strlen(de->d_name);
        if (len > 4 && (strcmp(de->d_name + len - 4, "-wal") == 0 ||
                        strcmp(de->d_name + len - 4, "-shm") == 0 ||
                        (len > 8 && strcmp(de->d_name + len - 8, "-journal") == 0))) {
            if (sidecars)
                (*sidecars)++;
        } else {
            n++;
        }
    }
    closedir(d);
    return n;
}

static int64_t snap_scalar(fixture *f, const char *sql)
{
    return db_snapshot_sum(f->ops, f->inst, &f->mh, sql);
}

static void keep_snapshot(fixture *f)
{
    msink_free(&f->m);
    msink_init(&f->m);
    f->m.sink.keep_snapshot = 1;
}

/* The copy answers as of the dump while the application goes on writing
 * (WAL mode, a writer committing throughout), deletes and inserts. */
static void test_query_snapshot_sees_the_dump(void **state)
{
    fixture *f = *state;
    assert_non_null(f->ops->query_snapshot);
    writer w = {.path = f->db};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
    while (__atomic_load_n(&w.commits, __ATOMIC_SEQ_CST) < 20)
        usleep(1000);

    keep_snapshot(f);
    assert_int_equal(f->ops->dump(f->inst, &f->m.sink), COFFER_OK);
    int64_t a = meta_int(f, "rows.a"), users = meta_int(f, "rows.users");
    assert_int_equal(kept_copies(f, NULL), 1);

    /* The live database moves on. */
    int64_t at_dump = __atomic_load_n(&w.commits, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&w.commits, __ATOMIC_SEQ_CST) < at_dump + 50)
        usleep(1000);
    sqlite3 *db = open_db(f->db);
    exec(db, "DELETE FROM files; DELETE FROM folders; DELETE FROM users WHERE id > 10;"
             "INSERT INTO users(username, storage_used) VALUES ('late', 1)");
    assert_int_equal(scalar(db, "SELECT count(*) FROM users"), 11);
    assert_true(scalar(db, "SELECT count(*) FROM a") > a);

    /* As of the dump, repeatedly, while the writer still commits. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(snap_scalar(f, "SELECT count(*) FROM a"), a);
        assert_int_equal(snap_scalar(f, "SELECT count(*) FROM b"), a);
        assert_int_equal(snap_scalar(f, "SELECT count(*) FROM users"), users);
        assert_int_equal(snap_scalar(f, "SELECT count(*) FROM files"), 100);
        assert_int_equal(snap_scalar(f, "SELECT count(*) FROM users WHERE username = 'late'"), 0);
    }
    atomic_store(&w.stop, 1);
    pthread_join(t, NULL);
    assert_true(scalar(db, "SELECT count(*) FROM a") > a);
    sqlite3_close(db);
    /* Reading the copy left nothing beside it. */
    int side = -1;
    assert_int_equal(kept_copies(f, &side), 1);
    assert_int_equal(side, 0);

    /* instance_free drops the copy. */
    f->ops->instance_free(f->inst);
    f->inst = NULL;
    assert_int_equal(kept_copies(f, &side), 0);
    assert_int_equal(side, 0);
}

static void test_query_snapshot_statements(void **state)
{
    fixture *f = *state;
    keep_snapshot(f);
    assert_int_equal(f->ops->dump(f->inst, &f->m.sink), COFFER_OK);

    /* A statement that does not parse, or names what is not there. */
    db_rows q = {0};
    assert_int_equal(f->ops->query_snapshot(f->inst, "SELEC 1", db_rows_count, &q),
                     COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "syntax error"));
    assert_non_null(strstr(f->mh.last_error, "snapshot of"));
    assert_int_equal(f->ops->query_snapshot(f->inst, "SELECT nope FROM nowhere", db_rows_count, &q),
                     COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "no such table: nowhere"));
    /* ... and the next good one still works. */
    assert_int_equal(snap_scalar(f, "SELECT count(*) FROM users"), 50);

    /* Writes are refused, in the copy and (of course) in the live database. */
    assert_int_equal(f->ops->query_snapshot(f->inst, "DELETE FROM users", db_rows_count, &q),
                     COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "not read-only"));
    assert_int_equal(f->ops->query_snapshot(f->inst, "INSERT INTO users(username) VALUES ('x')",
                                            db_rows_count, &q),
                     COFFER_ERR_INVALID);
    assert_int_equal(
        f->ops->query_snapshot(f->inst, "SELECT 1; DELETE FROM users", db_rows_count, &q),
        COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "exactly one statement"));
    assert_int_equal(f->ops->query_snapshot(f->inst, "", db_rows_count, &q), COFFER_ERR_INVALID);
    assert_int_equal(f->ops->query_snapshot(f->inst, NULL, db_rows_count, &q), COFFER_ERR_INVALID);
    assert_int_equal(q.rows, 0);
    assert_int_equal(snap_scalar(f, "SELECT count(*) FROM users"), 50);
    sqlite3 *db = open_db(f->db);
    assert_int_equal(scalar(db, "SELECT count(*) FROM users"), 50);
    sqlite3_close(db);

    /* NULLs, early stop, a large result streamed. */
    memset(&q, 0, sizeof q);
    assert_int_equal(f->ops->query_snapshot(f->inst, "SELECT NULL, 5", db_rows_count, &q),
                     COFFER_OK);
    assert_int_equal(q.nulls, 1);
    assert_int_equal(q.sum, 5);
    memset(&q, 0, sizeof q);
    q.stop_after = 3;
    assert_int_equal(f->ops->query_snapshot(f->inst, "SELECT id FROM files", db_rows_count, &q),
                     COFFER_OK);
    assert_int_equal(q.rows, 3);
}

static void test_query_snapshot_large(void **state)
{
    fixture *f = *state;
    sqlite3 *db = open_db(f->db);
    exec(db, "CREATE TABLE big(id INTEGER PRIMARY KEY, v INT);"
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)"
             " INSERT INTO big SELECT i, i % 7 FROM n");
    keep_snapshot(f);
    assert_int_equal(f->ops->dump(f->inst, &f->m.sink), COFFER_OK);
    exec(db, "DELETE FROM big WHERE id > 1000");
    sqlite3_close(db);

    db_rows q = {0};
    assert_int_equal(
        f->ops->query_snapshot(f->inst, "SELECT id FROM big ORDER BY id", db_rows_count, &q),
        COFFER_OK);
    assert_int_equal(q.rows, 200000);
    assert_int_equal(q.sum, (int64_t)200000 * 200001 / 2);
    memset(&q, 0, sizeof q);
    q.stop_after = 10;
    assert_int_equal(
        f->ops->query_snapshot(f->inst, "SELECT id FROM big ORDER BY id", db_rows_count, &q),
        COFFER_OK);
    assert_int_equal(q.rows, 10);
    assert_int_equal(q.sum, 55);
    /* The host cancels: the statement stops. */
    f->mh.cancel = 1;
    memset(&q, 0, sizeof q);
    assert_int_equal(
        f->ops->query_snapshot(f->inst, "SELECT a.id FROM big a, big b", db_rows_count, &q),
        COFFER_ERR_CANCELLED);
    f->mh.cancel = 0;
    assert_int_equal(snap_scalar(f, "SELECT count(*) FROM big"), 200000);
}

/* No snapshot: before any dump, after a dump that did not ask (also a
 * 1.0 sink, which has no keep_snapshot member), after a failed dump. */
static void test_query_snapshot_unsupported(void **state)
{
    fixture *f = *state;
    db_rows q = {0};
    assert_int_equal(f->ops->query_snapshot(f->inst, "SELECT 1", db_rows_count, &q),
                     COFFER_ERR_UNSUPPORTED);
    assert_non_null(strstr(f->mh.last_error, "snapshot"));
    assert_int_equal(f->ops->dump(f->inst, &f->m.sink), COFFER_OK);
    assert_int_equal(f->ops->query_snapshot(f->inst, "SELECT 1", db_rows_count, &q),
                     COFFER_ERR_UNSUPPORTED);
    assert_int_equal(kept_copies(f, NULL), 0);

    keep_snapshot(f);
    f->m.sink.struct_size = offsetof(coffer_dump_sink, keep_snapshot);
    assert_int_equal(f->ops->dump(f->inst, &f->m.sink), COFFER_OK);
    assert_int_equal(f->ops->query_snapshot(f->inst, "SELECT 1", db_rows_count, &q),
                     COFFER_ERR_UNSUPPORTED);
    assert_int_equal(kept_copies(f, NULL), 0);

    /* A kept snapshot, then a dump that fails: nothing is left to query. */
    keep_snapshot(f);
    assert_int_equal(f->ops->dump(f->inst, &f->m.sink), COFFER_OK);
    assert_int_equal(snap_scalar(f, "SELECT count(*) FROM users"), 50);
    keep_snapshot(f);
    f->mh.cancel = 1;
    assert_int_equal(f->ops->dump(f->inst, &f->m.sink), COFFER_ERR_CANCELLED);
    f->mh.cancel = 0;
    assert_int_equal(f->ops->query_snapshot(f->inst, "SELECT 1", db_rows_count, &q),
                     COFFER_ERR_UNSUPPORTED);
    assert_int_equal(kept_copies(f, NULL), 0);
    assert_int_equal(q.rows, 0);
}

/* A second dump replaces the kept copy; one without keep_snapshot drops it. */
static void test_query_snapshot_second_dump(void **state)
{
    fixture *f = *state;
    keep_snapshot(f);
    assert_int_equal(f->ops->dump(f->inst, &f->m.sink), COFFER_OK);
    sqlite3 *db = open_db(f->db);
    exec(db, "INSERT INTO a(v) VALUES (1), (2), (3)");
    assert_int_equal(snap_scalar(f, "SELECT count(*) FROM a"), 0);
    keep_snapshot(f);
    assert_int_equal(f->ops->dump(f->inst, &f->m.sink), COFFER_OK);
    exec(db, "INSERT INTO a(v) VALUES (4)");
    sqlite3_close(db);
    assert_int_equal(snap_scalar(f, "SELECT count(*) FROM a"), 3);
    assert_int_equal(kept_copies(f, NULL), 1);
    msink_free(&f->m);
    msink_init(&f->m);
    assert_int_equal(f->ops->dump(f->inst, &f->m.sink), COFFER_OK);
    assert_int_equal(kept_copies(f, NULL), 0);
    db_rows q = {0};
    assert_int_equal(f->ops->query_snapshot(f->inst, "SELECT 1", db_rows_count, &q),
                     COFFER_ERR_UNSUPPORTED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_descriptor_and_owned_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dump_metadata, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dump_cancelled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dump_while_writing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dump_retries_when_locked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_refuses_non_empty_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_removes_stale_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_refuses_bad_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_row_count_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_foreign_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_corrupt_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_snapshot_sees_the_dump, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_snapshot_statements, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_snapshot_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_snapshot_unsupported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_snapshot_second_dump, setup, teardown),
    };
    return cmocka_run_group_tests_name("db_sqlite", tests, NULL, NULL);
}
