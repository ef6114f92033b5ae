/* The drivers' own option checks (validate, ABI 1.1), reported against the
 * policy text: the core knows where each option was written, the driver
 * only knows which one it rejects. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/config.h"
#include "plugin/host.h"
#include "plugin/registry.h"
#include "policy/policy.h"
#include "util/util.h"

typedef coffer_status (*validate_fn)(const coffer_host *, coffer_hctx *, const coffer_config *,
                                     const char **);

static int validate_one(const cf_policy *p, const char *path, coffer_driver_kind kind,
                        const char *driver, int line, int col, const coffer_config *cfg)
{
    const cf_driver *d = cf_registry_find(kind, driver);
    if (!d)
        return -1;
    validate_fn fn =
        kind == COFFER_KIND_STORAGE ? d->desc.storage->validate : d->desc.database->validate;
    if (!fn) {
        /* Say so for a driver that predates the operation: its author may
         * expect the check to happen. */
        if (d->desc.abi_major == 1 && d->desc.abi_minor < 1) {
            cf_registry_unsupported(d, "validate");
            cf_log(CF_LOG_WARN, "%s: %s: %s; only its option table was checked", p->file, path,
                   cf_error());
            cf_error_clear();
        }
        return 0;
    }
    char label[256];
    snprintf(label, sizeof label, "%s (%s)", path, driver);
    coffer_hctx *h = cf_hctx_new(label, p->root);
    const char *bad = NULL;
    coffer_status st = fn(cf_host_table(), h, cfg, &bad);
    int rc = 0;
    if (st != COFFER_OK) {
        cf_hctx_fail(h, st, NULL); /* takes the driver's message */
        char *msg = cf_strdup(cf_error());
        /* drop the label cf_hctx_fail put first: the prefix names it */
        const char *text = strncmp(msg, label, strlen(label)) == 0 ? msg + strlen(label) + 2 : msg;
        /* The prefix names the key: drop the driver's own "option KEY: " or
         * "KEY: " so the message says it once. */
        if (bad) {
            size_t bl = strlen(bad);
            if (strncmp(text, "option ", 7) == 0 && strncmp(text + 7, bad, bl) == 0 &&
                text[7 + bl] == ':' && text[8 + bl] == ' ')
                text += 9 + bl;
            else if (strncmp(text, bad, bl) == 0 && text[bl] == ':' && text[bl + 1] == ' ')
                text += bl + 2;
        }
        const cf_config_item *it = bad ? cf_config_find(cfg, bad) : NULL;
        if (it && it->line > 0)
            cf_fail("%s:%d:%d: %s.%s: %s driver '%s': %s", p->file, it->line, it->col, path, bad,
                    cf_kind_name(kind), driver, text);
        else if (bad)
            cf_fail("%s:%d:%d: %s.%s: %s driver '%s': %s", p->file, line, col, path, bad,
                    cf_kind_name(kind), driver, text);
        else
            cf_fail("%s:%d:%d: %s: %s driver '%s': %s", p->file, line, col, path,
                    cf_kind_name(kind), driver, text);
        free(msg);
        rc = -1;
    }
    cf_hctx_free(h);
    return rc;
}

int cf_registry_validate_policy(const cf_policy *p)
{
    for (size_t i = 0; i < p->ntargets; i++) {
        const cf_target *t = &p->targets[i];
        char path[64];
        snprintf(path, sizeof path, "targets[%zu]", i);
        if (validate_one(p, path, COFFER_KIND_STORAGE, t->driver, t->line, t->col, t->options) != 0)
            return -1;
    }
    for (size_t i = 0; i < p->ncomponents; i++) {
        const cf_component *c = &p->components[i];
        if (c->type == CF_COMP_FILES)
            continue;
        char path[64];
        snprintf(path, sizeof path, "components[%zu]", i);
        coffer_driver_kind kind =
            c->type == CF_COMP_DATABASE ? COFFER_KIND_DATABASE : COFFER_KIND_STORAGE;
        if (validate_one(p, path, kind, c->driver, c->line, c->col, c->options) != 0)
            return -1;
    }
    return 0;
}
