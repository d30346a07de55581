/* waitroom.h — the waiting-room interface (SPEC §4). One `struct waitroom` is
 * shared by all event loops of a process and is safe to call from any thread.
 * Backends: waitroom_mem.c (embedded, persisted through the store),
 * waitroom_redis.c (scale-out, shared by N instances). Times are Unix milliseconds. */
#ifndef BX_QUEUE_WAITROOM_H
#define BX_QUEUE_WAITROOM_H

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
    double admit_rate_avg; /* measured admissions per second (moving average) */
};

struct waitroom;

/* Told that the changes it waited for are durable (e == BX_OK), or that writing
 * them failed for now (they are retried; whoever waits answers 503). Runs on
 * whichever thread made them durable. */
typedef void (*waitroom_durable_fn)(void *arg, bx_err e);

struct waitroom_ops {
    const char *name;
    void (*close)(struct waitroom *w);
    bx_err (*ping)(struct waitroom *w);
    /* Issues a token for (user, concert), or returns the live one (*created = false).
     * The concert's existence is checked by the caller. May admit at once. */
    bx_err (*issue)(struct waitroom *w, int64_t user_id, int64_t concert_id, int64_t now, struct queue_ticket *out,
                    bool *created);
    /* Polls a token: refreshes its liveness and fills out. QUEUE_TOKEN_INVALID
     * (unknown), TOKEN_NOT_YOURS, TOKEN_EXPIRED. */
    bx_err (*status)(struct waitroom *w, const char *token, int64_t user_id, int64_t now, struct queue_ticket *out);
    /* Gate of the booking endpoints: the token must be the user's, ACTIVE and
     * for concert_id; refreshes its liveness. QUEUE_TOKEN_INVALID, TOKEN_NOT_YOURS,
     * TOKEN_EXPIRED, QUEUE_NOT_ACTIVE (WAITING, or another concert). */
    bx_err (*require_active)(struct waitroom *w, const char *token, int64_t user_id, int64_t concert_id, int64_t now);
    /* The user leaves the queue (any live status): token EXPIRED, slot freed. */
    bx_err (*leave)(struct waitroom *w, const char *token, int64_t user_id, int64_t now);
    /* The user paid: the ACTIVE token is EXPIRED and its slot goes to the next in line. */
    bx_err (*complete)(struct waitroom *w, const char *token, int64_t user_id, int64_t now);
    /* Housekeeping, called about every 100 ms by one thread per process (with Redis,
     * any number of instances may tick at once): expire idle tokens,
     * admit the oldest WAITING tokens into free slots (FIFO, admit_rate), update
     * the measured admission rate. */
    bx_err (*tick)(struct waitroom *w, int64_t now);
    /* Fills up to cap entries; *n = count written. */
    bx_err (*stats)(struct waitroom *w, struct waitroom_concert_stats *out, size_t cap, size_t *n);
    /* Optional (NULL: every change is durable when its op returns). Arranges for
     * fn(arg, e) once every change made so far is durable and returns 1; returns 0
     * when that is already so (fn is not called), -1 when out of memory. A client
     * is told of a new token, or that it left, only after this. */
    int (*when_durable)(struct waitroom *w, waitroom_durable_fn fn, void *arg);
};

struct waitroom {
    const struct waitroom_ops *ops;
};

/* Opens the backend named by --queue: "memory" (persisted through `persist`,
 * a store connection the waitroom then owns) or "redis://…". NULL on failure. */
struct waitroom *waitroom_open(const char *url, const struct waitroom_config *cfg, struct store *persist, int64_t now,
                               char *err, size_t errlen);
struct waitroom *waitroom_redis_open(const char *url, const struct waitroom_config *cfg, char *err, size_t errlen);
struct waitroom *waitroom_mem_open(const struct waitroom_config *cfg, struct store *persist, int64_t now, char *err,
                                   size_t errlen);

#endif
