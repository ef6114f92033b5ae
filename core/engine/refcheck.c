/* Reference-verified capture: see refcheck.h. */
#include "engine/refcheck.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/checks.h"
#include "plugin/host.h"
#include "util/util.h"

#define REFCHECK_BUCKET (1u << 17) /* paths joined in memory at once */
#define NO_SIZE UINT64_MAX

/* The set's paths of one files component: records [u32 len][path][u64 size]. */
typedef struct flist {
    const cf_component *co;
    FILE *f;
    uint64_t n;
} flist;

typedef struct rcheck {
    const cf_app_check *ck;
    flist *fl;
    uint64_t rows, missing, problems;
    int skipped; /* the driver cannot query its snapshot */
    char *error; /* the query failed: not verified */
} rcheck;

struct cf_refcheck {
    const cf_policy *p;
    flist *lists;
    size_t nlists;
    rcheck *checks;
    size_t nchecks;
    /* problems: records [u32 check][u8 missing][u32 len][path][u32 len][reason] */
    FILE *probs;
    uint64_t nprobs, fetched;
    uint8_t *fetched_bits; /* one bit per problem record */
    /* iteration over missing paths */
    uint64_t it_index;
    cf_buf it_path;
    int iterating;
};

/* ---- temporary files and records -------------------------------------- */

static int put(FILE *f, const void *p, size_t n)
{
    return fwrite(p, 1, n, f) == n ? 0 : -1;
}

static int put_str(FILE *f, const char *s)
{
    uint32_t n = (uint32_t)strlen(s);
    return put(f, &n, sizeof n) || put(f, s, n) ? -1 : 0;
}

static int put_path(FILE *f, const char *path, uint64_t size)
{
    if (put_str(f, path) || put(f, &size, sizeof size))
        return cf_fail_errno("cannot write temporary file");
    return 0;
}

/* Read a string record into b (NUL-terminated); 1, 0 at the end, -1 error. */
static int get_str(FILE *f, cf_buf *b)
{
    uint32_t n;
    size_t got = fread(&n, 1, sizeof n, f);
    if (got == 0 && feof(f))
        return 0;
    if (got != sizeof n || n > (1u << 20))
        return cf_fail("temporary file: bad record");
    b->len = 0;
    cf_buf_reserve(b, (size_t)n + 1);
    if (fread(b->data, 1, n, f) != n)
        return cf_fail("temporary file: short record");
    b->data[n] = 0;
    b->len = n;
    return 1;
}

static int get_path(FILE *f, cf_buf *b, uint64_t *size)
{
    int r = get_str(f, b);
    if (r == 1 && fread(size, 1, sizeof *size, f) != sizeof *size)
        return cf_fail("temporary file: short record");
    return r;
}

static int rewind_f(FILE *f)
{
    if (fflush(f) != 0 || fseek(f, 0, SEEK_SET) != 0)
        return cf_fail_errno("temporary file");
    return 0;
}

/* ---- one bucket in memory ------------------------------------------------ */

typedef struct hent {
    uint64_t h, size;
    size_t off; /* +1 into arena; 0: empty slot */
} hent;

typedef struct htab {
    hent *v;
    size_t cap, n;
    cf_buf arena;
} htab;

static void ht_clear(htab *t, size_t want)
{
    size_t cap = 64;
    while (cap < 2 * want)
        cap *= 2;
    if (cap != t->cap) {
        free(t->v);
        t->v = cf_calloc(cap, sizeof *t->v);
        t->cap = cap;
    } else {
        memset(t->v, 0, cap * sizeof *t->v);
    }
    t->n = 0;
    t->arena.len = 0;
}

static void ht_add(htab *t, const char *path, size_t len, uint64_t size)
{
    uint64_t h = cf_path_hash(path);
    size_t i = h & (t->cap - 1);
    while (t->v[i].off)
        i = (i + 1) & (t->cap - 1);
    t->v[i] = (hent){h, size, t->arena.len + 1};
    cf_buf_append(&t->arena, path, len + 1);
    t->n++;
}

static const hent *ht_find(const htab *t, const char *path)
{
    uint64_t h = cf_path_hash(path);
    for (size_t i = h & (t->cap - 1); t->v[i].off; i = (i + 1) & (t->cap - 1))
        if (t->v[i].h == h && strcmp((const char *)t->arena.data + t->v[i].off - 1, path) == 0)
            return &t->v[i];
    return NULL;
}

static void ht_free(htab *t)
{
    free(t->v);
    cf_buf_free(&t->arena);
    memset(t, 0, sizeof *t);
}

/* ---- setup and capture ---------------------------------------------------- */

cf_refcheck *cf_refcheck_new(const cf_policy *p)
{
    int on = p->verify_refs >= 0 ? p->verify_refs : p->mode == CF_MODE_ONLINE;
    if (!on)
        return NULL;
    cf_refcheck *r = NULL;
    for (size_t i = 0; i < p->nchecks; i++) {
        const cf_app_check *ck = &p->checks[i];
        if (ck->type != CF_CHECK_REFERENCES)
            continue;
        const cf_component *co = cf_policy_component(p, ck->component);
        if (!co || co->type != CF_COMP_FILES)
            continue; /* object stores: verified in place by rehearsals */
        if (!r) {
            r = cf_calloc(1, sizeof *r);
            r->p = p;
        }
        flist *fl = NULL;
        for (size_t k = 0; k < r->nlists; k++)
            if (r->lists[k].co == co)
                fl = &r->lists[k];
        if (!fl) {
            r->lists = cf_realloc(r->lists, (r->nlists + 1) * sizeof *r->lists);
            fl = &r->lists[r->nlists++];
            *fl = (flist){.co = co};
        }
        r->checks = cf_realloc(r->checks, (r->nchecks + 1) * sizeof *r->checks);
        r->checks[r->nchecks++] = (rcheck){.ck = ck};
    }
    if (!r)
        return NULL;
    /* the flist pointers are taken once the array no longer moves */
    for (size_t i = 0; i < r->nchecks; i++)
        for (size_t k = 0; k < r->nlists; k++)
            if (strcmp(r->lists[k].co->name, r->checks[i].ck->component) == 0)
                r->checks[i].fl = &r->lists[k];
    for (size_t k = 0; k < r->nlists; k++)
        if (!(r->lists[k].f = cf_tmpfile("refs"))) {
            cf_refcheck_free(r);
            return NULL;
        }
    return r;
}

void cf_refcheck_free(cf_refcheck *r)
{
    if (!r)
        return;
    for (size_t k = 0; k < r->nlists; k++)
        if (r->lists[k].f)
            fclose(r->lists[k].f);
    if (r->probs)
        fclose(r->probs);
    for (size_t i = 0; i < r->nchecks; i++)
        free(r->checks[i].error);
    free(r->lists);
    free(r->checks);
    free(r->fetched_bits);
    cf_buf_free(&r->it_path);
    free(r);
}

int cf_refcheck_uses_db(const cf_refcheck *r, const char *comp)
{
    for (size_t i = 0; r && i < r->nchecks; i++)
        if (strcmp(r->checks[i].ck->database, comp) == 0)
            return 1;
    return 0;
}

int cf_refcheck_note(cf_refcheck *r, const cf_entry *e)
{
    if (!r || (e->kind != CF_ENT_FILE && e->kind != CF_ENT_HARDLINK))
        return 0;
    for (size_t k = 0; k < r->nlists; k++) {
        flist *fl = &r->lists[k];
        if (strcmp(fl->co->name, e->component) != 0)
            continue;
        fl->n++;
        return put_path(fl->f, e->path, e->kind == CF_ENT_FILE ? e->size : NO_SIZE);
    }
    return 0;
}

/* ---- evaluation ------------------------------------------------------------ */

typedef struct qctx {
    cf_refcheck *r;
    rcheck *c;
    size_t ci;
    cf_buf path;
    htab *t;       /* one bucket: look up directly */
    FILE **refs;   /* several: rows go to their bucket's file */
    size_t nb;
    int failed, timed_out, cancelled;
    double deadline;
} qctx;

static int problem(cf_refcheck *r, size_t ci, int missing, const char *path, const char *reason)
{
    if (!r->probs && !(r->probs = cf_tmpfile("refs")))
        return -1;
    uint32_t c = (uint32_t)ci;
    uint8_t m = (uint8_t)missing;
    if (put(r->probs, &c, sizeof c) || put(r->probs, &m, 1) || put_str(r->probs, path) ||
        put_str(r->probs, reason))
        return cf_fail_errno("cannot write temporary file");
    r->nprobs++;
    r->checks[ci].problems++;
    if (missing)
        r->checks[ci].missing++;
    return 0;
}

/* Look rel (with the recorded size, or NO_SIZE) up in bucket t. */
static int lookup(qctx *q, const htab *t, const char *rel, uint64_t want)
{
    const hent *h = ht_find(t, rel);
    if (!h)
        return problem(q->r, q->ci, 1, rel, "missing");
    if (want != NO_SIZE && h->size != NO_SIZE && h->size != want) {
        char why[96];
        snprintf(why, sizeof why, "size %" PRIu64 " != recorded %" PRIu64, h->size, want);
        return problem(q->r, q->ci, 0, rel, why);
    }
    return 0;
}

static int row_cb(void *ud, int ncols, const char *const *v)
{
    qctx *q = ud;
    q->c->rows++;
    if (cf_cancel_flag) {
        q->cancelled = 1;
        return 1;
    }
    if ((q->c->rows & 255) == 0 && cf_now() > q->deadline) {
        q->timed_out = 1;
        return 1;
    }
    if (ncols < 1 || !v[0])
        return 0;
    const cf_app_check *ck = q->c->ck;
    const char *why = NULL;
    const char *rel = cf_check_ref_path(q->r->p, ck, v[0], &q->path, &why);
    int rc = 0;
    uint64_t want = NO_SIZE;
    if (!rel) {
        char *shown = cf_asprintf("%s%s", ck->prefix, v[0]);
        rc = problem(q->r, q->ci, 0, shown, why);
        free(shown);
    } else if (!cf_check_in_paths(&q->c->fl->co->paths, rel)) {
        char *w = cf_asprintf("outside component '%s'", q->c->fl->co->name);
        rc = problem(q->r, q->ci, 0, rel, w);
        free(w);
    } else if (ncols > 1 && v[1] && cf_parse_u64(v[1], &want) != 0) {
        char *w = cf_asprintf("recorded size '%s' is not a number", v[1]);
        rc = problem(q->r, q->ci, 0, rel, w);
        free(w);
    } else if (q->t) {
        rc = lookup(q, q->t, rel, want);
    } else {
        FILE *f = q->refs[cf_path_hash(rel) % q->nb];
        rc = put_path(f, rel, want);
    }
    if (rc != 0) {
        q->failed = 1;
        return 1;
    }
    return 0;
}

/* Load bucket b of the file list (all of it when nb is 1) into t. */
static int load_bucket(FILE *f, uint64_t n, htab *t)
{
    cf_buf b = {0};
    uint64_t size;
    int r;
    ht_clear(t, (size_t)n);
    if (rewind_f(f) != 0)
        return -1;
    while ((r = get_path(f, &b, &size)) == 1)
        ht_add(t, (const char *)b.data, b.len, size);
    cf_buf_free(&b);
    return r < 0 ? -1 : 0;
}

static int run_query(qctx *q, cf_dbinst *db)
{
    const cf_app_check *ck = q->c->ck;
    q->deadline = cf_now() + ck->timeout;
    db->hctx->deadline = q->deadline;
    coffer_status st = db->ops->query_snapshot(db->inst, ck->query, row_cb, q);
    db->hctx->deadline = 0;
    if (q->failed)
        return -1;
    if (q->cancelled || cf_cancel_flag)
        return cf_fail("check '%s': cancelled", ck->name);
    if (q->timed_out || (st == COFFER_ERR_CANCELLED && cf_now() > q->deadline)) {
        cf_fail("check '%s': timed out after %d s (%" PRIu64 " rows read)", ck->name,
                ck->timeout, q->c->rows);
        return -2;
    }
    if (st != COFFER_OK) {
        char what[160];
        snprintf(what, sizeof what, "check '%s': query on the captured snapshot failed",
                 ck->name);
        cf_hctx_fail(db->hctx, st, what);
        return -2;
    }
    return 0;
}

static int eval_one(cf_refcheck *r, size_t ci, cf_dbinst *db)
{
    rcheck *c = &r->checks[ci];
    flist *fl = c->fl;
    qctx q = {.r = r, .c = c, .ci = ci};
    htab t = {0};
    int rc = 0;
    size_t nb = (size_t)(fl->n / REFCHECK_BUCKET) + 1;
    if (nb == 1) {
        rc = load_bucket(fl->f, fl->n, &t);
        q.t = &t;
        if (rc == 0)
            rc = run_query(&q, db);
        cf_buf_free(&q.path);
        ht_free(&t);
        return rc;
    }
    /* Partitioned: the file list and the rows split the same way. */
    FILE **files = cf_calloc(nb, sizeof *files), **refs = cf_calloc(nb, sizeof *refs);
    uint64_t *counts = cf_calloc(nb, sizeof *counts);
    for (size_t b = 0; b < nb && rc == 0; b++)
        if (!(files[b] = cf_tmpfile("refs")) || !(refs[b] = cf_tmpfile("refs")))
            rc = -1;
    cf_buf path = {0};
    if (rc == 0)
        rc = rewind_f(fl->f);
    uint64_t size;
    int gr = 0;
    while (rc == 0 && (gr = get_path(fl->f, &path, &size)) == 1) {
        size_t b = cf_path_hash((const char *)path.data) % nb;
        counts[b]++;
        rc = put_path(files[b], (const char *)path.data, size);
    }
    if (gr < 0)
        rc = -1;
    q.refs = refs;
    q.nb = nb;
    if (rc == 0)
        rc = run_query(&q, db);
    for (size_t b = 0; b < nb && rc == 0; b++) {
        rc = load_bucket(files[b], counts[b], &t);
        if (rc == 0)
            rc = rewind_f(refs[b]);
        while (rc == 0 && (gr = get_path(refs[b], &path, &size)) == 1)
            rc = lookup(&q, &t, (const char *)path.data, size);
        if (gr < 0)
            rc = -1;
        fclose(files[b]);
        fclose(refs[b]);
        files[b] = refs[b] = NULL;
    }
    for (size_t b = 0; b < nb; b++) {
        if (files[b])
            fclose(files[b]);
        if (refs[b])
            fclose(refs[b]);
    }
    free(files);
    free(refs);
    free(counts);
    cf_buf_free(&path);
    cf_buf_free(&q.path);
    ht_free(&t);
    return rc;
}

int cf_refcheck_eval(cf_refcheck *r, cf_dbinst *dbs, size_t ndb)
{
    for (size_t i = 0; i < r->nchecks; i++) {
        rcheck *c = &r->checks[i];
        cf_dbinst *db = NULL;
        for (size_t k = 0; k < ndb; k++)
            if (strcmp(dbs[k].comp->name, c->ck->database) == 0)
                db = &dbs[k];
        if (!db || !db->ops->query_snapshot) {
            c->skipped = 1;
            cf_log(CF_LOG_WARN,
                   "check '%s': database driver '%s' cannot query the snapshot it captured; "
                   "the references are not verified at backup (a rehearsal still checks them)",
                   c->ck->name, db ? db->comp->driver : c->ck->database);
            continue;
        }
        double t0 = cf_now();
        uint64_t nprobs = r->nprobs;
        long off = 0;
        if (r->probs && (fflush(r->probs) != 0 || (off = ftell(r->probs)) < 0))
            return cf_fail_errno("temporary file");
        int erc = eval_one(r, i, db);
        if (erc != 0) {
            if (erc != -2 || cf_cancel_flag)
                return -1;
            /* A query that fails (a table the application dropped, a
             * timeout) must not stop the backup: the check is reported as
             * not verified, and what it found before failing is dropped. */
            c->error = cf_strdup(cf_error());
            cf_log(CF_LOG_WARN, "check '%s': not verified at backup: %s", c->ck->name, c->error);
            if (r->nprobs != nprobs) {
                if (fflush(r->probs) != 0 || ftruncate(fileno(r->probs), off) != 0 ||
                    fseek(r->probs, off, SEEK_SET) != 0)
                    return cf_fail_errno("temporary file");
                r->nprobs = nprobs;
            }
            c->missing = c->problems = 0;
            continue;
        }
        cf_log(CF_LOG_INFO, "references '%s': %" PRIu64 " rows, %" PRIu64 " paths in '%s', %" PRIu64
               " missing (%.2f s)", c->ck->name, c->rows, c->fl->n, c->fl->co->name, c->missing,
               cf_now() - t0);
    }
    if (r->nprobs)
        r->fetched_bits = cf_calloc((size_t)(r->nprobs + 7) / 8, 1);
    return 0;
}

/* ---- results ---------------------------------------------------------------- */

/* Read the next problem record: 1, 0 at the end, -1 error. */
static int next_prob(FILE *f, uint32_t *ci, uint8_t *missing, cf_buf *path, cf_buf *reason)
{
    size_t got = fread(ci, 1, sizeof *ci, f);
    if (got == 0 && feof(f))
        return 0;
    if (got != sizeof *ci || fread(missing, 1, 1, f) != 1)
        return cf_fail("temporary file: short record");
    if (get_str(f, path) != 1 || get_str(f, reason) != 1)
        return cf_fail("temporary file: short record");
    return 1;
}

int cf_refcheck_next_missing(cf_refcheck *r, const char **comp, const char **rel)
{
    if (!r || !r->probs)
        return 0;
    if (!r->iterating) {
        if (rewind_f(r->probs) != 0)
            return 0;
        r->iterating = 1;
        r->it_index = 0;
    }
    uint32_t ci;
    uint8_t missing;
    cf_buf reason = {0};
    int got;
    while ((got = next_prob(r->probs, &ci, &missing, &r->it_path, &reason)) == 1) {
        r->it_index++;
        if (!missing)
            continue;
        cf_buf_free(&reason);
        *comp = r->checks[ci].fl->co->name;
        *rel = (const char *)r->it_path.data;
        return 1;
    }
    cf_buf_free(&reason);
    r->iterating = 0;
    return 0;
}

void cf_refcheck_fetched(cf_refcheck *r)
{
    uint64_t i = r->it_index - 1;
    if (!(r->fetched_bits[i / 8] & (1u << (i % 8)))) {
        r->fetched_bits[i / 8] |= (uint8_t)(1u << (i % 8));
        r->fetched++;
    }
}

uint64_t cf_refcheck_problems(const cf_refcheck *r)
{
    return r ? r->nprobs - r->fetched : 0;
}

json_t *cf_refcheck_report(const cf_refcheck *r, size_t limit)
{
    json_t *o = json_object(), *checks = json_array(), *paths = json_array();
    uint64_t rows = 0;
    for (size_t i = 0; i < r->nchecks; i++) {
        const rcheck *c = &r->checks[i];
        rows += c->rows;
        json_t *cj = json_pack("{s:s,s:s,s:I,s:I,s:I}", "name", c->ck->name, "component",
                               c->ck->component, "rows", (json_int_t)c->rows, "missing",
                               (json_int_t)c->missing, "problems", (json_int_t)c->problems);
        if (c->skipped)
            json_object_set_new(cj, "skipped", json_true());
        if (c->error)
            json_object_set_new(cj, "error", json_string(c->error));
        json_array_append_new(checks, cj);
    }
    if (r->probs && fflush(r->probs) == 0 && fseek(r->probs, 0, SEEK_SET) == 0) {
        uint32_t ci;
        uint8_t missing;
        cf_buf path = {0}, reason = {0};
        uint64_t idx = 0;
        while (json_array_size(paths) < limit &&
               next_prob(r->probs, &ci, &missing, &path, &reason) == 1) {
            uint64_t i = idx++;
            if (r->fetched_bits && (r->fetched_bits[i / 8] & (1u << (i % 8))))
                continue;
            json_t *pj = json_pack("{s:s,s:s}", "check", r->checks[ci].ck->name, "component",
                                   r->checks[ci].fl->co->name);
            cf_json_set_name(pj, "path", (const char *)path.data);
            json_object_set_new(pj, "reason", json_string((const char *)reason.data));
            json_array_append_new(paths, pj);
        }
        cf_buf_free(&path);
        cf_buf_free(&reason);
    }
    json_object_set_new(o, "checks", checks);
    json_object_set_new(o, "rows", json_integer((json_int_t)rows));
    json_object_set_new(o, "problems", json_integer((json_int_t)cf_refcheck_problems(r)));
    json_object_set_new(o, "refetched", json_integer((json_int_t)r->fetched));
    json_object_set_new(o, "paths", paths);
    return o;
}
