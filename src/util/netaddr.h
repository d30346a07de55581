/* netaddr.h — client addresses for per-address limits: parsing (IPv4, IPv6,
 * from text or a struct sockaddr), sets of trusted proxies (addresses and CIDR
 * blocks, --trusted-proxy) and the key a limiter files an address under.
 * Pure functions: no I/O, no allocation. */
#ifndef BX_UTIL_NETADDR_H
#define BX_UTIL_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct netaddr {
    int family;          /* 4 or 6; 0: none */
    unsigned char b[16]; /* 4 or 16 bytes, network order */
};

#define NETADDR_SET_MAX 32
#define NETADDR_TEXT_MAX 48 /* INET6_ADDRSTRLEN + NUL */

/* Trusted proxies: addresses and CIDR blocks. */
struct netaddr_set {
    size_t n;
    struct {
        struct netaddr net;
        int prefix; /* bits */
    } item[NETADDR_SET_MAX];
};

/* Parses one address of text[0..len): IPv4 ("10.0.0.1", "10.0.0.1:443"), IPv6
 * ("2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:443"), spaces around ignored.
 * An IPv4-mapped IPv6 address becomes the IPv4 one. 0 on success, -1 otherwise. */
int netaddr_parse(const char *text, size_t len, struct netaddr *out);
/* From an AF_INET / AF_INET6 socket address. -1 for any other family. */
int netaddr_from_sockaddr(const struct sockaddr *sa, socklen_t len, struct netaddr *out);
/* Writes the address as text (at least NETADDR_TEXT_MAX bytes); "-" when none. */
void netaddr_format(const struct netaddr *a, char *out, size_t len);

/* Parses a comma-separated list of addresses and CIDR blocks ("127.0.0.1,
 * 10.0.0.0/8, ::1"); an empty list is an empty set. 0 on success; -1 with the
 * reason in err. */
int netaddr_set_parse(const char *list, struct netaddr_set *set, char *err, size_t errlen);
bool netaddr_set_contains(const struct netaddr_set *set, const struct netaddr *a);

/* The key per-address limits use: an IPv4 address as such, an IPv6 address by its
 * /64 (one subscriber's network: an attacker with one /64 has 2^64 addresses).
 * Never 0 for an address; 0 for none. */
uint64_t netaddr_key(const struct netaddr *a);

#endif
