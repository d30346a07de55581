/* fuzz_headers.c — request header values the handlers read: Idempotency-Key
 * (http/reply.c call_idempotency → validate_idempotency_key), the bearer framing
 * of Authorization (parse_bearer) and the X-Queue-Token length rule. Input: the
 * raw header value (h2o passes any bytes but CR/LF/NUL through). Each rule is
 * compared with a plain reference written from docs/DESIGN.md. */
#include "fuzz.h"

#include "domain/types.h"
#include "domain/validate.h"
#include "http/parse.h"

#include <ctype.h>

/* DESIGN: Idempotency-Key is 1..64 printable ASCII, no space at either end. */
static bool ref_idem_ok(const char *k, size_t len)
{
    if (len < 1 || len > BX_IDEM_KEY_MAX || k[0] == ' ' || k[len - 1] == ' ')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isprint((unsigned char)k[i]) || (unsigned char)k[i] > 0x7e)
            return false;
    return true;
}

static bool ref_bearer(const char *v, size_t len)
{
    static const char s[] = "bearer ";
    if (len <= 7)
        return false;
    for (size_t i = 0; i < 7; i++)
        if (tolower((unsigned char)v[i]) != s[i])
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *v = fuzz_dup(data, size);

    bool ok = validate_idempotency_key(v, size) == NULL;
    FUZZ_CHECK(ok == ref_idem_ok(v, size), "Idempotency-Key rule disagrees (validator %d)", ok);
    if (ok) {
        /* call_idempotency copies it NUL-terminated for the store's key column */
        char key[BX_IDEM_KEY_MAX + 1];
        memcpy(key, v, size);
        key[size] = '\0';
        FUZZ_CHECK(strlen(key) == size, "key with a NUL accepted");
    }

    const char *tok = NULL;
    size_t toklen = 0;
    int rc = parse_bearer(size ? v : NULL, size, &tok, &toklen);
    FUZZ_CHECK((rc == 0) == ref_bearer(v, size), "bearer framing disagrees (rc %d)", rc);
    if (rc == 0)
        FUZZ_CHECK(tok == v + 7 && toklen == size - 7 && toklen > 0, "bearer token bounds");

    free(v);
    return 0;
}
