/* fuzz_router.c — request routing as server.c's on_req does it: method + path
 * (query string cut off at the first '?') through router_match with the real
 * route table (api/routes.c), then the query parameters payments_list_mine
 * reads. Input: "METHOD /path?query" (no space: the whole input is a GET path).
 * Invariants: a FOUND route matches segment by segment and its {id} is 1..INT64_MAX;
 * HEAD matches a GET route; BAD_ID only on templates with {id}, which name it; the Allow list
 * never overflows its buffer and never names the method asked; NO_PATH agrees
 * with an independent matcher. */
#include "fuzz.h"

#include "api/api.h"
#include "domain/validate.h"
#include "http/parse.h"
#include "http/router.h"

/* Independent reference: does path match tmpl, and what is the {id} segment? */
static bool ref_match(const char *tmpl, const char *path, size_t plen, const char **seg, size_t *seglen)
{
    size_t ti = 0, pi = 0, tl = strlen(tmpl);
    *seg = NULL;
    *seglen = 0;
    while (ti < tl) {
        if (pi >= plen || path[pi] != '/' || tmpl[ti] != '/')
            return false;
        ti++, pi++;
        size_t ts = ti, ps = pi;
        while (ti < tl && tmpl[ti] != '/')
            ti++;
        while (pi < plen && path[pi] != '/')
            pi++;
        if (ti - ts == 4 && memcmp(tmpl + ts, "{id}", 4) == 0) {
            if (pi == ps)
                return false;
            *seg = path + ps;
            *seglen = pi - ps;
        } else if (ti - ts != pi - ps || memcmp(tmpl + ts, path + ps, ti - ts) != 0) {
            return false;
        }
    }
    return pi == plen;
}

static bool allow_lists(const char *allow, const char *method, size_t mlen)
{
    const char *p = allow;
    while (*p) {
        const char *e = strstr(p, ", ");
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == mlen && memcmp(p, method, n) == 0)
            return true;
        p += n;
        if (e)
            p += 2;
    }
    return false;
}

/* payments.c's query_int, the one handler that reads the query string. */
static int query_int(const char *v, size_t len, int64_t min, int64_t max, int64_t *out)
{
    int64_t x = 0;
    int ok = len > 0 && len <= 18;
    for (size_t i = 0; ok && i < len; i++) {
        ok = v[i] >= '0' && v[i] <= '9';
        x = x * 10 + (v[i] - '0');
    }
    if (!ok || x < min || x > max)
        return -1;
    *out = x;
    return 0;
}

static void check_query(const char *q, size_t qlen)
{
    static const char *const names[] = {"limit", "before", "", "a"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        size_t vlen = 12345;
        const char *v = parse_query_param(q, qlen, names[k], &vlen);
        if (v == NULL)
            continue;
        FUZZ_CHECK(v >= q && v <= q + qlen && vlen <= (size_t)(q + qlen - v), "value outside the query");
        FUZZ_CHECK(memchr(v, '&', vlen) == NULL, "value spans a '&'");
        int64_t x;
        if (k == 0 && query_int(v, vlen, 1, 100, &x) == 0)
            FUZZ_CHECK(x >= 1 && x <= 100, "limit %lld", (long long)x);
        if (k == 1 && query_int(v, vlen, 1, INT64_MAX / 10, &x) == 0)
            FUZZ_CHECK(x >= 1, "before %lld", (long long)x);
    }
}

static void route_once(const char *method, size_t mlen, const char *path, size_t plen, size_t allow_len)
{
    const struct route *route = NULL;
    int64_t id = -7;
    char *allow = malloc(allow_len); /* exact size: ASan catches any overflow */
    if (allow == NULL)
        abort();
    enum router_result r =
        router_match(api_routes, api_route_count, method, mlen, path, plen, &route, &id, allow, allow_len);
    FUZZ_CHECK(memchr(allow, '\0', allow_len) != NULL, "Allow not terminated");

    /* what an independent matcher says about every route */
    bool any_path = false, method_found = false;
    const struct route *first = NULL;
    const char *first_seg = NULL;
    size_t first_seglen = 0;
    for (size_t i = 0; i < api_route_count; i++) {
        const char *seg;
        size_t seglen;
        if (!ref_match(api_routes[i].path, path, plen, &seg, &seglen))
            continue;
        any_path = true;
        bool same = strlen(api_routes[i].method) == mlen && memcmp(api_routes[i].method, method, mlen) == 0;
        bool head_as_get = mlen == 4 && memcmp(method, "HEAD", 4) == 0 && strcmp(api_routes[i].method, "GET") == 0;
        if (!method_found && (same || head_as_get)) {
            method_found = true;
            first = &api_routes[i];
            first_seg = seg;
            first_seglen = seglen;
        }
    }

    switch (r) {
    case ROUTER_FOUND:
    case ROUTER_BAD_ID: {
        FUZZ_CHECK(method_found && route == first, "router picked route %s, reference %s", route ? route->path : "-",
                   first ? first->path : "-");
        int64_t ref_id = 0;
        int ref_ok = first_seg == NULL ? 0 : validate_parse_id(first_seg, first_seglen, &ref_id);
        if (r == ROUTER_FOUND) {
            FUZZ_CHECK(ref_ok == 0, "FOUND but the reference rejects the id");
            if (first_seg != NULL)
                FUZZ_CHECK(id >= 1 && id == ref_id, "id %lld, reference %lld", (long long)id, (long long)ref_id);
            else
                FUZZ_CHECK(id == 0, "id %lld on a route without {id}", (long long)id);
        } else {
            FUZZ_CHECK(first_seg != NULL && ref_ok != 0, "BAD_ID but the reference accepts it");
            FUZZ_CHECK(route->id_name != NULL && route->id_name[0] != '\0', "BAD_ID route names no parameter");
        }
        break;
    }
    case ROUTER_BAD_METHOD:
        FUZZ_CHECK(any_path && !method_found, "BAD_METHOD disagrees with the reference");
        FUZZ_CHECK(!allow_lists(allow, method, mlen), "Allow names the method asked: %s", allow);
        if (allow_len >= 64)
            FUZZ_CHECK(allow[0] != '\0', "empty Allow header");
        break;
    case ROUTER_NO_PATH:
        FUZZ_CHECK(!any_path, "NO_PATH but the reference matches");
        break;
    default:
        FUZZ_CHECK(0, "router result %d", (int)r);
    }
    free(allow);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_dup(data, size);
    const char *sp = memchr(buf, ' ', size < 16 ? size : 16);
    const char *method = "GET";
    size_t mlen = 3;
    const char *target = buf;
    size_t tlen = size;
    if (sp != NULL) {
        method = buf;
        mlen = (size_t)(sp - buf);
        target = sp + 1;
        tlen = size - mlen - 1;
    }
    /* h2o's query_at: the first '?' */
    const char *q = memchr(target, '?', tlen);
    size_t plen = q ? (size_t)(q - target) : tlen;
    /* path and query in their own exact-size blocks */
    char *path = fuzz_dup((const uint8_t *)target, plen);
    char *meth = fuzz_dup((const uint8_t *)method, mlen);
    route_once(meth, mlen, path, plen, 64); /* server.c's buffer */
    route_once(meth, mlen, path, plen, 1 + size % 24);
    if (q != NULL) {
        size_t qlen = tlen - plen - 1;
        char *query = fuzz_dup((const uint8_t *)q + 1, qlen);
        check_query(query, qlen);
        free(query);
    }
    free(meth);
    free(path);
    free(buf);
    return 0;
}
