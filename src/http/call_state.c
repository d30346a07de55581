/* call_state.c — the state of a request across its asynchronous steps (call.h).
 * The state is malloc'd, not in the request pool: a step's callback may come
 * after h2o has freed the request, and must still find its state alive. The
 * pool holds one reference (dropped when h2o disposes of the request), every
 * step in flight another. */
#include "http/call.h"

#include <stdbool.h>
#include <stdlib.h>

struct call_state {
    struct call *call; /* NULL once the request is gone */
    struct loop_ctx *loop;
    int steps; /* in flight */
    bool own;  /* call_step_state's: not the call's state */
    void (*release)(void *state);
    _Alignas(16) unsigned char state[];
};

static struct call_state *header_of(void *state)
{
    return (struct call_state *)((unsigned char *)state - offsetof(struct call_state, state));
}

static void state_free(struct call_state *h)
{
    if (h->release != NULL)
        h->release(h->state);
    free(h);
}

/* h2o disposes of the request: the state stays for the steps still in flight. */
static void on_request_gone(void *p)
{
    struct call_state *h = *(struct call_state **)p;
    if (!h->own)
        h->call->state = NULL;
    h->call = NULL;
    if (h->steps == 0)
        state_free(h);
}

static struct call_state *state_new(struct call *c, size_t size, void (*release)(void *state), bool own)
{
    struct call_state *h = calloc(1, sizeof *h + size);
    if (h == NULL)
        h2o_fatal("no memory for a request's state");
    h->call = c;
    h->loop = c->loop;
    h->own = own;
    h->release = release;
    struct call_state **ref = h2o_mem_alloc_shared(&c->req->pool, sizeof *ref, on_request_gone);
    *ref = h;
    return h;
}

void *call_state(struct call *c, size_t size, void (*release)(void *state))
{
    if (c->state == NULL)
        c->state = state_new(c, size, release, false)->state;
    return c->state;
}

void *call_step_state(struct call *c, size_t size)
{
    return state_new(c, size, NULL, true)->state;
}

void call_step_begin_on(void *state)
{
    struct call_state *h = header_of(state);
    h->steps++;
    h->loop->pending_jobs++;
}

void call_step_begin(struct call *c)
{
    call_step_begin_on(c->state);
}

struct call *call_resume(void *state)
{
    struct call_state *h = header_of(state);
    h->steps--;
    h->loop->pending_jobs--;
    if (h->call != NULL)
        return h->call;
    if (h->steps == 0)
        state_free(h);
    return NULL;
}

struct call *call_resume_ok(void *state, bx_err e)
{
    struct call *c = call_resume(state);
    if (c != NULL && e != BX_OK) {
        call_fail(c, e);
        return NULL;
    }
    return c;
}
