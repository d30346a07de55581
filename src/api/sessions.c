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
    struct login_job j;
    memset(&j, 0, sizeof j);
    if (validate_user_name(name, nlen) == NULL && plen < sizeof j.password) {
        struct user u;
        bx_err e = c->loop->store->ops->user_find_by_name(c->loop->store, name, &u);
        if (e == BX_OK) {
            j.user_id = u.id;
            memcpy(j.pwhash, u.pwhash, sizeof j.pwhash);
        } else if (e != BX_ERR_NOT_FOUND) {
            call_fail(c, e);
            return;
        }
    }
    if (plen >= sizeof j.password)
        plen = sizeof j.password - 1; /* too long to be anyone's password: verify fails */
    memcpy(j.password, pw, plen);
    j.password_len = plen;
    if (workers_submit(c, &j, sizeof j, login_verify, login_done) != 0)
        call_fail(c, BX_ERR_UNAVAILABLE);
    sodium_memzero(&j, sizeof j);
}
