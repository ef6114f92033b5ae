/* Helpers shared by the repository tests (header-only: each test is one
 * executable). */
#ifndef REPO_TEST_H
#define REPO_TEST_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mem_storage.h"
#include "repo/repo.h"

/* Deterministic pseudo-random bytes (xorshift64*): incompressible. */
static inline void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        uint64_t v = x * 0x2545F4914F6CDD1Dull;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        p[i] = (uint8_t)((x * 0x2545F4914F6CDD1Dull) >> 56);
    }
}

/* Compressible bytes: text-like. */
static inline void fill_text(uint8_t *p, size_t n, uint64_t seed)
{
    static const char *words[] = {"coffer ", "backup ", "chunk ", "pack ", "index ", "restore ",
                                  "policy ", "\n"};
    size_t i = 0;
    uint64_t x = seed + 7;
    while (i < n) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        const char *w = words[(x >> 33) % 8];
        for (; *w && i < n; w++)
            p[i++] = (uint8_t)*w;
    }
}

/* A fresh initialised repository on a new in-memory store. */
static inline cf_repo *new_repo(cf_store **st, mem_storage **ms, uint64_t pack_size)
{
    *st = mem_store_new("mem", ms);
    cf_repo_params p = {.cdc = {.min_size = 2048, .avg_size = 8192, .max_size = 65536, .seed = 42},
                        .pack_size = pack_size};
    if (cf_repo_init(*st, &p) != 0) {
        fprintf(stderr, "init: %s\n", cf_error());
        return NULL;
    }
    cf_repo *r = NULL;
    if (cf_repo_open(*st, &r) != 0)
        fprintf(stderr, "open: %s\n", cf_error());
    return r;
}

/* assert that cf_error() contains s */
#define assert_error_has(s)                                                                        \
    do {                                                                                           \
        if (!strstr(cf_error(), (s))) {                                                            \
            print_error("error \"%s\" does not contain \"%s\"\n", cf_error(), (s));               \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

#endif
