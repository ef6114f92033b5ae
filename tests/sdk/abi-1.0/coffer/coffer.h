/*
 * coffer SDK umbrella header: include this one from a driver.
 *
 * A driver's source defines its entry point with COFFER_DRIVER_ENTRY(name).
 * Built as a loadable .so it becomes the one exported symbol
 * coffer_plugin_init; built into the core (COFFER_BUILTIN defined) it
 * becomes coffer_builtin_<name>, listed in the core's built-in table.
 */
#ifndef COFFER_COFFER_H
#define COFFER_COFFER_H

#include "coffer/plugin.h"
#include "coffer/storage.h"
#include "coffer/database.h"

#ifdef COFFER_BUILTIN
#define COFFER_DRIVER_ENTRY(name) const coffer_plugin *coffer_builtin_##name(const coffer_host *host)
#else
#define COFFER_DRIVER_ENTRY(name) COFFER_EXPORT const coffer_plugin *coffer_plugin_init(const coffer_host *host)
#endif

/* Fill the common descriptor header. */
#define COFFER_PLUGIN_HEADER                                                                   \
    .struct_size = sizeof(coffer_plugin), .abi_major = COFFER_ABI_MAJOR,                       \
    .abi_minor = COFFER_ABI_MINOR

#endif
