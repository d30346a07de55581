/* astore_pg.c — the serving store of scale-out mode (astore.h) over PostgreSQL,
 * on the loop's own two asynchronous connections (store/pg_conn.c): no loop ever
 * waits on the database. What runs where:
 *
 *   rd  reads, pipelined (many in flight); LISTENs on bx_seats, the seat changes
 *       every instance's writes announce (pg_schema.h, migration 3), and keeps the
 *       loop's seat board (store/seat_board.c) exact with them;
 *   wr  writes: the holds, cancels, charges and payments that arrive together go
 *       in ONE call of bx_write_batch (one round trip, one commit; one batch in
 *       flight, the next one gathering meanwhile), plus sign-ups, the catalogue
 *       and the hold sweeper.
 *
 * Seat maps and date lists come from the board. A read that follows an answer
 * must show that answer's write, whichever instance wrote it: the writer answered
 * after its commit, so its notification was queued for rd's backend before the
 * read arrived here, and PostgreSQL delivers it before the ReadyForQuery of any
 * statement rd sends after that. So every map or date read waits for a statement
 * sent on rd after the read arrived (a barrier: a `SELECT 1` shared by the reads
 * of one loop turn, or the date list's own query, or the load of a schedule the
 * board does not have yet), and pg_conn delivers notifications before the
 * answer of that statement: then the board holds every write answered before.
 *
 * A schedule's load (BOARD_LOAD, one snapshot) may be older than notifications
 * that arrive while it is in flight: those are kept and applied after it, in
 * order (each one is a seat's whole state, so replaying them ends at the
 * committed state). When rd's connection drops, notifications may have been
 * missed: the board forgets everything and reloads on demand.
 *
 * Bounds: every statement has pg_conn's deadline (REPLY_WAIT_MS), after which the
 * caller gets BX_ERR_UNAVAILABLE; a write whose answer did not come may have
 * committed (clients retry with their Idempotency-Key). */
#include "store/astore.h"
#include "store/pg_batch.h"
#include "store/pg_conn.h"
#include "store/pg_rows.h"
#include "store/pg_statements.h"
#include "domain/money.h"
#include "store/seat_board.h"
#include "store/seat_changes.h"
#include "util/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLY_WAIT_MS 6000 /* pg_conn wants more than statement_timeout (5 s) */
#define MAX_QUEUED 8192    /* statements queued or in flight per connection */
#define BATCH_MAX 256      /* writes in one bx_write_batch call */
#define SWEEP_EVERY_MS 1000
#define SWEEP_BATCH "1000"

#define STMT_ENUM(name, kind, sql) ST_##name,
#define STMT_ENTRY(name, kind, sql) [ST_##name] = {"bx_" #name, sql},
enum stmt_id { STMT_LIST(STMT_ENUM) ST__COUNT };
static const struct pg_statement statements[ST__COUNT] = {STMT_LIST(STMT_ENTRY)};

/* ---- state ---------------------------------------------------------------- */

/* A read (or a single write) in flight: where its answer goes and how to read it. */
struct op {
    struct apg *a;
    void (*parse)(struct op *o, const PGresult *res, bx_err *e);
    astore_done_fn done;
    void *arg;
    void *out, *out2;   /* the caller's outputs */
    int64_t now;        /* for the reading of holds that ended */
    struct op *next;    /* chained reads (counts) */
};

/* A map or date read waiting for its barrier, then maybe for a schedule's load. */
struct waiter {
    struct waiter *next;
    void (*ready)(struct waiter *w, bx_err e); /* the board may be read now (e == BX_OK) */
    struct apg *a;
    astore_done_fn done;
    void *arg;
    int64_t schedule_id, concert_id, now;
    uint64_t known;
    struct seat_map *map;
    struct schedule **dates;
    size_t *ndates;
    size_t loads_left; /* dates: loads still in flight */
    int rounds;        /* dates: rounds of loads asked for */
    bx_err failed;     /* dates: the first load that failed */
};

/* A schedule whose load is in flight, with what waits for it. */
struct loading {
    struct loading *next;
    struct apg *a;
    int64_t schedule_id;
    struct seat_change *changes;
    size_t nchanges, cap;
    struct waiter **waiting; /* waiters (not owned) */
    size_t nwaiting, wcap;
};

/* A write waiting for its batch. */
struct queued_write {
    struct queued_write *next;
    struct store_write *w;
    astore_done_fn done;
    void *arg;
};

struct apg {
    struct astore base;
    h2o_evloop_t *loop;
    char *url;
    struct pg_conn_config rd_cfg, wr_cfg;
    struct pg_conn *rd, *wr;
    struct seat_board *board;
    struct loading *loading;
    /* reads that arrived this loop turn and wait for the barrier sent at its end */
    struct waiter *barrier_head, **barrier_tail;
    h2o_timeout_t zero;
    h2o_timeout_entry_t barrier_entry, batch_entry;
    /* writes gathering for the next batch; the one in flight */
    struct queued_write *wq_head, **wq_tail;
    size_t nqueued;
    struct queued_write *in_flight;
    size_t in_flight_n;
    struct store_write *batch; /* copies of the in-flight writes, decoded into */
    int64_t last_sweep;
    bool sweeping;
};

static struct apg *apg_of(struct astore *a)
{
    return (struct apg *)a;
}

/* ---- simple statements ---------------------------------------------------- */

static void op_done(void *arg, bx_err e, const PGresult *res)
{
    struct op *o = arg;
    if (e == BX_OK && o->parse != NULL)
        o->parse(o, res, &e);
    else if (e == BX_ERR_INTERNAL)
        log_warn("store: %s", res != NULL ? PQresultErrorMessage(res) : "statement failed");
    o->done(o->arg, e);
    free(o);
}

/* Sends statement stmt on c with text parameters; done(arg, e) follows (at once
 * when it cannot be queued). */
static void run(struct apg *a, struct pg_conn *c, enum stmt_id stmt, const struct pg_params *p,
                void (*parse)(struct op *, const PGresult *, bx_err *), void *out, void *out2, int64_t now,
                astore_done_fn done, void *arg)
{
    struct op *o = malloc(sizeof *o);
    if (o == NULL) {
        done(arg, BX_ERR_UNAVAILABLE);
        return;
    }
    *o = (struct op){.a = a, .parse = parse, .done = done, .arg = arg, .out = out, .out2 = out2, .now = now};
    if (pg_conn_query(c, stmt, p->n, p->values, p->lengths, p->formats, op_done, o) != 0) {
        free(o);
        done(arg, BX_ERR_UNAVAILABLE);
    }
}

static void apg_ping(struct astore *base, astore_done_fn done, void *arg)
{
    struct apg *a = apg_of(base);
    struct pg_params p = {0};
    run(a, a->rd, ST_BARRIER, &p, NULL, NULL, NULL, 0, done, arg);
}

/* One bigint in row 0, column 0: *out; no row: NOT_FOUND. */
static void parse_i64(struct op *o, const PGresult *res, bx_err *e)
{
    if (PQntuples(res) == 0)
        *e = BX_ERR_NOT_FOUND;
    else
        *(int64_t *)o->out = pg_col_i64(res, 0, 0);
}

static void parse_user_created(struct op *o, const PGresult *res, bx_err *e)
{
    parse_i64(o, res, e);
    if (*e == BX_ERR_NOT_FOUND) /* ON CONFLICT DO NOTHING: the name was taken */
        *e = BX_ERR_NAME_TAKEN;
}

static void apg_user_create(struct astore *base, const char *name, const char *pwhash, int64_t *user_id,
                            astore_done_fn done, void *arg)
{
    struct apg *a = apg_of(base);
    struct pg_params p = {0};
    if (strlen(name) > BX_NAME_MAX || strlen(pwhash) > BX_PWHASH_MAX) {
        done(arg, BX_ERR_VALIDATION);
        return;
    }
    pg_param_text(&p, name);
    pg_param_text(&p, pwhash);
    run(a, a->wr, ST_USER_INSERT, &p, parse_user_created, user_id, NULL, 0, done, arg);
}

static void parse_user(struct op *o, const PGresult *res, bx_err *e)
{
    if (PQntuples(res) == 0)
        *e = BX_ERR_NOT_FOUND;
    else
        pg_read_user(res, 0, o->out);
}

static void apg_user_find_by_name(struct astore *base, const char *name, struct user *out, astore_done_fn done,
                                  void *arg)
{
    struct apg *a = apg_of(base);
    struct pg_params p = {0};
    pg_param_text(&p, name);
    run(a, a->rd, ST_USER_BY_NAME, &p, parse_user, out, NULL, 0, done, arg);
}

static void apg_balance_get(struct astore *base, int64_t user_id, int64_t *balance, astore_done_fn done, void *arg)
{
    struct apg *a = apg_of(base);
    struct pg_params p = {0};
    pg_param_i64(&p, user_id);
    run(a, a->rd, ST_BALANCE_GET, &p, parse_i64, balance, NULL, 0, done, arg);
}

static void apg_concert_create(struct astore *base, const char *title, const char *venue, int64_t *concert_id,
                               astore_done_fn done, void *arg)
{
    struct apg *a = apg_of(base);
    struct pg_params p = {0};
    pg_param_text(&p, title);
    pg_param_text(&p, venue);
    run(a, a->wr, ST_CONCERT_INSERT, &p, parse_i64, concert_id, NULL, 0, done, arg);
}

static void parse_concert(struct op *o, const PGresult *res, bx_err *e)
{
    if (PQntuples(res) == 0)
        *e = BX_ERR_CONCERT_NOT_FOUND;
    else
        pg_read_concert(res, 0, o->out);
}

static void apg_concert_get(struct astore *base, int64_t concert_id, struct concert *out, astore_done_fn done,
                            void *arg)
{
    struct apg *a = apg_of(base);
    struct pg_params p = {0};
    pg_param_i64(&p, concert_id);
    run(a, a->rd, ST_CONCERT_GET, &p, parse_concert, out, NULL, 0, done, arg);
}

/* Every row through read(res, row, element): a malloc'd array in *out, its length
 * in *n. */
static bx_err read_list(const PGresult *res, size_t size, void **out, size_t *n,
                        bx_err (*read)(const PGresult *res, int row, int64_t now, void *el), int64_t now)
{
    size_t rows = (size_t)PQntuples(res);
    *out = NULL;
    *n = 0;
    if (rows == 0)
        return BX_OK;
    unsigned char *list = calloc(rows, size);
    if (list == NULL)
        return BX_ERR_INTERNAL;
    for (size_t i = 0; i < rows; i++) {
        bx_err e = read(res, (int)i, now, list + i * size);
        if (e != BX_OK) {
            free(list);
            return e;
        }
    }
    *out = list;
    *n = rows;
    return BX_OK;
}

static bx_err read_concert_el(const PGresult *res, int row, int64_t now, void *el)
{
    (void)now;
    pg_read_concert(res, row, el);
    return BX_OK;
}

static void parse_concerts(struct op *o, const PGresult *res, bx_err *e)
{
    *e = read_list(res, sizeof(struct concert), o->out, o->out2, read_concert_el, 0);
}

static void apg_concert_list(struct astore *base, struct concert **out, size_t *n, astore_done_fn done, void *arg)
{
    struct apg *a = apg_of(base);
    struct pg_params p = {0};
    run(a, a->rd, ST_CONCERT_LIST, &p, parse_concerts, out, n, 0, done, arg);
}

/* The outcome of bx_schedule_create: code, id. */
static void parse_schedule_created(struct op *o, const PGresult *res, bx_err *e)
{
    if (PQntuples(res) != 1 || !pg_outcome_code(PQgetvalue(res, 0, 0), e))
        *e = BX_ERR_INTERNAL;
    else if (*e == BX_OK)
        *(int64_t *)o->out = pg_col_i64(res, 0, 1);
}

static void apg_schedule_create(struct astore *base, const struct schedule *in, int64_t price, int64_t *schedule_id,
                                astore_done_fn done, void *arg)
{
    struct apg *a = apg_of(base);
    struct pg_params p = {0};
    pg_param_i64(&p, in->concert_id);
    pg_param_i64(&p, in->starts_at);
    pg_param_i64(&p, in->sale_opens_at);
    pg_param_i64(&p, in->sale_closes_at);
    pg_param_i64(&p, in->seat_count);
    pg_param_i64(&p, price);
    run(a, a->wr, ST_SCHEDULE_CREATE, &p, parse_schedule_created, schedule_id, NULL, 0, done, arg);
}

static void parse_schedule(struct op *o, const PGresult *res, bx_err *e)
{
    if (PQntuples(res) == 0)
        *e = BX_ERR_SCHEDULE_NOT_FOUND;
    else
        pg_read_schedule(res, 0, o->out);
}

static void apg_schedule_get(struct astore *base, int64_t schedule_id, struct schedule *out, astore_done_fn done,
                             void *arg)
{
    struct apg *a = apg_of(base);
    struct pg_params p = {0};
    pg_param_i64(&p, schedule_id);
    pg_param_i64(&p, 0);
    pg_param_text(&p, "false"); /* not counted */
    run(a, a->rd, ST_SCHEDULE_GET, &p, parse_schedule, out, NULL, 0, done, arg);
}

static void parse_reservation(struct op *o, const PGresult *res, bx_err *e)
{
    if (PQntuples(res) == 0)
        *e = BX_ERR_RESERVATION_NOT_FOUND;
    else
        *e = pg_read_reservation(res, 0, o->now, o->out);
}

static void apg_reservation_get(struct astore *base, int64_t user_id, int64_t reservation_id, int64_t now,
                                struct reservation *out, astore_done_fn done, void *arg)
{
    struct apg *a = apg_of(base);
    struct pg_params p = {0};
    pg_param_i64(&p, reservation_id);
    pg_param_i64(&p, user_id);
    run(a, a->rd, ST_RES_GET, &p, parse_reservation, out, NULL, now, done, arg);
}

static bx_err read_reservation_el(const PGresult *res, int row, int64_t now, void *el)
{
    return pg_read_reservation(res, row, now, el);
}

static void parse_reservations(struct op *o, const PGresult *res, bx_err *e)
{
    *e = read_list(res, sizeof(struct reservation), o->out, o->out2, read_reservation_el, o->now);
}

static void apg_reservation_list(struct astore *base, int64_t user_id, int64_t now, struct reservation **out,
                                 size_t *n, astore_done_fn done, void *arg)
{
    struct apg *a = apg_of(base);
    struct pg_params p = {0};
    pg_param_i64(&p, user_id);
    run(a, a->rd, ST_RES_LIST, &p, parse_reservations, out, n, now, done, arg);
}

static bx_err read_payment_el(const PGresult *res, int row, int64_t now, void *el)
{
    (void)now;
    pg_read_payment(res, row, 0, el);
    return BX_OK;
}

static void parse_payments(struct op *o, const PGresult *res, bx_err *e)
{
    *e = read_list(res, sizeof(struct payment), o->out, o->out2, read_payment_el, 0);
}

static void apg_payment_list(struct astore *base, int64_t user_id, int64_t before_id, int limit,
                             struct payment **out, size_t *n, astore_done_fn done, void *arg)
{
    struct apg *a = apg_of(base);
    struct pg_params p = {0};
    pg_param_i64(&p, user_id);
    pg_param_i64(&p, limit);
    if (before_id > 0)
        pg_param_i64(&p, before_id);
    run(a, a->rd, before_id > 0 ? ST_PAYMENT_LIST_BEFORE : ST_PAYMENT_LIST, &p, parse_payments, out, n, 0, done,
        arg);
}

/* The two gauges: live holds, then sold seats, one statement after the other. */
struct counts {
    struct apg *a;
    int64_t now, *holds, *sold;
    astore_done_fn done;
    void *arg;
};

static void counts_sold(void *arg, bx_err e)
{
    struct counts *x = arg;
    x->done(x->arg, e);
    free(x);
}

static void counts_holds(void *arg, bx_err e)
{
    struct counts *x = arg;
    if (e != BX_OK) {
        counts_sold(x, e);
        return;
    }
    struct pg_params p = {0};
    run(x->a, x->a->rd, ST_COUNT_SOLD, &p, parse_i64, x->sold, NULL, 0, counts_sold, x);
}

static void apg_counts(struct astore *base, int64_t now, int64_t *holds_live, int64_t *seats_sold,
                       astore_done_fn done, void *arg)
{
    struct apg *a = apg_of(base);
    struct counts *x = malloc(sizeof *x);
    if (x == NULL) {
        done(arg, BX_ERR_UNAVAILABLE);
        return;
    }
    *x = (struct counts){.a = a, .now = now, .holds = holds_live, .sold = seats_sold, .done = done, .arg = arg};
    *seats_sold = 0;
    struct pg_params p = {0};
    pg_param_i64(&p, now);
    run(a, a->rd, ST_COUNT_LIVE_HOLDS, &p, parse_i64, holds_live, NULL, 0, counts_holds, x);
}

/* ---- the seat board: notifications, loads, barriers ----------------------- */

static struct loading *loading_find(struct apg *a, int64_t schedule_id)
{
    for (struct loading *l = a->loading; l != NULL; l = l->next)
        if (l->schedule_id == schedule_id)
            return l;
    return NULL;
}

static void change_keep(struct loading *l, const struct seat_change *c)
{
    if (l->nchanges == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        struct seat_change *grown = realloc(l->changes, cap * sizeof *grown);
        if (grown == NULL) {
            l->cap = SIZE_MAX; /* the load is not kept: see load_done */
            return;
        }
        l->changes = grown;
        l->cap = cap;
    }
    if (l->cap != SIZE_MAX)
        l->changes[l->nchanges++] = *c;
}

/* One change: to the board, or kept for after its schedule's load. */
static void seat_changed(void *arg, const struct seat_change *c)
{
    struct apg *a = arg;
    struct loading *l = loading_find(a, c->schedule_id);
    if (l != NULL)
        change_keep(l, c);
    else
        seat_board_set(a->board, c->schedule_id, c->seat_no, c->status, c->hold_end);
}

static void on_seats_changed(void *arg, const char *payload)
{
    struct apg *a = arg;
    if (!seat_changes_parse(payload, seat_changed, a)) {
        log_warn("store: unreadable seat change in \"%.80s\": the seat board starts again", payload);
        seat_board_forget_all(a->board);
    }
}

/* rd came up (LISTENing) or went down: notifications may have been missed. */
static void on_rd_state(void *arg, bool up)
{
    struct apg *a = arg;
    if (!up)
        seat_board_forget_all(a->board);
}

/* A load's rows into the board, then the changes that arrived meanwhile. */
static bx_err board_put(struct apg *a, struct loading *l, const PGresult *res)
{
    int rows = PQntuples(res);
    if (rows == 0)
        return BX_ERR_SCHEDULE_NOT_FOUND;
    struct seat *seats = calloc((size_t)rows, sizeof *seats);
    if (seats == NULL || l->cap == SIZE_MAX) {
        free(seats);
        return BX_ERR_UNAVAILABLE;
    }
    int64_t concert_id = pg_col_i64(res, 0, 0);
    for (int i = 0; i < rows; i++) {
        const char *st = PQgetvalue(res, i, 4);
        seats[i] = (struct seat){.seat_no = (int32_t)pg_col_i64(res, i, 2),
                                 .price = pg_col_i64(res, i, 3),
                                 .status = st[0] == 'H' ? SEAT_HELD : st[0] == 'S' ? SEAT_SOLD : SEAT_AVAILABLE,
                                 .hold_ends_at = pg_col_i64(res, i, 5)};
        seats[i].available = seats[i].status == SEAT_AVAILABLE;
    }
    /* the load and the changes after it are this connection's order: keep it whatever changed meanwhile */
    seat_board_put(a->board, seat_board_epoch(a->board), l->schedule_id, concert_id, seats, (size_t)rows);
    free(seats);
    for (size_t i = 0; i < l->nchanges; i++)
        seat_board_set(a->board, l->changes[i].schedule_id, l->changes[i].seat_no, l->changes[i].status,
                       l->changes[i].hold_end);
    return BX_OK;
}

static void loading_free(struct apg *a, struct loading *l)
{
    for (struct loading **p = &a->loading; *p != NULL; p = &(*p)->next)
        if (*p == l) {
            *p = l->next;
            break;
        }
    free(l->changes);
    free(l->waiting);
    free(l);
}

static void load_done(void *arg, bx_err e, const PGresult *res)
{
    struct loading *l = arg;
    struct apg *a = l->a;
    if (e == BX_OK)
        e = board_put(a, l, res);
    struct waiter **waiting = l->waiting;
    size_t n = l->nwaiting;
    l->waiting = NULL;
    l->nwaiting = 0;
    loading_free(a, l);
    for (size_t i = 0; i < n; i++)
        waiting[i]->ready(waiting[i], e);
    free(waiting);
}

/* w waits for schedule_id's load, which starts now unless it is in flight. */
static void load_wait(struct apg *a, int64_t schedule_id, struct waiter *w)
{
    struct loading *l = loading_find(a, schedule_id);
    if (l == NULL) {
        l = calloc(1, sizeof *l);
        if (l == NULL) {
            w->ready(w, BX_ERR_UNAVAILABLE);
            return;
        }
        l->a = a;
        l->schedule_id = schedule_id;
        struct pg_params p = {0};
        pg_param_i64(&p, schedule_id);
        if (pg_conn_query(a->rd, ST_BOARD_LOAD, p.n, p.values, p.lengths, p.formats, load_done, l) != 0) {
            free(l);
            w->ready(w, BX_ERR_UNAVAILABLE);
            return;
        }
        l->next = a->loading;
        a->loading = l;
    }
    if (l->nwaiting == l->wcap) {
        size_t cap = l->wcap ? 2 * l->wcap : 4;
        struct waiter **grown = realloc(l->waiting, cap * sizeof *grown);
        if (grown == NULL) {
            w->ready(w, BX_ERR_UNAVAILABLE);
            return;
        }
        l->waiting = grown;
        l->wcap = cap;
    }
    l->waiting[l->nwaiting++] = w;
}

/* Reads that arrived this loop turn share one barrier, sent at the turn's end. */
static void barrier_wait(struct apg *a, struct waiter *w)
{
    w->next = NULL;
    *a->barrier_tail = w;
    a->barrier_tail = &w->next;
    if (!h2o_timeout_is_linked(&a->barrier_entry))
        h2o_timeout_link(a->loop, &a->zero, &a->barrier_entry);
}

static void barrier_done(void *arg, bx_err e, const PGresult *res)
{
    (void)res;
    struct waiter *w = arg;
    while (w != NULL) {
        struct waiter *next = w->next;
        w->ready(w, e);
        w = next;
    }
}

static void on_barrier_time(h2o_timeout_entry_t *entry)
{
    struct apg *a = H2O_STRUCT_FROM_MEMBER(struct apg, barrier_entry, entry);
    struct waiter *list = a->barrier_head;
    a->barrier_head = NULL;
    a->barrier_tail = &a->barrier_head;
    if (list != NULL && pg_conn_query(a->rd, ST_BARRIER, 0, NULL, NULL, NULL, barrier_done, list) != 0)
        barrier_done(list, BX_ERR_UNAVAILABLE, NULL);
}

/* ---- seat maps ------------------------------------------------------------ */

static void waiter_finish(struct waiter *w, bx_err e)
{
    w->done(w->arg, e);
    free(w);
}

/* The board has the schedule unless it forgot it meanwhile. */
static bx_err map_from_board(struct apg *a, struct waiter *w)
{
    struct seat_map *m = w->map;
    size_t cap = 0;
    *m = (struct seat_map){0};
    if (!seat_board_get(a->board, w->schedule_id, &m->version, &m->concert_id, 0, NULL, NULL, NULL))
        return BX_ERR_UNAVAILABLE;
    if (w->known != 0 && m->version == w->known)
        return BX_OK;
    if (!seat_board_get(a->board, w->schedule_id, &m->version, &m->concert_id, 1, &m->seats, &cap, &m->n)) {
        free(m->seats);
        *m = (struct seat_map){0};
        return BX_ERR_UNAVAILABLE;
    }
    return BX_OK;
}

static void seats_loaded(struct waiter *w, bx_err e)
{
    waiter_finish(w, e == BX_OK ? map_from_board(w->a, w) : e);
}

/* After the barrier: from the board, or once the schedule is loaded. */
static void seats_ready(struct waiter *w, bx_err e)
{
    if (e != BX_OK) {
        waiter_finish(w, e);
        return;
    }
    int64_t concert_id;
    uint64_t version;
    if (seat_board_get(w->a->board, w->schedule_id, &version, &concert_id, 0, NULL, NULL, NULL)) {
        seats_loaded(w, BX_OK);
        return;
    }
    w->ready = seats_loaded;
    load_wait(w->a, w->schedule_id, w);
}

/* A schedule not on the board and not loading: its load, sent now, is the
 * barrier. Otherwise the barrier of this turn comes first. */
static void apg_seats(struct astore *base, int64_t schedule_id, int64_t now, uint64_t known, struct seat_map *out,
                      astore_done_fn done, void *arg)
{
    struct apg *a = apg_of(base);
    struct waiter *w = calloc(1, sizeof *w);
    if (w == NULL) {
        done(arg, BX_ERR_UNAVAILABLE);
        return;
    }
    *w = (struct waiter){.a = a, .done = done, .arg = arg, .schedule_id = schedule_id, .now = now, .known = known,
                         .map = out};
    int64_t concert_id;
    uint64_t version;
    if (!seat_board_get(a->board, schedule_id, &version, &concert_id, 0, NULL, NULL, NULL) &&
        loading_find(a, schedule_id) == NULL) {
        w->ready = seats_loaded;
        load_wait(a, schedule_id, w);
        return;
    }
    w->ready = seats_ready;
    barrier_wait(a, w);
}

/* ---- date lists ----------------------------------------------------------- */

static void dates_loaded(struct waiter *w, bx_err e);

/* Asks for the loads of the dates the board lacks (in parallel). false when
 * none is left in flight (all answered already, or none needed): then the caller
 * goes on; otherwise dates_loaded of the last one does. */
static bool dates_ask_loads(struct waiter *w)
{
    w->rounds++;
    w->loads_left = 1; /* held while asking: a load that fails at once must not finish the list */
    w->ready = dates_loaded;
    for (size_t i = 0; i < *w->ndates; i++) {
        int64_t concert_id;
        uint64_t version;
        int64_t id = (*w->dates)[i].id;
        if (!seat_board_get(w->a->board, id, &version, &concert_id, 0, NULL, NULL, NULL)) {
            w->loads_left++;
            load_wait(w->a, id, w);
        }
    }
    return --w->loads_left > 0;
}

/* Every date counted on the board, once none is loading. A date forgotten
 * meanwhile (rd reconnected, the board's bound) is loaded again, once. */
static void dates_settle(struct waiter *w)
{
    for (;;) {
        bx_err e = w->failed;
        bool missing = false;
        for (size_t i = 0; e == BX_OK && !missing && i < *w->ndates; i++)
            missing = !seat_board_available(w->a->board, (*w->dates)[i].id, w->now, &(*w->dates)[i].available);
        if (e == BX_OK && missing && w->rounds < 2) {
            if (dates_ask_loads(w))
                return;
            continue;
        }
        if (e == BX_OK && missing)
            e = BX_ERR_UNAVAILABLE;
        if (e != BX_OK) {
            free(*w->dates);
            *w->dates = NULL;
            *w->ndates = 0;
        }
        waiter_finish(w, e);
        return;
    }
}

/* One of the loads a date list waits for is done. */
static void dates_loaded(struct waiter *w, bx_err e)
{
    if (e != BX_OK && w->failed == BX_OK)
        w->failed = e;
    if (--w->loads_left == 0)
        dates_settle(w);
}

static bx_err read_schedule_el(const PGresult *res, int row, int64_t now, void *el)
{
    (void)now;
    pg_read_schedule(res, row, el);
    return BX_OK;
}

/* The list's own query was sent after the read arrived: it is the barrier. Dates
 * not on the board are loaded (in parallel), then all are counted there. */
static void dates_listed(void *arg, bx_err e, const PGresult *res)
{
    struct waiter *w = arg;
    if (e == BX_OK)
        e = read_list(res, sizeof(struct schedule), (void **)w->dates, w->ndates, read_schedule_el, 0);
    if (e != BX_OK) {
        waiter_finish(w, e);
        return;
    }
    if (!dates_ask_loads(w))
        dates_settle(w);
}

static void apg_dates(struct astore *base, int64_t concert_id, int64_t now, struct schedule **out, size_t *n,
                      astore_done_fn done, void *arg)
{
    struct apg *a = apg_of(base);
    *out = NULL;
    *n = 0;
    struct waiter *w = calloc(1, sizeof *w);
    if (w == NULL) {
        done(arg, BX_ERR_UNAVAILABLE);
        return;
    }
    *w = (struct waiter){.a = a, .done = done, .arg = arg, .concert_id = concert_id, .now = now, .dates = out,
                         .ndates = n};
    struct pg_params p = {0};
    pg_param_i64(&p, concert_id);
    pg_param_i64(&p, now);
    pg_param_text(&p, "false"); /* counted on the board */
    if (pg_conn_query(a->rd, ST_SCHEDULE_BOOKABLE, p.n, p.values, p.lengths, p.formats, dates_listed, w) != 0)
        waiter_finish(w, BX_ERR_UNAVAILABLE);
}

/* ---- writes: gathered, then one batch at a time --------------------------- */

static void batch_send(struct apg *a);

static void on_batch_time(h2o_timeout_entry_t *entry)
{
    batch_send(H2O_STRUCT_FROM_MEMBER(struct apg, batch_entry, entry));
}

/* Writes of one loop turn go together (sent at its end), and while a batch is in
 * flight the next one gathers. */
static void apg_write(struct astore *base, struct store_write *w, astore_done_fn done, void *arg)
{
    struct apg *a = apg_of(base);
    struct queued_write *q = malloc(sizeof *q);
    if (q == NULL) {
        done(arg, BX_ERR_UNAVAILABLE);
        return;
    }
    *q = (struct queued_write){.w = w, .done = done, .arg = arg};
    *a->wq_tail = q;
    a->wq_tail = &q->next;
    a->nqueued++;
    if (a->in_flight == NULL && !h2o_timeout_is_linked(&a->batch_entry))
        h2o_timeout_link(a->loop, &a->zero, &a->batch_entry);
}

/* Answers every write of the list with its own outcome (e == BX_OK) or e. */
static void writes_answer(struct queued_write *list, const struct store_write *outcomes, bx_err e)
{
    for (size_t i = 0; list != NULL; i++) {
        struct queued_write *next = list->next;
        if (e == BX_OK)
            *list->w = outcomes[i];
        list->done(list->arg, e == BX_OK ? list->w->result : e);
        free(list);
        list = next;
    }
}

/* A write run alone after its batch was refused as a whole. */
static void alone_done(void *arg, bx_err e, const PGresult *res)
{
    struct queued_write *q = arg;
    if (e == BX_OK)
        e = pg_batch_decode(res, q->w, 1);
    q->done(q->arg, e == BX_OK ? q->w->result : e);
    free(q);
}

/* The server refused the whole batch (an item raised: nothing committed): each
 * write runs again alone, so only the one that raises fails. */
static void writes_run_alone(struct apg *a, struct queued_write *list)
{
    while (list != NULL) {
        struct queued_write *next = list->next;
        struct pg_batch_params p;
        if (!pg_batch_encode(list->w, 1, MONEY_BALANCE_MAX, &p)) {
            list->done(list->arg, BX_ERR_UNAVAILABLE);
            free(list);
        } else {
            if (pg_conn_query(a->wr, ST_WRITE_BATCH, PG_BATCH_PARAMS, p.values, NULL, NULL, alone_done, list) != 0) {
                list->done(list->arg, BX_ERR_UNAVAILABLE);
                free(list);
            }
            pg_batch_params_release(&p);
        }
        list = next;
    }
}

static void batch_done(void *arg, bx_err e, const PGresult *res)
{
    struct apg *a = arg;
    struct queued_write *list = a->in_flight;
    size_t n = a->in_flight_n;
    a->in_flight = NULL;
    a->in_flight_n = 0;
    if (e == BX_ERR_INTERNAL && res != NULL && PQresultStatus(res) == PGRES_FATAL_ERROR && n > 1) {
        log_warn("store: a batch of %zu writes was refused (%s): each runs again alone", n,
                 PQresultErrorField(res, PG_DIAG_SQLSTATE));
        writes_run_alone(a, list);
    } else {
        if (e == BX_OK)
            e = pg_batch_decode(res, a->batch, n);
        writes_answer(list, a->batch, e);
    }
    batch_send(a);
}

/* Sends the next batch of what gathered, unless one is in flight. */
static void batch_send(struct apg *a)
{
    while (a->in_flight == NULL && a->nqueued > 0) {
        struct queued_write *list = a->wq_head, **tail = &list;
        size_t n = 0;
        while (*tail != NULL && n < BATCH_MAX) {
            a->batch[n++] = *(*tail)->w;
            tail = &(*tail)->next;
        }
        a->wq_head = *tail;
        if (a->wq_head == NULL)
            a->wq_tail = &a->wq_head;
        *tail = NULL;
        a->nqueued -= n;
        struct pg_batch_params p;
        if (!pg_batch_encode(a->batch, n, MONEY_BALANCE_MAX, &p)) {
            writes_answer(list, NULL, BX_ERR_UNAVAILABLE);
            continue;
        }
        a->in_flight = list;
        a->in_flight_n = n;
        if (pg_conn_query(a->wr, ST_WRITE_BATCH, PG_BATCH_PARAMS, p.values, NULL, NULL, batch_done, a) != 0) {
            a->in_flight = NULL;
            a->in_flight_n = 0;
            writes_answer(list, NULL, BX_ERR_UNAVAILABLE);
        }
        pg_batch_params_release(&p);
    }
}

/* ---- housekeeping: the hold sweeper --------------------------------------- */

/* What to log of a housekeeping statement that failed: the server's message
 * when it answered with an error, else the error's code. */
static const char *failure_text(bx_err e, const PGresult *res)
{
    return e == BX_ERR_INTERNAL && res ? PQresultErrorMessage(res) : bx_err_info(e)->code;
}

static void swept(void *arg, bx_err e, const PGresult *res)
{
    struct apg *a = arg;
    a->sweeping = false;
    if (e != BX_OK)
        log_warn("hold sweep failed: %s", failure_text(e, res));
    else if (PQntuples(res) == 1 && pg_col_i64(res, 0, 1) > 0)
        log_debug("hold sweep expired %" PRId64 " reservations", pg_col_i64(res, 0, 1));
}

static void replanned(void *arg, bx_err e, const PGresult *res)
{
    (void)arg;
    if (e != BX_OK)
        log_warn("DISCARD PLANS failed: %s", failure_text(e, res));
}

/* Ended holds free their seats (bx_sweep announces them), once a second. N
 * instances sweep at once without waiting on each other (SKIP LOCKED).
 *
 * Before it, both connections drop their cached plans. bx_write_batch runs on
 * generic plans, and prepared reads switch to one after five runs; each is made
 * once per connection and kept. On a new database they are made at the start of
 * the first sale, for empty tables, where every index looks as cheap as any
 * other, and a plan that reads a whole index per item then stays while the tables
 * grow (pg_schema.h, migration 5). Planned again each second, on sizes that
 * PostgreSQL takes from the tables' current length, the plans follow the sale, at
 * the cost of one planning of each statement in use a second. */
static void apg_housekeeping(struct astore *base, int64_t now)
{
    struct apg *a = apg_of(base);
    if (a->sweeping || now - a->last_sweep < SWEEP_EVERY_MS)
        return;
    a->last_sweep = now;
    (void)pg_conn_query(a->wr, ST_REPLAN, 0, NULL, NULL, NULL, replanned, a); /* best effort */
    (void)pg_conn_query(a->rd, ST_REPLAN, 0, NULL, NULL, NULL, replanned, a);
    struct pg_params p = {0};
    pg_param_i64(&p, now);
    pg_param_text(&p, SWEEP_BATCH);
    if (pg_conn_query(a->wr, ST_SWEEP, p.n, p.values, p.lengths, p.formats, swept, a) == 0)
        a->sweeping = true;
}

/* ---- open and close ------------------------------------------------------- */

static void apg_close(struct astore *base)
{
    struct apg *a = apg_of(base);
    struct queued_write *queued = a->wq_head;
    a->wq_head = NULL;
    a->wq_tail = &a->wq_head;
    a->nqueued = 0;
    writes_answer(queued, NULL, BX_ERR_UNAVAILABLE);
    if (h2o_timeout_is_linked(&a->batch_entry))
        h2o_timeout_unlink(&a->batch_entry);
    if (h2o_timeout_is_linked(&a->barrier_entry))
        h2o_timeout_unlink(&a->barrier_entry);
    struct waiter *waiting = a->barrier_head;
    a->barrier_head = NULL;
    barrier_done(waiting, BX_ERR_UNAVAILABLE, NULL);
    pg_conn_close(a->wr); /* the batch in flight is answered; nothing new is queued */
    pg_conn_close(a->rd); /* loads and barriers are answered */
    h2o_timeout_dispose(a->loop, &a->zero);
    seat_board_free(a->board);
    free(a->batch);
    free(a->url);
    free(a);
}

static bool apg_schedule_peek(struct astore *a, int64_t schedule_id, int64_t *concert_id, int32_t *seat_count)
{
    return seat_board_info(apg_of(a)->board, schedule_id, concert_id, seat_count);
}

static const struct astore_ops apg_ops = {
    .name = "postgresql",
    .close = apg_close,
    .housekeeping = apg_housekeeping,
    .ping = apg_ping,
    .user_create = apg_user_create,
    .user_find_by_name = apg_user_find_by_name,
    .balance_get = apg_balance_get,
    .concert_create = apg_concert_create,
    .concert_get = apg_concert_get,
    .concert_list = apg_concert_list,
    .schedule_create = apg_schedule_create,
    .schedule_get = apg_schedule_get,
    .schedule_peek = apg_schedule_peek,
    .dates = apg_dates,
    .seats = apg_seats,
    .reservation_get = apg_reservation_get,
    .reservation_list = apg_reservation_list,
    .payment_list = apg_payment_list,
    .counts = apg_counts,
    .write = apg_write,
};

struct astore *astore_pg_open(const char *url, h2o_evloop_t *loop, h2o_multithread_queue_t *queue, char *err,
                              size_t errlen)
{
    (void)queue;
    struct apg *a = calloc(1, sizeof *a);
    if (a == NULL || (a->url = strdup(url)) == NULL || (a->board = seat_board_new()) == NULL ||
        (a->batch = calloc(BATCH_MAX, sizeof *a->batch)) == NULL) {
        snprintf(err, errlen, "out of memory");
        if (a != NULL) {
            seat_board_free(a->board);
            free(a->url);
            free(a);
        }
        return NULL;
    }
    a->base.ops = &apg_ops;
    a->loop = loop;
    a->barrier_tail = &a->barrier_head;
    a->wq_tail = &a->wq_head;
    h2o_timeout_init(loop, &a->zero, 0);
    a->barrier_entry.cb = on_barrier_time;
    a->batch_entry.cb = on_batch_time;
    a->wr_cfg = (struct pg_conn_config){.conninfo = a->url,
                                        .statements = statements,
                                        .statement_count = ST__COUNT,
                                        .reply_wait_ms = REPLY_WAIT_MS,
                                        .max_queued = MAX_QUEUED,
                                        .arg = a};
    a->rd_cfg = a->wr_cfg;
    a->rd_cfg.listen_channel = PG_SEATS_CHANNEL;
    a->rd_cfg.on_notify = on_seats_changed;
    a->rd_cfg.on_state = on_rd_state;
    a->rd = pg_conn_open(loop, &a->rd_cfg);
    a->wr = pg_conn_open(loop, &a->wr_cfg);
    if (a->rd == NULL || a->wr == NULL) {
        snprintf(err, errlen, "cannot connect to %s", url);
        if (a->rd != NULL)
            pg_conn_close(a->rd);
        if (a->wr != NULL)
            pg_conn_close(a->wr);
        h2o_timeout_dispose(loop, &a->zero);
        seat_board_free(a->board);
        free(a->batch);
        free(a->url);
        free(a);
        return NULL;
    }
    return &a->base;
}
