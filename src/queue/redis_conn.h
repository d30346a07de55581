/* redis_conn.h — one asynchronous Redis connection driven by an h2o event loop:
 * hiredis' async API with its socket registered on the loop, so many commands are
 * in flight at once (pipelined) and the loop never waits on the network. Owned and
 * used by one loop thread; nothing here is thread-safe. It knows RESP, FCALL (and
 * loading a function's library again when the server lost it) and the
 * connection's set-up (AUTH, SELECT, CLIENT SETNAME), nothing of what the commands
 * mean.
 *
 * Replies come back in the order the commands were queued. Bounds: each command
 * has a deadline, reply_wait_ms from when it is queued. All deadlines have the same
 * length and replies come in order, so the first deadline to pass is the oldest
 * command's: the server is then taken as frozen or unreachable (a SIGSTOPped Redis
 * still accepts connections), the connection is dropped, every command in flight
 * fails with BX_ERR_UNAVAILABLE and no late reply is ever read.
 *
 * Reconnecting: a connection that worked and is lost (closed by the server, reset)
 * is replaced at once, and commands queued meanwhile wait for the new one; after a
 * failed attempt or a stuck connection the next attempt waits retry_ms, and until a
 * connection has answered its set-up, commands are refused at once instead of
 * waiting for a server that does not answer. */
#ifndef BX_QUEUE_REDIS_CONN_H
#define BX_QUEUE_REDIS_CONN_H

#define H2O_USE_LIBUV 0
#include <h2o.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "domain/errors.h"

struct redis_conn;

struct redis_conn_config {
    const char *host; /* an address: a name would be resolved, blocking, at each connect */
    int port;
    int db;                /* SELECT after connecting, unless 0 */
    const char *user;      /* AUTH user password when both are set (Redis 6 ACL) */
    const char *password;  /* AUTH password when only it is set; NULL or "": no AUTH */
    const char *name;      /* CLIENT SETNAME (shows in CLIENT LIST); NULL: none */
    int64_t reply_wait_ms; /* a command's deadline from when it is queued */
    int64_t retry_ms;      /* between connection attempts while the server stays away */
    size_t max_queued;     /* commands in flight; past it the send functions refuse */
};

/* A function of a Redis Functions library (Redis 7), run by FCALL. library is the
 * whole library as FUNCTION LOAD takes it ("#!lua name=..." first); name is one
 * of the functions it registers. */
struct redis_function {
    const char *library;
    const char *name;
};

/* A library as FUNCTION LOAD takes it, named after a hash of its code (FNV-1a):
 *   #!lua name=<family>_<16 hex digits>
 *   local V = '<that name>_'
 * followed by lua, whose functions register as V..'name'. Each version of the code
 * thus has its own functions, and instances of two versions (a rolling upgrade)
 * each call theirs on the same keys. The name goes to tag (cap >= strlen(family)
 * + 18). Returns the text (free it), or NULL when out of memory. */
char *redis_library_text(const char *family, const char *lua, char *tag, size_t cap);

/* The outcome of one command, called exactly once, on the loop, never from inside
 * the function that queued it:
 *   e == BX_OK:              reply is the server's answer (never an error reply).
 *   e == BX_ERR_UNAVAILABLE: reply is an error reply of a passing server state
 *                            (LOADING, BUSY, READONLY, OOM…), or NULL: connection
 *                            lost, deadline passed or closed; whether the command
 *                            ran is unknown.
 *   e == BX_ERR_INTERNAL:    reply is any other error reply (a script error, a bad
 *                            command): a bug, logged here.
 * reply is freed after done returns. */
typedef void (*redis_done_fn)(void *arg, bx_err e, const redisReply *reply);

/* Starts connecting at once (non-blocking); commands queued meanwhile are sent when
 * the connection is up. cfg and everything it points to must outlive the
 * connection. NULL only when out of memory. */
struct redis_conn *redis_conn_open(h2o_evloop_t *loop, const struct redis_conn_config *cfg);
/* Fails every command in flight with BX_ERR_UNAVAILABLE (their done runs before this
 * returns; commands they queue are refused), then closes the connection and frees
 * it. Not from inside one of its own done callbacks. */
void redis_conn_close(struct redis_conn *c);

/* Queues one command of argc arguments (argvlen NULL: NUL-terminated strings;
 * copied before return). Returns 0 when queued (done will run), -1 when refused
 * without calling done: the connection is down or not yet proven, max_queued is
 * reached, or out of memory. */
int redis_conn_command(struct redis_conn *c, int argc, const char *const *argv, const size_t *argvlen,
                       redis_done_fn done, void *arg);
/* FCALL fn->name followed by argv (numkeys, the keys, the arguments). When the
 * server does not know the function ("Function not found": restarted without
 * persistence, FUNCTION FLUSH or DELETE), FUNCTION LOAD of its library is queued,
 * then the FCALL once more; done sees the reply of the second FCALL. A library
 * that another connection loaded meanwhile ("already exists") is no error. A
 * command queued behind the first FCALL may then run before it. Same return as
 * redis_conn_command. */
int redis_conn_fcall(struct redis_conn *c, const struct redis_function *fn, int argc, const char *const *argv,
                     const size_t *argvlen, redis_done_fn done, void *arg);

/* True while a connection is up and has answered its set-up. */
bool redis_conn_is_up(const struct redis_conn *c);
/* Commands in flight (queued, sent, not yet answered). */
size_t redis_conn_pending(const struct redis_conn *c);

/* What the connection did since it was opened (for tests and metrics). */
struct redis_conn_counters {
    uint64_t commands; /* queued, set-up included */
    uint64_t reloads;  /* FCALL answered "Function not found": library loaded, FCALL sent again */
    uint64_t refused;  /* send functions that returned -1 */
    uint64_t stuck;    /* connections dropped for a passed deadline */
    uint64_t lost;     /* connections dropped (stuck ones too, and the last at close) or failed */
    uint64_t connects; /* connection attempts */
};
void redis_conn_counters(const struct redis_conn *c, struct redis_conn_counters *out);

#endif
