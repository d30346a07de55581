/* fuzz_access_token.c — the Authorization header as api/auth.c reads it:
 * parse_bearer, then token_access_verify with the server secret. Input: the
 * header value. Invariants: a token that verifies re-signs to exactly itself
 * (no second spelling of the same user and expiry); a token signed for the
 * numbers found in the input verifies iff it has not expired, and stops
 * verifying when any one byte of it changes. */
#include "fuzz.h"

#include "domain/validate.h"
#include "http/parse.h"
#include "util/token.h"

#include <sodium.h>

static const unsigned char secret[TOKEN_SECRET_LEN] = "boxoffice-fuzz-secret-0123456789";
static const int64_t now_sec = 1900000000; /* 2030 */

static void check_verified(const char *tok, size_t len)
{
    int64_t uid = -1, exp = -1;
    if (token_access_verify(secret, tok, len, now_sec, &uid, &exp) != 0)
        return;
    FUZZ_CHECK(uid >= 1 && exp > now_sec, "verified uid %lld exp %lld", (long long)uid, (long long)exp);
    char again[ACCESS_TOKEN_MAX];
    token_access_sign(secret, uid, exp, again, sizeof again);
    FUZZ_CHECK(strlen(again) == len && memcmp(again, tok, len) == 0, "verified token is not the one we sign: %.*s",
               (int)len, tok);
}

/* Signs the numbers in "<uid>.<exp>..." and checks verification of the result. */
static void check_signed(const char *s, size_t len, unsigned mutate_at, unsigned char mutate_xor)
{
    const char *dot = memchr(s, '.', len);
    if (dot == NULL)
        return;
    const char *rest = dot + 1;
    size_t rlen = len - (size_t)(rest - s);
    const char *dot2 = memchr(rest, '.', rlen);
    size_t elen = dot2 ? (size_t)(dot2 - rest) : rlen;
    int64_t uid, exp;
    if (validate_parse_id(s, (size_t)(dot - s), &uid) != 0 || validate_parse_id(rest, elen, &exp) != 0)
        return;
    char tok[ACCESS_TOKEN_MAX];
    token_access_sign(secret, uid, exp, tok, sizeof tok);
    size_t tlen = strlen(tok);
    FUZZ_CHECK(tlen < ACCESS_TOKEN_MAX, "signed token of %zu bytes", tlen);
    char *copy = fuzz_dup((const uint8_t *)tok, tlen);
    int64_t vu = 0, ve = 0;
    int rc = token_access_verify(secret, copy, tlen, now_sec, &vu, &ve);
    if (exp > now_sec)
        FUZZ_CHECK(rc == 0 && vu == uid && ve == exp, "fresh token %s refused", tok);
    else
        FUZZ_CHECK(rc != 0, "expired token %s accepted", tok);
    if (mutate_xor != 0) {
        copy[mutate_at % tlen] = (char)(copy[mutate_at % tlen] ^ mutate_xor);
        FUZZ_CHECK(token_access_verify(secret, copy, tlen, 0, &vu, &ve) != 0, "altered token %.*s accepted",
                   (int)tlen, copy);
        /* and one byte shorter */
        FUZZ_CHECK(token_access_verify(secret, tok, tlen - 1, 0, &vu, &ve) != 0, "truncated token accepted");
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (sodium_init() < 0)
        abort();
    char *buf = fuzz_dup(data, size);
    const char *tok = NULL;
    size_t toklen = 0;
    if (parse_bearer(size ? buf : NULL, size, &tok, &toklen) == 0) {
        FUZZ_CHECK(size > 7 && strncasecmp(buf, "Bearer ", 7) == 0, "bearer scheme not checked");
        FUZZ_CHECK(tok == buf + 7 && toklen == size - 7, "token not the rest of the header");
    } else {
        tok = buf;
        toklen = size; /* fuzz the verifier on the raw bytes as well */
    }
    check_verified(tok, toklen);
    /* a signed token for the numbers of the input; the last two bytes steer a mutation */
    unsigned at = size >= 2 ? data[size - 2] : 0;
    unsigned char x = size >= 1 ? data[size - 1] : 0;
    check_signed(tok, toklen, at, x);
    free(buf);
    return 0;
}
