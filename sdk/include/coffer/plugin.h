/*
 * coffer driver ABI: what every driver (database or storage) shares.
 *
 * A driver is a shared object exporting exactly one symbol,
 * COFFER_PLUGIN_ENTRY ("coffer_plugin_init"). The host calls it with its
 * services table and receives a descriptor. The driver never links against
 * the core: everything it needs from the host comes through coffer_host.
 *
 * Compatibility rules
 *  - abi_major changes only when an existing member changes meaning or
 *    position; the host refuses another major, naming both versions.
 *  - abi_minor grows when members are appended at the end of a struct.
 *    Every struct a party fills starts with struct_size; the reader checks
 *    struct_size before touching a member added by a later minor.
 *  - Members are never removed or reordered. Each says "since 1.N".
 *
 * Ownership: whoever allocates, frees. Instances and handles a driver
 * returns are released by that driver's own free/close/abort functions.
 * Output structs (coffer_object_stat, coffer_db_info): the core zeroes
 * them and sets struct_size before the call; the driver writes only the
 * members that fit in that struct_size.
 *
 * Reading a member added by a later minor: it exists when
 * struct_size >= COFFER_HAS_MEMBER_SIZE(type, member), and an optional
 * function pointer must also be non-NULL. The core reads a driver's
 * descriptor and operation tables this way, so a 1.0 driver keeps
 * loading; a driver reads coffer_host the same way (a 1.0 host lacks the
 * 1.1 services).
 *
 * Retries: the core does not retry a call that returned COFFER_ERR_RETRY
 * on its own; it reports the error naming the instance. A driver that
 * wants retries (e.g. a network store) does them inside the call.
 */
#ifndef COFFER_PLUGIN_H
#define COFFER_PLUGIN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define COFFER_ABI_MAJOR 1
#define COFFER_ABI_MINOR 3

/* The one exported symbol of a loadable driver. */
#define COFFER_PLUGIN_ENTRY "coffer_plugin_init"

#if defined(__GNUC__)
#define COFFER_EXPORT __attribute__((visibility("default")))
#define COFFER_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define COFFER_EXPORT
#define COFFER_PRINTF(a, b)
#endif

/* Size a struct must have for `member` to be present (struct_size check). */
#define COFFER_HAS_MEMBER_SIZE(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))

/* Status codes crossing the boundary. Never longjmp or throw across it. */
typedef enum coffer_status {
    COFFER_OK = 0,
    COFFER_ERR_RETRY = 1,       /* transient: the same call may succeed later */
    COFFER_ERR_FAILED = 2,      /* this operation failed; instance still usable */
    COFFER_ERR_FATAL = 3,       /* instance unusable; free it */
    COFFER_ERR_NOT_FOUND = 4,   /* object, file, table or version does not exist */
    COFFER_ERR_EXISTS = 5,      /* conditional create lost: object already there */
    COFFER_ERR_UNSUPPORTED = 6, /* optional operation not available */
    COFFER_ERR_CANCELLED = 7,   /* host asked to stop (signal) */
    COFFER_ERR_NO_SPACE = 8,    /* destination full */
    COFFER_ERR_INVALID = 9,     /* bad option or argument */
    COFFER_ERR_AUTH = 10,       /* credentials refused */
    COFFER_ERR_IO = 11,         /* local I/O error */
    COFFER_ERR_CORRUPT = 12,    /* data failed an integrity check */
    COFFER_ERR_LOCKED = 13,     /* since 1.2: the object is under retention or the store
                                   is append-only; nothing was changed */
} coffer_status;

typedef enum coffer_log_level {
    COFFER_LOG_ERROR = 0,
    COFFER_LOG_WARN = 1,
    COFFER_LOG_INFO = 2,
    COFFER_LOG_DEBUG = 3,
} coffer_log_level;

/* ---- Declared options ------------------------------------------------ */

typedef enum coffer_opt_type {
    COFFER_OPT_STRING = 0,
    COFFER_OPT_INT = 1,  /* signed decimal */
    COFFER_OPT_BOOL = 2, /* true/false/yes/no/on/off */
    COFFER_OPT_SIZE = 3, /* bytes, with optional K/M/G/T suffix (powers of 1024) */
    COFFER_OPT_LIST = 4, /* YAML sequence of strings (or one string) */
    COFFER_OPT_PATH = 5, /* string; relative paths resolve against policy root */
} coffer_opt_type;

/* One row of a driver's option table. The table ends with name == NULL.
 * The core validates policies against it, rejects unknown keys (listing
 * the valid ones), fills defaults, and prints it in `plugins --describe`.
 * A `secret` option's value is never logged or written to a manifest; a
 * secret itself should not be in policy text at all: declare *_env or
 * *_file options and read them with coffer_host.secret_get. */
typedef struct coffer_option {
    const char *name;
    coffer_opt_type type;
    const char *default_value; /* textual default, NULL for none */
    int required;              /* 1: policy must give it */
    int secret;                /* 1: never printed */
    const char *description;
} coffer_option;

/* ---- Host services --------------------------------------------------- */

/* Opaque per-instance host context. The driver keeps the pointer it was
 * given in instance_new and passes it back to every host call. */
typedef struct coffer_hctx coffer_hctx;

/* Resolved configuration of one instance (policy values + defaults). */
typedef struct coffer_config coffer_config;

typedef struct coffer_host {
    uint32_t struct_size; /* since 1.0 */
    uint32_t abi_major;   /* since 1.0 */
    uint32_t abi_minor;   /* since 1.0 */

    /* Log a line attributed to this instance. since 1.0 */
    void (*log)(coffer_hctx *h, coffer_log_level level, const char *fmt, ...) COFFER_PRINTF(3, 4);
    /* Record the error of the failing call and return `code`, so a driver
     * writes `return host->error(h, COFFER_ERR_FAILED, "...", ...)`.
     * The message is kept per thread (not per instance): call error on the
     * thread that returns the code, just before returning it. The core
     * prefixes it with the instance's label (target or component name).
     * The message must not contain secrets. since 1.0 */
    coffer_status (*error)(coffer_hctx *h, coffer_status code, const char *fmt, ...) COFFER_PRINTF(3, 4);
    /* Nonzero once the run is being cancelled (SIGINT/SIGTERM); long
     * operations poll it and return COFFER_ERR_CANCELLED. since 1.0 */
    int (*cancelled)(coffer_hctx *h);
    /* Report progress: bytes processed since the previous call. since 1.0 */
    void (*progress)(coffer_hctx *h, uint64_t bytes);

    /* Option values. config_get returns the value (or default) or NULL
     * when unset. The coffer_config given to instance_new (and validate)
     * belongs to the core and stays valid and unchanged until
     * instance_free returns (validate: until it returns), and so do the
     * strings read from it: keep the pointers, do not free them.
     * A target's storage driver also sees "location": the target's
     * location as the policy wrote it. since 1.0 */
    const char *(*config_get)(const coffer_config *c, const char *name);
    /* List options: number of items, and item i. since 1.0 */
    size_t (*config_list_len)(const coffer_config *c, const char *name);
    const char *(*config_list_item)(const coffer_config *c, const char *name, size_t i);
    /* Integer/size/bool options parsed by the core (already validated). since 1.0 */
    int64_t (*config_get_int)(const coffer_config *c, const char *name, int64_t dflt);
    int (*config_get_bool)(const coffer_config *c, const char *name, int dflt);

    /* Resolve a secret named by the option pair NAME_env / NAME_file
     * (environment variable name, or a file whose first line is the
     * secret). Returns a malloc'd string the driver must pass to
     * secret_free (which wipes it), or NULL when neither is set. since 1.0 */
    char *(*secret_get)(coffer_hctx *h, const coffer_config *c, const char *name);
    void (*secret_free)(char *secret);

    /* Write into buf a fresh path inside the run's private 0700 temporary
     * directory (not created). Returns 0, or -1 if buf is too small. since 1.0 */
    int (*temp_path)(coffer_hctx *h, const char *hint, char *buf, size_t len);

    /* Absolute policy root, for drivers resolving relative paths. since 1.0 */
    const char *(*policy_root)(coffer_hctx *h);

    /* The environment for a child process the driver starts: the host's
     * environment without its secrets (the policy's secret sources, the
     * repository passphrase, variables named like *PASSWORD, *PASSPHRASE,
     * *_TOKEN, *_PWD, *_SECRET*, values holding a URL with a password or
     * a password=... pair), without the names in `drop`, plus the
     * "NAME=VALUE" entries of `add`, which replace inherited ones. Both
     * lists end with NULL and may be NULL. Returns a NULL-terminated array
     * for execve/posix_spawn, or NULL when out of memory; release it with
     * child_env_free. A host older than 1.1 lacks these three services:
     * check struct_size (offsetof(coffer_host, member) + sizeof(void *))
     * and the pointer before calling. since 1.1 */
    char **(*child_env)(coffer_hctx *h, const char *const *drop, const char *const *add);
    void (*child_env_free)(char **env);
    /* Declare an environment variable as a secret source the policy's
     * options do not show (e.g. named by a --map URL): no child started
     * afterwards gets it. Thread-safe; the name is copied. since 1.1 */
    void (*child_env_secret)(coffer_hctx *h, const char *name);
} coffer_host;

/* ---- Descriptor ------------------------------------------------------ */

typedef enum coffer_driver_kind {
    COFFER_KIND_STORAGE = 1,
    COFFER_KIND_DATABASE = 2,
} coffer_driver_kind;

/* Threading promise made by the driver. */
typedef enum coffer_threading {
    COFFER_THREADS_NONE = 0,         /* one thread at a time per process */
    COFFER_THREADS_PER_INSTANCE = 1, /* instances independent; one thread per instance */
    COFFER_THREADS_HANDLES = 2,      /* distinct handles of one instance usable from distinct threads */
} coffer_threading;

struct coffer_storage_ops;
struct coffer_database_ops;

typedef struct coffer_plugin {
    uint32_t struct_size; /* since 1.0: sizeof(coffer_plugin) of the driver's SDK */
    uint32_t abi_major;   /* since 1.0: COFFER_ABI_MAJOR the driver was built with */
    uint32_t abi_minor;   /* since 1.0 */
    coffer_driver_kind kind;     /* since 1.0 */
    const char *name;            /* since 1.0: "sqlite", "local", "s3", ... */
    const char *version;         /* since 1.0: driver's own version string */
    const char *description;     /* since 1.0: one line */
    coffer_threading threading;  /* since 1.0 */
    const coffer_option *options; /* since 1.0: NULL-terminated table */
    /* Exactly one of these is set, per kind. since 1.0 */
    const struct coffer_storage_ops *storage;
    const struct coffer_database_ops *database;
    /* Called once before unload. May be NULL. since 1.0 */
    void (*teardown)(void);
} coffer_plugin;

/* Entry point signature. Returns NULL on failure (log through host). */
typedef const coffer_plugin *(*coffer_plugin_init_fn)(const coffer_host *host);

/* Handles carry a magic number so misuse (wrong or freed handle) fails
 * loudly. Drivers set it on creation and clear it on close. */
#define COFFER_MAGIC_READER 0x43465244u /* "CFRD" */
#define COFFER_MAGIC_WRITER 0x43465752u /* "CFWR" */
#define COFFER_MAGIC_INSTANCE 0x4346494Eu /* "CFIN" */

#ifdef __cplusplus
}
#endif
#endif
