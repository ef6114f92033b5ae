#include "plugin/host.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/run.h"
#include "plugin/config.h"
#include "util/util.h"

atomic_int cf_cancel_flag;

/* A driver reports an error and returns its code on the same thread, and
 * one instance may be used by several threads at once: keep the message
 * per thread so concurrent failures do not mix. */
static _Thread_local char tl_error[1024];

static void host_log(coffer_hctx *h, coffer_log_level level, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cf_log((cf_log_level)level, "%s: %s", h && h->label ? h->label : "driver", msg);
}

static coffer_status host_error(coffer_hctx *h, coffer_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_error, sizeof tl_error, fmt, ap);
    (void)h;
    va_end(ap);
    return code;
}

static int host_cancelled(coffer_hctx *h)
{
    /* a deadline (a check's timeout) cancels one instance's work */
    return cf_cancel_flag != 0 || (h && h->deadline > 0 && cf_now() > h->deadline);
}

static void host_progress(coffer_hctx *h, uint64_t bytes)
{
    if (h && h->progress)
        h->progress(h->progress_ud, bytes);
}

static char *read_first_line(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    fclose(f);
    if (n < 0) {
        free(line);
        return cf_strdup("");
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = 0;
    return line;
}

static char *host_secret_get(coffer_hctx *h, const coffer_config *c, const char *name)
{
    char key[256];
    snprintf(key, sizeof key, "%s_env", name);
    const char *env = cf_config_get(c, key);
    if (env && *env) {
        const char *v = getenv(env);
        if (v)
            return cf_strdup(v);
        host_log(h, COFFER_LOG_WARN, "%s: environment variable %s is not set", key, env);
    }
    snprintf(key, sizeof key, "%s_file", name);
    const char *file = cf_config_get(c, key);
    if (file && *file) {
        char *v = read_first_line(file);
        if (v)
            return v;
        host_log(h, COFFER_LOG_WARN, "%s: cannot read %s: %s", key, file, strerror(errno));
    }
    return NULL;
}

static void host_secret_free(char *s)
{
    if (!s)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = 0;
    free(s);
}

static int host_temp_path(coffer_hctx *h, const char *hint, char *buf, size_t len)
{
    static unsigned counter;
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    (void)h;
    pthread_mutex_lock(&lock);
    unsigned n = ++counter;
    pthread_mutex_unlock(&lock);
    int r = snprintf(buf, len, "%s/%u-%s", cf_tmpdir(), n, hint ? hint : "tmp");
    return (r < 0 || (size_t)r >= len) ? -1 : 0;
}

static const char *host_policy_root(coffer_hctx *h)
{
    return h ? h->root : NULL;
}

/* One rule for every child: the core's (engine/run.c). */
static char **host_child_env(coffer_hctx *h, const char *const *drop, const char *const *add)
{
    (void)h;
    return cf_child_env(drop, add);
}

static void host_child_env_secret(coffer_hctx *h, const char *name)
{
    (void)h;
    cf_child_env_secret(name);
}

static const coffer_host host_table = {
    .struct_size = sizeof(coffer_host),
    .abi_major = COFFER_ABI_MAJOR,
    .abi_minor = COFFER_ABI_MINOR,
    .log = host_log,
    .error = host_error,
    .cancelled = host_cancelled,
    .progress = host_progress,
    .config_get = cf_config_get,
    .config_list_len = cf_config_list_len,
    .config_list_item = cf_config_list_item,
    .config_get_int = cf_config_get_int,
    .config_get_bool = cf_config_get_bool,
    .secret_get = host_secret_get,
    .secret_free = host_secret_free,
    .temp_path = host_temp_path,
    .policy_root = host_policy_root,
    .child_env = host_child_env,
    .child_env_free = cf_child_env_free,
    .child_env_secret = host_child_env_secret,
};

const coffer_host *cf_host_table(void)
{
    return &host_table;
}

const char *coffer_status_name(coffer_status st)
{
    static const char *names[] = {"ok", "temporary failure", "failed", "fatal error",
                                  "not found", "already exists", "not supported", "cancelled",
                                  "no space left", "invalid argument", "access denied",
                                  "I/O error", "data corrupt"};
    return (unsigned)st < CF_ARRAY_LEN(names) ? names[st] : "unknown error";
}

coffer_hctx *cf_hctx_new(const char *label, const char *root)
{
    coffer_hctx *h = cf_calloc(1, sizeof *h);
    h->label = cf_strdup(label);
    h->root = root;
    return h;
}

void cf_hctx_free(coffer_hctx *h)
{
    if (!h)
        return;
    free(h->label);
    free(h);
}

int cf_hctx_fail(coffer_hctx *h, coffer_status st, const char *what)
{
    char msg[sizeof tl_error];
    snprintf(msg, sizeof msg, "%s", tl_error[0] ? tl_error : coffer_status_name(st));
    tl_error[0] = 0;
    if (what)
        cf_fail("%s: %s: %s", h->label, what, msg);
    else
        cf_fail("%s: %s", h->label, msg);
    return -1;
}

static char *tmpdir_path;
static int tmpdir_created;
static pthread_mutex_t tmpdir_lock = PTHREAD_MUTEX_INITIALIZER;

static int tmpdir_lockfd = -1;

#define TMPDIR_LOCK ".coffer-alive"

/* Private temporary directories of coffer processes that died without
 * cleaning up (kill -9, power loss): ours, 0700, holding a lock file that
 * nobody holds and that is older than a few seconds (a directory whose
 * owner is still between creating and locking it is left alone). They
 * may hold a database password file a driver handed to its tools. */
static void sweep_dead_tmpdirs(const char *base)
{
    DIR *d = opendir(base);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "coffer-", 7) != 0 || strlen(de->d_name) != 13)
            continue;
        int dfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
            continue;
        struct stat st;
        int lfd = -1;
        if (fstat(dfd, &st) == 0 && st.st_uid == geteuid() && (st.st_mode & 077) == 0)
            lfd = openat(dfd, TMPDIR_LOCK, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        close(dfd);
        if (lfd < 0)
            continue;
        if (fstat(lfd, &st) == 0 && time(NULL) - st.st_mtime > 5 &&
            flock(lfd, LOCK_EX | LOCK_NB) == 0) {
            char *path = cf_asprintf("%s/%s", base, de->d_name);
            cf_rmtree(path);
            free(path);
        }
        close(lfd);
    }
    closedir(d);
}

FILE *cf_tmpfile(const char *what)
{
    char *path = cf_asprintf("%s/%s-XXXXXX", cf_tmpdir(), what);
    int fd = mkstemp(path);
    FILE *f = NULL;
    if (fd < 0) {
        cf_fail_errno("cannot create %s file %s", what, path);
    } else {
        unlink(path);
        if (!(f = fdopen(fd, "w+"))) {
            cf_fail_errno("cannot open %s file %s", what, path);
            close(fd);
        }
    }
    free(path);
    return f;
}

const char *cf_tmpdir(void)
{
    pthread_mutex_lock(&tmpdir_lock);
    if (!tmpdir_path) {
        const char *base = getenv("TMPDIR");
        if (!base || !*base)
            base = "/tmp";
        sweep_dead_tmpdirs(base);
        char *tmpl = cf_asprintf("%s/coffer-XXXXXX", base);
        if (!mkdtemp(tmpl)) {
            /* Never fall back to the base itself: cleanup would empty it.
             * A path that does not exist makes every later use fail with
             * a message naming it. */
            cf_log(CF_LOG_ERROR, "cannot create temporary directory under %s: %s", base,
                   strerror(errno));
            free(tmpl);
            tmpl = cf_asprintf("%s/coffer-unavailable", base);
        } else {
            chmod(tmpl, 0700);
            tmpdir_created = 1;
            /* held until we exit: while it is, no other coffer sweeps this */
            char *lp = cf_asprintf("%s/%s", tmpl, TMPDIR_LOCK);
            tmpdir_lockfd = open(lp, O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
            if (tmpdir_lockfd >= 0)
                flock(tmpdir_lockfd, LOCK_EX);
            free(lp);
        }
        tmpdir_path = tmpl;
    }
    pthread_mutex_unlock(&tmpdir_lock);
    return tmpdir_path;
}

void cf_tmpdir_cleanup(void)
{
    pthread_mutex_lock(&tmpdir_lock);
    if (tmpdir_path) {
        if (tmpdir_created)
            cf_rmtree(tmpdir_path);
        tmpdir_created = 0;
        if (tmpdir_lockfd >= 0)
            close(tmpdir_lockfd);
        tmpdir_lockfd = -1;
        free(tmpdir_path);
        tmpdir_path = NULL;
    }
    pthread_mutex_unlock(&tmpdir_lock);
}
