/* token.c — see token.h. */
#include "util/token.h"
#include "domain/types.h"
#include "domain/validate.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define QUEUE_TIME_MAX ((1ll << 48) - 1) /* 6 bytes of Unix ms: until the year 10889 */
#define SIG_B64_LEN 43 /* 32 bytes, base64url without padding */

_Static_assert(TOKEN_QUEUE_RAW % 3 == 2 && TOKEN_QUEUE_RAW / 3 * 4 + 3 == BX_QUEUE_TOKEN_LEN,
               "a queue token ends in a group of 2 bytes: 3 characters, the last with 2 unused bits");
_Static_assert(TOKEN_QUEUE_RANDOM_BYTES >= 16, "CONTRACT §3: at least 128 random bits per queue token");

/* Random bytes of queue tokens. libsodium reads the kernel CSPRNG with one
 * getrandom(2) per call, and a sale issues tens of thousands of tokens a second,
 * so each thread draws POOL_BYTES at a time and hands them out in order, wiping
 * each byte as it goes. A forked child starts with an empty pool: it must not
 * hand out the bytes its parent will. */
#define POOL_BYTES 1024
static _Thread_local unsigned char pool[POOL_BYTES];
static _Thread_local size_t pool_used = POOL_BYTES;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_forget(void)
{
    sodium_memzero(pool, sizeof pool);
    pool_used = POOL_BYTES;
}

static void pool_register(void)
{
    pthread_atfork(NULL, NULL, pool_forget);
}

static void random_fill(unsigned char *out, size_t n)
{
    pthread_once(&pool_once, pool_register);
    while (n > 0) {
        if (pool_used == POOL_BYTES) {
            randombytes_buf(pool, sizeof pool);
            pool_used = 0;
        }
        size_t k = POOL_BYTES - pool_used < n ? POOL_BYTES - pool_used : n;
        memcpy(out, pool + pool_used, k);
        sodium_memzero(pool + pool_used, k);
        pool_used += k;
        out += k;
        n -= k;
    }
}

static void make_prefix(int64_t issued_ms, uint32_t slot, unsigned char raw[TOKEN_QUEUE_RAW])
{
    uint64_t t = issued_ms < 0 ? 0 : issued_ms > QUEUE_TIME_MAX ? (uint64_t)QUEUE_TIME_MAX : (uint64_t)issued_ms;
    for (int i = 0; i < TOKEN_QUEUE_TIME_BYTES; i++)
        raw[i] = (unsigned char)(t >> (8 * (TOKEN_QUEUE_TIME_BYTES - 1 - i)));
    for (int i = 0; i < TOKEN_QUEUE_SLOT_BYTES; i++)
        raw[TOKEN_QUEUE_TIME_BYTES + i] = (unsigned char)(slot >> (8 * (TOKEN_QUEUE_SLOT_BYTES - 1 - i)));
}

void token_queue_make(int64_t issued_ms, uint32_t slot, unsigned char raw[TOKEN_QUEUE_RAW])
{
    make_prefix(issued_ms, slot, raw);
    random_fill(raw + TOKEN_QUEUE_RANDOM_AT, TOKEN_QUEUE_RANDOM_BYTES);
}

void token_queue_make_from(int64_t issued_ms, uint32_t slot, const unsigned char random[TOKEN_QUEUE_RANDOM_BYTES],
                           unsigned char raw[TOKEN_QUEUE_RAW])
{
    make_prefix(issued_ms, slot, raw);
    memcpy(raw + TOKEN_QUEUE_RANDOM_AT, random, TOKEN_QUEUE_RANDOM_BYTES);
}

void token_queue_new(int64_t issued_ms, uint32_t slot, char *out)
{
    unsigned char raw[TOKEN_QUEUE_RAW];
    token_queue_make(issued_ms, slot, raw);
    token_queue_encode(raw, out);
}

int64_t token_queue_issued_ms(const unsigned char *raw)
{
    int64_t t = 0;
    for (int i = 0; i < TOKEN_QUEUE_TIME_BYTES; i++)
        t = t << 8 | raw[i];
    return t;
}

uint32_t token_queue_slot(const unsigned char *raw)
{
    uint32_t id = 0;
    for (int i = 0; i < TOKEN_QUEUE_SLOT_BYTES; i++)
        id = id << 8 | raw[TOKEN_QUEUE_TIME_BYTES + i];
    return id;
}

void token_queue_encode(const unsigned char raw[TOKEN_QUEUE_RAW], char *out)
{
    sodium_bin2base64(out, BX_QUEUE_TOKEN_LEN + 1, raw, TOKEN_QUEUE_RAW, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

int token_queue_decode(const char *s, size_t len, unsigned char raw[TOKEN_QUEUE_RAW])
{
    size_t n = 0;
    /* the alphabet first: libsodium 1.0.18 decodes bytes 0x80..0xff as '_' */
    if (!token_queue_well_formed(s, len) ||
        sodium_base642bin(raw, TOKEN_QUEUE_RAW, s, len, NULL, &n, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        n != TOKEN_QUEUE_RAW)
        return -1;
    return 0;
}

void token_queue_new_for(int64_t concert_id, char *out)
{
    unsigned char raw[TOKEN_QUEUE_RAW];
    uint64_t id = (uint64_t)concert_id;
    for (int i = 0; i < 8; i++)
        raw[i] = (unsigned char)(id >> (56 - 8 * i));
    random_fill(raw + 8, sizeof raw - 8);
    token_queue_encode(raw, out);
}

int token_queue_concert(const char *s, size_t len, int64_t *concert_id)
{
    unsigned char raw[TOKEN_QUEUE_RAW];
    if (token_queue_decode(s, len, raw) != 0)
        return -1;
    uint64_t id = 0;
    for (int i = 0; i < 8; i++)
        id = id << 8 | raw[i];
    if (id == 0 || id > INT64_MAX)
        return -1;
    *concert_id = (int64_t)id;
    return 0;
}

/* The 6-bit value of a base64url character, -1 for any other byte. */
static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

int token_queue_well_formed(const char *s, size_t len)
{
    if (len != BX_QUEUE_TOKEN_LEN)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (b64url_value((unsigned char)s[i]) < 0)
            return 0;
    return (b64url_value((unsigned char)s[len - 1]) & 3) == 0; /* the 2 bits past the 26th byte */
}

static void sign(const unsigned char secret[TOKEN_SECRET_LEN], const char *msg, size_t len, char *b64)
{
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, secret, TOKEN_SECRET_LEN);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg, len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2base64(b64, SIG_B64_LEN + 1, mac, sizeof mac, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

void token_access_sign(const unsigned char secret[TOKEN_SECRET_LEN], int64_t user_id, int64_t expires_at_sec,
                       char *out, size_t outlen)
{
    char msg[48], sig[SIG_B64_LEN + 1];
    int n = snprintf(msg, sizeof msg, "%lld.%lld", (long long)user_id, (long long)expires_at_sec);
    sign(secret, msg, (size_t)n, sig);
    snprintf(out, outlen, "%s.%s", msg, sig);
}

int token_access_verify(const unsigned char secret[TOKEN_SECRET_LEN], const char *tok, size_t len, int64_t now_sec,
                        int64_t *user_id, int64_t *expires_at_sec)
{
    if (len > ACCESS_TOKEN_MAX)
        return -1;
    const char *dot1 = memchr(tok, '.', len);
    if (dot1 == NULL)
        return -1;
    const char *dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - tok));
    if (dot2 == NULL)
        return -1;
    size_t msg_len = (size_t)(dot2 - tok), sig_len = len - msg_len - 1;
    int64_t uid, exp;
    if (sig_len != SIG_B64_LEN || validate_parse_id(tok, (size_t)(dot1 - tok), &uid) != 0 ||
        validate_parse_id(dot1 + 1, (size_t)(dot2 - dot1 - 1), &exp) != 0)
        return -1;
    char expect[SIG_B64_LEN + 1];
    sign(secret, tok, msg_len, expect);
    if (sodium_memcmp(expect, dot2 + 1, SIG_B64_LEN) != 0)
        return -1;
    if (exp <= now_sec)
        return -1;
    *user_id = uid;
    if (expires_at_sec)
        *expires_at_sec = exp;
    return 0;
}
