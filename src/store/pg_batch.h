/* pg_batch.h — struct store_write items as the parameters of bx_write_batch
 * (pg_schema.h, migration 3) and its result rows back into the items, for every
 * PostgreSQL store (store_pg.c now, an asynchronous one later); also the table of
 * the result codes the store functions return. No I/O, no SQL text of its own
 * (pg_statements.h: WRITE_BATCH_SQL). */
#ifndef BX_STORE_PG_BATCH_H
#define BX_STORE_PG_BATCH_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "domain/errors.h"
#include "store/store.h"

#define PG_BATCH_PARAMS 13 /* $1..$13 of WRITE_BATCH_SQL, all text format */

/* The parameters of one batch: values[i] points into buf (one allocation). */
struct pg_batch_params {
    const char *values[PG_BATCH_PARAMS];
    char *buf;
};

/* Encodes w[0..n) as array literals, NULL for the fields a kind does not use.
 * A write the server must not run — unknown kind, hold_ms <= 0 or now + hold_ms
 * past INT64_MAX, a charge of amount <= 0 — is sent as kind 'INVALID', which
 * bx_write_batch answers VALIDATION without touching anything. balance_max is
 * the charges' BALANCE_LIMIT (MONEY_BALANCE_MAX). false when out of memory;
 * otherwise release with pg_batch_params_release. */
bool pg_batch_encode(const struct store_write *w, size_t n, int64_t balance_max, struct pg_batch_params *out);
void pg_batch_params_release(struct pg_batch_params *p);

/* Fills w[i].result and, when it is BX_OK or BX_REPLAY, the outcome fields of
 * w[i]'s kind from row i of bx_write_batch's result (a hold's held_at and
 * expires_at are its now and now + hold_ms, as encoded). An unknown result code
 * makes that write's result BX_ERR_INTERNAL. Returns BX_ERR_INTERNAL, filling
 * nothing, when the result is not n rows of bx_write_batch's columns: the batch
 * may still have committed. */
bx_err pg_batch_decode(const PGresult *r, struct store_write *w, size_t n);

/* The bx_err of a result code of the store functions ('OK', 'REPLAY',
 * 'SEAT_UNAVAILABLE', ...); false for a code this binary does not know. */
bool pg_outcome_code(const char *code, bx_err *e);

#endif
