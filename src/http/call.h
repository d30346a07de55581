/* call.h — one API request as the handlers see it: the h2o request, the loop it
 * runs on, the matched route and its path id, the authenticated user, and the
 * helpers to read the JSON body and to answer. Every helper that fails has
 * already answered (400/401/...) and returns -1: handlers just return. */
#ifndef BX_HTTP_CALL_H
#define BX_HTTP_CALL_H

#define H2O_USE_LIBUV 0
#include <h2o.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "domain/errors.h"
#include "http/jsonout.h"
#include "store/store.h"

struct route;
struct astore;
struct waitroom_port;
struct seatmap_cache;
struct verified_tokens;
struct known_concerts;

/* One per event-loop thread; owns its store and its port on the waiting room. */
struct loop_ctx {
    int index;
    h2o_evloop_t *loop;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_socket_t *listener;
    struct astore *store;
    struct waitroom_port *queue;
    h2o_multithread_receiver_t worker_done; /* argon2 results come back here */
    h2o_timeout_t tick_timeout;
    h2o_timeout_entry_t tick_entry;
    int housekeeping_busy; /* the waiting room's tick is in flight (loop 0) */
    int pending_jobs; /* steps of requests in flight (call_step_begin) and worker jobs */
    int listener_closed;
    int listen_fd;   /* handed to the loop's thread, which builds everything on it */
    struct seatmap_cache *seatmaps; /* this loop's rendered seat maps (api/seatmap_cache.c) */
    struct known_concerts *concerts; /* concerts this loop found (api/known_concerts.c) */
    struct verified_tokens *verified; /* access tokens this loop verified (api/verified_tokens.c) */
    int init_failed; /* set by the loop's thread when it could not start */
    h2o_timeout_t *tarpit; /* refusals answered late (api/auth.c), created on first use */
    int tarpitted;         /* requests waiting there */
};

struct call {
    h2o_req_t *req;
    struct loop_ctx *loop;
    const struct route *route;
    int64_t id;      /* the {id} of the path, 0 if none */
    int64_t user_id; /* authenticated user, 0 if the route needs none */
    int64_t started_ns;
    int64_t now;     /* wall clock at arrival, Unix ms */
    json_t *body;    /* parsed JSON object, owned by the request pool */
    void *state;     /* call_state, once asked for */
    uint64_t client_key; /* http/client.h: the client's address as a limiter key; 0 until asked */
    char request_id[24];
    int status;      /* set when answered */
    int web;         /* answered by the web page (http/webpage.c), not the API */
};

/* Asynchronous steps. A handler that waits on the store or the waiting room keeps
 * what it needs across the wait in call_state(c, size, release): zeroed memory
 * that lives until the request is over AND no step is in flight, so a callback
 * can always write its results into it, even after the client went away. Around
 * each step:
 *     call_step_begin(c);  astore_x(..., &st->out, on_x, st);
 *     static void on_x(void *arg, bx_err e) {
 *         struct x_state *st = arg;
 *         struct call *c = call_resume(st);  // NULL: the client is gone
 *         if (c == NULL) return;             //   (st is already released)
 *         ... answer, or begin the next step ...
 * A step's callback may run before the function that started it returns (the
 * embedded backends answer at once): begin the step last. release (may be NULL)
 * frees what the state owns, once, when the state goes. Like the request pool,
 * call_state aborts when out of memory. */
void *call_state(struct call *c, size_t size, void (*release)(void *state));
void call_step_begin(struct call *c);
/* A state of its own for a step that runs before the handler's steps and must not
 * take the call's state (api_rate_limit's, which then hands the call to a handler
 * that asks for its own): the same lifetime rules; begin the step with
 * call_step_begin_on(state), end it with call_resume(state). */
void *call_step_state(struct call *c, size_t size);
void call_step_begin_on(void *state);
struct call *call_resume(void *state);
/* call_resume, and when the step failed (e != BX_OK) the error is answered too:
 * the call only when it goes on. */
struct call *call_resume_ok(void *state, bx_err e);

/* Answers with a JSON value (reference stolen) and the status. */
void call_reply_json(struct call *c, int status, json_t *value);
/* Answers with the JSON text j holds (500 INTERNAL if j ran out of memory), with
 * the same headers, X-Request-Id, metrics and log line as call_reply_json, then
 * releases j. For hot answers written with jsonout instead of a jansson tree. */
void call_reply_jsonout(struct call *c, int status, struct jsonout *j);
/* Answers 204 No Content. */
void call_reply_empty(struct call *c, int status);
/* Answers with an already rendered JSON body (copied). */
void call_reply_json_text(struct call *c, int status, const char *text, size_t len);
/* Answers with text and a content type (metrics, health). */
void call_reply_text(struct call *c, int status, const char *content_type, const char *text, size_t len);
/* Answers {"error":{"code","message","field"?}} with the status of err. message
 * NULL: the default message; field NULL: none. */
void call_reply_error(struct call *c, bx_err err, const char *field, const char *message);

/* Parses the body as a JSON object; -1 after answering 400/413. */
int call_body(struct call *c);
/* Required string field: -1 after answering 400 VALIDATION naming the field. */
int call_body_string(struct call *c, const char *field, const char **out, size_t *len);
/* Optional string field: *out = NULL when absent or null. */
int call_body_string_opt(struct call *c, const char *field, const char **out, size_t *len);
/* Required integer field (JSON integer, not a float or string). */
int call_body_int(struct call *c, const char *field, int64_t *out);
/* Optional integer field: *present = false when absent or null. */
int call_body_int_opt(struct call *c, const char *field, int64_t *out, bool *present);

/* A request header's value, or NULL; *len set. */
const char *call_header(struct call *c, const char *name, size_t *len);
/* A query parameter (raw, not decoded), or NULL. */
const char *call_query(struct call *c, const char *name, size_t *len);

/* Fills idem from the Idempotency-Key header and the body bytes; -1 after
 * answering 400 when the key is malformed. */
int call_idempotency(struct call *c, const char *scope, struct idem *idem);


/* Answers the store/queue error of a call (common: UNAVAILABLE, INTERNAL...). */
static inline int call_fail(struct call *c, bx_err e)
{
    call_reply_error(c, e, NULL, NULL);
    return -1;
}

/* RFC 3339 text of a Unix-ms time, allocated in the request pool. */
const char *call_time(struct call *c, int64_t ms);

#endif
