/*
 * state/damaged: what the last check found missing or damaged, so that a
 * backup stores those chunks again instead of deduplicating against them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "repo/repo_int.h"
#include "util/util.h"

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, CF_ID_LEN);
}

static int cmp_pair(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(cf_damaged_chunk));
}

/* Sort v (n elements of size sz) and drop duplicates. */
static size_t sort_unique(void *v, size_t n, size_t sz, int (*cmp)(const void *, const void *))
{
    if (n < 2)
        return n;
    qsort(v, n, sz, cmp);
    uint8_t *b = v;
    size_t k = 1;
    for (size_t i = 1; i < n; i++)
        if (memcmp(b + i * sz, b + (k - 1) * sz, sz) != 0)
            memmove(b + k++ * sz, b + i * sz, sz);
    return k;
}

static void sort_all(cf_damage *d)
{
    d->npacks = sort_unique(d->packs, d->npacks, sizeof *d->packs, cmp_id);
    d->nchunks = sort_unique(d->chunks, d->nchunks, sizeof *d->chunks, cmp_pair);
}

void cf_damage_free(cf_damage *d)
{
    free(d->packs);
    free(d->chunks);
    memset(d, 0, sizeof *d);
}

int cf_damage_parse(const char *buf, size_t len, cf_damage *d)
{
    memset(d, 0, sizeof *d);
    size_t pos = 0, lineno = 0;
    while (pos < len) {
        const char *l = buf + pos, *nl = memchr(l, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - l) : len - pos;
        pos += ll + (nl ? 1 : 0);
        lineno++;
        char line[160];
        if (ll >= sizeof line) {
            cf_damage_free(d);
            return cf_fail("%s: line %zu too long", CF_DAMAGE_KEY, lineno);
        }
        memcpy(line, l, ll);
        line[ll] = 0;
        if (lineno == 1) {
            if (strcmp(line, "coffer-damaged 1") != 0) {
                cf_damage_free(d);
                return cf_fail("%s: not a damage record (first line)", CF_DAMAGE_KEY);
            }
            continue;
        }
        if (!ll)
            continue;
        cf_id id, pk;
        if (strncmp(line, "pack ", 5) == 0) {
            if (ll != 5 + 2 * CF_ID_LEN || cf_id_parse(line + 5, &id) != 0) {
                cf_damage_free(d);
                return cf_fail("%s: line %zu: bad pack id", CF_DAMAGE_KEY, lineno);
            }
            d->packs = cf_realloc(d->packs, (d->npacks + 1) * sizeof *d->packs);
            d->packs[d->npacks++] = id;
        } else if (strncmp(line, "chunk ", 6) == 0) {
            char *sp = line + 6 + 2 * CF_ID_LEN;
            if (ll != 6 + 4 * CF_ID_LEN + 1 || *sp != ' ' ||
                (*sp = 0, cf_id_parse(line + 6, &id)) != 0 || cf_id_parse(sp + 1, &pk) != 0) {
                cf_damage_free(d);
                return cf_fail("%s: line %zu: bad chunk line", CF_DAMAGE_KEY, lineno);
            }
            d->chunks = cf_realloc(d->chunks, (d->nchunks + 1) * sizeof *d->chunks);
            d->chunks[d->nchunks++] = (cf_damaged_chunk){id, pk};
        } else if (strncmp(line, "time ", 5) == 0) {
            snprintf(d->time, sizeof d->time, "%s", line + 5);
        } /* other kinds: from a later version, ignored */
    }
    if (lineno == 0)
        return cf_fail("%s: empty damage record", CF_DAMAGE_KEY);
    sort_all(d);
    return 0;
}

char *cf_damage_format(cf_damage *d)
{
    sort_all(d);
    if (!d->time[0]) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(d->time, sizeof d->time, "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    size_t cap = 64 + (d->npacks + d->nchunks) * (8 + 4 * CF_ID_LEN + 1);
    char *s = cf_malloc(cap), hex[2 * CF_ID_LEN + 1], hex2[2 * CF_ID_LEN + 1];
    size_t o = (size_t)snprintf(s, cap, "coffer-damaged 1\ntime %s\n", d->time);
    for (size_t i = 0; i < d->npacks; i++) {
        cf_id_hex(&d->packs[i], hex);
        o += (size_t)snprintf(s + o, cap - o, "pack %s\n", hex);
    }
    for (size_t i = 0; i < d->nchunks; i++) {
        cf_id_hex(&d->chunks[i].chunk, hex);
        cf_id_hex(&d->chunks[i].pack, hex2);
        o += (size_t)snprintf(s + o, cap - o, "chunk %s %s\n", hex, hex2);
    }
    return s;
}

int cf_damage_has_pack(const cf_damage *d, const cf_id *pack)
{
    return d->npacks && bsearch(pack, d->packs, d->npacks, sizeof *d->packs, cmp_id) != NULL;
}

int cf_damage_has_chunk(const cf_damage *d, const cf_id *chunk, const cf_id *pack)
{
    cf_damaged_chunk k = {*chunk, *pack};
    return d->nchunks && bsearch(&k, d->chunks, d->nchunks, sizeof *d->chunks, cmp_pair) != NULL;
}

const cf_damage *cf_repo_damage(cf_repo *r)
{
    return &r->dmg;
}

int cf_repo_damage_store(cf_repo *r, cf_damage *d)
{
    int rc = cf_store_remove(r->st, CF_DAMAGE_KEY);
    if (rc != 0 && rc != COFFER_ERR_NOT_FOUND)
        return cf_fail("%s: cannot remove the damage record", CF_DAMAGE_KEY);
    if (!d->npacks && !d->nchunks)
        return 0;
    char *s = cf_damage_format(d);
    rc = cf_repo_put_object(r, CF_OBJ_STATE, CF_DAMAGE_KEY, s, strlen(s));
    free(s);
    return rc;
}

/* Read state/damaged at open, once a stat found it there (a missing
 * record is the normal case, and the open asks while it lists the index).
 * An unreadable one is logged and ignored (it only makes backups store
 * more). */
void cf_repo_damage_load(cf_repo *r)
{
    cf_buf b = {0};
    if (cf_repo_get_object(r, CF_OBJ_STATE, CF_DAMAGE_KEY, &b) != 0 ||
        cf_damage_parse((const char *)b.data, b.len, &r->dmg) != 0)
        cf_log(CF_LOG_WARN, "ignoring the damage record: %s", cf_error());
    else if (r->dmg.npacks || r->dmg.nchunks)
        cf_log(CF_LOG_INFO,
               "damage record of %s: %zu pack(s), %zu chunk(s) count as absent (stored again "
               "by the next backup)",
               r->dmg.time, r->dmg.npacks, r->dmg.nchunks);
    cf_buf_free(&b);
}
