/* store.h — the storage interface (CONTRACT §2, §3, §6). One `struct store` is one
 * connection, owned by one thread (each event loop opens its own). Every call is
 * one transaction unless it says otherwise; every function returns a bx_err and
 * writes results through out-parameters. Lists are malloc'd: the caller frees.
 * Backends: store_sqlite.c (embedded), store_pg.c (scale-out). */
#ifndef BX_STORE_STORE_H
#define BX_STORE_STORE_H

#include "domain/errors.h"
#include "domain/types.h"

struct store;

/* A queue token as persisted by the in-process waiting room (queue/waitroom_mem.c). */
enum queue_status { QUEUE_WAITING = 0, QUEUE_ACTIVE, QUEUE_EXPIRED };

struct queue_record {
    char token[BX_QUEUE_TOKEN_LEN + 1];
    int64_t user_id;
    int64_t concert_id;
    int64_t seq;          /* issue order within the concert: FIFO key */
    enum queue_status status;
    int64_t issued_at;
    int64_t activated_at; /* 0 while WAITING */
    int64_t last_seen_at;
    int64_t expires_at;   /* 0 while live; set when EXPIRED */
};

/* A write the serving path makes: a hold, a cancel, a charge or a payment, as
 * data, so that a backend can run many of them in one transaction (group commit
 * in SQLite, one batched call in PostgreSQL). The ops behind each kind are the
 * store_ops of the same name below; store_write_run runs one through them. */
enum store_write_kind { STORE_WRITE_HOLD = 1, STORE_WRITE_CANCEL, STORE_WRITE_CHARGE, STORE_WRITE_PAY };

struct store_write {
    enum store_write_kind kind;
    int64_t user_id;
    int64_t now;
    /* HOLD; PAY: the reservation's seat as the caller read it (seat boards) */
    int64_t schedule_id;
    int32_t seat_no;
    /* HOLD */
    int64_t hold_ms;
    int max_per_user;
    /* CANCEL, PAY */
    int64_t reservation_id;
    /* CHARGE: the amount (validated); PAY: the amount the client expects, -1 when not sent */
    int64_t amount;
    /* PAY: the reservation's concert, as the caller read it (for live_holds_left) */
    int64_t concert_id;
    /* CHARGE, PAY: the Idempotency-Key (has_key false: none sent) and the hash of the body */
    bool has_key;
    char key[BX_IDEM_KEY_MAX + 1];
    unsigned char request_hash[32];

    /* Outcome, filled by the store. */
    bx_err result;                  /* BX_OK, BX_REPLAY or the refusal */
    struct reservation reservation; /* HOLD: the new hold */
    struct payment payment;         /* PAY: the payment (also on BX_REPLAY) */
    int64_t balance;                /* CHARGE: the balance after (also on BX_REPLAY) */
    int live_holds_left;            /* PAY, BX_OK: the user's live holds left on that concert */
};

/* Fills idem for the store ops from a write (valid while w lives). */
void store_write_idem(const struct store_write *w, struct idem *idem);
/* Copies an idempotency key into a write (the write outlives the request). */
void store_write_set_idem(struct store_write *w, const struct idem *idem);

/* One finding of `boxoffice audit`: which invariant (CONTRACT §3, 1..5) and what. */
typedef void (*store_audit_cb)(int invariant, const char *finding, void *arg);

struct store_ops {
    const char *name;
    void (*close)(struct store *s);

    /* Schema: versioned, idempotent. */
    bx_err (*migrate)(struct store *s);
    bx_err (*ping)(struct store *s);
    /* Reads the HMAC secret; creates and stores a random one on first call. */
    bx_err (*secret_get_or_create)(struct store *s, unsigned char secret[32]);

    /* Users and money. */
    bx_err (*user_create)(struct store *s, const char *name, const char *pwhash, int64_t *user_id); /* NAME_TAKEN */
    bx_err (*user_find_by_name)(struct store *s, const char *name, struct user *out);            /* NOT_FOUND */
    bx_err (*balance_get)(struct store *s, int64_t user_id, int64_t *balance);                   /* NOT_FOUND */
    /* Adds amount (already validated 1..10,000,000) and a CHARGE ledger entry.
     * BALANCE_LIMIT past 1e12. With idem->key: a replay returns BX_REPLAY and the
     * balance recorded by the first call; another body under the key: IDEMPOTENCY_MISMATCH. */
    bx_err (*balance_charge)(struct store *s, int64_t user_id, int64_t amount, int64_t now, const struct idem *idem,
                             int64_t *balance_after);

    /* Catalogue. */
    bx_err (*concert_create)(struct store *s, const char *title, const char *venue, int64_t *concert_id);
    bx_err (*concert_get)(struct store *s, int64_t concert_id, struct concert *out); /* CONCERT_NOT_FOUND */
    bx_err (*concert_list)(struct store *s, struct concert **out, size_t *n);
    /* Creates the schedule and seats 1..seat_count at price. CONCERT_NOT_FOUND. */
    bx_err (*schedule_create)(struct store *s, const struct schedule *in, int64_t price, int64_t *schedule_id);
    /* count_available false: available = -1, and the schedule's live holds are not counted */
    bx_err (*schedule_get)(struct store *s, int64_t schedule_id, int64_t now, bool count_available,
                           struct schedule *out); /* SCHEDULE_NOT_FOUND */
    /* Schedules of a concert on sale at `now` (sale_opens_at <= now < sale_closes_at), by starts_at. */
    bx_err (*schedule_list_bookable)(struct store *s, int64_t concert_id, int64_t now, bool count_available,
                                     struct schedule **out, size_t *n);
    /* All seats by seat_no; available = not SOLD and no live hold at `now`. Also the
     * schedule's concert (concert_id may be NULL), in the same single read. */
    bx_err (*seat_list)(struct store *s, int64_t schedule_id, int64_t now, int64_t *concert_id, struct seat **out,
                        size_t *n);
    /* Optional (NULL: use seat_list): the same read folded in the store into what a
     * compact seat map shows. *flags (malloc'd, *seat_count chars, no NUL) has '1' for
     * seat k+1 when it is available at `now`, else '0'; *price is every seat's
     * price, or -1 when prices differ; *seat_count is 0 (and *flags NULL) unless the
     * seats are numbered 1..n without gaps. SCHEDULE_NOT_FOUND without seats. */
    bx_err (*seat_flags)(struct store *s, int64_t schedule_id, int64_t now, int64_t *concert_id, int32_t *seat_count,
                         int64_t *price, char **flags);

    /* Holds (CONTRACT §6). One conditional update: the seat must be free at `now`
     * (never held, or its hold expired — that reservation becomes EXPIRED in the same
     * transaction). SEAT_NOT_FOUND, SEAT_UNAVAILABLE, SEAT_LIMIT (invariant 5). */
    bx_err (*hold_seat)(struct store *s, int64_t user_id, int64_t schedule_id, int32_t seat_no, int64_t now,
                        int64_t hold_ms, int max_per_user, struct reservation *out);
    /* Owner only: anyone else's id is RESERVATION_NOT_FOUND. */
    bx_err (*reservation_get)(struct store *s, int64_t user_id, int64_t reservation_id, int64_t now,
                              struct reservation *out);
    bx_err (*reservation_list)(struct store *s, int64_t user_id, int64_t now, struct reservation **out, size_t *n);
    /* HELD and live → CANCELLED, seat free. Otherwise NOT_HELD (or RESERVATION_NOT_FOUND). */
    bx_err (*reservation_cancel)(struct store *s, int64_t user_id, int64_t reservation_id, int64_t now);
    /* Count of the user's live holds on the concert (decides whether paying ends the queue token). */
    bx_err (*live_holds_on_concert)(struct store *s, int64_t user_id, int64_t concert_id, int64_t now, int *count);

    /* Payment, one transaction (CONTRACT §3, §6): hold live at commit, debit with
     * balance >= 0, payment + PAYMENT ledger entry, reservation CONFIRMED, seat SOLD.
     * expected_amount < 0: not sent. Errors: RESERVATION_NOT_FOUND, HOLD_EXPIRED,
     * ALREADY_PAID, NOT_HELD, PRICE_MISMATCH, INSUFFICIENT_BALANCE, IDEMPOTENCY_MISMATCH.
     * BX_REPLAY: the payment made under this key. Durable before return (invariant 4). */
    bx_err (*pay)(struct store *s, int64_t user_id, int64_t reservation_id, int64_t expected_amount, int64_t now,
                  const struct idem *idem, struct payment *out);
    /* Newest first; before_id 0 = from the newest; at most limit rows. */
    bx_err (*payment_list)(struct store *s, int64_t user_id, int64_t before_id, int limit, struct payment **out,
                           size_t *n);

    /* Whole-database gauges for /metrics: live holds and sold seats at `now`. */
    bx_err (*counts)(struct store *s, int64_t now, int64_t *holds_live, int64_t *seats_sold);

    /* Group commit, optional (NULL when every op commits on its own): between
     * batch_begin and batch_commit each write op runs in a savepoint of one outer
     * transaction (its refusal undoes only itself) and NOTHING is durable until
     * batch_commit returns BX_OK; if it fails, every op of the batch failed. */
    bx_err (*batch_begin)(struct store *s);
    bx_err (*batch_commit)(struct store *s);

    /* Sweeper: HELD reservations past expires_at → EXPIRED and their seats AVAILABLE. */
    bx_err (*sweep_holds)(struct store *s, int64_t now, int *expired);

    /* Waiting-room persistence for the in-process queue. */
    /* Upsert by token; an update keeps the first issued_at. */
    bx_err (*queue_save)(struct store *s, const struct queue_record *rec);
    /* Live (WAITING/ACTIVE) records, ordered by concert then seq. cb returns non-zero to stop. */
    bx_err (*queue_load)(struct store *s, int (*cb)(const struct queue_record *rec, void *arg), void *arg);
    bx_err (*queue_find)(struct store *s, const char *token, struct queue_record *out); /* NOT_FOUND */

    /* Checks invariants 1..5 of CONTRACT §3 (5 only when max_per_user > 0); calls cb
     * per finding; *violations = count. */
    bx_err (*audit)(struct store *s, int64_t now, int max_per_user, store_audit_cb cb, void *arg, int *violations);
};

struct store {
    const struct store_ops *ops;
};

/* store_open flags. */
#define STORE_OPEN_RELAXED 1 /* commits may skip the power-loss flush (queue persistence only, never money) */

/* Opens a connection for the URL given by --db: "sqlite:<path>" or
 * "postgresql://…". On failure returns NULL and writes a reason into err. */
struct store *store_open(const char *url, int flags, char *err, size_t errlen);
struct store *store_sqlite_open(const char *path, int flags, char *err, size_t errlen);
struct store *store_pg_open(const char *url, int flags, char *err, size_t errlen);

/* Runs one write through the store's ops (inside a batch when the caller began
 * one) and keeps its outcome in w->result and the outcome fields. */
void store_write_run(struct store *s, struct store_write *w);

/* PostgreSQL only (s from store_pg_open): runs w[0..n) in ONE transaction, in
 * order, through bx_write_batch (pg_schema.h, migration 3), which also announces
 * the seats they changed on channel bx_seats; each write's outcome goes to its
 * result and outcome fields. When the server refuses the whole call (an item
 * raised, so nothing committed), each write is run again alone. BX_OK: every
 * write has its outcome, durable (invariant 4); otherwise that error and nothing
 * is known of the writes (BX_ERR_UNAVAILABLE: they may have committed). */
bx_err store_pg_write_batch(struct store *s, struct store_write *w, size_t n);

#endif
