/*
 * Differential harness of the manifest entry line grammar: the input is
 * one line; the streaming reader (its plain-line reader, else yajl) and
 * the tree reader (jansson) must both refuse it, or both accept it with the same entry. The head
 * reader (cf_entry_parse_head) must not fail on any line, and where it
 * gives a head of a line both readers accept, it is that entry's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest_diff.h"
#include "util/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cf_entry a, b;
    int ra = cf_entry_parse_fast((const char *)data, size, &a);
    char err_a[512];
    snprintf(err_a, sizeof err_a, "%s", ra ? cf_error() : "");
    int rb = cf_entry_parse_tree((const char *)data, size, &b);
    if (ra != rb) {
        fprintf(stderr,
                "manifest readers disagree on a line of %zu bytes: fast %s (%s), tree %s (%s)\n",
                size, ra ? "refuses" : "accepts", err_a, rb ? "refuses" : "accepts",
                rb ? cf_error() : "");
        abort();
    }
    cf_entry h;
    int rh = cf_entry_parse_head((const char *)data, size, &h);
    if (rh == 1 && ra == 0 &&
        (a.kind != CF_ENT_FILE || strcmp(a.component, h.component) != 0 ||
         strcmp(a.path, h.path) != 0)) {
        fprintf(stderr, "the head of a line of %zu bytes is not its entry's\n", size);
        abort();
    }
    cf_entry_clear(&h);
    if (ra == 0) {
        const char *d = cf_entry_diff(&a, &b);
        if (d) {
            fprintf(stderr, "manifest readers read a line of %zu bytes differently: %s\n", size, d);
            abort();
        }
    }
    cf_entry_clear(&a);
    cf_entry_clear(&b);
    return 0;
}
