/* test_concurrency.c — many clients at once against one server: seats are never
 * held twice, money is never lost or invented (CONTRACT §3 invariants 1-3), and
 * `boxoffice audit` agrees afterwards. Worker threads never assert (Criterion's
 * asserts are for the main thread); they record outcomes, the main thread judges. */
#include "harness.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct bx_server srv;
static struct bx_client C;

static void teardown(void)
{
    bx_client_release(&C);
    bx_server_cleanup(&srv);
}

TestSuite(concurrency, .fini = teardown, .timeout = 280);

#define START(...)                                                                                                     \
    do {                                                                                                               \
        BX_START(&srv, ##__VA_ARGS__);                                                                                 \
        bx_client_init(&C, &srv);                                                                                      \
    } while (0)

#define MAX_503_RETRIES 50

static pthread_t spawn_small(void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1 << 20);
    pthread_t th;
    int rc = pthread_create(&th, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    cr_assert_eq(rc, 0, "pthread_create: %s", strerror(rc));
    return th;
}

static void note(char *buf, size_t len, const struct bx_resp *r)
{
    if (buf[0] != '\0')
        return; /* keep the first */
    if (snprintf(buf, len, "%s -> %ld %.150s%s", r->what, r->status, r->status ? r->body : "", r->error) < 0)
        buf[0] = '\0';
}

/* ------------------------------------------------------------ seat race */

struct racer {
    int idx;
    int64_t cid, sid;
    int nseats; /* seats 1..nseats to try, in a random order */
    pthread_barrier_t *go;
    /* results */
    bool ready; /* signed up, logged in, ACTIVE token */
    int seat;   /* 0: none */
    int64_t rid;
    int attempts, refused, retries503, unexpected;
    char at[512], qt[64];
    char err[320];
};

/* signup + login + ACTIVE token without asserting */
static bool racer_setup(struct bx_client *c, struct racer *x)
{
    const char *name = bx_str(c, "racer-%d", x->idx);
    struct bx_resp *r =
        bx_http_json(c, "POST", "/api/v1/users", NULL, json_pack("{s:s,s:s}", "name", name, "password", BX_PASSWORD));
    if (r->status != 201)
        return note(x->err, sizeof x->err, r), false;
    r = bx_http_json(c, "POST", "/api/v1/sessions", NULL,
                     json_pack("{s:s,s:s}", "name", name, "password", BX_PASSWORD));
    if (r->status != 200)
        return note(x->err, sizeof x->err, r), false;
    snprintf(x->at, sizeof x->at, "%s", bx_jstr(r->json, "accessToken"));
    /* 503 is the contract's "retry shortly" (a loaded machine's instance may pass a
     * Redis deadline): retried as the holds below are; a retry after a token was
     * made finds it (200) */
    for (int tries = 0;; tries++) {
        r = bx_http(c, "POST", bx_str(c, "/api/v1/concerts/%lld/queue/tokens", (long long)x->cid),
                    &(struct bx_req){.bearer = x->at});
        if (r->status != 503 || tries >= MAX_503_RETRIES)
            break;
        x->retries503++;
        bx_sleep_ms(10);
    }
    if ((r->status != 201 && r->status != 200) || strcmp(bx_jstr(r->json, "status"), "ACTIVE") != 0)
        return note(x->err, sizeof x->err, r), false;
    snprintf(x->qt, sizeof x->qt, "%s", bx_jstr(r->json, "token"));
    return true;
}

static void *racer_main(void *arg)
{
    struct racer *x = arg;
    struct bx_client c;
    bx_client_init(&c, &srv);
    x->ready = racer_setup(&c, x);
    pthread_barrier_wait(x->go);
    if (!x->ready)
        goto out;

    int order[10000];
    for (int i = 0; i < x->nseats; i++)
        order[i] = i + 1;
    unsigned seed = (unsigned)x->idx * 2654435761u + (unsigned)bx_now_ms();
    for (int i = x->nseats - 1; i > 0; i--) {
        int j = rand_r(&seed) % (i + 1);
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    struct bx_req q = {.bearer = x->at, .queue_token = x->qt};
    for (int i = 0; i < x->nseats && x->seat == 0; i++) {
        for (int tries = 0;; tries++) {
            x->attempts++;
            struct bx_resp *r =
                bx_http_json(&c, "POST", "/api/v1/reservations", &q,
                             json_pack("{s:I,s:i}", "scheduleId", (json_int_t)x->sid, "seatNo", order[i]));
            if (r->status == 201) {
                x->seat = (int)bx_jint(r->json, "seatNo");
                x->rid = bx_jint(r->json, "reservationId");
                if (x->seat != order[i]) {
                    x->unexpected++;
                    note(x->err, sizeof x->err, r);
                }
            } else if (r->status == 409 && strcmp(bx_err_code(r), "SEAT_UNAVAILABLE") == 0) {
                x->refused++;
            } else if (r->status == 503 && tries < MAX_503_RETRIES) {
                x->retries503++;
                bx_sleep_ms(10);
                continue;
            } else {
                x->unexpected++;
                note(x->err, sizeof x->err, r);
            }
            break;
        }
    }
out:
    bx_client_release(&c);
    return NULL;
}

/* Runs n racers for the seats 1..nseats of a fresh 50-seat schedule; checks that
 * exactly min(n, nseats) holds succeed, no seat twice, and the seat map agrees. */
static void race(int n, int nseats, int64_t *sid_out)
{
    int64_t cid = bx_admin_concert(&C, "Race");
    int64_t sid = bx_admin_schedule(&C, cid, 50, 50000);
    struct racer *xs = calloc((size_t)n, sizeof *xs);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)n);
    for (int i = 0; i < n; i++) {
        xs[i] = (struct racer){.idx = i, .cid = cid, .sid = sid, .nseats = nseats, .go = &go};
        th[i] = spawn_small(racer_main, &xs[i]);
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);

    int ok = 0, none = 0, notready = 0, unexpected = 0, attempts = 0, r503 = 0;
    int owner[51];
    memset(owner, -1, sizeof owner);
    const char *first_err = NULL;
    for (int i = 0; i < n; i++) {
        struct racer *x = &xs[i];
        attempts += x->attempts;
        r503 += x->retries503;
        unexpected += x->unexpected;
        if (!x->ready)
            notready++;
        if ((!x->ready || x->unexpected) && first_err == NULL)
            first_err = x->err;
        if (x->seat == 0) {
            none += x->ready;
            continue;
        }
        ok++;
        cr_assert(x->seat >= 1 && x->seat <= 50, "racer %d got seat %d", i, x->seat);
        cr_assert_eq(owner[x->seat], -1, "seat %d held twice: racers %d and %d", x->seat, owner[x->seat], i);
        owner[x->seat] = i;
    }
    int expect_ok = n < nseats ? n : nseats;
    printf("holds (%d clients, %d seats): %d ok, %d refused; %d requests, %d retried after 503, %d unexpected, %d "
           "failed setup [%s]\n",
           n, nseats, ok, none, attempts, r503, unexpected, notready, bx_server_mode_name(&srv));
    fflush(stdout);
    cr_assert_eq(notready, 0, "%d racers failed to sign up / queue; first: %s", notready, first_err);
    cr_assert_eq(unexpected, 0, "%d unexpected answers; first: %s", unexpected, first_err);
    cr_assert_eq(ok, expect_ok, "%d holds succeeded, expected %d", ok, expect_ok);
    cr_assert_eq(none, n - expect_ok);

    /* the seat map agrees; every winner owns a HELD reservation of its seat */
    const struct racer *w = NULL;
    for (int i = 0; i < n && w == NULL; i++)
        if (xs[i].seat)
            w = &xs[i];
    int navail;
    bx_seat_available(&C, w->at, w->qt, sid, 1, &navail);
    cr_assert_eq(navail, 50 - expect_ok, "seat map shows %d available, expected %d", navail, 50 - expect_ok);
    for (int i = 0; i < n; i++) {
        if (xs[i].seat == 0)
            continue;
        struct bx_resp *r = bx_http(&C, "GET", bx_str(&C, "/api/v1/reservations/%lld", (long long)xs[i].rid),
                                    &(struct bx_req){.bearer = xs[i].at});
        bx_expect(r, 200, NULL);
        cr_assert_str_eq(bx_jstr(r->json, "status"), "HELD", "%s", r->body);
        cr_assert_eq(bx_jint(r->json, "seatNo"), xs[i].seat, "%s", r->body);
    }
    free(xs);
    free(th);
    if (sid_out)
        *sid_out = sid;
}

Test(concurrency, two_hundred_users_racing_for_fifty_seats_get_each_seat_once)
{
    START("--active-max", "1000");
    race(200, 50, NULL);
    char *out = NULL;
    int rc = bx_audit(&srv, &out);
    cr_assert_eq(rc, 0, "audit exit %d:\n%s", rc, out);
    free(out);
}

Test(concurrency, hundred_users_clicking_the_same_seat_get_one_hold)
{
    START("--active-max", "1000");
    race(100, 1, NULL);
    char *out = NULL;
    int rc = bx_audit(&srv, &out);
    cr_assert_eq(rc, 0, "audit exit %d:\n%s", rc, out);
    free(out);
}

/* ------------------------------------------------------------ money race */

#define PRICE 1000
#define CHARGE 1500
#define NSEATS 50

struct money {
    int idx;
    bool payer; /* else charger */
    const char *at, *qt;
    int64_t rid; /* payer: its reservation */
    pthread_barrier_t *go;
    /* results */
    bool acked;     /* 200 charge / 201 payment */
    int64_t amount; /* acknowledged amount */
    int insufficient, retries503, transport;
    char err[320];
};

static void *money_main(void *arg)
{
    struct money *m = arg;
    struct bx_client c;
    bx_client_init(&c, &srv);
    pthread_barrier_wait(m->go);
    char key[64];
    snprintf(key, sizeof key, "%s-%d", m->payer ? "pay" : "charge", m->idx);
    int64_t deadline = bx_now_ms() + 60000;
    while (bx_now_ms() < deadline) {
        struct bx_resp *r;
        if (m->payer) {
            r = bx_http_json(&c, "POST", "/api/v1/payments",
                             &(struct bx_req){.bearer = m->at, .queue_token = m->qt, .idem_key = key},
                             json_pack("{s:I}", "reservationId", (json_int_t)m->rid));
            if (r->status == 201) {
                m->acked = true;
                m->amount = bx_jint(r->json, "amount");
                break;
            }
            if (r->status == 402 && strcmp(bx_err_code(r), "INSUFFICIENT_BALANCE") == 0) {
                m->insufficient++;
                bx_sleep_ms(5);
                continue;
            }
        } else {
            r = bx_http_json(&c, "POST", "/api/v1/users/me/balance/charge",
                             &(struct bx_req){.bearer = m->at, .idem_key = key}, json_pack("{s:i}", "amount", CHARGE));
            if (r->status == 200) {
                m->acked = true;
                m->amount = CHARGE;
                break;
            }
        }
        /* retries with the same Idempotency-Key are safe */
        if (r->status == 503) {
            m->retries503++;
            bx_sleep_ms(10);
            continue;
        }
        if (r->status == 0 && m->transport++ < 3)
            continue;
        note(m->err, sizeof m->err, r);
        break;
    }
    bx_client_release(&c);
    return NULL;
}

Test(concurrency, concurrent_charges_and_payments_on_one_user_keep_the_balance_exact)
{
    START("--max-seats-per-user", "1000");
    int64_t uid;
    const char *at = bx_user(&C, "whale", &uid);
    int64_t cid = bx_admin_concert(&C, "Money");
    int64_t sid = bx_admin_schedule(&C, cid, NSEATS, PRICE);
    const char *qt = bx_queue_active(&C, at, cid);
    int64_t rid[NSEATS];
    for (int i = 0; i < NSEATS; i++)
        rid[i] = bx_hold(&C, at, qt, sid, i + 1);

    struct money ms[2 * NSEATS];
    pthread_t th[2 * NSEATS];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 2 * NSEATS);
    for (int i = 0; i < 2 * NSEATS; i++) {
        bool payer = i % 2 == 1;
        ms[i] =
            (struct money){.idx = i / 2, .payer = payer, .at = at, .qt = qt, .rid = payer ? rid[i / 2] : 0, .go = &go};
        th[i] = spawn_small(money_main, &ms[i]);
    }
    for (int i = 0; i < 2 * NSEATS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);

    int64_t charged = 0, paid = 0;
    int charges = 0, payments = 0, insufficient = 0, r503 = 0, failed = 0;
    const char *first_err = NULL;
    for (int i = 0; i < 2 * NSEATS; i++) {
        struct money *m = &ms[i];
        insufficient += m->insufficient;
        r503 += m->retries503;
        if (!m->acked) {
            failed++;
            if (first_err == NULL)
                first_err = m->err;
            continue;
        }
        if (m->payer) {
            payments++;
            paid += m->amount;
            cr_assert_eq(m->amount, PRICE, "payment %d acknowledged amount %lld", m->idx, (long long)m->amount);
        } else {
            charges++;
            charged += m->amount;
        }
    }
    int64_t balance = bx_balance(&C, at);
    printf("charges and payments: %d charges ok (%lld won), %d payments ok (%lld won), %d insufficient-balance "
           "retries, %d retried "
           "after 503, %d gave up; balance %lld (expected %lld) [%s]\n",
           charges, (long long)charged, payments, (long long)paid, insufficient, r503, failed, (long long)balance,
           (long long)(charged - paid), bx_server_mode_name(&srv));
    fflush(stdout);
    cr_assert_eq(failed, 0, "%d operations failed; first: %s", failed, first_err);
    cr_assert_eq(balance, charged - paid, "balance %lld != charges %lld - payments %lld", (long long)balance,
                 (long long)charged, (long long)paid);
    cr_assert_eq(charges, NSEATS);
    cr_assert_eq(payments, NSEATS);

    /* history and reservations agree with the acknowledgements */
    struct bx_resp *r = bx_http(&C, "GET", "/api/v1/users/me/payments?limit=100", &(struct bx_req){.bearer = at});
    bx_expect(r, 200, NULL);
    cr_assert_eq((int)json_array_size(json_object_get(r->json, "payments")), payments, "%.500s", r->body);
    r = bx_http(&C, "GET", "/api/v1/users/me/reservations", &(struct bx_req){.bearer = at});
    bx_expect(r, 200, NULL);
    json_t *res = json_object_get(r->json, "reservations");
    cr_assert_eq((int)json_array_size(res), NSEATS, "%.500s", r->body);
    size_t i;
    json_t *v;
    json_array_foreach(res, i, v)
    {
        cr_assert_str_eq(bx_jstr(v, "status"), "CONFIRMED", "reservation %lld: %.300s",
                         (long long)bx_jint(v, "reservationId"), r->body);
    }
    /* the last payment spent the queue token */
    r = bx_http(&C, "GET", "/api/v1/queue/status", &(struct bx_req){.bearer = at, .queue_token = qt});
    bx_expect(r, 410, "TOKEN_EXPIRED");

    char *out = NULL;
    int rc = bx_audit(&srv, &out);
    cr_assert_eq(rc, 0, "audit exit %d:\n%s", rc, out);
    free(out);
}

/* ------------------------------------------------------------ double click */

struct clicker {
    const char *at, *qt;
    int64_t rid;
    int idx;
    pthread_barrier_t *go;
    long status;
    char code[64];
};

static void *clicker_main(void *arg)
{
    struct clicker *k = arg;
    struct bx_client c;
    bx_client_init(&c, &srv);
    pthread_barrier_wait(k->go);
    char key[32];
    snprintf(key, sizeof key, "click-%d", k->idx);
    struct bx_resp *r = bx_http_json(&c, "POST", "/api/v1/payments",
                                     &(struct bx_req){.bearer = k->at, .queue_token = k->qt, .idem_key = key},
                                     json_pack("{s:I}", "reservationId", (json_int_t)k->rid));
    k->status = r->status;
    snprintf(k->code, sizeof k->code, "%s", bx_err_code(r));
    bx_client_release(&c);
    return NULL;
}

Test(concurrency, a_payment_clicked_twenty_times_at_once_is_paid_once)
{
    START();
    const char *at = bx_user(&C, "clicky", NULL);
    int64_t cid = bx_admin_concert(&C, "Click");
    int64_t sid = bx_admin_schedule(&C, cid, 50, 50000);
    const char *qt = bx_queue_active(&C, at, cid);
    int64_t rid = bx_hold(&C, at, qt, sid, 1);
    bx_charge(&C, at, 1000000);

    enum { N = 20 };
    struct clicker ks[N];
    pthread_t th[N];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, N);
    for (int i = 0; i < N; i++) {
        ks[i] = (struct clicker){.at = at, .qt = qt, .rid = rid, .idx = i, .go = &go};
        th[i] = spawn_small(clicker_main, &ks[i]);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        if (ks[i].status == 201) {
            ok++;
            continue;
        }
        /* losers: already paid, or the token was spent by the winner */
        bool fine = (ks[i].status == 409 && strcmp(ks[i].code, "ALREADY_PAID") == 0) ||
                    (ks[i].status == 410 && strcmp(ks[i].code, "TOKEN_EXPIRED") == 0);
        cr_assert(fine, "click %d: unexpected %ld %s", i, ks[i].status, ks[i].code);
    }
    printf("payments double-clicked: %d of %d succeeded [%s]\n", ok, N, bx_server_mode_name(&srv));
    fflush(stdout);
    cr_assert_eq(ok, 1, "%d payments succeeded for one reservation", ok);
    cr_assert_eq(bx_balance(&C, at), 1000000 - 50000);
    struct bx_resp *r = bx_http(&C, "GET", "/api/v1/users/me/payments", &(struct bx_req){.bearer = at});
    bx_expect(r, 200, NULL);
    cr_assert_eq(json_array_size(json_object_get(r->json, "payments")), 1, "%s", r->body);
    char *out = NULL;
    int rc = bx_audit(&srv, &out);
    cr_assert_eq(rc, 0, "audit exit %d:\n%s", rc, out);
    free(out);
}

/* ------------------------------------------------------------ bursts */

/* One request per thread, all released at once by a barrier. */
struct shot {
    const char *method;
    const char *path;
    struct bx_req req; /* body etc.; the strings must outlive the burst */
    pthread_barrier_t *go;
    long status;
    char code[64];
    char *body; /* malloc'd copy of the answer */
};

static void *shot_main(void *arg)
{
    struct shot *s = arg;
    struct bx_client c;
    bx_client_init(&c, &srv);
    pthread_barrier_wait(s->go);
    struct bx_resp *r = bx_http(&c, s->method, s->path, &s->req);
    s->status = r->status;
    snprintf(s->code, sizeof s->code, "%s", bx_err_code(r));
    s->body = strdup(r->status ? r->body : r->error);
    bx_client_release(&c);
    return NULL;
}

static void burst(struct shot *shots, int n)
{
    pthread_t th[256];
    pthread_barrier_t go;
    cr_assert(n <= 256);
    pthread_barrier_init(&go, NULL, (unsigned)n);
    for (int i = 0; i < n; i++) {
        shots[i].go = &go;
        th[i] = spawn_small(shot_main, &shots[i]);
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
}

static void burst_free(struct shot *shots, int n)
{
    for (int i = 0; i < n; i++)
        free(shots[i].body);
}

Test(concurrency, the_same_charge_sent_twenty_times_at_once_charges_once)
{
    START();
    const char *at = bx_user(&C, "twin", NULL);
    enum { N = 20 };
    struct shot s[N];
    for (int i = 0; i < N; i++)
        s[i] = (struct shot){.method = "POST",
                             .path = "/api/v1/users/me/balance/charge",
                             .req = {.bearer = at, .idem_key = "same-key", .body = "{\"amount\":100}"}};
    burst(s, N);
    int ok = 0;
    const char *first = NULL;
    for (int i = 0; i < N; i++) {
        if (s[i].status != 200)
            continue;
        ok++;
        if (first == NULL)
            first = s[i].body;
        cr_assert_str_eq(s[i].body, first, "two different answers for one Idempotency-Key");
    }
    int64_t bal = bx_balance(&C, at);
    printf("charges with one Idempotency-Key at once: %d of %d answered 200, balance %lld [%s]\n", ok, N,
           (long long)bal, bx_server_mode_name(&srv));
    fflush(stdout);
    for (int i = 0; i < N; i++)
        cr_expect(s[i].status == 200, "shot %d: %ld %s", i, s[i].status, s[i].body);
    cr_assert_eq(bal, 100, "one Idempotency-Key charged %lld", (long long)bal);
    burst_free(s, N);
    char *out = NULL;
    int rc = bx_audit(&srv, &out);
    cr_assert_eq(rc, 0, "audit exit %d:\n%s", rc, out);
    free(out);
}

Test(concurrency, holds_sent_at_once_never_exceed_the_seat_limit)
{
    START("--max-seats-per-user", "2");
    const char *at = bx_user(&C, "greedy", NULL);
    int64_t cid = bx_admin_concert(&C, "Greedy");
    int64_t sid = bx_admin_schedule(&C, cid, 50, 1000);
    const char *qt = bx_queue_active(&C, at, cid);
    enum { N = 20 };
    struct shot s[N];
    for (int i = 0; i < N; i++)
        s[i] = (struct shot){.method = "POST",
                             .path = "/api/v1/reservations",
                             .req = {.bearer = at,
                                     .queue_token = qt,
                                     .body = bx_str(&C, "{\"scheduleId\":%lld,\"seatNo\":%d}", (long long)sid, i + 1)}};
    burst(s, N);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        if (s[i].status == 201)
            ok++;
        else
            cr_assert(s[i].status == 409 && strcmp(s[i].code, "SEAT_LIMIT") == 0, "hold %d: %ld %s", i, s[i].status,
                      s[i].body);
    }
    printf("holds at once under --max-seats-per-user 2: %d of %d succeeded [%s]\n", ok, N, bx_server_mode_name(&srv));
    fflush(stdout);
    cr_assert_eq(ok, 2, "%d holds succeeded with --max-seats-per-user 2", ok);
    int navail;
    bx_seat_available(&C, at, qt, sid, 1, &navail);
    cr_assert_eq(navail, 48);
    burst_free(s, N);
    char *out = NULL;
    int rc = bx_audit(&srv, &out);
    cr_assert_eq(rc, 0, "audit exit %d:\n%s", rc, out);
    free(out);
}

Test(concurrency, queue_tokens_requested_at_once_by_one_user_are_one_token)
{
    START();
    const char *at = bx_user(&C, "eager", NULL);
    int64_t cid = bx_admin_concert(&C, "Eager");
    const char *path = bx_str(&C, "/api/v1/concerts/%lld/queue/tokens", (long long)cid);
    enum { N = 20 };
    struct shot s[N];
    for (int i = 0; i < N; i++)
        s[i] = (struct shot){.method = "POST", .path = path, .req = {.bearer = at}};
    burst(s, N);
    int created = 0;
    char token[64] = "";
    for (int i = 0; i < N; i++) {
        cr_assert(s[i].status == 200 || s[i].status == 201, "issue %d: %ld %s", i, s[i].status, s[i].body);
        created += s[i].status == 201;
        json_t *j = json_loads(s[i].body, 0, NULL);
        const char *t = bx_jstr(j, "token");
        if (token[0] == '\0')
            snprintf(token, sizeof token, "%s", t);
        bool same = strcmp(token, t) == 0;
        json_decref(j);
        cr_assert(same, "two tokens for one user and concert");
    }
    cr_assert_eq(created, 1, "%d answers said 201 (new)", created);
    burst_free(s, N);
}

Test(concurrency, the_same_name_signed_up_at_once_is_taken_once)
{
    START();
    enum { N = 20 };
    struct shot s[N];
    for (int i = 0; i < N; i++)
        s[i] = (struct shot){.method = "POST",
                             .path = "/api/v1/users",
                             .req = {.body = bx_str(&C, "{\"name\":\"dup\",\"password\":\"password-%d\"}", i)}};
    burst(s, N);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        if (s[i].status == 201)
            ok++;
        else
            cr_assert(s[i].status == 409 && strcmp(s[i].code, "NAME_TAKEN") == 0, "signup %d: %ld %s", i, s[i].status,
                      s[i].body);
    }
    cr_assert_eq(ok, 1, "%d users named \"dup\"", ok);
    burst_free(s, N);
}

/* ------------------------------------------------------------ payment vs expiry */

struct racer_pay {
    const char *at, *qt;
    int64_t rid;
    int delay_ms; /* after the common start */
    int64_t start_ms;
    long status;
    char code[64];
};

static void *racer_pay_main(void *arg)
{
    struct racer_pay *p = arg;
    struct bx_client c;
    bx_client_init(&c, &srv);
    int64_t wait = p->start_ms + p->delay_ms - bx_now_ms();
    if (wait > 0)
        bx_sleep_ms((int)wait);
    struct bx_resp *r =
        bx_http_json(&c, "POST", "/api/v1/payments", &(struct bx_req){.bearer = p->at, .queue_token = p->qt},
                     json_pack("{s:I}", "reservationId", (json_int_t)p->rid));
    p->status = r->status;
    snprintf(p->code, sizeof p->code, "%s", bx_err_code(r));
    bx_client_release(&c);
    return NULL;
}

Test(concurrency, payments_racing_the_hold_expiry_have_exactly_one_outcome)
{
    START("--hold-ttl", "1", "--max-seats-per-user", "1000");
    enum { N = 40 };
    const char *at = bx_user(&C, "racer", NULL);
    int64_t cid = bx_admin_concert(&C, "Deadline");
    int64_t sid = bx_admin_schedule(&C, cid, 50, 1000);
    const char *qt = bx_queue_active(&C, at, cid);
    bx_charge(&C, at, 1000000);
    struct racer_pay ps[N];
    pthread_t th[N];
    int64_t t0 = bx_now_ms();
    for (int i = 0; i < N; i++)
        ps[i] = (struct racer_pay){.at = at, .qt = qt, .rid = bx_hold(&C, at, qt, sid, i + 1)};
    int64_t start = bx_now_ms();
    int64_t spent = start - t0;
    for (int i = 0; i < N; i++) {
        ps[i].start_ms = start;
        ps[i].delay_ms = 700 + (int)((600 * i) / N) - (int)spent; /* around the 1 s expiry */
        th[i] = spawn_small(racer_pay_main, &ps[i]);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);

    bx_sleep_ms(1200); /* everything unpaid is expired now */
    int paid = 0, expired = 0;
    for (int i = 0; i < N; i++) {
        struct racer_pay *p = &ps[i];
        struct bx_resp *r = bx_http(&C, "GET", bx_str(&C, "/api/v1/reservations/%lld", (long long)p->rid),
                                    &(struct bx_req){.bearer = at});
        bx_expect(r, 200, NULL);
        const char *st = bx_jstr(r->json, "status");
        if (p->status == 201) {
            paid++;
            cr_assert_str_eq(st, "CONFIRMED", "seat %d: paid (201) but reads %s", i + 1, st);
        } else {
            /* refused because the hold expired, or because the payment of the last live
             * hold spent the queue token (DESIGN: paying expires it then) */
            cr_assert((p->status == 409 && strcmp(p->code, "HOLD_EXPIRED") == 0) ||
                          (p->status == 410 && strcmp(p->code, "TOKEN_EXPIRED") == 0),
                      "seat %d: %ld %s", i + 1, p->status, p->code);
            expired++;
            cr_assert_str_eq(st, "EXPIRED", "seat %d: refused (HOLD_EXPIRED) but reads %s", i + 1, st);
        }
    }
    printf("payments racing the hold expiry: %d paid, %d expired [%s]\n", paid, expired, bx_server_mode_name(&srv));
    fflush(stdout);
    cr_assert_eq(bx_balance(&C, at), 1000000 - 1000 * paid);
    /* paid seats are sold, the others free (needs a live token: take a new one if spent) */
    const char *q2 = bx_queue_active(&C, at, cid);
    int navail;
    bx_seat_available(&C, at, q2, sid, 1, &navail);
    cr_assert_eq(navail, 50 - paid, "seat map shows %d available with %d paid", navail, paid);
    char *out = NULL;
    int rc = bx_audit(&srv, &out);
    cr_assert_eq(rc, 0, "audit exit %d:\n%s", rc, out);
    free(out);
}

Test(concurrency, thirty_users_queueing_at_once_get_distinct_places)
{
    START("--active-max", "5");
    enum { N = 30, SLOTS = 5 };
    int64_t cid = bx_admin_concert(&C, "Crowd");
    const char *path = bx_str(&C, "/api/v1/concerts/%lld/queue/tokens", (long long)cid);
    struct shot s[N];
    for (int i = 0; i < N; i++)
        s[i] = (struct shot){
            .method = "POST", .path = path, .req = {.bearer = bx_user(&C, bx_str(&C, "crowd-%d", i), NULL)}};
    burst(s, N);
    int active = 0;
    bool seen[N] = {false};
    for (int i = 0; i < N; i++) {
        cr_assert_eq(s[i].status, 201, "issue %d: %ld %s", i, s[i].status, s[i].body);
        json_t *j = json_loads(s[i].body, 0, NULL);
        bool is_active = strcmp(bx_jstr(j, "status"), "ACTIVE") == 0;
        int64_t pos = bx_jint(j, "position");
        json_decref(j);
        if (is_active) {
            active++;
            cr_assert_eq(pos, 0, "ACTIVE with position %lld", (long long)pos);
            continue;
        }
        cr_assert(pos >= 1 && pos <= N - SLOTS, "WAITING position %lld out of 1..%d", (long long)pos, N - SLOTS);
        cr_assert(!seen[pos], "two tokens at position %lld", (long long)pos);
        seen[pos] = true;
    }
    printf("figure: %d of %d queue tokens admitted at once with --active-max %d [%s]\n", active, N, SLOTS,
           bx_server_mode_name(&srv));
    fflush(stdout);
    cr_assert_eq(active, SLOTS, "%d tokens ACTIVE with --active-max %d", active, SLOTS);
    burst_free(s, N);
}
