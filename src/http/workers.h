/* workers.h — work that must not run on an event loop: the CPU pool (argon2id
 * hashing), one thread per event loop. A job's `done` runs back on the loop of its
 * request; if the client went away meanwhile, `done` gets c == NULL (the work
 * itself was done all the same). (The embedded store's writer thread is
 * store/group_commit.c.)
 *
 * The pool is bounded and shared fairly between client addresses (each job names
 * its client, http/client.h): jobs wait only as long as the queue is shorter than
 * --hash-wait milliseconds of work (jobs x their measured run time / threads; a
 * hash is timed at start so the first burst is judged right too; never more than
 * WORKERS_QUEUE_CAP), taken round robin across clients, and one client never runs
 * on every thread at once (one is kept for the others when the pool has two or
 * more). A job that an idle thread can take at once is always accepted. When the
 * queue is full, a newcomer takes the place of the last waiting job of the client
 * with the most jobs (waiting and running; that job is answered 503), or is itself
 * answered 503 when no client has at least two more than it would. Both 503s carry
 * Retry-After: the time the queue needs to drain. So a flood from one address
 * costs others at most one job's wait, and nothing queues without bound. */
#ifndef BX_HTTP_WORKERS_H
#define BX_HTTP_WORKERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/call.h"

typedef void (*worker_fn)(void *payload);
/* e == BX_OK: work ran; c is the call, NULL if the client went away.
 * e == BX_ERR_UNAVAILABLE: the job was pushed out of a full queue before it ran
 * and the call was answered 503; c is NULL: only release what the payload holds. */
typedef void (*worker_done_fn)(struct call *c, void *payload, bx_err e);

#define WORKERS_QUEUE_CAP 4096

/* Times one hash at app.pwcost, then starts the CPU pool with n threads
 * and a queue of app.cfg.hash_wait ms. 0 on success. */
int workers_start(int n);
/* Runs what is queued, then joins every thread. */
void workers_stop(void);

/* Copies payload (size bytes) into a job for client (http/client.h's key). A
 * priority job (a log-in from an address that has logged in to that name before:
 * a returning user) waits in a lane of its own that threads serve first, bounded
 * by --hash-wait on its own (with room for one job per thread at least): a flood from many addresses, which fills the common
 * queue fairly, still lets returning users through (the common queue then waits
 * longer by what the priority lane holds). Returns 0 when queued; -1 after answering 503 UNAVAILABLE with
 * Retry-After (queue full, or out of memory): the caller releases what it holds. */
int workers_submit(struct call *c, uint64_t client, bool priority, const void *payload, size_t size, worker_fn work,
                   worker_done_fn done);

/* Installs the loop's completion receiver (called once per loop). */
void workers_attach_loop(struct loop_ctx *loop);

#endif
