/* The testing kit's mock host and configuration (coffer/testing.h). */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "coffer/testing.h"
#include "kit.h"

extern char **environ;

struct coffer_hctx {
    coffer_test_host *t;
};

struct coffer_test_host {
    struct coffer_hctx hctx;
    coffer_host table;
    pthread_mutex_t lock;
    char *root;
    char tmpdir[256];
    unsigned counter;
    char last_error[1024];
    coffer_status last_code;
    char *log;
    size_t loglen;
    int cancelled;
    uint64_t progress;
};

typedef struct item {
    char *key;
    char **values;
    size_t n;
    int is_list;
} item;

struct coffer_config {
    item *items;
    size_t n;
};

void *kit_alloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        fputs("coffer testing kit: out of memory\n", stderr);
        abort();
    }
    return p;
}

char *kit_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(kit_alloc(n), s, n);
}

/* ---- host services ---- */

static void t_log(coffer_hctx *h, coffer_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warning", "info", "debug"};
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    coffer_test_host *t = h->t;
    const char *ln = (unsigned)level < 4 ? names[level] : "?";
    size_t add = strlen(ln) + strlen(msg) + 3;
    pthread_mutex_lock(&t->lock);
    char *nl = realloc(t->log, t->loglen + add + 1);
    if (!nl)
        abort();
    t->log = nl;
    t->loglen += (size_t)sprintf(t->log + t->loglen, "%s: %s\n", ln, msg);
    pthread_mutex_unlock(&t->lock);
}

static coffer_status t_error(coffer_hctx *h, coffer_status code, const char *fmt, ...)
{
    coffer_test_host *t = h->t;
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&t->lock);
    vsnprintf(t->last_error, sizeof t->last_error, fmt, ap);
    t->last_code = code;
    pthread_mutex_unlock(&t->lock);
    va_end(ap);
    return code;
}

static int t_cancelled(coffer_hctx *h)
{
    return __atomic_load_n(&h->t->cancelled, __ATOMIC_SEQ_CST);
}

static void t_progress(coffer_hctx *h, uint64_t bytes)
{
    __atomic_add_fetch(&h->t->progress, bytes, __ATOMIC_SEQ_CST);
}

static const item *find(const coffer_config *c, const char *key)
{
    for (size_t i = 0; c && i < c->n; i++)
        if (strcmp(c->items[i].key, key) == 0)
            return &c->items[i];
    return NULL;
}

static const char *t_config_get(const coffer_config *c, const char *name)
{
    const item *it = find(c, name);
    return it && it->n ? it->values[0] : NULL;
}

static size_t t_config_list_len(const coffer_config *c, const char *name)
{
    const item *it = find(c, name);
    return it ? it->n : 0;
}

static const char *t_config_list_item(const coffer_config *c, const char *name, size_t i)
{
    const item *it = find(c, name);
    return it && i < it->n ? it->values[i] : NULL;
}

static int64_t t_config_get_int(const coffer_config *c, const char *name, int64_t dflt)
{
    const char *v = t_config_get(c, name);
    if (!v)
        return dflt;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v)
        return dflt;
    int64_t mul = 1;
    switch (*end) {
    case 'K':
    case 'k':
        mul = 1LL << 10;
        break;
    case 'M':
    case 'm':
        mul = 1LL << 20;
        break;
    case 'G':
    case 'g':
        mul = 1LL << 30;
        break;
    case 'T':
    case 't':
        mul = 1LL << 40;
        break;
    case 0:
        break;
    default:
        return dflt;
    }
    return (int64_t)n * mul;
}

static int t_config_get_bool(const coffer_config *c, const char *name, int dflt)
{
    const char *v = t_config_get(c, name);
    if (!v)
        return dflt;
    if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on") || !strcmp(v, "1"))
        return 1;
    if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off") || !strcmp(v, "0"))
        return 0;
    return dflt;
}

static char *t_secret_get(coffer_hctx *h, const coffer_config *c, const char *name)
{
    (void)h;
    char key[256];
    snprintf(key, sizeof key, "%s_env", name);
    const char *env = t_config_get(c, key);
    if (env && getenv(env))
        return kit_strdup(getenv(env));
    snprintf(key, sizeof key, "%s_file", name);
    const char *file = t_config_get(c, key);
    FILE *f = file ? fopen(file, "r") : NULL;
    if (!f)
        return NULL;
    char line[4096] = "";
    if (!fgets(line, sizeof line, f))
        line[0] = 0;
    fclose(f);
    line[strcspn(line, "\r\n")] = 0;
    return kit_strdup(line);
}

static void t_secret_free(char *s)
{
    if (!s)
        return;
    for (volatile char *p = s; *p; p++)
        *p = 0;
    free(s);
}

static int t_temp_path(coffer_hctx *h, const char *hint, char *buf, size_t len)
{
    coffer_test_host *t = h->t;
    unsigned n = __atomic_add_fetch(&t->counter, 1, __ATOMIC_SEQ_CST);
    int r = snprintf(buf, len, "%s/%u-%s", t->tmpdir, n, hint ? hint : "tmp");
    return r < 0 || (size_t)r >= len ? -1 : 0;
}

static const char *t_policy_root(coffer_hctx *h)
{
    return h->t->root;
}

static int listed(const char *const *names, const char *entry)
{
    size_t n = strcspn(entry, "=");
    for (; names && *names; names++) {
        size_t m = strcspn(*names, "=");
        if (m == n && strncmp(*names, entry, n) == 0)
            return 1;
    }
    return 0;
}

/* The environment minus drop, plus add (no secret filtering: a test's
 * environment is the test's business). */
static char **t_child_env(coffer_hctx *h, const char *const *drop, const char *const *add)
{
    (void)h;
    size_t n = 0, k = 0;
    for (char **e = environ; e && *e; e++)
        n++;
    for (const char *const *a = add; a && *a; a++)
        n++;
    char **env = kit_alloc((n + 1) * sizeof *env);
    for (char **e = environ; e && *e; e++)
        if (!listed(drop, *e) && !listed(add, *e))
            env[k++] = kit_strdup(*e);
    for (const char *const *a = add; a && *a; a++)
        env[k++] = kit_strdup(*a);
    return env;
}

static void t_child_env_free(char **env)
{
    for (char **e = env; e && *e; e++)
        free(*e);
    free(env);
}

static void t_child_env_secret(coffer_hctx *h, const char *name)
{
    t_log(h, COFFER_LOG_DEBUG, "child_env_secret %s", name);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

coffer_test_host *coffer_test_host_new(const char *root)
{
    coffer_test_host *t = kit_alloc(sizeof *t);
    t->hctx.t = t;
    pthread_mutex_init(&t->lock, NULL);
    t->root = root ? kit_strdup(root) : NULL;
    const char *base = getenv("TMPDIR");
    snprintf(t->tmpdir, sizeof t->tmpdir, "%s/coffer-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(t->tmpdir)) {
        perror("coffer testing kit: mkdtemp");
        abort();
    }
    t->table = (coffer_host){
        .struct_size = sizeof(coffer_host),
        .abi_major = COFFER_ABI_MAJOR,
        .abi_minor = COFFER_ABI_MINOR,
        .log = t_log,
        .error = t_error,
        .cancelled = t_cancelled,
        .progress = t_progress,
        .config_get = t_config_get,
        .config_list_len = t_config_list_len,
        .config_list_item = t_config_list_item,
        .config_get_int = t_config_get_int,
        .config_get_bool = t_config_get_bool,
        .secret_get = t_secret_get,
        .secret_free = t_secret_free,
        .temp_path = t_temp_path,
        .policy_root = t_policy_root,
        .child_env = t_child_env,
        .child_env_free = t_child_env_free,
        .child_env_secret = t_child_env_secret,
    };
    t->log = kit_strdup("");
    return t;
}

void coffer_test_host_free(coffer_test_host *t)
{
    if (!t)
        return;
    nftw(t->tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    pthread_mutex_destroy(&t->lock);
    free(t->root);
    free(t->log);
    free(t);
}

const coffer_host *coffer_test_host_table(coffer_test_host *t)
{
    return &t->table;
}

coffer_hctx *coffer_test_hctx(coffer_test_host *t)
{
    return &t->hctx;
}

const char *coffer_test_last_error(coffer_test_host *t)
{
    return t->last_error;
}

coffer_status coffer_test_last_code(coffer_test_host *t)
{
    return t->last_code;
}

void coffer_test_clear_error(coffer_test_host *t)
{
    pthread_mutex_lock(&t->lock);
    t->last_error[0] = 0;
    t->last_code = COFFER_OK;
    pthread_mutex_unlock(&t->lock);
}

const char *coffer_test_log(coffer_test_host *t)
{
    return t->log;
}

int coffer_test_log_contains(coffer_test_host *t, const char *needle)
{
    pthread_mutex_lock(&t->lock);
    int r = strstr(t->log, needle) != NULL;
    pthread_mutex_unlock(&t->lock);
    return r;
}

void coffer_test_set_cancelled(coffer_test_host *t, int on)
{
    __atomic_store_n(&t->cancelled, on, __ATOMIC_SEQ_CST);
}

uint64_t coffer_test_progress(coffer_test_host *t)
{
    return __atomic_load_n(&t->progress, __ATOMIC_SEQ_CST);
}

/* ---- configuration ---- */

static item *get_item(coffer_config *c, const char *key)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->items[i].key, key) == 0)
            return &c->items[i];
    item *n = realloc(c->items, (c->n + 1) * sizeof *c->items);
    if (!n)
        abort();
    c->items = n;
    item *it = &c->items[c->n++];
    memset(it, 0, sizeof *it);
    it->key = kit_strdup(key);
    return it;
}

static void item_push(item *it, const char *v)
{
    char **n = realloc(it->values, (it->n + 1) * sizeof *n);
    if (!n)
        abort();
    it->values = n;
    it->values[it->n++] = kit_strdup(v);
}

static void item_clear(item *it)
{
    for (size_t i = 0; i < it->n; i++)
        free(it->values[i]);
    free(it->values);
    it->values = NULL;
    it->n = 0;
}

void coffer_test_config_set(coffer_config *c, const char *key, const char *value)
{
    item *it = get_item(c, key);
    item_clear(it);
    it->is_list = 0;
    item_push(it, value);
}

void coffer_test_config_add(coffer_config *c, const char *key, const char *value)
{
    item *it = get_item(c, key);
    it->is_list = 1;
    item_push(it, value);
}

coffer_config *coffer_test_config(const char *key, ...)
{
    coffer_config *c = kit_alloc(sizeof *c);
    va_list ap;
    va_start(ap, key);
    for (const char *k = key; k; k = va_arg(ap, const char *)) {
        const char *v = va_arg(ap, const char *);
        if (!v)
            break;
        if (find(c, k))
            coffer_test_config_add(c, k, v);
        else
            coffer_test_config_set(c, k, v);
    }
    va_end(ap);
    return c;
}

void coffer_test_config_defaults(coffer_config *c, const coffer_option *options)
{
    for (const coffer_option *o = options; o && o->name; o++)
        if (o->default_value && !find(c, o->name))
            coffer_test_config_set(c, o->name, o->default_value);
}

void coffer_test_config_free(coffer_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        item_clear(&c->items[i]);
        free(c->items[i].key);
    }
    free(c->items);
    free(c);
}
