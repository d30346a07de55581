/* ratelimit.h — per-key token buckets (per user and action) with bounded memory:
 * a fixed table, so a flood of distinct keys evicts old buckets instead of growing.
 * Thread-safe (striped locks). Counts are per process; scale-out instances also
 * share a bucket per key in Redis (queue/ratelimit_redis.h). */
#ifndef BX_UTIL_RATELIMIT_H
#define BX_UTIL_RATELIMIT_H

#include <stdint.h>

struct ratelimit;

/* rate: tokens per second refilled per key; burst: bucket size (>= 1).
 * rate <= 0 gives a limiter that allows everything. NULL on allocation failure. */
struct ratelimit *ratelimit_new(double rate, double burst);
void ratelimit_free(struct ratelimit *rl);

/* Takes one token for key at now_ms. Returns 0 when allowed, else the
 * milliseconds until a token will be available (>= 1). */
int64_t ratelimit_take(struct ratelimit *rl, uint64_t key, int64_t now_ms);

#endif
