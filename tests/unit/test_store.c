/* test_store.c — unit tests of the storage interface (store/store.h), compiled
 * once per backend: plain for SQLite (store_sqlite.c, a fresh database file per
 * test) and with -DBX_TEST_PG=1 for PostgreSQL (store_pg.c, a fresh database per
 * test on the server named by BOXOFFICE_TEST_PG_URL, from tests/harness/pg.sh).
 * The same tests hold both backends to the same contract; each names the
 * behaviour it checks and asserts the result code and the state afterwards. Only
 * raw_sql/raw_int (direct access for setup and violation injection) and a few
 * backend-specific tests differ. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "util/clock.h"

#ifdef BX_TEST_PG
#include <libpq-fe.h>
#include <poll.h>
#include <sodium.h>

#include "store/pg_batch.h"
#include "store/pg_schema.h"
#include "store/pg_statements.h"
#define SUITE store_pg
#define SCHEMA_VERSION 5 /* migrations in this build */
/* Sold seats of a schedule (migration 3 stopped keeping schedules.sold_count). */
#define SOLD_OF(id) "SELECT count(*) FROM seats WHERE status = 'SOLD' AND schedule_id = " #id
#else
#include <sqlite3.h>
#define SUITE store_sqlite
#define SCHEMA_VERSION 2 /* migrations in this build */
#define SOLD_OF(id) "SELECT sold_count FROM schedules WHERE id = " #id
#endif
#define T0 1000000000000LL /* "now" of every test, Unix ms */
#define HOLD_MS 300000LL
#define MAX_SEATS 4

static struct store *st;

#ifdef BX_TEST_PG
/* ---- PostgreSQL: one fresh database per test ------------------------------ */

#define MAX_DBS 4
static const char *admin_url; /* BOXOFFICE_TEST_PG_URL */
static char db_url[512];      /* the database the test's stores open */
static char dbs[MAX_DBS][64]; /* databases this test created: dropped at teardown */
static int ndbs;

/* url with its database name replaced by dbname. */
static void url_with_db(const char *url, const char *dbname, char *out, size_t len)
{
    const char *scheme = strstr(url, "://");
    cr_assert_not_null(scheme, "BOXOFFICE_TEST_PG_URL must be a postgresql:// URL, got %s", url);
    const char *host = scheme + 3;
    const char *query = strchr(host, '?');
    const char *slash = strchr(host, '/');
    if (slash != NULL && query != NULL && slash > query)
        slash = NULL;
    size_t keep = slash ? (size_t)(slash - url) : (query ? (size_t)(query - url) : strlen(url));
    int n = snprintf(out, len, "%.*s/%s%s", (int)keep, url, dbname, query ? query : "");
    cr_assert(n > 0 && (size_t)n < len, "URL too long");
}

static PGconn *raw_connect(const char *url)
{
    PGconn *c = PQconnectdb(url);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "connect %s: %s", url, PQerrorMessage(c));
    return c;
}

static void raw_exec_on(const char *url, const char *sql)
{
    PGconn *c = raw_connect(url);
    PGresult *r = PQexec(c, sql);
    ExecStatusType rs = PQresultStatus(r);
    cr_assert(rs == PGRES_COMMAND_OK || rs == PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
}

/* Creates an empty database and points db_url at it. */
static void fresh_database(void)
{
    char sql[384];
    cr_assert_lt(ndbs, MAX_DBS);
    snprintf(dbs[ndbs], sizeof dbs[ndbs], "bx_test_%ld_%d_%ld", (long)getpid(), ndbs,
             (long)(clock_mono_ms() % 1000000));
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", dbs[ndbs]);
    raw_exec_on(admin_url, sql);
    url_with_db(admin_url, dbs[ndbs], db_url, sizeof db_url);
    ndbs++;
}

static void backend_setup(void)
{
    admin_url = getenv("BOXOFFICE_TEST_PG_URL");
    if (admin_url == NULL || admin_url[0] == '\0')
        cr_assert_fail("BOXOFFICE_TEST_PG_URL is not set: the PostgreSQL store tests need a server. Start one with\n"
                       "  U=$(tests/harness/pg.sh start /tmp/pgt) && BOXOFFICE_TEST_PG_URL=$U <this test>");
    fresh_database();
}

static void backend_teardown(void)
{
    char sql[384];
    for (int i = 0; i < ndbs; i++) {
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbs[i]);
        raw_exec_on(admin_url, sql);
    }
    ndbs = 0;
}

/* A new connection to the test's database, not migrated. */
static struct store *connect_store(char *err, size_t errlen)
{
    return store_pg_open(db_url, 0, err, errlen);
}

/* Runs SQL text (several statements allowed) on a direct connection. */
static void raw_sql(const char *sql)
{
    raw_exec_on(db_url, sql);
}

/* The first column of the first row as an integer (booleans read 1/0). */
static int64_t raw_int(const char *sql)
{
    PGconn *c = raw_connect(db_url);
    PGresult *r = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(r));
    cr_assert_geq(PQntuples(r), 1, "%s: no row", sql);
    const char *v = PQgetvalue(r, 0, 0);
    int64_t out = strcmp(v, "t") == 0 ? 1 : strcmp(v, "f") == 0 ? 0 : strtoll(v, NULL, 10);
    PQclear(r);
    PQfinish(c);
    return out;
}

#else
/* ---- SQLite: one fresh database file per test ----------------------------- */

static char dir[64];
static char db_path[128];

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void backend_setup(void)
{
    strcpy(dir, "/tmp/bx_store_test_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    /* a nested, not yet existing directory: open must create it */
    snprintf(db_path, sizeof db_path, "%s/data/sub/boxoffice.db", dir);
}

static void backend_teardown(void)
{
    nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Points the test at another database nobody created yet. */
static void fresh_database(void)
{
    snprintf(db_path, sizeof db_path, "%s/fresh/other.db", dir);
}

/* A new connection to the test's database, not migrated. */
static struct store *connect_store(char *err, size_t errlen)
{
    return store_sqlite_open(db_path, 0, err, errlen);
}

/* Undoes migration 2 by hand: the database an older binary left behind. */
#define SCHEMA_BACK_TO_1                                                                                               \
    "DROP TRIGGER seats_sold_count; DROP INDEX seats_held_by_schedule; "                                               \
    "ALTER TABLE schedules DROP COLUMN sold_count; DELETE FROM schema_migrations WHERE version = 2"

static void raw_sql(const char *sql)
{
    sqlite3 *db;
    char *msg = NULL;
    cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_free(msg);
    cr_assert_eq(sqlite3_close(db), SQLITE_OK);
}

static int64_t raw_int(const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(q), SQLITE_ROW, "%s", sql);
    int64_t v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}
#endif

/* ---- common fixture -------------------------------------------------------- */

static struct store *open_store(void)
{
    char err[256] = "";
    struct store *s = connect_store(err, sizeof err);
    cr_assert_not_null(s, "open: %s", err);
    cr_assert_eq(s->ops->migrate(s), BX_OK);
    return s;
}

static void setup(void)
{
    backend_setup();
    st = open_store();
}

static void teardown(void)
{
    if (st)
        st->ops->close(st);
    st = NULL;
    backend_teardown();
}

TestSuite(SUITE, .init = setup, .fini = teardown);

/* ---- helpers ----------------------------------------------------------- */

static int64_t make_user(const char *name, int64_t balance)
{
    int64_t id, after;
    cr_assert_eq(st->ops->user_create(st, name, "$argon2id$fake", &id), BX_OK);
    if (balance > 0) {
        struct idem no_key = {.key = NULL};
        cr_assert_eq(st->ops->balance_charge(st, id, balance, T0 - 1000, &no_key, &after), BX_OK);
        cr_assert_eq(after, balance);
    }
    return id;
}

static int64_t make_concert(void)
{
    int64_t id;
    cr_assert_eq(st->ops->concert_create(st, "Spring Tour", "Olympic Hall", &id), BX_OK);
    return id;
}

/* A schedule on sale around T0 with `seats` seats at `price`. */
static int64_t make_schedule(int64_t concert_id, int32_t seats, int64_t price)
{
    struct schedule in = {
        .concert_id = concert_id,
        .starts_at = T0 + 7 * 86400000LL,
        .sale_opens_at = T0 - 3600000,
        .sale_closes_at = T0 + 86400000,
        .seat_count = seats,
    };
    int64_t id;
    cr_assert_eq(st->ops->schedule_create(st, &in, price, &id), BX_OK);
    return id;
}

static struct idem key(const char *k, unsigned char fill)
{
    struct idem i = {.key = k};
    memset(i.request_hash, fill, sizeof i.request_hash);
    return i;
}

static int64_t balance_of(int64_t user)
{
    int64_t b;
    cr_assert_eq(st->ops->balance_get(st, user, &b), BX_OK);
    return b;
}

static bool seat_available(int64_t schedule_id, int32_t seat_no, int64_t now)
{
    struct seat *seats;
    size_t n;
    cr_assert_eq(st->ops->seat_list(st, schedule_id, now, NULL, &seats, &n), BX_OK);
    cr_assert_geq(n, (size_t)seat_no);
    bool avail = seats[seat_no - 1].available;
    cr_assert_eq(seats[seat_no - 1].seat_no, seat_no);
    free(seats);
    return avail;
}

struct findings {
    int per_invariant[6];
    int total;
};

static void collect(int invariant, const char *finding, void *arg)
{
    struct findings *f = arg;
    cr_log_info("audit: invariant %d: %s", invariant, finding);
    cr_assert(invariant >= 1 && invariant <= 5);
    f->per_invariant[invariant]++;
    f->total++;
}

static struct findings audit_with_limit(int64_t now, int max_per_user)
{
    struct findings f = {0};
    int violations = -1;
    cr_assert_eq(st->ops->audit(st, now, max_per_user, collect, &f, &violations), BX_OK);
    cr_assert_eq(violations, f.total);
    return f;
}

static struct findings audit(int64_t now)
{
    return audit_with_limit(now, 0);
}

/* ---- schema and connection --------------------------------------------- */

#ifdef BX_TEST_PG
/* Migrations are append-only (pg_schema.h): a database migrated by an earlier
 * binary never runs an edited one again, so its text must stay as it shipped,
 * however the source spells it (migrations 4 and 5 share macros). */
Test(SUITE, shipped_migrations_are_never_edited)
{
    static const char *const shipped[] = {
        "0f612ae3b4c8fb7bbfdd6c65042e8f25411c3269ee869bafbc235cf92e8a9861",
        "4f95695894371bfde878ed180089f3c9b7b7860271febe1046f67415d96d7908",
        "41012e659a2352f639b8c4ff2ac32e76a606e8f0740f0e695e5166e026a1aa8e",
        "adaeb3b43de790db1e8ac90b214db484ac7306028c115f5ff355a12928448e5c",
        "41d83de037530cadc9bbe7ed7b55eecc42364941285e82cc97267561743f247d",
    };
    cr_assert_eq(PG_MIGRATION_COUNT, (int)(sizeof shipped / sizeof shipped[0]),
                 "a new migration: add its SHA-256 here when it ships");
    for (int i = 0; i < PG_MIGRATION_COUNT; i++) {
        unsigned char h[crypto_hash_sha256_BYTES];
        char hex[2 * crypto_hash_sha256_BYTES + 1];
        crypto_hash_sha256(h, (const unsigned char *)pg_migrations[i], strlen(pg_migrations[i]));
        sodium_bin2hex(hex, sizeof hex, h, sizeof h);
        cr_expect_str_eq(hex, shipped[i], "migration %d was edited", i + 1);
    }
}
#endif

Test(SUITE, migrate_twice_is_a_no_op)
{
    cr_assert_eq(st->ops->migrate(st), BX_OK);
    struct store *other = open_store(); /* a second connection migrates too */
    cr_assert_eq(other->ops->migrate(other), BX_OK);
    other->ops->close(other);
    cr_assert_eq(st->ops->ping(st), BX_OK);
    cr_assert_eq(raw_int("SELECT count(*) FROM schema_migrations"), SCHEMA_VERSION);
    cr_assert_eq(raw_int("SELECT max(version) FROM schema_migrations"), SCHEMA_VERSION);
}

static void *open_and_migrate(void *arg)
{
    char err[256];
    bx_err *result = arg;
    struct store *s = connect_store(err, sizeof err);
    *result = s ? s->ops->migrate(s) : BX_ERR_INTERNAL;
    if (s)
        s->ops->close(s);
    return NULL;
}

Test(SUITE, concurrent_first_migrations_agree)
{
    enum { N = 6 };
    pthread_t th[N];
    bx_err results[N];
    fresh_database(); /* a database nobody migrated yet */
    for (int i = 0; i < N; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, open_and_migrate, &results[i]), 0);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(results[i], BX_OK, "connection %d: %d", i, results[i]);
    }
    cr_assert_eq(raw_int("SELECT count(*) FROM schema_migrations"), SCHEMA_VERSION);
#ifndef BX_TEST_PG
    cr_assert_eq(raw_int("SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);
#endif
}

Test(SUITE, database_newer_than_binary_is_refused)
{
    raw_sql("INSERT INTO schema_migrations(version, applied_at) VALUES (999, 0)");
    struct store *other;
    char err[256];
    other = connect_store(err, sizeof err);
    cr_assert_not_null(other, "%s", err);
    cr_assert_eq(other->ops->migrate(other), BX_ERR_INTERNAL);
    other->ops->close(other);
    cr_assert_eq(raw_int("SELECT count(*) FROM schema_migrations"), SCHEMA_VERSION + 1, "nothing was applied");
}

#ifndef BX_TEST_PG
Test(SUITE, database_is_wal_with_foreign_keys)
{
    cr_assert_eq(raw_int("SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);
}
#endif

Test(SUITE, secret_is_created_once_and_shared)
{
    unsigned char a[32], b[32], zero[32] = {0};
    cr_assert_eq(st->ops->secret_get_or_create(st, a), BX_OK);
    cr_assert_neq(memcmp(a, zero, 32), 0);
    struct store *other = open_store();
    cr_assert_eq(other->ops->secret_get_or_create(other, b), BX_OK);
    other->ops->close(other);
    cr_assert_eq(memcmp(a, b, 32), 0);
    cr_assert_eq(st->ops->secret_get_or_create(st, b), BX_OK);
    cr_assert_eq(memcmp(a, b, 32), 0);
}

/* ---- users and balance --------------------------------------------------- */

Test(SUITE, user_create_then_duplicate_name_is_taken)
{
    int64_t id, id2;
    struct user u;
    cr_assert_eq(st->ops->user_create(st, "alice", "$hash", &id), BX_OK);
    cr_assert_gt(id, 0);
    cr_assert_eq(st->ops->user_create(st, "alice", "$other", &id2), BX_ERR_NAME_TAKEN);
    cr_assert_eq(st->ops->user_find_by_name(st, "alice", &u), BX_OK);
    cr_assert_eq(u.id, id);
    cr_assert_str_eq(u.name, "alice");
    cr_assert_str_eq(u.pwhash, "$hash");
    cr_assert_eq(u.balance, 0);
}

Test(SUITE, unknown_user_is_not_found)
{
    struct user u;
    int64_t b;
    cr_assert_eq(st->ops->user_find_by_name(st, "nobody", &u), BX_ERR_NOT_FOUND);
    cr_assert_eq(st->ops->balance_get(st, 4242, &b), BX_ERR_NOT_FOUND);
}

Test(SUITE, charge_adds_to_balance_and_ledger)
{
    int64_t u = make_user("bob", 0), after;
    struct idem none = {.key = NULL};
    cr_assert_eq(st->ops->balance_charge(st, u, 5000, T0, &none, &after), BX_OK);
    cr_assert_eq(after, 5000);
    cr_assert_eq(st->ops->balance_charge(st, u, 2500, T0, &none, &after), BX_OK);
    cr_assert_eq(after, 7500);
    cr_assert_eq(balance_of(u), 7500);
    cr_assert_eq(raw_int("SELECT count(*) FROM ledger WHERE kind = 'CHARGE'"), 2);
    cr_assert_eq(raw_int("SELECT balance_after FROM ledger ORDER BY id DESC LIMIT 1"), 7500);
}

Test(SUITE, charge_past_balance_limit_is_refused)
{
    int64_t u = make_user("rich", 0), after;
    struct idem none = {.key = NULL};
    raw_sql("UPDATE users SET balance = 999999999999");
    cr_assert_eq(st->ops->balance_charge(st, u, 2, T0, &none, &after), BX_ERR_BALANCE_LIMIT);
    cr_assert_eq(balance_of(u), 999999999999LL);
    cr_assert_eq(st->ops->balance_charge(st, u, 1, T0, &none, &after), BX_OK);
    cr_assert_eq(after, 1000000000000LL);
}

Test(SUITE, charge_replay_returns_first_balance_once)
{
    int64_t u = make_user("carol", 0), after;
    struct idem k = key("charge-1", 0xAA);
    struct idem none = {.key = NULL};
    cr_assert_eq(st->ops->balance_charge(st, u, 1000, T0, &k, &after), BX_OK);
    cr_assert_eq(after, 1000);
    cr_assert_eq(st->ops->balance_charge(st, u, 500, T0, &none, &after), BX_OK);
    after = 0;
    cr_assert_eq(st->ops->balance_charge(st, u, 1000, T0 + 5, &k, &after), BX_REPLAY);
    cr_assert_eq(after, 1000, "replay answers the balance of the first call");
    cr_assert_eq(balance_of(u), 1500, "the replay charged nothing");
}

Test(SUITE, charge_same_key_other_body_is_mismatch)
{
    int64_t u = make_user("dave", 0), after;
    struct idem k1 = key("k", 0x01), k2 = key("k", 0x02);
    cr_assert_eq(st->ops->balance_charge(st, u, 1000, T0, &k1, &after), BX_OK);
    cr_assert_eq(st->ops->balance_charge(st, u, 2000, T0, &k2, &after), BX_ERR_IDEMPOTENCY_MISMATCH);
    cr_assert_eq(balance_of(u), 1000);
    /* another user may use the same key */
    int64_t v = make_user("erin", 0);
    cr_assert_eq(st->ops->balance_charge(st, v, 2000, T0, &k2, &after), BX_OK);
}

/* ---- catalogue ----------------------------------------------------------- */

Test(SUITE, schedule_for_unknown_concert_is_refused)
{
    struct schedule in = {
        .concert_id = 99, .starts_at = T0, .sale_opens_at = T0, .sale_closes_at = T0 + 1, .seat_count = 10};
    int64_t id;
    cr_assert_eq(st->ops->schedule_create(st, &in, 1000, &id), BX_ERR_CONCERT_NOT_FOUND);
    cr_assert_eq(raw_int("SELECT count(*) FROM schedules"), 0);
}

Test(SUITE, catalogue_lists_concerts_schedules_and_seats)
{
    int64_t c = make_concert(), other = make_concert();
    int64_t sch = make_schedule(c, 50, 80000);
    struct schedule closed = {
        .concert_id = c, .starts_at = T0 + 1, .sale_opens_at = T0 + 1000, .sale_closes_at = T0 + 2000, .seat_count = 5};
    int64_t closed_id;
    cr_assert_eq(st->ops->schedule_create(st, &closed, 100, &closed_id), BX_OK);

    struct concert *cs;
    size_t n;
    cr_assert_eq(st->ops->concert_list(st, &cs, &n), BX_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(cs[0].id, c);
    cr_assert_str_eq(cs[1].venue, "Olympic Hall");
    free(cs);
    struct concert one;
    cr_assert_eq(st->ops->concert_get(st, other, &one), BX_OK);
    cr_assert_str_eq(one.title, "Spring Tour");
    cr_assert_eq(st->ops->concert_get(st, 777, &one), BX_ERR_CONCERT_NOT_FOUND);

    struct schedule *ss;
    cr_assert_eq(st->ops->schedule_list_bookable(st, c, T0, true, &ss, &n), BX_OK);
    cr_assert_eq(n, 1, "the schedule whose sale has not opened is not bookable");
    cr_assert_eq(ss[0].id, sch);
    cr_assert_eq(ss[0].available, 50);
    free(ss);
    cr_assert_eq(st->ops->schedule_list_bookable(st, c, T0, false, &ss, &n), BX_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(ss[0].id, sch);
    cr_assert_eq(ss[0].seat_count, 50);
    cr_assert_eq(ss[0].available, -1, "not counted when not asked for");
    free(ss);

    struct schedule g;
    cr_assert_eq(st->ops->schedule_get(st, sch, T0, true, &g), BX_OK);
    cr_assert_eq(g.seat_count, 50);
    cr_assert_eq(g.available, 50);
    cr_assert_eq(g.concert_id, c);
    cr_assert_eq(st->ops->schedule_get(st, sch, T0, false, &g), BX_OK);
    cr_assert_eq(g.seat_count, 50);
    cr_assert_eq(g.concert_id, c);
    cr_assert_eq(g.available, -1, "not counted when not asked for");
    cr_assert_eq(st->ops->schedule_get(st, 999, T0, true, &g), BX_ERR_SCHEDULE_NOT_FOUND);

    struct seat *seats;
    int64_t of = 0;
    cr_assert_eq(st->ops->seat_list(st, sch, T0, &of, &seats, &n), BX_OK);
    cr_assert_eq(of, c, "the schedule's concert comes with its seats");
    cr_assert_eq(n, 50);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(seats[i].seat_no, (int32_t)i + 1);
        cr_assert_eq(seats[i].price, 80000);
        cr_assert(seats[i].available);
    }
    free(seats);
    cr_assert_eq(st->ops->seat_list(st, 999, T0, &of, &seats, &n), BX_ERR_SCHEDULE_NOT_FOUND);
}

Test(SUITE, seat_list_reports_held_sold_and_ended_holds)
{
    int64_t u = make_user("viewer", 100000), sch = make_schedule(make_concert(), 4, 1000);
    struct reservation r;
    struct payment p;
    struct idem none = {.key = NULL};
    struct seat *seats;
    size_t n;
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 1, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 2, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->pay(st, u, r.id, -1, T0 + 1, &none, &p), BX_OK);
    cr_assert_eq(st->ops->seat_list(st, sch, T0 + 1, NULL, &seats, &n), BX_OK);
    cr_assert_eq(n, 4);
    cr_assert_eq(seats[0].status, SEAT_HELD);
    cr_assert_not(seats[0].available);
    cr_assert_eq(seats[1].status, SEAT_SOLD);
    cr_assert_not(seats[1].available);
    cr_assert_eq(seats[2].status, SEAT_AVAILABLE);
    cr_assert(seats[2].available);
    free(seats);
    cr_assert_eq(st->ops->seat_list(st, sch, T0 + HOLD_MS, NULL, &seats, &n), BX_OK);
    cr_assert_eq(seats[0].status, SEAT_AVAILABLE, "a hold that ended reads AVAILABLE before any sweep");
    cr_assert(seats[0].available);
    cr_assert_eq(seats[1].status, SEAT_SOLD);
    free(seats);
}

#ifdef BX_TEST_PG
/* PostgreSQL only (embedded mode reads maps from memory): the compact map folded
 * in the store says what seat_list says, seat by seat. */
Test(SUITE, seat_flags_fold_held_sold_and_ended_holds_like_seat_list)
{
    int64_t u = make_user("folder", 100000), c = make_concert(), sch = make_schedule(c, 5, 1000);
    struct reservation r;
    struct payment p;
    struct idem none = {.key = NULL};
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 2, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 4, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->pay(st, u, r.id, -1, T0 + 1, &none, &p), BX_OK);
    int64_t of = 0, price = 0;
    int32_t count = 0;
    char *flags = NULL;
    cr_assert_eq(st->ops->seat_flags(st, sch, T0 + 1, &of, &count, &price, &flags), BX_OK);
    cr_assert_eq(of, c);
    cr_assert_eq(count, 5);
    cr_assert_eq(price, 1000);
    cr_assert(flags != NULL && memcmp(flags, "10101", 5) == 0, "held seat 2 and sold seat 4 are not free: %.5s", flags);
    free(flags);
    cr_assert_eq(st->ops->seat_flags(st, sch, T0 + HOLD_MS, &of, &count, &price, &flags), BX_OK);
    cr_assert(memcmp(flags, "11101", 5) == 0, "an ended hold is free before any sweep: %.5s", flags);
    free(flags);
    cr_assert_eq(st->ops->seat_flags(st, 999999, T0, &of, &count, &price, &flags), BX_ERR_SCHEDULE_NOT_FOUND);
}
#endif

/* ---- holds --------------------------------------------------------------- */

Test(SUITE, hold_fills_reservation_and_takes_seat)
{
    int64_t u = make_user("fay", 0), c = make_concert(), sch = make_schedule(c, 10, 5000);
    struct reservation r;
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 3, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_gt(r.id, 0);
    cr_assert_eq(r.user_id, u);
    cr_assert_eq(r.schedule_id, sch);
    cr_assert_eq(r.concert_id, c);
    cr_assert_eq(r.seat_no, 3);
    cr_assert_eq(r.price, 5000);
    cr_assert_eq(r.status, RES_HELD);
    cr_assert_eq(r.held_at, T0);
    cr_assert_eq(r.expires_at, T0 + HOLD_MS);
    cr_assert_not(seat_available(sch, 3, T0));
    struct schedule g;
    cr_assert_eq(st->ops->schedule_get(st, sch, T0, true, &g), BX_OK);
    cr_assert_eq(g.available, 9);
    cr_assert_eq(st->ops->schedule_get(st, sch, T0 + HOLD_MS, true, &g), BX_OK);
    cr_assert_eq(g.available, 10, "an expired hold counts as available at once");
}

Test(SUITE, hold_twice_same_seat_conflicts)
{
    int64_t a = make_user("a", 0), b = make_user("b", 0), sch = make_schedule(make_concert(), 10, 5000);
    struct reservation r;
    cr_assert_eq(st->ops->hold_seat(st, a, sch, 1, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, b, sch, 1, T0 + 1, HOLD_MS, MAX_SEATS, &r), BX_ERR_SEAT_UNAVAILABLE);
    cr_assert_eq(st->ops->hold_seat(st, a, sch, 1, T0 + 1, HOLD_MS, MAX_SEATS, &r), BX_ERR_SEAT_UNAVAILABLE);
    cr_assert_eq(raw_int("SELECT count(*) FROM reservations"), 1, "the refused holds left no row");
}

Test(SUITE, hold_refuses_unknown_schedule_seat_and_closed_sale)
{
    int64_t u = make_user("g", 0), sch = make_schedule(make_concert(), 10, 5000);
    struct reservation r;
    cr_assert_eq(st->ops->hold_seat(st, u, 999, 1, T0, HOLD_MS, MAX_SEATS, &r), BX_ERR_SCHEDULE_NOT_FOUND);
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 0, T0, HOLD_MS, MAX_SEATS, &r), BX_ERR_SEAT_NOT_FOUND);
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 11, T0, HOLD_MS, MAX_SEATS, &r), BX_ERR_SEAT_NOT_FOUND);
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 1, T0 - 3600001, HOLD_MS, MAX_SEATS, &r), BX_ERR_SALE_CLOSED);
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 1, T0 + 86400000, HOLD_MS, MAX_SEATS, &r), BX_ERR_SALE_CLOSED);
}

Test(SUITE, hold_takes_over_expired_hold_and_expires_old_reservation)
{
    int64_t a = make_user("a", 0), b = make_user("b", 0), sch = make_schedule(make_concert(), 10, 5000);
    struct reservation ra, rb, check;
    cr_assert_eq(st->ops->hold_seat(st, a, sch, 5, T0, HOLD_MS, MAX_SEATS, &ra), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, b, sch, 5, T0 + HOLD_MS - 1, HOLD_MS, MAX_SEATS, &rb), BX_ERR_SEAT_UNAVAILABLE,
                 "still live one ms before expiry");
    cr_assert_eq(st->ops->hold_seat(st, b, sch, 5, T0 + HOLD_MS, HOLD_MS, MAX_SEATS, &rb), BX_OK);
    cr_assert_eq(st->ops->reservation_get(st, a, ra.id, T0 + HOLD_MS, &check), BX_OK);
    cr_assert_eq(check.status, RES_EXPIRED);
    cr_assert_eq(raw_int("SELECT count(*) FROM reservations WHERE status = 'EXPIRED'"), 1,
                 "the old reservation is EXPIRED in the table, not only in the view");
    cr_assert_eq(raw_int("SELECT reservation_id FROM seats WHERE seat_no = 5"), rb.id);
    struct findings f = audit(T0 + HOLD_MS);
    cr_assert_eq(f.total, 0);
}

Test(SUITE, hold_over_seat_limit_is_refused)
{
    int64_t u = make_user("h", 0), sch = make_schedule(make_concert(), 10, 5000);
    struct reservation r;
    for (int32_t i = 1; i <= 2; i++)
        cr_assert_eq(st->ops->hold_seat(st, u, sch, i, T0, HOLD_MS, 2, &r), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 3, T0, HOLD_MS, 2, &r), BX_ERR_SEAT_LIMIT);
    cr_assert(seat_available(sch, 3, T0));
    /* once the holds expire they no longer count */
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 3, T0 + HOLD_MS, HOLD_MS, 2, &r), BX_OK);
    /* another schedule has its own limit */
    int64_t sch2 = make_schedule(make_concert(), 10, 5000);
    cr_assert_eq(st->ops->hold_seat(st, u, sch2, 1, T0 + HOLD_MS, HOLD_MS, 2, &r), BX_OK);
}

/* ---- reservations --------------------------------------------------------- */

Test(SUITE, other_users_reservation_is_not_found)
{
    int64_t a = make_user("a", 100000), b = make_user("b", 100000), sch = make_schedule(make_concert(), 10, 5000);
    struct reservation r, out;
    struct payment p;
    struct idem none = {.key = NULL};
    cr_assert_eq(st->ops->hold_seat(st, a, sch, 1, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->reservation_get(st, b, r.id, T0, &out), BX_ERR_RESERVATION_NOT_FOUND);
    cr_assert_eq(st->ops->reservation_get(st, b, r.id + 100, T0, &out), BX_ERR_RESERVATION_NOT_FOUND);
    cr_assert_eq(st->ops->reservation_cancel(st, b, r.id, T0), BX_ERR_RESERVATION_NOT_FOUND);
    cr_assert_eq(st->ops->pay(st, b, r.id, -1, T0, &none, &p), BX_ERR_RESERVATION_NOT_FOUND);
    cr_assert_eq(balance_of(b), 100000);
    cr_assert_eq(st->ops->reservation_get(st, a, r.id, T0, &out), BX_OK);
    cr_assert_eq(out.status, RES_HELD);
}

Test(SUITE, reservation_list_is_newest_first_with_expiry_view)
{
    int64_t u = make_user("i", 0), sch = make_schedule(make_concert(), 10, 5000);
    struct reservation r1, r2, *list;
    size_t n;
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 1, T0, HOLD_MS, MAX_SEATS, &r1), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 2, T0 + 1000, HOLD_MS, MAX_SEATS, &r2), BX_OK);
    cr_assert_eq(st->ops->reservation_list(st, u, T0 + HOLD_MS, &list, &n), BX_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(list[0].id, r2.id);
    cr_assert_eq(list[0].status, RES_HELD);
    cr_assert_eq(list[1].id, r1.id);
    cr_assert_eq(list[1].status, RES_EXPIRED, "a HELD row past its expiry reads EXPIRED");
    free(list);
}

Test(SUITE, cancel_frees_seat_and_second_cancel_is_not_held)
{
    int64_t u = make_user("j", 0), sch = make_schedule(make_concert(), 10, 5000);
    struct reservation r, out;
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 4, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->reservation_cancel(st, u, r.id, T0 + 10), BX_OK);
    cr_assert(seat_available(sch, 4, T0 + 10));
    cr_assert_eq(st->ops->reservation_get(st, u, r.id, T0 + 10, &out), BX_OK);
    cr_assert_eq(out.status, RES_CANCELLED);
    cr_assert_eq(st->ops->reservation_cancel(st, u, r.id, T0 + 20), BX_ERR_NOT_HELD);
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 5, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->reservation_cancel(st, u, r.id, T0 + HOLD_MS), BX_ERR_NOT_HELD, "expired hold");
}

Test(SUITE, live_holds_on_concert_counts_only_live_holds)
{
    int64_t u = make_user("k", 100000), c = make_concert();
    int64_t s1 = make_schedule(c, 10, 5000), s2 = make_schedule(c, 10, 5000);
    int64_t other = make_schedule(make_concert(), 10, 5000);
    struct reservation r;
    struct payment p;
    struct idem none = {.key = NULL};
    int count = -1;
    cr_assert_eq(st->ops->hold_seat(st, u, s1, 1, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, u, s2, 1, T0 + 100, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, u, other, 1, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->live_holds_on_concert(st, u, c, T0, &count), BX_OK);
    cr_assert_eq(count, 2);
    cr_assert_eq(st->ops->live_holds_on_concert(st, u, c, T0 + HOLD_MS, &count), BX_OK);
    cr_assert_eq(count, 1);
    cr_assert_eq(st->ops->reservation_get(st, u, r.id, T0, &r), BX_OK);
    cr_assert_eq(st->ops->pay(st, u, r.id, -1, T0 + 1, &none, &p), BX_OK);
    cr_assert_eq(st->ops->live_holds_on_concert(st, u, r.concert_id, T0 + 1, &count), BX_OK);
    cr_assert_eq(count, 0, "a paid reservation is no longer a hold");
}

/* ---- payments ------------------------------------------------------------ */

Test(SUITE, pay_happy_path_debits_and_sells_seat)
{
    int64_t u = make_user("payer", 100000), sch = make_schedule(make_concert(), 10, 30000);
    struct reservation r, out;
    struct payment p;
    struct idem none = {.key = NULL};
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 7, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->pay(st, u, r.id, 30000, T0 + 1000, &none, &p), BX_OK);
    cr_assert_gt(p.id, 0);
    cr_assert_eq(p.user_id, u);
    cr_assert_eq(p.reservation_id, r.id);
    cr_assert_eq(p.amount, 30000);
    cr_assert_eq(p.balance_after, 70000);
    cr_assert_eq(p.paid_at, T0 + 1000);
    cr_assert_eq(balance_of(u), 70000);
    cr_assert_eq(st->ops->reservation_get(st, u, r.id, T0 + HOLD_MS * 10, &out), BX_OK);
    cr_assert_eq(out.status, RES_CONFIRMED, "a confirmed reservation never reads EXPIRED");
    cr_assert_eq(out.confirmed_at, T0 + 1000);
    cr_assert_not(seat_available(sch, 7, T0 + HOLD_MS * 10), "sold stays sold after the hold time");
    cr_assert_eq(raw_int("SELECT count(*) FROM seats WHERE status = 'SOLD'"), 1);
    cr_assert_eq(raw_int("SELECT count(*) FROM ledger WHERE kind = 'PAYMENT' AND amount = 30000 "
                         "AND balance_after = 70000"),
                 1);
    struct payment *list;
    size_t n;
    cr_assert_eq(st->ops->payment_list(st, u, 0, 20, &list, &n), BX_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(list[0].id, p.id);
    free(list);
    /* paying again */
    cr_assert_eq(st->ops->pay(st, u, r.id, -1, T0 + 2000, &none, &p), BX_ERR_ALREADY_PAID);
    cr_assert_eq(balance_of(u), 70000);
    /* nobody else can hold a sold seat, even long after */
    int64_t v = make_user("late", 0);
    cr_assert_eq(st->ops->hold_seat(st, v, sch, 7, T0 + HOLD_MS * 10, HOLD_MS, MAX_SEATS, &r), BX_ERR_SEAT_UNAVAILABLE);
}

Test(SUITE, payment_after_hold_expiry_is_refused_and_frees_seat)
{
    int64_t u = make_user("slow", 100000), sch = make_schedule(make_concert(), 10, 30000);
    struct reservation r, out;
    struct payment p;
    struct idem none = {.key = NULL};
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 2, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->pay(st, u, r.id, -1, T0 + HOLD_MS, &none, &p), BX_ERR_HOLD_EXPIRED);
    cr_assert_eq(balance_of(u), 100000);
    cr_assert_eq(raw_int("SELECT count(*) FROM payments"), 0);
    cr_assert_eq(raw_int("SELECT status = 'EXPIRED' FROM reservations"), 1);
    cr_assert_eq(raw_int("SELECT status = 'AVAILABLE' AND reservation_id IS NULL FROM seats WHERE seat_no = 2"), 1);
    cr_assert(seat_available(sch, 2, T0 + HOLD_MS));
    cr_assert_eq(st->ops->pay(st, u, r.id, -1, T0 + HOLD_MS + 1, &none, &p), BX_ERR_HOLD_EXPIRED, "again");
    cr_assert_eq(st->ops->reservation_get(st, u, r.id, T0 + HOLD_MS, &out), BX_OK);
    cr_assert_eq(out.status, RES_EXPIRED);
}

Test(SUITE, pay_cancelled_reservation_is_not_held)
{
    int64_t u = make_user("m", 100000), sch = make_schedule(make_concert(), 10, 30000);
    struct reservation r;
    struct payment p;
    struct idem none = {.key = NULL};
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 2, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->reservation_cancel(st, u, r.id, T0), BX_OK);
    cr_assert_eq(st->ops->pay(st, u, r.id, -1, T0, &none, &p), BX_ERR_NOT_HELD);
}

Test(SUITE, pay_with_insufficient_balance_changes_nothing)
{
    int64_t u = make_user("poor", 29999), sch = make_schedule(make_concert(), 10, 30000);
    struct reservation r, out;
    struct payment p;
    struct idem none = {.key = NULL};
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 1, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->pay(st, u, r.id, -1, T0 + 1, &none, &p), BX_ERR_INSUFFICIENT_BALANCE);
    cr_assert_eq(balance_of(u), 29999);
    cr_assert_eq(st->ops->reservation_get(st, u, r.id, T0 + 1, &out), BX_OK);
    cr_assert_eq(out.status, RES_HELD, "the hold survives a failed payment");
    cr_assert_eq(raw_int("SELECT count(*) FROM payments"), 0);
    int64_t after;
    cr_assert_eq(st->ops->balance_charge(st, u, 1, T0 + 2, &none, &after), BX_OK);
    cr_assert_eq(st->ops->pay(st, u, r.id, -1, T0 + 3, &none, &p), BX_OK);
    cr_assert_eq(p.balance_after, 0);
}

Test(SUITE, pay_with_wrong_amount_is_price_mismatch)
{
    int64_t u = make_user("n", 100000), sch = make_schedule(make_concert(), 10, 30000);
    struct reservation r;
    struct payment p;
    struct idem none = {.key = NULL};
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 1, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->pay(st, u, r.id, 29999, T0, &none, &p), BX_ERR_PRICE_MISMATCH);
    cr_assert_eq(balance_of(u), 100000);
}

Test(SUITE, pay_replay_returns_first_payment)
{
    int64_t u = make_user("retry", 100000), sch = make_schedule(make_concert(), 10, 30000);
    struct reservation r, r2;
    struct payment p1, p2;
    struct idem k = key("pay-1", 0x11), other_body = key("pay-1", 0x22);
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 1, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->pay(st, u, r.id, -1, T0 + 10, &k, &p1), BX_OK);
    memset(&p2, 0, sizeof p2);
    cr_assert_eq(st->ops->pay(st, u, r.id, -1, T0 + HOLD_MS * 2, &k, &p2), BX_REPLAY);
    cr_assert_eq(p2.id, p1.id);
    cr_assert_eq(p2.reservation_id, r.id);
    cr_assert_eq(p2.amount, 30000);
    cr_assert_eq(p2.balance_after, 70000);
    cr_assert_eq(p2.paid_at, T0 + 10);
    cr_assert_eq(balance_of(u), 70000, "charged once");
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 2, T0, HOLD_MS, MAX_SEATS, &r2), BX_OK);
    cr_assert_eq(st->ops->pay(st, u, r2.id, -1, T0 + 20, &other_body, &p2), BX_ERR_IDEMPOTENCY_MISMATCH);
    cr_assert_eq(balance_of(u), 70000);
    /* a failed keyed attempt is not recorded: the retry is evaluated afresh */
    struct idem k3 = key("pay-3", 0x33);
    cr_assert_eq(st->ops->pay(st, u, r2.id, 1, T0 + 30, &k3, &p2), BX_ERR_PRICE_MISMATCH);
    cr_assert_eq(st->ops->pay(st, u, r2.id, -1, T0 + 40, &k3, &p2), BX_OK);
}

Test(SUITE, payment_list_pages_newest_first)
{
    int64_t u = make_user("o", 1000000), sch = make_schedule(make_concert(), 10, 1000);
    struct reservation r;
    struct payment p, *list;
    struct idem none = {.key = NULL};
    int64_t ids[4];
    size_t n;
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(st->ops->hold_seat(st, u, sch, i + 1, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
        cr_assert_eq(st->ops->pay(st, u, r.id, -1, T0 + i, &none, &p), BX_OK);
        ids[i] = p.id;
    }
    cr_assert_eq(st->ops->payment_list(st, u, 0, 3, &list, &n), BX_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(list[0].id, ids[3]);
    cr_assert_eq(list[2].id, ids[1]);
    int64_t before = list[2].id;
    free(list);
    cr_assert_eq(st->ops->payment_list(st, u, before, 3, &list, &n), BX_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(list[0].id, ids[0]);
    free(list);
    int64_t v = make_user("p", 0);
    list = NULL;
    cr_assert_eq(st->ops->payment_list(st, v, 0, 20, &list, &n), BX_OK);
    cr_assert_eq(n, 0);
    free(list);
}

/* ---- sweeper ------------------------------------------------------------- */

Test(SUITE, sweep_expires_only_past_holds)
{
    int64_t u = make_user("q", 100000), sch = make_schedule(make_concert(), 10, 1000);
    struct reservation r1, r2, r3, out;
    struct payment p;
    struct idem none = {.key = NULL};
    int expired = -1;
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 1, T0, HOLD_MS, MAX_SEATS, &r1), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 2, T0 + 5000, HOLD_MS, MAX_SEATS, &r2), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 3, T0, HOLD_MS, MAX_SEATS, &r3), BX_OK);
    cr_assert_eq(st->ops->pay(st, u, r3.id, -1, T0, &none, &p), BX_OK);
    cr_assert_eq(st->ops->sweep_holds(st, T0 + HOLD_MS, &expired), BX_OK);
    cr_assert_eq(expired, 1);
    cr_assert_eq(raw_int("SELECT status = 'EXPIRED' FROM reservations WHERE seat_no = 1"), 1);
    cr_assert_eq(raw_int("SELECT status = 'AVAILABLE' FROM seats WHERE seat_no = 1"), 1);
    cr_assert_eq(raw_int("SELECT status = 'HELD' FROM seats WHERE seat_no = 2"), 1);
    cr_assert_eq(raw_int("SELECT status = 'SOLD' FROM seats WHERE seat_no = 3"), 1);
    cr_assert_eq(st->ops->reservation_get(st, u, r2.id, T0 + HOLD_MS, &out), BX_OK);
    cr_assert_eq(out.status, RES_HELD);
    cr_assert_eq(st->ops->sweep_holds(st, T0 + HOLD_MS, &expired), BX_OK);
    cr_assert_eq(expired, 0, "sweeping twice is harmless");
    cr_assert_eq(audit(T0 + HOLD_MS).total, 0);
}

Test(SUITE, sweep_handles_more_than_one_batch)
{
    int64_t c = make_concert();
    int64_t sch = make_schedule(c, 1500, 10);
    /* 1200 expired holds, created directly to keep the test fast */
    raw_sql("INSERT INTO users(id, name, pwhash) VALUES (500, 'bulk', 'x');"
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1200) "
            "INSERT INTO reservations(id, user_id, schedule_id, seat_no, price, status, held_at, expires_at) "
            "SELECT i, 500, 1, i, 10, 'HELD', 0, 10 FROM n;"
            "UPDATE seats SET status = 'HELD', reservation_id = seat_no, hold_expires_at = 10 WHERE seat_no <= 1200;");
    (void)sch;
    int expired = 0;
    cr_assert_eq(st->ops->sweep_holds(st, T0, &expired), BX_OK);
    cr_assert_eq(expired, 1200);
    cr_assert_eq(raw_int("SELECT count(*) FROM seats WHERE status = 'AVAILABLE'"), 1500);
}

/* ---- concurrency (separate connections, as the event loops use them) ---- */

struct race {
    int64_t user, schedule, reservation, now;
    bx_err result;
};

static void *race_hold(void *arg)
{
    struct race *r = arg;
    char err[256];
    struct store *s = connect_store(err, sizeof err);
    struct reservation out;
    r->result = s ? s->ops->hold_seat(s, r->user, r->schedule, 1, r->now, HOLD_MS, MAX_SEATS, &out) : BX_ERR_INTERNAL;
    if (s)
        s->ops->close(s);
    return NULL;
}

Test(SUITE, concurrent_holds_on_one_seat_have_one_winner)
{
    enum { N = 8 };
    int64_t sch = make_schedule(make_concert(), 10, 1000);
    struct race races[N];
    pthread_t th[N];
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "racer%d", i);
        races[i] = (struct race){.user = make_user(name, 0), .schedule = sch, .now = T0};
    }
    for (int i = 0; i < N; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, race_hold, &races[i]), 0);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        if (races[i].result == BX_OK)
            ok++;
        else
            cr_assert_eq(races[i].result, BX_ERR_SEAT_UNAVAILABLE);
    }
    cr_assert_eq(ok, 1);
    cr_assert_eq(audit(T0).total, 0);
}

static void *race_pay(void *arg)
{
    struct race *r = arg;
    char err[256];
    struct store *s = connect_store(err, sizeof err);
    struct payment p;
    struct idem none = {.key = NULL};
    r->result = s ? s->ops->pay(s, r->user, r->reservation, -1, r->now, &none, &p) : BX_ERR_INTERNAL;
    if (s)
        s->ops->close(s);
    return NULL;
}

static void *race_sweep(void *arg)
{
    struct race *r = arg;
    char err[256];
    struct store *s = connect_store(err, sizeof err);
    int expired;
    r->result = s ? s->ops->sweep_holds(s, r->now, &expired) : BX_ERR_INTERNAL;
    if (s)
        s->ops->close(s);
    return NULL;
}

Test(SUITE, payment_racing_sweeper_has_exactly_one_outcome)
{
    int64_t u = make_user("racer", 1000000), sch = make_schedule(make_concert(), 20, 1000);
    for (int32_t seat = 1; seat <= 20; seat++) {
        struct reservation r;
        int64_t t = T0 + seat * HOLD_MS * 2;
        cr_assert_eq(st->ops->hold_seat(st, u, sch, seat, t, HOLD_MS, 100, &r), BX_OK);
        /* the payer's clock says just before expiry, the sweeper's just after */
        struct race pay = {.user = u, .reservation = r.id, .now = t + HOLD_MS - 1};
        struct race sweep = {.now = t + HOLD_MS};
        pthread_t a, b;
        cr_assert_eq(pthread_create(&a, NULL, race_pay, &pay), 0);
        cr_assert_eq(pthread_create(&b, NULL, race_sweep, &sweep), 0);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        cr_assert_eq(sweep.result, BX_OK);
        struct reservation out;
        cr_assert_eq(st->ops->reservation_get(st, u, r.id, t + HOLD_MS, &out), BX_OK);
        if (pay.result == BX_OK) {
            cr_assert_eq(out.status, RES_CONFIRMED);
        } else {
            cr_assert_eq(pay.result, BX_ERR_HOLD_EXPIRED);
            cr_assert_eq(out.status, RES_EXPIRED);
        }
    }
    cr_assert_eq(audit(T0 + 100 * HOLD_MS).total, 0);
    int64_t paid = raw_int("SELECT count(*) FROM payments");
    cr_log_info("pay won %lld of 20 races", (long long)paid);
    cr_assert_eq(balance_of(u), 1000000 - 1000 * paid);
}

/* ---- waiting-room persistence -------------------------------------------- */

static struct queue_record qrec(const char *token, int64_t concert, int64_t seq, enum queue_status status)
{
    struct queue_record r = {.user_id = seq + 100,
                             .concert_id = concert,
                             .seq = seq,
                             .status = status,
                             .issued_at = T0 + seq,
                             .last_seen_at = T0 + seq};
    snprintf(r.token, sizeof r.token, "%s", token);
    if (status == QUEUE_ACTIVE)
        r.activated_at = T0 + 50;
    return r;
}

struct loaded {
    struct queue_record recs[8];
    int n, stop_after;
};

static int load_cb(const struct queue_record *rec, void *arg)
{
    struct loaded *l = arg;
    l->recs[l->n++] = *rec;
    return l->n == l->stop_after;
}

Test(SUITE, queue_save_load_find_roundtrip)
{
    struct queue_record a = qrec("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 2, 1, QUEUE_WAITING);
    struct queue_record b = qrec("BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", 1, 2, QUEUE_ACTIVE);
    struct queue_record c = qrec("CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC", 1, 1, QUEUE_WAITING);
    struct queue_record d = qrec("DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD", 1, 3, QUEUE_EXPIRED);
    cr_assert_eq(st->ops->queue_save(st, &a), BX_OK);
    cr_assert_eq(st->ops->queue_save(st, &b), BX_OK);
    cr_assert_eq(st->ops->queue_save(st, &c), BX_OK);
    cr_assert_eq(st->ops->queue_save(st, &d), BX_OK);

    struct loaded l = {.stop_after = 100};
    cr_assert_eq(st->ops->queue_load(st, load_cb, &l), BX_OK);
    cr_assert_eq(l.n, 3, "expired tokens are not loaded");
    cr_assert_str_eq(l.recs[0].token, c.token);
    cr_assert_str_eq(l.recs[1].token, b.token);
    cr_assert_str_eq(l.recs[2].token, a.token);
    cr_assert_eq(l.recs[1].status, QUEUE_ACTIVE);
    cr_assert_eq(l.recs[1].activated_at, T0 + 50);
    cr_assert_eq(l.recs[1].user_id, 102);

    /* upsert: c leaves the queue (an update keeps the first issued_at) */
    c.status = QUEUE_EXPIRED;
    c.expires_at = T0 + 999;
    c.issued_at = 12345;
    cr_assert_eq(st->ops->queue_save(st, &c), BX_OK);
    struct queue_record found;
    cr_assert_eq(st->ops->queue_find(st, c.token, &found), BX_OK);
    cr_assert_eq(found.status, QUEUE_EXPIRED);
    cr_assert_eq(found.expires_at, T0 + 999);
    cr_assert_eq(found.issued_at, T0 + 1, "issued_at is the first one saved");
    cr_assert_eq(found.seq, 1);
    cr_assert_eq(st->ops->queue_find(st, "nope", &found), BX_ERR_NOT_FOUND);

    struct loaded first = {.stop_after = 1};
    cr_assert_eq(st->ops->queue_load(st, load_cb, &first), BX_OK);
    cr_assert_eq(first.n, 1, "a non-zero callback stops the load");
    cr_assert_str_eq(first.recs[0].token, b.token);
}

/* ---- audit --------------------------------------------------------------- */

/* A little of everything: charges, holds, a takeover, a cancel, payments, a sweep. */
static void busy_day(int64_t *user_out)
{
    int64_t a = make_user("a", 500000), b = make_user("b", 500000), sch = make_schedule(make_concert(), 20, 7000);
    struct reservation r;
    struct payment p;
    struct idem none = {.key = NULL}, k = key("x", 9);
    int64_t after;
    int expired;
    cr_assert_eq(st->ops->balance_charge(st, a, 1234, T0, &k, &after), BX_OK);
    cr_assert_eq(st->ops->balance_charge(st, a, 1234, T0, &k, &after), BX_REPLAY);
    for (int32_t i = 1; i <= 3; i++) {
        cr_assert_eq(st->ops->hold_seat(st, a, sch, i, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
        if (i != 2)
            cr_assert_eq(st->ops->pay(st, a, r.id, 7000, T0 + 1, &none, &p), BX_OK);
    }
    cr_assert_eq(st->ops->hold_seat(st, b, sch, 2, T0 + HOLD_MS, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->reservation_cancel(st, b, r.id, T0 + HOLD_MS), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, b, sch, 2, T0 + HOLD_MS, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->pay(st, b, r.id, -1, T0 + HOLD_MS + 5, &none, &p), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, b, sch, 4, T0 + HOLD_MS, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, b, sch, 5, T0 + HOLD_MS, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->pay(st, b, r.id, -1, T0 + 3 * HOLD_MS, &none, &p), BX_ERR_HOLD_EXPIRED);
    cr_assert_eq(st->ops->sweep_holds(st, T0 + 3 * HOLD_MS, &expired), BX_OK);
    *user_out = a;
}

Test(SUITE, audit_is_clean_after_normal_activity)
{
    int64_t a;
    busy_day(&a);
    struct findings f = audit(T0 + 3 * HOLD_MS);
    cr_assert_eq(f.total, 0);
    cr_assert_eq(audit_with_limit(T0 + 3 * HOLD_MS, 4).total, 0);
}

Test(SUITE, audit_reports_injected_violations)
{
    int64_t a;
    busy_day(&a);
    /* invariant 2: money appears from nowhere */
    raw_sql("UPDATE users SET balance = balance + 5 WHERE name = 'a'");
    struct findings f = audit(T0 + 3 * HOLD_MS);
    cr_assert_eq(f.per_invariant[2], 1);
    cr_assert_eq(f.total, 1);
    /* invariant 2: a broken balance_after chain */
    raw_sql("UPDATE ledger SET balance_after = balance_after + 1 WHERE id = 2");
    f = audit(T0 + 3 * HOLD_MS);
    cr_assert_geq(f.per_invariant[2], 2);
    /* invariant 3: a payment that does not match its price */
    raw_sql("UPDATE payments SET amount = amount - 1 WHERE id = 1");
    f = audit(T0 + 3 * HOLD_MS);
    cr_assert_geq(f.per_invariant[3], 1);
    /* invariant 1: a sold seat released without its reservation */
    raw_sql("UPDATE seats SET status = 'AVAILABLE', reservation_id = NULL WHERE status = 'SOLD' AND seat_no = 1");
    f = audit(T0 + 3 * HOLD_MS);
    cr_assert_geq(f.per_invariant[1], 1);
    /* invariant 5: a stricter limit than the one the user's seats were taken under */
    f = audit_with_limit(T0 + 3 * HOLD_MS, 1);
    cr_assert_geq(f.per_invariant[5], 1);
}

/* ---- available seats (sold_count + live holds, migration 2) ----------------- */

/* The schedule's available count at now, read by schedule_get and by the date
 * list, which must agree. */
static int32_t available_at(int64_t concert_id, int64_t schedule_id, int64_t now)
{
    struct schedule g, *list;
    size_t n;
    cr_assert_eq(st->ops->schedule_get(st, schedule_id, now, true, &g), BX_OK);
    cr_assert_eq(st->ops->schedule_list_bookable(st, concert_id, now, true, &list, &n), BX_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(list[0].id, schedule_id);
    cr_assert_eq(list[0].available, g.available, "date list %d, schedule %d", list[0].available, g.available);
    free(list);
    return g.available;
}

Test(SUITE, available_seats_follow_holds_expiry_sweep_and_payment)
{
    int64_t u = make_user("counter", 100000), c = make_concert(), sch = make_schedule(c, 50, 1000);
    int64_t other = make_schedule(make_concert(), 50, 1000); /* must not move */
    struct reservation r1, r2, r3;
    struct payment p;
    struct idem none = {.key = NULL};
    int expired = -1;
    cr_assert_eq(available_at(c, sch, T0), 50);
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 1, T0, HOLD_MS, MAX_SEATS, &r1), BX_OK);
    cr_assert_eq(available_at(c, sch, T0), 49, "a live hold takes its seat at once");
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 2, T0, HOLD_MS, MAX_SEATS, &r2), BX_OK);
    cr_assert_eq(st->ops->pay(st, u, r2.id, -1, T0 + 1, &none, &p), BX_OK);
    cr_assert_eq(available_at(c, sch, T0 + 1), 48, "one held, one sold");
    cr_assert_eq(raw_int(SOLD_OF(1)), 1);
    cr_assert_eq(raw_int(SOLD_OF(2)), 0);

    cr_assert_eq(available_at(c, sch, T0 + HOLD_MS - 1), 48, "the hold is live until its last ms");
    cr_assert_eq(available_at(c, sch, T0 + HOLD_MS), 49, "an ended hold counts as free before any sweep");
    cr_assert_eq(st->ops->sweep_holds(st, T0 + HOLD_MS, &expired), BX_OK);
    cr_assert_eq(expired, 1);
    cr_assert_eq(available_at(c, sch, T0 + HOLD_MS), 49, "the sweep changes nothing visible");
    cr_assert_eq(available_at(c, sch, T0 + 1), 49, "swept: the hold is gone even at an earlier now");

    cr_assert_eq(st->ops->hold_seat(st, u, sch, 1, T0 + HOLD_MS, HOLD_MS, MAX_SEATS, &r3), BX_OK);
    cr_assert_eq(available_at(c, sch, T0 + HOLD_MS), 48);
    cr_assert_eq(st->ops->reservation_cancel(st, u, r3.id, T0 + HOLD_MS), BX_OK);
    cr_assert_eq(available_at(c, sch, T0 + HOLD_MS), 49, "a cancelled hold frees its seat");
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 3, T0 + HOLD_MS, HOLD_MS, MAX_SEATS, &r3), BX_OK);
    cr_assert_eq(st->ops->pay(st, u, r3.id, 999, T0 + HOLD_MS, &none, &p), BX_ERR_PRICE_MISMATCH);
    cr_assert_eq(available_at(c, sch, T0 + HOLD_MS), 48, "a refused payment sells nothing");
    cr_assert_eq(st->ops->pay(st, u, r3.id, 1000, T0 + HOLD_MS + 1, &none, &p), BX_OK);
    cr_assert_eq(available_at(c, sch, T0 + HOLD_MS + 1), 48);
    cr_assert_eq(raw_int(SOLD_OF(1)), 2);

    /* a new connection reads the same count */
    st->ops->close(st);
    st = open_store();
    cr_assert_eq(available_at(c, sch, 3 * HOLD_MS + T0), 48);
    cr_assert_eq(raw_int(SOLD_OF(1)), 2);
    struct schedule g;
    cr_assert_eq(st->ops->schedule_get(st, other, T0 + HOLD_MS, true, &g), BX_OK);
    cr_assert_eq(g.available, 50);
    cr_assert_eq(audit(T0 + HOLD_MS + 1).total, 0);
}

Test(SUITE, audit_reports_seat_count_drift)
{
    int64_t a;
    busy_day(&a);
    cr_assert_eq(audit(T0 + 3 * HOLD_MS).total, 0);
    raw_sql("UPDATE schedules SET seat_count = seat_count + 1 WHERE id = 1");
    struct findings f = audit(T0 + 3 * HOLD_MS);
    cr_assert_eq(f.per_invariant[1], 1);
    cr_assert_eq(f.total, 1);
}

#ifndef BX_TEST_PG
Test(SUITE, audit_reports_sold_count_drift)
{
    int64_t a;
    busy_day(&a);
    cr_assert_eq(audit(T0 + 3 * HOLD_MS).total, 0);
    raw_sql("UPDATE schedules SET sold_count = sold_count - 1");
    struct findings f = audit(T0 + 3 * HOLD_MS);
    cr_assert_eq(f.per_invariant[1], 1);
    cr_assert_eq(f.total, 1);
}

Test(SUITE, upgrade_backfills_sold_count_from_sold_seats)
{
    int64_t a;
    busy_day(&a); /* schedule 1: 3 seats sold */
    int64_t u = make_user("late", 100000), c = make_concert(), sch = make_schedule(c, 10, 1000);
    struct reservation r;
    struct payment p;
    struct idem none = {.key = NULL};
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 4, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->pay(st, u, r.id, -1, T0, &none, &p), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 5, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    st->ops->close(st);
    st = NULL;
    raw_sql(SCHEMA_BACK_TO_1);
    cr_assert_eq(raw_int("SELECT max(version) FROM schema_migrations"), 1);

    st = open_store(); /* migrates 1 -> 2 */
    cr_assert_eq(raw_int("SELECT max(version) FROM schema_migrations"), SCHEMA_VERSION);
    cr_assert_eq(raw_int("SELECT sold_count FROM schedules WHERE id = 1"), 3);
    cr_assert_eq(raw_int("SELECT sold_count FROM schedules WHERE id = 2"), 1);
    cr_assert_eq(available_at(c, sch, T0), 8);
    cr_assert_eq(available_at(c, sch, T0 + HOLD_MS), 9);
    cr_assert_eq(audit(T0).total, 0);
    /* and sales after the upgrade are counted */
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 6, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->pay(st, u, r.id, -1, T0, &none, &p), BX_OK);
    cr_assert_eq(available_at(c, sch, T0), 7);
    cr_assert_eq(raw_int("SELECT sold_count FROM schedules WHERE id = 2"), 2);
    cr_assert_eq(audit(T0).total, 0);
}
#else
/* Points the test at a new database with the schema of the first `version`
 * migrations only, as a binary of that version left it (migrations are
 * append-only: this binary's texts of them are the ones that shipped). */
static void database_at_version(int version)
{
    char sql[128];
    fresh_database();
    raw_sql(pg_schema_bootstrap);
    for (int v = 1; v <= version; v++) {
        raw_sql(pg_migrations[v - 1]);
        snprintf(sql, sizeof sql, "INSERT INTO schema_migrations(version, applied_at) VALUES (%d, 0)", v);
        raw_sql(sql);
    }
}

/* A store on a database of an older schema, not migrated: what an instance of
 * this binary sees before its migration runs. */
static void reopen_unmigrated(void)
{
    char err[256] = "";
    st = connect_store(err, sizeof err);
    cr_assert_not_null(st, "open: %s", err);
}

Test(SUITE, upgrade_from_2_stops_writing_the_schedule_row_and_keeps_counts)
{
    st->ops->close(st);
    database_at_version(2);
    reopen_unmigrated();
    int64_t u = make_user("early", 100000), c = make_concert(), sch = make_schedule(c, 10, 1000);
    struct reservation r;
    struct payment p;
    struct idem none = {.key = NULL};
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 4, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->pay(st, u, r.id, -1, T0, &none, &p), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 5, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(raw_int("SELECT sold_count FROM schedules WHERE id = 1"), 1, "migration 2's trigger counted it");
    cr_assert_eq(available_at(c, sch, T0), 8, "the counts of this binary need no migration 3");

    cr_assert_eq(st->ops->migrate(st), BX_OK);
    cr_assert_eq(raw_int("SELECT max(version) FROM schema_migrations"), SCHEMA_VERSION);
    cr_assert_eq(raw_int("SELECT count(*) FROM pg_trigger WHERE tgname = 'seats_sold_count'"), 0);
    cr_assert_eq(available_at(c, sch, T0), 8);
    cr_assert_eq(available_at(c, sch, T0 + HOLD_MS), 9);
    int64_t version = raw_int("SELECT xmin::text::bigint FROM schedules WHERE id = 1");
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 6, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->pay(st, u, r.id, -1, T0, &none, &p), BX_OK);
    cr_assert_eq(raw_int("SELECT xmin::text::bigint FROM schedules WHERE id = 1"), version,
                 "a sale no longer writes its schedule's row");
    cr_assert_eq(available_at(c, sch, T0), 7);
    cr_assert_eq(raw_int(SOLD_OF(1)), 2);
    cr_assert_eq(audit(T0).total, 0);
}

Test(SUITE, upgrade_from_1_runs_migrations_2_and_3)
{
    st->ops->close(st);
    database_at_version(1);
    reopen_unmigrated();
    int64_t u = make_user("first", 100000), c = make_concert(), sch = make_schedule(c, 10, 1000);
    struct reservation r;
    struct payment p;
    struct idem none = {.key = NULL};
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 1, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->pay(st, u, r.id, -1, T0, &none, &p), BX_OK);
    cr_assert_eq(st->ops->migrate(st), BX_OK);
    cr_assert_eq(raw_int("SELECT count(*) FROM schema_migrations"), SCHEMA_VERSION);
    cr_assert_eq(available_at(c, sch, T0), 9);
    cr_assert_eq(audit(T0).total, 0);
}
#endif

/* ---- many connections at once (N instances share one database) ------------ */

struct worker {
    int64_t user, schedule, reservation, now, amount, balance;
    int32_t seat;
    int max_seats, expired;
    struct idem idem;
    pthread_barrier_t *start;
    struct payment payment;
    bx_err result;
};

/* Opens the worker's own connection, waits for all workers, then runs op. */
static void *worker_run(struct worker *w, void (*op)(struct store *s, struct worker *w))
{
    char err[256];
    struct store *s = connect_store(err, sizeof err);
    pthread_barrier_wait(w->start);
    if (s == NULL) {
        w->result = BX_ERR_INTERNAL;
        return NULL;
    }
    op(s, w);
    s->ops->close(s);
    return NULL;
}

static void op_hold(struct store *s, struct worker *w)
{
    struct reservation out;
    w->result = s->ops->hold_seat(s, w->user, w->schedule, w->seat, w->now, HOLD_MS, w->max_seats, &out);
}

static void op_charge(struct store *s, struct worker *w)
{
    w->result = s->ops->balance_charge(s, w->user, w->amount, w->now, &w->idem, &w->balance);
}

static void op_pay(struct store *s, struct worker *w)
{
    w->result = s->ops->pay(s, w->user, w->reservation, -1, w->now, &w->idem, &w->payment);
}

static void op_sweep(struct store *s, struct worker *w)
{
    w->result = s->ops->sweep_holds(s, w->now, &w->expired);
}

static void *thread_hold(void *arg)
{
    return worker_run(arg, op_hold);
}

static void *thread_charge(void *arg)
{
    return worker_run(arg, op_charge);
}

static void *thread_pay(void *arg)
{
    return worker_run(arg, op_pay);
}

static void *thread_sweep(void *arg)
{
    return worker_run(arg, op_sweep);
}

/* Starts n workers on fn at the same moment and waits for all of them. */
static void run_workers(struct worker *w, int n, void *(*fn)(void *))
{
    pthread_t th[32];
    pthread_barrier_t start;
    cr_assert_leq(n, 32);
    cr_assert_eq(pthread_barrier_init(&start, NULL, (unsigned)n), 0);
    for (int i = 0; i < n; i++) {
        w[i].start = &start;
        cr_assert_eq(pthread_create(&th[i], NULL, fn, &w[i]), 0);
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
}

Test(SUITE, connections_holding_one_seat_at_once_have_one_winner)
{
    enum { N = 12 };
    int64_t sch = make_schedule(make_concert(), 10, 1000);
    struct worker w[N];
    char name[32];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            snprintf(name, sizeof name, "r%d_%d", round, i);
            w[i] = (struct worker){
                .user = make_user(name, 0), .schedule = sch, .seat = 1 + round, .now = T0, .max_seats = MAX_SEATS};
        }
        run_workers(w, N, thread_hold);
        int ok = 0;
        for (int i = 0; i < N; i++) {
            if (w[i].result == BX_OK)
                ok++;
            else
                cr_assert_eq(w[i].result, BX_ERR_SEAT_UNAVAILABLE, "worker %d: %d", i, w[i].result);
        }
        cr_assert_eq(ok, 1, "round %d", round);
    }
    cr_assert_eq(raw_int("SELECT count(*) FROM reservations"), 3);
    cr_assert_eq(audit(T0).total, 0);
}

Test(SUITE, one_users_concurrent_holds_respect_the_seat_limit)
{
    enum { N = 10 };
    int64_t u = make_user("greedy", 0), sch = make_schedule(make_concert(), 20, 1000);
    struct worker w[N];
    for (int i = 0; i < N; i++)
        w[i] = (struct worker){.user = u, .schedule = sch, .seat = i + 1, .now = T0, .max_seats = 3};
    run_workers(w, N, thread_hold);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        if (w[i].result == BX_OK)
            ok++;
        else
            cr_assert_eq(w[i].result, BX_ERR_SEAT_LIMIT, "worker %d: %d", i, w[i].result);
    }
    cr_assert_eq(ok, 3, "invariant 5 holds across connections");
    cr_assert_eq(audit_with_limit(T0, 3).total, 0);
}

Test(SUITE, concurrent_charges_with_one_key_have_one_effect)
{
    enum { N = 10 };
    int64_t u = make_user("twin", 0);
    struct worker w[N];
    for (int i = 0; i < N; i++)
        w[i] = (struct worker){.user = u, .amount = 2500, .now = T0 + i, .idem = key("same-key", 0x5A)};
    run_workers(w, N, thread_charge);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        cr_assert(w[i].result == BX_OK || w[i].result == BX_REPLAY, "worker %d: %d", i, w[i].result);
        ok += w[i].result == BX_OK;
        cr_assert_eq(w[i].balance, 2500, "every answer is the first call's balance");
    }
    cr_assert_eq(ok, 1);
    cr_assert_eq(balance_of(u), 2500);
    cr_assert_eq(raw_int("SELECT count(*) FROM ledger"), 1);
    cr_assert_eq(audit(T0).total, 0);
}

Test(SUITE, concurrent_charges_with_one_key_and_other_bodies_are_refused)
{
    enum { N = 8 };
    int64_t u = make_user("mixed", 0);
    struct worker w[N];
    for (int i = 0; i < N; i++)
        w[i] = (struct worker){.user = u, .amount = 100 + i, .now = T0, .idem = key("k", (unsigned char)i)};
    run_workers(w, N, thread_charge);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        cr_assert(w[i].result == BX_OK || w[i].result == BX_ERR_IDEMPOTENCY_MISMATCH, "worker %d: %d", i, w[i].result);
        ok += w[i].result == BX_OK;
    }
    cr_assert_eq(ok, 1);
    cr_assert_eq(raw_int("SELECT count(*) FROM ledger"), 1);
}

Test(SUITE, concurrent_payments_with_one_key_pay_once)
{
    enum { N = 8 };
    int64_t u = make_user("double", 100000), sch = make_schedule(make_concert(), 10, 30000);
    struct reservation r;
    struct worker w[N];
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 1, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    for (int i = 0; i < N; i++)
        w[i] = (struct worker){.user = u, .reservation = r.id, .now = T0 + 10, .idem = key("pay", 0x77)};
    run_workers(w, N, thread_pay);
    int ok = 0;
    int64_t pid = 0;
    for (int i = 0; i < N; i++) {
        cr_assert(w[i].result == BX_OK || w[i].result == BX_REPLAY, "worker %d: %d", i, w[i].result);
        ok += w[i].result == BX_OK;
        if (pid == 0)
            pid = w[i].payment.id;
        cr_assert_eq(w[i].payment.id, pid, "every answer names the one payment");
        cr_assert_eq(w[i].payment.balance_after, 70000);
    }
    cr_assert_eq(ok, 1);
    cr_assert_eq(balance_of(u), 70000);
    cr_assert_eq(raw_int("SELECT count(*) FROM payments"), 1);
    cr_assert_eq(audit(T0 + 10).total, 0);
}

Test(SUITE, concurrent_sweepers_expire_each_hold_once)
{
    enum { N = 4, HOLDS = 2500 };
    int64_t sch = make_schedule(make_concert(), 3000, 10);
    char sql[1024];
    /* HOLDS expired holds, created directly to keep the test fast */
    snprintf(sql, sizeof sql,
             "INSERT INTO users(id, name, pwhash) VALUES (500, 'bulk', 'x');"
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
             "INSERT INTO reservations(id, user_id, schedule_id, seat_no, price, status, held_at, expires_at) "
             "SELECT i, 500, %lld, i, 10, 'HELD', 0, 10 + i FROM n;"
             "UPDATE seats SET status = 'HELD', reservation_id = seat_no, hold_expires_at = 10 + seat_no "
             "WHERE seat_no <= %d;",
             HOLDS, (long long)sch, HOLDS);
    raw_sql(sql);
    struct worker w[N];
    for (int i = 0; i < N; i++)
        w[i] = (struct worker){.now = T0};
    run_workers(w, N, thread_sweep);
    int total = 0;
    for (int i = 0; i < N; i++) {
        cr_assert_eq(w[i].result, BX_OK, "sweeper %d: %d", i, w[i].result);
        cr_log_info("sweeper %d expired %d", i, w[i].expired);
        total += w[i].expired;
    }
    cr_assert_eq(total, HOLDS, "each hold expired exactly once");
    cr_assert_eq(raw_int("SELECT count(*) FROM reservations WHERE status = 'EXPIRED'"), HOLDS);
    cr_assert_eq(raw_int("SELECT count(*) FROM seats WHERE status = 'AVAILABLE'"), 3000);
    cr_assert_eq(audit(T0).total, 0);
}

static void *thread_hold_then_sweep(void *arg)
{
    struct worker *w = arg;
    return w->seat > 0 ? thread_hold(arg) : w->reservation > 0 ? thread_pay(arg) : thread_sweep(arg);
}

/* A takeover (user b holds a's seat the moment a's hold ends), a's late payment
 * and a sweeper race for the same seats: each seat ends with one consistent
 * outcome, nobody deadlocks, money and seats agree. */
Test(SUITE, takeover_payment_and_sweeper_racing_agree)
{
    int64_t a = make_user("early", 10000000), b = make_user("late", 0), sch = make_schedule(make_concert(), 20, 1000);
    for (int32_t seat = 1; seat <= 20; seat++) {
        struct reservation r;
        int64_t t = T0 + seat * HOLD_MS * 2;
        cr_assert_eq(st->ops->hold_seat(st, a, sch, seat, t, HOLD_MS, 100, &r), BX_OK);
        struct worker w[3] = {
            {.user = a, .reservation = r.id, .now = t + HOLD_MS - 1}, /* pay, just in time by its clock */
            {.user = b, .schedule = sch, .seat = seat, .now = t + HOLD_MS, .max_seats = 100}, /* takeover */
            {.now = t + HOLD_MS},                                                             /* sweeper */
        };
        run_workers(w, 3, thread_hold_then_sweep);
        cr_assert_eq(w[2].result, BX_OK);
        struct reservation out;
        cr_assert_eq(st->ops->reservation_get(st, a, r.id, t + HOLD_MS, &out), BX_OK);
        if (w[0].result == BX_OK) {
            cr_assert_eq(out.status, RES_CONFIRMED);
            cr_assert_eq(w[1].result, BX_ERR_SEAT_UNAVAILABLE);
        } else {
            cr_assert_eq(w[0].result, BX_ERR_HOLD_EXPIRED, "seat %d: pay %d", seat, w[0].result);
            cr_assert_eq(out.status, RES_EXPIRED);
        }
        cr_assert(w[1].result == BX_OK || w[1].result == BX_ERR_SEAT_UNAVAILABLE, "seat %d: hold %d", seat,
                  w[1].result);
    }
    cr_assert_eq(audit(T0 + 100 * HOLD_MS).total, 0);
}

#ifdef BX_TEST_PG
/* ---- PostgreSQL only: connection handling ---------------------------------- */

/* Kills the server side of every other session on the test database. */
static void kill_sessions(void)
{
    cr_assert_geq(raw_int("SELECT count(*) FROM (SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t"),
                  1);
}

Test(SUITE, read_after_connection_loss_reconnects_by_itself)
{
    int64_t u = make_user("survivor", 700);
    kill_sessions();
    cr_assert_eq(balance_of(u), 700, "a read is retried once after the reset");
    kill_sessions();
    cr_assert_eq(st->ops->ping(st), BX_OK);
}

Test(SUITE, write_after_connection_loss_is_unavailable_then_works)
{
    int64_t u = make_user("writer", 50), after = 0; /* the charge statement is prepared on this session */
    struct idem none = {.key = NULL};
    kill_sessions();
    cr_assert_eq(st->ops->balance_charge(st, u, 100, T0, &none, &after), BX_ERR_UNAVAILABLE,
                 "a write is never retried blindly");
    cr_assert_eq(st->ops->balance_charge(st, u, 100, T0, &none, &after), BX_OK, "the next call reconnects");
    cr_assert_eq(after, 150);
    cr_assert_eq(balance_of(u), 150, "the refused call did not charge: it never reached the server");
}

Test(SUITE, unreachable_server_fails_open_with_a_reason)
{
    char err[256] = "";
    int64_t t = clock_mono_ms();
    struct store *s = store_pg_open("postgresql://postgres@127.0.0.1:1/none", 0, err, sizeof err);
    cr_assert_null(s);
    cr_assert(strstr(err, "cannot connect") != NULL, "%s", err);
    cr_assert_lt(clock_mono_ms() - t, 6000, "connect_timeout bounds the wait");
    s = store_pg_open("postgresql://[bad", 0, err, sizeof err);
    cr_assert_null(s);
}

Test(SUITE, relaxed_connection_works_for_queue_persistence)
{
    char err[256];
    struct store *s = store_pg_open(db_url, STORE_OPEN_RELAXED, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    struct queue_record r = {
        .user_id = 1, .concert_id = 1, .seq = 1, .status = QUEUE_WAITING, .issued_at = T0, .last_seen_at = T0};
    snprintf(r.token, sizeof r.token, "%s", "RRRRRRRRRRRRRRRRRRRRRRRRRRRRRRRR");
    cr_assert_eq(s->ops->queue_save(s, &r), BX_OK);
    struct queue_record found;
    cr_assert_eq(st->ops->queue_find(st, r.token, &found), BX_OK);
    cr_assert_eq(found.seq, 1);
    s->ops->close(s);
}
/* ---- PostgreSQL only: batches of writes (bx_write_batch, migration 3) ------- */

static struct store_write w_hold(int64_t user, int64_t schedule, int32_t seat, int64_t now)
{
    return (struct store_write){.kind = STORE_WRITE_HOLD,
                                .user_id = user,
                                .schedule_id = schedule,
                                .seat_no = seat,
                                .now = now,
                                .hold_ms = HOLD_MS,
                                .max_per_user = MAX_SEATS};
}

static struct store_write w_pay(int64_t user, int64_t reservation, int64_t concert, int64_t now)
{
    return (struct store_write){.kind = STORE_WRITE_PAY,
                                .user_id = user,
                                .reservation_id = reservation,
                                .amount = -1,
                                .concert_id = concert,
                                .now = now};
}

static struct store_write w_cancel(int64_t user, int64_t reservation, int64_t now)
{
    return (struct store_write){.kind = STORE_WRITE_CANCEL, .user_id = user, .reservation_id = reservation, .now = now};
}

static struct store_write w_charge(int64_t user, int64_t amount, int64_t now)
{
    return (struct store_write){.kind = STORE_WRITE_CHARGE, .user_id = user, .amount = amount, .now = now};
}

static struct store_write keyed(struct store_write w, const char *k, unsigned char fill)
{
    w.has_key = true;
    snprintf(w.key, sizeof w.key, "%s", k);
    memset(w.request_hash, fill, sizeof w.request_hash);
    return w;
}

#define RUN_BATCH(w) cr_assert_eq(store_pg_write_batch(st, (w), sizeof(w) / sizeof(w)[0]), BX_OK)

/* A connection listening on bx_seats. */
static PGconn *listen_seats(void)
{
    PGconn *c = raw_connect(db_url);
    PGresult *r = PQexec(c, "LISTEN bx_seats");
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(r));
    PQclear(r);
    return c;
}

/* Every payload on bx_seats committed before now, in delivery order, joined by
 * '|' into out; returns how many. A marker notified last ends the wait:
 * notifications arrive in commit order. */
static int seat_changes(PGconn *c, char *out, size_t cap)
{
    int count = 0;
    size_t len = 0;
    out[0] = '\0';
    raw_sql("SELECT pg_notify('bx_seats', 'end-of-test-marker')");
    int64_t deadline = clock_mono_ms() + 10000;
    for (;;) {
        cr_assert_eq(PQconsumeInput(c), 1, "%s", PQerrorMessage(c));
        PGnotify *n;
        while ((n = PQnotifies(c)) != NULL) {
            bool end = strcmp(n->extra, "end-of-test-marker") == 0;
            if (!end) {
                cr_assert_leq(strlen(n->extra), 7900, "a notification stays under the limit");
                int w = snprintf(out + len, cap - len, "%s%s", count ? "|" : "", n->extra);
                cr_assert(w >= 0 && (size_t)w < cap - len, "payloads longer than the test's buffer");
                len += (size_t)w;
                count++;
            }
            PQfreemem(n);
            if (end)
                return count;
        }
        int64_t left = deadline - clock_mono_ms();
        cr_assert_gt(left, 0, "the marker notification never came");
        struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
        poll(&pfd, 1, (int)left);
    }
}

Test(SUITE, batch_runs_mixed_kinds_each_with_its_own_outcome)
{
    int64_t a = make_user("a", 100000), b = make_user("b", 0), c = make_concert(), sch = make_schedule(c, 10, 1000);
    struct reservation held;
    cr_assert_eq(st->ops->hold_seat(st, a, sch, 3, T0, HOLD_MS, MAX_SEATS, &held), BX_OK);
    int64_t ledger = raw_int("SELECT count(*) FROM ledger");
    struct store_write w[] = {
        w_hold(a, sch, 1, T0),        /* OK */
        w_hold(b, sch, 1, T0),        /* the item before holds it */
        w_hold(b, sch, 99, T0),       /* no such seat */
        w_pay(a, held.id, c, T0 + 1), /* OK */
        w_charge(b, 5000, T0),        /* OK */
        w_pay(b, held.id, c, T0),     /* a's reservation */
        w_cancel(a, held.id, T0 + 2), /* paid by item 3 */
        w_charge(b, 0, T0),           /* never sent as a charge */
        w_hold(999999, sch, 2, T0),   /* no such user */
        w_pay(b, 987654, c, T0),      /* no such reservation */
    };
    RUN_BATCH(w);
    bx_err want[] = {BX_OK,
                     BX_ERR_SEAT_UNAVAILABLE,
                     BX_ERR_SEAT_NOT_FOUND,
                     BX_OK,
                     BX_OK,
                     BX_ERR_RESERVATION_NOT_FOUND,
                     BX_ERR_NOT_HELD,
                     BX_ERR_VALIDATION,
                     BX_ERR_NOT_FOUND,
                     BX_ERR_RESERVATION_NOT_FOUND};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert_eq(w[i].result, want[i], "item %zu: %d, expected %d", i, w[i].result, want[i]);
    cr_assert_gt(w[0].reservation.id, held.id);
    cr_assert_eq(w[0].reservation.concert_id, c);
    cr_assert_eq(w[0].reservation.schedule_id, sch);
    cr_assert_eq(w[0].reservation.seat_no, 1);
    cr_assert_eq(w[0].reservation.price, 1000);
    cr_assert_eq(w[0].reservation.status, RES_HELD);
    cr_assert_eq(w[0].reservation.held_at, T0);
    cr_assert_eq(w[0].reservation.expires_at, T0 + HOLD_MS);
    cr_assert_gt(w[3].payment.id, 0);
    cr_assert_eq(w[3].payment.reservation_id, held.id);
    cr_assert_eq(w[3].payment.amount, 1000);
    cr_assert_eq(w[3].payment.balance_after, 99000);
    cr_assert_eq(w[3].payment.paid_at, T0 + 1);
    cr_assert_eq(w[3].live_holds_left, 1, "item 0's hold is still live");
    cr_assert_eq(w[4].balance, 5000);

    /* refused items changed nothing */
    cr_assert_eq(balance_of(a), 99000);
    cr_assert_eq(balance_of(b), 5000);
    cr_assert_eq(raw_int("SELECT count(*) FROM ledger"), ledger + 2);
    cr_assert_eq(raw_int("SELECT count(*) FROM reservations"), 2);
    cr_assert(seat_available(sch, 2, T0));
    cr_assert_not(seat_available(sch, 1, T0));
    cr_assert_eq(audit_with_limit(T0 + 2, MAX_SEATS).total, 0);
}

Test(SUITE, batch_replays_keys_within_and_across_batches)
{
    const char *k = "k\"1\\,{} x"; /* quotes, backslash, comma, braces: array literal escaping */
    int64_t a = make_user("a", 0), c = make_concert(), sch = make_schedule(c, 10, 1000);
    struct store_write w1[] = {
        keyed(w_charge(a, 3000, T0), k, 1),
        keyed(w_charge(a, 3000, T0 + 1), k, 1),
        keyed(w_charge(a, 3000, T0 + 1), k, 2),
        w_hold(a, sch, 1, T0),
    };
    RUN_BATCH(w1);
    cr_assert_eq(w1[0].result, BX_OK);
    cr_assert_eq(w1[1].result, BX_REPLAY, "a replay inside the batch that made it");
    cr_assert_eq(w1[1].balance, 3000);
    cr_assert_eq(w1[2].result, BX_ERR_IDEMPOTENCY_MISMATCH);
    cr_assert_eq(w1[3].result, BX_OK);

    struct store_write w2[] = {
        keyed(w_pay(a, w1[3].reservation.id, c, T0 + 2), "pay-1", 7),
        keyed(w_pay(a, w1[3].reservation.id, c, T0 + 3), "pay-1", 7),
        keyed(w_charge(a, 3000, T0 + 3), k, 1),
    };
    RUN_BATCH(w2);
    cr_assert_eq(w2[0].result, BX_OK);
    cr_assert_eq(w2[0].payment.balance_after, 2000);
    cr_assert_eq(w2[1].result, BX_REPLAY);
    cr_assert_eq(w2[1].payment.id, w2[0].payment.id);
    cr_assert_eq(w2[1].payment.paid_at, T0 + 2, "the first payment, not a second one");
    cr_assert_eq(w2[2].result, BX_REPLAY, "a replay across batches");
    cr_assert_eq(w2[2].balance, 3000);

    struct store_write w3[] = {
        keyed(w_pay(a, w1[3].reservation.id, c, T0 + 4), "pay-1", 7),
        keyed(w_pay(a, w1[3].reservation.id, c, T0 + 4), "pay-1", 8),
    };
    RUN_BATCH(w3);
    cr_assert_eq(w3[0].result, BX_REPLAY);
    cr_assert_eq(w3[0].payment.id, w2[0].payment.id);
    cr_assert_eq(w3[1].result, BX_ERR_IDEMPOTENCY_MISMATCH);

    /* the keys were stored as sent: the single calls see the same records */
    int64_t after;
    struct idem same = key(k, 1);
    cr_assert_eq(st->ops->balance_charge(st, a, 3000, T0 + 5, &same, &after), BX_REPLAY);
    cr_assert_eq(after, 3000);
    cr_assert_eq(balance_of(a), 2000);
    cr_assert_eq(raw_int("SELECT count(*) FROM payments"), 1);
    cr_assert_eq(raw_int("SELECT count(*) FROM ledger"), 2);
    cr_assert_eq(audit_with_limit(T0 + 5, MAX_SEATS).total, 0);
}

Test(SUITE, batch_items_of_one_user_share_balance_and_seat_limit)
{
    int64_t u = make_user("u", 1500), c = make_concert(), sch = make_schedule(c, 10, 1000);
    struct store_write holds[] = {w_hold(u, sch, 1, T0), w_hold(u, sch, 2, T0), w_hold(u, sch, 3, T0)};
    for (int i = 0; i < 3; i++)
        holds[i].max_per_user = 2;
    RUN_BATCH(holds);
    cr_assert_eq(holds[0].result, BX_OK);
    cr_assert_eq(holds[1].result, BX_OK);
    cr_assert_eq(holds[2].result, BX_ERR_SEAT_LIMIT, "the two holds before it count");
    int64_t r1 = holds[0].reservation.id, r2 = holds[1].reservation.id;
    struct store_write pays[] = {
        w_pay(u, r1, c, T0 + 1),
        w_pay(u, r2, c, T0 + 1),
        w_charge(u, 600, T0 + 1),
        w_pay(u, r2, c, T0 + 1),
    };
    RUN_BATCH(pays);
    cr_assert_eq(pays[0].result, BX_OK);
    cr_assert_eq(pays[0].payment.balance_after, 500);
    cr_assert_eq(pays[1].result, BX_ERR_INSUFFICIENT_BALANCE, "the pay before it spent the balance");
    cr_assert_eq(pays[2].result, BX_OK);
    cr_assert_eq(pays[2].balance, 1100);
    cr_assert_eq(pays[3].result, BX_OK);
    cr_assert_eq(pays[3].payment.balance_after, 100);
    cr_assert_eq(pays[0].live_holds_left, 0, "counted when the batch commits: both holds are paid");
    cr_assert_eq(balance_of(u), 100);
    cr_assert_eq(audit_with_limit(T0 + 1, 2).total, 0);
}

Test(SUITE, pay_reports_live_holds_left_on_its_concert)
{
    int64_t u = make_user("u", 100000), c1 = make_concert(), c2 = make_concert();
    int64_t s1 = make_schedule(c1, 10, 1000), s2 = make_schedule(c1, 10, 1000), s3 = make_schedule(c2, 10, 1000);
    struct reservation h1, h2, h3, h4, h5;
    cr_assert_eq(st->ops->hold_seat(st, u, s1, 1, T0, HOLD_MS, MAX_SEATS, &h1), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, u, s1, 2, T0, HOLD_MS, MAX_SEATS, &h2), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, u, s2, 1, T0, HOLD_MS, MAX_SEATS, &h3), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, u, s3, 1, T0, HOLD_MS, MAX_SEATS, &h4), BX_OK); /* other concert */
    cr_assert_eq(st->ops->hold_seat(st, u, s2, 2, T0 - HOLD_MS + 10, HOLD_MS, MAX_SEATS, &h5),
                 BX_OK); /* ends at T0+10 */
    struct store_write w[] = {w_pay(u, h1.id, c1, T0 + 20), w_pay(u, h2.id, c1, T0 + 20)};
    RUN_BATCH(w);
    cr_assert_eq(w[0].result, BX_OK);
    cr_assert_eq(w[1].result, BX_OK);
    cr_assert_eq(w[0].live_holds_left, 1, "h3 only: h2 is paid by the batch, h4 is another concert's, h5 ended");
    cr_assert_eq(w[1].live_holds_left, 1);
    struct store_write last[] = {w_pay(u, h3.id, c1, T0 + 20)};
    RUN_BATCH(last);
    cr_assert_eq(last[0].result, BX_OK);
    cr_assert_eq(last[0].live_holds_left, 0, "the queue token may go");
}

Test(SUITE, batch_announces_exactly_the_seats_it_changed)
{
    int64_t a = make_user("a", 100000), b = make_user("b", 100000), c = make_concert(),
            sch = make_schedule(c, 10, 1000);
    struct reservation r3, r4, r5, r7, r8;
    cr_assert_eq(st->ops->hold_seat(st, a, sch, 3, T0, HOLD_MS, MAX_SEATS, &r3), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, a, sch, 4, T0, HOLD_MS, MAX_SEATS, &r4), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, b, sch, 5, T0 - HOLD_MS, HOLD_MS, MAX_SEATS, &r5), BX_OK); /* ended */
    cr_assert_eq(st->ops->hold_seat(st, a, sch, 7, T0 - HOLD_MS, HOLD_MS, MAX_SEATS, &r7), BX_OK); /* ended */
    cr_assert_eq(st->ops->hold_seat(st, b, sch, 8, T0 - HOLD_MS, HOLD_MS, MAX_SEATS, &r8), BX_OK); /* ended */
    char got[16384], want[512];
    PGconn *l = listen_seats();
    cr_assert_eq(seat_changes(l, got, sizeof got), 0, "the single functions do not notify");

    struct store_write w[] = {
        w_hold(a, sch, 1, T0 + 1),  /* H */
        w_pay(a, r3.id, c, T0 + 1), /* S */
        w_cancel(a, r4.id, T0 + 1), /* A */
        w_hold(a, sch, 5, T0 + 1),  /* taken over: H, new end */
        w_hold(b, sch, 3, T0 + 1),  /* refused: sold by item 1 */
        w_pay(a, r7.id, c, T0 + 1), /* HOLD_EXPIRED, and the seat freed: A */
        w_cancel(b, r4.id, T0 + 1), /* refused: not b's */
        w_charge(b, 10, T0 + 1),    /* no seat */
    };
    RUN_BATCH(w);
    cr_assert_eq(w[3].result, BX_OK);
    cr_assert_eq(w[4].result, BX_ERR_SEAT_UNAVAILABLE);
    cr_assert_eq(w[5].result, BX_ERR_HOLD_EXPIRED);
    cr_assert_eq(w[6].result, BX_ERR_RESERVATION_NOT_FOUND);
    snprintf(want, sizeof want,
             "%" PRId64 ",1,H,%" PRId64 ";%" PRId64 ",3,S,0;%" PRId64 ",4,A,0;%" PRId64 ",5,H,%" PRId64 ";%" PRId64
             ",7,A,0",
             sch, (int64_t)(T0 + 1 + HOLD_MS), sch, sch, sch, (int64_t)(T0 + 1 + HOLD_MS), sch);
    cr_assert_eq(seat_changes(l, got, sizeof got), 1, "one notification for the batch");
    cr_assert_str_eq(got, want);

    struct store_write refused[] = {w_hold(b, sch, 1, T0 + 2), w_cancel(a, r3.id, T0 + 2)};
    RUN_BATCH(refused);
    cr_assert_eq(refused[0].result, BX_ERR_SEAT_UNAVAILABLE);
    cr_assert_eq(refused[1].result, BX_ERR_NOT_HELD);
    cr_assert_eq(seat_changes(l, got, sizeof got), 0, "a batch that changed no seat says nothing");

    int expired = -1;
    cr_assert_eq(st->ops->sweep_holds(st, T0 + 2, &expired), BX_OK);
    cr_assert_eq(expired, 1);
    snprintf(want, sizeof want, "%" PRId64 ",8,A,0", sch);
    cr_assert_eq(seat_changes(l, got, sizeof got), 1, "the sweeper announces what it freed");
    cr_assert_str_eq(got, want);
    PQfinish(l);
    cr_assert_eq(audit_with_limit(T0 + 2, MAX_SEATS).total, 0);
}

Test(SUITE, big_batch_splits_its_announcement_under_the_payload_limit)
{
    enum { USERS = 100, SEATS = 4 * USERS };
    int64_t sch = make_schedule(make_concert(), SEATS, 1000), users[USERS];
    char name[32];
    for (int i = 0; i < USERS; i++) {
        snprintf(name, sizeof name, "u%d", i);
        users[i] = make_user(name, 0);
    }
    static struct store_write w[SEATS];
    for (int i = 0; i < SEATS; i++)
        w[i] = w_hold(users[i / 4], sch, i + 1, T0);
    PGconn *l = listen_seats();
    RUN_BATCH(w);
    for (int i = 0; i < SEATS; i++)
        cr_assert_eq(w[i].result, BX_OK, "item %d: %d", i, w[i].result);
    static char got[65536];
    int count = seat_changes(l, got, sizeof got);
    cr_assert_geq(count, 2, "%d bytes of changes need more than one notification", (int)strlen(got));
    static int seen[SEATS + 1];
    int changes = 0;
    for (char *save = NULL, *e = strtok_r(got, ";|", &save); e != NULL; e = strtok_r(NULL, ";|", &save)) {
        long long s_id, seat, end;
        char status;
        cr_assert_eq(sscanf(e, "%lld,%lld,%c,%lld", &s_id, &seat, &status, &end), 4, "%s", e);
        cr_assert_eq(s_id, sch);
        cr_assert(seat >= 1 && seat <= SEATS);
        cr_assert_eq(status, 'H');
        cr_assert_eq(end, T0 + HOLD_MS);
        seen[seat]++;
        changes++;
    }
    cr_assert_eq(changes, SEATS);
    for (int i = 1; i <= SEATS; i++)
        cr_assert_eq(seen[i], 1, "seat %d announced %d times", i, seen[i]);
    PQfinish(l);
}

Test(SUITE, batch_item_that_raises_fails_alone)
{
    int64_t a = make_user("a", 0), sch = make_schedule(make_concert(), 10, 1000);
    raw_sql("CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
            "IF NEW.amount = 4242 THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END$$; "
            "CREATE TRIGGER test_refuse BEFORE INSERT ON ledger FOR EACH ROW EXECUTE FUNCTION test_refuse()");
    struct store_write w[] = {w_charge(a, 100, T0), w_charge(a, 4242, T0), w_hold(a, sch, 1, T0)};
    RUN_BATCH(w);
    cr_assert_eq(w[0].result, BX_OK);
    cr_assert_eq(w[0].balance, 100);
    cr_assert_eq(w[1].result, BX_ERR_INTERNAL, "the raising item alone fails");
    cr_assert_eq(w[2].result, BX_OK);
    cr_assert_eq(balance_of(a), 100);
    cr_assert_eq(audit_with_limit(T0, MAX_SEATS).total, 0);
}

struct blocked_batch {
    struct store_write w[3];
    bx_err result;
};

static void *thread_blocked_batch(void *arg)
{
    struct blocked_batch *b = arg;
    char err[256];
    struct store *s = connect_store(err, sizeof err);
    b->result = s ? store_pg_write_batch(s, b->w, 3) : BX_ERR_INTERNAL;
    if (s)
        s->ops->close(s);
    return NULL;
}

/* Two items on one seat, whose row another transaction updates and commits while
 * the batch waits for its lock: every item still gets its own outcome (a first
 * version of the lock statement lost the second item in the recheck). */
Test(SUITE, batch_waiting_for_a_seat_updated_meanwhile_keeps_every_item)
{
    int64_t a = make_user("a", 0), b = make_user("b", 0), sch = make_schedule(make_concert(), 10, 1000);
    PGconn *other = raw_connect(db_url);
    PGresult *r = PQexec(other, "BEGIN; UPDATE seats SET price = price WHERE seat_no IN (5, 6)");
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(r));
    PQclear(r);
    struct blocked_batch batch = {.w = {w_hold(a, sch, 5, T0), w_hold(b, sch, 5, T0), w_hold(b, sch, 6, T0)}};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, thread_blocked_batch, &batch), 0);
    struct timespec pause = {.tv_nsec = 300 * 1000000};
    nanosleep(&pause, NULL);
    r = PQexec(other, "COMMIT");
    PQclear(r);
    pthread_join(th, NULL);
    PQfinish(other);
    cr_assert_eq(batch.result, BX_OK);
    cr_assert_eq(batch.w[0].result, BX_OK);
    cr_assert_eq(batch.w[1].result, BX_ERR_SEAT_UNAVAILABLE, "%d", batch.w[1].result);
    cr_assert_eq(batch.w[2].result, BX_OK);
    cr_assert_eq(audit(T0).total, 0);
}

/* Threads of its own connection sending batches over the same users and seats,
 * half of them in the opposite order. */
struct batcher {
    int64_t users[4], schedule;
    int id, rounds, seats;
    bx_err result;
    int held, paid;
    pthread_barrier_t *start;
};

static void *thread_batches(void *arg)
{
    struct batcher *b = arg;
    char err[256];
    struct store *s = connect_store(err, sizeof err);
    pthread_barrier_wait(b->start);
    b->result = s ? BX_OK : BX_ERR_INTERNAL;
    struct store_write w[64];
    for (int round = 0; round < b->rounds && b->result == BX_OK; round++) {
        int64_t now = T0 + round * (HOLD_MS + 1); /* every round's holds end before the next */
        for (int k = 0; k < b->seats; k++) {
            int seat = b->id % 2 ? b->seats - k : k + 1;
            w[k] = w_hold(b->users[(seat + b->id) % 4], b->schedule, seat, now);
            w[k].max_per_user = b->seats;
        }
        b->result = store_pg_write_batch(s, w, (size_t)b->seats);
        int n = 0;
        for (int k = b->seats - 1; k >= 0 && b->result == BX_OK; k--)
            if (w[k].result == BX_OK) {
                b->held++;
                w[n] = w_pay(w[k].user_id, w[k].reservation.id, 0, now + 1);
                n++;
            }
        if (b->result == BX_OK && n > 0 && round % 2 == 0) {
            b->result = store_pg_write_batch(s, w, (size_t)n);
            for (int k = 0; k < n; k++)
                b->paid += w[k].result == BX_OK;
        }
    }
    if (s)
        s->ops->close(s);
    return NULL;
}

Test(SUITE, concurrent_batches_in_opposite_orders_do_not_deadlock)
{
    enum { N = 6 };
    struct batcher b[N];
    pthread_t th[N];
    pthread_barrier_t start;
    int64_t users[4], sch = make_schedule(make_concert(), 40, 1000);
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof name, "u%d", i);
        users[i] = make_user(name, 10000000);
    }
    cr_assert_eq(pthread_barrier_init(&start, NULL, N), 0);
    for (int i = 0; i < N; i++) {
        b[i] = (struct batcher){.schedule = sch, .id = i, .rounds = 6, .seats = 40, .start = &start};
        memcpy(b[i].users, users, sizeof users);
        cr_assert_eq(pthread_create(&th[i], NULL, thread_batches, &b[i]), 0);
    }
    int held = 0, paid = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(b[i].result, BX_OK, "batcher %d: %d (a deadlock is UNAVAILABLE)", i, b[i].result);
        held += b[i].held;
        paid += b[i].paid;
    }
    pthread_barrier_destroy(&start);
    cr_assert_gt(held, 0);
    cr_assert_eq(raw_int("SELECT count(*) FROM seats WHERE status = 'SOLD'"), paid);
    cr_assert_eq(audit(T0 + 10 * HOLD_MS).total, 0);
}

/* ---- PostgreSQL only: set-based batches decide as item by item (migration 4) --- */

/* The differential test's world: a small one, so that batches collide. */
#define DW_USERS 6
/* Epochs: the decisions are PostgreSQL's, the same whatever the build; under the
 * sanitizers (several times the cost per call) a fifth of them still run every C
 * path, while the plain build's suite runs them all. */
#ifdef __SANITIZE_ADDRESS__
#define DW_EPOCHS 8
#else
#define DW_EPOCHS 40
#endif
#define DW_BATCHES 60
#define DW_BALANCE_MAX 12000 /* the charges' BALANCE_LIMIT, low enough to reach */

/* xorshift64*: reproducible batches (BOXOFFICE_TEST_SEED picks another run). */
static uint64_t dw_rng;

static uint32_t dw_rand(uint32_t below)
{
    dw_rng ^= dw_rng >> 12;
    dw_rng ^= dw_rng << 25;
    dw_rng ^= dw_rng >> 27;
    return (uint32_t)((dw_rng * 2685821657736338717ULL) >> 32) % below;
}

/* One of the twin databases: a connection that runs the batches and listens on
 * bx_seats (its own notifications arrive before its statement's answer). */
static PGconn *dw_connect(const char *url, const char *options)
{
    const char *keys[] = {"dbname", "options", NULL};
    const char *vals[] = {url, options, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "connect %s: %s", url, PQerrorMessage(c));
    PGresult *r = PQexec(c, "LISTEN bx_seats");
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(r));
    PQclear(r);
    return c;
}

static PGresult *dw_exec(PGconn *c, const char *sql, int nparams, const char *const *values)
{
    PGresult *r = PQexecParams(c, sql, nparams, NULL, values, NULL, NULL, 0);
    cr_assert_neq(PQstatus(c), CONNECTION_BAD, "%s", PQerrorMessage(c));
    return r;
}

static void dw_sql(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType rs = PQresultStatus(r);
    cr_assert(rs == PGRES_COMMAND_OK || rs == PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

/* The payloads on bx_seats received so far, joined by '|'. */
static void dw_changes(PGconn *c, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    cr_assert_eq(PQconsumeInput(c), 1, "%s", PQerrorMessage(c));
    for (PGnotify *n; (n = PQnotifies(c)) != NULL; PQfreemem(n)) {
        int w = snprintf(out + len, cap - len, "%s%s", len ? "|" : "", n->extra);
        cr_assert(w >= 0 && (size_t)w < cap - len, "payloads longer than the test's buffer");
        len += (size_t)w;
    }
}

/* Every row that matters, one text per table: equal texts, equal states. Users
 * without created_at (the clock of their insertion); the sequences' positions,
 * so that the next ids agree too. */
static const char *const dw_tables[] = {
    "SELECT string_agg(format('%s %s %s', id, name, balance), ';' ORDER BY id) FROM users",
    "SELECT string_agg(t::text, ';' ORDER BY schedule_id, seat_no) FROM seats t",
    "SELECT string_agg(r::text, ';' ORDER BY id) FROM reservations r",
    "SELECT string_agg(p::text, ';' ORDER BY id) FROM payments p",
    "SELECT string_agg(l::text, ';' ORDER BY id) FROM ledger l",
    "SELECT string_agg(k::text, ';' ORDER BY user_id, scope, key) FROM idempotency k",
    "SELECT string_agg(format('%s %s', relname, pg_sequence_last_value(oid)), ';' ORDER BY relname) "
    "FROM pg_class WHERE relkind = 'S'",
};

/* The same notifications since the last call, and the same rows. */
static void dw_same_after(PGconn *a, PGconn *b, const char *when)
{
    static char ca[65536], cb[65536];
    dw_changes(a, ca, sizeof ca);
    dw_changes(b, cb, sizeof cb);
    cr_assert_str_eq(ca, cb, "%s: the notifications differ", when);
    for (size_t t = 0; t < sizeof dw_tables / sizeof dw_tables[0]; t++) {
        PGresult *ra = dw_exec(a, dw_tables[t], 0, NULL), *rb = dw_exec(b, dw_tables[t], 0, NULL);
        cr_assert_eq(PQresultStatus(ra), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(ra));
        cr_assert_eq(PQresultStatus(rb), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(rb));
        cr_assert_str_eq(PQgetvalue(ra, 0, 0), PQgetvalue(rb, 0, 0), "%s: %s differs (set-based, then item by item)",
                         when, dw_tables[t]);
        PQclear(ra);
        PQclear(rb);
    }
}

/* The same world in a database: 6 users with random balances, schedule 1 on
 * sale throughout, 2 whose sale closes at T0 + 300, 3 (another concert) whose
 * sale opens at T0 + 200. Identity columns start again at 1. */
static void dw_world(PGconn *c, const int64_t *balances)
{
    char sql[2048];
    int len = snprintf(sql, sizeof sql,
                       "TRUNCATE idempotency, ledger, payments, seats, reservations, schedules, concerts, users "
                       "RESTART IDENTITY CASCADE;"
                       "INSERT INTO users(name, pwhash) SELECT 'u' || g, 'x' FROM generate_series(1, %d) g;"
                       "INSERT INTO concerts(title, venue) VALUES ('A', 'a'), ('B', 'b');"
                       "SELECT bx_schedule_create(1, %lld, %lld, %lld, 6, 1000);"
                       "SELECT bx_schedule_create(1, %lld, %lld, %lld, 5, 700);"
                       "SELECT bx_schedule_create(2, %lld, %lld, %lld, 4, 1500);",
                       DW_USERS, T0 + 86400000, T0 - 3600000, T0 + 86400000, T0 + 86400000, T0 - 3600000,
                       T0 + 300, T0 + 86400000, T0 + 200, T0 + 86400000);
    for (int u = 0; u < DW_USERS; u++)
        if (balances[u] > 0)
            len += snprintf(sql + len, sizeof sql - (size_t)len, "SELECT bx_charge(%d, %lld, %lld, NULL, NULL, %d);",
                            u + 1, (long long)balances[u], T0 - 1000, DW_BALANCE_MAX);
    cr_assert_lt((size_t)len, sizeof sql);
    dw_sql(c, sql);
}

/* What the generator knows of the reservations (ids from the answers). */
struct dw_known {
    int64_t last_res, owner[DW_BATCHES * 40 + 8];
    /* the users of this batch's holds so far: a hold that succeeds takes the
     * id last_res + 1 + its rank among the holds that succeed, so a pay or a
     * cancel of last_res + 1 + j often names a hold of the same batch */
    int64_t batch_holder[40];
    int batch_holds;
};

static int64_t dw_user(bool distinct, bool *taken)
{
    if (dw_rand(40) == 0)
        return 999; /* no such user */
    int u = (int)dw_rand(DW_USERS);
    for (int k = 0; distinct && taken[u] && k < DW_USERS; k++)
        u = (u + 1) % DW_USERS;
    taken[u] = true;
    return u + 1;
}

static void dw_key(struct store_write *w)
{
    if (dw_rand(2) == 0)
        return;
    w->has_key = true;
    snprintf(w->key, sizeof w->key, "k%u", dw_rand(4));
    memset(w->request_hash, dw_rand(5) == 0 ? 2 : 1, sizeof w->request_hash);
}

/* How far the clocks of one batch's items spread (ms): sometimes far enough
 * that an item takes over a hold its owner's later item, at an earlier clock,
 * still counts as live. */
static uint32_t dw_spread = 6;

/* A random write of a batch at about `now`: holds (some on no such seat or
 * schedule, some never valid), pays and cancels of recent reservations (mostly
 * by their owner), charges; keys from a small set, so replays and mismatches. */
static struct store_write dw_write(int64_t now, bool distinct, bool *users, bool *seats,
                                   struct dw_known *known)
{
    struct store_write w = {.now = now + dw_rand(dw_spread)};
    uint32_t kind = dw_rand(20);
    if (kind < 8) {
        static const int64_t seats_of[] = {6, 5, 4};
        w.kind = STORE_WRITE_HOLD;
        w.user_id = dw_user(distinct, users);
        int s = (int)dw_rand(3), seat = 1 + (int)dw_rand((uint32_t)seats_of[s] + 1);
        for (int k = 0; distinct && seats[s * 8 + seat] && k < 8; k++)
            seat = 1 + (seat % (int)(seats_of[s] + 1));
        seats[s * 8 + seat] = true;
        if (known->batch_holds < 40)
            known->batch_holder[known->batch_holds++] = w.user_id;
        w.schedule_id = dw_rand(30) == 0 ? 777 : s + 1;
        w.seat_no = seat;
        w.hold_ms = dw_rand(25) == 0 ? 0 : 1 + dw_rand(60);
        w.max_per_user = 1 + (int)dw_rand(3);
    } else if (kind < 15) {
        w.kind = kind < 13 ? STORE_WRITE_PAY : STORE_WRITE_CANCEL;
        int64_t r = known->last_res == 0 ? 1
                    : dw_rand(10) < 7    ? known->last_res - (int64_t)dw_rand(10)
                                         : 1 + (int64_t)dw_rand((uint32_t)known->last_res + 3);
        w.reservation_id = r < 1 ? 1 : r;
        int64_t owner = w.reservation_id <= known->last_res ? known->owner[w.reservation_id] : 0;
        if (known->batch_holds > 0 && dw_rand(10) < 4) { /* a hold of this batch, paid or cancelled in it */
            int j = (int)dw_rand((uint32_t)known->batch_holds);
            w.reservation_id = known->last_res + 1 + j;
            owner = known->batch_holder[j];
        }
        w.user_id = owner > 0 && dw_rand(10) < 8 ? owner : dw_user(distinct, users);
        users[(w.user_id - 1) % DW_USERS] = true;
        w.amount = -1;
        if (w.kind == STORE_WRITE_PAY) {
            uint32_t a = dw_rand(10);
            w.amount = a < 6 ? -1 : a < 8 ? 1000 : 700;
            w.concert_id = 1 + dw_rand(2);
            dw_key(&w);
        }
    } else {
        w.kind = STORE_WRITE_CHARGE;
        w.user_id = dw_user(distinct, users);
        w.amount = dw_rand(12) == 0 ? 0 : 1 + dw_rand(6000);
        dw_key(&w);
    }
    return w;
}

/* Milliseconds spent in the batches, set-based then item by item. */
static double dw_ms[2];

/* Runs one batch on both databases and requires the same rows (or the same
 * refusal of the whole call), the same notifications and the same state. */
static int dw_batch(PGconn *a, PGconn *b, struct store_write *w, size_t n, struct dw_known *known, long *codes,
                    const char *when)
{
    struct pg_batch_params p;
    cr_assert(pg_batch_encode(w, n, DW_BALANCE_MAX, &p));
    struct timespec t0, t1, t2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    PGresult *ra = dw_exec(a, WRITE_BATCH_SQL, PG_BATCH_PARAMS, p.values);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    PGresult *rb = dw_exec(b, WRITE_BATCH_SQL, PG_BATCH_PARAMS, p.values);
    clock_gettime(CLOCK_MONOTONIC, &t2);
    dw_ms[0] += (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    dw_ms[1] += (double)(t2.tv_sec - t1.tv_sec) * 1e3 + (double)(t2.tv_nsec - t1.tv_nsec) / 1e6;
    pg_batch_params_release(&p);
    cr_assert_eq(PQresultStatus(ra), PQresultStatus(rb), "%s: %s / %s", when, PQresultErrorMessage(ra),
                 PQresultErrorMessage(rb));
    int rows = 0;
    if (PQresultStatus(ra) == PGRES_TUPLES_OK) {
        rows = PQntuples(ra);
        cr_assert_eq(rows, (int)n, "%s", when);
        cr_assert_eq(PQntuples(rb), rows, "%s", when);
        cr_assert_eq(PQnfields(ra), PQnfields(rb));
        for (int i = 0; i < rows; i++) {
            for (int f = 0; f < PQnfields(ra); f++)
                cr_assert(PQgetisnull(ra, i, f) == PQgetisnull(rb, i, f) &&
                              strcmp(PQgetvalue(ra, i, f), PQgetvalue(rb, i, f)) == 0,
                          "%s, item %d (kind %d), %s: set-based '%s', item by item '%s'", when, i, w[i].kind,
                          PQfname(ra, f), PQgetisnull(ra, i, f) ? "NULL" : PQgetvalue(ra, i, f),
                          PQgetisnull(rb, i, f) ? "NULL" : PQgetvalue(rb, i, f));
            bx_err e = BX_ERR_INTERNAL;
            cr_assert(pg_outcome_code(PQgetvalue(ra, i, 0), &e), "%s", PQgetvalue(ra, i, 0));
            codes[e]++;
            if (w[i].kind == STORE_WRITE_HOLD && e == BX_OK) {
                int64_t id = strtoll(PQgetvalue(ra, i, 1), NULL, 10);
                cr_assert_lt(id, (int64_t)(sizeof known->owner / sizeof known->owner[0]));
                known->owner[id] = w[i].user_id;
                known->last_res = id > known->last_res ? id : known->last_res;
            }
        }
    }
    PQclear(ra);
    PQclear(rb);
    dw_same_after(a, b, when);
    return rows;
}

/* The twins: the test's database, set-based (*a), and a second one, item by item (*b). */
static void dw_open_twins(PGconn **a, PGconn **b)
{
    char url_a[512], url_b[512];
    snprintf(url_a, sizeof url_a, "%s", db_url);
    fresh_database();
    snprintf(url_b, sizeof url_b, "%s", db_url);
    struct store *sb = open_store(); /* migrates B */
    sb->ops->close(sb);
    snprintf(db_url, sizeof db_url, "%s", url_a);
    *a = dw_connect(url_a, "-c boxoffice.write_batch_per_item=off -c synchronous_commit=off");
    *b = dw_connect(url_b, "-c boxoffice.write_batch_per_item=on -c synchronous_commit=off");
}

static struct store_write dw_hold(int64_t user, int seat, int64_t now, int64_t hold_ms)
{
    return (struct store_write){.kind = STORE_WRITE_HOLD, .user_id = user, .schedule_id = 1, .seat_no = seat,
                                .now = now, .hold_ms = hold_ms, .max_per_user = 1};
}

/* The collisions a random batch rarely meets, in rounds of at least 4 items
 * (a batch goes item by item before its first user met again when fewer come
 * before): a hold that takes over an ended hold frees its owner's place under
 * the seat limit for the owner's next hold, even at an earlier clock; holds paid
 * in the round after theirs, in the same batch. */
Test(SUITE, set_based_batch_takeover_and_pay_of_own_hold_as_item_by_item)
{
    PGconn *a, *b;
    dw_open_twins(&a, &b);
    const int64_t balances[DW_USERS] = {5000, 5000, 5000, 0, 5000, 0};
    dw_world(a, balances);
    dw_world(b, balances);
    static struct dw_known known;
    long codes[BX_ERR__COUNT + 1] = {0};
    struct store_write first[] = {dw_hold(1, 1, T0, 10)}; /* reservation 1, ends at T0 + 10 */
    cr_assert_eq(dw_batch(a, b, first, 1, &known, codes, "first hold"), 1);
    struct store_write takeover[] = {
        dw_hold(2, 1, T0 + 12, 50), /* takes seat 1 over: reservation 2, 1 EXPIRED */
        dw_hold(1, 2, T0 + 5, 50),  /* user 1 again at T0 + 5: 1 no longer counts (3) */
        dw_hold(3, 3, T0 + 12, 50), /* 4 */
        dw_hold(4, 4, T0 + 12, 50), /* 5 */
    };
    cr_assert_eq(dw_batch(a, b, takeover, 4, &known, codes, "takeover batch"), 4);
    struct store_write rounds[] = {
        dw_hold(5, 5, T0 + 20, 50), /* 6 */
        dw_hold(6, 6, T0 + 20, 50), /* 7 */
        {.kind = STORE_WRITE_PAY, .user_id = 3, .reservation_id = 4, .now = T0 + 20, .amount = -1, .concert_id = 1},
        {.kind = STORE_WRITE_CANCEL, .user_id = 2, .reservation_id = 2, .now = T0 + 20},
        {.kind = STORE_WRITE_PAY, .user_id = 5, .reservation_id = 6, .now = T0 + 21, .amount = 1000, .concert_id = 1},
        {.kind = STORE_WRITE_PAY, .user_id = 6, .reservation_id = 7, .now = T0 + 21, .amount = -1, .concert_id = 1},
        {.kind = STORE_WRITE_CHARGE, .user_id = 3, .amount = 100, .now = T0 + 21},
        {.kind = STORE_WRITE_CHARGE, .user_id = 2, .amount = 100, .now = T0 + 21},
    };
    cr_assert_eq(dw_batch(a, b, rounds, 8, &known, codes, "two rounds"), 8);
    struct store_write edges[] = {
        {.kind = STORE_WRITE_CHARGE, .user_id = 4, .amount = DW_BALANCE_MAX, .now = T0 + 30}, /* to the max exactly */
        {.kind = STORE_WRITE_PAY, .user_id = 1, .reservation_id = 3, .now = T0 + 30, .amount = 0, .concert_id = 1},
        {.kind = STORE_WRITE_CHARGE, .user_id = 3, .amount = 100, .now = T0 + 30},
        {.kind = STORE_WRITE_CHARGE, .user_id = 2, .amount = 100, .now = T0 + 30},
    };
    cr_assert_eq(dw_batch(a, b, edges, 4, &known, codes, "edges"), 4);
    cr_assert_eq(codes[BX_OK], 15, "every item OK but two, as item by item");
    cr_assert_eq(codes[BX_ERR_INSUFFICIENT_BALANCE], 1);
    cr_assert_eq(codes[BX_ERR_PRICE_MISMATCH], 1, "a pay of 0 won expects 0 won");
    PQfinish(a);
    PQfinish(b);
}

Test(SUITE, set_based_batches_decide_and_write_as_item_by_item, .timeout = 120)
{
    const char *seed_env = getenv("BOXOFFICE_TEST_SEED");
    uint64_t seed = seed_env ? strtoull(seed_env, NULL, 10) : 20240611;
    dw_rng = seed | 1;
    char when[128];
    PGconn *a, *b;
    dw_open_twins(&a, &b);
    long codes[BX_ERR__COUNT + 1] = {0}, items = 0, batches = 0;
    static struct dw_known known;
    for (int epoch = 0; epoch < DW_EPOCHS; epoch++) {
        int64_t balances[DW_USERS];
        for (int u = 0; u < DW_USERS; u++)
            balances[u] = dw_rand(3) == 0 ? 0 : dw_rand(8000);
        dw_world(a, balances);
        dw_world(b, balances);
        memset(&known, 0, sizeof known);
        int64_t now = T0;
        for (int k = 0; k < DW_BATCHES; k++) {
            struct store_write w[32];
            bool users[DW_USERS] = {false}, seats[3 * 8] = {false};
            known.batch_holds = 0;
            uint32_t size = dw_rand(10);
            size_t n = size < 4 ? 1 + dw_rand(3) : size < 8 ? 4 + dw_rand(9) : 13 + dw_rand(20);
            bool distinct = dw_rand(2) == 0;
            dw_spread = dw_rand(3) == 0 ? 40 : 6;
            for (size_t i = 0; i < n; i++)
                w[i] = dw_write(now, distinct, users, seats, &known);
            snprintf(when, sizeof when, "seed %" PRIu64 ", epoch %d, batch %d", seed, epoch, k);
            items += dw_batch(a, b, w, n, &known, codes, when);
            batches++;
            now += dw_rand(21);
            if (dw_rand(10) == 0) { /* the sweeper too, on both */
                char at[24];
                snprintf(at, sizeof at, "%" PRId64, now);
                const char *v[] = {at};
                PGresult *ra = dw_exec(a, "SELECT * FROM bx_sweep($1, 100)", 1, v);
                PGresult *rb = dw_exec(b, "SELECT * FROM bx_sweep($1, 100)", 1, v);
                cr_assert_eq(PQresultStatus(ra), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(ra));
                cr_assert_str_eq(PQgetvalue(ra, 0, 1), PQgetvalue(rb, 0, 1));
                PQclear(ra);
                PQclear(rb);
                dw_same_after(a, b, when);
            }
        }
        char at[24];
        snprintf(at, sizeof at, "%" PRId64, now);
        const char *v[] = {at, "3"};
        PGresult *ra = dw_exec(a, AUDIT_SQL, 2, v), *rb = dw_exec(b, AUDIT_SQL, 2, v);
        cr_assert_eq(PQresultStatus(ra), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(ra));
        cr_assert_eq(PQntuples(ra), 0, "epoch %d: audit: %s", epoch, PQntuples(ra) ? PQgetvalue(ra, 0, 1) : "");
        cr_assert_eq(PQntuples(rb), 0, "epoch %d: audit (item by item): %s", epoch,
                     PQntuples(rb) ? PQgetvalue(rb, 0, 1) : "");
        PQclear(ra);
        PQclear(rb);
    }
    PQfinish(a);
    PQfinish(b);
    printf("figure differential: seed %" PRIu64 ", %ld batches, %ld items (%.0f ms set-based, %.0f ms item by item):",
           seed, batches, items, dw_ms[0], dw_ms[1]);
    for (int e = 0; e <= BX_ERR__COUNT; e++)
        if (codes[e])
            printf(" %s %ld", bx_err_info((bx_err)e)->code, codes[e]);
    printf("\n");
    cr_assert_gt(codes[BX_OK], 0);
}

Test(SUITE, board_load_reads_a_schedule_as_stored)
{
    int64_t u = make_user("u", 100000), c = make_concert(), sch = make_schedule(c, 5, 1000);
    struct reservation r;
    struct payment p;
    struct idem none = {.key = NULL};
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 2, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 3, T0, HOLD_MS, MAX_SEATS, &r), BX_OK);
    cr_assert_eq(st->ops->pay(st, u, r.id, -1, T0, &none, &p), BX_OK);
    cr_assert_eq(st->ops->hold_seat(st, u, sch, 4, T0 - HOLD_MS, HOLD_MS, MAX_SEATS, &r), BX_OK); /* ended */
    char id[24], rows[512] = "";
    size_t len = 0;
    snprintf(id, sizeof id, "%" PRId64, sch);
    const char *values[1] = {id};
    PGconn *conn = raw_connect(db_url);
    PGresult *res = PQexecParams(conn, BOARD_LOAD_SQL, 1, NULL, values, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
    cr_assert_eq(PQnfields(res), 6);
    for (int i = 0; i < PQntuples(res); i++)
        len += (size_t)snprintf(rows + len, sizeof rows - len, "%s%s %s %s %s %s %s", i ? "|" : "",
                                PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
                                PQgetvalue(res, i, 3), PQgetvalue(res, i, 4), PQgetvalue(res, i, 5));
    PQclear(res);
    char want[512];
    snprintf(want, sizeof want,
             "%1$" PRId64 " 5 1 1000 A 0|%1$" PRId64 " 5 2 1000 H %2$" PRId64 "|%1$" PRId64 " 5 3 1000 S 0|"
             "%1$" PRId64 " 5 4 1000 H %3$" PRId64 "|%1$" PRId64 " 5 5 1000 A 0",
             c, (int64_t)(T0 + HOLD_MS), (int64_t)T0);
    cr_assert_str_eq(rows, want);
    values[0] = "987654";
    res = PQexecParams(conn, BOARD_LOAD_SQL, 1, NULL, values, NULL, NULL, 0);
    cr_assert_eq(PQntuples(res), 0, "no such schedule: no row");
    PQclear(res);
    PQfinish(conn);
}
#endif
