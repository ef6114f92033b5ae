/*
 * Local cache of a remote repository's index objects and set manifests.
 *
 * Both are written once under their key and never changed, so a copy
 * kept on the backup host saves fetching them again at every open: a
 * backup to S3 then fetches only the index objects and manifests written
 * since the last run. The cache holds the stored bytes as they are
 * (enveloped, encrypted), files 0600 in directories 0700, one directory
 * per repository id:
 *
 *   $COFFER_CACHE_DIR, else $XDG_CACHE_HOME/coffer, else ~/.cache/coffer
 *     <repository id>/index/<id>
 *     <repository id>/sets/<set id>
 *
 * It is never trusted blindly: a cached copy is used only when its
 * SHA-256 trailer matches its bytes, and every read goes through the same
 * envelope checks as a read from the store (authentication with the
 * repository key, trailer). A copy that fails is removed and the object
 * read from the store again. Copies of objects the store no longer lists
 * are removed when the store is listed. COFFER_CACHE_DIR=none turns the
 * cache off; local repositories never use one.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "repo/repo_int.h"

static int mkdir_private(const char *path)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return 0;
    return -1;
}

/* mkdir -p with mode 0700 for the parts it creates. */
static int mkdirs(const char *path)
{
    char *p = cf_strdup(path);
    int rc = 0;
    for (char *s = p + 1; *s && rc == 0; s++)
        if (*s == '/') {
            *s = 0;
            rc = mkdir_private(p);
            *s = '/';
        }
    if (rc == 0)
        rc = mkdir_private(p);
    free(p);
    return rc;
}

/* The cache's base directory (malloc'd), or NULL when there is none. */
static char *cache_base(void)
{
    const char *env = getenv("COFFER_CACHE_DIR");
    if (env && *env)
        return strcmp(env, "none") == 0 ? NULL : cf_strdup(env);
    if ((env = getenv("XDG_CACHE_HOME")) && *env == '/')
        return cf_asprintf("%s/coffer", env);
    if ((env = getenv("HOME")) && *env == '/')
        return cf_asprintf("%s/.cache/coffer", env);
    return NULL;
}

void cf_repo_cache_setup(cf_repo *r)
{
    if (r->st->caps & COFFER_CAP_LOCAL)
        return;
    char *base = cache_base();
    if (!base)
        return;
    char *dir = cf_asprintf("%s/%s", base, r->id_hex);
    char *idx = cf_asprintf("%s/index", dir), *sets = cf_asprintf("%s/sets", dir);
    if (mkdirs(idx) == 0 && mkdirs(sets) == 0) {
        r->cache_dir = dir;
        dir = NULL;
    } else {
        cf_log(CF_LOG_DEBUG, "no local cache of the repository's index and sets (%s: %s)", base,
               strerror(errno));
    }
    free(dir);
    free(idx);
    free(sets);
    free(base);
}

char *cf_repo_cache_file(cf_repo *r, const char *name)
{
    if (r->no_cache)
        return NULL;
    if (r->cache_dir)
        return cf_asprintf("%s/%s", r->cache_dir, name);
    /* A local repository caches no objects, but a file derived from
     * many of them (the sorted index) is still worth keeping. */
    char *base = cache_base();
    if (!base)
        return NULL;
    char *dir = cf_asprintf("%s/%s", base, r->id_hex), *path = NULL;
    if (mkdirs(dir) == 0)
        path = cf_asprintf("%s/%s", dir, name);
    free(dir);
    free(base);
    return path;
}

char *cf_repo_cache_path(cf_repo *r, int type, const char *key)
{
    if (!r->cache_dir || (type != CF_OBJ_INDEX && type != CF_OBJ_MANIFEST))
        return NULL;
    const char *prefix = type == CF_OBJ_INDEX ? "index/" : "sets/";
    size_t pl = strlen(prefix);
    const char *name = key + pl;
    /* one plain name below the prefix, nothing else */
    if (strncmp(key, prefix, pl) != 0 || !*name || strchr(name, '/') || name[0] == '.')
        return NULL;
    return cf_asprintf("%s/%s%s", r->cache_dir, prefix, name);
}

/* 1 if the file's last 32 bytes are the SHA-256 of the rest. */
static int trailer_ok(cf_repo *r, int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= CF_ENV_TRAILER_LEN)
        return 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || !EVP_DigestInit_ex(c, r->sha, NULL)) {
        EVP_MD_CTX_free(c);
        return 0;
    }
    uint64_t left = (uint64_t)st.st_size - CF_ENV_TRAILER_LEN;
    uint8_t buf[1 << 16];
    int ok = 1;
    while (left && ok) {
        ssize_t n = read(fd, buf, left < sizeof buf ? left : sizeof buf);
        if (n <= 0)
            ok = 0;
        else {
            EVP_DigestUpdate(c, buf, (size_t)n);
            left -= (uint64_t)n;
        }
    }
    uint8_t md[EVP_MAX_MD_SIZE], tr[CF_ENV_TRAILER_LEN];
    unsigned mdlen = 0;
    ok = ok && EVP_DigestFinal_ex(c, md, &mdlen) && mdlen == CF_ENV_TRAILER_LEN &&
         read(fd, tr, sizeof tr) == (ssize_t)sizeof tr && memcmp(md, tr, sizeof tr) == 0;
    EVP_MD_CTX_free(c);
    return ok && lseek(fd, 0, SEEK_SET) == 0;
}

int cf_repo_cache_open(cf_repo *r, const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (trailer_ok(r, fd))
        return fd;
    close(fd);
    cf_log(CF_LOG_DEBUG, "cached copy %s does not match its trailer: removed", path);
    unlink(path);
    return -1;
}

int cf_repo_cache_tee(const char *path, char **tmp_out)
{
    uint8_t rnd[8];
    char hex[17];
    cf_random(rnd, sizeof rnd);
    cf_hex(rnd, sizeof rnd, hex);
    char *tmp = cf_asprintf("%s.tmp-%s", path, hex);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        free(tmp);
        return -1;
    }
    *tmp_out = tmp;
    return fd;
}

void cf_repo_cache_drop(cf_repo *r, int type, const char *key)
{
    char *p = cf_repo_cache_path(r, type, key);
    if (p)
        unlink(p);
    free(p);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void cf_repo_cache_trim(cf_repo *r, int type, char **keys, size_t n)
{
    if (!r->cache_dir || (type != CF_OBJ_INDEX && type != CF_OBJ_MANIFEST))
        return;
    const char *sub = type == CF_OBJ_INDEX ? "index" : "sets";
    char *dir = cf_asprintf("%s/%s", r->cache_dir, sub);
    DIR *d = opendir(dir);
    if (!d) {
        free(dir);
        return;
    }
    /* the listed names, sorted, to look the cached ones up */
    char **names = cf_malloc((n ? n : 1) * sizeof *names);
    for (size_t i = 0; i < n; i++) {
        const char *s = strrchr(keys[i], '/');
        names[i] = (char *)(s ? s + 1 : keys[i]);
    }
    qsort(names, n, sizeof *names, cmp_str);
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        const char *name = e->d_name;
        int stale_tmp = 0;
        if (strstr(name, ".tmp-")) {
            /* another process's copy in progress, or a dead one's */
            struct stat st;
            char *p = cf_asprintf("%s/%s", dir, name);
            stale_tmp = stat(p, &st) == 0 && now - st.st_mtime > 3600;
            free(p);
            if (!stale_tmp)
                continue;
        }
        if (!stale_tmp && n && bsearch(&name, names, n, sizeof *names, cmp_str))
            continue;
        char *p = cf_asprintf("%s/%s", dir, name);
        unlink(p);
        free(p);
    }
    closedir(d);
    free(names);
    free(dir);
}
