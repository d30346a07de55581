/* group_commit.h — the embedded store writer: one thread with its own SQLite
 * connection takes every write queued meanwhile (up to a batch limit), runs each
 * in its own savepoint of ONE transaction (a refusal undoes only itself), commits
 * once, and only then lets the answers go. SQLite with synchronous=FULL costs one
 * fsync per commit (~270 µs here): sharing it is what lets embedded mode sell
 * thousands of seats a second, and no event loop ever waits on the disk. A "paid"
 * answer still leaves only once its payment is durable (invariant 4). Between
 * batches the writer also runs the hold sweeper. Process-wide; any thread may
 * submit. */
#ifndef BX_STORE_GROUP_COMMIT_H
#define BX_STORE_GROUP_COMMIT_H

#define H2O_USE_LIBUV 0
#include <h2o.h>

#include "store/store.h"

/* One write on its way through the writer. The submitter allocates it and gets it
 * back through reply_to (on its loop) once the batch is over. */
struct group_commit_job {
    h2o_multithread_message_t msg; /* first: the receiver hands back this */
    struct group_commit_job *next;
    h2o_multithread_receiver_t *reply_to;
    struct store_write *write; /* runs on the writer's store; stays the submitter's */
    bx_err batch_err;          /* BX_OK when the write's effects are durable */
    void (*done)(void *arg, bx_err e); /* the submitter's, for its receiver */
    void *arg;
};

/* Called on the writer thread: after each write of a committed batch, in commit
 * order, before any answer of the batch goes out; and when a batch failed (every
 * write of it undone, or its commit in doubt). */
struct group_commit_hooks {
    void (*committed)(const struct store_write *w);
    void (*failed)(void);
};

/* Starts the writer on s (it owns s from here, even on failure). 0 on success. */
int group_commit_start(struct store *s, const struct group_commit_hooks *hooks);
/* Drains what is queued, joins the thread, closes the store. */
void group_commit_stop(void);
/* Queues the job; -1 when the writer is not running (nothing queued). */
int group_commit_submit(struct group_commit_job *j);

#endif
