/* parse.h — everything that reads outside input before a handler sees it, as pure
 * functions (no h2o, no I/O) so the fuzzers in tests/fuzz drive exactly the code
 * the server runs: JSON bodies and their fields, query parameters, the bearer
 * header. Each returns 0 on success, else -1 with a reason for the 400 message. */
#ifndef BX_HTTP_PARSE_H
#define BX_HTTP_PARSE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PARSE_BODY_MAX (64 * 1024)

enum parse_body_result { PARSE_BODY_OK = 0, PARSE_BODY_EMPTY, PARSE_BODY_TOO_LARGE, PARSE_BODY_BAD_JSON, PARSE_BODY_NOT_OBJECT };

/* Decodes a request body: a JSON object of at most 64 KiB, no duplicate keys,
 * integers within int64. *out is a new reference on success only; msg gets the
 * reason otherwise. */
enum parse_body_result parse_body(const char *buf, size_t len, json_t **out, char *msg, size_t msglen);

/* Field readers: absent or null → *present false (not an error); wrong type →
 * -1 with why = "must be a string" etc. Strings must not contain NUL. */
int parse_field_string(const json_t *obj, const char *field, const char **out, size_t *len, bool *present,
                       const char **why);
int parse_field_int(const json_t *obj, const char *field, int64_t *out, bool *present, const char **why);

/* The raw value of name in a query string "a=1&b=2" (no decoding), or NULL. */
const char *parse_query_param(const char *query, size_t qlen, const char *name, size_t *vlen);

/* The token of an "Authorization: Bearer <token>" value (scheme case-insensitive). */
int parse_bearer(const char *value, size_t len, const char **token, size_t *toklen);

#endif
