/* coffer export: a set as a plain tar archive (see export.h). */
#include "engine/export.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/manifest.h"
#include "engine/native.h"
#include "engine/restore.h"
#include "plugin/config.h"
#include "plugin/host.h"
#include "util/util.h"

typedef struct xp {
    cf_run *run;
    const char *set_id;
    cf_fetch *fetch; /* a file's chunks are read ahead, in ranged reads */
    struct archive *a;
    json_t *left_out; /* [{"name"|"path", "why"}] */
    uint64_t files, bytes;
    int fd;
    int werr; /* errno of the first failed write; later writes are dropped */
} xp;

/* libarchive's write callback. A failure is kept here and reported by
 * arc_fail, while libarchive is told the bytes were taken: a write error
 * inside libarchive leaves its archive unclosable, and its buffers leak
 * (libarchive 3.6). Once a write failed nothing more reaches fd, so a
 * failed archive on stdout never gets its end-of-archive marker. */
static la_ssize_t sink(struct archive *a, void *ud, const void *buf, size_t len)
{
    (void)a;
    xp *x = ud;
    if (!x->werr && cf_write_all(x->fd, buf, len) != 0)
        x->werr = errno;
    return (la_ssize_t)len;
}

static int arc_fail(xp *x, const char *what)
{
    if (x->werr)
        return cf_fail("export: %s: %s", what, strerror(x->werr));
    int e = archive_errno(x->a);
    const char *msg = archive_error_string(x->a) ?: "write failed";
    if (e > 0)
        return cf_fail("export: %s: %s: %s", what, msg, strerror(e));
    return cf_fail("export: %s: %s", what, msg);
}

/* A path a stock tar extracts beneath its directory: relative, no ".."
 * component, no empty component. */
static int safe_rel(const char *p)
{
    if (!p || !*p || p[0] == '/')
        return 0;
    for (const char *s = p; *s;) {
        size_t n = strcspn(s, "/");
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return 0;
        s += n;
        if (*s == '/')
            s++;
        else
            break;
    }
    return p[strlen(p) - 1] != '/';
}

static void left_out(xp *x, const char *member, const char *name, const char *why)
{
    json_array_append_new(x->left_out, json_pack("{s:s,s:s}", member, name, "why", why));
    cf_log(CF_LOG_WARN, "export: %s %s left out: %s", member, name, why);
}

static int write_data(xp *x, const void *p, size_t n, const char *what)
{
    if ((n && archive_write_data(x->a, p, n) != (la_ssize_t)n) || x->werr)
        return arc_fail(x, what);
    return 0;
}

static int add_text(xp *x, const char *name, const char *text)
{
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0600);
    archive_entry_set_size(e, (la_int64_t)strlen(text));
    archive_entry_set_mtime(e, time(NULL), 0);
    int rc = archive_write_header(x->a, e) != ARCHIVE_OK ? arc_fail(x, name)
                                                         : write_data(x, text, strlen(text), name);
    archive_entry_free(e);
    return rc;
}

/* One entry of a files component, under files/. */
static int add_entry(xp *x, const cf_entry *m, cf_buf *chunk)
{
    if (!safe_rel(m->path)) {
        left_out(x, "path", m->path ? m->path : "", "not a relative path beneath the root");
        return 0;
    }
    char *name = cf_asprintf("files/%s", m->path);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_perm(e, m->mode & 07777);
    archive_entry_set_uid(e, m->uid);
    archive_entry_set_gid(e, m->gid);
    if (m->user)
        archive_entry_set_uname(e, m->user);
    if (m->group)
        archive_entry_set_gname(e, m->group);
    archive_entry_set_mtime(e, m->mtime, m->mtime_ns);
    for (size_t i = 0; i < m->nxattrs; i++)
        archive_entry_xattr_add_entry(e, m->xattrs[i].name, m->xattrs[i].value, m->xattrs[i].len);
    int rc = 0, data = 0;
    switch (m->kind) {
    case CF_ENT_DIR:
        archive_entry_set_filetype(e, AE_IFDIR);
        break;
    case CF_ENT_SYMLINK:
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_symlink(e, m->target ? m->target : "");
        break;
    case CF_ENT_HARDLINK:
        if (!safe_rel(m->target)) {
            left_out(x, "path", m->path, "hard link to a path outside the root");
            goto out;
        }
        {
            char *t = cf_asprintf("files/%s", m->target);
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, t);
            free(t);
        }
        break;
    default:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, (la_int64_t)m->size);
        data = 1;
        break;
    }
    if (archive_write_header(x->a, e) != ARCHIVE_OK) {
        rc = arc_fail(x, name);
        goto out;
    }
    if (data) {
        uint64_t done = 0;
        uint64_t seq = cf_fetch_want(x->fetch, m->chunks, m->nchunks);
        size_t i;
        for (i = 0; i < m->nchunks && rc == 0; i++) {
            if (cf_cancel_flag) {
                rc = cf_fail("cancelled");
                break;
            }
            if (cf_fetch_take(x->fetch, seq + i, chunk) != 0) {
                cf_error_prefix("export: %s", m->path);
                rc = -1;
            } else if (done + chunk->len > m->size) {
                rc = cf_fail("export: %s: chunks hold more than the recorded %" PRIu64 " bytes",
                             m->path, m->size);
            } else {
                rc = write_data(x, chunk->data, chunk->len, name);
                done += chunk->len;
            }
        }
        if (i < m->nchunks)
            cf_fetch_skip(x->fetch, seq + i, m->nchunks - i);
        if (rc == 0 && done != m->size)
            rc = cf_fail("export: %s: chunks hold %" PRIu64 " of the recorded %" PRIu64 " bytes",
                         m->path, done, m->size);
        x->files++;
        x->bytes += done;
    }
out:
    archive_entry_free(e);
    free(name);
    return rc;
}

/* A database component: its native form is spooled to a private
 * temporary file first (a tar header needs the size). */
static int add_database(xp *x, const char *comp, json_t *where)
{
    FILE *tmp = cf_tmpfile("export");
    if (!tmp)
        return -1;
    char *kind = NULL;
    if (cf_native_dump(x->run, x->set_id, comp, fileno(tmp), &kind) != 0) {
        fclose(tmp);
        free(kind);
        left_out(x, "component", comp, cf_error());
        return 0;
    }
    struct stat st;
    int rc = 0;
    const char *ext = kind && (strcmp(kind, "pgdump") == 0 || strcmp(kind, "sql") == 0) ? kind
                                                                                      : "sqlite";
    char *name = cf_asprintf("databases/%s.%s", comp, ext);
    struct archive_entry *e = archive_entry_new();
    if (fstat(fileno(tmp), &st) != 0 || lseek(fileno(tmp), 0, SEEK_SET) != 0) {
        rc = cf_fail_errno("export: temporary file of %s", comp);
        goto out;
    }
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0600);
    archive_entry_set_size(e, st.st_size);
    archive_entry_set_mtime(e, time(NULL), 0);
    if (archive_write_header(x->a, e) != ARCHIVE_OK) {
        rc = arc_fail(x, name);
        goto out;
    }
    char buf[1 << 16];
    ssize_t n;
    while (rc == 0 && (n = read(fileno(tmp), buf, sizeof buf)) > 0)
        rc = write_data(x, buf, (size_t)n, name);
    if (rc == 0 && n < 0)
        rc = cf_fail_errno("export: reading the temporary file of %s", comp);
    json_object_set_new(where, comp, json_pack("{s:s,s:s}", "file", name, "form", kind ?: ext));
out:
    archive_entry_free(e);
    free(name);
    free(kind);
    fclose(tmp);
    return rc;
}

/* The text of RESTORE.txt: what is in the archive and the stock commands
 * that put it back, in the policy's order. */
static char *restore_text(xp *x, json_t *h, json_t *order)
{
    cf_buf b = {0};
#define OUT(...)                                                                                   \
    do {                                                                                           \
        char *s_ = cf_asprintf(__VA_ARGS__);                                                       \
        cf_buf_append(&b, s_, strlen(s_));                                                         \
        free(s_);                                                                                  \
    } while (0)
    const char *root = json_string_value(json_object_get(h, "root")) ?: "ROOT";
    OUT("Set %s of policy '%s', made %s on %s, exported by coffer %s.\n\n", x->set_id,
        json_string_value(json_object_get(h, "policy")) ?: "?",
        json_string_value(json_object_get(h, "time")) ?: "?",
        json_string_value(json_object_get(h, "host")) ?: "?", COFFER_VERSION);
    OUT("This archive restores without coffer. Stop the application first, then\n"
        "put the components back in this order (the policy's restore order):\n\n");
    size_t i, step = 1;
    json_t *c;
    json_array_foreach(order, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name")) ?: "?";
        const char *type = json_string_value(json_object_get(c, "type")) ?: "";
        const char *driver = json_string_value(json_object_get(c, "driver")) ?: "";
        const cf_component *pc = cf_policy_component(x->run->policy, name);
        if (strcmp(type, "files") == 0) {
            OUT("%zu. files component '%s': under files/, paths relative to the application\n"
                "   root %s. As root, to keep owners, modes, times and xattrs:\n"
                "     mkdir -p %s && tar -x -f THIS.tar --xattrs --xattrs-include='*' \\\n"
                "       --numeric-owner --same-permissions --strip-components=1 -C %s",
                step++, name, root, root, root);
            for (size_t k = 0; pc && k < pc->paths.n; k++)
                OUT(" \\\n       files/%s", pc->paths.v[k]);
            if (!pc || !pc->paths.n)
                OUT(" files");
            OUT("\n");
        } else if (strcmp(type, "database") == 0 && strcmp(driver, "sqlite") == 0) {
            const char *path = pc ? cf_config_get(pc->options, "path") : NULL;
            OUT("%zu. SQLite database '%s': databases/%s.sqlite is the database file itself.\n"
                "     tar -x -f THIS.tar databases/%s.sqlite\n"
                "     sqlite3 databases/%s.sqlite 'PRAGMA integrity_check'   # prints ok\n",
                step++, name, name, name, name);
            if (path)
                OUT("     install -m 0600 databases/%s.sqlite %s%s%s\n", name,
                    path[0] == '/' ? "" : root, path[0] == '/' ? "" : "/", path);
            else
                OUT("   then copy it to where the application expects its database.\n");
        } else if (strcmp(type, "database") == 0 && strcmp(driver, "postgres") == 0) {
            OUT("%zu. PostgreSQL database '%s': databases/%s.pgdump, a pg_dump archive.\n"
                "     tar -x -f THIS.tar databases/%s.pgdump\n"
                "     createdb DBNAME && pg_restore --no-owner --exit-on-error -d DBNAME "
                "databases/%s.pgdump\n"
                "   (roles are not part of the dump: create the application's role first).\n",
                step++, name, name, name, name);
        } else if (strcmp(type, "database") == 0 && strcmp(driver, "mysql") == 0) {
            OUT("%zu. MySQL/MariaDB database '%s': databases/%s.sql, SQL text that creates\n"
                "   the databases and loads their rows.\n"
                "     tar -x -f THIS.tar databases/%s.sql\n"
                "     mysql -u root -p < databases/%s.sql\n",
                step++, name, name, name, name);
        } else {
            OUT("%zu. component '%s' (%s%s%s): not in this archive; restore it with\n"
                "   `coffer restore --set %s --only %s` from the repository.\n",
                step++, name, type, *driver ? " " : "", driver, x->set_id, name);
        }
    }
    if (json_array_size(x->left_out)) {
        OUT("\nLeft out of this archive:\n");
        json_array_foreach(x->left_out, i, c)
        {
            const char *n = json_string_value(json_object_get(c, "component"))
                                ?: json_string_value(json_object_get(c, "path"));
            OUT("  %s: %s\n", n ? n : "?", json_string_value(json_object_get(c, "why")) ?: "");
        }
    }
    OUT("\nThen start the application and run its own check (AsterDrive: "
        "`aster_drive doctor`).\n");
#undef OUT
    cf_buf_append(&b, "", 1);
    return (char *)b.data;
}

/* Everything but the archive's opening and closing. */
static int write_set(xp *x, json_t **report)
{
    cf_mreader *m;
    json_t *h;
    if (cf_manifest_open(x->run->repo, x->set_id, &m, &h) != 0)
        return -1;
    cf_restore_opts o = {0};
    json_t *order = NULL;
    cf_restore_order(x->run->policy, json_object_get(h, "components"), &o, &order);
    json_t *dbs = json_object();
    int rc = 0;
    /* Database dumps first, so that RESTORE.txt (first in the archive) can
     * name what could not be exported: they go to temporary files, and are
     * appended after it. */
    size_t i;
    json_t *c;
    json_array_foreach(order, i, c)
    {
        const char *type = json_string_value(json_object_get(c, "type")) ?: "";
        const char *name = json_string_value(json_object_get(c, "name")) ?: "";
        if (strcmp(type, "object_store") == 0)
            left_out(x, "component", name, "object store: restore it with coffer");
    }
    json_t *pending = json_array();
    json_array_foreach(order, i, c)
    if (strcmp(json_string_value(json_object_get(c, "type")) ?: "", "database") == 0) {
        const char *driver = json_string_value(json_object_get(c, "driver")) ?: "";
        const char *name = json_string_value(json_object_get(c, "name")) ?: "";
        if (strcmp(driver, "sqlite") != 0 && strcmp(driver, "postgres") != 0 &&
            strcmp(driver, "mysql") != 0)
            left_out(x, "component", name,
                     "no native form of this driver's dump: restore it with coffer");
        else
            json_array_append(pending, c);
    }
    char *text = restore_text(x, h, order);
    rc = add_text(x, "RESTORE.txt", text);
    free(text);
    cf_entry e;
    cf_buf chunk = {0};
    int more;
    x->fetch = cf_fetch_new(x->run->repo, 0);
    while (rc == 0 && (more = cf_manifest_next(m, &e)) == 1) {
        if (e.kind == CF_ENT_FILE || e.kind == CF_ENT_DIR || e.kind == CF_ENT_SYMLINK ||
            e.kind == CF_ENT_HARDLINK)
            rc = add_entry(x, &e, &chunk);
        cf_entry_clear(&e);
    }
    if (rc == 0 && more < 0)
        rc = -1;
    cf_buf_free(&chunk);
    cf_fetch_free(x->fetch);
    x->fetch = NULL;
    json_array_foreach(pending, i, c)
    if (rc == 0)
        rc = add_database(x, json_string_value(json_object_get(c, "name")), dbs);
    if (rc == 0 && report)
        *report = json_pack("{s:s,s:I,s:I,s:o,s:O}", "set", x->set_id, "files", (json_int_t)x->files,
                            "bytes", (json_int_t)x->bytes, "databases", dbs, "left_out",
                            x->left_out);
    else
        json_decref(dbs);
    json_decref(pending);
    json_decref(order);
    json_decref(h);
    cf_manifest_close(m);
    return rc;
}

int cf_export(cf_run *run, const char *set_id, const char *to, json_t **report)
{
    xp x = {.run = run, .set_id = set_id, .left_out = json_array()};
    int to_stdout = strcmp(to, "-") == 0;
    char *tmp = NULL, *dir = NULL;
    int fd = STDOUT_FILENO, rc = -1;
    if (!to_stdout) {
        struct stat st;
        if (stat(to, &st) == 0 && S_ISDIR(st.st_mode)) {
            cf_fail("export: %s is a directory; give a file name", to);
            goto done;
        }
        char *d = cf_strdup(to);
        dir = cf_strdup(dirname(d));
        free(d);
        char *b = cf_strdup(to);
        tmp = cf_asprintf("%s/.%s.coffer-export-XXXXXX", dir, basename(b));
        free(b);
        fd = mkstemp(tmp);
        if (fd < 0) {
            cf_fail_errno("export: cannot create a file in %s", dir);
            free(tmp);
            tmp = NULL;
            goto done;
        }
        fchmod(fd, 0600);
    }
    x.a = archive_write_new();
    archive_write_set_format_pax(x.a); /* pax records: times to the nanosecond, xattrs */
    archive_write_set_bytes_in_last_block(x.a, 1);
    x.fd = fd;
    if (archive_write_open2(x.a, &x, NULL, sink, NULL, NULL) != ARCHIVE_OK) {
        arc_fail(&x, to);
    } else if (write_set(&x, report) == 0) {
        if (archive_write_close(x.a) != ARCHIVE_OK || x.werr)
            arc_fail(&x, to);
        else
            rc = 0;
    }
    archive_write_free(x.a); /* closes a failed archive: sink() drops its end */
    if (!to_stdout) {
        if (rc == 0 && fsync(fd) != 0)
            rc = cf_fail_errno("export: %s", to);
        if (close(fd) != 0 && rc == 0)
            rc = cf_fail_errno("export: %s", to);
        if (rc == 0 && rename(tmp, to) != 0)
            rc = cf_fail_errno("export: cannot rename the archive to %s", to);
        if (rc == 0) {
            int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                fsync(dfd);
                close(dfd);
            }
        } else {
            unlink(tmp);
        }
    }
done:
    json_decref(x.left_out);
    free(tmp);
    free(dir);
    return rc;
}
