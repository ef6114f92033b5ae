/*
 * The repository handle: config, session (what this run wrote, so a
 * failed backup can be rolled back), and the chunk put/get paths.
 *
 * Concurrency: put_chunk checks the index under a read lock, takes a pack
 * writer of its own from the pool (one per concurrent caller), compresses
 * and writes with no lock held, then inserts under the write lock. Two
 * threads racing on the same new chunk may both store it; the index keeps
 * the first insert and the other blob is a harmless duplicate in a pack.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "repo/repo_int.h"

#define DEFAULT_PACK_SIZE (16ull * 1024 * 1024)
#define MIN_PACK_SIZE 4096ull
#define CONFIG_KEY "config"

/* ---- Small helpers ------------------------------------------------------ */

void cf_id_hex(const cf_id *id, char out[2 * CF_ID_LEN + 1])
{
    cf_hex(id->b, CF_ID_LEN, out);
}

int cf_id_parse(const char *hex, cf_id *out)
{
    if (!hex || strlen(hex) != 2 * CF_ID_LEN)
        return -1;
    return cf_unhex(hex, out->b, CF_ID_LEN);
}

void cf_strv_push(char ***v, size_t *n, const char *s)
{
    *v = cf_realloc(*v, (*n + 1) * sizeof **v);
    (*v)[(*n)++] = cf_strdup(s);
}

void cf_strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void cf_repo_hash(cf_repo *r, const void *data, size_t len, cf_id *out)
{
    if (r->crypt) {
        cf_crypt_chunk_id(r->crypt, data, len, out);
        return;
    }
    unsigned n = 0;
    if (!EVP_Digest(data, len, out->b, &n, r->sha, NULL)) {
        /* Cannot happen with the default provider; never hand out a
         * made-up id. */
        cf_log(CF_LOG_ERROR, "SHA-256 failed");
        abort();
    }
}

static EVP_MD *fetch_sha256(void)
{
    EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!md)
        cf_fail("OpenSSL: SHA-256 is not available");
    return md;
}

void cf_repo_sess_add(cf_repo *r, int is_pack, const char *key)
{
    pthread_mutex_lock(&r->wlock);
    if (is_pack)
        cf_strv_push(&r->sess_packs, &r->nsess_packs, key);
    else
        cf_strv_push(&r->sess_index, &r->nsess_index, key);
    pthread_mutex_unlock(&r->wlock);
}

void cf_repo_pack_committed(cf_repo *r, uint32_t pack, uint64_t size)
{
    pthread_rwlock_wrlock(&r->lock);
    r->idx.packs[pack].size = size;
    pthread_rwlock_unlock(&r->lock);
}

/* ---- Config ------------------------------------------------------------- */

static int check_params(const cf_repo_params *p, cf_cdc *cdc, int *level, uint64_t *pack_size)
{
    if (cf_cdc_init(cdc, &p->cdc) != 0)
        return -1;
    *level = p->zstd_level ? p->zstd_level : DEFAULT_ZSTD_LEVEL;
    if (*level < 1 || *level > ZSTD_maxCLevel())
        return cf_fail("zstd level %d out of range (1..%d)", *level, ZSTD_maxCLevel());
    *pack_size = p->pack_size ? p->pack_size : DEFAULT_PACK_SIZE;
    if (*pack_size < MIN_PACK_SIZE || *pack_size > CF_PACK_SIZE_MAX)
        return cf_fail("pack size %llu out of range (%llu..%llu)", (unsigned long long)*pack_size,
                       MIN_PACK_SIZE, CF_PACK_SIZE_MAX);
    return 0;
}

/* Encrypted repositories keep the chunker seed in the master key and
 * derive ids with HMAC: their config names neither (section 3). */
static char *config_json(const char *id_hex, const cf_cdc_params *c, int level, uint64_t pack_size,
                         int encrypted)
{
    char seed[17], created[32];
    snprintf(seed, sizeof seed, "%016llx", (unsigned long long)c->seed);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *root = json_pack("{s:i, s:s, s:s, s:s, s:{s:s, s:I, s:I, s:I, s:s}, s:{s:s, s:i}, s:I, s:s}",
                             "format", CF_FORMAT_VERSION, "id", id_hex, "created", created, "hash",
                             "sha256", "chunker", "algorithm", "fastcdc-gear64-nc2", "min_size",
                             (json_int_t)c->min_size, "avg_size", (json_int_t)c->avg_size,
                             "max_size", (json_int_t)c->max_size, "seed", seed, "compression",
                             "algorithm", "zstd", "level", level, "pack_size",
                             (json_int_t)pack_size, "encryption", "none");
    if (encrypted) {
        json_object_set_new(root, "hash", json_string("hmac-sha256"));
        json_object_del(json_object_get(root, "chunker"), "seed");
        json_object_set_new(root, "encryption", json_string("repokey"));
    }
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    char *out = cf_asprintf("%s\n", text);
    free(text);
    return out;
}

static int json_u32(json_t *o, const char *name, uint32_t *v)
{
    json_t *x = json_object_get(o, name);
    if (!json_is_integer(x) || json_integer_value(x) <= 0 || json_integer_value(x) > UINT32_MAX)
        return cf_fail("config: %s must be a positive integer", name);
    *v = (uint32_t)json_integer_value(x);
    return 0;
}

static int parse_config(cf_repo *r, const cf_buf *b)
{
    json_error_t je;
    json_t *root = json_loadb((const char *)b->data, b->len, 0, &je);
    if (!root)
        return cf_fail("config: invalid JSON at line %d: %s", je.line, je.text);
    int rc = -1;
    json_t *fmt = json_object_get(root, "format");
    if (!json_is_integer(fmt) || json_integer_value(fmt) != CF_FORMAT_VERSION) {
        cf_fail("config: repository format %lld is not supported (this coffer reads format %d)",
                json_is_integer(fmt) ? (long long)json_integer_value(fmt) : -1LL,
                CF_FORMAT_VERSION);
        goto out;
    }
    const char *enc = json_string_value(json_object_get(root, "encryption"));
    if (enc && strcmp(enc, "repokey") == 0) {
        r->scheme = CF_ENC_XCHACHA;
    } else if (!enc || strcmp(enc, "none") != 0) {
        cf_fail("config: repository encryption '%s' is not supported by this version of coffer",
                enc ? enc : "?");
        goto out;
    }
    const char *hash = json_string_value(json_object_get(root, "hash"));
    const char *want_hash = r->scheme ? "hmac-sha256" : "sha256";
    if (!hash || strcmp(hash, want_hash) != 0) {
        cf_fail("config: hash '%s' is not supported%s", hash ? hash : "?",
                r->scheme ? " in an encrypted repository" : "");
        goto out;
    }
    const char *id = json_string_value(json_object_get(root, "id"));
    cf_id tmp;
    if (cf_id_parse(id, &tmp) != 0) {
        cf_fail("config: invalid repository id");
        goto out;
    }
    cf_id_hex(&tmp, r->id_hex);

    json_t *ch = json_object_get(root, "chunker");
    const char *alg = json_string_value(json_object_get(ch, "algorithm"));
    if (!alg || strcmp(alg, "fastcdc-gear64-nc2") != 0) {
        cf_fail("config: chunker '%s' is not supported", alg ? alg : "?");
        goto out;
    }
    cf_cdc_params cp = {0};
    const char *seed = json_string_value(json_object_get(ch, "seed"));
    uint8_t sb[8];
    if (json_u32(ch, "min_size", &cp.min_size) || json_u32(ch, "avg_size", &cp.avg_size) ||
        json_u32(ch, "max_size", &cp.max_size))
        goto out;
    if (r->scheme) {
        cp.seed = 1; /* placeholder until the key is open: the seed is in it */
    } else if (!seed || strlen(seed) != 16 || cf_unhex(seed, sb, 8) != 0) {
        cf_fail("config: chunker seed must be 16 hex digits");
        goto out;
    }
    for (int i = 0; !r->scheme && i < 8; i++)
        cp.seed = cp.seed << 8 | sb[i];

    json_t *comp = json_object_get(root, "compression");
    const char *calg = json_string_value(json_object_get(comp, "algorithm"));
    if (!calg || strcmp(calg, "zstd") != 0) {
        cf_fail("config: compression '%s' is not supported", calg ? calg : "?");
        goto out;
    }
    json_t *lvl = json_object_get(comp, "level"), *ps = json_object_get(root, "pack_size");
    if (!json_is_integer(lvl) || !json_is_integer(ps) || json_integer_value(ps) <= 0) {
        cf_fail("config: compression level and pack_size must be integers");
        goto out;
    }
    cf_repo_params p = {.cdc = cp, .zstd_level = (int)json_integer_value(lvl),
                        .pack_size = (uint64_t)json_integer_value(ps)};
    if (check_params(&p, &r->cdc, &r->zstd_level, &r->pack_size) != 0) {
        cf_error_prefix("config");
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int cf_repo_init(cf_store *st, const cf_repo_params *p)
{
    cf_repo_params prm = p ? *p : (cf_repo_params){0};
    int encrypted = prm.encryption == CF_REPO_ENC_REPOKEY;
    if (prm.encryption != CF_REPO_ENC_NONE && !encrypted)
        return cf_fail("unknown encryption mode %d", prm.encryption);
    uint8_t *master = NULL;
    char *pass = NULL;
    size_t plen = 0;
    if (encrypted) {
        /* Read the passphrase before touching the store: a missing one
         * must not leave anything behind. */
        if (cf_passphrase_read(prm.pass, &pass, &plen) != 0)
            return -1;
        master = sodium_malloc(CF_MASTER_LEN); /* sodium is initialised by the read */
        if (!master) {
            cf_passphrase_free(pass, plen);
            return cf_fail("cannot allocate locked memory for the repository key");
        }
        cf_crypt_generate(master);
        prm.cdc.seed = cf_get64(master + 96);
    }
    while (prm.cdc.seed == 0) /* zero means "pick one"; 0 itself is never stored */
        cf_random(&prm.cdc.seed, sizeof prm.cdc.seed);
    cf_cdc cdc;
    int level, rc = -1;
    uint64_t pack_size = 0; /* set by check_params() when it returns 0; gcc -O3 cannot tell */
    char *text = NULL, kid[2 * CF_ID_LEN + 1] = "";
    EVP_MD *md = NULL;
    coffer_object_stat os;
    if (check_params(&prm, &cdc, &level, &pack_size) != 0)
        goto out;
    if (cf_store_prepare(st, 1) != 0)
        goto out;
    int st_rc = cf_store_stat(st, CONFIG_KEY, &os);
    if (st_rc == 0) {
        cf_fail("%s: a repository already exists here (object 'config' found)", st->label);
        goto out;
    }
    if (st_rc != COFFER_ERR_NOT_FOUND)
        goto out;

    uint8_t rid[CF_ID_LEN];
    char hex[2 * CF_ID_LEN + 1];
    cf_random(rid, sizeof rid);
    cf_hex(rid, sizeof rid, hex);
    text = config_json(hex, &cdc.p, level, pack_size, encrypted);
    if (!(md = fetch_sha256()))
        goto out;
    if (encrypted) {
        /* The key first, the config last: the config's create-if-absent
         * decides between concurrent inits, and a loser removes its key. */
        cf_crypt *c;
        if (cf_crypt_new(master, &c) != 0)
            goto out;
        uint8_t mac[32];
        cf_crypt_config_mac(c, text, strlen(text), mac);
        cf_crypt_free(c);
        if (cf_key_write(st, md, hex, master, mac, pass, plen, &prm.kdf, kid) != 0)
            goto out;
    }
    cf_objw *w;
    rc = cf_objw_open_raw(st, md, NULL, level, CF_OBJ_CONFIG, CONFIG_KEY,
                          COFFER_WRITE_IF_ABSENT | COFFER_WRITE_PRIVATE, 0, &w);
    /* The config stays uncompressed so an operator can read it. */
    if (rc == 0 && (rc = cf_repo_objw_write(w, text, strlen(text))) != 0)
        cf_repo_objw_abort(w);
    else if (rc == 0)
        rc = cf_repo_objw_commit(w);
    if (rc != 0) {
        char saved[2048];
        snprintf(saved, sizeof saved, "%s", cf_error());
        if (kid[0]) {
            char *k = cf_asprintf("keys/%s", kid);
            cf_store_remove(st, k);
            free(k);
        }
        if (cf_store_stat(st, CONFIG_KEY, &os) == 0)
            cf_fail("%s: a repository already exists here (object 'config' found)", st->label);
        else
            cf_fail("%s", saved);
    }
out:
    free(text);
    EVP_MD_free(md);
    if (master)
        sodium_free(master);
    cf_passphrase_free(pass, plen);
    return rc ? -1 : 0;
}

/* ---- Open / close -------------------------------------------------------- */

typedef struct key_list {
    char **v;
    size_t n;
} key_list;

typedef struct flat_ctx {
    key_list kl;
    size_t plen;
} flat_ctx;

static int collect_flat(void *ud, const char *key, const coffer_object_stat *st)
{
    (void)st;
    flat_ctx *c = ud;
    if (key[c->plen] && !strchr(key + c->plen, '/'))
        cf_strv_push(&c->kl.v, &c->kl.n, key);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int cf_repo_list_flat(cf_store *st, const char *prefix, char ***keys, size_t *n)
{
    flat_ctx c = {{0}, strlen(prefix)};
    if (cf_store_list(st, prefix, collect_flat, &c) != 0) {
        cf_strv_free(c.kl.v, c.kl.n);
        return -1;
    }
    if (c.kl.n)
        qsort(c.kl.v, c.kl.n, sizeof *c.kl.v, cmp_str);
    *keys = c.kl.v;
    *n = c.kl.n;
    return 0;
}

typedef struct stat_ctx {
    char **keys;
    coffer_object_stat *sts;
    size_t n;
} stat_ctx;

static int collect_stat(void *ud, const char *key, const coffer_object_stat *st)
{
    stat_ctx *c = ud;
    const char *name = key + strlen("index/");
    if (!*name || strchr(name, '/'))
        return 0;
    c->sts = cf_realloc(c->sts, (c->n + 1) * sizeof *c->sts);
    memset(&c->sts[c->n], 0, sizeof *c->sts);
    if (st)
        c->sts[c->n] = *st;
    size_t n = c->n;
    cf_strv_push(&c->keys, &n, key);
    c->n++;
    return 0;
}

typedef struct key_stat {
    char *key;
    coffer_object_stat st;
} key_stat;

static int cmp_key_stat(const void *a, const void *b)
{
    return strcmp(((const key_stat *)a)->key, ((const key_stat *)b)->key);
}

static int usage_cb(void *ud, const char *key, const coffer_object_stat *st)
{
    uint64_t *v = ud;
    (void)key;
    v[0]++;
    v[1] += st ? st->size : 0;
    return 0;
}

typedef struct {
    cf_store *st;
    uint64_t v[2];
    int rc;
    char err[1024];
} usage_list;

static void *list_index_usage(void *arg)
{
    usage_list *u = arg;
    u->rc = cf_store_list(u->st, "index/", usage_cb, u->v);
    if (u->rc != 0)
        snprintf(u->err, sizeof u->err, "%s", cf_error());
    return NULL;
}

int cf_repo_usage(cf_repo *r, uint64_t *sets, uint64_t *bytes)
{
    uint64_t s[2] = {0, 0}, packs = 0;
    /* Both listings at once: each is a round trip on a distant bucket. */
    usage_list ix = {.st = r->st};
    pthread_t th;
    int threaded = cf_thread_or_here(&th, list_index_usage, &ix);
    int rc = cf_store_list(r->st, "sets/", usage_cb, s);
    if (threaded)
        pthread_join(th, NULL);
    if (rc != 0)
        return -1;
    if (ix.rc != 0)
        return cf_fail("%s", ix.err);
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < r->idx.npacks; i++)
        packs += r->idx.packs[i].size;
    pthread_rwlock_unlock(&r->lock);
    *sets = s[0];
    *bytes = s[1] + ix.v[1] + packs;
    return 0;
}

/* Sorts a listing of index/ by key and trims the local cache to it. */
static void index_listed(cf_repo *r, stat_ctx *c, char ***keys, coffer_object_stat **sts, size_t *n)
{
    if (c->n) {
        key_stat *v = cf_malloc(c->n * sizeof *v);
        for (size_t i = 0; i < c->n; i++)
            v[i] = (key_stat){c->keys[i], c->sts[i]};
        qsort(v, c->n, sizeof *v, cmp_key_stat);
        for (size_t i = 0; i < c->n; i++) {
            c->keys[i] = v[i].key;
            c->sts[i] = v[i].st;
        }
        free(v);
    }
    cf_repo_cache_trim(r, CF_OBJ_INDEX, c->keys, c->n);
    *keys = c->keys;
    *sts = c->sts;
    *n = c->n;
}

struct cf_sets_ahead {
    cf_store *st;
    pthread_t th;
    char **keys;
    size_t n;
    int rc;
};

static void *sets_ahead_run(void *arg)
{
    cf_sets_ahead *a = arg;
    a->rc = cf_repo_list_flat(a->st, "sets/", &a->keys, &a->n);
    return NULL;
}

static void sets_ahead_drop(cf_repo *r)
{
    char **keys;
    size_t n;
    if (cf_repo_sets_ahead_take(r, &keys, &n) == 1)
        cf_strv_free(keys, n);
}

cf_sets_ahead *cf_sets_ahead_start(cf_store *st)
{
    cf_sets_ahead *a = cf_calloc(1, sizeof *a);
    a->st = st;
    if (pthread_create(&a->th, NULL, sets_ahead_run, a) != 0) {
        free(a);
        return NULL;
    }
    return a;
}

void cf_repo_sets_ahead_adopt(cf_repo *r, cf_sets_ahead *a)
{
    sets_ahead_drop(r);
    if (a)
        atomic_store(&r->sets_ahead, a);
}

void cf_sets_ahead_free(cf_sets_ahead *a)
{
    if (!a)
        return;
    pthread_join(a->th, NULL);
    cf_strv_free(a->keys, a->n);
    free(a);
}

void cf_repo_sets_ahead(cf_repo *r)
{
    cf_repo_sets_ahead_adopt(r, cf_sets_ahead_start(r->st));
}

int cf_repo_sets_ahead_take(cf_repo *r, char ***keys, size_t *n)
{
    cf_sets_ahead *a = atomic_exchange(&r->sets_ahead, NULL); /* whichever thread asks first */
    if (!a)
        return 0;
    pthread_join(a->th, NULL);
    int ok = a->rc == 0;
    if (ok) {
        *keys = a->keys;
        *n = a->n;
    }
    free(a);
    return ok;
}

int cf_repo_list_index_stat(cf_repo *r, char ***keys, coffer_object_stat **sts, size_t *n)
{
    stat_ctx c = {0};
    if (cf_store_list(r->st, "index/", collect_stat, &c) != 0) {
        cf_strv_free(c.keys, c.n);
        free(c.sts);
        return -1;
    }
    index_listed(r, &c, keys, sts, n);
    return 0;
}

int cf_repo_list_index(cf_repo *r, char ***keys, size_t *n)
{
    if (cf_repo_list_flat(r->st, "index/", keys, n) != 0)
        return -1;
    cf_repo_cache_trim(r, CF_OBJ_INDEX, *keys, *n);
    return 0;
}

int cf_repo_open_ex(cf_store *st, unsigned flags, cf_repo **out)
{
    cf_repo_open_opts o = {.flags = flags};
    return cf_repo_open_with(st, &o, out);
}

/* What an open asks besides the config, all at once on a distant bucket:
 * the key objects and the damage record on one thread, the index objects
 * on another, while the config is read and the key unlocked. */
typedef struct open_ahead {
    cf_store *st;
    int with_index;
    pthread_t th[2];
    int running[2];
    /* keys/ and state/damaged: the key is read as soon as keys/ is
     * listed (keys_done), while the damage record is still asked for */
    char **keys;
    size_t nkeys;
    int keys_rc, damage_rc, keys_done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char keys_err[1024];
    /* index/ */
    stat_ctx idx;
    int idx_rc;
    char idx_err[1024];
} open_ahead;

static void *ahead_keys(void *arg)
{
    open_ahead *a = arg;
    a->keys_rc = cf_repo_list_flat(a->st, "keys/", &a->keys, &a->nkeys);
    if (a->keys_rc != 0)
        snprintf(a->keys_err, sizeof a->keys_err, "%s", cf_error());
    pthread_mutex_lock(&a->mu);
    a->keys_done = 1;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    if (a->with_index) {
        coffer_object_stat os;
        a->damage_rc = cf_store_stat(a->st, CF_DAMAGE_KEY, &os);
    }
    return NULL;
}

static void *ahead_index(void *arg)
{
    open_ahead *a = arg;
    a->idx_rc = cf_store_list(a->st, "index/", collect_stat, &a->idx);
    if (a->idx_rc != 0)
        snprintf(a->idx_err, sizeof a->idx_err, "%s", cf_error());
    return NULL;
}

static void ahead_start(open_ahead *a, cf_store *st, int with_index)
{
    memset(a, 0, sizeof *a);
    a->st = st;
    a->with_index = with_index;
    a->damage_rc = -1;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    void *(*fn[2])(void *) = {ahead_keys, ahead_index};
    for (int i = 0; i < 1 + with_index; i++) {
        a->running[i] = cf_thread_or_here(&a->th[i], fn[i], a);
    }
}

static void ahead_join(open_ahead *a, int i)
{
    if (a->running[i]) {
        pthread_join(a->th[i], NULL);
        a->running[i] = 0;
    }
}

static void ahead_free(open_ahead *a)
{
    ahead_join(a, 0);
    ahead_join(a, 1);
    cf_strv_free(a->keys, a->nkeys);
    cf_strv_free(a->idx.keys, a->idx.n);
    free(a->idx.sts);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    memset(a, 0, sizeof *a);
}

/* The listing of keys/, once it is in: 0, or -1 with its error. */
static int ahead_keys_wait(open_ahead *a)
{
    pthread_mutex_lock(&a->mu);
    while (!a->keys_done)
        pthread_cond_wait(&a->cv, &a->mu);
    pthread_mutex_unlock(&a->mu);
    return a->keys_rc != 0 ? cf_fail("%s", a->keys_err) : 0;
}

/* A config that says "none" while keys/ holds keys was replaced: writing
 * plaintext into an encrypted repository is what such a swap would aim
 * at. */
static int check_no_keys(cf_repo *r, open_ahead *a)
{
    if (ahead_keys_wait(a) != 0)
        return -1;
    if (a->nkeys)
        return cf_fail("repository at %s: config says unencrypted, but keys/ holds %zu key "
                       "object(s): the config was replaced; refusing to open",
                       r->st->label, a->nkeys);
    return 0;
}

static int open_index(cf_repo *r, int skip_bad, open_ahead *a);

int cf_repo_open_with(cf_store *st, const cf_repo_open_opts *o, cf_repo **out)
{
    unsigned flags = o ? o->flags : 0;
    *out = NULL;
    /* A prepare begun early (cf_store_prepare_begin) is joined by the
     * caller: the open only reads. */
    if (!cf_store_preparing(st) && cf_store_prepare(st, 0) != 0)
        return -1;
    cf_repo *r = cf_calloc(1, sizeof *r);
    r->st = st;
    pthread_rwlock_init(&r->lock, NULL);
    pthread_mutex_init(&r->wlock, NULL);
    pthread_mutex_init(&r->cq_mu, NULL);
    pthread_cond_init(&r->cq_cv, NULL);
    cf_index_init(&r->idx);
    if (flags & CF_REPO_OPEN_SETS)
        cf_repo_sets_ahead(r);
    open_ahead a;
    ahead_start(&a, st, !(flags & CF_REPO_OPEN_NO_INDEX));
    if (!(r->sha = fetch_sha256()))
        goto fail;

    cf_buf b = {0};
    if (cf_repo_get_object(r, CF_OBJ_CONFIG, CONFIG_KEY, &b) != 0) {
        coffer_object_stat os;
        cf_buf_free(&b);
        if (cf_store_stat(st, CONFIG_KEY, &os) == COFFER_ERR_NOT_FOUND)
            cf_fail("%s: no repository here (object 'config' not found); initialise one first",
                    st->label);
        goto fail;
    }
    int rc = parse_config(r, &b);
    if (rc == 0 && o && o->on_config)
        o->on_config(o->ud);
    if (rc == 0 && r->scheme)
        rc = ahead_keys_wait(&a) != 0 ? -1
                                      : cf_key_unlock(r, &b, o ? o->pass : NULL, a.keys, a.nkeys);
    else if (rc == 0)
        rc = check_no_keys(r, &a);
    cf_buf_free(&b);
    if (rc != 0)
        goto fail;
    if (r->crypt) {
        cf_cdc_params cp = r->cdc.p;
        cp.seed = r->crypt->seed;
        if (cf_cdc_init(&r->cdc, &cp) != 0)
            goto fail;
        r->seal_overhead = CF_SEAL_OVERHEAD;
    }

    r->no_cache = (flags & CF_REPO_OPEN_NO_CACHE) != 0;
    if (!r->no_cache)
        cf_repo_cache_setup(r);
    if (!(flags & CF_REPO_OPEN_NO_INDEX) &&
        open_index(r, (flags & CF_REPO_OPEN_SKIP_BAD_INDEX) != 0, &a) != 0)
        goto fail;
    ahead_free(&a);
    *out = r;
    return 0;
fail:
    ahead_free(&a);
    cf_repo_close(r);
    return -1;
}

static int load_listed(cf_repo *r, int skip_bad, char **keys, coffer_object_stat *sts,
                       size_t nkeys);

/* The index objects and the damage record (which the index load
 * consults), as listed and asked while the key was unlocked. */
static int open_index(cf_repo *r, int skip_bad, open_ahead *a)
{
    ahead_join(a, 0);
    ahead_join(a, 1);
    if (a->damage_rc == 0)
        cf_repo_damage_load(r);
    if (a->idx_rc != 0)
        return cf_fail("%s", a->idx_err);
    char **keys;
    coffer_object_stat *sts;
    size_t nkeys;
    index_listed(r, &a->idx, &keys, &sts, &nkeys);
    memset(&a->idx, 0, sizeof a->idx); /* now load_listed's */
    return load_listed(r, skip_bad, keys, sts, nkeys);
}

int cf_repo_load_index(cf_repo *r, int skip_bad)
{
    char **keys = NULL;
    coffer_object_stat *sts = NULL;
    size_t nkeys = 0;
    if (cf_repo_list_index_stat(r, &keys, &sts, &nkeys) != 0)
        return -1;
    return load_listed(r, skip_bad, keys, sts, nkeys);
}

/* Loads the listed index objects; frees keys and sts. */
static int load_listed(cf_repo *r, int skip_bad, char **keys, coffer_object_stat *sts, size_t nkeys)
{
    int rc = 0;
    if (nkeys &&
        cf_index_load_all(r, keys, sts, nkeys, skip_bad ? &r->bad_index : NULL,
                          &r->nbad_index) != 0) {
        cf_error_prefix("cannot load the repository index");
        rc = -1;
    }
    cf_strv_free(keys, nkeys);
    free(sts);
    r->ents_open = r->ents_indexed = r->idx.n;
    r->packs_open = r->idx.npacks;
    return rc;
}

int cf_repo_open(cf_store *st, cf_repo **out)
{
    return cf_repo_open_ex(st, 0, out);
}

/* ---- Publishing packs -------------------------------------------------- */

static void session_fail(cf_repo *r);

static int commit_now(cf_repo *r, void *w, const char *key, uint32_t pno, uint64_t size)
{
    double t = cf_now();
    int rc = cf_store_commit(r->st, w);
    cf_phase_add(CF_PHASE_COMMIT, t);
    if (rc != 0) {
        cf_error_prefix("pack %s", key);
        return -1;
    }
    cf_repo_pack_committed(r, pno, size);
    atomic_fetch_add(&r->packs_written, 1);
    return 0;
}

static void *committer(void *arg)
{
    cf_repo *r = arg;
    pthread_mutex_lock(&r->cq_mu);
    for (;;) {
        while (!r->cq_n && !r->cq_stop)
            pthread_cond_wait(&r->cq_cv, &r->cq_mu);
        if (!r->cq_n)
            break;
        struct cf_pcommit c = r->cq[r->cq_head];
        r->cq_head = (r->cq_head + 1) % CF_ARRAY_LEN(r->cq);
        r->cq_n--;
        r->cq_running++;
        pthread_cond_broadcast(&r->cq_cv);
        pthread_mutex_unlock(&r->cq_mu);
        if (commit_now(r, c.w, c.key, c.pno, c.size) != 0)
            session_fail(r);
        pthread_mutex_lock(&r->cq_mu);
        r->cq_running--;
        pthread_cond_broadcast(&r->cq_cv);
    }
    pthread_mutex_unlock(&r->cq_mu);
    return NULL;
}

void cf_repo_async_commits(cf_repo *r, int n)
{
    if (n > (int)CF_ARRAY_LEN(r->cq_th))
        n = (int)CF_ARRAY_LEN(r->cq_th);
    pthread_mutex_lock(&r->cq_mu);
    while (r->cq_nthreads < n &&
           pthread_create(&r->cq_th[r->cq_nthreads], NULL, committer, r) == 0)
        r->cq_nthreads++;
    pthread_mutex_unlock(&r->cq_mu);
}

int cf_repo_commit_pack(cf_repo *r, void *w, const char *key, uint32_t pno, uint64_t size)
{
    /* Listed first: an abort removes it whether or not it got published. */
    cf_repo_sess_add(r, 1, key);
    pthread_mutex_lock(&r->cq_mu);
    if (!r->cq_nthreads) {
        pthread_mutex_unlock(&r->cq_mu);
        return commit_now(r, w, key, pno, size);
    }
    while (r->cq_n == CF_ARRAY_LEN(r->cq))
        pthread_cond_wait(&r->cq_cv, &r->cq_mu);
    struct cf_pcommit *c = &r->cq[(r->cq_head + r->cq_n) % CF_ARRAY_LEN(r->cq)];
    c->w = w;
    snprintf(c->key, sizeof c->key, "%s", key);
    c->pno = pno;
    c->size = size;
    r->cq_n++;
    pthread_cond_broadcast(&r->cq_cv);
    pthread_mutex_unlock(&r->cq_mu);
    return 0;
}

/* Wait until every queued pack is published (or failed). */
static void commits_drain(cf_repo *r)
{
    pthread_mutex_lock(&r->cq_mu);
    while (r->cq_n || r->cq_running)
        pthread_cond_wait(&r->cq_cv, &r->cq_mu);
    pthread_mutex_unlock(&r->cq_mu);
}

static void commits_stop(cf_repo *r)
{
    pthread_mutex_lock(&r->cq_mu);
    r->cq_stop = 1;
    pthread_cond_broadcast(&r->cq_cv);
    pthread_mutex_unlock(&r->cq_mu);
    for (int i = 0; i < r->cq_nthreads; i++)
        pthread_join(r->cq_th[i], NULL);
    r->cq_nthreads = 0;
    r->cq_stop = 0;
}

void cf_repo_close(cf_repo *r)
{
    if (!r)
        return;
    sets_ahead_drop(r);
    commits_stop(r);
    for (size_t i = 0; i < r->nwriters; i++)
        cf_packw_free(r->writers[i]);
    free(r->writers);
    free(r->idle);
    cf_strv_free(r->sess_packs, r->nsess_packs);
    cf_strv_free(r->sess_index, r->nsess_index);
    cf_strv_free(r->bad_index, r->nbad_index);
    free(r->fail_msg);
    free(r->cache_dir);
    cf_index_free(&r->idx);
    cf_damage_free(&r->dmg);
    EVP_MD_free(r->sha);
    cf_crypt_free(r->crypt);
    pthread_rwlock_destroy(&r->lock);
    pthread_mutex_destroy(&r->wlock);
    pthread_mutex_destroy(&r->cq_mu);
    pthread_cond_destroy(&r->cq_cv);
    free(r);
}

const cf_cdc_params *cf_repo_cdc(cf_repo *r)
{
    return &r->cdc.p;
}

const char *cf_repo_id(cf_repo *r)
{
    return r->id_hex;
}

int cf_repo_encryption(cf_repo *r)
{
    return r->crypt ? CF_REPO_ENC_REPOKEY : CF_REPO_ENC_NONE;
}

cf_store *cf_repo_store(cf_repo *r)
{
    return r->st;
}

/* ---- Chunks --------------------------------------------------------------- */

int cf_repo_has(cf_repo *r, const cf_id *id)
{
    pthread_rwlock_rdlock(&r->lock);
    int ok = 0;
    ssize_t i = cf_index_find_sound(&r->idx, id, &ok);
    pthread_rwlock_unlock(&r->lock);
    return i >= 0 && ok;
}

void cf_repo_has_lists(cf_repo *r, const cf_id *const *lists, const size_t *lens, size_t n,
                       uint8_t *all)
{
    /* Every id in list order, looked up AHEAD ids after its slot and
     * AHEAD/2 after its entry were asked for. */
    enum { AHEAD = 16 };
    size_t li[3] = {0, 0, 0}, ci[3] = {0, 0, 0}; /* list, id: slot, entry, lookup cursors */
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < n; i++)
        all[i] = 1;
    for (size_t k = 0;; k++) {
        for (int c = 0; c < 3; c++) {
            if (k < (size_t)c * AHEAD / 2)
                continue; /* this cursor starts later */
            while (li[c] < n && ci[c] >= lens[li[c]]) {
                li[c]++;
                ci[c] = 0;
            }
            if (li[c] == n)
                continue;
            const cf_id *id = &lists[li[c]][ci[c]++];
            if (c < 2) {
                cf_index_prefetch(&r->idx, id, c);
            } else if (all[li[c]]) {
                int ok = 0;
                all[li[c]] = cf_index_find_sound(&r->idx, id, &ok) >= 0 && ok;
            }
        }
        if (li[2] == n)
            break;
    }
    pthread_rwlock_unlock(&r->lock);
}

static cf_packw *writer_get(cf_repo *r)
{
    pthread_mutex_lock(&r->wlock);
    cf_packw *pw;
    if (r->nidle) {
        pw = r->idle[--r->nidle];
    } else {
        pw = cf_packw_new(r);
        r->writers = cf_realloc(r->writers, (r->nwriters + 1) * sizeof *r->writers);
        r->idle = cf_realloc(r->idle, (r->nwriters + 1) * sizeof *r->idle);
        r->writers[r->nwriters++] = pw;
    }
    pthread_mutex_unlock(&r->wlock);
    return pw;
}

static void writer_put(cf_repo *r, cf_packw *pw)
{
    pthread_mutex_lock(&r->wlock);
    r->idle[r->nidle++] = pw;
    pthread_mutex_unlock(&r->wlock);
}

/* The first failure is the cause: other threads then only see "failed",
 * and whichever error the caller reports must still name it (a full disk,
 * a lost connection). */
static void session_fail(cf_repo *r)
{
    pthread_mutex_lock(&r->wlock);
    if (!r->fail_msg)
        r->fail_msg = cf_strdup(cf_error());
    pthread_mutex_unlock(&r->wlock);
    atomic_store(&r->failed, 1);
}

static int session_failed(cf_repo *r)
{
    pthread_mutex_lock(&r->wlock);
    char *why = cf_strdup(r->fail_msg ? r->fail_msg : "unknown cause");
    pthread_mutex_unlock(&r->wlock);
    cf_fail("repository %.12s: an earlier write failed (%s); the session must be aborted",
            r->id_hex, why);
    free(why);
    return -1;
}

int cf_repo_put_chunk(cf_repo *r, const cf_id *id, const void *data, size_t len, int *added)
{
    return cf_repo_put_chunk_level(r, id, data, len, 0, added);
}

int cf_repo_put_chunk_level(cf_repo *r, const cf_id *id, const void *data, size_t len, int level,
                            int *added)
{
    if (added)
        *added = 0;
    if (atomic_load(&r->failed))
        return session_failed(r);
    if (len > UINT32_MAX)
        return cf_fail("chunk of %zu bytes is too large", len);
    if (cf_repo_has(r, id)) {
        atomic_fetch_add(&r->chunks_dup, 1);
        atomic_fetch_add(&r->bytes_dup, len);
        return 0;
    }

    cf_packw *pw = writer_get(r);
    cf_loc loc;
    if (cf_packw_add(pw, id, data, len, level, &loc) != 0) {
        session_fail(r);
        writer_put(r, pw);
        return -1;
    }
    atomic_fetch_add(&r->bytes_new_stored, loc.stored);

    pthread_rwlock_wrlock(&r->lock);
    int ins = cf_index_add(&r->idx, &loc);
    pthread_rwlock_unlock(&r->lock);
    if (ins) {
        atomic_fetch_add(&r->chunks_new, 1);
        atomic_fetch_add(&r->bytes_new_raw, len);
    } else { /* lost a race: another thread indexed it first */
        atomic_fetch_add(&r->chunks_dup, 1);
        atomic_fetch_add(&r->bytes_dup, len);
    }

    int rc = 0;
    if (cf_packw_full(pw) && cf_packw_close(pw) != 0) {
        session_fail(r);
        rc = -1;
    }
    writer_put(r, pw);
    if (rc == 0 && added)
        *added = ins;
    return rc;
}

int cf_repo_flush(cf_repo *r)
{
    if (atomic_load(&r->failed)) {
        commits_drain(r);
        return session_failed(r);
    }
    for (size_t i = 0; i < r->nwriters; i++) {
        if (cf_packw_close(r->writers[i]) != 0) {
            session_fail(r);
            commits_drain(r);
            return -1;
        }
    }
    commits_drain(r);
    if (atomic_load(&r->failed))
        return session_failed(r);
    char *key = NULL;
    pthread_rwlock_rdlock(&r->lock);
    int rc = cf_index_write_object(r, &r->idx, r->ents_indexed, &key);
    size_t n = r->idx.n;
    pthread_rwlock_unlock(&r->lock);
    if (rc != 0) {
        session_fail(r);
        return -1;
    }
    if (key) {
        cf_repo_sess_add(r, 0, key);
        free(key);
    }
    r->ents_indexed = n;
    return 0;
}

static void remove_quiet(cf_repo *r, const char *key)
{
    int rc = cf_store_remove(r->st, key);
    if (rc != 0 && rc != COFFER_ERR_NOT_FOUND)
        cf_log(CF_LOG_WARN, "abort: %s", cf_error());
}

void cf_repo_abort(cf_repo *r)
{
    /* Aborting after a failure, often for the same cause (the server is
     * gone): removals may fail too, and only warn; the message of the
     * failure that made us abort is the one to report. */
    char *saved = cf_strdup(cf_error());
    for (size_t i = 0; i < r->nwriters; i++)
        cf_packw_abort(r->writers[i]);
    commits_drain(r);
    /* Indexes first: an interrupted abort must not leave an index that
     * points into removed packs. */
    for (size_t i = 0; i < r->nsess_index; i++)
        remove_quiet(r, r->sess_index[i]);
    for (size_t i = 0; i < r->nsess_packs; i++)
        remove_quiet(r, r->sess_packs[i]);
    cf_strv_free(r->sess_index, r->nsess_index);
    cf_strv_free(r->sess_packs, r->nsess_packs);
    r->sess_index = r->sess_packs = NULL;
    r->nsess_index = r->nsess_packs = 0;
    pthread_rwlock_wrlock(&r->lock);
    cf_index_truncate(&r->idx, r->ents_open, r->packs_open);
    pthread_rwlock_unlock(&r->lock);
    r->ents_indexed = r->ents_open;
    free(r->fail_msg);
    r->fail_msg = NULL;
    atomic_store(&r->failed, 0);
    if (saved[0])
        cf_fail("%s", saved);
    free(saved);
}

int cf_repo_commit_failed(cf_repo *r, const char *key)
{
    /* The store may have published the object although the commit
     * reported an error (the server acted, then its answer was lost).
     * Removing the session's index and packs under a published manifest
     * would leave a set that names chunks no index holds. */
    char *err = cf_strdup(cf_error());
    coffer_object_stat st = {.struct_size = sizeof st};
    int rc = cf_store_stat(r->st, key, &st);
    if (rc == 0) {
        cf_log(CF_LOG_WARN, "%s was stored although its write reported an error (%s)", key, err);
        free(err);
        return 0;
    }
    if (rc == COFFER_ERR_NOT_FOUND) {
        cf_fail("%s", err);
        free(err);
        cf_repo_abort(r);
        return -1;
    }
    /* Cannot tell: keep what the session wrote. If the object is absent,
     * prune removes it as unreferenced data. */
    cf_log(CF_LOG_WARN, "cannot tell whether %s was stored (%s): the data it would reference "
           "is kept; prune removes it if it is not", key, cf_error());
    cf_fail("%s", err);
    free(err);
    cf_strv_free(r->sess_index, r->nsess_index);
    cf_strv_free(r->sess_packs, r->nsess_packs);
    r->sess_index = r->sess_packs = NULL;
    r->nsess_index = r->nsess_packs = 0;
    return -1;
}

int cf_repo_lookup(cf_repo *r, const cf_id *id, cf_loc *l, cf_pack_rec *p)
{
    pthread_rwlock_rdlock(&r->lock);
    ssize_t i = cf_index_find_get(&r->idx, id, l);
    if (i >= 0)
        *p = r->idx.packs[l->pack];
    pthread_rwlock_unlock(&r->lock);
    return i >= 0 ? 0 : -1;
}

int cf_repo_get_chunk(cf_repo *r, const cf_id *id, cf_buf *out)
{
    char hex[2 * CF_ID_LEN + 1], key[CF_PACK_KEY_LEN + 1];
    cf_loc l;
    cf_pack_rec p;
    if (cf_repo_lookup(r, id, &l, &p) != 0) {
        cf_id_hex(id, hex);
        return cf_fail("chunk %s: not in the repository index", hex);
    }
    cf_pack_key(&p.id, key);
    if (!p.size) {
        cf_id_hex(id, hex);
        return cf_fail("chunk %s in pack %s: pack not written yet (flush first)", hex, key);
    }
    cf_buf tmp = {0};
    cf_buf *dst = l.comp == CF_COMP_NONE && !r->crypt ? out : &tmp;
    /* A zero length range means "to the end" to a driver: the empty chunk
     * needs no read at all. */
    int rc = 0, attempt = 0;
again:
    rc = 0;
    if (l.stored) {
        rc = cf_store_get_range(r->st, key, l.offset, l.stored, dst);
        atomic_fetch_add(&r->bytes_read, dst->len);
        atomic_fetch_add(&r->reads, 1);
    } else
        dst->len = 0;
    if (rc == 0 && dst->len != l.stored) {
        cf_id_hex(id, hex);
        rc = cf_fail("chunk %s in pack %s: short read (%zu of %u bytes): pack truncated", hex, key,
                     dst->len, l.stored);
    } else if (rc == COFFER_ERR_NOT_FOUND) {
        cf_id_hex(id, hex);
        rc = cf_fail("chunk %s: pack %s missing", hex, key);
    } else if (rc != 0) {
        cf_id_hex(id, hex);
        cf_error_prefix("chunk %s in pack %s", hex, key);
    } else if (dst == out) {
        rc = cf_blob_verify(r, &l, key, out->data, out->len);
    } else {
        rc = cf_blob_open(r, &l, key, tmp.data, out);
    }
    /* On a storage with versions, a pack that fails may have been replaced
     * by someone else: its original version is still there (and locked on
     * an immutable target). */
    if (rc != 0 && !attempt++ && (r->st->caps & COFFER_CAP_VERSIONING) &&
        r->st->lock_mode != COFFER_LOCK_NONE) {
        char saved[1024];
        snprintf(saved, sizeof saved, "%s", cf_error());
        int pin = cf_store_pin_original(r->st, key);
        if (pin == 2)
            cf_log(CF_LOG_WARN,
                   "%s was replaced by data coffer did not write; reading its original version "
                   "(`coffer check` lists such objects)",
                   key);
        if (pin >= 1)
            goto again;
        cf_fail("%s", saved);
    }
    cf_buf_free(&tmp);
    return rc ? -1 : 0;
}

int64_t cf_repo_chunk_size(cf_repo *r, const cf_id *id)
{
    cf_loc l;
    cf_pack_rec p;
    return cf_repo_lookup(r, id, &l, &p) == 0 ? (int64_t)l.raw : -1;
}

int64_t cf_repo_chunk_stored(cf_repo *r, const cf_id *id)
{
    cf_loc l;
    cf_pack_rec p;
    return cf_repo_lookup(r, id, &l, &p) == 0 ? (int64_t)l.stored : -1;
}

const char *cf_repo_chunk_pack(cf_repo *r, const cf_id *id, char *buf, size_t len)
{
    cf_loc l;
    cf_pack_rec p;
    if (cf_repo_lookup(r, id, &l, &p) != 0 || len < CF_PACK_KEY_LEN + 1)
        return NULL;
    cf_pack_key(&p.id, buf);
    return buf;
}

typedef struct id_at {
    cf_id id;
    size_t at;
} id_at;

static int cmp_id_at(const void *a, const void *b)
{
    return memcmp(((const id_at *)a)->id.b, ((const id_at *)b)->id.b, CF_ID_LEN);
}

void cf_repo_chunk_states(cf_repo *r, const cf_id *ids, size_t n, cf_chunk_state *out)
{
    if (!n)
        return;
    id_at *v = cf_malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = (id_at){ids[i], i};
    qsort(v, n, sizeof *v, cmp_id_at);
    cf_id *sorted = cf_malloc(n * sizeof *sorted);
    for (size_t i = 0; i < n; i++)
        sorted[i] = v[i].id;
    ssize_t *pos = cf_malloc(n * sizeof *pos);
    cf_loc *locs = cf_malloc(n * sizeof *locs);
    pthread_rwlock_rdlock(&r->lock);
    cf_index_find_sorted(&r->idx, sorted, n, pos, locs);
    for (size_t i = 0; i < n; i++) {
        cf_chunk_state *o = &out[v[i].at];
        memset(o, 0, sizeof *o);
        if (pos[i] < 0)
            continue;
        const cf_pack_rec *p = &r->idx.packs[locs[i].pack];
        o->state = locs[i].bad || p->damaged ? 2 : 1;
        o->raw = locs[i].raw;
        o->pack = p->id;
    }
    pthread_rwlock_unlock(&r->lock);
    free(locs);
    free(pos);
    free(sorted);
    free(v);
}

void cf_repo_get_stats(cf_repo *r, cf_repo_stats *out)
{
    out->chunks_new = atomic_load(&r->chunks_new);
    out->chunks_dup = atomic_load(&r->chunks_dup);
    out->bytes_new_raw = atomic_load(&r->bytes_new_raw);
    out->bytes_new_stored = atomic_load(&r->bytes_new_stored);
    out->bytes_dup = atomic_load(&r->bytes_dup);
    out->packs_written = atomic_load(&r->packs_written);
    out->bytes_read = atomic_load(&r->bytes_read);
    out->reads = atomic_load(&r->reads);
}
