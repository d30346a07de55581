/* astore.h — the store as the serving path uses it: asynchronous, one `struct
 * astore` per event loop, opened and used by that loop's thread only. Every call
 * returns at once and answers through done(arg, e) on the same loop, so no loop
 * ever waits on the network.
 *
 * Backends:
 *   astore_sqlite.c (embedded): reads run on the loop's own SQLite connection
 *     and answer before the call returns (SQLite reads the page cache; this is the
 *     embedded model, kept on purpose); writes go to the group-commit writer
 *     (store/group_commit.c) and answer after their batch is durable.
 *   astore_pg.c (scale-out): statements are pipelined on the loop's PostgreSQL
 *     connections (store/pg_conn.c); writes that arrive together share one
 *     round trip and one commit; seat maps and date lists come from the loop's
 *     seat board, kept exact by PostgreSQL's notifications of seat changes.
 *
 * Rules for callers:
 *   - done may run before the call returns; do not touch state after starting a
 *     call unless the state outlives it.
 *   - Inputs (strings, structs) are copied before the call returns. Outputs must
 *     stay valid until done runs: keep them in state that outlives the request
 *     (api/: call_state), never in the request's pool.
 *   - Lists are malloc'd by the store and freed by the caller; on an error
 *     nothing is allocated.
 *   - e == BX_ERR_UNAVAILABLE: the database could not be reached in time (503).
 *     For a write, whether it committed is then unknown (clients retry with
 *     their Idempotency-Key). */
#ifndef BX_STORE_ASTORE_H
#define BX_STORE_ASTORE_H

#define H2O_USE_LIBUV 0
#include <h2o.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "domain/errors.h"
#include "domain/types.h"
#include "store/store.h"

struct astore;

typedef void (*astore_done_fn)(void *arg, bx_err e);

/* A schedule's seat map. version names the seats' states: the same schedule at
 * the same version has the same seats (a hold still ends at its time: compare
 * hold_ends_at with the clock). */
struct seat_map {
    int64_t concert_id;
    uint64_t version;   /* 0: none (this map cannot be told apart from others: keep no copy) */
    struct seat *seats; /* by seat_no, malloc'd; NULL when the caller's copy is current */
    size_t n;
};

/* Each backend fills one table; callers use the astore_* wrappers below. */
struct astore_ops {
    const char *name;
    void (*close)(struct astore *a);
    void (*housekeeping)(struct astore *a, int64_t now);
    void (*ping)(struct astore *a, astore_done_fn done, void *arg);
    void (*user_create)(struct astore *a, const char *name, const char *pwhash, int64_t *user_id,
                        astore_done_fn done, void *arg);
    void (*user_find_by_name)(struct astore *a, const char *name, struct user *out, astore_done_fn done, void *arg);
    void (*balance_get)(struct astore *a, int64_t user_id, int64_t *balance, astore_done_fn done, void *arg);
    void (*concert_create)(struct astore *a, const char *title, const char *venue, int64_t *concert_id,
                           astore_done_fn done, void *arg);
    void (*concert_get)(struct astore *a, int64_t concert_id, struct concert *out, astore_done_fn done, void *arg);
    void (*concert_list)(struct astore *a, struct concert **out, size_t *n, astore_done_fn done, void *arg);
    void (*schedule_create)(struct astore *a, const struct schedule *in, int64_t price, int64_t *schedule_id,
                            astore_done_fn done, void *arg);
    void (*schedule_get)(struct astore *a, int64_t schedule_id, struct schedule *out, astore_done_fn done,
                         void *arg);
    bool (*schedule_peek)(struct astore *a, int64_t schedule_id, int64_t *concert_id, int32_t *seat_count);
    void (*dates)(struct astore *a, int64_t concert_id, int64_t now, struct schedule **out, size_t *n,
                  astore_done_fn done, void *arg);
    void (*seats)(struct astore *a, int64_t schedule_id, int64_t now, uint64_t known, struct seat_map *out,
                  astore_done_fn done, void *arg);
    void (*reservation_get)(struct astore *a, int64_t user_id, int64_t reservation_id, int64_t now,
                            struct reservation *out, astore_done_fn done, void *arg);
    void (*reservation_list)(struct astore *a, int64_t user_id, int64_t now, struct reservation **out, size_t *n,
                             astore_done_fn done, void *arg);
    void (*payment_list)(struct astore *a, int64_t user_id, int64_t before_id, int limit, struct payment **out,
                         size_t *n, astore_done_fn done, void *arg);
    void (*counts)(struct astore *a, int64_t now, int64_t *holds_live, int64_t *seats_sold, astore_done_fn done,
                   void *arg);
    void (*write)(struct astore *a, struct store_write *w, astore_done_fn done, void *arg);
};

struct astore {
    const struct astore_ops *ops;
};

/* The process-wide part of the serving store, before any loop opens its own:
 * the embedded group-commit writer (with its own connection) and seat board.
 * 0 on success; a reason in err otherwise. astore_stop drains and ends it, after
 * every loop closed its store. */
int astore_start(const char *url, char *err, size_t errlen);
void astore_stop(void);

/* Opens the serving store of one loop for the --db URL, on that loop's thread.
 * queue: the loop's h2o multithread queue (answers made on other threads come
 * back through it). NULL and a reason in err on failure. */
struct astore *astore_open(const char *url, h2o_evloop_t *loop, h2o_multithread_queue_t *queue, char *err,
                           size_t errlen);
struct astore *astore_sqlite_open(const char *path, h2o_evloop_t *loop, h2o_multithread_queue_t *queue, char *err,
                                  size_t errlen);
struct astore *astore_pg_open(const char *url, h2o_evloop_t *loop, h2o_multithread_queue_t *queue, char *err,
                              size_t errlen);
/* The embedded backend's process-wide part (astore_start / astore_stop). */
int astore_sqlite_start(const char *path, char *err, size_t errlen);
void astore_sqlite_stop(void);

/* Every call in flight has had its done called first (BX_ERR_UNAVAILABLE). */
static inline void astore_close(struct astore *a)
{
    a->ops->close(a);
}

/* Periodic work of the store, about every 100 ms from one loop per process (the
 * hold sweeper in scale-out; the embedded writer sweeps on its own). */
static inline void astore_housekeeping(struct astore *a, int64_t now)
{
    a->ops->housekeeping(a, now);
}

static inline void astore_ping(struct astore *a, astore_done_fn done, void *arg)
{
    a->ops->ping(a, done, arg);
}

/* Sign-up. NAME_TAKEN. */
static inline void astore_user_create(struct astore *a, const char *name, const char *pwhash, int64_t *user_id,
                                      astore_done_fn done, void *arg)
{
    a->ops->user_create(a, name, pwhash, user_id, done, arg);
}

/* NOT_FOUND. */
static inline void astore_user_find_by_name(struct astore *a, const char *name, struct user *out,
                                            astore_done_fn done, void *arg)
{
    a->ops->user_find_by_name(a, name, out, done, arg);
}

/* NOT_FOUND. */
static inline void astore_balance_get(struct astore *a, int64_t user_id, int64_t *balance, astore_done_fn done,
                                      void *arg)
{
    a->ops->balance_get(a, user_id, balance, done, arg);
}

static inline void astore_concert_create(struct astore *a, const char *title, const char *venue,
                                         int64_t *concert_id, astore_done_fn done, void *arg)
{
    a->ops->concert_create(a, title, venue, concert_id, done, arg);
}

/* CONCERT_NOT_FOUND. */
static inline void astore_concert_get(struct astore *a, int64_t concert_id, struct concert *out, astore_done_fn done,
                                      void *arg)
{
    a->ops->concert_get(a, concert_id, out, done, arg);
}

static inline void astore_concert_list(struct astore *a, struct concert **out, size_t *n, astore_done_fn done,
                                       void *arg)
{
    a->ops->concert_list(a, out, n, done, arg);
}

/* Creates the schedule and seats 1..seat_count at price. CONCERT_NOT_FOUND. */
static inline void astore_schedule_create(struct astore *a, const struct schedule *in, int64_t price,
                                          int64_t *schedule_id, astore_done_fn done, void *arg)
{
    a->ops->schedule_create(a, in, price, schedule_id, done, arg);
}

/* The schedule's row; out->available is -1 (not counted). SCHEDULE_NOT_FOUND. */
static inline void astore_schedule_get(struct astore *a, int64_t schedule_id, struct schedule *out,
                                       astore_done_fn done, void *arg)
{
    a->ops->schedule_get(a, schedule_id, out, done, arg);
}

/* A schedule's concert and seat count when the store has them in memory (they
 * never change), without I/O and without waiting: true then. */
static inline bool astore_schedule_peek(struct astore *a, int64_t schedule_id, int64_t *concert_id,
                                        int32_t *seat_count)
{
    return a->ops->schedule_peek(a, schedule_id, concert_id, seat_count);
}

/* Dates of a concert on sale at `now` (sale_opens_at <= now < sale_closes_at), by
 * starts_at, each with its seats available at `now`. */
static inline void astore_dates(struct astore *a, int64_t concert_id, int64_t now, struct schedule **out, size_t *n,
                                astore_done_fn done, void *arg)
{
    a->ops->dates(a, concert_id, now, out, n, done, arg);
}

/* A schedule's seat map at `now`. When its version equals `known` (0: none),
 * out->seats is NULL: the caller's copy is still right. SCHEDULE_NOT_FOUND. */
static inline void astore_seats(struct astore *a, int64_t schedule_id, int64_t now, uint64_t known,
                                struct seat_map *out, astore_done_fn done, void *arg)
{
    a->ops->seats(a, schedule_id, now, known, out, done, arg);
}

/* The owner's reservation; anyone else's id is RESERVATION_NOT_FOUND. */
static inline void astore_reservation_get(struct astore *a, int64_t user_id, int64_t reservation_id, int64_t now,
                                          struct reservation *out, astore_done_fn done, void *arg)
{
    a->ops->reservation_get(a, user_id, reservation_id, now, out, done, arg);
}

/* The user's reservations, newest first. */
static inline void astore_reservation_list(struct astore *a, int64_t user_id, int64_t now, struct reservation **out,
                                           size_t *n, astore_done_fn done, void *arg)
{
    a->ops->reservation_list(a, user_id, now, out, n, done, arg);
}

/* Newest first; before_id 0 = from the newest; at most limit rows. */
static inline void astore_payment_list(struct astore *a, int64_t user_id, int64_t before_id, int limit,
                                       struct payment **out, size_t *n, astore_done_fn done, void *arg)
{
    a->ops->payment_list(a, user_id, before_id, limit, out, n, done, arg);
}

/* Whole-database gauges for /metrics: live holds and sold seats at `now`. */
static inline void astore_counts(struct astore *a, int64_t now, int64_t *holds_live, int64_t *seats_sold,
                                 astore_done_fn done, void *arg)
{
    a->ops->counts(a, now, holds_live, seats_sold, done, arg);
}

/* A hold, cancel, charge or payment (struct store_write, store.h). Writes that
 * arrive together commit together; e is the write's own outcome (BX_OK,
 * BX_REPLAY or its refusal) once its batch is durable, or why the batch failed.
 * The outcome fields of *w are valid when e is BX_OK or BX_REPLAY. */
static inline void astore_write(struct astore *a, struct store_write *w, astore_done_fn done, void *arg)
{
    a->ops->write(a, w, done, arg);
}

#endif
