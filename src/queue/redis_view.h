/* redis_view.h — what one instance of the Redis waiting room knows between round
 * trips (DESIGN "Waiting room (Redis)"): each concert's figures as the last tick
 * read them, and a cache of the WAITING tokens it has read, so that a poll far
 * back in the line is answered without Redis. Pure memory, no I/O; shared by every
 * loop of the process under its own locks. Private to waitroom_redis.c.
 *
 * A token's cached read holds its exact position p0 and the concert's counters
 * admitted_total A0 and departed_total D0 read in the same script. Later, with the
 * tick's counters A and D: every admission since took someone ahead (admission is
 * FIFO and the token still waits), so p = p0 - (A - A0) is never ahead of the true
 * position; it can be behind by the departures ahead since the read (at most
 * D - D0) and by what happened since the figures were read (the view's age).
 * A poll is answered with p only while those bounds are small (see
 * struct redis_view_rules); anything else goes to Redis. */
#ifndef BX_QUEUE_REDIS_VIEW_H
#define BX_QUEUE_REDIS_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "domain/types.h"
#include "queue/waitroom.h"

/* One concert's figures. */
struct redis_view_concert {
    int64_t concert_id;
    int64_t waiting;
    int64_t active;
    int64_t admitted_total; /* admissions ever */
    int64_t departed_total; /* WAITING tokens that left or expired, ever */
    double rate;            /* measured admissions per second */
    struct queue_pace pace; /* the line's pace (the estimated wait) */
};

/* When a poll may be answered from the view (all times in the callers' ms). */
struct redis_view_rules {
    int64_t fresh_ms;    /* the concert's figures were read at most this long ago */
    int64_t exact_depth; /* the estimate is deeper in the line than this */
    int64_t read_max_ms; /* the token's exact read is at most this old */
    int64_t drift_div;   /* departures since that read are at most estimate / drift_div */
    int64_t silent_ms;   /* the token was polled here less than this long ago (else it may have expired idle) */
};

struct redis_view;

/* NULL when out of memory. token_slots: how many tokens are cached at most
 * (rounded up to a multiple of the cache's associativity). */
struct redis_view *redis_view_new(const struct redis_view_rules *rules, size_t token_slots);
void redis_view_free(struct redis_view *v);

/* Replaces every concert's figures with these n, read at `at`. -1 when out of
 * memory (the old figures stay). */
int redis_view_publish(struct redis_view *v, const struct redis_view_concert *c, size_t n, int64_t at);
/* True when the figures were read at most fresh_ms before now and hold the
 * concert: the tick that read them found it in the tick set. */
bool redis_view_listed(struct redis_view *v, int64_t concert_id, int64_t now);
/* Up to cap concerts in id order, as /metrics shows them; returns the count. */
size_t redis_view_stats(struct redis_view *v, struct waitroom_concert_stats *out, size_t cap);

/* An exact read of a WAITING token at `now`: its position and its concert's
 * counters from the same script. Redis saw it polled then. */
void redis_view_token_read(struct redis_view *v, const char *token, int64_t user_id, int64_t concert_id,
                           int64_t position, int64_t admitted_total, int64_t departed_total, int64_t now);
/* The token is no longer known to wait (any other answer about it). */
void redis_view_token_forget(struct redis_view *v, const char *token);
/* A poll at `now` answered from the view: true with the estimated position and the
 * concert's pace when the rules allow it; the token then counts as polled at now
 * (written back to Redis by the next redis_view_take_polled). */
bool redis_view_poll(struct redis_view *v, const char *token, int64_t user_id, int64_t concert_id, int64_t now,
                     int64_t *position, struct queue_pace *pace);

/* A poll Redis has not seen. */
struct redis_view_polled {
    char token[BX_QUEUE_TOKEN_LEN + 1];
    int64_t concert_id;
    int64_t polled_at;
};
/* The tokens polled here since Redis last saw them, sorted by concert, in *out
 * (malloc'd, the caller frees); from now on they count as seen. Returns the count
 * (0: *out is NULL), or -1 when out of memory (nothing taken). */
long redis_view_take_polled(struct redis_view *v, struct redis_view_polled **out);

#endif
