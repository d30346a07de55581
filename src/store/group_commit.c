/* group_commit.c — see group_commit.h. Jobs travel on a mutex+condvar FIFO to
 * the writer and back through h2o's multithread queue of their loop. */
#include "store/group_commit.h"
#include "util/clock.h"
#include "util/log.h"

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#define BATCH_MAX 512 /* writes folded into one commit */
#define SWEEP_EVERY_MS 1000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready = PTHREAD_COND_INITIALIZER;
static struct group_commit_job *head, *tail;
static bool running, stopping;
static pthread_t thread;
static struct store *store; /* the writer thread's while it runs */
static struct group_commit_hooks hooks;

/* One batch: every write in savepoints of one transaction, then one commit; the
 * answers go back only after it. */
static void run_batch(struct group_commit_job *batch)
{
    bx_err e = store->ops->batch_begin(store);
    if (e == BX_OK) {
        for (struct group_commit_job *j = batch; j != NULL; j = j->next)
            store_write_run(store, j->write);
        e = store->ops->batch_commit(store);
    }
    if (e != BX_OK) {
        log_error("group commit failed (%s): every write of the batch is refused", bx_err_info(e)->code);
        if (hooks.failed != NULL)
            hooks.failed();
    } else if (hooks.committed != NULL) {
        for (struct group_commit_job *j = batch; j != NULL; j = j->next)
            hooks.committed(j->write);
    }
    for (struct group_commit_job *j = batch, *next; j != NULL; j = next) {
        next = j->next;
        j->batch_err = e;
        h2o_multithread_send_message(j->reply_to, &j->msg);
    }
}

static void sweep(void)
{
    int expired = 0;
    bx_err e = store->ops->sweep_holds(store, clock_now_ms(), &expired);
    if (e != BX_OK)
        log_warn("hold sweep failed: %s", bx_err_info(e)->code);
    else if (expired > 0)
        log_debug("hold sweep expired %d reservations", expired);
}

/* Waits for work (or the next sweep), then takes up to BATCH_MAX jobs. Under lock. */
static struct group_commit_job *take_batch(int64_t last_sweep)
{
    while (head == NULL && !stopping && clock_mono_ms() - last_sweep < SWEEP_EVERY_MS) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&ready, &lock, &until);
    }
    struct group_commit_job *batch = head, *last = batch;
    for (int n = 1; last != NULL && last->next != NULL && n < BATCH_MAX; n++)
        last = last->next;
    if (last != NULL) {
        head = last->next;
        if (head == NULL)
            tail = NULL;
        last->next = NULL;
    }
    return batch;
}

static void *writer_main(void *arg)
{
    (void)arg;
    int64_t last_sweep = clock_mono_ms();
    for (;;) {
        pthread_mutex_lock(&lock);
        struct group_commit_job *batch = take_batch(last_sweep);
        bool stop = stopping && head == NULL && batch == NULL;
        pthread_mutex_unlock(&lock);
        if (batch != NULL)
            run_batch(batch);
        if (clock_mono_ms() - last_sweep >= SWEEP_EVERY_MS) {
            sweep();
            last_sweep = clock_mono_ms();
        }
        if (stop)
            return NULL;
    }
}

int group_commit_start(struct store *s, const struct group_commit_hooks *h)
{
    if (s->ops->batch_begin == NULL) {
        s->ops->close(s);
        return -1;
    }
    store = s;
    hooks = *h;
    stopping = false;
    if (pthread_create(&thread, NULL, writer_main, NULL) != 0) {
        store = NULL;
        s->ops->close(s);
        return -1;
    }
    running = true;
    return 0;
}

void group_commit_stop(void)
{
    if (!running)
        return;
    pthread_mutex_lock(&lock);
    stopping = true;
    pthread_cond_broadcast(&ready);
    pthread_mutex_unlock(&lock);
    pthread_join(thread, NULL);
    store->ops->close(store);
    store = NULL;
    running = false;
}

int group_commit_submit(struct group_commit_job *j)
{
    pthread_mutex_lock(&lock);
    bool ok = running && !stopping;
    if (ok) {
        j->next = NULL;
        if (tail != NULL)
            tail->next = j;
        else
            head = j;
        tail = j;
        pthread_cond_signal(&ready);
    }
    pthread_mutex_unlock(&lock);
    return ok ? 0 : -1;
}
