/* The FUSE file system of coffer mount (mount.h). */
#define FUSE_USE_VERSION 314
#include "mount/mount.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/manifest.h"
#include "engine/run.h"
#include "mount/cache.h"
#include "mount/fsview.h"
#include "util/util.h"

/* Worker threads: each may hold a chunk being fetched (up to the chunker's
 * maximum, 8 MiB) besides the cache, so few keep memory bounded; reads of
 * one file are sequential and mostly served by the cache anyway. The repo
 * reads chunks from several threads by contract (repo.h); on Ceph RGW a
 * 100 MiB cat took 0.82 s with four workers and 0.79 s with one, so the
 * workers are there for several readers at once, not for one. */
#define MOUNT_THREADS 4

/* Read-ahead: when a file is read in order, its next chunks (up to
 * RA_BYTES past the read) are named to the fetch planner (repo.h), which
 * reads them in a few large ranged reads on the target's connections; a
 * thread takes them as they arrive and puts them in the cache. A reader
 * that needs a chunk still on its way waits for it instead of reading it
 * again. At most RA_MAX chunks are on their way at once. */
#define RA_BYTES (8u << 20)
#define RA_MAX 64

typedef struct ra_item {
    uint64_t seq;
    cf_id id;
    size_t len;
} ra_item;

typedef struct mset {
    char *id;
    int64_t time;
    cf_setview *view; /* NULL until first looked into */
    int failed;       /* its manifest could not be read (logged once) */
} mset;

typedef struct mfs {
    cf_repo *repo;
    mset *sets; /* sorted by id, oldest first */
    size_t nsets;
    pthread_mutex_t load_mu;
    cf_ccache *cache;
    /* chunks being fetched: a second reader of one waits for the first */
    pthread_mutex_t fetch_mu;
    pthread_cond_t fetch_cv;
    cf_id inflight[MOUNT_THREADS];
    int ninflight;
    /* read-ahead (fetch_mu guards the ring; fetch_cv: one arrived) */
    cf_fetch *ra;
    pthread_t ra_th;
    pthread_cond_t ra_cv; /* the ring has work, or closing */
    ra_item raq[RA_MAX];  /* in sequence order; the head is being taken */
    size_t ra_head, ra_n;
    int ra_closing;
    uint64_t ra_chunks;  /* chunks read ahead into the cache */
    struct mfile *files; /* open files (load_mu) */
    uid_t uid;
    gid_t gid;
    time_t started;
} mfs;

/* One open file: its chunks' offsets, computed at open. */
typedef struct mfile {
    struct mfile *prev, *nextf; /* mfs.files: released at unmount if the kernel did not */
    const cf_setview *view;
    const cf_fsnode *node;
    uint64_t *offs;
    uint32_t next;   /* chunk after the last one read (fetch_mu) */
    uint32_t ra_end; /* chunks before this one were named for read-ahead */
} mfile;

static mfs *fs_of(void)
{
    return fuse_get_context()->private_data;
}

int cf_mount_parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno || s[0] == '-')
        return -1;
    unsigned long long mul = 1;
    if (*end) {
        switch (*end) {
        case 'k':
        case 'K':
            mul = 1ull << 10;
            break;
        case 'm':
        case 'M':
            mul = 1ull << 20;
            break;
        case 'g':
        case 'G':
            mul = 1ull << 30;
            break;
        default:
            return -1;
        }
        end++;
        if (strcmp(end, "iB") != 0 && strcmp(end, "B") != 0 && *end)
            return -1;
    }
    if (v > SIZE_MAX / mul)
        return -1;
    *out = (size_t)(v * mul);
    return 0;
}

int cf_mount_check_point(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return cf_fail_errno("mount point %s", path);
    if (!S_ISDIR(st.st_mode))
        return cf_fail("mount point %s is not a directory", path);
    DIR *d = opendir(path);
    if (!d)
        return cf_fail_errno("mount point %s", path);
    struct dirent *de;
    int empty = 1;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            empty = 0;
            break;
        }
    closedir(d);
    if (!empty)
        return cf_fail("mount point %s is not empty", path);
    return 0;
}

static int64_t parse_time(const char *s)
{
    struct tm tm = {0};
    if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm))
        return 0;
    return (int64_t)timegm(&tm);
}

/* ---- path resolution ---------------------------------------------------- */

enum { R_ROOT, R_SETS, R_LATEST, R_SETDIR, R_NODE };

typedef struct resolved {
    int kind;
    mset *set;
    uint32_t node;
} resolved;

static mset *find_set(mfs *m, const char *id, size_t len)
{
    size_t lo = 0, hi = m->nsets;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strncmp(m->sets[mid].id, id, len);
        if (c == 0 && m->sets[mid].id[len] == 0)
            return &m->sets[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The set's view, read now when needed; NULL when it cannot be read. */
static cf_setview *view_of(mfs *m, mset *s)
{
    pthread_mutex_lock(&m->load_mu);
    if (!s->view && !s->failed) {
        cf_setview *v;
        if (cf_setview_load(m->repo, s->id, s->time, &v) != 0) {
            cf_log(CF_LOG_ERROR, "set %s: %s", s->id, cf_error());
            s->failed = 1;
        } else {
            cf_log(CF_LOG_INFO, "set %s: %u names, %zu bytes held%s", s->id, v->nnodes - 1,
                   cf_setview_memory(v), v->skipped ? " (some entries left out)" : "");
            s->view = v;
        }
    }
    cf_setview *v = s->view;
    pthread_mutex_unlock(&m->load_mu);
    return v;
}

static int resolve(mfs *m, const char *path, resolved *r)
{
    memset(r, 0, sizeof *r);
    if (strcmp(path, "/") == 0) {
        r->kind = R_ROOT;
        return 0;
    }
    if (strcmp(path, "/latest") == 0) {
        if (!m->nsets)
            return -ENOENT;
        r->kind = R_LATEST;
        return 0;
    }
    if (strncmp(path, "/sets", 5) != 0 || (path[5] && path[5] != '/'))
        return -ENOENT;
    const char *p = path + 5;
    if (!*p || strcmp(p, "/") == 0) {
        r->kind = R_SETS;
        return 0;
    }
    p++;
    const char *slash = strchr(p, '/');
    size_t len = slash ? (size_t)(slash - p) : strlen(p);
    r->set = find_set(m, p, len);
    if (!r->set)
        return -ENOENT;
    r->kind = R_SETDIR;
    if (!slash || !slash[1])
        return 0;
    cf_setview *v = view_of(m, r->set);
    if (!v)
        return -EIO;
    uint32_t n = 0;
    p = slash + 1;
    char name[4096];
    while (*p) {
        slash = strchr(p, '/');
        len = slash ? (size_t)(slash - p) : strlen(p);
        if (len >= sizeof name)
            return -ENAMETOOLONG;
        memcpy(name, p, len);
        name[len] = 0;
        n = cf_setview_child(v, n, name);
        if (n == CF_FS_NONE || (!v->nodes[n].given && v->nodes[n].type != CF_FS_DIR))
            return -ENOENT;
        if (!slash)
            break;
        p = slash + 1;
    }
    r->kind = R_NODE;
    r->node = n;
    return 0;
}

/* ---- operations --------------------------------------------------------- */

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    /* sets never change: the kernel may keep names, attributes and pages */
    cfg->kernel_cache = 1;
    cfg->entry_timeout = 3600;
    cfg->attr_timeout = 3600;
    cfg->negative_timeout = 60;
    conn->max_readahead = 1u << 20;
    return fuse_get_context()->private_data;
}

static void dir_attr(mfs *m, struct stat *st, time_t t)
{
    st->st_mode = S_IFDIR | 0555;
    st->st_nlink = 2;
    st->st_uid = m->uid;
    st->st_gid = m->gid;
    st->st_mtim.tv_sec = st->st_ctim.tv_sec = st->st_atim.tv_sec = t;
}

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    (void)fi;
    mfs *m = fs_of();
    resolved r;
    int rc = resolve(m, path, &r);
    if (rc)
        return rc;
    memset(st, 0, sizeof *st);
    switch (r.kind) {
    case R_ROOT:
    case R_SETS:
        dir_attr(m, st, m->nsets ? m->sets[m->nsets - 1].time : m->started);
        break;
    case R_LATEST:
        st->st_mode = S_IFLNK | 0777;
        st->st_nlink = 1;
        st->st_uid = m->uid;
        st->st_gid = m->gid;
        st->st_size = 5 + (off_t)strlen(m->sets[m->nsets - 1].id);
        st->st_mtim.tv_sec = m->sets[m->nsets - 1].time;
        break;
    case R_SETDIR:
        dir_attr(m, st, r.set->time);
        break;
    default: {
        const cf_setview *v = r.set->view;
        const cf_fsnode *n = &v->nodes[r.node];
        st->st_mode = n->mode | (n->type == CF_FS_DIR    ? S_IFDIR
                                 : n->type == CF_FS_LINK ? S_IFLNK
                                                         : S_IFREG);
        if (!n->given && n->type == CF_FS_DIR)
            st->st_mode = S_IFDIR | 0555;
        st->st_nlink = n->type == CF_FS_DIR ? 2 : 1;
        st->st_uid = n->given ? n->uid : m->uid;
        st->st_gid = n->given ? n->gid : m->gid;
        st->st_size = n->type == CF_FS_DIR ? 0 : (off_t)n->size;
        st->st_blocks = (blkcnt_t)((n->size + 511) / 512);
        st->st_mtim.tv_sec = n->mtime;
        st->st_mtim.tv_nsec = n->mtime_ns;
        st->st_ctim = st->st_mtim;
        st->st_atim = st->st_mtim;
    }
    }
    return 0;
}

static int op_readlink(const char *path, char *buf, size_t size)
{
    mfs *m = fs_of();
    resolved r;
    int rc = resolve(m, path, &r);
    if (rc)
        return rc;
    const char *t;
    char tmp[300];
    if (r.kind == R_LATEST) {
        snprintf(tmp, sizeof tmp, "sets/%s", m->sets[m->nsets - 1].id);
        t = tmp;
    } else if (r.kind == R_NODE && r.set->view->nodes[r.node].type == CF_FS_LINK) {
        t = r.set->view->arena + r.set->view->nodes[r.node].target;
    } else {
        return -EINVAL;
    }
    if (size == 0)
        return -EINVAL;
    snprintf(buf, size, "%s", t);
    return 0;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    (void)off;
    (void)fi;
    (void)flags;
    mfs *m = fs_of();
    resolved r;
    int rc = resolve(m, path, &r);
    if (rc)
        return rc;
    fill(buf, ".", NULL, 0, 0);
    fill(buf, "..", NULL, 0, 0);
    switch (r.kind) {
    case R_ROOT:
        fill(buf, "sets", NULL, 0, 0);
        if (m->nsets)
            fill(buf, "latest", NULL, 0, 0);
        return 0;
    case R_SETS:
        for (size_t i = 0; i < m->nsets; i++)
            fill(buf, m->sets[i].id, NULL, 0, 0);
        return 0;
    case R_SETDIR:
        if (!view_of(m, r.set))
            return -EIO;
        r.node = 0;
        break;
    case R_LATEST:
        return -ENOTDIR;
    }
    const cf_setview *v = r.set->view;
    const cf_fsnode *d = &v->nodes[r.node];
    if (d->type != CF_FS_DIR)
        return -ENOTDIR;
    for (uint32_t i = 0; i < d->nkids; i++) {
        const cf_fsnode *k = &v->nodes[v->kids[d->kid0 + i]];
        if (!k->given && k->type != CF_FS_DIR)
            continue;
        if (fill(buf, v->arena + k->name, NULL, 0, 0))
            break;
    }
    return 0;
}

static int op_open(const char *path, struct fuse_file_info *fi)
{
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & (O_TRUNC | O_CREAT)))
        return -EROFS;
    mfs *m = fs_of();
    resolved r;
    int rc = resolve(m, path, &r);
    if (rc)
        return rc;
    if (r.kind != R_NODE)
        return -EISDIR;
    const cf_setview *v = r.set->view;
    const cf_fsnode *n = &v->nodes[r.node];
    if (n->type != CF_FS_FILE)
        return -EISDIR;
    mfile *f = cf_calloc(1, sizeof *f);
    f->view = v;
    f->node = n;
    f->offs = cf_malloc((n->nchunks + 1) * sizeof *f->offs);
    int64_t *sizes = cf_malloc((n->nchunks ? n->nchunks : 1) * sizeof *sizes);
    int bad = 0;
    for (uint32_t i = 0; i < n->nchunks && !bad; i++) {
        sizes[i] = cf_repo_chunk_size(m->repo, &v->chunks[n->chunk0 + i]);
        if (sizes[i] < 0) {
            char hex[2 * CF_ID_LEN + 1];
            cf_id_hex(&v->chunks[n->chunk0 + i], hex);
            cf_log(CF_LOG_ERROR, "%s: chunk %s is not in the repository index", path, hex);
            bad = 1;
        }
    }
    if (bad || cf_chunk_offsets(sizes, n->nchunks, f->offs) != 0) {
        free(sizes);
        free(f->offs);
        free(f);
        return -EIO;
    }
    free(sizes);
    if (f->offs[n->nchunks] != n->size)
        cf_log(CF_LOG_WARN, "%s: chunks hold %llu bytes, the manifest says %llu", path,
               (unsigned long long)f->offs[n->nchunks], (unsigned long long)n->size);
    pthread_mutex_lock(&m->load_mu);
    f->nextf = m->files;
    if (m->files)
        m->files->prev = f;
    m->files = f;
    pthread_mutex_unlock(&m->load_mu);
    fi->fh = (uint64_t)(uintptr_t)f;
    fi->keep_cache = 1;
    return 0;
}

static int inflight_at(const mfs *m, const cf_id *id)
{
    for (int k = 0; k < m->ninflight; k++)
        if (memcmp(m->inflight[k].b, id->b, CF_ID_LEN) == 0)
            return k;
    return -1;
}

/* Read a chunk from the repository into the cache and copy take bytes at
 * in to dst. A chunk another thread is fetching is waited for, not read
 * twice (the kernel's read-ahead asks for neighbouring ranges at once). */
static int fetch(mfs *m, const cf_id *id, const char *path, size_t clen, size_t in, char *dst,
                 size_t take)
{
    pthread_mutex_lock(&m->fetch_mu);
    while (inflight_at(m, id) >= 0 || m->ninflight == MOUNT_THREADS) {
        pthread_cond_wait(&m->fetch_cv, &m->fetch_mu);
        if (inflight_at(m, id) < 0 && cf_ccache_read(m->cache, id, in, dst, take)) {
            pthread_mutex_unlock(&m->fetch_mu);
            return 0;
        }
    }
    m->inflight[m->ninflight++] = *id;
    pthread_mutex_unlock(&m->fetch_mu);

    int rc = 0;
    cf_buf b = {0};
    if (cf_repo_get_chunk(m->repo, id, &b) != 0) {
        cf_log(CF_LOG_ERROR, "%s: %s", path, cf_error());
        rc = -1;
    } else if (b.len != clen) {
        cf_log(CF_LOG_ERROR, "%s: a chunk holds %zu bytes, the index says %zu", path, b.len, clen);
        rc = -1;
    } else {
        memcpy(dst, b.data + in, take);
        /* the cache counts bytes held: give back what growth reserved */
        uint8_t *data = b.cap > b.len ? realloc(b.data, b.len ? b.len : 1) : b.data;
        cf_ccache_put(m->cache, id, data ? data : b.data, b.len);
        b.data = NULL;
    }
    cf_buf_free(&b);

    pthread_mutex_lock(&m->fetch_mu);
    int k = inflight_at(m, id);
    m->inflight[k] = m->inflight[--m->ninflight];
    pthread_cond_broadcast(&m->fetch_cv);
    pthread_mutex_unlock(&m->fetch_mu);
    return rc;
}

static int ra_pending_locked(const mfs *m, const cf_id *id)
{
    for (size_t k = 0; k < m->ra_n; k++)
        if (memcmp(m->raq[(m->ra_head + k) % RA_MAX].id.b, id->b, CF_ID_LEN) == 0)
            return 1;
    return 0;
}

/* A read of chunks [first, last] of f: when it follows the previous one
 * (the kernel's own read-ahead may reorder neighbours a little), name the
 * chunks after it up to RA_BYTES that are neither cached nor on their way. */
static void ra_request(mfs *m, mfile *f, uint32_t first, uint32_t last)
{
    const cf_fsnode *n = f->node;
    pthread_mutex_lock(&m->fetch_mu);
    int seq_read = first <= f->next + 2 && first + 2 >= f->next;
    if (last + 1 > f->next)
        f->next = last + 1;
    if (!seq_read || !m->ra || m->ra_closing) {
        pthread_mutex_unlock(&m->fetch_mu);
        return;
    }
    uint32_t i = f->ra_end > last + 1 ? f->ra_end : last + 1;
    int added = 0;
    while (i < n->nchunks && m->ra_n < RA_MAX && f->offs[i] - f->offs[last + 1] < RA_BYTES) {
        const cf_id *id = &f->view->chunks[n->chunk0 + i];
        if (!cf_ccache_has(m->cache, id) && !ra_pending_locked(m, id)) {
            ra_item *it = &m->raq[(m->ra_head + m->ra_n++) % RA_MAX];
            it->id = *id;
            it->len = (size_t)(f->offs[i + 1] - f->offs[i]);
            it->seq = cf_fetch_want(m->ra, id, 1);
            added = 1;
        }
        i++;
    }
    f->ra_end = i;
    if (added)
        pthread_cond_signal(&m->ra_cv);
    pthread_mutex_unlock(&m->fetch_mu);
}

/* Wait while the chunk is on its way: 1 when it was. */
static int ra_wait(mfs *m, const cf_id *id)
{
    pthread_mutex_lock(&m->fetch_mu);
    int was = 0;
    while (ra_pending_locked(m, id)) {
        was = 1;
        pthread_cond_wait(&m->fetch_cv, &m->fetch_mu);
    }
    pthread_mutex_unlock(&m->fetch_mu);
    return was;
}

static void *ra_thread(void *arg)
{
    mfs *m = arg;
    cf_buf b = {0};
    pthread_mutex_lock(&m->fetch_mu);
    for (;;) {
        while (!m->ra_n && !m->ra_closing)
            pthread_cond_wait(&m->ra_cv, &m->fetch_mu);
        if (!m->ra_n)
            break;
        ra_item it = m->raq[m->ra_head];
        int closing = m->ra_closing;
        pthread_mutex_unlock(&m->fetch_mu);
        if (closing) {
            cf_fetch_skip(m->ra, it.seq, 1);
        } else if (cf_fetch_take(m->ra, it.seq, &b) == 0 && b.len == it.len) {
            uint8_t *data = b.cap > b.len ? realloc(b.data, b.len ? b.len : 1) : b.data;
            cf_ccache_put(m->cache, &it.id, data ? data : b.data, b.len);
            b = (cf_buf){0};
            __atomic_add_fetch(&m->ra_chunks, 1, __ATOMIC_RELAXED);
        } else {
            /* the reader that needs it reads it itself and reports */
            cf_log(CF_LOG_DEBUG, "read-ahead: %s", cf_error());
            cf_error_clear();
        }
        pthread_mutex_lock(&m->fetch_mu);
        m->ra_head = (m->ra_head + 1) % RA_MAX;
        m->ra_n--;
        pthread_cond_broadcast(&m->fetch_cv);
    }
    pthread_mutex_unlock(&m->fetch_mu);
    cf_buf_free(&b);
    return NULL;
}

static int op_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    mfs *m = fs_of();
    mfile *f = (mfile *)(uintptr_t)fi->fh;
    const cf_fsnode *n = f->node;
    uint64_t end = f->offs[n->nchunks];
    if (off < 0)
        return -EINVAL;
    if ((uint64_t)off >= end)
        return 0;
    if (size > end - (uint64_t)off)
        size = (size_t)(end - (uint64_t)off);
    size_t done = 0;
    size_t i = cf_chunk_at(f->offs, n->nchunks, (uint64_t)off);
    if (i < n->nchunks)
        ra_request(m, f, (uint32_t)i,
                   (uint32_t)cf_chunk_at(f->offs, n->nchunks, (uint64_t)off + size - 1));
    while (done < size && i < n->nchunks) {
        uint64_t pos = (uint64_t)off + done;
        size_t in = (size_t)(pos - f->offs[i]);
        size_t clen = (size_t)(f->offs[i + 1] - f->offs[i]);
        size_t take = clen - in;
        if (take > size - done)
            take = size - done;
        const cf_id *id = &f->view->chunks[n->chunk0 + i];
        if (!cf_ccache_read(m->cache, id, in, buf + done, take) &&
            !(ra_wait(m, id) && cf_ccache_read(m->cache, id, in, buf + done, take)) &&
            fetch(m, id, path, clen, in, buf + done, take) != 0)
            return done ? (int)done : -EIO;
        done += take;
        i++;
    }
    return (int)done;
}

static int op_release(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    mfile *f = (mfile *)(uintptr_t)fi->fh;
    mfs *m = fs_of();
    pthread_mutex_lock(&m->load_mu);
    if (f->prev)
        f->prev->nextf = f->nextf;
    else
        m->files = f->nextf;
    if (f->nextf)
        f->nextf->prev = f->prev;
    pthread_mutex_unlock(&m->load_mu);
    free(f->offs);
    free(f);
    return 0;
}

static int op_erofs(void)
{
    return -EROFS;
}

static int op_create(const char *p, mode_t md, struct fuse_file_info *fi)
{
    (void)p, (void)md, (void)fi;
    return op_erofs();
}
static int op_mkdir(const char *p, mode_t md)
{
    (void)p, (void)md;
    return op_erofs();
}
static int op_unlink(const char *p)
{
    (void)p;
    return op_erofs();
}
static int op_rename(const char *a, const char *b, unsigned int fl)
{
    (void)a, (void)b, (void)fl;
    return op_erofs();
}
static int op_truncate(const char *p, off_t o, struct fuse_file_info *fi)
{
    (void)p, (void)o, (void)fi;
    return op_erofs();
}

static const struct fuse_operations ops = {
    .init = op_init,
    .getattr = op_getattr,
    .readlink = op_readlink,
    .readdir = op_readdir,
    .open = op_open,
    .read = op_read,
    .release = op_release,
    .create = op_create,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_unlink,
    .rename = op_rename,
    .truncate = op_truncate,
};

/* The policy's sets, oldest first. */
static int load_sets(cf_run *run, mfs *m)
{
    char **ids;
    size_t n;
    if (cf_sets_list(run->repo, &ids, &n) != 0)
        return -1;
    m->sets = cf_calloc(n ? n : 1, sizeof *m->sets);
    for (size_t i = 0; i < n; i++) {
        json_t *h;
        if (cf_manifest_header(run->repo, ids[i], &h) != 0) {
            cf_log(CF_LOG_WARN, "set %s not shown: %s", ids[i], cf_error());
            continue;
        }
        const char *pol = json_string_value(json_object_get(h, "policy"));
        if (pol && strcmp(pol, run->policy->name) == 0 && strlen(ids[i]) < 256 &&
            !strchr(ids[i], '/') && ids[i][0] != '.') {
            m->sets[m->nsets].id = cf_strdup(ids[i]);
            m->sets[m->nsets].time = parse_time(json_string_value(json_object_get(h, "time")));
            m->nsets++;
        }
        json_decref(h);
    }
    cf_strv_free(ids, n);
    return 0;
}

int cf_mount_run(cf_run *run, const cf_mount_opts *o)
{
    /* chunk buffers (up to 8 MiB) come and go on several threads: a fixed
     * mmap threshold returns them to the system when freed, instead of
     * glibc's rising threshold keeping them in per-thread arenas */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    mfs m = {0};
    m.repo = run->repo;
    m.uid = getuid();
    m.gid = getgid();
    m.started = time(NULL);
    pthread_mutex_init(&m.load_mu, NULL);
    pthread_mutex_init(&m.fetch_mu, NULL);
    pthread_cond_init(&m.fetch_cv, NULL);
    int ret = -1;
    pthread_cond_init(&m.ra_cv, NULL);
    int ra_started = 0;
    if (load_sets(run, &m) != 0)
        goto out;
    m.cache = cf_ccache_new(o->cache_size);
    /* A read-ahead holds at most RA_BYTES; a small window also keeps each
     * ranged read's buffer small (the mount's memory target is 64 MiB). */
    m.ra = cf_fetch_new(m.repo, 2 * RA_BYTES);
    ra_started = pthread_create(&m.ra_th, NULL, ra_thread, &m) == 0;
    if (!ra_started) {
        cf_fetch_free(m.ra);
        m.ra = NULL;
    }

    char *argv[] = {"coffer", "-o", "ro,fsname=coffer,subtype=coffer", NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, argv);
    struct fuse *f = fuse_new(&args, &ops, sizeof ops, &m);
    fuse_opt_free_args(&args);
    if (!f) {
        cf_fail("cannot start the file system");
        goto out;
    }
    if (fuse_mount(f, o->mountpoint) != 0) {
        fuse_destroy(f);
        cf_fail("cannot mount on %s (is /dev/fuse there, fusermount3 installed?)", o->mountpoint);
        goto out;
    }
    /* fuse installs its handlers only over the default ones: SIGINT,
     * SIGTERM and SIGHUP now end the loop, which unmounts */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    struct fuse_session *se = fuse_get_session(f);
    if (fuse_set_signal_handlers(se) != 0) {
        fuse_unmount(f);
        fuse_destroy(f);
        cf_fail("cannot install signal handlers");
        goto out;
    }
    cf_log(CF_LOG_INFO, "%zu sets mounted on %s; unmount with `fusermount3 -u %s` or Ctrl-C",
           m.nsets, o->mountpoint, o->mountpoint);
    int rc;
    if (o->single_thread) {
        rc = fuse_loop(f);
    } else {
        struct fuse_loop_config *lc = fuse_loop_cfg_create();
        fuse_loop_cfg_set_max_threads(lc, MOUNT_THREADS);
        rc = fuse_loop_mt(f, lc);
        fuse_loop_cfg_destroy(lc);
    }
    fuse_remove_signal_handlers(se);
    fuse_unmount(f);
    fuse_destroy(f);
    /* a signal that ended the loop is reported as its number */
    if (rc < 0) {
        cf_fail("file system loop: %s", strerror(-rc));
        goto out;
    }
    size_t bytes, chunks;
    uint64_t hits, misses;
    cf_ccache_stats(m.cache, &bytes, &chunks, &hits, &misses);
    cf_repo_stats rs;
    cf_repo_get_stats(m.repo, &rs);
    cf_log(CF_LOG_INFO,
           "unmounted %s (chunk cache: %llu hits, %llu misses; %llu chunks read ahead; "
           "%llu ranged reads of packs)",
           o->mountpoint, (unsigned long long)hits, (unsigned long long)misses,
           (unsigned long long)__atomic_load_n(&m.ra_chunks, __ATOMIC_RELAXED),
           (unsigned long long)rs.reads);
    ret = 0;
out:
    if (ra_started) {
        pthread_mutex_lock(&m.fetch_mu);
        m.ra_closing = 1;
        pthread_cond_broadcast(&m.ra_cv);
        pthread_mutex_unlock(&m.fetch_mu);
        pthread_join(m.ra_th, NULL);
    }
    cf_fetch_free(m.ra);
    pthread_cond_destroy(&m.ra_cv);
    /* files whose release had not reached us when the loop ended */
    while (m.files) {
        mfile *f = m.files;
        m.files = f->nextf;
        free(f->offs);
        free(f);
    }
    cf_ccache_free(m.cache);
    for (size_t i = 0; i < m.nsets; i++) {
        free(m.sets[i].id);
        cf_setview_free(m.sets[i].view);
    }
    free(m.sets);
    pthread_mutex_destroy(&m.load_mu);
    pthread_mutex_destroy(&m.fetch_mu);
    pthread_cond_destroy(&m.fetch_cv);
    return ret;
}
