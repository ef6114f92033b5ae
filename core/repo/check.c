/*
 * Integrity checks and index recovery. Every problem is reported with the
 * object key (and chunk id when one is concerned) so an operator knows
 * what is damaged and what a restore would miss.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repo/repo_int.h"

typedef struct reporter {
    cf_repo_problem_cb cb;
    void *ud;
    long n;
} reporter;

static void report(reporter *rp, const char *obj, const cf_id *chunk, const char *fmt, ...)
    CF_PRINTF(4, 5);

static void report(reporter *rp, const char *obj, const cf_id *chunk, const char *fmt, ...)
{
    char msg[2048], hex[2 * CF_ID_LEN + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (chunk)
        cf_id_hex(chunk, hex);
    rp->n++;
    if (rp->cb)
        rp->cb(rp->ud, obj, chunk ? hex : NULL, msg);
}

/* ---- Structure ------------------------------------------------------------ */

/* The packs a listing of data/ shows (canonical keys only), with their
 * sizes when the listing gives them: one request for a thousand packs on
 * object storage, where a stat of each is a round trip. The structure
 * check sorts them by id; the rebuild takes them in listing order. */
typedef struct listed_pack {
    cf_id id;
    uint64_t size; /* 0: the listing gave none */
} listed_pack;

typedef struct listed_packs {
    listed_pack *v;
    size_t n, cap;
} listed_packs;

static int collect_listed(void *ud, const char *key, const coffer_object_stat *st)
{
    listed_packs *l = ud;
    cf_id id;
    if (cf_pack_key_parse(key, &id) != 0)
        return 0;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->v = cf_realloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = (listed_pack){id, st ? st->size : 0};
    return 0;
}

static int listed_cmp(const void *a, const void *b)
{
    return memcmp(((const listed_pack *)a)->id.b, ((const listed_pack *)b)->id.b, CF_ID_LEN);
}

/* The listed size of a pack, or -1 when the listing does not show it or
 * gave no size (then a stat decides). */
static int64_t listed_size(const listed_packs *l, const cf_id *id)
{
    listed_pack k = {.id = *id};
    const listed_pack *p = l->v ? bsearch(&k, l->v, l->n, sizeof *l->v, listed_cmp) : NULL;
    return p && p->size ? (int64_t)p->size : -1;
}

long cf_repo_check_structure(cf_repo *r, cf_repo_problem_cb cb, void *ud)
{
    reporter rp = {cb, ud, 0};
    cf_buf b = {0};
    if (cf_repo_get_object(r, CF_OBJ_CONFIG, "config", &b) != 0)
        report(&rp, "config", NULL, "%s", cf_error());
    cf_buf_free(&b);

    char **keys;
    size_t nkeys;
    if (cf_repo_list_index(r, &keys, &nkeys) != 0)
        return -1;
    for (size_t i = 0; i < nkeys; i++) {
        cf_index scratch; /* parsed and validated, entries not kept */
        cf_index_init(&scratch);
        scratch.discard = 1;
        if (cf_index_load_object(r, keys[i], &scratch) != 0)
            report(&rp, keys[i], NULL, "%s", cf_error());
        cf_index_free(&scratch);
    }
    cf_strv_free(keys, nkeys);

    /* Snapshot the committed packs and how many chunks each holds. */
    pthread_rwlock_rdlock(&r->lock);
    size_t np = r->idx.npacks;
    cf_pack_rec *packs = cf_malloc((np ? np : 1) * sizeof *packs);
    memcpy(packs, r->idx.packs, np * sizeof *packs);
    uint32_t *count = cf_index_pack_counts(&r->idx);
    pthread_rwlock_unlock(&r->lock);

    /* A pack the listing shows at its indexed size needs nothing more;
     * any other (missing, another size, no size listed) is asked on its
     * own, so what is reported is what a stat says. A listing that fails
     * leaves every pack to its stat. */
    listed_packs lp = {0};
    if (cf_store_list(r->st, "data/", collect_listed, &lp) == 0) {
        if (lp.n)
            qsort(lp.v, lp.n, sizeof *lp.v, listed_cmp);
    } else {
        cf_log(CF_LOG_DEBUG, "listing the packs: %s; asking each", cf_error());
        cf_error_clear();
        free(lp.v);
        lp = (listed_packs){0};
    }
    for (size_t i = 0; i < np; i++) {
        if (!packs[i].size || !count[i])
            continue; /* still being written, or a rolled-back record */
        if (listed_size(&lp, &packs[i].id) == (int64_t)packs[i].size)
            continue;
        char key[CF_PACK_KEY_LEN + 1];
        cf_pack_key(&packs[i].id, key);
        coffer_object_stat os;
        int rc = cf_store_stat(r->st, key, &os);
        if (rc == COFFER_ERR_NOT_FOUND)
            report(&rp, key, NULL, "pack missing (%u indexed chunks are in it)", (unsigned)count[i]);
        else if (rc != 0)
            report(&rp, key, NULL, "%s", cf_error());
        else if (os.size != packs[i].size && r->st->lock_mode != COFFER_LOCK_NONE &&
                 (r->st->caps & COFFER_CAP_VERSIONING) && cf_store_pin_original(r->st, key) >= 1)
            continue; /* replaced by someone else: the original is read (and reported by
                         the retention audit), nothing is lost */
        else if (os.size != packs[i].size)
            report(&rp, key, NULL, "pack is %llu bytes, the index says %llu",
                   (unsigned long long)os.size, (unsigned long long)packs[i].size);
    }
    free(lp.v);
    free(packs);
    free(count);
    return rp.n;
}

/* ---- One pack ------------------------------------------------------------- */

typedef struct pack_stream {
    cf_store *st;
    void *rd;
    EVP_MD_CTX *sha; /* NULL: the trailer is not checked */
    uint64_t pos;
} pack_stream;

/* Read exactly len bytes (hashing them); 1 if the pack ended early. */
static int ps_read(pack_stream *ps, void *buf, size_t len)
{
    size_t got;
    if (cf_store_read(ps->st, ps->rd, buf, len, &got) != 0)
        return -1;
    if (ps->sha)
        EVP_DigestUpdate(ps->sha, buf, got);
    ps->pos += got;
    return got == len ? 0 : 1;
}

long cf_repo_check_pack(cf_repo *r, const char *key, cf_repo_problem_cb cb, void *ud)
{
    reporter rp = {cb, ud, 0};
    cf_id pid;
    if (cf_pack_key_parse(key, &pid) != 0)
        return cf_fail("%s: not a pack key (data/<pp>/<64 hex digits>)", key);
    coffer_object_stat os;
    int rc = cf_store_stat(r->st, key, &os);
    if (rc == COFFER_ERR_NOT_FOUND) {
        report(&rp, key, NULL, "pack missing");
        return rp.n;
    }
    if (rc != 0)
        return -1;
    uint64_t size = os.size;

    pthread_rwlock_rdlock(&r->lock);
    ssize_t pi = cf_index_find_pack(&r->idx, &pid);
    uint64_t isize = pi >= 0 ? r->idx.packs[pi].size : 0;
    pthread_rwlock_unlock(&r->lock);
    if (isize && isize != size)
        report(&rp, key, NULL, "pack is %llu bytes, the index says %llu", (unsigned long long)size,
               (unsigned long long)isize);

    cf_loc *ents = NULL;
    size_t n = 0;
    int table_ok = cf_pack_read_table(r, key, size, &ents, &n) == 0;
    if (!table_ok)
        report(&rp, key, NULL, "%s", cf_error());

    /* In an encrypted pack every byte but the checked header and tail is
     * under an AEAD tag (each blob, the table): the SHA-256 trailer adds
     * nothing there but a quarter of the CPU time, so it is skipped. */
    pack_stream ps = {r->st, NULL, r->crypt ? NULL : EVP_MD_CTX_new(), 0};
    uint8_t *buf = cf_malloc(1 << 16);
    cf_buf blob = {0}, plain = {0};
    long ret = -1;
    if (!r->crypt && (!ps.sha || !EVP_DigestInit_ex(ps.sha, r->sha, NULL))) {
        cf_fail("%s: cannot initialise SHA-256", key);
        goto out;
    }
    if (cf_store_reader_open(r->st, key, 0, 0, &ps.rd) != 0) {
        ps.rd = NULL;
        goto out;
    }
    int e;
    if (size < CF_ENV_HDR_LEN + CF_ENV_TRAILER_LEN) {
        if (table_ok) /* otherwise already reported by the table read */
            report(&rp, key, NULL, "pack truncated");
        goto done;
    }
    if ((e = ps_read(&ps, buf, CF_ENV_HDR_LEN)) != 0)
        goto short_read;
    for (size_t i = 0; table_ok && i < n; i++) {
        /* Blobs are contiguous in offset order (checked with the table). */
        blob.len = 0;
        cf_buf_reserve(&blob, ents[i].stored);
        if ((e = ps_read(&ps, blob.data, ents[i].stored)) != 0)
            goto short_read;
        blob.len = ents[i].stored;
        if (cf_blob_open_inplace(r, &ents[i], key, blob.data, &plain) != 0)
            report(&rp, key, &ents[i].id, "%s", cf_error());
        pthread_rwlock_rdlock(&r->lock);
        ssize_t k = cf_index_find(&r->idx, &ents[i].id);
        cf_loc il = ents[i];
        if (k >= 0)
            cf_index_get(&r->idx, (size_t)k, &il);
        pthread_rwlock_unlock(&r->lock);
        if (k >= 0 && (ssize_t)il.pack == pi &&
            (il.offset != ents[i].offset || il.stored != ents[i].stored || il.raw != ents[i].raw ||
             il.comp != ents[i].comp))
            report(&rp, key, &ents[i].id, "index entry disagrees with the pack's trailer table");
    }
    while (ps.pos < size - CF_ENV_TRAILER_LEN) {
        uint64_t left = size - CF_ENV_TRAILER_LEN - ps.pos;
        size_t k = left < (1 << 16) ? (size_t)left : (1 << 16);
        if ((e = ps_read(&ps, buf, k)) != 0)
            goto short_read;
    }
    uint8_t md[EVP_MAX_MD_SIZE], trailer[CF_ENV_TRAILER_LEN];
    unsigned mdlen = 0;
    if (ps.sha)
        EVP_DigestFinal_ex(ps.sha, md, &mdlen);
    size_t got;
    if (cf_store_read(r->st, ps.rd, trailer, sizeof trailer, &got) != 0)
        goto out;
    if (got != sizeof trailer) {
        e = 1;
        goto short_read;
    }
    if (ps.sha && memcmp(md, trailer, sizeof trailer) != 0)
        report(&rp, key, NULL, "pack SHA-256 trailer mismatch: pack corrupt");
    if (cf_store_read(r->st, ps.rd, buf, 1, &got) == 0 && got)
        report(&rp, key, NULL, "pack is longer than its size");
    goto done;
short_read:
    if (e < 0)
        goto out;
    report(&rp, key, NULL, "pack truncated at byte %llu of %llu", (unsigned long long)ps.pos,
           (unsigned long long)size);
done:
    ret = rp.n;
out:
    cf_store_reader_close(r->st, ps.rd);
    EVP_MD_CTX_free(ps.sha);
    cf_buf_free(&blob);
    cf_buf_free(&plain);
    free(buf);
    free(ents);
    return ret;
}

/* ---- Rebuild -------------------------------------------------------------- */

/* Entries a rebuild holds in memory before it writes them out as one
 * index object: at most 256 Ki (56 bytes each plus the map: about 20 MiB),
 * fewer when COFFER_INDEX_MEMORY_ENTRIES keeps less in memory. A
 * repository of ten million chunks gets some forty objects; the next open
 * sorts them to disk as it does any large index. */
static size_t rebuild_object_entries(void)
{
    size_t lim = cf_index_memory_entries();
    return lim > 256u * 1024 ? 256u * 1024 : lim < 64 ? 64 : lim;
}

static int has_key(char **keys, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i], key) == 0)
            return 1;
    return 0;
}

/* Removes keys[0..n) but those in keep[0..nkeep). */
static void remove_keys(cf_repo *r, char **keys, size_t n, char **keep, size_t nkeep)
{
    for (size_t i = 0; i < n; i++) {
        if (has_key(keep, nkeep, keys[i]))
            continue;
        int rc = cf_store_remove(r->st, keys[i]);
        if (rc != 0 && rc != COFFER_ERR_NOT_FOUND)
            cf_log(CF_LOG_WARN, "rebuild index: cannot remove %s: %s", keys[i], cf_error());
    }
}

/* Writes what ni holds as a new index object and empties it. */
static int rebuild_flush(cf_repo *r, cf_index *ni, char ***newkeys, size_t *nnew)
{
    char *key = NULL;
    int rc = cf_index_write_object(r, ni, 0, &key);
    if (key)
        cf_strv_push(newkeys, nnew, key);
    free(key);
    cf_index_free(ni);
    cf_index_init(ni);
    return rc;
}

/* Loads the index objects the store now holds, as an open does. */
static int reload_index(cf_repo *r)
{
    pthread_rwlock_wrlock(&r->lock);
    cf_index_free(&r->idx);
    cf_index_init(&r->idx);
    pthread_rwlock_unlock(&r->lock);
    cf_strv_free(r->bad_index, r->nbad_index);
    r->bad_index = NULL;
    r->nbad_index = 0;
    return cf_repo_load_index(r, 1);
}

int cf_repo_rebuild_index(cf_repo *r)
{
    for (size_t i = 0; i < r->nwriters; i++)
        if (cf_packw_is_open(r->writers[i]))
            return cf_fail("rebuild index: flush or abort the session first");
    if (r->ents_indexed != r->idx.n)
        return cf_fail("rebuild index: flush or abort the session first");

    listed_packs pl = {0};
    if (cf_store_list(r->st, "data/", collect_listed, &pl) != 0) {
        free(pl.v);
        return -1;
    }
    /* Memory stays bounded at any size: every `piece`
     * entries go out as an index object of their own. A chunk stored in
     * two packs may then be listed by two objects, as after two hosts'
     * backups; loading keeps the sound copy. */
    cf_index ni;
    cf_index_init(&ni);
    char **newkeys = NULL;
    size_t nnew = 0, skipped = 0, dropped = 0, total = 0;
    int rc = 0;
    size_t piece = rebuild_object_entries();
    cf_buf plain = {0};
    for (size_t i = 0; i < pl.n && rc == 0; i++) {
        const cf_id *pid = &pl.v[i].id;
        char key[CF_PACK_KEY_LEN + 1]; /* as listed: only canonical keys are collected */
        cf_pack_key(pid, key);
        uint64_t size = pl.v[i].size;
        coffer_object_stat os;
        if (!size) { /* the driver's listing may not carry sizes */
            if (cf_store_stat(r->st, key, &os) != 0) {
                cf_log(CF_LOG_WARN, "rebuild index: skipping pack: %s", cf_error());
                skipped++;
                continue;
            }
            size = os.size;
        }
        cf_loc *ents;
        size_t n;
        if (cf_pack_read_table(r, key, size, &ents, &n) != 0) {
            cf_log(CF_LOG_WARN, "rebuild index: skipping pack: %s", cf_error());
            skipped++;
            continue;
        }
        /* The table says where blobs are; only a blob that opens and
         * hashes to its id is indexed. This reads every pack whole. */
        cf_buf pack = {0};
        if (cf_store_get(r->st, key, &pack) != 0) {
            cf_log(CF_LOG_WARN, "rebuild index: skipping pack: %s", cf_error());
            skipped++;
            free(ents);
            continue;
        }
        if (ni.n && ni.n + n > piece)
            rc = rebuild_flush(r, &ni, &newkeys, &nnew);
        uint32_t pno = cf_index_pack(&ni, pid, size);
        for (size_t k = 0; k < n && rc == 0; k++) {
            ents[k].pack = pno;
            char hex[2 * CF_ID_LEN + 1];
            if (ents[k].offset + ents[k].stored > pack.len) {
                cf_id_hex(&ents[k].id, hex);
                cf_log(CF_LOG_WARN, "rebuild index: dropped chunk %s in %s: blob past the end", hex,
                       key);
                dropped++;
                continue;
            }
            if (cf_blob_open(r, &ents[k], key, pack.data + ents[k].offset, &plain) != 0) {
                cf_log(CF_LOG_WARN, "rebuild index: dropped %s", cf_error());
                dropped++;
                continue;
            }
            total += cf_index_add(&ni, &ents[k]) > 0;
        }
        cf_buf_free(&pack);
        free(ents);
    }
    cf_buf_free(&plain);
    if (rc == 0 && ni.n)
        rc = rebuild_flush(r, &ni, &newkeys, &nnew);
    cf_index_free(&ni);
    size_t npacks = pl.n - skipped;
    free(pl.v);
    if (rc != 0) { /* the old index stays as it was */
        cf_error_prefix("rebuild index");
        remove_keys(r, newkeys, nnew, NULL, 0);
        cf_strv_free(newkeys, nnew);
        return -1;
    }

    /* New index first, old ones after: a crash in between leaves
     * redundant indexes, never a missing one. */
    char **keys;
    size_t nkeys;
    if (cf_repo_list_index(r, &keys, &nkeys) == 0) {
        remove_keys(r, keys, nkeys, newkeys, nnew);
        cf_strv_free(keys, nkeys);
    } else {
        cf_log(CF_LOG_WARN, "rebuild index: old index objects left in place: %s", cf_error());
    }
    cf_strv_free(newkeys, nnew);

    /* What the session wrote is now part of the rebuilt index: abort must
     * no longer remove it. */
    pthread_mutex_lock(&r->wlock);
    cf_strv_free(r->sess_packs, r->nsess_packs);
    cf_strv_free(r->sess_index, r->nsess_index);
    r->sess_packs = r->sess_index = NULL;
    r->nsess_packs = r->nsess_index = 0;
    pthread_mutex_unlock(&r->wlock);
    if (reload_index(r) != 0) {
        cf_error_prefix("rebuild index: loading the rebuilt index");
        return -1;
    }
    cf_log(CF_LOG_INFO, "rebuilt index: %zu chunks in %zu packs%s; %zu damaged blob(s) dropped%s",
           total, npacks, skipped ? " (unreadable packs skipped, see warnings)" : "", dropped,
           dropped ? " (the next backup stores them again while the source has them)" : "");
    return 0;
}

/* ---- Pack listings --------------------------------------------------------- */

void cf_pack_list_free(cf_pack_list *l)
{
    cf_strv_free(l->keys, l->n);
    free(l->sizes);
    memset(l, 0, sizeof *l);
}

int cf_repo_indexed_packs(cf_repo *r, cf_pack_list *out)
{
    memset(out, 0, sizeof *out);
    pthread_rwlock_rdlock(&r->lock);
    size_t np = r->idx.npacks;
    uint32_t *count = cf_index_pack_counts(&r->idx);
    for (size_t i = 0; i < np; i++) {
        if (!r->idx.packs[i].size || !count[i])
            continue;
        char key[CF_PACK_KEY_LEN + 1];
        cf_pack_key(&r->idx.packs[i].id, key);
        out->sizes = cf_realloc(out->sizes, (out->n + 1) * sizeof *out->sizes);
        out->sizes[out->n] = r->idx.packs[i].size;
        cf_strv_push(&out->keys, &out->n, key);
    }
    pthread_rwlock_unlock(&r->lock);
    free(count);
    return 0;
}

typedef struct orphan_ctx {
    cf_repo *r;
    cf_pack_list *l;
    int64_t *mtimes;
} orphan_ctx;

static int collect_orphan(void *ud, const char *key, const coffer_object_stat *st)
{
    orphan_ctx *c = ud;
    cf_id id;
    if (cf_pack_key_parse(key, &id) != 0)
        return 0;
    pthread_rwlock_rdlock(&c->r->lock);
    int known = cf_index_find_pack(&c->r->idx, &id) >= 0;
    pthread_rwlock_unlock(&c->r->lock);
    if (known)
        return 0;
    cf_pack_list *l = c->l;
    l->sizes = cf_realloc(l->sizes, (l->n + 1) * sizeof *l->sizes);
    c->mtimes = cf_realloc(c->mtimes, (l->n + 1) * sizeof *c->mtimes);
    l->sizes[l->n] = st ? st->size : 0;
    c->mtimes[l->n] = st ? st->mtime : 0;
    cf_strv_push(&l->keys, &l->n, key);
    return 0;
}

int cf_repo_orphan_packs(cf_repo *r, cf_pack_list *out, int64_t **mtimes)
{
    memset(out, 0, sizeof *out);
    orphan_ctx c = {r, out, NULL};
    if (cf_store_list(r->st, "data/", collect_orphan, &c) != 0) {
        cf_pack_list_free(out);
        free(c.mtimes);
        return -1;
    }
    /* Listings may not carry sizes or times: ask for those missing. */
    for (size_t i = 0; i < out->n; i++) {
        if (out->sizes[i] && c.mtimes[i])
            continue;
        coffer_object_stat os;
        if (cf_store_stat(r->st, out->keys[i], &os) == 0) {
            out->sizes[i] = os.size;
            c.mtimes[i] = os.mtime;
        }
    }
    if (mtimes)
        *mtimes = c.mtimes;
    else
        free(c.mtimes);
    return 0;
}
