/* workers.c — see workers.h. Jobs travel on mutex+condvar FIFOs to their lane
 * and come back through h2o's multithread queue of the request's loop. A guard
 * object in the request pool tells the job when the request died first. */
#include "http/workers.h"
#include "util/clock.h"
#include "util/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WRITER_BATCH_MAX 512    /* ops folded into one commit */
#define WRITER_SWEEP_EVERY_MS 1000

struct job {
    h2o_multithread_message_t msg; /* first: the receiver hands back this */
    struct job *next;
    struct loop_ctx *loop;
    struct call *call;  /* NULL once the request is gone */
    struct job **guard; /* slot in the request pool pointing back here */
    worker_fn work;     /* CPU lane */
    worker_done_fn done;
    writer_fn write;    /* writer lane */
    writer_committed_fn committed;
    writer_done_fn write_done;
    bx_err batch_err;
    _Alignas(16) unsigned char payload[];
};

struct lane {
    pthread_mutex_t lock;
    pthread_cond_t ready;
    struct job *head, *tail;
    int stopping;
};

static struct lane cpu = {.lock = PTHREAD_MUTEX_INITIALIZER, .ready = PTHREAD_COND_INITIALIZER};
static struct lane writer = {.lock = PTHREAD_MUTEX_INITIALIZER, .ready = PTHREAD_COND_INITIALIZER};
static pthread_t *cpu_threads;
static int cpu_nthreads;
static pthread_t writer_thread;
static struct store *writer_store; /* owned by the writer thread while it runs */

static void lane_push(struct lane *l, struct job *j)
{
    pthread_mutex_lock(&l->lock);
    if (l->tail != NULL)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
    pthread_cond_signal(&l->ready);
    pthread_mutex_unlock(&l->lock);
}

static void finish_on_loop(struct job *j)
{
    h2o_multithread_send_message(&j->loop->worker_done, &j->msg);
}

static void *cpu_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&cpu.lock);
        while (cpu.head == NULL && !cpu.stopping)
            pthread_cond_wait(&cpu.ready, &cpu.lock);
        struct job *j = cpu.head;
        if (j == NULL) {
            pthread_mutex_unlock(&cpu.lock);
            return NULL;
        }
        cpu.head = j->next;
        if (cpu.head == NULL)
            cpu.tail = NULL;
        pthread_mutex_unlock(&cpu.lock);
        j->work(j->payload);
        finish_on_loop(j);
    }
}

/* Runs one batch: every op in savepoints of one transaction, then one commit.
 * Answers go out only after the commit (invariant 4). */
static void writer_run_batch(struct job *batch)
{
    bx_err e = writer_store->ops->batch_begin(writer_store);
    if (e == BX_OK) {
        for (struct job *j = batch; j != NULL; j = j->next)
            j->write(writer_store, j->payload);
        e = writer_store->ops->batch_commit(writer_store);
    }
    if (e != BX_OK)
        log_error("group commit failed (%s): every write of the batch is refused", bx_err_info(e)->code);
    else
        for (struct job *j = batch; j != NULL; j = j->next)
            if (j->committed != NULL)
                j->committed(j->payload); /* in commit order, before any answer */
    for (struct job *j = batch, *next; j != NULL; j = next) {
        next = j->next;
        j->batch_err = e;
        finish_on_loop(j);
    }
}

static void writer_sweep(void)
{
    int expired = 0;
    bx_err e = writer_store->ops->sweep_holds(writer_store, clock_now_ms(), &expired);
    if (e != BX_OK)
        log_warn("hold sweep failed: %s", bx_err_info(e)->code);
    else if (expired > 0)
        log_debug("hold sweep expired %d reservations", expired);
}

static void *writer_main(void *arg)
{
    (void)arg;
    int64_t last_sweep = clock_mono_ms();
    for (;;) {
        pthread_mutex_lock(&writer.lock);
        while (writer.head == NULL && !writer.stopping && clock_mono_ms() - last_sweep < WRITER_SWEEP_EVERY_MS) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 100 * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&writer.ready, &writer.lock, &until);
        }
        struct job *batch = writer.head, *last = batch;
        int n = batch ? 1 : 0;
        while (last != NULL && last->next != NULL && n < WRITER_BATCH_MAX) {
            last = last->next;
            n++;
        }
        if (last != NULL) {
            writer.head = last->next;
            if (writer.head == NULL)
                writer.tail = NULL;
            last->next = NULL;
        }
        int stop = writer.stopping && writer.head == NULL && batch == NULL;
        pthread_mutex_unlock(&writer.lock);
        if (batch != NULL)
            writer_run_batch(batch);
        if (clock_mono_ms() - last_sweep >= WRITER_SWEEP_EVERY_MS) {
            writer_sweep();
            last_sweep = clock_mono_ms();
        }
        if (stop)
            return NULL;
    }
}

int workers_start(int threads, struct store *store)
{
    cpu_threads = calloc((size_t)threads, sizeof *cpu_threads);
    if (cpu_threads == NULL) {
        if (store != NULL)
            store->ops->close(store);
        return -1;
    }
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&cpu_threads[i], NULL, cpu_main, NULL) != 0)
            return -1;
        cpu_nthreads = i + 1;
    }
    if (store != NULL && store->ops->batch_begin != NULL) {
        writer_store = store;
        if (pthread_create(&writer_thread, NULL, writer_main, NULL) != 0) {
            writer_store = NULL;
            store->ops->close(store);
            return -1;
        }
    } else if (store != NULL) {
        store->ops->close(store);
    }
    return 0;
}

int workers_have_writer(void)
{
    return writer_store != NULL;
}

static void lane_stop(struct lane *l)
{
    pthread_mutex_lock(&l->lock);
    l->stopping = 1;
    pthread_cond_broadcast(&l->ready);
    pthread_mutex_unlock(&l->lock);
}

void workers_stop(void)
{
    lane_stop(&cpu);
    for (int i = 0; i < cpu_nthreads; i++)
        pthread_join(cpu_threads[i], NULL);
    free(cpu_threads);
    cpu_threads = NULL;
    cpu_nthreads = 0;
    if (writer_store != NULL) {
        lane_stop(&writer);
        pthread_join(writer_thread, NULL);
        writer_store->ops->close(writer_store);
        writer_store = NULL;
    }
}

static void guard_dispose(void *p)
{
    struct job *j = *(struct job **)p;
    if (j != NULL)
        j->call = NULL;
}

/* Runs on the loop thread: finish every completed job of this loop. */
static void on_done(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    (void)receiver;
    while (!h2o_linklist_is_empty(messages)) {
        struct job *j = H2O_STRUCT_FROM_MEMBER(struct job, msg.link, messages->next);
        h2o_linklist_unlink(&j->msg.link);
        j->loop->pending_jobs--;
        struct call *c = j->call;
        if (c != NULL)
            *j->guard = NULL; /* the request pool no longer needs to tell us anything */
        if (j->write_done != NULL)
            j->write_done(c, j->batch_err, j->payload);
        else
            j->done(c, j->payload);
        free(j);
    }
}

void workers_attach_loop(struct loop_ctx *loop)
{
    h2o_multithread_register_receiver(loop->ctx.queue, &loop->worker_done, on_done);
}

static struct job *job_new(struct call *c, const void *payload, size_t size)
{
    struct job *j = calloc(1, sizeof *j + size);
    if (j == NULL)
        return NULL;
    memcpy(j->payload, payload, size);
    j->loop = c->loop;
    j->call = c;
    j->guard = h2o_mem_alloc_shared(&c->req->pool, sizeof *j->guard, guard_dispose);
    *j->guard = j;
    c->loop->pending_jobs++;
    return j;
}

int workers_submit(struct call *c, const void *payload, size_t size, worker_fn work, worker_done_fn done)
{
    struct job *j = job_new(c, payload, size);
    if (j == NULL)
        return -1;
    j->work = work;
    j->done = done;
    lane_push(&cpu, j);
    return 0;
}

int workers_write(struct call *c, const void *payload, size_t size, writer_fn op, writer_committed_fn committed,
                  writer_done_fn done)
{
    if (writer_store == NULL) {
        /* no group commit (e.g. PostgreSQL, which commits per connection): run here */
        void *copy = h2o_mem_alloc_pool(&c->req->pool, size);
        memcpy(copy, payload, size);
        op(c->loop->store, copy);
        if (committed != NULL)
            committed(copy);
        done(c, BX_OK, copy);
        return 0;
    }
    struct job *j = job_new(c, payload, size);
    if (j == NULL)
        return -1;
    j->write = op;
    j->committed = committed;
    j->write_done = done;
    lane_push(&writer, j);
    return 0;
}

static void durable_reached(void *arg, bx_err e)
{
    struct job *j = arg;
    j->batch_err = e;
    finish_on_loop(j);
}

int workers_when_durable(struct call *c, struct waitroom *w, const void *payload, size_t size,
                         writer_done_fn done)
{
    if (w->ops->when_durable == NULL) {
        done(c, BX_OK, (void *)payload);
        return 0;
    }
    struct job *j = job_new(c, payload, size);
    if (j == NULL)
        return -1;
    j->write_done = done;
    int r = w->ops->when_durable(w, durable_reached, j);
    if (r == 1)
        return 0;
    /* already durable, or no memory to wait: nothing will come back for j */
    *j->guard = NULL;
    c->loop->pending_jobs--;
    if (r == 0)
        done(c, BX_OK, j->payload);
    free(j);
    return r == 0 ? 0 : -1;
}
