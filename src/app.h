/* app.h — the process-wide state of a serving boxoffice, built once at start-up
 * by main.c and read-only afterwards (except the waitroom, which locks itself). */
#ifndef BX_APP_H
#define BX_APP_H

#include <signal.h>

#include "config.h"
#include "queue/waitroom.h"
#include "store/store.h"
#include "util/password.h"
#include "util/ratelimit.h"
#include "util/token.h"

struct app {
    struct config cfg;
    unsigned char secret[TOKEN_SECRET_LEN];
    struct password_cost pwcost;
    struct waitroom *waitroom; /* shared by all loops */
    struct ratelimit *limits;  /* per user and action (api/auth.c) */
    volatile sig_atomic_t stopping;
};

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
