/* workers.c — see workers.h. Jobs travel on a mutex+condvar FIFO to the pool and
 * come back through h2o's multithread queue of the request's loop. A guard
 * object in the request pool tells the job when the request died first. */
#include "http/workers.h"
#include "util/log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct job {
    h2o_multithread_message_t msg; /* first: the receiver hands back this */
    struct job *next;
    struct loop_ctx *loop;
    struct call *call;  /* NULL once the request is gone */
    struct job **guard; /* slot in the request pool pointing back here */
    worker_fn work;
    worker_done_fn done;
    size_t size;
    _Alignas(16) unsigned char payload[];
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t ready;
    struct job *head, *tail;
    int stopping;
    int nthreads;
    pthread_t *threads;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .ready = PTHREAD_COND_INITIALIZER};

static void *worker_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&pool.lock);
        while (pool.head == NULL && !pool.stopping)
            pthread_cond_wait(&pool.ready, &pool.lock);
        if (pool.head == NULL) {
            pthread_mutex_unlock(&pool.lock);
            return NULL;
        }
        struct job *j = pool.head;
        pool.head = j->next;
        if (pool.head == NULL)
            pool.tail = NULL;
        pthread_mutex_unlock(&pool.lock);
        j->work(j->payload);
        h2o_multithread_send_message(&j->loop->worker_done, &j->msg);
    }
}

int workers_start(int threads)
{
    pool.nthreads = threads;
    pool.threads = calloc((size_t)threads, sizeof *pool.threads);
    if (pool.threads == NULL)
        return -1;
    for (int i = 0; i < threads; i++)
        if (pthread_create(&pool.threads[i], NULL, worker_main, NULL) != 0) {
            pool.nthreads = i;
            return -1;
        }
    return 0;
}

void workers_stop(void)
{
    pthread_mutex_lock(&pool.lock);
    pool.stopping = 1;
    pthread_cond_broadcast(&pool.ready);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 0; i < pool.nthreads; i++)
        pthread_join(pool.threads[i], NULL);
    free(pool.threads);
    pool.threads = NULL;
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
        j->done(c, j->payload);
        free(j);
    }
}

void workers_attach_loop(struct loop_ctx *loop)
{
    h2o_multithread_register_receiver(loop->ctx.queue, &loop->worker_done, on_done);
}

int workers_submit(struct call *c, const void *payload, size_t size, worker_fn work, worker_done_fn done)
{
    struct job *j = calloc(1, sizeof *j + size);
    if (j == NULL)
        return -1;
    memcpy(j->payload, payload, size);
    j->size = size;
    j->loop = c->loop;
    j->call = c;
    j->work = work;
    j->done = done;
    j->guard = h2o_mem_alloc_shared(&c->req->pool, sizeof *j->guard, guard_dispose);
    *j->guard = j;
    c->loop->pending_jobs++;
    pthread_mutex_lock(&pool.lock);
    if (pool.tail != NULL)
        pool.tail->next = j;
    else
        pool.head = j;
    pool.tail = j;
    pthread_cond_signal(&pool.ready);
    pthread_mutex_unlock(&pool.lock);
    return 0;
}
