/* test_restart.c — what survives a server restart on the same database: the
 * waiting room (ACTIVE tokens, WAITING order and tokens), holds, and payments —
 * after a graceful SIGTERM and after a crash (SIGKILL). */
#include "harness.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static struct bx_server srv;
static struct bx_client C;

static void teardown(void)
{
    bx_client_release(&C);
    bx_server_cleanup(&srv);
}

TestSuite(restart, .fini = teardown, .timeout = 120);

#define START(...)                                                                                                     \
    do {                                                                                                               \
        BX_START(&srv, ##__VA_ARGS__);                                                                                 \
        bx_client_init(&C, &srv);                                                                                      \
    } while (0)

struct buyer {
    const char *at, *qt;
};

static struct bx_resp *status_of(const struct buyer *b)
{
    return bx_http(&C, "GET", "/api/v1/queue/status", &(struct bx_req){.bearer = b->at, .queue_token = b->qt});
}

static void expect_waiting(const struct buyer *b, int position)
{
    struct bx_resp *r = status_of(b);
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "status"), "WAITING", "%s", r->body);
    cr_assert_eq(bx_jint(r->json, "position"), position, "expected position %d: %s", position, r->body);
    cr_assert_str_eq(bx_jstr(r->json, "token"), b->qt, "%s", r->body);
}

static void expect_graceful_stop(void)
{
    bx_client_reset(&C); /* close our keep-alive connection first */
    int st = bx_server_stop(&srv);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        bx_server_log_tail(&srv, 25);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIGTERM should stop boxoffice with exit 0, got %s %d",
              WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

Test(restart, queue_places_and_holds_survive_a_restart)
{
    START("--active-max", "1");
    const char *names[4] = {"ann", "ben", "cat", "dan"};
    struct buyer u[4];
    for (int i = 0; i < 4; i++)
        u[i].at = bx_user(&C, names[i], NULL);
    int64_t cid = bx_admin_concert(&C, "Restart");
    int64_t sid = bx_admin_schedule(&C, cid, 50, 50000);

    char st[16];
    u[0].qt = bx_queue_issue(&C, u[0].at, cid, st, sizeof st);
    cr_assert_str_eq(st, "ACTIVE");
    for (int i = 1; i < 4; i++) {
        u[i].qt = bx_queue_issue(&C, u[i].at, cid, st, sizeof st);
        cr_assert_str_eq(st, "WAITING", "%s should wait behind ann", names[i]);
    }
    for (int i = 1; i < 4; i++)
        expect_waiting(&u[i], i);
    int64_t rid = bx_hold(&C, u[0].at, u[0].qt, sid, 10);

    expect_graceful_stop();
    bx_server_relaunch(&srv);

    /* ann is still admitted and still holds seat 10 */
    struct bx_resp *r = status_of(&u[0]);
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "status"), "ACTIVE", "%s", r->body);
    int navail;
    cr_assert(!bx_seat_available(&C, u[0].at, u[0].qt, sid, 10, &navail), "held seat 10 free after restart");
    cr_assert_eq(navail, 49);
    r = bx_http(&C, "GET", bx_str(&C, "/api/v1/reservations/%lld", (long long)rid),
                &(struct bx_req){.bearer = u[0].at});
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "status"), "HELD", "%s", r->body);
    cr_assert_eq(bx_jint(r->json, "seatNo"), 10);

    /* the line is the same: same tokens, same order; re-issuing does not jump it */
    for (int i = 1; i < 4; i++)
        expect_waiting(&u[i], i);
    cr_assert_str_eq(bx_queue_issue(&C, u[2].at, cid, st, sizeof st), u[2].qt,
                     "re-issue after restart gave a new token");
    cr_assert_str_eq(st, "WAITING");
    expect_waiting(&u[2], 2);
    /* a newcomer after the restart queues behind everyone who was there before */
    struct buyer eve = {.at = bx_user(&C, "eve", NULL)};
    eve.qt = bx_queue_issue(&C, eve.at, cid, st, sizeof st);
    cr_assert_str_eq(st, "WAITING");
    expect_waiting(&eve, 4);

    /* ann leaves: ben is admitted, the others move up */
    bx_expect(bx_http(&C, "DELETE", "/api/v1/queue/tokens/current",
                      &(struct bx_req){.bearer = u[0].at, .queue_token = u[0].qt}),
              204, NULL);
    bx_wait_active(&C, u[1].at, u[1].qt, 5000);
    expect_waiting(&u[2], 1);
    expect_waiting(&u[3], 2);
    expect_waiting(&eve, 3);

    /* ann's hold outlives her queue token; ben sees seat 10 taken */
    cr_assert(!bx_seat_available(&C, u[1].at, u[1].qt, sid, 10, NULL));
    r = bx_http_json(&C, "POST", "/api/v1/reservations", &(struct bx_req){.bearer = u[1].at, .queue_token = u[1].qt},
                     json_pack("{s:I,s:i}", "scheduleId", (json_int_t)sid, "seatNo", 10));
    bx_expect(r, 409, "SEAT_UNAVAILABLE");

    char *out = NULL;
    int rc = bx_audit(&srv, &out);
    cr_assert_eq(rc, 0, "audit exit %d:\n%s", rc, out);
    free(out);
}

Test(restart, access_tokens_and_balances_survive_a_restart)
{
    START();
    const char *at = bx_user(&C, "eli", NULL);
    bx_charge(&C, at, 777);
    expect_graceful_stop();
    bx_server_relaunch(&srv);
    /* the generated secret is stored in the database: the old access token still works */
    cr_assert_eq(bx_balance(&C, at), 777);
    /* and the user can log in again */
    bx_expect(bx_http_json(&C, "POST", "/api/v1/sessions", NULL,
                           json_pack("{s:s,s:s}", "name", "eli", "password", BX_PASSWORD)),
              200, NULL);
}

Test(restart, a_paid_answer_survives_a_crash)
{
    START();
    const char *at = bx_user(&C, "fay", NULL);
    int64_t cid = bx_admin_concert(&C, "Crash");
    int64_t sid = bx_admin_schedule(&C, cid, 50, 50000);
    const char *qt = bx_queue_active(&C, at, cid);
    int64_t rid = bx_hold(&C, at, qt, sid, 1);
    bx_charge(&C, at, 80000);
    struct bx_resp *p = bx_pay(&C, at, qt, rid);
    int64_t pid = bx_jint(p->json, "paymentId");

    bx_client_reset(&C);
    bx_server_kill(&srv); /* no chance to flush anything */
    bx_server_relaunch(&srv);

    struct bx_resp *r =
        bx_http(&C, "GET", bx_str(&C, "/api/v1/reservations/%lld", (long long)rid), &(struct bx_req){.bearer = at});
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(bx_jstr(r->json, "status"), "CONFIRMED", "%s", r->body);
    cr_assert_eq(bx_balance(&C, at), 30000);
    r = bx_http(&C, "GET", "/api/v1/users/me/payments", &(struct bx_req){.bearer = at});
    bx_expect(r, 200, NULL);
    cr_assert_eq(json_array_size(json_object_get(r->json, "payments")), 1, "%s", r->body);
    cr_assert_eq(bx_jint(json_array_get(json_object_get(r->json, "payments"), 0), "paymentId"), pid);

    /* the seat is still sold */
    const char *bt = bx_user(&C, "gus", NULL);
    const char *bq = bx_queue_active(&C, bt, cid);
    cr_assert(!bx_seat_available(&C, bt, bq, sid, 1, NULL), "sold seat free after a crash");

    char *out = NULL;
    int rc = bx_audit(&srv, &out);
    cr_assert_eq(rc, 0, "audit exit %d:\n%s", rc, out);
    free(out);
}

/* ------------------------------------------------------------ SIGTERM */

Test(restart, sigterm_with_an_idle_keep_alive_connection_exits_0)
{
    START();
    /* a browser or a proxy keeps its connection open after an answer */
    bx_expect(bx_http(&C, "GET", "/healthz", NULL), 200, NULL);
    int st = bx_server_stop(&srv);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        bx_server_log_tail(&srv, 5);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "SIGTERM with one idle keep-alive connection open should exit 0, got %s %d",
              WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

struct charger {
    const char *at;
    int idx;
    volatile bool *stop;
    int acked;        /* charges answered 200 */
    char pending[64]; /* key of the charge whose answer never came ("" if none) */
    long last_status;
};

static void *charger_main(void *arg)
{
    struct charger *g = arg;
    struct bx_client c;
    bx_client_init(&c, &srv);
    for (int i = 0; !*g->stop || i == 0; i++) {
        char key[64];
        snprintf(key, sizeof key, "sigterm-%d-%d", g->idx, i);
        struct bx_resp *r =
            bx_http_json(&c, "POST", "/api/v1/users/me/balance/charge",
                         &(struct bx_req){.bearer = g->at, .idem_key = key}, json_pack("{s:i}", "amount", 100));
        g->last_status = r->status;
        if (r->status != 200) {
            snprintf(g->pending, sizeof g->pending, "%s", key);
            break;
        }
        g->acked++;
    }
    bx_client_release(&c);
    return NULL;
}

Test(restart, charges_in_flight_at_sigterm_are_done_or_safely_retried)
{
    START();
    const char *at = bx_user(&C, "busy", NULL);
    enum { N = 16 };
    struct charger g[N];
    pthread_t th[N];
    volatile bool stop = false;
    for (int i = 0; i < N; i++) {
        g[i] = (struct charger){.at = at, .idx = i, .stop = &stop};
        cr_assert_eq(pthread_create(&th[i], NULL, charger_main, &g[i]), 0);
    }
    bx_sleep_ms(300);
    int st = bx_server_stop(&srv); /* SIGTERM while charges are in flight */
    stop = true;
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        bx_server_log_tail(&srv, 25);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIGTERM under load should exit 0, got %s %d",
              WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));

    bx_client_reset(&C);
    bx_server_relaunch(&srv);
    int acked = 0, retried = 0;
    for (int i = 0; i < N; i++) {
        acked += g[i].acked;
        if (g[i].pending[0] == '\0')
            continue;
        /* the client never saw an answer: it retries with the same key */
        struct bx_resp *r =
            bx_http_json(&C, "POST", "/api/v1/users/me/balance/charge",
                         &(struct bx_req){.bearer = at, .idem_key = g[i].pending}, json_pack("{s:i}", "amount", 100));
        bx_expect(r, 200, NULL);
        retried++;
    }
    int64_t bal = bx_balance(&C, at);
    printf("charges at SIGTERM: %d acknowledged before the stop, %d retried after the restart, balance %lld [%s]\n",
           acked, retried, (long long)bal, bx_server_mode_name(&srv));
    fflush(stdout);
    cr_assert(acked > 0, "no charge went through before the stop");
    cr_assert_eq(bal, 100 * (int64_t)(acked + retried),
                 "balance %lld: every acknowledged or retried charge must count exactly once (%d + %d)", (long long)bal,
                 acked, retried);
    char *out = NULL;
    int rc = bx_audit(&srv, &out);
    cr_assert_eq(rc, 0, "audit exit %d:\n%s", rc, out);
    free(out);
}
