/* token.h — unguessable and signed tokens (libsodium).
 * Queue tokens: 26 bytes, base64url (BX_QUEUE_TOKEN_LEN = 35 characters, no
 * padding); at least 128 bits of each come from the kernel CSPRNG.
 * Access tokens: "<userId>.<expiresAtSec>.<base64url HMAC-SHA256>" over
 * "<userId>.<expiresAtSec>" with the server secret; verified without a lookup. */
#ifndef BX_UTIL_TOKEN_H
#define BX_UTIL_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define TOKEN_SECRET_LEN 32
#define ACCESS_TOKEN_MAX 96

#define TOKEN_QUEUE_RAW 26 /* decoded bytes of every queue token */
#define TOKEN_QUEUE_TIME_BYTES 6
#define TOKEN_QUEUE_SLOT_BYTES 4
#define TOKEN_QUEUE_RANDOM_AT (TOKEN_QUEUE_TIME_BYTES + TOKEN_QUEUE_SLOT_BYTES)
#define TOKEN_QUEUE_RANDOM_BYTES (TOKEN_QUEUE_RAW - TOKEN_QUEUE_RANDOM_AT) /* 16: 128 bits */

/* The embedded queue's tokens (queue/waitroom_mem.c): the issue time (6 bytes,
 * big-endian Unix ms, clamped to 0..2^48-1), the arena slot that holds the token
 * (4 bytes, big-endian), then 16 random bytes from the kernel CSPRNG. The slot
 * finds the token without a table keyed by token; the random part, compared in
 * constant time, is what makes it unguessable (a reused slot gets new random
 * bytes, so an old token naming it is refused). Tokens issued close in time share
 * their first characters, so a table keyed by token (the store's) grows in one
 * place instead of at random pages; the time tells its holder nothing new.
 * token_queue_make fills raw; token_queue_new writes the text (BX_QUEUE_TOKEN_LEN
 * chars + NUL). */
void token_queue_make(int64_t issued_ms, uint32_t slot, unsigned char raw[TOKEN_QUEUE_RAW]);
/* The same bytes from a given random part (a token kept in memory without them). */
void token_queue_make_from(int64_t issued_ms, uint32_t slot, const unsigned char random[TOKEN_QUEUE_RANDOM_BYTES],
                           unsigned char raw[TOKEN_QUEUE_RAW]);
void token_queue_new(int64_t issued_ms, uint32_t slot, char *out);
/* The issue time and the slot of a token_queue_make token from its decoded bytes. */
int64_t token_queue_issued_ms(const unsigned char *raw);
uint32_t token_queue_slot(const unsigned char *raw);
/* Base64url text (BX_QUEUE_TOKEN_LEN chars + NUL) of decoded bytes, and back: 0
 * when s is a well-formed token (then raw holds its bytes), -1 otherwise. */
void token_queue_encode(const unsigned char raw[TOKEN_QUEUE_RAW], char *out);
int token_queue_decode(const char *s, size_t len, unsigned char raw[TOKEN_QUEUE_RAW]);
/* A queue token that also names its concert, for backends that route by
 * concert (Redis Cluster hash tags): 8 bytes of concert id then 18 random bytes
 * (144 bits from the kernel CSPRNG), base64url. Same length as token_queue_new. */
void token_queue_new_for(int64_t concert_id, char *out);
/* The concert of a token made by token_queue_new_for; -1 when malformed. */
int token_queue_concert(const char *s, size_t len, int64_t *concert_id);
/* True if s has the shape of a queue token: length, alphabet, and a last
 * character without stray bits (26 bytes leave 2 bits of it unused), so every
 * well-formed token decodes. */
int token_queue_well_formed(const char *s, size_t len);

/* Writes the access token (NUL-terminated, < ACCESS_TOKEN_MAX). */
void token_access_sign(const unsigned char secret[TOKEN_SECRET_LEN], int64_t user_id, int64_t expires_at_sec,
                       char *out, size_t outlen);
/* 0 and *user_id when the token is well formed, signed by secret and not
 * expired at now_sec; -1 otherwise. Constant-time signature comparison. */
int token_access_verify(const unsigned char secret[TOKEN_SECRET_LEN], const char *tok, size_t len, int64_t now_sec,
                        int64_t *user_id, int64_t *expires_at_sec);

#endif
