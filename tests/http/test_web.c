/* test_web.c — the web page as a browser and an attacker meet it: files of
 * --web-root only (no NUL tricks, no symlink out of the root), the page's
 * security headers, HEAD answered as GET without a body (page and API), and
 * X-Request-Id on every answer. Each test serves its own web root, made here. */
#define _GNU_SOURCE
#include "harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct bx_server srv;
static struct bx_client C; /* through nginx in scale-out mode */
static struct bx_client I; /* instance A directly */
static char root[256];     /* the web root */

static void teardown(void)
{
    bx_client_release(&C);
    bx_client_release(&I);
    bx_server_cleanup(&srv);
    if (root[0] != '\0')
        bx_remove_tree(root);
    root[0] = '\0';
}

TestSuite(web, .fini = teardown, .timeout = 60);

static void put_file(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, name);
    FILE *f = fopen(path, "w");
    cr_assert(f != NULL, "%s", path);
    fputs(text, f);
    fclose(f);
}

static void put_link(const char *name, const char *target)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, name);
    cr_assert(symlink(target, path) == 0, "symlink %s", path);
}

#define INDEX "<!doctype html><title>t</title><script type=\"module\" src=\"app.js\"></script>\n"
#define APP "document.title = 'app';\n"

/* A web root with a page, a script, a symlink inside the root and three out of it,
 * then the server on it. */
static void start(void)
{
    snprintf(root, sizeof root, "/tmp/bx-web-XXXXXX");
    cr_assert(mkdtemp(root) != NULL);
    put_file("index.html", INDEX);
    put_file("app.js", APP);
    put_link("alias.js", "app.js");         /* inside: served */
    put_link("passwd.txt", "/etc/passwd");  /* out, absolute */
    put_link("up.txt", "../../etc/passwd"); /* out, relative */
    put_link("etc", "/etc");                /* a directory out of the root */
    BX_START(&srv, "--web-root", root);
    bx_client_init(&C, &srv);
    bx_client_init_instance(&I, &srv, 0);
}

static void expect_json_error(const struct bx_resp *r, long status, const char *code)
{
    bx_expect(r, status, code);
    cr_assert(bx_is_error_shape(r), "%s: not our JSON error shape: %s", r->what, r->body);
    cr_assert(r->request_id[0], "%s: no X-Request-Id", r->what);
    cr_assert(strstr(r->content_type, "application/json") != NULL, "%s: %s", r->what, r->content_type);
}

Test(web, a_nul_in_the_path_is_refused_not_served_as_another_type)
{
    start();
    const char *paths[] = {"/index.html%00.js", "/app.js%00.html", "/app.js%00", "/%00", "/index.html%0a.js"};
    for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++) {
        expect_json_error(bx_http(&I, "GET", paths[k], NULL), 400, "VALIDATION");
        /* through nginx (scale-out) nginx may refuse it first: never a 200 */
        struct bx_resp *r = bx_http(&C, "GET", paths[k], NULL);
        cr_assert_eq(r->status, 400, "%s: %ld %s", r->what, r->status, r->body);
    }
    /* a raw NUL byte on the wire is refused by the HTTP parser itself */
    static const char raw[] = "GET /index.html\0.js HTTP/1.1\r\nHost: x\r\n\r\n";
    char out[512];
    long st = bx_raw_http(srv.inst[0].port, raw, sizeof raw - 1, 3000, out, sizeof out, NULL);
    cr_assert(st == 400 || st == 0, "raw NUL: %ld %s", st, out);
    /* the files themselves still come with their own types */
    struct bx_resp *r = bx_http(&I, "GET", "/index.html", NULL);
    bx_expect(r, 200, NULL);
    cr_assert(strncmp(r->content_type, "text/html", 9) == 0, "%s", r->content_type);
    r = bx_http(&I, "GET", "/app.js", NULL);
    bx_expect(r, 200, NULL);
    cr_assert(strncmp(r->content_type, "application/javascript", 22) == 0, "%s", r->content_type);
    cr_assert_str_eq(r->body, APP);
}

Test(web, symlinks_out_of_the_root_are_not_followed)
{
    start();
    const char *out_of_root[] = {
        "/passwd.txt",     "/up.txt", "/etc/passwd", "/etc/", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd",
        "/.%2e/etc/passwd"};
    for (size_t k = 0; k < sizeof out_of_root / sizeof out_of_root[0]; k++) {
        struct bx_resp *r = bx_http(&I, "GET", out_of_root[k], NULL);
        cr_assert(strstr(r->body, "root:") == NULL, "%s leaked: %s", r->what, r->body);
        expect_json_error(r, 404, "ROUTE_NOT_FOUND");
    }
    /* a symlink that stays inside the root is a file of the page */
    struct bx_resp *r = bx_http(&I, "GET", "/alias.js", NULL);
    bx_expect(r, 200, NULL);
    cr_assert_str_eq(r->body, APP);
    expect_json_error(bx_http(&I, "GET", "/missing.js", NULL), 404, "ROUTE_NOT_FOUND");
}

Test(web, the_page_sends_nosniff_a_csp_and_refuses_framing)
{
    start();
    const char *paths[] = {"/", "/index.html", "/app.js", "/missing.js"};
    for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++) {
        struct bx_resp *r = bx_http(&C, "GET", paths[k], NULL);
        char v[512];
        cr_assert(bx_header(r, "X-Content-Type-Options", v, sizeof v) != NULL, "%s: no nosniff", r->what);
        cr_assert_str_eq(v, "nosniff");
        cr_assert(bx_header(r, "Content-Security-Policy", v, sizeof v) != NULL, "%s: no CSP", r->what);
        cr_assert(strstr(v, "frame-ancestors 'none'") != NULL, "%s: CSP %s", r->what, v);
        cr_assert(strstr(v, "default-src 'self'") != NULL, "%s: CSP %s", r->what, v);
        cr_assert(strstr(v, "script-src 'self'") != NULL && strstr(v, "unsafe-inline") == NULL, "%s: CSP %s", r->what,
                  v);
        cr_assert(bx_header(r, "X-Frame-Options", v, sizeof v) != NULL && strcmp(v, "DENY") == 0, "%s", r->what);
    }
}

Test(web, head_is_answered_as_get_without_a_body)
{
    start();
    const char *paths[] = {"/", "/app.js", "/api/v1/concerts", "/healthz", "/metrics"};
    for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++) {
        struct bx_resp *g = bx_http(&I, "GET", paths[k], NULL);
        bx_expect(g, 200, NULL);
        struct bx_resp *h = bx_http(&I, "HEAD", paths[k], NULL);
        bx_expect(h, 200, NULL);
        cr_assert_eq(h->len, 0, "%s: HEAD sent a body", h->what);
        cr_assert_str_eq(h->content_type, g->content_type, "%s", h->what);
        cr_assert(h->request_id[0], "%s: no X-Request-Id", h->what);
        char cl[32];
        if (strcmp(paths[k], "/metrics") != 0) { /* the metrics change between the two requests */
            cr_assert(bx_header(h, "Content-Length", cl, sizeof cl) != NULL, "%s: no Content-Length", h->what);
            cr_assert_eq(strtoul(cl, NULL, 10), g->len, "%s: Content-Length %s, GET body %zu", h->what, cl, g->len);
        }
    }
    /* a route that has no GET still answers 405, and every Allow of a GET names HEAD */
    struct bx_resp *r = bx_http(&I, "HEAD", "/api/v1/users", NULL);
    cr_assert_eq(r->status, 405, "%s: %ld", r->what, r->status);
    cr_assert_str_eq(r->allow, "POST");
    r = bx_http(&I, "DELETE", "/api/v1/concerts", NULL);
    expect_json_error(r, 405, "METHOD_NOT_ALLOWED");
    cr_assert_str_eq(r->allow, "GET, HEAD");
    r = bx_http(&I, "POST", "/index.html", NULL);
    expect_json_error(r, 405, "METHOD_NOT_ALLOWED");
    cr_assert_str_eq(r->allow, "GET, HEAD");
}

Test(web, every_answer_of_the_page_carries_a_request_id)
{
    start();
    const char *paths[] = {"/", "/index.html", "/app.js", "/missing", "/index.html%00.js"};
    for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++) {
        struct bx_resp *r = bx_http(&I, "GET", paths[k], NULL);
        cr_assert(r->status > 0, "%s: %s", r->what, r->error);
        cr_assert(r->request_id[0], "%s (%ld): no X-Request-Id", r->what, r->status);
    }
    /* a revalidation with the ETag answers 304, still with an id */
    struct bx_resp *r = bx_http(&I, "GET", "/app.js", NULL);
    char etag[64];
    cr_assert(bx_header(r, "ETag", etag, sizeof etag) != NULL, "no ETag");
    struct bx_req rq = {.header = bx_str(&I, "If-None-Match: %s", etag)};
    r = bx_http(&I, "GET", "/app.js", &rq);
    cr_assert_eq(r->status, 304, "%s: %ld", r->what, r->status);
    cr_assert(r->request_id[0], "304 without X-Request-Id");
}
