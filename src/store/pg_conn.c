/* pg_conn.c — one asynchronous PostgreSQL connection on an h2o event loop (see
 * pg_conn.h for the contract). libpq runs in non-blocking pipeline mode; its
 * socket is watched by the loop; nothing here ever waits on the network. No SQL
 * of its own beyond the configured prepared statements and LISTEN.
 *
 * Life of a connection: CONNECTING (PQconnectPoll driven by the socket) ->
 * SETUP (prepares and LISTEN sent with one sync point; queries queued meanwhile
 * are pipelined right behind them) -> UP when that sync point comes back ->
 * BACKOFF when it breaks, a deadline passes or setup fails: every query fails,
 * pg_conn_query refuses, and a new connection is started a second later.
 *
 * Queries live in two FIFO lists: `waiting` (not yet handed to libpq) and
 * `pipeline` (sent, in the order their results will come back). Records are
 * recycled through `spare`, each keeping its parameter buffer, so a steady load
 * allocates nothing. */
#define _GNU_SOURCE
#include "store/pg_conn.h"

#include <assert.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/log.h"

#define RETRY_AFTER_MS 1000
/* As store_pg.c: sent in the startup packet, so every reconnect has them. */
#define SESSION_OPTIONS "-c statement_timeout=5000 -c client_min_messages=warning"
#define MAX_KEYS 10 /* build_params: 6 defaults, dbname, options, the terminator */

enum conn_state { ST_CONNECTING, ST_SETUP, ST_UP, ST_BACKOFF, ST_CLOSING };

struct pg_query {
    h2o_linklist_t link;          /* in waiting, pipeline or spare */
    h2o_timeout_entry_t deadline; /* linked from queueing until answered */
    struct pg_conn *conn;
    pg_done_fn done;
    void *arg;
    PGresult *res; /* the statement's result, held until its sync point arrives */
    int stmt, n;
    /* The parameters, copied into params (n value pointers, n lengths, n
     * formats, then the bytes), which the record keeps when recycled. */
    const char *const *values;
    const int *lengths, *formats;
    char *params;
    size_t params_cap;
};

/* Owned by the caller of pg_conn_open; everything below is owned by it. */
struct pg_conn {
    h2o_evloop_t *loop;
    const struct pg_conn_config *cfg;
    PGconn *pg;         /* NULL in BACKOFF */
    h2o_socket_t *sock; /* watches a dup of PQsocket (see watch_socket) */
    enum conn_state state;
    bool quiet;      /* a failure was logged: no more until up again */
    int dispatching; /* depth of caller callbacks running */
    h2o_linklist_t waiting, pipeline, spare;
    size_t queued; /* waiting + pipeline */
    h2o_timeout_t wait_timeout, retry_timeout, zero_timeout;
    h2o_timeout_entry_t connect_deadline, retry, kick;
    const char *keys[MAX_KEYS], *vals[MAX_KEYS];
    char *options;
};

static int flush(struct pg_conn *c);

/* ---- caller callbacks: counted, so pg_conn_close can refuse to run inside one */

static void call_state(struct pg_conn *c, bool up)
{
    if (c->cfg->on_state == NULL)
        return;
    c->dispatching++;
    c->cfg->on_state(c->cfg->arg, up);
    c->dispatching--;
}

/* Every notification libpq has parsed so far; called before any done, so none
 * is delivered after the done of a query whose result followed it. */
static void deliver_notifies(struct pg_conn *c)
{
    PGnotify *n;
    while ((n = PQnotifies(c->pg)) != NULL) {
        if (c->cfg->on_notify != NULL) {
            c->dispatching++;
            c->cfg->on_notify(c->cfg->arg, n->extra);
            c->dispatching--;
        }
        PQfreemem(n);
    }
}

/* Unlinks q, recycles it, then runs its done (which may queue again and so
 * reuse the record) and frees the result. */
static void answer(struct pg_conn *c, struct pg_query *q, bx_err e)
{
    PGresult *res = q->res;
    pg_done_fn done = q->done;
    void *arg = q->arg;
    h2o_timeout_unlink(&q->deadline);
    h2o_linklist_unlink(&q->link);
    h2o_linklist_insert(&c->spare, &q->link);
    c->queued--;
    q->res = NULL;
    c->dispatching++;
    done(arg, e, e == BX_ERR_UNAVAILABLE ? NULL : res);
    c->dispatching--;
    PQclear(res);
}

static struct pg_query *first_of(h2o_linklist_t *list)
{
    return H2O_STRUCT_FROM_MEMBER(struct pg_query, link, list->next);
}

/* Oldest first; refusing new queries (state BACKOFF or CLOSING) keeps dones
 * from adding to the lists while they drain. */
static void fail_all(struct pg_conn *c)
{
    while (!h2o_linklist_is_empty(&c->pipeline))
        answer(c, first_of(&c->pipeline), BX_ERR_UNAVAILABLE);
    while (!h2o_linklist_is_empty(&c->waiting))
        answer(c, first_of(&c->waiting), BX_ERR_UNAVAILABLE);
}

/* ---- the socket ------------------------------------------------------------ */

/* The loop watches a dup of libpq's fd, never the fd itself: libpq closes its fd
 * on its own when it sees the connection break, and may replace it while
 * connecting (next address, SSL retry), while h2o deregisters and closes
 * whatever it watches. With a dup each side closes only its own descriptor. */
static int watch_socket(struct pg_conn *c)
{
    int fd = fcntl(PQsocket(c->pg), F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    c->sock = h2o_evloop_socket_create(c->loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    c->sock->data = c;
    return 0;
}

static void unwatch_socket(struct pg_conn *c)
{
    if (c->sock != NULL)
        h2o_socket_close(c->sock);
    c->sock = NULL;
}

/* Whether the watched dup still refers to libpq's current socket: a replaced
 * socket may well get the old number back, so compare the sockets, not numbers. */
static bool watching_current_socket(struct pg_conn *c)
{
    struct stat a, b;
    return fstat(PQsocket(c->pg), &a) == 0 && fstat(h2o_socket_get_fd(c->sock), &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

/* ---- failure and retry ----------------------------------------------------- */

static void drop_connection(struct pg_conn *c)
{
    unwatch_socket(c);
    PQfinish(c->pg);
    c->pg = NULL;
    h2o_timeout_unlink(&c->connect_deadline);
    h2o_timeout_unlink(&c->kick);
}

/* libpq's messages run over several lines; the first says what happened. */
static int first_line_len(const char *s)
{
    int len = (int)strcspn(s, "\n");
    while (len > 0 && s[len - 1] == ' ')
        len--;
    return len;
}

/* Logs why (once per outage), drops the connection, schedules the next attempt,
 * then tells the caller: on_state(false) if it was up, and every query fails. */
static void conn_fail(struct pg_conn *c, const char *why)
{
    bool was_up = c->state == ST_UP;
    int len = first_line_len(why);
    if (was_up)
        log_warn("PostgreSQL connection lost: %.*s", len, why);
    else if (!c->quiet)
        log_warn("cannot connect to PostgreSQL: %.*s (retrying every second)", len, why);
    c->quiet = true;
    if (c->pg != NULL) /* why may point into it: freed only now */
        drop_connection(c);
    c->state = ST_BACKOFF;
    h2o_timeout_link(c->loop, &c->retry_timeout, &c->retry);
    if (was_up)
        call_state(c, false);
    fail_all(c);
}

static void on_connect_deadline(h2o_timeout_entry_t *e)
{
    struct pg_conn *c = H2O_STRUCT_FROM_MEMBER(struct pg_conn, connect_deadline, e);
    char why[96];
    snprintf(why, sizeof why, "no answer within %lld ms while connecting", (long long)c->cfg->reply_wait_ms);
    conn_fail(c, why);
}

/* Deadlines are all reply_wait_ms and answers come in order, so the query whose
 * deadline passes is the oldest one unanswered: the server is not answering. */
static void on_query_deadline(h2o_timeout_entry_t *e)
{
    struct pg_query *q = H2O_STRUCT_FROM_MEMBER(struct pg_query, deadline, e);
    char why[96];
    snprintf(why, sizeof why, "no reply within %lld ms", (long long)q->conn->cfg->reply_wait_ms);
    conn_fail(q->conn, why);
}

/* ---- sending --------------------------------------------------------------- */

/* Hands every waiting query to libpq, each followed by its sync point. -1 when
 * the connection failed. */
static int send_waiting(struct pg_conn *c)
{
    while (!h2o_linklist_is_empty(&c->waiting)) {
        struct pg_query *q = first_of(&c->waiting);
        if (!PQsendQueryPrepared(c->pg, c->cfg->statements[q->stmt].name, q->n, q->values, q->lengths, q->formats, 0) ||
            !PQpipelineSync(c->pg)) {
            conn_fail(c, PQerrorMessage(c->pg));
            return -1;
        }
        h2o_linklist_unlink(&q->link);
        h2o_linklist_insert(&c->pipeline, &q->link);
    }
    return 0;
}

/* ---- receiving ------------------------------------------------------------- */

static void become_up(struct pg_conn *c)
{
    c->state = ST_UP;
    h2o_timeout_unlink(&c->connect_deadline);
    if (c->quiet)
        log_info("PostgreSQL connection up");
    c->quiet = false;
    call_state(c, true);
}

/* A result of the setup (prepares, LISTEN, their sync point). Any error is a
 * wrong statement or channel in the configuration: fail, retry later. */
static int on_setup_result(struct pg_conn *c, PGresult *r)
{
    ExecStatusType s = PQresultStatus(r);
    if (s == PGRES_FATAL_ERROR) {
        conn_fail(c, PQresultErrorMessage(r));
        PQclear(r);
        return -1;
    }
    PQclear(r);
    if (s == PGRES_PIPELINE_SYNC)
        become_up(c);
    return 0;
}

/* A query's result is held until its sync point: notifications parsed before
 * that are delivered first (the server sends them ahead of ReadyForQuery). */
static int on_result(struct pg_conn *c, PGresult *r)
{
    if (c->state == ST_SETUP)
        return on_setup_result(c, r);
    struct pg_query *q = first_of(&c->pipeline);
    if (PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
        if (q->res == NULL)
            q->res = r;
        else
            PQclear(r);
        return 0;
    }
    PQclear(r);
    deliver_notifies(c);
    ExecStatusType s = PQresultStatus(q->res);
    answer(c, q, s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK ? BX_OK : BX_ERR_INTERNAL);
    return 0;
}

static bool awaiting(struct pg_conn *c)
{
    return c->state == ST_SETUP || !h2o_linklist_is_empty(&c->pipeline);
}

/* Hands every complete result to its owner, in order. libpq's PQgetResult gives
 * each statement's results, then NULL, then the sync point; when nothing is in
 * the pipeline it gives NULL forever, hence `awaiting` and the two-NULL guard.
 * -1 when the connection failed. */
static int read_results(struct pg_conn *c)
{
    bool after_null = false;
    while (awaiting(c) && !PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (r == NULL) {
            if (PQstatus(c->pg) == CONNECTION_BAD || after_null) {
                conn_fail(c, after_null ? "results out of step with the pipeline" : PQerrorMessage(c->pg));
                return -1;
            }
            after_null = true;
            continue;
        }
        after_null = false;
        if (on_result(c, r) != 0)
            return -1;
    }
    deliver_notifies(c);
    return 0;
}

static void on_writable(h2o_socket_t *sock, const char *err)
{
    struct pg_conn *c = sock->data;
    if (err != NULL)
        conn_fail(c, err);
    else if (flush(c) == 0) /* flushing may have read input */
        read_results(c);
}

/* Flushes what libpq holds; when the socket is full, asks to be told when it
 * can take more. -1 when the connection failed. */
static int flush(struct pg_conn *c)
{
    int r = PQflush(c->pg);
    if (r < 0) {
        conn_fail(c, PQerrorMessage(c->pg));
        return -1;
    }
    if (r > 0 && !h2o_socket_is_writing(c->sock))
        h2o_socket_notify_write(c->sock, on_writable);
    return 0;
}

static void on_readable(h2o_socket_t *sock, const char *err)
{
    struct pg_conn *c = sock->data;
    if (err != NULL) {
        conn_fail(c, err);
        return;
    }
    /* Results already read are handed out even when the read hit EOF. */
    int ok = PQconsumeInput(c->pg);
    if (read_results(c) == 0 && !ok)
        conn_fail(c, PQerrorMessage(c->pg));
}

/* Queries queued by pg_conn_query go out here, on the loop's next turn of
 * timers: never from inside pg_conn_query, and many in one batch. */
static void on_kick(h2o_timeout_entry_t *e)
{
    struct pg_conn *c = H2O_STRUCT_FROM_MEMBER(struct pg_conn, kick, e);
    if (send_waiting(c) == 0 && flush(c) == 0)
        read_results(c);
}

/* ---- connecting ------------------------------------------------------------ */

static void on_notice(void *arg, const char *message)
{
    (void)arg;
    log_warn("PostgreSQL: %.*s", first_line_len(message), message);
}

/* Prepares every statement and LISTENs, behind one sync point. */
static int send_setup(struct pg_conn *c)
{
    const struct pg_conn_config *cfg = c->cfg;
    for (size_t i = 0; i < cfg->statement_count; i++)
        if (!PQsendPrepare(c->pg, cfg->statements[i].name, cfg->statements[i].sql, 0, NULL))
            return -1;
    if (cfg->listen_channel != NULL) {
        char *id = PQescapeIdentifier(c->pg, cfg->listen_channel, strlen(cfg->listen_channel));
        char *sql = NULL;
        int ok = id != NULL && asprintf(&sql, "LISTEN %s", id) > 0 &&
                 PQsendQueryParams(c->pg, sql, 0, NULL, NULL, NULL, NULL, 0);
        PQfreemem(id);
        free(sql);
        if (!ok)
            return -1;
    }
    return PQpipelineSync(c->pg) ? 0 : -1;
}

static void start_session(struct pg_conn *c)
{
    if (PQsetnonblocking(c->pg, 1) != 0 || !PQenterPipelineMode(c->pg) || send_setup(c) != 0) {
        conn_fail(c, PQerrorMessage(c->pg));
        return;
    }
    c->state = ST_SETUP;
    h2o_socket_read_start(c->sock, on_readable);
    if (send_waiting(c) == 0 && flush(c) == 0)
        read_results(c);
}

/* One step of PQconnectPoll, run whenever the socket is ready the way the last
 * step asked for (writable first, as libpq documents). */
static void on_connect_io(h2o_socket_t *sock, const char *err)
{
    struct pg_conn *c = sock->data;
    (void)err; /* PQconnectPoll finds a socket error itself */
    PostgresPollingStatusType s = PQconnectPoll(c->pg);
    if (s == PGRES_POLLING_FAILED) {
        conn_fail(c, PQerrorMessage(c->pg));
        return;
    }
    if (!watching_current_socket(c)) {
        unwatch_socket(c);
        if (watch_socket(c) != 0) {
            conn_fail(c, "cannot duplicate the connection's socket");
            return;
        }
    }
    if (s == PGRES_POLLING_OK) {
        start_session(c);
    } else if (s == PGRES_POLLING_READING) {
        h2o_socket_read_start(c->sock, on_connect_io);
    } else {
        h2o_socket_read_stop(c->sock);
        h2o_socket_notify_write(c->sock, on_connect_io);
    }
}

static void start_connect(struct pg_conn *c)
{
    c->pg = PQconnectStartParams(c->keys, c->vals, 1);
    if (c->pg == NULL) {
        conn_fail(c, "out of memory");
        return;
    }
    PQsetNoticeProcessor(c->pg, on_notice, NULL);
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_fail(c, PQerrorMessage(c->pg));
        return;
    }
    if (watch_socket(c) != 0) {
        conn_fail(c, "cannot duplicate the connection's socket");
        return;
    }
    c->state = ST_CONNECTING;
    h2o_timeout_link(c->loop, &c->wait_timeout, &c->connect_deadline);
    h2o_socket_notify_write(c->sock, on_connect_io);
}

static void on_retry(h2o_timeout_entry_t *e)
{
    start_connect(H2O_STRUCT_FROM_MEMBER(struct pg_conn, retry, e));
}

/* keys/vals for PQconnectStartParams, as store_pg_open builds them: defaults,
 * then the conninfo (expanded; overrides them), then our session options
 * followed by the conninfo's own (so its -c settings win). No connect_timeout:
 * libpq applies it only to blocking connects; reply_wait_ms bounds ours. -1
 * when the conninfo is malformed or memory is short. */
static int build_params(struct pg_conn *c)
{
    static const char *const defaults[][2] = {
        {"keepalives", "1"},       {"keepalives_idle", "30"},         {"keepalives_interval", "10"},
        {"keepalives_count", "3"}, {"application_name", "boxoffice"}, {"client_encoding", "UTF8"},
    };
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(c->cfg->conninfo, &perr);
    if (opts == NULL) {
        log_error("bad PostgreSQL conninfo: %s", perr != NULL ? perr : "out of memory");
        PQfreemem(perr);
        return -1;
    }
    const char *user = "";
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (strcmp(o->keyword, "options") == 0 && o->val != NULL)
            user = o->val;
    int ok = asprintf(&c->options, "%s %s", SESSION_OPTIONS, user) > 0;
    PQconninfoFree(opts);
    if (!ok) {
        c->options = NULL;
        return -1;
    }
    size_t n = 0;
    for (; n < sizeof defaults / sizeof defaults[0]; n++) {
        c->keys[n] = defaults[n][0];
        c->vals[n] = defaults[n][1];
    }
    c->keys[n] = "dbname";
    c->vals[n++] = c->cfg->conninfo;
    c->keys[n] = "options";
    c->vals[n++] = c->options;
    c->keys[n] = c->vals[n] = NULL;
    return 0;
}

/* ---- the interface --------------------------------------------------------- */

struct pg_conn *pg_conn_open(h2o_evloop_t *loop, const struct pg_conn_config *cfg)
{
    struct pg_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->loop = loop;
    c->cfg = cfg;
    if (build_params(c) != 0) {
        free(c);
        return NULL;
    }
    h2o_linklist_init_anchor(&c->waiting);
    h2o_linklist_init_anchor(&c->pipeline);
    h2o_linklist_init_anchor(&c->spare);
    h2o_timeout_init(loop, &c->wait_timeout, (uint64_t)cfg->reply_wait_ms);
    h2o_timeout_init(loop, &c->retry_timeout, RETRY_AFTER_MS);
    h2o_timeout_init(loop, &c->zero_timeout, 0);
    c->connect_deadline.cb = on_connect_deadline;
    c->retry.cb = on_retry;
    c->kick.cb = on_kick;
    start_connect(c);
    return c;
}

void pg_conn_close(struct pg_conn *c)
{
    assert(c->dispatching == 0 && "pg_conn_close called from one of the connection's callbacks");
    c->state = ST_CLOSING;
    if (c->pg != NULL)
        drop_connection(c);
    h2o_timeout_unlink(&c->retry);
    fail_all(c);
    for (h2o_linklist_t *node = c->spare.next, *next; node != &c->spare; node = next) {
        struct pg_query *q = H2O_STRUCT_FROM_MEMBER(struct pg_query, link, node);
        next = node->next;
        free(q->params);
        free(q);
    }
    h2o_timeout_dispose(c->loop, &c->wait_timeout);
    h2o_timeout_dispose(c->loop, &c->retry_timeout);
    h2o_timeout_dispose(c->loop, &c->zero_timeout);
    free(c->options);
    free(c);
}

/* Copies n parameters into q->params, growing it only when a query needs more
 * than the record ever held. */
static int copy_params(struct pg_query *q, int n, const char *const *values, const int *lengths, const int *formats)
{
    q->n = n;
    q->values = NULL;
    q->lengths = q->formats = NULL;
    if (n == 0)
        return 0;
    size_t need = (size_t)n * (sizeof(char *) + 2 * sizeof(int));
    for (int i = 0; i < n; i++) {
        bool binary = formats != NULL && formats[i] != 0;
        if (binary && (lengths == NULL || lengths[i] < 0))
            return -1;
        if (values[i] != NULL)
            need += binary ? (size_t)lengths[i] : strlen(values[i]) + 1;
    }
    if (q->params == NULL || need > q->params_cap) {
        char *p = realloc(q->params, need);
        if (p == NULL)
            return -1;
        q->params = p;
        q->params_cap = need;
    }
    char **v = (char **)(void *)q->params;
    int *len = (int *)(void *)(q->params + (size_t)n * sizeof(char *));
    int *fmt = len + n;
    char *bytes = (char *)(fmt + n);
    for (int i = 0; i < n; i++) {
        fmt[i] = formats != NULL && formats[i] != 0;
        v[i] = NULL;
        len[i] = 0;
        if (values[i] == NULL)
            continue;
        len[i] = fmt[i] ? lengths[i] : (int)strlen(values[i]);
        size_t size = (size_t)len[i] + (fmt[i] ? 0 : 1); /* text keeps its NUL */
        v[i] = memcpy(bytes, values[i], size);
        bytes += size;
    }
    q->values = (const char *const *)v;
    q->lengths = len;
    q->formats = fmt;
    return 0;
}

static struct pg_query *take_record(struct pg_conn *c)
{
    if (h2o_linklist_is_empty(&c->spare))
        return calloc(1, sizeof(struct pg_query));
    struct pg_query *q = first_of(&c->spare);
    h2o_linklist_unlink(&q->link);
    return q;
}

int pg_conn_query(struct pg_conn *c, int stmt, int n, const char *const *values, const int *lengths, const int *formats,
                  pg_done_fn done, void *arg)
{
    if (c->state == ST_BACKOFF || c->state == ST_CLOSING || c->queued >= c->cfg->max_queued || stmt < 0 ||
        (size_t)stmt >= c->cfg->statement_count || n < 0)
        return -1;
    struct pg_query *q = take_record(c);
    if (q == NULL)
        return -1;
    if (copy_params(q, n, values, lengths, formats) != 0) {
        h2o_linklist_insert(&c->spare, &q->link);
        return -1;
    }
    q->conn = c;
    q->stmt = stmt;
    q->done = done;
    q->arg = arg;
    q->deadline.cb = on_query_deadline;
    h2o_linklist_insert(&c->waiting, &q->link);
    c->queued++;
    h2o_timeout_link(c->loop, &c->wait_timeout, &q->deadline);
    if (c->state != ST_CONNECTING && !h2o_timeout_is_linked(&c->kick))
        h2o_timeout_link(c->loop, &c->zero_timeout, &c->kick);
    return 0;
}

bool pg_conn_is_up(const struct pg_conn *c)
{
    return c->state == ST_UP;
}

size_t pg_conn_pending(const struct pg_conn *c)
{
    return c->queued;
}
