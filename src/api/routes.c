/* routes.c — the route table: every endpoint of CONTRACT §5, its auth, and the
 * answer when its {id} is malformed. The order only matters for 405's Allow. */
#include "api/api.h"

const struct route api_routes[] = {
    {"POST", "/api/v1/users", users_create, AUTH_NONE, BX_OK},
    {"POST", "/api/v1/sessions", sessions_create, AUTH_NONE, BX_OK},
    {"GET", "/api/v1/concerts", concerts_list, AUTH_NONE, BX_OK},
    {"POST", "/api/v1/concerts/{id}/queue/tokens", queue_issue, AUTH_USER, BX_ERR_CONCERT_NOT_FOUND},
    {"GET", "/api/v1/queue/status", queue_get_status, AUTH_USER, BX_OK},
    {"DELETE", "/api/v1/queue/tokens/current", queue_leave, AUTH_USER, BX_OK},
    {"GET", "/api/v1/concerts/{id}/schedules", schedules_list, AUTH_USER, BX_ERR_CONCERT_NOT_FOUND},
    {"GET", "/api/v1/schedules/{id}/seats", seats_list, AUTH_USER, BX_ERR_SCHEDULE_NOT_FOUND},
    {"POST", "/api/v1/reservations", reservations_create, AUTH_USER, BX_OK},
    {"GET", "/api/v1/reservations/{id}", reservations_get, AUTH_USER, BX_ERR_RESERVATION_NOT_FOUND},
    {"DELETE", "/api/v1/reservations/{id}", reservations_cancel, AUTH_USER, BX_ERR_RESERVATION_NOT_FOUND},
    {"GET", "/api/v1/users/me/reservations", reservations_list_mine, AUTH_USER, BX_OK},
    {"GET", "/api/v1/users/me/balance", balance_get, AUTH_USER, BX_OK},
    {"POST", "/api/v1/users/me/balance/charge", balance_charge, AUTH_USER, BX_OK},
    {"POST", "/api/v1/payments", payments_create, AUTH_USER, BX_OK},
    {"GET", "/api/v1/users/me/payments", payments_list_mine, AUTH_USER, BX_OK},
    {"POST", "/api/v1/admin/concerts", admin_concerts_create, AUTH_ADMIN, BX_OK},
    {"POST", "/api/v1/admin/concerts/{id}/schedules", admin_schedules_create, AUTH_ADMIN, BX_ERR_CONCERT_NOT_FOUND},
    {"GET", "/healthz", ops_healthz, AUTH_NONE, BX_OK},
    {"GET", "/readyz", ops_readyz, AUTH_NONE, BX_OK},
    {"GET", "/metrics", ops_metrics, AUTH_NONE, BX_OK},
};

const size_t api_route_count = sizeof api_routes / sizeof api_routes[0];
