/* config.h — every setting of boxoffice: a flag, its BOXOFFICE_* environment
 * variable and its default (CONTRACT §7). Flags win over the environment. */
#ifndef BX_CONFIG_H
#define BX_CONFIG_H

#include <stdint.h>

struct config {
    char listen_host[64];
    int listen_port;
    int threads;
    char db[512];
    char queue[512];
    char secret[256];    /* empty: generated and stored in the database */
    char admin_key[256]; /* empty: admin API off */
    int64_t hold_ttl;    /* seconds */
    int64_t active_max;
    double admit_rate;
    int64_t waiting_idle; /* seconds */
    int64_t active_idle;  /* seconds */
    int max_seats_per_user;
    double rate_limit; /* per user and action, per second; 0 = off */
    double rate_burst;
    double address_rate_limit; /* sign-ups and log-ins per client address, per second; 0 = off */
    double address_rate_burst;
    int login_tries;           /* log-ins per (name, client address) before backoff */
    int64_t hash_wait;         /* ms of argon2 work the pool's queue may hold */
    char trusted_proxy[512];   /* addresses / CIDR blocks whose X-Forwarded-For is believed */
    int64_t session_ttl;  /* seconds */
    int64_t pwhash_ops;
    int64_t pwhash_mem_kib;
    char web_root[512];
    char log_level[16];
};

/* Parses argv (after the subcommand) over the environment and defaults. Returns
 * 0 on success, 1 when --help was printed, -1 after printing an error. */
int config_load(struct config *cfg, int argc, char **argv, const char *prog);
void config_print_help(const char *prog);

#endif
