#ifndef CF_VERIFY_H
#define CF_VERIFY_H

#include <jansson.h>

#include "engine/run.h"

typedef struct cf_verify_opts {
    const char *set;  /* id, prefix, "latest" (default) or "all" */
    int read_data;    /* read, decompress and hash every chunk; check databases */
} cf_verify_opts;

/* Returns CF_EXIT_OK, CF_EXIT_PROBLEMS (each problem logged and listed in
 * *report, naming set, path, chunk and pack) or CF_EXIT_FAILED. */
int cf_verify(cf_run *run, const cf_verify_opts *o, json_t **report);

#endif
