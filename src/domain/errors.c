/* errors.c — maps each bx_err to its HTTP status and API code (CONTRACT §5). */
#include "domain/errors.h"

static const struct bx_err_info table[BX_ERR__COUNT] = {
    [BX_OK] = {200, "OK", "ok"},
    [BX_REPLAY] = {200, "OK", "idempotent replay"},
    [BX_ERR_VALIDATION] = {400, "VALIDATION", "the request is not valid"},
    [BX_ERR_UNAUTHORIZED] = {401, "UNAUTHORIZED", "a valid access token is required (Authorization: Bearer)"},
    [BX_ERR_BAD_CREDENTIALS] = {401, "BAD_CREDENTIALS", "name or password is wrong"},
    [BX_ERR_ADMIN_KEY] = {401, "ADMIN_KEY_INVALID", "a valid X-Admin-Key header is required"},
    [BX_ERR_ADMIN_DISABLED] = {403, "ADMIN_DISABLED", "the admin API is off (server started without --admin-key)"},
    [BX_ERR_QUEUE_TOKEN_INVALID] = {401, "QUEUE_TOKEN_INVALID", "X-Queue-Token is missing or unknown"},
    [BX_ERR_TOKEN_NOT_YOURS] = {403, "TOKEN_NOT_YOURS", "this queue token belongs to another user"},
    [BX_ERR_QUEUE_NOT_ACTIVE] = {403, "QUEUE_NOT_ACTIVE", "an ACTIVE queue token for this concert is required (X-Queue-Token)"},
    [BX_ERR_TOKEN_EXPIRED] = {410, "TOKEN_EXPIRED", "this queue token has expired; request a new one"},
    [BX_ERR_NOT_FOUND] = {404, "NOT_FOUND", "not found"},
    [BX_ERR_CONCERT_NOT_FOUND] = {404, "CONCERT_NOT_FOUND", "no such concert"},
    [BX_ERR_SCHEDULE_NOT_FOUND] = {404, "SCHEDULE_NOT_FOUND", "no such schedule"},
    [BX_ERR_SEAT_NOT_FOUND] = {404, "SEAT_NOT_FOUND", "no such seat on this schedule"},
    [BX_ERR_RESERVATION_NOT_FOUND] = {404, "RESERVATION_NOT_FOUND", "no such reservation"},
    [BX_ERR_ROUTE_NOT_FOUND] = {404, "ROUTE_NOT_FOUND", "no such endpoint"},
    [BX_ERR_METHOD_NOT_ALLOWED] = {405, "METHOD_NOT_ALLOWED", "method not allowed on this endpoint"},
    [BX_ERR_NAME_TAKEN] = {409, "NAME_TAKEN", "this name is taken"},
    [BX_ERR_SEAT_UNAVAILABLE] = {409, "SEAT_UNAVAILABLE", "this seat is held or sold"},
    [BX_ERR_SEAT_LIMIT] = {409, "SEAT_LIMIT", "you already hold or own the maximum number of seats for this date"},
    [BX_ERR_SALE_CLOSED] = {409, "SALE_CLOSED", "this date is not on sale now"},
    [BX_ERR_NOT_HELD] = {409, "NOT_HELD", "the reservation is not HELD"},
    [BX_ERR_HOLD_EXPIRED] = {409, "HOLD_EXPIRED", "the hold has expired; the seat was released"},
    [BX_ERR_ALREADY_PAID] = {409, "ALREADY_PAID", "this reservation is already paid"},
    [BX_ERR_PRICE_MISMATCH] = {409, "PRICE_MISMATCH", "amount does not match the seat price"},
    [BX_ERR_BALANCE_LIMIT] = {409, "BALANCE_LIMIT", "the balance would exceed 1,000,000,000,000"},
    [BX_ERR_INSUFFICIENT_BALANCE] = {402, "INSUFFICIENT_BALANCE", "the balance is lower than the price; charge first"},
    [BX_ERR_PAYLOAD_TOO_LARGE] = {413, "PAYLOAD_TOO_LARGE", "the request body is over 64 KiB"},
    [BX_ERR_IDEMPOTENCY_MISMATCH] = {422, "IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used with a different request"},
    [BX_ERR_RATE_LIMITED] = {429, "RATE_LIMITED", "too many requests of this kind; retry after the Retry-After seconds"},
    [BX_ERR_UNAVAILABLE] = {503, "UNAVAILABLE", "the service is temporarily unavailable; retry shortly"},
    [BX_ERR_INTERNAL] = {500, "INTERNAL", "internal error"},
};

const struct bx_err_info *bx_err_info(bx_err err)
{
    if ((unsigned)err >= BX_ERR__COUNT || table[err].code == 0)
        return &table[BX_ERR_INTERNAL];
    return &table[err];
}
