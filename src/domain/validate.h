/* validate.h — input rules of the API, pure functions (no I/O). Each returns
 * NULL when the value is acceptable, else a short reason for the error message. */
#ifndef BX_DOMAIN_VALIDATE_H
#define BX_DOMAIN_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

/* 1..64 bytes of UTF-8 (already valid: jansson checks), no control characters,
 * not only spaces. */
const char *validate_user_name(const char *name, size_t len);
/* 8..256 bytes, no NUL. */
const char *validate_password(const char *pw, size_t len);
/* 1..64 printable ASCII characters (0x20..0x7e), not beginning or ending with a space. */
const char *validate_idempotency_key(const char *key, size_t len);
/* 1..200 bytes, no control characters. */
const char *validate_text(const char *s, size_t len);
/* 1..10,000 seats. */
const char *validate_seat_count(int64_t seats);
/* 0..MONEY_PRICE_MAX won. */
const char *validate_price(int64_t price);
/* Path or body id: 1..INT64_MAX written as plain decimal digits. Returns 0 on success. */
int validate_parse_id(const char *s, size_t len, int64_t *out);

#endif
