/* parse.c — see parse.h. */
#include "http/parse.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

enum parse_body_result parse_body(const char *buf, size_t len, json_t **out, char *msg, size_t msglen)
{
    *out = NULL;
    if (len > PARSE_BODY_MAX) {
        snprintf(msg, msglen, "the request body is over 64 KiB");
        return PARSE_BODY_TOO_LARGE;
    }
    if (buf == NULL || len == 0) {
        snprintf(msg, msglen, "a JSON object body is required");
        return PARSE_BODY_EMPTY;
    }
    json_error_t jerr;
    json_t *v = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (v == NULL) {
        snprintf(msg, msglen, "body is not valid JSON: %s (at byte %d)", jerr.text, jerr.position);
        return PARSE_BODY_BAD_JSON;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        snprintf(msg, msglen, "body must be a JSON object");
        return PARSE_BODY_NOT_OBJECT;
    }
    *out = v;
    return PARSE_BODY_OK;
}

int parse_field_string(const json_t *obj, const char *field, const char **out, size_t *len, bool *present,
                       const char **why)
{
    json_t *v = json_object_get(obj, field);
    *out = NULL;
    *len = 0;
    *present = false;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        *why = "must be a string";
        return -1;
    }
    *out = json_string_value(v);
    *len = json_string_length(v);
    if (memchr(*out, '\0', *len) != NULL) {
        *why = "must not contain NUL";
        return -1;
    }
    *present = true;
    return 0;
}

int parse_field_int(const json_t *obj, const char *field, int64_t *out, bool *present, const char **why)
{
    json_t *v = json_object_get(obj, field);
    *present = false;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v)) {
        *why = "must be an integer";
        return -1;
    }
    *out = (int64_t)json_integer_value(v);
    *present = true;
    return 0;
}

const char *parse_query_param(const char *query, size_t qlen, const char *name, size_t *vlen)
{
    const char *p = query, *end = query + qlen;
    size_t nlen = strlen(name);
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *kend = eq ? eq : stop;
        if ((size_t)(kend - p) == nlen && memcmp(p, name, nlen) == 0) {
            *vlen = eq ? (size_t)(stop - eq - 1) : 0;
            return eq ? eq + 1 : stop;
        }
        p = stop + 1;
    }
    return NULL;
}

int parse_bearer(const char *value, size_t len, const char **token, size_t *toklen)
{
    static const char scheme[] = "Bearer ";
    const size_t n = sizeof scheme - 1;
    if (value == NULL || len <= n || strncasecmp(value, scheme, n) != 0)
        return -1;
    *token = value + n;
    *toklen = len - n;
    return 0;
}
