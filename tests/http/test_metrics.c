/* test_metrics.c — what GET /metrics counts, over real HTTP: a sale is counted
 * once however often its answer is replayed, and the measured admission rate
 * falls once admissions stop instead of freezing at its last value.
 * Counters are per process (in scale-out each instance is read directly and the
 * figures summed, as Prometheus would); the waiting room's figures are the
 * whole room's, read from one instance. */
#define _GNU_SOURCE
#include "harness.h"

#include <criterion/criterion.h>
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

TestSuite(metrics, .fini = teardown, .timeout = 120);

#define START(...)                                                                                                     \
    do {                                                                                                               \
        BX_START(&srv, ##__VA_ARGS__);                                                                                 \
        bx_client_init(&C, &srv);                                                                                      \
    } while (0)

/* The value of the sample whose line starts with `series` followed by a space,
 * in the /metrics of instance i; -1 when absent. */
static double sample_of(int i, const char *series)
{
    struct bx_client direct;
    bx_client_init_instance(&direct, &srv, i);
    struct bx_resp *m = bx_http(&direct, "GET", "/metrics", NULL);
    cr_assert_eq(m->status, 200, "GET /metrics of instance %d: %ld %s", i, m->status, m->error);
    double v = -1;
    size_t n = strlen(series);
    for (const char *p = m->body; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            v = strtod(p + n + 1, NULL);
            break;
        }
    bx_client_release(&direct);
    return v;
}

/* The sum over every instance (absent counts as 0). */
static double summed(const char *series)
{
    double total = 0;
    for (int i = 0; i < srv.ninst; i++) {
        double v = sample_of(i, series);
        total += v > 0 ? v : 0;
    }
    return total;
}

Test(metrics, a_payment_replayed_five_times_counts_one_sale)
{
    START();
    int64_t cid = bx_admin_concert(&C, "Replays");
    int64_t sid = bx_admin_schedule(&C, cid, 10, 1000);
    const char *at = bx_user(&C, "replayer", NULL);
    bx_charge(&C, at, 5000);
    const char *qt = bx_queue_active(&C, at, cid);
    int64_t rid = bx_hold(&C, at, qt, sid, 3);
    double sold0 = summed("boxoffice_seats_sold_total"), ok0 = summed("boxoffice_payments_total{outcome=\"OK\"}");

    const char *body = bx_str(&C, "{\"reservationId\":%lld}", (long long)rid);
    struct bx_req rq = {.bearer = at, .queue_token = qt, .idem_key = "pay-once", .body = body};
    struct bx_resp *first = bx_http(&C, "POST", "/api/v1/payments", &rq);
    bx_expect(first, 201, NULL);
    for (int i = 0; i < 5; i++) {
        struct bx_resp *again = bx_http(&C, "POST", "/api/v1/payments", &rq);
        bx_expect(again, 201, NULL);
        cr_assert_eq(bx_jint(again->json, "paymentId"), bx_jint(first->json, "paymentId"), "replay %d: %s", i,
                     again->body);
    }

    double sold = summed("boxoffice_seats_sold_total") - sold0;
    double ok = summed("boxoffice_payments_total{outcome=\"OK\"}") - ok0;
    double replays = summed("boxoffice_payments_total{outcome=\"REPLAY\"}");
    cr_assert_eq(sold, 1, "1 payment + 5 replays: boxoffice_seats_sold_total rose by %g", sold);
    cr_assert_eq(ok, 1, "1 payment + 5 replays: payments_total{outcome=\"OK\"} rose by %g", ok);
    cr_assert_eq(replays, 5, "payments_total{outcome=\"REPLAY\"} is %g, 5 replays were answered", replays);
    /* the whole-database gauge agrees */
    cr_assert_eq(sample_of(0, "boxoffice_seats_sold"), 1, "boxoffice_seats_sold (whole database) is not 1");
    printf("figure: metrics [%s]: 1 payment + 5 replays -> seats_sold_total +%g, payments OK +%g, REPLAY %g\n",
           bx_server_mode_name(&srv), sold, ok, replays);
    fflush(stdout);
}

Test(metrics, the_admission_rate_falls_once_admissions_stop)
{
    enum { USERS = 8 };
    START();
    int64_t cid = bx_admin_concert(&C, "Quiet after the rush");
    for (int i = 0; i < USERS; i++) {
        const char *at = bx_user(&C, bx_str(&C, "rush-%d", i), NULL);
        char status[16];
        bx_queue_issue(&C, at, cid, status, sizeof status);
        cr_assert_str_eq(status, "ACTIVE", "user %d not admitted at once", i);
    }
    const char *series = bx_str(&C, "boxoffice_queue_admission_rate{concert=\"%lld\"}", (long long)cid);
    const char *total = bx_str(&C, "boxoffice_queue_admitted_total{concert=\"%lld\"}", (long long)cid);
    /* the housekeeping tick (100 ms) measures the admissions */
    double r0 = -1;
    for (int i = 0; i < 50 && r0 <= 0; i++) {
        bx_sleep_ms(100);
        r0 = sample_of(0, series);
    }
    cr_assert_gt(r0, 0, "no admission rate measured after %d admissions", USERS);
    cr_assert_eq(sample_of(0, total), USERS);
    int64_t t0 = bx_now_ms();
    bx_sleep_ms(3000);
    double r1 = sample_of(0, series);
    int64_t t1 = bx_now_ms();
    bx_sleep_ms(3000);
    double r2 = sample_of(0, series);
    int64_t t2 = bx_now_ms();
    cr_assert_eq(sample_of(0, total), USERS, "admissions after the rush");
    /* a 10 s moving average with nothing admitted: at most e^(-3/10) = 0.74 of it
     * after 3 s (0.001 for the 3-decimal rendering) */
    cr_assert_leq(r1, r0 * 0.8 + 0.001, "%.3f/s %lld ms after the last admission (was %.3f/s): frozen", r1,
                  (long long)(t1 - t0), r0);
    cr_assert_leq(r2, r1 * 0.8 + 0.001, "%.3f/s %lld ms after the last admission (was %.3f/s): frozen", r2,
                  (long long)(t2 - t0), r1);
    printf("figure: metrics [%s]: admission rate %.3f/s after %d admissions, %.3f/s %.1f s later, %.3f/s %.1f s "
           "later\n",
           bx_server_mode_name(&srv), r0, USERS, r1, (double)(t1 - t0) / 1000, r2, (double)(t2 - t0) / 1000);
    fflush(stdout);
}

/* Every instance reports the whole waiting room's and the whole database's
 * figures: summed over N instances they read N times too high. The dashboard
 * aggregates them with max (per-process counters, and only those, are summed). */
Test(metrics, the_dashboard_never_sums_figures_every_instance_reports_for_the_whole_cluster)
{
    static const char *const whole[] = {"boxoffice_queue_waiting",        "boxoffice_queue_active",
                                        "boxoffice_queue_admitted_total", "boxoffice_queue_admission_rate",
                                        "boxoffice_holds_live",           "boxoffice_seats_sold"};
    json_error_t err;
    json_t *d = json_load_file(BX_SOURCE_ROOT "/deploy/grafana-dashboard.json", 0, &err);
    cr_assert_not_null(d, "deploy/grafana-dashboard.json: %s (line %d)", err.text, err.line);
    size_t i, k, checked = 0;
    json_t *panel, *target;
    json_array_foreach(json_object_get(d, "panels"), i, panel)
    {
        json_array_foreach(json_object_get(panel, "targets"), k, target)
        {
            const char *expr = bx_jstr(target, "expr");
            for (size_t w = 0; w < sizeof whole / sizeof whole[0]; w++) {
                const char *at = strstr(expr, whole[w]);
                size_t n = strlen(whole[w]);
                /* the whole name: boxoffice_seats_sold, not boxoffice_seats_sold_total */
                while (at != NULL && (at[n] == '_' || (at[n] >= 'a' && at[n] <= 'z')))
                    at = strstr(at + 1, whole[w]);
                if (at == NULL)
                    continue;
                checked++;
                cr_assert(strstr(expr, "sum") == NULL && strstr(expr, "max") != NULL,
                          "panel \"%s\": %s adds up %s, which every instance reports for the whole cluster: use max",
                          bx_jstr(panel, "title"), expr, whole[w]);
            }
        }
    }
    cr_assert_geq(checked, 5, "only %zu dashboard queries read the whole-cluster figures", checked);
    json_decref(d);
}
