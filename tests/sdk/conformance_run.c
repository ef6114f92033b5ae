/* conformance_run DRIVER.so KEY=VALUE...: load a storage driver and run the
 * testing kit's conformance suite on it with those options (plus the
 * driver's defaults). Exit status: the number of failures (capped at 100),
 * 99 when the driver cannot be loaded. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coffer/testing.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: conformance_run DRIVER.so [KEY=VALUE]...\n");
        return 99;
    }
    void *dl = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    coffer_plugin_init_fn init = NULL;
    if (dl)
        *(void **)&init = dlsym(dl, COFFER_PLUGIN_ENTRY);
    if (!init) {
        fprintf(stderr, "%s: cannot load: %s\n", argv[1], dlerror());
        return 99;
    }
    coffer_test_host *t = coffer_test_host_new(NULL);
    const coffer_plugin *p = init(coffer_test_host_table(t));
    if (!p) {
        fprintf(stderr, "%s: no descriptor\n", argv[1]);
        return 99;
    }
    coffer_config *cfg = coffer_test_config(NULL);
    for (int i = 2; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) {
            fprintf(stderr, "%s: expected KEY=VALUE\n", argv[i]);
            return 99;
        }
        *eq = 0;
        coffer_test_config_set(cfg, argv[i], eq + 1);
    }
    coffer_test_config_defaults(cfg, p->options);
    int fails = coffer_test_storage_conformance(p, cfg, NULL, stdout);
    coffer_test_config_free(cfg);
    coffer_test_host_free(t);
    return fails > 100 ? 100 : fails;
}
