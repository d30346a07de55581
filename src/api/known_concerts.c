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

int api_require_concert(struct call *c, int64_t concert_id)
{
    struct loop_ctx *loop = c->loop;
    size_t slot = (uint64_t)concert_id % SLOTS;
    if (loop->concerts != NULL && concert_id > 0 && loop->concerts->id[slot] == concert_id)
        return 0;
    struct concert concert;
    bx_err e = loop->store->ops->concert_get(loop->store, concert_id, &concert);
    if (e != BX_OK)
        return call_fail(c, e);
    if (loop->concerts == NULL)
        loop->concerts = calloc(1, sizeof *loop->concerts);
    if (loop->concerts != NULL)
        loop->concerts->id[slot] = concert_id;
    return 0;
}
