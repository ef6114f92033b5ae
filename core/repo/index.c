/*
 * The in-memory index (chunk id -> pack, offset, lengths) and the index
 * objects that persist it. Chunk ids are SHA-256 outputs, uniformly
 * distributed, so their first 8 bytes serve directly as the hash.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "repo/repo_int.h"

/* ---- Open addressing map ------------------------------------------------ */

static uint64_t id_hash(const cf_id *id)
{
    uint64_t h;
    memcpy(&h, id->b, sizeof h);
    return h;
}

static const cf_id *elem_id(const void *base, size_t stride, uint32_t i)
{
    return (const cf_id *)((const uint8_t *)base + (size_t)i * stride);
}

static ssize_t idmap_find(const cf_idmap *m, const void *base, size_t stride, const cf_id *id)
{
    if (!m->nslots)
        return -1;
    size_t mask = m->nslots - 1, i = (size_t)id_hash(id) & mask;
    uint64_t h = id_hash(id);
    for (uint32_t s; (s = m->slots[i]) != 0; i = (i + 1) & mask) {
        const cf_id *e = elem_id(base, stride, s - 1);
        if (id_hash(e) == h && memcmp(e->b, id->b, CF_ID_LEN) == 0)
            return (ssize_t)(s - 1);
    }
    return -1;
}

static void idmap_put(cf_idmap *m, const void *base, size_t stride, uint32_t idx)
{
    size_t mask = m->nslots - 1, i = (size_t)id_hash(elem_id(base, stride, idx)) & mask;
    while (m->slots[i])
        i = (i + 1) & mask;
    m->slots[i] = idx + 1;
}

/* skip_off: offset of a flag byte in the element that, when set, keeps it
 * out of the map (0: none). */
static void idmap_rebuild_skip(cf_idmap *m, const void *base, size_t stride, size_t n,
                               size_t skip_off)
{
    size_t want = 16;
    while (want * 3 < (n + 1) * 4) /* keep the load at or below 3/4 */
        want *= 2;
    free(m->slots);
    m->slots = cf_calloc(want, sizeof *m->slots);
    m->nslots = want;
    for (size_t i = 0; i < n; i++)
        if (!skip_off || !((const uint8_t *)base)[i * stride + skip_off])
            idmap_put(m, base, stride, (uint32_t)i);
}

static void idmap_rebuild(cf_idmap *m, const void *base, size_t stride, size_t n)
{
    if (stride == sizeof(cf_loc))
        idmap_rebuild_skip(m, base, stride, n, offsetof(cf_loc, stale));
    else
        idmap_rebuild_skip(m, base, stride, n, 0);
}

/* Element idx (the n-th, 0-based) was just appended. */
static void idmap_add(cf_idmap *m, const void *base, size_t stride, size_t n_after, uint32_t idx)
{
    if (m->nslots * 3 < n_after * 4)
        idmap_rebuild(m, base, stride, n_after);
    else
        idmap_put(m, base, stride, idx);
}

/* ---- Index ------------------------------------------------------------ */

void cf_index_init(cf_index *ix)
{
    memset(ix, 0, sizeof *ix);
}

void cf_index_free(cf_index *ix)
{
    free(ix->ents);
    free(ix->emap.slots);
    free(ix->packs);
    free(ix->pmap.slots);
    cf_dindex_free(ix->disk);
    cf_dbuild_free(ix->build);
    memset(ix, 0, sizeof *ix);
}

/* The damage record is read at every open; the disk file holds none of it. */
static uint8_t disk_bad(const cf_index *ix, const cf_loc *l)
{
    return ix->dmg && cf_damage_has_chunk(ix->dmg, &l->id, &ix->packs[l->pack].id);
}

static int loc_bad(const cf_index *ix, const cf_loc *l)
{
    return l->bad || ix->packs[l->pack].damaged;
}

void cf_index_get(const cf_index *ix, size_t pos, cf_loc *out)
{
    if (pos >= ix->nbase) {
        *out = ix->ents[pos - ix->nbase];
        return;
    }
    if (cf_dindex_read(ix->disk, pos, 1, out) != 0) {
        memset(out, 0, sizeof *out); /* cannot happen with a verified file on a sound disk */
        out->bad = 1;
        return;
    }
    out->bad = disk_bad(ix, out);
}

/* An entry counts as absent: its chunk or its pack is listed damaged. */
static int index_bad(const cf_index *ix, size_t pos)
{
    if (pos >= ix->nbase)
        return loc_bad(ix, &ix->ents[pos - ix->nbase]);
    cf_loc l;
    cf_index_get(ix, pos, &l);
    return loc_bad(ix, &l);
}

/* Ask the cache for what a lookup of id will read: stage 0 its map
 * slot, stage 1 the entry the slot points to (read the slot first). */
void cf_index_prefetch(const cf_index *ix, const cf_id *id, int stage)
{
    const cf_idmap *m = &ix->emap;
    if (!m->nslots)
        return;
    size_t i = (size_t)id_hash(id) & (m->nslots - 1);
    if (stage == 0) {
        __builtin_prefetch(&m->slots[i]);
    } else if (m->slots[i]) {
        __builtin_prefetch(elem_id(ix->ents, sizeof *ix->ents, m->slots[i] - 1));
    }
}

static ssize_t mem_find(const cf_index *ix, const cf_id *id)
{
    return idmap_find(&ix->emap, ix->ents, sizeof *ix->ents, id);
}

/* A disk copy b (sound or not) against the in-memory map; *ok: the
 * copy returned is sound. */
static ssize_t resolve(const cf_index *ix, const cf_id *id, ssize_t b, int sound, int *ok)
{
    *ok = b >= 0 && sound;
    if (*ok)
        return b;
    ssize_t m = mem_find(ix, id);
    if (m >= 0 && (b < 0 || !loc_bad(ix, &ix->ents[m]))) {
        *ok = !loc_bad(ix, &ix->ents[m]);
        return (ssize_t)ix->nbase + m;
    }
    return b;
}

ssize_t cf_index_find_sound(const cf_index *ix, const cf_id *id, int *ok)
{
    int sound = 0;
    ssize_t b = ix->nbase ? cf_dindex_find(ix, id, &sound, NULL) : -1;
    return resolve(ix, id, b, sound, ok);
}

ssize_t cf_index_find_get(const cf_index *ix, const cf_id *id, cf_loc *out)
{
    int sound = 0, ok;
    cf_loc l;
    ssize_t b = ix->nbase ? cf_dindex_find(ix, id, &sound, &l) : -1;
    ssize_t pos = resolve(ix, id, b, sound, &ok);
    if (pos >= 0 && pos == b) {
        *out = l;
        out->bad = disk_bad(ix, out);
    } else if (pos >= 0) {
        *out = ix->ents[pos - (ssize_t)ix->nbase];
    }
    return pos;
}

ssize_t cf_index_find(const cf_index *ix, const cf_id *id)
{
    int ok;
    return cf_index_find_sound(ix, id, &ok);
}

void cf_index_find_sorted(const cf_index *ix, const cf_id *ids, size_t n, ssize_t *pos,
                          cf_loc *locs)
{
    int ok;
    uint8_t *sound = cf_malloc(n ? n : 1);
    if (ix->nbase)
        cf_dindex_find_sorted(ix, ids, n, pos, sound, locs);
    for (size_t i = 0; i < n; i++) {
        ssize_t b = ix->nbase ? pos[i] : -1;
        pos[i] = resolve(ix, &ids[i], b, ix->nbase ? sound[i] : 0, &ok);
        if (!locs || pos[i] < 0)
            continue;
        if (pos[i] == b)
            locs[i].bad = disk_bad(ix, &locs[i]);
        else
            locs[i] = ix->ents[pos[i] - (ssize_t)ix->nbase];
    }
    free(sound);
}

/* Point the map's slot for element `from` at element `to` (same id). */
static void idmap_move(cf_idmap *m, const void *base, size_t stride, uint32_t from, uint32_t to)
{
    size_t mask = m->nslots - 1, i = (size_t)id_hash(elem_id(base, stride, from)) & mask;
    for (; m->slots[i]; i = (i + 1) & mask)
        if (m->slots[i] == from + 1) {
            m->slots[i] = to + 1;
            return;
        }
}

static void mem_append(cf_index *ix, const cf_loc *loc)
{
    if (ix->n == ix->cap) {
        /* 1.5x growth: the index of a large repository is the biggest
         * allocation coffer makes, so keep the slack modest. */
        ix->cap = ix->cap ? ix->cap + ix->cap / 2 : 1024;
        /* loading moves to disk past spill_at: no slack beyond it */
        if (ix->spill_at && ix->cap > ix->spill_at + 1024 && ix->n < ix->spill_at + 1024)
            ix->cap = ix->spill_at + 1024;
        ix->ents = cf_realloc(ix->ents, ix->cap * sizeof *ix->ents);
    }
    ix->ents[ix->n] = *loc;
    ix->ents[ix->n].stale = 0;
    ix->n++;
}

int cf_index_add_loaded(cf_index *ix, const cf_loc *loc)
{
    if (ix->discard)
        return 1;
    if (ix->build) /* every copy goes to disk; readers pick the sound one */
        return cf_dbuild_add(ix->build, loc) == 0 ? 1 : -1;
    ssize_t m = mem_find(ix, &loc->id);
    if (m < 0) {
        int sound = 0;
        ssize_t b = ix->nbase ? cf_dindex_find(ix, &loc->id, &sound, NULL) : -1;
        if (b >= 0 && (loc_bad(ix, loc) || sound))
            return 0;
        mem_append(ix, loc);
        idmap_add(&ix->emap, ix->ents, sizeof *ix->ents, ix->n, (uint32_t)(ix->n - 1));
        return 1;
    }
    if (!loc_bad(ix, loc) && loc_bad(ix, &ix->ents[m])) {
        ix->ents[m] = *loc; /* same id: the map needs no change */
        return 1;
    }
    return 0;
}

int cf_index_add(cf_index *ix, const cf_loc *loc)
{
    ssize_t old = cf_index_find(ix, &loc->id);
    int good = !loc_bad(ix, loc);
    if (old >= 0 && (!good || !index_bad(ix, (size_t)old)))
        return 0;
    /* A copy in a damaged pack is superseded by a sound one. A stale
     * in-memory entry stays in the array (entries past ents_indexed are
     * what the session's index object holds) but the map no longer finds
     * it; a copy on disk is passed over by cf_index_find. */
    ssize_t m = old >= (ssize_t)ix->nbase ? old - (ssize_t)ix->nbase : -1;
    mem_append(ix, loc);
    if (m >= 0)
        ix->ents[m].stale = 1;
    if (m >= 0 && ix->emap.nslots * 3 < ix->n * 4)
        idmap_rebuild(&ix->emap, ix->ents, sizeof *ix->ents, ix->n);
    else if (m >= 0)
        idmap_move(&ix->emap, ix->ents, sizeof *ix->ents, (uint32_t)m, (uint32_t)(ix->n - 1));
    else
        idmap_add(&ix->emap, ix->ents, sizeof *ix->ents, ix->n, (uint32_t)(ix->n - 1));
    return 1;
}

ssize_t cf_index_find_pack(const cf_index *ix, const cf_id *pack_id)
{
    return idmap_find(&ix->pmap, ix->packs, sizeof *ix->packs, pack_id);
}

uint32_t cf_index_pack(cf_index *ix, const cf_id *pack_id, uint64_t size)
{
    ssize_t i = cf_index_find_pack(ix, pack_id);
    if (i >= 0) {
        if (!ix->packs[i].size)
            ix->packs[i].size = size;
        return (uint32_t)i;
    }
    if (ix->npacks == ix->packs_cap) {
        ix->packs_cap = ix->packs_cap ? ix->packs_cap * 2 : 64;
        ix->packs = cf_realloc(ix->packs, ix->packs_cap * sizeof *ix->packs);
    }
    memset(&ix->packs[ix->npacks], 0, sizeof *ix->packs);
    ix->packs[ix->npacks].id = *pack_id;
    ix->packs[ix->npacks].size = size;
    ix->npacks++;
    idmap_add(&ix->pmap, ix->packs, sizeof *ix->packs, ix->npacks, (uint32_t)(ix->npacks - 1));
    return (uint32_t)(ix->npacks - 1);
}

void cf_index_truncate(cf_index *ix, size_t n, size_t npacks)
{
    if (n < ix->n) {
        /* A copy superseded by one dropped now is current again. */
        for (size_t j = 0; j < n; j++)
            if (ix->ents[j].stale) {
                ssize_t k = mem_find(ix, &ix->ents[j].id);
                if (k < 0 || (size_t)k >= n)
                    ix->ents[j].stale = 0;
            }
        ix->n = n;
        idmap_rebuild(&ix->emap, ix->ents, sizeof *ix->ents, n);
    }
    if (npacks < ix->npacks) {
        ix->npacks = npacks;
        idmap_rebuild(&ix->pmap, ix->packs, sizeof *ix->packs, npacks);
    }
}

uint32_t *cf_index_pack_counts(const cf_index *ix)
{
    uint32_t *c = cf_calloc(ix->npacks ? ix->npacks : 1, sizeof *c);
    for (size_t i = 0; i < ix->npacks; i++)
        c[i] = ix->packs[i].nbase;
    for (size_t i = 0; i < ix->n; i++)
        c[ix->ents[i].pack]++;
    return c;
}

enum { ITER_BLOCK = 8192 };

void cf_index_iter_init(cf_index_iter *it, const cf_index *ix)
{
    memset(it, 0, sizeof *it);
    it->ix = ix;
}

int cf_index_iter_next(cf_index_iter *it, size_t *pos, cf_loc *out)
{
    const cf_index *ix = it->ix;
    if (it->pos >= cf_index_count(ix))
        return 0;
    if (it->pos >= ix->nbase) {
        *out = ix->ents[it->pos - ix->nbase];
    } else {
        if (it->buf_pos == it->buf_n) {
            size_t k = ix->nbase - it->pos < ITER_BLOCK ? ix->nbase - it->pos : ITER_BLOCK;
            if (!it->buf)
                it->buf = cf_malloc(ITER_BLOCK * sizeof *it->buf);
            if (cf_dindex_read(ix->disk, it->pos, k, it->buf) != 0)
                return -1;
            it->buf_pos = 0;
            it->buf_n = k;
        }
        *out = it->buf[it->buf_pos++];
        out->bad = disk_bad(ix, out);
    }
    *pos = it->pos++;
    return 1;
}

void cf_index_iter_free(cf_index_iter *it)
{
    free(it->buf);
    it->buf = NULL;
}

/* ---- Records ------------------------------------------------------------ */

void cf_entry_encode(uint8_t out[CF_ENTRY_LEN], const cf_loc *l)
{
    memcpy(out, l->id.b, CF_ID_LEN);
    out[32] = l->comp;
    out[33] = out[34] = out[35] = 0;
    cf_put64(out + 36, l->offset);
    cf_put32(out + 44, l->stored);
    cf_put32(out + 48, l->raw);
}

void cf_entry_decode(const uint8_t in[CF_ENTRY_LEN], cf_loc *l)
{
    memset(l, 0, sizeof *l);
    memcpy(l->id.b, in, CF_ID_LEN);
    l->comp = in[32];
    l->offset = cf_get64(in + 36);
    l->stored = cf_get32(in + 44);
    l->raw = cf_get32(in + 48);
}

int cf_entry_valid(const cf_loc *l, uint64_t pack_size, uint32_t overhead)
{
    if (l->comp != CF_COMP_NONE && l->comp != CF_COMP_ZSTD)
        return 0;
    if (l->comp == CF_COMP_NONE && (uint64_t)l->stored != (uint64_t)l->raw + overhead)
        return 0;
    if (l->comp == CF_COMP_ZSTD && l->stored <= overhead)
        return 0;
    /* no chunk is larger than the largest a chunker makes: a table that
     * says otherwise would have a reader reserve gigabytes for one */
    if (l->raw > CF_CHUNK_MAX || l->stored > ZSTD_COMPRESSBOUND(CF_CHUNK_MAX) + overhead)
        return 0;
    if (pack_size < CF_ENV_HDR_LEN + CF_PACK_TAIL_LEN || l->offset < CF_ENV_HDR_LEN)
        return 0;
    return l->offset + l->stored <= pack_size - CF_PACK_TAIL_LEN;
}

/* ---- Index objects ------------------------------------------------------ */

static int load_object(cf_repo *r, const char *key, cf_index *ix, int *from_cache)
{
    size_t n0 = ix->n, p0 = ix->npacks;
    if (ix->build)
        cf_dbuild_mark(ix->build);
    enum { BATCH = 1024 };
    uint8_t *buf = cf_malloc(BATCH * CF_ENTRY_LEN);
    cf_objr *rd;
    if (cf_repo_objr_open(r, CF_OBJ_INDEX, key, &rd) != 0) {
        free(buf);
        return -1;
    }
    *from_cache = cf_objr_from_cache(rd);
    int rc = -1;
    for (;;) {
        uint8_t g[CF_INDEX_GROUP_LEN];
        long got = cf_objr_read_full(rd, g, sizeof g);
        if (got < 0)
            goto out;
        if (got == 0)
            break; /* end of body, trailer verified */
        if (got != (long)sizeof g) {
            cf_fail("%s: corrupt index: truncated pack record", key);
            goto out;
        }
        cf_id pid;
        memcpy(pid.b, g, CF_ID_LEN);
        uint64_t psize = cf_get64(g + 32);
        uint32_t count = cf_get32(g + 40);
        uint32_t pno = cf_index_pack(ix, &pid, psize);
        if (cf_damage_has_pack(&r->dmg, &pid))
            ix->packs[pno].damaged = 1;
        while (count > 0) {
            uint32_t k = count < BATCH ? count : BATCH;
            got = cf_objr_read_full(rd, buf, (size_t)k * CF_ENTRY_LEN);
            if (got < 0)
                goto out;
            if (got != (long)k * CF_ENTRY_LEN) {
                cf_fail("%s: corrupt index: truncated entry list", key);
                goto out;
            }
            /* the map slots the ids will take, asked for ahead */
            for (uint32_t i = 0; i < k; i++)
                cf_index_prefetch(ix, (const cf_id *)(buf + (size_t)i * CF_ENTRY_LEN), 0);
            for (uint32_t i = 0; i < k; i++) {
                cf_loc l;
                cf_entry_decode(buf + (size_t)i * CF_ENTRY_LEN, &l);
                l.pack = pno;
                l.bad = cf_damage_has_chunk(&r->dmg, &l.id, &pid) ? 1 : 0;
                if (!cf_entry_valid(&l, psize, r->seal_overhead)) {
                    char hex[2 * CF_ID_LEN + 1];
                    cf_id_hex(&l.id, hex);
                    cf_fail("%s: corrupt index: invalid entry for chunk %s", key, hex);
                    goto out;
                }
                /* a chunk listed twice keeps its first sound place */
                if (cf_index_add_loaded(ix, &l) < 0)
                    goto out;
            }
            count -= k;
            if (!ix->build && ix->spill_at && ix->n > ix->spill_at && cf_dbuild_spill(ix, n0) != 0)
                goto out;
        }
    }
    rc = 0;
out:
    cf_repo_objr_close(rd);
    free(buf);
    if (rc != 0 && ix->build) {
        if (cf_dbuild_rollback(ix->build) != 0)
            rc = -2; /* the bucket files cannot be restored: the whole load fails */
        ix->npacks = p0;
        idmap_rebuild(&ix->pmap, ix->packs, sizeof *ix->packs, p0);
    } else if (rc != 0) {
        cf_index_truncate(ix, n0, p0);
    }
    return rc;
}

int cf_index_load_object(cf_repo *r, const char *key, cf_index *ix)
{
    int from_cache = 0;
    int rc = load_object(r, key, ix, &from_cache);
    if (rc == 0)
        return 0;
    if (!from_cache || rc == -2)
        return rc;
    /* A cached copy that matched its trailer but not its envelope (it is
     * removed now): the store's copy decides. */
    cf_log(CF_LOG_DEBUG, "%s: cached copy unusable (%s); reading the store's", key, cf_error());
    return load_object(r, key, ix, &from_cache);
}

/* Sort keys copied out of the entries: qsort has no context argument. */
typedef struct ord_key {
    uint32_t pack;
    uint64_t offset;
    size_t i;
} ord_key;

static int cmp_ord(const void *a, const void *b)
{
    const ord_key *x = a, *y = b;
    if (x->pack != y->pack)
        return x->pack < y->pack ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int cf_index_write_object(cf_repo *r, const cf_index *ix, size_t from, char **key_out)
{
    *key_out = NULL;
    if (from >= ix->n)
        return 0;
    size_t n = ix->n - from;
    ord_key *ord = cf_malloc(n * sizeof *ord);
    for (size_t i = 0; i < n; i++)
        ord[i] = (ord_key){ix->ents[from + i].pack, ix->ents[from + i].offset, from + i};
    qsort(ord, n, sizeof *ord, cmp_ord);

    uint8_t rnd[CF_ID_LEN];
    char hex[2 * CF_ID_LEN + 1];
    cf_random(rnd, sizeof rnd);
    cf_hex(rnd, sizeof rnd, hex);
    char *key = cf_asprintf("index/%s", hex);

    cf_objw *w;
    if (cf_repo_objw_open(r, CF_OBJ_INDEX, key, &w) != 0) {
        free(ord);
        free(key);
        return -1;
    }
    uint8_t rec[CF_ENTRY_LEN];
    for (size_t i = 0; i < n;) {
        uint32_t pno = ord[i].pack;
        size_t j = i;
        while (j < n && ord[j].pack == pno)
            j++;
        const cf_pack_rec *p = &ix->packs[pno];
        if (!p->size) {
            char pk[CF_PACK_KEY_LEN + 1];
            cf_pack_key(&p->id, pk);
            cf_fail("%s: pack %s is not committed", key, pk);
            goto fail;
        }
        uint8_t g[CF_INDEX_GROUP_LEN] = {0};
        memcpy(g, p->id.b, CF_ID_LEN);
        cf_put64(g + 32, p->size);
        cf_put32(g + 40, (uint32_t)(j - i));
        if (cf_repo_objw_write(w, g, sizeof g) != 0)
            goto fail;
        for (; i < j; i++) {
            cf_entry_encode(rec, &ix->ents[ord[i].i]);
            if (cf_repo_objw_write(w, rec, sizeof rec) != 0)
                goto fail;
        }
    }
    free(ord);
    if (cf_repo_objw_commit(w) != 0) {
        free(key);
        return -1;
    }
    *key_out = key;
    return 0;
fail:
    cf_repo_objw_abort(w);
    free(ord);
    free(key);
    return -1;
}
