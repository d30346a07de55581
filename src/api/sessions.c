/* sessions.c — POST /api/v1/sessions: log in. The stored hash is read on the
 * loop, verified on the worker pool (unknown names cost the same time as wrong
 * passwords), and a signed access token is issued back on the loop. */
#include "api/api.h"
#include "app.h"
#include "domain/validate.h"
#include "http/workers.h"

#include <sodium.h>
#include <string.h>

struct login_job {
    int64_t user_id; /* 0: no such user */
    char pwhash[BX_PWHASH_MAX + 1];
    char password[257];
    size_t password_len;
    int ok;
};

static void login_verify(void *payload)
{
    struct login_job *j = payload;
    j->ok = password_verify(&app.pwcost, j->user_id ? j->pwhash : NULL, j->password, j->password_len) == 0 &&
            j->user_id != 0;
    sodium_memzero(j->password, sizeof j->password);
}

static void login_done(struct call *c, void *payload)
{
    struct login_job *j = payload;
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
    call_reply_json(c, 200, json_pack("{s:s, s:I, s:s}", "accessToken", token, "userId", (json_int_t)j->user_id,
                                      "expiresAt", call_time(c, expires * 1000)));
}

/* A log-in: the stored hash (if any), then the verification on the worker pool. */
struct login_state {
    struct user u;
    char password[257];
    size_t password_len;
};

static void login_state_release(void *state)
{
    sodium_memzero(state, sizeof(struct login_state));
}

/* Unknown names are verified too (against no hash), so they cost the same time. */
static void login_user_found(void *arg, bx_err e)
{
    struct login_state *st = arg;
    struct call *c = call_resume(st);
    if (c == NULL)
        return;
    if (e != BX_OK && e != BX_ERR_NOT_FOUND) {
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
    sodium_memzero(st->password, sizeof st->password);
    if (workers_submit(c, &j, sizeof j, login_verify, login_done) != 0)
        call_fail(c, BX_ERR_UNAVAILABLE);
    sodium_memzero(&j, sizeof j);
}

void sessions_create(struct call *c)
{
    const char *name, *pw;
    size_t nlen, plen;
    if (call_body(c) || call_body_string(c, "name", &name, &nlen) || call_body_string(c, "password", &pw, &plen))
        return;
    /* password guessing is limited per account name, whoever asks */
    unsigned char h[8];
    uint64_t subject = 0;
    crypto_generichash(h, sizeof h, (const unsigned char *)name, nlen, NULL, 0);
    for (int i = 0; i < 8; i++)
        subject = subject << 8 | h[i];
    if (api_rate_limit(c, RATE_LOGIN, subject >> 8) != 0)
        return;
    struct login_state *st = call_state(c, sizeof *st, login_state_release);
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
