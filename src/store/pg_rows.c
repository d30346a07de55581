/* pg_rows.c — see pg_rows.h. */
#include "store/pg_rows.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pg_param_i64(struct pg_params *p, int64_t v)
{
    snprintf(p->num[p->n], sizeof p->num[p->n], "%" PRId64, v);
    p->values[p->n] = p->num[p->n];
    p->lengths[p->n] = 0;
    p->formats[p->n] = 0;
    p->n++;
}

void pg_param_text(struct pg_params *p, const char *s)
{
    p->values[p->n] = s;
    p->lengths[p->n] = 0;
    p->formats[p->n] = 0;
    p->n++;
}

void pg_param_bytes(struct pg_params *p, const void *b, int len)
{
    p->values[p->n] = b;
    p->lengths[p->n] = b ? len : 0;
    p->formats[p->n] = 1;
    p->n++;
}

void pg_param_idem(struct pg_params *p, const struct idem *idem)
{
    bool keyed = idem != NULL && idem->key != NULL;
    pg_param_text(p, keyed ? idem->key : NULL);
    pg_param_bytes(p, keyed ? idem->request_hash : NULL, (int)sizeof idem->request_hash);
}

int64_t pg_col_i64(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

bool pg_col_is(const PGresult *r, int row, int col, const char *want)
{
    return !PQgetisnull(r, row, col) && strcmp(PQgetvalue(r, row, col), want) == 0;
}

void pg_col_text(char *dst, size_t cap, const PGresult *r, int row, int col)
{
    const char *t = PQgetvalue(r, row, col);
    size_t len = PQgetisnull(r, row, col) ? 0 : (size_t)PQgetlength(r, row, col);
    if (len >= cap)
        len = cap - 1;
    if (len)
        memcpy(dst, t, len);
    dst[len] = '\0';
}

static const char *const res_status_text[] = {
    [RES_HELD] = "HELD", [RES_CONFIRMED] = "CONFIRMED", [RES_EXPIRED] = "EXPIRED", [RES_CANCELLED] = "CANCELLED"};

bx_err pg_read_reservation(const PGresult *r, int row, int64_t now, struct reservation *out)
{
    int st = -1;
    for (int i = RES_HELD; i <= RES_CANCELLED; i++)
        if (pg_col_is(r, row, 6, res_status_text[i]))
            st = i;
    if (st < 0) {
        fprintf(stderr, "store_pg: reservation %s has an unknown status\n", PQgetvalue(r, row, 0));
        return BX_ERR_INTERNAL;
    }
    out->id = pg_col_i64(r, row, 0);
    out->user_id = pg_col_i64(r, row, 1);
    out->schedule_id = pg_col_i64(r, row, 2);
    out->concert_id = pg_col_i64(r, row, 3);
    out->seat_no = (int32_t)pg_col_i64(r, row, 4);
    out->price = pg_col_i64(r, row, 5);
    out->held_at = pg_col_i64(r, row, 7);
    out->expires_at = pg_col_i64(r, row, 8);
    out->confirmed_at = pg_col_i64(r, row, 9); /* NULL reads as 0 */
    out->status = (st == RES_HELD && out->expires_at <= now) ? RES_EXPIRED : (enum reservation_status)st;
    return BX_OK;
}

void pg_read_schedule(const PGresult *r, int row, struct schedule *out)
{
    out->id = pg_col_i64(r, row, 0);
    out->concert_id = pg_col_i64(r, row, 1);
    out->starts_at = pg_col_i64(r, row, 2);
    out->sale_opens_at = pg_col_i64(r, row, 3);
    out->sale_closes_at = pg_col_i64(r, row, 4);
    out->seat_count = (int32_t)pg_col_i64(r, row, 5);
    out->available = (int32_t)pg_col_i64(r, row, 6);
}

void pg_read_payment(const PGresult *r, int row, int col, struct payment *out)
{
    out->id = pg_col_i64(r, row, col);
    out->user_id = pg_col_i64(r, row, col + 1);
    out->reservation_id = pg_col_i64(r, row, col + 2);
    out->amount = pg_col_i64(r, row, col + 3);
    out->balance_after = pg_col_i64(r, row, col + 4);
    out->paid_at = pg_col_i64(r, row, col + 5);
}

void pg_read_concert(const PGresult *r, int row, struct concert *out)
{
    out->id = pg_col_i64(r, row, 0);
    pg_col_text(out->title, sizeof out->title, r, row, 1);
    pg_col_text(out->venue, sizeof out->venue, r, row, 2);
}

void pg_read_user(const PGresult *r, int row, struct user *out)
{
    out->id = pg_col_i64(r, row, 0);
    pg_col_text(out->name, sizeof out->name, r, row, 1);
    pg_col_text(out->pwhash, sizeof out->pwhash, r, row, 2);
    out->balance = pg_col_i64(r, row, 3);
}
