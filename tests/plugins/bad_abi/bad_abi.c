/* A driver that claims another ABI major: the loader must refuse it with a
 * message naming both versions. Built only for the tests. */
#include <coffer/coffer.h>

static const coffer_storage_ops ops = {.struct_size = sizeof(coffer_storage_ops)};

static const coffer_plugin desc = {
    .struct_size = sizeof(coffer_plugin),
    .abi_major = 99,
    .abi_minor = 7,
    .kind = COFFER_KIND_STORAGE,
    .name = "badabi",
    .version = "0",
    .description = "test driver with a foreign ABI major",
    .storage = &ops,
};

COFFER_EXPORT const coffer_plugin *coffer_plugin_init(const coffer_host *host)
{
    (void)host;
    return &desc;
}
