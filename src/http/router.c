/* router.c — segment-by-segment matching of the route table (router.h). The
 * table is a few dozen entries: a linear scan is faster than any index here. */
#include "http/router.h"
#include "domain/validate.h"

#include <string.h>

/* 1 when path matches tmpl; *id_seg and *id_len locate the {id} segment. */
static int match_path(const char *tmpl, const char *path, size_t path_len, const char **id_seg, size_t *id_len)
{
    const char *p = path, *end = path + path_len, *t = tmpl;
    *id_seg = NULL;
    while (*t != '\0') {
        if (p >= end || *p != '/' || *t != '/')
            return 0;
        p++, t++;
        const char *seg_end = memchr(p, '/', (size_t)(end - p));
        if (seg_end == NULL)
            seg_end = end;
        const char *tend = strchr(t, '/');
        if (tend == NULL)
            tend = t + strlen(t);
        size_t slen = (size_t)(seg_end - p), tlen = (size_t)(tend - t);
        if (tlen == 4 && memcmp(t, "{id}", 4) == 0) {
            if (slen == 0)
                return 0;
            *id_seg = p;
            *id_len = slen;
        } else if (slen != tlen || memcmp(p, t, slen) != 0) {
            return 0;
        }
        p = seg_end;
        t = tend;
    }
    return p == end;
}

/* Appends ", method" (or "method" first) to allow when it fits. */
static void allow_add(char *allow, size_t allow_len, size_t *used, const char *method)
{
    size_t mlen = strlen(method);
    if (*used + mlen + 3 >= allow_len)
        return;
    if (*used > 0) {
        memcpy(allow + *used, ", ", 2);
        *used += 2;
    }
    memcpy(allow + *used, method, mlen);
    *used += mlen;
    allow[*used] = '\0';
}

enum router_result router_match(const struct route *routes, size_t n, const char *method, size_t method_len,
                                const char *path, size_t path_len, const struct route **route, int64_t *id,
                                char *allow, size_t allow_len)
{
    size_t allow_used = 0;
    int path_known = 0;
    int head = method_len == 4 && memcmp(method, "HEAD", 4) == 0;
    allow[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *seg;
        size_t seg_len = 0;
        if (!match_path(routes[i].path, path, path_len, &seg, &seg_len))
            continue;
        size_t mlen = strlen(routes[i].method);
        int get = strcmp(routes[i].method, "GET") == 0;
        if (!(head && get) && (mlen != method_len || memcmp(routes[i].method, method, mlen) != 0)) {
            path_known = 1;
            allow_add(allow, allow_len, &allow_used, routes[i].method);
            if (get)
                allow_add(allow, allow_len, &allow_used, "HEAD");
            continue;
        }
        *route = &routes[i];
        *id = 0;
        if (seg != NULL && validate_parse_id(seg, seg_len, id) != 0)
            return ROUTER_BAD_ID;
        return ROUTER_FOUND;
    }
    return path_known ? ROUTER_BAD_METHOD : ROUTER_NO_PATH;
}
