/* seat_board.c — see seat_board.h. Schedules by id in an open-addressing table
 * that only grows; forgetting empties it. Bounded: past MAX_SEATS seats in all it
 * forgets everything rather than grow further. */
#include "store/seat_board.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEATS (4u << 20)

struct board_entry {
    int64_t schedule_id; /* 0: empty slot */
    int64_t concert_id;
    uint64_t version;
    struct seat *seats; /* ordered by seat_no */
    size_t n;
    size_t sold, held; /* seats SOLD, seats HELD (their hold may have ended since) */
    int64_t first_end; /* no hold ends before this (INT64_MAX: none held) */
};

struct seat_board {
    pthread_mutex_t mu;
    struct board_entry *slots;
    size_t nslots, used, seats_held;
    uint64_t epoch, last_version;
};

struct seat_board *seat_board_new(void)
{
    struct seat_board *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    pthread_mutex_init(&b->mu, NULL);
    b->epoch = 1;
    return b;
}

void seat_board_free(struct seat_board *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->nslots; i++)
        free(b->slots[i].seats);
    free(b->slots);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

static size_t home(const struct seat_board *b, int64_t schedule_id)
{
    return (size_t)(((uint64_t)schedule_id * 0x9E3779B97F4A7C15ull) >> 32) & (b->nslots - 1);
}

static struct board_entry *find(const struct seat_board *b, int64_t schedule_id)
{
    if (b->nslots == 0)
        return NULL;
    for (size_t i = home(b, schedule_id);; i = (i + 1) & (b->nslots - 1)) {
        if (b->slots[i].schedule_id == schedule_id)
            return &b->slots[i];
        if (b->slots[i].schedule_id == 0)
            return NULL;
    }
}

static void forget_locked(struct seat_board *b)
{
    for (size_t i = 0; i < b->nslots; i++)
        free(b->slots[i].seats);
    if (b->nslots)
        memset(b->slots, 0, b->nslots * sizeof *b->slots);
    b->used = 0;
    b->seats_held = 0;
    b->epoch++;
}

/* The empty slot where schedule_id (not present) goes, in a table with room. */
static struct board_entry *empty_slot(struct seat_board *b, int64_t schedule_id)
{
    size_t j = home(b, schedule_id);
    while (b->slots[j].schedule_id != 0)
        j = (j + 1) & (b->nslots - 1);
    return &b->slots[j];
}

/* A free slot for schedule_id (not present), growing the table at half load. */
static struct board_entry *slot_for(struct seat_board *b, int64_t schedule_id)
{
    if (2 * (b->used + 1) > b->nslots) {
        size_t grown = b->nslots ? 2 * b->nslots : 64;
        struct board_entry *fresh = calloc(grown, sizeof *fresh);
        if (fresh == NULL)
            return NULL;
        struct board_entry *old = b->slots;
        size_t old_n = b->nslots;
        b->slots = fresh;
        b->nslots = grown;
        for (size_t i = 0; i < old_n; i++)
            if (old[i].schedule_id != 0)
                *empty_slot(b, old[i].schedule_id) = old[i];
        free(old);
    }
    return empty_slot(b, schedule_id);
}

/* Counts of a fresh entry. */
static void count_seats(struct board_entry *x)
{
    x->sold = x->held = 0;
    x->first_end = INT64_MAX;
    for (size_t i = 0; i < x->n; i++) {
        x->sold += x->seats[i].status == SEAT_SOLD;
        if (x->seats[i].status == SEAT_HELD) {
            x->held++;
            if (x->seats[i].hold_ends_at < x->first_end)
                x->first_end = x->seats[i].hold_ends_at;
        }
    }
}

/* Holds ended by `now` become AVAILABLE: what every reader shows for them anyway,
 * so the version stays. */
static void drop_ended_holds(struct board_entry *x, int64_t now)
{
    if (now < x->first_end)
        return;
    for (size_t i = 0; i < x->n; i++)
        if (x->seats[i].status == SEAT_HELD && x->seats[i].hold_ends_at <= now) {
            x->seats[i].status = SEAT_AVAILABLE;
            x->seats[i].available = true;
            x->seats[i].hold_ends_at = 0;
        }
    count_seats(x);
}

int seat_board_get(struct seat_board *b, int64_t schedule_id, uint64_t *version, int64_t *concert_id, int want_seats, struct seat **buf,
                   size_t *cap, size_t *n)
{
    int found = 0;
    pthread_mutex_lock(&b->mu);
    const struct board_entry *x = find(b, schedule_id);
    if (x != NULL && want_seats && *cap < x->n) {
        struct seat *grown = realloc(*buf, x->n * sizeof *grown);
        if (grown == NULL)
            x = NULL; /* answered from the store instead */
        else {
            *buf = grown;
            *cap = x->n;
        }
    }
    if (x != NULL) {
        *version = x->version;
        *concert_id = x->concert_id;
        if (want_seats) {
            if (x->n)
                memcpy(*buf, x->seats, x->n * sizeof **buf);
            *n = x->n;
        }
        found = 1;
    }
    pthread_mutex_unlock(&b->mu);
    return found;
}

int seat_board_info(struct seat_board *b, int64_t schedule_id, int64_t *concert_id, int32_t *seat_count)
{
    pthread_mutex_lock(&b->mu);
    const struct board_entry *x = find(b, schedule_id);
    if (x != NULL) {
        *concert_id = x->concert_id;
        *seat_count = (int32_t)x->n;
    }
    pthread_mutex_unlock(&b->mu);
    return x != NULL;
}

int seat_board_available(struct seat_board *b, int64_t schedule_id, int64_t now, int32_t *available)
{
    pthread_mutex_lock(&b->mu);
    struct board_entry *x = find(b, schedule_id);
    if (x != NULL) {
        drop_ended_holds(x, now);
        *available = (int32_t)(x->n - x->sold - x->held);
    }
    pthread_mutex_unlock(&b->mu);
    return x != NULL;
}

uint64_t seat_board_epoch(struct seat_board *b)
{
    pthread_mutex_lock(&b->mu);
    uint64_t e = b->epoch;
    pthread_mutex_unlock(&b->mu);
    return e;
}

void seat_board_put(struct seat_board *b, uint64_t read_epoch, int64_t schedule_id, int64_t concert_id, const struct seat *seats, size_t n)
{
    struct seat *copy = n ? malloc(n * sizeof *copy) : NULL;
    if (n && copy == NULL)
        return;
    if (n)
        memcpy(copy, seats, n * sizeof *copy);
    pthread_mutex_lock(&b->mu);
    if (read_epoch == b->epoch && find(b, schedule_id) == NULL) {
        if (b->seats_held + n > MAX_SEATS)
            forget_locked(b); /* and keep this one: it is the one in use */
        struct board_entry *x = slot_for(b, schedule_id);
        if (x != NULL) {
            *x = (struct board_entry){.schedule_id = schedule_id, .concert_id = concert_id,
                                      .version = ++b->last_version, .seats = copy, .n = n};
            count_seats(x);
            b->used++;
            b->seats_held += n;
            copy = NULL;
        }
    }
    pthread_mutex_unlock(&b->mu);
    free(copy);
}

static struct seat *seat_of(struct board_entry *x, int32_t seat_no)
{
    if (seat_no >= 1 && (size_t)seat_no <= x->n && x->seats[seat_no - 1].seat_no == seat_no)
        return &x->seats[seat_no - 1];
    size_t lo = 0, hi = x->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (x->seats[mid].seat_no < seat_no)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < x->n && x->seats[lo].seat_no == seat_no ? &x->seats[lo] : NULL;
}

void seat_board_set(struct seat_board *b, int64_t schedule_id, int32_t seat_no, enum seat_status status, int64_t hold_ends_at)
{
    pthread_mutex_lock(&b->mu);
    b->epoch++;
    struct board_entry *x = find(b, schedule_id);
    struct seat *s = x != NULL ? seat_of(x, seat_no) : NULL;
    if (s != NULL) {
        x->sold -= s->status == SEAT_SOLD;
        x->held -= s->status == SEAT_HELD;
        s->status = status;
        s->available = status == SEAT_AVAILABLE;
        s->hold_ends_at = status == SEAT_HELD ? hold_ends_at : 0;
        x->sold += status == SEAT_SOLD;
        x->held += status == SEAT_HELD;
        if (status == SEAT_HELD && hold_ends_at < x->first_end)
            x->first_end = hold_ends_at;
        x->version = ++b->last_version;
    } else if (x != NULL)
        forget_locked(b); /* a seat the store has and the board does not: start again */
    pthread_mutex_unlock(&b->mu);
}

void seat_board_forget_all(struct seat_board *b)
{
    pthread_mutex_lock(&b->mu);
    forget_locked(b);
    pthread_mutex_unlock(&b->mu);
}
