/* pg_rows.h — statement parameters and result rows of the PostgreSQL stores
 * (store_pg.c, synchronous; astore_pg.c, on the event loop): how a value becomes
 * a parameter and how a row of pg_statements.h's columns becomes a domain record.
 * No I/O. */
#ifndef BX_STORE_PG_ROWS_H
#define BX_STORE_PG_ROWS_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "domain/errors.h"
#include "domain/types.h"

#define PG_PARAMS_MAX 13 /* the most any statement takes: WRITE_BATCH (pg_batch.h) */

/* Parameters of one statement, all text format except bytea (binary). A NULL
 * value is SQL NULL. Text is referenced, not copied: it must live until the
 * statement is sent (the drivers copy it then). */
struct pg_params {
    int n;
    const char *values[PG_PARAMS_MAX];
    int lengths[PG_PARAMS_MAX];
    int formats[PG_PARAMS_MAX];
    char num[PG_PARAMS_MAX][24];
};

void pg_param_i64(struct pg_params *p, int64_t v);
void pg_param_text(struct pg_params *p, const char *s);
void pg_param_bytes(struct pg_params *p, const void *b, int len);
/* The key and request hash of a money-moving call, or two NULLs without a key. */
void pg_param_idem(struct pg_params *p, const struct idem *idem);

/* A NULL column reads as 0, or as "". */
int64_t pg_col_i64(const PGresult *r, int row, int col);
bool pg_col_is(const PGresult *r, int row, int col, const char *want);
void pg_col_text(char *dst, size_t cap, const PGresult *r, int row, int col);

/* An RES_COLS row; a HELD row past its expiry at `now` reads EXPIRED (CONTRACT §6).
 * INTERNAL for a status this binary does not know. */
bx_err pg_read_reservation(const PGresult *r, int row, int64_t now, struct reservation *out);
/* A SCHED_COLS row. */
void pg_read_schedule(const PGresult *r, int row, struct schedule *out);
/* A PAY_COLS row from column col on. */
void pg_read_payment(const PGresult *r, int row, int col, struct payment *out);
/* id, title, venue. */
void pg_read_concert(const PGresult *r, int row, struct concert *out);
/* id, name, pwhash, balance. */
void pg_read_user(const PGresult *r, int row, struct user *out);

#endif
