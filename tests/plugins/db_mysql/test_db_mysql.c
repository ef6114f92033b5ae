/*
 * database "mysql" against the mock host, no server: URLs and the refusal
 * of passwords in them, stream-name encoding, SQL literals, content-
 * defined INSERT batching (stable across days), the statement splitter
 * (quotes, comments, DELIMITER, any feed boundaries), options, restore
 * plans, and restore/verify into a file:// target from an in-memory set.
 * The driver's sources are compiled in (COFFER_BUILTIN) to reach its
 * private helpers; everything that needs a server is in the e2e scripts
 * beside this file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db_mysql.h"
#include "mock_host.h"
#include "plugin/config.h"

extern const coffer_plugin *coffer_builtin_mysql(const coffer_host *host);

/* ---- URLs ------------------------------------------------------------------ */

static void test_url_forms(void **state)
{
    (void)state;
    dbmysql_url u;
    char err[300];
    assert_int_equal(dbmysql_url_parse("mysql://app@db.example:3306/asterdrive", &u, err, sizeof err), 0);
    assert_string_equal(u.user, "app");
    assert_string_equal(u.host, "db.example");
    assert_int_equal(u.port, 3306);
    assert_string_equal(u.database, "asterdrive");
    assert_null(u.socket);
    char d[600];
    dbmysql_url_describe(&u, d, sizeof d);
    assert_string_equal(d, "app@db.example:3306/asterdrive");
    dbmysql_url_free(&u);

    assert_int_equal(
        dbmysql_url_parse("mysql://app@localhost/asterdrive?socket=/run/mysqld/mysqld.sock", &u, err, sizeof err), 0);
    assert_string_equal(u.host, "localhost");
    assert_string_equal(u.socket, "/run/mysqld/mysqld.sock");
    assert_int_equal(u.port, 0);
    dbmysql_url_describe(&u, d, sizeof d);
    assert_string_equal(d, "app@localhost/asterdrive (socket /run/mysqld/mysqld.sock)");
    dbmysql_url_free(&u);

    assert_int_equal(dbmysql_url_parse("mariadb://[::1]:3307/x", &u, err, sizeof err), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 3307);
    assert_null(u.user);
    dbmysql_url_free(&u);

    assert_int_equal(dbmysql_url_parse("mysql://u%40x@h/db%2Fname?ssl_mode=required&password_env=PW", &u, err,
                                       sizeof err),
                     0);
    assert_string_equal(u.user, "u@x");
    assert_string_equal(u.database, "db/name");
    assert_string_equal(u.ssl_mode, "required");
    assert_string_equal(u.password_env, "PW");
    dbmysql_url_free(&u);

    assert_int_equal(dbmysql_url_parse("mysql://h", &u, err, sizeof err), 0);
    assert_null(u.database);
    dbmysql_url_free(&u);
}

static void test_url_refusals(void **state)
{
    (void)state;
    dbmysql_url u;
    char err[300];
    /* A password in a URL is refused, and the message never echoes it. */
    assert_int_equal(dbmysql_url_parse("mysql://app:hunter2@h/db", &u, err, sizeof err), -1);
    assert_non_null(strstr(err, "password"));
    assert_null(strstr(err, "hunter2"));
    assert_int_equal(dbmysql_url_parse("mysql://h/db?password=hunter2", &u, err, sizeof err), -1);
    assert_null(strstr(err, "hunter2"));
    assert_non_null(strstr(err, "password_env"));
    assert_int_equal(dbmysql_url_parse("mysql://h/db?pwd=1", &u, err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown URL parameter"));
    assert_int_equal(dbmysql_url_parse("postgres://h/db", &u, err, sizeof err), -1);
    assert_int_equal(dbmysql_url_parse("mysql://h:99999/db", &u, err, sizeof err), -1);
    assert_int_equal(dbmysql_url_parse("mysql://h:/db", &u, err, sizeof err), -1);
    assert_int_equal(dbmysql_url_parse("mysql:///db", &u, err, sizeof err), -1);
    assert_int_equal(dbmysql_url_parse("mysql://h/a/b", &u, err, sizeof err), -1);
    assert_int_equal(dbmysql_url_parse("mysql://h/db%00x", &u, err, sizeof err), -1);
    assert_int_equal(dbmysql_url_parse("mysql://h/db?socket", &u, err, sizeof err), -1);
    assert_int_equal(dbmysql_url_parse("mysql://[::1/db", &u, err, sizeof err), -1);
}

static void test_file_url(void **state)
{
    (void)state;
    char *path, *db, err[300];
    assert_int_equal(dbmysql_file_url("mysql://h/db", &path, &db, err, sizeof err), 0);
    assert_int_equal(dbmysql_file_url("file:///tmp/dump.sql", &path, &db, err, sizeof err), 1);
    assert_string_equal(path, "/tmp/dump.sql");
    assert_null(db);
    free(path);
    assert_int_equal(dbmysql_file_url("file:///tmp/my%20dump.sql?database=copy", &path, &db, err, sizeof err), 1);
    assert_string_equal(path, "/tmp/my dump.sql");
    assert_string_equal(db, "copy");
    free(path);
    free(db);
    assert_int_equal(dbmysql_file_url("file://relative.sql", &path, &db, err, sizeof err), -1);
    assert_int_equal(dbmysql_file_url("file:///tmp/", &path, &db, err, sizeof err), -1);
    assert_int_equal(dbmysql_file_url("file:///tmp/x.sql?db=y", &path, &db, err, sizeof err), -1);
}

static void test_names(void **state)
{
    (void)state;
    const char *names[] = {"plain_name", "a/b%c,d", "line\nbreak", ".hidden", "emoji \xf0\x9f\x98\x80", "x.y"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *e = dbmysql_name_encode(names[i]);
        assert_null(strchr(e, '/'));
        assert_null(strchr(e, '\n'));
        assert_null(strchr(e, ','));
        assert_true(e[0] != '.');
        char *back = dbmysql_name_decode(e, strlen(e));
        assert_string_equal(back, names[i]);
        free(e);
        free(back);
    }
    char *e = dbmysql_name_encode("a/b");
    assert_string_equal(e, "a%2Fb");
    free(e);
    char *q = dbmysql_quote_ident("we`ird");
    assert_string_equal(q, "`we``ird`");
    free(q);
}

/* ---- literals --------------------------------------------------------------------- */

/* mysql_real_escape_string for utf8mb4, as the server documents it. */
static unsigned long test_escape(void *ud, char *to, const char *from, unsigned long len)
{
    (void)ud;
    char *w = to;
    for (unsigned long i = 0; i < len; i++) {
        char c = from[i];
        switch (c) {
        case 0: *w++ = '\\'; *w++ = '0'; break;
        case '\n': *w++ = '\\'; *w++ = 'n'; break;
        case '\r': *w++ = '\\'; *w++ = 'r'; break;
        case '\032': *w++ = '\\'; *w++ = 'Z'; break;
        case '\\': case '\'': case '"': *w++ = '\\'; *w++ = c; break;
        default: *w++ = c;
        }
    }
    *w = 0;
    return (unsigned long)(w - to);
}

typedef struct membuf {
    char *data;
    size_t len, cap;
    int fail_after; /* >0: fail the n-th write */
    int writes;
} membuf;

static coffer_status mem_write(void *ud, const void *buf, size_t len)
{
    membuf *m = ud;
    if (m->fail_after && ++m->writes >= m->fail_after)
        return COFFER_ERR_IO;
    if (m->len + len + 1 > m->cap) {
        m->cap = (m->len + len + 1) * 2;
        m->data = realloc(m->data, m->cap);
    }
    memcpy(m->data + m->len, buf, len);
    m->len += len;
    m->data[m->len] = 0;
    return COFFER_OK;
}

static void test_literals(void **state)
{
    (void)state;
    membuf mb = {0};
    dbmysql_out o;
    assert_int_equal(dbmysql_out_init(&o, 64, mem_write, &mb), 0);
    static const char weird[] = "it's \"q\" \\ back\0nul\nnl \xf0\x9f\x98\x80";
    dbmysql_out_literal(&o, DBMYSQL_LIT_STRING, weird, sizeof weird - 1, test_escape, NULL);
    dbmysql_out_put(&o, "|", 1);
    dbmysql_out_literal(&o, DBMYSQL_LIT_STRING, "", 0, test_escape, NULL);
    dbmysql_out_put(&o, "|", 1);
    dbmysql_out_literal(&o, DBMYSQL_LIT_STRING, NULL, 0, test_escape, NULL);
    dbmysql_out_put(&o, "|", 1);
    dbmysql_out_literal(&o, DBMYSQL_LIT_HEX, "\x00\xff\x10", 3, test_escape, NULL);
    dbmysql_out_put(&o, "|", 1);
    dbmysql_out_literal(&o, DBMYSQL_LIT_HEX, "", 0, test_escape, NULL);
    dbmysql_out_put(&o, "|", 1);
    dbmysql_out_literal(&o, DBMYSQL_LIT_NUMBER, "-12.50", 6, test_escape, NULL);
    assert_int_equal(dbmysql_out_flush(&o), COFFER_OK);
    assert_string_equal(mb.data, "'it\\'s \\\"q\\\" \\\\ back\\0nul\\nnl \xf0\x9f\x98\x80'|''|NULL|X'00FF10'|X''|-12.50");
    dbmysql_out_free(&o);
    free(mb.data);

    /* A special byte anywhere (the scan takes 16 bytes at a time) is escaped. */
    for (size_t pos = 0; pos < 40; pos++) {
        for (int c = 0; c < 7; c++) {
            static const char specials[] = {0, '\n', '\r', '\\', '\'', '"', 0x1a};
            char in[41], want[64];
            memset(in, 'a', 40);
            in[pos] = specials[c];
            unsigned long wl = test_escape(NULL, want, in, 40);
            membuf one = {0};
            assert_int_equal(dbmysql_out_init(&o, 256, mem_write, &one), 0);
            dbmysql_out_literal(&o, DBMYSQL_LIT_STRING, in, 40, test_escape, NULL);
            assert_int_equal(dbmysql_out_flush(&o), COFFER_OK);
            assert_int_equal(one.len, wl + 2);
            assert_memory_equal(one.data + 1, want, wl);
            dbmysql_out_free(&o);
            free(one.data);
        }
    }

    /* A value far larger than the buffer goes out in pieces. */
    membuf big = {0};
    assert_int_equal(dbmysql_out_init(&o, 1024, mem_write, &big), 0);
    size_t n = 300000;
    char *v = malloc(n);
    for (size_t i = 0; i < n; i++)
        v[i] = (char)(i % 251);
    dbmysql_out_literal(&o, DBMYSQL_LIT_HEX, v, n, test_escape, NULL);
    assert_int_equal(dbmysql_out_flush(&o), COFFER_OK);
    assert_int_equal(big.len, 2 * n + 3);
    assert_memory_equal(big.data + 2 + 2 * 1000, "F7F8", 4); /* bytes 1000, 1001: 247, 248 */
    dbmysql_out_free(&o);
    free(big.data);
    free(v);
}

static void test_lit_of(void **state)
{
    (void)state;
    assert_int_equal(dbmysql_lit_of(MYSQL_TYPE_LONGLONG, 63), DBMYSQL_LIT_NUMBER);
    assert_int_equal(dbmysql_lit_of(MYSQL_TYPE_NEWDECIMAL, 63), DBMYSQL_LIT_NUMBER);
    assert_int_equal(dbmysql_lit_of(MYSQL_TYPE_DOUBLE, 63), DBMYSQL_LIT_NUMBER);
    assert_int_equal(dbmysql_lit_of(MYSQL_TYPE_YEAR, 63), DBMYSQL_LIT_NUMBER);
    assert_int_equal(dbmysql_lit_of(MYSQL_TYPE_BLOB, 63), DBMYSQL_LIT_HEX);
    assert_int_equal(dbmysql_lit_of(MYSQL_TYPE_BLOB, 45), DBMYSQL_LIT_STRING); /* TEXT */
    assert_int_equal(dbmysql_lit_of(MYSQL_TYPE_STRING, 63), DBMYSQL_LIT_HEX);  /* BINARY */
    assert_int_equal(dbmysql_lit_of(MYSQL_TYPE_STRING, 45), DBMYSQL_LIT_STRING);
    assert_int_equal(dbmysql_lit_of(MYSQL_TYPE_VAR_STRING, 63), DBMYSQL_LIT_HEX);
    assert_int_equal(dbmysql_lit_of(MYSQL_TYPE_BIT, 63), DBMYSQL_LIT_HEX);
    assert_int_equal(dbmysql_lit_of(MYSQL_TYPE_GEOMETRY, 63), DBMYSQL_LIT_HEX);
    /* dates and times keep their text form, quoted */
    assert_int_equal(dbmysql_lit_of(MYSQL_TYPE_DATETIME, 63), DBMYSQL_LIT_STRING);
    assert_int_equal(dbmysql_lit_of(MYSQL_TYPE_TIMESTAMP, 63), DBMYSQL_LIT_STRING);
    assert_int_equal(dbmysql_lit_of(MYSQL_TYPE_DATE, 63), DBMYSQL_LIT_STRING);
}

/* ---- batching ------------------------------------------------------------------------ */

/* Rows (id, name, payload) as a data stream split into `nparts` part
 * streams (texts in out[]); `skip` leaves one id out, `extra` adds one with
 * id 0 after row extra_after. */
typedef struct parts_ud {
    dbmysql_out o[DBMYSQL_PARTS];
    membuf mb[DBMYSQL_PARTS];
    int opened[DBMYSQL_PARTS];
} parts_ud;

static coffer_status test_open_part(void *ud, int part, dbmysql_out **out)
{
    parts_ud *p = ud;
    assert_false(p->opened[part]);
    p->opened[part] = 1;
    dbmysql_out_init(&p->o[part], 4096, mem_write, &p->mb[part]); /* small: many flushes mid-row */
    *out = &p->o[part];
    return COFFER_OK;
}

static void dump_parts(size_t nrows, long skip, long extra_after, int nparts, membuf *out, uint64_t *stmts)
{
    parts_ud p;
    memset(&p, 0, sizeof p);
    dbmysql_batch b;
    dbmysql_batch_init(&b, "INSERT INTO `t` (`id`,`name`,`payload`) VALUES\n", nparts, test_open_part, &p);
    char num[32], name[64], payload[300];
    for (size_t i = 1; i <= nrows; i++) {
        for (int pass = 0; pass < 2; pass++) {
            long id = pass == 0 ? (long)i : 0;
            if (pass == 0 && (long)i == skip)
                continue;
            if (pass == 1 && (long)i != extra_after)
                continue;
            snprintf(num, sizeof num, "%ld", id);
            snprintf(name, sizeof name, "file-%ld.txt", id * 7919 % 100003);
            size_t pl = 20 + (size_t)(id * 37 % 200);
            for (size_t k = 0; k < pl; k++)
                payload[k] = (char)('a' + (id + (long)k) % 26);
            assert_int_equal(dbmysql_batch_row_begin(&b), COFFER_OK);
            dbmysql_out_literal(b.out, DBMYSQL_LIT_NUMBER, num, strlen(num), test_escape, NULL);
            dbmysql_batch_sep(&b);
            dbmysql_out_literal(b.out, DBMYSQL_LIT_STRING, name, strlen(name), test_escape, NULL);
            dbmysql_batch_sep(&b);
            dbmysql_out_literal(b.out, DBMYSQL_LIT_STRING, payload, pl, test_escape, NULL);
            assert_int_equal(dbmysql_batch_row_end(&b), COFFER_OK);
        }
    }
    assert_int_equal(dbmysql_batch_finish(&b), COFFER_OK);
    for (int k = 0; k < DBMYSQL_PARTS; k++) {
        if (p.opened[k]) {
            assert_int_equal(dbmysql_out_flush(&p.o[k]), COFFER_OK);
            dbmysql_out_free(&p.o[k]);
        }
        out[k] = p.mb[k];
    }
    if (stmts)
        *stmts = b.statements;
}

static char *dump_rows(size_t nrows, long skip, long extra_after, size_t *len, uint64_t *stmts)
{
    membuf mb[DBMYSQL_PARTS];
    dump_parts(nrows, skip, extra_after, 1, mb, stmts);
    *len = mb[0].len;
    return mb[0].data;
}

typedef struct stmts stmts_t;
typedef struct stmts {
    char **v;
    size_t *len;
    size_t n;
    uint64_t rows;
} stmts;

static coffer_status collect_stmt(void *ud, char *sql, size_t len)
{
    stmts *s = ud;
    s->v = realloc(s->v, (s->n + 1) * sizeof *s->v);
    s->len = realloc(s->len, (s->n + 1) * sizeof *s->len);
    s->v[s->n] = malloc(len + 1);
    memcpy(s->v[s->n], sql, len + 1);
    s->len[s->n++] = len;
    for (size_t i = 0; i + 1 < len; i++)
        if (sql[i] == '\n' && sql[i + 1] == '(')
            s->rows++;
    return COFFER_OK;
}

static void stmts_free(stmts *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    free(s->len);
    memset(s, 0, sizeof *s);
}

static void split_all(const char *text, size_t len, size_t piece, stmts *out)
{
    dbmysql_split sp;
    dbmysql_split_init(&sp, collect_stmt, out);
    for (size_t off = 0; off < len; off += piece)
        assert_int_equal(dbmysql_split_feed(&sp, text + off, len - off < piece ? len - off : piece), COFFER_OK);
    assert_int_equal(dbmysql_split_end(&sp), COFFER_OK);
    dbmysql_split_free(&sp);
}

static size_t shared_statements(const stmts *a, const stmts *b)
{
    size_t n = 0;
    for (size_t i = 0; i < a->n; i++)
        for (size_t k = 0; k < b->n; k++)
            if (a->len[i] == b->len[k] && memcmp(a->v[i], b->v[k], a->len[i]) == 0) {
                n++;
                break;
            }
    return n;
}

static void test_batch_stable(void **state)
{
    (void)state;
    const size_t N = 20000;
    size_t l1, l2, l3, l4;
    uint64_t s1;
    char *a = dump_rows(N, -1, -1, &l1, &s1);
    char *same = dump_rows(N, -1, -1, &l2, NULL);
    assert_int_equal(l1, l2);
    assert_memory_equal(a, same, l1); /* deterministic */
    char *ins = dump_rows(N, -1, N / 3, &l3, NULL);  /* one row inserted early */
    char *del = dump_rows(N, N / 2, -1, &l4, NULL);  /* one row deleted */
    stmts A = {0}, I = {0}, D = {0};
    split_all(a, l1, 1u << 20, &A);
    split_all(ins, l3, 1u << 20, &I);
    split_all(del, l4, 1u << 20, &D);
    assert_int_equal(A.n, s1);
    assert_int_equal(A.rows, N);
    assert_int_equal(I.rows, N + 1);
    assert_int_equal(D.rows, N - 1);
    print_message("  %zu bytes, %zu statements\n", l1, A.n);
    assert_true(A.n > 10); /* ~ 3 MB of rows in statements of 16 KiB + ~128 KiB */
    /* Every statement but the few around the change is byte-identical. */
    size_t si = shared_statements(&A, &I), sd = shared_statements(&A, &D);
    print_message("  %zu statements; after an insert %zu shared, after a delete %zu shared\n", A.n, si, sd);
    assert_true(si + 3 >= A.n);
    assert_true(sd + 3 >= A.n);
    /* Statements stay within bounds (all but the last reach the minimum). */
    for (size_t i = 0; i < A.n; i++) {
        assert_true(A.len[i] <= DBMYSQL_BATCH_MAX + 1000);
        if (i + 1 < A.n)
            assert_true(A.len[i] >= DBMYSQL_BATCH_MIN);
    }
    stmts_free(&A);
    stmts_free(&I);
    stmts_free(&D);
    free(a);
    free(same);
    free(ins);
    free(del);
}

static void test_batch_parts(void **state)
{
    (void)state;
    const size_t N = 20000;
    membuf a[DBMYSQL_PARTS], again[DBMYSQL_PARTS], ins[DBMYSQL_PARTS];
    uint64_t sa;
    dump_parts(N, -1, -1, DBMYSQL_PARTS, a, &sa);
    dump_parts(N, -1, -1, DBMYSQL_PARTS, again, NULL);
    dump_parts(N, -1, N / 3, DBMYSQL_PARTS, ins, NULL);
    uint64_t rows = 0;
    size_t stmts = 0, shared = 0;
    for (int k = 0; k < DBMYSQL_PARTS; k++) {
        assert_true(a[k].len > 0); /* every part gets statements */
        assert_int_equal(a[k].len, again[k].len);
        assert_memory_equal(a[k].data, again[k].data, a[k].len); /* deterministic */
        stmts_t A = {0}, I = {0};
        split_all(a[k].data, a[k].len, 1u << 20, &A);
        split_all(ins[k].data, ins[k].len, 1u << 20, &I);
        rows += A.rows;
        stmts += A.n;
        shared += shared_statements(&A, &I);
        stmts_free(&A);
        stmts_free(&I);
        free(a[k].data);
        free(again[k].data);
        free(ins[k].data);
    }
    assert_int_equal(rows, N);
    assert_int_equal(stmts, sa);
    print_message("  %zu statements over %d parts; after an insert %zu shared\n", stmts, DBMYSQL_PARTS, shared);
    assert_true(shared + 3 >= stmts);
}

static void test_batch_write_error(void **state)
{
    (void)state;
    membuf mb = {.fail_after = 2};
    dbmysql_out o;
    dbmysql_out_init(&o, 64, mem_write, &mb);
    dbmysql_batch b;
    dbmysql_batch_init1(&b, &o, "INSERT INTO `t` VALUES\n");
    coffer_status st = COFFER_OK;
    for (int i = 0; i < 100 && st == COFFER_OK; i++) {
        dbmysql_batch_row_begin(&b);
        dbmysql_out_literal(&o, DBMYSQL_LIT_STRING, "some text value", 15, test_escape, NULL);
        st = dbmysql_batch_row_end(&b);
    }
    assert_int_equal(st, COFFER_ERR_IO); /* sticky, reported at the row's end */
    assert_int_equal(o.st, COFFER_ERR_IO);
    dbmysql_out_free(&o);
    free(mb.data);
}

/* ---- splitting --------------------------------------------------------------------------- */

static void expect_split(const char *text, const char *const *want, size_t nwant)
{
    size_t len = strlen(text);
    for (size_t piece = 1; piece <= len + 1; piece = piece < 8 ? piece + 1 : piece * 3) {
        stmts s = {0};
        split_all(text, len, piece, &s);
        if (s.n != nwant) {
            for (size_t i = 0; i < s.n; i++)
                print_message("  got [%s]\n", s.v[i]);
            fail_msg("piece %zu: %zu statements, expected %zu", piece, s.n, nwant);
        }
        for (size_t i = 0; i < nwant; i++)
            assert_string_equal(s.v[i], want[i]);
        stmts_free(&s);
    }
}

/* Locking reads (they read the current rows, not a snapshot's), found
 * outside strings, quoted names and ordinary comments. */
static void test_locking_read(void **state)
{
    (void)state;
    const char *yes[] = {
        "SELECT * FROM t FOR UPDATE",
        "select * from t for update nowait",
        "SELECT * FROM t FOR SHARE SKIP LOCKED",
        "SELECT * FROM t LOCK IN SHARE MODE",
        "SELECT * FROM t\n  FOR\tUPDATE",
        "SELECT * FROM t /* note */ FOR /* x */ UPDATE",
        "SELECT * FROM t /*!50000 LOCK IN SHARE MODE */",
        "SELECT * FROM t /*M!100000 FOR UPDATE */",
        "(SELECT a FROM t) UNION (SELECT b FROM u FOR UPDATE)",
    };
    const char *no[] = {
        "SELECT 1",
        "SELECT 'for update' FROM t",
        "SELECT \"lock in share mode\"",
        "SELECT `for`, `update` FROM t",
        "SELECT 1 -- for update",
        "SELECT 1 # lock in share mode",
        "SELECT 1 /* for update */",
        "SELECT 'it\\'s for update'",
        "SELECT for_update FROM t",
        "SELECT * FROM t WHERE x IN (SELECT share FROM lock_table)",
        "",
    };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        if (!dbmysql_locking_read(yes[i]))
            fail_msg("not taken for a locking read: %s", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (dbmysql_locking_read(no[i]))
            fail_msg("taken for a locking read: %s", no[i]);
}

static void test_split_basic(void **state)
{
    (void)state;
    const char *text = "SELECT 1;\n"
                       "  -- a comment; with a semicolon\n"
                       "SELECT ';', \"a;\\\";b\", 'it''s;', 'back\\\\';\n"
                       "# hash comment;\n"
                       "SELECT `we;ird``name` FROM t /* ; */ WHERE x--1 = 0;\n"
                       "/*!40101 SET NAMES utf8mb4 */;\n"
                       "INSERT INTO t VALUES\n(1,'a\\nb'),\n(2,X'3B');\n"
                       "SELECT 'no delimiter at the end'";
    const char *want[] = {
        "SELECT 1",
        "SELECT ';', \"a;\\\";b\", 'it''s;', 'back\\\\'",
        "SELECT `we;ird``name` FROM t /* ; */ WHERE x--1 = 0",
        "/*!40101 SET NAMES utf8mb4 */",
        "INSERT INTO t VALUES\n(1,'a\\nb'),\n(2,X'3B')",
        "SELECT 'no delimiter at the end'",
    };
    expect_split(text, want, sizeof want / sizeof want[0]);
}

static void test_split_delimiter(void **state)
{
    (void)state;
    const char *text = "SET SESSION sql_mode = 'STRICT_ALL_TABLES';\n"
                       "DELIMITER ;;\n"
                       "CREATE PROCEDURE p()\nBEGIN\n  SELECT 1; SELECT ';;';\nEND;;\n"
                       "DELIMITER ;\n"
                       "delimiter $$\n"
                       "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW BEGIN SET NEW.a = 1; END$$\n"
                       "DELIMITER ;\n"
                       "DO SETVAL(`s`, 5, 0);\n"
                       "DELIMITER //\n";
    const char *want[] = {
        "SET SESSION sql_mode = 'STRICT_ALL_TABLES'",
        "CREATE PROCEDURE p()\nBEGIN\n  SELECT 1; SELECT ';;';\nEND",
        "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW BEGIN SET NEW.a = 1; END",
        "DO SETVAL(`s`, 5, 0)",
    };
    expect_split(text, want, sizeof want / sizeof want[0]);
    assert_string_equal(dbmysql_pick_delimiter("BEGIN SELECT 1; END"), ";;");
    assert_string_equal(dbmysql_pick_delimiter("BEGIN SELECT ';;'; END"), "$$");
    assert_string_equal(dbmysql_pick_delimiter(";; $$"), "//");
}

static coffer_status count_only(void *ud, char *sql, size_t len)
{
    (void)sql;
    (void)len;
    (*(int *)ud)++;
    return COFFER_OK;
}

static void test_split_errors(void **state)
{
    (void)state;
    int n = 0;
    dbmysql_split sp;
    dbmysql_split_init(&sp, count_only, &n);
    const char *t = "SELECT 1; INSERT INTO t VALUES ('truncated";
    assert_int_equal(dbmysql_split_feed(&sp, t, strlen(t)), COFFER_OK);
    assert_int_equal(dbmysql_split_end(&sp), COFFER_ERR_CORRUPT);
    assert_non_null(strstr(sp.err, "string"));
    assert_int_equal(n, 1);
    dbmysql_split_free(&sp);

    dbmysql_split_init(&sp, count_only, &n);
    sp.max = 100;
    char big[400];
    memset(big, 'x', sizeof big);
    memcpy(big, "SELECT '", 8);
    assert_int_equal(dbmysql_split_feed(&sp, big, sizeof big), COFFER_ERR_CORRUPT);
    assert_non_null(strstr(sp.err, "allowed"));
    dbmysql_split_free(&sp);

    /* comment only: nothing */
    n = 0;
    dbmysql_split_init(&sp, count_only, &n);
    t = "-- just a comment\n/* and another */\n  \n";
    assert_int_equal(dbmysql_split_feed(&sp, t, strlen(t)), COFFER_OK);
    assert_int_equal(dbmysql_split_end(&sp), COFFER_OK);
    assert_int_equal(n, 0);
    dbmysql_split_free(&sp);
}

/* ---- the driver: options, instance -------------------------------------------------------- */

typedef struct fx {
    mock_host mh;
    coffer_config *cfg;
    const coffer_plugin *pl;
    void *inst;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    mock_host_init(&f->mh);
    f->cfg = cf_config_new();
    f->pl = coffer_builtin_mysql(&f->mh.host);
    assert_non_null(f->pl);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (f->inst)
        f->pl->database->instance_free(f->inst);
    cf_config_free(f->cfg);
    mock_host_cleanup(&f->mh);
    free(f);
    unsetenv("COFFER_TEST_MYSQL_PW");
    return 0;
}

static coffer_status new_instance(fx *f)
{
    if (f->inst)
        f->pl->database->instance_free(f->inst);
    f->inst = NULL;
    f->mh.last_error[0] = 0;
    return f->pl->database->instance_new(&f->mh.host, mock_hctx(&f->mh), f->cfg, &f->inst);
}

static void test_descriptor(void **state)
{
    fx *f = *state;
    assert_string_equal(f->pl->name, "mysql");
    assert_int_equal(f->pl->kind, COFFER_KIND_DATABASE);
    assert_int_equal(f->pl->abi_major, COFFER_ABI_MAJOR);
    int url = 0, pw = 0, pwenv = 0, pwfile = 0;
    for (const coffer_option *o = f->pl->options; o->name; o++) {
        if (strcmp(o->name, "url") == 0)
            url = o->required;
        if (strcmp(o->name, "password") == 0)
            pw = o->secret;
        pwenv |= strcmp(o->name, "password_env") == 0;
        pwfile |= strcmp(o->name, "password_file") == 0;
    }
    assert_true(url && pw && pwenv && pwfile);
    assert_null(f->pl->database->owned_paths); /* a server owns no local file */
    /* another ABI major is refused */
    coffer_host h = f->mh.host;
    h.abi_major = COFFER_ABI_MAJOR + 1;
    assert_null(coffer_builtin_mysql(&h));
}

static void test_options(void **state)
{
    fx *f = *state;
    assert_int_equal(new_instance(f), COFFER_ERR_INVALID); /* no url */
    cf_config_set(f->cfg, "url", "mysql://app:s3cret-pw@db/app", 1, 1);
    assert_int_equal(new_instance(f), COFFER_ERR_INVALID);
    assert_null(strstr(f->mh.last_error, "s3cret-pw"));
    cf_config_set(f->cfg, "url", "mysql://app@db/app?password_env=X", 1, 1);
    assert_int_equal(new_instance(f), COFFER_ERR_INVALID);
    cf_config_set(f->cfg, "url", "mysql://app@db/app", 1, 1);
    cf_config_set(f->cfg, "jobs", "0", 1, 1);
    assert_int_equal(new_instance(f), COFFER_ERR_INVALID);
    cf_config_set(f->cfg, "jobs", "4", 1, 1);
    cf_config_set(f->cfg, "ssl_mode", "sometimes", 1, 1);
    assert_int_equal(new_instance(f), COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "verify_identity"));
    cf_config_set(f->cfg, "ssl_mode", "REQUIRED", 1, 1);
    cf_config_list_add(f->cfg, "databases", "a", 1, 1);
    cf_config_list_add(f->cfg, "databases", "a", 1, 1);
    assert_int_equal(new_instance(f), COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "twice"));
    cf_config_free(f->cfg);
    f->cfg = cf_config_new();
    cf_config_set(f->cfg, "url", "mysql://app@db/app", 1, 1);
    cf_config_set(f->cfg, "jobs", "4", 1, 1);
    assert_int_equal(new_instance(f), COFFER_OK);
    uint32_t caps = f->pl->database->capabilities(f->inst);
    assert_true(caps & COFFER_DBCAP_PARALLEL_DUMP);
    assert_true(caps & COFFER_DBCAP_QUERY);
    assert_false(caps & COFFER_DBCAP_OWNS_FILES);
}

static void test_connect_errors(void **state)
{
    fx *f = *state;
    /* a closed loopback port: refused at once, a retryable failure */
    cf_config_set(f->cfg, "url", "mysql://app@127.0.0.1:1/app", 1, 1);
    cf_config_set(f->cfg, "password_env", "COFFER_TEST_MYSQL_PW", 1, 1);
    setenv("COFFER_TEST_MYSQL_PW", "pw-never-shown", 1);
    assert_int_equal(new_instance(f), COFFER_OK);
    coffer_db_info info = {.struct_size = sizeof info};
    assert_int_equal(f->pl->database->probe(f->inst, &info), COFFER_ERR_RETRY);
    assert_non_null(strstr(f->mh.last_error, "cannot connect to app@127.0.0.1:1/app"));
    assert_null(strstr(f->mh.last_error, "pw-never-shown"));
    /* a socket that does not exist */
    cf_config_set(f->cfg, "url", "mysql://app@localhost/app?socket=/nonexistent/mysqld.sock", 1, 1);
    assert_int_equal(new_instance(f), COFFER_OK);
    assert_int_not_equal(f->pl->database->probe(f->inst, &info), COFFER_OK);
    assert_non_null(strstr(f->mh.last_error, "/nonexistent/mysqld.sock"));
}

/* ---- restore plans and file targets, from an in-memory set -------------------------------- */

typedef struct mset {
    coffer_dump_source src;
    const char *names[8];
    const char *data[8];
    size_t n;
    const char *keys[32], *vals[32];
    size_t nmeta;
} mset;

static mset *M(coffer_dump_source *s)
{
    return s->ctx;
}
static size_t ms_count(coffer_dump_source *s)
{
    return M(s)->n;
}
static const char *ms_name(coffer_dump_source *s, size_t i)
{
    return i < M(s)->n ? M(s)->names[i] : NULL;
}
static uint64_t ms_size(coffer_dump_source *s, size_t i)
{
    return strlen(M(s)->data[i]);
}
typedef struct mrd {
    const char *p;
    size_t left;
} mrd;
static coffer_status ms_open(coffer_dump_source *s, const char *name, void **stream)
{
    for (size_t i = 0; i < M(s)->n; i++)
        if (strcmp(M(s)->names[i], name) == 0) {
            mrd *r = malloc(sizeof *r);
            r->p = M(s)->data[i];
            r->left = strlen(r->p);
            *stream = r;
            return COFFER_OK;
        }
    return COFFER_ERR_NOT_FOUND;
}
static coffer_status ms_read(void *stream, void *buf, size_t len, size_t *got)
{
    mrd *r = stream;
    size_t n = r->left < len ? r->left : len;
    if (n > 7)
        n = 7; /* short reads: statements cross every boundary */
    memcpy(buf, r->p, n);
    r->p += n;
    r->left -= n;
    *got = n;
    return COFFER_OK;
}
static void ms_close(void *stream)
{
    free(stream);
}
static const char *ms_meta_get(coffer_dump_source *s, const char *key)
{
    for (size_t i = 0; i < M(s)->nmeta; i++)
        if (strcmp(M(s)->keys[i], key) == 0)
            return M(s)->vals[i];
    return NULL;
}
static size_t ms_meta_count(coffer_dump_source *s)
{
    return M(s)->nmeta;
}
static const char *ms_meta_key(coffer_dump_source *s, size_t i)
{
    return M(s)->keys[i];
}

static void mset_init(mset *m)
{
    memset(m, 0, sizeof *m);
    m->src = (coffer_dump_source){sizeof m->src, m,        ms_count,    ms_name,       ms_size,    ms_open,
                                  ms_read,          ms_close, ms_meta_get, ms_meta_count, ms_meta_key};
    static const char *const names[] = {"app/schema.sql", "app/data/t.sql", "app/data/empty.sql", "app/post.sql"};
    static const char *const data[] = {
        "CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `v` text,\n  PRIMARY KEY (`id`)\n);\n\n"
        "CREATE TABLE `empty` (`id` int);\n\n",
        "INSERT INTO `t` (`id`,`v`) VALUES\n(1,'a;b'),\n(2,'it\\'s\\n'),\n(3,NULL);\n"
        "INSERT INTO `t` (`id`,`v`) VALUES\n(4,'');\n",
        "",
        "SET SESSION sql_mode = '';\nDELIMITER ;;\nCREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW "
        "BEGIN SET NEW.v = 'x;'; END;;\nDELIMITER ;\n",
    };
    for (size_t i = 0; i < 4; i++) {
        m->names[i] = names[i];
        m->data[i] = data[i];
    }
    m->n = 4;
    static const char *const keys[] = {"format", "databases", "charset.app", "collation.app", "rows.app.t",
                                       "rows.app.empty", "server_version"};
    static const char *const vals[] = {DBMYSQL_FORMAT, "app", "utf8mb4", "utf8mb4_unicode_ci", "4", "0", "10.11.19-MariaDB"};
    for (size_t i = 0; i < 7; i++) {
        m->keys[i] = keys[i];
        m->vals[i] = vals[i];
    }
    m->nmeta = 7;
}

static void mset_set(mset *m, const char *key, const char *val)
{
    for (size_t i = 0; i < m->nmeta; i++)
        if (strcmp(m->keys[i], key) == 0) {
            m->vals[i] = val;
            return;
        }
    m->keys[m->nmeta] = key;
    m->vals[m->nmeta++] = val;
}

typedef struct checks {
    int n, failed;
    char lines[32][300];
} checks;

static void check_cb(void *ud, int ok, const char *check, const char *detail)
{
    checks *c = ud;
    if (getenv("TEST_VERBOSE"))
        print_message("  %s %s: %s\n", ok ? "ok" : "FAIL", check, detail);
    if (!ok)
        c->failed++;
    if (c->n < 32)
        snprintf(c->lines[c->n], sizeof c->lines[0], "%s %s: %s", ok ? "ok" : "FAIL", check, detail);
    c->n++;
}

static int has_line(const checks *c, const char *prefix)
{
    for (int i = 0; i < c->n && i < 32; i++)
        if (strncmp(c->lines[i], prefix, strlen(prefix)) == 0)
            return 1;
    return 0;
}

static void test_plan(void **state)
{
    fx *f = *state;
    cf_config_set(f->cfg, "url", "mysql://app@db:3306/app", 1, 1);
    assert_int_equal(new_instance(f), COFFER_OK);
    dbmysql_instance *in = f->inst;
    mset m;
    mset_init(&m);
    coffer_restore_opts o = {.struct_size = sizeof o, .root = "/tmp"};
    dbmysql_plan p;
    assert_int_equal(dbmysql_plan_make(in, &m.src, &o, &p), COFFER_OK);
    assert_false(p.to_file);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.dst[0], "app");
    assert_string_equal(p.url.host, "db");
    dbmysql_plan_free(&p);
    o.target = "mysql://other@127.0.0.1:3307/copy";
    assert_int_equal(dbmysql_plan_make(in, &m.src, &o, &p), COFFER_OK);
    assert_string_equal(p.src[0], "app");
    assert_string_equal(p.dst[0], "copy");
    assert_string_equal(p.where, "other@127.0.0.1:3307/copy");
    dbmysql_plan_free(&p);
    o.target = "file:///tmp/x.sql?database=renamed";
    assert_int_equal(dbmysql_plan_make(in, &m.src, &o, &p), COFFER_OK);
    assert_true(p.to_file);
    assert_string_equal(p.dst[0], "renamed");
    dbmysql_plan_free(&p);
    o.target = "/tmp/x.db";
    assert_int_equal(dbmysql_plan_make(in, &m.src, &o, &p), COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "file:///"));
    o.target = "mysql://a:pw@h/x";
    assert_int_equal(dbmysql_plan_make(in, &m.src, &o, &p), COFFER_ERR_INVALID);
    /* two databases cannot both take one name */
    mset_set(&m, "databases", "app,other%2Fdb");
    o.target = "mysql://h/copy";
    assert_int_equal(dbmysql_plan_make(in, &m.src, &o, &p), COFFER_ERR_INVALID);
    o.target = "mysql://h";
    assert_int_equal(dbmysql_plan_make(in, &m.src, &o, &p), COFFER_OK);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.dst[1], "other/db");
    dbmysql_plan_free(&p);
    /* another format is refused */
    mset_set(&m, "format", "coffer-mysql-99");
    assert_int_equal(dbmysql_plan_make(in, &m.src, &o, &p), COFFER_ERR_UNSUPPORTED);
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_int_equal(fread(b, 1, (size_t)n, fp), (size_t)n);
    b[n] = 0;
    fclose(fp);
    return b;
}

static void test_file_restore_verify(void **state)
{
    fx *f = *state;
    cf_config_set(f->cfg, "url", "mysql://app@db/app", 1, 1);
    assert_int_equal(new_instance(f), COFFER_OK);
    const coffer_database_ops *ops = f->pl->database;
    mset m;
    mset_init(&m);
    char path[600], url[700];
    snprintf(path, sizeof path, "%s/out/dump.sql", f->mh.tmpdir);
    snprintf(url, sizeof url, "file://%s", path);
    coffer_restore_opts o = {.struct_size = sizeof o, .root = f->mh.tmpdir, .target = url, .create = 1};
    assert_int_equal(ops->restore(f->inst, &m.src, &o), COFFER_OK);
    char *text = slurp(path);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    /* database created, then schema, data (in a transaction), post; end marker */
    const char *c = strstr(text, "CREATE DATABASE IF NOT EXISTS `app` CHARACTER SET 'utf8mb4' COLLATE 'utf8mb4_unicode_ci';");
    const char *s = strstr(text, "CREATE TABLE `t`");
    const char *d = strstr(text, "INSERT INTO `t`");
    const char *p = strstr(text, "CREATE TRIGGER");
    assert_true(c && s && d && p && c < s && s < d && d < p);
    assert_non_null(strstr(text, "SET SESSION foreign_key_checks = 0;"));
    assert_non_null(strstr(text, "COMMIT;"));
    size_t n = strlen(text);
    assert_string_equal(text + n - strlen("-- coffer: end of dump\n"), "-- coffer: end of dump\n");
    free(text);

    checks ck = {0};
    assert_int_equal(ops->verify(f->inst, &m.src, &o, check_cb, &ck), COFFER_OK);
    assert_int_equal(ck.failed, 0);
    assert_true(has_line(&ck, "ok rows.app.t: 4 rows"));
    assert_true(has_line(&ck, "ok rows.app.empty: 0 rows"));
    assert_true(has_line(&ck, "ok sql_file"));

    /* a count that does not match is reported */
    mset_set(&m, "rows.app.t", "5");
    memset(&ck, 0, sizeof ck);
    assert_int_equal(ops->verify(f->inst, &m.src, &o, check_cb, &ck), COFFER_ERR_CORRUPT);
    assert_true(has_line(&ck, "FAIL rows.app.t: table `app`.`t` has 4 rows, the dump had 5"));
    mset_set(&m, "rows.app.t", "4");

    /* an existing file is not replaced without --force */
    assert_int_equal(ops->restore(f->inst, &m.src, &o), COFFER_ERR_EXISTS);
    o.force = 1;
    assert_int_equal(ops->restore(f->inst, &m.src, &o), COFFER_OK);

    /* a truncated file fails verification */
    assert_int_equal(truncate(path, 200), 0);
    memset(&ck, 0, sizeof ck);
    assert_int_not_equal(ops->verify(f->inst, &m.src, &o, check_cb, &ck), COFFER_OK);
    assert_true(ck.failed > 0);

    /* renamed database */
    snprintf(url, sizeof url, "file://%s?database=copy%%20db", path);
    assert_int_equal(ops->restore(f->inst, &m.src, &o), COFFER_OK);
    text = slurp(path);
    assert_non_null(strstr(text, "USE `copy db`;"));
    assert_null(strstr(text, "`app`"));
    free(text);
    memset(&ck, 0, sizeof ck);
    assert_int_equal(ops->verify(f->inst, &m.src, &o, check_cb, &ck), COFFER_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_forms),
        cmocka_unit_test(test_url_refusals),
        cmocka_unit_test(test_file_url),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_lit_of),
        cmocka_unit_test(test_batch_stable),
        cmocka_unit_test(test_batch_parts),
        cmocka_unit_test(test_batch_write_error),
        cmocka_unit_test(test_locking_read),
        cmocka_unit_test(test_split_basic),
        cmocka_unit_test(test_split_delimiter),
        cmocka_unit_test(test_split_errors),
        cmocka_unit_test_setup_teardown(test_descriptor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_restore_verify, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
