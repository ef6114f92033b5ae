/*
 * Content-defined chunking (FastCDC with normalized chunking). Only
 * writers need it: readers follow chunk lists in manifests.
 */
#ifndef CF_CHUNKER_H
#define CF_CHUNKER_H

#include <stddef.h>
#include <stdint.h>

typedef struct cf_cdc_params {
    uint32_t min_size, avg_size, max_size; /* avg is a power of two */
    uint64_t seed;                         /* derives the gear table */
} cf_cdc_params;

typedef struct cf_cdc {
    cf_cdc_params p;
    uint64_t gear[256];
    uint64_t mask_s, mask_l; /* normalized chunking masks */
} cf_cdc;

/* Fill defaults for zero fields; validate. 0 ok, -1 (cf_error set). */
int cf_cdc_init(cf_cdc *c, const cf_cdc_params *p);
/* Length of the chunk starting at buf[0], looking at up to len bytes.
 * The caller passes len >= max_size unless the data ends sooner; at the
 * end of data the remainder (<= max_size) is returned as the last chunk. */
size_t cf_cdc_cut(const cf_cdc *c, const uint8_t *buf, size_t len);

#endif
