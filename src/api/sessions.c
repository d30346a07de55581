/* sessions.c — POST /api/v1/sessions: log in. The stored hash is read on the
 * loop, verified on the worker pool (unknown names cost the same time as wrong
 * passwords), and a signed access token is issued back on the loop.
 *
 * Guessing is limited before anything is looked up (so refusals say nothing
 * about whether a name exists), with the counters of app.h:
 *  - per client address, every sign-up and log-in (--address-rate-limit);
 *  - per client address, failed log-ins whatever the names: the same backoff as
 *    below after 4 x --login-tries failures, and then one log-in at a time. A
 *    flood of new names from one address (which no per-name count sees) soon gets
 *    one hash a minute: on a machine where two argon2id hashes at once take twice
 *    as long each, any steady share of the pool would slow every real log-in. Only
 *    failures count here (many honest log-ins may share an address at once);
 *  - per (name, client address): after --login-tries attempts, each further one
 *    waits 1 s, 2 s, 4 s ... up to 60 s; a success clears the count. An attacker
 *    guessing from one place is slowed to a trickle, and only there: the owner
 *    logging in from her own address has a count of her own;
 *  - per name, from addresses that never signed up or logged in to that name
 *    (no mark): the same backoff after 20 times as many attempts. A distributed
 *    attack (many addresses, a few guesses each) is slowed down just the same,
 *    yet cannot lock the owner out: her address carries a mark and skips this
 *    count. The price: while a name is under such an attack, its owner cannot
 *    log in from a new address until the backoff lets her through.
 * A log-in from an address with a mark for the name (a returning user) is also
 * hashed first (http/workers.h): a flood from many addresses fills the hashing
 * queue fairly, and would otherwise turn returning users away with 503.
 * Every attempt counts until it succeeds; an attempt that never reached the
 * verification (503, store error) gives its counts back. The refusals of the two
 * per-address limits come one second late (api_refuse_rate_late): a client
 * hammering them in a closed loop costs a request per connection per second, not
 * thousands; the per-name ones come at once (the address limits bound their pace). */
#include "api/api.h"
#include "app.h"
#include "domain/validate.h"
#include "http/client.h"
#include "http/workers.h"
#include "util/clock.h"
#include "util/mix64.h"

#include <sodium.h>
#include <string.h>

uint64_t sessions_name_key(const char *name, size_t len)
{
    unsigned char h[8];
    uint64_t key = 0;
    crypto_generichash(h, sizeof h, (const unsigned char *)name, len, NULL, 0);
    for (int i = 0; i < 8; i++)
        key = key << 8 | h[i];
    return key;
}

uint64_t sessions_pair_key(uint64_t name_key, uint64_t client_key)
{
    return mix64(name_key ^ mix64(client_key + MIX64_GOLDEN));
}

/* The guessing counters one attempt took. */
struct login_counts {
    uint64_t address, pair, name;
    bool name_counted; /* false: the address has a mark for the name (a returning user) */
};

/* The attempt never reached the verification: it guessed nothing. */
static void login_uncount(const struct login_counts *k, int64_t now)
{
    backoff_leave(app.login_addresses, k->address, now, false);
    backoff_give_back(app.login_pairs, k->pair);
    if (k->name_counted)
        backoff_give_back(app.login_names, k->name);
}

/* The right password: this attempt was no failure; this address may log in to
 * this name without the per-name count from now on, and its own count restarts. */
static void login_succeeded(const struct login_counts *k, int64_t now)
{
    backoff_leave(app.login_addresses, k->address, now, false);
    backoff_clear(app.login_pairs, k->pair);
    backoff_mark(app.login_marks, k->pair, now);
    if (k->name_counted)
        backoff_give_back(app.login_names, k->name);
}

struct login_job {
    int64_t user_id; /* 0: no such user */
    char pwhash[BX_PWHASH_MAX + 1];
    char password[257];
    size_t password_len;
    int ok;
    struct login_counts counts;
    int64_t now;
};

static void login_verify(void *payload)
{
    struct login_job *j = payload;
    j->ok = password_verify(&app.pwcost, j->user_id ? j->pwhash : NULL, j->password, j->password_len) == 0 &&
            j->user_id != 0;
    sodium_memzero(j->password, sizeof j->password);
}

static void login_done(struct call *c, void *payload, bx_err e)
{
    struct login_job *j = payload;
    if (e != BX_OK) { /* pushed out of the hashing queue (answered 503) */
        login_uncount(&j->counts, j->now);
        return;
    }
    if (j->ok)
        login_succeeded(&j->counts, j->now);
    else
        backoff_leave(app.login_addresses, j->counts.address, j->now, true); /* a failure of this address */
    if (c == NULL)
        return;
    if (!j->ok) {
        call_fail(c, BX_ERR_BAD_CREDENTIALS);
        return;
    }
    int64_t expires = c->now / 1000 + app.cfg.session_ttl;
    char token[ACCESS_TOKEN_MAX];
    token_access_sign(app.secret, j->user_id, expires, token, sizeof token);
    c->user_id = j->user_id;
    call_reply_json(c, 200,
                    json_pack("{s:s, s:I, s:s}", "accessToken", token, "userId", (json_int_t)j->user_id, "expiresAt",
                              call_time(c, expires * 1000)));
}

/* A log-in: the stored hash (if any), then the verification on the worker pool. */
struct login_state {
    struct user u;
    char password[257];
    size_t password_len;
    struct login_counts counts;
};

static void login_state_release(void *state)
{
    sodium_memzero(state, sizeof(struct login_state));
}

/* Unknown names are verified too (against no hash), so they cost the same time. */
static void login_user_found(void *arg, bx_err e)
{
    struct login_state *st = arg;
    struct login_counts counts = st->counts; /* st is gone once call_resume says the client is */
    struct call *c = call_resume(st);
    if (c == NULL) {
        login_uncount(&counts, clock_now_ms());
        return;
    }
    if (e != BX_OK && e != BX_ERR_NOT_FOUND) {
        login_uncount(&st->counts, c->now);
        call_fail(c, e);
        return;
    }
    struct login_job j;
    memset(&j, 0, sizeof j);
    if (e == BX_OK) {
        j.user_id = st->u.id;
        memcpy(j.pwhash, st->u.pwhash, sizeof j.pwhash);
    }
    memcpy(j.password, st->password, st->password_len);
    j.password_len = st->password_len;
    j.counts = st->counts;
    j.now = c->now;
    sodium_memzero(st->password, sizeof st->password);
    /* a returning user (a mark for this name and address) is hashed first */
    if (workers_submit(c, call_client_key(c), !st->counts.name_counted, &j, sizeof j, login_verify, login_done) != 0)
        login_uncount(&st->counts, c->now); /* answered 503 */
    sodium_memzero(&j, sizeof j);
}

void sessions_create(struct call *c)
{
    const char *name, *pw;
    size_t nlen, plen;
    if (call_body(c) || call_body_string(c, "name", &name, &nlen) || call_body_string(c, "password", &pw, &plen))
        return;
    if (api_address_limit(c) != 0)
        return;
    struct login_counts k = {.address = call_client_key(c), .name = sessions_name_key(name, nlen)};
    k.pair = sessions_pair_key(k.name, k.address);
    int64_t wait = backoff_enter(app.login_addresses, k.address, c->now);
    if (wait != 0) {
        api_refuse_rate_late(c, wait, "too many failed log-ins from this address; retry after the Retry-After seconds");
        return;
    }
    wait = backoff_take(app.login_pairs, k.pair, c->now);
    if (wait != 0) {
        backoff_leave(app.login_addresses, k.address, c->now, false);
        api_refuse_rate(c, wait,
                        "too many log-ins to this account from this address; retry after the Retry-After "
                        "seconds");
        return;
    }
    if (!backoff_marked(app.login_marks, k.pair, c->now)) {
        wait = backoff_take(app.login_names, k.name, c->now);
        if (wait != 0) {
            backoff_leave(app.login_addresses, k.address, c->now, false);
            backoff_give_back(app.login_pairs, k.pair);
            api_refuse_rate(c, wait,
                            "too many log-ins to this account; retry after the Retry-After seconds, or "
                            "from an address that has logged in to it before");
            return;
        }
        k.name_counted = true;
    }
    struct login_state *st = call_state(c, sizeof *st, login_state_release);
    st->counts = k;
    if (plen >= sizeof st->password)
        plen = sizeof st->password - 1; /* too long to be anyone's password: verify fails */
    memcpy(st->password, pw, plen);
    st->password_len = plen;
    call_step_begin(c);
    if (validate_user_name(name, nlen) != NULL) {
        login_user_found(st, BX_ERR_NOT_FOUND); /* no such name can exist */
        return;
    }
    astore_user_find_by_name(c->loop->store, name, &st->u, login_user_found, st);
}
