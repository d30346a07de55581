/* reservations.c — seat holds (CONTRACT §3, §6): hold, read, list, release.
 * Holding needs an ACTIVE queue token for the schedule's concert. */
#include "api/api.h"
#include "app.h"
#include "http/metrics.h"

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

/* A hold: the schedule, the gate, then the write. */
struct hold_state {
    struct schedule sched;
    struct store_write w;
};

static void hold_written(void *arg, bx_err e)
{
    struct hold_state *st = arg;
    metrics_observe_event(METRIC_HOLD, e);
    struct call *c = call_resume_ok(st, e);
    if (c == NULL)
        return;
    call_reply_json(c, 201, api_reservation_json(c, &st->w.reservation));
}

static void hold_admitted(void *arg, bx_err e)
{
    struct hold_state *st = arg;
    struct call *c = call_resume(st);
    if (c == NULL)
        return;
    if (e != BX_OK) {
        api_gate_fail(c, e);
        return;
    }
    if (st->w.seat_no < 1 || st->w.seat_no > st->sched.seat_count) {
        call_fail(c, BX_ERR_SEAT_NOT_FOUND);
        return;
    }
    call_step_begin(c);
    astore_write(c->loop->store, &st->w, hold_written, st);
}

static void hold_schedule_found(void *arg, bx_err e)
{
    struct hold_state *st = arg;
    struct call *c = call_resume_ok(st, e);
    if (c == NULL)
        return;
    api_require_active(c, st->sched.concert_id, hold_admitted, st);
}

static void hold_allowed(struct call *c)
{
    int64_t schedule_id, seat_no;
    if (call_body(c) || call_body_int(c, "scheduleId", &schedule_id) || call_body_int(c, "seatNo", &seat_no))
        return;
    if (schedule_id <= 0) {
        call_fail(c, BX_ERR_SCHEDULE_NOT_FOUND);
        return;
    }
    struct hold_state *st = call_state(c, sizeof *st, NULL);
    st->w = (struct store_write){.kind = STORE_WRITE_HOLD,
                                 .user_id = c->user_id,
                                 .now = c->now,
                                 .schedule_id = schedule_id,
                                 .seat_no = seat_no < 1 || seat_no > INT32_MAX ? 0 : (int32_t)seat_no,
                                 .hold_ms = app.cfg.hold_ttl * 1000,
                                 .max_per_user = app.cfg.max_seats_per_user};
    /* a schedule the store has in memory needs no read: its concert and seats never change */
    if (astore_schedule_peek(c->loop->store, schedule_id, &st->sched.concert_id, &st->sched.seat_count)) {
        api_require_active(c, st->sched.concert_id, hold_admitted, st);
        return;
    }
    call_step_begin(c);
    astore_schedule_get(c->loop->store, schedule_id, &st->sched, hold_schedule_found, st);
}

void reservations_create(struct call *c)
{
    api_rate_limit(c, RATE_HOLD, (uint64_t)c->user_id, hold_allowed);
}

struct reservation_state {
    struct reservation r;
};

static void reservation_found(void *arg, bx_err e)
{
    struct reservation_state *st = arg;
    struct call *c = call_resume_ok(st, e);
    if (c == NULL)
        return;
    call_reply_json(c, 200, api_reservation_json(c, &st->r));
}

void reservations_get(struct call *c)
{
    struct reservation_state *st = call_state(c, sizeof *st, NULL);
    call_step_begin(c);
    astore_reservation_get(c->loop->store, c->user_id, c->id, c->now, &st->r, reservation_found, st);
}

static void cancel_written(void *arg, bx_err e)
{
    struct call *c = call_resume_ok(arg, e);
    if (c != NULL)
        call_reply_empty(c, 204);
}

void reservations_cancel(struct call *c)
{
    struct store_write *w = call_state(c, sizeof *w, NULL);
    *w = (struct store_write){.kind = STORE_WRITE_CANCEL, .user_id = c->user_id, .now = c->now, .reservation_id = c->id};
    call_step_begin(c);
    astore_write(c->loop->store, w, cancel_written, w);
}

struct list_state {
    struct reservation *list;
    size_t n;
};

static void list_release(void *state)
{
    free(((struct list_state *)state)->list);
}

static void list_found(void *arg, bx_err e)
{
    struct list_state *st = arg;
    struct call *c = call_resume_ok(st, e);
    if (c == NULL)
        return;
    json_t *arr = json_array();
    for (size_t i = 0; i < st->n; i++)
        json_array_append_new(arr, api_reservation_json(c, &st->list[i]));
    call_reply_json(c, 200, json_pack("{s:o}", "reservations", arr));
}

void reservations_list_mine(struct call *c)
{
    struct list_state *st = call_state(c, sizeof *st, list_release);
    call_step_begin(c);
    astore_reservation_list(c->loop->store, c->user_id, c->now, &st->list, &st->n, list_found, st);
}
