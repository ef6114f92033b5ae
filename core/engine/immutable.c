/*
 * Immutable targets: object lock retention kept correct under
 * deduplication (see immutable.h for the scheme).
 */
#include "engine/immutable.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/forget.h"
#include "engine/manifest.h"
#include "plugin/config.h"
#include "policy/policy.h"
#include "repo/repo.h"
#include "util/util.h"

#define SKEW_WARN_S 60 /* a larger difference of clocks is reported */
#define ROLL_THREADS 4 /* retention requests in flight during an extension */
#define DAY (86400)

void cf_utc_time(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (t <= 0 || !gmtime_r(&tt, &tm))
        snprintf(buf, len, "never");
    else
        strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* "30 days", "2 minutes", "1 day 2 hours" (approximate, for messages). */
static void span(int64_t s, char *buf, size_t len)
{
    if (s % DAY == 0)
        snprintf(buf, len, "%lld day%s", (long long)(s / DAY), s == DAY ? "" : "s");
    else if (s >= DAY)
        snprintf(buf, len, "%.1f days", (double)s / DAY);
    else if (s % 3600 == 0)
        snprintf(buf, len, "%lld hour%s", (long long)(s / 3600), s == 3600 ? "" : "s");
    else
        snprintf(buf, len, "%lld minute%s", (long long)(s / 60), s == 60 ? "" : "s");
}

int64_t cf_retention_horizon(const cf_retention *r, char *why, size_t len)
{
    int64_t best = 0;
    if (why && len)
        *why = 0;
    struct {
        const char *name;
        int n;
        int64_t unit;
    } rules[] = {{"keep_hourly", r->keep_hourly, 3600},
                 {"keep_daily", r->keep_daily, DAY},
                 {"keep_weekly", r->keep_weekly, 7 * DAY},
                 {"keep_monthly", r->keep_monthly, 31 * DAY},
                 {"keep_yearly", r->keep_yearly, 366 * DAY}};
    for (size_t i = 0; i < CF_ARRAY_LEN(rules); i++) {
        if (rules[i].n <= 0)
            continue;
        int64_t h = (int64_t)rules[i].n * rules[i].unit;
        if (h > best) {
            best = h;
            if (why)
                snprintf(why, len, "%s: %d", rules[i].name, rules[i].n);
        }
    }
    cf_duration d;
    if (r->keep_within && cf_duration_parse(r->keep_within, &d) == 0) {
        int64_t h = (int64_t)d.years * 366 * DAY + (int64_t)d.months * 31 * DAY +
                    (int64_t)d.weeks * 7 * DAY + (int64_t)d.days * DAY + (int64_t)d.hours * 3600;
        if (h > best) {
            best = h;
            if (why)
                snprintf(why, len, "keep_within: %s", r->keep_within);
        }
    }
    return best;
}

/* ---- originals of replaced objects ------------------------------------- */

static void pin_one(void *ud, const cf_version *oldest, const cf_version *newest, int n)
{
    cf_run *run = ud;
    char when[64];
    cf_utc_time(newest->mtime, when, sizeof when);
    cf_store_pin(run->store, oldest->key, oldest->vid);
    cf_log(CF_LOG_WARN,
           "target '%s': %s was replaced (%d versions, the newest of %s) by data coffer did not "
           "write; reading the original version %s (`coffer check` lists every such object)",
           run->target->name, oldest->key, n, when, oldest->vid);
}

static int pin_originals(cf_run *run)
{
    static const char *const prefixes[] = {"config", "keys/", "index/", "sets/"};
    for (size_t i = 0; i < CF_ARRAY_LEN(prefixes); i++) {
        cf_versions a = {0};
        if (cf_store_versions(run->store, prefixes[i], &a) != 0) {
            cf_versions_free(&a);
            return -1;
        }
        cf_versions_each_replaced(&a, pin_one, run);
        cf_versions_free(&a);
    }
    return 0;
}

/* ---- opening ------------------------------------------------------------ */

int cf_immutable_open(cf_run *run)
{
    const cf_target *t = run->target;
    cf_store *s = run->store;
    char a[64], b[64], why[128];
    if (!(s->caps & COFFER_CAP_RETENTION)) {
        const char *bucket = cf_config_get(s->cfg ? s->cfg : t->options, "bucket");
        if (bucket)
            return cf_fail("target '%s' (%s): immutable: bucket '%s' has no object lock; create "
                           "the bucket with object lock enabled, or remove immutable: from the "
                           "target",
                           t->name, t->location, bucket);
        return cf_fail("target '%s' (%s): immutable: this storage has no object lock (retention); "
                       "remove immutable: from the target or use a storage that has it",
                       t->name, t->location);
    }
    int64_t now;
    if (cf_store_server_time(s, &now) != 0)
        return -1;
    run->clock_skew = now - (int64_t)time(NULL);
    if (run->clock_skew > SKEW_WARN_S || run->clock_skew < -SKEW_WARN_S) {
        int64_t d = run->clock_skew < 0 ? -run->clock_skew : run->clock_skew;
        cf_log(CF_LOG_WARN,
               "target '%s': the host's clock is %lld s %s the storage's; retention dates follow "
               "the storage's clock",
               t->name, (long long)d, run->clock_skew > 0 ? "behind" : "ahead of");
    }
    int64_t horizon = cf_retention_horizon(&run->policy->retention, why, sizeof why);
    run->lock_period = t->lock_seconds;
    if (horizon > t->lock_seconds) {
        span(t->lock_seconds, a, sizeof a);
        span(horizon, b, sizeof b);
        cf_log(CF_LOG_WARN,
               "target '%s': immutable locks for %s, but the retention of policy '%s' keeps a set "
               "up to %s (%s): objects are locked for %s",
               t->name, a, run->policy->name, b, why, b);
        run->lock_period = horizon;
    }
    if ((s->caps & COFFER_CAP_VERSIONING) && pin_originals(run) != 0)
        return -1;
    coffer_lock_mode mode;
    int64_t until = 0;
    char *vid = cf_store_pinned(s, "config");
    int rc = cf_store_retention(s, "config", vid, &mode, &until);
    free(vid);
    if (rc != 0 && rc != COFFER_ERR_NOT_FOUND)
        return -1;
    cf_error_clear();
    run->lock_epoch = rc == 0 ? until : 0;
    int64_t need = now + run->lock_period;
    s->lock_mode = (coffer_lock_mode)t->lock_mode;
    if (run->lock_epoch >= need) {
        s->retain_until = run->lock_epoch;
    } else {
        int64_t step = run->lock_period / 4;
        s->retain_until = need + (step < 60 ? 60 : step);
        run->roll_due = rc == 0; /* a new repository's objects all get the new date */
    }
    return 0;
}

/* ---- extension ------------------------------------------------------------ */

typedef struct roll {
    cf_run *run;
    char **keys;
    size_t n;
    atomic_size_t next;
    atomic_int failed;
    atomic_ulong sent;
    pthread_mutex_t mu;
    char err[1024];
} roll;

static void *roll_worker(void *ud)
{
    roll *r = ud;
    cf_store *s = r->run->store;
    for (;;) {
        size_t i = atomic_fetch_add(&r->next, 1);
        if (i >= r->n || atomic_load(&r->failed))
            break;
        char *vid = cf_store_pinned(s, r->keys[i]);
        int rc = cf_store_set_retention(s, r->keys[i], vid, s->lock_mode, s->retain_until);
        free(vid);
        atomic_fetch_add(&r->sent, 1);
        if (rc == COFFER_ERR_NOT_FOUND) /* removed since it was listed (prune) */
            continue;
        if (rc != 0 && !atomic_exchange(&r->failed, 1)) {
            pthread_mutex_lock(&r->mu);
            snprintf(r->err, sizeof r->err, "%s", cf_error());
            pthread_mutex_unlock(&r->mu);
        }
    }
    return NULL;
}

static int run_roll(cf_run *run, char **keys, size_t n)
{
    roll r = {.run = run, .keys = keys, .n = n};
    pthread_mutex_init(&r.mu, NULL);
    size_t nt = n < ROLL_THREADS ? n : ROLL_THREADS;
    pthread_t th[ROLL_THREADS];
    size_t started = 0;
    for (; started < nt; started++)
        if (pthread_create(&th[started], NULL, roll_worker, &r) != 0)
            break;
    if (started == 0 && n)
        roll_worker(&r);
    for (size_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&r.mu);
    run->retention_requests += atomic_load(&r.sent);
    if (atomic_load(&r.failed))
        return cf_fail("%s", r.err);
    return 0;
}

/* The objects every set relies on: each pack the index names, the index
 * and key objects, and the proofs (the config is handled by the callers,
 * as it must come last or not at all). 0 or -1. */
static int live_keys(cf_run *run, cf_keys *k)
{
    cf_pack_list pl = {0};
    if (cf_repo_indexed_packs(run->repo, &pl) != 0)
        return -1;
    for (size_t i = 0; i < pl.n; i++)
        cf_keys_add(k, pl.keys[i]);
    cf_pack_list_free(&pl);
    cf_store *s = run->store;
    return cf_store_list_keys(s, "index/", k) != 0 || cf_store_list_keys(s, "keys/", k) != 0 ||
                   cf_store_list_keys(s, "proofs/", k) != 0
               ? -1
               : 0;
}

int cf_immutable_roll(cf_run *run)
{
    cf_store *s = run->store;
    cf_keys k = {0};
    int rc = -1;
    /* Manifests too: each needs only its own set's date, but a lock
     * extended with the rest costs one request per set and repairs a
     * manifest written before immutable: was set. */
    if (live_keys(run, &k) != 0 || cf_store_list_keys(s, "sets/", &k) != 0)
        goto out;
    /* A pack someone replaced: the original version is the one to keep. */
    if (s->caps & COFFER_CAP_VERSIONING) {
        cf_versions v = {0};
        int lr = cf_store_versions(s, "data/", &v);
        if (lr == 0)
            cf_versions_each_replaced(&v, pin_one, run);
        cf_versions_free(&v);
        if (lr != 0)
            goto out;
    }
    if (run_roll(run, k.v, k.n) != 0)
        goto out;
    /* The config last: its retention says the whole extension is done. */
    char *cfgkey = "config";
    if (run_roll(run, &cfgkey, 1) != 0)
        goto out;
    run->lock_epoch = s->retain_until;
    run->roll_due = 0;
    rc = 0;
out:
    if (rc != 0) {
        char until[64];
        cf_utc_time(s->retain_until, until, sizeof until);
        cf_error_prefix("extending the locks to %s", until);
    }
    cf_keys_free(&k);
    return rc;
}

/* ---- audit ---------------------------------------------------------------- */

typedef struct audit {
    cf_run *run;
    json_t *problems;
    const char *policy_file;
    int count;
} audit;

static void report(audit *a, const char *key, const char *problem, int64_t locked, int64_t needed,
                   const char *fix)
{
    char l[64], n[64];
    cf_utc_time(locked, l, sizeof l);
    cf_utc_time(needed, n, sizeof n);
    a->count++;
    json_array_append_new(a->problems, json_pack("{s:s,s:s,s:I,s:I,s:s}", "key", key, "problem",
                                                 problem, "locked_until", (json_int_t)locked,
                                                 "needed_until", (json_int_t)needed, "fix", fix));
    if (needed)
        cf_log(CF_LOG_WARN, "%s: %s (locked until %s, needed until %s); fix: %s", key, problem, l,
               n, fix);
    else
        cf_log(CF_LOG_WARN, "%s: %s; fix: %s", key, problem, fix);
}

static void check_lock(audit *a, const char *key, int64_t needed)
{
    cf_store *s = a->run->store;
    coffer_lock_mode mode;
    int64_t until;
    char *vid = cf_store_pinned(s, key);
    int rc = cf_store_retention(s, key, vid, &mode, &until);
    free(vid);
    char fix[512];
    snprintf(fix, sizeof fix, "coffer extend-locks -p %s --target %s", a->policy_file,
             a->run->target->name);
    a->run->retention_requests++;
    if (rc == COFFER_ERR_NOT_FOUND)
        return; /* removed meanwhile: not this audit's business */
    if (rc != 0) {
        report(a, key, cf_error(), 0, needed, fix);
        return;
    }
    if (mode == COFFER_LOCK_NONE)
        report(a, key,
               "not locked: written before immutable: was set, or not by coffer (a forged object?)",
               0, needed, fix);
    else if (until < needed)
        report(a, key, "lock ends before a set that needs it can be forgotten", until, needed, fix);
    else if (mode != (coffer_lock_mode)a->run->target->lock_mode && mode == COFFER_LOCK_GOVERNANCE)
        report(a, key, "governance lock where the target asks for compliance", until, needed, fix);
}

static void replaced_one(void *ud, const cf_version *oldest, const cf_version *newest, int n)
{
    audit *a = ud;
    char when[64], problem[512], fix[512];
    cf_utc_time(newest->mtime, when, sizeof when);
    snprintf(problem, sizeof problem,
             "replaced on %s by data coffer did not write (%d versions); coffer reads the "
             "original, version %s",
             when, n, oldest->vid);
    snprintf(fix, sizeof fix,
             "find out who holds credentials that may write to the bucket; with the maintenance "
             "credentials remove version %s once its lock allows",
             newest->vid);
    report(a, oldest->key, problem, 0, 0, fix);
}

int cf_immutable_audit(cf_run *run, json_t *problems, const char *policy_file)
{
    audit a = {.run = run, .problems = problems, .policy_file = policy_file};
    cf_store *s = run->store;
    cf_keys k = {0};
    int rc = -1;
    /* Each set needs its objects until its time plus the lock period. */
    int64_t newest = 0;
    cf_keys sets = {0};
    if (cf_store_list_keys(s, "sets/", &sets) != 0) {
        cf_keys_free(&sets);
        goto out;
    }
    for (size_t i = 0; i < sets.n; i++) {
        json_t *h = NULL;
        if (cf_manifest_header(run->repo, sets.v[i] + 5, &h) != 0) {
            /* unreadable (check names it): its lock still says who wrote it */
            cf_error_clear();
            check_lock(&a, sets.v[i], 0);
            continue;
        }
        const char *ts = json_string_value(json_object_get(h, "time"));
        int64_t t = ts ? (int64_t)cf_parse_iso(ts) : 0;
        json_decref(h);
        if (t <= 0) {
            check_lock(&a, sets.v[i], 0); /* no time: at least its lock */
            continue;
        }
        t += run->clock_skew;
        if (t > newest)
            newest = t;
        check_lock(&a, sets.v[i], t + run->lock_period);
    }
    cf_keys_free(&sets);
    /* Packs, index and key objects, and the config serve every set. */
    int64_t need_all = newest ? newest + run->lock_period : 0;
    if (live_keys(run, &k) != 0)
        goto out;
    cf_keys_add(&k, "config");
    for (size_t i = 0; i < k.n; i++)
        check_lock(&a, k.v[i], strncmp(k.v[i], "proofs/", 7) == 0 ? 0 : need_all);
    /* Lock objects are never locked (else they could not go away). */
    cf_keys locks = {0};
    if (cf_store_list_keys(s, "locks/", &locks) == 0)
        for (size_t i = 0; i < locks.n; i++) {
            coffer_lock_mode mode;
            int64_t until;
            if (cf_store_retention(s, locks.v[i], NULL, &mode, &until) == 0 &&
                mode != COFFER_LOCK_NONE)
                report(&a, locks.v[i],
                       "a lock object under retention: the bucket has a default retention, "
                       "which also locks what coffer must remove",
                       until, 0, "remove the bucket's default retention; coffer sets its own");
        }
    cf_keys_free(&locks);
    /* Replaced objects: versions coffer did not write. */
    if (s->caps & COFFER_CAP_VERSIONING) {
        cf_versions v = {0};
        if (cf_store_versions(s, "", &v) != 0) {
            cf_versions_free(&v);
            goto out;
        }
        cf_versions_each_replaced(&v, replaced_one, &a);
        cf_versions_free(&v);
    }
    rc = a.count;
out:
    cf_keys_free(&k);
    return rc;
}

/* ---- purge ---------------------------------------------------------------- */

int cf_immutable_purge(cf_run *run, int bypass_governance, cf_purge_stats *st)
{
    cf_store *s = run->store;
    memset(st, 0, sizeof *st);
    if (!(s->caps & COFFER_CAP_VERSIONING))
        return 0;
    int64_t now;
    if ((s->caps & COFFER_CAP_RETENTION) && cf_store_server_time(s, &now) != 0)
        return -1;
    if (!(s->caps & COFFER_CAP_RETENTION))
        now = (int64_t)time(NULL);
    cf_versions a = {0};
    if (cf_store_versions(s, "", &a) != 0) {
        cf_versions_free(&a);
        return -1;
    }
    uint32_t flags = bypass_governance ? COFFER_REMOVE_BYPASS_GOVERNANCE : 0;
    for (size_t i = 0; i < a.n;) {
        size_t j = i;
        while (j < a.n && strcmp(a.v[j].key, a.v[i].key) == 0)
            j++;
        /* Only keys coffer removed: the newest version is a delete marker. */
        if (!a.v[j - 1].marker) {
            i = j;
            continue;
        }
        int left = 0;
        for (size_t k = i; k < j; k++) {
            if (a.v[k].marker)
                continue;
            coffer_lock_mode mode = COFFER_LOCK_NONE;
            int64_t until = 0;
            if ((s->caps & COFFER_CAP_RETENTION) &&
                cf_store_retention(s, a.v[k].key, a.v[k].vid, &mode, &until) != 0)
                cf_error_clear();
            int locked = mode != COFFER_LOCK_NONE && until > now &&
                         !(bypass_governance && mode == COFFER_LOCK_GOVERNANCE);
            int rc = locked ? COFFER_ERR_LOCKED
                            : cf_store_remove_version(s, a.v[k].key, a.v[k].vid, flags);
            if (rc == 0) {
                st->versions_removed++;
            } else {
                if (rc != COFFER_ERR_LOCKED)
                    cf_log(CF_LOG_WARN, "prune: %s version %s: %s", a.v[k].key, a.v[k].vid,
                           cf_error());
                left++;
                st->versions_waiting++;
                if (until && (!st->waiting_until || until < st->waiting_until))
                    st->waiting_until = until;
            }
        }
        /* With no version left, the delete markers go too. */
        for (size_t k = i; k < j && !left; k++)
            if (a.v[k].marker && cf_store_remove_version(s, a.v[k].key, a.v[k].vid, flags) != 0)
                cf_error_clear();
        i = j;
    }
    cf_versions_free(&a);
    return 0;
}
