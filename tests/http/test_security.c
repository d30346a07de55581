/* test_security.c — the OWASP API Security Top 10 (2023) as a checklist, over real
 * HTTP: object-level authorization (every endpoint with another user's ids), broken
 * authentication (forged, truncated, expired, other-concert tokens on every
 * endpoint), property-level authorization (fields a client must not set),
 * unrestricted resource consumption (rate limits with Retry-After, header, URL and
 * body sizes, slow clients, log-in floods against the bounded hashing queue and the
 * per-address limits), password guessing that must not lock the owner out, user
 * enumeration by timing, sensitive business flows (queue jumping, scalping) and
 * injection (SQL metacharacters, odd Unicode, integers past int64).
 * test_errors.c already checks single cases (tampered access token on one endpoint,
 * WAITING / other-concert / another user's token on the seat endpoints, another
 * user's reservation, 413); this file runs each attack against every endpoint it
 * applies to and checks that nothing changed afterwards.
 * Known server defects are reported on a line "[WARN] known defect [mode]: ..."
 * (scripts/run-tests.sh echoes it; cr_log_warn would fail the program's exit code)
 * and the test goes on; BOXOFFICE_TEST_STRICT_DEFECTS=1 makes them failures. */
#define _GNU_SOURCE
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static struct bx_server srv;
static struct bx_client C;

static void teardown(void)
{
    bx_client_release(&C);
    bx_server_cleanup(&srv);
}

TestSuite(security, .fini = teardown, .timeout = 120);

#define START(...)                                                                                                     \
    do {                                                                                                               \
        BX_START(&srv, ##__VA_ARGS__);                                                                                 \
        bx_client_init(&C, &srv);                                                                                      \
    } while (0)

#define EXPECT_ERR(resp, st, code)                                                                                     \
    do {                                                                                                               \
        struct bx_resp *r_ = (resp);                                                                                   \
        bx_expect(r_, st, code);                                                                                       \
        cr_assert(bx_is_error_shape(r_), "%s: error body is not {\"error\":{\"code\",\"message\"}}: %s", r_->what,     \
                  r_->body);                                                                                           \
    } while (0)

/* A known server defect: a warning in the log (and the run's summary), or a
 * failure with BOXOFFICE_TEST_STRICT_DEFECTS=1. */
#define KNOWN_DEFECT(fmt, ...)                                                                                         \
    do {                                                                                                               \
        if (getenv("BOXOFFICE_TEST_STRICT_DEFECTS") != NULL)                                                           \
            cr_assert_fail("defect: " fmt, ##__VA_ARGS__);                                                             \
        fprintf(stderr, "[WARN] known defect [%s]: " fmt "\n", bx_server_mode_name(&srv), ##__VA_ARGS__);              \
        fflush(stderr);                                                                                                \
    } while (0)

static const char *body_of(const char *fmt, long long v)
{
    return bx_str(&C, fmt, v);
}

static struct bx_resp *req(const char *method, const char *path, const char *bearer, const char *qt, const char *body)
{
    return bx_http(&C, method, path, &(struct bx_req){.bearer = bearer, .queue_token = qt, .body = body});
}

static const char *reservation_status(const char *at, int64_t rid)
{
    struct bx_resp *r =
        bx_http(&C, "GET", bx_str(&C, "/api/v1/reservations/%lld", (long long)rid), &(struct bx_req){.bearer = at});
    bx_expect(r, 200, NULL);
    return bx_str(&C, "%s", bx_jstr(r->json, "status"));
}

/* the raw body of a GET (for before/after comparisons) */
static const char *snapshot(const char *path, const char *at, const char *qt)
{
    struct bx_resp *r = bx_http(&C, "GET", path, &(struct bx_req){.bearer = at, .queue_token = qt});
    bx_expect(r, 200, NULL);
    return bx_str(&C, "%s", r->body);
}

static void expect_audit_clean(const char *when)
{
    char *out = NULL;
    int rc = bx_audit(&srv, &out);
    cr_assert_eq(rc, 0, "audit %s: exit %d:\n%s", when, rc, out);
    free(out);
}

/* Every instance still runs (no crash). */
static void expect_alive(const char *after)
{
    for (int i = 0; i < srv.ninst; i++) {
        int st;
        pid_t w = waitpid(srv.inst[i].pid, &st, WNOHANG);
        cr_assert(w == 0, "boxoffice %c died after %s (%s %d)", 'A' + i, after, WIFSIGNALED(st) ? "signal" : "exit",
                  WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    }
    bx_expect(bx_http(&C, "GET", "/healthz", NULL), 200, NULL);
}

/* ------------------------------------------------------------ API1: object level */

Test(security, every_endpoint_with_another_users_ids_is_not_found_and_changes_nothing)
{
    START();
    int64_t vid, mid;
    const char *v = bx_user(&C, "victim", &vid);
    const char *m = bx_user(&C, "mallory", &mid);
    int64_t cid = bx_admin_concert(&C, "Owned");
    int64_t sid = bx_admin_schedule(&C, cid, 50, 1000);
    const char *vq = bx_queue_active(&C, v, cid);
    const char *mq = bx_queue_active(&C, m, cid);
    /* the victim: a held seat, a paid one, a cancelled one, a keyed charge and payment */
    bx_expect(bx_http(&C, "POST", "/api/v1/users/me/balance/charge",
                      &(struct bx_req){.bearer = v, .idem_key = "v-charge", .body = "{\"amount\":5000}"}),
              200, NULL);
    int64_t held = bx_hold(&C, v, vq, sid, 1);
    int64_t paid = bx_hold(&C, v, vq, sid, 2);
    int64_t cancelled = bx_hold(&C, v, vq, sid, 3);
    const char *pay_body = body_of("{\"reservationId\":%lld}", (long long)paid);
    bx_expect(bx_http(&C, "POST", "/api/v1/payments",
                      &(struct bx_req){.bearer = v, .queue_token = vq, .idem_key = "v-pay", .body = pay_body}),
              201, NULL);
    bx_expect(req("DELETE", bx_str(&C, "/api/v1/reservations/%lld", (long long)cancelled), v, NULL, NULL), 204, NULL);
    bx_charge(&C, m, 100000);

    const char *before_res = snapshot("/api/v1/users/me/reservations", v, NULL);
    const char *before_pay = snapshot("/api/v1/users/me/payments", v, NULL);
    const char *before_bal = snapshot("/api/v1/users/me/balance", v, NULL);

    int attempts = 0;
    const int64_t ids[] = {held, paid, cancelled};
    for (int k = 0; k < 3; k++) {
        const char *path = bx_str(&C, "/api/v1/reservations/%lld", (long long)ids[k]);
        const char *pb = body_of("{\"reservationId\":%lld}", (long long)ids[k]);
        EXPECT_ERR(req("GET", path, m, NULL, NULL), 404, "RESERVATION_NOT_FOUND");
        EXPECT_ERR(req("DELETE", path, m, NULL, NULL), 404, "RESERVATION_NOT_FOUND");
        EXPECT_ERR(req("DELETE", path, m, mq, NULL), 404, "RESERVATION_NOT_FOUND");
        EXPECT_ERR(req("POST", "/api/v1/payments", m, mq, pb), 404, "RESERVATION_NOT_FOUND");
        EXPECT_ERR(req("POST", "/api/v1/payments", m, mq,
                       body_of("{\"reservationId\":%lld,\"amount\":1000}", (long long)ids[k])),
                   404, "RESERVATION_NOT_FOUND");
        /* with the victim's own queue token: still not found (the object first) */
        EXPECT_ERR(req("POST", "/api/v1/payments", m, vq, pb), 404, "RESERVATION_NOT_FOUND");
        attempts += 6;
    }
    /* the victim's Idempotency-Keys replay nothing of the victim's */
    EXPECT_ERR(bx_http(&C, "POST", "/api/v1/payments",
                       &(struct bx_req){.bearer = m, .queue_token = mq, .idem_key = "v-pay", .body = pay_body}),
               404, "RESERVATION_NOT_FOUND");
    struct bx_resp *r = bx_http(&C, "POST", "/api/v1/users/me/balance/charge",
                                &(struct bx_req){.bearer = m, .idem_key = "v-charge", .body = "{\"amount\":5000}"});
    bx_expect(r, 200, NULL);
    cr_assert_eq(bx_jint(r->json, "userId"), mid, "a charge with the victim's key answered the victim's body: %s",
                 r->body);
    cr_assert_eq(bx_jint(r->json, "balance"), 105000, "%s", r->body);
    attempts += 2;
    /* neighbouring ids answer exactly like ids that do not exist (no oracle) */
    struct bx_resp *none = req("GET", "/api/v1/reservations/99999999", m, NULL, NULL);
    for (int64_t id = held - 2; id <= cancelled + 3; id++) {
        if (id <= 0)
            continue;
        r = req("GET", bx_str(&C, "/api/v1/reservations/%lld", (long long)id), m, NULL, NULL);
        attempts++;
        cr_assert_eq(r->status, 404, "%s as mallory: %ld %s", r->what, r->status, r->body);
        cr_assert_str_eq(r->body, none->body, "another user's reservation answers differently from none");
    }
    /* "me" endpoints ignore any user id a client adds */
    const char *mine[] = {"/api/v1/users/me/balance?userId=%lld", "/api/v1/users/me/reservations?userId=%lld",
                          "/api/v1/users/me/payments?userId=%lld&user_id=%lld"};
    for (size_t k = 0; k < sizeof mine / sizeof mine[0]; k++) {
        r = req("GET", bx_str(&C, mine[k], (long long)vid, (long long)vid), m, NULL, NULL);
        attempts++;
        bx_expect(r, 200, NULL);
        cr_assert(strstr(r->body, bx_str(&C, "\"reservationId\":%lld", (long long)held)) == NULL &&
                      strstr(r->body, bx_str(&C, "\"reservationId\":%lld", (long long)paid)) == NULL,
                  "%s shows the victim's reservations: %s", r->what, r->body);
        if (k == 0)
            cr_assert_eq(bx_jint(r->json, "userId"), mid, "%s", r->body);
    }
    /* another user's queue token on every queue and booking endpoint */
    struct bx_req stolen = {.bearer = m, .queue_token = vq};
    int64_t mres = bx_hold(&C, m, mq, sid, 10);
    EXPECT_ERR(bx_http(&C, "GET", "/api/v1/queue/status", &stolen), 403, "TOKEN_NOT_YOURS");
    EXPECT_ERR(bx_http(&C, "DELETE", "/api/v1/queue/tokens/current", &stolen), 403, "TOKEN_NOT_YOURS");
    EXPECT_ERR(bx_http(&C, "GET", bx_str(&C, "/api/v1/concerts/%lld/schedules", (long long)cid), &stolen), 403,
               "TOKEN_NOT_YOURS");
    EXPECT_ERR(bx_http(&C, "GET", bx_str(&C, "/api/v1/schedules/%lld/seats", (long long)sid), &stolen), 403,
               "TOKEN_NOT_YOURS");
    EXPECT_ERR(req("POST", "/api/v1/reservations", m, vq, body_of("{\"scheduleId\":%lld,\"seatNo\":11}", (long long)sid)),
               403, "TOKEN_NOT_YOURS");
    EXPECT_ERR(req("POST", "/api/v1/payments", m, vq, body_of("{\"reservationId\":%lld}", (long long)mres)), 403,
               "TOKEN_NOT_YOURS");
    attempts += 6;
    /* a user's token on the admin API */
    EXPECT_ERR(bx_http(&C, "POST", "/api/v1/admin/concerts",
                       &(struct bx_req){.bearer = m, .body = "{\"title\":\"mine\",\"venue\":\"x\"}"}),
               401, "ADMIN_KEY_INVALID");
    EXPECT_ERR(bx_http(&C, "POST", bx_str(&C, "/api/v1/admin/concerts/%lld/schedules", (long long)cid),
                       &(struct bx_req){.bearer = m,
                                        .admin_key = m,
                                        .body = "{\"startsAt\":\"2030-01-01T19:00:00Z\",\"seats\":5,\"price\":1}"}),
               401, "ADMIN_KEY_INVALID");
    attempts += 2;

    /* nothing of the victim's moved */
    cr_assert_str_eq(snapshot("/api/v1/users/me/reservations", v, NULL), before_res);
    cr_assert_str_eq(snapshot("/api/v1/users/me/payments", v, NULL), before_pay);
    cr_assert_str_eq(snapshot("/api/v1/users/me/balance", v, NULL), before_bal);
    r = bx_http(&C, "GET", "/api/v1/queue/status", &(struct bx_req){.bearer = v, .queue_token = vq});
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "status"), "ACTIVE");
    cr_assert_eq(bx_balance(&C, m), 105000);
    printf("figure: another user's ids [%s]: %d requests by a second user on every endpoint that takes an id or a "
           "queue token (GET/DELETE reservation, payment, the victim's Idempotency-Keys, ?userId= on /users/me/*, the "
           "victim's queue token on 6 endpoints, admin API): all 404 / 403 / 401 as designed, answers identical to "
           "ids that do not exist, the victim's reservations, payments, balance and queue place unchanged\n",
           bx_server_mode_name(&srv), attempts);
    fflush(stdout);
    expect_audit_clean("after another user's ids were tried");
}

/* ------------------------------------------------------------ API3: property level */

Test(security, fields_a_client_must_not_set_are_ignored)
{
    START();
    int64_t vid, mid;
    const char *v = bx_user(&C, "payee", &vid);
    /* sign-up cannot set a balance, an id or a role */
    struct bx_resp *r =
        req("POST", "/api/v1/users", NULL, NULL,
            "{\"name\":\"rich\",\"password\":\"" BX_PASSWORD "\",\"balance\":1000000,\"userId\":1,\"isAdmin\":true,"
            "\"role\":\"admin\"}");
    bx_expect(r, 201, NULL);
    mid = bx_jint(r->json, "userId");
    cr_assert(mid != vid && mid > 0, "%s", r->body);
    const char *m = bx_user(&C, "rich2", NULL);
    r = bx_http_json(&C, "POST", "/api/v1/sessions", NULL, json_pack("{s:s,s:s}", "name", "rich", "password", BX_PASSWORD));
    bx_expect(r, 200, NULL);
    const char *rich = bx_str(&C, "%s", bx_jstr(r->json, "accessToken"));
    cr_assert_eq(bx_balance(&C, rich), 0, "sign-up set a balance");
    EXPECT_ERR(bx_http(&C, "POST", "/api/v1/admin/concerts",
                       &(struct bx_req){.bearer = rich, .body = "{\"title\":\"t\",\"venue\":\"v\"}"}),
               401, "ADMIN_KEY_INVALID");
    /* a charge for someone else lands on the caller */
    r = req("POST", "/api/v1/users/me/balance/charge", m, NULL,
            body_of("{\"amount\":700,\"userId\":%lld,\"balance\":999999999}", (long long)vid));
    bx_expect(r, 200, NULL);
    cr_assert_eq(bx_balance(&C, m), 700);
    cr_assert_eq(bx_balance(&C, v), 0);
    /* a hold cannot choose its price, owner, status or expiry */
    int64_t cid = bx_admin_concert(&C, "Props");
    int64_t sid = bx_admin_schedule(&C, cid, 10, 5000);
    const char *mq = bx_queue_active(&C, m, cid);
    r = req("POST", "/api/v1/reservations", m, mq,
            bx_str(&C,
                   "{\"scheduleId\":%lld,\"seatNo\":1,\"price\":1,\"userId\":%lld,\"status\":\"CONFIRMED\","
                   "\"expiresAt\":\"2099-01-01T00:00:00Z\"}",
                   (long long)sid, (long long)vid));
    bx_expect(r, 201, NULL);
    int64_t rid = bx_jint(r->json, "reservationId");
    cr_assert_eq(bx_jint(r->json, "price"), 5000, "%s", r->body);
    cr_assert_str_eq(bx_jstr(r->json, "status"), "HELD");
    int64_t exp = bx_parse_time(bx_jstr(r->json, "expiresAt"));
    cr_assert(exp > 0 && exp <= bx_unix_now() + 301, "client-chosen expiry accepted: %s", r->body);
    cr_assert_str_eq(reservation_status(m, rid), "HELD");
    EXPECT_ERR(req("GET", bx_str(&C, "/api/v1/reservations/%lld", (long long)rid), v, NULL, NULL), 404,
               "RESERVATION_NOT_FOUND");
    /* a payment cannot choose a lower amount or another payer */
    bx_charge(&C, m, 10000);
    EXPECT_ERR(req("POST", "/api/v1/payments", m, mq, body_of("{\"reservationId\":%lld,\"amount\":1}", (long long)rid)),
               409, "PRICE_MISMATCH");
    r = req("POST", "/api/v1/payments", m, mq,
            bx_str(&C, "{\"reservationId\":%lld,\"userId\":%lld,\"balance\":0}", (long long)rid, (long long)vid));
    bx_expect(r, 201, NULL);
    cr_assert_eq(bx_jint(r->json, "amount"), 5000);
    cr_assert_eq(bx_balance(&C, m), 700 + 10000 - 5000);
    cr_assert_eq(bx_balance(&C, v), 0);
    printf("figure: mass assignment [%s]: balance/userId/isAdmin/role on sign-up, userId/balance on a charge, "
           "price/userId/status/expiresAt on a hold, userId/balance on a payment: all ignored\n",
           bx_server_mode_name(&srv));
    fflush(stdout);
}

/* ------------------------------------------------------------ API2: authentication */

/* Every endpoint that needs a user, with a body where it takes one. */
struct endpoint {
    const char *method, *path, *body;
};

static int user_endpoints(struct endpoint *e, int64_t cid, int64_t sid, int64_t rid)
{
    int n = 0;
    e[n++] = (struct endpoint){"POST", bx_str(&C, "/api/v1/concerts/%lld/queue/tokens", (long long)cid), NULL};
    e[n++] = (struct endpoint){"GET", "/api/v1/queue/status", NULL};
    e[n++] = (struct endpoint){"DELETE", "/api/v1/queue/tokens/current", NULL};
    e[n++] = (struct endpoint){"GET", bx_str(&C, "/api/v1/concerts/%lld/schedules", (long long)cid), NULL};
    e[n++] = (struct endpoint){"GET", bx_str(&C, "/api/v1/schedules/%lld/seats", (long long)sid), NULL};
    e[n++] = (struct endpoint){"POST", "/api/v1/reservations",
                               bx_str(&C, "{\"scheduleId\":%lld,\"seatNo\":7}", (long long)sid)};
    e[n++] = (struct endpoint){"GET", bx_str(&C, "/api/v1/reservations/%lld", (long long)rid), NULL};
    e[n++] = (struct endpoint){"DELETE", bx_str(&C, "/api/v1/reservations/%lld", (long long)rid), NULL};
    e[n++] = (struct endpoint){"GET", "/api/v1/users/me/reservations", NULL};
    e[n++] = (struct endpoint){"GET", "/api/v1/users/me/balance", NULL};
    e[n++] = (struct endpoint){"POST", "/api/v1/users/me/balance/charge", "{\"amount\":100}"};
    e[n++] = (struct endpoint){"POST", "/api/v1/payments", bx_str(&C, "{\"reservationId\":%lld}", (long long)rid)};
    e[n++] = (struct endpoint){"GET", "/api/v1/users/me/payments", NULL};
    return n;
}

Test(security, forged_truncated_and_foreign_access_tokens_open_no_endpoint)
{
    START();
    int64_t uid, wid;
    const char *at = bx_user(&C, "holder", &uid);
    const char *wt = bx_user(&C, "witness", &wid);
    int64_t cid = bx_admin_concert(&C, "Auth");
    int64_t sid = bx_admin_schedule(&C, cid, 10, 1000);
    const char *qt = bx_queue_active(&C, at, cid);
    int64_t rid = bx_hold(&C, at, qt, sid, 1);
    bx_charge(&C, at, 3000);

    const char *d1 = strchr(at, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    const char *wd1 = strchr(wt, '.');
    const char *wd2 = wd1 ? strchr(wd1 + 1, '.') : NULL;
    cr_assert(d1 && d2 && wd1 && wd2, "access tokens are not <userId>.<exp>.<sig>: %s", at);
    size_t len = strlen(at);
    long long exp = strtoll(d1 + 1, NULL, 10);
    const char *sig = d2 + 1;
    char flipped_last[512], flipped_case[512];
    snprintf(flipped_last, sizeof flipped_last, "%s", at);
    flipped_last[len - 1] = flipped_last[len - 1] == 'A' ? 'B' : 'A';
    snprintf(flipped_case, sizeof flipped_case, "%s", at);
    for (char *p = flipped_case + (sig - at); *p; p++)
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')) {
            *p ^= 0x20;
            break;
        }
    const char *bad[] = {
        "",
        " ",
        bx_str(&C, "%.*s", (int)(len - 1), at),        /* last character cut */
        bx_str(&C, "%.*s", (int)(len - 10), at),       /* signature cut short */
        bx_str(&C, "%.*s", (int)(d2 - at), at),        /* no signature */
        bx_str(&C, "%.*s.", (int)(d2 - at), at),       /* empty signature */
        bx_str(&C, "%.*s", (int)(d1 - at), at),        /* user id only */
        bx_str(&C, "%s=", at),                         /* padding */
        bx_str(&C, "%s.%s", at, sig),                  /* a fourth part */
        bx_str(&C, " %s", at),                         /* leading space inside the credentials */
        flipped_last,
        flipped_case,
        bx_str(&C, "%lld.%lld.%s", (long long)wid, exp, sig),               /* another user's id */
        bx_str(&C, "%lld.%lld.%s", (long long)uid, exp + 86400 * 365, sig), /* a later expiry */
        bx_str(&C, "%lld.%lld.%s", (long long)uid, exp, wd2 + 1),           /* another token's signature */
        bx_str(&C, "%.*s%s", (int)(d2 - at + 1), at, wd2 + 1),
        bx_str(&C, "0.%lld.%s", exp, sig),
        bx_str(&C, "-%lld.%lld.%s", (long long)uid, exp, sig),
        bx_str(&C, "%lld.%lld.%s", (long long)uid + 18446744073709551ULL * 1000, exp, sig),
        bx_str(&C, "0%lld.%lld.%s", (long long)uid, exp, sig), /* same number, another spelling */
        bx_str(&C, "%lld.0%lld.%s", (long long)uid, exp, sig),
        bx_str(&C, "%lld.%lld.%s", (long long)uid, -exp, sig),
    };
    struct endpoint e[16];
    int ne = user_endpoints(e, cid, sid, rid);
    int tried = 0;
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        for (int k = 0; k < ne; k++) {
            struct bx_resp *r = bx_http(&C, e[k].method, e[k].path,
                                        &(struct bx_req){.bearer = bad[b], .queue_token = qt, .body = e[k].body});
            tried++;
            cr_assert(r->status == 401 && strcmp(bx_err_code(r), "UNAUTHORIZED") == 0 && bx_is_error_shape(r),
                      "%s with bearer \"%s\": %ld %s", r->what, bad[b], r->status, r->body);
        }
    }
    /* other schemes and no header at all */
    int port = bx_url_port(srv.base_url);
    const char *schemes[] = {"Basic", "bearer", "Token", "Bearer  "};
    for (size_t k = 0; k < sizeof schemes / sizeof schemes[0]; k++) {
        char head[1024];
        char raw[1024];
        int n = snprintf(raw, sizeof raw,
                         "GET /api/v1/users/me/balance HTTP/1.1\r\nHost: x\r\nAuthorization: %s %s\r\n"
                         "Connection: close\r\n\r\n",
                         schemes[k], at);
        long st = bx_raw_http(port, raw, (size_t)n, 5000, head, sizeof head, NULL);
        tried++;
        /* "bearer" (case-insensitive scheme, RFC 7235) may be accepted; nothing else */
        if (strcmp(schemes[k], "bearer") == 0)
            cr_assert(st == 200 || st == 401, "Authorization: bearer ...: %ld", st);
        else
            cr_assert_eq(st, 401, "Authorization: %s <token>: %ld\n%s", schemes[k], st, head);
    }
    for (int k = 0; k < ne; k++) {
        struct bx_resp *r = bx_http(&C, e[k].method, e[k].path, &(struct bx_req){.queue_token = qt, .body = e[k].body});
        tried++;
        EXPECT_ERR(r, 401, "UNAUTHORIZED");
    }
    /* nothing happened: one hold, the balance, the queue token ACTIVE */
    cr_assert_str_eq(reservation_status(at, rid), "HELD");
    cr_assert_eq(bx_balance(&C, at), 3000);
    struct bx_resp *r = bx_http(&C, "GET", "/api/v1/queue/status", &(struct bx_req){.bearer = at, .queue_token = qt});
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "status"), "ACTIVE");
    r = req("GET", "/api/v1/users/me/reservations", at, NULL, NULL);
    cr_assert_eq(json_array_size(json_object_get(r->json, "reservations")), 1, "%s", r->body);
    printf("figure: forged access tokens [%s]: %zu variants (cut, padded, re-cased, another user's id or signature, "
           "later or negative expiry, other spellings of the numbers) x %d endpoints + other schemes + no header = %d "
           "requests, all 401 UNAUTHORIZED, nothing changed\n",
           bx_server_mode_name(&srv), sizeof bad / sizeof bad[0], ne, tried);
    fflush(stdout);
}

Test(security, an_expired_access_token_opens_no_endpoint)
{
    /* tokens end on a whole second (<userId>.<expiresAt>.<sig>): 3 s leaves the
     * set-up at least 2 s of a live token however loaded the machine is */
    START("--session-ttl", "3");
    int64_t cid = bx_admin_concert(&C, "Expiry");
    int64_t sid = bx_admin_schedule(&C, cid, 10, 1000);
    const char *at = bx_user(&C, "late", NULL);
    const char *qt = bx_queue_issue(&C, at, cid, NULL, 0);
    int64_t rid = bx_hold(&C, at, qt, sid, 1);
    bx_sleep_past_expiry(at);
    struct endpoint e[16];
    int ne = user_endpoints(e, cid, sid, rid);
    for (int k = 0; k < ne; k++)
        EXPECT_ERR(bx_http(&C, e[k].method, e[k].path, &(struct bx_req){.bearer = at, .queue_token = qt, .body = e[k].body}),
                   401, "UNAUTHORIZED");
    /* a fresh log-in sees everything as it was */
    struct bx_resp *r =
        bx_http_json(&C, "POST", "/api/v1/sessions", NULL, json_pack("{s:s,s:s}", "name", "late", "password", BX_PASSWORD));
    bx_expect(r, 200, NULL);
    const char *fresh = bx_str(&C, "%s", bx_jstr(r->json, "accessToken"));
    cr_assert_str_eq(reservation_status(fresh, rid), "HELD");
    cr_assert_eq(bx_balance(&C, fresh), 0);
    printf("figure: expired access token [%s]: %d endpoints, all 401 UNAUTHORIZED, nothing changed\n",
           bx_server_mode_name(&srv), ne);
    fflush(stdout);
}

/* base64url without padding, 26 bytes ↔ 35 characters (a queue token) */
static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static bool b64_decode26(const char *s, unsigned char out[26])
{
    if (strlen(s) != 35)
        return false;
    unsigned acc = 0, bits = 0, n = 0;
    for (int i = 0; i < 35; i++) {
        const char *p = strchr(b64, s[i]);
        if (p == NULL || *p == '\0')
            return false;
        acc = (acc << 6 | (unsigned)(p - b64)) & 0xffffu;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return n == 26;
}

static void b64_encode26(const unsigned char in[26], char out[36])
{
    unsigned acc = 0, bits = 0, n = 0;
    for (int i = 0; i < 26; i++) {
        acc = (acc << 8 | in[i]) & 0xffffu;
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[n++] = b64[(acc >> bits) & 63];
        }
    }
    out[n++] = b64[(acc << (6 - bits)) & 63]; /* the last 4 bits, then 2 zero bits */
    out[n] = '\0';
}

/* The token with its concert part (scale-out: the first 8 bytes) set to concert_id. */
static const char *with_concert(const char *tok, int64_t concert_id)
{
    unsigned char raw[26];
    char out[36];
    if (!b64_decode26(tok, raw))
        return tok;
    for (int i = 0; i < 8; i++)
        raw[i] = (unsigned char)((uint64_t)concert_id >> (56 - 8 * i));
    b64_encode26(raw, out);
    return bx_str(&C, "%s", out);
}

Test(security, forged_truncated_foreign_and_spent_queue_tokens_open_no_booking_endpoint)
{
    START();
    const char *at = bx_user(&C, "booker", NULL);
    const char *other = bx_user(&C, "other", NULL);
    int64_t c1 = bx_admin_concert(&C, "First"), c2 = bx_admin_concert(&C, "Second");
    int64_t s1 = bx_admin_schedule(&C, c1, 10, 1000);
    bx_admin_schedule(&C, c2, 10, 1000);
    const char *q1 = bx_queue_active(&C, at, c1);
    const char *q2 = bx_queue_active(&C, at, c2);
    const char *oq = bx_queue_active(&C, other, c1);
    int64_t rid = bx_hold(&C, at, q1, s1, 1);
    bx_charge(&C, at, 5000);
    /* a spent token of the same concert: the other user leaves, then tries to book with it */
    bx_expect(bx_http(&C, "DELETE", "/api/v1/queue/tokens/current", &(struct bx_req){.bearer = other, .queue_token = oq}),
              204, NULL);
    const char *oq_new = bx_queue_active(&C, other, c1);
    cr_assert_str_neq(oq_new, oq, "leaving and coming back gave the old token again");
    const char *other_live = bx_queue_active(&C, bx_user(&C, "third", NULL), c1);

    char mid_flip[64], upper[64];
    snprintf(mid_flip, sizeof mid_flip, "%s", q1);
    mid_flip[16] = mid_flip[16] == 'A' ? 'B' : 'A';
    snprintf(upper, sizeof upper, "%s", q1);
    for (char *p = upper; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 32);
    struct {
        const char *name, *tok;
        long status;
        const char *code;
    } cases[] = {
        {"none", NULL, 403, "QUEUE_NOT_ACTIVE"},
        {"empty", "", 403, "QUEUE_NOT_ACTIVE"},
        {"cut by one", bx_str(&C, "%.34s", q1), 403, "QUEUE_NOT_ACTIVE"},
        {"one too long", bx_str(&C, "%sA", q1), 403, "QUEUE_NOT_ACTIVE"},
        {"a character changed", mid_flip, 403, "QUEUE_NOT_ACTIVE"},
        {"upper-cased", upper, 403, "QUEUE_NOT_ACTIVE"},
        {"standard base64 alphabet", bx_str(&C, "%.33s+/", q1), 403, "QUEUE_NOT_ACTIVE"},
        {"all zero bits", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 403, "QUEUE_NOT_ACTIVE"},
        {"another concert's token", q2, 403, "QUEUE_NOT_ACTIVE"},
        {"re-encoded to name another concert", with_concert(q1, c2), 403, "QUEUE_NOT_ACTIVE"},
        {"the concert part of another concert's token", with_concert(q2, c1), 403, "QUEUE_NOT_ACTIVE"},
        {"another user's", other_live, 403, "TOKEN_NOT_YOURS"},
        {"spent (left), used by its owner", NULL, 410, "TOKEN_EXPIRED"},
    };
    int ncases = (int)(sizeof cases / sizeof cases[0]);
    int tried = 0;
    for (int k = 0; k < ncases; k++) {
        const char *bearer = at;
        const char *tok = cases[k].tok;
        if (strcmp(cases[k].name, "spent (left), used by its owner") == 0) {
            bearer = other;
            tok = oq;
        }
        struct bx_resp *rs[4];
        struct bx_req q = {.bearer = bearer, .queue_token = tok};
        rs[0] = bx_http(&C, "GET", bx_str(&C, "/api/v1/concerts/%lld/schedules", (long long)c1), &q);
        rs[1] = bx_http(&C, "GET", bx_str(&C, "/api/v1/schedules/%lld/seats", (long long)s1), &q);
        rs[2] = req("POST", "/api/v1/reservations", bearer, tok, body_of("{\"scheduleId\":%lld,\"seatNo\":5}", (long long)s1));
        rs[3] = bearer == at ? req("POST", "/api/v1/payments", bearer, tok, body_of("{\"reservationId\":%lld}", (long long)rid))
                             : NULL;
        for (int j = 0; j < 4; j++) {
            if (rs[j] == NULL)
                continue;
            tried++;
            cr_assert(rs[j]->status == cases[k].status && strcmp(bx_err_code(rs[j]), cases[k].code) == 0,
                      "queue token %s on %s: expected %ld %s, got %ld %s", cases[k].name, rs[j]->what, cases[k].status,
                      cases[k].code, rs[j]->status, rs[j]->body);
        }
    }
    /* the queue's own endpoints: malformed or unknown is 401 QUEUE_TOKEN_INVALID */
    const char *unknown[] = {bx_str(&C, "%.34s", q1), mid_flip, upper, with_concert(q1, c2), "", "x"};
    for (size_t k = 0; k < sizeof unknown / sizeof unknown[0]; k++) {
        struct bx_req q = {.bearer = at, .queue_token = unknown[k]};
        struct bx_resp *r = bx_http(&C, "GET", "/api/v1/queue/status", &q);
        tried++;
        cr_assert(r->status == 401 && strcmp(bx_err_code(r), "QUEUE_TOKEN_INVALID") == 0,
                  "status with queue token \"%s\": %ld %s", unknown[k], r->status, r->body);
        r = bx_http(&C, "DELETE", "/api/v1/queue/tokens/current", &q);
        tried++;
        cr_assert(r->status == 401 && strcmp(bx_err_code(r), "QUEUE_TOKEN_INVALID") == 0,
                  "leave with queue token \"%s\": %ld %s", unknown[k], r->status, r->body);
    }
    /* nothing happened */
    cr_assert_str_eq(reservation_status(at, rid), "HELD");
    cr_assert_eq(bx_balance(&C, at), 5000);
    int navail;
    cr_assert(bx_seat_available(&C, at, q1, s1, 5, &navail), "a refused hold took seat 5");
    cr_assert_eq(navail, 9);
    printf("figure: forged queue tokens [%s]: %d cases (cut, lengthened, one character changed, re-cased, other "
           "alphabet, all zero, another concert's, re-encoded to name another concert, another user's, spent) on the "
           "4 booking endpoints and the 2 queue endpoints: %d requests, each refused with the designed code, nothing "
           "held or paid\n",
           bx_server_mode_name(&srv), ncases, tried);
    fflush(stdout);
}

/* ------------------------------------------------------------ API6: business flows */

static struct bx_resp *issue(const char *at, int64_t cid)
{
    return bx_http(&C, "POST", bx_str(&C, "/api/v1/concerts/%lld/queue/tokens", (long long)cid),
                   &(struct bx_req){.bearer = at});
}

static void expect_place(const char *at, const char *qt, const char *status, int64_t position)
{
    struct bx_resp *r = bx_http(&C, "GET", "/api/v1/queue/status", &(struct bx_req){.bearer = at, .queue_token = qt});
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "status"), status, "%s", r->body);
    cr_assert_eq(bx_jint(r->json, "position"), position, "%s", r->body);
}

Test(security, queue_jumping_by_reissuing_leaving_or_borrowing_tokens_gets_nowhere)
{
    START("--active-max", "1");
    int64_t cid = bx_admin_concert(&C, "Line");
    int64_t sid = bx_admin_schedule(&C, cid, 10, 1000);
    const char *a = bx_user(&C, "first", NULL), *b = bx_user(&C, "second", NULL), *c = bx_user(&C, "third", NULL);
    const char *aq = bx_queue_issue(&C, a, cid, NULL, 0);
    struct bx_resp *r = issue(b, cid);
    bx_expect(r, 201, NULL);
    const char *bq = bx_str(&C, "%s", bx_jstr(r->json, "token"));
    r = issue(c, cid);
    bx_expect(r, 201, NULL);
    const char *cq = bx_str(&C, "%s", bx_jstr(r->json, "token"));
    int64_t arid = bx_hold(&C, a, aq, sid, 1);
    expect_place(b, bq, "WAITING", 1);
    expect_place(c, cq, "WAITING", 2);

    /* re-issuing 20 times: the same token, the same place */
    for (int i = 0; i < 20; i++) {
        r = issue(c, cid);
        bx_expect(r, 200, NULL);
        cr_assert_str_eq(bx_jstr(r->json, "token"), cq);
        cr_assert_eq(bx_jint(r->json, "position"), 2, "%s", r->body);
    }
    expect_place(b, bq, "WAITING", 1);
    /* leaving and coming back: a new token at the back */
    bx_expect(bx_http(&C, "DELETE", "/api/v1/queue/tokens/current", &(struct bx_req){.bearer = b, .queue_token = bq}),
              204, NULL);
    r = issue(b, cid);
    bx_expect(r, 201, NULL);
    const char *bq2 = bx_str(&C, "%s", bx_jstr(r->json, "token"));
    cr_assert_str_neq(bq2, bq);
    cr_assert_eq(bx_jint(r->json, "position"), 2, "came back ahead of the line: %s", r->body);
    expect_place(c, cq, "WAITING", 1);
    /* borrowing the ACTIVE user's token: every booking endpoint says not yours */
    struct bx_req borrowed = {.bearer = c, .queue_token = aq};
    EXPECT_ERR(bx_http(&C, "GET", bx_str(&C, "/api/v1/concerts/%lld/schedules", (long long)cid), &borrowed), 403,
               "TOKEN_NOT_YOURS");
    EXPECT_ERR(bx_http(&C, "GET", bx_str(&C, "/api/v1/schedules/%lld/seats", (long long)sid), &borrowed), 403,
               "TOKEN_NOT_YOURS");
    EXPECT_ERR(req("POST", "/api/v1/reservations", c, aq, body_of("{\"scheduleId\":%lld,\"seatNo\":2}", (long long)sid)),
               403, "TOKEN_NOT_YOURS");
    EXPECT_ERR(req("POST", "/api/v1/payments", c, aq, body_of("{\"reservationId\":%lld}", (long long)arid)), 404,
               "RESERVATION_NOT_FOUND");
    /* a WAITING token cannot pay either (a hold made earlier with an ACTIVE one) */
    EXPECT_ERR(req("POST", "/api/v1/reservations", c, cq, body_of("{\"scheduleId\":%lld,\"seatNo\":2}", (long long)sid)),
               403, "QUEUE_NOT_ACTIVE");
    /* the first user leaves: the next in line is admitted, nobody else */
    bx_expect(bx_http(&C, "DELETE", "/api/v1/queue/tokens/current", &(struct bx_req){.bearer = a, .queue_token = aq}),
              204, NULL);
    bx_wait_active(&C, c, cq, 5000);
    expect_place(b, bq2, "WAITING", 1);
    /* the one who left comes back behind everybody */
    r = issue(a, cid);
    bx_expect(r, 201, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "status"), "WAITING", "%s", r->body);
    cr_assert_eq(bx_jint(r->json, "position"), 2, "%s", r->body);
    /* paying with a token spent by leaving is refused */
    bx_charge(&C, a, 1000);
    EXPECT_ERR(req("POST", "/api/v1/payments", a, aq, body_of("{\"reservationId\":%lld}", (long long)arid)), 410,
               "TOKEN_EXPIRED");
    cr_assert_str_eq(reservation_status(a, arid), "HELD");
    printf("figure: queue jumping [%s]: 20 re-issues kept token and place, leave + re-issue went to the back, a "
           "borrowed ACTIVE token refused on 4 endpoints, admission strictly in order\n",
           bx_server_mode_name(&srv));
    fflush(stdout);
}

/* Sends `send` until the first 429 (at most max times); returns how many were not
 * 429 before it, and the 429 in *limited (NULL if none came). */
static int until_limited(struct bx_resp *(*send)(int i, void *ctx), void *ctx, int max, struct bx_resp **limited,
                         int *ok2xx)
{
    *limited = NULL;
    *ok2xx = 0;
    for (int i = 0; i < max; i++) {
        struct bx_resp *r = send(i, ctx);
        if (r->status == 429) {
            *limited = r;
            return i;
        }
        *ok2xx += r->status >= 200 && r->status < 300;
    }
    return max;
}

struct rl_ctx {
    const char *at, *qt, *name, *password;
    int64_t cid, sid;
};

static struct bx_resp *send_issue(int i, void *p)
{
    (void)i;
    struct rl_ctx *x = p;
    return issue(x->at, x->cid);
}

static struct bx_resp *send_charge(int i, void *p)
{
    (void)i;
    struct rl_ctx *x = p;
    return req("POST", "/api/v1/users/me/balance/charge", x->at, NULL, "{\"amount\":100}");
}

static struct bx_resp *send_hold(int i, void *p)
{
    struct rl_ctx *x = p;
    return req("POST", "/api/v1/reservations", x->at, x->qt,
               bx_str(&C, "{\"scheduleId\":%lld,\"seatNo\":%d}", (long long)x->sid, i % 39 + 1));
}

static struct bx_resp *send_login(int i, void *p)
{
    (void)i;
    struct rl_ctx *x = p;
    return bx_http_json(&C, "POST", "/api/v1/sessions", NULL,
                        json_pack("{s:s,s:s}", "name", x->name, "password", x->password));
}

static void expect_429(const struct bx_resp *r, const char *what)
{
    cr_assert(r != NULL, "%s: never answered 429 RATE_LIMITED", what);
    cr_assert(strcmp(bx_err_code(r), "RATE_LIMITED") == 0 && bx_is_error_shape(r), "%s: 429 with %s", what, r->body);
    char *end = NULL;
    long ra = strtol(r->retry_after, &end, 10);
    cr_assert(r->retry_after[0] != '\0' && *end == '\0' && ra >= 1 && ra <= 60,
              "%s: 429 without a Retry-After of 1..60 s (\"%s\")", what, r->retry_after);
}

Test(security, scalpers_hit_the_seat_limit_and_per_user_rate_limits_with_retry_after)
{
    enum { BURST = 5 };
    START("--rate-limit", "1", "--rate-burst", "5", "--max-seats-per-user", "2");
    int ninst = srv.ninst;
    int64_t cid = bx_admin_concert(&C, "Scalpers");
    int64_t sid = bx_admin_schedule(&C, cid, 40, 1000);
    const char *at = bx_user(&C, "scalper", NULL); /* the log-ins here: one of the bucket */
    const char *fair = bx_user(&C, "fair", NULL);
    const char *qt = bx_queue_issue(&C, at, cid, NULL, 0);
    struct rl_ctx x = {.at = at, .qt = qt, .cid = cid, .sid = sid, .name = "scalper", .password = BX_PASSWORD};
    /* the user's bucket holds BURST and refills 1/s, one budget however many
     * instances serve (scale-out shares it in Redis); log-in counts are per
     * instance */
    int allowed = BURST + 2, logins_allowed = ninst * (BURST + 2);
    struct bx_resp *lim;
    int ok;
    int64_t t0 = bx_now_ms();

    int n_issue = until_limited(send_issue, &x, 60, &lim, &ok);
    expect_429(lim, "queue token issuance");
    cr_assert(n_issue <= allowed, "%d queue-token requests before 429", n_issue);
    char retry_issue[32];
    snprintf(retry_issue, sizeof retry_issue, "%s", lim->retry_after);

    int64_t before = bx_balance(&C, at);
    int n_charge = until_limited(send_charge, &x, 60, &lim, &ok);
    expect_429(lim, "charges");
    cr_assert(n_charge <= allowed, "%d charges before 429", n_charge);
    cr_assert_eq(bx_balance(&C, at), before + 100 * ok, "a refused charge moved money");
    int charges_ok = ok;

    int n_hold = until_limited(send_hold, &x, 60, &lim, &ok);
    expect_429(lim, "holds");
    cr_assert(n_hold <= allowed, "%d holds before 429", n_hold);
    cr_assert_eq(ok, 2, "%d holds succeeded with --max-seats-per-user 2", ok);
    const char *fq = bx_queue_issue(&C, fair, cid, NULL, 0);
    bx_expect(req("POST", "/api/v1/reservations", fair, fq, body_of("{\"scheduleId\":%lld,\"seatNo\":40}", (long long)sid)),
              201, NULL);
    int navail;
    bx_seat_available(&C, fair, fq, sid, 1, &navail);
    cr_assert_eq(navail, 40 - 3, "refused holds took seats: %d available", navail);

    /* log-ins per account name and address (--login-tries 5), right or wrong password */
    x.password = "wrong password";
    int n_login = until_limited(send_login, &x, 60, &lim, &ok);
    expect_429(lim, "log-ins");
    cr_assert(n_login <= logins_allowed, "%d log-ins before 429", n_login);
    x.password = BX_PASSWORD;
    if (ninst == 1) { /* in scale-out the other instance's bucket may still hold one */
        struct bx_resp *r = send_login(0, &x);
        cr_assert_eq(r->status, 429, "the right password got through a limited account name and address: %ld",
                     r->status);
    }

    /* other users are not affected */
    bx_expect(req("POST", "/api/v1/users/me/balance/charge", fair, NULL, "{\"amount\":100}"), 200, NULL);
    bx_expect(bx_http_json(&C, "POST", "/api/v1/sessions", NULL,
                           json_pack("{s:s,s:s}", "name", "fair", "password", BX_PASSWORD)),
              200, NULL);
    /* after Retry-After the scalper may charge again */
    long wait = strtol(lim->retry_after, NULL, 10);
    bx_sleep_ms((int)(wait * 1000 + 100));
    bx_expect(req("POST", "/api/v1/users/me/balance/charge", at, NULL, "{\"amount\":100}"), 200, NULL);
    printf("figure: scalping limits [%s] (--rate-limit 1 --rate-burst 5, %d instance%s): 429 RATE_LIMITED with "
           "Retry-After after %d queue-token requests (Retry-After %s s), %d charges (%d accepted, refused ones moved "
           "nothing), %d holds (2 held: --max-seats-per-user 2), %d log-ins to one name from one address; other users unaffected; allowed "
           "again after Retry-After; %lld ms\n",
           bx_server_mode_name(&srv), ninst, ninst > 1 ? "s, one budget, log-in counts per instance" : "", n_issue, retry_issue, n_charge,
           charges_ok, n_hold, n_login, (long long)(bx_now_ms() - t0));
    fflush(stdout);
}

/* ------------------------------------------------------------ API2/API4: guessing and hashing floods */

/* One answer to a request made from a chosen source address. */
struct answer {
    long status;
    int64_t ms;
    char code[40];        /* error.code, "" if none */
    char retry_after[32]; /* Retry-After, "" if none */
};

struct body_buf {
    char text[2048];
    size_t len;
};

static size_t body_sink(char *p, size_t size, size_t n, void *ud)
{
    struct body_buf *b = ud;
    size_t k = size * n, room = sizeof b->text - 1 - b->len;
    memcpy(b->text + b->len, p, k < room ? k : room);
    b->len += k < room ? k : room;
    b->text[b->len] = '\0';
    return size * n;
}

static size_t retry_after_sink(char *p, size_t size, size_t n, void *ud)
{
    char *out = ud;
    size_t k = size * n;
    if (k > 12 && strncasecmp(p, "retry-after:", 12) == 0) {
        size_t i = 12, j = 0;
        while (i < k && p[i] == ' ')
            i++;
        while (i < k && p[i] != '\r' && p[i] != '\n' && j < 31)
            out[j++] = p[i++];
        out[j] = '\0';
    }
    return k;
}

/* A connection of its own from source address src (127.0.0.x: every address of
 * 127/8 is the loopback). In scale-out it reaches nginx, which reports src to the
 * instances in X-Forwarded-For (they trust it with --trusted-proxy 127.0.0.1). */
static CURL *client_from(const char *src)
{
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_INTERFACE, src);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 60000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    return h;
}

/* POSTs body to path on h; xff (may be NULL): an X-Forwarded-For the client sends
 * itself. Never asserts (worker threads use it). */
static struct answer post_from(CURL *h, const char *path, const char *body, const char *xff)
{
    struct answer a;
    memset(&a, 0, sizeof a);
    struct body_buf b = {.len = 0};
    char url[256], fwd[128];
    snprintf(url, sizeof url, "%s%s", srv.base_url, path);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    if (xff != NULL) {
        snprintf(fwd, sizeof fwd, "X-Forwarded-For: %s", xff);
        hdrs = curl_slist_append(hdrs, fwd);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, body_sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, retry_after_sink);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, a.retry_after);
    int64_t t0 = bx_now_ms();
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a.status);
    a.ms = bx_now_ms() - t0;
    curl_slist_free_all(hdrs);
    const char *code = strstr(b.text, "\"code\":\"");
    if (code != NULL)
        sscanf(code + 8, "%39[^\"]", a.code);
    return a;
}

static struct answer login_from(CURL *h, const char *name, const char *password)
{
    char body[256];
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"password\":\"%s\"}", name, password);
    return post_from(h, "/api/v1/sessions", body, NULL);
}

static bool retry_after_ok(const struct answer *a)
{
    char *end = NULL;
    long v = strtol(a->retry_after, &end, 10);
    return a->retry_after[0] != '\0' && *end == '\0' && v >= 1 && v <= 60;
}

/* Connections from 127.0.0.2 (spread: from 127.0.0.10-17 in turn) post log-ins
 * with a new random name each time. */
struct flood {
    int64_t until;
    bool spread;
    int started, n, ok401, r503, r429, bad_retry, other;
    int64_t worst_ms;
    long other_status;
};
static pthread_mutex_t flood_lock = PTHREAD_MUTEX_INITIALIZER;

static void *flood_main(void *arg)
{
    struct flood *f = arg;
    char src[32] = "127.0.0.2";
    int k = __atomic_fetch_add(&f->started, 1, __ATOMIC_RELAXED);
    if (f->spread)
        snprintf(src, sizeof src, "127.0.0.%d", 10 + k % 8);
    CURL *h = client_from(src);
    unsigned seed = (unsigned)(uintptr_t)&h ^ (unsigned)bx_now_ms();
    while (bx_now_ms() < f->until) {
        char name[40];
        snprintf(name, sizeof name, "flood-%08x%08x", (unsigned)rand_r(&seed), (unsigned)rand_r(&seed));
        struct answer a = login_from(h, name, "not the password");
        pthread_mutex_lock(&flood_lock);
        f->n++;
        f->worst_ms = a.ms > f->worst_ms ? a.ms : f->worst_ms;
        if (a.status == 401)
            f->ok401++;
        else if (a.status == 503 || a.status == 429) {
            *(a.status == 503 ? &f->r503 : &f->r429) += 1;
            f->bad_retry += !retry_after_ok(&a);
        } else {
            f->other++;
            f->other_status = a.status;
        }
        pthread_mutex_unlock(&flood_lock);
    }
    curl_easy_cleanup(h);
    return NULL;
}

Test(security, a_log_in_flood_is_refused_with_503_and_retry_after_while_a_real_log_in_gets_through)
{
    enum { FLOODERS = 16, FLOOD_MS = 4000, PROBES = 5 };
    /* a hashing queue of 1 ms (whatever this machine's hash time, 16 connections
     * outrun it) and no per-address limits (harness default; --login-tries 1000 puts
     * the per-address backoff of failed log-ins out of reach): what refuses is the
     * bounded queue */
    START("--pwhash-mem-kib", "16384", "--pwhash-ops", "2", "--hash-wait", "1", "--trusted-proxy", "127.0.0.1",
          "--login-tries", "1000");
    bx_user(&C, "mina", NULL);
    CURL *mina = client_from("127.0.0.1");
    struct answer quiet = login_from(mina, "mina", BX_PASSWORD);
    cr_assert_eq(quiet.status, 200, "log-in without a flood: %ld %s", quiet.status, quiet.code);

    struct flood f = {.until = bx_now_ms() + FLOOD_MS};
    pthread_t t[FLOODERS];
    for (int i = 0; i < FLOODERS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, flood_main, &f), 0);
    bx_sleep_ms(1000);
    int64_t probe_ms[PROBES], worst = 0;
    for (int i = 0; i < PROBES; i++) {
        struct answer a = login_from(mina, "mina", BX_PASSWORD);
        probe_ms[i] = a.ms;
        worst = a.ms > worst ? a.ms : worst;
        cr_assert_eq(a.status, 200, "mina's log-in %d during the flood: %ld %s (Retry-After %s)", i, a.status, a.code,
                     a.retry_after);
        bx_sleep_ms(200);
    }
    for (int i = 0; i < FLOODERS; i++)
        pthread_join(t[i], NULL);
    curl_easy_cleanup(mina);

    printf("figure: log-in flood [%s] (%d connections from one address, new name each time, argon2id 16 MiB): %d "
           "answers in %d ms: %d 401, %d 503, %d 429, slowest %lld ms; mina's log-ins from another address: %lld ms "
           "alone, %lld/%lld/%lld/%lld/%lld ms during the flood\n",
           bx_server_mode_name(&srv), FLOODERS, f.n, FLOOD_MS, f.ok401, f.r503, f.r429, (long long)f.worst_ms,
           (long long)quiet.ms, (long long)probe_ms[0], (long long)probe_ms[1], (long long)probe_ms[2],
           (long long)probe_ms[3], (long long)probe_ms[4]);
    fflush(stdout);
    cr_assert_gt(f.r503, 0, "%d flood log-ins, none refused with 503: the hashing queue is not bounded", f.n);
    cr_assert_eq(f.bad_retry, 0, "%d refusals without a Retry-After of 1..60 s", f.bad_retry);
    cr_assert_eq(f.other, 0, "%d flood answers were neither 401, 429 nor 503 (e.g. %ld)", f.other, f.other_status);
    /* bounded: nothing waited behind an unbounded queue (generous: the machine is shared) */
    cr_assert_lt(f.worst_ms, 15000, "a flood log-in waited %lld ms", (long long)f.worst_ms);
    cr_assert_lt(worst, 10000, "mina's log-in took %lld ms during the flood", (long long)worst);
    expect_alive("a log-in flood");
}

Test(security, a_returning_user_gets_through_a_log_in_flood_from_many_addresses)
{
    enum { FLOODERS = 16, FLOOD_MS = 4000, PROBES = 5 };
    /* the flood from 8 addresses shares the queue fairly with everyone; mina logs
     * in from the address she signed up from: her log-ins go first */
    START("--pwhash-mem-kib", "16384", "--pwhash-ops", "2", "--hash-wait", "300", "--trusted-proxy", "127.0.0.1",
          "--login-tries", "1000");
    bx_user(&C, "mina", NULL);
    CURL *mina = client_from("127.0.0.1");
    for (int i = 0; i < 3; i++) /* in scale-out: a mark on both instances */
        cr_assert_eq(login_from(mina, "mina", BX_PASSWORD).status, 200);
    struct flood f = {.until = bx_now_ms() + FLOOD_MS, .spread = true};
    pthread_t t[FLOODERS];
    for (int i = 0; i < FLOODERS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, flood_main, &f), 0);
    bx_sleep_ms(1000);
    int64_t probe_ms[PROBES], worst = 0;
    for (int i = 0; i < PROBES; i++) {
        struct answer a = login_from(mina, "mina", BX_PASSWORD);
        probe_ms[i] = a.ms;
        worst = a.ms > worst ? a.ms : worst;
        cr_assert_eq(a.status, 200, "mina's log-in %d during a flood from 8 addresses: %ld %s (Retry-After %s)", i,
                     a.status, a.code, a.retry_after);
        bx_sleep_ms(200);
    }
    for (int i = 0; i < FLOODERS; i++)
        pthread_join(t[i], NULL);
    curl_easy_cleanup(mina);
    printf("figure: log-in flood from 8 addresses [%s] (%d connections, argon2id 16 MiB, --hash-wait 300): %d answers: "
           "%d 401, %d 503, %d 429; mina, a returning user, %lld/%lld/%lld/%lld/%lld ms, all 200\n",
           bx_server_mode_name(&srv), FLOODERS, f.n, f.ok401, f.r503, f.r429, (long long)probe_ms[0],
           (long long)probe_ms[1], (long long)probe_ms[2], (long long)probe_ms[3], (long long)probe_ms[4]);
    fflush(stdout);
    cr_assert_eq(f.bad_retry, 0, "%d refusals without a Retry-After of 1..60 s", f.bad_retry);
    cr_assert_eq(f.other, 0, "%d flood answers were neither 401, 429 nor 503 (e.g. %ld)", f.other, f.other_status);
    cr_assert_lt(worst, 10000, "mina's log-in took %lld ms during the flood", (long long)worst);
}

Test(security, sign_ups_and_log_ins_are_limited_per_client_address_and_a_forged_forwarded_for_changes_nothing)
{
    enum { BURST = 3, TRIES = 16 };
    START("--address-rate-limit", "1", "--address-rate-burst", "3", "--trusted-proxy", "127.0.0.1");
    int allowed = srv.ninst * (BURST + 2);
    CURL *h = client_from("127.0.0.2");
    struct answer limited = {0};
    int before = 0;
    /* a new forged X-Forwarded-For each time: the address is still 127.0.0.2 (not a
     * trusted proxy, so its headers are ignored; behind nginx, the entry nginx added
     * is the one believed) */
    for (int i = 0; i < TRIES && limited.status != 429; i++) {
        char body[128], xff[32];
        snprintf(body, sizeof body, "{\"name\":\"guess-%d\",\"password\":\"not the password\"}", i);
        snprintf(xff, sizeof xff, "10.0.%d.%d", i / 250, i % 250 + 1);
        limited = post_from(h, "/api/v1/sessions", body, xff);
        if (limited.status != 429) {
            cr_assert_eq(limited.status, 401, "log-in %d from 127.0.0.2: %ld %s", i, limited.status, limited.code);
            before++;
        }
    }
    cr_assert_eq(limited.status, 429, "%d log-ins from one address, none refused", TRIES);
    cr_assert_str_eq(limited.code, "RATE_LIMITED");
    cr_assert(retry_after_ok(&limited), "429 without a Retry-After of 1..60 s: \"%s\"", limited.retry_after);
    cr_assert_leq(before, allowed, "%d log-ins from one address before 429 (--address-rate-burst %d)", before, BURST);
    /* sign-ups share the bucket (the 429 came a second late: a token may have come
     * back meanwhile, the next one cannot have) */
    struct answer signup = {0};
    for (int i = 0; i < 3 && signup.status != 429; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"name\":\"late-signup-%d\",\"password\":\"" BX_PASSWORD "\"}", i);
        signup = post_from(h, "/api/v1/users", body, "10.1.1.1");
        cr_assert(signup.status == 201 || signup.status == 429, "sign-up %d: %ld %s", i, signup.status, signup.code);
    }
    cr_assert_eq(signup.status, 429, "3 sign-ups from the limited address, none refused");
    curl_easy_cleanup(h);

    /* another address is not affected */
    CURL *other = client_from("127.0.0.3");
    struct answer a =
        post_from(other, "/api/v1/users", "{\"name\":\"elsewhere\",\"password\":\"" BX_PASSWORD "\"}", NULL);
    cr_assert_eq(a.status, 201, "sign-up from 127.0.0.3: %ld %s", a.status, a.code);
    a = login_from(other, "elsewhere", BX_PASSWORD);
    cr_assert_eq(a.status, 200, "log-in from 127.0.0.3: %ld %s", a.status, a.code);
    curl_easy_cleanup(other);
    printf("figure: per-address limit [%s] (--address-rate-limit 1, burst 3, %d instance%s): 429 with Retry-After %s "
           "after %d log-ins from one address, each with a different forged X-Forwarded-For; sign-ups refused there "
           "too; another address unaffected\n",
           bx_server_mode_name(&srv), srv.ninst, srv.ninst > 1 ? "s" : "", limited.retry_after, before);
    fflush(stdout);
}

Test(security, guessing_a_password_from_elsewhere_does_not_lock_its_owner_out)
{
    enum { GUESSES = 150, SPREAD = 80, PER_ADDRESS = 5 };
    START("--trusted-proxy", "127.0.0.1");
    int tries = 5, ninst = srv.ninst;
    /* mina signs up and logs in from her address (in scale-out: on both instances) */
    bx_user(&C, "mina", NULL);
    CURL *mina = client_from("127.0.0.1");
    for (int i = 0; i < 3; i++)
        cr_assert_eq(login_from(mina, "mina", BX_PASSWORD).status, 200);

    /* 150 wrong passwords for mina from one other address, as fast as it goes */
    CURL *attacker = client_from("127.0.0.2");
    int wrong = 0, refused = 0, bad_retry = 0;
    int64_t t0 = bx_now_ms();
    for (int i = 0; i < GUESSES; i++) {
        struct answer a = login_from(attacker, "mina", "not the password");
        cr_assert(a.status == 401 || a.status == 429, "guess %d: %ld %s", i, a.status, a.code);
        wrong += a.status == 401;
        refused += a.status == 429;
        bad_retry += a.status == 429 && !retry_after_ok(&a);
    }
    int64_t guess_ms = bx_now_ms() - t0;
    curl_easy_cleanup(attacker);
    cr_assert_leq(wrong, ninst * (tries + 2), "%d of %d guesses from one address were verified", wrong, GUESSES);
    cr_assert_eq(bad_retry, 0, "%d refusals without a Retry-After of 1..60 s", bad_retry);
    struct answer a = login_from(mina, "mina", BX_PASSWORD);
    cr_assert_eq(a.status, 200, "after %d guesses from 127.0.0.2, mina's own log-in from 127.0.0.1: %ld %s", GUESSES,
                 a.status, a.code);

    /* a distributed attack: 80 addresses, 5 guesses each */
    int dwrong = 0, drefused = 0;
    t0 = bx_now_ms();
    for (int k = 0; k < SPREAD; k++) {
        char src[32];
        snprintf(src, sizeof src, "127.0.1.%d", k + 1);
        CURL *h = client_from(src);
        for (int i = 0; i < PER_ADDRESS; i++) {
            struct answer g = login_from(h, "mina", "not the password");
            cr_assert(g.status == 401 || g.status == 429, "guess from %s: %ld %s", src, g.status, g.code);
            dwrong += g.status == 401;
            drefused += g.status == 429;
        }
        curl_easy_cleanup(h);
    }
    int64_t spread_ms = bx_now_ms() - t0;
    /* per instance: 20 x --login-tries from addresses without a mark, then 1 s, 2 s, 4 s ... */
    cr_assert_leq(dwrong, ninst * (20 * tries + 6), "%d of %d distributed guesses were verified", dwrong,
                  SPREAD * PER_ADDRESS);
    cr_assert_gt(drefused, 0, "a distributed attack on one name was not slowed");
    /* the right password from an address that never logged in to mina waits too ... */
    CURL *fresh = client_from("127.0.2.1");
    struct answer newcomer = login_from(fresh, "mina", BX_PASSWORD);
    curl_easy_cleanup(fresh);
    cr_assert_eq(newcomer.status, 429, "right after the attack, a log-in to mina from a new address: %ld",
                 newcomer.status);
    /* ... but mina, from her own address, gets in */
    a = login_from(mina, "mina", BX_PASSWORD);
    cr_assert_eq(a.status, 200, "after a distributed attack, mina's own log-in from 127.0.0.1: %ld %s", a.status,
                 a.code);
    curl_easy_cleanup(mina);
    printf("figure: lock-out [%s]: %d wrong passwords for mina from one address in %lld ms: %d verified, %d refused "
           "429 with Retry-After; mina's log-in from her address: 200. %d guesses from %d addresses in %lld ms: %d "
           "verified, %d refused; a new address with the right password: 429; mina from her address: 200\n",
           bx_server_mode_name(&srv), GUESSES, (long long)guess_ms, wrong, refused, SPREAD * PER_ADDRESS, SPREAD,
           (long long)spread_ms, dwrong, drefused);
    fflush(stdout);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

Test(security, an_unknown_name_costs_as_long_as_a_wrong_password)
{
    enum { N = 9 };
    START("--pwhash-mem-kib", "16384", "--pwhash-ops", "2", "--login-tries", "100");
    bx_user(&C, "known", NULL);
    CURL *h = client_from("127.0.0.1");
    int64_t known[N], unknown[N];
    for (int i = 0; i < N; i++) { /* interleaved: the machine's load drifts */
        struct answer a = login_from(h, "known", "not the password");
        cr_assert_eq(a.status, 401);
        known[i] = a.ms;
        char name[32];
        snprintf(name, sizeof name, "nobody-%d", i);
        a = login_from(h, name, "not the password");
        cr_assert_eq(a.status, 401);
        unknown[i] = a.ms;
    }
    curl_easy_cleanup(h);
    qsort(known, N, sizeof known[0], cmp_i64);
    qsort(unknown, N, sizeof unknown[0], cmp_i64);
    int64_t mk = known[N / 2], mu = unknown[N / 2];
    printf("figure: user enumeration [%s]: median log-in %lld ms for a known name with a wrong password, %lld ms for "
           "an unknown name (argon2id 16 MiB)\n",
           bx_server_mode_name(&srv), (long long)mk, (long long)mu);
    fflush(stdout);
    cr_assert(mu * 2 >= mk && mk * 2 >= mu, "median %lld ms for a known name, %lld ms for an unknown one",
              (long long)mk, (long long)mu);
}

/* ------------------------------------------------------------ injection */

Test(security, sql_metacharacters_and_odd_unicode_are_stored_verbatim_and_harmless)
{
    START();
    const char *first = bx_user(&C, "abc", NULL);
    const char *names[] = {
        "'; DROP TABLE users; --",
        "\" OR \"1\"=\"1",
        "Robert'); DELETE FROM payments;--",
        "a' OR 'a'='a",
        "%",
        "a_c",
        "\\",
        "$1",
        "%s%n%x",
        "<script>alert(1)</script>",
        "\xe2\x80\xae" "gnp.exe",      /* right-to-left override */
        "a\xe2\x80\x8b" "b",           /* zero-width space */
        "\xef\xbb\xbf" "bom",          /* byte order mark */
        "\xf0\x9f\x8e\xab\xf0\x9f\x8e\xb5", /* emoji */
        "e\xcc\x81",                   /* e + combining acute */
        "\xc3\xa9",                    /* é precomposed */
        "\xf4\x8f\xbf\xbf",            /* U+10FFFF */
        "\xef\xbf\xbf",                /* U+FFFF */
        "\xc2\x85" "nel",              /* C1 control NEL */
        "\xe6\x9d\x8e\xe6\x98\x8e",    /* Hangul/CJK */
    };
    int n = (int)(sizeof names / sizeof names[0]);
    int64_t ids[32];
    int accepted = 0;
    for (int i = 0; i < n; i++) {
        struct bx_resp *r =
            bx_http_json(&C, "POST", "/api/v1/users", NULL, json_pack("{s:s,s:s}", "name", names[i], "password", BX_PASSWORD));
        cr_assert(r->status == 201 || (r->status == 400 && strcmp(bx_err_code(r), "VALIDATION") == 0) ||
                      (r->status == 409 && strcmp(bx_err_code(r), "NAME_TAKEN") == 0),
                  "sign-up as \"%s\": %ld %s", names[i], r->status, r->body);
        ids[i] = 0;
        if (r->status != 201)
            continue;
        accepted++;
        ids[i] = bx_jint(r->json, "userId");
        cr_assert_str_eq(bx_jstr(r->json, "name"), names[i], "name not kept verbatim");
    }
    /* each accepted name logs in as itself, and only as itself */
    for (int i = 0; i < n; i++) {
        if (ids[i] == 0)
            continue;
        struct bx_resp *r = bx_http_json(&C, "POST", "/api/v1/sessions", NULL,
                                         json_pack("{s:s,s:s}", "name", names[i], "password", BX_PASSWORD));
        bx_expect(r, 200, NULL);
        cr_assert_eq(bx_jint(r->json, "userId"), ids[i], "log-in as \"%s\" gave user %lld", names[i],
                     (long long)bx_jint(r->json, "userId"));
    }
    /* no pattern matching in look-ups: "a_c" and "%" are not "abc" */
    const char *patterns[] = {"a_c_", "ab%", "%%", "ABC", "abc ", " abc", "abc\xe2\x80\x8b"};
    for (size_t k = 0; k < sizeof patterns / sizeof patterns[0]; k++) {
        struct bx_resp *r = bx_http_json(&C, "POST", "/api/v1/sessions", NULL,
                                         json_pack("{s:s,s:s}", "name", patterns[k], "password", BX_PASSWORD));
        EXPECT_ERR(r, 401, "BAD_CREDENTIALS");
    }
    /* refused: NUL, controls, broken UTF-8, lone surrogates */
    const char *bad[] = {
        "{\"name\":\"a\\u0000b\",\"password\":\"" BX_PASSWORD "\"}",
        "{\"name\":\"\\u001b[31mred\",\"password\":\"" BX_PASSWORD "\"}",
        "{\"name\":\"del\\u007f\",\"password\":\"" BX_PASSWORD "\"}",
        "{\"name\":\"\\ud800\",\"password\":\"" BX_PASSWORD "\"}",
        "{\"name\":\"\\udc00x\",\"password\":\"" BX_PASSWORD "\"}",
        "{\"name\":\"\xc0\xaf\",\"password\":\"" BX_PASSWORD "\"}",
        "{\"name\":\"\xff\xfe\",\"password\":\"" BX_PASSWORD "\"}",
        "{\"name\":\"\xed\xa0\x80\",\"password\":\"" BX_PASSWORD "\"}",
        "{\"name\":\"\xe2\x82\",\"password\":\"" BX_PASSWORD "\"}",
        "{\"name\":\"ok\",\"password\":\"pass\\u0000word\"}",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        struct bx_resp *r = req("POST", "/api/v1/users", NULL, NULL, bad[k]);
        cr_assert(r->status == 400 && strcmp(bx_err_code(r), "VALIDATION") == 0 && bx_is_error_shape(r),
                  "body %zu: %ld %s", k, r->status, r->body);
    }
    /* 16 four-byte characters fit 64 bytes; a 17th is refused, never cut in half */
    char emoji[80] = "";
    for (int i = 0; i < 16; i++)
        strcat(emoji, "\xf0\x9f\x8e\xab");
    bx_expect(bx_http_json(&C, "POST", "/api/v1/users", NULL, json_pack("{s:s,s:s}", "name", emoji, "password", BX_PASSWORD)),
              201, NULL);
    strcat(emoji, "\xf0\x9f\x8e\xab");
    EXPECT_ERR(bx_http_json(&C, "POST", "/api/v1/users", NULL, json_pack("{s:s,s:s}", "name", emoji, "password", BX_PASSWORD)),
               400, "VALIDATION");
    /* concert titles and venues: verbatim through the admin API and the public list */
    const char *title = "'); DELETE FROM seats; -- \xf0\x9f\x8e\xab";
    const char *venue = "<img src=x onerror=alert(1)> \"Hall\" \\ %s";
    struct bx_resp *r = bx_http_json(&C, "POST", "/api/v1/admin/concerts", &(struct bx_req){.admin_key = BX_ADMIN_KEY},
                                     json_pack("{s:s,s:s}", "title", title, "venue", venue));
    bx_expect(r, 201, NULL);
    int64_t cid = bx_jint(r->json, "concertId");
    r = bx_http(&C, "GET", "/api/v1/concerts", NULL);
    bx_expect(r, 200, NULL);
    size_t i;
    json_t *cobj;
    bool found = false;
    json_array_foreach(json_object_get(r->json, "concerts"), i, cobj)
    {
        if (bx_jint(cobj, "concertId") == cid) {
            found = true;
            cr_assert_str_eq(bx_jstr(cobj, "title"), title);
            cr_assert_str_eq(bx_jstr(cobj, "venue"), venue);
        }
    }
    cr_assert(found, "concert %lld missing from %s", (long long)cid, r->body);
    /* an Idempotency-Key full of metacharacters is just a key (the server refuses
     * spaces in keys, so none here) */
    const char *key = "';DROP/**/TABLE/**/payments;--\"%_\\";
    r = bx_http(&C, "POST", "/api/v1/users/me/balance/charge",
                &(struct bx_req){.bearer = first, .idem_key = key, .body = "{\"amount\":300}"});
    bx_expect(r, 200, NULL);
    r = bx_http(&C, "POST", "/api/v1/users/me/balance/charge",
                &(struct bx_req){.bearer = first, .idem_key = key, .body = "{\"amount\":300}"});
    bx_expect(r, 200, NULL);
    cr_assert_eq(bx_balance(&C, first), 300);
    /* query parameters */
    EXPECT_ERR(req("GET", "/api/v1/users/me/payments?limit=1;DROP%20TABLE%20users", first, NULL, NULL), 400, "VALIDATION");
    EXPECT_ERR(req("GET", "/api/v1/users/me/payments?before=1%20OR%201=1", first, NULL, NULL), 400, "VALIDATION");
    /* everything still there */
    r = bx_http_json(&C, "POST", "/api/v1/sessions", NULL, json_pack("{s:s,s:s}", "name", "abc", "password", BX_PASSWORD));
    bx_expect(r, 200, NULL);
    printf("figure: injection [%s]: %d odd names (SQL and format metacharacters, LIKE wildcards, markup, bidi and "
           "zero-width characters, BOM, emoji, combining marks, U+10FFFF, C1 control): %d accepted verbatim, each "
           "logs in as itself only; %zu look-alike / wildcard log-ins refused; %zu bodies with NUL, controls, broken "
           "UTF-8 or lone surrogates refused 400; titles and keys with metacharacters verbatim\n",
           bx_server_mode_name(&srv), n, accepted, sizeof patterns / sizeof patterns[0], sizeof bad / sizeof bad[0]);
    fflush(stdout);
    expect_audit_clean("after injection attempts");
}

Test(security, integers_past_int64_and_other_odd_numbers_are_refused_without_side_effects)
{
    START();
    const char *at = bx_user(&C, "numbers", NULL);
    int64_t cid = bx_admin_concert(&C, "Numbers");
    int64_t sid = bx_admin_schedule(&C, cid, 10, 1000);
    const char *qt = bx_queue_active(&C, at, cid);
    int64_t rid = bx_hold(&C, at, qt, sid, 1);
    int tried = 0;
    /* amounts: 400 VALIDATION naming amount, or malformed JSON */
    const char *amounts[] = {"9223372036854775807", "9223372036854775808",  "-9223372036854775808",
                             "-9223372036854775809", "18446744073709551616", "18446744073709551716",
                             "1e400",                "1e2",                  "100.0",
                             "-0",                   "0x10",                 "010",
                             "\"100\"",              "true",                 "null",
                             "[100]",                "{\"v\":100}",          "1E2",
                             "4294967396",           "-4294967196",          "99999999999999999999999999999"};
    for (size_t k = 0; k < sizeof amounts / sizeof amounts[0]; k++) {
        struct bx_resp *r = req("POST", "/api/v1/users/me/balance/charge", at, NULL,
                                bx_str(&C, "{\"amount\":%s}", amounts[k]));
        tried++;
        EXPECT_ERR(r, 400, "VALIDATION");
    }
    cr_assert_eq(bx_balance(&C, at), 0, "an odd amount was charged");
    /* seat numbers and schedule ids: never wrapped to a real seat */
    const char *seats[] = {"4294967297", "4294967298", "2147483649", "-4294967295", "9223372036854775808",
                           "18446744073709551617", "1.0", "1e0", "\"2\""};
    for (size_t k = 0; k < sizeof seats / sizeof seats[0]; k++) {
        struct bx_resp *r = req("POST", "/api/v1/reservations", at, qt,
                                bx_str(&C, "{\"scheduleId\":%lld,\"seatNo\":%s}", (long long)sid, seats[k]));
        tried++;
        cr_assert((r->status == 400 && strcmp(bx_err_code(r), "VALIDATION") == 0) ||
                      (r->status == 404 && strcmp(bx_err_code(r), "SEAT_NOT_FOUND") == 0),
                  "seatNo %s: %ld %s", seats[k], r->status, r->body);
    }
    const char *sids[] = {"9223372036854775808", "18446744073709551616", "-1", "0", "9223372036854775807"};
    for (size_t k = 0; k < sizeof sids / sizeof sids[0]; k++) {
        struct bx_resp *r =
            req("POST", "/api/v1/reservations", at, qt, bx_str(&C, "{\"scheduleId\":%s,\"seatNo\":2}", sids[k]));
        tried++;
        cr_assert((r->status == 400 && strcmp(bx_err_code(r), "VALIDATION") == 0) ||
                      (r->status == 404 && strcmp(bx_err_code(r), "SCHEDULE_NOT_FOUND") == 0),
                  "scheduleId %s: %ld %s", sids[k], r->status, r->body);
    }
    int navail;
    bx_seat_available(&C, at, qt, sid, 2, &navail);
    cr_assert_eq(navail, 9, "an odd seat number took a seat");
    /* payments: ids and amounts past int64, an amount that wraps to the price */
    bx_charge(&C, at, 5000);
    const char *pays[] = {"{\"reservationId\":9223372036854775808}",
                          "{\"reservationId\":18446744073709551617}",
                          "{\"reservationId\":-1}",
                          bx_str(&C, "{\"reservationId\":%lld,\"amount\":18446744073709552616}", (long long)rid),
                          bx_str(&C, "{\"reservationId\":%lld,\"amount\":4294968296}", (long long)rid),
                          bx_str(&C, "{\"reservationId\":%lld,\"amount\":-18446744073709550616}", (long long)rid),
                          bx_str(&C, "{\"reservationId\":%lld.0}", (long long)rid)};
    for (size_t k = 0; k < sizeof pays / sizeof pays[0]; k++) {
        struct bx_resp *r = req("POST", "/api/v1/payments", at, qt, pays[k]);
        tried++;
        cr_assert(r->status == 400 || r->status == 404 || (r->status == 409 && strcmp(bx_err_code(r), "PRICE_MISMATCH") == 0),
                  "%s: %ld %s", pays[k], r->status, r->body);
        cr_assert(bx_is_error_shape(r), "%s: %s", pays[k], r->body);
    }
    cr_assert_str_eq(reservation_status(at, rid), "HELD");
    cr_assert_eq(bx_balance(&C, at), 5000);
    /* ids in paths and queries */
    const char *paths[] = {"/api/v1/reservations/9223372036854775808", "/api/v1/reservations/18446744073709551617",
                           "/api/v1/reservations/99999999999999999999999999", "/api/v1/reservations/-1",
                           "/api/v1/reservations/1e3", "/api/v1/reservations/0x1", "/api/v1/reservations/%00"};
    for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++) {
        struct bx_resp *r = req("GET", paths[k], at, NULL, NULL);
        tried++;
        if (bx_scaleout(&srv) && strstr(paths[k], "%00") != NULL && r->status == 400 && r->request_id[0] == '\0')
            continue; /* nginx refuses an encoded NUL in a path itself */
        EXPECT_ERR(r, 400, "VALIDATION"); /* not an id: a malformed request, not a missing object */
    }
    const char *queries[] = {"limit=18446744073709551617", "limit=-1", "limit=1e2", "before=9223372036854775808",
                             "before=-5", "limit=100000000000000000000"};
    for (size_t k = 0; k < sizeof queries / sizeof queries[0]; k++) {
        struct bx_resp *r = req("GET", bx_str(&C, "/api/v1/users/me/payments?%s", queries[k]), at, NULL, NULL);
        tried++;
        EXPECT_ERR(r, 400, "VALIDATION");
    }
    /* admin: seat counts and prices past int32 / int64 create nothing */
    const char *sched[] = {"{\"startsAt\":\"2030-02-01T19:00:00Z\",\"seats\":4294967297,\"price\":1}",
                           "{\"startsAt\":\"2030-02-01T19:00:00Z\",\"seats\":10,\"price\":9223372036854775808}",
                           "{\"startsAt\":\"2030-02-01T19:00:00Z\",\"seats\":10,\"price\":-9223372036854775808}",
                           "{\"startsAt\":\"2030-02-01T19:00:00Z\",\"seats\":-4294967286,\"price\":1}"};
    for (size_t k = 0; k < sizeof sched / sizeof sched[0]; k++) {
        struct bx_resp *r = bx_http(&C, "POST", bx_str(&C, "/api/v1/admin/concerts/%lld/schedules", (long long)cid),
                                    &(struct bx_req){.admin_key = BX_ADMIN_KEY, .body = sched[k]});
        tried++;
        EXPECT_ERR(r, 400, "VALIDATION");
    }
    struct bx_resp *r = bx_http(&C, "GET", bx_str(&C, "/api/v1/concerts/%lld/schedules", (long long)cid),
                                &(struct bx_req){.bearer = at, .queue_token = qt});
    bx_expect(r, 200, NULL);
    cr_assert_eq(json_array_size(json_object_get(r->json, "schedules")), 1, "%s", r->body);
    printf("figure: odd numbers [%s]: %d requests with integers past int32/int64, floats, exponents, hex, leading "
           "zeros, strings, booleans, null, arrays in amounts, seat numbers, ids, query parameters and admin fields: "
           "all 400/404 with the API's error shape, none wrapped to a real seat, price or id, nothing changed\n",
           bx_server_mode_name(&srv), tried);
    fflush(stdout);
}

/* ------------------------------------------------------------ API4: resource consumption */

/* one raw request against a port; *closed: the connection ended */
static long raw(int port, const char *data, size_t len, bool *closed, char *head, size_t headlen)
{
    return bx_raw_http(port, data, len, 10000, head, headlen, closed);
}

/* Sends data and reads everything the server sends for 1.5 s or until it closes:
 * returns the first status (0: nothing), *closed when it closed. */
static long read_all(int port, const char *data, size_t len, bool *closed, char *out, size_t outlen)
{
    *closed = false;
    out[0] = '\0';
    int fd = bx_raw_connect(port);
    cr_assert(fd >= 0, "connect: %s", strerror(errno));
    cr_assert(send(fd, data, len, MSG_NOSIGNAL) == (ssize_t)len);
    size_t used = 0;
    int64_t deadline = bx_now_ms() + 1500;
    while (bx_now_ms() < deadline && used + 1 < outlen) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, (int)(deadline - bx_now_ms())) <= 0)
            break;
        ssize_t n = recv(fd, out + used, outlen - 1 - used, 0);
        if (n <= 0) {
            *closed = true;
            break;
        }
        used += (size_t)n;
        out[used] = '\0';
    }
    close(fd);
    return strncmp(out, "HTTP/1.", 7) == 0 ? strtol(out + 9, NULL, 10) : 0;
}

static char *repeat(const char *prefix, char c, size_t n, const char *suffix)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    char *s = malloc(pl + n + sl + 1);
    cr_assert(s != NULL);
    memcpy(s, prefix, pl);
    memset(s + pl, c, n);
    memcpy(s + pl + n, suffix, sl + 1);
    return s;
}

Test(security, oversized_headers_urls_and_bodies_are_refused_and_the_server_keeps_serving)
{
    START();
    const char *at = bx_user(&C, "big", NULL);
    int ports[1 + BX_MAX_INSTANCES];
    const char *where[1 + BX_MAX_INSTANCES];
    int np = 0;
    ports[np] = bx_url_port(srv.base_url);
    where[np++] = bx_scaleout(&srv) ? "nginx" : "boxoffice";
    if (bx_scaleout(&srv)) {
        ports[np] = srv.inst[0].port;
        where[np++] = "instance A directly";
    }
    char head[2048];
    char line[4096];
    size_t used = 0;
    for (int p = 0; p < np; p++) {
        struct {
            const char *name;
            char *req;
            bool must_refuse; /* else: any answer but a 5xx, or a close */
        } cases[] = {
            {"100 KiB cookie", repeat("GET /healthz HTTP/1.1\r\nHost: x\r\nCookie: a=", 'a', 100 << 10, "\r\n\r\n"),
             false},
            {"1 MiB header", repeat("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ", 'b', 1 << 20, "\r\n\r\n"), true},
            {"128 KiB URL", repeat("GET /api/v1/", 'u', 128 << 10, " HTTP/1.1\r\nHost: x\r\n\r\n"), false},
            {"100 KiB bearer", repeat("GET /api/v1/users/me/balance HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ", 't',
                                      100 << 10, "\r\n\r\n"),
             true},
            {"64 KiB queue token",
             repeat("GET /api/v1/queue/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\nX-Queue-Token: ", 'q',
                    64 << 10, "\r\n\r\n"),
             true},
            {"10 GiB Content-Length",
             strdup("POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 10737418240\r\n\r\n{}"), true},
            {"negative Content-Length", strdup("POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}"),
             true},
        };
        int nc = (int)(sizeof cases / sizeof cases[0]);
        for (int k = 0; k < nc; k++) {
            bool closed = false;
            int64_t t0 = bx_now_ms();
            long st = raw(ports[p], cases[k].req, strlen(cases[k].req), &closed, head, sizeof head);
            int64_t ms = bx_now_ms() - t0;
            free(cases[k].req);
            cr_assert(st != -1, "%s to %s: no answer within 10 s", cases[k].name, where[p]);
            cr_assert(st < 500, "%s to %s: %ld\n%.300s", cases[k].name, where[p], st, head);
            if (cases[k].must_refuse)
                cr_assert(st == 0 || (st >= 400 && st < 500), "%s to %s: %ld (expected a 4xx or a close)\n%.300s",
                          cases[k].name, where[p], st, head);
            used += (size_t)snprintf(line + used, sizeof line - used, "%s%s %ld%s (%lld ms)", used ? ", " : "",
                                     cases[k].name, st, closed ? "+close" : "", (long long)ms);
            expect_alive(cases[k].name);
        }
        /* 2,000 headers */
        char *many = malloc(2000 * 16 + 64);
        size_t n = (size_t)sprintf(many, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
        for (int h = 0; h < 2000; h++)
            n += (size_t)sprintf(many + n, "X-H%d: v\r\n", h);
        n += (size_t)sprintf(many + n, "\r\n");
        bool closed;
        long st = raw(ports[p], many, n, &closed, head, sizeof head);
        free(many);
        cr_assert(st == 0 || (st >= 400 && st < 500), "2000 headers to %s: %ld", where[p], st);
        used += (size_t)snprintf(line + used, sizeof line - used, ", 2000 headers %ld%s", st, closed ? "+close" : "");
        expect_alive("2000 headers");
        printf("figure: oversized requests to %s [%s]: %s\n", where[p], bx_server_mode_name(&srv), line);
        fflush(stdout);
        used = 0;

        /* request smuggling: conflicting lengths must not leave a second request behind */
        const char *smuggled = "GET /api/v1/concerts HTTP/1.1\r\nHost: x\r\n\r\n";
        char body[256];
        int bl = snprintf(body, sizeof body, "{\"a\":1}%s", smuggled);
        char req2[512];
        int rl = snprintf(req2, sizeof req2,
                          "POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nContent-Length: %d\r\n\r\n%s",
                          bl, body);
        closed = false;
        st = read_all(ports[p], req2, (size_t)rl, &closed, head, sizeof head);
        int answers = 0;
        for (const char *q = head; (q = strstr(q, "HTTP/1.1 ")) != NULL; q++)
            answers++;
        bool dup_cl_safe = (st == 400 || st == 0) && answers <= 1;
        if (!dup_cl_safe || (!closed && st != 0))
            KNOWN_DEFECT("two Content-Length headers (7 and %d) on POST /api/v1/sessions to %s: expected 400 and the "
                         "connection closed (RFC 9112 6.3), got %ld, %d answer(s), connection %s",
                         bl, where[p], st, answers, closed ? "closed" : "kept open");
        rl = snprintf(req2, sizeof req2,
                      "POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "%x\r\n{\"name\":\"smuggler\",\"password\":\"" BX_PASSWORD "\"}\r\n0\r\n\r\n",
                      (unsigned)strlen("{\"name\":\"smuggler\",\"password\":\"" BX_PASSWORD "\"}"));
        st = read_all(ports[p], req2, (size_t)rl, &closed, head, sizeof head);
        cr_assert(st == 400 || st == 0 || closed,
                  "Content-Length and Transfer-Encoding: chunked together on POST /api/v1/users to %s: expected 400, "
                  "or the answer and the connection closed (RFC 9112 6.1), got %ld with the connection kept open",
                  where[p], st);
        expect_alive("conflicting lengths");
    }
    /* everything still works */
    bx_expect(req("POST", "/api/v1/users/me/balance/charge", at, NULL, "{\"amount\":100}"), 200, NULL);
    cr_assert_eq(bx_balance(&C, at), 100);
    bx_user(&C, "after-big", NULL);
}

/* slowloris: sockets that send a header line a second and never finish */
Test(security, slow_clients_are_cut_after_the_request_timeout_without_starving_others)
{
    enum { SLOW = 200, SLOW_BODY = 20 };
    START();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    const char *at = bx_user(&C, "patient", NULL);
    /* straight at boxoffice (instance A in scale-out: nginx's own client timeouts are nginx's) */
    int port = srv.inst[0].port;
    int fds[SLOW + SLOW_BODY];
    int64_t t0 = bx_now_ms();
    for (int i = 0; i < SLOW + SLOW_BODY; i++) {
        fds[i] = bx_raw_connect(port);
        cr_assert(fds[i] >= 0, "connect %d: %s", i, strerror(errno));
        const char *start = i < SLOW ? "GET /api/v1/concerts HTTP/1.1\r\nHost: x\r\n"
                                     : "POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{";
        cr_assert(send(fds[i], start, strlen(start), MSG_NOSIGNAL) > 0);
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
    }
    /* meanwhile ordinary clients, through the normal entry (nginx in scale-out) */
    int normal = 0, normal_ok = 0;
    int64_t worst = 0;
    bool closed[SLOW + SLOW_BODY];
    memset(closed, 0, sizeof closed);
    int64_t closed_at[SLOW + SLOW_BODY];
    int nclosed = 0;
    int64_t last_trickle = 0;
    while (bx_now_ms() - t0 < 12500 && nclosed < SLOW + SLOW_BODY) {
        if (bx_now_ms() - last_trickle >= 1000) {
            last_trickle = bx_now_ms();
            for (int i = 0; i < SLOW + SLOW_BODY; i++) {
                if (closed[i])
                    continue;
                const char *more = i < SLOW ? "X-Slow: 1\r\n" : " ";
                if (send(fds[i], more, strlen(more), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN) {
                    closed[i] = true;
                    closed_at[i] = bx_now_ms() - t0;
                    nclosed++;
                }
            }
        }
        for (int i = 0; i < SLOW + SLOW_BODY; i++) {
            if (closed[i])
                continue;
            char buf[512];
            ssize_t n = recv(fds[i], buf, sizeof buf, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) || n > 0) {
                closed[i] = true; /* an answer (408) or the close */
                closed_at[i] = bx_now_ms() - t0;
                nclosed++;
            }
        }
        if (bx_now_ms() - t0 < 9000) {
            int64_t s = bx_now_ms();
            struct bx_resp *r = bx_http(&C, "GET", "/api/v1/users/me/balance", &(struct bx_req){.bearer = at});
            int64_t ms = bx_now_ms() - s;
            normal++;
            normal_ok += r->status == 200;
            worst = ms > worst ? ms : worst;
            bx_sleep_ms(5);
        } else {
            bx_sleep_ms(50);
        }
    }
    int early = 0;
    int64_t first_close = -1, last_close = 0;
    for (int i = 0; i < SLOW + SLOW_BODY; i++) {
        if (closed[i]) {
            early += closed_at[i] < 9000;
            first_close = first_close < 0 || closed_at[i] < first_close ? closed_at[i] : first_close;
            last_close = closed_at[i] > last_close ? closed_at[i] : last_close;
        }
        close(fds[i]);
    }
    printf("figure: slowloris [%s]: %d sockets trickling headers + %d trickling a body, straight to boxoffice; "
           "meanwhile %d ordinary requests%s: %d OK, slowest %lld ms; the slow sockets were cut %lld-%lld ms after "
           "they opened (%d of %d by 12.5 s)\n",
           bx_server_mode_name(&srv), SLOW, SLOW_BODY, normal, bx_scaleout(&srv) ? " through nginx" : "", normal_ok,
           (long long)worst, (long long)first_close, (long long)last_close, nclosed, SLOW + SLOW_BODY);
    fflush(stdout);
    cr_assert_eq(normal_ok, normal, "%d of %d ordinary requests failed while slow clients hung on", normal - normal_ok,
                 normal);
    cr_assert(worst < 1000, "an ordinary request took %lld ms beside the slow clients", (long long)worst);
    cr_assert_eq(nclosed, SLOW + SLOW_BODY, "%d slow sockets still open 12.5 s later", SLOW + SLOW_BODY - nclosed);
    cr_assert_eq(early, 0, "%d slow sockets were cut before 9 s", early);
    expect_alive("slowloris");
}
