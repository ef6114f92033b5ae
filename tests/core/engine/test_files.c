/* core/engine/files.c: safe relative paths, exclude patterns, walking a
 * tree (order, kinds, metadata, hard links, special files, excludes,
 * skips, required paths) and extraction (content, modes, times, links)
 * with libarchive's refusals (.., absolute paths, writing through a
 * symbolic link). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/extract.h"
#include "engine/files.h"
#include "engine_test.h"

typedef struct walked {
    cf_entry e;
    char *abs;
} walked;

typedef struct fx {
    et_dir d;
    char root[400];
    int cwd;
    walked *w;
    size_t nw;
    int stop_at; /* callback returns nonzero at this entry (-1: never) */
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (et_dir_new(&f->d) != 0)
        return -1;
    snprintf(f->root, sizeof f->root, "%s/root", f->d.path);
    mkdir(f->root, 0755);
    f->cwd = open(".", O_RDONLY | O_DIRECTORY);
    f->stop_at = -1;
    *state = f;
    return 0;
}

static void walked_free(fx *f)
{
    for (size_t i = 0; i < f->nw; i++) {
        cf_entry_clear(&f->w[i].e);
        free(f->w[i].abs);
    }
    free(f->w);
    f->w = NULL;
    f->nw = 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (fchdir(f->cwd) != 0)
        return -1;
    close(f->cwd);
    walked_free(f);
    et_dir_free(&f->d);
    free(f);
    return 0;
}

/* ---- paths and patterns ------------------------------------------------- */

static void test_path_safe(void **state)
{
    (void)state;
    static const char *ok[] = {"a", "a/b", "data/config.toml", "..keep", "a/..b", "a/b..", ".hidden",
                               "a/.b", "a b/c"};
    static const char *bad[] = {"", "/a", "/", "../a", "..", ".", "a/..", "a/../b", "a//b", "./a",
                                "a/./b", "a/.", "//a"};
    for (size_t i = 0; i < CF_ARRAY_LEN(ok); i++)
        if (cf_path_safe(ok[i]) != 0)
            fail_msg("cf_path_safe refused \"%s\"", ok[i]);
    for (size_t i = 0; i < CF_ARRAY_LEN(bad); i++)
        if (cf_path_safe(bad[i]) == 0)
            fail_msg("cf_path_safe accepted \"%s\"", bad[i]);
    assert_int_equal(cf_path_safe(NULL), -1);
}

static int match(const char *pattern, const char *rel)
{
    char *v[] = {(char *)pattern};
    cf_strlist l = {v, 1};
    return cf_exclude_match(&l, rel);
}

#define MATCH(p, r) do { if (!match(p, r)) fail_msg("\"%s\" should match \"%s\"", p, r); } while (0)
#define NO_MATCH(p, r) do { if (match(p, r)) fail_msg("\"%s\" should not match \"%s\"", p, r); } while (0)

static void test_exclude_match(void **state)
{
    (void)state;
    /* basename patterns (no slash): any depth */
    MATCH("*.tmp", "x/y/z.tmp");
    MATCH("*.tmp", "z.tmp");
    NO_MATCH("*.tmp", "x/y/z.tmpx");
    NO_MATCH("*.tmp", "x.tmp/y"); /* the directory itself was excluded, not its content */
    MATCH("cache", "a/b/cache");
    NO_MATCH("cache", "a/b/cache2");
    MATCH(".uploads", "data/.uploads");
    /* path patterns: from the root, exactly */
    MATCH("data/.tmp", "data/.tmp");
    NO_MATCH("data/.tmp", "data/.tmpx");
    NO_MATCH("data/.tmp", "x/data/.tmp");
    NO_MATCH("data/.tmp", "data");
    MATCH("data/*.log", "data/a.log");
    NO_MATCH("data/*.log", "data/sub/a.log"); /* '*' stays inside one directory */
    MATCH("./data/.tmp", "data/.tmp");       /* "./" and a trailing "/" are ignored */
    MATCH("data/.tmp/", "data/.tmp");
    /* "**" crosses directories */
    MATCH("data/**/cache", "data/a/b/cache");
    MATCH("data/**/cache", "data/a/cache");
    NO_MATCH("data/**/cache", "data/a/b/cache2");
    NO_MATCH("data/**/cache", "other/a/cache");
    MATCH("data/**", "data/a/b/c");
    MATCH("**/*.bak", "a/b/c.bak");
    /* several patterns, none */
    char *v[] = {"*.swp", "data/.tmp", "logs/**/old"};
    cf_strlist l = {v, 3};
    assert_true(cf_exclude_match(&l, "x/.f.swp"));
    assert_true(cf_exclude_match(&l, "logs/2026/11/old"));
    assert_false(cf_exclude_match(&l, "logs/2026/11/new"));
    cf_strlist empty = {NULL, 0};
    assert_false(cf_exclude_match(&empty, "a"));
    assert_false(cf_exclude_match(NULL, "a"));
}

/* ---- walking ----------------------------------------------------------------- */

static void mk(fx *f, const char *rel, const char *content, mode_t mode)
{
    char p[800];
    snprintf(p, sizeof p, "%s/%s", f->root, rel);
    if (!content) {
        assert_int_equal(mkdir(p, 0755), 0);
    } else {
        assert_int_equal(et_write_str(p, content), 0);
    }
    assert_int_equal(chmod(p, mode), 0);
}

static void set_mtime(fx *f, const char *rel, time_t s, long ns)
{
    char p[800];
    snprintf(p, sizeof p, "%s/%s", f->root, rel);
    struct timespec ts[2] = {{s, ns}, {s, ns}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
}

static int collect(void *ud, cf_entry *e, const char *abs)
{
    fx *f = ud;
    if (f->stop_at >= 0 && (size_t)f->stop_at == f->nw)
        return cf_fail("stopped by the callback");
    f->w = cf_realloc(f->w, (f->nw + 1) * sizeof *f->w);
    f->w[f->nw].e = *e;
    memset(e, 0, sizeof *e); /* ownership taken */
    f->w[f->nw].abs = cf_strdup(abs);
    f->nw++;
    return 0;
}

static uint8_t bigdata[200000];

static void build_tree(fx *f)
{
    mk(f, "data", NULL, 0750);
    mk(f, "data/a.txt", "alpha\n", 0640);
    mk(f, "data/.tmpx", "kept", 0644);
    mk(f, "data/.tmp", NULL, 0755);
    mk(f, "data/.tmp/junk", "junk", 0644);
    mk(f, "data/hard1", "hard content", 0604);
    char a[800], b[800];
    snprintf(a, sizeof a, "%s/data/hard1", f->root);
    snprintf(b, sizeof b, "%s/data/hard2", f->root);
    assert_int_equal(link(a, b), 0);
    mk(f, "data/sub", NULL, 0700);
    mk(f, "data/empty", NULL, 0711);
    et_fill_random(bigdata, sizeof bigdata, 3);
    snprintf(a, sizeof a, "%s/data/sub/b.bin", f->root);
    assert_int_equal(et_write(a, bigdata, sizeof bigdata), 0);
    chmod(a, 0600);
    mk(f, "data/sub/deep.tmp", "tmp", 0644);
    snprintf(a, sizeof a, "%s/data/sub/link", f->root);
    assert_int_equal(symlink("../a.txt", a), 0);
    snprintf(a, sizeof a, "%s/data/fifo", f->root);
    assert_int_equal(mkfifo(a, 0600), 0);
    mk(f, "data/cache", NULL, 0755);
    mk(f, "data/cache/x", "x", 0644);
    mk(f, "data/z.tmp", "z", 0644);
    mk(f, "data/db.sqlite", "not really", 0600);
    mk(f, "config.toml", "[mfa]\nkey = \"k\"\n", 0600);
    set_mtime(f, "data/a.txt", 1700000000, 123456789);
    set_mtime(f, "data/sub/b.bin", 1700000001, 1);
    set_mtime(f, "data/sub", 1700000002, 999999999);
    set_mtime(f, "config.toml", 1600000000, 500);
    set_mtime(f, "data/empty", 1700000004, 4);
    set_mtime(f, "data", 1700000003, 42);
}

static char *v_paths[] = {"data", "config.toml", "missing"};
static char *v_required[] = {"config.toml"};
static char *v_exclude[] = {"*.tmp", "data/cache", "data/.tmp"};
static char *v_skip[] = {"data/db.sqlite"};

static cf_component files_comp(void)
{
    cf_component c;
    memset(&c, 0, sizeof c);
    c.name = "files";
    c.type = CF_COMP_FILES;
    c.paths = (cf_strlist){v_paths, 3};
    c.required = (cf_strlist){v_required, 1};
    c.exclude = (cf_strlist){v_exclude, 3};
    return c;
}

typedef struct walk_call {
    fx *f;
    cf_walk_opts *o;
    int rc;
} walk_call;

static void do_walk(void *p)
{
    walk_call *c = p;
    c->rc = cf_walk_component(c->o);
}

static const walked *find(fx *f, const char *path)
{
    for (size_t i = 0; i < f->nw; i++)
        if (strcmp(f->w[i].e.path, path) == 0)
            return &f->w[i];
    return NULL;
}

static void test_walk(void **state)
{
    fx *f = *state;
    build_tree(f);
    cf_component c = files_comp();
    cf_walk_opts o = {.root = f->root, .comp = &c, .skip = v_skip, .nskip = 1, .cb = collect, .ud = f};
    walk_call call = {f, &o, -1};
    cf_log_set_level(CF_LOG_WARN);
    char *err = et_capture_stderr(f->d.path, do_walk, &call);
    cf_log_set_level(CF_LOG_ERROR);
    if (call.rc != 0)
        fail_msg("walk: %s", cf_error());
    /* Warnings: the FIFO is skipped, the missing optional path noted. */
    assert_has(err, "data/fifo: special file (fifo, socket or device) skipped");
    assert_has(err, "component 'files': ");
    assert_has(err, "/missing does not exist");
    free(err);

    static const struct {
        const char *path;
        cf_ent_kind kind;
    } want[] = {
        {"data", CF_ENT_DIR},          {"data/.tmpx", CF_ENT_FILE},   {"data/a.txt", CF_ENT_FILE},
        {"data/empty", CF_ENT_DIR},
        {"data/hard1", CF_ENT_FILE},   {"data/hard2", CF_ENT_HARDLINK}, {"data/sub", CF_ENT_DIR},
        {"data/sub/b.bin", CF_ENT_FILE}, {"data/sub/link", CF_ENT_SYMLINK}, {"config.toml", CF_ENT_FILE},
    };
    for (size_t i = 0; i < f->nw && i < CF_ARRAY_LEN(want); i++)
        if (strcmp(f->w[i].e.path, want[i].path) != 0 || f->w[i].e.kind != want[i].kind)
            fail_msg("entry %zu: %s (%s), want %s (%s)", i, f->w[i].e.path,
                     cf_ent_kind_name(f->w[i].e.kind), want[i].path, cf_ent_kind_name(want[i].kind));
    assert_int_equal(f->nw, CF_ARRAY_LEN(want));

    /* Parents before children, siblings sorted bytewise. */
    for (size_t i = 0; i < f->nw; i++) {
        const char *p = f->w[i].e.path;
        const char *slash = strrchr(p, '/');
        if (slash && strncmp(p, "config", 6) != 0) {
            char parent[256];
            snprintf(parent, sizeof parent, "%.*s", (int)(slash - p), p);
            int seen = 0;
            for (size_t k = 0; k < i; k++)
                if (strcmp(f->w[k].e.path, parent) == 0)
                    seen = 1;
            if (!seen)
                fail_msg("%s comes before its parent %s", p, parent);
        }
        assert_string_equal(f->w[i].e.component, "files");
    }

    const walked *w = find(f, "data/a.txt");
    assert_int_equal(w->e.mode, 0640);
    assert_int_equal(w->e.size, 6);
    assert_int_equal(w->e.mtime, 1700000000);
    assert_int_equal(w->e.mtime_ns, 123456789);
    assert_int_equal(w->e.nchunks, 0); /* the caller reads it */
    assert_int_equal(w->e.uid, getuid());
    assert_non_null(w->e.user); /* names from the system's databases */
    assert_non_null(w->e.group);
    char abs[800];
    snprintf(abs, sizeof abs, "%s/data/a.txt", f->root);
    assert_string_equal(w->abs, abs);
    struct stat st;
    assert_int_equal(stat(abs, &st), 0);
    assert_int_equal(w->e.ino, st.st_ino);
    assert_int_equal(w->e.dev, st.st_dev);
    assert_int_equal(w->e.ctime, st.st_ctim.tv_sec);
    assert_int_equal(w->e.ctime_ns, st.st_ctim.tv_nsec);

    w = find(f, "data/sub");
    assert_int_equal(w->e.mode, 0700);
    assert_int_equal(w->e.mtime, 1700000002);
    assert_int_equal(w->e.mtime_ns, 999999999);
    w = find(f, "data/sub/b.bin");
    assert_int_equal(w->e.size, sizeof bigdata);
    assert_int_equal(w->e.mode, 0600);
    w = find(f, "data/sub/link");
    assert_string_equal(w->e.target, "../a.txt");
    w = find(f, "data/hard1");
    assert_int_equal(w->e.nlink, 2);
    assert_null(w->e.target);
    assert_int_equal(w->e.size, 12);
    w = find(f, "data/hard2");
    assert_string_equal(w->e.target, "data/hard1");
    assert_int_equal(w->e.size, 0);
    w = find(f, "config.toml");
    assert_int_equal(w->e.mode, 0600);
    assert_int_equal(w->e.mtime_ns, 500);
}

static void test_walk_required_missing(void **state)
{
    fx *f = *state;
    build_tree(f);
    char *paths[] = {"data", "nothere"};
    char *req[] = {"nothere"};
    cf_component c = files_comp();
    c.paths = (cf_strlist){paths, 2};
    c.required = (cf_strlist){req, 1};
    cf_walk_opts o = {.root = f->root, .comp = &c, .cb = collect, .ud = f};
    assert_int_equal(cf_walk_component(&o), -1);
    char want[600];
    snprintf(want, sizeof want, "component 'files': required path %s/nothere is missing", f->root);
    assert_string_equal(cf_error(), want);
    /* The paths before it were walked. */
    assert_non_null(find(f, "data/a.txt"));
}

static void test_walk_callback_stops(void **state)
{
    fx *f = *state;
    build_tree(f);
    cf_component c = files_comp();
    cf_walk_opts o = {.root = f->root, .comp = &c, .cb = collect, .ud = f};
    f->stop_at = 3;
    cf_log_set_level(-1);
    assert_int_not_equal(cf_walk_component(&o), 0);
    assert_string_equal(cf_error(), "stopped by the callback");
    assert_int_equal(f->nw, 3);
    walked_free(f);
    /* Cancellation stops a walk too. */
    f->stop_at = -1;
    cf_cancel_flag = 1;
    int rc = cf_walk_component(&o);
    cf_cancel_flag = 0;
    assert_int_not_equal(rc, 0);
    assert_error_has("cancelled");
}

/* A tree longer than the lister's queue (core/engine/files.c lists
 * directories and stats on a thread of its own when there is more than
 * one core): every entry once, in walk order; a callback that stops
 * early stops the lister too, however far ahead it is. */
static void test_walk_many_entries(void **state)
{
    fx *f = *state;
    enum { DIRS = 3, PER_DIR = 1500 };
    char p[800];
    for (int d = 0; d < DIRS; d++) {
        snprintf(p, sizeof p, "%s/d%d", f->root, d);
        assert_int_equal(mkdir(p, 0755), 0);
        for (int i = 0; i < PER_DIR; i++) {
            snprintf(p, sizeof p, "%s/d%d/f%05d", f->root, d, PER_DIR - 1 - i);
            int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
            assert_true(fd >= 0);
            close(fd);
        }
    }
    char *paths[] = {"."};
    cf_component c = files_comp();
    c.paths = (cf_strlist){paths, 1};
    c.required = (cf_strlist){NULL, 0};
    c.exclude = (cf_strlist){NULL, 0};
    cf_walk_opts o = {.root = f->root, .comp = &c, .cb = collect, .ud = f};
    assert_int_equal(cf_walk_component(&o), 0);
    assert_int_equal(f->nw, DIRS * (PER_DIR + 1));
    for (size_t i = 0; i < f->nw; i++) {
        int d = (int)(i / (PER_DIR + 1)), k = (int)(i % (PER_DIR + 1));
        if (k == 0)
            snprintf(p, sizeof p, "d%d", d);
        else
            snprintf(p, sizeof p, "d%d/f%05d", d, k - 1);
        if (strcmp(f->w[i].e.path, p) != 0)
            fail_msg("entry %zu: %s, want %s", i, f->w[i].e.path, p);
        snprintf(p, sizeof p, "%s/%s", f->root, f->w[i].e.path);
        assert_string_equal(f->w[i].abs, p);
    }
    walked_free(f);

    f->stop_at = 5;
    cf_log_set_level(-1);
    assert_int_not_equal(cf_walk_component(&o), 0);
    assert_string_equal(cf_error(), "stopped by the callback");
    assert_int_equal(f->nw, 5);
}

/* A top-level path that is a single file, and one that is excluded. */
static void test_walk_single_file_and_excluded_top(void **state)
{
    fx *f = *state;
    build_tree(f);
    char *paths[] = {"data/sub/b.bin", "data/z.tmp", "data/sub/link"};
    cf_component c = files_comp();
    c.paths = (cf_strlist){paths, 3};
    c.required = (cf_strlist){NULL, 0};
    cf_walk_opts o = {.root = f->root, .comp = &c, .cb = collect, .ud = f};
    assert_int_equal(cf_walk_component(&o), 0);
    assert_int_equal(f->nw, 2);
    assert_string_equal(f->w[0].e.path, "data/sub/b.bin");
    assert_int_equal(f->w[1].e.kind, CF_ENT_SYMLINK); /* a symlink path is not followed */
}

/* ---- extraction ------------------------------------------------------------- */

static int write_one(cf_extract *x, cf_entry *e, const char *data, size_t len)
{
    int pfd = cf_extract_parent(x, e);
    if (pfd < 0)
        return -1;
    cf_xfile xf;
    int rc = cf_extract_file_begin(x, pfd, e, &xf);
    close(pfd);
    if (rc != 0)
        return -1;
    /* in uneven pieces */
    size_t off = 0, piece = 1;
    while (off < len) {
        size_t n = len - off < piece ? len - off : piece;
        if (cf_extract_file_data(&xf, data + off, n) != 0) {
            cf_extract_file_abort(&xf);
            return -1;
        }
        off += n;
        piece = piece * 7 + 3;
    }
    return cf_extract_file_end(x, &xf);
}

static void extract_all(fx *f)
{
    int dfd = open(".", O_RDONLY | O_DIRECTORY);
    assert_true(dfd >= 0);
    cf_extract *x = cf_extract_new(dfd);
    assert_non_null(x);
    for (size_t i = 0; i < f->nw; i++) {
        cf_entry *e = &f->w[i].e;
        if (e->kind != CF_ENT_FILE) {
            if (cf_extract_entry(x, e) != 0)
                fail_msg("extract %s: %s", e->path, cf_error());
            continue;
        }
        size_t len;
        char *data = et_read(f->w[i].abs, &len);
        assert_non_null(data);
        if (write_one(x, e, data, len) != 0)
            fail_msg("extract %s: %s", e->path, cf_error());
        free(data);
    }
    if (cf_extract_finish(x) != 0)
        fail_msg("finish: %s", cf_error());
    cf_extract_free(x);
    close(dfd);
}

static void test_extract_roundtrip(void **state)
{
    fx *f = *state;
    build_tree(f);
    cf_component c = files_comp();
    cf_walk_opts o = {.root = f->root, .comp = &c, .skip = v_skip, .nskip = 1, .cb = collect, .ud = f};
    cf_log_set_level(-1);
    assert_int_equal(cf_walk_component(&o), 0);
    char out[400];
    snprintf(out, sizeof out, "%s/out", f->d.path);
    assert_int_equal(mkdir(out, 0755), 0);
    assert_int_equal(chdir(out), 0);
    extract_all(f);

    for (size_t i = 0; i < f->nw; i++) {
        const cf_entry *e = &f->w[i].e;
        struct stat a, b;
        assert_int_equal(lstat(f->w[i].abs, &a), 0);
        if (lstat(e->path, &b) != 0)
            fail_msg("%s was not restored", e->path);
        assert_int_equal(a.st_mode & S_IFMT, b.st_mode & S_IFMT);
        if (e->kind == CF_ENT_SYMLINK) {
            char t[256];
            ssize_t n = readlink(e->path, t, sizeof t - 1);
            assert_true(n > 0);
            t[n] = 0;
            assert_string_equal(t, e->target);
            continue;
        }
        if ((b.st_mode & 07777) != e->mode)
            fail_msg("%s: mode %o, want %o", e->path, b.st_mode & 07777, e->mode);
        if (b.st_mtim.tv_sec != e->mtime || b.st_mtim.tv_nsec != e->mtime_ns)
            fail_msg("%s: mtime %lld.%09ld, want %lld.%09ld", e->path, (long long)b.st_mtim.tv_sec,
                     b.st_mtim.tv_nsec, (long long)e->mtime, e->mtime_ns);
        if (S_ISREG(a.st_mode)) {
            size_t la, lb;
            char *da = et_read(f->w[i].abs, &la), *db = et_read(e->path, &lb);
            assert_int_equal(la, lb);
            assert_memory_equal(da, db, la);
            free(da);
            free(db);
        }
    }
    struct stat h1, h2;
    assert_int_equal(stat("data/hard1", &h1), 0);
    assert_int_equal(stat("data/hard2", &h2), 0);
    assert_int_equal(h1.st_ino, h2.st_ino); /* one inode again */
    assert_int_equal(h1.st_nlink, 2);
    /* What was not walked was not written. */
    assert_false(et_exists("data/cache"));
    assert_false(et_exists("data/fifo"));
    assert_false(et_exists("data/z.tmp"));
    assert_false(et_exists("data/db.sqlite"));
}

static cf_entry plain(cf_ent_kind k, const char *path)
{
    cf_entry e;
    memset(&e, 0, sizeof e);
    e.kind = k;
    e.component = "c";
    e.path = (char *)path;
    e.mode = k == CF_ENT_DIR ? 0755 : 0644;
    e.mtime = 1700000000;
    e.uid = getuid();
    e.gid = getgid();
    return e;
}

static void test_extract_refusals(void **state)
{
    fx *f = *state;
    char work[400], outside[400], p[800];
    snprintf(work, sizeof work, "%s/work", f->d.path);
    snprintf(outside, sizeof outside, "%s/outside", f->d.path);
    assert_int_equal(mkdir(work, 0755), 0);
    assert_int_equal(mkdir(outside, 0755), 0);
    cf_log_set_level(-1);
    for (int walk = 0; walk < 2; walk++) {
        /* once through openat2, once through the component walk */
        cf_beneath_no_openat2 = walk;
        char wdir[500];
        snprintf(wdir, sizeof wdir, "%s/%d", work, walk);
        assert_int_equal(mkdir(wdir, 0755), 0);
        int dfd = open(wdir, O_RDONLY | O_DIRECTORY);
        assert_true(dfd >= 0);
        cf_extract *x = cf_extract_new(dfd);

        cf_entry e = plain(CF_ENT_DIR, "../escape");
        assert_int_equal(cf_extract_entry(x, &e), -1);
        assert_error_has("../escape");
        assert_error_has("refused");
        e = plain(CF_ENT_FILE, "../escape");
        assert_int_equal(cf_extract_parent(x, &e), -1);
        assert_error_has("refused");
        snprintf(p, sizeof p, "%s/escape", work);
        assert_false(et_exists(p));

        e = plain(CF_ENT_DIR, "a/../../b");
        assert_int_equal(cf_extract_entry(x, &e), -1);
        snprintf(p, sizeof p, "%s/abs-file", outside);
        e = plain(CF_ENT_FILE, p);
        assert_int_equal(cf_extract_parent(x, &e), -1);
        assert_error_has(p);
        assert_false(et_exists(p));
        e = plain(CF_ENT_SYMLINK, p);
        e.target = "x";
        assert_int_equal(cf_extract_entry(x, &e), -1);
        assert_false(et_exists(p));

        /* Hard link whose target escapes. */
        e = plain(CF_ENT_HARDLINK, "h");
        e.target = "../outside/victim";
        snprintf(p, sizeof p, "%s/victim", outside);
        if (walk == 0) {
            assert_int_equal(et_write_str(p, "victim"), 0);
            assert_int_equal(chmod(p, 0600), 0);
        }
        assert_int_equal(cf_extract_entry(x, &e), -1);
        assert_error_has("hard link target ../outside/victim escapes");

        /* A symbolic link may point anywhere; it is made last and nothing
         * is written through it: a child entry makes a real directory,
         * and then the link is refused as a second entry of that path. */
        e = plain(CF_ENT_SYMLINK, "link");
        e.target = outside;
        assert_int_equal(cf_extract_entry(x, &e), 0);
        e = plain(CF_ENT_FILE, "link/x");
        e.size = 5;
        assert_int_equal(write_one(x, &e, "owned", 5), 0);
        e = plain(CF_ENT_DIR, "link/d");
        assert_int_equal(cf_extract_entry(x, &e), 0);
        /* A file twice, a directory twice. */
        e = plain(CF_ENT_FILE, "twice");
        assert_int_equal(write_one(x, &e, "", 0), 0);
        assert_int_equal(write_one(x, &e, "", 0), -1);
        assert_error_has("twice");
        assert_int_equal(cf_extract_finish(x), -1);
        assert_error_has("link");
        assert_error_has("twice");
        snprintf(p, sizeof p, "%s/x", outside);
        assert_false(et_exists(p));
        snprintf(p, sizeof p, "%s/d", outside);
        assert_false(et_exists(p));
        cf_extract_free(x);

        /* A link placed first in the tree is never passed through. */
        x = cf_extract_new(dfd);
        snprintf(p, sizeof p, "%s/pre", wdir);
        assert_int_equal(symlink(outside, p), 0);
        e = plain(CF_ENT_FILE, "pre/y");
        assert_int_equal(cf_extract_parent(x, &e), -1);
        assert_error_has("symbolic link");
        e = plain(CF_ENT_DIR, "pre/z");
        assert_int_equal(cf_extract_entry(x, &e), -1);
        snprintf(p, sizeof p, "%s/y", outside);
        assert_false(et_exists(p));
        snprintf(p, sizeof p, "%s/z", outside);
        assert_false(et_exists(p));

        /* The directory twice, then a link of that name. */
        cf_extract_free(x);
        x = cf_extract_new(dfd);
        e = plain(CF_ENT_DIR, "dd");
        assert_int_equal(cf_extract_entry(x, &e), 0);
        assert_int_equal(cf_extract_entry(x, &e), 0);
        assert_int_equal(cf_extract_finish(x), -1);
        assert_error_has("dd");
        cf_extract_free(x);
        close(dfd);
    }
    cf_beneath_no_openat2 = 0;
    /* The victim was never touched, and nothing else appeared outside. */
    snprintf(p, sizeof p, "%s/victim", outside);
    char *s = et_read(p, NULL);
    assert_string_equal(s, "victim");
    free(s);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    cf_extract_free(NULL);
}

/* Many directories: their metadata is set on several threads. A
 * directory whose final mode would stop this process from searching it
 * (0000, 0500) is set last, after the ones below it, also when the
 * process has no capability to search any directory. Run in a child with
 * CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped (when root), so that
 * the order matters; the parent checks every mode and time. */
#define NTOP 400

static mode_t many_mode(int i)
{
    return i % 50 == 7 ? 0000 : i % 50 == 11 ? 0500 : i % 50 == 13 ? 0711 : 0755;
}

static void drop_search_caps(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capget, &h, d) != 0)
        return;
    d[0].effective &= ~((1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH));
    if (syscall(SYS_capset, &h, d) != 0)
        _exit(3);
}

static void test_extract_many_dirs(void **state)
{
    fx *f = *state;
    char out[400];
    snprintf(out, sizeof out, "%s/many", f->d.path);
    assert_int_equal(mkdir(out, 0755), 0);
    cf_log_set_level(-1);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        drop_search_caps();
        int dfd = open(out, O_RDONLY | O_DIRECTORY);
        cf_extract *x = cf_extract_new(dfd);
        char path[64];
        int bad = 0;
        for (int i = 0; i < NTOP && !bad; i++) {
            /* manifest order: a directory, then what is in it */
            const char *fmt[] = {"d%03d", "d%03d/s", "d%03d/s/t"};
            for (int k = 0; k < 3 && !bad; k++) {
                snprintf(path, sizeof path, fmt[k], i);
                cf_entry e = plain(CF_ENT_DIR, path);
                e.mode = k == 0 ? many_mode(i) : 0755;
                e.mtime = 1600000000 + i * 3 + k;
                e.mtime_ns = 123456789;
                bad = cf_extract_entry(x, &e) != 0;
            }
        }
        bad = bad || cf_extract_finish(x) != 0;
        if (bad)
            fprintf(stderr, "many dirs: %s\n", cf_error());
        /* the premise: a 0000 directory stops this process now */
        int sfd = openat(dfd, "d007/s", O_RDONLY | O_DIRECTORY);
        if (!bad && (sfd >= 0 || errno != EACCES))
            _exit(4);
        cf_extract_free(x);
        _exit(bad ? 1 : 0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    /* Checked from here, and made searchable again for the teardown. */
    for (int i = 0; i < NTOP; i++)
        for (int k = 2; k >= 0; k--) {
            const char *fmt[] = {"%s/d%03d", "%s/d%03d/s", "%s/d%03d/s/t"};
            char path[600];
            snprintf(path, sizeof path, fmt[k], out, i);
            struct stat sb;
            if (stat(path, &sb) != 0) {
                /* not root: search the top directory for a moment */
                char top[600];
                snprintf(top, sizeof top, "%s/d%03d", out, i);
                assert_int_equal(chmod(top, 0755), 0);
                assert_int_equal(stat(path, &sb), 0);
                assert_int_equal(chmod(top, many_mode(i)), 0); /* times stay */
            }
            mode_t want = k == 0 ? many_mode(i) : 0755;
            if ((sb.st_mode & 07777) != want)
                fail_msg("%s: mode %o, want %o", path, sb.st_mode & 07777, want);
            if (sb.st_mtim.tv_sec != 1600000000 + i * 3 + k || sb.st_mtim.tv_nsec != 123456789)
                fail_msg("%s: mtime %lld.%09ld, want %d.123456789", path,
                         (long long)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec, 1600000000 + i * 3 + k);
        }
    for (int i = 0; i < NTOP; i++) {
        char top[600];
        snprintf(top, sizeof top, "%s/d%03d", out, i);
        chmod(top, 0755);
    }
}

int main(void)
{
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_safe),
        cmocka_unit_test(test_exclude_match),
        T(test_walk),
        T(test_walk_required_missing),
        T(test_walk_callback_stops),
        T(test_walk_many_entries),
        T(test_walk_single_file_and_excluded_top),
        T(test_extract_roundtrip),
        T(test_extract_refusals),
        T(test_extract_many_dirs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
