/* queue.c — the waiting room over HTTP (CONTRACT §4): issue a token, poll it, leave. */
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

/* What the queue endpoints wait for: a ticket (and whether it is new). */
struct queue_state {
    struct queue_ticket t;
    bool created;
};

static void issue_answer(void *arg, bx_err e)
{
    struct queue_state *st = arg;
    struct call *c = call_resume_ok(st, e);
    if (c != NULL)
        ticket_reply(c, st->created ? 201 : 200, &st->t);
}

static void issue_concert_found(void *arg, bx_err e)
{
    struct queue_state *st = arg;
    struct call *c = call_resume_ok(st, e);
    if (c == NULL)
        return;
    call_step_begin(c);
    waitroom_issue(c->loop->queue, c->user_id, c->id, c->now, &st->t, &st->created, issue_answer, st);
}

/* A new token is answered once it is durable; so is a re-issue (the token it
 * answers may not be durable yet). */
static void issue_allowed(struct call *c)
{
    struct queue_state *st = call_state(c, sizeof *st, NULL);
    api_require_concert(c, c->id, issue_concert_found, st);
}

void queue_issue(struct call *c)
{
    api_rate_limit(c, RATE_QUEUE_TOKEN, (uint64_t)c->user_id, issue_allowed);
}

static void status_answer(void *arg, bx_err e)
{
    struct queue_state *st = arg;
    struct call *c = call_resume_ok(st, e);
    if (c != NULL)
        ticket_reply(c, 200, &st->t);
}

void queue_get_status(struct call *c)
{
    const char *tok = api_queue_token(c);
    if (tok == NULL) {
        call_fail(c, BX_ERR_QUEUE_TOKEN_INVALID);
        return;
    }
    struct queue_state *st = call_state(c, sizeof *st, NULL);
    call_step_begin(c);
    waitroom_status(c->loop->queue, tok, c->user_id, c->now, &st->t, status_answer, st);
}

static void leave_answer(void *arg, bx_err e)
{
    struct call *c = call_resume_ok(arg, e);
    if (c != NULL)
        call_reply_empty(c, 204);
}

/* Answered once the leave is durable. */
void queue_leave(struct call *c)
{
    const char *tok = api_queue_token(c);
    if (tok == NULL) {
        call_fail(c, BX_ERR_QUEUE_TOKEN_INVALID);
        return;
    }
    void *st = call_state(c, 1, NULL);
    call_step_begin(c);
    waitroom_leave(c->loop->queue, tok, c->user_id, c->now, leave_answer, st);
}
