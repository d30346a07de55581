/* test_operator.c — what an operator meets when starting and running the binary:
 * a second server on a busy port refuses to start (whoever holds the port),
 * the subcommands say what they did and what is wrong (a missing database, an
 * unwritable data directory), --version, and request log levels by status. */
#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static struct bx_server srv;
static struct bx_client C;
static char dir[256]; /* scratch directory of the test */

static void teardown(void)
{
    bx_client_release(&C);
    bx_server_cleanup(&srv);
    if (dir[0] != '\0')
        bx_remove_tree(dir);
    dir[0] = '\0';
}

TestSuite(operator, .fini = teardown, .timeout = 90);

static void scratch(void)
{
    snprintf(dir, sizeof dir, "/tmp/bx-op-XXXXXX");
    cr_assert(mkdtemp(dir) != NULL);
    chmod(dir, 0755); /* traversable by the unprivileged user some tests run as */
}

static const char *in_dir(const char *name)
{
    static char paths[8][320];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", dir, name);
    return p;
}

/* Runs `boxoffice serve` on port with a database of its own; it must exit
 * non-zero within 10 s (a server that started is killed: exit 137). */
static int serve_on(int port, const char *db, char **out)
{
    char listen[64], dbarg[400];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    snprintf(dbarg, sizeof dbarg, "sqlite:%s", db);
    const char *args[] = {"serve", "--listen", listen, "--db", dbarg, "--queue", "memory", "--threads", "2", NULL};
    return bx_run_bin(args, 10000, 0, out);
}

Test(operator, a_second_server_on_a_busy_port_refuses_to_start)
{
    BX_START(&srv);
    bx_client_init(&C, &srv);
    scratch();
    int64_t cid = bx_admin_concert(&C, "the first server's concert");
    char *out = NULL;
    int rc = serve_on(srv.inst[0].port, in_dir("other.db"), &out);
    cr_assert(rc != 0 && rc != 137, "a second server started on a busy port (exit %d): %s", rc, out);
    cr_assert(strstr(out, "in use by another process") != NULL, "no clear error: %s", out);
    cr_assert(strstr(out, "serving") == NULL, "it said it was serving: %s", out);
    cr_assert(access(in_dir("other.db"), F_OK) != 0, "it created its database before finding the port busy");
    free(out);
    /* every request is still answered by the first server */
    struct bx_client direct;
    bx_client_init_instance(&direct, &srv, 0);
    for (int i = 0; i < 12; i++) {
        struct bx_resp *r = bx_http(&direct, "GET", "/api/v1/concerts", NULL);
        bx_expect(r, 200, NULL);
        cr_assert(strstr(r->body, bx_str(&direct, "\"concertId\":%lld", (long long)cid)) != NULL,
                  "request %d answered by another server: %s", i, r->body);
        bx_client_reset(&direct); /* a new connection each time: each is accepted anew */
    }
    bx_client_release(&direct);
}

Test(operator, a_port_held_by_another_program_is_refused_even_with_so_reuseport)
{
    scratch();
    /* another program of the same user listening with SO_REUSEPORT: the kernel
     * would let any SO_REUSEPORT socket of this user join its group */
    int fd = socket(AF_INET, SOCK_STREAM, 0), on = 1;
    cr_assert(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 16) == 0 &&
              getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
    char *out = NULL;
    int rc = serve_on(ntohs(a.sin_port), in_dir("x.db"), &out);
    close(fd);
    cr_assert(rc != 0 && rc != 137, "boxoffice shared a port another program listens on (exit %d): %s", rc, out);
    cr_assert(strstr(out, "in use by another process") != NULL, "no clear error: %s", out);
    free(out);
}

/* ------------------------------------------------------------ subcommands */

Test(operator, version_and_help_name_the_binary_and_its_contract)
{
    char *out = NULL;
    const char *version[] = {"--version", NULL};
    cr_assert_eq(bx_run_bin(version, 5000, 0, &out), 0, "%s", out);
    cr_assert(strncmp(out, "boxoffice ", 10) == 0 && strchr("0123456789", out[10]) != NULL, "%s", out);
    free(out);
    const char *help[] = {"--help", NULL};
    cr_assert_eq(bx_run_bin(help, 5000, 0, &out), 0, "%s", out);
    cr_assert(strstr(out, "--version") != NULL, "--help does not mention --version: %s", out);
    cr_assert(strstr(out, "docs/CONTRACT.md") != NULL, "--help does not point at the contract: %s", out);
    cr_assert(strstr(out, "SPEC") == NULL, "--help points at a SPEC the repository does not have: %s", out);
    free(out);
}

Test(operator, audit_of_a_missing_database_says_so_and_creates_nothing)
{
    scratch();
    char db[400];
    snprintf(db, sizeof db, "sqlite:%s", in_dir("missing.db"));
    const char *args[] = {"audit", "--db", db, NULL};
    char *out = NULL;
    int rc = bx_run_bin(args, 10000, 0, &out);
    cr_assert_eq(rc, 2, "audit of a missing database: exit %d: %s", rc, out);
    cr_assert(strstr(out, "no database at") != NULL, "no clear message: %s", out);
    cr_assert(strstr(out, "no such table") == NULL && strstr(out, "SELECT") == NULL, "raw SQL error: %s", out);
    cr_assert(access(in_dir("missing.db"), F_OK) != 0, "audit created the database file");
    free(out);
    /* an empty file (what an older audit left behind) is no database either */
    FILE *f = fopen(in_dir("missing.db"), "w");
    fclose(f);
    rc = bx_run_bin(args, 10000, 0, &out);
    cr_assert_eq(rc, 2, "audit of an empty file: exit %d: %s", rc, out);
    cr_assert(strstr(out, "no such table") == NULL && strstr(out, "SELECT") == NULL, "raw SQL error: %s", out);
    free(out);
}

Test(operator, migrate_says_whether_it_created_the_schema_or_found_it)
{
    scratch();
    char db[400];
    snprintf(db, sizeof db, "sqlite:%s", in_dir("new.db"));
    const char *args[] = {"migrate", "--db", db, NULL};
    char *out = NULL;
    cr_assert_eq(bx_run_bin(args, 20000, 0, &out), 0, "%s", out);
    cr_assert(strstr(out, "schema created") != NULL, "first migrate of a new file: %s", out);
    cr_assert(strstr(out, "up to date") == NULL, "a new file is not 'up to date': %s", out);
    free(out);
    cr_assert_eq(bx_run_bin(args, 20000, 0, &out), 0, "%s", out);
    cr_assert(strstr(out, "already migrated") != NULL, "second migrate: %s", out);
    free(out);
    const char *audit[] = {"audit", "--db", db, NULL};
    cr_assert_eq(bx_run_bin(audit, 20000, 0, &out), 0, "audit of a fresh database: %s", out);
    free(out);
}

/* Copies the binary where an unprivileged user can run it. */
static const char *bin_copy(void)
{
    const char *src = getenv("BOXOFFICE_BIN");
    cr_assert(src != NULL);
    const char *dst = in_dir("boxoffice");
    const char *cp[] = {"/bin/cp", src, dst, NULL};
    cr_assert_eq(bx_run(cp, 20000, 0, NULL), 0, "cp %s %s", src, dst);
    chmod(dst, 0755);
    return dst;
}

Test(operator, an_unwritable_data_directory_is_named_with_the_permission_problem)
{
    scratch();
    const char *bin = bin_copy();
    mkdir(in_dir("locked"), 0755);
    int uid = 0;
    if (geteuid() == 0)
        uid = 65534; /* nobody: root writes everywhere */
    else
        chmod(in_dir("locked"), 0555);
    const char *cases[][2] = {{"migrate", "locked/data/bx.db"}, {"migrate", "locked/bx.db"}, {"serve", "locked/bx.db"}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char db[400];
        snprintf(db, sizeof db, "sqlite:%s", in_dir(cases[k][1]));
        const char *args[] = {bin, cases[k][0], "--db", db, "--listen", "127.0.0.1:0", NULL};
        char *out = NULL;
        int rc = bx_run(args, 20000, uid, &out);
        cr_assert(rc != 0 && rc != 137, "%s %s: exit %d: %s", cases[k][0], db, rc, out);
        cr_assert(strstr(out, "permission denied") != NULL && strstr(out, "not writable by user") != NULL,
                  "%s %s: no hint of permissions: %s", cases[k][0], db, out);
        cr_assert(strstr(out, in_dir("locked")) != NULL, "%s: the directory is not named: %s", cases[k][0], out);
        free(out);
    }
}

/* ------------------------------------------------------------ make run */

static int run_demo(const char *listen, int timeout_ms, char **out)
{
    const char *args[] = {
        BX_SOURCE_ROOT "/scripts/run-demo.sh", getenv("BOXOFFICE_BIN"), in_dir("data"), listen, "demo-key", NULL};
    return bx_run(args, timeout_ms, 0, out);
}

Test(operator, make_run_prints_the_walkthrough_only_once_the_server_listens)
{
    scratch();
    /* a busy port: the error, no walkthrough, a failing exit */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 4) == 0 &&
              getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
    char listen_on[64];
    snprintf(listen_on, sizeof listen_on, "127.0.0.1:%d", ntohs(a.sin_port));
    char *out = NULL;
    int rc = run_demo(listen_on, 30000, &out);
    close(fd);
    cr_assert(rc != 0 && rc != 137, "make run on a busy port: exit %d: %s", rc, out);
    cr_assert(strstr(out, "in use by another process") != NULL, "%s", out);
    cr_assert(strstr(out, "Walk the whole flow") == NULL, "the walkthrough was printed for a failed start: %s", out);
    free(out);
    /* a free port: the walkthrough comes after the line that says it serves */
    rc = run_demo("127.0.0.1:0", 8000, &out); /* serves until the timeout kills it */
    cr_assert_eq(rc, 137, "exit %d: %s", rc, out);
    const char *serving = strstr(out, "boxoffice serving on");
    const char *walk = strstr(out, "Walk the whole flow");
    cr_assert(serving != NULL && walk != NULL && walk > serving, "walkthrough missing or before the bind: %s", out);
    free(out);
}

/* ------------------------------------------------------------ request logs */

/* The request line the server logged for rid, or NULL. */
static char *log_line_of(const char *log, const char *rid)
{
    char *text = NULL;
    const char *cat[] = {"/bin/cat", log, NULL};
    bx_run(cat, 5000, 0, &text);
    char *hit = text ? strstr(text, bx_str(&C, "\"rid\":\"%s\"", rid)) : NULL;
    if (hit == NULL) {
        free(text);
        return NULL;
    }
    char *start = hit, *end = strchr(hit, '\n');
    while (start > text && start[-1] != '\n')
        start--;
    char *line = strndup(start, end ? (size_t)(end - start) : strlen(start));
    free(text);
    return line;
}

Test(operator, request_logs_say_warn_for_503_and_info_for_client_errors)
{
    BX_START(&srv);
    bx_client_init(&C, &srv);
    if (bx_scaleout(&srv))
        cr_skip_test("the embedded database is locked from outside here; the level rule is the same code");
    /* hold SQLite's write lock from outside longer than the server's busy timeout (5 s) */
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(srv.db + 7, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    struct bx_resp *r = bx_http_json(&C, "POST", "/api/v1/users", NULL,
                                     json_pack("{s:s,s:s}", "name", "locked-out", "password", BX_PASSWORD));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    bx_expect(r, 503, "UNAVAILABLE");
    struct bx_resp *missing = bx_http(&C, "GET", "/api/v1/nothing-here", NULL);
    bx_expect(missing, 404, "ROUTE_NOT_FOUND");
    bx_sleep_ms(200);
    char *line = log_line_of(srv.log_path, r->request_id);
    cr_assert(line != NULL, "no log line for %s", r->request_id);
    cr_assert(strstr(line, "\"status\":503") && strstr(line, "\"level\":\"warn\""), "503 logged as: %s", line);
    free(line);
    line = log_line_of(srv.log_path, missing->request_id);
    cr_assert(line != NULL && strstr(line, "\"level\":\"info\""), "404 logged as: %s", line);
    free(line);
}
