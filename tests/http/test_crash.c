/* test_crash.c — crash safety (CONTRACT §3 invariant 4): under a mixed load of charges,
 * holds and payments the server is killed with SIGKILL at random moments and
 * restarted, again and again. Clients behave as the API asks: every charge and
 * payment carries an Idempotency-Key and an unanswered request is sent again with
 * the same key once the server is back; a hold whose answer was lost is found in
 * GET /users/me/reservations. Afterwards (and after one more crash) every charge
 * and payment a client saw acknowledged is there, nothing is there that no client
 * asked for, balances are exact and `boxoffice audit` is clean.
 * Embedded: 20 kills of the one process. Scale-out: 10 kills of each instance,
 * alternately, the other one serving through nginx meanwhile.
 * Worker threads never assert; the main thread judges and prints "figure:" lines. */
#include "harness.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static struct bx_server srv;
static struct bx_client C;

static void teardown(void)
{
    bx_client_release(&C);
    bx_server_cleanup(&srv);
}

TestSuite(crash, .fini = teardown, .timeout = 240);

enum { WORKERS = 6, SEATS = 5000, PRICE = 1000, CHARGE = 1500, KILLS = 20 };

struct acked {
    int64_t payment_id, reservation_id, amount;
};

struct worker {
    int idx;
    char name[48], at[256];
    int64_t cid, sid;
    volatile int *stop;
    /* results: this worker's own fields only */
    int64_t charged;           /* sum of acknowledged charges */
    int charges;               /* acknowledged charges = charge keys generated */
    int holds, adopted;        /* holds answered 201 / found as ours after a lost answer */
    struct acked *paid;        /* acknowledged payments */
    int npaid;
    int64_t requested[SEATS];  /* reservations we asked to pay */
    int nrequested;
    int seats_requested;       /* seats 1..n were asked for */
    int requests, retried;     /* retried: no answer, 502/503/504 */
    int reissued;              /* queue token taken again (lost with a crash or spent) */
    int unexpected;
    char err[600];
};

static bool transient(const struct bx_resp *r)
{
    return r->status == 0 || r->status == 502 || r->status == 503 || r->status == 504;
}

static void w_note(struct worker *w, const char *what, const struct bx_resp *r)
{
    w->unexpected++;
    if (w->err[0] == '\0')
        snprintf(w->err, sizeof w->err, "%s: %ld %.200s%.100s", what, r->status, r->body, r->status ? "" : r->error);
}

/* One request, sent again (same body, same key) until the server answers it;
 * gives up after 60 s (the test then fails on unexpected). */
static struct bx_resp *w_send(struct worker *w, struct bx_client *c, const char *method, const char *path,
                              const struct bx_req *rq, json_t *body)
{
    int64_t deadline = bx_now_ms() + 60000;
    for (;;) {
        struct bx_resp *r = bx_http_json(c, method, path, rq, body ? json_incref(body) : NULL);
        w->requests++;
        if (!transient(r) || bx_now_ms() > deadline) {
            json_decref(body);
            return r;
        }
        w->retried++;
        bx_client_reset(c);
        bx_sleep_ms(20);
    }
}

/* the user's live token for the concert (re-issue answers the same one if it survived) */
static bool w_token(struct worker *w, struct bx_client *c, char *qt, size_t len)
{
    struct bx_resp *r = w_send(w, c, "POST", bx_str(c, "/api/v1/concerts/%lld/queue/tokens", (long long)w->cid),
                               &(struct bx_req){.bearer = w->at}, NULL);
    if (r->status != 200 && r->status != 201) {
        w_note(w, "queue token", r);
        return false;
    }
    snprintf(qt, len, "%s", bx_jstr(r->json, "token"));
    /* slots are free, but a token may wait for the next admission tick (e.g. when
     * the admission could not be written at issue time): poll as a client would */
    for (int polls = 0; strcmp(bx_jstr(r->json, "status"), "ACTIVE") != 0; polls++) {
        if (polls >= 50 || r->status != 200 || strcmp(bx_jstr(r->json, "status"), "WAITING") != 0) {
            w_note(w, "queue token", r);
            return false;
        }
        bx_sleep_ms(100);
        r = w_send(w, c, "GET", "/api/v1/queue/status", &(struct bx_req){.bearer = w->at, .queue_token = qt}, NULL);
    }
    return true;
}

/* a refusal that means "your queue token is gone": take one again and retry */
static bool token_gone(const struct bx_resp *r)
{
    const char *code = bx_err_code(r);
    return (r->status == 403 && strcmp(code, "QUEUE_NOT_ACTIVE") == 0) ||
           (r->status == 410 && strcmp(code, "TOKEN_EXPIRED") == 0) ||
           (r->status == 401 && strcmp(code, "QUEUE_TOKEN_INVALID") == 0);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct bx_client c;
    bx_client_init(&c, &srv);
    char qt[64] = "";
    for (int round = 0; !*w->stop && round < SEATS && w->unexpected == 0; round++) {
        char key[64];
        /* 1. charge */
        snprintf(key, sizeof key, "crash-charge-%d-%d", w->idx, round);
        struct bx_resp *r =
            w_send(w, &c, "POST", "/api/v1/users/me/balance/charge", &(struct bx_req){.bearer = w->at, .idem_key = key},
                   json_pack("{s:i}", "amount", CHARGE));
        if (r->status != 200) {
            w_note(w, "charge", r);
            break;
        }
        w->charged += CHARGE;
        w->charges++;
        /* 2. hold seat round+1 */
        int seat = round + 1;
        w->seats_requested = seat;
        int64_t rid = 0;
        for (int attempt = 0; rid == 0 && attempt < 5 && w->unexpected == 0; attempt++) {
            if (qt[0] == '\0' && !w_token(w, &c, qt, sizeof qt))
                break;
            r = w_send(w, &c, "POST", "/api/v1/reservations", &(struct bx_req){.bearer = w->at, .queue_token = qt},
                       json_pack("{s:I,s:i}", "scheduleId", (json_int_t)w->sid, "seatNo", seat));
            if (r->status == 201) {
                rid = bx_jint(r->json, "reservationId");
                w->holds++;
            } else if (r->status == 409 && strcmp(bx_err_code(r), "SEAT_UNAVAILABLE") == 0) {
                /* our own hold whose answer was lost in the crash */
                struct bx_resp *l =
                    w_send(w, &c, "GET", "/api/v1/users/me/reservations", &(struct bx_req){.bearer = w->at}, NULL);
                rid = bx_find_held(l->json, w->sid, seat);
                if (rid <= 0) {
                    w_note(w, "hold (seat taken, not by us)", r);
                    break;
                }
                w->adopted++;
            } else if (token_gone(r)) {
                qt[0] = '\0';
                w->reissued++;
            } else {
                w_note(w, "hold", r);
                break;
            }
        }
        if (rid <= 0) {
            if (w->unexpected == 0)
                w_note(w, "hold (token lost five times)", r);
            break;
        }
        /* 3. pay, with its key, until answered */
        snprintf(key, sizeof key, "crash-pay-%lld", (long long)rid);
        w->requested[w->nrequested++] = rid;
        bool paid = false;
        for (int attempt = 0; !paid && attempt < 5 && w->unexpected == 0; attempt++) {
            if (qt[0] == '\0' && !w_token(w, &c, qt, sizeof qt))
                break;
            r = w_send(w, &c, "POST", "/api/v1/payments",
                       &(struct bx_req){.bearer = w->at, .queue_token = qt, .idem_key = key},
                       json_pack("{s:I}", "reservationId", (json_int_t)rid));
            if (r->status == 201) {
                w->paid[w->npaid++] =
                    (struct acked){bx_jint(r->json, "paymentId"), rid, bx_jint(r->json, "amount")};
                paid = true;
            } else if (token_gone(r)) {
                qt[0] = '\0';
                w->reissued++;
            } else {
                w_note(w, "payment", r);
            }
        }
        if (!paid) {
            if (w->unexpected == 0)
                w_note(w, "payment (token lost five times)", r);
            break;
        }
        qt[0] = '\0'; /* the payment spent the token */
        bx_client_release(&c);
        bx_client_init(&c, &srv);
    }
    bx_client_release(&c);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static bool has_i64(const int64_t *sorted, int n, int64_t v)
{
    return n > 0 && bsearch(&v, sorted, (size_t)n, sizeof v, cmp_i64) != NULL;
}

static unsigned rnd_state;

static int rnd_between(int lo, int hi)
{
    return lo + (int)(rand_r(&rnd_state) % (unsigned)(hi - lo + 1));
}

Test(crash, sigkill_at_random_moments_under_load_loses_nothing_acknowledged_and_invents_nothing)
{
    BX_START(&srv, "--rate-limit", "0", "--max-seats-per-user", "10000");
    bx_client_init(&C, &srv);
    bool so = bx_scaleout(&srv);
    rnd_state = (unsigned)bx_now_ms() ^ (unsigned)getpid();

    int64_t cid = bx_admin_concert(&C, "Crash at random moments");
    struct worker *w = calloc(WORKERS, sizeof *w);
    cr_assert(w != NULL);
    volatile int stop = 0;
    for (int i = 0; i < WORKERS; i++) {
        w[i].idx = i;
        w[i].cid = cid;
        w[i].stop = &stop;
        w[i].sid = bx_admin_schedule(&C, cid, SEATS, PRICE);
        snprintf(w[i].name, sizeof w[i].name, "crash-%d", i);
        snprintf(w[i].at, sizeof w[i].at, "%s", bx_user(&C, w[i].name, NULL));
        w[i].paid = calloc(SEATS, sizeof *w[i].paid);
        cr_assert(w[i].paid != NULL);
    }
    pthread_t th[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);

    /* the kills: at random moments 100-400 ms apart (of uptime), alternating
     * instances in scale-out mode */
    int kills = 0, by[2] = {0, 0};
    int64_t restart_total = 0, restart_worst = 0, t0 = bx_now_ms();
    for (int k = 0; k < KILLS; k++) {
        bx_sleep_ms(rnd_between(100, 400));
        int i = so ? k % 2 : 0;
        int st = bx_instance_kill(&srv, i);
        cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "kill %d: instance %c did not die of SIGKILL (%d)", k,
                  'A' + i, st);
        kills++;
        by[i]++;
        int64_t t = bx_now_ms();
        bx_instance_relaunch(&srv, i); /* fails the test unless it comes back ready */
        int64_t ms = bx_now_ms() - t;
        restart_total += ms;
        restart_worst = ms > restart_worst ? ms : restart_worst;
        if (so) /* the next kill hits the other one: let nginx route to this one again first */
            bx_wait_balanced(&srv, 10000);
    }
    int64_t load_ms = bx_now_ms() - t0;
    bx_sleep_ms(300);
    stop = 1;
    for (int i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);

    /* one more crash with the load stopped: what is read below is what survived it */
    bx_client_reset(&C);
    bx_server_kill(&srv);
    bx_server_relaunch(&srv);

    int requests = 0, retried = 0, charges = 0, holds = 0, adopted = 0, acked = 0, reissued = 0;
    int present = 0, missing = 0, extra = 0, unrequested = 0, res_extra = 0;
    int64_t charged = 0;
    for (int i = 0; i < WORKERS; i++) {
        struct worker *x = &w[i];
        cr_assert(x->unexpected == 0, "worker %d: %s", i, x->err);
        requests += x->requests;
        retried += x->retried;
        charges += x->charges;
        charged += x->charged;
        holds += x->holds;
        adopted += x->adopted;
        acked += x->npaid;
        reissued += x->reissued;

        int64_t *ack_ids = calloc((size_t)x->npaid + 1, sizeof *ack_ids);
        for (int k = 0; k < x->npaid; k++)
            ack_ids[k] = x->paid[k].payment_id;
        qsort(ack_ids, (size_t)x->npaid, sizeof *ack_ids, cmp_i64);
        qsort(x->requested, (size_t)x->nrequested, sizeof *x->requested, cmp_i64);

        /* the pay history: every acknowledged payment, nothing else */
        int seen = 0, mine = 0;
        int64_t paid_sum = 0;
        char before[64] = "";
        for (;;) {
            struct bx_resp *r = bx_http(&C, "GET", bx_str(&C, "/api/v1/users/me/payments?limit=100%s", before),
                                        &(struct bx_req){.bearer = x->at});
            bx_expect(r, 200, NULL);
            size_t k;
            json_t *p;
            json_array_foreach(json_object_get(r->json, "payments"), k, p)
            {
                seen++;
                paid_sum += bx_jint(p, "amount");
                if (has_i64(ack_ids, x->npaid, bx_jint(p, "paymentId")))
                    mine++;
                else
                    extra++;
                if (!has_i64(x->requested, x->nrequested, bx_jint(p, "reservationId")))
                    unrequested++;
            }
            if (!json_is_integer(json_object_get(r->json, "nextBefore")))
                break;
            snprintf(before, sizeof before, "&before=%lld", (long long)bx_jint(r->json, "nextBefore"));
        }
        present += seen;
        missing += x->npaid - mine;
        free(ack_ids);

        /* reservations: one per seat asked for, CONFIRMED exactly when paid */
        struct bx_resp *r = bx_http(&C, "GET", "/api/v1/users/me/reservations", &(struct bx_req){.bearer = x->at});
        bx_expect(r, 200, NULL);
        size_t k;
        json_t *res;
        int nres = 0, confirmed = 0;
        char *seat_seen = calloc(SEATS + 1, 1);
        json_array_foreach(json_object_get(r->json, "reservations"), k, res)
        {
            nres++;
            int64_t seat = bx_jint(res, "seatNo");
            bool ok = bx_jint(res, "scheduleId") == x->sid && seat >= 1 && seat <= x->seats_requested &&
                      !seat_seen[seat];
            if (ok)
                seat_seen[seat] = 1;
            else
                res_extra++;
            if (strcmp(bx_jstr(res, "status"), "CONFIRMED") == 0) {
                confirmed++;
                if (!has_i64(x->requested, x->nrequested, bx_jint(res, "reservationId")))
                    res_extra++;
            }
        }
        free(seat_seen);
        cr_assert_eq(confirmed, x->npaid, "worker %d: %d reservations CONFIRMED, %d payments acknowledged", i,
                     confirmed, x->npaid);
        cr_assert(nres <= x->seats_requested, "worker %d: %d reservations for %d seats asked for", i, nres,
                  x->seats_requested);

        int64_t bal = bx_balance(&C, x->at);
        cr_assert_eq(bal, x->charged - paid_sum,
                     "worker %d: balance %lld after the crashes, acknowledged charges %lld - payments in history %lld",
                     i, (long long)bal, (long long)x->charged, (long long)paid_sum);
    }
    printf("figure: crash safety [%s]: %d SIGKILLs at random moments 100-400 ms apart (A %d, B %d) over %lld ms of "
           "load by %d clients, then one more with the load stopped; restart to ready %lld ms on average (worst "
           "%lld ms)\n",
           bx_server_mode_name(&srv), kills, by[0], by[1], (long long)load_ms, WORKERS,
           (long long)(restart_total / kills), (long long)restart_worst);
    printf("figure: crash safety [%s]: %d requests, %d sent again after no answer / 502 / 503 (same Idempotency-Key), "
           "%d queue tokens taken again; acknowledged: %d charges (%lld won), %d holds (+%d found as ours after a "
           "lost answer), %d payments; present after the last crash: %d payments, %d acknowledged ones missing, %d "
           "never acknowledged, %d for reservations never asked to pay, %d reservations nobody asked for; balances "
           "exact\n",
           bx_server_mode_name(&srv), requests, retried, reissued, charges, (long long)charged, holds, adopted, acked,
           present, missing, extra, unrequested, res_extra);
    fflush(stdout);
    for (int i = 0; i < WORKERS; i++)
        free(w[i].paid);
    free(w);
    cr_assert_eq(kills, KILLS);
    cr_assert(acked > 0 && charges > 0, "no progress under the kills: %d payments, %d charges", acked, charges);
    cr_assert_eq(missing, 0, "%d acknowledged payments lost", missing);
    cr_assert_eq(extra, 0, "%d payments in the history were never acknowledged", extra);
    cr_assert_eq(unrequested, 0);
    cr_assert_eq(res_extra, 0, "%d reservations that no client asked for (or twice)", res_extra);
    char *out = NULL;
    int rc = bx_audit(&srv, &out);
    cr_assert_eq(rc, 0, "audit after %d SIGKILLs: exit %d:\n%s", kills, rc, out);
    free(out);
    printf("audit: clean after %d SIGKILLs under load [%s]\n", kills, bx_server_mode_name(&srv));
    fflush(stdout);
}
