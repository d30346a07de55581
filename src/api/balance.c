/* balance.c — the prepaid balance: read and charge (CONTRACT §3: int64 won, ledger
 * entry per change, Idempotency-Key honoured). */
#include "api/api.h"
#include "app.h"
#include "domain/money.h"
#include "http/metrics.h"

static void reply_balance(struct call *c, int64_t balance)
{
    call_reply_json(c, 200, json_pack("{s:I, s:I}", "userId", (json_int_t)c->user_id, "balance", (json_int_t)balance));
}

struct balance_state {
    int64_t balance;
};

static void balance_found(void *arg, bx_err e)
{
    struct balance_state *st = arg;
    struct call *c = call_resume(st);
    if (c == NULL)
        return;
    if (e != BX_OK)
        call_fail(c, e == BX_ERR_NOT_FOUND ? BX_ERR_UNAUTHORIZED : e);
    else
        reply_balance(c, st->balance);
}

void balance_get(struct call *c)
{
    struct balance_state *st = call_state(c, sizeof *st, NULL);
    call_step_begin(c);
    astore_balance_get(c->loop->store, c->user_id, &st->balance, balance_found, st);
}

static void charge_written(void *arg, bx_err e)
{
    struct store_write *w = arg;
    metrics_observe_event(METRIC_CHARGE, e); /* a replay is counted as such, not as a charge */
    struct call *c = call_resume(w);
    if (c == NULL)
        return;
    if (e != BX_OK && e != BX_REPLAY)
        call_fail(c, e == BX_ERR_NOT_FOUND ? BX_ERR_UNAUTHORIZED : e);
    else
        reply_balance(c, w->balance);
}

static void charge_allowed(struct call *c)
{
    int64_t amount;
    struct idem idem;
    if (call_body(c) || call_body_int(c, "amount", &amount) || call_idempotency(c, "charge", &idem))
        return;
    if (!money_charge_amount_valid(amount)) {
        call_reply_error(c, BX_ERR_VALIDATION, "amount", "amount must be an integer from 1 to 10000000");
        return;
    }
    struct store_write *w = call_state(c, sizeof *w, NULL);
    *w = (struct store_write){.kind = STORE_WRITE_CHARGE, .user_id = c->user_id, .now = c->now, .amount = amount};
    store_write_set_idem(w, &idem);
    call_step_begin(c);
    astore_write(c->loop->store, w, charge_written, w);
}

void balance_charge(struct call *c)
{
    api_rate_limit(c, RATE_CHARGE, (uint64_t)c->user_id, charge_allowed);
}
