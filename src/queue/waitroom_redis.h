/* waitroom_redis.h — what the Redis waiting room offers beyond waitroom.h, for
 * tests, tools and the shared rate limits: its counters, its namespace, a port's
 * connection, and a view refresh. */
#ifndef BX_QUEUE_WAITROOM_REDIS_H
#define BX_QUEUE_WAITROOM_REDIS_H

#include "queue/redis_conn.h"
#include "queue/waitroom.h"

/* Since the waiting room was opened, over all its ports. */
struct waitroom_redis_counters {
    uint64_t polls_local;   /* status answered from the instance's view */
    uint64_t polls_exact;   /* status answered by Redis */
    uint64_t ticks;         /* ticks run */
    uint64_t ticks_skipped; /* ticks called while the previous one was in flight */
    uint64_t written_back;  /* local polls written back to Redis */
    uint64_t gone;          /* of those, tokens found no longer waiting */
};

/* w must be a Redis waiting room. Any thread. */
void waitroom_redis_counters(struct waitroom *w, struct waitroom_redis_counters *out);
/* The key namespace ("bx", or the URL's ?prefix=), for other keys of the same
 * deployment (queue/ratelimit_redis.h). */
const char *waitroom_redis_namespace(const struct waitroom *w);
/* The port's connection (p must be a Redis port); on p's loop only. */
struct redis_conn *waitroom_redis_conn(struct waitroom_port *p);
/* Reads every concert's figures into the view, changing nothing in Redis (the tick
 * does this as it goes): afterwards `stats` is exact as of now. */
void waitroom_redis_refresh(struct waitroom_port *p, int64_t now, waitroom_done_fn done, void *arg);

#endif
