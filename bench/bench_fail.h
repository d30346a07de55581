/* bench_fail.h — how the standalone bench programs (relay, loadgen, login_flood)
 * give up: a message on stderr prefixed with BENCH_PROG, which each program defines
 * before including this, and exit 1; allocations that give up the same way. Header
 * only: each program is built by one `cc` line (bench/run.sh, bench/login_flood.sh). */
#ifndef BENCH_FAIL_H
#define BENCH_FAIL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((format(printf, 1, 2), noreturn, unused)) static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", BENCH_PROG);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

__attribute__((unused)) static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        die("out of memory");
    return p;
}

__attribute__((unused)) static void *xcalloc(size_t n, size_t m)
{
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (p == NULL)
        die("out of memory");
    return p;
}

__attribute__((unused)) static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (p == NULL)
        die("out of memory");
    return p;
}

#endif
