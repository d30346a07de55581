/* loadgen.c — boxoffice's own load generator (bench/run.sh). One thread, epoll,
 * raw HTTP/1.1 keep-alive over loopback, no pipelining: one request in flight per
 * connection. Four modes:
 *
 *   rate  open-loop, paced: R requests per second for D seconds over C connections;
 *         each request's latency counts from the moment it was due (a request that
 *         waits for a free connection is late, not forgotten: no coordinated omission).
 *         Headers rotate over the lines of --hdrs (tab-separated header lines).
 *   flow  the flash crowd of S4: N users arrive evenly over S seconds; each issues a
 *         queue token, polls per pollAfterMs until ACTIVE, lists the dates, fetches a
 *         schedule's seat map, holds a random free seat (another one on 409), pays.
 *         Requests go to whichever connection is free, over every --target.
 *         --cpu-pids P,..: CPU used during the crowd by those processes and their
 *         descendants, by the generator and by the whole machine ("cpu" in the JSON).
 *   issue the million of S5 (and token set-up for S1/S2): issues queue tokens for N
 *         distinct users, closed loop over C connections; at each checkpoint it waits
 *         for the in-flight requests, reads the server's VmRSS (--pid) and probes the
 *         status of the last token issued (a token at the back of the line).
 *   probe fresh-connection probes (/healthz, queue status) at a fixed rate beside a
 *         paced booking load (seat map, hold, pay), every request logged with its
 *         times and status: what clients see while a dependency is frozen.
 *
 * Latencies go into log-linear histograms (~3 % resolution). Results: one JSON
 * object on stdout; progress on stderr. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BENCH_PROG "loadgen"
#include "bench_fail.h"

/* ---------------------------------------------------------------- utilities */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* ---------------------------------------------------------------- CPU accounting */

/* CPU seconds used so far by the processes rooted at pids (each with every live
 * descendant, so PostgreSQL's postmaster brings its backends; cutime/cstime count
 * children already reaped, so a backend that ended in between is not lost), by this
 * process, and by the whole machine (busy jiffies of /proc/stat: every process of
 * everybody, plus interrupts). The difference of two samples is the CPU spent in
 * between. */
struct cpu_sample {
    double procs_s, self_s, machine_s;
    int nprocs;
};

#define CPU_MAX_ROOTS 16

static int cpu_roots[CPU_MAX_ROOTS], cpu_nroots;

static void cpu_parse_pids(const char *spec)
{
    char *s = strdup(spec), *save = NULL;
    for (char *t = strtok_r(s, ",", &save); t && cpu_nroots < CPU_MAX_ROOTS; t = strtok_r(NULL, ",", &save))
        if (atoi(t) > 0)
            cpu_roots[cpu_nroots++] = atoi(t);
    free(s);
}

static void cpu_sample(struct cpu_sample *cs)
{
    double tck = (double)sysconf(_SC_CLK_TCK);
    memset(cs, 0, sizeof *cs);
    /* every process: pid, ppid, utime + stime + cutime + cstime */
    size_t cap = 1024, n = 0;
    int *pid = xmalloc(cap * sizeof(int)), *ppid = xmalloc(cap * sizeof(int));
    double *t = xmalloc(cap * sizeof(double));
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], buf[1024];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        char *rp = strrchr(buf, ')'); /* the command name may hold spaces */
        if (rp == NULL)
            continue;
        int pp = 0;
        unsigned long long ut = 0, st = 0;
        long long cut = 0, cst = 0;
        /* fields after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
         * cutime cstime */
        if (sscanf(rp + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld", &pp, &ut, &st, &cut,
                   &cst) != 5)
            continue;
        if (n == cap) {
            cap *= 2;
            pid = xrealloc(pid, cap * sizeof(int));
            ppid = xrealloc(ppid, cap * sizeof(int));
            t = xrealloc(t, cap * sizeof(double));
        }
        pid[n] = atoi(e->d_name);
        ppid[n] = pp;
        t[n] = (double)(ut + st + (unsigned long long)cut + (unsigned long long)cst) / tck;
        n++;
    }
    if (d)
        closedir(d);
    /* the roots' trees: mark, then repeat until no new descendant is found */
    char *in = xcalloc(n, 1);
    for (size_t i = 0; i < n; i++)
        for (int r = 0; r < cpu_nroots; r++)
            if (pid[i] == cpu_roots[r])
                in[i] = 1;
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = 0; i < n; i++) {
            if (in[i])
                continue;
            for (size_t j = 0; j < n; j++)
                if (in[j] && pid[j] == ppid[i]) {
                    in[i] = 1;
                    changed = 1;
                    break;
                }
        }
    }
    for (size_t i = 0; i < n; i++)
        if (in[i]) {
            cs->procs_s += t[i];
            cs->nprocs++;
        }
    free(in);
    free(pid);
    free(ppid);
    free(t);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    cs->self_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                 (double)ru.ru_stime.tv_usec / 1e6;
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    if (f) {
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                   &v[7]) != 8)
            memset(v, 0, sizeof v);
        fclose(f);
    }
    /* user nice system idle iowait irq softirq steal: busy = all but idle, iowait, steal */
    cs->machine_s = (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / tck;
}

/* JSON of the CPU spent between two samples over wall seconds. */
static void cpu_json(FILE *f, const struct cpu_sample *a, const struct cpu_sample *b, double wall)
{
    fprintf(f,
            "{\"window_s\":%.3f,\"procs_s\":%.3f,\"generator_s\":%.3f,\"total_s\":%.3f,\"machine_busy_s\":%.3f,"
            "\"nprocs\":%d,\"ncpu\":%ld}",
            wall, b->procs_s - a->procs_s, b->self_s - a->self_s, (b->procs_s - a->procs_s) + (b->self_s - a->self_s),
            b->machine_s - a->machine_s, b->nprocs, sysconf(_SC_NPROCESSORS_ONLN));
}

/* ---------------------------------------------------------------- histogram */

#define HB_SUB 32
#define HB_N (64 + 40 * HB_SUB)

struct hist {
    uint64_t b[HB_N];
    uint64_t n;
    double sum_us, max_us;
};

static int hist_idx(uint64_t v)
{
    if (v < 64)
        return (int)v;
    int k = 63 - __builtin_clzll(v); /* >= 6 */
    int sub = (int)((v >> (k - 5)) & 31);
    int i = 64 + (k - 6) * HB_SUB + sub;
    return i < HB_N ? i : HB_N - 1;
}

static double hist_val(int i)
{
    if (i < 64)
        return i;
    int k = (i - 64) / HB_SUB + 6, sub = (i - 64) % HB_SUB;
    double lo = (double)((uint64_t)(32 + sub) << (k - 5)), w = (double)(1ULL << (k - 5));
    return lo + w / 2;
}

static void hist_add(struct hist *h, double seconds)
{
    double us = seconds * 1e6;
    if (us < 0)
        us = 0;
    h->b[hist_idx((uint64_t)us)]++;
    h->n++;
    h->sum_us += us;
    if (us > h->max_us)
        h->max_us = us;
}

static double hist_pct(const struct hist *h, double p)
{
    if (h->n == 0)
        return 0;
    uint64_t want = (uint64_t)ceil(p / 100.0 * (double)h->n), acc = 0;
    if (want == 0)
        want = 1;
    for (int i = 0; i < HB_N; i++) {
        acc += h->b[i];
        if (acc >= want)
            return hist_val(i) < h->max_us ? hist_val(i) : h->max_us;
    }
    return h->max_us;
}

/* Latencies in milliseconds, JSON fields. */
static void hist_json(FILE *f, const struct hist *h)
{
    fprintf(f,
            "{\"n\":%llu,\"mean_ms\":%.3f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%"
            ".3f}",
            (unsigned long long)h->n, h->n ? h->sum_us / (double)h->n / 1000 : 0, hist_pct(h, 50) / 1000,
            hist_pct(h, 90) / 1000, hist_pct(h, 99) / 1000, hist_pct(h, 99.9) / 1000, h->max_us / 1000);
}

/* ---------------------------------------------------------------- tokens file */

/* "userId accessToken" per line (bench/seed.c --tokens) or, for --hdrs, one
 * tab-separated header block per line. Lines point into one buffer. */
struct lines {
    char *buf;
    char **line;
    size_t n;
};

static void lines_load(struct lines *l, const char *path, size_t skip, size_t want)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        die("%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    l->buf = xmalloc((size_t)sz + 1);
    if (fread(l->buf, 1, (size_t)sz, f) != (size_t)sz)
        die("%s: short read", path);
    fclose(f);
    l->buf[sz] = 0;
    size_t cap = 1024, n = 0, idx = 0;
    l->line = xmalloc(cap * sizeof(char *));
    for (char *p = l->buf; *p;) {
        char *e = strchr(p, '\n');
        if (e)
            *e = 0;
        if (*p && idx++ >= skip) {
            if (want && n == want)
                break;
            if (n == cap)
                l->line = xrealloc(l->line, (cap *= 2) * sizeof(char *));
            l->line[n++] = p;
        }
        if (!e)
            break;
        p = e + 1;
    }
    l->n = n;
    if (want && n < want)
        die("%s: %zu lines after skipping %zu, %zu wanted", path, n, skip, want);
}

/* The access token of a "userId token" line. */
static const char *line_token(const char *line)
{
    const char *sp = strchr(line, ' ');
    return sp ? sp + 1 : line;
}

/* The header sets of a --hdrs file (one line each, as `issue --save` writes them),
 * each turned into CRLF-separated header lines ready for build_req. */
static char **hdrs_load(struct lines *l, const char *path)
{
    lines_load(l, path, 0, 0);
    char **out = xmalloc((l->n ? l->n : 1) * sizeof(char *));
    for (size_t i = 0; i < l->n; i++) {
        /* tab-separated fields; those without a colon (index, status written by
         * `issue --save`) are not headers */
        size_t len = strlen(l->line[i]);
        char *s = xmalloc(len * 2 + 1), *o = s, *save = NULL;
        for (char *f = strtok_r(l->line[i], "\t", &save); f; f = strtok_r(NULL, "\t", &save)) {
            if (strchr(f, ':') == NULL)
                continue;
            if (o != s) {
                *o++ = '\r';
                *o++ = '\n';
            }
            size_t fl = strlen(f);
            memcpy(o, f, fl);
            o += fl;
        }
        *o = 0;
        out[i] = s;
    }
    return out;
}

/* ---------------------------------------------------------------- JSON bits */

static int json_int(const char *body, const char *key, long long *v)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(body, pat);
    if (p == NULL)
        return -1;
    *v = strtoll(p + strlen(pat), NULL, 10);
    return 0;
}

static int json_str(const char *body, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(body, pat);
    if (p == NULL)
        return -1;
    p += strlen(pat);
    size_t i = 0;
    while (p[i] && p[i] != '"' && i + 1 < cap) {
        out[i] = p[i];
        i++;
    }
    out[i] = 0;
    return 0;
}

/* ---------------------------------------------------------------- connections */

struct target {
    struct sockaddr_in addr;
    char hostport[64];
};

enum cstate { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY };

struct conn {
    int fd, target;
    enum cstate st;
    char *w;
    size_t wlen, woff, wcap;
    char *r;
    size_t rlen, rcap;
    uint32_t owner; /* user / slot that sent the request */
    double t_due;   /* latency origin */
    double t_sent;
    int want_out;
    int retried;
};

static int g_ep;
static struct target *g_tg;
static int g_ntg;
static struct conn *g_conn;
static int g_nconn;
static int *g_free; /* stack of idle connection indexes */
static int g_nfree;
static uint64_t g_conn_errors, g_reconnects;

static void parse_targets(const char *spec)
{
    char *s = strdup(spec), *save = NULL;
    g_ntg = 0;
    g_tg = xcalloc(16, sizeof *g_tg);
    for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (g_ntg == 16)
            die("too many targets");
        char *colon = strrchr(t, ':');
        if (colon == NULL)
            die("target %s: want host:port", t);
        *colon = 0;
        struct target *g = &g_tg[g_ntg++];
        g->addr.sin_family = AF_INET;
        g->addr.sin_port = htons((uint16_t)atoi(colon + 1));
        if (inet_pton(AF_INET, t, &g->addr.sin_addr) != 1)
            die("target %s: IPv4 address wanted", t);
        snprintf(g->hostport, sizeof g->hostport, "%s:%s", t, colon + 1);
    }
    free(s);
    if (g_ntg == 0)
        die("no target");
}

static void ep_set(struct conn *c, int out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.u32 = (uint32_t)(c - g_conn)};
    if (epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        die("epoll_ctl: %s", strerror(errno));
    c->want_out = out;
}

static void conn_open(struct conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = connect(c->fd, (struct sockaddr *)&g_tg[c->target].addr, sizeof g_tg[c->target].addr);
    if (rc != 0 && errno != EINPROGRESS)
        die("connect %s: %s", g_tg[c->target].hostport, strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)(c - g_conn)};
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        die("epoll_ctl add: %s", strerror(errno));
    c->want_out = 1;
    c->st = C_CONNECTING;
    c->rlen = 0;
}

static void conns_init(int per_target)
{
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    g_nconn = per_target * g_ntg;
    g_conn = xcalloc((size_t)g_nconn, sizeof *g_conn);
    g_free = xmalloc((size_t)g_nconn * sizeof(int));
    g_nfree = 0;
    for (int i = 0; i < g_nconn; i++) {
        struct conn *c = &g_conn[i];
        c->target = i % g_ntg;
        c->wcap = 4096;
        c->w = xmalloc(c->wcap);
        c->rcap = 16384;
        c->r = xmalloc(c->rcap);
        conn_open(c);
    }
}

/* Queues the request text on c and writes what the socket takes. */
static void conn_send(struct conn *c, uint32_t owner, double t_due, const char *req, size_t len)
{
    if (len > c->wcap)
        c->w = xrealloc(c->w, c->wcap = len);
    memcpy(c->w, req, len);
    c->wlen = len;
    c->woff = 0;
    c->owner = owner;
    c->t_due = t_due;
    c->t_sent = now_s();
    c->st = C_BUSY;
    c->rlen = 0;
    ssize_t n = send(c->fd, c->w, c->wlen, MSG_NOSIGNAL);
    if (n > 0)
        c->woff = (size_t)n;
    if (c->woff < c->wlen && !c->want_out)
        ep_set(c, 1);
}

/* A finished response: status, body (NUL-terminated, inside c->r). */
typedef void (*on_response_fn)(struct conn *c, int status, char *body, size_t blen);
/* A request lost to a broken connection (after one retry). */
typedef void (*on_fail_fn)(struct conn *c);
typedef void (*on_idle_fn)(struct conn *c);

static on_response_fn g_on_response;
static on_fail_fn g_on_fail;
static on_idle_fn g_on_idle;

static void conn_broken(struct conn *c)
{
    int was_busy = c->st == C_BUSY, idx = (int)(c - g_conn);
    if (c->st == C_IDLE) /* closed by the server while parked: leave the free stack */
        for (int i = 0; i < g_nfree; i++)
            if (g_free[i] == idx) {
                g_free[i] = g_free[--g_nfree];
                break;
            }
    epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (was_busy)
        g_conn_errors++;
    g_reconnects++;
    conn_open(c); /* keeps c->w, c->owner, c->t_due */
    if (was_busy && !c->retried) {
        c->retried = 1;
        c->woff = 0;
        c->t_sent = -1; /* resend once connected (see conn_event) */
        return;
    }
    c->retried = 0;
    c->t_sent = 0;
    if (was_busy)
        g_on_fail(c);
}

/* Parses c->r; returns 1 when a whole response is there. */
static int conn_try_response(struct conn *c)
{
    if (c->rlen + 1 > c->rcap)
        c->r = xrealloc(c->r, c->rcap *= 2);
    c->r[c->rlen] = 0;
    char *hend = strstr(c->r, "\r\n\r\n");
    if (hend == NULL)
        return 0;
    size_t hlen = (size_t)(hend - c->r) + 4;
    long long cl = 0;
    for (char *p = c->r; p < hend; p++) {
        if ((*p == '\n') && strncasecmp(p + 1, "content-length:", 15) == 0) {
            cl = strtoll(p + 16, NULL, 10);
            break;
        }
    }
    size_t total = hlen + (size_t)cl;
    if (c->rlen < total) {
        if (total + 1 > c->rcap) {
            while (total + 1 > c->rcap)
                c->rcap *= 2;
            c->r = xrealloc(c->r, c->rcap);
        }
        return 0;
    }
    int status = atoi(c->r + 9);
    c->r[total] = 0;
    c->st = C_IDLE;
    c->retried = 0;
    g_on_response(c, status, c->r + hlen, (size_t)cl);
    return 1;
}

static void conn_event(struct conn *c, uint32_t ev)
{
    if (c->st == C_CONNECTING) {
        if (ev & (EPOLLERR | EPOLLHUP)) {
            die("cannot connect to %s", g_tg[c->target].hostport);
        }
        if (ev & EPOLLOUT) {
            int err = 0;
            socklen_t el = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
            if (err)
                die("connect %s: %s", g_tg[c->target].hostport, strerror(err));
            ep_set(c, 0);
            if (c->t_sent < 0) { /* resend the request that a broken connection lost */
                c->st = C_BUSY;
                c->t_sent = now_s();
                ssize_t n = send(c->fd, c->w, c->wlen, MSG_NOSIGNAL);
                if (n > 0)
                    c->woff = (size_t)n;
                if (c->woff < c->wlen)
                    ep_set(c, 1);
            } else {
                c->st = C_IDLE;
                g_on_idle(c);
            }
        }
        return;
    }
    if ((ev & EPOLLOUT) && c->st == C_BUSY && c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->w + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n > 0)
            c->woff += (size_t)n;
        else if (n < 0 && errno != EAGAIN) {
            conn_broken(c);
            return;
        }
        if (c->woff >= c->wlen)
            ep_set(c, 0);
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (;;) {
            if (c->rcap - c->rlen < 4096)
                c->r = xrealloc(c->r, c->rcap *= 2);
            ssize_t n = recv(c->fd, c->r + c->rlen, c->rcap - c->rlen - 1, 0);
            if (n > 0) {
                c->rlen += (size_t)n;
                if (c->st == C_BUSY && conn_try_response(c))
                    return;
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return;
            conn_broken(c); /* EOF or error */
            return;
        }
    }
}

/* Runs the loop until *stop or deadline; tick() is called every round. */
static void loop_once(int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(g_ep, evs, 256, timeout_ms);
    for (int i = 0; i < n; i++)
        conn_event(&g_conn[evs[i].data.u32], evs[i].events);
}

static int g_idle_ready; /* connections connected at least once */
static size_t build_req(char *out, size_t cap, const char *method, const char *host, const char *path, const char *hdr1,
                        const char *hdr2, const char *hdr3, const char *body)
{
    size_t bl = body ? strlen(body) : 0;
    int n = snprintf(out, cap, "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%s%s%s", method, path, host, hdr1 ? hdr1 : "",
                     hdr1 ? "\r\n" : "", hdr2 ? hdr2 : "", hdr2 ? "\r\n" : "", hdr3 ? hdr3 : "", hdr3 ? "\r\n" : "");
    if (body)
        n += snprintf(out + n, cap - (size_t)n, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", bl,
                      body);
    else
        n += snprintf(out + n, cap - (size_t)n, "\r\n");
    if ((size_t)n >= cap)
        die("request too long");
    return (size_t)n;
}

/* ---------------------------------------------------------------- options */

struct opts {
    const char *mode, *targets, *path, *method, *hdrs, *tokens, *timeline, *checkpoints, *save, *body, *cpu_pids;
    const char *schedules, *log;
    int conns, concert, pid, probe_n;
    double rate, duration, warmup, arrival, max_time, probe_rate, book_rate, drain;
    long users, skip, seats_total;
};

static struct opts O = {.method = "GET", .conns = 64, .probe_n = 2000, .warmup = 1, .max_time = 120, .drain = 15};

static void parse_opts(int argc, char **argv)
{
    if (argc < 2)
        die("usage: loadgen rate|flow|issue --target host:port[,host:port] ...");
    O.mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            die("option %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--target") || !strcmp(a, "--targets"))
            O.targets = v;
        else if (!strcmp(a, "--path"))
            O.path = v;
        else if (!strcmp(a, "--method"))
            O.method = v;
        else if (!strcmp(a, "--body"))
            O.body = v;
        else if (!strcmp(a, "--hdrs"))
            O.hdrs = v;
        else if (!strcmp(a, "--tokens"))
            O.tokens = v;
        else if (!strcmp(a, "--timeline"))
            O.timeline = v;
        else if (!strcmp(a, "--checkpoints"))
            O.checkpoints = v;
        else if (!strcmp(a, "--save"))
            O.save = v;
        else if (!strcmp(a, "--conns"))
            O.conns = atoi(v);
        else if (!strcmp(a, "--concert"))
            O.concert = atoi(v);
        else if (!strcmp(a, "--pid"))
            O.pid = atoi(v);
        else if (!strcmp(a, "--probe-n"))
            O.probe_n = atoi(v);
        else if (!strcmp(a, "--rate"))
            O.rate = atof(v);
        else if (!strcmp(a, "--duration"))
            O.duration = atof(v);
        else if (!strcmp(a, "--warmup"))
            O.warmup = atof(v);
        else if (!strcmp(a, "--arrival"))
            O.arrival = atof(v);
        else if (!strcmp(a, "--max-time"))
            O.max_time = atof(v);
        else if (!strcmp(a, "--users"))
            O.users = atol(v);
        else if (!strcmp(a, "--skip"))
            O.skip = atol(v);
        else if (!strcmp(a, "--seats-total"))
            O.seats_total = atol(v);
        else if (!strcmp(a, "--cpu-pids"))
            O.cpu_pids = v;
        else if (!strcmp(a, "--schedules"))
            O.schedules = v;
        else if (!strcmp(a, "--log"))
            O.log = v;
        else if (!strcmp(a, "--probe-rate"))
            O.probe_rate = atof(v);
        else if (!strcmp(a, "--book-rate"))
            O.book_rate = atof(v);
        else if (!strcmp(a, "--drain"))
            O.drain = atof(v);
        else
            die("unknown option %s", a);
    }
    if (O.targets == NULL)
        die("--target is required");
    parse_targets(O.targets);
}

/* ================================================================ rate mode */

static struct lines R_hdr;
static char **R_hdr_lines; /* tab → CRLF converted */
static double R_t0, R_end;
static struct hist R_h;
static uint64_t R_sent, R_done, R_ok, R_err, R_counted, R_in_window;
static double *R_pend; /* due times waiting for a connection (FIFO ring) */
static size_t R_pcap, R_phead, R_plen;

static void rate_send(struct conn *c, double due)
{
    char req[8192];
    const char *h = R_hdr.n ? R_hdr_lines[R_sent % R_hdr.n] : NULL;
    size_t len = build_req(req, sizeof req, O.method, g_tg[c->target].hostport, O.path, h, NULL, NULL, O.body);
    R_sent++;
    conn_send(c, 0, due, req, len);
}

static void rate_idle(struct conn *c)
{
    if (R_plen > 0) {
        double due = R_pend[R_phead];
        R_phead = (R_phead + 1) % R_pcap;
        R_plen--;
        rate_send(c, due);
        return;
    }
    g_free[g_nfree++] = (int)(c - g_conn);
    g_idle_ready++;
}

static void rate_response(struct conn *c, int status, char *body, size_t blen)
{
    double t = now_s();
    R_done++;
    if (t >= R_t0 + O.warmup && t < R_end)
        R_in_window++; /* throughput: answers received inside the window */
    if (c->t_due >= R_t0 + O.warmup && c->t_due < R_end) {
        R_counted++;
        hist_add(&R_h, t - c->t_due);
        if (status >= 200 && status < 300)
            R_ok++;
        else
            R_err++;
    }
    rate_idle(c);
}

static void rate_fail(struct conn *c)
{
    R_err++;
}

static int mode_rate(void)
{
    if (O.rate <= 0 || O.duration <= 0 || O.path == NULL)
        die("rate mode needs --rate, --duration and --path");
    if (O.hdrs)
        R_hdr_lines = hdrs_load(&R_hdr, O.hdrs);
    g_on_response = rate_response;
    g_on_fail = rate_fail;
    g_on_idle = rate_idle;
    conns_init(O.conns);
    double dl = now_s() + 5;
    while (g_idle_ready < g_nconn && now_s() < dl)
        loop_once(10);
    R_pcap = (size_t)(O.rate * (O.duration + O.warmup)) + 16;
    R_pend = xmalloc(R_pcap * sizeof(double));
    R_t0 = now_s();
    R_end = R_t0 + O.warmup + O.duration;
    uint64_t k = 0;
    double interval = 1.0 / O.rate;
    for (;;) {
        double t = now_s();
        if (t >= R_end)
            break;
        while (R_t0 + (double)k * interval <= t) {
            double due = R_t0 + (double)k * interval;
            k++;
            if (g_nfree > 0)
                rate_send(&g_conn[g_free[--g_nfree]], due);
            else if (R_plen < R_pcap) {
                R_pend[(R_phead + R_plen) % R_pcap] = due;
                R_plen++;
            }
        }
        double next = R_t0 + (double)k * interval - now_s();
        loop_once(next > 0.001 ? 1 : 0);
    }
    /* drain: requests due in the window still count, up to 3 s */
    double drain = now_s() + 3;
    while ((R_plen > 0 || g_nfree < g_nconn) && now_s() < drain)
        loop_once(5);
    uint64_t lost = R_plen + (uint64_t)(g_nconn - g_nfree);
    double win = O.duration;
    printf("{\"mode\":\"rate\",\"offered_rps\":%.1f,\"achieved_rps\":%.1f,\"ok\":%llu,\"errors\":%llu,"
           "\"unfinished\":%llu,\"conn_errors\":%llu,\"latency\":",
           O.rate, (double)R_in_window / win, (unsigned long long)R_ok, (unsigned long long)R_err,
           (unsigned long long)lost, (unsigned long long)g_conn_errors);
    hist_json(stdout, &R_h);
    printf("}\n");
    return 0;
}

/* ================================================================ flow mode (S4) */

enum step { ST_ISSUE, ST_POLL, ST_DATES, ST_SEATS, ST_HOLD, ST_PAY, ST_LEAVE, ST_N };
static const char *step_name[ST_N] = {"issue", "poll", "dates", "seats", "hold", "pay", "leave"};

enum ustate { U_PENDING, U_TIMER, U_READY, U_INFLIGHT, U_DONE };

struct user {
    const char *auth;
    char q[40];
    uint8_t st, step, tries;
    int64_t sched, resv;
    int32_t *cand;
    int32_t ncand;
    double t_ready;
    float t_active; /* s after t0 the user was first seen ACTIVE; 0 before */
    float t_lastw;  /* s after t0 of the user's last WAITING answer */
};

struct tev {
    double due;
    uint32_t u;
};

static struct user *F_u;
static long F_n;
static struct tev *F_heap;
static size_t F_hn, F_hcap;
static uint32_t *F_rq;
static size_t F_rqh, F_rqn, F_rqcap;
static struct hist F_h[ST_N];
static uint64_t F_cnt[ST_N], F_err[ST_N];
static uint64_t F_paid, F_refused, F_soldout_left, F_expired, F_failed, F_done, F_admitted, F_limit;
static double F_t0, F_first_paid, F_sellout, F_last_paid;
static uint64_t F_st429, F_st5xx;
/* The estimated waits the users were told while WAITING (at issue and at each
 * poll), judged at the end against when each was first seen ACTIVE. */
struct eta_obs {
    uint32_t u;
    uint8_t at_issue;
    float t, eta; /* s after t0; estimatedWaitSeconds */
};
static struct eta_obs *F_obs;
static size_t F_nobs, F_obs_cap;
#define ETA_SPLIT_S 10.0   /* estimates given before and after the sale has run this long */
#define ETA_MIN_REAL_S 1.0 /* real waits shorter are below the polls' resolution */
/* per-0.5 s timeline */
#define TL_BIN 0.5
#define TL_MAX 2000
static struct {
    uint32_t arrivals, paid, refused, polls, reqs;
} F_tl[TL_MAX];

static void heap_push(double due, uint32_t u)
{
    if (F_hn == F_hcap)
        F_heap = xrealloc(F_heap, (F_hcap = F_hcap ? F_hcap * 2 : 1024) * sizeof *F_heap);
    size_t i = F_hn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (F_heap[p].due <= due)
            break;
        F_heap[i] = F_heap[p];
        i = p;
    }
    F_heap[i] = (struct tev){due, u};
}

static struct tev heap_pop(void)
{
    struct tev top = F_heap[0], last = F_heap[--F_hn];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        double md = last.due;
        if (l < F_hn && F_heap[l].due < md) {
            m = l;
            md = F_heap[l].due;
        }
        if (r < F_hn && F_heap[r].due < md)
            m = r;
        if (m == i)
            break;
        F_heap[i] = F_heap[m];
        i = m;
    }
    if (F_hn)
        F_heap[i] = last;
    return top;
}

static int tl_bin(double t)
{
    int b = (int)((t - F_t0) / TL_BIN);
    return b < 0 ? 0 : b >= TL_MAX ? TL_MAX - 1 : b;
}

static void user_ready(uint32_t u, int step)
{
    struct user *x = &F_u[u];
    x->step = (uint8_t)step;
    x->st = U_READY;
    x->t_ready = now_s();
    F_rq[(F_rqh + F_rqn) % F_rqcap] = u;
    F_rqn++;
}

static void user_later(uint32_t u, int step, double delay)
{
    struct user *x = &F_u[u];
    x->step = (uint8_t)step;
    x->st = U_TIMER;
    heap_push(now_s() + delay, u);
}

static void user_done(uint32_t u)
{
    struct user *x = &F_u[u];
    x->st = U_DONE;
    free(x->cand);
    x->cand = NULL;
    x->ncand = 0;
    F_done++;
}

static void flow_send(struct conn *c, uint32_t u)
{
    struct user *x = &F_u[u];
    char req[1024], auth[160], qt[80], extra[96], path[128], body[128];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", x->auth);
    snprintf(qt, sizeof qt, "X-Queue-Token: %s", x->q);
    const char *host = g_tg[c->target].hostport;
    size_t len = 0;
    switch (x->step) {
    case ST_ISSUE:
        snprintf(path, sizeof path, "/api/v1/concerts/%d/queue/tokens", O.concert);
        len = build_req(req, sizeof req, "POST", host, path, auth, NULL, NULL, "");
        break;
    case ST_POLL:
        len = build_req(req, sizeof req, "GET", host, "/api/v1/queue/status", auth, qt, NULL, NULL);
        break;
    case ST_DATES:
        snprintf(path, sizeof path, "/api/v1/concerts/%d/schedules", O.concert);
        len = build_req(req, sizeof req, "GET", host, path, auth, qt, NULL, NULL);
        break;
    case ST_SEATS:
        snprintf(path, sizeof path, "/api/v1/schedules/%lld/seats?format=compact", (long long)x->sched);
        len = build_req(req, sizeof req, "GET", host, path, auth, qt, NULL, NULL);
        break;
    case ST_HOLD: {
        int32_t k = (int32_t)(rnd() % (uint64_t)x->ncand);
        int32_t seat = x->cand[k];
        x->cand[k] = x->cand[--x->ncand]; /* tried once */
        snprintf(body, sizeof body, "{\"scheduleId\":%lld,\"seatNo\":%d}", (long long)x->sched, seat);
        len = build_req(req, sizeof req, "POST", host, "/api/v1/reservations", auth, qt, NULL, body);
        break;
    }
    case ST_PAY:
        snprintf(extra, sizeof extra, "Idempotency-Key: pay-%lld", (long long)x->resv);
        snprintf(body, sizeof body, "{\"reservationId\":%lld}", (long long)x->resv);
        len = build_req(req, sizeof req, "POST", host, "/api/v1/payments", auth, qt, extra, body);
        break;
    case ST_LEAVE:
        len = build_req(req, sizeof req, "DELETE", host, "/api/v1/queue/tokens/current", auth, qt, NULL, NULL);
        break;
    }
    x->st = U_INFLIGHT;
    F_tl[tl_bin(now_s())].reqs++;
    conn_send(c, u, x->t_ready, req, len);
}

static int F_stopping;

static void flow_idle(struct conn *c)
{
    if (F_rqn > 0 && !F_stopping) {
        uint32_t u = F_rq[F_rqh];
        F_rqh = (F_rqh + 1) % F_rqcap;
        F_rqn--;
        flow_send(c, u);
        return;
    }
    g_free[g_nfree++] = (int)(c - g_conn);
    g_idle_ready++;
}

/* A queue answer (issue or poll): ACTIVE → dates; WAITING → poll later. The
 * estimate a WAITING answer gives is kept for the ETA error. */
static void flow_ticket(uint32_t u, char *body, int at_issue)
{
    struct user *x = &F_u[u];
    char st[16] = "";
    long long poll = 1000, eta = -1;
    json_str(body, "token", x->q, sizeof x->q);
    json_str(body, "status", st, sizeof st);
    json_int(body, "pollAfterMs", &poll);
    float t = (float)(now_s() - F_t0);
    if (strcmp(st, "ACTIVE") != 0 && json_int(body, "estimatedWaitSeconds", &eta) == 0 && eta >= 0) {
        if (F_nobs == F_obs_cap)
            F_obs = xrealloc(F_obs, (F_obs_cap = F_obs_cap ? F_obs_cap * 2 : 65536) * sizeof *F_obs);
        F_obs[F_nobs++] = (struct eta_obs){.u = u, .at_issue = (uint8_t)at_issue, .t = t, .eta = (float)eta};
        x->t_lastw = t;
    }
    if (strcmp(st, "ACTIVE") == 0) {
        if (x->t_active == 0)
            x->t_active = t > 0 ? t : 1e-6f;
        F_admitted++;
        user_ready(u, ST_DATES);
    } else
        user_later(u, ST_POLL, (double)poll / 1000.0);
}

static void flow_response(struct conn *c, int status, char *body, size_t blen)
{
    double t = now_s();
    uint32_t u = c->owner;
    struct user *x = &F_u[u];
    int step = x->step;
    hist_add(&F_h[step], t - c->t_due);
    F_cnt[step]++;
    if (status == 429)
        F_st429++;
    if (status >= 500)
        F_st5xx++;
    int ok = status >= 200 && status < 300;
    if (!ok && !(step == ST_HOLD && status == 409))
        F_err[step]++;
    switch (step) {
    case ST_ISSUE:
        if (ok) {
            flow_ticket(u, body, 1);
        } else
            user_later(u, ST_ISSUE, 1.0);
        break;
    case ST_POLL:
        F_tl[tl_bin(t)].polls++;
        if (ok)
            flow_ticket(u, body, 0);
        else if (status == 410) {
            F_expired++;
            user_done(u);
        } else
            user_later(u, ST_POLL, 1.0);
        break;
    case ST_DATES: {
        if (!ok) {
            F_failed++;
            user_done(u);
            break;
        }
        /* pick a random schedule among those with free seats */
        int64_t ids[256];
        int n = 0;
        for (char *p = strstr(body, "\"scheduleId\":"); p && n < 256; p = strstr(p + 1, "\"scheduleId\":")) {
            long long id = strtoll(p + 13, NULL, 10), av = 0;
            char *a = strstr(p, "\"availableSeats\":");
            if (a)
                av = strtoll(a + 17, NULL, 10);
            if (av > 0)
                ids[n++] = id;
        }
        if (n == 0) {
            F_soldout_left++;
            user_ready(u, ST_LEAVE);
            break;
        }
        x->sched = ids[rnd() % (uint64_t)n];
        user_ready(u, ST_SEATS);
        break;
    }
    case ST_SEATS: {
        if (!ok) {
            F_failed++;
            user_done(u);
            break;
        }
        /* compact form: "availability":"1101...", one character per seat number */
        int32_t cap = 64, n = 0;
        int32_t *cand = xmalloc((size_t)cap * sizeof(int32_t));
        const char *a = strstr(body, "\"availability\":\"");
        const char *f = a ? a + strlen("\"availability\":\"") : "";
        for (int32_t no = 1; f[no - 1] == '0' || f[no - 1] == '1'; no++)
            if (f[no - 1] == '1') {
                if (n == cap)
                    cand = xrealloc(cand, (size_t)(cap *= 2) * sizeof(int32_t));
                cand[n++] = no;
            }
        free(x->cand);
        x->cand = cand;
        x->ncand = n;
        if (n == 0)
            user_ready(u, ST_DATES);
        else
            user_ready(u, ST_HOLD);
        break;
    }
    case ST_HOLD:
        if (ok) {
            long long id = 0;
            json_int(body, "reservationId", &id);
            x->resv = id;
            user_ready(u, ST_PAY);
        } else if (status == 409 && strstr(body, "SEAT_UNAVAILABLE")) {
            F_refused++;
            F_tl[tl_bin(t)].refused++;
            user_ready(u, ST_SEATS); /* the seat went meanwhile: look at the map again */
        } else if (status == 409 && strstr(body, "SEAT_LIMIT")) {
            F_limit++;
            user_ready(u, ST_LEAVE);
        } else if (status == 429) {
            user_later(u, ST_HOLD, 1.0);
            if (x->ncand == 0)
                x->step = ST_DATES;
        } else {
            F_failed++;
            user_ready(u, ST_LEAVE);
        }
        break;
    case ST_PAY:
        if (ok) {
            F_paid++;
            F_tl[tl_bin(t)].paid++;
            if (F_paid == 1)
                F_first_paid = t;
            F_last_paid = t;
            if (O.seats_total && F_paid == (uint64_t)O.seats_total)
                F_sellout = t;
        } else
            F_failed++;
        user_done(u);
        break;
    case ST_LEAVE:
        user_done(u);
        break;
    }
    flow_idle(c); /* the body is no longer needed: the connection takes the next user */
}

static void flow_fail(struct conn *c)
{
    uint32_t u = c->owner;
    F_err[F_u[u].step]++;
    F_failed++;
    user_done(u);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct_of(const double *v, size_t n, double q)
{
    if (n == 0)
        return -1;
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

/* One group of estimates as JSON: how many were judged (the user was later seen
 * ACTIVE and the real wait was at least ETA_MIN_REAL_S), how many were too short
 * to judge, how many users never got in, and p50/p90/p99 of the relative error
 * |eta - real| / real (percent) and of the absolute error (s). The real wait is
 * known only to the poll interval: the admission came after the user's last
 * WAITING answer (lo) and before the ACTIVE one (real); "beyond resolution" is how
 * far eta lies outside [lo, real], over real. The group: at_issue
 * (1: only the estimate at issue, 0: every estimate), given before or after
 * ETA_SPLIT_S (after: 1). */
static void eta_json(FILE *f, const char *name, int at_issue_only, int after)
{
    double *rel = xmalloc((F_nobs + 1) * sizeof *rel), *abs_s = xmalloc((F_nobs + 1) * sizeof *abs_s);
    double *beyond = xmalloc((F_nobs + 1) * sizeof *beyond);
    size_t n = 0, shorter = 0, never = 0;
    for (size_t i = 0; i < F_nobs; i++) {
        const struct eta_obs *o = &F_obs[i];
        if ((at_issue_only && !o->at_issue) || ((o->t >= ETA_SPLIT_S) != (after != 0)))
            continue;
        float ta = F_u[o->u].t_active;
        if (ta == 0) {
            never++;
            continue;
        }
        double real = (double)ta - (double)o->t;
        if (real < ETA_MIN_REAL_S) {
            shorter++;
            continue;
        }
        double lo = (double)F_u[o->u].t_lastw - (double)o->t, eta = (double)o->eta;
        abs_s[n] = fabs(eta - real);
        rel[n] = 100.0 * abs_s[n] / real;
        beyond[n] = 100.0 * (eta < lo ? lo - eta : eta > real ? eta - real : 0) / real;
        n++;
    }
    qsort(rel, n, sizeof *rel, cmp_double);
    qsort(abs_s, n, sizeof *abs_s, cmp_double);
    qsort(beyond, n, sizeof *beyond, cmp_double);
    fprintf(f,
            "\"%s\":{\"judged\":%zu,\"shorter_than_resolution\":%zu,\"never_admitted\":%zu,"
            "\"rel_err_pct\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f},"
            "\"abs_err_s\":{\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f},"
            "\"rel_err_beyond_resolution_pct\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f}}",
            name, n, shorter, never, pct_of(rel, n, 0.5), pct_of(rel, n, 0.9), pct_of(rel, n, 0.99),
            pct_of(abs_s, n, 0.5), pct_of(abs_s, n, 0.9), pct_of(abs_s, n, 0.99), pct_of(beyond, n, 0.5),
            pct_of(beyond, n, 0.9), pct_of(beyond, n, 0.99));
    free(beyond);
    free(rel);
    free(abs_s);
}

static int mode_flow(void)
{
    if (O.users <= 0 || O.tokens == NULL || O.concert <= 0 || O.arrival <= 0)
        die("flow mode needs --users, --tokens, --concert and --arrival");
    struct lines tk;
    lines_load(&tk, O.tokens, (size_t)O.skip, (size_t)O.users);
    F_n = O.users;
    F_u = xcalloc((size_t)F_n, sizeof *F_u);
    for (long i = 0; i < F_n; i++)
        F_u[i].auth = line_token(tk.line[i]);
    F_rqcap = (size_t)F_n + 1;
    F_rq = xmalloc(F_rqcap * sizeof(uint32_t));
    g_on_response = flow_response;
    g_on_fail = flow_fail;
    g_on_idle = flow_idle;
    conns_init(O.conns);
    double dl = now_s() + 5;
    while (g_idle_ready < g_nconn && now_s() < dl)
        loop_once(10);
    struct cpu_sample cpu0, cpu1;
    if (O.cpu_pids)
        cpu_parse_pids(O.cpu_pids);
    cpu_sample(&cpu0);
    F_t0 = now_s();
    long next_arrival = 0;
    double last_report = F_t0, arrival_end = F_t0 + O.arrival;
    for (;;) {
        double t = now_s();
        /* arrivals: user i at t0 + i * arrival / n */
        while (next_arrival < F_n && F_t0 + (double)next_arrival * O.arrival / (double)F_n <= t) {
            F_tl[tl_bin(t)].arrivals++;
            user_ready((uint32_t)next_arrival, ST_ISSUE);
            next_arrival++;
        }
        while (F_hn > 0 && F_heap[0].due <= t) {
            struct tev e = heap_pop();
            struct user *x = &F_u[e.u];
            x->st = U_READY;
            x->t_ready = t;
            F_rq[(F_rqh + F_rqn) % F_rqcap] = e.u;
            F_rqn++;
        }
        while (F_rqn > 0 && g_nfree > 0) {
            uint32_t u = F_rq[F_rqh];
            F_rqh = (F_rqh + 1) % F_rqcap;
            F_rqn--;
            flow_send(&g_conn[g_free[--g_nfree]], u);
        }
        if (F_done == (uint64_t)F_n)
            break;
        if (F_sellout > 0 && t >= F_sellout + 0.5 && t >= arrival_end)
            break;
        if (t - F_t0 > O.max_time)
            break;
        if (t - last_report >= 2) {
            last_report = t;
            fprintf(stderr, "  t=%5.1fs arrived %ld paid %llu refused %llu admitted %llu queued %zu timers %zu\n",
                    t - F_t0, next_arrival, (unsigned long long)F_paid, (unsigned long long)F_refused,
                    (unsigned long long)F_admitted, F_rqn, F_hn);
        }
        /* Arrivals due within the next millisecond are let in together: waiting
         * for each one exactly would spin this thread on a core the server needs
         * (at 10,000 users/s they are 0.1 ms apart); they are at most 1 ms late. */
        loop_once(1);
    }
    /* drain: answers to requests already sent still count (a payment in flight at
     * the stop is in the database: the verification compares against this count) */
    F_stopping = 1;
    double drain = now_s() + 10;
    while (g_nfree < g_nconn && now_s() < drain)
        loop_once(5);
    double t_end = now_s();
    cpu_sample(&cpu1);
    double sell_window = F_sellout > 0 ? F_sellout - F_first_paid : F_last_paid - F_first_paid;
    double sustained = sell_window > 0 ? (double)F_paid / sell_window : 0;
    /* peak over 1 s (two bins) */
    double peak = 0;
    int nb = tl_bin(t_end) + 1;
    for (int b = 0; b + 1 < nb; b++) {
        double r = (F_tl[b].paid + F_tl[b + 1].paid) / (2 * TL_BIN);
        if (r > peak)
            peak = r;
    }
    uint64_t waiting = 0;
    for (long i = 0; i < F_n; i++)
        if (F_u[i].st == U_TIMER && F_u[i].step == ST_POLL)
            waiting++;
    printf("{\"mode\":\"flow\",\"users\":%ld,\"arrival_s\":%.1f,\"arrived\":%ld,\"paid\":%llu,"
           "\"paid_per_s_sustained\":%.1f,\"paid_per_s_peak_1s\":%.1f,\"first_paid_s\":%.3f,\"sellout_s\":%.3f,"
           "\"last_paid_s\":%.3f,\"run_s\":%.3f,\"holds_refused\":%llu,\"seat_limit\":%llu,\"admitted\":%llu,"
           "\"left_sold_out\":%llu,\"expired\":%llu,\"failed\":%llu,\"still_waiting\":%llu,\"http_429\":%llu,"
           "\"unanswered_at_stop\":%d,"
           "\"http_5xx\":%llu,\"conn_errors\":%llu,\"steps\":{",
           F_n, O.arrival, next_arrival, (unsigned long long)F_paid, sustained, peak,
           F_first_paid > 0 ? F_first_paid - F_t0 : -1, F_sellout > 0 ? F_sellout - F_t0 : -1,
           F_last_paid > 0 ? F_last_paid - F_t0 : -1, t_end - F_t0, (unsigned long long)F_refused,
           (unsigned long long)F_limit, (unsigned long long)F_admitted, (unsigned long long)F_soldout_left,
           (unsigned long long)F_expired, (unsigned long long)F_failed, (unsigned long long)waiting,
           (unsigned long long)F_st429, g_nconn - g_nfree, (unsigned long long)F_st5xx,
           (unsigned long long)g_conn_errors);
    for (int s = 0; s < ST_N; s++) {
        printf("%s\"%s\":{\"count\":%llu,\"errors\":%llu,\"latency\":", s ? "," : "", step_name[s],
               (unsigned long long)F_cnt[s], (unsigned long long)F_err[s]);
        hist_json(stdout, &F_h[s]);
        printf("}");
    }
    if (getenv("LOADGEN_ETA_LOG")) { /* every estimate, for a closer look: t eta at_issue t_active (0: never) */
        FILE *f = fopen(getenv("LOADGEN_ETA_LOG"), "w");
        if (f == NULL)
            die("%s: %s", getenv("LOADGEN_ETA_LOG"), strerror(errno));
        for (size_t i = 0; i < F_nobs; i++)
            fprintf(f, "%u %.3f %.0f %d %.3f\n", F_obs[i].u, F_obs[i].t, F_obs[i].eta, F_obs[i].at_issue,
                    F_u[F_obs[i].u].t_active);
        fclose(f);
    }
    printf("},\"eta\":{\"split_s\":%.0f,\"min_real_s\":%.1f,\"estimates\":%zu,", ETA_SPLIT_S, ETA_MIN_REAL_S, F_nobs);
    eta_json(stdout, "issued_before", 1, 0);
    printf(",");
    eta_json(stdout, "issued_after", 1, 1);
    printf(",");
    eta_json(stdout, "given_before", 0, 0);
    printf(",");
    eta_json(stdout, "given_after", 0, 1);
    printf("},\"cpu\":");
    cpu_json(stdout, &cpu0, &cpu1, t_end - F_t0);
    printf("}\n");
    if (O.timeline) {
        FILE *f = fopen(O.timeline, "w");
        if (f == NULL)
            die("%s: %s", O.timeline, strerror(errno));
        fprintf(f, "# t_s arrivals_per_s paid_per_s refused_per_s polls_per_s requests_per_s\n");
        for (int b = 0; b < nb; b++)
            fprintf(f, "%.1f %.0f %.0f %.0f %.0f %.0f\n", b * TL_BIN, F_tl[b].arrivals / TL_BIN, F_tl[b].paid / TL_BIN,
                    F_tl[b].refused / TL_BIN, F_tl[b].polls / TL_BIN, F_tl[b].reqs / TL_BIN);
        fclose(f);
    }
    return 0;
}

/* ================================================================ issue mode (S5) */

static long I_next, I_done, I_created, I_other, I_limit;
static char I_last_q[40];
static long I_last_idx = -1;
static long I_want_idx = -1;
static struct lines I_tk;
static FILE *I_save;
static int I_probing;
static struct hist I_probe_h;
static long I_probe_left;
static double I_probe_t;
static char I_probe_auth[200], I_probe_q[40];
static long I_probe_bad;

static void issue_send(struct conn *c)
{
    char req[1024], auth[160], path[96];
    long i = I_next++;
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", line_token(I_tk.line[i]));
    snprintf(path, sizeof path, "/api/v1/concerts/%d/queue/tokens", O.concert);
    size_t len = build_req(req, sizeof req, "POST", g_tg[c->target].hostport, path, auth, NULL, NULL, "");
    conn_send(c, (uint32_t)i, now_s(), req, len);
}

static void probe_send(struct conn *c)
{
    char req[1024], auth[256], qt[80];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", I_probe_auth);
    snprintf(qt, sizeof qt, "X-Queue-Token: %s", I_probe_q);
    size_t len =
        build_req(req, sizeof req, "GET", g_tg[c->target].hostport, "/api/v1/queue/status", auth, qt, NULL, NULL);
    conn_send(c, UINT32_MAX, now_s(), req, len);
}

static void issue_idle(struct conn *c)
{
    if (!I_probing && I_next < I_limit) {
        issue_send(c);
        return;
    }
    g_free[g_nfree++] = (int)(c - g_conn);
    g_idle_ready++;
}

static void issue_response(struct conn *c, int status, char *body, size_t blen)
{
    if (c->owner == UINT32_MAX) { /* probe */
        hist_add(&I_probe_h, now_s() - c->t_sent);
        if (status != 200)
            I_probe_bad++;
        I_probe_left--;
        if (I_probe_left > 0)
            probe_send(c);
        else
            issue_idle(c);
        return;
    }
    long i = (long)c->owner;
    I_done++;
    if (status == 201)
        I_created++;
    else
        I_other++;
    if (I_save || i == I_want_idx) {
        char q[40] = "", st[16] = "";
        json_str(body, "token", q, sizeof q);
        json_str(body, "status", st, sizeof st);
        if (i == I_want_idx) {
            memcpy(I_last_q, q, sizeof q);
            I_last_idx = i;
        }
        if (I_save)
            fprintf(I_save, "%ld\t%s\tAuthorization: Bearer %s\tX-Queue-Token: %s\n", i, st, line_token(I_tk.line[i]),
                    q);
    }
    issue_idle(c);
}

static void issue_fail(struct conn *c)
{
    if (c->owner != UINT32_MAX)
        I_other++, I_done++;
}

static long read_rss_kib(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = atol(line + 6);
    fclose(f);
    return kib;
}

static int mode_issue(void)
{
    if (O.users <= 0 || O.tokens == NULL || O.concert <= 0)
        die("issue mode needs --users, --tokens and --concert");
    lines_load(&I_tk, O.tokens, (size_t)O.skip, (size_t)O.users);
    long cps[32];
    int ncp = 0;
    if (O.checkpoints) {
        char *s = strdup(O.checkpoints), *save = NULL;
        for (char *t = strtok_r(s, ",", &save); t && ncp < 32; t = strtok_r(NULL, ",", &save))
            cps[ncp++] = atol(t);
        free(s);
    }
    if (ncp == 0 || cps[ncp - 1] != O.users)
        cps[ncp++] = O.users;
    if (O.save) {
        I_save = fopen(O.save, "w");
        if (I_save == NULL)
            die("%s: %s", O.save, strerror(errno));
    }
    g_on_response = issue_response;
    g_on_fail = issue_fail;
    g_on_idle = issue_idle;
    I_limit = 0; /* hold requests back until every connection is up */
    conns_init(O.conns);
    double dl = now_s() + 5;
    while (g_idle_ready < g_nconn && now_s() < dl)
        loop_once(10);
    long rss0 = O.pid ? read_rss_kib(O.pid) : -1;
    double issue_time = 0;
    printf("{\"mode\":\"issue\",\"users\":%ld,\"rss0_kib\":%ld,\"checkpoints\":[", O.users, rss0);
    for (int k = 0; k < ncp; k++) {
        I_limit = cps[k];
        I_want_idx = cps[k] - 1;
        double t0 = now_s();
        while (g_nfree > 0 && I_next < I_limit)
            issue_send(&g_conn[g_free[--g_nfree]]);
        while (I_done < I_limit)
            loop_once(5);
        double dt = now_s() - t0;
        issue_time += dt;
        long rss = O.pid ? read_rss_kib(O.pid) : -1;
        /* let the server settle (write-behind, housekeeping) for half a second, then
         * probe the last token issued: a token at the back of the line */
        double settle = now_s() + 0.5;
        while (now_s() < settle)
            loop_once(10);
        /* probe the last token issued: a token at the back of the line */
        memset(&I_probe_h, 0, sizeof I_probe_h);
        I_probe_bad = 0;
        if (O.probe_n > 0 && I_last_idx == I_want_idx && g_nfree > 0) {
            snprintf(I_probe_auth, sizeof I_probe_auth, "%s", line_token(I_tk.line[I_last_idx]));
            memcpy(I_probe_q, I_last_q, sizeof I_probe_q);
            I_probing = 1;
            I_probe_left = O.probe_n;
            I_probe_t = now_s();
            probe_send(&g_conn[g_free[--g_nfree]]);
            while (I_probe_left > 0)
                loop_once(5);
            I_probing = 0;
        }
        fprintf(stderr, "  issued %ld in %.2fs total (created %ld, other %ld), rss %ld KiB, probe p50 %.1f us\n",
                I_done, issue_time, I_created, I_other, rss, hist_pct(&I_probe_h, 50));
        printf("%s{\"issued\":%ld,\"issue_s\":%.3f,\"segment_rate\":%.1f,\"created\":%ld,\"other\":%ld,\"rss_kib\":%ld,"
               "\"probe_bad\":%ld,\"probe\":",
               k ? "," : "", I_done, issue_time, dt > 0 ? (double)(cps[k] - (k ? cps[k - 1] : 0)) / dt : 0, I_created,
               I_other, rss, I_probe_bad);
        hist_json(stdout, &I_probe_h);
        printf("}");
        fflush(stdout);
    }
    printf("],\"issue_s\":%.3f,\"issue_per_s\":%.1f,\"conn_errors\":%llu}\n", issue_time,
           issue_time > 0 ? (double)I_done / issue_time : 0, (unsigned long long)g_conn_errors);
    if (I_save)
        fclose(I_save);
    return 0;
}

/* ================================================================ probe mode (frozen dependency) */

/* Two loads at once over every --target, every request logged with its times:
 *   probes    --probe-rate per second, each on a fresh connection (connect, one
 *             request with Connection: close, its answer, close), round robin over
 *             the targets and, in turn, GET /healthz and GET /api/v1/queue/status
 *             with the next header set of --hdrs (WAITING users); the latency counts
 *             from the moment the probe was due, connect included.
 *   bookings  --book-rate per second: the next user of --tokens (--users of
 *             them, from line --skip) takes a queue token for --concert and, once
 *             ACTIVE, reads the compact seat map of a random schedule of
 *             --schedules, holds a random free seat and pays (which ends the
 *             token); when the map fails, a random seat of that schedule's
 *             last map (a buyer clicking the map seen a moment ago;
 *             "blind_holds"). A user not admitted at once, or whose hold or
 *             payment fails, leaves the queue (DELETE of the token), so the
 *             slot is not kept. Each step on a keep-alive connection to the chain's target (a
 *             new one when none is idle); a step's latency counts from when it was
 *             due (the first) or sent (the others: at once after the previous
 *             answer).
 * Nothing is retried and nothing times out before the end: --duration seconds of
 * load, then up to --drain seconds (15) for the answers still due.
 * --log FILE: one line per request, "kind target t_due t_sent t_done status"
 * (seconds from the start; t_done -1 and status -1 when no answer came, status 0
 * when the connection failed). stdout: one JSON summary with the wall-clock time
 * of the start (t0_unix), so the log lines up with events timed by others. */

enum pkind { PK_HEALTHZ, PK_STATUS, PK_ISSUE, PK_SEATS, PK_HOLD, PK_PAY, PK_LEAVE, PK_N };
static const char *pk_name[PK_N] = {"healthz", "status", "issue", "seats", "hold", "pay", "leave"};

struct pconn {
    int fd, target, busy, probe, connecting, parked;
    char *w, *r;
    size_t wlen, woff, wcap, rlen, rcap;
    int kind;
    long chain;
    double t_due, t_sent;
    struct pconn *next_idle;
};

struct pchain {
    long user;
    int si; /* index of sched in P_sched */
    int64_t sched, resv;
    char q[40];
};

static struct pconn **P_all; /* every connection made (reused once closed) */
static size_t P_nall, P_capall;
static struct pconn *P_idle[16];
static struct pchain *P_chain;
static long P_nchain;
static struct lines P_wait, P_book;
static char **P_wait_h;
static int64_t *P_sched;
static long *P_seats; /* seats of each schedule, from its last map read (0: none yet) */
static int P_nsched;
static FILE *P_log;
static double P_t0;
static long P_busy;
static uint64_t P_count[PK_N], P_ok[PK_N], P_other[PK_N], P_connfail[PK_N], P_noseat, P_notadmitted, P_blind;

static void plog(struct pconn *c, double t_done, int status)
{
    if (P_log)
        fprintf(P_log, "%s %d %.6f %.6f %.6f %d\n", pk_name[c->kind], c->target, c->t_due - P_t0, c->t_sent - P_t0,
                t_done < 0 ? -1.0 : t_done - P_t0, status);
    P_count[c->kind]++;
    if (status >= 200 && status < 300)
        P_ok[c->kind]++;
    else if (status <= 0)
        P_connfail[c->kind]++;
    else
        P_other[c->kind]++;
}

static void pconn_close(struct pconn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    if (c->busy)
        P_busy--;
    c->busy = 0;
}

static struct pconn *pconn_new(int target, int probe)
{
    struct pconn *c = NULL;
    for (size_t i = 0; i < P_nall; i++) /* a closed one to reuse (few: probes close at once) */
        if (P_all[i]->fd < 0 && !P_all[i]->busy && !P_all[i]->parked) {
            c = P_all[i];
            break;
        }
    if (c == NULL) {
        if (P_nall == P_capall)
            P_all = xrealloc(P_all, (P_capall = P_capall ? P_capall * 2 : 256) * sizeof *P_all);
        c = xcalloc(1, sizeof *c);
        c->wcap = 2048;
        c->w = xmalloc(c->wcap);
        c->rcap = 16384;
        c->r = xmalloc(c->rcap);
        P_all[P_nall++] = c;
    }
    c->target = target;
    c->probe = probe;
    c->busy = 0;
    c->parked = 0;
    c->next_idle = NULL;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = connect(c->fd, (struct sockaddr *)&g_tg[target].addr, sizeof g_tg[target].addr);
    c->connecting = rc != 0;
    if (rc != 0 && errno != EINPROGRESS)
        c->connecting = -1; /* reported by pconn_send */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        die("epoll_ctl add: %s", strerror(errno));
    return c;
}

/* A keep-alive connection to target: an idle one, else a new one. */
static struct pconn *pconn_get(int target)
{
    while (P_idle[target]) {
        struct pconn *c = P_idle[target];
        P_idle[target] = c->next_idle;
        c->next_idle = NULL;
        c->parked = 0;
        if (c->fd >= 0)
            return c;
    }
    return pconn_new(target, 0);
}

static void pconn_park(struct pconn *c)
{
    c->next_idle = P_idle[c->target];
    c->parked = 1;
    P_idle[c->target] = c;
}

static void pconn_fail(struct pconn *c)
{
    if (c->busy)
        plog(c, now_s(), 0);
    pconn_close(c);
}

static void pconn_write(struct pconn *c)
{
    while (c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->w + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n > 0) {
            c->woff += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        pconn_fail(c);
        return;
    }
}

static void pconn_send(struct pconn *c, int kind, long chain, double due, const char *req, size_t len)
{
    if (len > c->wcap)
        c->w = xrealloc(c->w, c->wcap = len);
    memcpy(c->w, req, len);
    c->wlen = len;
    c->woff = 0;
    c->rlen = 0;
    c->kind = kind;
    c->chain = chain;
    c->t_due = due;
    c->t_sent = now_s();
    c->busy = 1;
    P_busy++;
    if (c->connecting < 0) {
        pconn_fail(c);
        return;
    }
    if (!c->connecting)
        pconn_write(c);
}

static void probe_start(long k, double due)
{
    int target = (int)(k % g_ntg);
    int kind = (P_wait.n && (k / g_ntg) % 2) ? PK_STATUS : PK_HEALTHZ;
    struct pconn *c = pconn_new(target, 1);
    char req[2048];
    size_t len;
    if (kind == PK_STATUS)
        len = build_req(req, sizeof req, "GET", g_tg[target].hostport, "/api/v1/queue/status",
                        P_wait_h[(size_t)(k / (2 * g_ntg)) % P_wait.n], "Connection: close", NULL, NULL);
    else
        len =
            build_req(req, sizeof req, "GET", g_tg[target].hostport, "/healthz", "Connection: close", NULL, NULL, NULL);
    pconn_send(c, kind, -1, due, req, len);
}

static void chain_step(struct pconn *c, long k, int kind, double due)
{
    struct pchain *ch = &P_chain[k];
    char req[4096], path[128], body[128], auth[256], qt[80], idem[96];
    const char *host = g_tg[c->target].hostport;
    size_t len = 0;
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", line_token(P_book.line[ch->user]));
    snprintf(qt, sizeof qt, "X-Queue-Token: %s", ch->q);
    switch (kind) {
    case PK_ISSUE:
        snprintf(path, sizeof path, "/api/v1/concerts/%d/queue/tokens", O.concert);
        len = build_req(req, sizeof req, "POST", host, path, auth, NULL, NULL, "");
        break;
    case PK_SEATS:
        snprintf(path, sizeof path, "/api/v1/schedules/%lld/seats?format=compact", (long long)ch->sched);
        len = build_req(req, sizeof req, "GET", host, path, auth, qt, NULL, NULL);
        break;
    case PK_HOLD:
        snprintf(body, sizeof body, "{\"scheduleId\":%lld,\"seatNo\":%lld}", (long long)ch->sched, (long long)ch->resv);
        len = build_req(req, sizeof req, "POST", host, "/api/v1/reservations", auth, qt, NULL, body);
        break;
    case PK_PAY:
        snprintf(idem, sizeof idem, "Idempotency-Key: probe-pay-%lld", (long long)ch->resv);
        snprintf(body, sizeof body, "{\"reservationId\":%lld}", (long long)ch->resv);
        len = build_req(req, sizeof req, "POST", host, "/api/v1/payments", auth, qt, idem, body);
        break;
    case PK_LEAVE:
        len = build_req(req, sizeof req, "DELETE", host, "/api/v1/queue/tokens/current", auth, qt, NULL, NULL);
        break;
    }
    pconn_send(c, kind, k, due, req, len);
}

static void chain_start(long k, double due)
{
    struct pchain *ch = &P_chain[k];
    ch->user = k % (long)P_book.n;
    ch->si = (int)(rnd() % (uint64_t)P_nsched);
    ch->sched = P_sched[ch->si];
    ch->q[0] = 0;
    chain_step(pconn_get((int)(k % g_ntg)), k, PK_ISSUE, due);
}

/* The answer in c->r is whole: log it, then go on with the chain or let the
 * connection go. */
static void pconn_answered(struct pconn *c, int status, char *body)
{
    double t = now_s();
    plog(c, t, status);
    c->busy = 0;
    P_busy--;
    if (c->probe) {
        pconn_close(c);
        return;
    }
    long k = c->chain;
    struct pchain *ch = &P_chain[k];
    int ok = status >= 200 && status < 300;
    switch (c->kind) {
    case PK_ISSUE: {
        char st[16] = "";
        if (!ok)
            break; /* no token: nothing to leave */
        json_str(body, "token", ch->q, sizeof ch->q);
        json_str(body, "status", st, sizeof st);
        if (strcmp(st, "ACTIVE") == 0) {
            chain_step(c, k, PK_SEATS, t);
            return;
        }
        P_notadmitted++;
        chain_step(c, k, PK_LEAVE, t);
        return;
    }
    case PK_SEATS: {
        if (!ok && P_seats[ch->si] > 0) {
            /* as a buyer who saw the map a moment ago: a seat picked blind, so the
             * hold path runs even while maps fail (a frozen PostgreSQL) */
            ch->resv = 1 + (int64_t)(rnd() % (uint64_t)P_seats[ch->si]);
            P_blind++;
            chain_step(c, k, PK_HOLD, t);
            return;
        }
        if (!ok) {
            chain_step(c, k, PK_LEAVE, t);
            return;
        }
        /* a random free seat of the compact map ("availability":"1101..."):
         * reservoir sampling, each free seat equally likely */
        const char *a = strstr(body, "\"availability\":\"");
        const char *f = a ? a + strlen("\"availability\":\"") : "";
        long n = 0, pick = -1;
        long i = 0;
        for (; f[i] == '0' || f[i] == '1'; i++)
            if (f[i] == '1' && rnd() % (uint64_t)(++n) == 0)
                pick = i + 1;
        P_seats[ch->si] = i;
        if (pick < 0) {
            P_noseat++;
            chain_step(c, k, PK_LEAVE, t);
            return;
        }
        ch->resv = pick; /* the seat number, until the hold answers with the reservation */
        chain_step(c, k, PK_HOLD, t);
        return;
    }
    case PK_HOLD:
        if (ok) {
            long long id = 0;
            json_int(body, "reservationId", &id);
            ch->resv = id;
            chain_step(c, k, PK_PAY, t);
        } else
            chain_step(c, k, PK_LEAVE, t);
        return;
    case PK_PAY:
        if (!ok)
            chain_step(c, k, PK_LEAVE, t);
        else
            pconn_park(c); /* paying ended the token */
        return;
    default:
        break;
    }
    pconn_park(c);
}

static void pconn_event(struct pconn *c, uint32_t ev)
{
    if (c->fd < 0)
        return;
    if (c->connecting) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err || (ev & EPOLLERR)) {
            pconn_fail(c);
            return;
        }
        if (!(ev & EPOLLOUT))
            return;
        c->connecting = 0;
    }
    if (c->busy && c->woff < c->wlen) {
        pconn_write(c);
        if (c->fd < 0)
            return;
    }
    /* EPOLLOUT stays on while a request is unsent; off otherwise (level-triggered) */
    struct epoll_event mod = {.events = EPOLLIN | (c->busy && c->woff < c->wlen ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &mod);
    if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    for (;;) {
        if (c->rcap - c->rlen < 4096)
            c->r = xrealloc(c->r, c->rcap *= 2);
        ssize_t n = recv(c->fd, c->r + c->rlen, c->rcap - c->rlen - 1, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) { /* EOF or error: an idle keep-alive connection closed, or a request lost */
            pconn_fail(c);
            return;
        }
        c->rlen += (size_t)n;
        if (!c->busy)
            continue; /* nothing asked: ignore */
        c->r[c->rlen] = 0;
        char *hend = strstr(c->r, "\r\n\r\n");
        if (hend == NULL)
            continue;
        size_t hlen = (size_t)(hend - c->r) + 4;
        long long cl = 0;
        for (char *q = c->r; q < hend; q++)
            if (*q == '\n' && strncasecmp(q + 1, "content-length:", 15) == 0) {
                cl = strtoll(q + 16, NULL, 10);
                break;
            }
        if (c->rlen < hlen + (size_t)cl)
            continue;
        c->r[hlen + (size_t)cl] = 0;
        pconn_answered(c, atoi(c->r + 9), c->r + hlen);
        return;
    }
}

static int mode_probe(void)
{
    if (O.duration <= 0 || (O.probe_rate <= 0 && O.book_rate <= 0))
        die("probe mode needs --duration and --probe-rate and/or --book-rate");
    if (O.hdrs)
        P_wait_h = hdrs_load(&P_wait, O.hdrs);
    if (O.book_rate > 0) {
        if (O.tokens == NULL || O.users <= 0 || O.concert <= 0 || O.schedules == NULL)
            die("--book-rate needs --tokens, --users, --concert and --schedules");
        lines_load(&P_book, O.tokens, (size_t)O.skip, (size_t)O.users);
        char *sl = strdup(O.schedules), *save = NULL;
        P_sched = xmalloc(strlen(sl) * sizeof(int64_t));
        P_seats = xcalloc(strlen(sl), sizeof(long));
        for (char *t = strtok_r(sl, ",", &save); t; t = strtok_r(NULL, ",", &save))
            P_sched[P_nsched++] = atoll(t);
        free(sl);
        if (P_nsched == 0)
            die("--schedules: no schedule");
    }
    if (O.log) {
        P_log = fopen(O.log, "w");
        if (P_log == NULL)
            die("%s: %s", O.log, strerror(errno));
    }
    P_nchain = (long)(O.book_rate * O.duration) + 1;
    P_chain = xcalloc((size_t)P_nchain, sizeof *P_chain);
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    P_t0 = now_s();
    double t0_unix = (double)wall.tv_sec + (double)wall.tv_nsec / 1e9, end = P_t0 + O.duration;
    long kp = 0, kb = 0;
    double last_report = P_t0;
    struct epoll_event evs[256];
    for (;;) {
        double t = now_s();
        int running = t < end;
        while (running && O.probe_rate > 0 && P_t0 + (double)kp / O.probe_rate <= t) {
            probe_start(kp, P_t0 + (double)kp / O.probe_rate);
            kp++;
        }
        while (running && O.book_rate > 0 && kb < P_nchain && P_t0 + (double)kb / O.book_rate <= t) {
            chain_start(kb, P_t0 + (double)kb / O.book_rate);
            kb++;
        }
        if (!running && (P_busy == 0 || t >= end + O.drain))
            break;
        if (t - last_report >= 2) {
            last_report = t;
            fprintf(stderr, "  t=%5.1fs probes %ld chains %ld in flight %ld paid %llu\n", t - P_t0, kp, kb, P_busy,
                    (unsigned long long)P_ok[PK_PAY]);
        }
        int n = epoll_wait(g_ep, evs, 256, 1);
        for (int i = 0; i < n; i++)
            pconn_event(evs[i].data.ptr, evs[i].events);
    }
    long unanswered = 0;
    for (size_t i = 0; i < P_nall; i++)
        if (P_all[i]->busy) {
            plog(P_all[i], -1, -1);
            unanswered++;
            pconn_close(P_all[i]);
        }
    if (P_log)
        fclose(P_log);
    printf(
        "{\"mode\":\"probe\",\"t0_unix\":%.6f,\"duration_s\":%.3f,\"probes\":%ld,\"chains\":%ld,\"no_free_seat\":%llu,"
        "\"blind_holds\":%llu,\"unanswered\":%ld,\"connections\":%zu,\"requests\":{",
        t0_unix, O.duration, kp, kb, (unsigned long long)P_noseat, (unsigned long long)P_blind, unanswered, P_nall);
    for (int k = 0; k < PK_N; k++)
        printf("%s\"%s\":{\"count\":%llu,\"ok\":%llu,\"other\":%llu,\"conn_failed\":%llu}", k ? "," : "", pk_name[k],
               (unsigned long long)P_count[k], (unsigned long long)P_ok[k], (unsigned long long)P_other[k],
               (unsigned long long)P_connfail[k]);
    printf("}}\n");
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    parse_opts(argc, argv);
    rng_state ^= (uint64_t)getpid() * 0x2545F4914F6CDD1DULL;
    if (!strcmp(O.mode, "rate"))
        return mode_rate();
    if (!strcmp(O.mode, "flow"))
        return mode_flow();
    if (!strcmp(O.mode, "issue"))
        return mode_issue();
    if (!strcmp(O.mode, "probe"))
        return mode_probe();
    die("unknown mode %s (rate, flow, issue, probe)", O.mode);
    return 1;
}
