/* queue.c — the waiting room over HTTP (SPEC §4): issue a token, poll it, leave. */
#include "api/api.h"
#include "app.h"

static const char *queue_status_name(enum queue_status s)
{
    return s == QUEUE_WAITING ? "WAITING" : s == QUEUE_ACTIVE ? "ACTIVE" : "EXPIRED";
}

/* Answers with the ticket; written with jsonout, as the status poll is hot. */
static void ticket_reply(struct call *c, int status, const struct queue_ticket *t)
{
    struct jsonout j;
    jsonout_init(&j);
    jsonout_object_begin(&j);
    jsonout_field_string(&j, "token", t->token);
    jsonout_field_int(&j, "concertId", t->concert_id);
    jsonout_field_string(&j, "status", queue_status_name(t->status));
    jsonout_field_int(&j, "position", t->position);
    jsonout_field_int(&j, "estimatedWaitSeconds", t->eta_seconds);
    jsonout_field_int(&j, "pollAfterMs", t->poll_after_ms);
    jsonout_object_end(&j);
    call_reply_jsonout(c, status, &j);
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
    ticket_reply(c, created ? 201 : 200, &t);
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
    ticket_reply(c, 200, &t);
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
