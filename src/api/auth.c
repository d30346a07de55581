/* auth.c — who is calling: access tokens (signed, no lookup), the admin key,
 * and the queue-token gate of the booking endpoints (CONTRACT §4, §5). */
#include "api/api.h"
#include "api/verified_tokens.h"
#include "app.h"
#include "http/client.h"
#include "http/parse.h"
#include "queue/waitroom_redis.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int authenticate_user(struct call *c)
{
    size_t len, toklen;
    const char *h = call_header(c, "authorization", &len), *tok;
    if (parse_bearer(h, h ? len : 0, &tok, &toklen) != 0)
        return call_fail(c, BX_ERR_UNAUTHORIZED);
    if (verified_tokens_find(c->loop, tok, toklen, c->now / 1000, &c->user_id))
        return 0;
    int64_t expires_at;
    if (token_access_verify(app.secret, tok, toklen, c->now / 1000, &c->user_id, &expires_at) != 0) {
        c->user_id = 0;
        call_reply_error(c, BX_ERR_UNAUTHORIZED, NULL, "the access token is invalid or expired; log in again");
        return -1;
    }
    verified_tokens_keep(c->loop, tok, toklen, c->user_id, expires_at);
    return 0;
}

/* Compares hashes of both keys: constant time whatever the lengths. */
static int admin_key_matches(const char *given, size_t len)
{
    unsigned char a[32], b[32];
    crypto_generichash(a, sizeof a, (const unsigned char *)given, len, NULL, 0);
    crypto_generichash(b, sizeof b, (const unsigned char *)app.cfg.admin_key, strlen(app.cfg.admin_key), NULL, 0);
    return sodium_memcmp(a, b, sizeof a) == 0;
}

int api_authenticate(struct call *c, enum route_auth auth)
{
    switch (auth) {
    case AUTH_NONE:
        return 0;
    case AUTH_USER:
        return authenticate_user(c);
    case AUTH_ADMIN: {
        if (app.cfg.admin_key[0] == '\0')
            return call_fail(c, BX_ERR_ADMIN_DISABLED);
        size_t len;
        const char *key = call_header(c, "x-admin-key", &len);
        if (key == NULL || !admin_key_matches(key, len))
            return call_fail(c, BX_ERR_ADMIN_KEY);
        return 0;
    }
    }
    return call_fail(c, BX_ERR_INTERNAL);
}

int api_refuse_rate(struct call *c, int64_t wait_ms, const char *message)
{
    char retry[24];
    int n = snprintf(retry, sizeof retry, "%lld", (long long)((wait_ms + 999) / 1000));
    h2o_add_header(&c->req->pool, &c->req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL,
                   h2o_strdup(&c->req->pool, retry, (size_t)n).base, (size_t)n);
    call_reply_error(c, BX_ERR_RATE_LIMITED, NULL, message);
    return -1;
}

struct tarpit_state {
    h2o_timeout_entry_t entry;
    struct loop_ctx *loop;
    int64_t wait_ms;
    const char *message;
};

static void tarpit_over(h2o_timeout_entry_t *entry)
{
    struct tarpit_state *st = H2O_STRUCT_FROM_MEMBER(struct tarpit_state, entry, entry);
    int64_t wait_ms = st->wait_ms > API_TARPIT_MS ? st->wait_ms - API_TARPIT_MS : 1;
    const char *message = st->message;
    st->loop->tarpitted--;
    struct call *c = call_resume(st); /* NULL: the client left meanwhile (st is gone) */
    if (c != NULL)
        api_refuse_rate(c, wait_ms, message);
}

int api_refuse_rate_late(struct call *c, int64_t wait_ms, const char *message)
{
    struct loop_ctx *loop = c->loop;
    if (loop->tarpit == NULL) {
        loop->tarpit = malloc(sizeof *loop->tarpit); /* the loop's, for the life of the process */
        if (loop->tarpit != NULL)
            h2o_timeout_init(loop->loop, loop->tarpit, API_TARPIT_MS);
    }
    /* stopping: at once, or a flood on kept-alive connections holds the drain open */
    if (loop->tarpit == NULL || loop->tarpitted >= API_TARPIT_MAX || c->state != NULL || app.stopping)
        return api_refuse_rate(c, wait_ms, message);
    struct tarpit_state *st = call_state(c, sizeof *st, NULL);
    st->entry.cb = tarpit_over;
    st->loop = loop;
    st->wait_ms = wait_ms;
    st->message = message;
    loop->tarpitted++;
    call_step_begin(c);
    h2o_timeout_link(loop->loop, loop->tarpit, &st->entry);
    return -1;
}

/* The shared bucket's answer (scale-out). */
struct rate_step {
    void (*next)(struct call *c);
};

static void rate_taken(void *arg, bx_err e, int64_t wait_ms)
{
    struct rate_step *st = arg;
    struct call *c = call_resume(st);
    if (c == NULL)
        return;
    /* Redis did not answer: this instance's bucket, which allowed it, decides */
    if (e == BX_OK && wait_ms > 0)
        api_refuse_rate(c, wait_ms, NULL);
    else
        st->next(c);
}

void api_rate_limit(struct call *c, enum rate_action action, uint64_t subject, void (*next)(struct call *c))
{
    uint64_t key = (uint64_t)action << 56 ^ subject;
    /* this instance's own bucket first: what it refuses, the shared one would too
     * (its requests alone are over the rate), so a flood costs Redis nothing */
    int64_t wait_ms = ratelimit_take(app.limits, key, c->now);
    if (wait_ms != 0) {
        api_refuse_rate(c, wait_ms, NULL);
        return;
    }
    if (app.shared_limits == NULL || ratelimit_redis_off(app.shared_limits)) {
        next(c);
        return;
    }
    struct rate_step *st = call_step_state(c, sizeof *st);
    st->next = next;
    call_step_begin_on(st);
    if (ratelimit_redis_take(app.shared_limits, waitroom_redis_conn(c->loop->queue), key, c->now, rate_taken, st) != 0)
        rate_taken(st, BX_ERR_UNAVAILABLE, 0);
}

int api_address_limit(struct call *c)
{
    int64_t wait_ms = ratelimit_take(app.address_limits, call_client_key(c), c->now);
    return wait_ms == 0 ? 0
                        : api_refuse_rate_late(c, wait_ms,
                                               "too many sign-ups and log-ins from this address; retry after the "
                                               "Retry-After seconds");
}

const char *api_queue_token(struct call *c)
{
    size_t len;
    const char *h = call_header(c, "x-queue-token", &len);
    if (h == NULL || len == 0 || len > 128)
        return NULL;
    char *tok = h2o_mem_alloc_pool(&c->req->pool, len + 1);
    memcpy(tok, h, len);
    tok[len] = '\0';
    return tok;
}

void api_require_active(struct call *c, int64_t concert_id, waitroom_done_fn done, void *state)
{
    const char *tok = api_queue_token(c);
    call_step_begin(c);
    if (tok == NULL)
        done(state, BX_ERR_QUEUE_NOT_ACTIVE);
    else
        waitroom_require_active(c->loop->queue, tok, c->user_id, concert_id, c->now, done, state);
}

void api_gate_fail(struct call *c, bx_err e)
{
    /* on booking endpoints an unknown token is simply "not admitted" */
    call_fail(c, e == BX_ERR_QUEUE_TOKEN_INVALID ? BX_ERR_QUEUE_NOT_ACTIVE : e);
}
