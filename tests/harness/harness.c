/* harness.c — start/stop the real boxoffice binary (one instance, or two behind
 * nginx on PostgreSQL + Redis) and speak HTTP to it (see harness.h). Everything a
 * test starts is torn down by bx_server_cleanup; the server and nginx children also
 * die with the test process (PR_SET_PDEATHSIG) if the test crashes before its .fini
 * fixture runs (its database and Redis keys then stay behind on the throwaway
 * servers, which scripts/run-tests.sh deletes as a whole). */
#define _GNU_SOURCE
#include "harness.h"

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static const struct bx_server *g_current; /* for log tails in failure messages */

int64_t bx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t bx_unix_now(void)
{
    return (int64_t)time(NULL);
}

void bx_sleep_past_expiry(const char *access_token)
{
    const char *dot = strchr(access_token, '.');
    cr_assert(dot != NULL, "not an access token: %s", access_token);
    int64_t expires_at = strtoll(dot + 1, NULL, 10); /* refused from this second on */
    while (bx_unix_now() < expires_at)
        bx_sleep_ms(50);
    bx_sleep_ms(100);
}

int64_t bx_parse_time(const char *s)
{
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL || strlen(s) < 20 || s[10] != 'T')
        return -1;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (strcmp(p, "Z") != 0)
        return -1;
    return (int64_t)timegm(&tm);
}

void bx_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---------------------------------------------------------------- server */

static const char *server_bin(void)
{
    const char *bin = getenv("BOXOFFICE_BIN");
    return bin != NULL && *bin != '\0' ? bin : NULL;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* The environment for the children without any BOXOFFICE_* variable, so the
 * caller's environment cannot change the server's configuration (e.g. a stray
 * BOXOFFICE_ADMIN_KEY). Built before fork; the caller frees the array. */
static char **scrubbed_env(void)
{
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **env = calloc(n + 1, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; env != NULL && i < n; i++)
        if (strncmp(environ[i], "BOXOFFICE_", 10) != 0)
            env[k++] = environ[i];
    return env;
}

/* Forks and execs argv with stdout+stderr appended to log_path. Returns the pid.
 * With die_with_parent the child gets SIGKILL when the forking thread ends (call
 * it from the test's main thread). */
static pid_t spawn(char *const argv[], const char *log_path, bool die_with_parent)
{
    pid_t parent = getpid();
    char **env = scrubbed_env();
    if (env == NULL)
        return -1;
    pid_t pid = fork();
    if (pid != 0) {
        free(env);
        return pid;
    }
    if (die_with_parent) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
    }
    int in = open("/dev/null", O_RDONLY);
    int out = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in < 0 || out < 0)
        _exit(127);
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    close(in);
    close(out);
    execve(argv[0], argv, env);
    dprintf(2, "harness: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static char *read_file_tail(const char *path, int lines)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return strdup("(no log)");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > 16384 ? size - 16384 : 0;
    fseek(f, from, SEEK_SET);
    char *buf = calloc(1, (size_t)(size - from) + 1);
    size_t n = buf ? fread(buf, 1, (size_t)(size - from), f) : 0;
    fclose(f);
    if (buf == NULL)
        return strdup("(oom)");
    buf[n] = '\0';
    char *p = buf + n;
    int seen = 0;
    while (p > buf) {
        if (p[-1] == '\n' && p != buf + n && ++seen >= lines)
            break;
        p--;
    }
    memmove(buf, p, strlen(p) + 1);
    return buf;
}

static void log_tail_of(const char *path, int lines)
{
    char *t = read_file_tail(path, lines);
    fprintf(stderr, "---- tail of %s ----\n%s---- end of log ----\n", path, t);
    free(t);
}

void bx_server_log_tail(const struct bx_server *s, int lines)
{
    if (s == NULL || s->dir[0] == '\0')
        return;
    for (int i = 0; i < s->ninst; i++)
        if (s->inst[i].log_path[0] != '\0')
            log_tail_of(s->inst[i].log_path, lines);
    if (s->mode == BX_MODE_SCALEOUT) {
        char path[320];
        snprintf(path, sizeof path, "%s/nginx-error.log", s->dir);
        log_tail_of(path, lines);
    }
}

/* appends one line to every log of s (and to the instance logs only) */
static void log_note(const struct bx_server *s, int only, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void log_note(const struct bx_server *s, int only, const char *fmt, ...)
{
    for (int i = 0; i < s->ninst; i++) {
        if (only >= 0 && i != only)
            continue;
        FILE *log = fopen(s->inst[i].log_path, "a");
        if (log == NULL)
            continue;
        va_list ap;
        va_start(ap, fmt);
        fprintf(log, "==== harness: ");
        vfprintf(log, fmt, ap);
        fprintf(log, "\n");
        va_end(ap);
        fclose(log);
    }
}

static size_t on_upstream_header(char *ptr, size_t size, size_t nmemb, void *ud);

/* GET url; returns the status (0 on transport failure) and, when upstream is not
 * NULL, the X-Upstream header nginx added. */
static long get_status_upstream(const char *url, int timeout_ms, char *upstream, size_t len)
{
    CURL *h = curl_easy_init();
    if (h == NULL)
        return 0;
    char buf[128] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOBODY, 0L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, NULL);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_upstream_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, buf);
    FILE *null = fopen("/dev/null", "w");
    curl_easy_setopt(h, CURLOPT_WRITEDATA, null);
    long status = 0;
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (null)
        fclose(null);
    if (upstream != NULL)
        snprintf(upstream, len, "%s", buf);
    return status;
}

static long get_status(const char *url, int timeout_ms)
{
    return get_status_upstream(url, timeout_ms, NULL, 0);
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
}

bool bx_scaleout(const struct bx_server *s)
{
    return s->mode == BX_MODE_SCALEOUT;
}

const char *bx_server_mode_name(const struct bx_server *s)
{
    return bx_scaleout(s) ? "scale-out" : "embedded";
}

/* Execs `serve` for instance i (does not wait). */
static void spawn_instance(struct bx_server *s, int i)
{
    struct bx_instance *in = &s->inst[i];
    char listen[64], *argv[BX_MAX_FLAGS + 40];
    int n = 0;
    snprintf(listen, sizeof listen, "127.0.0.1:%d", in->port);
    argv[n++] = (char *)server_bin();
    argv[n++] = "serve";
    argv[n++] = "--listen";
    argv[n++] = listen;
    argv[n++] = "--db";
    argv[n++] = s->db;
    argv[n++] = "--queue";
    argv[n++] = s->queue;
    if (!s->no_admin_key) {
        argv[n++] = "--admin-key";
        argv[n++] = BX_ADMIN_KEY;
    }
    argv[n++] = "--threads";
    argv[n++] = "2";
    argv[n++] = "--pwhash-ops";
    argv[n++] = "1";
    argv[n++] = "--pwhash-mem-kib";
    argv[n++] = "8";
    /* every test client is 127.0.0.1 (or nginx): no per-address limit on sign-ups
     * and log-ins unless a test asks for one (tests/http/test_security.c does) */
    argv[n++] = "--address-rate-limit";
    argv[n++] = "0";
    for (int k = 0; k < s->nflags; k++)
        argv[n++] = s->flags[k]; /* later flags override the defaults above */
    argv[n] = NULL;

    FILE *log = fopen(in->log_path, "a");
    in->log_start = 0;
    if (log != NULL) {
        fprintf(log, "==== harness: starting");
        for (int k = 0; argv[k]; k++)
            fprintf(log, " %s", argv[k]);
        fprintf(log, "\n");
        in->log_start = ftell(log);
        fclose(log);
    }
    in->pid = spawn(argv, in->log_path, true);
    cr_assert(in->pid > 0, "fork failed: %s", strerror(errno));
}

/* Whether instance i's current run logged that it serves on its port. A 200 on
 * the port alone is not enough: a free port found by bind(0) can be taken by
 * another test's server before ours binds it, and that one answers /readyz. */
static bool instance_logged_serving(const struct bx_instance *in)
{
    FILE *log = fopen(in->log_path, "r");
    if (log == NULL)
        return false;
    char want[96], line[1024];
    snprintf(want, sizeof want, "serving on http://127.0.0.1:%d/", in->port);
    bool found = false;
    if (fseek(log, in->log_start, SEEK_SET) == 0)
        while (!found && fgets(line, sizeof line, log) != NULL)
            found = strstr(line, want) != NULL;
    fclose(log);
    return found;
}

/* Waits for /readyz of instance i. When it exits during start-up and may_fail is
 * set, returns false (the caller retries on another port: a free port found by
 * bind(0) can be taken by someone else before the server binds it); otherwise
 * fails the test. */
static bool wait_instance_ready(struct bx_server *s, int i, bool may_fail)
{
    struct bx_instance *in = &s->inst[i];
    char url[128];
    snprintf(url, sizeof url, "%s/readyz", in->base_url);
    /* two instances migrate one PostgreSQL database at once: allow for the lock wait */
    int64_t deadline = bx_now_ms() + (bx_scaleout(s) ? 20000 : 10000);
    for (;;) {
        int st;
        pid_t w = waitpid(in->pid, &st, WNOHANG);
        if (w == in->pid) {
            in->pid = 0;
            if (may_fail)
                return false;
            bx_server_log_tail(s, 40);
            cr_assert_fail("boxoffice %c exited during start-up (%s %d); log: %s", 'A' + i,
                           WIFEXITED(st) ? "exit code" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                           in->log_path);
        }
        if (get_status(url, 1000) == 200 && instance_logged_serving(in))
            return true;
        if (bx_now_ms() > deadline) {
            bx_server_log_tail(s, 40);
            cr_assert_fail("boxoffice %c not ready on %s within %d s; log: %s", 'A' + i, url, bx_scaleout(s) ? 20 : 10,
                           in->log_path);
        }
        bx_sleep_ms(25);
    }
}

static void set_instance_port(struct bx_server *s, int i, int port)
{
    s->inst[i].port = port;
    snprintf(s->inst[i].base_url, sizeof s->inst[i].base_url, "http://127.0.0.1:%d", port);
}

/* Starts every instance on fresh ports, all at once (in scale-out mode they race
 * for the migration lock, as a real deployment's instances do), and waits for each. */
static void start_instances(struct bx_server *s)
{
    for (int i = 0; i < s->ninst; i++) {
        int port = free_port();
        cr_assert(port > 0, "no free port");
        set_instance_port(s, i, port);
        spawn_instance(s, i);
    }
    for (int i = 0; i < s->ninst; i++) {
        for (int attempt = 0;; attempt++) {
            if (wait_instance_ready(s, i, attempt < 2))
                break;
            log_note(s, i, "exited during start-up, retrying on another port");
            int port = free_port();
            cr_assert(port > 0, "no free port");
            set_instance_port(s, i, port);
            spawn_instance(s, i);
        }
    }
}

/* ---- scale-out: PostgreSQL database, Redis prefix, nginx ---- */

static const char *env_or_null(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? v : NULL;
}

static enum bx_mode mode_from_env(void)
{
    const char *m = env_or_null("BOXOFFICE_TEST_MODE");
    if (m == NULL || strcmp(m, "embedded") == 0)
        return BX_MODE_EMBEDDED;
    if (strcmp(m, "scaleout") == 0 || strcmp(m, "scale-out") == 0)
        return BX_MODE_SCALEOUT;
    cr_assert_fail("BOXOFFICE_TEST_MODE=%s: expected \"embedded\" or \"scaleout\"", m);
    return BX_MODE_EMBEDDED;
}

/* url with its database name (the path) replaced by dbname, query kept */
static void pg_url_with_db(const char *url, const char *dbname, char *out, size_t len)
{
    const char *hoststart = strstr(url, "://");
    hoststart = hoststart ? hoststart + 3 : url;
    const char *q = strchr(hoststart, '?');
    const char *slash = strchr(hoststart, '/');
    if (slash != NULL && q != NULL && slash > q)
        slash = NULL;
    size_t head = slash ? (size_t)(slash - url) : (q ? (size_t)(q - url) : strlen(url));
    snprintf(out, len, "%.*s/%s%s", (int)head, url, dbname, q ? q : "");
}

/* Runs one SQL statement on the admin database; returns NULL or a malloc'd error. */
static char *pg_exec(const char *sql)
{
    const char *url = env_or_null("BOXOFFICE_TEST_PG_URL");
    if (url == NULL)
        return strdup("BOXOFFICE_TEST_PG_URL is not set");
    PGconn *pg = PQconnectdb(url);
    char *err = NULL;
    if (PQstatus(pg) != CONNECTION_OK) {
        err = strdup(PQerrorMessage(pg));
    } else {
        PGresult *r = PQexec(pg, sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            err = strdup(PQresultErrorMessage(r));
        PQclear(r);
    }
    PQfinish(pg);
    return err;
}

static unsigned long scaleout_counter;

static unsigned random_u32(void)
{
    unsigned v = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        if (read(fd, &v, sizeof v) != (ssize_t)sizeof v)
            v = (unsigned)bx_now_ms();
        close(fd);
    }
    return v;
}

/* redis://host:port[/db][?...] → host, port, db */
static bool parse_redis_url(const char *url, char *host, size_t hostlen, int *port, int *db)
{
    if (strncmp(url, "redis://", 8) != 0)
        return false;
    const char *h = url + 8;
    const char *at = strchr(h, '@');
    if (at != NULL)
        h = at + 1;
    size_t hl = strcspn(h, ":/?");
    if (hl == 0 || hl >= hostlen)
        return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = 6379;
    *db = 0;
    const char *p = h + hl;
    if (*p == ':')
        *port = (int)strtol(p + 1, (char **)&p, 10);
    if (*p == '/' && p[1] >= '0' && p[1] <= '9')
        *db = (int)strtol(p + 1, (char **)&p, 10);
    return *port > 0;
}

/* Deletes every key of namespace ns ("{ns:...}" and "ns:..."). Returns the number
 * deleted, -1 when Redis cannot be reached. */
static long redis_delete_ns(const char *ns)
{
    const char *url = env_or_null("BOXOFFICE_TEST_REDIS_URL");
    char host[256];
    int port, db;
    if (url == NULL || !parse_redis_url(url, host, sizeof host, &port, &db))
        return -1;
    struct timeval tv = {2, 0};
    redisContext *rc = redisConnectWithTimeout(host, port, tv);
    if (rc == NULL || rc->err) {
        if (rc)
            redisFree(rc);
        return -1;
    }
    redisSetTimeout(rc, tv);
    long deleted = 0;
    redisReply *r = redisCommand(rc, "SELECT %d", db);
    if (r == NULL) {
        redisFree(rc);
        return -1;
    }
    freeReplyObject(r);
    const char *fmt[2] = {"{%s:*", "%s:*"};
    for (int k = 0; k < 2; k++) {
        char pattern[128];
        snprintf(pattern, sizeof pattern, fmt[k], ns);
        char cursor[32] = "0";
        do {
            r = redisCommand(rc, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
            if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
                if (r)
                    freeReplyObject(r);
                redisFree(rc);
                return -1;
            }
            snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
            redisReply *keys = r->element[1];
            for (size_t i = 0; i < keys->elements; i++) {
                redisReply *d = redisCommand(rc, "UNLINK %b", keys->element[i]->str, (size_t)keys->element[i]->len);
                if (d != NULL) {
                    deleted += d->type == REDIS_REPLY_INTEGER ? (long)d->integer : 0;
                    freeReplyObject(d);
                }
            }
            freeReplyObject(r);
        } while (strcmp(cursor, "0") != 0);
    }
    redisFree(rc);
    return deleted;
}

static const char *nginx_bin(void)
{
    const char *b = env_or_null("BOXOFFICE_TEST_NGINX");
    return b ? b : "/usr/sbin/nginx";
}

static const char *nginx_template(void)
{
    const char *t = env_or_null("BOXOFFICE_TEST_NGINX_CONF");
    return t ? t : BX_SOURCE_ROOT "/deploy/nginx.conf";
}

/* Copies text to f replacing each {{NAME}} by its value; false on an unknown one. */
static bool render(FILE *f, const char *text, const char *const vars[][2], size_t nvars, char *bad, size_t badlen)
{
    const char *p = text;
    for (;;) {
        const char *open_ = strstr(p, "{{");
        if (open_ == NULL) {
            fputs(p, f);
            return true;
        }
        fwrite(p, 1, (size_t)(open_ - p), f);
        const char *close_ = strstr(open_, "}}");
        if (close_ == NULL) {
            snprintf(bad, badlen, "unterminated {{");
            return false;
        }
        size_t nl = (size_t)(close_ - open_ - 2);
        size_t k;
        for (k = 0; k < nvars; k++)
            if (strlen(vars[k][0]) == nl && strncmp(vars[k][0], open_ + 2, nl) == 0)
                break;
        if (k == nvars) {
            snprintf(bad, badlen, "unknown placeholder {{%.*s}}", (int)nl, open_ + 2);
            return false;
        }
        fputs(vars[k][1], f);
        p = close_ + 2;
    }
}

/* Renders deploy/nginx.conf into <dir>/nginx.conf for the instances' ports. */
static void render_nginx_conf(struct bx_server *s, char *conf, size_t conflen)
{
    const char *tpl_path = nginx_template();
    FILE *t = fopen(tpl_path, "r");
    cr_assert(t != NULL, "nginx config template %s: %s", tpl_path, strerror(errno));
    fseek(t, 0, SEEK_END);
    long size = ftell(t);
    fseek(t, 0, SEEK_SET);
    char *text = calloc(1, (size_t)size + 1);
    cr_assert(text != NULL && fread(text, 1, (size_t)size, t) == (size_t)size, "read %s", tpl_path);
    fclose(t);

    char servers[1024] = "", listen[64], user[64] = "root";
    size_t used = 0;
    for (int i = 0; i < s->ninst; i++)
        used += (size_t)snprintf(servers + used, sizeof servers - used,
                                 "        server 127.0.0.1:%d max_fails=1 fail_timeout=1s;\n", s->inst[i].port);
    if (used > 0)
        servers[used - 1] = '\0'; /* the template's line ends the last one */
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->nginx_port);
    struct passwd *pw = getpwuid(geteuid());
    if (pw != NULL)
        snprintf(user, sizeof user, "%s", pw->pw_name);
    const char *const vars[][2] = {
        {"USER", user}, {"WORKERS", "1"}, {"PREFIX", s->dir}, {"LISTEN", listen}, {"SERVERS", servers},
    };
    snprintf(conf, conflen, "%s/nginx.conf", s->dir);
    FILE *f = fopen(conf, "w");
    cr_assert(f != NULL, "%s: %s", conf, strerror(errno));
    char bad[128] = "";
    bool ok = render(f, text, vars, sizeof vars / sizeof vars[0], bad, sizeof bad);
    fclose(f);
    free(text);
    cr_assert(ok, "%s: %s", tpl_path, bad);
}

/* Starts nginx in front of the instances on a free port and waits until it answers
 * and has reached every instance. One process (master_process off) that gets
 * SIGKILL when the test dies, like the instances. */
static void start_nginx(struct bx_server *s)
{
    cr_assert(access(nginx_bin(), X_OK) == 0,
              "nginx not found at %s (apt-get install nginx-light, or set "
              "BOXOFFICE_TEST_NGINX)",
              nginx_bin());
    char conf[320], errlog[320], url[128];
    snprintf(errlog, sizeof errlog, "%s/nginx-error.log", s->dir);
    for (int attempt = 0;; attempt++) {
        s->nginx_port = free_port();
        cr_assert(s->nginx_port > 0, "no free port");
        render_nginx_conf(s, conf, sizeof conf);
        char *argv[] = {
            (char *)nginx_bin(), "-p", s->dir, "-e", errlog, "-c", conf, "-g", "daemon off; master_process off;", NULL};
        s->nginx_pid = spawn(argv, errlog, true);
        cr_assert(s->nginx_pid > 0, "fork failed: %s", strerror(errno));
        snprintf(s->base_url, sizeof s->base_url, "http://127.0.0.1:%d", s->nginx_port);
        snprintf(url, sizeof url, "%s/healthz", s->base_url);
        int64_t deadline = bx_now_ms() + 10000;
        bool exited = false;
        for (;;) {
            int st;
            if (waitpid(s->nginx_pid, &st, WNOHANG) == s->nginx_pid) {
                s->nginx_pid = 0;
                exited = true;
                break;
            }
            if (get_status(url, 1000) == 200)
                break;
            if (bx_now_ms() > deadline) {
                log_tail_of(errlog, 20);
                cr_assert_fail("nginx not answering on %s within 10 s (see %s)", url, errlog);
            }
            bx_sleep_ms(20);
        }
        if (!exited)
            break;
        if (attempt >= 2) {
            log_tail_of(errlog, 20);
            cr_assert_fail("nginx exited during start-up (see %s)", errlog);
        }
    }
    bx_wait_balanced(s, 10000);
}

static void stop_nginx(struct bx_server *s)
{
    if (s->nginx_pid <= 0)
        return;
    kill(s->nginx_pid, SIGTERM);
    int64_t deadline = bx_now_ms() + 5000;
    int st;
    for (;;) {
        pid_t w = waitpid(s->nginx_pid, &st, WNOHANG);
        if (w == s->nginx_pid || (w < 0 && errno != EINTR))
            break;
        if (bx_now_ms() > deadline) {
            kill(s->nginx_pid, SIGKILL);
            waitpid(s->nginx_pid, &st, 0);
            break;
        }
        bx_sleep_ms(10);
    }
    s->nginx_pid = 0;
}

static size_t on_upstream_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    char *out = ud;
    size_t n = size * nmemb;
    if (n > 11 && strncasecmp(ptr, "X-Upstream:", 11) == 0) {
        const char *v = ptr + 11;
        const char *end = ptr + n;
        while (v < end && *v == ' ')
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
            end--;
        size_t len = (size_t)(end - v) < 127 ? (size_t)(end - v) : 127;
        memcpy(out, v, len);
        out[len] = '\0';
    }
    return n;
}

void bx_wait_balanced(struct bx_server *s, int timeout_ms)
{
    if (!bx_scaleout(s) || s->nginx_pid <= 0)
        return;
    char url[128];
    snprintf(url, sizeof url, "%s/readyz", s->base_url);
    bool seen[BX_MAX_INSTANCES] = {false};
    int64_t deadline = bx_now_ms() + timeout_ms;
    for (;;) {
        bool all = true;
        for (int i = 0; i < s->ninst; i++)
            all = all && (seen[i] || s->inst[i].pid <= 0);
        if (all)
            return;
        char up[128] = "";
        long st = get_status_upstream(url, 2000, up, sizeof up);
        /* "A, B" when A failed and B answered: the last one answered */
        const char *last = strrchr(up, ',');
        last = last ? last + 1 : up;
        while (*last == ' ')
            last++;
        for (int i = 0; i < s->ninst && st == 200; i++) {
            char addr[64];
            snprintf(addr, sizeof addr, "127.0.0.1:%d", s->inst[i].port);
            if (strcmp(last, addr) == 0)
                seen[i] = true;
        }
        if (bx_now_ms() > deadline) {
            bx_server_log_tail(s, 20);
            cr_assert_fail("nginx did not route to every instance within %d ms (last X-Upstream \"%s\", %ld)",
                           timeout_ms, up, st);
        }
        bx_sleep_ms(st == 200 ? 5 : 50);
    }
}

static void scaleout_prepare(struct bx_server *s)
{
    const char *pg = env_or_null("BOXOFFICE_TEST_PG_URL");
    const char *redis = env_or_null("BOXOFFICE_TEST_REDIS_URL");
    cr_assert(pg != NULL && redis != NULL,
              "scale-out mode needs BOXOFFICE_TEST_PG_URL (postgresql://...) and BOXOFFICE_TEST_REDIS_URL "
              "(redis://...), which scripts/run-tests.sh exports after starting tests/harness/pg.sh and redis.sh; "
              "got PG %s, Redis %s",
              pg ? pg : "(unset)", redis ? redis : "(unset)");
    cr_assert(strchr(redis, '?') == NULL, "BOXOFFICE_TEST_REDIS_URL must not carry a query: %s", redis);
    unsigned long n = __atomic_add_fetch(&scaleout_counter, 1, __ATOMIC_RELAXED);
    unsigned rnd = random_u32() % 1000000u;
    snprintf(s->dbname, sizeof s->dbname, "bx_t_%ld_%lu_%u", (long)getpid(), n, rnd);
    snprintf(s->redis_ns, sizeof s->redis_ns, "bxt%ld.%lu.%u", (long)getpid(), n, rnd);
    char sql[160];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", s->dbname);
    char *err = pg_exec(sql);
    if (err != NULL) {
        s->dbname[0] = '\0';
        cr_assert_fail("%s on %s: %s", sql, pg, err);
    }
    pg_url_with_db(pg, s->dbname, s->db, sizeof s->db);
    snprintf(s->queue, sizeof s->queue, "%s?prefix=%s", redis, s->redis_ns);
    cr_assert(redis_delete_ns(s->redis_ns) >= 0, "Redis at %s does not answer", redis);
}

void bx_server_start(struct bx_server *s, ...)
{
    pthread_once(&curl_once, curl_init_once);
    const char *bin = server_bin();
    cr_assert(bin != NULL, "BOXOFFICE_BIN is not set (path of the boxoffice binary)");
    cr_assert(access(bin, X_OK) == 0, "BOXOFFICE_BIN=%s is not executable: %s", bin, strerror(errno));
    if (s->mode == BX_MODE_FROM_ENV)
        s->mode = mode_from_env();

    va_list ap;
    va_start(ap, s);
    const char *f;
    while ((f = va_arg(ap, const char *)) != NULL) {
        cr_assert(s->nflags < BX_MAX_FLAGS, "too many flags");
        s->flags[s->nflags++] = strdup(f);
    }
    va_end(ap);

    const char *base = getenv("BOXOFFICE_TEST_TMP");
    if (base == NULL || *base == '\0')
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(s->dir, sizeof s->dir, "%s/bx-http-XXXXXX", base);
    cr_assert(mkdtemp(s->dir) != NULL, "mkdtemp %s: %s", s->dir, strerror(errno));
    g_current = s;
    if (bx_scaleout(s)) {
        s->ninst = 2;
        scaleout_prepare(s);
    } else {
        s->ninst = 1;
        snprintf(s->db, sizeof s->db, "sqlite:%s/bx.db", s->dir);
        snprintf(s->queue, sizeof s->queue, "memory");
    }
    for (int i = 0; i < s->ninst; i++) {
        if (s->ninst == 1)
            snprintf(s->inst[i].log_path, sizeof s->inst[i].log_path, "%s/server.log", s->dir);
        else
            snprintf(s->inst[i].log_path, sizeof s->inst[i].log_path, "%s/server-%c.log", s->dir, 'a' + i);
    }
    snprintf(s->log_path, sizeof s->log_path, "%s", s->inst[0].log_path);
    start_instances(s);
    if (bx_scaleout(s))
        start_nginx(s);
    else
        snprintf(s->base_url, sizeof s->base_url, "%s", s->inst[0].base_url);
}

/* Waits up to 5 s for instance i, which was sent SIGTERM, then SIGKILLs it. */
static int wait_stopped(struct bx_server *s, int i)
{
    struct bx_instance *in = &s->inst[i];
    int st = -1;
    int64_t deadline = bx_now_ms() + 5000;
    for (;;) {
        pid_t w = waitpid(in->pid, &st, WNOHANG);
        if (w == in->pid || (w < 0 && errno != EINTR))
            break;
        if (bx_now_ms() > deadline) {
            log_note(s, i, "no exit 5 s after SIGTERM, sending SIGKILL");
            kill(in->pid, SIGKILL);
            waitpid(in->pid, &st, 0);
            break;
        }
        bx_sleep_ms(10);
    }
    in->pid = 0;
    return st;
}

int bx_instance_stop(struct bx_server *s, int i)
{
    if (s->inst[i].pid <= 0)
        return -1;
    kill(s->inst[i].pid, SIGTERM);
    return wait_stopped(s, i);
}

int bx_server_stop(struct bx_server *s)
{
    /* SIGTERM to all first: they drain side by side, as in a real shutdown */
    for (int i = 0; i < s->ninst; i++)
        if (s->inst[i].pid > 0)
            kill(s->inst[i].pid, SIGTERM);
    int worst = -1;
    bool have_bad = false;
    for (int i = 0; i < s->ninst; i++) {
        if (s->inst[i].pid <= 0)
            continue;
        int st = wait_stopped(s, i);
        bool clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        if (!have_bad)
            worst = st;
        have_bad = have_bad || !clean;
    }
    return worst;
}

int bx_instance_kill(struct bx_server *s, int i)
{
    struct bx_instance *in = &s->inst[i];
    if (in->pid <= 0)
        return -1;
    int st = -1;
    kill(in->pid, SIGKILL);
    while (waitpid(in->pid, &st, 0) < 0 && errno == EINTR)
        ;
    in->pid = 0;
    log_note(s, i, "killed with SIGKILL");
    return st;
}

int bx_server_kill(struct bx_server *s)
{
    int st = -1;
    for (int i = 0; i < s->ninst; i++) {
        int k = bx_instance_kill(s, i);
        if (k != -1)
            st = k;
    }
    return st;
}

void bx_instance_relaunch(struct bx_server *s, int i)
{
    cr_assert(s->inst[i].pid == 0, "bx_instance_relaunch: instance %c still running", 'A' + i);
    spawn_instance(s, i);
    wait_instance_ready(s, i, false);
}

void bx_server_restart(struct bx_server *s)
{
    bx_server_stop(s);
    bx_server_relaunch(s);
}

void bx_server_relaunch(struct bx_server *s)
{
    for (int i = 0; i < s->ninst; i++)
        cr_assert(s->inst[i].pid == 0, "bx_server_relaunch: instance %c still running", 'A' + i);
    for (int i = 0; i < s->ninst; i++)
        spawn_instance(s, i);
    for (int i = 0; i < s->ninst; i++)
        wait_instance_ready(s, i, false);
    bx_wait_balanced(s, 10000);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void bx_remove_tree(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void bx_server_cleanup(struct bx_server *s)
{
    bool running = false;
    for (int i = 0; i < s->ninst; i++)
        running = running || s->inst[i].pid > 0;
    if (running) {
        int st = bx_server_stop(s);
        if (getenv("BOXOFFICE_TEST_VERBOSE") || !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
            bx_server_log_tail(s, 30);
    }
    stop_nginx(s);
    bool keep = getenv("BOXOFFICE_TEST_KEEP") != NULL;
    if (s->dbname[0] != '\0' && !keep) {
        char sql[160];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", s->dbname);
        char *err = pg_exec(sql);
        if (err != NULL) {
            fprintf(stderr, "harness: %s: %s\n", sql, err);
            free(err);
        }
        s->dbname[0] = '\0';
    }
    if (s->redis_ns[0] != '\0' && !keep) {
        if (redis_delete_ns(s->redis_ns) < 0)
            fprintf(stderr, "harness: could not delete the Redis keys of %s\n", s->redis_ns);
        s->redis_ns[0] = '\0';
    }
    if (s->dir[0] != '\0') {
        if (!keep)
            bx_remove_tree(s->dir);
        else
            fprintf(stderr, "harness: kept %s (database %s, Redis prefix %s)\n", s->dir, s->dbname, s->redis_ns);
        s->dir[0] = '\0';
    }
    for (int i = 0; i < s->nflags; i++)
        free(s->flags[i]);
    s->nflags = 0;
    if (g_current == s)
        g_current = NULL;
}

int bx_audit(const struct bx_server *s, char **out)
{
    char path[320];
    snprintf(path, sizeof path, "%s/audit.log", s->dir);
    unlink(path);
    /* the same extra flags as serve: audit checks invariant 5 against --max-seats-per-user */
    char *argv[BX_MAX_FLAGS + 8];
    int n = 0;
    argv[n++] = (char *)server_bin();
    argv[n++] = "audit";
    argv[n++] = "--db";
    argv[n++] = (char *)s->db;
    for (int i = 0; i < s->nflags; i++)
        argv[n++] = s->flags[i];
    argv[n] = NULL;
    if (argv[0] == NULL)
        return -1;
    pid_t pid = spawn(argv, path, true);
    if (pid < 0)
        return -1;
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (out != NULL)
        *out = read_file_tail(path, 1000);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int bx_run_bin(const char *const *args, int timeout_ms, int uid, char **out)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = server_bin();
    if (argv[0] == NULL)
        return -1;
    for (int i = 0; args[i] != NULL && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return bx_run(argv, timeout_ms, uid, out);
}

int bx_run(const char *const *args, int timeout_ms, int uid, char **out)
{
    char path[] = "/tmp/bx-run-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    close(fd);
    chmod(path, 0666); /* written by the child, which may run as another user */
    char *argv[64];
    int n = 0;
    for (int i = 0; args[i] != NULL && n < 63; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    char **env = scrubbed_env();
    if (env == NULL) {
        unlink(path);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        setpgid(0, 0); /* a group of its own: a timeout kills what it started too */
        int in = open("/dev/null", O_RDONLY), o = open(path, O_WRONLY | O_APPEND);
        if (in < 0 || o < 0)
            _exit(127);
        dup2(in, 0);
        dup2(o, 1);
        dup2(o, 2);
        if (uid > 0 && (setgroups(0, NULL) != 0 || setgid((gid_t)uid) != 0 || setuid((uid_t)uid) != 0)) {
            dprintf(2, "harness: cannot become uid %d: %s\n", uid, strerror(errno));
            _exit(127);
        }
        execve(argv[0], argv, env);
        dprintf(2, "harness: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    free(env);
    if (pid < 0) {
        unlink(path);
        return -1;
    }
    int st = 0, rc = -1;
    int64_t deadline = bx_now_ms() + timeout_ms;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        if (w < 0 && errno != EINTR)
            break;
        if (bx_now_ms() > deadline) {
            kill(-pid, SIGKILL);
            waitpid(pid, &st, 0);
            rc = 128 + SIGKILL;
            break;
        }
        bx_sleep_ms(10);
    }
    if (out != NULL)
        *out = read_file_tail(path, 1000);
    unlink(path);
    return rc;
}

/* ---------------------------------------------------------------- private PostgreSQL / Redis */

/* Runs argv (no PDEATHSIG: the scripts daemonize their servers) and waits; its
 * stdout goes to out (trailing newline removed), its stderr to ours. Returns the
 * exit code, -1 if it could not run. */
static int run_capture(char *const argv[], char *out, size_t outlen)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], argv);
        dprintf(2, "harness: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    size_t used = 0;
    char buf[512];
    for (;;) {
        ssize_t n = read(fds[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t k = 0; k < n && out != NULL && used + 1 < outlen; k++)
            out[used++] = buf[k];
    }
    close(fds[0]);
    if (out != NULL && outlen > 0) {
        out[used < outlen ? used : outlen - 1] = '\0';
        while (used > 0 && (out[used - 1] == '\n' || out[used - 1] == '\r'))
            out[--used] = '\0';
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void bx_pg_start(const char *dir, char *url, size_t len)
{
    char *argv[] = {BX_SOURCE_ROOT "/tests/harness/pg.sh", "start", (char *)dir, NULL};
    int rc = run_capture(argv, url, len);
    cr_assert(rc == 0 && strncmp(url, "postgresql://", 13) == 0, "pg.sh start %s: exit %d, \"%s\"", dir, rc, url);
}

int bx_pg_stop(const char *dir)
{
    char *argv[] = {BX_SOURCE_ROOT "/tests/harness/pg.sh", "stop", (char *)dir, NULL};
    return run_capture(argv, NULL, 0);
}

void bx_redis_start(const char *dir, int port, bool appendonly, char *url, size_t len)
{
    char portstr[16];
    char *argv[8];
    int n = 0;
    argv[n++] = BX_SOURCE_ROOT "/tests/harness/redis.sh";
    argv[n++] = "start";
    argv[n++] = (char *)dir;
    if (port > 0) {
        snprintf(portstr, sizeof portstr, "%d", port);
        argv[n++] = "--port";
        argv[n++] = portstr;
    }
    if (appendonly)
        argv[n++] = "--appendonly";
    argv[n] = NULL;
    int rc = run_capture(argv, url, len);
    cr_assert(rc == 0 && strncmp(url, "redis://", 8) == 0, "redis.sh start %s: exit %d, \"%s\"", dir, rc, url);
}

int bx_redis_stop(const char *dir)
{
    char *argv[] = {BX_SOURCE_ROOT "/tests/harness/redis.sh", "stop", (char *)dir, NULL};
    return run_capture(argv, NULL, 0);
}

/* ---------------------------------------------------------------- raw HTTP */

int bx_url_port(const char *base_url)
{
    const char *colon = strrchr(base_url, ':');
    if (colon == NULL || colon[1] < '0' || colon[1] > '9')
        return -1;
    return (int)strtol(colon + 1, NULL, 10);
}

int bx_raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Content-Length of a response head, -1 if absent */
static long head_content_length(const char *head)
{
    const char *p = head;
    while ((p = strchr(p, '\n')) != NULL) {
        p++;
        if (strncasecmp(p, "content-length:", 15) == 0)
            return strtol(p + 15, NULL, 10);
    }
    return -1;
}

long bx_raw_http(int port, const void *req, size_t len, int timeout_ms, char *out, size_t outlen, bool *closed)
{
    if (closed != NULL)
        *closed = false;
    if (out != NULL && outlen > 0)
        out[0] = '\0';
    int fd = bx_raw_connect(port);
    if (fd < 0)
        return -1;
    int64_t deadline = bx_now_ms() + timeout_ms;
    const char *p = req;
    size_t left = len;
    while (left > 0) {
        ssize_t n = send(fd, p, left, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            left -= (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* the server may answer (and close) before reading everything */
            struct pollfd pf = {.fd = fd, .events = POLLOUT | POLLIN};
            int wait = (int)(deadline - bx_now_ms());
            if (wait <= 0 || poll(&pf, 1, wait) <= 0)
                break;
            if (pf.revents & (POLLIN | POLLHUP | POLLERR))
                break;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        break; /* reset: the server may still have answered before it closed */
    }
    size_t used = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    if (buf == NULL) {
        close(fd);
        return -1;
    }
    long status = -1;
    bool eof = false;
    for (;;) {
        int wait = (int)(deadline - bx_now_ms());
        if (wait <= 0)
            break;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int pr = poll(&pf, 1, wait);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            break;
        if (used + 1 >= cap)
            break; /* the head is in; the rest of a huge answer is not needed */
        ssize_t n = recv(fd, buf + used, cap - 1 - used, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            eof = true;
            break;
        }
        used += (size_t)n;
        buf[used] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end != NULL) {
            long cl = head_content_length(buf);
            if (cl >= 0 && (size_t)(end + 4 - buf) + (size_t)cl <= used)
                break;
        }
    }
    {
        buf[used] = '\0';
        if (used >= 12 && strncmp(buf, "HTTP/1.", 7) == 0)
            status = strtol(buf + 9, NULL, 10);
        else if (eof)
            status = 0;
        if (out != NULL && outlen > 0)
            snprintf(out, outlen, "%s", buf);
    }
    if (status > 0 && !eof && closed != NULL) {
        /* closed right after the answer? */
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        char c;
        if (poll(&pf, 1, 200) > 0 && recv(fd, &c, 1, MSG_DONTWAIT) <= 0)
            eof = true;
    }
    if (closed != NULL)
        *closed = eof;
    free(buf);
    close(fd);
    return status;
}

/* ---------------------------------------------------------------- HTTP */

void bx_client_init(struct bx_client *c, const struct bx_server *s)
{
    pthread_once(&curl_once, curl_init_once);
    memset(c, 0, sizeof *c);
    c->curl = curl_easy_init();
    snprintf(c->base_url, sizeof c->base_url, "%s", s->base_url);
}

void bx_client_init_instance(struct bx_client *c, const struct bx_server *s, int i)
{
    bx_client_init(c, s);
    snprintf(c->base_url, sizeof c->base_url, "%s", s->inst[i].base_url);
}

void bx_client_release(struct bx_client *c)
{
    struct bx_resp *r = c->owned;
    while (r != NULL) {
        struct bx_resp *next = r->next_owned;
        free(r->body);
        free(r->headers);
        json_decref(r->json);
        free(r);
        r = next;
    }
    for (size_t i = 0; i < c->nstrs; i++)
        free(c->strs[i]);
    free(c->strs);
    if (c->curl)
        curl_easy_cleanup(c->curl);
    memset(c, 0, sizeof *c);
}

void bx_client_reset(struct bx_client *c)
{
    if (c->curl)
        curl_easy_cleanup(c->curl);
    c->curl = curl_easy_init();
}

static char *keep_str(struct bx_client *c, char *s)
{
    if (c->nstrs == c->capstrs) {
        c->capstrs = c->capstrs ? c->capstrs * 2 : 16;
        c->strs = realloc(c->strs, c->capstrs * sizeof *c->strs);
    }
    c->strs[c->nstrs++] = s;
    return s;
}

const char *bx_str(struct bx_client *c, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s ? keep_str(c, s) : "";
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct bx_resp *r = ud;
    size_t n = size * nmemb;
    char *nb = realloc(r->body, r->len + n + 1);
    if (nb == NULL)
        return 0;
    memcpy(nb + r->len, ptr, n);
    r->body = nb;
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

static void header_value(const char *line, size_t n, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    if (n <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return;
    const char *v = line + nl + 1;
    const char *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t len = (size_t)(end - v) < outlen - 1 ? (size_t)(end - v) : outlen - 1;
    memcpy(out, v, len);
    out[len] = '\0';
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct bx_resp *r = ud;
    size_t n = size * nmemb;
    size_t had = r->headers ? strlen(r->headers) : 0;
    char *nh = realloc(r->headers, had + n + 1);
    if (nh != NULL) {
        memcpy(nh + had, ptr, n);
        nh[had + n] = '\0';
        r->headers = nh;
    }
    header_value(ptr, n, "X-Request-Id", r->request_id, sizeof r->request_id);
    header_value(ptr, n, "Allow", r->allow, sizeof r->allow);
    header_value(ptr, n, "Content-Type", r->content_type, sizeof r->content_type);
    header_value(ptr, n, "X-Upstream", r->upstream, sizeof r->upstream);
    header_value(ptr, n, "Retry-After", r->retry_after, sizeof r->retry_after);
    return n;
}

struct upload {
    const char *data;
    size_t left;
};

/* feeds a chunked body in pieces of at most 4 KiB, so it really arrives in chunks */
static size_t on_upload(char *buf, size_t size, size_t nmemb, void *ud)
{
    struct upload *u = ud;
    size_t n = size * nmemb;
    if (n > 4096)
        n = 4096;
    if (n > u->left)
        n = u->left;
    memcpy(buf, u->data, n);
    u->data += n;
    u->left -= n;
    return n;
}

/* With BOXOFFICE_TEST_OPENAPI_LOG set, appends one JSON line per answered
 * request to that file (method, path, status, content type, the headers the API
 * documents, body) for tests/openapi/validate.mjs to check against
 * docs/openapi.yaml after the suites. One write(2) per line with O_APPEND: the
 * lines of parallel tests and threads never interleave. */
static void record_for_openapi(const char *method, const char *path, const struct bx_resp *r)
{
    static const char *const kept[] = {"X-Request-Id", "Allow", "Retry-After", "Content-Length"};
    const char *file = getenv("BOXOFFICE_TEST_OPENAPI_LOG");
    if (file == NULL || *file == '\0' || r->status <= 0)
        return;
    json_t *headers = json_object();
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        char v[256];
        if (bx_header(r, kept[i], v, sizeof v) != NULL)
            json_object_set_new(headers, kept[i], json_string(v));
    }
    const char *test = criterion_current_test && criterion_current_test->name ? criterion_current_test->name : "";
    json_t *line =
        json_pack("{s:s,s:s,s:i,s:s,s:o,s:s%,s:s,s:s}", "method", method, "path", path, "status", (int)r->status,
                  "contentType", r->content_type, "headers", headers, "body", r->body, r->len, "test", test, "mode",
                  getenv("BOXOFFICE_TEST_MODE") ? getenv("BOXOFFICE_TEST_MODE") : "");
    char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
    json_decref(line);
    if (text == NULL)
        return; /* a body that is not UTF-8 (json_pack refuses it): nothing to check against a JSON schema */
    size_t n = strlen(text);
    text[n] = '\n';
    int fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, text, n + 1);
        (void)w;
        close(fd);
    }
    free(text);
}

struct bx_resp *bx_http(struct bx_client *c, const char *method, const char *path, const struct bx_req *req)
{
    struct upload up = {0};
    static const struct bx_req none;
    if (req == NULL)
        req = &none;
    struct bx_resp *r = calloc(1, sizeof *r);
    r->next_owned = c->owned;
    c->owned = r;
    r->body = calloc(1, 1);
    snprintf(r->what, sizeof r->what, "%s %s", method, path);

    CURL *h = c->curl;
    curl_easy_reset(h);
    char url[1024];
    snprintf(url, sizeof url, "%s%s", c->base_url, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->error);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);

    struct curl_slist *hd = NULL;
    char line[2048];
    hd = curl_slist_append(hd, "Expect:");
    if (req->bearer) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", req->bearer);
        hd = curl_slist_append(hd, line);
    }
    if (req->queue_token) {
        snprintf(line, sizeof line, "X-Queue-Token: %s", req->queue_token);
        hd = curl_slist_append(hd, line);
    }
    if (req->idem_key) {
        snprintf(line, sizeof line, "Idempotency-Key: %s", req->idem_key);
        hd = curl_slist_append(hd, line);
    }
    if (req->admin_key) {
        snprintf(line, sizeof line, "X-Admin-Key: %s", req->admin_key);
        hd = curl_slist_append(hd, line);
    }
    if (req->header)
        hd = curl_slist_append(hd, req->header);
    if (req->body) {
        snprintf(line, sizeof line, "Content-Type: %s", req->content_type ? req->content_type : "application/json");
        hd = curl_slist_append(hd, line);
        if (req->chunked) {
            hd = curl_slist_append(hd, "Transfer-Encoding: chunked");
            up.data = req->body;
            up.left = req->body_len ? req->body_len : strlen(req->body);
            curl_easy_setopt(h, CURLOPT_POST, 1L);
            curl_easy_setopt(h, CURLOPT_READFUNCTION, on_upload);
            curl_easy_setopt(h, CURLOPT_READDATA, &up);
        } else {
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t)(req->body_len ? req->body_len : strlen(req->body)));
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
        }
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    if (strcmp(method, "GET") == 0 && req->body == NULL)
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    else if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    else
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "POST") == 0 && req->body == NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    }

    CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
        if (r->len > 0)
            r->json = json_loadb(r->body, r->len, JSON_DECODE_ANY, NULL);
    } else {
        r->status = 0;
        if (r->error[0] == '\0')
            snprintf(r->error, sizeof r->error, "%s", curl_easy_strerror(rc));
    }
    curl_slist_free_all(hd);
    record_for_openapi(method, path, r);
    return r;
}

struct bx_resp *bx_http_json(struct bx_client *c, const char *method, const char *path, const struct bx_req *req,
                             json_t *body)
{
    struct bx_req rq = req ? *req : (struct bx_req){0};
    char *text = NULL;
    if (body != NULL) {
        text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        rq.body = text;
        rq.body_len = 0;
    }
    struct bx_resp *r = bx_http(c, method, path, &rq);
    free(text);
    return r;
}

const char *bx_jstr(const json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));
    return s ? s : "";
}

int64_t bx_jint(const json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : INT64_MIN;
}

bool bx_jnull(const json_t *j, const char *key)
{
    return json_is_null(json_object_get(j, key));
}

const char *bx_header(const struct bx_resp *r, const char *name, char *out, size_t len)
{
    const char *found = NULL;
    size_t nl = strlen(name);
    for (const char *p = r->headers; p != NULL && *p != '\0';) {
        const char *eol = strchr(p, '\n');
        size_t linelen = eol ? (size_t)(eol - p + 1) : strlen(p);
        if (linelen > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            out[0] = '\0';
            header_value(p, linelen, name, out, len);
            found = out;
        }
        p += linelen;
    }
    return found;
}

const char *bx_err_code(const struct bx_resp *r)
{
    return bx_jstr(json_object_get(r->json, "error"), "code");
}

const char *bx_err_field(const struct bx_resp *r)
{
    return bx_jstr(json_object_get(r->json, "error"), "field");
}

bool bx_is_error_shape(const struct bx_resp *r)
{
    if (!json_is_object(r->json) || json_object_size(r->json) != 1)
        return false;
    json_t *e = json_object_get(r->json, "error");
    if (!json_is_object(e) || !json_is_string(json_object_get(e, "code")) ||
        !json_is_string(json_object_get(e, "message")))
        return false;
    const char *k;
    json_t *v;
    json_object_foreach(e, k, v)
    {
        if (strcmp(k, "code") != 0 && strcmp(k, "message") != 0 && !(strcmp(k, "field") == 0 && json_is_string(v)))
            return false;
    }
    return true;
}

/* ---------------------------------------------------------------- flows */

void bx_expect_at(const struct bx_resp *r, long status, const char *code, const char *file, int line)
{
    bool ok = r->status == status && (code == NULL || strcmp(bx_err_code(r), code) == 0);
    if (ok)
        return;
    if (r->status == 0 || r->status >= 500)
        bx_server_log_tail(g_current, 30);
    cr_assert_fail("%s:%d: %s: expected %ld%s%s, got %ld %s%s", file, line, r->what, status, code ? " " : "",
                   code ? code : "", r->status, r->status ? r->body : "transport error: ", r->status ? "" : r->error);
}

static __thread const char *at_file = "?";
static __thread int at_line;

void bx_at(const char *file, int line)
{
    at_file = file;
    at_line = line;
}

/* inside the flow helpers: expectations and asserts name the test's line */
#define HX(r, st) bx_expect_at((r), (st), NULL, at_file, at_line)
#define HA(cond, fmt, ...) cr_assert((cond), "%s:%d: " fmt, at_file, at_line, ##__VA_ARGS__)

static unsigned long uniq_counter;

const char *bx_unique(struct bx_client *c, const char *prefix)
{
    unsigned long n = __atomic_add_fetch(&uniq_counter, 1, __ATOMIC_RELAXED);
    return bx_str(c, "%s-%ld-%lu", prefix, (long)getpid(), n);
}

const char *(bx_user)(struct bx_client *c, const char *name, int64_t *user_id)
{
    struct bx_resp *r =
        bx_http_json(c, "POST", "/api/v1/users", NULL, json_pack("{s:s,s:s}", "name", name, "password", BX_PASSWORD));
    HX(r, 201);
    int64_t id = bx_jint(r->json, "userId");
    HA(id > 0, "signup: no userId in %s", r->body);
    r = bx_http_json(c, "POST", "/api/v1/sessions", NULL,
                     json_pack("{s:s,s:s}", "name", name, "password", BX_PASSWORD));
    HX(r, 200);
    const char *tok = bx_jstr(r->json, "accessToken");
    HA(*tok, "login: no accessToken in %s", r->body);
    HA(bx_jint(r->json, "userId") == id, "login userId differs from signup: %s", r->body);
    if (user_id)
        *user_id = id;
    return bx_str(c, "%s", tok);
}

int64_t(bx_admin_concert)(struct bx_client *c, const char *title)
{
    struct bx_req rq = {.admin_key = BX_ADMIN_KEY};
    struct bx_resp *r = bx_http_json(c, "POST", "/api/v1/admin/concerts", &rq,
                                     json_pack("{s:s,s:s}", "title", title, "venue", "Test Hall"));
    HX(r, 201);
    int64_t id = bx_jint(r->json, "concertId");
    HA(id > 0, "no concertId in %s", r->body);
    return id;
}

int64_t(bx_admin_schedule)(struct bx_client *c, int64_t concert_id, int seats, int64_t price)
{
    static int day;
    int d = __atomic_add_fetch(&day, 1, __ATOMIC_RELAXED);
    char starts[32];
    snprintf(starts, sizeof starts, "2030-%02d-%02dT19:00:00Z", 1 + (d / 28) % 12, 1 + d % 28);
    struct bx_req rq = {.admin_key = BX_ADMIN_KEY};
    struct bx_resp *r =
        bx_http_json(c, "POST", bx_str(c, "/api/v1/admin/concerts/%lld/schedules", (long long)concert_id), &rq,
                     json_pack("{s:s,s:i,s:I}", "startsAt", starts, "seats", seats, "price", (json_int_t)price));
    HX(r, 201);
    int64_t id = bx_jint(r->json, "scheduleId");
    HA(id > 0, "no scheduleId in %s", r->body);
    return id;
}

const char *(bx_queue_issue)(struct bx_client *c, const char *bearer, int64_t concert_id, char *status, size_t len)
{
    struct bx_req rq = {.bearer = bearer};
    struct bx_resp *r = bx_http(c, "POST", bx_str(c, "/api/v1/concerts/%lld/queue/tokens", (long long)concert_id), &rq);
    HA(r->status == 200 || r->status == 201, "%s: expected 200/201, got %ld %s", r->what, r->status, r->body);
    const char *tok = bx_jstr(r->json, "token");
    HA(*tok, "no token in %s", r->body);
    if (status)
        snprintf(status, len, "%s", bx_jstr(r->json, "status"));
    return bx_str(c, "%s", tok);
}

void(bx_wait_active)(struct bx_client *c, const char *bearer, const char *qtoken, int timeout_ms)
{
    struct bx_req rq = {.bearer = bearer, .queue_token = qtoken};
    int64_t deadline = bx_now_ms() + timeout_ms;
    for (;;) {
        struct bx_resp *r = bx_http(c, "GET", "/api/v1/queue/status", &rq);
        HX(r, 200);
        if (strcmp(bx_jstr(r->json, "status"), "ACTIVE") == 0)
            return;
        HA(bx_now_ms() < deadline, "queue token not ACTIVE within %d ms: %s", timeout_ms, r->body);
        bx_sleep_ms(50);
    }
}

const char *(bx_queue_active)(struct bx_client *c, const char *bearer, int64_t concert_id)
{
    const char *tok = (bx_queue_issue)(c, bearer, concert_id, NULL, 0);
    (bx_wait_active)(c, bearer, tok, 5000);
    return tok;
}

int64_t(bx_charge)(struct bx_client *c, const char *bearer, int64_t amount)
{
    struct bx_req rq = {.bearer = bearer};
    struct bx_resp *r = bx_http_json(c, "POST", "/api/v1/users/me/balance/charge", &rq,
                                     json_pack("{s:I}", "amount", (json_int_t)amount));
    HX(r, 200);
    return bx_jint(r->json, "balance");
}

int64_t(bx_balance)(struct bx_client *c, const char *bearer)
{
    struct bx_req rq = {.bearer = bearer};
    struct bx_resp *r = bx_http(c, "GET", "/api/v1/users/me/balance", &rq);
    HX(r, 200);
    int64_t b = bx_jint(r->json, "balance");
    HA(b != INT64_MIN, "no integer balance in %s", r->body);
    return b;
}

int64_t(bx_hold)(struct bx_client *c, const char *bearer, const char *qtoken, int64_t schedule_id, int seat_no)
{
    struct bx_req rq = {.bearer = bearer, .queue_token = qtoken};
    struct bx_resp *r = bx_http_json(c, "POST", "/api/v1/reservations", &rq,
                                     json_pack("{s:I,s:i}", "scheduleId", (json_int_t)schedule_id, "seatNo", seat_no));
    HX(r, 201);
    int64_t id = bx_jint(r->json, "reservationId");
    HA(id > 0, "no reservationId in %s", r->body);
    return id;
}

struct bx_resp *(bx_pay)(struct bx_client *c, const char *bearer, const char *qtoken, int64_t reservation_id)
{
    struct bx_req rq = {.bearer = bearer, .queue_token = qtoken};
    struct bx_resp *r = bx_http_json(c, "POST", "/api/v1/payments", &rq,
                                     json_pack("{s:I}", "reservationId", (json_int_t)reservation_id));
    HX(r, 201);
    return r;
}

bool(bx_seat_available)(struct bx_client *c, const char *bearer, const char *qtoken, int64_t schedule_id, int seat_no,
                        int *navail)
{
    struct bx_req rq = {.bearer = bearer, .queue_token = qtoken};
    struct bx_resp *r = bx_http(c, "GET", bx_str(c, "/api/v1/schedules/%lld/seats", (long long)schedule_id), &rq);
    HX(r, 200);
    json_t *seats = json_object_get(r->json, "seats");
    HA(json_is_array(seats), "no seats array in %s", r->body);
    bool found = false, avail = false;
    int n = 0;
    size_t i;
    json_t *s;
    json_array_foreach(seats, i, s)
    {
        bool a = json_is_true(json_object_get(s, "available"));
        n += a;
        if (bx_jint(s, "seatNo") == seat_no) {
            found = true;
            avail = a;
        }
    }
    if (navail)
        *navail = n;
    HA(found || seat_no <= 0, "seat %d not in the seat map of schedule %lld", seat_no, (long long)schedule_id);
    return avail;
}

int64_t bx_find_held(const json_t *reservations_answer, int64_t schedule_id, int seat_no)
{
    size_t i;
    json_t *res;
    int64_t rid = 0;
    json_array_foreach(json_object_get(reservations_answer, "reservations"), i, res)
    {
        if (bx_jint(res, "scheduleId") == schedule_id && bx_jint(res, "seatNo") == seat_no &&
            strcmp(bx_jstr(res, "status"), "HELD") == 0)
            rid = bx_jint(res, "reservationId");
    }
    return rid;
}
