/* seat_board.c — see seat_board.h. Schedules by id in an open-addressing table
 * that only grows; forgetting empties it. Bounded: past MAX_SEATS seats in all it
 * forgets everything rather than grow further. */
#include "api/seat_board.h"

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

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct board_entry *slots;
static size_t nslots, used, seats_held;
static uint64_t epoch = 1, last_version;

static size_t home(int64_t schedule_id)
{
    return (size_t)(((uint64_t)schedule_id * 0x9E3779B97F4A7C15ull) >> 32) & (nslots - 1);
}

static struct board_entry *find(int64_t schedule_id)
{
    if (nslots == 0)
        return NULL;
    for (size_t i = home(schedule_id);; i = (i + 1) & (nslots - 1)) {
        if (slots[i].schedule_id == schedule_id)
            return &slots[i];
        if (slots[i].schedule_id == 0)
            return NULL;
    }
}

static void forget_locked(void)
{
    for (size_t i = 0; i < nslots; i++)
        free(slots[i].seats);
    if (nslots)
        memset(slots, 0, nslots * sizeof *slots);
    used = 0;
    seats_held = 0;
    epoch++;
}

/* The empty slot where schedule_id (not present) goes, in a table with room. */
static struct board_entry *empty_slot(int64_t schedule_id)
{
    size_t j = home(schedule_id);
    while (slots[j].schedule_id != 0)
        j = (j + 1) & (nslots - 1);
    return &slots[j];
}

/* A free slot for schedule_id (not present), growing the table at half load. */
static struct board_entry *slot_for(int64_t schedule_id)
{
    if (2 * (used + 1) > nslots) {
        size_t grown = nslots ? 2 * nslots : 64;
        struct board_entry *fresh = calloc(grown, sizeof *fresh);
        if (fresh == NULL)
            return NULL;
        struct board_entry *old = slots;
        size_t old_n = nslots;
        slots = fresh;
        nslots = grown;
        for (size_t i = 0; i < old_n; i++)
            if (old[i].schedule_id != 0)
                *empty_slot(old[i].schedule_id) = old[i];
        free(old);
    }
    return empty_slot(schedule_id);
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

int seat_board_get(int64_t schedule_id, uint64_t *version, int64_t *concert_id, int want_seats, struct seat **buf,
                   size_t *cap, size_t *n)
{
    int found = 0;
    pthread_mutex_lock(&mu);
    const struct board_entry *x = find(schedule_id);
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
    pthread_mutex_unlock(&mu);
    return found;
}

int seat_board_available(int64_t schedule_id, int64_t now, int32_t *available)
{
    pthread_mutex_lock(&mu);
    struct board_entry *x = find(schedule_id);
    if (x != NULL) {
        drop_ended_holds(x, now);
        *available = (int32_t)(x->n - x->sold - x->held);
    }
    pthread_mutex_unlock(&mu);
    return x != NULL;
}

uint64_t seat_board_epoch(void)
{
    pthread_mutex_lock(&mu);
    uint64_t e = epoch;
    pthread_mutex_unlock(&mu);
    return e;
}

void seat_board_put(uint64_t read_epoch, int64_t schedule_id, int64_t concert_id, const struct seat *seats, size_t n)
{
    struct seat *copy = n ? malloc(n * sizeof *copy) : NULL;
    if (n && copy == NULL)
        return;
    if (n)
        memcpy(copy, seats, n * sizeof *copy);
    pthread_mutex_lock(&mu);
    if (read_epoch == epoch && find(schedule_id) == NULL) {
        if (seats_held + n > MAX_SEATS)
            forget_locked(); /* and keep this one: it is the one in use */
        struct board_entry *x = slot_for(schedule_id);
        if (x != NULL) {
            *x = (struct board_entry){.schedule_id = schedule_id, .concert_id = concert_id,
                                      .version = ++last_version, .seats = copy, .n = n};
            count_seats(x);
            used++;
            seats_held += n;
            copy = NULL;
        }
    }
    pthread_mutex_unlock(&mu);
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

void seat_board_set(int64_t schedule_id, int32_t seat_no, enum seat_status status, int64_t hold_ends_at)
{
    pthread_mutex_lock(&mu);
    epoch++;
    struct board_entry *x = find(schedule_id);
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
        x->version = ++last_version;
    } else if (x != NULL)
        forget_locked(); /* a seat the store has and the board does not: start again */
    pthread_mutex_unlock(&mu);
}

void seat_board_forget_all(void)
{
    pthread_mutex_lock(&mu);
    forget_locked();
    pthread_mutex_unlock(&mu);
}
