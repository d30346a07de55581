/* concerts.c — the catalogue: concert list (public), bookable dates and the
 * seat map (both behind an ACTIVE queue token, SPEC §4). These are the hottest
 * reads, so they are written with jsonout rather than jansson trees. */
#include "api/api.h"
#include "api/seat_board.h"
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

/* A seat map at `now`: a hold that has ended shows as AVAILABLE (SPEC §6, before
 * any sweep). *valid_until = the first end of a hold in it (INT64_MAX: none). */
static void render_seats(struct jsonout *j, int64_t schedule_id, int64_t concert_id, const struct seat *seats,
                         size_t n, int64_t now, int64_t *valid_until)
{
    *valid_until = INT64_MAX;
    jsonout_object_begin(j);
    jsonout_field_int(j, "scheduleId", schedule_id);
    jsonout_field_int(j, "concertId", concert_id);
    jsonout_key(j, "seats");
    jsonout_array_begin(j);
    for (size_t i = 0; i < n; i++) {
        enum seat_status st = seats[i].status;
        if (st == SEAT_HELD && seats[i].hold_ends_at <= now)
            st = SEAT_AVAILABLE;
        else if (st == SEAT_HELD && seats[i].hold_ends_at < *valid_until)
            *valid_until = seats[i].hold_ends_at;
        jsonout_object_begin(j);
        jsonout_field_int(j, "seatNo", seats[i].seat_no);
        jsonout_field_int(j, "price", seats[i].price);
        jsonout_field_bool(j, "available", st == SEAT_AVAILABLE);
        jsonout_field_string(j, "status", seat_status_name(st));
        jsonout_object_end(j);
    }
    jsonout_array_end(j);
    jsonout_object_end(j);
}

/* Embedded mode: the seats come from memory (api/seat_board.c), and the rendered
 * map is kept per loop until its seats change or a hold in it ends
 * (api/seatmap_cache.c). Nothing is answered before the token check. */
static int seats_list_from_board(struct call *c, uint64_t version, int64_t concert_id)
{
    struct seatmap_hit hit;
    if (seatmap_cache_get(c->loop, c->id, version, c->now, &hit)) {
        if (api_require_active(c, hit.concert_id) == 0)
            call_reply_json_text(c, 200, hit.body, hit.len);
        return 0;
    }
    if (api_require_active(c, concert_id) != 0)
        return 0;
    struct seat *seats = NULL;
    size_t cap = 0, n = 0;
    if (!seat_board_get(c->id, &version, &concert_id, 1, &seats, &cap, &n)) {
        free(seats);
        return -1; /* forgotten in between, or out of memory: read the store */
    }
    struct jsonout j;
    int64_t valid_until;
    jsonout_init(&j);
    render_seats(&j, c->id, concert_id, seats, n, c->now, &valid_until);
    free(seats);
    size_t len;
    const char *text = jsonout_text(&j, &len);
    if (text != NULL)
        seatmap_cache_put(c->loop, c->id, concert_id, version, valid_until, text, len);
    call_reply_jsonout(c, 200, &j);
    return 0;
}

/* The seats and the schedule's concert come in one store read (the token check
 * needs the concert). In embedded mode that read also fills the seat board. */
void seats_list(struct call *c)
{
    int board = workers_have_writer();
    uint64_t version, epoch = 0;
    int64_t concert_id = 0;
    if (board) {
        if (seat_board_get(c->id, &version, &concert_id, 0, NULL, NULL, NULL) &&
            seats_list_from_board(c, version, concert_id) == 0)
            return;
        epoch = seat_board_epoch(); /* before the read */
    }
    struct store *s = c->loop->store;
    struct seat *seats = NULL;
    size_t n = 0;
    bx_err e = s->ops->seat_list(s, c->id, c->now, &concert_id, &seats, &n);
    if (e != BX_OK) {
        call_fail(c, e);
        return;
    }
    if (board)
        seat_board_put(epoch, c->id, concert_id, seats, n);
    if (api_require_active(c, concert_id) != 0) {
        free(seats);
        return;
    }
    struct jsonout j;
    int64_t valid_until;
    jsonout_init(&j);
    render_seats(&j, c->id, concert_id, seats, n, c->now, &valid_until);
    free(seats);
    call_reply_jsonout(c, 200, &j);
}
