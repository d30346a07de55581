/* users.c — POST /api/v1/users: sign-up. The argon2id hash runs on the worker
 * pool; the insert runs back on the loop. */
#include "api/api.h"
#include "app.h"
#include "domain/validate.h"
#include "http/workers.h"

#include <sodium.h>
#include <string.h>

struct signup_job {
    char name[BX_NAME_MAX + 1];
    char password[257];
    size_t password_len;
    char pwhash[BX_PWHASH_MAX + 1];
    int hash_rc;
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
};

static void signup_stored(void *arg, bx_err e)
{
    struct signup_state *st = arg;
    struct call *c = call_resume(st);
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
static void signup_done(struct call *c, void *payload)
{
    struct signup_job *j = payload;
    if (c == NULL)
        return;
    if (j->hash_rc != 0) {
        call_fail(c, BX_ERR_INTERNAL);
        return;
    }
    struct signup_state *st = call_state(c, sizeof *st, NULL);
    memcpy(st->name, j->name, sizeof st->name);
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
    struct signup_job j;
    memset(&j, 0, sizeof j);
    memcpy(j.name, name, nlen);
    memcpy(j.password, pw, plen);
    j.password_len = plen;
    if (workers_submit(c, &j, sizeof j, signup_hash, signup_done) != 0)
        call_fail(c, BX_ERR_UNAVAILABLE);
    sodium_memzero(&j, sizeof j);
}
