#include "engine/prefetch.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

#define PREFETCH_THREADS 4
#define PREFETCH_MAX_QUEUE 100000 /* directories waiting; beyond that, drop */

struct cf_prefetch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char **q;       /* stack of directories to read */
    size_t n, cap;
    int busy;       /* threads working on a directory */
    int stop;
    pthread_t thr[PREFETCH_THREADS];
    int nthr;
};

static void push(cf_prefetch *p, char *dir)
{
    if (p->n >= PREFETCH_MAX_QUEUE) {
        free(dir);
        return;
    }
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 256;
        p->q = cf_realloc(p->q, p->cap * sizeof *p->q);
    }
    p->q[p->n++] = dir;
}

static void scan(cf_prefetch *p, const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    struct dirent *e;
    while (!p->stop && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        struct stat st;
        if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode))
            continue;
        char *sub = cf_asprintf("%s/%s", dir, e->d_name);
        pthread_mutex_lock(&p->mu);
        push(p, sub);
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    closedir(d);
}

static void *run(void *arg)
{
    cf_prefetch *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->n == 0 && p->busy > 0)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop || (p->n == 0 && p->busy == 0))
            break;
        char *dir = p->q[--p->n];
        p->busy++;
        pthread_mutex_unlock(&p->mu);
        scan(p, dir);
        free(dir);
        pthread_mutex_lock(&p->mu);
        p->busy--;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

cf_prefetch *cf_prefetch_start(const char *root, char *const *paths, size_t n)
{
    cf_prefetch *p = cf_calloc(1, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (size_t i = n; i-- > 0;)
        push(p, strcmp(paths[i], ".") == 0 ? cf_strdup(root)
                                           : cf_asprintf("%s/%s", root, paths[i]));
    for (int i = 0; i < PREFETCH_THREADS; i++)
        if (pthread_create(&p->thr[p->nthr], NULL, run, p) == 0)
            p->nthr++;
    if (!p->nthr) {
        cf_prefetch_stop(p);
        return NULL;
    }
    return p;
}

void cf_prefetch_stop(cf_prefetch *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthr; i++)
        pthread_join(p->thr[i], NULL);
    for (size_t i = 0; i < p->n; i++)
        free(p->q[i]);
    free(p->q);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}
