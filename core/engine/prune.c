#include "engine/prune.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/immutable.h"
#include "engine/manifest.h"
#include "engine/progress.h"
#include "plugin/host.h"
#include "util/util.h"

int cf_prune_parse_percent(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || (*end && strcmp(end, "%") != 0) || v < 0 || v > 100 || isnan(v))
        return cf_fail("--max-unused: expected a percentage between 0 and 100, got '%s'", s);
    *out = v;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct recheck {
    cf_run *run;
    char **ids;
    size_t n;
} recheck;

/* Just before the first removal: a set that appeared since the marking
 * was written by a backup that ignored the lock, and may use chunks about
 * to go. Stop rather than guess. */
static int sets_unchanged(void *ud)
{
    recheck *rc = ud;
    char **now;
    size_t n;
    if (cf_sets_list(rc->run->repo, &now, &n) != 0) {
        cf_error_prefix("prune: cannot list sets before removing data");
        return -1;
    }
    if (n)
        qsort(now, n, sizeof *now, cmp_str); /* the same order as rc->ids */
    int bad = 0;
    for (size_t i = 0, j = 0; i < n && !bad; i++) {
        while (j < rc->n && strcmp(rc->ids[j], now[i]) < 0)
            j++;
        if (j >= rc->n || strcmp(rc->ids[j], now[i]) != 0) {
            cf_fail("set %s appeared while prune ran (a backup that did not take the lock?): "
                    "nothing was removed; run prune again",
                    now[i]);
            bad = 1;
        }
    }
    cf_strv_free(now, n);
    return bad ? -1 : 0;
}

/* Mark every chunk of every set. Any set prune cannot read stops it: its
 * chunks would otherwise look unused. */
static int mark_sets(cf_run *run, cf_prune *p, char **ids, size_t n, size_t *npolicies)
{
    char **pols = NULL;
    size_t npols = 0;
    int rc = 0;
    cf_progress_start("prune: reading sets", 0, run->no_progress);
    for (size_t s = 0; s < n && rc == 0; s++) {
        cf_mreader *m;
        json_t *h;
        if (cf_manifest_open(run->repo, ids[s], &m, &h) != 0) {
            cf_error_prefix("prune: set %s is unreadable, so what it needs is unknown; nothing "
                            "was changed (see `coffer check`)",
                            ids[s]);
            rc = -1;
            break;
        }
        const char *pol = json_string_value(json_object_get(h, "policy"));
        int seen = 0;
        for (size_t k = 0; pol && k < npols; k++)
            seen |= strcmp(pols[k], pol) == 0;
        if (pol && !seen) {
            pols = cf_realloc(pols, (npols + 1) * sizeof *pols);
            pols[npols++] = cf_strdup(pol);
        }
        json_decref(h);
        cf_entry e;
        int r;
        while ((r = cf_manifest_next(m, &e)) == 1) {
            for (size_t i = 0; i < e.nchunks && r == 1; i++) {
                if (cf_prune_mark(p, &e.chunks[i]) != 0) {
                    cf_error_prefix("prune: set %s: %s", ids[s], e.path ? e.path : "?");
                    cf_error_prefix("%s; nothing was changed (see `coffer check`)", cf_error());
                    r = -1;
                }
            }
            cf_entry_clear(&e);
            cf_progress_add(0, 1);
            if (r == 1 && cf_cancel_flag)
                r = cf_fail("cancelled");
            if (r != 1)
                break;
        }
        cf_manifest_close(m);
        if (r == 0 && cf_prune_mark_flush(p) != 0) {
            cf_error_prefix("prune: set %s", ids[s]);
            cf_error_prefix("%s; nothing was changed (see `coffer check`)", cf_error());
            r = -1;
        }
        if (r < 0) {
            if (!strstr(cf_error(), ids[s]))
                cf_error_prefix("prune: set %s", ids[s]);
            rc = -1;
        }
    }
    cf_progress_stop();
    *npolicies = npols;
    cf_strv_free(pols, npols);
    return rc;
}

int cf_prune_apply_tombstones(cf_run *run, uint64_t *applied)
{
    cf_store *s = run->store;
    *applied = 0;
    if (!cf_store_append_only(s))
        return 0;
    cf_keys t = {0};
    if (cf_store_list_keys(s, CF_TOMBSTONE_PREFIX, &t) != 0)
        return -1;
    int rc = 0;
    size_t pl = strlen(CF_TOMBSTONE_PREFIX);
    /* The object first, its tombstone after: killed in between, the
     * tombstone only names a missing object. */
    for (size_t i = 0; i < t.n && rc == 0; i++) {
        int r = cf_store_remove_version(s, t.v[i] + pl, NULL, COFFER_REMOVE_MAINTENANCE);
        if (r != 0 && r != COFFER_ERR_NOT_FOUND)
            rc = -1;
        else if (cf_store_remove_version(s, t.v[i], NULL, COFFER_REMOVE_MAINTENANCE) != 0)
            rc = -1;
        else
            ++*applied;
    }
    cf_keys_free(&t);
    if (rc == 0 && *applied)
        cf_log(CF_LOG_INFO, "append-only: %llu removal(s) applied", (unsigned long long)*applied);
    return rc;
}

int cf_prune_repository(cf_run *run, const cf_prune_cmd *o, json_t **report)
{
    *report = NULL;
    /* A dry run changes nothing: backups may go on meanwhile. */
    if (cf_run_lock(run, o->dry_run ? 0 : 1, o->dry_run ? "prune --dry-run" : "prune") != 0)
        return -1;
    double t0 = cf_now();
    cf_prune *p;
    if (cf_prune_begin(run->repo, &p) != 0)
        return -1;
    char **ids;
    size_t n, npol = 0;
    int rc = -1;
    if (cf_sets_list(run->repo, &ids, &n) != 0) {
        cf_prune_free(p);
        return -1;
    }
    if (n)
        qsort(ids, n, sizeof *ids, cmp_str);
    cf_prune_stats st;
    cf_prune_opts po = {.max_unused = o->max_unused, .orphan_grace_s = -1, .verbose = o->verbose};
    /* Objects under retention stay until it ends (by the storage's clock). */
    if (run->store->caps & COFFER_CAP_RETENTION) {
        po.respect_locks = 1;
        po.bypass_governance = o->bypass_governance;
        if (cf_store_server_time(run->store, &po.now) != 0)
            goto out;
    }
    if (o->bypass_governance)
        run->store->remove_flags |= COFFER_REMOVE_BYPASS_GOVERNANCE;
    if (mark_sets(run, p, ids, n, &npol) != 0 || cf_prune_plan(p, &po, &st) != 0)
        goto out;
    char b1[32], b2[32], b3[32], b4[32];
    cf_log(CF_LOG_INFO, "%zu set(s) of %zu polic%s kept: %llu of %llu chunks in use", n, npol,
           npol == 1 ? "y" : "ies", (unsigned long long)st.chunks_used,
           (unsigned long long)st.chunks_total);
    cf_log(CF_LOG_INFO,
           "packs: %llu, %s (%s in use, %s unused); plan: keep %llu, repack %llu, remove %llu",
           (unsigned long long)st.packs_total, cf_human_bytes(st.bytes_total, b1, 32),
           cf_human_bytes(st.bytes_used, b2, 32), cf_human_bytes(st.bytes_unused, b3, 32),
           (unsigned long long)st.packs_keep, (unsigned long long)st.packs_repack,
           (unsigned long long)st.packs_delete);
    if (st.orphans_delete || st.orphans_recent)
        cf_log(
            CF_LOG_INFO,
            "unindexed packs: %llu to remove (%s), %llu kept: newer than an hour, "
            "maybe a backup running now (%s)",
            (unsigned long long)st.orphans_delete, cf_human_bytes(st.orphan_bytes_delete, b1, 32),
            (unsigned long long)st.orphans_recent, cf_human_bytes(st.orphan_bytes_recent, b2, 32));
    if (st.packs_waiting) {
        char until[64];
        cf_utc_time(st.waiting_until, until, sizeof until);
        cf_log(CF_LOG_INFO,
               "under retention: %llu pack(s), %s, stay until their locks end (the first at %s); "
               "a later prune removes them",
               (unsigned long long)st.packs_waiting, cf_human_bytes(st.bytes_waiting, b1, 32),
               until);
    }
    if (!o->dry_run) {
        recheck rk = {run, ids, n};
        if (cf_prune_run(p, sets_unchanged, &rk, &st) != 0)
            goto out;
    }
    /* Removed objects of a storage with versions are delete markers over
     * the data: remove those versions once their locks allow. */
    cf_purge_stats ps = {0};
    if (!o->dry_run && run->target->immutable && cf_immutable_purge(run, o->bypass_governance, &ps) != 0)
        goto out;
    if (ps.versions_waiting) {
        char until[64];
        cf_utc_time(ps.waiting_until, until, sizeof until);
        cf_log(CF_LOG_INFO,
               "removed objects: %llu old version(s) removed, %llu still locked (the first lock "
               "ends at %s)",
               (unsigned long long)ps.versions_removed, (unsigned long long)ps.versions_waiting,
               until);
    }
    uint64_t tomb_applied = 0;
    if (!o->dry_run && o->apply_tombstones && cf_prune_apply_tombstones(run, &tomb_applied) != 0)
        goto out;
    uint64_t freed = st.bytes_delete + st.orphan_bytes_delete;
    /* a dry run writes nothing: count the copied blobs as the new packs */
    uint64_t written = o->dry_run ? st.bytes_repack_used : st.bytes_written;
    uint64_t freed_net = freed > written ? freed - written : 0;
    double dt = cf_now() - t0;
    *report = json_pack(
        "{s:b,s:I,s:I,s:I,s:I,s:{s:I,s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I},"
        "s:I,s:f}",
        "dry_run", o->dry_run, "sets", (json_int_t)n, "policies", (json_int_t)npol, "chunks_used",
        (json_int_t)st.chunks_used, "chunks_total", (json_int_t)st.chunks_total, "packs", "total",
        (json_int_t)st.packs_total, "kept", (json_int_t)st.packs_keep, "repacked",
        (json_int_t)st.packs_repack, "removed", (json_int_t)st.packs_delete, "bytes", "total",
        (json_int_t)st.bytes_total, "used", (json_int_t)st.bytes_used, "unused",
        (json_int_t)st.bytes_unused, "removed", (json_int_t)freed, "copied",
        (json_int_t)st.bytes_repack_used, "unused_kept", (json_int_t)st.bytes_unused_kept,
        "unindexed", "removed", (json_int_t)st.orphans_delete, "removed_bytes",
        (json_int_t)st.orphan_bytes_delete, "kept", (json_int_t)st.orphans_recent, "kept_bytes",
        (json_int_t)st.orphan_bytes_recent, "index_objects_removed", (json_int_t)st.index_removed,
        "seconds", dt);
    json_object_set_new(*report, "packs_written", json_integer((json_int_t)st.packs_written));
    if (run->store->caps & COFFER_CAP_RETENTION)
        json_object_set_new(*report, "retention",
                            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "packs_waiting",
                                      (json_int_t)st.packs_waiting, "bytes_waiting",
                                      (json_int_t)st.bytes_waiting, "waiting_until",
                                      (json_int_t)st.waiting_until, "versions_removed",
                                      (json_int_t)ps.versions_removed, "versions_waiting",
                                      (json_int_t)ps.versions_waiting, "versions_waiting_until",
                                      (json_int_t)ps.waiting_until));
    if (cf_store_append_only(run->store))
        json_object_set_new(*report, "tombstones_applied", json_integer((json_int_t)tomb_applied));
    cf_log(CF_LOG_INFO,
           "%s %llu pack(s) (%llu unused, %llu repacked) and %llu unindexed: %s; "
           "copied %s into %llu new pack(s); net %s freed",
           o->dry_run ? "would remove" : "removed",
           (unsigned long long)(st.packs_delete + st.packs_repack),
           (unsigned long long)st.packs_delete, (unsigned long long)st.packs_repack,
           (unsigned long long)st.orphans_delete, cf_human_bytes(freed, b1, 32),
           cf_human_bytes(st.bytes_repack_used, b2, 32),
           (unsigned long long)(o->dry_run ? 0 : st.packs_written),
           cf_human_bytes(freed_net, b3, 32));
    cf_log(CF_LOG_INFO, "kept %llu pack(s), %s (%s of it unused, within --max-unused %.1f%%)",
           (unsigned long long)st.packs_keep,
           cf_human_bytes(st.bytes_total - st.bytes_delete, b4, 32),
           cf_human_bytes(st.bytes_unused_kept, b1, 32), o->max_unused);
    rc = 0;
out:
    cf_strv_free(ids, n);
    cf_prune_free(p);
    return rc;
}
