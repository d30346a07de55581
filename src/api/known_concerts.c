/* known_concerts.c — api_require_concert (api.h): the concerts each loop has
 * seen in the store, direct-mapped by id. Nothing ever deletes a concert, so a
 * remembered one still exists; a forgotten one (a slot reused) costs one read.
 * Only its loop thread touches a set; the sets live as long as the loops. */
#include "api/api.h"

#include <stdlib.h>

#define SLOTS 256

struct known_concerts {
    int64_t id[SLOTS]; /* 0: empty (ids start at 1) */
};

/* A read of one concert on its way; outlives the request if it must. */
struct lookup {
    struct loop_ctx *loop;
    struct concert concert;
    astore_done_fn done;
    void *state;
};

static void remember(struct loop_ctx *loop, int64_t concert_id)
{
    if (loop->concerts == NULL)
        loop->concerts = calloc(1, sizeof *loop->concerts);
    if (loop->concerts != NULL)
        loop->concerts->id[(uint64_t)concert_id % SLOTS] = concert_id;
}

static void looked_up(void *arg, bx_err e)
{
    struct lookup *x = arg;
    if (e == BX_OK)
        remember(x->loop, x->concert.id);
    x->done(x->state, e);
    free(x);
}

void api_require_concert(struct call *c, int64_t concert_id, astore_done_fn done, void *state)
{
    struct loop_ctx *loop = c->loop;
    call_step_begin(c);
    if (loop->concerts != NULL && concert_id > 0 && loop->concerts->id[(uint64_t)concert_id % SLOTS] == concert_id) {
        done(state, BX_OK);
        return;
    }
    struct lookup *x = malloc(sizeof *x);
    if (x == NULL) {
        done(state, BX_ERR_UNAVAILABLE);
        return;
    }
    *x = (struct lookup){.loop = loop, .done = done, .state = state};
    astore_concert_get(loop->store, concert_id, &x->concert, looked_up, x);
}
