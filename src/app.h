/* app.h — the process-wide state of a serving boxoffice, built once at start-up
 * by main.c and read-only afterwards (except the waitroom, which locks itself). */
#ifndef BX_APP_H
#define BX_APP_H

#include <signal.h>

#include "config.h"
#include "queue/ratelimit_redis.h"
#include "queue/waitroom.h"
#include "store/store.h"
#include "util/backoff.h"
#include "util/netaddr.h"
#include "util/password.h"
#include "util/ratelimit.h"
#include "util/token.h"

struct app {
    struct config cfg;
    unsigned char secret[TOKEN_SECRET_LEN];
    struct password_cost pwcost;
    struct waitroom *waitroom;          /* shared by all loops */
    struct ratelimit *limits;           /* per user and action (api/auth.c) */
    struct ratelimit_redis *shared_limits; /* the same, shared by the instances (scale-out only) */
    struct ratelimit *address_limits;   /* sign-ups and log-ins per client address */
    struct backoff *login_addresses;    /* log-ins per client address, whatever the name */
    struct backoff *login_pairs;        /* log-ins per (name, client address) */
    struct backoff *login_names;        /* log-ins per name from addresses without a mark */
    struct backoff *login_marks;        /* (name, client address) that logged in or signed up */
    struct netaddr_set trusted_proxies; /* --trusted-proxy */
    volatile sig_atomic_t stopping;
};

/* Log-in guessing (api/sessions.c, app.login_*): after --login-tries failed
 * attempts of one name from one client address, LOGIN_ADDRESS_FACTOR times as many
 * from one address whatever the names, or LOGIN_NAME_FACTOR times as many of one
 * name from addresses that never logged in to it, each further attempt waits 1 s,
 * 2 s, 4 s ... up to 60 s; counts leak away over 15 minutes (util/backoff.h),
 * marks (a sign-up or log-in of that name from that address) last 30 days. */
#define LOGIN_ADDRESS_FACTOR 4
#define LOGIN_NAME_FACTOR 20
#define LOGIN_FIRST_DELAY_MS 1000LL
#define LOGIN_MAX_DELAY_MS 60000LL
#define LOGIN_FORGET_MS (15LL * 60 * 1000)
#define LOGIN_MARK_MS (30LL * 24 * 3600 * 1000)

/* The single instance; set by app_init. */
extern struct app app;

/* Opens a store connection, migrates, derives the secret, opens the waiting room.
 * 0 on success; prints the reason and returns -1 otherwise. */
int app_init(const struct config *cfg);
void app_release(void);

/* Opens a store for the configured --db, printing the reason on failure (and,
 * for a SQLite file, which directory or file this user cannot write). */
struct store *app_store_open(const struct config *cfg, int flags);
/* Migrates s, printing the reason (and the permission hint) on failure. */
bx_err app_store_migrate(const struct config *cfg, struct store *s);
/* 1 when s holds boxoffice's schema, without the store's raw error on stderr
 * when it does not. For the single-threaded subcommands (migrate, audit). */
int app_store_is_migrated(struct store *s);

#endif
