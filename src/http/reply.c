/* reply.c — JSON in and out for API handlers (call.h). Bodies are parsed by
 * jansson; answers are rendered by jansson or jsonout and sent with
 * h2o_send_inline, which copies them into the request pool. */
#include "http/call.h"
#include "http/parse.h"
#include "http/server.h"
#include "domain/validate.h"
#include "util/clock.h"

#include <sodium.h>
#include <string.h>

static const char *status_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

static void send_body(struct call *c, int status, const char *ctype, const char *body, size_t len)
{
    h2o_req_t *req = c->req;
    c->status = status;
    req->res.status = status;
    req->res.reason = status_reason(status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, c->request_id,
                          strlen(c->request_id));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    req->res.content_length = len; /* not chunked: the whole body is known */
    server_call_finished(c);
    h2o_send_inline(req, body, len);
}

/* The one way a JSON body goes out: text NULL means rendering ran out of
 * memory, answered 500. h2o_send_inline copies the body into the request
 * pool, so text may be freed as soon as this returns. */
static void send_json(struct call *c, int status, const char *text, size_t len)
{
    if (text == NULL) {
        static const char oom[] = "{\"error\":{\"code\":\"INTERNAL\",\"message\":\"out of memory\"}}";
        send_body(c, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    send_body(c, status, "application/json", text, len);
}

void call_reply_json(struct call *c, int status, json_t *value)
{
    char *text = json_dumps(value, JSON_COMPACT);
    json_decref(value);
    send_json(c, status, text, text != NULL ? strlen(text) : 0);
    free(text);
}

void call_reply_json_text(struct call *c, int status, const char *text, size_t len)
{
    send_json(c, status, text, len);
}

void call_reply_jsonout(struct call *c, int status, struct jsonout *j)
{
    size_t len;
    const char *text = jsonout_text(j, &len);
    send_json(c, status, text, len);
    jsonout_release(j);
}

void call_reply_empty(struct call *c, int status)
{
    c->status = status;
    c->req->res.status = status;
    c->req->res.reason = "No Content";
    h2o_add_header_by_str(&c->req->pool, &c->req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, c->request_id,
                          strlen(c->request_id));
    c->req->res.content_length = 0;
    server_call_finished(c);
    h2o_send_inline(c->req, "", 0);
}

void call_reply_text(struct call *c, int status, const char *content_type, const char *text, size_t len)
{
    char *copy = h2o_mem_alloc_pool(&c->req->pool, len + 1);
    memcpy(copy, text, len);
    send_body(c, status, content_type, copy, len);
}

void call_reply_error(struct call *c, bx_err err, const char *field, const char *message)
{
    const struct bx_err_info *info = bx_err_info(err);
    json_t *e = json_pack("{s:s, s:s}", "code", info->code, "message", message ? message : info->message);
    if (e != NULL && field != NULL)
        json_object_set_new(e, "field", json_string(field));
    call_reply_json(c, info->status, json_pack("{s:o}", "error", e));
}

static void body_dispose(void *p)
{
    json_decref(*(json_t **)p);
}

int call_body(struct call *c)
{
    char msg[256];
    json_t *v;
    switch (parse_body(c->req->entity.base, c->req->entity.len, &v, msg, sizeof msg)) {
    case PARSE_BODY_OK:
        break;
    case PARSE_BODY_TOO_LARGE:
        return call_fail(c, BX_ERR_PAYLOAD_TOO_LARGE);
    default:
        call_reply_error(c, BX_ERR_VALIDATION, NULL, msg);
        return -1;
    }
    json_t **slot = h2o_mem_alloc_shared(&c->req->pool, sizeof *slot, body_dispose);
    *slot = v;
    c->body = v;
    return 0;
}

static int field_error(struct call *c, const char *field, const char *what)
{
    char msg[160];
    snprintf(msg, sizeof msg, "%s %s", field, what);
    call_reply_error(c, BX_ERR_VALIDATION, field, msg);
    return -1;
}

int call_body_string_opt(struct call *c, const char *field, const char **out, size_t *len)
{
    bool present;
    const char *why;
    return parse_field_string(c->body, field, out, len, &present, &why) ? field_error(c, field, why) : 0;
}

int call_body_string(struct call *c, const char *field, const char **out, size_t *len)
{
    if (call_body_string_opt(c, field, out, len) != 0)
        return -1;
    if (*out == NULL)
        return field_error(c, field, "is required");
    return 0;
}

int call_body_int_opt(struct call *c, const char *field, int64_t *out, bool *present)
{
    const char *why;
    return parse_field_int(c->body, field, out, present, &why) ? field_error(c, field, why) : 0;
}

int call_body_int(struct call *c, const char *field, int64_t *out)
{
    bool present;
    if (call_body_int_opt(c, field, out, &present) != 0)
        return -1;
    if (!present)
        return field_error(c, field, "is required");
    return 0;
}

const char *call_header(struct call *c, const char *name, size_t *len)
{
    ssize_t i = h2o_find_header_by_str(&c->req->headers, name, strlen(name), -1);
    if (i < 0)
        return NULL;
    h2o_header_t *h = c->req->headers.entries + i;
    *len = h->value.len;
    return h->value.base;
}

const char *call_query(struct call *c, const char *name, size_t *len)
{
    h2o_req_t *req = c->req;
    if (req->query_at == SIZE_MAX)
        return NULL;
    return parse_query_param(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1, name, len);
}

int call_idempotency(struct call *c, const char *scope, struct idem *idem)
{
    size_t len;
    const char *key = call_header(c, "idempotency-key", &len);
    memset(idem, 0, sizeof *idem);
    if (key == NULL)
        return 0;
    const char *why = validate_idempotency_key(key, len);
    if (why != NULL) {
        char msg[160];
        snprintf(msg, sizeof msg, "Idempotency-Key %s", why);
        call_reply_error(c, BX_ERR_VALIDATION, "Idempotency-Key", msg);
        return -1;
    }
    char *copy = h2o_mem_alloc_pool(&c->req->pool, len + 1);
    memcpy(copy, key, len);
    copy[len] = '\0';
    idem->key = copy;
    /* the hash binds the key to this endpoint and this exact body */
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof idem->request_hash);
    crypto_generichash_update(&st, (const unsigned char *)scope, strlen(scope) + 1);
    /* canonical form: the same JSON with other spacing or key order is the same request */
    char *canon = c->body ? json_dumps(c->body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (canon != NULL) {
        crypto_generichash_update(&st, (const unsigned char *)canon, strlen(canon));
        free(canon);
    }
    crypto_generichash_final(&st, idem->request_hash, sizeof idem->request_hash);
    return 0;
}

const char *call_time(struct call *c, int64_t ms)
{
    char *buf = h2o_mem_alloc_pool(&c->req->pool, 32);
    return clock_format_rfc3339(ms, buf, 32);
}

