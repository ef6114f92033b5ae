/*
 * "hello": an example coffer storage driver, built out of tree against the
 * installed SDK (see README.md). It keeps every object as one file in a
 * single flat directory, named <prefix><key> with '/' and '%' escaped, so
 * "data/ab/ab12" becomes "obj-data%2Fab%2Fab12". Small, but a real driver:
 * a coffer repository can live on it.
 *
 * What it shows, by ABI rule (docs/writing-drivers.md):
 *  - one exported symbol (COFFER_DRIVER_ENTRY) returning a static,
 *    versioned descriptor; everything else is static;
 *  - a declared option table instead of parsing;
 *  - all state in a per-instance struct, no mutable globals;
 *  - streaming reader/writer handles carrying a magic number;
 *  - atomic publish (temporary file + rename) and conditional create
 *    (link(), which fails if the name exists);
 *  - errors as a status code plus a message through host->error, naming
 *    the key and the file.
 */
#include <coffer/coffer.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TMP_PREFIX ".hello-tmp-" /* encoded names never start with '.' */

typedef struct hello {
    uint32_t magic; /* COFFER_MAGIC_INSTANCE */
    const coffer_host *host;
    coffer_hctx *h;
    char *dir;
    char *prefix;
} hello;

typedef struct hello_writer {
    uint32_t magic; /* COFFER_MAGIC_WRITER */
    hello *hi;
    int fd;
    int if_absent;
    char *key, *path, *tmp;
} hello_writer;

typedef struct hello_reader {
    uint32_t magic; /* COFFER_MAGIC_READER */
    hello *hi;
    int fd;
    uint64_t pos, left;
} hello_reader;

/* A wrong or closed handle is a bug in the caller: stop loudly. */
static void check(const void *p, uint32_t magic)
{
    if (!p || *(const uint32_t *)p != magic) {
        fprintf(stderr, "hello storage driver: invalid handle %p\n", p);
        abort();
    }
}

static coffer_status fail_errno(hello *hi, int err, const char *what, const char *key)
{
    coffer_status st = err == ENOENT ? COFFER_ERR_NOT_FOUND
                       : err == ENOSPC || err == EDQUOT ? COFFER_ERR_NO_SPACE
                       : err == EEXIST ? COFFER_ERR_EXISTS
                       : err == ENAMETOOLONG ? COFFER_ERR_INVALID
                                             : COFFER_ERR_IO;
    return hi->host->error(hi->h, st, "%s '%s' in %s: %s", what, key, hi->dir, strerror(err));
}

/* Keys are '/'-separated segments, none empty, "." or "..". */
static int key_ok(const char *key)
{
    if (!key || !*key || key[0] == '/')
        return 0;
    for (const char *seg = key;;) {
        size_t n = strcspn(seg, "/");
        if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return 0;
        if (!seg[n])
            return 1;
        seg += n + 1;
    }
}

/* *out = "<dir>/<prefix><escaped key>" (malloc'd). */
static coffer_status object_path(hello *hi, const char *key, char **out)
{
    *out = NULL;
    if (!key_ok(key))
        return hi->host->error(hi->h, COFFER_ERR_INVALID, "invalid key '%s'", key ? key : "(null)");
    size_t n = strlen(hi->dir) + 1 + strlen(hi->prefix) + 3 * strlen(key) + 1;
    char *p = malloc(n), *o;
    if (!p)
        return hi->host->error(hi->h, COFFER_ERR_FATAL, "out of memory");
    o = p + sprintf(p, "%s/%s", hi->dir, hi->prefix);
    for (const char *k = key; *k; k++) {
        if (*k == '/' || *k == '%' || (k == key && *k == '.' && !hi->prefix[0]))
            o += sprintf(o, "%%%02X", (unsigned char)*k);
        else
            *o++ = *k;
    }
    *o = 0;
    *out = p;
    return COFFER_OK;
}

/* Inverse of object_path's escaping, for list. 0 ok, -1 not one of ours. */
static int decode(const char *name, char *out, size_t len)
{
    size_t o = 0;
    for (const char *s = name; *s; s++) {
        if (o + 1 >= len)
            return -1;
        unsigned v;
        if (*s == '%' && sscanf(s + 1, "%2X", &v) == 1) {
            out[o++] = (char)v;
            s += 2;
        } else {
            out[o++] = *s;
        }
    }
    out[o] = 0;
    return 0;
}

static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* ---- instance ---------------------------------------------------------- */

static const coffer_option hello_options[] = {
    {"dir", COFFER_OPT_PATH, NULL, 0, 0, "directory that holds the objects (default: the target's location)"},
    {"prefix", COFFER_OPT_STRING, "obj-", 0, 0, "file name prefix of every object"},
    {NULL, 0, NULL, 0, 0, NULL},
};

static void hello_free(void *inst)
{
    if (!inst)
        return;
    hello *hi = inst;
    check(hi, COFFER_MAGIC_INSTANCE);
    hi->magic = 0;
    free(hi->dir);
    free(hi->prefix);
    free(hi);
}

static coffer_status hello_new(const coffer_host *host, coffer_hctx *h, const coffer_config *cfg, void **inst)
{
    const char *dir = host->config_get(cfg, "dir");
    const char *prefix = host->config_get(cfg, "prefix");
    if (!dir || !*dir) /* the core passes a target's location as an option too */
        dir = host->config_get(cfg, "location");
    if (!dir || !*dir || dir[0] != '/')
        return host->error(h, COFFER_ERR_INVALID, "give option 'dir' or an absolute location");
    if (!prefix) /* the core fills defaults; a bare test host may not */
        prefix = "obj-";
    if (prefix[0] == '.' || strchr(prefix, '/'))
        return host->error(h, COFFER_ERR_INVALID, "option prefix: '%s' may not start with '.' or contain '/'",
                           prefix);
    hello *hi = calloc(1, sizeof *hi);
    if (!hi)
        return host->error(h, COFFER_ERR_FATAL, "out of memory");
    hi->magic = COFFER_MAGIC_INSTANCE;
    hi->host = host;
    hi->h = h;
    /* A relative dir is relative to the policy root. */
    const char *root = host->policy_root(h);
    if (dir[0] != '/' && root) {
        hi->dir = malloc(strlen(root) + strlen(dir) + 2);
        if (hi->dir)
            sprintf(hi->dir, "%s/%s", root, dir);
    } else {
        hi->dir = strdup(dir);
    }
    hi->prefix = strdup(prefix);
    if (!hi->dir || !hi->prefix) {
        hello_free(hi);
        return host->error(h, COFFER_ERR_FATAL, "out of memory");
    }
    *inst = hi;
    return COFFER_OK;
}

static uint32_t hello_caps(void *inst)
{
    check(inst, COFFER_MAGIC_INSTANCE);
    return COFFER_CAP_ATOMIC_PUBLISH | COFFER_CAP_CONDITIONAL_CREATE | COFFER_CAP_RANGED_READ;
}

static coffer_status hello_prepare(void *inst, int create)
{
    hello *hi = inst;
    check(hi, COFFER_MAGIC_INSTANCE);
    if (create && mkdir(hi->dir, 0700) != 0 && errno != EEXIST)
        return hi->host->error(hi->h, COFFER_ERR_IO, "cannot create %s: %s", hi->dir, strerror(errno));
    struct stat sb;
    if (stat(hi->dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return hi->host->error(hi->h, COFFER_ERR_NOT_FOUND, "directory %s does not exist", hi->dir);
    return COFFER_OK;
}

/* ---- writers ------------------------------------------------------------ */

static void writer_free(hello_writer *w)
{
    w->magic = 0;
    if (w->fd >= 0)
        close(w->fd);
    if (w->tmp)
        unlink(w->tmp);
    free(w->key);
    free(w->path);
    free(w->tmp);
    free(w);
}

static coffer_status hello_writer_open(void *inst, const char *key, const coffer_write_opts *opts, void **out)
{
    hello *hi = inst;
    check(hi, COFFER_MAGIC_INSTANCE);
    char *path;
    coffer_status st = object_path(hi, key, &path);
    if (st)
        return st;
    hello_writer *w = calloc(1, sizeof *w);
    if (!w) {
        free(path);
        return hi->host->error(hi->h, COFFER_ERR_FATAL, "out of memory");
    }
    w->magic = COFFER_MAGIC_WRITER;
    w->hi = hi;
    w->path = path;
    w->key = strdup(key);
    /* Only read members the caller's struct has (ABI: struct_size). */
    w->if_absent = opts && opts->struct_size >= offsetof(coffer_write_opts, flags) + sizeof opts->flags &&
                   (opts->flags & COFFER_WRITE_IF_ABSENT);
    w->tmp = malloc(strlen(hi->dir) + sizeof TMP_PREFIX + 8);
    if (!w->key || !w->tmp) {
        w->fd = -1;
        writer_free(w);
        return hi->host->error(hi->h, COFFER_ERR_FATAL, "out of memory");
    }
    sprintf(w->tmp, "%s/" TMP_PREFIX "XXXXXX", hi->dir);
    w->fd = mkstemp(w->tmp); /* mode 0600: backup data is private */
    if (w->fd < 0) {
        st = fail_errno(hi, errno, "cannot create a temporary file for", key);
        free(w->tmp);
        w->tmp = NULL;
        writer_free(w);
        return st;
    }
    *out = w;
    return COFFER_OK;
}

static coffer_status hello_writer_write(void *writer, const void *buf, size_t len)
{
    hello_writer *w = writer;
    check(w, COFFER_MAGIC_WRITER);
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(w->fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail_errno(w->hi, errno, "cannot write", w->key);
        p += n;
        len -= (size_t)n;
    }
    return COFFER_OK;
}

/* Publish atomically; frees the writer whatever happens (ABI). */
static coffer_status hello_writer_commit(void *writer)
{
    hello_writer *w = writer;
    check(w, COFFER_MAGIC_WRITER);
    hello *hi = w->hi;
    coffer_status st = COFFER_OK;
    if (fsync(w->fd) != 0) {
        st = fail_errno(hi, errno, "cannot flush", w->key);
    } else if (w->if_absent) {
        /* link() fails with EEXIST if the name exists: atomic create. */
        if (link(w->tmp, w->path) != 0)
            st = errno == EEXIST ? hi->host->error(hi->h, COFFER_ERR_EXISTS, "object '%s' already exists", w->key)
                                 : fail_errno(hi, errno, "cannot publish", w->key);
    } else if (rename(w->tmp, w->path) != 0) {
        st = fail_errno(hi, errno, "cannot publish", w->key);
    }
    if (st == COFFER_OK && sync_dir(hi->dir) != 0)
        st = fail_errno(hi, errno, "cannot sync the directory of", w->key);
    writer_free(w); /* unlinks the temporary name (gone already after rename) */
    return st;
}

static void hello_writer_abort(void *writer)
{
    check(writer, COFFER_MAGIC_WRITER);
    writer_free(writer);
}

/* ---- readers ------------------------------------------------------------ */

static coffer_status hello_reader_open(void *inst, const char *key, uint64_t offset, uint64_t length, void **out)
{
    hello *hi = inst;
    check(hi, COFFER_MAGIC_INSTANCE);
    char *path;
    coffer_status st = object_path(hi, key, &path);
    if (st)
        return st;
    int fd = open(path, O_RDONLY);
    int err = errno;
    free(path);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        st = fail_errno(hi, fd < 0 ? err : errno, "cannot open", key);
        if (fd >= 0)
            close(fd);
        return st;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (offset > size) {
        close(fd);
        return hi->host->error(hi->h, COFFER_ERR_INVALID, "offset %llu is past the end of '%s'",
                               (unsigned long long)offset, key);
    }
    hello_reader *r = calloc(1, sizeof *r);
    if (!r) {
        close(fd);
        return hi->host->error(hi->h, COFFER_ERR_FATAL, "out of memory");
    }
    r->magic = COFFER_MAGIC_READER;
    r->hi = hi;
    r->fd = fd;
    r->pos = offset;
    r->left = length == 0 || length > size - offset ? size - offset : length;
    *out = r;
    return COFFER_OK;
}

static coffer_status hello_reader_read(void *reader, void *buf, size_t len, size_t *got)
{
    hello_reader *r = reader;
    check(r, COFFER_MAGIC_READER);
    *got = 0;
    if (r->left == 0)
        return COFFER_OK; /* end of object */
    if (len > r->left)
        len = (size_t)r->left;
    ssize_t n;
    do
        n = pread(r->fd, buf, len, (off_t)r->pos);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return r->hi->host->error(r->hi->h, COFFER_ERR_IO, "read failed at byte %llu in %s",
                                  (unsigned long long)r->pos, r->hi->dir);
    r->pos += (uint64_t)n;
    r->left -= (uint64_t)n;
    *got = (size_t)n;
    return COFFER_OK;
}

static void hello_reader_close(void *reader)
{
    hello_reader *r = reader;
    check(r, COFFER_MAGIC_READER);
    r->magic = 0;
    close(r->fd);
    free(r);
}

/* ---- namespace ---------------------------------------------------------- */

static coffer_status hello_stat(void *inst, const char *key, coffer_object_stat *st)
{
    hello *hi = inst;
    check(hi, COFFER_MAGIC_INSTANCE);
    char *path;
    coffer_status rc = object_path(hi, key, &path);
    if (rc)
        return rc;
    struct stat sb;
    int err = stat(path, &sb) == 0 ? 0 : errno;
    free(path);
    if (err)
        return fail_errno(hi, err, "cannot stat", key);
    st->size = (uint64_t)sb.st_size;
    st->mtime = (int64_t)sb.st_mtime;
    st->etag[0] = 0;
    return COFFER_OK;
}

static coffer_status hello_list(void *inst, const char *prefix, coffer_list_cb cb, void *ud)
{
    hello *hi = inst;
    check(hi, COFFER_MAGIC_INSTANCE);
    DIR *d = opendir(hi->dir);
    if (!d)
        return fail_errno(hi, errno, "cannot list", prefix ? prefix : "");
    size_t plen = strlen(hi->prefix), klen = prefix ? strlen(prefix) : 0;
    struct dirent *de;
    char key[NAME_MAX + 1];
    while ((de = readdir(d)) != NULL) {
        /* Temporary files and anything else start with something else. */
        if (strncmp(de->d_name, hi->prefix, plen) != 0 || de->d_name[0] == '.' ||
            decode(de->d_name + plen, key, sizeof key) != 0 || strncmp(key, prefix ? prefix : "", klen) != 0)
            continue;
        struct stat sb;
        if (fstatat(dirfd(d), de->d_name, &sb, 0) != 0 || !S_ISREG(sb.st_mode))
            continue;
        coffer_object_stat st = {.struct_size = sizeof st, .size = (uint64_t)sb.st_size, .mtime = sb.st_mtime};
        if (cb(ud, key, &st) != 0)
            break;
    }
    closedir(d);
    return COFFER_OK;
}

static coffer_status hello_remove(void *inst, const char *key)
{
    hello *hi = inst;
    check(hi, COFFER_MAGIC_INSTANCE);
    char *path;
    coffer_status rc = object_path(hi, key, &path);
    if (rc)
        return rc;
    int err = unlink(path) == 0 ? 0 : errno;
    free(path);
    return err ? fail_errno(hi, err, "cannot remove", key) : COFFER_OK;
}

/* ---- descriptor ----------------------------------------------------------- */

static const coffer_storage_ops hello_ops = {
    .struct_size = sizeof(coffer_storage_ops),
    .instance_new = hello_new,
    .instance_free = hello_free,
    .capabilities = hello_caps,
    .prepare = hello_prepare,
    .writer_open = hello_writer_open,
    .writer_write = hello_writer_write,
    .writer_commit = hello_writer_commit,
    .writer_abort = hello_writer_abort,
    .reader_open = hello_reader_open,
    .reader_read = hello_reader_read,
    .reader_close = hello_reader_close,
    .stat = hello_stat,
    .list = hello_list,
    .remove = hello_remove,
    /* versioning, object lock: not supported, left NULL */
};

static const coffer_plugin hello_plugin = {
    COFFER_PLUGIN_HEADER,
    .kind = COFFER_KIND_STORAGE,
    .name = "hello",
    .version = "0.1.0",
    .description = "example: objects as files in one flat directory",
    .threading = COFFER_THREADS_HANDLES,
    .options = hello_options,
    .storage = &hello_ops,
};

COFFER_DRIVER_ENTRY(hello)
{
    /* Refuse a host of another major version rather than misread it. */
    if (!host || host->abi_major != COFFER_ABI_MAJOR)
        return NULL;
    return &hello_plugin;
}
