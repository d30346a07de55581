/* request_id.c — request ids from a per-thread splitmix64 sequence.
 *
 * Ids only need to be unique, so that log lines and answers can be matched;
 * they are not secret and nothing may rely on them being unguessable (queue
 * and access tokens come from util/token.c, which reads the system CSPRNG).
 * Each thread seeds its state once from libsodium's randombytes, then steps
 * it: splitmix64's output is a bijection of a counter, so one thread never
 * repeats an id within 2^64 calls, and two threads' runs of n ids overlap only
 * if their random starting points lie within n steps (probability ~2n/2^64). */
#include "util/request_id.h"
#include "util/mix64.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>

static _Thread_local uint64_t state;
static _Thread_local bool seeded;

static uint64_t next(void)
{
    if (!seeded) {
        randombytes_buf(&state, sizeof state);
        seeded = true;
    }
    return mix64(state += MIX64_GOLDEN);
}

void request_id_new(char out[REQUEST_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t v = next();
    for (int i = REQUEST_ID_LEN - 1; i >= 0; i--) {
        out[i] = hex[v & 0xF];
        v >>= 4;
    }
    out[REQUEST_ID_LEN] = '\0';
}
