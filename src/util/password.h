/* password.h — argon2id password hashes (libsodium crypto_pwhash_str).
 * Slow on purpose: call these from the worker pool (http/workers.c), never on
 * an event loop. */
#ifndef BX_UTIL_PASSWORD_H
#define BX_UTIL_PASSWORD_H

#include <stddef.h>
#include <stdint.h>

struct password_cost {
    unsigned long long opslimit;
    size_t memlimit; /* bytes */
};

/* out needs BX_PWHASH_MAX + 1 bytes. 0 on success. */
int password_hash(const struct password_cost *cost, const char *pw, size_t len, char *out);
/* 0 when pw matches hash. hash == NULL runs a dummy verification of the same
 * cost so that unknown names take as long as wrong passwords. */
int password_verify(const struct password_cost *cost, const char *hash, const char *pw, size_t len);

#endif
