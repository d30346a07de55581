/* server.c — h2o 2.2 glue: one event loop per thread, all accepting from one
 * listening socket that this process alone holds, each with its own store
 * (store/astore.h) and its own port on the waiting room; HTTP/1.1 only (no h2: Debian's h2o 2.2.5 lacks the Rapid Reset
 * fix). API paths go through the router; other paths go to the web page
 * (http/webpage.c). Must not hold domain logic. */
#include "http/server.h"
#include "api/api.h"
#include "app.h"
#include "http/metrics.h"
#include "http/router.h"
#include "http/webpage.h"
#include "http/workers.h"
#include "store/astore.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/request_id.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 100
#define DRAIN_GRACE_MS 300
#define DRAIN_DEADLINE_MS 10000

static h2o_globalconf_t h2o_config;
static struct loop_ctx *loops;
static char route_labels[64][96];
static const char *route_label_ptrs[64];
static int64_t stop_requested_ms;
static sem_t loops_ready; /* posted once by each loop thread when it started (or failed to) */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The level of a request's log line: a server fault (500) is an error, an
 * unavailable dependency (503) a warning, anything a client caused is info. */
static enum log_level request_level(int status)
{
    if (status >= 500)
        return status == 503 ? LOG_WARN : LOG_ERROR;
    return LOG_INFO;
}

void server_call_finished(struct call *c)
{
    static const char *const level_names[] = {"debug", "info", "warn", "error"};
    int64_t us = (mono_ns() - c->started_ns) / 1000;
    size_t ri = c->route ? (size_t)(c->route - api_routes) : api_route_count;
    if (!c->web) /* the metrics are the API's; the page's files are not counted */
        metrics_observe_request(ri, c->status, us);
    enum log_level level = request_level(c->status);
    if (log_threshold <= level) {
        const char *label = c->route ? c->route->path : c->web ? "web page" : "unmatched";
        char line[512], ts[32];
        int n = snprintf(line, sizeof line,
                         "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"request\",\"method\":\"%.*s\",\"path\":\"%s\","
                         "\"status\":%d,\"us\":%lld,\"user\":%lld,\"rid\":\"%s\"}",
                         clock_format_rfc3339(c->now, ts, sizeof ts), level_names[level], (int)c->req->method.len,
                         c->req->method.base, label, c->status, (long long)us, (long long)c->user_id, c->request_id);
        log_line(line, n < (int)sizeof line ? n : (int)sizeof line - 1);
    }
}

static int is_api_path(h2o_iovec_t path)
{
    static const char *const prefixes[] = {"/api/", "/healthz", "/readyz", "/metrics"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        size_t n = strlen(prefixes[i]);
        if (path.len >= n && memcmp(path.base, prefixes[i], n) == 0)
            return 1;
    }
    return path.len == 4 && memcmp(path.base, "/api", 4) == 0;
}

/* True when a header line of [from, to) is named `name` (lower case). */
static int header_block_names(const char *from, const char *to, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = from; p + n + 2 <= to; p++)
        if (*p == '\n' && strncasecmp(p + 1, name, n) == 0 && p[1 + n] == ':')
            return 1;
    return 0;
}

/* Request smuggling guard. h2o 2.2 frames the body itself (first Content-Length
 * wins; chunked is decoded in place) and hides both framing headers from
 * handlers, so ambiguity shows only in the input buffer: bytes left after the
 * body (two Content-Lengths, or any pipelining behind a body), or a body that does
 * not directly follow the header block, or a Transfer-Encoding in the header
 * block (chunked, possibly with a Content-Length beside it, RFC 9112 §6.1:
 * process, then close). Either way this connection serves no further request. */
static void close_after_unclear_framing(h2o_req_t *req)
{
    if (req->entity.base == NULL || req->conn->callbacks->get_socket == NULL)
        return;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock == NULL || sock->input == NULL)
        return;
    const char *start = sock->input->bytes, *end = start + sock->input->size;
    const char *body = req->entity.base, *body_end = body + req->entity.len;
    int in_buffer = body >= start && body_end <= end;
    int plain = in_buffer && body - start >= 4 && memcmp(body - 4, "\r\n\r\n", 4) == 0;
    if (!in_buffer || !plain || body_end != end || header_block_names(start, body, "transfer-encoding"))
        req->http1_is_persistent = 0;
}

/* The one h2o handler: route, authenticate, dispatch; paths outside the API go
 * to the web page when there is one. */
static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    size_t path_len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    h2o_iovec_t path = h2o_iovec_init(req->path.base, path_len);

    close_after_unclear_framing(req);
    struct call *c = h2o_mem_alloc_pool(&req->pool, sizeof *c);
    memset(c, 0, sizeof *c);
    c->req = req;
    c->loop = H2O_STRUCT_FROM_MEMBER(struct loop_ctx, ctx, req->conn->ctx);
    c->started_ns = mono_ns();
    c->now = clock_now_ms();
    request_id_new(c->request_id);
    if (!is_api_path(path) && app.cfg.web_root[0] != '\0') {
        webpage_serve(c);
        return 0;
    }

    const struct route *route = NULL;
    char allow[64];
    switch (router_match(api_routes, api_route_count, req->method.base, req->method.len, path.base, path.len, &route,
                         &c->id, allow, sizeof allow)) {
    case ROUTER_NO_PATH:
        call_reply_error(c, BX_ERR_ROUTE_NOT_FOUND, NULL, NULL);
        return 0;
    case ROUTER_BAD_METHOD:
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
        call_reply_error(c, BX_ERR_METHOD_NOT_ALLOWED, NULL, NULL);
        return 0;
    case ROUTER_BAD_ID: { /* not an id at all: a malformed request, not a missing object */
        char msg[96];
        snprintf(msg, sizeof msg, "%s must be a positive integer (1 to 9223372036854775807)", route->id_name);
        c->route = route;
        call_reply_error(c, BX_ERR_VALIDATION, route->id_name, msg);
        return 0;
    }
    case ROUTER_FOUND:
        break;
    }
    c->route = route;
    if (api_authenticate(c, route->auth) != 0)
        return 0;
    route->handler(c);
    return 0;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    struct loop_ctx *loop = listener->data;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock != NULL)
        h2o_accept(&loop->accept_ctx, sock);
}

static void on_room_ticked(void *arg, bx_err e)
{
    struct loop_ctx *loop = arg;
    loop->housekeeping_busy = 0;
    if (e != BX_OK)
        log_warn("waiting room tick failed: %s", bx_err_info(e)->code);
}

/* Housekeeping, every TICK_MS on every loop. Loop 0 also drives the waiting
 * room (idle expiry, admission; one tick at a time) and the store's own
 * periodic work (the hold sweeper, CONTRACT §4, §6). */
static void on_tick(h2o_timeout_entry_t *entry)
{
    struct loop_ctx *loop = H2O_STRUCT_FROM_MEMBER(struct loop_ctx, tick_entry, entry);
    int64_t now = clock_now_ms();
    if (loop->index == 0 && !app.stopping) {
        if (!loop->housekeeping_busy) {
            loop->housekeeping_busy = 1;
            waitroom_tick(loop->queue, now, on_room_ticked, loop);
        }
        astore_housekeeping(loop->store, now);
    }
    if (app.stopping && !loop->listener_closed) {
        h2o_socket_read_stop(loop->listener);
        h2o_socket_close(loop->listener);
        loop->listener = NULL;
        loop->listener_closed = 1;
    }
    h2o_timeout_link(loop->loop, &loop->tick_timeout, &loop->tick_entry);
}

static int loop_done(struct loop_ctx *loop)
{
    if (!app.stopping)
        return 0;
    int64_t waited = clock_mono_ms() - stop_requested_ms;
    if (waited >= DRAIN_DEADLINE_MS)
        return 1;
    return loop->pending_jobs == 0 && waited >= DRAIN_GRACE_MS;
}

static int loop_init(struct loop_ctx *loop);

/* Each loop builds its own h2o objects on its own thread: h2o 2.2 recycles socket
 * buffers through per-thread allocators bound to the thread that created the socket
 * (e.g. the pipe of the loop's multithread queue), so a loop created by another
 * thread would share that thread's allocator with the others, unlocked. */
static void *loop_main(void *arg)
{
    struct loop_ctx *loop = arg;
    if (loop_init(loop) != 0) {
        loop->init_failed = 1;
        sem_post(&loops_ready);
        return NULL;
    }
    sem_post(&loops_ready);
    while (!loop_done(loop))
        h2o_evloop_run(loop->loop, TICK_MS);
    /* With steps still in flight (past the drain deadline), their callbacks would
     * find these gone: leave them to process exit, as the h2o context. */
    if (loop->pending_jobs == 0) {
        waitroom_port_close(loop->queue);
        astore_close(loop->store);
        loop->queue = NULL;
        loop->store = NULL;
    }
    return NULL;
}

static int listen_fd = -1;             /* the process's one listening socket (server_listen) */
static struct sockaddr_in listen_addr; /* its address, with the port the kernel chose for port 0 */

/* One listening socket for the whole process, without SO_REUSEPORT: the kernel
 * then refuses the port to anyone else who listens on it, whoever they are, and
 * a second boxoffice fails here instead of silently sharing the port (with
 * SO_REUSEPORT every process of the same user could join the group and take a
 * share of the connections). The loops share this one socket: each accepts from
 * its own duplicate of the descriptor. SO_REUSEADDR only lets a restart bind
 * over connections of the previous run still in TIME_WAIT; it never lets two
 * listeners share a port. */
/* SIGTERM and SIGINT are blocked in every thread, so that only server_run's
 * sigwait takes them: threads inherit the mask, so this runs before any thread
 * of the process starts (the waiting room's journal, the store writer). */
static void stop_signals(sigset_t *sigs)
{
    sigemptyset(sigs);
    sigaddset(sigs, SIGTERM);
    sigaddset(sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int server_listen(const struct config *cfg)
{
    sigset_t sigs;
    stop_signals(&sigs);
    memset(&listen_addr, 0, sizeof listen_addr);
    listen_addr.sin_family = AF_INET;
    listen_addr.sin_port = htons((uint16_t)cfg->listen_port);
    if (inet_pton(AF_INET, cfg->listen_host, &listen_addr.sin_addr) != 1) {
        log_error("--listen host must be an IPv4 address, got %s", cfg->listen_host);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        bind(fd, (struct sockaddr *)&listen_addr, sizeof listen_addr) != 0 || listen(fd, SOMAXCONN) != 0) {
        int saved = errno;
        if (saved == EADDRINUSE)
            log_error("cannot listen on %s:%d: the port is in use by another process (another boxoffice, or any "
                      "other server); stop it or choose another --listen",
                      cfg->listen_host, cfg->listen_port);
        else
            log_error("cannot listen on %s:%d: %s", cfg->listen_host, cfg->listen_port, strerror(saved));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    socklen_t alen = sizeof listen_addr;
    getsockname(fd, (struct sockaddr *)&listen_addr, &alen); /* port 0: the port the kernel chose */
    listen_fd = fd;
    return 0;
}

static void configure_h2o(void)
{
    h2o_config_init(&h2o_config);
    h2o_config.server_name = h2o_iovec_init(H2O_STRLIT("boxoffice"));
    /* bodies up to 1 MiB are read so that 64 KiB+ gets our JSON 413; past that h2o refuses */
    h2o_config.max_request_entity_size = 1024 * 1024;
    h2o_config.http1.upgrade_to_http2 = 0;
    h2o_config.http1.req_timeout = 10000; /* slow clients are cut after 10 s */
    h2o_hostconf_t *host = h2o_config_register_host(&h2o_config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(pathconf, sizeof *handler);
    handler->on_req = on_req;
    if (app.cfg.web_root[0] != '\0' && webpage_open(app.cfg.web_root) != 0) {
        log_warn("web root %s not found: serving the API only", app.cfg.web_root);
        app.cfg.web_root[0] = '\0';
    }
    for (size_t i = 0; i < api_route_count && i < 64; i++) {
        snprintf(route_labels[i], sizeof route_labels[i], "%s %s", api_routes[i].method, api_routes[i].path);
        route_label_ptrs[i] = route_labels[i];
    }
}

/* On the loop's own thread; index and listen_fd are set. Closes the fd on failure. */
static int loop_init(struct loop_ctx *loop)
{
    int fd = loop->listen_fd;
    char err[256];
    loop->loop = h2o_evloop_create();
    h2o_context_init(&loop->ctx, loop->loop, &h2o_config);
    loop->store = astore_open(app.cfg.db, loop->loop, loop->ctx.queue, err, sizeof err);
    if (loop->store == NULL) {
        log_error("cannot open database %s: %s", app.cfg.db, err);
        close(fd);
        return -1;
    }
    loop->queue = waitroom_port_open(app.waitroom, loop->loop, loop->ctx.queue);
    if (loop->queue == NULL) {
        log_error("out of memory for the waiting room");
        close(fd);
        return -1;
    }
    loop->accept_ctx.ctx = &loop->ctx;
    loop->accept_ctx.hosts = h2o_config.hosts;
    workers_attach_loop(loop);
    loop->listener = h2o_evloop_socket_create(loop->loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    loop->listener->data = loop;
    h2o_socket_read_start(loop->listener, on_accept);
    h2o_timeout_init(loop->loop, &loop->tick_timeout, TICK_MS);
    loop->tick_entry.cb = on_tick;
    h2o_timeout_link(loop->loop, &loop->tick_timeout, &loop->tick_entry);
    return 0;
}

const char *const *server_route_labels(void)
{
    return route_label_ptrs;
}

int server_run(void)
{
    int n = app.cfg.threads;
    if (listen_fd < 0) {
        log_error("server_run without server_listen");
        return 1;
    }
    sigset_t sigs;
    stop_signals(&sigs);
    configure_h2o();
    if (sem_init(&loops_ready, 0, 0) != 0) {
        log_error("cannot create a semaphore: %s", strerror(errno));
        return 1;
    }
    loops = calloc((size_t)n, sizeof *loops);
    pthread_t *tids = calloc((size_t)n, sizeof *tids);
    if (loops == NULL || tids == NULL) {
        log_error("out of memory at start-up");
        free(tids);
        return 1;
    }
    char err[256];
    if (astore_start(app.cfg.db, err, sizeof err) != 0) {
        log_error("cannot start the store: %s", err);
        free(tids);
        return 1;
    }
    if (workers_start(n) != 0) {
        log_error("cannot start worker threads");
        workers_stop();
        astore_stop();
        free(tids);
        return 1;
    }
    int rc = 0, started = 0;
    for (int i = 0; i < n; i++) {
        int fd = fcntl(listen_fd, F_DUPFD_CLOEXEC, 0); /* the loop owns (and closes) its duplicate */
        if (fd < 0) {
            log_error("cannot duplicate the listening socket: %s", strerror(errno));
            rc = 1;
            break;
        }
        loops[i].index = i;
        loops[i].listen_fd = fd;
        if (pthread_create(&tids[i], NULL, loop_main, &loops[i]) != 0) {
            log_error("cannot start loop thread %d", i);
            close(fd);
            rc = 1;
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++)
        while (sem_wait(&loops_ready) != 0 && errno == EINTR)
            ;
    for (int i = 0; i < started; i++)
        rc |= loops[i].init_failed;
    close(listen_fd); /* every loop holds its own duplicate now */
    listen_fd = -1;
    if (rc == 0) {
        log_info("boxoffice serving on http://%s:%d/ (%d loops, db %s, queue %s)", app.cfg.listen_host,
                 ntohs(listen_addr.sin_port), n, app.cfg.db, app.cfg.queue);
        int sig = 0;
        sigwait(&sigs, &sig);
        log_info("signal %d: draining and shutting down", sig);
    }
    stop_requested_ms = clock_mono_ms();
    app.stopping = 1;
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    workers_stop();
    astore_stop();
    free(tids);
    /* The loops, their h2o contexts and any idle keep-alive connections are left
     * to process exit: h2o 2.2 cannot dispose a context while connections are
     * open (it asserts), and it offers no way to close them first. */
    log_info("stopped");
    return rc;
}
