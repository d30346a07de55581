/* test_pg_conn.c — unit tests of the asynchronous PostgreSQL connection
 * (store/pg_conn.h) against a real server: the one named by BOXOFFICE_TEST_PG_URL
 * (tests/harness/pg.sh), a fresh database per test. The frozen-server test starts
 * a private server of its own, since it stops every process of it. Each test
 * drives an h2o event loop until what it waits for has happened, within a limit,
 * and records every callback (kind, tag, time) to assert order and counts. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/pg_conn.h"
#include "util/clock.h"

#define MAX_EVENTS 8192
#define MAX_STOPPED 64
#define SLACK_MS 400 /* how late past a deadline a failure may come (2 shared cores) */

enum { Q_ECHO, Q_DIV, Q_PARAMS, Q_BACKEND, Q_SLEEP, Q_NOTIFY, Q_SERIES, Q_INSERT, Q_INSERT_THEN_FAIL, Q_COUNT, N_STMT };

static const struct pg_statement statements[N_STMT] = {
    [Q_ECHO] = {"echo", "SELECT $1::int"},
    [Q_DIV] = {"div", "SELECT 10 / $1::int"},
    [Q_PARAMS] = {"params", "SELECT $1::text IS NULL, $2::bytea, length($2::bytea), $3::text"},
    [Q_BACKEND] = {"backend", "SELECT pg_backend_pid()"},
    [Q_SLEEP] = {"sleep", "SELECT 0 FROM pg_sleep($1::float8)"},
    [Q_NOTIFY] = {"notify", "SELECT pg_notify('Seat Changes', $1)"},
    [Q_SERIES] = {"series", "SELECT g FROM generate_series(1, $1::int) g"},
    [Q_INSERT] = {"insert", "INSERT INTO t (v) VALUES ($1::int)"},
    /* one statement that inserts, then fails: its insert must not survive */
    [Q_INSERT_THEN_FAIL] = {"insert_then_fail",
                            "WITH i AS (INSERT INTO t (v) VALUES ($1::int) RETURNING v) SELECT 10 / (v - v) FROM i"},
    [Q_COUNT] = {"count", "SELECT count(*) FROM t"},
};

/* ---- what the callbacks saw ------------------------------------------------- */

struct event {
    char kind; /* 'd' done, 'n' notification, 'u' up, 'D' down */
    char conn; /* which connection: 'A' or 'B' */
    long tag;  /* done: the caller's tag; notification: the payload as a number */
    bx_err e;
    int rows;
    char col[4][64];
    bool null[4];
    char sqlstate[6];
    int64_t at; /* monotonic ms */
};

static struct event events[MAX_EVENTS];
static int nevents;

static struct event *record(char kind, char conn, long tag)
{
    cr_assert_lt(nevents, MAX_EVENTS);
    struct event *ev = &events[nevents++];
    *ev = (struct event){.kind = kind, .conn = conn, .tag = tag, .at = clock_mono_ms()};
    return ev;
}

static int count(char kind, char conn)
{
    int n = 0;
    for (int i = 0; i < nevents; i++)
        n += events[i].kind == kind && events[i].conn == conn;
    return n;
}

/* The index of the first event of this kind, connection and tag; -1 if none. */
static int find(char kind, char conn, long tag)
{
    for (int i = 0; i < nevents; i++)
        if (events[i].kind == kind && events[i].conn == conn && events[i].tag == tag)
            return i;
    return -1;
}

/* A query's tag packs its connection: 'A' or 'B' times 1e6 plus a number. */
#define TAG(conn, n) ((void *)(intptr_t)((conn)*1000000L + (n)))

static void on_done(void *arg, bx_err e, const PGresult *res)
{
    long t = (long)(intptr_t)arg;
    struct event *ev = record('d', (char)(t / 1000000), t % 1000000);
    ev->e = e;
    if (e == BX_ERR_UNAVAILABLE) {
        cr_assert_null(res, "UNAVAILABLE comes without a result");
        return;
    }
    cr_assert_not_null(res);
    if (e == BX_ERR_INTERNAL) {
        cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
        snprintf(ev->sqlstate, sizeof ev->sqlstate, "%s", PQresultErrorField(res, PG_DIAG_SQLSTATE));
        return;
    }
    ev->rows = PQntuples(res);
    for (int c = 0; c < PQnfields(res) && c < 4 && ev->rows > 0; c++) {
        ev->null[c] = PQgetisnull(res, 0, c);
        snprintf(ev->col[c], sizeof ev->col[c], "%s", PQgetvalue(res, 0, c));
    }
}

static void on_notify(void *arg, const char *payload)
{
    record('n', (char)(intptr_t)arg, atol(payload));
}

static void on_state(void *arg, bool up)
{
    record(up ? 'u' : 'D', (char)(intptr_t)arg, 0);
}

/* ---- the loop ---------------------------------------------------------------- */

static h2o_evloop_t *loop;
static h2o_timeout_t tick_timeout;
static h2o_timeout_entry_t tick_entry;
static int ticks; /* a 50 ms timer of the test's own: the loop must keep running it */

static void on_tick(h2o_timeout_entry_t *e)
{
    ticks++;
    h2o_timeout_link(loop, &tick_timeout, e);
}

/* Runs the loop until `count(kind, conn) >= n` or limit_ms have passed. */
static bool run_until(char kind, char conn, int n, int64_t limit_ms)
{
    int64_t end = clock_mono_ms() + limit_ms;
    while (count(kind, conn) < n && clock_mono_ms() < end)
        h2o_evloop_run(loop, 10);
    return count(kind, conn) >= n;
}

static void run_for(int64_t ms)
{
    int64_t end = clock_mono_ms() + ms;
    while (clock_mono_ms() < end)
        h2o_evloop_run(loop, 10);
}

/* ---- the server -------------------------------------------------------------- */

static const char *admin_url; /* BOXOFFICE_TEST_PG_URL */
static char db_url[512];      /* this test's fresh database */
static char dbname[64];
static char private_dir[128];      /* a private server's directory, when the test made one */
static pid_t stopped[MAX_STOPPED]; /* processes this test SIGSTOPped: resumed at teardown */
static int nstopped;
static struct pg_conn *conns[4]; /* open connections: closed at teardown if a test failed */

static PGconn *raw_connect(const char *url)
{
    PGconn *c = PQconnectdb(url);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "connect %s: %s", url, PQerrorMessage(c));
    return c;
}

static long raw_int(const char *url, const char *sql)
{
    PGconn *c = raw_connect(url);
    PGresult *r = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);
    cr_assert(s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(r));
    long v = s == PGRES_TUPLES_OK && PQntuples(r) > 0 ? atol(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    PQfinish(c);
    return v;
}

/* url with its database name replaced by name. */
static void url_with_db(const char *url, const char *name, char *out, size_t len)
{
    const char *scheme = strstr(url, "://");
    cr_assert_not_null(scheme, "BOXOFFICE_TEST_PG_URL must be a postgresql:// URL, got %s", url);
    const char *query = strchr(scheme + 3, '?');
    const char *slash = strchr(scheme + 3, '/');
    if (slash != NULL && query != NULL && slash > query)
        slash = NULL;
    size_t keep = slash ? (size_t)(slash - url) : (query ? (size_t)(query - url) : strlen(url));
    int n = snprintf(out, len, "%.*s/%s%s", (int)keep, url, name, query ? query : "");
    cr_assert(n > 0 && (size_t)n < len, "URL too long");
}

static void setup(void)
{
    admin_url = getenv("BOXOFFICE_TEST_PG_URL");
    if (admin_url == NULL || admin_url[0] == '\0')
        cr_assert_fail("BOXOFFICE_TEST_PG_URL is not set: these tests need a server. Start one with\n"
                       "  U=$(tests/harness/pg.sh start /tmp/pgt) && BOXOFFICE_TEST_PG_URL=$U <this test>");
    char sql[128];
    snprintf(dbname, sizeof dbname, "bx_pgconn_%ld_%ld", (long)getpid(), (long)(clock_mono_ms() % 1000000));
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", dbname);
    raw_int(admin_url, sql);
    url_with_db(admin_url, dbname, db_url, sizeof db_url);
    raw_int(db_url, "CREATE TABLE t (v int)");
    loop = h2o_evloop_create();
    h2o_timeout_init(loop, &tick_timeout, 50);
    tick_entry.cb = on_tick;
    h2o_timeout_link(loop, &tick_timeout, &tick_entry);
}

static void resume_stopped(void)
{
    for (int i = nstopped - 1; i >= 0; i--)
        kill(stopped[i], SIGCONT);
    nstopped = 0;
}

static void teardown(void)
{
    resume_stopped();
    if (private_dir[0] != '\0') {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "%s/tests/harness/pg.sh stop %s >/dev/null 2>&1; rm -rf %s", BX_SOURCE_ROOT,
                 private_dir, private_dir);
        cr_expect_eq(system(cmd), 0);
    }
    for (size_t i = 0; i < sizeof conns / sizeof conns[0]; i++)
        if (conns[i] != NULL)
            pg_conn_close(conns[i]);
    h2o_timeout_unlink(&tick_entry);
    h2o_timeout_dispose(loop, &tick_timeout);
    h2o_evloop_run(loop, 0); /* frees the sockets closed last */
    h2o_evloop_destroy(loop);
    if (dbname[0] != '\0') {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname);
        raw_int(admin_url, sql);
    }
}

TestSuite(pg_conn, .init = setup, .fini = teardown, .timeout = 60);

/* ---- helpers ----------------------------------------------------------------- */

static struct pg_conn_config config(const char *url, char conn, const char *channel, int64_t wait_ms, size_t max)
{
    return (struct pg_conn_config){
        .conninfo = url,
        .statements = statements,
        .statement_count = N_STMT,
        .listen_channel = channel,
        .reply_wait_ms = wait_ms,
        .max_queued = max,
        .on_notify = on_notify,
        .on_state = on_state,
        .arg = (void *)(intptr_t)conn,
    };
}

/* Queues statement stmt with one text parameter (NULL: none). */
static int query1(struct pg_conn *c, int stmt, const char *param, void *tag)
{
    const char *values[1] = {param};
    return pg_conn_query(c, stmt, param ? 1 : 0, values, NULL, NULL, on_done, tag);
}

static int query_int(struct pg_conn *c, int stmt, long param, void *tag)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", param);
    return query1(c, stmt, buf, tag);
}

static struct pg_conn *conn_open(const struct pg_conn_config *cfg)
{
    struct pg_conn *c = pg_conn_open(loop, cfg);
    cr_assert_not_null(c);
    for (size_t i = 0; i < sizeof conns / sizeof conns[0]; i++)
        if (conns[i] == NULL) {
            conns[i] = c;
            return c;
        }
    cr_assert_fail("too many connections");
    return NULL;
}

static struct pg_conn *open_up(const struct pg_conn_config *cfg, char conn)
{
    struct pg_conn *c = conn_open(cfg);
    int ups = count('u', conn);
    cr_assert(run_until('u', conn, ups + 1, 10000), "connection %c did not come up", conn);
    cr_assert(pg_conn_is_up(c));
    return c;
}

/* Closes c and runs the loop once, so h2o frees the socket it watched. */
static void close_conn(struct pg_conn *c)
{
    for (size_t i = 0; i < sizeof conns / sizeof conns[0]; i++)
        if (conns[i] == c)
            conns[i] = NULL;
    pg_conn_close(c);
    h2o_evloop_run(loop, 0);
}

/* The backend process serving c, asked over c itself. */
static pid_t backend_of(struct pg_conn *c, long tag)
{
    cr_assert_eq(query1(c, Q_BACKEND, NULL, TAG('A', tag)), 0);
    cr_assert(run_until('d', 'A', count('d', 'A') + 1, 5000));
    int i = find('d', 'A', tag);
    cr_assert_geq(i, 0);
    cr_assert_eq(events[i].e, BX_OK);
    return (pid_t)atol(events[i].col[0]);
}

static void stop_process(pid_t pid)
{
    cr_assert_lt(nstopped, MAX_STOPPED);
    cr_assert_eq(kill(pid, SIGSTOP), 0, "SIGSTOP %d", (int)pid);
    stopped[nstopped++] = pid;
}

/* ---- tests ------------------------------------------------------------------- */

Test(pg_conn, many_queries_in_flight_are_answered_in_order)
{
    struct pg_conn_config cfg = config(db_url, 'A', NULL, 10000, 5000);
    struct pg_conn *c = conn_open(&cfg);
    /* queued while connecting, then 1000 more while up: all in one pipeline */
    for (long i = 0; i < 1000; i++)
        cr_assert_eq(query_int(c, Q_ECHO, i, TAG('A', i)), 0);
    cr_assert_eq(pg_conn_pending(c), 1000);
    cr_assert(run_until('u', 'A', 1, 10000));
    for (long i = 1000; i < 2000; i++)
        cr_assert_eq(query_int(c, Q_ECHO, i, TAG('A', i)), 0);
    cr_assert_geq(pg_conn_pending(c), 1000);
    cr_assert(run_until('d', 'A', 2000, 20000), "%d of 2000 answered", count('d', 'A'));
    int seen = 0;
    for (int i = 0; i < nevents; i++) {
        if (events[i].kind != 'd')
            continue;
        cr_assert_eq(events[i].tag, seen, "answer %d is for query %ld", seen, events[i].tag);
        cr_assert_eq(events[i].e, BX_OK);
        cr_assert_eq(atol(events[i].col[0]), seen);
        seen++;
    }
    cr_assert_eq(seen, 2000);
    cr_assert_eq(pg_conn_pending(c), 0);
    close_conn(c);
}

Test(pg_conn, sql_error_fails_only_its_query_and_rolls_it_back)
{
    struct pg_conn_config cfg = config(db_url, 'A', NULL, 10000, 100);
    struct pg_conn *c = open_up(&cfg, 'A');
    cr_assert_eq(query_int(c, Q_INSERT, 1, TAG('A', 0)), 0);
    cr_assert_eq(query_int(c, Q_INSERT_THEN_FAIL, 2, TAG('A', 1)), 0);
    cr_assert_eq(query_int(c, Q_ECHO, 3, TAG('A', 2)), 0);
    cr_assert_eq(query_int(c, Q_DIV, 0, TAG('A', 3)), 0);
    cr_assert_eq(query_int(c, Q_DIV, 5, TAG('A', 4)), 0);
    cr_assert_eq(query1(c, Q_COUNT, NULL, TAG('A', 5)), 0);
    cr_assert(run_until('d', 'A', 6, 10000));

    const struct {
        bx_err e;
        const char *value_or_state;
    } want[6] = {{BX_OK, ""}, {BX_ERR_INTERNAL, "22012"}, {BX_OK, "3"}, {BX_ERR_INTERNAL, "22012"}, {BX_OK, "2"},
                 {BX_OK, "1"}};
    for (int i = 0; i < 6; i++) {
        int k = find('d', 'A', i);
        cr_assert_geq(k, 0);
        cr_assert_eq(events[k].e, want[i].e, "query %d", i);
        cr_assert_str_eq(want[i].e == BX_OK ? events[k].col[0] : events[k].sqlstate, want[i].value_or_state, "query %d",
                         i);
    }
    cr_assert_eq(raw_int(db_url, "SELECT count(*) FROM t WHERE v = 2"), 0, "the failed statement's insert stayed");
    close_conn(c);
}

Test(pg_conn, parameters_null_and_binary_bytea_are_copied_and_round_trip)
{
    struct pg_conn_config cfg = config(db_url, 'A', NULL, 10000, 100);
    struct pg_conn *c = open_up(&cfg, 'A');
    char bytes[5] = {0x00, (char)0xff, 0x41, 0x00, 0x7f};
    char text[32] = "h\xc3\xa9llo 'quoted'";
    const char *values[3] = {NULL, bytes, text};
    const int lengths[3] = {0, 5, 0};
    const int formats[3] = {0, 1, 0};
    cr_assert_eq(pg_conn_query(c, Q_PARAMS, 3, values, lengths, formats, on_done, TAG('A', 0)), 0);
    memset(bytes, 'x', sizeof bytes); /* the caller's buffers die after the call */
    strcpy(text, "overwritten");
    const char *nulls[3] = {"not null", NULL, NULL};
    cr_assert_eq(pg_conn_query(c, Q_PARAMS, 3, nulls, NULL, NULL, on_done, TAG('A', 1)), 0);
    cr_assert(run_until('d', 'A', 2, 10000));

    struct event *a = &events[find('d', 'A', 0)], *b = &events[find('d', 'A', 1)];
    cr_assert_eq(a->e, BX_OK);
    cr_assert_str_eq(a->col[0], "t");
    cr_assert_str_eq(a->col[1], "\\x00ff41007f");
    cr_assert_str_eq(a->col[2], "5");
    cr_assert_str_eq(a->col[3], "h\xc3\xa9llo 'quoted'");
    cr_assert_eq(b->e, BX_OK);
    cr_assert_str_eq(b->col[0], "f");
    cr_assert(b->null[1] && b->null[2] && b->null[3]);
    close_conn(c);
}

Test(pg_conn, notification_from_another_connection_is_delivered)
{
    struct pg_conn_config ca = config(db_url, 'A', "Seat Changes", 10000, 100);
    struct pg_conn_config cb = config(db_url, 'B', NULL, 10000, 100);
    struct pg_conn *a = open_up(&ca, 'A');
    struct pg_conn *b = open_up(&cb, 'B');
    cr_assert_eq(query1(b, Q_NOTIFY, "42", TAG('B', 0)), 0);
    cr_assert(run_until('n', 'A', 1, 5000), "no notification");
    cr_assert_eq(events[find('n', 'A', 42)].kind, 'n');
    cr_assert_eq(count('n', 'B'), 0, "B does not listen");
    close_conn(a);
    close_conn(b);
}

/* A NOTIFY committed before a query is queued on the listening connection is
 * delivered before that query's done: the store's barrier. */
Test(pg_conn, notification_is_delivered_before_the_done_of_a_later_query)
{
    struct pg_conn_config ca = config(db_url, 'A', "Seat Changes", 10000, 100);
    struct pg_conn_config cb = config(db_url, 'B', NULL, 10000, 100);
    struct pg_conn *a = open_up(&ca, 'A');
    struct pg_conn *b = open_up(&cb, 'B');
    for (long i = 0; i < 50; i++) {
        cr_assert_eq(query_int(b, Q_NOTIFY, i, TAG('B', i)), 0);
        cr_assert(run_until('d', 'B', (int)i + 1, 5000));
        cr_assert_eq(query_int(a, Q_ECHO, i, TAG('A', i)), 0);
        cr_assert(run_until('d', 'A', (int)i + 1, 5000));
        int n = find('n', 'A', i), d = find('d', 'A', i);
        cr_assert(n >= 0 && n < d, "round %ld: notification at %d, done at %d", i, n, d);
    }
    cr_assert_eq(count('n', 'A'), 50);
    close_conn(a);
    close_conn(b);
}

/* statement_timeout cannot stop a stopped backend: the deadline does, and the
 * connection comes back on its own (to a new backend) while the old one is
 * still stopped. */
Test(pg_conn, queries_past_their_deadline_fail_unavailable_and_connection_recovers)
{
    struct pg_conn_config cfg = config(db_url, 'A', NULL, 600, 100);
    struct pg_conn *c = open_up(&cfg, 'A');
    pid_t old = backend_of(c, 100);
    stop_process(old);
    int64_t t0 = clock_mono_ms();
    int ticks0 = ticks;
    cr_assert_eq(query_int(c, Q_INSERT, 7, TAG('A', 0)), 0);
    for (long i = 1; i < 6; i++)
        cr_assert_eq(query_int(c, Q_ECHO, i, TAG('A', i)), 0);
    cr_assert(run_until('d', 'A', 7, 5000));
    for (long i = 0; i < 6; i++) {
        struct event *ev = &events[find('d', 'A', i)];
        cr_assert_eq(ev->e, BX_ERR_UNAVAILABLE, "query %ld", i);
        cr_assert(ev->at - t0 >= 600 - 20 && ev->at - t0 <= 600 + SLACK_MS, "query %ld failed after %lld ms", i,
                  (long long)(ev->at - t0));
    }
    int64_t waited = clock_mono_ms() - t0;
    cr_assert_geq(ticks - ticks0, waited / 50 - 3, "the loop stalled: %d ticks in %lld ms", ticks - ticks0,
                  (long long)waited);
    cr_assert_eq(count('D', 'A'), 1);
    cr_assert_not(pg_conn_is_up(c));
    cr_assert_eq(query_int(c, Q_ECHO, 1, TAG('A', 99)), -1, "refused while waiting to retry");

    cr_assert(run_until('u', 'A', 2, 5000), "did not reconnect");
    pid_t now = backend_of(c, 101);
    cr_assert_neq(now, old);
    resume_stopped();
    /* What became of the write in flight when the deadline passed: reported, as
     * the store must treat it as unknown either way. */
    run_for(1000);
    fprintf(stderr, "figure: pg_conn: an insert in flight at its deadline committed after the thaw: %s\n",
            raw_int(db_url, "SELECT count(*) FROM t WHERE v = 7") ? "yes" : "no");
    close_conn(c);
}

/* Every server process stopped: queries fail at their deadline, reconnects get
 * no answer and fail at theirs (queries refused in between), and once the
 * server thaws the same connection comes back by itself. */
Test(pg_conn, frozen_server_fails_queries_then_connection_recovers_after_thaw)
{
    char cmd[512], url[256] = "";
    snprintf(private_dir, sizeof private_dir, "/tmp/bx-pgconn-frozen.%ld", (long)getpid());
    snprintf(cmd, sizeof cmd, "%s/tests/harness/pg.sh start %s 2>/dev/null", BX_SOURCE_ROOT, private_dir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    cr_assert_not_null(fgets(url, sizeof url, p));
    cr_assert_eq(pclose(p), 0, "private server did not start");
    url[strcspn(url, "\n")] = '\0';
    raw_int(url, "CREATE TABLE t (v int)");

    struct pg_conn_config cfg = config(url, 'A', NULL, 800, 100);
    struct pg_conn *c = open_up(&cfg, 'A');
    char pidfile[256];
    snprintf(pidfile, sizeof pidfile, "%s/pgdata/postmaster.pid", private_dir);
    FILE *f = fopen(pidfile, "r");
    cr_assert_not_null(f);
    long postmaster = 0;
    cr_assert_eq(fscanf(f, "%ld", &postmaster), 1);
    fclose(f);
    stop_process((pid_t)postmaster); /* first: it forks no new backend meanwhile */
    DIR *d = opendir("/proc");
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        char path[64], line[512];
        long pid = atol(e->d_name), ppid = 0;
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        FILE *s = pid > 0 ? fopen(path, "r") : NULL;
        if (s != NULL && fgets(line, sizeof line, s) != NULL && strrchr(line, ')') != NULL &&
            sscanf(strrchr(line, ')') + 2, "%*c %ld", &ppid) == 1 && ppid == postmaster)
            stop_process((pid_t)pid);
        if (s != NULL)
            fclose(s);
    }
    closedir(d);
    cr_assert_geq(nstopped, 3, "postmaster and its children");

    int64_t t0 = clock_mono_ms();
    for (long i = 0; i < 3; i++)
        cr_assert_eq(query_int(c, Q_ECHO, i, TAG('A', i)), 0);
    cr_assert(run_until('d', 'A', 3, 3000));
    for (long i = 0; i < 3; i++) {
        struct event *ev = &events[find('d', 'A', i)];
        cr_assert_eq(ev->e, BX_ERR_UNAVAILABLE);
        cr_assert(ev->at - t0 <= 800 + SLACK_MS, "failed after %lld ms", (long long)(ev->at - t0));
    }
    cr_assert_eq(count('D', 'A'), 1);

    /* While frozen: refused during each backoff, queued during each reconnect
     * attempt and failed when that attempt's time is up. */
    int refused = 0, queued = 0, ticks0 = ticks;
    int64_t t1 = clock_mono_ms(), queued_at = 0;
    while (clock_mono_ms() - t1 < 4000) {
        if (count('d', 'A') == 3 + queued) {
            if (query_int(c, Q_ECHO, 10 + queued, TAG('A', 10 + queued)) == 0) {
                queued++;
                queued_at = clock_mono_ms();
            } else {
                refused++;
            }
        }
        h2o_evloop_run(loop, 10);
        cr_assert(queued_at == 0 || count('d', 'A') == 3 + queued || clock_mono_ms() - queued_at <= 800 + SLACK_MS,
                  "a query queued while reconnecting waited past its deadline");
    }
    cr_assert_gt(refused, 0);
    cr_assert_geq(queued, 2, "reconnects are retried");
    for (int i = 0; i < nevents; i++)
        cr_assert(events[i].kind != 'd' || events[i].e == BX_ERR_UNAVAILABLE);
    cr_assert_geq(ticks - ticks0, 4000 / 50 - 5, "the loop stalled");
    cr_assert_eq(count('u', 'A'), 1, "came up while frozen");

    resume_stopped();
    int64_t thawed = clock_mono_ms();
    cr_assert(run_until('u', 'A', 2, 10000), "did not recover after the thaw");
    fprintf(stderr,
            "figure: pg_conn: frozen 4 s: %d queries refused, %d reconnects failed; up %lld ms after the thaw\n",
            refused, queued, (long long)(clock_mono_ms() - thawed));
    int done = count('d', 'A');
    cr_assert_eq(query_int(c, Q_ECHO, 77, TAG('A', 77)), 0);
    cr_assert(run_until('d', 'A', done + 1, 5000));
    cr_assert_eq(events[find('d', 'A', 77)].e, BX_OK);
    close_conn(c);
}

Test(pg_conn, terminated_backend_fails_in_flight_queries_and_connection_recovers)
{
    struct pg_conn_config cfg = config(db_url, 'A', NULL, 10000, 100);
    struct pg_conn *c = open_up(&cfg, 'A');
    pid_t first = backend_of(c, 100);
    cr_assert_eq(query1(c, Q_SLEEP, "3", TAG('A', 0)), 0);
    cr_assert_eq(query_int(c, Q_ECHO, 1, TAG('A', 1)), 0);
    run_for(200); /* the sleep is running */
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)", (int)first);
    int64_t t0 = clock_mono_ms();
    raw_int(admin_url, sql);
    cr_assert(run_until('d', 'A', 3, 3000));
    cr_assert_eq(events[find('d', 'A', 0)].e, BX_ERR_UNAVAILABLE, "a lost connection is not an SQL error");
    cr_assert_eq(events[find('d', 'A', 1)].e, BX_ERR_UNAVAILABLE);
    cr_assert_lt(clock_mono_ms() - t0, 1000, "failed at once, not at the deadline");
    cr_assert_eq(count('D', 'A'), 1);

    cr_assert(run_until('u', 'A', 2, 5000));
    pid_t second = backend_of(c, 101);
    cr_assert_neq(second, first);
    /* killed while idle: noticed, and back again */
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)", (int)second);
    raw_int(admin_url, sql);
    cr_assert(run_until('D', 'A', 2, 3000));
    cr_assert(run_until('u', 'A', 3, 5000));
    cr_assert_neq(backend_of(c, 102), second);
    close_conn(c);
}

Test(pg_conn, queries_past_max_queued_are_refused_without_done)
{
    struct pg_conn_config cfg = config(db_url, 'A', NULL, 10000, 3);
    struct pg_conn *c = open_up(&cfg, 'A');
    for (long i = 0; i < 3; i++)
        cr_assert_eq(query_int(c, Q_ECHO, i, TAG('A', i)), 0);
    cr_assert_eq(query_int(c, Q_ECHO, 3, TAG('A', 3)), -1);
    cr_assert_eq(pg_conn_pending(c), 3);
    cr_assert(run_until('d', 'A', 3, 5000));
    run_for(100);
    cr_assert_eq(count('d', 'A'), 3);
    cr_assert_eq(find('d', 'A', 3), -1, "the refused query got a done");
    cr_assert_eq(query_int(c, Q_ECHO, 4, TAG('A', 4)), 0, "room again once answered");
    cr_assert(run_until('d', 'A', 4, 5000));
    close_conn(c);
}

Test(pg_conn, close_with_queries_in_flight_calls_every_done)
{
    struct pg_conn_config cfg = config(db_url, 'A', NULL, 10000, 100);
    struct pg_conn *c = open_up(&cfg, 'A');
    for (long i = 0; i < 5; i++)
        cr_assert_eq(query1(c, Q_SLEEP, "0.2", TAG('A', i)), 0);
    for (long i = 5; i < 10; i++)
        cr_assert_eq(query_int(c, Q_ECHO, i, TAG('A', i)), 0);
    run_for(50); /* sent, not answered */
    cr_assert_eq(count('d', 'A'), 0);
    close_conn(c);
    cr_assert_eq(count('d', 'A'), 10);
    for (int i = 0; i < nevents; i++)
        cr_assert(events[i].kind != 'd' || events[i].e == BX_ERR_UNAVAILABLE);

    /* and while still connecting */
    struct pg_conn *d = conn_open(&cfg);
    for (long i = 20; i < 23; i++)
        cr_assert_eq(query_int(d, Q_ECHO, i, TAG('A', i)), 0);
    close_conn(d);
    cr_assert_eq(count('d', 'A'), 13);
    cr_assert_eq(count('D', 'A'), 0, "closing is not a loss");
}

Test(pg_conn, queries_are_refused_while_waiting_to_retry)
{
    struct pg_conn_config cfg = config("postgresql://postgres@127.0.0.1:1/postgres", 'A', NULL, 2000, 100);
    struct pg_conn *c = conn_open(&cfg);
    /* accepted while an attempt is under way (and failed with it), refused once
     * it has failed */
    int64_t end = clock_mono_ms() + 2000;
    int rc, accepted = 0;
    while ((rc = query_int(c, Q_ECHO, accepted, TAG('A', accepted))) == 0 && clock_mono_ms() < end)
        cr_assert(run_until('d', 'A', ++accepted, 3000));
    cr_assert_eq(rc, -1, "never refused");
    cr_assert_not(pg_conn_is_up(c));
    cr_assert_eq(count('d', 'A'), accepted, "a refused query got a done");
    for (int i = 0; i < nevents; i++)
        cr_assert(events[i].kind != 'd' || events[i].e == BX_ERR_UNAVAILABLE);
    cr_assert_eq(count('D', 'A'), 0, "never up, so never lost");
    close_conn(c);
}

Test(pg_conn, second_address_is_used_when_the_first_refuses)
{
    /* libpq replaces its socket for the next host: the loop must follow it */
    char url[512];
    const char *port = strrchr(admin_url, ':');
    cr_assert_not_null(port);
    snprintf(url, sizeof url, "postgresql://postgres@127.0.0.1:1,127.0.0.1:%d/%s", atoi(port + 1), dbname);
    struct pg_conn_config cfg = config(url, 'A', NULL, 5000, 100);
    struct pg_conn *c = open_up(&cfg, 'A');
    cr_assert_eq(query_int(c, Q_ECHO, 5, TAG('A', 0)), 0);
    cr_assert(run_until('d', 'A', 1, 5000));
    cr_assert_eq(events[find('d', 'A', 0)].e, BX_OK);
    close_conn(c);
}

static struct pg_conn *chain_conn;
static int chain_depth, chain_max_depth, chain_left;

static void on_chain_done(void *arg, bx_err e, const PGresult *res)
{
    chain_depth++;
    chain_max_depth = chain_depth > chain_max_depth ? chain_depth : chain_max_depth;
    on_done(arg, e, res);
    if (--chain_left > 0) {
        const char *v[1] = {"1"};
        cr_assert_eq(pg_conn_query(chain_conn, Q_ECHO, 1, v, NULL, NULL, on_chain_done, TAG('A', chain_left)), 0);
    }
    chain_depth--;
}

static void on_state_start_chain(void *arg, bool up)
{
    on_state(arg, up);
    const char *v[1] = {"1"};
    if (up)
        cr_assert_eq(pg_conn_query(chain_conn, Q_ECHO, 1, v, NULL, NULL, on_chain_done, TAG('A', chain_left)), 0);
}

Test(pg_conn, callbacks_may_queue_more_queries_without_recursing)
{
    struct pg_conn_config cfg = config(db_url, 'A', NULL, 10000, 100);
    cfg.on_state = on_state_start_chain;
    chain_left = 200;
    chain_conn = conn_open(&cfg);
    cr_assert(run_until('d', 'A', 200, 10000), "%d of 200", count('d', 'A'));
    cr_assert_eq(chain_max_depth, 1, "a done ran inside another");
    for (int i = 0; i < nevents; i++)
        cr_assert(events[i].kind != 'd' || events[i].e == BX_OK);
    close_conn(chain_conn);
}

Test(pg_conn, large_result_is_read_whole_and_the_next_follows)
{
    struct pg_conn_config cfg = config(db_url, 'A', NULL, 10000, 100);
    struct pg_conn *c = open_up(&cfg, 'A');
    cr_assert_eq(query_int(c, Q_SERIES, 200000, TAG('A', 0)), 0);
    cr_assert_eq(query_int(c, Q_ECHO, 9, TAG('A', 1)), 0);
    cr_assert(run_until('d', 'A', 2, 10000));
    cr_assert_eq(events[find('d', 'A', 0)].rows, 200000);
    cr_assert_str_eq(events[find('d', 'A', 1)].col[0], "9");
    close_conn(c);
}

Test(pg_conn, a_statement_that_does_not_prepare_keeps_the_connection_down)
{
    static const struct pg_statement bad[] = {{"ok", "SELECT 1"}, {"bad", "SELEC 1"}};
    struct pg_conn_config cfg = config(db_url, 'A', NULL, 1000, 100);
    cfg.statements = bad;
    cfg.statement_count = 2;
    struct pg_conn *c = conn_open(&cfg);
    cr_assert_eq(pg_conn_query(c, 0, 0, NULL, NULL, NULL, on_done, TAG('A', 0)), 0);
    cr_assert(run_until('d', 'A', 1, 3000));
    cr_assert_eq(events[find('d', 'A', 0)].e, BX_ERR_UNAVAILABLE);
    run_for(1500);
    cr_assert_eq(count('u', 'A'), 0);
    close_conn(c);
}
