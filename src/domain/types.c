/* types.c — names of domain enums as the API spells them. */
#include "domain/types.h"

const char *reservation_status_name(enum reservation_status s)
{
    switch (s) {
    case RES_HELD:
        return "HELD";
    case RES_CONFIRMED:
        return "CONFIRMED";
    case RES_EXPIRED:
        return "EXPIRED";
    case RES_CANCELLED:
        return "CANCELLED";
    }
    return "UNKNOWN";
}

const char *seat_status_name(enum seat_status s)
{
    switch (s) {
    case SEAT_AVAILABLE:
        return "AVAILABLE";
    case SEAT_HELD:
        return "HELD";
    case SEAT_SOLD:
        return "SOLD";
    }
    return "UNKNOWN";
}
