/* delay_proxy: a TCP proxy that holds every byte for half a round trip in
 * each direction, for benchmarks and tests of a distant server on a
 * machine whose kernel has no netem qdisc.
 *
 *   delay_proxy --upstream HOST:PORT --rtt-ms MS [--listen HOST:PORT]
 *               [--window BYTES] [--port-file FILE]
 *
 * Each connection accepted on --listen (default 127.0.0.1, any free port)
 * is joined to a new connection to --upstream. Bytes read from either side
 * are written to the other RTT/2 ms later; an end of stream travels the
 * same way. A new connection's first bytes leave no sooner than one round
 * trip after it was accepted, the cost of a TCP handshake. At most
 * --window bytes (default 3 MiB) wait in each direction of a connection:
 * held for RTT/2, that bounds one connection to window / (RTT/2), about
 * what Linux's default 6 MiB receive buffer allows a real connection over
 * the same round trip. The bandwidth is otherwise that of loopback; slow
 * start and losses are not modelled, nor is either end's timing of its
 * acknowledgements: the proxy acknowledges what it reads at once.
 *
 * One thread, epoll. The port it listens on is written to --port-file
 * (and stdout) once it accepts. It runs until killed. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE (256 * 1024)

struct seg {
    struct seg *next;
    uint64_t due; /* CLOCK_MONOTONIC ns */
    size_t len, off;
    int fin; /* end of stream: shut the write side */
    char data[];
};

/* One direction: bytes read from fd[from], written to fd[to]. */
struct dir {
    struct seg *head, *tail;
    size_t queued;
    int eof;     /* read side ended */
    int blocked; /* head is due but the writer's socket is full */
    int done;    /* end of stream delivered */
};

struct conn {
    struct conn *prev, *next;
    int fd[2];       /* 0: client, 1: upstream */
    struct dir d[2]; /* 0: client -> upstream, 1: upstream -> client */
    uint64_t ready;  /* no bytes leave before this (handshake) */
    uint32_t ev[2];  /* events registered for fd[i] */
    int dead;        /* reset: freed after this round of events */
    struct conn *self[2];
};

static uint64_t half_ns, rtt_ns;
static size_t window = 3u << 20;
static int epfd;
static struct conn *conns;
static struct addrinfo *upstream;

static void die(const char *what)
{
    fprintf(stderr, "delay_proxy: %s: %s\n", what, strerror(errno));
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct addrinfo *resolve(const char *hostport, int passive)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (!colon || (size_t)(colon - hostport) >= sizeof host) {
        fprintf(stderr, "delay_proxy: %s: expected HOST:PORT\n", hostport);
        exit(2);
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = 0;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0};
    struct addrinfo *ai;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc) {
        fprintf(stderr, "delay_proxy: %s: %s\n", hostport, gai_strerror(rc));
        exit(2);
    }
    return ai;
}

/* The events fd[i] waits for: input while its direction has room,
 * output while the other direction's due head waits for room. */
static void arm(struct conn *c, int i)
{
    uint32_t ev = 0;
    if (!c->d[i].eof && c->d[i].queued < window)
        ev |= EPOLLIN;
    if (c->d[1 - i].blocked)
        ev |= EPOLLOUT;
    if (ev == c->ev[i])
        return;
    struct epoll_event e = {.events = ev, .data.ptr = &c->self[i]};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd[i], &e))
        die("epoll_ctl");
    c->ev[i] = ev;
}

static void drop(struct conn *c)
{
    for (int i = 0; i < 2; i++) {
        close(c->fd[i]);
        struct seg *s = c->d[i].head;
        while (s) {
            struct seg *n = s->next;
            free(s);
            s = n;
        }
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

static void push(struct dir *d, struct seg *s, uint64_t due)
{
    s->due = due;
    s->next = NULL;
    if (d->tail)
        d->tail->next = s;
    else
        d->head = s;
    d->tail = s;
    d->queued += s->len;
}

/* Reads what fd[i] has; returns -1 when the connection must go. */
static int take(struct conn *c, int i, uint64_t now)
{
    struct dir *d = &c->d[i];
    uint64_t due = (now > c->ready ? now : c->ready) + half_ns;
    while (!d->eof && d->queued < window) {
        struct seg *s = malloc(sizeof *s + READ_SIZE);
        if (!s)
            die("malloc");
        /* Acknowledge at once. A server with Nagle's algorithm on (RGW's
         * default) holds its last small segment until what it sent before
         * is acknowledged, and the proxy's delayed acknowledgement would
         * add 40 ms to about half the answers: a stall of the proxy, not
         * of the link it stands for. */
        int one = 1;
        setsockopt(c->fd[i], IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
        ssize_t n = read(c->fd[i], s->data, READ_SIZE);
        if (n < 0) {
            free(s);
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            return -1;
        }
        s->off = 0;
        s->fin = n == 0;
        s->len = (size_t)n;
        if (n == 0)
            d->eof = 1;
        else if (n < READ_SIZE / 4) {
            struct seg *t = realloc(s, sizeof *s + (size_t)n);
            if (t)
                s = t;
        }
        push(d, s, due);
    }
    return 0;
}

/* Writes the due part of direction i to fd[1-i]. */
static int give(struct conn *c, int i, uint64_t now)
{
    struct dir *d = &c->d[i];
    int to = c->fd[1 - i];
    d->blocked = 0;
    while (d->head && d->head->due <= now) {
        struct seg *s = d->head;
        if (s->fin) {
            shutdown(to, SHUT_WR);
            d->done = 1;
        } else {
            while (s->off < s->len) {
                ssize_t n = write(to, s->data + s->off, s->len - s->off);
                if (n < 0) {
                    if (errno == EAGAIN) {
                        d->blocked = 1;
                        return 0;
                    }
                    if (errno == EINTR)
                        continue;
                    return -1;
                }
                s->off += (size_t)n;
                d->queued -= (size_t)n;
            }
        }
        d->head = s->next;
        if (!d->head)
            d->tail = NULL;
        free(s);
    }
    return 0;
}

static void nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK))
        die("fcntl");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void accept_all(int lfd, uint64_t now)
{
    for (;;) {
        int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                return;
            die("accept");
        }
        /* Loopback upstream: a blocking connect returns at once. */
        int ufd = socket(upstream->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (ufd < 0)
            die("socket");
        if (connect(ufd, upstream->ai_addr, upstream->ai_addrlen)) {
            fprintf(stderr, "delay_proxy: connect to upstream: %s\n", strerror(errno));
            close(ufd);
            close(cfd);
            continue;
        }
        nonblock(cfd);
        nonblock(ufd);
        struct conn *c = calloc(1, sizeof *c);
        if (!c)
            die("calloc");
        c->fd[0] = cfd;
        c->fd[1] = ufd;
        c->ready = now + rtt_ns;
        for (int i = 0; i < 2; i++) {
            c->self[i] = c;
            c->ev[i] = EPOLLIN;
            struct epoll_event e = {.events = EPOLLIN, .data.ptr = &c->self[i]};
            if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd[i], &e))
                die("epoll_ctl");
        }
        c->next = conns;
        if (conns)
            conns->prev = c;
        conns = c;
    }
}

int main(int argc, char **argv)
{
    const char *listen_at = "127.0.0.1:0", *up = NULL, *port_file = NULL;
    long rtt_ms = -1;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "delay_proxy: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--listen"))
            listen_at = v;
        else if (!strcmp(a, "--upstream"))
            up = v;
        else if (!strcmp(a, "--rtt-ms"))
            rtt_ms = strtol(v, NULL, 10);
        else if (!strcmp(a, "--window"))
            window = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--port-file"))
            port_file = v;
        else {
            fprintf(stderr, "delay_proxy: unknown option %s\n", a);
            return 2;
        }
    }
    if (!up || rtt_ms < 0 || window < 1) {
        fprintf(stderr, "usage: delay_proxy --upstream HOST:PORT --rtt-ms MS [--listen HOST:PORT]"
                        " [--window BYTES] [--port-file FILE]\n");
        return 2;
    }
    rtt_ns = (uint64_t)rtt_ms * 1000000u;
    half_ns = rtt_ns / 2;
    signal(SIGPIPE, SIG_IGN);
    upstream = resolve(up, 0);

    struct addrinfo *la = resolve(listen_at, 1);
    int lfd = socket(la->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(lfd, la->ai_addr, la->ai_addrlen) || listen(lfd, 256))
        die("listen");
    freeaddrinfo(la);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(lfd, (struct sockaddr *)&ss, &sl))
        die("getsockname");
    int port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &le))
        die("epoll_ctl");
    if (port_file) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) || rename(tmp, port_file))
            die(port_file);
    }
    printf("%d\n", port);
    fflush(stdout);

    struct epoll_event evs[64];
    for (;;) {
        /* Sleep until the earliest head falls due. */
        uint64_t now = now_ns(), next = UINT64_MAX;
        for (struct conn *c = conns; c; c = c->next)
            for (int i = 0; i < 2; i++)
                if (c->d[i].head && !c->d[i].blocked && c->d[i].head->due < next)
                    next = c->d[i].head->due;
        int timeout = -1;
        if (next != UINT64_MAX)
            timeout = next <= now ? 0 : (int)((next - now + 999999) / 1000000);
        int n = epoll_wait(epfd, evs, 64, timeout);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        now = now_ns();
        for (int k = 0; k < n; k++) {
            if (!evs[k].data.ptr) {
                accept_all(lfd, now);
                continue;
            }
            struct conn **self = evs[k].data.ptr;
            struct conn *c = *self;
            if (c->dead)
                continue; /* reset by an event before this one */
            int i = self == &c->self[0] ? 0 : 1;
            if (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                if (take(c, i, now)) {
                    /* A reset on one side resets the other at once. */
                    struct linger lg = {1, 0};
                    setsockopt(c->fd[1 - i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                    c->dead = 1;
                    continue;
                }
            if (evs[k].events & EPOLLOUT)
                c->d[1 - i].blocked = 0;
        }
        for (struct conn *c = conns, *nx; c; c = nx) {
            nx = c->next;
            int bad = c->dead;
            for (int i = 0; i < 2 && !bad; i++)
                if (!c->d[i].blocked && give(c, i, now))
                    bad = 1;
            if (bad || (c->d[0].done && c->d[1].done)) {
                drop(c);
                continue;
            }
            arm(c, 0);
            arm(c, 1);
        }
    }
}
