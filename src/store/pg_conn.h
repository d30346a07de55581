/* pg_conn.h — one asynchronous PostgreSQL connection driven by an h2o event loop:
 * libpq in non-blocking pipeline mode, its socket registered on the loop, so many
 * statements are in flight at once and the loop never waits on the network.
 * Owned and used by one loop thread; nothing here is thread-safe. No SQL of its
 * own beyond what the caller configures (prepared statements, LISTEN).
 *
 * Every query is a prepared statement followed by its own sync point, so each
 * runs in its own implicit transaction and a failing one aborts nothing else.
 * Results come back in the order the queries were queued.
 *
 * Bounds: each query has a deadline, reply_wait_ms after it was queued. All
 * deadlines are the same length and answers come in order, so the first to pass
 * is always the oldest unanswered query's, at the head of the pipeline: the
 * server is then taken as unreachable or frozen (statement_timeout cannot stop a
 * SIGSTOPped server), the connection is closed, every query in flight or queued
 * fails with BX_ERR_UNAVAILABLE at that moment (before its own deadline), and a
 * new connection is tried a second later (at most one attempt per second while
 * the server stays away). Connecting and preparing are bounded the same way.
 *
 * Callbacks (done, on_notify, on_state) run on the loop and may call
 * pg_conn_query on any connection; they must not call pg_conn_close on their
 * own connection. */
#ifndef BX_STORE_PG_CONN_H
#define BX_STORE_PG_CONN_H

#define H2O_USE_LIBUV 0
#include <h2o.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "domain/errors.h"

struct pg_conn;

struct pg_statement {
    const char *name; /* as given to PQsendPrepare */
    const char *sql;
};

struct pg_conn_config {
    const char *conninfo;                  /* libpq URL or key=value string (--db) */
    const struct pg_statement *statements; /* prepared on every (re)connect, before any query */
    size_t statement_count;
    const char *listen_channel; /* LISTEN on every (re)connect; NULL: none */
    /* A query's deadline from when it is queued, and the bound on connecting.
     * Longer than the session's statement_timeout (5 s): a statement the server
     * cancels is an error for that query only, a deadline closes the connection. */
    int64_t reply_wait_ms;
    size_t max_queued; /* queued + in flight (> 0); past it pg_conn_query refuses */
    /* A NOTIFY on listen_channel. Runs on the loop, before the done callback of any
     * query whose result arrived after the notification. It may also run before
     * the done of a query whose result arrived just before it (libpq parses
     * notifications ahead of results not yet taken): a result whose query was in
     * flight when a notification came may predate that notification. */
    void (*on_notify)(void *arg, const char *payload);
    /* The connection became usable (up: connected, statements prepared, listening)
     * or, having been up, was lost (notifications may have been missed since); not
     * called for failed attempts while down, nor by pg_conn_close. May be NULL. */
    void (*on_state)(void *arg, bool up);
    void *arg; /* for on_notify and on_state */
};

/* The outcome of one query, called exactly once, on the loop, never from inside
 * pg_conn_query:
 *   e == BX_OK:              res is the statement's result (PGRES_TUPLES_OK or
 *                            PGRES_COMMAND_OK); it is freed after done returns.
 *   e == BX_ERR_INTERNAL:    res is the server's error (PGRES_FATAL_ERROR; read
 *                            PQresultErrorField): the statement's transaction
 *                            rolled back, nothing of it was committed.
 *   e == BX_ERR_UNAVAILABLE: res is NULL: connection lost, deadline passed or
 *                            closed; whether a write committed is unknown. */
typedef void (*pg_done_fn)(void *arg, bx_err e, const PGresult *res);

/* Starts connecting at once (non-blocking); queries queued meanwhile are sent
 * right behind the statements' preparation. cfg and everything it points to must
 * outlive the connection. NULL when out of memory or conninfo is malformed (an
 * unreachable server is not an error: the connection keeps retrying). */
struct pg_conn *pg_conn_open(h2o_evloop_t *loop, const struct pg_conn_config *cfg);
/* Fails every query in flight or queued with BX_ERR_UNAVAILABLE (their done runs
 * before this returns), then closes the connection and frees it. Not from one of
 * the connection's own callbacks. */
void pg_conn_close(struct pg_conn *c);

/* Queues statement number `stmt` of cfg->statements with n parameters (values[i]
 * NULL is SQL NULL; lengths and formats may be NULL for text parameters; all are
 * copied before return). Results are asked for in text format. Returns 0 when
 * queued (done will run), -1 when refused without calling done: the connection is
 * down and waiting to retry, max_queued is reached, stmt or n is out of range, or
 * memory is short. */
int pg_conn_query(struct pg_conn *c, int stmt, int n, const char *const *values, const int *lengths,
                  const int *formats, pg_done_fn done, void *arg);

/* True while the connection is up (and so notifications are being received). */
bool pg_conn_is_up(const struct pg_conn *c);
/* Queries queued or in flight (what max_queued bounds). */
size_t pg_conn_pending(const struct pg_conn *c);

#endif
