/* seatmap_cache.h — rendered seat maps kept per event loop (embedded mode, where
 * one writer makes every store write: see workers_write_generation). A seat map
 * is answered again while no write was committed since it was read and no hold in
 * it has ended; the 50-seat map then costs no store read and no rendering. */
#ifndef BX_API_SEATMAP_CACHE_H
#define BX_API_SEATMAP_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "http/call.h"

struct seatmap_hit {
    int64_t concert_id;
    const char *body;
    size_t len;
};

/* The loop's seat map of schedule_id when still valid at (generation, now). */
int seatmap_cache_get(struct loop_ctx *loop, int64_t schedule_id, uint64_t generation, int64_t now,
                      struct seatmap_hit *out);
/* Keeps a rendered map read at `generation`, valid until valid_until (the first
 * end of a hold in it; INT64_MAX without holds). Out of memory: not kept. */
void seatmap_cache_put(struct loop_ctx *loop, int64_t schedule_id, int64_t concert_id, uint64_t generation,
                       int64_t valid_until, const char *body, size_t len);

#endif
