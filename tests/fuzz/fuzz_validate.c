/* fuzz_validate.c — the input rules of domain/validate.c on raw bytes, each
 * against a reference written from docs/DESIGN.md: ids (path segments, token
 * parts) are 1..INT64_MAX in plain decimal; names 1..64 bytes without control
 * characters and not blank; passwords 8..256 bytes without NUL; titles and
 * venues 1..200 bytes without control characters. */
#include "fuzz.h"

#include "domain/validate.h"

#include <errno.h>

static bool ref_id(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 19)
        return false;
    char tmp[20];
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    errno = 0;
    unsigned long long v = strtoull(tmp, NULL, 10);
    if (errno != 0 || v == 0 || v > INT64_MAX)
        return false;
    *out = (int64_t)v;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_dup(data, size);

    int64_t id = -1, ref = -2;
    bool ok = validate_parse_id(s, size, &id) == 0;
    FUZZ_CHECK(ok == ref_id(s, size, &ref), "parse_id disagrees on %.*s", (int)size, s);
    if (ok)
        FUZZ_CHECK(id == ref && id >= 1, "parse_id %lld, reference %lld", (long long)id, (long long)ref);
    else
        FUZZ_CHECK(id == -1, "parse_id wrote its output on failure");

    bool blank = true;
    for (size_t i = 0; i < size; i++)
        blank = blank && s[i] == ' ';
    bool ctl = fuzz_has_control(s, size);
    FUZZ_CHECK((validate_user_name(s, size) == NULL) == (size >= 1 && size <= 64 && !ctl && !blank),
               "user name rule disagrees");
    FUZZ_CHECK((validate_password(s, size) == NULL) == (size >= 8 && size <= 256 && memchr(s, 0, size) == NULL),
               "password rule disagrees");
    FUZZ_CHECK((validate_text(s, size) == NULL) == (size >= 1 && size <= 200 && !ctl), "text rule disagrees");
    free(s);
    return 0;
}
