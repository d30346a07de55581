/* ratelimit_redis.h — per-key rate limits that every scale-out instance shares:
 * one GCRA bucket per key in Redis, taken with one FCALL of a small function
 * library, so N instances together allow the configured rate, not N times it.
 * Same answers as util/ratelimit.h's token bucket (burst tokens at once, then one
 * every 1/rate s; a refusal says when the next token comes). Keys are
 * "NS:rl:<key in hex>" and expire once their bucket is full again, so an idle
 * user costs Redis nothing. Times are the caller's Unix milliseconds, as the
 * waiting room's functions take them (instances' clocks are assumed in step to a
 * few ms, as they already are for the waiting room). */
#ifndef BX_QUEUE_RATELIMIT_REDIS_H
#define BX_QUEUE_RATELIMIT_REDIS_H

#include <stdint.h>

#include "domain/errors.h"
#include "queue/redis_conn.h"

struct ratelimit_redis;

/* ns: the waiting room's key namespace ("bx", or the URL's ?prefix=). rate <= 0:
 * take always allows, without a call. NULL when out of memory. */
struct ratelimit_redis *ratelimit_redis_new(const char *ns, double rate, double burst);
void ratelimit_redis_free(struct ratelimit_redis *r);
/* True when the limiter allows everything (rate <= 0): no call is needed. */
int ratelimit_redis_off(const struct ratelimit_redis *r);

/* The outcome of a take, on the connection's loop: e == BX_OK and wait_ms 0
 * (allowed) or the milliseconds until a token comes (>= 1); or e ==
 * BX_ERR_UNAVAILABLE (Redis did not answer: whether a token was taken is unknown)
 * or BX_ERR_INTERNAL. */
typedef void (*ratelimit_redis_done_fn)(void *arg, bx_err e, int64_t wait_ms);

/* Takes one token of key's bucket at now_ms through conn (one FCALL). Returns 0
 * when sent (done will run, never before this returns), -1 when the connection
 * refused it (done will not run). */
int ratelimit_redis_take(const struct ratelimit_redis *r, struct redis_conn *conn, uint64_t key, int64_t now_ms,
                         ratelimit_redis_done_fn done, void *arg);

#endif
