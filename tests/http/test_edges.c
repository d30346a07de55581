/* test_edges.c — races at the edges, where two requests decide one thing at the
 * same instant (CONTRACT §3 invariants 1-3, §6): a payment fired at the moment its hold
 * expires while a rival grabs the seat, the same Idempotency-Key from many clients
 * at once, payments and charges racing on a balance that covers only some of them,
 * and a cancel racing the payment of the same hold. Every reservation ends in
 * exactly one state that matches what its clients were told; no seat is sold and
 * held at once; no balance goes below zero; `boxoffice audit` agrees.
 * test_concurrency.c already covers seat races, one user's charges against its
 * payments, twenty clicks with different keys and payments around the expiry of
 * one user's holds; this file adds the rival, the cross-instance same-key race
 * (scale-out: half the clients straight to each instance), the overdraft edge and
 * cancel-vs-pay. Worker threads never assert; the main thread judges. */
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

TestSuite(edges, .fini = teardown, .timeout = 180);

#define START(...)                                                                                                     \
    do {                                                                                                               \
        BX_START(&srv, ##__VA_ARGS__);                                                                                 \
        bx_client_init(&C, &srv);                                                                                      \
    } while (0)

/* ------------------------------------------------------------ shots */

/* One request on its own connection, sent by its own thread when released: at
 * `at_ms` (monotonic) when set, else by the barrier. In scale-out mode shot i goes
 * straight to instance i % 2 when `direct` is set, else through nginx. */
struct shot {
    const char *method, *path;
    struct bx_req req;
    int64_t at_ms;
    bool direct;
    int idx;
    pthread_barrier_t *go;
    /* results */
    long status;
    char code[48];
    char *body;
    int64_t sent_ms, done_ms;
};

static void *shot_main(void *arg)
{
    struct shot *s = arg;
    struct bx_client c;
    if (s->direct && bx_scaleout(&srv))
        bx_client_init_instance(&c, &srv, s->idx % 2);
    else
        bx_client_init(&c, &srv);
    /* connect first, so the release sends the request itself */
    bx_http(&c, "GET", "/healthz", NULL);
    if (s->go != NULL)
        pthread_barrier_wait(s->go);
    if (s->at_ms > 0) {
        int64_t wait = s->at_ms - bx_now_ms();
        if (wait > 0)
            bx_sleep_ms((int)wait);
    }
    s->sent_ms = bx_now_ms();
    struct bx_resp *r = bx_http(&c, s->method, s->path, &s->req);
    s->done_ms = bx_now_ms();
    s->status = r->status;
    snprintf(s->code, sizeof s->code, "%s", bx_err_code(r));
    s->body = strdup(r->status ? r->body : r->error);
    bx_client_release(&c);
    return NULL;
}

/* Runs the n shots, each on a thread; with a barrier when `together`. */
static void fire(struct shot *s, int n, bool together)
{
    pthread_t *th = calloc((size_t)n, sizeof *th);
    pthread_barrier_t go;
    cr_assert(th != NULL);
    if (together)
        pthread_barrier_init(&go, NULL, (unsigned)n);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1 << 20);
    for (int i = 0; i < n; i++) {
        s[i].go = together ? &go : NULL;
        if (s[i].idx == 0)
            s[i].idx = i;
        int rc = pthread_create(&th[i], &attr, shot_main, &s[i]);
        cr_assert_eq(rc, 0, "pthread_create: %s", strerror(rc));
    }
    pthread_attr_destroy(&attr);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    if (together)
        pthread_barrier_destroy(&go);
    free(th);
}

static void shots_free(struct shot *s, int n)
{
    for (int i = 0; i < n; i++)
        free(s[i].body);
}

static const char *reservation_status(const char *at, int64_t rid)
{
    struct bx_resp *r =
        bx_http(&C, "GET", bx_str(&C, "/api/v1/reservations/%lld", (long long)rid), &(struct bx_req){.bearer = at});
    bx_expect(r, 200, NULL);
    return bx_jstr(r->json, "status");
}

/* status of every seat of a schedule: AVAILABLE / HELD / SOLD */
static json_t *seat_map(const char *at, const char *qt, int64_t sid)
{
    struct bx_resp *r = bx_http(&C, "GET", bx_str(&C, "/api/v1/schedules/%lld/seats", (long long)sid),
                                &(struct bx_req){.bearer = at, .queue_token = qt});
    bx_expect(r, 200, NULL);
    return json_object_get(r->json, "seats");
}

static const char *seat_status(json_t *seats, int seat_no)
{
    size_t i;
    json_t *s;
    json_array_foreach(seats, i, s)
    {
        if (bx_jint(s, "seatNo") == seat_no)
            return bx_jstr(s, "status");
    }
    return "";
}

static int history_count(const char *at)
{
    struct bx_resp *r = bx_http(&C, "GET", "/api/v1/users/me/payments?limit=100", &(struct bx_req){.bearer = at});
    bx_expect(r, 200, NULL);
    return (int)json_array_size(json_object_get(r->json, "payments"));
}

static void expect_audit_clean(const char *when)
{
    char *out = NULL;
    int rc = bx_audit(&srv, &out);
    cr_assert_eq(rc, 0, "audit %s: exit %d:\n%s", when, rc, out);
    free(out);
}

/* ------------------------------------------------------------ pay vs rival at expiry */

Test(edges, a_payment_and_a_rival_hold_at_the_instant_of_expiry_never_both_win)
{
    enum { N = 30, PRICE = 1000 };
    START("--hold-ttl", "1");
    int64_t cid = bx_admin_concert(&C, "Deadline with a rival");
    int64_t sid = bx_admin_schedule(&C, cid, N, PRICE);
    const char *owner_at[N], *owner_qt[N], *rival_at[N], *rival_qt[N];
    for (int i = 0; i < N; i++) {
        owner_at[i] = bx_user(&C, bx_str(&C, "owner-%d", i), NULL);
        owner_qt[i] = bx_queue_active(&C, owner_at[i], cid);
        bx_charge(&C, owner_at[i], PRICE);
        rival_at[i] = bx_user(&C, bx_str(&C, "rival-%d", i), NULL);
        rival_qt[i] = bx_queue_active(&C, rival_at[i], cid);
    }
    /* each owner holds seat i+1; its payment and the rival's hold of the same seat
     * are fired together at hold answer + 1 s + an offset in -150..+150 ms */
    struct shot s[2 * N];
    int64_t rid[N];
    memset(s, 0, sizeof s);
    for (int i = 0; i < N; i++) {
        rid[i] = bx_hold(&C, owner_at[i], owner_qt[i], sid, i + 1);
        int64_t at = bx_now_ms() + 1000 - 150 + (300 * i) / (N - 1);
        s[2 * i] = (struct shot){.method = "POST",
                                 .path = "/api/v1/payments",
                                 .req = {.bearer = owner_at[i],
                                         .queue_token = owner_qt[i],
                                         .body = bx_str(&C, "{\"reservationId\":%lld}", (long long)rid[i])},
                                 .at_ms = at,
                                 .direct = true,
                                 .idx = 2 * i};
        s[2 * i + 1] = (struct shot){.method = "POST",
                                     .path = "/api/v1/reservations",
                                     .req = {.bearer = rival_at[i],
                                             .queue_token = rival_qt[i],
                                             .body = bx_str(&C, "{\"scheduleId\":%lld,\"seatNo\":%d}", (long long)sid,
                                                            i + 1)},
                                     .at_ms = at,
                                     .direct = true,
                                     .idx = 2 * i + 1};
    }
    fire(s, 2 * N, false);
    bx_sleep_ms(2200); /* every unpaid hold (owners' and rivals') is expired and swept now */

    int paid = 0, expired = 0, rival_won = 0, rival_refused = 0, both = 0, late = 0;
    for (int i = 0; i < 2 * N; i++)
        late += s[i].sent_ms - s[i].at_ms > 50;
    json_t *seats = json_incref(seat_map(rival_at[0], rival_qt[0], sid));
    for (int i = 0; i < N; i++) {
        struct shot *pay = &s[2 * i], *grab = &s[2 * i + 1];
        const char *st = reservation_status(owner_at[i], rid[i]);
        const char *seat = seat_status(seats, i + 1);
        bool pay_ok = pay->status == 201;
        bool grab_ok = grab->status == 201;
        cr_assert(pay_ok || (pay->status == 409 && strcmp(pay->code, "HOLD_EXPIRED") == 0),
                  "seat %d: payment answered %ld %s", i + 1, pay->status, pay->body);
        cr_assert(grab_ok || (grab->status == 409 && strcmp(grab->code, "SEAT_UNAVAILABLE") == 0),
                  "seat %d: rival hold answered %ld %s", i + 1, grab->status, grab->body);
        both += pay_ok && grab_ok;
        cr_assert(!(pay_ok && grab_ok), "seat %d: paid by its owner AND held by a rival (%s / %s)", i + 1, pay->body,
                  grab->body);
        if (pay_ok) {
            paid++;
            cr_assert_str_eq(st, "CONFIRMED", "seat %d: paid (201) but the reservation reads %s", i + 1, st);
            cr_assert_str_eq(seat, "SOLD", "seat %d: paid but the seat map says %s", i + 1, seat);
            cr_assert_eq(bx_balance(&C, owner_at[i]), 0);
        } else {
            expired++;
            cr_assert_str_eq(st, "EXPIRED", "seat %d: refused (HOLD_EXPIRED) but the reservation reads %s", i + 1, st);
            cr_assert_eq(bx_balance(&C, owner_at[i]), PRICE, "seat %d: refused payment moved money", i + 1);
            /* the rival's own 1 s hold has run out by now as well */
            cr_assert_str_eq(seat, "AVAILABLE", "seat %d: unpaid, seat map says %s", i + 1, seat);
        }
        rival_won += grab_ok;
        rival_refused += !grab_ok;
        cr_assert_eq(history_count(owner_at[i]), pay_ok ? 1 : 0);
    }
    json_decref(seats);
    printf("figure: payment and rival hold fired together at hold expiry -150..+150 ms (%d seats) [%s]: %d paid, %d "
           "expired (HOLD_EXPIRED), rival holds %d won / %d refused, %d seats both paid and re-held (%d of %d requests "
           "sent over 50 ms late)\n",
           N, bx_server_mode_name(&srv), paid, expired, rival_won, rival_refused, both, late, 2 * N);
    fflush(stdout);
    shots_free(s, 2 * N);
    expect_audit_clean("after payments raced rival holds at the expiry");
}

/* ------------------------------------------------------------ one key, many clients */

Test(edges, one_idempotency_key_from_forty_clients_at_once_has_one_effect)
{
    enum { N = 40, PRICE = 7000 };
    START();
    const char *at = bx_user(&C, "keyholder", NULL);
    int64_t cid = bx_admin_concert(&C, "One key");
    int64_t sid = bx_admin_schedule(&C, cid, 10, PRICE);
    const char *qt = bx_queue_active(&C, at, cid);
    int64_t rid = bx_hold(&C, at, qt, sid, 3);
    bx_hold(&C, at, qt, sid, 4); /* a second live hold keeps the token ACTIVE after the payment */

    /* 1. the same charge (key + body) from 40 clients */
    struct shot s[N];
    memset(s, 0, sizeof s);
    for (int i = 0; i < N; i++)
        s[i] = (struct shot){.method = "POST",
                             .path = "/api/v1/users/me/balance/charge",
                             .req = {.bearer = at, .idem_key = "edge-charge-1", .body = "{\"amount\":10000}"},
                             .direct = true,
                             .idx = i};
    fire(s, N, true);
    const char *first = NULL;
    int charge_ok = 0;
    for (int i = 0; i < N; i++) {
        cr_assert_eq(s[i].status, 200, "charge %d: %ld %s", i, s[i].status, s[i].body);
        charge_ok++;
        if (first == NULL)
            first = bx_str(&C, "%s", s[i].body);
        cr_assert_str_eq(s[i].body, first, "two different answers for one Idempotency-Key");
    }
    shots_free(s, N);
    cr_assert_eq(bx_balance(&C, at), 10000, "one charge key charged %lld", (long long)bx_balance(&C, at));

    /* 2. the same payment (key + body) from 40 clients */
    memset(s, 0, sizeof s);
    const char *pay_body = bx_str(&C, "{\"reservationId\":%lld}", (long long)rid);
    for (int i = 0; i < N; i++)
        s[i] = (struct shot){.method = "POST",
                             .path = "/api/v1/payments",
                             .req = {.bearer = at, .queue_token = qt, .idem_key = "edge-pay-1", .body = pay_body},
                             .direct = true,
                             .idx = i};
    fire(s, N, true);
    int pay_ok = 0, pay_other = 0;
    first = NULL;
    for (int i = 0; i < N; i++) {
        if (s[i].status == 201) {
            pay_ok++;
            if (first == NULL)
                first = bx_str(&C, "%s", s[i].body);
            cr_assert_str_eq(s[i].body, first, "two different payments for one Idempotency-Key");
        } else {
            pay_other++;
            cr_assert_fail("payment %d with the shared key: %ld %s", i, s[i].status, s[i].body);
        }
    }
    shots_free(s, N);
    cr_assert_eq(history_count(at), 1);
    cr_assert_eq(bx_balance(&C, at), 10000 - PRICE);
    cr_assert_str_eq(reservation_status(at, rid), "CONFIRMED");
    /* a retry afterwards still replays the same answer */
    struct bx_resp *r = bx_http(&C, "POST", "/api/v1/payments",
                                &(struct bx_req){.bearer = at, .queue_token = qt, .idem_key = "edge-pay-1", .body = pay_body});
    bx_expect(r, 201, NULL);
    cr_assert_str_eq(r->body, first);

    /* 3. one key, 20 different bodies at once: one wins, the rest are 422 */
    enum { M = 20 };
    memset(s, 0, sizeof s);
    for (int i = 0; i < M; i++)
        s[i] = (struct shot){.method = "POST",
                             .path = "/api/v1/users/me/balance/charge",
                             .req = {.bearer = at, .idem_key = "edge-charge-2", .body = bx_str(&C, "{\"amount\":%d}", 100 + i)},
                             .direct = true,
                             .idx = i};
    fire(s, M, true);
    int won = -1, reused = 0;
    for (int i = 0; i < M; i++) {
        if (s[i].status == 200) {
            cr_assert_eq(won, -1, "two bodies accepted under one key: amounts %d and %d", 100 + won, 100 + i);
            won = i;
        } else {
            cr_assert(s[i].status == 422 && strcmp(s[i].code, "IDEMPOTENCY_KEY_REUSED") == 0, "charge %d: %ld %s", i,
                      s[i].status, s[i].body);
            reused++;
        }
    }
    shots_free(s, M);
    cr_assert(won >= 0, "no body won the key");
    cr_assert_eq(bx_balance(&C, at), 10000 - PRICE + 100 + won);
    printf("figure: one Idempotency-Key from %d clients at once%s [%s]: charge %d x 200 with one body, balance "
           "charged once; payment %d x 201 with one body, one payment in the history; %d different bodies under one "
           "key: 1 charged, %d x 422 IDEMPOTENCY_KEY_REUSED\n",
           N, bx_scaleout(&srv) ? " (half straight to instance A, half to B)" : "", bx_server_mode_name(&srv),
           charge_ok, pay_ok, M, reused);
    fflush(stdout);
    (void)pay_other;
    expect_audit_clean("after the same keys were raced");
}

/* ------------------------------------------------------------ overdraft edge */

Test(edges, payments_racing_charges_on_a_balance_that_covers_some_never_overdraw)
{
    enum { P = 30, CH = 5, READERS = 10, PRICE = 1000 };
    START("--max-seats-per-user", "100", "--rate-limit", "0");
    const char *at = bx_user(&C, "edge", NULL);
    int64_t cid = bx_admin_concert(&C, "Overdraft");
    int64_t sid = bx_admin_schedule(&C, cid, P, PRICE);
    const char *qt = bx_queue_active(&C, at, cid);
    int64_t rid[P];
    for (int i = 0; i < P; i++)
        rid[i] = bx_hold(&C, at, qt, sid, i + 1);
    bx_charge(&C, at, 5 * PRICE);

    /* 30 payments, 5 charges of one price each and 10 balance reads, all at once:
     * at most 10 payments can ever be covered */
    struct shot s[P + CH + READERS];
    memset(s, 0, sizeof s);
    int n = 0;
    for (int i = 0; i < P; i++, n++)
        s[n] = (struct shot){.method = "POST",
                             .path = "/api/v1/payments",
                             .req = {.bearer = at,
                                     .queue_token = qt,
                                     .idem_key = bx_str(&C, "od-pay-%d", i),
                                     .body = bx_str(&C, "{\"reservationId\":%lld}", (long long)rid[i])},
                             .direct = true,
                             .idx = n};
    for (int i = 0; i < CH; i++, n++)
        s[n] = (struct shot){.method = "POST",
                             .path = "/api/v1/users/me/balance/charge",
                             .req = {.bearer = at, .idem_key = bx_str(&C, "od-charge-%d", i), .body = "{\"amount\":1000}"},
                             .direct = true,
                             .idx = n};
    for (int i = 0; i < READERS; i++, n++)
        s[n] = (struct shot){
            .method = "GET", .path = "/api/v1/users/me/balance", .req = {.bearer = at}, .direct = true, .idx = n};
    fire(s, n, true);

    int paid = 0, short_ = 0, charged = 0;
    int64_t lowest = INT64_MAX;
    for (int i = 0; i < n; i++) {
        json_t *j = json_loads(s[i].body, 0, NULL);
        int64_t bal = bx_jint(j, "balance");
        json_decref(j);
        if (i < P) {
            if (s[i].status == 201) {
                paid++;
                lowest = bal < lowest ? bal : lowest;
                cr_assert_str_eq(reservation_status(at, rid[i]), "CONFIRMED");
            } else {
                cr_assert(s[i].status == 402 && strcmp(s[i].code, "INSUFFICIENT_BALANCE") == 0, "payment %d: %ld %s",
                          i, s[i].status, s[i].body);
                short_++;
                cr_assert_str_eq(reservation_status(at, rid[i]), "HELD", "a refused payment changed its hold");
            }
        } else {
            cr_assert_eq(s[i].status, 200, "%s %s: %ld %s", s[i].method, s[i].path, s[i].status, s[i].body);
            charged += i < P + CH;
            lowest = bal < lowest ? bal : lowest;
        }
    }
    int64_t final = bx_balance(&C, at);
    printf("figure: overdraft edge [%s]: balance for 5 seats, then 30 payments + 5 charges of one price + 10 reads "
           "at once%s: %d paid, %d x 402 INSUFFICIENT_BALANCE, %d charges; lowest balance any answer showed %lld, "
           "final %lld = (5 + %d - %d) x %d\n",
           bx_server_mode_name(&srv), bx_scaleout(&srv) ? " (spread over both instances)" : "", paid, short_, charged,
           (long long)lowest, (long long)final, charged, paid, PRICE);
    fflush(stdout);
    shots_free(s, n);
    cr_assert_eq(charged, CH);
    cr_assert(paid >= 5 && paid <= 5 + CH, "%d payments on a balance that covered 5..10", paid);
    cr_assert(lowest >= 0, "a balance of %lld was shown", (long long)lowest);
    cr_assert_eq(final, (int64_t)(5 + CH - paid) * PRICE);
    cr_assert_eq(history_count(at), paid);
    expect_audit_clean("after the overdraft race");
}

/* ------------------------------------------------------------ cancel vs pay */

Test(edges, a_cancel_and_a_payment_racing_on_one_hold_have_exactly_one_outcome)
{
    enum { N = 30, PRICE = 1000 };
    START("--max-seats-per-user", "100", "--rate-limit", "0");
    const char *at = bx_user(&C, "decider", NULL);
    int64_t cid = bx_admin_concert(&C, "Cancel or pay");
    int64_t sid = bx_admin_schedule(&C, cid, N + 1, PRICE);
    const char *qt = bx_queue_active(&C, at, cid);
    int64_t rid[N];
    for (int i = 0; i < N; i++)
        rid[i] = bx_hold(&C, at, qt, sid, i + 1);
    bx_hold(&C, at, qt, sid, N + 1); /* keeps the token ACTIVE to the end */
    bx_charge(&C, at, N * PRICE);

    struct shot s[2 * N];
    memset(s, 0, sizeof s);
    for (int i = 0; i < N; i++) {
        s[2 * i] = (struct shot){.method = "POST",
                                 .path = "/api/v1/payments",
                                 .req = {.bearer = at,
                                         .queue_token = qt,
                                         .idem_key = bx_str(&C, "cp-%d", i),
                                         .body = bx_str(&C, "{\"reservationId\":%lld}", (long long)rid[i])},
                                 .direct = true,
                                 .idx = 2 * i};
        s[2 * i + 1] = (struct shot){.method = "DELETE",
                                     .path = bx_str(&C, "/api/v1/reservations/%lld", (long long)rid[i]),
                                     .req = {.bearer = at},
                                     .direct = true,
                                     .idx = 2 * i + 1};
    }
    fire(s, 2 * N, true);
    int paid = 0, cancelled = 0;
    json_t *seats = json_incref(seat_map(at, qt, sid));
    for (int i = 0; i < N; i++) {
        struct shot *pay = &s[2 * i], *del = &s[2 * i + 1];
        const char *st = reservation_status(at, rid[i]);
        const char *seat = seat_status(seats, i + 1);
        if (pay->status == 201) {
            paid++;
            cr_assert(del->status == 409 && strcmp(del->code, "NOT_HELD") == 0, "seat %d paid, cancel answered %ld %s",
                      i + 1, del->status, del->body);
            cr_assert_str_eq(st, "CONFIRMED");
            cr_assert_str_eq(seat, "SOLD");
        } else {
            cr_assert(pay->status == 409 && strcmp(pay->code, "NOT_HELD") == 0, "seat %d payment: %ld %s", i + 1,
                      pay->status, pay->body);
            cr_assert_eq(del->status, 204, "seat %d: neither paid nor cancelled (cancel %ld %s)", i + 1, del->status,
                         del->body);
            cancelled++;
            cr_assert_str_eq(st, "CANCELLED");
            cr_assert_str_eq(seat, "AVAILABLE");
        }
    }
    json_decref(seats);
    printf("figure: cancel and payment fired together on each of %d holds [%s]: %d paid, %d cancelled, 0 both, 0 "
           "neither\n",
           N, bx_server_mode_name(&srv), paid, cancelled);
    fflush(stdout);
    shots_free(s, 2 * N);
    cr_assert_eq(bx_balance(&C, at), (int64_t)(N - paid) * PRICE);
    cr_assert_eq(history_count(at), paid);
    expect_audit_clean("after cancels raced payments");
}
