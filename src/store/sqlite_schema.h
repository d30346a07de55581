/* sqlite_schema.h — the SQLite schema of boxoffice as numbered migrations,
 * included only by store_sqlite.c. Migrations are append-only: never edit one that
 * has shipped; add the next number instead. Times are Unix ms, money int64 won. */
#ifndef BX_STORE_SQLITE_SCHEMA_H
#define BX_STORE_SQLITE_SCHEMA_H

/* Table of applied migration numbers, created before anything else. */
static const char sqlite_schema_bootstrap[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "  version INTEGER PRIMARY KEY,"
    "  applied_at INTEGER NOT NULL)";

/* sqlite_migrations[i] is migration number i + 1. */
static const char *const sqlite_migrations[] = {
    /* 1: the domain of CONTRACT §3 and the waiting-room persistence of DESIGN.md. */
    "CREATE TABLE meta ("
    "  key TEXT PRIMARY KEY,"
    "  value BLOB NOT NULL"
    ") WITHOUT ROWID;"

    "CREATE TABLE users ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  pwhash TEXT NOT NULL,"
    "  balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0)," /* invariant 2 */
    "  created_at INTEGER NOT NULL"
    "    DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER))"
    ");"

    "CREATE TABLE concerts ("
    "  id INTEGER PRIMARY KEY,"
    "  title TEXT NOT NULL,"
    "  venue TEXT NOT NULL"
    ");"

    "CREATE TABLE schedules ("
    "  id INTEGER PRIMARY KEY,"
    "  concert_id INTEGER NOT NULL REFERENCES concerts(id),"
    "  starts_at INTEGER NOT NULL,"
    "  sale_opens_at INTEGER NOT NULL,"
    "  sale_closes_at INTEGER NOT NULL,"
    "  seat_count INTEGER NOT NULL CHECK (seat_count >= 1)"
    ");"
    "CREATE INDEX schedules_by_concert ON schedules(concert_id, starts_at);"

    /* A seat points at the reservation holding or owning it; AVAILABLE exactly when
     * it points at none. */
    "CREATE TABLE seats ("
    "  schedule_id INTEGER NOT NULL REFERENCES schedules(id),"
    "  seat_no INTEGER NOT NULL CHECK (seat_no >= 1),"
    "  price INTEGER NOT NULL CHECK (price >= 0),"
    "  status TEXT NOT NULL DEFAULT 'AVAILABLE' CHECK (status IN ('AVAILABLE','HELD','SOLD')),"
    "  reservation_id INTEGER REFERENCES reservations(id),"
    "  hold_expires_at INTEGER,"
    "  PRIMARY KEY (schedule_id, seat_no),"
    "  CHECK ((status = 'AVAILABLE') = (reservation_id IS NULL)),"
    "  CHECK ((status = 'HELD') = (hold_expires_at IS NOT NULL))"
    ") WITHOUT ROWID;"

    "CREATE TABLE reservations ("
    "  id INTEGER PRIMARY KEY,"
    "  user_id INTEGER NOT NULL REFERENCES users(id),"
    "  schedule_id INTEGER NOT NULL,"
    "  seat_no INTEGER NOT NULL,"
    "  price INTEGER NOT NULL CHECK (price >= 0),"
    "  status TEXT NOT NULL CHECK (status IN ('HELD','CONFIRMED','EXPIRED','CANCELLED')),"
    "  held_at INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL,"
    "  confirmed_at INTEGER,"
    "  FOREIGN KEY (schedule_id, seat_no) REFERENCES seats(schedule_id, seat_no)"
    ");"
    "CREATE INDEX reservations_by_user ON reservations(user_id, id);"
    "CREATE INDEX reservations_by_schedule_user ON reservations(schedule_id, user_id);"
    "CREATE INDEX reservations_by_status_expiry ON reservations(status, expires_at);"
    /* Invariant 1, enforced by the schema as well as by the conditional updates. */
    "CREATE UNIQUE INDEX reservations_one_confirmed_per_seat"
    "  ON reservations(schedule_id, seat_no) WHERE status = 'CONFIRMED';"

    "CREATE TABLE payments ("
    "  id INTEGER PRIMARY KEY,"
    "  user_id INTEGER NOT NULL REFERENCES users(id),"
    "  reservation_id INTEGER NOT NULL UNIQUE REFERENCES reservations(id)," /* invariant 3 */
    "  amount INTEGER NOT NULL CHECK (amount >= 0),"
    "  balance_after INTEGER NOT NULL CHECK (balance_after >= 0),"
    "  paid_at INTEGER NOT NULL,"
    "  idempotency_key TEXT"
    ");"
    "CREATE INDEX payments_by_user ON payments(user_id, id);"

    "CREATE TABLE ledger ("
    "  id INTEGER PRIMARY KEY,"
    "  user_id INTEGER NOT NULL REFERENCES users(id),"
    "  kind TEXT NOT NULL CHECK (kind IN ('CHARGE','PAYMENT','REFUND')),"
    "  amount INTEGER NOT NULL CHECK (amount >= 0),"
    "  balance_after INTEGER NOT NULL CHECK (balance_after >= 0),"
    "  created_at INTEGER NOT NULL,"
    "  reference TEXT"
    ");"
    "CREATE INDEX ledger_by_user ON ledger(user_id, id);"
    "CREATE INDEX ledger_by_reference ON ledger(reference);"

    /* scope: 'charge' | 'payment'; result_id: ledger id (charge) or payment id. */
    "CREATE TABLE idempotency ("
    "  user_id INTEGER NOT NULL REFERENCES users(id),"
    "  scope TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  request_hash BLOB NOT NULL,"
    "  result_id INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  PRIMARY KEY (user_id, scope, key)"
    ") WITHOUT ROWID;"

    "CREATE TABLE queue_tokens ("
    "  token TEXT PRIMARY KEY,"
    "  user_id INTEGER NOT NULL,"
    "  concert_id INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('WAITING','ACTIVE','EXPIRED')),"
    "  issued_at INTEGER NOT NULL,"
    "  activated_at INTEGER NOT NULL DEFAULT 0,"
    "  last_seen_at INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL DEFAULT 0"
    ") WITHOUT ROWID;"
    "CREATE INDEX queue_tokens_live ON queue_tokens(concert_id, seq)"
    "  WHERE status IN ('WAITING','ACTIVE');",

    /* 2: the date list without a seat scan. available = seat_count - sold_count -
     * live holds, where the live holds are a range of seats_held_by_schedule.
     * sold_count is kept by a trigger rather than by the pay statements, so every
     * path that sells or unsells a seat keeps it (including a connection still
     * running the previous binary's statements, and hand-made fixes); audit checks
     * it against the seats (invariant 1). The backfill runs under the migration's
     * write lock, so no sale can slip between it and the trigger. The index repeats
     * status (constant in it) only so that SQLite 3.40 sees it as covering: without
     * it each counted hold costs a lookup in seats. */
    "ALTER TABLE schedules ADD COLUMN sold_count INTEGER NOT NULL DEFAULT 0"
    "  CHECK (sold_count BETWEEN 0 AND seat_count);"
    "UPDATE schedules SET sold_count ="
    "  (SELECT count(*) FROM seats t WHERE t.schedule_id = schedules.id AND t.status = 'SOLD');"
    "CREATE TRIGGER seats_sold_count AFTER UPDATE OF status ON seats"
    "  WHEN (old.status = 'SOLD') <> (new.status = 'SOLD') BEGIN"
    "    UPDATE schedules SET sold_count = sold_count + (new.status = 'SOLD') - (old.status = 'SOLD')"
    "      WHERE id = new.schedule_id;"
    "  END;"
    "CREATE INDEX seats_held_by_schedule ON seats(schedule_id, hold_expires_at, status)"
    "  WHERE status = 'HELD';",
};

#define SQLITE_MIGRATION_COUNT ((int)(sizeof sqlite_migrations / sizeof sqlite_migrations[0]))

#endif
