/* harness.h — drives the real boxoffice binary over real HTTP for tests/http.
 * Starts a server in a fresh temp dir, talks to it with libcurl, parses answers with
 * jansson, and always cleans up (kill + rm -rf, and in scale-out mode DROP DATABASE
 * and the Redis keys).
 *
 * Two modes (CONTRACT §2), chosen by BOXOFFICE_TEST_MODE (or bx_server.mode):
 *  - embedded (default): one `boxoffice serve` on a free loopback port, SQLite file
 *    in the temp dir, in-process waiting room;
 *  - scaleout: a fresh database on the PostgreSQL of BOXOFFICE_TEST_PG_URL, a fresh
 *    key prefix on the Redis of BOXOFFICE_TEST_REDIS_URL, two boxoffice instances
 *    with identical flags and an nginx in front (deploy/nginx.conf rendered into the
 *    temp dir). The tests talk to nginx; a missing URL fails the test loudly.
 * Must not reach into src/: the tests see the server only as a user would. */
#ifndef BX_TEST_HARNESS_H
#define BX_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <curl/curl.h>
#include <jansson.h>

#define BX_ADMIN_KEY "test-admin-key-0123456789"
#define BX_PASSWORD "correct horse battery"
#define BX_MAX_FLAGS 48

enum bx_mode {
    BX_MODE_FROM_ENV = 0, /* BOXOFFICE_TEST_MODE: "embedded" (default) or "scaleout" */
    BX_MODE_EMBEDDED,
    BX_MODE_SCALEOUT,
};

#define BX_MAX_INSTANCES 2

/* One boxoffice process of a server under test. */
struct bx_instance {
    int port;
    pid_t pid;          /* 0 when not running */
    char base_url[64];  /* "http://127.0.0.1:<port>" */
    char log_path[300]; /* stdout + stderr, appended across restarts */
    long log_start;     /* size of the log when this run was started */
};

/* One server under test: one instance (embedded) or two instances behind nginx
 * (scale-out). Owned by the test (usually a file-level global that a Criterion
 * .fini fixture hands to bx_server_cleanup). */
struct bx_server {
    enum bx_mode mode;  /* set before start to force a mode; after start EMBEDDED or SCALEOUT */
    char dir[256];      /* temp dir: bx.db, server logs, nginx files, audit.log */
    char db[300];       /* "sqlite:<dir>/bx.db" or "postgresql://.../bx_t_..." */
    char queue[300];    /* "memory" or "redis://...?prefix=bxt..." */
    char log_path[300]; /* the first instance's log */
    char base_url[64];  /* where the tests talk: the instance (embedded) or nginx (scale-out) */
    int ninst;          /* 1 or 2 */
    struct bx_instance inst[BX_MAX_INSTANCES];
    /* scale-out only */
    pid_t nginx_pid;
    int nginx_port;
    char dbname[64];           /* bx_t_<pid>_<n>_<random> */
    char redis_ns[64];         /* Redis key prefix */
    bool no_admin_key;         /* set before start: run without --admin-key */
    char *flags[BX_MAX_FLAGS]; /* extra flags of the first start, reused by restart and audit */
    int nflags;
};

/* Starts the server (both instances and nginx in scale-out mode) with the default
 * test flags plus the NULL-terminated extra flags (e.g. "--hold-ttl", "1", NULL),
 * then waits up to 10 s for GET /readyz == 200 on every instance (and through nginx
 * on each instance in turn). Fails the current test (with the tail of the logs) when
 * the binary is missing, exits or never gets ready, or when scale-out mode lacks its
 * PostgreSQL / Redis URLs. */
void bx_server_start(struct bx_server *s, ...);
/* SIGTERM to every instance, wait up to 5 s each, then SIGKILL. Returns the first
 * exit status that is not a clean exit 0 (as in waitpid), else that of the last
 * instance; -1 if none was running. nginx keeps running. */
int bx_server_stop(struct bx_server *s);
/* SIGKILL (a crash) to every instance, then wait. Returns the last waitpid status. */
int bx_server_kill(struct bx_server *s);
/* Stops it and starts it again on the same database, ports and flags. Fails the
 * test like bx_server_start if it does not come back. */
void bx_server_restart(struct bx_server *s);
/* Starts every stopped (or killed) instance again on the same database, ports and
 * flags; in scale-out mode then waits until nginx routes to each of them again. */
void bx_server_relaunch(struct bx_server *s);
/* bx_server_start with the NULL terminator supplied: BX_START(&srv, "--hold-ttl", "1"). */
#define BX_START(s, ...) bx_server_start((s), ##__VA_ARGS__, (const char *)NULL)
/* Kills the server if running, stops nginx, drops the database and the Redis keys
 * (scale-out), removes the temp dir. Safe to call twice and on a server never
 * started (zero-initialised). Meant for .fini fixtures. */
void bx_server_cleanup(struct bx_server *s);

/* Removes the directory tree at dir (a test's scratch directory), best effort. */
void bx_remove_tree(const char *dir);
/* Prints the last `lines` lines of each instance's log (and nginx's error log) to stderr. */
void bx_server_log_tail(const struct bx_server *s, int lines);
/* "embedded" or "scale-out" (after start). */
const char *bx_server_mode_name(const struct bx_server *s);
bool bx_scaleout(const struct bx_server *s);

/* One instance at a time (scale-out tests; i < s->ninst). */
int bx_instance_stop(struct bx_server *s, int i); /* SIGTERM, as bx_server_stop */
int bx_instance_kill(struct bx_server *s, int i); /* SIGKILL */
/* Starts instance i again on its port and waits for its /readyz (fails the test otherwise). */
void bx_instance_relaunch(struct bx_server *s, int i);
/* Waits until nginx has sent a request to every running instance (after a restart
 * nginx may still count one as failed for fail_timeout). Fails after timeout_ms. */
void bx_wait_balanced(struct bx_server *s, int timeout_ms);

/* Runs `boxoffice audit --db <db>` (the PostgreSQL database in scale-out mode); returns its exit code (or -1) and, when
 * out is not NULL, a malloc'd copy of its stdout+stderr (caller frees). */
int bx_audit(const struct bx_server *s, char **out);

/* Runs the boxoffice binary with args (NULL-terminated, after the program
 * name) in a scrubbed environment (no BOXOFFICE_* variable), stdin /dev/null;
 * with uid > 0 as that user (and its group, uid == gid for nobody), which needs
 * root. Kills it after timeout_ms. Returns its exit code, 128 + the signal if
 * it was killed, -1 if it could not run; *out (may be NULL) gets a malloc'd copy
 * of its stdout+stderr (caller frees). */
int bx_run_bin(const char *const *args, int timeout_ms, int uid, char **out);
/* The same for any program: argv[0] is its path. It runs in a process group of
 * its own, which the timeout kills whole. */
int bx_run(const char *const *argv, int timeout_ms, int uid, char **out);

/* ---- private PostgreSQL / Redis (tests that stop a dependency under load) ----
 * The shared servers of BOXOFFICE_TEST_PG_URL / BOXOFFICE_TEST_REDIS_URL serve
 * every test of the run at once; a test that stops one starts its own with these
 * (tests/harness/pg.sh and redis.sh in a directory of its own) and points those two
 * variables at them before bx_server_start. Main thread only: they fail the test. */

/* pg.sh start DIR: initdb on first use, then start (a restart keeps the port and
 * the data). Writes the admin URL ("postgresql://postgres@127.0.0.1:PORT/postgres"). */
void bx_pg_start(const char *dir, char *url, size_t len);
/* pg.sh stop DIR (fast shutdown: open connections are cut). Returns its exit code. */
int bx_pg_stop(const char *dir);
/* redis.sh start DIR on port (0: a free one) with AOF when appendonly (a stop +
 * start on the same port then keeps every key). Writes "redis://127.0.0.1:PORT/0". */
void bx_redis_start(const char *dir, int port, bool appendonly, char *url, size_t len);
/* redis.sh stop DIR. Returns its exit code. */
int bx_redis_stop(const char *dir);

/* ---- raw HTTP/1.1 on a socket (framing that libcurl will not send) ---- */

/* The port of "http://127.0.0.1:PORT"; -1 if none. */
int bx_url_port(const char *base_url);
/* A blocking TCP connection to 127.0.0.1:port, or -1. */
int bx_raw_connect(int port);
/* Sends req on a new connection and reads until the answer's head and its
 * Content-Length body are in, the peer closes, or timeout_ms passes. Returns the
 * status; 0 when the connection ended without an answer, -1 when it could not
 * connect or timed out. *closed (may be NULL): the server closed the connection
 * (or reset it) after its answer. The answer's first outlen-1 bytes go to out. */
long bx_raw_http(int port, const void *req, size_t len, int timeout_ms, char *out, size_t outlen, bool *closed);

/* ---- HTTP ---- */

/* Optional request headers and body. Zero-initialise and fill what you need. */
struct bx_req {
    const char *bearer;       /* Authorization: Bearer <bearer> */
    const char *queue_token;  /* X-Queue-Token */
    const char *idem_key;     /* Idempotency-Key */
    const char *admin_key;    /* X-Admin-Key */
    const char *header;       /* one more header line, "Name: value" */
    const char *body;         /* raw body */
    const char *content_type; /* default for a body: application/json */
    size_t body_len;          /* 0: strlen(body) */
    bool chunked;             /* send the body with Transfer-Encoding: chunked */
};

/* A response. Owned by the client that made it; freed by bx_client_release. */
struct bx_resp {
    long status; /* 0 on transport failure (see error) */
    char *body;  /* NUL-terminated raw body */
    size_t len;
    json_t *json;         /* parsed body, NULL if not JSON */
    char request_id[128]; /* X-Request-Id ("" if absent) */
    char allow[128];      /* Allow */
    char content_type[128];
    char upstream[128]; /* X-Upstream from nginx: the instance(s) tried ("" without nginx) */
    char retry_after[32]; /* Retry-After ("" if absent) */
    char *headers;        /* every header line as received ("Name: value\r\n"...), NUL-terminated */
    char error[CURL_ERROR_SIZE];
    char what[320]; /* "POST /api/v1/..." for failure messages */
    struct bx_resp *next_owned;
};

/* One client = one CURL handle = one thread. Keeps every response and string it
 * hands out until bx_client_release. */
struct bx_client {
    CURL *curl;
    char base_url[64];
    struct bx_resp *owned;
    char **strs;
    size_t nstrs, capstrs;
};

void bx_client_init(struct bx_client *c, const struct bx_server *s);
/* A client that talks to instance i directly, bypassing nginx. */
void bx_client_init_instance(struct bx_client *c, const struct bx_server *s, int i);
void bx_client_release(struct bx_client *c);
/* Closes the keep-alive connection (before a server restart, for instance). */
void bx_client_reset(struct bx_client *c);

/* Performs one request. Never asserts: safe in worker threads. */
struct bx_resp *bx_http(struct bx_client *c, const char *method, const char *path, const struct bx_req *req);
/* As bx_http with a JSON body; takes ownership of body (may be NULL: no body). */
struct bx_resp *bx_http_json(struct bx_client *c, const char *method, const char *path, const struct bx_req *req,
                             json_t *body);
/* printf into a string owned by the client. */
const char *bx_str(struct bx_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Accessors that tolerate NULL / wrong types (return "" / INT64_MIN / false). */
const char *bx_jstr(const json_t *j, const char *key);
int64_t bx_jint(const json_t *j, const char *key);
/* In a GET /users/me/reservations answer, the id of the user's HELD reservation of
 * (schedule, seat), or 0: finds a hold whose own answer was lost (crash, failover). */
int64_t bx_find_held(const json_t *reservations_answer, int64_t schedule_id, int seat_no);
bool bx_jnull(const json_t *j, const char *key); /* key present with null */
/* The value of response header `name` (any case; the last one when repeated),
 * copied into out; NULL when the response has no such header. */
const char *bx_header(const struct bx_resp *r, const char *name, char *out, size_t len);
/* error.code of an error body, "" when the body has no error object. */
const char *bx_err_code(const struct bx_resp *r);
const char *bx_err_field(const struct bx_resp *r);
/* true when the body is exactly {"error":{"code":string,"message":string[,"field":string]}}. */
bool bx_is_error_shape(const struct bx_resp *r);

/* ---- flows (main test thread only: these assert and fail the test) ---- */

/* Asserts the status and, when code != NULL, the error code; prints the request
 * and the body on failure. */
#define bx_expect(r, st, code) bx_expect_at((r), (st), (code), __FILE__, __LINE__)
void bx_expect_at(const struct bx_resp *r, long status, const char *code, const char *file, int line);

/* Signs up (201) and logs in (200); returns the access token (client-owned). The
 * user id goes to *user_id when not NULL. */
const char *bx_user(struct bx_client *c, const char *name, int64_t *user_id);
/* Creates a concert (201) and returns its id. */
int64_t bx_admin_concert(struct bx_client *c, const char *title);
/* Creates a schedule of `seats` seats at `price` on sale now; returns its id. */
int64_t bx_admin_schedule(struct bx_client *c, int64_t concert_id, int seats, int64_t price);
/* Issues a queue token (200 or 201); returns the token, status into *status. */
const char *bx_queue_issue(struct bx_client *c, const char *bearer, int64_t concert_id, char *status, size_t len);
/* Polls GET /queue/status until ACTIVE (fails after timeout_ms). */
void bx_wait_active(struct bx_client *c, const char *bearer, const char *qtoken, int timeout_ms);
/* Issue + wait until ACTIVE; returns the token. */
const char *bx_queue_active(struct bx_client *c, const char *bearer, int64_t concert_id);
/* Charges (200) and returns the new balance. */
int64_t bx_charge(struct bx_client *c, const char *bearer, int64_t amount);
int64_t bx_balance(struct bx_client *c, const char *bearer);
/* Holds a seat (201) and returns the reservation id. */
int64_t bx_hold(struct bx_client *c, const char *bearer, const char *qtoken, int64_t schedule_id, int seat_no);
/* Pays a reservation (201) and returns the response. */
struct bx_resp *bx_pay(struct bx_client *c, const char *bearer, const char *qtoken, int64_t reservation_id);
/* GET seats (200) and tells whether seat_no is available; *navail = count of
 * available seats when not NULL. */
bool bx_seat_available(struct bx_client *c, const char *bearer, const char *qtoken, int64_t schedule_id, int seat_no,
                       int *navail);

/* The flow helpers above report failures at their caller's line: each call goes
 * through a macro that records __FILE__/__LINE__ first (main thread only). */
void bx_at(const char *file, int line);
#define bx_user(...) (bx_at(__FILE__, __LINE__), bx_user(__VA_ARGS__))
#define bx_admin_concert(...) (bx_at(__FILE__, __LINE__), bx_admin_concert(__VA_ARGS__))
#define bx_admin_schedule(...) (bx_at(__FILE__, __LINE__), bx_admin_schedule(__VA_ARGS__))
#define bx_queue_issue(...) (bx_at(__FILE__, __LINE__), bx_queue_issue(__VA_ARGS__))
#define bx_wait_active(...) (bx_at(__FILE__, __LINE__), bx_wait_active(__VA_ARGS__))
#define bx_queue_active(...) (bx_at(__FILE__, __LINE__), bx_queue_active(__VA_ARGS__))
#define bx_charge(...) (bx_at(__FILE__, __LINE__), bx_charge(__VA_ARGS__))
#define bx_balance(...) (bx_at(__FILE__, __LINE__), bx_balance(__VA_ARGS__))
#define bx_hold(...) (bx_at(__FILE__, __LINE__), bx_hold(__VA_ARGS__))
#define bx_pay(...) (bx_at(__FILE__, __LINE__), bx_pay(__VA_ARGS__))
#define bx_seat_available(...) (bx_at(__FILE__, __LINE__), bx_seat_available(__VA_ARGS__))

/* A unique name: "<prefix>-<pid>-<counter>". */
const char *bx_unique(struct bx_client *c, const char *prefix);
/* Parses an RFC 3339 UTC timestamp ("2030-01-01T19:00:00Z", fraction allowed)
 * into Unix seconds; -1 if it is not one. */
int64_t bx_parse_time(const char *s);
/* Wall clock, Unix seconds. */
int64_t bx_unix_now(void);
/* Monotonic milliseconds. */
int64_t bx_now_ms(void);
void bx_sleep_ms(int ms);
/* Sleeps until the access token (<userId>.<expiresAtUnix>.<sig>) has expired, and
 * 100 ms more; fails the test on a token without that shape. */
void bx_sleep_past_expiry(const char *access_token);

#endif
