/* workers.h — a small thread pool for CPU-heavy work (argon2id) so that no event
 * loop stalls. A job runs on a worker, then its `done` runs back on the loop of
 * the request; if the client went away meanwhile, `done` gets c == NULL. */
#ifndef BX_HTTP_WORKERS_H
#define BX_HTTP_WORKERS_H

#include <stddef.h>

#include "http/call.h"

typedef void (*worker_fn)(void *payload);
typedef void (*worker_done_fn)(struct call *c, void *payload);

int workers_start(int threads);
void workers_stop(void);

/* Copies payload (size bytes) into the job; returns -1 when it could not queue
 * (the caller answers 503). */
int workers_submit(struct call *c, const void *payload, size_t size, worker_fn work, worker_done_fn done);

/* Installs the loop's completion receiver (called once per loop). */
void workers_attach_loop(struct loop_ctx *loop);

#endif
