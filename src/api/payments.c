/* payments.c — pay for a hold from the balance, and the pay history (SPEC §3,
 * §5, §6). The store does the whole payment in one durable transaction; the
 * queue token is expired afterwards when no other live hold needs it. */
#include "api/api.h"
#include "api/seat_board.h"
#include "app.h"
#include "http/metrics.h"
#include "http/workers.h"
#include "util/log.h"

#include <stdlib.h>

json_t *api_payment_json(struct call *c, const struct payment *p)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:s}", "paymentId", (json_int_t)p->id, "reservationId",
                     (json_int_t)p->reservation_id, "amount", (json_int_t)p->amount, "balance",
                     (json_int_t)p->balance_after, "paidAt", call_time(c, p->paid_at));
}

/* Paying ends the queue visit (SPEC §4) unless the user still holds other
 * seats of this concert that need the same token to be paid. */
static void release_queue_token(struct call *c, int64_t concert_id)
{
    const char *tok = api_queue_token(c);
    int live = 0;
    if (tok == NULL)
        return;
    bx_err e = c->loop->store->ops->live_holds_on_concert(c->loop->store, c->user_id, concert_id, c->now, &live);
    if (e == BX_OK && live == 0)
        e = app.waitroom->ops->complete(app.waitroom, tok, c->user_id, c->now);
    if (e != BX_OK && e != BX_ERR_TOKEN_EXPIRED && e != BX_ERR_QUEUE_TOKEN_INVALID)
        log_warn("payment done but the queue token was not released: %s", bx_err_info(e)->code);
}

/* A payment travels to the store writer (group commit) and back: the answer
 * leaves only once the batch holding it is durable (invariant 4). */
struct pay_job {
    int64_t user_id, reservation_id, amount, now, concert_id, schedule_id;
    int32_t seat_no;
    struct idem_job idem;
    bx_err result;
    struct payment p;
};

static void pay_run(struct store *s, void *payload)
{
    struct pay_job *j = payload;
    struct idem idem;
    idem_job_view(&j->idem, &idem);
    j->result = s->ops->pay(s, j->user_id, j->reservation_id, j->amount, j->now, &idem, &j->p);
}

static void pay_committed(void *payload)
{
    const struct pay_job *j = payload;
    if (j->result == BX_OK)
        seat_board_set(j->schedule_id, j->seat_no, SEAT_SOLD, 0);
}

static void pay_done(struct call *c, bx_err batch_err, void *payload)
{
    struct pay_job *j = payload;
    bx_err e = batch_err != BX_OK ? batch_err : j->result;
    metrics_observe_event(METRIC_PAYMENT, e == BX_REPLAY ? BX_OK : e);
    if (batch_err != BX_OK)
        seat_board_forget_all(); /* whatever the failed commit left */
    if (c == NULL)
        return;
    if (e != BX_OK && e != BX_REPLAY) {
        call_fail(c, e);
        return;
    }
    if (e == BX_OK)
        release_queue_token(c, j->concert_id);
    call_reply_json(c, 201, api_payment_json(c, &j->p));
}

void payments_create(struct call *c)
{
    int64_t reservation_id, amount = -1;
    bool amount_sent;
    struct idem idem;
    if (call_body(c) || call_body_int(c, "reservationId", &reservation_id) ||
        call_body_int_opt(c, "amount", &amount, &amount_sent) || call_idempotency(c, "payment", &idem))
        return;
    if (!amount_sent)
        amount = -1;
    else if (amount < 0) {
        call_reply_error(c, BX_ERR_VALIDATION, "amount", "amount must not be negative");
        return;
    }
    struct store *s = c->loop->store;
    struct reservation r;
    bx_err e = reservation_id > 0 ? s->ops->reservation_get(s, c->user_id, reservation_id, c->now, &r)
                                  : BX_ERR_RESERVATION_NOT_FOUND;
    if (e != BX_OK) {
        call_fail(c, e);
        return;
    }
    /* Only paying a live hold needs admission; anything else is refused by the
     * store anyway, or is a replay that must answer as the first call did. */
    if (r.status == RES_HELD && api_require_active(c, r.concert_id) != 0)
        return;
    struct pay_job j = {.user_id = c->user_id, .reservation_id = reservation_id, .amount = amount, .now = c->now,
                        .concert_id = r.concert_id, .schedule_id = r.schedule_id, .seat_no = r.seat_no};
    idem_job_copy(&j.idem, &idem);
    if (workers_write(c, &j, sizeof j, pay_run, pay_committed, pay_done) != 0)
        call_fail(c, BX_ERR_UNAVAILABLE);
}

static int query_int(struct call *c, const char *name, int64_t min, int64_t max, int64_t *out)
{
    size_t len;
    const char *v = call_query(c, name, &len);
    if (v == NULL)
        return 0;
    int64_t x = 0;
    int ok = len > 0 && len <= 18;
    for (size_t i = 0; ok && i < len; i++) {
        ok = v[i] >= '0' && v[i] <= '9';
        x = x * 10 + (v[i] - '0');
    }
    if (!ok || x < min || x > max) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s must be an integer from %lld to %lld", name, (long long)min, (long long)max);
        call_reply_error(c, BX_ERR_VALIDATION, name, msg);
        return -1;
    }
    *out = x;
    return 0;
}

void payments_list_mine(struct call *c)
{
    int64_t limit = 20, before = 0;
    if (query_int(c, "limit", 1, 100, &limit) || query_int(c, "before", 1, INT64_MAX / 10, &before))
        return;
    struct payment *list = NULL;
    size_t n = 0;
    /* one extra row tells whether another page exists */
    bx_err e = c->loop->store->ops->payment_list(c->loop->store, c->user_id, before, (int)limit + 1, &list, &n);
    if (e != BX_OK) {
        call_fail(c, e);
        return;
    }
    json_t *arr = json_array();
    size_t shown = n > (size_t)limit ? (size_t)limit : n;
    for (size_t i = 0; i < shown; i++)
        json_array_append_new(arr, api_payment_json(c, &list[i]));
    json_t *next = n > shown ? json_integer((json_int_t)list[shown - 1].id) : json_null();
    free(list);
    call_reply_json(c, 200, json_pack("{s:o, s:o}", "payments", arr, "nextBefore", next));
}
