/* Helpers shared by the core/plugin tests (header-only: one executable
 * per test file). */
#ifndef PLUGIN_TEST_H
#define PLUGIN_TEST_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fresh temporary directory per test. */
static inline int pt_mkdtemp(char *buf, size_t len)
{
    snprintf(buf, len, "/tmp/coffer-plugin-XXXXXX");
    return mkdtemp(buf) ? 0 : -1;
}

static inline void pt_rmrf(const char *dir)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        /* best effort */
    }
}

static inline int pt_write(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = fwrite(data, 1, len, f);
    return fclose(f) == 0 && n == len ? 0 : -1;
}

static inline int pt_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Run fn with fd 2 sent to a file; returns what was written (free it). */
static inline char *pt_capture_stderr(const char *dir, void (*fn)(void *), void *arg)
{
    char path[600];
    snprintf(path, sizeof path, "%s/.stderr", dir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *f = fopen(path, "r");
    char *buf = calloc(1, 65536);
    size_t n = f ? fread(buf, 1, 65535, f) : 0;
    buf[n] = 0;
    if (f)
        fclose(f);
    unlink(path);
    return buf;
}

#define assert_has(hay, needle)                                                                    \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (!h_ || !strstr(h_, n_)) {                                                              \
            print_error("\"%s\" does not contain \"%s\"\n", h_ ? h_ : "(null)", n_);             \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

#define assert_error_has(s) assert_has(cf_error(), (s))

#endif
