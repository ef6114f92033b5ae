/*
 * Backup: stop (maintenance) -> databases -> files -> start -> flush packs
 * and index -> write the manifest last. Files are read by a small pool of
 * workers (reading, chunking, hashing and compression overlap on all
 * cores); the main thread walks the tree and emits manifest entries in
 * walk order through a bounded ring, so memory does not grow with the
 * number of files.
 */
#include "engine/backup.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/files.h"
#include "engine/ingest.h"
#include "engine/manifest.h"
#include "engine/recover.h"
#include "engine/objects.h"
#include "engine/prefetch.h"
#include "engine/prevset.h"
#include "engine/progress.h"
#include "engine/refcheck.h"
#include "plugin/host.h"
#include "util/beneath.h"
#include "plugin/registry.h"
#include "snapshot/snapshot.h"
#include "util/util.h"

int cf_worker_count(void)
{
    const char *env = getenv("COFFER_WORKERS");
    long n = env ? strtol(env, NULL, 10) : cf_cpus(1, 16);
    if (n < 1)
        n = 1;
    if (n > 16)
        n = 16;
    return (int)n;
}

/* ---- file workers --------------------------------------------------- */

#define RING 1024

typedef struct job {
    cf_entry e;
    char *abs;
    int needs_read;
    int done;
    int vanished; /* deleted between the walk and the read: left out */
    int unreadable; /* could not be read and may be left out: err holds why */
    int prefetched; /* counted in pool.pf_ahead until a worker takes it */
    cf_entry *fallback; /* the first pass's copy, kept if the file vanished since */
    char *line; /* the previous set's line, written as is (unchanged file) */
    size_t line_len;
    int rc;
    char *err; /* why it failed or was left out */
} job;

typedef struct pool {
    cf_run *run;
    const cf_cdc *cdc;
    cf_prevset *prev; /* the previous set, for the walk running now (NULL: none) */
    int online;
    job *ring[RING];
    size_t head, tail, next_work; /* monotonically increasing, index % RING */
    int stop;
    pthread_mutex_t mu;
    pthread_cond_t work, done, space, pf;
    pthread_t *threads;
    int nthreads;
    /* Data read-ahead: jobs from next_pf on are not yet announced to the
     * kernel; pf_ahead bytes are announced and not yet taken by a worker. */
    size_t next_pf;
    uint64_t pf_ahead;
    pthread_t pf_thread;
    int pf_running;
    cf_mwriter *mw;
    /* stats */
    uint64_t files, dirs, links, bytes, reused_files, read_bytes, vanished;
    uint64_t lines_kept; /* unchanged files written with their previous line */
    /* Paths left out because they could not be read (on_unreadable: skip):
     * the first UNREADABLE_LISTED are named in the set's header. */
    uint64_t unreadable;
    json_t *unreadable_list;
    const char *walking; /* component being walked */
    uint64_t new_raw;
    int failed;
    /* The final pass notes every entry for the reference checks. */
    cf_refcheck *rck;
    /* Second pass of an online backup: the first pass's entries, merged
     * in walk order (p1e is the next one, when p1_have). */
    cf_mwriter *p1;
    cf_entry p1e;
    int p1_have, p1_eof;
    cf_fssnap **snaps;  /* per component: the file system snapshot it is read from, or NULL */
    uint64_t p1_kept;   /* first-pass entries gone from the tree since: kept */
    uint64_t p1_reused; /* files unchanged since the first pass (not read again) */
} pool;

static int same_xattrs(const cf_entry *a, const cf_entry *b)
{
    if (a->nxattrs != b->nxattrs)
        return 0;
    for (size_t i = 0; i < a->nxattrs; i++)
        if (strcmp(a->xattrs[i].name, b->xattrs[i].name) != 0 ||
            a->xattrs[i].len != b->xattrs[i].len ||
            memcmp(a->xattrs[i].value, b->xattrs[i].value, a->xattrs[i].len) != 0)
            return 0;
    return 1;
}

/* A file unchanged since the previous set (cf_entry_unchanged) whose
 * chunks are all still stored keeps its chunk list without being read. Runs on the walking
 * thread: an unchanged tree costs a metadata scan, no worker handoff. */
static int reuse_previous(pool *pl, job *j)
{
    const cf_entry *p = cf_prevset_find(pl->prev, &j->e);
    if (!cf_entry_unchanged(p, &j->e) || p->kind != CF_ENT_FILE || !cf_prevset_stored(pl->prev))
        return 0;
    j->e.chunks = cf_malloc((p->nchunks ? p->nchunks : 1) * sizeof(cf_id));
    memcpy(j->e.chunks, p->chunks, p->nchunks * sizeof(cf_id));
    j->e.nchunks = p->nchunks;
    cf_progress_add(j->e.size, 0);
    /* Its new line is its old one when the members the old one does not
     * share with every unchanged file (names, device, links, xattrs) are
     * the same too. */
    size_t ll;
    const char *line = cf_prevset_line(pl->prev, &ll);
    if (line && cf_streq(p->user, j->e.user) && cf_streq(p->group, j->e.group) &&
        p->dev == j->e.dev && p->nlink == j->e.nlink && same_xattrs(p, &j->e)) {
        j->line = cf_malloc(ll);
        memcpy(j->line, line, ll);
        j->line_len = ll;
        pl->lines_kept++;
    }
    return 1;
}

static int read_file(pool *pl, cf_ingest *g, job *j)
{
    int fd = open(j->abs, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
    if (fd < 0 && errno == EPERM)
        fd = open(j->abs, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && j->e.nlink <= 1) {
        /* A live tree loses files (temporary uploads renamed into place):
         * the file is simply not part of this set. */
        cf_log(CF_LOG_WARN, "%s: vanished during the backup, not in this set", j->e.path);
        j->vanished = 1;
        return 0;
    }
    const cf_component *comp = cf_policy_component(pl->run->policy, j->e.component);
    if (fd < 0 && comp && cf_unreadable_skippable(comp, j->e.path, errno)) {
        j->err = cf_strdup(strerror(errno));
        j->unreadable = 1;
        return 0;
    }
    if (fd < 0)
        return cf_fail_errno("cannot read %s", j->abs);
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    cf_ingest_reset(g);
    int rc = cf_ingest_fd(g, fd, j->abs);
    if (rc != 0 && errno == EIO && comp && cf_unreadable_skippable(comp, j->e.path, EIO)) {
        /* A read error in the middle: what was chunked stays unreferenced
         * (prune collects it); the file is not in the set. */
        close(fd);
        j->err = cf_strdup(cf_error());
        j->unreadable = 1;
        return 0;
    }
    struct stat st;
    if (rc == 0 && fstat(fd, &st) == 0 &&
        (st.st_mtim.tv_sec != j->e.mtime || st.st_mtim.tv_nsec != j->e.mtime_ns ||
         (uint64_t)st.st_size != g->size))
        cf_log(CF_LOG_WARN, "%s changed while it was read%s", j->e.path,
               pl->online ? " (online mode: the copy may be inconsistent)" : "");
    close(fd);
    if (rc == 0)
        rc = cf_ingest_finish(g);
    if (rc != 0)
        return -1;
    j->e.size = g->size;
    j->e.chunks = cf_ingest_take(g, &j->e.nchunks);
    return 0;
}

static void *worker(void *arg)
{
    pool *pl = arg;
    cf_ingest g;
    cf_ingest_init(&g, pl->run->repo, pl->cdc);
    pthread_mutex_lock(&pl->mu);
    for (;;) {
        /* Jobs before head are emitted and freed; never look at them. */
        if (pl->next_work < pl->head)
            pl->next_work = pl->head;
        while (pl->next_work < pl->tail && !pl->ring[pl->next_work % RING]->needs_read)
            pl->next_work++;
        if (pl->next_work < pl->tail) {
            job *j = pl->ring[pl->next_work % RING];
            pl->next_work++;
            if (j->prefetched) {
                pl->pf_ahead -= j->e.size;
                pthread_cond_signal(&pl->pf);
            }
            int stopped = pl->stop; /* read under the lock */
            pthread_mutex_unlock(&pl->mu);
            int rc = stopped ? -1 : read_file(pl, &g, j);
            if (rc < 0 && !j->err)
                j->err = cf_strdup(stopped ? "cancelled" : cf_error());
            pthread_mutex_lock(&pl->mu);
            j->rc = rc < 0 ? -1 : 0;
            j->done = 1;
            pthread_cond_broadcast(&pl->done);
            continue;
        }
        if (pl->stop)
            break;
        pthread_cond_wait(&pl->work, &pl->mu);
    }
    pl->new_raw += g.new_raw;
    pthread_mutex_unlock(&pl->mu);
    cf_ingest_free(&g);
    return NULL;
}

/* Cold caches: two workers reading one file each keep the disk queue
 * short. This thread asks the kernel to start reading the files the
 * workers will take next (POSIX_FADV_WILLNEED), up to PF_AHEAD bytes
 * ahead of them; the pages land in the page cache, not in our memory. */
#define PF_AHEAD (48u << 20)

static void *prefetcher(void *arg)
{
    pool *pl = arg;
    pthread_mutex_lock(&pl->mu);
    while (!pl->stop) {
        /* Jobs before head are emitted and freed, jobs before next_work
         * taken by a worker. */
        if (pl->next_pf < pl->head)
            pl->next_pf = pl->head;
        if (pl->next_pf < pl->next_work)
            pl->next_pf = pl->next_work;
        while (pl->next_pf < pl->tail && !pl->ring[pl->next_pf % RING]->needs_read)
            pl->next_pf++;
        if (pl->next_pf >= pl->tail || pl->pf_ahead >= PF_AHEAD) {
            pthread_cond_wait(&pl->pf, &pl->mu);
            continue;
        }
        job *j = pl->ring[pl->next_pf++ % RING];
        j->prefetched = 1;
        pl->pf_ahead += j->e.size;
        char *path = cf_strdup(j->abs);
        pthread_mutex_unlock(&pl->mu);
        int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME | O_NONBLOCK);
        if (fd < 0 && errno == EPERM)
            fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (fd >= 0) {
            posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
            close(fd);
        }
        free(path);
        pthread_mutex_lock(&pl->mu);
    }
    pthread_mutex_unlock(&pl->mu);
    return NULL;
}

static void job_free(job *j)
{
    cf_entry_clear(&j->e);
    if (j->fallback) {
        cf_entry_clear(j->fallback);
        free(j->fallback);
    }
    free(j->abs);
    free(j->line);
    free(j->err);
    free(j);
}

#define UNREADABLE_LISTED 1000

static void record_unreadable(pool *pl, const char *comp, const char *path, const char *why)
{
    cf_log(CF_LOG_WARN, "%s: cannot be read (%s), not in this set", path, why);
    if (pl->unreadable++ < UNREADABLE_LISTED)
        json_array_append_new(pl->unreadable_list, json_pack("{s:s,s:s,s:s}", "component", comp,
                                                             "path", path, "reason", why));
}

/* Walk callback (walking thread): a directory or file the walk could not read. */
static void walk_unreadable(void *ud, const char *rel, const char *why)
{
    pool *pl = ud;
    pthread_mutex_lock(&pl->mu);
    record_unreadable(pl, pl->walking, rel, why);
    pthread_mutex_unlock(&pl->mu);
}

/* Emit finished jobs at the head of the ring, in order. Called with mu. */
static int emit_ready(pool *pl, int wait_all)
{
    while (pl->head < pl->tail) {
        job *j = pl->ring[pl->head % RING];
        while (!j->done) {
            if (!wait_all && pl->tail - pl->head < RING)
                return 0;
            pthread_cond_wait(&pl->done, &pl->mu);
        }
        pl->head++;
        pthread_cond_broadcast(&pl->space);
        int rc = 0;
        if (j->rc != 0) {
            cf_fail("%s", j->err ? j->err : "failed");
            rc = -1;
        } else if (j->vanished && !j->fallback) {
            pl->vanished++;
        } else if (j->unreadable) {
            record_unreadable(pl, j->e.component, j->e.path, j->err);
        } else {
            if (j->e.kind == CF_ENT_FILE) {
                pl->files++;
                pl->bytes += j->e.size;
            } else if (j->e.kind == CF_ENT_DIR) {
                pl->dirs++;
            } else {
                pl->links++;
            }
            if (j->vanished) { /* read in the first pass, gone since: that copy */
                cf_entry_clear(&j->e);
                j->e = *j->fallback;
                free(j->fallback);
                j->fallback = NULL;
                pl->p1_kept++;
            }
            if (j->e.kind == CF_ENT_FILE) /* the summary counts files, so does the bar */
                cf_progress_add(0, 1);
            rc = j->line ? cf_manifest_add_line(pl->mw, j->line, j->line_len)
                         : cf_manifest_add(pl->mw, &j->e);
            if (rc == 0 && pl->rck)
                rc = cf_refcheck_note(pl->rck, &j->e);
        }
        job_free(j);
        if (rc != 0) {
            pl->failed = 1;
            return -1;
        }
    }
    return 0;
}

/* ---- second pass: merging the first ------------------------------- */

static int p1_peek(pool *pl)
{
    if (pl->p1_have || pl->p1_eof)
        return 0;
    int r = cf_manifest_spool_next(pl->p1, &pl->p1e);
    if (r < 0)
        return -1;
    if (r == 0)
        pl->p1_eof = 1;
    else
        pl->p1_have = 1;
    return 0;
}

static int push_job(pool *pl, job *j, int reused);

/* Emit the first pass's entries that the walk has passed without seeing
 * them again (gone from the tree: captured before the database
 * snapshots, they stay in the set): those before e, or with e NULL those
 * of components up to index upto. The entry equal to e, if any, moves
 * into *match. */
static int p1_drain(pool *pl, const cf_entry *e, int upto, cf_entry **match)
{
    const cf_policy *p = pl->run->policy;
    for (;;) {
        if (p1_peek(pl) != 0)
            return -1;
        if (!pl->p1_have)
            return 0;
        int c = e ? cf_walk_cmp(p, &pl->p1e, e) : cf_comp_index(p, pl->p1e.component) <= upto ? -1 : 1;
        if (c > 0)
            return 0;
        pl->p1_have = 0;
        if (c == 0) {
            *match = cf_malloc(sizeof **match);
            **match = pl->p1e;
            memset(&pl->p1e, 0, sizeof pl->p1e);
            return 0;
        }
        job *k = cf_calloc(1, sizeof *k);
        k->e = pl->p1e;
        memset(&pl->p1e, 0, sizeof pl->p1e);
        k->done = 1;
        pthread_mutex_lock(&pl->mu);
        pl->p1_kept++;
        pthread_mutex_unlock(&pl->mu);
        if (push_job(pl, k, 0) != 0)
            return -1;
    }
}

/* A file the first pass read and that has not changed since keeps that
 * pass's chunks. */
static int reuse_first(job *j, cf_entry *m)
{
    if (!cf_entry_unchanged(m, &j->e) || m->kind != CF_ENT_FILE)
        return 0;
    j->e.chunks = m->chunks;
    j->e.nchunks = m->nchunks;
    m->chunks = NULL;
    m->nchunks = 0;
    return 1;
}

static int on_entry(void *ud, cf_entry *e, const char *abs)
{
    pool *pl = ud;
    cf_entry *match = NULL;
    if (pl->p1 && p1_drain(pl, e, 0, &match) != 0) {
        cf_entry_clear(e);
        return -1;
    }
    job *j = cf_calloc(1, sizeof *j);
    j->e = *e;
    memset(e, 0, sizeof *e);
    /* unchanged since the previous set (counted as such), else since the
     * first pass */
    int reused = j->e.kind == CF_ENT_FILE && reuse_previous(pl, j);
    if (!reused && j->e.kind == CF_ENT_FILE && reuse_first(j, match)) {
        pthread_mutex_lock(&pl->mu);
        pl->p1_reused++;
        pthread_mutex_unlock(&pl->mu);
        j->done = 1;
        if (match) {
            cf_entry_clear(match);
            free(match);
        }
        int rc = push_job(pl, j, 0);
        return rc == 0 && cf_cancel_flag ? cf_fail("cancelled") : rc;
    }
    if (j->e.kind == CF_ENT_FILE && !reused) {
        j->abs = cf_strdup(abs);
        j->needs_read = 1;
        if (match && match->kind == CF_ENT_FILE) {
            j->fallback = match;
            match = NULL;
        }
    } else {
        j->done = 1;
    }
    if (match) {
        cf_entry_clear(match);
        free(match);
    }
    int rc = push_job(pl, j, reused);
    if (rc == 0 && cf_cancel_flag)
        rc = cf_fail("cancelled");
    return rc;
}

/* Queue a job behind the others (walking thread); emits what is done. */
static int push_job(pool *pl, job *j, int reused)
{
    pthread_mutex_lock(&pl->mu);
    if (reused)
        pl->reused_files++;
    int rc = 0;
    if (pl->tail - pl->head >= RING)
        rc = emit_ready(pl, 0);
    while (rc == 0 && pl->tail - pl->head >= RING)
        pthread_cond_wait(&pl->space, &pl->mu);
    if (rc == 0) {
        pl->ring[pl->tail % RING] = j;
        pl->tail++;
        if (j->needs_read) {
            pthread_cond_signal(&pl->work);
            pthread_cond_signal(&pl->pf);
        }
        rc = emit_ready(pl, 0);
    } else {
        job_free(j);
    }
    pthread_mutex_unlock(&pl->mu);
    return rc;
}

/* Paths a files component must not capture: files owned by database
 * components, and paths declared by another files component that lie
 * strictly inside one of this component's paths. */
static void build_skip(const cf_policy *p, const cf_component *c, char **owned, size_t nowned,
                       char ***skip, size_t *nskip)
{
    char **v = NULL;
    size_t n = 0;
    for (size_t i = 0; i < nowned; i++) {
        v = cf_realloc(v, (n + 1) * sizeof *v);
        v[n++] = cf_strdup(owned[i]);
    }
    for (size_t k = 0; k < p->ncomponents; k++) {
        const cf_component *o = &p->components[k];
        if (o == c || o->type != CF_COMP_FILES)
            continue;
        for (size_t i = 0; i < o->paths.n; i++)
            for (size_t m = 0; m < c->paths.n; m++) {
                size_t l = strlen(c->paths.v[m]);
                int whole_root = strcmp(c->paths.v[m], ".") == 0;
                if (whole_root || (strncmp(o->paths.v[i], c->paths.v[m], l) == 0 &&
                                   o->paths.v[i][l] == '/')) {
                    v = cf_realloc(v, (n + 1) * sizeof *v);
                    v[n++] = cf_strdup(o->paths.v[i]);
                }
            }
    }
    *skip = v;
    *nskip = n;
}

static void pool_start(pool *pl, cf_run *run, const cf_cdc *cdc, cf_prevset *prev)
{
    pl->run = run;
    pl->cdc = cdc;
    pl->prev = prev;
    pl->online = run->policy->mode == CF_MODE_ONLINE;
    pthread_mutex_init(&pl->mu, NULL);
    pthread_cond_init(&pl->work, NULL);
    pthread_cond_init(&pl->done, NULL);
    pthread_cond_init(&pl->space, NULL);
    pthread_cond_init(&pl->pf, NULL);
    pl->pf_running = pthread_create(&pl->pf_thread, NULL, prefetcher, pl) == 0;
    pl->nthreads = cf_worker_count();
    pl->threads = cf_calloc((size_t)pl->nthreads, sizeof(pthread_t));
    for (int i = 0; i < pl->nthreads; i++)
        pthread_create(&pl->threads[i], NULL, worker, pl);
}

static void pool_stop(pool *pl)
{
    if (!pl->threads)
        return;
    pthread_mutex_lock(&pl->mu);
    pl->stop = 1;
    pthread_cond_broadcast(&pl->work);
    pthread_cond_broadcast(&pl->pf);
    pthread_mutex_unlock(&pl->mu);
    for (int i = 0; i < pl->nthreads; i++)
        pthread_join(pl->threads[i], NULL);
    if (pl->pf_running)
        pthread_join(pl->pf_thread, NULL);
    /* After a failure: drop what is left (workers have stopped). */
    while (pl->head < pl->tail)
        job_free(pl->ring[pl->head++ % RING]);
    free(pl->threads);
    pl->threads = NULL;
    if (pl->p1_have)
        cf_entry_clear(&pl->p1e);
    pl->p1_have = 0;
    pthread_mutex_destroy(&pl->mu);
    pthread_cond_destroy(&pl->work);
    pthread_cond_destroy(&pl->done);
    pthread_cond_destroy(&pl->space);
    pthread_cond_destroy(&pl->pf);
}

static char *snap_source(void *sud, const char *path)
{
    char *abs = cf_fssnap_map(sud, path);
    if (!abs) /* cannot happen: take was given these paths */
        cf_log(CF_LOG_ERROR, "%s", cf_error());
    return abs ? abs : cf_strdup("/nonexistent");
}

/* The name a component's snapshots carry: policy and component, so a
 * later run of the same policy finds its dead predecessors' leftovers. */
static void snap_tag(const cf_policy *p, const cf_component *c, char *tag, size_t len)
{
    snprintf(tag, len, "%s_%s", p->name, c->name);
    if (cf_fssnap_tag_valid(tag))
        return;
    uint64_t h = 1469598103934665603ULL;
    for (const char *s = tag; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    snprintf(tag, len, "c%016llx", (unsigned long long)h);
}

/* Take a read-only file system snapshot for every files component that
 * asks for one (after sweeping what killed runs left). */
static int take_snapshots(const cf_policy *p, cf_fssnap **snaps)
{
    for (size_t i = 0; i < p->ncomponents; i++) {
        const cf_component *c = &p->components[i];
        if (c->type != CF_COMP_FILES || !c->snapshot)
            continue;
        char tag[64];
        snap_tag(p, c, tag, sizeof tag);
        int swept = cf_fssnap_sweep(c->snapshot, p->root, c->paths.v, c->paths.n, tag);
        if (swept > 0)
            cf_log(CF_LOG_INFO, "component '%s': removed %d %s snapshot(s) a killed backup left",
                   c->name, swept, c->snapshot);
        double t0 = cf_now();
        if (cf_fssnap_take(c->snapshot, p->root, c->paths.v, c->paths.n, tag, c->snapshot_size,
                           &snaps[i]) != 0)
            return cf_fail("component '%s': %s", c->name, cf_error());
        cf_log(CF_LOG_INFO, "component '%s': %s (%.2f s)", c->name, cf_fssnap_describe(snaps[i]),
               cf_now() - t0);
    }
    return 0;
}

static int snapshots_cover(const cf_policy *p)
{
    for (size_t i = 0; i < p->ncomponents; i++)
        if (p->components[i].type == CF_COMP_OBJECT_STORE ||
            (p->components[i].type == CF_COMP_FILES && !p->components[i].snapshot))
            return 0;
    return 1;
}

static void release_snapshots(const cf_policy *p, cf_fssnap **snaps)
{
    for (size_t i = 0; snaps && i < p->ncomponents; i++) {
        if (!snaps[i])
            continue;
        char what[512];
        snprintf(what, sizeof what, "%s", cf_fssnap_describe(snaps[i]));
        if (cf_fssnap_release(snaps[i]) != 0)
            cf_log(CF_LOG_WARN, "component '%s': %s not removed (the next backup removes it): %s",
                   p->components[i].name, what, cf_error());
        else
            cf_log(CF_LOG_DEBUG, "component '%s': %s removed", p->components[i].name, what);
        snaps[i] = NULL;
    }
}

static void log_prev_found(const cf_prevset *prev, const char *what)
{
    uint64_t looked, found;
    cf_prevset_counts(prev, &looked, &found);
    cf_log(CF_LOG_DEBUG, "%s%llu of %llu entries found in the previous set", what,
           (unsigned long long)found, (unsigned long long)looked);
}

static const cf_entry *walk_prior(void *ud, const cf_entry *e)
{
    pool *pl = ud;
    return cf_prevset_find(pl->prev, e);
}

/* Walk every files component into pl->mw. first: the first pass of an
 * online backup (components read from a file system snapshot wait for
 * it); comps, when not NULL, gets each component's summary. */
static int walk_files(pool *pl, char **owned, size_t nowned, json_t *comps, int first)
{
    const cf_policy *p = pl->run->policy;
    int rc = 0;
    for (size_t i = 0; i < p->ncomponents && rc == 0; i++) {
        const cf_component *c = &p->components[i];
        if (c->type != CF_COMP_FILES || (first && c->snapshot))
            continue;
        uint64_t f0 = pl->files, b0 = pl->bytes;
        double tc = cf_now();
        char **skip;
        size_t nskip;
        build_skip(p, c, owned, nowned, &skip, &nskip);
        cf_walk_opts wo = {.root = p->root, .comp = c, .skip = skip, .nskip = nskip,
                           .cb = on_entry, .ud = pl, .unreadable = walk_unreadable,
                           .prior = pl->prev ? walk_prior : NULL};
        if (!first && pl->snaps && pl->snaps[i]) {
            wo.source = snap_source;
            wo.sud = pl->snaps[i];
        }
        pl->walking = c->name;
        rc = cf_walk_component(&wo);
        if (rc == 0 && pl->p1)
            rc = p1_drain(pl, NULL, (int)i, NULL);
        if (rc == 0) {
            pthread_mutex_lock(&pl->mu);
            rc = emit_ready(pl, 1);
            pthread_mutex_unlock(&pl->mu);
        }
        cf_strv_free(skip, nskip);
        if (rc == 0)
            cf_log(CF_LOG_DEBUG, "component '%s'%s: %llu files in %.2f s", c->name,
                   first ? " (first pass)" : "", (unsigned long long)(pl->files - f0),
                   cf_now() - tc);
        if (!comps)
            continue;
        json_t *cj = json_pack("{s:s,s:s}", "name", c->name, "type", "files");
        json_t *pa = json_array();
        for (size_t k = 0; k < c->paths.n; k++)
            json_array_append_new(pa, json_string(c->paths.v[k]));
        json_object_set_new(cj, "paths", pa);
        json_object_set_new(cj, "files", json_integer((json_int_t)(pl->files - f0)));
        json_object_set_new(cj, "bytes", json_integer((json_int_t)(pl->bytes - b0)));
        json_array_append_new(comps, cj);
    }
    return rc;
}

/* ---- database sink -------------------------------------------------- */

typedef struct dbstream dbstream;

typedef struct dbsink {
    coffer_dump_sink sink;
    cf_run *run;
    const cf_cdc *cdc;
    const cf_component *comp;
    cf_mwriter *mw;
    pthread_mutex_t mu;
    json_t *meta;
    uint64_t bytes, new_raw;
    int streams;
    dbstream *open; /* streams the driver has not closed (yet) */
    char err[1024]; /* first failure inside the sink: the real cause */
} dbsink;

/* A dump stream is a pipeline: the driver's thread fills one buffer while
 * the stream's own thread chunks, hashes, compresses and encrypts the
 * other, so formatting rows and storing them use both cores. */
#define STREAM_BUF (1u << 20)

struct dbstream {
    dbsink *s;
    cf_ingest g;
    char *name;
    dbstream *next; /* in s->open */
    pthread_t thr;
    int running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint8_t *buf[2];
    size_t len[2];
    int full[2];   /* handed to the stream's thread */
    int wi, ri;    /* buffer the driver fills, buffer the thread takes next */
    int eof, failed;
    char err[1024];
};

static void sink_note_msg(dbsink *s, const char *msg)
{
    pthread_mutex_lock(&s->mu);
    if (!s->err[0])
        snprintf(s->err, sizeof s->err, "%s", msg);
    pthread_mutex_unlock(&s->mu);
}

static void sink_note(dbsink *s)
{
    sink_note_msg(s, cf_error());
}

static void *stream_thread(void *arg)
{
    dbstream *d = arg;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (!d->full[d->ri] && !d->eof)
            pthread_cond_wait(&d->cv, &d->mu);
        if (!d->full[d->ri])
            break; /* end of stream, everything stored */
        int i = d->ri;
        int skip = d->failed;
        pthread_mutex_unlock(&d->mu);
        int rc = skip ? 0 : cf_ingest_write(&d->g, d->buf[i], d->len[i]);
        pthread_mutex_lock(&d->mu);
        if (rc != 0 && !d->failed) {
            d->failed = 1;
            snprintf(d->err, sizeof d->err, "%s", cf_error());
        }
        d->len[i] = 0;
        d->full[i] = 0;
        d->ri ^= 1;
        pthread_cond_broadcast(&d->cv);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

static coffer_status sink_open(coffer_dump_sink *sink, const char *name, void **stream)
{
    dbsink *s = sink->ctx;
    if (!name || !*name || strchr(name, '\n'))
        return COFFER_ERR_INVALID;
    dbstream *d = cf_calloc(1, sizeof *d);
    d->s = s;
    d->name = cf_strdup(name);
    cf_ingest_init(&d->g, s->run->repo, s->cdc);
    /* A dump is text (SQL, COPY rows): zstd's level 1 packs it smaller
     * than level 3 and in less time (bench/README.md, MySQL). */
    d->g.level = 1;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    d->buf[0] = cf_malloc(STREAM_BUF);
    d->buf[1] = cf_malloc(STREAM_BUF);
    d->running = pthread_create(&d->thr, NULL, stream_thread, d) == 0;
    pthread_mutex_lock(&s->mu);
    d->next = s->open;
    s->open = d;
    pthread_mutex_unlock(&s->mu);
    *stream = d;
    return COFFER_OK;
}

/* Hand the driver's current buffer to the stream's thread (with d->mu). */
static void stream_hand_over(dbstream *d)
{
    d->full[d->wi] = 1;
    d->wi ^= 1;
    pthread_cond_broadcast(&d->cv);
}

static coffer_status stream_failure(dbstream *d)
{
    sink_note_msg(d->s, d->err);
    return cf_cancel_flag ? COFFER_ERR_CANCELLED : COFFER_ERR_FAILED;
}

static coffer_status sink_write(void *stream, const void *buf, size_t len)
{
    dbstream *d = stream;
    if (!d->running) {
        if (cf_ingest_write(&d->g, buf, len) != 0) {
            sink_note(d->s);
            return cf_cancel_flag ? COFFER_ERR_CANCELLED : COFFER_ERR_FAILED;
        }
        return COFFER_OK;
    }
    const uint8_t *p = buf;
    while (len) {
        pthread_mutex_lock(&d->mu);
        while (d->full[d->wi] && !d->failed)
            pthread_cond_wait(&d->cv, &d->mu);
        int failed = d->failed;
        pthread_mutex_unlock(&d->mu);
        if (failed)
            return stream_failure(d);
        /* buf[wi] is the driver thread's until it is handed over */
        int i = d->wi;
        size_t n = STREAM_BUF - d->len[i] < len ? STREAM_BUF - d->len[i] : len;
        memcpy(d->buf[i] + d->len[i], p, n);
        d->len[i] += n;
        p += n;
        len -= n;
        if (d->len[i] == STREAM_BUF) {
            pthread_mutex_lock(&d->mu);
            stream_hand_over(d);
            pthread_mutex_unlock(&d->mu);
        }
    }
    return COFFER_OK;
}

/* Stop the stream's thread after what was handed over is stored (or,
 * with abort, dropped); 0 when every byte written was stored. */
static int stream_stop(dbstream *d, int abort)
{
    if (!d->running)
        return 0;
    pthread_mutex_lock(&d->mu);
    if (abort && !d->failed) {
        d->failed = 1;
        snprintf(d->err, sizeof d->err, "dump stream %s not completed by the driver", d->name);
    }
    if (d->len[d->wi] && !d->failed)
        stream_hand_over(d);
    d->eof = 1;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thr, NULL);
    d->running = 0;
    return d->failed ? -1 : 0;
}

static void stream_free(dbstream *d)
{
    dbsink *s = d->s;
    pthread_mutex_lock(&s->mu);
    for (dbstream **pp = &s->open; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    pthread_mutex_unlock(&s->mu);
    cf_ingest_free(&d->g);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    free(d->buf[0]);
    free(d->buf[1]);
    free(d->name);
    free(d);
}

static coffer_status sink_close(void *stream)
{
    dbstream *d = stream;
    dbsink *s = d->s;
    if (stream_stop(d, 0) != 0) {
        coffer_status st = stream_failure(d);
        stream_free(d);
        return st;
    }
    int rc = cf_ingest_finish(&d->g);
    if (rc == 0) {
        cf_entry e = {0};
        e.kind = CF_ENT_STREAM;
        e.component = cf_strdup(s->comp->name);
        e.path = cf_strdup(d->name);
        e.size = d->g.size;
        e.chunks = cf_ingest_take(&d->g, &e.nchunks);
        e.mtime = time(NULL);
        pthread_mutex_lock(&s->mu);
        rc = cf_manifest_add(s->mw, &e);
        s->bytes += d->g.size;
        s->new_raw += d->g.new_raw;
        s->streams++;
        pthread_mutex_unlock(&s->mu);
        cf_entry_clear(&e);
    }
    if (rc != 0)
        sink_note(s);
    stream_free(d);
    return rc == 0 ? COFFER_OK : COFFER_ERR_FAILED;
}

static coffer_status sink_meta(coffer_dump_sink *sink, const char *key, const char *value)
{
    dbsink *s = sink->ctx;
    pthread_mutex_lock(&s->mu);
    json_object_set_new(s->meta, key, json_string(value ? value : ""));
    pthread_mutex_unlock(&s->mu);
    return COFFER_OK;
}

static int dump_database(cf_run *run, const cf_cdc *cdc, cf_dbinst *db, cf_mwriter *mw,
                         json_t *comp_json, uint64_t *bytes, uint64_t *new_raw, int keep)
{
    dbsink s = {0};
    s.sink.struct_size = sizeof s.sink;
    s.sink.keep_snapshot = keep && db->ops->query_snapshot;
    s.sink.ctx = &s;
    s.sink.stream_open = sink_open;
    s.sink.stream_write = sink_write;
    s.sink.stream_close = sink_close;
    s.sink.meta = sink_meta;
    s.run = run;
    s.cdc = cdc;
    s.comp = db->comp;
    s.mw = mw;
    s.meta = json_object();
    pthread_mutex_init(&s.mu, NULL);
    char when[32];
    cf_iso_time(time(NULL), when, sizeof when);
    cf_log(CF_LOG_INFO, "component '%s': dumping %s database", db->comp->name, db->comp->driver);
    double t0 = cf_now();
    coffer_status st = db->ops->dump(db->inst, &s.sink);
    /* A driver that failed may leave streams open: they are not part of
     * the set, their threads stop here. */
    while (s.open) {
        stream_stop(s.open, 1);
        if (st == COFFER_OK) {
            sink_note_msg(&s, s.open->err);
            st = COFFER_ERR_FAILED;
        }
        stream_free(s.open);
    }
    int rc = 0;
    if (st != COFFER_OK) {
        if (cf_cancel_flag && st == COFFER_ERR_CANCELLED)
            rc = cf_fail("component '%s': cancelled", db->comp->name);
        else if (s.err[0]) /* the repository side failed: that is the cause */
            rc = cf_fail("component '%s': dump failed: %s", db->comp->name, s.err);
        else
            rc = cf_hctx_fail(db->hctx, st, "dump failed");
    } else if (s.streams == 0) {
        rc = cf_fail("component '%s' (%s): the driver produced no dump stream", db->comp->name,
                     db->comp->driver);
    }
    if (rc == 0) {
        cf_entry e = {0};
        e.kind = CF_ENT_META;
        e.component = cf_strdup(db->comp->name);
        e.meta = json_incref(s.meta);
        rc = cf_manifest_add(mw, &e);
        cf_entry_clear(&e);
        json_object_set(comp_json, "meta", s.meta);
        json_object_set_new(comp_json, "snapshot_started", json_string(when));
        json_object_set_new(comp_json, "bytes", json_integer((json_int_t)s.bytes));
    }
    if (rc == 0)
        cf_log(CF_LOG_DEBUG, "component '%s': %llu bytes dumped in %.2f s", db->comp->name,
               (unsigned long long)s.bytes, cf_now() - t0);
    *bytes += s.bytes;
    *new_raw += s.new_raw;
    json_decref(s.meta);
    pthread_mutex_destroy(&s.mu);
    return rc;
}

/* ---- the backup ----------------------------------------------------- */

static int check_required(const cf_policy *p)
{
    for (size_t i = 0; i < p->ncomponents; i++) {
        const cf_component *c = &p->components[i];
        for (size_t k = 0; k < c->required.n; k++) {
            char *abs = cf_asprintf("%s/%s", p->root, c->required.v[k]);
            struct stat st;
            int r = stat(abs, &st);
            if (r != 0) {
                cf_fail_errno("component '%s': required path %s is missing", c->name, abs);
                free(abs);
                return -1;
            }
            free(abs);
        }
    }
    return 0;
}

static int run_stop(cf_run *run)
{
    cf_policy *p = run->policy;
    cf_log(CF_LOG_INFO, "maintenance: running stop command");
    int st = cf_run_command("stop command", p->stop_cmd, p->root, p->command_timeout, NULL);
    if (st < 0)
        return -1;
    if (st != 0)
        return cf_fail("stop command `%s` failed with exit status %d; nothing was captured",
                       p->stop_cmd, st);
    return 0;
}

static int run_start(cf_run *run)
{
    cf_policy *p = run->policy;
    cf_log(CF_LOG_INFO, "maintenance: running start command");
    int st = cf_run_command("start command", p->start_cmd, p->root, p->command_timeout, NULL);
    if (st < 0)
        return -1;
    if (st != 0)
        return cf_fail("start command `%s` failed with exit status %d: the application may be down",
                       p->start_cmd, st);
    return 0;
}

/* A dry run stores into the repository's own store with every write
 * discarded: the repository layer packs, compresses and indexes (in
 * memory) as usual, so dedup and the new/stored byte counts are real,
 * and nothing is written. */
static coffer_status discard_open(void *inst, const char *key, const coffer_write_opts *o, void **w)
{
    (void)inst, (void)key, (void)o;
    *w = cf_malloc(1);
    return COFFER_OK;
}

static coffer_status discard_write(void *w, const void *buf, size_t len)
{
    (void)w, (void)buf, (void)len;
    return COFFER_OK;
}

static coffer_status discard_commit(void *w)
{
    free(w);
    return COFFER_OK;
}

static void discard_abort(void *w)
{
    free(w);
}

static coffer_status discard_remove(void *inst, const char *key)
{
    (void)inst, (void)key;
    return COFFER_OK;
}

#define INCONSISTENT_LISTED 1000

/* Log each listed problem of a references report. */
static void json_array_foreach_path_log(json_t *refs)
{
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(refs, "paths"), i, x) {
        char *path = cf_json_get_name(x, "path");
        cf_log(CF_LOG_WARN, "check %s: %s: %s", json_string_value(json_object_get(x, "check")),
               path ? path : "?", json_string_value(json_object_get(x, "reason")));
        free(path);
    }
}

/* The summary's reference fields (also when nothing is missing). */
static void summary_references(json_t *sum, json_t *refs, uint64_t problems)
{
    json_object_set_new(sum, "inconsistent", json_boolean(problems > 0));
    json_object_set_new(sum, "missing_references", json_integer((json_int_t)problems));
    json_object_set_new(sum, "refetched",
                        json_integer(json_integer_value(json_object_get(refs, "refetched"))));
    json_t *paths = json_object_get(refs, "paths");
    json_object_set_new(sum, "missing_paths", paths ? json_incref(paths) : json_array());
    if (refs)
        json_object_set(sum, "references", json_object_get(refs, "checks"));
}

/* Is rel, or a directory above it, excluded from c or captured by
 * something else (skip)? The walk would not have taken it either. */
static int refetch_refused(const cf_component *c, char **skip, size_t nskip, const char *rel)
{
    char *d = cf_strdup(rel);
    int no = 0;
    for (char *slash = NULL;; *slash = 0) {
        if (cf_exclude_match(&c->exclude, d))
            no = 1;
        for (size_t i = 0; i < nskip; i++)
            if (strcmp(skip[i], d) == 0)
                no = 1;
        if (no || !(slash = strrchr(d, '/')))
            break;
    }
    free(d);
    return no;
}

/* Capture again the paths the snapshot references and the set lacks,
 * when they still exist (a file renamed into place after the walk
 * passed, say): read beneath the root without following symbolic links. */
static int refetch(cf_run *run, const cf_cdc *cdc, cf_mwriter *mw, cf_refcheck *rck,
                   char **owned, size_t nowned, pool *pl)
{
    const cf_policy *p = run->policy;
    int rootfd = open(p->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return cf_fail_errno("cannot open %s", p->root);
    cf_ingest g;
    cf_ingest_init(&g, run->repo, cdc);
    const char *comp, *rel;
    uint64_t got = 0;
    int rc = 0;
    const cf_component *skip_of = NULL; /* the component skip was built for */
    char **skip = NULL;
    size_t nskip = 0;
    while (rc == 0 && cf_refcheck_next_missing(rck, &comp, &rel) == 1) {
        const cf_component *c = cf_policy_component(p, comp);
        if (c != skip_of) {
            cf_strv_free(skip, nskip);
            build_skip(p, c, owned, nowned, &skip, &nskip);
            skip_of = c;
        }
        if (refetch_refused(c, skip, nskip, rel))
            continue;
        int fd = cf_beneath_open(rootfd, rel, O_RDONLY | O_NONBLOCK | O_NOATIME, 0);
        if (fd < 0 && errno == EPERM)
            fd = cf_beneath_open(rootfd, rel, O_RDONLY | O_NONBLOCK, 0);
        if (fd < 0)
            continue; /* gone: missing it stays */
        char *abs = cf_asprintf("%s/%s", p->root, rel);
        cf_entry e;
        if (cf_file_entry(c, abs, rel, fd, &e) == 0) {
            if (e.kind == CF_ENT_FILE) {
                cf_ingest_reset(&g);
                rc = cf_ingest_fd(&g, fd, abs);
                if (rc == 0)
                    rc = cf_ingest_finish(&g);
                if (rc == 0) {
                    e.size = g.size;
                    e.chunks = cf_ingest_take(&g, &e.nchunks);
                    rc = cf_manifest_add(mw, &e);
                }
                if (rc == 0) {
                    cf_refcheck_fetched(rck);
                    pl->files++;
                    pl->bytes += e.size;
                    got++;
                    cf_log(CF_LOG_INFO, "%s: not in the walk, fetched again (the database "
                           "snapshot references it)", rel);
                }
            }
            cf_entry_clear(&e);
        }
        free(abs);
        close(fd);
    }
    cf_strv_free(skip, nskip);
    cf_ingest_free(&g);
    close(rootfd);
    if (got)
        cf_log(CF_LOG_INFO, "%llu referenced path(s) fetched again", (unsigned long long)got);
    return rc;
}

/* -v: where the time went, summed over threads, with each phase's rate. */
static void log_phases(cf_repo *r, double wall)
{
    cf_repo_stats st;
    cf_repo_get_stats(r, &st);
    double mib = 1048576.0, rd = cf_phase_seconds(CF_PHASE_READ),
           ch = cf_phase_seconds(CF_PHASE_CHUNK), pk = cf_phase_seconds(CF_PHASE_PACK),
           sto = cf_phase_seconds(CF_PHASE_STORE), cm = cf_phase_seconds(CF_PHASE_COMMIT);
    uint64_t in = st.bytes_new_raw + st.bytes_dup;
    cf_log(CF_LOG_INFO,
           "phases in %.1f s, seconds summed over threads: read %.1f, chunk and hash %.1f "
           "(%.0f MiB/s), compress and encrypt %.1f (%.0f MiB/s), hand to storage %.1f "
           "(%.0f MiB/s), publish packs %.1f (%llu packs)",
           wall, rd, ch, ch > 0 ? (double)in / mib / ch : 0.0, pk,
           pk > 0 ? (double)st.bytes_new_raw / mib / pk : 0.0, sto,
           sto > 0 ? (double)st.bytes_new_stored / mib / sto : 0.0, cm,
           (unsigned long long)st.packs_written);
}

static int backup(cf_run *run, int dry, char **set_id_out, json_t **summary)
{
    cf_policy *p = run->policy;
    cf_cdc cdc;
    if (cf_cdc_init(&cdc, cf_repo_cdc(run->repo)) != 0)
        return -1;
    char set_id[64], started[32];
    cf_new_set_id(set_id, sizeof set_id);
    /* On object storage, a pack's last part and the completion of its
     * upload happen while the workers fill the next packs. */
    if (!dry && !(cf_repo_store(run->repo)->caps & COFFER_CAP_LOCAL))
        cf_repo_async_commits(run->repo, 2);
    time_t t_start = time(NULL);
    cf_iso_time(t_start, started, sizeof started);
    double t0 = cf_now();

    /* Everything that can fail without touching the application first. */
    if (check_required(p) != 0)
        return -1;
    /* Metadata read-ahead over every files component, so the inode cache
     * warms while the previous set is read and the databases are dumped:
     * begun when the run was opened (CF_RUN_WARM), else now. */
    cf_prefetch *warm = run->warm ? run->warm : cf_prefetch_policy(p);
    run->warm = NULL;
    size_t ndb = 0;
    cf_dbinst *dbs = cf_calloc(p->ncomponents, sizeof *dbs);
    char **owned = NULL;
    size_t nowned = 0;
    int rc = 0, aborted = 0;
    for (size_t i = 0; i < p->ncomponents && rc == 0; i++) {
        const cf_component *c = &p->components[i];
        if (c->type == CF_COMP_OBJECT_STORE) {
            rc = cf_objects_preflight(run, c);
            continue;
        }
        if (c->type != CF_COMP_DATABASE)
            continue;
        cf_dbinst *d = &dbs[ndb];
        if (cf_dbinst_open(c, p->root, d) != 0) {
            rc = -1;
            break;
        }
        ndb++;
        if (d->ops->probe) {
            coffer_db_info info = {.struct_size = sizeof info};
            coffer_status st = d->ops->probe(d->inst, &info);
            if (st != COFFER_OK) {
                rc = cf_hctx_fail(d->hctx, st, "probe failed");
                break;
            }
            cf_log(CF_LOG_DEBUG, "component '%s': %s %s", c->name, c->driver, info.server_version);
        }
        if (d->ops->owned_paths) {
            const char *paths[16];
            size_t n = d->ops->owned_paths(d->inst, paths, 16);
            for (size_t k = 0; k < n && k < 16; k++) {
                owned = cf_realloc(owned, (nowned + 1) * sizeof *owned);
                owned[nowned++] = cf_strdup(paths[k]);
            }
        }
    }

    int start_rc = 0;
    char start_err[1024] = "";
    cf_prevset *prev = NULL;
    cf_mwriter *mw = NULL, *first = NULL;
    cf_fssnap **snaps = cf_calloc(p->ncomponents, sizeof *snaps);
    cf_refcheck *rck = rc == 0 ? cf_refcheck_new(p) : NULL;
    /* Online without a snapshot, files are walked twice (see below). */
    int two_pass = 0;
    /* (Without a database there is no snapshot to be consistent with:
     * one pass.) */
    if (p->mode == CF_MODE_ONLINE && p->two_pass != 0 && ndb > 0)
        for (size_t i = 0; i < p->ncomponents; i++)
            if (p->components[i].type == CF_COMP_FILES && !p->components[i].snapshot)
                two_pass = 1;
    json_t *comps = json_array();
    uint64_t db_bytes = 0, db_new = 0;
    pool pl = {0};
    pl.unreadable_list = json_array();
    int stopped = 0;
    if (rc == 0) {
        prev = cf_prevset_open(run, NULL);
        rc = cf_manifest_begin(&mw);
    }
    if (rc == 0 && p->mode == CF_MODE_MAINTENANCE && dry) {
        cf_log(CF_LOG_DEBUG,
               "dry run: a real backup would stop the application (`%s`) now and "
               "start it (`%s`) after the capture; it keeps running",
               p->stop_cmd, p->start_cmd);
    } else if (rc == 0 && p->mode == CF_MODE_MAINTENANCE) {
        rc = run_stop(run);
        stopped = 1; /* start runs even when stop failed */
    }
    if (rc == 0 && cf_cancel_flag)
        rc = cf_fail("cancelled");

    cf_progress_start("backup", 0, run->no_progress); /* total: from the previous set */
    /* Online, two passes: the files once before the database snapshots
     * (what a row the snapshot holds may name was written before it), once
     * after (what changed since), so the set has every object that existed
     * at the snapshot, even those deleted while the backup ran. */
    if (rc == 0 && two_pass) {
        rc = cf_manifest_begin(&first);
        if (rc == 0) {
            cf_progress_set_total(cf_prevset_bytes(prev));
            pool_start(&pl, run, &cdc, prev);
            pl.mw = first;
            cf_log(CF_LOG_INFO, "first file pass, before the database snapshots");
            rc = walk_files(&pl, owned, nowned, NULL, 1);
        }
    }
    /* File system snapshots come right before the database snapshots:
     * an object uploaded in between is not in the file system snapshot,
     * but its row is in the database's, and the reference check fetches
     * it again from the live tree; the other order would lose objects
     * purged in between for good. */
    if (rc == 0) {
        pl.snaps = snaps;
        rc = take_snapshots(p, snaps);
    }
    /* Databases: in online mode the files are captured after the database
     * snapshot (or around it, with two passes), and the set says so. */
    for (size_t i = 0; i < ndb && rc == 0; i++) {
        json_t *cj = json_pack("{s:s,s:s,s:s}", "name", dbs[i].comp->name, "type", "database",
                               "driver", dbs[i].comp->driver);
        rc = dump_database(run, &cdc, &dbs[i], mw, cj, &db_bytes, &db_new,
                           cf_refcheck_uses_db(rck, dbs[i].comp->name));
        json_array_append_new(comps, cj);
    }

    /* Maintenance mode with every files component read from a file
     * system snapshot (and no object store, listed live): the capture is
     * over once the snapshots and dumps exist, so the application comes
     * back before the files are read. */
    if (rc == 0 && stopped && snapshots_cover(p)) {
        start_rc = run_start(run);
        if (start_rc != 0)
            snprintf(start_err, sizeof start_err, "%s", cf_error());
        stopped = 0;
        cf_log(CF_LOG_INFO, "maintenance: the application runs again; the files are read from "
                            "the snapshots");
    }
    if (rc == 0 && !pl.threads) {
        cf_progress_set_total(cf_prevset_bytes(prev));
        pool_start(&pl, run, &cdc, prev);
    }
    if (rc == 0 && two_pass) {
        /* Second pass: what changed or appeared since the first, merged
         * with it; files gone since stay as the first pass read them. */
        cf_log(CF_LOG_INFO, "second file pass: what changed since the database snapshots");
        pl.files = pl.dirs = pl.links = pl.bytes = pl.reused_files = pl.vanished = 0;
        pl.unreadable = 0;
        json_array_clear(pl.unreadable_list);
        if ((rc = cf_manifest_spool_rewind(first)) == 0)
            pl.p1 = first;
        /* The first pass went through the previous set; files it read
         * again are matched against that pass. Components it left for
         * their file system snapshots need the previous set once more. */
        log_prev_found(prev, "first file pass: ");
        char *id = cf_prevset_id(prev) ? cf_strdup(cf_prevset_id(prev)) : NULL;
        cf_prevset_close(prev);
        prev = NULL;
        for (size_t i = 0; id && !prev && i < p->ncomponents; i++)
            if (p->components[i].type == CF_COMP_FILES && p->components[i].snapshot)
                prev = cf_prevset_open(run, id);
        free(id);
        pl.prev = prev;
    }
    if (rc == 0) {
        pl.mw = mw;
        pl.rck = rck;
        rc = walk_files(&pl, owned, nowned, comps, 0);
        if (rc == 0 && prev) {
            log_prev_found(prev, "");
            cf_log(CF_LOG_DEBUG, "%llu unchanged files written with their previous line",
                   (unsigned long long)pl.lines_kept);
        }
        if (rc == 0 && pl.p1) {
            if ((rc = p1_drain(&pl, NULL, (int)p->ncomponents, NULL)) == 0) {
                pthread_mutex_lock(&pl.mu);
                rc = emit_ready(&pl, 1);
                pthread_mutex_unlock(&pl.mu);
            }
            cf_log(CF_LOG_DEBUG, "second file pass: %llu unchanged since the first, %llu gone since "
                   "(kept as the first pass read them)", (unsigned long long)pl.p1_reused,
                   (unsigned long long)pl.p1_kept);
        }
        cf_prefetch_stop(warm);
        warm = NULL;
        /* Object stores last: after the database, like files. */
        for (size_t i = 0; i < p->ncomponents && rc == 0; i++) {
            const cf_component *c = &p->components[i];
            if (c->type != CF_COMP_OBJECT_STORE)
                continue;
            cf_ingest g;
            cf_ingest_init(&g, run->repo, &cdc);
            json_t *cj = json_pack("{s:s,s:s,s:s}", "name", c->name, "type", "object_store",
                                   "driver", c->driver);
            rc = cf_objects_backup(run, c, &g, mw, cj);
            json_array_append_new(comps, cj);
            cf_ingest_free(&g);
        }
    }
    pool_stop(&pl);
    {
        char saved[2048];
        snprintf(saved, sizeof saved, "%s", cf_error());
        release_snapshots(p, snaps);
        cf_fail("%s", saved);
    }
    cf_prefetch_stop(warm);
    cf_progress_stop();
    if (rc == 0 && cf_cancel_flag)
        rc = cf_fail("cancelled");

    /* The application comes back as soon as the capture is over. */
    if (stopped) {
        char saved[2048];
        snprintf(saved, sizeof saved, "%s", cf_error());
        start_rc = run_start(run);
        if (start_rc != 0)
            snprintf(start_err, sizeof start_err, "%s", cf_error());
        cf_fail("%s", saved);
    }

    /* Reference verification: the snapshot's references against what
     * the set holds, before anything is published. */
    json_t *refs = NULL;
    if (rc == 0 && rck) {
        rc = cf_refcheck_eval(rck, dbs, ndb);
        if (rc == 0 && cf_refcheck_problems(rck))
            rc = refetch(run, &cdc, mw, rck, owned, nowned, &pl);
        if (rc == 0)
            refs = cf_refcheck_report(rck, INCONSISTENT_LISTED);
    }
    uint64_t problems = cf_refcheck_problems(rck);
    if (rc == 0 && problems) {
        json_t *first_path = json_array_get(json_object_get(refs, "paths"), 0);
        char *fp = first_path ? cf_json_get_name(first_path, "path") : NULL;
        const char *why = first_path ? json_string_value(json_object_get(first_path, "reason")) : "";
        cf_log(CF_LOG_WARN, "the database snapshot references %llu path(s) the set lacks, e.g. "
               "%s (%s); the set is inconsistent", (unsigned long long)problems, fp ? fp : "?",
               why ? why : "");
        json_array_foreach_path_log(refs);
        if (p->inconsistent_fail)
            rc = cf_fail("set not published: the database snapshot references %llu path(s) it "
                         "lacks, e.g. %s (%s); consistency.on_inconsistent is fail",
                         (unsigned long long)problems, fp ? fp : "?", why ? why : "");
        free(fp);
    }

    if (rc == 0 && !dry)
        rc = cf_repo_flush(run->repo);
    json_t *header = NULL;
    if (rc == 0) {
        char host[256] = "unknown", finished[32];
        gethostname(host, sizeof host - 1);
        cf_iso_time(time(NULL), finished, sizeof finished);
        cf_repo_stats rs;
        cf_repo_get_stats(run->repo, &rs);
        header = json_object();
        json_object_set_new(header, "id", json_string(set_id));
        json_object_set_new(header, "policy", json_string(p->name));
        json_object_set_new(header, "host", json_string(host));
        json_object_set_new(header, "time", json_string(started));
        json_object_set_new(header, "started", json_string(started));
        json_object_set_new(header, "finished", json_string(finished));
        json_object_set_new(header, "mode",
                            json_string(p->mode == CF_MODE_MAINTENANCE ? "maintenance" : "online"));
        json_object_set_new(header, "root", json_string(p->root));
        /* The policy, secrets left out, so the repository alone can be
         * restored from (engine/recover.h). */
        json_t *record = cf_policy_record(p);
        if (record)
            json_object_set_new(header, "policy_record", record);
        else
            cf_log(CF_LOG_WARN, "the set will not record its policy: %s", cf_error());
        json_object_set_new(header, "coffer_version", json_string(COFFER_VERSION));
        json_object_set(header, "components", comps);
        if (p->mode == CF_MODE_ONLINE && ndb)
            json_object_set_new(header, "note",
                                json_string("online: files were captured after the database "
                                            "snapshot was taken"));
        json_t *tot = json_object();
        json_object_set_new(tot, "files", json_integer((json_int_t)pl.files));
        json_object_set_new(tot, "dirs", json_integer((json_int_t)pl.dirs));
        json_object_set_new(tot, "links", json_integer((json_int_t)pl.links));
        json_object_set_new(tot, "bytes", json_integer((json_int_t)(pl.bytes + db_bytes)));
        json_object_set_new(tot, "new_bytes", json_integer((json_int_t)rs.bytes_new_raw));
        json_object_set_new(tot, "stored_bytes", json_integer((json_int_t)rs.bytes_new_stored));
        json_object_set_new(tot, "unchanged_files", json_integer((json_int_t)pl.reused_files));
        if (pl.vanished)
            json_object_set_new(tot, "vanished_files", json_integer((json_int_t)pl.vanished));
        if (pl.unreadable) {
            /* The set holds everything else; it says what it lacks. */
            json_object_set_new(tot, "unreadable", json_integer((json_int_t)pl.unreadable));
            json_object_set_new(header, "incomplete", json_true());
            json_object_set(header, "unreadable", pl.unreadable_list);
        }
        json_object_set_new(header, "totals", tot);
        if (refs)
            json_object_set(header, "references", refs);
        if (problems) {
            json_object_set_new(header, "inconsistent", json_true());
            json_object_set_new(header, "missing_references", json_integer((json_int_t)problems));
        }
        if (two_pass)
            json_object_set_new(header, "note",
                                json_string("online, two passes: files were captured before "
                                            "and after the database snapshot"));
        if (!dry) {
            rc = cf_manifest_commit(mw, run->repo, set_id, header);
            if (rc != 0) {
                char *key = cf_asprintf("sets/%s", set_id);
                rc = cf_repo_commit_failed(run->repo, key);
                free(key);
                aborted = 1;
            }
        }
    }
    if (rc != 0 && !aborted && !dry)
        cf_repo_abort(run->repo);

    if (rc == 0) {
        json_t *tot = json_object_get(header, "totals");
        log_phases(run->repo, cf_now() - t0);
        *summary = json_pack("{s:s,s:s,s:O,s:O,s:O,s:O,s:O,s:f}", "set", set_id, "policy", p->name,
                             "files", json_object_get(tot, "files"), "bytes",
                             json_object_get(tot, "bytes"), "new_bytes",
                             json_object_get(tot, "new_bytes"), "stored_bytes",
                             json_object_get(tot, "stored_bytes"), "unchanged_files",
                             json_object_get(tot, "unchanged_files"), "duration", cf_now() - t0);
        json_object_set_new(*summary, "vanished_files", json_integer((json_int_t)pl.vanished));
        json_object_set_new(*summary, "unreadable", json_integer((json_int_t)pl.unreadable));
        if (pl.unreadable) {
            json_object_set_new(*summary, "incomplete", json_true());
            json_object_set(*summary, "unreadable_paths", pl.unreadable_list);
        }
        summary_references(*summary, refs, problems);
        if (dry) {
            json_object_del(*summary, "set");
            json_object_set_new(*summary, "dry_run", json_true());
            json_object_set_new(
                *summary, "mode",
                json_string(p->mode == CF_MODE_MAINTENANCE ? "maintenance" : "online"));
        } else {
            *set_id_out = cf_strdup(set_id);
        }
    }
    if (header)
        json_decref(header);
    json_decref(refs);
    cf_refcheck_free(rck);
    free(snaps);
    if (first)
        cf_manifest_free(first);
    json_decref(pl.unreadable_list);
    json_decref(comps);
    cf_manifest_free(mw);
    cf_prevset_close(prev);
    for (size_t i = 0; i < ndb; i++)
        cf_dbinst_close(&dbs[i]);
    free(dbs);
    cf_strv_free(owned, nowned);
    if (rc == 0 && start_rc != 0) {
        cf_fail("set %s was written, but %s", set_id, start_err);
        json_decref(*summary);
        *summary = NULL;
        return -1;
    }
    if (rc != 0 && start_rc != 0)
        cf_log(CF_LOG_ERROR, "%s", start_err);
    return rc;
}

int cf_backup(cf_run *run, char **set_id, json_t **summary)
{
    return backup(run, 0, set_id, summary);
}

int cf_backup_dry_run(cf_run *run, json_t **summary)
{
    const coffer_storage_ops *real = run->store->ops;
    coffer_storage_ops discard = *real;
    discard.prepare = NULL;
    discard.writer_open = discard_open;
    discard.writer_write = discard_write;
    discard.writer_commit = discard_commit;
    discard.writer_abort = discard_abort;
    discard.remove = discard_remove;
    discard.restore_version = NULL;
    run->store->ops = &discard;
    int rc = backup(run, 1, NULL, summary);
    /* Packs still open in the repository handle are dropped on close:
     * through the discarding writers, while this frame still exists. */
    cf_repo_close(run->repo);
    run->repo = NULL;
    run->store->ops = real;
    return rc;
}
