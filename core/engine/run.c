#include "engine/run.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/immutable.h"
#include "engine/manifest.h"
#include "engine/prefetch.h"
#include "plugin/config.h"
#include "plugin/host.h"
#include "plugin/registry.h"
#include "util/util.h"

extern char **environ;

int cf_run_load_policy(const char *file, cf_policy **out)
{
    cf_policy *p;
    if (cf_policy_load(file, &p) != 0)
        return -1;
    if (cf_policy_check_drivers(p, cf_registry_options, NULL) != 0) {
        cf_policy_free(p);
        return -1;
    }
    cf_child_env_policy(p);
    *out = p;
    return 0;
}

/* ---- children's environment ------------------------------------------ */

/* Variables the policy names as secret sources. Only ever grows: a name
 * once used for a secret stays out of children for the whole run. */
static char **secret_names;
static size_t nsecret_names;
static pthread_mutex_t secret_lock = PTHREAD_MUTEX_INITIALIZER;

void cf_child_env_secret(const char *name)
{
    if (!name || !*name)
        return;
    pthread_mutex_lock(&secret_lock);
    size_t i = 0;
    while (i < nsecret_names && strcmp(secret_names[i], name) != 0)
        i++;
    if (i == nsecret_names) {
        secret_names = cf_realloc(secret_names, (nsecret_names + 1) * sizeof *secret_names);
        secret_names[nsecret_names++] = cf_strdup(name);
    }
    pthread_mutex_unlock(&secret_lock);
}

static int name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* "...?password_env=PGCRED&..." in an option value (a URL parameter
 * naming a variable, as the mysql driver's url accepts). */
static void secret_params(const char *v)
{
    for (const char *p = v ? strstr(v, "_env=") : NULL; p; p = strstr(p + 1, "_env=")) {
        const char *k = p;
        while (k > v && name_char(k[-1]))
            k--;
        if (k == p || (k > v && !strchr("?&; \t", k[-1])))
            continue;
        const char *n = p + 5;
        size_t len = 0;
        while (name_char(n[len]))
            len++;
        if (len > 0 && len < 256) {
            char name[256];
            memcpy(name, n, len);
            name[len] = 0;
            cf_child_env_secret(name);
        }
    }
}

static void secret_options(const coffer_config *c)
{
    for (size_t i = 0; c && i < c->n; i++) {
        const cf_config_item *it = &c->items[i];
        size_t l = strlen(it->name);
        if (!it->is_list && l > 4 && strcmp(it->name + l - 4, "_env") == 0)
            cf_child_env_secret(it->value);
        if (!it->is_list)
            secret_params(it->value);
        for (size_t j = 0; it->is_list && j < it->nitems; j++)
            secret_params(it->items[j]);
    }
}

void cf_child_env_policy(const cf_policy *p)
{
    cf_child_env_secret("COFFER_PASSPHRASE");
    for (size_t i = 0; i < p->ntargets; i++) {
        cf_child_env_secret(p->targets[i].passphrase_env);
        secret_options(p->targets[i].options);
        secret_options(p->targets[i].maintenance);
    }
    for (size_t i = 0; i < p->ncomponents; i++)
        secret_options(p->components[i].options);
}

static int ends_with_ci(const char *s, size_t n, const char *suffix)
{
    size_t l = strlen(suffix);
    return n >= l && strncasecmp(s + n - l, suffix, l) == 0;
}

static int contains_ci(const char *s, size_t n, const char *what)
{
    size_t l = strlen(what);
    for (size_t i = 0; i + l <= n; i++)
        if (strncasecmp(s + i, what, l) == 0)
            return 1;
    return 0;
}

/* scheme://user:password@host anywhere in v, or a password=... pair. */
static int value_has_password(const char *v)
{
    for (const char *p = strstr(v, "://"); p; p = strstr(p + 1, "://")) {
        const char *a = p + 3;
        size_t tok = strcspn(a, " \t\r\n\"'");
        const char *at = NULL;
        for (size_t i = 0; i < tok; i++)
            if (a[i] == '@')
                at = a + i;
        const char *colon = at ? memchr(a, ':', (size_t)(at - a)) : NULL;
        if (colon && colon + 1 < at)
            return 1;
    }
    size_t n = strlen(v);
    for (size_t i = 0; i + 9 <= n; i++) {
        if (strncasecmp(v + i, "password=", 9) == 0 && v[i + 9] && !strchr("&; \t", v[i + 9]))
            return 1;
    }
    return 0;
}

int cf_child_env_is_secret(const char *entry)
{
    const char *eq = strchr(entry, '=');
    if (!eq)
        return 0;
    size_t n = (size_t)(eq - entry);
    if (ends_with_ci(entry, n, "PASSWORD") || ends_with_ci(entry, n, "PASSPHRASE") ||
        ends_with_ci(entry, n, "_TOKEN") || ends_with_ci(entry, n, "_PWD") ||
        contains_ci(entry, n, "_SECRET"))
        return 1;
    int named = 0;
    pthread_mutex_lock(&secret_lock);
    for (size_t i = 0; i < nsecret_names && !named; i++)
        named = strlen(secret_names[i]) == n && strncmp(secret_names[i], entry, n) == 0;
    pthread_mutex_unlock(&secret_lock);
    return named || value_has_password(eq + 1);
}

static int listed(const char *entry, const char *const *names, int with_value)
{
    size_t n = strcspn(entry, "=");
    for (size_t i = 0; names && names[i]; i++) {
        size_t l = with_value ? strcspn(names[i], "=") : strlen(names[i]);
        if (l == n && strncmp(names[i], entry, n) == 0)
            return 1;
    }
    return 0;
}

char **cf_child_env(const char *const *drop, const char *const *add)
{
    size_t n = 0, na = 0;
    for (char **e = environ; e && *e; e++)
        n++;
    while (add && add[na])
        na++;
    char **env = calloc(n + na + 1, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (char **e = environ; e && *e; e++) {
        if (!strchr(*e, '=') || cf_child_env_is_secret(*e) || listed(*e, drop, 0) ||
            listed(*e, add, 1))
            continue;
        if (!(env[k++] = strdup(*e)))
            goto oom;
    }
    for (size_t i = 0; i < na; i++)
        if (!(env[k++] = strdup(add[i])))
            goto oom;
    return env;
oom:
    cf_child_env_free(env);
    return NULL;
}

void cf_child_env_free(char **env)
{
    if (!env)
        return;
    for (char **e = env; *e; e++) {
        volatile char *p = *e;
        while (*p)
            *p++ = 0;
        free(*e);
    }
    free(env);
}

void cf_run_passphrase(const cf_target *t, cf_passphrase_src *out)
{
    static _Thread_local char what[160];
    snprintf(what, sizeof what, "target '%s'", t->name);
    *out = (cf_passphrase_src){.env = t->passphrase_env, .file = t->passphrase_file,
                               .command = t->passphrase_command, .what = what};
}

int cf_run_open_target(cf_run *run, const cf_target *t, int open_repo)
{
    if (open_repo & CF_RUN_MAINT) {
        run->maintenance = 1;
        open_repo &= ~CF_RUN_MAINT;
    }
    unsigned extra = 0;
    if (open_repo & CF_RUN_NO_CACHE) {
        extra = CF_REPO_OPEN_NO_CACHE;
        open_repo &= ~CF_RUN_NO_CACHE;
    }
    if (open_repo & CF_RUN_SETS) {
        extra |= CF_REPO_OPEN_SETS;
        open_repo &= ~CF_RUN_SETS;
    }
    const cf_driver *d = cf_registry_find(COFFER_KIND_STORAGE, t->driver);
    if (!d) {
        cf_error_prefix("%s: target '%s'", run->policy->file, t->name);
        return -1;
    }
    char label[256];
    snprintf(label, sizeof label, "target '%s' (%s)", t->name, t->location);
    /* Maintenance commands use the target's maintenance options (other
     * credentials) in place of its own. */
    coffer_config *opts = t->options;
    if (run->maintenance && t->maintenance) {
        opts = cf_config_dup(t->options);
        for (size_t i = 0; i < t->maintenance->n; i++) {
            const cf_config_item *it = &t->maintenance->items[i];
            /* A credential given one way replaces the target's given any way. */
            size_t l = strlen(it->name);
            const char *sfx = l > 4 && strcmp(it->name + l - 4, "_env") == 0    ? "_env"
                              : l > 5 && strcmp(it->name + l - 5, "_file") == 0 ? "_file"
                                                                                : "";
            if (*sfx) {
                char *base = cf_strndup(it->name, l - strlen(sfx));
                char *e = cf_asprintf("%s_env", base), *f = cf_asprintf("%s_file", base);
                cf_config_remove(opts, base);
                cf_config_remove(opts, e);
                cf_config_remove(opts, f);
                free(base);
                free(e);
                free(f);
            }
            cf_config_remove(opts, it->name);
            if (it->is_list)
                for (size_t j = 0; j < it->nitems; j++)
                    cf_config_list_add(opts, it->name, it->items[j], it->line, it->col);
            else
                cf_config_set(opts, it->name, it->value, it->line, it->col);
        }
    }
    /* An immutable target needs object lock: a driver that can insist on
     * it (and create its bucket with it) is told to. */
    if (t->immutable && !cf_config_find(opts, "require_object_lock")) {
        const coffer_option *tab = cf_registry_options(NULL, COFFER_KIND_STORAGE, t->driver);
        for (; tab && tab->name; tab++)
            if (strcmp(tab->name, "require_object_lock") == 0) {
                if (opts == t->options)
                    opts = cf_config_dup(t->options);
                cf_config_set(opts, "require_object_lock", "true", 0, 0);
                break;
            }
    }
    int rc = cf_store_new_at(&d->desc, opts, t->location, label, run->policy->root, &run->store);
    if (opts != t->options)
        cf_config_free(opts);
    if (rc != 0)
        return -1;
    run->target = t;
    if (!open_repo)
        return 0;
    unsigned flags = (open_repo == CF_RUN_MANIFESTS ? CF_REPO_OPEN_NO_INDEX : 0) | extra;
    return cf_run_open_repo(run, flags);
}

/* ---- A lock written while the repository opens ----------------------- */

struct cf_early_lock {
    cf_run *run;
    int exclusive;
    char *command;
    pthread_t th;
    int started, rc;
    char err[2048];
    cf_lock *lock;
    cf_sets_ahead *sets; /* listed once the lock was written */
};

static void early_written(void *ud)
{
    struct cf_early_lock *e = ud;
    /* called again when a contended lock is tried again */
    cf_sets_ahead_free(e->sets);
    e->sets = e->run->list_sets_ahead ? cf_sets_ahead_start(e->run->store) : NULL;
}

static void *early_main(void *arg)
{
    struct cf_early_lock *e = arg;
    /* Nothing is written before the bucket's checks pass. */
    if (cf_store_prepare_wait(e->run->store) != 0) {
        e->rc = -1;
        snprintf(e->err, sizeof e->err, "the storage location could not be prepared");
        return NULL;
    }
    e->rc =
        cf_lock_acquire_then(e->run->store, e->exclusive, e->command, early_written, e, &e->lock);
    if (e->rc != 0)
        snprintf(e->err, sizeof e->err, "%s", cf_error());
    return NULL;
}

/* The repository's config is read: there is a repository to lock. */
static void early_start(void *ud)
{
    struct cf_early_lock *e = ud;
    if (!e->started)
        e->started = pthread_create(&e->th, NULL, early_main, e) == 0;
}

static void early_new(cf_run *run, int exclusive, const char *command)
{
    run->early = cf_calloc(1, sizeof *run->early);
    run->early->run = run;
    run->early->exclusive = exclusive;
    run->early->command = cf_strdup(command);
    run->list_sets_ahead = 1;
}

void cf_run_lock_early(cf_run *run, int exclusive, const char *command)
{
    if (run->early || run->repo)
        return;
    early_new(run, exclusive, command);
}

void cf_run_lock_begin(cf_run *run, int exclusive, const char *command)
{
    if (!run->early)
        early_new(run, exclusive, command);
    early_start(run->early);
}

/* Waits for the lock and hands it to run; -1 with its error when it
 * could not be taken, 1 when it was never started (run locks itself). */
static int early_take(cf_run *run)
{
    struct cf_early_lock *e = run->early;
    run->early = NULL;
    int rc = 1;
    if (e->started) {
        pthread_join(e->th, NULL);
        rc = e->rc != 0 ? cf_fail("%s", e->err) : 0;
        run->lock = e->lock;
        if (run->repo)
            cf_repo_sets_ahead_adopt(run->repo, e->sets);
        else
            cf_sets_ahead_free(e->sets);
    }
    free(e->command);
    free(e);
    return rc;
}

int cf_run_open_repo(cf_run *run, unsigned flags)
{
    const cf_target *t = run->target;
    /* The bucket's checks (prepare) run while the repository is read: on
     * a distant bucket they are round trips of their own. An immutable
     * target needs them first (the retention they learn). */
    if (t->immutable || !cf_store_prepare_begin(run->store)) {
        if (cf_store_prepare(run->store, 0) != 0)
            return -1;
        if (t->immutable && cf_immutable_open(run) != 0)
            return -1;
    }
    cf_passphrase_src ps;
    cf_run_passphrase(t, &ps);
    cf_repo_open_opts o = {.flags = flags, .pass = &ps};
    if (run->early) {
        o.on_config = early_start;
        o.ud = run->early;
    }
    int orc = cf_repo_open_with(run->store, &o, &run->repo);
    /* What prepare found wrong (no bucket, another region, refused
     * credentials) explains a failed open better than the open does; a
     * join that succeeds leaves the open's error as it is. */
    if (cf_store_preparing(run->store) && cf_store_prepare(run->store, 0) != 0) {
        cf_repo_close(run->repo);
        run->repo = NULL;
        return -1;
    }
    if (orc != 0) {
        /* Asked only now: on a distant bucket each request before the
         * open is a round trip every run pays. */
        char *saved = cf_strdup(cf_error());
        coffer_object_stat st;
        int missing = cf_store_stat(run->store, "config", &st) == COFFER_ERR_NOT_FOUND;
        cf_fail("%s", saved);
        free(saved);
        if (missing)
            return cf_fail("target '%s' (%s): no repository there; create it with `coffer "
                           "init -p %s`",
                           t->name, t->location, run->policy->file);
        if (!strstr(cf_error(), run->store->label)) /* name the target once */
            cf_error_prefix("target '%s' (%s)", t->name, t->location);
        return -1;
    }
    return 0;
}

int cf_run_open(const char *policy_file, const char *target, int open_repo, cf_run **out)
{
    return cf_run_open_locking(policy_file, target, open_repo, -1, NULL, out);
}

int cf_run_open_locking(const char *policy_file, const char *target, int open_repo, int exclusive,
                        const char *command, cf_run **out)
{
    cf_run *run = cf_calloc(1, sizeof *run);
    if (cf_run_load_policy(policy_file, &run->policy) != 0) {
        free(run);
        return -2;
    }
    if (command)
        cf_run_lock_early(run, exclusive, command);
    const cf_target *t = target ? cf_policy_target(run->policy, target) : &run->policy->targets[0];
    if (t && (open_repo & CF_RUN_WARM))
        run->warm = cf_prefetch_policy(run->policy);
    open_repo &= ~CF_RUN_WARM;
    if (!t) {
        cf_fail("%s: no target named '%s'", policy_file, target ? target : "");
        cf_run_close(run);
        return -2;
    }
    if (cf_run_open_target(run, t, open_repo) != 0) {
        cf_run_close(run);
        return -1;
    }
    *out = run;
    return 0;
}

int cf_run_open_policy(cf_policy *p, int open_repo, cf_run **out)
{
    cf_run *run = cf_calloc(1, sizeof *run);
    run->policy = p;
    if (cf_run_open_target(run, &p->targets[0], open_repo) != 0) {
        cf_run_close(run);
        return -1;
    }
    *out = run;
    return 0;
}

int cf_run_open_location(const char *location, int open_repo, cf_run **out)
{
    if (!location || !*location)
        return cf_fail("--repo needs a repository location");
    /* a relative directory is taken from the working directory */
    char *abs = NULL;
    if (location[0] != '/' && !strstr(location, "://")) {
        char cwd[4096];
        if (!getcwd(cwd, sizeof cwd))
            return cf_fail_errno("--repo %s: cannot tell the working directory", location);
        abs = cf_asprintf("%s/%s", cwd, location);
    }
    json_t *loc = json_string(abs ? abs : location);
    free(abs);
    char *q = loc ? json_dumps(loc, JSON_ENCODE_ANY) : NULL;
    json_decref(loc);
    if (!q)
        return cf_fail("--repo: the location is not valid UTF-8");
    cf_buf b = {0};
    const char *head = "name: repository\nroot: /\ntargets:\n  - name: repository\n    location: ";
    cf_buf_append(&b, head, strlen(head));
    for (const char *c = q; *c; c++) /* "$" doubled: the location is taken as written */
        cf_buf_append(&b, *c == '$' ? "$$" : c, *c == '$' ? 2 : 1);
    free(q);
    const char *rest = "\ncomponents:\n  - name: repository\n    type: files\n    paths: [repository]\n";
    cf_buf_append(&b, rest, strlen(rest));
    cf_policy *p;
    char *label = cf_asprintf("--repo %s", location);
    int rc = cf_policy_load_string(label, (const char *)b.data, b.len, &p);
    free(label);
    cf_buf_free(&b);
    if (rc != 0)
        return -1;
    if (cf_policy_check_drivers(p, cf_registry_options, NULL) != 0) {
        cf_policy_free(p);
        return -1;
    }
    cf_child_env_policy(p);
    cf_run *run;
    if (cf_run_open_policy(p, 0, &run) != 0) {
        cf_error_prefix("--repo %s", location);
        return -1;
    }
    if (open_repo) {
        coffer_object_stat st;
        if (cf_store_prepare(run->store, 0) != 0 || cf_store_stat(run->store, "config", &st) != 0) {
            /* missing, or could not be asked: the store's reason, without
             * the label of the target made up for the location */
            const char *e = cf_error();
            size_t ll = strlen(run->store->label);
            if (strncmp(e, run->store->label, ll) == 0 && strncmp(e + ll, ": ", 2) == 0)
                e += ll + 2;
            char *why = cf_strdup(e);
            cf_fail("--repo %s: no coffer repository there (%s)", location, why);
            free(why);
            cf_run_close(run);
            return -1;
        }
        cf_passphrase_src ps;
        cf_run_passphrase(run->target, &ps);
        cf_repo_open_opts o = {.flags = open_repo == CF_RUN_MANIFESTS ? CF_REPO_OPEN_NO_INDEX : 0,
                               .pass = &ps};
        if (cf_repo_open_with(run->store, &o, &run->repo) != 0) {
            cf_error_prefix("--repo %s", location);
            cf_run_close(run);
            return -1;
        }
    }
    *out = run;
    return 0;
}

/* Once the lock object is written, the sets are listed while the other
 * locks are (run->list_sets_ahead): the command's first look at the sets
 * under the lock (the previous set of a backup, the set a restore
 * resolved) costs no round trip of its own. */
static void lock_written(void *ud)
{
    cf_run *run = ud;
    if (run->repo && run->list_sets_ahead)
        cf_repo_sets_ahead(run->repo);
}

int cf_run_lock(cf_run *run, int exclusive, const char *command)
{
    int erc = run->early ? early_take(run) : 1;
    if (erc <= 0) {
        if (erc < 0)
            cf_error_prefix("target '%s' (%s)", run->target->name, run->target->location);
        return erc;
    }
    if (cf_lock_acquire_then(run->store, exclusive, command, lock_written, run, &run->lock) != 0) {
        cf_error_prefix("target '%s' (%s)", run->target->name, run->target->location);
        return -1;
    }
    return 0;
}

static void *unlock_thread(void *arg)
{
    cf_lock_release(arg);
    return NULL;
}

void cf_run_unlock_during(cf_run *run, void (*fn)(void *ud), void *ud)
{
    cf_lock *l = run->lock;
    run->lock = NULL;
    pthread_t th;
    int threaded = l && cf_thread_or_here(&th, unlock_thread, l);
    fn(ud);
    if (threaded)
        pthread_join(th, NULL);
}

void cf_run_close(cf_run *run)
{
    if (!run)
        return;
    cf_prefetch_stop(run->warm);
    if (run->early) {
        char *saved = cf_strdup(cf_error()); /* the failure that ends the run */
        early_take(run);
        if (saved[0])
            cf_fail("%s", saved);
        else
            cf_error_clear();
        free(saved);
    }
    cf_lock_release(run->lock);
    if (run->repo)
        cf_repo_close(run->repo);
    cf_store_free(run->store);
    cf_policy_free(run->policy);
    free(run);
}

static void on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    atomic_store(&cf_cancel_flag, 1);
    errno = saved;
}

void cf_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Keep the last `cap` bytes of a command's output in a ring. */
typedef struct tail {
    char *buf;
    size_t cap, len, head; /* head: next write position */
} tail;

static void tail_add(tail *t, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        t->buf[t->head] = p[i];
        t->head = (t->head + 1) % t->cap;
        if (t->len < t->cap)
            t->len++;
    }
}

static char *tail_take(tail *t)
{
    char *s = malloc(t->len + 1);
    if (!s)
        return NULL;
    size_t start = (t->head + t->cap - t->len) % t->cap;
    for (size_t i = 0; i < t->len; i++)
        s[i] = t->buf[(start + i) % t->cap];
    s[t->len] = 0;
    return s;
}

/* Copy what the child wrote to our stderr and into the tail; returns 0 at
 * end of file, 1 when more may come. */
static int pump(int fd, tail *t)
{
    char b[4096];
    ssize_t r = read(fd, b, sizeof b);
    if (r > 0) {
        if (write(2, b, (size_t)r) < 0) {
            /* stderr gone: keep capturing */
        }
        tail_add(t, b, (size_t)r);
        return 1;
    }
    return r < 0 && (errno == EINTR || errno == EAGAIN) ? 1 : 0;
}

int cf_run_command(const char *what, const char *cmd, const char *cwd, int timeout_s,
                   char *const *env_extra)
{
    return cf_run_command_output(what, cmd, cwd, timeout_s, env_extra, NULL, 0);
}

int cf_run_command_output(const char *what, const char *cmd, const char *cwd, int timeout_s,
                          char *const *env_extra, char **output, size_t max)
{
    if (output)
        *output = NULL;
    /* Built before fork: the child of a threaded process must not allocate. */
    char **env = cf_child_env(NULL, (const char *const *)env_extra);
    if (!env)
        return cf_fail("%s: cannot start `%s`: out of memory", what, cmd);
    int pfd[2] = {-1, -1};
    tail t = {0};
    if (output) {
        t.cap = max ? max : 1;
        t.buf = malloc(t.cap);
        if (!t.buf || pipe2(pfd, O_CLOEXEC) != 0) {
            free(t.buf);
            cf_child_env_free(env);
            return cf_fail_errno("%s: cannot start `%s`", what, cmd);
        }
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        cf_child_env_free(env);
        if (output) {
            close(pfd[0]);
            close(pfd[1]);
            free(t.buf);
        }
        errno = err;
        return cf_fail_errno("%s: cannot start `%s`", what, cmd);
    }
    if (pid == 0) {
        setpgid(0, 0);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        if (output) {
            dup2(pfd[1], 1);
            dup2(pfd[1], 2);
        } else {
            dup2(2, 1);
        }
        if (cwd && chdir(cwd) != 0) {
            fprintf(stderr, "coffer: %s: cannot enter %s: %s\n", what, cwd, strerror(errno));
            _exit(126);
        }
        char *const argv[] = {"sh", "-c", (char *)cmd, NULL};
        execve("/bin/sh", argv, env);
        _exit(127);
    }
    cf_child_env_free(env);
    setpgid(pid, pid);
    if (output) {
        close(pfd[1]);
        fcntl(pfd[0], F_SETFL, O_NONBLOCK);
    }
    double deadline = cf_now() + (timeout_s > 0 ? timeout_s : 1e9);
    int status, rc = 0, done = 0;
    /* Looked at after 1 ms, then twice as long each time, 20 ms at most:
     * a quick command (`true`, a systemctl call) does not cost 20 ms. */
    long nap_ms = 1;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            done = 1;
            break;
        }
        if (r < 0 && errno != EINTR) {
            rc = cf_fail_errno("%s: waiting for `%s`", what, cmd);
            break;
        }
        if (cf_now() > deadline) {
            kill(-pid, SIGTERM);
            struct timespec ts = {2, 0};
            nanosleep(&ts, NULL);
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            rc = cf_fail("%s: `%s` timed out after %d s and was killed", what, cmd, timeout_s);
            break;
        }
        if (output) {
            struct pollfd pl = {pfd[0], POLLIN, 0};
            if (pfd[0] >= 0 && poll(&pl, 1, (int)nap_ms) > 0 && pump(pfd[0], &t) == 0) {
                /* the child closed its output; keep waiting for its exit */
                close(pfd[0]);
                pfd[0] = -1;
            } else if (pfd[0] < 0) {
                struct timespec ts = {0, nap_ms * 1000000L};
                nanosleep(&ts, NULL);
            }
        } else {
            struct timespec ts = {0, nap_ms * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (nap_ms < 20)
            nap_ms = nap_ms * 2 > 20 ? 20 : nap_ms * 2;
    }
    if (pfd[0] >= 0) {
        /* What is still in the pipe; a background grandchild holding it
         * open does not keep us waiting past half a second. */
        double until = cf_now() + 0.5;
        while (cf_now() < until) {
            struct pollfd pl = {pfd[0], POLLIN, 0};
            if (poll(&pl, 1, 50) <= 0) {
                if (cf_now() >= until)
                    break;
                continue;
            }
            if (pump(pfd[0], &t) == 0)
                break;
        }
        close(pfd[0]);
    }
    if (output) {
        *output = tail_take(&t);
        free(t.buf);
    }
    if (rc != 0)
        return rc;
    if (!done)
        return -1;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return cf_fail("%s: `%s` killed by signal %d", what, cmd, WTERMSIG(status));
}

void cf_iso_time(time_t t, char *buf, size_t len)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void cf_new_set_id(char *buf, size_t len)
{
    struct tm tm;
    time_t t = time(NULL);
    gmtime_r(&t, &tm);
    /* The 8 hex digits: milliseconds (10 bits) then 22 random bits, so
     * ids of one second still sort by time and "latest" is the newest. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    t = now.tv_sec;
    gmtime_r(&t, &tm);
    uint32_t rnd;
    cf_random(&rnd, sizeof rnd);
    uint32_t ms = (uint32_t)(now.tv_nsec / 1000000);
    uint32_t v = (ms << 22) | (rnd & 0x3fffff);
    char ts[32];
    strftime(ts, sizeof ts, "%Y%m%dT%H%M%SZ", &tm);
    snprintf(buf, len, "%s-%08x", ts, v);
}

int cf_policy_sets(cf_run *run, char ***ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    char **all;
    size_t na;
    if (cf_sets_list(run->repo, &all, &na) != 0)
        return -1;
    for (size_t i = 0; i < na; i++) {
        json_t *h;
        if (cf_manifest_header(run->repo, all[i], &h) != 0) {
            cf_log(CF_LOG_WARN, "set %s left out: %s", all[i], cf_error());
            continue;
        }
        const char *p = json_string_value(json_object_get(h, "policy"));
        if (p && strcmp(p, run->policy->name) == 0) {
            *ids = cf_realloc(*ids, (*n + 1) * sizeof **ids);
            (*ids)[(*n)++] = cf_strdup(all[i]);
        }
        json_decref(h);
    }
    cf_strv_free(all, na);
    return 0;
}

/* Newest of ids (sorted, oldest first) of run's policy made on host (NULL:
 * any host). With a host, a set of another host is the answer when none
 * of this host's is found within 64 sets older than it. */
static char *newest_of(cf_run *run, char **ids, size_t n, const char *host)
{
    char *any = NULL, *mine = NULL;
    size_t since_any = 0; /* another host's set found: look a little further only */
    for (size_t i = n; i-- > 0 && !mine && since_any < 64;) {
        if (any)
            since_any++;
        json_t *h;
        if (cf_manifest_header(run->repo, ids[i], &h) != 0) {
            cf_log(CF_LOG_WARN, "set %s: %s", ids[i], cf_error());
            continue;
        }
        const char *pol = json_string_value(json_object_get(h, "policy"));
        const char *hh = json_string_value(json_object_get(h, "host"));
        if (pol && strcmp(pol, run->policy->name) == 0) {
            if (!host || (hh && strcmp(hh, host) == 0))
                mine = cf_strdup(ids[i]);
            else if (!any)
                any = cf_strdup(ids[i]);
        }
        json_decref(h);
    }
    if (mine) {
        free(any);
        return mine;
    }
    return any;
}

char *cf_newest_set(cf_run *run, const char *host)
{
    char **ids;
    size_t n;
    if (cf_sets_list(run->repo, &ids, &n) != 0)
        return NULL;
    char *id = newest_of(run, ids, n, host);
    cf_strv_free(ids, n);
    return id;
}

int cf_resolve_set(cf_run *run, const char *spec, char **id_out)
{
    char **ids;
    size_t n;
    if (cf_sets_list(run->repo, &ids, &n) != 0)
        return -1;
    int rc = -1;
    if (!spec || strcmp(spec, "latest") == 0) {
        if ((*id_out = newest_of(run, ids, n, NULL)) != NULL)
            rc = 0;
        else
            cf_fail("target '%s': no set of policy '%s' yet", run->target->name, run->policy->name);
    } else {
        size_t l = strlen(spec), hits = 0;
        for (size_t i = 0; i < n; i++)
            if (strncmp(ids[i], spec, l) == 0) {
                hits++;
                if (hits == 1)
                    *id_out = cf_strdup(ids[i]);
            }
        if (hits == 1)
            rc = 0;
        else if (hits == 0)
            cf_fail("target '%s': no set %s (see `coffer sets`)", run->target->name, spec);
        else {
            free(*id_out);
            *id_out = NULL;
            cf_fail("target '%s': set id %s is ambiguous (%zu sets match)", run->target->name, spec,
                    hits);
        }
    }
    cf_strv_free(ids, n);
    return rc;
}

int cf_dbinst_open(const cf_component *c, const char *root, cf_dbinst *out)
{
    memset(out, 0, sizeof *out);
    const cf_driver *d = cf_registry_find(COFFER_KIND_DATABASE, c->driver);
    if (!d)
        return -1;
    char label[256];
    snprintf(label, sizeof label, "component '%s' (%s)", c->name, c->driver);
    out->ops = d->desc.database;
    out->comp = c;
    out->hctx = cf_hctx_new(label, root);
    coffer_status st = out->ops->instance_new(cf_host_table(), out->hctx, c->options, &out->inst);
    if (st != COFFER_OK) {
        cf_hctx_fail(out->hctx, st, "cannot open");
        cf_hctx_free(out->hctx);
        out->hctx = NULL;
        out->inst = NULL;
        return -1;
    }
    uint32_t caps = out->ops->capabilities ? out->ops->capabilities(out->inst) : 0;
    if (cf_registry_db_caps_check(c->driver, out->ops, caps) != 0) {
        cf_error_prefix("component '%s'", c->name);
        cf_dbinst_close(out);
        return -1;
    }
    return 0;
}

void cf_dbinst_close(cf_dbinst *d)
{
    if (d->inst)
        d->ops->instance_free(d->inst);
    cf_hctx_free(d->hctx);
    memset(d, 0, sizeof *d);
}
