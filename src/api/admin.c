/* admin.c — catalogue management behind X-Admin-Key (CONTRACT §7): create concerts
 * and their dates with seats. */
#include "api/api.h"
#include "app.h"
#include "domain/validate.h"
#include "store/astore.h"
#include "util/clock.h"

#include <string.h>

struct concert_state {
    struct concert concert; /* title and venue as created */
    int64_t id;
};

static void concert_created(void *arg, bx_err e)
{
    struct concert_state *st = arg;
    struct call *c = call_resume_ok(st, e);
    if (c == NULL)
        return;
    call_reply_json(c, 201, json_pack("{s:I, s:s, s:s}", "concertId", (json_int_t)st->id, "title", st->concert.title,
                                      "venue", st->concert.venue));
}

void admin_concerts_create(struct call *c)
{
    const char *title, *venue, *why;
    size_t tlen, vlen;
    if (call_body(c) || call_body_string(c, "title", &title, &tlen) || call_body_string(c, "venue", &venue, &vlen))
        return;
    if ((why = validate_text(title, tlen)) != NULL) {
        call_reply_error(c, BX_ERR_VALIDATION, "title", why);
        return;
    }
    if ((why = validate_text(venue, vlen)) != NULL) {
        call_reply_error(c, BX_ERR_VALIDATION, "venue", why);
        return;
    }
    struct concert_state *st = call_state(c, sizeof *st, NULL);
    memcpy(st->concert.title, title, tlen); /* validate_text bounds both */
    memcpy(st->concert.venue, venue, vlen);
    call_step_begin(c);
    astore_concert_create(c->loop->store, st->concert.title, st->concert.venue, &st->id, concert_created, st);
}

/* Reads an RFC 3339 field; absent → *present false. -1 after answering 400. */
static int body_time(struct call *c, const char *field, int64_t *out, bool *present)
{
    const char *s;
    size_t len;
    if (call_body_string_opt(c, field, &s, &len) != 0)
        return -1;
    *present = s != NULL;
    if (s != NULL && clock_parse_rfc3339(s, len, out) != 0) {
        call_reply_error(c, BX_ERR_VALIDATION, field, "must be an RFC 3339 date-time, e.g. 2030-01-01T19:00:00Z");
        return -1;
    }
    return 0;
}

struct schedule_state {
    struct schedule in;
    int64_t price;
    int64_t id;
};

static void schedule_created(void *arg, bx_err e)
{
    struct schedule_state *st = arg;
    struct call *c = call_resume_ok(st, e);
    if (c == NULL)
        return;
    const struct schedule *in = &st->in;
    call_reply_json(c, 201,
                    json_pack("{s:I, s:I, s:s, s:i, s:I, s:s, s:s}", "scheduleId", (json_int_t)st->id, "concertId",
                              (json_int_t)in->concert_id, "startsAt", call_time(c, in->starts_at), "seats",
                              (int)in->seat_count, "price", (json_int_t)st->price, "saleOpensAt",
                              call_time(c, in->sale_opens_at), "saleClosesAt", call_time(c, in->sale_closes_at)));
}

void admin_schedules_create(struct call *c)
{
    struct schedule in;
    int64_t seats, price;
    bool starts_sent, opens_sent, closes_sent;
    memset(&in, 0, sizeof in);
    if (call_body(c) || body_time(c, "startsAt", &in.starts_at, &starts_sent) || call_body_int(c, "seats", &seats) ||
        call_body_int(c, "price", &price) || body_time(c, "saleOpensAt", &in.sale_opens_at, &opens_sent) ||
        body_time(c, "saleClosesAt", &in.sale_closes_at, &closes_sent))
        return;
    const char *why;
    if (!starts_sent) {
        call_reply_error(c, BX_ERR_VALIDATION, "startsAt", "startsAt is required");
        return;
    }
    if ((why = validate_seat_count(seats)) != NULL) {
        call_reply_error(c, BX_ERR_VALIDATION, "seats", why);
        return;
    }
    if ((why = validate_price(price)) != NULL) {
        call_reply_error(c, BX_ERR_VALIDATION, "price", why);
        return;
    }
    if (!opens_sent)
        in.sale_opens_at = c->now;
    if (!closes_sent)
        in.sale_closes_at = in.starts_at;
    if (in.sale_closes_at <= in.sale_opens_at) {
        call_reply_error(c, BX_ERR_VALIDATION, "saleClosesAt", "saleClosesAt must be after saleOpensAt");
        return;
    }
    in.concert_id = c->id;
    in.seat_count = (int32_t)seats;
    struct schedule_state *st = call_state(c, sizeof *st, NULL);
    st->in = in;
    st->price = price;
    call_step_begin(c);
    astore_schedule_create(c->loop->store, &st->in, price, &st->id, schedule_created, st);
}
