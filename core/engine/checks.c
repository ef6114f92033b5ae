/* Application checks: see checks.h. */
#include "engine/checks.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/files.h"
#include "engine/manifest.h"
#include "plugin/host.h"
#include "plugin/registry.h"
#include "util/beneath.h"
#include "util/util.h"

#define PROBLEM_MAX 1024 /* bytes of one listed problem */

/* ---- what the set recorded ------------------------------------------- */

typedef struct objent {
    char *key;
    uint64_t size;
} objent;

typedef struct objlist {
    const char *comp;
    objent *v;
    size_t n, cap;
} objlist;

typedef struct ckrun {
    const cf_checks_env *e;
    const cf_policy *p;
    int scanned;      /* the manifest was read (ok or not) */
    char *scan_error; /* why it could not be, or NULL */
    json_t *meta;     /* component -> recorded metadata object */
    objlist *objs;    /* object_store components some check names */
    size_t nobjs;
    /* Checks run on several threads: the one pass over the manifest is
     * made once, by the first check that needs it; driver instances are
     * made and freed one at a time (a client library may initialise
     * itself in its first instance, not thread-safely). */
    pthread_mutex_t scan_mu, open_mu;
} ckrun;

static int cmp_obj(const void *a, const void *b)
{
    return strcmp(((const objent *)a)->key, ((const objent *)b)->key);
}

static objlist *objs_of(ckrun *r, const char *comp)
{
    for (size_t i = 0; i < r->nobjs; i++)
        if (strcmp(r->objs[i].comp, comp) == 0)
            return &r->objs[i];
    return NULL;
}

/* One pass over the set's manifest: metadata of database components and
 * the object keys of the object stores the checks name. */
static int scan_set_locked(ckrun *r);
static int scan_set(ckrun *r)
{
    pthread_mutex_lock(&r->scan_mu);
    int rc = scan_set_locked(r);
    pthread_mutex_unlock(&r->scan_mu);
    return rc;
}

static int scan_set_locked(ckrun *r)
{
    if (r->scanned)
        return r->scan_error ? -1 : 0;
    r->scanned = 1;
    r->meta = json_object();
    for (size_t i = 0; i < r->p->nchecks; i++) {
        const cf_app_check *ck = &r->p->checks[i];
        const cf_component *co = ck->component ? cf_policy_component(r->p, ck->component) : NULL;
        if (co && co->type == CF_COMP_OBJECT_STORE && !objs_of(r, co->name)) {
            r->objs = cf_realloc(r->objs, (r->nobjs + 1) * sizeof *r->objs);
            r->objs[r->nobjs++] = (objlist){.comp = co->name};
        }
    }
    cf_mreader *m;
    json_t *h;
    if (cf_manifest_open(r->e->run->repo, r->e->set_id, &m, &h) != 0) {
        r->scan_error = cf_strdup(cf_error());
        return -1;
    }
    json_decref(h);
    cf_entry ent;
    int rc;
    while ((rc = cf_manifest_next(m, &ent)) == 1) {
        if (ent.kind == CF_ENT_META && ent.meta && ent.component) {
            json_t *o = json_object_get(r->meta, ent.component);
            if (!o)
                json_object_set_new(r->meta, ent.component, o = json_object());
            json_object_update(o, ent.meta);
        } else if (ent.kind == CF_ENT_OBJECT && ent.component) {
            objlist *l = objs_of(r, ent.component);
            if (l) {
                if (l->n == l->cap) {
                    l->cap = l->cap ? 2 * l->cap : 256;
                    l->v = cf_realloc(l->v, l->cap * sizeof *l->v);
                }
                l->v[l->n++] = (objent){ent.path, ent.size};
                ent.path = NULL;
            }
        }
        cf_entry_clear(&ent);
    }
    cf_manifest_close(m);
    if (rc < 0) {
        r->scan_error = cf_strdup(cf_error());
        return -1;
    }
    for (size_t i = 0; i < r->nobjs; i++)
        if (r->objs[i].n)
            qsort(r->objs[i].v, r->objs[i].n, sizeof(objent), cmp_obj);
    return 0;
}

static void ckrun_free(ckrun *r)
{
    for (size_t i = 0; i < r->nobjs; i++) {
        for (size_t k = 0; k < r->objs[i].n; k++)
            free(r->objs[i].v[k].key);
        free(r->objs[i].v);
    }
    free(r->objs);
    json_decref(r->meta);
    free(r->scan_error);
    pthread_mutex_destroy(&r->scan_mu);
    pthread_mutex_destroy(&r->open_mu);
}

static int dbinst_open(ckrun *r, const cf_component *c, cf_dbinst *d)
{
    pthread_mutex_lock(&r->open_mu);
    int rc = cf_dbinst_open(c, r->e->root, d);
    pthread_mutex_unlock(&r->open_mu);
    return rc;
}

static void dbinst_close(ckrun *r, cf_dbinst *d)
{
    pthread_mutex_lock(&r->open_mu);
    cf_dbinst_close(d);
    pthread_mutex_unlock(&r->open_mu);
}

/* ---- one check's result ----------------------------------------------- */

typedef struct result {
    const char *file; /* the policy's */
    const cf_app_check *ck;
    long long rows, problems;
    json_t *first; /* the first `show` problems */
    int missing;   /* problems that are missing paths (references) */
    char *error;   /* status error: why */
    double secs;   /* how long it ran */
} result;

static void add_problem(result *res, const char *fmt, ...) CF_PRINTF(2, 3);
static void add_problem(result *res, const char *fmt, ...)
{
    res->problems++;
    if (json_array_size(res->first) >= (size_t)res->ck->show)
        return;
    char buf[PROBLEM_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    /* a row may hold bytes that are not UTF-8 */
    json_t *s = json_string(buf);
    if (!s) {
        for (char *q = buf; *q; q++)
            if ((unsigned char)*q >= 0x80)
                *q = '?';
        s = json_string(buf);
    }
    json_array_append_new(res->first, s);
}

static void set_error(result *res, const char *fmt, ...) CF_PRINTF(2, 3);
/* Status error: "FILE:LINE:COL: check 'NAME': why", at the query (or,
 * without one, at the check's list item). */
static void set_error(result *res, const char *fmt, ...)
{
    const cf_app_check *ck = res->ck;
    va_list ap;
    va_start(ap, fmt);
    char *why = cf_vasprintf(fmt, ap);
    va_end(ap);
    free(res->error);
    res->error = cf_asprintf("%s:%d:%d: check '%s': %s", res->file,
                             ck->query_line ? ck->query_line : ck->line,
                             ck->query_line ? ck->query_col : ck->col, ck->name, why);
    free(why);
}

/* ---- paths ------------------------------------------------------------- */

int cf_check_in_paths(const cf_strlist *paths, const char *rel)
{
    for (size_t i = 0; i < paths->n; i++) {
        const char *p = paths->v[i];
        size_t n = strlen(p);
        if (strcmp(p, ".") == 0 || strcmp(p, rel) == 0 ||
            (strncmp(p, rel, n) == 0 && rel[n] == '/'))
            return 1;
    }
    return 0;
}

const char *cf_check_ref_path(const cf_policy *p, const cf_app_check *ck, const char *value,
                              cf_buf *buf, const char **why)
{
    buf->len = 0;
    cf_buf_append(buf, ck->prefix, strlen(ck->prefix));
    cf_buf_append(buf, value, strlen(value) + 1);
    const char *s = (const char *)buf->data;
    if (s[0] == '/') {
        size_t n = strlen(p->root);
        if (strcmp(p->root, "/") == 0)
            s++;
        else if (strncmp(s, p->root, n) == 0 && s[n] == '/')
            s += n + 1;
        else {
            *why = "outside the policy root";
            return NULL;
        }
    }
    if (cf_path_safe(s) != 0) {
        *why = "not a plain path";
        return NULL;
    }
    return s;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Lowercase hex SHA-256 of an open file into hex (65 bytes). */
static int sha256_fd(int fd, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return -1;
    }
    unsigned char buf[65536], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    ssize_t n;
    int rc = 0;
    while ((n = read(fd, buf, sizeof buf)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -1;
            break;
        }
        if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && EVP_DigestFinal_ex(ctx, md, &mdlen) != 1)
        rc = -1;
    EVP_MD_CTX_free(ctx);
    if (rc == 0) {
        for (unsigned i = 0; i < mdlen; i++) {
            hex[2 * i] = digits[md[i] >> 4];
            hex[2 * i + 1] = digits[md[i] & 15];
        }
        hex[2 * mdlen] = 0;
    }
    return rc;
}

/* ---- the query --------------------------------------------------------- */

typedef struct qctx {
    ckrun *r;
    result *res;
    const cf_app_check *ck;
    const cf_component *co; /* references/orphans: the component */
    int rootfd;             /* files component: its restore root */
    objlist *objs;          /* object_store component: recorded keys */
    uint64_t *hashes;       /* orphans */
    size_t nhash, caphash;
    cf_buf path;
    struct timespec start;
    int timed_out, cancelled;
} qctx;

static double elapsed(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void check_reference(qctx *q, int ncols, const char *const *v)
{
    const char *why = NULL;
    const char *rel = cf_check_ref_path(q->r->p, q->ck, v[0], &q->path, &why);
    const char *size_s = ncols > 1 ? v[1] : NULL, *sha_s = ncols > 2 ? v[2] : NULL;
    uint64_t want = 0;
    if (size_s && cf_parse_u64(size_s, &want) != 0) {
        add_problem(q->res, "%s%s: recorded size '%s' is not a number", q->ck->prefix, v[0],
                    size_s);
        return;
    }
    if (q->objs) {
        char *key = (char *)q->path.data; /* prefix + value: keys are not paths */
        objent k = {key, 0};
        objent *o =
            q->objs->n ? bsearch(&k, q->objs->v, q->objs->n, sizeof(objent), cmp_obj) : NULL;
        if (!o) {
            q->res->missing++;
            add_problem(q->res, "%s: missing", key);
        } else if (size_s && o->size != want) {
            add_problem(q->res, "%s: size %" PRIu64 " != recorded %" PRIu64, key, o->size, want);
        }
        return;
    }
    if (!rel) {
        add_problem(q->res, "%s: %s", (const char *)q->path.data, why);
        return;
    }
    if (!cf_check_in_paths(&q->co->paths, rel)) {
        add_problem(q->res, "%s: outside component '%s'", rel, q->co->name);
        return;
    }
    int fd = cf_beneath_open(q->rootfd, rel, O_RDONLY | O_NONBLOCK, 0);
    if (fd < 0) {
        if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR || errno == EXDEV) {
            q->res->missing++;
            add_problem(q->res, "%s: missing", rel);
        } else {
            add_problem(q->res, "%s: cannot open: %s", rel, strerror(errno));
        }
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        q->res->missing++;
        add_problem(q->res, "%s: missing (not a regular file)", rel);
        return;
    }
    if (size_s && (uint64_t)st.st_size != want) {
        add_problem(q->res, "%s: size %" PRIu64 " != recorded %" PRIu64, rel, (uint64_t)st.st_size,
                    want);
    } else if (sha_s) {
        char hex[2 * EVP_MAX_MD_SIZE + 1];
        if (sha256_fd(fd, hex) != 0)
            add_problem(q->res, "%s: cannot read: %s", rel, strerror(errno));
        else if (strcasecmp(hex, sha_s) != 0)
            add_problem(q->res, "%s: sha256 differs", rel);
    }
    close(fd);
}

static void note_reference(qctx *q, const char *value)
{
    const char *why;
    const char *s;
    if (q->objs) {
        q->path.len = 0;
        cf_buf_append(&q->path, q->ck->prefix, strlen(q->ck->prefix));
        cf_buf_append(&q->path, value, strlen(value) + 1);
        s = (const char *)q->path.data;
    } else if (!(s = cf_check_ref_path(q->r->p, q->ck, value, &q->path, &why))) {
        return; /* references nothing that could be walked */
    }
    if (q->nhash == q->caphash) {
        q->caphash = q->caphash ? q->caphash + q->caphash / 2 : 4096;
        q->hashes = cf_realloc(q->hashes, q->caphash * sizeof *q->hashes);
    }
    q->hashes[q->nhash++] = cf_path_hash(s);
}

static void sql_row(qctx *q, int ncols, const char *const *v)
{
    cf_buf b = {0};
    for (int i = 0; i < ncols && b.len < PROBLEM_MAX; i++) {
        if (i)
            cf_buf_append(&b, " | ", 3);
        const char *s = v[i] ? v[i] : "NULL";
        cf_buf_append(&b, s, strlen(s));
    }
    cf_buf_append(&b, "", 1);
    add_problem(q->res, "%s", (const char *)b.data);
    cf_buf_free(&b);
}

static int row_cb(void *ud, int ncols, const char *const *v)
{
    qctx *q = ud;
    q->res->rows++;
    if (cf_cancel_flag) {
        q->cancelled = 1;
        return 1;
    }
    if ((q->res->rows & 255) == 0 && elapsed(&q->start) > q->ck->timeout) {
        q->timed_out = 1;
        return 1;
    }
    switch (q->ck->type) {
    case CF_CHECK_SQL:
        sql_row(q, ncols, v);
        break;
    case CF_CHECK_REFERENCES:
        if (ncols >= 1 && v[0])
            check_reference(q, ncols, v);
        break;
    case CF_CHECK_ORPHANS:
        if (ncols >= 1 && v[0])
            note_reference(q, v[0]);
        break;
    case CF_CHECK_ROW_COUNTS:
        break;
    }
    return 0;
}

/* Run the check's query; 0, or -1 with res->error set. */
static int run_query(qctx *q)
{
    const cf_policy *p = q->r->p;
    const cf_app_check *ck = q->ck;
    const cf_component *db = cf_policy_component(p, ck->database);
    cf_dbinst inst;
    if (dbinst_open(q->r, db, &inst) != 0) {
        set_error(q->res, "%s", cf_error());
        return -1;
    }
    int rc = 0;
    if (!inst.ops->query_target) {
        set_error(
            q->res,
            "database driver '%s' (component '%s') cannot run queries against a restored database",
            db->driver, db->name);
        rc = -1;
    } else {
        const char *map = q->r->e->ro ? cf_restore_map(q->r->e->ro, db->name) : NULL;
        coffer_restore_opts ro = {.struct_size = sizeof ro, .root = q->r->e->root, .target = map};
        clock_gettime(CLOCK_MONOTONIC, &q->start);
        /* the driver polls cancelled(): a query still computing its
         * first row is stopped at the timeout too */
        inst.hctx->deadline = cf_now() + ck->timeout;
        coffer_status st = inst.ops->query_target(inst.inst, &ro, ck->query, row_cb, q);
        if (st == COFFER_ERR_CANCELLED && !cf_cancel_flag && cf_now() > inst.hctx->deadline) {
            set_error(q->res, "timed out after %d s (%lld rows read); the query was cancelled",
                      ck->timeout, q->res->rows);
            rc = -1;
        } else if (st != COFFER_OK) {
            cf_hctx_fail(inst.hctx, st, NULL);
            set_error(q->res, "%s", cf_error());
            rc = -1;
        } else if (q->timed_out) {
            set_error(q->res, "timed out after %d s (%lld rows read)", ck->timeout, q->res->rows);
            rc = -1;
        } else if (q->cancelled || cf_cancel_flag) {
            set_error(q->res, "cancelled");
            rc = -1;
        }
    }
    dbinst_close(q->r, &inst);
    return rc;
}

/* ---- orphans: the walk ------------------------------------------------- */

typedef struct walk {
    qctx *q;
    char **skip; /* paths owned by file databases (moved in by the restore) */
    size_t nskip;
    cf_buf rel;
    int error;
} walk;

static int referenced(qctx *q, const char *rel)
{
    uint64_t h = cf_path_hash(rel);
    return q->nhash && bsearch(&h, q->hashes, q->nhash, sizeof h, cmp_u64) != NULL;
}

static int skipped(walk *w, const char *rel)
{
    const cf_app_check *ck = w->q->ck;
    if (cf_exclude_match(&ck->exclude, rel) || cf_exclude_match(&w->q->co->exclude, rel))
        return 1;
    for (size_t i = 0; i < w->nskip; i++)
        if (strcmp(w->skip[i], rel) == 0)
            return 1;
    return 0;
}

static void consider_file(walk *w, const char *rel)
{
    if (!skipped(w, rel) && !referenced(w->q, rel))
        add_problem(w->q->res, "%s", rel);
}

/* Walk the directory dfd (owned) whose path is w->rel. */
static void walk_dir(walk *w, int dfd)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        w->error = errno;
        return;
    }
    size_t base = w->rel.len;
    struct dirent *de;
    while (!w->error && (de = readdir(d)) != NULL) {
        if (cf_cancel_flag || (w->q->timed_out = elapsed(&w->q->start) > w->q->ck->timeout))
            break;
        const char *n = de->d_name;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
            continue;
        /* what a restore with --force kept aside is not part of the tree */
        if (base == 0 && strncmp(n, ".coffer-", 8) == 0)
            continue;
        w->rel.len = base;
        if (base)
            cf_buf_append(&w->rel, "/", 1);
        cf_buf_append(&w->rel, n, strlen(n) + 1);
        w->rel.len--;
        const char *rel = (const char *)w->rel.data;
        /* the entry's type from the directory itself where the file
         * system gives it, else from a stat that does not follow links */
        mode_t type = de->d_type == DT_DIR ? S_IFDIR : de->d_type == DT_REG ? S_IFREG : 0;
        struct stat st;
        if (de->d_type == DT_UNKNOWN) {
            if (fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) != 0)
                continue; /* gone meanwhile */
            type = st.st_mode & S_IFMT;
        }
        if (S_ISDIR(type)) {
            if (skipped(w, rel))
                continue;
            int sub = openat(dirfd(d), n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0)
                walk_dir(w, sub);
        } else if (S_ISREG(type)) {
            consider_file(w, rel);
        }
    }
    w->rel.len = base;
    cf_buf_append(&w->rel, "", 1);
    w->rel.len = base;
    closedir(d);
}

/* The paths file databases own: the restore moved them into the tree,
 * they are nobody's orphans. */
static void owned_paths(ckrun *r, walk *w)
{
    const cf_policy *p = r->p;
    for (size_t i = 0; i < p->ncomponents; i++) {
        const cf_component *c = &p->components[i];
        if (c->type != CF_COMP_DATABASE)
            continue;
        cf_dbinst db;
        if (dbinst_open(r, c, &db) != 0)
            continue;
        if (db.ops->owned_paths) {
            const char *paths[16];
            size_t n = db.ops->owned_paths(db.inst, paths, 16);
            for (size_t k = 0; k < n && k < 16; k++) {
                w->skip = cf_realloc(w->skip, (w->nskip + 1) * sizeof *w->skip);
                w->skip[w->nskip++] = cf_strdup(paths[k]);
            }
        }
        dbinst_close(r, &db);
    }
}

static void orphans_files(qctx *q)
{
    walk w = {.q = q};
    owned_paths(q->r, &w);
    const cf_strlist *under = q->ck->under.n ? &q->ck->under : &q->co->paths;
    for (size_t i = 0; i < under->n && !w.error && !q->timed_out; i++) {
        const char *u = under->v[i];
        int fd = strcmp(u, ".") == 0 ? fcntl(q->rootfd, F_DUPFD_CLOEXEC, 0)
                                     : cf_beneath_open(q->rootfd, u, O_RDONLY | O_NONBLOCK, 0);
        if (fd < 0)
            continue; /* not restored: nothing there can be an orphan */
        struct stat st;
        if (fstat(fd, &st) != 0) {
            close(fd);
            continue;
        }
        w.rel.len = 0;
        if (S_ISREG(st.st_mode)) {
            close(fd);
            consider_file(&w, u);
        } else if (S_ISDIR(st.st_mode)) {
            if (strcmp(u, ".") != 0)
                cf_buf_append(&w.rel, u, strlen(u));
            cf_buf_append(&w.rel, "", 1);
            w.rel.len--;
            walk_dir(&w, fd);
        } else {
            close(fd);
        }
    }
    if (w.error)
        set_error(q->res, "cannot read the restored tree: %s", strerror(w.error));
    else if (q->timed_out)
        set_error(q->res, "timed out after %d s", q->ck->timeout);
    for (size_t i = 0; i < w.nskip; i++)
        free(w.skip[i]);
    free(w.skip);
    cf_buf_free(&w.rel);
}

static void orphans_objects(qctx *q)
{
    const objlist *l = q->objs;
    for (size_t i = 0; i < l->n; i++) {
        const char *key = l->v[i].key;
        int in = q->ck->under.n == 0;
        for (size_t k = 0; !in && k < q->ck->under.n; k++) {
            const char *u = q->ck->under.v[k];
            size_t n = strlen(u);
            in = strcmp(u, ".") == 0 || (strncmp(key, u, n) == 0 && (!key[n] || key[n] == '/'));
        }
        if (in && !cf_exclude_match(&q->ck->exclude, key) && !referenced(q, key))
            add_problem(q->res, "%s", key);
    }
}

/* ---- the check types ------------------------------------------------- */

static void paths_check(ckrun *r, result *res)
{
    const cf_app_check *ck = res->ck;
    qctx q = {.r = r, .res = res, .ck = ck, .rootfd = -1};
    q.co = cf_policy_component(r->p, ck->component);
    char *froot = NULL;
    if (q.co->type == CF_COMP_OBJECT_STORE) {
        if (scan_set(r) != 0) {
            set_error(res, "cannot read set %s: %s", r->e->set_id, r->scan_error);
            return;
        }
        q.objs = objs_of(r, q.co->name);
    } else {
        const char *map = r->e->ro ? cf_restore_map(r->e->ro, q.co->name) : NULL;
        froot = map ? cf_abspath(map) : cf_strdup(r->e->root);
        q.rootfd = open(froot, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (q.rootfd < 0) {
            set_error(res, "cannot open %s, where component '%s' was restored: %s", froot,
                      q.co->name, strerror(errno));
            free(froot);
            return;
        }
    }
    if (run_query(&q) == 0 && ck->type == CF_CHECK_ORPHANS) {
        qsort(q.hashes, q.nhash, sizeof *q.hashes, cmp_u64);
        clock_gettime(CLOCK_MONOTONIC, &q.start);
        if (q.objs)
            orphans_objects(&q);
        else
            orphans_files(&q);
    }
    if (q.rootfd >= 0)
        close(q.rootfd);
    free(q.hashes);
    cf_buf_free(&q.path);
    free(froot);
}

static void sql_check(ckrun *r, result *res)
{
    qctx q = {.r = r, .res = res, .ck = res->ck, .rootfd = -1};
    run_query(&q);
}

/* rows.* recorded in the set against the driver's verify results. */
static void row_counts(ckrun *r, result *res)
{
    const cf_app_check *ck = res->ck;
    if (scan_set(r) != 0) {
        set_error(res, "cannot read set %s: %s", r->e->set_id, r->scan_error);
        return;
    }
    for (size_t i = 0; i < r->p->ncomponents; i++) {
        const cf_component *c = &r->p->components[i];
        if (c->type != CF_COMP_DATABASE || (ck->database && strcmp(ck->database, c->name) != 0))
            continue;
        json_t *meta = json_object_get(r->meta, c->name);
        size_t recorded = 0, reported = 0;
        const char *key;
        json_t *val;
        json_object_foreach(meta, key, val)
        {
            if (strncmp(key, "rows.", 5) != 0)
                continue;
            recorded++;
            res->rows++;
            json_t *found = NULL, *dc;
            size_t k;
            json_array_foreach(r->e->driver_checks, k, dc)
            {
                const char *comp = json_string_value(json_object_get(dc, "component"));
                const char *chk = json_string_value(json_object_get(dc, "check"));
                if (comp && chk && strcmp(comp, c->name) == 0 && strcmp(chk, key) == 0)
                    found = dc;
            }
            if (!found)
                continue;
            reported++;
            if (!json_is_true(json_object_get(found, "ok")))
                add_problem(res, "%s: %s: %s", c->name, key,
                            json_string_value(json_object_get(found, "detail")) ?: "failed");
        }
        /* tables the driver found that the set does not know */
        json_t *dc;
        size_t k;
        json_array_foreach(r->e->driver_checks, k, dc)
        {
            const char *comp = json_string_value(json_object_get(dc, "component"));
            const char *chk = json_string_value(json_object_get(dc, "check"));
            if (comp && chk && strcmp(comp, c->name) == 0 && strncmp(chk, "rows.", 5) == 0 &&
                !json_object_get(meta, chk) && !json_is_true(json_object_get(dc, "ok")))
                add_problem(res, "%s: %s: %s", c->name, chk,
                            json_string_value(json_object_get(dc, "detail")) ?: "failed");
        }
        if (recorded && !reported)
            add_problem(res, "%s: the set recorded %zu row count(s), the driver reported none",
                        c->name, recorded);
        else if (recorded > reported)
            add_problem(res, "%s: %zu of %zu recorded row count(s) not checked by the driver",
                        c->name, recorded - reported, recorded);
    }
}

/* ---- reporting ----------------------------------------------------------- */

static void list_first(cf_buf *b, json_t *first, long long problems)
{
    size_t i;
    json_t *s;
    json_array_foreach(first, i, s)
    {
        cf_buf_append(b, i ? ", " : ": ", 2);
        const char *t = json_string_value(s);
        cf_buf_append(b, t, strlen(t));
    }
    if ((long long)json_array_size(first) < problems && json_array_size(first))
        cf_buf_append(b, ", ...", 5);
}

/* The summary of a check that ran: "3 of 41230 paths missing: a, b, c". */
static char *summary(const result *res)
{
    const cf_app_check *ck = res->ck;
    if (!res->problems) {
        switch (ck->type) {
        case CF_CHECK_ROW_COUNTS:
            return cf_asprintf("%lld tables", res->rows);
        case CF_CHECK_REFERENCES:
            return cf_asprintf("%lld paths", res->rows);
        case CF_CHECK_ORPHANS:
            return cf_asprintf("%lld paths referenced", res->rows);
        default:
            return cf_asprintf("%lld rows", res->rows);
        }
    }
    cf_buf b = {0};
    char *head;
    switch (ck->type) {
    case CF_CHECK_REFERENCES:
        head = res->missing == res->problems
                   ? cf_asprintf("%lld of %lld paths missing", res->problems, res->rows)
                   : cf_asprintf("%lld of %lld paths with problems", res->problems, res->rows);
        break;
    case CF_CHECK_ORPHANS:
        head = cf_asprintf("%lld unreferenced file(s)", res->problems);
        break;
    case CF_CHECK_ROW_COUNTS:
        head = cf_asprintf("%lld row count problem(s)", res->problems);
        break;
    default:
        head = cf_asprintf("%lld row(s)", res->problems);
        break;
    }
    cf_buf_append(&b, head, strlen(head));
    free(head);
    list_first(&b, res->first, res->problems);
    cf_buf_append(&b, "", 1);
    return (char *)b.data;
}

/* ---- running them ------------------------------------------------------- */

static void run_one(ckrun *r, result *res)
{
    const cf_app_check *ck = res->ck;
    double t0 = cf_now();
    if (cf_cancel_flag)
        set_error(res, "cancelled");
    else if (ck->type == CF_CHECK_ROW_COUNTS)
        row_counts(r, res);
    else if (ck->type == CF_CHECK_SQL)
        sql_check(r, res);
    else
        paths_check(r, res);
    res->secs = cf_now() - t0;
}

/* Checks are independent: each opens its own driver instance and reads
 * the restored tree without writing. They are taken in policy order by a
 * few threads and reported in that order as each finishes. */
typedef struct ckpool {
    ckrun *r;
    result *res;
    unsigned char *done;
    size_t n, next;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} ckpool;

static void *ck_worker(void *arg)
{
    ckpool *pl = arg;
    pthread_mutex_lock(&pl->mu);
    while (pl->next < pl->n) {
        size_t i = pl->next++;
        pthread_mutex_unlock(&pl->mu);
        run_one(pl->r, &pl->res[i]);
        pthread_mutex_lock(&pl->mu);
        pl->done[i] = 1;
        pthread_cond_broadcast(&pl->cv);
    }
    pthread_mutex_unlock(&pl->mu);
    return NULL;
}

/* How many threads may run the checks: one when a driver they query
 * promises nothing about threads (its instances may share state). */
static int ck_threads(const cf_policy *p)
{
    for (size_t i = 0; i < p->nchecks; i++) {
        const cf_component *db =
            p->checks[i].database ? cf_policy_component(p, p->checks[i].database) : NULL;
        const cf_driver *d = db ? cf_registry_find(COFFER_KIND_DATABASE, db->driver) : NULL;
        if (d && d->desc.threading < COFFER_THREADS_PER_INSTANCE)
            return 1;
    }
    int n = cf_cpus(1, 4);
    return (size_t)n > p->nchecks ? (int)p->nchecks : n;
}

static int report(const result *res, json_t *out)
{
    const cf_app_check *ck = res->ck;
    const char *status = res->error       ? "error"
                         : !res->problems ? "pass"
                         : ck->warn       ? "warn"
                                          : "fail";
    char *detail = res->error ? cf_strdup(res->error) : summary(res);
    cf_log(CF_LOG_DEBUG, "check %s: ran %.3f s", ck->name, res->secs);
    if (res->error)
        cf_log(CF_LOG_ERROR, "check %s: ERROR: %s", ck->name, detail);
    else if (!res->problems)
        cf_log(CF_LOG_INFO, "check %s: PASS (%s)", ck->name, detail);
    else
        cf_log(ck->warn ? CF_LOG_WARN : CF_LOG_ERROR, "check %s: %s: %s", ck->name,
               ck->warn ? "WARN" : "FAIL", detail);
    json_array_append_new(
        out, json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:O,s:s,s:f}", "name", ck->name, "type",
                       cf_check_type_name(ck->type), "level", ck->warn ? "warn" : "fail", "status",
                       status, "rows", (json_int_t)res->rows, "problems", (json_int_t)res->problems,
                       "first", res->first, "detail", detail, "seconds", res->secs));
    free(detail);
    return res->error || (res->problems && !ck->warn);
}

int cf_checks_run(const cf_checks_env *e, json_t *out)
{
    if (!e || !e->run || !e->run->policy || !e->root || !out)
        return cf_fail("checks: nothing to check against");
    ckrun r = {.e = e, .p = e->run->policy};
    pthread_mutex_init(&r.scan_mu, NULL);
    pthread_mutex_init(&r.open_mu, NULL);
    size_t n = r.p->nchecks;
    ckpool pl = {.r = &r, .n = n};
    pl.res = cf_calloc(n ? n : 1, sizeof *pl.res);
    pl.done = cf_calloc(n ? n : 1, 1);
    for (size_t i = 0; i < n; i++)
        pl.res[i] = (result){.file = r.p->file, .ck = &r.p->checks[i], .first = json_array()};
    pthread_mutex_init(&pl.mu, NULL);
    pthread_cond_init(&pl.cv, NULL);
    int want = ck_threads(r.p), nth = 0;
    pthread_t th[4];
    while (want > 1 && nth < want && pthread_create(&th[nth], NULL, ck_worker, &pl) == 0)
        nth++;
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (!nth) {
            run_one(&r, &pl.res[i]); /* one thread, or none could start */
        } else {
            pthread_mutex_lock(&pl.mu);
            while (!pl.done[i])
                pthread_cond_wait(&pl.cv, &pl.mu);
            pthread_mutex_unlock(&pl.mu);
        }
        failed += report(&pl.res[i], out);
    }
    for (int k = 0; k < nth; k++)
        pthread_join(th[k], NULL);
    for (size_t i = 0; i < n; i++) {
        json_decref(pl.res[i].first);
        free(pl.res[i].error);
    }
    free(pl.res);
    free(pl.done);
    pthread_mutex_destroy(&pl.mu);
    pthread_cond_destroy(&pl.cv);
    ckrun_free(&r);
    return failed;
}
