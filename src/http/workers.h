/* workers.h — work that must not run on an event loop: the CPU pool (argon2id
 * hashing), one thread per core. A job's `done` runs back on the loop of its
 * request; if the client went away meanwhile, `done` gets c == NULL (the work
 * itself was done all the same). (The embedded store's writer thread is
 * store/group_commit.c.) */
#ifndef BX_HTTP_WORKERS_H
#define BX_HTTP_WORKERS_H

#include <stddef.h>
#include <stdint.h>

#include "http/call.h"

typedef void (*worker_fn)(void *payload);
typedef void (*worker_done_fn)(struct call *c, void *payload);

/* Starts the CPU pool. 0 on success. */
int workers_start(int threads);
/* Joins every thread. */
void workers_stop(void);

/* Copies payload (size bytes) into the job; returns -1 when it could not queue
 * (the caller answers 503). */
int workers_submit(struct call *c, const void *payload, size_t size, worker_fn work, worker_done_fn done);

/* Installs the loop's completion receiver (called once per loop). */
void workers_attach_loop(struct loop_ctx *loop);

#endif
