/* test_ratelimit.c — per-user token buckets: burst, refill, Retry-After figure,
 * independence of keys, bounded memory under a flood of keys, thread safety. */
#include <criterion/criterion.h>
#include <pthread.h>

#include "util/ratelimit.h"

Test(ratelimit, a_burst_is_allowed_then_refused_with_a_wait)
{
    struct ratelimit *rl = ratelimit_new(2.0, 5.0);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(ratelimit_take(rl, 42, 1000), 0, "request %d of the burst", i);
    int64_t wait = ratelimit_take(rl, 42, 1000);
    cr_assert(wait >= 499 && wait <= 501, "one token at 2/s takes ~500 ms, got %lld", (long long)wait);
    ratelimit_free(rl);
}

Test(ratelimit, tokens_refill_at_the_rate_up_to_the_burst)
{
    struct ratelimit *rl = ratelimit_new(10.0, 3.0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(ratelimit_take(rl, 7, 0), 0);
    cr_assert_gt(ratelimit_take(rl, 7, 0), 0);
    cr_assert_eq(ratelimit_take(rl, 7, 100), 0, "100 ms at 10/s gives one token back");
    cr_assert_gt(ratelimit_take(rl, 7, 100), 0);
    /* a long pause refills only up to the burst */
    for (int i = 0; i < 3; i++)
        cr_assert_eq(ratelimit_take(rl, 7, 60000), 0);
    cr_assert_gt(ratelimit_take(rl, 7, 60000), 0);
    ratelimit_free(rl);
}

Test(ratelimit, one_users_flood_does_not_limit_another)
{
    struct ratelimit *rl = ratelimit_new(1.0, 2.0);
    for (int i = 0; i < 10; i++)
        ratelimit_take(rl, 1, 0);
    cr_assert_gt(ratelimit_take(rl, 1, 0), 0);
    cr_assert_eq(ratelimit_take(rl, 2, 0), 0);
    ratelimit_free(rl);
}

Test(ratelimit, zero_rate_allows_everything)
{
    struct ratelimit *rl = ratelimit_new(0, 1);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(ratelimit_take(rl, 5, 0), 0);
    ratelimit_free(rl);
}

Test(ratelimit, a_flood_of_distinct_keys_keeps_recent_buckets_and_bounded_memory)
{
    struct ratelimit *rl = ratelimit_new(1.0, 1.0);
    cr_assert_eq(ratelimit_take(rl, 99, 1000), 0);
    cr_assert_gt(ratelimit_take(rl, 99, 1000), 0);
    /* two million other keys, all older than key 99's last use cannot evict it
     * unless its probe window fills; the table never grows either way */
    for (uint64_t k = 1000; k < 2001000; k++)
        ratelimit_take(rl, k, 1000);
    /* key 99 is either still limited, or was evicted and starts with a full
     * bucket: the limiter may forgive an old key, but never refuses a new one */
    cr_assert_eq(ratelimit_take(rl, 3000001, 1000), 0);
    ratelimit_free(rl);
}

struct worker_arg {
    struct ratelimit *rl;
    int allowed;
};

static void *hammer(void *p)
{
    struct worker_arg *a = p;
    for (int i = 0; i < 10000; i++)
        if (ratelimit_take(a->rl, 77, 5000) == 0)
            a->allowed++;
    return NULL;
}

Test(ratelimit, concurrent_takers_never_exceed_the_burst)
{
    struct ratelimit *rl = ratelimit_new(1.0, 50.0);
    pthread_t t[4];
    struct worker_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (struct worker_arg){rl, 0};
        pthread_create(&t[i], NULL, hammer, &a[i]);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        total += a[i].allowed;
    }
    cr_assert_eq(total, 50, "exactly the burst at one instant, got %d", total);
    ratelimit_free(rl);
}
