/* router.h — maps method + path to an API handler. Templates have literal
 * segments and at most one "{id}" segment (a positive int64). */
#ifndef BX_HTTP_ROUTER_H
#define BX_HTTP_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "domain/errors.h"

struct call;

enum route_auth { AUTH_NONE = 0, AUTH_USER, AUTH_ADMIN };

struct route {
    const char *method;
    const char *path; /* template, also the metrics label */
    void (*handler)(struct call *c);
    enum route_auth auth;
    const char *id_name; /* the API's name of {id} ("concertId"), named by the 400 when it is
                          * not a positive int64; NULL when the template has no {id} */
};

enum router_result { ROUTER_FOUND, ROUTER_NO_PATH, ROUTER_BAD_METHOD, ROUTER_BAD_ID };

/* Finds the route of (method, path) — path without the query string; HEAD
 * matches a GET route (answered as GET without a body, RFC 9110 §9.3.2). On
 * ROUTER_FOUND *route and *id are set; on ROUTER_BAD_ID *route is the route whose
 * {id} failed; on ROUTER_BAD_METHOD allow lists the methods of that path. */
enum router_result router_match(const struct route *routes, size_t n, const char *method, size_t method_len,
                                const char *path, size_t path_len, const struct route **route, int64_t *id,
                                char *allow, size_t allow_len);

#endif
