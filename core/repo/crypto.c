/*
 * Encryption at rest (scheme 1, "repokey"; docs/repository-format.md 2.1):
 * the master key, blob and table sealing, keyed chunk ids, and the keys/
 * objects that hold the master key wrapped under passphrase-derived keys.
 *
 * libsodium provides XChaCha20-Poly1305 (192-bit random nonces: no nonce
 * bookkeeping across writers, hosts or repacks) and Argon2id; chunk ids
 * use HMAC-SHA256 on OpenSSL's SHA-NI code, as fast as the plain SHA-256
 * ids of an unencrypted repository.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/hmac.h>
#include <sodium.h>

#include "repo/repo_int.h"

_Static_assert(CF_BLOB_NONCE_LEN == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "nonce");
_Static_assert(CF_BLOB_TAG_LEN == crypto_aead_xchacha20poly1305_ietf_ABYTES, "tag");
_Static_assert(CF_KEY_LEN == crypto_aead_xchacha20poly1305_ietf_KEYBYTES, "key");

/* Default Argon2id cost: 4 passes over 32 MiB (about 0.15 s on a current
 * core; above OWASP's 19 MiB x 2 baseline). 32 MiB rather than 64 keeps a
 * whole backup under 64 MiB of peak memory. Readers accept what the key
 * records, up to these bounds, so a forged key object cannot make coffer
 * allocate without limit. */
#define KDF_OPS_DEFAULT 4ull
#define KDF_MEM_DEFAULT (32ull << 20)
#define KDF_OPS_MAX 64ull
#define KDF_MEM_MAX (4ull << 30)
#define KDF_SALT_LEN 16 /* crypto_pwhash_SALTBYTES */
#define PASS_MAX (64u << 10)

static int sodium_ready(void)
{
    if (sodium_init() < 0)
        return cf_fail("libsodium failed to initialise");
    return 0;
}

/* ---- Master key -------------------------------------------------------- */

void cf_crypt_generate(uint8_t master[CF_MASTER_LEN])
{
    randombytes_buf(master, CF_MASTER_LEN);
    /* A zero chunker seed means "pick one" elsewhere: never store it. */
    while (cf_get64(master + 96) == 0)
        randombytes_buf(master + 96, 8);
}

static EVP_MD_CTX *hmac_pad(const EVP_MD *md, const uint8_t key[CF_KEY_LEN], uint8_t x)
{
    uint8_t pad[64];
    memset(pad, x, sizeof pad);
    for (size_t i = 0; i < CF_KEY_LEN; i++)
        pad[i] ^= key[i];
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || !EVP_DigestInit_ex(c, md, NULL) || !EVP_DigestUpdate(c, pad, sizeof pad)) {
        EVP_MD_CTX_free(c);
        c = NULL;
    }
    sodium_memzero(pad, sizeof pad);
    return c;
}

int cf_crypt_new(const uint8_t master[CF_MASTER_LEN], cf_crypt **out)
{
    if (sodium_ready() != 0)
        return -1;
    cf_crypt *c = sodium_malloc(sizeof *c);
    if (!c)
        return cf_fail("cannot allocate locked memory for the repository key");
    memset(c, 0, sizeof *c);
    memcpy(c->enc, master, CF_KEY_LEN);
    memcpy(c->id, master + 32, CF_KEY_LEN);
    memcpy(c->mac, master + 64, CF_KEY_LEN);
    c->seed = cf_get64(master + 96);
    c->sha = EVP_MD_fetch(NULL, "SHA256", NULL);
    c->chacha = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
    if (!c->sha || !c->chacha) {
        cf_crypt_free(c);
        return cf_fail("OpenSSL: SHA-256 or ChaCha20-Poly1305 is not available");
    }
    c->hmac_in = hmac_pad(c->sha, c->id, 0x36);
    c->hmac_out = hmac_pad(c->sha, c->id, 0x5c);
    if (!c->hmac_in || !c->hmac_out) {
        cf_crypt_free(c);
        return cf_fail("OpenSSL: cannot initialise HMAC-SHA256");
    }
    *out = c;
    return 0;
}

void cf_crypt_master(const cf_crypt *c, uint8_t master[CF_MASTER_LEN])
{
    memcpy(master, c->enc, CF_KEY_LEN);
    memcpy(master + 32, c->id, CF_KEY_LEN);
    memcpy(master + 64, c->mac, CF_KEY_LEN);
    cf_put64(master + 96, c->seed);
}

void cf_crypt_free(cf_crypt *c)
{
    if (!c)
        return;
    EVP_MD_CTX_free(c->hmac_in);
    EVP_MD_CTX_free(c->hmac_out);
    EVP_MD_free(c->sha);
    EVP_CIPHER_free(c->chacha);
    sodium_free(c); /* zeroes */
}

void cf_crypt_chunk_id(const cf_crypt *c, const void *data, size_t len, cf_id *out)
{
    uint8_t inner[32];
    unsigned n = 0;
    EVP_MD_CTX *x = EVP_MD_CTX_new();
    /* Copying the precomputed pad states is read-only on them: thread safe. */
    if (!x || !EVP_MD_CTX_copy_ex(x, c->hmac_in) || !EVP_DigestUpdate(x, data, len) ||
        !EVP_DigestFinal_ex(x, inner, &n) || !EVP_MD_CTX_copy_ex(x, c->hmac_out) ||
        !EVP_DigestUpdate(x, inner, sizeof inner) || !EVP_DigestFinal_ex(x, out->b, &n)) {
        cf_log(CF_LOG_ERROR, "HMAC-SHA256 failed");
        abort(); /* never hand out a made-up id */
    }
    EVP_MD_CTX_free(x);
}

void cf_crypt_config_mac(const cf_crypt *c, const void *data, size_t len, uint8_t out[32])
{
    unsigned n = 0;
    if (!HMAC(c->sha, c->mac, CF_KEY_LEN, data, len, out, &n)) {
        cf_log(CF_LOG_ERROR, "HMAC-SHA256 failed");
        abort();
    }
}

/* XChaCha20-Poly1305-IETF exactly as libsodium defines it (subkey =
 * HChaCha20(key, nonce[0..16)), then ChaCha20-Poly1305-IETF with nonce
 * 0^4 | nonce[16..24)), with the bulk done by OpenSSL, whose vectorised
 * ChaCha20-Poly1305 is about half again as fast as libsodium's on the
 * blob sizes coffer uses. The unit tests check both ways against
 * crypto_aead_xchacha20poly1305_ietf_*. */
static int xchacha(const cf_crypt *c, int enc, const uint8_t nonce[CF_BLOB_NONCE_LEN],
                   const uint8_t *ad, size_t adlen, const uint8_t *in, size_t len, uint8_t *out,
                   uint8_t tag[CF_BLOB_TAG_LEN])
{
    uint8_t sub[CF_KEY_LEN], n12[12] = {0};
    crypto_core_hchacha20(sub, nonce, c->enc, NULL);
    memcpy(n12 + 4, nonce + 16, 8);
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int ok = x && EVP_CipherInit_ex(x, c->chacha, NULL, NULL, NULL, enc) &&
             EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) &&
             EVP_CipherInit_ex(x, NULL, NULL, sub, n12, enc);
    sodium_memzero(sub, sizeof sub);
    int l = 0;
    if (ok && adlen)
        ok = EVP_CipherUpdate(x, NULL, &l, ad, (int)adlen);
    /* EVP lengths are ints: feed large inputs in pieces */
    for (size_t off = 0; ok && off < len;) {
        size_t k = len - off < (1u << 30) ? len - off : (1u << 30);
        ok = EVP_CipherUpdate(x, out + off, &l, in + off, (int)k);
        off += k;
    }
    if (ok && !enc)
        ok = EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, CF_BLOB_TAG_LEN, tag);
    if (ok)
        ok = EVP_CipherFinal_ex(x, out + len, &l) > 0;
    if (ok && enc)
        ok = EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, CF_BLOB_TAG_LEN, tag);
    EVP_CIPHER_CTX_free(x);
    return ok ? 0 : -1;
}

void cf_seal(const cf_crypt *c, const uint8_t *ad, size_t adlen, const void *in, size_t len,
             cf_buf *out)
{
    out->len = 0;
    cf_buf_reserve(out, len + CF_SEAL_OVERHEAD);
    randombytes_buf(out->data, CF_BLOB_NONCE_LEN);
    if (xchacha(c, 1, out->data, ad, adlen, in, len, out->data + CF_BLOB_NONCE_LEN,
                out->data + CF_BLOB_NONCE_LEN + len) != 0) {
        /* Only allocation failure gets here: never write plaintext instead. */
        cf_log(CF_LOG_ERROR, "OpenSSL: ChaCha20-Poly1305 failed");
        abort();
    }
    out->len = len + CF_SEAL_OVERHEAD;
}

int cf_unseal_inplace(const cf_crypt *c, const uint8_t *ad, size_t adlen, uint8_t *in, size_t len)
{
    if (len < CF_SEAL_OVERHEAD)
        return -1;
    size_t mlen = len - CF_SEAL_OVERHEAD;
    uint8_t tag[CF_BLOB_TAG_LEN];
    memcpy(tag, in + len - CF_BLOB_TAG_LEN, sizeof tag);
    uint8_t *m = in + CF_BLOB_NONCE_LEN;
    if (xchacha(c, 0, in, ad, adlen, m, mlen, m, tag) != 0) {
        sodium_memzero(m, mlen);
        return -1;
    }
    return 0;
}

int cf_unseal(const cf_crypt *c, const uint8_t *ad, size_t adlen, const uint8_t *in, size_t len,
              cf_buf *out)
{
    out->len = 0;
    if (len < CF_SEAL_OVERHEAD)
        return -1;
    size_t mlen = len - CF_SEAL_OVERHEAD;
    cf_buf_reserve(out, mlen + 1);
    uint8_t tag[CF_BLOB_TAG_LEN];
    memcpy(tag, in + len - CF_BLOB_TAG_LEN, sizeof tag);
    if (xchacha(c, 0, in, ad, adlen, in + CF_BLOB_NONCE_LEN, mlen, out->data, tag) != 0) {
        sodium_memzero(out->data, mlen);
        return -1;
    }
    out->len = mlen;
    return 0;
}

/* ---- Passphrases ----------------------------------------------------------- */

static char *credential_path(void);

static const char *src_env(const cf_passphrase_src *s)
{
    return s && s->env && *s->env ? s->env : "COFFER_PASSPHRASE";
}

int cf_passphrase_available(const cf_passphrase_src *s)
{
    if (s && ((s->command && *s->command) || (s->file && *s->file)))
        return 1;
    const char *v = getenv(src_env(s));
    if (v && *v)
        return 1;
    char *cred = credential_path();
    free(cred);
    return cred != NULL;
}

const char *cf_passphrase_describe(const cf_passphrase_src *s, char *buf, size_t len)
{
    if (s && s->command && *s->command)
        snprintf(buf, len, "passphrase_command");
    else if (s && s->file && *s->file)
        snprintf(buf, len, "passphrase_file %s", s->file);
    else {
        const char *v = getenv(src_env(s));
        char *cred = v && *v ? NULL : credential_path();
        if (cred)
            snprintf(buf, len, "systemd credential %s", cred);
        else if ((!v || !*v) && isatty(STDIN_FILENO))
            snprintf(buf, len, "the terminal");
        else
            snprintf(buf, len, "$%s", src_env(s));
        free(cred);
    }
    return buf;
}

void cf_passphrase_free(char *pass, size_t len)
{
    (void)len;
    if (pass)
        sodium_free(pass); /* zeroes */
}

/* Move bytes into locked memory, dropping one trailing newline (what
 * `echo` and editors add to a file or a command's output). */
static int pass_take(const char *what, uint8_t *b, size_t n, char **pass, size_t *len)
{
    if (n && b[n - 1] == '\n')
        n--;
    if (n && b[n - 1] == '\r')
        n--;
    if (n == 0)
        return cf_fail("%s: the passphrase is empty", what);
    char *p = sodium_malloc(n + 1);
    if (!p)
        return cf_fail("cannot allocate locked memory for the passphrase");
    memcpy(p, b, n);
    p[n] = 0;
    *pass = p;
    *len = n;
    return 0;
}

static int read_stream(FILE *f, cf_buf *b)
{
    uint8_t tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (b->len + n > PASS_MAX) {
            sodium_memzero(tmp, sizeof tmp);
            return 1;
        }
        cf_buf_append(b, tmp, n);
    }
    sodium_memzero(tmp, sizeof tmp);
    return ferror(f) ? -1 : 0;
}

/* $CREDENTIALS_DIRECTORY/passphrase: how a systemd unit hands coffer its
 * passphrase (LoadCredential=passphrase:FILE) without an environment
 * variable. malloc'd path, or NULL when there is none. */
static char *credential_path(void)
{
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    if (!dir || !*dir)
        return NULL;
    char *p = cf_asprintf("%s/passphrase", dir);
    if (access(p, R_OK) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

static int read_pass_file(const char *who, const char *kind, const char *path, cf_buf *b,
                          char **pass, size_t *len)
{
    char what[1024];
    snprintf(what, sizeof what, "%s: %s %s", who, kind, path);
    FILE *f = fopen(path, "rb");
    if (!f)
        return cf_fail_errno("%s: cannot open", what);
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && (sb.st_mode & 077))
        cf_log(CF_LOG_WARN, "%s is readable by other users (mode %03o); chmod 600 it", what,
               (unsigned)(sb.st_mode & 0777));
    int r = read_stream(f, b);
    fclose(f);
    if (r > 0)
        return cf_fail("%s: longer than %u bytes", what, PASS_MAX);
    if (r < 0)
        return cf_fail("%s: read error", what);
    return pass_take(what, b->data, b->len, pass, len);
}

/* On a terminal with no other source: ask, without echo. */
static int prompt_pass(const char *who, cf_buf *b, char **pass, size_t *len)
{
    FILE *tty = fopen("/dev/tty", "r+");
    if (!tty)
        return cf_fail_errno("%s: no passphrase source and cannot open the terminal", who);
    struct termios old, quiet;
    int have = tcgetattr(fileno(tty), &old) == 0;
    if (have) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
        tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
    }
    fprintf(tty, "coffer: passphrase for %s: ", who);
    fflush(tty);
    int c, rc = 0;
    while ((c = fgetc(tty)) != EOF && c != '\n') {
        if (b->len >= PASS_MAX) {
            rc = cf_fail("%s: passphrase longer than %u bytes", who, PASS_MAX);
            break;
        }
        uint8_t ch = (uint8_t)c;
        cf_buf_append(b, &ch, 1);
    }
    if (have)
        tcsetattr(fileno(tty), TCSAFLUSH, &old);
    fputc('\n', tty);
    fclose(tty);
    if (rc != 0)
        return rc;
    return pass_take(who, b->data, b->len, pass, len);
}

int cf_passphrase_read(const cf_passphrase_src *s, char **pass, size_t *len)
{
    *pass = NULL;
    *len = 0;
    if (sodium_ready() != 0)
        return -1;
    const char *who = s && s->what ? s->what : "repository";
    cf_buf b = {0};
    int rc = -1;
    if (s && s->command && *s->command) {
        char what[256];
        snprintf(what, sizeof what, "%s: passphrase_command", who);
        fflush(NULL);
        FILE *f = popen(s->command, "r");
        if (!f)
            return cf_fail_errno("%s: cannot run `%s`", what, s->command);
        int r = read_stream(f, &b);
        int st = pclose(f);
        if (r > 0)
            cf_fail("%s: output longer than %u bytes", what, PASS_MAX);
        else if (r < 0)
            cf_fail("%s: cannot read its output", what);
        else if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            cf_fail("%s: `%s` failed (exit status %d)", what, s->command,
                    st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        else
            rc = pass_take(what, b.data, b.len, pass, len);
    } else if (s && s->file && *s->file) {
        rc = read_pass_file(who, "passphrase_file", s->file, &b, pass, len);
    } else {
        const char *name = src_env(s);
        const char *v = getenv(name);
        char what[256];
        snprintf(what, sizeof what, "%s: $%s", who, name);
        char *cred = (!v || !*v) ? credential_path() : NULL;
        if (cred) {
            rc = read_pass_file(who, "systemd credential", cred, &b, pass, len);
            free(cred);
        } else if ((!v || !*v) && isatty(STDIN_FILENO)) {
            rc = prompt_pass(who, &b, pass, len);
        } else if (!v || !*v)
            cf_fail("%s: no passphrase: environment variable %s is %s (or set passphrase_file / "
                    "passphrase_command on the target)",
                    who, name, v ? "empty" : "not set");
        else
            rc = pass_take(what, (uint8_t *)v, strlen(v), pass, len);
    }
    if (b.data)
        sodium_memzero(b.data, b.cap);
    cf_buf_free(&b);
    return rc;
}

/* ---- Key objects ------------------------------------------------------------ */

typedef struct key_obj {
    char id[2 * CF_ID_LEN + 1];
    char repo[2 * CF_ID_LEN + 1];
    char created[32], host[64];
    uint64_t ops, mem;
    uint8_t salt[KDF_SALT_LEN];
    uint8_t nonce[CF_BLOB_NONCE_LEN];
    uint8_t wrapped[CF_MASTER_LEN + CF_BLOB_TAG_LEN];
    uint8_t config_mac[32];
} key_obj;

/* AD of the wrap: repository id and key id, so a key object cannot be
 * moved to another repository or name. */
static int wrap_ad(const char *repo_hex, const char *key_hex, uint8_t ad[64])
{
    if (cf_unhex(repo_hex, ad, 32) != 0 || cf_unhex(key_hex, ad + 32, 32) != 0)
        return -1;
    return 0;
}

static int derive(const char *pass, size_t plen, const uint8_t salt[KDF_SALT_LEN], uint64_t ops,
                  uint64_t mem, uint8_t kek[CF_KEY_LEN])
{
    if (crypto_pwhash(kek, CF_KEY_LEN, pass, plen, salt, ops, (size_t)mem,
                      crypto_pwhash_ALG_ARGON2ID13) != 0)
        return cf_fail("Argon2id key derivation failed (out of memory? it needs %llu MiB)",
                       (unsigned long long)(mem >> 20));
    return 0;
}

static int kdf_defaults(const cf_kdf_params *k, uint64_t *ops, uint64_t *mem)
{
    *ops = k && k->opslimit ? k->opslimit : KDF_OPS_DEFAULT;
    *mem = k && k->memlimit ? k->memlimit : KDF_MEM_DEFAULT;
    if (*ops < crypto_pwhash_OPSLIMIT_MIN || *ops > KDF_OPS_MAX ||
        *mem < crypto_pwhash_MEMLIMIT_MIN || *mem > KDF_MEM_MAX)
        return cf_fail("Argon2id parameters out of range (passes %llu, memory %llu bytes)",
                       (unsigned long long)*ops, (unsigned long long)*mem);
    return 0;
}

int cf_key_write(cf_store *st, const EVP_MD *md, const char *repo_id,
                 const uint8_t master[CF_MASTER_LEN], const uint8_t config_mac[32],
                 const char *pass, size_t plen, const cf_kdf_params *kdf,
                 char id_out[2 * CF_ID_LEN + 1])
{
    if (sodium_ready() != 0)
        return -1;
    uint64_t ops, mem;
    if (kdf_defaults(kdf, &ops, &mem) != 0)
        return -1;
    uint8_t kid[CF_ID_LEN], salt[KDF_SALT_LEN], nonce[CF_BLOB_NONCE_LEN], ad[64];
    uint8_t wrapped[CF_MASTER_LEN + CF_BLOB_TAG_LEN], kek[CF_KEY_LEN];
    char kid_hex[2 * CF_ID_LEN + 1];
    randombytes_buf(kid, sizeof kid);
    randombytes_buf(salt, sizeof salt);
    randombytes_buf(nonce, sizeof nonce);
    cf_hex(kid, sizeof kid, kid_hex);
    if (wrap_ad(repo_id, kid_hex, ad) != 0)
        return cf_fail("invalid repository id");
    if (derive(pass, plen, salt, ops, mem, kek) != 0)
        return -1;
    unsigned long long wl = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(wrapped, &wl, master, CF_MASTER_LEN, ad, sizeof ad,
                                               NULL, nonce, kek);
    sodium_memzero(kek, sizeof kek);

    char salt_hex[2 * KDF_SALT_LEN + 1], nonce_hex[2 * CF_BLOB_NONCE_LEN + 1],
        wrapped_hex[2 * sizeof wrapped + 1], mac_hex[65], created[32], host[64] = "unknown";
    cf_hex(salt, sizeof salt, salt_hex);
    cf_hex(nonce, sizeof nonce, nonce_hex);
    cf_hex(wrapped, sizeof wrapped, wrapped_hex);
    cf_hex(config_mac, 32, mac_hex);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    gethostname(host, sizeof host - 1);
    json_t *j =
        json_pack("{s:i, s:s, s:s, s:s, s:s, s:{s:s, s:i, s:I, s:I, s:s}, s:{s:s, s:s, s:s},"
                  " s:s}",
                  "format", CF_FORMAT_VERSION, "id", kid_hex, "repository", repo_id, "created",
                  created, "host", host, "kdf", "algorithm", "argon2id", "version", 19, "opslimit",
                  (json_int_t)ops, "memlimit", (json_int_t)mem, "salt", salt_hex, "wrap",
                  "algorithm", "xchacha20poly1305-ietf", "nonce", nonce_hex, "ciphertext",
                  wrapped_hex, "config_mac", mac_hex);
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(j);
    char *key = cf_asprintf("keys/%s", kid_hex);
    cf_objw *w;
    int rc = cf_objw_open_raw(st, md, NULL, 0, CF_OBJ_KEY, key,
                              COFFER_WRITE_IF_ABSENT | COFFER_WRITE_PRIVATE, 0, &w);
    if (rc == 0 && (rc = cf_repo_objw_write(w, text, strlen(text))) != 0)
        cf_repo_objw_abort(w);
    else if (rc == 0)
        rc = cf_repo_objw_write(w, "\n", 1) == 0 ? cf_repo_objw_commit(w) : -1;
    free(text);
    free(key);
    if (rc == 0 && id_out)
        memcpy(id_out, kid_hex, sizeof kid_hex);
    return rc ? -1 : 0;
}

static int hex_field(json_t *o, const char *name, uint8_t *out, size_t n)
{
    const char *s = json_string_value(json_object_get(o, name));
    if (!s || strlen(s) != 2 * n || cf_unhex(s, out, n) != 0)
        return cf_fail("field %s must be %zu hex digits", name, 2 * n);
    return 0;
}

static int key_read(cf_store *st, const EVP_MD *md, const char *key, key_obj *k)
{
    memset(k, 0, sizeof *k);
    cf_objr *rd;
    if (cf_objr_open_raw(st, md, NULL, CF_OBJ_KEY, key, &rd) != 0)
        return -1;
    cf_buf b = {0};
    long n;
    do {
        cf_buf_reserve(&b, 4096);
        n = cf_repo_objr_read(rd, b.data + b.len, b.cap - b.len);
        if (n > 0)
            b.len += (size_t)n;
    } while (n > 0 && b.len < (1u << 20));
    cf_repo_objr_close(rd);
    if (n < 0) {
        cf_buf_free(&b);
        return -1;
    }
    json_error_t je;
    json_t *j = json_loadb((const char *)b.data, b.len, 0, &je);
    cf_buf_free(&b);
    if (!j)
        return cf_fail("%s: invalid JSON: %s", key, je.text);
    int rc = -1;
    json_t *kdf = json_object_get(j, "kdf"), *wrap = json_object_get(j, "wrap");
    const char *id = json_string_value(json_object_get(j, "id"));
    const char *repo = json_string_value(json_object_get(j, "repository"));
    const char *alg = json_string_value(json_object_get(kdf, "algorithm"));
    const char *walg = json_string_value(json_object_get(wrap, "algorithm"));
    json_t *ops = json_object_get(kdf, "opslimit"), *mem = json_object_get(kdf, "memlimit");
    uint8_t tmp[CF_ID_LEN];
    if (!id || strcmp(key + 5, id) != 0 || cf_id_parse(id, (cf_id *)tmp) != 0) {
        cf_fail("%s: key id does not match the object name", key);
        goto out;
    }
    if (!repo || cf_unhex(repo, tmp, sizeof tmp) != 0 || strlen(repo) != 2 * CF_ID_LEN) {
        cf_fail("%s: invalid repository id", key);
        goto out;
    }
    if (!alg || strcmp(alg, "argon2id") != 0 || !walg || strcmp(walg, "xchacha20poly1305-ietf") ||
        json_integer_value(json_object_get(kdf, "version")) != 19) {
        cf_fail("%s: unknown key derivation or wrapping algorithm", key);
        goto out;
    }
    if (!json_is_integer(ops) || !json_is_integer(mem) || json_integer_value(ops) <= 0 ||
        json_integer_value(mem) <= 0) {
        cf_fail("%s: invalid Argon2id parameters", key);
        goto out;
    }
    k->ops = (uint64_t)json_integer_value(ops);
    k->mem = (uint64_t)json_integer_value(mem);
    if (hex_field(kdf, "salt", k->salt, sizeof k->salt) ||
        hex_field(wrap, "nonce", k->nonce, sizeof k->nonce) ||
        hex_field(wrap, "ciphertext", k->wrapped, sizeof k->wrapped) ||
        hex_field(j, "config_mac", k->config_mac, sizeof k->config_mac)) {
        cf_error_prefix("%s", key);
        goto out;
    }
    snprintf(k->id, sizeof k->id, "%s", id);
    snprintf(k->repo, sizeof k->repo, "%s", repo);
    snprintf(k->created, sizeof k->created, "%s",
             json_string_value(json_object_get(j, "created")) ?: "");
    snprintf(k->host, sizeof k->host, "%s", json_string_value(json_object_get(j, "host")) ?: "");
    rc = 0;
out:
    json_decref(j);
    return rc;
}

/* 0 and the master if pass opens k; 1 if it does not; -1 on error. */
static int key_open(const key_obj *k, const char *pass, size_t plen, uint8_t master[CF_MASTER_LEN])
{
    if (k->ops > KDF_OPS_MAX || k->mem > KDF_MEM_MAX || k->ops < crypto_pwhash_OPSLIMIT_MIN ||
        k->mem < crypto_pwhash_MEMLIMIT_MIN)
        return cf_fail("keys/%s: Argon2id parameters out of the accepted range (passes %llu, "
                       "memory %llu bytes)",
                       k->id, (unsigned long long)k->ops, (unsigned long long)k->mem);
    uint8_t kek[CF_KEY_LEN], ad[64];
    if (wrap_ad(k->repo, k->id, ad) != 0)
        return cf_fail("keys/%s: invalid ids", k->id);
    if (derive(pass, plen, k->salt, k->ops, k->mem, kek) != 0)
        return -1;
    unsigned long long ml = 0;
    int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
        master, &ml, NULL, k->wrapped, sizeof k->wrapped, ad, sizeof ad, k->nonce, kek);
    sodium_memzero(kek, sizeof kek);
    return rc == 0 && ml == CF_MASTER_LEN ? 0 : 1;
}

int cf_key_unlock(cf_repo *r, const cf_buf *config, const cf_passphrase_src *src, char *const *keys,
                  size_t n)
{
    if (n == 0)
        return cf_fail("repository at %s is encrypted but holds no key object (keys/ is empty): "
                       "it cannot be opened",
                       r->st->label);
    char *pass = NULL;
    size_t plen = 0;
    if (cf_passphrase_read(src, &pass, &plen) != 0)
        return -1;
    uint8_t *master = sodium_malloc(CF_MASTER_LEN);
    int rc = -1, found = 0;
    size_t tried = 0;
    for (size_t i = 0; i < n && !found; i++) {
        key_obj k;
        if (key_read(r->st, r->sha, keys[i], &k) != 0) {
            cf_log(CF_LOG_WARN, "skipping unreadable key: %s", cf_error());
            continue;
        }
        if (strcmp(k.repo, r->id_hex) != 0) {
            cf_log(CF_LOG_DEBUG, "%s belongs to repository %.12s, not this one: skipped", keys[i],
                   k.repo);
            continue;
        }
        tried++;
        int o = key_open(&k, pass, plen, master);
        if (o < 0) {
            cf_log(CF_LOG_WARN, "%s", cf_error());
            continue;
        }
        if (o > 0)
            continue;
        if (cf_crypt_new(master, &r->crypt) != 0)
            goto out;
        uint8_t mac[32];
        cf_crypt_config_mac(r->crypt, config->data, config->len, mac);
        if (sodium_memcmp(mac, k.config_mac, sizeof mac) != 0) {
            cf_fail("config does not match the repository key %s: it was modified after init; "
                    "refusing to use it",
                    keys[i]);
            cf_crypt_free(r->crypt);
            r->crypt = NULL;
            goto out;
        }
        snprintf(r->key_id, sizeof r->key_id, "%s", k.id);
        found = 1;
    }
    if (found) {
        rc = 0;
    } else {
        char d[1100];
        cf_fail("wrong passphrase for repository at %s (passphrase from %s; %zu key(s) tried)",
                r->st->label, cf_passphrase_describe(src, d, sizeof d), tried);
    }
out:
    sodium_free(master);
    cf_passphrase_free(pass, plen);
    return rc;
}

/* ---- Key management ------------------------------------------------------------- */

int cf_repo_key_list(cf_repo *r, cf_key_info **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    char **keys;
    size_t n;
    if (cf_repo_list_flat(r->st, "keys/", &keys, &n) != 0)
        return -1;
    cf_key_info *v = cf_calloc(n ? n : 1, sizeof *v);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        key_obj k;
        if (key_read(r->st, r->sha, keys[i], &k) != 0) {
            cf_log(CF_LOG_WARN, "unreadable key: %s", cf_error());
            continue;
        }
        cf_key_info *ki = &v[m++];
        snprintf(ki->id, sizeof ki->id, "%s", k.id);
        snprintf(ki->created, sizeof ki->created, "%s", k.created);
        snprintf(ki->host, sizeof ki->host, "%s", k.host);
        ki->opslimit = k.ops;
        ki->memlimit = k.mem;
        ki->current = strcmp(k.id, r->key_id) == 0;
        ki->foreign = strcmp(k.repo, r->id_hex) != 0;
    }
    cf_strv_free(keys, n);
    *out = v;
    *nout = m;
    return 0;
}

const char *cf_repo_key_current(cf_repo *r)
{
    return r->key_id;
}

int cf_repo_key_add(cf_repo *r, const char *pass, size_t len, const cf_kdf_params *kdf,
                    char id_out[2 * CF_ID_LEN + 1])
{
    if (!r->crypt)
        return cf_fail("repository at %s is not encrypted: it has no keys", r->st->label);
    if (len == 0)
        return cf_fail("the new passphrase is empty");
    /* The config MAC goes into every key: recompute it from the config. */
    cf_buf cfg = {0};
    cf_objr *rd;
    if (cf_objr_open_raw(r->st, r->sha, NULL, CF_OBJ_CONFIG, "config", &rd) != 0)
        return -1;
    long n;
    do {
        cf_buf_reserve(&cfg, 4096);
        n = cf_repo_objr_read(rd, cfg.data + cfg.len, cfg.cap - cfg.len);
        if (n > 0)
            cfg.len += (size_t)n;
    } while (n > 0);
    cf_repo_objr_close(rd);
    if (n < 0) {
        cf_buf_free(&cfg);
        return -1;
    }
    uint8_t mac[32], *master = sodium_malloc(CF_MASTER_LEN);
    cf_crypt_config_mac(r->crypt, cfg.data, cfg.len, mac);
    cf_buf_free(&cfg);
    cf_crypt_master(r->crypt, master);
    int rc = cf_key_write(r->st, r->sha, r->id_hex, master, mac, pass, len, kdf, id_out);
    sodium_free(master);
    return rc;
}

int cf_repo_key_remove(cf_repo *r, const char *id, int allow_current)
{
    if (!r->crypt)
        return cf_fail("repository at %s is not encrypted: it has no keys", r->st->label);
    cf_key_info *v;
    size_t n;
    if (cf_repo_key_list(r, &v, &n) != 0)
        return -1;
    size_t hit = 0, hits = 0, mine = 0, l = strlen(id);
    for (size_t i = 0; i < n; i++) {
        if (!v[i].foreign)
            mine++;
        if (l && strncmp(v[i].id, id, l) == 0) {
            hit = i;
            hits++;
        }
    }
    int rc = -1;
    if (hits == 0)
        cf_fail("no key %s in keys/ (see `coffer key list`)", id);
    else if (hits > 1)
        cf_fail("key id %s is ambiguous (%zu keys match)", id, hits);
    else if (v[hit].current && !allow_current)
        cf_fail("key %.12s is the one this passphrase opens: remove it with another key's "
                "passphrase, or change it with `coffer key passwd`",
                v[hit].id);
    else if (!v[hit].foreign && mine <= 1)
        cf_fail("key %.12s is the repository's last key: removing it would make every set "
                "unreadable",
                v[hit].id);
    else {
        char *key = cf_asprintf("keys/%s", v[hit].id);
        rc = cf_store_remove(r->st, key) == 0 ? 0 : -1;
        free(key);
    }
    free(v);
    return rc;
}
