/* fuzz_time.c — RFC 3339 date-times of the admin schedule body (startsAt,
 * saleOpensAt, saleClosesAt) through clock_parse_rfc3339. Invariants: an
 * accepted text has the documented shape and a date that exists; its instant
 * lies in 1970..9999 UTC (answered back with a 4-digit year) and, formatted
 * back (clock_format_rfc3339) and parsed again, is the same instant; the UTC
 * "Z" form without fraction formats back to the same fields. */
#include "fuzz.h"

#include "util/clock.h"

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int num(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_dup(data, size);
    int64_t ms = INT64_MIN;
    if (clock_parse_rfc3339(s, size, &ms) != 0) {
        free(s);
        return 0;
    }
    FUZZ_CHECK(size >= 20, "accepted %zu bytes", size);
    for (int i = 0; i < 19; i++) {
        if (i == 4 || i == 7)
            FUZZ_CHECK(s[i] == '-', "byte %d", i);
        else if (i == 10)
            FUZZ_CHECK(s[i] == 'T' || s[i] == 't', "byte %d", i);
        else if (i == 13 || i == 16)
            FUZZ_CHECK(s[i] == ':', "byte %d", i);
        else
            FUZZ_CHECK(s[i] >= '0' && s[i] <= '9', "byte %d not a digit", i);
    }
    int y = num(s, 4), mo = num(s + 5, 2), d = num(s + 8, 2), h = num(s + 11, 2), mi = num(s + 14, 2),
        sec = num(s + 17, 2);
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    FUZZ_CHECK(y >= 1970 && mo >= 1 && mo <= 12 && d >= 1 && d <= mdays[mo - 1] + (mo == 2 && is_leap(y)) &&
                   h <= 23 && mi <= 59 && sec <= 60,
               "impossible date accepted: %.*s", (int)size, s);
    /* answered back as RFC 3339 with a 4-digit year, and accepted back in */
    FUZZ_CHECK(ms >= 0 && ms <= 253402300799999LL, "instant %lld outside 1970..9999", (long long)ms);

    char buf[32];
    clock_format_rfc3339(ms, buf, sizeof buf);
    FUZZ_CHECK(strlen(buf) == 24, "formatted %s", buf);
    int64_t back = -1;
    FUZZ_CHECK(clock_parse_rfc3339(buf, strlen(buf), &back) == 0 && back == ms, "%.*s -> %lld -> %s -> %lld",
               (int)size, s, (long long)ms, buf, (long long)back);
    if (size == 20 && (s[19] == 'Z' || s[19] == 'z') && sec < 60)
        FUZZ_CHECK(memcmp(buf, s, 10) == 0 && memcmp(buf + 11, s + 11, 8) == 0 && ms % 1000 == 0,
                   "%.*s formats as %s", (int)size, s, buf);
    free(s);
    return 0;
}
