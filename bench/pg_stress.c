/* pg_stress.c — races batches of writes on PostgreSQL (bx_write_batch, pg_schema.h
 * migration 3) and checks what they leave. THREADS connections send batches of
 * 20..50 random holds, pays, cancels and charges over a few users and seats for
 * SECONDS (holds last 1.5..3 s, so takeovers and expired payments happen;
 * pays are rare, so the 600 seats do not sell out within a minute); one
 * more connection sweeps every 100 ms; one listens on bx_seats and keeps seat
 * boards from the notifications alone (loaded with BOARD_LOAD after LISTEN).
 * Exits non-zero when a batch failed (a deadlock or a timeout comes back as
 * BX_ERR_UNAVAILABLE) or when a board differs from the database at the end.
 * The audit, the deadlock counter and the server log are checked by the caller.
 *
 *   cc -O2 -g -Wall -Wextra -Isrc -I$(pg_config --includedir) -o /tmp/pg_stress bench/pg_stress.c \
 *      build/libboxoffice_core.a -lpq -lsqlite3 -lhiredis -lsodium -lpthread -lm
 *   /tmp/pg_stress postgresql://... 25 8      # a fresh, empty database */
#define _GNU_SOURCE
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/pg_statements.h"
#include "store/store.h"

#define USERS 100
#define SCHEDULES 3
#define SEATS 200
#define RING 256

static const char *url;
static int64_t user_ids[USERS], schedule_ids[SCHEDULES], concert_id;
static atomic_bool stop;

/* Recent holds, for pays and cancels of any thread. */
static struct {
    pthread_mutex_t lock;
    int64_t res[RING], user[RING];
    unsigned next;
} ring = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct store *open_store(void)
{
    char err[256];
    struct store *s = store_pg_open(url, 0, err, sizeof err);
    if (s == NULL) {
        fprintf(stderr, "pg_stress: %s\n", err);
        exit(2);
    }
    return s;
}

/* ---- writers -------------------------------------------------------------- */

struct writer {
    pthread_t th;
    unsigned seed;
    long batches, items, failed, outcomes[BX_ERR__COUNT + 1];
};

static struct store_write random_write(struct writer *wr, int64_t now)
{
    struct store_write w = {.now = now};
    int r = (int)(rand_r(&wr->seed) % 40); /* 70 % holds, 25 % cancels, a pay, a charge */
    pthread_mutex_lock(&ring.lock);
    unsigned pick = rand_r(&wr->seed) % RING;
    int64_t res = ring.res[pick], res_user = ring.user[pick];
    pthread_mutex_unlock(&ring.lock);
    if (r < 28 || res == 0) {
        w.kind = STORE_WRITE_HOLD;
        w.user_id = user_ids[rand_r(&wr->seed) % USERS];
        w.schedule_id = schedule_ids[rand_r(&wr->seed) % SCHEDULES];
        w.seat_no = 1 + (int32_t)(rand_r(&wr->seed) % SEATS);
        w.hold_ms = 1500 + rand_r(&wr->seed) % 1500;
        w.max_per_user = 4;
    } else if (r == 38) {
        w.kind = STORE_WRITE_PAY;
        w.user_id = rand_r(&wr->seed) % 8 ? res_user : user_ids[rand_r(&wr->seed) % USERS];
        w.reservation_id = res;
        w.amount = rand_r(&wr->seed) % 8 ? -1 : 1000;
        w.concert_id = concert_id;
        if (rand_r(&wr->seed) % 2) {
            w.has_key = true;
            snprintf(w.key, sizeof w.key, "pay-%" PRId64, res);
            memset(w.request_hash, (int)(res & 0xff), sizeof w.request_hash);
        }
    } else if (r < 38) {
        w.kind = STORE_WRITE_CANCEL;
        w.user_id = res_user;
        w.reservation_id = res;
    } else {
        unsigned k = rand_r(&wr->seed) % 4;
        w.kind = STORE_WRITE_CHARGE;
        w.user_id = user_ids[rand_r(&wr->seed) % USERS];
        w.amount = 1000 * (1 + (rand_r(&wr->seed) % 2));
        w.has_key = true;
        snprintf(w.key, sizeof w.key, "charge-%u", k);
        memset(w.request_hash, (int)w.amount / 1000, sizeof w.request_hash);
    }
    return w;
}

static void *writer_run(void *arg)
{
    struct writer *wr = arg;
    struct store *s = open_store();
    struct store_write w[50];
    while (!atomic_load(&stop)) {
        size_t n = 20 + rand_r(&wr->seed) % 31;
        int64_t now = now_ms();
        for (size_t i = 0; i < n; i++)
            w[i] = random_write(wr, now);
        bx_err e = store_pg_write_batch(s, w, n);
        wr->batches++;
        if (e != BX_OK) {
            wr->failed++;
            fprintf(stderr, "pg_stress: batch of %zu failed: %s\n", n, bx_err_info(e)->code);
            continue;
        }
        wr->items += (long)n;
        for (size_t i = 0; i < n; i++) {
            wr->outcomes[w[i].result < BX_ERR__COUNT ? w[i].result : BX_ERR__COUNT]++;
            if (w[i].kind == STORE_WRITE_HOLD && w[i].result == BX_OK) {
                pthread_mutex_lock(&ring.lock);
                ring.res[ring.next % RING] = w[i].reservation.id;
                ring.user[ring.next % RING] = w[i].user_id;
                ring.next++;
                pthread_mutex_unlock(&ring.lock);
            }
        }
    }
    s->ops->close(s);
    return NULL;
}

static void *sweeper_run(void *arg)
{
    long *swept = arg;
    struct store *s = open_store();
    struct timespec pause = {.tv_nsec = 100 * 1000000};
    while (!atomic_load(&stop)) {
        int expired = 0;
        if (s->ops->sweep_holds(s, now_ms(), &expired) == BX_OK)
            *swept += expired;
        nanosleep(&pause, NULL);
    }
    s->ops->close(s);
    return NULL;
}

/* ---- the listener's boards ------------------------------------------------- */

struct board_seat {
    char status;
    int64_t hold_end;
};
static struct board_seat boards[SCHEDULES][SEATS + 1];
static long notifications, changes;

static int schedule_index(int64_t id)
{
    for (int i = 0; i < SCHEDULES; i++)
        if (schedule_ids[i] == id)
            return i;
    return -1;
}

/* Applies one payload of the bx_seats grammar; false when it does not parse. */
static bool apply(const char *payload)
{
    const char *p = payload;
    for (;;) {
        long long sch, seat, end;
        char status;
        int used = 0;
        if (sscanf(p, "%lld,%lld,%c,%lld%n", &sch, &seat, &status, &end, &used) != 4)
            return false;
        int i = schedule_index(sch);
        if (i < 0 || seat < 1 || seat > SEATS || (status != 'A' && status != 'H' && status != 'S') ||
            (status != 'H' && end != 0))
            return false;
        boards[i][seat] = (struct board_seat){.status = status, .hold_end = end};
        changes++;
        p += used;
        if (*p == '\0')
            return true;
        if (*p++ != ';')
            return false;
    }
}

/* Rows of BOARD_LOAD for schedule i into board (or compared with it). */
static int board_load(PGconn *c, int i, bool compare)
{
    char id[24];
    snprintf(id, sizeof id, "%" PRId64, schedule_ids[i]);
    const char *values[1] = {id};
    PGresult *r = PQexecParams(c, BOARD_LOAD_SQL, 1, NULL, values, NULL, NULL, 0);
    int diffs = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != SEATS) {
        fprintf(stderr, "pg_stress: board load: %s\n", PQresultErrorMessage(r));
        exit(2);
    }
    for (int row = 0; row < SEATS; row++) {
        int seat = atoi(PQgetvalue(r, row, 2));
        struct board_seat db = {.status = PQgetvalue(r, row, 4)[0],
                                .hold_end = strtoll(PQgetvalue(r, row, 5), NULL, 10)};
        if (!compare) {
            boards[i][seat] = db;
        } else if (db.status != boards[i][seat].status || db.hold_end != boards[i][seat].hold_end) {
            fprintf(stderr, "pg_stress: schedule %" PRId64 " seat %d: board %c/%" PRId64 ", database %c/%" PRId64 "\n",
                    schedule_ids[i], seat, boards[i][seat].status, boards[i][seat].hold_end, db.status, db.hold_end);
            diffs++;
        }
    }
    PQclear(r);
    return diffs;
}

static PGconn *listener_open(void)
{
    PGconn *c = PQconnectdb(url);
    PGresult *r = PQexec(c, "LISTEN bx_seats");
    if (PQstatus(c) != CONNECTION_OK || PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "pg_stress: listen: %s\n", PQerrorMessage(c));
        exit(2);
    }
    PQclear(r);
    for (int i = 0; i < SCHEDULES; i++)
        board_load(c, i, false);
    return c;
}

/* Reads notifications until the marker comes (or until stop when marker is NULL). */
static bool listen_until(PGconn *c, const char *marker)
{
    for (;;) {
        if (!PQconsumeInput(c))
            return false;
        PGnotify *n;
        while ((n = PQnotifies(c)) != NULL) {
            bool end = marker && strcmp(n->extra, marker) == 0;
            if (!end) {
                notifications++;
                if (!apply(n->extra)) {
                    fprintf(stderr, "pg_stress: bad payload: %s\n", n->extra);
                    PQfreemem(n);
                    return false;
                }
            }
            PQfreemem(n);
            if (end)
                return true;
        }
        if (marker == NULL && atomic_load(&stop))
            return true;
        struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
        poll(&pfd, 1, 100);
    }
}

/* ---- setup and main -------------------------------------------------------- */

static void setup(void)
{
    struct store *s = open_store();
    int64_t now = now_ms(), after;
    char name[32];
    struct idem none = {.key = NULL};
    if (s->ops->migrate(s) != BX_OK || s->ops->concert_create(s, "stress", "hall", &concert_id) != BX_OK)
        exit(2);
    for (int i = 0; i < USERS; i++) {
        snprintf(name, sizeof name, "stress%d", i);
        if (s->ops->user_create(s, name, "x", &user_ids[i]) != BX_OK ||
            s->ops->balance_charge(s, user_ids[i], 10000000, now, &none, &after) != BX_OK)
            exit(2);
    }
    for (int i = 0; i < SCHEDULES; i++) {
        struct schedule in = {.concert_id = concert_id,
                              .starts_at = now + 86400000,
                              .sale_opens_at = now - 3600000,
                              .sale_closes_at = now + 86400000,
                              .seat_count = SEATS};
        if (s->ops->schedule_create(s, &in, 1000, &schedule_ids[i]) != BX_OK)
            exit(2);
    }
    s->ops->close(s);
}

static PGconn *listen_conn;

static void *listener_thread(void *arg)
{
    bool *ok = arg;
    *ok = listen_until(listen_conn, NULL);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: pg_stress URL SECONDS THREADS\n");
        return 2;
    }
    url = argv[1];
    int seconds = atoi(argv[2]), threads = atoi(argv[3]);
    if (threads < 1 || threads > 64 || seconds < 1)
        return 2;
    setup();
    listen_conn = listener_open();
    struct writer *wr = calloc((size_t)threads, sizeof *wr);
    pthread_t sweeper, listener;
    long swept = 0;
    bool listen_ok = false;
    pthread_create(&listener, NULL, listener_thread, &listen_ok);
    pthread_create(&sweeper, NULL, sweeper_run, &swept);
    for (int i = 0; i < threads; i++) {
        wr[i].seed = (unsigned)(i * 7919 + 1);
        pthread_create(&wr[i].th, NULL, writer_run, &wr[i]);
    }
    struct timespec run = {.tv_sec = seconds};
    nanosleep(&run, NULL);
    atomic_store(&stop, true);
    long batches = 0, items = 0, failed = 0, outcomes[BX_ERR__COUNT + 1] = {0};
    for (int i = 0; i < threads; i++) {
        pthread_join(wr[i].th, NULL);
        batches += wr[i].batches;
        items += wr[i].items;
        failed += wr[i].failed;
        for (int k = 0; k <= BX_ERR__COUNT; k++)
            outcomes[k] += wr[i].outcomes[k];
    }
    pthread_join(sweeper, NULL);
    pthread_join(listener, NULL);

    /* every write has committed: a marker sent now comes after all of them */
    PGconn *c = PQconnectdb(url);
    PQclear(PQexec(c, "SELECT pg_notify('bx_seats', 'pg-stress-end')"));
    bool drained = listen_ok && listen_until(listen_conn, "pg-stress-end");
    int diffs = 0;
    for (int i = 0; i < SCHEDULES; i++)
        diffs += board_load(c, i, true);
    PQfinish(c);
    PQfinish(listen_conn);

    printf("%d s, %d threads: %ld batches (%.0f/s), %ld items (%.0f/s), %ld failed batches; swept %ld; "
           "%ld notifications with %ld seat changes; boards differing from the database: %d seats\n",
           seconds, threads, batches, (double)batches / seconds, items, (double)items / seconds, failed, swept,
           notifications, changes, diffs);
    printf("outcomes:");
    for (int k = 0; k <= BX_ERR__COUNT; k++)
        if (outcomes[k])
            printf(" %s %ld",
                   k == BX_REPLAY      ? "REPLAY"
                   : k < BX_ERR__COUNT ? bx_err_info((bx_err)k)->code
                                       : "?",
                   outcomes[k]);
    printf("\n");
    free(wr);
    return failed == 0 && drained && diffs == 0 ? 0 : 1;
}
