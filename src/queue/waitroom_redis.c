/* waitroom_redis.c — the scale-out waiting room (CONTRACT §2, §4; DESIGN "Waiting room
 * (Redis)"): the queues live in Redis, so any number of boxoffice instances share
 * them. Every operation on a concert is one atomic Lua script (redis_scripts.h) run
 * with one EVALSHA round trip; this file only builds keys, moves arguments and
 * replies, and computes ETA / pollAfterMs with domain/queue_rules.c. It keeps no
 * queue state of its own and must not do queue arithmetic in C that a script
 * would need to see atomically.
 *
 * Keys (see redis_scripts.h): per concert C, "{NS:C}:..." — one hash tag, so one
 * Redis Cluster slot per concert; plus one set "NS:concerts" of concerts that may
 * have live tokens, read only by tick and stats. NS is "bx" unless the URL says
 * ?prefix=NAME (several deployments, or parallel tests, on one Redis).
 *
 * Threads: one struct waitroom is shared by all event loops; each calling thread
 * gets its own redisContext (a pthread key, connected lazily), so calls never share
 * a connection and take no lock. Blocking I/O with 2 s timeouts: a call never hangs;
 * on an I/O error the thread's connection is dropped and re-made on a later call. */
#include "queue/waitroom.h"
#include "queue/redis_scripts.h"
#include "util/log.h"
#include "util/token.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define IO_TIMEOUT_MS 2000      /* connect and per-command timeout */
#define RECONNECT_AFTER_MS 1000 /* a thread whose connect failed waits this long before trying again */
#define EXPIRED_TTL_S "86400"   /* an EXPIRED token answers TOKEN_EXPIRED / NOT_YOURS for a day */
#define EXPIRE_BATCH 1000       /* idle expiries per list per script call */
#define EXPIRE_ROUNDS 16        /* script calls per concert per tick while batches come back full */
#define FORGET_AFTER_MS 3600000 /* an empty concert leaves the tick set an hour after its last issue */
#define NS_MAX 64
#define KEY_MAX (NS_MAX + 64)
#define ISSUE_TRIES 3

enum script { S_ISSUE, S_STATUS, S_REQUIRE_ACTIVE, S_END, S_TICK, S_COUNT };

static const char *const script_src[S_COUNT] = {
    [S_ISSUE] = RS_ISSUE, [S_STATUS] = RS_STATUS, [S_REQUIRE_ACTIVE] = RS_REQUIRE_ACTIVE,
    [S_END] = RS_END,     [S_TICK] = RS_TICK,
};

/* Reply codes of the scripts (redis_scripts.h). */
enum { RC_OK = 0, RC_INVALID = 1, RC_NOT_YOURS = 2, RC_EXPIRED = 3, RC_NOT_ACTIVE = 4, RC_EXISTS = 5 };

struct wr;

/* One thread's connection; owned by struct wr (on its list), used only by that
 * thread. rc is NULL while disconnected. */
struct conn {
    redisContext *rc;
    int64_t retry_at; /* monotonic ms before which no reconnect is tried */
    struct wr *owner;
    struct conn *prev, *next;
};

/* The waiting room. Everything but `mu` and the conn list is immutable after open,
 * so threads read it without a lock; mu guards only the list of connections. */
struct wr {
    struct waitroom base;
    struct waitroom_config cfg;
    char host[256];
    int port;
    int db;
    char user[128];
    char password[256];
    char ns[NS_MAX + 1];
    char concerts_key[NS_MAX + 16];
    char sha[S_COUNT][41];
    char cfg_arg[4][32]; /* active_max, admit_rate, waiting_idle_ms, active_idle_ms as script arguments */
    pthread_key_t key;
    pthread_mutex_t mu;
    struct conn *conns;
};

/* The keys of one concert, in the order of the scripts' KEYS, then the token prefix. */
enum { K_SEQ, K_WQ, K_WL, K_AL, K_USERS, K_ST, K_TOKEN, K_COUNT };
struct ckeys {
    char k[K_COUNT][KEY_MAX + BX_QUEUE_TOKEN_LEN];
    char prefix[KEY_MAX];
};

static struct wr *wr_of(struct waitroom *w)
{
    return (struct wr *)w;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void concert_keys(const struct wr *w, int64_t concert_id, const char *token, struct ckeys *k)
{
    static const char *const suffix[K_TOKEN] = {"seq", "wq", "wl", "al", "users", "st"};
    for (int i = 0; i < K_TOKEN; i++)
        snprintf(k->k[i], sizeof k->k[i], "{%s:%" PRId64 "}:%s", w->ns, concert_id, suffix[i]);
    snprintf(k->prefix, sizeof k->prefix, "{%s:%" PRId64 "}:t:", w->ns, concert_id);
    snprintf(k->k[K_TOKEN], sizeof k->k[K_TOKEN], "%s%s", k->prefix, token ? token : "");
}

/* ---- connections ---- */

static void conn_drop(struct conn *c)
{
    if (c->rc) {
        redisFree(c->rc);
        c->rc = NULL;
    }
}

/* pthread key destructor: the thread exits, its connection goes. */
static void conn_release(void *arg)
{
    struct conn *c = arg;
    struct wr *w = c->owner;
    pthread_mutex_lock(&w->mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&w->mu);
    conn_drop(c);
    free(c);
}

/* Runs one command that must not fail on a fresh connection; 0 on success. */
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

/* A new connection, authenticated and on the right db; NULL and err on failure. */
static redisContext *connect_new(const struct wr *w, char *err, size_t errlen)
{
    struct timeval tv = {.tv_sec = IO_TIMEOUT_MS / 1000, .tv_usec = (IO_TIMEOUT_MS % 1000) * 1000};
    redisContext *rc = redisConnectWithTimeout(w->host, w->port, tv);
    if (rc == NULL) {
        snprintf(err, errlen, "redis %s:%d: out of memory", w->host, w->port);
        return NULL;
    }
    if (rc->err) {
        snprintf(err, errlen, "redis %s:%d: %s", w->host, w->port, rc->errstr);
        goto fail;
    }
    if (redisSetTimeout(rc, tv) != REDIS_OK || redisEnableKeepAlive(rc) != REDIS_OK) {
        snprintf(err, errlen, "redis %s:%d: cannot set socket options", w->host, w->port);
        goto fail;
    }
    if (w->password[0]) {
        const char *argv[3] = {"AUTH", w->user[0] ? w->user : w->password, w->password};
        if (setup_command(rc, "AUTH", err, errlen, w->user[0] ? 3 : 2, argv) != 0)
            goto fail;
    }
    if (w->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", w->db);
        const char *argv[2] = {"SELECT", db};
        if (setup_command(rc, "SELECT", err, errlen, 2, argv) != 0)
            goto fail;
    }
    char name[NS_MAX + 16];
    snprintf(name, sizeof name, "boxoffice-%s", w->ns);
    const char *argv[3] = {"CLIENT", "SETNAME", name}; /* shows in CLIENT LIST; failure is harmless */
    redisReply *r = redisCommandArgv(rc, 3, argv, NULL);
    if (r == NULL) {
        snprintf(err, errlen, "redis %s:%d: %s", w->host, w->port, rc->errstr);
        goto fail;
    }
    freeReplyObject(r);
    return rc;
fail:
    redisFree(rc);
    return NULL;
}

/* The calling thread's connected context; NULL (BX_ERR_UNAVAILABLE for the caller)
 * when Redis cannot be reached — then no new attempt for RECONNECT_AFTER_MS. */
static struct conn *conn_get(struct wr *w)
{
    struct conn *c = pthread_getspecific(w->key);
    if (c == NULL) {
        c = calloc(1, sizeof *c);
        if (c == NULL)
            return NULL;
        c->owner = w;
        if (pthread_setspecific(w->key, c) != 0) {
            free(c);
            return NULL;
        }
        pthread_mutex_lock(&w->mu);
        c->next = w->conns;
        if (w->conns)
            w->conns->prev = c;
        w->conns = c;
        pthread_mutex_unlock(&w->mu);
    }
    if (c->rc)
        return c;
    int64_t t = mono_ms();
    if (t < c->retry_at)
        return NULL;
    char err[512];
    c->rc = connect_new(w, err, sizeof err);
    if (c->rc == NULL) {
        c->retry_at = t + RECONNECT_AFTER_MS;
        log_warn("waiting room: %s", err);
        return NULL;
    }
    return c;
}

/* ---- one script call ---- */

/* Maps an error reply: transient server states are UNAVAILABLE, anything else
 * (a script error is a bug) INTERNAL. */
static bx_err reply_error(const redisReply *r)
{
    static const char *const transient[] = {"LOADING",  "BUSY",  "READONLY", "MASTERDOWN", "OOM",    "CLUSTERDOWN",
                                            "TRYAGAIN", "MOVED", "ASK",      "NOAUTH",     "MISCONF"};
    for (size_t i = 0; i < sizeof transient / sizeof transient[0]; i++) {
        size_t n = strlen(transient[i]);
        if (strncmp(r->str, transient[i], n) == 0 && (r->str[n] == ' ' || r->str[n] == '\0')) {
            log_warn("waiting room: redis: %s", r->str);
            return BX_ERR_UNAVAILABLE;
        }
    }
    log_error("waiting room: redis: %s", r->str);
    return BX_ERR_INTERNAL;
}

/* An I/O or protocol error: the connection is dropped, the caller gets UNAVAILABLE. */
static bx_err io_error(struct conn *c)
{
    log_warn("waiting room: redis connection lost: %s", c->rc ? c->rc->errstr : "?");
    conn_drop(c);
    return BX_ERR_UNAVAILABLE;
}

#define ARGS_MAX 24

/* A script call under construction: EVALSHA sha numkeys keys... args... */
struct call {
    const char *argv[ARGS_MAX];
    size_t len[ARGS_MAX];
    int argc;
    char nkeys[8];
    char now[24];
};

static void call_init(struct wr *w, struct call *k, enum script s, const struct ckeys *keys, int nkeys, int64_t now)
{
    k->argc = 0;
    k->argv[k->argc++] = "EVALSHA";
    k->argv[k->argc++] = w->sha[s];
    snprintf(k->nkeys, sizeof k->nkeys, "%d", nkeys);
    k->argv[k->argc++] = k->nkeys;
    for (int i = 0; i < nkeys; i++)
        k->argv[k->argc++] = keys->k[i];
    snprintf(k->now, sizeof k->now, "%" PRId64, now);
    k->argv[k->argc++] = keys->prefix;
    k->argv[k->argc++] = k->now;
    for (int i = 0; i < 4; i++)
        k->argv[k->argc++] = w->cfg_arg[i];
    k->argv[k->argc++] = EXPIRED_TTL_S;
}

static void call_arg(struct call *k, const char *a)
{
    k->argv[k->argc++] = a;
}

static void call_lengths(struct call *k)
{
    for (int i = 0; i < k->argc; i++)
        k->len[i] = strlen(k->argv[i]);
}

/* Appends the call to the connection's output buffer; EVAL with the source when
 * `source` (the server lost its script cache). */
static int call_append(struct conn *c, struct call *k, enum script s, int source)
{
    k->argv[0] = source ? "EVAL" : "EVALSHA";
    k->argv[1] = source ? script_src[s] : c->owner->sha[s];
    k->len[0] = strlen(k->argv[0]);
    k->len[1] = strlen(k->argv[1]);
    return redisAppendCommandArgv(c->rc, k->argc, k->argv, k->len);
}

static int is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/* Runs script s with one round trip (two when the server's script cache was
 * flushed: then once more with EVAL and the source, which caches it again).
 * `after`, when not NULL, is a command of argc_after arguments pipelined right
 * behind the script on the same connection, so Redis runs it after the script;
 * its reply is discarded. *out is an array reply the caller frees. */
static bx_err call_run(struct wr *w, struct call *k, enum script s, int argc_after, const char **after,
                       redisReply **out)
{
    struct conn *c = conn_get(w);
    *out = NULL;
    if (c == NULL)
        return BX_ERR_UNAVAILABLE;
    call_lengths(k);
    for (int source = 0; source < 2; source++) {
        redisReply *r = NULL, *r2 = NULL;
        if (call_append(c, k, s, source) != REDIS_OK ||
            (after && redisAppendCommandArgv(c->rc, argc_after, after, NULL) != REDIS_OK))
            return io_error(c);
        if (redisGetReply(c->rc, (void **)&r) != REDIS_OK)
            return io_error(c);
        if (after && redisGetReply(c->rc, (void **)&r2) != REDIS_OK) {
            freeReplyObject(r);
            return io_error(c);
        }
        if (r2)
            freeReplyObject(r2);
        if (is_noscript(r) && source == 0) {
            freeReplyObject(r);
            continue;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            bx_err e = reply_error(r);
            freeReplyObject(r);
            return e;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->element[0]->type != REDIS_REPLY_INTEGER) {
            log_error("waiting room: unexpected reply from redis script %d", (int)s);
            freeReplyObject(r);
            return BX_ERR_INTERNAL;
        }
        *out = r;
        return BX_OK;
    }
    return BX_ERR_INTERNAL; /* not reached */
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

/* Fills a ticket from a script's ticket reply {0, "W"|"A", position, rate}. */
static bx_err ticket_from(const struct wr *w, const redisReply *r, struct queue_ticket *t)
{
    if (r->elements < 4 || r->element[1]->type != REDIS_REPLY_STRING || r->element[2]->type != REDIS_REPLY_INTEGER ||
        r->element[3]->type != REDIS_REPLY_STRING)
        return BX_ERR_INTERNAL;
    double rate = strtod(r->element[3]->str, NULL);
    if (r->element[1]->str[0] == 'A') {
        t->status = QUEUE_ACTIVE;
        t->position = 0;
        t->eta_seconds = 0;
        t->poll_after_ms = queue_poll_after_ms(1, 0, &w->cfg);
    } else {
        t->status = QUEUE_WAITING;
        t->position = r->element[2]->integer;
        t->eta_seconds = queue_eta_seconds(t->position, rate, &w->cfg);
        t->poll_after_ms = queue_poll_after_ms(0, t->eta_seconds, &w->cfg);
    }
    return BX_OK;
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

/* ---- the ops ---- */

/* Frees every thread's connection. No other thread may be inside the waiting room,
 * nor exit concurrently (its key destructor would race with this). */
static void wr_close(struct waitroom *base)
{
    struct wr *w = wr_of(base);
    if (w == NULL)
        return;
    pthread_key_delete(w->key); /* no destructor runs after this */
    for (struct conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        conn_drop(c);
        free(c);
    }
    pthread_mutex_destroy(&w->mu);
    free(w);
}

static bx_err wr_ping(struct waitroom *base)
{
    struct wr *w = wr_of(base);
    struct conn *c = conn_get(w);
    if (c == NULL)
        return BX_ERR_UNAVAILABLE;
    redisReply *r = redisCommand(c->rc, "PING");
    if (r == NULL)
        return io_error(c);
    bx_err e = BX_OK;
    if (r->type == REDIS_REPLY_ERROR)
        e = reply_error(r);
    freeReplyObject(r);
    return e;
}

/* See waitroom.h. One round trip: the issue script, then SADD of the concert to the
 * tick set pipelined behind it (so the set names the concert after any tick that
 * could have missed the new token: see forget_concert). */
static bx_err wr_issue(struct waitroom *base, int64_t user_id, int64_t concert_id, int64_t now,
                       struct queue_ticket *out, bool *created)
{
    struct wr *w = wr_of(base);
    if (concert_id <= 0)
        return BX_ERR_CONCERT_NOT_FOUND; /* no token can name it */
    char user[24], concert[24], token[BX_QUEUE_TOKEN_LEN + 1];
    snprintf(user, sizeof user, "%" PRId64, user_id);
    snprintf(concert, sizeof concert, "%" PRId64, concert_id);
    const char *sadd[3] = {"SADD", w->concerts_key, concert};
    for (int tries = 0; tries < ISSUE_TRIES; tries++) {
        struct ckeys keys;
        struct call k;
        redisReply *r;
        token_queue_new_for(concert_id, token);
        concert_keys(w, concert_id, token, &keys);
        call_init(w, &k, S_ISSUE, &keys, K_COUNT, now);
        call_arg(&k, user);
        call_arg(&k, token);
        bx_err e = call_run(w, &k, S_ISSUE, 3, sadd, &r);
        if (e != BX_OK)
            return e;
        long long code = r->element[0]->integer;
        if (code == RC_EXISTS) { /* 2^-128: draw another token */
            freeReplyObject(r);
            continue;
        }
        e = code_error(code);
        if (e == BX_OK && (r->elements < 6 || r->element[4]->type != REDIS_REPLY_STRING ||
                           r->element[4]->len != BX_QUEUE_TOKEN_LEN || r->element[5]->type != REDIS_REPLY_INTEGER))
            e = BX_ERR_INTERNAL;
        if (e == BX_OK) {
            memset(out, 0, sizeof *out);
            e = ticket_from(w, r, out);
            memcpy(out->token, r->element[4]->str, BX_QUEUE_TOKEN_LEN);
            out->token[BX_QUEUE_TOKEN_LEN] = '\0';
            out->user_id = user_id;
            out->concert_id = concert_id;
            *created = r->element[5]->integer != 0;
        }
        freeReplyObject(r);
        return e;
    }
    return BX_ERR_INTERNAL;
}

/* Runs a per-token script (status, require_active, end) on the token's concert. */
static bx_err token_call(struct wr *w, enum script s, const char *token, int64_t user_id, int64_t now, const char *flag,
                         redisReply **out, int64_t *concert_id)
{
    bx_err e = token_concert(token, concert_id);
    if (e != BX_OK)
        return e;
    char user[24];
    snprintf(user, sizeof user, "%" PRId64, user_id);
    struct ckeys keys;
    struct call k;
    concert_keys(w, *concert_id, token, &keys);
    call_init(w, &k, s, &keys, K_COUNT, now);
    call_arg(&k, user);
    call_arg(&k, token);
    if (flag)
        call_arg(&k, flag);
    e = call_run(w, &k, s, 0, NULL, out);
    if (e != BX_OK)
        return e;
    e = code_error((*out)->element[0]->integer);
    if (e != BX_OK) {
        freeReplyObject(*out);
        *out = NULL;
    }
    return e;
}

/* See waitroom.h. One round trip; touches the token. */
static bx_err wr_status(struct waitroom *base, const char *token, int64_t user_id, int64_t now,
                        struct queue_ticket *out)
{
    struct wr *w = wr_of(base);
    redisReply *r;
    int64_t concert_id;
    bx_err e = token_call(w, S_STATUS, token, user_id, now, NULL, &r, &concert_id);
    if (e != BX_OK)
        return e;
    memset(out, 0, sizeof *out);
    e = ticket_from(w, r, out);
    memcpy(out->token, token, BX_QUEUE_TOKEN_LEN);
    out->user_id = user_id;
    out->concert_id = concert_id;
    freeReplyObject(r);
    return e;
}

/* See waitroom.h. One round trip; a token of another concert still goes to its own
 * concert's script, so unknown / not yours / expired win over NOT_ACTIVE. */
static bx_err wr_require_active(struct waitroom *base, const char *token, int64_t user_id, int64_t concert_id,
                                int64_t now)
{
    struct wr *w = wr_of(base);
    redisReply *r;
    int64_t tok_concert;
    bx_err e = token_concert(token, &tok_concert);
    if (e != BX_OK)
        return e;
    e = token_call(w, S_REQUIRE_ACTIVE, token, user_id, now, tok_concert == concert_id ? "1" : "0", &r, &tok_concert);
    if (e == BX_OK)
        freeReplyObject(r);
    return e;
}

static bx_err end_token(struct waitroom *base, const char *token, int64_t user_id, int64_t now, bool active_only)
{
    struct wr *w = wr_of(base);
    redisReply *r;
    int64_t concert_id;
    bx_err e = token_call(w, S_END, token, user_id, now, active_only ? "1" : "0", &r, &concert_id);
    if (e == BX_OK)
        freeReplyObject(r);
    return e;
}

/* See waitroom.h: expire, then admit the next in line — one script. */
static bx_err wr_leave(struct waitroom *base, const char *token, int64_t user_id, int64_t now)
{
    return end_token(base, token, user_id, now, false);
}

static bx_err wr_complete(struct waitroom *base, const char *token, int64_t user_id, int64_t now)
{
    return end_token(base, token, user_id, now, true);
}

/* The concert ids of the tick set; *ids is malloc'd (caller frees), sorted. */
static bx_err concert_list(struct wr *w, int64_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    struct conn *c = conn_get(w);
    if (c == NULL)
        return BX_ERR_UNAVAILABLE;
    redisReply *r = redisCommand(c->rc, "SMEMBERS %s", w->concerts_key);
    if (r == NULL)
        return io_error(c);
    bx_err e = BX_OK;
    if (r->type == REDIS_REPLY_ERROR) {
        e = reply_error(r);
    } else if (r->type != REDIS_REPLY_ARRAY) {
        e = BX_ERR_INTERNAL;
    } else if (r->elements > 0) {
        *ids = malloc(r->elements * sizeof **ids);
        if (*ids == NULL) {
            e = BX_ERR_INTERNAL;
        } else {
            for (size_t i = 0; i < r->elements; i++) {
                const redisReply *m = r->element[i];
                char *end;
                errno = 0;
                long long v = m->type == REDIS_REPLY_STRING ? strtoll(m->str, &end, 10) : 0;
                if (m->type == REDIS_REPLY_STRING && errno == 0 && *end == '\0' && v > 0)
                    (*ids)[(*n)++] = v;
            }
        }
    }
    freeReplyObject(r);
    if (e != BX_OK) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return e;
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Drops a concert that stayed empty from the tick set. SREM, then (same connection,
 * so in this order) a look at its sets: a token issued after the script that found
 * it empty is either seen here and the concert put back, or issued after this look,
 * and then its issue's SADD (pipelined behind the issue script) comes after our SREM. */
static bx_err forget_concert(struct wr *w, int64_t concert_id)
{
    struct conn *c = conn_get(w);
    if (c == NULL)
        return BX_ERR_UNAVAILABLE;
    struct ckeys keys;
    char id[24];
    concert_keys(w, concert_id, NULL, &keys);
    snprintf(id, sizeof id, "%" PRId64, concert_id);
    redisReply *r[3] = {NULL, NULL, NULL};
    bx_err e = BX_OK;
    if (redisAppendCommand(c->rc, "SREM %s %s", w->concerts_key, id) != REDIS_OK ||
        redisAppendCommand(c->rc, "ZCARD %s", keys.k[K_WQ]) != REDIS_OK ||
        redisAppendCommand(c->rc, "ZCARD %s", keys.k[K_AL]) != REDIS_OK)
        return io_error(c);
    for (int i = 0; i < 3; i++)
        if (redisGetReply(c->rc, (void **)&r[i]) != REDIS_OK) {
            e = io_error(c);
            break;
        }
    long long live = 0;
    for (int i = 1; i < 3 && e == BX_OK; i++)
        live += r[i]->type == REDIS_REPLY_INTEGER ? r[i]->integer : 1;
    for (int i = 0; i < 3; i++)
        if (r[i])
            freeReplyObject(r[i]);
    if (e == BX_OK && live > 0) {
        redisReply *back = redisCommand(c->rc, "SADD %s %s", w->concerts_key, id);
        if (back == NULL)
            return io_error(c);
        freeReplyObject(back);
    }
    return e;
}

/* See waitroom.h. Visits every concert of the tick set: all tick scripts pipelined
 * in one round trip, repeated (up to EXPIRE_ROUNDS) for the concerts whose expiry
 * batch came back full. Each script is atomic, so any number of instances may tick
 * at once: no token is admitted twice, no concert exceeds active_max. Returns the
 * first error but visits every concert. */
static bx_err wr_tick(struct waitroom *base, int64_t now)
{
    struct wr *w = wr_of(base);
    int64_t *ids, *gone = NULL;
    size_t n, ngone = 0;
    bx_err e = concert_list(w, &ids, &n);
    if (e != BX_OK || n == 0)
        return e;
    gone = malloc(n * sizeof *gone);
    if (gone == NULL) {
        free(ids);
        return BX_ERR_INTERNAL;
    }
    char batch[16], forget_ms[24];
    snprintf(batch, sizeof batch, "%d", EXPIRE_BATCH);
    snprintf(forget_ms, sizeof forget_ms, "%d", FORGET_AFTER_MS);
    int source = 0; /* the server lost its script cache: send the source this round */
    for (int round = 0; round < EXPIRE_ROUNDS && n > 0; round++) {
        struct conn *c = conn_get(w);
        if (c == NULL) {
            e = BX_ERR_UNAVAILABLE;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            struct call k;
            struct ckeys keys;
            concert_keys(w, ids[i], NULL, &keys);
            call_init(w, &k, S_TICK, &keys, K_TOKEN, now);
            call_arg(&k, batch);
            call_arg(&k, forget_ms);
            call_lengths(&k);
            if (call_append(c, &k, S_TICK, source) != REDIS_OK) {
                e = io_error(c);
                goto out;
            }
        }
        size_t again = 0;
        source = 0;
        for (size_t i = 0; i < n; i++) {
            redisReply *r = NULL;
            if (redisGetReply(c->rc, (void **)&r) != REDIS_OK) {
                e = io_error(c);
                goto out;
            }
            int redo = 0;
            if (is_noscript(r)) {
                redo = source = 1;
            } else if (r->type == REDIS_REPLY_ERROR) {
                if (e == BX_OK)
                    e = reply_error(r);
            } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 4 && r->element[2]->type == REDIS_REPLY_INTEGER &&
                       r->element[3]->type == REDIS_REPLY_INTEGER) {
                if (r->element[3]->integer != 0) /* empty: nothing left to expire either */
                    gone[ngone++] = ids[i];
                else
                    redo = r->element[2]->integer != 0;
            } else if (e == BX_OK) {
                e = BX_ERR_INTERNAL;
            }
            freeReplyObject(r);
            if (redo)
                ids[again++] = ids[i];
        }
        n = again;
    }
    for (size_t i = 0; i < ngone; i++) { /* the pipeline is drained: the connection is free */
        bx_err fe = forget_concert(w, gone[i]);
        if (e == BX_OK)
            e = fe;
    }
out:
    free(ids);
    free(gone);
    return e;
}

/* See waitroom.h; concerts of the tick set in id order, one pipelined round trip. */
static bx_err wr_stats(struct waitroom *base, struct waitroom_concert_stats *out, size_t cap, size_t *n)
{
    struct wr *w = wr_of(base);
    int64_t *ids;
    size_t m;
    *n = 0;
    bx_err e = concert_list(w, &ids, &m);
    if (e != BX_OK)
        return e;
    if (m > 0) /* ids is NULL when the set is empty: qsort's pointer is nonnull */
        qsort(ids, m, sizeof *ids, cmp_id);
    if (m > cap)
        m = cap;
    struct conn *c = m ? conn_get(w) : NULL;
    if (m && c == NULL)
        e = BX_ERR_UNAVAILABLE;
    for (size_t i = 0; i < m && e == BX_OK; i++) {
        struct ckeys keys;
        concert_keys(w, ids[i], NULL, &keys);
        if (redisAppendCommand(c->rc, "ZCARD %s", keys.k[K_WQ]) != REDIS_OK ||
            redisAppendCommand(c->rc, "ZCARD %s", keys.k[K_AL]) != REDIS_OK ||
            redisAppendCommand(c->rc, "HMGET %s admitted_total rate", keys.k[K_ST]) != REDIS_OK)
            e = io_error(c);
    }
    for (size_t i = 0; i < m && e == BX_OK; i++) {
        redisReply *r[3] = {NULL, NULL, NULL};
        for (int j = 0; j < 3 && e == BX_OK; j++)
            if (redisGetReply(c->rc, (void **)&r[j]) != REDIS_OK)
                e = io_error(c);
        if (e == BX_OK) {
            if (r[0]->type != REDIS_REPLY_INTEGER || r[1]->type != REDIS_REPLY_INTEGER ||
                r[2]->type != REDIS_REPLY_ARRAY || r[2]->elements != 2) {
                e = BX_ERR_INTERNAL; /* the rest of the pipeline is read below */
            } else {
                const redisReply *tot = r[2]->element[0], *rate = r[2]->element[1];
                out[*n] = (struct waitroom_concert_stats){
                    .concert_id = ids[i],
                    .waiting = r[0]->integer,
                    .active = r[1]->integer,
                    .admitted_total = tot->type == REDIS_REPLY_STRING ? strtoll(tot->str, NULL, 10) : 0,
                    .admit_rate_avg = rate->type == REDIS_REPLY_STRING ? strtod(rate->str, NULL) : 0};
                (*n)++;
            }
        }
        for (int j = 0; j < 3; j++)
            if (r[j])
                freeReplyObject(r[j]);
        if (e == BX_ERR_INTERNAL) { /* drain the replies still queued, keep the connection usable */
            for (size_t rest = (m - i - 1) * 3; rest > 0; rest--) {
                redisReply *x;
                if (redisGetReply(c->rc, (void **)&x) != REDIS_OK) {
                    io_error(c);
                    break;
                }
                freeReplyObject(x);
            }
            break;
        }
    }
    free(ids);
    return e;
}

/* ---- ports (TRANSITIONAL: the blocking calls above, answered at once; replaced
 * by the asynchronous connection of the redis branch) ---- */

static struct waitroom_port *sync_port_open(struct waitroom *w, h2o_evloop_t *loop, h2o_multithread_queue_t *queue)
{
    (void)queue;
    struct waitroom_port *p = calloc(1, sizeof *p);
    if (p != NULL)
        *p = (struct waitroom_port){.room = w, .loop = loop};
    return p;
}

static void sync_port_close(struct waitroom_port *p)
{
    free(p);
}

static void sync_ping(struct waitroom_port *p, waitroom_done_fn done, void *arg)
{
    done(arg, wr_ping(p->room));
}

static void sync_issue(struct waitroom_port *p, int64_t user_id, int64_t concert_id, int64_t now,
                       struct queue_ticket *out, bool *created, waitroom_done_fn done, void *arg)
{
    done(arg, wr_issue(p->room, user_id, concert_id, now, out, created));
}

static void sync_status(struct waitroom_port *p, const char *token, int64_t user_id, int64_t now,
                        struct queue_ticket *out, waitroom_done_fn done, void *arg)
{
    done(arg, wr_status(p->room, token, user_id, now, out));
}

static void sync_require_active(struct waitroom_port *p, const char *token, int64_t user_id, int64_t concert_id,
                                int64_t now, waitroom_done_fn done, void *arg)
{
    done(arg, wr_require_active(p->room, token, user_id, concert_id, now));
}

static void sync_leave(struct waitroom_port *p, const char *token, int64_t user_id, int64_t now,
                       waitroom_done_fn done, void *arg)
{
    done(arg, wr_leave(p->room, token, user_id, now));
}

static void sync_complete(struct waitroom_port *p, const char *token, int64_t user_id, int64_t now,
                          waitroom_done_fn done, void *arg)
{
    done(arg, wr_complete(p->room, token, user_id, now));
}

static void sync_tick(struct waitroom_port *p, int64_t now, waitroom_done_fn done, void *arg)
{
    done(arg, wr_tick(p->room, now));
}

static const struct waitroom_ops wr_ops = {
    .name = "redis",
    .close = wr_close,
    .port_open = sync_port_open,
    .port_close = sync_port_close,
    .ping = sync_ping,
    .issue = sync_issue,
    .status = sync_status,
    .require_active = sync_require_active,
    .leave = sync_leave,
    .complete = sync_complete,
    .tick = sync_tick,
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

/* See waitroom.h. Connects once on the calling thread to check the URL, loads the
 * scripts (their SHA1s are then fixed for the object's life) and keeps that
 * connection as this thread's. */
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
    if (parse_url(w, url, err, errlen) != 0) {
        free(w);
        return NULL;
    }
    snprintf(w->concerts_key, sizeof w->concerts_key, "%s:concerts", w->ns);
    snprintf(w->cfg_arg[0], sizeof w->cfg_arg[0], "%" PRId64, cfg->active_max);
    snprintf(w->cfg_arg[1], sizeof w->cfg_arg[1], "%.17g", cfg->admit_rate);
    snprintf(w->cfg_arg[2], sizeof w->cfg_arg[2], "%" PRId64, cfg->waiting_idle_ms);
    snprintf(w->cfg_arg[3], sizeof w->cfg_arg[3], "%" PRId64, cfg->active_idle_ms);
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        snprintf(err, errlen, "waiting room: cannot create its mutex");
        free(w);
        return NULL;
    }
    if (pthread_key_create(&w->key, conn_release) != 0) {
        snprintf(err, errlen, "waiting room: no thread-specific key left");
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    char why[512];
    redisContext *rc = connect_new(w, why, sizeof why);
    if (rc == NULL) {
        snprintf(err, errlen, "waiting room: %s", why);
        goto fail;
    }
    for (int s = 0; s < S_COUNT; s++) {
        redisReply *r = redisCommand(rc, "SCRIPT LOAD %s", script_src[s]);
        if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 40) {
            snprintf(err, errlen, "waiting room: redis SCRIPT LOAD failed: %s",
                     r == NULL                      ? rc->errstr
                     : r->type == REDIS_REPLY_ERROR ? r->str
                                                    : "unexpected reply");
            if (r)
                freeReplyObject(r);
            redisFree(rc);
            goto fail;
        }
        memcpy(w->sha[s], r->str, 40);
        freeReplyObject(r);
    }
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL || pthread_setspecific(w->key, c) != 0) {
        free(c);
        redisFree(rc);
        snprintf(err, errlen, "waiting room: out of memory");
        goto fail;
    }
    c->rc = rc;
    c->owner = w;
    w->conns = c;
    return &w->base;
fail:
    pthread_key_delete(w->key);
    pthread_mutex_destroy(&w->mu);
    free(w);
    return NULL;
}
