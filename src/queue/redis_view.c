/* redis_view.c — see redis_view.h. Two locks, never held together: one over the
 * concerts' figures (replaced whole by each tick), one over the token cache.
 *
 * The cache is set-associative: a token hashes to a set of WAYS entries; a new
 * token takes a free entry, or the clean one polled longest ago. Entries whose
 * polls Redis has not seen yet ("dirty") are never evicted, and sit on a list the
 * write-back takes; when a set is all dirty the new token is simply not cached
 * (its polls go to Redis). */
#include "queue/redis_view.h"
#include "util/mix64.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define WAYS 8
#define NIL UINT32_MAX

struct entry {
    char token[BX_QUEUE_TOKEN_LEN]; /* not NUL-terminated */
    bool used;
    bool dirty;          /* polled here since Redis last saw it: on the dirty list */
    uint32_t prev, next; /* the dirty list */
    int64_t user_id, concert_id;
    int64_t p0, a0, d0; /* exact position and the concert's counters at the read */
    int64_t read_at;    /* when that read was made */
    int64_t polled_at;  /* the last poll here (exact or not) */
};

struct redis_view {
    struct redis_view_rules rules;
    pthread_mutex_t fig_mu;             /* guards figures, nfig, fig_at */
    struct redis_view_concert *figures; /* sorted by id */
    size_t nfig;
    int64_t fig_at;
    pthread_mutex_t tok_mu; /* guards everything below */
    struct entry *slots;
    size_t nsets;
    uint32_t dirty_head, dirty_tail;
    size_t ndirty;
};

struct redis_view *redis_view_new(const struct redis_view_rules *rules, size_t token_slots)
{
    struct redis_view *v = calloc(1, sizeof *v);
    if (v == NULL)
        return NULL;
    v->rules = *rules;
    v->nsets = 1;
    while (v->nsets * WAYS < token_slots)
        v->nsets *= 2;
    v->slots = calloc(v->nsets * WAYS, sizeof *v->slots);
    if (v->slots == NULL) {
        free(v);
        return NULL;
    }
    v->dirty_head = v->dirty_tail = NIL;
    pthread_mutex_init(&v->fig_mu, NULL);
    pthread_mutex_init(&v->tok_mu, NULL);
    return v;
}

void redis_view_free(struct redis_view *v)
{
    if (v == NULL)
        return;
    pthread_mutex_destroy(&v->fig_mu);
    pthread_mutex_destroy(&v->tok_mu);
    free(v->figures);
    free(v->slots);
    free(v);
}

/* ---- concerts ---- */

static int by_concert(const void *a, const void *b)
{
    int64_t x = ((const struct redis_view_concert *)a)->concert_id,
            y = ((const struct redis_view_concert *)b)->concert_id;
    return (x > y) - (x < y);
}

int redis_view_publish(struct redis_view *v, const struct redis_view_concert *c, size_t n, int64_t at)
{
    struct redis_view_concert *copy = NULL;
    if (n > 0) {
        copy = malloc(n * sizeof *copy);
        if (copy == NULL)
            return -1;
        memcpy(copy, c, n * sizeof *copy);
        qsort(copy, n, sizeof *copy, by_concert);
    }
    pthread_mutex_lock(&v->fig_mu);
    struct redis_view_concert *old = v->figures;
    v->figures = copy;
    v->nfig = n;
    v->fig_at = at;
    pthread_mutex_unlock(&v->fig_mu);
    free(old);
    return 0;
}

size_t redis_view_stats(struct redis_view *v, struct waitroom_concert_stats *out, size_t cap)
{
    pthread_mutex_lock(&v->fig_mu);
    size_t n = v->nfig < cap ? v->nfig : cap;
    for (size_t i = 0; i < n; i++) {
        const struct redis_view_concert *c = &v->figures[i];
        out[i] = (struct waitroom_concert_stats){.concert_id = c->concert_id,
                                                 .waiting = c->waiting,
                                                 .active = c->active,
                                                 .admitted_total = c->admitted_total,
                                                 .admit_rate_avg = c->rate,
                                                 .pace = c->pace};
    }
    pthread_mutex_unlock(&v->fig_mu);
    return n;
}

/* The concert's figures if they are fresh at now. */
static bool fresh_figures(struct redis_view *v, int64_t concert_id, int64_t now, struct redis_view_concert *out)
{
    bool found = false;
    pthread_mutex_lock(&v->fig_mu);
    if (now >= v->fig_at && now - v->fig_at <= v->rules.fresh_ms) {
        struct redis_view_concert key = {.concert_id = concert_id};
        const struct redis_view_concert *c =
            v->nfig ? bsearch(&key, v->figures, v->nfig, sizeof key, by_concert) : NULL;
        if (c != NULL) {
            *out = *c;
            found = true;
        }
    }
    pthread_mutex_unlock(&v->fig_mu);
    return found;
}

bool redis_view_listed(struct redis_view *v, int64_t concert_id, int64_t now)
{
    struct redis_view_concert c;
    return fresh_figures(v, concert_id, now, &c);
}

/* ---- tokens (under tok_mu) ---- */

/* The first entry of the token's set. Tokens end in random characters: 8 of them
 * make the hash. */
static struct entry *set_of(struct redis_view *v, const char *token)
{
    uint64_t x;
    memcpy(&x, token + BX_QUEUE_TOKEN_LEN - sizeof x, sizeof x);
    return &v->slots[(mix64(x) & (v->nsets - 1)) * WAYS];
}

static struct entry *find(struct redis_view *v, const char *token)
{
    struct entry *s = set_of(v, token);
    for (int i = 0; i < WAYS; i++)
        if (s[i].used && memcmp(s[i].token, token, BX_QUEUE_TOKEN_LEN) == 0)
            return &s[i];
    return NULL;
}

static uint32_t index_of(struct redis_view *v, const struct entry *e)
{
    return (uint32_t)(e - v->slots);
}

static void dirty_mark(struct redis_view *v, struct entry *e)
{
    if (e->dirty)
        return;
    e->dirty = true;
    e->prev = v->dirty_tail;
    e->next = NIL;
    if (v->dirty_tail != NIL)
        v->slots[v->dirty_tail].next = index_of(v, e);
    else
        v->dirty_head = index_of(v, e);
    v->dirty_tail = index_of(v, e);
    v->ndirty++;
}

static void dirty_clear(struct redis_view *v, struct entry *e)
{
    if (!e->dirty)
        return;
    e->dirty = false;
    if (e->prev != NIL)
        v->slots[e->prev].next = e->next;
    else
        v->dirty_head = e->next;
    if (e->next != NIL)
        v->slots[e->next].prev = e->prev;
    else
        v->dirty_tail = e->prev;
    v->ndirty--;
}

/* The token's entry, or a free one, or the clean one polled longest ago; NULL
 * when every entry of its set waits for the write-back. */
static struct entry *find_or_take(struct redis_view *v, const char *token)
{
    struct entry *s = set_of(v, token), *free_entry = NULL, *oldest = NULL;
    for (int i = 0; i < WAYS; i++) {
        if (!s[i].used) {
            free_entry = free_entry ? free_entry : &s[i];
        } else if (memcmp(s[i].token, token, BX_QUEUE_TOKEN_LEN) == 0) {
            return &s[i];
        } else if (!s[i].dirty && (oldest == NULL || s[i].polled_at < oldest->polled_at)) {
            oldest = &s[i];
        }
    }
    return free_entry ? free_entry : oldest;
}

void redis_view_token_read(struct redis_view *v, const char *token, int64_t user_id, int64_t concert_id,
                           int64_t position, int64_t admitted_total, int64_t departed_total, int64_t now)
{
    pthread_mutex_lock(&v->tok_mu);
    struct entry *e = find_or_take(v, token);
    if (e != NULL) {
        dirty_clear(v, e); /* the read touched the token in Redis */
        memcpy(e->token, token, BX_QUEUE_TOKEN_LEN);
        e->used = true;
        e->user_id = user_id;
        e->concert_id = concert_id;
        e->p0 = position;
        e->a0 = admitted_total;
        e->d0 = departed_total;
        e->read_at = e->polled_at = now;
    }
    pthread_mutex_unlock(&v->tok_mu);
}

void redis_view_token_forget(struct redis_view *v, const char *token)
{
    pthread_mutex_lock(&v->tok_mu);
    struct entry *e = find(v, token);
    if (e != NULL) {
        dirty_clear(v, e);
        e->used = false;
    }
    pthread_mutex_unlock(&v->tok_mu);
}

/* The estimated position when the rules allow answering with it, else 0. */
static int64_t estimate(const struct redis_view_rules *r, const struct entry *e, const struct redis_view_concert *c,
                        int64_t now)
{
    if (now < e->read_at || now - e->read_at > r->read_max_ms || now - e->polled_at >= r->silent_ms)
        return 0;
    int64_t admitted = c->admitted_total > e->a0 ? c->admitted_total - e->a0 : 0;
    int64_t departed = c->departed_total > e->d0 ? c->departed_total - e->d0 : 0;
    int64_t p = e->p0 - admitted;
    if (p <= r->exact_depth || p <= 0 || departed > p / r->drift_div)
        return 0;
    return p;
}

bool redis_view_poll(struct redis_view *v, const char *token, int64_t user_id, int64_t concert_id, int64_t now,
                     int64_t *position, struct queue_pace *pace)
{
    struct redis_view_concert c;
    if (!fresh_figures(v, concert_id, now, &c))
        return false;
    pthread_mutex_lock(&v->tok_mu);
    struct entry *e = find(v, token);
    int64_t p = e && e->user_id == user_id && e->concert_id == concert_id ? estimate(&v->rules, e, &c, now) : 0;
    if (p > 0) {
        e->polled_at = now;
        dirty_mark(v, e);
    }
    pthread_mutex_unlock(&v->tok_mu);
    *position = p;
    *pace = c.pace;
    return p > 0;
}

static int by_polled_concert(const void *a, const void *b)
{
    int64_t x = ((const struct redis_view_polled *)a)->concert_id,
            y = ((const struct redis_view_polled *)b)->concert_id;
    return (x > y) - (x < y);
}

long redis_view_take_polled(struct redis_view *v, struct redis_view_polled **out)
{
    *out = NULL;
    pthread_mutex_lock(&v->tok_mu);
    size_t n = v->ndirty;
    struct redis_view_polled *p = n ? malloc(n * sizeof *p) : NULL;
    if (n > 0 && p == NULL) {
        pthread_mutex_unlock(&v->tok_mu);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct entry *e = &v->slots[v->dirty_head];
        memcpy(p[i].token, e->token, BX_QUEUE_TOKEN_LEN);
        p[i].token[BX_QUEUE_TOKEN_LEN] = '\0';
        p[i].concert_id = e->concert_id;
        p[i].polled_at = e->polled_at;
        dirty_clear(v, e);
    }
    pthread_mutex_unlock(&v->tok_mu);
    if (n > 0)
        qsort(p, n, sizeof *p, by_polled_concert);
    *out = p;
    return (long)n;
}
