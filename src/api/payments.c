/* payments.c — pay for a hold from the balance, and the pay history (CONTRACT §3,
 * §5, §6). The store does the whole payment in one durable transaction; the
 * queue token is expired afterwards when no other live hold needs it. */
#include "api/api.h"
#include "app.h"
#include "http/metrics.h"
#include "util/log.h"

#include <stdlib.h>

json_t *api_payment_json(struct call *c, const struct payment *p)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:s}", "paymentId", (json_int_t)p->id, "reservationId",
                     (json_int_t)p->reservation_id, "amount", (json_int_t)p->amount, "balance",
                     (json_int_t)p->balance_after, "paidAt", call_time(c, p->paid_at));
}

/* A payment: the reservation (its concert, whether it is a live hold), the gate
 * when it is, the write, then the end of the queue visit. */
struct pay_state {
    struct reservation r;
    struct store_write w;
    const char *token; /* X-Queue-Token, in the request pool; NULL: none sent */
};

static void pay_answer(void *arg, bx_err e)
{
    struct pay_state *st = arg;
    struct call *c = call_resume(st);
    if (c == NULL)
        return;
    if (e != BX_OK && e != BX_ERR_TOKEN_EXPIRED && e != BX_ERR_QUEUE_TOKEN_INVALID)
        log_warn("payment done but the queue token was not released: %s", bx_err_info(e)->code);
    call_reply_json(c, 201, api_payment_json(c, &st->w.payment));
}

/* Paying ends the queue visit (CONTRACT §4) unless the user still holds other seats
 * of this concert that need the same token to be paid. The answer waits for it,
 * so a client that paid never finds its token still ACTIVE. */
static void pay_written(void *arg, bx_err e)
{
    struct pay_state *st = arg;
    metrics_observe_event(METRIC_PAYMENT, e); /* a replay is counted as such, not as a sale */
    struct call *c = call_resume(st);
    if (c == NULL)
        return;
    if (e != BX_OK && e != BX_REPLAY) {
        call_fail(c, e);
        return;
    }
    call_step_begin(c);
    if (e == BX_OK && st->token != NULL && st->w.live_holds_left == 0)
        waitroom_complete(c->loop->queue, st->token, c->user_id, c->now, pay_answer, st);
    else
        pay_answer(st, BX_OK);
}

static void pay_admitted(void *arg, bx_err e)
{
    struct pay_state *st = arg;
    struct call *c = call_resume(st);
    if (c == NULL)
        return;
    if (e != BX_OK) {
        api_gate_fail(c, e);
        return;
    }
    call_step_begin(c);
    astore_write(c->loop->store, &st->w, pay_written, st);
}

static void pay_reservation_found(void *arg, bx_err e)
{
    struct pay_state *st = arg;
    struct call *c = call_resume_ok(st, e);
    if (c == NULL)
        return;
    st->w.concert_id = st->r.concert_id;
    st->w.schedule_id = st->r.schedule_id;
    st->w.seat_no = st->r.seat_no;
    /* Only paying a live hold needs admission; anything else is refused by the
     * store anyway, or is a replay that must answer as the first call did. */
    if (st->r.status == RES_HELD)
        api_require_active(c, st->r.concert_id, pay_admitted, st);
    else {
        call_step_begin(c);
        pay_admitted(st, BX_OK);
    }
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
    if (reservation_id <= 0) {
        call_fail(c, BX_ERR_RESERVATION_NOT_FOUND);
        return;
    }
    struct pay_state *st = call_state(c, sizeof *st, NULL);
    st->token = api_queue_token(c);
    st->w = (struct store_write){
        .kind = STORE_WRITE_PAY, .user_id = c->user_id, .now = c->now, .reservation_id = reservation_id, .amount = amount};
    store_write_set_idem(&st->w, &idem);
    call_step_begin(c);
    astore_reservation_get(c->loop->store, c->user_id, reservation_id, c->now, &st->r, pay_reservation_found, st);
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

struct history_state {
    struct payment *list;
    size_t n;
    int64_t limit;
};

static void history_release(void *state)
{
    free(((struct history_state *)state)->list);
}

static void history_found(void *arg, bx_err e)
{
    struct history_state *st = arg;
    struct call *c = call_resume_ok(st, e);
    if (c == NULL)
        return;
    json_t *arr = json_array();
    size_t shown = st->n > (size_t)st->limit ? (size_t)st->limit : st->n;
    for (size_t i = 0; i < shown; i++)
        json_array_append_new(arr, api_payment_json(c, &st->list[i]));
    json_t *next = st->n > shown ? json_integer((json_int_t)st->list[shown - 1].id) : json_null();
    call_reply_json(c, 200, json_pack("{s:o, s:o}", "payments", arr, "nextBefore", next));
}

void payments_list_mine(struct call *c)
{
    int64_t limit = 20, before = 0;
    if (query_int(c, "limit", 1, 100, &limit) || query_int(c, "before", 1, INT64_MAX / 10, &before))
        return;
    struct history_state *st = call_state(c, sizeof *st, history_release);
    st->limit = limit;
    call_step_begin(c);
    /* one extra row tells whether another page exists */
    astore_payment_list(c->loop->store, c->user_id, before, (int)limit + 1, &st->list, &st->n, history_found, st);
}
