#include "repo/lock.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

struct cf_lock {
    cf_store *st;
    char key[80];
    char *body_cmd;
    int exclusive;
    time_t created;
    pthread_t thr;
    int thr_running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
};

static char *lock_body(const cf_lock *l, time_t now)
{
    char host[256] = "unknown";
    gethostname(host, sizeof host - 1);
    json_t *j = json_pack("{s:s,s:i,s:s,s:s,s:I,s:I}", "host", host, "pid", (int)getpid(),
                          "kind", l->exclusive ? "exclusive" : "shared", "command",
                          l->body_cmd ? l->body_cmd : "", "created", (json_int_t)l->created,
                          "refreshed", (json_int_t)now);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

static int write_lock(cf_lock *l, uint32_t flags)
{
    char *body = lock_body(l, time(NULL));
    int rc = cf_store_put(l->st, l->key, body, strlen(body), flags | COFFER_WRITE_PRIVATE);
    free(body);
    return rc;
}

typedef struct lock_info {
    char *key;
    char host[256];
    long pid;
    int exclusive;
    time_t refreshed;
    char command[64];
    int readable;
} lock_info;

typedef struct lock_list {
    lock_info *v;
    size_t n;
} lock_list;

static int list_cb(void *ud, const char *key, const coffer_object_stat *st)
{
    (void)st;
    lock_list *l = ud;
    l->v = cf_realloc(l->v, (l->n + 1) * sizeof *l->v);
    memset(&l->v[l->n], 0, sizeof l->v[0]);
    l->v[l->n++].key = cf_strdup(key);
    return 0;
}

static void read_info(cf_store *st, lock_info *li)
{
    cf_buf b = {0};
    if (cf_store_get(st, li->key, &b) != 0) {
        cf_buf_free(&b);
        return;
    }
    json_t *j = json_loadb((const char *)b.data, b.len, 0, NULL);
    cf_buf_free(&b);
    if (!j)
        return;
    snprintf(li->host, sizeof li->host, "%s", json_string_value(json_object_get(j, "host")) ?: "?");
    snprintf(li->command, sizeof li->command, "%s",
             json_string_value(json_object_get(j, "command")) ?: "");
    li->pid = (long)json_integer_value(json_object_get(j, "pid"));
    li->exclusive = strcmp(json_string_value(json_object_get(j, "kind")) ?: "", "exclusive") == 0;
    li->refreshed = (time_t)json_integer_value(json_object_get(j, "refreshed"));
    li->readable = 1;
    json_decref(j);
}

/* The locks in the repository and what they say; own (NULL: none) is
 * listed but not read, its writer knows it. */
static int load_locks(cf_store *st, lock_list *out, const char *own)
{
    memset(out, 0, sizeof *out);
    if (cf_store_list(st, "locks/", list_cb, out) != 0)
        return -1;
    for (size_t i = 0; i < out->n; i++)
        if (!own || strcmp(out->v[i].key, own) != 0)
            read_info(st, &out->v[i]);
    return 0;
}

static void free_locks(lock_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].key);
    free(l->v);
}

/* Provably dead: written on this host by a pid that no longer exists; or
 * not refreshed for longer than the expiry. */
static const char *stale_reason(const lock_info *li)
{
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    if (!li->readable)
        return NULL;
    if (strcmp(li->host, host) == 0 && li->pid > 0 && kill((pid_t)li->pid, 0) != 0 &&
        errno == ESRCH)
        return "its process is gone";
    if (time(NULL) - li->refreshed > CF_LOCK_EXPIRY_S)
        return "it has not been refreshed for over 30 minutes";
    return NULL;
}

static void *refresher(void *arg)
{
    cf_lock *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += CF_LOCK_REFRESH_S;
        pthread_cond_timedwait(&l->cv, &l->mu, &ts);
        if (l->stop)
            break;
        pthread_mutex_unlock(&l->mu);
        if (write_lock(l, 0) != 0)
            cf_log(CF_LOG_WARN, "cannot refresh lock %s: %s", l->key, cf_error());
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* One attempt. *contended: the conflict was an exclusive lock written in
 * the last seconds, whose owner may yet see ours and back off. */
static int try_acquire(cf_store *st, int exclusive, const char *command, cf_lock **out,
                       int *contended, void (*written)(void *), void *ud)
{
    cf_lock *l = cf_calloc(1, sizeof *l);
    l->st = st;
    l->exclusive = exclusive;
    l->created = time(NULL);
    l->body_cmd = cf_strdup(command);
    uint8_t rnd[16];
    char hex[33];
    cf_random(rnd, sizeof rnd);
    cf_hex(rnd, sizeof rnd, hex);
    snprintf(l->key, sizeof l->key, "locks/%s", hex);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    /* Write ours first, then look: two contenders both see each other
     * and at worst both back off; neither proceeds unsafely. */
    if (write_lock(l, COFFER_WRITE_IF_ABSENT) != 0) {
        cf_error_prefix("cannot lock the repository");
        free(l->body_cmd);
        free(l);
        return -1;
    }
    if (written)
        written(ud);
    lock_list ll;
    if (load_locks(st, &ll, l->key) != 0) {
        cf_store_remove(st, l->key);
        free(l->body_cmd);
        free(l);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < ll.n && rc == 0; i++) {
        lock_info *li = &ll.v[i];
        if (strcmp(li->key, l->key) == 0)
            continue;
        if (!exclusive && !li->exclusive)
            continue;
        if (li->exclusive && time(NULL) - li->refreshed <= 10)
            *contended = 1;
        const char *why = stale_reason(li);
        if (why) {
            cf_log(CF_LOG_WARN, "removing stale lock %s (%s, pid %ld on %s, '%s'): %s", li->key,
                   li->exclusive ? "exclusive" : "shared", li->pid, li->host, li->command, why);
            cf_store_remove(st, li->key);
            continue;
        }
        char when[32] = "?";
        struct tm tm;
        gmtime_r(&li->refreshed, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        rc = cf_fail("repository is locked (%s lock %s held by '%s', pid %ld on %s, refreshed "
                     "%s); if that process is gone, run `coffer unlock`",
                     li->exclusive ? "exclusive" : "shared", li->key, li->command, li->pid,
                     li->host, when);
    }
    free_locks(&ll);
    if (rc != 0) {
        char saved[2048];
        snprintf(saved, sizeof saved, "%s", cf_error());
        cf_store_remove(st, l->key);
        cf_fail("%s", saved);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv);
        free(l->body_cmd);
        free(l);
        return -1;
    }
    if (pthread_create(&l->thr, NULL, refresher, l) == 0)
        l->thr_running = 1;
    *out = l;
    return 0;
}

int cf_lock_acquire(cf_store *st, int exclusive, const char *command, cf_lock **out)
{
    return cf_lock_acquire_then(st, exclusive, command, NULL, NULL, out);
}

int cf_lock_acquire_then(cf_store *st, int exclusive, const char *command,
                         void (*written)(void *ud), void *ud, cf_lock **out)
{
    /* Shared locks yield to an exclusive one being taken this very moment
     * (a prune starting as backups start: one of the two backs off, and
     * it should not be the backup for a lock that is gone a moment
     * later). A held exclusive lock still fails at once. */
    for (int attempt = 0;; attempt++) {
        int contended = 0;
        if (try_acquire(st, exclusive, command, out, &contended, written, ud) == 0)
            return 0;
        if (exclusive || !contended || attempt == 5)
            return -1;
        uint8_t r;
        cf_random(&r, 1);
        cf_log(CF_LOG_DEBUG, "%s; trying again", cf_error());
        usleep(500000 + (useconds_t)r * 4000); /* 0.5 to 1.5 s */
    }
}

void cf_lock_release(cf_lock *l)
{
    if (!l)
        return;
    if (l->thr_running) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_signal(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thr, NULL);
    }
    /* Released after a failure, often for the same cause (the server is
     * gone): the message of that failure is the one to report, not this. */
    char *saved = cf_strdup(cf_error());
    if (cf_store_remove_absent_ok(l->st, l->key) != 0) {
        cf_log(CF_LOG_WARN, "cannot remove lock %s: %s", l->key, cf_error());
        if (saved[0])
            cf_fail("%s", saved);
        else
            cf_error_clear();
    }
    free(saved);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l->body_cmd);
    free(l);
}

int cf_lock_remove_stale(cf_store *st, int all)
{
    lock_list ll;
    if (load_locks(st, &ll, NULL) != 0)
        return -1;
    int n = 0;
    for (size_t i = 0; i < ll.n; i++) {
        const char *why = all ? "removal of all locks requested" : stale_reason(&ll.v[i]);
        if (!why)
            continue;
        if (cf_store_remove(st, ll.v[i].key) == 0) {
            cf_log(CF_LOG_INFO, "removed lock %s (pid %ld on %s, '%s'): %s", ll.v[i].key,
                   ll.v[i].pid, ll.v[i].host, ll.v[i].command, why);
            n++;
        }
    }
    free_locks(&ll);
    return n;
}
