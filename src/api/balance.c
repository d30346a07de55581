/* balance.c — the prepaid balance: read and charge (SPEC §3: int64 won, ledger
 * entry per change, Idempotency-Key honoured). */
#include "api/api.h"
#include "app.h"
#include "domain/money.h"
#include "http/metrics.h"
#include "http/workers.h"

static void reply_balance(struct call *c, int64_t balance)
{
    call_reply_json(c, 200, json_pack("{s:I, s:I}", "userId", (json_int_t)c->user_id, "balance", (json_int_t)balance));
}

void balance_get(struct call *c)
{
    int64_t balance;
    bx_err e = c->loop->store->ops->balance_get(c->loop->store, c->user_id, &balance);
    if (e != BX_OK) {
        call_fail(c, e == BX_ERR_NOT_FOUND ? BX_ERR_UNAUTHORIZED : e);
        return;
    }
    reply_balance(c, balance);
}

/* A charge travels to the store writer (group commit) and back. */
struct charge_job {
    int64_t user_id, amount, now;
    struct idem_job idem;
    bx_err result;
    int64_t balance;
};

static void charge_run(struct store *s, void *payload)
{
    struct charge_job *j = payload;
    struct idem idem;
    idem_job_view(&j->idem, &idem);
    j->result = s->ops->balance_charge(s, j->user_id, j->amount, j->now, &idem, &j->balance);
}

static void charge_done(struct call *c, bx_err batch_err, void *payload)
{
    struct charge_job *j = payload;
    bx_err e = batch_err != BX_OK ? batch_err : j->result;
    metrics_observe_event(METRIC_CHARGE, e == BX_REPLAY ? BX_OK : e);
    if (c == NULL)
        return;
    if (e != BX_OK && e != BX_REPLAY) {
        call_fail(c, e == BX_ERR_NOT_FOUND ? BX_ERR_UNAUTHORIZED : e);
        return;
    }
    reply_balance(c, j->balance);
}

void balance_charge(struct call *c)
{
    int64_t amount;
    struct idem idem;
    if (api_rate_limit(c, RATE_CHARGE, (uint64_t)c->user_id) != 0 || call_body(c) ||
        call_body_int(c, "amount", &amount) || call_idempotency(c, "charge", &idem))
        return;
    if (!money_charge_amount_valid(amount)) {
        call_reply_error(c, BX_ERR_VALIDATION, "amount", "amount must be an integer from 1 to 10000000");
        return;
    }
    struct charge_job j = {.user_id = c->user_id, .amount = amount, .now = c->now};
    idem_job_copy(&j.idem, &idem);
    if (workers_write(c, &j, sizeof j, charge_run, NULL, charge_done) != 0)
        call_fail(c, BX_ERR_UNAVAILABLE);
}
