/*
 * The on-disk part of a large index: every entry of the committed index
 * objects in one file sorted by chunk id, read with pread, so memory
 * stays bounded however many chunks the repository holds.
 *
 * Loading moves to it when the loaded entries pass the memory threshold
 * (COFFER_INDEX_MEMORY_ENTRIES): entries are spread over 256 bucket files
 * by the first byte of their id (ids are SHA-256 output, so evenly), each
 * bucket is then sorted on its own and appended to the file. Every copy
 * of a chunk is kept, in loading order, so a reader can prefer a sound
 * copy whatever the damage record says at the time.
 *
 * The file is kept beside the cache of index objects,
 *   <cache>/<repository id>/index.sorted (0600),
 * and names the index objects it holds. The next open uses it when those
 * objects are all still listed and its MAC (HMAC-SHA256 with the
 * repository's key over the SHA-256 of the file; the SHA-256 alone for an
 * unencrypted repository) verifies, reading only newer index objects;
 * otherwise it is rebuilt from the objects. Without a cache directory the
 * file is an unlinked temporary.
 *
 * Layout (native byte order, a local file): a 64-byte header ("CFDIX001",
 * entry, pack and key counts), the packs (id, size: 40 bytes each), the
 * entries (cf_loc, 56 bytes each, sorted by id), the keys (one per line),
 * the 32-byte MAC.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "repo/repo_int.h"

#define NBUCKETS 256
#define MAGIC "CFDIX001"
#define HDR_LEN 64
#define PACK_LEN 40
#define MAX_TABLE_BITS 20
#define READ_BLOCK 8192 /* entries per read while verifying */

struct cf_dindex {
    int fd;
    uint64_t n;
    off_t ents_off;
    unsigned tbits;
    uint32_t *tab; /* (1 << tbits) + 1 starts of id-prefix ranges */
    char **keys;   /* index objects the file holds */
    size_t nkeys;
};

struct cf_dbuild {
    FILE *bk[NBUCKETS];
    off_t mark[NBUCKETS];
};

size_t cf_index_memory_entries(void)
{
    const char *e = getenv("COFFER_INDEX_MEMORY_ENTRIES");
    if (e && *e) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(e, &end, 10);
        if (!errno && !*end)
            return v ? (size_t)v : 1; /* 0: everything on disk */
        cf_log(CF_LOG_WARN, "COFFER_INDEX_MEMORY_ENTRIES=%s is not a number; using %u", e,
               CF_INDEX_MEMORY_DEFAULT);
    }
    return CF_INDEX_MEMORY_DEFAULT;
}

static const char *tmp_dir(void)
{
    const char *t = getenv("TMPDIR");
    return t && *t == '/' ? t : "/tmp";
}

/* An unlinked 0600 temporary in dir, or -1. */
static int tmp_unlinked(const char *dir)
{
    int fd = -1;
#ifdef O_TMPFILE
    fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
#endif
    char *path = cf_asprintf("%s/coffer-index-XXXXXX", dir);
    fd = mkstemp(path);
    if (fd >= 0)
        unlink(path);
    free(path);
    return fd;
}

/* pread of exactly len bytes: 0, or -1 with errno (EIO when short). */
static int read_at(int fd, void *p, size_t len, off_t off)
{
    uint8_t *b = p;
    while (len) {
        ssize_t k = pread(fd, b, len, off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0)
                errno = EIO;
            return -1;
        }
        b += k;
        len -= (size_t)k;
        off += k;
    }
    return 0;
}

/* ---- Building ----------------------------------------------------------- */

void cf_dbuild_free(cf_dbuild *b)
{
    if (!b)
        return;
    for (int i = 0; i < NBUCKETS; i++)
        if (b->bk[i])
            fclose(b->bk[i]);
    free(b);
}

int cf_dbuild_add(cf_dbuild *b, const cf_loc *l)
{
    cf_loc c = *l;
    c.bad = c.stale = 0;
    if (fwrite(&c, sizeof c, 1, b->bk[c.id.b[0]]) != 1)
        return cf_fail("index: cannot write a temporary file in %s: %s", tmp_dir(),
                       strerror(errno));
    return 0;
}

void cf_dbuild_mark(cf_dbuild *b)
{
    for (int i = 0; i < NBUCKETS; i++)
        b->mark[i] = ftello(b->bk[i]);
}

int cf_dbuild_rollback(cf_dbuild *b)
{
    for (int i = 0; i < NBUCKETS; i++)
        if (fflush(b->bk[i]) != 0 || ftruncate(fileno(b->bk[i]), b->mark[i]) != 0 ||
            fseeko(b->bk[i], b->mark[i], SEEK_SET) != 0)
            return cf_fail("index: cannot roll back a temporary file in %s: %s", tmp_dir(),
                           strerror(errno));
    return 0;
}

int cf_dbuild_spill(cf_index *ix, size_t n0)
{
    cf_dbuild *b = cf_calloc(1, sizeof *b);
    for (int i = 0; i < NBUCKETS; i++) {
        int fd = tmp_unlinked(tmp_dir());
        if (fd < 0 || !(b->bk[i] = fdopen(fd, "w+"))) {
            cf_fail("index: cannot create a temporary file in %s: %s", tmp_dir(), strerror(errno));
            if (fd >= 0)
                close(fd);
            cf_dbuild_free(b);
            return -1;
        }
    }
    for (size_t i = 0; i < ix->n; i++) {
        if (i == n0)
            cf_dbuild_mark(b);
        if (cf_dbuild_add(b, &ix->ents[i]) != 0) {
            cf_dbuild_free(b);
            return -1;
        }
    }
    if (n0 >= ix->n)
        cf_dbuild_mark(b);
    cf_log(CF_LOG_DEBUG, "index: past %zu entries; the rest is sorted on disk", ix->spill_at);
    free(ix->ents);
    free(ix->emap.slots);
    ix->ents = NULL;
    ix->emap.slots = NULL;
    ix->emap.nslots = 0;
    ix->n = ix->cap = 0;
    ix->build = b;
    return 0;
}

/* ---- The sorted file ------------------------------------------------------ */

typedef struct digest {
    EVP_MD_CTX *c;
} digest;

static int write_all(int fd, const void *p, size_t len, digest *d)
{
    if (d && !EVP_DigestUpdate(d->c, p, len))
        return cf_fail("index: SHA-256 failed");
    if (cf_write_all(fd, p, len) != 0)
        return cf_fail("index: cannot write the sorted index: %s", strerror(errno));
    return 0;
}

static void final_mac(cf_repo *r, digest *d, const uint8_t hdr[HDR_LEN], uint8_t mac[32])
{
    uint8_t h[32 + 16];
    unsigned hl = 0;
    EVP_DigestUpdate(d->c, hdr, HDR_LEN);
    EVP_DigestFinal_ex(d->c, h, &hl);
    if (r->crypt) {
        memcpy(h + 32, "coffer-dindex-v1", 16);
        cf_crypt_config_mac(r->crypt, h, sizeof h, mac);
    } else {
        memcpy(mac, h, 32);
    }
}

static unsigned table_bits(uint64_t n)
{
    unsigned b = 8;
    while (b < MAX_TABLE_BITS && ((uint64_t)1 << (b + 3)) < n)
        b++;
    return b;
}

static unsigned prefix(const cf_id *id, unsigned bits)
{
    uint32_t v = (uint32_t)id->b[0] << 24 | (uint32_t)id->b[1] << 16 | (uint32_t)id->b[2] << 8 |
                 id->b[3];
    return v >> (32 - bits);
}

/* Adds entry pos (in sorted order) to the prefix table. */
static void table_step(cf_dindex *d, uint32_t *next, const cf_id *id, uint64_t pos)
{
    unsigned k = prefix(id, d->tbits);
    while (*next <= k)
        d->tab[(*next)++] = (uint32_t)pos;
}

static void table_end(cf_dindex *d, uint32_t *next)
{
    uint32_t last = 1u << d->tbits;
    while (*next <= last)
        d->tab[(*next)++] = (uint32_t)d->n;
}

/* Sort order: id, then loading order (the position in the bucket). */
static int cmp_pos(const void *a, const void *b, void *ctx)
{
    const cf_loc *e = ctx;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    int c = memcmp(e[x].id.b, e[y].id.b, CF_ID_LEN);
    return c ? c : (x > y) - (x < y);
}

void cf_dindex_free(cf_dindex *d)
{
    if (!d)
        return;
    if (d->fd >= 0)
        close(d->fd);
    free(d->tab);
    cf_strv_free(d->keys, d->nkeys);
    free(d);
}

static char *sorted_path(cf_repo *r)
{
    return cf_repo_cache_file(r, "index.sorted");
}

/* What identifies the content of an index object without reading it:
 * its size and the store's etag, or where the store has none (a local
 * directory), its SHA-256 trailer. An object rewritten under its key
 * (which coffer never does) then makes the sorted file stale. NULL when
 * it cannot be read. */
static char *key_token(cf_repo *r, const char *key, const coffer_object_stat *st)
{
    coffer_object_stat os = *st;
    if (!os.size && cf_store_stat(r->st, key, &os) != 0)
        return NULL;
    if (os.etag[0]) {
        char *t = cf_asprintf("%llu:%s", (unsigned long long)os.size, os.etag);
        for (char *c = t; *c; c++)
            if (*c == ' ' || *c == '\n')
                *c = '_';
        return t;
    }
    if (os.size < CF_ENV_TRAILER_LEN)
        return NULL;
    cf_buf b = {0};
    char hex[2 * CF_ENV_TRAILER_LEN + 1];
    char *t = NULL;
    if (cf_store_get_range(r->st, key, os.size - CF_ENV_TRAILER_LEN, CF_ENV_TRAILER_LEN, &b) == 0 &&
        b.len == CF_ENV_TRAILER_LEN) {
        cf_hex(b.data, CF_ENV_TRAILER_LEN, hex);
        t = cf_asprintf("%llu:%s", (unsigned long long)os.size, hex);
    }
    cf_buf_free(&b);
    return t;
}

/* Write the sorted file from the bucket files, naming keys (lines of
 * "key token"). */
static int build_finish(cf_repo *r, cf_index *ix, char **keys, size_t nkeys, int keep)
{
    cf_dbuild *b = ix->build;
    uint64_t n = 0;
    size_t bigmax = 0;
    for (int i = 0; i < NBUCKETS; i++) {
        if (fflush(b->bk[i]) != 0)
            return cf_fail("index: cannot write a temporary file in %s: %s", tmp_dir(),
                           strerror(errno));
        off_t sz = ftello(b->bk[i]);
        size_t k = (size_t)sz / sizeof(cf_loc);
        n += k;
        if (k > bigmax)
            bigmax = k;
    }
    if (n >= UINT32_MAX)
        return cf_fail("index: %llu entries is more than this version handles",
                       (unsigned long long)n);
    char *path = keep ? sorted_path(r) : NULL, *tmp = NULL;
    int fd = -1;
    if (path) {
        tmp = cf_asprintf("%s.tmp.%ld", path, (long)getpid());
        fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            cf_log(CF_LOG_DEBUG, "index: cannot keep the sorted index at %s (%s)", tmp,
                   strerror(errno));
            free(tmp);
            free(path);
            tmp = path = NULL;
        }
    }
    if (fd < 0 && (fd = tmp_unlinked(tmp_dir())) < 0)
        return cf_fail("index: cannot create a temporary file in %s: %s", tmp_dir(),
                       strerror(errno));

    cf_dindex *d = cf_calloc(1, sizeof *d);
    d->fd = fd;
    d->n = n;
    d->tbits = table_bits(n);
    d->tab = cf_malloc(((1u << d->tbits) + 1) * sizeof *d->tab);
    d->ents_off = HDR_LEN + (off_t)ix->npacks * PACK_LEN;
    digest dg = {EVP_MD_CTX_new()};
    cf_loc *ents = cf_malloc((bigmax ? bigmax : 1) * sizeof *ents);
    cf_loc *sorted = cf_malloc((bigmax ? bigmax : 1) * sizeof *sorted);
    uint32_t *ord = cf_malloc((bigmax ? bigmax : 1) * sizeof *ord);
    int rc = -1;
    uint8_t hdr[HDR_LEN] = {0};
    if (!dg.c || !EVP_DigestInit_ex(dg.c, r->sha, NULL)) {
        cf_fail("index: SHA-256 failed");
        goto out;
    }
    if (lseek(fd, HDR_LEN, SEEK_SET) < 0) {
        cf_fail("index: cannot write the sorted index: %s", strerror(errno));
        goto out;
    }
    for (size_t i = 0; i < ix->npacks; i++) {
        uint8_t p[PACK_LEN];
        memcpy(p, ix->packs[i].id.b, CF_ID_LEN);
        cf_put64(p + 32, ix->packs[i].size);
        ix->packs[i].nbase = 0;
        if (write_all(fd, p, sizeof p, &dg) != 0)
            goto out;
    }
    uint32_t next = 0;
    uint64_t pos = 0;
    for (int i = 0; i < NBUCKETS; i++) {
        size_t k = (size_t)ftello(b->bk[i]) / sizeof *ents;
        if (k && read_at(fileno(b->bk[i]), ents, k * sizeof *ents, 0) != 0) {
            cf_fail("index: cannot read a temporary file in %s: %s", tmp_dir(), strerror(errno));
            goto out;
        }
        for (size_t j = 0; j < k; j++)
            ord[j] = (uint32_t)j;
        qsort_r(ord, k, sizeof *ord, cmp_pos, ents);
        for (size_t j = 0; j < k; j++) {
            sorted[j] = ents[ord[j]];
            table_step(d, &next, &sorted[j].id, pos++);
            ix->packs[sorted[j].pack].nbase++;
        }
        if (k && write_all(fd, sorted, k * sizeof *sorted, &dg) != 0)
            goto out;
        fclose(b->bk[i]);
        b->bk[i] = NULL;
    }
    table_end(d, &next);
    size_t klen = 0;
    for (size_t i = 0; i < nkeys; i++) {
        size_t l = strlen(keys[i]);
        if (write_all(fd, keys[i], l, &dg) != 0 || write_all(fd, "\n", 1, &dg) != 0)
            goto out;
        klen += l + 1;
    }
    memcpy(hdr, MAGIC, 8);
    cf_put64(hdr + 8, n);
    cf_put64(hdr + 16, ix->npacks);
    cf_put64(hdr + 24, nkeys);
    cf_put64(hdr + 32, klen);
    uint8_t mac[32];
    final_mac(r, &dg, hdr, mac);
    if (write_all(fd, mac, sizeof mac, NULL) != 0)
        goto out;
    if (lseek(fd, 0, SEEK_SET) != 0 || cf_write_all(fd, hdr, sizeof hdr) != 0) {
        cf_fail("index: cannot write the sorted index: %s", strerror(errno));
        goto out;
    }
    if (tmp && rename(tmp, path) != 0) {
        cf_log(CF_LOG_DEBUG, "index: cannot keep the sorted index at %s (%s)", path,
               strerror(errno));
        unlink(tmp);
    }
    d->keys = cf_calloc(nkeys + 1, sizeof *d->keys);
    for (size_t i = 0; i < nkeys; i++)
        d->keys[i] = cf_strndup(keys[i], strcspn(keys[i], " "));
    d->nkeys = nkeys;
    ix->disk = d;
    ix->nbase = n;
    d = NULL;
    rc = 0;
out:
    if (rc != 0 && tmp)
        unlink(tmp);
    if (d)
        cf_dindex_free(d);
    EVP_MD_CTX_free(dg.c);
    free(ents);
    free(sorted);
    free(ord);
    free(tmp);
    free(path);
    cf_dbuild_free(ix->build);
    ix->build = NULL;
    return rc;
}

/* Open the cached sorted file if every key it names is in keys and it
 * verifies; packs go into ix (which must be empty). 0 when used. */
static int open_cached(cf_repo *r, cf_index *ix, char **keys, const coffer_object_stat *sts,
                       size_t nkeys)
{
    char *path = sorted_path(r);
    if (!path)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        free(path);
        return -1;
    }
    const char *why = NULL;
    cf_dindex *d = cf_calloc(1, sizeof *d);
    d->fd = fd;
    digest dg = {EVP_MD_CTX_new()};
    cf_loc *buf = cf_malloc(READ_BLOCK * sizeof *buf);
    char *kbuf = NULL;
    struct stat st;
    uint8_t hdr[HDR_LEN];
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        read_at(fd, hdr, sizeof hdr, 0) != 0 ||
        memcmp(hdr, MAGIC, 8) != 0) {
        why = "not a sorted index of this version";
        goto bad;
    }
    uint64_t n = cf_get64(hdr + 8), np = cf_get64(hdr + 16), nk = cf_get64(hdr + 24),
             klen = cf_get64(hdr + 32);
    if (n >= UINT32_MAX || np >= UINT32_MAX || nk > klen || klen > (64u << 20) ||
        (uint64_t)st.st_size != HDR_LEN + np * PACK_LEN + n * sizeof(cf_loc) + klen + 32) {
        why = "its size does not match its header";
        goto bad;
    }
    if (!dg.c || !EVP_DigestInit_ex(dg.c, r->sha, NULL)) {
        why = "SHA-256 failed";
        goto bad;
    }
    /* Packs */
    for (uint64_t i = 0; i < np; i++) {
        uint8_t p[PACK_LEN];
        if (read_at(fd, p, sizeof p, HDR_LEN + (off_t)i * PACK_LEN) != 0) {
            why = "short read";
            goto bad;
        }
        EVP_DigestUpdate(dg.c, p, sizeof p);
        cf_id pid;
        memcpy(pid.b, p, CF_ID_LEN);
        if (cf_index_pack(ix, &pid, cf_get64(p + 32)) != i) {
            why = "a pack is listed twice";
            goto bad;
        }
        ix->packs[i].damaged = cf_damage_has_pack(&r->dmg, &pid) ? 1 : 0;
    }
    d->n = n;
    d->ents_off = HDR_LEN + (off_t)np * PACK_LEN;
    d->tbits = table_bits(n);
    d->tab = cf_malloc(((1u << d->tbits) + 1) * sizeof *d->tab);
    uint32_t next = 0;
    cf_loc prev;
    memset(&prev, 0, sizeof prev);
    for (uint64_t pos = 0; pos < n;) {
        size_t k = n - pos < READ_BLOCK ? (size_t)(n - pos) : READ_BLOCK;
        if (read_at(fd, buf, k * sizeof *buf, d->ents_off + (off_t)pos * sizeof *buf) != 0) {
            why = "short read";
            goto bad;
        }
        EVP_DigestUpdate(dg.c, buf, k * sizeof *buf);
        for (size_t j = 0; j < k; j++, pos++) {
            const cf_loc *e = &buf[j];
            if (e->pack >= np || (pos && memcmp(prev.id.b, e->id.b, CF_ID_LEN) > 0) ||
                !cf_entry_valid(e, ix->packs[e->pack].size, r->seal_overhead)) {
                why = "an entry is out of order or invalid";
                goto bad;
            }
            prev = *e;
            table_step(d, &next, &e->id, pos);
            ix->packs[e->pack].nbase++;
        }
    }
    table_end(d, &next);
    kbuf = cf_malloc(klen + 1);
    if (read_at(fd, kbuf, klen, d->ents_off + (off_t)n * sizeof(cf_loc)) != 0) {
        why = "short read";
        goto bad;
    }
    EVP_DigestUpdate(dg.c, kbuf, klen);
    kbuf[klen] = 0;
    uint8_t mac[32], want[32];
    if (read_at(fd, want, 32, st.st_size - 32) != 0) {
        why = "short read";
        goto bad;
    }
    final_mac(r, &dg, hdr, mac);
    if (CRYPTO_memcmp(mac, want, 32) != 0) {
        why = "its MAC does not verify";
        goto bad;
    }
    /* Every object it holds must still be listed, unchanged (keys are
     * sorted). */
    d->keys = cf_calloc(nk + 1, sizeof *d->keys);
    size_t ki = 0, j = 0;
    for (char *s = kbuf, *nl; *s && (nl = strchr(s, '\n')); s = nl + 1) {
        *nl = 0;
        char *tok = strchr(s, ' ');
        if (ki == nk || !tok) {
            why = "its key list does not match its header";
            goto bad;
        }
        *tok++ = 0;
        d->keys[ki++] = cf_strdup(s);
        d->nkeys = ki; /* freed with d on every path */
        while (j < nkeys && strcmp(keys[j], s) < 0)
            j++;
        char *cur = j < nkeys && strcmp(keys[j], s) == 0 ? key_token(r, keys[j], &sts[j]) : NULL;
        int same = cur && strcmp(cur, tok) == 0;
        free(cur);
        if (!same) {
            cf_log(CF_LOG_DEBUG, "index: %s holds %s, which the repository %s; rebuilding it", path,
                   s, j < nkeys && strcmp(keys[j], s) == 0 ? "holds in another version" : "no longer lists");
            goto stale;
        }
    }
    d->nkeys = ki;
    free(buf);
    free(kbuf);
    EVP_MD_CTX_free(dg.c);
    free(path);
    ix->disk = d;
    ix->nbase = n;
    return 0;
bad:
    cf_log(CF_LOG_WARN, "index: the cached sorted index %s is unusable (%s); rebuilding it", path,
           why);
stale:
    unlink(path);
    free(buf);
    free(kbuf);
    EVP_MD_CTX_free(dg.c);
    free(path);
    cf_dindex_free(d);
    cf_index_truncate(ix, 0, 0);
    return -1;
}

/* ---- Reading ------------------------------------------------------------ */

int cf_dindex_read(const cf_dindex *d, size_t pos, size_t n, cf_loc *out)
{
    size_t len = n * sizeof *out;
    if (pos + n > d->n ||
        read_at(d->fd, out, len, d->ents_off + (off_t)pos * sizeof *out) != 0)
        return cf_fail("index: cannot read the sorted index: %s",
                       pos + n > d->n ? "position past its end" : strerror(errno));
    return 0;
}

static int disk_sound(const cf_index *ix, const cf_loc *l)
{
    return !ix->packs[l->pack].damaged &&
           !(ix->dmg && cf_damage_has_chunk(ix->dmg, &l->id, &ix->packs[l->pack].id));
}

/* The copy of id among w[0, n) (entries lo..): the first sound one, else
 * the first; -1 when absent. */
static ssize_t pick(const cf_index *ix, const cf_loc *w, size_t n, size_t lo, const cf_id *id,
                    int *sound, cf_loc *out)
{
    ssize_t first = -1;
    for (size_t i = 0; i < n; i++) {
        int c = memcmp(w[i].id.b, id->b, CF_ID_LEN);
        if (c > 0)
            break;
        if (c < 0)
            continue;
        if (first < 0) {
            first = (ssize_t)(lo + i);
            if (out)
                *out = w[i];
        }
        if (disk_sound(ix, &w[i])) {
            *sound = 1;
            if (out)
                *out = w[i];
            return (ssize_t)(lo + i);
        }
    }
    *sound = 0;
    return first;
}

ssize_t cf_dindex_find(const cf_index *ix, const cf_id *id, int *sound, cf_loc *out)
{
    const cf_dindex *d = ix->disk;
    *sound = 0;
    if (!d || !d->n)
        return -1;
    unsigned k = prefix(id, d->tbits);
    size_t lo = d->tab[k], hi = d->tab[k + 1];
    enum { WIN = 64 };
    cf_loc w[WIN];
    if (hi - lo <= WIN) /* every copy shares the prefix: all are in range */
        return hi > lo && cf_dindex_read(d, lo, hi - lo, w) == 0
                   ? pick(ix, w, hi - lo, lo, id, sound, out)
                   : -1;
    /* A crowded range (a hostile or degenerate index): bisect to the
     * first copy, then walk the copies. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cf_dindex_read(d, mid, 1, w) != 0)
            return -1;
        if (memcmp(w[0].id.b, id->b, CF_ID_LEN) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    ssize_t first = -1;
    for (size_t p = lo; p < d->n; p++) {
        if (cf_dindex_read(d, p, 1, w) != 0 || memcmp(w[0].id.b, id->b, CF_ID_LEN) != 0)
            break;
        if (first < 0) {
            first = (ssize_t)p;
            if (out)
                *out = w[0];
        }
        if (disk_sound(ix, &w[0])) {
            *sound = 1;
            if (out)
                *out = w[0];
            return (ssize_t)p;
        }
    }
    return first;
}

void cf_dindex_find_sorted(const cf_index *ix, const cf_id *ids, size_t n, ssize_t *pos,
                           uint8_t *sound, cf_loc *locs)
{
    const cf_dindex *d = ix->disk;
    /* One read covers the ranges of the ids that follow while they lie
     * close together (at most BLK entries, 112 KiB); sparse ids each get a
     * read of their own range, so a batch spread over the whole file
     * costs about one small read per id, not the whole file. */
    enum { BLK = 2048, GAP = 64 };
    cf_loc *blk = cf_malloc(BLK * sizeof *blk);
    size_t b0 = 0, bn = 0;
    for (size_t i = 0; i < n; i++) {
        int snd = 0;
        pos[i] = -1;
        if (d && d->n) {
            unsigned k = prefix(&ids[i], d->tbits);
            size_t lo = d->tab[k], hi = d->tab[k + 1];
            if (hi - lo > BLK) {
                pos[i] = cf_dindex_find(ix, &ids[i], &snd, locs ? &locs[i] : NULL);
            } else if (hi > lo) {
                if (lo < b0 || hi > b0 + bn) {
                    size_t end = hi;
                    for (size_t j = i + 1; j < n; j++) {
                        unsigned kj = prefix(&ids[j], d->tbits);
                        size_t lj = d->tab[kj], hj = d->tab[kj + 1];
                        if (hj - lo > BLK || lj > end + GAP)
                            break;
                        if (hj > end)
                            end = hj;
                    }
                    b0 = lo;
                    bn = end - lo;
                    if (cf_dindex_read(d, b0, bn, blk) != 0)
                        bn = 0;
                }
                if (bn)
                    pos[i] = pick(ix, blk + (lo - b0), hi - lo, lo, &ids[i], &snd,
                                  locs ? &locs[i] : NULL);
            }
        }
        sound[i] = (uint8_t)snd;
    }
    free(blk);
}

/* ---- Loading -------------------------------------------------------------- */

static int load_keys(cf_repo *r, char **keys, size_t nkeys, const uint8_t *skip, char ***bad, size_t *nbad, size_t **loaded,
                     size_t *nloaded)
{
    for (size_t i = 0; i < nkeys; i++) {
        if (skip && skip[i])
            continue;
        int rc = cf_index_load_object(r, keys[i], &r->idx);
        if (rc == 0) {
            if (loaded) {
                *loaded = cf_realloc(*loaded, (*nloaded + 1) * sizeof **loaded);
                (*loaded)[(*nloaded)++] = i;
            }
            continue;
        }
        if (!bad || rc == -2)
            return -1;
        cf_log(CF_LOG_WARN, "skipping index object: %s", cf_error());
        cf_strv_push(bad, nbad, keys[i]);
    }
    return 0;
}

int cf_index_load_all(cf_repo *r, char **keys, const coffer_object_stat *sts, size_t nkeys,
                      char ***bad, size_t *nbad)
{
    cf_index *ix = &r->idx;
    ix->dmg = &r->dmg;
    size_t lim = cf_index_memory_entries();
    /* An entry takes 52 bytes, at least its 32-byte id once compressed
     * (ids are random): the listed sizes bound the entries from above,
     * so a repository near the threshold may go to disk a little early. */
    uint64_t listed = 0;
    for (size_t i = 0; i < nkeys; i++)
        listed += sts[i].size;
    int large = listed / CF_ID_LEN > lim;
    /* Without sizes in the listing only a sorted file already cached
     * tells; loading then moves to disk when it passes the threshold. */
    if ((large || !listed) && open_cached(r, ix, keys, sts, nkeys) == 0) {
        /* Newer index objects go to memory; past 256 of them or the
         * threshold: rebuild. */
        uint8_t *skip = cf_calloc(nkeys + 1, 1);
        size_t j = 0, extra = 0;
        for (size_t i = 0; i < ix->disk->nkeys; i++) {
            while (strcmp(keys[j], ix->disk->keys[i]) < 0)
                j++;
            skip[j++] = 1;
        }
        for (size_t i = 0; i < nkeys; i++)
            extra += !skip[i];
        int rc = 0;
        if (extra <= 256) {
            size_t nb0 = bad ? *nbad : 0;
            rc = load_keys(r, keys, nkeys, skip, bad, nbad, NULL, NULL);
            if (rc == 0 && ix->n <= lim) {
                free(skip);
                cf_log(CF_LOG_DEBUG, "index: %zu entries from the sorted index, %zu from %zu newer "
                       "index object(s)", ix->nbase, ix->n, extra);
                return 0;
            }
            if (bad) { /* loading again below lists them again */
                for (size_t i = nb0; i < *nbad; i++)
                    free((*bad)[i]);
                *nbad = nb0;
            }
        }
        free(skip);
        if (rc != 0)
            return -1;
        cf_index_free(ix);
        ix->dmg = &r->dmg;
    }
    /* Past the threshold, straight to disk from the first entry rather
     * than holding up to the threshold in memory first. */
    ix->spill_at = lim;
    if (large && cf_dbuild_spill(ix, 0) != 0)
        return -1;
    size_t *loaded = NULL, nloaded = 0;
    int rc = load_keys(r, keys, nkeys, NULL, bad, nbad, &loaded, &nloaded);
    ix->spill_at = 0;
    if (rc == 0 && ix->build) {
        /* "key token" per object the file holds; without every token the
         * file cannot be checked later, so it is not kept. */
        char **lines = cf_calloc(nloaded + 1, sizeof *lines);
        int keep = 1;
        for (size_t i = 0; i < nloaded; i++) {
            char *tok = key_token(r, keys[loaded[i]], &sts[loaded[i]]);
            keep = keep && tok;
            lines[i] = cf_asprintf("%s %s", keys[loaded[i]], tok ? tok : "-");
            free(tok);
        }
        rc = build_finish(r, ix, lines, nloaded, keep);
        cf_strv_free(lines, nloaded);
    }
    if (rc == 0 && ix->disk)
        cf_log(CF_LOG_DEBUG, "index: %zu entries sorted on disk", ix->nbase);
    free(loaded);
    return rc;
}
