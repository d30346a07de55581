/* token.h — unguessable and signed tokens (libsodium).
 * Queue tokens: 192 random bits from the kernel CSPRNG, base64url.
 * Access tokens: "<userId>.<expiresAtSec>.<base64url HMAC-SHA256>" over
 * "<userId>.<expiresAtSec>" with the server secret; verified without a lookup. */
#ifndef BX_UTIL_TOKEN_H
#define BX_UTIL_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define TOKEN_SECRET_LEN 32
#define ACCESS_TOKEN_MAX 96

/* Fills out with BX_QUEUE_TOKEN_LEN chars + NUL: base64url of the issue time
 * (6 bytes, big-endian Unix ms) then 18 random bytes (144 bits from the kernel
 * CSPRNG). Tokens issued close in time share their first characters, so a table
 * keyed by token grows in one place instead of at random pages (the embedded
 * queue journals every token); the time tells its holder nothing new, the random
 * part is what is unguessable. */
void token_queue_new(int64_t issued_ms, char *out);
/* The issue time of a token_queue_new token from its 24 decoded bytes. */
int64_t token_queue_issued_ms(const unsigned char *raw);
/* A queue token that also names its concert, for backends that route by
 * concert (Redis Cluster hash tags): 8 bytes of concert id then 16 random bytes
 * (128 bits from the kernel CSPRNG), base64url. Same shape as token_queue_new. */
void token_queue_new_for(int64_t concert_id, char *out);
/* The concert of a token made by token_queue_new_for; -1 when malformed. */
int token_queue_concert(const char *s, size_t len, int64_t *concert_id);
/* True if s has the shape of a queue token (length and alphabet). */
int token_queue_well_formed(const char *s, size_t len);

/* Writes the access token (NUL-terminated, < ACCESS_TOKEN_MAX). */
void token_access_sign(const unsigned char secret[TOKEN_SECRET_LEN], int64_t user_id, int64_t expires_at_sec,
                       char *out, size_t outlen);
/* 0 and *user_id when the token is well formed, signed by secret and not
 * expired at now_sec; -1 otherwise. Constant-time signature comparison. */
int token_access_verify(const unsigned char secret[TOKEN_SECRET_LEN], const char *tok, size_t len, int64_t now_sec,
                        int64_t *user_id, int64_t *expires_at_sec);

#endif
