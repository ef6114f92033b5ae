/*
 * Proof records of rehearsals (see proof.h).
 */
#include "engine/proof.h"

#include <stdlib.h>
#include <string.h>

#include "engine/setcheck.h"
#include "plugin/store.h"
#include "util/util.h"

int cf_proof_put(cf_repo *r, const char *set_id, json_t *record)
{
    const char *t = json_string_value(json_object_get(record, "time"));
    char stamp[32] = "0";
    size_t n = 0;
    /* 2026-12-04T09:30:00Z -> 20261204T093000Z: sorts by time */
    for (const char *c = t ? t : ""; *c && n + 1 < sizeof stamp; c++)
        if (*c != '-' && *c != ':')
            stamp[n++] = *c;
    stamp[n ? n : 1] = 0;
    uint32_t rnd;
    cf_random(&rnd, sizeof rnd);
    char *key = cf_asprintf("proofs/%s/%s-%08x", set_id, stamp, rnd);
    char *text = json_dumps(record, JSON_COMPACT | JSON_SORT_KEYS);
    int rc = text ? cf_repo_put_object(r, CF_OBJ_PROOF, key, text, strlen(text))
                  : cf_fail("%s: cannot encode the proof record", key);
    free(text);
    free(key);
    return rc;
}

typedef struct keys {
    char **v;
    size_t n;
} keys;

static int list_cb(void *ud, const char *key, const coffer_object_stat *st)
{
    (void)st;
    keys *k = ud;
    k->v = cf_realloc(k->v, (k->n + 1) * sizeof *k->v);
    k->v[k->n++] = cf_strdup(key);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list(cf_repo *r, const char *set_id, keys *k)
{
    memset(k, 0, sizeof *k);
    char *prefix = cf_asprintf("proofs/%s/", set_id);
    int rc = cf_store_list(cf_repo_store(r), prefix, list_cb, k);
    free(prefix);
    if (rc == 0 && k->n)
        qsort(k->v, k->n, sizeof *k->v, cmp_str);
    return rc;
}

/* A record as written by cf_proof_put, for this set; else NULL. */
static json_t *load(cf_repo *r, const char *key, const char *set_id)
{
    cf_buf b = {0};
    if (cf_repo_get_object(r, CF_OBJ_PROOF, key, &b) != 0) {
        cf_log(CF_LOG_WARN, "%s: %s; skipped", key, cf_error());
        cf_buf_free(&b);
        return NULL;
    }
    json_error_t err;
    json_t *j = json_loadb((const char *)b.data, b.len, JSON_REJECT_DUPLICATES, &err);
    cf_buf_free(&b);
    const char *set = json_string_value(json_object_get(j, "set"));
    if (!json_is_object(j) || !set || strcmp(set, set_id) != 0 ||
        !json_is_string(json_object_get(j, "time")) || !json_is_boolean(json_object_get(j, "ok")) ||
        !json_is_integer(json_object_get(j, "duration_ms"))) {
        cf_log(CF_LOG_WARN, "%s: not a proof record of set %s; skipped", key, set_id);
        json_decref(j);
        return NULL;
    }
    return j;
}

int cf_proof_latest(cf_repo *r, const char *set_id, json_t **last, json_t **last_ok)
{
    *last = NULL;
    if (last_ok)
        *last_ok = NULL;
    keys k;
    if (list(r, set_id, &k) != 0)
        return -1;
    for (size_t i = k.n; i-- > 0;) {
        if (*last && (!last_ok || *last_ok))
            break;
        json_t *j = load(r, k.v[i], set_id);
        if (!j)
            continue;
        if (!*last)
            *last = json_incref(j);
        if (last_ok && !*last_ok && json_is_true(json_object_get(j, "ok")))
            *last_ok = json_incref(j);
        json_decref(j);
    }
    cf_strv_free(k.v, k.n);
    return 0;
}

int cf_proof_remove_all(cf_repo *r, const char *set_id)
{
    keys k;
    if (list(r, set_id, &k) != 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < k.n; i++)
        if (cf_store_remove(cf_repo_store(r), k.v[i]) != 0)
            rc = -1;
    cf_strv_free(k.v, k.n);
    return rc;
}

int cf_proof_copy(cf_repo *src, cf_repo *dst, const char *set_id)
{
    keys k;
    if (list(src, set_id, &k) != 0)
        return -1;
    int rc = 0;
    cf_buf b = {0};
    for (size_t i = 0; i < k.n && rc == 0; i++) {
        coffer_object_stat st;
        if (cf_store_stat(cf_repo_store(dst), k.v[i], &st) == 0)
            continue; /* already there */
        cf_error_clear();
        b.len = 0;
        /* decrypted with the source's key, written with the destination's */
        if (cf_repo_get_object(src, CF_OBJ_PROOF, k.v[i], &b) != 0 ||
            cf_repo_put_object(dst, CF_OBJ_PROOF, k.v[i], b.data, b.len) != 0)
            rc = -1;
    }
    cf_buf_free(&b);
    cf_strv_free(k.v, k.n);
    return rc;
}
