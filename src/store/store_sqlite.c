/* store_sqlite.c — the embedded storage backend (CONTRACT §2): one SQLite connection
 * per struct store, WAL, every write in BEGIN IMMEDIATE with conditional updates.
 * No HTTP and no business policy beyond the invariants of CONTRACT §3 it enforces. */
#define _GNU_SOURCE
#include "store/store.h"

#include <errno.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "domain/money.h"
#include "store/sqlite_schema.h"
#include "util/clock.h"

#define BUSY_TIMEOUT_MS 5000
#define SWEEP_BATCH 1000
#define RES_COLS                                                                                                      \
    "r.id, r.user_id, r.schedule_id, s.concert_id, r.seat_no, r.price, r.status, r.held_at, r.expires_at, "          \
    "r.confirmed_at FROM reservations r JOIN schedules s ON s.id = r.schedule_id "
/* available at ?2 = seats neither SOLD nor under a live hold: sold_count (kept by a
 * trigger, migration 2) and a range count of seats_held_by_schedule, so the cost is
 * the schedule's live holds, not its seats. An ended, unswept hold counts as free.
 * Only when ?3 (count_available) is true; -1 otherwise (CASE skips the subquery). */
#define SCHED_COLS                                                                                                    \
    "s.id, s.concert_id, s.starts_at, s.sale_opens_at, s.sale_closes_at, s.seat_count, "                             \
    "CASE WHEN ?3 THEN s.seat_count - s.sold_count - (SELECT count(*) FROM seats t "                         \
    "WHERE t.schedule_id = s.id AND t.status = 'HELD' AND t.hold_expires_at > ?2) ELSE -1 END "\
    "FROM schedules s "
#define PAY_COLS "id, user_id, reservation_id, amount, balance_after, paid_at FROM payments "
#define QUEUE_COLS "token, user_id, concert_id, seq, status, issued_at, activated_at, last_seen_at, expires_at "

/* Every statement the backend runs, prepared on first use and kept for the
 * connection's life. Values are always bound, never spliced into the text. */
#define STMT_LIST(X)                                                                                                  \
    X(BEGIN_WRITE, "BEGIN IMMEDIATE")                                                                                 \
    X(BEGIN_READ, "BEGIN")                                                                                            \
    X(COMMIT, "COMMIT")                                                                                               \
    X(ROLLBACK, "ROLLBACK")                                                                                           \
    X(SAVEPOINT, "SAVEPOINT op")                                                                                      \
    X(RELEASE, "RELEASE op")                                                                                          \
    X(ROLLBACK_TO, "ROLLBACK TO op")                                                                                  \
    X(MIG_VERSION, "SELECT coalesce(max(version), 0) FROM schema_migrations")                                         \
    X(MIG_RECORD, "INSERT INTO schema_migrations(version, applied_at) VALUES (?1, ?2)")                              \
    X(META_GET, "SELECT value FROM meta WHERE key = ?1")                                                              \
    X(META_INSERT, "INSERT OR IGNORE INTO meta(key, value) VALUES (?1, ?2)")                                         \
    X(USER_INSERT, "INSERT INTO users(name, pwhash) VALUES (?1, ?2)")                                                 \
    X(USER_BY_NAME, "SELECT id, name, pwhash, balance FROM users WHERE name = ?1")                                    \
    X(BALANCE_GET, "SELECT balance FROM users WHERE id = ?1")                                                         \
    X(BALANCE_ADD, "UPDATE users SET balance = balance + ?2 WHERE id = ?1")                                           \
    X(BALANCE_DEBIT, "UPDATE users SET balance = balance - ?2 WHERE id = ?1 AND balance >= ?2")                       \
    X(LEDGER_INSERT, "INSERT INTO ledger(user_id, kind, amount, balance_after, created_at, reference) "               \
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6)")                                                               \
    X(LEDGER_BALANCE_AFTER, "SELECT balance_after FROM ledger WHERE id = ?1 AND user_id = ?2")                        \
    X(IDEM_GET, "SELECT request_hash, result_id FROM idempotency WHERE user_id = ?1 AND scope = ?2 AND key = ?3")     \
    X(IDEM_INSERT, "INSERT INTO idempotency(user_id, scope, key, request_hash, result_id, created_at) "               \
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6)")                                                                 \
    X(CONCERT_INSERT, "INSERT INTO concerts(title, venue) VALUES (?1, ?2)")                                           \
    X(CONCERT_GET, "SELECT id, title, venue FROM concerts WHERE id = ?1")                                             \
    X(CONCERT_LIST, "SELECT id, title, venue FROM concerts ORDER BY id")                                              \
    X(SCHEDULE_INSERT, "INSERT INTO schedules(concert_id, starts_at, sale_opens_at, sale_closes_at, seat_count) "     \
                       "VALUES (?1, ?2, ?3, ?4, ?5)")                                                                 \
    X(SEAT_INSERT, "INSERT INTO seats(schedule_id, seat_no, price) VALUES (?1, ?2, ?3)")                              \
    X(SCHEDULE_GET, "SELECT " SCHED_COLS "WHERE s.id = ?1")                                                           \
    X(SCHEDULE_BOOKABLE, "SELECT " SCHED_COLS "WHERE s.concert_id = ?1 AND s.sale_opens_at <= ?2 "                   \
                         "AND ?2 < s.sale_closes_at ORDER BY s.starts_at, s.id")                                      \
    X(SEAT_LIST, "SELECT t.seat_no, t.price, CASE WHEN t.status = 'SOLD' THEN 2 "                                     \
                 "WHEN t.status = 'HELD' AND t.hold_expires_at > ?2 THEN 1 ELSE 0 END, s.concert_id, "                \
                 "CASE WHEN t.status = 'HELD' AND t.hold_expires_at > ?2 THEN t.hold_expires_at ELSE 0 END "          \
                 "FROM schedules s LEFT JOIN seats t ON t.schedule_id = s.id WHERE s.id = ?1 ORDER BY t.seat_no")     \
    X(SCHEDULE_SALE, "SELECT concert_id, sale_opens_at, sale_closes_at FROM schedules WHERE id = ?1")                 \
    X(SEAT_GET, "SELECT price, status, reservation_id, hold_expires_at FROM seats "                                  \
                "WHERE schedule_id = ?1 AND seat_no = ?2")                                                            \
    X(USER_SEATS_ON_SCHEDULE, "SELECT count(*) FROM reservations WHERE schedule_id = ?1 AND user_id = ?2 "           \
                              "AND (status = 'CONFIRMED' OR (status = 'HELD' AND expires_at > ?3))")                  \
    X(RES_INSERT, "INSERT INTO reservations(user_id, schedule_id, seat_no, price, status, held_at, expires_at) "     \
                  "VALUES (?1, ?2, ?3, ?4, 'HELD', ?5, ?6)")                                                          \
    X(SEAT_TAKE, "UPDATE seats SET status = 'HELD', reservation_id = ?1, hold_expires_at = ?2 "                      \
                 "WHERE schedule_id = ?3 AND seat_no = ?4 "                                                           \
                 "AND (status = 'AVAILABLE' OR (status = 'HELD' AND hold_expires_at <= ?5))")                         \
    X(RES_EXPIRE, "UPDATE reservations SET status = 'EXPIRED' WHERE id = ?1 AND status = 'HELD' AND expires_at <= ?2") \
    X(SEAT_RELEASE, "UPDATE seats SET status = 'AVAILABLE', reservation_id = NULL, hold_expires_at = NULL "          \
                    "WHERE schedule_id = ?1 AND seat_no = ?2 AND reservation_id = ?3 AND status = 'HELD'")            \
    X(RES_GET, "SELECT " RES_COLS "WHERE r.id = ?1 AND r.user_id = ?2")                                               \
    X(RES_LIST, "SELECT " RES_COLS "WHERE r.user_id = ?1 ORDER BY r.id DESC")                                        \
    X(RES_CANCEL, "UPDATE reservations SET status = 'CANCELLED' "                                                    \
                  "WHERE id = ?1 AND user_id = ?2 AND status = 'HELD' AND expires_at > ?3")                           \
    X(COUNT_LIVE_HOLDS, "SELECT count(*) FROM reservations WHERE status = 'HELD' AND expires_at > ?1")                \
    X(COUNT_SOLD, "SELECT count(*) FROM reservations WHERE status = 'CONFIRMED'")                                    \
    /* unary + keeps the planner on reservations_by_user: without statistics it would   \
     * pick reservations_by_status_expiry and walk every live hold of the server */         \
    X(LIVE_HOLDS_ON_CONCERT, "SELECT count(*) FROM reservations r JOIN schedules s ON s.id = r.schedule_id "         \
                             "WHERE r.user_id = ?1 AND s.concert_id = ?2 AND +r.status = 'HELD' "                     \
                             "AND +r.expires_at > ?3")                                                                \
    X(PAYMENT_GET, "SELECT " PAY_COLS "WHERE id = ?1 AND user_id = ?2")                                               \
    X(PAYMENT_INSERT, "INSERT INTO payments(user_id, reservation_id, amount, balance_after, paid_at, idempotency_key) " \
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6)")                                                              \
    X(RES_CONFIRM, "UPDATE reservations SET status = 'CONFIRMED', confirmed_at = ?2 "                                \
                   "WHERE id = ?1 AND status = 'HELD' AND expires_at > ?2")                                           \
    X(SEAT_SELL, "UPDATE seats SET status = 'SOLD', hold_expires_at = NULL "                                          \
                 "WHERE schedule_id = ?1 AND seat_no = ?2 AND reservation_id = ?3 AND status = 'HELD'")               \
    X(PAYMENT_LIST, "SELECT " PAY_COLS "WHERE user_id = ?1 ORDER BY id DESC LIMIT ?2")                                \
    X(PAYMENT_LIST_BEFORE, "SELECT " PAY_COLS "WHERE user_id = ?1 AND id < ?3 ORDER BY id DESC LIMIT ?2")             \
    X(SWEEP_SELECT, "SELECT id, schedule_id, seat_no FROM reservations "                                             \
                    "WHERE status = 'HELD' AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2")                        \
    X(QUEUE_UPSERT, "INSERT INTO queue_tokens(" QUEUE_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "          \
                    "ON CONFLICT(token) DO UPDATE SET user_id = excluded.user_id, concert_id = excluded.concert_id, " \
                    "seq = excluded.seq, status = excluded.status, "                                                 \
                    "activated_at = excluded.activated_at, last_seen_at = excluded.last_seen_at, "                   \
                    "expires_at = excluded.expires_at")                                                               \
    X(QUEUE_LOAD, "SELECT " QUEUE_COLS "FROM queue_tokens WHERE status IN ('WAITING', 'ACTIVE') "                   \
                  "ORDER BY concert_id, seq")                                                                         \
    X(QUEUE_FIND, "SELECT " QUEUE_COLS "FROM queue_tokens WHERE token = ?1")

#define STMT_ENUM(name, sql) ST_##name,
#define STMT_SQL(name, sql) [ST_##name] = sql,
enum stmt_id { STMT_LIST(STMT_ENUM) ST__COUNT };
static const char *const stmt_sql[ST__COUNT] = {STMT_LIST(STMT_SQL)};

/* Owned by the thread that opened it; freed by sqlite_close. */
struct sqlite_store {
    struct store base; /* first: callers see a struct store */
    sqlite3 *db;
    sqlite3_stmt *stmt[ST__COUNT];
    int batch; /* inside batch_begin..batch_commit: each op is a savepoint */
};

static struct sqlite_store *to_sq(struct store *s)
{
    return (struct sqlite_store *)s;
}

/* ---- statement and transaction helpers ---------------------------------- */

/* Maps a failed SQLite result: busy/locked after the busy timeout is UNAVAILABLE
 * (a retry may succeed); everything else is logged and INTERNAL. */
static bx_err db_error(struct sqlite_store *s, int rc, const char *where)
{
    int primary = rc & 0xff;
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
        fprintf(stderr, "store_sqlite: busy: %s: %s\n", where, sqlite3_errmsg(s->db));
        return BX_ERR_UNAVAILABLE;
    }
    fprintf(stderr, "store_sqlite: %s: %s (rc %d)\n", where, sqlite3_errmsg(s->db), rc);
    return BX_ERR_INTERNAL;
}

/* The cached statement `id`, prepared on first use (after migrate, so the tables exist). */
static bx_err prep(struct sqlite_store *s, enum stmt_id id, sqlite3_stmt **out)
{
    *out = NULL;
    if (s->stmt[id] == NULL) {
        int rc = sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[id], NULL);
        if (rc != SQLITE_OK) {
            s->stmt[id] = NULL;
            return db_error(s, rc, stmt_sql[id]);
        }
    }
    *out = s->stmt[id];
    return BX_OK;
}

/* Returns a statement to its idle state. The result of sqlite3_reset repeats the
 * last step's error, which the caller has already handled; bindings cannot fail to clear. */
static void done(sqlite3_stmt *q)
{
    (void)sqlite3_reset(q);
    (void)sqlite3_clear_bindings(q);
}

/* A bind failed (range, size, memory): reset q and report. */
static bx_err bind_failed(struct sqlite_store *s, sqlite3_stmt *q)
{
    bx_err e = db_error(s, sqlite3_errcode(s->db), sqlite3_sql(q));
    done(q);
    return e;
}

/* Steps q once: 1 = a row is ready, 0 = no more rows (q reset), -1 = error (q reset, *err set). */
static int step(struct sqlite_store *s, sqlite3_stmt *q, bx_err *err)
{
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE) {
        done(q);
        return 0;
    }
    *err = db_error(s, rc, sqlite3_sql(q));
    done(q);
    return -1;
}

/* Runs a bound statement that returns no rows; *changes (if given) = rows changed. */
static bx_err run(struct sqlite_store *s, sqlite3_stmt *q, int *changes)
{
    bx_err e = BX_OK;
    int r;
    if (changes)
        *changes = 0;
    while ((r = step(s, q, &e)) == 1)
        ;
    if (r < 0)
        return e;
    if (changes)
        *changes = sqlite3_changes(s->db);
    return BX_OK;
}

/* Runs a bound single-value query: *found = 0 when it has no row; else *v = column 0. */
static bx_err query_i64(struct sqlite_store *s, sqlite3_stmt *q, int64_t *v, int *found)
{
    bx_err e = BX_OK;
    *v = 0;
    *found = 0;
    int r = step(s, q, &e);
    if (r < 0)
        return e;
    *found = r;
    if (r == 1) {
        *v = sqlite3_column_int64(q, 0);
        done(q);
    }
    return BX_OK;
}

static bx_err run_plain(struct sqlite_store *s, enum stmt_id id)
{
    sqlite3_stmt *q;
    bx_err e = prep(s, id, &q);
    return e ? e : run(s, q, NULL);
}

/* Starts a write transaction: takes the database's write lock now (waiting up to
 * the busy timeout), so no transaction here ever has to upgrade a read lock. In a
 * batch, a savepoint of the batch's transaction; if SQLite already rolled that
 * transaction back (an I/O error, a full disk), UNAVAILABLE: a SAVEPOINT outside
 * any transaction would open one of its own, and its RELEASE would commit this
 * op by itself while the batch it belonged to is reported failed. */
static bx_err tx_begin(struct sqlite_store *s)
{
    if (s->batch && sqlite3_get_autocommit(s->db)) {
        fprintf(stderr, "store_sqlite: the batch's transaction is gone (rolled back by SQLite); op refused\n");
        return BX_ERR_UNAVAILABLE;
    }
    return run_plain(s, s->batch ? ST_SAVEPOINT : ST_BEGIN_WRITE);
}

/* Undoes the open transaction, if any (SQLite may already have rolled it back).
 * In a batch only this operation's savepoint is undone. */
static void tx_rollback(struct sqlite_store *s)
{
    if (sqlite3_get_autocommit(s->db))
        return;
    if (s->batch) {
        if (run_plain(s, ST_ROLLBACK_TO) != BX_OK || run_plain(s, ST_RELEASE) != BX_OK)
            fprintf(stderr, "store_sqlite: rollback to savepoint failed\n");
        return;
    }
    if (run_plain(s, ST_ROLLBACK) != BX_OK)
        fprintf(stderr, "store_sqlite: rollback failed\n");
}

/* Commits; with synchronous=FULL the commit is on stable storage when this
 * returns BX_OK (invariant 4). On failure the transaction is rolled back. In a
 * batch the operation is only folded into the outer transaction: nothing is
 * durable before sqlite_batch_commit. */
static bx_err tx_commit(struct sqlite_store *s)
{
    bx_err e = run_plain(s, s->batch ? ST_RELEASE : ST_COMMIT);
    if (e != BX_OK)
        tx_rollback(s);
    return e;
}

/* Group commit (store.h): one BEGIN IMMEDIATE around many operations, one fsync. */
static bx_err sqlite_batch_begin(struct store *base)
{
    struct sqlite_store *s = to_sq(base);
    bx_err e = run_plain(s, ST_BEGIN_WRITE);
    if (e == BX_OK)
        s->batch = 1;
    return e;
}

static bx_err sqlite_batch_commit(struct store *base)
{
    struct sqlite_store *s = to_sq(base);
    s->batch = 0;
    bx_err e = run_plain(s, ST_COMMIT);
    if (e != BX_OK && !sqlite3_get_autocommit(s->db) && run_plain(s, ST_ROLLBACK) != BX_OK)
        fprintf(stderr, "store_sqlite: rollback of a failed batch failed\n");
    return e;
}

/* Ends a write transaction with result e: commits on BX_OK, rolls back otherwise
 * (BX_REPLAY and refusals wrote nothing worth keeping). Returns the final result. */
static bx_err tx_end(struct sqlite_store *s, bx_err e)
{
    if (e == BX_OK)
        return tx_commit(s);
    tx_rollback(s);
    return e;
}

static void copy_text(char *dst, size_t cap, sqlite3_stmt *q, int col)
{
    const unsigned char *t = sqlite3_column_text(q, col);
    size_t len = t ? (size_t)sqlite3_column_bytes(q, col) : 0;
    if (len >= cap)
        len = cap - 1;
    if (len)
        memcpy(dst, t, len);
    dst[len] = '\0';
}

static bool col_is(sqlite3_stmt *q, int col, const char *want)
{
    const unsigned char *t = sqlite3_column_text(q, col);
    return t != NULL && strcmp((const char *)t, want) == 0;
}

/* Grows a malloc'd array to hold at least n + 1 elements of size el. */
static bx_err grow(void **arr, size_t *cap, size_t n, size_t el)
{
    if (n < *cap)
        return BX_OK;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, ncap * el);
    if (p == NULL)
        return BX_ERR_INTERNAL;
    *arr = p;
    *cap = ncap;
    return BX_OK;
}

/* ---- reading rows -------------------------------------------------------- */

static const char *const res_status_text[] = {
    [RES_HELD] = "HELD", [RES_CONFIRMED] = "CONFIRMED", [RES_EXPIRED] = "EXPIRED", [RES_CANCELLED] = "CANCELLED"};

static bool parse_res_status(sqlite3_stmt *q, int col, enum reservation_status *st)
{
    for (int i = RES_HELD; i <= RES_CANCELLED; i++) {
        if (col_is(q, col, res_status_text[i])) {
            *st = (enum reservation_status)i;
            return true;
        }
    }
    return false;
}

/* Reads an RES_COLS row. The stored status is kept in *stored; out->status says
 * EXPIRED for a HELD row past its expiry (the API's view, CONTRACT §6). */
static bx_err read_reservation(sqlite3_stmt *q, int64_t now, struct reservation *out,
                               enum reservation_status *stored)
{
    enum reservation_status st;
    if (!parse_res_status(q, 6, &st)) {
        fprintf(stderr, "store_sqlite: reservation %lld has an unknown status\n",
                (long long)sqlite3_column_int64(q, 0));
        return BX_ERR_INTERNAL;
    }
    out->id = sqlite3_column_int64(q, 0);
    out->user_id = sqlite3_column_int64(q, 1);
    out->schedule_id = sqlite3_column_int64(q, 2);
    out->concert_id = sqlite3_column_int64(q, 3);
    out->seat_no = sqlite3_column_int(q, 4);
    out->price = sqlite3_column_int64(q, 5);
    out->held_at = sqlite3_column_int64(q, 7);
    out->expires_at = sqlite3_column_int64(q, 8);
    out->confirmed_at = sqlite3_column_int64(q, 9); /* NULL reads as 0 */
    out->status = (st == RES_HELD && out->expires_at <= now) ? RES_EXPIRED : st;
    if (stored)
        *stored = st;
    return BX_OK;
}

static void read_schedule(sqlite3_stmt *q, struct schedule *out)
{
    out->id = sqlite3_column_int64(q, 0);
    out->concert_id = sqlite3_column_int64(q, 1);
    out->starts_at = sqlite3_column_int64(q, 2);
    out->sale_opens_at = sqlite3_column_int64(q, 3);
    out->sale_closes_at = sqlite3_column_int64(q, 4);
    out->seat_count = sqlite3_column_int(q, 5);
    out->available = sqlite3_column_int(q, 6);
}

static void read_payment(sqlite3_stmt *q, struct payment *out)
{
    out->id = sqlite3_column_int64(q, 0);
    out->user_id = sqlite3_column_int64(q, 1);
    out->reservation_id = sqlite3_column_int64(q, 2);
    out->amount = sqlite3_column_int64(q, 3);
    out->balance_after = sqlite3_column_int64(q, 4);
    out->paid_at = sqlite3_column_int64(q, 5);
}

static const char *const queue_status_text[] = {
    [QUEUE_WAITING] = "WAITING", [QUEUE_ACTIVE] = "ACTIVE", [QUEUE_EXPIRED] = "EXPIRED"};

static bx_err read_queue(sqlite3_stmt *q, struct queue_record *out)
{
    int st = -1;
    for (int i = QUEUE_WAITING; i <= QUEUE_EXPIRED; i++)
        if (col_is(q, 4, queue_status_text[i]))
            st = i;
    if (st < 0)
        return BX_ERR_INTERNAL;
    copy_text(out->token, sizeof out->token, q, 0);
    out->user_id = sqlite3_column_int64(q, 1);
    out->concert_id = sqlite3_column_int64(q, 2);
    out->seq = sqlite3_column_int64(q, 3);
    out->status = (enum queue_status)st;
    out->issued_at = sqlite3_column_int64(q, 5);
    out->activated_at = sqlite3_column_int64(q, 6);
    out->last_seen_at = sqlite3_column_int64(q, 7);
    out->expires_at = sqlite3_column_int64(q, 8);
    return BX_OK;
}

/* ---- lifecycle and schema ------------------------------------------------ */

/* Finalizes every cached statement and closes the connection. */
static void sqlite_close(struct store *base)
{
    struct sqlite_store *s = to_sq(base);
    if (s == NULL)
        return;
    for (int i = 0; i < ST__COUNT; i++)
        if (s->stmt[i] != NULL)
            (void)sqlite3_finalize(s->stmt[i]); /* returns the last step's error, already handled */
    if (sqlite3_close(s->db) != SQLITE_OK)
        fprintf(stderr, "store_sqlite: close: %s\n", sqlite3_errmsg(s->db));
    free(s);
}

/* Applies the migrations not yet recorded, all in one BEGIN IMMEDIATE
 * transaction: two processes migrating at once serialize on the write lock and
 * the second finds nothing to do. Running it again is a no-op. */
static bx_err sqlite_migrate(struct store *base)
{
    struct sqlite_store *s = to_sq(base);
    sqlite3_stmt *q;
    char *msg = NULL;
    int64_t version = 0;
    int found;
    bx_err e = tx_begin(s);
    if (e)
        return e;
    int rc = sqlite3_exec(s->db, sqlite_schema_bootstrap, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        e = db_error(s, rc, "create schema_migrations");
        goto out;
    }
    if ((e = prep(s, ST_MIG_VERSION, &q)) || (e = query_i64(s, q, &version, &found)))
        goto out;
    if (version < 0 || version > SQLITE_MIGRATION_COUNT) { /* < 0: corrupt, would index before migration 1 */
        fprintf(stderr, "store_sqlite: database schema version %lld is newer than this binary (%d)\n",
                (long long)version, SQLITE_MIGRATION_COUNT);
        e = BX_ERR_INTERNAL;
        goto out;
    }
    for (int v = (int)version + 1; v <= SQLITE_MIGRATION_COUNT; v++) {
        rc = sqlite3_exec(s->db, sqlite_migrations[v - 1], NULL, NULL, &msg);
        if (rc != SQLITE_OK) {
            fprintf(stderr, "store_sqlite: migration %d: %s\n", v, msg ? msg : "?");
            e = db_error(s, rc, "migration");
            goto out;
        }
        if ((e = prep(s, ST_MIG_RECORD, &q)))
            goto out;
        if (sqlite3_bind_int(q, 1, v) || sqlite3_bind_int64(q, 2, clock_now_ms())) {
            e = bind_failed(s, q);
            goto out;
        }
        if ((e = run(s, q, NULL)))
            goto out;
    }
out:
    sqlite3_free(msg);
    return tx_end(s, e);
}

/* Readiness: the file answers and is migrated. No transaction. */
static bx_err sqlite_ping(struct store *base)
{
    struct sqlite_store *s = to_sq(base);
    sqlite3_stmt *q;
    int64_t v;
    int found;
    bx_err e = prep(s, ST_MIG_VERSION, &q);
    if (e || (e = query_i64(s, q, &v, &found)))
        return e;
    return v >= 1 ? BX_OK : BX_ERR_UNAVAILABLE;
}

/* Reads meta 'secret' into secret; *found = 0 if absent. */
static bx_err read_secret(struct sqlite_store *s, unsigned char secret[32], int *found)
{
    sqlite3_stmt *q;
    bx_err e = prep(s, ST_META_GET, &q);
    if (e)
        return e;
    if (sqlite3_bind_text(q, 1, "secret", -1, SQLITE_STATIC))
        return bind_failed(s, q);
    int r = step(s, q, &e);
    if (r < 0)
        return e;
    *found = r;
    if (r == 1) {
        const void *b = sqlite3_column_blob(q, 0);
        if (b == NULL || sqlite3_column_bytes(q, 0) != 32) {
            fprintf(stderr, "store_sqlite: stored secret is not 32 bytes\n");
            done(q);
            return BX_ERR_INTERNAL;
        }
        memcpy(secret, b, 32);
        done(q);
    }
    return BX_OK;
}

/* Returns the stored HMAC secret; the first caller creates it (INSERT OR IGNORE
 * in BEGIN IMMEDIATE, then re-read), so every process and thread agrees. */
static bx_err sqlite_secret_get_or_create(struct store *base, unsigned char secret[32])
{
    struct sqlite_store *s = to_sq(base);
    unsigned char fresh[32];
    sqlite3_stmt *q;
    int found = 0;
    bx_err e = read_secret(s, secret, &found);
    if (e || found)
        return e;
    randombytes_buf(fresh, sizeof fresh);
    if ((e = tx_begin(s)))
        return e;
    if ((e = prep(s, ST_META_INSERT, &q)))
        goto out;
    if (sqlite3_bind_text(q, 1, "secret", -1, SQLITE_STATIC) || sqlite3_bind_blob(q, 2, fresh, 32, SQLITE_STATIC)) {
        e = bind_failed(s, q);
        goto out;
    }
    if ((e = run(s, q, NULL)) || (e = read_secret(s, secret, &found)))
        goto out;
    if (!found)
        e = BX_ERR_INTERNAL;
out:
    sodium_memzero(fresh, sizeof fresh);
    return tx_end(s, e);
}

/* ---- users and money ----------------------------------------------------- */

/* Inserts a user with balance 0 (own write transaction). NAME_TAKEN on a duplicate name. */
static bx_err sqlite_user_create(struct store *base, const char *name, const char *pwhash, int64_t *user_id)
{
    struct sqlite_store *s = to_sq(base);
    sqlite3_stmt *q;
    if (strlen(name) > BX_NAME_MAX || strlen(pwhash) > BX_PWHASH_MAX)
        return BX_ERR_VALIDATION;
    bx_err e = tx_begin(s);
    if (e)
        return e;
    if ((e = prep(s, ST_USER_INSERT, &q)))
        goto out;
    if (sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC) || sqlite3_bind_text(q, 2, pwhash, -1, SQLITE_STATIC)) {
        e = bind_failed(s, q);
        goto out;
    }
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) {
        *user_id = sqlite3_last_insert_rowid(s->db);
    } else if (rc == SQLITE_CONSTRAINT_UNIQUE) {
        e = BX_ERR_NAME_TAKEN;
    } else {
        e = db_error(s, rc, "user_create");
    }
    done(q);
out:
    return tx_end(s, e);
}

/* Reads one user by exact name (no transaction). NOT_FOUND. */
static bx_err sqlite_user_find_by_name(struct store *base, const char *name, struct user *out)
{
    struct sqlite_store *s = to_sq(base);
    sqlite3_stmt *q;
    bx_err e = prep(s, ST_USER_BY_NAME, &q);
    if (e)
        return e;
    if (sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC))
        return bind_failed(s, q);
    int r = step(s, q, &e);
    if (r <= 0)
        return r < 0 ? e : BX_ERR_NOT_FOUND;
    out->id = sqlite3_column_int64(q, 0);
    copy_text(out->name, sizeof out->name, q, 1);
    copy_text(out->pwhash, sizeof out->pwhash, q, 2);
    out->balance = sqlite3_column_int64(q, 3);
    done(q);
    return BX_OK;
}

/* *balance of the user, read inside whatever transaction is open. NOT_FOUND. */
static bx_err read_balance(struct sqlite_store *s, int64_t user_id, int64_t *balance)
{
    sqlite3_stmt *q;
    int found;
    bx_err e = prep(s, ST_BALANCE_GET, &q);
    if (e)
        return e;
    if (sqlite3_bind_int64(q, 1, user_id))
        return bind_failed(s, q);
    if ((e = query_i64(s, q, balance, &found)))
        return e;
    return found ? BX_OK : BX_ERR_NOT_FOUND;
}

static bx_err sqlite_balance_get(struct store *base, int64_t user_id, int64_t *balance)
{
    return read_balance(to_sq(base), user_id, balance);
}

/* Looks up (user, scope, idem->key) inside the open transaction. *result_id = 0
 * when the key is new; IDEMPOTENCY_MISMATCH when it was used with another body. */
static bx_err idem_lookup(struct sqlite_store *s, int64_t user_id, const char *scope, const struct idem *idem,
                          int64_t *result_id)
{
    sqlite3_stmt *q;
    *result_id = 0;
    bx_err e = prep(s, ST_IDEM_GET, &q);
    if (e)
        return e;
    if (sqlite3_bind_int64(q, 1, user_id) || sqlite3_bind_text(q, 2, scope, -1, SQLITE_STATIC) ||
        sqlite3_bind_text(q, 3, idem->key, -1, SQLITE_STATIC))
        return bind_failed(s, q);
    int r = step(s, q, &e);
    if (r <= 0)
        return r < 0 ? e : BX_OK;
    const void *h = sqlite3_column_blob(q, 0);
    bool same = h != NULL && sqlite3_column_bytes(q, 0) == (int)sizeof idem->request_hash &&
                memcmp(h, idem->request_hash, sizeof idem->request_hash) == 0;
    *result_id = sqlite3_column_int64(q, 1);
    done(q);
    return same ? BX_OK : BX_ERR_IDEMPOTENCY_MISMATCH;
}

/* Records a successful keyed call inside the open transaction. */
static bx_err idem_record(struct sqlite_store *s, int64_t user_id, const char *scope, const struct idem *idem,
                          int64_t result_id, int64_t now)
{
    sqlite3_stmt *q;
    bx_err e = prep(s, ST_IDEM_INSERT, &q);
    if (e)
        return e;
    if (sqlite3_bind_int64(q, 1, user_id) || sqlite3_bind_text(q, 2, scope, -1, SQLITE_STATIC) ||
        sqlite3_bind_text(q, 3, idem->key, -1, SQLITE_STATIC) ||
        sqlite3_bind_blob(q, 4, idem->request_hash, sizeof idem->request_hash, SQLITE_STATIC) ||
        sqlite3_bind_int64(q, 5, result_id) || sqlite3_bind_int64(q, 6, now))
        return bind_failed(s, q);
    return run(s, q, NULL);
}

/* Appends a ledger entry inside the open transaction; *ledger_id (if given) = its id. */
static bx_err ledger_append(struct sqlite_store *s, int64_t user_id, const char *kind, int64_t amount,
                            int64_t balance_after, int64_t now, const char *reference, int64_t *ledger_id)
{
    sqlite3_stmt *q;
    bx_err e = prep(s, ST_LEDGER_INSERT, &q);
    if (e)
        return e;
    if (sqlite3_bind_int64(q, 1, user_id) || sqlite3_bind_text(q, 2, kind, -1, SQLITE_STATIC) ||
        sqlite3_bind_int64(q, 3, amount) || sqlite3_bind_int64(q, 4, balance_after) ||
        sqlite3_bind_int64(q, 5, now) ||
        (reference ? sqlite3_bind_text(q, 6, reference, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(q, 6)))
        return bind_failed(s, q);
    if ((e = run(s, q, NULL)))
        return e;
    if (ledger_id)
        *ledger_id = sqlite3_last_insert_rowid(s->db);
    return BX_OK;
}

/* One BEGIN IMMEDIATE transaction: replay check, limit check (BALANCE_LIMIT past
 * 1e12), balance update, CHARGE ledger entry, idempotency record (invariant 2). */
static bx_err sqlite_balance_charge(struct store *base, int64_t user_id, int64_t amount, int64_t now,
                                    const struct idem *idem, int64_t *balance_after)
{
    struct sqlite_store *s = to_sq(base);
    sqlite3_stmt *q;
    int64_t balance, ledger_id, prior = 0;
    int found;
    bool keyed = idem != NULL && idem->key != NULL;
    if (amount <= 0)
        return BX_ERR_VALIDATION;
    bx_err e = tx_begin(s);
    if (e)
        return e;
    if (keyed && (e = idem_lookup(s, user_id, "charge", idem, &prior)))
        goto out;
    if (prior != 0) {
        if ((e = prep(s, ST_LEDGER_BALANCE_AFTER, &q)))
            goto out;
        if (sqlite3_bind_int64(q, 1, prior) || sqlite3_bind_int64(q, 2, user_id)) {
            e = bind_failed(s, q);
            goto out;
        }
        if ((e = query_i64(s, q, balance_after, &found)))
            goto out;
        e = found ? BX_REPLAY : BX_ERR_INTERNAL;
        goto out;
    }
    if ((e = read_balance(s, user_id, &balance)))
        goto out;
    if (!money_charge_fits(balance, amount)) {
        e = BX_ERR_BALANCE_LIMIT;
        goto out;
    }
    if ((e = prep(s, ST_BALANCE_ADD, &q)))
        goto out;
    if (sqlite3_bind_int64(q, 1, user_id) || sqlite3_bind_int64(q, 2, amount)) {
        e = bind_failed(s, q);
        goto out;
    }
    if ((e = run(s, q, NULL)))
        goto out;
    balance += amount;
    if ((e = ledger_append(s, user_id, "CHARGE", amount, balance, now, keyed ? idem->key : NULL, &ledger_id)))
        goto out;
    if (keyed && (e = idem_record(s, user_id, "charge", idem, ledger_id, now)))
        goto out;
    *balance_after = balance;
out:
    return tx_end(s, e);
}

/* ---- catalogue ----------------------------------------------------------- */

/* Inserts a concert (own write transaction). */
static bx_err sqlite_concert_create(struct store *base, const char *title, const char *venue, int64_t *concert_id)
{
    struct sqlite_store *s = to_sq(base);
    sqlite3_stmt *q;
    if (strlen(title) > BX_TEXT_MAX || strlen(venue) > BX_TEXT_MAX)
        return BX_ERR_VALIDATION;
    bx_err e = tx_begin(s);
    if (e)
        return e;
    if ((e = prep(s, ST_CONCERT_INSERT, &q)))
        goto out;
    if (sqlite3_bind_text(q, 1, title, -1, SQLITE_STATIC) || sqlite3_bind_text(q, 2, venue, -1, SQLITE_STATIC)) {
        e = bind_failed(s, q);
        goto out;
    }
    if ((e = run(s, q, NULL)))
        goto out;
    *concert_id = sqlite3_last_insert_rowid(s->db);
out:
    return tx_end(s, e);
}

static void read_concert(sqlite3_stmt *q, struct concert *out)
{
    out->id = sqlite3_column_int64(q, 0);
    copy_text(out->title, sizeof out->title, q, 1);
    copy_text(out->venue, sizeof out->venue, q, 2);
}

/* One concert (no transaction). CONCERT_NOT_FOUND. */
static bx_err sqlite_concert_get(struct store *base, int64_t concert_id, struct concert *out)
{
    struct sqlite_store *s = to_sq(base);
    sqlite3_stmt *q;
    bx_err e = prep(s, ST_CONCERT_GET, &q);
    if (e)
        return e;
    if (sqlite3_bind_int64(q, 1, concert_id))
        return bind_failed(s, q);
    int r = step(s, q, &e);
    if (r <= 0)
        return r < 0 ? e : BX_ERR_CONCERT_NOT_FOUND;
    read_concert(q, out);
    done(q);
    return BX_OK;
}

/* All concerts by id, one statement (consistent snapshot). *out is malloc'd. */
static bx_err sqlite_concert_list(struct store *base, struct concert **out, size_t *n)
{
    struct sqlite_store *s = to_sq(base);
    struct concert *arr = NULL;
    size_t cnt = 0, cap = 0;
    sqlite3_stmt *q;
    int r;
    bx_err e = prep(s, ST_CONCERT_LIST, &q);
    if (e)
        return e;
    while ((r = step(s, q, &e)) == 1) {
        if ((e = grow((void **)&arr, &cap, cnt, sizeof *arr))) {
            done(q);
            break;
        }
        read_concert(q, &arr[cnt++]);
    }
    if (e) {
        free(arr);
        return e;
    }
    *out = arr;
    *n = cnt;
    return BX_OK;
}

/* One BEGIN IMMEDIATE transaction: concert exists (CONCERT_NOT_FOUND), schedule
 * row, then seats 1..seat_count at price through one prepared insert. */
static bx_err sqlite_schedule_create(struct store *base, const struct schedule *in, int64_t price,
                                     int64_t *schedule_id)
{
    struct sqlite_store *s = to_sq(base);
    sqlite3_stmt *q;
    int64_t id;
    if (in->seat_count < 1 || price < 0)
        return BX_ERR_VALIDATION;
    bx_err e = tx_begin(s);
    if (e)
        return e;
    if ((e = prep(s, ST_CONCERT_GET, &q)))
        goto out;
    if (sqlite3_bind_int64(q, 1, in->concert_id)) {
        e = bind_failed(s, q);
        goto out;
    }
    int r = step(s, q, &e);
    if (r <= 0) {
        e = r < 0 ? e : BX_ERR_CONCERT_NOT_FOUND;
        goto out;
    }
    done(q);
    if ((e = prep(s, ST_SCHEDULE_INSERT, &q)))
        goto out;
    if (sqlite3_bind_int64(q, 1, in->concert_id) || sqlite3_bind_int64(q, 2, in->starts_at) ||
        sqlite3_bind_int64(q, 3, in->sale_opens_at) || sqlite3_bind_int64(q, 4, in->sale_closes_at) ||
        sqlite3_bind_int(q, 5, in->seat_count)) {
        e = bind_failed(s, q);
        goto out;
    }
    if ((e = run(s, q, NULL)))
        goto out;
    id = sqlite3_last_insert_rowid(s->db);
    if ((e = prep(s, ST_SEAT_INSERT, &q)))
        goto out;
    for (int32_t no = 1; no <= in->seat_count; no++) {
        if (sqlite3_bind_int64(q, 1, id) || sqlite3_bind_int(q, 2, no) || sqlite3_bind_int64(q, 3, price)) {
            e = bind_failed(s, q);
            goto out;
        }
        if ((e = run(s, q, NULL)))
            goto out;
    }
    *schedule_id = id;
out:
    return tx_end(s, e);
}

/* One schedule with its available count at `now` (one statement). SCHEDULE_NOT_FOUND. */
static bx_err sqlite_schedule_get(struct store *base, int64_t schedule_id, int64_t now, bool count_available,
                                  struct schedule *out)
{
    struct sqlite_store *s = to_sq(base);
    sqlite3_stmt *q;
    bx_err e = prep(s, ST_SCHEDULE_GET, &q);
    if (e)
        return e;
    if (sqlite3_bind_int64(q, 1, schedule_id) || sqlite3_bind_int64(q, 2, now) ||
        sqlite3_bind_int(q, 3, count_available))
        return bind_failed(s, q);
    int r = step(s, q, &e);
    if (r <= 0)
        return r < 0 ? e : BX_ERR_SCHEDULE_NOT_FOUND;
    read_schedule(q, out);
    done(q);
    return BX_OK;
}

/* Schedules of the concert on sale at now, by starts_at (one statement). */
static bx_err sqlite_schedule_list_bookable(struct store *base, int64_t concert_id, int64_t now,
                                            bool count_available, struct schedule **out, size_t *n)
{
    struct sqlite_store *s = to_sq(base);
    struct schedule *arr = NULL;
    size_t cnt = 0, cap = 0;
    sqlite3_stmt *q;
    int r;
    bx_err e = prep(s, ST_SCHEDULE_BOOKABLE, &q);
    if (e)
        return e;
    if (sqlite3_bind_int64(q, 1, concert_id) || sqlite3_bind_int64(q, 2, now) ||
        sqlite3_bind_int(q, 3, count_available))
        return bind_failed(s, q);
    while ((r = step(s, q, &e)) == 1) {
        if ((e = grow((void **)&arr, &cap, cnt, sizeof *arr))) {
            done(q);
            break;
        }
        read_schedule(q, &arr[cnt++]);
    }
    if (e) {
        free(arr);
        return e;
    }
    *out = arr;
    *n = cnt;
    return BX_OK;
}

/* All seats of a schedule by seat_no, available = free at `now`, and its concert:
 * one statement (so one implicit read transaction, whose WAL read lock is most of
 * the cost of a small seat map). The LEFT JOIN answers one row without a seat for
 * a schedule without seats, none for no schedule. SCHEDULE_NOT_FOUND. */
static bx_err sqlite_seat_list(struct store *base, int64_t schedule_id, int64_t now, int64_t *concert_id,
                               struct seat **out, size_t *n)
{
    struct sqlite_store *s = to_sq(base);
    struct seat *arr = NULL;
    size_t cnt = 0, cap = 0, rows = 0;
    sqlite3_stmt *q;
    int r;
    bx_err e = prep(s, ST_SEAT_LIST, &q);
    if (e)
        return e;
    if (sqlite3_bind_int64(q, 1, schedule_id) || sqlite3_bind_int64(q, 2, now))
        return bind_failed(s, q);
    while ((r = step(s, q, &e)) == 1) {
        if (rows++ == 0 && concert_id != NULL)
            *concert_id = sqlite3_column_int64(q, 3);
        if (sqlite3_column_type(q, 0) == SQLITE_NULL)
            continue;
        if ((e = grow((void **)&arr, &cap, cnt, sizeof *arr))) {
            done(q);
            break;
        }
        arr[cnt].seat_no = sqlite3_column_int(q, 0);
        arr[cnt].price = sqlite3_column_int64(q, 1);
        arr[cnt].status = (enum seat_status)sqlite3_column_int(q, 2);
        arr[cnt].available = arr[cnt].status == SEAT_AVAILABLE;
        arr[cnt].hold_ends_at = sqlite3_column_int64(q, 4);
        cnt++;
    }
    if (e == BX_OK && rows == 0)
        e = BX_ERR_SCHEDULE_NOT_FOUND;
    if (e) {
        free(arr);
        return e;
    }
    *out = arr;
    *n = cnt;
    return BX_OK;
}

/* ---- holds and reservations --------------------------------------------- */

/* Runs RES_EXPIRE then SEAT_RELEASE for one reservation inside the open
 * transaction: a HELD row past expiry becomes EXPIRED and frees its seat if the
 * seat still points at it. *expired = 1 if the reservation changed. */
static bx_err expire_one(struct sqlite_store *s, int64_t res_id, int64_t schedule_id, int32_t seat_no, int64_t now,
                         int *expired)
{
    sqlite3_stmt *q;
    int changes = 0;
    bx_err e = prep(s, ST_RES_EXPIRE, &q);
    if (e)
        return e;
    if (sqlite3_bind_int64(q, 1, res_id) || sqlite3_bind_int64(q, 2, now))
        return bind_failed(s, q);
    if ((e = run(s, q, &changes)))
        return e;
    if (expired)
        *expired = changes;
    if (changes == 0)
        return BX_OK;
    if ((e = prep(s, ST_SEAT_RELEASE, &q)))
        return e;
    if (sqlite3_bind_int64(q, 1, schedule_id) || sqlite3_bind_int(q, 2, seat_no) || sqlite3_bind_int64(q, 3, res_id))
        return bind_failed(s, q);
    return run(s, q, NULL);
}

/* One BEGIN IMMEDIATE transaction (CONTRACT §6, invariants 1 and 5): schedule on
 * sale, seat exists, user under max_per_user seats (CONFIRMED + live HELD), new
 * HELD reservation, then one conditional update that takes the seat only if it is
 * AVAILABLE or its hold has expired; a hold taken over is marked EXPIRED. */
static bx_err sqlite_hold_seat(struct store *base, int64_t user_id, int64_t schedule_id, int32_t seat_no, int64_t now,
                               int64_t hold_ms, int max_per_user, struct reservation *out)
{
    struct sqlite_store *s = to_sq(base);
    sqlite3_stmt *q;
    int64_t concert_id, opens, closes, price, old_res = 0, expires_at, count, res_id;
    int found, changes, r;
    if (hold_ms <= 0 || __builtin_add_overflow(now, hold_ms, &expires_at))
        return BX_ERR_VALIDATION;
    bx_err e = tx_begin(s);
    if (e)
        return e;

    if ((e = prep(s, ST_SCHEDULE_SALE, &q)))
        goto out;
    if (sqlite3_bind_int64(q, 1, schedule_id)) {
        e = bind_failed(s, q);
        goto out;
    }
    if ((r = step(s, q, &e)) <= 0) {
        e = r < 0 ? e : BX_ERR_SCHEDULE_NOT_FOUND;
        goto out;
    }
    concert_id = sqlite3_column_int64(q, 0);
    opens = sqlite3_column_int64(q, 1);
    closes = sqlite3_column_int64(q, 2);
    done(q);
    if (!(opens <= now && now < closes)) {
        e = BX_ERR_SALE_CLOSED;
        goto out;
    }

    if ((e = prep(s, ST_SEAT_GET, &q)))
        goto out;
    if (sqlite3_bind_int64(q, 1, schedule_id) || sqlite3_bind_int(q, 2, seat_no)) {
        e = bind_failed(s, q);
        goto out;
    }
    if ((r = step(s, q, &e)) <= 0) {
        e = r < 0 ? e : BX_ERR_SEAT_NOT_FOUND;
        goto out;
    }
    price = sqlite3_column_int64(q, 0);
    if (col_is(q, 1, "HELD"))
        old_res = sqlite3_column_int64(q, 2);
    done(q);

    if ((e = prep(s, ST_USER_SEATS_ON_SCHEDULE, &q)))
        goto out;
    if (sqlite3_bind_int64(q, 1, schedule_id) || sqlite3_bind_int64(q, 2, user_id) || sqlite3_bind_int64(q, 3, now)) {
        e = bind_failed(s, q);
        goto out;
    }
    if ((e = query_i64(s, q, &count, &found)))
        goto out;
    if (count >= max_per_user) {
        e = BX_ERR_SEAT_LIMIT;
        goto out;
    }

    if ((e = prep(s, ST_RES_INSERT, &q)))
        goto out;
    if (sqlite3_bind_int64(q, 1, user_id) || sqlite3_bind_int64(q, 2, schedule_id) || sqlite3_bind_int(q, 3, seat_no) ||
        sqlite3_bind_int64(q, 4, price) || sqlite3_bind_int64(q, 5, now) || sqlite3_bind_int64(q, 6, expires_at)) {
        e = bind_failed(s, q);
        goto out;
    }
    if ((e = run(s, q, NULL)))
        goto out;
    res_id = sqlite3_last_insert_rowid(s->db);

    if ((e = prep(s, ST_SEAT_TAKE, &q)))
        goto out;
    if (sqlite3_bind_int64(q, 1, res_id) || sqlite3_bind_int64(q, 2, expires_at) ||
        sqlite3_bind_int64(q, 3, schedule_id) || sqlite3_bind_int(q, 4, seat_no) || sqlite3_bind_int64(q, 5, now)) {
        e = bind_failed(s, q);
        goto out;
    }
    if ((e = run(s, q, &changes)))
        goto out;
    if (changes != 1) {
        e = BX_ERR_SEAT_UNAVAILABLE;
        goto out;
    }
    /* The seat was free at now, so a previous hold on it has expired: record that. */
    if (old_res != 0 && (e = expire_one(s, old_res, schedule_id, seat_no, now, NULL)))
        goto out;

    out->id = res_id;
    out->user_id = user_id;
    out->schedule_id = schedule_id;
    out->concert_id = concert_id;
    out->seat_no = seat_no;
    out->price = price;
    out->status = RES_HELD;
    out->held_at = now;
    out->expires_at = expires_at;
    out->confirmed_at = 0;
out:
    return tx_end(s, e);
}

/* Reads the user's reservation inside the current transaction (if any).
 * RESERVATION_NOT_FOUND for unknown ids and other users' ids alike. */
static bx_err read_own_reservation(struct sqlite_store *s, int64_t user_id, int64_t reservation_id, int64_t now,
                                   struct reservation *out, enum reservation_status *stored)
{
    sqlite3_stmt *q;
    bx_err e = prep(s, ST_RES_GET, &q);
    if (e)
        return e;
    if (sqlite3_bind_int64(q, 1, reservation_id) || sqlite3_bind_int64(q, 2, user_id))
        return bind_failed(s, q);
    int r = step(s, q, &e);
    if (r <= 0)
        return r < 0 ? e : BX_ERR_RESERVATION_NOT_FOUND;
    e = read_reservation(q, now, out, stored);
    done(q);
    return e;
}

/* Owner-only read (one statement); a HELD row past expiry reads EXPIRED. */
static bx_err sqlite_reservation_get(struct store *base, int64_t user_id, int64_t reservation_id, int64_t now,
                                     struct reservation *out)
{
    return read_own_reservation(to_sq(base), user_id, reservation_id, now, out, NULL);
}

/* The user's reservations, newest first (one statement). *out is malloc'd. */
static bx_err sqlite_reservation_list(struct store *base, int64_t user_id, int64_t now, struct reservation **out,
                                      size_t *n)
{
    struct sqlite_store *s = to_sq(base);
    struct reservation *arr = NULL;
    size_t cnt = 0, cap = 0;
    sqlite3_stmt *q;
    int r;
    bx_err e = prep(s, ST_RES_LIST, &q);
    if (e)
        return e;
    if (sqlite3_bind_int64(q, 1, user_id))
        return bind_failed(s, q);
    while ((r = step(s, q, &e)) == 1) {
        if ((e = grow((void **)&arr, &cap, cnt, sizeof *arr)) || (e = read_reservation(q, now, &arr[cnt], NULL))) {
            done(q);
            break;
        }
        cnt++;
    }
    if (e) {
        free(arr);
        return e;
    }
    *out = arr;
    *n = cnt;
    return BX_OK;
}

/* One BEGIN IMMEDIATE transaction: the owner's live HELD reservation becomes
 * CANCELLED and its seat AVAILABLE (if the seat still points at it). NOT_HELD for
 * anything else, RESERVATION_NOT_FOUND for unknown or other users' ids. */
static bx_err sqlite_reservation_cancel(struct store *base, int64_t user_id, int64_t reservation_id, int64_t now)
{
    struct sqlite_store *s = to_sq(base);
    struct reservation r;
    sqlite3_stmt *q;
    int changes;
    bx_err e = tx_begin(s);
    if (e)
        return e;
    if ((e = read_own_reservation(s, user_id, reservation_id, now, &r, NULL)))
        goto out;
    if (r.status != RES_HELD) {
        e = BX_ERR_NOT_HELD;
        goto out;
    }
    if ((e = prep(s, ST_RES_CANCEL, &q)))
        goto out;
    if (sqlite3_bind_int64(q, 1, reservation_id) || sqlite3_bind_int64(q, 2, user_id) ||
        sqlite3_bind_int64(q, 3, now)) {
        e = bind_failed(s, q);
        goto out;
    }
    if ((e = run(s, q, &changes)))
        goto out;
    if (changes != 1) {
        e = BX_ERR_NOT_HELD;
        goto out;
    }
    if ((e = prep(s, ST_SEAT_RELEASE, &q)))
        goto out;
    if (sqlite3_bind_int64(q, 1, r.schedule_id) || sqlite3_bind_int(q, 2, r.seat_no) ||
        sqlite3_bind_int64(q, 3, reservation_id)) {
        e = bind_failed(s, q);
        goto out;
    }
    e = run(s, q, NULL);
out:
    return tx_end(s, e);
}

/* Count of the user's live holds on schedules of the concert (one statement). */
static bx_err sqlite_live_holds_on_concert(struct store *base, int64_t user_id, int64_t concert_id, int64_t now,
                                           int *count)
{
    struct sqlite_store *s = to_sq(base);
    sqlite3_stmt *q;
    int64_t v = 0;
    int found;
    bx_err e = prep(s, ST_LIVE_HOLDS_ON_CONCERT, &q);
    if (e)
        return e;
    if (sqlite3_bind_int64(q, 1, user_id) || sqlite3_bind_int64(q, 2, concert_id) || sqlite3_bind_int64(q, 3, now))
        return bind_failed(s, q);
    if ((e = query_i64(s, q, &v, &found)))
        return e;
    *count = (int)v;
    return BX_OK;
}

/* Live holds and sold seats, one read snapshot apart (gauges, not invariants). */
static bx_err sqlite_counts(struct store *base, int64_t now, int64_t *holds_live, int64_t *seats_sold)
{
    struct sqlite_store *s = to_sq(base);
    sqlite3_stmt *q;
    int found;
    bx_err e = prep(s, ST_COUNT_LIVE_HOLDS, &q);
    if (e)
        return e;
    if (sqlite3_bind_int64(q, 1, now))
        return bind_failed(s, q);
    if ((e = query_i64(s, q, holds_live, &found)) || (e = prep(s, ST_COUNT_SOLD, &q)))
        return e;
    return query_i64(s, q, seats_sold, &found);
}

/* ---- payments ------------------------------------------------------------ */

static bx_err read_own_payment(struct sqlite_store *s, int64_t user_id, int64_t payment_id, struct payment *out)
{
    sqlite3_stmt *q;
    bx_err e = prep(s, ST_PAYMENT_GET, &q);
    if (e)
        return e;
    if (sqlite3_bind_int64(q, 1, payment_id) || sqlite3_bind_int64(q, 2, user_id))
        return bind_failed(s, q);
    int r = step(s, q, &e);
    if (r <= 0)
        return r < 0 ? e : BX_ERR_INTERNAL; /* an idempotency row points at a missing payment */
    read_payment(q, out);
    done(q);
    return BX_OK;
}

/* Pays a hold in ONE BEGIN IMMEDIATE transaction (CONTRACT §3 invariants 1–4, §6):
 * replay check; the hold must be the user's, HELD and live at `now`; debit only
 * if balance >= price; payment row, PAYMENT ledger entry, reservation CONFIRMED
 * and seat SOLD, each a conditional update; commit with synchronous=FULL before
 * returning. A hold found expired is marked EXPIRED and its seat freed, and that
 * is committed before HOLD_EXPIRED is returned. Refusals change nothing else. */
static bx_err sqlite_pay(struct store *base, int64_t user_id, int64_t reservation_id, int64_t expected_amount,
                         int64_t now, const struct idem *idem, struct payment *out)
{
    struct sqlite_store *s = to_sq(base);
    struct reservation r;
    enum reservation_status stored;
    sqlite3_stmt *q;
    int64_t prior = 0, balance, payment_id;
    int changes;
    char ref[32];
    bool keyed = idem != NULL && idem->key != NULL, settled_expiry = false;
    bx_err e = tx_begin(s);
    if (e)
        return e;
    if (keyed && (e = idem_lookup(s, user_id, "payment", idem, &prior)))
        goto out;
    if (prior != 0) {
        if ((e = read_own_payment(s, user_id, prior, out)) == BX_OK)
            e = BX_REPLAY;
        goto out;
    }
    if ((e = read_own_reservation(s, user_id, reservation_id, now, &r, &stored)))
        goto out;
    switch (stored) {
    case RES_CONFIRMED: e = BX_ERR_ALREADY_PAID; goto out;
    case RES_CANCELLED: e = BX_ERR_NOT_HELD; goto out;
    case RES_EXPIRED: e = BX_ERR_HOLD_EXPIRED; goto out;
    case RES_HELD: break;
    }
    if (r.expires_at <= now) {
        /* Too late: settle the expiry now so the seat is free for everyone at once.
         * It is committed (or, if it failed, rolled back) at out like everything
         * else: never left open half-applied inside a group commit. */
        e = expire_one(s, r.id, r.schedule_id, r.seat_no, now, NULL);
        settled_expiry = e == BX_OK;
        goto out;
    }
    if (expected_amount >= 0 && expected_amount != r.price) {
        e = BX_ERR_PRICE_MISMATCH;
        goto out;
    }
    if ((e = read_balance(s, user_id, &balance)))
        goto out;
    if (!money_can_debit(balance, r.price)) {
        e = BX_ERR_INSUFFICIENT_BALANCE;
        goto out;
    }

    if ((e = prep(s, ST_BALANCE_DEBIT, &q)))
        goto out;
    if (sqlite3_bind_int64(q, 1, user_id) || sqlite3_bind_int64(q, 2, r.price)) {
        e = bind_failed(s, q);
        goto out;
    }
    if ((e = run(s, q, &changes)))
        goto out;
    if (changes != 1) {
        e = BX_ERR_INSUFFICIENT_BALANCE;
        goto out;
    }
    balance -= r.price;

    if ((e = prep(s, ST_PAYMENT_INSERT, &q)))
        goto out;
    if (sqlite3_bind_int64(q, 1, user_id) || sqlite3_bind_int64(q, 2, r.id) || sqlite3_bind_int64(q, 3, r.price) ||
        sqlite3_bind_int64(q, 4, balance) || sqlite3_bind_int64(q, 5, now) ||
        (keyed ? sqlite3_bind_text(q, 6, idem->key, -1, SQLITE_STATIC) : sqlite3_bind_null(q, 6))) {
        e = bind_failed(s, q);
        goto out;
    }
    if ((e = run(s, q, NULL)))
        goto out;
    payment_id = sqlite3_last_insert_rowid(s->db);
    snprintf(ref, sizeof ref, "payment:%lld", (long long)payment_id);
    if ((e = ledger_append(s, user_id, "PAYMENT", r.price, balance, now, ref, NULL)))
        goto out;

    if ((e = prep(s, ST_RES_CONFIRM, &q)))
        goto out;
    if (sqlite3_bind_int64(q, 1, r.id) || sqlite3_bind_int64(q, 2, now)) {
        e = bind_failed(s, q);
        goto out;
    }
    if ((e = run(s, q, &changes)))
        goto out;
    if (changes != 1) {
        e = BX_ERR_HOLD_EXPIRED;
        goto out;
    }
    if ((e = prep(s, ST_SEAT_SELL, &q)))
        goto out;
    if (sqlite3_bind_int64(q, 1, r.schedule_id) || sqlite3_bind_int(q, 2, r.seat_no) || sqlite3_bind_int64(q, 3, r.id)) {
        e = bind_failed(s, q);
        goto out;
    }
    if ((e = run(s, q, &changes)))
        goto out;
    if (changes != 1) {
        fprintf(stderr, "store_sqlite: pay: seat %lld/%d does not point at live hold %lld\n",
                (long long)r.schedule_id, r.seat_no, (long long)r.id);
        e = BX_ERR_INTERNAL;
        goto out;
    }
    if (keyed && (e = idem_record(s, user_id, "payment", idem, payment_id, now)))
        goto out;

    out->id = payment_id;
    out->user_id = user_id;
    out->reservation_id = r.id;
    out->amount = r.price;
    out->balance_after = balance;
    out->paid_at = now;
out:
    e = tx_end(s, e);
    return e == BX_OK && settled_expiry ? BX_ERR_HOLD_EXPIRED : e;
}

/* The user's payments, newest first, ids below before_id when > 0 (one statement). */
static bx_err sqlite_payment_list(struct store *base, int64_t user_id, int64_t before_id, int limit,
                                  struct payment **out, size_t *n)
{
    struct sqlite_store *s = to_sq(base);
    struct payment *arr = NULL;
    size_t cnt = 0, cap = 0;
    sqlite3_stmt *q;
    int r;
    bx_err e = prep(s, before_id > 0 ? ST_PAYMENT_LIST_BEFORE : ST_PAYMENT_LIST, &q);
    if (e)
        return e;
    if (sqlite3_bind_int64(q, 1, user_id) || sqlite3_bind_int(q, 2, limit > 0 ? limit : 0) ||
        (before_id > 0 && sqlite3_bind_int64(q, 3, before_id)))
        return bind_failed(s, q);
    while ((r = step(s, q, &e)) == 1) {
        if ((e = grow((void **)&arr, &cap, cnt, sizeof *arr))) {
            done(q);
            break;
        }
        read_payment(q, &arr[cnt++]);
    }
    if (e) {
        free(arr);
        return e;
    }
    *out = arr;
    *n = cnt;
    return BX_OK;
}

/* ---- sweeper ------------------------------------------------------------- */

struct sweep_item {
    int64_t id;
    int64_t schedule_id;
    int32_t seat_no;
};

/* Expires HELD reservations past expires_at and frees their seats, in BEGIN
 * IMMEDIATE transactions of at most SWEEP_BATCH. Every update is conditional,
 * so racing with pay or hold (same write lock) yields exactly one outcome. */
static bx_err sqlite_sweep_holds(struct store *base, int64_t now, int *expired)
{
    struct sqlite_store *s = to_sq(base);
    struct sweep_item *items = malloc(SWEEP_BATCH * sizeof *items);
    sqlite3_stmt *q;
    int total = 0, batch, r;
    bx_err e = BX_OK;
    if (items == NULL)
        return BX_ERR_INTERNAL;
    do {
        batch = 0;
        if ((e = tx_begin(s)))
            break;
        if ((e = prep(s, ST_SWEEP_SELECT, &q)))
            goto end_batch;
        if (sqlite3_bind_int64(q, 1, now) || sqlite3_bind_int(q, 2, SWEEP_BATCH)) {
            e = bind_failed(s, q);
            goto end_batch;
        }
        while ((r = step(s, q, &e)) == 1) {
            items[batch].id = sqlite3_column_int64(q, 0);
            items[batch].schedule_id = sqlite3_column_int64(q, 1);
            items[batch].seat_no = sqlite3_column_int(q, 2);
            batch++;
        }
        if (r < 0)
            goto end_batch;
        for (int i = 0; i < batch; i++) {
            int changed = 0;
            if ((e = expire_one(s, items[i].id, items[i].schedule_id, items[i].seat_no, now, &changed)))
                goto end_batch;
            total += changed;
        }
    end_batch:
        e = tx_end(s, e);
    } while (e == BX_OK && batch == SWEEP_BATCH);
    free(items);
    if (e == BX_OK && expired)
        *expired = total;
    return e;
}

/* ---- waiting-room persistence -------------------------------------------- */

/* Upserts one token by its text (own write transaction). */
static bx_err sqlite_queue_save(struct store *base, const struct queue_record *rec)
{
    struct sqlite_store *s = to_sq(base);
    sqlite3_stmt *q;
    if ((int)rec->status < QUEUE_WAITING || rec->status > QUEUE_EXPIRED)
        return BX_ERR_VALIDATION;
    bx_err e = tx_begin(s);
    if (e)
        return e;
    if ((e = prep(s, ST_QUEUE_UPSERT, &q)))
        goto out;
    if (sqlite3_bind_text(q, 1, rec->token, -1, SQLITE_STATIC) || sqlite3_bind_int64(q, 2, rec->user_id) ||
        sqlite3_bind_int64(q, 3, rec->concert_id) || sqlite3_bind_int64(q, 4, rec->seq) ||
        sqlite3_bind_text(q, 5, queue_status_text[rec->status], -1, SQLITE_STATIC) ||
        sqlite3_bind_int64(q, 6, rec->issued_at) || sqlite3_bind_int64(q, 7, rec->activated_at) ||
        sqlite3_bind_int64(q, 8, rec->last_seen_at) || sqlite3_bind_int64(q, 9, rec->expires_at)) {
        e = bind_failed(s, q);
        goto out;
    }
    e = run(s, q, NULL);
out:
    return tx_end(s, e);
}

/* Reads all live tokens (one statement) into memory first, then calls cb for
 * each in (concert, seq) order, so cb may itself use this connection. */
static bx_err sqlite_queue_load(struct store *base, int (*cb)(const struct queue_record *rec, void *arg), void *arg)
{
    struct sqlite_store *s = to_sq(base);
    struct queue_record *arr = NULL;
    size_t cnt = 0, cap = 0;
    sqlite3_stmt *q;
    int r;
    bx_err e = prep(s, ST_QUEUE_LOAD, &q);
    if (e)
        return e;
    while ((r = step(s, q, &e)) == 1) {
        if ((e = grow((void **)&arr, &cap, cnt, sizeof *arr)) || (e = read_queue(q, &arr[cnt]))) {
            done(q);
            break;
        }
        cnt++;
    }
    if (e == BX_OK)
        for (size_t i = 0; i < cnt; i++)
            if (cb(&arr[i], arg) != 0)
                break;
    free(arr);
    return e;
}

/* One token by its text (one statement). NOT_FOUND. */
static bx_err sqlite_queue_find(struct store *base, const char *token, struct queue_record *out)
{
    struct sqlite_store *s = to_sq(base);
    sqlite3_stmt *q;
    bx_err e = prep(s, ST_QUEUE_FIND, &q);
    if (e)
        return e;
    if (sqlite3_bind_text(q, 1, token, -1, SQLITE_STATIC))
        return bind_failed(s, q);
    int r = step(s, q, &e);
    if (r <= 0)
        return r < 0 ? e : BX_ERR_NOT_FOUND;
    e = read_queue(q, out);
    done(q);
    return e;
}

/* ---- audit --------------------------------------------------------------- */

/* Each check selects one human-readable text per violation; ?1 = now, ?2 = the
 * seat limit (checks of invariant 5 run only when the caller gives one). */
struct audit_check {
    int invariant;
    const char *sql;
};

static const struct audit_check audit_checks[] = {
    {1, "SELECT printf('schedule %d seat %d has %d CONFIRMED reservations', schedule_id, seat_no, count(*)) "
        "FROM reservations WHERE status = 'CONFIRMED' GROUP BY schedule_id, seat_no HAVING count(*) > 1"},
    {1, "SELECT printf('schedule %d seat %d has %d live holds', schedule_id, seat_no, count(*)) "
        "FROM reservations WHERE status = 'HELD' AND expires_at > ?1 "
        "GROUP BY schedule_id, seat_no HAVING count(*) > 1"},
    {1, "SELECT printf('schedule %d seat %d is SOLD but reservation %s is not CONFIRMED for it', "
        "  t.schedule_id, t.seat_no, coalesce(t.reservation_id, '(none)')) "
        "FROM seats t LEFT JOIN reservations r ON r.id = t.reservation_id "
        "WHERE t.status = 'SOLD' AND (r.id IS NULL OR r.status <> 'CONFIRMED' "
        "  OR r.schedule_id <> t.schedule_id OR r.seat_no <> t.seat_no)"},
    {1, "SELECT printf('reservation %d is CONFIRMED but seat %d/%d is %s (reservation %s)', r.id, r.schedule_id, "
        "  r.seat_no, coalesce(t.status, 'missing'), coalesce(t.reservation_id, '(none)')) "
        "FROM reservations r LEFT JOIN seats t ON t.schedule_id = r.schedule_id AND t.seat_no = r.seat_no "
        "WHERE r.status = 'CONFIRMED' AND (t.status IS NOT 'SOLD' OR t.reservation_id IS NOT r.id)"},
    {1, "SELECT printf('reservation %d is a live hold but seat %d/%d is %s (reservation %s)', r.id, r.schedule_id, "
        "  r.seat_no, coalesce(t.status, 'missing'), coalesce(t.reservation_id, '(none)')) "
        "FROM reservations r LEFT JOIN seats t ON t.schedule_id = r.schedule_id AND t.seat_no = r.seat_no "
        "WHERE r.status = 'HELD' AND r.expires_at > ?1 "
        "  AND (t.status IS NOT 'HELD' OR t.reservation_id IS NOT r.id)"},
    {1, "SELECT printf('schedule %d seat %d is held until %d by reservation %d which is %s', t.schedule_id, "
        "  t.seat_no, t.hold_expires_at, t.reservation_id, coalesce(r.status, 'missing')) "
        "FROM seats t LEFT JOIN reservations r ON r.id = t.reservation_id "
        "WHERE t.status = 'HELD' AND t.hold_expires_at > ?1 AND (r.id IS NULL OR r.status <> 'HELD' "
        "  OR r.schedule_id <> t.schedule_id OR r.seat_no <> t.seat_no)"},
    /* An expired hold's seat may stay HELD until the next hold or the sweeper, but
     * its reservation is then still HELD too: expiry and cancel change both in one
     * transaction. A seat HELD for a reservation that is not is a change half done. */
    {1, "SELECT printf('schedule %d seat %d is HELD for reservation %d which is %s (a hold end half applied)', "
        "  t.schedule_id, t.seat_no, t.reservation_id, coalesce(r.status, 'missing')) "
        "FROM seats t LEFT JOIN reservations r ON r.id = t.reservation_id "
        "WHERE t.status = 'HELD' AND t.hold_expires_at <= ?1 AND (r.id IS NULL OR r.status <> 'HELD' "
        "  OR r.schedule_id <> t.schedule_id OR r.seat_no <> t.seat_no)"},
    {1, "SELECT printf('schedule %d records %d seats, %d SOLD, but has %d seats, %d SOLD', s.id, s.seat_count, "
        "  s.sold_count, coalesce(t.seats, 0), coalesce(t.sold, 0)) "
        "FROM schedules s LEFT JOIN (SELECT schedule_id, count(*) AS seats, sum(status = 'SOLD') AS sold "
        "  FROM seats GROUP BY schedule_id) t ON t.schedule_id = s.id "
        "WHERE s.seat_count <> coalesce(t.seats, 0) OR s.sold_count <> coalesce(t.sold, 0)"},
    {2, "SELECT printf('user %d has balance %d but the ledger sums to %d', u.id, u.balance, coalesce(l.total, 0)) "
        "FROM users u LEFT JOIN (SELECT user_id, sum(CASE kind WHEN 'PAYMENT' THEN -amount ELSE amount END) "
        "  AS total FROM ledger GROUP BY user_id) l ON l.user_id = u.id "
        "WHERE u.balance <> coalesce(l.total, 0)"},
    {2, "SELECT printf('user %d has negative balance %d', id, balance) FROM users WHERE balance < 0"},
    {2, "SELECT printf('user %d ledger entry %d: balance_after %d, expected %d', user_id, id, balance_after, "
        "  prev + delta) "
        "FROM (SELECT id, user_id, balance_after, "
        "  CASE kind WHEN 'PAYMENT' THEN -amount ELSE amount END AS delta, "
        "  coalesce(lag(balance_after) OVER (PARTITION BY user_id ORDER BY id), 0) AS prev FROM ledger) "
        "WHERE balance_after <> prev + delta OR balance_after < 0"},
    {3, "SELECT printf('reservation %d is CONFIRMED with %d payments totalling %d for price %d', r.id, "
        "  count(p.id), coalesce(sum(p.amount), 0), r.price) "
        "FROM reservations r LEFT JOIN payments p ON p.reservation_id = r.id "
        "WHERE r.status = 'CONFIRMED' GROUP BY r.id HAVING count(p.id) <> 1 OR sum(p.amount) <> r.price"},
    {3, "SELECT printf('payment %d is for reservation %d which is %s', p.id, p.reservation_id, "
        "  CASE WHEN r.id IS NULL THEN 'missing' WHEN r.user_id <> p.user_id THEN 'another user''s' "
        "  ELSE r.status END) "
        "FROM payments p LEFT JOIN reservations r ON r.id = p.reservation_id "
        "WHERE r.id IS NULL OR r.status <> 'CONFIRMED' OR r.user_id <> p.user_id"},
    {3, "SELECT printf('payment %d of %d has no matching PAYMENT ledger entry', p.id, p.amount) FROM payments p "
        "WHERE NOT EXISTS (SELECT 1 FROM ledger l WHERE l.reference = 'payment:' || p.id "
        "  AND l.user_id = p.user_id AND l.kind = 'PAYMENT' AND l.amount = p.amount)"},
    {5, "SELECT printf('user %d has %d seats held or sold on schedule %d (limit %d)', user_id, count(*), "
        "  schedule_id, ?2) "
        "FROM reservations WHERE status = 'CONFIRMED' OR (status = 'HELD' AND expires_at > ?1) "
        "GROUP BY user_id, schedule_id HAVING count(*) > ?2"},
};

/* Runs every check of invariants 1, 2, 3 and 5 (4, durability, cannot be seen
 * after the fact) in one read transaction, i.e. against one snapshot. */
static bx_err sqlite_audit(struct store *base, int64_t now, int max_per_user, store_audit_cb cb, void *arg,
                           int *violations)
{
    struct sqlite_store *s = to_sq(base);
    int64_t limit = max_per_user > 0 ? max_per_user : -1;
    int count = 0;
    bx_err e = run_plain(s, ST_BEGIN_READ);
    if (e)
        return e;
    for (size_t i = 0; i < sizeof audit_checks / sizeof audit_checks[0] && e == BX_OK; i++) {
        const struct audit_check *c = &audit_checks[i];
        sqlite3_stmt *q = NULL;
        int rc, r;
        if (c->invariant == 5 && limit < 0)
            continue;
        rc = sqlite3_prepare_v2(s->db, c->sql, -1, &q, NULL);
        if (rc != SQLITE_OK) {
            e = db_error(s, rc, c->sql);
            break;
        }
        int params = sqlite3_bind_parameter_count(q);
        if ((params >= 1 && sqlite3_bind_int64(q, 1, now)) || (params >= 2 && sqlite3_bind_int64(q, 2, limit))) {
            e = bind_failed(s, q);
        } else {
            while ((r = step(s, q, &e)) == 1) {
                const unsigned char *text = sqlite3_column_text(q, 0);
                count++;
                if (cb)
                    cb(c->invariant, text ? (const char *)text : "(no text)", arg);
            }
        }
        (void)sqlite3_finalize(q); /* errors were reported by step */
    }
    tx_rollback(s); /* read-only */
    if (e == BX_OK && violations)
        *violations = count;
    return e;
}

/* ---- open ---------------------------------------------------------------- */

static const struct store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sqlite_close,
    .migrate = sqlite_migrate,
    .ping = sqlite_ping,
    .secret_get_or_create = sqlite_secret_get_or_create,
    .user_create = sqlite_user_create,
    .user_find_by_name = sqlite_user_find_by_name,
    .balance_get = sqlite_balance_get,
    .balance_charge = sqlite_balance_charge,
    .concert_create = sqlite_concert_create,
    .concert_get = sqlite_concert_get,
    .concert_list = sqlite_concert_list,
    .schedule_create = sqlite_schedule_create,
    .schedule_get = sqlite_schedule_get,
    .schedule_list_bookable = sqlite_schedule_list_bookable,
    .seat_list = sqlite_seat_list,
    .hold_seat = sqlite_hold_seat,
    .reservation_get = sqlite_reservation_get,
    .reservation_list = sqlite_reservation_list,
    .reservation_cancel = sqlite_reservation_cancel,
    .live_holds_on_concert = sqlite_live_holds_on_concert,
    .counts = sqlite_counts,
    .batch_begin = sqlite_batch_begin,
    .batch_commit = sqlite_batch_commit,
    .pay = sqlite_pay,
    .payment_list = sqlite_payment_list,
    .sweep_holds = sqlite_sweep_holds,
    .queue_save = sqlite_queue_save,
    .queue_load = sqlite_queue_load,
    .queue_find = sqlite_queue_find,
    .audit = sqlite_audit,
};

/* mkdir -p of the directory part of path (nothing for a bare file name). */
static int make_parent_dirs(const char *path, char *err, size_t errlen)
{
    char *dir = strdup(path);
    if (dir == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        for (char *p = dir + 1;; p++) {
            bool end = *p == '\0';
            if (*p == '/' || end) {
                *p = '\0';
                if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
                    snprintf(err, errlen, "cannot create directory %s: %s", dir, strerror(errno));
                    free(dir);
                    return -1;
                }
                if (end)
                    break;
                *p = '/';
            }
        }
    }
    free(dir);
    return 0;
}

/* Sets one PRAGMA that answers with a row (journal_mode) and returns its text in buf. */
static int pragma_text(sqlite3 *db, const char *sql, char *buf, size_t len)
{
    sqlite3_stmt *q;
    int rc = sqlite3_prepare_v2(db, sql, -1, &q, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(q);
    buf[0] = '\0';
    if (rc == SQLITE_ROW) {
        copy_text(buf, len, q, 0);
        rc = SQLITE_OK;
    }
    int frc = sqlite3_finalize(q);
    return rc == SQLITE_DONE ? frc : rc;
}

/* Before SQLite initialises: no allocation statistics, which every sqlite3_malloc
 * would otherwise count under one process-wide mutex (all loops, the writer and the
 * queue journal allocate constantly). Nothing here reads them. */
static void configure_sqlite(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* Opens (creating file and parent directory) one connection for one thread:
 * NOMUTEX, WAL, synchronous FULL (NORMAL with STORE_OPEN_RELAXED), foreign keys,
 * 5 s busy timeout. Does not migrate. NULL with a reason in err on failure. */
struct store *store_sqlite_open(const char *path, int flags, char *err, size_t errlen)
{
    static pthread_once_t configured = PTHREAD_ONCE_INIT;
    pthread_once(&configured, configure_sqlite);
    struct sqlite_store *s;
    char mode[16];
    int rc;
    bool memory = strcmp(path, ":memory:") == 0;
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return NULL;
    }
    if (!memory && make_parent_dirs(path, err, errlen) != 0)
        return NULL;
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->base.ops = &sqlite_ops;
    rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto fail;
    }
    if ((rc = sqlite3_extended_result_codes(s->db, 1)) != SQLITE_OK ||
        (rc = sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS)) != SQLITE_OK) {
        snprintf(err, errlen, "cannot configure %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    rc = pragma_text(s->db, "PRAGMA journal_mode=WAL", mode, sizeof mode);
    if (rc != SQLITE_OK || (strcmp(mode, "wal") != 0 && !(memory && strcmp(mode, "memory") == 0))) {
        snprintf(err, errlen, "cannot switch %s to WAL (journal_mode %s): %s", path, mode, sqlite3_errmsg(s->db));
        goto fail;
    }
    /* temp_store=MEMORY: the writer runs each op of a batch in a savepoint, whose
     * undo pages (the statement journal) would otherwise spill to a temp file */
    rc = sqlite3_exec(s->db,
                      (flags & STORE_OPEN_RELAXED)
                          ? "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY"
                          : "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY",
                      NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot configure %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    return &s->base;
fail:
    if (s->db != NULL)
        (void)sqlite3_close(s->db); /* nothing prepared yet: cannot be busy */
    free(s);
    return NULL;
}
