/* store_pg.c — PostgreSQL storage (scale-out mode). Placeholder until the backend lands. */
#include "store/store.h"

#include <stdio.h>

struct store *store_pg_open(const char *url, int flags, char *err, size_t errlen)
{
    (void)url;
    (void)flags;
    snprintf(err, errlen, "PostgreSQL storage is not built into this version yet");
    return NULL;
}
