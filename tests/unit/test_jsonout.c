/* test_jsonout.c — unit tests of the JSON text writer (src/http/jsonout.c):
 * punctuation, integers, string escaping, growth past the inline buffer. The
 * reference is jansson: for the same values, the writer must produce the very
 * bytes json_dumps(JSON_COMPACT) does, and its text must parse back equal.
 * Compiles jsonout.c directly: no h2o, no server. */
#include <criterion/criterion.h>

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/jsonout.h"

/* The writer's text as a NUL-terminated copy (caller frees). */
static char *text_of(struct jsonout *j)
{
    size_t len;
    const char *t = jsonout_text(j, &len);
    cr_assert_not_null(t, "the writer failed");
    char *s = malloc(len + 1);
    cr_assert_not_null(s);
    memcpy(s, t, len);
    s[len] = '\0';
    return s;
}

/* jansson's compact text of v (stolen). */
static char *dumps(json_t *v)
{
    cr_assert_not_null(v);
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    cr_assert_not_null(s);
    return s;
}

/* Writes one string value with the writer and with jansson; asserts the same
 * bytes, and that the writer's text parses back to the input. */
static void assert_string_like_jansson(const char *s, size_t len)
{
    struct jsonout j;
    jsonout_init(&j);
    jsonout_string_len(&j, s, len);
    char *mine = text_of(&j);
    jsonout_release(&j);
    json_t *ref = json_stringn(s, len);
    cr_assert_not_null(ref, "jansson refuses the input: not valid UTF-8");
    char *theirs = dumps(json_incref(ref));
    cr_assert_str_eq(mine, theirs);

    json_error_t err;
    json_t *back = json_loads(mine, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    cr_assert_not_null(back, "%s does not parse: %s", mine, err.text);
    cr_assert(json_equal(back, ref), "%s does not parse back to the input", mine);
    json_decref(back);
    json_decref(ref);
    free(theirs);
    free(mine);
}

/* ---- structure ------------------------------------------------------------ */

Test(jsonout, empty_object_and_array)
{
    struct jsonout j;
    jsonout_init(&j);
    jsonout_object_begin(&j);
    jsonout_key(&j, "a");
    jsonout_array_begin(&j);
    jsonout_array_end(&j);
    jsonout_key(&j, "b");
    jsonout_object_begin(&j);
    jsonout_object_end(&j);
    jsonout_object_end(&j);
    char *s = text_of(&j);
    cr_assert_str_eq(s, "{\"a\":[],\"b\":{}}");
    free(s);
    jsonout_release(&j);
}

Test(jsonout, nested_values_are_separated_by_commas_like_jansson)
{
    struct jsonout j;
    jsonout_init(&j);
    jsonout_object_begin(&j);
    jsonout_field_int(&j, "id", 7);
    jsonout_key(&j, "list");
    jsonout_array_begin(&j);
    jsonout_int(&j, 1);
    jsonout_bool(&j, true);
    jsonout_bool(&j, false);
    jsonout_null(&j);
    jsonout_array_begin(&j);
    jsonout_array_end(&j);
    jsonout_object_begin(&j);
    jsonout_field_string(&j, "x", "y");
    jsonout_object_end(&j);
    jsonout_array_end(&j);
    jsonout_field_bool(&j, "ok", true);
    jsonout_object_end(&j);
    char *mine = text_of(&j);
    jsonout_release(&j);
    char *theirs =
        dumps(json_pack("{s:i, s:[i, b, b, n, [], {s:s}], s:b}", "id", 7, "list", 1, 1, 0, "x", "y", "ok", 1));
    cr_assert_str_eq(mine, theirs);
    free(mine);
    free(theirs);
}

Test(jsonout, integers_at_the_edges_match_jansson)
{
    static const int64_t values[] = {
        0,          1,         -1,        9,         10,        -10,           999999999,
        1000000000, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        struct jsonout j;
        jsonout_init(&j);
        jsonout_int(&j, values[i]);
        char *mine = text_of(&j);
        jsonout_release(&j);
        char *theirs = dumps(json_integer(values[i]));
        cr_assert_str_eq(mine, theirs);
        free(mine);
        free(theirs);
    }
}

/* ---- strings -------------------------------------------------------------- */

Test(jsonout, every_control_character_is_escaped_like_jansson)
{
    for (int c = 0; c < 0x20; c++) {
        char s[3] = {'a', (char)c, 'b'};
        assert_string_like_jansson(s, sizeof s);
    }
    /* all of them in one string, and DEL, which JSON leaves alone */
    char all[0x21];
    for (int c = 0; c < 0x20; c++)
        all[c] = (char)c;
    all[0x20] = 0x7F;
    assert_string_like_jansson(all, sizeof all);
}

Test(jsonout, short_and_unicode_escapes_are_the_expected_bytes)
{
    struct jsonout j;
    jsonout_init(&j);
    jsonout_string_len(&j, "\n\t\r\b\f\x01\x1f\0", 8);
    char *s = text_of(&j);
    cr_assert_str_eq(s, "\"\\n\\t\\r\\b\\f\\u0001\\u001F\\u0000\"");
    free(s);
    jsonout_release(&j);
}

Test(jsonout, quote_backslash_and_slash)
{
    assert_string_like_jansson("\"", 1);
    assert_string_like_jansson("\\", 1);
    assert_string_like_jansson("a\"b\\c/d", 7);
    assert_string_like_jansson("\\\"\\\"", 4);
    assert_string_like_jansson("", 0);
}

Test(jsonout, multibyte_utf8_passes_through)
{
    static const char *const samples[] = {
        "\xc2\x80",                 /* U+0080, smallest 2-byte */
        "caf\xc3\xa9",              /* é */
        "\xdf\xbf",                 /* U+07FF */
        "\xe0\xa0\x80",             /* U+0800, smallest 3-byte */
        "\xe2\x82\xac 100",         /* € */
        "\xed\x9f\xbf",             /* U+D7FF, just below the surrogates */
        "\xee\x80\x80",             /* U+E000, just above */
        "\xef\xbf\xbf",             /* U+FFFF */
        "\xf0\x90\x80\x80",         /* U+10000, smallest 4-byte */
        "\xf0\x9f\x8e\xb5 Live",    /* 🎵 */
        "\xf4\x8f\xbf\xbf",         /* U+10FFFF, the last code point */
        "\xec\x84\x9c\xec\x9a\xb8", /* 서울 */
        "\xe2\x80\xa8\xe2\x80\xa9", /* U+2028, U+2029: valid JSON as they are */
    };
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        assert_string_like_jansson(samples[i], strlen(samples[i]));
        struct jsonout j;
        jsonout_init(&j);
        jsonout_string(&j, samples[i]);
        size_t len;
        const char *t = jsonout_text(&j, &len);
        cr_assert_eq(len, strlen(samples[i]) + 2, "sample %zu was escaped", i);
        cr_assert(memcmp(t + 1, samples[i], len - 2) == 0);
        jsonout_release(&j);
    }
}

Test(jsonout, invalid_utf8_becomes_replacement_characters_and_stays_valid_json)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"\x80", "\"\xef\xbf\xbd\""},                 /* lone continuation byte */
        {"a\xffz", "\"a\xef\xbf\xbdz\""},             /* never valid in UTF-8 */
        {"\xc0\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\""}, /* overlong '/' */
        {"\xe0\x80\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
        {"\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},                 /* surrogate U+D800 */
        {"\xf4\x90\x80\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""}, /* above U+10FFFF */
        {"\xe2\x82", "\"\xef\xbf\xbd\xef\xbf\xbd\""},                                 /* truncated € */
        {"\xe2\x82\"", "\"\xef\xbf\xbd\xef\xbf\xbd\\\"\""},                           /* truncated, then a quote */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct jsonout j;
        jsonout_init(&j);
        jsonout_string(&j, cases[i].in);
        char *s = text_of(&j);
        jsonout_release(&j);
        cr_assert_str_eq(s, cases[i].out, "case %zu", i);
        json_error_t err;
        json_t *v = json_loads(s, JSON_DECODE_ANY, &err);
        cr_assert_not_null(v, "case %zu does not parse: %s", i, err.text);
        json_decref(v);
        free(s);
    }
}

Test(jsonout, keys_are_escaped_too)
{
    struct jsonout j;
    jsonout_init(&j);
    jsonout_object_begin(&j);
    jsonout_field_int(&j, "a\"b\n", 1);
    jsonout_object_end(&j);
    char *mine = text_of(&j);
    jsonout_release(&j);
    char *theirs = dumps(json_pack("{s:i}", "a\"b\n", 1));
    cr_assert_str_eq(mine, theirs);
    free(mine);
    free(theirs);
}

/* ---- random inputs against jansson ---------------------------------------- */

/* Appends the UTF-8 of code point cp at p; returns the byte count. */
static size_t utf8_put(unsigned char *p, uint32_t cp)
{
    if (cp < 0x80) {
        p[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        p[0] = (unsigned char)(0xC0 | cp >> 6);
        p[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        p[0] = (unsigned char)(0xE0 | cp >> 12);
        p[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        p[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    p[0] = (unsigned char)(0xF0 | cp >> 18);
    p[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    p[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    p[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A random code point, weighted towards the cases that need care. */
static uint32_t random_code_point(void)
{
    uint32_t cp;
    switch (rand() % 8) {
    case 0:
        return (uint32_t)(rand() % 0x20); /* control */
    case 1:
        return "\"\\/"[rand() % 3];
    case 2:
        return 0x80 + (uint32_t)(rand() % (0x800 - 0x80));
    case 3:
        do
            cp = 0x800 + (uint32_t)(rand() % (0x10000 - 0x800));
        while (cp >= 0xD800 && cp <= 0xDFFF);
        return cp;
    case 4:
        return 0x10000 + (uint32_t)(rand() % (0x110000 - 0x10000));
    default:
        return 0x20 + (uint32_t)(rand() % 0x60); /* printable ASCII and DEL */
    }
}

Test(jsonout, random_valid_strings_match_jansson_byte_for_byte)
{
    srand(20240611);
    unsigned char buf[64 * 4];
    for (int round = 0; round < 20000; round++) {
        size_t len = 0, n = (size_t)(rand() % 64);
        for (size_t k = 0; k < n; k++)
            len += utf8_put(buf + len, random_code_point());
        assert_string_like_jansson((const char *)buf, len);
    }
}

Test(jsonout, random_documents_match_jansson_byte_for_byte)
{
    srand(7);
    unsigned char buf[16 * 4];
    for (int round = 0; round < 2000; round++) {
        struct jsonout j;
        jsonout_init(&j);
        json_t *ref = json_object();
        json_t *arr = json_array();
        jsonout_object_begin(&j);
        int64_t id = ((int64_t)rand() << 32 | rand()) * (rand() % 2 ? 1 : -1);
        jsonout_field_int(&j, "id", id);
        json_object_set_new(ref, "id", json_integer(id));
        jsonout_key(&j, "items");
        jsonout_array_begin(&j);
        for (int k = rand() % 8; k > 0; k--) {
            size_t len = 0;
            for (int m = rand() % 16; m > 0; m--)
                len += utf8_put(buf + len, random_code_point());
            jsonout_object_begin(&j);
            jsonout_key(&j, "title");
            jsonout_string_len(&j, (const char *)buf, len);
            bool b = rand() % 2;
            jsonout_field_bool(&j, "available", b);
            jsonout_object_end(&j);
            json_array_append_new(arr, json_pack("{s:s%, s:b}", "title", (const char *)buf, len, "available", b));
        }
        jsonout_array_end(&j);
        jsonout_object_end(&j);
        json_object_set_new(ref, "items", arr);
        char *mine = text_of(&j);
        jsonout_release(&j);
        json_error_t err;
        json_t *back = json_loads(mine, JSON_ALLOW_NUL, &err);
        cr_assert_not_null(back, "round %d does not parse: %s", round, err.text);
        cr_assert(json_equal(back, ref), "round %d parses to other values", round);
        json_decref(back);
        char *theirs = dumps(ref);
        cr_assert_str_eq(mine, theirs, "round %d", round);
        free(mine);
        free(theirs);
    }
}

Test(jsonout, random_bytes_always_give_valid_json)
{
    srand(99);
    char buf[48];
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)(rand() % (int)sizeof buf);
        for (size_t k = 0; k < len; k++)
            buf[k] = (char)(rand() % 256);
        struct jsonout j;
        jsonout_init(&j);
        jsonout_string_len(&j, buf, len);
        char *mine = text_of(&j);
        jsonout_release(&j);
        json_error_t err;
        json_t *back = json_loads(mine, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        cr_assert_not_null(back, "round %d does not parse: %s", round, err.text);
        json_decref(back);
        /* where jansson takes the bytes as valid UTF-8, the text is its text */
        json_t *ref = json_stringn(buf, len);
        if (ref != NULL) {
            char *theirs = dumps(ref);
            cr_assert_str_eq(mine, theirs, "round %d", round);
            free(theirs);
        }
        free(mine);
    }
}

/* ---- growth and failure --------------------------------------------------- */

Test(jsonout, documents_larger_than_the_inline_buffer_grow_on_the_heap)
{
    struct jsonout j;
    jsonout_init(&j);
    json_t *ref = json_array();
    jsonout_array_begin(&j);
    for (int i = 0; i < 20000; i++) {
        jsonout_object_begin(&j);
        jsonout_field_int(&j, "seatNo", i);
        jsonout_field_string(&j, "status", "AVAILABLE");
        jsonout_object_end(&j);
        json_array_append_new(ref, json_pack("{s:i, s:s}", "seatNo", i, "status", "AVAILABLE"));
    }
    jsonout_array_end(&j);
    char *mine = text_of(&j);
    cr_assert_gt(strlen(mine), (size_t)JSONOUT_INLINE * 16);
    cr_assert(j.buf != j.inline_buf);
    jsonout_release(&j);
    char *theirs = dumps(ref);
    cr_assert_str_eq(mine, theirs);
    free(mine);
    free(theirs);
}

Test(jsonout, an_impossible_size_fails_and_later_appends_are_ignored)
{
    struct jsonout j;
    jsonout_init(&j);
    jsonout_object_begin(&j);
    jsonout_string_len(&j, "x", SIZE_MAX / 4); /* refused before reading the bytes */
    jsonout_int(&j, 1);
    size_t len = 1;
    cr_assert_null(jsonout_text(&j, &len));
    cr_assert_eq(len, 0);
    jsonout_release(&j);
    /* released, the writer works again */
    jsonout_init(&j);
    jsonout_int(&j, 5);
    char *s = text_of(&j);
    cr_assert_str_eq(s, "5");
    free(s);
    jsonout_release(&j);
}
