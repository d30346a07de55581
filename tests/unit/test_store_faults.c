/* test_store_faults.c — fault injection under the embedded store (store_sqlite.c):
 * the Nth write fails, for every N, over every write path the server uses (holds,
 * payments, charges, cancels, the expiry a payment settles, a hold taking over an
 * expired one, the sweeper, the queue journal, sign-up), in group-commit batches
 * as the store writer runs them (store/group_commit.c: batch_begin, each write in
 * its savepoint, batch_commit) and in single transactions. After each run the
 * database is reopened without faults and
 *   - the audit finds nothing (invariants 1-3, 5; a seat left HELD by a
 *     reservation that is not HELD is a finding too);
 *   - every acknowledged write is there (its batch committed and it said OK);
 *   - with statement faults, every refused write left nothing behind, and each
 *     user's balance is the template's plus the acknowledged charges minus the
 *     acknowledged payments.
 * Three kinds of fault, each its own test:
 *   row-abort     the Nth row write (INSERT/UPDATE/DELETE on any table) fails its
 *                 statement (a TEMP trigger RAISE(ABORT), installed on every new
 *                 connection through sqlite3_auto_extension);
 *   row-rollback  the same with RAISE(ROLLBACK): SQLite drops the whole
 *                 transaction, as it may after an I/O error or a full disk;
 *   io            the Nth xWrite or xSync of the database or its WAL fails
 *                 (a VFS registered as the default, wrapping the real one).
 * Nothing in the server is built for this: the unit test links the store directly
 * and hooks SQLite from outside, so production builds carry no test hook. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"

#define T0 1000000000000LL /* "now" of the run, Unix ms */
#define LATER (T0 + 5000)  /* after the short holds ended */
#define SWEEP_AT (T0 + 10000)
#define SHORT_HOLD 1000LL
#define LONG_HOLD 300000LL
#define MAX_SEATS 4
#define PRICE 100
#define MAX_RUNS 2000

/* ------------------------------------------------------------ fault injector */

enum fault_kind { FAULT_NONE = 0, FAULT_ROW_ABORT, FAULT_ROW_ROLLBACK, FAULT_IO };

static struct {
    enum fault_kind kind; /* armed kind; FAULT_NONE: disarmed */
    long at;              /* fail the at-th write of that kind */
    long seen;            /* writes of that kind so far */
    int fired;            /* the fault happened */
    int fired_on_sync;    /* FAULT_IO: it was an fsync (the commit may have reached the disk) */
} inj;

static const char *fault_name(enum fault_kind kind)
{
    return kind == FAULT_IO ? "io" : kind == FAULT_ROW_ABORT ? "row-abort" : "row-rollback";
}

static void inj_arm(enum fault_kind kind, long at)
{
    inj.kind = kind;
    inj.at = at;
    inj.seen = 0;
    inj.fired = 0;
    inj.fired_on_sync = 0;
}

static int inj_hit(enum fault_kind kind)
{
    if (inj.kind != kind || inj.fired)
        return 0;
    if (++inj.seen != inj.at)
        return 0;
    inj.fired = 1;
    return 1;
}

/* bx_fault(kind): 1 when this row write is the one to fail. */
static void sql_fault(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    sqlite3_result_int(ctx, inj_hit((enum fault_kind)sqlite3_value_int(argv[0])));
}

/* Every new connection: the function the triggers below call. */
static int inj_connection(sqlite3 *db, const char **err, const struct sqlite3_api_routines *api)
{
    (void)err, (void)api;
    return sqlite3_create_function(db, "bx_fault", 1, SQLITE_UTF8, NULL, sql_fault, NULL, NULL);
}

/* Triggers on every table of the run's database that fail the armed row write
 * (ABORT: that statement; ROLLBACK: the whole transaction). In the main schema of
 * the run's copy, not TEMP: the store's PRAGMA temp_store drops TEMP triggers. */
static void inj_triggers(const char *path)
{
    static const char *const tables[] = {"users",       "seats",        "reservations", "payments", "ledger",
                                         "idempotency", "queue_tokens", "schedules",    "concerts", "meta"};
    static const char *const ops[] = {"INSERT", "UPDATE", "DELETE"};
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
        for (size_t o = 0; o < 3; o++) {
            char sql[640];
            char *msg = NULL;
            snprintf(sql, sizeof sql,
                     "CREATE TRIGGER bx_fault_a_%s_%s BEFORE %s ON %s WHEN bx_fault(%d) "
                     "BEGIN SELECT RAISE(ABORT, 'injected fault'); END;"
                     "CREATE TRIGGER bx_fault_r_%s_%s BEFORE %s ON %s WHEN bx_fault(%d) "
                     "BEGIN SELECT RAISE(ROLLBACK, 'injected fault'); END;",
                     tables[t], ops[o], ops[o], tables[t], FAULT_ROW_ABORT, tables[t], ops[o], ops[o], tables[t],
                     FAULT_ROW_ROLLBACK);
            int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
            cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "");
        }
    }
    cr_assert_eq(sqlite3_close(db), SQLITE_OK);
}

/* The VFS: the real one with xWrite and xSync of the database and its WAL
 * failing when the injector says so. */
struct shim_file {
    sqlite3_file base;
    sqlite3_file *real; /* follows this struct, szOsFile of the real VFS */
    int counted;        /* main database or WAL */
};

static sqlite3_vfs *real_vfs;
static sqlite3_vfs shim_vfs;
static sqlite3_io_methods shim_io;

#define REAL(f) (((struct shim_file *)(f))->real)

static int shim_close(sqlite3_file *f)
{
    int rc = REAL(f)->pMethods ? REAL(f)->pMethods->xClose(REAL(f)) : SQLITE_OK;
    return rc;
}
static int shim_read(sqlite3_file *f, void *b, int n, sqlite3_int64 off)
{
    return REAL(f)->pMethods->xRead(REAL(f), b, n, off);
}
static int shim_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 off)
{
    if (((struct shim_file *)f)->counted && inj_hit(FAULT_IO))
        return SQLITE_IOERR_WRITE;
    return REAL(f)->pMethods->xWrite(REAL(f), b, n, off);
}
static int shim_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}
static int shim_sync(sqlite3_file *f, int flags)
{
    if (((struct shim_file *)f)->counted && inj_hit(FAULT_IO)) {
        inj.fired_on_sync = 1;
        return SQLITE_IOERR_FSYNC;
    }
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int shim_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}
static int shim_lock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int shim_unlock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int shim_check_lock(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}
static int shim_fcntl(sqlite3_file *f, int op, void *arg)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
static int shim_sector(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int shim_devchar(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int shim_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, pgsz, extend, pp);
}
static int shim_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void shim_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int shim_shm_unmap(sqlite3_file *f, int del)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}
static int shim_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    return REAL(f)->pMethods->xFetch(REAL(f), off, n, pp);
}
static int shim_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static int shim_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
    (void)vfs;
    struct shim_file *s = (struct shim_file *)f;
    s->real = (sqlite3_file *)(s + 1);
    s->counted = (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL)) != 0;
    int rc = real_vfs->xOpen(real_vfs, name, s->real, flags, out_flags);
    /* the methods of the real file decide which optional ones exist */
    f->pMethods = s->real->pMethods ? &shim_io : NULL;
    return rc;
}

static void inj_install(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    real_vfs = sqlite3_vfs_find(NULL);
    cr_assert_not_null(real_vfs);
    shim_io = (sqlite3_io_methods){
        .iVersion = 3,
        .xClose = shim_close,
        .xRead = shim_read,
        .xWrite = shim_write,
        .xTruncate = shim_truncate,
        .xSync = shim_sync,
        .xFileSize = shim_size,
        .xLock = shim_lock,
        .xUnlock = shim_unlock,
        .xCheckReservedLock = shim_check_lock,
        .xFileControl = shim_fcntl,
        .xSectorSize = shim_sector,
        .xDeviceCharacteristics = shim_devchar,
        .xShmMap = shim_shm_map,
        .xShmLock = shim_shm_lock,
        .xShmBarrier = shim_shm_barrier,
        .xShmUnmap = shim_shm_unmap,
        .xFetch = shim_fetch,
        .xUnfetch = shim_unfetch,
    };
    shim_vfs = *real_vfs;
    shim_vfs.zName = "bx_fault";
    shim_vfs.szOsFile = (int)sizeof(struct shim_file) + real_vfs->szOsFile;
    shim_vfs.xOpen = shim_open;
    shim_vfs.pNext = NULL;
    cr_assert_eq(sqlite3_vfs_register(&shim_vfs, 1), SQLITE_OK);
    cr_assert_eq(sqlite3_auto_extension((void (*)(void))inj_connection), SQLITE_OK);
}

/* ------------------------------------------------------------ files */

static char dir[64], template_path[128], db_path[128];

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    cr_assert(in && out, "copy %s -> %s", from, to);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        cr_assert_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    cr_assert_eq(fclose(out), 0);
}

/* Removes the database and its WAL/shm (a run's leftovers). */
static void remove_db(const char *path)
{
    char p[160];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

static struct store *open_store(const char *path)
{
    char err[256];
    struct store *s = store_sqlite_open(path, 0, err, sizeof err);
    cr_assert_not_null(s, "open %s: %s", path, err);
    return s;
}

static int64_t raw_int(const char *sql, int64_t a, int64_t b)
{
    sqlite3 *db;
    sqlite3_stmt *q;
    int64_t v = -1;
    cr_assert_eq(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, "unix"), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(db));
    sqlite3_bind_int64(q, 1, a);
    sqlite3_bind_int64(q, 2, b);
    if (sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

/* ------------------------------------------------------------ the template */

static int64_t user_a, user_b, schedule_id;
#define START_BALANCE 1000

/* A migrated database with a concert, a schedule of 8 seats at PRICE on sale at T0,
 * and two users with START_BALANCE each. Written without faults. */
static void make_template(void)
{
    struct store *s = open_store(template_path);
    int64_t concert, bal;
    cr_assert_eq(s->ops->migrate(s), BX_OK);
    cr_assert_eq(s->ops->concert_create(s, "Faults", "Hall", &concert), BX_OK);
    struct schedule in = {.concert_id = concert,
                          .starts_at = T0 + 86400000,
                          .sale_opens_at = T0 - 3600000,
                          .sale_closes_at = T0 + 86400000,
                          .seat_count = 8};
    cr_assert_eq(s->ops->schedule_create(s, &in, PRICE, &schedule_id), BX_OK);
    cr_assert_eq(s->ops->user_create(s, "a", "$argon2id$fake", &user_a), BX_OK);
    cr_assert_eq(s->ops->user_create(s, "b", "$argon2id$fake", &user_b), BX_OK);
    struct idem none = {.key = NULL};
    cr_assert_eq(s->ops->balance_charge(s, user_a, START_BALANCE, T0 - 1000, &none, &bal), BX_OK);
    cr_assert_eq(s->ops->balance_charge(s, user_b, START_BALANCE, T0 - 1000, &none, &bal), BX_OK);
    s->ops->close(s); /* the last connection: WAL checkpointed into the file */
}

static void setup(void)
{
    inj_install();
    inj_arm(FAULT_NONE, 0);
    /* tmpfs when there is one: hundreds of runs of synchronous=FULL commits */
    strcpy(dir, access("/dev/shm", W_OK) == 0 ? "/dev/shm/bx_faults_XXXXXX" : "/tmp/bx_faults_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(template_path, sizeof template_path, "%s/template.db", dir);
    snprintf(db_path, sizeof db_path, "%s/run.db", dir);
    make_template();
}

static void teardown(void)
{
    inj_arm(FAULT_NONE, 0);
    nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

TestSuite(store_faults, .init = setup, .fini = teardown, .timeout = 240);

/* ------------------------------------------------------------ one run */

/* A write and what became of it. */
struct op {
    const char *what;
    struct store_write w;
    bool acked;  /* its batch committed and it said OK (or HOLD_EXPIRED after settling) */
    bool failed; /* it was refused by an error (not a business refusal) */
};

enum {
    H1, /* a holds seat 1 (paid in batch 2) */
    H2, /* a holds seat 2 (cancelled in batch 2) */
    H3, /* b holds seat 3 shortly (b's late payment settles its expiry) */
    H4, /* b holds seat 4 shortly (a takes the seat over in batch 2) */
    H5, /* b holds seat 5 shortly (left to the sweeper) */
    C1, /* a charges 500 under a key */
    P1, /* a pays H1 */
    X2, /* a cancels H2 */
    P3, /* b pays H3 too late: the store settles the expiry */
    H6, /* a holds seat 4 over b's expired H4 */
    C2, /* b charges 300 under a key */
    D1, /* a charges 100 under a key, in a transaction of its own */
    H7, /* b holds seat 6 shortly, in a transaction of its own */
    P7, /* b pays H7 too late, in a transaction of its own */
    NOPS
};

struct run {
    struct op op[NOPS];
    bx_err sweep, signup, journal, journal_commit;
    bool journal_acked[3], signup_acked, sweep_acked;
    int64_t carol;
    struct queue_record q[3];
};

static void write_hold(struct op *o, int64_t user, int seat, int64_t now, int64_t hold_ms)
{
    o->w = (struct store_write){.kind = STORE_WRITE_HOLD,
                                .user_id = user,
                                .now = now,
                                .schedule_id = schedule_id,
                                .seat_no = seat,
                                .hold_ms = hold_ms,
                                .max_per_user = MAX_SEATS};
}

static void write_charge(struct op *o, int64_t user, int64_t amount, int64_t now, const char *key)
{
    o->w = (struct store_write){.kind = STORE_WRITE_CHARGE, .user_id = user, .now = now, .amount = amount};
    o->w.has_key = true;
    snprintf(o->w.key, sizeof o->w.key, "%s", key);
    memset(o->w.request_hash, (int)strlen(key), sizeof o->w.request_hash);
}

static void write_on(struct op *o, enum store_write_kind kind, int64_t user, const struct op *hold, int64_t now,
                     const char *key)
{
    o->w = (struct store_write){.kind = kind,
                                .user_id = user,
                                .now = now,
                                .reservation_id = hold->w.reservation.id,
                                .schedule_id = schedule_id,
                                .seat_no = hold->w.seat_no,
                                .amount = -1};
    if (key != NULL) {
        o->w.has_key = true;
        snprintf(o->w.key, sizeof o->w.key, "%s", key);
        memset(o->w.request_hash, 7, sizeof o->w.request_hash);
    }
}

static bool said_ok(const struct op *o)
{
    return o->w.result == BX_OK || o->w.result == BX_REPLAY;
}

/* A business refusal is an answer too; anything else is an error. */
static bool is_error(bx_err e)
{
    return e == BX_ERR_UNAVAILABLE || e == BX_ERR_INTERNAL;
}

/* The ops of one batch as the store writer runs them. */
static void run_batch(struct store *s, struct op *ops[], int n)
{
    bx_err e = s->ops->batch_begin(s);
    for (int i = 0; i < n; i++) {
        if (e == BX_OK)
            store_write_run(s, &ops[i]->w);
        else
            ops[i]->w.result = e;
    }
    if (e == BX_OK)
        e = s->ops->batch_commit(s);
    for (int i = 0; i < n; i++) {
        struct op *o = ops[i];
        bool settled = o->w.kind == STORE_WRITE_PAY && o->w.result == BX_ERR_HOLD_EXPIRED;
        o->acked = e == BX_OK && (said_ok(o) || settled);
        o->failed = e != BX_OK || is_error(o->w.result);
    }
}

static void run_alone(struct store *s, struct op *o)
{
    store_write_run(s, &o->w);
    bool settled = o->w.kind == STORE_WRITE_PAY && o->w.result == BX_ERR_HOLD_EXPIRED;
    o->acked = said_ok(o) || settled;
    o->failed = is_error(o->w.result);
}

static void workload(struct store *s, struct run *r)
{
    struct op *o = r->op;
    o[H1].what = "hold 1", o[H2].what = "hold 2", o[H3].what = "short hold 3", o[H4].what = "short hold 4";
    o[H5].what = "short hold 5", o[C1].what = "charge a", o[P1].what = "pay hold 1", o[X2].what = "cancel hold 2";
    o[P3].what = "late pay of hold 3", o[H6].what = "hold over expired 4", o[C2].what = "charge b";
    o[D1].what = "charge a alone", o[H7].what = "short hold 6 alone", o[P7].what = "late pay of hold 6 alone";

    write_hold(&o[H1], user_a, 1, T0, LONG_HOLD);
    write_hold(&o[H2], user_a, 2, T0, LONG_HOLD);
    write_hold(&o[H3], user_b, 3, T0, SHORT_HOLD);
    write_hold(&o[H4], user_b, 4, T0, SHORT_HOLD);
    write_hold(&o[H5], user_b, 5, T0, SHORT_HOLD);
    write_charge(&o[C1], user_a, 500, T0, "charge-a-1");
    run_batch(s, (struct op *[]){&o[H1], &o[H2], &o[H3], &o[H4], &o[H5], &o[C1]}, 6);

    write_on(&o[P1], STORE_WRITE_PAY, user_a, &o[H1], LATER, "pay-a-1");
    write_on(&o[X2], STORE_WRITE_CANCEL, user_a, &o[H2], LATER, NULL);
    write_on(&o[P3], STORE_WRITE_PAY, user_b, &o[H3], LATER, "pay-b-3");
    write_hold(&o[H6], user_a, 4, LATER, LONG_HOLD);
    write_charge(&o[C2], user_b, 300, LATER, "charge-b-1");
    run_batch(s, (struct op *[]){&o[P1], &o[X2], &o[P3], &o[H6], &o[C2]}, 5);

    write_charge(&o[D1], user_a, 100, LATER, "charge-a-2");
    run_alone(s, &o[D1]);
    write_hold(&o[H7], user_b, 6, T0, SHORT_HOLD);
    run_alone(s, &o[H7]);
    write_on(&o[P7], STORE_WRITE_PAY, user_b, &o[H7], LATER, "pay-b-6");
    run_alone(s, &o[P7]);

    int expired = 0;
    r->sweep = s->ops->sweep_holds(s, SWEEP_AT, &expired);
    r->sweep_acked = r->sweep == BX_OK;

    /* the queue journal: a batch of upserts (queue/waitroom_mem.c, journal_write) */
    r->journal = s->ops->batch_begin(s);
    bx_err saved[3] = {r->journal, r->journal, r->journal};
    for (int i = 0; i < 3; i++) {
        r->q[i] = (struct queue_record){.user_id = user_a,
                                        .concert_id = 1,
                                        .seq = i + 1,
                                        .status = QUEUE_WAITING,
                                        .issued_at = T0,
                                        .last_seen_at = T0};
        snprintf(r->q[i].token, sizeof r->q[i].token, "fault-token-%d", i);
        if (r->journal == BX_OK)
            saved[i] = s->ops->queue_save(s, &r->q[i]);
    }
    r->journal_commit = r->journal == BX_OK ? s->ops->batch_commit(s) : r->journal;
    for (int i = 0; i < 3; i++)
        r->journal_acked[i] = r->journal_commit == BX_OK && saved[i] == BX_OK;

    r->signup = s->ops->user_create(s, "carol", "$argon2id$fake", &r->carol);
    r->signup_acked = r->signup == BX_OK;
}

static void audit_finding(int invariant, const char *finding, void *arg)
{
    char *buf = arg;
    size_t len = strlen(buf);
    snprintf(buf + len, 2048 - len, "  invariant %d: %s\n", invariant, finding);
}

static const char *res_status(int64_t id)
{
    static const char *const names[] = {"?", "HELD", "CONFIRMED", "EXPIRED", "CANCELLED"};
    int64_t v = raw_int("SELECT CASE status WHEN 'HELD' THEN 1 WHEN 'CONFIRMED' THEN 2 WHEN 'EXPIRED' THEN 3 "
                        "WHEN 'CANCELLED' THEN 4 ELSE 0 END FROM reservations WHERE id = ?1",
                        id, 0);
    return names[v < 0 ? 0 : v];
}

static int64_t ledger_count(int64_t user, const char *key)
{
    sqlite3 *db;
    sqlite3_stmt *q;
    int64_t v = -1;
    cr_assert_eq(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, "unix"), SQLITE_OK);
    cr_assert_eq(
        sqlite3_prepare_v2(db, "SELECT count(*) FROM ledger WHERE user_id = ?1 AND reference = ?2", -1, &q, NULL),
        SQLITE_OK);
    sqlite3_bind_int64(q, 1, user);
    sqlite3_bind_text(q, 2, key, -1, SQLITE_STATIC);
    if (sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

/* The checks after a run, on the reopened database. strict: statement faults,
 * where a refused write must have left nothing. */
static void verify(const struct run *r, enum fault_kind kind, long at, bool strict)
{
    const struct op *o = r->op;
    char ctx[96];
    snprintf(ctx, sizeof ctx, "fault %s at write %ld", fault_name(kind), at);
    struct store *s = open_store(db_path);

    char findings[2048] = "";
    int violations = -1;
    cr_assert_eq(s->ops->audit(s, SWEEP_AT, MAX_SEATS, audit_finding, findings, &violations), BX_OK, "%s: audit", ctx);
    cr_assert_eq(violations, 0, "%s: audit found %d violations:\n%s", ctx, violations, findings);

    /* acknowledged writes are there */
    for (int i = 0; i < NOPS; i++) {
        if (!o[i].acked)
            continue;
        const struct store_write *w = &o[i].w;
        switch (w->kind) {
        case STORE_WRITE_HOLD:
            if (w->result == BX_OK)
                cr_assert_neq(strcmp(res_status(w->reservation.id), "?"), 0,
                              "%s: acknowledged %s (reservation %lld) is lost", ctx, o[i].what,
                              (long long)w->reservation.id);
            break;
        case STORE_WRITE_PAY:
            if (w->result == BX_OK)
                cr_assert_str_eq(res_status(w->reservation_id), "CONFIRMED", "%s: acknowledged %s is lost", ctx,
                                 o[i].what);
            else /* HOLD_EXPIRED: the expiry it settled */
                cr_assert_str_eq(res_status(w->reservation_id), "EXPIRED", "%s: %s said HOLD_EXPIRED", ctx, o[i].what);
            break;
        case STORE_WRITE_CANCEL:
            cr_assert_str_eq(res_status(w->reservation_id), "CANCELLED", "%s: acknowledged %s is lost", ctx, o[i].what);
            break;
        case STORE_WRITE_CHARGE:
            cr_assert_eq(ledger_count(w->user_id, w->key), 1, "%s: acknowledged %s is lost", ctx, o[i].what);
            break;
        }
    }
    if (r->sweep_acked && o[H5].acked)
        cr_assert_str_eq(res_status(o[H5].w.reservation.id), "EXPIRED",
                         "%s: the sweep said OK but hold 5 is not EXPIRED", ctx);
    for (int i = 0; i < 3; i++) {
        struct queue_record q;
        if (r->journal_acked[i])
            cr_assert_eq(s->ops->queue_find(s, r->q[i].token, &q), BX_OK, "%s: acknowledged queue record %d is lost",
                         ctx, i);
    }
    struct user u;
    if (r->signup_acked)
        cr_assert_eq(s->ops->user_find_by_name(s, "carol", &u), BX_OK, "%s: acknowledged sign-up is lost", ctx);

    if (strict) {
        /* refused writes left nothing, and the money adds up */
        int64_t want_a = START_BALANCE, want_b = START_BALANCE;
        for (int i = 0; i < NOPS; i++) {
            const struct store_write *w = &o[i].w;
            if (!o[i].acked) {
                if (w->kind == STORE_WRITE_CHARGE)
                    cr_assert_eq(ledger_count(w->user_id, w->key), 0, "%s: refused %s was applied", ctx, o[i].what);
                if (w->kind == STORE_WRITE_PAY && w->reservation_id != 0)
                    cr_assert_str_neq(res_status(w->reservation_id), "CONFIRMED", "%s: refused %s was applied", ctx,
                                      o[i].what);
                if (w->kind == STORE_WRITE_CANCEL && w->reservation_id != 0)
                    cr_assert_str_neq(res_status(w->reservation_id), "CANCELLED", "%s: refused %s was applied", ctx,
                                      o[i].what);
                continue;
            }
            int64_t delta = w->kind == STORE_WRITE_CHARGE                      ? w->amount
                            : w->kind == STORE_WRITE_PAY && w->result == BX_OK ? -PRICE
                                                                               : 0;
            if (w->user_id == user_a)
                want_a += delta;
            else
                want_b += delta;
        }
        /* each (user, seat) has exactly the reservations of its acknowledged holds */
        for (int i = 0; i < NOPS; i++) {
            const struct store_write *w = &o[i].w;
            if (w->kind != STORE_WRITE_HOLD)
                continue;
            int64_t want = 0;
            for (int k = 0; k < NOPS; k++)
                want += o[k].w.kind == STORE_WRITE_HOLD && o[k].acked && o[k].w.user_id == w->user_id &&
                        o[k].w.seat_no == w->seat_no;
            int64_t have = raw_int("SELECT count(*) FROM reservations WHERE user_id = ?1 AND seat_no = ?2", w->user_id,
                                   w->seat_no);
            cr_assert_eq(have, want, "%s: user %lld has %lld reservations of seat %d, %lld acknowledged (%s %s)", ctx,
                         (long long)w->user_id, (long long)have, w->seat_no, (long long)want, o[i].what,
                         o[i].acked ? "acknowledged" : "refused");
        }
        if (!r->signup_acked)
            cr_assert_eq(s->ops->user_find_by_name(s, "carol", &u), BX_ERR_NOT_FOUND, "%s: refused sign-up was applied",
                         ctx);
        int64_t bal;
        cr_assert_eq(s->ops->balance_get(s, user_a, &bal), BX_OK);
        cr_assert_eq(bal, want_a, "%s: a's balance %lld, acknowledged writes say %lld", ctx, (long long)bal,
                     (long long)want_a);
        cr_assert_eq(s->ops->balance_get(s, user_b, &bal), BX_OK);
        cr_assert_eq(bal, want_b, "%s: b's balance %lld, acknowledged writes say %lld", ctx, (long long)bal,
                     (long long)want_b);
    }
    s->ops->close(s);
}

/* Runs the workload with the fault at write 1, 2, ... until a run where it no
 * longer fires (every write point was hit once). Returns the number of runs. */
static long sweep_fault(enum fault_kind kind, bool strict, int *in_doubt)
{
    long at;
    int refused_total = 0;
    *in_doubt = 0;
    for (at = 1; at <= MAX_RUNS; at++) {
        remove_db(db_path);
        copy_file(template_path, db_path);
        inj_triggers(db_path);
        struct store *s = open_store(db_path);
        struct run r;
        memset(&r, 0, sizeof r);
        inj_arm(kind, at);
        workload(s, &r);
        int fired = inj.fired, on_sync = inj.fired_on_sync;
        inj_arm(FAULT_NONE, 0);
        s->ops->close(s);
        if (!fired) {
            /* no fault: everything must have gone through */
            for (int i = 0; i < NOPS; i++)
                cr_assert(!r.op[i].failed, "no fault, yet %s failed: %s", r.op[i].what,
                          bx_err_info(r.op[i].w.result)->code);
            verify(&r, kind, at, true);
            break;
        }
        for (int i = 0; i < NOPS; i++)
            refused_total += r.op[i].failed;
        verify(&r, kind, at, strict || !on_sync);
        *in_doubt += on_sync;
    }
    cr_assert_leq(at, MAX_RUNS, "the fault still fired after %d runs", MAX_RUNS);
    printf("figure: store faults [%s]: the fault at each of %ld writes in turn (%d at an fsync: commit in doubt), %d "
           "writes refused in all; audit clean and every acknowledged write kept after each\n",
           fault_name(kind), at - 1, *in_doubt, refused_total);
    fflush(stdout);
    return at - 1;
}

Test(store_faults, a_failed_row_write_at_any_point_keeps_every_ack_and_leaves_nothing_half_done)
{
    int in_doubt;
    long n = sweep_fault(FAULT_ROW_ABORT, true, &in_doubt);
    cr_assert_gt(n, 40, "only %ld row writes in the workload", n);
}

Test(store_faults, a_transaction_rolled_back_under_a_batch_keeps_every_ack_and_leaves_nothing_half_done)
{
    int in_doubt;
    long n = sweep_fault(FAULT_ROW_ROLLBACK, true, &in_doubt);
    cr_assert_gt(n, 40, "only %ld row writes in the workload", n);
}

Test(store_faults, an_io_error_at_any_write_or_fsync_keeps_every_ack_and_a_clean_audit)
{
    int in_doubt;
    long n = sweep_fault(FAULT_IO, false, &in_doubt);
    cr_assert_gt(n, 10, "only %ld file writes in the workload", n);
}
