/* seed.c — bulk seeding for the benchmarks (bench/run.sh), linked against
 * libboxoffice_core.a. Goes through the store interface (store/store.h), so the
 * data is exactly what the server would have written, but spends argon2id time
 * once: every bench user gets the same password hash. Access tokens are signed
 * here with the server's own secret (token_access_sign), so no log-in round trip
 * is needed.
 *
 *   seed --db URL --users N [--from K] [--charge-first M --amount A]
 *        [--concert TITLE:SCHEDULES:SEATS:PRICE]... [--tokens FILE] [--ttl SEC]
 *
 * Users are named bench-NNNNNNN (K..K+N-1); the first M of them get A won charged
 * through balance_charge (a CHARGE ledger entry, so the audit balances). --tokens
 * writes "userId accessToken" per line for every seeded user. Prints one JSON line:
 * {"users":[first,last],"concerts":[{"concertId":..,"schedules":[..]}],"seconds":..}. */
#include "store/store.h"
#include "util/password.h"
#include "util/token.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CONCERTS 16

struct concert_spec {
    char title[64];
    int schedules, seats;
    long long price;
    int64_t id;
    int64_t *sched_ids;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *what, bx_err e)
{
    fprintf(stderr, "seed: %s failed: %s\n", what, bx_err_info(e)->code);
    exit(1);
}

static void usage(void)
{
    fprintf(stderr, "usage: seed --db URL --users N [--from K] [--charge-first M --amount A]\n"
                    "            [--concert TITLE:SCHEDULES:SEATS:PRICE]... [--tokens FILE] [--ttl SEC]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *db = NULL, *tokens_path = NULL;
    long long users = 0, from = 1, charge_first = 0, amount = 0, ttl = 86400;
    struct concert_spec cs[MAX_CONCERTS];
    int ncs = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(a, "--db") == 0)
            db = v;
        else if (strcmp(a, "--users") == 0)
            users = atoll(v);
        else if (strcmp(a, "--from") == 0)
            from = atoll(v);
        else if (strcmp(a, "--charge-first") == 0)
            charge_first = atoll(v);
        else if (strcmp(a, "--amount") == 0)
            amount = atoll(v);
        else if (strcmp(a, "--tokens") == 0)
            tokens_path = v;
        else if (strcmp(a, "--ttl") == 0)
            ttl = atoll(v);
        else if (strcmp(a, "--concert") == 0) {
            if (ncs == MAX_CONCERTS)
                usage();
            struct concert_spec *c = &cs[ncs];
            memset(c, 0, sizeof *c);
            if (sscanf(v, "%63[^:]:%d:%d:%lld", c->title, &c->schedules, &c->seats, &c->price) != 4 ||
                c->schedules < 1 || c->seats < 1)
                usage();
            ncs++;
        } else
            usage();
    }
    if (db == NULL || users < 0 || from < 1)
        usage();
    if (sodium_init() < 0) {
        fprintf(stderr, "seed: sodium_init failed\n");
        return 1;
    }

    double t0 = now_s();
    char err[256];
    /* Relaxed: bench data need not survive power loss; the servers reopen the file
     * with their own (FULL) setting. PostgreSQL ignores the flag. */
    struct store *s = store_open(db, STORE_OPEN_RELAXED, err, sizeof err);
    if (s == NULL) {
        fprintf(stderr, "seed: %s\n", err);
        return 1;
    }
    bx_err e = s->ops->migrate(s);
    if (e != BX_OK)
        die("migrate", e);
    unsigned char secret[TOKEN_SECRET_LEN];
    e = s->ops->secret_get_or_create(s, secret);
    if (e != BX_OK)
        die("secret_get_or_create", e);

    /* One argon2id hash (the server's default cost) shared by every bench user:
     * their password is "bench-password". */
    struct password_cost cost = {.opslimit = 2, .memlimit = 65536u * 1024u};
    char pwhash[BX_PWHASH_MAX + 1];
    if (password_hash(&cost, "bench-password", strlen("bench-password"), pwhash) != 0) {
        fprintf(stderr, "seed: password_hash failed\n");
        return 1;
    }

    FILE *tf = NULL;
    if (tokens_path) {
        tf = fopen(tokens_path, "w");
        if (tf == NULL) {
            perror(tokens_path);
            return 1;
        }
    }
    int64_t exp_sec = now_ms() / 1000 + ttl;
    int64_t first_id = 0, last_id = 0;
    for (long long i = 0; i < users; i++) {
        char name[32];
        snprintf(name, sizeof name, "bench-%07lld", from + i);
        int64_t uid;
        e = s->ops->user_create(s, name, pwhash, &uid);
        if (e != BX_OK)
            die("user_create", e);
        if (i == 0)
            first_id = uid;
        last_id = uid;
        if (i < charge_first) {
            int64_t bal;
            e = s->ops->balance_charge(s, uid, amount, now_ms(), &(struct idem){0}, &bal);
            if (e != BX_OK)
                die("balance_charge", e);
        }
        if (tf) {
            char tok[ACCESS_TOKEN_MAX];
            token_access_sign(secret, uid, exp_sec, tok, sizeof tok);
            fprintf(tf, "%lld %s\n", (long long)uid, tok);
        }
    }
    if (tf && fclose(tf) != 0) {
        perror(tokens_path);
        return 1;
    }

    int64_t now = now_ms();
    for (int c = 0; c < ncs; c++) {
        e = s->ops->concert_create(s, cs[c].title, "Bench Hall", &cs[c].id);
        if (e != BX_OK)
            die("concert_create", e);
        cs[c].sched_ids = calloc((size_t)cs[c].schedules, sizeof(int64_t));
        for (int k = 0; k < cs[c].schedules; k++) {
            struct schedule sc = {.concert_id = cs[c].id,
                                  .starts_at = now + (int64_t)(k + 30) * 86400000,
                                  .sale_opens_at = now - 3600000,
                                  .sale_closes_at = now + (int64_t)(k + 29) * 86400000,
                                  .seat_count = cs[c].seats};
            e = s->ops->schedule_create(s, &sc, cs[c].price, &cs[c].sched_ids[k]);
            if (e != BX_OK)
                die("schedule_create", e);
        }
    }
    s->ops->close(s);

    printf("{\"users\":[%lld,%lld],\"concerts\":[", (long long)first_id, (long long)last_id);
    for (int c = 0; c < ncs; c++) {
        printf("%s{\"concertId\":%lld,\"schedules\":[", c ? "," : "", (long long)cs[c].id);
        for (int k = 0; k < cs[c].schedules; k++)
            printf("%s%lld", k ? "," : "", (long long)cs[c].sched_ids[k]);
        printf("]}");
        free(cs[c].sched_ids);
    }
    printf("],\"seconds\":%.2f}\n", now_s() - t0);
    return 0;
}
