/* seat_changes.h — the payload of a bx_seats notification (grammar in
 * pg_schema.h, migration 3): the whole new state of each seat a committed
 * transaction changed, "schedule,seat,status,hold_end" joined by ';'. No I/O. */
#ifndef BX_STORE_SEAT_CHANGES_H
#define BX_STORE_SEAT_CHANGES_H

#include <stdbool.h>
#include <stdint.h>

#include "domain/types.h"

struct seat_change {
    int64_t schedule_id;
    int32_t seat_no;
    enum seat_status status;
    int64_t hold_end; /* SEAT_HELD: when the hold ends (Unix ms); else 0 */
};

/* Calls each(arg, change) for every change of payload, in order. false when the
 * payload does not follow the grammar: changes before the fault were given. */
bool seat_changes_parse(const char *payload, void (*each)(void *arg, const struct seat_change *c), void *arg);

#endif
