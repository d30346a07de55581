/* validate.c — API input rules; see validate.h. */
#include "domain/validate.h"
#include "domain/money.h"

static int has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return 1;
    }
    return 0;
}

const char *validate_user_name(const char *name, size_t len)
{
    if (len == 0 || len > 64)
        return "must be 1 to 64 bytes";
    if (has_control(name, len))
        return "must not contain control characters";
    size_t spaces = 0;
    while (spaces < len && name[spaces] == ' ')
        spaces++;
    if (spaces == len)
        return "must not be blank";
    return NULL;
}

const char *validate_password(const char *pw, size_t len)
{
    if (len < 8 || len > 256)
        return "must be 8 to 256 bytes";
    for (size_t i = 0; i < len; i++)
        if (pw[i] == '\0')
            return "must not contain NUL";
    return NULL;
}

const char *validate_idempotency_key(const char *key, size_t len)
{
    if (len == 0 || len > 64)
        return "must be 1 to 64 characters";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c < 0x20 || c > 0x7e)
            return "must be printable ASCII";
    }
    /* HTTP strips a header value's outer spaces: such a key could not be sent back */
    if (key[0] == ' ' || key[len - 1] == ' ')
        return "must not begin or end with a space";
    return NULL;
}

const char *validate_text(const char *s, size_t len)
{
    if (len == 0 || len > 200)
        return "must be 1 to 200 bytes";
    if (has_control(s, len))
        return "must not contain control characters";
    return NULL;
}

const char *validate_seat_count(int64_t seats)
{
    return seats >= 1 && seats <= 10000 ? NULL : "must be 1 to 10000";
}

const char *validate_price(int64_t price)
{
    return price >= 0 && price <= MONEY_PRICE_MAX ? NULL : "must be 0 to 100000000";
}

int validate_parse_id(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 19)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, s[i] - '0', &v))
            return -1;
    }
    if (v <= 0)
        return -1;
    *out = v;
    return 0;
}
