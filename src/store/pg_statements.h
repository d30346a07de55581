/* pg_statements.h — the SQL text of every statement the PostgreSQL backend runs,
 * in one place: store_pg.c (synchronous) prepares them by name, and an
 * asynchronous PostgreSQL store can prepare the same list (STMT_LIST expands to
 * name, kind, text). Only SQL text and the kind of each statement here; values
 * are always parameters, never spliced into the text. The functions the
 * statements call are installed by the migrations of pg_schema.h. */
#ifndef BX_STORE_PG_STATEMENTS_H
#define BX_STORE_PG_STATEMENTS_H

#define RES_COLS                                                                                                       \
    "r.id, r.user_id, r.schedule_id, s.concert_id, r.seat_no, r.price, r.status, r.held_at, r.expires_at, "            \
    "r.confirmed_at FROM reservations r JOIN schedules s ON s.id = r.schedule_id "
/* available at $2 = seats neither SOLD nor under a live hold: two range counts,
 * of seats_sold_by_schedule (migration 3) and of seats_held_by_schedule, so the
 * cost is the schedule's sold seats and live holds, not its seats, and no write
 * touches the schedule row (schedules.sold_count is no longer kept). An ended,
 * unswept hold counts as free. Only when $3 (count_available) is true; -1
 * otherwise (CASE skips the subqueries). */
#define SCHED_COLS                                                                                                     \
    "s.id, s.concert_id, s.starts_at, s.sale_opens_at, s.sale_closes_at, s.seat_count, "                               \
    "CASE WHEN $3 THEN s.seat_count "                                                                                  \
    "- (SELECT count(*) FROM seats t WHERE t.schedule_id = s.id AND t.status = 'SOLD') "                               \
    "- (SELECT count(*) FROM seats t WHERE t.schedule_id = s.id AND t.status = 'HELD' AND t.hold_expires_at > $2) "    \
    "ELSE -1 END "                                                                                                     \
    "FROM schedules s "
#define PAY_COLS "id, user_id, reservation_id, amount, balance_after, paid_at FROM payments "
#define QUEUE_COLS "token, user_id, concert_id, seq, status, issued_at, activated_at, last_seen_at, expires_at "

/* Audit (CONTRACT §3 invariants 1, 2, 3 and 5; 4, durability, cannot be seen after the
 * fact): the checks of store_sqlite.c as one statement, one row (invariant,
 * finding) per violation. $1 = now, $2 = seat limit (invariant 5 only when > 0). */
#define AUDIT_SQL                                                                                                      \
    "SELECT 1, format('schedule %s seat %s has %s CONFIRMED reservations', schedule_id, seat_no, count(*)) "           \
    "FROM reservations WHERE status = 'CONFIRMED' GROUP BY schedule_id, seat_no HAVING count(*) > 1 "                  \
    "UNION ALL "                                                                                                       \
    "SELECT 1, format('schedule %s seat %s has %s live holds', schedule_id, seat_no, count(*)) "                       \
    "FROM reservations WHERE status = 'HELD' AND expires_at > $1::bigint "                                             \
    "GROUP BY schedule_id, seat_no HAVING count(*) > 1 "                                                               \
    "UNION ALL "                                                                                                       \
    "SELECT 1, format('schedule %s seat %s is SOLD but reservation %s is not CONFIRMED for it', "                      \
    "  t.schedule_id, t.seat_no, coalesce(t.reservation_id::text, '(none)')) "                                         \
    "FROM seats t LEFT JOIN reservations r ON r.id = t.reservation_id "                                                \
    "WHERE t.status = 'SOLD' AND (r.id IS NULL OR r.status <> 'CONFIRMED' "                                            \
    "  OR r.schedule_id <> t.schedule_id OR r.seat_no <> t.seat_no) "                                                  \
    "UNION ALL "                                                                                                       \
    "SELECT 1, format('reservation %s is CONFIRMED but seat %s/%s is %s (reservation %s)', r.id, r.schedule_id, "      \
    "  r.seat_no, coalesce(t.status, 'missing'), coalesce(t.reservation_id::text, '(none)')) "                         \
    "FROM reservations r LEFT JOIN seats t ON t.schedule_id = r.schedule_id AND t.seat_no = r.seat_no "                \
    "WHERE r.status = 'CONFIRMED' "                                                                                    \
    "  AND (t.status IS DISTINCT FROM 'SOLD' OR t.reservation_id IS DISTINCT FROM r.id) "                              \
    "UNION ALL "                                                                                                       \
    "SELECT 1, format('reservation %s is a live hold but seat %s/%s is %s (reservation %s)', r.id, r.schedule_id, "    \
    "  r.seat_no, coalesce(t.status, 'missing'), coalesce(t.reservation_id::text, '(none)')) "                         \
    "FROM reservations r LEFT JOIN seats t ON t.schedule_id = r.schedule_id AND t.seat_no = r.seat_no "                \
    "WHERE r.status = 'HELD' AND r.expires_at > $1::bigint "                                                           \
    "  AND (t.status IS DISTINCT FROM 'HELD' OR t.reservation_id IS DISTINCT FROM r.id) "                              \
    "UNION ALL "                                                                                                       \
    "SELECT 1, format('schedule %s seat %s is held until %s by reservation %s which is %s', t.schedule_id, "           \
    "  t.seat_no, t.hold_expires_at, t.reservation_id, coalesce(r.status, 'missing')) "                                \
    "FROM seats t LEFT JOIN reservations r ON r.id = t.reservation_id "                                                \
    "WHERE t.status = 'HELD' AND t.hold_expires_at > $1::bigint AND (r.id IS NULL OR r.status <> 'HELD' "              \
    "  OR r.schedule_id <> t.schedule_id OR r.seat_no <> t.seat_no) "                                                  \
    "UNION ALL "                                                                                                       \
    "SELECT 1, format('schedule %s records %s seats but has %s', s.id, s.seat_count, coalesce(t.seats, 0)) "           \
    "FROM schedules s LEFT JOIN (SELECT schedule_id, count(*) AS seats FROM seats GROUP BY schedule_id) t "            \
    "  ON t.schedule_id = s.id "                                                                                       \
    "WHERE s.seat_count <> coalesce(t.seats, 0) "                                                                      \
    "UNION ALL "                                                                                                       \
    "SELECT 2, format('user %s has balance %s but the ledger sums to %s', u.id, u.balance, coalesce(l.total, 0)) "     \
    "FROM users u LEFT JOIN (SELECT user_id, sum(CASE kind WHEN 'PAYMENT' THEN -amount ELSE amount END) "              \
    "  AS total FROM ledger GROUP BY user_id) l ON l.user_id = u.id "                                                  \
    "WHERE u.balance <> coalesce(l.total, 0) "                                                                         \
    "UNION ALL "                                                                                                       \
    "SELECT 2, format('user %s has negative balance %s', id, balance) FROM users WHERE balance < 0 "                   \
    "UNION ALL "                                                                                                       \
    "SELECT 2, format('user %s ledger entry %s: balance_after %s, expected %s', user_id, id, balance_after, "          \
    "  prev + delta) "                                                                                                 \
    "FROM (SELECT id, user_id, balance_after, "                                                                        \
    "  CASE kind WHEN 'PAYMENT' THEN -amount ELSE amount END AS delta, "                                               \
    "  coalesce(lag(balance_after) OVER (PARTITION BY user_id ORDER BY id), 0) AS prev FROM ledger) AS chain "         \
    "WHERE balance_after <> prev + delta OR balance_after < 0 "                                                        \
    "UNION ALL "                                                                                                       \
    "SELECT 3, format('reservation %s is CONFIRMED with %s payments totalling %s for price %s', r.id, "                \
    "  count(p.id), coalesce(sum(p.amount), 0), r.price) "                                                             \
    "FROM reservations r LEFT JOIN payments p ON p.reservation_id = r.id "                                             \
    "WHERE r.status = 'CONFIRMED' GROUP BY r.id "                                                                      \
    "HAVING count(p.id) <> 1 OR coalesce(sum(p.amount), 0) <> r.price "                                                \
    "UNION ALL "                                                                                                       \
    "SELECT 3, format('payment %s is for reservation %s which is %s', p.id, p.reservation_id, "                        \
    "  CASE WHEN r.id IS NULL THEN 'missing' WHEN r.user_id <> p.user_id THEN 'another user''s' "                      \
    "  ELSE r.status END) "                                                                                            \
    "FROM payments p LEFT JOIN reservations r ON r.id = p.reservation_id "                                             \
    "WHERE r.id IS NULL OR r.status <> 'CONFIRMED' OR r.user_id <> p.user_id "                                         \
    "UNION ALL "                                                                                                       \
    "SELECT 3, format('payment %s of %s has no matching PAYMENT ledger entry', p.id, p.amount) FROM payments p "       \
    "WHERE NOT EXISTS (SELECT 1 FROM ledger l WHERE l.reference = 'payment:' || p.id "                                 \
    "  AND l.user_id = p.user_id AND l.kind = 'PAYMENT' AND l.amount = p.amount) "                                     \
    "UNION ALL "                                                                                                       \
    "SELECT 5, format('user %s has %s seats held or sold on schedule %s (limit %s)', user_id, count(*), "              \
    "  schedule_id, $2::bigint) "                                                                                      \
    "FROM reservations WHERE $2::bigint > 0 AND (status = 'CONFIRMED' OR (status = 'HELD' AND expires_at > $1)) "      \
    "GROUP BY user_id, schedule_id HAVING count(*) > $2::bigint"

/* The channel of the seat-change notifications of bx_write_batch and bx_sweep
 * (payload grammar: pg_schema.h, migration 3). */
#define PG_SEATS_CHANNEL "bx_seats"

/* Many writes in one transaction (bx_write_batch, pg_schema.h migration 3): $1..$13
 * are the arrays pg_batch_encode (pg_batch.h) makes; one row per write, in order. */
#define WRITE_BATCH_SQL                                                                                                \
    "SELECT o_code, o_id, o_concert, o_price, o_res, o_amount, o_balance, o_paid_at, o_live_holds "                    \
    "FROM bx_write_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"

/* One schedule's seats as they are stored, to load a seat board: a row per seat by
 * seat_no — concert_id, seat_count (the schedule's, on every row), seat_no, price,
 * status 'A' | 'H' | 'S' (the letters of the bx_seats notifications), hold end
 * (Unix ms, 0 unless 'H'; a hold that has ended still reads 'H': compare with the
 * clock). No row: no such schedule. One snapshot. To keep a board exact: LISTEN
 * bx_seats first, then load, and apply every notification that arrived while the
 * load was in flight after it: some may be older than its snapshot, and replaying
 * whole seat states in commit order ends at the committed state, whereas one
 * newer than the snapshot applied before the load would be overwritten. */
#define BOARD_LOAD_SQL                                                                                                 \
    "SELECT c.concert_id, c.seat_count, t.seat_no, t.price, left(t.status, 1), coalesce(t.hold_expires_at, 0) "        \
    "FROM schedules c JOIN seats t ON t.schedule_id = c.id WHERE c.id = $1 ORDER BY t.seat_no"

/* Every statement the backend runs (store_pg.c prepares each on first use per
 * connection), as X(name, kind, text); the prepared name is "bx_" name. RD
 * statements only read (safe to retry after a reconnect); WR may have committed. */
enum stmt_kind { RD, WR };
#define STMT_LIST(X)                                                                                                   \
    X(MIG_VERSION, RD, "SELECT coalesce(max(version), 0) FROM schema_migrations")                                      \
    X(SECRET, WR, "SELECT encode(o_value, 'hex') FROM bx_secret($1)")                                                  \
    X(USER_INSERT, WR, "INSERT INTO users(name, pwhash) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id")   \
    X(USER_BY_NAME, RD, "SELECT id, name, pwhash, balance FROM users WHERE name = $1")                                 \
    X(BALANCE_GET, RD, "SELECT balance FROM users WHERE id = $1")                                                      \
    X(CHARGE, WR, "SELECT o_code, o_balance FROM bx_charge($1, $2, $3, $4, $5, $6)")                                   \
    X(CONCERT_INSERT, WR, "INSERT INTO concerts(title, venue) VALUES ($1, $2) RETURNING id")                           \
    X(CONCERT_GET, RD, "SELECT id, title, venue FROM concerts WHERE id = $1")                                          \
    X(CONCERT_LIST, RD, "SELECT id, title, venue FROM concerts ORDER BY id")                                           \
    X(SCHEDULE_CREATE, WR, "SELECT o_code, o_id FROM bx_schedule_create($1, $2, $3, $4, $5, $6)")                      \
    X(SCHEDULE_GET, RD, "SELECT " SCHED_COLS "WHERE s.id = $1")                                                        \
    X(SCHEDULE_BOOKABLE, RD,                                                                                           \
      "SELECT " SCHED_COLS "WHERE s.concert_id = $1 AND s.sale_opens_at <= $2 "                                        \
      "AND $2 < s.sale_closes_at ORDER BY s.starts_at, s.id")                                                          \
    X(SEAT_LIST, RD,                                                                                                   \
      "SELECT t.seat_no, t.price, CASE WHEN t.status = 'SOLD' THEN 2 "                                                 \
      "WHEN t.status = 'HELD' AND t.hold_expires_at > $2 THEN 1 ELSE 0 END, "                                          \
      "(SELECT concert_id FROM schedules WHERE id = $1), "                                                             \
      "CASE WHEN t.status = 'HELD' AND t.hold_expires_at > $2 THEN t.hold_expires_at ELSE 0 END "                      \
      "FROM seats t WHERE t.schedule_id = $1 ORDER BY t.seat_no")                                                      \
    X(SEAT_FLAGS, RD,                                                                                                  \
      "SELECT (SELECT concert_id FROM schedules WHERE id = $1), count(*), min(seat_no), max(seat_no), "                \
      "min(price), max(price), string_agg(CASE WHEN status = 'SOLD' OR (status = 'HELD' AND hold_expires_at > $2) "    \
      "THEN '0' ELSE '1' END, '' ORDER BY seat_no) FROM seats WHERE schedule_id = $1")                                 \
    X(HOLD, WR, "SELECT o_code, o_id, o_concert, o_price FROM bx_hold($1, $2, $3, $4, $5, $6)")                        \
    X(RES_GET, RD, "SELECT " RES_COLS "WHERE r.id = $1 AND r.user_id = $2")                                            \
    X(RES_LIST, RD, "SELECT " RES_COLS "WHERE r.user_id = $1 ORDER BY r.id DESC")                                      \
    X(CANCEL, WR, "SELECT o_code FROM bx_cancel($1, $2, $3)")                                                          \
    X(COUNT_LIVE_HOLDS, RD, "SELECT count(*) FROM seats WHERE status = 'HELD' AND hold_expires_at > $1")               \
    X(COUNT_SOLD, RD, "SELECT count(*) FROM seats WHERE status = 'SOLD'")                                              \
    X(LIVE_HOLDS, RD,                                                                                                  \
      "SELECT count(*) FROM reservations r JOIN schedules s ON s.id = r.schedule_id "                                  \
      "WHERE r.user_id = $1 AND s.concert_id = $2 AND r.status = 'HELD' AND r.expires_at > $3")                        \
    X(PAY, WR, "SELECT o_code, o_id, o_res, o_amount, o_balance, o_paid_at FROM bx_pay($1, $2, $3, $4, $5, $6)")       \
    X(PAYMENT_LIST, RD, "SELECT " PAY_COLS "WHERE user_id = $1 ORDER BY id DESC LIMIT $2")                             \
    X(PAYMENT_LIST_BEFORE, RD, "SELECT " PAY_COLS "WHERE user_id = $1 AND id < $3 ORDER BY id DESC LIMIT $2")          \
    X(SWEEP, WR, "SELECT o_locked, o_expired FROM bx_sweep($1, $2)")                                                   \
    X(REPLAN, RD, "DISCARD PLANS")                                                                                     \
    X(QUEUE_UPSERT, WR,                                                                                                \
      "INSERT INTO queue_tokens(" QUEUE_COLS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "                          \
      "ON CONFLICT (token) DO UPDATE SET user_id = excluded.user_id, "                                                 \
      "concert_id = excluded.concert_id, seq = excluded.seq, status = excluded.status, "                               \
      "activated_at = excluded.activated_at, "                                                                         \
      "last_seen_at = excluded.last_seen_at, expires_at = excluded.expires_at")                                        \
    X(QUEUE_LOAD, RD,                                                                                                  \
      "SELECT " QUEUE_COLS "FROM queue_tokens WHERE status IN ('WAITING', 'ACTIVE') "                                  \
      "ORDER BY concert_id, seq")                                                                                      \
    X(QUEUE_FIND, RD, "SELECT " QUEUE_COLS "FROM queue_tokens WHERE token = $1")                                       \
    X(AUDIT, RD, AUDIT_SQL)                                                                                            \
    X(WRITE_BATCH, WR, WRITE_BATCH_SQL)                                                                                \
    X(BOARD_LOAD, RD, BOARD_LOAD_SQL)                                                                                  \
    X(BARRIER, RD, "SELECT 1")

#endif
