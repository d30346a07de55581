/* seatmap_cache.c — see seatmap_cache.h. Direct-mapped by schedule id: a loop
 * serves few schedules at a time, and a collision only costs a store read. Only
 * its own loop thread touches a cache, so nothing is locked. The caches live as
 * long as the loops (to process exit). */
#include "api/seatmap_cache.h"

#include <stdlib.h>
#include <string.h>

#define SLOTS 64

struct entry {
    int64_t schedule_id; /* 0: empty */
    int compact;
    int64_t concert_id;
    uint64_t version;
    int64_t valid_until;
    char *body;
    size_t len, cap;
};

struct seatmap_cache {
    struct entry e[SLOTS];
};

static struct entry *slot_of(struct loop_ctx *loop, int64_t schedule_id, int compact, int create)
{
    if (loop->seatmaps == NULL) {
        if (!create || (loop->seatmaps = calloc(1, sizeof *loop->seatmaps)) == NULL)
            return NULL;
    }
    return &loop->seatmaps->e[((uint64_t)schedule_id * 2 + (compact != 0)) % SLOTS];
}

uint64_t seatmap_cache_version(struct loop_ctx *loop, int64_t schedule_id, int compact, int64_t now)
{
    const struct entry *x = slot_of(loop, schedule_id, compact, 0);
    if (x == NULL || x->schedule_id != schedule_id || x->compact != compact || now >= x->valid_until)
        return 0;
    return x->version;
}

int seatmap_cache_get(struct loop_ctx *loop, int64_t schedule_id, int compact, uint64_t version, int64_t now,
                      struct seatmap_hit *out)
{
    const struct entry *x = slot_of(loop, schedule_id, compact, 0);
    if (x == NULL || x->schedule_id != schedule_id || x->compact != compact || x->version != version ||
        now >= x->valid_until)
        return 0;
    *out = (struct seatmap_hit){.concert_id = x->concert_id, .body = x->body, .len = x->len};
    return 1;
}

void seatmap_cache_put(struct loop_ctx *loop, int64_t schedule_id, int compact, int64_t concert_id, uint64_t version,
                       int64_t valid_until, const char *body, size_t len)
{
    struct entry *x = slot_of(loop, schedule_id, compact, 1);
    if (x == NULL || len == 0) /* a rendered map is never empty */
        return;
    if (x->cap < len) {
        char *b = realloc(x->body, len);
        if (b == NULL) {
            x->schedule_id = 0;
            return;
        }
        x->body = b;
        x->cap = len;
    }
    memcpy(x->body, body, len);
    x->len = len;
    x->schedule_id = schedule_id;
    x->compact = compact;
    x->concert_id = concert_id;
    x->version = version;
    x->valid_until = valid_until;
}
