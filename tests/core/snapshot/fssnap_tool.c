/*
 * Drives core/snapshot from the shell tests (fssnap_btrfs.sh,
 * fssnap_lvm.sh), which build the file systems on loop devices.
 *
 *   fssnap_tool take KIND ROOT TAG [-s SIZE] PATH...
 *       Takes a snapshot and prints "desc: ...", "skip: REL" (when there
 *       is one), "map REL PATH" for every path and for ".", "pid: N",
 *       then "ready". Then reads commands from stdin, one a line:
 *         map REL   prints "map REL PATH" (or "error: ...")
 *         release   releases, prints "released" (or "error: ..."), exits
 *         abandon   exits at once without releasing: what a killed
 *                   backup leaves behind
 *       End of input releases too; so do SIGINT and SIGTERM (exit 130,
 *       143), as a backup unwinds on them.
 *   fssnap_tool sweep KIND ROOT TAG PATH...
 *       Prints "removed N".
 * -v first: debug messages. Errors: "error: MESSAGE" on stderr, exit 1.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "snapshot/snapshot.h"
#include "util/util.h"

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

static int usage(void)
{
    fprintf(stderr, "usage: fssnap_tool [-v] take KIND ROOT TAG [-s SIZE] PATH...\n"
                    "       fssnap_tool [-v] sweep KIND ROOT TAG PATH...\n");
    return 2;
}

static int print_map(const cf_fssnap *s, const char *rel)
{
    char *p = cf_fssnap_map(s, rel);
    if (!p) {
        printf("error: %s\n", cf_error());
        return -1;
    }
    printf("map %s %s\n", rel, p);
    free(p);
    return 0;
}

static int release(cf_fssnap *s)
{
    if (cf_fssnap_release(s) != 0) {
        printf("error: %s\n", cf_error());
        fprintf(stderr, "error: %s\n", cf_error());
        return 1;
    }
    printf("released\n");
    return 0;
}

static int take(const char *kind, const char *root, const char *tag, const char *size, char **paths,
                size_t n)
{
    cf_fssnap *s;
    if (cf_fssnap_take(kind, root, paths, n, tag, size, &s) != 0) {
        fprintf(stderr, "error: %s\n", cf_error());
        return 1;
    }
    printf("desc: %s\n", cf_fssnap_describe(s));
    if (cf_fssnap_skip(s))
        printf("skip: %s\n", cf_fssnap_skip(s));
    for (size_t i = 0; i < n; i++)
        print_map(s, paths[i]);
    char *top = cf_fssnap_map(s, ".");
    if (top) {
        printf("map . %s\n", top);
        free(top);
    }
    printf("pid: %d\nready\n", (int)getpid());
    fflush(stdout);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: the read below returns */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    char line[4096];
    while (!got_signal && fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (strncmp(line, "map ", 4) == 0) {
            print_map(s, line + 4);
        } else if (strcmp(line, "release") == 0) {
            return release(s);
        } else if (strcmp(line, "abandon") == 0) {
            fflush(stdout);
            _exit(0);
        } else {
            printf("error: unknown command '%s'\n", line);
        }
        fflush(stdout);
    }
    int rc = release(s);
    fflush(stdout);
    return got_signal ? 128 + got_signal : rc;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int a = 1;
    cf_log_set_level(CF_LOG_INFO);
    if (a < argc && strcmp(argv[a], "-v") == 0) {
        cf_log_set_level(CF_LOG_DEBUG);
        a++;
    }
    if (argc - a < 5)
        return usage();
    const char *cmd = argv[a], *kind = argv[a + 1], *root = argv[a + 2], *tag = argv[a + 3];
    a += 4;
    if (strcmp(cmd, "take") == 0) {
        const char *size = NULL;
        if (a + 1 < argc && strcmp(argv[a], "-s") == 0) {
            size = argv[a + 1];
            a += 2;
        }
        if (a >= argc)
            return usage();
        return take(kind, root, tag, size, argv + a, (size_t)(argc - a));
    }
    if (strcmp(cmd, "sweep") == 0) {
        int n = cf_fssnap_sweep(kind, root, argv + a, (size_t)(argc - a), tag);
        if (n < 0) {
            fprintf(stderr, "error: %s\n", cf_error());
            return 1;
        }
        printf("removed %d\n", n);
        return 0;
    }
    return usage();
}
