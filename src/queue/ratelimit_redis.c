/* ratelimit_redis.c — see ratelimit_redis.h. GCRA (the generic cell rate
 * algorithm): a bucket is one number in Redis, its theoretical arrival time (TAT):
 * when the bucket would be full again. With T = 1000/rate ms per token and B the
 * burst, a take at now moves TAT to max(TAT, now) + T and is allowed while that
 * stays within B*T of now; a refusal changes nothing and says how far past it is.
 * That is exactly a token bucket of B tokens refilled at rate, held in one key
 * whose TTL is the time to refill. */
#include "queue/ratelimit_redis.h"
#include "util/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* take(KEYS[1] the bucket, ARGV[1] now ms, ARGV[2] T ms per token, ARGV[3] B):
 * 0 when allowed, else the milliseconds until a token comes (>= 1). T is rarely
 * a whole number (1000/3): a TAT a rounding error past the limit counts as on it. */
#define RL_LIBRARY                                                                                                     \
    "local function take(keys, args)\n"                                                                                \
    "  local now, t, b = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])\n"                                    \
    "  local tat = tonumber(redis.call('GET', keys[1])) or now\n"                                                      \
    "  if tat < now then tat = now end\n"                                                                              \
    "  local next_tat = tat + t\n"                                                                                     \
    "  local over = next_tat - now - b * t\n"                                                                          \
    "  if over > 1e-6 then return math.max(1, math.ceil(over)) end\n"                                                  \
    "  local ttl = math.max(1, math.ceil(next_tat - now))\n"                                                           \
    "  redis.call('SET', keys[1], string.format('%.17g', next_tat), 'PX', ttl)\n"                                      \
    "  return 0\n"                                                                                                     \
    "end\n"                                                                                                            \
    "redis.register_function(V .. 'take', take)\n"

#define NS_MAX 64

struct ratelimit_redis {
    char ns[NS_MAX + 1];
    char interval[32], burst[32]; /* ARGV[2], ARGV[3] */
    bool off;
    char *library;
    char fn_name[NS_MAX + 32];
    struct redis_function fn;
};

struct ratelimit_redis *ratelimit_redis_new(const char *ns, double rate, double burst)
{
    struct ratelimit_redis *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    snprintf(r->ns, sizeof r->ns, "%s", ns);
    r->off = !(rate > 0);
    snprintf(r->interval, sizeof r->interval, "%.17g", r->off ? 0.0 : 1000.0 / rate);
    snprintf(r->burst, sizeof r->burst, "%.17g", burst < 1 ? 1.0 : burst);
    char tag[40];
    r->library = redis_library_text("bx_rl", RL_LIBRARY, tag, sizeof tag);
    if (r->library == NULL) {
        free(r);
        return NULL;
    }
    snprintf(r->fn_name, sizeof r->fn_name, "%s_take", tag);
    r->fn = (struct redis_function){.library = r->library, .name = r->fn_name};
    return r;
}

void ratelimit_redis_free(struct ratelimit_redis *r)
{
    if (r == NULL)
        return;
    free(r->library);
    free(r);
}

int ratelimit_redis_off(const struct ratelimit_redis *r)
{
    return r->off;
}

struct take {
    ratelimit_redis_done_fn done;
    void *arg;
};

static void on_taken(void *arg, bx_err e, const redisReply *reply)
{
    struct take *t = arg;
    int64_t wait_ms = 0;
    if (e == BX_OK && reply->type == REDIS_REPLY_INTEGER && reply->integer >= 0) {
        wait_ms = reply->integer;
    } else if (e == BX_OK) {
        log_error("rate limit: unexpected reply from the redis function");
        e = BX_ERR_INTERNAL;
    }
    t->done(t->arg, e, wait_ms);
    free(t);
}

int ratelimit_redis_take(const struct ratelimit_redis *r, struct redis_conn *conn, uint64_t key, int64_t now_ms,
                         ratelimit_redis_done_fn done, void *arg)
{
    struct take *t = malloc(sizeof *t);
    if (t == NULL)
        return -1;
    *t = (struct take){.done = done, .arg = arg};
    char bucket[NS_MAX + 24], now[24];
    snprintf(bucket, sizeof bucket, "%s:rl:%016" PRIx64, r->ns, key);
    snprintf(now, sizeof now, "%" PRId64, now_ms);
    const char *argv[] = {"1", bucket, now, r->interval, r->burst};
    if (redis_conn_fcall(conn, &r->fn, 5, argv, NULL, on_taken, t) != 0) {
        free(t);
        return -1;
    }
    return 0;
}
