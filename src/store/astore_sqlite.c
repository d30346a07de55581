/* astore_sqlite.c — the serving store of embedded mode (astore.h) over SQLite.
 * Reads, sign-ups and the catalogue run on the loop's own connection and answer
 * before the call returns: SQLite reads its page cache without waiting on a
 * network, the embedded model (DESIGN.md). Holds, cancels, charges and payments
 * go to the group-commit writer (store/group_commit.c) and answer on the loop
 * once their batch is durable.
 *
 * Seat maps and date lists come from one seat board per process
 * (store/seat_board.c): the writer applies every committed seat change to it in
 * commit order before the batch's answers go out, so a map read after an
 * answer shows what the answer said; a schedule nobody looked at yet is read from
 * the store once and kept.
 */
#include "store/astore.h"
#include "store/group_commit.h"
#include "store/seat_board.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One loop's store. */
struct sq {
    struct astore base;
    struct store *s;                /* the loop's connection, owned */
    h2o_multithread_receiver_t rx;  /* answers of the group-commit writer */
};

/* The process-wide board of embedded mode, applied to by the writer thread. */
static struct seat_board *board;

static struct sq *sq_of(struct astore *a)
{
    return (struct sq *)a;
}

/* ---- the writer's side (writer thread) ---- */

static void board_apply(const struct store_write *w)
{
    if (w->result != BX_OK)
        return;
    if (w->kind == STORE_WRITE_HOLD)
        seat_board_set(board, w->schedule_id, w->seat_no, SEAT_HELD, w->reservation.expires_at);
    else if (w->kind == STORE_WRITE_PAY)
        seat_board_set(board, w->schedule_id, w->seat_no, SEAT_SOLD, 0);
    else if (w->kind == STORE_WRITE_CANCEL)
        seat_board_forget_all(board); /* the freed seat is not named here, and cancels are rare */
}

static void board_forget(void)
{
    seat_board_forget_all(board); /* whatever the failed commit left */
}

int astore_sqlite_start(const char *path, char *err, size_t errlen)
{
    struct store *writer = store_sqlite_open(path, 0, err, errlen);
    if (writer == NULL)
        return -1;
    board = seat_board_new();
    static const struct group_commit_hooks hooks = {.committed = board_apply, .failed = board_forget};
    if (board == NULL || group_commit_start(writer, &hooks) != 0) {
        snprintf(err, errlen, "cannot start the store writer");
        seat_board_free(board);
        board = NULL;
        return -1;
    }
    return 0;
}

void astore_sqlite_stop(void)
{
    group_commit_stop();
    seat_board_free(board);
    board = NULL;
}

/* ---- writes ---- */

/* On the loop: a batch is over. */
static void on_written(h2o_multithread_receiver_t *rx, h2o_linklist_t *messages)
{
    (void)rx;
    while (!h2o_linklist_is_empty(messages)) {
        struct group_commit_job *j = H2O_STRUCT_FROM_MEMBER(struct group_commit_job, msg.link, messages->next);
        h2o_linklist_unlink(&j->msg.link);
        j->done(j->arg, j->batch_err != BX_OK ? j->batch_err : j->write->result);
        free(j);
    }
}

static void sq_write(struct astore *a, struct store_write *w, astore_done_fn done, void *arg)
{
    struct sq *q = sq_of(a);
    struct group_commit_job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        done(arg, BX_ERR_UNAVAILABLE);
        return;
    }
    *j = (struct group_commit_job){.reply_to = &q->rx, .write = w, .done = done, .arg = arg};
    if (group_commit_submit(j) != 0) {
        free(j);
        done(arg, BX_ERR_UNAVAILABLE);
    }
}

/* ---- reads: answered at once ---- */

static void sq_ping(struct astore *a, astore_done_fn done, void *arg)
{
    struct store *s = sq_of(a)->s;
    done(arg, s->ops->ping ? s->ops->ping(s) : BX_OK);
}

static void sq_user_create(struct astore *a, const char *name, const char *pwhash, int64_t *user_id,
                           astore_done_fn done, void *arg)
{
    struct store *s = sq_of(a)->s;
    done(arg, s->ops->user_create(s, name, pwhash, user_id));
}

static void sq_user_find_by_name(struct astore *a, const char *name, struct user *out, astore_done_fn done, void *arg)
{
    struct store *s = sq_of(a)->s;
    done(arg, s->ops->user_find_by_name(s, name, out));
}

static void sq_balance_get(struct astore *a, int64_t user_id, int64_t *balance, astore_done_fn done, void *arg)
{
    struct store *s = sq_of(a)->s;
    done(arg, s->ops->balance_get(s, user_id, balance));
}

static void sq_concert_create(struct astore *a, const char *title, const char *venue, int64_t *concert_id,
                              astore_done_fn done, void *arg)
{
    struct store *s = sq_of(a)->s;
    done(arg, s->ops->concert_create(s, title, venue, concert_id));
}

static void sq_concert_get(struct astore *a, int64_t concert_id, struct concert *out, astore_done_fn done, void *arg)
{
    struct store *s = sq_of(a)->s;
    done(arg, s->ops->concert_get(s, concert_id, out));
}

static void sq_concert_list(struct astore *a, struct concert **out, size_t *n, astore_done_fn done, void *arg)
{
    struct store *s = sq_of(a)->s;
    done(arg, s->ops->concert_list(s, out, n));
}

static void sq_schedule_create(struct astore *a, const struct schedule *in, int64_t price, int64_t *schedule_id,
                               astore_done_fn done, void *arg)
{
    struct store *s = sq_of(a)->s;
    done(arg, s->ops->schedule_create(s, in, price, schedule_id));
}

static void sq_schedule_get(struct astore *a, int64_t schedule_id, struct schedule *out, astore_done_fn done,
                            void *arg)
{
    struct store *s = sq_of(a)->s;
    done(arg, s->ops->schedule_get(s, schedule_id, 0, false, out));
}

/* The free seats of dates on the board are counted there; when one is not on
 * it, the store counts them all. */
static bx_err dates_read(struct sq *q, int64_t concert_id, int64_t now, struct schedule **out, size_t *n)
{
    struct store *s = q->s;
    bx_err e = s->ops->schedule_list_bookable(s, concert_id, now, false, out, n);
    for (size_t i = 0; e == BX_OK && i < *n; i++)
        if (!seat_board_available(board, (*out)[i].id, now, &(*out)[i].available)) {
            free(*out);
            *out = NULL;
            return s->ops->schedule_list_bookable(s, concert_id, now, true, out, n);
        }
    return e;
}

static void sq_dates(struct astore *a, int64_t concert_id, int64_t now, struct schedule **out, size_t *n,
                     astore_done_fn done, void *arg)
{
    *out = NULL;
    *n = 0;
    done(arg, dates_read(sq_of(a), concert_id, now, out, n));
}

/* From the board when it knows the schedule; otherwise from the store, and the
 * read is kept on the board unless a change was applied while it ran. */
static bx_err seats_read(struct sq *q, int64_t schedule_id, int64_t now, uint64_t known, struct seat_map *out)
{
    size_t cap = 0;
    *out = (struct seat_map){0};
    if (seat_board_get(board, schedule_id, &out->version, &out->concert_id, 0, NULL, NULL, NULL)) {
        if (known != 0 && out->version == known)
            return BX_OK;
        if (seat_board_get(board, schedule_id, &out->version, &out->concert_id, 1, &out->seats, &cap, &out->n))
            return BX_OK;
        free(out->seats); /* forgotten in between, or out of memory: read the store */
        *out = (struct seat_map){0};
    }
    uint64_t epoch = seat_board_epoch(board);
    bx_err e = q->s->ops->seat_list(q->s, schedule_id, now, &out->concert_id, &out->seats, &out->n);
    if (e != BX_OK)
        return e;
    seat_board_put(board, epoch, schedule_id, out->concert_id, out->seats, out->n);
    int64_t concert_id;
    if (!seat_board_get(board, schedule_id, &out->version, &concert_id, 0, NULL, NULL, NULL))
        out->version = 0; /* not kept: this copy has no version */
    return BX_OK;
}

static void sq_seats(struct astore *a, int64_t schedule_id, int64_t now, uint64_t known, struct seat_map *out,
                     astore_done_fn done, void *arg)
{
    done(arg, seats_read(sq_of(a), schedule_id, now, known, out));
}

static void sq_reservation_get(struct astore *a, int64_t user_id, int64_t reservation_id, int64_t now,
                               struct reservation *out, astore_done_fn done, void *arg)
{
    struct store *s = sq_of(a)->s;
    done(arg, s->ops->reservation_get(s, user_id, reservation_id, now, out));
}

static void sq_reservation_list(struct astore *a, int64_t user_id, int64_t now, struct reservation **out, size_t *n,
                                astore_done_fn done, void *arg)
{
    struct store *s = sq_of(a)->s;
    done(arg, s->ops->reservation_list(s, user_id, now, out, n));
}

static void sq_payment_list(struct astore *a, int64_t user_id, int64_t before_id, int limit, struct payment **out,
                            size_t *n, astore_done_fn done, void *arg)
{
    struct store *s = sq_of(a)->s;
    done(arg, s->ops->payment_list(s, user_id, before_id, limit, out, n));
}

static void sq_counts(struct astore *a, int64_t now, int64_t *holds_live, int64_t *seats_sold, astore_done_fn done,
                      void *arg)
{
    struct store *s = sq_of(a)->s;
    done(arg, s->ops->counts(s, now, holds_live, seats_sold));
}

/* The writer sweeps between its batches. */
static void sq_housekeeping(struct astore *a, int64_t now)
{
    (void)a;
    (void)now;
}

static void sq_close(struct astore *a)
{
    struct sq *q = sq_of(a);
    h2o_multithread_unregister_receiver(q->rx.queue, &q->rx);
    q->s->ops->close(q->s);
    free(q);
}

static bool sq_schedule_peek(struct astore *a, int64_t schedule_id, int64_t *concert_id, int32_t *seat_count)
{
    (void)a;
    return seat_board_info(board, schedule_id, concert_id, seat_count);
}

static const struct astore_ops sq_ops = {
    .name = "sqlite",
    .close = sq_close,
    .housekeeping = sq_housekeeping,
    .ping = sq_ping,
    .user_create = sq_user_create,
    .user_find_by_name = sq_user_find_by_name,
    .balance_get = sq_balance_get,
    .concert_create = sq_concert_create,
    .concert_get = sq_concert_get,
    .concert_list = sq_concert_list,
    .schedule_create = sq_schedule_create,
    .schedule_get = sq_schedule_get,
    .schedule_peek = sq_schedule_peek,
    .dates = sq_dates,
    .seats = sq_seats,
    .reservation_get = sq_reservation_get,
    .reservation_list = sq_reservation_list,
    .payment_list = sq_payment_list,
    .counts = sq_counts,
    .write = sq_write,
};

struct astore *astore_sqlite_open(const char *path, h2o_evloop_t *loop, h2o_multithread_queue_t *queue, char *err,
                                  size_t errlen)
{
    (void)loop;
    if (board == NULL) {
        snprintf(err, errlen, "the store writer is not running (astore_start)");
        return NULL;
    }
    struct store *s = store_sqlite_open(path, 0, err, errlen);
    if (s == NULL)
        return NULL;
    struct sq *q = calloc(1, sizeof *q);
    if (q == NULL) {
        s->ops->close(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    q->base.ops = &sq_ops;
    q->s = s;
    h2o_multithread_register_receiver(queue, &q->rx, on_written);
    return &q->base;
}
