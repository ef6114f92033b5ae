#include "engine/objects.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/files.h"
#include "engine/progress.h"
#include "plugin/host.h"
#include "plugin/registry.h"
#include "util/util.h"

int cf_objects_open(const cf_component *c, const char *root, cf_store **out)
{
    const cf_driver *d = cf_registry_find(COFFER_KIND_STORAGE, c->driver);
    if (!d)
        return -1;
    char label[256];
    snprintf(label, sizeof label, "component '%s' (%s)", c->name, c->driver);
    return cf_store_new(&d->desc, c->options, label, root, out) == COFFER_OK ? 0 : -1;
}

static const char *versioning_word(coffer_versioning v)
{
    switch (v) {
    case COFFER_VERSIONING_ENABLED: return "Enabled";
    case COFFER_VERSIONING_SUSPENDED: return "Suspended";
    default: return "never enabled";
    }
}

/* ---- backup ------------------------------------------------------------ */

typedef struct vb_ctx {
    cf_mwriter *mw;
    const char *comp;
    uint64_t n, bytes;
    int rc;
} vb_ctx;

static int version_cb(void *ud, const coffer_object_version *v)
{
    vb_ctx *c = ud;
    if (!v->is_latest || v->is_delete_marker)
        return 0;
    cf_entry e = {0};
    e.kind = CF_ENT_OBJECT;
    e.component = cf_strdup(c->comp);
    e.path = cf_strdup(v->key);
    e.version_id = cf_strdup(v->version_id ? v->version_id : "null");
    e.etag = cf_strdup(v->etag ? v->etag : "");
    e.size = v->size;
    e.mtime = v->mtime;
    if (cf_manifest_add(c->mw, &e) != 0) {
        c->rc = -1;
        cf_entry_clear(&e);
        return 1;
    }
    c->n++;
    c->bytes += v->size;
    cf_progress_add(0, 1);
    cf_entry_clear(&e);
    return cf_cancel_flag ? 1 : 0;
}

typedef struct keylist {
    char **v;
    uint64_t *size;
    char **etag;
    size_t n;
} keylist;

static int list_cb(void *ud, const char *key, const coffer_object_stat *st)
{
    keylist *k = ud;
    k->v = cf_realloc(k->v, (k->n + 1) * sizeof *k->v);
    k->size = cf_realloc(k->size, (k->n + 1) * sizeof *k->size);
    k->etag = cf_realloc(k->etag, (k->n + 1) * sizeof *k->etag);
    k->v[k->n] = cf_strdup(key);
    k->size[k->n] = st ? st->size : 0;
    k->etag[k->n] = cf_strdup(st ? st->etag : "");
    k->n++;
    return 0;
}

static void keylist_free(keylist *k)
{
    cf_strv_free(k->v, k->n);
    cf_strv_free(k->etag, k->n);
    free(k->size);
}

static int copy_objects(cf_store *bucket, const cf_component *c, cf_ingest *g, cf_mwriter *mw,
                        uint64_t *n, uint64_t *bytes)
{
    keylist kl = {0};
    if (cf_store_list(bucket, "", list_cb, &kl) != 0)
        return -1;
    int rc = 0;
    char *buf = cf_malloc(1 << 20);
    for (size_t i = 0; i < kl.n && rc == 0; i++) {
        void *r;
        if ((rc = cf_store_reader_open(bucket, kl.v[i], 0, 0, &r)) != 0)
            break;
        cf_ingest_reset(g);
        size_t got;
        do {
            rc = cf_store_read(bucket, r, buf, 1 << 20, &got);
            if (rc == 0 && got)
                rc = cf_ingest_write(g, buf, got);
        } while (rc == 0 && got == 1 << 20);
        cf_store_reader_close(bucket, r);
        if (rc == 0)
            rc = cf_ingest_finish(g);
        if (rc != 0)
            break;
        cf_entry e = {0};
        e.kind = CF_ENT_OBJECT;
        e.component = cf_strdup(c->name);
        e.path = cf_strdup(kl.v[i]);
        e.etag = cf_strdup(kl.etag[i]);
        e.size = g->size;
        e.mtime = time(NULL);
        e.chunks = cf_ingest_take(g, &e.nchunks);
        rc = cf_manifest_add(mw, &e);
        cf_entry_clear(&e);
        (*n)++;
        *bytes += g->size;
        cf_progress_add(0, 1);
    }
    free(buf);
    keylist_free(&kl);
    return rc ? -1 : 0;
}

static int check_versioning(cf_store *bucket, const cf_component *c)
{
    if (!bucket->ops->versioning_status || !bucket->ops->list_versions)
        return cf_fail("component '%s': driver '%s' cannot read bucket versioning; use "
                       "protect: copy",
                       c->name, c->driver);
    coffer_versioning v = COFFER_VERSIONING_NEVER;
    coffer_status st = bucket->ops->versioning_status(bucket->inst, &v);
    if (st != COFFER_OK)
        return cf_hctx_fail(bucket->hctx, st, "reading bucket versioning");
    if (v != COFFER_VERSIONING_ENABLED)
        return cf_fail("component '%s': bucket versioning is %s: without it an object deleted "
                       "or overwritten after the backup is lost for good, so backing up only the "
                       "database is not a complete plan; enable versioning on the bucket or use "
                       "protect: copy",
                       c->name, versioning_word(v));
    return 0;
}

int cf_objects_preflight(cf_run *run, const cf_component *c)
{
    cf_store *bucket;
    if (cf_objects_open(c, run->policy->root, &bucket) != 0)
        return -1;
    int rc = c->protect == CF_PROTECT_VERSIONING ? check_versioning(bucket, c) : 0;
    cf_store_free(bucket);
    return rc;
}

int cf_objects_backup(cf_run *run, const cf_component *c, cf_ingest *g, cf_mwriter *mw,
                      json_t *comp_json)
{
    cf_store *bucket;
    if (cf_objects_open(c, run->policy->root, &bucket) != 0)
        return -1;
    uint64_t n = 0, bytes = 0;
    int rc = 0;
    if (c->protect == CF_PROTECT_VERSIONING) {
        {
            rc = check_versioning(bucket, c);
            if (rc == 0) {
                coffer_status st;
                vb_ctx ctx = {.mw = mw, .comp = c->name};
                st = bucket->ops->list_versions(bucket->inst, "", version_cb, &ctx);
                if (ctx.rc != 0)
                    rc = -1;
                else if (st != COFFER_OK)
                    rc = cf_hctx_fail(bucket->hctx, st, "listing object versions");
                else if (cf_cancel_flag)
                    rc = cf_fail("cancelled");
                n = ctx.n;
                bytes = ctx.bytes;
            }
        }
    } else {
        rc = copy_objects(bucket, c, g, mw, &n, &bytes);
    }
    json_object_set_new(comp_json, "protect",
                        json_string(c->protect == CF_PROTECT_VERSIONING ? "versioning" : "copy"));
    json_object_set_new(comp_json, "objects", json_integer((json_int_t)n));
    json_object_set_new(comp_json, "bytes", json_integer((json_int_t)bytes));
    cf_store_free(bucket);
    return rc;
}

/* ---- restore ----------------------------------------------------------- */

/* Current state of the bucket: every version, keyed "key\nversion". */
typedef struct vstate {
    char **ver;     /* "key\nversion" of every version */
    size_t nver;
    char **latest;  /* "key\nversion" of the current versions */
    size_t nlatest;
} vstate;

static int state_cb(void *ud, const coffer_object_version *v)
{
    vstate *s = ud;
    char *k = cf_asprintf("%s\n%s", v->key, v->version_id ? v->version_id : "null");
    if (!v->is_delete_marker) {
        /* "key\nversion", NUL, then "size etag": strcmp sees the first
         * part only, version_attrs reads the second */
        char *attrs = cf_asprintf("%llu %s", (unsigned long long)v->size, v->etag ? v->etag : "");
        size_t lk = strlen(k), la = strlen(attrs);
        char *e = cf_malloc(lk + la + 2);
        memcpy(e, k, lk + 1);
        memcpy(e + lk + 1, attrs, la + 1);
        free(attrs);
        s->ver = cf_realloc(s->ver, (s->nver + 1) * sizeof(char *));
        s->ver[s->nver++] = e;
        if (v->is_latest) {
            s->latest = cf_realloc(s->latest, (s->nlatest + 1) * sizeof(char *));
            s->latest[s->nlatest++] = cf_strdup(k);
        }
    }
    free(k);
    return 0;
}

static int cmpstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has(char **v, size_t n, const char *k)
{
    return bsearch(&k, v, n, sizeof(char *), cmpstr) != NULL;
}

/* Size and etag the bucket reports for version k ("key\nversion"). */
static int version_attrs(char **v, size_t n, const char *k, uint64_t *size, const char **etag)
{
    char **p = bsearch(&k, v, n, sizeof(char *), cmpstr);
    if (!p)
        return -1;
    const char *a = *p + strlen(*p) + 1;
    char *end;
    *size = strtoull(a, &end, 10);
    *etag = *end == ' ' ? end + 1 : "";
    return 0;
}

/* Etags compare without their quotes. */
static int etag_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la >= 2 && a[0] == '"' && a[la - 1] == '"')
        a++, la -= 2;
    if (lb >= 2 && b[0] == '"' && b[lb - 1] == '"')
        b++, lb -= 2;
    return la == lb && strncmp(a, b, la) == 0;
}

static void add_check(json_t *checks, int ok, const char *check, const char *detail)
{
    json_array_append_new(checks, json_pack("{s:s,s:b,s:s}", "check", check, "ok", ok, "detail",
                                            detail));
    cf_log(ok ? CF_LOG_INFO : CF_LOG_ERROR, "check %s: %s%s%s", check, ok ? "ok" : "FAILED",
           *detail ? ": " : "", detail);
}

/* A recorded version that still exists must still be what the set saw:
 * same size, same etag (when both sides know one). 1 on a mismatch,
 * reported. */
static int vattr_mismatch(const vstate *vs, const char *k, const cf_entry *e, const char *comp,
                          const char *set_id, json_t *checks)
{
    uint64_t size;
    const char *etag;
    if (version_attrs(vs->ver, vs->nver, k, &size, &etag) != 0)
        return 0;
    char *d = NULL;
    if (size != e->size)
        d = cf_asprintf("object %s version %s is %llu bytes in the bucket, set %s recorded %llu",
                        e->path, e->version_id, (unsigned long long)size, set_id,
                        (unsigned long long)e->size);
    else if (e->etag && *e->etag && *etag && !etag_eq(e->etag, etag))
        d = cf_asprintf("object %s version %s has etag %s in the bucket, set %s recorded %s",
                        e->path, e->version_id, etag, set_id, e->etag);
    if (!d)
        return 0;
    add_check(checks, 0, comp, d);
    free(d);
    return 1;
}

/* A copied object as a file beneath dir: its key is resolved there
 * without following links, and an object key twice is refused. */
static int write_object_file(cf_repo *repo, const char *dir, const cf_entry *e, cf_buf *buf)
{
    if (cf_path_safe(e->path) != 0)
        return cf_fail("object %s: refused: key escapes the restore directory", e->path);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return cf_fail_errno("cannot open %s", dir);
    const char *base;
    int pfd = cf_beneath_parent(dfd, e->path, 0700, &base);
    close(dfd);
    if (pfd < 0)
        return cf_fail_errno("object %s: refused: cannot make its directory beneath %s", e->path,
                             dir);
    int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    close(pfd);
    if (fd < 0)
        return errno == EEXIST ? cf_fail("object %s: refused: the set holds this key twice",
                                         e->path)
                               : cf_fail_errno("cannot create %s/%s", dir, e->path);
    int rc = 0;
    for (size_t i = 0; i < e->nchunks && rc == 0; i++) {
        rc = cf_repo_get_chunk(repo, &e->chunks[i], buf);
        if (rc == 0 && write(fd, buf->data, buf->len) != (ssize_t)buf->len)
            rc = cf_fail_errno("writing %s/%s", dir, e->path);
    }
    if (close(fd) != 0 && rc == 0)
        rc = cf_fail_errno("writing %s/%s", dir, e->path);
    return rc;
}

static int write_object_back(cf_repo *repo, cf_store *bucket, const cf_entry *e, cf_buf *buf)
{
    void *w;
    if (cf_store_writer_open(bucket, e->path, 0, e->size, &w) != 0)
        return -1;
    for (size_t i = 0; i < e->nchunks; i++) {
        if (cf_repo_get_chunk(repo, &e->chunks[i], buf) != 0 ||
            cf_store_write(bucket, w, buf->data, buf->len) != 0) {
            cf_store_abort(bucket, w);
            return -1;
        }
    }
    return cf_store_commit(bucket, w);
}

long cf_objects_restore(cf_run *run, const char *set_id, const cf_component *c,
                        const cf_objects_restore_opts *o, json_t *checks)
{
    cf_store *bucket;
    if (cf_objects_open(c, run->policy->root, &bucket) != 0)
        return -1;
    vstate vs = {0};
    int versioned = c->protect == CF_PROTECT_VERSIONING;
    if (versioned) {
        if (!bucket->ops->list_versions) {
            cf_store_free(bucket);
            return cf_fail("component '%s': driver '%s' cannot list versions", c->name, c->driver);
        }
        coffer_status st = bucket->ops->list_versions(bucket->inst, "", state_cb, &vs);
        if (st != COFFER_OK) {
            cf_hctx_fail(bucket->hctx, st, "listing object versions");
            cf_store_free(bucket);
            return -1;
        }
        qsort(vs.ver, vs.nver, sizeof(char *), cmpstr);
        qsort(vs.latest, vs.nlatest, sizeof(char *), cmpstr);
    }
    cf_mreader *m;
    json_t *h;
    if (cf_manifest_open(run->repo, set_id, &m, &h) != 0) {
        cf_store_free(bucket);
        return -1;
    }
    json_decref(h);
    char **recorded = NULL;
    size_t nrec = 0;
    long problems = 0, changed = 0, rolled = 0, written = 0;
    cf_buf buf = {0};
    cf_entry e;
    int rc;
    while ((rc = cf_manifest_next(m, &e)) == 1) {
        if (e.kind != CF_ENT_OBJECT || strcmp(e.component, c->name) != 0) {
            cf_entry_clear(&e);
            continue;
        }
        if (versioned) {
            char *k = cf_asprintf("%s\n%s", e.path, e.version_id ? e.version_id : "null");
            recorded = cf_realloc(recorded, (nrec + 1) * sizeof(char *));
            recorded[nrec++] = cf_asprintf("%s", e.path);
            if (!has(vs.ver, vs.nver, k)) {
                char *d = cf_asprintf("object %s version %s recorded in set %s no longer exists",
                                      e.path, e.version_id, set_id);
                add_check(checks, 0, c->name, d);
                free(d);
                problems++;
            } else if (vattr_mismatch(&vs, k, &e, c->name, set_id, checks)) {
                problems++;
            } else if (!has(vs.latest, vs.nlatest, k)) {
                changed++;
                if (o->rollback) {
                    if (!bucket->ops->restore_version) {
                        rc = cf_fail("component '%s': driver cannot restore versions", c->name);
                    } else {
                        coffer_status st =
                            bucket->ops->restore_version(bucket->inst, e.path, e.version_id);
                        if (st != COFFER_OK)
                            rc = cf_hctx_fail(bucket->hctx, st, e.path);
                        else
                            rolled++;
                    }
                }
            }
            free(k);
        } else if (o->write_back) {
            if (write_object_back(run->repo, bucket, &e, &buf) != 0)
                rc = -1;
            else
                written++;
        } else if (o->dir) {
            if (write_object_file(run->repo, o->dir, &e, &buf) != 0)
                rc = -1;
            else
                written++;
        }
        cf_entry_clear(&e);
        if (rc < 0)
            break;
        cf_progress_add(0, 1);
    }
    cf_manifest_close(m);
    cf_buf_free(&buf);
    long created = 0;
    if (rc == 0 && versioned) {
        /* keys current now that the set does not know: created after it */
        qsort(recorded, nrec, sizeof(char *), cmpstr);
        for (size_t i = 0; i < vs.nlatest && rc == 0; i++) {
            char *key = cf_strdup(vs.latest[i]);
            *strchr(key, '\n') = 0;
            if (!has(recorded, nrec, key)) {
                created++;
                if (o->rollback && cf_store_remove(bucket, key) != 0)
                    rc = -1;
            }
            free(key);
        }
        char d[256];
        if (o->rollback)
            snprintf(d, sizeof d, "%ld object(s) rolled back, %ld created after the set removed",
                     rolled, created);
        else
            snprintf(d, sizeof d,
                     "%ld object(s) changed and %ld created since the set%s", changed, created,
                     changed || created ? "; --rollback-objects makes the bucket match the set"
                                        : "");
        if (rc == 0)
            add_check(checks, 1, c->name, d);
    } else if (rc == 0) {
        char d[128];
        snprintf(d, sizeof d, "%ld object(s) restored", written);
        add_check(checks, 1, c->name, d);
    }
    cf_strv_free(recorded, nrec);
    cf_strv_free(vs.ver, vs.nver);
    cf_strv_free(vs.latest, vs.nlatest);
    cf_store_free(bucket);
    return rc < 0 ? -1 : problems;
}
