/* server.h — the h2o server: event loops, listeners, the API entry point and
 * graceful shutdown. */
#ifndef BX_HTTP_SERVER_H
#define BX_HTTP_SERVER_H

#include "http/call.h"

struct config;

/* Binds and listens on cfg's --listen address, first thing at start-up: -1
 * (with a clear log line) when the port is taken, by any process. The socket
 * is this process's alone; every event loop accepts from it. Blocks SIGTERM and
 * SIGINT for every thread started after it (server_run waits for them). */
int server_listen(const struct config *cfg);

/* Runs cfg->threads event loops on the socket of server_listen until
 * SIGTERM/SIGINT; returns the exit code. */
int server_run(void);

/* Called by the reply helpers once a response is handed to h2o: logs the
 * request line and updates the metrics. */
void server_call_finished(struct call *c);

/* "METHOD /path/template" of each route, for the metrics labels. */
const char *const *server_route_labels(void);

#endif
