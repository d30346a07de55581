/* test_queue.c — unit tests of the waiting room (SPEC §4): domain/queue_rules.c and
 * the embedded backend queue/waitroom_mem.c, driven through struct waitroom_ops with
 * explicit clocks. No server, no SQLite: persistence goes to a fake store below. */
#include "domain/queue_rules.h"
#include "queue/waitroom.h"

#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---- */

static struct waitroom_config config(int64_t active_max)
{
    return (struct waitroom_config){
        .active_max = active_max, .admit_rate = 0, .waiting_idle_ms = 120000, .active_idle_ms = 300000};
}

static struct waitroom *open_room(const struct waitroom_config *cfg, struct store *persist)
{
    char err[256] = "";
    struct waitroom *w = waitroom_mem_open(cfg, persist, 0, err, sizeof err);
    cr_assert_not_null(w, "waitroom_mem_open: %s", err);
    return w;
}

static struct queue_ticket issue(struct waitroom *w, int64_t user, int64_t concert, int64_t now)
{
    struct queue_ticket t;
    bool created = false;
    bx_err e = w->ops->issue(w, user, concert, now, &t, &created);
    cr_assert_eq(e, BX_OK, "issue(user %lld) = %d", (long long)user, e);
    return t;
}

static struct queue_ticket status_ok(struct waitroom *w, const struct queue_ticket *t, int64_t now)
{
    struct queue_ticket out;
    bx_err e = w->ops->status(w, t->token, t->user_id, now, &out);
    cr_assert_eq(e, BX_OK, "status(user %lld) = %d", (long long)t->user_id, e);
    return out;
}

static bx_err status_err(struct waitroom *w, const char *token, int64_t user, int64_t now)
{
    struct queue_ticket out;
    return w->ops->status(w, token, user, now, &out);
}

static void assert_active(struct waitroom *w, const struct queue_ticket *t, int64_t now)
{
    struct queue_ticket s = status_ok(w, t, now);
    cr_assert_eq(s.status, QUEUE_ACTIVE, "user %lld should be ACTIVE", (long long)t->user_id);
    cr_assert_eq(s.position, 0);
    cr_assert_eq(s.eta_seconds, 0);
}

static void assert_position(struct waitroom *w, const struct queue_ticket *t, int64_t now, int64_t pos)
{
    struct queue_ticket s = status_ok(w, t, now);
    cr_assert_eq(s.status, QUEUE_WAITING, "user %lld should be WAITING", (long long)t->user_id);
    cr_assert_eq(s.position, pos, "user %lld: position %lld, expected %lld", (long long)t->user_id,
                 (long long)s.position, (long long)pos);
}

static struct waitroom_concert_stats stats_of(struct waitroom *w, int64_t concert)
{
    struct waitroom_concert_stats st[16];
    size_t n = 0;
    cr_assert_eq(w->ops->stats(w, st, 16, &n), BX_OK);
    for (size_t i = 0; i < n; i++)
        if (st[i].concert_id == concert)
            return st[i];
    cr_assert_fail("no stats for concert %lld", (long long)concert);
    return st[0];
}

/* ---- a fake store: only the queue calls, records in an array ---- */

struct fake_store {
    struct store base;
    struct queue_record *rec;
    size_t n, cap;
    int fail_saves; /* queue_save answers UNAVAILABLE while set */
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

static void fake_close(struct store *s) { ((struct fake_store *)s)->closes++; }

static const struct store_ops fake_ops = {
    .name = "fake", .close = fake_close, .queue_save = fake_save, .queue_load = fake_load, .queue_find = fake_find};

static const struct queue_record *fake_get(const struct fake_store *f, const char *token)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->rec[i].token, token) == 0)
            return &f->rec[i];
    return NULL;
}

/* ---- queue_rules.c ---- */

Test(queue_rules, eta_divides_position_by_the_measured_rate)
{
    struct waitroom_config c = config(1000);
    cr_assert_eq(queue_eta_seconds(100, 2.0, &c), 50);
    cr_assert_eq(queue_eta_seconds(3, 2.0, &c), 2, "rounded up");
    cr_assert_eq(queue_eta_seconds(0, 2.0, &c), 0);
    cr_assert_eq(queue_eta_seconds(-5, 2.0, &c), 0);
}

Test(queue_rules, eta_falls_back_to_admit_rate_then_to_slot_turnover)
{
    struct waitroom_config c = config(1000); /* 1000 slots per 300 s = 3.33/s */
    cr_assert_eq(queue_eta_seconds(100, 0, &c), 30);
    cr_assert_eq(queue_eta_seconds(100, NAN, &c), 30);
    c.admit_rate = 5;
    cr_assert_eq(queue_eta_seconds(100, 0, &c), 20);
    cr_assert_eq(queue_eta_seconds(100, -1, &c), 20);
    cr_assert_eq(queue_eta_seconds(100, 4, &c), 25, "a measurement beats the configuration");
}

Test(queue_rules, eta_saturates_instead_of_overflowing)
{
    struct waitroom_config c = config(1000);
    cr_assert_eq(queue_eta_seconds(INT64_MAX, 1e-300, &c), INT64_MAX);
    cr_assert_eq(queue_eta_seconds(INT64_MAX, INFINITY, &c), queue_eta_seconds(INT64_MAX, 0, &c),
                 "an infinite measurement counts as none");
    cr_assert_gt(queue_eta_seconds(INT64_MAX, 0, &c), 0);
    c.active_max = 0;
    cr_assert_eq(queue_eta_seconds(1, 0, &c), INT64_MAX, "nobody can ever be admitted");
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
    double r = queue_rate_update(0, 100, 1000); /* 100/s for 1 s: weight 1 - e^-0.1 */
    cr_assert_float_eq(r, 100 * (1 - exp(-0.1)), 1e-9);
    r = 0;
    for (int i = 0; i < 600; i++)
        r = queue_rate_update(r, 1, 100); /* 10/s in 100 ms steps for a minute */
    cr_assert_float_eq(r, 10.0, 0.05);
    double once = queue_rate_update(0, 10, 1000), tenfold = 0;
    for (int i = 0; i < 10; i++)
        tenfold = queue_rate_update(tenfold, 1, 100);
    cr_assert_float_eq(once, tenfold, 1e-9, "same answer however often it is updated");
    cr_assert_float_eq(queue_rate_update(7.5, 3, 0), 7.5, 1e-12, "no elapsed time, nothing measured");
    cr_assert(queue_rate_update(NAN, -4, 1000) == 0);
    cr_assert(queue_rate_update(5, 0, INT64_MAX) >= 0);
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

/* ---- waitroom_mem.c ---- */

Test(waitroom, admission_is_strictly_fifo_in_issue_order)
{
    struct waitroom_config c = config(2);
    struct waitroom *w = open_room(&c, NULL);
    struct queue_ticket t[5];
    for (int i = 0; i < 5; i++)
        t[i] = issue(w, 100 + i, 7, i);
    cr_assert_eq(t[0].status, QUEUE_ACTIVE, "free slot and nobody ahead: active at once");
    cr_assert_eq(t[1].status, QUEUE_ACTIVE);
    for (int i = 2; i < 5; i++) {
        cr_assert_eq(t[i].status, QUEUE_WAITING);
        cr_assert_eq(t[i].position, i - 1);
    }
    cr_assert_eq(w->ops->complete(w, t[0].token, t[0].user_id, 10), BX_OK);
    assert_active(w, &t[2], 11);
    assert_position(w, &t[3], 11, 1);
    assert_position(w, &t[4], 11, 2);
    cr_assert_eq(w->ops->leave(w, t[1].token, t[1].user_id, 12), BX_OK);
    assert_active(w, &t[3], 13);
    assert_position(w, &t[4], 13, 1);
    cr_assert_eq(w->ops->complete(w, t[2].token, t[2].user_id, 14), BX_OK);
    assert_active(w, &t[4], 15);
    struct waitroom_concert_stats st = stats_of(w, 7);
    cr_assert_eq(st.waiting, 0);
    cr_assert_eq(st.active, 2);
    cr_assert_eq(st.admitted_total, 5);
    w->ops->close(w);
}

Test(waitroom, reissue_returns_the_same_live_token)
{
    struct waitroom_config c = config(1);
    struct waitroom *w = open_room(&c, NULL);
    struct queue_ticket a, b, again, other;
    bool created;
    cr_assert_eq(w->ops->issue(w, 1, 7, 0, &a, &created), BX_OK);
    cr_assert(created);
    cr_assert_eq(strlen(a.token), BX_QUEUE_TOKEN_LEN);
    cr_assert_eq(w->ops->issue(w, 2, 7, 0, &b, &created), BX_OK);
    cr_assert_eq(w->ops->issue(w, 2, 7, 5, &again, &created), BX_OK);
    cr_assert_not(created);
    cr_assert_str_eq(again.token, b.token);
    cr_assert_eq(again.status, QUEUE_WAITING);
    cr_assert_eq(again.position, 1, "no line-jumping, no duplicate");
    cr_assert_eq(w->ops->issue(w, 2, 8, 5, &other, &created), BX_OK);
    cr_assert(created, "another concert is another queue");
    cr_assert_str_neq(other.token, b.token);
    cr_assert_eq(other.status, QUEUE_ACTIVE);
    cr_assert_eq(stats_of(w, 7).waiting, 1);
    w->ops->close(w);
}

Test(waitroom, positions_shrink_as_tokens_ahead_leave_expire_or_are_admitted)
{
    struct waitroom_config c = config(1);
    c.waiting_idle_ms = 10000;
    struct waitroom *w = open_room(&c, NULL);
    struct queue_ticket t[12];
    for (int i = 0; i < 12; i++)
        t[i] = issue(w, 1 + i, 3, 0);
    /* t[0] ACTIVE, t[1..11] WAITING at positions 1..11 */
    assert_position(w, &t[6], 5000, 6);
    cr_assert_eq(w->ops->leave(w, t[2].token, t[2].user_id, 5000), BX_OK);
    cr_assert_eq(w->ops->leave(w, t[4].token, t[4].user_id, 5000), BX_OK);
    assert_position(w, &t[6], 5000, 4);
    cr_assert_eq(w->ops->leave(w, t[9].token, t[9].user_id, 5000), BX_OK);
    assert_position(w, &t[6], 5000, 4); /* leaving behind changes nothing */
    /* keep everybody but t[3] and t[5] alive, then let the idle clock run */
    int keep[] = {0, 1, 6, 7, 8, 10, 11};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        (void)status_ok(w, &t[keep[i]], 9000);
    cr_assert_eq(w->ops->tick(w, 10000), BX_OK);
    cr_assert_eq(status_err(w, t[3].token, t[3].user_id, 10001), BX_ERR_TOKEN_EXPIRED);
    cr_assert_eq(status_err(w, t[5].token, t[5].user_id, 10001), BX_ERR_TOKEN_EXPIRED);
    assert_position(w, &t[1], 10001, 1);
    assert_position(w, &t[6], 10001, 2);
    assert_position(w, &t[7], 10001, 3);
    assert_position(w, &t[11], 10001, 6);
    cr_assert_eq(w->ops->complete(w, t[0].token, t[0].user_id, 10002), BX_OK);
    assert_active(w, &t[1], 10003);
    assert_position(w, &t[6], 10003, 1);
    assert_position(w, &t[11], 10003, 5);
    w->ops->close(w);
}

Test(waitroom, idle_waiting_token_expires_and_its_user_reissues_at_the_back)
{
    struct waitroom_config c = config(1);
    c.waiting_idle_ms = 10000;
    struct waitroom *w = open_room(&c, NULL);
    struct queue_ticket a = issue(w, 1, 5, 0), b = issue(w, 2, 5, 0), d = issue(w, 3, 5, 0);
    cr_assert_eq(a.status, QUEUE_ACTIVE);
    (void)status_ok(w, &d, 9000); /* d polls, b does not */
    cr_assert_eq(w->ops->tick(w, 9999), BX_OK);
    cr_assert_eq(stats_of(w, 5).waiting, 2, "not yet idle for 10 s");
    cr_assert_eq(w->ops->tick(w, 10000), BX_OK);
    cr_assert_eq(status_err(w, b.token, 2, 10001), BX_ERR_TOKEN_EXPIRED);
    assert_position(w, &d, 10001, 1);
    bool created;
    struct queue_ticket b2;
    cr_assert_eq(w->ops->issue(w, 2, 5, 10002, &b2, &created), BX_OK);
    cr_assert(created);
    cr_assert_str_neq(b2.token, b.token);
    cr_assert_eq(b2.position, 2, "a new token goes to the back of the line");
    cr_assert_eq(w->ops->leave(w, b.token, 2, 10003), BX_ERR_TOKEN_EXPIRED);
    w->ops->close(w);
}

Test(waitroom, idle_active_token_expires_and_the_next_one_is_admitted)
{
    struct waitroom_config c = config(1);
    c.active_idle_ms = 5000;
    struct waitroom *w = open_room(&c, NULL);
    struct queue_ticket a = issue(w, 1, 5, 0), b = issue(w, 2, 5, 0);
    cr_assert_eq(w->ops->require_active(w, a.token, 1, 5, 4000), BX_OK, "a request keeps it alive");
    cr_assert_eq(w->ops->tick(w, 8999), BX_OK);
    assert_active(w, &a, 8999);
    assert_position(w, &b, 8999, 1);
    cr_assert_eq(w->ops->tick(w, 14000), BX_OK);
    cr_assert_eq(status_err(w, a.token, 1, 14000), BX_ERR_TOKEN_EXPIRED);
    cr_assert_eq(w->ops->require_active(w, a.token, 1, 5, 14000), BX_ERR_TOKEN_EXPIRED);
    assert_active(w, &b, 14000);
    struct waitroom_concert_stats st = stats_of(w, 5);
    cr_assert_eq(st.active, 1);
    cr_assert_eq(st.waiting, 0);
    cr_assert_eq(st.admitted_total, 2);
    w->ops->close(w);
}

Test(waitroom, admit_rate_limits_admissions_per_tick_interval)
{
    struct waitroom_config c = config(1000);
    c.admit_rate = 10;
    struct waitroom *w = open_room(&c, NULL);
    struct queue_ticket t[50];
    for (int i = 0; i < 50; i++)
        t[i] = issue(w, 1 + i, 9, 0);
    cr_assert_eq(stats_of(w, 9).active, 10, "the bucket starts full: one second's worth");
    cr_assert_eq(t[9].status, QUEUE_ACTIVE);
    cr_assert_eq(t[10].position, 1);
    cr_assert_eq(w->ops->tick(w, 100), BX_OK);
    cr_assert_eq(stats_of(w, 9).active, 11);
    cr_assert_eq(w->ops->tick(w, 1100), BX_OK);
    cr_assert_eq(stats_of(w, 9).active, 21);
    for (int i = 21; i < 50; i++)
        (void)status_ok(w, &t[i], 100000); /* stay alive */
    cr_assert_eq(w->ops->tick(w, 100000), BX_OK);
    cr_assert_eq(stats_of(w, 9).active, 31, "an idle bucket holds no more than admit_rate");
    assert_active(w, &t[30], 100000);
    assert_position(w, &t[31], 100000, 1);
    w->ops->close(w);
}

Test(waitroom, eta_comes_from_the_measured_admission_rate)
{
    struct waitroom_config c = config(1);
    struct waitroom *w = open_room(&c, NULL);
    struct queue_ticket a = issue(w, 1, 4, 0), b = issue(w, 2, 4, 0), d = issue(w, 3, 4, 0);
    (void)b;
    /* nothing measured yet: 1 slot per 300 s, position 2 → 600 s */
    struct queue_ticket s = status_ok(w, &d, 0);
    cr_assert_eq(s.eta_seconds, 600);
    cr_assert_eq(s.poll_after_ms, 30000);
    cr_assert_eq(w->ops->tick(w, 1), BX_OK);
    cr_assert_eq(w->ops->complete(w, a.token, 1, 1000), BX_OK); /* b admitted */
    cr_assert_eq(w->ops->tick(w, 1001), BX_OK);
    double rate = stats_of(w, 4).admit_rate_avg;
    /* a's admission at issue was folded in at the first tick, b's over the next second */
    cr_assert_float_eq(rate, queue_rate_update(queue_rate_update(0, 1, 1), 1, 1000), 1e-12);
    s = status_ok(w, &d, 1002);
    cr_assert_eq(s.position, 1);
    cr_assert_eq(s.eta_seconds, (int64_t)ceil(1 / rate));
    cr_assert_eq(s.eta_seconds, queue_eta_seconds(1, rate, &c));
    cr_assert_eq(s.poll_after_ms, queue_poll_after_ms(0, s.eta_seconds, &c));
    struct queue_ticket act = status_ok(w, &b, 1002);
    cr_assert_eq(act.poll_after_ms, 60000);
    w->ops->close(w);
}

Test(waitroom, another_users_token_is_not_yours)
{
    struct waitroom_config c = config(1);
    struct waitroom *w = open_room(&c, NULL);
    struct queue_ticket a = issue(w, 1, 5, 0), b = issue(w, 2, 5, 0);
    cr_assert_eq(status_err(w, a.token, 2, 1), BX_ERR_TOKEN_NOT_YOURS);
    cr_assert_eq(status_err(w, b.token, 1, 1), BX_ERR_TOKEN_NOT_YOURS);
    cr_assert_eq(w->ops->require_active(w, a.token, 2, 5, 1), BX_ERR_TOKEN_NOT_YOURS);
    cr_assert_eq(w->ops->leave(w, b.token, 1, 1), BX_ERR_TOKEN_NOT_YOURS);
    cr_assert_eq(w->ops->complete(w, a.token, 2, 1), BX_ERR_TOKEN_NOT_YOURS);
    assert_active(w, &a, 2);
    assert_position(w, &b, 2, 1);
    cr_assert_eq(w->ops->leave(w, b.token, 2, 3), BX_OK);
    cr_assert_eq(status_err(w, b.token, 1, 4), BX_ERR_TOKEN_NOT_YOURS, "even once expired");
    w->ops->close(w);
}

Test(waitroom, waiting_token_or_another_concert_is_not_active)
{
    struct waitroom_config c = config(1);
    struct waitroom *w = open_room(&c, NULL);
    struct queue_ticket a = issue(w, 1, 5, 0), b = issue(w, 2, 5, 0);
    cr_assert_eq(w->ops->require_active(w, a.token, 1, 5, 1), BX_OK);
    cr_assert_eq(w->ops->require_active(w, a.token, 1, 6, 1), BX_ERR_QUEUE_NOT_ACTIVE);
    cr_assert_eq(w->ops->require_active(w, b.token, 2, 5, 1), BX_ERR_QUEUE_NOT_ACTIVE);
    cr_assert_eq(w->ops->complete(w, b.token, 2, 1), BX_ERR_QUEUE_NOT_ACTIVE, "paying needs an ACTIVE token");
    assert_position(w, &b, 2, 1);
    w->ops->close(w);
}

Test(waitroom, malformed_or_unknown_token_is_invalid)
{
    struct waitroom_config c = config(1);
    struct waitroom *w = open_room(&c, NULL);
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
    cr_assert_eq(status_err(w, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 1, 1), BX_ERR_QUEUE_TOKEN_INVALID);
    cr_assert_eq(w->ops->require_active(w, "nope", 1, 5, 1), BX_ERR_QUEUE_TOKEN_INVALID);
    cr_assert_eq(w->ops->leave(w, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 1, 1), BX_ERR_QUEUE_TOKEN_INVALID);
    cr_assert_eq(w->ops->complete(w, "", 1, 1), BX_ERR_QUEUE_TOKEN_INVALID);
    cr_assert_eq(w->ops->ping(w), BX_OK);
    w->ops->close(w);
}

Test(waitroom, restart_from_the_store_keeps_tokens_positions_and_active_slots)
{
    struct fake_store f = {.base = {.ops = &fake_ops}};
    struct waitroom_config c = config(2);
    struct waitroom *w = open_room(&c, &f.base);
    struct queue_ticket t[6], o = issue(w, 50, 2, 0);
    for (int i = 0; i < 6; i++)
        t[i] = issue(w, 1 + i, 1, i);
    cr_assert_eq(w->ops->leave(w, t[3].token, 4, 10), BX_OK); /* a hole in the line */
    cr_assert_eq(w->ops->complete(w, t[0].token, 1, 11), BX_OK); /* t[2] admitted */
    const struct queue_record *r = fake_get(&f, t[2].token);
    cr_assert_not_null(r);
    cr_assert_eq(r->status, QUEUE_ACTIVE);
    cr_assert_eq(r->activated_at, 11);
    cr_assert_eq(fake_get(&f, t[0].token)->status, QUEUE_EXPIRED);
    cr_assert_eq(fake_get(&f, t[0].token)->expires_at, 11);
    assert_position(w, &t[4], 12, 1);
    assert_position(w, &t[5], 12, 2);
    w->ops->close(w);
    cr_assert_eq(f.closes, 1, "the waiting room closes the store it owns");

    w = open_room(&c, &f.base); /* restart at now = 0 */
    assert_active(w, &t[1], 20);
    assert_active(w, &t[2], 20);
    assert_active(w, &o, 20);
    assert_position(w, &t[4], 20, 1);
    assert_position(w, &t[5], 20, 2);
    cr_assert_eq(status_err(w, t[0].token, 1, 20), BX_ERR_TOKEN_EXPIRED, "found in the store");
    cr_assert_eq(status_err(w, t[3].token, 1, 20), BX_ERR_TOKEN_NOT_YOURS);
    cr_assert_eq(status_err(w, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 1, 20), BX_ERR_QUEUE_TOKEN_INVALID);
    struct waitroom_concert_stats st = stats_of(w, 1);
    cr_assert_eq(st.active, 2);
    cr_assert_eq(st.waiting, 2);
    bool created;
    struct queue_ticket again, n;
    cr_assert_eq(w->ops->issue(w, 5, 1, 21, &again, &created), BX_OK);
    cr_assert_not(created);
    cr_assert_str_eq(again.token, t[4].token);
    n = issue(w, 9, 1, 22);
    cr_assert_eq(n.position, 3);
    cr_assert_eq(fake_get(&f, n.token)->seq, fake_get(&f, t[5].token)->seq + 1, "sequence continues");
    cr_assert_eq(w->ops->complete(w, t[1].token, 2, 23), BX_OK);
    assert_active(w, &t[4], 24);
    assert_position(w, &t[5], 24, 1);
    assert_position(w, &n, 24, 2);
    w->ops->close(w);

    /* idle clocks restart at load time: reopen at 1,000,000 and tick just before the limit */
    char err[128];
    w = waitroom_mem_open(&c, &f.base, 1000000, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    cr_assert_eq(w->ops->tick(w, 1000000 + c.waiting_idle_ms - 1), BX_OK);
    assert_position(w, &t[5], 1000000 + c.waiting_idle_ms - 1, 1);
    w->ops->close(w);
    free(f.rec);
}

Test(waitroom, store_failure_changes_nothing_in_memory)
{
    struct fake_store f = {.base = {.ops = &fake_ops}};
    struct waitroom_config c = config(1);
    struct waitroom *w = open_room(&c, &f.base);
    struct queue_ticket a = issue(w, 1, 1, 0), b = issue(w, 2, 1, 0);
    f.fail_saves = 1;
    struct queue_ticket x;
    bool created;
    cr_assert_eq(w->ops->issue(w, 3, 1, 1, &x, &created), BX_ERR_UNAVAILABLE);
    cr_assert_eq(stats_of(w, 1).waiting, 1);
    cr_assert_eq(w->ops->leave(w, b.token, 2, 1), BX_ERR_UNAVAILABLE);
    assert_position(w, &b, 2, 1);
    cr_assert_eq(w->ops->complete(w, a.token, 1, 2), BX_ERR_UNAVAILABLE);
    assert_active(w, &a, 2);
    cr_assert_eq(w->ops->tick(w, 10000000), BX_ERR_UNAVAILABLE, "idle expiry cannot be persisted");
    assert_active(w, &a, 10000000);
    f.fail_saves = 0;
    cr_assert_eq(w->ops->complete(w, a.token, 1, 10000001), BX_OK);
    assert_active(w, &b, 10000002);
    w->ops->close(w);
    free(f.rec);
}

/* A reference model: live tokens in issue order; after every change the oldest
 * WAITING ones fill the free slots. Random issue/leave/complete must agree with it,
 * which drives the window through growth, compaction and shrinking. */
Test(waitroom, random_churn_matches_a_simple_model)
{
    enum { USERS = 400, OPS = 60000, SLOTS = 3 };
    struct waitroom_config c = config(SLOTS);
    struct waitroom *w = open_room(&c, NULL);
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
            cr_assert_eq(w->ops->leave(w, u[k].t.token, k + 1, op), BX_OK);
            u[k].live = 0;
        } else if (what == 1 && u[k].active) {
            cr_assert_eq(w->ops->complete(w, u[k].t.token, k + 1, op), BX_OK);
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
            cr_assert_eq(w->ops->tick(w, op), BX_OK);
    }
    w->ops->close(w);
}

struct worker {
    struct waitroom *w;
    int base;
    int errors;
};

static void *worker_run(void *arg)
{
    struct worker *k = arg;
    for (int i = 0; i < 2000; i++) {
        struct queue_ticket t, s;
        bool created;
        int64_t user = k->base + i;
        if (k->w->ops->issue(k->w, user, 1 + i % 3, i, &t, &created) != BX_OK || !created)
            k->errors++;
        else if (k->w->ops->status(k->w, t.token, user, i, &s) != BX_OK)
            k->errors++;
        else if (i % 2 == 0 && k->w->ops->leave(k->w, t.token, user, i) != BX_OK)
            k->errors++;
        if (i % 100 == 0)
            (void)k->w->ops->tick(k->w, i);
    }
    return NULL;
}

Test(waitroom, concurrent_callers_from_several_threads_stay_consistent)
{
    struct waitroom_config c = config(10);
    struct waitroom *w = open_room(&c, NULL);
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
    cr_assert_eq(w->ops->stats(w, st, 8, &n), BX_OK);
    cr_assert_eq(n, 3);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(st[i].active, 10);
        live += st[i].waiting + st[i].active;
    }
    cr_assert_eq(live, 4 * 1000, "every second token left");
    w->ops->close(w);
}

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

Test(waitroom, a_million_waiting_users_have_exact_positions, .timeout = 120)
{
    enum { N = 1000000, MID = N / 2 };
    struct waitroom_config c = config(0); /* nobody admitted: everyone waits */
    struct waitroom *w = open_room(&c, NULL);
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
    cr_log_warn("1,000,000 tokens issued in %.2f s; RSS grew by %.1f bytes per waiting token", secs,
                (double)(rss1 - rss0) / N);
    cr_assert_eq(mid.position, MID + 1);
    cr_assert_eq(last.position, N);
    for (size_t i = 0; i < ngone; i++)
        cr_assert_eq(w->ops->leave(w, gone[i].token, gone[i].user_id, 1), BX_OK);
    assert_position(w, &mid, 2, MID + 1 - (int64_t)ngone);
    assert_position(w, &last, 2, N - (int64_t)ngone);
    assert_position(w, &second, 2, 1);
    cr_assert_eq(status_err(w, gone[1].token, gone[1].user_id, 2), BX_ERR_TOKEN_EXPIRED);
    cr_assert_eq(stats_of(w, 1).waiting, N - (int64_t)ngone);
    w->ops->close(w);
}
