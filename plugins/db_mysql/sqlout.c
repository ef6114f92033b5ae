/*
 * database "mysql": buffered output, SQL literals and INSERT batching.
 *
 * Values are written as SQL literals the server reads back exactly:
 * numbers as the server printed them (FLOAT columns are selected as
 * DOUBLE so no digit is lost), binary data as X'..' hex, text as
 * backslash-escaped utf8mb4 strings, NULL as NULL ('' stays '').
 */
#include "db_mysql.h"

#include <stdlib.h>
#include <string.h>

int dbmysql_out_init(dbmysql_out *o, size_t cap, dbmysql_write_fn write, void *ud)
{
    memset(o, 0, sizeof *o);
    o->buf = malloc(cap);
    if (!o->buf)
        return -1;
    o->cap = cap;
    o->write = write;
    o->ud = ud;
    o->hash_from = SIZE_MAX;
    return 0;
}

void dbmysql_out_init_swap(dbmysql_out *o, size_t cap, char *buf, dbmysql_swap_fn swap, void *ud)
{
    memset(o, 0, sizeof *o);
    o->buf = buf;
    o->cap = cap;
    o->swap = swap;
    o->ud = ud;
    o->hash_from = SIZE_MAX;
}

void dbmysql_out_free(dbmysql_out *o)
{
    if (!o->swap)
        free(o->buf);
    o->buf = NULL;
}

/* A fast, fixed (never seeded) hash: the same rows give the same batch
 * boundaries in every run on every machine. Bytes are taken in 8-byte
 * words counted from the row's start, with the partial word carried over,
 * so where the buffer happens to be flushed does not change the result. */
static void fold(dbmysql_out *o, const unsigned char *p, size_t n)
{
    const uint64_t k = 0x9E3779B97F4A7C15ull;
    uint64_t h = o->hash;
    while (n && o->hcarry_n) {
        o->hcarry |= (uint64_t)*p++ << (8 * o->hcarry_n);
        n--;
        if (++o->hcarry_n == 8) {
            h = (h ^ o->hcarry) * k;
            h ^= h >> 29;
            o->hcarry = 0;
            o->hcarry_n = 0;
        }
    }
    while (n >= 8) {
        uint64_t w = (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
                     (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
        h = (h ^ w) * k;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    while (n--)
        o->hcarry |= (uint64_t)*p++ << (8 * o->hcarry_n++);
    o->hash = h;
}

coffer_status dbmysql_out_flush(dbmysql_out *o)
{
    if (o->st)
        return o->st;
    if (o->hash_from != SIZE_MAX) {
        fold(o, (const unsigned char *)o->buf + o->hash_from, o->len - o->hash_from);
        o->hash_from = 0;
    }
    if (o->len) {
        o->st = o->swap ? o->swap(o->ud, &o->buf, o->len) : o->write(o->ud, o->buf, o->len);
        o->total += o->len;
        o->len = 0;
    }
    return o->st;
}

coffer_status dbmysql_out_put_slow(dbmysql_out *o, const void *p, size_t n)
{
    const char *s = p;
    while (n && !o->st) {
        if (o->len == o->cap && dbmysql_out_flush(o))
            break;
        size_t k = o->cap - o->len;
        if (k > n)
            k = n;
        memcpy(o->buf + o->len, s, k);
        o->len += k;
        s += k;
        n -= k;
    }
    return o->st;
}

coffer_status dbmysql_out_str(dbmysql_out *o, const char *s)
{
    return dbmysql_out_put(o, s, strlen(s));
}

char *dbmysql_out_room(dbmysql_out *o, size_t n)
{
    if (o->st)
        return NULL;
    if (o->cap - o->len < n && dbmysql_out_flush(o))
        return NULL;
    return o->buf + o->len;
}

dbmysql_lit dbmysql_lit_of(enum enum_field_types type, unsigned charsetnr)
{
    switch (type) {
    case MYSQL_TYPE_TINY:
    case MYSQL_TYPE_SHORT:
    case MYSQL_TYPE_LONG:
    case MYSQL_TYPE_INT24:
    case MYSQL_TYPE_LONGLONG:
    case MYSQL_TYPE_YEAR:
    case MYSQL_TYPE_DECIMAL:
    case MYSQL_TYPE_NEWDECIMAL:
    case MYSQL_TYPE_FLOAT:
    case MYSQL_TYPE_DOUBLE:
        return DBMYSQL_LIT_NUMBER;
    case MYSQL_TYPE_BIT:
    case MYSQL_TYPE_GEOMETRY:
        return DBMYSQL_LIT_HEX;
    case MYSQL_TYPE_STRING:
    case MYSQL_TYPE_VAR_STRING:
    case MYSQL_TYPE_VARCHAR:
    case MYSQL_TYPE_TINY_BLOB:
    case MYSQL_TYPE_MEDIUM_BLOB:
    case MYSQL_TYPE_LONG_BLOB:
    case MYSQL_TYPE_BLOB:
        return charsetnr == 63 ? DBMYSQL_LIT_HEX : DBMYSQL_LIT_STRING;
    default:
        return DBMYSQL_LIT_STRING;
    }
}

#define PIECE (64u << 10) /* escape/hex long values in pieces of this many bytes */

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Bytes mysql_real_escape_string escapes (without NO_BACKSLASH_ESCAPES). */
static const unsigned char needs_escape[256] = {
    [0] = 1, ['\n'] = 1, ['\r'] = 1, ['\\'] = 1, ['\''] = 1, ['"'] = 1, [0x1a] = 1,
};

/* Does [p, p+n) hold a byte that needs escaping? (Rows are mostly plain
 * text: with SSE2, sixteen bytes per step.) */
static int find_special(const char *p, size_t n)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t i = 0;
#if defined(__SSE2__)
    const __m128i c0 = _mm_set1_epi8(0), c1 = _mm_set1_epi8('\n'), c2 = _mm_set1_epi8('\r'),
                  c3 = _mm_set1_epi8('\\'), c4 = _mm_set1_epi8('\''), c5 = _mm_set1_epi8('"'),
                  c6 = _mm_set1_epi8(0x1a);
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(u + i));
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, c0), _mm_cmpeq_epi8(v, c1)),
                                              _mm_or_si128(_mm_cmpeq_epi8(v, c2), _mm_cmpeq_epi8(v, c3))),
                                 _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, c4), _mm_cmpeq_epi8(v, c5)),
                                              _mm_cmpeq_epi8(v, c6)));
        if (_mm_movemask_epi8(m))
            return 1;
    }
#endif
    for (; i < n; i++)
        if (needs_escape[u[i]])
            return 1;
    return 0;
}

coffer_status dbmysql_out_literal(dbmysql_out *o, dbmysql_lit kind, const char *val, unsigned long len,
                                  dbmysql_escape_fn esc, void *esc_ud)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!val)
        return dbmysql_out_put(o, "NULL", 4);
    /* Pieces that always fit the buffer, escaped or hex-encoded. */
    size_t piece = (o->cap - 1) / 2 < PIECE ? (o->cap - 1) / 2 : PIECE;
    /* Short values (nearly all of them) in one step when they fit. */
    if (kind == DBMYSQL_LIT_STRING && len <= 256 && o->cap - o->len >= 2 * (size_t)len + 2) {
        char *w = o->buf + o->len;
        *w++ = '\'';
        if (!find_special(val, len)) {
            memcpy(w, val, len);
            w += len;
        } else {
            w += esc(esc_ud, w, val, len);
        }
        *w++ = '\'';
        o->len = (size_t)(w - o->buf);
        return o->st;
    }
    switch (kind) {
    case DBMYSQL_LIT_NUMBER:
        return dbmysql_out_put(o, val, len);
    case DBMYSQL_LIT_HEX:
        if (dbmysql_out_put(o, "X'", 2))
            return o->st;
        while (len) {
            size_t k = len < piece ? len : piece;
            char *w = dbmysql_out_room(o, 2 * k);
            if (!w)
                return o->st;
            for (size_t i = 0; i < k; i++) {
                unsigned char c = (unsigned char)val[i];
                w[2 * i] = hex[c >> 4];
                w[2 * i + 1] = hex[c & 15];
            }
            o->len += 2 * k;
            val += k;
            len -= k;
        }
        return dbmysql_out_put(o, "'", 1);
    case DBMYSQL_LIT_STRING:
    default:
        if (dbmysql_out_put(o, "'", 1))
            return o->st;
        /* The connection speaks utf8mb4, where no byte of a multi-byte
         * character is ASCII: escaping piece by piece is exact. Most
         * values need no escaping at all; they are copied as they are,
         * which is what the escape function would write too. */
        while (len) {
            size_t k = len < piece ? len : piece;
            char *w = dbmysql_out_room(o, 2 * k + 1);
            if (!w)
                return o->st;
            if (!find_special(val, k)) {
                memcpy(w, val, k);
                o->len += k;
            } else {
                o->len += esc(esc_ud, w, val, (unsigned long)k);
            }
            val += k;
            len -= k;
        }
        return dbmysql_out_put(o, "'", 1);
    }
}

void dbmysql_batch_init(dbmysql_batch *b, const char *prefix, int nparts, dbmysql_part_fn open_part, void *ud)
{
    memset(b, 0, sizeof *b);
    b->nparts = nparts < 1 ? 1 : nparts > DBMYSQL_PARTS ? DBMYSQL_PARTS : nparts;
    b->open_part = open_part;
    b->ud = ud;
    b->prefix = prefix;
    b->prefix_len = strlen(prefix);
    b->min = DBMYSQL_BATCH_MIN;
    b->target = DBMYSQL_BATCH_TARGET;
    b->max = DBMYSQL_BATCH_MAX;
}

static coffer_status one_part(void *ud, int part, dbmysql_out **out)
{
    (void)part;
    *out = ud;
    return COFFER_OK;
}

void dbmysql_batch_init1(dbmysql_batch *b, dbmysql_out *o, const char *prefix)
{
    dbmysql_batch_init(b, prefix, 1, one_part, o);
}

static uint64_t pos(const dbmysql_out *o)
{
    return o->total + o->len;
}

static coffer_status fail(dbmysql_batch *b, coffer_status st)
{
    if (!b->st)
        b->st = st;
    return b->st;
}

coffer_status dbmysql_batch_row_begin(dbmysql_batch *b)
{
    if (b->st)
        return b->st;
    if (!b->stmt_bytes) {
        if (!b->parts[b->cur]) {
            coffer_status st = b->open_part(b->ud, b->cur, &b->parts[b->cur]);
            if (st)
                return fail(b, st);
        }
        b->out = b->parts[b->cur];
    }
    dbmysql_out *o = b->out;
    if (b->stmt_bytes) {
        if (dbmysql_out_put(o, ",\n", 2))
            return fail(b, o->st);
        b->stmt_bytes += 2;
    } else {
        if (dbmysql_out_put(o, b->prefix, b->prefix_len))
            return fail(b, o->st);
        b->stmt_bytes = b->prefix_len;
        b->statements++;
    }
    b->row_start = pos(o);
    o->hash = 0;
    o->hcarry = 0;
    o->hcarry_n = 0;
    o->hash_from = o->len;
    if (dbmysql_out_put(o, "(", 1))
        return fail(b, o->st);
    return COFFER_OK;
}

coffer_status dbmysql_batch_row_end(dbmysql_batch *b)
{
    dbmysql_out *o = b->out;
    if (b->st || !o)
        return b->st ? b->st : fail(b, COFFER_ERR_FAILED);
    if (dbmysql_out_put(o, ")", 1))
        return fail(b, o->st);
    fold(o, (const unsigned char *)o->buf + o->hash_from, o->len - o->hash_from);
    o->hash_from = SIZE_MAX;
    uint64_t h = (o->hash ^ o->hcarry) * 0x9E3779B97F4A7C15ull;
    uint64_t row_len = pos(o) - b->row_start;
    b->stmt_bytes += row_len;
    b->rows++;
    /* Finalise the hash so its bits depend on every byte. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    int cut = b->stmt_bytes >= b->max ||
              (b->stmt_bytes >= b->min && (row_len >= b->target || (h & (b->target - 1)) < row_len));
    if (cut) {
        b->stmt_bytes = 0;
        b->cur = (int)((h >> 40) % (uint64_t)b->nparts);
        if (dbmysql_out_put(o, ";\n", 2))
            return fail(b, o->st);
    }
    return o->st ? fail(b, o->st) : COFFER_OK;
}

coffer_status dbmysql_batch_finish(dbmysql_batch *b)
{
    if (b->st)
        return b->st;
    if (b->stmt_bytes) {
        b->stmt_bytes = 0;
        if (dbmysql_out_put(b->out, ";\n", 2))
            return fail(b, b->out->st);
    }
    return COFFER_OK;
}
