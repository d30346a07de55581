/* store.c — picks the storage backend from the --db URL. */
#include "store/store.h"

#include <stdio.h>
#include <string.h>

struct store *store_open(const char *url, int flags, char *err, size_t errlen)
{
    if (strncmp(url, "sqlite:", 7) == 0)
        return store_sqlite_open(url + 7, flags, err, errlen);
    if (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0)
        return store_pg_open(url, flags, err, errlen);
    snprintf(err, errlen, "--db must be sqlite:<path> or postgresql://..., got \"%s\"", url);
    return NULL;
}
