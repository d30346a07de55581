/* login_flood.c — the log-in flood of issue 12 item 1, as a load generator for
 * bench/login_flood.sh. One thread, epoll, raw HTTP/1.1 keep-alive on loopback.
 *
 *   login_flood --target 127.0.0.1:PORT --user NAME --password PW
 *               [--conns 32] [--flood-from A[,B...]] [--probe-from ADDR]
 *               [--probes 40] [--probe-gap-ms 250] [--warmup-ms 2000] [--raw FILE]
 *               [--duration-ms D]
 *
 * The flood: --conns connections (0 = none: the unloaded measurement), spread
 * round robin over the --flood-from source addresses, each posting
 * POST /api/v1/sessions with a new random name every time (so no per-name limit
 * can trigger) and a wrong password, closed loop: the next request leaves when
 * the answer came. The probe: one real user logging in with the right password
 * from --probe-from, --probes times, --probe-gap-ms apart, starting after
 * --warmup-ms of flood. Every probe latency counts, whatever its status (a
 * refused probe is reported as such).
 *
 * Prints one JSON object: probe latencies in ms (p50, p90, p99, max) and
 * statuses, flood answers by status and per second. --raw appends one line per
 * probe to FILE: "<ms> <status> <ms since the flood began, when the probe left>".
 * --duration-ms stops after D ms even if fewer probes were made. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BENCH_PROG "login_flood"
#include "bench_fail.h"

#define MAX_CONNS 1024
#define MAX_PROBES 10000
#define MAX_SOURCES 256

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

struct conn {
    int fd;
    int probe;          /* the probe's connection */
    struct in_addr src; /* source address it binds to */
    char out[1024];
    size_t out_len, out_off;
    char in[16384];
    size_t in_len;
    double sent_at;
    int busy; /* a request is on the wire */
};

static struct sockaddr_in target;
static int ep;
static struct conn conns[MAX_CONNS + 1];
static int nconns;
static const char *user, *password;
static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static long flood_status[600], flood_total, flood_errors;
static double probe_ms[MAX_PROBES];
static int probe_status[MAX_PROBES], nprobes_done;
static double probe_at[MAX_PROBES], started_at;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void conn_open(struct conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr = c->src};
    if (bind(c->fd, (struct sockaddr *)&src, sizeof src) != 0)
        die("bind %s: %s", inet_ntoa(c->src), strerror(errno));
    if (connect(c->fd, (struct sockaddr *)&target, sizeof target) != 0 && errno != EINPROGRESS)
        die("connect: %s", strerror(errno));
    c->in_len = c->out_len = c->out_off = 0;
    c->busy = 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void conn_close(struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
}

static void conn_send(struct conn *c)
{
    char body[256];
    int bl;
    if (c->probe)
        bl = snprintf(body, sizeof body, "{\"name\":\"%s\",\"password\":\"%s\"}", user, password);
    else
        bl = snprintf(body, sizeof body, "{\"name\":\"flood-%016llx\",\"password\":\"not the password\"}",
                      (unsigned long long)next_rand());
    c->out_len = (size_t)snprintf(c->out, sizeof c->out,
                                  "POST /api/v1/sessions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                                  "Content-Length: %d\r\n\r\n%s",
                                  bl, body);
    c->out_off = 0;
    c->in_len = 0;
    c->busy = 1;
    c->sent_at = now_ms();
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* A whole answer in c->in: its status, else 0 (more to read). *closing: the
 * server said Connection: close. */
static int parse_answer(struct conn *c, int *closing)
{
    c->in[c->in_len] = '\0';
    char *end = strstr(c->in, "\r\n\r\n");
    if (end == NULL)
        return 0;
    long clen = 0;
    *closing = 0;
    for (char *p = strstr(c->in, "\r\n"); p != NULL && p < end; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, "content-length:", 15) == 0)
            clen = strtol(p + 17, NULL, 10);
        if (strncasecmp(p + 2, "connection: close", 17) == 0)
            *closing = 1;
    }
    if ((size_t)(end + 4 - c->in) + (size_t)clen > c->in_len)
        return 0;
    int status = 0;
    if (sscanf(c->in, "HTTP/1.%*d %d", &status) != 1)
        status = 1;
    return status;
}

static void answered(struct conn *c, int status)
{
    double ms = now_ms() - c->sent_at;
    c->busy = 0;
    if (c->probe) {
        if (nprobes_done < MAX_PROBES) {
            probe_ms[nprobes_done] = ms;
            probe_at[nprobes_done] = c->sent_at - started_at;
            probe_status[nprobes_done] = status;
            nprobes_done++;
        }
    } else {
        flood_total++;
        flood_status[status > 0 && status < 600 ? status : 0]++;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *sorted, int n, double p)
{
    if (n == 0)
        return 0;
    int i = (int)(p * (double)n + 0.999999) - 1;
    return sorted[i < 0 ? 0 : i >= n ? n - 1 : i];
}

int main(int argc, char **argv)
{
    const char *tgt = NULL, *flood_from = "127.0.0.2", *probe_from = "127.0.0.1", *raw = NULL;
    int nflood = 32, probes = 40;
    double gap = 250, warmup = 2000, duration = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL)
            die("%s needs a value", a);
        if (!strcmp(a, "--target"))
            tgt = v;
        else if (!strcmp(a, "--user"))
            user = v;
        else if (!strcmp(a, "--password"))
            password = v;
        else if (!strcmp(a, "--conns"))
            nflood = atoi(v);
        else if (!strcmp(a, "--flood-from"))
            flood_from = v;
        else if (!strcmp(a, "--probe-from"))
            probe_from = v;
        else if (!strcmp(a, "--probes"))
            probes = atoi(v);
        else if (!strcmp(a, "--probe-gap-ms"))
            gap = atof(v);
        else if (!strcmp(a, "--warmup-ms"))
            warmup = atof(v);
        else if (!strcmp(a, "--raw"))
            raw = v;
        else if (!strcmp(a, "--duration-ms"))
            duration = atof(v);
        else
            die("unknown option %s", a);
        i++;
    }
    if (tgt == NULL || user == NULL || password == NULL)
        die("usage: login_flood --target host:port --user NAME --password PW [--conns N] [--flood-from A[,B...]] "
            "[--probe-from ADDR] [--probes N] [--probe-gap-ms MS] [--warmup-ms MS]");
    if (nflood < 0 || nflood > MAX_CONNS || probes < 1 || probes > MAX_PROBES)
        die("--conns 0..%d, --probes 1..%d", MAX_CONNS, MAX_PROBES);
    char host[64];
    const char *colon = strrchr(tgt, ':');
    if (colon == NULL || (size_t)(colon - tgt) >= sizeof host)
        die("--target host:port");
    memcpy(host, tgt, (size_t)(colon - tgt));
    host[colon - tgt] = '\0';
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &target.sin_addr) != 1)
        die("bad target address %s", host);

    struct in_addr sources[MAX_SOURCES];
    int nsources = 0;
    char list[4096];
    snprintf(list, sizeof list, "%s", flood_from);
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t && nsources < MAX_SOURCES;
         t = strtok_r(NULL, ",", &save))
        if (inet_pton(AF_INET, t, &sources[nsources++]) != 1)
            die("bad --flood-from address %s", t);
    rng ^= (uint64_t)getpid() << 32 ^ (uint64_t)now_ms();

    ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < nflood; i++) {
        conns[i].src = sources[i % nsources];
        conn_open(&conns[i]);
        conn_send(&conns[i]);
    }
    struct conn *probe = &conns[nflood];
    probe->probe = 1;
    if (inet_pton(AF_INET, probe_from, &probe->src) != 1)
        die("bad --probe-from address %s", probe_from);
    nconns = nflood + 1;
    probe->fd = -1;

    double start = now_ms(), next_probe = start + (nflood > 0 ? warmup : 0);
    started_at = start;
    int probes_sent = 0;
    struct epoll_event evs[256];
    while (nprobes_done < probes && (duration <= 0 || now_ms() - start < duration || probe->busy)) {
        double t = now_ms();
        if (!probe->busy && probes_sent < probes && t >= next_probe && (duration <= 0 || t - start < duration)) {
            if (probe->fd < 0)
                conn_open(probe);
            conn_send(probe);
            probes_sent++;
        }
        int wait = probe->busy ? 100 : (int)(next_probe - t) + 1;
        int n = epoll_wait(ep, evs, 256, wait < 1 ? 1 : wait > 100 ? 100 : wait);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->fd < 0)
                continue;
            if (evs[i].events & (EPOLLERR | EPOLLHUP) && !(evs[i].events & EPOLLIN)) {
                if (!c->probe)
                    flood_errors++;
                else if (c->busy)
                    answered(c, 0);
                conn_close(c);
                if (!c->probe) {
                    conn_open(c);
                    conn_send(c);
                }
                continue;
            }
            if ((evs[i].events & EPOLLOUT) && c->out_off < c->out_len) {
                ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
                if (w > 0)
                    c->out_off += (size_t)w;
                if (c->out_off == c->out_len) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            }
            if (evs[i].events & EPOLLIN) {
                ssize_t r = read(c->fd, c->in + c->in_len, sizeof c->in - 1 - c->in_len);
                int closing = 0, status = 0;
                if (r > 0) {
                    c->in_len += (size_t)r;
                    status = parse_answer(c, &closing);
                }
                if (r <= 0 && !(r < 0 && errno == EAGAIN)) { /* the server closed */
                    if (c->busy) {
                        if (c->probe)
                            answered(c, 0);
                        else
                            flood_errors++;
                    }
                    conn_close(c);
                    if (!c->probe) {
                        conn_open(c);
                        conn_send(c);
                    }
                    continue;
                }
                if (status != 0) {
                    answered(c, status);
                    if (closing) {
                        conn_close(c);
                        if (!c->probe)
                            conn_open(c);
                    }
                    if (c->probe)
                        next_probe = now_ms() + gap;
                    else
                        conn_send(c);
                }
            }
        }
    }
    double secs = (now_ms() - start) / 1e3;
    if (raw != NULL) {
        FILE *f = fopen(raw, "a");
        if (f == NULL)
            die("cannot open %s", raw);
        for (int i = 0; i < nprobes_done; i++)
            fprintf(f, "%.1f %d %.0f\n", probe_ms[i], probe_status[i], probe_at[i]);
        fclose(f);
    }

    if (nprobes_done == 0)
        die("no probe was answered");
    double sorted[MAX_PROBES];
    memcpy(sorted, probe_ms, sizeof(double) * (size_t)nprobes_done);
    qsort(sorted, (size_t)nprobes_done, sizeof(double), cmp_double);
    int ok = 0;
    for (int i = 0; i < nprobes_done; i++)
        ok += probe_status[i] == 200;
    printf("{\"probes\":%d,\"probe_ok\":%d,\"p50_ms\":%.1f,\"p90_ms\":%.1f,\"p99_ms\":%.1f,\"max_ms\":%.1f,"
           "\"probe_statuses\":{",
           nprobes_done, ok, pct(sorted, nprobes_done, 0.5), pct(sorted, nprobes_done, 0.9),
           pct(sorted, nprobes_done, 0.99), sorted[nprobes_done - 1]);
    int first = 1;
    for (int s = 0; s < 600; s++) {
        int k = 0;
        for (int i = 0; i < nprobes_done; i++)
            k += probe_status[i] == s;
        if (k > 0) {
            printf("%s\"%d\":%d", first ? "" : ",", s, k);
            first = 0;
        }
    }
    printf("},\"flood_conns\":%d,\"flood_sources\":%d,\"flood_answers\":%ld,\"flood_per_s\":%.0f,\"flood_errors\":%ld,"
           "\"flood_statuses\":{",
           nflood, nsources, flood_total, (double)flood_total / secs, flood_errors);
    first = 1;
    for (int s = 0; s < 600; s++)
        if (flood_status[s] > 0) {
            printf("%s\"%d\":%ld", first ? "" : ",", s, flood_status[s]);
            first = 0;
        }
    printf("},\"seconds\":%.1f}\n", secs);
    return 0;
}
