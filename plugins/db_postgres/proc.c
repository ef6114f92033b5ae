/*
 * database "postgres": the client programs (pg_dump, pg_restore).
 *
 * Children are started with posix_spawn (safe in a threaded process) in
 * their own process group, so a Ctrl-C reaches coffer, which then stops
 * them itself. Their stdin/stdout are pipes we pump, their stderr is
 * captured (its tail goes into error messages, redacted). Their
 * environment is the host's child environment (no secret of coffer's own
 * environment, PGPASSWORD included); the password reaches them only
 * through PGPASSFILE, a private 0600 file named in that environment alone;
 * never through argv.
 */
#include "db_postgres.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---- finding the programs -------------------------------------------- */

static int executable(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && access(path, X_OK) == 0;
}

coffer_status pgd_find_tool(pgd_instance *in, const char *tool, char *path, size_t len)
{
    if (in->bin_dir) {
        snprintf(path, len, "%s/%s", in->bin_dir, tool);
        if (executable(path))
            return COFFER_OK;
        return in->host->error(in->h, COFFER_ERR_NOT_FOUND,
                               "%s not found: %s is not an executable file (pg_bin_dir)", tool,
                               path);
    }
    const char *env = getenv("PATH");
    const char *p = env && *env ? env : "/usr/local/bin:/usr/bin:/bin";
    while (*p) {
        size_t n = strcspn(p, ":");
        if (n == 0) {
            snprintf(path, len, "./%s", tool);
        } else {
            snprintf(path, len, "%.*s/%s", (int)n, p, tool);
        }
        if (executable(path))
            return COFFER_OK;
        p += n;
        if (*p == ':')
            p++;
    }
    path[0] = 0;
    return in->host->error(in->h, COFFER_ERR_NOT_FOUND,
                           "%s not found in PATH; install the PostgreSQL client programs (Debian: "
                           "postgresql-client-<major>) or set the option pg_bin_dir",
                           tool);
}

coffer_status pgd_tool_version(pgd_instance *in, const char *path, int *num, char *text, size_t len)
{
    *num = 0;
    text[0] = 0;
    char *argv[] = {(char *)path, "--version", NULL};
    pgd_child c;
    coffer_status st = pgd_spawn(in, path, argv, "", 0, 1, &c);
    if (st)
        return st;
    char out[512];
    size_t got = 0;
    time_t deadline = time(NULL) + 30;
    while (c.out_fd >= 0 && time(NULL) < deadline) {
        struct pollfd pfd[2] = {{.fd = c.out_fd, .events = POLLIN},
                                {.fd = c.err_fd, .events = POLLIN}};
        if (poll(pfd, c.err_fd >= 0 ? 2 : 1, 200) < 0 && errno != EINTR)
            break;
        if (pfd[0].revents) {
            ssize_t r = read(c.out_fd, out + got, sizeof out - 1 - got);
            if (r > 0)
                got += (size_t)r;
            else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
                close(c.out_fd);
                c.out_fd = -1;
            }
            if (got == sizeof out - 1) {
                close(c.out_fd);
                c.out_fd = -1;
            }
        }
        if (c.err_fd >= 0 && pfd[1].revents)
            pgd_child_drain_err(&c);
    }
    out[got] = 0;
    if (c.out_fd >= 0)
        pgd_child_kill(&c);
    int ws = pgd_child_wait(&c);
    out[strcspn(out, "\n")] = 0;
    snprintf(text, len, "%s", out);
    *num = pgd_parse_version(out);
    if (ws != 0 || *num == 0) {
        char how[64], tail[600];
        return in->host->error(in->h, COFFER_ERR_FAILED, "`%s --version` failed (%s): %s%s%s", path,
                               pgd_wait_str(ws, how, sizeof how), got ? "printed '" : "",
                               got ? out : pgd_child_errtail(&c, tail, sizeof tail),
                               got ? "'" : "");
    }
    return COFFER_OK;
}

coffer_status pgd_check_tool_version(pgd_instance *in, const char *tool, const char *path,
                                     int tool_num, const char *tool_text, int need_num,
                                     const char *need_what)
{
    /* Comparable majors: 9.6 -> 906, 15 -> 1500. */
    int tk = tool_num >= 100000 ? tool_num / 10000 * 100 : tool_num / 100;
    int nk = need_num >= 100000 ? need_num / 10000 * 100 : need_num / 100;
    if (tk >= nk)
        return COFFER_OK;
    char a[16], b[16];
    pgd_major_str(tool_num, a, sizeof a);
    pgd_major_str(need_num, b, sizeof b);
    (void)tool_text;
    /* Debian installs every major side by side: name the one that fits. */
    char hint[200] = "";
    char dir[64];
    snprintf(dir, sizeof dir, "/usr/lib/postgresql/%s/bin/%s", b, tool);
    if (!in->bin_dir && executable(dir))
        snprintf(hint, sizeof hint, "; set pg_bin_dir: /usr/lib/postgresql/%s/bin", b);
    else
        snprintf(hint, sizeof hint,
                 "; install the PostgreSQL %s client programs (Debian: postgresql-client-%s) "
                 "and set pg_bin_dir",
                 b, b);
    return in->host->error(
        in->h, COFFER_ERR_UNSUPPORTED,
        "%s %s (%s, major version %s) is older than %s (major version %s): %s must be at least "
        "version %s%s",
        tool, tool_text && *tool_text ? tool_text : "?", path, a, need_what, b, tool, b, hint);
}

coffer_status pgd_check_pg_dump(pgd_instance *in, int server_num)
{
    coffer_status st;
    if (!in->pg_dump_num) {
        if ((st = pgd_find_tool(in, "pg_dump", in->pg_dump, sizeof in->pg_dump)) != COFFER_OK)
            return st;
        char text[256];
        if ((st = pgd_tool_version(in, in->pg_dump, &in->pg_dump_num, text, sizeof text)) !=
            COFFER_OK)
            return st;
        /* "pg_dump (PostgreSQL) 15.20 (Debian ...)": keep the number part. */
        const char *v = strstr(text, "(PostgreSQL)");
        snprintf(in->pg_dump_text, sizeof in->pg_dump_text, "%s", v ? v + 13 : text);
    }
    char server[96], sv[16];
    snprintf(server, sizeof server, "the server (PostgreSQL %s.%d)",
             pgd_major_str(server_num, sv, sizeof sv),
             server_num >= 100000 ? server_num % 10000 : server_num % 100);
    return pgd_check_tool_version(in, "pg_dump", in->pg_dump, in->pg_dump_num, in->pg_dump_text,
                                  server_num, server);
}

/* ---- password file --------------------------------------------------- */

char *pgd_passfile_line(const char *password)
{
    size_t n = strlen(password);
    char *line = malloc(8 + 2 * n + 2);
    if (!line)
        return NULL;
    char *o = line;
    memcpy(o, "*:*:*:*:", 8);
    o += 8;
    for (const char *p = password; *p; p++) {
        if (*p == ':' || *p == '\\')
            *o++ = '\\';
        *o++ = *p;
    }
    *o++ = '\n';
    *o = 0;
    return line;
}

coffer_status pgd_passfile_new(pgd_instance *in, const char *password, char *path, size_t len)
{
    path[0] = 0;
    if (!password)
        return COFFER_OK;
    if (strchr(password, '\n') || strchr(password, '\r'))
        return in->host->error(in->h, COFFER_ERR_INVALID,
                               "the password contains a line break, which libpq's "
                               "password file cannot hold");
    if (in->host->temp_path(in->h, "pgpass", path, len) != 0) {
        path[0] = 0;
        return in->host->error(in->h, COFFER_ERR_FATAL,
                               "temporary path for the password file is too long");
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        coffer_status st = in->host->error(
            in->h, COFFER_ERR_IO, "cannot create password file %s: %s", path, strerror(errno));
        path[0] = 0;
        return st;
    }
    char *line = pgd_passfile_line(password);
    int ok = line != NULL;
    size_t n = line ? strlen(line) : 0;
    for (size_t off = 0; ok && off < n;) {
        ssize_t w = write(fd, line + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            ok = 0;
        else
            off += (size_t)w;
    }
    int err = errno;
    if (line) {
        memset(line, 0, n);
        free(line);
    }
    if (close(fd) != 0 && ok) {
        ok = 0;
        err = errno;
    }
    if (!ok) {
        pgd_passfile_remove(path);
        return in->host->error(in->h, COFFER_ERR_IO, "cannot write the password file: %s",
                               strerror(err));
    }
    return COFFER_OK;
}

void pgd_passfile_remove(char *path)
{
    if (!path || !path[0])
        return;
    /* Overwrite before unlinking: the temporary directory may be on disk. */
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
        struct stat sb;
        if (fstat(fd, &sb) == 0 && sb.st_size > 0 && sb.st_size < 65536) {
            char zero[512] = {0};
            for (off_t off = 0; off < sb.st_size; off += (off_t)sizeof zero)
                if (write(fd, zero, sizeof zero) < 0)
                    break;
            (void)fsync(fd);
        }
        close(fd);
    }
    unlink(path);
    path[0] = 0;
}

/* ---- children -------------------------------------------------------- */

/* Has pid exited? (It stays a zombie: the status is collected later.) */
static int exited(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid;
}

/* A 1.0 host has no child_env service: keep only what the client programs
 * use (locale, time zone, home, their own non-secret PG* variables). */
static int fallback_keep(const char *e)
{
    static const char *const names[] = {
        "PATH=", "HOME=", "USER=", "LOGNAME=", "LANG=", "TZ=", "TMPDIR=", "LC_", "PG"};
    if (strncmp(e, "PGPASSWORD=", 11) == 0)
        return 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strncmp(e, names[i], strlen(names[i])) == 0)
            return 1;
    return 0;
}

static int host_has_child_env(const coffer_host *host)
{
    return host->struct_size >= offsetof(coffer_host, child_env_free) + sizeof(void *) &&
           host->child_env && host->child_env_free;
}

/* The child's environment: the host's rule for every child (no secrets,
 * PGPASSWORD included), plus PGPASSFILE naming the password file. */
static char **child_env(pgd_instance *in, const char *passfile)
{
    char pf[4200] = "";
    if (passfile && *passfile)
        snprintf(pf, sizeof pf, "PGPASSFILE=%s", passfile);
    const char *add[] = {pf[0] ? pf : NULL, NULL};
    if (host_has_child_env(in->host))
        return in->host->child_env(in->h, NULL, add);
    size_t n = 0;
    for (char **e = environ; e && *e; e++)
        n++;
    char **env = calloc(n + 2, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (char **e = environ; e && *e; e++) {
        if (!fallback_keep(*e) || (pf[0] && strncmp(*e, "PGPASSFILE=", 11) == 0))
            continue;
        if (!(env[k++] = strdup(*e)))
            goto oom;
    }
    if (pf[0] && !(env[k++] = strdup(pf)))
        goto oom;
    return env;
oom:
    for (size_t i = 0; i < k; i++)
        free(env[i]);
    free(env);
    return NULL;
}

static void child_env_free(pgd_instance *in, char **env)
{
    if (!env)
        return;
    if (host_has_child_env(in->host)) {
        in->host->child_env_free(env);
        return;
    }
    for (char **e = env; *e; e++)
        free(*e);
    free(env);
}

coffer_status pgd_spawn(pgd_instance *in, const char *path, char *const argv[],
                        const char *passfile, int want_stdin, int want_stdout, pgd_child *c)
{
    memset(c, 0, sizeof *c);
    c->pid = -1;
    c->in_fd = c->out_fd = c->err_fd = -1;
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1};
    coffer_status st = COFFER_OK;
    char **env = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    int fa_ok = 0, at_ok = 0;
    if ((want_stdin && pipe2(pin, O_CLOEXEC) != 0) ||
        (want_stdout && pipe2(pout, O_CLOEXEC) != 0) || pipe2(perr, O_CLOEXEC) != 0) {
        st = in->host->error(in->h, COFFER_ERR_IO, "cannot create pipes for %s: %s", path,
                             strerror(errno));
        goto fail;
    }
    if (!(env = child_env(in, passfile))) {
        st = pgd_oom(in);
        goto fail;
    }
    if (posix_spawn_file_actions_init(&fa) != 0 || !(fa_ok = 1) || posix_spawnattr_init(&at) != 0 ||
        !(at_ok = 1)) {
        st = pgd_oom(in);
        goto fail;
    }
    if (want_stdin)
        posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
    else
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (want_stdout)
        posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
    else
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, perr[1], 2);
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGHUP);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                      POSIX_SPAWN_SETPGROUP);
    pid_t pid;
    int err = posix_spawn(&pid, path, &fa, &at, argv, env);
    if (err != 0) {
        st = in->host->error(in->h, err == ENOENT ? COFFER_ERR_NOT_FOUND : COFFER_ERR_FAILED,
                             "cannot run %s: %s", path, strerror(err));
        goto fail;
    }
    c->pid = pid;
    if (want_stdin) {
        close(pin[0]);
        c->in_fd = pin[1];
    }
    if (want_stdout) {
        close(pout[1]);
        c->out_fd = pout[0];
    }
    close(perr[1]);
    c->err_fd = perr[0];
    fcntl(c->err_fd, F_SETFL, fcntl(c->err_fd, F_GETFL) | O_NONBLOCK);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    child_env_free(in, env);
    return COFFER_OK;
fail:
    if (fa_ok)
        posix_spawn_file_actions_destroy(&fa);
    if (at_ok)
        posix_spawnattr_destroy(&at);
    child_env_free(in, env);
    for (int i = 0; i < 2; i++) {
        if (pin[i] >= 0)
            close(pin[i]);
        if (pout[i] >= 0)
            close(pout[i]);
        if (perr[i] >= 0)
            close(perr[i]);
    }
    return st;
}

void pgd_child_drain_err(pgd_child *c)
{
    if (c->err_fd < 0)
        return;
    char buf[4096];
    for (;;) {
        ssize_t r = read(c->err_fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r <= 0) {
            close(c->err_fd);
            c->err_fd = -1;
            return;
        }
        /* Keep the tail: the last lines say why a child failed. */
        size_t n = (size_t)r;
        if (n >= sizeof c->err) {
            memcpy(c->err, buf + n - sizeof c->err, sizeof c->err);
            c->errlen = sizeof c->err;
            c->err_cut = 1;
        } else {
            if (c->errlen + n > sizeof c->err) {
                size_t drop = c->errlen + n - sizeof c->err;
                memmove(c->err, c->err + drop, c->errlen - drop);
                c->errlen -= drop;
                c->err_cut = 1;
            }
            memcpy(c->err + c->errlen, buf, n);
            c->errlen += n;
        }
    }
}

int pgd_child_wait(pgd_child *c)
{
    if (c->in_fd >= 0) {
        close(c->in_fd);
        c->in_fd = -1;
    }
    if (c->out_fd >= 0) {
        close(c->out_fd);
        c->out_fd = -1;
    }
    /* Read stderr to its end (the child may still be writing its last
     * words), without blocking forever on a grandchild holding it open. */
    for (int i = 0; c->err_fd >= 0 && i < 300; i++) {
        struct pollfd pfd = {.fd = c->err_fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) > 0)
            pgd_child_drain_err(c);
        else if (c->pid > 0 && exited(c->pid))
            i = 290; /* exited: a little longer for buffered output */
    }
    if (c->err_fd >= 0) {
        close(c->err_fd);
        c->err_fd = -1;
    }
    if (c->pid <= 0)
        return -1;
    int status;
    pid_t r;
    while ((r = waitpid(c->pid, &status, 0)) < 0 && errno == EINTR)
        ;
    c->pid = -1;
    return r < 0 ? -1 : status;
}

void pgd_child_kill(pgd_child *c)
{
    if (c->pid <= 0)
        return;
    kill(-c->pid, SIGTERM);
    kill(c->pid, SIGTERM);
    for (int i = 0; i < 50; i++) {
        if (exited(c->pid))
            return;
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    kill(-c->pid, SIGKILL);
    kill(c->pid, SIGKILL);
}

const char *pgd_child_errtail(const pgd_child *c, char *buf, size_t len)
{
    /* The last few lines, joined. */
    char raw[PGD_ERRTAIL + 1];
    memcpy(raw, c->err, c->errlen);
    raw[c->errlen] = 0;
    size_t n = c->errlen;
    while (n > 0 && (raw[n - 1] == '\n' || raw[n - 1] == ' '))
        raw[--n] = 0;
    const char *start = raw;
    int lines = 0;
    for (size_t i = n; i > 0; i--)
        if (raw[i - 1] == '\n' && ++lines == 4) {
            start = raw + i;
            break;
        }
    char *r = pgd_redact(start);
    size_t o = 0;
    for (const char *p = r ? r : ""; *p && o + 3 < len; p++) {
        if (*p == '\n') {
            buf[o++] = ';';
            buf[o++] = ' ';
        } else if (*p != '\r') {
            buf[o++] = *p == '\t' ? ' ' : *p;
        }
    }
    buf[o] = 0;
    free(r);
    if (!o)
        snprintf(buf, len, "(no message)");
    return buf;
}

const char *pgd_wait_str(int status, char *buf, size_t len)
{
    if (status < 0)
        snprintf(buf, len, "not started");
    else if (WIFEXITED(status))
        snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, len, "wait status %d", status);
    return buf;
}
