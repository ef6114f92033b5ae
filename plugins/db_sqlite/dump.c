/*
 * database "sqlite": dump. The application keeps writing while we copy, so
 * the copy is made with the online backup API in a single
 * sqlite3_backup_step(-1): one call holds one read transaction on the
 * source for the whole copy, which in WAL mode neither blocks the writers
 * nor sees their later commits. (Stepping page by page would let a commit
 * in between restart or, for other processes, mix states.)
 *
 * Row counts are taken from the private copy, so they describe exactly
 * the bytes that are streamed, and the copy is streamed as one file named
 * after the database ("asterdrive.db").
 *
 * When the sink asks to keep the snapshot (keep_snapshot, ABI 1.1), the
 * copy is not removed after streaming: query_snapshot reads it until the
 * next dump or instance_free. It costs the database's size on the disk
 * of the run's temporary directory for that long.
 */
#include "db_sqlite.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BACKUP_ATTEMPTS 6 /* busy retries, on top of busy_timeout */

typedef struct meta_ctx {
    dbsqlite_instance *in;
    coffer_dump_sink *sink;
} meta_ctx;

static coffer_status emit(meta_ctx *m, const char *key, const char *value)
{
    coffer_status st = m->sink->meta(m->sink, key, value);
    if (st)
        return m->in->host->error(m->in->h, st, "cannot record metadata %s for %s", key, m->in->path);
    return COFFER_OK;
}

static coffer_status emit_rows(void *ud, const char *table, int64_t rows)
{
    meta_ctx *m = ud;
    size_t len = strlen(table) + 6;
    char *key = malloc(len);
    if (!key)
        return m->in->host->error(m->in->h, COFFER_ERR_FATAL, "out of memory");
    snprintf(key, len, "rows.%s", table);
    char val[32];
    snprintf(val, sizeof val, "%" PRId64, rows);
    coffer_status st = emit(m, key, val);
    free(key);
    return st;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Copy the live database into tmp (an existing empty 0600 file). */
static coffer_status backup_to(dbsqlite_instance *in, sqlite3 *src, const char *tmp)
{
    sqlite3 *dst = NULL;
    int rc = sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE, NULL);
    if (rc != SQLITE_OK) {
        coffer_status st = dbsqlite_err(in, dst, rc, "cannot open temporary copy", tmp);
        sqlite3_close(dst);
        return st;
    }
    coffer_status st = COFFER_OK;
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (!b) {
        st = dbsqlite_err(in, dst, sqlite3_errcode(dst), "cannot start backup of", in->path);
        sqlite3_close(dst);
        return st;
    }
    for (int attempt = 0;; attempt++) {
        rc = sqlite3_backup_step(b, -1);
        if (rc == SQLITE_DONE)
            break;
        if ((rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && attempt + 1 < BACKUP_ATTEMPTS) {
            if (in->host->cancelled(in->h))
                break;
            in->host->log(in->h, COFFER_LOG_INFO, "%s is locked by a writer, retrying (%d/%d)", in->path,
                          attempt + 1, BACKUP_ATTEMPTS - 1);
            sleep_ms(100L << attempt);
            continue;
        }
        break;
    }
    int frc = sqlite3_backup_finish(b);
    if (in->host->cancelled(in->h) && rc != SQLITE_DONE)
        st = in->host->error(in->h, COFFER_ERR_CANCELLED, "backup of %s cancelled", in->path);
    else if (rc != SQLITE_DONE)
        st = dbsqlite_err(in, NULL, rc, "cannot copy", in->path);
    else if (frc != SQLITE_OK)
        st = dbsqlite_err(in, dst, frc, "cannot finish copy of", in->path);
    rc = sqlite3_close(dst);
    if (st == COFFER_OK && rc != SQLITE_OK)
        st = dbsqlite_err(in, NULL, rc, "cannot close temporary copy", tmp);
    return st;
}

static coffer_status stream_copy(dbsqlite_instance *in, coffer_dump_sink *sink, const char *tmp)
{
    int fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return in->host->error(in->h, COFFER_ERR_IO, "cannot open temporary copy %s: %s", tmp, strerror(errno));
    char *buf = malloc(DBSQLITE_CHUNK);
    if (!buf) {
        close(fd);
        return in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    }
    const char *name = dbsqlite_basename(in->path);
    void *stream = NULL;
    coffer_status st = sink->stream_open(sink, name, &stream);
    if (st) {
        st = in->host->error(in->h, st, "cannot open dump stream %s for %s", name, in->path);
        goto done;
    }
    for (;;) {
        if (in->host->cancelled(in->h)) {
            st = in->host->error(in->h, COFFER_ERR_CANCELLED, "dump of %s cancelled", in->path);
            break;
        }
        ssize_t n = read(fd, buf, DBSQLITE_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            st = in->host->error(in->h, COFFER_ERR_IO, "cannot read temporary copy %s: %s", tmp, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if ((st = sink->stream_write(stream, buf, (size_t)n)) != COFFER_OK) {
            st = in->host->error(in->h, st, "cannot write dump stream %s for %s", name, in->path);
            break;
        }
        in->host->progress(in->h, (uint64_t)n);
    }
    /* Close even after a failure: the sink owns the stream's resources,
     * and a failed backup never publishes it. */
    coffer_status cst = sink->stream_close(stream);
    if (st == COFFER_OK && cst != COFFER_OK)
        st = in->host->error(in->h, cst, "cannot close dump stream %s for %s", name, in->path);
done:
    free(buf);
    close(fd);
    return st;
}

void dbsqlite_snapshot_release(dbsqlite_instance *in)
{
    if (!in->snapshot)
        return;
    if (unlink(in->snapshot) != 0 && errno != ENOENT)
        in->host->log(in->h, COFFER_LOG_WARN, "cannot remove the kept copy %s of %s: %s",
                      in->snapshot, in->path, strerror(errno));
    char *failed = NULL;
    int err = dbsqlite_remove_sidecars(in->snapshot, NULL, &failed);
    if (err)
        in->host->log(in->h, COFFER_LOG_WARN, "cannot remove %s: %s",
                      failed ? failed : in->snapshot, strerror(err));
    free(failed);
    free(in->snapshot);
    in->snapshot = NULL;
}

/* Did the core ask to keep this dump's snapshot? A 1.0 sink ends before
 * the member. */
static int keep_requested(const coffer_dump_sink *sink)
{
    return sink->struct_size >= offsetof(coffer_dump_sink, keep_snapshot) + sizeof(int) &&
           sink->keep_snapshot;
}

coffer_status dbsqlite_dump(void *instance, coffer_dump_sink *sink)
{
    dbsqlite_instance *in = instance;
    dbsqlite_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    /* A snapshot belongs to the last dump only, whatever becomes of this one. */
    dbsqlite_snapshot_release(in);
    if (in->host->cancelled(in->h))
        return in->host->error(in->h, COFFER_ERR_CANCELLED, "dump of %s cancelled", in->path);

    struct stat src_sb;
    if (stat(in->path, &src_sb) != 0)
        return errno == ENOENT ? in->host->error(in->h, COFFER_ERR_NOT_FOUND, "database %s does not exist", in->path)
                               : in->host->error(in->h, COFFER_ERR_IO, "cannot access database %s: %s", in->path,
                                                 strerror(errno));

    char tmp[4096];
    char hint[300];
    snprintf(hint, sizeof hint, "sqlite-%.200s", dbsqlite_basename(in->path));
    if (in->host->temp_path(in->h, hint, tmp, sizeof tmp - 16) != 0)
        return in->host->error(in->h, COFFER_ERR_FATAL, "temporary path for the copy of %s is too long", in->path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return in->host->error(in->h, COFFER_ERR_IO, "cannot create temporary copy %s of %s: %s", tmp, in->path,
                               strerror(errno));
    close(fd);

    sqlite3 *src = NULL, *copy = NULL;
    coffer_status st = dbsqlite_open(in, in->path, DBSQLITE_OPEN_RO, &src);
    if (st)
        goto done;
    if ((st = backup_to(in, src, tmp)) != COFFER_OK)
        goto done;
    sqlite3_close(src);
    src = NULL;

    struct stat sb;
    if (stat(tmp, &sb) != 0) {
        st = in->host->error(in->h, COFFER_ERR_IO, "cannot stat temporary copy %s: %s", tmp, strerror(errno));
        goto done;
    }
    /* Only WAL is a persistent journal mode (header bytes 18/19 = 2); the
     * others are per-connection settings, so the copy's header says it. */
    const char *journal = "delete";
    unsigned char hdr[20];
    fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (pread(fd, hdr, sizeof hdr, 0) == (ssize_t)sizeof hdr && hdr[18] == 2 && hdr[19] == 2)
            journal = "wal";
        close(fd);
    }
    meta_ctx m = {in, sink};
    char size[32], fmode[16], owner[48];
    snprintf(size, sizeof size, "%llu", (unsigned long long)sb.st_size);
    /* The database file is excluded from the files component (owned_paths),
     * so its mode and owner travel here for restore to put back. */
    snprintf(fmode, sizeof fmode, "%04o", (unsigned)(src_sb.st_mode & 07777));
    snprintf(owner, sizeof owner, "%lu:%lu", (unsigned long)src_sb.st_uid, (unsigned long)src_sb.st_gid);
    if ((st = emit(&m, "server_version", sqlite3_libversion())) || (st = emit(&m, "size", size)) ||
        (st = emit(&m, "snapshot", "sqlite backup API (single read transaction)")) ||
        (st = emit(&m, "journal_mode", journal)) || (st = emit(&m, "file_mode", fmode)) ||
        (st = emit(&m, "file_owner", owner)))
        goto done;
    if ((st = dbsqlite_open(in, tmp, DBSQLITE_OPEN_IMMUTABLE, &copy)) != COFFER_OK ||
        (st = dbsqlite_count_rows(in, copy, in->path, emit_rows, &m)) != COFFER_OK)
        goto done;
    sqlite3_close(copy);
    copy = NULL;
    st = stream_copy(in, sink, tmp);
    if (st == COFFER_OK && keep_requested(sink)) {
        if (!(in->snapshot = strdup(tmp)))
            st = in->host->error(in->h, COFFER_ERR_FATAL, "out of memory");
    }
done:
    sqlite3_close(copy);
    sqlite3_close(src);
    if (!in->snapshot)
        unlink(tmp);
    char *failed = NULL;
    (void)dbsqlite_remove_sidecars(tmp, NULL, &failed); /* a -journal the backup may leave */
    free(failed);
    return st;
}
