/* waitroom.h — the waiting-room interface (CONTRACT §4). One `struct waitroom` per
 * process holds what all its event loops share; each loop works through its own
 * port, and every operation answers through a callback on that loop, so no loop
 * ever waits on the network. Backends: waitroom_mem.c (embedded, in memory,
 * persisted through the store), waitroom_redis.c (scale-out, shared by N
 * instances through Redis). Times are Unix milliseconds. */
#ifndef BX_QUEUE_WAITROOM_H
#define BX_QUEUE_WAITROOM_H

#define H2O_USE_LIBUV 0
#include <h2o.h>

#include "domain/errors.h"
#include "domain/queue_rules.h"
#include "domain/types.h"
#include "store/store.h"

/* What a client learns about its token (the body of the queue endpoints). */
struct queue_ticket {
    char token[BX_QUEUE_TOKEN_LEN + 1];
    int64_t user_id;
    int64_t concert_id;
    enum queue_status status;
    int64_t position;      /* 1-based rank among WAITING tokens; 0 when ACTIVE */
    int64_t eta_seconds;   /* estimated wait; 0 when ACTIVE */
    int64_t poll_after_ms; /* when to ask again */
};

/* Per-concert figures for /metrics. */
struct waitroom_concert_stats {
    int64_t concert_id;
    int64_t waiting;
    int64_t active;
    int64_t admitted_total;
    double admit_rate_avg;  /* measured admissions per second (moving average) */
    struct queue_pace pace; /* the line's pace, as the estimated wait projects it */
};

struct waitroom;

/* One event loop's handle on the waiting room, opened by that loop's thread and
 * used only there. Backends extend it (their connections to Redis, the loop's
 * completion queue). */
struct waitroom_port {
    struct waitroom *room;
    h2o_evloop_t *loop;
};

/* The outcome of an operation, called exactly once, on the port's loop. It may run
 * before the operation's function returns (the embedded waiting room answers
 * from memory); callers must not touch their state after starting an operation
 * unless they own it. Inputs (tokens) are copied before the function returns;
 * outputs (the ticket, *created) must stay valid until done runs: keep them in
 * memory that outlives the request, never in its pool. */
typedef void (*waitroom_done_fn)(void *arg, bx_err e);

struct waitroom_ops {
    const char *name;
    void (*close)(struct waitroom *w);
    /* A port for one loop (its thread calls this); NULL when out of memory.
     * queue: the loop's h2o multithread queue, for answers made on other threads. */
    struct waitroom_port *(*port_open)(struct waitroom *w, h2o_evloop_t *loop, h2o_multithread_queue_t *queue);
    /* Every operation in flight on the port has had its done called first. */
    void (*port_close)(struct waitroom_port *p);

    void (*ping)(struct waitroom_port *p, waitroom_done_fn done, void *arg);
    /* Issues a token for (user, concert), or returns the live one (*created = false).
     * The concert's existence is checked by the caller. May admit at once. done
     * runs once the token is durable: a client hears of a token only then. */
    void (*issue)(struct waitroom_port *p, int64_t user_id, int64_t concert_id, int64_t now, struct queue_ticket *out,
                  bool *created, waitroom_done_fn done, void *arg);
    /* Polls a token: refreshes its liveness and fills out. QUEUE_TOKEN_INVALID
     * (unknown), TOKEN_NOT_YOURS, TOKEN_EXPIRED. A backend may answer a WAITING
     * token from its own view of the line; DESIGN.md bounds how stale it may be. */
    void (*status)(struct waitroom_port *p, const char *token, int64_t user_id, int64_t now, struct queue_ticket *out,
                   waitroom_done_fn done, void *arg);
    /* Gate of the booking endpoints: the token must be the user's, ACTIVE and
     * for concert_id; refreshes its liveness. Always exact. QUEUE_TOKEN_INVALID,
     * TOKEN_NOT_YOURS, TOKEN_EXPIRED, QUEUE_NOT_ACTIVE (WAITING, or another concert). */
    void (*require_active)(struct waitroom_port *p, const char *token, int64_t user_id, int64_t concert_id,
                           int64_t now, waitroom_done_fn done, void *arg);
    /* The user leaves the queue (any live status): token EXPIRED, slot freed. done
     * runs once that is durable. */
    void (*leave)(struct waitroom_port *p, const char *token, int64_t user_id, int64_t now, waitroom_done_fn done,
                  void *arg);
    /* The user paid: the ACTIVE token is EXPIRED and its slot goes to the next in line. */
    void (*complete)(struct waitroom_port *p, const char *token, int64_t user_id, int64_t now,
                     waitroom_done_fn done, void *arg);
    /* Housekeeping, about every 100 ms, from one loop per process (with Redis, any
     * number of instances may tick at once): expire idle tokens, admit the oldest
     * WAITING tokens into free slots (FIFO, admit_rate), update the measured
     * admission rate. */
    void (*tick)(struct waitroom_port *p, int64_t now, waitroom_done_fn done, void *arg);
    /* What this process knows of each concert, without I/O (for /metrics): fills
     * up to cap entries; *n = count written. Any thread. */
    bx_err (*stats)(struct waitroom *w, struct waitroom_concert_stats *out, size_t cap, size_t *n);
};

struct waitroom {
    const struct waitroom_ops *ops;
};

/* The operations through a loop's port (see struct waitroom_ops). */
static inline struct waitroom_port *waitroom_port_open(struct waitroom *w, h2o_evloop_t *loop,
                                                       h2o_multithread_queue_t *queue)
{
    return w->ops->port_open(w, loop, queue);
}

static inline void waitroom_port_close(struct waitroom_port *p)
{
    p->room->ops->port_close(p);
}

static inline void waitroom_ping(struct waitroom_port *p, waitroom_done_fn done, void *arg)
{
    p->room->ops->ping(p, done, arg);
}

static inline void waitroom_issue(struct waitroom_port *p, int64_t user_id, int64_t concert_id, int64_t now,
                                  struct queue_ticket *out, bool *created, waitroom_done_fn done, void *arg)
{
    p->room->ops->issue(p, user_id, concert_id, now, out, created, done, arg);
}

static inline void waitroom_status(struct waitroom_port *p, const char *token, int64_t user_id, int64_t now,
                                   struct queue_ticket *out, waitroom_done_fn done, void *arg)
{
    p->room->ops->status(p, token, user_id, now, out, done, arg);
}

static inline void waitroom_require_active(struct waitroom_port *p, const char *token, int64_t user_id,
                                           int64_t concert_id, int64_t now, waitroom_done_fn done, void *arg)
{
    p->room->ops->require_active(p, token, user_id, concert_id, now, done, arg);
}

static inline void waitroom_leave(struct waitroom_port *p, const char *token, int64_t user_id, int64_t now,
                                  waitroom_done_fn done, void *arg)
{
    p->room->ops->leave(p, token, user_id, now, done, arg);
}

static inline void waitroom_complete(struct waitroom_port *p, const char *token, int64_t user_id, int64_t now,
                                     waitroom_done_fn done, void *arg)
{
    p->room->ops->complete(p, token, user_id, now, done, arg);
}

static inline void waitroom_tick(struct waitroom_port *p, int64_t now, waitroom_done_fn done, void *arg)
{
    p->room->ops->tick(p, now, done, arg);
}

/* Opens the backend named by --queue: "memory" (persisted through `persist`,
 * a store connection the waitroom then owns) or "redis://…". NULL on failure. */
struct waitroom *waitroom_open(const char *url, const struct waitroom_config *cfg, struct store *persist, int64_t now,
                               char *err, size_t errlen);
struct waitroom *waitroom_redis_open(const char *url, const struct waitroom_config *cfg, char *err, size_t errlen);
struct waitroom *waitroom_mem_open(const struct waitroom_config *cfg, struct store *persist, int64_t now, char *err,
                                   size_t errlen);

#endif
