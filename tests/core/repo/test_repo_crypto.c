/* Encrypted repositories (scheme 1, "repokey"): round trips, keyed ids,
 * wrong passphrase, key management, passphrase sources, and every kind
 * of tampering the format must refuse: flipped bytes in blobs, tables,
 * index objects and sealed bodies; a replaced config; plaintext objects
 * slipped into an encrypted repository. */
#include "repo_test.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <zstd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/copy.h"
#include "repo/repo_int.h"

/* Cheapest Argon2id: these tests are about the format, not the KDF. */
static const cf_kdf_params FAST = {1, 8192};

static cf_passphrase_src env_src(const char *var)
{
    return (cf_passphrase_src){.env = var, .what = "test"};
}

static cf_repo *new_enc_repo(cf_store **st, mem_storage **ms, uint64_t pack_size, const char *var)
{
    *st = mem_store_new("mem", ms);
    cf_passphrase_src ps = env_src(var);
    cf_repo_params p = {.cdc = {.min_size = 2048, .avg_size = 8192, .max_size = 65536},
                        .pack_size = pack_size,
                        .encryption = CF_REPO_ENC_REPOKEY,
                        .pass = &ps,
                        .kdf = FAST};
    if (cf_repo_init(*st, &p) != 0) {
        fprintf(stderr, "init: %s\n", cf_error());
        return NULL;
    }
    cf_repo *r = NULL;
    cf_repo_open_opts o = {.pass = &ps};
    if (cf_repo_open_with(*st, &o, &r) != 0)
        fprintf(stderr, "open: %s\n", cf_error());
    return r;
}

static int reopen(cf_store *st, const char *var, unsigned flags, cf_repo **r)
{
    cf_passphrase_src ps = env_src(var);
    cf_repo_open_opts o = {.flags = flags, .pass = &ps};
    return cf_repo_open_with(st, &o, r);
}

typedef struct fx {
    cf_store *st;
    mem_storage *ms;
    cf_repo *r;
    cf_id ids[30];
    size_t lens[30];
} fx;

static void chunk(uint8_t *buf, size_t i, size_t *len)
{
    *len = i == 0 ? 0 : 3000 + i * 1499;
    if (i % 2)
        fill_text(buf, *len, i);
    else
        fill_random(buf, *len, i);
}

static int setup(void **state)
{
    setenv("T_PASS", "correct horse battery staple", 1);
    fx *f = calloc(1, sizeof *f);
    f->r = new_enc_repo(&f->st, &f->ms, 48 * 1024, "T_PASS");
    if (!f->r)
        return -1;
    uint8_t buf[60000];
    for (size_t i = 0; i < 30; i++) {
        chunk(buf, i, &f->lens[i]);
        cf_repo_hash(f->r, buf, f->lens[i], &f->ids[i]);
        if (cf_repo_put_chunk(f->r, &f->ids[i], buf, f->lens[i], NULL) != 0)
            return -1;
    }
    if (cf_repo_flush(f->r) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    cf_repo_close(f->r);
    cf_store_free(f->st);
    free(f);
    return 0;
}

static void assert_chunks(cf_repo *r, const fx *f)
{
    uint8_t buf[60000];
    cf_buf out = {0};
    for (size_t i = 0; i < 30; i++) {
        size_t len;
        chunk(buf, i, &len);
        if (cf_repo_get_chunk(r, &f->ids[i], &out) != 0)
            fail_msg("chunk %zu: %s", i, cf_error());
        assert_int_equal(out.len, len);
        assert_memory_equal(out.data, buf, len);
    }
    cf_buf_free(&out);
}

/* Round trip through a fresh open; ids are keyed, not SHA-256. */
static void test_round_trip(void **state)
{
    fx *f = *state;
    assert_int_equal(cf_repo_encryption(f->r), CF_REPO_ENC_REPOKEY);
    cf_repo *r;
    assert_int_equal(reopen(f->st, "T_PASS", 0, &r), 0);
    assert_chunks(r, f);
    uint8_t buf[60000], sha[32];
    size_t len;
    chunk(buf, 5, &len);
    unsigned n;
    EVP_Digest(buf, len, sha, &n, EVP_sha256(), NULL);
    assert_memory_not_equal(sha, f->ids[5].b, 32);
    /* The seed is not in the config: the chunker gets it from the key. */
    cf_buf cfg = {0};
    assert_int_equal(cf_store_get(f->st, "config", &cfg), 0);
    cf_buf_append(&cfg, "", 1);
    assert_null(strstr((char *)cfg.data + 8, "\"seed\""));
    assert_non_null(strstr((char *)cfg.data + 8, "\"repokey\""));
    assert_non_null(strstr((char *)cfg.data + 8, "hmac-sha256"));
    cf_buf_free(&cfg);
    assert_int_equal(cf_repo_cdc(r)->seed, cf_repo_cdc(f->r)->seed);
    /* Packs carry scheme 1 and no plaintext of a compressible chunk. */
    char *pk = mem_storage_key(f->ms, "data/", 0);
    size_t plen;
    uint8_t *p = mem_storage_get(f->ms, pk, &plen);
    assert_int_equal(p[7], CF_ENC_XCHACHA);
    assert_null(memmem(p, plen, "coffer backup", 13));
    free(p);
    free(pk);
    cf_repo_close(r);
}

/* Objects of every size around the segment boundary. */
static void test_objects(void **state)
{
    fx *f = *state;
    size_t sizes[] = {0, 1, 65535, 65536, 65537, 131072, 300000};
    uint8_t *buf = malloc(300000);
    for (size_t i = 0; i < CF_ARRAY_LEN(sizes); i++) {
        /* random: zstd keeps the body about as large as the content */
        fill_random(buf, sizes[i], i + 1);
        char key[64];
        snprintf(key, sizeof key, "sets/obj-%zu", i);
        assert_int_equal(cf_repo_put_object(f->r, CF_OBJ_MANIFEST, key, buf, sizes[i]), 0);
        cf_buf out = {0};
        if (cf_repo_get_object(f->r, CF_OBJ_MANIFEST, key, &out) != 0)
            fail_msg("%s: %s", key, cf_error());
        assert_int_equal(out.len, sizes[i]);
        if (sizes[i])
            assert_memory_equal(out.data, buf, sizes[i]);
        cf_buf_free(&out);
    }
    /* Truncated at a segment boundary, mid-segment, or renamed: refused. */
    int64_t sz = mem_storage_size(f->ms, "sets/obj-6");
    uint8_t *whole = mem_storage_get(f->ms, "sets/obj-6", &(size_t){0});
    cf_buf out = {0};
    assert_int_equal(cf_store_put(f->st, "sets/moved", whole, (size_t)sz, COFFER_WRITE_PRIVATE), 0);
    assert_int_equal(cf_repo_get_object(f->r, CF_OBJ_MANIFEST, "sets/moved", &out), -1);
    assert_error_has("authentication failed");
    assert_int_equal(mem_storage_truncate(f->ms, "sets/obj-6", (uint64_t)sz - 32 - 1000), 0);
    assert_int_equal(cf_repo_get_object(f->r, CF_OBJ_MANIFEST, "sets/obj-6", &out), -1);
    assert_error_has("sets/obj-6");
    /* Drop the whole last segment, keep a valid trailer: FINAL is missing. */
    size_t cut = 8 + 24 + 2 * (65536 + 17);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    uint8_t md[32];
    unsigned mdl;
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    EVP_DigestUpdate(c, whole, cut);
    EVP_DigestFinal_ex(c, md, &mdl);
    EVP_MD_CTX_free(c);
    memcpy(whole + cut, md, 32);
    assert_int_equal(cf_store_put(f->st, "sets/obj-6", whole, cut + 32, COFFER_WRITE_PRIVATE), 0);
    assert_int_equal(cf_repo_get_object(f->r, CF_OBJ_MANIFEST, "sets/obj-6", &out), -1);
    assert_error_has("final encrypted segment is missing");
    cf_buf_free(&out);
    free(whole);
    free(buf);
}

static size_t count_all(mem_storage *ms)
{
    return mem_storage_count(ms, "");
}

/* Wrong passphrase: a clear error naming the repository; nothing written. */
static void test_wrong_passphrase(void **state)
{
    fx *f = *state;
    size_t before = count_all(f->ms);
    setenv("T_WRONG", "Tr0ub4dor&3", 1);
    cf_repo *r = NULL;
    assert_int_equal(reopen(f->st, "T_WRONG", 0, &r), -1);
    assert_null(r);
    assert_error_has("wrong passphrase for repository at mem");
    assert_error_has("$T_WRONG");
    assert_int_equal(count_all(f->ms), before);
    unsetenv("T_UNSET");
    assert_int_equal(reopen(f->st, "T_UNSET", 0, &r), -1);
    assert_error_has("T_UNSET is not set");
    /* An unencrypted open of an encrypted repository is refused too. */
    cf_repo_close(r);
}

/* Keys: add, open with either, remove; the last and the current key stay. */
static void test_keys(void **state)
{
    fx *f = *state;
    char id[65];
    assert_int_equal(cf_repo_key_add(f->r, "second", 6, &FAST, id), 0);
    cf_key_info *v;
    size_t n;
    assert_int_equal(cf_repo_key_list(f->r, &v, &n), 0);
    assert_int_equal(n, 2);
    int current = 0;
    for (size_t i = 0; i < n; i++)
        current += v[i].current;
    assert_int_equal(current, 1);
    free(v);
    setenv("T_SECOND", "second", 1);
    cf_repo *r;
    assert_int_equal(reopen(f->st, "T_SECOND", 0, &r), 0);
    assert_string_equal(cf_repo_key_current(r), id);
    assert_chunks(r, f);
    /* From the second key: the first one can go; then the last cannot. */
    char first[65];
    snprintf(first, sizeof first, "%s", cf_repo_key_current(f->r));
    assert_int_equal(cf_repo_key_remove(r, id, 0), -1);
    assert_error_has("is the one this passphrase opens");
    assert_int_equal(cf_repo_key_remove(r, "", 0), -1);
    char prefix[9];
    snprintf(prefix, sizeof prefix, "%.8s", first);
    assert_int_equal(cf_repo_key_remove(r, prefix, 0), 0);
    assert_int_equal(cf_repo_key_remove(r, id, 1), -1);
    assert_error_has("last key");
    cf_repo_close(r);
    assert_int_equal(reopen(f->st, "T_PASS", 0, &r), -1);
    assert_error_has("wrong passphrase");
    assert_int_equal(reopen(f->st, "T_SECOND", 0, &r), 0);
    cf_repo_close(r);
}

/* A config changed after init (valid envelope, different content) no
 * longer matches the MAC the keys carry. */
static void test_config_tampered(void **state)
{
    fx *f = *state;
    cf_buf cfg = {0};
    assert_int_equal(cf_repo_get_object(f->r, CF_OBJ_CONFIG, "config", &cfg), 0);
    cf_buf_append(&cfg, "", 1);
    char *t = strstr((char *)cfg.data, "\"pack_size\": ");
    assert_non_null(t);
    t[13] = t[13] == '4' ? '5' : '4'; /* another valid pack size digit */
    assert_int_equal(cf_store_remove(f->st, "config"), 0);
    EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
    cf_objw *w;
    assert_int_equal(
        cf_objw_open_raw(f->st, md, NULL, 3, CF_OBJ_CONFIG, "config", COFFER_WRITE_PRIVATE, 0, &w),
        0);
    assert_int_equal(cf_repo_objw_write(w, cfg.data, cfg.len - 1), 0);
    assert_int_equal(cf_repo_objw_commit(w), 0);
    EVP_MD_free(md);
    cf_buf_free(&cfg);
    cf_repo *r;
    assert_int_equal(reopen(f->st, "T_PASS", 0, &r), -1);
    assert_error_has("config does not match the repository key");
}

/* A config swapped for an unencrypted one: refused while keys exist. */
static void test_config_downgrade(void **state)
{
    fx *f = *state;
    cf_store *st2 = mem_store_new("mem2", NULL);
    assert_int_equal(cf_repo_init(st2, NULL), 0);
    cf_buf cfg = {0};
    assert_int_equal(cf_store_get(st2, "config", &cfg), 0);
    cf_store_free(st2);
    assert_int_equal(cf_store_remove(f->st, "config"), 0);
    assert_int_equal(cf_store_put(f->st, "config", cfg.data, cfg.len, COFFER_WRITE_PRIVATE), 0);
    cf_buf_free(&cfg);
    cf_repo *r;
    assert_int_equal(cf_repo_open(f->st, &r), -1);
    assert_error_has("config says unencrypted, but keys/ holds");
}

/* Plaintext objects slipped into an encrypted repository are refused:
 * an index (would redirect chunks) and a manifest (would invent a set). */
static void test_plain_injection(void **state)
{
    fx *f = *state;
    EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
    cf_objw *w;
    assert_int_equal(cf_objw_open_raw(f->st, md, NULL, 3, CF_OBJ_MANIFEST, "sets/evil",
                                      COFFER_WRITE_PRIVATE, 1, &w),
                     0);
    assert_int_equal(cf_repo_objw_write(w, "{}\n", 3), 0);
    assert_int_equal(cf_repo_objw_commit(w), 0);
    cf_buf out = {0};
    assert_int_equal(cf_repo_get_object(f->r, CF_OBJ_MANIFEST, "sets/evil", &out), -1);
    assert_error_has("object is not encrypted, but the repository is");
    assert_int_equal(cf_objw_open_raw(f->st, md, NULL, 3, CF_OBJ_INDEX, "index/evil",
                                      COFFER_WRITE_PRIVATE, 1, &w),
                     0);
    assert_int_equal(cf_repo_objw_commit(w), 0);
    EVP_MD_free(md);
    cf_repo *r;
    assert_int_equal(reopen(f->st, "T_PASS", 0, &r), -1);
    assert_error_has("index/evil");
    cf_buf_free(&out);
}

/* Damage: a blob byte (that chunk only), a table byte (the pack's table),
 * an index byte (open names it; the skip mode opens). */
static void test_damage(void **state)
{
    fx *f = *state;
    char pack[128], hex[65];
    assert_non_null(cf_repo_chunk_pack(f->r, &f->ids[7], pack, sizeof pack));
    /* find the blob through the index entry: offset is in the handle */
    cf_loc l;
    ssize_t k = cf_index_find(&f->r->idx, &f->ids[7]);
    assert_true(k >= 0);
    cf_index_get(&f->r->idx, (size_t)k, &l);
    assert_int_equal(l.stored, (l.comp ? l.stored : l.raw + CF_SEAL_OVERHEAD));
    assert_int_equal(mem_storage_flip(f->ms, pack, l.offset + l.stored / 2), 0);
    cf_buf out = {0};
    assert_int_equal(cf_repo_get_chunk(f->r, &f->ids[7], &out), -1);
    cf_id_hex(&f->ids[7], hex);
    assert_error_has(hex);
    assert_error_has(pack);
    assert_error_has("authentication failed");
    long p = cf_repo_check_pack(f->r, pack, NULL, NULL);
    assert_true(p >= 1);
    /* another chunk of the same pack still reads */
    for (size_t i = 1; i < 30; i++) {
        char other[128];
        if (i != 7 && cf_repo_chunk_pack(f->r, &f->ids[i], other, sizeof other) &&
            strcmp(other, pack) == 0) {
            assert_int_equal(cf_repo_get_chunk(f->r, &f->ids[i], &out), 0);
            break;
        }
    }
    /* table */
    int64_t sz = mem_storage_size(f->ms, pack);
    assert_int_equal(mem_storage_flip(f->ms, pack, (uint64_t)sz - 40 - 20), 0);
    cf_loc *ents;
    size_t n;
    assert_int_equal(cf_pack_read_table(f->r, pack, (uint64_t)sz, &ents, &n), -1);
    assert_error_has("authentication failed");
    /* index */
    char *ik = mem_storage_key(f->ms, "index/", 0);
    assert_int_equal(mem_storage_flip(f->ms, ik, 8 + 24 + 30), 0);
    cf_repo *r;
    assert_int_equal(reopen(f->st, "T_PASS", 0, &r), -1);
    assert_error_has(ik);
    assert_int_equal(reopen(f->st, "T_PASS", CF_REPO_OPEN_SKIP_BAD_INDEX, &r), 0);
    cf_repo_close(r);
    free(ik);
    cf_buf_free(&out);
}

/* The index can be rebuilt from sealed pack tables alone. */
static void test_rebuild(void **state)
{
    fx *f = *state;
    char *ik = mem_storage_key(f->ms, "index/", 0);
    assert_int_equal(mem_storage_drop(f->ms, ik), 0);
    free(ik);
    cf_repo *r;
    assert_int_equal(reopen(f->st, "T_PASS", 0, &r), 0);
    assert_int_equal(cf_repo_has(r, &f->ids[3]), 0);
    assert_int_equal(cf_repo_rebuild_index(r), 0);
    assert_chunks(r, f);
    cf_repo_close(r);
}

/* Copy between repositories compares ids only under the same id key. */
static void test_id_schemes(void **state)
{
    fx *f = *state;
    cf_store *s2, *s3;
    mem_storage *m2, *m3;
    cf_repo *e2 = new_enc_repo(&s2, &m2, 0, "T_PASS");
    cf_repo *p3 = new_repo(&s3, &m3, 0);
    assert_non_null(e2);
    assert_non_null(p3);
    assert_int_equal(cf_repo_id_scheme_equal(f->r, f->r), 1);
    assert_int_equal(cf_repo_id_scheme_equal(f->r, e2), 0);
    assert_int_equal(cf_repo_id_scheme_equal(f->r, p3), 0);
    assert_int_equal(cf_repo_id_scheme_equal(p3, p3), 1);
    cf_id a, b;
    cf_repo_hash(f->r, "x", 1, &a);
    cf_repo_hash(e2, "x", 1, &b);
    assert_memory_not_equal(a.b, b.b, 32);
    cf_repo_close(e2);
    cf_repo_close(p3);
    cf_store_free(s2);
    cf_store_free(s3);
}

/* Passphrase sources: file (newline dropped), command, env; failures. */
static void test_sources(void **state)
{
    (void)state;
    char dir[] = "/tmp/coffer-pass-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char file[128];
    snprintf(file, sizeof file, "%s/pass", dir);
    FILE *fp = fopen(file, "w");
    fputs("from file\n", fp);
    fclose(fp);
    chmod(file, 0600);
    char *p;
    size_t n;
    cf_passphrase_src s = {.file = file};
    assert_int_equal(cf_passphrase_read(&s, &p, &n), 0);
    assert_int_equal(n, 9);
    assert_memory_equal(p, "from file", 9);
    cf_passphrase_free(p, n);
    cf_passphrase_src c = {.command = "printf 'from command\\n'"};
    assert_true(cf_passphrase_available(&c));
    assert_int_equal(cf_passphrase_read(&c, &p, &n), 0);
    assert_int_equal(n, 12);
    assert_memory_equal(p, "from command", 12);
    cf_passphrase_free(p, n);
    cf_passphrase_src bad = {.command = "exit 3", .what = "target 't'"};
    assert_int_equal(cf_passphrase_read(&bad, &p, &n), -1);
    assert_error_has("target 't': passphrase_command");
    assert_error_has("exit status 3");
    cf_passphrase_src empty = {.command = "echo"};
    assert_int_equal(cf_passphrase_read(&empty, &p, &n), -1);
    assert_error_has("empty");
    cf_passphrase_src missing = {.file = "/nonexistent/pass"};
    assert_int_equal(cf_passphrase_read(&missing, &p, &n), -1);
    assert_error_has("/nonexistent/pass");
    unsetenv("T_NOPE");
    cf_passphrase_src none = {.env = "T_NOPE"};
    assert_false(cf_passphrase_available(&none));
    /* init without a passphrase leaves nothing behind */
    mem_storage *ms;
    cf_store *st = mem_store_new("mem", &ms);
    cf_repo_params prm = {.encryption = CF_REPO_ENC_REPOKEY, .pass = &none, .kdf = FAST};
    assert_int_equal(cf_repo_init(st, &prm), -1);
    assert_error_has("T_NOPE");
    assert_int_equal(mem_storage_count(ms, ""), 0);
    cf_store_free(st);
    unlink(file);
    rmdir(dir);
}

/* cf_seal / cf_unseal are libsodium's XChaCha20-Poly1305-IETF, byte for
 * byte (a reader may use crypto_aead_xchacha20poly1305_ietf_decrypt). */
static void test_xchacha_compat(void **state)
{
    (void)state;
    uint8_t master[CF_MASTER_LEN];
    for (size_t i = 0; i < sizeof master; i++)
        master[i] = (uint8_t)(i * 7 + 1);
    cf_crypt *c;
    assert_int_equal(cf_crypt_new(master, &c), 0);
    size_t sizes[] = {0, 1, 63, 64, 65, 1000, 65536, 1 << 20};
    uint8_t *m = malloc(1 << 20), *x = malloc((1 << 20) + 64);
    uint8_t ad[32];
    memset(ad, 0x5a, sizeof ad);
    for (size_t i = 0; i < CF_ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        fill_random(m, n, i + 3);
        cf_buf sealed = {0}, opened = {0};
        cf_seal(c, ad, sizeof ad, m, n, &sealed);
        assert_int_equal(sealed.len, n + CF_SEAL_OVERHEAD);
        unsigned long long ml = 0;
        assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(x, &ml, NULL, sealed.data + 24,
                                                                    sealed.len - 24, ad, sizeof ad,
                                                                    sealed.data, c->enc),
                         0);
        assert_int_equal(ml, n);
        if (n)
            assert_memory_equal(x, m, n);
        /* and libsodium's output opens with cf_unseal */
        uint8_t nonce[24];
        randombytes_buf(nonce, sizeof nonce);
        memcpy(x, nonce, 24);
        unsigned long long cl = 0;
        crypto_aead_xchacha20poly1305_ietf_encrypt(x + 24, &cl, m, n, ad, sizeof ad, NULL, nonce,
                                                   c->enc);
        assert_int_equal(cf_unseal(c, ad, sizeof ad, x, 24 + cl, &opened), 0);
        assert_int_equal(opened.len, n);
        if (n)
            assert_memory_equal(opened.data, m, n);
        /* wrong AD, flipped tag, truncated: refused */
        assert_int_equal(cf_unseal(c, ad, sizeof ad - 1, x, 24 + cl, &opened), -1);
        x[24 + cl - 1] ^= 1;
        assert_int_equal(cf_unseal(c, ad, sizeof ad, x, 24 + cl, &opened), -1);
        assert_int_equal(cf_unseal(c, ad, sizeof ad, x, 39, &opened), -1);
        cf_buf_free(&sealed);
        cf_buf_free(&opened);
    }
    free(m);
    free(x);
    cf_crypt_free(c);
}

/* The layouts of docs/repository-format.md 2.1, read the way an outside
 * reader would: libsodium calls on bytes, the master key taken from the
 * handle (a reader gets it by unwrapping a key object, also done here). */
static void test_outside_reader(void **state)
{
    (void)state;
    setenv("T_OUT", "outside", 1);
    cf_store *st;
    mem_storage *ms;
    cf_repo *r = new_enc_repo(&st, &ms, 0, "T_OUT");
    assert_non_null(r);
    cf_id id;
    cf_repo_hash(r, "hello", 5, &id);
    assert_int_equal(cf_repo_put_chunk(r, &id, "hello", 5, NULL), 0);
    assert_int_equal(cf_repo_flush(r), 0);
    /* the id is HMAC-SHA256(K_id, "hello") */
    uint8_t mac[32];
    unsigned ml = 0;
    HMAC(EVP_sha256(), r->crypt->id, 32, (const uint8_t *)"hello", 5, mac, &ml);
    assert_memory_equal(mac, id.b, 32);
    /* unwrap the key object with libsodium and Argon2id */
    char *kk = mem_storage_key(ms, "keys/", 0);
    size_t kl;
    uint8_t *ko = mem_storage_get(ms, kk, &kl);
    assert_int_equal(ko[5], 5);
    assert_int_equal(ko[7], 0);
    json_t *kj = json_loadb((const char *)ko + 8, kl - 40, 0, NULL);
    assert_non_null(kj);
    uint8_t salt[16], nonce[24], wrapped[120], kek[32], master[104], ad[64];
    json_t *kdf = json_object_get(kj, "kdf"), *wrap = json_object_get(kj, "wrap");
    assert_int_equal(cf_unhex(json_string_value(json_object_get(kdf, "salt")), salt, 16), 0);
    assert_int_equal(cf_unhex(json_string_value(json_object_get(wrap, "nonce")), nonce, 24), 0);
    assert_int_equal(cf_unhex(json_string_value(json_object_get(wrap, "ciphertext")), wrapped, 120),
                     0);
    assert_int_equal(
        crypto_pwhash(kek, 32, "outside", 7, salt,
                      (unsigned long long)json_integer_value(json_object_get(kdf, "opslimit")),
                      (size_t)json_integer_value(json_object_get(kdf, "memlimit")),
                      crypto_pwhash_ALG_ARGON2ID13),
        0);
    assert_int_equal(cf_unhex(json_string_value(json_object_get(kj, "repository")), ad, 32), 0);
    assert_int_equal(cf_unhex(kk + 5, ad + 32, 32), 0);
    unsigned long long mlen = 0;
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(master, &mlen, NULL, wrapped, 120,
                                                                ad, 64, nonce, kek),
                     0);
    assert_memory_equal(master, r->crypt->enc, 32);
    assert_memory_equal(master + 32, r->crypt->id, 32);
    json_decref(kj);
    free(ko);
    free(kk);
    /* the pack of section 2.1's example: 185 bytes */
    char *pk = mem_storage_key(ms, "data/", 0);
    size_t len;
    uint8_t *p = mem_storage_get(ms, pk, &len);
    assert_int_equal(len, 185);
    const uint8_t hdr[8] = {0x43, 0x4f, 0x46, 0x52, 1, 2, 0, 1};
    assert_memory_equal(p, hdr, 8);
    uint32_t tlen = (uint32_t)p[len - 40] | (uint32_t)p[len - 39] << 8;
    assert_int_equal(tlen, 92);
    assert_int_equal(p[len - 36], 1);
    uint8_t pid[32], table[52], plain[5];
    assert_int_equal(cf_unhex(pk + 8, pid, 32), 0);
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(table, &mlen, NULL, p + 53 + 24,
                                                                92 - 24, pid, 32, p + 53, master),
                     0);
    assert_int_equal(mlen, 52);
    assert_memory_equal(table, id.b, 32);
    assert_int_equal(table[32], 0);  /* raw */
    assert_int_equal(table[36], 8);  /* offset */
    assert_int_equal(table[44], 45); /* stored */
    assert_int_equal(table[48], 5);  /* raw length */
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &mlen, NULL, p + 8 + 24, 21,
                                                                id.b, 32, p + 8, master),
                     0);
    assert_memory_equal(plain, "hello", 5);
    free(p);
    free(pk);
    /* an encrypted envelope body: secretstream, AD = header | key */
    assert_int_equal(cf_repo_put_object(r, CF_OBJ_MANIFEST, "sets/x", "{}\n", 3), 0);
    uint8_t *o = mem_storage_get(ms, "sets/x", &len);
    crypto_secretstream_xchacha20poly1305_state ss;
    assert_int_equal(crypto_secretstream_xchacha20poly1305_init_pull(&ss, o + 8, master), 0);
    uint8_t sad[8 + 6], body[64], tag = 9;
    memcpy(sad, o, 8);
    memcpy(sad + 8, "sets/x", 6);
    size_t clen = len - 8 - 24 - 32;
    assert_int_equal(crypto_secretstream_xchacha20poly1305_pull(&ss, body, &mlen, &tag, o + 32,
                                                                clen, sad, sizeof sad),
                     0);
    assert_int_equal(tag, crypto_secretstream_xchacha20poly1305_TAG_FINAL);
    size_t n = ZSTD_decompress(plain, sizeof plain, body, (size_t)mlen);
    assert_int_equal(n, 3);
    assert_memory_equal(plain, "{}\n", 3);
    free(o);
    sodium_memzero(master, sizeof master);
    sodium_memzero(kek, sizeof kek);
    cf_repo_close(r);
    cf_store_free(st);
}

/* After a failed write, every later call names the first failure's cause
 * (a full disk), not just "an earlier write failed". */
static void test_first_failure_named(void **state)
{
    fx *f = *state;
    uint8_t buf[20000];
    mem_storage_fail_writes_after(f->ms, 1000);
    int failed = 0;
    char first[1024] = "";
    for (uint64_t i = 0; i < 8 && failed < 2; i++) {
        fill_random(buf, sizeof buf, 1000 + i);
        cf_id id;
        cf_repo_hash(f->r, buf, sizeof buf, &id);
        if (cf_repo_put_chunk(f->r, &id, buf, sizeof buf, NULL) != 0) {
            if (!failed++)
                snprintf(first, sizeof first, "%s", cf_error());
            else
                assert_error_has("an earlier write failed");
        }
    }
    assert_int_equal(failed, 2);
    assert_true(first[0]);
    assert_error_has(strstr(first, "mem") ? strstr(first, "mem") : first);
    assert_int_equal(cf_repo_flush(f->r), -1);
    assert_error_has("an earlier write failed (");
    mem_storage_fail_writes_after(f->ms, UINT64_MAX);
    cf_repo_abort(f->r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_objects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_passphrase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_tampered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_downgrade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_injection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild, setup, teardown),
        cmocka_unit_test_setup_teardown(test_id_schemes, setup, teardown),
        cmocka_unit_test(test_sources),
        cmocka_unit_test(test_xchacha_compat),
        cmocka_unit_test(test_outside_reader),
        cmocka_unit_test_setup_teardown(test_first_failure_named, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
