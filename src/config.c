/* config.c — flags, BOXOFFICE_* environment and defaults (CONTRACT §7). One table
 * drives parsing, the environment lookup and --help, so they cannot disagree. */
#include "config.h"
#include "util/log.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum opt_kind { OPT_STR, OPT_INT, OPT_DOUBLE, OPT_LISTEN };

struct opt {
    const char *flag;
    enum opt_kind kind;
    size_t offset;
    size_t size;       /* strings: buffer size */
    int64_t min, max;  /* integers */
    const char *deflt; /* shown by --help and applied first */
    const char *help;
};

#define STR(f) OPT_STR, offsetof(struct config, f), sizeof(((struct config *)0)->f)
#define INT(f) OPT_INT, offsetof(struct config, f), sizeof(((struct config *)0)->f)

static const struct opt opts[] = {
    {"listen", OPT_LISTEN, 0, 0, 0, 0, "127.0.0.1:8080", "address and port to serve on"},
    {"threads", INT(threads), 0, 256, "0", "event loops (0 = number of cores)"},
    {"db", STR(db), 0, 0, "sqlite:data/boxoffice.db", "storage: sqlite:<path> or postgresql://..."},
    {"queue", STR(queue), 0, 0, "memory", "waiting room: memory or redis://host:port/db[?prefix=name]"},
    {"secret", STR(secret), 0, 0, "", "HMAC key for access tokens (default: generated, stored in the database)"},
    {"admin-key", STR(admin_key), 0, 0, "", "X-Admin-Key value for the admin API (default: admin API off)"},
    {"hold-ttl", INT(hold_ttl), 1, 86400, "300", "seconds a seat hold lasts"},
    {"active-max", INT(active_max), 1, 10000000, "1000", "ACTIVE queue tokens per concert"},
    {"admit-rate", OPT_DOUBLE, offsetof(struct config, admit_rate), 0, 0, 1000000, "0",
     "admissions per second per concert (0 = no limit)"},
    {"waiting-idle", INT(waiting_idle), 1, 86400, "120", "seconds without a poll before a WAITING token expires"},
    {"active-idle", INT(active_idle), 1, 86400, "300", "seconds without a request before an ACTIVE token expires"},
    {"max-seats-per-user", INT(max_seats_per_user), 1, 10000, "4", "seats per user per schedule, held or sold"},
    {"rate-limit", OPT_DOUBLE, offsetof(struct config, rate_limit), 0, 0, 1000000, "20",
     "per-user requests per second for queue tokens, holds and charges, one budget over all instances (0 = off)"},
    {"rate-burst", OPT_DOUBLE, offsetof(struct config, rate_burst), 0, 1, 1000000, "100",
     "per-user burst allowed above --rate-limit"},
    {"address-rate-limit", OPT_DOUBLE, offsetof(struct config, address_rate_limit), 0, 0, 1000000, "5",
     "sign-ups and log-ins per second per client address (0 = off)"},
    {"address-rate-burst", OPT_DOUBLE, offsetof(struct config, address_rate_burst), 0, 1, 1000000, "20",
     "burst of sign-ups and log-ins allowed per client address above --address-rate-limit"},
    {"login-tries", INT(login_tries), 1, 1000, "5",
     "log-ins per account name and client address before each further one waits 1 s, 2 s, 4 s ... (max 60 s); "
     "from addresses that never logged in to that name, 20 times as many per name"},
    {"hash-wait", INT(hash_wait), 1, 600000, "2000",
     "milliseconds a sign-up or log-in may expect to wait for a password-hashing thread; past it, 503 with "
     "Retry-After"},
    {"trusted-proxy", STR(trusted_proxy), 0, 0, "",
     "comma-separated addresses or CIDR blocks of proxies whose X-Forwarded-For / X-Real-IP name the client "
     "(default: none, the headers are ignored)"},
    {"session-ttl", INT(session_ttl), 1, 31536000, "86400", "seconds an access token stays valid"},
    {"pwhash-ops", INT(pwhash_ops), 1, 16, "2", "argon2id passes (opslimit)"},
    {"pwhash-mem-kib", INT(pwhash_mem_kib), 8, 4194304, "65536", "argon2id memory in KiB (memlimit)"},
    {"web-root", STR(web_root), 0, 0, "web", "directory of the web page served at /"},
    {"log-level", STR(log_level), 0, 0, "info", "debug, info, warn or error"},
};
#define NOPTS (sizeof opts / sizeof opts[0])

static void env_name(const char *flag, char *out, size_t len)
{
    size_t j = (size_t)snprintf(out, len, "BOXOFFICE_");
    for (size_t i = 0; flag[i] && j + 1 < len; i++)
        out[j++] = (char)(flag[i] == '-' ? '_' : flag[i] >= 'a' && flag[i] <= 'z' ? flag[i] - 32 : flag[i]);
    out[j] = '\0';
}

static int set_opt(struct config *cfg, const struct opt *o, const char *val, const char *source)
{
    char *base = (char *)cfg;
    char *end;
    switch (o->kind) {
    case OPT_STR:
        if (strlen(val) >= o->size) {
            fprintf(stderr, "%s: value too long for --%s\n", source, o->flag);
            return -1;
        }
        strcpy(base + o->offset, val);
        return 0;
    case OPT_INT: {
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (errno || end == val || *end || v < o->min || v > o->max) {
            fprintf(stderr, "%s: --%s must be an integer from %lld to %lld, got \"%s\"\n", source, o->flag,
                    (long long)o->min, (long long)o->max, val);
            return -1;
        }
        if (o->size == sizeof(int))
            *(int *)(base + o->offset) = (int)v;
        else
            *(int64_t *)(base + o->offset) = v;
        return 0;
    }
    case OPT_DOUBLE: {
        errno = 0;
        double v = strtod(val, &end);
        if (errno || end == val || *end || !(v >= (double)o->min && v <= (double)o->max)) {
            fprintf(stderr, "%s: --%s must be a number from %lld to %lld, got \"%s\"\n", source, o->flag,
                    (long long)o->min, (long long)o->max, val);
            return -1;
        }
        *(double *)(base + o->offset) = v;
        return 0;
    }
    case OPT_LISTEN: {
        const char *colon = strrchr(val, ':');
        long port = colon ? strtol(colon + 1, &end, 10) : -1;
        if (colon == NULL || colon == val || (size_t)(colon - val) >= sizeof cfg->listen_host || *end ||
            port < 0 || port > 65535) {
            fprintf(stderr, "%s: --listen must be host:port, got \"%s\"\n", source, val);
            return -1;
        }
        memcpy(cfg->listen_host, val, (size_t)(colon - val));
        cfg->listen_host[colon - val] = '\0';
        cfg->listen_port = (int)port;
        return 0;
    }
    }
    return -1;
}

void config_print_help(const char *prog)
{
    printf("usage: %s <serve|migrate|seed|audit> [flags]\n"
           "       %s --version | --help\n\n"
           "  serve    migrate, then serve the API and web page\n"
           "  migrate  create or upgrade the database schema\n"
           "  seed     add the demo concert and users (idempotent)\n"
           "  audit    check invariants 1-5 of docs/CONTRACT.md (section 3) against the database;\n"
           "           exit 1 on any violation, 2 when it cannot check\n\n"
           "flags (each also read from the environment variable shown):\n",
           prog, prog);
    for (size_t i = 0; i < NOPTS; i++) {
        char env[64];
        env_name(opts[i].flag, env, sizeof env);
        printf("  --%-20s %s\n  %-22s   env %s, default \"%s\"\n", opts[i].flag, opts[i].help, "", env, opts[i].deflt);
    }
}

int config_load(struct config *cfg, int argc, char **argv, const char *prog)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NOPTS; i++)
        if (set_opt(cfg, &opts[i], opts[i].deflt, "default") != 0)
            return -1;
    for (size_t i = 0; i < NOPTS; i++) {
        char env[64];
        env_name(opts[i].flag, env, sizeof env);
        const char *v = getenv(env);
        if (v != NULL && set_opt(cfg, &opts[i], v, env) != 0)
            return -1;
    }
    for (int a = 0; a < argc; a++) {
        const char *arg = argv[a];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            config_print_help(prog);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "unexpected argument \"%s\" (see --help)\n", arg);
            return -1;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const struct opt *o = NULL;
        for (size_t i = 0; i < NOPTS; i++)
            if (strlen(opts[i].flag) == nlen && strncmp(opts[i].flag, name, nlen) == 0)
                o = &opts[i];
        if (o == NULL) {
            fprintf(stderr, "unknown flag \"%s\" (see --help)\n", arg);
            return -1;
        }
        const char *val = eq ? eq + 1 : (a + 1 < argc ? argv[++a] : NULL);
        if (val == NULL) {
            fprintf(stderr, "--%s needs a value\n", o->flag);
            return -1;
        }
        if (set_opt(cfg, o, val, "flag") != 0)
            return -1;
    }
    if (cfg->threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->threads = n > 0 ? (int)n : 1;
    }
    enum log_level lvl;
    if (log_parse_level(cfg->log_level, &lvl) != 0) {
        fprintf(stderr, "--log-level must be debug, info, warn or error\n");
        return -1;
    }
    log_threshold = lvl;
    return 0;
}
