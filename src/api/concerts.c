/* concerts.c — the catalogue: concert list (public), bookable dates and the
 * seat map (both behind an ACTIVE queue token, SPEC §4). */
#include "api/api.h"
#include "app.h"

#include <stdlib.h>

void concerts_list(struct call *c)
{
    struct concert *list = NULL;
    size_t n = 0;
    bx_err e = c->loop->store->ops->concert_list(c->loop->store, &list, &n);
    if (e != BX_OK) {
        call_fail(c, e);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:I, s:s, s:s}", "concertId", (json_int_t)list[i].id, "title",
                                             list[i].title, "venue", list[i].venue));
    free(list);
    call_reply_json(c, 200, json_pack("{s:o}", "concerts", arr));
}

void schedules_list(struct call *c)
{
    struct store *s = c->loop->store;
    struct concert concert;
    bx_err e = s->ops->concert_get(s, c->id, &concert);
    if (e != BX_OK) {
        call_fail(c, e);
        return;
    }
    if (api_require_active(c, c->id) != 0)
        return;
    struct schedule *list = NULL;
    size_t n = 0;
    if ((e = s->ops->schedule_list_bookable(s, c->id, c->now, &list, &n)) != BX_OK) {
        call_fail(c, e);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:I, s:s, s:i, s:i}", "scheduleId", (json_int_t)list[i].id, "startsAt",
                                             call_time(c, list[i].starts_at), "availableSeats", list[i].available,
                                             "totalSeats", list[i].seat_count));
    free(list);
    call_reply_json(c, 200, json_pack("{s:I, s:o}", "concertId", (json_int_t)c->id, "schedules", arr));
}

void seats_list(struct call *c)
{
    struct store *s = c->loop->store;
    struct schedule sched;
    bx_err e = s->ops->schedule_get(s, c->id, c->now, &sched);
    if (e != BX_OK) {
        call_fail(c, e);
        return;
    }
    if (api_require_active(c, sched.concert_id) != 0)
        return;
    struct seat *seats = NULL;
    size_t n = 0;
    if ((e = s->ops->seat_list(s, c->id, c->now, &seats, &n)) != BX_OK) {
        call_fail(c, e);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:i, s:I, s:b, s:s}", "seatNo", seats[i].seat_no, "price",
                                             (json_int_t)seats[i].price, "available", seats[i].available,
                                             "status", seat_status_name(seats[i].status)));
    free(seats);
    call_reply_json(c, 200, json_pack("{s:I, s:I, s:o}", "scheduleId", (json_int_t)c->id, "concertId",
                                      (json_int_t)sched.concert_id, "seats", arr));
}
