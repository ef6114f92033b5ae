/*
 * FastCDC with normalized chunking (Xia et al., "The Design of Fast
 * Content-Defined Chunking for Data Deduplication Based Storage Systems",
 * 2020). The exact algorithm, gear table and masks are specified in
 * docs/repository-format.md, section "Chunking"; keep the two in step:
 * changing a single bit here changes every chunk boundary and defeats
 * deduplication against existing repositories.
 */
#include "repo/chunker.h"

#include <string.h>

#include "util/util.h"

#define CDC_DEFAULT_MIN (512u * 1024)
#define CDC_DEFAULT_AVG (1024u * 1024)
#define CDC_DEFAULT_MAX (8u * 1024 * 1024)
/* The window hash covers 64 bytes (fp is shifted left once per byte). */
#define CDC_WINDOW 64u
#define CDC_MAX_MAX (256u * 1024 * 1024)

/* splitmix64 (Steele, Lea, Flood 2014): tiny, public, and trivially
 * reproducible, which is all the gear table needs. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int is_pow2(uint32_t v)
{
    return v && !(v & (v - 1));
}

static unsigned log2u(uint32_t v)
{
    unsigned b = 0;
    while (v >>= 1)
        b++;
    return b;
}

int cf_cdc_init(cf_cdc *c, const cf_cdc_params *p)
{
    memset(c, 0, sizeof *c);
    if (p)
        c->p = *p;
    if (!c->p.min_size)
        c->p.min_size = CDC_DEFAULT_MIN;
    if (!c->p.avg_size)
        c->p.avg_size = CDC_DEFAULT_AVG;
    if (!c->p.max_size)
        c->p.max_size = CDC_DEFAULT_MAX;

    const cf_cdc_params *q = &c->p;
    if (!is_pow2(q->avg_size) || q->avg_size < 256 || q->avg_size > (1u << 28))
        return cf_fail("chunker: average size %u must be a power of two between 256 and 256 MiB",
                       q->avg_size);
    if (q->min_size < CDC_WINDOW || q->min_size >= q->avg_size)
        return cf_fail("chunker: minimum size %u must be at least %u and below the average %u",
                       q->min_size, CDC_WINDOW, q->avg_size);
    if (q->max_size <= q->avg_size || q->max_size > CDC_MAX_MAX)
        return cf_fail("chunker: maximum size %u must be above the average %u and at most %u",
                       q->max_size, q->avg_size, CDC_MAX_MAX);

    uint64_t state = q->seed;
    for (int i = 0; i < 256; i++)
        c->gear[i] = splitmix64(&state);

    /* Normalized chunking, level 2: before the average size a cut needs
     * bits+2 zero bits (harder), after it bits-2 (easier). The top bits
     * are used because bit k of fp depends on the last k+1 bytes only. */
    unsigned bits = log2u(q->avg_size);
    c->mask_s = ~0ull << (64 - (bits + 2));
    c->mask_l = ~0ull << (64 - (bits - 2));
    return 0;
}

size_t cf_cdc_cut(const cf_cdc *c, const uint8_t *buf, size_t len)
{
    const size_t min = c->p.min_size;
    if (len <= min)
        return len;
    const size_t n = len < c->p.max_size ? len : c->p.max_size;
    const size_t a = n < c->p.avg_size ? n : c->p.avg_size;
    const uint64_t *g = c->gear;
    const uint64_t ms = c->mask_s, ml = c->mask_l;
    uint64_t fp = 0;
    size_t i = min - CDC_WINDOW;

    /* Warm up on the 63 bytes before the first candidate so the hash at
     * every candidate covers a full 64-byte window: cut decisions then
     * depend on content only, not on where the chunk started. */
    for (; i < min - 1; i++)
        fp = (fp << 1) + g[buf[i]];
    /* Candidate length i+1 in [min, avg): strict mask. */
    for (; i < a - 1; i++) {
        fp = (fp << 1) + g[buf[i]];
        if (!(fp & ms))
            return i + 1;
    }
    /* Candidate length i+1 in [avg, max]: loose mask. */
    for (; i < n; i++) {
        fp = (fp << 1) + g[buf[i]];
        if (!(fp & ml))
            return i + 1;
    }
    return n;
}
