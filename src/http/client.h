/* client.h — who is at the other end of a request, for per-address limits: the
 * connection's peer address or, only when that peer is one of the trusted proxies
 * of --trusted-proxy (app.trusted_proxies), the address that proxy reports: the
 * rightmost entry of X-Forwarded-For that is not itself a trusted proxy (nginx's
 * $proxy_add_x_forwarded_for appends the address it saw, so entries further left
 * are whatever the client sent), else X-Real-IP. Without --trusted-proxy these
 * headers are ignored: anyone can send them. */
#ifndef BX_HTTP_CLIENT_H
#define BX_HTTP_CLIENT_H

#include <stdint.h>

#include "http/call.h"
#include "util/netaddr.h"

/* The client's address (family 0 when the connection has none). */
void call_client(struct call *c, struct netaddr *out);
/* netaddr_key of call_client, computed once per call. */
uint64_t call_client_key(struct call *c);

#endif
