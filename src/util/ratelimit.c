/* ratelimit.c — see ratelimit.h. 64 stripes × 4096 slots of 24 bytes (6 MiB);
 * a key probes 8 slots of its stripe and, when none is its own or free, takes
 * over the least recently used one (a forgotten bucket starts full: the limiter
 * may forgive, never wrongly refuse, an evicted key). */
#include "util/ratelimit.h"

#include <pthread.h>
#include <stdlib.h>

#define STRIPES 64
#define SLOTS 4096
#define PROBES 8

struct bucket {
    uint64_t key; /* 0 = free */
    double tokens;
    int64_t last_ms;
};

struct stripe {
    pthread_mutex_t lock;
    struct bucket slots[SLOTS];
};

struct ratelimit {
    double rate, burst;
    struct stripe stripes[STRIPES];
};

struct ratelimit *ratelimit_new(double rate, double burst)
{
    struct ratelimit *rl = calloc(1, sizeof *rl);
    if (rl == NULL)
        return NULL;
    rl->rate = rate;
    rl->burst = burst < 1 ? 1 : burst;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&rl->stripes[i].lock, NULL);
    return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
    if (rl == NULL)
        return;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&rl->stripes[i].lock);
    free(rl);
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

int64_t ratelimit_take(struct ratelimit *rl, uint64_t key, int64_t now_ms)
{
    if (rl->rate <= 0)
        return 0;
    if (key == 0)
        key = 1; /* 0 marks a free slot */
    uint64_t h = mix(key);
    struct stripe *st = &rl->stripes[h % STRIPES];
    size_t base = (size_t)(h >> 8) % SLOTS;
    pthread_mutex_lock(&st->lock);
    struct bucket *b = NULL, *victim = NULL;
    for (size_t i = 0; i < PROBES; i++) {
        struct bucket *cand = &st->slots[(base + i) % SLOTS];
        if (cand->key == key) {
            b = cand;
            break;
        }
        if (victim == NULL || cand->key == 0 || (victim->key != 0 && cand->last_ms < victim->last_ms))
            victim = cand;
    }
    if (b == NULL) {
        b = victim;
        b->key = key;
        b->tokens = rl->burst;
        b->last_ms = now_ms;
    }
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * rl->rate / 1000.0;
        if (b->tokens > rl->burst)
            b->tokens = rl->burst;
        b->last_ms = now_ms;
    }
    int64_t wait = 0;
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
    } else {
        wait = (int64_t)((1.0 - b->tokens) * 1000.0 / rl->rate) + 1;
    }
    pthread_mutex_unlock(&st->lock);
    return wait;
}
