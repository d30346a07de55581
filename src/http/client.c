/* client.c — see client.h. */
#include "http/client.h"
#include "app.h"
#include "util/log.h"

#include <string.h>

#define XFF_MAX 32 /* entries of X-Forwarded-For looked at, from the right */

static int peer_of(struct call *c, struct netaddr *out)
{
    struct sockaddr_storage ss;
    memset(out, 0, sizeof *out);
    if (c->req->conn->callbacks->get_peername == NULL)
        return -1;
    socklen_t len = c->req->conn->callbacks->get_peername(c->req->conn, (struct sockaddr *)&ss);
    return len > 0 ? netaddr_from_sockaddr((struct sockaddr *)&ss, len, out) : -1;
}

/* The rightmost X-Forwarded-For entry that is not a trusted proxy, over every
 * X-Forwarded-For header in order. 0 when found. */
static int forwarded_for(struct call *c, struct netaddr *out)
{
    h2o_iovec_t entries[XFF_MAX];
    int n = 0;
    static const char name[] = "x-forwarded-for";
    for (ssize_t i = -1; (i = h2o_find_header_by_str(&c->req->headers, name, sizeof name - 1, i)) >= 0;) {
        const h2o_iovec_t v = c->req->headers.entries[i].value;
        size_t start = 0;
        for (size_t k = 0; k <= v.len; k++)
            if (k == v.len || v.base[k] == ',') {
                if (n == XFF_MAX) /* keep the rightmost XFF_MAX */
                    memmove(entries, entries + 1, sizeof entries[0] * (XFF_MAX - 1)), n--;
                entries[n++] = h2o_iovec_init(v.base + start, k - start);
                start = k + 1;
            }
    }
    for (int i = n - 1; i >= 0; i--) {
        struct netaddr a;
        if (netaddr_parse(entries[i].base, entries[i].len, &a) != 0)
            return -1; /* not an address: the proxy did not write it; trust nothing left of it */
        if (!netaddr_set_contains(&app.trusted_proxies, &a)) {
            *out = a;
            return 0;
        }
    }
    return -1;
}

/* A proxy the operator did not name: every client behind it counts as one
 * address. Said once per process, the first time it shows. */
static void warn_untrusted_proxy(struct call *c, const struct netaddr *peer)
{
    static int warned;
    size_t len;
    if (__atomic_load_n(&warned, __ATOMIC_RELAXED) || call_header(c, "x-forwarded-for", &len) == NULL ||
        __atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
        return;
    char text[NETADDR_TEXT_MAX];
    netaddr_format(peer, text, sizeof text);
    log_warn("requests from %s carry X-Forwarded-For, but %s is not in --trusted-proxy: the per-address limits of "
             "sign-ups and log-ins count every client behind it as one address (set --trusted-proxy %s if it is "
             "your proxy; docs/DEPLOY.md)",
             text, text, text);
}

void call_client(struct call *c, struct netaddr *out)
{
    if (peer_of(c, out) != 0)
        return;
    if (app.trusted_proxies.n == 0 || !netaddr_set_contains(&app.trusted_proxies, out)) {
        warn_untrusted_proxy(c, out);
        return;
    }
    struct netaddr via;
    size_t len;
    const char *real_ip;
    if (forwarded_for(c, &via) == 0 ||
        ((real_ip = call_header(c, "x-real-ip", &len)) != NULL && netaddr_parse(real_ip, len, &via) == 0))
        *out = via;
}

uint64_t call_client_key(struct call *c)
{
    if (c->client_key == 0) {
        struct netaddr a;
        call_client(c, &a);
        c->client_key = netaddr_key(&a);
        if (c->client_key == 0)
            c->client_key = 1; /* no address (a UNIX socket): one shared key */
    }
    return c->client_key;
}
