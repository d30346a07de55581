/* queue.c — the waiting room over HTTP (SPEC §4): issue a token, poll it, leave. */
#include "api/api.h"
#include "app.h"
#include "http/workers.h"

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

/* A ticket waiting for its token to be durable before the client hears of it. */
struct issued {
    struct queue_ticket t;
    bool created;
};

static void issue_answer(struct call *c, bx_err e, void *payload)
{
    const struct issued *x = payload;
    if (c == NULL)
        return;
    if (e != BX_OK)
        call_fail(c, e);
    else
        ticket_reply(c, x->created ? 201 : 200, &x->t);
}

static void leave_answer(struct call *c, bx_err e, void *payload)
{
    (void)payload;
    if (c == NULL)
        return;
    if (e != BX_OK)
        call_fail(c, e);
    else
        call_reply_empty(c, 204);
}

/* Even a re-issue waits: the token it answers may not be durable yet. */
void queue_issue(struct call *c)
{
    if (api_rate_limit(c, RATE_QUEUE_TOKEN, (uint64_t)c->user_id) != 0)
        return;
    if (api_require_concert(c, c->id) != 0)
        return;
    struct issued x = {.created = false};
    bx_err e;
    if ((e = app.waitroom->ops->issue(app.waitroom, c->user_id, c->id, c->now, &x.t, &x.created)) != BX_OK) {
        call_fail(c, e);
        return;
    }
    if (workers_when_durable(c, app.waitroom, &x, sizeof x, issue_answer) != 0)
        call_fail(c, BX_ERR_UNAVAILABLE);
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
    char none = 0;
    if (workers_when_durable(c, app.waitroom, &none, sizeof none, leave_answer) != 0)
        call_fail(c, BX_ERR_UNAVAILABLE);
}
