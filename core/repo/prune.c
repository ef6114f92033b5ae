/*
 * Prune: remove pack data no kept set references. The engine streams the
 * kept manifests and marks their chunks (cf_prune_mark); this file owns
 * the snapshot, the plan and the safe order of writes and removals.
 *
 * Safety, in the order things happen:
 * - the snapshot is the index objects listed at cf_prune_begin (after the
 *   caller took the exclusive lock); only those index objects and the
 *   packs they name are ever removed. Anything written later (a backup
 *   that ignored the lock, a crashed run's leftovers being re-indexed) is
 *   outside it. Unindexed packs are removed only when older than a grace
 *   period, since a running backup's packs are unindexed until it ends;
 * - repacked blobs are read and verified (authenticated, decompressed,
 *   hashed) before they are copied, so damage stops the prune instead of
 *   spreading into new packs;
 * - new packs, then one new index object covering every kept chunk, are
 *   committed before the first removal; then old index objects go, and
 *   old packs last. Killed anywhere, the repository's index covers every
 *   kept chunk (sometimes twice, which is harmless).
 *
 * Memory: one bit per indexed chunk (used or not) and a few words per
 * pack, on top of the index itself; manifests are never held.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plugin/host.h"
#include "repo/repo_int.h"

enum { ACT_KEEP = 0, ACT_REPACK = 1, ACT_DELETE = 2, ACT_WAIT = 3 };

#define ORPHAN_GRACE_S 3600 /* unindexed packs younger than this may be a live backup's */
#define RANGE_GAP (256u << 10)
#define RANGE_MAX (32u << 20)

struct cf_prune {
    cf_repo *r;
    char **index_keys; /* the snapshot's index objects */
    size_t nindex;
    size_t n, npacks; /* snapshot sizes */
    uint8_t *used;    /* bitmap over the index's positions [0, n) */
    cf_id *pend;      /* marks waiting for a sorted lookup (index on disk) */
    size_t npend, cap_pend;
    uint64_t nused;
    uint8_t *act;          /* per pack */
    uint64_t *pused_bytes; /* per pack: stored bytes of used blobs */
    uint32_t *pused_count; /* per pack: used blobs */
    cf_pack_list orphans;
    int64_t *orphan_mtime;
    uint8_t *orphan_delete;
    int planned, verbose;
};

static int bit(const uint8_t *b, size_t i)
{
    return b[i >> 3] >> (i & 7) & 1;
}

/* After a prune the handle's index no longer describes the repository. */
static void retire(cf_repo *r)
{
    pthread_mutex_lock(&r->wlock);
    if (!r->fail_msg)
        r->fail_msg = cf_strdup("the handle was used by prune; reopen the repository");
    pthread_mutex_unlock(&r->wlock);
    atomic_store(&r->failed, 1);
}

int cf_prune_begin(cf_repo *r, cf_prune **out)
{
    *out = NULL;
    for (size_t i = 0; i < r->nwriters; i++)
        if (cf_packw_is_open(r->writers[i]))
            return cf_fail("prune: the repository handle has an open session");
    if (r->ents_indexed != r->idx.n || atomic_load(&r->failed))
        return cf_fail("prune: the repository handle has an unflushed session");
    char **keys;
    coffer_object_stat *sts;
    size_t nkeys;
    if (cf_repo_list_index_stat(r, &keys, &sts, &nkeys) != 0)
        return -1;
    /* The snapshot replaces what the handle loaded at open, which may be
     * older than the lock the caller now holds; freed first so the index
     * is never in memory twice. */
    pthread_rwlock_wrlock(&r->lock);
    cf_index_free(&r->idx);
    int lrc = nkeys ? cf_index_load_all(r, keys, sts, nkeys, NULL, NULL) : 0;
    free(sts);
    if (lrc != 0) {
        cf_error_prefix("prune needs every index object readable (run `coffer check`)");
        pthread_rwlock_unlock(&r->lock);
        retire(r); /* the handle's index is incomplete */
        cf_strv_free(keys, nkeys);
        return -1;
    }
    r->ents_open = r->ents_indexed = r->idx.n;
    r->packs_open = r->idx.npacks;
    pthread_rwlock_unlock(&r->lock);
    /* What this handle wrote is flushed and part of the snapshot now: an
     * abort must not remove it. */
    pthread_mutex_lock(&r->wlock);
    cf_strv_free(r->sess_packs, r->nsess_packs);
    cf_strv_free(r->sess_index, r->nsess_index);
    r->sess_packs = r->sess_index = NULL;
    r->nsess_packs = r->nsess_index = 0;
    pthread_mutex_unlock(&r->wlock);

    cf_prune *p = cf_calloc(1, sizeof *p);
    p->r = r;
    p->index_keys = keys;
    p->nindex = nkeys;
    p->n = cf_index_count(&r->idx);
    p->npacks = r->idx.npacks;
    p->used = cf_calloc(p->n / 8 + 1, 1);
    *out = p;
    return 0;
}

static int mark_pos(cf_prune *p, const cf_id *id, ssize_t i)
{
    if (i < 0 || (size_t)i >= p->n) {
        char hex[2 * CF_ID_LEN + 1];
        cf_id_hex(id, hex);
        return cf_fail("chunk %s is referenced but not in the index", hex);
    }
    if (!bit(p->used, (size_t)i)) {
        p->used[i >> 3] |= (uint8_t)(1u << (i & 7));
        p->nused++;
    }
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, CF_ID_LEN);
}

int cf_prune_mark_flush(cf_prune *p)
{
    if (!p->npend)
        return 0;
    qsort(p->pend, p->npend, sizeof *p->pend, cmp_id);
    size_t n = 0;
    for (size_t i = 0; i < p->npend; i++)
        if (!n || memcmp(p->pend[n - 1].b, p->pend[i].b, CF_ID_LEN) != 0)
            p->pend[n++] = p->pend[i];
    ssize_t *pos = cf_malloc(n * sizeof *pos);
    pthread_rwlock_rdlock(&p->r->lock);
    cf_index_find_sorted(&p->r->idx, p->pend, n, pos, NULL);
    pthread_rwlock_unlock(&p->r->lock);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = mark_pos(p, &p->pend[i], pos[i]);
    free(pos);
    p->npend = 0;
    return rc;
}

int cf_prune_mark(cf_prune *p, const cf_id *id)
{
    if (!p->r->idx.nbase) /* in memory: a lookup is cheap */
        return mark_pos(p, id, cf_index_find(&p->r->idx, id));
    if (p->npend == p->cap_pend) {
        if (p->cap_pend)
            return cf_prune_mark_flush(p) == 0 ? cf_prune_mark(p, id) : -1;
        p->cap_pend = 1u << 19; /* 16 MiB of ids */
        p->pend = cf_malloc(p->cap_pend * sizeof *p->pend);
    }
    p->pend[p->npend++] = *id;
    return 0;
}

/* Partly used packs, most wasteful first. */
typedef struct cand {
    uint32_t pack;
    uint64_t waste, size;
} cand;

/* With respect_locks: the end of key's retention if it holds at o->now
 * (and is not a governance lock being bypassed), else 0. */
static int64_t lock_end(cf_repo *r, const cf_prune_opts *o, const char *key, cf_prune_stats *st)
{
    if (!o->respect_locks)
        return 0;
    coffer_lock_mode mode;
    int64_t until;
    st->retention_checks++;
    if (cf_store_retention(r->st, key, NULL, &mode, &until) != 0)
        return 0; /* gone or unreadable: removal will say */
    if (mode == COFFER_LOCK_NONE || until <= o->now ||
        (o->bypass_governance && mode == COFFER_LOCK_GOVERNANCE))
        return 0;
    return until;
}

static void note_wait(cf_prune_stats *st, uint64_t bytes, int64_t until)
{
    st->packs_waiting++;
    st->bytes_waiting += bytes;
    if (!st->waiting_until || until < st->waiting_until)
        st->waiting_until = until;
}

static int cmp_cand(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    double l = (double)x->waste / (double)x->size, r = (double)y->waste / (double)y->size;
    return l > r ? -1 : l < r; /* unused share, descending */
}

int cf_prune_plan(cf_prune *p, const cf_prune_opts *o, cf_prune_stats *st)
{
    cf_repo *r = p->r;
    memset(st, 0, sizeof *st);
    if (cf_prune_mark_flush(p) != 0)
        return -1;
    p->verbose = o->verbose;
    free(p->act);
    free(p->pused_bytes);
    free(p->pused_count);
    p->act = cf_calloc(p->npacks + 1, 1);
    p->pused_bytes = cf_calloc(p->npacks + 1, sizeof *p->pused_bytes);
    p->pused_count = cf_calloc(p->npacks + 1, sizeof *p->pused_count);
    cf_index_iter it;
    cf_index_iter_init(&it, &r->idx);
    size_t pos;
    cf_loc l;
    int more;
    while ((more = cf_index_iter_next(&it, &pos, &l)) > 0) {
        if (!bit(p->used, pos))
            continue;
        p->pused_bytes[l.pack] += l.stored;
        p->pused_count[l.pack]++;
    }
    cf_index_iter_free(&it);
    if (more < 0)
        return -1;
    st->chunks_total = p->n;
    st->chunks_used = p->nused;
    cand *cv = cf_malloc((p->npacks + 1) * sizeof *cv);
    size_t nc = 0;
    uint64_t waste_total = 0;
    for (size_t k = 0; k < p->npacks; k++) {
        uint64_t size = r->idx.packs[k].size;
        st->packs_total++;
        st->bytes_total += size;
        uint64_t need = p->pused_count[k] ? cf_pack_overhead(r, p->pused_count[k]) + p->pused_bytes[k] : 0;
        uint64_t waste = size > need ? size - need : 0;
        int64_t until = 0;
        if (waste && o->respect_locks) {
            char key[CF_PACK_KEY_LEN + 1];
            cf_pack_key(&r->idx.packs[k].id, key);
            until = lock_end(r, o, key, st);
        }
        if (p->pused_count[k] == 0) {
            p->act[k] = until ? ACT_WAIT : ACT_DELETE;
            if (until)
                note_wait(st, size, until);
            continue;
        }
        st->bytes_used += size - waste;
        st->bytes_unused += waste;
        p->act[k] = ACT_KEEP;
        if (until) {
            /* Repacking would copy what cannot be removed yet. */
            note_wait(st, waste, until);
        } else if (waste) {
            cv[nc++] = (cand){(uint32_t)k, waste, size};
            waste_total += waste;
        }
    }
    double maxu = o->max_unused < 0 ? 0 : o->max_unused;
    uint64_t allowed = (uint64_t)((double)st->bytes_used * maxu / 100.0);
    if (nc)
        qsort(cv, nc, sizeof *cv, cmp_cand);
    for (size_t i = 0; i < nc && waste_total > allowed; i++) {
        p->act[cv[i].pack] = ACT_REPACK;
        waste_total -= cv[i].waste;
    }
    free(cv);
    for (size_t k = 0; k < p->npacks; k++) {
        uint64_t size = r->idx.packs[k].size;
        if (p->act[k] == ACT_DELETE) {
            st->packs_delete++;
            st->bytes_delete += size;
        } else if (p->act[k] == ACT_REPACK) {
            st->packs_repack++;
            st->bytes_delete += size;
            st->bytes_repack_used += p->pused_bytes[k];
        } else if (p->act[k] == ACT_KEEP) {
            st->packs_keep++;
        }
    }
    st->bytes_unused_kept = waste_total;

    /* Unindexed packs: old ones are leftovers, recent ones may be a live
     * backup's (whose index object comes at its end). */
    cf_pack_list_free(&p->orphans);
    free(p->orphan_mtime);
    free(p->orphan_delete);
    p->orphan_mtime = NULL;
    if (cf_repo_orphan_packs(r, &p->orphans, &p->orphan_mtime) != 0)
        return -1;
    p->orphan_delete = cf_calloc(p->orphans.n + 1, 1);
    int grace = o->orphan_grace_s >= 0 ? o->orphan_grace_s : ORPHAN_GRACE_S;
    time_t now = time(NULL);
    for (size_t i = 0; i < p->orphans.n; i++) {
        int64_t mt = p->orphan_mtime[i], until;
        if (mt > 0 && now - mt >= grace && (until = lock_end(r, o, p->orphans.keys[i], st))) {
            note_wait(st, p->orphans.sizes[i], until);
        } else if (mt > 0 && now - mt >= grace) {
            p->orphan_delete[i] = 1;
            st->orphans_delete++;
            st->orphan_bytes_delete += p->orphans.sizes[i];
        } else {
            st->orphans_recent++;
            st->orphan_bytes_recent += p->orphans.sizes[i];
        }
    }
    p->planned = 1;
    return 0;
}

/* ---- Execution ---------------------------------------------------------- */

/* Credentials that may not remove stop the prune (every later removal
 * would fail alike); anything else is a warning and the next run retries. */
static int remove_logged(cf_repo *r, const char *key, int verbose, const char *what)
{
    int rc = cf_store_remove(r->st, key);
    if (rc == COFFER_ERR_AUTH)
        return cf_fail("prune: cannot remove %s: %s", key, cf_error());
    if (rc != 0 && rc != COFFER_ERR_NOT_FOUND)
        cf_log(CF_LOG_WARN, "prune: cannot remove %s: %s", key, cf_error());
    else if (verbose)
        cf_log(CF_LOG_INFO, "prune: removed %s %s", what, key);
    return 0;
}

static int cmp_ent(const void *a, const void *b)
{
    const cf_loc *x = a, *y = b;
    if (x->pack != y->pack)
        return x->pack < y->pack ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Entries copied out per pass: the index may be far larger than memory
 * should hold, so kept and moved entries are handled a range of packs at
 * a time, each pass reading the index once; half the index's memory
 * threshold per pass. */
static size_t pass_entries(void)
{
    size_t n = cf_index_memory_entries() / 2;
    return n ? n : 1;
}

/* The used entries of packs with action act, from pack *pk on: the packs
 * whose entries fit in one pass (at least one pack), sorted by pack and
 * offset; *pk moves past them. NULL with *nout 0 when they hold none. */
static cf_loc *select_used(cf_prune *p, int act, uint32_t *pk, size_t *nout)
{
    uint32_t a = *pk, b = a;
    size_t m = 0, budget = pass_entries();
    while (b < p->npacks) {
        size_t c = p->act[b] == act ? p->pused_count[b] : 0;
        if (b > a && m + c > budget)
            break;
        m += c;
        b++;
    }
    *pk = b;
    *nout = 0;
    if (!m)
        return NULL;
    cf_loc *v = cf_malloc(m * sizeof *v);
    cf_index_iter it;
    cf_index_iter_init(&it, &p->r->idx);
    size_t pos, k = 0;
    cf_loc l;
    int more;
    while ((more = cf_index_iter_next(&it, &pos, &l)) > 0)
        if (bit(p->used, pos) && l.pack >= a && l.pack < b && p->act[l.pack] == act && k < m)
            v[k++] = l;
    cf_index_iter_free(&it);
    if (more < 0 || k != m) {
        if (more >= 0)
            cf_fail("prune: the index changed while it was read");
        free(v);
        *nout = (size_t)-1;
        return NULL;
    }
    qsort(v, m, sizeof *v, cmp_ent);
    *nout = m;
    return v;
}

typedef struct newpack {
    char **keys;
    size_t n;
} newpack;

/* Copy one pass of used blobs (v, sorted by pack and offset) into pw. */
static int repack_run(cf_prune *p, const cf_loc *v, size_t m, cf_loc *moved, size_t *nmoved,
                      cf_packw *pw, cf_buf *range, cf_buf *plain, newpack *np)
{
    cf_repo *r = p->r;
    char key[CF_PACK_KEY_LEN + 1];
    int rc = 0;
    for (size_t i = 0; i < m && rc == 0;) {
        if (cf_cancel_flag) {
            rc = cf_fail("cancelled");
            break;
        }
        const cf_loc *first = &v[i];
        uint32_t pack = first->pack;
        cf_pack_key(&r->idx.packs[pack].id, key);
        /* One ranged read for a run of close blobs of the same pack. */
        size_t j = i + 1;
        uint64_t start = first->offset, end = first->offset + first->stored;
        while (j < m) {
            const cf_loc *e = &v[j];
            if (e->pack != pack || e->offset > end + RANGE_GAP ||
                e->offset + e->stored - start > RANGE_MAX)
                break;
            if (e->offset + e->stored > end)
                end = e->offset + e->stored;
            j++;
        }
        int g = cf_store_get_range(r->st, key, start, end - start, range);
        if (g != 0 || range->len != end - start) {
            if (g == 0)
                cf_fail("pack %s: short read (pack truncated)", key);
            cf_error_prefix("prune: cannot read blobs to repack");
            rc = -1;
            break;
        }
        for (; i < j && rc == 0; i++) {
            const cf_loc *e = &v[i];
            const uint8_t *blob = range->data + (e->offset - start);
            if (cf_blob_open(r, e, key, blob, plain) != 0) {
                cf_error_prefix("prune: a blob to repack is damaged (run `coffer check "
                                "--read-data`)");
                rc = -1;
                break;
            }
            cf_loc nl;
            if (cf_packw_add_stored(pw, e, blob, &nl) != 0) {
                rc = -1;
                break;
            }
            moved[(*nmoved)++] = nl;
            if (cf_packw_full(pw)) {
                char k[CF_PACK_KEY_LEN + 1];
                snprintf(k, sizeof k, "%s", cf_packw_key(pw));
                if (cf_packw_close(pw) != 0) {
                    rc = -1;
                    break;
                }
                cf_strv_push(&np->keys, &np->n, k);
            }
        }
    }
    return rc;
}

/* Copy the used blobs of repacked packs into new packs. moved receives
 * their new locations (pack numbers in r->idx). */
static int repack(cf_prune *p, cf_loc **moved, size_t *nmoved, newpack *np, cf_prune_stats *st)
{
    cf_repo *r = p->r;
    size_t total = 0;
    for (size_t k = 0; k < p->npacks; k++)
        if (p->act[k] == ACT_REPACK)
            total += p->pused_count[k];
    *moved = cf_malloc((total ? total : 1) * sizeof **moved);
    *nmoved = 0;
    cf_packw *pw = cf_packw_new(r);
    cf_buf range = {0}, plain = {0};
    int rc = 0;
    cf_loc *v = NULL;
    size_t m = 0;
    for (uint32_t pk = 0; total && pk < p->npacks && rc == 0;) {
        free(v);
        v = select_used(p, ACT_REPACK, &pk, &m);
        if (m == (size_t)-1) {
            rc = -1;
            break;
        }
        rc = repack_run(p, v, m, *moved, nmoved, pw, &range, &plain, np);
    }
    if (rc == 0 && cf_packw_is_open(pw)) {
        char k[CF_PACK_KEY_LEN + 1];
        snprintf(k, sizeof k, "%s", cf_packw_key(pw));
        if (cf_packw_close(pw) != 0)
            rc = -1;
        else
            cf_strv_push(&np->keys, &np->n, k);
    }
    cf_packw_free(pw); /* discards a pack left open by a failure */
    cf_buf_free(&range);
    cf_buf_free(&plain);
    free(v);
    for (size_t i = 0; i < np->n; i++) {
        cf_id pid;
        cf_pack_key_parse(np->keys[i], &pid);
        ssize_t k = cf_index_find_pack(&r->idx, &pid);
        st->packs_written++;
        if (k >= 0)
            st->bytes_written += r->idx.packs[k].size;
    }
    /* close() recorded them as session packs: prune owns them instead. */
    cf_strv_free(r->sess_packs, r->nsess_packs);
    r->sess_packs = NULL;
    r->nsess_packs = 0;
    return rc;
}

static int write_group(cf_objw *w, const cf_pack_rec *pk, const cf_loc *const *ents, size_t n)
{
    uint8_t g[CF_INDEX_GROUP_LEN] = {0}, rec[CF_ENTRY_LEN];
    memcpy(g, pk->id.b, CF_ID_LEN);
    cf_put64(g + 32, pk->size);
    cf_put32(g + 40, (uint32_t)n);
    if (cf_repo_objw_write(w, g, sizeof g) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        cf_entry_encode(rec, ents[i]);
        if (cf_repo_objw_write(w, rec, sizeof rec) != 0)
            return -1;
    }
    return 0;
}

/* One index object: used chunks of kept packs, and the moved ones. */
static int write_index(cf_prune *p, const cf_loc *moved, size_t nmoved, char **key_out)
{
    cf_repo *r = p->r;
    *key_out = NULL;
    size_t kept = 0;
    for (size_t k = 0; k < p->npacks; k++)
        if (p->act[k] == ACT_KEEP)
            kept += p->pused_count[k];
    if (kept + nmoved == 0)
        return 0; /* nothing is kept: no index at all */
    uint8_t rnd[CF_ID_LEN];
    char hex[2 * CF_ID_LEN + 1];
    cf_random(rnd, sizeof rnd);
    cf_hex(rnd, sizeof rnd, hex);
    char *key = cf_asprintf("index/%s", hex);
    cf_objw *w;
    if (cf_repo_objw_open(r, CF_OBJ_INDEX, key, &w) != 0) {
        free(key);
        return -1;
    }
    enum { BATCH = 4096 };
    const cf_loc **batch = cf_malloc(BATCH * sizeof *batch);
    int rc = 0;
    /* Groups of at most BATCH entries: readers accept several per pack. */
    for (uint32_t pk = 0; kept && pk < p->npacks && rc == 0;) {
        size_t m;
        cf_loc *v = select_used(p, ACT_KEEP, &pk, &m);
        if (m == (size_t)-1) {
            rc = -1;
            break;
        }
        for (size_t i = 0; i < m && rc == 0;) {
            uint32_t pack = v[i].pack;
            size_t k = 0;
            while (i < m && k < BATCH && v[i].pack == pack)
                batch[k++] = &v[i++];
            rc = write_group(w, &r->idx.packs[pack], batch, k);
        }
        free(v);
    }
    for (size_t i = 0; i < nmoved && rc == 0;) {
        uint32_t pack = moved[i].pack;
        size_t k = 0;
        while (i < nmoved && k < BATCH && moved[i].pack == pack)
            batch[k++] = &moved[i++];
        rc = write_group(w, &r->idx.packs[pack], batch, k);
    }
    free(batch);
    if (rc != 0) {
        cf_repo_objw_abort(w);
        free(key);
        return -1;
    }
    if (cf_repo_objw_commit(w) != 0) {
        free(key);
        return -1;
    }
    *key_out = key;
    return 0;
}

/* Undo the new objects (index first): the old index still covers all. */
static void undo_new(cf_prune *p, const char *index_key, newpack *np)
{
    if (index_key)
        remove_logged(p->r, index_key, 0, "index");
    for (size_t i = 0; i < np->n; i++)
        remove_logged(p->r, np->keys[i], 0, "pack");
}

int cf_prune_run(cf_prune *p, int (*before_delete)(void *ud), void *ud, cf_prune_stats *st)
{
    cf_repo *r = p->r;
    if (!p->planned)
        return cf_fail("prune: plan first");
    cf_loc *moved = NULL;
    size_t nmoved = 0;
    newpack np = {0};
    char *ikey = NULL;
    int rc = -1;
    st->packs_written = st->bytes_written = st->index_removed = 0;

    if (repack(p, &moved, &nmoved, &np, st) != 0) {
        undo_new(p, NULL, &np);
        goto out;
    }
    if (write_index(p, moved, nmoved, &ikey) != 0) {
        undo_new(p, NULL, &np);
        goto out;
    }
    if (before_delete && before_delete(ud) != 0) {
        char saved[2048];
        snprintf(saved, sizeof saved, "%s", cf_error());
        undo_new(p, ikey, &np);
        cf_fail("%s", saved);
        goto out;
    }
    /* Point of no return: old index objects, then old packs. */
    for (size_t i = 0; i < p->nindex; i++) {
        if (remove_logged(r, p->index_keys[i], p->verbose, "index") != 0)
            goto out;
        st->index_removed++;
    }
    for (size_t k = 0; k < p->npacks; k++) {
        if (p->act[k] == ACT_KEEP || p->act[k] == ACT_WAIT)
            continue;
        char key[CF_PACK_KEY_LEN + 1];
        cf_pack_key(&r->idx.packs[k].id, key);
        if (remove_logged(r, key, p->verbose,
                          p->act[k] == ACT_REPACK ? "repacked pack" : "unused pack") != 0)
            goto out;
    }
    for (size_t i = 0; i < p->orphans.n; i++)
        if (p->orphan_delete[i] &&
            remove_logged(r, p->orphans.keys[i], p->verbose, "unindexed pack") != 0)
            goto out;
    rc = 0;
out:
    /* The handle's index no longer matches the repository: refuse further
     * use of it but closing. */
    retire(r);
    free(ikey);
    free(moved);
    cf_strv_free(np.keys, np.n);
    return rc;
}

void cf_prune_free(cf_prune *p)
{
    if (!p)
        return;
    cf_strv_free(p->index_keys, p->nindex);
    free(p->used);
    free(p->pend);
    free(p->act);
    free(p->pused_bytes);
    free(p->pused_count);
    cf_pack_list_free(&p->orphans);
    free(p->orphan_mtime);
    free(p->orphan_delete);
    free(p);
}
