/* seat_changes.c — see seat_changes.h. */
#include "store/seat_changes.h"

#include <string.h>

/* A decimal number up to max at *s (not past end); *s moves past it. */
static bool number(const char **s, const char *end, int64_t max, int64_t *out)
{
    const char *p = *s;
    int64_t v = 0;
    if (p == end || *p < '0' || *p > '9')
        return false;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (v > (max - (*p - '0')) / 10)
            return false;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    *s = p;
    return true;
}

static bool comma(const char **s, const char *end)
{
    if (*s == end || **s != ',')
        return false;
    (*s)++;
    return true;
}

/* One change: [s, end) is "schedule,seat,status,hold_end". */
static bool change(const char *s, const char *end, struct seat_change *out)
{
    int64_t seat;
    if (!number(&s, end, INT64_MAX, &out->schedule_id) || !comma(&s, end) || !number(&s, end, INT32_MAX, &seat) ||
        !comma(&s, end) || s == end)
        return false;
    char st = *s++;
    if (!comma(&s, end) || !number(&s, end, INT64_MAX, &out->hold_end) || s != end)
        return false;
    out->seat_no = (int32_t)seat;
    switch (st) {
    case 'A':
        out->status = SEAT_AVAILABLE;
        return out->hold_end == 0;
    case 'H':
        out->status = SEAT_HELD;
        return true;
    case 'S':
        out->status = SEAT_SOLD;
        return out->hold_end == 0;
    default:
        return false;
    }
}

bool seat_changes_parse(const char *payload, void (*each)(void *arg, const struct seat_change *c), void *arg)
{
    const char *s = payload;
    for (;;) {
        const char *end = strchr(s, ';');
        if (end == NULL)
            end = s + strlen(s);
        struct seat_change c;
        if (!change(s, end, &c))
            return false;
        each(arg, &c);
        if (*end == '\0')
            return true;
        s = end + 1;
    }
}
