/* test_limits.c — the pieces of the sign-up and log-in limits: backoff counters
 * (free tries, doubling waits with a cap, leaking counts, give-back, marks) and
 * client addresses (parsing, trusted-proxy sets, the per-address key). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>

#include "util/backoff.h"
#include "util/netaddr.h"

/* ---------------------------------------------------------------- backoff */

Test(backoff, free_tries_pass_then_each_attempt_waits_twice_as_long_up_to_the_cap)
{
    struct backoff *b = backoff_new(3, 1000, 8000, 15 * 60 * 1000);
    int64_t t = 1000000;
    for (int i = 0; i < 3; i++)
        cr_assert_eq(backoff_take(b, 9, t), 0, "free try %d", i);
    int64_t wait = backoff_take(b, 9, t);
    cr_assert(wait > 990 && wait <= 1000, "after 3 tries the next waits 1 s, got %lld", (long long)wait);
    /* 1 s later one passes, then 2 s, 4 s, 8 s, 8 s (the cap) */
    int64_t expect[] = {2000, 4000, 8000, 8000};
    t += 1000;
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(backoff_take(b, 9, t), 0, "attempt after the wait %d", i);
        wait = backoff_take(b, 9, t);
        cr_assert(wait > expect[i] - 20 && wait <= expect[i], "wait %d: %lld ms, want %lld", i, (long long)wait,
                  (long long)expect[i]);
        t += wait;
    }
    backoff_free(b);
}

Test(backoff, a_refused_attempt_is_not_counted_and_other_keys_are_not_affected)
{
    struct backoff *b = backoff_new(2, 1000, 60000, 15 * 60 * 1000);
    cr_assert_eq(backoff_take(b, 1, 0), 0);
    cr_assert_eq(backoff_take(b, 1, 0), 0);
    for (int i = 0; i < 100; i++)
        cr_assert_gt(backoff_take(b, 1, 10 * i), 0, "hammering %d", i);
    cr_assert_eq(backoff_take(b, 1, 1000), 0, "the hammering did not push the wait");
    cr_assert_eq(backoff_take(b, 2, 0), 0, "another key");
    backoff_free(b);
}

Test(backoff, counts_leak_away_and_a_quiet_key_starts_again)
{
    /* 4 tries per 60 s: one leaks away every 15 s */
    struct backoff *b = backoff_new(4, 1000, 60000, 60000);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(backoff_take(b, 5, 0), 0);
    cr_assert_gt(backoff_take(b, 5, 10), 0);
    cr_assert_eq(backoff_take(b, 5, 15000), 0, "15 s later one try came back");
    cr_assert_gt(backoff_take(b, 5, 15010), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(backoff_take(b, 5, 200000 + i), 0, "after a quiet minute, free try %d", i);
    backoff_free(b);
}

Test(backoff, given_back_and_cleared_counts_free_the_key)
{
    struct backoff *b = backoff_new(2, 1000, 60000, 15 * 60 * 1000);
    cr_assert_eq(backoff_take(b, 3, 0), 0);
    cr_assert_eq(backoff_take(b, 3, 0), 0);
    cr_assert_gt(backoff_take(b, 3, 0), 0);
    backoff_give_back(b, 3);
    cr_assert_eq(backoff_take(b, 3, 0), 0, "a given-back attempt frees a try");
    backoff_clear(b, 3);
    cr_assert_eq(backoff_take(b, 3, 0), 0);
    cr_assert_eq(backoff_take(b, 3, 0), 0, "cleared: every free try again");
    backoff_give_back(b, 777); /* unknown key: nothing */
    backoff_free(b);
}

Test(backoff, entering_counts_only_failures_and_lets_one_in_at_a_time_past_the_free_ones)
{
    struct backoff *b = backoff_new(3, 1000, 60000, 15 * 60 * 1000);
    /* many at once, none failed yet: all go */
    for (int i = 0; i < 50; i++)
        cr_assert_eq(backoff_enter(b, 8, 0), 0, "honest attempt %d in flight", i);
    for (int i = 0; i < 48; i++)
        backoff_leave(b, 8, 10, false);
    backoff_leave(b, 8, 10, true);
    backoff_leave(b, 8, 10, true);
    cr_assert_eq(backoff_enter(b, 8, 20), 0, "2 failures of 3 free");
    backoff_leave(b, 8, 20, true);
    int64_t wait = backoff_enter(b, 8, 30);
    cr_assert(wait > 980 && wait <= 1000, "3 failures: wait 1 s, got %lld", (long long)wait);
    cr_assert_eq(backoff_enter(b, 8, 1020), 0, "the wait is over");
    cr_assert_gt(backoff_enter(b, 8, 1030), 0, "past the free ones, one at a time");
    backoff_leave(b, 8, 1040, true);
    wait = backoff_enter(b, 8, 1050);
    cr_assert(wait > 1980 && wait <= 2000, "4 failures: 2 s, got %lld", (long long)wait);
    cr_assert_eq(backoff_enter(b, 9, 1050), 0, "another key");
    backoff_free(b);
}

Test(backoff, marks_last_until_they_are_forgotten)
{
    struct backoff *m = backoff_new(1, 1, 1, 1000);
    cr_assert(!backoff_marked(m, 11, 0));
    backoff_mark(m, 11, 5000);
    cr_assert(backoff_marked(m, 11, 5500));
    cr_assert(!backoff_marked(m, 12, 5500));
    cr_assert(!backoff_marked(m, 11, 6000), "forgotten after forget_ms");
    backoff_free(m);
}

Test(backoff, a_flood_of_keys_never_grows_the_table_and_recent_keys_survive)
{
    struct backoff *b = backoff_new(1, 1000, 60000, 15 * 60 * 1000);
    cr_assert_eq(backoff_take(b, 424242, 0), 0);
    for (uint64_t k = 1; k < 2000000; k++)
        (void)backoff_take(b, k * 0x9E3779B97F4A7C15ULL, 1);
    /* the old key may have been evicted: then it starts afresh (forgiven), never refused wrongly */
    cr_assert_eq(backoff_take(b, 99, 2), 0);
    cr_assert_gt(backoff_take(b, 99, 2), 0, "a recent key keeps its count");
    backoff_free(b);
}

/* ---------------------------------------------------------------- addresses */

static struct netaddr addr(const char *text)
{
    struct netaddr a;
    cr_assert_eq(netaddr_parse(text, strlen(text), &a), 0, "parse %s", text);
    return a;
}

Test(netaddr, addresses_parse_with_ports_brackets_and_spaces)
{
    char out[NETADDR_TEXT_MAX];
    struct netaddr a = addr(" 192.0.2.7 ");
    netaddr_format(&a, out, sizeof out);
    cr_assert_str_eq(out, "192.0.2.7");
    a = addr("192.0.2.7:8443");
    netaddr_format(&a, out, sizeof out);
    cr_assert_str_eq(out, "192.0.2.7");
    a = addr("[2001:db8::1]:443");
    netaddr_format(&a, out, sizeof out);
    cr_assert_str_eq(out, "2001:db8::1");
    a = addr("::ffff:10.1.2.3");
    cr_assert_eq(a.family, 4, "an IPv4-mapped address is the IPv4 one");
    const char *bad[] = {"", "  ", "unknown", "300.1.1.1", "1.2.3", "[::1", "10.0.0.1/8", "2001:db8::1::2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct netaddr x;
        cr_assert_neq(netaddr_parse(bad[i], strlen(bad[i]), &x), 0, "\"%s\" parsed", bad[i]);
    }
}

Test(netaddr, a_trusted_set_holds_addresses_and_cidr_blocks)
{
    struct netaddr_set s;
    char err[128];
    cr_assert_eq(netaddr_set_parse("127.0.0.1, 10.0.0.0/8,2001:db8::/32,", &s, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s.n, 3);
    struct netaddr yes[] = {addr("127.0.0.1"), addr("10.200.3.4"), addr("2001:db8:ffff::9"), addr("::ffff:10.0.0.1")};
    struct netaddr no[] = {addr("127.0.0.2"), addr("11.0.0.1"), addr("2001:db9::1"), addr("::1")};
    for (size_t i = 0; i < 4; i++) {
        cr_assert(netaddr_set_contains(&s, &yes[i]), "trusted #%zu", i);
        cr_assert(!netaddr_set_contains(&s, &no[i]), "not trusted #%zu", i);
    }
    cr_assert_eq(netaddr_set_parse("", &s, err, sizeof err), 0);
    cr_assert_eq(s.n, 0, "empty: nobody is trusted");
    cr_assert_neq(netaddr_set_parse("10.0.0.0/33", &s, err, sizeof err), 0);
    cr_assert_neq(netaddr_set_parse("nginx", &s, err, sizeof err), 0);
    cr_assert_neq(netaddr_set_parse("10.0.0.1/", &s, err, sizeof err), 0);
}

Test(netaddr, ipv6_clients_share_a_key_per_64_and_ipv4_per_address)
{
    struct netaddr a = addr("2001:db8:1:2:aaaa::1"), b = addr("2001:db8:1:2:bbbb::2"), c = addr("2001:db8:1:3::1");
    cr_assert_eq(netaddr_key(&a), netaddr_key(&b), "one /64, one key");
    cr_assert_neq(netaddr_key(&a), netaddr_key(&c));
    struct netaddr d = addr("192.0.2.1"), e = addr("192.0.2.2"), none = {0};
    cr_assert_neq(netaddr_key(&d), netaddr_key(&e));
    cr_assert_neq(netaddr_key(&d), 0);
    cr_assert_eq(netaddr_key(&none), 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(80)};
    inet_pton(AF_INET, "192.0.2.1", &sin.sin_addr);
    struct netaddr f;
    cr_assert_eq(netaddr_from_sockaddr((struct sockaddr *)&sin, sizeof sin, &f), 0);
    cr_assert_eq(netaddr_key(&f), netaddr_key(&d));
}
