/* workers.c — see workers.h. Jobs wait in per-client FIFOs ("flows") under one
 * mutex; workers take them round robin across flows, and come back through h2o's
 * multithread queue of the request's loop. A guard object in the request pool
 * tells the job when the request died first. Flows live in a fixed array: at most
 * WORKERS_QUEUE_CAP jobs wait and nthreads run, so at most that many clients have
 * a flow. */
#include "http/workers.h"
#include "app.h"
#include "util/clock.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_AFTER_MAX 60

struct job {
    h2o_multithread_message_t msg; /* first: the receiver hands back this */
    struct job *next;
    struct loop_ctx *loop;
    struct call *call;  /* NULL once the request is gone */
    struct job **guard; /* slot in the request pool pointing back here */
    worker_fn work;
    worker_done_fn done;
    uint64_t client;
    size_t size;
    int priority;    /* waits in the priority lane */
    int dropped;     /* pushed out of the queue: never ran */
    int retry_after; /* seconds, for the 503 of a dropped job */
    _Alignas(16) unsigned char payload[];
};

/* One client's jobs: waiting (FIFO), waiting in the priority lane, and running.
 * Free when all are 0. */
struct flow {
    uint64_t client;
    struct job *head, *tail;
    int queued, prio, running;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready = PTHREAD_COND_INITIALIZER;
static struct flow *flows;
static int nflows;                                     /* WORKERS_QUEUE_CAP + nthreads */
static int queued_total, running_total, share_cap, rr; /* queued_total: both lanes */
static struct job *prio_head, *prio_tail;              /* the priority lane, FIFO */
static int prio_queued;
static double job_ms_avg;  /* moving average of a job's run time (a hash timed at start first) */
static double wait_max_ms; /* --hash-wait */
static int stopping;
static pthread_t *threads;
static int nthreads;

static struct flow *flow_find(uint64_t client)
{
    for (int i = 0; i < nflows; i++)
        if ((flows[i].queued > 0 || flows[i].prio > 0 || flows[i].running > 0) && flows[i].client == client)
            return &flows[i];
    return NULL;
}

/* A free flow for client; there is always one (see the top of the file). */
static struct flow *flow_take(uint64_t client)
{
    for (int i = 0; i < nflows; i++)
        if (flows[i].queued == 0 && flows[i].prio == 0 && flows[i].running == 0) {
            flows[i] = (struct flow){.client = client};
            return &flows[i];
        }
    return NULL;
}

/* Milliseconds until a job queued now would run (roughly). Under lock. */
static double queue_wait_ms(int queued)
{
    return (double)queued * job_ms_avg / (double)(nthreads > 0 ? nthreads : 1);
}

/* No room for one more job. Under lock. */
static int queue_full(void)
{
    return queued_total >= WORKERS_QUEUE_CAP || queue_wait_ms(queued_total + 1) > wait_max_ms;
}

/* Seconds until the queue should have room again. Under lock. */
static int retry_after_locked(void)
{
    int s = (int)(queue_wait_ms(queued_total + 1) / 1000.0) + 1;
    return s > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : s;
}

/* The next job to run: the priority lane first, then round robin over flows with
 * waiting jobs and fewer than share_cap running (any, when stopping). Under lock. */
static struct job *job_pick(void)
{
    if (prio_head != NULL) {
        struct job *j = prio_head;
        prio_head = j->next;
        if (prio_head == NULL)
            prio_tail = NULL;
        j->next = NULL;
        struct flow *f = flow_find(j->client);
        if (f != NULL) {
            f->prio--;
            f->running++;
        }
        prio_queued--;
        queued_total--;
        running_total++;
        return j;
    }
    for (int k = 0; k < nflows; k++) {
        int i = (rr + k) % nflows;
        struct flow *f = &flows[i];
        if (f->queued == 0 || (f->running >= share_cap && !stopping))
            continue;
        struct job *j = f->head;
        f->head = j->next;
        if (f->head == NULL)
            f->tail = NULL;
        j->next = NULL;
        f->queued--;
        f->running++;
        queued_total--;
        running_total++;
        rr = (i + 1) % nflows;
        return j;
    }
    return NULL;
}

static void *cpu_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&lock);
        struct job *j;
        while ((j = job_pick()) == NULL) {
            if (stopping && queued_total == 0) {
                pthread_mutex_unlock(&lock);
                return NULL;
            }
            pthread_cond_wait(&ready, &lock);
        }
        pthread_mutex_unlock(&lock);
        int64_t t0 = clock_mono_ms();
        j->work(j->payload);
        double ms = (double)(clock_mono_ms() - t0);
        pthread_mutex_lock(&lock);
        struct flow *f = flow_find(j->client);
        if (f != NULL)
            f->running--;
        running_total--;
        job_ms_avg = job_ms_avg * 0.9 + (ms > 0.01 ? ms : 0.01) * 0.1;
        if (queued_total > 0)
            pthread_cond_broadcast(&ready); /* a flow at its share may run again */
        pthread_mutex_unlock(&lock);
        h2o_multithread_send_message(&j->loop->worker_done, &j->msg);
    }
}

int workers_start(int n)
{
    char hash[BX_PWHASH_MAX + 1];
    int64_t t0 = clock_mono_ms();
    if (password_hash(&app.pwcost, "boxoffice-calibration", 21, hash) != 0)
        return -1;
    job_ms_avg = (double)(clock_mono_ms() - t0);
    if (job_ms_avg < 0.01)
        job_ms_avg = 0.01;
    wait_max_ms = (double)app.cfg.hash_wait;
    share_cap = n >= 2 ? n - 1 : 1;
    nflows = WORKERS_QUEUE_CAP + n;
    flows = calloc((size_t)nflows, sizeof *flows);
    threads = calloc((size_t)n, sizeof *threads);
    if (flows == NULL || threads == NULL)
        return -1;
    stopping = 0;
    for (int i = 0; i < n; i++) {
        if (pthread_create(&threads[i], NULL, cpu_main, NULL) != 0)
            return -1;
        nthreads = i + 1;
    }
    return 0;
}

void workers_stop(void)
{
    pthread_mutex_lock(&lock);
    stopping = 1;
    pthread_cond_broadcast(&ready);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    free(flows);
    threads = NULL;
    flows = NULL;
    nthreads = nflows = queued_total = running_total = 0;
    prio_head = prio_tail = NULL;
    prio_queued = 0;
}

static void guard_dispose(void *p)
{
    struct job *j = *(struct job **)p;
    if (j != NULL)
        j->call = NULL;
}

/* 503 UNAVAILABLE with Retry-After: the pool is full. */
static void refuse(struct call *c, int retry_after)
{
    char v[16];
    int n = snprintf(v, sizeof v, "%d", retry_after);
    h2o_add_header(&c->req->pool, &c->req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL,
                   h2o_strdup(&c->req->pool, v, (size_t)n).base, (size_t)n);
    call_reply_error(c, BX_ERR_UNAVAILABLE, NULL,
                     "too many sign-ups and log-ins are waiting for the server; retry after the Retry-After seconds");
}

/* Runs on the loop thread: finish every completed (or pushed out) job of this loop. */
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
        if (j->dropped) {
            if (c != NULL)
                refuse(c, j->retry_after);
            j->done(NULL, j->payload, BX_ERR_UNAVAILABLE);
        } else {
            j->done(c, j->payload, BX_OK);
        }
        explicit_bzero(j->payload, j->size); /* passwords */
        free(j);
    }
}

void workers_attach_loop(struct loop_ctx *loop)
{
    h2o_multithread_register_receiver(loop->ctx.queue, &loop->worker_done, on_done);
}

/* Takes the last waiting job of f out of the queue. Under lock. */
static struct job *flow_pop_tail(struct flow *f)
{
    struct job *j = f->head, *prev = NULL;
    while (j->next != NULL)
        prev = j, j = j->next;
    if (prev != NULL)
        prev->next = NULL;
    else
        f->head = NULL;
    f->tail = prev;
    f->queued--;
    queued_total--;
    return j;
}

int workers_submit(struct call *c, uint64_t client, bool priority, const void *payload, size_t size, worker_fn work,
                   worker_done_fn done)
{
    struct job *j = calloc(1, sizeof *j + size);
    if (j == NULL) {
        refuse(c, 1);
        return -1;
    }
    struct job *pushed_out = NULL;
    pthread_mutex_lock(&lock);
    if (flows == NULL) { /* not started, or stopped */
        pthread_mutex_unlock(&lock);
        free(j);
        refuse(c, 1);
        return -1;
    }
    struct flow *f = flow_find(client);
    /* a thread is idle and this client may use it: the job runs at once */
    int starts_now = running_total < nthreads && (priority || f == NULL || f->running < share_cap);
    /* the priority lane: --hash-wait of work, but room for one job per thread whatever
     * a hash costs (a returning user is not turned away because hashes are slow) */
    if (!starts_now && priority &&
        (prio_queued >= WORKERS_QUEUE_CAP ||
         (prio_queued >= nthreads && queue_wait_ms(prio_queued + 1) > wait_max_ms))) {
        int retry = (int)(queue_wait_ms(prio_queued + 1) / 1000.0) + 1;
        pthread_mutex_unlock(&lock);
        free(j);
        refuse(c, retry > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : retry);
        return -1;
    }
    if (!starts_now && !priority && queue_full()) {
        /* full: the client with the most jobs (waiting and running) gives up its
         * last waiting place, if it has at least two more than this client would */
        struct flow *heavy = NULL;
        for (int i = 0; i < nflows; i++)
            if (flows[i].queued > 0 &&
                (heavy == NULL || flows[i].queued + flows[i].running > heavy->queued + heavy->running))
                heavy = &flows[i];
        int mine = f != NULL ? f->queued + f->prio + f->running : 0;
        if (heavy == NULL || heavy->queued + heavy->running < mine + 2) {
            int retry = retry_after_locked();
            pthread_mutex_unlock(&lock);
            free(j);
            refuse(c, retry);
            return -1;
        }
        pushed_out = flow_pop_tail(heavy);
        pushed_out->dropped = 1;
        pushed_out->retry_after = retry_after_locked();
    }
    if (f == NULL && (f = flow_take(client)) == NULL) { /* cannot happen: see the top of the file */
        pthread_mutex_unlock(&lock);
        free(j);
        refuse(c, 1);
        if (pushed_out != NULL)
            h2o_multithread_send_message(&pushed_out->loop->worker_done, &pushed_out->msg);
        return -1;
    }
    memcpy(j->payload, payload, size);
    j->size = size;
    j->client = client;
    j->loop = c->loop;
    j->call = c;
    j->guard = h2o_mem_alloc_shared(&c->req->pool, sizeof *j->guard, guard_dispose);
    *j->guard = j;
    j->work = work;
    j->done = done;
    j->priority = priority;
    c->loop->pending_jobs++;
    if (priority) {
        if (prio_tail != NULL)
            prio_tail->next = j;
        else
            prio_head = j;
        prio_tail = j;
        f->prio++;
        prio_queued++;
    } else {
        if (f->tail != NULL)
            f->tail->next = j;
        else
            f->head = j;
        f->tail = j;
        f->queued++;
    }
    queued_total++;
    pthread_cond_broadcast(&ready);
    pthread_mutex_unlock(&lock);
    if (pushed_out != NULL)
        h2o_multithread_send_message(&pushed_out->loop->worker_done, &pushed_out->msg);
    return 0;
}
