/* workers.c — see workers.h. Jobs travel on a mutex+condvar FIFO to the pool and
 * come back through h2o's multithread queue of the request's loop. A guard
 * object in the request pool tells the job when the request died first. */
#include "http/workers.h"

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
    _Alignas(16) unsigned char payload[];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready = PTHREAD_COND_INITIALIZER;
static struct job *head, *tail;
static int stopping;
static pthread_t *pool;
static int npool;

static void *cpu_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&lock);
        while (head == NULL && !stopping)
            pthread_cond_wait(&ready, &lock);
        struct job *j = head;
        if (j == NULL) {
            pthread_mutex_unlock(&lock);
            return NULL;
        }
        head = j->next;
        if (head == NULL)
            tail = NULL;
        pthread_mutex_unlock(&lock);
        j->work(j->payload);
        h2o_multithread_send_message(&j->loop->worker_done, &j->msg);
    }
}

int workers_start(int threads)
{
    pool = calloc((size_t)threads, sizeof *pool);
    if (pool == NULL)
        return -1;
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&pool[i], NULL, cpu_main, NULL) != 0)
            return -1;
        npool = i + 1;
    }
    return 0;
}

void workers_stop(void)
{
    pthread_mutex_lock(&lock);
    stopping = 1;
    pthread_cond_broadcast(&ready);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < npool; i++)
        pthread_join(pool[i], NULL);
    free(pool);
    pool = NULL;
    npool = 0;
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
    j->loop = c->loop;
    j->call = c;
    j->guard = h2o_mem_alloc_shared(&c->req->pool, sizeof *j->guard, guard_dispose);
    *j->guard = j;
    j->work = work;
    j->done = done;
    c->loop->pending_jobs++;
    pthread_mutex_lock(&lock);
    if (tail != NULL)
        tail->next = j;
    else
        head = j;
    tail = j;
    pthread_cond_signal(&ready);
    pthread_mutex_unlock(&lock);
    return 0;
}
