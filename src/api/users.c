/* users.c — POST /api/v1/users: sign-up. The argon2id hash runs on the worker
 * pool; the insert runs back on the loop. Sign-ups share the per-address limit of
 * log-ins (they cost the same hash), and a sign-up marks its (name, address) as
 * the owner's (api/sessions.c): a guessing attack on the name elsewhere does not
 * keep that address out. */
#include "api/api.h"
#include "app.h"
#include "domain/validate.h"
#include "http/client.h"
#include "http/workers.h"
#include "util/clock.h"

#include <sodium.h>
#include <string.h>

struct signup_job {
    char name[BX_NAME_MAX + 1];
    char password[257];
    size_t password_len;
    char pwhash[BX_PWHASH_MAX + 1];
    int hash_rc;
    uint64_t pair; /* sessions_pair_key of the name and the client */
};

static void signup_hash(void *payload)
{
    struct signup_job *j = payload;
    j->hash_rc = password_hash(&app.pwcost, j->password, j->password_len, j->pwhash);
    sodium_memzero(j->password, sizeof j->password);
}

struct signup_state {
    char name[BX_NAME_MAX + 1];
    int64_t id;
    uint64_t pair;
};

static void signup_stored(void *arg, bx_err e)
{
    struct signup_state *st = arg;
    uint64_t pair = st->pair; /* st is gone once call_resume says the client is */
    struct call *c = call_resume(st);
    if (e == BX_OK)
        backoff_mark(app.login_marks, pair, clock_now_ms());
    if (c == NULL)
        return;
    if (e != BX_OK) {
        call_fail(c, e);
        return;
    }
    c->user_id = st->id;
    call_reply_json(c, 201, json_pack("{s:I, s:s}", "userId", (json_int_t)st->id, "name", st->name));
}

/* Back on the loop with the hash: store the user. */
static void signup_done(struct call *c, void *payload, bx_err e)
{
    struct signup_job *j = payload;
    if (c == NULL || e != BX_OK) /* client gone, or pushed out of the queue (answered 503) */
        return;
    if (j->hash_rc != 0) {
        call_fail(c, BX_ERR_INTERNAL);
        return;
    }
    struct signup_state *st = call_state(c, sizeof *st, NULL);
    memcpy(st->name, j->name, sizeof st->name);
    st->pair = j->pair;
    call_step_begin(c);
    astore_user_create(c->loop->store, st->name, j->pwhash, &st->id, signup_stored, st);
}

void users_create(struct call *c)
{
    const char *name, *pw, *why;
    size_t nlen, plen;
    if (call_body(c) || call_body_string(c, "name", &name, &nlen) || call_body_string(c, "password", &pw, &plen))
        return;
    if ((why = validate_user_name(name, nlen)) != NULL) {
        call_reply_error(c, BX_ERR_VALIDATION, "name", why);
        return;
    }
    if ((why = validate_password(pw, plen)) != NULL) {
        call_reply_error(c, BX_ERR_VALIDATION, "password", why);
        return;
    }
    if (api_address_limit(c) != 0)
        return;
    struct signup_job j;
    memset(&j, 0, sizeof j);
    memcpy(j.name, name, nlen);
    memcpy(j.password, pw, plen);
    j.password_len = plen;
    j.pair = sessions_pair_key(sessions_name_key(name, nlen), call_client_key(c));
    (void)workers_submit(c, call_client_key(c), false, &j, sizeof j, signup_hash, signup_done); /* -1: answered 503 */
    sodium_memzero(&j, sizeof j);
}
