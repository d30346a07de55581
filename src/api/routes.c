/* routes.c — the route table: every endpoint of CONTRACT §5, its auth, and the
 * API's name of its {id} (a malformed one is 400 VALIDATION naming it). The
 * order only matters for 405's Allow. */
#include "api/api.h"

const struct route api_routes[] = {
    {"POST", "/api/v1/users", users_create, AUTH_NONE, NULL},
    {"POST", "/api/v1/sessions", sessions_create, AUTH_NONE, NULL},
    {"GET", "/api/v1/concerts", concerts_list, AUTH_NONE, NULL},
    {"POST", "/api/v1/concerts/{id}/queue/tokens", queue_issue, AUTH_USER, "concertId"},
    {"GET", "/api/v1/queue/status", queue_get_status, AUTH_USER, NULL},
    {"DELETE", "/api/v1/queue/tokens/current", queue_leave, AUTH_USER, NULL},
    {"GET", "/api/v1/concerts/{id}/schedules", schedules_list, AUTH_USER, "concertId"},
    {"GET", "/api/v1/schedules/{id}/seats", seats_list, AUTH_USER, "scheduleId"},
    {"POST", "/api/v1/reservations", reservations_create, AUTH_USER, NULL},
    {"GET", "/api/v1/reservations/{id}", reservations_get, AUTH_USER, "reservationId"},
    {"DELETE", "/api/v1/reservations/{id}", reservations_cancel, AUTH_USER, "reservationId"},
    {"GET", "/api/v1/users/me/reservations", reservations_list_mine, AUTH_USER, NULL},
    {"GET", "/api/v1/users/me/balance", balance_get, AUTH_USER, NULL},
    {"POST", "/api/v1/users/me/balance/charge", balance_charge, AUTH_USER, NULL},
    {"POST", "/api/v1/payments", payments_create, AUTH_USER, NULL},
    {"GET", "/api/v1/users/me/payments", payments_list_mine, AUTH_USER, NULL},
    {"POST", "/api/v1/admin/concerts", admin_concerts_create, AUTH_ADMIN, NULL},
    {"POST", "/api/v1/admin/concerts/{id}/schedules", admin_schedules_create, AUTH_ADMIN, "concertId"},
    {"GET", "/healthz", ops_healthz, AUTH_NONE, NULL},
    {"GET", "/readyz", ops_readyz, AUTH_NONE, NULL},
    {"GET", "/metrics", ops_metrics, AUTH_NONE, NULL},
};

const size_t api_route_count = sizeof api_routes / sizeof api_routes[0];
