/*
 * Running the LVM tools: no shell, a fixed search path, an environment
 * built from nothing (coffer's own holds secrets), both outputs kept for
 * the caller and for error messages.
 */
#include "snapshot/snapshot_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

#define OUT_MAX (4u << 20) /* lvs of a large volume group stays far below */

char *cf_fssnap_cmdline(char *const *argv)
{
    cf_buf b = {0};
    cf_buf_append(&b, "`", 1);
    for (size_t i = 0; argv[i]; i++) {
        if (i)
            cf_buf_append(&b, " ", 1);
        int quote = !argv[i][0] || strpbrk(argv[i], " \t'\"{}") != NULL;
        if (quote)
            cf_buf_append(&b, "'", 1);
        cf_buf_append(&b, argv[i], strlen(argv[i]));
        if (quote)
            cf_buf_append(&b, "'", 1);
    }
    cf_buf_append(&b, "`", 2); /* with the terminating NUL */
    return (char *)b.data;
}

/* Read what is there; 0 at end of file. */
static int drain(int fd, cf_buf *b)
{
    char chunk[4096];
    ssize_t r = read(fd, chunk, sizeof chunk);
    if (r > 0) {
        if (b->len < OUT_MAX)
            cf_buf_append(b, chunk, (size_t)r);
        return 1;
    }
    return r < 0 && (errno == EINTR || errno == EAGAIN) ? 1 : 0;
}

int cf_fssnap_exec(char *const *argv, char *const *env_extra, int timeout_s, char **out, char **err)
{
    static const char *const dirs[] = {"/usr/sbin", "/sbin", "/usr/bin", "/bin"};
    if (out)
        *out = NULL;
    *err = NULL;
    char exe[512] = "";
    for (size_t i = 0; i < CF_ARRAY_LEN(dirs) && !exe[0]; i++) {
        snprintf(exe, sizeof exe, "%s/%s", dirs[i], argv[0]);
        if (access(exe, X_OK) != 0)
            exe[0] = 0;
    }
    if (!exe[0])
        return cf_fail("%s: not found in /usr/sbin, /sbin, /usr/bin or /bin", argv[0]);

    /* Everything the child needs is built before fork: the child of a
     * threaded process must not allocate. */
    size_t nextra = 0;
    while (env_extra && env_extra[nextra])
        nextra++;
    char **env = cf_calloc(nextra + 3, sizeof *env);
    env[0] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
    env[1] = "LC_ALL=C";
    for (size_t i = 0; i < nextra; i++)
        env[2 + i] = env_extra[i];
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) != 0) {
        free(env);
        return cf_fail_errno("%s: pipe", argv[0]);
    }
    if (pipe2(pe, O_CLOEXEC) != 0) {
        close(po[0]);
        close(po[1]);
        free(env);
        return cf_fail_errno("%s: pipe", argv[0]);
    }
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0); /* a ^C on the terminal is coffer's to handle */
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0)
            _exit(126);
        /* lvm complains of every descriptor it inherits */
        closefrom(3);
        execve(exe, argv, env);
        _exit(127);
    }
    int fork_errno = errno;
    free(env);
    if (devnull >= 0)
        close(devnull);
    close(po[1]);
    close(pe[1]);
    if (pid < 0) {
        close(po[0]);
        close(pe[0]);
        errno = fork_errno;
        return cf_fail_errno("%s: fork", argv[0]);
    }
    setpgid(pid, pid);
    fcntl(po[0], F_SETFL, O_NONBLOCK);
    fcntl(pe[0], F_SETFL, O_NONBLOCK);
    cf_buf bo = {0}, be = {0};
    int open_o = 1, open_e = 1, killed = 0;
    double deadline = cf_now() + (timeout_s > 0 ? timeout_s : 3600);
    /* A signal to coffer (SIGINT) does not stop the tool: an lvcreate
     * interrupted halfway leaves more to clean up than one let finish. */
    while (open_o || open_e) {
        struct pollfd pf[2] = {{open_o ? po[0] : -1, POLLIN, 0}, {open_e ? pe[0] : -1, POLLIN, 0}};
        int r = poll(pf, 2, 200);
        if (r > 0) {
            if (open_o && (pf[0].revents & (POLLIN | POLLHUP | POLLERR)))
                open_o = drain(po[0], &bo);
            if (open_e && (pf[1].revents & (POLLIN | POLLHUP | POLLERR)))
                open_e = drain(pe[0], &be);
        }
        if (!killed && cf_now() > deadline) {
            kill(-pid, SIGKILL);
            killed = 1;
            break;
        }
    }
    close(po[0]);
    close(pe[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    cf_buf_append(&bo, "", 1);
    cf_buf_append(&be, "", 1);
    char *cmd = NULL;
    int rc;
    if (killed) {
        cmd = cf_fssnap_cmdline(argv);
        rc = cf_fail("%s did not finish in %d s and was killed", cmd, timeout_s);
    } else if (WIFSIGNALED(status)) {
        cmd = cf_fssnap_cmdline(argv);
        rc = cf_fail("%s was killed by signal %d", cmd, WTERMSIG(status));
    } else {
        rc = WEXITSTATUS(status);
        if (rc == 127) {
            cmd = cf_fssnap_cmdline(argv);
            rc = cf_fail("%s could not be started", cmd);
        }
    }
    free(cmd);
    if (out)
        *out = (char *)bo.data;
    else
        free(bo.data);
    *err = (char *)be.data;
    return rc;
}
