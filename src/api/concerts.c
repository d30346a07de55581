/* concerts.c — the catalogue: concert list (public), bookable dates and the
 * seat map (both behind an ACTIVE queue token, SPEC §4). These are the hottest
 * reads, so they are written with jsonout rather than jansson trees. */
#include "api/api.h"
#include "api/seatmap_cache.h"
#include "http/workers.h"
#include "app.h"

#include <stdint.h>
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
    struct jsonout j;
    jsonout_init(&j);
    jsonout_object_begin(&j);
    jsonout_key(&j, "concerts");
    jsonout_array_begin(&j);
    for (size_t i = 0; i < n; i++) {
        jsonout_object_begin(&j);
        jsonout_field_int(&j, "concertId", list[i].id);
        jsonout_field_string(&j, "title", list[i].title);
        jsonout_field_string(&j, "venue", list[i].venue);
        jsonout_object_end(&j);
    }
    jsonout_array_end(&j);
    jsonout_object_end(&j);
    free(list);
    call_reply_jsonout(c, 200, &j);
}

void schedules_list(struct call *c)
{
    struct store *s = c->loop->store;
    if (api_require_concert(c, c->id) != 0 || api_require_active(c, c->id) != 0)
        return;
    struct schedule *list = NULL;
    size_t n = 0;
    bx_err e = s->ops->schedule_list_bookable(s, c->id, c->now, &list, &n);
    if (e != BX_OK) {
        call_fail(c, e);
        return;
    }
    struct jsonout j;
    jsonout_init(&j);
    jsonout_object_begin(&j);
    jsonout_field_int(&j, "concertId", c->id);
    jsonout_key(&j, "schedules");
    jsonout_array_begin(&j);
    for (size_t i = 0; i < n; i++) {
        jsonout_object_begin(&j);
        jsonout_field_int(&j, "scheduleId", list[i].id);
        jsonout_field_string(&j, "startsAt", call_time(c, list[i].starts_at));
        jsonout_field_int(&j, "availableSeats", list[i].available);
        jsonout_field_int(&j, "totalSeats", list[i].seat_count);
        jsonout_object_end(&j);
    }
    jsonout_array_end(&j);
    jsonout_object_end(&j);
    free(list);
    call_reply_jsonout(c, 200, &j);
}

/* The seats and the schedule's concert come in one read (the token check needs
 * the concert): a refused token costs that read, as the schedule lookup did. In
 * embedded mode the rendered map is kept per loop until a write or the end of a
 * hold in it (api/seatmap_cache.c). */
void seats_list(struct call *c)
{
    int cacheable = workers_have_writer();
    uint64_t generation = cacheable ? workers_write_generation() : 0; /* before the read */
    struct seatmap_hit hit;
    if (cacheable && seatmap_cache_get(c->loop, c->id, generation, c->now, &hit)) {
        if (api_require_active(c, hit.concert_id) == 0)
            call_reply_json_text(c, 200, hit.body, hit.len);
        return;
    }
    struct store *s = c->loop->store;
    struct seat *seats = NULL;
    size_t n = 0;
    int64_t concert_id = 0;
    bx_err e = s->ops->seat_list(s, c->id, c->now, &concert_id, &seats, &n);
    if (e != BX_OK) {
        call_fail(c, e);
        return;
    }
    if (api_require_active(c, concert_id) != 0) {
        free(seats);
        return;
    }
    struct jsonout j;
    jsonout_init(&j);
    jsonout_object_begin(&j);
    jsonout_field_int(&j, "scheduleId", c->id);
    jsonout_field_int(&j, "concertId", concert_id);
    jsonout_key(&j, "seats");
    jsonout_array_begin(&j);
    int64_t valid_until = INT64_MAX;
    for (size_t i = 0; i < n; i++) {
        jsonout_object_begin(&j);
        jsonout_field_int(&j, "seatNo", seats[i].seat_no);
        jsonout_field_int(&j, "price", seats[i].price);
        jsonout_field_bool(&j, "available", seats[i].available);
        jsonout_field_string(&j, "status", seat_status_name(seats[i].status));
        jsonout_object_end(&j);
        if (seats[i].hold_ends_at > 0 && seats[i].hold_ends_at < valid_until)
            valid_until = seats[i].hold_ends_at;
    }
    jsonout_array_end(&j);
    jsonout_object_end(&j);
    free(seats);
    if (cacheable) {
        size_t len;
        const char *text = jsonout_text(&j, &len);
        if (text != NULL)
            seatmap_cache_put(c->loop, c->id, concert_id, generation, valid_until, text, len);
    }
    call_reply_jsonout(c, 200, &j);
}
