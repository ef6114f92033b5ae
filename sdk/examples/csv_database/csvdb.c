/*
 * csvdb: an example coffer database driver that needs no server. The
 * "database" is a directory of CSV files (option `dir`, relative to the
 * policy root); each file's first line is its header, every further line
 * a row.
 *
 *  - dump: reads every *.csv into its own stream and records
 *    rows.<name> (rows without the header). The capture is consistent:
 *    size, mtime and inode of every file are taken before and after
 *    reading, and the read is repeated (up to 3 times) while anything
 *    changed; a table that never holds still fails with COFFER_ERR_RETRY.
 *  - restore: writes the streams back into `dir` under opts->root, an
 *    empty private directory; the core then moves `dir` into place (it is
 *    the one path owned_paths claims).
 *  - verify: each restored table has the recorded row count and size.
 *  - validate (ABI 1.1): `dir` must not be absolute or leave the root,
 *    and must not name an existing file.
 *
 * Illustrates a file database: owned_paths plus COFFER_DBCAP_OWNS_FILES.
 */
#include <coffer/coffer.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct csvdb {
    uint32_t magic;
    const coffer_host *host;
    coffer_hctx *h;
    char *dir; /* as given (relative): what owned_paths claims */
} csvdb;

static const coffer_option csvdb_options[] = {
    {"dir", COFFER_OPT_PATH, NULL, 1, 0, "directory of *.csv tables, relative to the policy root"},
    {NULL, 0, NULL, 0, 0, NULL},
};

/* ---- tables ------------------------------------------------------------- */

static int is_csv(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && n > 4 && strcmp(name + n - 4, ".csv") == 0;
}

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* dir resolved against the root the core gives (policy or restore root). */
static char *resolve(csvdb *db, const char *root)
{
    return root && *root ? join(root, db->dir) : strdup(db->dir);
}

/* Lines after the header; a last line without '\n' counts too. */
static uint64_t count_rows(const char *buf, size_t len)
{
    uint64_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    if (len && buf[len - 1] != '\n')
        lines++;
    return lines ? lines - 1 : 0;
}

typedef struct table {
    char *name;
    char *data;
    size_t len;
    struct stat st;
} table;

static void tables_free(table *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(t[i].name);
        free(t[i].data);
    }
    free(t);
}

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Read every table once. Returns COFFER_OK, COFFER_ERR_RETRY when a file
 * changed while it was read, or another error. */
static coffer_status read_tables(csvdb *db, const char *path, table **out, size_t *nout)
{
    DIR *d = opendir(path);
    if (!d)
        return db->host->error(db->h, errno == ENOENT ? COFFER_ERR_NOT_FOUND : COFFER_ERR_IO,
                               "cannot open %s: %s", path, strerror(errno));
    table *t = NULL;
    size_t n = 0;
    coffer_status st = COFFER_OK;
    struct dirent *e;
    while (st == COFFER_OK && (e = readdir(d)) != NULL) {
        if (!is_csv(e->d_name))
            continue;
        table *nt = realloc(t, (n + 1) * sizeof *t);
        if (!nt) {
            st = db->host->error(db->h, COFFER_ERR_FATAL, "out of memory");
            break;
        }
        t = nt;
        table *x = &t[n++];
        memset(x, 0, sizeof *x);
        x->name = strdup(e->d_name);
        char *fp = join(path, e->d_name);
        FILE *f = fp ? fopen(fp, "rb") : NULL;
        struct stat after;
        if (!x->name || !f || fstat(fileno(f), &x->st) != 0) {
            st = db->host->error(db->h, COFFER_ERR_IO, "cannot read %s/%s: %s", path, e->d_name,
                                 strerror(errno));
        } else {
            x->data = malloc((size_t)x->st.st_size + 1);
            x->len = x->data ? fread(x->data, 1, (size_t)x->st.st_size + 1, f) : 0;
            if (!x->data)
                st = db->host->error(db->h, COFFER_ERR_FATAL, "out of memory");
            else if (ferror(f))
                st = db->host->error(db->h, COFFER_ERR_IO, "cannot read %s", fp);
            else if (stat(fp, &after) != 0 || !same_file(&x->st, &after) ||
                     x->len != (size_t)x->st.st_size)
                st = COFFER_ERR_RETRY; /* written to while we read it */
        }
        if (f)
            fclose(f);
        free(fp);
    }
    closedir(d);
    if (st != COFFER_OK) {
        tables_free(t, n);
        return st;
    }
    *out = t;
    *nout = n;
    return COFFER_OK;
}

/* ---- instance ----------------------------------------------------------- */

static coffer_status csvdb_check_dir(const coffer_host *host, coffer_hctx *h, const char *dir)
{
    if (!dir || !*dir)
        return host->error(h, COFFER_ERR_INVALID, "option 'dir' is required");
    if (dir[0] == '/')
        return host->error(h, COFFER_ERR_INVALID, "'%s' must be relative to the policy root", dir);
    for (const char *p = dir; *p;) {
        size_t n = strcspn(p, "/");
        if ((n == 2 && p[0] == '.' && p[1] == '.') || (n == 1 && p[0] == '.'))
            return host->error(h, COFFER_ERR_INVALID, "'%s' may not contain '.' or '..' segments",
                               dir);
        p += n;
        while (*p == '/')
            p++;
    }
    return COFFER_OK;
}

static void csvdb_free(void *inst)
{
    csvdb *db = inst;
    if (!db)
        return;
    db->magic = 0;
    free(db->dir);
    free(db);
}

static coffer_status csvdb_new(const coffer_host *host, coffer_hctx *h, const coffer_config *cfg,
                               void **inst)
{
    *inst = NULL;
    const char *dir = host->config_get(cfg, "dir");
    coffer_status st = csvdb_check_dir(host, h, dir);
    if (st != COFFER_OK)
        return st;
    csvdb *db = calloc(1, sizeof *db);
    if (!db || !(db->dir = strdup(dir))) {
        free(db);
        return host->error(h, COFFER_ERR_FATAL, "out of memory");
    }
    size_t n = strlen(db->dir);
    while (n > 1 && db->dir[n - 1] == '/')
        db->dir[--n] = 0;
    db->magic = COFFER_MAGIC_INSTANCE;
    db->host = host;
    db->h = h;
    *inst = db;
    return COFFER_OK;
}

static uint32_t csvdb_caps(void *inst)
{
    (void)inst;
    return COFFER_DBCAP_OWNS_FILES; /* because owned_paths is set: one rule */
}

static coffer_status csvdb_probe(void *inst, coffer_db_info *info)
{
    csvdb *db = inst;
    char *path = resolve(db, db->host->policy_root(db->h));
    table *t;
    size_t n;
    coffer_status st = path ? read_tables(db, path, &t, &n) : COFFER_ERR_FATAL;
    if (st == COFFER_ERR_RETRY)
        return COFFER_OK; /* busy now; dump retries */
    if (st != COFFER_OK) {
        free(path);
        return st;
    }
    uint64_t size = 0;
    for (size_t i = 0; i < n; i++)
        size += t[i].len;
    snprintf(info->server_version, sizeof info->server_version, "csv");
    info->size_bytes = size;
    snprintf(info->detail, sizeof info->detail, "%zu table(s) in %s", n, path);
    tables_free(t, n);
    free(path);
    return COFFER_OK;
}

/* ---- dump, restore, verify ---------------------------------------------- */

static coffer_status csvdb_dump(void *inst, coffer_dump_sink *sink)
{
    csvdb *db = inst;
    char *path = resolve(db, db->host->policy_root(db->h));
    if (!path)
        return db->host->error(db->h, COFFER_ERR_FATAL, "out of memory");
    table *t = NULL;
    size_t n = 0;
    coffer_status st = COFFER_ERR_RETRY;
    int attempt;
    for (attempt = 1; attempt <= 3 && st == COFFER_ERR_RETRY; attempt++) {
        if (db->host->cancelled(db->h)) {
            free(path);
            return db->host->error(db->h, COFFER_ERR_CANCELLED, "cancelled");
        }
        st = read_tables(db, path, &t, &n);
        if (st == COFFER_ERR_RETRY)
            usleep(100 * 1000);
    }
    if (st == COFFER_ERR_RETRY)
        st = db->host->error(db->h, COFFER_ERR_RETRY,
                             "%s: tables kept changing while read (3 attempts)", path);
    free(path);
    if (st != COFFER_OK)
        return st;
    for (size_t i = 0; i < n && st == COFFER_OK; i++) {
        void *s;
        if ((st = sink->stream_open(sink, t[i].name, &s)) != COFFER_OK)
            break;
        st = sink->stream_write(s, t[i].data, t[i].len);
        coffer_status cst = sink->stream_close(s);
        if (st == COFFER_OK)
            st = cst;
        db->host->progress(db->h, t[i].len);
        char key[300], val[32];
        snprintf(key, sizeof key, "rows.%.*s", (int)(strlen(t[i].name) - 4), t[i].name);
        snprintf(val, sizeof val, "%llu", (unsigned long long)count_rows(t[i].data, t[i].len));
        if (st == COFFER_OK)
            st = sink->meta(sink, key, val);
    }
    char how[64];
    snprintf(how, sizeof how, "files unchanged while read (attempt %d)", attempt - 1);
    if (st == COFFER_OK)
        st = sink->meta(sink, "snapshot", how);
    tables_free(t, n);
    return st;
}

static coffer_status csvdb_restore(void *inst, coffer_dump_source *src,
                                   const coffer_restore_opts *o)
{
    csvdb *db = inst;
    char *path = resolve(db, o->root);
    if (!path)
        return db->host->error(db->h, COFFER_ERR_FATAL, "out of memory");
    /* create dir and its parents under the root */
    for (char *p = path + strlen(o->root ? o->root : "") + 1; (p = strchr(p, '/')); p++) {
        *p = 0;
        mkdir(path, 0755);
        *p = '/';
    }
    coffer_status st = COFFER_OK;
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        st = db->host->error(db->h, COFFER_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    for (size_t i = 0; st == COFFER_OK && i < src->stream_count(src); i++) {
        const char *name = src->stream_name(src, i);
        if (!is_csv(name) || strchr(name, '/')) {
            st = db->host->error(db->h, COFFER_ERR_CORRUPT, "unexpected stream '%s'", name);
            break;
        }
        char *fp = join(path, name);
        FILE *f = fp ? fopen(fp, o->force ? "wb" : "wbx") : NULL;
        void *s = NULL;
        if (!f) {
            st = db->host->error(db->h, COFFER_ERR_IO, "cannot create %s: %s", fp ? fp : name,
                                 strerror(errno));
        } else if ((st = src->stream_open(src, name, &s)) == COFFER_OK) {
            char buf[65536];
            size_t got;
            while ((st = src->stream_read(s, buf, sizeof buf, &got)) == COFFER_OK && got)
                if (fwrite(buf, 1, got, f) != got) {
                    st = db->host->error(db->h, COFFER_ERR_IO, "cannot write %s", fp);
                    break;
                }
            src->stream_close(s);
        }
        if (f && fclose(f) != 0 && st == COFFER_OK)
            st = db->host->error(db->h, COFFER_ERR_IO, "cannot write %s", fp);
        free(fp);
    }
    free(path);
    return st;
}

static coffer_status csvdb_verify(void *inst, coffer_dump_source *src, const coffer_restore_opts *o,
                                  coffer_check_cb cb, void *ud)
{
    csvdb *db = inst;
    char *path = resolve(db, o->root);
    if (!path)
        return db->host->error(db->h, COFFER_ERR_FATAL, "out of memory");
    table *t;
    size_t n;
    coffer_status st = read_tables(db, path, &t, &n);
    free(path);
    if (st != COFFER_OK)
        return st;
    int failed = 0;
    for (size_t i = 0; i < src->stream_count(src); i++) {
        const char *name = src->stream_name(src, i);
        char key[300], detail[160];
        snprintf(key, sizeof key, "rows.%.*s", (int)(strlen(name) - 4), name);
        const char *want = src->meta_get(src, key);
        const table *x = NULL;
        for (size_t k = 0; k < n; k++)
            if (strcmp(t[k].name, name) == 0)
                x = &t[k];
        unsigned long long rows = x ? count_rows(x->data, x->len) : 0;
        int ok =
            x && x->len == src->stream_size(src, i) && want && strtoull(want, NULL, 10) == rows;
        if (!x)
            snprintf(detail, sizeof detail, "%s is missing", name);
        else
            snprintf(detail, sizeof detail, "%llu row(s), %s recorded", rows, want ? want : "none");
        cb(ud, ok, key, detail);
        failed += !ok;
    }
    tables_free(t, n);
    return failed
               ? db->host->error(db->h, COFFER_ERR_FAILED, "%d table(s) failed the check", failed)
               : COFFER_OK;
}

static size_t csvdb_owned(void *inst, const char **paths, size_t max)
{
    csvdb *db = inst;
    if (max < 1)
        return 0;
    paths[0] = db->dir;
    return 1;
}

/* policy check: the same rules as instance_new, plus `dir` naming a file. */
static coffer_status csvdb_validate(const coffer_host *host, coffer_hctx *h,
                                    const coffer_config *cfg, const char **bad_option)
{
    const char *dir = host->config_get(cfg, "dir");
    *bad_option = "dir";
    coffer_status st = csvdb_check_dir(host, h, dir);
    if (st != COFFER_OK)
        return st;
    const char *root = host->policy_root(h);
    char *full = root ? join(root, dir) : strdup(dir);
    struct stat sb;
    if (full && stat(full, &sb) == 0 && !S_ISDIR(sb.st_mode))
        st = host->error(h, COFFER_ERR_INVALID, "%s is not a directory", full);
    free(full);
    if (st == COFFER_OK)
        *bad_option = NULL;
    return st;
}

static const coffer_database_ops csvdb_ops = {
    .struct_size = sizeof(coffer_database_ops),
    .instance_new = csvdb_new,
    .instance_free = csvdb_free,
    .capabilities = csvdb_caps,
    .probe = csvdb_probe,
    .dump = csvdb_dump,
    .restore = csvdb_restore,
    .verify = csvdb_verify,
    .owned_paths = csvdb_owned,
    .validate = csvdb_validate,
};

static const coffer_plugin csvdb_plugin = {
    COFFER_PLUGIN_HEADER,
    .kind = COFFER_KIND_DATABASE,
    .name = "csvdb",
    .version = "0.1.0",
    .description = "example: a directory of CSV tables, captured consistently",
    .threading = COFFER_THREADS_PER_INSTANCE,
    .options = csvdb_options,
    .database = &csvdb_ops,
};

COFFER_EXPORT const coffer_plugin *coffer_plugin_init(const coffer_host *host)
{
    /* Uses validate and final_root-era options: needs a 1.1 host. */
    if (host->abi_major != COFFER_ABI_MAJOR) {
        return NULL;
    }
    return &csvdb_plugin;
}
