/* astore.c — picks the serving store's backend from the --db URL (astore.h). */
#include "store/astore.h"
#include "store/group_commit.h"

#include <stdio.h>
#include <string.h>

static bool is_pg(const char *url)
{
    return strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0;
}

struct astore *astore_open(const char *url, h2o_evloop_t *loop, h2o_multithread_queue_t *queue, char *err,
                           size_t errlen)
{
    if (strncmp(url, "sqlite:", 7) == 0)
        return astore_sqlite_open(url + 7, loop, queue, err, errlen);
    if (is_pg(url))
        return astore_pg_open(url, loop, queue, err, errlen);
    snprintf(err, errlen, "--db must be sqlite:<path> or postgresql://..., got \"%s\"", url);
    return NULL;
}

int astore_start(const char *url, char *err, size_t errlen)
{
    if (strncmp(url, "sqlite:", 7) == 0)
        return astore_sqlite_start(url + 7, err, errlen);
    return 0;
}

void astore_stop(void)
{
    astore_sqlite_stop();
}
