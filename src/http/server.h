/* server.h — the h2o server: event loops, listeners, the API entry point and
 * graceful shutdown. */
#ifndef BX_HTTP_SERVER_H
#define BX_HTTP_SERVER_H

#include "http/call.h"

/* Runs cfg->threads event loops until SIGTERM/SIGINT; returns the exit code. */
int server_run(void);

/* Called by the reply helpers once a response is handed to h2o: logs the
 * request line and updates the metrics. */
void server_call_finished(struct call *c);

/* "METHOD /path/template" of each route, for the metrics labels. */
const char *const *server_route_labels(void);

#endif
