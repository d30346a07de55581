/* test_domain.c — unit tests of the pure domain rules (money, validation, the
 * error table) and of RFC 3339 time text. Links the core library only: no
 * server, no database, no network. */
#include <criterion/criterion.h>

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "domain/errors.h"
#include "domain/money.h"
#include "domain/validate.h"
#include "util/clock.h"

/* ---- money --------------------------------------------------------------- */

Test(money, add_within_range_sums)
{
    int64_t r = -1;
    cr_assert(money_add_checked(40000, 10000, &r));
    cr_assert_eq(r, 50000);
    cr_assert(money_add_checked(INT64_MAX - 1, 1, &r));
    cr_assert_eq(r, INT64_MAX);
    cr_assert(money_add_checked(INT64_MIN, 0, &r));
    cr_assert_eq(r, INT64_MIN);
}

Test(money, add_overflow_is_refused_and_leaves_out_untouched)
{
    int64_t r = 42;
    cr_assert_not(money_add_checked(INT64_MAX, 1, &r));
    cr_assert_eq(r, 42);
    cr_assert_not(money_add_checked(INT64_MAX, INT64_MAX, &r));
    cr_assert_not(money_add_checked(INT64_MIN, -1, &r));
    cr_assert_not(money_add_checked(1, INT64_MAX, &r));
    cr_assert_eq(r, 42);
}

Test(money, sub_within_range_subtracts)
{
    int64_t r = -1;
    cr_assert(money_sub_checked(50000, 50000, &r));
    cr_assert_eq(r, 0);
    cr_assert(money_sub_checked(0, 50000, &r));
    cr_assert_eq(r, -50000);
    cr_assert(money_sub_checked(INT64_MIN + 1, 1, &r));
    cr_assert_eq(r, INT64_MIN);
    cr_assert(money_sub_checked(-1, INT64_MAX, &r));
    cr_assert_eq(r, INT64_MIN);
}

Test(money, sub_overflow_is_refused_and_leaves_out_untouched)
{
    int64_t r = 7;
    cr_assert_not(money_sub_checked(INT64_MIN, 1, &r));
    cr_assert_not(money_sub_checked(0, INT64_MIN, &r));
    cr_assert_not(money_sub_checked(INT64_MAX, -1, &r));
    cr_assert_not(money_sub_checked(-2, INT64_MAX, &r));
    cr_assert_eq(r, 7);
}

Test(money, charge_amount_accepts_one_to_ten_million)
{
    cr_assert(money_charge_amount_valid(1));
    cr_assert(money_charge_amount_valid(50000));
    cr_assert(money_charge_amount_valid(10000000));
    cr_assert_eq(MONEY_CHARGE_MAX, 10000000LL);
}

Test(money, charge_amount_refuses_zero_negative_and_above_ten_million)
{
    cr_assert_not(money_charge_amount_valid(0));
    cr_assert_not(money_charge_amount_valid(-1));
    cr_assert_not(money_charge_amount_valid(INT64_MIN));
    cr_assert_not(money_charge_amount_valid(10000001));
    cr_assert_not(money_charge_amount_valid(INT64_MAX));
}

Test(money, charge_fits_up_to_exactly_one_trillion)
{
    cr_assert_eq(MONEY_BALANCE_MAX, 1000000000000LL);
    cr_assert(money_charge_fits(0, 1));
    cr_assert(money_charge_fits(0, MONEY_CHARGE_MAX));
    cr_assert(money_charge_fits(MONEY_BALANCE_MAX - MONEY_CHARGE_MAX, MONEY_CHARGE_MAX));
    cr_assert(money_charge_fits(MONEY_BALANCE_MAX - 1, 1));
    cr_assert(money_charge_fits(MONEY_BALANCE_MAX, 0));
}

Test(money, charge_past_one_trillion_does_not_fit)
{
    cr_assert_not(money_charge_fits(MONEY_BALANCE_MAX, 1));
    cr_assert_not(money_charge_fits(MONEY_BALANCE_MAX - MONEY_CHARGE_MAX + 1, MONEY_CHARGE_MAX));
    cr_assert_not(money_charge_fits(INT64_MAX, 1), "overflowing sum must not wrap into range");
    cr_assert_not(money_charge_fits(INT64_MAX, INT64_MAX));
    cr_assert_not(money_charge_fits(-1, 1), "a negative balance never fits");
    cr_assert_not(money_charge_fits(0, -1), "a negative amount never fits");
}

Test(money, debit_allowed_when_balance_covers_price)
{
    cr_assert(money_can_debit(50000, 50000), "paying the exact balance leaves 0");
    cr_assert(money_can_debit(50001, 50000));
    cr_assert(money_can_debit(0, 0), "a free seat needs no balance");
    cr_assert(money_can_debit(MONEY_BALANCE_MAX, MONEY_PRICE_MAX));
}

Test(money, debit_refused_when_short_or_negative)
{
    cr_assert_not(money_can_debit(49999, 50000));
    cr_assert_not(money_can_debit(0, 1));
    cr_assert_not(money_can_debit(-1, 0), "a negative balance is never debited");
    cr_assert_not(money_can_debit(100, -1), "a negative price would credit the user");
    cr_assert_not(money_can_debit(INT64_MIN, INT64_MIN));
}

/* ---- validate: user names ------------------------------------------------- */

#define NAME_OK(s) cr_assert_null(validate_user_name((s), strlen(s)), "name \"%s\" should be accepted", (s))
#define NAME_BAD(s, n) cr_assert_not_null(validate_user_name((s), (n)), "name should be refused")

Test(validate, user_name_plain_ascii_accepted)
{
    NAME_OK("alice");
    NAME_OK("a");
    NAME_OK("Bob Smith");
    NAME_OK(" padded ");
}

Test(validate, user_name_korean_utf8_accepted)
{
    NAME_OK("김민수");
    NAME_OK("이 서연");
}

Test(validate, user_name_empty_refused)
{
    NAME_BAD("", 0);
}

Test(validate, user_name_blank_refused)
{
    NAME_BAD(" ", 1);
    NAME_BAD("     ", 5);
}

Test(validate, user_name_with_control_characters_refused)
{
    NAME_BAD("ali\nce", 6);
    NAME_BAD("ali\tce", 6);
    NAME_BAD("alice\r", 6);
    NAME_BAD("\x1b[31malice", 10);
    NAME_BAD("al\x7fice", 6);
    NAME_BAD("al\0ice", 6);
}

Test(validate, user_name_64_bytes_accepted_65_refused)
{
    char buf[80];
    memset(buf, 'n', sizeof buf);
    cr_assert_null(validate_user_name(buf, 64));
    cr_assert_not_null(validate_user_name(buf, 65));
}

Test(validate, user_name_limit_counts_bytes_not_characters)
{
    /* 21 Hangul syllables are 63 bytes; 22 are 66 bytes. */
    char buf[3 * 22 + 1] = "";
    for (int i = 0; i < 22; i++)
        strcat(buf, "가");
    cr_assert_null(validate_user_name(buf, 63));
    cr_assert_not_null(validate_user_name(buf, 66));
}

/* ---- validate: passwords -------------------------------------------------- */

Test(validate, password_length_8_to_256_bytes)
{
    char buf[300];
    memset(buf, 'p', sizeof buf);
    cr_assert_not_null(validate_password(buf, 0));
    cr_assert_not_null(validate_password(buf, 7));
    cr_assert_null(validate_password(buf, 8));
    cr_assert_null(validate_password(buf, 256));
    cr_assert_not_null(validate_password(buf, 257));
}

Test(validate, password_with_nul_refused)
{
    cr_assert_not_null(validate_password("pass\0word", 9));
}

Test(validate, password_may_hold_spaces_and_utf8)
{
    cr_assert_null(validate_password("correct horse", 13));
    cr_assert_null(validate_password("비밀번호입니다", strlen("비밀번호입니다")));
}

/* ---- validate: idempotency keys ------------------------------------------- */

Test(validate, idempotency_key_printable_ascii_accepted)
{
    const char *uuid = "3f2b8c1e-9d4a-4b7e-8f00-1a2b3c4d5e6f";
    cr_assert_null(validate_idempotency_key(uuid, strlen(uuid)));
    cr_assert_null(validate_idempotency_key("x", 1));
    cr_assert_null(validate_idempotency_key("!~", 2), "0x21 and 0x7e are the bounds");
}

Test(validate, idempotency_key_length_1_to_64)
{
    char buf[70];
    memset(buf, 'k', sizeof buf);
    cr_assert_not_null(validate_idempotency_key(buf, 0));
    cr_assert_null(validate_idempotency_key(buf, 64));
    cr_assert_not_null(validate_idempotency_key(buf, 65));
}

Test(validate, idempotency_key_with_outer_space_or_control_refused)
{
    cr_assert_null(validate_idempotency_key("key 1", 5), "inner spaces are printable (CONTRACT §5: printable chars)");
    cr_assert_not_null(validate_idempotency_key(" key", 4));
    cr_assert_not_null(validate_idempotency_key("key ", 4));
    cr_assert_not_null(validate_idempotency_key("key\t", 4));
    cr_assert_not_null(validate_idempotency_key("key\x7f", 4));
    cr_assert_not_null(validate_idempotency_key("k\0y", 3));
}

Test(validate, idempotency_key_non_ascii_refused)
{
    cr_assert_not_null(validate_idempotency_key("키", strlen("키")));
    cr_assert_not_null(validate_idempotency_key("caf\xc3\xa9", 5));
}

/* ---- validate: text, seats, price ----------------------------------------- */

Test(validate, text_1_to_200_bytes_without_control)
{
    char buf[210];
    memset(buf, 't', sizeof buf);
    cr_assert_not_null(validate_text(buf, 0));
    cr_assert_null(validate_text(buf, 200));
    cr_assert_not_null(validate_text(buf, 201));
    cr_assert_null(validate_text("올림픽공원 체조경기장", strlen("올림픽공원 체조경기장")));
    cr_assert_not_null(validate_text("Seoul\nArena", 11));
}

Test(validate, seat_count_1_to_10000)
{
    cr_assert_not_null(validate_seat_count(0));
    cr_assert_not_null(validate_seat_count(-1));
    cr_assert_null(validate_seat_count(1));
    cr_assert_null(validate_seat_count(50));
    cr_assert_null(validate_seat_count(10000));
    cr_assert_not_null(validate_seat_count(10001));
    cr_assert_not_null(validate_seat_count(INT64_MAX));
}

Test(validate, price_0_to_one_hundred_million)
{
    cr_assert_not_null(validate_price(-1));
    cr_assert_null(validate_price(0));
    cr_assert_null(validate_price(50000));
    cr_assert_null(validate_price(100000000));
    cr_assert_not_null(validate_price(100000001));
    cr_assert_not_null(validate_price(INT64_MIN));
}

/* ---- validate: ids -------------------------------------------------------- */

static int parse(const char *s, int64_t *out)
{
    return validate_parse_id(s, strlen(s), out);
}

Test(validate, parse_id_plain_decimal_accepted)
{
    int64_t v = 0;
    cr_assert_eq(parse("1", &v), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(parse("42", &v), 0);
    cr_assert_eq(v, 42);
}

Test(validate, parse_id_int64_max_accepted_with_19_digits)
{
    int64_t v = 0;
    cr_assert_eq(parse("9223372036854775807", &v), 0);
    cr_assert_eq(v, INT64_MAX);
    cr_assert_eq(parse("1000000000000000000", &v), 0);
    cr_assert_eq(v, 1000000000000000000LL);
}

Test(validate, parse_id_overflow_refused)
{
    int64_t v = 99;
    cr_assert_neq(parse("9223372036854775808", &v), 0);
    cr_assert_neq(parse("9999999999999999999", &v), 0);
    cr_assert_neq(parse("18446744073709551616", &v), 0, "20 digits");
    cr_assert_neq(parse("10000000000000000000", &v), 0, "20 digits");
    cr_assert_eq(v, 99, "out untouched on failure");
}

Test(validate, parse_id_zero_refused)
{
    int64_t v = 99;
    cr_assert_neq(parse("0", &v), 0);
    cr_assert_neq(parse("00", &v), 0);
    cr_assert_neq(parse("0000000000000000000", &v), 0);
    cr_assert_eq(v, 99);
}

Test(validate, parse_id_leading_zeros_within_19_digits_read_as_decimal)
{
    /* Current behaviour: "007" is id 7 (harmless for lookups; the access token
     * signature covers the text, so a rewritten id never verifies). */
    int64_t v = 0;
    cr_assert_eq(parse("007", &v), 0);
    cr_assert_eq(v, 7);
    cr_assert_neq(parse("00000000000000000007", &v), 0, "20 characters are over the limit");
}

Test(validate, parse_id_signs_and_non_digits_refused)
{
    int64_t v = 99;
    cr_assert_neq(parse("+1", &v), 0);
    cr_assert_neq(parse("-1", &v), 0);
    cr_assert_neq(parse("-0", &v), 0);
    cr_assert_neq(parse(" 1", &v), 0);
    cr_assert_neq(parse("1 ", &v), 0);
    cr_assert_neq(parse("1a", &v), 0);
    cr_assert_neq(parse("0x10", &v), 0);
    cr_assert_neq(parse("1e3", &v), 0);
    cr_assert_neq(parse("1.0", &v), 0);
    cr_assert_neq(parse("", &v), 0);
    cr_assert_neq(validate_parse_id("1\0", 2, &v), 0);
    cr_assert_eq(v, 99);
}

/* ---- error table ---------------------------------------------------------- */

Test(errors, every_code_has_a_status_code_and_message)
{
    for (int e = 0; e < BX_ERR__COUNT; e++) {
        const struct bx_err_info *i = bx_err_info((bx_err)e);
        cr_assert_not_null(i, "bx_err %d", e);
        cr_assert_not_null(i->code, "bx_err %d has no code", e);
        cr_assert_not_null(i->message, "bx_err %d has no message", e);
        cr_assert_gt(strlen(i->code), 0, "bx_err %d", e);
        cr_assert_gt(strlen(i->message), 0, "bx_err %d", e);
        cr_assert(i->status >= 200 && i->status <= 599, "bx_err %d status %d", e, i->status);
        if (e >= BX_ERR_VALIDATION)
            cr_assert_geq(i->status, 400, "bx_err %d is an error but has status %d", e, i->status);
        for (const char *c = i->code; *c; c++)
            cr_assert((*c >= 'A' && *c <= 'Z') || *c == '_', "bx_err %d code %s is not UPPER_SNAKE", e, i->code);
    }
}

Test(errors, error_codes_are_distinct)
{
    for (int a = BX_ERR_VALIDATION; a < BX_ERR__COUNT; a++)
        for (int b = a + 1; b < BX_ERR__COUNT; b++)
            cr_assert_str_neq(bx_err_info((bx_err)a)->code, bx_err_info((bx_err)b)->code, "bx_err %d and %d", a, b);
}

Test(errors, unknown_values_map_to_internal)
{
    const struct bx_err_info *internal = bx_err_info(BX_ERR_INTERNAL);
    cr_assert_eq(internal->status, 500);
    cr_assert_str_eq(internal->code, "INTERNAL");
    cr_assert_eq(bx_err_info(BX_ERR__COUNT), internal);
    cr_assert_eq(bx_err_info((bx_err)(BX_ERR__COUNT + 100)), internal);
    cr_assert_eq(bx_err_info((bx_err)-1), internal);
}

static void expect(bx_err e, int status, const char *code)
{
    const struct bx_err_info *i = bx_err_info(e);
    cr_expect_eq(i->status, status, "%s: status %d, want %d", code, i->status, status);
    cr_expect_str_eq(i->code, code);
}

Test(errors, spec_codes_and_statuses)
{
    /* CONTRACT §5 and docs/DESIGN.md "API details". */
    expect(BX_ERR_VALIDATION, 400, "VALIDATION");
    expect(BX_ERR_UNAUTHORIZED, 401, "UNAUTHORIZED");
    expect(BX_ERR_BAD_CREDENTIALS, 401, "BAD_CREDENTIALS");
    expect(BX_ERR_ADMIN_KEY, 401, "ADMIN_KEY_INVALID");
    expect(BX_ERR_ADMIN_DISABLED, 403, "ADMIN_DISABLED");
    expect(BX_ERR_QUEUE_TOKEN_INVALID, 401, "QUEUE_TOKEN_INVALID");
    expect(BX_ERR_TOKEN_NOT_YOURS, 403, "TOKEN_NOT_YOURS");
    expect(BX_ERR_QUEUE_NOT_ACTIVE, 403, "QUEUE_NOT_ACTIVE");
    expect(BX_ERR_TOKEN_EXPIRED, 410, "TOKEN_EXPIRED");
    expect(BX_ERR_CONCERT_NOT_FOUND, 404, "CONCERT_NOT_FOUND");
    expect(BX_ERR_SCHEDULE_NOT_FOUND, 404, "SCHEDULE_NOT_FOUND");
    expect(BX_ERR_SEAT_NOT_FOUND, 404, "SEAT_NOT_FOUND");
    expect(BX_ERR_RESERVATION_NOT_FOUND, 404, "RESERVATION_NOT_FOUND");
    expect(BX_ERR_ROUTE_NOT_FOUND, 404, "ROUTE_NOT_FOUND");
    expect(BX_ERR_METHOD_NOT_ALLOWED, 405, "METHOD_NOT_ALLOWED");
    expect(BX_ERR_NAME_TAKEN, 409, "NAME_TAKEN");
    expect(BX_ERR_SEAT_UNAVAILABLE, 409, "SEAT_UNAVAILABLE");
    expect(BX_ERR_SEAT_LIMIT, 409, "SEAT_LIMIT");
    expect(BX_ERR_SALE_CLOSED, 409, "SALE_CLOSED");
    expect(BX_ERR_NOT_HELD, 409, "NOT_HELD");
    expect(BX_ERR_HOLD_EXPIRED, 409, "HOLD_EXPIRED");
    expect(BX_ERR_ALREADY_PAID, 409, "ALREADY_PAID");
    expect(BX_ERR_PRICE_MISMATCH, 409, "PRICE_MISMATCH");
    expect(BX_ERR_BALANCE_LIMIT, 409, "BALANCE_LIMIT");
    expect(BX_ERR_INSUFFICIENT_BALANCE, 402, "INSUFFICIENT_BALANCE");
    expect(BX_ERR_PAYLOAD_TOO_LARGE, 413, "PAYLOAD_TOO_LARGE");
    expect(BX_ERR_IDEMPOTENCY_MISMATCH, 422, "IDEMPOTENCY_KEY_REUSED");
    expect(BX_ERR_UNAVAILABLE, 503, "UNAVAILABLE");
    expect(BX_ERR_INTERNAL, 500, "INTERNAL");
}

Test(errors, success_values_are_not_errors)
{
    cr_assert_eq(bx_err_info(BX_OK)->status, 200);
    cr_assert_eq(bx_err_info(BX_REPLAY)->status, 200);
}

/* ---- clock ---------------------------------------------------------------- */

static int64_t parse_ok(const char *s)
{
    int64_t ms = -1;
    cr_assert_eq(clock_parse_rfc3339(s, strlen(s), &ms), 0, "\"%s\" should parse", s);
    return ms;
}

static void parse_bad(const char *s)
{
    int64_t ms = 12345;
    cr_assert_neq(clock_parse_rfc3339(s, strlen(s), &ms), 0, "\"%s\" should be refused", s);
    cr_assert_eq(ms, 12345, "\"%s\": out untouched on failure", s);
}

Test(clock, format_epoch_and_known_instant)
{
    char buf[32];
    cr_assert_str_eq(clock_format_rfc3339(0, buf, sizeof buf), "1970-01-01T00:00:00.000Z");
    /* 2026-11-25T08:30:00.123Z */
    cr_assert_str_eq(clock_format_rfc3339(1795595400123LL, buf, sizeof buf), "2026-11-25T08:30:00.123Z");
    cr_assert_eq(strlen(buf), 24, "fits the documented 25-byte buffer");
}

Test(clock, format_then_parse_round_trips)
{
    const int64_t samples[] = {0, 1, 999, 1000, 951782400000LL /* 2000-02-29 */, 1709164800000LL /* 2024-02-29 */,
                               1795595400123LL, 253402300799999LL /* 9999-12-31T23:59:59.999Z */};
    char buf[32];
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        clock_format_rfc3339(samples[i], buf, sizeof buf);
        int64_t back = -1;
        cr_assert_eq(clock_parse_rfc3339(buf, strlen(buf), &back), 0, "%s", buf);
        cr_assert_eq(back, samples[i], "%s: %lld != %lld", buf, (long long)back, (long long)samples[i]);
    }
}

Test(clock, now_formats_and_parses_back)
{
    char buf[32];
    int64_t now = clock_now_ms();
    cr_assert_gt(now, 1577836800000LL, "after 2020");
    clock_format_rfc3339(now, buf, sizeof buf);
    cr_assert_eq(parse_ok(buf), now);
}

Test(clock, parse_without_fraction_and_with_lowercase_separators)
{
    cr_assert_eq(parse_ok("1970-01-01T00:00:00Z"), 0);
    cr_assert_eq(parse_ok("2026-11-25T08:30:00Z"), 1795595400000LL);
    cr_assert_eq(parse_ok("2026-11-25t08:30:00z"), 1795595400000LL);
}

Test(clock, parse_fraction_is_milliseconds)
{
    cr_assert_eq(parse_ok("1970-01-01T00:00:00.5Z"), 500);
    cr_assert_eq(parse_ok("1970-01-01T00:00:00.05Z"), 50);
    cr_assert_eq(parse_ok("1970-01-01T00:00:00.123Z"), 123);
    cr_assert_eq(parse_ok("1970-01-01T00:00:00.123999Z"), 123, "sub-millisecond digits are truncated");
}

Test(clock, parse_offsets_convert_to_utc)
{
    int64_t utc = parse_ok("2026-11-25T08:30:00Z");
    cr_assert_eq(parse_ok("2026-11-25T17:30:00+09:00"), utc, "KST");
    cr_assert_eq(parse_ok("2026-11-25T03:30:00-05:00"), utc);
    cr_assert_eq(parse_ok("2026-11-25T08:30:00+00:00"), utc);
    cr_assert_eq(parse_ok("2026-11-25T08:30:00-00:00"), utc);
    cr_assert_eq(parse_ok("2026-11-25T14:00:00+05:30"), utc);
    cr_assert_eq(parse_ok("2026-11-26T00:30:00.000+16:00"), utc, "offset crossing a date");
}

Test(clock, parse_leap_years)
{
    cr_assert_eq(parse_ok("2024-02-29T00:00:00Z"), 1709164800000LL);
    cr_assert_eq(parse_ok("2000-02-29T00:00:00Z"), 951782400000LL, "divisible by 400 is leap");
    cr_assert_eq(parse_ok("2024-03-01T00:00:00Z") - parse_ok("2024-02-28T00:00:00Z"), 2 * 86400000LL);
    parse_bad("2023-02-29T00:00:00Z");
    parse_bad("2100-02-29T00:00:00Z"); /* divisible by 100, not by 400 */
    parse_bad("2024-02-30T00:00:00Z");
}

Test(clock, parse_invalid_dates_refused)
{
    parse_bad("2026-02-30T00:00:00Z");
    parse_bad("2026-04-31T00:00:00Z");
    parse_bad("2026-06-31T00:00:00Z");
    parse_bad("2026-13-01T00:00:00Z");
    parse_bad("2026-00-10T00:00:00Z");
    parse_bad("2026-01-00T00:00:00Z");
    parse_bad("2026-01-32T00:00:00Z");
    parse_bad("2026-01-01T24:00:00Z");
    parse_bad("2026-01-01T00:60:00Z");
    parse_bad("2026-01-01T00:00:61Z");
    parse_bad("1969-12-31T23:59:59Z");
}

Test(clock, parse_malformed_text_refused)
{
    parse_bad("");
    parse_bad("2026-11-25");
    parse_bad("2026-11-25 08:30:00Z");
    parse_bad("2026-11-25T08:30:00");
    parse_bad("2026-11-25T08:30Z");
    parse_bad("2026/11/25T08:30:00Z");
    parse_bad("2026-11-25T08:30:00.Z");
    parse_bad("2026-11-25T08:30:00ZZ");
    parse_bad("2026-11-25T08:30:00Z ");
    parse_bad("2026-11-25T08:30:00+09");
    parse_bad("2026-11-25T08:30:00+0900");
    parse_bad("2026-11-25T08:30:00+24:00");
    parse_bad("2026-11-25T08:30:00+09:60");
    parse_bad("2026-11-25T08:30:00+09:00Z");
    parse_bad("2O26-11-25T08:30:00Z");
    parse_bad("+026-11-25T08:30:00Z");
    parse_bad("2026-1-25T08:30:00Z");
}

Test(clock, parse_respects_length_argument)
{
    /* The text is not NUL-terminated where the length ends (a JSON slice). */
    const char *s = "2026-11-25T08:30:00Zgarbage";
    int64_t ms = 0;
    cr_assert_eq(clock_parse_rfc3339(s, 20, &ms), 0);
    cr_assert_eq(ms, 1795595400000LL);
    cr_assert_neq(clock_parse_rfc3339(s, strlen(s), &ms), 0);
    cr_assert_neq(clock_parse_rfc3339(s, 19, &ms), 0);
}

Test(clock, mono_does_not_go_backwards)
{
    int64_t a = clock_mono_ms();
    int64_t b = clock_mono_ms();
    cr_assert_geq(b, a);
}
