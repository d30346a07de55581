/* test_errors.c — every error a client can meet (CONTRACT §5, DESIGN.md "API details"),
 * over real HTTP: the status, the error code, the body shape, X-Request-Id, and that
 * the refused request changed nothing. */
#include "harness.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static struct bx_server srv;
static struct bx_client C;

static void teardown(void)
{
    bx_client_release(&C);
    bx_server_cleanup(&srv);
}

TestSuite(errors, .fini = teardown, .timeout = 120);

#define START(...)                                                                                                     \
    do {                                                                                                               \
        BX_START(&srv, ##__VA_ARGS__);                                                                                 \
        bx_client_init(&C, &srv);                                                                                      \
    } while (0)

/* status + code + {"error":{"code","message"[,"field"]}} + X-Request-Id */
#define EXPECT_ERR(resp, st, code)                                                                                     \
    do {                                                                                                               \
        struct bx_resp *r_ = (resp);                                                                                   \
        bx_expect(r_, st, code);                                                                                       \
        cr_assert(bx_is_error_shape(r_), "%s: error body is not {\"error\":{\"code\",\"message\"}}: %s", r_->what,     \
                  r_->body);                                                                                           \
        cr_assert(r_->request_id[0], "%s: no X-Request-Id", r_->what);                                                 \
    } while (0)

/* 400 VALIDATION naming the field */
#define EXPECT_FIELD(resp, fieldname)                                                                                  \
    do {                                                                                                               \
        struct bx_resp *rf_ = (resp);                                                                                  \
        EXPECT_ERR(rf_, 400, "VALIDATION");                                                                            \
        cr_assert_str_eq(bx_err_field(rf_), fieldname, "%s: error.field should be \"%s\": %s", rf_->what, fieldname,   \
                         rf_->body);                                                                                   \
    } while (0)

/* A user with an ACTIVE token on a fresh concert with one 50-seat schedule at 50,000. */
struct world {
    const char *at; /* access token */
    int64_t uid, cid, sid;
    const char *qt; /* ACTIVE queue token */
};

static void world(struct world *w, const char *name)
{
    w->at = bx_user(&C, name, &w->uid);
    w->cid = bx_admin_concert(&C, bx_str(&C, "concert of %s", name));
    w->sid = bx_admin_schedule(&C, w->cid, 50, 50000);
    w->qt = bx_queue_active(&C, w->at, w->cid);
}

static struct bx_req Q(const struct world *w) {
    return (struct bx_req){.bearer = w->at, .queue_token = w->qt};
}

static struct bx_resp *
post_raw(const char *path, const struct bx_req *base, const char *body)
{
    struct bx_req rq = base ? *base : (struct bx_req){0};
    rq.body = body;
    rq.body_len = 0;
    return bx_http(&C, "POST", path, &rq);
}

static struct bx_resp *hold(const struct world *w, int64_t sid, json_t *seat)
{
    struct bx_req q = Q(w);
    return bx_http_json(&C, "POST", "/api/v1/reservations", &q,
                        json_pack("{s:I,s:o}", "scheduleId", (json_int_t)sid, "seatNo", seat));
}

static struct bx_resp *pay(const char *at, const char *qt, int64_t rid, const char *key)
{
    struct bx_req q = {.bearer = at, .queue_token = qt, .idem_key = key};
    return bx_http_json(&C, "POST", "/api/v1/payments", &q, json_pack("{s:I}", "reservationId", (json_int_t)rid));
}

static struct bx_resp *charge(const char *at, json_t *amount, const char *key)
{
    struct bx_req q = {.bearer = at, .idem_key = key};
    return bx_http_json(&C, "POST", "/api/v1/users/me/balance/charge", &q,
                        amount ? json_pack("{s:o}", "amount", amount) : json_object());
}

static const char *reservation_status(const char *at, int64_t rid)
{
    struct bx_resp *r =
        bx_http(&C, "GET", bx_str(&C, "/api/v1/reservations/%lld", (long long)rid), &(struct bx_req){.bearer = at});
    bx_expect(r, 200, NULL);
    return bx_jstr(r->json, "status");
}

static const char *queue_status(const char *at, const char *qt)
{
    struct bx_resp *r = bx_http(&C, "GET", "/api/v1/queue/status", &(struct bx_req){.bearer = at, .queue_token = qt});
    if (r->status != 200)
        return bx_str(&C, "%ld %s", r->status, bx_err_code(r));
    return bx_jstr(r->json, "status");
}

/* ------------------------------------------------------------ users, sessions */

Test(errors, signup_with_missing_or_wrong_fields_is_validation_naming_the_field)
{
    START();
    const char *u = "/api/v1/users";
    EXPECT_FIELD(post_raw(u, NULL, "{}"), "name");
    EXPECT_FIELD(post_raw(u, NULL, "{\"name\":\"ann\"}"), "password");
    EXPECT_FIELD(post_raw(u, NULL, "{\"password\":\"" BX_PASSWORD "\"}"), "name");
    EXPECT_FIELD(post_raw(u, NULL, "{\"name\":5,\"password\":\"" BX_PASSWORD "\"}"), "name");
    EXPECT_FIELD(post_raw(u, NULL, "{\"name\":null,\"password\":\"" BX_PASSWORD "\"}"), "name");
    EXPECT_FIELD(post_raw(u, NULL, "{\"name\":\"ann\",\"password\":12345678}"), "password");
    EXPECT_FIELD(post_raw(u, NULL, "{\"name\":\"\",\"password\":\"" BX_PASSWORD "\"}"), "name");
    EXPECT_FIELD(post_raw(u, NULL, "{\"name\":\"   \",\"password\":\"" BX_PASSWORD "\"}"), "name");
    EXPECT_FIELD(post_raw(u, NULL, "{\"name\":\"a\\u0001b\",\"password\":\"" BX_PASSWORD "\"}"), "name");
    char longname[66];
    memset(longname, 'n', 65);
    longname[65] = '\0';
    EXPECT_FIELD(bx_http_json(&C, "POST", u, NULL, json_pack("{s:s,s:s}", "name", longname, "password", BX_PASSWORD)),
                 "name");
    EXPECT_FIELD(post_raw(u, NULL, "{\"name\":\"ann\",\"password\":\"short\"}"), "password");
    EXPECT_FIELD(post_raw(u, NULL, "{\"name\":\"ann\",\"password\":\"1234567\"}"), "password");
    char longpw[258];
    memset(longpw, 'p', 257);
    longpw[257] = '\0';
    EXPECT_FIELD(bx_http_json(&C, "POST", u, NULL, json_pack("{s:s,s:s}", "name", "ann", "password", longpw)),
                 "password");

    /* none of those created "ann"; the limits themselves are accepted; unknown fields ignored */
    EXPECT_ERR(bx_http_json(&C, "POST", "/api/v1/sessions", NULL,
                            json_pack("{s:s,s:s}", "name", "ann", "password", "1234567")),
               401, "BAD_CREDENTIALS");
    bx_expect(post_raw(u, NULL, "{\"name\":\"ann\",\"password\":\"12345678\",\"extra\":[1,2]}"), 201, NULL);
    longname[64] = '\0';
    longpw[256] = '\0';
    bx_expect(bx_http_json(&C, "POST", u, NULL, json_pack("{s:s,s:s}", "name", longname, "password", longpw)), 201,
              NULL);
    bx_expect(bx_http_json(&C, "POST", u, NULL, json_pack("{s:s,s:s}", "name", "김민준", "password", BX_PASSWORD)), 201,
              NULL);
}

Test(errors, signup_with_a_taken_name_is_name_taken)
{
    START();
    bx_user(&C, "taken", NULL);
    EXPECT_ERR(bx_http_json(&C, "POST", "/api/v1/users", NULL,
                            json_pack("{s:s,s:s}", "name", "taken", "password", "another password")),
               409, "NAME_TAKEN");
    /* the first owner keeps the name and password */
    bx_expect(bx_http_json(&C, "POST", "/api/v1/sessions", NULL,
                           json_pack("{s:s,s:s}", "name", "taken", "password", BX_PASSWORD)),
              200, NULL);
    EXPECT_ERR(bx_http_json(&C, "POST", "/api/v1/sessions", NULL,
                            json_pack("{s:s,s:s}", "name", "taken", "password", "another password")),
               401, "BAD_CREDENTIALS");
}

Test(errors, login_with_wrong_password_or_unknown_user_is_bad_credentials)
{
    START();
    bx_user(&C, "ivan", NULL);
    EXPECT_ERR(bx_http_json(&C, "POST", "/api/v1/sessions", NULL,
                            json_pack("{s:s,s:s}", "name", "ivan", "password", "wrong password")),
               401, "BAD_CREDENTIALS");
    EXPECT_ERR(bx_http_json(&C, "POST", "/api/v1/sessions", NULL,
                            json_pack("{s:s,s:s}", "name", "nobody", "password", BX_PASSWORD)),
               401, "BAD_CREDENTIALS");
}

Test(errors, missing_garbage_or_tampered_access_token_is_unauthorized)
{
    START();
    int64_t aid, bid;
    const char *at = bx_user(&C, "judy", &aid);
    bx_user(&C, "mallory", &bid);
    bx_charge(&C, at, 500);
    const char *bal = "/api/v1/users/me/balance";

    EXPECT_ERR(bx_http(&C, "GET", bal, NULL), 401, "UNAUTHORIZED");
    EXPECT_ERR(bx_http(&C, "GET", bal, &(struct bx_req){.bearer = "garbage"}), 401, "UNAUTHORIZED");
    EXPECT_ERR(bx_http(&C, "GET", bal, &(struct bx_req){.bearer = "1.9999999999.AAAA"}), 401, "UNAUTHORIZED");

    /* <userId>.<expiresAtUnix>.<sig>: change each part in turn */
    const char *d1 = strchr(at, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    cr_assert(d1 && d2, "access token is not <userId>.<exp>.<sig>: %s", at);
    const char *other_user = bx_str(&C, "%lld%s", (long long)bid, d1);
    const char *later = bx_str(&C, "%.*s.%lld%s", (int)(d1 - at), at, strtoll(d1 + 1, NULL, 10) + 1000, d2);
    char *sig = (char *)bx_str(&C, "%s", at);
    char *s0 = sig + (d2 - at) + 1;
    *s0 = *s0 == 'A' ? 'B' : 'A';
    EXPECT_ERR(bx_http(&C, "GET", bal, &(struct bx_req){.bearer = other_user}), 401, "UNAUTHORIZED");
    EXPECT_ERR(bx_http(&C, "GET", bal, &(struct bx_req){.bearer = later}), 401, "UNAUTHORIZED");
    EXPECT_ERR(bx_http(&C, "GET", bal, &(struct bx_req){.bearer = sig}), 401, "UNAUTHORIZED");
    EXPECT_ERR(bx_http(&C, "GET", bal, &(struct bx_req){.bearer = bx_str(&C, "%s.x", at)}), 401, "UNAUTHORIZED");

    /* the genuine token still works and nothing moved */
    cr_assert_eq(bx_balance(&C, at), 500);
}

Test(errors, expired_access_token_is_unauthorized)
{
    START("--session-ttl", "3"); /* ends on a whole second: at least 2 s to use it first */
    const char *at = bx_user(&C, "kim", NULL);
    /* accepted first (each loop then remembers it as verified), refused once expired */
    bx_expect(bx_http(&C, "GET", "/api/v1/users/me/balance", &(struct bx_req){.bearer = at}), 200, NULL);
    bx_sleep_past_expiry(at);
    EXPECT_ERR(bx_http(&C, "GET", "/api/v1/users/me/balance", &(struct bx_req){.bearer = at}), 401, "UNAUTHORIZED");
    EXPECT_ERR(bx_http(&C, "GET", "/api/v1/users/me/payments", &(struct bx_req){.bearer = at}), 401, "UNAUTHORIZED");
}

/* ------------------------------------------------------------ queue */

Test(errors, unknown_concert_is_concert_not_found)
{
    START();
    struct world w;
    world(&w, "leo");
    EXPECT_ERR(bx_http(&C, "POST", "/api/v1/concerts/999999/queue/tokens", &(struct bx_req){.bearer = w.at}), 404,
               "CONCERT_NOT_FOUND");
    struct bx_req q = Q(&w);
    EXPECT_ERR(bx_http(&C, "GET", "/api/v1/concerts/999999/schedules", &q), 404, "CONCERT_NOT_FOUND");
    EXPECT_ERR(bx_http_json(&C, "POST", "/api/v1/admin/concerts/999999/schedules",
                            &(struct bx_req){.admin_key = BX_ADMIN_KEY},
                            json_pack("{s:s,s:i,s:i}", "startsAt", "2030-01-01T19:00:00Z", "seats", 50, "price", 1)),
               404, "CONCERT_NOT_FOUND");
    /* queue endpoints need a login first */
    EXPECT_ERR(bx_http(&C, "POST", bx_str(&C, "/api/v1/concerts/%lld/queue/tokens", (long long)w.cid), NULL), 401,
               "UNAUTHORIZED");
}

Test(errors, queue_status_without_a_valid_token_is_refused)
{
    START();
    struct world a, b;
    world(&a, "mia");
    b.at = bx_user(&C, "noah", NULL);
    b.qt = bx_queue_active(&C, b.at, a.cid);
    const char *st = "/api/v1/queue/status";

    EXPECT_ERR(bx_http(&C, "GET", st, &(struct bx_req){.bearer = a.at}), 401, "QUEUE_TOKEN_INVALID");
    EXPECT_ERR(
        bx_http(&C, "GET", st, &(struct bx_req){.bearer = a.at, .queue_token = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
        401, "QUEUE_TOKEN_INVALID");
    EXPECT_ERR(bx_http(&C, "GET", st, &(struct bx_req){.bearer = a.at, .queue_token = b.qt}), 403, "TOKEN_NOT_YOURS");
    EXPECT_ERR(bx_http(&C, "GET", st, &(struct bx_req){.queue_token = a.qt}), 401, "UNAUTHORIZED");

    EXPECT_ERR(bx_http(&C, "DELETE", "/api/v1/queue/tokens/current", &(struct bx_req){.bearer = a.at}), 401,
               "QUEUE_TOKEN_INVALID");
    EXPECT_ERR(
        bx_http(&C, "DELETE", "/api/v1/queue/tokens/current", &(struct bx_req){.bearer = a.at, .queue_token = b.qt}),
        403, "TOKEN_NOT_YOURS");
    /* mia could not make noah leave */
    cr_assert_str_eq(queue_status(b.at, b.qt), "ACTIVE");
    /* a left token is expired, for status and for leaving again */
    bx_expect(
        bx_http(&C, "DELETE", "/api/v1/queue/tokens/current", &(struct bx_req){.bearer = b.at, .queue_token = b.qt}),
        204, NULL);
    EXPECT_ERR(
        bx_http(&C, "DELETE", "/api/v1/queue/tokens/current", &(struct bx_req){.bearer = b.at, .queue_token = b.qt}),
        410, "TOKEN_EXPIRED");
    EXPECT_ERR(bx_http(&C, "GET", st, &(struct bx_req){.bearer = b.at, .queue_token = b.qt}), 410, "TOKEN_EXPIRED");
}

Test(errors, waiting_token_cannot_use_the_booking_endpoints)
{
    START("--active-max", "1");
    struct world a;
    world(&a, "olga");
    const char *bt = bx_user(&C, "pete", NULL);
    struct bx_resp *r = bx_http(&C, "POST", bx_str(&C, "/api/v1/concerts/%lld/queue/tokens", (long long)a.cid),
                                &(struct bx_req){.bearer = bt});
    bx_expect(r, 201, NULL);
    const char *bq = bx_str(&C, "%s", bx_jstr(r->json, "token"));
    cr_assert_str_eq(bx_jstr(r->json, "status"), "WAITING", "%s", r->body);
    cr_assert_eq(bx_jint(r->json, "position"), 1, "%s", r->body);
    cr_assert(bx_jint(r->json, "estimatedWaitSeconds") >= 0, "%s", r->body);
    int64_t poll = bx_jint(r->json, "pollAfterMs");
    cr_assert(poll >= 1000 && poll <= 30000, "WAITING pollAfterMs should be 1..30 s: %s", r->body);

    struct bx_req bw = {.bearer = bt, .queue_token = bq};
    EXPECT_ERR(bx_http(&C, "GET", bx_str(&C, "/api/v1/concerts/%lld/schedules", (long long)a.cid), &bw), 403,
               "QUEUE_NOT_ACTIVE");
    EXPECT_ERR(bx_http(&C, "GET", bx_str(&C, "/api/v1/schedules/%lld/seats", (long long)a.sid), &bw), 403,
               "QUEUE_NOT_ACTIVE");
    EXPECT_ERR(bx_http_json(&C, "POST", "/api/v1/reservations", &bw,
                            json_pack("{s:I,s:i}", "scheduleId", (json_int_t)a.sid, "seatNo", 1)),
               403, "QUEUE_NOT_ACTIVE");
    /* no token, an unknown token, or somebody else's */
    struct bx_req none = {.bearer = bt};
    EXPECT_ERR(bx_http(&C, "GET", bx_str(&C, "/api/v1/schedules/%lld/seats", (long long)a.sid), &none), 403,
               "QUEUE_NOT_ACTIVE");
    struct bx_req unknown = {.bearer = bt, .queue_token = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"};
    EXPECT_ERR(bx_http(&C, "GET", bx_str(&C, "/api/v1/schedules/%lld/seats", (long long)a.sid), &unknown), 403,
               "QUEUE_NOT_ACTIVE");
    struct bx_req stolen = {.bearer = bt, .queue_token = a.qt};
    EXPECT_ERR(bx_http(&C, "GET", bx_str(&C, "/api/v1/schedules/%lld/seats", (long long)a.sid), &stolen), 403,
               "TOKEN_NOT_YOURS");
    EXPECT_ERR(bx_http_json(&C, "POST", "/api/v1/reservations", &stolen,
                            json_pack("{s:I,s:i}", "scheduleId", (json_int_t)a.sid, "seatNo", 1)),
               403, "TOKEN_NOT_YOURS");

    /* nothing was held; pete is still first in line; olga still books */
    int navail;
    cr_assert(bx_seat_available(&C, a.at, a.qt, a.sid, 1, &navail));
    cr_assert_eq(navail, 50);
    r = bx_http(&C, "GET", "/api/v1/queue/status", &bw);
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "status"), "WAITING");
    cr_assert_eq(bx_jint(r->json, "position"), 1);
}

Test(errors, token_for_another_concert_cannot_book)
{
    START();
    struct world a;
    world(&a, "quinn");
    int64_t c2 = bx_admin_concert(&C, "Other");
    int64_t s2 = bx_admin_schedule(&C, c2, 50, 50000);
    struct bx_req q = Q(&a);
    EXPECT_ERR(bx_http(&C, "GET", bx_str(&C, "/api/v1/concerts/%lld/schedules", (long long)c2), &q), 403,
               "QUEUE_NOT_ACTIVE");
    EXPECT_ERR(bx_http(&C, "GET", bx_str(&C, "/api/v1/schedules/%lld/seats", (long long)s2), &q), 403,
               "QUEUE_NOT_ACTIVE");
    EXPECT_ERR(hold(&a, s2, json_integer(1)), 403, "QUEUE_NOT_ACTIVE");

    /* paying a concert-1 hold with a concert-2 token */
    int64_t rid = bx_hold(&C, a.at, a.qt, a.sid, 1);
    bx_charge(&C, a.at, 100000);
    const char *q2 = bx_queue_active(&C, a.at, c2);
    EXPECT_ERR(pay(a.at, q2, rid, NULL), 403, "QUEUE_NOT_ACTIVE");
    cr_assert_str_eq(reservation_status(a.at, rid), "HELD");
    cr_assert_eq(bx_balance(&C, a.at), 100000);
    bx_pay(&C, a.at, a.qt, rid);
    cr_assert_eq(bx_balance(&C, a.at), 50000);
}

/* A path id that is not a positive int64 is a malformed request (400 naming the
 * parameter), not a missing object (404): the two must not be confused. */
Test(errors, a_path_id_that_is_not_a_positive_integer_is_validation_naming_it)
{
    START();
    struct world w;
    world(&w, "ida");
    struct bx_req q = Q(&w), u = {.bearer = w.at}, admin = {.admin_key = BX_ADMIN_KEY};
    const char *bad[] = {"abc", "0", "-1", "1e3", "0x1", "1.0", "9223372036854775808", "99999999999999999999"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        EXPECT_FIELD(bx_http(&C, "GET", bx_str(&C, "/api/v1/schedules/%s/seats", bad[k]), &q), "scheduleId");
        EXPECT_FIELD(bx_http(&C, "GET", bx_str(&C, "/api/v1/concerts/%s/schedules", bad[k]), &q), "concertId");
        EXPECT_FIELD(bx_http(&C, "POST", bx_str(&C, "/api/v1/concerts/%s/queue/tokens", bad[k]), &u), "concertId");
        EXPECT_FIELD(bx_http(&C, "GET", bx_str(&C, "/api/v1/reservations/%s", bad[k]), &u), "reservationId");
        EXPECT_FIELD(bx_http(&C, "DELETE", bx_str(&C, "/api/v1/reservations/%s", bad[k]), &u), "reservationId");
        EXPECT_FIELD(post_raw(bx_str(&C, "/api/v1/admin/concerts/%s/schedules", bad[k]), &admin,
                              "{\"startsAt\":\"2030-01-01T19:00:00Z\",\"seats\":1,\"price\":1}"),
                     "concertId");
    }
    /* a well-formed id of nothing is still 404 */
    EXPECT_ERR(bx_http(&C, "GET", "/api/v1/schedules/999999/seats", &q), 404, "SCHEDULE_NOT_FOUND");
    EXPECT_ERR(bx_http(&C, "GET", "/api/v1/reservations/9223372036854775807", &u), 404, "RESERVATION_NOT_FOUND");
}

/* ------------------------------------------------------------ seats, holds */

Test(errors, unknown_schedule_or_seat_is_not_found)
{
    START();
    struct world w;
    world(&w, "rita");
    struct bx_req q = Q(&w);
    EXPECT_ERR(bx_http(&C, "GET", "/api/v1/schedules/999999/seats", &q), 404, "SCHEDULE_NOT_FOUND");
    EXPECT_ERR(hold(&w, 999999, json_integer(1)), 404, "SCHEDULE_NOT_FOUND");
    EXPECT_ERR(hold(&w, w.sid, json_integer(0)), 404, "SEAT_NOT_FOUND");
    EXPECT_ERR(hold(&w, w.sid, json_integer(51)), 404, "SEAT_NOT_FOUND");
    EXPECT_ERR(hold(&w, w.sid, json_integer(-3)), 404, "SEAT_NOT_FOUND");
    EXPECT_FIELD(hold(&w, w.sid, json_string("1")), "seatNo");
    EXPECT_FIELD(hold(&w, w.sid, json_real(1.5)), "seatNo");
    EXPECT_FIELD(bx_http_json(&C, "POST", "/api/v1/reservations", &q, json_pack("{s:i}", "seatNo", 1)), "scheduleId");
    EXPECT_FIELD(
        bx_http_json(&C, "POST", "/api/v1/reservations", &q, json_pack("{s:I}", "scheduleId", (json_int_t)w.sid)),
        "seatNo");
    EXPECT_ERR(bx_http(&C, "GET", "/api/v1/reservations/999999", &(struct bx_req){.bearer = w.at}), 404,
               "RESERVATION_NOT_FOUND");
    int navail;
    bx_seat_available(&C, w.at, w.qt, w.sid, 1, &navail);
    cr_assert_eq(navail, 50, "a refused hold took a seat");
}

Test(errors, holding_a_taken_seat_is_seat_unavailable)
{
    START();
    struct world a, b;
    world(&a, "sam");
    b.at = bx_user(&C, "tina", NULL);
    b.cid = a.cid;
    b.sid = a.sid;
    b.qt = bx_queue_active(&C, b.at, a.cid);
    int64_t rid = bx_hold(&C, a.at, a.qt, a.sid, 5);
    EXPECT_ERR(hold(&a, a.sid, json_integer(5)), 409, "SEAT_UNAVAILABLE");
    EXPECT_ERR(hold(&b, a.sid, json_integer(5)), 409, "SEAT_UNAVAILABLE");
    /* sold is unavailable too */
    bx_charge(&C, a.at, 50000);
    bx_pay(&C, a.at, a.qt, rid);
    EXPECT_ERR(hold(&b, a.sid, json_integer(5)), 409, "SEAT_UNAVAILABLE");
    struct bx_resp *r = bx_http(&C, "GET", "/api/v1/users/me/reservations", &(struct bx_req){.bearer = b.at});
    bx_expect(r, 200, NULL);
    cr_assert_eq(json_array_size(json_object_get(r->json, "reservations")), 0, "%s", r->body);
}

Test(errors, holding_past_the_seat_limit_is_seat_limit)
{
    START("--max-seats-per-user", "2");
    struct world w;
    world(&w, "uma");
    int64_t r1 = bx_hold(&C, w.at, w.qt, w.sid, 1);
    int64_t r2 = bx_hold(&C, w.at, w.qt, w.sid, 2);
    EXPECT_ERR(hold(&w, w.sid, json_integer(3)), 409, "SEAT_LIMIT");
    cr_assert(bx_seat_available(&C, w.at, w.qt, w.sid, 3, NULL), "refused hold took seat 3");

    /* a cancelled hold gives the place back */
    bx_expect(
        bx_http(&C, "DELETE", bx_str(&C, "/api/v1/reservations/%lld", (long long)r1), &(struct bx_req){.bearer = w.at}),
        204, NULL);
    int64_t r3 = bx_hold(&C, w.at, w.qt, w.sid, 3);

    /* a sold seat still counts */
    bx_charge(&C, w.at, 50000);
    bx_pay(&C, w.at, w.qt, r2);
    EXPECT_ERR(hold(&w, w.sid, json_integer(4)), 409, "SEAT_LIMIT");
    cr_assert_str_eq(reservation_status(w.at, r3), "HELD");

    /* the limit is per date: another schedule of the same concert is fine */
    int64_t s2 = bx_admin_schedule(&C, w.cid, 10, 50000);
    bx_hold(&C, w.at, w.qt, s2, 1);
}

Test(errors, someone_elses_reservation_is_not_found)
{
    START();
    struct world a, b;
    world(&a, "vera");
    b.at = bx_user(&C, "walt", NULL);
    b.qt = bx_queue_active(&C, b.at, a.cid);
    int64_t rid = bx_hold(&C, a.at, a.qt, a.sid, 9);
    bx_charge(&C, b.at, 100000);
    const char *path = bx_str(&C, "/api/v1/reservations/%lld", (long long)rid);
    EXPECT_ERR(bx_http(&C, "GET", path, &(struct bx_req){.bearer = b.at}), 404, "RESERVATION_NOT_FOUND");
    EXPECT_ERR(bx_http(&C, "DELETE", path, &(struct bx_req){.bearer = b.at}), 404, "RESERVATION_NOT_FOUND");
    EXPECT_ERR(pay(b.at, b.qt, rid, NULL), 404, "RESERVATION_NOT_FOUND");
    EXPECT_ERR(pay(b.at, b.qt, 999999, NULL), 404, "RESERVATION_NOT_FOUND");
    /* untouched */
    cr_assert_str_eq(reservation_status(a.at, rid), "HELD");
    cr_assert_eq(bx_balance(&C, b.at), 100000);
    cr_assert_str_eq(queue_status(b.at, b.qt), "ACTIVE");
}

Test(errors, holding_outside_the_sale_window_is_sale_closed)
{
    START();
    struct world w;
    world(&w, "sale");
    const char *p = bx_str(&C, "/api/v1/admin/concerts/%lld/schedules", (long long)w.cid);
    struct bx_req k = {.admin_key = BX_ADMIN_KEY};
    struct bx_resp *r = bx_http_json(&C, "POST", p, &k,
                                     json_pack("{s:s,s:i,s:i,s:s}", "startsAt", "2031-01-01T19:00:00Z", "seats", 10,
                                               "price", 1000, "saleOpensAt", "2030-12-01T00:00:00Z"));
    bx_expect(r, 201, NULL);
    int64_t later = bx_jint(r->json, "scheduleId");
    r = bx_http_json(&C, "POST", p, &k,
                     json_pack("{s:s,s:i,s:i,s:s,s:s}", "startsAt", "2031-02-01T19:00:00Z", "seats", 10, "price", 1000,
                               "saleOpensAt", "2020-01-01T00:00:00Z", "saleClosesAt", "2021-01-01T00:00:00Z"));
    bx_expect(r, 201, NULL);
    int64_t over = bx_jint(r->json, "scheduleId");
    EXPECT_ERR(hold(&w, later, json_integer(1)), 409, "SALE_CLOSED");
    EXPECT_ERR(hold(&w, over, json_integer(1)), 409, "SALE_CLOSED");
    /* only dates on sale now are listed */
    struct bx_req q = Q(&w);
    r = bx_http(&C, "GET", bx_str(&C, "/api/v1/concerts/%lld/schedules", (long long)w.cid), &q);
    bx_expect(r, 200, NULL);
    json_t *list = json_object_get(r->json, "schedules");
    cr_assert_eq(json_array_size(list), 1, "only the schedule on sale should be listed: %s", r->body);
    cr_assert_eq(bx_jint(json_array_get(list, 0), "scheduleId"), w.sid, "%s", r->body);
    /* and a window that closes before it opens is refused */
    EXPECT_FIELD(
        bx_http_json(&C, "POST", p, &k,
                     json_pack("{s:s,s:i,s:i,s:s,s:s}", "startsAt", "2031-02-01T19:00:00Z", "seats", 10, "price", 1000,
                               "saleOpensAt", "2030-01-01T00:00:00Z", "saleClosesAt", "2029-01-01T00:00:00Z")),
        "saleClosesAt");
}

/* ------------------------------------------------------------ payments */

Test(errors, payment_after_hold_expiry_is_refused_and_the_seat_is_free)
{
    START("--hold-ttl", "1");
    struct world a;
    world(&a, "xena");
    int64_t rid = bx_hold(&C, a.at, a.qt, a.sid, 5);
    bx_charge(&C, a.at, 100000);
    bx_sleep_ms(2000);
    cr_assert_str_eq(reservation_status(a.at, rid), "EXPIRED");
    EXPECT_ERR(pay(a.at, a.qt, rid, NULL), 409, "HOLD_EXPIRED");
    cr_assert_eq(bx_balance(&C, a.at), 100000, "a refused payment moved money");
    cr_assert(bx_seat_available(&C, a.at, a.qt, a.sid, 5, NULL), "seat 5 not free after the hold expired");
    struct bx_resp *m = bx_http(&C, "GET", bx_str(&C, "/api/v1/schedules/%lld/seats", (long long)a.sid),
                                &(struct bx_req){.bearer = a.at, .queue_token = a.qt});
    bx_expect(m, 200, NULL);
    cr_assert_str_eq(bx_jstr(json_array_get(json_object_get(m->json, "seats"), 4), "status"), "AVAILABLE",
                     "an expired hold reads AVAILABLE: %.400s", m->body);
    EXPECT_ERR(bx_http(&C, "DELETE", bx_str(&C, "/api/v1/reservations/%lld", (long long)rid),
                       &(struct bx_req){.bearer = a.at}),
               409, "NOT_HELD");
    struct bx_resp *r = bx_http(&C, "GET", "/api/v1/users/me/payments", &(struct bx_req){.bearer = a.at});
    bx_expect(r, 200, NULL);
    cr_assert_eq(json_array_size(json_object_get(r->json, "payments")), 0, "%s", r->body);
    /* someone else takes it */
    const char *bt = bx_user(&C, "yuri", NULL);
    const char *bq = bx_queue_active(&C, bt, a.cid);
    bx_hold(&C, bt, bq, a.sid, 5);
}

Test(errors, expired_hold_frees_the_seat_for_a_new_hold_at_once)
{
    START("--hold-ttl", "1");
    struct world a;
    world(&a, "zack");
    bx_hold(&C, a.at, a.qt, a.sid, 6);
    bx_sleep_ms(1100);
    /* right after expiry, maybe before any sweep: the seat is free */
    const char *bt = bx_user(&C, "zoe", NULL);
    const char *bq = bx_queue_active(&C, bt, a.cid);
    bx_hold(&C, bt, bq, a.sid, 6);
}

Test(errors, payment_with_a_wrong_amount_is_price_mismatch)
{
    START();
    struct world w;
    world(&w, "abel");
    int64_t rid = bx_hold(&C, w.at, w.qt, w.sid, 1);
    bx_charge(&C, w.at, 100000);
    struct bx_req q = Q(&w);
    EXPECT_ERR(bx_http_json(&C, "POST", "/api/v1/payments", &q,
                            json_pack("{s:I,s:i}", "reservationId", (json_int_t)rid, "amount", 49999)),
               409, "PRICE_MISMATCH");
    EXPECT_FIELD(bx_http_json(&C, "POST", "/api/v1/payments", &q,
                              json_pack("{s:I,s:s}", "reservationId", (json_int_t)rid, "amount", "50000")),
                 "amount");
    EXPECT_FIELD(bx_http_json(&C, "POST", "/api/v1/payments", &q, json_pack("{s:s}", "reservationId", "1")),
                 "reservationId");
    EXPECT_FIELD(bx_http_json(&C, "POST", "/api/v1/payments", &q, json_object()), "reservationId");
    cr_assert_eq(bx_balance(&C, w.at), 100000);
    cr_assert_str_eq(reservation_status(w.at, rid), "HELD");
    cr_assert_str_eq(queue_status(w.at, w.qt), "ACTIVE");
    struct bx_resp *r = bx_http_json(&C, "POST", "/api/v1/payments", &q,
                                     json_pack("{s:I,s:i}", "reservationId", (json_int_t)rid, "amount", 50000));
    bx_expect(r, 201, NULL);
    cr_assert_eq(bx_jint(r->json, "balance"), 50000);
}

Test(errors, payment_with_a_short_balance_is_insufficient_balance)
{
    START();
    struct world w;
    world(&w, "bert");
    int64_t rid = bx_hold(&C, w.at, w.qt, w.sid, 1);
    EXPECT_ERR(pay(w.at, w.qt, rid, NULL), 402, "INSUFFICIENT_BALANCE");
    bx_charge(&C, w.at, 49999);
    EXPECT_ERR(pay(w.at, w.qt, rid, NULL), 402, "INSUFFICIENT_BALANCE");
    cr_assert_eq(bx_balance(&C, w.at), 49999);
    cr_assert_str_eq(reservation_status(w.at, rid), "HELD");
    cr_assert_str_eq(queue_status(w.at, w.qt), "ACTIVE");
    bx_charge(&C, w.at, 1);
    struct bx_resp *r = bx_pay(&C, w.at, w.qt, rid);
    cr_assert_eq(bx_jint(r->json, "balance"), 0);
    r = bx_http(&C, "GET", "/api/v1/users/me/payments", &(struct bx_req){.bearer = w.at});
    bx_expect(r, 200, NULL);
    cr_assert_eq(json_array_size(json_object_get(r->json, "payments")), 1, "%s", r->body);
}

Test(errors, charge_outside_1_to_10_million_is_validation)
{
    START();
    const char *at = bx_user(&C, "cora", NULL);
    EXPECT_FIELD(charge(at, json_integer(0), NULL), "amount");
    EXPECT_FIELD(charge(at, json_integer(-5), NULL), "amount");
    EXPECT_FIELD(charge(at, json_integer(10000001), NULL), "amount");
    EXPECT_FIELD(charge(at, json_string("100"), NULL), "amount");
    EXPECT_FIELD(charge(at, json_real(1.5), NULL), "amount");
    EXPECT_FIELD(charge(at, json_null(), NULL), "amount");
    EXPECT_FIELD(charge(at, NULL, NULL), "amount");
    cr_assert_eq(bx_balance(&C, at), 0);
    struct bx_resp *r = charge(at, json_integer(10000000), NULL);
    bx_expect(r, 200, NULL);
    cr_assert_eq(bx_jint(r->json, "balance"), 10000000);
    cr_assert_eq(bx_balance(&C, at), 10000000);
    EXPECT_ERR(charge(NULL, json_integer(5), NULL), 401, "UNAUTHORIZED");
}

Test(errors, paying_twice_is_already_paid_and_paying_a_cancelled_hold_is_not_held)
{
    START();
    struct world w;
    world(&w, "dina");
    int64_t r1 = bx_hold(&C, w.at, w.qt, w.sid, 1);
    int64_t r2 = bx_hold(&C, w.at, w.qt, w.sid, 2);
    bx_charge(&C, w.at, 200000);
    bx_pay(&C, w.at, w.qt, r1);
    EXPECT_ERR(pay(w.at, w.qt, r1, NULL), 409, "ALREADY_PAID");
    cr_assert_eq(bx_balance(&C, w.at), 150000, "paid twice");
    bx_expect(
        bx_http(&C, "DELETE", bx_str(&C, "/api/v1/reservations/%lld", (long long)r2), &(struct bx_req){.bearer = w.at}),
        204, NULL);
    EXPECT_ERR(pay(w.at, w.qt, r2, NULL), 409, "NOT_HELD");
    EXPECT_ERR(
        bx_http(&C, "DELETE", bx_str(&C, "/api/v1/reservations/%lld", (long long)r1), &(struct bx_req){.bearer = w.at}),
        409, "NOT_HELD");
    cr_assert_eq(bx_balance(&C, w.at), 150000);
    cr_assert_str_eq(reservation_status(w.at, r1), "CONFIRMED");
    cr_assert_str_eq(reservation_status(w.at, r2), "CANCELLED");
}

/* ------------------------------------------------------------ idempotency */

Test(errors, idempotency_key_reused_with_another_body_is_422)
{
    START();
    struct world w;
    world(&w, "eve");
    bx_expect(charge(w.at, json_integer(100), "key-1"), 200, NULL);
    EXPECT_ERR(charge(w.at, json_integer(200), "key-1"), 422, "IDEMPOTENCY_KEY_REUSED");
    cr_assert_eq(bx_balance(&C, w.at), 100);

    int64_t r1 = bx_hold(&C, w.at, w.qt, w.sid, 1);
    int64_t r2 = bx_hold(&C, w.at, w.qt, w.sid, 2);
    bx_charge(&C, w.at, 99900);
    bx_expect(pay(w.at, w.qt, r1, "pay-1"), 201, NULL);
    EXPECT_ERR(pay(w.at, w.qt, r2, "pay-1"), 422, "IDEMPOTENCY_KEY_REUSED");
    cr_assert_str_eq(reservation_status(w.at, r2), "HELD");
    cr_assert_eq(bx_balance(&C, w.at), 50000);
}

Test(errors, charge_replay_with_the_same_key_returns_the_same_body_and_charges_once)
{
    START();
    const char *at = bx_user(&C, "finn", NULL);
    const char *bt = bx_user(&C, "gina", NULL);
    struct bx_resp *r1 = charge(at, json_integer(100), "charge-A");
    bx_expect(r1, 200, NULL);
    struct bx_resp *r2 = charge(at, json_integer(100), "charge-A");
    bx_expect(r2, 200, NULL);
    cr_assert_eq(r2->len, r1->len, "replay body differs: %s vs %s", r1->body, r2->body);
    cr_assert(memcmp(r1->body, r2->body, r1->len) == 0, "replay body differs: %s vs %s", r1->body, r2->body);
    cr_assert_eq(bx_balance(&C, at), 100, "replay charged twice");

    bx_expect(charge(at, json_integer(100), "charge-B"), 200, NULL);
    cr_assert_eq(bx_balance(&C, at), 200);
    struct bx_resp *r3 = charge(at, json_integer(100), "charge-A");
    bx_expect(r3, 200, NULL);
    cr_assert_str_eq(r3->body, r1->body, "a later replay must still return the first answer");
    cr_assert_eq(bx_balance(&C, at), 200);

    /* keys are per user */
    struct bx_resp *rb = charge(bt, json_integer(100), "charge-A");
    bx_expect(rb, 200, NULL);
    cr_assert_eq(bx_balance(&C, bt), 100);

    /* a failed attempt is not recorded: the same key works afterwards */
    EXPECT_FIELD(charge(at, json_integer(0), "charge-C"), "amount");
    bx_expect(charge(at, json_integer(5), "charge-C"), 200, NULL);
    cr_assert_eq(bx_balance(&C, at), 205);

    /* keys are scoped per endpoint too: the same key on another money endpoint is another request */
    struct world w;
    world(&w, "gina2");
    int64_t rid = bx_hold(&C, w.at, w.qt, w.sid, 1);
    bx_expect(charge(w.at, json_integer(50000), "shared-key"), 200, NULL);
    bx_expect(pay(w.at, w.qt, rid, "shared-key"), 201, NULL);
    cr_assert_eq(bx_balance(&C, w.at), 0);

    /* keys are 1..64 printable ASCII */
    char key[66];
    memset(key, 'k', 65);
    key[65] = '\0';
    EXPECT_ERR(charge(at, json_integer(5), key), 400, "VALIDATION");
    key[64] = '\0';
    bx_expect(charge(at, json_integer(5), key), 200, NULL);
    cr_assert_eq(bx_balance(&C, at), 210);
}

Test(errors, payment_replay_with_the_same_key_returns_the_same_body_and_pays_once)
{
    START();
    struct world w;
    world(&w, "hank");
    int64_t r1 = bx_hold(&C, w.at, w.qt, w.sid, 1);
    bx_hold(&C, w.at, w.qt, w.sid, 2); /* keeps the token alive */
    bx_charge(&C, w.at, 200000);
    struct bx_resp *p1 = pay(w.at, w.qt, r1, "pay-A");
    bx_expect(p1, 201, NULL);
    struct bx_resp *p2 = pay(w.at, w.qt, r1, "pay-A");
    bx_expect(p2, 201, NULL);
    cr_assert_str_eq(p2->body, p1->body, "replay body differs");
    cr_assert_eq(bx_balance(&C, w.at), 150000, "replay paid twice");
    struct bx_resp *r = bx_http(&C, "GET", "/api/v1/users/me/payments", &(struct bx_req){.bearer = w.at});
    bx_expect(r, 200, NULL);
    cr_assert_eq(json_array_size(json_object_get(r->json, "payments")), 1, "%s", r->body);
}

Test(errors, payment_retry_after_the_token_expired_replays_the_first_answer)
{
    START();
    struct world w;
    world(&w, "iris");
    int64_t rid = bx_hold(&C, w.at, w.qt, w.sid, 1);
    /* a failed attempt with the key is not recorded */
    EXPECT_ERR(pay(w.at, w.qt, rid, "pay-B"), 402, "INSUFFICIENT_BALANCE");
    bx_charge(&C, w.at, 60000);
    struct bx_resp *p1 = pay(w.at, w.qt, rid, "pay-B");
    bx_expect(p1, 201, NULL);
    /* the answer was lost; the client retries with the same key (its token is now spent) */
    struct bx_resp *p2 = pay(w.at, w.qt, rid, "pay-B");
    bx_expect(p2, 201, NULL);
    cr_assert_str_eq(p2->body, p1->body, "replay body differs");
    cr_assert_eq(bx_balance(&C, w.at), 10000);
}

/* ------------------------------------------------------------ HTTP layer */

Test(errors, malformed_json_is_validation)
{
    START();
    const char *at = bx_user(&C, "jack", NULL);
    const char *u = "/api/v1/users";
    EXPECT_ERR(post_raw(u, NULL, "{"), 400, "VALIDATION");
    EXPECT_ERR(post_raw(u, NULL, "{\"name\":\"x\",\"password\":\"12345678\",}"), 400, "VALIDATION");
    EXPECT_ERR(post_raw(u, NULL, "not json"), 400, "VALIDATION");
    EXPECT_ERR(post_raw(u, NULL, "[]"), 400, "VALIDATION");
    EXPECT_ERR(post_raw(u, NULL, "[{\"name\":\"x\",\"password\":\"12345678\"}]"), 400, "VALIDATION");
    EXPECT_ERR(post_raw(u, NULL, "\"name\""), 400, "VALIDATION");
    EXPECT_ERR(post_raw(u, NULL, "42"), 400, "VALIDATION");
    EXPECT_ERR(post_raw(u, NULL, "null"), 400, "VALIDATION");
    EXPECT_ERR(bx_http(&C, "POST", u, NULL), 400, "VALIDATION"); /* empty body */
    struct bx_req auth = {.bearer = at};
    const char *ch = "/api/v1/users/me/balance/charge";
    EXPECT_ERR(post_raw(ch, &auth, "{\"amount\":9223372036854775808}"), 400, "VALIDATION");
    EXPECT_ERR(post_raw(ch, &auth, "{\"amount\":99999999999999999999999}"), 400, "VALIDATION");
    EXPECT_ERR(post_raw(ch, &auth, "{\"amount\":-9223372036854775809}"), 400, "VALIDATION");
    EXPECT_ERR(post_raw(ch, &auth, "{\"amount\":100"), 400, "VALIDATION");
    cr_assert_eq(bx_balance(&C, at), 0);
    bx_expect(post_raw(ch, &auth, "{\"amount\":100,\"note\":{\"x\":[1,2,3]}}"), 200, NULL);
    cr_assert_eq(bx_balance(&C, at), 100);
}

Test(errors, content_type_is_not_enforced)
{
    START();
    struct bx_req rq = {.body = "{\"name\":\"plain\",\"password\":\"" BX_PASSWORD "\"}", .content_type = "text/plain"};
    bx_expect(bx_http(&C, "POST", "/api/v1/users", &rq), 201, NULL);
    rq.content_type = "application/x-www-form-urlencoded";
    rq.body = "{\"name\":\"plain\",\"password\":\"" BX_PASSWORD "\"}";
    bx_expect(bx_http(&C, "POST", "/api/v1/sessions", &rq), 200, NULL);
}

static char *padded_signup(const char *name, size_t total)
{
    char head[128];
    int n = snprintf(head, sizeof head, "{\"name\":\"%s\",\"password\":\"%s\",\"pad\":\"", name, BX_PASSWORD);
    char *b = malloc(total + 1);
    memcpy(b, head, (size_t)n);
    memset(b + n, 'a', total - (size_t)n - 2);
    b[total - 2] = '"';
    b[total - 1] = '}';
    b[total] = '\0';
    return b;
}

Test(errors, body_over_64_kib_is_payload_too_large)
{
    START();
    char *big = padded_signup("big", 65537);
    struct bx_resp *r = post_raw("/api/v1/users", NULL, big);
    free(big);
    EXPECT_ERR(r, 413, "PAYLOAD_TOO_LARGE");
    EXPECT_ERR(bx_http_json(&C, "POST", "/api/v1/sessions", NULL,
                            json_pack("{s:s,s:s}", "name", "big", "password", BX_PASSWORD)),
               401, "BAD_CREDENTIALS");

    /* the limit holds for a chunked body too (no Content-Length to look at) */
    char *chunky = padded_signup("chunky", 70000);
    r = bx_http(&C, "POST", "/api/v1/users", &(struct bx_req){.body = chunky, .chunked = true});
    free(chunky);
    EXPECT_ERR(r, 413, "PAYLOAD_TOO_LARGE");
    EXPECT_ERR(bx_http_json(&C, "POST", "/api/v1/sessions", NULL,
                            json_pack("{s:s,s:s}", "name", "chunky", "password", BX_PASSWORD)),
               401, "BAD_CREDENTIALS");
    char *small = padded_signup("chunklet", 2000);
    bx_expect(bx_http(&C, "POST", "/api/v1/users", &(struct bx_req){.body = small, .chunked = true}), 201, NULL);
    free(small);

    /* exactly 64 KiB is within the limit */
    char *edge = padded_signup("edge", 65536);
    r = post_raw("/api/v1/users", NULL, edge);
    free(edge);
    bx_expect(r, 201, NULL);

    /* the server is fine afterwards */
    bx_user(&C, "after", NULL);
}

Test(errors, unknown_route_is_route_not_found)
{
    START();
    EXPECT_ERR(bx_http(&C, "GET", "/api/v1/nope", NULL), 404, "ROUTE_NOT_FOUND");
    EXPECT_ERR(bx_http(&C, "POST", "/api/v1/users/extra/path", NULL), 404, "ROUTE_NOT_FOUND");
    EXPECT_ERR(bx_http(&C, "GET", "/api/v1/concerts/1/nothing", NULL), 404, "ROUTE_NOT_FOUND");
}

Test(errors, wrong_method_is_method_not_allowed_with_allow)
{
    START();
    struct bx_resp *r = bx_http(&C, "DELETE", "/api/v1/concerts", NULL);
    EXPECT_ERR(r, 405, "METHOD_NOT_ALLOWED");
    cr_assert(strstr(r->allow, "GET") != NULL, "Allow should list GET: \"%s\"", r->allow);
    r = bx_http(&C, "GET", "/api/v1/users", NULL);
    EXPECT_ERR(r, 405, "METHOD_NOT_ALLOWED");
    cr_assert(strstr(r->allow, "POST") != NULL, "Allow should list POST: \"%s\"", r->allow);
    r = bx_http(&C, "PUT", "/api/v1/reservations/1", NULL);
    EXPECT_ERR(r, 405, "METHOD_NOT_ALLOWED");
    cr_assert(strstr(r->allow, "GET") && strstr(r->allow, "DELETE"), "Allow should list GET, DELETE: \"%s\"", r->allow);
}

/* ------------------------------------------------------------ admin */

Test(errors, admin_without_or_with_a_wrong_key_is_unauthorized)
{
    START();
    json_t *c = json_pack("{s:s,s:s}", "title", "Sneaky", "venue", "Hall");
    EXPECT_ERR(bx_http_json(&C, "POST", "/api/v1/admin/concerts", NULL, json_incref(c)), 401, "ADMIN_KEY_INVALID");
    EXPECT_ERR(
        bx_http_json(&C, "POST", "/api/v1/admin/concerts", &(struct bx_req){.admin_key = "wrong"}, json_incref(c)), 401,
        "ADMIN_KEY_INVALID");
    EXPECT_ERR(bx_http_json(&C, "POST", "/api/v1/admin/concerts", &(struct bx_req){.admin_key = BX_ADMIN_KEY "x"},
                            json_incref(c)),
               401, "ADMIN_KEY_INVALID");
    json_decref(c);
    /* a user's access token is no admin key */
    const char *at = bx_user(&C, "kate", NULL);
    EXPECT_ERR(bx_http_json(&C, "POST", "/api/v1/admin/concerts", &(struct bx_req){.bearer = at},
                            json_pack("{s:s,s:s}", "title", "Sneaky", "venue", "Hall")),
               401, "ADMIN_KEY_INVALID");
    struct bx_resp *r = bx_http(&C, "GET", "/api/v1/concerts", NULL);
    bx_expect(r, 200, NULL);
    cr_assert_eq(json_array_size(json_object_get(r->json, "concerts")), 0, "a refused admin call made a concert: %s",
                 r->body);
    int64_t cid = bx_admin_concert(&C, "Real");
    EXPECT_ERR(bx_http_json(&C, "POST", bx_str(&C, "/api/v1/admin/concerts/%lld/schedules", (long long)cid),
                            &(struct bx_req){.admin_key = "wrong"},
                            json_pack("{s:s,s:i,s:i}", "startsAt", "2030-01-01T19:00:00Z", "seats", 50, "price", 1)),
               401, "ADMIN_KEY_INVALID");
}

Test(errors, admin_schedule_with_bad_fields_is_validation)
{
    START();
    int64_t cid = bx_admin_concert(&C, "Checked");
    const char *p = bx_str(&C, "/api/v1/admin/concerts/%lld/schedules", (long long)cid);
    struct bx_req k = {.admin_key = BX_ADMIN_KEY};
    EXPECT_FIELD(bx_http_json(&C, "POST", p, &k, json_pack("{s:i,s:i}", "seats", 50, "price", 1)), "startsAt");
    EXPECT_FIELD(
        bx_http_json(&C, "POST", p, &k, json_pack("{s:s,s:i,s:i}", "startsAt", "tomorrow", "seats", 50, "price", 1)),
        "startsAt");
    EXPECT_FIELD(bx_http_json(&C, "POST", p, &k,
                              json_pack("{s:s,s:i,s:i}", "startsAt", "2030-01-01T19:00:00Z", "seats", 0, "price", 1)),
                 "seats");
    EXPECT_FIELD(
        bx_http_json(&C, "POST", p, &k,
                     json_pack("{s:s,s:i,s:i}", "startsAt", "2030-01-01T19:00:00Z", "seats", 10001, "price", 1)),
        "seats");
    EXPECT_FIELD(bx_http_json(&C, "POST", p, &k,
                              json_pack("{s:s,s:i,s:i}", "startsAt", "2030-01-01T19:00:00Z", "seats", 50, "price", -1)),
                 "price");
    EXPECT_FIELD(
        bx_http_json(&C, "POST", p, &k,
                     json_pack("{s:s,s:i,s:s}", "startsAt", "2030-01-01T19:00:00Z", "seats", 50, "price", "1")),
        "price");
    EXPECT_FIELD(bx_http_json(&C, "POST", "/api/v1/admin/concerts", &k, json_pack("{s:s}", "venue", "Hall")), "title");
    /* none created: a user in line sees no dates */
    const char *at = bx_user(&C, "liam", NULL);
    const char *qt = bx_queue_active(&C, at, cid);
    struct bx_resp *r = bx_http(&C, "GET", bx_str(&C, "/api/v1/concerts/%lld/schedules", (long long)cid),
                                &(struct bx_req){.bearer = at, .queue_token = qt});
    bx_expect(r, 200, NULL);
    cr_assert_eq(json_array_size(json_object_get(r->json, "schedules")), 0, "%s", r->body);
}

Test(errors, admin_on_a_server_without_admin_key_is_disabled)
{
    srv.no_admin_key = true;
    START();
    EXPECT_ERR(bx_http_json(&C, "POST", "/api/v1/admin/concerts", &(struct bx_req){.admin_key = BX_ADMIN_KEY},
                            json_pack("{s:s,s:s}", "title", "X", "venue", "Y")),
               403, "ADMIN_DISABLED");
    EXPECT_ERR(
        bx_http_json(&C, "POST", "/api/v1/admin/concerts", NULL, json_pack("{s:s,s:s}", "title", "X", "venue", "Y")),
        403, "ADMIN_DISABLED");
    EXPECT_ERR(bx_http_json(&C, "POST", "/api/v1/admin/concerts/1/schedules", &(struct bx_req){.admin_key = ""},
                            json_pack("{s:s,s:i,s:i}", "startsAt", "2030-01-01T19:00:00Z", "seats", 50, "price", 1)),
               403, "ADMIN_DISABLED");
}

/* ------------------------------------------------------------ ops */

Test(errors, health_readiness_and_metrics_answer)
{
    START();
    struct bx_resp *r = bx_http(&C, "GET", "/healthz", NULL);
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "status"), "ok", "%s", r->body);
    r = bx_http(&C, "GET", "/readyz", NULL);
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "status"), "ready", "%s", r->body);
    struct world w;
    world(&w, "mona");
    int64_t rid = bx_hold(&C, w.at, w.qt, w.sid, 1);
    EXPECT_ERR(pay(w.at, w.qt, rid, NULL), 402, "INSUFFICIENT_BALANCE");
    r = bx_http(&C, "GET", "/metrics", NULL);
    bx_expect(r, 200, NULL);
    cr_assert(strncmp(r->content_type, "text/plain", 10) == 0, "metrics Content-Type: %s", r->content_type);
    cr_assert(strstr(r->body, "# TYPE ") != NULL && strstr(r->body, " counter\n") != NULL,
              "no Prometheus counter in /metrics:\n%.2000s", r->body);
    cr_assert(strstr(r->body, " histogram\n") != NULL, "no latency histogram in /metrics:\n%.2000s", r->body);
    cr_assert(strstr(r->body, " gauge\n") != NULL, "no gauge (queue lengths) in /metrics:\n%.2000s", r->body);
    /* CONTRACT §7: payment failures by reason. Metrics are per process: in scale-out
     * mode Prometheus scrapes each instance, and the failure was counted by the
     * instance nginx sent the payment to, so look at all of them. */
    bool reason_seen = false;
    for (int i = 0; i < srv.ninst && !reason_seen; i++) {
        struct bx_client direct;
        bx_client_init_instance(&direct, &srv, i);
        struct bx_resp *m = bx_http(&direct, "GET", "/metrics", NULL);
        reason_seen = m->status == 200 && strstr(m->body, "INSUFFICIENT_BALANCE") != NULL;
        bx_client_release(&direct);
    }
    cr_assert(reason_seen, "payment failure reason not in /metrics of any instance:\n%.3000s", r->body);
}

Test(errors, every_response_carries_a_request_id)
{
    START();
    const char *at = bx_user(&C, "nina", NULL);
    struct bx_resp *rs[] = {
        bx_http(&C, "GET", "/healthz", NULL),
        bx_http(&C, "GET", "/readyz", NULL),
        bx_http(&C, "GET", "/metrics", NULL),
        bx_http(&C, "GET", "/api/v1/concerts", NULL),
        bx_http(&C, "GET", "/api/v1/users/me/balance", &(struct bx_req){.bearer = at}),
        bx_http(&C, "GET", "/api/v1/users/me/balance", NULL),
        bx_http(&C, "GET", "/api/v1/nope", NULL),
        bx_http(&C, "DELETE", "/api/v1/concerts", NULL),
        post_raw("/api/v1/users", NULL, "{"),
        bx_http(&C, "DELETE", "/api/v1/queue/tokens/current", &(struct bx_req){.bearer = at}),
    };
    size_t n = sizeof rs / sizeof rs[0];
    for (size_t i = 0; i < n; i++) {
        cr_assert(rs[i]->status != 0, "%s: %s", rs[i]->what, rs[i]->error);
        cr_assert(rs[i]->request_id[0], "%s (%ld): no X-Request-Id", rs[i]->what, rs[i]->status);
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(rs[i]->request_id, rs[j]->request_id, "two responses share X-Request-Id %s",
                              rs[i]->request_id);
    }
}

Test(errors, payment_history_with_a_bad_limit_or_cursor_is_validation)
{
    START();
    const char *at = bx_user(&C, "otto", NULL);
    struct bx_req auth = {.bearer = at};
    EXPECT_ERR(bx_http(&C, "GET", "/api/v1/users/me/payments?limit=0", &auth), 400, "VALIDATION");
    EXPECT_ERR(bx_http(&C, "GET", "/api/v1/users/me/payments?limit=101", &auth), 400, "VALIDATION");
    EXPECT_ERR(bx_http(&C, "GET", "/api/v1/users/me/payments?limit=abc", &auth), 400, "VALIDATION");
    EXPECT_ERR(bx_http(&C, "GET", "/api/v1/users/me/payments?before=abc", &auth), 400, "VALIDATION");
    bx_expect(bx_http(&C, "GET", "/api/v1/users/me/payments?limit=100", &auth), 200, NULL);
    bx_expect(bx_http(&C, "GET", "/api/v1/users/me/payments?limit=1", &auth), 200, NULL);
}

Test(errors, seat_map_in_an_unknown_format_is_validation)
{
    START();
    struct world w;
    world(&w, "petra");
    struct bx_req req = {.bearer = w.at, .queue_token = w.qt};
    const char *path = bx_str(&C, "/api/v1/schedules/%lld/seats", (long long)w.sid);
    EXPECT_FIELD(bx_http(&C, "GET", bx_str(&C, "%s?format=xml", path), &req), "format");
    EXPECT_FIELD(bx_http(&C, "GET", bx_str(&C, "%s?format=", path), &req), "format");
    EXPECT_FIELD(bx_http(&C, "GET", bx_str(&C, "%s?format=compactx", path), &req), "format");
    bx_expect(bx_http(&C, "GET", bx_str(&C, "%s?format=full", path), &req), 200, NULL);
    bx_expect(bx_http(&C, "GET", bx_str(&C, "%s?format=compact", path), &req), 200, NULL);
}
