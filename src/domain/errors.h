/* errors.h — the one error vocabulary of boxoffice (STYLE: one enum, one table).
 * Every layer returns a bx_err; only http/reply.c turns it into a status line. */
#ifndef BX_DOMAIN_ERRORS_H
#define BX_DOMAIN_ERRORS_H

typedef enum {
    BX_OK = 0,
    BX_REPLAY,                   /* not an error: an idempotent replay, result filled from the first call */
    BX_ERR_VALIDATION,           /* 400 */
    BX_ERR_UNAUTHORIZED,         /* 401: missing/invalid/expired access token */
    BX_ERR_BAD_CREDENTIALS,      /* 401 */
    BX_ERR_ADMIN_KEY,            /* 401: admin key missing or wrong */
    BX_ERR_ADMIN_DISABLED,       /* 403: server started without --admin-key */
    BX_ERR_QUEUE_TOKEN_INVALID,  /* 401: X-Queue-Token missing or unknown */
    BX_ERR_TOKEN_NOT_YOURS,      /* 403 */
    BX_ERR_QUEUE_NOT_ACTIVE,     /* 403 */
    BX_ERR_TOKEN_EXPIRED,        /* 410 */
    BX_ERR_NOT_FOUND,            /* 404 (generic object) */
    BX_ERR_CONCERT_NOT_FOUND,    /* 404 */
    BX_ERR_SCHEDULE_NOT_FOUND,   /* 404 */
    BX_ERR_SEAT_NOT_FOUND,       /* 404 */
    BX_ERR_RESERVATION_NOT_FOUND,/* 404 */
    BX_ERR_ROUTE_NOT_FOUND,      /* 404 */
    BX_ERR_METHOD_NOT_ALLOWED,   /* 405 */
    BX_ERR_NAME_TAKEN,           /* 409 */
    BX_ERR_SEAT_UNAVAILABLE,     /* 409 */
    BX_ERR_SEAT_LIMIT,           /* 409 */
    BX_ERR_SALE_CLOSED,          /* 409: schedule not on sale now */
    BX_ERR_NOT_HELD,             /* 409: reservation is not HELD */
    BX_ERR_HOLD_EXPIRED,         /* 409 */
    BX_ERR_ALREADY_PAID,         /* 409 */
    BX_ERR_PRICE_MISMATCH,       /* 409 */
    BX_ERR_BALANCE_LIMIT,        /* 409 */
    BX_ERR_INSUFFICIENT_BALANCE, /* 402 */
    BX_ERR_PAYLOAD_TOO_LARGE,    /* 413 */
    BX_ERR_IDEMPOTENCY_MISMATCH, /* 422 */
    BX_ERR_RATE_LIMITED,         /* 429, with Retry-After */
    BX_ERR_UNAVAILABLE,          /* 503: database or queue unreachable / busy */
    BX_ERR_INTERNAL,             /* 500 */
    BX_ERR__COUNT
} bx_err;

struct bx_err_info {
    int status;          /* HTTP status */
    const char *code;    /* API error code, CONTRACT §5 */
    const char *message; /* default human message */
};

/* Never NULL; unknown values map to INTERNAL. */
const struct bx_err_info *bx_err_info(bx_err err);

#endif
