/* jsonout.h — writes JSON text straight into one growable buffer, for the hot
 * read answers (seat map, date list, queue ticket) that jansson trees made slow.
 * Output is compact and byte-for-byte what json_dumps(JSON_COMPACT) gives for
 * the same values in the same order. Knows nothing of HTTP; never parses. */
#ifndef BX_HTTP_JSONOUT_H
#define BX_HTTP_JSONOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSONOUT_INLINE 4096

/* One document being written. The text lives in inline_buf until it outgrows
 * it, then in a malloc'd block owned by the writer (jsonout_release frees it).
 * Not copyable: buf may point into the struct itself. The caller is trusted to
 * nest begin/end and key/value correctly; nothing checks the grammar. */
struct jsonout {
    char *buf;
    size_t len, cap;
    bool comma;  /* a value was just completed: the next key or value needs a ',' */
    bool failed; /* an allocation failed: later appends are ignored */
    char inline_buf[JSONOUT_INLINE];
};

void jsonout_init(struct jsonout *j);
/* Frees the heap block, if any; j may be initialised again afterwards. */
void jsonout_release(struct jsonout *j);

void jsonout_object_begin(struct jsonout *j);
void jsonout_object_end(struct jsonout *j);
void jsonout_array_begin(struct jsonout *j);
void jsonout_array_end(struct jsonout *j);
/* An object key; the next call writes its value. */
void jsonout_key(struct jsonout *j, const char *key);
void jsonout_int(struct jsonout *j, int64_t v);
void jsonout_bool(struct jsonout *j, bool v);
void jsonout_null(struct jsonout *j);
/* A string value, escaped as jansson does: '"' '\\' and the short forms \b \f
 * \n \r \t, other bytes below 0x20 (NUL included) as \u00XX; valid UTF-8
 * passes through unchanged. A byte that does not start a valid UTF-8 sequence
 * (overlong, surrogate, above U+10FFFF, truncated) becomes U+FFFD, so the
 * output is always valid JSON. */
void jsonout_string_len(struct jsonout *j, const char *s, size_t len);
void jsonout_string(struct jsonout *j, const char *s);

static inline void jsonout_field_int(struct jsonout *j, const char *key, int64_t v)
{
    jsonout_key(j, key);
    jsonout_int(j, v);
}

static inline void jsonout_field_bool(struct jsonout *j, const char *key, bool v)
{
    jsonout_key(j, key);
    jsonout_bool(j, v);
}

static inline void jsonout_field_string(struct jsonout *j, const char *key, const char *s)
{
    jsonout_key(j, key);
    jsonout_string(j, s);
}

/* The text written so far (not NUL-terminated) and its length, or NULL after
 * an allocation failure. Valid until the next append or jsonout_release. */
const char *jsonout_text(const struct jsonout *j, size_t *len);

#endif
