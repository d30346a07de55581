/* mix64.h — the splitmix64 finalizer: a bijection of 64-bit words that spreads
 * every input bit over every output bit. Used to hash keys of the in-process
 * waiting room and to step the request-id sequence. Not cryptographic. */
#ifndef BX_UTIL_MIX64_H
#define BX_UTIL_MIX64_H

#include <stdint.h>

#define MIX64_GOLDEN UINT64_C(0x9E3779B97F4A7C15) /* 2^64 / golden ratio: splitmix64's step */

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xBF58476D1CE4E5B9);
    x ^= x >> 27;
    x *= UINT64_C(0x94D049BB133111EB);
    x ^= x >> 31;
    return x;
}

#endif
