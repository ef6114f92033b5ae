#include "engine/forget.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/manifest.h"
#include "engine/proof.h"
#include "repo/lock.h"
#include "util/util.h"

time_t cf_parse_iso(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm))
        return 0;
    return timegm(&tm);
}

typedef long (*bucket_fn)(time_t t);

static long b_hour(time_t t)
{
    return (long)(t / 3600);
}

static long b_day(time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    return (tm.tm_year + 1900L) * 1000 + tm.tm_yday;
}

static long b_week(time_t t)
{
    /* ISO weeks: shift to the Thursday of the week, then count weeks. */
    struct tm tm;
    gmtime_r(&t, &tm);
    int wday = (tm.tm_wday + 6) % 7; /* Monday = 0 */
    time_t thursday = t - (time_t)wday * 86400 + 3 * 86400;
    gmtime_r(&thursday, &tm);
    return (tm.tm_year + 1900L) * 100 + tm.tm_yday / 7;
}

static long b_month(time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    return (tm.tm_year + 1900L) * 100 + tm.tm_mon;
}

static long b_year(time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    return tm.tm_year + 1900L;
}

static void add_reason(cf_keep_set *s, const char *r)
{
    size_t l = strlen(s->reasons);
    snprintf(s->reasons + l, sizeof s->reasons - l, "%s%s", l ? "," : "", r);
    s->keep = 1;
}

/* Newest first: keep the newest set of each of the `count` most recent
 * buckets that hold a set. */
static void apply_buckets(cf_keep_set *sets, size_t n, int count, bucket_fn f, const char *name)
{
    if (count <= 0)
        return;
    long last = 0;
    int have = 0;
    for (size_t i = n; i-- > 0 && count > 0;) {
        long b = f(sets[i].time);
        if (have && b == last)
            continue;
        add_reason(&sets[i], name);
        last = b;
        have = 1;
        count--;
    }
}

int cf_retention_apply(const cf_retention *r, cf_keep_set *sets, size_t n)
{
    int any = r->keep_last > 0 || r->keep_hourly > 0 || r->keep_daily > 0 || r->keep_weekly > 0 ||
              r->keep_monthly > 0 || r->keep_yearly > 0 || r->keep_within || r->keep_proven > 0;
    if (!any)
        return cf_fail("no retention rule (keep_last, keep_daily, ...) is set: refusing to forget "
                       "every set");
    for (size_t i = 0; i < n; i++) {
        sets[i].keep = 0;
        sets[i].reasons[0] = 0;
    }
    if (r->keep_last > 0)
        for (size_t i = n, k = 0; i-- > 0 && k < (size_t)r->keep_last; k++)
            add_reason(&sets[i], "last");
    apply_buckets(sets, n, r->keep_hourly, b_hour, "hourly");
    apply_buckets(sets, n, r->keep_daily, b_day, "daily");
    apply_buckets(sets, n, r->keep_weekly, b_week, "weekly");
    apply_buckets(sets, n, r->keep_monthly, b_month, "monthly");
    apply_buckets(sets, n, r->keep_yearly, b_year, "yearly");
    if (r->keep_proven > 0)
        for (size_t i = n, k = 0; i-- > 0 && k < (size_t)r->keep_proven;)
            if (sets[i].proven) {
                add_reason(&sets[i], "proven");
                k++;
            }
    if (r->keep_within && n) {
        cf_duration d;
        if (cf_duration_parse(r->keep_within, &d) != 0)
            return -1;
        struct tm tm;
        time_t newest = sets[n - 1].time;
        gmtime_r(&newest, &tm);
        tm.tm_year -= d.years;
        tm.tm_mon -= d.months;
        tm.tm_mday -= d.weeks * 7 + d.days;
        tm.tm_hour -= d.hours;
        time_t limit = timegm(&tm);
        for (size_t i = 0; i < n; i++)
            if (sets[i].time >= limit)
                add_reason(&sets[i], "within");
    }
    return 0;
}

static void merge(cf_retention *r, const cf_retention *o)
{
    if (!o)
        return;
    int any = o->keep_last >= 0 || o->keep_hourly >= 0 || o->keep_daily >= 0 ||
              o->keep_weekly >= 0 || o->keep_monthly >= 0 || o->keep_yearly >= 0 ||
              o->keep_within || o->keep_proven >= 0;
    if (!any)
        return;
    /* Rules given on the command line replace the policy's as a whole. */
    *r = *o;
}

/* Mark exactly the named sets for removal. -2 (nothing marked) when one
 * is not a set of this policy. */
static int mark_named(cf_keep_set *sets, size_t n, char *const *ids, size_t nids)
{
    for (size_t i = 0; i < nids; i++) {
        size_t k = 0;
        while (k < n && strcmp(sets[k].id, ids[i]) != 0)
            k++;
        if (k == n) {
            cf_fail("set %s: no such set of this policy (give full set ids, as `coffer sets` "
                    "lists them); nothing was removed",
                    ids[i]);
            return -2;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(ids[j], ids[i]) == 0) {
                cf_fail("set %s is named twice; nothing was removed", ids[i]);
                return -2;
            }
    }
    for (size_t k = 0; k < n; k++) {
        sets[k].keep = 1;
        snprintf(sets[k].reasons, sizeof sets[k].reasons, "not named");
        for (size_t i = 0; i < nids; i++)
            if (strcmp(sets[k].id, ids[i]) == 0) {
                sets[k].keep = 0;
                snprintf(sets[k].reasons, sizeof sets[k].reasons, "named");
            }
    }
    return 0;
}

/* The readable sets of run's policy, oldest first. */
static int policy_sets(cf_run *run, cf_keep_set **out, size_t *nout)
{
    char **all;
    size_t n;
    if (cf_sets_list(run->repo, &all, &n) != 0)
        return -1;
    cf_keep_set *sets = cf_calloc(n ? n : 1, sizeof *sets);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *h;
        if (cf_manifest_header(run->repo, all[i], &h) != 0) {
            cf_log(CF_LOG_WARN, "set %s is unreadable and left alone: %s", all[i], cf_error());
            continue;
        }
        const char *pol = json_string_value(json_object_get(h, "policy"));
        if (pol && strcmp(pol, run->policy->name) == 0) {
            sets[m].id = cf_strdup(all[i]);
            sets[m].time = cf_parse_iso(json_string_value(json_object_get(h, "time")));
            m++;
        }
        json_decref(h);
    }
    cf_strv_free(all, n);
    *out = sets;
    *nout = m;
    return 0;
}

static void sets_free(cf_keep_set *sets, size_t m)
{
    for (size_t i = 0; i < m; i++)
        free(sets[i].id);
    free(sets);
}

int cf_forget(cf_run *run, const cf_retention *override, char *const *ids, size_t nids, int dry_run,
              json_t **report)
{
    cf_retention r = run->policy->retention;
    merge(&r, override);
    cf_keep_set *sets;
    size_t m;
    /* Unknown ids are refused before the lock is taken; checked again
     * under it, as a concurrent forget may have removed one since. */
    if (nids) {
        if (policy_sets(run, &sets, &m) != 0)
            return -1;
        int rc = mark_named(sets, m, ids, nids);
        sets_free(sets, m);
        if (rc != 0)
            return rc;
    }
    cf_lock *lock = NULL;
    if (!dry_run && cf_lock_acquire(run->store, 1, "forget", &lock) != 0)
        return -1;
    if (policy_sets(run, &sets, &m) != 0) {
        cf_lock_release(lock);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; !nids && r.keep_proven > 0 && i < m && rc == 0; i++) {
        json_t *last, *last_ok;
        rc = cf_proof_latest(run->repo, sets[i].id, &last, &last_ok);
        sets[i].proven = rc == 0 && last_ok;
        if (rc == 0) {
            json_decref(last);
            json_decref(last_ok);
        }
    }
    if (rc == 0)
        rc = nids ? mark_named(sets, m, ids, nids) : cf_retention_apply(&r, sets, m);
    json_t *arr = json_array();
    for (size_t i = 0; rc == 0 && i < m; i++) {
        json_array_append_new(arr, json_pack("{s:s,s:b,s:s}", "id", sets[i].id, "keep",
                                             sets[i].keep, "reasons", sets[i].reasons));
        if (!sets[i].keep && !dry_run) {
            char *key = cf_asprintf("sets/%s", sets[i].id);
            if (cf_store_remove(run->store, key) != 0)
                rc = -1;
            /* its rehearsal records go with it */
            else if (cf_proof_remove_all(run->repo, sets[i].id) != 0)
                rc = -1;
            free(key);
        }
    }
    sets_free(sets, m);
    cf_lock_release(lock);
    if (rc != 0) {
        json_decref(arr);
        return rc == -2 ? -2 : -1;
    }
    *report = arr;
    return 0;
}
