/* fuzz_body.c — JSON request bodies: parse_body, then every endpoint's fields
 * read and checked exactly as its handler does (api/users.c, sessions.c,
 * reservations.c, balance.c, payments.c, admin.c), and the canonical form the
 * Idempotency-Key hash is taken over (http/reply.c call_idempotency).
 * Invariants: a decoded body is an object; what a validator accepts fits the
 * buffers the handlers copy it into, is UTF-8 without control characters where
 * the rule says so; integers that pass the range checks survive the int32 casts;
 * the canonical JSON is stable (same bytes after a re-parse). */
#include "fuzz.h"

#include "domain/money.h"
#include "domain/types.h"
#include "domain/validate.h"
#include "http/parse.h"
#include "util/clock.h"

#include <jansson.h>

/* call_body_string / call_body_string_opt: 0 and *out (NULL when absent). */
static int field_str(const json_t *o, const char *f, bool required, const char **out, size_t *len)
{
    bool present = false;
    const char *why = NULL;
    if (parse_field_string(o, f, out, len, &present, &why) != 0) {
        FUZZ_CHECK(why != NULL, "field error without a reason");
        return -1;
    }
    FUZZ_CHECK(present == (*out != NULL), "present flag disagrees");
    if (*out != NULL) {
        FUZZ_CHECK(strlen(*out) == *len, "string with embedded NUL accepted (%zu vs %zu)", strlen(*out), *len);
        FUZZ_CHECK(fuzz_utf8_valid(*out, *len), "string field is not UTF-8");
    }
    return required && *out == NULL ? -1 : 0;
}

/* call_body_int / call_body_int_opt. */
static int field_int(const json_t *o, const char *f, bool required, int64_t *out, bool *present)
{
    const char *why = NULL;
    if (parse_field_int(o, f, out, present, &why) != 0) {
        FUZZ_CHECK(why != NULL, "field error without a reason");
        return -1;
    }
    return required && !*present ? -1 : 0;
}

static void users_or_sessions(const json_t *body, bool signup)
{
    const char *name, *pw;
    size_t nlen, plen;
    if (field_str(body, "name", true, &name, &nlen) || field_str(body, "password", true, &pw, &plen))
        return;
    bool name_ok = validate_user_name(name, nlen) == NULL;
    bool pw_ok = validate_password(pw, plen) == NULL;
    if (name_ok) {
        FUZZ_CHECK(nlen >= 1 && nlen <= BX_NAME_MAX, "name of %zu bytes accepted", nlen);
        FUZZ_CHECK(!fuzz_has_control(name, nlen), "name with a control character accepted");
        size_t sp = 0;
        while (sp < nlen && name[sp] == ' ')
            sp++;
        FUZZ_CHECK(sp < nlen, "blank name accepted");
        /* users.c: memcpy(j.name, name, nlen) into char[BX_NAME_MAX + 1], zeroed */
        char jname[BX_NAME_MAX + 1];
        memset(jname, 0, sizeof jname);
        memcpy(jname, name, nlen);
        FUZZ_CHECK(strlen(jname) == nlen, "name truncated by a NUL");
    }
    if (pw_ok)
        FUZZ_CHECK(plen >= 8 && plen <= 256, "password of %zu bytes accepted", plen);
    if (signup && name_ok && pw_ok) {
        char jpw[257]; /* users.c struct signup_job.password */
        memcpy(jpw, pw, plen);
    }
    if (!signup) {
        char jpw[257]; /* sessions.c: long passwords are clamped, never overflow */
        size_t n = plen >= sizeof jpw ? sizeof jpw - 1 : plen;
        memcpy(jpw, pw, n);
    }
}

static void reservations(const json_t *body)
{
    int64_t schedule_id, seat_no;
    bool p1, p2;
    if (field_int(body, "scheduleId", true, &schedule_id, &p1) || field_int(body, "seatNo", true, &seat_no, &p2))
        return;
    /* the handler checks 1 <= seat_no <= sched.seat_count (<= 10000) before (int32_t)seat_no */
    for (int64_t seats = 1; seats <= 10000; seats *= 100) {
        if (seat_no >= 1 && seat_no <= seats)
            FUZZ_CHECK((int64_t)(int32_t)seat_no == seat_no, "seatNo %lld changes in int32", (long long)seat_no);
    }
}

static void charge(const json_t *body)
{
    int64_t amount;
    bool p;
    if (field_int(body, "amount", true, &amount, &p))
        return;
    if (money_charge_amount_valid(amount)) {
        FUZZ_CHECK(amount >= 1 && amount <= MONEY_CHARGE_MAX, "charge %lld accepted", (long long)amount);
        FUZZ_CHECK(money_charge_fits(MONEY_BALANCE_MAX - amount, amount), "charge to the limit refused");
        FUZZ_CHECK(!money_charge_fits(MONEY_BALANCE_MAX, amount), "charge past the limit accepted");
    }
}

static void payments(const json_t *body)
{
    int64_t reservation_id, amount = -1;
    bool p1, sent;
    if (field_int(body, "reservationId", true, &reservation_id, &p1) ||
        field_int(body, "amount", false, &amount, &sent))
        return;
    if (!sent)
        amount = -1;
    FUZZ_CHECK(sent || amount == -1, "absent amount is not -1");
}

static void admin_concerts(const json_t *body)
{
    const char *title, *venue;
    size_t tlen, vlen;
    if (field_str(body, "title", true, &title, &tlen) || field_str(body, "venue", true, &venue, &vlen))
        return;
    if (validate_text(title, tlen) == NULL)
        FUZZ_CHECK(tlen >= 1 && tlen <= BX_TEXT_MAX && !fuzz_has_control(title, tlen), "bad title accepted");
    if (validate_text(venue, vlen) == NULL)
        FUZZ_CHECK(vlen >= 1 && vlen <= BX_TEXT_MAX && !fuzz_has_control(venue, vlen), "bad venue accepted");
}

/* admin.c body_time */
static int body_time(const json_t *body, const char *f, int64_t *out, bool *present)
{
    const char *s;
    size_t len;
    if (field_str(body, f, false, &s, &len) != 0)
        return -1;
    *present = s != NULL;
    if (s != NULL && clock_parse_rfc3339(s, len, out) != 0)
        return -1;
    if (s != NULL) {
        FUZZ_CHECK(*out >= 0 && *out <= 253402300799999LL, "%s = %lld ms", f, (long long)*out);
        char buf[32];
        clock_format_rfc3339(*out, buf, sizeof buf);
        FUZZ_CHECK(strlen(buf) == 24, "formatted time not 24 characters: %s", buf);
    }
    return 0;
}

static void admin_schedules(const json_t *body)
{
    int64_t starts = 0, opens = 0, closes = 0, seats, price;
    bool s1, s2, s3, p1, p2;
    if (body_time(body, "startsAt", &starts, &s1) || field_int(body, "seats", true, &seats, &p1) ||
        field_int(body, "price", true, &price, &p2) || body_time(body, "saleOpensAt", &opens, &s2) ||
        body_time(body, "saleClosesAt", &closes, &s3))
        return;
    if (!s1)
        return;
    if (validate_seat_count(seats) != NULL || validate_price(price) != NULL)
        return;
    FUZZ_CHECK(seats >= 1 && seats <= 10000 && (int64_t)(int32_t)seats == seats, "seats %lld", (long long)seats);
    FUZZ_CHECK(price >= 0 && price <= MONEY_PRICE_MAX, "price %lld", (long long)price);
}

/* call_idempotency's canonical form must not depend on how the body was written. */
static void canonical(const json_t *body)
{
    char *canon = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    FUZZ_CHECK(canon != NULL, "json_dumps failed on a decoded body");
    json_t *again = NULL;
    char msg[256];
    enum parse_body_result r = parse_body(canon, strlen(canon), &again, msg, sizeof msg);
    /* the canonical text may be longer than 64 KiB (escapes); otherwise it must decode */
    if (strlen(canon) <= PARSE_BODY_MAX) {
        FUZZ_CHECK(r == PARSE_BODY_OK, "canonical body does not decode: %s", msg);
        FUZZ_CHECK(json_equal(body, again), "canonical body decodes to another value");
        char *canon2 = json_dumps(again, JSON_COMPACT | JSON_SORT_KEYS);
        FUZZ_CHECK(canon2 != NULL && strcmp(canon, canon2) == 0, "canonical form not stable");
        free(canon2);
    }
    json_decref(again);
    free(canon);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_dup(data, size);
    json_t *body = (json_t *)0x1;
    char msg[256];
    msg[0] = '\0';
    enum parse_body_result r = parse_body(size ? buf : NULL, size, &body, msg, sizeof msg);
    if (r != PARSE_BODY_OK) {
        FUZZ_CHECK(body == NULL, "body set on failure");
        FUZZ_CHECK(msg[0] != '\0' && memchr(msg, '\0', sizeof msg) != NULL, "no reason given");
        FUZZ_CHECK(r != PARSE_BODY_TOO_LARGE || size > PARSE_BODY_MAX, "small body called too large");
        free(buf);
        return 0;
    }
    FUZZ_CHECK(size > 0 && size <= PARSE_BODY_MAX && json_is_object(body), "accepted a non-object or oversize body");
    users_or_sessions(body, true);
    users_or_sessions(body, false);
    reservations(body);
    charge(body);
    payments(body);
    admin_concerts(body);
    admin_schedules(body);
    canonical(body);
    json_decref(body);
    free(buf);
    return 0;
}
