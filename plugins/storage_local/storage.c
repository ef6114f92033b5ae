/*
 * storage "local": a repository in a local (or locally mounted) directory.
 *
 * This file holds the descriptor, the instance and the namespace
 * operations (prepare, stat, list, remove); readers are in read.c,
 * writers in write.c.
 *
 * Durability: with fsync on (the default) a committed object's data and
 * its directory entry are on stable storage before commit returns, and a
 * removal is durable before remove returns. Empty directories left by
 * remove are kept: deleting them would race with a concurrent writer that
 * has just created the same directory for its temporary file.
 */
#include "local.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOCAL_KEY_MAX 1024 /* longer keys are refused: repository keys are short */
#define LOCAL_LIST_DEPTH 64 /* deeper nesting means a symlink loop */

void local_check_magic(const void *p, uint32_t magic, const char *what)
{
    if (!p || *(const uint32_t *)p != magic) {
        fprintf(stderr, "coffer storage local: invalid or already closed %s handle %p\n", what, p);
        abort();
    }
}

coffer_status local_errno(local_instance *in, int err, const char *what, const char *path)
{
    coffer_status st;
    switch (err) {
    case ENOENT:
    case ENOTDIR:
        st = COFFER_ERR_NOT_FOUND;
        break;
    case ENOSPC:
    case EDQUOT:
        st = COFFER_ERR_NO_SPACE;
        break;
    case EEXIST:
        st = COFFER_ERR_EXISTS;
        break;
    case EINTR:
    case EAGAIN:
        st = COFFER_ERR_RETRY;
        break;
    case EACCES:
    case EPERM:
    case EROFS:
        st = COFFER_ERR_FAILED;
        break;
    default:
        st = COFFER_ERR_IO;
        break;
    }
    return in->host->error(in->h, st, "%s %s: %s", what, path, strerror(err));
}

/* Full segments only: no empty, ".", ".." or temporary-file segment. */
static coffer_status check_segments(local_instance *in, const char *key, const char *what)
{
    const char *seg = key;
    for (;;) {
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        if (n == 0)
            return in->host->error(in->h, COFFER_ERR_INVALID, "%s '%s' has an empty segment", what, key);
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return in->host->error(in->h, COFFER_ERR_INVALID, "%s '%s' has a '.' or '..' segment",
                                   what, key);
        if (n >= strlen(LOCAL_TMP_PREFIX) && memcmp(seg, LOCAL_TMP_PREFIX, strlen(LOCAL_TMP_PREFIX)) == 0)
            return in->host->error(in->h, COFFER_ERR_INVALID,
                                   "%s '%s' uses the reserved temporary-file prefix '%s'", what, key,
                                   LOCAL_TMP_PREFIX);
        if (n > NAME_MAX)
            return in->host->error(in->h, COFFER_ERR_INVALID, "%s '%s' has a segment longer than %d bytes",
                                   what, key, NAME_MAX);
        if (!end)
            return COFFER_OK;
        seg = end + 1;
    }
}

coffer_status local_key_check(local_instance *in, const char *key)
{
    if (!key || !*key)
        return in->host->error(in->h, COFFER_ERR_INVALID, "empty key");
    if (strlen(key) > LOCAL_KEY_MAX)
        return in->host->error(in->h, COFFER_ERR_INVALID, "key '%.64s...' is longer than %d bytes", key,
                               LOCAL_KEY_MAX);
    if (key[0] == '/')
        return in->host->error(in->h, COFFER_ERR_INVALID, "key '%s' is absolute", key);
    return check_segments(in, key, "key");
}

char *local_path(local_instance *in, const char *key)
{
    size_t r = strlen(in->root), k = strlen(key);
    char *p = malloc(r + k + 2);
    if (!p)
        return NULL;
    memcpy(p, in->root, r);
    p[r] = '/';
    memcpy(p + r + 1, key, k + 1);
    return p;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = 0;
    /* Some filesystems cannot fsync a directory; they order metadata anyway. */
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
        err = errno;
    close(fd);
    return err;
}

int local_fsync_parent(local_instance *in, const char *path)
{
    if (!in->fsync)
        return 0;
    char *slash = strrchr(path, '/');
    if (!slash)
        return fsync_dir(".");
    if (slash == path)
        return fsync_dir("/");
    *slash = 0;
    int err = fsync_dir(path);
    *slash = '/';
    return err;
}

/* mkdir every component of path[0..end) from `from` on; the new entries are
 * made durable so a committed object below them survives a crash. */
static int mkdir_components(local_instance *in, char *path, size_t from)
{
    for (char *p = path + from; (p = strchr(p, '/')) != NULL; p++) {
        if (p == path)
            continue;
        *p = 0;
        int err = 0;
        if (mkdir(path, in->dir_mode) == 0)
            err = local_fsync_parent(in, path);
        else if (errno != EEXIST)
            err = errno;
        *p = '/';
        if (err)
            return err;
    }
    return 0;
}

int local_mkdir_parents(local_instance *in, const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return ENOMEM;
    size_t from = strlen(in->root) + 1; /* the root itself is prepare's business */
    int err = strlen(copy) > from ? mkdir_components(in, copy, from) : 0;
    free(copy);
    return err;
}

/* ---- options and instance ------------------------------------------- */

static const coffer_option local_options[] = {
    {"path", COFFER_OPT_PATH, NULL, 1, 0,
     "repository directory (relative paths resolve against the policy root)"},
    {"fsync", COFFER_OPT_BOOL, "true", 0, 0,
     "flush files and directories to stable storage before a write or remove returns"},
    {"dir_mode", COFFER_OPT_STRING, "0700", 0, 0, "octal mode of directories the driver creates"},
    {"file_mode", COFFER_OPT_STRING, "0600", 0, 0,
     "octal mode of objects (private objects are always 0600)"},
    {"append_only", COFFER_OPT_BOOL, "false", 0, 0,
     "never remove or replace an object (repository locks aside): coffer writes tombstones, "
     "and only `prune --apply-tombstones` removes"},
    {NULL, 0, NULL, 0, 0, NULL},
};

static coffer_status parse_mode(local_instance *in, const coffer_config *cfg, const char *name,
                                mode_t dflt, mode_t *out)
{
    const char *v = in->host->config_get(cfg, name);
    if (!v) {
        *out = dflt;
        return COFFER_OK;
    }
    char *end;
    errno = 0;
    long m = strtol(v, &end, 8);
    if (errno || end == v || *end || m < 0 || m > 07777)
        return in->host->error(in->h, COFFER_ERR_INVALID, "option %s: '%s' is not an octal mode like %04o",
                               name, v, (unsigned)dflt);
    *out = (mode_t)m;
    return COFFER_OK;
}

static void local_instance_free(void *instance)
{
    if (!instance)
        return;
    local_instance *in = instance;
    local_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    in->magic = 0;
    free(in->root);
    free(in);
}

static coffer_status local_instance_new(const coffer_host *host, coffer_hctx *h, const coffer_config *cfg,
                                        void **instance)
{
    *instance = NULL;
    local_instance *in = calloc(1, sizeof *in);
    if (!in)
        return host->error(h, COFFER_ERR_FATAL, "out of memory");
    in->magic = COFFER_MAGIC_INSTANCE;
    in->host = host;
    in->h = h;

    const char *path = host->config_get(cfg, "path");
    coffer_status st;
    if (!path || !*path) {
        st = host->error(h, COFFER_ERR_INVALID, "option 'path' (the repository directory) is required");
        goto fail;
    }
    const char *base = host->policy_root ? host->policy_root(h) : NULL;
    size_t plen = strlen(path), blen = base ? strlen(base) : 0;
    if (path[0] != '/' && base && *base) {
        in->root = malloc(blen + plen + 2);
        if (in->root)
            sprintf(in->root, "%s/%s", base, path);
    } else {
        in->root = strdup(path);
    }
    if (!in->root) {
        st = host->error(h, COFFER_ERR_FATAL, "out of memory");
        goto fail;
    }
    for (size_t n = strlen(in->root); n > 1 && in->root[n - 1] == '/'; n--)
        in->root[n - 1] = 0;

    in->fsync = host->config_get_bool(cfg, "fsync", 1);
    const char *ao = host->config_get(cfg, "append_only");
    if (ao && strcmp(ao, "true") && strcmp(ao, "false") && strcmp(ao, "yes") && strcmp(ao, "no") &&
        strcmp(ao, "1") && strcmp(ao, "0")) {
        st = host->error(h, COFFER_ERR_INVALID, "option append_only: expected true or false, got '%s'",
                         ao);
        goto fail;
    }
    in->append_only = host->config_get_bool(cfg, "append_only", 0);
    if ((st = parse_mode(in, cfg, "dir_mode", 0700, &in->dir_mode)) != COFFER_OK ||
        (st = parse_mode(in, cfg, "file_mode", 0600, &in->file_mode)) != COFFER_OK)
        goto fail;
    if ((in->dir_mode & S_IRWXU) != S_IRWXU) {
        st = host->error(h, COFFER_ERR_INVALID, "option dir_mode: %04o must give the owner rwx (0700)",
                         (unsigned)in->dir_mode);
        goto fail;
    }
    *instance = in;
    return COFFER_OK;
fail:
    local_instance_free(in);
    return st;
}

static uint32_t local_capabilities(void *instance)
{
    local_check_magic(instance, COFFER_MAGIC_INSTANCE, "instance");
    local_instance *in = instance;
    return COFFER_CAP_ATOMIC_PUBLISH | COFFER_CAP_CONDITIONAL_CREATE | COFFER_CAP_RANGED_READ |
           COFFER_CAP_LOCAL | (in->append_only ? COFFER_CAP_APPEND_ONLY : 0);
}

static coffer_status local_prepare(void *instance, int create)
{
    local_instance *in = instance;
    local_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    struct stat sb;
    if (create) {
        /* mkdir -p: components of "<root>/" from the first one on. */
        size_t n = strlen(in->root);
        char *p = malloc(n + 2);
        if (!p)
            return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
        memcpy(p, in->root, n);
        p[n] = '/';
        p[n + 1] = 0;
        int err = mkdir_components(in, p, 0);
        free(p);
        if (err)
            return local_errno(in, err, "cannot create repository directory", in->root);
    }
    if (stat(in->root, &sb) != 0) {
        if (errno == ENOENT)
            return in->host->error(in->h, COFFER_ERR_NOT_FOUND, "repository directory %s does not exist",
                                   in->root);
        return local_errno(in, errno, "cannot access repository directory", in->root);
    }
    if (!S_ISDIR(sb.st_mode))
        return in->host->error(in->h, COFFER_ERR_INVALID, "repository path %s is not a directory", in->root);
    if (create && access(in->root, W_OK | X_OK) != 0)
        return local_errno(in, errno, "repository directory is not writable:", in->root);
    return COFFER_OK;
}

static void fill_stat(coffer_object_stat *st, const struct stat *sb)
{
    st->size = (uint64_t)sb->st_size;
    st->mtime = (int64_t)sb->st_mtim.tv_sec;
    st->etag[0] = 0;
}

static coffer_status local_stat(void *instance, const char *key, coffer_object_stat *st)
{
    local_instance *in = instance;
    local_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    coffer_status rc = local_key_check(in, key);
    if (rc)
        return rc;
    char *path = local_path(in, key);
    if (!path)
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    struct stat sb;
    if (stat(path, &sb) != 0)
        rc = errno == ENOENT || errno == ENOTDIR
                 ? in->host->error(in->h, COFFER_ERR_NOT_FOUND, "no object %s (%s)", key, path)
                 : local_errno(in, errno, "cannot stat", path);
    else if (!S_ISREG(sb.st_mode))
        rc = in->host->error(in->h, COFFER_ERR_NOT_FOUND, "no object %s (%s is not a regular file)", key,
                             path);
    else
        fill_stat(st, &sb);
    free(path);
    return rc;
}

/* ---- list ------------------------------------------------------------ */

typedef struct local_walk {
    local_instance *in;
    const char *prefix;
    size_t plen;
    coffer_list_cb cb;
    void *ud;
    int stop;
    char key[LOCAL_KEY_MAX + NAME_MAX + 2];
} local_walk;

/* The key built so far (n bytes) can still lead to a key under prefix. */
static int may_match(const local_walk *w, size_t n)
{
    size_t m = n < w->plen ? n : w->plen;
    return memcmp(w->key, w->prefix, m) == 0;
}

/* Walk directory dfd (consumed) whose entries have keys w->key[0..keylen) + name. */
static coffer_status walk_dir(local_walk *w, int dfd, size_t keylen, int depth)
{
    local_instance *in = w->in;
    DIR *d = fdopendir(dfd);
    if (!d) {
        int err = errno;
        close(dfd);
        w->key[keylen] = 0;
        return local_errno(in, err, "cannot list directory", keylen ? w->key : in->root);
    }
    coffer_status rc = COFFER_OK;
    struct dirent *de;
    for (;;) {
        errno = 0;
        if (!(de = readdir(d))) {
            if (errno) {
                w->key[keylen] = 0;
                rc = local_errno(in, errno, "cannot list directory", keylen ? w->key : in->root);
            }
            break;
        }
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
            strncmp(name, LOCAL_TMP_PREFIX, strlen(LOCAL_TMP_PREFIX)) == 0)
            continue;
        size_t nl = strlen(name);
        if (keylen + nl + 1 >= sizeof w->key)
            continue; /* cannot be a valid key */
        memcpy(w->key + keylen, name, nl + 1);
        size_t n = keylen + nl;
        if (!may_match(w, n))
            continue;
        /* Follow symlinks: a subtree may live on another disk. */
        struct stat sb;
        if (fstatat(dirfd(d), name, &sb, 0) != 0) {
            if (errno == ENOENT)
                continue; /* removed while we walk */
            rc = local_errno(in, errno, "cannot stat", w->key);
            break;
        }
        if (S_ISDIR(sb.st_mode)) {
            if (depth >= LOCAL_LIST_DEPTH) {
                rc = in->host->error(in->h, COFFER_ERR_IO,
                                     "directory nesting deeper than %d levels at %s/%s (symlink loop?)",
                                     LOCAL_LIST_DEPTH, in->root, w->key);
                break;
            }
            w->key[n] = '/';
            w->key[n + 1] = 0;
            if (!may_match(w, n + 1))
                continue;
            int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (sub < 0) {
                if (errno == ENOENT)
                    continue;
                rc = local_errno(in, errno, "cannot open directory", w->key);
                break;
            }
            rc = walk_dir(w, sub, n + 1, depth + 1);
            if (rc || w->stop)
                break;
        } else if (S_ISREG(sb.st_mode) && n >= w->plen) {
            coffer_object_stat st = {.struct_size = sizeof st};
            fill_stat(&st, &sb);
            if (w->cb(w->ud, w->key, &st) != 0) {
                w->stop = 1;
                break;
            }
        }
    }
    closedir(d);
    return rc;
}

static coffer_status local_list(void *instance, const char *prefix, coffer_list_cb cb, void *ud)
{
    local_instance *in = instance;
    local_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    if (!prefix)
        prefix = "";
    if (prefix[0] == '/')
        return in->host->error(in->h, COFFER_ERR_INVALID, "list prefix '%s' is absolute", prefix);
    if (strlen(prefix) > LOCAL_KEY_MAX)
        return in->host->error(in->h, COFFER_ERR_INVALID, "list prefix is longer than %d bytes", LOCAL_KEY_MAX);
    /* The directory part must be made of valid segments; the last, partial
     * segment only filters names. */
    const char *slash = strrchr(prefix, '/');
    if (slash) {
        char dir[LOCAL_KEY_MAX + 1];
        memcpy(dir, prefix, (size_t)(slash - prefix));
        dir[slash - prefix] = 0;
        coffer_status rc = check_segments(in, dir, "list prefix");
        if (rc)
            return rc;
    }
    int fd = open(in->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return in->host->error(in->h, COFFER_ERR_NOT_FOUND, "repository directory %s does not exist",
                                   in->root);
        return local_errno(in, errno, "cannot open repository directory", in->root);
    }
    local_walk *w = calloc(1, sizeof *w);
    if (!w) {
        close(fd);
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    }
    w->in = in;
    w->prefix = prefix;
    w->plen = strlen(prefix);
    w->cb = cb;
    w->ud = ud;
    coffer_status rc = walk_dir(w, fd, 0, 0);
    free(w);
    return rc;
}

int local_mutable_key(const char *key)
{
    return strncmp(key, "locks/", 6) == 0;
}

static coffer_status remove_file(local_instance *in, const char *key, int absent_ok)
{
    coffer_status rc = COFFER_OK;
    char *path = local_path(in, key);
    if (!path)
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    if (unlink(path) != 0) {
        if ((errno == ENOENT || errno == ENOTDIR) && absent_ok)
            rc = COFFER_OK;
        else if (errno == ENOENT || errno == ENOTDIR || errno == EISDIR)
            rc = in->host->error(in->h, COFFER_ERR_NOT_FOUND, "no object %s (%s)", key, path);
        else
            rc = local_errno(in, errno, "cannot remove", path);
    } else {
        int err = local_fsync_parent(in, path);
        if (err)
            rc = local_errno(in, err, "cannot sync directory of", path);
    }
    free(path);
    return rc;
}

static coffer_status local_remove_ex(void *instance, const char *key, const char *version_id,
                                     uint32_t flags)
{
    local_instance *in = instance;
    local_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    coffer_status rc = local_key_check(in, key);
    if (rc)
        return rc;
    if (version_id)
        return in->host->error(in->h, COFFER_ERR_UNSUPPORTED,
                               "%s: a local repository keeps no versions", key);
    if (in->append_only && !local_mutable_key(key) && !(flags & COFFER_REMOVE_MAINTENANCE))
        return in->host->error(in->h, COFFER_ERR_LOCKED,
                               "%s: the repository is append-only; removal needs a maintenance run "
                               "(coffer prune --apply-tombstones)",
                               key);
    return remove_file(in, key, (flags & COFFER_REMOVE_ABSENT_OK) != 0);
}

static coffer_status local_remove(void *instance, const char *key)
{
    return local_remove_ex(instance, key, NULL, 0);
}

/* ---- descriptor -------------------------------------------------------- */

/* policy check: what instance_new would refuse, plus a repository placed
 * where it cannot work (a file, or the policy root it would back up). */
static coffer_status local_validate(const coffer_host *host, coffer_hctx *h, const coffer_config *cfg,
                                    const char **bad_option)
{
    local_instance tmp = {.host = host, .h = h};
    mode_t m;
    *bad_option = NULL;
    static const char *const modes[] = {"dir_mode", "file_mode"};
    for (size_t i = 0; i < 2; i++)
        if (parse_mode(&tmp, cfg, modes[i], 0700, &m) != COFFER_OK) {
            *bad_option = modes[i];
            return COFFER_ERR_INVALID;
        }
    if (parse_mode(&tmp, cfg, "dir_mode", 0700, &m) == COFFER_OK && (m & S_IRWXU) != S_IRWXU) {
        *bad_option = "dir_mode";
        return host->error(h, COFFER_ERR_INVALID, "%04o must give the owner rwx (0700)", (unsigned)m);
    }
    const char *path = host->config_get(cfg, "path");
    if (!path || !*path)
        return COFFER_OK; /* the option table makes it required */
    const char *base = host->policy_root ? host->policy_root(h) : NULL;
    char full[PATH_MAX];
    if (path[0] != '/' && base && *base)
        snprintf(full, sizeof full, "%s/%s", base, path);
    else
        snprintf(full, sizeof full, "%s", path);
    for (size_t n = strlen(full); n > 1 && full[n - 1] == '/'; n--)
        full[n - 1] = 0;
    *bad_option = "path";
    struct stat st;
    if (stat(full, &st) == 0 && !S_ISDIR(st.st_mode))
        return host->error(h, COFFER_ERR_INVALID, "'%s' exists and is not a directory", full);
    if (base && strcmp(full, base) == 0)
        return host->error(h, COFFER_ERR_INVALID,
                           "'%s' is the policy root: the repository would hold the tree it backs up",
                           full);
    *bad_option = NULL;
    return COFFER_OK;
}

static const coffer_storage_ops local_ops = {
    .struct_size = sizeof(coffer_storage_ops),
    .instance_new = local_instance_new,
    .instance_free = local_instance_free,
    .capabilities = local_capabilities,
    .prepare = local_prepare,
    .writer_open = local_writer_open,
    .writer_write = local_writer_write,
    .writer_commit = local_writer_commit,
    .writer_abort = local_writer_abort,
    .reader_open = local_reader_open,
    .reader_read = local_reader_read,
    .reader_close = local_reader_close,
    .stat = local_stat,
    .list = local_list,
    .remove = local_remove,
    .validate = local_validate,
    .remove_ex = local_remove_ex,
};

static const coffer_plugin local_plugin = {
    COFFER_PLUGIN_HEADER,
    .kind = COFFER_KIND_STORAGE,
    .name = "local",
    .version = "1.0.0",
    .description = "repository in a local directory (atomic rename publish, fsync)",
    /* Instances are immutable after creation and handles are independent. */
    .threading = COFFER_THREADS_HANDLES,
    .options = local_options,
    .storage = &local_ops,
};

COFFER_DRIVER_ENTRY(local)
{
    if (!host || host->abi_major != COFFER_ABI_MAJOR)
        return NULL;
    return &local_plugin;
}
