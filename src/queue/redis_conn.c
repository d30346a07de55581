/* redis_conn.c — see redis_conn.h. First the adapter between hiredis and h2o's
 * evloop: hiredis says when it wants to read or write, h2o watches the descriptor
 * (H2O_SOCKET_FLAG_DONT_READ: h2o only tells, hiredis reads). The descriptor is
 * hiredis', so h2o's socket is only a watch on it: it is exported (detached)
 * when the connection goes, never closed by h2o. Then the connection's life:
 * connect, set-up, commands with deadlines, loss and reconnection. */
#include "queue/redis_conn.h"
#include "util/log.h"

#include <hiredis/async.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum conn_state { DOWN, CONNECTING, UP };

/* One command in flight. hiredis holds it as the callback's privdata and calls
 * on_reply exactly once, with the reply, or with NULL when the context is freed:
 * that call frees it. conn is NULL once done has run early (the connection was
 * dropped): the late call then only frees. */
struct cmd {
    h2o_timeout_entry_t deadline;
    struct redis_conn *conn;
    struct cmd *next; /* in the connection's FIFO */
    redis_done_fn done;
    void *arg;
    bool raw_errors; /* done sees error replies as INTERNAL, unlogged (a library load) */
    /* FCALL only: its own copy of the command, slots 0 and 1 filled when sent
     * (FCALL name), for a second sending after the library was loaded again. */
    const struct redis_function *fn;
    bool reloaded;
    int argc;
    const char **argv;
    size_t *argvlen;
};

/* Owned by the loop thread that opened it. */
struct redis_conn {
    h2o_evloop_t *loop;
    const struct redis_conn_config *cfg;
    redisAsyncContext *ac; /* NULL while DOWN */
    h2o_socket_t *sock;    /* the loop's watch on ac's descriptor */
    bool write_armed;      /* h2o_socket_notify_write is pending */
    bool want_write;       /* hiredis has output to send */
    enum conn_state state;
    bool accepting; /* while CONNECTING: queue commands (the last connection worked) */
    bool closing;
    struct cmd *head, *tail;
    size_t pending;
    h2o_timeout_t deadline_timeout, retry_timeout;
    h2o_timeout_entry_t retry_entry;
    struct redis_conn_counters counters;
};

static void conn_connect(struct redis_conn *c, bool accepting);

/* ---- the adapter: hiredis' event hooks on h2o's evloop ---- */

/* With DONT_READ, h2o reads nothing: err is always NULL; hiredis finds the errors. */
static void on_readable(h2o_socket_t *sock, const char *err)
{
    (void)err;
    struct redis_conn *c = sock->data;
    redisAsyncHandleRead(c->ac);
}

static void on_writable(h2o_socket_t *sock, const char *err)
{
    (void)err;
    struct redis_conn *c = sock->data;
    c->write_armed = false;
    if (c->want_write)
        redisAsyncHandleWrite(c->ac);
}

static void ev_add_read(void *data)
{
    struct redis_conn *c = data;
    if (!h2o_socket_is_reading(c->sock))
        h2o_socket_read_start(c->sock, on_readable);
}

static void ev_del_read(void *data)
{
    struct redis_conn *c = data;
    if (h2o_socket_is_reading(c->sock))
        h2o_socket_read_stop(c->sock);
}

/* h2o's write notification fires once; it is armed again while hiredis wants it. */
static void ev_add_write(void *data)
{
    struct redis_conn *c = data;
    c->want_write = true;
    if (!c->write_armed) {
        c->write_armed = true;
        h2o_socket_notify_write(c->sock, on_writable);
    }
}

/* An armed notification cannot be taken back: it finds want_write false. */
static void ev_del_write(void *data)
{
    struct redis_conn *c = data;
    c->want_write = false;
}

static void conn_lost(struct redis_conn *c, const char *why, bool hiredis_frees, bool suspect);

/* hiredis frees its context (an I/O error, the server closed): the hooks are
 * cleared by conn_lost, so this runs only for the current context. */
static void ev_cleanup(void *data)
{
    conn_lost(data, "connection closed", true, false);
}

static void conn_watch(struct redis_conn *c, redisAsyncContext *ac)
{
    c->ac = ac;
    c->sock = h2o_evloop_socket_create(c->loop, ac->c.fd, H2O_SOCKET_FLAG_DONT_READ);
    c->sock->data = c;
    c->write_armed = c->want_write = false;
    ac->data = c;
    ac->ev.data = c;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    h2o_socket_read_start(c->sock, on_readable);
}

/* Cuts every tie between the context and this connection; returns the context,
 * which nothing here will touch again but to free it. */
static redisAsyncContext *conn_unwatch(struct redis_conn *c)
{
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    c->state = DOWN;
    ac->data = NULL;
    ac->ev.data = NULL;
    ac->ev.addRead = ac->ev.delRead = ac->ev.addWrite = ac->ev.delWrite = ac->ev.cleanup = NULL;
    ac->onConnect = NULL;
    ac->onDisconnect = NULL;
    /* Export takes the descriptor off the loop without closing it (hiredis will).
     * It asserts that no write is under way; a bare notification is not one, so
     * it is dropped with the socket. */
    h2o_socket_export_t info;
    c->sock->_cb.write = NULL;
    if (h2o_socket_export(c->sock, &info) == 0)
        h2o_buffer_dispose(&info.input);
    c->sock = NULL;
    return ac;
}

/* ---- commands ---- */

static void on_deadline(h2o_timeout_entry_t *entry);
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata);

/* Queues k (hiredis then holds it): the command into hiredis' output buffer, k at
 * the end of the FIFO with its deadline. 0, or -1 when hiredis refused it. */
static int cmd_queue(struct redis_conn *c, struct cmd *k, int argc, const char *const *argv, const size_t *argvlen)
{
    if (redisAsyncCommandArgv(c->ac, on_reply, k, argc, (const char **)argv, argvlen) != REDIS_OK)
        return -1;
    k->conn = c;
    k->next = NULL;
    if (c->tail)
        c->tail->next = k;
    else
        c->head = k;
    c->tail = k;
    c->pending++;
    c->counters.commands++;
    k->deadline.cb = on_deadline;
    h2o_timeout_link(c->loop, &c->deadline_timeout, &k->deadline);
    return 0;
}

/* Sends an FCALL command (again, after a library load). */
static int cmd_queue_fcall(struct redis_conn *c, struct cmd *k)
{
    k->argv[0] = "FCALL";
    k->argv[1] = k->fn->name;
    k->argvlen[0] = strlen(k->argv[0]);
    k->argvlen[1] = strlen(k->argv[1]);
    return cmd_queue(c, k, k->argc, k->argv, k->argvlen);
}

/* Takes k off the head of the FIFO: its reply came, in order. */
static void cmd_pop(struct redis_conn *c, struct cmd *k)
{
    c->head = k->next;
    if (c->tail == k)
        c->tail = NULL;
    c->pending--;
    h2o_timeout_unlink(&k->deadline);
}

static void cmd_finish(struct cmd *k, bx_err e, const redisReply *reply)
{
    k->conn = NULL;
    k->done(k->arg, e, reply);
}

/* An error reply: passing server states are UNAVAILABLE, anything else (a script
 * error, a bad command) is a bug: INTERNAL. */
static bx_err reply_error(const redisReply *r)
{
    static const char *const passing[] = {"LOADING",  "BUSY",  "READONLY", "MASTERDOWN", "OOM",    "CLUSTERDOWN",
                                          "TRYAGAIN", "MOVED", "ASK",      "NOAUTH",     "MISCONF"};
    for (size_t i = 0; i < sizeof passing / sizeof passing[0]; i++) {
        size_t n = strlen(passing[i]);
        if (strncmp(r->str, passing[i], n) == 0 && (r->str[n] == ' ' || r->str[n] == '\0')) {
            log_warn("redis: %s", r->str);
            return BX_ERR_UNAVAILABLE;
        }
    }
    log_error("redis: %s", r->str);
    return BX_ERR_INTERNAL;
}

static bool is_missing_function(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && strcmp(r->str, "ERR Function not found") == 0;
}

/* FUNCTION LOAD answered: the library is there, or another connection loaded it
 * first. Anything else is logged; the FCALL behind it then fails on its own. */
static void on_library_loaded(void *arg, bx_err e, const redisReply *r)
{
    struct redis_conn *c = arg;
    if (e == BX_OK || r == NULL)
        return;
    if (strncmp(r->str, "ERR Library '", 13) == 0 && strstr(r->str, "' already exists") != NULL)
        return;
    log_error("redis %s:%d: FUNCTION LOAD failed: %s", c->cfg->host, c->cfg->port, r->str);
}

/* Queues FUNCTION LOAD of fn's library; 0, or -1 when it could not be queued. */
static int library_load(struct redis_conn *c, const struct redis_function *fn)
{
    struct cmd *k = calloc(1, sizeof *k);
    if (k == NULL)
        return -1;
    const char *argv[3] = {"FUNCTION", "LOAD", fn->library};
    k->done = on_library_loaded;
    k->arg = c;
    k->raw_errors = true;
    if (cmd_queue(c, k, 3, argv, NULL) != 0) {
        free(k);
        return -1;
    }
    return 0;
}

/* hiredis' callback for every command (see struct cmd). */
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct cmd *k = privdata;
    struct redis_conn *c = k->conn;
    const redisReply *r = reply;
    if (c != NULL && r == NULL) {
        /* hiredis frees the context under us; conn_lost answers k with the rest */
        conn_lost(c, ac->errstr ? ac->errstr : "connection lost", true, false);
    } else if (c != NULL) {
        cmd_pop(c, k);
        if (k->fn != NULL && !k->reloaded && is_missing_function(r)) {
            c->counters.reloads++;
            k->reloaded = true;
            if (library_load(c, k->fn) == 0 && cmd_queue_fcall(c, k) == 0)
                return; /* hiredis holds k again */
            cmd_finish(k, BX_ERR_UNAVAILABLE, NULL);
        } else if (r->type == REDIS_REPLY_ERROR) {
            cmd_finish(k, k->raw_errors ? BX_ERR_INTERNAL : reply_error(r), r);
        } else {
            cmd_finish(k, BX_OK, r);
        }
    }
    free(k);
}

/* The oldest command passed its deadline (every command waits as long, so no other
 * one did first): the server is presumed frozen. */
static void on_deadline(h2o_timeout_entry_t *entry)
{
    struct cmd *k = H2O_STRUCT_FROM_MEMBER(struct cmd, deadline, entry);
    struct redis_conn *c = k->conn;
    c->counters.stuck++;
    conn_lost(c, "no reply in time: connection presumed stuck", false, true);
}

/* ---- the connection's life ---- */

static void conn_retry_later(struct redis_conn *c)
{
    c->state = DOWN;
    if (!c->closing && !h2o_timeout_is_linked(&c->retry_entry))
        h2o_timeout_link(c->loop, &c->retry_timeout, &c->retry_entry);
}

static void on_retry(h2o_timeout_entry_t *entry)
{
    conn_connect(H2O_STRUCT_FROM_MEMBER(struct redis_conn, retry_entry, entry), false);
}

/* Drops the current context: stops watching it, starts the next connection (so
 * that commands the callbacks below queue go there), fails every command in flight
 * with UNAVAILABLE, and frees the context unless hiredis is doing so. A connection
 * that worked is replaced at once; when the server may not answer (`suspect`: an
 * attempt failed, the set-up was refused, a deadline passed) the next attempt
 * waits retry_ms. conn_connect calls back here only as suspect, which never
 * connects at once: the recursion stops there. NOLINTNEXTLINE(misc-no-recursion) */
static void conn_lost(struct redis_conn *c, const char *why, bool hiredis_frees, bool suspect)
{
    bool worked = c->state == UP && !suspect;
    if (why != NULL)
        log_warn("redis %s:%d: %s", c->cfg->host, c->cfg->port, why);
    c->counters.lost++;
    redisAsyncContext *ac = conn_unwatch(c);
    struct cmd *k = c->head;
    c->head = c->tail = NULL;
    c->pending = 0;
    if (worked && !c->closing)
        conn_connect(c, true);
    else
        conn_retry_later(c);
    while (k != NULL) {
        struct cmd *next = k->next;
        h2o_timeout_unlink(&k->deadline);
        cmd_finish(k, BX_ERR_UNAVAILABLE, NULL);
        k = next;
    }
    if (!hiredis_frees)
        redisAsyncFree(ac); /* from inside a hiredis callback it frees once that returns */
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_conn *c = ac->data;
    if (status != REDIS_OK)
        conn_lost(c, ac->errstr ? ac->errstr : "cannot connect", true, false);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    conn_lost(ac->data, ac->errstr ? ac->errstr : "connection closed", true, false);
}

/* AUTH or SELECT answered: an error reply makes the connection useless. */
static void on_setup_step(void *arg, bx_err e, const redisReply *r)
{
    (void)e;
    struct redis_conn *c = arg;
    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        log_error("redis %s:%d: set-up refused: %s", c->cfg->host, c->cfg->port, r->str);
        conn_lost(c, NULL, false, true);
    }
}

/* The last set-up command answered (CLIENT SETNAME may fail harmlessly): up. */
static void on_setup_done(void *arg, bx_err e, const redisReply *r)
{
    (void)e;
    struct redis_conn *c = arg;
    if (r != NULL)
        c->state = UP;
}

static int setup_command(struct redis_conn *c, int argc, const char *const *argv, redis_done_fn done)
{
    struct cmd *k = calloc(1, sizeof *k);
    if (k == NULL)
        return -1;
    k->done = done;
    k->arg = c;
    if (cmd_queue(c, k, argc, argv, NULL) != 0) {
        free(k);
        return -1;
    }
    return 0;
}

/* AUTH, SELECT, CLIENT SETNAME: pipelined at once; hiredis sends them first when
 * the connect completes. */
static int conn_setup(struct redis_conn *c)
{
    const struct redis_conn_config *g = c->cfg;
    bool user = g->user != NULL && g->user[0] != '\0';
    if (g->password != NULL && g->password[0] != '\0') {
        const char *auth[3] = {"AUTH", user ? g->user : g->password, g->password};
        if (setup_command(c, user ? 3 : 2, auth, on_setup_step) != 0)
            return -1;
    }
    if (g->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", g->db);
        const char *select[2] = {"SELECT", db};
        if (setup_command(c, 2, select, on_setup_step) != 0)
            return -1;
    }
    const char *setname[3] = {"CLIENT", "SETNAME", g->name};
    const char *ping[1] = {"PING"};
    return g->name != NULL ? setup_command(c, 3, setname, on_setup_done) : setup_command(c, 1, ping, on_setup_done);
}

/* A non-blocking connect; `accepting`: commands queue while it is under way.
 * NOLINTNEXTLINE(misc-no-recursion): see conn_lost */
static void conn_connect(struct redis_conn *c, bool accepting)
{
    c->counters.connects++;
    redisAsyncContext *ac = redisAsyncConnect(c->cfg->host, c->cfg->port);
    if (ac == NULL || ac->err) {
        log_warn("redis %s:%d: %s", c->cfg->host, c->cfg->port, ac ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        c->counters.lost++;
        conn_retry_later(c);
        return;
    }
    conn_watch(c, ac);
    c->state = CONNECTING;
    c->accepting = accepting;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (conn_setup(c) != 0)
        conn_lost(c, "out of memory for the set-up", false, true);
}

/* ---- the interface ---- */

struct redis_conn *redis_conn_open(h2o_evloop_t *loop, const struct redis_conn_config *cfg)
{
    struct redis_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->loop = loop;
    c->cfg = cfg;
    h2o_timeout_init(loop, &c->deadline_timeout, (uint64_t)cfg->reply_wait_ms);
    h2o_timeout_init(loop, &c->retry_timeout, (uint64_t)cfg->retry_ms);
    c->retry_entry.cb = on_retry;
    conn_connect(c, true);
    return c;
}

void redis_conn_close(struct redis_conn *c)
{
    c->closing = true;
    h2o_timeout_unlink(&c->retry_entry);
    if (c->ac != NULL)
        conn_lost(c, NULL, false, false);
    h2o_timeout_dispose(c->loop, &c->deadline_timeout);
    h2o_timeout_dispose(c->loop, &c->retry_timeout);
    free(c);
}

static bool conn_accepts(struct redis_conn *c)
{
    bool ok = !c->closing && c->ac != NULL && (c->state == UP || c->accepting) && c->pending < c->cfg->max_queued;
    if (!ok)
        c->counters.refused++;
    return ok;
}

int redis_conn_command(struct redis_conn *c, int argc, const char *const *argv, const size_t *argvlen,
                       redis_done_fn done, void *arg)
{
    if (!conn_accepts(c))
        return -1;
    struct cmd *k = calloc(1, sizeof *k);
    if (k == NULL)
        return -1;
    k->done = done;
    k->arg = arg;
    if (cmd_queue(c, k, argc, argv, argvlen) != 0) {
        free(k);
        return -1;
    }
    return 0;
}

/* An FCALL command with its own copy of the arguments, for the resend after a
 * library load: one allocation (the command, the lengths, the pointers, the bytes). */
static struct cmd *cmd_new_fcall(const struct redis_function *fn, int argc, const char *const *argv,
                                 const size_t *argvlen)
{
    size_t n = (size_t)argc + 2, bytes = 0;
    for (int i = 0; i < argc; i++)
        bytes += argvlen ? argvlen[i] : strlen(argv[i]);
    struct cmd *k = calloc(1, sizeof *k + n * (sizeof(size_t) + sizeof(char *)) + bytes);
    if (k == NULL)
        return NULL;
    k->fn = fn;
    k->argc = (int)n;
    k->argvlen = (size_t *)(k + 1);
    k->argv = (const char **)(k->argvlen + n);
    char *p = (char *)(k->argv + n);
    for (int i = 0; i < argc; i++) {
        size_t len = argvlen ? argvlen[i] : strlen(argv[i]);
        memcpy(p, argv[i], len);
        k->argv[i + 2] = p;
        k->argvlen[i + 2] = len;
        p += len;
    }
    return k;
}

char *redis_library_text(const char *family, const char *lua, char *tag, size_t cap)
{
    uint64_t h = 14695981039346656037ULL;
    for (const char *p = lua; *p != '\0'; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    snprintf(tag, cap, "%s_%016" PRIx64, family, h);
    size_t len = strlen(lua) + 2 * strlen(tag) + 32;
    char *text = malloc(len);
    if (text != NULL)
        snprintf(text, len, "#!lua name=%s\nlocal V = '%s_'\n%s", tag, tag, lua);
    return text;
}

int redis_conn_fcall(struct redis_conn *c, const struct redis_function *fn, int argc, const char *const *argv,
                     const size_t *argvlen, redis_done_fn done, void *arg)
{
    if (!conn_accepts(c))
        return -1;
    struct cmd *k = cmd_new_fcall(fn, argc, argv, argvlen);
    if (k == NULL)
        return -1;
    k->done = done;
    k->arg = arg;
    if (cmd_queue_fcall(c, k) != 0) {
        free(k);
        return -1;
    }
    return 0;
}

bool redis_conn_is_up(const struct redis_conn *c)
{
    return c->state == UP;
}

size_t redis_conn_pending(const struct redis_conn *c)
{
    return c->pending;
}

void redis_conn_counters(const struct redis_conn *c, struct redis_conn_counters *out)
{
    *out = c->counters;
}
