/* test_operator.c — what an operator meets when starting and running the binary:
 * a second server on a busy port refuses to start (whoever holds the port),
 * the subcommands say what they did and what is wrong (a missing database, an
 * unwritable data directory), --version, and request log levels by status. */
#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static struct bx_server srv;
static struct bx_client C;
static char dir[256]; /* scratch directory of the test */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void teardown(void)
{
    bx_client_release(&C);
    bx_server_cleanup(&srv);
    if (dir[0] != '\0')
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
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
