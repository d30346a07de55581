/* password.c — see password.h. */
#include "util/password.h"

#include <sodium.h>
#include <string.h>

int password_hash(const struct password_cost *cost, const char *pw, size_t len, char *out)
{
    return crypto_pwhash_str_alg(out, pw, len, cost->opslimit, cost->memlimit, crypto_pwhash_ALG_ARGON2ID13);
}

int password_verify(const struct password_cost *cost, const char *hash, const char *pw, size_t len)
{
    if (hash == NULL) {
        char dummy[crypto_pwhash_STRBYTES];
        (void)password_hash(cost, "boxoffice-dummy", 15, dummy);
        return -1;
    }
    return crypto_pwhash_str_verify(hash, pw, len);
}
