/* netaddr.c — see netaddr.h. */
#include "util/netaddr.h"
#include "util/mix64.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void set_v6(struct netaddr *out, const unsigned char b[16])
{
    if (memcmp(b, v4_mapped, sizeof v4_mapped) == 0) {
        out->family = 4;
        memset(out->b, 0, sizeof out->b);
        memcpy(out->b, b + 12, 4);
        return;
    }
    out->family = 6;
    memcpy(out->b, b, 16);
}

int netaddr_parse(const char *text, size_t len, struct netaddr *out)
{
    char buf[NETADDR_TEXT_MAX + 8];
    memset(out, 0, sizeof *out);
    while (len > 0 && (*text == ' ' || *text == '\t'))
        text++, len--;
    while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\t'))
        len--;
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, text, len);
    buf[len] = '\0';
    char *s = buf;
    if (*s == '[') { /* [v6] or [v6]:port */
        char *close = strchr(s, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':'))
            return -1;
        *close = '\0';
        s++;
    } else if (strchr(s, ':') != NULL && strchr(s, ':') == strrchr(s, ':') && strchr(s, '.') != NULL) {
        *strchr(s, ':') = '\0'; /* v4:port */
    }
    unsigned char b[16];
    if (inet_pton(AF_INET, s, b) == 1) {
        out->family = 4;
        memcpy(out->b, b, 4);
        return 0;
    }
    if (inet_pton(AF_INET6, s, b) == 1) {
        set_v6(out, b);
        return 0;
    }
    return -1;
}

int netaddr_from_sockaddr(const struct sockaddr *sa, socklen_t len, struct netaddr *out)
{
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        out->family = 4;
        memcpy(out->b, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        set_v6(out, ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
        return 0;
    }
    return -1;
}

void netaddr_format(const struct netaddr *a, char *out, size_t len)
{
    if (a->family == 0 || inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->b, out, (socklen_t)len) == NULL)
        snprintf(out, len, "-");
}

int netaddr_set_parse(const char *list, struct netaddr_set *set, char *err, size_t errlen)
{
    set->n = 0;
    const char *p = list;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *slash = memchr(p, '/', len);
        size_t alen = slash ? (size_t)(slash - p) : len;
        struct netaddr a;
        int prefix = -1;
        if (netaddr_parse(p, alen, &a) != 0) {
            int blank = 1;
            for (size_t i = 0; i < len; i++)
                blank &= p[i] == ' ';
            if (blank && slash == NULL) { /* "a,,b" or a trailing comma */
                p += len + (end != NULL);
                continue;
            }
            snprintf(err, errlen, "not an IP address or CIDR block: \"%.*s\"", (int)len, p);
            return -1;
        }
        if (slash != NULL) {
            char *e;
            long v = strtol(slash + 1, &e, 10);
            while (e < p + len && *e == ' ')
                e++;
            if (e != p + len || e == slash + 1 || v < 0 || v > (a.family == 4 ? 32 : 128)) {
                snprintf(err, errlen, "bad prefix length in \"%.*s\"", (int)len, p);
                return -1;
            }
            prefix = (int)v;
        } else {
            prefix = a.family == 4 ? 32 : 128;
        }
        if (set->n == NETADDR_SET_MAX) {
            snprintf(err, errlen, "more than %d trusted proxies", NETADDR_SET_MAX);
            return -1;
        }
        set->item[set->n].net = a;
        set->item[set->n].prefix = prefix;
        set->n++;
        p += len + (end != NULL);
    }
    return 0;
}

static bool prefix_matches(const unsigned char *a, const unsigned char *net, int bits)
{
    int whole = bits / 8, rest = bits % 8;
    if (memcmp(a, net, (size_t)whole) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[whole] & mask) == (net[whole] & mask);
}

bool netaddr_set_contains(const struct netaddr_set *set, const struct netaddr *a)
{
    for (size_t i = 0; i < set->n; i++)
        if (set->item[i].net.family == a->family && prefix_matches(a->b, set->item[i].net.b, set->item[i].prefix))
            return true;
    return false;
}

uint64_t netaddr_key(const struct netaddr *a)
{
    uint64_t k = 0;
    if (a->family == 4) {
        for (int i = 0; i < 4; i++)
            k = k << 8 | a->b[i];
        k |= (uint64_t)4 << 56;
    } else if (a->family == 6) {
        for (int i = 0; i < 8; i++)
            k = k << 8 | a->b[i];
        k = mix64(k ^ (uint64_t)6 << 56);
    } else {
        return 0;
    }
    return k != 0 ? k : 1;
}
