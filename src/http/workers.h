/* workers.h — work that must not run on an event loop, in two lanes:
 *  - the CPU pool (argon2id hashing), one thread per core;
 *  - the store writer (embedded SQLite only): one thread with its own connection
 *    that runs every queued write in one transaction — group commit — so that a
 *    "paid" answer costs a share of one fsync instead of a whole one, and no loop
 *    ever waits on the disk.
 * A job's `done` runs back on the loop of its request; if the client went away
 * meanwhile, `done` gets c == NULL (the work itself was done all the same). */
#ifndef BX_HTTP_WORKERS_H
#define BX_HTTP_WORKERS_H

#include <stddef.h>
#include <stdint.h>

#include "http/call.h"
#include "queue/waitroom.h"

typedef void (*worker_fn)(void *payload);
typedef void (*worker_done_fn)(struct call *c, void *payload);

/* A write op: runs with the writer's store inside the batch (or on the loop's own
 * store when there is no writer) and keeps its outcome in its payload. */
typedef void (*writer_fn)(struct store *s, void *payload);
/* Runs after the op's commit, in commit order and before any answer of its batch
 * goes out (on the writer thread; on the loop without a writer). */
typedef void (*writer_committed_fn)(void *payload);
/* batch_err: BX_OK when the op's effects are durable, else why the whole batch
 * failed (the op's own outcome in the payload must then be ignored). */
typedef void (*writer_done_fn)(struct call *c, bx_err batch_err, void *payload);

/* Starts the CPU pool, and the store writer when the store supports group commit
 * (the writer then also runs the hold sweeper). 0 on success. */
int workers_start(int threads, struct store *writer_store);
/* Drains the writer, joins every thread, closes the writer's store. */
void workers_stop(void);
/* True when write ops go to the writer (and the sweeper runs there). */
int workers_have_writer(void);

/* Copies payload (size bytes) into the job; returns -1 when it could not queue
 * (the caller answers 503). */
int workers_submit(struct call *c, const void *payload, size_t size, worker_fn work, worker_done_fn done);

/* Runs a write op through the writer when there is one, else at once on the
 * loop's store; `committed` (may be NULL) and `done` follow either way (at once in
 * the second case). Returns -1 when it could not queue (the caller answers 503). */
int workers_write(struct call *c, const void *payload, size_t size, writer_fn op, writer_committed_fn committed,
                  writer_done_fn done);

/* Runs done on the loop once every change the waiting room has made so far is
 * durable (at once when it already is; batch_err = why not, when it failed).
 * Returns -1 when it could not wait (the caller answers 503). */
int workers_when_durable(struct call *c, struct waitroom *w, const void *payload, size_t size,
                         writer_done_fn done);

/* Installs the loop's completion receiver (called once per loop). */
void workers_attach_loop(struct loop_ctx *loop);

#endif
