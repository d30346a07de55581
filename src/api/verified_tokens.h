/* verified_tokens.h — a loop's memory of access tokens whose signature it checked. */
#ifndef BX_API_VERIFIED_TOKENS_H
#define BX_API_VERIFIED_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "http/call.h"

/* 1 and *user_id when this loop verified exactly this token and it has not
 * expired at now_sec; 0 otherwise (then verify it). */
int verified_tokens_find(struct loop_ctx *loop, const char *tok, size_t len, int64_t now_sec, int64_t *user_id);
/* Remembers a token token_access_verify accepted (may forget another). */
void verified_tokens_keep(struct loop_ctx *loop, const char *tok, size_t len, int64_t user_id, int64_t expires_at_sec);

#endif
