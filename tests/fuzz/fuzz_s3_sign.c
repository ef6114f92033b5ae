/*
 * SigV4 canonicalisation of the S3 driver (plugins/storage_s3/sign.c).
 * The input is lines: method, path, payload hash, access key, secret key,
 * region, service, x-amz-date, then "?name[=value]" query parameters and
 * "name:value" headers. Besides crashes it checks what must hold for any
 * input: encodings use only unreserved bytes and %XX, the signature is 64
 * hex digits and signing is deterministic.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3.h"

#define MAX_KV 64

static void must(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "sigv4: %s\n", what);
        abort();
    }
}

static int encoded_ok(const char *s, int keep_slash)
{
    for (; *s; s++) {
        if (*s == '%') {
            if (!s[1] || !s[2] || !strchr("0123456789ABCDEF", s[1]) ||
                !strchr("0123456789ABCDEF", s[2]))
                return 0;
            s += 2;
        } else if (!(strchr("-._~", *s) || (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
                     (*s >= '0' && *s <= '9') || (keep_slash && *s == '/'))) {
            return 0;
        }
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    const char *field[8] = {"GET",       "/",  "UNSIGNED-PAYLOAD", "AK", "SK",
                            "us-east-1", "s3", "20261127T033000Z"};
    s3_kv query[MAX_KV], headers[MAX_KV];
    size_t nq = 0, nh = 0, nf = 0;
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        if (nf < 8) {
            field[nf++] = line;
        } else if (line[0] == '?' && nq < MAX_KV) {
            char *eq = strchr(line + 1, '=');
            if (eq)
                *eq = 0;
            query[nq++] = (s3_kv){line + 1, eq ? eq + 1 : NULL};
        } else if (nh < MAX_KV) {
            char *colon = strchr(line, ':');
            if (colon)
                *colon = 0;
            headers[nh++] = (s3_kv){line, colon ? colon + 1 : NULL};
        }
    }
    s3_sign_in in = {.method = field[0],
                     .path = field[1],
                     .payload_hash = field[2],
                     .access_key = field[3],
                     .secret_key = field[4],
                     .region = field[5],
                     .service = field[6],
                     .amz_date = field[7],
                     .query = query,
                     .nquery = nq,
                     .headers = headers,
                     .nheaders = nh};
    s3_sign_out a, b;
    int ra = s3_sign(&in, &a), rb = s3_sign(&in, &b);
    must(ra == 0 && rb == 0, "signing failed");
    must(strlen(a.signature) == 64 && strspn(a.signature, "0123456789abcdef") == 64,
         "signature is not 64 hex digits");
    must(strcmp(a.signature, b.signature) == 0 && strcmp(a.canonical.s, b.canonical.s) == 0,
         "signing is not deterministic");
    must(strstr(s3_str_cstr(&a.authorization), a.signature) != NULL,
         "Authorization lacks the signature");
    s3_sign_out_free(&a);
    s3_sign_out_free(&b);

    s3_str e = {0};
    s3_uri_encode(&e, field[1], 1);
    must(encoded_ok(s3_str_cstr(&e), 1), "path encoding has a reserved byte");
    s3_str_clear(&e);
    s3_uri_encode(&e, field[1], 0);
    must(encoded_ok(s3_str_cstr(&e), 0), "encoding has a reserved byte");
    s3_str_clear(&e);
    s3_query_string(&e, query, nq, 1);
    s3_str_clear(&e);
    s3_query_string(&e, query, nq, 0);
    s3_str_free(&e);

    int64_t t = 0;
    memcpy(&t, data, size < sizeof t ? size : sizeof t);
    char date[17];
    s3_amz_date(t, date);
    must(strlen(date) == 16, "x-amz-date is not 16 characters");
    (void)s3_parse_iso8601(field[7]);
    free(text);
    return 0;
}
