/* backoff.h — attempts counted per key with exponential backoff, and marks (a key
 * seen recently), in bounded tables: like ratelimit.h, a fixed table where a flood
 * of distinct keys evicts the least recently used entry instead of growing (an
 * evicted count starts again at zero, an evicted mark is simply gone). Thread-safe
 * (striped locks). Per process: N scale-out instances keep N tables.
 *
 * Counting: the first `free_tries` attempts of a key pass; after that, each further
 * attempt passes only once first_delay_ms * 2^k (k = attempts past the free ones,
 * capped at max_delay_ms) have passed since the previous one. An attempt refused for
 * that is not counted. Counts leak away: one every forget_ms / free_tries, so a key
 * quiet for forget_ms starts again at zero, and a key may go on at that slow pace
 * for ever without ever waiting. */
#ifndef BX_UTIL_BACKOFF_H
#define BX_UTIL_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

struct backoff;

/* NULL on allocation failure. */
struct backoff *backoff_new(int free_tries, int64_t first_delay_ms, int64_t max_delay_ms, int64_t forget_ms);
void backoff_free(struct backoff *b);

/* Counts an attempt of key at now_ms: 0 when it may go ahead, else the
 * milliseconds until one may (>= 1; nothing counted). */
int64_t backoff_take(struct backoff *b, uint64_t key, int64_t now_ms);
/* Uncounts one attempt of key (it did not happen, or it was no failure). */
void backoff_give_back(struct backoff *b, uint64_t key);
/* Forgets key's count. */
void backoff_clear(struct backoff *b, uint64_t key);

/* Counting failures after the fact, for keys many honest attempts may share at
 * once (a client address: a NAT, a proxy): an attempt in flight is not a failure.
 * backoff_enter: 0 when an attempt may go ahead (now one more in flight), else
 * the ms until one may; past the free tries, only once the wait is over and only
 * one at a time (nothing else of the key in flight). backoff_leave: that attempt
 * is over; failed counts it like backoff_take would have. */
int64_t backoff_enter(struct backoff *b, uint64_t key, int64_t now_ms);
void backoff_leave(struct backoff *b, uint64_t key, int64_t now_ms, bool failed);

/* Marks: key seen at now_ms; marked while less than forget_ms old. */
void backoff_mark(struct backoff *b, uint64_t key, int64_t now_ms);
bool backoff_marked(struct backoff *b, uint64_t key, int64_t now_ms);

#endif
