/* jsonout.c — the JSON text writer of jsonout.h. Every append reserves its
 * worst-case size once, then writes without further checks; no tree, no
 * allocation until the inline buffer is outgrown. */
#include "http/jsonout.h"

#include <stdlib.h>
#include <string.h>

void jsonout_init(struct jsonout *j)
{
    j->buf = j->inline_buf;
    j->len = 0;
    j->cap = sizeof j->inline_buf;
    j->comma = false;
    j->failed = false;
}

void jsonout_release(struct jsonout *j)
{
    if (j->buf != j->inline_buf)
        free(j->buf);
    j->buf = j->inline_buf;
    j->len = 0;
    j->cap = sizeof j->inline_buf;
}

/* Makes room for n more bytes: doubles the buffer (moving it to the heap the
 * first time). false, and j->failed set for good, when memory runs out. */
static bool grow(struct jsonout *j, size_t n)
{
    if (n > SIZE_MAX / 2 - j->len) {
        j->failed = true;
        return false;
    }
    size_t cap = j->cap * 2 > j->len + n ? j->cap * 2 : j->len + n;
    char *b;
    if (j->buf == j->inline_buf) {
        b = malloc(cap);
        if (b != NULL)
            memcpy(b, j->buf, j->len);
    } else {
        b = realloc(j->buf, cap);
    }
    if (b == NULL) {
        j->failed = true;
        return false;
    }
    j->buf = b;
    j->cap = cap;
    return true;
}

static inline bool reserve(struct jsonout *j, size_t n)
{
    if (j->failed)
        return false;
    return j->cap - j->len >= n || grow(j, n);
}

/* Starts a value or key of at most n bytes, after its ',' if one is due;
 * returns where to write it, or NULL when out of memory. */
static inline char *value_start(struct jsonout *j, size_t n)
{
    if (!reserve(j, n + 1))
        return NULL;
    char *o = j->buf + j->len;
    if (j->comma)
        *o++ = ',';
    return o;
}

static inline void value_end(struct jsonout *j, const char *o, bool complete)
{
    j->len = (size_t)(o - j->buf);
    j->comma = complete;
}

static void open_bracket(struct jsonout *j, char c)
{
    char *o = value_start(j, 1);
    if (o == NULL)
        return;
    *o++ = c;
    value_end(j, o, false);
}

static void close_bracket(struct jsonout *j, char c)
{
    if (!reserve(j, 1))
        return;
    j->buf[j->len++] = c;
    j->comma = true;
}

void jsonout_object_begin(struct jsonout *j)
{
    open_bracket(j, '{');
}

void jsonout_object_end(struct jsonout *j)
{
    close_bracket(j, '}');
}

void jsonout_array_begin(struct jsonout *j)
{
    open_bracket(j, '[');
}

void jsonout_array_end(struct jsonout *j)
{
    close_bracket(j, ']');
}

void jsonout_int(struct jsonout *j, int64_t v)
{
    char *o = value_start(j, 20); /* "-9223372036854775808" */
    if (o == NULL)
        return;
    /* the magnitude as unsigned, so INT64_MIN needs no special case */
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    char digits[20];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        *o++ = '-';
    while (n > 0)
        *o++ = digits[--n];
    value_end(j, o, true);
}

static void literal(struct jsonout *j, const char *text, size_t n)
{
    char *o = value_start(j, n);
    if (o == NULL)
        return;
    memcpy(o, text, n);
    value_end(j, o + n, true);
}

void jsonout_bool(struct jsonout *j, bool v)
{
    if (v)
        literal(j, "true", 4);
    else
        literal(j, "false", 5);
}

void jsonout_null(struct jsonout *j)
{
    literal(j, "null", 4);
}

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), 0 if there is
 * none: the validity rules of jansson's utf8_check (RFC 3629). */
static size_t utf8_sequence(const unsigned char *p, size_t avail)
{
    size_t need = p[0] >= 0xF0 ? 4 : p[0] >= 0xE0 ? 3 : 2;
    if (p[0] < 0xC2 || p[0] > 0xF4)
        return 0; /* continuation byte, overlong 2-byte lead, or beyond U+10FFFF */
    static const uint32_t min_of[5] = {0, 0, 0x80, 0x800, 0x10000}; /* shortest form */
    uint32_t cp = p[0] & (0x7Fu >> need);
    if (avail < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3Fu);
    }
    if (cp < min_of[need] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return need;
}

/* Writes s quoted and escaped at o, which has room for 6 * len + 2 bytes (every
 * byte as \u00XX, the worst case); returns the end. */
static char *put_string(char *o, const unsigned char *p, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *end = p + len;
    *o++ = '"';
    while (p < end) {
        const unsigned char *run = p;
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        memcpy(o, run, (size_t)(p - run));
        o += p - run;
        if (p == end)
            break;
        unsigned char c = *p;
        if (c >= 0x80) {
            size_t n = utf8_sequence(p, (size_t)(end - p));
            if (n == 0) {
                memcpy(o, "\xEF\xBF\xBD", 3); /* U+FFFD for the one bad byte */
                o += 3;
                p++;
            } else {
                memcpy(o, p, n);
                o += n;
                p += n;
            }
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 0xF];
        }
        p++;
    }
    *o++ = '"';
    return o;
}

void jsonout_string_len(struct jsonout *j, const char *s, size_t len)
{
    if (len > (SIZE_MAX / 2 - 3) / 6) {
        j->failed = true;
        return;
    }
    char *o = value_start(j, 6 * len + 2);
    if (o == NULL)
        return;
    value_end(j, put_string(o, (const unsigned char *)s, len), true);
}

void jsonout_string(struct jsonout *j, const char *s)
{
    jsonout_string_len(j, s, strlen(s));
}

void jsonout_key(struct jsonout *j, const char *key)
{
    size_t len = strlen(key);
    if (len > (SIZE_MAX / 2 - 3) / 6) {
        j->failed = true;
        return;
    }
    char *o = value_start(j, 6 * len + 3);
    if (o == NULL)
        return;
    o = put_string(o, (const unsigned char *)key, len);
    *o++ = ':';
    value_end(j, o, false);
}

const char *jsonout_text(const struct jsonout *j, size_t *len)
{
    *len = j->failed ? 0 : j->len;
    return j->failed ? NULL : j->buf;
}
