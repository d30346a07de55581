/* backoff.c — see backoff.h. 64 stripes × 2048 slots of 40 bytes (5 MiB); a key
 * probes 8 slots of its stripe and, when none is its own or free, takes over the
 * least recently used one. */
#include "util/backoff.h"
#include "util/mix64.h"

#include <pthread.h>
#include <stdlib.h>

#define STRIPES 64
#define SLOTS 2048
#define PROBES 8

struct entry {
    uint64_t key;    /* 0 = free */
    double count;     /* attempts, leaking away since last_ms */
    int64_t next_ms;  /* the next attempt past the free ones may go at this time */
    int64_t last_ms;  /* last counted attempt, or the mark */
    int64_t inflight; /* backoff_enter without backoff_leave yet */
};

struct stripe {
    pthread_mutex_t lock;
    struct entry slots[SLOTS];
};

struct backoff {
    int64_t free_tries, first_delay_ms, max_delay_ms, forget_ms;
    double leak_ms; /* one attempt leaks away in this time */
    struct stripe stripes[STRIPES];
};

struct backoff *backoff_new(int free_tries, int64_t first_delay_ms, int64_t max_delay_ms, int64_t forget_ms)
{
    struct backoff *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    b->free_tries = free_tries < 0 ? 0 : free_tries;
    b->first_delay_ms = first_delay_ms < 1 ? 1 : first_delay_ms;
    b->max_delay_ms = max_delay_ms < b->first_delay_ms ? b->first_delay_ms : max_delay_ms;
    b->forget_ms = forget_ms;
    b->leak_ms = (double)forget_ms / (double)(b->free_tries > 0 ? b->free_tries : 1);
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&b->stripes[i].lock, NULL);
    return b;
}

void backoff_free(struct backoff *b)
{
    if (b == NULL)
        return;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&b->stripes[i].lock);
    free(b);
}

/* key's stripe, locked, and its entry there (NULL when absent and !create; a
 * created entry is zeroed). */
static struct entry *lookup(struct backoff *b, uint64_t key, int create, struct stripe **locked)
{
    if (key == 0)
        key = 1; /* 0 marks a free slot */
    uint64_t h = mix64(key);
    struct stripe *st = &b->stripes[h % STRIPES];
    size_t base = (size_t)(h >> 8) % SLOTS;
    pthread_mutex_lock(&st->lock);
    *locked = st;
    struct entry *victim = NULL;
    for (size_t i = 0; i < PROBES; i++) {
        struct entry *e = &st->slots[(base + i) % SLOTS];
        if (e->key == key)
            return e;
        if (victim == NULL || e->key == 0 || (victim->key != 0 && e->last_ms < victim->last_ms))
            victim = e;
    }
    if (!create)
        return NULL;
    *victim = (struct entry){.key = key};
    return victim;
}

/* Leaks e's count up to now; returns the attempts not yet leaked away. */
static int64_t leak(const struct backoff *b, struct entry *e, int64_t now_ms)
{
    if (e->count > 0 && now_ms > e->last_ms) {
        e->count -= (double)(now_ms - e->last_ms) / b->leak_ms;
        if (e->count < 0)
            e->count = 0;
        e->last_ms = now_ms;
    }
    return (int64_t)(e->count + 0.5);
}

/* Counts one attempt at now_ms and sets the time the next may go. */
static void count_one(const struct backoff *b, struct entry *e, int64_t now_ms)
{
    e->count += 1;
    e->last_ms = now_ms;
    int64_t recent = (int64_t)(e->count + 0.5);
    if (recent >= b->free_tries) {
        int64_t past = recent - b->free_tries, delay = b->first_delay_ms;
        while (past-- > 0 && delay < b->max_delay_ms)
            delay *= 2;
        e->next_ms = now_ms + (delay < b->max_delay_ms ? delay : b->max_delay_ms);
    }
}

int64_t backoff_take(struct backoff *b, uint64_t key, int64_t now_ms)
{
    struct stripe *st;
    struct entry *e = lookup(b, key, 1, &st);
    int64_t wait = 0;
    if (leak(b, e, now_ms) >= b->free_tries && now_ms < e->next_ms)
        wait = e->next_ms - now_ms;
    else
        count_one(b, e, now_ms);
    pthread_mutex_unlock(&st->lock);
    return wait;
}

int64_t backoff_enter(struct backoff *b, uint64_t key, int64_t now_ms)
{
    struct stripe *st;
    struct entry *e = lookup(b, key, 1, &st);
    int64_t wait = 0;
    if (leak(b, e, now_ms) >= b->free_tries) {
        if (now_ms < e->next_ms)
            wait = e->next_ms - now_ms;
        else if (e->inflight > 0)
            wait = b->first_delay_ms; /* one at a time: ask again when that one is over */
    }
    if (wait == 0) {
        e->inflight++;
        if (e->last_ms == 0)
            e->last_ms = now_ms; /* recency for the eviction */
    }
    pthread_mutex_unlock(&st->lock);
    return wait;
}

void backoff_leave(struct backoff *b, uint64_t key, int64_t now_ms, bool failed)
{
    struct stripe *st;
    struct entry *e = lookup(b, key, failed, &st);
    if (e != NULL) {
        if (e->inflight > 0)
            e->inflight--;
        if (failed) {
            leak(b, e, now_ms);
            count_one(b, e, now_ms);
        }
    }
    pthread_mutex_unlock(&st->lock);
}

void backoff_give_back(struct backoff *b, uint64_t key)
{
    struct stripe *st;
    struct entry *e = lookup(b, key, 0, &st);
    if (e != NULL && e->count > 0) {
        e->count = e->count >= 1 ? e->count - 1 : 0;
        if ((int64_t)(e->count + 0.5) < b->free_tries)
            e->next_ms = 0;
    }
    pthread_mutex_unlock(&st->lock);
}

void backoff_clear(struct backoff *b, uint64_t key)
{
    struct stripe *st;
    struct entry *e = lookup(b, key, 0, &st);
    if (e != NULL) {
        e->count = 0;
        e->next_ms = 0;
    }
    pthread_mutex_unlock(&st->lock);
}

void backoff_mark(struct backoff *b, uint64_t key, int64_t now_ms)
{
    struct stripe *st;
    struct entry *e = lookup(b, key, 1, &st);
    e->last_ms = now_ms;
    pthread_mutex_unlock(&st->lock);
}

bool backoff_marked(struct backoff *b, uint64_t key, int64_t now_ms)
{
    struct stripe *st;
    struct entry *e = lookup(b, key, 0, &st);
    bool marked = e != NULL && e->last_ms > 0 && now_ms - e->last_ms < b->forget_ms;
    pthread_mutex_unlock(&st->lock);
    return marked;
}
