/* test_faults.c — dependency faults (scale-out mode): PostgreSQL, then Redis, is
 * stopped for a few seconds under a mixed load through nginx and started again on
 * the same port. While one is down every request that needs it answers 503
 * UNAVAILABLE (the API's error shape) within the request timeout, never a hang and
 * never a 2xx, and /readyz of both instances says not ready; once it is back, both
 * instances serve again without a restart, no acknowledged charge or payment is
 * lost or doubled, and `boxoffice audit` is clean.
 * The shared PostgreSQL and Redis of the run serve other tests at the same time, so
 * each test here starts its own (tests/harness/pg.sh, redis.sh with AOF, as
 * deploy/redis.conf asks) in a directory of its own and points the harness at them.
 * Embedded mode has no dependency to stop: there the tests skip (scale-out only).
 * Worker threads never assert; the main thread judges and prints "figure:" lines. */
#define _GNU_SOURCE
#include "harness.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct bx_server srv;
static char svc_dir[256];
static bool pg_started, redis_started;

static void teardown(void)
{
    bx_server_cleanup(&srv); /* drops the database and the keys on the private servers */
    if (svc_dir[0] != '\0') {
        char d[300];
        if (pg_started) {
            snprintf(d, sizeof d, "%s/pg", svc_dir);
            bx_pg_stop(d);
        }
        if (redis_started) {
            snprintf(d, sizeof d, "%s/redis", svc_dir);
            bx_redis_stop(d);
        }
        if (getenv("BOXOFFICE_TEST_KEEP") == NULL)
            bx_remove_tree(svc_dir);
        svc_dir[0] = '\0';
    }
}

TestSuite(faults, .fini = teardown, .timeout = 180);

static bool embedded_run(void)
{
    const char *m = getenv("BOXOFFICE_TEST_MODE");
    return m == NULL || *m == '\0' || strcmp(m, "embedded") == 0;
}

/* Private PostgreSQL + Redis, then both instances and nginx on them. */
static void start_private(char *pg_dir, char *redis_dir, size_t len, int *redis_port)
{
    snprintf(svc_dir, sizeof svc_dir, "/tmp/bx-faults-XXXXXX");
    cr_assert(mkdtemp(svc_dir) != NULL, "mkdtemp");
    snprintf(pg_dir, len, "%s/pg", svc_dir);
    snprintf(redis_dir, len, "%s/redis", svc_dir);
    char pg_url[256], redis_url[256];
    bx_pg_start(pg_dir, pg_url, sizeof pg_url);
    pg_started = true;
    bx_redis_start(redis_dir, 0, true, redis_url, sizeof redis_url);
    redis_started = true;
    /* "redis://127.0.0.1:PORT/0" → PORT */
    const char *colon = strrchr(redis_url, ':');
    *redis_port = colon ? atoi(colon + 1) : -1;
    cr_assert(*redis_port > 0, "no port in %s", redis_url);
    setenv("BOXOFFICE_TEST_PG_URL", pg_url, 1);
    setenv("BOXOFFICE_TEST_REDIS_URL", redis_url, 1);
    srv.mode = BX_MODE_SCALEOUT;
    BX_START(&srv, "--rate-limit", "0", "--max-seats-per-user", "10000");
}

/* ------------------------------------------------------------ the load */

enum op { OP_ISSUE, OP_CHARGE, OP_HOLD, OP_PAY, OP_BALANCE, OP_STATUS, OP_SEATS, OP__N };
static const char *const op_name[OP__N] = {"queue token", "charge", "hold", "payment", "balance", "queue status",
                                           "seat map"};
static const bool needs_pg[OP__N] = {true, true, true, true, true, false, true};
static const bool needs_redis[OP__N] = {true, false, true, true, false, true, true};

struct sample {
    int64_t t0, t1; /* monotonic ms: sent, answered */
    short status;
    unsigned char op;
    bool unavailable; /* 503 with {"error":{"code":"UNAVAILABLE",...}} */
};

enum { WORKERS = 4, MAXS = 60000, PRICE = 1000, CHARGE = 1000 };
/* from this long after the dependency is back (its start returned: on a loaded
 * machine PostgreSQL's own start takes seconds) nothing may fail: one reconnect
 * interval (1 s) and a margin */
enum { SETTLE_MS = 2000 };

struct worker {
    int idx;
    char at[256];
    int64_t cid, sid;
    volatile int *stop;
    struct sample *s;
    int ns;
    int64_t charged, paid_sum;
    int charges, payments, holds, adopted;
    int unexpected;
    char err[600];
};

static void w_note(struct worker *w, const char *what, const struct bx_resp *r)
{
    w->unexpected++;
    if (w->err[0] == '\0')
        snprintf(w->err, sizeof w->err, "%s: %ld %.200s%.100s", what, r->status, r->body, r->status ? "" : r->error);
}

static struct bx_resp *w_do(struct worker *w, struct bx_client *c, enum op op, const char *method, const char *path,
                            const struct bx_req *rq, json_t *body)
{
    int64_t t0 = bx_now_ms();
    struct bx_resp *r = bx_http_json(c, method, path, rq, body);
    if (w->ns < MAXS)
        w->s[w->ns++] = (struct sample){.t0 = t0,
                                        .t1 = bx_now_ms(),
                                        .status = (short)r->status,
                                        .op = (unsigned char)op,
                                        .unavailable = r->status == 503 && bx_is_error_shape(r) &&
                                                       strcmp(bx_err_code(r), "UNAVAILABLE") == 0};
    if (r->status == 0)
        bx_client_reset(c);
    return r;
}

static bool refused_for_outage(const struct bx_resp *r)
{
    return r->status == 503 || r->status == 502 || r->status == 0;
}

/* Each round: three reads and the pending write. The writes cycle queue token →
 * charge → hold → payment; a write refused for the outage stays pending and is
 * sent again as it was (same Idempotency-Key). */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct bx_client c;
    bx_client_init(&c, &srv);
    enum op pending = OP_ISSUE;
    char qt[64] = "", key[64] = "";
    int seat = 0, round = 0;
    int64_t rid = 0;
    while (!*w->stop && w->unexpected == 0) {
        bool outage = false;
        struct bx_resp *r = w_do(w, &c, OP_BALANCE, "GET", "/api/v1/users/me/balance",
                                 &(struct bx_req){.bearer = w->at}, NULL);
        outage |= refused_for_outage(r);
        if (qt[0] != '\0') {
            r = w_do(w, &c, OP_STATUS, "GET", "/api/v1/queue/status", &(struct bx_req){.bearer = w->at, .queue_token = qt},
                     NULL);
            outage |= refused_for_outage(r);
            r = w_do(w, &c, OP_SEATS, "GET", bx_str(&c, "/api/v1/schedules/%lld/seats", (long long)w->sid),
                     &(struct bx_req){.bearer = w->at, .queue_token = qt}, NULL);
            outage |= refused_for_outage(r);
        }
        switch (pending) {
        case OP_ISSUE:
            r = w_do(w, &c, OP_ISSUE, "POST", bx_str(&c, "/api/v1/concerts/%lld/queue/tokens", (long long)w->cid),
                     &(struct bx_req){.bearer = w->at}, NULL);
            if ((r->status == 200 || r->status == 201) && strcmp(bx_jstr(r->json, "status"), "ACTIVE") == 0) {
                snprintf(qt, sizeof qt, "%s", bx_jstr(r->json, "token"));
                pending = OP_CHARGE;
                snprintf(key, sizeof key, "fault-charge-%d-%d", w->idx, round);
            } else if (!refused_for_outage(r)) {
                w_note(w, "queue token", r);
            }
            break;
        case OP_CHARGE:
            r = w_do(w, &c, OP_CHARGE, "POST", "/api/v1/users/me/balance/charge",
                     &(struct bx_req){.bearer = w->at, .idem_key = key}, json_pack("{s:i}", "amount", CHARGE));
            if (r->status == 200) {
                w->charged += CHARGE;
                w->charges++;
                pending = OP_HOLD;
                seat++;
            } else if (!refused_for_outage(r)) {
                w_note(w, "charge", r);
            }
            break;
        case OP_HOLD:
            r = w_do(w, &c, OP_HOLD, "POST", "/api/v1/reservations", &(struct bx_req){.bearer = w->at, .queue_token = qt},
                     json_pack("{s:I,s:i}", "scheduleId", (json_int_t)w->sid, "seatNo", seat));
            if (r->status == 201) {
                rid = bx_jint(r->json, "reservationId");
                w->holds++;
            } else if (r->status == 409 && strcmp(bx_err_code(r), "SEAT_UNAVAILABLE") == 0) {
                /* a hold committed while its answer was a 503: it is ours */
                struct bx_resp *l = bx_http(&c, "GET", "/api/v1/users/me/reservations", &(struct bx_req){.bearer = w->at});
                size_t x;
                json_t *res;
                json_array_foreach(json_object_get(l->json, "reservations"), x, res)
                {
                    if (bx_jint(res, "seatNo") == seat && strcmp(bx_jstr(res, "status"), "HELD") == 0)
                        rid = bx_jint(res, "reservationId");
                }
                if (rid > 0)
                    w->adopted++;
                else if (!refused_for_outage(l))
                    w_note(w, "hold (seat taken, not by us)", r);
            } else if (!refused_for_outage(r)) {
                w_note(w, "hold", r);
            }
            if (rid > 0) {
                pending = OP_PAY;
                snprintf(key, sizeof key, "fault-pay-%lld", (long long)rid);
            }
            break;
        case OP_PAY:
            r = w_do(w, &c, OP_PAY, "POST", "/api/v1/payments",
                     &(struct bx_req){.bearer = w->at, .queue_token = qt, .idem_key = key},
                     json_pack("{s:I}", "reservationId", (json_int_t)rid));
            if (r->status == 201) {
                w->payments++;
                w->paid_sum += bx_jint(r->json, "amount");
                rid = 0;
                qt[0] = '\0'; /* spent */
                pending = OP_ISSUE;
                round++;
            } else if (!refused_for_outage(r)) {
                w_note(w, "payment", r);
            }
            break;
        default:
            break;
        }
        outage |= refused_for_outage(r);
        if (outage)
            bx_sleep_ms(20);
        if (w->ns >= MAXS - 8) /* keep the record of the outage: slow down */
            bx_sleep_ms(50);
    }
    bx_client_release(&c);
    return NULL;
}

/* ------------------------------------------------------------ readiness */

static long readyz(int i)
{
    struct bx_client c;
    bx_client_init_instance(&c, &srv, i);
    long st = bx_http(&c, "GET", "/readyz", NULL)->status;
    bx_client_release(&c);
    return st;
}

/* ms until both instances' /readyz answer `want` (-1 after timeout_ms) */
static int64_t wait_readyz(long want, int timeout_ms)
{
    int64_t t0 = bx_now_ms();
    while (bx_now_ms() - t0 < timeout_ms) {
        if (readyz(0) == want && readyz(1) == want)
            return bx_now_ms() - t0;
        bx_sleep_ms(20);
    }
    return -1;
}

/* ------------------------------------------------------------ the scenario */

struct outage {
    const char *what; /* "PostgreSQL" / "Redis" */
    const bool *needs;
    int64_t down_at, up_at, back_at, ready_at; /* stopped (confirmed), start begun, start done, both ready again */
};

static void run_outage(struct outage *o, void (*stop_fn)(void), void (*start_fn)(void))
{
    struct bx_client c;
    bx_client_init(&c, &srv);
    int64_t cid = bx_admin_concert(&c, bx_str(&c, "%s down", o->what));
    struct worker *w = calloc(WORKERS, sizeof *w);
    cr_assert(w != NULL);
    volatile int stop = 0;
    for (int i = 0; i < WORKERS; i++) {
        w[i].idx = i;
        w[i].cid = cid;
        w[i].stop = &stop;
        w[i].sid = bx_admin_schedule(&c, cid, 5000, PRICE);
        snprintf(w[i].at, sizeof w[i].at, "%s", bx_user(&c, bx_str(&c, "fault-%d", i), NULL));
        w[i].s = calloc(MAXS, sizeof *w[i].s);
        cr_assert(w[i].s != NULL);
    }
    pid_t pids[2] = {srv.inst[0].pid, srv.inst[1].pid};
    pthread_t th[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);

    bx_sleep_ms(1000);
    stop_fn();
    o->down_at = bx_now_ms();
    int64_t notready_ms = wait_readyz(503, 5000);
    /* down for three seconds; readiness must stay "not ready" all along */
    int ready_while_down = 0, readyz_polls = 0;
    while (bx_now_ms() - o->down_at < 3000) {
        for (int i = 0; i < 2; i++) {
            readyz_polls++;
            ready_while_down += readyz(i) == 200;
        }
        bx_sleep_ms(100);
    }
    struct bx_resp *via_nginx = bx_http(&c, "GET", "/readyz", NULL);
    long nginx_readyz = via_nginx->status;
    char readyz_body[200];
    snprintf(readyz_body, sizeof readyz_body, "%s", via_nginx->body);
    o->up_at = bx_now_ms();
    start_fn();
    o->back_at = bx_now_ms();
    int64_t started_ms = o->back_at - o->up_at;
    int64_t ready_ms = wait_readyz(200, 15000);
    o->ready_at = bx_now_ms();
    /* each event loop reconnects on its own, at most once a second (DESIGN.md), so a
     * loop may refuse for up to ~1 s after another one made /readyz say ready */
    bx_sleep_ms(3000);
    stop = 1;
    for (int i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);

    /* judge the samples */
    int during[OP__N] = {0}, ok_during[OP__N] = {0}, unavail_during[OP__N] = {0}, other_during[OP__N] = {0};
    int after[OP__N] = {0}, fail_after[OP__N] = {0};
    int64_t worst_during = 0, worst_all = 0, first_write_after = -1, last_fail_after = -1;
    int fail_settling = 0;
    const char *first_bad = NULL;
    for (int i = 0; i < WORKERS; i++) {
        cr_assert(w[i].unexpected == 0, "worker %d: %s", i, w[i].err);
        for (int k = 0; k < w[i].ns; k++) {
            struct sample *s = &w[i].s[k];
            int64_t lat = s->t1 - s->t0;
            worst_all = lat > worst_all ? lat : worst_all;
            if (s->t0 >= o->down_at && s->t1 <= o->up_at) {
                during[s->op]++;
                worst_during = lat > worst_during ? lat : worst_during;
                if (s->status >= 200 && s->status < 300)
                    ok_during[s->op]++;
                else if (s->unavailable)
                    unavail_during[s->op]++;
                else {
                    other_during[s->op]++;
                    if (first_bad == NULL)
                        first_bad = bx_str(&c, "%s answered %d during the outage", op_name[s->op], s->status);
                }
            }
            if (s->t0 >= o->up_at && (s->op == OP_CHARGE || s->op == OP_PAY) && s->status >= 200 && s->status < 300 &&
                (first_write_after < 0 || s->t1 - o->up_at < first_write_after))
                first_write_after = s->t1 - o->up_at;
            bool failed = s->status >= 500 || s->status == 0;
            if (s->t0 >= o->up_at && failed && s->t1 - o->up_at > last_fail_after)
                last_fail_after = s->t1 - o->up_at;
            if (s->t0 >= o->back_at + SETTLE_MS) {
                after[s->op]++;
                fail_after[s->op] += failed;
            } else if (s->t0 >= o->up_at) {
                fail_settling += failed;
            }
        }
    }
    char line[1024];
    size_t used = 0;
    int refused = 0, served = 0, n_after = 0, n_fail_after = 0;
    for (int op = 0; op < OP__N; op++) {
        n_after += after[op];
        n_fail_after += fail_after[op];
    }
    for (int op = 0; op < OP__N; op++) {
        used += (size_t)snprintf(line + used, sizeof line - used, "%s%s %d/%d", op ? ", " : "", op_name[op],
                                 o->needs[op] ? unavail_during[op] : ok_during[op], during[op]);
        refused += unavail_during[op];
        served += ok_during[op];
    }
    printf("figure: %s down 3 s under load (%d clients through nginx): %d requests during the outage, %d answered 503 "
           "UNAVAILABLE, %d served (endpoints that do not need it), 0 hangs: slowest answer during the outage %lld "
           "ms (slowest of the whole run %lld ms); per endpoint [503 for those needing %s, else 2xx] %s\n",
           o->what, WORKERS, refused + served, refused, served, (long long)worst_during, (long long)worst_all, o->what,
           line);
    printf("figure: %s down: both /readyz 503 %lld ms after the stop (through nginx: %ld %s), %d of %d readiness polls "
           "said ready while down; %s back in %lld ms, both instances ready %lld ms later, first charge/payment "
           "acknowledged %lld ms after the start, no instance restarted; %d requests refused while the loops reconnected, the "
           "last %lld ms after the start; from %d s after it was back: %d requests, %d failed\n",
           o->what, (long long)notready_ms, nginx_readyz, readyz_body, ready_while_down, readyz_polls, o->what,
           (long long)started_ms, (long long)ready_ms, (long long)first_write_after, fail_settling,
           (long long)last_fail_after, SETTLE_MS / 1000, n_after, n_fail_after);
    fflush(stdout);

    cr_assert(notready_ms >= 0, "/readyz did not turn 503 within 5 s of %s stopping", o->what);
    cr_assert_eq(ready_while_down, 0, "/readyz said ready %d times while %s was down", ready_while_down, o->what);
    cr_assert_eq(nginx_readyz, 503, "/readyz through nginx while %s was down: %ld", o->what, nginx_readyz);
    cr_assert(ready_ms >= 0, "both instances not ready within 15 s of %s coming back", o->what);
    for (int op = 0; op < OP__N; op++) {
        cr_assert_eq(other_during[op], 0, "%s", first_bad);
        if (o->needs[op])
            cr_assert_eq(ok_during[op], 0, "%s answered 2xx %d times while %s was down", op_name[op], ok_during[op],
                         o->what);
        cr_assert_eq(fail_after[op], 0, "%s failed %d of %d times from %d s after %s was back", op_name[op],
                     fail_after[op], after[op], SETTLE_MS / 1000, o->what);
    }
    cr_assert(refused > 0, "no request met the %s outage", o->what);
    cr_assert(worst_during < 5000, "a request took %lld ms while %s was down", (long long)worst_during, o->what);
    cr_assert(first_write_after >= 0, "no charge or payment acknowledged after %s came back", o->what);
    cr_assert(srv.inst[0].pid == pids[0] && srv.inst[1].pid == pids[1] && kill(pids[0], 0) == 0 &&
                  kill(pids[1], 0) == 0,
              "an instance was restarted or died");

    /* money: exactly the acknowledged charges and payments */
    int charges = 0, payments = 0, adopted = 0;
    for (int i = 0; i < WORKERS; i++) {
        charges += w[i].charges;
        payments += w[i].payments;
        adopted += w[i].adopted;
        cr_assert_eq(bx_balance(&c, w[i].at), w[i].charged - w[i].paid_sum, "worker %d: balance != %lld - %lld", i,
                     (long long)w[i].charged, (long long)w[i].paid_sum);
        int seen = 0;
        char before[64] = "";
        for (;;) {
            struct bx_resp *r = bx_http(&c, "GET", bx_str(&c, "/api/v1/users/me/payments?limit=100%s", before),
                                        &(struct bx_req){.bearer = w[i].at});
            bx_expect(r, 200, NULL);
            seen += (int)json_array_size(json_object_get(r->json, "payments"));
            if (!json_is_integer(json_object_get(r->json, "nextBefore")))
                break;
            snprintf(before, sizeof before, "&before=%lld", (long long)bx_jint(r->json, "nextBefore"));
        }
        cr_assert_eq(seen, w[i].payments, "worker %d: %d payments in the history, %d acknowledged", i, seen,
                     w[i].payments);
    }
    char *out = NULL;
    int rc = bx_audit(&srv, &out);
    cr_assert_eq(rc, 0, "audit after the %s outage: exit %d:\n%s", o->what, rc, out);
    free(out);
    printf("audit: clean after %s was down under load; %d charges and %d payments acknowledged = in the database "
           "(%d holds found as ours after a 503)\n",
           o->what, charges, payments, adopted);
    fflush(stdout);
    for (int i = 0; i < WORKERS; i++)
        free(w[i].s);
    free(w);
    bx_client_release(&c);
}

static char pg_dir[300], redis_dir[300];
static int redis_port;

static void pg_down(void)
{
    cr_assert_eq(bx_pg_stop(pg_dir), 0, "pg.sh stop");
}

static void pg_up(void)
{
    char url[256];
    bx_pg_start(pg_dir, url, sizeof url);
    cr_assert_str_eq(url, getenv("BOXOFFICE_TEST_PG_URL"), "PostgreSQL came back on another port");
}

static void redis_down(void)
{
    cr_assert_eq(bx_redis_stop(redis_dir), 0, "redis.sh stop");
}

static void redis_up(void)
{
    char url[256];
    bx_redis_start(redis_dir, redis_port, true, url, sizeof url);
}

Test(faults, postgresql_down_under_load_answers_503_and_service_resumes_without_a_restart)
{
    if (embedded_run())
        cr_skip_test("scale-out only: embedded mode has no PostgreSQL to stop");
    start_private(pg_dir, redis_dir, sizeof pg_dir, &redis_port);
    struct outage o = {.what = "PostgreSQL", .needs = needs_pg};
    run_outage(&o, pg_down, pg_up);
}

Test(faults, redis_down_under_load_answers_503_for_the_queue_and_service_resumes_without_a_restart)
{
    if (embedded_run())
        cr_skip_test("scale-out only: embedded mode has no Redis to stop");
    start_private(pg_dir, redis_dir, sizeof pg_dir, &redis_port);
    struct outage o = {.what = "Redis", .needs = needs_redis};
    run_outage(&o, redis_down, redis_up);
}

/* ------------------------------------------------------------ a frozen PostgreSQL */

/* Sends sig to the private server's postmaster and every process it started
 * (SIGSTOP: what a hung host, or a partition that still ACKs, looks like). */
static void pg_signal_all(int sig)
{
    char path[400], line[64];
    snprintf(path, sizeof path, "%s/pgdata/postmaster.pid", pg_dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "no %s", path);
    cr_assert_not_null(fgets(line, sizeof line, f));
    fclose(f);
    pid_t pm = (pid_t)atoi(line);
    cr_assert(pm > 0);
    kill(pm, sig);
    DIR *proc = opendir("/proc");
    cr_assert_not_null(proc);
    struct dirent *d;
    while ((d = readdir(proc)) != NULL) {
        pid_t pid = (pid_t)atoi(d->d_name);
        if (pid <= 0)
            continue;
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        f = fopen(path, "r");
        if (f == NULL)
            continue;
        int ppid = 0;
        /* pid (comm) state ppid: comm may hold spaces, so skip past its ')' */
        char buf[512];
        if (fgets(buf, sizeof buf, f) != NULL) {
            char *close = strrchr(buf, ')');
            if (close != NULL)
                sscanf(close + 2, "%*c %d", &ppid);
        }
        fclose(f);
        if (ppid == pm)
            kill(pid, sig);
    }
    closedir(proc);
}

/* Booking traffic that keeps statements in flight while PostgreSQL is frozen. */
struct booker {
    char at[256], qt[64];
    int64_t sid;
    int inst;
    volatile int *stop;
    int answered;
};

static void *booker_main(void *arg)
{
    struct booker *b = arg;
    struct bx_client c;
    bx_client_init_instance(&c, &srv, b->inst);
    while (!*b->stop) {
        struct bx_resp *r = bx_http(&c, "GET", bx_str(&c, "/api/v1/schedules/%lld/seats", (long long)b->sid),
                                    &(struct bx_req){.bearer = b->at, .queue_token = b->qt});
        b->answered += r->status != 0;
        if (r->status == 0)
            bx_client_reset(&c);
    }
    bx_client_release(&c);
    return NULL;
}

/* GET path on a new connection to instance i: the status, and the time it took. */
static long probe(int i, const char *path, const char *bearer, const char *qtoken, int64_t *ms)
{
    char req[1024], out[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s%s%s%s%s\r\n", path,
                     bearer ? "Authorization: Bearer " : "", bearer ? bearer : "", bearer ? "\r\n" : "",
                     qtoken ? "X-Queue-Token: " : "", qtoken ? qtoken : "", qtoken ? "\r\n" : "");
    int64_t t0 = bx_now_ms();
    long status = bx_raw_http(srv.inst[i].port, req, (size_t)n, 10000, out, sizeof out, NULL);
    *ms = bx_now_ms() - t0;
    return status;
}

Test(faults, a_frozen_postgresql_freezes_neither_health_checks_nor_waiting_polls_and_bookings_recover)
{
    if (embedded_run())
        cr_skip_test("scale-out only: embedded mode has no PostgreSQL to freeze");
    enum { FREEZE_MS = 5000, PROBE_BOUND_MS = 1000, BOOKING_BOUND_MS = 8000, RECOVER_MS = 10000 };
    snprintf(svc_dir, sizeof svc_dir, "/tmp/bx-frozen-XXXXXX");
    cr_assert(mkdtemp(svc_dir) != NULL, "mkdtemp");
    snprintf(pg_dir, sizeof pg_dir, "%s/pg", svc_dir);
    snprintf(redis_dir, sizeof redis_dir, "%s/redis", svc_dir);
    char pg_url[256], redis_url[256];
    bx_pg_start(pg_dir, pg_url, sizeof pg_url);
    pg_started = true;
    bx_redis_start(redis_dir, 0, true, redis_url, sizeof redis_url);
    redis_started = true;
    setenv("BOXOFFICE_TEST_PG_URL", pg_url, 1);
    setenv("BOXOFFICE_TEST_REDIS_URL", redis_url, 1);
    srv.mode = BX_MODE_SCALEOUT;
    BX_START(&srv, "--rate-limit", "0", "--active-max", "1", "--threads", "2");

    struct bx_client c;
    bx_client_init(&c, &srv);
    int64_t cid = bx_admin_concert(&c, "Frozen");
    int64_t sid = bx_admin_schedule(&c, cid, 50, PRICE);
    const char *active_at = bx_user(&c, "frozen-active", NULL);
    const char *waiting_at = bx_user(&c, "frozen-waiting", NULL);
    const char *active_qt = bx_queue_active(&c, active_at, cid);
    char st[16];
    const char *waiting_qt = bx_queue_issue(&c, waiting_at, cid, st, sizeof st);
    cr_assert_str_eq(st, "WAITING");

    volatile int stop = 0;
    struct booker b[2];
    pthread_t tid[2];
    for (int i = 0; i < 2; i++) {
        b[i] = (struct booker){.sid = sid, .inst = i, .stop = &stop};
        snprintf(b[i].at, sizeof b[i].at, "%s", active_at);
        snprintf(b[i].qt, sizeof b[i].qt, "%s", active_qt);
        cr_assert_eq(pthread_create(&tid[i], NULL, booker_main, &b[i]), 0);
    }
    bx_sleep_ms(300);

    pg_signal_all(SIGSTOP);
    int64_t frozen_at = bx_now_ms();
    int probes = 0, slow = 0, bad = 0;
    int64_t worst = 0;
    char first_bad[200] = "";
    const char *poll_path = "/api/v1/queue/status";
    while (bx_now_ms() - frozen_at < FREEZE_MS) {
        for (int i = 0; i < 2; i++) {
            int64_t ms;
            long s1 = probe(i, "/healthz", NULL, NULL, &ms);
            worst = ms > worst ? ms : worst;
            slow += ms > PROBE_BOUND_MS;
            bad += s1 != 200;
            if (s1 != 200 && first_bad[0] == '\0')
                snprintf(first_bad, sizeof first_bad, "/healthz on instance %d: %ld after %lld ms", i, s1,
                         (long long)ms);
            long s2 = probe(i, poll_path, waiting_at, waiting_qt, &ms);
            worst = ms > worst ? ms : worst;
            slow += ms > PROBE_BOUND_MS;
            bad += s2 != 200;
            if (s2 != 200 && first_bad[0] == '\0')
                snprintf(first_bad, sizeof first_bad, "WAITING poll on instance %d: %ld after %lld ms", i, s2,
                         (long long)ms);
            probes += 2;
        }
        bx_sleep_ms(100);
    }
    /* a booking call while frozen: refused, within its bound */
    int64_t booking_ms;
    long booking = probe(0, bx_str(&c, "/api/v1/schedules/%lld/seats", (long long)sid), active_at, active_qt,
                         &booking_ms);
    pg_signal_all(SIGCONT);
    int64_t thawed_at = bx_now_ms();
    stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(tid[i], NULL);

    /* service resumes without a restart */
    int64_t recovered_ms = -1;
    while (bx_now_ms() - thawed_at < RECOVER_MS) {
        int64_t ms;
        long s = probe(1, bx_str(&c, "/api/v1/schedules/%lld/seats", (long long)sid), active_at, active_qt, &ms);
        if (s == 200) {
            recovered_ms = bx_now_ms() - thawed_at;
            break;
        }
        bx_sleep_ms(100);
    }
    printf("figure: PostgreSQL frozen %d ms under seat-map load: %d health and WAITING-poll probes on new "
           "connections, worst %lld ms, %d over %d ms; a booking call while frozen answered %ld in %lld ms; "
           "seat maps served again %lld ms after the thaw\n",
           FREEZE_MS, probes, (long long)worst, slow, PROBE_BOUND_MS, booking, (long long)booking_ms,
           (long long)recovered_ms);
    fflush(stdout);
    cr_assert_eq(bad, 0, "%d probes failed while PostgreSQL was frozen; first: %s", bad, first_bad);
    cr_assert_eq(slow, 0, "%d of %d probes took over %d ms (worst %lld ms) while PostgreSQL was frozen", slow, probes,
                 PROBE_BOUND_MS, (long long)worst);
    cr_assert_eq(booking, 503, "a booking call while PostgreSQL was frozen answered %ld", booking);
    cr_assert(booking_ms <= BOOKING_BOUND_MS, "the refused booking call took %lld ms", (long long)booking_ms);
    cr_assert(recovered_ms >= 0, "seat maps not served within %d ms after PostgreSQL thawed", RECOVER_MS);
    cr_assert(b[0].answered > 0 && b[1].answered > 0, "the booking load never got an answer");
    bx_client_release(&c);
}
