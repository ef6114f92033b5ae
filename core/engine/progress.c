#include "engine/progress.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

static _Atomic uint64_t done_bytes, done_files, total;
static pthread_t thr;
static int running, is_tty;
static atomic_int stop_flag;
static pthread_mutex_t draw_lock = PTHREAD_MUTEX_INITIALIZER;
static char label[64];
static double t0;
static int drawn;

const char *cf_human_bytes(uint64_t n, char *buf, int len)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(buf, (size_t)len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
    return buf;
}

/* Called before each log line (cf_log's hook, under the log's lock): the
 * drawing thread may be writing the bar at the same moment. */
static void clear_line(void)
{
    pthread_mutex_lock(&draw_lock);
    if (is_tty && drawn) {
        fputs("\r\033[K", stderr);
        drawn = 0;
    }
    pthread_mutex_unlock(&draw_lock);
}

static void draw(int final)
{
    char b[32], r[32], line[256];
    uint64_t bytes = atomic_load(&done_bytes), files = atomic_load(&done_files),
             tot = atomic_load(&total);
    double el = cf_now() - t0;
    double rate = el > 0 ? (double)bytes / el : 0;
    int n = snprintf(line, sizeof line, "%s %s, %llu files, %s/s", label,
                     cf_human_bytes(bytes, b, sizeof b), (unsigned long long)files,
                     cf_human_bytes((uint64_t)rate, r, sizeof r));
    if (tot && bytes <= tot && rate > 0 && n > 0 && (size_t)n < sizeof line) {
        int pct = (int)(100.0 * (double)bytes / (double)tot);
        double eta = (double)(tot - bytes) / rate;
        char bar[21];
        for (int i = 0; i < 20; i++)
            bar[i] = i < pct / 5 ? '#' : '.';
        bar[20] = 0;
        snprintf(line + n, sizeof line - (size_t)n, " [%s] %3d%% ETA %d:%02d", bar, pct,
                 (int)eta / 60, (int)eta % 60);
    }
    pthread_mutex_lock(&draw_lock);
    if (is_tty) {
        fprintf(stderr, "\r\033[K%s", line);
        drawn = 1;
        if (final) {
            fputc('\n', stderr);
            drawn = 0;
        }
    } else if (!final) {
        fprintf(stderr, "coffer: progress: %s\n", line);
    }
    fflush(stderr);
    pthread_mutex_unlock(&draw_lock);
}

static void *loop(void *arg)
{
    (void)arg;
    int ticks = 0;
    while (!atomic_load(&stop_flag)) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
        ticks++;
        /* terminal: 5 redraws a second; log: a line every 30 s */
        if ((is_tty && ticks % 2 == 0) || (!is_tty && ticks % 300 == 0))
            draw(0);
    }
    return NULL;
}

static void hook(void)
{
    clear_line();
}

void cf_progress_start(const char *what, uint64_t total_bytes, int mode)
{
    atomic_store(&done_bytes, 0);
    atomic_store(&done_files, 0);
    atomic_store(&total, total_bytes);
    atomic_store(&stop_flag, 0);
    snprintf(label, sizeof label, "%s", what);
    t0 = cf_now();
    if (mode == 1 || cf_log_level_get() < CF_LOG_INFO)
        return;
    is_tty = isatty(2);
    cf_log_set_hook(hook);
    if (pthread_create(&thr, NULL, loop, NULL) == 0)
        running = 1;
}

void cf_progress_add(uint64_t bytes, uint64_t files)
{
    if (bytes)
        atomic_fetch_add(&done_bytes, bytes);
    if (files)
        atomic_fetch_add(&done_files, files);
}

void cf_progress_set_total(uint64_t total_bytes)
{
    atomic_store(&total, total_bytes);
}

uint64_t cf_progress_bytes(void)
{
    return atomic_load(&done_bytes);
}

uint64_t cf_progress_files(void)
{
    return atomic_load(&done_files);
}

void cf_progress_stop(void)
{
    if (!running)
        return;
    atomic_store(&stop_flag, 1);
    pthread_join(thr, NULL);
    running = 0;
    if (is_tty)
        draw(1);
    cf_log_set_hook(NULL);
}
