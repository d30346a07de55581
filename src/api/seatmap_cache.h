/* seatmap_cache.h — rendered seat maps kept per event loop. A seat map is
 * answered again while its seats keep the version the store gave them
 * (astore_seats) and no hold in it has ended: then it costs no copy and no
 * rendering. */
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

/* The version of the loop's seat map of schedule_id (full or compact form) that
 * is still valid at now; 0 when there is none. */
uint64_t seatmap_cache_version(struct loop_ctx *loop, int64_t schedule_id, int compact, int64_t now);
/* The loop's seat map of schedule_id (full or compact form) when still valid at (version, now). */
int seatmap_cache_get(struct loop_ctx *loop, int64_t schedule_id, int compact, uint64_t version, int64_t now,
                      struct seatmap_hit *out);
/* Keeps a rendered map of seats at `version`, valid until valid_until (the first
 * end of a hold in it; INT64_MAX without holds). Out of memory: not kept. */
void seatmap_cache_put(struct loop_ctx *loop, int64_t schedule_id, int compact, int64_t concert_id, uint64_t version,
                       int64_t valid_until, const char *body, size_t len);

#endif
