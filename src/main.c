/* main.c — the boxoffice binary: subcommands serve, migrate, seed, audit
 * (docs/CONTRACT.md §7). Start-up and shut-down only; no request handling here. */
#include "app.h"
#include "config.h"
#include "http/server.h"
#include "util/clock.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <h2o/version.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEMO_TITLE "boxoffice Live 2027"

/* The in-process waiting room lives in one process: a second `serve` on the
 * same SQLite file would split the queue, so it is refused. */
static int lock_embedded_db(const struct config *cfg)
{
    if (strncmp(cfg->db, "sqlite:", 7) != 0 || strcmp(cfg->queue, "memory") != 0)
        return 0;
    char path[600];
    snprintf(path, sizeof path, "%s.serve.lock", cfg->db + 7);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("cannot open lock file %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        log_error("another boxoffice already serves %s with the in-process queue; stop it first", cfg->db);
        close(fd);
        return -1;
    }
    return 0; /* held until exit */
}

static int cmd_serve(const struct config *cfg)
{
    /* the port first: a start that cannot serve must not migrate or open anything */
    if (server_listen(cfg) != 0)
        return 1;
    /* app_init creates the database directory and file before we lock beside it */
    if (app_init(cfg) != 0)
        return 1;
    if (lock_embedded_db(cfg) != 0) {
        app_release();
        return 1;
    }
    int rc = server_run();
    app_release();
    return rc;
}

/* Creates the schema in a new database, or applies the migrations an existing
 * one lacks, and says which of the two it did. */
static int cmd_migrate(const struct config *cfg)
{
    struct store *s = app_store_open(cfg, 0);
    if (s == NULL)
        return 1;
    int existed = app_store_is_migrated(s);
    bx_err e = app_store_migrate(cfg, s);
    s->ops->close(s);
    if (e != BX_OK)
        return 1;
    if (existed)
        printf("database %s was already migrated; its schema is up to date\n", cfg->db);
    else
        printf("database %s: schema created\n", cfg->db);
    return 0;
}

static int seed_user(struct store *s, const struct config *cfg, const char *name, const char *pw, int64_t credit)
{
    struct password_cost cost = {(unsigned long long)cfg->pwhash_ops, (size_t)cfg->pwhash_mem_kib * 1024};
    char hash[BX_PWHASH_MAX + 1];
    int64_t id, bal;
    if (password_hash(&cost, pw, strlen(pw), hash) != 0)
        return -1;
    bx_err e = s->ops->user_create(s, name, hash, &id);
    if (e == BX_ERR_NAME_TAKEN)
        return 0;
    if (e != BX_OK)
        return -1;
    struct idem none = {0};
    if (s->ops->balance_charge(s, id, credit, clock_now_ms(), &none, &bal) != BX_OK)
        return -1;
    printf("seeded user %s (password %s, balance %lld)\n", name, pw, (long long)bal);
    return 0;
}

/* Demo data: one concert with three dates of 50 seats at 50,000 won, on sale
 * now, and two users with a balance. Running it again adds nothing. */
static int cmd_seed(const struct config *cfg)
{
    struct store *s = app_store_open(cfg, 0);
    if (s == NULL)
        return 1;
    int rc = 1;
    struct concert *list = NULL;
    size_t n = 0;
    if (s->ops->migrate(s) != BX_OK || s->ops->concert_list(s, &list, &n) != BX_OK)
        goto out;
    int exists = 0;
    for (size_t i = 0; i < n; i++)
        exists |= strcmp(list[i].title, DEMO_TITLE) == 0;
    if (!exists) {
        int64_t concert_id, schedule_id;
        if (s->ops->concert_create(s, DEMO_TITLE, "Olympic Hall, Seoul", &concert_id) != BX_OK)
            goto out;
        int64_t now = clock_now_ms(), day = 86400000;
        for (int d = 0; d < 3; d++) {
            struct schedule sc = {
                .concert_id = concert_id,
                .starts_at = (now / day + 30 + d) * day + 19 * 3600000LL, /* 19:00 UTC, a month out */
                .sale_opens_at = now - 60000,
                .seat_count = 50,
            };
            sc.sale_closes_at = sc.starts_at;
            if (s->ops->schedule_create(s, &sc, 50000, &schedule_id) != BX_OK)
                goto out;
        }
        printf("seeded concert %lld \"%s\" with 3 dates of 50 seats at 50000 won\n", (long long)concert_id,
               DEMO_TITLE);
    } else {
        printf("demo concert already present\n");
    }
    if (seed_user(s, cfg, "alice", "alice-demo-pw", 200000) != 0 || seed_user(s, cfg, "bob", "bob-demo-pw", 200000) != 0)
        goto out;
    rc = 0;
out:
    free(list);
    s->ops->close(s);
    if (rc != 0)
        log_error("seeding failed");
    return rc;
}

static void print_finding(int invariant, const char *finding, void *arg)
{
    (void)arg;
    printf("VIOLATION invariant %d: %s\n", invariant, finding);
}

/* Checks invariants 1-5 (docs/CONTRACT.md §3) against an existing database:
 * exit 0 clean, 1 on any violation, 2 when it could not check (no database,
 * no schema, unreachable). Never creates a database. */
static int cmd_audit(const struct config *cfg)
{
    struct stat st;
    if (strncmp(cfg->db, "sqlite:", 7) == 0) {
        const char *why = stat(cfg->db + 7, &st) != 0 ? strerror(errno) : st.st_size == 0 ? "an empty file" : NULL;
        if (why != NULL) {
            log_error("no database at %s (%s): nothing to audit; check --db (the servers' value), or create it "
                      "with `boxoffice migrate`",
                      cfg->db + 7, why);
            return 2;
        }
    }
    struct store *s = app_store_open(cfg, 0);
    if (s == NULL)
        return 2;
    if (!app_store_is_migrated(s)) {
        log_error("%s is not a boxoffice database (no schema): nothing to audit; check --db, or run `boxoffice "
                  "migrate` first",
                  cfg->db);
        s->ops->close(s);
        return 2;
    }
    int violations = 0;
    bx_err e = s->ops->audit(s, clock_now_ms(), cfg->max_seats_per_user, print_finding, NULL, &violations);
    s->ops->close(s);
    if (e != BX_OK) {
        log_error("audit could not run: %s", bx_err_info(e)->code);
        return 2;
    }
    if (violations > 0) {
        printf("audit: %d violation(s)\n", violations);
        return 1;
    }
    printf("audit: clean (invariants 1-5 of docs/CONTRACT.md hold)\n");
    return 0;
}

int main(int argc, char **argv)
{
    const char *prog = "boxoffice";
    if (sodium_init() < 0) {
        fprintf(stderr, "libsodium failed to initialise\n");
        return 1;
    }
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        config_print_help(prog);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "version") == 0) {
        printf("boxoffice %s (h2o %s, SQLite %s, libsodium %s)\n", BX_VERSION, H2O_VERSION, sqlite3_libversion(),
               sodium_version_string());
        return 0;
    }
    static const struct {
        const char *name;
        int (*run)(const struct config *);
    } cmds[] = {{"serve", cmd_serve}, {"migrate", cmd_migrate}, {"seed", cmd_seed}, {"audit", cmd_audit}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        if (strcmp(argv[1], cmds[i].name) != 0)
            continue;
        struct config cfg;
        int rc = config_load(&cfg, argc - 2, argv + 2, prog);
        if (rc != 0)
            return rc > 0 ? 0 : 2;
        return cmds[i].run(&cfg);
    }
    fprintf(stderr, "unknown command \"%s\" (see %s --help)\n", argv[1], prog);
    return 2;
}
