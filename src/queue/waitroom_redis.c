/* waitroom_redis.c — the scale-out waiting room (CONTRACT §2, §4; DESIGN "Waiting room
 * (Redis)"): the queues live in Redis, so any number of boxoffice instances share
 * them. Every operation on a concert is one atomic Lua function of one library
 * (redis_scripts.h), loaded at open and called with FCALL; this file builds keys,
 * moves arguments and replies, and computes ETA / pollAfterMs with
 * domain/queue_rules.c. It must not do queue arithmetic in C that a function would
 * need to see atomically.
 *
 * Keys (see redis_scripts.h): per concert C, "{NS:C}:..." — one hash tag, so one
 * Redis Cluster slot per concert; plus one set "NS:concerts" of concerts that may
 * have live tokens, read only by the tick. NS is "bx" unless the URL says
 * ?prefix=NAME (several deployments, or parallel tests, on one Redis).
 *
 * Loops: each loop's port has its own connection (redis_conn.h); an operation sends
 * its FCALL there and finishes in the reply's callback, so no loop waits on Redis.
 * What the ports share (struct wr) is fixed at open, but for the view (redis_view.h,
 * its own locks) and the tick's flag and clock.
 *
 * Polls without a round trip: the tick keeps a view of every concert's figures;
 * a poll of a WAITING token far back in the line, read exactly not long ago, is
 * answered from the view (redis_view.h states when and how stale it can be).
 * Such polls are written back to Redis in batches by the tick, at least every
 * quarter of waiting_idle, which also finds the tokens that stopped waiting. */
#include "queue/waitroom_redis.h"
#include "queue/redis_scripts.h"
#include "queue/redis_view.h"
#include "util/log.h"
#include "util/token.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLY_WAIT_MS 2000      /* a command's deadline (redis_conn.h) */
#define RETRY_MS 1000           /* between connection attempts while Redis stays away */
#define MAX_QUEUED 4096         /* commands in flight per port */
#define TICK_WINDOW 256         /* the tick's commands in flight at once, so requests queue beside it */
#define EXPIRED_TTL_S "86400"   /* an EXPIRED token answers TOKEN_EXPIRED / NOT_YOURS for a day */
#define EXPIRE_BATCH 1000       /* idle expiries per list per script call */
#define EXPIRE_ROUNDS 16        /* script calls per concert per tick while batches come back full */
#define FORGET_AFTER_MS 3600000 /* an empty concert leaves the tick set an hour after its last issue */
#define NS_MAX 64
#define KEY_MAX (NS_MAX + 64)
#define ISSUE_TRIES 3
/* Polls answered from the view (redis_view.h) */
#define VIEW_FRESH_MS 300     /* the concert's figures are at most this old: about three ticks */
#define EXACT_DEPTH 64        /* default of waitroom_config.exact_poll_depth */
#define READ_MAX_MS 60000     /* a token's exact read is reused this long at most */
#define DRIFT_DIV 16          /* departures since the read stay under 1/16 of the position */
#define TOKEN_SLOTS 65536     /* tokens cached per process */
#define WRITEBACK_MAX_MS 1000 /* local polls reach Redis at least this often (and every waiting_idle / 4) */
#define TOUCH_BATCH 512       /* tokens per write-back script */

enum script { S_ISSUE, S_STATUS, S_REQUIRE_ACTIVE, S_END, S_TICK, S_TOUCH, S_FIGURES, S_COUNT };

/* The library's function of each script, after its version prefix (redis_scripts.h). */
static const char *const script_name[S_COUNT] = {
    [S_ISSUE] = "issue",     [S_STATUS] = "status", [S_REQUIRE_ACTIVE] = "require_active",
    [S_END] = "end",         [S_TICK] = "tick",     [S_TOUCH] = "touch",
    [S_FIGURES] = "figures",
};

#define LIBRARY_TAG_LEN 19 /* "bx_" and 16 hex digits */

/* Reply codes of the scripts (redis_scripts.h). */
enum { RC_OK = 0, RC_INVALID = 1, RC_NOT_YOURS = 2, RC_EXPIRED = 3, RC_NOT_ACTIVE = 4, RC_EXISTS = 5 };

/* The waiting room, one per process. Immutable after open but for view (its own
 * locks), the counters (atomic) and the tick's state (ticking guards it: only the
 * tick in flight touches written_back_at). */
struct wr {
    struct waitroom base;
    struct waitroom_config cfg;
    char host[256]; /* as the URL says it, for messages */
    char addr[64];  /* host resolved once at open */
    int port;
    int db;
    char user[128];
    char password[256];
    char client_name[NS_MAX + 16];
    struct redis_conn_config conn_cfg;
    char ns[NS_MAX + 1];
    char concerts_key[NS_MAX + 16];
    char *library; /* RS_LIBRARY with its name and version lines (owned) */
    char script_fn[S_COUNT][LIBRARY_TAG_LEN + 24];
    struct redis_function scripts[S_COUNT];
    char cfg_line[160]; /* "active_max admit_rate waiting_idle_ms active_idle_ms expired_ttl_s": one argument */
    struct redis_view *view;
    int64_t writeback_ms;
    atomic_bool ticking;
    int64_t written_back_at;
    _Atomic uint64_t polls_local, polls_exact, ticks, ticks_skipped, written_back, gone;
};

/* One loop's port: its connection. */
struct wr_port {
    struct waitroom_port base;
    struct redis_conn *conn;
};

static struct wr *wr_of(struct waitroom *w)
{
    return (struct wr *)w;
}

static struct wr_port *port_of(struct waitroom_port *p)
{
    return (struct wr_port *)p;
}

/* The key of concert_id named by suffix ("wq", "al": redis_scripts.h). */
static void concert_key(const struct wr *w, int64_t concert_id, const char *suffix, char *out, size_t cap)
{
    snprintf(out, cap, "{%s:%" PRId64 "}:%s", w->ns, concert_id, suffix);
}

static void count(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ---- script calls ---- */

#define ARGS_MAX 24

/* A script's arguments after FCALL name (redis_scripts.h): numkeys 1, its one key
 * (the concert's prefix, then a suffix: "st", "wl", or "t:" and a token), the
 * prefix, now, then its own. */
struct call {
    const char *argv[ARGS_MAX];
    int argc;
    char key[KEY_MAX + BX_QUEUE_TOKEN_LEN];
    char prefix[KEY_MAX];
    char now[24];
};

static void call_init(const struct wr *w, struct call *k, int64_t concert_id, const char *suffix, const char *token,
                      int64_t now)
{
    concert_key(w, concert_id, "", k->prefix, sizeof k->prefix);
    snprintf(k->key, sizeof k->key, "%s%s%s", k->prefix, suffix, token ? token : "");
    snprintf(k->now, sizeof k->now, "%" PRId64, now);
    k->argc = 0;
    k->argv[k->argc++] = "1";
    k->argv[k->argc++] = k->key;
    k->argv[k->argc++] = k->prefix;
    k->argv[k->argc++] = k->now;
}

static void call_arg(struct call *k, const char *a)
{
    k->argv[k->argc++] = a;
}

/* The reply of the touch script: an array led by its code. */
static bx_err coded_reply(bx_err e, const redisReply *r, long long *code)
{
    if (e != BX_OK)
        return e;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->element[0]->type != REDIS_REPLY_INTEGER) {
        log_error("waiting room: unexpected reply from a redis script");
        return BX_ERR_INTERNAL;
    }
    *code = r->element[0]->integer;
    return BX_OK;
}

static bx_err code_error(long long code)
{
    switch (code) {
    case RC_OK:
        return BX_OK;
    case RC_INVALID:
        return BX_ERR_QUEUE_TOKEN_INVALID;
    case RC_NOT_YOURS:
        return BX_ERR_TOKEN_NOT_YOURS;
    case RC_EXPIRED:
        return BX_ERR_TOKEN_EXPIRED;
    case RC_NOT_ACTIVE:
        return BX_ERR_QUEUE_NOT_ACTIVE;
    default:
        return BX_ERR_INTERNAL;
    }
}

/* What a ticket says ("A", or "W position pace pace_at admitted_total
 * departed_total": the concert's struct queue_pace). */
struct ticket_reply {
    bool waiting;
    int64_t position, admitted_total, departed_total;
    struct queue_pace pace;
};

/* A decimal integer of s ending at a space or the end; the position after it. */
static bool parse_ll(const char *s, const char **end, int64_t *out)
{
    char *e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    if (errno != 0 || e == s || (*e != ' ' && *e != '\0'))
        return false;
    *out = v;
    *end = e;
    return true;
}

/* Parses the ticket s (NUL-terminated); false when it is malformed. */
static bool ticket_parse(const char *s, struct ticket_reply *t)
{
    *t = (struct ticket_reply){0};
    if (strcmp(s, "A") == 0)
        return true;
    if (strncmp(s, "W ", 2) != 0)
        return false;
    t->waiting = true;
    const char *p;
    char *e;
    if (!parse_ll(s + 2, &p, &t->position) || *p != ' ')
        return false;
    t->pace.rate = strtod(p + 1, &e);
    if (e == p + 1 || *e != ' ')
        return false;
    return parse_ll(e + 1, &p, &t->pace.at_ms) && *p == ' ' && parse_ll(p + 1, &p, &t->admitted_total) && *p == ' ' &&
           parse_ll(p + 1, &p, &t->departed_total) && *p == '\0';
}

/* A reply that is a code (an integer) or, when string_ok, a string: BX_OK and *code
 * (-1 for a string), or the error. */
static bx_err code_or_string(bx_err e, const redisReply *r, bool string_ok, long long *code)
{
    if (e != BX_OK)
        return e;
    if (r->type == REDIS_REPLY_INTEGER) {
        *code = r->integer;
        return BX_OK;
    }
    if (string_ok && r->type == REDIS_REPLY_STRING) {
        *code = -1;
        return BX_OK;
    }
    log_error("waiting room: unexpected reply from a redis script");
    return BX_ERR_INTERNAL;
}

static void ticket_fill(const struct wr *w, const char *token, int64_t user_id, int64_t concert_id, bool waiting,
                        int64_t position, const struct queue_pace *pace, int64_t now, struct queue_ticket *t)
{
    memset(t, 0, sizeof *t);
    memcpy(t->token, token, BX_QUEUE_TOKEN_LEN);
    t->user_id = user_id;
    t->concert_id = concert_id;
    t->status = waiting ? QUEUE_WAITING : QUEUE_ACTIVE;
    t->position = waiting ? position : 0;
    t->eta_seconds = waiting ? queue_eta_seconds(position, pace, now, &w->cfg) : 0;
    t->poll_after_ms = waiting ? queue_waiting_poll_after_ms(t->eta_seconds, pace, &w->cfg)
                               : queue_poll_after_ms(1, 0, &w->cfg);
}

/* A client's token → its concert, or QUEUE_TOKEN_INVALID without a round trip. */
static bx_err token_concert(const char *token, int64_t *concert_id)
{
    if (token == NULL)
        return BX_ERR_QUEUE_TOKEN_INVALID;
    size_t len = strnlen(token, BX_QUEUE_TOKEN_LEN + 1);
    if (!token_queue_well_formed(token, len) || token_queue_concert(token, len, concert_id) != 0)
        return BX_ERR_QUEUE_TOKEN_INVALID;
    return BX_OK;
}

/* ---- operations: each one script on the port's connection ---- */

/* An operation in flight: what its reply needs. */
struct op {
    struct wr *w;
    struct wr_port *port;
    waitroom_done_fn done;
    void *arg;
    struct queue_ticket *out;
    bool *created;
    char token[BX_QUEUE_TOKEN_LEN + 1];
    int64_t user_id, concert_id, now;
    int tries;
};

static struct op *op_new(struct waitroom_port *p, waitroom_done_fn done, void *arg)
{
    struct op *o = calloc(1, sizeof *o);
    if (o == NULL) {
        done(arg, BX_ERR_UNAVAILABLE);
        return NULL;
    }
    *o = (struct op){.w = wr_of(p->room), .port = port_of(p), .done = done, .arg = arg};
    return o;
}

static void op_finish(struct op *o, bx_err e)
{
    o->done(o->arg, e);
    free(o);
}

/* Calls script s; on refusal (Redis down, too much in flight) the op ends UNAVAILABLE. */
static void op_eval(struct op *o, enum script s, const struct call *k, redis_done_fn on_reply)
{
    if (redis_conn_fcall(o->port->conn, &o->w->scripts[s], k->argc, k->argv, NULL, on_reply, o) != 0)
        op_finish(o, BX_ERR_UNAVAILABLE);
}

/* A per-token script (status, require_active, end) on the token's concert: the
 * configuration (end only: it admits), the user, the token, the flag if any. */
static void op_token_script(struct op *o, enum script s, const char *flag, redis_done_fn on_reply)
{
    char user[24];
    struct call k;
    snprintf(user, sizeof user, "%" PRId64, o->user_id);
    call_init(o->w, &k, o->concert_id, "t:", o->token, o->now);
    if (s == S_END)
        call_arg(&k, o->w->cfg_line);
    call_arg(&k, user);
    call_arg(&k, o->token);
    if (flag)
        call_arg(&k, flag);
    op_eval(o, s, &k, on_reply);
}

static void on_pong(void *arg, bx_err e, const redisReply *r)
{
    (void)r;
    op_finish(arg, e);
}

static void wr_ping(struct waitroom_port *p, waitroom_done_fn done, void *arg)
{
    static const char *const ping[1] = {"PING"};
    struct op *o = op_new(p, done, arg);
    if (o != NULL && redis_conn_command(o->port->conn, 1, ping, NULL, on_pong, o) != 0)
        op_finish(o, BX_ERR_UNAVAILABLE);
}

static void on_listed(void *arg, bx_err e, const redisReply *r)
{
    (void)arg;
    (void)r;
    if (e != BX_OK)
        log_warn("waiting room: a concert may be missing from the housekeeping set: %s", bx_err_info(e)->code);
}

/* Names the concert in the tick set, once the issue script has run (see
 * forget_send: a tick that found the concert empty before the token existed must
 * see this SADD after its SREM). Its answer is not waited for.
 *
 * Skipped when the token joined a concert that had live tokens (`was_empty`
 * false) and this instance's last tick, at most VIEW_FRESH_MS ago, found the
 * concert listed: a tick forgets a concert only when it was empty, and then puts
 * it back if a token is live after its SREM (on_forget_reply); a token issued
 * later into a non-empty concert has an earlier live one, whose issue or whose
 * put-back listed it, else it was issued into an empty concert and sends this. A
 * listing lost otherwise (an SADD that failed) is seen by the next tick, which
 * then no longer finds the concert listed. */
static void list_concert(struct op *o, bool was_empty)
{
    if (!was_empty && redis_view_listed(o->w->view, o->concert_id, o->now))
        return;
    char concert[24];
    snprintf(concert, sizeof concert, "%" PRId64, o->concert_id);
    const char *sadd[3] = {"SADD", o->w->concerts_key, concert};
    if (redis_conn_command(o->port->conn, 3, sadd, NULL, on_listed, NULL) != 0)
        log_warn("waiting room: concert %" PRId64 " may be missing from the housekeeping set", o->concert_id);
}

static void issue_send(struct op *o);

/* Issue reply "C E TOKEN TICKET": C 1 when created, E 1 when the concert had no
 * live token before. */
static bx_err issued(struct op *o, const redisReply *r)
{
    struct ticket_reply t;
    const char *s = r->str;
    if (r->len < 5 + BX_QUEUE_TOKEN_LEN || (s[0] != '0' && s[0] != '1') || s[1] != ' ' ||
        (s[2] != '0' && s[2] != '1') || s[3] != ' ' || s[4 + BX_QUEUE_TOKEN_LEN] != ' ' ||
        !ticket_parse(s + 5 + BX_QUEUE_TOKEN_LEN, &t)) {
        log_error("waiting room: unexpected reply from the redis issue script");
        return BX_ERR_INTERNAL;
    }
    char token[BX_QUEUE_TOKEN_LEN + 1];
    memcpy(token, s + 4, BX_QUEUE_TOKEN_LEN);
    token[BX_QUEUE_TOKEN_LEN] = '\0';
    ticket_fill(o->w, token, o->user_id, o->concert_id, t.waiting, t.position, &t.pace, o->now, o->out);
    *o->created = s[0] == '1';
    if (t.waiting)
        redis_view_token_read(o->w->view, token, o->user_id, o->concert_id, t.position, t.admitted_total,
                              t.departed_total, o->now);
    list_concert(o, s[2] == '1');
    return BX_OK;
}

static void on_issue_reply(void *arg, bx_err e, const redisReply *r)
{
    struct op *o = arg;
    long long code = RC_OK;
    e = code_or_string(e, r, true, &code);
    if (e == BX_OK && code == RC_EXISTS && ++o->tries < ISSUE_TRIES) {
        issue_send(o); /* 2^-128: draw another token */
        return;
    }
    if (e == BX_OK && code >= 0)
        e = code == RC_OK ? BX_ERR_INTERNAL : code_error(code);
    else if (e == BX_OK)
        e = issued(o, r);
    op_finish(o, e);
}

static void issue_send(struct op *o)
{
    char user[24];
    struct call k;
    token_queue_new_for(o->concert_id, o->token);
    snprintf(user, sizeof user, "%" PRId64, o->user_id);
    call_init(o->w, &k, o->concert_id, "t:", o->token, o->now);
    call_arg(&k, o->w->cfg_line);
    call_arg(&k, user);
    call_arg(&k, o->token);
    op_eval(o, S_ISSUE, &k, on_issue_reply);
}

/* See waitroom.h. One script; then the concert is named in the tick set. */
static void wr_issue(struct waitroom_port *p, int64_t user_id, int64_t concert_id, int64_t now,
                     struct queue_ticket *out, bool *created, waitroom_done_fn done, void *arg)
{
    if (concert_id <= 0) {
        done(arg, BX_ERR_CONCERT_NOT_FOUND); /* no token can name it */
        return;
    }
    struct op *o = op_new(p, done, arg);
    if (o == NULL)
        return;
    o->user_id = user_id;
    o->concert_id = concert_id;
    o->now = now;
    o->out = out;
    o->created = created;
    issue_send(o);
}

static void on_status_reply(void *arg, bx_err e, const redisReply *r)
{
    struct op *o = arg;
    long long code = RC_OK;
    struct ticket_reply t = {0};
    e = code_or_string(e, r, true, &code);
    if (e == BX_OK && code >= 0)
        e = code == RC_OK ? BX_ERR_INTERNAL : code_error(code);
    if (e == BX_OK && !ticket_parse(r->str, &t)) {
        log_error("waiting room: unexpected reply from the redis status script");
        e = BX_ERR_INTERNAL;
    }
    if (e == BX_OK)
        ticket_fill(o->w, o->token, o->user_id, o->concert_id, t.waiting, t.position, &t.pace, o->now, o->out);
    if (e == BX_OK && t.waiting)
        redis_view_token_read(o->w->view, o->token, o->user_id, o->concert_id, t.position, t.admitted_total,
                              t.departed_total, o->now);
    else if (e != BX_ERR_UNAVAILABLE)
        redis_view_token_forget(o->w->view, o->token);
    op_finish(o, e);
}

/* See waitroom.h. From the view when it allows (redis_view.h), else one script,
 * which touches the token. */
static void wr_status(struct waitroom_port *p, const char *token, int64_t user_id, int64_t now,
                      struct queue_ticket *out, waitroom_done_fn done, void *arg)
{
    struct wr *w = wr_of(p->room);
    int64_t concert_id, position;
    struct queue_pace pace;
    bx_err e = token_concert(token, &concert_id);
    if (e != BX_OK) {
        done(arg, e);
        return;
    }
    if (redis_view_poll(w->view, token, user_id, concert_id, now, &position, &pace)) {
        count(&w->polls_local);
        ticket_fill(w, token, user_id, concert_id, true, position, &pace, now, out);
        done(arg, BX_OK);
        return;
    }
    count(&w->polls_exact);
    struct op *o = op_new(p, done, arg);
    if (o == NULL)
        return;
    memcpy(o->token, token, BX_QUEUE_TOKEN_LEN);
    o->user_id = user_id;
    o->concert_id = concert_id;
    o->now = now;
    o->out = out;
    op_token_script(o, S_STATUS, NULL, on_status_reply);
}

static void on_coded_reply(void *arg, bx_err e, const redisReply *r)
{
    long long code = RC_OK;
    e = code_or_string(e, r, false, &code);
    op_finish(arg, e == BX_OK ? code_error(code) : e);
}

/* A per-token op answered by its code alone; `forget`: the token stops waiting
 * whatever the answer, so the view drops it. */
static void token_op(struct waitroom_port *p, enum script s, const char *token, int64_t user_id, int64_t now,
                     const char *flag, bool forget, waitroom_done_fn done, void *arg)
{
    int64_t concert_id;
    bx_err e = token_concert(token, &concert_id);
    if (e != BX_OK) {
        done(arg, e);
        return;
    }
    if (forget)
        redis_view_token_forget(wr_of(p->room)->view, token);
    struct op *o = op_new(p, done, arg);
    if (o == NULL)
        return;
    memcpy(o->token, token, BX_QUEUE_TOKEN_LEN);
    o->user_id = user_id;
    o->concert_id = concert_id;
    o->now = now;
    op_token_script(o, s, flag, on_coded_reply);
}

/* See waitroom.h. Always Redis; a token of another concert still goes to its own
 * concert's script, so unknown / not yours / expired win over NOT_ACTIVE. */
static void wr_require_active(struct waitroom_port *p, const char *token, int64_t user_id, int64_t concert_id,
                              int64_t now, waitroom_done_fn done, void *arg)
{
    int64_t tok_concert = 0;
    (void)token_concert(token, &tok_concert); /* a malformed token is refused by token_op */
    token_op(p, S_REQUIRE_ACTIVE, token, user_id, now, tok_concert == concert_id ? "1" : "0", false, done, arg);
}

/* See waitroom.h: expire, then admit the next in line — one script. */
static void wr_leave(struct waitroom_port *p, const char *token, int64_t user_id, int64_t now, waitroom_done_fn done,
                     void *arg)
{
    token_op(p, S_END, token, user_id, now, "0", true, done, arg);
}

static void wr_complete(struct waitroom_port *p, const char *token, int64_t user_id, int64_t now, waitroom_done_fn done,
                        void *arg)
{
    token_op(p, S_END, token, user_id, now, "1", true, done, arg);
}

/* ---- the tick: write-back of local polls, every concert's script, forgetting ---- */

/* A concert of the tick set, or a write-back batch: its callbacks' argument. */
struct tick_item {
    struct tick *t;
    size_t i;
    bool ok;        /* its figures were read */
    bool again;     /* an expiry batch came back full: another round */
    bool forget;    /* empty long enough to leave the tick set */
    int replies;    /* forgetting: replies still to come, */
    int seen;       /* replies come so far */
    long long live; /* tokens found (or cannot tell: 1) */
};

/* One tick (or view refresh) in flight: phases run one after the other, each
 * sending at most TICK_WINDOW commands at a time (fan_*). */
struct tick {
    struct wr *w;
    struct wr_port *port;
    int64_t now;
    bool refresh; /* figures only (waitroom_redis_refresh) */
    waitroom_done_fn done;
    void *arg;
    bx_err e; /* the first error */
    struct redis_view_polled *polled;
    size_t *batch; /* write-back batch b is polled[batch[b] .. batch[b + 1]) */
    struct tick_item *wb_items;
    int64_t *ids; /* the tick set */
    size_t n;
    struct redis_view_concert *fig;
    struct tick_item *items;
    size_t *todo; /* concerts of the current round */
    size_t ntodo;
    int round;
    size_t fan_n, fan_next, fan_inflight;
    int (*fan_send)(struct tick *t, size_t j);
    void (*fan_after)(struct tick *t);
};

static void tick_error(struct tick *t, bx_err e)
{
    if (t->e == BX_OK)
        t->e = e;
}

static void tick_finish(struct tick *t)
{
    waitroom_done_fn done = t->done;
    void *arg = t->arg;
    bx_err e = t->e;
    if (!t->refresh)
        atomic_store(&t->w->ticking, false);
    free(t->polled);
    free(t->batch);
    free(t->wb_items);
    free(t->ids);
    free(t->fig);
    free(t->items);
    free(t->todo);
    free(t);
    done(arg, e);
}

/* Sends the phase's items while fewer than TICK_WINDOW are in flight; when every
 * one has answered, the next phase. That call is the last use of t here: it may
 * finish (free) the tick. Sends never answer from inside, so this never nests. */
static void fan_pump(struct tick *t)
{
    while (t->fan_inflight < TICK_WINDOW && t->fan_next < t->fan_n) {
        size_t j = t->fan_next++;
        t->fan_inflight++;
        if (t->fan_send(t, j) != 0) {
            tick_error(t, BX_ERR_UNAVAILABLE);
            t->fan_inflight--;
        }
    }
    if (t->fan_inflight == 0 && t->fan_next == t->fan_n)
        t->fan_after(t);
}

static void fan_start(struct tick *t, size_t n, int (*send)(struct tick *, size_t), void (*after)(struct tick *))
{
    t->fan_n = n;
    t->fan_next = t->fan_inflight = 0;
    t->fan_send = send;
    t->fan_after = after;
    fan_pump(t);
}

/* One item answered. */
static void fan_done(struct tick *t)
{
    t->fan_inflight--;
    fan_pump(t);
}

static void tick_list(struct tick *t);

/* Write-back reply {0, tokens no longer waiting...}: they leave the cache, so their
 * next poll asks Redis. */
static void on_touched(void *arg, bx_err e, const redisReply *r)
{
    struct tick_item *it = arg;
    struct tick *t = it->t;
    long long code = RC_OK;
    e = coded_reply(e, r, &code);
    for (size_t j = 1; e == BX_OK && j < r->elements; j++) {
        if (r->element[j]->type == REDIS_REPLY_STRING && r->element[j]->len == BX_QUEUE_TOKEN_LEN) {
            redis_view_token_forget(t->w->view, r->element[j]->str);
            count(&t->w->gone);
        }
    }
    if (e != BX_OK)
        tick_error(t, e);
    fan_done(t);
}

/* One write-back script: the batch's tokens and when each was last polled. */
static int touch_send(struct tick *t, size_t b)
{
    size_t from = t->batch[b], cnt = t->batch[b + 1] - from;
    struct call k;
    call_init(t->w, &k, t->polled[from].concert_id, "wl", NULL, t->now);
    const char **argv = malloc(((size_t)k.argc + 2 * cnt) * sizeof *argv);
    char(*at)[24] = malloc(cnt * sizeof *at);
    int rc = -1;
    if (argv != NULL && at != NULL) {
        memcpy(argv, k.argv, (size_t)k.argc * sizeof *argv);
        for (size_t j = 0; j < cnt; j++) {
            snprintf(at[j], sizeof at[j], "%" PRId64, t->polled[from + j].polled_at);
            argv[k.argc + 2 * j] = t->polled[from + j].token;
            argv[k.argc + 2 * j + 1] = at[j];
        }
        rc = redis_conn_fcall(t->port->conn, &t->w->scripts[S_TOUCH], k.argc + 2 * (int)cnt, argv, NULL, on_touched,
                              &t->wb_items[b]);
    }
    free(argv);
    free(at);
    return rc;
}

/* The polls answered locally since the last write-back, in batches of one concert
 * each; the tick's scripts wait for them (an expiry must not overtake a poll). */
static void tick_write_back(struct tick *t)
{
    long n = redis_view_take_polled(t->w->view, &t->polled);
    size_t nb = 0;
    if (n > 0) {
        t->batch = malloc(((size_t)n + 1) * sizeof *t->batch);
        t->wb_items = calloc((size_t)n, sizeof *t->wb_items);
    }
    if (n < 0 || (n > 0 && (t->batch == NULL || t->wb_items == NULL))) {
        tick_error(t, BX_ERR_INTERNAL); /* those polls are lost: their next ones count again */
        n = 0;
    }
    for (size_t i = 0; i < (size_t)n; i++) {
        if (i == 0 || t->polled[i].concert_id != t->polled[i - 1].concert_id || i - t->batch[nb - 1] == TOUCH_BATCH) {
            t->wb_items[nb] = (struct tick_item){.t = t, .i = nb};
            t->batch[nb++] = i;
        }
    }
    if (n > 0) {
        t->batch[nb] = (size_t)n;
        atomic_fetch_add_explicit(&t->w->written_back, (uint64_t)n, memory_order_relaxed);
    }
    fan_start(t, nb, touch_send, tick_list);
}

/* The figures {waiting, active, full, forget, admitted_total, departed_total, rate,
 * pace, pace_at}. */
static bool figures_parse(const redisReply *r, struct redis_view_concert *c, struct tick_item *it)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 9 || r->element[6]->type != REDIS_REPLY_STRING ||
        r->element[7]->type != REDIS_REPLY_STRING || r->element[8]->type != REDIS_REPLY_INTEGER)
        return false;
    for (size_t j = 0; j < 6; j++)
        if (r->element[j]->type != REDIS_REPLY_INTEGER)
            return false;
    c->waiting = r->element[0]->integer;
    c->active = r->element[1]->integer;
    it->again = r->element[2]->integer != 0;
    it->forget = r->element[3]->integer != 0;
    c->admitted_total = r->element[4]->integer;
    c->departed_total = r->element[5]->integer;
    c->rate = strtod(r->element[6]->str, NULL);
    c->pace.rate = strtod(r->element[7]->str, NULL);
    c->pace.at_ms = r->element[8]->integer;
    return true;
}

static void on_figures(void *arg, bx_err e, const redisReply *r)
{
    struct tick_item *it = arg;
    struct tick *t = it->t;
    it->ok = e == BX_OK && figures_parse(r, &t->fig[it->i], it);
    if (!it->ok) {
        it->again = false;
        tick_error(t, e != BX_OK ? e : BX_ERR_INTERNAL);
        if (e == BX_OK)
            log_error("waiting room: unexpected reply from the redis tick script");
    }
    fan_done(t);
}

static int figures_send(struct tick *t, size_t j)
{
    size_t i = t->todo[j];
    char batch[16], forget_ms[24];
    struct call k;
    call_init(t->w, &k, t->ids[i], "st", NULL, t->now);
    snprintf(batch, sizeof batch, "%d", EXPIRE_BATCH);
    snprintf(forget_ms, sizeof forget_ms, "%d", FORGET_AFTER_MS);
    call_arg(&k, t->w->cfg_line);
    call_arg(&k, batch);
    call_arg(&k, forget_ms);
    const struct redis_function *s = &t->w->scripts[t->refresh ? S_FIGURES : S_TICK];
    return redis_conn_fcall(t->port->conn, s, k.argc, k.argv, NULL, on_figures, &t->items[i]);
}

static void tick_forget(struct tick *t);

/* The concerts whose expiry batch came back full go round again. */
static void tick_round_end(struct tick *t)
{
    size_t m = 0;
    for (size_t j = 0; j < t->ntodo; j++)
        if (t->items[t->todo[j]].again)
            t->todo[m++] = t->todo[j];
    t->ntodo = m;
    if (m > 0 && ++t->round < EXPIRE_ROUNDS)
        fan_start(t, m, figures_send, tick_round_end);
    else
        tick_forget(t);
}

/* SMEMBERS reply: the concerts to visit. */
static bx_err concerts_parse(struct tick *t, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY)
        return BX_ERR_INTERNAL;
    size_t cap = r->elements ? r->elements : 1;
    t->ids = malloc(cap * sizeof *t->ids);
    t->fig = calloc(cap, sizeof *t->fig);
    t->items = calloc(cap, sizeof *t->items);
    t->todo = malloc(cap * sizeof *t->todo);
    if (t->ids == NULL || t->fig == NULL || t->items == NULL || t->todo == NULL)
        return BX_ERR_INTERNAL;
    for (size_t j = 0; j < r->elements; j++) {
        const redisReply *m = r->element[j];
        char *end;
        errno = 0;
        long long v = m->type == REDIS_REPLY_STRING ? strtoll(m->str, &end, 10) : 0;
        if (m->type != REDIS_REPLY_STRING || errno != 0 || *end != '\0' || v <= 0)
            continue;
        t->ids[t->n] = v;
        t->fig[t->n].concert_id = v;
        t->items[t->n] = (struct tick_item){.t = t, .i = t->n};
        t->todo[t->n] = t->n;
        t->n++;
    }
    t->ntodo = t->n;
    return BX_OK;
}

static void on_concerts(void *arg, bx_err e, const redisReply *r)
{
    struct tick *t = arg;
    if (e == BX_OK)
        e = concerts_parse(t, r);
    if (e != BX_OK) {
        tick_error(t, e); /* the view keeps its old figures, which age out */
        tick_finish(t);
        return;
    }
    fan_start(t, t->ntodo, figures_send, tick_round_end);
}

static void tick_list(struct tick *t)
{
    const char *argv[2] = {"SMEMBERS", t->w->concerts_key};
    if (redis_conn_command(t->port->conn, 2, argv, NULL, on_concerts, t) != 0) {
        tick_error(t, BX_ERR_UNAVAILABLE);
        tick_finish(t);
    }
}

static void tick_publish(struct tick *t);

/* SREM, ZCARD wq, ZCARD al, in that order: a token issued after the tick script
 * found the concert empty is either counted here (and the concert put back) or
 * issued after the look, and then its issue's SADD (list_concert) comes after the
 * SREM. A reply that cannot be read counts as live: put back. */
static void on_forget_reply(void *arg, bx_err e, const redisReply *r)
{
    struct tick_item *it = arg;
    struct tick *t = it->t;
    bool srem = ++it->seen == 1;
    if (e != BX_OK || r->type != REDIS_REPLY_INTEGER)
        it->live++;
    else if (!srem)
        it->live += r->integer;
    if (--it->replies > 0)
        return;
    if (it->live > 0) {
        char id[24];
        snprintf(id, sizeof id, "%" PRId64, t->ids[it->i]);
        const char *sadd[3] = {"SADD", t->w->concerts_key, id};
        if (redis_conn_command(t->port->conn, 3, sadd, NULL, on_listed, NULL) != 0)
            log_warn("waiting room: concert %" PRId64 " may be missing from the housekeeping set", t->ids[it->i]);
        it->forget = false;
    }
    fan_done(t);
}

/* Queues one of the looks; one that cannot be sent counts as live (put back). */
static void forget_look(struct tick *t, struct tick_item *it, const char *key)
{
    const char *zcard[2] = {"ZCARD", key};
    if (redis_conn_command(t->port->conn, 2, zcard, NULL, on_forget_reply, it) == 0)
        it->replies++;
    else
        it->live++;
}

static int forget_send(struct tick *t, size_t j)
{
    struct tick_item *it = &t->items[t->todo[j]];
    char id[24], wq[KEY_MAX], al[KEY_MAX];
    concert_key(t->w, t->ids[it->i], "wq", wq, sizeof wq);
    concert_key(t->w, t->ids[it->i], "al", al, sizeof al);
    snprintf(id, sizeof id, "%" PRId64, t->ids[it->i]);
    const char *srem[3] = {"SREM", t->w->concerts_key, id};
    it->replies = it->seen = 0;
    it->live = 0;
    if (redis_conn_command(t->port->conn, 3, srem, NULL, on_forget_reply, it) != 0)
        return -1;
    it->replies++;
    forget_look(t, it, wq);
    forget_look(t, it, al);
    return 0;
}

/* Drops the concerts that stayed empty from the tick set. */
static void tick_forget(struct tick *t)
{
    t->ntodo = 0;
    for (size_t i = 0; i < t->n && !t->refresh; i++)
        if (t->items[i].ok && t->items[i].forget)
            t->todo[t->ntodo++] = i;
    fan_start(t, t->ntodo, forget_send, tick_publish);
}

/* The view becomes what this tick read: the concerts still listed whose figures it
 * has, as of the tick's start. */
static void tick_publish(struct tick *t)
{
    size_t m = 0;
    for (size_t i = 0; i < t->n; i++)
        if (t->items[i].ok && !t->items[i].forget)
            t->fig[m++] = t->fig[i];
    if (redis_view_publish(t->w->view, t->fig, m, t->now) != 0)
        tick_error(t, BX_ERR_INTERNAL);
    tick_finish(t);
}

static struct tick *tick_new(struct waitroom_port *p, int64_t now, bool refresh, waitroom_done_fn done, void *arg)
{
    struct tick *t = calloc(1, sizeof *t);
    if (t != NULL)
        *t = (struct tick){
            .w = wr_of(p->room), .port = port_of(p), .now = now, .refresh = refresh, .done = done, .arg = arg};
    return t;
}

/* See waitroom.h. Skipped (BX_OK at once) while the previous tick is in flight.
 * Each script is atomic, so any number of instances may tick at once: no token is
 * admitted twice, no concert exceeds active_max. Visits every concert even after
 * an error, and reports the first. */
static void wr_tick(struct waitroom_port *p, int64_t now, waitroom_done_fn done, void *arg)
{
    struct wr *w = wr_of(p->room);
    bool idle = false;
    if (!atomic_compare_exchange_strong(&w->ticking, &idle, true)) {
        count(&w->ticks_skipped);
        done(arg, BX_OK);
        return;
    }
    count(&w->ticks);
    struct tick *t = tick_new(p, now, false, done, arg);
    if (t == NULL) {
        atomic_store(&w->ticking, false);
        done(arg, BX_ERR_UNAVAILABLE);
        return;
    }
    if (now - w->written_back_at >= w->writeback_ms || now < w->written_back_at) {
        w->written_back_at = now;
        tick_write_back(t);
    } else {
        tick_list(t);
    }
}

void waitroom_redis_refresh(struct waitroom_port *p, int64_t now, waitroom_done_fn done, void *arg)
{
    struct tick *t = tick_new(p, now, true, done, arg);
    if (t == NULL)
        done(arg, BX_ERR_UNAVAILABLE);
    else
        tick_list(t);
}

/* See waitroom.h: the view's figures, as of the last tick. */
static bx_err wr_stats(struct waitroom *base, struct waitroom_concert_stats *out, size_t cap, size_t *n)
{
    *n = redis_view_stats(wr_of(base)->view, out, cap);
    return BX_OK;
}

/* ---- ports and the room ---- */

static struct waitroom_port *wr_port_open(struct waitroom *base, h2o_evloop_t *loop, h2o_multithread_queue_t *queue)
{
    (void)queue; /* every answer comes from the port's own connection, on its loop */
    struct wr_port *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->base = (struct waitroom_port){.room = base, .loop = loop};
    p->conn = redis_conn_open(loop, &wr_of(base)->conn_cfg);
    if (p->conn == NULL) {
        free(p);
        return NULL;
    }
    return &p->base;
}

/* Every op in flight answers UNAVAILABLE (redis_conn_close) before this returns. */
static void wr_port_close(struct waitroom_port *base)
{
    struct wr_port *p = port_of(base);
    redis_conn_close(p->conn);
    free(p);
}

/* Every port is closed first. */
static void wr_close(struct waitroom *base)
{
    struct wr *w = wr_of(base);
    if (w == NULL)
        return;
    redis_view_free(w->view);
    free(w->library);
    free(w);
}

const char *waitroom_redis_namespace(const struct waitroom *w)
{
    return ((const struct wr *)w)->ns;
}

struct redis_conn *waitroom_redis_conn(struct waitroom_port *p)
{
    return port_of(p)->conn;
}

void waitroom_redis_counters(struct waitroom *w, struct waitroom_redis_counters *out)
{
    struct wr *r = wr_of(w);
    *out = (struct waitroom_redis_counters){
        .polls_local = atomic_load(&r->polls_local),
        .polls_exact = atomic_load(&r->polls_exact),
        .ticks = atomic_load(&r->ticks),
        .ticks_skipped = atomic_load(&r->ticks_skipped),
        .written_back = atomic_load(&r->written_back),
        .gone = atomic_load(&r->gone),
    };
}

static const struct waitroom_ops wr_ops = {
    .name = "redis",
    .close = wr_close,
    .port_open = wr_port_open,
    .port_close = wr_port_close,
    .ping = wr_ping,
    .issue = wr_issue,
    .status = wr_status,
    .require_active = wr_require_active,
    .leave = wr_leave,
    .complete = wr_complete,
    .tick = wr_tick,
    .stats = wr_stats,
};

/* ---- start-up ---- */

/* Copies [s, s+n) into dst (size cap); -1 when it does not fit. */
static int copy_part(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        return -1;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

static int parse_int(const char *s, size_t n, long lo, long hi, int *out)
{
    char buf[16];
    char *end;
    if (n == 0 || copy_part(buf, sizeof buf, s, n) != 0)
        return -1;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* redis://[[user]:password@]host[:port][/db][?prefix=NAME]; host may be [IPv6].
 * 0, or -1 with the reason in err. */
static int parse_url(struct wr *w, const char *url, char *err, size_t errlen)
{
    const char *p = url + strlen("redis://");
    w->port = 6379;
    w->db = 0;
    snprintf(w->ns, sizeof w->ns, "bx");
    const char *end = p + strcspn(p, "/?");
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL || copy_part(w->user, sizeof w->user, p, (size_t)(colon - p)) != 0 ||
            copy_part(w->password, sizeof w->password, colon + 1, (size_t)(at - colon - 1)) != 0) {
            snprintf(err, errlen, "--queue: credentials must be [user]:password@ in \"%s\"", url);
            return -1;
        }
        p = at + 1;
    }
    const char *host = p, *host_end, *port = NULL;
    if (*p == '[') {
        host = p + 1;
        host_end = memchr(host, ']', (size_t)(end - host));
        if (host_end == NULL) {
            snprintf(err, errlen, "--queue: unclosed [ in \"%s\"", url);
            return -1;
        }
        if (host_end + 1 < end && host_end[1] == ':')
            port = host_end + 2;
    } else {
        host_end = memchr(p, ':', (size_t)(end - p));
        if (host_end)
            port = host_end + 1;
        else
            host_end = end;
    }
    if (host_end == host || copy_part(w->host, sizeof w->host, host, (size_t)(host_end - host)) != 0) {
        snprintf(err, errlen, "--queue: no host in \"%s\"", url);
        return -1;
    }
    if (port && parse_int(port, (size_t)(end - port), 1, 65535, &w->port) != 0) {
        snprintf(err, errlen, "--queue: bad port in \"%s\"", url);
        return -1;
    }
    p = end;
    if (*p == '/') {
        const char *db_end = p + 1 + strcspn(p + 1, "?");
        if (db_end > p + 1 && parse_int(p + 1, (size_t)(db_end - p - 1), 0, 1 << 20, &w->db) != 0) {
            snprintf(err, errlen, "--queue: bad database number in \"%s\"", url);
            return -1;
        }
        p = db_end;
    }
    if (*p == '?') {
        const char *q = p + 1;
        int ok = strncmp(q, "prefix=", 7) == 0;
        size_t n = ok ? strlen(q + 7) : 0;
        ok = ok && n > 0 && n <= NS_MAX;
        for (size_t i = 0; ok && i < n; i++) {
            char ch = q[7 + i];
            ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                 ch == '_' || ch == '.';
        }
        if (!ok) {
            snprintf(err, errlen, "--queue: the only query is ?prefix=NAME (1..%d of [A-Za-z0-9._-]) in \"%s\"", NS_MAX,
                     url);
            return -1;
        }
        memcpy(w->ns, q + 7, n + 1);
    }
    return 0;
}

/* The address to connect to. A name is resolved once, here, before any loop runs:
 * hiredis would resolve it (blocking) at every reconnect. IPv4 first, as hiredis
 * tries. 0, or -1 with the reason in err. */
static int resolve_host(struct wr *w, char *err, size_t errlen)
{
    static const int families[2] = {AF_INET, AF_INET6};
    int rc = EAI_NONAME;
    for (int f = 0; f < 2; f++) {
        struct addrinfo hints = {.ai_family = families[f], .ai_socktype = SOCK_STREAM}, *res;
        rc = getaddrinfo(w->host, NULL, &hints, &res);
        if (rc != 0)
            continue;
        rc = getnameinfo(res->ai_addr, res->ai_addrlen, w->addr, sizeof w->addr, NULL, 0, NI_NUMERICHOST);
        freeaddrinfo(res);
        if (rc == 0)
            return 0;
    }
    snprintf(err, errlen, "redis %s:%d: %s", w->host, w->port, gai_strerror(rc));
    return -1;
}

/* Runs one command that must not fail on the start-up connection; 0 on success. */
static int setup_command(redisContext *rc, const char *what, char *err, size_t errlen, int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(rc, argc, argv, NULL);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "redis %s failed: %s", what, r ? r->str : rc->errstr);
        if (r)
            freeReplyObject(r);
        return -1;
    }
    freeReplyObject(r);
    return 0;
}

/* The start-up connection (blocking: no loop runs yet), authenticated; NULL and err
 * on failure. */
static redisContext *connect_blocking(const struct wr *w, char *err, size_t errlen)
{
    struct timeval tv = {.tv_sec = REPLY_WAIT_MS / 1000, .tv_usec = (REPLY_WAIT_MS % 1000) * 1000};
    redisContext *rc = redisConnectWithTimeout(w->addr, w->port, tv);
    if (rc == NULL) {
        snprintf(err, errlen, "redis %s:%d: out of memory", w->host, w->port);
        return NULL;
    }
    if (rc->err || redisSetTimeout(rc, tv) != REDIS_OK) {
        snprintf(err, errlen, "redis %s:%d: %s", w->host, w->port, rc->err ? rc->errstr : "cannot set the timeout");
        redisFree(rc);
        return NULL;
    }
    if (w->password[0]) {
        const char *argv[3] = {"AUTH", w->user[0] ? w->user : w->password, w->password};
        if (setup_command(rc, "AUTH", err, errlen, w->user[0] ? 3 : 2, argv) != 0) {
            redisFree(rc);
            return NULL;
        }
    }
    return rc;
}

/* The library as FUNCTION LOAD takes it, versioned by a hash of RS_LIBRARY
 * (redis_conn.h, redis_scripts.h). 0, or -1 when out of memory. */
static int library_build(struct wr *w)
{
    char tag[LIBRARY_TAG_LEN + 1];
    w->library = redis_library_text("bx", RS_LIBRARY, tag, sizeof tag);
    if (w->library == NULL)
        return -1;
    for (int s = 0; s < S_COUNT; s++) {
        snprintf(w->script_fn[s], sizeof w->script_fn[s], "%s_%s", tag, script_name[s]);
        w->scripts[s] = (struct redis_function){.library = w->library, .name = w->script_fn[s]};
    }
    return 0;
}

/* FUNCTION LOAD of the library (Redis 7), unless this version is there already; a
 * server that loses it later answers "Function not found", and redis_conn loads
 * it again. */
static int load_scripts(struct wr *w, char *err, size_t errlen)
{
    char why[512];
    if (library_build(w) != 0) {
        snprintf(err, errlen, "waiting room: out of memory");
        return -1;
    }
    redisContext *rc = connect_blocking(w, why, sizeof why);
    if (rc == NULL) {
        snprintf(err, errlen, "waiting room: %s", why);
        return -1;
    }
    const char *argv[3] = {"FUNCTION", "LOAD", w->library};
    redisReply *r = redisCommandArgv(rc, 3, argv, NULL);
    int ok = r != NULL && (r->type == REDIS_REPLY_STRING ||
                           (r->type == REDIS_REPLY_ERROR && strstr(r->str, "' already exists") != NULL));
    if (!ok)
        snprintf(err, errlen, "waiting room: redis FUNCTION LOAD failed (Redis 7 or later is needed): %s",
                 r == NULL                      ? rc->errstr
                 : r->type == REDIS_REPLY_ERROR ? r->str
                                                : "unexpected reply");
    if (r)
        freeReplyObject(r);
    redisFree(rc);
    return ok ? 0 : -1;
}

/* What the ports' connections and the view are made with. */
static int configure(struct wr *w, const struct waitroom_config *cfg)
{
    snprintf(w->concerts_key, sizeof w->concerts_key, "%s:concerts", w->ns);
    snprintf(w->client_name, sizeof w->client_name, "boxoffice-%s", w->ns);
    snprintf(w->cfg_line, sizeof w->cfg_line, "%" PRId64 " %.17g %" PRId64 " %" PRId64 " %s", cfg->active_max,
             cfg->admit_rate, cfg->waiting_idle_ms, cfg->active_idle_ms, EXPIRED_TTL_S);
    w->conn_cfg = (struct redis_conn_config){.host = w->addr,
                                             .port = w->port,
                                             .db = w->db,
                                             .user = w->user,
                                             .password = w->password,
                                             .name = w->client_name,
                                             .reply_wait_ms = REPLY_WAIT_MS,
                                             .retry_ms = RETRY_MS,
                                             .max_queued = MAX_QUEUED};
    /* a quarter of waiting_idle: a client polling on time (a third of it) is
     * written back well before its idle clock in Redis runs out */
    w->writeback_ms = cfg->waiting_idle_ms / 4 < WRITEBACK_MAX_MS ? cfg->waiting_idle_ms / 4 : WRITEBACK_MAX_MS;
    struct redis_view_rules rules = {.fresh_ms = VIEW_FRESH_MS,
                                     .exact_depth = cfg->exact_poll_depth ? cfg->exact_poll_depth : EXACT_DEPTH,
                                     .read_max_ms = READ_MAX_MS,
                                     .drift_div = DRIFT_DIV,
                                     .silent_ms = cfg->waiting_idle_ms / 2};
    w->view = redis_view_new(&rules, TOKEN_SLOTS);
    return w->view ? 0 : -1;
}

/* See waitroom.h. Checks the URL and loads the scripts with one blocking
 * connection (before any loop runs); each port then makes its own. */
struct waitroom *waitroom_redis_open(const char *url, const struct waitroom_config *cfg, char *err, size_t errlen)
{
    if (cfg->active_max < 0 || !(cfg->admit_rate >= 0) || cfg->waiting_idle_ms <= 0 || cfg->active_idle_ms <= 0) {
        snprintf(err, errlen, "waiting room: active_max, admit_rate must be >= 0 and idle times > 0");
        return NULL;
    }
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "--queue: expected redis://host:port/db, got \"%s\"", url);
        return NULL;
    }
    struct wr *w = calloc(1, sizeof *w);
    if (w == NULL) {
        snprintf(err, errlen, "waiting room: out of memory");
        return NULL;
    }
    w->base.ops = &wr_ops;
    w->cfg = *cfg;
    if (parse_url(w, url, err, errlen) != 0 || resolve_host(w, err, errlen) != 0 || load_scripts(w, err, errlen) != 0)
        goto fail;
    if (configure(w, cfg) != 0) {
        snprintf(err, errlen, "waiting room: out of memory");
        goto fail;
    }
    return &w->base;
fail:
    wr_close(&w->base);
    return NULL;
}
