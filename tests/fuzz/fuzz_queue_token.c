/* fuzz_queue_token.c — the X-Queue-Token header: api/auth.c's length rule
 * (1..128 bytes), token_queue_well_formed, and token_queue_concert (the concert
 * a scale-out token names, util/token.c) and token_queue_decode / token_queue_slot
 * (the arena slot an embedded token names). Invariants: a token naming a concert
 * is well formed; a well-formed token decodes, and names a concert unless its
 * first 8 bytes are 0 or above INT64_MAX; tokens we issue for a concert name that
 * concert; tokens we issue for a slot name that slot and decode back to their text. */
#include "fuzz.h"

#include "domain/types.h"
#include "util/token.h"

#include <sodium.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (sodium_init() < 0)
        abort();
    char *buf = fuzz_dup(data, size);
    if (size >= 1 && size <= 128) { /* api_queue_token */
        int wf = token_queue_well_formed(buf, size);
        int64_t cid = -1;
        int rc = token_queue_concert(buf, size, &cid);
        if (rc == 0)
            FUZZ_CHECK(wf && cid >= 1, "concert %lld from a token that is not well formed", (long long)cid);
        if (wf) {
            FUZZ_CHECK(size == BX_QUEUE_TOKEN_LEN, "well formed at %zu bytes", size);
            unsigned char raw[TOKEN_QUEUE_RAW];
            size_t n = 0;
            FUZZ_CHECK(sodium_base642bin(raw, sizeof raw, buf, size, NULL, &n, NULL,
                                         sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0 &&
                           n == sizeof raw,
                       "well-formed token does not decode");
            FUZZ_CHECK(token_queue_decode(buf, size, raw) == 0, "token_queue_decode refuses a well-formed token");
            uint64_t id = 0;
            for (int i = 0; i < 8; i++)
                id = id << 8 | raw[i];
            FUZZ_CHECK((rc == 0) == (id != 0 && id <= INT64_MAX), "concert decoding disagrees: id %llu rc %d",
                       (unsigned long long)id, rc);
        } else {
            unsigned char raw[TOKEN_QUEUE_RAW];
            FUZZ_CHECK(token_queue_decode(buf, size, raw) != 0, "token_queue_decode takes a malformed token");
        }
    }
    /* issue: a token for the concert the input spells, and an anonymous one */
    if (size >= 8) {
        uint64_t id = 0;
        for (int i = 0; i < 8; i++)
            id = id << 8 | data[i];
        int64_t concert = (int64_t)(id & (uint64_t)INT64_MAX);
        if (concert == 0)
            concert = 1;
        char tok[BX_QUEUE_TOKEN_LEN + 1];
        token_queue_new_for(concert, tok);
        int64_t back = 0;
        FUZZ_CHECK(strlen(tok) == BX_QUEUE_TOKEN_LEN && token_queue_well_formed(tok, BX_QUEUE_TOKEN_LEN),
                   "issued token malformed: %s", tok);
        FUZZ_CHECK(token_queue_concert(tok, BX_QUEUE_TOKEN_LEN, &back) == 0 && back == concert,
                   "token for concert %lld names %lld", (long long)concert, (long long)back);
        uint32_t slot = (uint32_t)(id >> 17 ^ id);
        token_queue_new((int64_t)id, slot, tok); /* any issue time, even negative or past 48 bits */
        FUZZ_CHECK(token_queue_well_formed(tok, strlen(tok)), "time-prefixed token malformed: %s", tok);
        unsigned char raw[TOKEN_QUEUE_RAW];
        char text[BX_QUEUE_TOKEN_LEN + 1];
        FUZZ_CHECK(token_queue_decode(tok, strlen(tok), raw) == 0 && token_queue_slot(raw) == slot,
                   "token for slot %u does not name it: %s", slot, tok);
        token_queue_encode(raw, text);
        FUZZ_CHECK(strcmp(text, tok) == 0, "decode then encode changed %s into %s", tok, text);
    }
    free(buf);
    return 0;
}
