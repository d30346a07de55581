/* queue_cost.c — what each waiting-room operation costs the Redis server, linked
 * against libboxoffice_core.a and driving queue/waitroom_redis.c through one port,
 * as a server loop does (up to 256 operations in flight, or --inflight). Not a load test: it runs
 * one kind of operation at a time on a prepared keyspace and reads, around each
 * phase, Redis' INFO cpu and INFO commandstats, so the figures are the server's own
 * (the round trips and this process do not count).
 *
 *   queue_cost --redis redis://HOST:PORT/DB [--active N] [--waiting N] [--reps N]
 *              [--inflight N] [--between COMMAND]
 *
 * The keyspace is the flash crowd's: one concert, N active tokens (--active-max N)
 * and a long line behind them. Phases, in order: issues admitted at once, issues
 * that wait, re-issues, polls of waiting and of active tokens (all exact: deep
 * polls go to Redis too), require_active, ticks, completes (each admits the next),
 * leaves, ticks expiring idle tokens. Per phase: operations, Redis CPU per
 * operation (user + sys of the server process), script time per operation (EVALSHA
 * / EVAL / FCALL as commandstats counts it), and the commands run per operation.
 * Uses the namespace ?prefix=qcost, wiped before and after.
 *
 * Times on a shared machine are noisy; instruction counts are not: with
 *   valgrind --tool=callgrind redis-server ...
 * and --between 'callgrind_control -d %s PID' (run through the shell after each
 * phase, %s the phase's name), each dump's "totals:" line is the phase's
 * instructions in Redis. */
#define H2O_USE_LIBUV 0
#include "queue/redis_conn.h"
#include "queue/waitroom.h"
#include "queue/waitroom_redis.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS "qcost"
#define CONCERT 7
#define MAX_CMDS 64

static const char *url_base;
static const char *between;
static long inflight_max = 256; /* under valgrind, fewer: each command has 2 s */
static redisContext *info_rc;

/* ---- the server's counters ---- */

struct cmdstat {
    char name[48];
    long long calls;
    long long usec;
};

struct snap {
    double cpu; /* seconds, user + sys */
    struct cmdstat cmd[MAX_CMDS];
    int n;
};

static redisReply *info_cmd(const char *fmt, const char *arg)
{
    redisReply *r = redisCommand(info_rc, fmt, arg);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "queue_cost: redis: %s\n", r ? r->str : info_rc->errstr);
        exit(1);
    }
    return r;
}

static void snap_take(struct snap *s)
{
    memset(s, 0, sizeof *s);
    redisReply *r = info_cmd("INFO %s", "cpu");
    const char *u = strstr(r->str, "used_cpu_user:"), *y = strstr(r->str, "used_cpu_sys:");
    s->cpu = (u ? strtod(u + 14, NULL) : 0) + (y ? strtod(y + 13, NULL) : 0);
    freeReplyObject(r);
    r = info_cmd("INFO %s", "commandstats");
    for (char *line = strtok(r->str, "\r\n"); line && s->n < MAX_CMDS; line = strtok(NULL, "\r\n")) {
        struct cmdstat *c = &s->cmd[s->n];
        if (sscanf(line, "cmdstat_%47[^:]:calls=%lld,usec=%lld", c->name, &c->calls, &c->usec) == 3 &&
            strcmp(c->name, "info") != 0)
            s->n++;
    }
    freeReplyObject(r);
}

static const struct cmdstat *snap_find(const struct snap *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->cmd[i].name, name) == 0)
            return &s->cmd[i];
    return NULL;
}

static bool is_script(const char *name)
{
    return strcmp(name, "evalsha") == 0 || strcmp(name, "eval") == 0 || strcmp(name, "fcall") == 0 ||
           strcmp(name, "fcall_ro") == 0 || strcmp(name, "evalsha_ro") == 0;
}

/* Runs --between for the phase that just ended. */
static void mark(const char *phase)
{
    if (between == NULL)
        return;
    char cmd[512];
    snprintf(cmd, sizeof cmd, between, phase);
    if (system(cmd) != 0)
        fprintf(stderr, "queue_cost: \"%s\" failed\n", cmd);
}

/* One line per phase: ops, µs of Redis CPU per op, µs of script per op, commands
 * run per op (scripts' inner ones included, scripts themselves excluded), then the
 * commands that ran at least 0.05 times per op, as calls per op x µs per call. */
static void report(const char *phase, long ops, const struct snap *a, const struct snap *b)
{
    double script_us = 0, inner = 0, scripts = 0;
    char detail[2048] = "";
    size_t dl = 0;
    for (int i = 0; i < b->n; i++) {
        const struct cmdstat *c = &b->cmd[i], *o = snap_find(a, c->name);
        double calls = (double)(c->calls - (o ? o->calls : 0)), usec = (double)(c->usec - (o ? o->usec : 0));
        if (calls <= 0)
            continue;
        if (is_script(c->name)) {
            script_us += usec;
            scripts += calls;
        } else {
            inner += calls;
        }
        if (calls / (double)ops >= 0.05 && dl < sizeof detail - 48)
            dl += (size_t)snprintf(detail + dl, sizeof detail - dl, " %s=%.2fx%.1f", c->name, calls / (double)ops,
                                   usec / calls);
    }
    mark(phase);
    printf("%-16s ops=%-7ld cpu_us/op=%-7.1f script_us/op=%-7.1f scripts/op=%-5.2f cmds/op=%-6.2f |%s\n", phase, ops,
           (b->cpu - a->cpu) * 1e6 / (double)ops, script_us / (double)ops, scripts / (double)ops, inner / (double)ops,
           detail);
    fflush(stdout);
}

/* ---- driving the port ---- */

struct room {
    struct waitroom *w;
    h2o_evloop_t *loop;
    h2o_multithread_queue_t *queue;
    struct waitroom_port *p;
    long inflight, failed;
};

struct slot {
    struct room *r;
    struct queue_ticket t;
    bool created;
};

static void op_done(void *arg, bx_err e)
{
    struct slot *s = arg;
    s->r->inflight--;
    if (e != BX_OK && e != BX_ERR_QUEUE_NOT_ACTIVE)
        s->r->failed++;
    free(s);
}

static struct slot *slot_new(struct room *r)
{
    while (r->inflight >= inflight_max)
        h2o_evloop_run(r->loop, 10);
    struct slot *s = calloc(1, sizeof *s);
    if (s == NULL)
        abort();
    s->r = r;
    r->inflight++;
    return s;
}

static void drain(struct room *r)
{
    while (r->inflight > 0 || redis_conn_pending(waitroom_redis_conn(r->p)) > 0)
        h2o_evloop_run(r->loop, 10);
}

/* Issues with their ticket kept: the answer fills tickets[i]. */
struct issue_slot {
    struct room *r;
    struct queue_ticket *t;
    bool created;
};

static void issue_done(void *arg, bx_err e)
{
    struct issue_slot *s = arg;
    s->r->inflight--;
    if (e != BX_OK)
        s->r->failed++;
    free(s);
}

static void issue(struct room *r, int64_t user, int64_t now, struct queue_ticket *out)
{
    while (r->inflight >= inflight_max)
        h2o_evloop_run(r->loop, 10);
    struct issue_slot *s = calloc(1, sizeof *s);
    if (s == NULL)
        abort();
    *s = (struct issue_slot){.r = r, .t = out};
    r->inflight++;
    waitroom_issue(r->p, user, CONCERT, now, out, &s->created, issue_done, s);
}

static void wipe(void)
{
    const char *patterns[2] = {"{" NS ":*", NS ":*"};
    for (int p = 0; p < 2; p++) {
        char cursor[32] = "0";
        do {
            redisReply *r = redisCommand(info_rc, "SCAN %s MATCH %s COUNT 10000", cursor, patterns[p]);
            if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
                exit(1);
            snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
            for (size_t i = 0; i < r->element[1]->elements; i++)
                redisAppendCommand(info_rc, "UNLINK %s", r->element[1]->element[i]->str);
            for (size_t i = 0; i < r->element[1]->elements; i++) {
                void *x;
                if (redisGetReply(info_rc, &x) == REDIS_OK)
                    freeReplyObject(x);
            }
            freeReplyObject(r);
        } while (strcmp(cursor, "0") != 0);
    }
}

static void tick_done(void *arg, bx_err e)
{
    struct room *r = arg;
    r->inflight--;
    if (e != BX_OK)
        r->failed++;
}

static void tick(struct room *r, int64_t now)
{
    r->inflight++;
    waitroom_tick(r->p, now, tick_done, r);
    drain(r);
}

int main(int argc, char **argv)
{
    long active = 5000, waiting = 50000, reps = 20000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--redis") == 0)
            url_base = argv[i + 1];
        else if (strcmp(argv[i], "--active") == 0)
            active = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--waiting") == 0)
            waiting = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--reps") == 0)
            reps = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--inflight") == 0)
            inflight_max = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--between") == 0)
            between = argv[i + 1];
    }
    char host[256];
    int port = 0, db = 0;
    if (url_base == NULL || sscanf(url_base, "redis://%255[^:/]:%d/%d", host, &port, &db) < 2 || active < 10 ||
        waiting < 10 || reps < 10) {
        fprintf(stderr, "usage: queue_cost --redis redis://HOST:PORT/DB [--active N] [--waiting N] [--reps N]\n");
        return 2;
    }
    info_rc = redisConnect(host, port);
    if (info_rc == NULL || info_rc->err) {
        fprintf(stderr, "queue_cost: cannot connect to %s:%d\n", host, port);
        return 1;
    }
    char dbs[16];
    snprintf(dbs, sizeof dbs, "%d", db);
    freeReplyObject(info_cmd("SELECT %s", dbs));
    wipe();

    char url[512], err[256] = "";
    snprintf(url, sizeof url, "%s?prefix=" NS, url_base);
    struct waitroom_config cfg = {.active_max = active,
                                  .admit_rate = 0,
                                  .waiting_idle_ms = 120000,
                                  .active_idle_ms = 300000,
                                  .exact_poll_depth = INT64_MAX};
    struct room r = {0};
    r.w = waitroom_redis_open(url, &cfg, err, sizeof err);
    if (r.w == NULL) {
        fprintf(stderr, "queue_cost: %s\n", err);
        return 1;
    }
    r.loop = h2o_evloop_create();
    r.queue = h2o_multithread_create_queue(r.loop);
    r.p = waitroom_port_open(r.w, r.loop, r.queue);
    drain(&r);
    mark("setup");

    long users = active + waiting;
    struct queue_ticket *t = calloc((size_t)users + 1, sizeof *t);
    int64_t now = 1700000000000;
    struct snap a, b;
    srand(1);

    snap_take(&a);
    for (long u = 1; u <= active; u++)
        issue(&r, u, now, &t[u]);
    drain(&r);
    snap_take(&b);
    report("issue_admitted", active, &a, &b);

    snap_take(&a);
    for (long u = active + 1; u <= users; u++)
        issue(&r, u, now, &t[u]);
    drain(&r);
    snap_take(&b);
    report("issue_waiting", waiting, &a, &b);

    snap_take(&a);
    for (long i = 0; i < reps; i++) {
        long u = active + 1 + rand() % waiting;
        struct slot *s = slot_new(&r);
        waitroom_issue(r.p, u, CONCERT, now, &s->t, &s->created, op_done, s);
    }
    drain(&r);
    snap_take(&b);
    report("reissue", reps, &a, &b);

    snap_take(&a);
    for (long i = 0; i < reps; i++) {
        long u = active + 1 + rand() % waiting;
        struct slot *s = slot_new(&r);
        waitroom_status(r.p, t[u].token, u, now, &s->t, op_done, s);
    }
    drain(&r);
    snap_take(&b);
    report("status_waiting", reps, &a, &b);

    snap_take(&a);
    for (long i = 0; i < reps; i++) {
        long u = 1 + rand() % active;
        struct slot *s = slot_new(&r);
        waitroom_status(r.p, t[u].token, u, now, &s->t, op_done, s);
    }
    drain(&r);
    snap_take(&b);
    report("status_active", reps, &a, &b);

    snap_take(&a);
    for (long i = 0; i < reps; i++) {
        long u = 1 + rand() % active;
        struct slot *s = slot_new(&r);
        waitroom_require_active(r.p, t[u].token, u, CONCERT, now, op_done, s);
    }
    drain(&r);
    snap_take(&b);
    report("require_active", reps, &a, &b);

    long ticks = 200;
    snap_take(&a);
    for (long i = 0; i < ticks; i++)
        tick(&r, now += 100);
    snap_take(&b);
    report("tick", ticks, &a, &b);

    long ends = active / 2 < reps ? active / 2 : reps;
    snap_take(&a);
    for (long u = 1; u <= ends; u++) {
        struct slot *s = slot_new(&r);
        waitroom_complete(r.p, t[u].token, u, now, op_done, s);
    }
    drain(&r);
    snap_take(&b);
    report("complete", ends, &a, &b);

    snap_take(&a);
    for (long u = users - ends + 1; u <= users; u++) {
        struct slot *s = slot_new(&r);
        waitroom_leave(r.p, t[u].token, u, now, op_done, s);
    }
    drain(&r);
    snap_take(&b);
    report("leave_waiting", ends, &a, &b);

    /* every token idles out: the ticks expire them in batches */
    long left = users - 2 * ends;
    snap_take(&a);
    now += 300001;
    for (int i = 0; i < 200; i++)
        tick(&r, now += 100);
    snap_take(&b);
    report("tick_expiring", left, &a, &b);

    if (r.failed)
        fprintf(stderr, "queue_cost: %ld operations failed\n", r.failed);
    waitroom_port_close(r.p);
    h2o_multithread_destroy_queue(r.queue);
    h2o_evloop_run(r.loop, 0);
    h2o_evloop_destroy(r.loop);
    r.w->ops->close(r.w);
    wipe();
    redisFree(info_rc);
    free(t);
    return r.failed ? 1 : 0;
}
