/* relay.c — a TCP relay for the benchmarks (bench/run.sh): every chunk read on one
 * side is written to the other side a fixed delay after it was read, in both
 * directions, so PostgreSQL or Redis on loopback answers as if across a network
 * (round trip = loopback's + 2 x delay). Bytes keep their order and pipelining is
 * kept: reading goes on while earlier chunks wait out their delay.
 *
 *   relay --listen 127.0.0.1:P --to 127.0.0.1:Q --delay-us 500 [--max-queued-kib 4096]
 *
 * One thread, epoll, and one timerfd armed for the earliest chunk due: nothing
 * spins. The delay is the same for every chunk, so chunks fall due in the order
 * they were read and one FIFO of due times serves every connection.
 * A half-close (FIN) is passed on after the same delay, behind the data read
 * before it; an error or reset on either side resets both sides at once. A
 * direction holding more than --max-queued-kib stops reading its source until it
 * drains to half of that. The upstream connect itself is not delayed, and it is
 * IPv4 only: a bench tool, not a proxy to deploy.
 *
 * SIGTERM or SIGINT: prints one JSON line of counters on stderr (connections,
 * chunks, bytes, how late chunks were written after their due time) and exits. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define BENCH_PROG "relay"
#include "bench_fail.h"

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---------------------------------------------------------------- state */

/* Bytes read from one side, to be written to the other at `due` (or, with eof,
 * the FIN to pass on). */
struct chunk {
    struct chunk *next;
    int64_t due;
    size_t len, off;
    int eof;
    char data[];
};

/* One direction of a pair: from side k to side 1 - k. */
struct dir {
    struct chunk *head, *tail;
    size_t queued; /* bytes not yet written */
    int read_eof;  /* the source sent its FIN */
    int wrote_eof; /* ... and it was passed on */
    int paused;    /* reading the source stopped: too much queued */
};

struct pair;

/* One socket of a pair, registered in epoll with itself as data.ptr. */
struct side {
    int fd, k;
    struct pair *p;
    uint32_t mask; /* events registered; (uint32_t)-1 = not registered */
};

/* A client connection and its upstream connection. Once ended it waits on the
 * dead list until no FIFO entry points to it, and is freed between two rounds of
 * events (an event of the same round may still name it). */
struct pair {
    struct side s[2]; /* 0: client, 1: upstream */
    struct dir d[2];  /* d[k]: from s[k] to s[1 - k] */
    int connecting;   /* upstream connect in progress */
    int dead;
    unsigned timers; /* FIFO entries pointing here */
    struct pair *next_dead;
};

struct due_entry {
    int64_t due;
    struct pair *p;
};

static struct {
    int ep, tfd, lfd;
    struct sockaddr_in to;
    int64_t delay_ns;
    size_t max_queued;
    struct due_entry *fifo;
    size_t fcap, fhead, flen;
    int64_t armed; /* due time the timerfd is set for; 0 = disarmed */
    struct pair *dead;
    /* counters */
    uint64_t conns, conns_open, aborts, chunks, bytes[2];
    uint64_t late_hist[32]; /* chunk written late by [2^i, 2^(i+1)) us; bucket 0 also < 1 us */
    double late_max_us, late_sum_us;
} R;

static int listen_tag, timer_tag; /* epoll data.ptr of the listener and the timer */
static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void fifo_push(int64_t due, struct pair *p)
{
    if (R.flen == R.fcap) {
        size_t ncap = R.fcap ? R.fcap * 2 : 1024;
        struct due_entry *n = xmalloc(ncap * sizeof *n);
        for (size_t i = 0; i < R.flen; i++)
            n[i] = R.fifo[(R.fhead + i) % R.fcap];
        free(R.fifo);
        R.fifo = n;
        R.fcap = ncap;
        R.fhead = 0;
    }
    R.fifo[(R.fhead + R.flen) % R.fcap] = (struct due_entry){due, p};
    R.flen++;
    p->timers++;
}

static void timer_arm(void)
{
    int64_t want = R.flen ? R.fifo[R.fhead].due : 0;
    if (want == R.armed)
        return;
    struct itimerspec its = {0};
    if (want) {
        its.it_value.tv_sec = want / 1000000000;
        its.it_value.tv_nsec = want % 1000000000;
    }
    if (timerfd_settime(R.tfd, TFD_TIMER_ABSTIME, &its, NULL) != 0)
        die("timerfd_settime: %s", strerror(errno));
    R.armed = want;
}

static void note_late(int64_t late_ns)
{
    double us = late_ns > 0 ? (double)late_ns / 1000.0 : 0;
    int b = 0;
    while (b < 31 && us >= (double)(2u << b))
        b++;
    R.late_hist[b]++;
    R.late_sum_us += us;
    if (us > R.late_max_us)
        R.late_max_us = us;
}

/* ---------------------------------------------------------------- pairs */

static void side_update(struct side *s);

/* Frees the ended pairs no FIFO entry points to any more. */
static void pairs_reap(void)
{
    struct pair **pp = &R.dead;
    while (*pp) {
        struct pair *p = *pp;
        if (p->timers) {
            pp = &p->next_dead;
            continue;
        }
        *pp = p->next_dead;
        for (int k = 0; k < 2; k++)
            for (struct chunk *c = p->d[k].head, *n; c; c = n) {
                n = c->next;
                free(c);
            }
        free(p);
    }
}

static void side_close(struct side *s, int reset)
{
    if (s->fd < 0)
        return;
    if (reset) {
        struct linger lg = {1, 0}; /* close with RST */
        setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(s->fd); /* also leaves epoll */
    s->fd = -1;
}

/* Both sides closed: with RST when reset, else normally (both FINs were passed on). */
static void pair_end(struct pair *p, int reset)
{
    if (p->dead)
        return;
    if (reset)
        R.aborts++;
    side_close(&p->s[0], reset);
    side_close(&p->s[1], reset);
    p->dead = 1;
    p->next_dead = R.dead;
    R.dead = p;
    R.conns_open--;
}

/* Writes what is due of direction k; returns -1 when the pair was ended. */
static int dir_flush(struct pair *p, int k, int64_t now)
{
    struct dir *d = &p->d[k];
    struct side *dst = &p->s[1 - k];
    if (k == 0 && p->connecting)
        return 0;
    while (d->head && d->head->due <= now) {
        struct chunk *c = d->head;
        if (c->eof) {
            shutdown(dst->fd, SHUT_WR);
            d->wrote_eof = 1;
        } else {
            ssize_t n = send(dst->fd, c->data + c->off, c->len - c->off, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break; /* EPOLLOUT on dst (side_update) */
                pair_end(p, 1);
                return -1;
            }
            if (c->off == 0)
                note_late(now - c->due);
            c->off += (size_t)n;
            d->queued -= (size_t)n;
            R.bytes[k] += (uint64_t)n;
            if (c->off < c->len)
                break;
        }
        d->head = c->next;
        if (d->head == NULL)
            d->tail = NULL;
        free(c);
    }
    if (d->paused && d->queued <= R.max_queued / 2)
        d->paused = 0;
    if (d->wrote_eof && p->d[1 - k].wrote_eof) {
        pair_end(p, 0);
        return -1;
    }
    return 0;
}

static void pair_flush(struct pair *p)
{
    int64_t now = now_ns();
    for (int k = 0; k < 2; k++)
        if (dir_flush(p, k, now) < 0)
            return;
    side_update(&p->s[0]);
    side_update(&p->s[1]);
}

/* Registers the events side s needs: readable while its direction reads, writable
 * while a due chunk waits for it (or its connect is in progress). A side done in
 * both directions leaves epoll (a fully shut socket reports EPOLLHUP for ever). */
static void side_update(struct side *s)
{
    struct pair *p = s->p;
    if (s->fd < 0)
        return;
    struct dir *in = &p->d[s->k], *out = &p->d[1 - s->k];
    uint32_t mask = 0;
    if (!in->read_eof && !in->paused)
        mask |= EPOLLIN;
    if ((s->k == 1 && p->connecting) || (out->head && out->head->due <= now_ns() && !(s->k == 1 && p->connecting)))
        mask |= EPOLLOUT;
    if (in->read_eof && out->wrote_eof) {
        if (s->mask != (uint32_t)-1)
            epoll_ctl(R.ep, EPOLL_CTL_DEL, s->fd, NULL);
        s->mask = (uint32_t)-1;
        return;
    }
    if (mask == s->mask)
        return;
    struct epoll_event ev = {.events = mask, .data.ptr = s};
    if (epoll_ctl(R.ep, s->mask == (uint32_t)-1 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, s->fd, &ev) != 0)
        die("epoll_ctl: %s", strerror(errno));
    s->mask = mask;
}

/* Reads what side s has (a bounded number of times, for fairness) into chunks due
 * one delay from now; past the queue limit only when forced (a hung-up socket
 * would otherwise report EPOLLHUP in a loop). Returns -1 when the pair was ended. */
static int side_read(struct side *s, int force)
{
    static char buf[65536];
    struct pair *p = s->p;
    struct dir *d = &p->d[s->k];
    for (int round = 0; round < 8 && !d->read_eof && (force || !d->paused); round++) {
        ssize_t n = recv(s->fd, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            pair_end(p, 1);
            return -1;
        }
        struct chunk *c = xmalloc(sizeof *c + (size_t)n);
        c->next = NULL;
        c->due = now_ns() + R.delay_ns;
        c->len = (size_t)n;
        c->off = 0;
        c->eof = n == 0;
        memcpy(c->data, buf, (size_t)n);
        if (d->tail)
            d->tail->next = c;
        else
            d->head = c;
        d->tail = c;
        d->queued += (size_t)n;
        fifo_push(c->due, p);
        if (n == 0) {
            d->read_eof = 1;
        } else {
            R.chunks++;
            if (d->queued > R.max_queued)
                d->paused = 1;
        }
        if ((size_t)n < sizeof buf)
            break;
    }
    return 0;
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void accept_all(void)
{
    for (;;) {
        int cfd = accept4(R.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED || errno == EINTR)
                return;
            fprintf(stderr, "relay: accept: %s\n", strerror(errno));
            return;
        }
        int ufd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (ufd < 0) {
            fprintf(stderr, "relay: socket: %s\n", strerror(errno));
            close(cfd);
            continue;
        }
        set_nodelay(cfd);
        set_nodelay(ufd);
        struct pair *p = xmalloc(sizeof *p);
        memset(p, 0, sizeof *p);
        for (int k = 0; k < 2; k++) {
            p->s[k].k = k;
            p->s[k].p = p;
            p->s[k].mask = (uint32_t)-1;
        }
        p->s[0].fd = cfd;
        p->s[1].fd = ufd;
        R.conns++;
        R.conns_open++;
        if (connect(ufd, (struct sockaddr *)&R.to, sizeof R.to) != 0) {
            if (errno != EINPROGRESS) {
                fprintf(stderr, "relay: connect upstream: %s\n", strerror(errno));
                pair_end(p, 1);
                continue;
            }
            p->connecting = 1;
        }
        side_update(&p->s[0]);
        side_update(&p->s[1]);
    }
}

static void side_event(struct side *s, uint32_t ev)
{
    struct pair *p = s->p;
    if (p->dead || s->fd < 0)
        return;
    if (s->k == 1 && p->connecting) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err || (ev & EPOLLERR)) {
            fprintf(stderr, "relay: connect upstream: %s\n", strerror(err ? err : ECONNREFUSED));
            pair_end(p, 1);
            return;
        }
        p->connecting = 0;
    }
    if (ev & EPOLLERR) {
        pair_end(p, 1);
        return;
    }
    if ((ev & (EPOLLIN | EPOLLHUP)) && side_read(s, (ev & EPOLLHUP) != 0) < 0)
        return;
    pair_flush(p);
}

/* Every FIFO entry due by now: flush its pair. */
static void fire_due(void)
{
    int64_t now = now_ns();
    while (R.flen && R.fifo[R.fhead].due <= now) {
        struct pair *p = R.fifo[R.fhead].p;
        R.fhead = (R.fhead + 1) % R.fcap;
        R.flen--;
        p->timers--;
        if (!p->dead)
            pair_flush(p);
    }
}

static void print_stats(void)
{
    uint64_t n = 0;
    for (int b = 0; b < 32; b++)
        n += R.late_hist[b];
    /* p99 lateness: upper edge of the bucket that holds it */
    uint64_t want = n - n / 100, acc = 0;
    double p99 = 0;
    for (int b = 0; b < 32 && n; b++) {
        acc += R.late_hist[b];
        if (acc >= want) {
            p99 = (double)(2u << b);
            break;
        }
    }
    fprintf(stderr,
            "{\"relay\":{\"delay_us\":%.0f,\"connections\":%" PRIu64 ",\"aborted\":%" PRIu64 ",\"chunks\":%" PRIu64
            ",\"bytes_to_upstream\":%" PRIu64 ",\"bytes_to_client\":%" PRIu64
            ",\"late_mean_us\":%.1f,\"late_p99_us_below\":%.0f,\"late_max_us\":%.0f}}\n",
            (double)R.delay_ns / 1000.0, R.conns, R.aborts, R.chunks, R.bytes[0], R.bytes[1],
            n ? R.late_sum_us / (double)n : 0, p99, R.late_max_us);
}

static void parse_addr(const char *spec, struct sockaddr_in *a)
{
    char host[64];
    const char *colon = strrchr(spec, ':');
    if (colon == NULL || (size_t)(colon - spec) >= sizeof host)
        die("%s: want host:port", spec);
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = 0;
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
        die("%s: IPv4 address wanted", spec);
}

int main(int argc, char **argv)
{
    const char *listen_spec = NULL, *to_spec = NULL;
    double delay_us = -1, max_kib = 4096;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            die("usage: relay --listen HOST:PORT --to HOST:PORT --delay-us N [--max-queued-kib N]");
        const char *a = argv[i], *v = argv[++i];
        if (!strcmp(a, "--listen"))
            listen_spec = v;
        else if (!strcmp(a, "--to"))
            to_spec = v;
        else if (!strcmp(a, "--delay-us"))
            delay_us = atof(v);
        else if (!strcmp(a, "--max-queued-kib"))
            max_kib = atof(v);
        else
            die("unknown option %s", a);
    }
    if (listen_spec == NULL || to_spec == NULL || delay_us < 0 || max_kib < 64)
        die("usage: relay --listen HOST:PORT --to HOST:PORT --delay-us N [--max-queued-kib N]");
    R.delay_ns = (int64_t)(delay_us * 1000.0);
    R.max_queued = (size_t)(max_kib * 1024.0);
    parse_addr(to_spec, &R.to);
    struct sockaddr_in la;
    parse_addr(listen_spec, &la);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* The kernel may fire a timer up to its slack late (50 us by default); ask for
     * less, since the delay is the point of this program. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    R.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(R.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (R.lfd < 0 || bind(R.lfd, (struct sockaddr *)&la, sizeof la) != 0 || listen(R.lfd, 4096) != 0)
        die("listen %s: %s", listen_spec, strerror(errno));
    R.ep = epoll_create1(EPOLL_CLOEXEC);
    R.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (R.ep < 0 || R.tfd < 0)
        die("epoll/timerfd: %s", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listen_tag};
    epoll_ctl(R.ep, EPOLL_CTL_ADD, R.lfd, &ev);
    ev.data.ptr = &timer_tag;
    epoll_ctl(R.ep, EPOLL_CTL_ADD, R.tfd, &ev);

    struct epoll_event evs[256];
    while (!stop_flag) {
        int n = epoll_wait(R.ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            void *ptr = evs[i].data.ptr;
            if (ptr == &listen_tag)
                accept_all();
            else if (ptr == &timer_tag) {
                uint64_t expirations;
                if (read(R.tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
                    die("timerfd read: %s", strerror(errno));
                R.armed = 0; /* fired: set it again below */
            } else
                side_event(ptr, evs[i].events);
        }
        fire_due();
        timer_arm();
        pairs_reap();
    }
    print_stats();
    return 0;
}
