/* app.c — start-up and shut-down of the shared state (app.h). */
#include "app.h"
#include "queue/waitroom_redis.h"
#include "util/clock.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct app app;

/* After a SQLite database could not be opened or written: when permissions are
 * the likely cause, says which directory or file this user cannot write and
 * what to do. SQLite creates the file, and its -wal and -shm files beside it, so
 * the directory must be writable, not only the file. */
static void hint_sqlite_access(const char *db)
{
    if (strncmp(db, "sqlite:", 7) != 0 || strcmp(db + 7, ":memory:") == 0)
        return;
    char dir[512];
    snprintf(dir, sizeof dir, "%s", db + 7);
    const char *file = db + 7, *what = NULL;
    struct stat st;
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    while (stat(dir, &st) != 0) { /* the nearest directory that exists */
        slash = strrchr(dir, '/');
        if (slash == NULL) {
            snprintf(dir, sizeof dir, ".");
            break;
        }
        if (slash == dir) {
            dir[1] = '\0';
            break;
        }
        *slash = '\0';
    }
    if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) != 0 && (errno == EACCES || errno == EROFS))
        what = dir;
    else if (stat(file, &st) == 0 && faccessat(AT_FDCWD, file, R_OK | W_OK, AT_EACCESS) != 0 &&
             (errno == EACCES || errno == EROFS))
        what = file;
    if (what == NULL)
        return;
    uid_t uid = geteuid();
    struct passwd *pw = getpwuid(uid);
    const char *user = pw != NULL ? pw->pw_name : "this user";
    if (errno == EROFS)
        log_error("%s is on a read-only file system: boxoffice needs to write its database there; choose another "
                  "--db path",
                  what);
    else
        log_error("permission denied: %s is not writable by user %s (uid %u), and boxoffice must create and write its "
                  "database files there (the file, and its -wal and -shm beside it); give that user the directory "
                  "(e.g. chown -R %s %s) or choose another --db path",
                  what, user, (unsigned)uid, user, what == dir ? dir : file);
}

struct store *app_store_open(const struct config *cfg, int flags)
{
    char err[256];
    struct store *s = store_open(cfg->db, flags, err, sizeof err);
    if (s == NULL) {
        log_error("cannot open database %s: %s", cfg->db, err);
        hint_sqlite_access(cfg->db);
    }
    return s;
}

bx_err app_store_migrate(const struct config *cfg, struct store *s)
{
    bx_err e = s->ops->migrate(s);
    if (e != BX_OK) {
        log_error("migration of %s failed: %s", cfg->db, bx_err_info(e)->code);
        hint_sqlite_access(cfg->db);
    }
    return e;
}

int app_store_is_migrated(struct store *s)
{
    /* the store reports a missing table as a raw SQL error on stderr: keep it
     * out of sight for this one question (single-threaded subcommands only) */
    fflush(stderr);
    int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (saved >= 0 && null >= 0)
        dup2(null, STDERR_FILENO);
    bx_err e = s->ops->ping(s);
    if (saved >= 0) {
        dup2(saved, STDERR_FILENO);
        close(saved);
    }
    if (null >= 0)
        close(null);
    return e == BX_OK;
}

/* --secret given: the HMAC key is a hash of it (any length in, 32 bytes out);
 * otherwise the random key stored in the database, shared by all instances. */
static int load_secret(struct store *s)
{
    if (app.cfg.secret[0] != '\0') {
        crypto_generichash(app.secret, sizeof app.secret, (const unsigned char *)app.cfg.secret, strlen(app.cfg.secret),
                           NULL, 0);
        return 0;
    }
    bx_err e = s->ops->secret_get_or_create(s, app.secret);
    if (e != BX_OK) {
        log_error("cannot read or create the token secret: %s", bx_err_info(e)->code);
        return -1;
    }
    return 0;
}

int app_init(const struct config *cfg)
{
    memset(&app, 0, sizeof app);
    app.cfg = *cfg;
    app.pwcost.opslimit = (unsigned long long)cfg->pwhash_ops;
    app.pwcost.memlimit = (size_t)cfg->pwhash_mem_kib * 1024;

    struct store *s = app_store_open(cfg, 0);
    if (s == NULL)
        return -1;
    if (app_store_migrate(cfg, s) != BX_OK) {
        s->ops->close(s);
        return -1;
    }
    int rc = load_secret(s);
    s->ops->close(s);
    if (rc != 0)
        return -1;

    char err[256];
    if (netaddr_set_parse(cfg->trusted_proxy, &app.trusted_proxies, err, sizeof err) != 0) {
        log_error("--trusted-proxy: %s", err);
        return -1;
    }
    app.limits = ratelimit_new(cfg->rate_limit, cfg->rate_burst);
    app.address_limits = ratelimit_new(cfg->address_rate_limit, cfg->address_rate_burst);
    /* log-in guessing (api/sessions.c): per address after 4 x --login-tries, per
     * (name, address) after --login-tries, per name from unmarked addresses after
     * 20 times as many; then 1 s doubling to 60 s */
    app.login_addresses =
        backoff_new(cfg->login_tries * LOGIN_ADDRESS_FACTOR, LOGIN_FIRST_DELAY_MS, LOGIN_MAX_DELAY_MS, LOGIN_FORGET_MS);
    app.login_pairs = backoff_new(cfg->login_tries, LOGIN_FIRST_DELAY_MS, LOGIN_MAX_DELAY_MS, LOGIN_FORGET_MS);
    app.login_names =
        backoff_new(cfg->login_tries * LOGIN_NAME_FACTOR, LOGIN_FIRST_DELAY_MS, LOGIN_MAX_DELAY_MS, LOGIN_FORGET_MS);
    app.login_marks = backoff_new(1, 1, 1, LOGIN_MARK_MS);
    if (app.limits == NULL || app.address_limits == NULL || app.login_addresses == NULL || app.login_pairs == NULL ||
        app.login_names == NULL || app.login_marks == NULL) {
        log_error("out of memory for the rate limiters");
        return -1;
    }
    /* only the in-memory waiting room persists through the store (Redis keeps its
     * own): a connection opened to be closed costs PostgreSQL a backend start */
    struct store *persist = NULL;
    if (strcmp(cfg->queue, "memory") == 0 && (persist = app_store_open(cfg, STORE_OPEN_RELAXED)) == NULL)
        return -1;
    struct waitroom_config wcfg = {
        .active_max = cfg->active_max,
        .admit_rate = cfg->admit_rate,
        .waiting_idle_ms = cfg->waiting_idle * 1000,
        .active_idle_ms = cfg->active_idle * 1000,
    };
    app.waitroom = waitroom_open(cfg->queue, &wcfg, persist, clock_now_ms(), err, sizeof err);
    if (app.waitroom == NULL) {
        log_error("cannot open the waiting room %s: %s", cfg->queue, err);
        return -1;
    }
    if (strncmp(cfg->queue, "redis://", 8) == 0) {
        app.shared_limits =
            ratelimit_redis_new(waitroom_redis_namespace(app.waitroom), cfg->rate_limit, cfg->rate_burst);
        if (app.shared_limits == NULL) {
            log_error("out of memory for the rate limiters");
            return -1;
        }
    }
    return 0;
}

void app_release(void)
{
    if (app.waitroom != NULL)
        app.waitroom->ops->close(app.waitroom);
    app.waitroom = NULL;
    ratelimit_free(app.limits);
    ratelimit_redis_free(app.shared_limits);
    ratelimit_free(app.address_limits);
    backoff_free(app.login_addresses);
    backoff_free(app.login_pairs);
    backoff_free(app.login_names);
    backoff_free(app.login_marks);
    app.limits = app.address_limits = NULL;
    app.shared_limits = NULL;
    app.login_addresses = app.login_pairs = app.login_names = app.login_marks = NULL;
    sodium_memzero(app.secret, sizeof app.secret);
}
