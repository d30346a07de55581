/* test_flow.c — the happy paths a ticket buyer walks, over real HTTP against the
 * real binary: sign up, log in, queue, pick a date and a seat, hold, charge, pay,
 * history; plus cancelling a hold and leaving the queue. */
#include "harness.h"

#include <criterion/criterion.h>
#include <string.h>

static struct bx_server srv;
static struct bx_client C;

static void teardown(void)
{
    bx_client_release(&C);
    bx_server_cleanup(&srv);
}

TestSuite(flow, .fini = teardown, .timeout = 120);

#define START(...)                                                                                                     \
    do {                                                                                                               \
        BX_START(&srv, ##__VA_ARGS__);                                                                                 \
        bx_client_init(&C, &srv);                                                                                      \
    } while (0)

/* An RFC 3339 UTC timestamp as DESIGN.md promises: 2030-01-01T19:00:00Z (fraction allowed). */
static bool is_rfc3339_utc(const char *s)
{
    size_t n = strlen(s);
    return n >= 20 && s[4] == '-' && s[7] == '-' && s[10] == 'T' && s[13] == ':' && s[16] == ':' && s[n - 1] == 'Z';
}

static bool is_base64url(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '_'))
            return false;
    return true;
}

/* status of one seat in the seat map (DESIGN: AVAILABLE | HELD | SOLD) */
static const char *seat_status(const char *at, const char *qt, int64_t sid, int seat_no)
{
    struct bx_resp *r = bx_http(&C, "GET", bx_str(&C, "/api/v1/schedules/%lld/seats", (long long)sid),
                                &(struct bx_req){.bearer = at, .queue_token = qt});
    bx_expect(r, 200, NULL);
    json_t *s = json_array_get(json_object_get(r->json, "seats"), (size_t)seat_no - 1);
    cr_assert_eq(bx_jint(s, "seatNo"), seat_no, "seat map order: %.300s", r->body);
    return bx_str(&C, "%s", bx_jstr(s, "status"));
}

static json_t *find_by_id(json_t *arr, const char *key, int64_t id)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (bx_jint(v, key) == id)
            return v;
    }
    return NULL;
}

Test(flow, signup_login_queue_hold_charge_pay_confirms_the_seat)
{
    START();
    /* sign up and log in */
    struct bx_resp *r = bx_http_json(&C, "POST", "/api/v1/users", NULL,
                                     json_pack("{s:s,s:s}", "name", "alice", "password", BX_PASSWORD));
    bx_expect(r, 201, NULL);
    int64_t uid = bx_jint(r->json, "userId");
    cr_assert(uid > 0, "userId: %s", r->body);
    cr_assert_str_eq(bx_jstr(r->json, "name"), "alice");
    cr_assert(r->request_id[0], "no X-Request-Id on signup");

    r = bx_http_json(&C, "POST", "/api/v1/sessions", NULL,
                     json_pack("{s:s,s:s}", "name", "alice", "password", BX_PASSWORD));
    bx_expect(r, 200, NULL);
    const char *at = bx_str(&C, "%s", bx_jstr(r->json, "accessToken"));
    cr_assert(*at, "accessToken: %s", r->body);
    cr_assert_eq(bx_jint(r->json, "userId"), uid);
    cr_assert(is_rfc3339_utc(bx_jstr(r->json, "expiresAt")), "expiresAt: %s", r->body);

    /* the concert is listed for everyone, no login needed */
    int64_t cid = bx_admin_concert(&C, "Spring Gala");
    int64_t sid = bx_admin_schedule(&C, cid, 50, 50000);
    r = bx_http(&C, "GET", "/api/v1/concerts", NULL);
    bx_expect(r, 200, NULL);
    json_t *concert = find_by_id(json_object_get(r->json, "concerts"), "concertId", cid);
    cr_assert(concert != NULL, "concert %lld not listed: %s", (long long)cid, r->body);
    cr_assert_str_eq(bx_jstr(concert, "title"), "Spring Gala");
    cr_assert_str_eq(bx_jstr(concert, "venue"), "Test Hall");

    /* queue: a free slot and nobody ahead -> ACTIVE at once */
    struct bx_req auth = {.bearer = at};
    r = bx_http(&C, "POST", bx_str(&C, "/api/v1/concerts/%lld/queue/tokens", (long long)cid), &auth);
    bx_expect(r, 201, NULL);
    const char *qt = bx_str(&C, "%s", bx_jstr(r->json, "token"));
    cr_assert_eq(strlen(qt), 35, "token should be 35 chars of base64url: %s", r->body);
    cr_assert(is_base64url(qt), "token not base64url: %s", qt);
    cr_assert_str_eq(bx_jstr(r->json, "status"), "ACTIVE", "%s", r->body);
    cr_assert_eq(bx_jint(r->json, "position"), 0, "%s", r->body);
    cr_assert_eq(bx_jint(r->json, "estimatedWaitSeconds"), 0, "%s", r->body);
    cr_assert(bx_jint(r->json, "pollAfterMs") > 0, "%s", r->body);

    struct bx_req q = {.bearer = at, .queue_token = qt};
    r = bx_http(&C, "GET", "/api/v1/queue/status", &q);
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "status"), "ACTIVE");
    cr_assert_str_eq(bx_jstr(r->json, "token"), qt);

    /* bookable dates with their free seats */
    r = bx_http(&C, "GET", bx_str(&C, "/api/v1/concerts/%lld/schedules", (long long)cid), &q);
    bx_expect(r, 200, NULL);
    json_t *sched = find_by_id(json_object_get(r->json, "schedules"), "scheduleId", sid);
    cr_assert(sched != NULL, "schedule %lld not listed: %s", (long long)sid, r->body);
    cr_assert(is_rfc3339_utc(bx_jstr(sched, "startsAt")), "startsAt: %s", r->body);
    cr_assert_eq(bx_jint(sched, "availableSeats"), 50, "%s", r->body);
    cr_assert_eq(bx_jint(sched, "totalSeats"), 50, "%s", r->body);
    cr_assert_eq(bx_jint(r->json, "concertId"), cid, "%s", r->body);

    /* the seat map: 50 seats, all available at the price */
    r = bx_http(&C, "GET", bx_str(&C, "/api/v1/schedules/%lld/seats", (long long)sid), &q);
    bx_expect(r, 200, NULL);
    cr_assert_eq(bx_jint(r->json, "scheduleId"), sid);
    cr_assert_eq(bx_jint(r->json, "concertId"), cid, "%.300s", r->body);
    json_t *seats = json_object_get(r->json, "seats");
    cr_assert_eq(json_array_size(seats), 50, "%s", r->body);
    for (size_t i = 0; i < 50; i++) {
        json_t *s = json_array_get(seats, i);
        cr_assert_eq(bx_jint(s, "seatNo"), (int64_t)i + 1, "seat order: %s", r->body);
        cr_assert_eq(bx_jint(s, "price"), 50000);
        cr_assert(json_is_true(json_object_get(s, "available")), "seat %zu not available", i + 1);
        cr_assert_str_eq(bx_jstr(s, "status"), "AVAILABLE", "seat %zu", i + 1);
    }

    /* hold seat 7 */
    r = bx_http_json(&C, "POST", "/api/v1/reservations", &q,
                     json_pack("{s:I,s:i}", "scheduleId", (json_int_t)sid, "seatNo", 7));
    bx_expect(r, 201, NULL);
    int64_t rid = bx_jint(r->json, "reservationId");
    cr_assert(rid > 0, "%s", r->body);
    cr_assert_str_eq(bx_jstr(r->json, "status"), "HELD");
    cr_assert_eq(bx_jint(r->json, "seatNo"), 7);
    cr_assert_eq(bx_jint(r->json, "price"), 50000);
    cr_assert_eq(bx_jint(r->json, "scheduleId"), sid, "%s", r->body);
    cr_assert(is_rfc3339_utc(bx_jstr(r->json, "expiresAt")), "expiresAt: %s", r->body);
    int64_t left = bx_parse_time(bx_jstr(r->json, "expiresAt")) - bx_unix_now();
    cr_assert(left >= 295 && left <= 301, "a hold lasts --hold-ttl (300 s), expiresAt is %lld s away: %s",
              (long long)left, r->body);

    /* another buyer sees seat 7 taken and cannot hold it */
    const char *bt = bx_user(&C, "bob", NULL);
    const char *bq = bx_queue_active(&C, bt, cid);
    int navail;
    cr_assert(!bx_seat_available(&C, bt, bq, sid, 7, &navail), "held seat 7 still shown available");
    cr_assert_str_eq(seat_status(bt, bq, sid, 7), "HELD");
    cr_assert_eq(navail, 49);
    struct bx_req bob = {.bearer = bt, .queue_token = bq};
    r = bx_http(&C, "GET", bx_str(&C, "/api/v1/concerts/%lld/schedules", (long long)cid), &bob);
    bx_expect(r, 200, NULL);
    cr_assert_eq(bx_jint(find_by_id(json_object_get(r->json, "schedules"), "scheduleId", sid), "availableSeats"), 49,
                 "%s", r->body);
    r = bx_http_json(&C, "POST", "/api/v1/reservations", &bob,
                     json_pack("{s:I,s:i}", "scheduleId", (json_int_t)sid, "seatNo", 7));
    bx_expect(r, 409, "SEAT_UNAVAILABLE");

    /* the reservation reads HELD for its owner */
    r = bx_http(&C, "GET", bx_str(&C, "/api/v1/reservations/%lld", (long long)rid), &auth);
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "status"), "HELD");
    cr_assert(bx_jnull(r->json, "confirmedAt"), "confirmedAt should be null while HELD: %s", r->body);
    int64_t held_at = bx_parse_time(bx_jstr(r->json, "heldAt"));
    cr_assert(held_at > 0, "heldAt: %s", r->body);
    cr_assert_eq(bx_parse_time(bx_jstr(r->json, "expiresAt")) - held_at, 300, "expiresAt - heldAt: %s", r->body);

    /* charge, then pay */
    cr_assert_eq(bx_balance(&C, at), 0);
    r = bx_http_json(&C, "POST", "/api/v1/users/me/balance/charge", &auth, json_pack("{s:i}", "amount", 120000));
    bx_expect(r, 200, NULL);
    cr_assert_eq(bx_jint(r->json, "userId"), uid);
    cr_assert_eq(bx_jint(r->json, "balance"), 120000);

    r = bx_http_json(&C, "POST", "/api/v1/payments", &q, json_pack("{s:I}", "reservationId", (json_int_t)rid));
    bx_expect(r, 201, NULL);
    int64_t pid = bx_jint(r->json, "paymentId");
    cr_assert(pid > 0, "%s", r->body);
    cr_assert_eq(bx_jint(r->json, "reservationId"), rid);
    cr_assert_eq(bx_jint(r->json, "amount"), 50000);
    cr_assert_eq(bx_jint(r->json, "balance"), 70000);
    cr_assert(is_rfc3339_utc(bx_jstr(r->json, "paidAt")), "paidAt: %s", r->body);
    cr_assert_eq(bx_balance(&C, at), 70000, "balance must drop by the price exactly once");

    /* paying the only hold expires the queue token */
    r = bx_http(&C, "GET", "/api/v1/queue/status", &q);
    bx_expect(r, 410, "TOKEN_EXPIRED");

    /* the reservation is CONFIRMED and the seat stays taken */
    r = bx_http(&C, "GET", bx_str(&C, "/api/v1/reservations/%lld", (long long)rid), &auth);
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "status"), "CONFIRMED", "%s", r->body);
    cr_assert_eq(bx_jint(r->json, "seatNo"), 7);
    cr_assert_eq(bx_jint(r->json, "scheduleId"), sid);
    cr_assert_eq(bx_jint(r->json, "concertId"), cid, "%s", r->body);
    cr_assert_eq(bx_jint(r->json, "price"), 50000);
    cr_assert(is_rfc3339_utc(bx_jstr(r->json, "confirmedAt")), "confirmedAt: %s", r->body);
    cr_assert(!bx_seat_available(&C, bt, bq, sid, 7, &navail), "sold seat 7 shown available");
    cr_assert_str_eq(seat_status(bt, bq, sid, 7), "SOLD");
    cr_assert_eq(navail, 49);

    /* history */
    r = bx_http(&C, "GET", "/api/v1/users/me/payments", &auth);
    bx_expect(r, 200, NULL);
    json_t *pays = json_object_get(r->json, "payments");
    cr_assert_eq(json_array_size(pays), 1, "%s", r->body);
    json_t *p0 = json_array_get(pays, 0);
    cr_assert_eq(bx_jint(p0, "paymentId"), pid);
    cr_assert_eq(bx_jint(p0, "reservationId"), rid);
    cr_assert_eq(bx_jint(p0, "amount"), 50000);
    cr_assert_eq(bx_jint(p0, "balance"), 70000);
    cr_assert(bx_jnull(r->json, "nextBefore"), "one payment: nextBefore must be null: %s", r->body);

    r = bx_http(&C, "GET", "/api/v1/users/me/reservations", &auth);
    bx_expect(r, 200, NULL);
    json_t *res = json_object_get(r->json, "reservations");
    cr_assert_eq(json_array_size(res), 1, "%s", r->body);
    cr_assert_eq(bx_jint(json_array_get(res, 0), "reservationId"), rid);
    cr_assert_str_eq(bx_jstr(json_array_get(res, 0), "status"), "CONFIRMED");

    /* bob's lists are his own */
    r = bx_http(&C, "GET", "/api/v1/users/me/payments", &(struct bx_req){.bearer = bt});
    bx_expect(r, 200, NULL);
    cr_assert_eq(json_array_size(json_object_get(r->json, "payments")), 0, "%s", r->body);
    r = bx_http(&C, "GET", "/api/v1/users/me/reservations", &(struct bx_req){.bearer = bt});
    bx_expect(r, 200, NULL);
    cr_assert_eq(json_array_size(json_object_get(r->json, "reservations")), 0, "%s", r->body);

    char *out = NULL;
    int rc = bx_audit(&srv, &out);
    cr_expect_eq(rc, 0, "audit exit %d:\n%s", rc, out);
    free(out);
}

Test(flow, reissuing_a_queue_token_returns_the_same_token)
{
    START();
    const char *at = bx_user(&C, "carol", NULL);
    int64_t c1 = bx_admin_concert(&C, "One");
    int64_t c2 = bx_admin_concert(&C, "Two");
    struct bx_req auth = {.bearer = at};
    const char *path = bx_str(&C, "/api/v1/concerts/%lld/queue/tokens", (long long)c1);
    struct bx_resp *r1 = bx_http(&C, "POST", path, &auth);
    bx_expect(r1, 201, NULL);
    struct bx_resp *r2 = bx_http(&C, "POST", path, &auth);
    bx_expect(r2, 200, NULL);
    cr_assert_str_eq(bx_jstr(r2->json, "token"), bx_jstr(r1->json, "token"), "re-issue gave another token");
    cr_assert_str_eq(bx_jstr(r2->json, "status"), "ACTIVE");
    /* another concert is another queue: a new token */
    struct bx_resp *r3 = bx_http(&C, "POST", bx_str(&C, "/api/v1/concerts/%lld/queue/tokens", (long long)c2), &auth);
    bx_expect(r3, 201, NULL);
    cr_assert_str_neq(bx_jstr(r3->json, "token"), bx_jstr(r1->json, "token"));
    /* the first token is still the live one */
    r1 = bx_http(&C, "GET", "/api/v1/queue/status",
                 &(struct bx_req){.bearer = at, .queue_token = bx_jstr(r1->json, "token")});
    bx_expect(r1, 200, NULL);
    cr_assert_str_eq(bx_jstr(r1->json, "status"), "ACTIVE");
}

Test(flow, user_holding_two_seats_pays_both_and_the_token_ends_after_the_last)
{
    START();
    const char *at = bx_user(&C, "dave", NULL);
    int64_t cid = bx_admin_concert(&C, "Duo");
    int64_t sid = bx_admin_schedule(&C, cid, 50, 30000);
    const char *qt = bx_queue_active(&C, at, cid);
    int64_t r1 = bx_hold(&C, at, qt, sid, 1);
    int64_t r2 = bx_hold(&C, at, qt, sid, 2);
    cr_assert_eq(bx_charge(&C, at, 100000), 100000);

    struct bx_resp *p = bx_pay(&C, at, qt, r1);
    cr_assert_eq(bx_jint(p->json, "balance"), 70000);
    struct bx_req q = {.bearer = at, .queue_token = qt};
    struct bx_resp *r = bx_http(&C, "GET", "/api/v1/queue/status", &q);
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "status"), "ACTIVE", "token must stay while another hold is live: %s", r->body);

    p = bx_pay(&C, at, qt, r2);
    cr_assert_eq(bx_jint(p->json, "balance"), 40000);
    r = bx_http(&C, "GET", "/api/v1/queue/status", &q);
    bx_expect(r, 410, "TOKEN_EXPIRED");
    cr_assert_eq(bx_balance(&C, at), 40000);

    struct bx_req auth = {.bearer = at};
    r = bx_http(&C, "GET", "/api/v1/users/me/reservations", &auth);
    bx_expect(r, 200, NULL);
    json_t *res = json_object_get(r->json, "reservations");
    cr_assert_eq(json_array_size(res), 2, "%s", r->body);
    cr_assert_eq(bx_jint(json_array_get(res, 0), "reservationId"), r2, "newest first: %s", r->body);
    cr_assert_eq(bx_jint(json_array_get(res, 1), "reservationId"), r1, "newest first: %s", r->body);
    cr_assert_str_eq(bx_jstr(json_array_get(res, 0), "status"), "CONFIRMED");
    cr_assert_str_eq(bx_jstr(json_array_get(res, 1), "status"), "CONFIRMED");
}

Test(flow, payment_history_is_newest_first_and_paginated)
{
    START();
    const char *at = bx_user(&C, "erin", NULL);
    int64_t cid = bx_admin_concert(&C, "Trio");
    int64_t sid = bx_admin_schedule(&C, cid, 50, 1000);
    const char *qt = bx_queue_active(&C, at, cid);
    int64_t rid[3], pid[3];
    for (int i = 0; i < 3; i++)
        rid[i] = bx_hold(&C, at, qt, sid, 10 + i);
    bx_charge(&C, at, 5000);
    for (int i = 0; i < 3; i++)
        pid[i] = bx_jint(bx_pay(&C, at, qt, rid[i])->json, "paymentId");
    cr_assert(pid[0] > 0 && pid[1] > 0 && pid[2] > 0);

    struct bx_req auth = {.bearer = at};
    struct bx_resp *r = bx_http(&C, "GET", "/api/v1/users/me/payments", &auth);
    bx_expect(r, 200, NULL);
    json_t *pays = json_object_get(r->json, "payments");
    cr_assert_eq(json_array_size(pays), 3, "%s", r->body);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(bx_jint(json_array_get(pays, (size_t)i), "paymentId"), pid[2 - i], "newest first: %s", r->body);
    cr_assert(bx_jnull(r->json, "nextBefore"), "%s", r->body);

    r = bx_http(&C, "GET", "/api/v1/users/me/payments?limit=2", &auth);
    bx_expect(r, 200, NULL);
    pays = json_object_get(r->json, "payments");
    cr_assert_eq(json_array_size(pays), 2, "%s", r->body);
    cr_assert_eq(bx_jint(json_array_get(pays, 0), "paymentId"), pid[2]);
    cr_assert_eq(bx_jint(json_array_get(pays, 1), "paymentId"), pid[1]);
    cr_assert_eq(bx_jint(json_array_get(pays, 1), "amount"), 1000);
    cr_assert_eq(bx_jint(json_array_get(pays, 1), "reservationId"), rid[1]);
    int64_t next = bx_jint(r->json, "nextBefore");
    cr_assert(next != INT64_MIN, "nextBefore must be set when more pages exist: %s", r->body);

    r = bx_http(&C, "GET", bx_str(&C, "/api/v1/users/me/payments?limit=2&before=%lld", (long long)next), &auth);
    bx_expect(r, 200, NULL);
    pays = json_object_get(r->json, "payments");
    cr_assert_eq(json_array_size(pays), 1, "%s", r->body);
    cr_assert_eq(bx_jint(json_array_get(pays, 0), "paymentId"), pid[0]);
    cr_assert(bx_jnull(r->json, "nextBefore"), "last page: nextBefore must be null: %s", r->body);

    r = bx_http(&C, "GET", bx_str(&C, "/api/v1/users/me/payments?before=%lld", (long long)pid[0]), &auth);
    bx_expect(r, 200, NULL);
    cr_assert_eq(json_array_size(json_object_get(r->json, "payments")), 0, "%s", r->body);
}

Test(flow, cancelling_a_hold_releases_the_seat_once)
{
    START();
    const char *at = bx_user(&C, "frank", NULL);
    const char *bt = bx_user(&C, "grace", NULL);
    int64_t cid = bx_admin_concert(&C, "Solo");
    int64_t sid = bx_admin_schedule(&C, cid, 50, 50000);
    const char *aq = bx_queue_active(&C, at, cid);
    const char *bq = bx_queue_active(&C, bt, cid);
    int64_t rid = bx_hold(&C, at, aq, sid, 3);
    cr_assert(!bx_seat_available(&C, bt, bq, sid, 3, NULL));

    struct bx_req auth = {.bearer = at};
    const char *path = bx_str(&C, "/api/v1/reservations/%lld", (long long)rid);
    struct bx_resp *r = bx_http(&C, "DELETE", path, &auth);
    bx_expect(r, 204, NULL);
    cr_assert_eq(r->len, 0, "204 with a body: %s", r->body);
    int navail;
    cr_assert(bx_seat_available(&C, bt, bq, sid, 3, &navail), "cancelled seat 3 not released");
    cr_assert_eq(navail, 50);

    r = bx_http(&C, "GET", path, &auth);
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "status"), "CANCELLED", "%s", r->body);

    r = bx_http(&C, "DELETE", path, &auth);
    bx_expect(r, 409, "NOT_HELD");

    /* the seat can be held by someone else now, and A's token is still usable */
    bx_hold(&C, bt, bq, sid, 3);
    r = bx_http(&C, "GET", "/api/v1/queue/status", &(struct bx_req){.bearer = at, .queue_token = aq});
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "status"), "ACTIVE");
}

Test(flow, leaving_the_queue_expires_the_token)
{
    START();
    const char *at = bx_user(&C, "heidi", NULL);
    int64_t cid = bx_admin_concert(&C, "Exit");
    int64_t sid = bx_admin_schedule(&C, cid, 50, 50000);
    const char *qt = bx_queue_active(&C, at, cid);
    struct bx_req q = {.bearer = at, .queue_token = qt};

    struct bx_resp *r = bx_http(&C, "DELETE", "/api/v1/queue/tokens/current", &q);
    bx_expect(r, 204, NULL);
    r = bx_http(&C, "GET", "/api/v1/queue/status", &q);
    bx_expect(r, 410, "TOKEN_EXPIRED");
    r = bx_http(&C, "GET", bx_str(&C, "/api/v1/schedules/%lld/seats", (long long)sid), &q);
    bx_expect(r, 410, "TOKEN_EXPIRED");

    /* coming back means a new place in line */
    r = bx_http(&C, "POST", bx_str(&C, "/api/v1/concerts/%lld/queue/tokens", (long long)cid),
                &(struct bx_req){.bearer = at});
    bx_expect(r, 201, NULL);
    cr_assert_str_neq(bx_jstr(r->json, "token"), qt, "a left token must not come back");
    cr_assert_str_eq(bx_jstr(r->json, "status"), "ACTIVE");
}

/* ------------------------------------------------------------ the waiting room */

static struct bx_resp *queue_status(const char *at, const char *qt)
{
    return bx_http(&C, "GET", "/api/v1/queue/status", &(struct bx_req){.bearer = at, .queue_token = qt});
}

static void expect_position(const char *at, const char *qt, const char *status, int position)
{
    struct bx_resp *r = queue_status(at, qt);
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "status"), status, "%s", r->body);
    cr_assert_eq(bx_jint(r->json, "position"), position, "expected position %d: %s", position, r->body);
}

Test(flow, paying_frees_a_queue_slot_for_the_next_in_line)
{
    START("--active-max", "1");
    const char *at = bx_user(&C, "ivy", NULL);
    const char *bt = bx_user(&C, "jon", NULL);
    const char *ct = bx_user(&C, "kai", NULL);
    int64_t cid = bx_admin_concert(&C, "Slots");
    int64_t sid = bx_admin_schedule(&C, cid, 50, 1000);
    const char *aq = bx_queue_active(&C, at, cid);
    char st[16];
    const char *bq = bx_queue_issue(&C, bt, cid, st, sizeof st);
    cr_assert_str_eq(st, "WAITING");
    const char *cq = bx_queue_issue(&C, ct, cid, st, sizeof st);
    cr_assert_str_eq(st, "WAITING");
    expect_position(bt, bq, "WAITING", 1);
    expect_position(ct, cq, "WAITING", 2);

    int64_t rid = bx_hold(&C, at, aq, sid, 1);
    bx_charge(&C, at, 1000);
    bx_pay(&C, at, aq, rid);
    bx_wait_active(&C, bt, bq, 3000);
    expect_position(bt, bq, "ACTIVE", 0);
    expect_position(ct, cq, "WAITING", 1);
}

Test(flow, an_idle_active_token_expires_and_the_next_in_line_is_admitted)
{
    START("--active-max", "1", "--active-idle", "1");
    const char *at = bx_user(&C, "lea", NULL);
    const char *bt = bx_user(&C, "max", NULL);
    int64_t cid = bx_admin_concert(&C, "Idle");
    const char *aq = bx_queue_active(&C, at, cid);
    char st[16];
    const char *bq = bx_queue_issue(&C, bt, cid, st, sizeof st);
    cr_assert_str_eq(st, "WAITING");
    /* lea stops making requests; max keeps polling */
    int64_t deadline = bx_now_ms() + 4000;
    for (;;) {
        struct bx_resp *r = queue_status(bt, bq);
        bx_expect(r, 200, NULL);
        if (strcmp(bx_jstr(r->json, "status"), "ACTIVE") == 0)
            break;
        cr_assert(bx_now_ms() < deadline, "max not admitted 4 s after lea went idle (--active-idle 1): %s", r->body);
        bx_sleep_ms(200);
    }
    bx_expect(queue_status(at, aq), 410, "TOKEN_EXPIRED");
}

Test(flow, a_waiting_token_that_stops_polling_loses_its_place)
{
    START("--active-max", "1", "--waiting-idle", "1");
    const char *at = bx_user(&C, "ned", NULL);
    const char *bt = bx_user(&C, "ora", NULL);
    const char *ct = bx_user(&C, "pia", NULL);
    int64_t cid = bx_admin_concert(&C, "Patience");
    const char *aq = bx_queue_active(&C, at, cid);
    char st[16];
    const char *bq = bx_queue_issue(&C, bt, cid, st, sizeof st);
    const char *cq = bx_queue_issue(&C, ct, cid, st, sizeof st);
    expect_position(ct, cq, "WAITING", 2);
    /* pia keeps polling, ora does not */
    for (int i = 0; i < 8; i++) {
        bx_sleep_ms(250);
        bx_expect(queue_status(ct, cq), 200, NULL);
        bx_expect(queue_status(at, aq), 200, NULL); /* the ACTIVE one stays (active-idle 300) */
    }
    bx_expect(queue_status(bt, bq), 410, "TOKEN_EXPIRED");
    expect_position(ct, cq, "WAITING", 1);
    expect_position(at, aq, "ACTIVE", 0);
}

Test(flow, a_waiting_user_who_leaves_lets_the_others_move_up)
{
    START("--active-max", "1");
    const char *at[4], *qt[4];
    int64_t cid = bx_admin_concert(&C, "Shuffle");
    for (int i = 0; i < 4; i++) {
        at[i] = bx_user(&C, bx_str(&C, "mover-%d", i), NULL);
        qt[i] = bx_queue_issue(&C, at[i], cid, NULL, 0);
    }
    expect_position(at[0], qt[0], "ACTIVE", 0);
    expect_position(at[2], qt[2], "WAITING", 2);
    bx_expect(
        bx_http(&C, "DELETE", "/api/v1/queue/tokens/current", &(struct bx_req){.bearer = at[1], .queue_token = qt[1]}),
        204, NULL);
    bx_expect(queue_status(at[1], qt[1]), 410, "TOKEN_EXPIRED");
    expect_position(at[0], qt[0], "ACTIVE", 0);
    expect_position(at[2], qt[2], "WAITING", 1);
    expect_position(at[3], qt[3], "WAITING", 2);
}

/* The estimated wait the user sees (estimatedWaitSeconds) of a WAITING token at
 * the position expected. */
static int64_t waiting_eta(const char *at, const char *qt, int position)
{
    struct bx_resp *r = queue_status(at, qt);
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "status"), "WAITING", "%s", r->body);
    cr_assert_eq(bx_jint(r->json, "position"), position, "%s", r->body);
    int64_t eta = bx_jint(r->json, "estimatedWaitSeconds");
    cr_assert(eta >= 1, "a waiting user is told at least a second: %s", r->body);
    return eta;
}

/* Neighbours in line are told comparable waits: position k + 1 at most about 2.5
 * times position k's (never the 300 s against 6 s the estimate once gave). */
static void expect_neighbours_agree(const int64_t *eta, int n)
{
    for (int k = 0; k + 1 < n; k++) {
        cr_assert(eta[k + 1] >= eta[k], "position %d told %lld s, position %d %lld s", k + 1, (long long)eta[k], k + 2,
                  (long long)eta[k + 1]);
        cr_assert(eta[k + 1] * 2 <= eta[k] * 5 + 4, "position %d told %lld s, position %d %lld s", k + 1,
                  (long long)eta[k], k + 2, (long long)eta[k + 1]);
    }
}

Test(flow, the_estimated_wait_agrees_between_neighbours_and_never_grows_while_nobody_leaves)
{
    START("--active-max", "1");
    int64_t cid = bx_admin_concert(&C, "Patient line");
    const char *at[5], *qt[5];
    for (int i = 0; i < 5; i++) {
        at[i] = bx_user(&C, bx_str(&C, "eta-%d", i), NULL);
        qt[i] = bx_queue_issue(&C, at[i], cid, NULL, 0);
    }
    expect_position(at[0], qt[0], "ACTIVE", 0);
    int64_t eta[4];
    for (int k = 0; k < 4; k++)
        eta[k] = waiting_eta(at[k + 1], qt[k + 1], k + 1);
    expect_neighbours_agree(eta, 4);
    /* nobody leaves for 3 s: the head of the line and the next poll every 300 ms */
    int64_t first = eta[0], last1 = eta[0], last2 = eta[1];
    for (int i = 0; i < 10; i++) {
        bx_sleep_ms(300);
        int64_t e1 = waiting_eta(at[1], qt[1], 1), e2 = waiting_eta(at[2], qt[2], 2);
        cr_assert(e1 <= last1 + 1, "position 1 told %lld s, then %lld s", (long long)last1, (long long)e1);
        cr_assert(e2 <= last2 + 1, "position 2 told %lld s, then %lld s", (long long)last2, (long long)e2);
        cr_assert(e2 * 2 <= e1 * 5 + 4, "position 1 told %lld s, position 2 %lld s", (long long)e1, (long long)e2);
        last1 = e1;
        last2 = e2;
    }
    cr_assert(last1 <= first, "position 1 told %lld s at first, %lld s 3 s later", (long long)first, (long long)last1);
    /* the line moves once: those still waiting are told no more than before, and
     * still agree with each other */
    bx_expect(
        bx_http(&C, "DELETE", "/api/v1/queue/tokens/current", &(struct bx_req){.bearer = at[0], .queue_token = qt[0]}),
        204, NULL);
    bx_wait_active(&C, at[1], qt[1], 3000);
    for (int k = 0; k < 3; k++)
        eta[k] = waiting_eta(at[k + 2], qt[k + 2], k + 1);
    cr_assert(eta[0] <= last2 + 1, "position 2 told %lld s, at position 1 %lld s", (long long)last2, (long long)eta[0]);
    expect_neighbours_agree(eta, 3);
}

Test(flow, an_active_token_in_use_does_not_expire)
{
    START("--active-idle", "1");
    const char *at = bx_user(&C, "busy", NULL);
    int64_t cid = bx_admin_concert(&C, "Busy");
    int64_t sid = bx_admin_schedule(&C, cid, 50, 1000);
    const char *qt = bx_queue_active(&C, at, cid);
    /* a booking request every 300 ms for twice the idle limit */
    for (int i = 0; i < 7; i++) {
        bx_sleep_ms(300);
        bx_seat_available(&C, at, qt, sid, 1, NULL);
    }
    expect_position(at, qt, "ACTIVE", 0);
}

Test(flow, admission_at_a_limited_rate_is_first_come_first_served)
{
    START("--admit-rate", "2");
    enum { N = 5 };
    const char *at[N], *qt[N];
    int64_t cid = bx_admin_concert(&C, "Fair");
    for (int i = 0; i < N; i++)
        at[i] = bx_user(&C, bx_str(&C, "fifo-%d", i), NULL);
    for (int i = 0; i < N; i++)
        qt[i] = bx_queue_issue(&C, at[i], cid, NULL, 0);
    bool active[N] = {false};
    int64_t deadline = bx_now_ms() + 8000;
    for (;;) {
        /* poll the later tokens first: if j is ACTIVE and an earlier i still WAITING
         * afterwards, somebody was admitted out of order */
        bool all = true;
        for (int j = N - 1; j >= 0; j--) {
            struct bx_resp *r = queue_status(at[j], qt[j]);
            bx_expect(r, 200, NULL);
            bool a = strcmp(bx_jstr(r->json, "status"), "ACTIVE") == 0;
            if (!a) {
                cr_assert_str_eq(bx_jstr(r->json, "status"), "WAITING", "%s", r->body);
                for (int k = j + 1; k < N; k++)
                    cr_assert(!active[k], "token %d admitted before token %d (issued earlier): %s", k, j, r->body);
                cr_assert(bx_jint(r->json, "position") >= 1 && bx_jint(r->json, "position") <= j + 1,
                          "token %d: position %lld", j, (long long)bx_jint(r->json, "position"));
            }
            active[j] = a;
            all &= a;
        }
        if (all)
            break;
        cr_assert(bx_now_ms() < deadline, "not all %d tokens admitted within 8 s at --admit-rate 2", N);
        bx_sleep_ms(50);
    }
}

/* The seat map is read over and over during an on-sale (embedded mode answers it
 * from a per-loop copy): every read, from any connection, must show each change
 * at once — a hold, its end (no request in between), a payment. */
/* The free seats the date list gives for schedule sid. */
static int64_t date_free_seats(struct bx_client *cl, const char *at, const char *qt, int64_t cid, int64_t sid)
{
    struct bx_resp *r = bx_http(cl, "GET", bx_str(cl, "/api/v1/concerts/%lld/schedules", (long long)cid),
                                &(struct bx_req){.bearer = at, .queue_token = qt});
    bx_expect(r, 200, NULL);
    json_t *d = find_by_id(json_object_get(r->json, "schedules"), "scheduleId", sid);
    cr_assert(d != NULL, "schedule %lld not listed: %s", (long long)sid, r->body);
    return bx_jint(d, "availableSeats");
}

Test(flow, the_seat_map_shows_each_change_at_once_however_often_it_is_read)
{
    START("--hold-ttl", "1");
    const char *at = bx_user(&C, "ivan", NULL);
    const char *bt = bx_user(&C, "judy", NULL);
    int64_t cid = bx_admin_concert(&C, "Read often");
    int64_t sid = bx_admin_schedule(&C, cid, 10, 1000);
    const char *aq = bx_queue_active(&C, at, cid);
    const char *bq = bx_queue_active(&C, bt, cid);
    struct bx_client C2;
    bx_client_init(&C2, &srv); /* a second connection: possibly another event loop */
    struct bx_client *readers[2] = {&C, &C2};
    const char *path = bx_str(&C, "/api/v1/schedules/%lld/seats", (long long)sid);
#define SEAT2(k) bx_jstr(json_array_get(json_object_get(r->json, "seats"), 1), "status")
    for (int k = 0; k < 6; k++) {
        struct bx_resp *r = bx_http(readers[k % 2], "GET", path, &(struct bx_req){.bearer = bt, .queue_token = bq});
        bx_expect(r, 200, NULL);
        cr_assert_str_eq(SEAT2(k), "AVAILABLE", "%.200s", r->body);
    }
    int64_t rid = bx_hold(&C, at, aq, sid, 2);
    for (int k = 0; k < 6; k++) {
        struct bx_resp *r = bx_http(readers[k % 2], "GET", path, &(struct bx_req){.bearer = bt, .queue_token = bq});
        bx_expect(r, 200, NULL);
        cr_assert_str_eq(SEAT2(k), "HELD", "read %d right after the hold: %.200s", k, r->body);
    }
    cr_assert_eq(date_free_seats(&C2, bt, bq, cid, sid), 9, "the date list after the hold");
    /* the hold ends (1 s): the very first read after its end shows the seat free */
    struct bx_resp *r = bx_http(&C, "GET", bx_str(&C, "/api/v1/reservations/%lld", (long long)rid),
                                &(struct bx_req){.bearer = at});
    bx_expect(r, 200, NULL);
    int64_t ends = bx_parse_time(bx_jstr(r->json, "expiresAt")); /* whole seconds */
    cr_assert(ends > 0, "%s", r->body);
    while (bx_unix_now() <= ends)
        bx_sleep_ms(20);
    for (int k = 0; k < 4; k++) {
        r = bx_http(readers[k % 2], "GET", path, &(struct bx_req){.bearer = bt, .queue_token = bq});
        bx_expect(r, 200, NULL);
        cr_assert_str_eq(SEAT2(k), "AVAILABLE", "read %d after the hold ended: %.200s", k, r->body);
    }
    cr_assert_eq(date_free_seats(&C2, bt, bq, cid, sid), 10, "the date list after the hold ended");
    /* another user holds it and lets it go: free again at once */
    rid = bx_hold(&C, bt, bq, sid, 2);
    r = bx_http(&C2, "GET", path, &(struct bx_req){.bearer = at, .queue_token = aq});
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(SEAT2(0), "HELD", "after the second hold: %.200s", r->body);
    bx_expect(bx_http(&C, "DELETE", bx_str(&C, "/api/v1/reservations/%lld", (long long)rid),
                      &(struct bx_req){.bearer = bt}),
              204, NULL);
    for (int k = 0; k < 4; k++) {
        r = bx_http(readers[k % 2], "GET", path, &(struct bx_req){.bearer = bt, .queue_token = bq});
        bx_expect(r, 200, NULL);
        cr_assert_str_eq(SEAT2(k), "AVAILABLE", "read %d after the release: %.200s", k, r->body);
    }
    cr_assert_eq(date_free_seats(&C2, bt, bq, cid, sid), 10, "the date list after the release");
    bx_charge(&C, at, 1000);
    rid = bx_hold(&C, at, aq, sid, 2);
    bx_expect(bx_pay(&C, at, aq, rid), 201, NULL);
    for (int k = 0; k < 4; k++) {
        r = bx_http(readers[k % 2], "GET", path, &(struct bx_req){.bearer = bt, .queue_token = bq});
        bx_expect(r, 200, NULL);
        cr_assert_str_eq(SEAT2(k), "SOLD", "read %d after the payment: %.200s", k, r->body);
    }
    cr_assert_eq(date_free_seats(&C2, bt, bq, cid, sid), 9, "the date list after the payment");
#undef SEAT2
    bx_client_release(&C2);
}

/* The compact seat map: one character per seat number, '1' when it can be held. */
Test(flow, the_compact_seat_map_marks_each_seat_by_number)
{
    START();
    const char *at = bx_user(&C, "karl", NULL);
    const char *bt = bx_user(&C, "lena", NULL);
    int64_t cid = bx_admin_concert(&C, "Compact");
    int64_t sid = bx_admin_schedule(&C, cid, 10, 700);
    const char *aq = bx_queue_active(&C, at, cid);
    const char *bq = bx_queue_active(&C, bt, cid);
    const char *path = bx_str(&C, "/api/v1/schedules/%lld/seats?format=compact", (long long)sid);
    struct bx_req breq = {.bearer = bt, .queue_token = bq};
    struct bx_resp *r = bx_http(&C, "GET", path, &breq);
    bx_expect(r, 200, NULL);
    cr_assert_eq(bx_jint(r->json, "scheduleId"), sid, "%s", r->body);
    cr_assert_eq(bx_jint(r->json, "concertId"), cid, "%s", r->body);
    cr_assert_eq(bx_jint(r->json, "seatCount"), 10, "%s", r->body);
    cr_assert_eq(bx_jint(r->json, "price"), 700, "%s", r->body);
    cr_assert_str_eq(bx_jstr(r->json, "availability"), "1111111111", "%s", r->body);
    cr_assert_null(json_object_get(r->json, "seats"), "%s", r->body);
    bx_charge(&C, at, 700);
    int64_t rid = bx_hold(&C, at, aq, sid, 3);
    r = bx_http(&C, "GET", path, &breq);
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "availability"), "1101111111", "after the hold: %s", r->body);
    bx_expect(bx_pay(&C, at, aq, rid), 201, NULL);
    bx_hold(&C, bt, bq, sid, 10);
    r = bx_http(&C, "GET", path, &breq);
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "availability"), "1101111110", "after a sale and another hold: %s", r->body);
    /* the full form says the same */
    r = bx_http(&C, "GET", bx_str(&C, "/api/v1/schedules/%lld/seats", (long long)sid), &breq);
    bx_expect(r, 200, NULL);
    json_t *seats = json_object_get(r->json, "seats");
    cr_assert_eq(json_array_size(seats), 10, "%s", r->body);
    for (size_t i = 0; i < 10; i++)
        cr_assert_eq(json_is_true(json_object_get(json_array_get(seats, i), "available")), i != 2 && i != 9,
                     "seat %zu: %s", i + 1, r->body);
}
