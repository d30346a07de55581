/* test_request_id.c — unit tests of request ids (src/util/request_id.c): the
 * X-Request-Id format the logs and clients see, and uniqueness within a thread
 * and across threads. Links the core library only. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "util/request_id.h"

static void init_sodium(void)
{
    cr_assert_geq(sodium_init(), 0, "sodium_init failed");
}

TestSuite(request_id, .init = init_sodium);

Test(request_id, is_sixteen_lowercase_hex_digits)
{
    char id[REQUEST_ID_LEN + 2];
    memset(id, '#', sizeof id);
    request_id_new(id);
    cr_assert_eq(strlen(id), 16);
    cr_assert_eq(id[REQUEST_ID_LEN + 1], '#', "wrote past the id");
    for (size_t i = 0; i < 16; i++)
        cr_assert((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'), "char %zu of %s", i, id);
}

enum { PER_THREAD = 50000, THREADS = 4 };

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, REQUEST_ID_LEN + 1);
}

static void *fill(void *arg)
{
    char(*ids)[REQUEST_ID_LEN + 1] = arg;
    for (int i = 0; i < PER_THREAD; i++)
        request_id_new(ids[i]);
    return NULL;
}

Test(request_id, ids_from_several_threads_are_all_distinct)
{
    char(*ids)[REQUEST_ID_LEN + 1] = calloc(PER_THREAD * THREADS, sizeof *ids);
    cr_assert_not_null(ids);
    pthread_t tids[THREADS];
    for (int t = 0; t < THREADS; t++)
        cr_assert_eq(pthread_create(&tids[t], NULL, fill, ids + t * PER_THREAD), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(tids[t], NULL);
    qsort(ids, PER_THREAD * THREADS, sizeof *ids, cmp_id);
    for (int i = 1; i < PER_THREAD * THREADS; i++)
        cr_assert_str_neq(ids[i - 1], ids[i], "duplicate id %s", ids[i]);
    free(ids);
}
