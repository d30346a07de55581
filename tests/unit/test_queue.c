/* test_queue.c — unit tests of the waiting room (CONTRACT §4): domain/queue_rules.c and a
 * backend driven through its ports (waitroom.h) with explicit clocks. Built twice
 * (tests/unit/meson.build): `test_queue` runs the behavioural tests against the
 * embedded backend queue/waitroom_mem.c (persistence to a fake store below);
 * `test_queue_redis` (-DBX_TEST_REDIS) runs the same tests against
 * queue/waitroom_redis.c on the Redis at BOXOFFICE_TEST_REDIS_URL (from
 * tests/harness/redis.sh), plus tests only several instances sharing one Redis
 * have, and the tests of its connection (queue/redis_conn.c) and of the polls it
 * answers without Redis. Criterion runs tests in parallel processes, so each test
 * process works in its own key namespace (?prefix=t<pid>), wiped when it starts,
 * instead of FLUSHDB; tests that restart or freeze a server start their own.
 *
 * The interface answers through callbacks on a loop; the tests drive it through
 * struct room: a port on a private event loop, each call starting the operation
 * and running the loop until its answer came. */
#include "domain/queue_rules.h"
#include "queue/waitroom.h"
#include "util/token.h"

#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef BX_TEST_REDIS
#include "queue/ratelimit_redis.h"
#include "queue/redis_conn.h"
#include "queue/waitroom_redis.h"
#include <hiredis/hiredis.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#endif

/* ---- helpers ---- */

/* The model and volume tests' sizes are divided by this under the sanitizers
 * (every operation costs several times more there); the plain build's suite runs
 * them whole. */
#ifdef __SANITIZE_ADDRESS__
#define SIZE_DIV 5
#else
#define SIZE_DIV 1
#endif

/* The behavioural tests hold every answer to be exact: deep polls too go to Redis. */
static struct waitroom_config config(int64_t active_max)
{
    return (struct waitroom_config){.active_max = active_max,
                                    .admit_rate = 0,
                                    .waiting_idle_ms = 120000,
                                    .active_idle_ms = 300000,
                                    .exact_poll_depth = INT64_MAX};
}

/* A waiting room as the tests drive it: a port on a private event loop of the
 * thread that made it (h2o's socket buffers belong to their thread). The owner
 * room closes the waiting room too; other threads make their own rooms on it. */
struct room {
    struct waitroom *w;
    h2o_evloop_t *loop;
    h2o_multithread_queue_t *queue;
    struct waitroom_port *p;
    bool owner;
    int64_t last_now; /* the latest clock an operation was given */
};

#define ANSWER_WAIT_S 30 /* an answer that never comes aborts the test instead of hanging it */

/* Runs the loop until until(arg). Any thread (no Criterion assert). */
static void loop_run(h2o_evloop_t *loop, bool (*until)(void *arg), void *arg)
{
    time_t t0 = time(NULL);
    while (!until(arg)) {
        if (time(NULL) - t0 > ANSWER_WAIT_S) {
            fprintf(stderr, "no answer in %d s\n", ANSWER_WAIT_S);
            abort();
        }
        h2o_evloop_run(loop, 10);
    }
}

/* A server's loop never stops; the tests' loop runs only inside their calls. So
 * that a command sent last (the set-up, the SADD behind an issue) does not sit on
 * a stopped loop past its deadline, each call ends with the port idle. */
static bool port_idle(void *arg)
{
#ifdef BX_TEST_REDIS
    return redis_conn_pending(waitroom_redis_conn(((struct room *)arg)->p)) == 0;
#else
    return true;
#endif
}

static struct room *room_port(struct waitroom *w, bool owner)
{
    struct room *r = calloc(1, sizeof *r);
    if (r == NULL)
        abort();
    r->w = w;
    r->owner = owner;
    r->loop = h2o_evloop_create();
    r->queue = h2o_multithread_create_queue(r->loop);
    r->p = waitroom_port_open(w, r->loop, r->queue);
    if (r->p == NULL)
        abort();
    loop_run(r->loop, port_idle, r);
    return r;
}

static void room_close(struct room *r)
{
    struct waitroom *w = r->owner ? r->w : NULL;
    waitroom_port_close(r->p);
    h2o_multithread_destroy_queue(r->queue);
    h2o_evloop_run(r->loop, 0); /* frees the sockets closed above */
    h2o_evloop_destroy(r->loop);
    free(r);
    if (w != NULL)
        w->ops->close(w);
}

struct answer {
    bool fired;
    bx_err e;
};

static void answered(void *arg, bx_err e)
{
    struct answer *a = arg;
    a->fired = true;
    a->e = e;
}

/* Before an operation: the loop's clock catches up (deadlines count from it) and
 * what happened meanwhile (a connection closed) is seen. */
static void room_ready(struct room *r, int64_t now)
{
    r->last_now = now;
    h2o_evloop_run(r->loop, 0);
}

static bool has_answer(void *arg)
{
    return ((struct answer *)arg)->fired;
}

/* Runs the loop until the operation answered and the port is idle. */
static bx_err await(struct room *r, struct answer *a)
{
    loop_run(r->loop, has_answer, a);
    loop_run(r->loop, port_idle, r);
    return a->e;
}

static bx_err q_issue(struct room *r, int64_t user, int64_t concert, int64_t now, struct queue_ticket *t, bool *created)
{
    struct answer a = {0};
    room_ready(r, now);
    waitroom_issue(r->p, user, concert, now, t, created, answered, &a);
    return await(r, &a);
}

static bx_err q_status(struct room *r, const char *token, int64_t user, int64_t now, struct queue_ticket *t)
{
    struct answer a = {0};
    room_ready(r, now);
    waitroom_status(r->p, token, user, now, t, answered, &a);
    return await(r, &a);
}

static bx_err q_require_active(struct room *r, const char *token, int64_t user, int64_t concert, int64_t now)
{
    struct answer a = {0};
    room_ready(r, now);
    waitroom_require_active(r->p, token, user, concert, now, answered, &a);
    return await(r, &a);
}

static bx_err q_leave(struct room *r, const char *token, int64_t user, int64_t now)
{
    struct answer a = {0};
    room_ready(r, now);
    waitroom_leave(r->p, token, user, now, answered, &a);
    return await(r, &a);
}

static bx_err q_complete(struct room *r, const char *token, int64_t user, int64_t now)
{
    struct answer a = {0};
    room_ready(r, now);
    waitroom_complete(r->p, token, user, now, answered, &a);
    return await(r, &a);
}

static bx_err q_tick(struct room *r, int64_t now)
{
    struct answer a = {0};
    room_ready(r, now);
    waitroom_tick(r->p, now, answered, &a);
    return await(r, &a);
}

static bx_err q_ping(struct room *r)
{
    struct answer a = {0};
    room_ready(r, r->last_now);
    waitroom_ping(r->p, answered, &a);
    return await(r, &a);
}

/* The room's figures as of now: the Redis room keeps them from its last tick, so
 * they are read again first. */
static bx_err q_stats(struct room *r, struct waitroom_concert_stats *out, size_t cap, size_t *n)
{
#ifdef BX_TEST_REDIS
    struct answer a = {0};
    room_ready(r, r->last_now);
    waitroom_redis_refresh(r->p, r->last_now, answered, &a);
    if (await(r, &a) != BX_OK)
        return a.e;
#endif
    return r->w->ops->stats(r->w, out, cap, n);
}

#ifdef BX_TEST_REDIS
#define BACKEND "redis"

/* This process's key namespace. */
static const char *test_ns(void)
{
    static char ns[32];
    if (ns[0] == '\0')
        snprintf(ns, sizeof ns, "t%ld", (long)getpid());
    return ns;
}

/* A direct connection to the test Redis (host, port, db of the URL), for the tests
 * that look at keys or break things; the caller frees it. */
static redisContext *test_redis(void)
{
    const char *url = getenv("BOXOFFICE_TEST_REDIS_URL");
    char host[256];
    int port = 0, db = 0;
    cr_assert(url && sscanf(url, "redis://%255[^:/]:%d/%d", host, &port, &db) >= 2,
              "BOXOFFICE_TEST_REDIS_URL must look like redis://HOST:PORT/DB, got \"%s\"", url ? url : "");
    redisContext *rc = redisConnect(host, port);
    cr_assert(rc && !rc->err, "cannot connect to the test Redis at %s:%d: %s", host, port, rc ? rc->errstr : "oom");
    redisReply *r = redisCommand(rc, "SELECT %d", db);
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "SELECT %d failed", db);
    freeReplyObject(r);
    return rc;
}

/* Deletes every key of this process's namespace (best effort: also runs at exit). */
static void wipe_namespace(void)
{
    const char *url = getenv("BOXOFFICE_TEST_REDIS_URL");
    char host[256];
    int port = 0, db = 0;
    if (url == NULL || sscanf(url, "redis://%255[^:/]:%d/%d", host, &port, &db) < 2)
        return;
    redisContext *rc = redisConnect(host, port);
    if (rc == NULL || rc->err)
        goto out;
    freeReplyObject(redisCommand(rc, "SELECT %d", db));
    const char *patterns[2] = {"{%s:*", "%s:*"};
    for (int p = 0; p < 2; p++) {
        char match[64];
        snprintf(match, sizeof match, patterns[p], test_ns());
        char cursor[32] = "0";
        do {
            redisReply *r = redisCommand(rc, "SCAN %s MATCH %s COUNT 1000", cursor, match);
            if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
                if (r)
                    freeReplyObject(r);
                goto out;
            }
            snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
            for (size_t i = 0; i < r->element[1]->elements; i++)
                redisAppendCommand(rc, "UNLINK %s", r->element[1]->element[i]->str);
            for (size_t i = 0; i < r->element[1]->elements; i++) {
                void *x;
                if (redisGetReply(rc, &x) == REDIS_OK)
                    freeReplyObject(x);
            }
            freeReplyObject(r);
        } while (strcmp(cursor, "0") != 0);
    }
out:
    if (rc)
        redisFree(rc);
}

/* The URL every instance of this test process opens. Fails loudly without one:
 * the Redis suite must never pass by testing nothing. */
static const char *test_url(void)
{
    static char url[512];
    const char *base = getenv("BOXOFFICE_TEST_REDIS_URL");
    if (base == NULL || base[0] == '\0')
        cr_assert_fail(
            "BOXOFFICE_TEST_REDIS_URL is not set: the Redis waiting-room suite needs a Redis. Start one with "
            "`U=$(tests/harness/redis.sh start DIR)` and run with BOXOFFICE_TEST_REDIS_URL=${U%%/0}/9");
    if (url[0] == '\0') {
        snprintf(url, sizeof url, "%s?prefix=%s", base, test_ns());
        wipe_namespace(); /* a namespace left by an earlier process of the same pid */
        atexit(wipe_namespace);
    }
    return url;
}

static struct room *open_instance(const struct waitroom_config *cfg)
{
    char err[256] = "";
    struct waitroom *w = waitroom_redis_open(test_url(), cfg, err, sizeof err);
    cr_assert_not_null(w, "waitroom_redis_open(%s): %s", test_url(), err);
    return room_port(w, true);
}

static struct room *open_room(const struct waitroom_config *cfg, struct store *persist)
{
    cr_assert_null(persist, "the Redis backend persists itself");
    return open_instance(cfg);
}
#else
#define BACKEND "memory"

static struct room *open_room(const struct waitroom_config *cfg, struct store *persist)
{
    char err[256] = "";
    struct waitroom *w = waitroom_mem_open(cfg, persist, 0, err, sizeof err);
    cr_assert_not_null(w, "waitroom_mem_open: %s", err);
    return room_port(w, true);
}
#endif

static struct queue_ticket issue(struct room *w, int64_t user, int64_t concert, int64_t now)
{
    struct queue_ticket t;
    bool created = false;
    bx_err e = q_issue(w, user, concert, now, &t, &created);
    cr_assert_eq(e, BX_OK, "issue(user %lld) = %d", (long long)user, e);
    return t;
}

static struct queue_ticket status_ok(struct room *w, const struct queue_ticket *t, int64_t now)
{
    struct queue_ticket out;
    bx_err e = q_status(w, t->token, t->user_id, now, &out);
    cr_assert_eq(e, BX_OK, "status(user %lld) = %d", (long long)t->user_id, e);
    return out;
}

static bx_err status_err(struct room *w, const char *token, int64_t user, int64_t now)
{
    struct queue_ticket out;
    return q_status(w, token, user, now, &out);
}

static void assert_active(struct room *w, const struct queue_ticket *t, int64_t now)
{
    struct queue_ticket s = status_ok(w, t, now);
    cr_assert_eq(s.status, QUEUE_ACTIVE, "user %lld should be ACTIVE", (long long)t->user_id);
    cr_assert_eq(s.position, 0);
    cr_assert_eq(s.eta_seconds, 0);
}

static void assert_position(struct room *w, const struct queue_ticket *t, int64_t now, int64_t pos)
{
    struct queue_ticket s = status_ok(w, t, now);
    cr_assert_eq(s.status, QUEUE_WAITING, "user %lld should be WAITING", (long long)t->user_id);
    cr_assert_eq(s.position, pos, "user %lld: position %lld, expected %lld", (long long)t->user_id,
                 (long long)s.position, (long long)pos);
}

static struct waitroom_concert_stats stats_of(struct room *w, int64_t concert)
{
    struct waitroom_concert_stats st[16];
    size_t n = 0;
    cr_assert_eq(q_stats(w, st, 16, &n), BX_OK);
    for (size_t i = 0; i < n; i++)
        if (st[i].concert_id == concert)
            return st[i];
    cr_assert_fail("no stats for concert %lld", (long long)concert);
    return st[0];
}

#ifndef BX_TEST_REDIS
/* ---- a fake store: only the queue calls, records in an array ---- */

struct fake_store {
    struct store base;
    struct queue_record *rec;
    size_t n, cap;
    atomic_int fail_saves; /* queue_save answers UNAVAILABLE while set (the journal thread reads it) */
    int saves, closes;
};

static bx_err fake_save(struct store *s, const struct queue_record *r)
{
    struct fake_store *f = (struct fake_store *)s;
    if (f->fail_saves)
        return BX_ERR_UNAVAILABLE;
    f->saves++;
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->rec[i].token, r->token) == 0) {
            f->rec[i] = *r;
            return BX_OK;
        }
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 64;
        f->rec = realloc(f->rec, f->cap * sizeof *f->rec);
        cr_assert_not_null(f->rec);
    }
    f->rec[f->n++] = *r;
    return BX_OK;
}

static int by_concert_seq(const void *a, const void *b)
{
    const struct queue_record *x = a, *y = b;
    if (x->concert_id != y->concert_id)
        return x->concert_id < y->concert_id ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static bx_err fake_load(struct store *s, int (*cb)(const struct queue_record *, void *), void *arg)
{
    struct fake_store *f = (struct fake_store *)s;
    if (f->n > 0)
        qsort(f->rec, f->n, sizeof *f->rec, by_concert_seq);
    for (size_t i = 0; i < f->n; i++)
        if (f->rec[i].status != QUEUE_EXPIRED && cb(&f->rec[i], arg))
            break;
    return BX_OK;
}

static bx_err fake_find(struct store *s, const char *token, struct queue_record *out)
{
    struct fake_store *f = (struct fake_store *)s;
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->rec[i].token, token) == 0) {
            *out = f->rec[i];
            return BX_OK;
        }
    return BX_ERR_NOT_FOUND;
}

static void fake_close(struct store *s)
{
    ((struct fake_store *)s)->closes++;
}

static const struct store_ops fake_ops = {
    .name = "fake", .close = fake_close, .queue_save = fake_save, .queue_load = fake_load, .queue_find = fake_find};

/* Waits until every change so far is durable (the journal thread wrote it);
 * returns what the waiting room said: BX_OK, or why the write failed. A re-issue
 * answers only then, and changes nothing: `live` is a live token's ticket. */
static bx_err wait_durable(struct room *w, const struct queue_ticket *live)
{
    struct queue_ticket again;
    bool created = true;
    bx_err e = q_issue(w, live->user_id, live->concert_id, w->last_now, &again, &created);
    cr_assert_not(created, "a re-issue of a live token");
    return e;
}

/* The arena slot a ticket's token names (util/token.h). */
static uint32_t token_slot(const struct queue_ticket *t)
{
    unsigned char raw[TOKEN_QUEUE_RAW];
    cr_assert_eq(token_queue_decode(t->token, strlen(t->token), raw), 0, "%s", t->token);
    return token_queue_slot(raw);
}

/* Read the fake's records only after wait_durable: the journal thread writes them. */
static const struct queue_record *fake_get(const struct fake_store *f, const char *token)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->rec[i].token, token) == 0)
            return &f->rec[i];
    return NULL;
}
#endif

/* ---- queue_rules.c ---- */

/* The estimate at now for a line moving at rate per second since at. */
static int64_t eta_at(int64_t position, double rate, int64_t at, int64_t now, const struct waitroom_config *c)
{
    struct queue_pace pace = {.rate = rate, .at_ms = at};
    return queue_eta_seconds(position, &pace, now, c);
}

Test(queue_rules, eta_is_position_times_the_interval_when_the_line_just_moved)
{
    struct waitroom_config c = config(1000);
    cr_assert_eq(eta_at(100, 2.0, 5000, 5000, &c), 50);
    cr_assert_eq(eta_at(3, 2.0, 5000, 5000, &c), 2, "rounded up");
    cr_assert_eq(eta_at(0, 2.0, 5000, 5000, &c), 0);
    cr_assert_eq(eta_at(-5, 2.0, 5000, 5000, &c), 0);
    cr_assert_eq(eta_at(100, 2.0, 0, 5000, &c), 50, "no origin: projected from now");
    cr_assert_eq(eta_at(100, 2.0, 9000, 5000, &c), 50, "an origin ahead of this clock counts as now");
}

Test(queue_rules, eta_counts_down_from_the_last_promotion)
{
    struct waitroom_config c = config(1000);
    cr_assert_eq(eta_at(100, 0.1, 5000, 9000, &c), 996, "4 s after the line moved, 4 s less");
    cr_assert_eq(eta_at(100, 0.1, 5000, 9001, &c), 996, "rounded up");
    cr_assert_eq(eta_at(100, 0.1, 5000, 11000, &c), 995, "half an interval on, the line is late: it holds");
    cr_assert_eq(eta_at(100, 0.1, 5000, 600000, &c), 995);
    cr_assert_eq(eta_at(1, 1.0, 5000, 5400, &c), 1, "never under a second while waiting");
}

Test(queue_rules, eta_falls_back_to_admit_rate_then_to_slot_turnover)
{
    struct waitroom_config c = config(1000); /* 1000 slots per 300 s = 3.33/s */
    cr_assert_eq(eta_at(100, 0, 0, 0, &c), 30);
    cr_assert_eq(eta_at(100, NAN, 0, 0, &c), 30);
    c.admit_rate = 5;
    cr_assert_eq(eta_at(100, 0, 0, 0, &c), 20);
    cr_assert_eq(eta_at(100, -1, 0, 0, &c), 20);
    cr_assert_eq(eta_at(100, 4, 0, 0, &c), 25, "a measurement beats the configuration");
}

Test(queue_rules, eta_before_any_measurement_is_consistent_between_neighbours)
{
    /* the issue: --active-max 1, position 1 told 300 s and position 2 about 6 s */
    struct waitroom_config c = config(1);
    cr_assert_eq(eta_at(1, 0, 1000, 1000, &c), 300);
    cr_assert_eq(eta_at(2, 0, 1000, 1500, &c), 600);
    cr_assert_eq(eta_at(3, 0, 1000, 1500, &c), 900);
}

Test(queue_rules, eta_saturates_instead_of_overflowing)
{
    struct waitroom_config c = config(1000);
    cr_assert_eq(eta_at(INT64_MAX, 1e-300, 0, 0, &c), INT64_MAX);
    cr_assert_eq(eta_at(INT64_MAX, INFINITY, 0, 0, &c), eta_at(INT64_MAX, 0, 0, 0, &c),
                 "an infinite measurement counts as none");
    cr_assert_gt(eta_at(INT64_MAX, 0, 0, 0, &c), 0);
    cr_assert_eq(eta_at(5, 2.0, 1, INT64_MAX, &c), 3, "a stall as long as a clock holds at (p - 1/2) intervals");
    cr_assert_eq(eta_at(5, 2.0, INT64_MIN, INT64_MAX, &c), 3);
    cr_assert_eq(eta_at(5, 2.0, INT64_MAX, INT64_MIN, &c), 3);
    cr_assert_eq(eta_at(5, 1e300, 1, 2, &c), 1, "however fast, at least a second");
    c.active_max = 0;
    cr_assert_eq(eta_at(1, 0, 0, 0, &c), INT64_MAX, "nobody can ever be admitted");
}

Test(queue_rules, neighbours_never_differ_by_an_order_of_magnitude)
{
    struct waitroom_config c1 = config(1), c5000 = config(5000);
    const struct waitroom_config *cfgs[] = {&c1, &c5000};
    const double rates[] = {0, 0.01, 1.0 / 6, 2, 2000};
    const int64_t since[] = {0, 100, 2900, 6000, 59000, 600000};
    for (size_t k = 0; k < 2; k++)
        for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++)
            for (size_t s = 0; s < sizeof since / sizeof since[0]; s++)
                for (int64_t p = 1; p < 2000; p++) {
                    int64_t a = eta_at(p, rates[r], 1000, 1000 + since[s], cfgs[k]);
                    int64_t b = eta_at(p + 1, rates[r], 1000, 1000 + since[s], cfgs[k]);
                    cr_assert(b >= a, "position %lld: %lld then %lld", (long long)p, (long long)a, (long long)b);
                    cr_assert(b <= 3 * a + 1, "rate %g, %lld ms on: position %lld %lld s, next %lld s", rates[r],
                              (long long)since[s], (long long)p, (long long)a, (long long)b);
                }
}

/* One waiting user polling every poll_ms while the line moves by `batch` every
 * every_ms (folded as the backends fold it), from position start; asserts the
 * estimate never rises and returns how many polls there were. */
static int wait_at_a_steady_pace(const struct waitroom_config *c, double rate, double weight, int64_t start,
                                 int64_t batch, int64_t every_ms, int64_t poll_ms)
{
    struct queue_pace pace = {.rate = rate, .at_ms = 1000};
    int64_t pos = start, now = 1000, next = 1000 + every_ms, last = INT64_MAX;
    int polls = 0;
    while (pos > 0) {
        now += poll_ms;
        while (next <= now && pos > 0) {
            pace.rate = queue_pace_update(pace.rate, &weight, batch, next - pace.at_ms, c);
            pace.at_ms = next;
            pos -= batch;
            next += every_ms;
        }
        if (pos <= 0)
            break;
        int64_t eta = queue_eta_seconds(pos, &pace, now, c);
        cr_assert(eta <= last, "position %lld at %lld ms: %lld s after %lld s", (long long)pos, (long long)now,
                  (long long)eta, (long long)last);
        last = eta;
        polls++;
    }
    return polls;
}

Test(queue_rules, a_user_who_only_waits_at_a_steady_pace_sees_the_estimate_fall)
{
    struct waitroom_config c = config(1000);
    cr_assert_gt(wait_at_a_steady_pace(&c, 2.0, 1, 200, 1, 500, 70), 100, "measured: 2/s");
    cr_assert_gt(wait_at_a_steady_pace(&c, 20.0, 1, 400, 2, 100, 330), 50, "batches every tick");
    cr_assert_gt(wait_at_a_steady_pace(&c, 10.0, 1, 100, 10, 1000, 1000), 5, "batches of 10 a second");
    struct waitroom_config one = config(1);
    cr_assert_gt(wait_at_a_steady_pace(&one, 0, 0, 30, 1, 6000, 1000), 100,
                 "the issue's line: one slot, someone every 6 s, from nothing measured");
    struct waitroom_config crowd = config(5000);
    cr_assert_gt(wait_at_a_steady_pace(&crowd, 0, 0, 50000, 200, 100, 1000), 20, "an on-sale from nothing");
}

Test(queue_rules, a_stall_holds_the_estimate_instead_of_growing_it)
{
    struct waitroom_config c = config(1);
    struct queue_pace pace = {.rate = 1.0 / 6, .at_ms = 1000};
    int64_t last = queue_eta_seconds(1, &pace, 1000, &c);
    cr_assert_eq(last, 6);
    for (int64_t now = 1000; now < 1000 + 600000; now += 1000) { /* ten minutes with nobody leaving */
        int64_t eta = queue_eta_seconds(1, &pace, now, &c);
        cr_assert(eta <= last && eta >= 3, "%lld ms: %lld s after %lld s", (long long)now, (long long)eta,
                  (long long)last);
        last = eta;
        cr_assert_eq(queue_eta_seconds(2, &pace, now, &c), eta + 6, "the next one in line: one interval more");
    }
    /* the stall ends: the line moved once in 600 s, and the estimate says so, linearly */
    double w = 1;
    pace.rate = queue_pace_update(pace.rate, &w, 1, 600000, &c);
    pace.at_ms = 601000;
    int64_t eta = queue_eta_seconds(1, &pace, 601000, &c);
    cr_assert(eta > 300 && eta <= 600, "%lld", (long long)eta);
}

Test(queue_rules, pace_starts_from_the_configuration_and_does_not_overreact)
{
    struct waitroom_config c = config(1); /* 1 slot per 300 s */
    double w = 0, r = queue_pace_update(0, &w, 1, 100, &c);
    cr_assert(1 / r > 1.0, "one promotion 100 ms after the line formed: %g s apart", 1 / r);
    w = 0;
    r = queue_pace_update(0, &w, 1, 6000, &c);
    cr_assert(1 / r > 6 && 1 / r < 8, "one over 6 s: most of the way (%g s)", 1 / r);
    for (int i = 0; i < 20; i++)
        r = queue_pace_update(r, &w, 1, 6000, &c);
    cr_assert_float_eq(1 / r, 6, 0.01, "then the measurement (%g s)", 1 / r);
    double w2 = 0;
    struct waitroom_config crowd = config(5000);
    r = queue_pace_update(0, &w2, 2000, 1000, &crowd);
    cr_assert(r > 800 && r < 2000, "a crowd's first second: about half way from 17/s to 2000/s (%g)", r);
    double wn = NAN;
    double restarted = queue_pace_update(5, &wn, 0, 0, &c);
    cr_assert_float_eq(restarted, 1.0 / 300, 1e-12, "a broken weight restarts");
    cr_assert(wn > 0 && wn < 1);
    struct waitroom_config none = config(0);
    double w0 = 0;
    double measured = queue_pace_update(0, &w0, 3, 1000, &none);
    cr_assert_float_eq(measured, 3, 1e-9, "no configured rate: no prior");
    cr_assert(queue_pace_update(INFINITY, &w, 1, INT64_MAX, &c) >= 0);
}

Test(queue_rules, a_line_that_has_not_moved_yet_is_polled_at_the_shortest_interval)
{
    struct waitroom_config c = config(1000); /* waiting_idle 120 s → upper bound 30 s */
    struct queue_pace unmeasured = {.rate = 0, .at_ms = 1000};
    struct queue_pace measured = {.rate = 10, .at_ms = 1000};
    int64_t eta = queue_eta_seconds(5000, &unmeasured, 1000, &c);
    cr_assert_gt(eta, 120, "the worst case: far back in a line nobody has left yet");
    cr_assert_eq(queue_waiting_poll_after_ms(eta, &unmeasured, &c), 1000);
    cr_assert_eq(queue_waiting_poll_after_ms(40, &measured, &c), 10000, "measured: a quarter of the estimate");
    struct queue_pace nan_pace = {.rate = NAN, .at_ms = 1000};
    cr_assert_eq(queue_waiting_poll_after_ms(40, &nan_pace, &c), 1000);
}

Test(queue_rules, poll_after_keeps_active_tokens_alive_capped_at_a_minute)
{
    struct waitroom_config c = config(1000);
    cr_assert_eq(queue_poll_after_ms(1, 0, &c), 60000);
    c.active_idle_ms = 30000;
    cr_assert_eq(queue_poll_after_ms(1, 0, &c), 10000);
    c.active_idle_ms = 2;
    cr_assert_eq(queue_poll_after_ms(1, 0, &c), 1);
}

Test(queue_rules, poll_after_waiting_is_a_quarter_of_eta_between_1s_and_a_third_of_idle)
{
    struct waitroom_config c = config(1000); /* waiting_idle 120 s → upper bound 30 s */
    cr_assert_eq(queue_poll_after_ms(0, 0, &c), 1000);
    cr_assert_eq(queue_poll_after_ms(0, 2, &c), 1000);
    cr_assert_eq(queue_poll_after_ms(0, 40, &c), 10000);
    cr_assert_eq(queue_poll_after_ms(0, 1000000, &c), 30000);
    cr_assert_eq(queue_poll_after_ms(0, INT64_MAX, &c), 30000);
    c.waiting_idle_ms = 6000;
    cr_assert_eq(queue_poll_after_ms(0, 1000000, &c), 2000);
    c.waiting_idle_ms = 1500; /* a third is 500 ms: keeping the place wins over the 1 s floor */
    cr_assert_eq(queue_poll_after_ms(0, 40, &c), 500);
}

Test(queue_rules, rate_average_follows_a_ten_second_horizon)
{
    double w = 0;
    double r = queue_rate_update(0, &w, 100, 1000); /* no history: the first second is the rate */
    cr_assert_float_eq(r, 100, 1e-9);
    cr_assert_float_eq(w, 1 - exp(-0.1), 1e-12);
    r = queue_rate_update(r, &w, 0, 1000); /* then a second with none: about the two-second average */
    double a = 1 - exp(-0.1);
    cr_assert_float_eq(r, 100 * (1 - a / (a + a * (1 - a))), 1e-9); /* 47.5: the newer second weighs more */
    r = 0, w = 0;
    for (int i = 0; i < 600; i++)
        r = queue_rate_update(r, &w, 1, 100); /* 10/s in 100 ms steps for a minute */
    cr_assert_float_eq(r, 10.0, 1e-6);
    cr_assert(w > 0.99 && w <= 1);
    for (int i = 0; i < 600; i++)
        r = queue_rate_update(r, &w, 5, 100); /* then 50/s: the old rate fades over ~10 s */
    cr_assert(r > 49.8 && r < 50.0, "%f", r);
    double wo = 0.3, wt = 0.3, once = queue_rate_update(20, &wo, 10, 1000), tenfold = 20;
    for (int i = 0; i < 10; i++)
        tenfold = queue_rate_update(tenfold, &wt, 1, 100);
    cr_assert_float_eq(once, tenfold, 1e-9, "same answer however often it is updated");
    cr_assert_float_eq(wo, wt, 1e-12);
    w = 0.5;
    cr_assert_float_eq(queue_rate_update(7.5, &w, 3, 0), 7.5, 1e-12, "no elapsed time, nothing measured");
    cr_assert_float_eq(w, 0.5, 1e-12);
    w = 0.5;
    cr_assert(queue_rate_update(NAN, &w, -4, 1000) == 0);
    w = NAN;
    cr_assert_float_eq(queue_rate_update(5, &w, 10, 1000), 10, 1e-9, "a broken weight restarts the history");
    w = 1;
    cr_assert(queue_rate_update(5, &w, 0, INT64_MAX) >= 0);
}

Test(queue_rules, admissible_is_free_slots_without_a_rate)
{
    struct waitroom_config c = config(10);
    double budget = 0;
    cr_assert_eq(queue_admissible(3, &c, &budget, 100), 7);
    cr_assert_eq(queue_admissible(12, &c, &budget, 100), 0, "never negative");
    c.active_max = INT64_MAX;
    cr_assert_eq(queue_admissible(-5, &c, &budget, 100), INT64_MAX);
}

Test(queue_rules, admissible_is_limited_by_a_token_bucket_refilled_at_admit_rate)
{
    struct waitroom_config c = config(1000);
    c.admit_rate = 10;
    double budget = 0;
    cr_assert_eq(queue_admissible(0, &c, &budget, 100), 1);
    cr_assert_float_eq(budget, 1.0, 1e-12);
    cr_assert_eq(queue_admissible(0, &c, &budget, 3600000), 10, "the bucket holds max(1, admit_rate)");
    cr_assert_eq(queue_admissible(995, &c, &budget, 0), 5, "and never more than the free slots");
    c.admit_rate = 0.5;
    budget = 0;
    cr_assert_eq(queue_admissible(0, &c, &budget, 1000), 0);
    cr_assert_eq(queue_admissible(0, &c, &budget, 1000), 1);
    cr_assert_eq(queue_admissible(0, &c, &budget, 10000), 1, "a slow rate still allows one");
}

/* ---- the backend under test (waitroom_mem.c, or waitroom_redis.c with BX_TEST_REDIS) ---- */

Test(waitroom, admission_is_strictly_fifo_in_issue_order)
{
    struct waitroom_config c = config(2);
    struct room *w = open_room(&c, NULL);
    struct queue_ticket t[5];
    for (int i = 0; i < 5; i++)
        t[i] = issue(w, 100 + i, 7, i);
    cr_assert_eq(t[0].status, QUEUE_ACTIVE, "free slot and nobody ahead: active at once");
    cr_assert_eq(t[1].status, QUEUE_ACTIVE);
    for (int i = 2; i < 5; i++) {
        cr_assert_eq(t[i].status, QUEUE_WAITING);
        cr_assert_eq(t[i].position, i - 1);
    }
    cr_assert_eq(q_complete(w, t[0].token, t[0].user_id, 10), BX_OK);
    assert_active(w, &t[2], 11);
    assert_position(w, &t[3], 11, 1);
    assert_position(w, &t[4], 11, 2);
    cr_assert_eq(q_leave(w, t[1].token, t[1].user_id, 12), BX_OK);
    assert_active(w, &t[3], 13);
    assert_position(w, &t[4], 13, 1);
    cr_assert_eq(q_complete(w, t[2].token, t[2].user_id, 14), BX_OK);
    assert_active(w, &t[4], 15);
    struct waitroom_concert_stats st = stats_of(w, 7);
    cr_assert_eq(st.waiting, 0);
    cr_assert_eq(st.active, 2);
    cr_assert_eq(st.admitted_total, 5);
    room_close(w);
}

Test(waitroom, reissue_returns_the_same_live_token)
{
    struct waitroom_config c = config(1);
    struct room *w = open_room(&c, NULL);
    struct queue_ticket a, b, again, other;
    bool created;
    cr_assert_eq(q_issue(w, 1, 7, 0, &a, &created), BX_OK);
    cr_assert(created);
    cr_assert_eq(strlen(a.token), BX_QUEUE_TOKEN_LEN);
    cr_assert_eq(q_issue(w, 2, 7, 0, &b, &created), BX_OK);
    cr_assert_eq(q_issue(w, 2, 7, 5, &again, &created), BX_OK);
    cr_assert_not(created);
    cr_assert_str_eq(again.token, b.token);
    cr_assert_eq(again.status, QUEUE_WAITING);
    cr_assert_eq(again.position, 1, "no line-jumping, no duplicate");
    cr_assert_eq(q_issue(w, 2, 8, 5, &other, &created), BX_OK);
    cr_assert(created, "another concert is another queue");
    cr_assert_str_neq(other.token, b.token);
    cr_assert_eq(other.status, QUEUE_ACTIVE);
    cr_assert_eq(stats_of(w, 7).waiting, 1);
    room_close(w);
}

Test(waitroom, positions_shrink_as_tokens_ahead_leave_expire_or_are_admitted)
{
    struct waitroom_config c = config(1);
    c.waiting_idle_ms = 10000;
    struct room *w = open_room(&c, NULL);
    struct queue_ticket t[12];
    for (int i = 0; i < 12; i++)
        t[i] = issue(w, 1 + i, 3, 0);
    /* t[0] ACTIVE, t[1..11] WAITING at positions 1..11 */
    assert_position(w, &t[6], 5000, 6);
    cr_assert_eq(q_leave(w, t[2].token, t[2].user_id, 5000), BX_OK);
    cr_assert_eq(q_leave(w, t[4].token, t[4].user_id, 5000), BX_OK);
    assert_position(w, &t[6], 5000, 4);
    cr_assert_eq(q_leave(w, t[9].token, t[9].user_id, 5000), BX_OK);
    assert_position(w, &t[6], 5000, 4); /* leaving behind changes nothing */
    /* keep everybody but t[3] and t[5] alive, then let the idle clock run */
    int keep[] = {0, 1, 6, 7, 8, 10, 11};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        (void)status_ok(w, &t[keep[i]], 9000);
    cr_assert_eq(q_tick(w, 10000), BX_OK);
    cr_assert_eq(status_err(w, t[3].token, t[3].user_id, 10001), BX_ERR_TOKEN_EXPIRED);
    cr_assert_eq(status_err(w, t[5].token, t[5].user_id, 10001), BX_ERR_TOKEN_EXPIRED);
    assert_position(w, &t[1], 10001, 1);
    assert_position(w, &t[6], 10001, 2);
    assert_position(w, &t[7], 10001, 3);
    assert_position(w, &t[11], 10001, 6);
    cr_assert_eq(q_complete(w, t[0].token, t[0].user_id, 10002), BX_OK);
    assert_active(w, &t[1], 10003);
    assert_position(w, &t[6], 10003, 1);
    assert_position(w, &t[11], 10003, 5);
    room_close(w);
}

/* User ids past 32 bits (the embedded room keeps those apart) behave like others,
 * also beside a small id that shares their low 32 bits. */
Test(waitroom, users_with_ids_past_32_bits_queue_like_any_other)
{
    struct waitroom_config c = config(1);
    struct room *w = open_room(&c, NULL);
    int64_t big = 1ll << 33, twin = (1ll << 33) + 1; /* twin's low 32 bits are user 1's */
    struct queue_ticket t0 = issue(w, 7, 3, 0), tb = issue(w, big, 3, 1), t1 = issue(w, 1, 3, 2),
                        tt = issue(w, twin, 3, 3), tm = issue(w, INT64_MAX, 3, 4);
    cr_assert_eq(t0.status, QUEUE_ACTIVE);
    cr_assert_eq(tm.user_id, INT64_MAX);
    assert_position(w, &tb, 5, 1);
    assert_position(w, &t1, 5, 2);
    assert_position(w, &tt, 5, 3);
    assert_position(w, &tm, 5, 4);
    cr_assert_eq(status_err(w, tt.token, 1, 5), BX_ERR_TOKEN_NOT_YOURS);
    cr_assert_eq(status_err(w, t1.token, twin, 5), BX_ERR_TOKEN_NOT_YOURS);
    bool created = true;
    struct queue_ticket again;
    cr_assert_eq(q_issue(w, twin, 3, 6, &again, &created), BX_OK);
    cr_assert_not(created);
    cr_assert_str_eq(again.token, tt.token);
    cr_assert_eq(again.user_id, twin);
    cr_assert_eq(q_leave(w, tb.token, big, 7), BX_OK); /* the first of them goes */
    assert_position(w, &tt, 8, 2);
    assert_position(w, &tm, 8, 3);
    cr_assert_eq(q_complete(w, t0.token, 7, 9), BX_OK);
    assert_active(w, &t1, 10);
    cr_assert_eq(q_complete(w, t1.token, 1, 11), BX_OK);
    assert_active(w, &tt, 12);
    cr_assert_eq(q_require_active(w, tt.token, twin, 3, 12), BX_OK);
    cr_assert_eq(q_require_active(w, tt.token, 1, 3, 12), BX_ERR_TOKEN_NOT_YOURS);
    struct queue_ticket tb2 = issue(w, big, 3, 13);
    cr_assert_str_neq(tb2.token, tb.token);
    assert_position(w, &tb2, 14, 2);
    room_close(w);
}

#ifndef BX_TEST_REDIS /* the embedded room keeps last_seen in 32 bits of ms (a round trip per poll with Redis) */
Test(waitroom, idle_expiry_stays_exact_after_the_server_ran_for_months)
{
    struct waitroom_config c = config(1);
    c.waiting_idle_ms = 10000;
    c.active_idle_ms = 20000;
    struct room *w = open_room(&c, NULL);
    struct queue_ticket a = issue(w, 1, 5, 0), b = issue(w, 2, 5, 0);
    int64_t now = 0, day = 86400000;
    for (; now < 120 * day; now += 9000) { /* both poll every 9 s for 120 days */
        (void)status_ok(w, &a, now);
        (void)status_ok(w, &b, now);
        cr_assert_eq(q_tick(w, now + 1), BX_OK);
    }
    (void)status_ok(w, &a, now);
    (void)status_ok(w, &b, now);
    /* tokens issued 120 days ago are still the same text */
    bool created = true;
    struct queue_ticket again;
    cr_assert_eq(q_issue(w, 2, 5, now, &again, &created), BX_OK);
    cr_assert_not(created);
    cr_assert_str_eq(again.token, b.token);
    cr_assert_eq(again.position, 1);
    struct queue_ticket late = issue(w, 3, 5, now); /* a newcomer after 120 days */
    cr_assert_eq(q_tick(w, now + 9999), BX_OK);
    assert_position(w, &late, now + 9999, 2); /* late polls at now + 9999, b at now */
    cr_assert_eq(q_tick(w, now + 10000), BX_OK);
    cr_assert_eq(status_err(w, b.token, 2, now + 10000), BX_ERR_TOKEN_EXPIRED, "idle for exactly 10 s");
    assert_position(w, &late, now + 10000, 1);
    cr_assert_eq(q_tick(w, now + 19999), BX_OK);
    assert_active(w, &a, now + 19999); /* a, ACTIVE since 0, was last seen at now */
    cr_assert_eq(q_tick(w, now + 19999 + 19999), BX_OK);
    cr_assert_eq(status_err(w, late.token, 3, now + 19999 + 19999), BX_ERR_TOKEN_EXPIRED);
    cr_assert_eq(q_tick(w, now + 19999 + 20000), BX_OK);
    cr_assert_eq(status_err(w, a.token, 1, now + 19999 + 20000), BX_ERR_TOKEN_EXPIRED, "ACTIVE idle for 20 s");
    room_close(w);
}
#endif

Test(waitroom, idle_waiting_token_expires_and_its_user_reissues_at_the_back)
{
    struct waitroom_config c = config(1);
    c.waiting_idle_ms = 10000;
    struct room *w = open_room(&c, NULL);
    struct queue_ticket a = issue(w, 1, 5, 0), b = issue(w, 2, 5, 0), d = issue(w, 3, 5, 0);
    cr_assert_eq(a.status, QUEUE_ACTIVE);
    (void)status_ok(w, &d, 9000); /* d polls, b does not */
    cr_assert_eq(q_tick(w, 9999), BX_OK);
    cr_assert_eq(stats_of(w, 5).waiting, 2, "not yet idle for 10 s");
    cr_assert_eq(q_tick(w, 10000), BX_OK);
    cr_assert_eq(status_err(w, b.token, 2, 10001), BX_ERR_TOKEN_EXPIRED);
    assert_position(w, &d, 10001, 1);
    bool created;
    struct queue_ticket b2;
    cr_assert_eq(q_issue(w, 2, 5, 10002, &b2, &created), BX_OK);
    cr_assert(created);
    cr_assert_str_neq(b2.token, b.token);
    cr_assert_eq(b2.position, 2, "a new token goes to the back of the line");
    cr_assert_eq(q_leave(w, b.token, 2, 10003), BX_ERR_TOKEN_EXPIRED);
    room_close(w);
}

Test(waitroom, idle_active_token_expires_and_the_next_one_is_admitted)
{
    struct waitroom_config c = config(1);
    c.active_idle_ms = 5000;
    struct room *w = open_room(&c, NULL);
    struct queue_ticket a = issue(w, 1, 5, 0), b = issue(w, 2, 5, 0);
    cr_assert_eq(q_require_active(w, a.token, 1, 5, 4000), BX_OK, "a request keeps it alive");
    cr_assert_eq(q_tick(w, 8999), BX_OK);
    assert_active(w, &a, 8999);
    assert_position(w, &b, 8999, 1);
    cr_assert_eq(q_tick(w, 14000), BX_OK);
    cr_assert_eq(status_err(w, a.token, 1, 14000), BX_ERR_TOKEN_EXPIRED);
    cr_assert_eq(q_require_active(w, a.token, 1, 5, 14000), BX_ERR_TOKEN_EXPIRED);
    assert_active(w, &b, 14000);
    struct waitroom_concert_stats st = stats_of(w, 5);
    cr_assert_eq(st.active, 1);
    cr_assert_eq(st.waiting, 0);
    cr_assert_eq(st.admitted_total, 2);
    room_close(w);
}

Test(waitroom, admit_rate_limits_admissions_per_tick_interval)
{
    struct waitroom_config c = config(1000);
    c.admit_rate = 10;
    struct room *w = open_room(&c, NULL);
    struct queue_ticket t[50];
    for (int i = 0; i < 50; i++)
        t[i] = issue(w, 1 + i, 9, 0);
    cr_assert_eq(stats_of(w, 9).active, 10, "the bucket starts full: one second's worth");
    cr_assert_eq(t[9].status, QUEUE_ACTIVE);
    cr_assert_eq(t[10].position, 1);
    cr_assert_eq(q_tick(w, 100), BX_OK);
    cr_assert_eq(stats_of(w, 9).active, 11);
    cr_assert_eq(q_tick(w, 1100), BX_OK);
    cr_assert_eq(stats_of(w, 9).active, 21);
    for (int i = 21; i < 50; i++)
        (void)status_ok(w, &t[i], 100000); /* stay alive */
    cr_assert_eq(q_tick(w, 100000), BX_OK);
    cr_assert_eq(stats_of(w, 9).active, 31, "an idle bucket holds no more than admit_rate");
    assert_active(w, &t[30], 100000);
    assert_position(w, &t[31], 100000, 1);
    room_close(w);
}

Test(waitroom, eta_comes_from_the_measured_admission_rate)
{
    struct waitroom_config c = config(1);
    struct room *w = open_room(&c, NULL);
    struct queue_ticket a = issue(w, 1, 4, 0), b = issue(w, 2, 4, 0), d = issue(w, 3, 4, 0);
    (void)b;
    /* nothing measured yet: 1 slot per 300 s, position 2 → 600 s */
    struct queue_ticket s = status_ok(w, &d, 0);
    cr_assert_eq(s.eta_seconds, 600);
    cr_assert_eq(s.poll_after_ms, 1000, "an estimate nobody's departure backs yet: poll soon");
    cr_assert_eq(q_tick(w, 1), BX_OK);
    cr_assert_eq(q_complete(w, a.token, 1, 1000), BX_OK); /* b admitted */
    cr_assert_eq(q_tick(w, 1001), BX_OK);
    double rate = stats_of(w, 4).admit_rate_avg;
    /* a's admission at issue was folded in at the first tick, b's over the next second */
    double weight = 0, expect = queue_rate_update(0, &weight, 1, 1);
    expect = queue_rate_update(expect, &weight, 1, 1000);
    cr_assert_float_eq(rate, expect, 1e-12);
    /* the pace: b's promotion only (a never waited), 1000 ms after the line formed */
    struct queue_pace pace = stats_of(w, 4).pace;
    double pw = 0, pexpect = queue_pace_update(0, &pw, 1, 1000, &c);
    cr_assert_float_eq(pace.rate, pexpect, 1e-12);
    cr_assert_eq(pace.at_ms, 1000);
    s = status_ok(w, &d, 1002);
    cr_assert_eq(s.position, 1);
    cr_assert_eq(s.eta_seconds, (int64_t)ceil((1 / pexpect * 1000 - 2) / 1000));
    cr_assert_eq(s.eta_seconds, queue_eta_seconds(1, &pace, 1002, &c));
    cr_assert_eq(s.poll_after_ms, queue_waiting_poll_after_ms(s.eta_seconds, &pace, &c));
    struct queue_ticket act = status_ok(w, &b, 1002);
    cr_assert_eq(act.poll_after_ms, 60000);
    room_close(w);
}

/* The issue: with one slot, neighbours were told 300 s and 6 s, and the head of
 * the line saw its estimate grow while nobody left. */
Test(waitroom, eta_counts_down_and_neighbours_agree)
{
    struct waitroom_config c = config(1);
    struct room *w = open_room(&c, NULL);
    struct queue_ticket a = issue(w, 1, 5, 1000), b = issue(w, 2, 5, 1000), d = issue(w, 3, 5, 1500);
    cr_assert_eq(b.eta_seconds, 300, "nothing measured: one slot per 300 s");
    cr_assert_eq(d.eta_seconds, 600, "the next one: one interval more");
    int64_t last = d.eta_seconds;
    for (int64_t now = 2000; now <= 21000; now += 1000) { /* nobody leaves */
        cr_assert_eq(q_tick(w, now), BX_OK);
        struct queue_ticket s = status_ok(w, &d, now), h = status_ok(w, &b, now);
        cr_assert(s.eta_seconds <= last, "%lld ms: %lld s after %lld s", (long long)now, (long long)s.eta_seconds,
                  (long long)last);
        cr_assert_eq(s.eta_seconds - h.eta_seconds, 300);
        last = s.eta_seconds;
    }
    cr_assert_eq(last, 580);
    cr_assert_eq(q_complete(w, a.token, 1, 21000), BX_OK); /* b admitted after 20 s */
    cr_assert_eq(q_tick(w, 21000), BX_OK);
    struct queue_ticket s = status_ok(w, &d, 21000);
    cr_assert_eq(s.position, 1);
    double pw = 0, rate = queue_pace_update(0, &pw, 1, 20000, &c);
    cr_assert_eq(s.eta_seconds, (int64_t)ceil(1 / rate), "%lld", (long long)s.eta_seconds);
    cr_assert(s.eta_seconds >= 20 && s.eta_seconds <= 40, "%lld", (long long)s.eta_seconds);
    struct queue_ticket e = issue(w, 4, 5, 22000);
    cr_assert_eq(e.position, 2);
    cr_assert(e.eta_seconds <= 3 * s.eta_seconds, "%lld after %lld", (long long)e.eta_seconds,
              (long long)s.eta_seconds);
    room_close(w);
}

Test(waitroom, another_users_token_is_not_yours)
{
    struct waitroom_config c = config(1);
    struct room *w = open_room(&c, NULL);
    struct queue_ticket a = issue(w, 1, 5, 0), b = issue(w, 2, 5, 0);
    cr_assert_eq(status_err(w, a.token, 2, 1), BX_ERR_TOKEN_NOT_YOURS);
    cr_assert_eq(status_err(w, b.token, 1, 1), BX_ERR_TOKEN_NOT_YOURS);
    cr_assert_eq(q_require_active(w, a.token, 2, 5, 1), BX_ERR_TOKEN_NOT_YOURS);
    cr_assert_eq(q_leave(w, b.token, 1, 1), BX_ERR_TOKEN_NOT_YOURS);
    cr_assert_eq(q_complete(w, a.token, 2, 1), BX_ERR_TOKEN_NOT_YOURS);
    assert_active(w, &a, 2);
    assert_position(w, &b, 2, 1);
    cr_assert_eq(q_leave(w, b.token, 2, 3), BX_OK);
    cr_assert_eq(status_err(w, b.token, 1, 4), BX_ERR_TOKEN_NOT_YOURS, "even once expired");
    room_close(w);
}

Test(waitroom, waiting_token_or_another_concert_is_not_active)
{
    struct waitroom_config c = config(1);
    struct room *w = open_room(&c, NULL);
    struct queue_ticket a = issue(w, 1, 5, 0), b = issue(w, 2, 5, 0);
    cr_assert_eq(q_require_active(w, a.token, 1, 5, 1), BX_OK);
    cr_assert_eq(q_require_active(w, a.token, 1, 6, 1), BX_ERR_QUEUE_NOT_ACTIVE);
    cr_assert_eq(q_require_active(w, b.token, 2, 5, 1), BX_ERR_QUEUE_NOT_ACTIVE);
    cr_assert_eq(q_complete(w, b.token, 2, 1), BX_ERR_QUEUE_NOT_ACTIVE, "paying needs an ACTIVE token");
    assert_position(w, &b, 2, 1);
    room_close(w);
}

Test(waitroom, malformed_or_unknown_token_is_invalid)
{
    struct waitroom_config c = config(1);
    struct room *w = open_room(&c, NULL);
    struct queue_ticket a = issue(w, 1, 5, 0);
    char bad[BX_QUEUE_TOKEN_LEN + 2];
    memcpy(bad, a.token, sizeof a.token);
    bad[5] = '!';
    cr_assert_eq(status_err(w, bad, 1, 1), BX_ERR_QUEUE_TOKEN_INVALID);
    cr_assert_eq(status_err(w, "short", 1, 1), BX_ERR_QUEUE_TOKEN_INVALID);
    cr_assert_eq(status_err(w, "", 1, 1), BX_ERR_QUEUE_TOKEN_INVALID);
    cr_assert_eq(status_err(w, NULL, 1, 1), BX_ERR_QUEUE_TOKEN_INVALID);
    memcpy(bad, a.token, sizeof a.token);
    strcat(bad, "A"); /* one character too long */
    cr_assert_eq(status_err(w, bad, 1, 1), BX_ERR_QUEUE_TOKEN_INVALID);
    cr_assert_eq(status_err(w, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 1, 1), BX_ERR_QUEUE_TOKEN_INVALID);
    char unknown[BX_QUEUE_TOKEN_LEN + 1];
    token_queue_new_for(5, unknown); /* well formed, names concert 5, never issued */
    cr_assert_eq(status_err(w, unknown, 1, 1), BX_ERR_QUEUE_TOKEN_INVALID);
    cr_assert_eq(q_require_active(w, unknown, 1, 5, 1), BX_ERR_QUEUE_TOKEN_INVALID);
    cr_assert_eq(q_leave(w, unknown, 1, 1), BX_ERR_QUEUE_TOKEN_INVALID);
    cr_assert_eq(q_require_active(w, "nope", 1, 5, 1), BX_ERR_QUEUE_TOKEN_INVALID);
    cr_assert_eq(q_leave(w, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 1, 1), BX_ERR_QUEUE_TOKEN_INVALID);
    cr_assert_eq(q_complete(w, "", 1, 1), BX_ERR_QUEUE_TOKEN_INVALID);
    cr_assert_eq(q_ping(w), BX_OK);
    room_close(w);
}

#ifndef BX_TEST_REDIS /* the fake store is the embedded backend's persistence */
Test(waitroom, restart_from_the_store_keeps_tokens_positions_and_active_slots)
{
    struct fake_store f = {.base = {.ops = &fake_ops}};
    struct waitroom_config c = config(2);
    struct room *w = open_room(&c, &f.base);
    struct queue_ticket t[6], o = issue(w, 50, 2, 0), big = issue(w, 1ll << 40, 2, 0); /* a user id past 32 bits */
    for (int i = 0; i < 6; i++)
        t[i] = issue(w, 1 + i, 1, i);
    cr_assert_eq(q_leave(w, t[3].token, 4, 10), BX_OK);    /* a hole in the line */
    cr_assert_eq(q_complete(w, t[0].token, 1, 11), BX_OK); /* t[2] admitted */
    cr_assert_eq(wait_durable(w, &o), BX_OK);
    const struct queue_record *r = fake_get(&f, t[2].token);
    cr_assert_not_null(r);
    cr_assert_eq(r->status, QUEUE_ACTIVE);
    cr_assert_eq(r->activated_at, 11);
    cr_assert_eq(fake_get(&f, t[0].token)->status, QUEUE_EXPIRED);
    cr_assert_eq(fake_get(&f, t[0].token)->expires_at, 11);
    assert_position(w, &t[4], 12, 1);
    assert_position(w, &t[5], 12, 2);
    room_close(w);
    cr_assert_eq(f.closes, 1, "the waiting room closes the store it owns");

    w = open_room(&c, &f.base); /* restart at now = 0 */
    assert_active(w, &big, 20);
    assert_active(w, &t[1], 20);
    assert_active(w, &t[2], 20);
    assert_active(w, &o, 20);
    assert_position(w, &t[4], 20, 1);
    assert_position(w, &t[5], 20, 2);
    cr_assert_eq(status_err(w, t[0].token, 1, 20), BX_ERR_TOKEN_EXPIRED, "found in the store");
    cr_assert_eq(status_err(w, t[3].token, 1, 20), BX_ERR_TOKEN_NOT_YOURS);
    cr_assert_eq(status_err(w, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 1, 20), BX_ERR_QUEUE_TOKEN_INVALID);
    struct waitroom_concert_stats st = stats_of(w, 1);
    cr_assert_eq(st.active, 2);
    cr_assert_eq(st.waiting, 2);
    bool created;
    struct queue_ticket again, n;
    cr_assert_eq(q_issue(w, 5, 1, 21, &again, &created), BX_OK);
    cr_assert_not(created);
    cr_assert_str_eq(again.token, t[4].token);
    n = issue(w, 9, 1, 22);
    cr_assert_eq(n.position, 3);
    /* every token came back in the arena slot its text names; the first free one
     * (t[0]'s, dropped once its expiry was durable) goes to the new token, which
     * its old token does not open */
    cr_assert_eq(token_slot(&n), token_slot(&t[0]));
    cr_assert_eq(status_err(w, t[0].token, 1, 22), BX_ERR_TOKEN_EXPIRED);
    assert_position(w, &t[5], 22, 2);
    cr_assert_eq(wait_durable(w, &o), BX_OK);
    cr_assert_eq(fake_get(&f, n.token)->seq, fake_get(&f, t[5].token)->seq + 1, "sequence continues");
    cr_assert_eq(q_complete(w, t[1].token, 2, 23), BX_OK);
    assert_active(w, &t[4], 24);
    assert_position(w, &t[5], 24, 1);
    assert_position(w, &n, 24, 2);
    room_close(w);

    /* idle clocks restart at load time: reopen at 1,000,000 and tick just before the limit */
    char err[128];
    struct waitroom *reopened = waitroom_mem_open(&c, &f.base, 1000000, err, sizeof err);
    cr_assert_not_null(reopened, "%s", err);
    w = room_port(reopened, true);
    cr_assert_eq(q_tick(w, 1000000 + c.waiting_idle_ms - 1), BX_OK);
    assert_position(w, &t[5], 1000000 + c.waiting_idle_ms - 1, 1);
    room_close(w);
    free(f.rec);
}
#endif

#ifndef BX_TEST_REDIS /* slots of the embedded backend's arena */
Test(waitroom, a_reused_slot_refuses_the_token_that_held_it_before)
{
    struct fake_store f = {.base = {.ops = &fake_ops}};
    struct waitroom_config c = config(0);
    struct room *w = open_room(&c, &f.base);
    struct queue_ticket a = issue(w, 1, 1, 0), keep = issue(w, 2, 1, 0);
    cr_assert_eq(q_leave(w, a.token, 1, 1), BX_OK);
    cr_assert_eq(wait_durable(w, &keep), BX_OK);
    /* a's slot is free once its expiry is durable and the idle sweep went past it */
    (void)status_ok(w, &keep, 100000);
    cr_assert_eq(q_tick(w, c.waiting_idle_ms), BX_OK);
    int64_t t = c.waiting_idle_ms + 1;
    struct queue_ticket b = issue(w, 3, 1, t);
    cr_assert_eq(token_slot(&b), token_slot(&a), "the freed slot is taken again");
    cr_assert_str_neq(b.token, a.token);
    cr_assert_eq(status_err(w, a.token, 1, t), BX_ERR_TOKEN_EXPIRED, "the old token is not the slot's new one");
    cr_assert_eq(status_err(w, a.token, 3, t), BX_ERR_TOKEN_NOT_YOURS, "nor does it become the new holder's");
    cr_assert_eq(q_require_active(w, a.token, 3, 1, t), BX_ERR_TOKEN_NOT_YOURS);
    cr_assert_eq(q_leave(w, a.token, 3, t), BX_ERR_TOKEN_NOT_YOURS);
    /* a token naming b's slot with the time of b but other random bytes is unknown */
    char forged[BX_QUEUE_TOKEN_LEN + 1];
    token_queue_new(t, token_slot(&b), forged);
    cr_assert_eq(status_err(w, forged, 3, t), BX_ERR_QUEUE_TOKEN_INVALID);
    /* b itself, and the token that kept its slot, work */
    assert_position(w, &keep, t + 1, 1);
    assert_position(w, &b, t + 1, 2);
    room_close(w);
    free(f.rec);
}

Test(waitroom, tokens_the_room_cannot_hold_are_expired_at_load)
{
    struct fake_store f = {.base = {.ops = &fake_ops}};
    char same_slot[2][BX_QUEUE_TOKEN_LEN + 1];
    token_queue_new(5, 3, same_slot[0]);
    token_queue_new(6, 3, same_slot[1]);
    struct queue_record r[3] = {
        {.token = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", .user_id = 7, .concert_id = 1, .seq = 1}, /* before slots */
        {.user_id = 8, .concert_id = 1, .seq = 2},
        {.user_id = 9, .concert_id = 1, .seq = 3}, /* names the slot user 8's token holds */
    };
    memcpy(r[1].token, same_slot[0], sizeof r[1].token);
    memcpy(r[2].token, same_slot[1], sizeof r[2].token);
    for (int i = 0; i < 3; i++) {
        r[i].status = QUEUE_WAITING;
        cr_assert_eq(fake_save(&f.base, &r[i]), BX_OK);
    }
    struct waitroom_config c = config(0);
    struct room *w = open_room(&c, &f.base);
    cr_assert_eq(fake_get(&f, r[0].token)->status, QUEUE_EXPIRED, "a token of the old layout");
    cr_assert_eq(fake_get(&f, r[2].token)->status, QUEUE_EXPIRED, "a token naming a slot already held");
    cr_assert_eq(fake_get(&f, r[1].token)->status, QUEUE_WAITING);
    struct queue_ticket held = {.user_id = 8};
    memcpy(held.token, r[1].token, sizeof held.token);
    assert_position(w, &held, 1, 1);
    cr_assert_eq(status_err(w, r[2].token, 9, 1), BX_ERR_TOKEN_EXPIRED);
    bool created = false;
    struct queue_ticket again;
    cr_assert_eq(q_issue(w, 9, 1, 2, &again, &created), BX_OK);
    cr_assert(created, "its holder issues anew");
    cr_assert_eq(again.position, 2);
    cr_assert_neq(token_slot(&again), 3);
    room_close(w);
    free(f.rec);
}
#endif

#ifndef BX_TEST_REDIS /* the fake store is the embedded backend's persistence */
Test(waitroom, a_failed_store_write_is_reported_to_waiters_and_retried_in_order)
{
    struct fake_store f = {.base = {.ops = &fake_ops}};
    struct waitroom_config c = config(1);
    struct room *w = open_room(&c, &f.base);
    struct queue_ticket a = issue(w, 1, 1, 0), b = issue(w, 2, 1, 0);
    cr_assert_eq(wait_durable(w, &a), BX_OK);
    atomic_store(&f.fail_saves, 1);
    /* memory changes at once; whoever waits for durability hears of the failure:
     * a new token and a leave are answered only once durable */
    struct queue_ticket x;
    bool created;
    cr_assert_eq(q_issue(w, 3, 1, 1, &x, &created), BX_ERR_UNAVAILABLE);
    cr_assert_eq(x.position, 2);
    cr_assert_eq(q_leave(w, b.token, 2, 2), BX_ERR_UNAVAILABLE);
    cr_assert_eq(wait_durable(w, &a), BX_ERR_UNAVAILABLE, "the waiter learns that nothing was written");
    assert_position(w, &x, 3, 1);
    /* the store comes back: the same changes land, in the order they were made */
    atomic_store(&f.fail_saves, 0);
    cr_assert_eq(wait_durable(w, &a), BX_OK);
    cr_assert_not_null(fake_get(&f, x.token));
    cr_assert_eq(fake_get(&f, x.token)->status, QUEUE_WAITING);
    cr_assert_eq(fake_get(&f, b.token)->status, QUEUE_EXPIRED);
    cr_assert_eq(fake_get(&f, b.token)->expires_at, 2);
    cr_assert_eq(q_complete(w, a.token, 1, 3), BX_OK);
    assert_active(w, &x, 4);
    room_close(w); /* close writes what is left */
    cr_assert_eq(fake_get(&f, a.token)->status, QUEUE_EXPIRED);
    cr_assert_eq(fake_get(&f, x.token)->status, QUEUE_ACTIVE);
    free(f.rec);
}
#endif

/* A reference model: live tokens in issue order; after every change the oldest
 * WAITING ones fill the free slots. Random issue/leave/complete must agree with it,
 * which drives the window through growth, compaction and shrinking. */
Test(waitroom, random_churn_matches_a_simple_model)
{
    enum { USERS = 400, OPS = 60000 / SIZE_DIV, SLOTS = 3 };
    struct waitroom_config c = config(SLOTS);
    struct room *w = open_room(&c, NULL);
    struct {
        struct queue_ticket t;
        int live, active;
        long order;
    } u[USERS];
    memset(u, 0, sizeof u);
    long order = 0;
    srand(12345);
    for (int op = 0; op < OPS; op++) {
        int k = rand() % USERS, what = rand() % 3;
        if (!u[k].live) {
            u[k].t = issue(w, k + 1, 1, op);
            u[k].live = 1;
            u[k].order = order++;
        } else if (what == 0) {
            cr_assert_eq(q_leave(w, u[k].t.token, k + 1, op), BX_OK);
            u[k].live = 0;
        } else if (what == 1 && u[k].active) {
            cr_assert_eq(q_complete(w, u[k].t.token, k + 1, op), BX_OK);
            u[k].live = 0;
        }
        if (!u[k].live)
            u[k].active = 0;
        /* model admission: oldest waiting first */
        int nact = 0;
        for (int i = 0; i < USERS; i++)
            nact += u[i].live && u[i].active;
        while (nact < SLOTS) {
            int best = -1;
            for (int i = 0; i < USERS; i++)
                if (u[i].live && !u[i].active && (best < 0 || u[i].order < u[best].order))
                    best = i;
            if (best < 0)
                break;
            u[best].active = 1;
            nact++;
        }
        int probe = rand() % USERS;
        if (u[probe].live) {
            struct queue_ticket s = status_ok(w, &u[probe].t, op);
            long pos = 0;
            if (!u[probe].active)
                for (int i = 0; i < USERS; i++)
                    pos += u[i].live && !u[i].active && u[i].order <= u[probe].order;
            cr_assert_eq(s.status, u[probe].active ? QUEUE_ACTIVE : QUEUE_WAITING, "op %d", op);
            cr_assert_eq(s.position, pos, "op %d user %d", op, probe);
        }
        if (op % 5000 == 0)
            cr_assert_eq(q_tick(w, op), BX_OK);
    }
    room_close(w);
}

/* Idle expiry against a model: random polls, leaves, re-issues and ticks (some
 * far apart, some close); nobody is admitted, so every token WAITS. After every
 * tick exactly the tokens idle for waiting_idle are gone, to the millisecond. */
Test(waitroom, idle_expiry_matches_a_model_under_random_polls_and_ticks)
{
    enum { USERS = 300, OPS = 40000 / SIZE_DIV };
    struct waitroom_config c = config(0);
    c.waiting_idle_ms = 50000;
    struct room *w = open_room(&c, NULL);
    struct {
        struct queue_ticket t;
        int live;
        int64_t seen;
    } u[USERS];
    memset(u, 0, sizeof u);
    srand(777);
    int64_t now = 0;
    for (int op = 0; op < OPS; op++) {
        int r = rand() % 1000;
        now += r < 990 ? rand() % 40 : rand() % 200000; /* mostly close together, sometimes a jump */
        int k = rand() % USERS;
        if (r % 7 == 0) {
            cr_assert_eq(q_tick(w, now), BX_OK);
            int64_t live = 0;
            for (int i = 0; i < USERS; i++) {
                if (u[i].live && now - u[i].seen >= c.waiting_idle_ms)
                    u[i].live = 2; /* must be expired now */
                live += u[i].live == 1;
            }
            cr_assert_eq(stats_of(w, 1).waiting, live, "op %d at %lld", op, (long long)now);
            continue;
        }
        if (u[k].live == 2) {
            cr_assert_eq(status_err(w, u[k].t.token, k + 1, now), BX_ERR_TOKEN_EXPIRED, "op %d user %d", op, k);
            u[k].live = 0;
        } else if (!u[k].live) {
            u[k].t = issue(w, k + 1, 1, now);
            u[k].live = 1;
            u[k].seen = now;
        } else if (r % 5 == 0) {
            cr_assert_eq(q_leave(w, u[k].t.token, k + 1, now), BX_OK);
            u[k].live = 0;
        } else {
            struct queue_ticket out;
            cr_assert_eq(q_status(w, u[k].t.token, k + 1, now, &out), BX_OK, "op %d user %d idle %lld ms", op, k,
                         (long long)(now - u[k].seen));
            u[k].seen = now;
        }
    }
    room_close(w);
}

struct worker {
    struct room *w;
    int base;
    int errors;
};

static void *worker_run(void *arg)
{
    struct worker *k = arg;
    struct room *r = room_port(k->w->w, false); /* this thread's loop */
    for (int i = 0; i < 2000; i++) {
        struct queue_ticket t, s;
        bool created;
        int64_t user = k->base + i;
        if (q_issue(r, user, 1 + i % 3, i, &t, &created) != BX_OK || !created)
            k->errors++;
        else if (q_status(r, t.token, user, i, &s) != BX_OK)
            k->errors++;
        else if (i % 2 == 0 && q_leave(r, t.token, user, i) != BX_OK)
            k->errors++;
        if (i % 100 == 0)
            (void)q_tick(r, i);
    }
    room_close(r);
    return NULL;
}

Test(waitroom, concurrent_callers_from_several_threads_stay_consistent)
{
    struct waitroom_config c = config(10);
    struct room *w = open_room(&c, NULL);
    pthread_t th[4];
    struct worker k[4];
    for (int i = 0; i < 4; i++) {
        k[i] = (struct worker){.w = w, .base = 1 + i * 100000};
        cr_assert_eq(pthread_create(&th[i], NULL, worker_run, &k[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(k[i].errors, 0);
    }
    struct waitroom_concert_stats st[8];
    size_t n = 0;
    int64_t live = 0;
    cr_assert_eq(q_stats(w, st, 8, &n), BX_OK);
    cr_assert_eq(n, 3);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(st[i].active, 10);
        live += st[i].waiting + st[i].active;
    }
    cr_assert_eq(live, 4 * 1000, "every second token left");
    room_close(w);
}

#ifdef BX_TEST_REDIS
static long long redis_used_memory(void)
{
    redisContext *rc = test_redis();
    redisReply *r = redisCommand(rc, "INFO memory");
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    const char *p = strstr(r->str, "used_memory:");
    long long v = p ? atoll(p + strlen("used_memory:")) : 0;
    freeReplyObject(r);
    redisFree(rc);
    return v;
}
#endif

static long rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* A million with the embedded backend; with Redis each issue is a network round
 * trip, so fifty thousand (the positions are exact either way). */
Test(waitroom, many_waiting_users_have_exact_positions, .timeout = 120)
{
#ifdef BX_TEST_REDIS
    enum { N = 50000 / SIZE_DIV, MID = N / 2 };
#else
    enum { N = 1000000 / SIZE_DIV, MID = N / 2 };
#endif
    struct waitroom_config c = config(0); /* nobody admitted: everyone waits */
    struct room *w = open_room(&c, NULL);
#ifdef BX_TEST_REDIS
    long long mem0 = redis_used_memory();
#endif
    static struct queue_ticket gone[N / 100]; /* every 100th token before MID leaves */
    struct queue_ticket mid, last, second, t;
    size_t ngone = 0;
    long rss0 = rss_bytes();
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < N; i++) {
        t = issue(w, i + 1, 1, 0);
        if (i < MID && i % 100 == 0)
            gone[ngone++] = t;
        if (i == 1)
            second = t;
        if (i == MID)
            mid = t;
        if (i == N - 1)
            last = t;
    }
    double secs = seconds_since(&t0);
    long rss1 = rss_bytes();
#ifdef BX_TEST_REDIS
    (void)rss0;
    (void)rss1;
    fprintf(stderr, "figure: redis: %d tokens issued in %.2f s (%.0f/s, one thread); Redis used_memory grew by %.0f bytes "
                "per waiting token (other tests running at once add noise)\n",
                N, secs, N / secs, (double)(redis_used_memory() - mem0) / N);
#else
    fprintf(stderr, "figure: memory: %d tokens issued in %.2f s; RSS grew by %.1f bytes per waiting token\n", N, secs,
            (double)(rss1 - rss0) / N);
#endif
    cr_assert_eq(mid.position, MID + 1);
    cr_assert_eq(last.position, N);
    for (size_t i = 0; i < ngone; i++)
        cr_assert_eq(q_leave(w, gone[i].token, gone[i].user_id, 1), BX_OK);
    assert_position(w, &mid, 2, MID + 1 - (int64_t)ngone);
    assert_position(w, &last, 2, N - (int64_t)ngone);
    assert_position(w, &second, 2, 1);
    cr_assert_eq(status_err(w, gone[1].token, gone[1].user_id, 2), BX_ERR_TOKEN_EXPIRED);
    cr_assert_eq(stats_of(w, 1).waiting, N - (int64_t)ngone);
    room_close(w);
}

/* ---- throughput (a figure, not a bound) ---- */

struct bench {
    struct room *w;
    int64_t base;
    struct queue_ticket *t;
    int n, errors;
    double secs; /* this thread's time for its n operations */
    pthread_barrier_t *go;
};

static void *bench_issue(void *arg)
{
    struct bench *b = arg;
    bool created;
    struct timespec t0;
    struct room *r = room_port(b->w->w, false);
    pthread_barrier_wait(b->go);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < b->n; i++)
        b->errors += q_issue(r, b->base + i, 1, i, &b->t[i], &created) != BX_OK;
    b->secs = seconds_since(&t0);
    room_close(r);
    return NULL;
}

static void *bench_status(void *arg)
{
    struct bench *b = arg;
    struct queue_ticket s;
    struct timespec t0;
    struct room *r = room_port(b->w->w, false);
    pthread_barrier_wait(b->go);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < b->n; i++)
        b->errors += q_status(r, b->t[i].token, b->t[i].user_id, i, &s) != BX_OK;
    b->secs = seconds_since(&t0);
    room_close(r);
    return NULL;
}

/* Runs fn on two threads sharing w, started together; returns operations per
 * second over the slower thread's time. */
static double bench_run(struct bench b[2], void *(*fn)(void *))
{
    pthread_barrier_t go;
    pthread_t th[2];
    pthread_barrier_init(&go, NULL, 2);
    for (int i = 0; i < 2; i++) {
        b[i].go = &go;
        cr_assert_eq(pthread_create(&th[i], NULL, fn, &b[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    double secs = b[0].secs > b[1].secs ? b[0].secs : b[1].secs;
    pthread_barrier_destroy(&go);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(b[i].errors, 0);
    return (b[0].n + b[1].n) / secs;
}

Test(waitroom, issue_and_status_throughput_from_two_threads, .timeout = 120)
{
    enum { PER_THREAD = 10000 };
    struct waitroom_config c = config(100);
    struct room *w = open_room(&c, NULL);
    static struct queue_ticket tickets[2][PER_THREAD];
    struct bench b[2];
    for (int i = 0; i < 2; i++)
        b[i] = (struct bench){.w = w, .base = 1 + i * 1000000, .t = tickets[i], .n = PER_THREAD};
    double issue_rate = bench_run(b, bench_issue);
    double status_rate = bench_run(b, bench_status);
    fprintf(stderr, "figure: %s: %.0f issue/s and %.0f status/s from 2 threads\n", BACKEND, issue_rate, status_rate);
    struct waitroom_concert_stats st = stats_of(w, 1);
    cr_assert_eq(st.active, 100);
    cr_assert_eq(st.waiting, 2 * PER_THREAD - 100);
    room_close(w);
}

#ifdef BX_TEST_REDIS
/* ---- Redis only: several instances (processes) sharing one Redis ---- */

Test(waitroom_redis, tokens_issued_alternately_through_two_instances_are_admitted_in_issue_order)
{
    struct waitroom_config c = config(1);
    struct room *w[2] = {open_instance(&c), open_instance(&c)};
    struct queue_ticket t[10];
    for (int i = 0; i < 10; i++) {
        t[i] = issue(w[i % 2], 1 + i, 7, i);
        cr_assert_eq(t[i].position, i, "token %d: position %lld", i, (long long)t[i].position);
    }
    cr_assert_eq(t[0].status, QUEUE_ACTIVE);
    for (int i = 0; i < 9; i++) {
        /* each instance sees the same line */
        assert_active(w[(i + 1) % 2], &t[i], 100 + i);
        for (int j = i + 1; j < 10; j++)
            assert_position(w[j % 2], &t[j], 100 + i, j - i);
        cr_assert_eq(q_complete(w[i % 2], t[i].token, t[i].user_id, 100 + i), BX_OK);
    }
    assert_active(w[0], &t[9], 200);
    cr_assert_eq(stats_of(w[1], 7).admitted_total, 10);
    room_close(w[0]);
    room_close(w[1]);
}

struct tick_ctx {
    struct room *w;
    atomic_llong *clock;
    atomic_int *done;
    int64_t active_max;
    int over, errors, ticks;
};

/* Ticks as fast as it can until told to stop; after each tick the concert must not
 * have more ACTIVE tokens than active_max. */
static void *ticker_run(void *arg)
{
    struct tick_ctx *x = arg;
    struct room *r = room_port(x->w->w, false);
    while (!atomic_load(x->done)) {
        if (q_tick(r, atomic_fetch_add(x->clock, 1)) != BX_OK)
            x->errors++;
        struct waitroom_concert_stats st[4];
        size_t n = 0;
        if (q_stats(r, st, 4, &n) != BX_OK)
            x->errors++;
        for (size_t i = 0; i < n; i++)
            x->over += st[i].active > x->active_max;
        x->ticks++;
    }
    room_close(r);
    return NULL;
}

struct payer_ctx {
    struct room *w;
    atomic_llong *clock;
    struct queue_ticket *t;
    int first, step, n, errors;
};

/* Waits for each of its tokens (every step-th, in issue order) to become ACTIVE,
 * then completes it, so its slot goes to the next in line. */
static void *payer_run(void *arg)
{
    struct payer_ctx *x = arg;
    struct room *r = room_port(x->w->w, false);
    for (int i = x->first; i < x->n && x->errors == 0; i += x->step) {
        for (;;) {
            struct queue_ticket s;
            int64_t now = atomic_fetch_add(x->clock, 1);
            if (q_status(r, x->t[i].token, x->t[i].user_id, now, &s) != BX_OK) {
                x->errors++;
                break;
            }
            if (s.status == QUEUE_ACTIVE)
                break;
        }
        if (x->errors == 0 && q_complete(r, x->t[i].token, x->t[i].user_id, atomic_fetch_add(x->clock, 1)) != BX_OK)
            x->errors++;
    }
    room_close(r);
    return NULL;
}

Test(waitroom_redis, instances_admitting_at_once_never_admit_a_token_twice_nor_exceed_active_max, .timeout = 120)
{
    enum { N = 300, SLOTS = 5 };
    struct waitroom_config c = config(SLOTS);
    struct room *w[2] = {open_instance(&c), open_instance(&c)};
    static struct queue_ticket t[N];
    for (int i = 0; i < N; i++)
        t[i] = issue(w[i % 2], 1 + i, 1, 0);
    atomic_llong clock = 1;
    atomic_int done = 0;
    struct tick_ctx tk[2];
    struct payer_ctx pay[2];
    pthread_t th[4];
    for (int i = 0; i < 2; i++) {
        tk[i] = (struct tick_ctx){.w = w[i], .clock = &clock, .done = &done, .active_max = SLOTS};
        pay[i] = (struct payer_ctx){.w = w[1 - i], .clock = &clock, .t = t, .first = i, .step = 2, .n = N};
        cr_assert_eq(pthread_create(&th[i], NULL, ticker_run, &tk[i]), 0);
        cr_assert_eq(pthread_create(&th[2 + i], NULL, payer_run, &pay[i]), 0);
    }
    pthread_join(th[2], NULL);
    pthread_join(th[3], NULL);
    atomic_store(&done, 1);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(pay[i].errors, 0);
        cr_assert_eq(tk[i].errors, 0);
        cr_assert_eq(tk[i].over, 0, "more than %d ACTIVE tokens seen", SLOTS);
        cr_assert_gt(tk[i].ticks, 0);
    }
    struct waitroom_concert_stats st = stats_of(w[0], 1);
    cr_assert_eq(st.admitted_total, N, "every token admitted exactly once");
    cr_assert_eq(st.active, 0);
    cr_assert_eq(st.waiting, 0);
    room_close(w[0]);
    room_close(w[1]);
}

Test(waitroom_redis, instances_share_one_admit_rate_budget)
{
    struct waitroom_config c = config(1000);
    c.admit_rate = 10;
    struct room *w[2] = {open_instance(&c), open_instance(&c)};
    for (int i = 0; i < 100; i++)
        (void)issue(w[i % 2], 1 + i, 9, 0);
    cr_assert_eq(stats_of(w[0], 9).active, 10, "the bucket starts full: one second's worth");
    for (int64_t now = 500; now <= 2000; now += 500)
        for (int i = 0; i < 2; i++)
            cr_assert_eq(q_tick(w[i], now), BX_OK);
    cr_assert_eq(stats_of(w[1], 9).active, 30, "two seconds at 10/s, however many instances tick");
    room_close(w[0]);
    room_close(w[1]);
}

Test(waitroom_redis, restart_keeps_tokens_positions_and_active_slots)
{
    struct waitroom_config c = config(2);
    struct room *w = open_instance(&c);
    struct queue_ticket t[6], o = issue(w, 50, 2, 0);
    for (int i = 0; i < 6; i++)
        t[i] = issue(w, 1 + i, 1, i);
    cr_assert_eq(q_leave(w, t[3].token, 4, 10), BX_OK);
    cr_assert_eq(q_complete(w, t[0].token, 1, 11), BX_OK); /* t[2] admitted */
    room_close(w);

    w = open_instance(&c); /* the state lives in Redis */
    assert_active(w, &t[1], 20);
    assert_active(w, &t[2], 20);
    assert_active(w, &o, 20);
    assert_position(w, &t[4], 20, 1);
    assert_position(w, &t[5], 20, 2);
    cr_assert_eq(status_err(w, t[0].token, 1, 20), BX_ERR_TOKEN_EXPIRED);
    cr_assert_eq(status_err(w, t[3].token, 1, 20), BX_ERR_TOKEN_NOT_YOURS);
    bool created;
    struct queue_ticket again;
    cr_assert_eq(q_issue(w, 5, 1, 21, &again, &created), BX_OK);
    cr_assert_not(created);
    cr_assert_str_eq(again.token, t[4].token);
    struct queue_ticket n = issue(w, 9, 1, 22);
    cr_assert_eq(n.position, 3);
    cr_assert_eq(q_complete(w, t[1].token, 2, 23), BX_OK);
    assert_active(w, &t[4], 24);
    assert_position(w, &n, 24, 2);
    struct waitroom_concert_stats st = stats_of(w, 1);
    cr_assert_eq(st.admitted_total, 4);
    room_close(w);
}

Test(waitroom_redis, unreachable_or_malformed_url_fails_to_open_with_the_reason)
{
    struct waitroom_config c = config(1);
    char err[256] = "";
    cr_assert_null(waitroom_redis_open("redis://127.0.0.1:1/0", &c, err, sizeof err));
    cr_assert(strstr(err, "127.0.0.1:1") != NULL, "%s", err);
    const char *bad[] = {"redis://",         "redis://h:99999/0", "redis://h:6379/x",
                         "redis://h/0?db=1", "http://h:1/0",      "redis://[::1/0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        cr_assert_null(waitroom_redis_open(bad[i], &c, err, sizeof err), "%s", bad[i]);
        cr_assert(err[0] != '\0', "no reason given for %s", bad[i]);
    }
}

/* Kills this process's connections from the server side (CLIENT KILL by id). */
static int kill_our_connections(void)
{
    redisContext *rc = test_redis();
    redisReply *r = redisCommand(rc, "CLIENT LIST");
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    char name[64];
    snprintf(name, sizeof name, " name=boxoffice-%s ", test_ns());
    int killed = 0;
    for (char *line = r->str; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        char *eol = strchr(line, '\n');
        if (eol)
            *eol = '\0';
        long long id;
        if (strstr(line, name) && sscanf(line, "id=%lld", &id) == 1) {
            freeReplyObject(redisCommand(rc, "CLIENT KILL ID %lld", id));
            killed++;
        }
        if (eol)
            *eol = '\n';
    }
    freeReplyObject(r);
    redisFree(rc);
    return killed;
}

Test(waitroom_redis, lost_connection_is_unavailable_at_most_once_then_reconnects)
{
    struct waitroom_config c = config(1);
    struct room *w = open_instance(&c);
    struct queue_ticket a = issue(w, 1, 5, 0), b = issue(w, 2, 5, 0);
    cr_assert_eq(kill_our_connections(), 1);
    struct queue_ticket s;
    bx_err e = q_status(w, b.token, 2, 1, &s);
    cr_assert(e == BX_OK || e == BX_ERR_UNAVAILABLE, "got %d", e);
    assert_position(w, &b, 2, 1);
    assert_active(w, &a, 2);
    cr_assert_eq(q_ping(w), BX_OK);
    room_close(w);
}

/* Deletes the waiting room's function libraries (every version: other test
 * processes of this binary then load theirs again too, as they must). */
static void delete_libraries(redisContext *rc)
{
    redisReply *r = redisCommand(rc, "FUNCTION LIST LIBRARYNAME bx_");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *lib = r->element[i];
        for (size_t j = 0; j + 1 < lib->elements; j += 2) {
            if (strcmp(lib->element[j]->str, "library_name") == 0 && strncmp(lib->element[j + 1]->str, "bx_", 3) == 0) {
                freeReplyObject(redisCommand(rc, "FUNCTION DELETE %s", lib->element[j + 1]->str));
            }
        }
    }
    freeReplyObject(r);
}

Test(waitroom_redis, a_deleted_function_library_is_loaded_again)
{
    struct waitroom_config c = config(1);
    struct room *w = open_instance(&c);
    struct queue_ticket a = issue(w, 1, 5, 0);
    redisContext *rc = test_redis();
    delete_libraries(rc);
    struct queue_ticket b = issue(w, 2, 5, 1);
    cr_assert_eq(b.position, 1);
    delete_libraries(rc);
    cr_assert_eq(q_tick(w, 2), BX_OK);
    delete_libraries(rc);
    cr_assert_eq(q_complete(w, a.token, 1, 3), BX_OK);
    assert_active(w, &b, 4);
    redisFree(rc); /* how many loads were this room's depends on the tests running beside it */
    room_close(w);
}

/* Redis Cluster maps a key to a slot by its {hash tag}: every key a script touches
 * must carry its concert's tag; only the tick set is global. */
Test(waitroom_redis, every_key_of_a_concert_shares_its_hash_tag_and_expired_tokens_are_forgotten_in_a_day)
{
    struct waitroom_config c = config(1);
    struct room *w = open_instance(&c);
    struct queue_ticket a = issue(w, 1, 42, 0), b = issue(w, 2, 42, 0), d = issue(w, 3, 43, 0);
    (void)d;
    cr_assert_eq(q_leave(w, a.token, 1, 1), BX_OK);
    cr_assert_eq(q_tick(w, 2), BX_OK);
    redisContext *rc = test_redis();
    char tag42[64], tag43[64], global[64], match[64];
    snprintf(tag42, sizeof tag42, "{%s:42}:", test_ns());
    snprintf(tag43, sizeof tag43, "{%s:43}:", test_ns());
    snprintf(global, sizeof global, "%s:concerts", test_ns());
    snprintf(match, sizeof match, "*%s*", test_ns());
    redisReply *r = redisCommand(rc, "KEYS %s", match);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    cr_assert_gt(r->elements, 8);
    for (size_t i = 0; i < r->elements; i++) {
        const char *k = r->element[i]->str;
        cr_assert(strncmp(k, tag42, strlen(tag42)) == 0 || strncmp(k, tag43, strlen(tag43)) == 0 ||
                      strcmp(k, global) == 0,
                  "key %s has no concert tag", k);
    }
    freeReplyObject(r);
    r = redisCommand(rc, "TTL %st:%s", tag42, a.token);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER && r->integer > 86000 && r->integer <= 86400, "expired TTL");
    freeReplyObject(r);
    r = redisCommand(rc, "TTL %st:%s", tag42, b.token);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER && r->integer == -1, "a live token does not expire by TTL");
    freeReplyObject(r);
    redisFree(rc);
    room_close(w);
}

Test(waitroom_redis, an_empty_concert_leaves_the_housekeeping_an_hour_after_its_last_issue)
{
    struct waitroom_config c = config(1);
    struct room *w = open_instance(&c);
    struct queue_ticket a = issue(w, 1, 3, 0), b = issue(w, 1, 4, 0);
    cr_assert_eq(q_leave(w, a.token, 1, 1), BX_OK);
    cr_assert_eq(q_tick(w, 1000), BX_OK);
    cr_assert_eq(stats_of(w, 3).admitted_total, 1, "still listed while recent");
    (void)status_ok(w, &b, 3600000); /* concert 4 stays alive */
    cr_assert_eq(q_tick(w, 3600000), BX_OK);
    struct waitroom_concert_stats st[4];
    size_t n = 0;
    cr_assert_eq(q_stats(w, st, 4, &n), BX_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(st[0].concert_id, 4, "a concert with a live token is never forgotten");
    struct queue_ticket a2 = issue(w, 1, 3, 3600001);
    cr_assert_eq(a2.status, QUEUE_ACTIVE);
    struct waitroom_concert_stats s3 = stats_of(w, 3);
    cr_assert_eq(s3.active, 1);
    cr_assert_eq(s3.admitted_total, 2, "its figures kept");
    room_close(w);
}

/* ---- Redis only: the connection (queue/redis_conn.c) ---- */

/* A redis-server of the test's own, for tests that restart or freeze it (the
 * shared one serves the other tests running at the same time). */
struct own_redis {
    pid_t pid;
    int port;
};

static bool own_redis_answers(int port)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    redisContext *rc = redisConnectWithTimeout("127.0.0.1", port, tv);
    bool ok = false;
    if (rc != NULL && !rc->err) {
        redisReply *r = redisCommand(rc, "PING");
        ok = r != NULL && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
    }
    if (rc)
        redisFree(rc);
    return ok;
}

/* Starts it on s->port, or on a free random port when s->port is 0. It dies with
 * the test process, even one that crashed. */
static void own_redis_start(struct own_redis *s)
{
    bool fixed = s->port != 0;
    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    for (int attempt = 0; attempt < 8; attempt++) {
        if (!fixed)
            s->port = 20000 + rand() % 40000;
        if (own_redis_answers(s->port)) {
            usleep(100000); /* someone else's: another port, or wait for ours to go */
            continue;
        }
        char port[16];
        snprintf(port, sizeof port, "%d", s->port);
        s->pid = fork();
        cr_assert(s->pid >= 0, "fork");
        if (s->pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 1);
            dup2(null, 2);
            execlp("redis-server", "redis-server", "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly",
                   "no", "--dir", "/tmp", (char *)NULL);
            _exit(127);
        }
        for (int i = 0; i < 100; i++) {
            if (waitpid(s->pid, NULL, WNOHANG) == s->pid)
                break; /* could not bind: another port */
            if (own_redis_answers(s->port))
                return;
            usleep(20000);
        }
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    cr_assert_fail("could not start a redis-server of its own");
}

static void own_redis_stop(struct own_redis *s)
{
    kill(s->pid, SIGCONT);
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
}

static void own_redis_command(const struct own_redis *s, const char *command)
{
    redisContext *rc = redisConnect("127.0.0.1", s->port);
    cr_assert(rc && !rc->err, "cannot reach the test's own redis");
    freeReplyObject(redisCommand(rc, command));
    redisFree(rc);
}

/* One command's answers, counted. */
struct rc_answer {
    int calls;
    bx_err e;
    int type;
    char str[64];
};

static void rc_answered(void *arg, bx_err e, const redisReply *r)
{
    struct rc_answer *a = arg;
    a->calls++;
    a->e = e;
    a->type = r ? r->type : -1;
    snprintf(a->str, sizeof a->str, "%s", r && r->str ? r->str : "");
}

static bool rc_has_answer(void *arg)
{
    return ((struct rc_answer *)arg)->calls > 0;
}

/* A connection on a private loop. */
struct rc_fixture {
    h2o_evloop_t *loop;
    struct redis_conn_config cfg;
    struct redis_conn *c;
};

static void rc_open(struct rc_fixture *f, int port, int64_t reply_wait_ms)
{
    signal(SIGPIPE, SIG_IGN); /* as the server: a write to a connection the server closed */
    f->loop = h2o_evloop_create();
    f->cfg = (struct redis_conn_config){.host = "127.0.0.1",
                                        .port = port,
                                        .name = "boxoffice-rc-test",
                                        .reply_wait_ms = reply_wait_ms,
                                        .retry_ms = 200,
                                        .max_queued = 4};
    f->c = redis_conn_open(f->loop, &f->cfg);
    cr_assert_not_null(f->c);
}

static void rc_close(struct rc_fixture *f)
{
    redis_conn_close(f->c);
    h2o_evloop_run(f->loop, 0);
    h2o_evloop_destroy(f->loop);
}

/* PING; -1 when refused at once, else the answer. */
static int rc_ping(struct rc_fixture *f, struct rc_answer *a)
{
    static const char *const ping[1] = {"PING"};
    *a = (struct rc_answer){0};
    h2o_evloop_run(f->loop, 0);
    if (redis_conn_command(f->c, 1, ping, NULL, rc_answered, a) != 0)
        return -1;
    cr_assert_eq(a->calls, 0, "never answered from inside the send");
    loop_run(f->loop, rc_has_answer, a);
    return 0;
}

/* PINGs until one is answered PONG (the connection came back), within 5 s. */
static void rc_until_pong(struct rc_fixture *f)
{
    for (int i = 0; i < 100; i++) {
        struct rc_answer a;
        if (rc_ping(f, &a) == 0 && a.e == BX_OK && strcmp(a.str, "PONG") == 0)
            return;
        h2o_evloop_run(f->loop, 50);
    }
    cr_assert_fail("the connection did not come back");
}

static bool rc_is_down(void *arg)
{
    return !redis_conn_is_up(arg);
}

Test(redis_conn, comes_back_after_client_kill_and_after_a_server_restart, .timeout = 60)
{
    struct own_redis s = {0};
    struct rc_fixture f;
    struct redis_conn_counters n;
    struct rc_answer a;
    own_redis_start(&s);
    rc_open(&f, s.port, 2000);
    rc_until_pong(&f);
    own_redis_command(&s, "CLIENT KILL TYPE normal SKIPME yes");
    loop_run(f.loop, rc_is_down, f.c);
    rc_until_pong(&f);
    redis_conn_counters(f.c, &n);
    cr_assert_eq(n.lost, 1);
    cr_assert_eq(n.connects, 2, "a connection that worked is replaced at once");

    own_redis_stop(&s);
    loop_run(f.loop, rc_is_down, f.c);
    for (int i = 0; i < 20 && rc_ping(&f, &a) == 0; i++)
        cr_assert_eq(a.e, BX_ERR_UNAVAILABLE); /* the first attempt fails; then refused at once */
    cr_assert_eq(rc_ping(&f, &a), -1, "refused at once while Redis is away");
    own_redis_start(&s); /* the same port */
    rc_until_pong(&f);
    redis_conn_counters(f.c, &n);
    cr_assert_gt(n.refused, 0);
    cr_assert_geq(n.connects, 4);
    rc_close(&f);
    own_redis_stop(&s);
}

struct timer_count {
    h2o_timeout_t timeout;
    h2o_timeout_entry_t entry;
    h2o_evloop_t *loop;
    int fired;
};

static void timer_fired(h2o_timeout_entry_t *entry)
{
    struct timer_count *t = H2O_STRUCT_FROM_MEMBER(struct timer_count, entry, entry);
    t->fired++;
    h2o_timeout_link(t->loop, &t->timeout, &t->entry);
}

static double mono_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

Test(redis_conn, a_frozen_server_fails_commands_at_their_deadline_while_the_loop_keeps_serving, .timeout = 60)
{
    struct own_redis s = {0};
    struct rc_fixture f;
    struct rc_answer stuck, refused;
    struct redis_conn_counters n;
    own_redis_start(&s);
    rc_open(&f, s.port, 300);
    rc_until_pong(&f);
    struct timer_count t = {.loop = f.loop, .entry = {.cb = timer_fired}};
    h2o_timeout_init(f.loop, &t.timeout, 20);
    h2o_timeout_link(f.loop, &t.timeout, &t.entry);

    kill(s.pid, SIGSTOP);
    double t0 = mono_seconds();
    cr_assert_eq(rc_ping(&f, &stuck), 0);
    double waited = mono_seconds() - t0;
    cr_assert_eq(stuck.e, BX_ERR_UNAVAILABLE);
    cr_assert(waited >= 0.29 && waited < 2.0, "answered after %.3f s, the deadline is 0.3 s", waited);
    cr_assert_geq(t.fired, 5, "the loop served its 20 ms timer meanwhile (%d times)", t.fired);
    redis_conn_counters(f.c, &n);
    cr_assert_eq(n.stuck, 1);
    cr_assert_eq(rc_ping(&f, &refused), -1, "refused at once after a stuck connection");

    struct rc_answer late = {0};
    static const char *const ping[1] = {"PING"};
    h2o_evloop_run(f.loop, 300); /* the retry: connects (the kernel accepts), set-up unanswered */
    int queued = redis_conn_command(f.c, 1, ping, NULL, rc_answered, &late);
    cr_assert_eq(queued, -1, "refused until a connection answers its set-up");
    kill(s.pid, SIGCONT);
    rc_until_pong(&f);
    for (int i = 0; i < 20; i++)
        h2o_evloop_run(f.loop, 10); /* a late PONG of the old connection would come now */
    cr_assert_eq(stuck.calls, 1, "answered exactly once: the late PONG was never read");
    cr_assert_eq(refused.calls + late.calls, 0, "a refused command is never answered");
    h2o_timeout_unlink(&t.entry);
    h2o_timeout_dispose(f.loop, &t.timeout);
    rc_close(&f);
    own_redis_stop(&s);
}

/* A library of this test process's own (so that other tests' libraries stay put). */
static void own_library(char *library, size_t cap, char *name, size_t ncap, const char *body)
{
    snprintf(name, ncap, "t%ld_echo", (long)getpid());
    snprintf(library, cap, "#!lua name=t%ld\nredis.register_function('%s', %s)", (long)getpid(), name, body);
}

Test(redis_conn, fcall_loads_the_library_when_the_server_lacks_it_once_per_call)
{
    struct rc_fixture f;
    struct redis_conn_counters n;
    const char *url = getenv("BOXOFFICE_TEST_REDIS_URL");
    int port = 0;
    cr_assert(url && sscanf(url, "redis://%*[^:]:%d", &port) == 1);
    rc_open(&f, port, 2000);
    char library[256], name[64];
    own_library(library, sizeof library, name, sizeof name, "function(keys, args) return 'echo:' .. args[1] end");
    struct redis_function fn = {.library = library, .name = name};
    redisContext *rc = test_redis();
    freeReplyObject(redisCommand(rc, "FUNCTION DELETE t%ld", (long)getpid())); /* a leftover of the same pid */
    const char *argv[2] = {"0", "hi"};
    for (int round = 0; round < 4; round++) {
        if (round == 2)
            freeReplyObject(redisCommand(rc, "FUNCTION DELETE t%ld", (long)getpid()));
        struct rc_answer a = {0};
        h2o_evloop_run(f.loop, 0);
        cr_assert_eq(redis_conn_fcall(f.c, &fn, 2, argv, NULL, rc_answered, &a), 0);
        loop_run(f.loop, rc_has_answer, &a);
        cr_assert_eq(a.e, BX_OK, "round %d", round);
        cr_assert_str_eq(a.str, "echo:hi");
        cr_assert_eq(a.calls, 1);
        redis_conn_counters(f.c, &n);
        cr_assert_eq(n.reloads, round < 2 ? 1 : 2, "loaded at first use and after it was deleted");
    }
    freeReplyObject(redisCommand(rc, "FUNCTION DELETE t%ld", (long)getpid()));
    /* a library the server refuses: the FCALL fails once, without a loop */
    own_library(library, sizeof library, name, sizeof name, "function(keys, args) return 1 end) syntax error (");
    struct rc_answer a = {0};
    h2o_evloop_run(f.loop, 0);
    cr_assert_eq(redis_conn_fcall(f.c, &fn, 2, argv, NULL, rc_answered, &a), 0);
    loop_run(f.loop, rc_has_answer, &a);
    cr_assert_eq(a.calls, 1);
    cr_assert_eq(a.e, BX_ERR_INTERNAL);
    cr_assert_str_eq(a.str, "ERR Function not found");
    redis_conn_counters(f.c, &n);
    cr_assert_eq(n.reloads, 3);
    cr_assert_eq(redis_conn_pending(f.c), 0);
    redisFree(rc);
    rc_close(&f);
}

/* The waiting room on a Redis restarted without persistence: keys and library are
 * gone; once the connection is back the library is loaded again and the room
 * works (from scratch: such a restart loses every place in line, DESIGN). */
Test(waitroom_redis, a_redis_restarted_without_the_library_gets_it_again, .timeout = 60)
{
    struct own_redis s = {0};
    own_redis_start(&s);
    char url[128], err[256] = "";
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0?prefix=%s", s.port, test_ns());
    struct waitroom_config c = config(1);
    struct waitroom *room = waitroom_redis_open(url, &c, err, sizeof err);
    cr_assert_not_null(room, "%s", err);
    struct room *w = room_port(room, true);
    struct queue_ticket a = issue(w, 1, 5, 0);
    cr_assert_eq(a.status, QUEUE_ACTIVE);
    own_redis_stop(&s);
    own_redis_start(&s);
    struct queue_ticket b;
    bool created = false;
    bx_err e = BX_ERR_UNAVAILABLE;
    for (int i = 0; i < 100 && e == BX_ERR_UNAVAILABLE; i++) {
        e = q_issue(w, 2, 5, 1, &b, &created);
        if (e == BX_ERR_UNAVAILABLE)
            usleep(50000);
    }
    cr_assert_eq(e, BX_OK);
    cr_assert_eq(b.status, QUEUE_ACTIVE, "an empty line again");
    struct redis_conn_counters n;
    redis_conn_counters(waitroom_redis_conn(w->p), &n);
    cr_assert_eq(n.reloads, 1);
    struct queue_ticket d = issue(w, 3, 5, 2);
    cr_assert_eq(d.position, 1);
    cr_assert_eq(q_complete(w, b.token, 2, 3), BX_OK);
    assert_active(w, &d, 4);
    room_close(w);
    own_redis_stop(&s);
}

Test(redis_conn, close_answers_every_command_in_flight_and_a_full_queue_refuses)
{
    struct rc_fixture f;
    const char *url = getenv("BOXOFFICE_TEST_REDIS_URL");
    int port = 0;
    cr_assert(url && sscanf(url, "redis://%*[^:]:%d", &port) == 1);
    rc_open(&f, port, 2000); /* max_queued 4 */
    struct rc_answer a = {0};
    rc_until_pong(&f);
    static const char *const ping[1] = {"PING"};
    struct rc_answer q[5] = {{0}};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(redis_conn_command(f.c, 1, ping, NULL, rc_answered, &q[i]), 0);
    cr_assert_eq(redis_conn_command(f.c, 1, ping, NULL, rc_answered, &q[4]), -1, "max_queued reached");
    redis_conn_close(f.c);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(q[i].calls, 1, "answered before close returned");
        cr_assert_eq(q[i].e, BX_ERR_UNAVAILABLE);
    }
    cr_assert_eq(q[4].calls, 0, "a refused command is never answered");
    (void)a;
    h2o_evloop_run(f.loop, 0);
    h2o_evloop_destroy(f.loop);
}

/* ---- Redis only: polls answered from the instance's view ---- */

/* Deep polls (past position 2) may be answered locally; nobody is admitted unless
 * active_max says so. */
static struct waitroom_config local_config(int64_t active_max, int64_t waiting_idle_ms)
{
    struct waitroom_config c = config(active_max);
    c.exact_poll_depth = 2;
    c.waiting_idle_ms = waiting_idle_ms;
    return c;
}

static uint64_t commands_sent(struct room *r)
{
    struct redis_conn_counters n;
    redis_conn_counters(waitroom_redis_conn(r->p), &n);
    return n.commands;
}

static struct waitroom_redis_counters counters_of(struct room *r)
{
    struct waitroom_redis_counters n;
    waitroom_redis_counters(r->w, &n);
    return n;
}

/* A poll answered without a round trip: its position. */
static int64_t local_position(struct room *w, const struct queue_ticket *t, int64_t now)
{
    uint64_t before = commands_sent(w), local = counters_of(w).polls_local;
    struct queue_ticket s = status_ok(w, t, now);
    cr_assert_eq(commands_sent(w), before, "user %lld: a round trip", (long long)t->user_id);
    cr_assert_eq(counters_of(w).polls_local, local + 1);
    cr_assert_eq(s.status, QUEUE_WAITING);
    return s.position;
}

/* A poll that went to Redis: its position. */
static int64_t exact_position(struct room *w, const struct queue_ticket *t, int64_t now)
{
    uint64_t local = counters_of(w).polls_local;
    struct queue_ticket s = status_ok(w, t, now);
    cr_assert_eq(counters_of(w).polls_local, local, "user %lld: answered locally", (long long)t->user_id);
    cr_assert_eq(s.status, QUEUE_WAITING);
    return s.position;
}

Test(waitroom_local, a_deep_poll_is_answered_from_the_view_without_a_round_trip)
{
    struct waitroom_config c = local_config(0, 120000);
    struct room *w = open_instance(&c);
    struct queue_ticket t[20];
    for (int i = 0; i < 20; i++)
        t[i] = issue(w, 1 + i, 7, 0);
    cr_assert_eq(exact_position(w, &t[9], 1000), 10, "no view before the first tick");
    cr_assert_eq(q_tick(w, 1000), BX_OK);
    cr_assert_eq(local_position(w, &t[9], 1100), 10);
    struct queue_ticket s = status_ok(w, &t[9], 1100);
    struct queue_pace pace = stats_of(w, 7).pace;
    cr_assert_eq(s.eta_seconds, queue_eta_seconds(10, &pace, 1100, &c));
    cr_assert_eq(s.poll_after_ms, queue_waiting_poll_after_ms(s.eta_seconds, &pace, &c));
    cr_assert_eq(exact_position(w, &t[1], 1100), 2, "near the head every answer is exact");
    cr_assert_eq(status_err(w, t[9].token, 99, 1100), BX_ERR_TOKEN_NOT_YOURS, "another user asks Redis");
    cr_assert_eq(q_tick(w, 1000), BX_OK); /* the view as of 1000 again */
    cr_assert_eq(exact_position(w, &t[9], 1301), 10, "a view older than 300 ms answers nothing");
    room_close(w);
}

/* Admissions since a token's exact read were all ahead of it (FIFO), so the
 * estimate never runs ahead of the true place; departures ahead make it lag,
 * by at most their count, and only while they stay under 1/16 of the position. */
Test(waitroom_local, local_positions_count_admissions_and_lag_departures_within_their_bound)
{
    struct waitroom_config c = local_config(1, 120000);
    struct room *a = open_instance(&c), *b = open_instance(&c);
    struct queue_ticket t[60];
    for (int i = 0; i < 60; i++) /* t[0] ACTIVE, t[i] at position i */
        t[i] = issue(a, 1 + i, 8, 0);
    cr_assert_eq(q_complete(b, t[0].token, 1, 10), BX_OK); /* through another instance: t[1] admitted */
    cr_assert_eq(q_tick(a, 20), BX_OK);
    cr_assert_eq(local_position(a, &t[50], 30), 49, "the admission is counted");
    cr_assert_eq(q_leave(b, t[3].token, 4, 40), BX_OK);
    cr_assert_eq(q_tick(a, 50), BX_OK);
    cr_assert_eq(local_position(a, &t[50], 60), 49, "one place behind (true: 48), within the bound of 1");
    for (int i = 4; i <= 6; i++)
        cr_assert_eq(q_leave(b, t[i].token, 1 + i, 70), BX_OK);
    cr_assert_eq(q_tick(a, 80), BX_OK);
    cr_assert_eq(exact_position(a, &t[50], 90), 45, "4 departures > 49 / 16: read again");
    cr_assert_eq(local_position(a, &t[50], 100), 45);
    room_close(a);
    room_close(b);
}

/* waiting_idle 1 s: the write-back runs every 250 ms. Everybody polls every 300 ms
 * (a third of waiting_idle, as pollAfterMs says), mostly answered locally, for
 * three idle periods: nobody expires. One token stops polling: it expires on time,
 * and its next poll is told so at once (silent for half of waiting_idle: exact). */
Test(waitroom_local, write_back_keeps_locally_polled_tokens_alive_and_idle_expiry_exact)
{
    struct waitroom_config c = local_config(0, 1000);
    struct room *w = open_instance(&c);
    struct queue_ticket t[10], quiet;
    for (int i = 0; i < 10; i++)
        t[i] = issue(w, 1 + i, 9, 0);
    quiet = issue(w, 100, 9, 0);
    for (int64_t now = 100; now <= 3000; now += 100) {
        cr_assert_eq(q_tick(w, now), BX_OK);
        for (int i = 0; i < 10 && now % 300 == 0; i++)
            cr_assert_eq(status_ok(w, &t[i], now).position, i + 1, "at %lld", (long long)now);
        if (now == 300)
            (void)status_ok(w, &quiet, now);
        if (now == 1200)
            cr_assert_eq(stats_of(w, 9).waiting, 11, "quiet, last seen at 300, still waits at 1200");
        if (now == 1300)
            cr_assert_eq(stats_of(w, 9).waiting, 10, "quiet expired idle at 1300");
    }
    struct waitroom_redis_counters n = counters_of(w);
    /* 100 polls, 80 of them past position 2; those right after quiet expired are read again */
    cr_assert_gt(n.polls_local, 60, "most polls answered locally (%llu)", (unsigned long long)n.polls_local);
    cr_assert_gt(n.written_back, 0);
    cr_assert_eq(status_err(w, quiet.token, 100, 3000), BX_ERR_TOKEN_EXPIRED);
    for (int i = 0; i < 10; i++) /* the view of 3000 is stale at 3400: Redis answers */
        cr_assert_eq(exact_position(w, &t[i], 3400), i + 1, "alive in Redis past three idle periods");
    room_close(w);
}

/* A token that left through another instance may still be answered WAITING by one
 * that answers it locally, until that one's next write-back (every second here):
 * the write-back finds it gone, and its next poll asks Redis. */
Test(waitroom_local, a_token_that_left_elsewhere_stops_being_answered_within_the_write_back_period)
{
    struct waitroom_config c = local_config(0, 4000);
    struct room *a = open_instance(&c), *b = open_instance(&c);
    struct queue_ticket t[40];
    for (int i = 0; i < 40; i++)
        t[i] = issue(a, 1 + i, 11, 0);
    cr_assert_eq(q_tick(a, 100), BX_OK);
    cr_assert_eq(local_position(a, &t[35], 150), 36);
    cr_assert_eq(q_leave(b, t[35].token, 36, 200), BX_OK);
    int64_t now = 200;
    for (; counters_of(a).gone == 0; now += 100) {
        cr_assert_leq(now, 1300, "not found gone within the write-back period");
        cr_assert_eq(q_tick(a, now), BX_OK);
        if (counters_of(a).gone == 0)
            cr_assert_eq(local_position(a, &t[35], now + 50), 36, "stale, within the bound");
    }
    cr_assert_eq(status_err(a, t[35].token, 36, now), BX_ERR_TOKEN_EXPIRED);
    room_close(a);
    room_close(b);
}

/* ---- Redis only: what an issue spends (redis_scripts.h) ---- */

/* Whether the concert is in the tick set (SISMEMBER on the side). */
static bool listed(int64_t concert)
{
    redisContext *rc = test_redis();
    redisReply *r = redisCommand(rc, "SISMEMBER %s:concerts %lld", test_ns(), (long long)concert);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    bool in = r->integer == 1;
    freeReplyObject(r);
    redisFree(rc);
    return in;
}

/* An issue admits at once only a token nobody waits ahead of; behind others it
 * waits, and admission happens when a slot frees or at the next tick, in order. */
Test(waitroom_redis, an_issue_behind_others_leaves_admission_to_the_tick_in_issue_order)
{
    struct waitroom_config c = config(1000);
    c.admit_rate = 2;
    struct room *w = open_instance(&c);
    struct queue_ticket a = issue(w, 1, 21, 0), b = issue(w, 2, 21, 0), d = issue(w, 3, 21, 0);
    cr_assert_eq(a.status, QUEUE_ACTIVE, "the bucket starts full: two at once");
    cr_assert_eq(b.status, QUEUE_ACTIVE);
    cr_assert_eq(d.position, 1, "the bucket is empty");
    struct queue_ticket e = issue(w, 4, 21, 600);
    cr_assert_eq(e.status, QUEUE_WAITING, "a slot's worth of budget, but d waits ahead: the tick admits");
    cr_assert_eq(e.position, 2);
    cr_assert_eq(stats_of(w, 21).active, 2);
    cr_assert_eq(q_tick(w, 600), BX_OK);
    assert_active(w, &d, 600);
    assert_position(w, &e, 600, 1);
    cr_assert_eq(q_tick(w, 1100), BX_OK);
    assert_active(w, &e, 1100);
    struct queue_ticket f = issue(w, 5, 21, 1600);
    cr_assert_eq(f.status, QUEUE_ACTIVE, "nobody waits, a slot and budget are free: at once");
    room_close(w);
}

/* Writes the tick set holds for a concert once: the issue into an empty concert
 * names it; issues behind others skip the SADD while this instance's view lists
 * it; a concert missing from the set (an SADD lost) is named again by the next
 * issue after a tick saw it missing. */
Test(waitroom_redis, issues_name_the_concert_in_the_tick_set_only_when_it_may_be_missing)
{
    struct waitroom_config c = config(1);
    struct room *w = open_instance(&c);
    uint64_t before = commands_sent(w);
    (void)issue(w, 1, 22, 0);
    cr_assert_eq(commands_sent(w) - before, 2, "FCALL, SADD");
    cr_assert(listed(22));
    before = commands_sent(w);
    (void)issue(w, 2, 22, 1);
    cr_assert_eq(commands_sent(w) - before, 2, "no tick yet: SADD again");
    cr_assert_eq(q_tick(w, 100), BX_OK);
    before = commands_sent(w);
    struct queue_ticket t3 = issue(w, 3, 22, 150);
    cr_assert_eq(commands_sent(w) - before, 1, "listed by the tick 50 ms ago, not empty: no SADD");
    before = commands_sent(w);
    (void)issue(w, 4, 22, 401);
    cr_assert_eq(commands_sent(w) - before, 2, "the view is over 300 ms old: SADD");
    redisContext *rc = test_redis();
    freeReplyObject(redisCommand(rc, "SREM %s:concerts 22", test_ns()));
    redisFree(rc);
    cr_assert_eq(q_tick(w, 500), BX_OK);
    before = commands_sent(w);
    (void)issue(w, 5, 22, 550);
    cr_assert_eq(commands_sent(w) - before, 2, "the tick did not find it: SADD");
    cr_assert(listed(22));
    cr_assert_eq(q_tick(w, 600), BX_OK);
    assert_position(w, &t3, 600, 2);
    room_close(w);
}

/* The housekeeping forgets an empty concert an hour after its last issue, never
 * sooner, whether that issue found the line empty (st written, exact) or joined
 * others (the next tick writes its own time). */
Test(waitroom_redis, an_empty_concert_is_forgotten_no_sooner_than_an_hour_after_an_issue_behind_others)
{
    struct waitroom_config c = config(1);
    struct room *w = open_instance(&c);
    struct queue_ticket a = issue(w, 1, 23, 0), b = issue(w, 2, 23, 1000), d = issue(w, 3, 23, 2000);
    cr_assert_eq(d.position, 2, "issued behind b");
    cr_assert_eq(q_tick(w, 2050), BX_OK);
    cr_assert_eq(q_leave(w, a.token, 1, 3000), BX_OK);
    cr_assert_eq(q_leave(w, b.token, 2, 3000), BX_OK);
    cr_assert_eq(q_leave(w, d.token, 3, 3000), BX_OK);
    cr_assert_eq(q_tick(w, 3601999), BX_OK);
    cr_assert(listed(23), "an hour after d's issue less a millisecond: kept");
    cr_assert_eq(q_tick(w, 3602049), BX_OK);
    cr_assert(listed(23), "the tick noted d's issue at 2050: kept until 3602050");
    cr_assert_eq(q_tick(w, 3602050), BX_OK);
    cr_assert_not(listed(23), "forgotten");
    room_close(w);
}

Test(waitroom_local, a_tick_never_overlaps_the_one_in_flight)
{
    struct waitroom_config c = config(1);
    struct room *w = open_instance(&c), *other = room_port(w->w, false);
    (void)issue(w, 1, 12, 0);
    struct answer first = {0}, second = {0}, third = {0};
    room_ready(w, 10);
    waitroom_tick(w->p, 10, answered, &first);
    cr_assert_not(first.fired, "a tick needs Redis");
    waitroom_tick(w->p, 20, answered, &second);
    cr_assert(second.fired && second.e == BX_OK, "skipped at once");
    waitroom_tick(other->p, 20, answered, &third);
    cr_assert(third.fired && third.e == BX_OK, "from another loop too");
    cr_assert_eq(await(w, &first), BX_OK);
    struct waitroom_redis_counters n = counters_of(w);
    cr_assert_eq(n.ticks, 1);
    cr_assert_eq(n.ticks_skipped, 2);
    cr_assert_eq(q_tick(other, 30), BX_OK);
    cr_assert_eq(counters_of(w).ticks, 2, "the next one runs");
    room_close(other);
    room_close(w);
}
/* ---- Redis only: per-user rate limits shared by the instances (queue/ratelimit_redis.c) ---- */

struct take_answer {
    bool fired;
    bx_err e;
    int64_t wait_ms;
};

static void taken(void *arg, bx_err e, int64_t wait_ms)
{
    struct take_answer *a = arg;
    *a = (struct take_answer){.fired = true, .e = e, .wait_ms = wait_ms};
}

static bool take_answered(void *arg)
{
    return ((struct take_answer *)arg)->fired;
}

/* One take through room r's connection: the wait (0 = allowed). */
static int64_t take(struct room *r, const struct ratelimit_redis *rl, uint64_t key, int64_t now)
{
    struct take_answer a = {0};
    room_ready(r, now);
    cr_assert_eq(ratelimit_redis_take(rl, waitroom_redis_conn(r->p), key, now, taken, &a), 0);
    cr_assert_not(a.fired, "never answered from inside the send");
    loop_run(r->loop, take_answered, &a);
    cr_assert_eq(a.e, BX_OK, "take: %s", bx_err_info(a.e)->code);
    return a.wait_ms;
}

Test(shared_limits, a_burst_is_allowed_then_refused_with_the_wait_until_the_next_token)
{
    struct waitroom_config c = config(1);
    struct room *r = open_instance(&c);
    struct ratelimit_redis *rl = ratelimit_redis_new(test_ns(), 2.0, 5.0);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(take(r, rl, 42, 1000000), 0, "request %d of the burst", i);
    cr_assert_eq(take(r, rl, 42, 1000000), 500, "one token at 2/s takes 500 ms");
    cr_assert_eq(take(r, rl, 42, 1000499), 1);
    cr_assert_eq(take(r, rl, 42, 1000500), 0, "the token came");
    cr_assert_gt(take(r, rl, 42, 1000500), 0);
    cr_assert_eq(take(r, rl, 43, 1000500), 0, "another key has its own bucket");
    ratelimit_redis_free(rl);
    room_close(r);
}

Test(shared_limits, tokens_refill_at_the_rate_up_to_the_burst_and_a_full_bucket_leaves_redis)
{
    struct waitroom_config c = config(1);
    struct room *r = open_instance(&c);
    struct ratelimit_redis *rl = ratelimit_redis_new(test_ns(), 10.0, 3.0);
    int64_t now = 2000000;
    for (int i = 0; i < 3; i++)
        cr_assert_eq(take(r, rl, 7, now), 0);
    cr_assert_gt(take(r, rl, 7, now), 0);
    cr_assert_eq(take(r, rl, 7, now + 100), 0, "100 ms at 10/s gives one token back");
    cr_assert_gt(take(r, rl, 7, now + 100), 0);
    for (int i = 0; i < 3; i++) /* a long pause refills only up to the burst */
        cr_assert_eq(take(r, rl, 7, now + 60000), 0);
    cr_assert_gt(take(r, rl, 7, now + 60000), 0);
    /* the key lives only until its bucket would be full again: 300 ms here */
    redisContext *rc = test_redis();
    redisReply *ttl = redisCommand(rc, "PTTL %s:rl:%016llx", test_ns(), 7ULL);
    cr_assert(ttl && ttl->type == REDIS_REPLY_INTEGER && ttl->integer > 0 && ttl->integer <= 300,
              "PTTL of the bucket: %lld", ttl ? ttl->integer : -99);
    freeReplyObject(ttl);
    redisFree(rc);
    ratelimit_redis_free(rl);
    room_close(r);
}

Test(shared_limits, a_rate_of_no_whole_number_of_ms_per_token_keeps_its_pace)
{
    struct waitroom_config c = config(1);
    struct room *r = open_instance(&c);
    struct ratelimit_redis *rl = ratelimit_redis_new(test_ns(), 3.0, 2.0);
    int allowed = 0;
    for (int64_t ms = 0; ms <= 3000; ms++) /* a take every millisecond for 3 s */
        allowed += take(r, rl, 5, 4000000 + ms) == 0;
    /* the burst of 2, then one token each 333.3 ms: 1000, 2000 and 3000 ms are on the
     * dot, where a rounding error must not refuse */
    cr_assert_eq(allowed, 2 + 9, "%d allowed", allowed);
    ratelimit_redis_free(rl);
    room_close(r);
}

Test(shared_limits, two_instances_together_allow_the_rate_once)
{
    struct waitroom_config c = config(1);
    struct room *a = open_instance(&c), *b = open_instance(&c);
    struct ratelimit_redis *la = ratelimit_redis_new(test_ns(), 1.0, 4.0), *lb = ratelimit_redis_new(test_ns(), 1.0, 4.0);
    int allowed = 0;
    for (int i = 0; i < 20; i++) /* 20 requests in 1.14 s, alternately through each instance */
        allowed += take(i % 2 ? b : a, i % 2 ? lb : la, 99, 3000000 + i * 60) == 0;
    cr_assert_eq(allowed, 4 + 1, "the burst of 4, then the token of the first second at 1/s: %d", allowed);
    ratelimit_redis_free(la);
    ratelimit_redis_free(lb);
    room_close(b);
    room_close(a);
}

Test(shared_limits, a_zero_rate_is_off_and_needs_no_call)
{
    struct ratelimit_redis *rl = ratelimit_redis_new("bx", 0, 10);
    cr_assert(ratelimit_redis_off(rl));
    ratelimit_redis_free(rl);
}
#endif
