/* api.h — the HTTP API of CONTRACT §5: one handler per endpoint, grouped one file
 * per resource, all listed in the route table of routes.c. Handlers check the
 * input, call the store / waitroom, and answer through call.h; no SQL here. */
#ifndef BX_API_API_H
#define BX_API_API_H

#include "http/call.h"
#include "http/router.h"
#include "queue/waitroom.h"
#include "store/astore.h"

extern const struct route api_routes[];
extern const size_t api_route_count;

/* auth.c */
int api_authenticate(struct call *c, enum route_auth auth);

/* The two checks below are steps of the call (call.h): they begin the step and
 * end with done(state, e), whose first move is call_resume(state). */

/* The concert must exist (e = CONCERT_NOT_FOUND otherwise). Concerts are never
 * deleted, so each loop remembers the ones it found (api/known_concerts.c) and
 * the hot paths (queue tokens, dates) skip that read. */
void api_require_concert(struct call *c, int64_t concert_id, astore_done_fn done, void *state);
/* Booking gate (CONTRACT §4): the caller's X-Queue-Token must be ACTIVE for
 * concert_id. e != BX_OK: answer with api_gate_fail. */
void api_require_active(struct call *c, int64_t concert_id, waitroom_done_fn done, void *state);
/* Answers a refused gate: 403/410 (an unknown token is simply "not admitted"). */
void api_gate_fail(struct call *c, bx_err e);
/* Per-user limits (DESIGN "API details": anti-scalping): one token of the user's
 * bucket for action, then next(c); or 429 RATE_LIMITED with Retry-After. In
 * scale-out the buckets are in Redis, shared by every instance
 * (queue/ratelimit_redis.h), behind this instance's own; when Redis does not
 * answer, this instance's bucket decides alone. next runs at once or as a step of
 * its own (call_step_state): the call's state is still free for the handler. */
enum rate_action { RATE_QUEUE_TOKEN = 1, RATE_HOLD, RATE_CHARGE };
void api_rate_limit(struct call *c, enum rate_action action, uint64_t subject, void (*next)(struct call *c));
/* Per client address (http/client.h), for what costs a password hash (sign-up,
 * log-in): one token of the address's bucket (--address-rate-limit); -1 after
 * answering 429 RATE_LIMITED with Retry-After. */
int api_address_limit(struct call *c);
/* Answers 429 RATE_LIMITED with Retry-After (wait_ms rounded up to seconds) and
 * message (NULL: the default one); returns -1. */
int api_refuse_rate(struct call *c, int64_t wait_ms, const char *message);
/* The same answer, one second late (per-address limits of sign-ups and log-ins,
 * before the call has a state): a client hammering them in a closed loop then sends
 * one request per connection per second instead of thousands, and costs the loop
 * nothing while it waits. Retry-After counts from the late answer. At most
 * API_TARPIT_MAX per loop wait; past that, the answer is at once. message must be
 * a static string. Returns -1. */
#define API_TARPIT_MS 1000
#define API_TARPIT_MAX 20000
int api_refuse_rate_late(struct call *c, int64_t wait_ms, const char *message);

/* The X-Queue-Token header as a NUL-terminated string in the request pool, or NULL. */
const char *api_queue_token(struct call *c);

/* The keys of the log-in counters (api/sessions.c): an account name, and a name
 * together with a client address (http/client.h's key). */
uint64_t sessions_name_key(const char *name, size_t len);
uint64_t sessions_pair_key(uint64_t name_key, uint64_t client_key);

void users_create(struct call *c);
void sessions_create(struct call *c);
void concerts_list(struct call *c);
void queue_issue(struct call *c);
void queue_get_status(struct call *c);
void queue_leave(struct call *c);
void schedules_list(struct call *c);
void seats_list(struct call *c);
void reservations_create(struct call *c);
void reservations_get(struct call *c);
void reservations_cancel(struct call *c);
void reservations_list_mine(struct call *c);
void balance_get(struct call *c);
void balance_charge(struct call *c);
void payments_create(struct call *c);
void payments_list_mine(struct call *c);
void admin_concerts_create(struct call *c);
void admin_schedules_create(struct call *c);
void ops_healthz(struct call *c);
void ops_readyz(struct call *c);
void ops_metrics(struct call *c);

/* JSON shapes shared by several endpoints. */
json_t *api_reservation_json(struct call *c, const struct reservation *r);
json_t *api_payment_json(struct call *c, const struct payment *p);

#endif
