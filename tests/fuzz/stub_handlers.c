/* stub_handlers.c — the handler symbols api/routes.c names, so the router fuzz
 * target links the real route table without h2o, the store or the queue. A
 * route is only matched there, never dispatched: every stub aborts. */
#include <stdlib.h>

#include "api/api.h"

#define STUB(name)                                                                                                   \
    void name(struct call *c)                                                                                        \
    {                                                                                                                \
        (void)c;                                                                                                     \
        abort();                                                                                                     \
    }

STUB(users_create)
STUB(sessions_create)
STUB(concerts_list)
STUB(queue_issue)
STUB(queue_get_status)
STUB(queue_leave)
STUB(schedules_list)
STUB(seats_list)
STUB(reservations_create)
STUB(reservations_get)
STUB(reservations_cancel)
STUB(reservations_list_mine)
STUB(balance_get)
STUB(balance_charge)
STUB(payments_create)
STUB(payments_list_mine)
STUB(admin_concerts_create)
STUB(admin_schedules_create)
STUB(ops_healthz)
STUB(ops_readyz)
STUB(ops_metrics)
