/* reservations.c — seat holds (SPEC §3, §6): hold, read, list, release.
 * Holding needs an ACTIVE queue token for the schedule's concert. */
#include "api/api.h"
#include "api/seat_board.h"
#include "app.h"
#include "http/metrics.h"
#include "http/workers.h"

#include <stdlib.h>

json_t *api_reservation_json(struct call *c, const struct reservation *r)
{
    json_t *o = json_pack("{s:I, s:I, s:I, s:i, s:I, s:s, s:s, s:s}", "reservationId", (json_int_t)r->id, "scheduleId",
                          (json_int_t)r->schedule_id, "concertId", (json_int_t)r->concert_id, "seatNo", r->seat_no,
                          "price", (json_int_t)r->price, "status", reservation_status_name(r->status), "heldAt",
                          call_time(c, r->held_at), "expiresAt", call_time(c, r->expires_at));
    json_object_set_new(o, "confirmedAt", r->confirmed_at ? json_string(call_time(c, r->confirmed_at)) : json_null());
    return o;
}

/* A hold travels to the store writer (group commit) and back. */
struct hold_job {
    int64_t user_id, schedule_id, now;
    int32_t seat_no;
    bx_err result;
    struct reservation r;
};

static void hold_run(struct store *s, void *payload)
{
    struct hold_job *j = payload;
    j->result = s->ops->hold_seat(s, j->user_id, j->schedule_id, j->seat_no, j->now, app.cfg.hold_ttl * 1000,
                                  app.cfg.max_seats_per_user, &j->r);
}

static void hold_committed(void *payload)
{
    const struct hold_job *j = payload;
    if (j->result == BX_OK)
        seat_board_set(j->schedule_id, j->seat_no, SEAT_HELD, j->r.expires_at);
}

static void hold_done(struct call *c, bx_err batch_err, void *payload)
{
    struct hold_job *j = payload;
    bx_err e = batch_err != BX_OK ? batch_err : j->result;
    metrics_observe_event(METRIC_HOLD, e);
    if (batch_err != BX_OK)
        seat_board_forget_all(); /* whatever the failed commit left */
    if (c == NULL)
        return;
    if (e != BX_OK) {
        call_fail(c, e);
        return;
    }
    call_reply_json(c, 201, api_reservation_json(c, &j->r));
}

void reservations_create(struct call *c)
{
    int64_t schedule_id, seat_no;
    if (api_rate_limit(c, RATE_HOLD, (uint64_t)c->user_id) != 0 || call_body(c) ||
        call_body_int(c, "scheduleId", &schedule_id) || call_body_int(c, "seatNo", &seat_no))
        return;
    struct store *s = c->loop->store;
    struct schedule sched;
    bx_err e = schedule_id > 0 ? s->ops->schedule_get(s, schedule_id, c->now, false, &sched) : BX_ERR_SCHEDULE_NOT_FOUND;
    if (e != BX_OK) {
        call_fail(c, e);
        return;
    }
    if (api_require_active(c, sched.concert_id) != 0)
        return;
    if (seat_no < 1 || seat_no > sched.seat_count) {
        call_fail(c, BX_ERR_SEAT_NOT_FOUND);
        return;
    }
    struct hold_job j = {.user_id = c->user_id, .schedule_id = schedule_id, .seat_no = (int32_t)seat_no, .now = c->now};
    if (workers_write(c, &j, sizeof j, hold_run, hold_committed, hold_done) != 0)
        call_fail(c, BX_ERR_UNAVAILABLE);
}

void reservations_get(struct call *c)
{
    struct reservation r;
    bx_err e = c->loop->store->ops->reservation_get(c->loop->store, c->user_id, c->id, c->now, &r);
    if (e != BX_OK) {
        call_fail(c, e);
        return;
    }
    call_reply_json(c, 200, api_reservation_json(c, &r));
}

struct cancel_job {
    int64_t user_id, reservation_id, now;
    bx_err result;
};

static void cancel_run(struct store *s, void *payload)
{
    struct cancel_job *j = payload;
    j->result = s->ops->reservation_cancel(s, j->user_id, j->reservation_id, j->now);
}

/* The freed seat is not named here, and cancels are rare: forget every seat. */
static void cancel_committed(void *payload)
{
    const struct cancel_job *j = payload;
    if (j->result == BX_OK)
        seat_board_forget_all();
}

static void cancel_done(struct call *c, bx_err batch_err, void *payload)
{
    struct cancel_job *j = payload;
    bx_err e = batch_err != BX_OK ? batch_err : j->result;
    if (batch_err != BX_OK)
        seat_board_forget_all();
    if (c == NULL)
        return;
    if (e != BX_OK) {
        call_fail(c, e);
        return;
    }
    call_reply_empty(c, 204);
}

void reservations_cancel(struct call *c)
{
    struct cancel_job j = {.user_id = c->user_id, .reservation_id = c->id, .now = c->now};
    if (workers_write(c, &j, sizeof j, cancel_run, cancel_committed, cancel_done) != 0)
        call_fail(c, BX_ERR_UNAVAILABLE);
}

void reservations_list_mine(struct call *c)
{
    struct reservation *list = NULL;
    size_t n = 0;
    bx_err e = c->loop->store->ops->reservation_list(c->loop->store, c->user_id, c->now, &list, &n);
    if (e != BX_OK) {
        call_fail(c, e);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, api_reservation_json(c, &list[i]));
    free(list);
    call_reply_json(c, 200, json_pack("{s:o}", "reservations", arr));
}
