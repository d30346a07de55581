/* queue.c — the waiting room over HTTP (SPEC §4): issue a token, poll it, leave. */
#include "api/api.h"
#include "app.h"

static const char *queue_status_name(enum queue_status s)
{
    return s == QUEUE_WAITING ? "WAITING" : s == QUEUE_ACTIVE ? "ACTIVE" : "EXPIRED";
}

static json_t *ticket_json(const struct queue_ticket *t)
{
    return json_pack("{s:s, s:I, s:s, s:I, s:I, s:I}", "token", t->token, "concertId", (json_int_t)t->concert_id,
                     "status", queue_status_name(t->status), "position", (json_int_t)t->position,
                     "estimatedWaitSeconds", (json_int_t)t->eta_seconds, "pollAfterMs", (json_int_t)t->poll_after_ms);
}

void queue_issue(struct call *c)
{
    if (api_rate_limit(c, RATE_QUEUE_TOKEN, (uint64_t)c->user_id) != 0)
        return;
    struct concert concert;
    bx_err e = c->loop->store->ops->concert_get(c->loop->store, c->id, &concert);
    if (e != BX_OK) {
        call_fail(c, e);
        return;
    }
    struct queue_ticket t;
    bool created = false;
    if ((e = app.waitroom->ops->issue(app.waitroom, c->user_id, c->id, c->now, &t, &created)) != BX_OK) {
        call_fail(c, e);
        return;
    }
    call_reply_json(c, created ? 201 : 200, ticket_json(&t));
}

void queue_get_status(struct call *c)
{
    const char *tok = api_queue_token(c);
    if (tok == NULL) {
        call_fail(c, BX_ERR_QUEUE_TOKEN_INVALID);
        return;
    }
    struct queue_ticket t;
    bx_err e = app.waitroom->ops->status(app.waitroom, tok, c->user_id, c->now, &t);
    if (e != BX_OK) {
        call_fail(c, e);
        return;
    }
    call_reply_json(c, 200, ticket_json(&t));
}

void queue_leave(struct call *c)
{
    const char *tok = api_queue_token(c);
    if (tok == NULL) {
        call_fail(c, BX_ERR_QUEUE_TOKEN_INVALID);
        return;
    }
    bx_err e = app.waitroom->ops->leave(app.waitroom, tok, c->user_id, c->now);
    if (e != BX_OK) {
        call_fail(c, e);
        return;
    }
    call_reply_empty(c, 204);
}
