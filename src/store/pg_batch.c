/* pg_batch.c — encodes struct store_write items as the array parameters of
 * bx_write_batch and decodes its rows (pg_batch.h). Pure data: no connection,
 * no SQL text. */
#include "store/pg_batch.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The parameters of bx_write_batch, in order (pg_schema.h, migration 3). */
enum {
    P_KIND,
    P_USER,
    P_NOW,
    P_SCHEDULE,
    P_SEAT,
    P_EXPIRES,
    P_MAX,
    P_RES,
    P_AMOUNT,
    P_CONCERT,
    P_KEY,
    P_HASH,
    P_BALANCE_MAX,
};

/* The columns of its rows, in order. */
enum { C_CODE, C_ID, C_CONCERT, C_PRICE, C_RES, C_AMOUNT, C_BALANCE, C_PAID_AT, C_LIVE_HOLDS, C__COUNT };

/* Upper bound of one item's text across all arrays: ten numbers of at most 20
 * characters and a comma, the kind, a key whose every character is escaped,
 * and a quoted "\\x" + 64 hex digits hash. */
#define ITEM_TEXT_MAX (10 * 21 + 8 + (2 + 2 * BX_IDEM_KEY_MAX + 1) + (2 + 3 + 64 + 1))

/* What the server sees of one write. */
struct item {
    const char *kind;
    bool hold, res, charge, pay;
    int64_t expires; /* HOLD */
};

static struct item item_of(const struct store_write *w)
{
    struct item it = {.kind = "INVALID"};
    switch (w->kind) {
    case STORE_WRITE_HOLD:
        if (w->hold_ms > 0 && !__builtin_add_overflow(w->now, w->hold_ms, &it.expires)) {
            it.kind = "HOLD";
            it.hold = true;
        }
        break;
    case STORE_WRITE_CANCEL:
        it.kind = "CANCEL";
        it.res = true;
        break;
    case STORE_WRITE_CHARGE:
        if (w->amount > 0) {
            it.kind = "CHARGE";
            it.charge = true;
        }
        break;
    case STORE_WRITE_PAY:
        it.kind = "PAY";
        it.res = it.pay = true;
        break;
    }
    return it;
}

static void put_text(char **p, const char *s)
{
    size_t n = strlen(s);
    memcpy(*p, s, n);
    *p += n;
}

static void put_i64(char **p, bool used, int64_t v)
{
    if (!used)
        put_text(p, "NULL");
    else
        *p += sprintf(*p, "%" PRId64, v);
}

/* An array element of text: double-quoted, '"' and '\' escaped by '\'. */
static void put_quoted(char **p, const char *s, size_t len)
{
    *(*p)++ = '"';
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"' || s[i] == '\\')
            *(*p)++ = '\\';
        *(*p)++ = s[i];
    }
    *(*p)++ = '"';
}

static void put_element(char **p, int param, const struct store_write *w, const struct item *it)
{
    bool keyed = (it->charge || it->pay) && w->has_key;
    switch (param) {
    case P_KIND:
        put_text(p, it->kind);
        break;
    case P_USER:
        put_i64(p, true, w->user_id);
        break;
    case P_NOW:
        put_i64(p, true, w->now);
        break;
    case P_SCHEDULE:
        put_i64(p, it->hold, w->schedule_id);
        break;
    case P_SEAT:
        put_i64(p, it->hold, w->seat_no);
        break;
    case P_EXPIRES:
        put_i64(p, it->hold, it->expires);
        break;
    case P_MAX:
        put_i64(p, it->hold, w->max_per_user);
        break;
    case P_RES:
        put_i64(p, it->res, w->reservation_id);
        break;
    case P_AMOUNT:
        put_i64(p, it->charge || it->pay, it->pay && w->amount < 0 ? -1 : w->amount);
        break;
    case P_CONCERT:
        put_i64(p, it->pay, w->concert_id);
        break;
    case P_KEY:
        if (keyed)
            put_quoted(p, w->key, strnlen(w->key, sizeof w->key));
        else
            put_text(p, "NULL");
        break;
    case P_HASH:
        if (keyed) {
            put_text(p, "\"\\\\x");
            for (size_t i = 0; i < sizeof w->request_hash; i++)
                *p += sprintf(*p, "%02x", w->request_hash[i]);
            put_text(p, "\"");
        } else {
            put_text(p, "NULL");
        }
        break;
    }
}

bool pg_batch_encode(const struct store_write *w, size_t n, int64_t balance_max, struct pg_batch_params *out)
{
    memset(out, 0, sizeof *out);
    if (n > (SIZE_MAX - 128) / ITEM_TEXT_MAX)
        return false;
    struct item *items = malloc((n ? n : 1) * sizeof *items);
    char *buf = malloc(n * ITEM_TEXT_MAX + (size_t)3 * P_BALANCE_MAX + 32);
    if (items == NULL || buf == NULL) {
        free(items);
        free(buf);
        return false;
    }
    for (size_t i = 0; i < n; i++)
        items[i] = item_of(&w[i]);
    char *p = buf;
    for (int param = 0; param < P_BALANCE_MAX; param++) {
        out->values[param] = p;
        *p++ = '{';
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                *p++ = ',';
            put_element(&p, param, &w[i], &items[i]);
        }
        *p++ = '}';
        *p++ = '\0';
    }
    out->values[P_BALANCE_MAX] = p;
    p += sprintf(p, "%" PRId64, balance_max) + 1;
    free(items);
    out->buf = buf;
    return true;
}

void pg_batch_params_release(struct pg_batch_params *p)
{
    free(p->buf);
    memset(p, 0, sizeof *p);
}

/* The result codes of the store functions (pg_schema.h). */
static const struct {
    const char *code;
    bx_err err;
} outcome_codes[] = {
    {"OK", BX_OK},
    {"REPLAY", BX_REPLAY},
    {"NOT_FOUND", BX_ERR_NOT_FOUND},
    {"VALIDATION", BX_ERR_VALIDATION},
    {"IDEMPOTENCY_MISMATCH", BX_ERR_IDEMPOTENCY_MISMATCH},
    {"BALANCE_LIMIT", BX_ERR_BALANCE_LIMIT},
    {"CONCERT_NOT_FOUND", BX_ERR_CONCERT_NOT_FOUND},
    {"SCHEDULE_NOT_FOUND", BX_ERR_SCHEDULE_NOT_FOUND},
    {"SALE_CLOSED", BX_ERR_SALE_CLOSED},
    {"SEAT_NOT_FOUND", BX_ERR_SEAT_NOT_FOUND},
    {"SEAT_LIMIT", BX_ERR_SEAT_LIMIT},
    {"SEAT_UNAVAILABLE", BX_ERR_SEAT_UNAVAILABLE},
    {"RESERVATION_NOT_FOUND", BX_ERR_RESERVATION_NOT_FOUND},
    {"NOT_HELD", BX_ERR_NOT_HELD},
    {"HOLD_EXPIRED", BX_ERR_HOLD_EXPIRED},
    {"ALREADY_PAID", BX_ERR_ALREADY_PAID},
    {"PRICE_MISMATCH", BX_ERR_PRICE_MISMATCH},
    {"INSUFFICIENT_BALANCE", BX_ERR_INSUFFICIENT_BALANCE},
    {"INTERNAL", BX_ERR_INTERNAL},
};

bool pg_outcome_code(const char *code, bx_err *e)
{
    for (size_t i = 0; i < sizeof outcome_codes / sizeof outcome_codes[0]; i++)
        if (strcmp(code, outcome_codes[i].code) == 0) {
            *e = outcome_codes[i].err;
            return true;
        }
    return false;
}

static int64_t col_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* One row into its write. */
static void decode_row(const PGresult *r, int row, struct store_write *w)
{
    bx_err e = BX_ERR_INTERNAL;
    w->result = BX_ERR_INTERNAL;
    memset(&w->reservation, 0, sizeof w->reservation);
    memset(&w->payment, 0, sizeof w->payment);
    w->balance = 0;
    w->live_holds_left = 0;
    if (PQgetisnull(r, row, C_CODE) || !pg_outcome_code(PQgetvalue(r, row, C_CODE), &e)) {
        fprintf(stderr, "pg_batch: item %d: unknown outcome %s\n", row,
                PQgetisnull(r, row, C_CODE) ? "(null)" : PQgetvalue(r, row, C_CODE));
        return;
    }
    if (e == BX_ERR_INTERNAL)
        fprintf(stderr, "pg_batch: item %d: the store function reported an inconsistency\n", row);
    w->result = e;
    if (e != BX_OK && e != BX_REPLAY)
        return;
    switch (w->kind) {
    case STORE_WRITE_HOLD:
        w->reservation = (struct reservation){
            .id = col_i64(r, row, C_ID),
            .user_id = w->user_id,
            .schedule_id = w->schedule_id,
            .concert_id = col_i64(r, row, C_CONCERT),
            .seat_no = w->seat_no,
            .price = col_i64(r, row, C_PRICE),
            .status = RES_HELD,
            .held_at = w->now,
            .expires_at = w->now + w->hold_ms, /* checked by item_of, or the item was refused */
        };
        break;
    case STORE_WRITE_PAY:
        w->payment = (struct payment){
            .id = col_i64(r, row, C_ID),
            .user_id = w->user_id,
            .reservation_id = col_i64(r, row, C_RES),
            .amount = col_i64(r, row, C_AMOUNT),
            .balance_after = col_i64(r, row, C_BALANCE),
            .paid_at = col_i64(r, row, C_PAID_AT),
        };
        w->live_holds_left = e == BX_OK ? (int)col_i64(r, row, C_LIVE_HOLDS) : 0;
        break;
    case STORE_WRITE_CHARGE:
        w->balance = col_i64(r, row, C_BALANCE);
        break;
    case STORE_WRITE_CANCEL:
        break;
    }
}

bx_err pg_batch_decode(const PGresult *r, struct store_write *w, size_t n)
{
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQnfields(r) != C__COUNT || n > INT32_MAX || PQntuples(r) != (int)n) {
        fprintf(stderr, "pg_batch: bx_write_batch returned %d rows of %d columns for %zu writes\n", PQntuples(r),
                PQnfields(r), n);
        return BX_ERR_INTERNAL;
    }
    for (size_t i = 0; i < n; i++)
        decode_row(r, (int)i, &w[i]);
    return BX_OK;
}
