/* webpage.c — the files of --web-root (webpage.h). Every file is opened beneath
 * the root in one step (openat2 with RESOLVE_BENEATH: a symlink, "..", or an
 * absolute link that leads out of the root fails), then streamed from that very
 * descriptor, so what was checked is what is sent. Must not hold API logic. */
#define _GNU_SOURCE
#include "http/webpage.h"
#include "http/server.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CHUNK ((size_t)64 * 1024)

/* The page loads only its own script and stylesheet and talks only to its own
 * origin; nothing may frame it (clickjacking). */
#define PAGE_CSP                                                                                                       \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "              \
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

static int root_fd = -1;         /* O_PATH descriptor of the root, for openat2 */
static char root_real[PATH_MAX]; /* its canonical path, for the fallback */
static h2o_mimemap_t *mimemap;   /* h2o's default types; read-only once open */
static int no_openat2;           /* set once when the kernel (or a seccomp filter) refuses openat2 */

int webpage_open(const char *root)
{
    struct stat st;
    if (realpath(root, root_real) == NULL || stat(root_real, &st) != 0 || !S_ISDIR(st.st_mode))
        return -1;
    root_fd = open(root_real, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0)
        return -1;
    mimemap = h2o_mimemap_create();
    return 0;
}

/* Opens rel (no leading '/') beneath the root, never leaving it. Without
 * openat2: canonicalizes the path, checks that it stays beneath the root, and
 * opens that canonical path without following a last symlink. -1 with errno. */
static int open_beneath(const char *rel)
{
    int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK; /* O_NONBLOCK: a FIFO must not hang the loop */
    if (!__atomic_load_n(&no_openat2, __ATOMIC_RELAXED)) {
        struct open_how how = {.flags = (uint64_t)flags, .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
        long fd = syscall(SYS_openat2, root_fd, rel, &how, sizeof how);
        if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
            return (int)fd;
        __atomic_store_n(&no_openat2, 1, __ATOMIC_RELAXED);
        log_warn("openat2 unavailable (%s): web files are checked with realpath instead", strerror(errno));
    }
    char full[PATH_MAX], real[PATH_MAX];
    size_t n = strlen(root_real);
    if ((size_t)snprintf(full, sizeof full, "%s/%s", root_real, rel) >= sizeof full) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (realpath(full, real) == NULL)
        return -1;
    if (strncmp(real, root_real, n) != 0 || (real[n] != '/' && real[n] != '\0')) {
        errno = EXDEV;
        return -1;
    }
    return open(real, flags | O_NOFOLLOW);
}

/* Headers on every answer of the web page, errors included. */
static void add_page_headers(struct call *c)
{
    h2o_req_t *req = c->req;
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 0, NULL,
                          H2O_STRLIT("nosniff"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("content-security-policy"), 0, NULL,
                          H2O_STRLIT(PAGE_CSP));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-frame-options"), 0, NULL, H2O_STRLIT("DENY"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("referrer-policy"), 0, NULL,
                          H2O_STRLIT("same-origin"));
}

/* Streams a regular file from its open descriptor; closes it when done or stopped. */
struct file_sender {
    h2o_generator_t super;
    int fd;
    off_t off;
    size_t left;
    char *buf;
};

static void sender_close(struct file_sender *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

static void sender_stop(h2o_generator_t *g, h2o_req_t *req)
{
    (void)req;
    sender_close((struct file_sender *)g);
}

static void sender_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    struct file_sender *s = (struct file_sender *)g;
    size_t want = s->left < CHUNK ? s->left : CHUNK;
    ssize_t n;
    while ((n = pread(s->fd, s->buf, want, s->off)) < 0 && errno == EINTR)
        ;
    if (n <= 0) { /* the file shrank or failed after Content-Length went out: cut the connection */
        req->http1_is_persistent = 0;
        sender_close(s);
        h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    s->off += n;
    s->left -= (size_t)n;
    int final = s->left == 0;
    if (final)
        sender_close(s);
    h2o_iovec_t v = h2o_iovec_init(s->buf, (size_t)n);
    h2o_send(req, &v, 1, final ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static h2o_iovec_t content_type_of(h2o_mem_pool_t *pool, const char *rel)
{
    const char *slash = strrchr(rel, '/'), *dot = strrchr(rel, '.');
    h2o_mimemap_type_t *t = NULL;
    if (dot != NULL && (slash == NULL || dot > slash))
        t = h2o_mimemap_get_type_by_extension(mimemap, h2o_iovec_init(dot + 1, strlen(dot + 1)));
    if (t == NULL || t->type != H2O_MIMEMAP_TYPE_MIMETYPE)
        t = h2o_mimemap_get_default_type(mimemap);
    h2o_iovec_t m = t->data.mimetype;
    int text = (m.len >= 5 && memcmp(m.base, "text/", 5) == 0) ||
               h2o_memis(m.base, m.len, H2O_STRLIT("application/javascript")) ||
               h2o_memis(m.base, m.len, H2O_STRLIT("application/json"));
    return text ? h2o_concat(pool, m, h2o_iovec_init(H2O_STRLIT("; charset=utf-8"))) : m;
}

/* The path the client asked for, decoded (h2o's path_normalized, without the
 * query), as a name relative to the root: "" and ".../" name their index.html.
 * Returns NULL after answering 400 (NUL or control character) or 404 (a hidden
 * or ".." segment: h2o resolves "/../" but leaves a decoded "%2e%2e"). */
static const char *relative_name(struct call *c)
{
    h2o_iovec_t p = c->req->path_normalized;
    for (size_t i = 0; i < p.len; i++) {
        unsigned char ch = (unsigned char)p.base[i];
        if (ch < 0x20 || ch == 0x7f) {
            call_reply_error(c, BX_ERR_VALIDATION, "path", "the path contains a NUL or control character");
            return NULL;
        }
    }
    size_t skip = 0;
    while (skip < p.len && p.base[skip] == '/')
        skip++;
    for (size_t i = skip; i < p.len; i++) {
        if (p.base[i] == '.' && (i == skip || p.base[i - 1] == '/')) {
            call_reply_error(c, BX_ERR_ROUTE_NOT_FOUND, NULL, "no such page or endpoint");
            return NULL;
        }
    }
    int dir = p.len == skip || p.base[p.len - 1] == '/';
    h2o_iovec_t rel =
        h2o_concat(&c->req->pool, h2o_iovec_init(p.base + skip, p.len - skip),
                   dir ? h2o_iovec_init(H2O_STRLIT("index.html")) : h2o_iovec_init("", 0), h2o_iovec_init("", 1));
    return rel.base;
}

static void reply_redirect_to_dir(struct call *c)
{
    h2o_req_t *req = c->req;
    size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    h2o_iovec_t loc = h2o_concat(&req->pool, h2o_iovec_init(req->path.base, plen), h2o_iovec_init(H2O_STRLIT("/")));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, loc.base, loc.len);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, c->request_id,
                          strlen(c->request_id));
    c->status = req->res.status = 301;
    req->res.reason = "Moved Permanently";
    req->res.content_length = 0;
    server_call_finished(c);
    h2o_send_inline(req, "", 0);
}

static int etag_matches(h2o_req_t *req, const char *etag)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_IF_NONE_MATCH, -1);
    if (i < 0)
        return 0;
    h2o_iovec_t v = req->headers.entries[i].value;
    return h2o_memis(v.base, v.len, H2O_STRLIT("*")) || h2o_strstr(v.base, v.len, etag, strlen(etag)) != SIZE_MAX;
}

void webpage_serve(struct call *c)
{
    h2o_req_t *req = c->req;
    c->web = 1;
    add_page_headers(c);
    int head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    if (!head && !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD"));
        call_reply_error(c, BX_ERR_METHOD_NOT_ALLOWED, NULL, NULL);
        return;
    }
    const char *rel = relative_name(c);
    if (rel == NULL)
        return;
    int fd = open_beneath(rel);
    if (fd < 0) {
        if (errno != ENOENT && errno != ENOTDIR && errno != EXDEV && errno != ELOOP && errno != EACCES)
            log_warn("web page: cannot open %s: %s", rel, strerror(errno));
        call_reply_error(c, BX_ERR_ROUTE_NOT_FOUND, NULL, "no such page or endpoint");
        return;
    }
    struct stat st = {0};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int is_dir = S_ISDIR(st.st_mode);
        close(fd);
        if (is_dir) /* "/dir" → "/dir/", so that its index page's relative links work */
            reply_redirect_to_dir(c);
        else
            call_reply_error(c, BX_ERR_ROUTE_NOT_FOUND, NULL, "no such page or endpoint");
        return;
    }

    char *etag = h2o_mem_alloc_pool(&req->pool, 48), *modified = h2o_mem_alloc_pool(&req->pool, 40);
    int etag_len = snprintf(etag, 48, "\"%llx-%llx\"", (unsigned long long)st.st_mtime, (unsigned long long)st.st_size);
    struct tm gmt;
    gmtime_r(&st.st_mtime, &gmt);
    h2o_time2str_rfc1123(modified, &gmt);
    h2o_iovec_t ctype = content_type_of(&req->pool, rel);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ETAG, NULL, etag, (size_t)etag_len);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LAST_MODIFIED, NULL, modified, H2O_TIMESTR_RFC1123_LEN);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, c->request_id,
                          strlen(c->request_id));
    if (etag_matches(req, etag)) {
        close(fd);
        c->status = req->res.status = 304;
        req->res.reason = "Not Modified";
        server_call_finished(c);
        h2o_send_inline(req, "", 0);
        return;
    }
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype.base, ctype.len);
    c->status = req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = (size_t)st.st_size;
    server_call_finished(c);
    if (head || st.st_size == 0) { /* HEAD: the GET's headers, Content-Length included, and no body */
        static h2o_generator_t none = {NULL, NULL};
        close(fd);
        h2o_start_response(req, &none);
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        return;
    }
    struct file_sender *s = h2o_mem_alloc_pool(&req->pool, sizeof *s);
    s->super.proceed = sender_proceed;
    s->super.stop = sender_stop;
    s->fd = fd;
    s->off = 0;
    s->left = (size_t)st.st_size;
    s->buf = h2o_mem_alloc_pool(&req->pool, s->left < CHUNK ? s->left : CHUNK);
    h2o_start_response(req, &s->super);
    sender_proceed(&s->super, req);
}
