#include "mock_host.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugin/config.h"

/* The hctx handed to drivers is the mock_host itself. */
static mock_host *M(coffer_hctx *h)
{
    return (mock_host *)h;
}

coffer_hctx *mock_hctx(mock_host *mh)
{
    return (coffer_hctx *)mh;
}

/* Drivers log and fail from several threads at once (a dump's jobs), as
 * the core's host allows: the shared buffers are written under a lock. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static void m_log(coffer_hctx *h, coffer_log_level lvl, const char *fmt, ...)
{
    mock_host *mh = M(h);
    pthread_mutex_lock(&log_mu);
    size_t n = strlen(mh->log);
    va_list ap;
    va_start(ap, fmt);
    if (n < sizeof mh->log - 2) {
        int w = snprintf(mh->log + n, sizeof mh->log - n, "%d:", (int)lvl);
        if (w > 0 && (size_t)w < sizeof mh->log - n) {
            n += (size_t)w;
            vsnprintf(mh->log + n, sizeof mh->log - n, fmt, ap);
            n = strlen(mh->log);
            if (n < sizeof mh->log - 1) {
                mh->log[n] = '\n';
                mh->log[n + 1] = 0;
            }
        }
    }
    va_end(ap);
    pthread_mutex_unlock(&log_mu);
}

static coffer_status m_error(coffer_hctx *h, coffer_status code, const char *fmt, ...)
{
    mock_host *mh = M(h);
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&log_mu);
    vsnprintf(mh->last_error, sizeof mh->last_error, fmt, ap);
    pthread_mutex_unlock(&log_mu);
    va_end(ap);
    mh->last_code = code;
    return code;
}

static int m_cancelled(coffer_hctx *h)
{
    return M(h)->cancel;
}

static void m_progress(coffer_hctx *h, uint64_t b)
{
    /* drivers report from several threads (a dump's writer threads) */
    __atomic_add_fetch(&M(h)->progress, b, __ATOMIC_RELAXED);
}

static char *m_secret_get(coffer_hctx *h, const coffer_config *c, const char *name)
{
    (void)h;
    char key[256];
    snprintf(key, sizeof key, "%s_env", name);
    const char *env = cf_config_get(c, key);
    if (env && getenv(env))
        return strdup(getenv(env));
    snprintf(key, sizeof key, "%s_file", name);
    const char *file = cf_config_get(c, key);
    if (file) {
        FILE *f = fopen(file, "r");
        if (!f)
            return NULL;
        char line[1024] = "";
        if (!fgets(line, sizeof line, f))
            line[0] = 0;
        fclose(f);
        line[strcspn(line, "\r\n")] = 0;
        return strdup(line);
    }
    return NULL;
}

static void m_secret_free(char *s)
{
    if (s)
        memset(s, 0, strlen(s));
    free(s);
}

static int m_temp_path(coffer_hctx *h, const char *hint, char *buf, size_t len)
{
    static int n;
    int r = snprintf(buf, len, "%s/%d-%s", M(h)->tmpdir, ++n, hint ? hint : "tmp");
    return (r < 0 || (size_t)r >= len) ? -1 : 0;
}

static const char *m_root(coffer_hctx *h)
{
    return M(h)->root[0] ? M(h)->root : NULL;
}

void mock_host_init(mock_host *mh)
{
    memset(mh, 0, sizeof *mh);
    mh->host.struct_size = sizeof(coffer_host);
    mh->host.abi_major = COFFER_ABI_MAJOR;
    mh->host.abi_minor = COFFER_ABI_MINOR;
    mh->host.log = m_log;
    mh->host.error = m_error;
    mh->host.cancelled = m_cancelled;
    mh->host.progress = m_progress;
    mh->host.config_get = cf_config_get;
    mh->host.config_list_len = cf_config_list_len;
    mh->host.config_list_item = cf_config_list_item;
    mh->host.config_get_int = cf_config_get_int;
    mh->host.config_get_bool = cf_config_get_bool;
    mh->host.secret_get = m_secret_get;
    mh->host.secret_free = m_secret_free;
    mh->host.temp_path = m_temp_path;
    mh->host.policy_root = m_root;
    snprintf(mh->tmpdir, sizeof mh->tmpdir, "/tmp/coffer-mock-XXXXXX");
    if (!mkdtemp(mh->tmpdir))
        abort();
}

void mock_host_cleanup(mock_host *mh)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", mh->tmpdir);
    if (system(cmd) != 0) {
        /* best effort */
    }
}
