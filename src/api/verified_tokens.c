/* verified_tokens.c — access tokens each loop has verified (auth.c), so a client
 * that polls costs one HMAC per token and loop rather than one per request. An
 * access token never changes meaning while it is unexpired (no revocation, one
 * secret per process), so a remembered one needs only its expiry checked again.
 * Direct-mapped by the token's last bytes (the signature: uniformly distributed);
 * compared whole in constant time, so a slot's timing tells nothing about the
 * token in it. Only its loop thread touches a set; the sets live as long as the
 * loops. */
#include "api/verified_tokens.h"
#include "util/token.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 4096

struct verified_entry {
    char tok[ACCESS_TOKEN_MAX];
    size_t len; /* 0: empty */
    int64_t user_id, expires_at_sec;
};

struct verified_tokens {
    struct verified_entry e[SLOTS];
};

static struct verified_entry *slot_of(struct loop_ctx *loop, const char *tok, size_t len, int create)
{
    if (loop->verified == NULL && (!create || (loop->verified = calloc(1, sizeof *loop->verified)) == NULL))
        return NULL;
    uint32_t h = 0;
    memcpy(&h, tok + len - sizeof h, sizeof h); /* len >= sizeof h: checked by the callers */
    return &loop->verified->e[h % SLOTS];
}

int verified_tokens_find(struct loop_ctx *loop, const char *tok, size_t len, int64_t now_sec, int64_t *user_id)
{
    if (len < sizeof(uint32_t) || len > ACCESS_TOKEN_MAX)
        return 0;
    const struct verified_entry *x = slot_of(loop, tok, len, 0);
    if (x == NULL || x->len != len || sodium_memcmp(x->tok, tok, len) != 0 || x->expires_at_sec <= now_sec)
        return 0;
    *user_id = x->user_id;
    return 1;
}

void verified_tokens_keep(struct loop_ctx *loop, const char *tok, size_t len, int64_t user_id, int64_t expires_at_sec)
{
    if (len < sizeof(uint32_t) || len > ACCESS_TOKEN_MAX)
        return;
    struct verified_entry *x = slot_of(loop, tok, len, 1);
    if (x == NULL)
        return;
    memcpy(x->tok, tok, len);
    x->len = len;
    x->user_id = user_id;
    x->expires_at_sec = expires_at_sec;
}
