/* test_token.c — unit tests of queue tokens (unguessable, well formed) and
 * signed access tokens "<userId>.<expiresAtSec>.<HMAC-SHA256 base64url>".
 * Links the core library only. */
#include <criterion/criterion.h>

#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "domain/types.h"
#include "util/token.h"

static void init_sodium(void)
{
    cr_assert_geq(sodium_init(), 0, "sodium_init failed");
}

TestSuite(queue_token, .init = init_sodium);

/* ---- queue tokens --------------------------------------------------------- */

Test(queue_token, new_token_is_35_base64url_chars)
{
    char tok[BX_QUEUE_TOKEN_LEN + 1];
    memset(tok, '#', sizeof tok);
    token_queue_new(1795000000000, 42, tok);
    cr_assert_eq(strlen(tok), 35);
    cr_assert_eq(BX_QUEUE_TOKEN_LEN, 35);
    for (size_t i = 0; i < 35; i++) {
        char c = tok[i];
        cr_assert((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_',
                  "char %zu of %s is not base64url", i, tok);
    }
    cr_assert(token_queue_well_formed(tok, strlen(tok)));
}

static int cmp_tok(const void *a, const void *b)
{
    return memcmp(a, b, BX_QUEUE_TOKEN_LEN + 1);
}

Test(queue_token, ten_thousand_tokens_of_one_slot_are_distinct_and_well_formed)
{
    enum { N = 10000 };
    char(*toks)[BX_QUEUE_TOKEN_LEN + 1] = calloc(N, sizeof *toks);
    cr_assert_not_null(toks);
    for (int i = 0; i < N; i++) {
        token_queue_new(1795000000000 + i / 100, 7, toks[i]); /* one slot reused: only the random part differs */
        cr_assert(token_queue_well_formed(toks[i], strlen(toks[i])), "token %d: %s", i, toks[i]);
    }
    qsort(toks, N, sizeof *toks, cmp_tok);
    for (int i = 1; i < N; i++)
        cr_assert_str_neq(toks[i - 1], toks[i], "duplicate token %s", toks[i]);
    free(toks);
}

/* Random bytes are drawn from the kernel 1 KiB at a time per thread: a child
 * forked with part of a draw left must not issue the tokens its parent will. */
Test(queue_token, a_forked_child_never_issues_its_parents_tokens)
{
    enum { N = 64 };
    char first[BX_QUEUE_TOKEN_LEN + 1], parent[N][BX_QUEUE_TOKEN_LEN + 1], child[N][BX_QUEUE_TOKEN_LEN + 1];
    token_queue_new(0, 7, first); /* the pool now holds unused bytes */
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        for (int i = 0; i < N; i++)
            token_queue_new(0, 7, child[i]);
        _exit(write(fds[1], child, sizeof child) == (ssize_t)sizeof child ? 0 : 1);
    }
    close(fds[1]);
    for (int i = 0; i < N; i++)
        token_queue_new(0, 7, parent[i]);
    size_t got = 0;
    ssize_t r;
    while (got < sizeof child && (r = read(fds[0], (char *)child + got, sizeof child - got)) > 0)
        got += (size_t)r;
    close(fds[0]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0 && got == sizeof child, "the child's tokens did not come");
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            cr_assert_str_neq(child[i], parent[j], "child token %d is parent token %d", i, j);
}

Test(queue_token, every_position_after_the_time_and_slot_varies)
{
    /* 128 random bits after 6 bytes of time and 4 of slot (characters 0..12 hold
     * 78 of those 80 bits, character 13 the last 2 and 4 random ones): no
     * character of the random part is stuck (a broken RNG or a truncated encoding
     * would leave some position constant), and tokens of one millisecond and one
     * slot share only the time and the slot. */
    char first[BX_QUEUE_TOKEN_LEN + 1], tok[BX_QUEUE_TOKEN_LEN + 1];
    int varied[BX_QUEUE_TOKEN_LEN] = {0};
    token_queue_new(1795000000000, 123456, first);
    for (int n = 0; n < 200; n++) {
        token_queue_new(1795000000000, 123456, tok);
        cr_assert(memcmp(tok, first, 13) == 0, "same millisecond and slot, another prefix: %s %s", first, tok);
        for (int i = 0; i < BX_QUEUE_TOKEN_LEN; i++)
            varied[i] |= tok[i] != first[i];
    }
    for (int i = 13; i < BX_QUEUE_TOKEN_LEN; i++)
        cr_assert(varied[i], "position %d never changed", i);
}

Test(queue_token, tokens_start_with_their_issue_time_then_their_slot)
{
    /* the time keeps the journal's inserts in one place of the token index; the
     * slot finds the token in the embedded queue's arena */
    char a[BX_QUEUE_TOKEN_LEN + 1];
    unsigned char raw[TOKEN_QUEUE_RAW];
    int64_t t = 1795000000000;
    uint32_t slot = 0;
    for (int i = 0; i < 1000; i++, t += 1 + i % 7, slot = slot * 7 + 12345) {
        token_queue_new(t, slot, a);
        cr_assert_eq(token_queue_decode(a, strlen(a), raw), 0, "%s", a);
        int64_t got = 0;
        for (int k = 0; k < 6; k++)
            got = got << 8 | raw[k];
        cr_assert_eq(got, t, "%s", a);
        cr_assert_eq(token_queue_issued_ms(raw), t);
        cr_assert_eq(token_queue_slot(raw), slot, "%s", a);
        char back[BX_QUEUE_TOKEN_LEN + 1];
        token_queue_encode(raw, back);
        cr_assert_str_eq(back, a);
    }
    char b[BX_QUEUE_TOKEN_LEN + 1];
    token_queue_new(t, 1, a);
    token_queue_new(t + 999, 2, b);
    cr_assert(memcmp(a, b, 5) == 0, "a second apart, the first characters are shared: %s %s", a, b);
    token_queue_new(-5, UINT32_MAX, a); /* a clock before 1970 still makes a well-formed token, at time 0 */
    cr_assert_eq(token_queue_decode(a, strlen(a), raw), 0);
    cr_assert_eq(token_queue_issued_ms(raw), 0);
    cr_assert_eq(token_queue_slot(raw), UINT32_MAX);
    token_queue_new(INT64_MAX, 0, a); /* past 48 bits: the latest time there is */
    cr_assert_eq(token_queue_decode(a, strlen(a), raw), 0);
    cr_assert_eq(token_queue_issued_ms(raw), (1ll << 48) - 1);
}

Test(queue_token, well_formed_refuses_wrong_length_and_alphabet)
{
    char tok[BX_QUEUE_TOKEN_LEN + 2];
    unsigned char raw[TOKEN_QUEUE_RAW];
    token_queue_new(1795000000000, 9, tok);
    cr_assert_not(token_queue_well_formed(tok, 34));
    cr_assert_neq(token_queue_decode(tok, 34, raw), 0);
    cr_assert_not(token_queue_well_formed("", 0));
    strcat(tok, "A");
    cr_assert_not(token_queue_well_formed(tok, 36));
    cr_assert_neq(token_queue_decode(tok, 36, raw), 0);
    cr_assert_not(token_queue_well_formed("abcdefghijklmnopqrstuvwxyz-_0123", 32), "the layout before slots");

    const char *good = "abcdefghijklmnopqrstuvwxyz-_01234AA";
    cr_assert(token_queue_well_formed(good, 35));
    cr_assert_eq(token_queue_decode(good, 35, raw), 0, "every well-formed token decodes");
    const char *bad[] = {
        "abcdefghijklmnopqrstuvwxyz-_01234A=", /* padding */
        "abcdefghijklmnopqrstuvwxyz+/01234AA", /* standard base64 */
        "abcdefghijklmnopqrstuvwxyz-_01234A ", /* space */
        "abcdefghijklmnopqrstuvwxyz-_01234A.", /* dot */
        "abcdefghijklmnopqrstuvwxyz-_01234AB", /* bits past the 26th byte */
        "abcdefghijklmnopqrstuvwxyz-_01234A_", /* bits past the 26th byte */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_not(token_queue_well_formed(bad[i], 35), "%s", bad[i]);
        cr_assert_neq(token_queue_decode(bad[i], 35, raw), 0, "%s", bad[i]);
    }
    for (const char *last = "AEIMQUYcgkosw048"; *last; last++) {
        char t[36];
        snprintf(t, sizeof t, "%.34s%c", good, *last);
        cr_assert(token_queue_well_formed(t, 35), "%s", t);
        cr_assert_eq(token_queue_decode(t, 35, raw), 0, "%s", t);
    }
    cr_assert_not(token_queue_well_formed("abcdefghijklmnopqrstuvwxyz-_01234\0A", 35), "NUL inside");
    cr_assert_not(token_queue_well_formed("abcdefghijklmnopqrstuvwxyz-_01234\xc3\xa9", 35), "non-ASCII");
}

/* ---- access tokens -------------------------------------------------------- */

#define NOW 1795595400LL /* 2026-11-25T08:30:00Z */

static unsigned char secret[TOKEN_SECRET_LEN];
static unsigned char other_secret[TOKEN_SECRET_LEN];

static void init_secrets(void)
{
    init_sodium();
    for (int i = 0; i < TOKEN_SECRET_LEN; i++) {
        secret[i] = (unsigned char)(i * 7 + 1);
        other_secret[i] = (unsigned char)(i * 7 + 2);
    }
}

TestSuite(access_token_verify, .init = init_secrets);

static int verify(const char *tok, int64_t now, int64_t *uid, int64_t *exp)
{
    return token_access_verify(secret, tok, strlen(tok), now, uid, exp);
}

static void refused(const char *tok, const char *why)
{
    int64_t uid = -7, exp = -7;
    cr_assert_neq(verify(tok, NOW, &uid, &exp), 0, "%s: \"%s\" was accepted", why, tok);
    cr_assert_eq(uid, -7, "%s: user id written on failure", why);
    cr_assert_eq(exp, -7, "%s: expiry written on failure", why);
}

static void sign(int64_t uid, int64_t exp, char out[ACCESS_TOKEN_MAX])
{
    token_access_sign(secret, uid, exp, out, ACCESS_TOKEN_MAX);
}

Test(access_token_verify, sign_then_verify_round_trips)
{
    char tok[ACCESS_TOKEN_MAX];
    sign(42, NOW + 86400, tok);
    cr_assert_lt(strlen(tok), ACCESS_TOKEN_MAX);
    cr_assert_eq(strncmp(tok, "42.1795681800.", 14), 0, "shape <userId>.<expiresAtSec>.<sig>: %s", tok);
    cr_assert_eq(strlen(tok), 14 + 43, "signature is 43 base64url chars: %s", tok);
    int64_t uid = 0, exp = 0;
    cr_assert_eq(verify(tok, NOW, &uid, &exp), 0);
    cr_assert_eq(uid, 42);
    cr_assert_eq(exp, NOW + 86400);
}

Test(access_token_verify, expiry_out_param_is_optional)
{
    char tok[ACCESS_TOKEN_MAX];
    sign(5, NOW + 10, tok);
    int64_t uid = 0;
    cr_assert_eq(token_access_verify(secret, tok, strlen(tok), NOW, &uid, NULL), 0);
    cr_assert_eq(uid, 5);
}

Test(access_token_verify, largest_ids_fit_the_buffer)
{
    char tok[ACCESS_TOKEN_MAX];
    sign(INT64_MAX, INT64_MAX, tok);
    cr_assert_lt(strlen(tok), ACCESS_TOKEN_MAX);
    int64_t uid = 0, exp = 0;
    cr_assert_eq(verify(tok, NOW, &uid, &exp), 0, "%s", tok);
    cr_assert_eq(uid, INT64_MAX);
    cr_assert_eq(exp, INT64_MAX);
}

Test(access_token_verify, signing_is_deterministic_and_bound_to_the_secret)
{
    char a[ACCESS_TOKEN_MAX], b[ACCESS_TOKEN_MAX], c[ACCESS_TOKEN_MAX];
    sign(1, NOW + 60, a);
    sign(1, NOW + 60, b);
    token_access_sign(other_secret, 1, NOW + 60, c, sizeof c);
    cr_assert_str_eq(a, b);
    cr_assert_str_neq(a, c);
}

Test(access_token_verify, expired_token_refused)
{
    char tok[ACCESS_TOKEN_MAX];
    sign(42, NOW, tok);
    refused(tok, "expires exactly now");
    sign(42, NOW - 1, tok);
    refused(tok, "expired a second ago");
    sign(42, NOW + 1, tok);
    int64_t uid = 0;
    cr_assert_eq(verify(tok, NOW, &uid, NULL), 0, "one second left is still valid");
}

Test(access_token_verify, wrong_secret_refused)
{
    char tok[ACCESS_TOKEN_MAX];
    token_access_sign(other_secret, 42, NOW + 3600, tok, sizeof tok);
    refused(tok, "signed with another secret");
}

Test(access_token_verify, tampered_signature_refused)
{
    char tok[ACCESS_TOKEN_MAX];
    sign(42, NOW + 3600, tok);
    size_t len = strlen(tok);
    /* Change every signature character in turn, including the last one,
     * whose low bits are only base64 padding. */
    char *sig = strrchr(tok, '.') + 1;
    for (char *p = sig; p < tok + len; p++) {
        char saved = *p;
        *p = saved == 'A' ? 'B' : 'A';
        refused(tok, "one signature character changed");
        *p = saved;
    }
    int64_t uid = 0;
    cr_assert_eq(verify(tok, NOW, &uid, NULL), 0, "restored token verifies");
}

Test(access_token_verify, tampered_user_id_refused)
{
    char tok[ACCESS_TOKEN_MAX], forged[ACCESS_TOKEN_MAX + 8];
    sign(42, NOW + 3600, tok);
    const char *rest = strchr(tok, '.');
    snprintf(forged, sizeof forged, "43%s", rest);
    refused(forged, "user id 42 -> 43");
    snprintf(forged, sizeof forged, "1%s", rest);
    refused(forged, "user id 42 -> 1");
    snprintf(forged, sizeof forged, "042%s", rest);
    refused(forged, "user id written with a leading zero");
    snprintf(forged, sizeof forged, "+42%s", rest);
    refused(forged, "user id written with a sign");
    snprintf(forged, sizeof forged, "0%s", rest);
    refused(forged, "user id 0");
    snprintf(forged, sizeof forged, "-42%s", rest);
    refused(forged, "negative user id");
}

Test(access_token_verify, tampered_expiry_refused)
{
    char tok[ACCESS_TOKEN_MAX], forged[ACCESS_TOKEN_MAX + 8];
    sign(42, NOW + 3600, tok);
    const char *sig = strrchr(tok, '.');
    snprintf(forged, sizeof forged, "42.%lld%s", (long long)(NOW + 999999), sig);
    refused(forged, "expiry pushed later");
    snprintf(forged, sizeof forged, "42.%lld%s", (long long)(NOW + 3599), sig);
    refused(forged, "expiry moved one second earlier");
}

Test(access_token_verify, truncated_token_refused)
{
    char tok[ACCESS_TOKEN_MAX];
    sign(42, NOW + 3600, tok);
    size_t len = strlen(tok);
    for (size_t n = 0; n < len; n++) {
        int64_t uid = -7;
        cr_assert_neq(token_access_verify(secret, tok, n, NOW, &uid, NULL), 0, "prefix of %zu chars accepted", n);
        cr_assert_eq(uid, -7);
    }
}

Test(access_token_verify, extra_characters_and_dots_refused)
{
    char tok[ACCESS_TOKEN_MAX], forged[ACCESS_TOKEN_MAX * 2];
    sign(42, NOW + 3600, tok);
    snprintf(forged, sizeof forged, "%s.", tok);
    refused(forged, "trailing dot");
    snprintf(forged, sizeof forged, "%sA", tok);
    refused(forged, "trailing character");
    snprintf(forged, sizeof forged, ".%s", tok);
    refused(forged, "leading dot");
    snprintf(forged, sizeof forged, "%s.%s", tok, tok);
    refused(forged, "two tokens joined");
    snprintf(forged, sizeof forged, "1.%s", tok);
    refused(forged, "extra leading field");

    /* A dot inside the message part: "42..<exp>.<sig>". */
    const char *rest = strchr(tok, '.');
    snprintf(forged, sizeof forged, "42.%s", rest);
    refused(forged, "empty field");
}

Test(access_token_verify, empty_and_garbage_refused)
{
    refused("", "empty");
    refused(".", "one dot");
    refused("..", "two dots");
    refused("...", "three dots");
    refused("42", "no dots");
    refused("42.1795681800", "no signature");
    refused("42.1795681800.", "empty signature");
    refused("Bearer 42.1795681800.abc", "scheme left in");
    refused("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2ln", "a JWT");

    char huge[1024];
    memset(huge, '1', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    refused(huge, "over ACCESS_TOKEN_MAX");
}

Test(access_token_verify, signature_of_other_message_does_not_transfer)
{
    char a[ACCESS_TOKEN_MAX], b[ACCESS_TOKEN_MAX], forged[ACCESS_TOKEN_MAX * 2];
    sign(42, NOW + 3600, a);
    sign(7, NOW + 3600, b);
    /* user 7's message with user 42's signature */
    const char *sig42 = strrchr(a, '.');
    int msglen = (int)(strrchr(b, '.') - b);
    snprintf(forged, sizeof forged, "%.*s%s", msglen, b, sig42);
    refused(forged, "signature swapped between users");
}
