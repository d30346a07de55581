/* concerts.c — the catalogue: concert list (public), bookable dates and the
 * seat map (both behind an ACTIVE queue token, CONTRACT §4). These are the hottest
 * reads, so they are written with jsonout rather than jansson trees. */
#include "api/api.h"
#include "api/seatmap_cache.h"
#include "app.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct concerts_state {
    struct concert *list;
    size_t n;
};

static void concerts_release(void *state)
{
    free(((struct concerts_state *)state)->list);
}

static void concerts_found(void *arg, bx_err e)
{
    struct concerts_state *st = arg;
    struct call *c = call_resume_ok(st, e);
    if (c == NULL)
        return;
    struct jsonout j;
    jsonout_init(&j);
    jsonout_object_begin(&j);
    jsonout_key(&j, "concerts");
    jsonout_array_begin(&j);
    for (size_t i = 0; i < st->n; i++) {
        jsonout_object_begin(&j);
        jsonout_field_int(&j, "concertId", st->list[i].id);
        jsonout_field_string(&j, "title", st->list[i].title);
        jsonout_field_string(&j, "venue", st->list[i].venue);
        jsonout_object_end(&j);
    }
    jsonout_array_end(&j);
    jsonout_object_end(&j);
    call_reply_jsonout(c, 200, &j);
}

void concerts_list(struct call *c)
{
    struct concerts_state *st = call_state(c, sizeof *st, concerts_release);
    call_step_begin(c);
    astore_concert_list(c->loop->store, &st->list, &st->n, concerts_found, st);
}

/* The dates of a concert: it must exist; then the gate and the dates on sale with
 * their free seats are asked at once, and the answer waits for both. */
struct dates_state {
    struct schedule *list;
    size_t n;
    int pending; /* of the gate and the dates */
    bx_err gate_e, dates_e;
};

static void dates_release(void *state)
{
    free(((struct dates_state *)state)->list);
}

static void dates_answer(struct call *c, struct dates_state *st)
{
    if (st->gate_e != BX_OK) {
        api_gate_fail(c, st->gate_e);
        return;
    }
    if (st->dates_e != BX_OK) {
        call_fail(c, st->dates_e);
        return;
    }
    struct jsonout j;
    jsonout_init(&j);
    jsonout_object_begin(&j);
    jsonout_field_int(&j, "concertId", c->id);
    jsonout_key(&j, "schedules");
    jsonout_array_begin(&j);
    for (size_t i = 0; i < st->n; i++) {
        jsonout_object_begin(&j);
        jsonout_field_int(&j, "scheduleId", st->list[i].id);
        jsonout_field_string(&j, "startsAt", call_time(c, st->list[i].starts_at));
        jsonout_field_int(&j, "availableSeats", st->list[i].available);
        jsonout_field_int(&j, "totalSeats", st->list[i].seat_count);
        jsonout_object_end(&j);
    }
    jsonout_array_end(&j);
    jsonout_object_end(&j);
    call_reply_jsonout(c, 200, &j);
}

static void dates_found(void *arg, bx_err e)
{
    struct dates_state *st = arg;
    st->dates_e = e;
    struct call *c = call_resume(st);
    if (c != NULL && --st->pending == 0)
        dates_answer(c, st);
}

static void dates_admitted(void *arg, bx_err e)
{
    struct dates_state *st = arg;
    st->gate_e = e;
    struct call *c = call_resume(st);
    if (c != NULL && --st->pending == 0)
        dates_answer(c, st);
}

static void dates_concert_found(void *arg, bx_err e)
{
    struct dates_state *st = arg;
    struct call *c = call_resume_ok(st, e);
    if (c == NULL)
        return;
    st->pending = 2;
    call_step_begin(c);
    astore_dates(c->loop->store, c->id, c->now, &st->list, &st->n, dates_found, st);
    api_require_active(c, c->id, dates_admitted, st);
}

void schedules_list(struct call *c)
{
    struct dates_state *st = call_state(c, sizeof *st, dates_release);
    api_require_concert(c, c->id, dates_concert_found, st);
}

/* The status a seat shows at `now`: a hold that has ended is AVAILABLE (CONTRACT §6,
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

/* A seat map: the seats (or word that the loop's rendered copy is current) and
 * the gate of their concert. When the store knows the schedule's concert, both
 * are asked at once; otherwise the gate follows the seats. The answer waits for
 * both: nothing is answered before the gate. */
struct seats_state {
    struct seat_map map;
    uint64_t cached;      /* version of the loop's rendered copy, 0: none */
    const char *body;     /* that copy, in the request pool, once it is known current */
    size_t len;
    int compact;
    int64_t gate_concert; /* the concert the gate was asked for; 0: not yet */
    bool seats_ready, gate_ready;
    bx_err seats_e, gate_e;
};

static void seats_release(void *state)
{
    free(((struct seats_state *)state)->map.seats);
}

static void seats_answer(struct call *c, struct seats_state *st)
{
    if (st->seats_e != BX_OK) {
        call_fail(c, st->seats_e);
        return;
    }
    if (st->gate_e != BX_OK) {
        api_gate_fail(c, st->gate_e);
        return;
    }
    if (st->body != NULL) {
        call_reply_json_text(c, 200, st->body, st->len);
        return;
    }
    struct jsonout j;
    int64_t valid_until;
    jsonout_init(&j);
    render_seats(&j, c->id, st->map.concert_id, st->map.seats, st->map.n, st->compact, c->now, &valid_until);
    size_t len;
    const char *text = jsonout_text(&j, &len);
    if (text != NULL && st->map.version != 0)
        seatmap_cache_put(c->loop, c->id, st->compact, st->map.concert_id, st->map.version, valid_until, text, len);
    call_reply_jsonout(c, 200, &j);
}

static void seats_gate(void *arg, bx_err e)
{
    struct seats_state *st = arg;
    st->gate_e = e;
    st->gate_ready = true;
    struct call *c = call_resume(st);
    if (c != NULL && st->seats_ready)
        seats_answer(c, st);
}

static void seats_found(void *arg, bx_err e)
{
    struct seats_state *st = arg;
    struct call *c = call_resume(st);
    if (c == NULL)
        return;
    struct seatmap_hit hit;
    if (e == BX_OK && st->map.seats == NULL) {
        if (!seatmap_cache_get(c->loop, c->id, st->compact, st->map.version, c->now, &hit)) {
            st->cached = 0; /* the loop's copy was replaced meanwhile: ask for the seats */
            call_step_begin(c);
            astore_seats(c->loop->store, c->id, c->now, 0, &st->map, seats_found, st);
            return;
        }
        /* the loop's copy may be replaced while the gate runs: keep this one */
        char *body = h2o_mem_alloc_pool(&c->req->pool, hit.len);
        memcpy(body, hit.body, hit.len);
        st->body = body;
        st->len = hit.len;
    }
    st->seats_e = e;
    st->seats_ready = true;
    if (e == BX_OK && st->gate_concert == 0) {
        st->gate_concert = st->map.concert_id;
        api_require_active(c, st->gate_concert, seats_gate, st);
    } else if (st->gate_ready || st->gate_concert == 0) {
        seats_answer(c, st);
    }
}

void seats_list(struct call *c)
{
    int compact;
    if (seat_map_format(c, &compact) != 0)
        return;
    struct seats_state *st = call_state(c, sizeof *st, seats_release);
    st->compact = compact;
    st->cached = seatmap_cache_version(c->loop, c->id, compact, c->now);
    int32_t seat_count;
    bool known = astore_schedule_peek(c->loop->store, c->id, &st->gate_concert, &seat_count);
    call_step_begin(c);
    astore_seats(c->loop->store, c->id, c->now, st->cached, &st->map, seats_found, st);
    if (known)
        api_require_active(c, st->gate_concert, seats_gate, st);
}
