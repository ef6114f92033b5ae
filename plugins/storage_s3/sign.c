/*
 * storage "s3": AWS Signature Version 4, written here on OpenSSL's
 * HMAC-SHA256 rather than taken from libcurl (CURLOPT_AWS_SIGV4 in
 * Debian's 7.88 mis-signs some query strings) or libs3 (signature v2
 * only). Checked against AWS's published test vectors in
 * tests/plugins/storage_s3/test_s3_sign.c.
 *
 * S3 differs from the generic algorithm in one point: the path is
 * encoded once and never normalised ("//" and ".." stay as they are).
 */
#include "s3.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

/* ---- strings ------------------------------------------------------------ */

static void grow(s3_str *b, size_t need)
{
    if (b->len + need + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + need + 1)
        cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s)
        abort(); /* same policy as the core's allocator */
    b->s = s;
    b->cap = cap;
}

void s3_str_add(s3_str *b, const void *p, size_t n)
{
    grow(b, n);
    if (n)
        memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = 0;
}

void s3_str_adds(s3_str *b, const char *s)
{
    s3_str_add(b, s, strlen(s));
}

void s3_str_addc(s3_str *b, char c)
{
    s3_str_add(b, &c, 1);
}

void s3_str_addf(s3_str *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    grow(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void s3_str_clear(s3_str *b)
{
    b->len = 0;
    if (b->s)
        b->s[0] = 0;
}

void s3_str_free(s3_str *b)
{
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
}

const char *s3_str_cstr(s3_str *b)
{
    return b->s ? b->s : "";
}

/* ---- encoding ------------------------------------------------------------ */

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

void s3_uri_encode(s3_str *out, const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (unreserved(*p) || (keep_slash && *p == '/')) {
            s3_str_addc(out, (char)*p);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            s3_str_add(out, e, 3);
        }
    }
}

typedef struct enc_pair {
    s3_str name, value;
    int has_value;
} enc_pair;

static int cmp_pair(const void *a, const void *b)
{
    const enc_pair *x = a, *y = b;
    int c = strcmp(s3_str_cstr((s3_str *)&x->name), s3_str_cstr((s3_str *)&y->name));
    return c ? c : strcmp(s3_str_cstr((s3_str *)&x->value), s3_str_cstr((s3_str *)&y->value));
}

void s3_query_string(s3_str *out, const s3_kv *q, size_t n, int for_url)
{
    if (n == 0)
        return;
    enc_pair *v = calloc(n, sizeof *v);
    if (!v)
        abort();
    for (size_t i = 0; i < n; i++) {
        s3_uri_encode(&v[i].name, q[i].name, 0);
        if (q[i].value) {
            s3_uri_encode(&v[i].value, q[i].value, 0);
            v[i].has_value = 1;
        }
    }
    /* Sorted by encoded name (byte order), then value. */
    qsort(v, n, sizeof *v, cmp_pair);
    for (size_t i = 0; i < n; i++) {
        if (i)
            s3_str_addc(out, '&');
        s3_str_adds(out, s3_str_cstr(&v[i].name));
        if (v[i].has_value || !for_url) {
            s3_str_addc(out, '=');
            s3_str_adds(out, s3_str_cstr(&v[i].value));
        }
        s3_str_free(&v[i].name);
        s3_str_free(&v[i].value);
    }
    free(v);
}

void s3_hex(const unsigned char *p, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 15];
    }
    out[2 * n] = 0;
}

void s3_sha256_hex(const void *p, size_t n, char out[65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(p, n, md);
    s3_hex(md, sizeof md, out);
}

void s3_amz_date(int64_t t, char out[17])
{
    time_t tt = (time_t)t;
    struct tm tm;
    /* Only years 1000-9999 make 16 characters (%Y does not pad, and far
     * enough gmtime fails): a clock that far off gets the nearest end. */
    if (!gmtime_r(&tt, &tm) || tm.tm_year + 1900 < 1000 || tm.tm_year + 1900 > 9999) {
        snprintf(out, 17, "%s", t < 0 ? "10000101T000000Z" : "99991231T235959Z");
        return;
    }
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* ---- canonical headers --------------------------------------------------- */

typedef struct hdr {
    char *name;   /* lower case */
    s3_str value; /* trimmed, inner runs of spaces collapsed */
    size_t order; /* first appearance, so duplicates keep their order */
} hdr;

static int cmp_hdr(const void *a, const void *b)
{
    const hdr *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static void trim_value(s3_str *out, const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    int space = 0;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n') {
            space = 1;
            continue;
        }
        if (space && out->len)
            s3_str_addc(out, ' ');
        space = 0;
        s3_str_addc(out, *v);
    }
}

/* ---- HMAC ---------------------------------------------------------------- */

static int hmac(const void *key, size_t klen, const void *msg, size_t mlen, unsigned char out[32])
{
    unsigned int n = 32;
    return HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &n) ? 0 : -1;
}

int s3_sign(const s3_sign_in *in, s3_sign_out *out)
{
    memset(out, 0, sizeof *out);
    s3_str *cr = &out->canonical;

    /* 1. canonical request */
    s3_str_adds(cr, in->method);
    s3_str_addc(cr, '\n');
    s3_uri_encode(cr, in->path && *in->path ? in->path : "/", 1);
    s3_str_addc(cr, '\n');
    s3_query_string(cr, in->query, in->nquery, 0);
    s3_str_addc(cr, '\n');

    hdr *h = calloc(in->nheaders ? in->nheaders : 1, sizeof *h);
    if (!h)
        abort();
    for (size_t i = 0; i < in->nheaders; i++) {
        h[i].name = strdup(in->headers[i].name);
        if (!h[i].name)
            abort();
        for (char *p = h[i].name; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        trim_value(&h[i].value, in->headers[i].value ? in->headers[i].value : "");
        h[i].order = i;
    }
    qsort(h, in->nheaders, sizeof *h, cmp_hdr);
    for (size_t i = 0; i < in->nheaders; i++) {
        if (i && strcmp(h[i].name, h[i - 1].name) == 0) {
            /* a repeated header: values joined with commas, in order */
            s3_str_addc(cr, ',');
        } else {
            if (i) {
                s3_str_addc(cr, '\n');
                s3_str_addc(&out->signed_headers, ';');
            }
            s3_str_adds(cr, h[i].name);
            s3_str_addc(cr, ':');
            s3_str_adds(&out->signed_headers, h[i].name);
        }
        s3_str_adds(cr, s3_str_cstr(&h[i].value));
    }
    for (size_t i = 0; i < in->nheaders; i++) {
        free(h[i].name);
        s3_str_free(&h[i].value);
    }
    free(h);
    s3_str_adds(cr, "\n\n");
    s3_str_adds(cr, s3_str_cstr(&out->signed_headers));
    s3_str_addc(cr, '\n');
    s3_str_adds(cr, in->payload_hash);

    /* 2. string to sign */
    /* The date part of x-amz-date: never read past a value shorter than
     * the 16 characters expected. */
    char date[9];
    size_t dl = strnlen(in->amz_date, 8);
    memcpy(date, in->amz_date, dl);
    date[dl] = 0;
    char crhash[65];
    s3_sha256_hex(cr->s, cr->len, crhash);
    s3_str_addf(&out->string_to_sign, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s",
                in->amz_date, date, in->region, in->service, crhash);

    /* 3. signing key: HMAC chain from "AWS4" + secret */
    size_t sl = strlen(in->secret_key);
    unsigned char *k0 = malloc(sl + 4);
    if (!k0)
        abort();
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, in->secret_key, sl);
    unsigned char k1[32], k2[32], k3[32], k4[32], sig[32];
    int rc = hmac(k0, sl + 4, date, 8, k1);
    OPENSSL_cleanse(k0, sl + 4);
    free(k0);
    if (rc == 0)
        rc = hmac(k1, 32, in->region, strlen(in->region), k2);
    if (rc == 0)
        rc = hmac(k2, 32, in->service, strlen(in->service), k3);
    if (rc == 0)
        rc = hmac(k3, 32, "aws4_request", 12, k4);
    if (rc == 0)
        rc = hmac(k4, 32, out->string_to_sign.s, out->string_to_sign.len, sig);
    OPENSSL_cleanse(k1, sizeof k1);
    OPENSSL_cleanse(k2, sizeof k2);
    OPENSSL_cleanse(k3, sizeof k3);
    OPENSSL_cleanse(k4, sizeof k4);
    if (rc != 0)
        return -1;
    s3_hex(sig, 32, out->signature);

    /* 4. Authorization header */
    s3_str_addf(
        &out->authorization,
        "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s",
        in->access_key, date, in->region, in->service, s3_str_cstr(&out->signed_headers),
        out->signature);
    return 0;
}

void s3_sign_out_free(s3_sign_out *out)
{
    s3_str_free(&out->canonical);
    s3_str_free(&out->string_to_sign);
    s3_str_free(&out->signed_headers);
    s3_str_free(&out->authorization);
}
