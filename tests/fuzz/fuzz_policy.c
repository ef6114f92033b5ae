/*
 * The policy parser (core/policy): YAML tree, ${VAR} expansion, schema
 * and validation. The input is one policy file.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"
#include "util/util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Deterministic expansion: the seeds use these. */
    setenv("ASTERDRIVE_ROOT", "/srv/asterdrive", 1);
    setenv("COFFER_REPO", "/srv/backups", 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cf_policy *p = NULL;
    if (cf_policy_load_string("fuzz.yaml", (const char *)data, size, &p) == 0)
        cf_policy_free(p);
    /* The expansion and duration grammars on their own (C strings). */
    char *s = cf_strndup((const char *)data, size);
    char *x = cf_expand_env(s);
    free(x);
    cf_duration d;
    (void)cf_duration_parse(s, &d);
    free(s);
    return 0;
}
