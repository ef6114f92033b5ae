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

static size_t sort_unique(cf_id *v, size_t n)
{
    if (n < 2)
        return n;
    qsort(v, n, sizeof *v, cmp_id);
    size_t k = 1;
    for (size_t i = 1; i < n; i++)
        if (memcmp(&v[i], &v[k - 1], CF_ID_LEN) != 0)
            v[k++] = v[i];
    return k;
}

static void push(cf_id **v, size_t *n, const cf_id *id)
{
    *v = cf_realloc(*v, (*n + 1) * sizeof **v);
    (*v)[(*n)++] = *id;
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
        cf_id id;
        if (strncmp(line, "pack ", 5) == 0 || strncmp(line, "chunk ", 6) == 0) {
            int is_pack = line[0] == 'p';
            if (cf_id_parse(line + (is_pack ? 5 : 6), &id) != 0) {
                cf_damage_free(d);
                return cf_fail("%s: line %zu: bad id", CF_DAMAGE_KEY, lineno);
            }
            if (is_pack)
                push(&d->packs, &d->npacks, &id);
            else
                push(&d->chunks, &d->nchunks, &id);
        } else if (strncmp(line, "time ", 5) == 0) {
            snprintf(d->time, sizeof d->time, "%s", line + 5);
        } /* other kinds: from a later version, ignored */
    }
    if (lineno == 0)
        return cf_fail("%s: empty damage record", CF_DAMAGE_KEY);
    d->npacks = sort_unique(d->packs, d->npacks);
    d->nchunks = sort_unique(d->chunks, d->nchunks);
    return 0;
}

char *cf_damage_format(cf_damage *d)
{
    d->npacks = sort_unique(d->packs, d->npacks);
    d->nchunks = sort_unique(d->chunks, d->nchunks);
    if (!d->time[0]) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(d->time, sizeof d->time, "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    size_t cap = 64 + (d->npacks + d->nchunks) * (8 + 2 * CF_ID_LEN);
    char *s = cf_malloc(cap), hex[2 * CF_ID_LEN + 1];
    size_t o = (size_t)snprintf(s, cap, "coffer-damaged 1\ntime %s\n", d->time);
    for (size_t i = 0; i < d->npacks; i++) {
        cf_id_hex(&d->packs[i], hex);
        o += (size_t)snprintf(s + o, cap - o, "pack %s\n", hex);
    }
    for (size_t i = 0; i < d->nchunks; i++) {
        cf_id_hex(&d->chunks[i], hex);
        o += (size_t)snprintf(s + o, cap - o, "chunk %s\n", hex);
    }
    return s;
}

int cf_damage_has_pack(const cf_damage *d, const cf_id *pack)
{
    return d->npacks && bsearch(pack, d->packs, d->npacks, sizeof *d->packs, cmp_id) != NULL;
}

int cf_damage_has_chunk(const cf_damage *d, const cf_id *chunk)
{
    return d->nchunks && bsearch(chunk, d->chunks, d->nchunks, sizeof *d->chunks, cmp_id) != NULL;
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

/* Read state/damaged at open. A missing record is the normal case; an
 * unreadable one is logged and ignored (it only makes backups store more). */
void cf_repo_damage_load(cf_repo *r)
{
    coffer_object_stat os;
    if (cf_store_stat(r->st, CF_DAMAGE_KEY, &os) != 0)
        return;
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
