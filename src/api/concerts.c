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
#include <string.h>

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
    /* embedded: the free seats of dates on the seat board are counted there */
    int counted = !workers_have_writer();
    bx_err e = s->ops->schedule_list_bookable(s, c->id, c->now, counted, &list, &n);
    for (size_t i = 0; e == BX_OK && !counted && i < n; i++)
        if (!seat_board_available(list[i].id, c->now, &list[i].available)) {
            free(list); /* a date nobody looked at yet: let the store count them all */
            list = NULL;
            e = s->ops->schedule_list_bookable(s, c->id, c->now, true, &list, &n);
            break;
        }
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

/* The status a seat shows at `now`: a hold that has ended is AVAILABLE (SPEC §6,
 * before any sweep). */
static enum seat_status status_at(const struct seat *x, int64_t now)
{
    return x->status == SEAT_HELD && x->hold_ends_at <= now ? SEAT_AVAILABLE : x->status;
}

/* The compact form's fields after its ids: seatCount, the price (price < 0: the
 * prices of `seats`, which differ) and one flag character per seat number. */
static void put_compact_fields(struct jsonout *j, int32_t count, int64_t price, const struct seat *seats, size_t n,
                               const char *flags)
{
    jsonout_field_int(j, "seatCount", count);
    if (price >= 0)
        jsonout_field_int(j, "price", price);
    else {
        jsonout_key(j, "prices");
        jsonout_array_begin(j);
        for (size_t i = 0; i < n; i++)
            jsonout_int(j, seats[i].price);
        jsonout_array_end(j);
    }
    jsonout_key(j, "availability");
    jsonout_string_len(j, flags, (size_t)count);
}

/* The compact form: one character per seat number from 1 ('1' available, '0' not,
 * or no such seat) and the price, or every seat's price when they differ. */
static void render_compact(struct jsonout *j, const struct seat *seats, size_t n, int64_t now)
{
    int32_t count = n ? seats[n - 1].seat_no : 0; /* ordered by seat_no */
    int uniform = 1;
    for (size_t i = 1; i < n && uniform; i++)
        uniform = seats[i].price == seats[0].price;
    char *flags = malloc((size_t)count + 1);
    if (flags == NULL) {
        j->failed = true; /* answered as out of memory */
        return;
    }
    memset(flags, '0', (size_t)count);
    for (size_t i = 0; i < n; i++)
        if (seats[i].seat_no >= 1 && status_at(&seats[i], now) == SEAT_AVAILABLE)
            flags[seats[i].seat_no - 1] = '1';
    put_compact_fields(j, count, uniform ? (n ? seats[0].price : 0) : -1, seats, n, flags);
    free(flags);
}

/* Scale-out, compact form: the store folds the seats into flags (one row instead
 * of one per seat). 1 when answered; 0 when the seats have gaps in their numbers
 * or differing prices, for the full read. */
static int seats_list_flags(struct call *c)
{
    struct store *s = c->loop->store;
    int64_t concert_id = 0, price;
    int32_t count;
    char *flags = NULL;
    bx_err e = s->ops->seat_flags(s, c->id, c->now, &concert_id, &count, &price, &flags);
    if (e != BX_OK) {
        call_fail(c, e);
        return 1;
    }
    if (count == 0 || price < 0) {
        free(flags);
        return 0;
    }
    if (api_require_active(c, concert_id) == 0) {
        struct jsonout j;
        jsonout_init(&j);
        jsonout_object_begin(&j);
        jsonout_field_int(&j, "scheduleId", c->id);
        jsonout_field_int(&j, "concertId", concert_id);
        put_compact_fields(&j, count, price, NULL, 0, flags);
        jsonout_object_end(&j);
        call_reply_jsonout(c, 200, &j);
    }
    free(flags);
    return 1;
}

/* A seat map at `now`, full or compact. *valid_until = the first end of a hold in
 * it (INT64_MAX: none). */
static void render_seats(struct jsonout *j, int64_t schedule_id, int64_t concert_id, const struct seat *seats,
                         size_t n, int compact, int64_t now, int64_t *valid_until)
{
    *valid_until = INT64_MAX;
    for (size_t i = 0; i < n; i++)
        if (status_at(&seats[i], now) == SEAT_HELD && seats[i].hold_ends_at < *valid_until)
            *valid_until = seats[i].hold_ends_at;
    jsonout_object_begin(j);
    jsonout_field_int(j, "scheduleId", schedule_id);
    jsonout_field_int(j, "concertId", concert_id);
    if (compact) {
        render_compact(j, seats, n, now);
        jsonout_object_end(j);
        return;
    }
    jsonout_key(j, "seats");
    jsonout_array_begin(j);
    for (size_t i = 0; i < n; i++) {
        enum seat_status st = status_at(&seats[i], now);
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

/* ?format=full (the default) or compact. */
static int seat_map_format(struct call *c, int *compact)
{
    size_t len;
    const char *v = call_query(c, "format", &len);
    *compact = v != NULL && len == 7 && memcmp(v, "compact", 7) == 0;
    if (v == NULL || *compact || (len == 4 && memcmp(v, "full", 4) == 0))
        return 0;
    call_reply_error(c, BX_ERR_VALIDATION, "format", "format must be full or compact");
    return -1;
}

/* Embedded mode: the seats come from memory (api/seat_board.c), and the rendered
 * map is kept per loop until its seats change or a hold in it ends
 * (api/seatmap_cache.c). Nothing is answered before the token check. */
static int seats_list_from_board(struct call *c, int compact, uint64_t version, int64_t concert_id)
{
    struct seatmap_hit hit;
    if (seatmap_cache_get(c->loop, c->id, compact, version, c->now, &hit)) {
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
    render_seats(&j, c->id, concert_id, seats, n, compact, c->now, &valid_until);
    free(seats);
    size_t len;
    const char *text = jsonout_text(&j, &len);
    if (text != NULL)
        seatmap_cache_put(c->loop, c->id, compact, concert_id, version, valid_until, text, len);
    call_reply_jsonout(c, 200, &j);
    return 0;
}

/* The seats and the schedule's concert come in one store read (the token check
 * needs the concert). In embedded mode that read also fills the seat board. */
void seats_list(struct call *c)
{
    int board = workers_have_writer(), compact;
    uint64_t version, epoch = 0;
    int64_t concert_id = 0;
    if (seat_map_format(c, &compact) != 0)
        return;
    if (board) {
        if (seat_board_get(c->id, &version, &concert_id, 0, NULL, NULL, NULL) &&
            seats_list_from_board(c, compact, version, concert_id) == 0)
            return;
        epoch = seat_board_epoch(); /* before the read */
    } else if (compact && c->loop->store->ops->seat_flags != NULL && seats_list_flags(c))
        return;
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
    render_seats(&j, c->id, concert_id, seats, n, compact, c->now, &valid_until);
    free(seats);
    call_reply_jsonout(c, 200, &j);
}
